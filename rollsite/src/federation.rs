//! The algorithm-facing API: `remote` and `get` of objects and tables between parties,
//! through the party's own roll-site.
//!
//! Objects are cut into packets of `batch_body_bytes`; tables travel partition by partition
//! as batches of `(key, value)` pairs, each partition's last packet marked `finish`. Packets
//! go in streams of `batches_per_stream`, several streams in flight; a stream that fails with
//! UNAVAILABLE is sent again after a backoff (the receiver stores each batch under its
//! sequence number, so a stream sent twice is stored once).

use crate::error::{describe, Error, Result};
use crate::forward;
use crate::inbox::EGG_TABLE_OPTION;
use crate::packet::{
    chunk_packet, Chunk, RetryPolicy, TableBatches, TransferKey, ABORT_NAME, CHUNK_OPTION, OBJECT,
    SIZE_OPTION, TABLE,
};
use crate::site::{Peer, Site};
use crate::site::{MAX_ABORT_REASON, OP_CLEAR};
use bytes::Bytes;
use eggroll_core::codec::{decode, encode};
use eggroll_core::config::RollsiteConfig;
use eggroll_core::partitioner::partition_of;
use eggroll_core::CoreError;
use eggroll_eggpair::rollsite_push::{after_retries, retry_unavailable};
use eggroll_proto::meta::PushToRollsite;
use eggroll_proto::proxy::{Conf, Metadata, Packet};
use eggroll_proto::transfer::RollSiteHeader;
use eggroll_rollpair::{Options, RollPair, RollPairContext};
use prost::Message;
use serde::{de::DeserializeOwned, Serialize};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Weak;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// A party in a role.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Party {
    /// Role, e.g. `guest`, `host`, `arbiter`.
    pub role: String,
    /// Party id.
    pub party_id: String,
}

impl Party {
    /// `party_id` in `role`.
    pub fn new(role: &str, party_id: &str) -> Self {
        Self {
            role: role.into(),
            party_id: party_id.into(),
        }
    }
}

/// How a [`Federation`] sends and waits.
#[derive(Clone, Debug)]
pub struct FederationOptions {
    /// Bytes of data per packet.
    pub batch_body_bytes: usize,
    /// Packets per push stream.
    pub batches_per_stream: usize,
    /// Push streams in flight per call.
    pub streams_in_flight: usize,
    /// Retries of a stream that failed with UNAVAILABLE.
    pub max_retry: u32,
    /// How many of those wait `long_retry_wait`.
    pub long_retry: u32,
    /// First retry wait; doubles per retry.
    pub retry_wait: Duration,
    /// Wait before a long retry.
    pub long_retry_wait: Duration,
    /// A get fails when no data arrived for this long.
    pub get_idle_timeout: Duration,
    /// Largest gRPC message.
    pub max_message_bytes: usize,
    /// Largest object a get accepts.
    pub max_object_bytes: u64,
    /// How long connecting to the roll-site may take.
    pub connect_timeout: Duration,
}

impl FederationOptions {
    /// The options a roll-site config implies.
    pub fn from_config(c: &RollsiteConfig) -> Self {
        Self {
            batch_body_bytes: c.batch_body_bytes.max(1) as usize,
            batches_per_stream: c.push_batches_per_stream.max(1) as usize,
            streams_in_flight: c.push_streams_in_flight.max(1) as usize,
            max_retry: c.push_max_retry as u32,
            long_retry: c.push_long_retry as u32,
            retry_wait: Duration::from_millis(c.push_retry_wait_ms),
            long_retry_wait: Duration::from_millis(c.push_long_retry_wait_ms),
            get_idle_timeout: Duration::from_millis(c.get_idle_timeout_ms),
            max_message_bytes: c.max_message_bytes as usize,
            max_object_bytes: c.max_object_bytes,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
        }
    }

    /// How a push stream that failed with UNAVAILABLE is retried.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_retry: self.max_retry,
            long_retry: self.long_retry,
            retry_wait: self.retry_wait,
            long_retry_wait: self.long_retry_wait,
        }
    }
}

impl Default for FederationOptions {
    fn default() -> Self {
        Self::from_config(&RollsiteConfig::default())
    }
}

/// How a federation reaches its party's roll-site.
enum Link {
    /// Over gRPC, to a roll-site process.
    Grpc(Channel),
    /// Calls into a roll-site running in this process (standalone mode): no local hop.
    InProcess(Weak<Site>),
}

type PacketStream = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;

const IN_PROCESS: Peer = Peer {
    addr: None,
    secure: true,
    hops: 0,
    trusted: true,
};

struct Inner {
    session: String,
    me: Party,
    rollsite: String,
    /// The roll-site's address as a cluster's eggs reach it (they push tables themselves).
    egg_rollsite: String,
    link: Link,
    opts: FederationOptions,
}

/// A federation context: one session, one party, talking to its party's roll-site.
#[derive(Clone)]
pub struct Federation {
    inner: Arc<Inner>,
}

impl Federation {
    /// A context for `session` as `me`, sending through the roll-site at `rollsite`
    /// (`host:port`). Connects lazily.
    pub fn connect(
        rollsite: &str,
        session: &str,
        me: Party,
        opts: FederationOptions,
    ) -> Result<Self> {
        if session.is_empty() || me.role.is_empty() || me.party_id.is_empty() {
            return Err(Error::Config(
                "a federation needs a session id, a role and a party id".into(),
            ));
        }
        if opts.batch_body_bytes + (64 << 10) > opts.max_message_bytes {
            return Err(Error::Config(format!(
                "batch_body_bytes {} must be at least 64 KiB below max_message_bytes {}",
                opts.batch_body_bytes, opts.max_message_bytes
            )));
        }
        let ch = forward::channel(rollsite, None, opts.connect_timeout)?;
        Ok(Self {
            inner: Arc::new(Inner {
                session: session.into(),
                link: Link::Grpc(ch),
                rollsite: rollsite.into(),
                egg_rollsite: rollsite.into(),
                me,
                opts,
            }),
        })
    }

    /// A context that calls the roll-site `site` running in this process directly
    /// (standalone mode), sparing the hop to a local roll-site process.
    pub fn in_process(
        site: &crate::RollSite,
        session: &str,
        me: Party,
        opts: FederationOptions,
    ) -> Result<Self> {
        if session.is_empty() || me.role.is_empty() || me.party_id.is_empty() {
            return Err(Error::Config(
                "a federation needs a session id, a role and a party id".into(),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                session: session.into(),
                link: Link::InProcess(Arc::downgrade(site.site())),
                rollsite: format!("{} (in process)", site.addr()),
                egg_rollsite: reachable(site.addr()).to_string(),
                me,
                opts,
            }),
        })
    }

    fn site(&self, w: &Weak<Site>) -> Result<Arc<Site>, Status> {
        w.upgrade()
            .ok_or_else(|| Status::unavailable("the in-process roll-site has stopped"))
    }

    async fn send_push(
        &self,
        packets: impl Stream<Item = Packet> + Send + 'static,
    ) -> Result<(), Status> {
        match &self.inner.link {
            Link::Grpc(ch) => {
                let max = self.inner.opts.max_message_bytes;
                eggroll_proto::push::push(ch.clone(), packets, Default::default(), max)
                    .await
                    .map(|_| ())
            }
            Link::InProcess(w) => {
                let site = self.site(w)?;
                site.push(Box::pin(packets.map(Ok)), IN_PROCESS)
                    .await
                    .map(|_| ())
                    .map_err(Status::from)
            }
        }
    }

    async fn send_pull(&self, meta: Metadata) -> Result<PacketStream, Status> {
        match &self.inner.link {
            Link::Grpc(ch) => {
                let mut c = forward::client(ch.clone(), self.inner.opts.max_message_bytes);
                let s = c.pull(Request::new(meta)).await?.into_inner();
                Ok(Box::pin(s))
            }
            Link::InProcess(w) => {
                let site = self.site(w)?;
                let s = site.pull(meta, IN_PROCESS).await.map_err(Status::from)?;
                Ok(Box::pin(s))
            }
        }
    }

    async fn send_unary(&self, p: Packet) -> Result<Packet, Status> {
        match &self.inner.link {
            Link::Grpc(ch) => {
                let mut c = forward::client(ch.clone(), self.inner.opts.max_message_bytes);
                Ok(c.unary_call(Request::new(p)).await?.into_inner())
            }
            Link::InProcess(w) => {
                let site = self.site(w)?;
                site.unary(p, IN_PROCESS).await.map_err(Status::from)
            }
        }
    }

    /// The session id.
    pub fn session(&self) -> &str {
        &self.inner.session
    }

    fn key(&self, name: &str, tag: &str, src: &Party, dst: &Party) -> TransferKey {
        TransferKey {
            session: self.inner.session.clone(),
            name: name.into(),
            tag: tag.into(),
            src_role: src.role.clone(),
            src_party: src.party_id.clone(),
            dst_role: dst.role.clone(),
            dst_party: dst.party_id.clone(),
        }
    }

    fn local_hop(&self) -> String {
        format!("local roll-site {}", self.inner.rollsite)
    }

    /// Sends a serde value to `parties`; returns the bytes sent to each party.
    pub async fn remote<T: Serialize + ?Sized>(
        &self,
        value: &T,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<u64> {
        self.remote_bytes(encode(value)?, name, tag, parties).await
    }

    /// Sends bytes of any size to `parties`, in chunks; returns the bytes sent to each party.
    pub async fn remote_bytes(
        &self,
        data: impl Into<Bytes>,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<u64> {
        let data: Bytes = data.into();
        let started = Instant::now();
        let b = self.inner.opts.batch_body_bytes;
        let n = data.len().div_ceil(b).max(1);
        let chunks: Vec<Chunk> = (0..n)
            .map(|i| Chunk {
                partition: 0,
                seq: i as u64,
                finish: i + 1 == n,
                body: data.slice(i * b..((i + 1) * b).min(data.len())),
            })
            .collect();
        let mut jobs = JoinSet::new();
        let limit = self.inner.opts.streams_in_flight * parties.len().max(1);
        let per = self.inner.opts.batches_per_stream;
        let result: Result<()> = async {
            for party in parties {
                let key = self.key(name, tag, &self.inner.me, party);
                for group in chunks.chunks(per) {
                    while jobs.len() >= limit {
                        join_one(&mut jobs).await?;
                    }
                    let (me, key, group) = (self.clone(), key.clone(), group.to_vec());
                    let size = data.len();
                    jobs.spawn(async move {
                        me.push_stream(&key, OBJECT, 1, Some((size, b)), group)
                            .await
                    });
                }
            }
            while !jobs.is_empty() {
                join_one(&mut jobs).await?;
            }
            Ok(())
        }
        .await;
        self.log_remote(
            name,
            tag,
            parties,
            data.len() as u64,
            started,
            result.as_ref().map(|_| ()),
        );
        result.map(|()| data.len() as u64)
    }

    fn log_remote(
        &self,
        name: &str,
        tag: &str,
        parties: &[Party],
        bytes: u64,
        started: Instant,
        result: Result<(), &Error>,
    ) {
        let dst: Vec<String> = parties
            .iter()
            .map(|p| format!("{}:{}", p.role, p.party_id))
            .collect();
        let outcome = match result {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        tracing::info!(session = %self.inner.session, name, tag,
            src = %format!("{}:{}", self.inner.me.role, self.inner.me.party_id),
            dst = %dst.join(","), bytes, ms = started.elapsed().as_millis() as u64,
            outcome = %outcome, "remote");
    }

    /// Pushes one stream of chunks, retrying on UNAVAILABLE as the options say.
    async fn push_stream(
        &self,
        key: &TransferKey,
        data_type: &str,
        partitions: u32,
        object: Option<(usize, usize)>,
        chunks: Vec<Chunk>,
    ) -> Result<()> {
        let opts = &self.inner.opts;
        let mut base = key.header(data_type);
        base.total_partitions = partitions as i32;
        // An object's size and batch size: the receiver writes each batch at its offset.
        if let Some((size, chunk)) = object {
            base.options.insert(SIZE_OPTION.into(), size.to_string());
            base.options.insert(CHUNK_OPTION.into(), chunk.to_string());
        }
        let chunks = Arc::new(chunks);
        let per = opts.batches_per_stream.max(1) as u64;
        let send = || {
            let (key, base, chunks) = (key.clone(), base.clone(), chunks.clone());
            self.send_push(
                tokio_stream::iter(0..chunks.len())
                    .map(move |i| chunk_packet(&key, &base, &chunks[i], per)),
            )
        };
        let log = |attempt, wait: Duration, s: &Status| {
            tracing::warn!(key = %key.rs_key(), attempt, wait_ms = wait.as_millis() as u64,
                error = %describe(s), "push stream unavailable; retrying");
        };
        retry_unavailable(&opts.retry(), send, log)
            .await
            .map_err(|(s, attempts)| {
                let tries = after_retries(attempts);
                Error::hop(format!("{}{tries}", self.local_hop()), s)
            })
    }

    /// Tells `parties` that this party gave up on the session, and why: their gets waiting
    /// on this party fail at once with `reason` instead of waiting for their idle timeout.
    /// Best effort: an abort that cannot be delivered is reported, not retried forever.
    pub async fn abort(&self, reason: &str, parties: &[Party]) -> Result<()> {
        let mut cut = reason.len().min(MAX_ABORT_REASON);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let reason = Bytes::copy_from_slice(&reason.as_bytes()[..cut]);
        self.remote_bytes(reason, ABORT_NAME, "", parties).await?;
        Ok(())
    }

    /// Receives one serde value from each of `parties`, in their order.
    pub async fn get<T: DeserializeOwned>(
        &self,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<Vec<T>> {
        let raw = self.get_bytes(name, tag, parties).await?;
        raw.iter()
            .zip(parties)
            .map(|(b, p)| {
                Ok(decode(b, &|| {
                    format!("object {name}/{tag} from party {}", p.party_id)
                })?)
            })
            .collect()
    }

    /// Receives the bytes `remote_bytes` sent from each of `parties`, in their order. With an
    /// in-process roll-site, a large object comes back as a read-only memory map of the
    /// received file rather than a copy.
    pub async fn get_bytes(&self, name: &str, tag: &str, parties: &[Party]) -> Result<Vec<Bytes>> {
        let mut jobs = JoinSet::new();
        for (i, party) in parties.iter().enumerate() {
            let (me, key) = (self.clone(), self.key(name, tag, party, &self.inner.me));
            jobs.spawn(async move { (i, me.get_object(&key).await) });
        }
        let mut out: Vec<Option<Bytes>> = vec![None; parties.len()];
        while let Some(r) = jobs.join_next().await {
            let (i, r) = r?;
            out[i] = Some(r?);
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    async fn open_pull(&self, key: &TransferKey) -> Result<PacketStream> {
        let h = key.header("");
        let meta = Metadata {
            conf: Some(Conf {
                packet_interval_timeout: self.inner.opts.get_idle_timeout.as_millis() as i64,
                ..Default::default()
            }),
            ..key.metadata(&h)
        };
        retry_unavailable(
            &self.inner.opts.retry(),
            || self.send_pull(meta.clone()),
            |_, _, _| {},
        )
        .await
        .map_err(|(s, _)| Error::hop(self.local_hop(), s))
    }

    async fn clear(&self, key: &TransferKey) -> Result<()> {
        let h = key.header("");
        let mut meta = key.metadata(&h);
        meta.operator = OP_CLEAR.into();
        self.send_unary(Packet {
            header: Some(meta),
            body: None,
        })
        .await
        .map_err(|s| Error::hop(self.local_hop(), s))?;
        Ok(())
    }

    async fn get_object(&self, key: &TransferKey) -> Result<Bytes> {
        let started = Instant::now();
        let mut attempt = 0;
        let data = loop {
            match self.read_object(key).await {
                Ok(d) => break d,
                // The roll-site went away mid-stream: what it stored is still there.
                Err(e) if e.is_unavailable() && attempt < self.inner.opts.max_retry => {
                    attempt += 1;
                    tokio::time::sleep(self.inner.opts.retry_wait * attempt).await;
                }
                Err(e) => {
                    tracing::info!(session = %key.session, key = %key.rs_key(), src = %key.src_party,
                        dst = %key.dst_party, ms = started.elapsed().as_millis() as u64,
                        outcome = %e, "get");
                    return Err(e);
                }
            }
        };
        self.clear(key).await?;
        tracing::info!(session = %key.session, key = %key.rs_key(), src = %key.src_party,
            dst = %key.dst_party, bytes = data.len(), ms = started.elapsed().as_millis() as u64,
            outcome = "ok", "get");
        Ok(data)
    }

    /// An in-process get waits until the whole object arrived, then takes it from the buffer
    /// as it is stored: mapped, not copied.
    async fn read_object_in_process(&self, site: Arc<Site>, key: &TransferKey) -> Result<Bytes> {
        let idle = self.inner.opts.get_idle_timeout;
        let rk = key.rs_key();
        let k = rk.clone();
        let header = site.wait_for(key, idle, move |b| b.header(&k)).await?;
        if header.data_type != OBJECT {
            return Err(Error::BadPacket(format!(
                "{rk} was sent as a {}; receive it with get_table",
                header.data_type
            )));
        }
        let size: u64 = header
            .options
            .get(SIZE_OPTION)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let max = self.inner.opts.max_object_bytes;
        if size > max {
            return Err(Error::TooLarge(format!(
                "{rk} is {size} bytes, over max_object_bytes {max}"
            )));
        }
        let k = rk.clone();
        let data = site.wait_for(key, idle, move |b| b.object(&k)).await?;
        if data.len() as u64 > max {
            return Err(Error::TooLarge(format!(
                "{rk} is over max_object_bytes {max}"
            )));
        }
        Ok(data)
    }

    async fn read_object(&self, key: &TransferKey) -> Result<Bytes> {
        if let Link::InProcess(w) = &self.inner.link {
            let site = self.site(w).map_err(|s| Error::hop(self.local_hop(), s))?;
            return self.read_object_in_process(site, key).await;
        }
        let mut stream = self.open_pull(key).await?;
        let mut out = Assembly::new(0);
        let mut next_seq = 0i64;
        while let Some(p) = stream
            .next()
            .await
            .transpose()
            .map_err(|s| Error::hop(self.local_hop(), s))?
        {
            let h = received_header(&p)?;
            if h.data_type != OBJECT {
                return Err(Error::BadPacket(format!(
                    "{} was sent as a {}; receive it with get_table",
                    key.rs_key(),
                    h.data_type
                )));
            }
            if next_seq == 0 {
                let size: u64 = h
                    .options
                    .get(SIZE_OPTION)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if size > self.inner.opts.max_object_bytes {
                    return Err(Error::TooLarge(format!(
                        "{} is {size} bytes, over max_object_bytes {}",
                        key.rs_key(),
                        self.inner.opts.max_object_bytes
                    )));
                }
                out = Assembly::new(size as usize);
            }
            if h.batch_seq != next_seq {
                return Err(Error::BadPacket(format!(
                    "{}: batch {} arrived where batch {next_seq} was due",
                    key.rs_key(),
                    h.batch_seq
                )));
            }
            next_seq += 1;
            let body = p.body.map(|d| d.value).unwrap_or_default();
            if (out.len() + body.len()) as u64 > self.inner.opts.max_object_bytes {
                return Err(Error::TooLarge(format!(
                    "{} is over max_object_bytes {}",
                    key.rs_key(),
                    self.inner.opts.max_object_bytes
                )));
            }
            out.extend(&body)
                .map_err(|e| Error::BadPacket(format!("{}: {e}", key.rs_key())))?;
        }
        if next_seq == 0 {
            return Err(Error::BadPacket(format!(
                "the roll-site answered the get of {} with no data",
                key.rs_key()
            )));
        }
        out.finish()
            .map_err(|e| Error::BadPacket(format!("{}: {e}", key.rs_key())))
    }
}

/// Where an object received over gRPC is put together.
enum Assembly {
    /// A small object, or one whose sender did not say its size: a growing Vec.
    Vec(Vec<u8>),
    /// A large object of known size: anonymous memory asking for huge pages, so that the
    /// kernel faults it in 2 MiB at a time instead of 4 KiB (half the cost of the copy was
    /// page faults).
    Mapped(memmap2::MmapMut, usize),
}

impl Assembly {
    /// Objects from this size on get huge pages.
    const MAPPED_FROM: usize = 64 << 20;

    fn new(size: usize) -> Self {
        if size >= Self::MAPPED_FROM {
            if let Ok(m) = memmap2::MmapMut::map_anon(size) {
                // Advice only: without transparent huge pages this is ordinary memory.
                let _ = m.advise(memmap2::Advice::HugePage);
                return Assembly::Mapped(m, 0);
            }
        }
        Assembly::Vec(Vec::with_capacity(size))
    }

    /// Bytes received so far.
    fn len(&self) -> usize {
        match self {
            Assembly::Vec(v) => v.len(),
            Assembly::Mapped(_, filled) => *filled,
        }
    }

    fn extend(&mut self, body: &[u8]) -> std::result::Result<(), String> {
        match self {
            Assembly::Vec(v) => v.extend_from_slice(body),
            Assembly::Mapped(m, filled) => {
                let end = *filled + body.len();
                let Some(dst) = m.get_mut(*filled..end) else {
                    return Err(format!(
                        "more bytes arrived than the {} its header announced",
                        m.len()
                    ));
                };
                dst.copy_from_slice(body);
                *filled = end;
            }
        }
        Ok(())
    }

    fn finish(self) -> std::result::Result<Bytes, String> {
        match self {
            Assembly::Vec(v) => Ok(Bytes::from(v)),
            Assembly::Mapped(m, filled) if filled == m.len() => Ok(Bytes::from_owner(m)),
            Assembly::Mapped(m, filled) => Err(format!(
                "{filled} bytes arrived of the {} its header announced",
                m.len()
            )),
        }
    }
}

impl Federation {
    /// Sends a table to `parties`: every partition as its own streams, several in flight;
    /// returns the bytes of table data sent to each party.
    ///
    /// Each partition is read raw (its encoded pairs, never decoded) on a blocking thread of
    /// its own, `streams_in_flight` partitions at once, and its batches are pushed as they
    /// fill.
    pub async fn remote_table<K, V>(
        &self,
        table: &RollPair<K, V>,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<u64>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        let started = Instant::now();
        let result = if table.context().is_distributed() {
            self.remote_table_from_eggs(table, name, tag, parties).await
        } else {
            self.remote_table_from_client(table, name, tag, parties)
                .await
        };
        let bytes = *result.as_ref().unwrap_or(&0);
        self.log_remote(
            name,
            tag,
            parties,
            bytes,
            started,
            result.as_ref().map(|_| ()),
        );
        result
    }

    /// `remote_table` in standalone mode: this process reads the partitions itself.
    async fn remote_table_from_client<K, V>(
        &self,
        table: &RollPair<K, V>,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<u64>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        let n = table.partitions();
        let opts = &self.inner.opts;
        let keys: Arc<Vec<TransferKey>> = Arc::new(
            parties
                .iter()
                .map(|party| self.key(name, tag, &self.inner.me, party))
                .collect(),
        );
        // Push streams in flight in all, as when partitions went one after another.
        let streams = Arc::new(Semaphore::new(
            opts.streams_in_flight.max(1) * parties.len().max(1),
        ));
        let producers = opts.streams_in_flight.max(1);
        let mut jobs: JoinSet<Result<u64>> = JoinSet::new();
        let mut bytes = 0u64;
        for p in 0..n {
            while jobs.len() >= producers {
                bytes += join_bytes(&mut jobs).await?;
            }
            let (me, table, keys, streams) =
                (self.clone(), table.clone(), keys.clone(), streams.clone());
            jobs.spawn(async move { me.remote_partition(table, p, keys, streams).await });
        }
        while !jobs.is_empty() {
            bytes += join_bytes(&mut jobs).await?;
        }
        Ok(bytes)
    }

    /// `remote_table` on a cluster: every egg pushes its own partitions to the roll-site,
    /// all partitions at once.
    async fn remote_table_from_eggs<K, V>(
        &self,
        table: &RollPair<K, V>,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<u64>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        let opts = &self.inner.opts;
        let headers = parties
            .iter()
            .map(|party| {
                let mut h = self.key(name, tag, &self.inner.me, party).header(TABLE);
                h.total_partitions = table.partitions() as i32;
                h.encode_to_vec()
            })
            .collect();
        let push = PushToRollsite {
            rollsite: self.inner.egg_rollsite.clone(),
            headers,
            batch_body_bytes: opts.batch_body_bytes as u64,
            batches_per_stream: opts.batches_per_stream as u32,
            max_message_bytes: opts.max_message_bytes as u64,
            max_retry: opts.max_retry,
            long_retry: opts.long_retry,
            retry_wait_ms: opts.retry_wait.as_millis() as u64,
            long_retry_wait_ms: opts.long_retry_wait.as_millis() as u64,
            connect_timeout_ms: opts.connect_timeout.as_millis() as u64,
        };
        // The cluster client blocks on its own runtime: not on this async worker.
        let t = table.clone();
        let pushed = tokio::task::spawn_blocking(move || t.push_to_rollsite(push)).await??;
        Ok(pushed.unwrap_or(0))
    }

    /// Reads partition `p` of `table` on a blocking thread and pushes its batches to every
    /// key, a group of `batches_per_stream` per stream; returns the bytes of one copy.
    async fn remote_partition<K, V>(
        &self,
        table: RollPair<K, V>,
        p: u32,
        keys: Arc<Vec<TransferKey>>,
        streams: Arc<Semaphore>,
    ) -> Result<u64>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        let n = table.partitions();
        let opts = self.inner.opts.clone();
        let per = opts.batches_per_stream.max(1);
        // Two batches ahead: the reader keeps going while a group is pushed, memory bounded.
        let (tx, mut rx) = mpsc::channel::<Chunk>(2);
        let producer =
            tokio::task::spawn_blocking(move || produce_partition(&table, p, &opts, &tx));
        let mut pushes: JoinSet<Result<()>> = JoinSet::new();
        let mut group: Vec<Chunk> = Vec::with_capacity(per);
        let (mut bytes, mut finished) = (0u64, false);
        while let Some(c) = rx.recv().await {
            bytes += c.body.len() as u64;
            finished = c.finish;
            group.push(c);
            if group.len() >= per || finished {
                let g = std::mem::replace(&mut group, Vec::with_capacity(per));
                for key in keys.iter() {
                    let permit =
                        streams.clone().acquire_owned().await.map_err(|_| {
                            Error::Internal("the push stream limit was closed".into())
                        })?;
                    let (me, key, g) = (self.clone(), key.clone(), g.clone());
                    pushes.spawn(async move {
                        let r = me.push_stream(&key, TABLE, n, None, g).await;
                        drop(permit);
                        r
                    });
                }
                // Reap finished pushes so that an early failure stops the reading.
                while let Some(r) = pushes.try_join_next() {
                    r??;
                }
            }
        }
        producer.await??;
        if !finished {
            return Err(Error::Internal(format!(
                "partition {p}'s batches ended without a finish mark"
            )));
        }
        while !pushes.is_empty() {
            join_one(&mut pushes).await?;
        }
        Ok(bytes)
    }

    /// Receives the table `remote_table` sent from each of `parties` into a new table of
    /// `ctx` with the sender's partition count, every pair in the partition it had there.
    pub async fn get_table<K, V>(
        &self,
        ctx: &RollPairContext,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<Vec<RollPair<K, V>>>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        let mut jobs = JoinSet::new();
        for (i, party) in parties.iter().enumerate() {
            let (me, key, ctx) = (
                self.clone(),
                self.key(name, tag, party, &self.inner.me),
                ctx.clone(),
            );
            jobs.spawn(async move { (i, me.get_one_table::<K, V>(&ctx, &key).await) });
        }
        let mut out: Vec<Option<RollPair<K, V>>> = (0..parties.len()).map(|_| None).collect();
        while let Some(r) = jobs.join_next().await {
            let (i, r) = r?;
            out[i] = Some(r?);
        }
        Ok(out.into_iter().flatten().collect())
    }

    async fn get_one_table<K, V>(
        &self,
        ctx: &RollPairContext,
        key: &TransferKey,
    ) -> Result<RollPair<K, V>>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        let started = Instant::now();
        let mut stream = self.open_pull(key).await?;
        let hop = self.local_hop();
        let Some(first) = stream
            .next()
            .await
            .transpose()
            .map_err(|s| Error::hop(hop.clone(), s))?
        else {
            return Err(Error::BadPacket(format!(
                "the roll-site answered the get of {} with no data",
                key.rs_key()
            )));
        };
        let h = received_header(&first)?;
        if h.data_type != TABLE {
            return Err(Error::BadPacket(format!(
                "{} was sent as an {}; receive it with get",
                key.rs_key(),
                h.data_type
            )));
        }
        let n = h.total_partitions as u32;
        if let Some(at) = h.options.get(EGG_TABLE_OPTION).cloned() {
            return self.take_egg_table(ctx, key, stream, &at, n, started).await;
        }
        let table: RollPair<K, V> = ctx.create(Options::partitions(n))?;
        // One writer thread per group of partitions (partition p to writer p % writers):
        // batches of different partitions are written at once, each partition by one writer.
        let writers = self.inner.opts.streams_in_flight.min(n as usize).max(1);
        let mut senders = Vec::with_capacity(writers);
        let mut handles = Vec::with_capacity(writers);
        for _ in 0..writers {
            let (btx, brx) = mpsc::channel::<(u32, Bytes)>(2);
            let (table, what) = (table.clone(), key.rs_key());
            handles.push(tokio::task::spawn_blocking(move || {
                write_batches(&table, n, brx, &what)
            }));
            senders.push(btx);
        }
        let mut bytes = 0u64;
        let mut packet = Some(first);
        let feed: Result<()> = async {
            while let Some(p) = packet.take() {
                let h = received_header(&p)?;
                let body = p.body.map(|d| d.value).unwrap_or_default();
                bytes += body.len() as u64;
                // A negative id wraps to one past every partition: its writer refuses it.
                let part = h.partition_id as u32;
                let w = part as usize % writers;
                if senders[w].send((part, body)).await.is_err() {
                    break; // that writer failed; its error is reported below
                }
                packet = stream
                    .next()
                    .await
                    .transpose()
                    .map_err(|s| Error::hop(hop.clone(), s))?;
            }
            Ok(())
        }
        .await;
        drop(senders);
        let mut written: Result<u64> = Ok(0);
        for h in handles {
            let r = h.await?;
            written = match (written, r) {
                (Ok(a), Ok(b)) => Ok(a + b),
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            };
        }
        let count = match feed.and(written) {
            Ok(c) => c,
            Err(e) => {
                // Leave no half-received table behind; the buffer still holds the transfer.
                // Destroying touches the stores: not on this async worker.
                let _ = tokio::task::spawn_blocking(move || table.destroy()).await;
                return Err(e);
            }
        };
        self.clear(key).await?;
        tracing::info!(session = %key.session, key = %key.rs_key(), src = %key.src_party,
            dst = %key.dst_party, bytes, pairs = count, partitions = n,
            ms = started.elapsed().as_millis() as u64, outcome = "ok", "get_table");
        Ok(table)
    }
}

impl Federation {
    /// A table the roll-site already wrote into its cluster's eggs (`at`: `namespace/name`):
    /// waits until every batch arrived (the pull ends then), then hands that table over.
    async fn take_egg_table<K, V>(
        &self,
        ctx: &RollPairContext,
        key: &TransferKey,
        mut stream: PacketStream,
        at: &str,
        n: u32,
        started: Instant,
    ) -> Result<RollPair<K, V>>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        let hop = self.local_hop();
        while stream
            .next()
            .await
            .transpose()
            .map_err(|s| Error::hop(hop.clone(), s))?
            .is_some()
        {}
        if !ctx.is_distributed() {
            return Err(Error::Config(format!(
                "{} was received into the eggs of the roll-site's cluster (rollsite.\
                 cluster_manager) as {at}; get it with a RollPairContext connected to that \
                 cluster",
                key.rs_key()
            )));
        }
        let (namespace, name) = at.split_once('/').ok_or_else(|| {
            Error::BadPacket(format!("{}: bad {EGG_TABLE_OPTION} {at:?}", key.rs_key()))
        })?;
        let (ctx2, ns, nm) = (ctx.clone(), namespace.to_string(), name.to_string());
        let table: RollPair<K, V> =
            tokio::task::spawn_blocking(move || ctx2.load::<K, V>(&ns, &nm)).await??;
        if table.partitions() != n {
            return Err(Error::BadPacket(format!(
                "{at} has {} partitions, the transfer {n}",
                table.partitions()
            )));
        }
        self.clear(key).await?;
        tracing::info!(session = %key.session, key = %key.rs_key(), src = %key.src_party,
            dst = %key.dst_party, table = %at, partitions = n,
            ms = started.elapsed().as_millis() as u64, outcome = "ok", "get_table (in the eggs)");
        Ok(table)
    }
}

/// An address other processes on this machine can connect to: a wildcard listen address
/// becomes loopback.
fn reachable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    a
}

async fn join_one(jobs: &mut JoinSet<Result<()>>) -> Result<()> {
    match jobs.join_next().await {
        Some(r) => r?,
        None => Ok(()),
    }
}

async fn join_bytes(jobs: &mut JoinSet<Result<u64>>) -> Result<u64> {
    match jobs.join_next().await {
        Some(r) => r?,
        None => Ok(0),
    }
}

fn received_header(p: &Packet) -> Result<RollSiteHeader> {
    let m = p
        .header
        .as_ref()
        .ok_or_else(|| Error::BadPacket("the roll-site sent a packet without a header".into()))?;
    RollSiteHeader::decode(&m.ext[..])
        .map_err(|e| Error::BadPacket(format!("the roll-site sent a bad header: {e}")))
}

/// Reads partition `p` of `table` raw into batches of framed pairs, the last one marked
/// finish (an empty one for an empty partition); no pair is decoded or encoded again.
fn produce_partition<K, V>(
    table: &RollPair<K, V>,
    p: u32,
    opts: &FederationOptions,
    tx: &mpsc::Sender<Chunk>,
) -> Result<()> {
    // A closed channel means the sender gave up (another partition failed).
    let send = |chunk| {
        tx.blocking_send(chunk)
            .map_err(|_| Error::Internal("the table sender stopped".into()))
    };
    let mut batches = TableBatches::new(p, opts.batch_body_bytes, opts.max_message_bytes);
    // The scan speaks the roll-pair error type: keep ours here and stop the scan with it.
    let mut failed: Option<Error> = None;
    table.scan_encoded(p, &mut |k, v| {
        let sent = match batches.push(k, v) {
            Ok(Some(full)) => send(full),
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        };
        match sent {
            Ok(()) => Ok(true),
            Err(e) => {
                failed = Some(e);
                Ok(false)
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    send(batches.finish())
}

/// Writes received batches into `table` raw, each into the partition it was sent from,
/// after checking its framing and that every key belongs there; returns the pairs written.
fn write_batches<K, V>(
    table: &RollPair<K, V>,
    n: u32,
    mut rx: mpsc::Receiver<(u32, Bytes)>,
    what: &str,
) -> Result<u64> {
    let mut count = 0u64;
    while let Some((p, batch)) = rx.blocking_recv() {
        count += write_batch(table, n, p, &batch, what)?;
    }
    Ok(count)
}

/// Writes one received batch of partition `p` (of `n`) into `table`, without decoding.
pub(crate) fn write_batch<K, V>(
    table: &RollPair<K, V>,
    n: u32,
    p: u32,
    batch: &[u8],
    what: &str,
) -> Result<u64> {
    if p >= n {
        return Err(Error::BadPacket(format!(
            "{what}: a batch of partition {p} arrived for a table of {n} partitions"
        )));
    }
    let found = eggroll_core::pairs::collect(batch).map_err(|e| match e {
        CoreError::BadPacket(m) => Error::BadPacket(format!("{what}, partition {p}: {m}")),
        e => e.into(),
    })?;
    for (k, _) in &found {
        let q = partition_of(k, n);
        if q != p {
            return Err(Error::BadPacket(format!(
                "{what}: a key sent in partition {p} belongs to partition {q} of {n}: \
                 the sender partitions differently"
            )));
        }
    }
    Ok(table.put_encoded(p, found)?)
}

#[cfg(test)]
mod tests {
    use super::Assembly;

    #[test]
    fn assembly_keeps_the_bytes_in_order_and_holds_senders_to_the_size_they_announced() {
        let data: Vec<u8> = (0..(Assembly::MAPPED_FROM + 12_345) as u32)
            .map(|i| (i % 253) as u8)
            .collect();
        for size in [0, 10, data.len()] {
            let mut a = Assembly::new(size);
            let want = &data[..size];
            for piece in want.chunks(1 << 20) {
                a.extend(piece).unwrap();
            }
            assert_eq!(a.len(), size);
            assert_eq!(&a.finish().unwrap()[..], want, "size {size}");
        }
        // An unknown size (0 announced) grows as needed.
        let mut a = Assembly::new(0);
        a.extend(b"ab").unwrap();
        a.extend(b"cd").unwrap();
        assert_eq!(&a.finish().unwrap()[..], b"abcd");
        // A large object that overruns or falls short of its announced size is refused.
        let mut a = Assembly::new(Assembly::MAPPED_FROM);
        a.extend(&data[..Assembly::MAPPED_FROM]).unwrap();
        assert!(a.extend(b"x").unwrap_err().contains("more bytes"));
        let mut a = Assembly::new(Assembly::MAPPED_FROM);
        a.extend(&data[..100]).unwrap();
        assert!(a.finish().unwrap_err().contains("100 bytes arrived"));
    }
}
