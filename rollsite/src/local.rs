//! The roll-site as the federation client of its own process sees it (standalone mode):
//! pushes, pulls and unary calls without the gRPC hop, and objects taken as they are stored.

use crate::peer::Peer;
use crate::site::Site;
use bytes::Bytes;
use eggroll_core::transfer::TransferKey;
use eggroll_eggpair::push::Packets;
use eggroll_federation::link::{Call, LocalRollsite, PacketStream};
use eggroll_proto::proxy::{Metadata, Packet};
use eggroll_proto::transfer::RollSiteHeader;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Status;

/// This party's own code calling in-process.
const IN_PROCESS: Peer = Peer {
    addr: None,
    secure: true,
    hops: 0,
    trusted: true,
};

impl LocalRollsite for Site {
    fn reachable_addr(&self) -> String {
        // A wildcard listen address becomes loopback.
        let mut a = self
            .listen
            .get()
            .and_then(|l| l.first().copied())
            .unwrap_or_else(|| ([127, 0, 0, 1], self.config.port).into());
        if a.ip().is_unspecified() {
            a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        a.to_string()
    }

    fn push(self: Arc<Self>, packets: Packets) -> Call<()> {
        Box::pin(async move {
            Site::push(&self, packets.map(Ok), IN_PROCESS)
                .await
                .map(|_| ())
                .map_err(Status::from)
        })
    }

    fn pull(self: Arc<Self>, meta: Metadata) -> Call<PacketStream> {
        Box::pin(async move {
            let s = Site::pull(&self, meta, IN_PROCESS).await?;
            Ok(Box::pin(s) as PacketStream)
        })
    }

    fn unary(self: Arc<Self>, p: Packet) -> Call<Packet> {
        Box::pin(async move { Ok(Site::unary(&self, p, IN_PROCESS).await?) })
    }

    fn header(self: Arc<Self>, key: &TransferKey, idle: Duration) -> Call<RollSiteHeader> {
        let (key, rk) = (key.clone(), key.rs_key());
        Box::pin(async move { Ok(self.wait_for(&key, idle, move |b| b.header(&rk)).await?) })
    }

    fn object(self: Arc<Self>, key: &TransferKey, idle: Duration) -> Call<Bytes> {
        let (key, rk) = (key.clone(), key.rs_key());
        Box::pin(async move { Ok(self.wait_for(&key, idle, move |b| b.object(&rk)).await?) })
    }
}
