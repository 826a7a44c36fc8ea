//! How a federation reaches its party's roll-site: over gRPC, or by calling a roll-site that
//! runs in this process ([`LocalRollsite`], which the gateway implements) without a hop.

use bytes::Bytes;
use eggroll_core::transfer::TransferKey;
use eggroll_eggpair::push::{GrpcTarget, Packets, PushTarget, Pushed};
use eggroll_proto::proxy::data_transfer_service_client::DataTransferServiceClient;
use eggroll_proto::proxy::{Metadata, Packet};
use eggroll_proto::transfer::RollSiteHeader;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// A boxed future of a [`LocalRollsite`] call.
pub type Call<T> = Pin<Box<dyn Future<Output = Result<T, Status>> + Send>>;

/// The packets a pull answers with.
pub type PacketStream = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;

/// A roll-site running in this process (standalone mode), called directly: what a federation
/// needs of it, so that this crate does not depend on the gateway.
pub trait LocalRollsite: Send + Sync + 'static {
    /// Its address as other processes on this machine reach it (eggs push there).
    fn reachable_addr(&self) -> String;
    /// `DataTransferService.push` from this party's own code.
    fn push(self: Arc<Self>, packets: Packets) -> Call<()>;
    /// `DataTransferService.pull` (a get) from this party's own code.
    fn pull(self: Arc<Self>, meta: Metadata) -> Call<PacketStream>;
    /// `DataTransferService.unaryCall` from this party's own code.
    fn unary(self: Arc<Self>, p: Packet) -> Call<Packet>;
    /// Waits until the header of the transfer `key` arrived (no data for `idle` fails).
    fn header(self: Arc<Self>, key: &TransferKey, idle: Duration) -> Call<RollSiteHeader>;
    /// Waits until the whole object `key` arrived and takes it as stored: mapped, not copied.
    fn object(self: Arc<Self>, key: &TransferKey, idle: Duration) -> Call<Bytes>;
}

/// The link of one federation.
#[derive(Clone)]
pub enum Link {
    /// Over gRPC, to a roll-site process.
    Grpc(GrpcTarget),
    /// Calls into a roll-site running in this process: no local hop.
    InProcess(Weak<dyn LocalRollsite>),
}

impl Link {
    /// The in-process roll-site, while it runs.
    pub fn local(w: &Weak<dyn LocalRollsite>) -> Result<Arc<dyn LocalRollsite>, Status> {
        w.upgrade()
            .ok_or_else(|| Status::unavailable("the in-process roll-site has stopped"))
    }

    fn client(g: &GrpcTarget) -> DataTransferServiceClient<Channel> {
        DataTransferServiceClient::new(g.channel.clone())
            .max_decoding_message_size(g.max_message)
            .max_encoding_message_size(g.max_message)
    }

    /// Opens a pull (a get).
    pub async fn pull(&self, meta: Metadata) -> Result<PacketStream, Status> {
        match self {
            Link::Grpc(g) => {
                let s = Self::client(g).pull(Request::new(meta)).await?.into_inner();
                Ok(Box::pin(s))
            }
            Link::InProcess(w) => Self::local(w)?.pull(meta).await,
        }
    }

    /// Makes a unary call.
    pub async fn unary(&self, p: Packet) -> Result<Packet, Status> {
        match self {
            Link::Grpc(g) => Ok(Self::client(g)
                .unary_call(Request::new(p))
                .await?
                .into_inner()),
            Link::InProcess(w) => Self::local(w)?.unary(p).await,
        }
    }
}

impl PushTarget for Link {
    fn push(&self, packets: Packets) -> Pushed {
        match self {
            Link::Grpc(g) => g.push(packets),
            Link::InProcess(w) => {
                let w = w.clone();
                Box::pin(async move { Self::local(&w)?.push(packets).await })
            }
        }
    }
}
