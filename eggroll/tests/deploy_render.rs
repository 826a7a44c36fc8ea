//! `eggroll deploy render` as users run it: the sample party files (deploy/kubernetes/ and the
//! compose trial's) rendered by the binary; every Kubernetes manifest validated offline
//! against the Kubernetes API's schemas (kubernetes-validate, strict, a pinned version); the
//! pods' commands, environment and config files compared with the compose bundle's, which the
//! docker trial runs; every rendered config passed through the daemons' own checks.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.30.0";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn eggroll() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eggroll"));
    c.env_remove("EGGROLL_CONFIG");
    c
}

/// The party files of the repository: the Kubernetes samples and the trial's.
fn samples() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["deploy/kubernetes", "deploy/docker-compose"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("party-") && name.ends_with(".yaml") {
                out.push(path);
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 4,
        "expected two samples in each of deploy/kubernetes and deploy/docker-compose: {out:?}"
    );
    out
}

/// What trial.sh gives the renderer for the party it renders `n`th (1 or 2).
fn trial_sets(n: u32) -> Vec<String> {
    let subnet = format!("10.150.{n}.0/24");
    vec![
        format!("compose.subnet={subnet}"),
        format!("rollsite.localClients=[{subnet}]"),
        "compose.exchangeNetwork=eggtrial-test-exchange".into(),
    ]
}

fn render(party: &Path, target: &str, out: &Path, sets: &[String]) {
    let mut cmd = eggroll();
    cmd.args(["deploy", "render", "--party"])
        .arg(party)
        .args(["--target", target, "--out"])
        .arg(out);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "render of {} for {target} failed: {}",
        party.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every object of a rendered Kubernetes directory, by `Kind/name`.
fn manifests(dir: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let v = yaml(&entry.unwrap().path());
        let key = format!(
            "{}/{}",
            v["kind"].as_str().unwrap(),
            v["metadata"]["name"].as_str().unwrap()
        );
        out.insert(key, v);
    }
    out
}

/// The project's virtual environment's python, with kubernetes-validate: made (once, under a
/// lock) by `scripts/venv.sh`, which `make test` runs first. Nothing goes into the system
/// Python.
fn python() -> PathBuf {
    let script = repo().join("scripts/venv.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "this test needs kubernetes-validate in the project's venv, and {} could not make it \
         (run `make venv`): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs kubernetes-validate (strict, pinned version) on `files`: (passed, output).
fn kubernetes_validate(py: &Path, files: &[PathBuf]) -> (bool, String) {
    let tool = py.with_file_name("kubernetes-validate");
    let o = Command::new(&tool)
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schemas() {
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    // The validator itself refuses what the API refuses (a misspelt field, strict mode), so a
    // pass below means something.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 1\n  \
         selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    \
         spec: {containers: [{name: x, image: x}]}\n",
    )
    .unwrap();
    let (ok, out) = kubernetes_validate(&py, std::slice::from_ref(&bad));
    assert!(!ok, "kubernetes-validate accepted a misspelt field: {out}");

    for party in samples() {
        let stem = party.file_stem().unwrap().to_string_lossy().into_owned();
        let out = dir.path().join(format!("k8s-{stem}"));
        render(&party, "kubernetes", &out, &[]);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 10, "{}: only {files:?}", party.display());
        let (ok, text) = kubernetes_validate(&py, &files);
        assert!(
            ok,
            "{}: the manifests do not validate against Kubernetes {KUBERNETES_VERSION}:\n{text}",
            party.display()
        );
        println!(
            "{stem}: {} manifests valid for Kubernetes {KUBERNETES_VERSION}",
            files.len()
        );
    }
}

/// The must-show sample: TLS from a Secret, a NodePort, a polling client, three node managers.
#[test]
fn the_kubernetes_sample_has_what_the_issue_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    render(
        &repo().join("deploy/kubernetes/party-9999.yaml"),
        "kubernetes",
        dir.path(),
        &[],
    );
    let m = manifests(dir.path());
    let public = &m["Service/rollsite-public"];
    assert_eq!(public["spec"]["type"], "NodePort");
    assert_eq!(public["spec"]["ports"][0]["port"], 9371);
    assert_eq!(public["spec"]["ports"][0]["nodePort"], 30091);
    assert_eq!(m["StatefulSet/nodemanager"]["spec"]["replicas"], 3);
    let pod = &m["Deployment/rollsite"]["spec"]["template"]["spec"];
    let sources = pod["volumes"][0]["projected"]["sources"]
        .as_array()
        .unwrap();
    let secret = sources
        .iter()
        .find_map(|s| s.get("secret"))
        .expect("the roll-site mounts its TLS Secret");
    assert_eq!(secret["name"], "rollsite-tls");
    let conf = &m["ConfigMap/eggroll-config"]["data"]["rollsite.toml"];
    let conf = conf.as_str().unwrap();
    assert!(
        conf.contains("polling_exchange = \"192.0.2.20:30101\""),
        "{conf}"
    );
    assert!(conf.contains("polling_tls = true"), "{conf}");
    assert!(
        conf.contains("tls_key = \"/etc/eggroll/tls/party.key\""),
        "{conf}"
    );
    let routes: Value = serde_json::from_str(
        m["ConfigMap/eggroll-route-table"]["data"]["route_table.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        routes["route_table"]["default"]["default"][0]["ip"],
        "192.0.2.20"
    );
    assert_eq!(
        routes["route_table"]["default"]["default"][0]["use_ssl"],
        true
    );

    // Its peer is the polling server that lists it.
    let dir = tempfile::tempdir().unwrap();
    render(
        &repo().join("deploy/kubernetes/party-10000.yaml"),
        "kubernetes",
        dir.path(),
        &[],
    );
    let m = manifests(dir.path());
    let routes: Value = serde_json::from_str(
        m["ConfigMap/eggroll-route-table"]["data"]["route_table.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        routes["route_table"]["9999"]["default"][0]["is_polling"],
        true
    );
}

/// The environment of a container: name → value, a Kubernetes `$(VAR)` reference expanded
/// from the earlier variables and from `pod_name` for the downward API's metadata.name.
fn k8s_env(container: &Value, pod_name: &str) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in container["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = e["value"].as_str() {
            let mut v = v.to_string();
            for (k, kv) in &env {
                v = v.replace(&format!("$({k})"), kv.as_str());
            }
            v
        } else {
            assert_eq!(
                e["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name",
                "an unexpected valueFrom: {e}"
            );
            pod_name.to_string()
        };
        env.insert(name, value);
    }
    // POD_NAME only carries the pod's name into EGGROLL_NODEMANAGER_HOST; the daemon never
    // reads it.
    env.remove("POD_NAME");
    env
}

fn compose_env(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// What the docker trial runs is what the pods are given: for every daemon, the same
/// entrypoint, arguments and environment (node manager `i` of the compose bundle against
/// pod `nodemanager-i`), the same mounts, the same user, and the same config files, byte for
/// byte, in `/etc/eggroll`.
#[test]
fn the_pods_run_what_the_compose_trial_runs() {
    let dir = tempfile::tempdir().unwrap();
    let trial = ["party-9999.yaml", "party-10000.yaml"]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                repo().join("deploy/docker-compose").join(f),
                trial_sets(i as u32 + 1),
            )
        });
    let k8s_samples = ["party-9999.yaml", "party-10000.yaml"]
        .iter()
        .map(|f| (repo().join("deploy/kubernetes").join(f), Vec::new()));
    for (party, sets) in trial.chain(k8s_samples) {
        let label = party.display().to_string();
        let stem = format!(
            "{}-{}",
            party
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy(),
            party.file_stem().unwrap().to_string_lossy()
        );
        let k8s_dir = dir.path().join(format!("{stem}-k8s"));
        let compose_dir = dir.path().join(format!("{stem}-compose"));
        render(&party, "kubernetes", &k8s_dir, &sets);
        render(&party, "compose", &compose_dir, &sets);
        let m = manifests(&k8s_dir);
        let compose = yaml(&compose_dir.join("docker-compose.yml"));
        let services = compose["services"].as_object().unwrap();

        // Config files: the ConfigMaps' files are the bundle's conf/, byte for byte.
        let mut pod_files = BTreeMap::new();
        for map in ["ConfigMap/eggroll-config", "ConfigMap/eggroll-route-table"] {
            for (k, v) in m[map]["data"].as_object().unwrap() {
                pod_files.insert(k.clone(), v.as_str().unwrap().to_string());
            }
        }
        let mut bundle_files = BTreeMap::new();
        for entry in std::fs::read_dir(compose_dir.join("conf")).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                bundle_files.insert(
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&path).unwrap(),
                );
            }
        }
        assert_eq!(pod_files, bundle_files, "{label}: config files differ");
        assert!(pod_files.contains_key("rollsite.toml"), "{label}");

        // Each daemon: the pod spec(s) and the compose service(s) it becomes.
        let replicas = m["StatefulSet/nodemanager"]["spec"]["replicas"]
            .as_u64()
            .unwrap();
        let nm_services = services
            .keys()
            .filter(|k| k.starts_with("nodemanager-"))
            .count() as u64;
        assert_eq!(replicas, nm_services, "{label}: node manager count");
        let mut pairs: Vec<(String, &Value, String)> = vec![
            (
                "rollsite".into(),
                &m["Deployment/rollsite"],
                "rollsite".into(),
            ),
            (
                "clustermanager".into(),
                &m["Deployment/clustermanager"],
                "clustermanager".into(),
            ),
        ];
        for i in 0..replicas {
            pairs.push((
                format!("nodemanager-{i}"),
                &m["StatefulSet/nodemanager"],
                format!("nodemanager-{i}"),
            ));
        }
        for (service, workload, pod_name) in pairs {
            let s = &services[&service];
            let pod = &workload["spec"]["template"]["spec"];
            let c = &pod["containers"][0];
            let what = format!("{label}: {service}");
            assert_eq!(c["command"], s["entrypoint"], "{what}: entrypoint");
            assert_eq!(c["args"], s["command"], "{what}: arguments");
            assert_eq!(k8s_env(c, &pod_name), compose_env(s), "{what}: environment");
            if service.starts_with("nodemanager-") {
                assert_eq!(
                    compose_env(s)["EGGROLL_NODEMANAGER_HOST"],
                    format!("{pod_name}.nodemanager"),
                    "{what}"
                );
                // The name it binds to is its name on the party network.
                assert_eq!(
                    s["networks"]["party"]["aliases"][0],
                    format!("{pod_name}.nodemanager")
                );
                assert_eq!(workload["spec"]["serviceName"], "nodemanager");
            }
            // Mounts: conf read-only at /etc/eggroll, data at /var/lib/eggroll.
            let k8s_mounts: BTreeMap<String, (String, bool)> = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    (
                        v["mountPath"].as_str().unwrap().to_string(),
                        (
                            v["name"].as_str().unwrap().to_string(),
                            v["readOnly"].as_bool().unwrap_or(false),
                        ),
                    )
                })
                .collect();
            assert_eq!(k8s_mounts["/etc/eggroll"], ("conf".into(), true), "{what}");
            assert_eq!(k8s_mounts["/var/lib/eggroll"].0, "data", "{what}");
            let vols: Vec<&str> = s["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert!(vols.contains(&"./conf:/etc/eggroll:ro"), "{what}: {vols:?}");
            assert!(
                vols.contains(&format!("{service}-data:/var/lib/eggroll").as_str()),
                "{what}: {vols:?}"
            );
            // The same scratch dirs, in memory or empty, and the same user, non-root.
            let tmpfs: Vec<&str> = s["tmpfs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().split(':').next().unwrap())
                .collect();
            for path in ["/tmp", "/var/log/eggroll"] {
                assert!(k8s_mounts.contains_key(path), "{what}: {path}");
                assert!(tmpfs.contains(&path), "{what}: {path}");
            }
            let sc = &pod["securityContext"];
            assert_eq!(
                s["user"],
                format!("{}:{}", sc["runAsUser"], sc["runAsGroup"]),
                "{what}"
            );
            assert_eq!(s["read_only"], true, "{what}");
            assert_eq!(
                c["securityContext"]["readOnlyRootFilesystem"], true,
                "{what}"
            );
        }
        // The certificate files the roll-site's config names are where the Secret puts them.
        let rs_pod = &m["Deployment/rollsite"]["spec"]["template"]["spec"];
        let rs_conf = &pod_files["rollsite.toml"];
        for source in rs_pod["volumes"][0]["projected"]["sources"]
            .as_array()
            .unwrap()
        {
            if let Some(secret) = source.get("secret") {
                for item in secret["items"].as_array().unwrap() {
                    let path = format!("/etc/eggroll/{}", item["path"].as_str().unwrap());
                    assert!(
                        rs_conf.contains(&path),
                        "{label}: {path} not in rollsite.toml"
                    );
                }
            }
        }
    }
}

/// Every rendered config and route table passes the daemons' own checks (unknown keys are
/// refused there, and the route table parsed as the roll-site parses it).
#[test]
fn rendered_configs_pass_the_daemons_checks() {
    let dir = tempfile::tempdir().unwrap();
    for (i, party) in samples().iter().enumerate() {
        let out = dir.path().join(format!("bundle-{i}"));
        render(party, "compose", &out, &trial_sets(1));
        let conf = out.join("conf");
        for entry in std::fs::read_dir(&conf).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let o = eggroll()
                    .arg("--config")
                    .arg(&path)
                    .args(["rollsite", "--check", "--route-table"])
                    .arg(conf.join("route_table.json"))
                    .output()
                    .unwrap();
                assert!(
                    o.status.success(),
                    "{} (from {}): {}",
                    path.display(),
                    party.display(),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    }
}

#[test]
fn manifests_on_stdout_and_errors_that_say_what_to_do() {
    let party = repo().join("deploy/kubernetes/party-10000.yaml");
    let o = eggroll()
        .args(["deploy", "render", "--target", "kubernetes", "--party"])
        .arg(&party)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs[0]["kind"], "Namespace", "the namespace comes first");
    assert!(docs.iter().any(|d| d["kind"] == "StatefulSet"));

    let o = eggroll()
        .args(["deploy", "render", "--target", "compose", "--party"])
        .arg(&party)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--out"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: p\nnamespace: p\npartyId: 1\nrollsite:\n  localClients: [127.0.0.0/8]\n  \
         polling: {enabled: true, type: client}\n",
    )
    .unwrap();
    let o = eggroll()
        .args(["deploy", "render", "--target", "kubernetes", "--party"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rollsite.polling.server"), "{err}");
    assert!(err.contains("bad.yaml"), "{err}");

    // A render into a directory drops the manifests an earlier render made and this one no
    // longer does.
    let out = dir.path().join("k8s");
    render(&party, "kubernetes", &out, &[]);
    let before = std::fs::read_dir(&out).unwrap().count();
    render(&party, "kubernetes", &out, &["modules=[rollsite]".into()]);
    let after: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(after.len() < before, "{after:?}");
    assert!(
        !after.iter().any(|f| f.contains("statefulset")),
        "{after:?}"
    );
}
