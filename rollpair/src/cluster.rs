//! Distributed mode: a session on a cluster. Tasks, puts and gets go straight to the eggs
//! that own the partitions; the cluster manager is asked only for sessions and the metadata
//! of persistent stores.
//!
//! The roll-pair API is blocking: this module owns a small tokio runtime and waits on it from
//! the caller's thread. Call the API from ordinary threads (or `spawn_blocking`), not from
//! inside an async task.

use crate::error::{Error, Result};
use eggroll_core::placement::{assign, spread};
use eggroll_eggpair::service::EggClients;
use eggroll_proto::meta::cluster_manager_client::ClusterManagerClient;
use eggroll_proto::meta::{
    CreateSessionRequest, Job, PairBatch, PointRequest, Processor, PutRequest, ScanRequest,
    SessionId, SessionMeta, SessionStatus, Store, StoreLocator, StoreQuery, StoreRequest,
    StoreType, Task, TaskResult,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Status;

/// How a session on a cluster is started.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// The session id; default: the cluster manager picks one.
    pub session_id: Option<String>,
    /// A name shown in listings.
    pub name: String,
    /// Eggs per node; 0: the cluster manager's default.
    pub processors_per_node: u32,
    /// How long the session may take to start, in ms; 0: the cluster manager's default.
    pub start_timeout_ms: u64,
    /// The session ends when this client stops renewing it for this long, in ms; 0: default.
    pub lease_ms: u64,
}

/// A client's share of a session on a cluster.
pub(crate) struct ClusterSession {
    runtime: tokio::runtime::Runtime,
    cm: ClusterManagerClient<Channel>,
    address: String,
    meta: SessionMeta,
    nodes: Vec<u64>,
    eggs: EggClients,
    /// Placement of every store this session touched, by (namespace, name).
    stores: Mutex<HashMap<(String, String), Store>>,
    keep_alive: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn key(l: &StoreLocator) -> (String, String) {
    (l.namespace.clone(), l.name.clone())
}

fn cm_error(address: &str, s: Status) -> Error {
    match s.code() {
        tonic::Code::Unavailable => Error::Cluster(format!(
            "cannot reach the cluster manager at {address}: {}; is `eggroll clustermanager` running there?",
            s.message()
        )),
        _ => Error::Cluster(s.message().to_string()),
    }
}

impl ClusterSession {
    /// Starts a session through the cluster manager at `address` and waits until it is ACTIVE.
    pub(crate) fn connect(address: &str, opts: &SessionOptions) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eggroll-client")
            .enable_all()
            .build()
            .map_err(|e| Error::Pool(e.to_string()))?;
        let address = address.trim_start_matches("http://").to_string();
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| Error::Cluster(format!("bad cluster manager address {address:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5));
        let cm = runtime
            .block_on(channel.connect())
            .map(ClusterManagerClient::new)
            .map_err(|e| {
                Error::Cluster(format!(
                    "cannot reach the cluster manager at {address}: {e}; is `eggroll clustermanager` running there?"
                ))
            })?;
        let req = CreateSessionRequest {
            session_id: opts.session_id.clone().unwrap_or_default(),
            name: opts.name.clone(),
            processors_per_node: opts.processors_per_node,
            start_timeout_ms: opts.start_timeout_ms,
            lease_ms: opts.lease_ms,
            options: Default::default(),
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
            cm,
            address,
            meta,
            nodes,
            eggs: EggClients::default(),
            stores: Mutex::new(HashMap::new()),
            keep_alive: Mutex::new(None),
        };
        session.start_keep_alive(opts.lease_ms);
        tracing::info!(session = %session.meta.id, processors = session.meta.processors.len(), "cluster session active");
        Ok(session)
    }

    /// Renews the lease a few times per lease period, so the eggs outlive no client.
    fn start_keep_alive(&self, lease_ms: u64) {
        let lease = if lease_ms == 0 { 60_000 } else { lease_ms };
        let every = Duration::from_millis((lease / 4).max(50));
        let mut cm = self.cm.clone();
        let id = SessionId {
            id: self.meta.id.clone(),
        };
        let task = self.runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Ok(meta) = cm.keep_alive(id.clone()).await {
                    if !matches!(
                        meta.get_ref().status(),
                        SessionStatus::New | SessionStatus::Active
                    ) {
                        break;
                    }
                }
            }
        });
        *self.keep_alive.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// A client of the egg at `endpoint` (made inside the runtime, which its connection needs).
    fn egg(
        &self,
        endpoint: &str,
    ) -> Result<eggroll_proto::meta::egg_service_client::EggServiceClient<Channel>, Status> {
        let _guard = self.runtime.enter();
        self.eggs.get(endpoint)
    }

    pub(crate) fn session_id(&self) -> &str {
        &self.meta.id
    }

    fn processors(&self) -> &[Processor] {
        &self.meta.processors
    }

    fn lock_stores(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Store>> {
        self.stores.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new store: in-memory ones are placed here (like `like` when given, so
    /// partition `p` of both sit on the same egg); persistent ones by the cluster manager.
    pub(crate) fn create(&self, l: &StoreLocator, like: Option<&StoreLocator>) -> Result<()> {
        let store = if l.store_type() == StoreType::InMemory {
            let partitions = match like.and_then(|o| self.lock_stores().get(&key(o)).cloned()) {
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
        self.lock_stores().insert(key(l), store);
        Ok(())
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

    /// A persistent store recorded by the cluster manager.
    pub(crate) fn load(&self, namespace: &str, name: &str) -> Result<StoreLocator> {
        let mut l = StoreLocator {
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        };
        l.set_store_type(StoreType::Rocksdb);
        let store = self.cm_store(l, false)?;
        let l = store.locator.clone().ok_or_else(|| {
            Error::Cluster("the cluster manager sent a store with no locator".into())
        })?;
        self.lock_stores().insert(key(&l), store);
        Ok(l)
    }

    /// Persistent stores matching glob patterns.
    pub(crate) fn list(&self, namespace: &str, name: &str) -> Result<Vec<StoreLocator>> {
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

    /// A store with its placement, for a request.
    pub(crate) fn store(&self, l: &StoreLocator) -> Result<Store> {
        if let Some(s) = self.lock_stores().get(&key(l)) {
            return Ok(s.clone());
        }
        if l.store_type() == StoreType::Rocksdb {
            self.load(&l.namespace, &l.name)?;
            if let Some(s) = self.lock_stores().get(&key(l)) {
                return Ok(s.clone());
            }
        }
        Err(Error::Cluster(format!(
            "table {}/{} is not known to session {}; in-memory tables live only in the session that made them",
            l.namespace, l.name, self.meta.id
        )))
    }

    /// Forgets a store after its Destroy job; a persistent one also at the cluster manager.
    pub(crate) fn forget(&self, l: &StoreLocator) -> Result<()> {
        self.lock_stores().remove(&key(l));
        if l.store_type() == StoreType::Rocksdb {
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

    /// Explains a failed call to an egg: which partition, which processor, and, when the
    /// session has failed meanwhile, the cluster manager's reason.
    fn egg_error(&self, part: &eggroll_proto::meta::Partition, s: Status) -> Error {
        let mut msg = format!(
            "partition {} on processor {} at {} failed: {}",
            part.id,
            part.processor_id,
            part.endpoint,
            s.message()
        );
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

    /// Fills in every store's placement and runs one task per partition on its egg.
    pub(crate) fn run_job(&self, mut job: Job, partitions: u32) -> Result<Vec<TaskResult>> {
        for s in job.inputs.iter_mut().chain(job.outputs.iter_mut()) {
            let l = s.locator.clone().unwrap_or_default();
            *s = self.store(&l)?;
        }
        let input = job.inputs.first().cloned().unwrap_or_default();
        let job = Arc::new(job);
        let calls = (0..partitions).map(|p| {
            let part = input
                .partitions
                .get(p as usize)
                .cloned()
                .unwrap_or_default();
            let client = self.egg(&part.endpoint);
            let job = job.clone();
            async move {
                let mut client = client.map_err(|s| (part.clone(), s))?;
                let task = Task {
                    job: Some((*job).clone()),
                    partition: p,
                };
                client
                    .run_task(task)
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| (part, s))
            }
        });
        let results = self.runtime.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, c) in calls.enumerate() {
                set.spawn(async move { (i, c.await) });
            }
            let mut out = vec![None; partitions as usize];
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok((i, Ok(r))) => out[i] = Some(r),
                    // The first failure ends the job; the other tasks are dropped.
                    Ok((_, Err(e))) => return Err(e),
                    Err(e) => {
                        return Err((
                            Default::default(),
                            Status::internal(format!("task call panicked: {e}")),
                        ))
                    }
                }
            }
            Ok(out.into_iter().flatten().collect::<Vec<_>>())
        });
        results.map_err(|(part, s)| self.egg_error(&part, s))
    }

    fn partition(&self, store: &Store, p: u32) -> Result<eggroll_proto::meta::Partition> {
        store
            .partitions
            .get(p as usize)
            .cloned()
            .ok_or_else(|| Error::Cluster(format!("the store has no placement for partition {p}")))
    }

    /// One key's value, or delete it (`delete`): answers (found, value).
    pub(crate) fn point(
        &self,
        l: &StoreLocator,
        p: u32,
        k: Vec<u8>,
        delete: bool,
    ) -> Result<(bool, Vec<u8>)> {
        let store = self.store(l)?;
        let part = self.partition(&store, p)?;
        let req = PointRequest {
            store: Some(store),
            partition: p,
            key: k,
            delete,
        };
        let mut client = self
            .egg(&part.endpoint)
            .map_err(|s| self.egg_error(&part, s))?;
        let r = self
            .runtime
            .block_on(client.point(req))
            .map_err(|s| self.egg_error(&part, s))?
            .into_inner();
        Ok((r.found, r.value))
    }

    /// Opens one put stream per partition of `l`; send batches with [`PutStreams::send`].
    pub(crate) fn put_streams(&self, l: &StoreLocator) -> Result<PutStreams<'_>> {
        self.open_puts(l, None)
    }

    /// One put stream, to partition `p` of `l`.
    pub(crate) fn put_streams_one(&self, l: &StoreLocator, p: u32) -> Result<PutStreams<'_>> {
        self.open_puts(l, Some(p))
    }

    fn open_puts(&self, l: &StoreLocator, only: Option<u32>) -> Result<PutStreams<'_>> {
        let store = self.store(l)?;
        let mut senders = Vec::new();
        let mut calls = Vec::new();
        for part in &store.partitions {
            if only.is_some_and(|p| p != part.id) {
                senders.push(None);
                calls.push(None);
                continue;
            }
            let (tx, rx) = mpsc::channel::<PutRequest>(2);
            let mut client = self
                .egg(&part.endpoint)
                .map_err(|s| self.egg_error(part, s))?;
            let call = self
                .runtime
                .spawn(async move { client.put_batches(ReceiverStream::new(rx)).await });
            senders.push(Some(tx));
            calls.push(Some(call));
        }
        let first = vec![true; senders.len()];
        Ok(PutStreams {
            session: self,
            store,
            senders,
            calls,
            first,
        })
    }

    /// Calls `visit` on every pair of partition `p` in key order, fetched in batches.
    pub(crate) fn scan(
        &self,
        l: &StoreLocator,
        p: u32,
        visit: &mut crate::context::Visit,
    ) -> Result<()> {
        let store = self.store(l)?;
        let part = self.partition(&store, p)?;
        let mut client = self
            .egg(&part.endpoint)
            .map_err(|s| self.egg_error(&part, s))?;
        let req = ScanRequest {
            store: Some(store),
            partition: p,
            start_key: Vec::new(),
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

    /// Ends the session (killing its eggs at once with `kill`).
    pub(crate) fn stop(&self, kill: bool) -> Result<()> {
        if let Some(t) = self
            .keep_alive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            t.abort();
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

type PutCall =
    tokio::task::JoinHandle<Result<tonic::Response<eggroll_proto::meta::PutResponse>, Status>>;

/// One open put stream per partition of a store.
pub(crate) struct PutStreams<'a> {
    session: &'a ClusterSession,
    store: Store,
    senders: Vec<Option<mpsc::Sender<PutRequest>>>,
    calls: Vec<Option<PutCall>>,
    first: Vec<bool>,
}

impl PutStreams<'_> {
    /// Sends a packed batch (see `eggroll_core::packed`) to partition `p`, waiting while two
    /// batches are already in flight.
    pub(crate) fn send(&mut self, p: u32, packed: Vec<u8>) -> Result<()> {
        let i = p as usize;
        // The store (with its placement) goes in the first message of each stream only.
        let store = std::mem::take(&mut self.first[i]).then(|| self.store.clone());
        let req = PutRequest {
            store,
            partition: p,
            batch: Some(PairBatch {
                packed,
                ..Default::default()
            }),
            combiner: None,
        };
        let sent = match self.senders.get(i).and_then(|s| s.as_ref()) {
            Some(tx) => tx.blocking_send(req).is_ok(),
            None => false,
        };
        if !sent {
            // The stream ended early: its call holds the reason.
            self.senders[i] = None;
            return Err(self.finish_one(i).err().unwrap_or_else(|| {
                Error::Cluster(format!("the put stream of partition {p} closed early"))
            }));
        }
        Ok(())
    }

    fn finish_one(&mut self, i: usize) -> Result<u64> {
        let part = self.store.partitions.get(i).cloned().unwrap_or_default();
        let Some(call) = self.calls.get_mut(i).and_then(Option::take) else {
            return Ok(0);
        };
        match self.session.runtime.block_on(call) {
            Ok(Ok(r)) => Ok(r.into_inner().written),
            Ok(Err(s)) => Err(self.session.egg_error(&part, s)),
            Err(e) => Err(Error::Cluster(format!("put stream task failed: {e}"))),
        }
    }

    /// Closes every stream and waits until every egg has stored its share.
    pub(crate) fn finish(mut self) -> Result<u64> {
        for s in &mut self.senders {
            s.take();
        }
        let mut total = 0;
        for i in 0..self.calls.len() {
            total += self.finish_one(i)?;
        }
        Ok(total)
    }
}
