//! Kubernetes manifests of a party: the roll-site as a Deployment with its Services (one for
//! the party's own clients, one of the requested type for other parties) and TLS from a
//! Secret; the cluster manager as a Deployment with a Service and a volume claim for its
//! metadata; the node managers as a StatefulSet with a claim per pod and a headless Service;
//! ConfigMaps for the configs and the route table. Probes on the daemons' `/healthz` and
//! `/readyz`, Prometheus scrape annotations, requests and limits, non-root pods.

use crate::configs::{self, Role, CONF_DIR, DATA_DIR, LOGS_DIR, NODEMANAGER, ROLLSITE};
use crate::party_file::{PartyFile, Resources, ServiceType, Storage};
use crate::{to_yaml, DeployError};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The ConfigMap of the daemons' TOML files.
pub const CONFIG_MAP: &str = "eggroll-config";
/// The ConfigMap of the roll-site's route table (re-read by the roll-site when it changes).
pub const ROUTE_TABLE_MAP: &str = "eggroll-route-table";
/// The user and group the daemons run as (the image's `eggroll` user).
pub const UID: i64 = 10001;

/// Every object, one file each, named so that `kubectl apply -f DIR` creates the namespace
/// first.
pub fn render(party: &PartyFile) -> Result<BTreeMap<String, String>, DeployError> {
    let mut out = BTreeMap::new();
    for (i, obj) in objects(party)?.iter().enumerate() {
        let kind = obj["kind"].as_str().unwrap_or("object").to_lowercase();
        let name = obj["metadata"]["name"].as_str().unwrap_or("unnamed");
        out.insert(format!("{i:02}-{kind}-{name}.yaml"), to_yaml(obj)?);
    }
    Ok(out)
}

/// The objects as JSON values, the namespace first.
pub fn objects(party: &PartyFile) -> Result<Vec<Value>, DeployError> {
    let files = configs::files(party)?;
    let ns = &party.namespace;
    let mut objs = vec![json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": labels(party, None)},
    })];
    let tomls: BTreeMap<&String, &String> =
        files.iter().filter(|(k, _)| k.ends_with(".toml")).collect();
    let config_hash = fnv(&format!("{tomls:?}"));
    objs.push(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(party, CONFIG_MAP, None),
        "data": tomls,
    }));
    let roles = Role::of(party);
    if roles.contains(&Role::Rollsite) {
        objs.push(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(party, ROUTE_TABLE_MAP, None),
            "data": {"route_table.json": files["route_table.json"]},
        }));
    }
    for role in roles {
        match role {
            Role::Clustermanager => {
                let s = party.clustermanager.storage();
                objs.push(claim(party, "clustermanager-data", role, &s));
                objs.push(service(
                    party,
                    configs::CLUSTERMANAGER,
                    role,
                    &[("grpc", configs::CM_PORT), ("http", configs::CM_HTTP)],
                ));
                objs.push(deployment(party, role, &config_hash, "clustermanager-data"));
            }
            Role::Nodemanager => {
                let mut svc = service(
                    party,
                    NODEMANAGER,
                    role,
                    &[("grpc", configs::NM_PORT), ("http", configs::NM_HTTP)],
                );
                // Headless: each node manager is dialled by its own name, and that name
                // must resolve before it is ready, since it binds to it at start.
                svc["spec"]["clusterIP"] = json!("None");
                svc["spec"]["publishNotReadyAddresses"] = json!(true);
                objs.push(svc);
                objs.push(statefulset(party, &config_hash));
            }
            Role::Rollsite => {
                let s = party.rollsite.storage();
                objs.push(claim(party, "rollsite-data", role, &s));
                objs.push(service(
                    party,
                    ROLLSITE,
                    role,
                    &[("grpc", configs::RS_PORT), ("http", configs::RS_HTTP)],
                ));
                objs.push(public_service(party));
                objs.push(deployment(party, role, &config_hash, "rollsite-data"));
            }
        }
    }
    Ok(objs)
}

fn labels(party: &PartyFile, role: Option<Role>) -> Value {
    let mut l = json!({
        "app.kubernetes.io/name": "eggroll",
        "app.kubernetes.io/instance": party.name,
        "app.kubernetes.io/part-of": "eggroll-rs",
        "app.kubernetes.io/managed-by": "eggroll-deploy",
        "eggroll-rs/party-id": party.party_id.0,
    });
    if let Some(r) = role {
        l["app.kubernetes.io/component"] = json!(r.name());
    }
    l
}

fn selector(party: &PartyFile, role: Role) -> Value {
    json!({
        "app.kubernetes.io/name": "eggroll",
        "app.kubernetes.io/instance": party.name,
        "app.kubernetes.io/component": role.name(),
    })
}

fn meta(party: &PartyFile, name: &str, role: Option<Role>) -> Value {
    json!({"name": name, "namespace": party.namespace, "labels": labels(party, role)})
}

fn claim(party: &PartyFile, name: &str, role: Role, s: &Storage<'_>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(party, name, Some(role)),
        "spec": claim_spec(s),
    })
}

fn claim_spec(s: &Storage<'_>) -> Value {
    let mut spec = json!({
        "accessModes": [s.access_mode],
        "resources": {"requests": {"storage": s.size}},
    });
    if let Some(class) = s.storage_class {
        spec["storageClassName"] = json!(class);
    }
    spec
}

fn service(party: &PartyFile, name: &str, role: Role, ports: &[(&str, u16)]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(party, name, Some(role)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(party, role),
            "ports": ports.iter().map(|(n, p)| json!({
                "name": n, "port": p, "targetPort": n, "protocol": "TCP"
            })).collect::<Vec<_>>(),
        },
    })
}

/// The Service other parties reach: only the public port (9371 with TLS), of the requested
/// type.
fn public_service(party: &PartyFile) -> Value {
    let rs = &party.rollsite;
    let port_name = if rs.enable_tls { "grpc-tls" } else { "grpc" };
    let mut port = json!({
        "name": port_name,
        "port": configs::public_port(party),
        "targetPort": port_name,
        "protocol": "TCP",
    });
    if let Some(n) = rs.node_port {
        port["nodePort"] = json!(n);
    }
    let mut spec = json!({
        "type": rs.service_type.as_str(),
        "selector": selector(party, Role::Rollsite),
        "ports": [port],
    });
    if rs.service_type != ServiceType::ClusterIp {
        // Keep other parties' source addresses: with the default (Cluster) a node may
        // masquerade them as an address of the pod network, which rollsite.localClients
        // trusts to collect received data.
        spec["externalTrafficPolicy"] = json!("Local");
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(party, &format!("{ROLLSITE}-public"), Some(Role::Rollsite)),
        "spec": spec,
    })
}

fn resources(r: &Resources) -> Value {
    let q = |m: &BTreeMap<String, crate::party_file::Quantity>| {
        m.iter()
            .map(|(k, v)| (k.clone(), json!(v.0)))
            .collect::<serde_json::Map<_, _>>()
    };
    let mut out = json!({});
    if !r.requests.is_empty() {
        out["requests"] = Value::Object(q(&r.requests));
    }
    if !r.limits.is_empty() {
        out["limits"] = Value::Object(q(&r.limits));
    }
    out
}

/// The container's environment: the shared one, then the role's own.
pub fn env(party: &PartyFile, role: Role) -> Vec<Value> {
    let mut env: Vec<Value> = configs::common_env(party)
        .into_iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    if role == Role::Nodemanager {
        env.push(
            json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        );
        env.push(json!({
            "name": configs::NODEMANAGER_HOST_ENV,
            "value": format!("$(POD_NAME).{NODEMANAGER}"),
        }));
    }
    env
}

fn container(party: &PartyFile, role: Role) -> Value {
    let res = match role {
        Role::Rollsite => &party.rollsite.resources,
        Role::Clustermanager => &party.clustermanager.resources,
        Role::Nodemanager => &party.nodemanager.resources,
    };
    let mut ports = match role {
        Role::Rollsite => vec![json!({"name": "grpc", "containerPort": configs::RS_PORT})],
        Role::Clustermanager => vec![json!({"name": "grpc", "containerPort": configs::CM_PORT})],
        Role::Nodemanager => vec![json!({"name": "grpc", "containerPort": configs::NM_PORT})],
    };
    if role == Role::Rollsite && party.rollsite.enable_tls {
        ports.push(json!({"name": "grpc-tls", "containerPort": configs::RS_TLS_PORT}));
    }
    ports.push(json!({"name": "http", "containerPort": role.http_port()}));
    let mut mounts = vec![
        json!({"name": "conf", "mountPath": CONF_DIR, "readOnly": true}),
        json!({"name": "data", "mountPath": DATA_DIR}),
        json!({"name": "logs", "mountPath": LOGS_DIR}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    mounts.sort_by_key(|m| m["mountPath"].as_str().map(str::to_string));
    let mut c = json!({
        "name": role.name(),
        "image": party.image,
        "command": ["/eggroll"],
        "args": role.args(),
        "env": env(party, role),
        "ports": ports,
        "volumeMounts": mounts,
        "resources": resources(res),
        // /healthz: the process serves; /readyz: it can do its job (registered, listening).
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "initialDelaySeconds": 3, "periodSeconds": 5, "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
        },
    });
    if let Some(policy) = &party.pull_policy {
        c["imagePullPolicy"] = json!(policy);
    }
    c
}

/// The `conf` volume: the TOML files, and for the roll-site the route table and the TLS
/// Secret's files under `tls/`, in one directory as the compose bundle's `conf/`.
fn conf_volume(party: &PartyFile, role: Role) -> Value {
    let mut sources = vec![json!({"configMap": {"name": CONFIG_MAP}})];
    if role == Role::Rollsite {
        sources.push(json!({"configMap": {"name": ROUTE_TABLE_MAP}}));
        if party.rollsite.enable_tls {
            sources.push(json!({"secret": {
                "name": party.rollsite.tls_secret,
                "items": configs::TLS_FILES.iter().map(|f| json!({
                    "key": f, "path": format!("tls/{f}"),
                })).collect::<Vec<_>>(),
            }}));
        }
    }
    // Readable by the daemons' group (fsGroup) only: the TLS key is among the files.
    json!({"name": "conf", "projected": {"defaultMode": 0o440, "sources": sources}})
}

fn pod_spec(party: &PartyFile, role: Role, config_hash: &str) -> (Value, Value) {
    let node_selector = match role {
        Role::Rollsite => &party.rollsite.node_selector,
        Role::Clustermanager => &party.clustermanager.node_selector,
        Role::Nodemanager => &party.nodemanager.node_selector,
    };
    let mut spec = json!({
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        // The daemons talk to no Kubernetes API, and read no service-link variables.
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 30,
        "containers": [container(party, role)],
        "volumes": [
            conf_volume(party, role),
            {"name": "logs", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    });
    if !node_selector.is_empty() {
        spec["nodeSelector"] = json!(node_selector);
    }
    if !party.image_pull_secrets.is_empty() {
        spec["imagePullSecrets"] = json!(party
            .image_pull_secrets
            .iter()
            .map(|s| json!({"name": s.name}))
            .collect::<Vec<_>>());
    }
    let mut labels = labels(party, Some(role));
    if let (Value::Object(l), Value::Object(s)) = (&mut labels, selector(party, role)) {
        l.extend(s);
    }
    let template_meta = json!({
        "labels": labels,
        "annotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": role.http_port().to_string(),
            "prometheus.io/path": "/metrics",
            // A changed config rolls the pods; the route table is re-read without a restart.
            "eggroll-rs/config-hash": config_hash,
        },
    });
    (template_meta, spec)
}

fn deployment(party: &PartyFile, role: Role, config_hash: &str, claim: &str) -> Value {
    let (template_meta, mut spec) = pod_spec(party, role, config_hash);
    if let Some(v) = spec["volumes"].as_array_mut() {
        v.push(json!({"name": "data", "persistentVolumeClaim": {"claimName": claim}}));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(party, role.name(), Some(role)),
        "spec": {
            "replicas": 1,
            // One pod at a time: the data volume is ReadWriteOnce, and two cluster managers
            // or roll-sites must never share it.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(party, role)},
            "template": {"metadata": template_meta, "spec": spec},
        },
    })
}

fn statefulset(party: &PartyFile, config_hash: &str) -> Value {
    let role = Role::Nodemanager;
    let (template_meta, mut spec) = pod_spec(party, role, config_hash);
    // A pause process as PID 1 reaps what the node manager's eggs leave behind.
    spec["shareProcessNamespace"] = json!(true);
    spec["affinity"] = json!({"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": selector(party, role)},
            },
        }],
    }});
    let s = party.nodemanager.storage();
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(party, NODEMANAGER, Some(role)),
        "spec": {
            "serviceName": NODEMANAGER,
            "replicas": party.nodemanager.replicas,
            // They do not depend on each other: start them all at once.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector(party, role)},
            "template": {"metadata": template_meta, "spec": spec},
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": labels(party, Some(role))},
                "spec": claim_spec(&s),
            }],
        },
    })
}

/// 64-bit FNV-1a, hex: a stable fingerprint of the configs (not a security hash).
fn fnv(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(extra: &str) -> PartyFile {
        let text = format!(
            "name: eggroll-9999\nnamespace: eggroll-9999\npartyId: 9999\n{extra}\
             rollsite:\n  localClients: [10.244.0.0/16]\n  enableTLS: true\n  nodePort: 30091\n"
        );
        PartyFile::parse(&text, "party.yaml", &[]).unwrap()
    }

    fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    #[test]
    fn the_parts_the_issue_asks_for() {
        let p = party("nodemanager: {replicas: 3}\n");
        let objs = objects(&p).unwrap();
        assert_eq!(objs[0]["kind"], "Namespace");
        let public = find(&objs, "Service", "rollsite-public");
        assert_eq!(public["spec"]["type"], "NodePort");
        assert_eq!(public["spec"]["ports"][0]["port"], 9371);
        assert_eq!(public["spec"]["ports"][0]["nodePort"], 30091);
        let rs = find(&objs, "Deployment", "rollsite");
        let vol = &rs["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"];
        assert_eq!(vol[2]["secret"]["name"], "rollsite-tls");
        let sts = find(&objs, "StatefulSet", "nodemanager");
        assert_eq!(sts["spec"]["replicas"], 3);
        assert_eq!(
            sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
            "data"
        );
        let headless = find(&objs, "Service", "nodemanager");
        assert_eq!(headless["spec"]["clusterIP"], "None");
        find(&objs, "PersistentVolumeClaim", "clustermanager-data");
        find(&objs, "ConfigMap", ROUTE_TABLE_MAP);
        for kind_name in [
            ("Deployment", "rollsite"),
            ("Deployment", "clustermanager"),
            ("StatefulSet", "nodemanager"),
        ] {
            let o = find(&objs, kind_name.0, kind_name.1);
            let pod = &o["spec"]["template"]["spec"];
            let c = &pod["containers"][0];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
            assert!(
                c["resources"]["limits"]["memory"].is_string(),
                "{kind_name:?}"
            );
            assert_eq!(
                o["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"],
                "true"
            );
            // Each pod's selector labels are on its template.
            for (k, v) in o["spec"]["selector"]["matchLabels"].as_object().unwrap() {
                assert_eq!(&o["spec"]["template"]["metadata"]["labels"][k], v);
            }
        }
    }

    #[test]
    fn config_changes_roll_the_pods() {
        let a = objects(&party("")).unwrap();
        let b = objects(&party("nodemanager: {sessionProcessorsPerNode: 8}\n")).unwrap();
        let hash = |objs: &[Value]| {
            find(objs, "Deployment", "clustermanager")["spec"]["template"]["metadata"]
                ["annotations"]["eggroll-rs/config-hash"]
                .clone()
        };
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn cluster_ip_has_no_traffic_policy() {
        let text = "name: x\nnamespace: x\npartyId: 1\nrollsite: {type: ClusterIP, localClients: [10.0.0.0/8]}\n";
        let p = PartyFile::parse(text, "p", &[]).unwrap();
        let objs = objects(&p).unwrap();
        let public = find(&objs, "Service", "rollsite-public");
        assert_eq!(public["spec"]["type"], "ClusterIP");
        assert!(public["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(public["spec"]["ports"][0]["port"], 9370);
    }
}
