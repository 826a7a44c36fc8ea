//! Polling mode: a party that cannot accept connections dials out to an exchange and keeps a
//! `polling` stream open; the exchange tunnels the pushes and unary calls for that party
//! through it.
//!
//! Frames, by `method`: the poller opens with `hello` (its party in `metadata.src`); the
//! exchange sends `push` (one packet of call `seq`), `push_end` (call `seq` is complete) and
//! `unaryCall`; the poller answers each call with `push_ack` (`metadata`), `unaryCall_ack`
//! (`packet`) or `error` (`desc` is `<grpc code>|<message>`).

use crate::error::{describe, Error, Result};
use crate::forward;
use crate::site::{Peer, Site};
use eggroll_proto::proxy::{Metadata, Packet, PollingFrame, Topic};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Status, Streaming};

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<PollingFrame>>>>;

struct Poller {
    tx: mpsc::Sender<Result<PollingFrame, Status>>,
    pending: Pending,
    generation: u64,
}

type PollerMap = Arc<Mutex<HashMap<String, Arc<Poller>>>>;

/// The exchange side: the polling streams open to us, by party.
#[derive(Default)]
pub struct Hub {
    pollers: PollerMap,
    next_call: AtomicI64,
    generation: AtomicU64,
}

fn error_frame(seq: i64, e: &Error) -> PollingFrame {
    PollingFrame {
        method: "error".into(),
        seq,
        desc: format!("{}|{e}", e.code() as i32),
        ..Default::default()
    }
}

fn frame_status(f: &PollingFrame) -> Status {
    let (code, msg) = f.desc.split_once('|').unwrap_or(("2", &f.desc));
    Status::new(Code::from_i32(code.parse().unwrap_or(2)), msg.to_string())
}

/// Removes a pending call however its future ends.
struct PendingGuard<'a>(&'a Pending, i64);
impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

impl Hub {
    fn poller(&self, party: &str) -> Result<Arc<Poller>> {
        self.pollers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(party)
            .cloned()
            .ok_or_else(|| {
                Error::hop(
                    format!("polling party {party}"),
                    Status::unavailable(format!(
                        "party {party} is a polling party and has no polling stream open to \
                         this roll-site; start its roll-site with polling_exchange pointing here"
                    )),
                )
            })
    }

    /// Ends every polling stream (at shutdown).
    pub fn close_all(&self) {
        self.pollers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Whether `party` holds a polling stream open to us now.
    pub fn is_connected(&self, party: &str) -> bool {
        self.pollers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(party)
    }

    async fn call(
        &self,
        party: &str,
        frames: impl Stream<Item = Result<PollingFrame>> + Unpin,
        id: i64,
    ) -> Result<PollingFrame> {
        let poller = self.poller(party)?;
        let (otx, orx) = oneshot::channel();
        poller
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, otx);
        let _guard = PendingGuard(&poller.pending, id);
        let hop = format!("polling party {party}");
        let closed = || {
            Error::hop(
                hop.clone(),
                Status::unavailable("its polling stream closed during the call"),
            )
        };
        let mut frames = frames;
        while let Some(f) = frames.next().await {
            poller.tx.send(Ok(f?)).await.map_err(|_| closed())?;
        }
        let answer = orx.await.map_err(|_| closed())?;
        if answer.method == "error" {
            return Err(Error::hop(hop, frame_status(&answer)));
        }
        Ok(answer)
    }

    /// Tunnels a push stream to a polling party.
    pub async fn push<S>(
        &self,
        party: &str,
        first: Packet,
        rest: S,
        check: impl Fn(&Packet) -> Result<()>,
    ) -> Result<Metadata>
    where
        S: Stream<Item = Result<Packet, Status>> + Unpin,
    {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let frame = move |p: Packet| PollingFrame {
            method: "push".into(),
            seq: id,
            packet: Some(p),
            ..Default::default()
        };
        let head = tokio_stream::once(Ok(frame(first)));
        let body = rest.map(move |p| {
            let p = p.map_err(|s| Error::hop("the sender's stream", s))?;
            check(&p)?;
            Ok(frame(p))
        });
        let end = tokio_stream::once(Ok(PollingFrame {
            method: "push_end".into(),
            seq: id,
            ..Default::default()
        }));
        let answer = self.call(party, head.chain(body).chain(end), id).await?;
        Ok(answer.metadata.unwrap_or_default())
    }

    /// Tunnels a unary call to a polling party.
    pub async fn unary(&self, party: &str, p: Packet) -> Result<Packet> {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let frame = PollingFrame {
            method: "unaryCall".into(),
            seq: id,
            packet: Some(p),
            ..Default::default()
        };
        let answer = self.call(party, tokio_stream::once(Ok(frame)), id).await?;
        Ok(answer.packet.unwrap_or_default())
    }

    /// Accepts a polling stream from a party; the returned stream carries its calls.
    pub async fn accept(
        &self,
        site: &Site,
        mut inbound: Streaming<PollingFrame>,
        peer: Peer,
    ) -> Result<ReceiverStream<Result<PollingFrame, Status>>> {
        let hello = tokio::time::timeout(Duration::from_secs(30), inbound.message())
            .await
            .map_err(|_| Error::BadPacket("no hello frame within 30 s".into()))?
            .map_err(|s| Error::hop("the polling client's stream", s))?
            .ok_or_else(|| Error::BadPacket("the polling stream ended before hello".into()))?;
        let party = hello
            .metadata
            .as_ref()
            .and_then(|m| m.src.as_ref())
            .map(|t| t.party_id.clone())
            .unwrap_or_default();
        if hello.method != "hello" || party.is_empty() {
            return Err(Error::BadPacket(
                "a polling stream starts with a `hello` frame naming its party in \
                 metadata.src.partyId"
                    .into(),
            ));
        }
        let table = site.routes.table();
        if !table.is_polling_party(&party) {
            return Err(Error::Refused(format!(
                "party {party} is not a polling party in the route table {}: list it as \
                 {{\"ip\": \"\", \"port\": -1, \"is_polling\": true}}",
                table.source()
            )));
        }
        if table.requires_tls_from(&party) && !peer.secure {
            return Err(Error::Refused(format!(
                "party {party}'s route requires TLS; open the polling stream to the secure port"
            )));
        }
        let (tx, rx) = mpsc::channel(16);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let poller = Arc::new(Poller {
            tx,
            pending: Pending::default(),
            generation,
        });
        let pending = poller.pending.clone();
        self.pollers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(party.clone(), poller);
        tracing::info!(party = %party, "polling party connected");
        let hub = self.pollers.clone();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(f)) => {
                        let waiter = pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&f.seq);
                        if let Some(w) = waiter {
                            let _ = w.send(f);
                        }
                    }
                    Ok(None) => break,
                    Err(s) => {
                        tracing::warn!(party = %party, error = %describe(&s), "polling stream failed");
                        break;
                    }
                }
            }
            // Only the registration made by this stream is removed: a reconnect may have
            // replaced it already.
            let mut map = hub.lock().unwrap_or_else(|e| e.into_inner());
            if map.get(&party).is_some_and(|p| p.generation == generation) {
                map.remove(&party);
            }
            pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
            tracing::info!(party = %party, "polling party disconnected");
        });
        Ok(ReceiverStream::new(rx))
    }
}

/// The party side: holds a polling stream open to `exchange` until shutdown, reconnecting
/// with backoff.
pub async fn run_poller(site: Arc<Site>, exchange: String, tls: bool) {
    let mut shutdown = site.shutdown.clone();
    let mut wait = Duration::from_millis(200);
    loop {
        let outcome = poll_once(&site, &exchange, tls).await;
        if *shutdown.borrow() {
            return;
        }
        match outcome {
            Ok(()) => {
                tracing::info!(exchange = %exchange, "polling stream ended; reconnecting");
                wait = Duration::from_millis(200);
            }
            Err(e) => {
                tracing::warn!(exchange = %exchange, error = %e, "polling stream failed; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

async fn poll_once(site: &Arc<Site>, exchange: &str, tls: bool) -> Result<()> {
    let files = match (&site.tls, tls) {
        (Some(f), true) => Some(f),
        (None, true) => {
            return Err(Error::Config(
                "rollsite.polling_tls is on but no certificate is configured".into(),
            ))
        }
        _ => None,
    };
    let host = exchange
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(exchange)
        .to_string();
    let channel = forward::channel(
        exchange,
        files.map(|f| (f, host.as_str())),
        Duration::from_millis(site.config.connect_timeout_ms),
    )?;
    let mut client = forward::client(channel, site.config.max_message_bytes as usize);
    let (tx, rx) = mpsc::channel::<PollingFrame>(16);
    let hello = PollingFrame {
        method: "hello".into(),
        metadata: Some(Metadata {
            src: Some(Topic {
                party_id: site.party_id.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    tx.send(hello)
        .await
        .map_err(|_| Error::Internal("polling sender closed".into()))?;
    let hop = format!("exchange {exchange} (polling)");
    let mut inbound = client
        .polling(ReceiverStream::new(rx))
        .await
        .map_err(|s| Error::hop(hop.clone(), s))?
        .into_inner();
    tracing::info!(exchange = %exchange, "polling stream open");
    let peer = Peer {
        addr: None,
        secure: true,
        hops: 1,
        trusted: false,
    };
    let mut calls: HashMap<i64, mpsc::Sender<Result<Packet, Status>>> = HashMap::new();
    // Calls whose local push already ended (with an error it answered): their remaining
    // frames are dropped until `push_end`, never started as a new push.
    let mut ended: std::collections::HashSet<i64> = Default::default();
    let mut shutdown = site.shutdown.clone();
    loop {
        let frame = tokio::select! {
            f = inbound.message() => f.map_err(|s| Error::hop(hop.clone(), s))?,
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(f) = frame else { return Ok(()) };
        let seq = f.seq;
        match f.method.as_str() {
            "push" if ended.contains(&seq) => {}
            "push" => {
                let sender = calls.entry(seq).or_insert_with(|| {
                    let (ptx, prx) = mpsc::channel(4);
                    let (site, tx) = (site.clone(), tx.clone());
                    tokio::spawn(async move {
                        let answer = match site.push(ReceiverStream::new(prx), peer).await {
                            Ok(m) => PollingFrame {
                                method: "push_ack".into(),
                                seq,
                                metadata: Some(m),
                                ..Default::default()
                            },
                            Err(e) => error_frame(seq, &e),
                        };
                        let _ = tx.send(answer).await;
                    });
                    ptx
                });
                let item = f
                    .packet
                    .ok_or_else(|| Status::invalid_argument("a push frame without a packet"));
                if sender.send(item).await.is_err() {
                    // The local push already ended (with an error it has reported).
                    calls.remove(&seq);
                    ended.insert(seq);
                }
            }
            "push_end" => {
                calls.remove(&seq);
                ended.remove(&seq);
            }
            "unaryCall" => {
                let (site, tx) = (site.clone(), tx.clone());
                tokio::spawn(async move {
                    let answer = match f.packet {
                        None => error_frame(
                            seq,
                            &Error::BadPacket("a unaryCall frame without a packet".into()),
                        ),
                        Some(p) => match site.unary(p, peer).await {
                            Ok(p) => PollingFrame {
                                method: "unaryCall_ack".into(),
                                seq,
                                packet: Some(p),
                                ..Default::default()
                            },
                            Err(e) => error_frame(seq, &e),
                        },
                    };
                    let _ = tx.send(answer).await;
                });
            }
            other => {
                tracing::warn!(method = %other, "unknown polling frame ignored");
            }
        }
    }
}
