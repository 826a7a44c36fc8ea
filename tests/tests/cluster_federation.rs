//! `remote_table` from a cluster: every egg pushes its own partitions to the party's
//! roll-site (real daemons and real roll-sites on 127.0.0.1), and the receiver's table equals
//! the sender's pair by pair, in the same partitions.

use eggroll_core::codec::Bytes;
use eggroll_federation::{Federation, FederationOptions};
use eggroll_rollpair::{Options, RollPair, RollPairContext};
use eggroll_tests::cluster::{walk, TestCluster};
use eggroll_tests::rollsites::{guest, host, pair, runtime, shutdown};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every pair of a table, partition by partition, encoded.
fn by_partition<K, V>(t: &RollPair<K, V>) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    (0..t.partitions())
        .map(|p| {
            let mut pairs = Vec::new();
            t.scan_encoded(p, &mut |k, v| {
                pairs.push((k.to_vec(), v.to_vec()));
                Ok(true)
            })
            .unwrap();
            pairs
        })
        .collect()
}

/// The lines of a session's egg logs that report a pushed partition.
fn pushed_lines(cluster: &TestCluster, ctx: &RollPairContext) -> usize {
    cluster
        .egg_logs(ctx.session_id())
        .matches("partition pushed to the roll-site")
        .count()
}

#[test]
fn eggs_push_their_partitions_and_the_receiver_gets_the_same_table() {
    let cluster = TestCluster::shared();
    let ctx = cluster.connect();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let _rt = rt.enter();
    let (a, b) = rt.block_on(pair(dir.path(), None));
    // Small batches: many streams per partition.
    let opts = FederationOptions {
        batch_body_bytes: 64 << 10,
        batches_per_stream: 3,
        ..Default::default()
    };
    let fa = Federation::connect(&a.address(), "fed1", guest(), opts.clone()).unwrap();
    let fb = Federation::in_process(b.site.site(), "fed1", host(), opts).unwrap();
    let receiver = RollPairContext::standalone(dir.path().join("host-data")).unwrap();

    // Unicode and binary keys, an empty value, a 1 MiB value, duplicate keys (last wins).
    let mut data: Vec<(String, Bytes)> = (0..40_000u32)
        .map(|i| {
            (
                format!("id-{i}-ключ-🔑"),
                Bytes(i.to_be_bytes().repeat(i as usize % 9)),
            )
        })
        .collect();
    data.push(("big".into(), Bytes(vec![0xa5; 1 << 20])));
    data.push(("id-7-ключ-🔑".into(), Bytes(b"again".to_vec())));
    data.push(("\u{0}\u{1}binary".into(), Bytes(Vec::new())));
    let mut reference = BTreeMap::new();
    for (k, v) in &data {
        reference.insert(k.clone(), v.clone());
    }
    let sent: RollPair<String, Bytes> = ctx
        .parallelize(data.clone(), Options::partitions(8))
        .unwrap();

    let bytes = rt
        .block_on(fa.remote_table(&sent, "t", "0", &[host()]))
        .unwrap();
    let got: Vec<RollPair<String, Bytes>> = rt
        .block_on(fb.get_table(&receiver, "t", "0", &[guest()]))
        .unwrap();
    let got = &got[0];
    assert_eq!(got.partitions(), 8);
    assert_eq!(
        by_partition(got),
        by_partition(&sent),
        "partition by partition"
    );
    let all: BTreeMap<String, Bytes> = got.get_all().unwrap().map(Result::unwrap).collect();
    assert_eq!(all, reference);
    let encoded: u64 = by_partition(&sent)
        .iter()
        .flatten()
        .map(|(k, v)| (k.len() + v.len() + 8) as u64)
        .sum();
    assert_eq!(bytes, encoded, "bytes reported by the eggs");
    // Every partition was pushed by an egg, not by this client.
    assert_eq!(pushed_lines(cluster, &ctx), 8, "{}", cluster.logs());

    // An empty table: every partition still sends its finish mark.
    let empty: RollPair<String, Bytes> =
        ctx.parallelize(Vec::new(), Options::partitions(3)).unwrap();
    rt.block_on(fa.remote_table(&empty, "e", "0", &[host()]))
        .unwrap();
    let got: Vec<RollPair<String, Bytes>> = rt
        .block_on(fb.get_table(&receiver, "e", "0", &[guest()]))
        .unwrap();
    assert_eq!((got[0].partitions(), got[0].count().unwrap()), (3, 0));

    rt.block_on(shutdown(a, b));
}

#[test]
fn a_roll_site_with_a_cluster_manager_writes_received_tables_into_its_eggs_on_arrival() {
    let cluster = TestCluster::shared();
    let ctx = cluster.connect();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let _rt = rt.enter();
    let (a, b) = rt.block_on(pair(dir.path(), Some(cluster.address())));
    let opts = FederationOptions {
        batch_body_bytes: 64 << 10,
        batches_per_stream: 3,
        ..Default::default()
    };
    let fa = Federation::connect(&a.address(), "fed3", guest(), opts.clone()).unwrap();
    let fb = Federation::connect(&b.address(), "fed3", host(), opts).unwrap();
    let data: Vec<(String, Bytes)> = (0..30_000u32)
        .map(|i| {
            (
                format!("ключ-{i}"),
                Bytes(i.to_le_bytes().repeat(i as usize % 5)),
            )
        })
        .chain([("\u{0}bin".to_string(), Bytes(Vec::new()))])
        .collect();
    let reference: BTreeMap<String, Bytes> = data.iter().cloned().collect();
    let sent: RollPair<String, Bytes> = ctx
        .parallelize(data.clone(), Options::partitions(5))
        .unwrap();
    rt.block_on(fa.remote_table(&sent, "t", "0", &[host()]))
        .unwrap();

    // Acknowledged means in the eggs already: the inbox table holds every pair, in its
    // partition, before any get; the roll-site's buffer holds markers only, no batch files.
    let key = eggroll_tests::rollsites::key("fed3", "t");
    let name = eggroll_rollsite::buffer::transfer_name(&key.rs_key());
    let inbox: RollPair<String, Bytes> =
        ctx.load(eggroll_rollsite::inbox::NAMESPACE, &name).unwrap();
    assert_eq!(
        by_partition(&inbox),
        by_partition(&sent),
        "partition by partition"
    );
    assert_eq!(walk(&b.config.rollsite.buffer_dir.join("blobs")).len(), 0);

    // The get hands that table over, equal to the sender's.
    let got: Vec<RollPair<String, Bytes>> = rt
        .block_on(fb.get_table(&ctx, "t", "0", &[guest()]))
        .unwrap();
    assert_eq!(got[0].name(), name);
    let all: BTreeMap<String, Bytes> = got[0].get_all().unwrap().map(Result::unwrap).collect();
    assert_eq!(all, reference);

    // A standalone receiver is told where the table is and how to get it.
    rt.block_on(fa.remote_table(&sent, "t2", "0", &[host()]))
        .unwrap();
    let standalone = RollPairContext::standalone(dir.path().join("host-data")).unwrap();
    let err = rt
        .block_on(fb.get_table::<String, Bytes>(&standalone, "t2", "0", &[guest()]))
        .err()
        .expect("a standalone context cannot take a table in the eggs")
        .to_string();
    assert!(err.contains("connected to that cluster"), "{err}");

    rt.block_on(shutdown(a, b));
}

#[test]
fn an_egg_that_cannot_reach_the_roll_site_fails_the_remote_with_its_address() {
    let cluster = TestCluster::shared();
    let ctx = cluster.connect();
    let rt = runtime();
    let _rt = rt.enter();
    // A port nobody listens on.
    let addr = format!("127.0.0.1:{}", eggroll_tests::free_port());
    let opts = FederationOptions {
        max_retry: 2,
        long_retry: 0,
        retry_wait: Duration::from_millis(50),
        connect_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let fa = Federation::connect(&addr, "fed2", guest(), opts).unwrap();
    let t: RollPair<u32, u32> = ctx
        .parallelize((0..100).map(|i| (i, i)), Options::partitions(4))
        .unwrap();
    let err = rt
        .block_on(fa.remote_table(&t, "t", "0", &[host()]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&addr) && err.contains("after 2 retries") && err.contains("eggroll rollsite"),
        "{err}"
    );
    eprintln!("remote_table to a dead roll-site: {err}");
    // The session still serves.
    assert_eq!(t.count().unwrap(), 100);
}
