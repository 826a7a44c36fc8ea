//! Roll-site packets on the wire: the transfer key, `RollSiteHeader` in `Metadata.ext`, the
//! wire constants, the body format of table batches (the one pair codec, [`crate::pairs`]),
//! the one check of a batch size against the message limit, and the retry policy of pushes.
//!
//! Shared by the roll-site (`eggroll-rollsite`), the federation client
//! (`eggroll-federation`) and the eggs, which push their partitions to the roll-site
//! themselves in distributed mode (`eggroll_eggpair::push`).

use crate::error::{CoreError, Result};
use bytes::Bytes;
use eggroll_proto::proxy::{Data, Metadata, Packet, Topic};
use eggroll_proto::transfer::RollSiteHeader;
use prost::Message;
use std::time::Duration;
use tonic::{Code, Status};

/// `dataType` of an object (bytes, chunked).
pub const OBJECT: &str = "object";
/// `dataType` of a table (pair batches, by partition).
pub const TABLE: &str = "table";
/// `stage` of the last packet of a partition.
pub const FINISH: &str = "finish";
/// Header option carrying an object's total size.
pub const SIZE_OPTION: &str = "size";
/// Header option carrying the size of every batch of an object but the last: the receiver
/// writes each batch at its offset in one file, and a get maps that file instead of copying.
pub const CHUNK_OPTION: &str = "chunk_bytes";
/// Name of the transfer by which a party tells another it gave up on a session: gets
/// waiting on that party fail at once with its reason.
pub const ABORT_NAME: &str = "__abort__";
/// Longest accepted field of a transfer key.
const MAX_FIELD: usize = 512;
/// Most partitions a transfer may have.
pub const MAX_PARTITIONS: i32 = 1 << 16;

/// Header option naming where a received table is: `namespace/name` in the party's eggs
/// (the roll-site wrote it there as it arrived).
pub const EGG_TABLE_OPTION: &str = "egg_table";
/// Header option of a transfer of a byte table: its FATE codes, `key,value,partitioner`.
pub const FATE_TYPES_OPTION: &str = "fate_types";
/// `Metadata.operator` of a local get's request to drop a transfer it has taken.
pub const OP_CLEAR: &str = "rs_clear";
/// `Metadata.operator` of a federation context's sign of life, sent while it lives to the
/// parties it exchanges with: a get waiting on a party whose signs stopped fails early.
pub const OP_HEARTBEAT: &str = "rs_heartbeat";
/// `Metadata.operator` of `eggroll ping`: every roll-site on the route answers with its own
/// record and its next hop's, and none stores it (`eggroll_rollsite::ping`).
pub const OP_PING: &str = "rs_ping";
/// Name of the transfer key a heartbeat is addressed by (it is routed, never stored).
pub const HEARTBEAT_NAME: &str = "__heartbeat__";
/// Header option of a heartbeat: how often its sender sends them, in milliseconds.
pub const INTERVAL_OPTION: &str = "interval_ms";
/// Longest abort reason kept, in bytes.
pub const MAX_ABORT_REASON: usize = 4096;
/// Room every message keeps for its header and framing: a batch body may fill the rest.
pub const HEADER_ROOM: usize = 64 << 10;

/// HTTP/2 flow-control window per stream of a transfer link: large, so one stream can fill
/// a fast link.
pub const STREAM_WINDOW: u32 = 16 << 20;
/// HTTP/2 flow-control window per connection of a transfer link.
pub const CONNECTION_WINDOW: u32 = 32 << 20;
/// Largest HTTP/2 DATA frame a roll-site accepts: with h2's default of 16 KiB, a 4 MiB
/// packet is 256 frames, each a wakeup and a buffer; 1 MiB frames cut that overhead.
pub const MAX_FRAME: u32 = 1 << 20;

/// Checks that batches of `batch_body_bytes` fit in messages of `max_message_bytes` with
/// their header: the one place that says so. Err says what to change.
pub fn check_batch_size(
    batch_body_bytes: u64,
    max_message_bytes: u64,
) -> std::result::Result<(), String> {
    let fits = batch_body_bytes > 0
        && batch_body_bytes.saturating_add(HEADER_ROOM as u64) <= max_message_bytes
        && max_message_bytes <= u32::MAX as u64;
    if fits {
        return Ok(());
    }
    Err(format!(
        "batch_body_bytes {batch_body_bytes} must be above 0 and at least 64 KiB below \
         max_message_bytes {max_message_bytes} (at most 4 GiB)"
    ))
}

/// What identifies one transfer: session, name, tag, source and destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransferKey {
    /// Session (job) id.
    pub session: String,
    /// Variable name.
    pub name: String,
    /// Tag (e.g. the iteration).
    pub tag: String,
    /// Sender's role.
    pub src_role: String,
    /// Sender's party.
    pub src_party: String,
    /// Receiver's role.
    pub dst_role: String,
    /// Receiver's party.
    pub dst_party: String,
}

impl TransferKey {
    /// EggRoll's "rs key": the fields joined by `#` behind `__rsk`.
    pub fn rs_key(&self) -> String {
        format!(
            "__rsk#{}#{}#{}#{}#{}#{}#{}",
            self.session,
            self.name,
            self.tag,
            self.src_role,
            self.src_party,
            self.dst_role,
            self.dst_party
        )
    }

    /// The key of the abort its sender would send for this transfer's session.
    pub fn abort(&self) -> Self {
        Self {
            name: ABORT_NAME.into(),
            tag: String::new(),
            ..self.clone()
        }
    }

    /// The key of a header, validated.
    pub fn from_header(h: &RollSiteHeader) -> Result<Self> {
        let key = Self {
            session: h.roll_site_session_id.clone(),
            name: h.name.clone(),
            tag: h.tag.clone(),
            src_role: h.src_role.clone(),
            src_party: h.src_party_id.clone(),
            dst_role: h.dst_role.clone(),
            dst_party: h.dst_party_id.clone(),
        };
        let fields = [
            ("rollSiteSessionId", &key.session, false),
            ("name", &key.name, false),
            ("tag", &key.tag, true),
            ("srcRole", &key.src_role, false),
            ("srcPartyId", &key.src_party, false),
            ("dstRole", &key.dst_role, false),
            ("dstPartyId", &key.dst_party, false),
        ];
        for (field, value, may_be_empty) in fields {
            if value.is_empty() && !may_be_empty {
                return Err(CoreError::BadPacket(format!(
                    "RollSiteHeader.{field} in Metadata.ext is empty"
                )));
            }
            if value.len() > MAX_FIELD || value.chars().any(char::is_control) {
                return Err(CoreError::BadPacket(format!(
                    "RollSiteHeader.{field} in Metadata.ext is over {MAX_FIELD} bytes or has \
                     control characters"
                )));
            }
        }
        Ok(key)
    }

    /// A header for this transfer (the caller fills in the partition and batch fields).
    pub fn header(&self, data_type: &str) -> RollSiteHeader {
        RollSiteHeader {
            roll_site_session_id: self.session.clone(),
            name: self.name.clone(),
            tag: self.tag.clone(),
            src_role: self.src_role.clone(),
            src_party_id: self.src_party.clone(),
            dst_role: self.dst_role.clone(),
            dst_party_id: self.dst_party.clone(),
            data_type: data_type.to_string(),
            ..Default::default()
        }
    }

    /// The packet `Metadata` EggRoll puts around a header: src and dst topics, ext.
    pub fn metadata(&self, header: &RollSiteHeader) -> Metadata {
        Metadata {
            src: Some(Topic {
                name: self.name.clone(),
                party_id: self.src_party.clone(),
                role: self.src_role.clone(),
                callback: None,
            }),
            dst: Some(Topic {
                name: self.name.clone(),
                party_id: self.dst_party.clone(),
                role: self.dst_role.clone(),
                callback: None,
            }),
            seq: header.batch_seq,
            ext: header.encode_to_vec(),
            version: "2.0.0".into(),
            ..Default::default()
        }
    }

    /// A whole packet.
    pub fn packet(&self, header: &RollSiteHeader, body: impl Into<Bytes>) -> Packet {
        Packet {
            header: Some(self.metadata(header)),
            body: Some(Data {
                key: self.rs_key(),
                value: body.into(),
            }),
        }
    }
}

/// Where a packet goes: the destination topic of its header.
pub fn destination(p: &Packet) -> Result<(&str, &str)> {
    let h = p
        .header
        .as_ref()
        .ok_or_else(|| CoreError::BadPacket("the packet has no header (Packet.header)".into()))?;
    let dst = h.dst.as_ref().ok_or_else(|| {
        CoreError::BadPacket("the header has no destination (Metadata.dst)".into())
    })?;
    if dst.party_id.is_empty() {
        return Err(CoreError::BadPacket("Metadata.dst.partyId is empty".into()));
    }
    if dst.party_id.len() > MAX_FIELD || dst.role.len() > MAX_FIELD {
        return Err(CoreError::BadPacket(
            "Metadata.dst.partyId or role is too long".into(),
        ));
    }
    let role = if dst.role.is_empty() {
        "default"
    } else {
        &dst.role
    };
    Ok((&dst.party_id, role))
}

/// The decoded `RollSiteHeader` of a packet addressed to roll-site storage, validated.
pub fn rollsite_header(m: &Metadata) -> Result<RollSiteHeader> {
    if m.ext.is_empty() {
        return Err(CoreError::BadPacket(
            "Metadata.ext is empty: roll-site packets carry a serialized RollSiteHeader there"
                .into(),
        ));
    }
    let h = RollSiteHeader::decode(&m.ext[..]).map_err(|e| {
        CoreError::BadPacket(format!(
            "Metadata.ext is not a serialized RollSiteHeader: {e}"
        ))
    })?;
    if h.data_type != OBJECT && h.data_type != TABLE {
        return Err(CoreError::BadPacket(format!(
            "RollSiteHeader.dataType is {:?}; this roll-site stores \"{OBJECT}\" and \"{TABLE}\"",
            h.data_type
        )));
    }
    if !(1..=MAX_PARTITIONS).contains(&h.total_partitions) {
        return Err(CoreError::BadPacket(format!(
            "RollSiteHeader.totalPartitions is {}; it must be 1..={MAX_PARTITIONS}",
            h.total_partitions
        )));
    }
    if h.partition_id < 0 || h.partition_id >= h.total_partitions {
        return Err(CoreError::BadPacket(format!(
            "RollSiteHeader.partitionId {} is outside 0..{}",
            h.partition_id, h.total_partitions
        )));
    }
    if h.data_type == OBJECT && h.total_partitions != 1 {
        return Err(CoreError::BadPacket(
            "an object has exactly one partition (RollSiteHeader.totalPartitions = 1)".into(),
        ));
    }
    if !(0..1 << 40).contains(&h.batch_seq) {
        return Err(CoreError::BadPacket(format!(
            "RollSiteHeader.batchSeq {} is negative or absurdly large",
            h.batch_seq
        )));
    }
    Ok(h)
}

/// One batch to push: its partition, sequence within the partition, last-of-partition mark
/// and bytes.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// Partition (0 for objects).
    pub partition: u32,
    /// Sequence of the batch within its partition.
    pub seq: u64,
    /// Whether it is the partition's last batch.
    pub finish: bool,
    /// The bytes.
    pub body: Bytes,
}

/// The packet that carries `chunk` of a transfer: `base` (the transfer's header, with its
/// data type and partition count) completed with the chunk's partition, batch and stream
/// sequence, and the finish stage on a partition's last batch.
pub fn chunk_packet(
    key: &TransferKey,
    base: &RollSiteHeader,
    chunk: &Chunk,
    batches_per_stream: u64,
) -> Packet {
    let mut h = base.clone();
    h.partition_id = chunk.partition as i32;
    h.batch_seq = chunk.seq as i64;
    h.stream_seq = (chunk.seq / batches_per_stream.max(1)) as i64;
    if chunk.finish {
        h.stage = FINISH.into();
        h.total_batches = chunk.seq as i64 + 1;
    }
    key.packet(&h, chunk.body.clone())
}

/// Cuts one partition's pairs into table batches of about `batch_body_bytes`.
pub struct TableBatches {
    partition: u32,
    limit: usize,
    max_pair: usize,
    seq: u64,
    buf: Vec<u8>,
}

impl TableBatches {
    /// Batches of partition `partition`; a pair must fit in `max_message_bytes` less 64 KiB
    /// of header room.
    pub fn new(partition: u32, batch_body_bytes: usize, max_message_bytes: usize) -> Self {
        let limit = batch_body_bytes.max(1);
        Self {
            partition,
            limit,
            max_pair: max_message_bytes.saturating_sub(HEADER_ROOM),
            seq: 0,
            buf: Vec::with_capacity(limit + 1024),
        }
    }

    /// Adds a pair; returns the full batch to send first when the pair does not fit in it.
    pub fn push(&mut self, k: &[u8], v: &[u8]) -> Result<Option<Chunk>> {
        let size = crate::pairs::encoded_len(k.len(), v.len());
        if size > self.max_pair {
            return Err(CoreError::TooLarge(format!(
                "a pair of {} bytes in partition {} does not fit in a message of {} bytes \
                 (max_message_bytes)",
                k.len() + v.len(),
                self.partition,
                self.max_pair + HEADER_ROOM
            )));
        }
        let mut full = None;
        if !self.buf.is_empty() && self.buf.len() + size > self.limit {
            let body = std::mem::replace(&mut self.buf, Vec::with_capacity(self.limit + 1024));
            full = Some(self.chunk(false, body));
        }
        crate::pairs::push(&mut self.buf, k, v);
        Ok(full)
    }

    /// The partition's last batch, marked finish (empty for an empty partition).
    pub fn finish(mut self) -> Chunk {
        let body = std::mem::take(&mut self.buf);
        self.chunk(true, body)
    }

    fn chunk(&mut self, finish: bool, body: Vec<u8>) -> Chunk {
        let c = Chunk {
            partition: self.partition,
            seq: self.seq,
            finish,
            body: Bytes::from(body),
        };
        self.seq += 1;
        c
    }
}

/// How a call that failed with UNAVAILABLE or a broken connection is retried, as EggRoll's
/// `push.max.retry` / `long.retry`: waits doubling from `retry_wait`, the last `long_retry`
/// of `max_retry` waiting `long_retry_wait`.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries in all.
    pub max_retry: u32,
    /// How many of those wait `long_retry_wait`.
    pub long_retry: u32,
    /// First retry wait; doubles per retry.
    pub retry_wait: Duration,
    /// Wait before a long retry.
    pub long_retry_wait: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (from 0), or `None` when retries are spent.
    pub fn wait(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_retry {
            return None;
        }
        let long_from = self.max_retry.saturating_sub(self.long_retry);
        Some(if attempt >= long_from {
            self.long_retry_wait
        } else {
            self.retry_wait * 2u32.saturating_pow(attempt.min(16))
        })
    }

    /// Calls `call` until it succeeds, fails with anything but a [`transient`] failure, or the
    /// retries are spent, waiting between tries as this policy says and telling `on_retry(attempt,
    /// wait, status)` first; a failure comes with how many retries were made.
    pub async fn run<T, F, Fut>(
        &self,
        call: F,
        on_retry: impl Fn(u32, Duration, &Status),
    ) -> std::result::Result<T, (Status, u32)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Status>>,
    {
        self.run_while(call, transient, on_retry).await
    }

    /// [`RetryPolicy::run`] for any error: retries while `retriable` says a failure may pass.
    pub async fn run_while<T, E, F, Fut>(
        &self,
        mut call: F,
        retriable: impl Fn(&E) -> bool,
        on_retry: impl Fn(u32, Duration, &E),
    ) -> std::result::Result<T, (E, u32)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, E>>,
    {
        let mut attempt = 0;
        loop {
            let e = match call().await {
                Ok(t) => return Ok(t),
                Err(e) => e,
            };
            let Some(wait) = retriable(&e).then(|| self.wait(attempt)).flatten() else {
                return Err((e, attempt));
            };
            attempt += 1;
            on_retry(attempt, wait, &e);
            tokio::time::sleep(wait).await;
        }
    }
}

/// " after N retries" when there were any, for error messages.
pub fn after_retries(attempts: u32) -> String {
    match attempts {
        0 => String::new(),
        n => format!(" after {n} retries"),
    }
}

/// Whether a call may succeed when made again: the server said UNAVAILABLE, or the connection
/// broke under the call (the server was killed or restarted mid-stream). tonic reports a
/// broken connection as UNKNOWN, INTERNAL or CANCELLED, made on this side (a source error, or
/// its "transport error" / "h2 protocol error" wording), never as a status a server sent.
pub fn transient(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown | Code::Internal | Code::Cancelled => {
            let m = status.message();
            std::error::Error::source(status).is_some()
                || m.starts_with("transport error")
                || m.starts_with("h2 protocol error")
        }
        _ => false,
    }
}

/// A hop of a transfer that failed (the local roll-site, or one behind it): which one, and
/// what it answered. A [`transient`] failure is reported as UNAVAILABLE, whatever tonic called
/// it, so that every caller up the route retries it.
#[derive(Debug, thiserror::Error)]
#[error("{hop} failed: {}", describe(status))]
pub struct HopFailed {
    /// Which hop: "local roll-site 127.0.0.1:9370", "next hop 10.0.0.2:9370 (route for party 10000)".
    pub hop: String,
    /// What it answered, with the causes of a transport failure spelled out.
    pub status: Box<Status>,
}

impl HopFailed {
    /// The failure of `hop`, which answered `status`.
    pub fn new(hop: impl Into<String>, status: Status) -> Self {
        let unavailable = transient(&status);
        let mut status = with_causes(status);
        if unavailable && status.code() != Code::Unavailable {
            status = Status::unavailable(format!("connection lost: {}", status.message()));
        }
        HopFailed {
            hop: hop.into(),
            status: Box::new(status),
        }
    }

    /// The hop's gRPC code.
    pub fn code(&self) -> tonic::Code {
        self.status.code()
    }
}

/// Shortens a status to "CODE: message" for error texts.
pub fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The status with the causes of a transport failure in its message: tonic says only
/// "transport error"; its causes say what went wrong (refused connection, unknown
/// certificate authority, ...).
pub fn with_causes(status: Status) -> Status {
    let mut msg = status.message().to_string();
    let mut cause = std::error::Error::source(&status);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    Status::new(status.code(), msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_reject_truncation() {
        let mut b = Vec::new();
        crate::pairs::push(&mut b, b"k1", b"value one");
        crate::pairs::push(&mut b, b"", b"");
        crate::pairs::push(&mut b, b"k3", &[7u8; 300]);
        let p = crate::pairs::collect(&b).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], (&b"k1"[..], &b"value one"[..]));
        assert_eq!(p[2].1.len(), 300);
        for cut in 1..b.len() {
            if cut == 19 || cut == 27 {
                continue; // pair boundaries
            }
            assert!(crate::pairs::collect(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn table_batches_cut_at_the_limit_and_mark_the_last() {
        let mut b = TableBatches::new(3, 40, 1 << 20);
        let mut chunks = Vec::new();
        for i in 0..10u8 {
            if let Some(c) = b.push(&[i], &[i; 10]).unwrap() {
                chunks.push(c);
            }
        }
        chunks.push(b.finish());
        // 19 bytes a pair, 40 a batch: two pairs per batch.
        assert_eq!(chunks.len(), 5);
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!((c.partition, c.seq, c.finish), (3, i as u64, i == 4));
            assert_eq!(crate::pairs::collect(&c.body).unwrap().len(), 2);
        }
        let empty = TableBatches::new(0, 40, 1 << 20).finish();
        assert!(empty.finish && empty.body.is_empty());
        let mut small = TableBatches::new(0, 40, 70 << 10);
        assert!(small.push(b"k", &vec![0; 8 << 10]).is_err());
    }

    #[test]
    fn retries_double_then_wait_long_then_stop() {
        let r = RetryPolicy {
            max_retry: 4,
            long_retry: 1,
            retry_wait: Duration::from_millis(10),
            long_retry_wait: Duration::from_secs(1),
        };
        let waits: Vec<_> = (0..5).map(|a| r.wait(a)).collect();
        assert_eq!(
            waits,
            vec![
                Some(Duration::from_millis(10)),
                Some(Duration::from_millis(20)),
                Some(Duration::from_millis(40)),
                Some(Duration::from_secs(1)),
                None
            ]
        );
    }

    #[test]
    fn broken_connections_are_transient_and_a_servers_answers_are_not() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let broken = Status::from_error(Box::new(io));
        assert_eq!(broken.code(), Code::Unknown);
        assert!(transient(&broken));
        assert!(transient(&Status::unavailable("down")));
        assert!(transient(&Status::internal(
            "h2 protocol error: error reading a body from connection"
        )));
        assert!(transient(&Status::unknown("transport error")));
        // What a server answered, unknown or internal included, is its answer.
        assert!(!transient(&Status::internal("partition 3: disk full")));
        assert!(!transient(&Status::unknown("the egg panicked")));
        assert!(!transient(&Status::cancelled("Timeout expired")));
        assert!(!transient(&Status::not_found("no such table")));
        // A hop that lost its connection says so, as UNAVAILABLE, with the cause.
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let h = HopFailed::new(
            "local roll-site 127.0.0.1:1",
            Status::from_error(Box::new(io)),
        );
        assert_eq!(h.code(), Code::Unavailable);
        assert!(
            h.to_string().contains("connection lost: broken pipe"),
            "{h}"
        );
        let h = HopFailed::new("next hop", Status::internal("disk full"));
        assert_eq!(h.code(), Code::Internal);
    }

    #[test]
    fn batch_sizes_leave_room_for_the_header() {
        assert!(check_batch_size(4 << 20, 32 << 20).is_ok());
        assert!(check_batch_size((32 << 20) - (64 << 10), 32 << 20).is_ok());
        let e = check_batch_size((32 << 20) - 1, 32 << 20).unwrap_err();
        assert!(e.contains("64 KiB below max_message_bytes"), "{e}");
        assert!(check_batch_size(0, 32 << 20).is_err());
        assert!(check_batch_size(1 << 20, 8 << 30).is_err());
    }

    #[tokio::test]
    async fn a_retried_call_stops_at_the_first_answer_that_is_not_unavailable() {
        let policy = RetryPolicy {
            max_retry: 5,
            long_retry: 0,
            retry_wait: Duration::from_millis(1),
            long_retry_wait: Duration::from_millis(1),
        };
        let calls = std::cell::Cell::new(0);
        let r: std::result::Result<(), _> = policy
            .run(
                || {
                    calls.set(calls.get() + 1);
                    let n = calls.get();
                    async move {
                        Err(match n {
                            1 | 2 => Status::unavailable("down"),
                            _ => Status::not_found("gone"),
                        })
                    }
                },
                |_, _, _| {},
            )
            .await;
        let (s, attempts) = r.unwrap_err();
        assert_eq!((s.code(), attempts, calls.get()), (Code::NotFound, 2, 3));
        assert_eq!(after_retries(attempts), " after 2 retries");
        assert_eq!(describe(&s), "NotFound: gone");
    }

    #[test]
    fn headers_validate() {
        let key = TransferKey {
            session: "s".into(),
            name: "n".into(),
            tag: "t".into(),
            src_role: "guest".into(),
            src_party: "1".into(),
            dst_role: "host".into(),
            dst_party: "2".into(),
        };
        let mut h = key.header(OBJECT);
        h.total_partitions = 1;
        let m = key.metadata(&h);
        assert_eq!(rollsite_header(&m).unwrap(), h);
        assert_eq!(TransferKey::from_header(&h).unwrap(), key);
        assert_eq!(key.rs_key(), "__rsk#s#n#t#guest#1#host#2");
        let mut bad = h.clone();
        bad.partition_id = 1;
        assert!(rollsite_header(&key.metadata(&bad)).is_err());
        let mut bad = h.clone();
        bad.name.clear();
        assert!(TransferKey::from_header(&bad).is_err());
        let mut m2 = m.clone();
        m2.ext = vec![0xff, 0xff, 0xff];
        let e = rollsite_header(&m2).unwrap_err().to_string();
        assert!(e.contains("Metadata.ext"), "{e}");
    }
}
