//! Two parties, each with its own real roll-site on 127.0.0.1, exchanging objects and tables.

mod common;

use common::*;
use eggroll_core::codec::{encode, Bytes};
use eggroll_core::pairs::push as push_pair;
use eggroll_core::partitioner::partition_of;
use eggroll_federation::Party;
use eggroll_proto::proxy::data_transfer_service_client::DataTransferServiceClient;
use eggroll_rollpair::{Options, RollPair, RollPairContext};
use eggroll_rollsite::packet::{FINISH, TABLE};
use serde_json::json;
use std::time::Duration;

fn guest() -> Party {
    Party::new("guest", "9999")
}
fn host() -> Party {
    Party::new("host", "10000")
}

/// Two roll-sites that route to each other.
async fn pair(dir: &std::path::Path) -> (eggroll_rollsite::RollSite, eggroll_rollsite::RollSite) {
    let (ca, cb) = (config(dir, "9999"), config(dir, "10000"));
    let (a, b) = (start(&ca).await, start(&cb).await);
    set_routes(&a, &ca, json!({"10000": to(b.addr())}));
    set_routes(&b, &cb, json!({"9999": to(a.addr())}));
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_both_ways_and_a_get_that_times_out_says_why() {
    let dir = dir();
    let (a, b) = pair(dir.path()).await;
    let fa = federation(&a, "job1", "guest", "9999");
    let fb = federation(&b, "job1", "host", "10000");

    let value = (String::from("gradient"), vec![1.5f64, -2.25, 3.0], 42u64);
    fa.remote(&value, "w", "iter.0", &[host()]).await.unwrap();
    let got: Vec<(String, Vec<f64>, u64)> = fb.get("w", "iter.0", &[guest()]).await.unwrap();
    assert_eq!(got, vec![value.clone()]);

    // Several chunks, and the other direction; the get may start before the remote.
    let blob = pattern(5 << 20 | 12345, 7);
    let (fa2, blob2) = (fa.clone(), blob.clone());
    let waiting = tokio::spawn(async move { fa2.get_bytes("blob", "t", &[host()]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    fb.remote_bytes(blob2, "blob", "t", &[guest()])
        .await
        .unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), vec![blob]);

    // Taken data is gone: a second get of the same key waits, then fails clearly.
    let mut quick = options();
    quick.get_idle_timeout = Duration::from_millis(400);
    let fq = federation_with(&b, "job1", "host", "10000", quick);
    let err = fq
        .get::<u64>("w", "iter.0", &[guest()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no data") && err.contains("9999") && err.contains("\"w\""),
        "{err}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_million_pairs_on_8_partitions_arrive_pair_by_pair_in_the_same_partitions() {
    let dir = dir();
    let (a, b) = pair(dir.path()).await;
    let (fa, fb) = (
        federation(&a, "job2", "guest", "9999"),
        federation(&b, "job2", "host", "10000"),
    );
    let ctx_a = RollPairContext::standalone(data(dir.path(), "a")).unwrap();
    let ctx_b = RollPairContext::standalone(data(dir.path(), "b")).unwrap();
    let sent: RollPair<u64, Bytes> = ctx_a
        .parallelize(
            (0..1_000_000u64).map(|i| (i * 7919, Bytes(i.to_le_bytes().repeat(2)))),
            Options::partitions(8),
        )
        .unwrap();
    fa.remote_table(&sent, "table", "0", &[host()])
        .await
        .unwrap();
    let got: Vec<RollPair<u64, Bytes>> = fb
        .get_table(&ctx_b, "table", "0", &[guest()])
        .await
        .unwrap();
    let got = &got[0];
    assert_eq!(got.partitions(), 8);
    let (sent_all, got_all) = tokio::task::spawn_blocking({
        let (s, g) = (sent.clone(), got.clone());
        move || {
            let s: Vec<(u64, Bytes)> = s.get_all().unwrap().map(Result::unwrap).collect();
            let g: Vec<(u64, Bytes)> = g.get_all().unwrap().map(Result::unwrap).collect();
            (s, g)
        }
    })
    .await
    .unwrap();
    assert_eq!(sent_all.len(), 1_000_000);
    // get_all reads partition by partition: equal sequences whose partitions never go back
    // mean every pair sits in the partition it had at the sender.
    let parts: Vec<u32> = got_all
        .iter()
        .map(|(k, _)| partition_of(&encode(k).unwrap(), 8))
        .collect();
    assert!(parts.windows(2).all(|w| w[0] <= w[1]));
    assert!(parts.contains(&0) && parts.contains(&7));
    assert!(
        sent_all == got_all,
        "received table differs from the sent one"
    );

    // An empty table and a table with empty partitions travel too.
    let sparse: RollPair<u64, u64> = ctx_a
        .parallelize([(1u64, 2u64)], Options::partitions(5))
        .unwrap();
    fa.remote_table(&sparse, "sparse", "0", &[host()])
        .await
        .unwrap();
    let got: Vec<RollPair<u64, u64>> = fb
        .get_table(&ctx_b, "sparse", "0", &[guest()])
        .await
        .unwrap();
    assert_eq!(got[0].partitions(), 5);
    assert_eq!(got[0].get(&1).unwrap(), Some(2));
    assert_eq!(got[0].count().unwrap(), 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_sent_twice_is_stored_once() {
    let dir = dir();
    let (a, b) = pair(dir.path()).await;
    let key = eggroll_tests::rollsites::key("job3", "t");
    // Two partitions by hand, as a sender that retries would send them.
    let mut packets = Vec::new();
    let mut expected = Vec::new();
    for p in 0..2u32 {
        for seq in 0..3i64 {
            let mut body = Vec::new();
            for i in 0..100u64 {
                let k = encode(&(p as u64 * 1_000_000 + seq as u64 * 1000 + i)).unwrap();
                if partition_of(&k, 2) != p {
                    continue;
                }
                push_pair(&mut body, &k, &encode(&i).unwrap());
                expected.push((p as u64 * 1_000_000 + seq as u64 * 1000 + i, i));
            }
            let mut h = key.header(TABLE);
            h.total_partitions = 2;
            h.partition_id = p as i32;
            h.batch_seq = seq;
            if seq == 2 {
                h.stage = FINISH.into();
            }
            packets.push(key.packet(&h, body));
        }
    }
    let mut client = DataTransferServiceClient::connect(format!("http://{}", a.addr()))
        .await
        .unwrap();
    for _ in 0..2 {
        client
            .push(tokio_stream::iter(packets.clone()))
            .await
            .unwrap();
    }
    // And once more, only the first half (a retry that broke off) is harmless too.
    client
        .push(tokio_stream::iter(packets[..3].to_vec()))
        .await
        .unwrap();
    let fb = federation(&b, "job3", "host", "10000");
    let ctx = RollPairContext::standalone(data(dir.path(), "b")).unwrap();
    let got: Vec<RollPair<u64, u64>> = fb.get_table(&ctx, "t", "0", &[guest()]).await.unwrap();
    let mut all: Vec<(u64, u64)> = got[0].get_all().unwrap().map(Result::unwrap).collect();
    all.sort();
    expected.sort();
    assert_eq!(all, expected);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_sent_in_the_wrong_partition_is_a_clear_error() {
    let dir = dir();
    let (a, b) = pair(dir.path()).await;
    let key = eggroll_tests::rollsites::key("job4", "t");
    // Well framed, but partition 0 carries a key that hashes to partition 1 of 2: the raw
    // write must refuse it rather than store it where no get would find it.
    let stray = (0u64..)
        .map(|i| encode(&i).unwrap())
        .find(|k| partition_of(k, 2) == 1)
        .unwrap();
    let mut packets = Vec::new();
    for p in 0..2u32 {
        let mut body = Vec::new();
        if p == 0 {
            push_pair(&mut body, &stray, &encode(&1u64).unwrap());
        }
        let mut h = key.header(TABLE);
        h.total_partitions = 2;
        h.partition_id = p as i32;
        h.stage = FINISH.into();
        packets.push(key.packet(&h, body));
    }
    let mut client = DataTransferServiceClient::connect(format!("http://{}", a.addr()))
        .await
        .unwrap();
    client.push(tokio_stream::iter(packets)).await.unwrap();
    let fb = federation(&b, "job4", "host", "10000");
    let ctx = RollPairContext::standalone(data(dir.path(), "b")).unwrap();
    let err = fb
        .get_table::<u64, u64>(&ctx, "t", "0", &[guest()])
        .await
        .err()
        .expect("a stray key must fail the get");
    let msg = err.to_string();
    assert!(
        msg.contains("sent in partition 0 belongs to partition 1 of 2"),
        "{msg}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_between_remote_and_get_loses_nothing() {
    let dir = dir();
    let (ca, cb) = host_on_a_fixed_port(dir.path());
    let a = start(&ca).await;
    let b = start(&cb).await;
    set_routes(&a, &ca, json!({"10000": to(b.addr())}));
    let fa = federation(&a, "job4", "guest", "9999");
    let ctx_a = RollPairContext::standalone(data(dir.path(), "a")).unwrap();
    let table: RollPair<String, u32> = ctx_a
        .parallelize(
            (0..20_000u32).map(|i| (format!("k{i}"), i)),
            Options::partitions(4),
        )
        .unwrap();
    let blob = pattern(3 << 20, 3);
    fa.remote_bytes(blob.clone(), "blob", "0", &[host()])
        .await
        .unwrap();
    fa.remote_table(&table, "table", "0", &[host()])
        .await
        .unwrap();

    b.shutdown().await;
    let b = start(&cb).await;
    let fb = federation(&b, "job4", "host", "10000");
    assert_eq!(
        fb.get_bytes("blob", "0", &[guest()]).await.unwrap(),
        vec![blob]
    );
    let ctx_b = RollPairContext::standalone(data(dir.path(), "b")).unwrap();
    let got: Vec<RollPair<String, u32>> = fb
        .get_table(&ctx_b, "table", "0", &[guest()])
        .await
        .unwrap();
    let mut g: Vec<(String, u32)> = got[0].get_all().unwrap().map(Result::unwrap).collect();
    let mut s: Vec<(String, u32)> = table.get_all().unwrap().map(Result::unwrap).collect();
    g.sort();
    s.sort();
    assert_eq!(g, s);
    a.shutdown().await;
    b.shutdown().await;
}

/// Waits up to 20 s for the route watcher to make `cond` true.
async fn eventually(cond: impl Fn() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the route table watcher did not pick up the change in 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn route_changes_are_picked_up_and_bad_files_keep_the_old_table() {
    let dir = dir();
    let (ca, cb) = host_on_a_fixed_port(dir.path());
    let port_b = cb.rollsite.port;
    let a = start(&ca).await;
    // A's route to 10000 points at a port where nothing listens.
    let dead = free_port();
    std::fs::write(
        &ca.rollsite.route_table,
        json!({"route_table": {"10000": {"default": [{"ip": "127.0.0.1", "port": dead}]}}})
            .to_string(),
    )
    .unwrap();
    let routes_to = |port: u16| {
        let site = a.site().clone();
        move || {
            site.routes
                .table()
                .explicit("10000", "host")
                .is_some_and(|r| r.port == port)
        }
    };
    eventually(routes_to(dead)).await;
    let fa = federation(&a, "job5", "guest", "9999");
    let err = fa
        .remote(&1u8, "x", "0", &[host()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{dead}"))
            && err.contains("Unavailable")
            && err.contains("retries"),
        "{err}"
    );

    // A bad edit is refused with its line, and routing goes on with the table in force.
    std::fs::write(
        &ca.rollsite.route_table,
        "{\n \"route_table\": {\n  \"10000\": [\n}",
    )
    .unwrap();
    let site = a.site().clone();
    eventually(move || site.routes.last_error().is_some()).await;
    let why = a
        .site()
        .routes
        .last_error()
        .expect("the bad file is reported");
    assert!(why.contains("line 3") && why.contains("keeping"), "{why}");
    assert!(
        a.site()
            .routes
            .table()
            .explicit("10000", "host")
            .unwrap()
            .port
            == dead
    );

    // The fix is picked up by the watcher, without a restart.
    let b = start(&cb).await;
    std::fs::write(
        &ca.rollsite.route_table,
        json!({"route_table": {"10000": {"default": [{"ip": "127.0.0.1", "port": port_b}]}}})
            .to_string(),
    )
    .unwrap();
    eventually(routes_to(port_b)).await;
    assert!(a.site().routes.last_error().is_none());
    fa.remote(&2u8, "x", "1", &[host()]).await.unwrap();
    let fb = federation(&b, "job5", "host", "10000");
    assert_eq!(fb.get::<u8>("x", "1", &[guest()]).await.unwrap(), vec![2]);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_remote_retries_until_the_peer_comes_up() {
    let dir = dir();
    let (ca, cb) = host_on_a_fixed_port(dir.path());
    let a = start(&ca).await;
    set_routes(
        &a,
        &ca,
        json!({"10000": {"default": [{"ip": "127.0.0.1", "port": cb.rollsite.port}]}}),
    );
    let mut opts = options();
    opts.max_retry = 6;
    opts.long_retry = 2;
    opts.retry_wait = Duration::from_millis(100);
    opts.long_retry_wait = Duration::from_millis(1000);
    let fa = federation_with(&a, "job6", "guest", "9999", opts);
    let sending = tokio::spawn(async move { fa.remote(&"late", "x", "0", &[host()]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = start(&cb).await;
    sending.await.unwrap().unwrap();
    let fb = federation(&b, "job6", "host", "10000");
    assert_eq!(
        fb.get::<String>("x", "0", &[guest()]).await.unwrap(),
        vec!["late"]
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_process_federations_skip_the_local_hop() {
    let dir = dir();
    let (a, b) = pair(dir.path()).await;
    let fa =
        eggroll_federation::Federation::in_process(a.site(), "job7", guest(), options()).unwrap();
    let fb =
        eggroll_federation::Federation::in_process(b.site(), "job7", host(), options()).unwrap();
    let blob = pattern(9 << 20, 13);
    fa.remote_bytes(blob.clone(), "b", "0", &[host()])
        .await
        .unwrap();
    assert_eq!(
        fb.get_bytes("b", "0", &[guest()]).await.unwrap(),
        vec![blob]
    );
    let ctx_b = RollPairContext::standalone(data(dir.path(), "b")).unwrap();
    let ctx_a = RollPairContext::standalone(data(dir.path(), "a")).unwrap();
    let t: RollPair<u32, u32> = ctx_b
        .parallelize((0..10_000u32).map(|i| (i, i * 2)), Options::partitions(3))
        .unwrap();
    fb.remote_table(&t, "t", "0", &[guest()]).await.unwrap();
    let got: Vec<RollPair<u32, u32>> = fa.get_table(&ctx_a, "t", "0", &[host()]).await.unwrap();
    let s: Vec<(u32, u32)> = t.get_all().unwrap().map(Result::unwrap).collect();
    let g: Vec<(u32, u32)> = got[0].get_all().unwrap().map(Result::unwrap).collect();
    assert_eq!(s, g);
    // An in-process federation whose roll-site stopped fails as unavailable, not a hang.
    a.shutdown().await;
    let mut quick = options();
    quick.max_retry = 1;
    let fa = eggroll_federation::Federation::in_process(b.site(), "job7", guest(), quick).unwrap();
    b.shutdown().await;
    let err = fa.remote(&1u8, "x", "0", &[host()]).await.unwrap_err();
    assert!(err.to_string().contains("stopped"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn route_service_answers_where_a_party_goes() {
    use eggroll_proto::proxy::route_service_client::RouteServiceClient;
    use eggroll_proto::proxy::Topic;
    let dir = dir();
    let (a, b) = pair(dir.path()).await;
    let mut c = RouteServiceClient::connect(format!("http://{}", a.addr()))
        .await
        .unwrap();
    let topic = |party: &str| Topic {
        party_id: party.into(),
        role: "host".into(),
        ..Default::default()
    };
    let ep = c.query(topic("10000")).await.unwrap().into_inner();
    assert_eq!(
        (ep.ip.as_str(), ep.port),
        ("127.0.0.1", b.addr().port() as i32)
    );
    let ep = c.query(topic("9999")).await.unwrap().into_inner();
    assert_eq!(ep.port, a.addr().port() as i32);
    let err = c.query(topic("31337")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("31337"), "{err:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abort_fails_the_peers_waiting_gets_at_once_with_its_reason() {
    let dir = dir();
    let (a, b) = pair(dir.path()).await;
    // Gets that would wait 30 s for data.
    let fa = federation(&a, "job-abort", "guest", "9999");
    let fb = federation(&b, "job-abort", "host", "10000");
    let fb_in =
        eggroll_federation::Federation::in_process(b.site(), "job-abort", host(), options())
            .unwrap();
    let started = std::time::Instant::now();
    let over_grpc = tokio::spawn({
        let fb = fb.clone();
        async move { fb.get_bytes("weights", "3", &[guest()]).await }
    });
    let in_process = tokio::spawn(async move { fb_in.get::<u64>("loss", "3", &[guest()]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    fa.abort("out of memory in phase 3 — ошибка", &[host()])
        .await
        .unwrap();
    for err in [
        over_grpc.await.unwrap().unwrap_err().to_string(),
        in_process.await.unwrap().unwrap_err().to_string(),
    ] {
        assert!(
            err.contains("aborted session job-abort")
                && err.contains("out of memory in phase 3 — ошибка")
                && err.contains("9999"),
            "{err}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Later gets of the session fail at once too; other sessions are untouched.
    let err = fb.get::<u64>("next", "4", &[guest()]).await.unwrap_err();
    assert!(err.to_string().contains("aborted"), "{err}");
    let fa2 = federation(&a, "job-other", "guest", "9999");
    let fb2 = federation(&b, "job-other", "host", "10000");
    fa2.remote(&7u64, "x", "0", &[host()]).await.unwrap();
    assert_eq!(fb2.get::<u64>("x", "0", &[guest()]).await.unwrap(), vec![7]);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_get_fails_soon_after_its_peers_signs_of_life_stop_but_waits_for_a_slow_live_one() {
    let dir = dir();
    // Parties gone after 1.5 s without a heartbeat; heartbeats every 0.3 s; gets idle 30 s.
    let (mut ca, mut cb) = (config(dir.path(), "9999"), config(dir.path(), "10000"));
    for c in [&mut ca, &mut cb] {
        c.rollsite.liveness_timeout_ms = 1500;
        c.rollsite.heartbeat_interval_ms = 300;
    }
    let (a, b) = (start(&ca).await, start(&cb).await);
    set_routes(&a, &ca, json!({"10000": to(b.addr())}));
    set_routes(&b, &cb, json!({"9999": to(a.addr())}));
    let opts = eggroll_federation::FederationOptions {
        heartbeat_interval: Duration::from_millis(300),
        ..options()
    };
    let fa = federation_with(&a, "job-live", "guest", "9999", opts.clone());
    let fb = federation_with(&b, "job-live", "host", "10000", opts.clone());
    fa.remote(&1u64, "hello", "0", &[host()]).await.unwrap();
    assert_eq!(
        fb.get::<u64>("hello", "0", &[guest()]).await.unwrap(),
        vec![1]
    );

    // A slow peer that lives: its remote comes after two liveness bounds, and the get has it.
    let slow = tokio::spawn({
        let fa = fa.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(3500)).await;
            fa.remote(&2u64, "late", "0", &[host()]).await
        }
    });
    assert_eq!(
        fb.get::<u64>("late", "0", &[guest()]).await.unwrap(),
        vec![2]
    );
    slow.await.unwrap().unwrap();

    // The guest's job is gone (its context, heartbeats and all): the host's get fails within
    // the bound, not the 30 s idle timeout, naming the guest and what was awaited.
    drop(fa);
    let started = std::time::Instant::now();
    let err = fb
        .get::<u64>("weights", "7", &[guest()])
        .await
        .unwrap_err()
        .to_string();
    let took = started.elapsed();
    assert!(
        err.contains("party 9999 (role guest) gave no sign of life for 1.5 s")
            && err.contains("\"weights\" tag \"7\"")
            && err.contains("session job-live"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}: {err}");

    // A party never heard from is judged by the idle timeout alone (it may not have started).
    let quiet = federation_with(
        &b,
        "job-quiet",
        "host",
        "10000",
        eggroll_federation::FederationOptions {
            get_idle_timeout: Duration::from_secs(3),
            ..opts
        },
    );
    let err = quiet
        .get::<u64>("x", "0", &[guest()])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no data of") && err.contains("3.0 s"), "{err}");
    a.shutdown().await;
    b.shutdown().await;
}
