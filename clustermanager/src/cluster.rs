//! The cluster manager's state: the node registry, sessions and store metadata, each kept in
//! memory and written through to the durable [`MetaStore`].

use crate::catalog::Catalog;
use crate::error::Result;
use crate::meta_store::MetaStore;
use crate::nodes::Nodes;
use crate::session_entry::SessionEntry;
use eggroll_core::config::EggrollConfig;
use eggroll_core::sync::Mutex;
use eggroll_proto::meta::node_manager_client::NodeManagerClient;
use eggroll_proto::meta::{NodeRegistration, SessionMeta, SessionStatus, Store};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::MutexGuard;
use std::time::Duration;
use tonic::transport::Channel;

/// Everything the cluster manager knows.
pub struct Cluster {
    /// Settings.
    pub config: EggrollConfig,
    /// The address eggs report to ("host:port").
    pub address: String,
    /// Durable records.
    pub meta: MetaStore,
    pub(crate) nodes: Mutex<Nodes>,
    pub(crate) sessions: Mutex<HashMap<String, SessionEntry>>,
    pub(crate) catalog: Mutex<Catalog>,
    /// Woken on every session state change.
    pub(crate) changed: tokio::sync::Notify,
    pub(crate) next_processor: AtomicU64,
    pub(crate) next_session: AtomicU64,
}

impl Cluster {
    /// Loads the durable records from `config.data_dir`; sessions that were running when the
    /// cluster manager stopped are marked ERROR, since their eggs are gone or orphaned.
    pub fn open(config: EggrollConfig, address: String) -> Result<Self> {
        let meta = MetaStore::open(&config.data_dir)?;
        let nodes = Nodes::restore(meta.all::<NodeRegistration>("node")?);
        let mut sessions = HashMap::new();
        for mut s in meta.all::<SessionMeta>("session")? {
            if matches!(s.status(), SessionStatus::New | SessionStatus::Active) {
                s.set_status(SessionStatus::Error);
                s.reason = "the cluster manager restarted while the session was running; start a new session".into();
            }
            sessions.insert(s.id.clone(), SessionEntry::restored(s));
        }
        let catalog = Catalog::restore(meta.all::<Store>("store")?);
        let seed = eggroll_core::clock::epoch_millis().saturating_mul(1000);
        Ok(Self {
            config,
            address,
            meta,
            nodes: Mutex::new(nodes),
            sessions: Mutex::new(sessions),
            catalog: Mutex::new(catalog),
            changed: tokio::sync::Notify::new(),
            next_processor: AtomicU64::new(seed),
            next_session: AtomicU64::new(0),
        })
    }

    pub(crate) fn nodes(&self) -> MutexGuard<'_, Nodes> {
        self.nodes.lock()
    }

    pub(crate) fn sessions(&self) -> MutexGuard<'_, HashMap<String, SessionEntry>> {
        self.sessions.lock()
    }

    pub(crate) fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog.lock()
    }

    /// Records a node manager's registration.
    pub async fn register_node(&self, r: NodeRegistration) -> Result<()> {
        tracing::info!(node = r.node_id, host = %r.host, port = r.port, "node registered");
        self.meta.put("node", &r.node_id.to_string(), &r).await?;
        self.nodes().register(r);
        Ok(())
    }

    /// Marks silent nodes LOST and fails the sessions that ran on them.
    pub async fn expire_nodes(&self) {
        let timeout = Duration::from_millis(self.config.clustermanager.heartbeat_timeout_ms);
        let lost = self.nodes().expire(timeout);
        for node in lost {
            let reason = format!(
                "node {} ({}) was lost: no heartbeat for {} ms",
                node.registration.node_id,
                node.address(),
                timeout.as_millis()
            );
            tracing::warn!("{reason}");
            self.fail_sessions_on_node(node.registration.node_id, &reason)
                .await;
        }
    }

    /// A client for the node manager of `node_id`.
    pub(crate) async fn node_client(
        &self,
        node_id: u64,
    ) -> std::result::Result<NodeManagerClient<Channel>, String> {
        let address = self
            .nodes()
            .get(node_id)
            .map(|n| n.address())
            .ok_or_else(|| format!("node {node_id} is not registered"))?;
        let channel = eggroll_core::channel::endpoint(&address)
            .map_err(|e| format!("node {node_id} has a bad address: {e}"))?
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| format!("cannot reach node manager {node_id} at {address}: {e}"))?;
        Ok(NodeManagerClient::new(channel))
    }
}
