//! What a roll-site counts for Prometheus and its status page: transfers by peer party and
//! direction, the streams that carry them by outcome, their bytes and latency, retried pushes, route reloads and TLS
//! handshake failures; plus the transfers in flight, recent failures and when each peer was
//! last heard from.

use eggroll_core::ops_http::latency_buckets;
use eggroll_core::sync::Mutex;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Failures kept for the status page.
const RECENT_FAILURES: usize = 50;
/// Transfer keys remembered to count each transfer once, however many streams carry it.
const KEYS_REMEMBERED: usize = 100_000;

/// Which way a transfer goes through this roll-site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Delivered here, for this party.
    In,
    /// Sent by this party's own clients to another party.
    Out,
    /// Passing through (this roll-site is an exchange).
    Relay,
}

impl Direction {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Relay => "relay",
        }
    }
}

/// A transfer in flight, as the status page shows it.
pub struct InFlight {
    /// The transfer's roll-site key (session, parties, name).
    pub key: String,
    /// The other party.
    pub peer: String,
    /// Which way.
    pub direction: Direction,
    /// When it started.
    pub started: Instant,
    /// Bytes of data so far.
    pub bytes: Arc<AtomicU64>,
}

/// A transfer that failed, for the status page.
pub struct Failure {
    /// When it failed.
    pub at: SystemTime,
    /// The other party.
    pub peer: String,
    /// Which way.
    pub direction: Direction,
    /// The transfer's key.
    pub key: String,
    /// Why.
    pub reason: String,
}

/// When a peer party was last heard from or reached.
#[derive(Clone)]
pub struct PeerSeen {
    /// Last contact.
    pub at: SystemTime,
    /// Whether that contact was over mutual TLS.
    pub tls: bool,
    /// Whether it went well.
    pub ok: bool,
}

/// Every figure of one roll-site.
pub struct RollsiteMetrics {
    registry: Registry,
    transfers: IntCounterVec,
    streams: IntCounterVec,
    bytes: IntCounterVec,
    latency: HistogramVec,
    retried: IntCounterVec,
    route_reloads: IntCounterVec,
    tls_failures: IntCounterVec,
    in_flight_gauge: IntGauge,
    next_id: AtomicU64,
    in_flight: Mutex<BTreeMap<u64, InFlight>>,
    failures: Mutex<VecDeque<Failure>>,
    peers: Mutex<BTreeMap<String, PeerSeen>>,
    keys: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl RollsiteMetrics {
    /// Empty figures, registered under `eggroll_rollsite_`.
    pub fn new(party_id: &str) -> Self {
        let labels = std::collections::HashMap::from([("party".to_string(), party_id.to_string())]);
        let registry =
            Registry::new_custom(Some("eggroll_rollsite".into()), Some(labels)).unwrap_or_default();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let transfers = counter(
            "transfers_total",
            "Transfers (a named table or object from one party to another, carried by one or \
             more streams) by peer party and direction, counted at their first stream.",
            &["peer", "direction"],
        );
        let streams = counter(
            "streams_total",
            "Push streams and one-packet calls carrying transfers, by peer party, direction \
             and outcome.",
            &["peer", "direction", "outcome"],
        );
        let bytes = counter(
            "transfer_bytes_total",
            "Bytes of data in transfers, by peer party and direction.",
            &["peer", "direction"],
        );
        let retried = counter(
            "retried_total",
            "Batches that arrived again (a sender's retry) and were kept once.",
            &["peer"],
        );
        let route_reloads = counter(
            "route_reloads_total",
            "Reloads of the route table file, by outcome (a failed one keeps the old table).",
            &["outcome"],
        );
        let tls_failures = counter(
            "tls_handshake_failures_total",
            "TLS handshakes that failed: inbound (a peer we refused or that refused us on our \
             secure port) or outbound (to a next hop).",
            &["side"],
        );
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "transfer_seconds",
                "Time from a transfer's first packet to its acknowledgement.",
            )
            .buckets(latency_buckets()),
            &["peer", "direction"],
        )
        .unwrap_or_else(|e| panic!("metric transfer_seconds is malformed: {e}"));
        let _ = registry.register(Box::new(latency.clone()));
        let in_flight_gauge = IntGauge::new("transfers_in_flight", "Transfers under way now.")
            .unwrap_or_else(|e| panic!("metric transfers_in_flight is malformed: {e}"));
        let _ = registry.register(Box::new(in_flight_gauge.clone()));
        for outcome in ["ok", "failed"] {
            route_reloads.with_label_values(&[outcome]);
        }
        for side in ["inbound", "outbound"] {
            tls_failures.with_label_values(&[side]);
        }
        Self {
            registry,
            transfers,
            streams,
            bytes,
            latency,
            retried,
            route_reloads,
            tls_failures,
            in_flight_gauge,
            next_id: AtomicU64::new(0),
            in_flight: Mutex::new(BTreeMap::new()),
            failures: Mutex::new(VecDeque::new()),
            peers: Mutex::new(BTreeMap::new()),
            keys: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// Starts counting a transfer with `peer`; it counts as failed unless
    /// [`Transfer::finish`] says otherwise.
    pub fn start(self: &Arc<Self>, peer: &str, direction: Direction, key: &str) -> Transfer {
        if self.first_stream(key) {
            self.transfers
                .with_label_values(&[peer, direction.as_str()])
                .inc();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = Arc::new(AtomicU64::new(0));
        self.in_flight.lock().insert(
            id,
            InFlight {
                key: key.to_string(),
                peer: peer.to_string(),
                direction,
                started: Instant::now(),
                bytes: bytes.clone(),
            },
        );
        self.in_flight_gauge.inc();
        Transfer {
            metrics: self.clone(),
            id,
            peer: peer.to_string(),
            direction,
            key: key.to_string(),
            started: Instant::now(),
            bytes,
            done: false,
        }
    }

    /// Whether `key` is a transfer not seen before (the oldest keys are forgotten).
    fn first_stream(&self, key: &str) -> bool {
        let mut keys = self.keys.lock();
        let (set, order) = &mut *keys;
        if set.contains(key) {
            return false;
        }
        if order.len() == KEYS_REMEMBERED {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        set.insert(key.to_string());
        order.push_back(key.to_string());
        true
    }

    /// Notes contact with `peer` (a party id).
    pub fn contact(&self, peer: &str, tls: bool, ok: bool) {
        if peer.is_empty() {
            return;
        }
        self.peers.lock().insert(
            peer.to_string(),
            PeerSeen {
                at: SystemTime::now(),
                tls,
                ok,
            },
        );
    }

    /// Counts a push from `peer` that retries one that failed.
    pub fn retried(&self, peer: &str) {
        self.retried.with_label_values(&[peer]).inc();
    }

    /// Counts a route table reload.
    pub fn route_reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.route_reloads.with_label_values(&[outcome]).inc();
    }

    /// Counts a failed TLS handshake on `side` ("inbound" or "outbound").
    pub fn tls_failure(&self, side: &str) {
        self.tls_failures.with_label_values(&[side]).inc();
    }

    /// The text format of every figure.
    pub fn encode(&self) -> String {
        eggroll_core::ops_http::encode(&self.registry)
    }

    /// Calls `f` with the transfers in flight, oldest first.
    pub fn with_in_flight<R>(&self, f: impl FnOnce(&BTreeMap<u64, InFlight>) -> R) -> R {
        f(&self.in_flight.lock())
    }

    /// Calls `f` with the recent failures, newest last.
    pub fn with_failures<R>(&self, f: impl FnOnce(&VecDeque<Failure>) -> R) -> R {
        f(&self.failures.lock())
    }

    /// The peers heard from, by party id.
    pub fn peers(&self) -> BTreeMap<String, PeerSeen> {
        self.peers.lock().clone()
    }
}

/// One transfer being counted; dropping it unfinished counts a failure (a cancelled call).
pub struct Transfer {
    metrics: Arc<RollsiteMetrics>,
    id: u64,
    peer: String,
    direction: Direction,
    key: String,
    started: Instant,
    bytes: Arc<AtomicU64>,
    done: bool,
}

impl Transfer {
    /// Adds `n` bytes of data.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// The byte counter, for a stream adapter to add to.
    pub fn bytes_counter(&self) -> Arc<AtomicU64> {
        self.bytes.clone()
    }

    /// Ends the transfer: `Err(reason)` counts and records a failure.
    pub fn finish(mut self, outcome: std::result::Result<(), String>) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: std::result::Result<(), String>) {
        if self.done {
            return;
        }
        self.done = true;
        let m = &self.metrics;
        m.in_flight.lock().remove(&self.id);
        m.in_flight_gauge.dec();
        let dir = self.direction.as_str();
        let bytes = self.bytes.load(Ordering::Relaxed);
        m.bytes.with_label_values(&[&self.peer, dir]).inc_by(bytes);
        let label = if outcome.is_ok() { "ok" } else { "failed" };
        m.streams.with_label_values(&[&self.peer, dir, label]).inc();
        m.latency
            .with_label_values(&[&self.peer, dir])
            .observe(self.started.elapsed().as_secs_f64());
        if let Err(reason) = outcome {
            let mut failures = m.failures.lock();
            if failures.len() == RECENT_FAILURES {
                failures.pop_front();
            }
            failures.push_back(Failure {
                at: SystemTime::now(),
                peer: self.peer.clone(),
                direction: self.direction,
                key: self.key.clone(),
                reason,
            });
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.end(Err("the call was cancelled (the sender went away)".into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, prefix: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"))
    }

    #[test]
    fn transfers_count_by_outcome_with_bytes_and_failures() {
        let m = Arc::new(RollsiteMetrics::new("9999"));
        let t = m.start("10000", Direction::Out, "k1");
        t.add_bytes(100);
        assert_eq!(m.with_in_flight(|f| f.len()), 1);
        t.finish(Ok(()));
        let t = m.start("10000", Direction::Out, "k2");
        t.add_bytes(5);
        drop(t);
        // A second stream of k1: the same transfer.
        m.start("10000", Direction::Out, "k1").finish(Ok(()));
        m.route_reload(true);
        let text = m.encode();
        let ok = "eggroll_rollsite_streams_total{direction=\"out\",outcome=\"ok\",peer=\"10000\",party=\"9999\"}";
        let failed = "eggroll_rollsite_streams_total{direction=\"out\",outcome=\"failed\",peer=\"10000\",party=\"9999\"}";
        assert_eq!(sample(&text, ok), 2.0);
        assert_eq!(sample(&text, failed), 1.0);
        let transfers =
            "eggroll_rollsite_transfers_total{direction=\"out\",peer=\"10000\",party=\"9999\"}";
        assert_eq!(sample(&text, transfers), 2.0);
        assert_eq!(
            sample(
                &text,
                "eggroll_rollsite_transfer_bytes_total{direction=\"out\",peer=\"10000\",party=\"9999\"}"
            ),
            105.0
        );
        assert_eq!(sample(&text, "eggroll_rollsite_transfers_in_flight"), 0.0);
        assert_eq!(m.with_in_flight(|f| f.len()), 0);
        let reason = m.with_failures(|f| f.back().map(|f| f.reason.clone()));
        assert!(reason.unwrap().contains("cancelled"));
    }
}
