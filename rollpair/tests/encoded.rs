//! Raw partition access: `scan_encoded` and `put_encoded` against a reference built from
//! the codec and the partitioner.

use eggroll_core::codec::encode;
use eggroll_core::config::EggrollConfig;
use eggroll_core::partitioner::partition_of;
use eggroll_proto::meta::StoreType;
use eggroll_rollpair::{Options, RollPair, RollPairContext};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The encoded pairs of each partition, in key order, as the store must hold them.
fn reference(data: &[(u64, String)], n: u32) -> Vec<Pairs> {
    let mut parts: Vec<Pairs> = (0..n).map(|_| Vec::new()).collect();
    for (k, v) in data {
        let (k, v) = (encode(k).unwrap(), encode(v).unwrap());
        parts[partition_of(&k, n) as usize].push((k, v));
    }
    for p in &mut parts {
        p.sort();
    }
    parts
}

fn scan_all<K, V>(t: &RollPair<K, V>) -> Vec<Pairs> {
    (0..t.partitions())
        .map(|p| {
            let mut got = Vec::new();
            t.scan_encoded(p, &mut |k, v| {
                got.push((k.to_vec(), v.to_vec()));
                Ok(true)
            })
            .unwrap();
            got
        })
        .collect()
}

fn context(dir: &std::path::Path) -> RollPairContext {
    let mut config = EggrollConfig::load(None).unwrap();
    config.data_dir = dir.to_path_buf();
    // Small batches, so that put_encoded writes a partition in several of them.
    config.storage.batch_bytes = 1024;
    RollPairContext::standalone_with(&config).unwrap()
}

#[test]
fn scan_and_put_encoded_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let n = 5;
    let data: Vec<(u64, String)> = (0..3000u64).map(|i| (i * 7919, format!("v{i}"))).collect();
    let want = reference(&data, n);
    for store_type in [StoreType::InMemory, StoreType::PERSISTENT] {
        let opts = |name: &str| Options {
            store_type,
            name: Some(format!("{name}_{}", store_type as i32)),
            ..Options::partitions(n)
        };
        let src = ctx.parallelize(data.clone(), opts("src")).unwrap();
        assert_eq!(scan_all(&src), want, "{store_type:?} scan");

        // Copy partition by partition through the raw API: the same pairs, the same places.
        let dst: RollPair<u64, String> = ctx.create(opts("dst")).unwrap();
        for (p, pairs) in want.iter().enumerate() {
            let written = dst
                .put_encoded(p as u32, pairs.iter().map(|(k, v)| (&k[..], &v[..])))
                .unwrap();
            assert_eq!(written, pairs.len() as u64);
        }
        assert_eq!(scan_all(&dst), want, "{store_type:?} copy");
        assert_eq!(dst.count().unwrap(), data.len() as u64);
        for (k, v) in data.iter().step_by(97) {
            assert_eq!(dst.get(k).unwrap().as_ref(), Some(v));
        }

        // An empty write writes nothing; a visit that returns false stops the scan.
        assert_eq!(dst.put_encoded(0, std::iter::empty()).unwrap(), 0);
        let mut seen = 0;
        dst.scan_encoded(1, &mut |_, _| {
            seen += 1;
            Ok(seen < 3)
        })
        .unwrap();
        assert_eq!(seen, 3);
    }
    ctx.stop().unwrap();
}

#[test]
fn a_partition_out_of_range_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let t: RollPair<u64, u64> = ctx.create(Options::partitions(3)).unwrap();
    let e = t.scan_encoded(3, &mut |_, _| Ok(true)).unwrap_err();
    assert!(e.to_string().contains("partition 3 does not exist"), "{e}");
    assert!(e.to_string().contains("0..3"), "{e}");
    let e = t.put_encoded(7, [(&b"k"[..], &b"v"[..])]).unwrap_err();
    assert!(e.to_string().contains("partition 7 does not exist"), "{e}");
    assert_eq!(t.count().unwrap(), 0);
    ctx.stop().unwrap();
}
