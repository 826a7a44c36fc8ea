//! Polling mode, as EggRoll's roll-site speaks it: a party that cannot accept connections (the
//! poller) dials out to an exchange and holds `polling` streams open to it; the exchange sends
//! the pushes and unary calls for that party down those streams.
//!
//! The frames and their order are EggRoll's (2.x `PollingFrame` flow), so our exchange serves
//! EggRoll pollers and our poller works with an EggRoll exchange:
//!
//! * **One call per stream.** The poller opens a stream and sends one frame whose
//!   `metadata.dst.partyId` is its own party (`method` empty, `seq` 0). The stream then waits,
//!   idle, for one call for that party. After the call (or when it has been idle too long:
//!   `rollsite.polling_idle_s` at the exchange, 240 s; `polling_no_data_s` at the poller,
//!   300 s as in EggRoll) the stream ends and the poller opens a new one. A poller keeps
//!   several streams open at once (`rollsite.polling_concurrency`, 16; in EggRoll
//!   `eggroll.rollsite.polling.concurrency`), so calls run side by side.
//! * **Push.** The exchange sends `push` frames (`seq` 1, 2, ...; `packet` = the next packet of
//!   the push), then one `sub_stream_finish` frame. The poller runs the push locally and
//!   answers with one `push` frame, `seq` 1, whose `metadata` is the push's answer, then ends
//!   its side of the stream.
//! * **Unary call.** The exchange sends one `unary_call` frame (`seq` 1, `packet` = the
//!   request); the poller answers with a `unary_call` frame, `seq` 1, `packet` = the response.
//! * **Errors.** The poller reports a failed call with an `error_poison` frame whose `desc` is
//!   the error text (EggRoll: `Error from partyId=<id>:` and a Java stack trace). EggRoll has no
//!   field for a gRPC code: ours ends `desc` with a line `(grpc status code <n>)`, which our
//!   exchange reads back; an EggRoll poller's error arrives as UNKNOWN with its text. The
//!   exchange reports a failure of the sender's stream mid-push with a `push` frame whose
//!   packet body key is `[roll site transfer exception]` and whose value is the error text,
//!   and then ends the stream.
//!
//! Guarantees kept from our earlier (non-EggRoll) framing: each call has a stream of its own,
//! so answers cannot be mismatched; a dead stream fails its call with UNAVAILABLE; a call for a
//! party with no stream open fails with UNAVAILABLE after a short grace; the poller reconnects
//! with backoff. Our exchange stops a push as soon as the poller reports an error; EggRoll's
//! exchange reads that report only after relaying the rest of the push, so our poller keeps
//! reading (and dropping) frames until the exchange ends the stream (for up to 30 s).

use crate::error::{Error, Result};
use crate::peer::Peer;
use crate::route::RouteTable;
use eggroll_core::sync::Mutex;
use eggroll_proto::proxy::{Data, Metadata, Packet, PollingFrame};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Status, Streaming};

/// `PollingFrame.method` values, as EggRoll names them.
pub mod method {
    /// A packet of a push (exchange to poller), or the push's answer (poller to exchange).
    pub const PUSH: &str = "push";
    /// The end of a push (exchange to poller).
    pub const SUB_STREAM_FINISH: &str = "sub_stream_finish";
    /// A unary call (exchange to poller), or its answer (poller to exchange).
    pub const UNARY_CALL: &str = "unary_call";
    /// A failed call (poller to exchange); `desc` says why.
    pub const ERROR_POISON: &str = "error_poison";
}

/// `Packet.body.key` of a packet that carries an error instead of data (EggRoll's marker).
pub const EXCEPTION_KEY: &str = "[roll site transfer exception]";

/// How long a call waits for a party that has no stream open at all (a poller reconnecting
/// between calls opens a new one within milliseconds).
const NO_STREAM_GRACE: Duration = Duration::from_secs(2);
/// How long either side waits for the other to end a stream after the answer.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// Marks the gRPC code at the end of our `error_poison` text.
const CODE_MARK: &str = "(grpc status code ";
/// EggRoll's `error_poison` text starts with this line, then a line of dashes.
const DESC_RULE: &str = "-------------\n";

type OutTx = mpsc::Sender<Result<PollingFrame, Status>>;
type Parties = Arc<Mutex<HashMap<String, PartyStreams>>>;

/// The polling streams of one party.
#[derive(Default)]
struct PartyStreams {
    /// Streams waiting for a call, oldest first.
    idle: VecDeque<Idle>,
    /// Streams open (idle or carrying a call).
    live: usize,
}

/// An idle stream: send it a reply channel and it hands itself over.
struct Idle {
    id: u64,
    handoff: oneshot::Sender<oneshot::Sender<Tunnel>>,
}

/// A polling stream taken for one call.
struct Tunnel {
    tx: OutTx,
    inbound: Streaming<PollingFrame>,
    _live: Live,
}

/// Counts a stream as open while it lives.
struct Live {
    parties: Parties,
    party: String,
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut map = self.parties.lock();
        if let Some(s) = map.get_mut(&self.party) {
            s.live = s.live.saturating_sub(1);
            if s.live == 0 && s.idle.is_empty() {
                map.remove(&self.party);
            }
        }
    }
}

/// The exchange side: the polling streams open to us, by party.
#[derive(Default)]
pub struct Hub {
    parties: Parties,
    arrived: Arc<Notify>,
    next_id: AtomicU64,
}

/// The `error_poison` frame reporting `e` (EggRoll's shape; our code at the end of `desc`).
pub(crate) fn error_frame(party: &str, e: &Error) -> PollingFrame {
    PollingFrame {
        method: method::ERROR_POISON.into(),
        desc: format!(
            "Error from partyId={party}:\n{DESC_RULE}{e}\n{CODE_MARK}{})",
            e.code() as i32
        ),
        ..Default::default()
    }
}

/// The status an `error_poison` frame's `desc` describes: ours carry a code, EggRoll's do not.
pub(crate) fn poison_status(desc: &str) -> Status {
    let body = desc.split_once(DESC_RULE).map_or(desc, |(_, b)| b);
    if let Some((text, code)) = body.rsplit_once(CODE_MARK) {
        if let Ok(n) = code.trim().trim_end_matches(')').parse::<i32>() {
            return Status::new(Code::from_i32(n), text.trim_end().to_string());
        }
    }
    Status::unknown(format!("the polling party reported: {}", desc.trim()))
}

pub(crate) fn is_exception(p: &Packet) -> bool {
    p.body
        .as_ref()
        .is_some_and(|b| b.key.contains(EXCEPTION_KEY))
}

pub(crate) fn exception_text(p: &Packet) -> String {
    p.body
        .as_ref()
        .map(|b| String::from_utf8_lossy(&b.value).into_owned())
        .unwrap_or_default()
}

/// Waits (bounded) for the other side to end `inbound`, ignoring what it still sends.
pub(crate) async fn drain(inbound: &mut Streaming<PollingFrame>) {
    let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
    while let Ok(Ok(Some(_))) = tokio::time::timeout_at(deadline, inbound.message()).await {}
}

impl Tunnel {
    async fn send(&self, f: PollingFrame, hop: &str) -> Result<()> {
        self.tx.send(Ok(f)).await.map_err(|_| {
            Error::hop(
                hop.to_string(),
                Status::unavailable("its polling stream closed during the call"),
            )
        })
    }

    /// The next frame of the poller's answer; an `error_poison` frame becomes its error.
    async fn answer(&mut self, hop: &str) -> Result<PollingFrame> {
        let closed = |why: String| Error::hop(hop.to_string(), Status::unavailable(why));
        match self.inbound.message().await {
            Ok(Some(f)) if f.method == method::ERROR_POISON => {
                Err(Error::hop(hop.to_string(), poison_status(&f.desc)))
            }
            Ok(Some(f)) if f.seq == 1 => Ok(f),
            Ok(Some(f)) => Err(Error::hop(
                hop.to_string(),
                Status::internal(format!(
                    "the poller answered with a frame of method {:?} and seq {}; an answer has \
                     seq 1 (or method error_poison)",
                    f.method, f.seq
                )),
            )),
            Ok(None) => Err(closed(
                "its polling stream closed during the call, before an answer".into(),
            )),
            Err(s) => Err(closed(format!(
                "its polling stream failed during the call: {}",
                s.message()
            ))),
        }
    }

    /// Ends the stream once the poller has ended its side (as EggRoll's exchange does).
    fn finish(mut self) {
        tokio::spawn(async move {
            drain(&mut self.inbound).await;
        });
    }
}

impl Hub {
    /// Ends every idle polling stream (at shutdown); streams carrying a call finish it.
    pub fn close_all(&self) {
        let mut map = self.parties.lock();
        for s in map.values_mut() {
            s.idle.clear();
        }
    }

    /// Whether `party` holds a polling stream open to us now.
    pub fn is_connected(&self, party: &str) -> bool {
        self.parties.lock().get(party).is_some_and(|s| s.live > 0)
    }

    /// Takes an idle stream of `party`, waiting while its streams are busy.
    async fn take(&self, party: &str) -> Result<Tunnel> {
        let mut no_stream_since: Option<Instant> = None;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (idle, live) = {
                let mut map = self.parties.lock();
                match map.get_mut(party) {
                    Some(s) => (s.idle.pop_front(), s.live),
                    None => (None, 0),
                }
            };
            if let Some(idle) = idle {
                let (give, take) = oneshot::channel();
                if idle.handoff.send(give).is_ok() {
                    if let Ok(t) = take.await {
                        return Ok(t);
                    }
                }
                // That stream ended meanwhile: try the next.
                continue;
            }
            if live > 0 {
                no_stream_since = None;
            } else if no_stream_since.get_or_insert_with(Instant::now).elapsed() >= NO_STREAM_GRACE
            {
                return Err(Error::hop(
                    format!("polling party {party}"),
                    Status::unavailable(format!(
                        "party {party} is a polling party and has no polling stream open to \
                         this roll-site; start its roll-site with polling_exchange pointing here"
                    )),
                ));
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    /// Sends a push to a polling party over one of its streams.
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
        let hop = format!("polling party {party}");
        let mut t = self.take(party).await?;
        let header = first.header.clone();
        let frame = |seq: i64, method: &str, packet: Option<Packet>| PollingFrame {
            method: method.into(),
            seq,
            packet,
            ..Default::default()
        };
        let mut seq = 1;
        t.send(frame(seq, method::PUSH, Some(first)), &hop).await?;
        let mut rest = rest;
        let mut sending = true;
        loop {
            tokio::select! {
                item = rest.next(), if sending => {
                    seq += 1;
                    let failed = match item {
                        Some(Ok(p)) => match check(&p) {
                            Ok(()) => {
                                t.send(frame(seq, method::PUSH, Some(p)), &hop).await?;
                                None
                            }
                            Err(e) => Some(e),
                        },
                        Some(Err(s)) => Some(Error::hop("the sender's stream", s)),
                        None => {
                            // EggRoll's end frame repeats the last packet, which its poller
                            // ignores; ours carries only the push's header.
                            let end = Packet { header: header.clone(), body: None };
                            t.send(frame(seq, method::SUB_STREAM_FINISH, Some(end)), &hop).await?;
                            sending = false;
                            None
                        }
                    };
                    if let Some(e) = failed {
                        // Tell the poller to drop the push (EggRoll's exception packet), then
                        // end the stream.
                        let p = Packet {
                            header: header.clone(),
                            body: Some(Data {
                                key: EXCEPTION_KEY.into(),
                                value: e.to_string().into_bytes().into(),
                            }),
                        };
                        let _ = t.send(frame(seq, method::PUSH, Some(p)), &hop).await;
                        return Err(e);
                    }
                }
                answer = t.answer(&hop) => {
                    let answer = answer?;
                    if sending {
                        return Err(Error::hop(
                            hop,
                            Status::internal(
                                "the poller acknowledged the push before its sub_stream_finish",
                            ),
                        ));
                    }
                    t.finish();
                    return Ok(answer.metadata.unwrap_or_default());
                }
            }
        }
    }

    /// Sends a unary call to a polling party over one of its streams.
    pub async fn unary(&self, party: &str, p: Packet) -> Result<Packet> {
        let hop = format!("polling party {party}");
        let mut t = self.take(party).await?;
        let call = PollingFrame {
            method: method::UNARY_CALL.into(),
            seq: 1,
            packet: Some(p),
            ..Default::default()
        };
        t.send(call, &hop).await?;
        let answer = t.answer(&hop).await?;
        t.finish();
        Ok(answer.packet.unwrap_or_default())
    }

    /// Accepts a polling stream: its first frame names the party (`metadata.dst.partyId`, as
    /// EggRoll's poller sends it); it then waits for one call for that party.
    pub async fn accept(
        &self,
        table: &RouteTable,
        exchange_idle: Duration,
        mut inbound: Streaming<PollingFrame>,
        peer: Peer,
    ) -> Result<ReceiverStream<Result<PollingFrame, Status>>> {
        let first = tokio::time::timeout(Duration::from_secs(30), inbound.message())
            .await
            .map_err(|_| Error::BadPacket("no first polling frame within 30 s".into()))?
            .map_err(|s| Error::hop("the polling client's stream", s))?
            .ok_or_else(|| {
                Error::BadPacket("the polling stream ended before its first frame".into())
            })?;
        let meta = first.metadata.unwrap_or_default();
        let party = [meta.dst.as_ref(), meta.src.as_ref()]
            .into_iter()
            .flatten()
            .map(|t| t.party_id.clone())
            .find(|p| !p.is_empty())
            .unwrap_or_default();
        if party.is_empty() {
            return Err(Error::BadPacket(
                "a polling stream starts with a frame naming the polling party in \
                 metadata.dst.partyId"
                    .into(),
            ));
        }
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (handoff, mut wanted) = oneshot::channel::<oneshot::Sender<Tunnel>>();
        {
            let mut map = self.parties.lock();
            let s = map.entry(party.clone()).or_default();
            s.live += 1;
            s.idle.push_back(Idle { id, handoff });
        }
        let live = Live {
            parties: self.parties.clone(),
            party: party.clone(),
        };
        self.arrived.notify_waiters();
        tracing::debug!(party = %party, "polling stream open");
        let parties = self.parties.clone();
        tokio::spawn(async move {
            let idle_end = tokio::time::sleep(exchange_idle);
            tokio::pin!(idle_end);
            let give = loop {
                tokio::select! {
                    w = &mut wanted => break w.ok(),
                    m = inbound.message() => match m {
                        Ok(Some(f)) if f.method == method::ERROR_POISON => {
                            tracing::warn!(party = %party, error = %f.desc,
                                "an idle polling stream reported an error");
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break None,
                    },
                    _ = &mut idle_end => break None,
                }
            };
            match give {
                Some(give) => {
                    let _ = give.send(Tunnel {
                        tx,
                        inbound,
                        _live: live,
                    });
                }
                None => {
                    let mut map = parties.lock();
                    if let Some(s) = map.get_mut(&party) {
                        s.idle.retain(|i| i.id != id);
                    }
                    // Dropping `tx` ends the stream with OK and no call, as EggRoll's
                    // exchange does when no call came.
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
