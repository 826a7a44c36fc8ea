//! `rs_ping` through real roll-sites on 127.0.0.1: a route through an exchange (one link over
//! mutual TLS) and to a polling party; a dead peer, a silent one, an untrusted certificate, an
//! unknown party, a refusal, a loop, a peer that is not eggroll-rs, and a malformed ping.

mod common;

use common::*;
use eggroll_core::config::EggrollConfig;
use eggroll_proto::proxy::data_transfer_service_client::DataTransferServiceClient;
use eggroll_proto::proxy::data_transfer_service_server::{
    DataTransferService, DataTransferServiceServer,
};
use eggroll_proto::proxy::{Metadata, Packet, PollingFrame};
use eggroll_rollsite::ping::{ping, Link, Outcome, Reason, Report, EXCHANGE, LOCAL, PEER};
use eggroll_tests::certs::Ca;
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Code, Request, Response, Status, Streaming};

const SECOND: Duration = Duration::from_secs(5);

fn identity(c: &mut EggrollConfig, issuer: &Ca, name: &str, dir: &Path, trust: &Ca) {
    let (cert, key) = issuer.issue(dir, name);
    c.rollsite.tls_cert = cert;
    c.rollsite.tls_key = key;
    c.rollsite.tls_ca = trust.pem.clone();
}

fn tls_to(addr: SocketAddr) -> serde_json::Value {
    json!({"default": [{"ip": "127.0.0.1", "port": addr.port(), "use_ssl": true}]})
}

fn failure(r: &Report) -> (usize, Reason, String, String) {
    match &r.outcome {
        Outcome::Failed {
            hop,
            reason,
            detail,
            check,
        } => (*hop, *reason, detail.clone(), check.clone()),
        other => panic!("expected a failure, got {other:?} in {r:#?}"),
    }
}

/// A gRPC server that speaks the protocol but knows no `rs_ping`, as an EggRoll roll-site.
struct NotOurs;

#[tonic::async_trait]
impl DataTransferService for NotOurs {
    async fn push(&self, _: Request<Streaming<Packet>>) -> Result<Response<Metadata>, Status> {
        Err(Status::unimplemented("push"))
    }
    type pullStream = ReceiverStream<Result<Packet, Status>>;
    async fn pull(&self, _: Request<Metadata>) -> Result<Response<Self::pullStream>, Status> {
        Err(Status::unimplemented("pull"))
    }
    async fn unary_call(&self, _: Request<Packet>) -> Result<Response<Packet>, Status> {
        Err(Status::unknown(
            "java.lang.IllegalArgumentException: unknown operator",
        ))
    }
    type pollingStream = ReceiverStream<Result<PollingFrame, Status>>;
    async fn polling(
        &self,
        _: Request<Streaming<PollingFrame>>,
    ) -> Result<Response<Self::pollingStream>, Status> {
        Err(Status::unimplemented("polling"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ping_walks_the_real_route_and_names_the_hop_that_fails() {
    let dir = dir();
    let d = dir.path();
    let ca = Ca::new(d, "ca");
    let (cg, mut ce, mut ch) = (config(d, "9999"), config(d, "8888"), config(d, "10000"));
    identity(&mut ce, &ca, "exchange", d, &ca);
    identity(&mut ch, &ca, "host", d, &ca);
    let mut cp = config(d, "7777");
    let (g, e, h) = (start(&cg).await, start(&ce).await, start(&ch).await);
    cp.rollsite.polling_exchange = e.addr().to_string();
    let p = start(&cp).await;
    let dead = free_port();
    // A listener that takes connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept() {
            held.push(s);
        }
    });
    // An EggRoll-like peer that does not know rs_ping.
    let old = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let old_addr = old.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DataTransferServiceServer::new(NotOurs))
            .serve_with_incoming(TcpListenerStream::new(old)),
    );

    // Guest: everything through the exchange, except its direct test routes.
    set_routes(
        &g,
        &cg,
        json!({
            "default": to(e.addr()),
            "4444": {"default": [{"ip": "127.0.0.1", "port": dead}]},
            "5555": to(silent_addr),
            "6666": to(old_addr),
        }),
    );
    // Exchange: the host over mutual TLS, the polling party, a dead party behind it.
    set_routes(
        &e,
        &ce,
        json!({
            "10000": tls_to(h.secure_addr().unwrap()),
            "9999": to(g.addr()),
            "7777": {"default": [{"ip": "", "port": -1, "is_polling": true}]},
            "3333": {"default": [{"ip": "127.0.0.1", "port": dead}]},
        }),
    );
    set_routes(
        &h,
        &ch,
        json!({"default": tls_to(e.secure_addr().unwrap())}),
    );
    set_routes(&p, &cp, json!({"default": to(e.addr())}));
    let guest = g.addr().to_string();

    // Guest -> exchange -> host: every hop, its party, address and link.
    let r = ping(&guest, "10000", "host", SECOND).await;
    assert_eq!(r.outcome, Outcome::Reached, "{r:#?}");
    let seen: Vec<_> = r
        .hops
        .iter()
        .map(|h| (h.role.as_str(), h.party.as_str(), h.address.clone(), h.link))
        .collect();
    assert_eq!(
        seen,
        vec![
            (LOCAL, "9999", guest.clone(), Link::Plaintext),
            (EXCHANGE, "8888", e.addr().to_string(), Link::Plaintext),
            (
                PEER,
                "10000",
                h.secure_addr().unwrap().to_string(),
                Link::MutualTls
            ),
        ]
    );
    assert!(r.hops.iter().all(|h| h.reached && h.ms > 0.0));
    assert!(r.hops[0].ms >= r.hops[1].ms && r.hops[1].ms >= r.hops[2].ms);

    // Its own party: one hop, and nothing is stored.
    let r = ping(&guest, "9999", "guest", SECOND).await;
    assert_eq!((r.outcome.clone(), r.hops.len()), (Outcome::Reached, 1));

    // The polling party, down its stream.
    for _ in 0..100 {
        if e.site().hub.is_connected("7777") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = ping(&guest, "7777", "arbiter", SECOND).await;
    assert_eq!(r.outcome, Outcome::Reached, "{r:#?}");
    assert_eq!(r.hops[2].link, Link::Polling);
    assert_eq!(r.hops[2].party, "7777");

    // A dead peer, directly and behind the exchange: refused, at the right hop.
    let r = ping(&guest, "4444", "host", SECOND).await;
    let (hop, reason, _, check) = failure(&r);
    assert_eq!((hop, reason), (2, Reason::Refused), "{r:#?}");
    assert_eq!(r.hops[1].address, format!("127.0.0.1:{dead}"));
    assert!(!r.hops[1].reached && check.contains("nothing listens"));
    let r = ping(&guest, "3333", "host", SECOND).await;
    assert_eq!(
        (failure(&r).0, failure(&r).1),
        (3, Reason::Refused),
        "{r:#?}"
    );
    assert_eq!(r.hops[1].party, "8888");

    // A listener that never answers: timed out at that hop, well within the budget.
    let started = std::time::Instant::now();
    let r = ping(&guest, "5555", "host", Duration::from_millis(1500)).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(failure(&r).0, 2, "{r:#?}");
    assert_eq!(failure(&r).1, Reason::TimedOut);
    assert_eq!(r.hops[1].address, silent_addr.to_string());

    // An unknown party at a table with no default: no route, naming the table.
    let r = ping(&e.addr().to_string(), "424242", "host", SECOND).await;
    let (hop, reason, detail, check) = failure(&r);
    assert_eq!((hop, reason), (1, Reason::NoRoute), "{r:#?}");
    let table = ce.rollsite.route_table.display().to_string();
    assert!(detail.contains(&table) && check.contains(&table), "{r:#?}");

    // A peer that answers but knows no rs_ping: reached, not eggroll-rs.
    let r = ping(&guest, "6666", "host", SECOND).await;
    assert!(
        matches!(&r.outcome, Outcome::NotEggrollRs { hop: 2, answer } if answer.contains("unknown operator")),
        "{r:#?}"
    );
    assert!(r.hops[1].reached && r.hops[1].software.is_empty());

    // The host requires TLS from the guest; a ping over its plaintext port is refused as
    // data would be.
    set_routes(&g, &cg, json!({"10000": to(h.addr())}));
    set_routes(&h, &ch, json!({"9999": tls_to(e.secure_addr().unwrap())}));
    let r = ping(&guest, "10000", "host", SECOND).await;
    let (hop, reason, detail, _) = failure(&r);
    assert_eq!((hop, reason), (2, Reason::PermissionDenied), "{r:#?}");
    assert!(r.hops[1].reached && detail.contains("TLS"), "{r:#?}");

    // Two tables that send each other everything: a loop, stopped by the hop limit.
    set_routes(&g, &cg, json!({"default": to(e.addr())}));
    set_routes(&e, &ce, json!({"default": to(g.addr())}));
    let r = ping(&guest, "1", "host", SECOND).await;
    let (hop, reason, detail, _) = failure(&r);
    assert_eq!(reason, Reason::NoRoute, "{r:#?}");
    assert!(hop > 8 && detail.contains("passed"), "{r:#?}");

    // A malformed ping is a gRPC error; the roll-site goes on serving.
    let mut raw = DataTransferServiceClient::connect(format!("http://{guest}"))
        .await
        .unwrap();
    let mut bad = eggroll_rollsite::ping::request("10000", "host", SECOND);
    bad.header.as_mut().unwrap().dst = None;
    let status = raw.unary_call(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let r = ping(&guest, "9999", "guest", SECOND).await;
    assert_eq!(r.outcome, Outcome::Reached);

    // Nothing listens where the ping is sent: refused at hop 1.
    let r = ping(&format!("127.0.0.1:{dead}"), "10000", "host", SECOND).await;
    assert_eq!((failure(&r).0, failure(&r).1), (1, Reason::Refused));
    for s in [g, e, h, p] {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_from_an_untrusted_ca_is_tls_rejected_at_its_hop() {
    let dir = dir();
    let d = dir.path();
    let (ca1, ca2) = (Ca::new(d, "ca1"), Ca::new(d, "ca2"));
    let (mut cg, mut ch) = (config(d, "9999"), config(d, "10000"));
    identity(&mut cg, &ca1, "guest", d, &ca1);
    // The host's certificate comes from a CA the guest does not trust.
    identity(&mut ch, &ca2, "host", d, &ca1);
    let (g, h) = (start(&cg).await, start(&ch).await);
    let hs = h.secure_addr().unwrap();
    set_routes(&g, &cg, json!({"10000": tls_to(hs)}));
    let r = ping(&g.addr().to_string(), "10000", "host", SECOND).await;
    let (hop, reason, detail, check) = failure(&r);
    assert_eq!((hop, reason), (2, Reason::TlsRejected), "{r:#?}");
    assert_eq!(r.hops[1].address, hs.to_string());
    assert_eq!(r.hops[1].link, Link::MutualTls);
    assert!(detail.contains("certificate"), "{detail}");
    assert!(check.contains(&ca1.pem.display().to_string()), "{check}");
    for s in [g, h] {
        s.shutdown().await;
    }
}
