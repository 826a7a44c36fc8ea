//! The federation context: one session, one party, talking to its party's roll-site.

use crate::error::{Error, Result};
use crate::link::{Link, LocalRollsite};
use crate::options::FederationOptions;
use crate::party::Party;
use eggroll_core::sync::Mutex;
use eggroll_core::transfer::{check_batch_size, TransferKey, CONNECTION_WINDOW, STREAM_WINDOW};
use eggroll_eggpair::push::GrpcTarget;
use eggroll_proto::proxy::Packet;
use eggroll_proto::transfer::RollSiteHeader;
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

pub(crate) struct Inner {
    pub(crate) session: String,
    pub(crate) me: Party,
    rollsite: String,
    /// The roll-site's address as a cluster's eggs reach it (they push tables themselves).
    pub(crate) egg_rollsite: String,
    pub(crate) link: Link,
    pub(crate) opts: FederationOptions,
    /// The parties this context exchanged with: they get its heartbeats.
    pub(crate) peers: Mutex<Vec<Party>>,
    /// Wakes the heartbeats when a party joins `peers`.
    pub(crate) new_peer: Arc<tokio::sync::Notify>,
}

/// A federation context: one session, one party, talking to its party's roll-site. Async:
/// algorithm code uses [`crate::BlockingFederation`], which wraps it.
#[derive(Clone)]
pub struct Federation {
    pub(crate) inner: Arc<Inner>,
}

fn check(session: &str, me: &Party, opts: &FederationOptions) -> Result<()> {
    if session.is_empty() || me.role.is_empty() || me.party_id.is_empty() {
        return Err(Error::Config(
            "a federation needs a session id, a role and a party id".into(),
        ));
    }
    check_batch_size(opts.batch_body_bytes as u64, opts.max_message_bytes as u64)
        .map_err(Error::Config)
}

impl Federation {
    /// A context for `session` as `me`, sending through the roll-site at `rollsite`
    /// (`host:port`). Connects lazily; call it on a tokio runtime (or inside one entered).
    pub fn connect(
        rollsite: &str,
        session: &str,
        me: Party,
        opts: FederationOptions,
    ) -> Result<Self> {
        check(session, &me, &opts)?;
        let channel = eggroll_core::channel::endpoint(rollsite)?
            .connect_timeout(opts.connect_timeout)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let link = Link::Grpc(GrpcTarget {
            channel,
            max_message: opts.max_message_bytes,
        });
        Ok(Self::started(Inner {
            session: session.into(),
            link,
            rollsite: rollsite.into(),
            egg_rollsite: rollsite.into(),
            me,
            opts,
            peers: Mutex::default(),
            new_peer: Arc::default(),
        }))
    }

    /// A context that calls the roll-site `site` running in this process directly
    /// (standalone mode), sparing the hop to a local roll-site process. It holds the site
    /// weakly: once the site stops, calls fail as unavailable.
    pub fn in_process<S: LocalRollsite>(
        site: &Arc<S>,
        session: &str,
        me: Party,
        opts: FederationOptions,
    ) -> Result<Self> {
        check(session, &me, &opts)?;
        let addr = site.reachable_addr();
        let site: Arc<dyn LocalRollsite> = site.clone();
        Ok(Self::started(Inner {
            session: session.into(),
            link: Link::InProcess(Arc::downgrade(&site)),
            rollsite: format!("{addr} (in process)"),
            egg_rollsite: addr,
            me,
            opts,
            peers: Mutex::default(),
            new_peer: Arc::default(),
        }))
    }

    /// The session id.
    pub fn session(&self) -> &str {
        &self.inner.session
    }

    /// This party.
    pub fn me(&self) -> &Party {
        &self.inner.me
    }

    /// The key of the transfer `name`/`tag` from `src` to `dst` in this session.
    pub(crate) fn key(&self, name: &str, tag: &str, src: &Party, dst: &Party) -> TransferKey {
        self.met(src);
        self.met(dst);
        TransferKey {
            session: self.inner.session.clone(),
            name: name.into(),
            tag: tag.into(),
            src_role: src.role.clone(),
            src_party: src.party_id.clone(),
            dst_role: dst.role.clone(),
            dst_party: dst.party_id.clone(),
        }
    }

    /// Runs `read` again while it fails because the roll-site went away or restarted (what
    /// the roll-site stored is still there), waiting as the retry policy says.
    pub(crate) async fn reread<T, F, Fut>(&self, read: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let log = |attempt, wait: Duration, e: &Error| {
            tracing::warn!(session = %self.inner.session, attempt,
                wait_ms = wait.as_millis() as u64, error = %e,
                "get cut off by the roll-site; reading it again");
        };
        self.inner
            .opts
            .retry()
            .run_while(read, Error::is_unavailable, log)
            .await
            .map_err(|(e, _)| e)
    }

    /// Names the local roll-site in errors.
    pub(crate) fn local_hop(&self) -> String {
        format!("local roll-site {}", self.inner.rollsite)
    }

    /// The one log line of a remote: its outcome and the bytes it sent to each party.
    pub(crate) fn log_remote(
        &self,
        name: &str,
        tag: &str,
        parties: &[Party],
        started: Instant,
        result: &Result<u64>,
    ) {
        let dst: Vec<String> = parties.iter().map(Party::to_string).collect();
        let (bytes, outcome) = match result {
            Ok(b) => (*b, "ok".to_string()),
            Err(e) => (0, e.to_string()),
        };
        tracing::info!(session = %self.inner.session, name, tag, src = %self.inner.me,
            dst = %dst.join(","), bytes, ms = started.elapsed().as_millis() as u64,
            outcome = %outcome, "remote");
    }
}

/// Waits for one job of `jobs`; `T::default()` when there is none.
pub(crate) async fn join_one<T: Default + 'static>(jobs: &mut JoinSet<Result<T>>) -> Result<T> {
    match jobs.join_next().await {
        Some(r) => r?,
        None => Ok(T::default()),
    }
}

/// The decoded header of a packet the roll-site sent.
pub(crate) fn received_header(p: &Packet) -> Result<RollSiteHeader> {
    let m = p
        .header
        .as_ref()
        .ok_or_else(|| Error::BadPacket("the roll-site sent a packet without a header".into()))?;
    RollSiteHeader::decode(&m.ext[..])
        .map_err(|e| Error::BadPacket(format!("the roll-site sent a bad header: {e}")))
}
