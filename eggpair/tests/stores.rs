//! Partition stores on real RocksDB files and in memory, against a BTreeMap reference.

use eggroll_core::config::StorageConfig;
use eggroll_eggpair::{KeyRange, PartitionStore, Stores};
use eggroll_proto::meta::{StoreLocator, StoreType};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn locator(t: StoreType, name: &str, parts: u32) -> StoreLocator {
    let mut l = StoreLocator {
        namespace: "ns".into(),
        name: name.into(),
        total_partitions: parts,
        ..Default::default()
    };
    l.set_store_type(t);
    l
}

fn collect(store: &dyn PartitionStore, range: KeyRange) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .iter(range)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The pairs of `range` as the store's scan lends them, the first `most` only.
fn scanned(store: &dyn PartitionStore, range: KeyRange, most: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    if most == 0 {
        return out;
    }
    store
        .scan(range, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(out.len() < most)
        })
        .unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn both_stores_behave_like_a_sorted_map(
        pairs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..6), proptest::collection::vec(any::<u8>(), 0..64)), 0..200),
        prefix in proptest::collection::vec(any::<u8>(), 0..2),
        deletes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..6), 0..20),
        chunk in 1usize..80,
        most in 0usize..300,
        budget in 1u64..3000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let stores = Stores::open(dir.path(), StorageConfig::default()).unwrap();
        // In-memory partitions past a tiny budget: they spill at once or midway.
        let spilling = Stores::open(&dir.path().join("spilling"), StorageConfig {
            memory_budget_bytes: budget,
            ..StorageConfig::default()
        }).unwrap();
        let mut reference: BTreeMap<Vec<u8>, Vec<u8>> = pairs.iter().cloned().collect();
        for (stores, t) in [(&stores, StoreType::InMemory), (&stores, StoreType::PERSISTENT), (&spilling, StoreType::InMemory)] {
            let l = locator(t, "t", 1);
            stores.create(&l).unwrap();
            let s = stores.partition(&l, 0).unwrap();
            for chunk in pairs.chunks(7) {
                s.put_batch(chunk.to_vec()).unwrap();
            }
            let mut r = reference.clone();
            for d in &deletes {
                prop_assert_eq!(s.delete(d).unwrap(), r.remove(d).is_some());
            }
            let all: Vec<_> = r.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(collect(s.as_ref(), KeyRange::all()), all.clone());
            prop_assert_eq!(s.count().unwrap(), r.len() as u64);
            let range = KeyRange::prefix(&prefix);
            let expect: Vec<_> = r.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(collect(s.as_ref(), range.clone()), expect.clone());
            prop_assert_eq!(scanned(s.as_ref(), KeyRange::all(), usize::MAX), all.clone());
            prop_assert_eq!(scanned(s.as_ref(), range, usize::MAX), expect);
            prop_assert_eq!(scanned(s.as_ref(), KeyRange::all(), most), all.iter().take(most).cloned().collect::<Vec<_>>());
            for (k, v) in r.iter().take(5) {
                prop_assert_eq!(s.get(k).unwrap(), Some(v.clone()));
            }
            // Written in key order, in batches of `chunk` (how a map's output arrives), then
            // overwritten out of order by the pairs as given: the same map.
            let sorted = locator(t, "sorted", 1);
            stores.create(&sorted).unwrap();
            let s = stores.partition(&sorted, 0).unwrap();
            let in_order: Vec<_> = reference.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            for batch in in_order.chunks(chunk) {
                s.put_batch(batch.to_vec()).unwrap();
            }
            prop_assert_eq!(collect(s.as_ref(), KeyRange::all()), in_order.clone());
            s.put_batch(pairs.clone()).unwrap();
            prop_assert_eq!(scanned(s.as_ref(), KeyRange::all(), usize::MAX), in_order);
        }
        reference.clear();
    }
}

#[test]
fn rocksdb_tables_reopen_identically_and_destroy_removes_files() {
    let dir = tempfile::tempdir().unwrap();
    let l = locator(StoreType::PERSISTENT, "kept", 3);
    let data: Vec<(Vec<u8>, Vec<u8>)> = (0..5000u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 50]))
        .collect();
    {
        let stores = Stores::open(dir.path(), StorageConfig::default()).unwrap();
        stores.create(&l).unwrap();
        for p in 0..3 {
            stores
                .partition(&l, p)
                .unwrap()
                .put_batch(data.clone())
                .unwrap();
        }
    }
    let cfg = StorageConfig {
        max_open_partitions: 1,
        ..Default::default()
    };
    let stores = Stores::open(dir.path(), cfg).unwrap();
    let loaded = stores.load(StoreType::PERSISTENT, "ns", "kept").unwrap();
    assert_eq!(loaded.total_partitions, 3);
    for _ in 0..2 {
        for p in 0..3 {
            // With a cap of one open partition, each access may reopen: still identical.
            assert_eq!(
                collect(
                    stores.partition(&loaded, p).unwrap().as_ref(),
                    KeyRange::all()
                ),
                data
            );
        }
    }
    assert!(stores.partition(&loaded, 3).is_err());
    stores.destroy(&loaded).unwrap();
    assert!(!dir.path().join("ROCKSDB/ns/kept").exists());
    assert!(stores.load(StoreType::PERSISTENT, "ns", "kept").is_err());
}

#[test]
fn packed_batches_land_whole_or_not_at_all_in_both_store_types() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::open(dir.path(), StorageConfig::default()).unwrap();
    for (t, name) in [(StoreType::InMemory, "m"), (StoreType::PERSISTENT, "r")] {
        let l = locator(t, name, 1);
        stores.create(&l).unwrap();
        let part = stores.partition(&l, 0).unwrap();
        let mut packed = Vec::new();
        let mut want = BTreeMap::new();
        for i in 0..500u32 {
            let (k, v) = (i.to_be_bytes().to_vec(), vec![i as u8; (i % 7) as usize]);
            eggroll_core::pairs::push(&mut packed, &k, &v);
            want.insert(k, v);
        }
        // A later pair of the same key wins, as in put_batch.
        eggroll_core::pairs::push(&mut packed, &0u32.to_be_bytes(), b"last");
        want.insert(0u32.to_be_bytes().to_vec(), b"last".to_vec());
        assert_eq!(part.put_packed(&packed).unwrap(), 501, "{t:?}");
        let want: Vec<_> = want.into_iter().collect();
        assert_eq!(collect(part.as_ref(), KeyRange::all()), want, "{t:?}");
        // A batch cut short is refused and writes nothing, not even its whole pairs.
        let mut cut = Vec::new();
        eggroll_core::pairs::push(&mut cut, b"new", b"pair");
        eggroll_core::pairs::push(&mut cut, b"cut", b"short");
        assert!(part.put_packed(&cut[..cut.len() - 2]).is_err(), "{t:?}");
        assert_eq!(collect(part.as_ref(), KeyRange::all()), want, "{t:?}");
    }
}

#[derive(Clone, Debug)]
enum Step {
    Put(Vec<(Vec<u8>, Vec<u8>)>),
    /// Batches put as one bulk load where the partition is empty; finished or abandoned.
    Load(Vec<Vec<(Vec<u8>, Vec<u8>)>>, bool),
    Delete(Vec<u8>),
    Compact,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let key = proptest::collection::vec(0u8..4, 0..3);
    prop_oneof![
        4 => proptest::collection::vec((key.clone(), proptest::collection::vec(any::<u8>(), 0..8)), 0..12).prop_map(Step::Put),
        3 => (proptest::collection::vec(proptest::collection::vec((key.clone(), proptest::collection::vec(any::<u8>(), 0..40)), 0..12), 0..6), proptest::bool::weighted(0.8)).prop_map(|(b, f)| Step::Load(b, f)),
        3 => key.prop_map(Step::Delete),
        1 => Just(Step::Compact),
        2 => Just(Step::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// A RocksDB partition keeps its count once counted (answered without a scan) and
    /// forgets it on every write: after any mix of puts, bulk loads, deletes, compactions
    /// and reopens (the copy kept with the data read back), `count` is the reference map's
    /// size, and the pairs are the reference's. Bulk loads run in tiny runs, so that a load
    /// makes several files (a later pair of a key winning across them) or one, or is small
    /// enough to be written as a batch.
    #[test]
    fn a_kept_count_stays_exact_through_writes_loads_compactions_and_reopens(
        steps in proptest::collection::vec((step(), any::<bool>()), 1..30),
        run_bytes in 1u64..400,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let l = locator(StoreType::PERSISTENT, "counted", 1);
        let cfg = StorageConfig { bulk_run_bytes: run_bytes, ..StorageConfig::default() };
        let mut stores = Some(Stores::open(dir.path(), cfg.clone()).unwrap());
        stores.as_ref().unwrap().create(&l).unwrap();
        let mut reference: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (s, count) in steps {
            let part = stores.as_ref().unwrap().partition(&l, 0).unwrap();
            match s {
                Step::Put(pairs) => {
                    reference.extend(pairs.iter().cloned());
                    part.put_batch(pairs).unwrap();
                }
                Step::Load(batches, finish) => {
                    let load = part.clone().bulk_load().unwrap();
                    // Only an empty partition is loaded in bulk.
                    prop_assert_eq!(load.is_some(), reference.is_empty());
                    let packed: Vec<Vec<u8>> = batches.iter().map(|b| {
                        let mut packed = Vec::new();
                        for (k, v) in b {
                            eggroll_core::pairs::push(&mut packed, k, v);
                        }
                        packed
                    }).collect();
                    match load {
                        Some(mut load) => {
                            for (b, p) in batches.iter().zip(&packed) {
                                prop_assert_eq!(load.put_packed(p).unwrap(), b.len() as u64);
                            }
                            // Nothing is visible before the load finishes.
                            prop_assert_eq!(collect(part.as_ref(), KeyRange::all()), vec![]);
                            if finish {
                                load.finish().unwrap();
                                reference.extend(batches.into_iter().flatten());
                            }
                        }
                        None => {
                            for p in &packed {
                                part.put_packed(p).unwrap();
                            }
                            reference.extend(batches.into_iter().flatten());
                        }
                    }
                    // Files of the load are ingested or removed, never left behind.
                    let bulk = stores.as_ref().unwrap().table_dir(&l).join("0").join("bulk");
                    let left = std::fs::read_dir(&bulk).map(|d| d.count()).unwrap_or(0);
                    prop_assert_eq!(left, 0, "files left in {}", bulk.display());
                    let all: Vec<_> = reference.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    prop_assert_eq!(collect(part.as_ref(), KeyRange::all()), all);
                }
                Step::Delete(k) => {
                    prop_assert_eq!(part.delete(&k).unwrap(), reference.remove(&k).is_some());
                }
                Step::Compact => part.compact().unwrap(),
                Step::Reopen => {
                    drop(part);
                    // The old handle closes its databases before the new one opens them.
                    drop(stores.take());
                    stores = Some(Stores::open(dir.path(), cfg.clone()).unwrap());
                    let l = stores.as_ref().unwrap().load(StoreType::PERSISTENT, "ns", "counted").unwrap();
                    let part = stores.as_ref().unwrap().partition(&l, 0).unwrap();
                    prop_assert_eq!(part.count().unwrap(), reference.len() as u64, "after a reopen");
                    continue;
                }
            }
            // Sometimes counted (by a scan or the kept count), then again (the kept count);
            // sometimes not, so that a reopen finds what the writes left of a kept count.
            if count {
                prop_assert_eq!(part.count().unwrap(), reference.len() as u64);
                prop_assert_eq!(part.count().unwrap(), reference.len() as u64);
            }
        }
    }
}

#[test]
fn in_memory_tables_past_the_budget_spill_to_scratch_and_the_files_go_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::open(
        dir.path(),
        StorageConfig {
            memory_budget_bytes: 64 << 10,
            ..StorageConfig::default()
        },
    )
    .unwrap();
    let scratch = dir
        .path()
        .join(eggroll_eggpair::memory_budget::SCRATCH_DIR)
        .join(std::process::id().to_string());
    let l = locator(StoreType::InMemory, "big", 4);
    stores.create(&l).unwrap();
    let mut reference = BTreeMap::new();
    for i in 0..20_000u32 {
        let (k, v) = (i.to_be_bytes().to_vec(), vec![(i % 251) as u8; 40]);
        let p = eggroll_core::partitioner::partition_of(&k, 4);
        stores
            .partition(&l, p)
            .unwrap()
            .put_batch(vec![(k.clone(), v.clone())])
            .unwrap();
        reference.insert(k, v);
    }
    let usage = stores.memory_usage();
    assert!(usage.spilled_partitions >= 1, "{usage:?}");
    assert!(usage.used <= 64 << 10, "{usage:?}");
    assert!(std::fs::read_dir(&scratch).unwrap().count() >= 1);
    // Every op still sees every pair: partitions in order, each sorted.
    let mut got = BTreeMap::new();
    for p in 0..4 {
        let part = stores.partition(&l, p).unwrap();
        let pairs = collect(part.as_ref(), KeyRange::all());
        assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(part.count().unwrap(), pairs.len() as u64);
        got.extend(pairs);
    }
    assert_eq!(got, reference);
    // Dropping the table frees its memory and removes its spilled files.
    stores.destroy(&l).unwrap();
    assert_eq!(stores.memory_usage().used, 0);
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    drop(stores);
    assert!(
        !scratch.exists(),
        "the process's scratch dir outlived its stores"
    );
}
