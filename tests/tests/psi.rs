//! The PSI between two parties whose roll-sites talk over mutual TLS only, checked against a
//! plain set intersection computed here: empty, disjoint, identical and partly overlapping
//! sets, with ids that are not plain ASCII.

use eggroll::two_parties::{Setup, TwoParties};
use eggroll_tests::certs::guest_and_host;
use std::collections::BTreeSet;

#[test]
fn psi_over_mutual_tls_matches_the_plain_intersection() {
    let dir = tempfile::tempdir().unwrap();
    let tls = guest_and_host(dir.path());
    let ids = |range: std::ops::Range<u32>| -> Vec<String> {
        range.map(|i| format!("用户-{i}✓")).collect()
    };
    let cases: [(&str, Vec<String>, Vec<String>); 5] = [
        ("empty", vec![], vec![]),
        ("one side empty", ids(0..50), vec![]),
        ("disjoint", ids(0..300), ids(300..700)),
        ("identical", ids(0..400), ids(0..400)),
        ("partly overlapping", ids(0..2500), ids(1700..3100)),
    ];
    for (i, (name, guest, host)) in cases.into_iter().enumerate() {
        let expected: Vec<String> = guest
            .iter()
            .collect::<BTreeSet<_>>()
            .intersection(&host.iter().collect())
            .map(|s| s.to_string())
            .collect();
        let root = dir.path().join(format!("case{i}"));
        let setup = Setup {
            tls: Some(tls.clone()),
            ..Setup::default()
        };
        let parties = TwoParties::start(&root, &format!("psi_tls_{i}"), &setup).unwrap();
        assert!(
            parties.guest.site.secure_addr().is_some(),
            "the roll-sites must listen for TLS"
        );
        let none = |_: &str| -> Box<dyn eggroll_psi::Progress + Send> { Box::new(()) };
        let (g, h) = parties
            .psi(guest.into_iter(), host.into_iter(), 4, &none)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        parties.stop().unwrap();
        assert_eq!(g.intersection, expected, "{name}: the guest's answer");
        assert_eq!(h.intersection, expected, "{name}: the host's answer");
        assert!(g.bytes_sent > 0 || expected.is_empty(), "{name}");
    }
}

#[test]
fn a_party_whose_psi_fails_makes_the_other_fail_at_once_with_its_reason() {
    use eggroll_federation::Party;
    use eggroll_psi::Role;
    use eggroll_rollpair::{Options, RollPair};
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::default();
    let parties = TwoParties::start(dir.path(), "psi_abort", &setup).unwrap();
    let ids = |ctx: &eggroll_rollpair::RollPairContext| -> RollPair<String, ()> {
        ctx.parallelize(
            (0..200).map(|i| (format!("id-{i}"), ())),
            Options::partitions(2),
        )
        .unwrap()
    };
    let guest_ids = ids(&parties.guest.ctx);
    // The host's input is gone before it starts: its PSI fails in its first phase.
    let host_ids = ids(&parties.host.ctx);
    host_ids.clone().destroy().unwrap();

    // The guest waits for the host's blinded ids; its idle timeout is minutes away.
    let (tx, rx) = std::sync::mpsc::channel();
    let fed = parties.guest.fed.clone();
    std::thread::spawn(move || {
        let r = eggroll_psi::run(
            Role::Guest,
            &guest_ids,
            &fed,
            &Party::new("host", "10000"),
            &(),
        );
        let _ = tx.send(r.map(|_| ()).map_err(|e| e.to_string()));
    });
    let host_err = eggroll_psi::run(
        Role::Host,
        &host_ids,
        &parties.host.fed,
        &Party::new("guest", "9999"),
        &(),
    )
    .unwrap_err()
    .to_string();
    let guest = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the guest still waits: the host's abort did not reach it");
    let err = guest.unwrap_err();
    eprintln!("the guest failed with: {err}");
    assert!(
        err.contains("party 10000 (role host) aborted session") && err.contains("its PSI failed"),
        "guest: {err}\nhost: {host_err}"
    );
    parties.stop().unwrap();
}

#[test]
fn a_psi_past_a_tiny_memory_budget_spills_its_tables_and_still_matches() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        storage: eggroll_core::config::StorageConfig {
            memory_budget_bytes: 64 << 10,
            ..Default::default()
        },
        ..Setup::default()
    };
    let parties = TwoParties::start(dir.path(), "psi_spill", &setup).unwrap();
    let guest: Vec<String> = (0..6000).map(|i| format!("id-{i}")).collect();
    let host: Vec<String> = (4500..9000).map(|i| format!("id-{i}")).collect();
    let expected: BTreeSet<String> = (4500..6000).map(|i| format!("id-{i}")).collect();
    let none = |_: &str| -> Box<dyn eggroll_psi::Progress + Send> { Box::new(()) };
    let (g, h) = parties
        .psi(guest.into_iter(), host.into_iter(), 4, &none)
        .unwrap();
    let scratch = |party: &str| {
        dir.path()
            .join(party)
            .join("data/scratch")
            .join(std::process::id().to_string())
    };
    let spilled = |party: &str| std::fs::read_dir(scratch(party)).map_or(0, |d| d.count());
    for (party, p) in [("guest", &parties.guest), ("host", &parties.host)] {
        let usage = p.ctx.memory_usage().expect("a standalone party's memory");
        assert!(
            usage.spilled_partitions > 0,
            "nothing of the {party}'s spilled past a 64 KiB budget: {usage:?}"
        );
        // The PSI destroys each table once done with it, spilled or not.
        assert_eq!(usage.used, 0, "the {party}'s tables outlived its PSI");
    }
    assert_eq!(
        spilled("9999") + spilled("10000"),
        0,
        "spills outlived their tables"
    );
    parties.stop().unwrap();
    assert_eq!(g.intersection, expected.iter().cloned().collect::<Vec<_>>());
    assert_eq!(h.intersection, g.intersection);
    assert_eq!(
        spilled("9999") + spilled("10000"),
        0,
        "spills outlived the session"
    );
}
