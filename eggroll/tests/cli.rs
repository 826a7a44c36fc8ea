//! The real `eggroll` binary, run as a new user would run it.

use std::process::Command;

fn eggroll() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eggroll"))
}

#[test]
fn help_lists_subcommands() {
    let out = eggroll().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "clustermanager",
        "nodemanager",
        "node",
        "session",
        "table",
        "bench",
        "demo",
        "deploy",
    ] {
        assert!(text.contains(sub), "{text}");
    }
}

/// Runs `cmd`; returns its stdout, asserting it succeeded (its output in the message if not).
fn success(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run eggroll");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn demo_computes_and_table_commands_read_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let text = success(
        eggroll()
            .args(["demo", "--ids", "3000", "--overlap", "1234", "--data-dir"])
            .arg(dir.path().join("demo")),
    );
    assert!(
        text.contains("intersection: 1234 ids (expected 1234, correct)"),
        "{text}"
    );
    assert!(text.contains("ids/s per party"), "{text}");

    // The demo destroys its persistent table; make one through the library to inspect.
    let ctx = eggroll_rollpair::RollPairContext::standalone(dir.path()).unwrap();
    ctx.parallelize(
        (0..300u32).map(|i| (format!("k{i}"), i)),
        eggroll_rollpair::Options::persistent("cli", "numbers", 3),
    )
    .unwrap();
    drop(ctx);
    let run = |args: &[&str]| {
        let out = eggroll()
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, text, _) = run(&["table", "ls"]);
    assert!(
        ok && text.contains("numbers") && text.contains("1 table(s)"),
        "{text}"
    );
    let (ok, text, _) = run(&["table", "count", "cli", "numbers"]);
    assert!(ok, "{text}");
    assert_eq!(text.trim(), "300");
    let (ok, text, _) = run(&["table", "head", "cli", "numbers", "-n", "4"]);
    assert!(ok && text.lines().count() == 4, "{text}");
    // Another process reads back every pair the library wrote.
    let (ok, text, _) = run(&["table", "head", "cli", "numbers", "-n", "1000"]);
    assert!(ok && text.lines().count() == 300, "{text}");
    for i in 0..300u32 {
        let key = format!("k{i}\"");
        assert_eq!(
            text.lines()
                .filter(|l| l.split(" => ").next().unwrap().ends_with(&key))
                .count(),
            1,
            "{key}"
        );
    }
    let (ok, _, err) = run(&["table", "count", "cli", "missing"]);
    assert!(
        !ok && err.contains("cli/missing") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn bad_config_is_named() {
    let out = eggroll()
        .args(["table", "ls"])
        .env("EGGROLL_STORAGE_BATCH_BYTES", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("EGGROLL_STORAGE_BATCH_BYTES"), "{err}");
}

#[test]
fn latency_bench_times_every_op_on_both_back_ends_and_a_remote() {
    // Few calls on a small table: the figures are the bench's business; here every op must
    // run, check its result against the table (the bench fails otherwise) and print both
    // back ends' p50 and p99.
    let text = success(eggroll().args(["bench", "--latency", "--rows", "100", "--samples", "5"]));
    for op in [
        "get ",
        "put ",
        "delete",
        "put_all",
        "get_all",
        "take(10)",
        "first",
        "count",
        "map_values",
        "map ",
        "filter",
        "reduce",
        "join",
        "union",
        "subtract_by_key",
    ] {
        let line = text.lines().find(|l| l.starts_with(op)).unwrap_or("");
        let figures = line.matches(" ms").count();
        assert!(figures == 4, "{op}: {line:?} in\n{text}");
    }
    let remote = text
        .lines()
        .find(|l| l.starts_with("remote + get"))
        .unwrap_or("");
    assert_eq!(remote.matches(" ms").count(), 2, "{remote:?} in\n{text}");
    let bad = eggroll()
        .args(["bench", "--latency", "--samples", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--samples"), "{err}");
}

#[test]
fn small_bench_runs_on_both_back_ends_and_prints_ratios() {
    let text = success(eggroll().args(["bench", "--rows", "20000", "--cluster"]));
    for op in [
        "put_all",
        "get_all",
        "count",
        "map_values",
        "reduce",
        "join",
    ] {
        // raw rows/s, standalone rows/s and ratio, cluster rows/s and ratio.
        let line = text.lines().find(|l| l.starts_with(op)).unwrap_or("");
        let numbers = line
            .split_whitespace()
            .filter(|w| w.parse::<f64>().is_ok_and(|x| x > 0.0))
            .count();
        assert!(numbers >= 5, "{op}: {line:?} in\n{text}");
    }
}
