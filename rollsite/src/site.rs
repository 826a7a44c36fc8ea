//! One roll-site: routes every packet, delivers its own party's into the receive buffer,
//! forwards the rest, and hands received transfers to local gets.

use crate::buffer::{Batch, Buffer};
use crate::error::{Error, Result};
use crate::forward::{Forwarder, MAX_HOPS};
use crate::inbox::{Inbox, NAMESPACE};
use crate::liveness::Liveness;
use crate::metrics::{Direction, RollsiteMetrics, Transfer};
use crate::packet::{
    check_batch_size, destination, rollsite_header, TransferKey, EGG_TABLE_OPTION, FINISH,
    INTERVAL_OPTION, MAX_ABORT_REASON, OP_CLEAR, OP_HEARTBEAT, OP_PING, TABLE,
};
pub use crate::peer::Peer;
use crate::polling::Hub;
use crate::route::{Hop, Routes};
use crate::tls::TlsFiles;
use eggroll_core::config::{EggrollConfig, RollsiteConfig};
use eggroll_proto::proxy::{Metadata, Packet};
use eggroll_proto::transfer::RollSiteHeader;
use prost::Message;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

/// The party a packet says it comes from ("" when it says none).
fn source_party(p: &Packet) -> &str {
    p.header
        .as_ref()
        .and_then(|h| h.src.as_ref())
        .map_or("", |t| t.party_id.as_str())
}

/// Bytes of data a packet carries.
fn body_len(p: &Packet) -> u64 {
    p.body.as_ref().map_or(0, |d| d.value.len() as u64)
}

/// Batches are written to storage in groups of about this many bytes.
const WRITE_GROUP_BYTES: usize = 8 << 20;

/// The shared state of a running roll-site.
pub struct Site {
    /// This party.
    pub party_id: String,
    /// Settings.
    pub config: RollsiteConfig,
    /// The live route table.
    pub routes: Routes,
    /// What arrived for this party.
    pub buffer: Arc<Buffer>,
    /// Channels to next hops.
    pub forwarder: Forwarder,
    /// Polling streams that parties behind firewalls hold open to us.
    pub hub: Hub,
    /// Our identity, if TLS is configured.
    pub tls: Option<TlsFiles>,
    local_clients: Vec<ClientNet>,
    /// Where we listen, to refuse routes that point back at us.
    pub listen: OnceLock<Vec<SocketAddr>>,
    /// Turns true when the roll-site shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Distributed mode: the cluster whose eggs receive our tables (`rollsite.cluster_manager`).
    pub inbox: Option<Arc<Inbox>>,
    /// The other parties' last signs of life, by session.
    pub liveness: Liveness,
    /// Counts for Prometheus and the status page.
    pub metrics: Arc<RollsiteMetrics>,
}

impl Site {
    /// Builds the state from config; fails on anything missing or unreadable.
    pub fn new(config: &EggrollConfig, shutdown: watch::Receiver<bool>) -> Result<Self> {
        let rs = config.rollsite.clone();
        if rs.party_id.trim().is_empty() {
            return Err(Error::Config(
                "rollsite.party_id is empty: set it in the config file, with \
                 EGGROLL_ROLLSITE_PARTY_ID or with --party-id"
                    .into(),
            ));
        }
        check_batch_size(rs.batch_body_bytes, rs.max_message_bytes)
            .map_err(|m| Error::Config(format!("rollsite.{m}")))?;
        if !(1..=1024).contains(&rs.polling_concurrency) {
            return Err(Error::Config(format!(
                "rollsite.polling_concurrency ({}) must be between 1 and 1024 polling streams",
                rs.polling_concurrency
            )));
        }
        if rs.polling_idle_s == 0 || rs.polling_no_data_s == 0 {
            return Err(Error::Config(format!(
                "rollsite.polling_idle_s ({}) and polling_no_data_s ({}) must be at least 1 \
                 second",
                rs.polling_idle_s, rs.polling_no_data_s
            )));
        }
        let least = u64::from(crate::liveness::INTERVALS) * rs.heartbeat_interval_ms;
        if rs.liveness_timeout_ms > 0 && rs.liveness_timeout_ms < least {
            return Err(Error::Config(format!(
                "rollsite.liveness_timeout_ms ({}) must be at least {} heartbeat intervals \
                 ({least} ms with heartbeat_interval_ms {}), or 0 to judge a silent party by \
                 get_idle_timeout_ms alone",
                rs.liveness_timeout_ms,
                crate::liveness::INTERVALS,
                rs.heartbeat_interval_ms
            )));
        }
        let local_clients = rs
            .local_clients
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                ClientNet::parse(s).ok_or_else(|| {
                    Error::Config(format!(
                        "rollsite.local_clients has {s:?}, which is neither an IP address nor \
                         a CIDR such as 10.244.0.0/16"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tls = TlsFiles::from_config(&rs.tls_cert, &rs.tls_key, &rs.tls_ca)?;
        let dir = if rs.buffer_dir.as_os_str().is_empty() {
            config.data_dir.join("rollsite")
        } else {
            rs.buffer_dir.clone()
        };
        let mut storage = config.storage.clone();
        // The buffer holds a few transfers, not the party's tables: keep its caches small.
        storage.block_cache_bytes = storage.block_cache_bytes.min(64 << 20);
        storage.write_buffer_bytes = storage.write_buffer_bytes.min(128 << 20);
        Ok(Self {
            party_id: rs.party_id.trim().to_string(),
            routes: Routes::load(&rs.route_table)?,
            buffer: Arc::new(
                Buffer::open(&dir, storage, rs.max_object_bytes)?.with_fsync(rs.fsync),
            ),
            forwarder: Forwarder::new(
                tls.clone(),
                rs.max_message_bytes as usize,
                Duration::from_millis(rs.connect_timeout_ms),
            ),
            hub: Hub::default(),
            tls,
            local_clients,
            listen: OnceLock::new(),
            shutdown,
            inbox: Some(rs.cluster_manager.trim())
                .filter(|a| !a.is_empty())
                .map(|a| Arc::new(Inbox::new(a, rs.party_id.trim()))),
            liveness: Liveness::new(Duration::from_millis(rs.liveness_timeout_ms)),
            metrics: Arc::new(RollsiteMetrics::new(rs.party_id.trim())),
            config: rs,
        })
    }

    /// Refuses `what` unless the caller is one of this party's own clients.
    pub fn check_local_client(&self, peer: &Peer, what: &str) -> Result<()> {
        if self.local_clients.is_empty() || peer.trusted {
            return Ok(());
        }
        match peer.addr {
            Some(a) if self.local_clients.iter().any(|n| n.contains(a.ip())) => Ok(()),
            other => Err(Error::Refused(format!(
                "{what} is for this party's own clients; {} is not in rollsite.local_clients",
                other
                    .map(|a| a.ip().to_string())
                    .unwrap_or("an unknown address".into())
            ))),
        }
    }

    pub(crate) fn check_hops_and_tls(&self, p: &Packet, peer: &Peer) -> Result<()> {
        if peer.hops >= MAX_HOPS {
            return Err(Error::Refused(format!(
                "the packet has passed {} roll-sites: the route tables form a loop",
                peer.hops
            )));
        }
        let src = source_party(p);
        if !peer.secure
            && !src.is_empty()
            && src != self.party_id
            && self.routes.table().requires_tls_from(src)
        {
            return Err(Error::Refused(format!(
                "the route of party {src} requires TLS, but this packet came over the \
                 plaintext port; connect to the roll-site's secure port with a certificate"
            )));
        }
        Ok(())
    }

    pub(crate) fn hop_name(&self, route: &crate::route::Route, party: &str) -> Result<String> {
        if let (Ok(addr), Some(listen)) = (route.address().parse::<SocketAddr>(), self.listen.get())
        {
            if listen.contains(&addr) {
                return Err(Error::Config(format!(
                    "the route for party {party} points at this roll-site ({addr}), whose party \
                     is {}: fix the route table",
                    self.party_id
                )));
            }
        }
        Ok(format!(
            "next hop {} (route for party {party}{})",
            route.address(),
            if route.use_ssl { ", TLS" } else { "" }
        ))
    }

    /// Handles a push stream: delivers it here or relays it to its next hop.
    pub async fn push<S>(&self, mut stream: S, peer: Peer) -> Result<Metadata>
    where
        S: Stream<Item = Result<Packet, Status>> + Unpin + Send,
    {
        let first = match stream.next().await {
            Some(Ok(p)) => p,
            Some(Err(s)) => return Err(Error::hop("the sender's stream", s)),
            None => {
                return Err(Error::BadPacket(
                    "the push stream ended before its first packet".into(),
                ))
            }
        };
        let (party, role) = destination(&first)?;
        let (party, role) = (party.to_string(), role.to_string());
        self.check_hops_and_tls(&first, &peer)?;
        let same_dst = |p: &Packet| -> Result<()> {
            let (pp, _) = destination(p)?;
            if pp != party {
                return Err(Error::BadPacket(format!(
                    "a packet for party {pp} in a stream that goes to party {party}"
                )));
            }
            Ok(())
        };
        let hop = self.routes.table().resolve(&self.party_id, &party, &role)?;
        let transfer = self.begin(&first, &party, &hop, &peer);
        transfer.add_bytes(body_len(&first));
        let counter = transfer.bytes_counter();
        let stream = stream.map(move |r| {
            if let Ok(p) = &r {
                counter.fetch_add(body_len(p), std::sync::atomic::Ordering::Relaxed);
            }
            r
        });
        let result = match &hop {
            Hop::Local => self.deliver(first, stream).await,
            Hop::Remote(route) => match self.hop_name(route, &party) {
                Ok(name) => {
                    self.forwarder
                        .push(route, &name, peer.hops, first, stream, same_dst)
                        .await
                }
                Err(e) => Err(e),
            },
            Hop::Polling(p) => self.hub.push(p, first, stream, same_dst).await,
        };
        self.end(Some(transfer), &party, &hop, result.as_ref().map(|_| ()));
        result
    }

    /// Starts counting a transfer to `party` that goes to `hop`.
    fn begin(&self, first: &Packet, party: &str, hop: &Hop, peer: &Peer) -> Transfer {
        let src = source_party(first);
        let key = first
            .header
            .as_ref()
            .and_then(|m| rollsite_header(m).ok())
            .and_then(|h| TransferKey::from_header(&h).ok())
            .map(|k| k.rs_key())
            .unwrap_or_default();
        let (other, direction) = match hop {
            Hop::Local => (src, Direction::In),
            _ if src.is_empty() || src == self.party_id => (party, Direction::Out),
            _ => (party, Direction::Relay),
        };
        if direction == Direction::In {
            self.metrics.contact(src, peer.secure, true);
        }
        self.metrics.start(other, direction, &key)
    }

    /// Ends the count of a transfer to `party` through `hop`.
    fn end(
        &self,
        transfer: Option<Transfer>,
        party: &str,
        hop: &Hop,
        result: std::result::Result<(), &Error>,
    ) {
        match hop {
            Hop::Remote(route) => {
                let reached = !matches!(result, Err(Error::Hop(h)) if crate::forward::is_transport(&h.status));
                self.metrics.contact(party, route.use_ssl, reached);
                if let Err(Error::Hop(h)) = result {
                    if route.use_ssl && crate::forward::is_tls_failure(&h.status) {
                        self.metrics.tls_failure("outbound");
                    }
                }
            }
            Hop::Polling(_) => self.metrics.contact(party, false, result.is_ok()),
            Hop::Local => {}
        }
        if let Some(t) = transfer {
            t.finish(result.map_err(|e| e.to_string()));
        }
    }

    /// Handles a unary call: a local control request, a one-packet delivery, or a relay.
    pub async fn unary(&self, p: Packet, peer: Peer) -> Result<Packet> {
        let meta = p.header.clone().unwrap_or_default();
        if meta.operator == OP_PING {
            // Answered at every hop, never delivered: see crate::ping.
            return self.ping(p, peer).await;
        }
        if meta.operator == OP_CLEAR {
            self.check_local_client(&peer, "clearing a received transfer")?;
            let h = request_header(&meta)?;
            let key = TransferKey::from_header(&h)?;
            let rk = key.rs_key();
            let buffer = self.buffer.clone();
            let inbox = self.inbox.clone();
            let n = tokio::task::spawn_blocking(move || {
                if let Some(inbox) = inbox {
                    inbox.forget(&crate::buffer::transfer_name(&rk));
                }
                buffer.clear(&rk)
            })
            .await??;
            return Ok(Packet {
                header: Some(Metadata {
                    ack: n as i64,
                    ..meta
                }),
                body: None,
            });
        }
        let (party, role) = destination(&p)?;
        let (party, role) = (party.to_string(), role.to_string());
        self.check_hops_and_tls(&p, &peer)?;
        match self.routes.table().resolve(&self.party_id, &party, &role)? {
            Hop::Local if meta.operator == OP_HEARTBEAT => {
                let h = request_header(&meta)?;
                let key = TransferKey::from_header(&h)?;
                let interval = h
                    .options
                    .get(INTERVAL_OPTION)
                    .and_then(|ms| ms.parse().ok())
                    .map(Duration::from_millis)
                    .unwrap_or_default();
                self.liveness.heard(&key.session, &key.src_party, interval);
                self.metrics.contact(&key.src_party, peer.secure, true);
                Ok(Packet {
                    header: Some(meta),
                    body: None,
                })
            }
            hop => {
                // A heartbeat is a sign of life passing through, not a transfer.
                let transfer =
                    (meta.operator != OP_HEARTBEAT).then(|| self.begin(&p, &party, &hop, &peer));
                if let Some(t) = &transfer {
                    t.add_bytes(body_len(&p));
                }
                let result = match &hop {
                    Hop::Local => self
                        .deliver(p, tokio_stream::empty::<Result<Packet, Status>>())
                        .await
                        .map(|ack| Packet {
                            header: Some(ack),
                            body: None,
                        }),
                    Hop::Remote(route) => match self.hop_name(route, &party) {
                        Ok(name) => self.forwarder.unary(route, &name, peer.hops, p).await,
                        Err(e) => Err(e),
                    },
                    Hop::Polling(polled) => self.hub.unary(polled, p).await,
                };
                self.end(transfer, &party, &hop, result.as_ref().map(|_| ()));
                result
            }
        }
    }

    /// Stores a stream of packets for this party; acknowledges once all are durable.
    pub async fn deliver<S>(&self, first: Packet, mut rest: S) -> Result<Metadata>
    where
        S: Stream<Item = Result<Packet, Status>> + Unpin,
    {
        let started = Instant::now();
        let meta0 = first.header.clone().unwrap_or_default();
        let h0 = rollsite_header(&meta0)?;
        let key = TransferKey::from_header(&h0)?;
        let (dst, _) = destination(&first)?;
        if key.dst_party != dst {
            return Err(Error::BadPacket(format!(
                "RollSiteHeader.dstPartyId {} differs from Metadata.dst.partyId {dst}",
                key.dst_party
            )));
        }
        let rk = key.rs_key();
        if self.buffer.progress(&rk).last_error().is_some() {
            self.metrics.retried(&key.src_party);
        }
        let mut group: Vec<Batch> = Vec::new();
        let (mut group_bytes, mut count, mut bytes) = (0usize, 0i64, 0u64);
        let mut pending: Option<tokio::task::JoinHandle<Result<()>>> = None;
        let mut next = Some(first);
        let outcome: Result<()> = async {
            loop {
                let p = match next.take() {
                    Some(p) => p,
                    None => match rest.next().await {
                        Some(Ok(p)) => p,
                        Some(Err(s)) => return Err(Error::hop("the sender's stream", s)),
                        None => break,
                    },
                };
                count += 1;
                let batch = self.check_packet(&key, &h0, count, p)?;
                bytes += batch.body.len() as u64;
                group_bytes += batch.body.len() + 64;
                group.push(batch);
                if group_bytes >= WRITE_GROUP_BYTES {
                    group_bytes = 0;
                    let write = self.write(&rk, &h0, std::mem::take(&mut group));
                    // One write in flight while the next group arrives.
                    if let Some(prev) = pending.replace(write) {
                        prev.await??;
                    }
                }
            }
            if let Some(prev) = pending.take() {
                prev.await??;
            }
            if !group.is_empty() {
                self.write(&rk, &h0, std::mem::take(&mut group)).await??;
            }
            Ok(())
        }
        .await;
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok(()) => {
                tracing::debug!(session = %key.session, key = %rk, src = %key.src_party,
                    dst = %key.dst_party, packets = count, bytes, ms, "push stored");
                Ok(Metadata {
                    ack: count,
                    ..meta0
                })
            }
            Err(e) => {
                tracing::warn!(session = %key.session, key = %rk, src = %key.src_party,
                    dst = %key.dst_party, packets = count, bytes, ms, error = %e, "push failed");
                self.buffer.progress(&rk).fail(format!(
                    "a push from party {} failed after {count} packets: {e}",
                    key.src_party
                ));
                Err(e)
            }
        }
    }

    fn write(
        &self,
        rk: &str,
        h: &RollSiteHeader,
        batches: Vec<Batch>,
    ) -> tokio::task::JoinHandle<Result<()>> {
        let (buffer, rk, mut h) = (self.buffer.clone(), rk.to_string(), h.clone());
        let inbox = self.inbox.clone().filter(|_| h.data_type == TABLE);
        tokio::task::spawn_blocking(move || {
            // Into the eggs first; the markers, written after, say where the batches are.
            if let Some(inbox) = inbox {
                let name = crate::buffer::transfer_name(&rk);
                let bodies: Vec<(u32, bytes::Bytes)> = batches
                    .iter()
                    .map(|b| (b.partition, b.body.clone()))
                    .collect();
                inbox.write(&name, &h, &bodies)?;
                h.options
                    .insert(EGG_TABLE_OPTION.into(), format!("{NAMESPACE}/{name}"));
            }
            buffer.write(&rk, &h, batches)
        })
    }

    fn check_packet(
        &self,
        key: &TransferKey,
        h0: &RollSiteHeader,
        n: i64,
        p: Packet,
    ) -> Result<Batch> {
        let at = |e: Error| match e {
            Error::BadPacket(m) => Error::BadPacket(format!("packet {n} of the stream: {m}")),
            other => other,
        };
        let m = p
            .header
            .as_ref()
            .ok_or_else(|| at(Error::BadPacket("it has no header".into())))?;
        let h = rollsite_header(m).map_err(|e| at(e.into()))?;
        let k = TransferKey::from_header(&h).map_err(|e| at(e.into()))?;
        if k != *key {
            return Err(at(Error::BadPacket(format!(
                "it belongs to {}, but the stream started with {}",
                k.rs_key(),
                key.rs_key()
            ))));
        }
        if h.total_partitions != h0.total_partitions || h.data_type != h0.data_type {
            return Err(at(Error::BadPacket(
                "its dataType or totalPartitions differ from the stream's first packet".into(),
            )));
        }
        let body = p.body.map(|d| d.value).unwrap_or_default();
        if body.len() as u64 > self.config.max_message_bytes {
            return Err(Error::TooLarge(format!(
                "packet {n} carries {} bytes, over max_message_bytes {}",
                body.len(),
                self.config.max_message_bytes
            )));
        }
        if h.data_type == TABLE {
            eggroll_core::pairs::collect(&body).map_err(|e| at(e.into()))?;
        }
        Ok(Batch {
            partition: h.partition_id as u32,
            seq: h.batch_seq as u64,
            finish: h.stage == FINISH,
            body,
        })
    }

    /// Waits until `check` finds what it looks for in the buffer; fails when no data of the
    /// transfer arrived for `idle`, saying how far it got and why it may have stopped.
    pub async fn wait_for<T: Send + 'static>(
        &self,
        key: &TransferKey,
        idle: Duration,
        check: impl Fn(&Buffer) -> Result<Option<T>> + Clone + Send + 'static,
    ) -> Result<T> {
        let rk = key.rs_key();
        let progress = self.buffer.progress(&rk);
        // An abort from the party this get waits for ends the wait at once.
        let abort_rk = key.abort().rs_key();
        let mut shutdown = self.shutdown.clone();
        loop {
            let notified = progress.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let aborted = self.buffer.aborts.notified();
            tokio::pin!(aborted);
            aborted.as_mut().enable();
            let (buffer, c, ark) = (self.buffer.clone(), check.clone(), abort_rk.clone());
            let found = tokio::task::spawn_blocking(move || match c(&buffer)? {
                Some(t) => Ok::<_, Error>(Ok(t)),
                None => Ok(Err(buffer.object(&ark)?)),
            })
            .await??;
            match found {
                Ok(t) => return Ok(t),
                Err(Some(reason)) => {
                    let reason =
                        String::from_utf8_lossy(&reason[..reason.len().min(MAX_ABORT_REASON)])
                            .into_owned();
                    return Err(Error::Aborted(format!(
                        "party {} (role {}) aborted session {} while this party waited for \
                         {:?} tag {:?}: {reason}",
                        key.src_party, key.src_role, key.session, key.name, key.tag
                    )));
                }
                Err(None) => {}
            }
            let deadline = progress.last_arrival() + idle;
            let gone = self
                .liveness
                .gone_at(&key.session, &key.src_party, progress.last_arrival());
            let now = Instant::now();
            if now >= deadline {
                let (have, why) = self.how_far(&rk, &progress).await?;
                return Err(Error::Timeout(format!(
                    "no data of {rk} arrived for {:.1} s ({have}){why}: check that party {} \
                     (role {}) called remote for name {:?} tag {:?}, and its route to party {}",
                    idle.as_secs_f64(),
                    key.src_party,
                    key.src_role,
                    key.name,
                    key.tag,
                    key.dst_party
                )));
            }
            if let Some(gone) = gone.filter(|g| now >= g.at) {
                let (have, why) = self.how_far(&rk, &progress).await?;
                return Err(Error::Timeout(format!(
                    "party {} (role {}) gave no sign of life for {:.1} s while this party \
                     waited for name {:?} tag {:?} of session {} ({have}){why}: its job \
                     process is gone (killed or crashed), or its route to party {} broke",
                    key.src_party,
                    key.src_role,
                    gone.bound.as_secs_f64(),
                    key.name,
                    key.tag,
                    key.session,
                    key.dst_party
                )));
            }
            // Heartbeats move `gone` on: look again by then.
            let wake = gone.map_or(deadline, |g| deadline.min(g.at));
            tokio::select! {
                _ = &mut notified => {}
                _ = &mut aborted => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = shutdown.changed() => {
                    return Err(Error::hop("local roll-site", Status::unavailable(
                        "the roll-site is shutting down; retry the get")));
                }
            }
        }
    }

    /// How far the transfer `rk` got, and its last failure, for the error of a get that
    /// gives up on it; forgets it when nothing arrived.
    async fn how_far(
        &self,
        rk: &str,
        progress: &crate::buffer::Progress,
    ) -> Result<(String, String)> {
        let (buffer, k) = (self.buffer.clone(), rk.to_string());
        let arrival = tokio::task::spawn_blocking(move || {
            let a = buffer.arrival(&k)?;
            buffer.forget_if_empty(&k)?;
            Ok::<_, Error>(a)
        })
        .await??;
        let have = match &arrival {
            Some(a) => format!("{} of {} partitions complete", a.done, a.total),
            None => "nothing arrived".to_string(),
        };
        let why = progress
            .last_error()
            .map(|e| format!("; last failure: {e}"))
            .unwrap_or_default();
        Ok((have, why))
    }

    /// Serves a local get: streams the transfer's batches in order as they arrive, so the
    /// get overlaps the remote; fails when data stops arriving for the idle timeout.
    pub async fn pull(
        self: &Arc<Self>,
        m: Metadata,
        peer: Peer,
    ) -> Result<ReceiverStream<Result<Packet, Status>>> {
        self.check_local_client(&peer, "pull (a get)")?;
        let h = request_header(&m)?;
        let key = TransferKey::from_header(&h)?;
        let idle = match m.conf.as_ref().map(|c| c.packet_interval_timeout) {
            Some(ms) if ms > 0 => Duration::from_millis(ms as u64),
            _ => Duration::from_millis(self.config.get_idle_timeout_ms),
        };
        let started = Instant::now();
        let rk = key.rs_key();
        let k = rk.clone();
        let header = self.wait_for(&key, idle, move |b| b.header(&k)).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let site = self.clone();
        tokio::spawn(async move {
            let mut bytes = 0u64;
            let total = header.total_partitions.max(1) as u32;
            let outcome: Result<()> = async {
                for p in 0..total {
                    let mut seq = 0u64;
                    loop {
                        let k = rk.clone();
                        let (body, finish) = site
                            .wait_for(&key, idle, move |b| b.batch(&k, p, seq))
                            .await?;
                        let mut h = header.clone();
                        h.partition_id = p as i32;
                        h.batch_seq = seq as i64;
                        bytes += body.len() as u64;
                        if tx.send(Ok(key.packet(&h, body))).await.is_err() {
                            return Err(Error::Internal("the get went away".into()));
                        }
                        seq += 1;
                        if finish == Some(seq) {
                            break;
                        }
                    }
                }
                Ok(())
            }
            .await;
            let outcome = match outcome {
                Ok(()) => "ok".to_string(),
                Err(e) => {
                    let msg = e.to_string();
                    let _ = tx.send(Err(Status::from(e))).await;
                    msg
                }
            };
            tracing::info!(session = %key.session, key = %rk, src = %key.src_party,
                dst = %key.dst_party, bytes, ms = started.elapsed().as_millis() as u64,
                outcome = %outcome, "transfer handed to a get");
        });
        Ok(ReceiverStream::new(rx))
    }
}

/// The header of a get or clear request: only the transfer key must be valid.
pub fn request_header(m: &Metadata) -> Result<RollSiteHeader> {
    if m.ext.is_empty() {
        return Err(Error::BadPacket(
            "Metadata.ext is empty: name the transfer with a serialized RollSiteHeader".into(),
        ));
    }
    RollSiteHeader::decode(&m.ext[..]).map_err(|e| {
        Error::BadPacket(format!(
            "Metadata.ext is not a serialized RollSiteHeader: {e}"
        ))
    })
}

/// One entry of `rollsite.local_clients`: an address, or a network in CIDR notation (pods
/// get new addresses when they restart, so a Kubernetes party lists its pod network).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ClientNet {
    addr: IpAddr,
    prefix: u8,
}

impl ClientNet {
    fn parse(s: &str) -> Option<Self> {
        let (ip, prefix) = match s.split_once('/') {
            None => {
                let addr: IpAddr = s.parse().ok()?;
                let bits = if addr.is_ipv4() { 32 } else { 128 };
                return Some(Self { addr, prefix: bits });
            }
            Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, bits.parse::<u8>().ok()?),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr: ip, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // A v4 client seen on a dual-stack socket arrives as ::ffff:a.b.c.d.
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod client_net_tests {
    use super::ClientNet;

    #[test]
    fn addresses_and_networks() {
        let ip = |s: &str| s.parse().unwrap();
        let one = ClientNet::parse("10.0.0.7").unwrap();
        assert!(one.contains(ip("10.0.0.7")));
        assert!(!one.contains(ip("10.0.0.8")));
        let pods = ClientNet::parse("10.244.0.0/16").unwrap();
        assert!(pods.contains(ip("10.244.3.9")));
        assert!(pods.contains(ip("::ffff:10.244.3.9")));
        assert!(!pods.contains(ip("10.245.0.1")));
        assert!(!pods.contains(ip("fd00::1")));
        let all = ClientNet::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("192.0.2.1")));
        let v6 = ClientNet::parse("fd00:10::/32").unwrap();
        assert!(v6.contains(ip("fd00:10::5")));
        assert!(!v6.contains(ip("fd00:11::5")));
        assert!(ClientNet::parse("::1").unwrap().contains(ip("::1")));
        for bad in ["10.0.0.0/33", "pods", "10.0.0.0/x", "fd00::/129", ""] {
            assert_eq!(ClientNet::parse(bad), None, "{bad}");
        }
    }
}
