//! Bulk writes in standalone mode: batches written on the pool keep the order of the pairs.

use eggroll_core::config::EggrollConfig;
use eggroll_proto::meta::StoreType;
use eggroll_rollpair::{Options, RollPairContext};

#[test]
fn a_later_pair_of_a_key_wins_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EggrollConfig::load(None).unwrap();
    config.data_dir = dir.path().to_path_buf();
    // Batches large enough to go to the pool, small enough that every round of keys spans
    // several of them.
    config.storage.batch_bytes = 96 << 10;
    let ctx = RollPairContext::standalone_with(&config).unwrap();
    let (keys, rounds) = (1000u64, 40u32);
    let data = (0..rounds).flat_map(|r| (0..keys).map(move |k| (k, (r, vec![r as u8; 200]))));
    for store_type in [StoreType::InMemory, StoreType::PERSISTENT] {
        let opts = Options {
            store_type,
            name: Some(format!("dups_{}", store_type as i32)),
            ..Options::partitions(3)
        };
        let t = ctx.parallelize(data.clone(), opts).unwrap();
        assert_eq!(t.count().unwrap(), keys, "{store_type:?}");
        for k in (0..keys).step_by(37) {
            let (r, _) = t.get(&k).unwrap().unwrap();
            assert_eq!(r, rounds - 1, "{store_type:?}: key {k}");
        }
        t.put(&7, &(99, Vec::new())).unwrap();
        assert_eq!(t.get(&7).unwrap(), Some((99, Vec::new())));
        assert!(t.delete(&7).unwrap());
        assert_eq!(t.get(&7).unwrap(), None);
    }
    ctx.stop().unwrap();
}
