//! `eggroll ping`: checks the route to a party hop by hop and names the hop that fails.
//!
//! A ping is a unary call whose `Metadata.operator` is [`OP_PING`], addressed as data is
//! (`Metadata.dst`: the party and role), with its time budget in milliseconds in
//! `Metadata.conf.overallTimeout`. Every roll-site that gets one resolves the destination with
//! its route table as it would for data: its own party's ping ends there; any other goes on to
//! the next hop over the same channels, TLS settings and polling streams as data, so the ping
//! tests the real path. Each roll-site answers with a [`Report`] in the body (`Data.key`
//! [`REPORT_KEY`], a JSON value): its own record, then what its next hop answered, or that
//! hop's failure, classified ([`Reason`]). A failure on the way is an answer, not a gRPC error:
//! only a malformed ping gets one. A ping carries no `RollSiteHeader`, so no roll-site can
//! store it, and it passes the same checks as data (hop limit, TLS required by the source's
//! route, `permission.default_allow`) and no others.
//!
//! Every roll-site gives the next hop a little less time than it has itself, so the hop
//! nearest a silent one runs out first and says which it was.

use crate::error::{Error, Result};
use crate::forward::{client, hop_count, HOPS_HEADER, MAX_HOPS};
use crate::peer::Peer;
use crate::route::{Hop, Route};
use crate::site::Site;
use eggroll_core::transfer::{describe, destination, with_causes};
use eggroll_proto::proxy::{Conf, Data, Metadata, Packet, Topic};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};
use tonic::{Code, Request, Status};

pub use eggroll_core::transfer::OP_PING;

/// `Data.key` of the body of a ping's answer, whose value is a JSON [`Report`].
pub const REPORT_KEY: &str = "rs_ping_report";
/// What a roll-site of ours says it runs.
pub const SOFTWARE: &str = concat!("eggroll-rs ", env!("CARGO_PKG_VERSION"));
/// A ping's budget when it names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest budget a roll-site grants a ping.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// The shortest.
const MIN_TIMEOUT: Duration = Duration::from_millis(20);
/// Longest text a report keeps per field: another party writes these.
const MAX_TEXT: usize = 2048;

/// Role of the first roll-site of a route.
pub const LOCAL: &str = "local roll-site";
/// Role of a roll-site that forwarded the ping.
pub const EXCHANGE: &str = "exchange";
/// Role of the roll-site of the destination party.
pub const PEER: &str = "peer roll-site";

/// How a hop was reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// gRPC without TLS.
    #[default]
    Plaintext,
    /// gRPC over mutual TLS (the route's `use_ssl`).
    MutualTls,
    /// Down a polling stream that the hop holds open to its caller.
    Polling,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Link::Plaintext => "plaintext",
            Link::MutualTls => "mutual TLS",
            Link::Polling => "polling",
        })
    }
}

/// Why a hop failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Nothing listens at the address (connection refused).
    Refused,
    /// No answer within the ping's budget.
    TimedOut,
    /// The TLS handshake failed: a certificate was not trusted, or TLS is not set up.
    TlsRejected,
    /// The route table has no entry for the party (nor a default), or the route loops.
    NoRoute,
    /// The roll-site refused the ping as it would refuse data.
    PermissionDenied,
    /// Any other failure to reach the hop; the detail says what.
    Unreachable,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Refused => "refused",
            Reason::TimedOut => "timed out",
            Reason::TlsRejected => "TLS rejected",
            Reason::NoRoute => "no route",
            Reason::PermissionDenied => "permission denied",
            Reason::Unreachable => "unreachable",
        })
    }
}

/// One hop of a route, as the ping found it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HopRecord {
    /// [`LOCAL`], [`EXCHANGE`] or [`PEER`] (for a hop not reached: what its caller's route
    /// suggests).
    pub role: String,
    /// Its party, as it said; empty if it did not answer as an eggroll-rs roll-site.
    pub party: String,
    /// The address its caller dialed ("polling stream of party P" for a polling hop).
    pub address: String,
    /// How its caller reached it.
    pub link: Link,
    /// How long its caller's call to it took, in milliseconds (everything behind it
    /// included), whether it answered or failed.
    pub ms: f64,
    /// Whether it answered at all.
    pub reached: bool,
    /// [`SOFTWARE`] of the roll-site that answered; empty for one that is not eggroll-rs.
    pub software: String,
}

/// How a ping ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The destination party's roll-site answered.
    Reached,
    /// A hop failed.
    Failed {
        /// Which (1-based, in [`Report::hops`]).
        hop: usize,
        /// Why, in a word.
        reason: Reason,
        /// The error as the roll-site before it saw it.
        detail: String,
        /// What to check.
        check: String,
    },
    /// A hop answered, but not as an eggroll-rs roll-site does (an EggRoll roll-site, or an
    /// eggroll-rs from before `rs_ping`): it is reachable; what is behind it was not checked.
    NotEggrollRs {
        /// Which (1-based).
        hop: usize,
        /// What it answered.
        answer: String,
    },
}

impl Outcome {
    /// The same outcome with its hop number mapped by `f` (a report seen from another hop).
    fn renumbered(self, f: impl FnOnce(usize) -> usize) -> Self {
        match self {
            Outcome::Reached => Outcome::Reached,
            Outcome::Failed {
                hop,
                reason,
                detail,
                check,
            } => Outcome::Failed {
                hop: f(hop),
                reason,
                detail,
                check,
            },
            Outcome::NotEggrollRs { hop, answer } => Outcome::NotEggrollRs {
                hop: f(hop),
                answer,
            },
        }
    }
}

/// A ping's answer: the hops from the roll-site that answered to where the ping ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The hops, in order.
    pub hops: Vec<HopRecord>,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Report {
    /// A report ending at `me`, which failed.
    fn failed(me: HopRecord, reason: Reason, detail: String, check: String) -> Self {
        Self {
            hops: vec![me],
            outcome: Outcome::Failed {
                hop: 1,
                reason,
                detail,
                check,
            },
        }
    }

    /// `me` followed by the report of the hop after it.
    fn behind(me: HopRecord, next: Report) -> Self {
        let outcome = next.outcome.renumbered(|hop| hop + 1);
        let mut hops = vec![me];
        hops.extend(next.hops);
        Self { hops, outcome }
    }

    /// Whether the destination answered.
    pub fn reached(&self) -> bool {
        self.outcome == Outcome::Reached
    }

    /// The answer packet that carries this report.
    pub fn packet(&self, request: &Metadata) -> Packet {
        Packet {
            header: Some(Metadata {
                ext: Vec::new(),
                ..request.clone()
            }),
            body: Some(Data {
                key: REPORT_KEY.into(),
                value: serde_json::to_vec(self).unwrap_or_default().into(),
            }),
        }
    }

    /// The report in an answer: `None` when the answer carries none (it did not come from an
    /// eggroll-rs roll-site), an error when it carries a broken one.
    pub fn from_packet(p: &Packet) -> Option<std::result::Result<Self, String>> {
        let body = p.body.as_ref().filter(|b| b.key == REPORT_KEY)?;
        Some(
            serde_json::from_slice::<Report>(&body.value)
                .map_err(|e| format!("its ping report is not valid JSON: {e}"))
                .and_then(Report::checked),
        )
    }

    /// The report if it is sound: hops within the hop limit, the outcome naming one of them;
    /// long texts (another party wrote them) cut short.
    fn checked(mut self) -> std::result::Result<Self, String> {
        let n = self.hops.len();
        if n == 0 || n > MAX_HOPS as usize + 2 {
            return Err(format!("its ping report lists {n} hops"));
        }
        let hop = match &self.outcome {
            Outcome::Reached => 1,
            Outcome::Failed { hop, .. } | Outcome::NotEggrollRs { hop, .. } => *hop,
        };
        if !(1..=n).contains(&hop) {
            return Err(format!("its ping report names hop {hop} of {n}"));
        }
        for h in &mut self.hops {
            for s in [&mut h.role, &mut h.party, &mut h.address, &mut h.software] {
                cut(s);
            }
            if !h.ms.is_finite() || h.ms < 0.0 {
                h.ms = 0.0;
            }
        }
        match &mut self.outcome {
            Outcome::Reached => {}
            Outcome::Failed { detail, check, .. } => {
                cut(detail);
                cut(check);
            }
            Outcome::NotEggrollRs { answer, .. } => cut(answer),
        }
        Ok(self)
    }
}

fn cut(s: &mut String) {
    if s.len() > MAX_TEXT {
        let mut at = MAX_TEXT;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push_str("...");
    }
}

/// The ping request for `party` in `role`, which the roll-site it is sent to has `budget`
/// to answer.
pub fn request(party: &str, role: &str, budget: Duration) -> Packet {
    Packet {
        header: Some(Metadata {
            src: Some(Topic::default()),
            dst: Some(Topic {
                party_id: party.into(),
                role: role.into(),
                ..Default::default()
            }),
            operator: OP_PING.into(),
            conf: Some(Conf {
                overall_timeout: budget.as_millis().min(i64::MAX as u128) as i64,
                ..Default::default()
            }),
            ..Default::default()
        }),
        body: None,
    }
}

/// The time a ping grants the next hop, out of `budget`: a little less, so that this hop
/// can still answer when the next one runs out.
pub fn next_budget(budget: Duration) -> Duration {
    let margin = (budget / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    budget.saturating_sub(margin).max(MIN_TIMEOUT / 2)
}

fn budget_of(m: &Metadata) -> Duration {
    match m.conf.as_ref().map(|c| c.overall_timeout) {
        Some(ms) if ms > 0 => Duration::from_millis(ms as u64).clamp(MIN_TIMEOUT, MAX_TIMEOUT),
        _ => DEFAULT_TIMEOUT,
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How a call to the next hop failed.
enum CallFailure {
    /// On this side: no connection, no TLS session, no answer in time. The text says why.
    Link(Reason, String),
    /// The next hop answered with an error.
    Answered(Status),
}

/// Sorts a failed gRPC call: a status made on this side (the connection failed) is classified
/// from its causes; one the next hop sent means that hop was reached.
fn sort_status(s: Status, tls: bool) -> CallFailure {
    // tonic makes a status of its own for a broken link, with the transport error as its
    // source; a status the server sent has none (and may well say UNAVAILABLE: an older
    // exchange relays its own next hop's failure so).
    let m = s.message();
    let local = std::error::Error::source(&s).is_some()
        || m.starts_with("transport error")
        || m.starts_with("h2 protocol error");
    if !local {
        return CallFailure::Answered(s);
    }
    let s = with_causes(s);
    let msg = s.message().to_string();
    CallFailure::Link(classify(&msg, tls), msg)
}

/// The reason a link failed, from the error text of the transport (tonic, hyper, rustls,
/// the OS); `tls` says whether the link uses TLS.
pub fn classify(message: &str, tls: bool) -> Reason {
    let m = message.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if any(&["connection refused", "os error 111"]) {
        Reason::Refused
    } else if any(&["timed out", "timeout", "deadline"]) {
        Reason::TimedOut
    } else if crate::tls::is_handshake_failure(&m) || any(&["certificate", "tls", "alert"]) {
        Reason::TlsRejected
    } else if tls {
        // On a TLS route a connection the peer drops without a word is, far most often, a
        // certificate it refused (see forward::hop_error).
        Reason::TlsRejected
    } else {
        Reason::Unreachable
    }
}

/// What to check when the link from `who` to the hop at `address` failed for `reason`.
struct Advice<'a> {
    /// "the route for party 10000 in /etc/eggroll/route_table.json" or the like.
    route: String,
    /// Our TLS files on that route, to name them.
    tls: Option<(String, String)>,
    /// The name the peer's certificate must carry.
    name: &'a str,
    /// The hop is this party's own roll-site, called by `eggroll ping` itself.
    local: bool,
}

impl Advice<'_> {
    fn check(&self, reason: Reason, address: &str) -> String {
        match reason {
            Reason::Refused if self.local => format!(
                "no roll-site listens at {address}: start this party's roll-site (`eggroll \
                 rollsite`), or give its address with --rollsite (or rollsite.host and \
                 rollsite.port in the config)"
            ),
            Reason::Refused => format!(
                "nothing listens at {address}: check that the roll-site there is running and \
                 listens on that port, and {}",
                self.route
            ),
            Reason::TimedOut if self.local => format!(
                "{address} gave no answer: is it this party's roll-site, and is it overloaded? \
                 (raise --timeout-ms for a slow route)"
            ),
            Reason::TimedOut => format!(
                "{address} gave no answer: a firewall that drops the packets, a wrong address \
                 in {}, or a roll-site there that hangs (raise --timeout-ms for a slow route)",
                self.route
            ),
            Reason::TlsRejected => match &self.tls {
                Some((cert, ca)) => format!(
                    "{} uses TLS: check that this roll-site's certificate {cert} is signed by a \
                     CA the peer trusts, that the peer's certificate chains to {ca} and names \
                     {}, and that {address} is the peer's TLS port",
                    self.route, self.name
                ),
                None => format!(
                    "{} uses TLS: set rollsite.tls_cert, tls_key and tls_ca of this roll-site",
                    self.route
                ),
            },
            _ => format!(
                "check {} and the network between the roll-sites",
                self.route
            ),
        }
    }
}

/// Calls the next hop `next` (its role, address and link filled in) with `call`, which has
/// `budget`, and reports what came back behind `me`; `from_site` says whether `me` is a
/// roll-site (which sends its hop counter on).
async fn probe<F>(
    me: HopRecord,
    mut next: HopRecord,
    budget: Duration,
    call: F,
    advice: &Advice<'_>,
    from_site: bool,
) -> Report
where
    F: Future<Output = std::result::Result<Packet, CallFailure>>,
{
    let started = Instant::now();
    let answer = tokio::time::timeout(budget, call).await;
    next.ms = millis(started.elapsed());
    match answer {
        Err(_) => {
            let check = advice.check(Reason::TimedOut, &next.address);
            let detail = format!(
                "no answer within {} ms (this hop's share of the ping's time)",
                budget.as_millis()
            );
            unreached(me, next, Reason::TimedOut, detail, check)
        }
        Ok(Err(CallFailure::Link(reason, detail))) => {
            let check = advice.check(reason, &next.address);
            unreached(me, next, reason, detail, check)
        }
        Ok(Err(CallFailure::Answered(s))) => {
            next.reached = true;
            if matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated) {
                let detail = describe(&s);
                let report = Report::failed(
                    next,
                    Reason::PermissionDenied,
                    detail,
                    "the roll-site there refused the ping as it would refuse data from this \
                     party: its message says why"
                        .into(),
                );
                return Report::behind(me, report);
            }
            Report::behind(
                me,
                Report {
                    hops: vec![next],
                    outcome: Outcome::NotEggrollRs {
                        hop: 1,
                        answer: describe(&s),
                    },
                },
            )
        }
        Ok(Ok(p)) => match Report::from_packet(&p) {
            Some(Ok(mut report)) if from_site && report.hops[0].role == LOCAL => {
                // Its first record says it got no hop counter, which every roll-site of ours
                // sends: the next hop relayed the ping without knowing it (EggRoll's
                // roll-site passes on unary calls it does not know), and a roll-site of ours
                // behind it answered.
                next.reached = true;
                let role = if report.hops.len() == 1 {
                    PEER
                } else {
                    EXCHANGE
                };
                let theirs = &mut report.hops[0];
                theirs.role = role.into();
                theirs.address = format!("behind {}", next.address);
                theirs.link = next.link;
                theirs.ms = next.ms;
                Report::behind(me, Report::behind(next, report))
            }
            Some(Ok(mut report)) => {
                let theirs = &mut report.hops[0];
                theirs.address = next.address;
                theirs.link = next.link;
                theirs.ms = next.ms;
                theirs.reached = true;
                Report::behind(me, report)
            }
            other => {
                next.reached = true;
                let answer = match other {
                    Some(Err(e)) => e,
                    _ => "an answer without a ping report".into(),
                };
                Report::behind(
                    me,
                    Report {
                        hops: vec![next],
                        outcome: Outcome::NotEggrollRs { hop: 1, answer },
                    },
                )
            }
        },
    }
}

/// `me`, then `next`, which could not be reached for `reason`.
fn unreached(
    me: HopRecord,
    mut next: HopRecord,
    reason: Reason,
    detail: String,
    check: String,
) -> Report {
    next.reached = false;
    Report::behind(me, Report::failed(next, reason, detail, check))
}

impl Site {
    /// Answers a ping: this roll-site's record, and the rest of the route behind it.
    pub(crate) async fn ping(&self, mut p: Packet, peer: Peer) -> Result<Packet> {
        let (party, role) = {
            let (party, role) = destination(&p)?;
            (party.to_string(), role.to_string())
        };
        let meta = p
            .header
            .as_mut()
            .ok_or_else(|| Error::BadPacket("the ping has no header".into()))?;
        let budget = budget_of(meta);
        // The first roll-site names its own party as the source, as data from here would
        // carry it: the roll-sites behind check their TLS rules against it.
        let src = meta.src.get_or_insert_with(Topic::default);
        if src.party_id.is_empty() {
            src.party_id = self.party_id.clone();
        }
        let request = meta.clone();
        let first = peer.hops == 0;
        let mut me = HopRecord {
            role: if first { LOCAL } else { PEER }.into(),
            party: self.party_id.clone(),
            reached: true,
            software: SOFTWARE.into(),
            ..Default::default()
        };
        let table = self.routes.table();
        let report = if peer.hops >= MAX_HOPS {
            Report::failed(
                me,
                Reason::NoRoute,
                format!("the ping has passed {} roll-sites", peer.hops),
                format!(
                    "the route tables form a loop: check the route for party {party} in {} and \
                     in the tables of the roll-sites before it",
                    table.source()
                ),
            )
        } else if let Err(e) = self.check_hops_and_tls(&p, &peer) {
            Report::failed(
                me,
                Reason::PermissionDenied,
                e.to_string(),
                "the route of the sending party requires TLS here: its route to this roll-site \
                 must use_ssl and name the secure port"
                    .into(),
            )
        } else {
            match table.resolve(&self.party_id, &party, &role) {
                Err(e @ Error::NoRoute { .. }) => Report::failed(
                    me,
                    Reason::NoRoute,
                    e.to_string(),
                    format!(
                        "add party {party} (or a `default` entry) to the route table {}; it is \
                         read again without a restart",
                        table.source()
                    ),
                ),
                Err(e) => Report::failed(
                    me,
                    Reason::PermissionDenied,
                    e.to_string(),
                    format!(
                        "add party {party} to the route table {}, or set \
                         permission.default_allow",
                        table.source()
                    ),
                ),
                Ok(Hop::Local) => Report {
                    hops: vec![me],
                    outcome: Outcome::Reached,
                },
                Ok(Hop::Remote(route)) => {
                    if !first {
                        me.role = EXCHANGE.into();
                    }
                    // A route of the destination party itself most likely leads to its
                    // roll-site; the `default` route, to an exchange.
                    let guess = if table.explicit(&party, &role).is_some() {
                        PEER
                    } else {
                        EXCHANGE
                    };
                    let on = format!("the route for party {party} in {}", table.source());
                    self.ping_remote(me, guess, &route, &party, p, peer, budget, on)
                        .await
                }
                Ok(Hop::Polling(polling)) => {
                    if !first {
                        me.role = EXCHANGE.into();
                    }
                    self.ping_polling(me, &polling, p, budget).await
                }
            }
        };
        Ok(report.packet(&request))
    }

    #[allow(clippy::too_many_arguments)]
    async fn ping_remote(
        &self,
        me: HopRecord,
        guess: &str,
        route: &Route,
        party: &str,
        mut p: Packet,
        peer: Peer,
        budget: Duration,
        on: String,
    ) -> Report {
        let next = HopRecord {
            role: guess.into(),
            address: route.address(),
            link: if route.use_ssl {
                Link::MutualTls
            } else {
                Link::Plaintext
            },
            ..Default::default()
        };
        let name = route.hostname.as_deref().unwrap_or(&route.ip);
        let advice = Advice {
            route: on,
            tls: route
                .use_ssl
                .then(|| {
                    let base = self.tls.as_ref();
                    let cert = route
                        .cert_file
                        .clone()
                        .or_else(|| base.map(|b| b.cert.clone()))?;
                    let ca = route
                        .ca_file
                        .clone()
                        .or_else(|| base.map(|b| b.ca.clone()))?;
                    Some((cert.display().to_string(), ca.display().to_string()))
                })
                .flatten(),
            name,
            local: false,
        };
        if let Err(e) = self.hop_name(route, party) {
            return Report::failed(
                me,
                Reason::NoRoute,
                e.to_string(),
                format!("fix {}", advice.route),
            );
        }
        let next_budget = next_budget(budget);
        if let Some(c) = p.header.as_mut().and_then(|m| m.conf.as_mut()) {
            c.overall_timeout = next_budget.as_millis() as i64;
        }
        let channel = match self.forwarder.channel(route) {
            Ok(c) => c,
            Err(e) => {
                let reason = if route.use_ssl {
                    Reason::TlsRejected
                } else {
                    Reason::Unreachable
                };
                let check = advice.check(reason, &next.address);
                return unreached(me, next, reason, e.to_string(), check);
            }
        };
        let max = self.config.max_message_bytes as usize;
        let tls = route.use_ssl;
        let call = async move {
            let mut req = Request::new(p);
            let hops = hop_count(peer.hops)
                .map_err(|e| CallFailure::Link(Reason::Unreachable, e.to_string()))?;
            req.metadata_mut().insert(HOPS_HEADER, hops);
            client(channel, max)
                .unary_call(req)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| sort_status(s, tls))
        };
        probe(me, next, next_budget, call, &advice, true).await
    }

    async fn ping_polling(
        &self,
        me: HopRecord,
        party: &str,
        mut p: Packet,
        budget: Duration,
    ) -> Report {
        let next = HopRecord {
            role: PEER.into(),
            address: format!("polling stream of party {party}"),
            link: Link::Polling,
            ..Default::default()
        };
        let next_budget = next_budget(budget);
        if let Some(c) = p.header.as_mut().and_then(|m| m.conf.as_mut()) {
            c.overall_timeout = next_budget.as_millis() as i64;
        }
        let advice = Advice {
            route: format!(
                "that party {party}'s roll-site runs with rollsite.polling_exchange set to this \
                 exchange ({})",
                self.party_id
            ),
            tls: None,
            name: party,
            local: false,
        };
        let call = async move {
            self.hub.unary(party, p).await.map_err(|e| match e {
                Error::Hop(h) if h.code() != Code::Unavailable => CallFailure::Answered(*h.status),
                other => CallFailure::Link(Reason::Unreachable, other.to_string()),
            })
        };
        probe(me, next, next_budget, call, &advice, true).await
    }
}

/// Pings `party` (in `role`) through the roll-site at `rollsite` ("host:port", plaintext, as
/// this party's own clients call it), waiting at most `timeout`.
pub async fn ping(rollsite: &str, party: &str, role: &str, timeout: Duration) -> Report {
    let me = HopRecord {
        role: "this machine".into(),
        reached: true,
        ..Default::default()
    };
    let next = HopRecord {
        role: LOCAL.into(),
        address: rollsite.to_string(),
        link: Link::Plaintext,
        ..Default::default()
    };
    let advice = Advice {
        route: "the roll-site address (--rollsite, or rollsite.host and rollsite.port in the \
                config)"
            .into(),
        tls: None,
        name: rollsite,
        local: true,
    };
    let channel = match crate::forward::channel(rollsite, None, timeout) {
        Ok(c) => c,
        Err(e) => {
            let mut report = Report::failed(
                next,
                Reason::Unreachable,
                e.to_string(),
                advice.check(Reason::Unreachable, rollsite),
            );
            report.hops[0].reached = false;
            return report;
        }
    };
    let p = request(party, role, next_budget(timeout));
    let call = async move {
        // A report is small: a few KiB a hop.
        client(channel, 4 << 20)
            .unary_call(p)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| sort_status(s, false))
    };
    let report = probe(me, next, timeout, call, &advice, false).await;
    // Drop the record of this machine: the report starts at the local roll-site.
    let Report { mut hops, outcome } = report;
    hops.remove(0);
    let outcome = outcome.renumbered(|hop| hop.saturating_sub(1));
    Report { hops, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_failures_are_sorted_by_their_causes() {
        let refused = "transport error: tcp connect error: Connection refused (os error 111)";
        assert_eq!(classify(refused, false), Reason::Refused);
        assert_eq!(classify(refused, true), Reason::Refused);
        assert_eq!(
            classify(
                "transport error: tcp connect error: deadline has elapsed",
                true
            ),
            Reason::TimedOut
        );
        assert_eq!(
            classify(
                "transport error: invalid peer certificate: UnknownIssuer",
                false
            ),
            Reason::TlsRejected
        );
        assert_eq!(
            classify("transport error: connection reset", true),
            Reason::TlsRejected
        );
        assert_eq!(
            classify(
                "transport error: dns error: failed to lookup address",
                false
            ),
            Reason::Unreachable
        );
    }

    #[test]
    fn reports_round_trip_and_bad_ones_are_refused() {
        let me = HopRecord {
            role: LOCAL.into(),
            party: "9999".into(),
            reached: true,
            software: SOFTWARE.into(),
            ..Default::default()
        };
        let next = HopRecord {
            role: PEER.into(),
            address: "127.0.0.1:1".into(),
            ..Default::default()
        };
        let r = Report::behind(
            me,
            Report::failed(next, Reason::Refused, "d".into(), "c".into()),
        );
        let p = r.packet(&Metadata::default());
        assert_eq!(Report::from_packet(&p), Some(Ok(r.clone())));
        assert!(matches!(r.outcome, Outcome::Failed { hop: 2, .. }));

        // Not a report at all, then reports that name a hop they lack or list too many.
        assert_eq!(Report::from_packet(&Packet::default()), None);
        let bad = |report: &Report| {
            let mut p = report.packet(&Metadata::default());
            if let Some(b) = p.body.as_mut() {
                b.value = serde_json::to_vec(report).unwrap().into();
            }
            Report::from_packet(&p)
        };
        let mut wrong = r.clone();
        wrong.outcome = Outcome::NotEggrollRs {
            hop: 9,
            answer: String::new(),
        };
        assert!(matches!(bad(&wrong), Some(Err(_))));
        let mut long = r.clone();
        long.hops = vec![r.hops[0].clone(); MAX_HOPS as usize + 3];
        assert!(matches!(bad(&long), Some(Err(_))));
        let mut p = r.packet(&Metadata::default());
        p.body.as_mut().unwrap().value = b"{not json".to_vec().into();
        assert!(matches!(Report::from_packet(&p), Some(Err(_))));
    }

    #[test]
    fn each_hop_grants_the_next_less_time() {
        let b = Duration::from_secs(10);
        let n = next_budget(b);
        assert!(n < b && n >= Duration::from_secs(9), "{n:?}");
        assert!(next_budget(n) < n);
        assert!(next_budget(Duration::ZERO) > Duration::ZERO);
    }
}
