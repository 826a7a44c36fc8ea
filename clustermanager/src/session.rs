//! The session lifecycle: NEW → ACTIVE → CLOSED | KILLED | ERROR.
//!
//! A session asks every live node manager for `processors_per_node` egg-pair processes and
//! turns ACTIVE when all of them have reported their endpoints. It goes to ERROR, with a
//! reason that names the processor, node and exit status, when an egg exits on its own, its
//! node is lost, or it cannot start in time; and it is stopped when its client stops
//! renewing its lease. Whenever a session ends, its eggs are stopped.

use crate::cluster::Cluster;
use crate::error::{CmError, Result};
use crate::session_entry::SessionEntry;
use eggroll_core::clock::epoch_millis as now_ms;
use eggroll_core::config::SessionConfig;
use eggroll_core::names::validate_name;
use eggroll_core::processor;
use eggroll_proto::meta::{
    CreateSessionRequest, Processor, ProcessorExited, ProcessorReady, SessionMeta, SessionStatus,
    StartProcessors, StopProcessors,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The processor option that holds where an egg serves its metrics ("host:port").
pub const HTTP_ENDPOINT: &str = "http_endpoint";

/// A processor waits for its egg.
const NEW: &str = "NEW";
/// A processor's egg is serving.
const RUNNING: &str = "RUNNING";
/// A processor's egg exited or was stopped.
const STOPPED: &str = "STOPPED";

/// The most egg processes a session may ask for per node.
const MAX_PROCESSORS_PER_NODE: u32 = 256;

/// How many eggs of `processor_type` a session that asked for `asked` per node (0: the
/// default) gets on a node of `cpus` CPUs: Python eggs default to one per CPU (or
/// `session.python_processors_per_node`), Rust eggs to `session.processors_per_node`.
fn processors_on(
    asked: u32,
    processor_type: &str,
    defaults: &SessionConfig,
    cpus: u32,
) -> Result<u32> {
    let (n, from) = match asked {
        0 if processor_type == processor::PYTHON_EGG_PAIR => {
            match defaults.python_processors_per_node {
                0 => (u64::from(cpus.max(1)), "the node's CPU count"),
                n => (n, "session.python_processors_per_node"),
            }
        }
        0 => (defaults.processors_per_node, "session.processors_per_node"),
        n => (u64::from(n), "processors_per_node"),
    };
    match u32::try_from(n) {
        Ok(n) if (1..=MAX_PROCESSORS_PER_NODE).contains(&n) => Ok(n),
        _ => Err(CmError::Invalid(format!(
            "{from} must be between 1 and {MAX_PROCESSORS_PER_NODE}, not {n}"
        ))),
    }
}

impl Cluster {
    /// Starts a session and waits until it is ACTIVE; an error with the reason otherwise.
    pub async fn create_session(
        self: &Arc<Self>,
        req: CreateSessionRequest,
    ) -> Result<SessionMeta> {
        let defaults = &self.config.session;
        let timeout = Duration::from_millis(match req.start_timeout_ms {
            0 => defaults.start_timeout_ms,
            t => t,
        });
        let lease = Duration::from_millis(match req.lease_ms {
            0 => defaults.lease_ms,
            t => t,
        });
        let id = if req.session_id.is_empty() {
            format!(
                "session_{}_{}",
                now_ms(),
                self.next_session.fetch_add(1, Ordering::Relaxed)
            )
        } else {
            validate_name("session id", &req.session_id)?;
            req.session_id.clone()
        };
        let nodes = self.nodes().alive();
        if nodes.is_empty() {
            return Err(CmError::Unavailable(
                "no live node manager to start processors on; start `eggroll nodemanager` on a machine and check `eggroll node list`".into(),
            ));
        }
        let processor_type =
            eggroll_core::processor::from_options(&req.options).map_err(CmError::Invalid)?;
        let mut processors = Vec::new();
        for node in &nodes {
            let per_node = processors_on(
                req.processors_per_node,
                processor_type,
                defaults,
                node.registration.cpus,
            )?;
            for _ in 0..per_node {
                processors.push(Processor {
                    id: self.next_processor.fetch_add(1, Ordering::Relaxed),
                    server_node_id: node.registration.node_id,
                    processor_type: processor_type.into(),
                    status: NEW.into(),
                    ..Default::default()
                });
            }
        }
        let mut meta = SessionMeta {
            id: id.clone(),
            name: req.name.clone(),
            processors,
            options: req.options.clone(),
            created_ms: now_ms(),
            updated_ms: now_ms(),
            ..Default::default()
        };
        meta.set_status(SessionStatus::New);
        {
            let mut sessions = self.sessions();
            if let Some(existing) = sessions.get(&id) {
                if existing.meta.status() == SessionStatus::Active {
                    return Ok(existing.meta.clone());
                }
                return Err(CmError::State(format!(
                    "session {id} already exists and is {}; pick another id",
                    existing.meta.status().as_str_name()
                )));
            }
            sessions.insert(id.clone(), SessionEntry::new(meta.clone(), lease));
        }
        self.persist(&id).await;
        let span = tracing::info_span!("session", session = %id);
        async {
            tracing::info!(
                nodes = nodes.len(),
                processors = meta.processors.len(),
                "starting session"
            );

            // Ask every node at once; the first refusal fails the session.
            let mut starts = tokio::task::JoinSet::new();
            for node in &nodes {
                let node_id = node.registration.node_id;
                let req = StartProcessors {
                    session_id: id.clone(),
                    processors: meta
                        .processors
                        .iter()
                        .filter(|p| p.server_node_id == node_id)
                        .cloned()
                        .collect(),
                    cluster_manager: self.address.clone(),
                };
                let this = self.clone();
                let address = node.address();
                starts.spawn(async move {
                    let mut client = this.node_client(node_id).await?;
                    client.start(req).await.map_err(|s| {
                        format!(
                            "node manager {node_id} at {address} could not start processors: {}",
                            s.message()
                        )
                    })?;
                    Ok::<(), String>(())
                });
            }
            while let Some(res) = starts.join_next().await {
                let failure = match res {
                    Ok(Ok(())) => None,
                    Ok(Err(reason)) => Some(reason),
                    Err(e) => Some(format!("starting processors failed: {e}")),
                };
                if let Some(reason) = failure {
                    self.end_session(&id, SessionStatus::Error, &reason, true)
                        .await;
                    return Err(CmError::State(format!(
                        "session {id} failed to start: {reason}"
                    )));
                }
            }
            self.wait_started(&id, timeout).await
        }
        .instrument(span)
        .await
    }

    /// Waits until the session leaves NEW, or fails it when `timeout` passes.
    async fn wait_started(&self, id: &str, timeout: Duration) -> Result<SessionMeta> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let meta = self.session(id)?;
            match meta.status() {
                SessionStatus::Active => return Ok(meta),
                SessionStatus::New => {}
                other => {
                    return Err(CmError::State(format!(
                        "session {id} failed to start ({}): {}",
                        other.as_str_name(),
                        meta.reason
                    )))
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let missing: Vec<String> = meta
                    .processors
                    .iter()
                    .filter(|p| p.status == NEW)
                    .map(|p| {
                        let node = self
                            .nodes()
                            .get(p.server_node_id)
                            .map(|n| n.address())
                            .unwrap_or_default();
                        format!("processor {} on node {} ({node})", p.id, p.server_node_id)
                    })
                    .collect();
                let reason = format!(
                    "did not start within {} ms: {} never reported ready; check the node managers' logs",
                    timeout.as_millis(),
                    missing.join(", ")
                );
                self.end_session(id, SessionStatus::Error, &reason, true)
                    .await;
                return Err(CmError::State(format!("session {id} {reason}")));
            }
        }
    }

    /// An egg reports its endpoints; the session turns ACTIVE when every egg has.
    pub async fn report_ready(&self, r: ProcessorReady) -> Result<()> {
        {
            let mut sessions = self.sessions();
            let entry = sessions
                .get_mut(&r.session_id)
                .ok_or_else(|| CmError::NoSuchSession(r.session_id.clone()))?;
            if !entry.running() {
                return Err(CmError::State(format!(
                    "session {} is {}; the egg should exit",
                    r.session_id,
                    entry.meta.status().as_str_name()
                )));
            }
            let p = entry
                .meta
                .processors
                .iter_mut()
                .find(|p| p.id == r.processor_id)
                .ok_or_else(|| {
                    CmError::Invalid(format!(
                        "session {} has no processor {}",
                        r.session_id, r.processor_id
                    ))
                })?;
            p.command_endpoint = r.endpoint.clone();
            p.transfer_endpoint = r.endpoint.clone();
            p.pid = r.pid;
            p.status = RUNNING.into();
            if !r.http_endpoint.is_empty() {
                p.options
                    .insert(HTTP_ENDPOINT.into(), r.http_endpoint.clone());
            }
            if entry.meta.processors.iter().all(|p| p.status == RUNNING) {
                entry.meta.set_status(SessionStatus::Active);
                tracing::info!(session = %r.session_id, "session active");
            }
            entry.meta.updated_ms = now_ms();
        }
        self.persist(&r.session_id).await;
        self.changed.notify_waiters();
        Ok(())
    }

    /// A node manager reports an egg that exited on its own: its session goes to ERROR.
    pub async fn report_exit(&self, e: ProcessorExited) -> Result<()> {
        let reason = {
            let mut sessions = self.sessions();
            let Some(entry) = sessions.get_mut(&e.session_id) else {
                return Ok(());
            };
            if let Some(p) = entry
                .meta
                .processors
                .iter_mut()
                .find(|p| p.id == e.processor_id)
            {
                p.status = STOPPED.into();
            }
            if !entry.running() {
                return Ok(());
            }
            let node = self
                .nodes()
                .get(e.node_id)
                .map(|n| n.address())
                .unwrap_or_default();
            let mut reason = format!(
                "processor {} on node {} ({node}) exited: {}",
                e.processor_id, e.node_id, e.status
            );
            if !e.log_tail.trim().is_empty() {
                reason.push_str("; its log ends with:\n");
                reason.push_str(e.log_tail.trim_end());
            }
            reason
        };
        tracing::warn!(session = %e.session_id, "{reason}");
        self.end_session(&e.session_id, SessionStatus::Error, &reason, true)
            .await;
        Ok(())
    }

    /// Fails the running sessions that have processors on a lost node.
    pub async fn fail_sessions_on_node(&self, node_id: u64, reason: &str) {
        let hit: Vec<String> = self
            .sessions()
            .values()
            .filter(|s| s.running() && s.nodes().contains(&node_id))
            .map(|s| s.meta.id.clone())
            .collect();
        for id in hit {
            self.end_session(&id, SessionStatus::Error, reason, true)
                .await;
        }
    }

    /// Stops the sessions whose client stopped renewing them.
    pub async fn expire_leases(&self) {
        let expired: Vec<(String, Duration)> = self
            .sessions()
            .values()
            .filter(|s| {
                s.meta.status() == SessionStatus::Active
                    && !s.lease.is_zero()
                    && s.renewed.elapsed() > s.lease
            })
            .map(|s| (s.meta.id.clone(), s.lease))
            .collect();
        for (id, lease) in expired {
            let reason = format!(
                "its client stopped renewing it for {} ms (the lease); the eggs were stopped",
                lease.as_millis()
            );
            tracing::info!(session = %id, "{reason}");
            self.end_session(&id, SessionStatus::Closed, &reason, false)
                .await;
        }
    }

    /// A session by id.
    pub fn session(&self, id: &str) -> Result<SessionMeta> {
        self.sessions()
            .get(id)
            .map(|s| s.meta.clone())
            .ok_or_else(|| CmError::NoSuchSession(id.into()))
    }

    /// Every session, newest first.
    pub fn list_sessions(&self) -> Vec<SessionMeta> {
        let mut all: Vec<_> = self.sessions().values().map(|s| s.meta.clone()).collect();
        all.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.id.cmp(&b.id)));
        all
    }

    /// Renews a session's lease; answers its state.
    pub fn keep_alive(&self, id: &str) -> Result<SessionMeta> {
        let mut sessions = self.sessions();
        let entry = sessions
            .get_mut(id)
            .ok_or_else(|| CmError::NoSuchSession(id.into()))?;
        entry.renewed = Instant::now();
        Ok(entry.meta.clone())
    }

    /// Stops (or kills) a session at a client's or operator's request.
    pub async fn stop_session(&self, id: &str, kill: bool) -> Result<SessionMeta> {
        let status = if kill {
            SessionStatus::Killed
        } else {
            SessionStatus::Closed
        };
        let running = self
            .sessions()
            .get(id)
            .map(|s| s.running())
            .ok_or_else(|| CmError::NoSuchSession(id.into()))?;
        if running {
            let reason = if kill {
                "killed on request"
            } else {
                "stopped on request"
            };
            self.end_session(id, status, reason, kill).await;
        }
        self.session(id)
    }

    /// Moves a running session to a final state and stops its eggs on every node.
    pub(crate) async fn end_session(
        &self,
        id: &str,
        status: SessionStatus,
        reason: &str,
        kill: bool,
    ) {
        let nodes = {
            let mut sessions = self.sessions();
            let Some(entry) = sessions.get_mut(id) else {
                return;
            };
            if !entry.running() {
                return;
            }
            entry.meta.set_status(status);
            entry.meta.reason = reason.to_string();
            entry.meta.updated_ms = now_ms();
            for p in &mut entry.meta.processors {
                p.status = STOPPED.into();
            }
            entry.nodes()
        };
        self.persist(id).await;
        self.changed.notify_waiters();
        for node_id in nodes {
            // A lost node's eggs exit on their own when their node manager's pipe closes.
            let alive = self
                .nodes()
                .get(node_id)
                .is_some_and(|n| n.status == crate::nodes::ALIVE);
            if !alive {
                continue;
            }
            let req = StopProcessors {
                session_id: id.to_string(),
                kill,
            };
            match self.node_client(node_id).await {
                Ok(mut c) => {
                    if let Err(s) = c.stop(req).await {
                        tracing::warn!(session = %id, node = node_id, "stopping processors failed: {}", s.message());
                    }
                }
                Err(e) => tracing::warn!(session = %id, node = node_id, "{e}"),
            }
        }
    }

    async fn persist(&self, id: &str) {
        let Ok(meta) = self.session(id) else { return };
        if let Err(e) = self.meta.put("session", id, &meta).await {
            tracing::error!(session = %id, "cannot record the session: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_eggs_default_to_one_per_cpu_and_rust_eggs_to_the_configured_count() {
        let on = |asked, ty, d: &SessionConfig, cpus| processors_on(asked, ty, d, cpus).unwrap();
        let mut d = SessionConfig::default();
        assert_eq!(on(0, processor::PYTHON_EGG_PAIR, &d, 2), 2);
        assert_eq!(on(0, processor::PYTHON_EGG_PAIR, &d, 16), 16);
        // A node that reports no CPUs still gets an egg.
        assert_eq!(on(0, processor::PYTHON_EGG_PAIR, &d, 0), 1);
        assert_eq!(on(0, processor::EGG_PAIR, &d, 2), 4);
        // What a session asks for wins over either default.
        assert_eq!(on(3, processor::PYTHON_EGG_PAIR, &d, 2), 3);
        assert_eq!(on(3, processor::EGG_PAIR, &d, 2), 3);
        d.python_processors_per_node = 5;
        d.processors_per_node = 7;
        assert_eq!(on(0, processor::PYTHON_EGG_PAIR, &d, 2), 5);
        assert_eq!(on(0, processor::EGG_PAIR, &d, 2), 7);
    }

    #[test]
    fn a_count_out_of_range_is_refused_naming_where_it_came_from() {
        let mut d = SessionConfig::default();
        let e = processors_on(300, processor::EGG_PAIR, &d, 2).unwrap_err();
        assert!(
            e.to_string()
                .contains("processors_per_node must be between 1 and 256, not 300"),
            "{e}"
        );
        d.processors_per_node = 0;
        let e = processors_on(0, processor::EGG_PAIR, &d, 2).unwrap_err();
        assert!(e.to_string().contains("session.processors_per_node"), "{e}");
        d.python_processors_per_node = 1 << 40;
        let e = processors_on(0, processor::PYTHON_EGG_PAIR, &d, 2).unwrap_err();
        assert!(
            e.to_string().contains("session.python_processors_per_node"),
            "{e}"
        );
    }
}
