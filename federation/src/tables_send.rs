//! Tables to other parties: `remote_table`, partition by partition, straight from where the
//! partitions are. In standalone mode this process reads them (the eggs' own table pusher,
//! run here); on a cluster every egg pushes its own partitions.

use crate::client::{join_one, Federation};
use crate::error::{Error, Result};
use crate::party::Party;
use eggroll_core::transfer::{FATE_TYPES_OPTION, TABLE};
use eggroll_eggpair::push::{push_partition, TablePush};
use eggroll_proto::meta::PushToRollsite;
use eggroll_rollpair::{ByteTable, FateTypes, RollPair};
use prost::Message;
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

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
        self.remote_pairs(table, None, name, tag, parties).await
    }

    /// Sends a byte table (FATE's) to `parties` as [`Self::remote_table`] does; its FATE codes
    /// travel with it, so the receiver makes a byte table of the same codes and partitioner.
    pub async fn remote_byte_table(
        &self,
        table: &ByteTable,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<u64> {
        self.remote_pairs(table.raw(), Some(table.types()), name, tag, parties)
            .await
    }

    /// `remote_table` of the encoded pairs of `table`, whatever their types.
    async fn remote_pairs<K, V>(
        &self,
        table: &RollPair<K, V>,
        fate: Option<FateTypes>,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<u64>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        let started = Instant::now();
        let request = self.push_request(name, tag, parties, table.partitions(), fate);
        let result = if table.context().is_distributed() {
            self.push_from_eggs(table, request).await
        } else {
            self.push_from_client(table, &request, parties.len()).await
        };
        self.log_remote(name, tag, parties, started, &result);
        result
    }

    /// What every pusher of the table is asked to do, the eggs and this process alike: one
    /// transfer header per party (with the partition count), batch sizes and retries.
    fn push_request(
        &self,
        name: &str,
        tag: &str,
        parties: &[Party],
        partitions: u32,
        fate: Option<FateTypes>,
    ) -> PushToRollsite {
        let opts = &self.inner.opts;
        let headers = parties
            .iter()
            .map(|party| {
                let mut h = self.key(name, tag, &self.inner.me, party).header(TABLE);
                h.total_partitions = partitions as i32;
                if let Some(t) = fate {
                    h.options.insert(FATE_TYPES_OPTION.into(), t.to_header());
                }
                h.encode_to_vec()
            })
            .collect();
        PushToRollsite {
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
        }
    }

    /// `remote_table` in standalone mode: this process reads the partitions itself and
    /// pushes them as an egg would.
    async fn push_from_client<K, V>(
        &self,
        table: &RollPair<K, V>,
        request: &PushToRollsite,
        parties: usize,
    ) -> Result<u64>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        let n = table.partitions();
        let push = TablePush::from_request(request, n)
            .map_err(|s| Error::Config(s.message().to_string()))?;
        let push = Arc::new(push);
        let opts = &self.inner.opts;
        // Push streams in flight in all, as when partitions went one after another.
        let streams = Arc::new(Semaphore::new(
            opts.streams_in_flight.max(1) * parties.max(1),
        ));
        let target = Arc::new(self.inner.link.clone());
        let producers = opts.streams_in_flight.max(1);
        let mut jobs: JoinSet<Result<u64>> = JoinSet::new();
        let mut bytes = 0u64;
        for p in 0..n {
            while jobs.len() >= producers {
                bytes += join_one(&mut jobs).await?;
            }
            let (me, t, push, target, streams) = (
                self.clone(),
                table.clone(),
                push.clone(),
                target.clone(),
                streams.clone(),
            );
            let read = move |visit: &mut dyn FnMut(&[u8], &[u8]) -> bool| {
                t.scan_encoded(p, &mut |k, v| Ok(visit(k, v)))
                    .map_err(Error::from)
            };
            jobs.spawn(async move {
                push_partition(read, p, push, target, streams)
                    .await
                    .map_err(|e| me.push_error(e))
            });
        }
        while !jobs.is_empty() {
            bytes += join_one(&mut jobs).await?;
        }
        Ok(bytes)
    }

    /// `remote_table` on a cluster: every egg pushes its own partitions to the roll-site,
    /// all partitions at once.
    async fn push_from_eggs<K, V>(
        &self,
        table: &RollPair<K, V>,
        request: PushToRollsite,
    ) -> Result<u64>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        // The cluster client blocks on its own runtime: not on this async worker.
        let t = table.clone();
        let pushed = tokio::task::spawn_blocking(move || t.push_to_rollsite(request)).await??;
        Ok(pushed.unwrap_or(0))
    }
}
