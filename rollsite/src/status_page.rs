//! The roll-site's HTTP view: readiness, metrics, and a status page of its routes, peers,
//! transfers in flight and recent failures.

use crate::metrics::PeerSeen;
use crate::site::Site;
use eggroll_core::ops_http::{escape_html as esc, page, table, OpsView};
use std::sync::Arc;
use std::time::SystemTime;

/// What the roll-site shows on its HTTP port.
pub struct SiteView(pub Arc<Site>);

impl OpsView for SiteView {
    fn ready(&self) -> std::result::Result<(), String> {
        if self.0.listen.get().is_none() {
            return Err("the roll-site has not bound its ports yet".into());
        }
        if *self.0.shutdown.borrow() {
            return Err("the roll-site is shutting down".into());
        }
        Ok(())
    }

    fn metrics(&self) -> String {
        self.0.metrics.encode()
    }

    fn status_page(&self) -> Option<String> {
        Some(render(&self.0))
    }
}

/// "12 s ago", "3 min ago": how long ago `at` was.
fn ago(at: SystemTime) -> String {
    let s = SystemTime::now()
        .duration_since(at)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// Seconds since the Unix epoch as UTC "HH:MM:SS".
fn clock(at: SystemTime) -> String {
    let s = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02} UTC",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}

fn bytes(n: u64) -> String {
    match n {
        0..=9_999 => format!("{n} B"),
        10_000..=9_999_999 => format!("{:.1} kB", n as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.2} GB", n as f64 / 1e9),
    }
}

/// The whole page.
pub fn render(site: &Site) -> String {
    let mut body = String::new();
    let listen = site
        .listen
        .get()
        .map(|l| {
            l.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "not bound yet".into());
    let routes = site.routes.table();
    body.push_str(&format!(
        "<p>Party <b>{}</b> · listening on {} · TLS {} · route table <code>{}</code></p>",
        esc(&site.party_id),
        esc(&listen),
        if site.tls.is_some() {
            "<span class=\"ok\">configured</span>"
        } else {
            "off"
        },
        esc(routes.source())
    ));
    if let Some(e) = site.routes.last_error() {
        body.push_str(&format!(
            "<p class=\"bad\">The last route table reload was refused: {}</p>",
            esc(&e)
        ));
    }

    let peers = site.metrics.peers();
    let mut rows = Vec::new();
    for (party, role, list) in routes.entries() {
        for r in list {
            let how = if r.is_polling {
                format!(
                    "polling ({})",
                    if site.hub.is_connected(party) {
                        "<span class=\"ok\">connected</span>"
                    } else {
                        "<span class=\"bad\">not connected</span>"
                    }
                )
            } else if r.use_ssl {
                "mutual TLS".into()
            } else {
                "plaintext".into()
            };
            rows.push(vec![
                esc(party),
                esc(role),
                if r.is_polling {
                    "—".into()
                } else {
                    esc(&r.address())
                },
                how,
                peer_cell(peers.get(party)),
            ]);
        }
    }
    body.push_str("<h2>Routes</h2>");
    body.push_str(&table(
        &["party", "role", "next hop", "link", "last contact"],
        &rows,
        "No routes: only this party is reachable. Set rollsite.route_table.",
    ));

    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|(party, seen)| {
            vec![
                esc(party),
                esc(&ago(seen.at)),
                if seen.tls { "mutual TLS" } else { "plaintext" }.into(),
                if seen.ok {
                    "<span class=\"ok\">ok</span>".into()
                } else {
                    "<span class=\"bad\">failed</span>".into()
                },
            ]
        })
        .collect();
    body.push_str("<h2>Peers</h2>");
    body.push_str(&table(
        &["party", "last contact", "link", "last outcome"],
        &rows,
        "No other party heard from or reached since the roll-site started.",
    ));

    let rows = site.metrics.with_in_flight(|f| {
        f.values()
            .map(|t| {
                vec![
                    esc(&t.key),
                    esc(&t.peer),
                    t.direction.as_str().into(),
                    format!(
                        "<span class=\"num\">{}</span>",
                        bytes(t.bytes.load(std::sync::atomic::Ordering::Relaxed))
                    ),
                    format!("{:.1} s", t.started.elapsed().as_secs_f64()),
                ]
            })
            .collect::<Vec<_>>()
    });
    body.push_str("<h2>Transfers in flight</h2>");
    body.push_str(&table(
        &[
            "transfer",
            "peer",
            "direction",
            "bytes so far",
            "running for",
        ],
        &rows,
        "No transfer under way.",
    ));

    let rows = site.metrics.with_failures(|f| {
        f.iter()
            .rev()
            .map(|x| {
                vec![
                    esc(&clock(x.at)),
                    esc(&x.peer),
                    x.direction.as_str().into(),
                    esc(&x.key),
                    format!("<span class=\"bad\">{}</span>", esc(&x.reason)),
                ]
            })
            .collect::<Vec<_>>()
    });
    body.push_str("<h2>Recent failures</h2>");
    body.push_str(&table(
        &["when", "peer", "direction", "transfer", "why"],
        &rows,
        "No transfer failed since the roll-site started.",
    ));
    page(
        &format!("eggroll-rs roll-site, party {}", site.party_id),
        &body,
    )
}

fn peer_cell(seen: Option<&PeerSeen>) -> String {
    match seen {
        None => "<span class=\"muted\">never</span>".into(),
        Some(s) if s.ok => format!("<span class=\"ok\">{}</span>", esc(&ago(s.at))),
        Some(s) => format!("<span class=\"bad\">failed {}</span>", esc(&ago(s.at))),
    }
}
