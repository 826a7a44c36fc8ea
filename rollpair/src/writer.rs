//! The one pair writer: encoded pairs gathered per partition into packed batches of one
//! budget, each full batch handed to the backend's [`BatchSink`] while the caller goes on.

use crate::backend::{Backend, BatchSink};
use crate::error::Result;
use eggroll_core::codec::encode_into;
use eggroll_core::partitioner::Partitioner;
use eggroll_proto::meta::StoreLocator;
use serde::Serialize;

/// The bytes of pairs in one batch sent to an egg: a few MiB per gRPC message, well under
/// the message limit (DESIGN.md).
pub(crate) const BATCH_BYTES: usize = 4 << 20;

/// Writes pairs into one store, a packed batch per partition at a time.
pub(crate) struct PairWriter<'a> {
    sink: Box<dyn BatchSink + 'a>,
    buckets: Vec<Vec<u8>>,
    budget: usize,
    partitioner: Partitioner,
}

impl<'a> PairWriter<'a> {
    /// A writer into `l` through `backend`, in batches of the backend's budget.
    pub(crate) fn new(backend: &'a dyn Backend, l: &StoreLocator) -> Result<Self> {
        let partitioner = Partitioner::from_name(&l.partitioner)?;
        let mut w = Self::with_sink(
            backend.batches(l)?,
            l.total_partitions,
            backend.batch_bytes(),
        );
        w.partitioner = partitioner;
        Ok(w)
    }

    /// A writer of `partitions` partitions into `sink`, in batches of `budget` bytes.
    fn with_sink(sink: Box<dyn BatchSink + 'a>, partitions: u32, budget: usize) -> Self {
        Self {
            sink,
            buckets: vec![Vec::new(); partitions as usize],
            budget: budget.max(1),
            partitioner: Partitioner::default(),
        }
    }

    /// Adds the encoded pair `k, v` to partition `p` (which the caller checked).
    pub(crate) fn push(&mut self, p: u32, k: &[u8], v: &[u8]) -> Result<()> {
        let bucket = &mut self.buckets[p as usize];
        eggroll_core::pairs::push(bucket, k, v);
        if bucket.len() >= self.budget {
            // The next batch will be as large: reserve it once (plus room for the pair
            // that crosses the budget) rather than grow it by doubling.
            let full = std::mem::replace(bucket, Vec::with_capacity(self.budget + 4096));
            self.sink.send(p, full)?;
        }
        Ok(())
    }

    /// Encodes every pair of `data` into the partition of its key, then [`Self::finish`]es.
    pub(crate) fn write_all<K: Serialize, V: Serialize>(
        mut self,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Result<u64> {
        let n = self.buckets.len() as u32;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for (key, value) in data {
            k.clear();
            v.clear();
            encode_into(&key, &mut k)?;
            encode_into(&value, &mut v)?;
            self.push(self.partitioner.partition(&k, n), &k, &v)?;
        }
        self.finish()
    }

    /// Sends what is left and waits until every batch is stored; returns how many pairs
    /// were written.
    pub(crate) fn finish(mut self) -> Result<u64> {
        for (p, batch) in std::mem::take(&mut self.buckets).into_iter().enumerate() {
            if !batch.is_empty() {
                self.sink.send(p as u32, batch)?;
            }
        }
        self.sink.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eggroll_core::sync::Mutex;
    use std::sync::Arc;

    /// The batches sent, with their partitions.
    type Sent = Arc<Mutex<Vec<(u32, Vec<u8>)>>>;

    /// Records every batch it is sent.
    struct Recorder(Sent);

    impl BatchSink for Recorder {
        fn send(&mut self, p: u32, packed: Vec<u8>) -> Result<()> {
            self.0.lock().push((p, packed));
            Ok(())
        }

        fn finish(self: Box<Self>) -> Result<u64> {
            let sent = self.0.lock();
            let pairs = sent
                .iter()
                .map(|(_, b)| eggroll_core::pairs::iter(b).count());
            Ok(pairs.sum::<usize>() as u64)
        }
    }

    #[test]
    fn batches_stay_near_the_budget_and_pairs_land_in_the_partition_of_their_key() {
        let sent: Sent = Default::default();
        let writer = PairWriter::with_sink(Box::new(Recorder(sent.clone())), 3, 1000);
        let data: Vec<(u64, String)> = (0..5000).map(|i| (i, format!("value {i}"))).collect();
        assert_eq!(writer.write_all(data.clone()).unwrap(), 5000);

        let sent = sent.lock();
        let mut seen = Vec::new();
        for (p, batch) in sent.iter() {
            // A batch is sent once it reaches the budget: one pair past it at most.
            assert!(batch.len() < 1000 + 64, "a batch of {} bytes", batch.len());
            for pair in eggroll_core::pairs::iter(batch) {
                let (k, v) = pair.unwrap();
                assert_eq!(eggroll_core::partitioner::partition_of(k, 3), *p);
                let k: u64 = eggroll_core::codec::decode(k, &|| "key".into()).unwrap();
                let v: String = eggroll_core::codec::decode(v, &|| "value".into()).unwrap();
                seen.push((k, v));
            }
        }
        assert!(sent.len() > 3 * 10, "{} batches", sent.len());
        seen.sort();
        assert_eq!(seen, data);
    }

    #[test]
    fn nothing_written_sends_nothing() {
        let sent: Sent = Default::default();
        let writer = PairWriter::with_sink(Box::new(Recorder(sent.clone())), 4, 1000);
        assert_eq!(writer.finish().unwrap(), 0);
        assert!(sent.lock().is_empty());
    }
}
