//! The one table pusher: a partition's raw pairs, read on a blocking thread, cut into
//! batches, and pushed to a roll-site in groups of `batches_per_stream` per stream, each
//! stream retried on UNAVAILABLE (the roll-site stores batches by sequence, so a stream sent
//! twice is stored once).
//!
//! The eggs' push task uses it in distributed mode (each egg pushes its own partitions) and
//! the federation client in standalone mode (its in-process executor's partitions).

use crate::channel::bulk_channel;
use eggroll_core::sync::Mutex;
use eggroll_core::transfer::{
    after_retries, check_batch_size, chunk_packet, describe, Chunk, RetryPolicy, TableBatches,
    TransferKey, MAX_PARTITIONS, TABLE,
};
use eggroll_core::CoreError;
use eggroll_proto::meta::PushToRollsite;
use eggroll_proto::proxy::Packet;
use eggroll_proto::transfer::RollSiteHeader;
use prost::Message;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::Status;

/// A stream of packets to push.
pub type Packets = Pin<Box<dyn Stream<Item = Packet> + Send>>;

/// What a push answers: done once the roll-site stored the stream.
pub type Pushed = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

/// Where a pusher's streams go: a roll-site over gRPC, or one in this process.
pub trait PushTarget: Send + Sync {
    /// Pushes one stream of packets.
    fn push(&self, packets: Packets) -> Pushed;
}

/// A roll-site reached over gRPC, with the message limit of the pushes to it.
#[derive(Clone)]
pub struct GrpcTarget {
    /// The channel to the roll-site.
    pub channel: Channel,
    /// Largest message sent.
    pub max_message: usize,
}

impl PushTarget for GrpcTarget {
    fn push(&self, packets: Packets) -> Pushed {
        let (channel, max) = (self.channel.clone(), self.max_message);
        Box::pin(async move {
            eggroll_proto::push::push(channel, packets, Default::default(), max)
                .await
                .map(|_| ())
        })
    }
}

/// Channels to roll-sites, one multiplexed connection per address.
#[derive(Clone, Default)]
pub struct RollsiteClients {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl RollsiteClients {
    /// The target `push` names, with that push's message limit.
    pub fn get(&self, push: &PushToRollsite) -> Result<GrpcTarget, Status> {
        let addr = &push.rollsite;
        let mut channels = self.channels.lock();
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let timeout = Duration::from_millis(push.connect_timeout_ms.max(100));
                // As between roll-sites: 16 MiB per stream.
                let c = bulk_channel(addr, "roll-site", timeout, 16 << 20)?;
                channels.insert(addr.clone(), c.clone());
                c
            }
        };
        Ok(GrpcTarget {
            channel,
            max_message: push.max_message_bytes as usize,
        })
    }
}

/// How a table is pushed: to which transfers, in which batches, with which retries.
#[derive(Clone, Debug)]
pub struct TablePush {
    /// One transfer per destination party: its key and header (data type and partitions).
    pub destinations: Vec<(TransferKey, RollSiteHeader)>,
    /// Bytes of pairs per batch.
    pub batch_body_bytes: usize,
    /// Largest message.
    pub max_message_bytes: usize,
    /// Batches per push stream.
    pub batches_per_stream: usize,
    /// Retries of a stream that failed with UNAVAILABLE.
    pub retry: RetryPolicy,
}

impl TablePush {
    /// The push an egg's `PushToRollsite` task asks for, checked against the table it reads
    /// (`partitions` partitions).
    pub fn from_request(push: &PushToRollsite, partitions: u32) -> Result<Self, Status> {
        let bad = |m: String| Status::invalid_argument(format!("PushToRollsite: {m}"));
        if push.rollsite.is_empty() {
            return Err(bad("rollsite (the roll-site's host:port) is empty".into()));
        }
        if push.headers.is_empty() {
            return Err(bad("no headers: name at least one destination party".into()));
        }
        check_batch_size(push.batch_body_bytes, push.max_message_bytes).map_err(bad)?;
        let destinations = push
            .headers
            .iter()
            .map(|raw| {
                let h = RollSiteHeader::decode(&raw[..]).map_err(|e| {
                    bad(format!("a header is not a serialized RollSiteHeader: {e}"))
                })?;
                let key = TransferKey::from_header(&h).map_err(|e| bad(e.to_string()))?;
                if h.data_type != TABLE {
                    return Err(bad(format!("dataType is {:?}, not {TABLE:?}", h.data_type)));
                }
                if h.total_partitions as i64 != partitions as i64
                    || !(1..=MAX_PARTITIONS).contains(&h.total_partitions)
                {
                    return Err(bad(format!(
                        "totalPartitions is {}, but the table has {partitions} partitions",
                        h.total_partitions
                    )));
                }
                Ok((key, h))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            destinations,
            batch_body_bytes: push.batch_body_bytes as usize,
            max_message_bytes: push.max_message_bytes as usize,
            batches_per_stream: push.batches_per_stream.max(1) as usize,
            retry: RetryPolicy {
                max_retry: push.max_retry,
                long_retry: push.long_retry,
                retry_wait: Duration::from_millis(push.retry_wait_ms),
                long_retry_wait: Duration::from_millis(push.long_retry_wait_ms),
            },
        })
    }
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError<E: std::error::Error + 'static> {
    /// Reading the partition failed.
    #[error(transparent)]
    Read(E),
    /// A pair does not fit in a message.
    #[error(transparent)]
    Batch(CoreError),
    /// The roll-site did not take a stream (after the retries the policy allows).
    #[error("pushing {} failed{}: {}", key.rs_key(), after_retries(*attempts), describe(status))]
    Push {
        /// The transfer.
        key: Box<TransferKey>,
        /// Retries made.
        attempts: u32,
        /// The last answer.
        status: Box<Status>,
    },
    /// A worker task failed.
    #[error("internal: {0}")]
    Internal(String),
}

/// Reads a partition: calls its visitor on every encoded pair in key order, and stops when
/// the visitor answers false.
pub trait ReadPartition<E>: FnOnce(&mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), E> {}

impl<E, F: FnOnce(&mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), E>> ReadPartition<E> for F {}

/// Pushes partition `p`, read by `read` on a blocking thread, to every destination of `push`;
/// returns the bytes of table data pushed (one copy). Every stream takes a permit of
/// `streams` while it is sent, so callers bound the streams in flight across partitions.
pub async fn push_partition<E, R>(
    read: R,
    p: u32,
    push: Arc<TablePush>,
    target: Arc<dyn PushTarget>,
    streams: Arc<Semaphore>,
) -> Result<u64, PushError<E>>
where
    E: std::error::Error + Send + 'static,
    R: ReadPartition<E> + Send + 'static,
{
    let per = push.batches_per_stream.max(1);
    // Two batches ahead: the scan keeps going while a group is pushed, memory bounded.
    let (tx, mut rx) = mpsc::channel::<Chunk>(2);
    let (body, max) = (push.batch_body_bytes, push.max_message_bytes);
    let reader = tokio::task::spawn_blocking(move || -> Result<(), PushError<E>> {
        let mut batches = TableBatches::new(p, body, max);
        let mut failed = None;
        read(&mut |k, v| match batches.push(k, v) {
            // A closed channel: the pushing side failed and reports why.
            Ok(Some(full)) => tx.blocking_send(full).is_ok(),
            Ok(None) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })
        .map_err(PushError::Read)?;
        if let Some(e) = failed {
            return Err(PushError::Batch(e));
        }
        let _ = tx.blocking_send(batches.finish());
        Ok(())
    });
    let mut pushes: JoinSet<Result<(), PushError<E>>> = JoinSet::new();
    let mut group: Vec<Chunk> = Vec::with_capacity(per);
    let (mut bytes, mut finished) = (0u64, false);
    let pushed: Result<(), PushError<E>> = async {
        while let Some(c) = rx.recv().await {
            bytes += c.body.len() as u64;
            finished = c.finish;
            group.push(c);
            if group.len() < per && !finished {
                continue;
            }
            let g = Arc::new(std::mem::replace(&mut group, Vec::with_capacity(per)));
            for (key, base) in &push.destinations {
                let permit =
                    streams.clone().acquire_owned().await.map_err(|_| {
                        PushError::Internal("the push stream limit was closed".into())
                    })?;
                let (target, key, base, g) = (target.clone(), key.clone(), base.clone(), g.clone());
                let retry = push.retry.clone();
                pushes.spawn(async move {
                    let r = push_group(target.as_ref(), &key, &base, g, per, &retry).await;
                    drop(permit);
                    r
                });
            }
            // Reap finished pushes so that an early failure stops the reading.
            while let Some(r) = pushes.try_join_next() {
                joined(r)?;
            }
        }
        while let Some(r) = pushes.join_next().await {
            joined(r)?;
        }
        Ok(())
    }
    .await;
    drop(rx);
    let read = reader
        .await
        .map_err(|e| PushError::Internal(format!("the scan thread failed: {e}")))?;
    read?;
    pushed?;
    if !finished {
        return Err(PushError::Internal(format!(
            "partition {p}'s batches ended without a finish mark"
        )));
    }
    Ok(bytes)
}

fn joined<E: std::error::Error + 'static>(
    r: Result<Result<(), PushError<E>>, tokio::task::JoinError>,
) -> Result<(), PushError<E>> {
    r.map_err(|e| PushError::Internal(format!("a push task failed: {e}")))?
}

/// Pushes one group of batches of the transfer `key` (header `base`) as one stream,
/// retrying it on UNAVAILABLE as `retry` says. Tables and objects go out this way.
pub async fn push_group<E: std::error::Error + 'static>(
    target: &dyn PushTarget,
    key: &TransferKey,
    base: &RollSiteHeader,
    group: Arc<Vec<Chunk>>,
    batches_per_stream: usize,
    retry: &RetryPolicy,
) -> Result<(), PushError<E>> {
    let per = batches_per_stream.max(1) as u64;
    let send = || {
        let (k, b, g) = (key.clone(), base.clone(), group.clone());
        target.push(Box::pin(
            tokio_stream::iter(0..g.len()).map(move |i| chunk_packet(&k, &b, &g[i], per)),
        ))
    };
    let log = |attempt, wait: Duration, s: &Status| {
        tracing::warn!(key = %key.rs_key(), attempt, wait_ms = wait.as_millis() as u64,
            error = %describe(s), "push stream unavailable; retrying");
    };
    retry
        .run(send, log)
        .await
        .map_err(|(status, attempts)| PushError::Push {
            key: Box::new(key.clone()),
            attempts,
            status: Box::new(status),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Counts what arrives, and fails the first `fail` streams with UNAVAILABLE.
    #[derive(Default)]
    struct Counting {
        packets: Mutex<Vec<(i32, i64, bool)>>,
        fail: AtomicU32,
    }

    impl PushTarget for Arc<Counting> {
        fn push(&self, packets: Packets) -> Pushed {
            let me = self.clone();
            Box::pin(async move {
                let all: Vec<Packet> = packets.collect().await;
                if me
                    .fail
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return Err(Status::unavailable("try again"));
                }
                let mut got = me.packets.lock();
                for p in all {
                    let h = RollSiteHeader::decode(&p.header.unwrap().ext[..]).unwrap();
                    got.push((h.partition_id, h.batch_seq, h.stage == "finish"));
                }
                Ok(())
            })
        }
    }

    fn plan(parties: usize) -> TablePush {
        let destinations = (0..parties)
            .map(|i| {
                let key = TransferKey {
                    session: "s".into(),
                    name: "t".into(),
                    tag: "0".into(),
                    src_role: "guest".into(),
                    src_party: "1".into(),
                    dst_role: "host".into(),
                    dst_party: format!("{}", 2 + i),
                };
                let mut h = key.header(TABLE);
                h.total_partitions = 4;
                (key, h)
            })
            .collect();
        TablePush {
            destinations,
            batch_body_bytes: 100,
            max_message_bytes: 1 << 20,
            batches_per_stream: 3,
            retry: RetryPolicy {
                max_retry: 2,
                long_retry: 0,
                retry_wait: Duration::from_millis(1),
                long_retry_wait: Duration::from_millis(1),
            },
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("scan failed")]
    struct ScanFailed;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partition_goes_out_in_order_to_every_party_retried_once_stored() {
        let target = Arc::new(Counting::default());
        target.fail.store(1, Ordering::SeqCst);
        let read = |visit: &mut dyn FnMut(&[u8], &[u8]) -> bool| -> Result<(), ScanFailed> {
            for i in 0..100u32 {
                if !visit(&i.to_be_bytes(), &[7; 20]) {
                    break;
                }
            }
            Ok(())
        };
        let bytes = push_partition(
            read,
            2,
            Arc::new(plan(2)),
            Arc::new(target.clone()),
            Arc::new(Semaphore::new(2)),
        )
        .await
        .unwrap();
        // 32 bytes a pair, 100 a batch: three pairs per batch, 34 batches.
        assert_eq!(bytes, 100 * 32);
        let got = target.packets.lock().clone();
        assert_eq!(got.len(), 2 * 34);
        assert!(got.iter().all(|(p, _, _)| *p == 2));
        assert_eq!(got.iter().filter(|(_, _, f)| *f).count(), 2);
        let mut seqs: Vec<i64> = got.iter().map(|(_, s, _)| *s).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs, (0..34).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_scan_or_a_refusing_roll_site_fails_the_push() {
        let target = Arc::new(Counting::default());
        let failing =
            |_: &mut dyn FnMut(&[u8], &[u8]) -> bool| -> Result<(), ScanFailed> { Err(ScanFailed) };
        let streams = Arc::new(Semaphore::new(1));
        let e = push_partition(
            failing,
            0,
            Arc::new(plan(1)),
            Arc::new(target.clone()),
            streams,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, PushError::Read(ScanFailed)), "{e}");
        target.fail.store(10, Ordering::SeqCst);
        let empty = |_: &mut dyn FnMut(&[u8], &[u8]) -> bool| -> Result<(), ScanFailed> { Ok(()) };
        let streams = Arc::new(Semaphore::new(1));
        let e = push_partition(
            empty,
            0,
            Arc::new(plan(1)),
            Arc::new(target.clone()),
            streams,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("after 2 retries") && e.contains("try again"),
            "{e}"
        );
    }
}
