//! `eggroll ping <party>`: checks the route from this party's roll-site to another party hop
//! by hop, and names the hop that fails and why (see `eggroll_rollsite::ping`).

use clap::Args;
use eggroll_core::config::EggrollConfig;
use eggroll_rollsite::ping::{self, HopRecord, Outcome, Report};
use std::time::Duration;

/// Arguments of `eggroll ping`.
#[derive(Args)]
pub struct PingArgs {
    /// The party to reach.
    party: String,
    /// This party's roll-site ("host:port"); default: the config's rollsite host and port.
    #[arg(long)]
    rollsite: Option<String>,
    /// The role to address at that party (a route table may route roles apart).
    #[arg(long, default_value = "default")]
    role: String,
    /// How long the whole ping may take, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The local roll-site's address from config: a wildcard listen address is dialed on
/// loopback.
fn local_rollsite(config: &EggrollConfig) -> String {
    let host = match config.rollsite.host.trim() {
        "" | "0.0.0.0" => "127.0.0.1",
        "::" | "[::]" => "[::1]",
        h => h,
    };
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{}", config.rollsite.port)
    } else {
        format!("{host}:{}", config.rollsite.port)
    }
}

/// Pings, prints the report, and fails unless the party was reached.
pub fn run(args: PingArgs, config: EggrollConfig) -> Result<(), Box<dyn std::error::Error>> {
    let rollsite = args
        .rollsite
        .clone()
        .unwrap_or_else(|| local_rollsite(&config));
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let report =
        crate::client::runtime()?.block_on(ping::ping(&rollsite, &args.party, &args.role, timeout));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "ping party {} (role {}) through the roll-site at {rollsite}, timeout {} ms",
            args.party,
            args.role,
            timeout.as_millis()
        );
        print!("{}", render(&report, &args.party));
    }
    match &report.outcome {
        Outcome::Reached => Ok(()),
        Outcome::Failed { hop, reason, .. } => Err(format!(
            "party {} not reached: hop {hop} ({}) failed: {reason}",
            args.party,
            at(&report, *hop)
        )
        .into()),
        Outcome::NotEggrollRs { hop, .. } => Err(format!(
            "party {} not verified: hop {hop} ({}) is not an eggroll-rs roll-site",
            args.party,
            at(&report, *hop)
        )
        .into()),
    }
}

/// "peer roll-site 127.0.0.1:9370" for hop `n` (1-based).
fn at(report: &Report, n: usize) -> String {
    report
        .hops
        .get(n.wrapping_sub(1))
        .map(|h| format!("{} {}", h.role, h.address))
        .unwrap_or_default()
}

/// The table of hops and the closing lines.
pub fn render(report: &Report, party: &str) -> String {
    // The time of the call to hop k covers everything behind it, so the round trip from
    // here to hop k is the whole minus what lies behind k, and hop k's own share is its call
    // less the next one.
    let ms = |k: usize| report.hops.get(k).map_or(0.0, |h: &HopRecord| h.ms);
    let total = ms(0);
    let mut rows = vec![[
        "hop".to_string(),
        "role".into(),
        "party".into(),
        "address".into(),
        "TLS".into(),
        "rtt ms".into(),
        "hop ms".into(),
        "software".into(),
    ]];
    for (i, h) in report.hops.iter().enumerate() {
        let (rtt, own) = if h.reached {
            (
                format!("{:.1}", total - ms(i + 1)),
                format!("{:.1}", h.ms - ms(i + 1)),
            )
        } else {
            ("-".into(), "-".into())
        };
        let software = match (h.reached, h.software.is_empty()) {
            (false, _) => "-".to_string(),
            (true, true) => "not eggroll-rs".into(),
            (true, false) => h.software.clone(),
        };
        rows.push([
            (i + 1).to_string(),
            h.role.clone(),
            if h.party.is_empty() {
                "-".into()
            } else {
                h.party.clone()
            },
            h.address.clone(),
            h.link.to_string(),
            rtt,
            own,
            software,
        ]);
    }
    let mut width = [0usize; 8];
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (c, (cell, w)) in r.iter().zip(width).enumerate() {
            // Numbers right-aligned, words left-aligned.
            if matches!(c, 0 | 5 | 6) {
                line.push_str(&format!("{cell:>w$}  "));
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    match &report.outcome {
        Outcome::Reached => out.push_str(&format!(
            "party {party} reached in {} hop{}, {total:.1} ms round trip\n",
            report.hops.len(),
            if report.hops.len() == 1 { "" } else { "s" }
        )),
        Outcome::Failed {
            hop,
            reason,
            detail,
            check,
        } => {
            let link = report
                .hops
                .get(hop.wrapping_sub(1))
                .map(|h| h.link.to_string())
                .unwrap_or_default();
            out.push_str(&format!(
                "FAILED at hop {hop}, {} ({link}): {reason}\n  why: {detail}\n  check: {check}\n",
                at(report, *hop)
            ));
        }
        Outcome::NotEggrollRs { hop, answer } => out.push_str(&format!(
            "NOT VERIFIED past hop {hop}, {}: it answered, so it is reachable, but not as an \
             eggroll-rs roll-site does (an EggRoll roll-site, or an eggroll-rs from before \
             `eggroll ping`); the hops behind it were not checked\n  its answer: {answer}\n",
            at(report, *hop)
        )),
    }
    out
}
