//! What a table needs from where it runs: the [`Backend`] trait, implemented in this process
//! (`local`) and on a cluster session's eggs (`cluster`).
//!
//! The trait is shaped around jobs and actions, not named ops: every transformation (map-reduce
//! over partitions, the sorted merge of two co-partitioned tables) and most actions (count,
//! take, aggregate, compact, push) are one [`Job`]; only what cannot be a job of tasks is a
//! method here: a point read or delete, a stream of pairs in or out, store metadata and the
//! session's end.

use crate::error::Result;
use eggroll_eggpair::memory_budget::MemoryUsage;
use eggroll_proto::meta::{Job, StoreLocator, TaskResult};

/// Sees one encoded pair of a scan; returns false to stop.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// Where a session's tables live and its tasks run.
pub(crate) trait Backend: Send + Sync {
    /// The session's id.
    fn session_id(&self) -> &str;

    /// True for a session on a cluster.
    fn is_distributed(&self) -> bool;

    /// How many bytes of encoded pairs go in one batch written or read.
    fn batch_bytes(&self) -> usize;

    /// How many partitions are worth reading at once (the streams of `get_all`).
    fn parallelism(&self) -> usize;

    /// Records a new empty store; an in-memory one is placed like `like` when given
    /// (partition `p` of both in one place).
    fn create(&self, l: &StoreLocator, like: Option<&StoreLocator>) -> Result<()>;

    /// An existing persistent store.
    fn load(&self, namespace: &str, name: &str) -> Result<StoreLocator>;

    /// The persistent stores whose namespace and name match the glob patterns.
    fn list(&self, namespace: &str, name: &str) -> Result<Vec<StoreLocator>>;

    /// Removes a store: its data on every partition and its metadata.
    fn destroy(&self, l: &StoreLocator) -> Result<()>;

    /// Whether partition `p` of `a` and of `b` sit in one place, for every `p`.
    fn same_placement(&self, a: &StoreLocator, b: &StoreLocator) -> Result<bool>;

    /// Runs `job` (its ids set) as one task per partition `0..partitions`, in parallel.
    fn run_job(&self, job: Job, partitions: u32) -> Result<Vec<TaskResult>>;

    /// The value of the encoded key `k` in partition `p` of `l`.
    fn get(&self, l: &StoreLocator, p: u32, k: Vec<u8>) -> Result<Option<Vec<u8>>>;

    /// Removes the encoded key `k` from partition `p` of `l`; true if it was there.
    fn delete(&self, l: &StoreLocator, p: u32, k: Vec<u8>) -> Result<bool>;

    /// Calls `visit` on the pairs of partition `p` in key order from the first key at or
    /// after `start` (empty: from the first); it returns false to stop.
    fn scan(&self, l: &StoreLocator, p: u32, start: &[u8], visit: &mut Visit) -> Result<()>;

    /// Opens the sink that packed batches of pairs for `l` go to (see `writer::PairWriter`).
    fn batches<'a>(&'a self, l: &StoreLocator) -> Result<Box<dyn BatchSink + 'a>>;

    /// Stores one packed batch of pairs of partition `p` of `l` before it returns; returns
    /// how many pairs it held.
    fn put_batch(&self, l: &StoreLocator, p: u32, packed: Vec<u8>) -> Result<u64> {
        let mut sink = self.batches(l)?;
        sink.send(p, packed)?;
        sink.finish()
    }

    /// Ends the session (at once, without asking its eggs, with `kill`); its in-memory
    /// tables are gone, persistent ones stay.
    fn stop(&self, kill: bool) -> Result<()>;

    /// This process's in-memory tables against its budget, where this process holds them
    /// (standalone); `None` on a cluster, whose eggs answer for theirs.
    fn memory_usage(&self) -> Option<MemoryUsage> {
        None
    }
}

/// Takes packed batches of pairs (the `eggroll_core::pairs` layout) for the partitions of one
/// store.
pub(crate) trait BatchSink {
    /// Hands over one batch of pairs of partition `p`; it may be stored after this returns.
    fn send(&mut self, p: u32, packed: Vec<u8>) -> Result<()>;

    /// Waits until every batch sent is stored; returns how many pairs were written.
    fn finish(self: Box<Self>) -> Result<u64>;
}
