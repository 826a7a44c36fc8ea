//! Every roll-pair operation against a plain reference (HashMap, Vec) computed here, on real
//! RocksDB and in-memory partitions: one suite, two back ends. Each test runs in standalone
//! mode and on a real cluster (a cluster manager and two node managers as separate processes,
//! with egg-pair processes per session), one cluster shared by the tests of this file.

use eggroll_core::config::EggrollConfig;
use eggroll_core::functions::builtin::{SumI64, SumU64};
use eggroll_core::functions::{Function, MapValues, Reduce};
use eggroll_core::partitioner::Partitioner;
use eggroll_rollpair::{Options, RollPair, RollPairContext};
use eggroll_tests::cluster::TestCluster;
use eggroll_tests::functions::*;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// What keeps a back end alive while a test uses it.
enum Backend {
    Standalone(tempfile::TempDir),
    /// Standalone with a memory budget so small that in-memory partitions spill to disk.
    Spilling(tempfile::TempDir),
    Cluster(&'static TestCluster),
}

impl Backend {
    fn standalone() -> Self {
        Backend::Standalone(tempfile::tempdir().unwrap())
    }

    fn cluster() -> Self {
        Backend::Cluster(TestCluster::shared())
    }

    /// A new session on this back end.
    fn ctx(&self) -> RollPairContext {
        let standalone = |dir: &tempfile::TempDir, spilling: bool| {
            let mut config = EggrollConfig::load(None).unwrap();
            config.data_dir = dir.path().to_path_buf();
            // Tiny bulk-load runs: a put_all into a new stored table is sorted into several
            // files (or, when tiny, written as a batch), so every op below also checks what
            // bulk loads leave.
            config.storage.bulk_run_bytes = 2048;
            if spilling {
                config.storage.memory_budget_bytes = 16 << 10;
            }
            RollPairContext::standalone_with(&config).unwrap()
        };
        match self {
            Backend::Standalone(dir) => standalone(dir, false),
            Backend::Spilling(dir) => standalone(dir, true),
            Backend::Cluster(c) => c.connect(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Standalone(_) => "standalone",
            Backend::Spilling(_) => "standalone, spilling",
            Backend::Cluster(_) => "cluster",
        }
    }
}

/// Every back end, standalone first: standalone, standalone past a tiny memory budget (in-memory
/// partitions spill to disk), a cluster.
fn backends() -> Vec<Backend> {
    vec![
        Backend::standalone(),
        Backend::Spilling(tempfile::tempdir().unwrap()),
        Backend::cluster(),
    ]
}

fn all<
    K: Ord + Serialize + serde::de::DeserializeOwned + Send + 'static,
    V: Serialize + serde::de::DeserializeOwned + Send + 'static,
>(
    t: &RollPair<K, V>,
) -> BTreeMap<K, V> {
    let pairs: Vec<(K, V)> = t.get_all().unwrap().collect::<Result<_, _>>().unwrap();
    let n = pairs.len();
    let map: BTreeMap<K, V> = pairs.into_iter().collect();
    assert_eq!(map.len(), n, "get_all returned a key twice");
    map
}

/// Runs every single-table and two-table op on `data` and compares with a reference.
fn check_all_ops(
    ctx: &RollPairContext,
    data: &[(i64, i64)],
    parts: u32,
    other_parts: u32,
    persistent: bool,
) {
    let reference: BTreeMap<i64, i64> = data.iter().cloned().collect(); // last duplicate wins
    let opts = if persistent {
        Options::persistent("tests", &format!("t{parts}_{}", data.len()), parts)
    } else {
        Options::partitions(parts)
    };
    let t = ctx.parallelize(data.iter().cloned(), opts).unwrap();
    assert_eq!(all(&t), reference);
    assert_eq!(t.count().unwrap(), reference.len() as u64);
    for (k, v) in reference.iter().take(20) {
        assert_eq!(t.get(k).unwrap(), Some(*v));
    }
    assert_eq!(t.get(&i64::MIN).unwrap(), reference.get(&i64::MIN).cloned());

    // take / first: n distinct pairs of the table.
    let taken = t.take(7).unwrap();
    assert_eq!(taken.len(), reference.len().min(7));
    for (k, v) in &taken {
        assert_eq!(reference.get(k), Some(v));
    }
    assert_eq!(t.take_keys(3).unwrap().len(), reference.len().min(3));
    assert_eq!(t.first().unwrap().is_some(), !reference.is_empty());

    let mapped = t.map_values(&AddTo { n: 10 }).unwrap();
    let expect: BTreeMap<i64, i64> = reference
        .iter()
        .map(|(k, v)| (*k, v.wrapping_add(10)))
        .collect();
    assert_eq!(all(&mapped), expect);

    let filtered = t.filter(&EvenKeys).unwrap();
    let expect: BTreeMap<i64, i64> = reference
        .iter()
        .filter(|(k, _)| *k % 2 == 0)
        .map(|(k, v)| (*k, *v))
        .collect();
    assert_eq!(all(&filtered), expect);

    // map with colliding keys: the key set is exact, each value is one of the candidates.
    let modded = all(&t.map(&ModKey { m: 7 }).unwrap());
    let mut candidates: HashMap<i64, Vec<i64>> = HashMap::new();
    for (k, v) in &reference {
        candidates.entry(k.rem_euclid(7)).or_default().push(*v);
    }
    assert_eq!(modded.len(), candidates.len());
    for (k, v) in &modded {
        assert!(candidates[k].contains(v));
    }

    let exploded = all(&t.flat_map(&Explode).unwrap());
    let expect: BTreeMap<String, i64> = reference
        .iter()
        .flat_map(|(k, v)| (0..k.rem_euclid(3)).map(move |i| (format!("{k}/{i}"), *v)))
        .collect();
    assert_eq!(exploded, expect);

    let buckets = all(&t.map_reduce_partitions(&Buckets, &SumI64).unwrap());
    let mut expect: BTreeMap<i64, i64> = BTreeMap::new();
    for v in reference.values() {
        *expect.entry(v.rem_euclid(5)).or_default() += 1;
    }
    assert_eq!(buckets, expect);

    // The same map, its output sent back rather than stored: every pair's, none combined.
    let mut returned = t.map_partitions_to_caller(&Buckets).unwrap();
    returned.sort_unstable();
    let mut expect: Vec<(i64, i64)> = reference.values().map(|v| (v.rem_euclid(5), 1)).collect();
    expect.sort_unstable();
    assert_eq!(returned, expect);

    let collapsed = all(&t.collapse_partitions(&SumPartition).unwrap());
    assert!(collapsed.len() <= parts as usize);
    assert_eq!(
        collapsed.values().fold(0i64, |a, b| a.wrapping_add(*b)),
        reference.values().fold(0i64, |a, b| a.wrapping_add(*b))
    );
    for k in collapsed.keys() {
        assert!(reference.contains_key(k));
    }

    let glommed = all(&t.glom().unwrap());
    let mut seen: BTreeMap<i64, i64> = BTreeMap::new();
    for (last, list) in glommed {
        assert_eq!(list.last().map(|(k, _)| *k), Some(last));
        seen.extend(list);
    }
    assert_eq!(seen, reference);

    assert_eq!(t.reduce(&Max).unwrap(), reference.values().max().cloned());
    let (n, s) = t.aggregate(&(0, 0), &CountAndSum, &AddPairs).unwrap();
    assert_eq!(n, reference.len() as u64);
    assert_eq!(s, reference.values().fold(0i64, |a, b| a.wrapping_add(*b)));

    let sample = all(&t.sample(0.5, 42).unwrap());
    assert_eq!(
        sample,
        all(&t.sample(0.5, 42).unwrap()),
        "same seed, same sample"
    );
    for (k, v) in &sample {
        assert_eq!(reference.get(k), Some(v));
    }
    assert!(all(&t.sample(0.0, 1).unwrap()).is_empty());
    assert_eq!(all(&t.sample(1.0, 1).unwrap()), reference);

    // Two-table ops against a table of another partition count.
    let right_ref: BTreeMap<i64, String> = reference
        .keys()
        .filter(|k| *k % 3 != 0)
        .map(|k| (*k, format!("ключ-{k}")))
        .chain([(i64::MAX, "only right".to_string())])
        .collect();
    let right = ctx
        .parallelize(right_ref.clone(), Options::partitions(other_parts))
        .unwrap();
    let joined = all(&t.join(&right, &Pair).unwrap());
    let expect: BTreeMap<i64, (i64, String)> = reference
        .iter()
        .filter_map(|(k, v)| right_ref.get(k).map(|w| (*k, (*v, w.clone()))))
        .collect();
    assert_eq!(joined, expect);

    let sub = all(&t.subtract_by_key(&right).unwrap());
    let expect: BTreeMap<i64, i64> = reference
        .iter()
        .filter(|(k, _)| !right_ref.contains_key(k))
        .map(|(k, v)| (*k, *v))
        .collect();
    assert_eq!(sub, expect);

    let other_ref: BTreeMap<i64, i64> = reference
        .iter()
        .filter(|(k, _)| *k % 2 == 0)
        .map(|(k, v)| (*k + 1, *v))
        .collect();
    let other = ctx
        .parallelize(other_ref.clone(), Options::partitions(other_parts))
        .unwrap();
    let unioned = all(&t.union(&other, &Max).unwrap());
    let mut expect = reference.clone();
    for (k, v) in &other_ref {
        let merged = expect.get(k).map_or(*v, |old| (*old).max(*v));
        expect.insert(*k, merged);
    }
    assert_eq!(unioned, expect);

    let re = t.repartition(other_parts).unwrap();
    assert_eq!(re.partitions(), other_parts);
    assert_eq!(all(&re), reference);
    for (k, v) in reference.iter().take(10) {
        assert_eq!(
            re.get(k).unwrap(),
            Some(*v),
            "repartitioned key lands in its partition"
        );
    }
}

#[test]
fn every_op_matches_reference_on_edge_shapes() {
    for backend in backends() {
        eprintln!("back end: {}", backend.name());
        let ctx = backend.ctx();
        let dup: Vec<(i64, i64)> = (0..500).map(|i| (i % 97, i)).collect();
        let spread: Vec<(i64, i64)> = (0..3000).map(|i| (i * 7919 - 1_000_000, i * 31)).collect();
        for persistent in [false, true] {
            check_all_ops(&ctx, &[], 1, 3, persistent);
            check_all_ops(&ctx, &[], 16, 1, persistent);
            check_all_ops(&ctx, &[(5, 6)], 1, 16, persistent);
            check_all_ops(&ctx, &dup, 16, 3, persistent);
            check_all_ops(&ctx, &spread, 4, 4, persistent);
            check_all_ops(&ctx, &spread, 16, 5, persistent);
        }
        ctx.stop().unwrap();
    }
}

#[test]
fn random_tables_match_reference() {
    for backend in backends() {
        // One session per back end; each case gets fresh in-memory tables.
        let ctx = backend.ctx();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(12));
        let strategy = (
            proptest::collection::vec((any::<i64>(), any::<i64>()), 0..300),
            1u32..17,
            1u32..17,
        );
        runner
            .run(&strategy, |(data, parts, other)| {
                check_all_ops(&ctx, &data, parts, other, false);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{} back end: {e}", backend.name()));
        ctx.stop().unwrap();
    }
}

#[test]
fn binary_unicode_and_large_values_round_trip() {
    for backend in backends() {
        binary_unicode_and_large_values(&backend.ctx());
    }
}

fn binary_unicode_and_large_values(ctx: &RollPairContext) {
    let mut reference: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    reference.insert(vec![], vec![]);
    reference.insert(vec![0, 0, 0], vec![0xff; 3]);
    reference.insert("键🙂".as_bytes().to_vec(), "значение".as_bytes().to_vec());
    reference.insert(vec![0xff; 40], vec![7u8; 1 << 20]);
    for i in 0..200u32 {
        reference.insert(
            i.to_be_bytes().to_vec(),
            vec![(i % 251) as u8; (i as usize * 37) % 5000],
        );
    }
    for parts in [1, 16] {
        let t = ctx
            .parallelize(
                reference.clone(),
                Options::persistent("tests", &format!("bin{parts}"), parts),
            )
            .unwrap();
        let got: HashMap<Vec<u8>, Vec<u8>> =
            t.get_all().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(got, reference);
        let lens: HashMap<Vec<u8>, u64> = t
            .map_values(&Len)
            .unwrap()
            .get_all()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(lens[&vec![0xff; 40]], 1 << 20);
        assert_eq!(lens.len(), reference.len());
    }
    let strings = ctx
        .parallelize(
            [
                ("ключ".to_string(), "值".to_string()),
                ("".into(), "empty key".into()),
            ],
            Options::partitions(3),
        )
        .unwrap();
    assert_eq!(
        strings.get(&"ключ".to_string()).unwrap().as_deref(),
        Some("值")
    );
    assert_eq!(
        strings.get(&String::new()).unwrap().as_deref(),
        Some("empty key")
    );
}

#[test]
fn put_get_delete_and_swap_bijection() {
    for backend in backends() {
        put_get_delete_and_swap(&backend.ctx());
    }
}

fn put_get_delete_and_swap(ctx: &RollPairContext) {
    let t: RollPair<i64, i64> = ctx.create(Options::partitions(4)).unwrap();
    for i in 0..100 {
        t.put(&i, &(i * i)).unwrap();
    }
    assert!(t.delete(&3).unwrap());
    assert!(!t.delete(&3).unwrap());
    assert_eq!(t.get(&3).unwrap(), None);
    assert_eq!(t.count().unwrap(), 99);
    let swapped = all(&t.map(&Swap).unwrap());
    let expect: BTreeMap<i64, i64> = (0..100).filter(|i| *i != 3).map(|i| (i * i, i)).collect();
    assert_eq!(swapped, expect);
    assert_eq!(
        t.map_values(&AddTo { n: 1 })
            .unwrap()
            .reduce(&SumI64)
            .unwrap(),
        Some(expect.keys().sum::<i64>() + 99)
    );
    let counted: Option<u64> = ctx
        .parallelize((0..10u64).map(|i| (i, i)), Options::partitions(3))
        .unwrap()
        .reduce(&SumU64)
        .unwrap();
    assert_eq!(counted, Some(45));
}

#[test]
fn an_in_memory_tables_name_can_be_made_again_right_after_its_destroy() {
    for backend in backends() {
        made_again_after_destroy(&backend.ctx(), backend.name());
    }
}

/// A cluster session sends an in-memory table's destroy without waiting for it: a table made
/// again under the same name must not lose the pairs written to it to that destroy.
fn made_again_after_destroy(ctx: &RollPairContext, backend: &str) {
    for round in 0..20i64 {
        let mut opts = Options::partitions(4);
        opts.name = Some("made-again".into());
        let t: RollPair<i64, i64> = ctx.create(opts).unwrap();
        t.put_all((0..50).map(|i| (i, i + round))).unwrap();
        let expect: BTreeMap<i64, i64> = (0..50).map(|i| (i, i + round)).collect();
        assert_eq!(all(&t), expect, "{backend}: round {round}");
        t.destroy().unwrap();
    }
}

/// The destroy tasks of `session` its eggs have done, from their metrics (found through the
/// cluster manager's targets at `cm_http`).
fn destroys_done(cm_http: &str, session: &str) -> f64 {
    use eggroll_tests::ops::get;
    let (_, targets) = get(cm_http, "/targets");
    let groups: serde_json::Value = serde_json::from_str(&targets).unwrap();
    let mut done = 0.0;
    for g in groups.as_array().unwrap() {
        if g["labels"]["role"] != "egg" || g["labels"]["session"] != session {
            continue;
        }
        let (_, metrics) = get(g["targets"][0].as_str().unwrap(), "/metrics");
        done += metrics
            .lines()
            .filter(|l| {
                l.starts_with("eggroll_egg_tasks_total{")
                    && l.contains("op=\"destroy\"")
                    && l.contains("outcome=\"ok\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    done
}

/// A cluster session's in-memory table's destroy goes out even while the client makes no
/// further call (before, it went out only with the next call, however late).
#[test]
fn an_in_memory_tables_destroy_goes_out_without_a_next_call() {
    let cluster = TestCluster::shared();
    let cm_http = eggroll_tests::ops::http_address(
        &cluster.root.path().join("clustermanager.log"),
        "clustermanager",
    );
    let ctx = cluster.connect();
    let session = ctx.session_id().to_string();
    let t = ctx
        .parallelize((0..100i64).map(|i| (i, i)), Options::partitions(4))
        .unwrap();
    let before = destroys_done(&cm_http, &session);
    t.destroy().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let done = destroys_done(&cm_http, &session);
        if done >= before + 4.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the eggs did 4 destroy tasks of {session} only when asked again: {before} -> {done}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ctx.stop().unwrap();
}

#[test]
fn persistent_tables_survive_a_new_session_and_cleanup_globs() {
    for backend in backends() {
        persistent_tables_survive(&backend);
    }
}

fn persistent_tables_survive(backend: &Backend) {
    let data: BTreeMap<String, Vec<u8>> = (0..2000)
        .map(|i| (format!("k{i}"), vec![i as u8; 100]))
        .collect();
    {
        let ctx = backend.ctx();
        let t = ctx
            .parallelize(data.clone(), Options::persistent("ns", "kept", 4))
            .unwrap();
        t.save_as(Options::persistent("ns", "copy_in_7", 7))
            .unwrap();
        ctx.parallelize([(1u8, 1u8)], Options::persistent("ns", "tmp_a", 2))
            .unwrap();
        ctx.parallelize([(1u8, 1u8)], Options::persistent("ns", "tmp_b", 2))
            .unwrap();
        ctx.stop().unwrap();
    }
    // A fresh context over the same dir reopens every RocksDB from its files, which is what
    // a new process does; on a cluster, a new session's eggs are new processes.
    let ctx = backend.ctx();
    let t: RollPair<String, Vec<u8>> = ctx.load("ns", "kept").unwrap();
    assert_eq!(all(&t), data);
    let c: RollPair<String, Vec<u8>> = ctx.load("ns", "copy_in_7").unwrap();
    assert_eq!(c.partitions(), 7);
    assert_eq!(all(&c), data);
    assert_eq!(ctx.cleanup("ns", "tmp_*").unwrap(), 2);
    assert!(ctx.load::<u8, u8>("ns", "tmp_a").is_err());
    if let Backend::Standalone(dir) | Backend::Spilling(dir) = backend {
        assert!(dir.path().join("ROCKSDB/ns/kept/3").is_dir());
    }
    t.destroy().unwrap();
    assert!(ctx.load::<String, Vec<u8>>("ns", "kept").is_err());
    match backend {
        Backend::Standalone(dir) | Backend::Spilling(dir) => {
            assert!(!dir.path().join("ROCKSDB/ns/kept").exists())
        }
        Backend::Cluster(c) => {
            for i in 0..2 {
                let dir = c.root.path().join(format!("node{i}/ROCKSDB/ns/kept"));
                assert!(!dir.exists(), "{} is left behind", dir.display());
            }
        }
    }
    ctx.stop().unwrap();
}

#[test]
fn bad_input_gets_clear_errors() {
    for backend in backends() {
        bad_input_on_either_back_end(&backend.ctx());
    }
    let dir = tempfile::tempdir().unwrap();
    let ctx = RollPairContext::standalone(dir.path()).unwrap();
    bad_input_standalone_only(dir.path(), ctx);
}

fn bad_input_on_either_back_end(ctx: &RollPairContext) {
    let err = ctx
        .load::<i64, i64>("nowhere", "nothing")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("nowhere/nothing") && err.contains("does not exist"),
        "{err}"
    );

    let err = ctx
        .parallelize([(1i64, 1i64)], Options::partitions(0))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("at least 1"), "{err}");
    let err = ctx
        .parallelize([(1i64, 1i64)], Options::persistent("a/b", "x", 1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("namespace"), "{err}");
    ctx.parallelize([(1i64, 1i64)], Options::persistent("ns", "once", 1))
        .unwrap();
    let err = ctx
        .parallelize([(2i64, 2i64)], Options::persistent("ns", "once", 1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        ctx.load::<i64, i64>("ns", "once").unwrap().get(&1).unwrap(),
        Some(1),
        "nothing was replaced"
    );

    ctx.parallelize(
        [("a".to_string(), "text".to_string())],
        Options::persistent("ns", "strings", 2),
    )
    .unwrap();
    let wrong: RollPair<String, u64> = ctx.load("ns", "strings").unwrap();
    let err = wrong.get(&"a".to_string()).err().unwrap().to_string();
    assert!(err.contains("u64") && err.contains("ns/strings"), "{err}");
    let err = wrong
        .get_all()
        .unwrap()
        .next()
        .unwrap()
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("u64"), "{err}");

    // A function name this process does not have, as when the eggs run another program:
    // `Function` written by hand (with the hidden item #[function] supplies), so not registered.
    #[derive(Serialize, Deserialize)]
    struct Unregistered;
    impl Function for Unregistered {
        const NAME: &'static str = "tests::NeverRegistered";
        type Kind = eggroll_core::functions::erase::MapValues;
    }
    impl MapValues for Unregistered {
        type V = i64;
        type Out = i64;
        fn map_values(&self, v: i64) -> i64 {
            v
        }
    }
    let t = ctx
        .parallelize([(1i64, 1i64)], Options::partitions(2))
        .unwrap();
    let err = t.map_values(&Unregistered).err().unwrap().to_string();
    assert!(err.contains("tests::NeverRegistered"), "{err}");
    // The eggs keep serving after the failed job.
    assert_eq!(t.count().unwrap(), 1);
}

fn bad_input_standalone_only(dir: &std::path::Path, ctx: RollPairContext) {
    // A corrupt partition directory.
    ctx.parallelize([(1i64, 1i64)], Options::persistent("ns", "broken", 1))
        .unwrap();
    drop(ctx);
    let part = dir.join("ROCKSDB/ns/broken/0");
    for entry in std::fs::read_dir(&part).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("CURRENT")
        {
            std::fs::write(&p, b"garbage\n").unwrap();
        }
    }
    let ctx = RollPairContext::standalone(dir).unwrap();
    let t: RollPair<i64, i64> = ctx.load("ns", "broken").unwrap();
    let err = t.count().err().unwrap().to_string();
    assert!(
        err.contains("ROCKSDB/ns/broken/0") && err.contains("damaged"),
        "{err}"
    );

    // A data dir that cannot be a directory.
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = RollPairContext::standalone(&file)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("a-file"), "{err}");
}

#[test]
fn a_tables_partitioner_places_its_keys_through_every_op() {
    for b in backends() {
        keys_placed_by_the_tables_partitioner(&b.ctx(), b.name());
    }
}

/// The partition of every key of `t` by `t`'s own partitioner, checked by scanning each
/// partition; the pairs, as a map.
fn placed(t: &RollPair<i64, i64>, by: Partitioner, what: &str) -> BTreeMap<i64, i64> {
    assert_eq!(t.locator().partitioner, by.name(), "{what}");
    let mut out = BTreeMap::new();
    for p in 0..t.partitions() {
        t.scan_encoded(p, &mut |k, v| {
            assert_eq!(
                by.partition(k, t.partitions()),
                p,
                "{what}: a key in partition {p}"
            );
            let k: i64 = eggroll_core::codec::decode(k, &|| "key".into()).unwrap();
            let v: i64 = eggroll_core::codec::decode(v, &|| "value".into()).unwrap();
            out.insert(k, v);
            Ok(true)
        })
        .unwrap();
    }
    out
}

fn keys_placed_by_the_tables_partitioner(ctx: &RollPairContext, backend: &str) {
    let by = Partitioner::Integer;
    let data: Vec<(i64, i64)> = (0..2000i64).map(|i| (i * 31, i)).collect();
    let want: BTreeMap<i64, i64> = data.iter().cloned().collect();
    let strings = |by: Partitioner| {
        let pairs = data.iter().map(|(k, v)| (*k, v.to_string()));
        ctx.parallelize(pairs, Options::partitions(5).with_partitioner(by))
            .unwrap()
    };
    let t = ctx
        .parallelize(data.clone(), Options::partitions(5).with_partitioner(by))
        .unwrap();
    assert_eq!(placed(&t, by, backend), want);
    // Point reads and writes find the partition the same way.
    assert_eq!(t.get(&(31 * 7)).unwrap(), Some(7));
    t.put(&1, &-1).unwrap();
    assert_eq!(t.get(&1).unwrap(), Some(-1));
    t.delete(&1).unwrap();
    // Outputs keep the partitioner, with a shuffle (map, repartition) or without (map_values).
    let mut doubled = want.clone();
    doubled.values_mut().for_each(|v| *v += 3);
    let mv = t.map_values(&AddTo { n: 3 }).unwrap();
    assert_eq!(placed(&mv, by, backend), doubled);
    let swapped: BTreeMap<i64, i64> = want.iter().map(|(k, v)| (*v, *k)).collect();
    let m = t.map(&Swap).unwrap();
    assert_eq!(placed(&m, by, backend), swapped);
    assert_eq!(placed(&t.repartition(3).unwrap(), by, backend), want);
    // A join of two tables of the same partitioner; one of another is refused by name.
    let j = t.join(&strings(by), &Pair).unwrap();
    assert_eq!(j.count().unwrap(), want.len() as u64);
    let err = t
        .join(&strings(Partitioner::Mmh3), &Pair)
        .err()
        .expect("a join across partitioners")
        .to_string();
    assert!(
        err.contains("integer") && err.contains("mmh3") && err.contains("repartition"),
        "{backend}: {err}"
    );
    // Saved under another partitioner, the keys move to their new places.
    let saved = t
        .save_as(Options::persistent("placed", &format!("t_{backend}"), 5))
        .unwrap();
    assert_eq!(placed(&saved, Partitioner::Mmh3, backend), want);
    saved.destroy().unwrap();
}

#[test]
fn byte_tables_keep_the_callers_bytes_in_key_byte_order() {
    for b in backends() {
        byte_tables(&b.ctx(), b.name());
    }
}

#[test]
fn a_byte_tables_shuffle_folds_values_in_fate_standalones_order() {
    for b in backends() {
        ordered_fold(&b.ctx(), b.name());
    }
}

/// A shuffle with a combiner that is neither associative nor commutative: each key's values
/// must be folded left to right in source partition order, then in the order the map gave
/// them (FATE standalone's), however the partitions' outputs arrive.
fn ordered_fold(ctx: &RollPairContext, backend: &str) {
    use eggroll_core::codec::encode;
    use eggroll_rollpair::FateTypes;
    let types = FateTypes::default();
    let data: Vec<(Vec<u8>, Vec<u8>)> = (0..4000i64)
        .map(|i| {
            (
                encode(&(i * 7919)).unwrap(),
                encode(&(i % 1000 - 500)).unwrap(),
            )
        })
        .collect();
    let by = Partitioner::from_fate_type(types.partitioner_type).unwrap();
    for (n_in, n_out) in [(1, 1), (4, 3), (7, 7)] {
        let what = format!("{backend}, {n_in} partitions into {n_out}");
        // The reference: source partitions in order, each in key byte order (what the map
        // sees), ModKey{m: 11} per pair, Horner folded left to right.
        let mut sources = vec![BTreeMap::new(); n_in as usize];
        for (k, v) in &data {
            sources[by.partition(k, n_in) as usize].insert(k.clone(), v.clone());
        }
        let mut want: BTreeMap<i64, i64> = BTreeMap::new();
        for (k, v) in sources.into_iter().flatten() {
            let (k, v): (i64, i64) = (
                eggroll_core::codec::decode(&k, &|| "key".into()).unwrap(),
                eggroll_core::codec::decode(&v, &|| "value".into()).unwrap(),
            );
            let k = k.rem_euclid(11);
            want.entry(k)
                .and_modify(|a| *a = Horner.reduce(*a, v))
                .or_insert(v);
        }
        let t = ctx
            .parallelize_bytes(data.clone(), Options::partitions(n_in), types)
            .unwrap();
        let out = t
            .context()
            .create_bytes(Options::partitions(n_out), types)
            .unwrap();
        let mapper = functor(&ModKey { m: 11 }, "map");
        let combiner = functor(&Horner, "reduce");
        t.map_reduce(mapper, true, Some(combiner), &out).unwrap();
        let got: BTreeMap<i64, i64> = out
            .get_all()
            .unwrap()
            .map(|p| {
                let (k, v) = p.unwrap();
                (
                    eggroll_core::codec::decode(&k, &|| "key".into()).unwrap(),
                    eggroll_core::codec::decode(&v, &|| "value".into()).unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "{what}");
        // Every key sits in its own partition of the output.
        for p in 0..n_out {
            for (k, _) in out.partition(p).unwrap() {
                assert_eq!(by.partition(&k, n_out), p, "{what}");
            }
        }
        t.destroy().unwrap();
        out.destroy().unwrap();
    }
}

/// The functor that names `f` as a function of `kind` (how other languages' callers send theirs).
fn functor<F: Function>(f: &F, kind: &str) -> eggroll_proto::meta::Functor {
    eggroll_proto::meta::Functor {
        name: F::NAME.into(),
        kind: kind.into(),
        params: eggroll_core::codec::encode(f).unwrap(),
    }
}

/// What a byte table of `n` partitions placed by `by` must return: partition order, then the
/// byte order of the keys; the last write of a key wins.
fn byte_reference(data: &[(Vec<u8>, Vec<u8>)], n: u32, by: Partitioner) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut parts: Vec<BTreeMap<Vec<u8>, Vec<u8>>> = vec![BTreeMap::new(); n as usize];
    for (k, v) in data {
        parts[by.partition(k, n) as usize].insert(k.clone(), v.clone());
    }
    parts.into_iter().flatten().collect()
}

fn byte_tables(ctx: &RollPairContext, backend: &str) {
    use eggroll_rollpair::FateTypes;
    // Keys of every length from one byte up, some shared prefixes, duplicates, a large value.
    let mut data: Vec<(Vec<u8>, Vec<u8>)> = (0..3000u32)
        .map(|i| {
            let k = i.to_be_bytes()[(i % 4) as usize..].to_vec();
            (k, format!("v{i}").into_bytes())
        })
        .collect();
    data.push((vec![0xff; 40], vec![7; 1 << 20]));
    data.push((b"a".to_vec(), b"first".to_vec()));
    data.push((b"a".to_vec(), b"second".to_vec()));
    for code in [0, 1, 2] {
        let by = Partitioner::from_fate_type(code).unwrap();
        let types = FateTypes {
            key_serdes_type: 1,
            value_serdes_type: 0,
            partitioner_type: code,
        };
        let what = format!("{backend}, partitioner type {code}");
        for n in [1, 4] {
            let want = byte_reference(&data, n, by);
            let t = ctx
                .parallelize_bytes(data.clone(), Options::partitions(n), types)
                .unwrap();
            assert_eq!(t.types(), types, "{what}");
            let got: Vec<_> = t.get_all().unwrap().collect::<Result<_, _>>().unwrap();
            assert_eq!(got.len(), want.len(), "{what}, {n} partitions");
            assert!(
                got == want,
                "{what}, {n} partitions: not the reference's pairs or order"
            );
            // Read whole by one Take job, except the partition with the 1 MiB value, which
            // is past the job's bound and cut before it; a scan in small chunks gives every
            // partition, cut at pairs, goes on after a key, and stops when asked.
            let firsts = t.first_chunks().unwrap();
            assert_eq!(firsts.len(), n as usize, "{what}");
            // Each partition's first three pairs, packed, as its scan gives them.
            let heads = t.heads_packed(3).unwrap();
            assert_eq!(heads.len(), n as usize, "{what}");
            let mut got = Vec::new();
            for (p, head) in firsts.iter().enumerate() {
                let mut chunks = Vec::new();
                t.scan_packed(p as u32, None, 100, &mut |c| {
                    chunks.push(c);
                    true
                })
                .unwrap();
                assert!(
                    chunks.iter().all(|c| !c.is_empty()),
                    "{what}: an empty chunk"
                );
                for c in &chunks {
                    for pair in eggroll_core::pairs::iter(c) {
                        let (k, v) = pair.unwrap();
                        got.push((k.to_vec(), v.to_vec()));
                    }
                }
                let run = chunks.concat();
                // Each pair's key and where it ends in the run.
                let mut keys = Vec::new();
                let mut ends = vec![0];
                for pair in eggroll_core::pairs::iter(&run) {
                    let (k, v) = pair.unwrap();
                    keys.push(k.to_vec());
                    ends.push(
                        ends[ends.len() - 1] + eggroll_core::pairs::encoded_len(k.len(), v.len()),
                    );
                }
                assert!(
                    heads[p] == run[..ends[keys.len().min(3)]],
                    "{what}, partition {p}: its head is not its first three pairs"
                );
                let past = run.len() as u64 > eggroll_rollpair::byte_table::WHOLE_BYTES;
                assert_eq!(head.more, past, "{what}, partition {p}");
                assert!(
                    run.starts_with(&head.packed) && (past || head.packed == run),
                    "{what}, partition {p}: the Take job's bytes differ from the scan's"
                );
                // After a key (a few of them, the last ones included), the rest of the run.
                let step = (keys.len() / 5).max(1);
                let picked = (0..keys.len())
                    .step_by(step)
                    .chain(keys.len().saturating_sub(2)..keys.len());
                for i in picked {
                    let key = &keys[i];
                    let mut rest = Vec::new();
                    t.scan_packed(p as u32, Some(key), 1 << 20, &mut |c| {
                        rest.extend(c);
                        true
                    })
                    .unwrap();
                    assert!(
                        rest == run[ends[i + 1]..],
                        "{what}, partition {p}: the scan after key {i} is not the rest"
                    );
                }
                let mut first = 0;
                t.scan_packed(p as u32, None, 100, &mut |_| {
                    first += 1;
                    false
                })
                .unwrap();
                assert_eq!(
                    first,
                    chunks.len().min(1),
                    "{what}: the scan went on after no"
                );
            }
            assert!(
                got == want,
                "{what}, {n} partitions: the scanned partitions differ"
            );
            assert_eq!(t.count().unwrap(), want.len() as u64, "{what}");
            assert_eq!(t.take(5).unwrap(), want[..5].to_vec(), "{what}");
            assert_eq!(
                t.get(b"a").unwrap().as_deref(),
                Some(&b"second"[..]),
                "{what}"
            );
            assert_eq!(t.get(b"missing").unwrap(), None, "{what}");
            t.put(b"new", b"").unwrap();
            assert_eq!(t.get(b"new").unwrap(), Some(Vec::new()), "{what}");
            assert!(
                t.delete(b"new").unwrap() && !t.delete(b"new").unwrap(),
                "{what}"
            );
            // copy_as a persistent table: the codes kept, the keys moved to the new count.
            let name = format!("bytes_{backend}_{code}_{n}");
            let saved = t.copy_as(Options::persistent("bytes", &name, 3)).unwrap();
            let loaded = ctx.load_bytes("bytes", &name).unwrap();
            assert_eq!((loaded.types(), loaded.partitions()), (types, 3), "{what}");
            let got: Vec<_> = loaded.get_all().unwrap().collect::<Result<_, _>>().unwrap();
            assert!(got == byte_reference(&data, 3, by), "{what}: copy_as");
            saved.destroy().unwrap();
            t.destroy().unwrap();
        }
    }
    // An empty table, a typed table loaded as bytes, and FATE's java-string-like partitioner.
    let empty = ctx
        .create_bytes(Options::partitions(2), FateTypes::default())
        .unwrap();
    assert_eq!(empty.count().unwrap(), 0);
    assert_eq!(empty.get_all().unwrap().count(), 0);
    assert_eq!(
        empty.first_chunks().unwrap(),
        vec![eggroll_rollpair::table::Head::default(); 2]
    );
    assert!(empty.take(3).unwrap().is_empty());
    let typed = ctx
        .parallelize(
            vec![(1u64, 2u64)],
            Options::persistent("bytes", &format!("typed_{backend}"), 1),
        )
        .unwrap();
    let err = ctx
        .load_bytes("bytes", typed.name())
        .err()
        .expect("a typed table")
        .to_string();
    assert!(
        err.contains("typed API") && err.contains("u64"),
        "{backend}: {err}"
    );
    typed.destroy().unwrap();
    let java = FateTypes {
        partitioner_type: 3,
        ..FateTypes::default()
    };
    let err = ctx
        .create_bytes(Options::partitions(2), java)
        .err()
        .expect("type 3")
        .to_string();
    assert!(err.contains("java-string-like"), "{backend}: {err}");
}

#[test]
fn in_memory_tables_past_the_budget_spill_to_disk_and_go_with_their_session() {
    let backend = Backend::Spilling(tempfile::tempdir().unwrap());
    let Backend::Spilling(dir) = &backend else {
        unreachable!()
    };
    let scratch = dir
        .path()
        .join("scratch")
        .join(std::process::id().to_string());
    let spilled = || std::fs::read_dir(&scratch).map_or(0, |d| d.count());
    let ctx = backend.ctx();
    let data: Vec<(i64, i64)> = (0..20_000).map(|i| (i * 7 % 20_011, i)).collect();
    let reference: BTreeMap<i64, i64> = data.iter().cloned().collect();
    let t = ctx.parallelize(data, Options::partitions(4)).unwrap();
    assert!(spilled() >= 1, "nothing spilled past a 16 KiB budget");
    let added = t.map_values(&AddTo { n: 5 }).unwrap();
    let expect: BTreeMap<i64, i64> = reference.iter().map(|(k, v)| (*k, v + 5)).collect();
    assert_eq!(all(&added), expect);
    assert_eq!(all(&t), reference);
    assert_eq!(t.count().unwrap(), reference.len() as u64);
    ctx.stop().unwrap();
    assert_eq!(spilled(), 0, "spilled partitions outlived their session");
}
