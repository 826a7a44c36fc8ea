//! Signs of life: while a federation context lives, it tells every party it exchanged with,
//! every `heartbeat_interval`, through its roll-site. The roll-site of such a party fails a
//! get that waits on this one once these stop for its `liveness_timeout_ms`, naming this
//! party, instead of waiting for the idle timeout: a killed job is noticed in seconds.

use crate::client::{Federation, Inner};
use crate::party::Party;
use eggroll_core::transfer::{describe, HEARTBEAT_NAME, INTERVAL_OPTION, OBJECT, OP_HEARTBEAT};
use eggroll_proto::proxy::Packet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

impl Federation {
    /// The context of `inner`, its heartbeats started.
    pub(crate) fn started(inner: Inner) -> Self {
        let inner = Arc::new(inner);
        start(&inner);
        Self { inner }
    }

    /// Notes that this context exchanges with `party`: it gets our signs of life from now on.
    pub(crate) fn met(&self, party: &Party) {
        if *party == self.inner.me {
            return;
        }
        let mut peers = self.inner.peers.lock();
        if !peers.contains(party) {
            peers.push(party.clone());
            // Announce ourselves now: a job killed before its next tick is still known.
            self.inner.new_peer.notify_one();
        }
    }
}

/// Starts the heartbeats of `inner` on the runtime the caller is in (none outside one, or
/// with a zero interval); they end once the context is dropped.
fn start(inner: &Arc<Inner>) {
    let interval = inner.opts.heartbeat_interval;
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if interval.is_zero() {
        return;
    }
    // The task holds the context weakly (it ends once the context is dropped), and the
    // wake-up of a new peer apart from it.
    let (weak, new_peer) = (Arc::downgrade(inner), inner.new_peer.clone());
    rt.spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = new_peer.notified() => {}
            }
            let Some(inner) = weak.upgrade() else { break };
            let peers = inner.peers.lock().clone();
            let me = Federation { inner };
            let mut sends = JoinSet::new();
            for peer in peers {
                let me = me.clone();
                sends.spawn(async move { me.heartbeat(&peer, interval).await });
            }
            drop(me);
            while sends.join_next().await.is_some() {}
        }
    });
}

impl Federation {
    /// One heartbeat to `peer`; a failure is only logged (the next one may get through, and
    /// the peer's own liveness timeout is the judge).
    async fn heartbeat(&self, peer: &Party, interval: Duration) {
        let inner = &self.inner;
        let key = self.key(HEARTBEAT_NAME, "", &inner.me, peer);
        let mut h = key.header(OBJECT);
        h.options
            .insert(INTERVAL_OPTION.into(), interval.as_millis().to_string());
        let mut meta = key.metadata(&h);
        meta.operator = OP_HEARTBEAT.into();
        let call = inner.link.unary(Packet {
            header: Some(meta),
            body: None,
        });
        match tokio::time::timeout(interval, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(s)) => tracing::debug!(session = %inner.session, peer = %peer,
                error = %describe(&s), "a heartbeat did not get through"),
            Err(_) => tracing::debug!(session = %inner.session, peer = %peer,
                "a heartbeat took longer than its interval"),
        }
    }
}
