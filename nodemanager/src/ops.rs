//! The node manager's HTTP view: readiness (registered with its cluster manager) and the
//! metrics of its eggs, read from `/proc` at each scrape.

use crate::processes::Supervisor;
use eggroll_core::ops_http::OpsView;
use prometheus::{GaugeVec, IntGauge, Opts, Registry};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, fixed by the kernel ABI).
const TICKS: f64 = 100.0;

/// What the node manager shows on its HTTP port.
pub struct NodeView {
    /// Its eggs.
    pub supervisor: Supervisor,
    /// Its node id.
    pub node_id: u64,
    /// Set once the cluster manager accepted its registration.
    pub registered: Arc<AtomicBool>,
}

/// CPU seconds (user and system) and resident bytes of process `pid`, if it is alive.
pub fn usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Some((ticks / TICKS, rss_kb * 1024))
}

impl OpsView for NodeView {
    fn ready(&self) -> std::result::Result<(), String> {
        if self.registered.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("not registered with the cluster manager yet".into())
        }
    }

    fn metrics(&self) -> String {
        let node = self.node_id.to_string();
        let labels = std::collections::HashMap::from([("node".to_string(), node)]);
        let Ok(registry) = Registry::new_custom(Some("eggroll_nodemanager".into()), Some(labels))
        else {
            return String::new();
        };
        let eggs = self.supervisor.eggs();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).ok()?;
            registry.register(Box::new(g.clone())).ok()?;
            Some(g)
        };
        if let Some(g) = gauge("eggs", "Egg-pair processes running on this node.") {
            g.set(eggs.len() as i64);
        }
        let (spares, ready) = self.supervisor.spare_counts();
        if let Some(g) = gauge("spare_eggs", "Warm Python eggs waiting for a session.") {
            g.set(spares as i64);
        }
        if let Some(g) = gauge(
            "spare_eggs_ready",
            "Warm Python eggs that have imported their modules.",
        ) {
            g.set(ready as i64);
        }
        let vec = |name: &str, help: &str| {
            let g = GaugeVec::new(Opts::new(name, help), &["session", "processor"]).ok()?;
            registry.register(Box::new(g.clone())).ok()?;
            Some(g)
        };
        let cpu = vec(
            "egg_cpu_seconds",
            "CPU time (user and system) an egg has used since it started.",
        );
        let rss = vec("egg_resident_bytes", "Resident memory of an egg.");
        for (session, processor, pid) in eggs {
            let Some((seconds, bytes)) = usage(pid) else {
                continue;
            };
            let labels = [session.as_str(), &processor.to_string()];
            if let Some(c) = &cpu {
                c.with_label_values(&labels).set(seconds);
            }
            if let Some(r) = &rss {
                r.with_label_values(&labels).set(bytes as f64);
            }
        }
        eggroll_core::ops_http::encode(&registry)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_usage() {
        let (cpu, rss) = super::usage(std::process::id()).expect("this process is alive");
        assert!(cpu >= 0.0);
        assert!(rss > 1 << 20, "a test process holds more than 1 MiB: {rss}");
        assert!(super::usage(u32::MAX).is_none());
    }
}
