//! FATE's transfers through our roll-sites (`get_any`, `remote_byte_table`): a byte table
//! arrives as a byte table with the sender's FATE codes, partition count and placement (the
//! integer partitioner included), in the federation session's namespace; bytes arrive as
//! bytes; pushed from this process (standalone) and from a cluster's eggs alike.

use eggroll_federation::{Federation, FederationOptions, Received};
use eggroll_rollpair::{ByteTable, FateTypes, Options, RollPairContext};
use eggroll_tests::cluster::TestCluster;
use eggroll_tests::rollsites::{guest, host, pair, runtime, shutdown};

/// Every pair of a byte table, partition by partition.
fn by_partition(t: &ByteTable) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    (0..t.partitions())
        .map(|p| t.partition(p).unwrap())
        .collect()
}

/// FATE's integer-keyed table: 8-byte keys placed by the integer partitioner, values of
/// every size (empty included), a key sent twice (the later wins).
fn fate_table(ctx: &RollPairContext) -> ByteTable {
    let types = FateTypes {
        key_serdes_type: 2,
        value_serdes_type: 0,
        partitioner_type: 1,
    };
    let t = ctx.create_bytes(Options::partitions(5), types).unwrap();
    let mut data: Vec<(Vec<u8>, Vec<u8>)> = (0..20_000u64)
        .map(|i| (i.to_le_bytes().to_vec(), vec![i as u8; (i % 37) as usize]))
        .collect();
    data.push((7u64.to_le_bytes().to_vec(), b"again".to_vec()));
    t.put_all(data).unwrap();
    t
}

fn check_received(got: Received, sent: &ByteTable, session: &str) {
    let Received::Table(t) = got else {
        panic!("a byte table arrived as an object")
    };
    assert_eq!(
        t.types(),
        sent.types(),
        "FATE's codes travel with the table"
    );
    assert_eq!(t.partitions(), sent.partitions());
    assert_eq!(
        t.namespace(),
        session,
        "in the federation session's namespace"
    );
    assert_eq!(
        by_partition(&t),
        by_partition(sent),
        "partition by partition"
    );
    assert_eq!(t.get(&7u64.to_le_bytes()).unwrap(), Some(b"again".to_vec()));
}

#[test]
fn byte_tables_and_bytes_arrive_as_they_were_sent() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let _rt = rt.enter();
    let (a, b) = rt.block_on(pair(dir.path(), None));
    let opts = FederationOptions {
        batch_body_bytes: 32 << 10,
        ..Default::default()
    };
    let fa = Federation::connect(&a.address(), "fate-fed", guest(), opts.clone()).unwrap();
    let fb = Federation::connect(&b.address(), "fate-fed", host(), opts).unwrap();
    let sender = RollPairContext::standalone(dir.path().join("guest-data")).unwrap();
    let receiver = RollPairContext::standalone(dir.path().join("host-data")).unwrap();

    // From this process (a standalone sender reads and pushes its partitions itself).
    let sent = fate_table(&sender);
    rt.block_on(fa.remote_byte_table(&sent, "t", "0", &[host()]))
        .unwrap();
    let got = rt
        .block_on(fb.get_any(&receiver, "t", "0", &guest()))
        .unwrap();
    check_received(got, &sent, "fate-fed");

    // Bytes of any size, an empty object included.
    for (tag, len) in [("big", 3 * (32 << 10) + 5), ("empty", 0)] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        rt.block_on(fa.remote_bytes(data.clone(), "o", tag, &[host()]))
            .unwrap();
        match rt
            .block_on(fb.get_any(&receiver, "o", tag, &guest()))
            .unwrap()
        {
            Received::Object(b) => assert_eq!(&b[..], &data[..], "{tag}"),
            Received::Table(_) => panic!("bytes arrived as a table"),
        }
    }

    // A table of the typed API is not a byte table: get_any says how to receive it.
    let typed: eggroll_rollpair::RollPair<String, u32> = sender
        .parallelize(vec![("a".to_string(), 1u32)], Options::partitions(2))
        .unwrap();
    rt.block_on(fa.remote_table(&typed, "typed", "0", &[host()]))
        .unwrap();
    let err = rt
        .block_on(fb.get_any(&receiver, "typed", "0", &guest()))
        .err()
        .expect("a typed table is refused")
        .to_string();
    assert!(err.contains("get_table"), "{err}");

    rt.block_on(shutdown(a, b));
}

/// Sends a FATE table from a session on the shared cluster (its eggs push) to the host, whose
/// roll-site writes received tables into that cluster's eggs when `inbox`; the host receives
/// it into a cluster session too. Returns what was sent and what arrived.
fn send_from_cluster(session: &str, inbox: bool) -> (ByteTable, Received) {
    let cluster = TestCluster::shared();
    let ctx = cluster.connect();
    let receiver = cluster.connect();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let _rt = rt.enter();
    let (a, b) = rt.block_on(pair(dir.path(), inbox.then(|| cluster.address())));
    let opts = FederationOptions::default();
    let fa = Federation::connect(&a.address(), session, guest(), opts.clone()).unwrap();
    let fb = Federation::connect(&b.address(), session, host(), opts).unwrap();
    let sent = fate_table(&ctx);
    rt.block_on(fa.remote_byte_table(&sent, "t", "0", &[host()]))
        .unwrap();
    let got = rt
        .block_on(fb.get_any(&receiver, "t", "0", &guest()))
        .unwrap();
    rt.block_on(shutdown(a, b));
    (sent, got)
}

#[test]
fn a_byte_table_pushed_by_the_eggs_lands_in_the_receivers_cluster() {
    let (sent, got) = send_from_cluster("fate-fed2", false);
    check_received(got, &sent, "fate-fed2");
}

#[test]
fn a_roll_site_that_writes_into_its_eggs_keeps_a_byte_tables_codes() {
    let (sent, got) = send_from_cluster("fate-fed3", true);
    let Received::Table(t) = got else {
        panic!("a byte table arrived as an object")
    };
    // Handed over from the roll-site's inbox: its own namespace, the sender's codes and pairs.
    assert_eq!(t.namespace(), eggroll_rollsite::inbox::NAMESPACE);
    assert_eq!(t.types(), sent.types());
    assert_eq!(
        by_partition(&t),
        by_partition(&sent),
        "partition by partition"
    );
}
