//! Runs one task: one partition's share of a job, on the calling (blocking) thread.
//!
//! Every operation reduces to two primitives (map-reduce over partitions, and a merge of two
//! co-partitioned key-sorted partitions) plus a few actions; see DESIGN.md.

use crate::catalog::Stores;
use crate::error::{EggError, Result};
use crate::store::{combine_values, KeyRange, Pair, PartitionStore};
use eggroll_core::functions::{lookup, visit_owned, Emit, ErasedFn, PairSource, VisitPair};
use eggroll_core::partitioner::Partitioner;
use eggroll_proto::meta::{
    job::Op, Functor, MapReducePartitions, MergeKind, PairBatch, Sequence, Store, StoreLocator,
    Take, Task, TaskResult,
};
use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

/// The most a `MapToCaller` task sends back: well under the eggs' largest message, so that
/// a map that gives too much fails saying so rather than in the transport.
pub const MAX_TO_CALLER_BYTES: usize = 256 << 20;

/// The largest in-memory partition a Take reads in `run_now`: copying this much is
/// cheaper than the two thread hand-offs of the blocking pool.
const NOW_BYTES: u64 = 64 << 10;

/// Where a shuffle's output goes: partition `dst` of the job's output store.
pub trait ShuffleSink: Sync {
    /// Delivers pairs; with a combiner, values of keys already there are combined.
    fn send(
        &self,
        output: &StoreLocator,
        dst: u32,
        pairs: Vec<Pair>,
        combiner: Option<&ErasedFn>,
    ) -> Result<()>;
}

/// A sink that writes straight into this process's stores (standalone mode, or an egg that
/// owns the destination partition).
pub struct LocalSink {
    stores: Arc<Stores>,
}

impl LocalSink {
    /// A sink over `stores`.
    pub fn new(stores: Arc<Stores>) -> Self {
        Self { stores }
    }
}

impl ShuffleSink for LocalSink {
    fn send(
        &self,
        output: &StoreLocator,
        dst: u32,
        pairs: Vec<Pair>,
        combiner: Option<&ErasedFn>,
    ) -> Result<()> {
        let store = self.stores.partition(output, dst)?;
        match combiner {
            Some(c) => store.merge_batch(pairs, c),
            None => store.put_batch(pairs),
        }
    }
}

/// Runs tasks against one process's stores.
pub struct Executor {
    stores: Arc<Stores>,
}

/// Gathers pairs into batches of about `limit` bytes and hands each full one to `flush`.
struct Batcher {
    pairs: Vec<Pair>,
    bytes: usize,
    limit: usize,
}

impl Batcher {
    fn new(limit: usize) -> Self {
        Self {
            pairs: Vec::new(),
            bytes: 0,
            limit: limit.max(1),
        }
    }

    /// Adds a pair; returns a full batch when there is one.
    fn push(&mut self, k: Vec<u8>, v: Vec<u8>) -> Option<Vec<Pair>> {
        self.bytes += k.len() + v.len() + 16;
        self.pairs.push((k, v));
        (self.bytes >= self.limit).then(|| self.take())
    }

    fn take(&mut self) -> Vec<Pair> {
        self.bytes = 0;
        std::mem::take(&mut self.pairs)
    }
}

/// Length of the tag `Sequence::Add` puts before a key: source partition and emission index.
pub const TAG_LEN: usize = 4 + 8;

/// `key` tagged with where it came from, so that key order is FATE standalone's fold order.
fn tag(source: u32, index: u64, key: &[u8]) -> Vec<u8> {
    let mut tagged = Vec::with_capacity(TAG_LEN + key.len());
    tagged.extend_from_slice(&source.to_be_bytes());
    tagged.extend_from_slice(&index.to_be_bytes());
    tagged.extend_from_slice(key);
    tagged
}

/// The key [`tag`] tagged.
fn untag(mut tagged: Vec<u8>) -> eggroll_core::Result<Vec<u8>> {
    if tagged.len() < TAG_LEN {
        return Err(eggroll_core::CoreError::InvalidArgument(format!(
            "a key of {} bytes carries no sequence tag ({TAG_LEN} bytes); the input of an \
             ordered fold must be the output of an ordered shuffle",
            tagged.len()
        )));
    }
    tagged.drain(..TAG_LEN);
    Ok(tagged)
}

/// The shapes an ordered fold runs in: tags are added by a shuffle without combiner, and
/// stripped by a map in place without mapper.
fn check_sequence(sequence: Sequence, mr: &MapReducePartitions) -> Result<()> {
    let bad = match sequence {
        Sequence::None => None,
        Sequence::Add if !mr.shuffle || mr.combiner.is_some() => {
            Some("tagging keys needs a shuffle without combiner")
        }
        Sequence::Strip if mr.shuffle || mr.mapper.is_some() => {
            Some("stripping tags needs a map in place without mapper")
        }
        _ => None,
    };
    match bad {
        Some(why) => Err(EggError::InvalidTask(format!("{why} (an ordered fold)"))),
        None => Ok(()),
    }
}

fn function(f: &Functor) -> Result<ErasedFn> {
    Ok(lookup(&f.name, &f.kind, &f.params)?)
}

fn locator(stores: &[Store], i: usize, what: &str) -> Result<StoreLocator> {
    stores
        .get(i)
        .and_then(|s| s.locator.clone())
        .ok_or_else(|| EggError::InvalidTask(format!("the job has no {what} store")))
}

/// A Take over one partition's pairs: the first `t.limit` (keys only, packed, or up to
/// `t.max_bytes`, as `t` asks) into `result`.
fn take(
    pairs: impl Iterator<Item = Result<Pair>>,
    t: &Take,
    result: &mut TaskResult,
) -> Result<()> {
    let mut batch = PairBatch::default();
    let (mut n, mut bytes) = (0u64, 0u64);
    for pair in pairs.take(t.limit as usize) {
        let (k, v) = pair?;
        let v = if t.keys_only { Vec::new() } else { v };
        bytes += (k.len() + v.len()) as u64;
        if t.max_bytes > 0 && bytes > t.max_bytes {
            result.more = true;
            break;
        }
        n += 1;
        if t.packed {
            eggroll_core::pairs::push(&mut batch.packed, &k, &v);
        } else {
            batch.keys.push(k);
            if !t.keys_only {
                batch.values.push(v);
            }
        }
    }
    result.count = n;
    result.pairs = Some(batch);
    Ok(())
}

impl Executor {
    /// An executor over `stores`.
    pub fn new(stores: Arc<Stores>) -> Self {
        Self { stores }
    }

    /// The stores it runs against.
    pub fn stores(&self) -> &Arc<Stores> {
        &self.stores
    }

    /// Runs one task; errors name the job and partition.
    pub fn run(&self, task: &Task, sink: &dyn ShuffleSink) -> Result<TaskResult> {
        let job = task
            .job
            .as_ref()
            .ok_or_else(|| EggError::InvalidTask("the task carries no job".into()))?;
        let p = task.partition;
        let _span =
            tracing::debug_span!("task", session = %job.session_id, job = %job.id, partition = p)
                .entered();
        self.run_op(job, p, sink).map_err(|source| EggError::Task {
            job: job.id.clone(),
            partition: p,
            source: Box::new(source),
        })
    }

    /// Runs a task that needs neither disk nor waiting (a Count, or a Take of a small
    /// partition, in memory and not being written), so that the caller may run it on an
    /// async worker; `None` for any other (or on any error), which then goes through `run`.
    pub fn run_now(&self, task: &Task) -> Option<TaskResult> {
        let job = task.job.as_ref()?;
        let input = job.inputs.first()?.locator.as_ref()?;
        if input.store_type().is_persistent() {
            return None;
        }
        let p = task.partition;
        let store = self.stores.partition(input, p).ok()?;
        let mut result = TaskResult {
            partition: p,
            ..Default::default()
        };
        match job.op.as_ref()? {
            Op::Count(_) => result.count = store.count_now()?,
            Op::Take(t) => {
                // Only the pairs the take may return are copied (one for a `first`).
                let pairs =
                    store.pairs_now(NOW_BYTES, usize::try_from(t.limit).unwrap_or(usize::MAX))?;
                take(pairs.into_iter().map(Ok), t, &mut result).ok()?;
            }
            _ => return None,
        }
        Some(result)
    }

    fn run_op(
        &self,
        job: &eggroll_proto::meta::Job,
        p: u32,
        sink: &dyn ShuffleSink,
    ) -> Result<TaskResult> {
        let op = job
            .op
            .as_ref()
            .ok_or_else(|| EggError::InvalidTask("the job names no operation".into()))?;
        let input = locator(&job.inputs, 0, "input")?;
        let mut result = TaskResult {
            partition: p,
            ..Default::default()
        };
        match op {
            Op::MapReduce(mr) => {
                let output = locator(&job.outputs, 0, "output")?;
                let mapper = mr.mapper.as_ref().map(function).transpose()?;
                let combiner = mr.combiner.as_ref().map(function).transpose()?;
                let sequence = Sequence::try_from(mr.sequence).map_err(|_| {
                    EggError::InvalidTask(format!(
                        "unknown sequence mode {}; client and egg versions differ",
                        mr.sequence
                    ))
                })?;
                check_sequence(sequence, mr)?;
                result.count = self.map_reduce(
                    &input,
                    &output,
                    p,
                    mapper.as_ref(),
                    (mr.shuffle, sequence),
                    combiner.as_ref(),
                    sink,
                )?;
            }
            Op::Merge(m) => {
                let right = locator(&job.inputs, 1, "second input")?;
                let output = locator(&job.outputs, 0, "output")?;
                if right.total_partitions != input.total_partitions {
                    return Err(EggError::InvalidTask(format!(
                        "a merge needs co-partitioned inputs, but they have {} and {} partitions; repartition one first",
                        input.total_partitions, right.total_partitions
                    )));
                }
                let (pl, pr) = (
                    Partitioner::from_name(&input.partitioner)?,
                    Partitioner::from_name(&right.partitioner)?,
                );
                if pl != pr {
                    return Err(EggError::InvalidTask(format!(
                        "a merge needs co-partitioned inputs, but one places keys by {} and the other by {}; repartition one first",
                        pl.name(),
                        pr.name()
                    )));
                }
                let f = m.merge.as_ref().map(function).transpose()?;
                result.count = self.merge(&input, &right, &output, p, m.kind(), f.as_ref())?;
            }
            Op::Aggregate(a) => {
                let f =
                    function(a.seq_op.as_ref().ok_or_else(|| {
                        EggError::InvalidTask("aggregate needs a seq_op".into())
                    })?)?;
                let store = self.stores.partition(&input, p)?;
                let mut acc = a.zero.clone();
                for pair in store.iter(KeyRange::all())? {
                    let (_, v) = pair?;
                    acc = Some(match acc {
                        Some(acc) => combine_values(&f, &acc, &v)?,
                        None => v,
                    });
                    result.count += 1;
                }
                result.value = acc;
            }
            Op::Take(t) => {
                let store = self.stores.partition(&input, p)?;
                take(store.iter(KeyRange::all())?, t, &mut result)?;
            }
            Op::MapToCaller(m) => {
                let mapper = function(m.mapper.as_ref().ok_or_else(|| {
                    EggError::InvalidTask("map_to_caller needs a mapper".into())
                })?)?;
                let store = self.stores.partition(&input, p)?;
                let mut packed = Vec::new();
                map_partition(store.as_ref(), p, Some(&mapper), &mut |k, v| {
                    eggroll_core::pairs::push(&mut packed, &k, &v);
                    result.count += 1;
                    if packed.len() > MAX_TO_CALLER_BYTES {
                        return Err(eggroll_core::CoreError::InvalidArgument(format!(
                            "partition {p}'s map gave more than {} MiB to send back to the \
                             caller; map into a table instead",
                            MAX_TO_CALLER_BYTES >> 20
                        )));
                    }
                    Ok(())
                })?;
                result.pairs = Some(PairBatch {
                    packed,
                    ..Default::default()
                });
            }
            Op::Count(_) => {
                result.count = self.stores.partition(&input, p)?.count()?;
            }
            Op::Compact(_) => {
                self.stores.partition(&input, p)?.compact()?;
            }
            Op::Destroy(_) => {
                self.stores.destroy_partition(&input, p)?;
            }
            // Needs the network: the egg's service runs it (see `rollsite_push`).
            Op::Push(_) => {
                return Err(EggError::InvalidTask(
                    "a push to a roll-site runs on the eggs of a cluster; in standalone mode \
                     the federation reads the table itself"
                        .into(),
                ))
            }
        }
        Ok(result)
    }

    #[allow(clippy::too_many_arguments)]
    fn map_reduce(
        &self,
        input: &StoreLocator,
        output: &StoreLocator,
        p: u32,
        mapper: Option<&ErasedFn>,
        (shuffle, sequence): (bool, Sequence),
        combiner: Option<&ErasedFn>,
        sink: &dyn ShuffleSink,
    ) -> Result<u64> {
        if !shuffle && output.total_partitions != input.total_partitions {
            return Err(EggError::InvalidTask(
                "an operation that keeps keys in place needs an output with the input's partition count".into(),
            ));
        }
        let store = self.stores.partition(input, p)?;
        // Output kept in place in memory is written in one batch: built in bulk, where
        // batches after the first would each rebuild the partition or search per pair.
        let limit = if !shuffle && !output.store_type().is_persistent() {
            usize::MAX
        } else {
            self.stores.config().batch_bytes as usize
        };
        let n_out = output.total_partitions.max(1);
        let partitioner = Partitioner::from_name(&output.partitioner)?;
        let mut emitted = 0u64;
        // Without a combiner, output goes out in batches as it is made; with one, equal keys
        // are combined here first so each key crosses to its partition once.
        let mut batchers: Vec<Batcher> = (0..if shuffle { n_out } else { 1 })
            .map(|_| Batcher::new(limit))
            .collect();
        let mut combined: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        {
            let mut emit = |k: Vec<u8>, v: Vec<u8>| -> eggroll_core::Result<()> {
                let index = emitted;
                emitted += 1;
                let k = match sequence {
                    Sequence::Strip => untag(k)?,
                    _ => k,
                };
                if let Some(c) = combiner {
                    match combined.entry(k) {
                        Entry::Occupied(mut e) => {
                            let merged = combine_values(c, e.get(), &v).map_err(to_core)?;
                            *e.get_mut() = merged;
                        }
                        Entry::Vacant(e) => {
                            e.insert(v);
                        }
                    }
                    return Ok(());
                }
                let dst = if shuffle {
                    partitioner.partition(&k, n_out)
                } else {
                    p
                };
                let slot = if shuffle { dst as usize } else { 0 };
                let k = match sequence {
                    Sequence::Add => tag(p, index, &k),
                    _ => k,
                };
                if let Some(full) = batchers[slot].push(k, v) {
                    sink.send(output, dst, full, None).map_err(to_core)?;
                }
                Ok(())
            };
            map_partition(store.as_ref(), p, mapper, &mut emit)?;
        }
        for (slot, b) in batchers.iter_mut().enumerate() {
            let rest = b.take();
            if !rest.is_empty() {
                let dst = if shuffle { slot as u32 } else { p };
                sink.send(output, dst, rest, None)?;
            }
        }
        if let Some(c) = combiner {
            let mut by_dst: Vec<Vec<Pair>> = vec![Vec::new(); n_out as usize];
            for (k, v) in combined {
                let dst = if shuffle {
                    partitioner.partition(&k, n_out)
                } else {
                    p
                };
                by_dst[dst as usize].push((k, v));
            }
            for (dst, pairs) in by_dst.into_iter().enumerate() {
                if !pairs.is_empty() {
                    sink.send(output, dst as u32, pairs, Some(c))?;
                }
            }
        }
        Ok(emitted)
    }

    fn merge(
        &self,
        left: &StoreLocator,
        right: &StoreLocator,
        output: &StoreLocator,
        p: u32,
        kind: MergeKind,
        f: Option<&ErasedFn>,
    ) -> Result<u64> {
        let out = self.stores.partition(output, p)?;
        let (l, r) = (
            self.stores.partition(left, p)?,
            self.stores.partition(right, p)?,
        );
        let mut batch = Batcher::new(self.stores.config().batch_bytes as usize);
        let mut written = 0u64;
        if kind == MergeKind::Partitions {
            let Some(ErasedFn::PartitionPair(f)) = f else {
                return Err(EggError::InvalidTask(
                    "a merge of kind PARTITIONS needs a function of two partitions".into(),
                ));
            };
            let (mut left, mut right) = (StorePairs::new(l.as_ref()), StorePairs::new(r.as_ref()));
            let mut emit = |k: Vec<u8>, v: Vec<u8>| -> eggroll_core::Result<()> {
                written += 1;
                if let Some(full) = batch.push(k, v) {
                    out.put_batch(full).map_err(to_core)?;
                }
                Ok(())
            };
            f(p, &mut left, &mut right, &mut emit)?;
            let rest = batch.take();
            if !rest.is_empty() {
                out.put_batch(rest)?;
            }
            return Ok(written);
        }
        let mut li = l.iter(KeyRange::all())?;
        let mut ri = r.iter(KeyRange::all())?;
        let mut write = |k: Vec<u8>, v: Vec<u8>, out: &dyn PartitionStore| -> Result<()> {
            written += 1;
            if let Some(full) = batch.push(k, v) {
                out.put_batch(full)?;
            }
            Ok(())
        };
        let (keep_left, keep_right, keep_both) = match kind {
            MergeKind::Join => (false, false, true),
            MergeKind::Union => (true, true, true),
            MergeKind::SubtractByKey => (true, false, false),
            MergeKind::Partitions => unreachable!("handled above"),
            MergeKind::Unspecified => {
                return Err(EggError::InvalidTask("merge kind is not set".into()))
            }
        };
        let mut a = li.next().transpose()?;
        let mut b = ri.next().transpose()?;
        loop {
            // Past the end of one side, the other side's pairs are kept, or none is left to write.
            let order = match (&a, &b) {
                (None, None) => break,
                (Some(_), None) if !keep_left => break,
                (None, Some(_)) if !keep_right => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
            };
            // The smaller key's pair, or both on equal keys.
            let left = if order.is_le() { a.take() } else { None };
            let right = if order.is_ge() { b.take() } else { None };
            match (left, right) {
                (Some((k, va)), Some((_, vb))) if keep_both => {
                    let v = match f {
                        Some(f) => combine_values(f, &va, &vb)?,
                        None => va,
                    };
                    write(k, v, out.as_ref())?;
                }
                (Some((k, v)), None) if keep_left => write(k, v, out.as_ref())?,
                (None, Some((k, v))) if keep_right => write(k, v, out.as_ref())?,
                _ => {}
            }
            if order.is_le() {
                a = li.next().transpose()?;
            }
            if order.is_ge() {
                b = ri.next().transpose()?;
            }
        }
        let rest = batch.take();
        if !rest.is_empty() {
            out.put_batch(rest)?;
        }
        Ok(written)
    }
}

/// Calls `mapper` (none: the identity) on partition `p` of `store`, in key order.
fn map_partition(
    store: &dyn PartitionStore,
    p: u32,
    mapper: Option<&ErasedFn>,
    emit: &mut Emit,
) -> Result<()> {
    let mut pairs = StorePairs::new(store);
    match mapper {
        None => {
            for pair in pairs {
                let (k, v) = pair?;
                emit(k, v)?;
            }
        }
        Some(ErasedFn::PerPair(f)) => {
            for pair in pairs {
                let (k, v) = pair?;
                f(&k, &v, emit)?;
            }
        }
        Some(ErasedFn::PerPartition(f)) => f(p, &mut pairs, emit)?,
        Some(ErasedFn::Binary(_)) => {
            return Err(EggError::InvalidTask(
                "a two-value function (reduce/join) cannot map a partition".into(),
            ))
        }
        Some(ErasedFn::PartitionPair(_)) => return Err(EggError::InvalidTask(
            "a function of two partitions cannot map one partition; use a merge of kind PARTITIONS"
                .into(),
        )),
    }
    Ok(())
}

/// A partition's pairs for a function: iterated (owned) from the store's iterator, made on
/// first use; or lent whole to a visitor through the store's scan, which copies less.
struct StorePairs<'a> {
    store: &'a dyn PartitionStore,
    iter: Option<crate::store::PairIterator<'a>>,
    done: bool,
}

impl<'a> StorePairs<'a> {
    fn new(store: &'a dyn PartitionStore) -> Self {
        Self {
            store,
            iter: None,
            done: false,
        }
    }
}

impl Iterator for StorePairs<'_> {
    type Item = eggroll_core::Result<Pair>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.iter.is_none() {
            match self.store.iter(KeyRange::all()) {
                Ok(it) => self.iter = Some(it),
                Err(e) => {
                    self.done = true;
                    return Some(Err(to_core(e)));
                }
            }
        }
        let next = self.iter.as_mut()?.next();
        if next.is_none() {
            self.done = true;
        }
        next.map(|r| r.map_err(to_core))
    }
}

impl PairSource for StorePairs<'_> {
    fn visit_rest(&mut self, visit: &mut VisitPair) -> eggroll_core::Result<()> {
        if self.iter.is_some() || self.done {
            // Part-way through: the rest one by one.
            return visit_owned(self, visit);
        }
        self.done = true;
        // The store's scan fails only with its own error type: carry the visitor's out.
        let mut failed = None;
        self.store
            .scan(KeyRange::all(), &mut |k, v| match visit(k, v) {
                Ok(()) => Ok(true),
                Err(e) => {
                    failed = Some(e);
                    Ok(false)
                }
            })
            .map_err(to_core)?;
        failed.map_or(Ok(()), Err)
    }
}

/// Carries an egg error through a user-function callback, whose error type is the core one.
fn to_core(e: EggError) -> eggroll_core::CoreError {
    match e {
        EggError::Core(c) => c,
        other => eggroll_core::CoreError::InvalidArgument(other.to_string()),
    }
}
