//! Distributed mode: a session on a cluster. Tasks, puts and gets go straight to the eggs
//! that own the partitions; the cluster manager is asked only for sessions and the metadata
//! of persistent stores.
//!
//! The roll-pair API is blocking: this module owns a current-thread tokio runtime, driven by
//! the caller's thread while a call waits (several threads may wait at once). Work spawned
//! on it (an in-memory table's destroy) moves on during the next call, or, when none comes
//! soon, on the session's idle driver (`idle_driver`). Call the API from ordinary threads
//! (or `spawn_blocking`), not from inside an async task.

use crate::backend::{Backend, BatchSink, Visit};
use crate::error::{Error, Result};
use crate::idle_driver::IdleDriver;
use crate::options::SessionOptions;
use crate::writer::BATCH_BYTES;
use eggroll_core::placement::{assign, spread};
use eggroll_core::sync::Mutex;
use eggroll_eggpair::service::EggClients;
use eggroll_proto::meta::cluster_manager_client::ClusterManagerClient;
use eggroll_proto::meta::egg_service_client::EggServiceClient;
use eggroll_proto::meta::{
    job::Op, CreateSessionRequest, Job, PairBatch, Partition, PointRequest, Processor, PutRequest,
    PutResponse, ScanRequest, SessionId, SessionMeta, SessionStatus, Store, StoreLocator,
    StoreQuery, StoreRequest, StoreType, TaskResult, Tasks,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Status;
use tracing::Instrument;

/// A client's share of a session on a cluster.
pub(crate) struct ClusterSession {
    runtime: Arc<tokio::runtime::Runtime>,
    /// Sends the destroys spawned on `runtime` when no call does.
    idle: IdleDriver,
    cm: ClusterManagerClient<Channel>,
    address: String,
    meta: SessionMeta,
    nodes: Vec<u64>,
    eggs: EggClients,
    /// Placement of every store this session touched, by (namespace, name).
    stores: Mutex<HashMap<(String, String), Store>>,
    /// Stops the lease's renewals when sent or dropped.
    keep_alive: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// In-memory tables' destroys under way, by (namespace, name).
    destroying: Mutex<HashMap<(String, String), tokio::task::JoinHandle<()>>>,
}

/// A failed call to an egg: where it went, for which partitions, and its status.
type CallError = (Partition, Vec<u32>, Status);

/// One egg's call for its partitions' tasks: their results, or why it failed.
type TaskCall = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<Vec<TaskResult>, CallError>> + Send>,
>;

/// Runs a job's calls at once; their results in partition order, or the first failure
/// (the other calls are then dropped). A few calls are polled together in the waiting
/// future; many are spawned as tasks, where polling every one at each wake-up would not
/// scale.
async fn join_tasks(calls: Vec<TaskCall>) -> std::result::Result<Vec<TaskResult>, CallError> {
    let mut results = if calls.len() <= POLLED_HERE {
        join_here(calls).await?
    } else {
        let mut set = tokio::task::JoinSet::new();
        for c in calls {
            set.spawn(c);
        }
        let mut results = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => results.extend(r?),
                Err(e) => {
                    return Err((
                        Default::default(),
                        Vec::new(),
                        Status::internal(format!("task call panicked: {e}")),
                    ))
                }
            }
        }
        results
    };
    results.sort_by_key(|r| r.partition);
    Ok(results)
}

/// Calls up to this many are polled by the waiting thread (see `join_tasks`).
const POLLED_HERE: usize = 64;

/// Polls every call still pending at each wake-up, in the caller's task.
async fn join_here(mut pending: Vec<TaskCall>) -> std::result::Result<Vec<TaskResult>, CallError> {
    use std::task::Poll;
    let mut out = Vec::new();
    std::future::poll_fn(|cx| {
        let mut i = 0;
        while i < pending.len() {
            match pending[i].as_mut().poll(cx) {
                Poll::Ready(Ok(r)) => {
                    out.extend(r);
                    drop(pending.swap_remove(i));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => i += 1,
            }
        }
        if pending.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await?;
    Ok(out)
}

/// A runtime driven only by the threads that wait on it.
fn current_thread_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Pool(format!("cannot start the client's runtime: {e}")))
}

fn key(l: &StoreLocator) -> (String, String) {
    (l.namespace.clone(), l.name.clone())
}

fn unreachable_cm(address: &str, e: impl std::fmt::Display) -> Error {
    Error::Cluster(format!(
        "cannot reach the cluster manager at {address}: {e}; is `eggroll clustermanager` running there?"
    ))
}

fn cm_error(address: &str, s: Status) -> Error {
    match s.code() {
        tonic::Code::Unavailable => unreachable_cm(address, s.message()),
        _ => Error::Cluster(s.message().to_string()),
    }
}

impl ClusterSession {
    /// Starts a session through the cluster manager at `address` and waits until it is ACTIVE.
    pub(crate) fn connect(address: &str, opts: &SessionOptions) -> Result<Self> {
        // A current-thread runtime: the calling thread drives the connections itself while it
        // waits, so a small job's answer wakes it straight from the socket, not through a
        // worker thread and a futex (our count of 10 rows in 4 partitions on two eggs: 0.53-0.56
        // ms, against 0.59-0.88 ms with a two-worker runtime, in alternate runs).
        let runtime = Arc::new(current_thread_runtime()?);
        let idle = IdleDriver::start(runtime.clone())?;
        let address = address.trim_start_matches("http://").to_string();
        let endpoint = eggroll_core::channel::endpoint(&address)
            .map_err(|e| Error::Cluster(format!("bad cluster manager address: {e}")))?;
        let cm = runtime
            .block_on(endpoint.connect())
            .map(ClusterManagerClient::new)
            .map_err(|e| unreachable_cm(&address, e))?;
        let req = CreateSessionRequest {
            session_id: opts.session_id.clone().unwrap_or_default(),
            name: opts.name.clone(),
            processors_per_node: opts.processors_per_node,
            start_timeout_ms: opts.start_timeout_ms,
            lease_ms: opts.lease_ms,
            options: if opts.processor_type.is_empty() {
                Default::default()
            } else {
                [(
                    eggroll_core::processor::TYPE_OPTION.to_string(),
                    opts.processor_type.clone(),
                )]
                .into()
            },
        };
        let meta = runtime
            .block_on(cm.clone().create_session(req))
            .map_err(|s| cm_error(&address, s))?
            .into_inner();
        let mut nodes: Vec<u64> = meta.processors.iter().map(|p| p.server_node_id).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let session = Self {
            runtime,
            idle,
            cm,
            address,
            meta,
            nodes,
            eggs: EggClients::default(),
            stores: Mutex::new(HashMap::new()),
            keep_alive: Mutex::new(None),
            destroying: Mutex::new(HashMap::new()),
        };
        session.start_keep_alive(endpoint, opts.lease_ms)?;
        tracing::info!(session = %session.meta.id, processors = session.meta.processors.len(), "cluster session active");
        Ok(session)
    }

    /// Renews the lease a few times per lease period, so the eggs outlive no client. On a
    /// thread of its own, with its own connection: the session's runtime runs only while a
    /// call waits on it, and a client may do no call for minutes.
    fn start_keep_alive(&self, endpoint: tonic::transport::Endpoint, lease_ms: u64) -> Result<()> {
        let lease = if lease_ms == 0 { 60_000 } else { lease_ms };
        let every = Duration::from_millis((lease / 4).max(50));
        let id = SessionId {
            id: self.meta.id.clone(),
        };
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = current_thread_runtime()?;
        std::thread::Builder::new()
            .name("eggroll-keep-alive".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut cm = ClusterManagerClient::new(endpoint.connect_lazy());
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(every) => {}
                            _ = &mut stopped => return,
                        }
                        if let Ok(meta) = cm.keep_alive(id.clone()).await {
                            if !matches!(
                                meta.get_ref().status(),
                                SessionStatus::New | SessionStatus::Active
                            ) {
                                return;
                            }
                        }
                    }
                })
            })
            .map_err(|e| Error::Pool(format!("cannot start the keep-alive thread: {e}")))?;
        *self.keep_alive.lock() = Some(stop);
        Ok(())
    }

    /// A client of the egg at `endpoint`.
    fn egg(&self, endpoint: &str) -> Result<EggServiceClient<Channel>, Status> {
        // A new connection spawns its background task on the current runtime; the guard
        // lives for this synchronous call only.
        let _guard = self.runtime.enter();
        self.eggs.get(endpoint)
    }

    /// The client of the egg that holds `part`, errors explained.
    fn egg_of(&self, part: &Partition) -> Result<EggServiceClient<Channel>> {
        self.egg(&part.endpoint)
            .map_err(|s| self.egg_error(part, s))
    }

    fn processors(&self) -> &[Processor] {
        &self.meta.processors
    }

    /// Asks the cluster manager for a persistent store (recording it first with `create`),
    /// with each partition assigned to this session's processors.
    fn cm_store(&self, l: StoreLocator, create: bool) -> Result<Store> {
        let req = StoreRequest {
            locator: Some(l),
            create,
            session_id: self.meta.id.clone(),
        };
        let mut store = self
            .runtime
            .block_on(self.cm.clone().get_store(req))
            .map_err(|s| cm_error(&self.address, s))?
            .into_inner();
        assign(&mut store.partitions, self.processors())?;
        Ok(store)
    }

    /// A store with its placement, for a request.
    fn store(&self, l: &StoreLocator) -> Result<Store> {
        if let Some(s) = self.stores.lock().get(&key(l)) {
            return Ok(s.clone());
        }
        if l.store_type().is_persistent() {
            self.load(&l.namespace, &l.name)?;
            if let Some(s) = self.stores.lock().get(&key(l)) {
                return Ok(s.clone());
            }
        }
        Err(Error::Cluster(format!(
            "table {}/{} is not known to session {}; in-memory tables live only in the session that made them",
            l.namespace, l.name, self.meta.id
        )))
    }

    /// Forgets a store after its Destroy job; a persistent one also at the cluster manager.
    fn forget(&self, l: &StoreLocator) -> Result<()> {
        self.stores.lock().remove(&key(l));
        if l.store_type().is_persistent() {
            match self
                .runtime
                .block_on(self.cm.clone().delete_store(l.clone()))
            {
                Ok(_) => {}
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => return Err(cm_error(&self.address, s)),
            }
        }
        Ok(())
    }

    /// The calls of a job's tasks: one to each egg, for all its partitions, every store's
    /// placement filled in; nothing is sent until they are awaited.
    fn task_calls(&self, mut job: Job, partitions: u32) -> Result<Vec<TaskCall>> {
        for s in job.inputs.iter_mut().chain(job.outputs.iter_mut()) {
            let l = s.locator.clone().unwrap_or_default();
            *s = self.store(&l)?;
        }
        let input = job.inputs.first().cloned().unwrap_or_default();
        // Partitions by the egg that serves them (`join_tasks` puts the results in order).
        let mut eggs: HashMap<String, (Partition, Vec<u32>)> = HashMap::new();
        for p in 0..partitions {
            let part = input
                .partitions
                .get(p as usize)
                .cloned()
                .unwrap_or_default();
            eggs.entry(part.endpoint.clone())
                .or_insert_with(|| (part, Vec::new()))
                .1
                .push(p);
        }
        let job = Arc::new(job);
        let calls = eggs.into_values().map(|(part, partitions)| {
            let client = self.egg(&part.endpoint);
            let span = tracing::debug_span!("tasks", session = %job.session_id, job = %job.id,
                processor = part.processor_id, partitions = ?partitions);
            let job = job.clone();
            let call = async move {
                let failed = |s| (part.clone(), partitions.clone(), s);
                let mut client = client.map_err(failed)?;
                let tasks = Tasks {
                    job: Some((*job).clone()),
                    partitions: partitions.clone(),
                };
                let results = client
                    .run_tasks(tasks)
                    .await
                    .map_err(failed)?
                    .into_inner()
                    .results;
                if results.len() != partitions.len() {
                    return Err(failed(Status::internal(format!(
                        "the egg answered {} results for {} tasks; client and egg versions differ",
                        results.len(),
                        partitions.len()
                    ))));
                }
                Ok(results)
            }
            .instrument(span);
            Box::pin(call) as TaskCall
        });
        Ok(calls.collect())
    }

    /// Waits for the in-memory tables' destroys still under way whose (namespace, name) is
    /// `only`, or all of them.
    fn await_destroys(&self, only: Option<&(String, String)>) {
        let waiting: Vec<_> = {
            let mut destroying = self.destroying.lock();
            match only {
                Some(k) => destroying.remove(k).into_iter().collect(),
                None => destroying.drain().map(|(_, h)| h).collect(),
            }
        };
        for handle in waiting {
            // A destroy that failed has said so in the log; the table is gone from this side.
            let _ = self.runtime.block_on(handle);
        }
    }

    /// Explains a failed call to an egg: which partition, which processor, and, when the
    /// session has failed meanwhile, the cluster manager's reason.
    fn egg_error(&self, part: &Partition, s: Status) -> Error {
        self.egg_error_on(part, &[part.id], s)
    }

    /// As `egg_error`, for a call on `partitions` of that egg.
    fn egg_error_on(&self, part: &Partition, partitions: &[u32], s: Status) -> Error {
        // An egg's own errors begin with its name; the transport's do not.
        let who = format!("processor {} at {}", part.processor_id, part.endpoint);
        let detail = s.message();
        let detail = detail
            .strip_prefix(&who)
            .map(|rest| rest.trim_start_matches(':').trim_start())
            .unwrap_or(detail);
        let which = match partitions {
            [p] => format!("partition {p}"),
            ps => format!(
                "partitions {}",
                ps.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ),
        };
        let mut msg = format!("{which} on {who} failed: {detail}");
        if matches!(
            s.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::Internal
        ) {
            // An egg that died is reported by its node manager within moments.
            let id = SessionId {
                id: self.meta.id.clone(),
            };
            for _ in 0..10 {
                if let Ok(meta) = self
                    .runtime
                    .block_on(self.cm.clone().get_session(id.clone()))
                {
                    let meta = meta.into_inner();
                    if meta.status() == SessionStatus::Error {
                        msg.push_str(&format!(
                            "; session {} is in ERROR: {}",
                            meta.id, meta.reason
                        ));
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Error::Cluster(msg)
    }

    /// Where partition `p` of `store` lives.
    fn partition(&self, store: &Store, p: u32) -> Result<Partition> {
        store
            .partitions
            .get(p as usize)
            .cloned()
            .ok_or_else(|| Error::Cluster(format!("the store has no placement for partition {p}")))
    }

    /// One key's value, or delete it (`delete`): answers (found, value).
    fn point(&self, l: &StoreLocator, p: u32, k: Vec<u8>, delete: bool) -> Result<(bool, Vec<u8>)> {
        let store = self.store(l)?;
        let part = self.partition(&store, p)?;
        let req = PointRequest {
            store: Some(store),
            partition: p,
            key: k,
            delete,
        };
        let mut client = self.egg_of(&part)?;
        let r = self
            .runtime
            .block_on(client.point(req))
            .map_err(|s| self.egg_error(&part, s))?
            .into_inner();
        Ok((r.found, r.value))
    }
}

impl Backend for ClusterSession {
    fn session_id(&self) -> &str {
        &self.meta.id
    }

    fn is_distributed(&self) -> bool {
        true
    }

    fn batch_bytes(&self) -> usize {
        BATCH_BYTES
    }

    fn parallelism(&self) -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// In-memory stores are placed here (like `like` when given); persistent ones by the
    /// cluster manager.
    fn create(&self, l: &StoreLocator, like: Option<&StoreLocator>) -> Result<()> {
        self.await_destroys(Some(&key(l)));
        let store = if l.store_type() == StoreType::InMemory {
            let partitions = match like.and_then(|o| self.stores.lock().get(&key(o)).cloned()) {
                Some(o) if o.partitions.len() == l.total_partitions as usize => o.partitions,
                _ => {
                    let mut parts = spread(&self.nodes, l.total_partitions)?;
                    assign(&mut parts, self.processors())?;
                    parts
                }
            };
            Store {
                locator: Some(l.clone()),
                partitions,
                options: Default::default(),
            }
        } else {
            self.cm_store(l.clone(), true)?
        };
        self.stores.lock().insert(key(l), store);
        Ok(())
    }

    fn load(&self, namespace: &str, name: &str) -> Result<StoreLocator> {
        let mut l = StoreLocator {
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        };
        l.set_store_type(StoreType::PERSISTENT);
        let store = self.cm_store(l, false)?;
        let l = store.locator.clone().ok_or_else(|| {
            Error::Cluster("the cluster manager sent a store with no locator".into())
        })?;
        self.stores.lock().insert(key(&l), store);
        Ok(l)
    }

    fn list(&self, namespace: &str, name: &str) -> Result<Vec<StoreLocator>> {
        let q = StoreQuery {
            namespace: namespace.into(),
            name: name.into(),
        };
        let list = self
            .runtime
            .block_on(self.cm.clone().list_stores(q))
            .map_err(|s| cm_error(&self.address, s))?
            .into_inner();
        Ok(list.stores.into_iter().filter_map(|s| s.locator).collect())
    }

    /// A Destroy task on every partition's egg, then the metadata. An in-memory table's
    /// tasks are only sent: the table is gone from this session at once, its eggs free it a
    /// moment later, and the caller does not wait a round trip for that (FATE drops hundreds
    /// of tables per job). A table made again under the same name first waits for them.
    fn destroy(&self, l: &StoreLocator) -> Result<()> {
        let job = Job {
            id: format!("{}-destroy-{}/{}", self.meta.id, l.namespace, l.name),
            session_id: self.meta.id.clone(),
            inputs: vec![Store {
                locator: Some(l.clone()),
                ..Default::default()
            }],
            op: Some(Op::Destroy(Default::default())),
            ..Default::default()
        };
        if l.store_type().is_persistent() {
            self.run_job(job, l.total_partitions)?;
            return self.forget(l);
        }
        let calls = self.task_calls(job, l.total_partitions)?;
        self.forget(l)?;
        let (session, table) = (self.meta.id.clone(), format!("{}/{}", l.namespace, l.name));
        let handle = self.idle.spawn(async move {
            if let Err((part, _, s)) = join_tasks(calls).await {
                tracing::warn!(session = %session, table = %table, processor = part.processor_id,
                    "destroying an in-memory table failed: {}", s.message());
            }
        });
        let mut destroying = self.destroying.lock();
        destroying.retain(|_, h| !h.is_finished());
        destroying.insert(key(l), handle);
        Ok(())
    }

    fn same_placement(&self, a: &StoreLocator, b: &StoreLocator) -> Result<bool> {
        let (a, b) = (self.store(a)?, self.store(b)?);
        Ok(a.partitions.len() == b.partitions.len()
            && a.partitions
                .iter()
                .zip(&b.partitions)
                .all(|(x, y)| x.processor_id == y.processor_id))
    }

    /// Fills in every store's placement and runs one task per partition on its egg.
    fn run_job(&self, job: Job, partitions: u32) -> Result<Vec<TaskResult>> {
        let calls = self.task_calls(job, partitions)?;
        self.runtime
            .block_on(join_tasks(calls))
            .map_err(|(part, partitions, s)| self.egg_error_on(&part, &partitions, s))
    }

    fn get(&self, l: &StoreLocator, p: u32, k: Vec<u8>) -> Result<Option<Vec<u8>>> {
        let (found, v) = self.point(l, p, k, false)?;
        Ok(found.then_some(v))
    }

    fn delete(&self, l: &StoreLocator, p: u32, k: Vec<u8>) -> Result<bool> {
        Ok(self.point(l, p, k, true)?.0)
    }

    /// Fetches the pairs in batches from the egg.
    fn scan(&self, l: &StoreLocator, p: u32, start: &[u8], visit: &mut Visit) -> Result<()> {
        let store = self.store(l)?;
        let part = self.partition(&store, p)?;
        let mut client = self.egg_of(&part)?;
        let req = ScanRequest {
            store: Some(store),
            partition: p,
            start_key: start.to_vec(),
            end_key: Vec::new(),
        };
        let mut stream = self
            .runtime
            .block_on(client.get_batches(req))
            .map_err(|s| self.egg_error(&part, s))?
            .into_inner();
        loop {
            let batch: Option<PairBatch> = self
                .runtime
                .block_on(stream.message())
                .map_err(|s| self.egg_error(&part, s))?;
            let Some(batch) = batch else { return Ok(()) };
            for (k, v) in batch.keys.iter().zip(&batch.values) {
                if !visit(k, v)? {
                    return Ok(());
                }
            }
            for pair in eggroll_core::pairs::iter(&batch.packed) {
                let (k, v) = pair?;
                if !visit(k, v)? {
                    return Ok(());
                }
            }
        }
    }

    /// One put stream per partition written, opened by its first batch.
    fn batches<'a>(&'a self, l: &StoreLocator) -> Result<Box<dyn BatchSink + 'a>> {
        let store = self.store(l)?;
        let streams = (0..l.total_partitions).map(|_| None).collect();
        Ok(Box::new(PutStreams {
            session: self,
            store,
            streams,
        }))
    }

    fn stop(&self, kill: bool) -> Result<()> {
        if !kill {
            self.await_destroys(None);
        }
        if let Some(stop) = self.keep_alive.lock().take() {
            let _ = stop.send(());
        }
        let id = SessionId {
            id: self.meta.id.clone(),
        };
        let mut cm = self.cm.clone();
        let res = self.runtime.block_on(async move {
            if kill {
                cm.kill_session(id).await
            } else {
                cm.stop_session(id).await
            }
        });
        res.map_err(|s| cm_error(&self.address, s))?;
        Ok(())
    }
}

type PutCall = tokio::task::JoinHandle<Result<tonic::Response<PutResponse>, Status>>;

/// A client-streaming put call to the egg of one partition.
struct PutStream {
    tx: mpsc::Sender<PutRequest>,
    call: PutCall,
}

/// The put streams of one store, one per partition written to.
struct PutStreams<'a> {
    session: &'a ClusterSession,
    store: Store,
    streams: Vec<Option<PutStream>>,
}

impl PutStreams<'_> {
    fn open(&self, p: u32) -> Result<PutStream> {
        let part = self.session.partition(&self.store, p)?;
        let mut client = self.session.egg_of(&part)?;
        // Two batches in flight per stream: the egg writes one while the next arrives.
        let (tx, rx) = mpsc::channel::<PutRequest>(2);
        let call = self
            .session
            .runtime
            .spawn(async move { client.put_batches(ReceiverStream::new(rx)).await });
        Ok(PutStream { tx, call })
    }

    /// Waits for the answer of the egg of partition `p` to its put call (closed by now).
    fn answer(&self, p: u32, call: PutCall) -> Result<u64> {
        match self.session.runtime.block_on(call) {
            Ok(Ok(r)) => Ok(r.into_inner().written),
            Ok(Err(s)) => {
                let part = self.session.partition(&self.store, p)?;
                Err(self.session.egg_error(&part, s))
            }
            Err(e) => Err(Error::Cluster(format!("put stream task failed: {e}"))),
        }
    }
}

impl BatchSink for PutStreams<'_> {
    /// Waits while two batches are already in flight to that egg.
    fn send(&mut self, p: u32, packed: Vec<u8>) -> Result<()> {
        let i = p as usize;
        let first = matches!(self.streams.get(i), Some(None));
        if first {
            self.streams[i] = Some(self.open(p)?);
        }
        // The store (with its placement) goes in the first message of each stream only.
        let req = PutRequest {
            store: first.then(|| self.store.clone()),
            partition: p,
            batch: Some(PairBatch {
                packed,
                ..Default::default()
            }),
            combiner: None,
        };
        let sent = match self.streams.get(i) {
            // Sending drives the runtime, so the put calls progress while this thread waits.
            Some(Some(stream)) => self.session.runtime.block_on(stream.tx.send(req)).is_ok(),
            _ => false,
        };
        if !sent {
            // The stream ended early (its call holds the reason), or `p` is no partition.
            let reason = match self.streams.get_mut(i).and_then(Option::take) {
                Some(stream) => self.answer(p, stream.call).err(),
                None => None,
            };
            return Err(reason.unwrap_or_else(|| {
                Error::Cluster(format!("the put stream of partition {p} closed early"))
            }));
        }
        Ok(())
    }

    /// Closes every stream, then waits until every egg has stored its share.
    fn finish(mut self: Box<Self>) -> Result<u64> {
        let calls: Vec<_> = std::mem::take(&mut self.streams)
            .into_iter()
            .enumerate()
            .filter_map(|(p, s)| s.map(|s| (p as u32, s.call)))
            .collect();
        let mut total = 0;
        for (p, call) in calls {
            total += self.answer(p, call)?;
        }
        Ok(total)
    }
}
