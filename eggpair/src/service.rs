//! The egg's gRPC service: tasks, streamed puts and gets, and one-key reads and deletes for
//! the partitions this processor serves. Storage work runs on blocking threads, never on a
//! tokio worker.

use crate::error::EggError;
use crate::executor::{Executor, LocalSink, ShuffleSink};
use crate::metrics::{op_name, EggMetrics};
use crate::push::{push_partition, PushError, RollsiteClients, TablePush};
use crate::store::{BulkLoad, KeyRange, Pair, PartitionStore};
use eggroll_core::functions::{lookup, ErasedFn};
use eggroll_core::sync::Mutex;
use eggroll_core::transfer::after_retries;
use eggroll_proto::meta::egg_service_client::EggServiceClient;
use eggroll_proto::meta::egg_service_server::EggService;
use eggroll_proto::meta::PushToRollsite;
use eggroll_proto::meta::{
    job::Op, Ack, EggUsage, PairBatch, PointRequest, PointResponse, PutRequest, PutResponse,
    ScanRequest, Store, StoreLocator, Task, TaskResult, TaskResults, Tasks,
};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// Largest gRPC message between eggs and clients of one cluster: batches are a few MiB, but
/// one pair may be large.
pub const MAX_MESSAGE_BYTES: usize = 512 << 20;

pub use crate::channel::bulk_channel;

/// Clients of other eggs, one multiplexed HTTP/2 connection each.
#[derive(Clone, Default)]
pub struct EggClients {
    clients: Arc<Mutex<HashMap<String, EggServiceClient<Channel>>>>,
}

impl EggClients {
    /// A client for the egg at `endpoint` ("host:port"), connecting on first use.
    pub fn get(&self, endpoint: &str) -> Result<EggServiceClient<Channel>, Status> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(endpoint) {
            return Ok(c.clone());
        }
        let channel = bulk_channel(endpoint, "egg", std::time::Duration::from_secs(5), 8 << 20)?;
        let client = EggServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        clients.insert(endpoint.to_string(), client.clone());
        Ok(client)
    }
}

/// Serves one processor's partitions.
#[derive(Clone)]
pub struct EggServer {
    executor: Arc<Executor>,
    processor_id: u64,
    endpoint: String,
    clients: EggClients,
    rollsites: RollsiteClients,
    metrics: Arc<EggMetrics>,
}

impl EggServer {
    /// A server for processor `processor_id`, reachable at `endpoint`.
    pub fn new(
        executor: Arc<Executor>,
        processor_id: u64,
        endpoint: String,
        metrics: Arc<EggMetrics>,
    ) -> Self {
        Self {
            executor,
            processor_id,
            endpoint,
            metrics,
            clients: EggClients::default(),
            rollsites: RollsiteClients::default(),
        }
    }

    /// Errors unless partition `p` of `store` is served by this processor.
    fn check_owned(
        &self,
        store: Option<&Store>,
        p: u32,
        what: &str,
    ) -> Result<StoreLocator, Status> {
        let store = store.ok_or_else(|| {
            Status::invalid_argument(format!("the request names no {what} store"))
        })?;
        let l = store
            .locator
            .clone()
            .ok_or_else(|| Status::invalid_argument(format!("the {what} store has no locator")))?;
        let part = store.partitions.get(p as usize).ok_or_else(|| {
            Status::invalid_argument(format!(
                "the {what} store {}/{} carries no placement for partition {p} ({} partitions listed)",
                l.namespace,
                l.name,
                store.partitions.len()
            ))
        })?;
        if part.processor_id != self.processor_id {
            return Err(Status::failed_precondition(format!(
                "partition {p} of {}/{} is served by processor {}, not by processor {} at {}; \
                 send the request to the processor that owns the partition",
                l.namespace, l.name, part.processor_id, self.processor_id, self.endpoint
            )));
        }
        Ok(l)
    }

    /// Makes a bulk load's pairs part of its partition, off the async workers.
    async fn finish_load(&self, load: Option<Box<dyn BulkLoad>>) -> Result<(), Status> {
        let Some(load) = load else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || load.finish())
            .await
            .map_err(|e| Status::internal(format!("write thread failed: {e}")))?
            .map_err(|e| self.status(e))
    }

    fn status(&self, e: EggError) -> Status {
        to_status(
            &e,
            &format!("processor {} at {}", self.processor_id, self.endpoint),
        )
    }

    /// Pushes partition `p` of `input` to the roll-site `push` names, for every destination
    /// (`remote_table` on a cluster: table data never passes through the client); returns
    /// the bytes of table data pushed (one copy). `who` names this egg in errors.
    async fn push_task(
        &self,
        input: StoreLocator,
        p: u32,
        push: &PushToRollsite,
        who: &str,
    ) -> Result<u64, Status> {
        let started = std::time::Instant::now();
        let plan = Arc::new(TablePush::from_request(push, input.total_partitions)?);
        let target = Arc::new(self.rollsites.get(push)?);
        let table = format!("{}/{}", input.namespace, input.name);
        let stores = self.executor.stores().clone();
        let read = move |visit: &mut dyn FnMut(&[u8], &[u8]) -> bool| -> crate::Result<()> {
            let store = stores.partition(&input, p)?;
            store.scan(KeyRange::all(), &mut |k, v| Ok(visit(k, v)))
        };
        // One group in flight per destination while the next one is read.
        let streams = Arc::new(Semaphore::new(plan.destinations.len()));
        let bytes = push_partition(read, p, plan.clone(), target, streams)
            .await
            .map_err(|e| match e {
                PushError::Read(e) => to_status(&e, who),
                PushError::Batch(e) => to_status(&EggError::Core(e), who),
                PushError::Push {
                    key,
                    attempts,
                    status,
                } => Status::new(
                    status.code(),
                    format!(
                        "pushing {} to the roll-site at {} failed{}: {}; check that `eggroll \
                         rollsite` runs there and that this node can reach it",
                        key.rs_key(),
                        push.rollsite,
                        after_retries(attempts),
                        status.message()
                    ),
                ),
                PushError::Internal(m) => Status::internal(format!("{who}: {m}")),
            })?;
        tracing::info!(table = %table, partition = p, rollsite = %push.rollsite,
            key = %plan.destinations.first().map(|d| d.0.rs_key()).unwrap_or_default(),
            parties = plan.destinations.len(), bytes, ms = started.elapsed().as_millis() as u64,
            "partition pushed to the roll-site");
        Ok(bytes)
    }
}

/// Maps an egg error to a gRPC status whose message names `who` failed and why.
pub fn to_status(e: &EggError, who: &str) -> Status {
    use eggroll_core::CoreError;
    let root = match e {
        EggError::Task { source, .. } => source.as_ref(),
        other => other,
    };
    let msg = format!("{who}: {e}");
    match root {
        EggError::NoSuchTable { .. } => Status::not_found(msg),
        EggError::TableExists { .. } => Status::already_exists(msg),
        EggError::InvalidTask(_) => Status::invalid_argument(msg),
        EggError::Core(CoreError::UnknownFunction { .. }) => Status::not_found(msg),
        EggError::Core(
            CoreError::WrongFunctionKind { .. }
            | CoreError::InvalidArgument(_)
            | CoreError::BadPacket(_)
            | CoreError::Decode { .. }
            | CoreError::Encode { .. },
        ) => Status::invalid_argument(msg),
        EggError::Core(CoreError::TooLarge(_)) => Status::resource_exhausted(msg),
        // The user's code, not the egg, failed: retrying would fail the same way.
        EggError::Core(CoreError::UserFunction(_)) => Status::aborted(msg),
        EggError::Core(CoreError::Unavailable(_)) => Status::unavailable(msg),
        EggError::Corrupt { .. } => Status::data_loss(msg),
        EggError::Locked { .. } => Status::unavailable(msg),
        _ => Status::internal(msg),
    }
}

/// Where a shuffle's output goes on a cluster: into this egg's stores for the partitions it
/// serves, to the owning egg over gRPC for the others.
pub struct RemoteSink {
    local: LocalSink,
    output: Store,
    processor_id: u64,
    clients: EggClients,
    runtime: tokio::runtime::Handle,
    /// The job's combiner, sent by name to eggs that receive combined pairs.
    combiner: Option<eggroll_proto::meta::Functor>,
}

impl ShuffleSink for RemoteSink {
    fn send(
        &self,
        output: &StoreLocator,
        dst: u32,
        pairs: Vec<Pair>,
        combiner: Option<&ErasedFn>,
    ) -> crate::Result<()> {
        let part = self.output.partitions.get(dst as usize).ok_or_else(|| {
            EggError::InvalidTask(format!(
                "the output store carries no placement for partition {dst}"
            ))
        })?;
        if part.processor_id == self.processor_id {
            return self.local.send(output, dst, pairs, combiner);
        }
        // The combiner goes along by name: the receiving egg applies it under its own lock.
        let combiner = match combiner {
            Some(_) => self.combiner.clone(),
            None => None,
        };
        let mut packed = Vec::new();
        for (k, v) in &pairs {
            eggroll_core::pairs::push(&mut packed, k, v);
        }
        let req = PutRequest {
            store: Some(self.output.clone()),
            partition: dst,
            batch: Some(PairBatch {
                packed,
                ..Default::default()
            }),
            combiner,
        };
        let mut client = self
            .clients
            .get(&part.endpoint)
            .map_err(|s| EggError::InvalidTask(s.message().to_string()))?;
        let endpoint = part.endpoint.clone();
        let processor = part.processor_id;
        self.runtime
            .block_on(async move { client.put_batches(tokio_stream::iter([req])).await })
            .map_err(|s| {
                EggError::InvalidTask(format!(
                    "shuffle to partition {dst} on processor {processor} at {endpoint} failed: {}",
                    s.message()
                ))
            })?;
        Ok(())
    }
}

impl EggServer {
    async fn run_task_inner(&self, request: Request<Task>) -> Result<Response<TaskResult>, Status> {
        let task = request.into_inner();
        let job = task
            .job
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("the task carries no job"))?;
        let p = task.partition;
        let input = self.check_owned(job.inputs.first(), p, "input")?;
        let mut output = None;
        let mut combiner = None;
        match &job.op {
            Some(Op::Merge(_)) => {
                self.check_owned(job.inputs.get(1), p, "second input")?;
                self.check_owned(job.outputs.first(), p, "output")?;
            }
            Some(Op::MapReduce(mr)) => {
                let out = job
                    .outputs
                    .first()
                    .ok_or_else(|| Status::invalid_argument("the job names no output store"))?;
                let n = out.locator.as_ref().map_or(0, |l| l.total_partitions) as usize;
                if out.partitions.len() != n {
                    return Err(Status::invalid_argument(format!(
                        "the output store lists {} partition placements for {n} partitions",
                        out.partitions.len()
                    )));
                }
                output = Some(out.clone());
                combiner = mr.combiner.clone();
            }
            Some(Op::Push(push)) => {
                let who = format!("processor {} at {}", self.processor_id, self.endpoint);
                let span = tracing::info_span!("push_to_rollsite", session = %job.session_id,
                    job = %job.id, partition = p);
                let bytes =
                    tracing::Instrument::instrument(self.push_task(input, p, push, &who), span)
                        .await?;
                return Ok(Response::new(TaskResult {
                    partition: p,
                    count: bytes,
                    ..Default::default()
                }));
            }
            None => return Err(Status::invalid_argument("the job names no operation")),
            _ => {}
        }
        // A count or a small take in memory: answered here, without the two hand-offs to
        // and from the blocking pool (a FATE action on a small table is mostly those).
        if let Some(result) = self.executor.run_now(&task) {
            return Ok(Response::new(result));
        }
        let sink = RemoteSink {
            local: LocalSink::new(self.executor.stores().clone()),
            output: output.unwrap_or_default(),
            processor_id: self.processor_id,
            clients: self.clients.clone(),
            runtime: tokio::runtime::Handle::current(),
            combiner,
        };
        let executor = self.executor.clone();
        let result = tokio::task::spawn_blocking(move || executor.run(&task, &sink))
            .await
            .map_err(|e| Status::internal(format!("task thread failed: {e}")))?;
        result.map(Response::new).map_err(|e| self.status(e))
    }

    async fn put_batches_inner(
        &self,
        request: Request<Streaming<PutRequest>>,
    ) -> Result<Response<PutResponse>, Status> {
        let mut stream = request.into_inner();
        let mut written = 0u64;
        let mut target: Option<(StoreLocator, u32, Option<Arc<ErasedFn>>, Store)> = None;
        // A stream into an empty stored partition loads it in bulk (see `BulkLoad`): its pairs
        // become visible together when the stream ends, before the answer.
        let mut load: Option<Box<dyn BulkLoad>> = None;
        let mut first = false;
        // One message at a time: the next is not read until this one is stored, so HTTP/2
        // flow control holds the sender back.
        while let Some(msg) = stream.message().await? {
            let same = match (&target, &msg.store) {
                (Some((_, p, _, store)), Some(s)) => *p == msg.partition && store == s,
                (Some((_, p, _, _)), None) => *p == msg.partition,
                (None, _) => false,
            };
            if !same {
                self.finish_load(load.take()).await?;
                let l = self.check_owned(msg.store.as_ref(), msg.partition, "target")?;
                let combiner = match &msg.combiner {
                    Some(f) => Some(Arc::new(
                        lookup(&f.name, &f.kind, &f.params)
                            .map_err(|e| self.status(EggError::Core(e)))?,
                    )),
                    None => None,
                };
                target = Some((
                    l,
                    msg.partition,
                    combiner,
                    msg.store.clone().unwrap_or_default(),
                ));
                first = true;
            }
            // The target's store (with every placement) stays here; the write needs less.
            let Some((l, p, combiner)) = target
                .as_ref()
                .map(|(l, p, c, _)| (l.clone(), *p, c.clone()))
            else {
                continue;
            };
            let batch = msg.batch.unwrap_or_default();
            if batch.keys.len() != batch.values.len() {
                return Err(Status::invalid_argument(format!(
                    "a batch has {} keys but {} values",
                    batch.keys.len(),
                    batch.values.len()
                )));
            }
            let size = batch.packed.len() as u64
                + batch.keys.iter().map(|k| k.len() as u64).sum::<u64>()
                + batch.values.iter().map(|v| v.len() as u64).sum::<u64>();
            let stores = self.executor.stores().clone();
            let try_load = std::mem::take(&mut first) && combiner.is_none();
            let mut held = load.take();
            let res = tokio::task::spawn_blocking(
                move || -> crate::Result<(u64, Option<Box<dyn BulkLoad>>)> {
                    let store = stores.partition(&l, p)?;
                    if try_load {
                        held = store.clone().bulk_load()?;
                    }
                    let n = write_batch(&*store, held.as_deref_mut(), batch, combiner)?;
                    Ok((n, held))
                },
            )
            .await
            .map_err(|e| Status::internal(format!("write thread failed: {e}")))?;
            let (n, held) = res.map_err(|e| self.status(e))?;
            self.metrics.written_bytes.inc_by(size);
            written += n;
            load = held;
        }
        self.finish_load(load).await?;
        Ok(Response::new(PutResponse { written }))
    }

    async fn get_batches_inner(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<ReceiverStream<Result<PairBatch, Status>>>, Status> {
        let req = request.into_inner();
        let l = self.check_owned(req.store.as_ref(), req.partition, "source")?;
        let stores = self.executor.stores().clone();
        let p = req.partition;
        let limit = self.executor.stores().config().batch_bytes.max(1) as usize;
        let range = KeyRange {
            start: (!req.start_key.is_empty()).then_some(req.start_key),
            end: (!req.end_key.is_empty()).then_some(req.end_key),
        };
        // Two batches in flight: the scan runs ahead of the network by at most that much.
        let (tx, rx) = mpsc::channel(2);
        let who = format!("processor {} at {}", self.processor_id, self.endpoint);
        let read = self.metrics.read_bytes.clone();
        tokio::task::spawn_blocking(move || {
            let mut packed = Vec::with_capacity(limit + limit / 8);
            let mut closed = false;
            // Opening may wait on RocksDB (or another process's lock): on this thread, never
            // on an async worker; a failure reaches the caller as the stream's first item.
            let res = stores.partition(&l, p).and_then(|store| {
                store.scan(range, &mut |k, v| {
                    eggroll_core::pairs::push(&mut packed, k, v);
                    if packed.len() >= limit {
                        let full =
                            std::mem::replace(&mut packed, Vec::with_capacity(limit + limit / 8));
                        read.inc_by(full.len() as u64);
                        let batch = PairBatch {
                            packed: full,
                            ..Default::default()
                        };
                        if tx.blocking_send(Ok(batch)).is_err() {
                            closed = true;
                            return Ok(false);
                        }
                    }
                    Ok(true)
                })
            });
            if closed {
                return;
            }
            read.inc_by(packed.len() as u64);
            let last = match res {
                Ok(()) => Ok(PairBatch {
                    packed,
                    ..Default::default()
                }),
                Err(e) => Err(to_status(&e, &who)),
            };
            let _ = tx.blocking_send(last);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl EggService for EggServer {
    async fn usage(&self, _: Request<Ack>) -> Result<Response<EggUsage>, Status> {
        let m = self.executor.stores().memory_usage();
        Ok(Response::new(EggUsage {
            memory_limit: m.limit,
            memory_used: m.used,
            spilled_bytes: m.spilled_bytes,
            spilled_partitions: m.spilled_partitions,
            rss_bytes: crate::memory_budget::resident_bytes().unwrap_or(0),
        }))
    }

    async fn run_task(&self, request: Request<Task>) -> Result<Response<TaskResult>, Status> {
        let started = std::time::Instant::now();
        let op = op_name(request.get_ref().job.as_ref().and_then(|j| j.op.as_ref()));
        let result = self.run_task_inner(request).await;
        self.metrics
            .task(op, result.is_ok(), started.elapsed().as_secs_f64());
        result
    }

    async fn run_tasks(&self, request: Request<Tasks>) -> Result<Response<TaskResults>, Status> {
        let Tasks { job, partitions } = request.into_inner();
        let mut seen = std::collections::HashSet::new();
        if let Some(p) = partitions.iter().find(|p| !seen.insert(**p)) {
            return Err(Status::invalid_argument(format!(
                "partition {p} is listed twice in one RunTasks call; list each once"
            )));
        }
        let task = |partition| {
            Request::new(Task {
                job: job.clone(),
                partition,
            })
        };
        if let [p] = partitions[..] {
            let result = self.run_task(task(p)).await?.into_inner();
            return Ok(Response::new(TaskResults {
                results: vec![result],
            }));
        }
        // Each on a task of its own, so that they run at once on the runtime's workers.
        let mut set = tokio::task::JoinSet::new();
        for (i, &p) in partitions.iter().enumerate() {
            let (server, task) = (self.clone(), task(p));
            set.spawn(async move { (i, server.run_task(task).await) });
        }
        let mut results = vec![TaskResult::default(); partitions.len()];
        while let Some(joined) = set.join_next().await {
            let (i, result) =
                joined.map_err(|e| Status::internal(format!("a task's call failed: {e}")))?;
            results[i] = result?.into_inner();
        }
        Ok(Response::new(TaskResults { results }))
    }

    async fn put_batches(
        &self,
        request: Request<Streaming<PutRequest>>,
    ) -> Result<Response<PutResponse>, Status> {
        self.put_batches_inner(request).await
    }

    type GetBatchesStream = ReceiverStream<Result<PairBatch, Status>>;

    async fn get_batches(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<Self::GetBatchesStream>, Status> {
        self.get_batches_inner(request).await
    }

    async fn point(
        &self,
        request: Request<PointRequest>,
    ) -> Result<Response<PointResponse>, Status> {
        let req = request.into_inner();
        let l = self.check_owned(req.store.as_ref(), req.partition, "target")?;
        let stores = self.executor.stores().clone();
        let res = tokio::task::spawn_blocking(move || -> crate::Result<PointResponse> {
            let store = stores.partition(&l, req.partition)?;
            if req.delete {
                let found = store.delete(&req.key)?;
                Ok(PointResponse {
                    found,
                    value: Vec::new(),
                })
            } else {
                let value = store.get(&req.key)?;
                Ok(PointResponse {
                    found: value.is_some(),
                    value: value.unwrap_or_default(),
                })
            }
        })
        .await
        .map_err(|e| Status::internal(format!("storage thread failed: {e}")))?;
        res.map(Response::new).map_err(|e| self.status(e))
    }
}

/// Writes one message's batch into a partition: through its bulk load when one is open, else
/// combined with what is stored when the stream has a combiner, else as one batch. The
/// message's key and value lists go before its packed pairs on every path, so a later pair of
/// a key wins alike. Returns how many pairs the batch held. Blocks.
fn write_batch(
    store: &dyn PartitionStore,
    load: Option<&mut (dyn BulkLoad + 'static)>,
    batch: PairBatch,
    combiner: Option<Arc<ErasedFn>>,
) -> crate::Result<u64> {
    match (load, combiner) {
        (Some(load), _) => {
            let mut n = 0;
            if !batch.keys.is_empty() {
                let mut packed = Vec::new();
                for (k, v) in batch.keys.iter().zip(&batch.values) {
                    eggroll_core::pairs::push(&mut packed, k, v);
                }
                n += load.put_packed(&packed)?;
            }
            Ok(n + load.put_packed(&batch.packed)?)
        }
        (None, None) => {
            let pairs: Vec<Pair> = batch.keys.into_iter().zip(batch.values).collect();
            let mut n = pairs.len() as u64;
            if !pairs.is_empty() {
                store.put_batch(pairs)?;
            }
            if !batch.packed.is_empty() {
                n += store.put_packed(&batch.packed)?;
            }
            Ok(n)
        }
        (None, Some(c)) => {
            let mut pairs: Vec<Pair> = batch.keys.into_iter().zip(batch.values).collect();
            for pair in eggroll_core::pairs::iter(&batch.packed) {
                let (k, v) = pair?;
                pairs.push((k.to_vec(), v.to_vec()));
            }
            let n = pairs.len() as u64;
            store.merge_batch(pairs, &c)?;
            Ok(n)
        }
    }
}
