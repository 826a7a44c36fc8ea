//! Objects between parties: `remote` / `get` of serde values and of bytes of any size, cut
//! into packets of `batch_body_bytes` and sent in streams of `batches_per_stream`, several
//! streams in flight.

use crate::assembly::Assembly;
use crate::client::{join_one, received_header, Federation};
use crate::error::{Error, Result};
use crate::link::{Link, LocalRollsite, PacketStream};
use crate::party::Party;
use bytes::Bytes;
use eggroll_core::codec::{decode, encode};
use eggroll_core::transfer::{
    after_retries, Chunk, TransferKey, ABORT_NAME, CHUNK_OPTION, MAX_ABORT_REASON, OBJECT,
    OP_CLEAR, SIZE_OPTION,
};
use eggroll_eggpair::push::{push_group, PushError};
use eggroll_proto::proxy::{Conf, Metadata, Packet};
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;

impl Federation {
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
                let mut base = key.header(OBJECT);
                base.total_partitions = 1;
                // The object's size and batch size: the receiver writes each batch at its
                // offset.
                base.options
                    .insert(SIZE_OPTION.into(), data.len().to_string());
                base.options.insert(CHUNK_OPTION.into(), b.to_string());
                for group in chunks.chunks(per) {
                    while jobs.len() >= limit {
                        join_one(&mut jobs).await?;
                    }
                    let (me, key, base) = (self.clone(), key.clone(), base.clone());
                    let group = Arc::new(group.to_vec());
                    jobs.spawn(async move {
                        let r = push_group::<Error>(
                            &me.inner.link,
                            &key,
                            &base,
                            group,
                            per,
                            &me.inner.opts.retry(),
                        )
                        .await;
                        r.map_err(|e| me.push_error(e))
                    });
                }
            }
            while !jobs.is_empty() {
                join_one(&mut jobs).await?;
            }
            Ok(())
        }
        .await;
        let result = result.map(|()| data.len() as u64);
        self.log_remote(name, tag, parties, started, &result);
        result
    }

    /// A failed push as this client reports it: the hop and the retries made.
    pub(crate) fn push_error<E: std::error::Error + Into<Error>>(&self, e: PushError<E>) -> Error {
        match e {
            PushError::Read(e) => e.into(),
            PushError::Batch(e) => e.into(),
            PushError::Push {
                status, attempts, ..
            } => Error::hop(
                format!("{}{}", self.local_hop(), after_retries(attempts)),
                *status,
            ),
            PushError::Internal(m) => Error::Internal(m),
        }
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

    /// Opens the pull of the transfer `key`, retrying while the roll-site is unavailable.
    pub(crate) async fn open_pull(&self, key: &TransferKey) -> Result<PacketStream> {
        let h = key.header("");
        let meta = Metadata {
            conf: Some(Conf {
                packet_interval_timeout: self.inner.opts.get_idle_timeout.as_millis() as i64,
                ..Default::default()
            }),
            ..key.metadata(&h)
        };
        self.inner
            .opts
            .retry()
            .run(|| self.inner.link.pull(meta.clone()), |_, _, _| {})
            .await
            .map_err(|(s, _)| Error::hop(self.local_hop(), s))
    }

    /// Tells the roll-site that the transfer `key` was taken: it drops what it kept.
    pub(crate) async fn clear(&self, key: &TransferKey) -> Result<()> {
        let h = key.header("");
        let mut meta = key.metadata(&h);
        meta.operator = OP_CLEAR.into();
        let clear = || {
            self.inner.link.unary(Packet {
                header: Some(meta.clone()),
                body: None,
            })
        };
        self.inner
            .opts
            .retry()
            .run(clear, |_, _, _| {})
            .await
            .map_err(|(s, n)| Error::hop(format!("{}{}", self.local_hop(), after_retries(n)), s))?;
        Ok(())
    }

    pub(crate) async fn get_object(&self, key: &TransferKey) -> Result<Bytes> {
        let started = Instant::now();
        match self.reread(|| self.read_object(key)).await {
            Ok(data) => self.took_object(key, data, started).await,
            Err(e) => {
                tracing::info!(session = %key.session, key = %key.rs_key(), src = %key.src_party,
                    dst = %key.dst_party, ms = started.elapsed().as_millis() as u64,
                    outcome = %e, "get");
                Err(e)
            }
        }
    }

    /// Tells the roll-site that the object `key` was taken, and logs the get.
    pub(crate) async fn took_object(
        &self,
        key: &TransferKey,
        data: Bytes,
        started: Instant,
    ) -> Result<Bytes> {
        self.clear(key).await?;
        tracing::info!(session = %key.session, key = %key.rs_key(), src = %key.src_party,
            dst = %key.dst_party, bytes = data.len(), ms = started.elapsed().as_millis() as u64,
            outcome = "ok", "get");
        Ok(data)
    }

    /// An in-process get waits until the whole object arrived, then takes it from the buffer
    /// as it is stored: mapped, not copied.
    pub(crate) async fn read_object_in_process(
        &self,
        site: Arc<dyn LocalRollsite>,
        key: &TransferKey,
    ) -> Result<Bytes> {
        let idle = self.inner.opts.get_idle_timeout;
        let rk = key.rs_key();
        let hop = |s| Error::hop(self.local_hop(), s);
        let header = site.clone().header(key, idle).await.map_err(hop)?;
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
        let data = site.object(key, idle).await.map_err(hop)?;
        if data.len() as u64 > max {
            return Err(Error::TooLarge(format!(
                "{rk} is over max_object_bytes {max}"
            )));
        }
        Ok(data)
    }

    async fn read_object(&self, key: &TransferKey) -> Result<Bytes> {
        if let Link::InProcess(w) = &self.inner.link {
            let site = Link::local(w).map_err(|s| Error::hop(self.local_hop(), s))?;
            return self.read_object_in_process(site, key).await;
        }
        let stream = self.open_pull(key).await?;
        self.assemble_object(key, None, stream).await
    }

    /// Reads the object `key` from its pull, `first` being its first packet when the caller
    /// already took it (to see what was sent).
    pub(crate) async fn assemble_object(
        &self,
        key: &TransferKey,
        mut first: Option<Packet>,
        mut stream: PacketStream,
    ) -> Result<Bytes> {
        let mut out = Assembly::new(0);
        let mut next_seq = 0i64;
        let max = self.inner.opts.max_object_bytes;
        loop {
            let p = match first.take() {
                Some(p) => p,
                None => match stream
                    .next()
                    .await
                    .transpose()
                    .map_err(|s| Error::hop(self.local_hop(), s))?
                {
                    Some(p) => p,
                    None => break,
                },
            };
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
                if size > max {
                    return Err(Error::TooLarge(format!(
                        "{} is {size} bytes, over max_object_bytes {max}",
                        key.rs_key(),
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
            if (out.len() + body.len()) as u64 > max {
                return Err(Error::TooLarge(format!(
                    "{} is over max_object_bytes {max}",
                    key.rs_key(),
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
