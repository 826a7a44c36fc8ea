//! Tables from other parties: `get_table` into a new table of the caller's context, each
//! batch written raw into the partition it was sent from; or, when the roll-site already
//! wrote the table into its cluster's eggs, that table handed over.

use crate::client::{received_header, Federation};
use crate::error::{Error, Result};
use crate::link::PacketStream;
use crate::party::Party;
use bytes::Bytes;
use eggroll_core::partitioner::Partitioner;
use eggroll_core::transfer::{TransferKey, EGG_TABLE_OPTION, FATE_TYPES_OPTION, TABLE};
use eggroll_core::CoreError;
use eggroll_proto::proxy::Packet;
use eggroll_proto::transfer::RollSiteHeader;
use eggroll_rollpair::{ByteTable, FateTypes, Options, RollPair, RollPairContext};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;

impl Federation {
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
            jobs.spawn(async move {
                let got = me.reread(|| me.get_one_table::<K, V>(&ctx, &key)).await;
                (i, got)
            });
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
        let (first, h, stream) = self.first_packet(key).await?;
        if h.data_type != TABLE {
            return Err(Error::BadPacket(format!(
                "{} was sent as an {}; receive it with get",
                key.rs_key(),
                h.data_type
            )));
        }
        if h.options.contains_key(FATE_TYPES_OPTION) {
            return Err(Error::BadPacket(format!(
                "{} was sent as a byte table (FATE's); receive it with get_any",
                key.rs_key()
            )));
        }
        let n = h.total_partitions as u32;
        if let Some(at) = h.options.get(EGG_TABLE_OPTION).cloned() {
            self.drain_egg_table(key, stream, ctx, &at).await?;
            let (ctx2, at2) = (ctx.clone(), at.clone());
            let table: RollPair<K, V> = blocking(move || {
                let (ns, nm) = split_at(&at2)?;
                Ok(ctx2.load::<K, V>(ns, nm)?)
            })
            .await?;
            return self.took_egg_table(key, table, &at, n, started).await;
        }
        let ctx2 = ctx.clone();
        let table: RollPair<K, V> =
            blocking(move || Ok(ctx2.create(Options::partitions(n))?)).await?;
        self.fill(table, key, first, stream, started).await
    }

    /// Receives the byte table whose first packet (`first`, with header `h`) arrived, into a
    /// new byte table of `ctx` in the federation session's namespace, with the sender's FATE
    /// codes and partition count.
    pub(crate) async fn receive_byte_table(
        &self,
        ctx: &RollPairContext,
        key: &TransferKey,
        h: &RollSiteHeader,
        first: Packet,
        stream: PacketStream,
        started: Instant,
    ) -> Result<ByteTable> {
        let types = h
            .options
            .get(FATE_TYPES_OPTION)
            .map(|s| FateTypes::from_header(s))
            .transpose()
            .map_err(|m| Error::BadPacket(format!("{}: {m}", key.rs_key())))?
            .ok_or_else(|| {
                Error::BadPacket(format!(
                    "{} was sent as a table of eggroll-rs's typed API, not a byte table;                      receive it with get_table",
                    key.rs_key()
                ))
            })?;
        let n = h.total_partitions as u32;
        if let Some(at) = h.options.get(EGG_TABLE_OPTION).cloned() {
            self.drain_egg_table(key, stream, ctx, &at).await?;
            let (ctx2, at2) = (ctx.clone(), at.clone());
            let table = blocking(move || {
                let (ns, nm) = split_at(&at2)?;
                Ok(ctx2.load_bytes(ns, nm)?)
            })
            .await?;
            self.took_egg_table(key, table.raw().clone(), &at, n, started)
                .await?;
            return Ok(table);
        }
        let (ctx2, namespace) = (ctx.clone(), key.session.clone());
        let table = blocking(move || {
            let opts = Options {
                namespace: Some(namespace),
                ..Options::partitions(n)
            };
            Ok(ctx2.create_bytes(opts, types)?)
        })
        .await?;
        self.fill(table.raw().clone(), key, first, stream, started)
            .await?;
        Ok(table)
    }

    /// Opens the pull of `key` and waits for its first packet: the header says what was sent.
    pub(crate) async fn first_packet(
        &self,
        key: &TransferKey,
    ) -> Result<(Packet, RollSiteHeader, PacketStream)> {
        let mut stream = self.open_pull(key).await?;
        let first = stream
            .next()
            .await
            .transpose()
            .map_err(|s| Error::hop(self.local_hop(), s))?
            .ok_or_else(|| {
                Error::BadPacket(format!(
                    "the roll-site answered the get of {} with no data",
                    key.rs_key()
                ))
            })?;
        let h = received_header(&first)?;
        Ok((first, h, stream))
    }

    /// Writes every batch of the transfer, from `first` on, into `table` (made for it with
    /// the sender's partition count); a table left half-received is destroyed.
    async fn fill<K, V>(
        &self,
        table: RollPair<K, V>,
        key: &TransferKey,
        first: Packet,
        mut stream: PacketStream,
        started: Instant,
    ) -> Result<RollPair<K, V>>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        let hop = self.local_hop();
        let n = table.partitions();
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

    /// Waits until every batch of a table the roll-site writes into its cluster's eggs (`at`)
    /// arrived (the pull ends then); such a table is only reachable from a cluster session.
    async fn drain_egg_table(
        &self,
        key: &TransferKey,
        mut stream: PacketStream,
        ctx: &RollPairContext,
        at: &str,
    ) -> Result<()> {
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
        Ok(())
    }

    /// Hands over the table the roll-site wrote into the eggs, once its partition count is
    /// checked, and tells the roll-site it was taken.
    async fn took_egg_table<K, V>(
        &self,
        key: &TransferKey,
        table: RollPair<K, V>,
        at: &str,
        n: u32,
        started: Instant,
    ) -> Result<RollPair<K, V>> {
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

/// `namespace/name` of a table the roll-site wrote into its cluster's eggs.
fn split_at(at: &str) -> Result<(&str, &str)> {
    at.split_once('/')
        .ok_or_else(|| Error::BadPacket(format!("bad {EGG_TABLE_OPTION} {at:?}")))
}

/// Runs `f` (which touches the stores or the cluster) on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
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
        count += write_batch(table, n, p, batch, what)?;
    }
    Ok(count)
}

/// Writes one received batch of partition `p` (of `n`) into `table` as it came, once its
/// framing and the partition of every key (by the table's partitioner) are checked; nothing
/// is decoded or re-packed.
pub fn write_batch<K, V>(
    table: &RollPair<K, V>,
    n: u32,
    p: u32,
    batch: Bytes,
    what: &str,
) -> Result<u64> {
    if p >= n {
        return Err(Error::BadPacket(format!(
            "{what}: a batch of partition {p} arrived for a table of {n} partitions"
        )));
    }
    let partitioner = Partitioner::from_name(&table.locator().partitioner)?;
    let mut pairs = 0u64;
    for pair in eggroll_core::pairs::iter(&batch) {
        let (k, _) = pair.map_err(|e| match e {
            CoreError::BadPacket(m) => Error::BadPacket(format!("{what}, partition {p}: {m}")),
            e => e.into(),
        })?;
        let q = partitioner.partition(k, n);
        if q != p {
            return Err(Error::BadPacket(format!(
                "{what}: a key sent in partition {p} belongs to partition {q} of {n}: \
                 the sender partitions differently"
            )));
        }
        pairs += 1;
    }
    if pairs == 0 {
        return Ok(0);
    }
    // Reuses the batch's buffer when nothing else holds it; copies it otherwise.
    Ok(table.put_packed(p, Vec::from(batch))?)
}
