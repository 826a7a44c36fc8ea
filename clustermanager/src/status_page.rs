//! The cluster manager's HTTP view: metrics of its nodes and sessions, a status page of
//! nodes, sessions (with why any failed), processors and tables, and Prometheus service
//! discovery of its node managers and eggs.

use crate::cluster::Cluster;
use crate::nodes::{ALIVE, LOST};
use crate::session::HTTP_ENDPOINT;
use eggroll_core::ops_http::{escape_html as esc, page, table, OpsView};
use eggroll_proto::meta::{SessionMeta, SessionStatus};
use prometheus::{GaugeVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::Arc;

/// What the cluster manager shows on its HTTP port.
pub struct ClusterView(pub Arc<Cluster>);

/// Session states, as metrics and the page name them.
const STATES: [SessionStatus; 5] = [
    SessionStatus::New,
    SessionStatus::Active,
    SessionStatus::Closed,
    SessionStatus::Killed,
    SessionStatus::Error,
];

fn running(s: &SessionMeta) -> bool {
    matches!(s.status(), SessionStatus::New | SessionStatus::Active)
}

impl OpsView for ClusterView {
    fn ready(&self) -> std::result::Result<(), String> {
        // It serves once its records are read back, which happens before this port opens.
        Ok(())
    }

    fn metrics(&self) -> String {
        let Ok(registry) = Registry::new_custom(Some("eggroll_clustermanager".into()), None) else {
            return String::new();
        };
        let reg = |m: Box<dyn prometheus::core::Collector>| {
            let _ = registry.register(m);
        };
        let vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).ok()?;
            reg(Box::new(g.clone()));
            Some(g)
        };
        let nodes = self.0.nodes().list();
        if let Some(g) = vec("nodes", "Registered node managers by state.", &["state"]) {
            for state in [ALIVE, LOST] {
                let n = nodes
                    .iter()
                    .filter(|n| n.node.as_ref().is_some_and(|x| x.status == state))
                    .count();
                g.with_label_values(&[state]).set(n as i64);
            }
        }
        let sessions = self.0.list_sessions();
        if let Some(g) = vec("sessions", "Sessions by state.", &["state"]) {
            for state in STATES {
                let n = sessions.iter().filter(|s| s.status() == state).count();
                g.with_label_values(&[state.as_str_name()]).set(n as i64);
            }
        }
        if let Some(g) = vec(
            "processors",
            "Egg-pair processors of running sessions, by state.",
            &["state"],
        ) {
            for s in sessions.iter().filter(|s| running(s)) {
                for p in &s.processors {
                    g.with_label_values(&[&p.status]).inc();
                }
            }
        }
        if let Ok(g) = GaugeVec::new(
            Opts::new(
                "session_start_time_seconds",
                "When each running session was created, in seconds since the Unix epoch.",
            ),
            &["session", "name"],
        ) {
            reg(Box::new(g.clone()));
            for s in sessions.iter().filter(|s| running(s)) {
                g.with_label_values(&[&s.id, &s.name])
                    .set(s.created_ms as f64 / 1000.0);
            }
        }
        if let Ok(g) = IntGauge::new("stores", "Stores (tables) whose metadata it keeps.") {
            reg(Box::new(g.clone()));
            g.set(self.0.catalog().list("*", "*").map_or(0, |l| l.len()) as i64);
        }
        eggroll_core::ops_http::encode(&registry)
    }

    fn status_page(&self) -> Option<String> {
        Some(render(&self.0))
    }

    fn targets(&self) -> Option<String> {
        Some(targets(&self.0))
    }
}

/// Prometheus HTTP service discovery: every node manager's and running egg's metrics port.
pub fn targets(cluster: &Cluster) -> String {
    let mut groups = Vec::new();
    for n in cluster.nodes().alive() {
        let r = &n.registration;
        if r.http_port == 0 {
            continue;
        }
        groups.push(serde_json::json!({
            "targets": [format!("{}:{}", r.host, r.http_port)],
            "labels": {"role": "nodemanager", "node": r.node_id.to_string()},
        }));
    }
    for s in cluster.list_sessions().iter().filter(|s| running(s)) {
        for p in &s.processors {
            if let Some(ep) = p.options.get(HTTP_ENDPOINT) {
                groups.push(serde_json::json!({
                    "targets": [ep],
                    "labels": {"role": "egg", "session": s.id, "processor": p.id.to_string()},
                }));
            }
        }
    }
    serde_json::Value::Array(groups).to_string()
}

fn when(ms: u64) -> String {
    let s = ms / 1000;
    let (d, rem) = (s / 86_400, s % 86_400);
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let z = d as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The whole page.
pub fn render(cluster: &Cluster) -> String {
    let mut body = format!(
        "<p>Cluster manager at <code>{}</code> · data dir <code>{}</code></p>",
        esc(&cluster.address),
        esc(&cluster.config.data_dir.display().to_string())
    );
    let rows: Vec<Vec<String>> = cluster
        .nodes()
        .list()
        .into_iter()
        .map(|n| {
            let node = n.node.clone().unwrap_or_default();
            let state = if node.status == ALIVE {
                format!("<span class=\"ok\">{}</span>", esc(&node.status))
            } else {
                format!("<span class=\"bad\">{}</span>", esc(&node.status))
            };
            let seen = if n.last_seen_ms == u64::MAX {
                "not since this cluster manager started".to_string()
            } else {
                format!("{:.1} s ago", n.last_seen_ms as f64 / 1000.0)
            };
            vec![
                node.id.to_string(),
                esc(&format!("{}:{}", node.host, node.port)),
                state,
                n.cpus.to_string(),
                format!(
                    "{} of {} free",
                    gib(n.memory_available_bytes),
                    gib(n.memory_bytes)
                ),
                format!("{:.2}", n.load),
                n.running_processors.to_string(),
                esc(&seen),
            ]
        })
        .collect();
    body.push_str("<h2>Nodes</h2>");
    body.push_str(&table(
        &[
            "id",
            "address",
            "state",
            "cpus",
            "memory",
            "load",
            "eggs",
            "last heartbeat",
        ],
        &rows,
        "No node manager has registered. Start `eggroll nodemanager` on each machine.",
    ));

    let sessions = cluster.list_sessions();
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            let status = s.status().as_str_name();
            let class = match s.status() {
                SessionStatus::Error | SessionStatus::Killed => "bad",
                SessionStatus::Active => "ok",
                _ => "muted",
            };
            vec![
                esc(&s.id),
                esc(&s.name),
                format!("<span class=\"{class}\">{status}</span>"),
                s.processors.len().to_string(),
                esc(&when(s.created_ms)),
                if s.reason.is_empty() {
                    String::new()
                } else {
                    format!("<span class=\"{class}\">{}</span>", esc(&s.reason))
                },
            ]
        })
        .collect();
    body.push_str("<h2>Sessions</h2>");
    body.push_str(&table(
        &[
            "id",
            "name",
            "state",
            "processors",
            "created",
            "why it ended",
        ],
        &rows,
        "No session yet.",
    ));

    let mut rows = Vec::new();
    for s in sessions.iter().filter(|s| running(s)) {
        for p in &s.processors {
            rows.push(vec![
                esc(&s.id),
                p.id.to_string(),
                p.server_node_id.to_string(),
                esc(&p.processor_type),
                esc(&p.status),
                esc(&p.command_endpoint),
                if p.pid == 0 {
                    String::new()
                } else {
                    p.pid.to_string()
                },
            ]);
        }
    }
    body.push_str("<h2>Processors of running sessions</h2>");
    body.push_str(&table(
        &[
            "session",
            "processor",
            "node",
            "type",
            "state",
            "endpoint",
            "pid",
        ],
        &rows,
        "No session is running.",
    ));

    let stores = cluster.catalog().list("*", "*").unwrap_or_default();
    let rows: Vec<Vec<String>> = stores
        .iter()
        .map(|s| {
            let l = s.locator.clone().unwrap_or_default();
            vec![
                esc(&l.namespace),
                esc(&l.name),
                esc(l.store_type().as_str_name()),
                l.total_partitions.to_string(),
            ]
        })
        .collect();
    body.push_str("<h2>Tables</h2>");
    body.push_str(&table(
        &["namespace", "name", "store type", "partitions"],
        &rows,
        "No persistent table yet.",
    ));
    page("eggroll-rs cluster manager", &body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(super::when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::when(1_764_892_800_000), "2025-12-05 00:00:00 UTC");
        assert_eq!(
            super::when(951_782_400_000 + 3_661_000),
            "2000-02-29 01:01:01 UTC"
        );
    }
}
