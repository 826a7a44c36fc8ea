//! Mutual TLS between roll-sites: trusted parties exchange data; an untrusted certificate and
//! a plaintext client on a TLS route are refused.

mod common;

use common::*;
use eggroll_core::config::EggrollConfig;
use eggroll_federation::Party;
use eggroll_proto::proxy::data_transfer_service_client::DataTransferServiceClient;
use eggroll_rollsite::packet::OBJECT;
use eggroll_tests::certs::Ca;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// Gives `c` a certificate for 127.0.0.1 signed by `issuer`, trusting the CA `trust`.
fn identity(c: &mut EggrollConfig, issuer: &Ca, name: &str, dir: &Path, trust: &Ca) {
    let (cert, key) = issuer.issue(dir, name);
    c.rollsite.tls_cert = cert;
    c.rollsite.tls_key = key;
    c.rollsite.tls_ca = trust.pem.clone();
}

fn tls_route(addr: std::net::SocketAddr) -> serde_json::Value {
    json!({"default": [{"ip": "127.0.0.1", "port": addr.port(), "use_ssl": true}]})
}

/// A roll-site's count of failed TLS handshakes on `side`.
fn tls_failures(s: &eggroll_rollsite::RollSite, side: &str) -> f64 {
    let text = s.site().metrics.encode();
    let prefix = format!("eggroll_rollsite_tls_handshake_failures_total{{side=\"{side}\"");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trusted_parties_talk_and_untrusted_or_plaintext_ones_are_refused() {
    let dir = dir();
    let d = dir.path();
    let (ca1, ca2) = (Ca::new(d, "ca1"), Ca::new(d, "ca2"));
    let (mut cg, mut ch, mut cr) = (config(d, "9999"), config(d, "10000"), config(d, "7777"));
    identity(&mut cg, &ca1, "guest", d, &ca1);
    identity(&mut ch, &ca1, "host", d, &ca1);
    // The rogue party trusts the real CA but holds a certificate from another one.
    identity(&mut cr, &ca2, "rogue", d, &ca1);
    let (g, h, r) = (start(&cg).await, start(&ch).await, start(&cr).await);
    let (gs, hs) = (g.secure_addr().unwrap(), h.secure_addr().unwrap());
    set_routes(&g, &cg, json!({"10000": tls_route(hs)}));
    set_routes(
        &h,
        &ch,
        json!({"9999": tls_route(gs), "7777": tls_route(r.secure_addr().unwrap())}),
    );
    set_routes(&r, &cr, json!({"10000": tls_route(hs)}));

    let host = Party::new("host", "10000");
    let guest = Party::new("guest", "9999");
    let fg = federation(&g, "s", "guest", "9999");
    let fh = federation(&h, "s", "host", "10000");
    let blob = pattern(3 << 20, 9);
    fg.remote_bytes(blob.clone(), "x", "0", std::slice::from_ref(&host))
        .await
        .unwrap();
    assert_eq!(
        fh.get_bytes("x", "0", std::slice::from_ref(&guest))
            .await
            .unwrap(),
        vec![blob]
    );
    fh.remote(&"back", "y", "0", std::slice::from_ref(&guest))
        .await
        .unwrap();
    assert_eq!(
        fg.get::<String>("y", "0", std::slice::from_ref(&host))
            .await
            .unwrap(),
        vec!["back"]
    );

    // An untrusted certificate: the host's TLS port refuses the handshake.
    let fr = federation(&r, "s", "guest", "7777");
    let err = fr
        .remote(&1u8, "z", "0", std::slice::from_ref(&host))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("10000") && err.contains("certificate"),
        "{err}"
    );
    // Both sides count the refused handshake, and the rogue's status page says why.
    assert!(tls_failures(&h, "inbound") >= 1.0);
    assert!(tls_failures(&r, "outbound") >= 1.0);
    assert_eq!(tls_failures(&g, "inbound"), 0.0);
    let page = eggroll_rollsite::status_page::render(r.site());
    let failures = page.split("Recent failures").nth(1).unwrap_or_default();
    assert!(
        failures.contains("10000") && failures.contains("certificate"),
        "{page}"
    );
    let mut quick = options();
    quick.get_idle_timeout = Duration::from_millis(300);
    let fq = federation_with(&h, "s", "host", "10000", quick);
    assert!(fq
        .get::<u8>("z", "0", &[Party::new("guest", "7777")])
        .await
        .is_err());

    // A plaintext client claiming to be the guest, whose route requires TLS, is refused on
    // the plaintext port...
    let key = eggroll_tests::rollsites::key("s", "p");
    let mut hdr = key.header(OBJECT);
    hdr.total_partitions = 1;
    hdr.stage = "finish".into();
    let packet = key.packet(&hdr, b"sneaky".to_vec());
    let mut plain = DataTransferServiceClient::connect(format!("http://{}", h.addr()))
        .await
        .unwrap();
    let status = plain.unary_call(packet.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("TLS"), "{status:?}");
    let status = plain
        .push(tokio_stream::iter(vec![packet.clone()]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    // ...and cannot speak to the TLS port at all.
    let secure_plain = tonic::transport::Endpoint::from_shared(format!("http://{hs}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    if let Ok(ch) = secure_plain {
        let mut c = DataTransferServiceClient::new(ch);
        assert!(c.unary_call(packet).await.is_err());
    }
    for s in [g, h, r] {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_route_with_its_own_certificate_and_ca_uses_them() {
    let dir = dir();
    let d = dir.path();
    let (ca1, ca2) = (Ca::new(d, "ca1"), Ca::new(d, "ca2"));
    let (mut cg, mut ch) = (config(d, "9999"), config(d, "10000"));
    // The guest's own identity comes from a CA the host does not trust, and it trusts only
    // that CA: only the route's own certificate and CA can reach the host.
    identity(&mut cg, &ca2, "guest-default", d, &ca2);
    identity(&mut ch, &ca1, "host", d, &ca1);
    let (crt, key) = ca1.issue(d, "guest-for-host");
    let (g, h) = (start(&cg).await, start(&ch).await);
    let hs = h.secure_addr().unwrap();
    let own = json!({"default": [{
        "ip": "127.0.0.1", "port": hs.port(), "use_ssl": true,
        "cert_file": crt, "key_file": key, "ca_file": d.join("ca1.pem"),
    }]});
    set_routes(&g, &cg, json!({"10000": own}));
    set_routes(
        &h,
        &ch,
        json!({"9999": tls_route(g.secure_addr().unwrap())}),
    );
    let (host, guest) = (Party::new("host", "10000"), Party::new("guest", "9999"));
    let fg = federation(&g, "s", "guest", "9999");
    let fh = federation(&h, "s", "host", "10000");
    fg.remote(&"per-route", "a", "0", std::slice::from_ref(&host))
        .await
        .unwrap();
    assert_eq!(
        fh.get::<String>("a", "0", std::slice::from_ref(&guest))
            .await
            .unwrap(),
        vec!["per-route"]
    );

    // The same route without its own files falls back to the site's identity: refused.
    set_routes(&g, &cg, json!({"10000": tls_route(hs)}));
    let err = fg
        .remote(&1u8, "b", "0", std::slice::from_ref(&host))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("certificate"), "{err}");
    for s in [g, h] {
        s.shutdown().await;
    }
}
