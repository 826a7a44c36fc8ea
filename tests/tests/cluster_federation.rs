//! `remote_table` from a cluster: every egg pushes its own partitions to the party's
//! roll-site (real daemons and real roll-sites on 127.0.0.1), and the receiver's table equals
//! the sender's pair by pair, in the same partitions.

mod suite;

use eggroll_core::codec::Bytes;
use eggroll_core::config::EggrollConfig;
use eggroll_federation::{Federation, FederationOptions, Party};
use eggroll_rollpair::{Options, RollPair, RollPairContext};
use eggroll_rollsite::RollSite;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use suite::cluster::TestCluster;

fn guest() -> Party {
    Party::new("guest", "9999")
}
fn host() -> Party {
    Party::new("host", "10000")
}

fn loopback(site: &RollSite) -> String {
    format!("127.0.0.1:{}", site.addr().port())
}

/// The runtime federation calls run on; enter it too: channels connect lazily on it.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Two roll-sites on free ports that route to each other; the second (party 10000) writes
/// received tables into the eggs of `cluster` when given.
async fn roll_sites(dir: &Path, cluster: Option<&str>) -> (RollSite, RollSite) {
    let mut configs = Vec::new();
    let mut sites = Vec::new();
    for party in ["9999", "10000"] {
        let mut c = EggrollConfig {
            data_dir: dir.join(format!("rollsite-{party}")),
            ..Default::default()
        };
        c.rollsite.party_id = party.into();
        c.rollsite.host = "127.0.0.1".into();
        c.rollsite.port = 0;
        c.rollsite.route_table = dir.join(format!("routes-{party}.json"));
        if party == "10000" {
            c.rollsite.cluster_manager = cluster.unwrap_or_default().into();
        }
        std::fs::write(&c.rollsite.route_table, r#"{"route_table": {}}"#).unwrap();
        sites.push(eggroll_rollsite::start(&c).await.unwrap());
        configs.push(c);
    }
    for (i, c) in configs.iter().enumerate() {
        let (other, to) = (
            &configs[1 - i].rollsite.party_id,
            sites[1 - i].addr().port(),
        );
        let table = format!(
            r#"{{"route_table": {{"{other}": {{"default": [{{"ip": "127.0.0.1", "port": {to}}}]}}}}}}"#
        );
        std::fs::write(&c.rollsite.route_table, table).unwrap();
        sites[i].site().routes.reload_if_changed();
    }
    let b = sites.pop().unwrap();
    (sites.pop().unwrap(), b)
}

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

/// The egg log lines that report a pushed partition.
fn pushed_lines(root: &Path) -> usize {
    let mut n = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|f| {
                let f = f.to_string_lossy();
                f.starts_with("egg-") && f.ends_with(".log")
            }) {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                n += text.matches("partition pushed to the roll-site").count();
            }
        }
    }
    n
}

#[test]
fn eggs_push_their_partitions_and_the_receiver_gets_the_same_table() {
    let cluster = TestCluster::start(Default::default());
    let ctx = cluster.connect();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let _rt = rt.enter();
    let (a, b) = rt.block_on(roll_sites(dir.path(), None));
    // Small batches: many streams per partition.
    let opts = FederationOptions {
        batch_body_bytes: 64 << 10,
        batches_per_stream: 3,
        ..Default::default()
    };
    let fa = Federation::connect(&loopback(&a), "fed1", guest(), opts.clone()).unwrap();
    let fb = Federation::in_process(b.site(), "fed1", host(), opts).unwrap();
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
    assert_eq!(pushed_lines(cluster.root.path()), 8, "{}", cluster.logs());

    // An empty table: every partition still sends its finish mark.
    let empty: RollPair<String, Bytes> =
        ctx.parallelize(Vec::new(), Options::partitions(3)).unwrap();
    rt.block_on(fa.remote_table(&empty, "e", "0", &[host()]))
        .unwrap();
    let got: Vec<RollPair<String, Bytes>> = rt
        .block_on(fb.get_table(&receiver, "e", "0", &[guest()]))
        .unwrap();
    assert_eq!((got[0].partitions(), got[0].count().unwrap()), (3, 0));

    rt.block_on(async {
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// Regular files below `dir`.
fn files_below(dir: &Path) -> usize {
    let mut n = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_roll_site_with_a_cluster_manager_writes_received_tables_into_its_eggs_on_arrival() {
    let cluster = TestCluster::start(Default::default());
    let ctx = cluster.connect();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let _rt = rt.enter();
    let (a, b) = rt.block_on(roll_sites(dir.path(), Some(&cluster.cm.address)));
    let opts = FederationOptions {
        batch_body_bytes: 64 << 10,
        batches_per_stream: 3,
        ..Default::default()
    };
    let fa = Federation::connect(&loopback(&a), "fed3", guest(), opts.clone()).unwrap();
    let fb = Federation::connect(&loopback(&b), "fed3", host(), opts).unwrap();
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
    let key = eggroll_rollsite::packet::TransferKey {
        session: "fed3".into(),
        name: "t".into(),
        tag: "0".into(),
        src_role: "guest".into(),
        src_party: "9999".into(),
        dst_role: "host".into(),
        dst_party: "10000".into(),
    };
    let name = eggroll_rollsite::buffer::transfer_name(&key.rs_key());
    let inbox: RollPair<String, Bytes> =
        ctx.load(eggroll_rollsite::inbox::NAMESPACE, &name).unwrap();
    assert_eq!(
        by_partition(&inbox),
        by_partition(&sent),
        "partition by partition"
    );
    assert_eq!(
        files_below(
            &dir.path()
                .join("rollsite-10000")
                .join("rollsite")
                .join("blobs")
        ),
        0
    );

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

    rt.block_on(async {
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn an_egg_that_cannot_reach_the_roll_site_fails_the_remote_with_its_address() {
    let cluster = TestCluster::start(Default::default());
    let ctx = cluster.connect();
    let rt = runtime();
    let _rt = rt.enter();
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
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
