//! `remote_table` on a cluster: an egg reads one of its partitions and pushes it straight to
//! the party's roll-site, so table data never passes through the client.

use crate::catalog::Stores;
use crate::error::EggError;
use crate::service::bulk_channel;
use crate::store::KeyRange;
use eggroll_core::transfer::{
    chunk_packet, Chunk, RetryPolicy, TableBatches, TransferKey, MAX_PARTITIONS, TABLE,
};
use eggroll_proto::meta::{PushToRollsite, StoreLocator};
use eggroll_proto::transfer::RollSiteHeader;
use prost::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A roll-site's channel and the message limit of the push using it.
#[derive(Clone)]
struct Client {
    channel: Channel,
    max_message: usize,
}

/// Channels to roll-sites, one multiplexed connection per address.
#[derive(Clone, Default)]
pub struct RollsiteClients {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl RollsiteClients {
    /// A client for the roll-site `push` names, with that push's message limits.
    fn get(&self, push: &PushToRollsite) -> Result<Client, Status> {
        let addr = &push.rollsite;
        let channel = {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            match channels.get(addr) {
                Some(c) => c.clone(),
                None => {
                    let timeout = Duration::from_millis(push.connect_timeout_ms.max(100));
                    // As between roll-sites: 16 MiB per stream.
                    let c = bulk_channel(addr, "roll-site", timeout, 16 << 20)?;
                    channels.insert(addr.clone(), c.clone());
                    c
                }
            }
        };
        Ok(Client {
            channel,
            max_message: push.max_message_bytes as usize,
        })
    }
}

/// Calls `call` until it succeeds, fails with anything but UNAVAILABLE, or `policy`'s retries
/// are spent, waiting between tries as `policy` says and telling `on_retry(attempt, wait,
/// status)` first; a failure comes with how many retries were made.
pub async fn retry_unavailable<T, F, Fut>(
    policy: &RetryPolicy,
    mut call: F,
    on_retry: impl Fn(u32, Duration, &Status),
) -> Result<T, (Status, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut attempt = 0;
    loop {
        let status = match call().await {
            Ok(t) => return Ok(t),
            Err(s) => s,
        };
        let wait = match status.code() {
            Code::Unavailable => policy.wait(attempt),
            _ => None,
        };
        let Some(wait) = wait else {
            return Err((status, attempt));
        };
        attempt += 1;
        on_retry(attempt, wait, &status);
        tokio::time::sleep(wait).await;
    }
}

/// " after N retries" when there were any, for error messages.
pub fn after_retries(attempts: u32) -> String {
    match attempts {
        0 => String::new(),
        n => format!(" after {n} retries"),
    }
}

/// One destination of a push: its transfer key and header.
type Destination = (TransferKey, RollSiteHeader);

/// Checks a push request against the partitioned store it reads.
fn destinations(push: &PushToRollsite, input: &StoreLocator) -> Result<Vec<Destination>, Status> {
    let bad = |m: String| Status::invalid_argument(format!("PushToRollsite: {m}"));
    if push.rollsite.is_empty() {
        return Err(bad("rollsite (the roll-site's host:port) is empty".into()));
    }
    if push.headers.is_empty() {
        return Err(bad("no headers: name at least one destination party".into()));
    }
    if push.batch_body_bytes == 0
        || push.batch_body_bytes + (64 << 10) > push.max_message_bytes
        || push.max_message_bytes > u32::MAX as u64
    {
        return Err(bad(format!(
            "batch_body_bytes {} must be above 0 and at least 64 KiB below max_message_bytes {} \
             (at most 4 GiB)",
            push.batch_body_bytes, push.max_message_bytes
        )));
    }
    push.headers
        .iter()
        .map(|raw| {
            let h = RollSiteHeader::decode(&raw[..])
                .map_err(|e| bad(format!("a header is not a serialized RollSiteHeader: {e}")))?;
            let key = TransferKey::from_header(&h).map_err(|e| bad(e.to_string()))?;
            if h.data_type != TABLE {
                return Err(bad(format!("dataType is {:?}, not {TABLE:?}", h.data_type)));
            }
            if h.total_partitions as i64 != input.total_partitions as i64
                || !(1..=MAX_PARTITIONS).contains(&h.total_partitions)
            {
                return Err(bad(format!(
                    "totalPartitions is {}, but the table has {} partitions",
                    h.total_partitions, input.total_partitions
                )));
            }
            Ok((key, h))
        })
        .collect()
}

/// Pushes partition `p` of `input` to the roll-site `push` names, for every destination;
/// returns the bytes of table data pushed (one copy). `who` names this egg in errors.
pub async fn push_partition(
    stores: Arc<Stores>,
    clients: &RollsiteClients,
    input: StoreLocator,
    p: u32,
    push: PushToRollsite,
    who: &str,
) -> Result<u64, Status> {
    let started = Instant::now();
    let dests = Arc::new(destinations(&push, &input)?);
    let client = clients.get(&push)?;
    let per = push.batches_per_stream.max(1) as usize;
    let retry = RetryPolicy {
        max_retry: push.max_retry,
        long_retry: push.long_retry,
        retry_wait: Duration::from_millis(push.retry_wait_ms),
        long_retry_wait: Duration::from_millis(push.long_retry_wait_ms),
    };
    let (body, max) = (
        push.batch_body_bytes as usize,
        push.max_message_bytes as usize,
    );
    // Two batches ahead: the scan keeps going while a group is pushed, memory bounded.
    let (tx, mut rx) = mpsc::channel::<Chunk>(2);
    let table = format!("{}/{}", input.namespace, input.name);
    let reader = tokio::task::spawn_blocking(move || -> Result<(), EggError> {
        let store = stores.partition(&input, p)?;
        let mut batches = TableBatches::new(p, body, max);
        let mut failed = None;
        store.scan(KeyRange::all(), &mut |k, v| match batches.push(k, v) {
            // A closed channel: the pushing side failed and reports why.
            Ok(Some(full)) => Ok(tx.blocking_send(full).is_ok()),
            Ok(None) => Ok(true),
            Err(e) => {
                failed = Some(e);
                Ok(false)
            }
        })?;
        if let Some(e) = failed {
            return Err(EggError::Core(e));
        }
        let _ = tx.blocking_send(batches.finish());
        Ok(())
    });
    let mut group: Vec<Chunk> = Vec::with_capacity(per);
    let mut bytes = 0u64;
    // One group in flight while the next one is read.
    let mut pending: Option<tokio::task::JoinHandle<Result<(), Status>>> = None;
    let pushed: Result<(), Status> = async {
        while let Some(c) = rx.recv().await {
            bytes += c.body.len() as u64;
            let finish = c.finish;
            group.push(c);
            if group.len() >= per || finish {
                let g = Arc::new(std::mem::replace(&mut group, Vec::with_capacity(per)));
                if let Some(prev) = pending.take() {
                    prev.await.map_err(|e| Status::internal(e.to_string()))??;
                }
                let (client, dests, retry) = (client.clone(), dests.clone(), retry.clone());
                let addr = push.rollsite.clone();
                pending = Some(tokio::spawn(async move {
                    push_group(client, &addr, &dests, g, per as u64, &retry).await
                }));
            }
        }
        if let Some(prev) = pending.take() {
            prev.await.map_err(|e| Status::internal(e.to_string()))??;
        }
        Ok(())
    }
    .await;
    drop(rx);
    let read = reader
        .await
        .map_err(|e| Status::internal(format!("{who}: the scan thread failed: {e}")))?;
    read.map_err(|e| crate::service::to_status(&e, who))?;
    pushed?;
    tracing::info!(table = %table, partition = p, rollsite = %push.rollsite,
        key = %dests.first().map(|d| d.0.rs_key()).unwrap_or_default(),
        parties = dests.len(), bytes, ms = started.elapsed().as_millis() as u64,
        "partition pushed to the roll-site");
    Ok(bytes)
}

/// Pushes one group of batches to every destination, each as one stream, retrying a stream
/// that fails with UNAVAILABLE (the roll-site stores batches by sequence: a resent stream is
/// stored once).
async fn push_group(
    client: Client,
    addr: &str,
    dests: &[Destination],
    group: Arc<Vec<Chunk>>,
    per: u64,
    retry: &RetryPolicy,
) -> Result<(), Status> {
    for (key, base) in dests {
        let send = || {
            let (k, b, g) = (key.clone(), base.clone(), group.clone());
            let packets =
                tokio_stream::iter(0..g.len()).map(move |i| chunk_packet(&k, &b, &g[i], per));
            let c = client.clone();
            async move {
                eggroll_proto::push::push(c.channel, packets, Default::default(), c.max_message)
                    .await
            }
        };
        let log = |attempt, _, s: &Status| {
            tracing::warn!(rollsite = addr, key = %key.rs_key(), attempt,
                error = %s.message(), "push to the roll-site unavailable; retrying");
        };
        retry_unavailable(retry, send, log)
            .await
            .map_err(|(s, attempts)| {
                Status::new(
                    s.code(),
                    format!(
                        "pushing {} to the roll-site at {addr} failed{}: {}; check that \
                         `eggroll rollsite` runs there and that this node can reach it",
                        key.rs_key(),
                        after_retries(attempts),
                        s.message()
                    ),
                )
            })?;
    }
    Ok(())
}
