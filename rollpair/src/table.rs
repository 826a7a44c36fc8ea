//! A typed table: every operation becomes one job of one task per partition.

use crate::backend::Visit;
use crate::context::RollPairContext;
use crate::error::Result;
use crate::options::Options;
use crate::writer::PairWriter;
use eggroll_core::codec::{decode, encode};
use eggroll_core::functions::{
    builtin, CollapsePartitions, Filter, FlatMap, Function, Join, Map, MapPartitions, MapValues,
    Reduce, SeqOp,
};
use eggroll_core::partitioner::Partitioner;
use eggroll_proto::meta::{
    job::Op, Aggregate, Compact, Count, Functor, Job, MapReducePartitions, MapToCaller, MergeKind,
    PairBatch, PushToRollsite, SortedMerge, Store, StoreLocator, StoreType, Take, TaskResult,
};
use serde::{de::DeserializeOwned, Serialize};
use std::marker::PhantomData;

/// Pairs as their encoded bytes.
pub type EncodedPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The first pairs of a partition, packed (`eggroll_core::pairs`) in key order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Head {
    /// The pairs.
    pub packed: Vec<u8>,
    /// Whether the Take stopped at its byte bound with pairs left (a stop at its count of
    /// pairs does not set it).
    pub more: bool,
}

/// A table of `K` keys and `V` values, partitioned by the encoded key.
pub struct RollPair<K, V> {
    ctx: RollPairContext,
    locator: StoreLocator,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for RollPair<K, V> {
    fn clone(&self) -> Self {
        Self {
            ctx: self.ctx.clone(),
            locator: self.locator.clone(),
            _types: PhantomData,
        }
    }
}

fn functor<F: Function>(f: &F, kind: &str) -> Result<Functor> {
    Ok(Functor {
        name: F::NAME.into(),
        kind: kind.into(),
        params: encode(f)?,
    })
}

fn store(l: &StoreLocator) -> Store {
    Store {
        locator: Some(l.clone()),
        ..Default::default()
    }
}

/// The tables of a session (here, beside the table type, so that the context does not import it).
impl RollPairContext {
    /// A new table holding `data` (a later duplicate key wins).
    pub fn parallelize<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
        data: impl IntoIterator<Item = (K, V)>,
        opts: Options,
    ) -> Result<RollPair<K, V>> {
        let table = RollPair::new(self.clone(), self.new_locator::<K, V>(&opts, None)?);
        table.put_all(data)?;
        Ok(table)
    }

    /// An empty table made as `opts` says (replacing one of the same name).
    pub fn create<K, V>(&self, opts: Options) -> Result<RollPair<K, V>> {
        Ok(RollPair::new(
            self.clone(),
            self.new_locator::<K, V>(&opts, None)?,
        ))
    }

    /// An existing persistent table; a clear error if it does not exist.
    pub fn load<K, V>(&self, namespace: &str, name: &str) -> Result<RollPair<K, V>> {
        Ok(RollPair::new(
            self.clone(),
            self.load_locator(namespace, name)?,
        ))
    }
}

impl<K, V> RollPair<K, V> {
    /// The table at `locator` in `ctx`.
    pub(crate) fn from_locator(ctx: RollPairContext, locator: StoreLocator) -> Self {
        Self::new(ctx, locator)
    }

    fn new(ctx: RollPairContext, locator: StoreLocator) -> Self {
        Self {
            ctx,
            locator,
            _types: PhantomData,
        }
    }

    /// The session the table belongs to.
    pub fn context(&self) -> &RollPairContext {
        &self.ctx
    }

    /// Where the table lives and how it is partitioned.
    pub fn locator(&self) -> &StoreLocator {
        &self.locator
    }

    /// Its partition count.
    pub fn partitions(&self) -> u32 {
        self.locator.total_partitions
    }

    /// Its namespace.
    pub fn namespace(&self) -> &str {
        &self.locator.namespace
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.locator.name
    }

    /// Checks that `p` names a partition of this table.
    fn check_partition(&self, p: u32) -> Result<()> {
        if p < self.partitions() {
            return Ok(());
        }
        Err(eggroll_core::CoreError::InvalidArgument(format!(
            "partition {p} does not exist: table {}/{} has partitions 0..{}",
            self.locator.namespace,
            self.locator.name,
            self.partitions()
        ))
        .into())
    }

    /// Calls `visit` on the encoded pairs of partition `p` in key order; it returns false to stop.
    pub fn scan_encoded(&self, p: u32, visit: &mut Visit) -> Result<()> {
        self.scan_encoded_from(p, &[], visit)
    }

    /// [`Self::scan_encoded`] from the first encoded key at or after `start` (empty: from
    /// the first key).
    pub fn scan_encoded_from(&self, p: u32, start: &[u8], visit: &mut Visit) -> Result<()> {
        self.check_partition(p)?;
        self.ctx.backend().scan(&self.locator, p, start, visit)
    }

    /// Writes encoded pairs, whose keys must hash to partition `p`, into it; returns how many.
    ///
    /// No key is decoded or rehashed: the caller (a scan of a table of the same partition
    /// count, or a receiver that checked the sender's placement) vouches for `p`.
    pub fn put_encoded<'a>(
        &self,
        p: u32,
        pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<u64> {
        self.check_partition(p)?;
        let mut writer = PairWriter::new(self.ctx.backend(), &self.locator)?;
        for (k, v) in pairs {
            writer.push(p, k, v)?;
        }
        writer.finish()
    }

    /// Writes a packed batch of encoded pairs (the `eggroll_core::pairs` layout, as a
    /// roll-site carries them), whose keys must hash to partition `p`, into it as it is;
    /// returns how many pairs it held. As with [`Self::put_encoded`], the caller vouches for `p`.
    pub fn put_packed(&self, p: u32, packed: Vec<u8>) -> Result<u64> {
        self.check_partition(p)?;
        if packed.is_empty() {
            return Ok(0);
        }
        self.ctx.backend().put_batch(&self.locator, p, packed)
    }

    /// Every pair as `read` makes it of the encoded key and value (`what` names a pair in
    /// errors), partition by partition, each in key order; what [`RollPair::get_all`] and a
    /// byte table's `get_all` stream.
    pub(crate) fn stream_pairs<T: Send + 'static>(
        &self,
        read: fn(&[u8], &[u8], &str) -> Result<T>,
    ) -> Result<GetAll<T>> {
        let ctx = self.ctx.clone();
        let locator = self.locator.clone();
        let limit = self.ctx.backend().batch_bytes().max(1);
        let what = self.what("a pair");
        let spawn = move |p: u32| -> Result<Receiver<Batch<T>>> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Batch<T>>(2);
            let (ctx, locator, what) = (ctx.clone(), locator.clone(), what.clone());
            // A dedicated thread: it blocks on RocksDB or the network and on the bounded
            // channel, and it stops as soon as the consumer drops the iterator.
            let produce = move |tx: &SyncSender<Batch<T>>| -> Result<()> {
                let (mut batch, mut bytes, mut open) = (Vec::new(), 0usize, true);
                ctx.backend().scan(&locator, p, &[], &mut |k, v| {
                    bytes += k.len() + v.len() + 16;
                    batch.push(read(k, v, &what)?);
                    if bytes >= limit {
                        bytes = 0;
                        open = tx.send(Ok(std::mem::take(&mut batch))).is_ok();
                    }
                    Ok(open)
                })?;
                if open && !batch.is_empty() {
                    let _ = tx.send(Ok(batch));
                }
                Ok(())
            };
            std::thread::Builder::new()
                .name(format!("eggroll-get-all-{p}"))
                .spawn(move || {
                    if let Err(e) = produce(&tx) {
                        let _ = tx.send(Err(e));
                    }
                })
                .map_err(|e| crate::Error::Pool(e.to_string()))?;
            Ok(rx)
        };
        let window = self.ctx.backend().parallelism().max(1) as u32;
        let mut stream = GetAll {
            ahead: std::collections::VecDeque::new(),
            next: 0,
            total: self.partitions(),
            window,
            spawn: Box::new(spawn),
            current: Vec::new().into_iter(),
            failed: false,
        };
        stream.fill()?;
        Ok(stream)
    }

    /// The partition of the encoded key `k`, by the table's partitioner.
    fn partition_of_encoded(&self, k: &[u8]) -> Result<u32> {
        Ok(Partitioner::from_name(&self.locator.partitioner)?.partition(k, self.partitions()))
    }

    /// The value of the encoded key `k`, encoded.
    pub fn get_encoded(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
        let p = self.partition_of_encoded(k)?;
        self.ctx.backend().get(&self.locator, p, k.to_vec())
    }

    /// Sets the encoded key `k` to the encoded value `v`, in the partition of `k`.
    pub fn put_one_encoded(&self, k: &[u8], v: &[u8]) -> Result<()> {
        let p = self.partition_of_encoded(k)?;
        let mut writer = PairWriter::new(self.ctx.backend(), &self.locator)?;
        writer.push(p, k, v)?;
        writer.finish().map(|_| ())
    }

    /// Removes the encoded key `k`; true if it was there.
    pub fn delete_encoded(&self, k: &[u8]) -> Result<bool> {
        let p = self.partition_of_encoded(k)?;
        self.ctx.backend().delete(&self.locator, p, k.to_vec())
    }

    /// Writes encoded pairs in batches, each into the partition of its key (a later duplicate
    /// key wins); returns how many.
    pub fn put_all_encoded(
        &self,
        data: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<u64> {
        let mut writer = PairWriter::new(self.ctx.backend(), &self.locator)?;
        for (k, v) in data {
            let p = self.partition_of_encoded(&k)?;
            writer.push(p, &k, &v)?;
        }
        writer.finish()
    }

    /// The first `n` pairs (values empty when `keys_only`), partition order then key order;
    /// each partition's share is read by a Take task, as in distributed mode.
    fn take_raw(&self, n: u64, keys_only: bool) -> Result<PairBatch> {
        let job = self.job(
            &[],
            None,
            Op::Take(Take {
                limit: n,
                keys_only,
                ..Default::default()
            }),
        );
        let mut out = PairBatch::default();
        for r in self.ctx.run_job(job, self.partitions())? {
            let batch = r.pairs.unwrap_or_default();
            out.keys.extend(batch.keys);
            out.values.extend(batch.values);
        }
        out.keys.truncate(n as usize);
        out.values.truncate(n as usize);
        Ok(out)
    }

    /// Runs `op` over this table with no output store and gives each task's result to
    /// `read`; what it makes, indexed by partition.
    fn per_partition<T: Clone + Default>(
        &self,
        op: Op,
        mut read: impl FnMut(TaskResult) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = vec![T::default(); self.partitions() as usize];
        for r in self
            .ctx
            .run_job(self.job(&[], None, op), self.partitions())?
        {
            let p = r.partition as usize;
            let got = read(r)?;
            if let Some(slot) = out.get_mut(p) {
                *slot = got;
            }
        }
        Ok(out)
    }

    /// The output of the caller's `mapper` on every partition, as encoded pairs indexed by
    /// partition, returned by the eggs in one job with no store in between (for small
    /// results, such as a reduce's partials).
    pub fn map_to_caller_encoded(&self, mapper: Functor) -> Result<Vec<EncodedPairs>> {
        let op = Op::MapToCaller(MapToCaller {
            mapper: Some(mapper),
        });
        self.per_partition(op, |r| {
            let batch = r.pairs.unwrap_or_default();
            let pairs = eggroll_core::pairs::iter(&batch.packed)
                .map(|pair| pair.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<eggroll_core::Result<Vec<_>>>()?;
            Ok(pairs)
        })
    }

    /// Every partition's first `limit` pairs in key order, packed (`eggroll_core::pairs`),
    /// by one Take job, each cut before it would pass `max_bytes` (0: no bound) and then
    /// marked as having more, which the caller reads by a scan after the head's last key.
    /// Indexed by partition.
    pub fn heads_packed(&self, limit: u64, max_bytes: u64) -> Result<Vec<Head>> {
        let op = Op::Take(Take {
            limit,
            max_bytes,
            packed: true,
            ..Default::default()
        });
        self.per_partition(op, |r| {
            Ok(Head {
                packed: r.pairs.unwrap_or_default().packed,
                more: r.more,
            })
        })
    }

    /// The first `n` pairs as their encoded bytes, for tools that do not know the types.
    pub fn take_encoded(&self, n: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let batch = self.take_raw(n, false)?;
        Ok(batch.keys.into_iter().zip(batch.values).collect())
    }

    fn what(&self, part: &str) -> String {
        format!(
            "{part} of table {}/{} (written as `{}` -> `{}`)",
            self.locator.namespace,
            self.locator.name,
            self.locator.key_type,
            self.locator.value_type
        )
    }

    /// A job over this table (and `others`) into `output`.
    fn job(&self, others: &[&StoreLocator], output: Option<&StoreLocator>, op: Op) -> Job {
        let mut inputs = vec![store(&self.locator)];
        inputs.extend(others.iter().map(|l| store(l)));
        Job {
            inputs,
            outputs: output.map(store).into_iter().collect(),
            op: Some(op),
            ..Default::default()
        }
    }

    /// A new in-memory output, its keys placed by this table's partitioner; without a
    /// shuffle it sits where this table's partitions do.
    fn output<K2, V2>(&self, partitions: u32, like: Option<&StoreLocator>) -> Result<StoreLocator> {
        let partitioner = Partitioner::from_name(&self.locator.partitioner)?;
        let opts = Options::partitions(partitions).with_partitioner(partitioner);
        self.ctx.new_locator::<K2, V2>(&opts, like)
    }

    /// Map-reduce primitive: map each partition, optionally shuffle and combine.
    fn map_reduce<K2, V2>(
        &self,
        mapper: Option<Functor>,
        shuffle: bool,
        combiner: Option<Functor>,
        partitions: u32,
    ) -> Result<RollPair<K2, V2>> {
        let like = (!shuffle).then_some(&self.locator);
        self.map_reduce_into(mapper, shuffle, combiner, partitions, like)
    }

    /// [`RollPair::map_reduce`] into an output placed like `like`.
    fn map_reduce_into<K2, V2>(
        &self,
        mapper: Option<Functor>,
        shuffle: bool,
        combiner: Option<Functor>,
        partitions: u32,
        like: Option<&StoreLocator>,
    ) -> Result<RollPair<K2, V2>> {
        let out = self.output::<K2, V2>(partitions, like)?;
        self.map_reduce_functors(
            MapReducePartitions {
                mapper,
                shuffle,
                combiner,
                ..Default::default()
            },
            out,
        )
    }

    /// The map-reduce primitive with the caller's functors, into the new store `out`: what
    /// functions of other languages (FATE's Python ones) run through.
    pub fn map_reduce_functors<K2, V2>(
        &self,
        op: MapReducePartitions,
        out: StoreLocator,
    ) -> Result<RollPair<K2, V2>> {
        let job = self.job(&[], Some(&out), Op::MapReduce(op));
        self.ctx.run_job(job, self.partitions())?;
        Ok(RollPair::new(self.ctx.clone(), out))
    }

    /// The merge primitive with the caller's functor, over this table and `other` (which
    /// must be co-partitioned with it) into the new store `out`.
    pub fn merge_functor<W, U>(
        &self,
        other: &RollPair<K, W>,
        kind: MergeKind,
        merge: Option<Functor>,
        out: StoreLocator,
    ) -> Result<RollPair<K, U>> {
        let job = self.job(
            &[&other.locator],
            Some(&out),
            Op::Merge(SortedMerge {
                kind: kind as i32,
                merge,
            }),
        );
        self.ctx.run_job(job, self.partitions())?;
        Ok(RollPair::new(self.ctx.clone(), out))
    }

    /// Number of pairs.
    pub fn count(&self) -> Result<u64> {
        let results = self
            .ctx
            .run_job(self.job(&[], None, Op::Count(Count {})), self.partitions())?;
        Ok(results.iter().map(|r| r.count).sum())
    }

    /// On a cluster, has every egg push its partitions of this table to a roll-site (the
    /// federation's `remote_table`); returns the bytes of table data pushed, or `None` in
    /// standalone mode, where the caller reads the partitions itself.
    pub fn push_to_rollsite(&self, push: PushToRollsite) -> Result<Option<u64>> {
        if !self.ctx.is_distributed() {
            return Ok(None);
        }
        let results = self
            .ctx
            .run_job(self.job(&[], None, Op::Push(push)), self.partitions())?;
        Ok(Some(results.iter().map(|r| r.count).sum()))
    }

    /// Removes the table and its files.
    pub fn destroy(self) -> Result<()> {
        self.ctx.backend().destroy(&self.locator)
    }

    /// Flushes and compacts every partition on disk: after a bulk load, scans run faster.
    pub fn compact(&self) -> Result<()> {
        let job = self.job(&[], None, Op::Compact(Compact {}));
        self.ctx.run_job(job, self.partitions())?;
        Ok(())
    }

    /// The same pairs in `n` partitions (in memory).
    pub fn repartition(&self, n: u32) -> Result<RollPair<K, V>> {
        self.map_reduce(None, true, None, n)
    }

    /// Copies the table to `opts` (a persistent table with `Options::persistent`),
    /// repartitioning when the count differs.
    pub fn save_as(&self, opts: Options) -> Result<RollPair<K, V>> {
        let out = self.ctx.new_locator::<K, V>(
            &Options {
                store_type: match opts.store_type {
                    StoreType::Unspecified => StoreType::PERSISTENT,
                    t => t,
                },
                ..opts
            },
            Some(&self.locator),
        )?;
        self.copy_into(out)
    }

    /// Copies the table into the new store `out`, moving keys when its partition count or
    /// partitioner differs.
    pub(crate) fn copy_into<K2, V2>(&self, out: StoreLocator) -> Result<RollPair<K2, V2>> {
        // Keys move when the count or the partitioner differs.
        let shuffle = out.total_partitions != self.partitions()
            || Partitioner::from_name(&out.partitioner)?
                != Partitioner::from_name(&self.locator.partitioner)?;
        let job = self.job(
            &[],
            Some(&out),
            Op::MapReduce(MapReducePartitions {
                shuffle,
                ..Default::default()
            }),
        );
        self.ctx.run_job(job, self.partitions())?;
        Ok(RollPair::new(self.ctx.clone(), out))
    }

    /// A random sample: each pair kept with probability `fraction`; the same seed, the same sample.
    pub fn sample(&self, fraction: f64, seed: u64) -> Result<RollPair<K, V>> {
        let params = encode(&builtin::SampleParams { fraction, seed })?;
        let f = Functor {
            name: builtin::SAMPLE.into(),
            kind: "builtin".into(),
            params,
        };
        self.map_reduce(Some(f), false, None, self.partitions())
    }

    /// Each partition as one pair: its last key and the list of its pairs in key order.
    pub fn glom(&self) -> Result<RollPair<K, Vec<(K, V)>>> {
        let f = Functor {
            name: builtin::GLOM.into(),
            kind: "builtin".into(),
            params: Vec::new(),
        };
        self.map_reduce(Some(f), false, None, self.partitions())
    }

    /// Brings `other` to this table's partitioning and placement, if they differ.
    pub(crate) fn co_partitioned<W>(&self, other: &RollPair<K, W>) -> Result<RollPair<K, W>> {
        if other.partitions() == self.partitions()
            && self
                .ctx
                .backend()
                .same_placement(&self.locator, &other.locator)?
        {
            Ok(other.clone())
        } else {
            other.map_reduce_into(None, true, None, self.partitions(), Some(&self.locator))
        }
    }

    /// Merge primitive over this table and a co-partitioned `other`.
    fn merge<W, U>(
        &self,
        other: &RollPair<K, W>,
        kind: MergeKind,
        merge: Option<Functor>,
    ) -> Result<RollPair<K, U>> {
        let right = self.co_partitioned(other)?;
        let out = self.output::<K, U>(self.partitions(), Some(&self.locator))?;
        self.merge_functor(&right, kind, merge, out)
    }

    /// The pairs whose key is not in `other`.
    pub fn subtract_by_key<W>(&self, other: &RollPair<K, W>) -> Result<RollPair<K, V>> {
        self.merge(other, MergeKind::SubtractByKey, None)
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> RollPair<K, V> {
    /// The value of `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match self.get_encoded(&encode(key)?)? {
            Some(v) => Ok(Some(decode(&v, &|| self.what("a value"))?)),
            None => Ok(None),
        }
    }

    /// Sets the value of `key`.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        self.put_one_encoded(&encode(key)?, &encode(value)?)
    }

    /// Removes `key`; true if it was there.
    pub fn delete(&self, key: &K) -> Result<bool> {
        self.delete_encoded(&encode(key)?)
    }

    /// Writes many pairs in batches (a later duplicate key wins); returns how many.
    pub fn put_all(&self, data: impl IntoIterator<Item = (K, V)>) -> Result<u64> {
        self.ctx.write_pairs(&self.locator, data)
    }

    /// Every pair, partition by partition, each partition in key order; streamed in batches.
    ///
    /// Producer threads (one per partition, a few partitions ahead) read and decode while the
    /// caller consumes; bounded channels keep memory to a few batches per producer.
    pub fn get_all(&self) -> Result<impl Iterator<Item = Result<(K, V)>> + use<K, V>>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        self.stream_pairs(decode_pair::<K, V>)
    }

    /// The first `n` pairs, in partition order then key order.
    pub fn take(&self, n: u64) -> Result<Vec<(K, V)>> {
        let batch = self.take_raw(n, false)?;
        batch
            .keys
            .iter()
            .zip(&batch.values)
            .map(|(k, v)| {
                Ok((
                    decode(k, &|| self.what("a key"))?,
                    decode(v, &|| self.what("a value"))?,
                ))
            })
            .collect()
    }

    /// The first `n` keys, in partition order then key order.
    pub fn take_keys(&self, n: u64) -> Result<Vec<K>> {
        self.take_raw(n, true)?
            .keys
            .iter()
            .map(|k| Ok(decode(k, &|| self.what("a key"))?))
            .collect()
    }

    /// The first pair, if any.
    pub fn first(&self) -> Result<Option<(K, V)>> {
        Ok(self.take(1)?.into_iter().next())
    }

    /// Maps every value, keeping keys and partitions.
    pub fn map_values<F: MapValues<V = V>>(&self, f: &F) -> Result<RollPair<K, F::Out>> {
        self.map_reduce(
            Some(functor(f, "map_values")?),
            false,
            None,
            self.partitions(),
        )
    }

    /// Maps every pair to a new pair, re-partitioned by the new key.
    pub fn map<F: Map<K = K, V = V>>(&self, f: &F) -> Result<RollPair<F::K2, F::V2>> {
        self.map_reduce(Some(functor(f, "map")?), true, None, self.partitions())
    }

    /// Maps every pair to any number of pairs, re-partitioned by key.
    pub fn flat_map<F: FlatMap<K = K, V = V>>(&self, f: &F) -> Result<RollPair<F::K2, F::V2>> {
        self.map_reduce(Some(functor(f, "flat_map")?), true, None, self.partitions())
    }

    /// Keeps the pairs `f` accepts.
    pub fn filter<F: Filter<K = K, V = V>>(&self, f: &F) -> Result<RollPair<K, V>> {
        self.map_reduce(Some(functor(f, "filter")?), false, None, self.partitions())
    }

    /// Maps whole partitions; output re-partitioned by key (a later duplicate key wins).
    pub fn map_partitions<F: MapPartitions<K = K, V = V>>(
        &self,
        f: &F,
    ) -> Result<RollPair<F::K2, F::V2>> {
        self.map_reduce(
            Some(functor(f, "map_partitions")?),
            true,
            None,
            self.partitions(),
        )
    }

    /// What `f` gives on every partition, sent back by the eggs with no table made, in
    /// partition order then the order `f` gave it: for a small result per partition.
    pub fn map_partitions_to_caller<F>(&self, f: &F) -> Result<Vec<(F::K2, F::V2)>>
    where
        F: MapPartitions<K = K, V = V>,
        F::K2: DeserializeOwned,
        F::V2: DeserializeOwned,
    {
        let parts = self.map_to_caller_encoded(functor(f, "map_partitions")?)?;
        let what = self.what("a mapped pair");
        parts
            .into_iter()
            .flatten()
            .map(|(k, v)| decode_pair(&k, &v, &what))
            .collect()
    }

    /// Maps whole partitions and combines the values of equal output keys with `r`.
    pub fn map_reduce_partitions<F, R>(&self, f: &F, r: &R) -> Result<RollPair<F::K2, F::V2>>
    where
        F: MapPartitions<K = K, V = V>,
        R: Reduce<V = F::V2>,
    {
        let combiner = functor(r, "reduce")?;
        self.map_reduce(
            Some(functor(f, "map_partitions")?),
            true,
            Some(combiner),
            self.partitions(),
        )
    }

    /// Folds each non-empty partition into one value under its last key.
    pub fn collapse_partitions<F: CollapsePartitions<K = K, V = V>>(
        &self,
        f: &F,
    ) -> Result<RollPair<K, F::Out>> {
        self.map_reduce(
            Some(functor(f, "collapse_partitions")?),
            false,
            None,
            self.partitions(),
        )
    }

    /// Combines every value with `f`: a partial per partition, combined here. None if empty.
    pub fn reduce<F: Reduce<V = V>>(&self, f: &F) -> Result<Option<V>> {
        let seq = functor(f, "reduce")?;
        // A reduce's seq_op is the reduce itself, registered as a binary function.
        let job = self.job(
            &[],
            None,
            Op::Aggregate(Aggregate {
                zero: None,
                seq_op: Some(seq),
            }),
        );
        let mut acc: Option<V> = None;
        for r in self.ctx.run_job(job, self.partitions())? {
            if let Some(bytes) = r.value {
                let v: V = decode(&bytes, &|| self.what("a partial reduce"))?;
                acc = Some(match acc {
                    Some(a) => f.reduce(a, v),
                    None => v,
                });
            }
        }
        Ok(acc)
    }

    /// Folds values into `zero` with `seq` per partition, then the partials with `comb`.
    pub fn aggregate<S, C>(&self, zero: &S::Acc, seq: &S, comb: &C) -> Result<S::Acc>
    where
        S: SeqOp<V = V>,
        C: Reduce<V = S::Acc>,
        S::Acc: Clone,
    {
        let job = self.job(
            &[],
            None,
            Op::Aggregate(Aggregate {
                zero: Some(encode(zero)?),
                seq_op: Some(functor(seq, "seq_op")?),
            }),
        );
        let mut acc = zero.clone();
        for r in self.ctx.run_job(job, self.partitions())? {
            if let Some(bytes) = r.value {
                acc = comb.reduce(acc, decode(&bytes, &|| self.what("a partial aggregate"))?);
            }
        }
        Ok(acc)
    }

    /// Inner join on equal keys; `f` merges the two values. `other` is repartitioned to this
    /// table's partition count when they differ.
    pub fn join<W, F: Join<V = V, W = W>>(
        &self,
        other: &RollPair<K, W>,
        f: &F,
    ) -> Result<RollPair<K, F::Out>> {
        self.merge(other, MergeKind::Join, Some(functor(f, "join")?))
    }

    /// Every key of both tables; `f` merges the values of keys in both.
    pub fn union<F: Reduce<V = V>>(&self, other: &RollPair<K, V>, f: &F) -> Result<RollPair<K, V>> {
        self.merge(other, MergeKind::Union, Some(functor(f, "reduce")?))
    }
}

type Batch<T> = Result<Vec<T>>;
/// Starts the producer of one partition.
type Spawn<T> = dyn Fn(u32) -> Result<Receiver<Batch<T>>>;

/// Decodes one encoded pair of a typed table.
fn decode_pair<K: DeserializeOwned, V: DeserializeOwned>(
    k: &[u8],
    v: &[u8],
    what: &str,
) -> Result<(K, V)> {
    Ok((
        decode(k, &|| what.to_string())?,
        decode(v, &|| what.to_string())?,
    ))
}
use std::sync::mpsc::{Receiver, SyncSender};

/// The stream behind [`RollPair::get_all`]: partitions in order, a window of them in flight.
pub(crate) struct GetAll<T> {
    ahead: std::collections::VecDeque<Receiver<Batch<T>>>,
    next: u32,
    total: u32,
    window: u32,
    spawn: Box<Spawn<T>>,
    current: std::vec::IntoIter<T>,
    failed: bool,
}

impl<T> GetAll<T> {
    /// Starts producers until `window` partitions are in flight.
    fn fill(&mut self) -> Result<()> {
        while self.next < self.total && (self.ahead.len() as u32) < self.window {
            self.ahead.push_back((self.spawn)(self.next)?);
            self.next += 1;
        }
        Ok(())
    }
}

impl<T> Iterator for GetAll<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(pair) = self.current.next() {
                return Some(Ok(pair));
            }
            if self.failed {
                return None;
            }
            let rx = self.ahead.front()?;
            match rx.recv() {
                Ok(Ok(batch)) => self.current = batch.into_iter(),
                Ok(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                // This partition's producer is done: move on and keep the window full.
                Err(_) => {
                    self.ahead.pop_front();
                    if let Err(e) = self.fill() {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}
