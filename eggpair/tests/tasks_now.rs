//! Counts and takes answered on the egg's async worker (`Executor::run_now`) give what the
//! same tasks give through the blocking pool (`Executor::run`), and the tasks that could
//! wait (on disk, spilled, too large to copy) are left to the pool.

use eggroll_core::config::StorageConfig;
use eggroll_eggpair::executor::LocalSink;
use eggroll_eggpair::{Executor, Stores};
use eggroll_proto::meta::{job::Op, Count, Job, Store, StoreLocator, StoreType, Take, Task};
use std::sync::Arc;

fn locator(t: StoreType, name: &str) -> StoreLocator {
    let mut l = StoreLocator {
        namespace: "ns".into(),
        name: name.into(),
        total_partitions: 1,
        ..Default::default()
    };
    l.set_store_type(t);
    l
}

fn task(l: &StoreLocator, op: Op) -> Task {
    Task {
        job: Some(Job {
            id: "j".into(),
            session_id: "s".into(),
            inputs: vec![Store {
                locator: Some(l.clone()),
                ..Default::default()
            }],
            op: Some(op),
            ..Default::default()
        }),
        partition: 0,
    }
}

/// A table of one partition holding `n` pairs of `value_len`-byte values.
fn table(stores: &Stores, t: StoreType, name: &str, n: u32, value_len: usize) -> StoreLocator {
    let l = locator(t, name);
    stores.create(&l).unwrap();
    let pairs = (0..n)
        .rev()
        .map(|i| {
            (
                format!("k{i:06}").into_bytes(),
                vec![(i % 251) as u8; value_len],
            )
        })
        .collect();
    stores.partition(&l, 0).unwrap().put_batch(pairs).unwrap();
    l
}

/// Stores under `dir`, with an executor and a local sink over them.
fn open(dir: &std::path::Path, config: StorageConfig) -> (Arc<Stores>, Executor, LocalSink) {
    let stores = Arc::new(Stores::open(dir, config).unwrap());
    (
        stores.clone(),
        Executor::new(stores.clone()),
        LocalSink::new(stores),
    )
}

fn ops() -> Vec<Op> {
    let take = |limit, keys_only, packed, max_bytes| {
        Op::Take(Take {
            limit,
            keys_only,
            packed,
            max_bytes,
        })
    };
    vec![
        Op::Count(Count {}),
        take(0, false, false, 0),
        take(1, false, false, 0),
        take(3, true, false, 0),
        take(u64::MAX, false, true, 0),
        take(u64::MAX, false, true, 500),
        take(u64::MAX, false, false, 0),
    ]
}

#[test]
fn small_in_memory_tasks_answer_now_and_equal_the_pooled_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, executor, sink) = open(dir.path(), StorageConfig::default());
    for (name, n, len) in [
        ("empty", 0, 0),
        ("one", 1, 10),
        ("some", 100, 50),
        ("many", 250, 100),
    ] {
        let l = table(&stores, StoreType::InMemory, name, n, len);
        for op in ops() {
            let t = task(&l, op.clone());
            let now = executor.run_now(&t);
            assert_eq!(now, Some(executor.run(&t, &sink).unwrap()), "{name} {op:?}");
        }
    }
}

#[test]
fn tasks_that_could_wait_are_left_to_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, executor, sink) = open(dir.path(), StorageConfig::default());
    // Past the 64 KiB a take copies on the async worker: the count still answers now.
    let big = table(&stores, StoreType::InMemory, "big", 2_000, 100);
    let count = task(&big, Op::Count(Count {}));
    assert_eq!(executor.run_now(&count).unwrap().count, 2_000);
    for op in ops().into_iter().skip(1) {
        let t = task(&big, op.clone());
        assert_eq!(executor.run_now(&t), None, "{op:?}");
        assert!(executor.run(&t, &sink).unwrap().pairs.is_some());
    }
    // On disk: everything goes to the pool.
    let disk = table(&stores, StoreType::Rocksdb, "disk", 10, 10);
    for op in ops() {
        assert_eq!(executor.run_now(&task(&disk, op)), None);
    }
    // Spilled past the memory budget: on disk too.
    let (spilling, executor, sink) = open(
        &dir.path().join("spilling"),
        StorageConfig {
            memory_budget_bytes: 1_000,
            ..StorageConfig::default()
        },
    );
    let spilled = table(&spilling, StoreType::InMemory, "spilled", 200, 100);
    for op in ops() {
        assert_eq!(executor.run_now(&task(&spilled, op)), None);
    }
    let t = task(&spilled, Op::Count(Count {}));
    assert_eq!(executor.run(&t, &sink).unwrap().count, 200);
}
