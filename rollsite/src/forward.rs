//! Forwarding to the next hop: one lazily connected channel per route, streams relayed packet
//! by packet through a bounded channel.

use crate::error::{Error, HopFailed, Result};
use crate::route::Route;
use crate::tls::TlsFiles;
use eggroll_core::sync::Mutex;
use eggroll_proto::proxy::data_transfer_service_client::DataTransferServiceClient;
use eggroll_proto::proxy::{Metadata, Packet};
use std::collections::HashMap;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// gRPC request header counting roll-site hops, to stop routing loops.
pub const HOPS_HEADER: &str = "x-eggroll-hops";
/// Most roll-sites a packet may pass.
pub const MAX_HOPS: u32 = 8;

pub use eggroll_core::transfer::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};

/// Makes a channel to `address` (`host:port`), with TLS when `tls` is given.
pub fn channel(
    address: &str,
    tls: Option<(&TlsFiles, &str)>,
    connect_timeout: Duration,
) -> Result<Channel> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| Error::Config(format!("{address} is not a valid address: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    if let Some((files, domain)) = tls {
        ep = ep
            .tls_config(files.client(domain)?)
            .map_err(|e| Error::Tls(format!("TLS settings for {address}: {e}")))?;
    }
    Ok(ep.connect_lazy())
}

/// A client of `DataTransferService` with our message size limits.
pub fn client(channel: Channel, max_message: usize) -> DataTransferServiceClient<Channel> {
    DataTransferServiceClient::new(channel)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message)
}

/// The error of a next hop; on a TLS route a broken connection most often means a refused
/// certificate, so say what to check.
fn hop_error(route: &Route, hop: &str, s: Status) -> Error {
    let mut e = Error::hop(hop, s);
    if let Error::Hop(HopFailed { status, .. }) = &mut e {
        if route.use_ssl && is_transport(status) {
            let msg = format!(
                "{} (TLS route: check that this party's certificate is signed by a CA the peer \
                 trusts, and that the peer's certificate chains to rollsite.tls_ca and names \
                 the route's ip or hostname)",
                status.message()
            );
            **status = Status::new(status.code(), msg);
        }
    }
    e
}

/// Whether a next hop's failure is of the link (not reached, or the connection broke), not
/// an answer of the hop itself.
pub fn is_transport(s: &Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::Cancelled
    )
}

/// Whether a next hop's failure is a TLS handshake that failed, as the status spells out
/// its causes.
pub fn is_tls_failure(s: &Status) -> bool {
    is_transport(s) && crate::tls::is_handshake_failure(s.message())
}

/// The hop counter header value for the next hop.
pub(crate) fn hop_count(
    hops: u32,
) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
    (hops + 1)
        .to_string()
        .parse()
        .map_err(|_| Error::Internal("hop counter does not encode".into()))
}

/// Channels to next hops, shared by every transfer.
pub struct Forwarder {
    channels: Mutex<HashMap<String, Channel>>,
    tls: Option<TlsFiles>,
    max_message: usize,
    connect_timeout: Duration,
}

impl Forwarder {
    /// A forwarder using `tls` (our identity and CA) on routes that ask for TLS.
    pub fn new(tls: Option<TlsFiles>, max_message: usize, connect_timeout: Duration) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            tls,
            max_message,
            connect_timeout,
        }
    }

    /// The channel to `route`, made on first use with the route's TLS settings.
    pub(crate) fn channel(&self, route: &Route) -> Result<Channel> {
        let files = if route.use_ssl {
            let base = self.tls.as_ref();
            let files = TlsFiles {
                cert: route
                    .cert_file
                    .clone()
                    .or_else(|| base.map(|b| b.cert.clone()))
                    .unwrap_or_default(),
                key: route
                    .key_file
                    .clone()
                    .or_else(|| base.map(|b| b.key.clone()))
                    .unwrap_or_default(),
                ca: route
                    .ca_file
                    .clone()
                    .or_else(|| base.map(|b| b.ca.clone()))
                    .unwrap_or_default(),
            };
            if files.cert.as_os_str().is_empty() || files.ca.as_os_str().is_empty() {
                return Err(Error::Config(format!(
                    "the route to {} asks for TLS (use_ssl) but this roll-site has no \
                     certificate: set rollsite.tls_cert, tls_key and tls_ca",
                    route.address()
                )));
            }
            Some(files)
        } else {
            None
        };
        let key = format!("{}|{:?}|{:?}", route.address(), route.hostname, files);
        let mut channels = self.channels.lock();
        let ch = match channels.get(&key) {
            Some(c) => c.clone(),
            None => {
                let domain = route.hostname.clone().unwrap_or_else(|| route.ip.clone());
                let c = channel(
                    &route.address(),
                    files.as_ref().map(|f| (f, domain.as_str())),
                    self.connect_timeout,
                )?;
                channels.insert(key, c.clone());
                c
            }
        };
        Ok(ch)
    }

    /// Relays a push stream to `route`; answers with the next hop's acknowledgement, which
    /// comes only after the final destination stored everything.
    pub async fn push<S>(
        &self,
        route: &Route,
        hop: &str,
        hops: u32,
        first: Packet,
        mut rest: S,
        check: impl Fn(&Packet) -> Result<()>,
    ) -> Result<Metadata>
    where
        S: Stream<Item = Result<Packet, Status>> + Unpin,
    {
        let channel = self.channel(route)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Packet>(4);
        let mut headers = tonic::metadata::MetadataMap::new();
        headers.insert(HOPS_HEADER, hop_count(hops)?);
        let max = self.max_message;
        let call = tokio::spawn(eggroll_proto::push::push(
            channel,
            ReceiverStream::new(rx),
            headers,
            max,
        ));
        let abort = call.abort_handle();
        let relay = async {
            if tx.send(first).await.is_err() {
                return Ok(());
            }
            while let Some(p) = rest.next().await {
                let p = p.map_err(|s| Error::hop("the sender's stream", s))?;
                check(&p)?;
                if tx.send(p).await.is_err() {
                    // The next hop ended the call; its answer says why.
                    break;
                }
            }
            Ok(())
        };
        if let Err(e) = relay.await {
            // Abort, so the next hop sees a broken stream, never a complete one.
            abort.abort();
            return Err(e);
        }
        drop(tx);
        match call.await? {
            Ok(ack) => Ok(ack),
            Err(s) => Err(hop_error(route, hop, s)),
        }
    }

    /// Relays one unary call to `route`.
    pub async fn unary(&self, route: &Route, hop: &str, hops: u32, p: Packet) -> Result<Packet> {
        let mut client = client(self.channel(route)?, self.max_message);
        let mut req = Request::new(p);
        req.metadata_mut().insert(HOPS_HEADER, hop_count(hops)?);
        client
            .unary_call(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| hop_error(route, hop, s))
    }
}
