//! Three parties through one exchange roll-site, and a party that only dials out (polling).

mod common;

use common::*;
use eggroll_federation::Party;
use eggroll_proto::proxy::data_transfer_service_client::DataTransferServiceClient;
use eggroll_rollpair::{Options, RollPair, RollPairContext};
use eggroll_rollsite::packet::OBJECT;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_parties_and_a_polling_party_through_one_exchange() {
    let dir = dir();
    let ce = config(dir.path(), "exchange");
    let e = start(&ce).await;
    let mut sites = Vec::new();
    for party in ["9999", "10000", "10001"] {
        let c = config(dir.path(), party);
        let s = start(&c).await;
        // Every party knows only the exchange.
        set_routes(&s, &c, json!({"default": to(e.addr())}));
        sites.push((party, c, s));
    }
    // The polling party accepts no connection: it dials out to the exchange.
    let mut cp = config(dir.path(), "8888");
    cp.rollsite.polling_exchange = e.addr().to_string();
    let p = start(&cp).await;
    set_routes(&p, &cp, json!({"default": to(e.addr())}));
    let mut table = serde_json::Map::new();
    for (party, _, s) in &sites {
        table.insert(party.to_string(), to(s.addr()));
    }
    table.insert(
        "8888".into(),
        json!({"default": [{"ip": "", "port": -1, "is_polling": true}]}),
    );
    set_routes(&e, &ce, serde_json::Value::Object(table));
    for _ in 0..100 {
        if e.site().hub.is_connected("8888") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        e.site().hub.is_connected("8888"),
        "the polling party never connected"
    );

    let fed = |i: usize, role: &str| federation(&sites[i].2, "job", role, sites[i].0);
    let (fa, fb, fc) = (fed(0, "guest"), fed(1, "host"), fed(2, "host"));
    let fp = federation(&p, "job", "arbiter", "8888");
    let (guest, host_b, host_c, arbiter) = (
        Party::new("guest", "9999"),
        Party::new("host", "10000"),
        Party::new("host", "10001"),
        Party::new("arbiter", "8888"),
    );

    // Guest to both hosts and the arbiter at once; each answers the guest.
    let blob = pattern(3 << 20, 5);
    fa.remote_bytes(
        blob.clone(),
        "model",
        "0",
        &[host_b.clone(), host_c.clone(), arbiter.clone()],
    )
    .await
    .unwrap();
    for f in [&fb, &fc, &fp] {
        assert_eq!(
            f.get_bytes("model", "0", std::slice::from_ref(&guest))
                .await
                .unwrap(),
            vec![blob.clone()]
        );
    }
    fb.remote(&10u32, "answer", "0", std::slice::from_ref(&guest))
        .await
        .unwrap();
    fc.remote(&11u32, "answer", "0", std::slice::from_ref(&guest))
        .await
        .unwrap();
    fp.remote(&12u32, "answer", "0", std::slice::from_ref(&guest))
        .await
        .unwrap();
    let answers: Vec<u32> = fa
        .get(
            "answer",
            "0",
            &[host_b.clone(), host_c.clone(), arbiter.clone()],
        )
        .await
        .unwrap();
    assert_eq!(answers, vec![10, 11, 12]);

    // A table to the polling party, through the exchange and its polling stream.
    let ctx_a = RollPairContext::standalone(data(dir.path(), "a")).unwrap();
    let ctx_p = RollPairContext::standalone(data(dir.path(), "p")).unwrap();
    let t: RollPair<u32, String> = ctx_a
        .parallelize(
            (0..50_000u32).map(|i| (i, format!("v{i}"))),
            Options::partitions(3),
        )
        .unwrap();
    fa.remote_table(&t, "t", "0", std::slice::from_ref(&arbiter))
        .await
        .unwrap();
    let got: Vec<RollPair<u32, String>> = fp
        .get_table(&ctx_p, "t", "0", std::slice::from_ref(&guest))
        .await
        .unwrap();
    let s: Vec<(u32, String)> = t.get_all().unwrap().map(Result::unwrap).collect();
    let g: Vec<(u32, String)> = got[0].get_all().unwrap().map(Result::unwrap).collect();
    assert!(s == g && g.len() == 50_000);

    // A bad stream for the polling party is answered through the tunnel, and the tunnel
    // keeps working.
    let key = key_to_8888;
    let packet = |name: &str, seq: i64| {
        let mut h = key(name).header(OBJECT);
        h.total_partitions = 1;
        h.batch_seq = seq;
        key(name).packet(&h, vec![1u8; 10])
    };
    let mut raw = DataTransferServiceClient::connect(format!("http://{}", e.addr()))
        .await
        .unwrap();
    // Long enough that packets still come after the poller has refused the stream.
    let mut bad = vec![packet("x", 0), packet("y", 1)];
    bad.extend((2..200).map(|i| packet("x", i)));
    let status = raw.push(tokio_stream::iter(bad)).await.unwrap_err();
    assert!(status.message().contains("belongs"), "{status:?}");
    fa.remote(&5u8, "after", "0", std::slice::from_ref(&arbiter))
        .await
        .unwrap();
    assert_eq!(
        fp.get::<u8>("after", "0", std::slice::from_ref(&guest))
            .await
            .unwrap(),
        vec![5]
    );

    // Nothing of the refused stream was stored, not even its packets after the bad one
    // (give a wrongly restarted push time to land, so this would see it).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rk = key("x").rs_key();
    let buffer = p.site().buffer.clone();
    let stored = tokio::task::spawn_blocking(move || buffer.header(&rk).unwrap())
        .await
        .unwrap();
    assert!(stored.is_none(), "{stored:?}");

    // With the polling party gone, a push to it fails with a clear UNAVAILABLE.
    p.shutdown().await;
    for _ in 0..100 {
        if !e.site().hub.is_connected("8888") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = fa
        .remote(&1u8, "late", "0", &[arbiter])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("polling") && err.contains("8888"), "{err}");

    for (_, _, s) in sites {
        s.shutdown().await;
    }
    e.shutdown().await;
}
