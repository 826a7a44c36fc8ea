//! Distributed mode end to end, with real processes: restarts, faults (a killed egg, a silent
//! node manager, a session that cannot start), bad requests, and the operator commands.

use eggroll_proto::meta::cluster_manager_client::ClusterManagerClient;
use eggroll_proto::meta::egg_service_client::EggServiceClient;
use eggroll_proto::meta::node_manager_client::NodeManagerClient;
use eggroll_proto::meta::{
    job::Op, Count, CreateSessionRequest, Functor, Job, MapReducePartitions, PairBatch, Partition,
    PutRequest, SessionId, SessionStatus, StartProcessors, Store, StoreLocator, StoreType, Task,
    Tasks,
};
use eggroll_rollpair::{Options, RollPair, RollPairContext, SessionOptions};
use eggroll_tests::cluster::{binary, spec, ClusterSpec, TestCluster};
use eggroll_tests::functions::{AddTo, Slow};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cm(
    rt: &tokio::runtime::Runtime,
    c: &TestCluster,
) -> ClusterManagerClient<tonic::transport::Channel> {
    rt.block_on(ClusterManagerClient::connect(format!(
        "http://{}",
        c.address()
    )))
    .unwrap()
}

fn all<K: Ord + serde::Serialize + serde::de::DeserializeOwned + Send + 'static>(
    t: &RollPair<K, Vec<u8>>,
) -> BTreeMap<K, Vec<u8>> {
    t.get_all().unwrap().collect::<Result<_, _>>().unwrap()
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn persistent_tables_survive_a_restart_of_every_daemon() {
    let mut c = TestCluster::start(spec());
    let data: BTreeMap<String, Vec<u8>> = (0..5000)
        .map(|i| (format!("id-{i}"), format!("value {i} ✓").into_bytes()))
        .collect();
    {
        let ctx = c.connect();
        let t = ctx
            .parallelize(data.clone(), Options::persistent("keep", "ids", 8))
            .unwrap();
        t.save_as(Options::persistent("keep", "ids_in_3", 3))
            .unwrap();
        ctx.stop().unwrap();
    }
    c.restart_all();
    let ctx = c.connect();
    let t: RollPair<String, Vec<u8>> = ctx.load("keep", "ids").unwrap();
    assert_eq!(t.partitions(), 8);
    assert_eq!(all(&t), data);
    let t3: RollPair<String, Vec<u8>> = ctx.load("keep", "ids_in_3").unwrap();
    assert_eq!(t3.partitions(), 3);
    assert_eq!(all(&t3), data);
    // The operator commands read the same tables.
    let ls = c.cli(&["table", "ls", "keep"]);
    assert!(ls.contains("ids_in_3") && ls.contains("2 table(s)"), "{ls}");
    assert_eq!(c.cli(&["table", "count", "keep", "ids"]).trim(), "5000");
    let head = c.cli(&["table", "head", "keep", "ids", "-n", "3"]);
    assert_eq!(head.lines().count(), 3, "{head}");
    ctx.stop().unwrap();
}

#[test]
fn a_killed_egg_fails_the_job_with_its_name_and_the_session_goes_to_error() {
    let c = TestCluster::shared();
    let ctx = c.connect();
    let t = ctx
        .parallelize((0..400i64).map(|i| (i, i)), Options::partitions(8))
        .unwrap();
    let meta = c.session(ctx.session_id());
    let victim = meta.processors[1].clone();
    assert!(victim.pid > 0 && pid_alive(victim.pid));
    // 50 values of 40 ms per partition: the job runs for about two seconds.
    let job = std::thread::spawn(move || {
        let started = Instant::now();
        let r = t.map_values(&Slow { ms: 40 }).map(|_| ());
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    let killed_at = Instant::now();
    signal(victim.pid, "-9");
    let (result, _) = job.join().unwrap();
    let waited = killed_at.elapsed();
    let err = result.expect_err("the job must fail").to_string();
    assert!(
        waited < Duration::from_secs(10),
        "took {waited:?} after the kill"
    );
    assert!(err.contains(&format!("processor {}", victim.id)), "{err}");
    let meta = c.session(ctx.session_id());
    assert_eq!(meta.status(), SessionStatus::Error, "{meta:?}");
    assert!(
        meta.reason.contains(&victim.id.to_string()) && meta.reason.contains("signal"),
        "{}",
        meta.reason
    );
    // The session's other eggs are stopped with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while meta.processors.iter().any(|p| pid_alive(p.pid)) {
        assert!(Instant::now() < deadline, "eggs outlived their session");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_silent_node_manager_is_lost_and_gets_no_new_sessions() {
    let c = TestCluster::start(ClusterSpec {
        heartbeat_timeout_ms: Some(1500),
        heartbeat_interval_ms: 200,
        ..spec()
    });
    let before = c.connect();
    let silent = &c.nodes()[1];
    signal(silent.pid(), "-STOP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = c.cli(&["node", "list"]);
        if out.contains(" LOST ") {
            break;
        }
        assert!(Instant::now() < deadline, "node never marked lost:\n{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The session that ran on it fails, with the reason.
    let meta = c.session(before.session_id());
    assert_eq!(meta.status(), SessionStatus::Error);
    assert!(meta.reason.contains("lost"), "{}", meta.reason);
    // New sessions go to the live node only.
    let after = c.connect();
    let meta = c.session(after.session_id());
    let nodes: std::collections::BTreeSet<u64> =
        meta.processors.iter().map(|p| p.server_node_id).collect();
    assert_eq!(nodes.len(), 1, "{meta:?}");
    let t = after
        .parallelize((0..100i64).map(|i| (i, i)), Options::partitions(4))
        .unwrap();
    assert_eq!(t.count().unwrap(), 100);
    // Once it speaks again it registers anew.
    signal(silent.pid(), "-CONT");
    c.wait_nodes(2);
    after.stop().unwrap();
}

#[test]
fn sessions_that_cannot_start_fail_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let hang = dir.path().join("hang.sh");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 600\n").unwrap();
    let crash = dir.path().join("crash.sh");
    std::fs::write(
        &crash,
        "#!/bin/sh\necho 'error while loading shared libraries: libmissing.so' >&2\nexit 3\n",
    )
    .unwrap();
    for f in [&hang, &crash] {
        let mut perm = std::fs::metadata(f).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(f, perm).unwrap();
    }
    let opts = SessionOptions {
        processors_per_node: 1,
        start_timeout_ms: 1500,
        ..Default::default()
    };

    let c = TestCluster::start(ClusterSpec {
        nodes: 1,
        eggpair_executable: Some(hang),
        ..spec()
    });
    let started = Instant::now();
    let err = RollPairContext::connect(c.address(), opts.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.contains("did not start within 1500 ms") && err.contains("processor"),
        "{err}"
    );

    let c = TestCluster::start(ClusterSpec {
        nodes: 1,
        eggpair_executable: Some(crash),
        ..spec()
    });
    let err = RollPairContext::connect(c.address(), opts)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("exit status: 3") && err.contains("libmissing.so"),
        "{err}"
    );
    let sessions = c.cli(&["session", "list"]);
    assert!(sessions.contains("ERROR"), "{sessions}");
}

#[test]
fn bad_requests_get_clear_errors_and_the_daemons_keep_serving() {
    let c = TestCluster::shared();
    let ctx = c.connect();
    let rt = rt();
    let t = ctx
        .parallelize((0..50i64).map(|i| (i, i)), Options::partitions(4))
        .unwrap();
    let mut cm = cm(&rt, c);

    let e = rt
        .block_on(cm.get_session(SessionId {
            id: "no_such".into(),
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(
        e.message().contains("no_such") && e.message().contains("does not exist"),
        "{e}"
    );
    let e = rt
        .block_on(cm.create_session(CreateSessionRequest {
            processors_per_node: 100_000,
            ..Default::default()
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = rt
        .block_on(cm.create_session(CreateSessionRequest {
            session_id: "../escape".into(),
            ..Default::default()
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = rt
        .block_on(cm.get_store(eggroll_proto::meta::StoreRequest::default()))
        .unwrap_err();
    assert!(e.message().contains("locator"), "{e}");

    let meta = c.session(ctx.session_id());
    let (a, b) = (&meta.processors[0], &meta.processors[1]);
    let mut egg = rt
        .block_on(EggServiceClient::connect(format!(
            "http://{}",
            b.command_endpoint
        )))
        .unwrap();
    let mut l = StoreLocator {
        namespace: ctx.session_id().into(),
        name: "probe".into(),
        total_partitions: 1,
        ..Default::default()
    };
    l.set_store_type(StoreType::InMemory);
    let owned_by = |p: &eggroll_proto::meta::Processor| Store {
        locator: Some(l.clone()),
        partitions: vec![Partition {
            id: 0,
            processor_id: p.id,
            server_node_id: p.server_node_id,
            endpoint: p.command_endpoint.clone(),
            ..Default::default()
        }],
        options: Default::default(),
    };
    let task = |store: Store, op: Op| Task {
        job: Some(Job {
            id: "probe".into(),
            session_id: ctx.session_id().into(),
            inputs: vec![store.clone()],
            outputs: vec![store],
            op: Some(op),
        }),
        partition: 0,
    };
    // A partition this egg does not serve.
    let e = rt
        .block_on(egg.run_task(task(owned_by(a), Op::Count(Count {}))))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message()
            .contains(&format!("served by processor {}", a.id)),
        "{e}"
    );
    // A task with no job, and a job with no operation.
    let e = rt.block_on(egg.run_task(Task::default())).unwrap_err();
    assert!(e.message().contains("no job"), "{e}");
    let mut no_op = task(owned_by(b), Op::Count(Count {}));
    if let Some(j) = no_op.job.as_mut() {
        j.op = None;
    }
    let e = rt.block_on(egg.run_task(no_op)).unwrap_err();
    assert!(e.message().contains("no operation"), "{e}");
    // An unknown function name.
    let unknown = Op::MapReduce(MapReducePartitions {
        mapper: Some(Functor {
            name: "nobody::Registered".into(),
            kind: "map_values".into(),
            params: vec![],
        }),
        ..Default::default()
    });
    let e = rt
        .block_on(egg.run_task(task(owned_by(b), unknown)))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.message().contains("nobody::Registered"), "{e}");
    // Several partitions' tasks in one call: a partition listed twice, and one this egg does
    // not serve, are refused as a single task would be.
    let tasks = |store: Store, partitions: Vec<u32>| Tasks {
        job: task(store, Op::Count(Count {})).job,
        partitions,
    };
    let e = rt
        .block_on(egg.run_tasks(tasks(owned_by(b), vec![0, 0])))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("partition 0 is listed twice"), "{e}");
    let e = rt
        .block_on(egg.run_tasks(tasks(owned_by(a), vec![0])))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    let done = rt
        .block_on(egg.run_tasks(tasks(owned_by(b), vec![])))
        .unwrap()
        .into_inner();
    assert!(done.results.is_empty());
    // A batch whose keys and values do not pair up.
    let bad = PutRequest {
        store: Some(owned_by(b)),
        partition: 0,
        batch: Some(PairBatch {
            keys: vec![b"k".to_vec(), b"k2".to_vec()],
            values: vec![b"v".to_vec()],
            packed: vec![],
        }),
        combiner: None,
    };
    let e = rt
        .block_on(egg.put_batches(tokio_stream::iter([bad])))
        .unwrap_err();
    assert!(e.message().contains("2 keys but 1 values"), "{e}");
    // A packed batch cut short.
    let cut = PutRequest {
        store: Some(owned_by(b)),
        partition: 0,
        batch: Some(PairBatch {
            packed: vec![5, 0, 0, 0, b'a'],
            ..Default::default()
        }),
        combiner: None,
    };
    let e = rt
        .block_on(egg.put_batches(tokio_stream::iter([cut])))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("truncated"), "{e}");
    // The node manager refuses a start request for an unsafe session id.
    let mut nm = rt
        .block_on(NodeManagerClient::connect(format!(
            "http://{}",
            c.nodes()[0].address
        )))
        .unwrap();
    let e = rt
        .block_on(nm.start(StartProcessors {
            session_id: "a/b".into(),
            processors: vec![],
            cluster_manager: c.address().to_string(),
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");

    // Everyone keeps serving.
    assert_eq!(t.map_values(&AddTo { n: 1 }).unwrap().count().unwrap(), 50);
    assert_eq!(c.session(ctx.session_id()).status(), SessionStatus::Active);
    ctx.stop().unwrap();
}

#[test]
fn operator_commands_show_nodes_sessions_and_tables() {
    let c = TestCluster::shared();
    let nodes = c.cli(&["node", "list"]);
    assert_eq!(nodes.matches(" ALIVE ").count(), 2, "{nodes}");
    assert!(nodes.contains("2 node(s)"), "{nodes}");

    let ctx = c.connect();
    let id = ctx.session_id().to_string();
    ctx.parallelize(
        (0..10u32).map(|i| (i, vec![i as u8])),
        Options::persistent("ops", "small", 2),
    )
    .unwrap();
    let list = c.cli(&["session", "list"]);
    assert!(list.contains(&id) && list.contains("ACTIVE"), "{list}");
    // An in-memory table, so that its eggs' memory shows.
    let held = ctx
        .parallelize(
            (0..1000u32).map(|i| (i, vec![i as u8; 100])),
            Options::partitions(4),
        )
        .unwrap();
    let show = c.cli(&["session", "show", &id]);
    assert!(
        show.contains("ACTIVE") && show.matches("RUNNING").count() == 4,
        "{show}"
    );
    // Each egg answers with its memory: tables against the budget, spill, resident set.
    let rows: Vec<&str> = show.lines().filter(|l| l.contains("RUNNING")).collect();
    assert!(
        rows.iter()
            .all(|r| r.contains(" parts)") && r.ends_with("iB")),
        "{show}"
    );
    assert!(
        rows.iter().any(|r| !r.contains(" 0 B/")),
        "no egg reports the in-memory table it holds:\n{show}"
    );
    drop(held);
    assert_eq!(c.cli(&["table", "count", "ops", "small"]).trim(), "10");

    let pids: Vec<u32> = c.session(&id).processors.iter().map(|p| p.pid).collect();
    let stopped = c.cli(&["session", "stop", &id]);
    assert!(stopped.contains("CLOSED"), "{stopped}");
    // Eggs never outlive their session.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| pid_alive(*p)) {
        assert!(Instant::now() < deadline, "eggs outlived their session");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = c.cli_output(&["session", "show", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope") && err.contains("does not exist"),
        "{err}"
    );
    let out = std::process::Command::new(binary())
        .args(["node", "list", "--cluster-manager", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the cluster manager"), "{err}");
}

/// One egg per node and a lease of 1.5 s, for the tests of leases.
fn short_lease() -> SessionOptions {
    SessionOptions {
        processors_per_node: 1,
        lease_ms: 1500,
        ..Default::default()
    }
}

#[test]
fn a_session_whose_client_goes_away_is_closed_and_its_eggs_exit() {
    let c = TestCluster::shared();
    let ctx = c.connect_with(short_lease());
    let id = ctx.session_id().to_string();
    let pids: Vec<u32> = c.session(&id).processors.iter().map(|p| p.pid).collect();
    assert_eq!(pids.len(), 2);
    // The client vanishes without stopping its session: its lease runs out.
    drop(ctx);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let meta = c.session(&id);
        if meta.status() == SessionStatus::Closed {
            assert!(meta.reason.contains("stopped renewing"), "{}", meta.reason);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lease never expired: {meta:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    while pids.iter().any(|p| pid_alive(*p)) {
        assert!(Instant::now() < deadline, "eggs outlived their session");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_idle_client_keeps_its_session_past_its_lease() {
    let c = TestCluster::shared();
    let ctx = c.connect_with(short_lease());
    let t = ctx
        .parallelize((0..100i64).map(|i| (i, i * 2)), Options::partitions(4))
        .unwrap();
    // No call for more than twice the lease: the renewals run on their own thread, not on
    // the client's runtime, which runs only while a call waits.
    std::thread::sleep(Duration::from_millis(3500));
    let meta = c.session(ctx.session_id());
    assert_eq!(meta.status(), SessionStatus::Active, "{meta:?}");
    let mut got: Vec<(i64, i64)> = t.get_all().unwrap().map(|p| p.unwrap()).collect();
    got.sort();
    assert_eq!(got, (0..100i64).map(|i| (i, i * 2)).collect::<Vec<_>>());
    ctx.stop().unwrap();
}

#[test]
fn a_session_of_an_unknown_processor_type_is_refused_by_name() {
    let c = TestCluster::shared();
    let err = RollPairContext::connect(
        c.address(),
        SessionOptions {
            processor_type: "jvm_egg".into(),
            ..Default::default()
        },
    )
    .err()
    .expect("an unknown processor type must be refused")
    .to_string();
    assert!(
        err.contains("eggroll.session.processor.type")
            && err.contains("jvm_egg")
            && err.contains("python_egg_pair"),
        "{err}"
    );
    // The cluster goes on serving.
    let ctx = c.connect();
    let t = ctx
        .parallelize((0..10i64).map(|i| (i, i)), Options::partitions(2))
        .unwrap();
    assert_eq!(t.count().unwrap(), 10);
}
