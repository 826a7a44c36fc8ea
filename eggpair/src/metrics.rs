//! What an egg counts for Prometheus: tasks by operation and outcome, task latency, bytes
//! read and written by transfers, and its memory budget and spills.

use crate::catalog::Stores;
use eggroll_core::ops_http::{latency_buckets, OpsView};
use eggroll_proto::meta::job::Op;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use std::sync::Arc;

/// Every figure of one egg.
pub struct EggMetrics {
    registry: Registry,
    tasks: IntCounterVec,
    task_seconds: HistogramVec,
    /// Bytes of pairs sent to readers (scans of partitions).
    pub read_bytes: IntCounter,
    /// Bytes of pairs received and stored (puts and shuffles).
    pub written_bytes: IntCounter,
    spilled_bytes: IntCounter,
    spilled_partitions: IntCounter,
    memory_used: IntGauge,
    memory_limit: IntGauge,
}

/// The name of a task's operation, as its metrics label it.
pub fn op_name(op: Option<&Op>) -> &'static str {
    match op {
        Some(Op::MapReduce(_)) => "map_reduce",
        Some(Op::Merge(_)) => "merge",
        Some(Op::Aggregate(_)) => "aggregate",
        Some(Op::Take(_)) => "take",
        Some(Op::Count(_)) => "count",
        Some(Op::Destroy(_)) => "destroy",
        Some(Op::Compact(_)) => "compact",
        Some(Op::Push(_)) => "push_to_rollsite",
        Some(Op::MapToCaller(_)) => "map_to_caller",
        None => "none",
    }
}

impl EggMetrics {
    /// Empty figures of processor `processor` of `session`, under `eggroll_egg_`.
    pub fn new(session: &str, processor: u64) -> Self {
        let labels = std::collections::HashMap::from([
            ("session".to_string(), session.to_string()),
            ("processor".to_string(), processor.to_string()),
        ]);
        let registry =
            Registry::new_custom(Some("eggroll_egg".into()), Some(labels)).unwrap_or_default();
        let reg = |m: Box<dyn prometheus::core::Collector>| {
            let _ = registry.register(m);
        };
        let tasks = IntCounterVec::new(
            Opts::new("tasks_total", "Tasks run, by operation and outcome."),
            &["op", "outcome"],
        )
        .unwrap_or_else(|e| panic!("metric tasks_total is malformed: {e}"));
        reg(Box::new(tasks.clone()));
        let task_seconds = HistogramVec::new(
            HistogramOpts::new("task_seconds", "Time a task took, by operation.")
                .buckets(latency_buckets()),
            &["op"],
        )
        .unwrap_or_else(|e| panic!("metric task_seconds is malformed: {e}"));
        reg(Box::new(task_seconds.clone()));
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help)
                .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
            reg(Box::new(c.clone()));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help)
                .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
            reg(Box::new(g.clone()));
            g
        };
        Self {
            read_bytes: counter("read_bytes_total", "Bytes of pairs scanned out to readers."),
            written_bytes: counter("written_bytes_total", "Bytes of pairs received and stored."),
            spilled_bytes: counter(
                "spilled_bytes_total",
                "Bytes of in-memory partitions moved to disk past the memory budget.",
            ),
            spilled_partitions: counter(
                "spilled_partitions_total",
                "In-memory partitions moved to disk past the memory budget.",
            ),
            memory_used: gauge("memory_used_bytes", "Bytes held by in-memory partitions."),
            memory_limit: gauge(
                "memory_budget_bytes",
                "The memory budget of in-memory partitions; past it they spill.",
            ),
            registry,
            tasks,
            task_seconds,
        }
    }

    /// Counts a task of `op` that took `seconds`.
    pub fn task(&self, op: &str, ok: bool, seconds: f64) {
        let outcome = if ok { "ok" } else { "failed" };
        self.tasks.with_label_values(&[op, outcome]).inc();
        self.task_seconds.with_label_values(&[op]).observe(seconds);
    }
}

/// What an egg shows on its HTTP port.
pub struct EggView {
    /// Its figures.
    pub metrics: Arc<EggMetrics>,
    /// Its partitions, for the memory figures.
    pub stores: Arc<Stores>,
}

impl OpsView for EggView {
    fn ready(&self) -> std::result::Result<(), String> {
        Ok(())
    }

    fn metrics(&self) -> String {
        let m = &self.metrics;
        let u = self.stores.memory_usage();
        m.memory_used.set(u.used as i64);
        m.memory_limit.set(u.limit as i64);
        // The budget keeps the totals; the counters catch up to them.
        m.spilled_bytes
            .inc_by(u.spilled_bytes.saturating_sub(m.spilled_bytes.get()));
        m.spilled_partitions.inc_by(
            u.spilled_partitions
                .saturating_sub(m.spilled_partitions.get()),
        );
        eggroll_core::ops_http::encode(&m.registry)
    }
}
