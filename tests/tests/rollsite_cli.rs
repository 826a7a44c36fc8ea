//! Two `eggroll rollsite` processes, started as an operator would, exchanging an object and a
//! table through the federation API; a bad route table stops the start with its line.

use eggroll_federation::{Federation, FederationOptions};
use eggroll_rollpair::{Options, RollPair, RollPairContext};
use eggroll_tests::cluster::binary;
use eggroll_tests::rollsite_processes::RollsiteProcess;
use eggroll_tests::rollsites::{guest, host};
use std::process::Command;

#[test]
fn two_rollsite_processes_exchange_objects_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let sites = RollsiteProcess::pair(dir.path(), &[]);
    let (pa, pb) = (sites[0].address(), sites[1].address());

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = FederationOptions::default();
        let (guest, host) = (guest(), host());
        let fa = Federation::connect(&pa, "cli", guest.clone(), opts.clone()).unwrap();
        let fb = Federation::connect(&pb, "cli", host.clone(), opts).unwrap();
        fa.remote(&vec![1u32, 2, 3], "v", "0", std::slice::from_ref(&host))
            .await
            .unwrap();
        let got: Vec<Vec<u32>> = fb
            .get("v", "0", std::slice::from_ref(&guest))
            .await
            .unwrap();
        assert_eq!(got, vec![vec![1, 2, 3]]);

        let ctx_a = RollPairContext::standalone(dir.path().join("sa")).unwrap();
        let ctx_b = RollPairContext::standalone(dir.path().join("sb")).unwrap();
        let t: RollPair<String, u64> = ctx_a
            .parallelize(
                (0..5000u64).map(|i| (format!("k{i}"), i)),
                Options::partitions(4),
            )
            .unwrap();
        fa.remote_table(&t, "t", "0", std::slice::from_ref(&host))
            .await
            .unwrap();
        let got: Vec<RollPair<String, u64>> = fb
            .get_table(&ctx_b, "t", "0", std::slice::from_ref(&guest))
            .await
            .unwrap();
        let s: Vec<(String, u64)> = t.get_all().unwrap().map(Result::unwrap).collect();
        let g: Vec<(String, u64)> = got[0].get_all().unwrap().map(Result::unwrap).collect();
        assert_eq!(s, g);
    });

    // A route table with a fault: the roll-site does not start, and says where.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\"route_table\": {\n\"1\": {\"default\": [{\"ip\": \"a\", \"port\": 0}]}}}",
    )
    .unwrap();
    let out = Command::new(binary())
        .args([
            "rollsite",
            "--party-id",
            "1",
            "--port",
            "0",
            "--route-table",
        ])
        .arg(&bad)
        .env("EGGROLL_DATA_DIR", dir.path().join("data-bad"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("line 2"), "{err}");
}
