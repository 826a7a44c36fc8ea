//! The files both targets give the daemons, byte for byte: a TOML config per role, the
//! jobs' `client.toml`, and the roll-site's route table in EggRoll's JSON, generated from
//! `partyList`, `exchange` and `polling` as KubeFATE generates it.
//!
//! Where they live is fixed, so the daemons' command lines are the same on every target:
//! `/etc/eggroll/<file>` (certificates in `/etc/eggroll/tls/`), data under
//! `/var/lib/eggroll`, logs under `/var/log/eggroll`.

use crate::party_file::{Module, PartyFile, PollingType};
use crate::DeployError;
use serde_json::json;
use std::collections::BTreeMap;

/// Where the config files are mounted in every container.
pub const CONF_DIR: &str = "/etc/eggroll";
/// Where each daemon's data volume is mounted.
pub const DATA_DIR: &str = "/var/lib/eggroll";
/// Where daemons and eggs write their logs (a scratch directory).
pub const LOGS_DIR: &str = "/var/log/eggroll";
/// The certificate files the roll-site reads, relative to [`CONF_DIR`]: the Secret's keys.
pub const TLS_FILES: [&str; 3] = ["party.crt", "party.key", "trusted-cas.pem"];

/// Cluster manager gRPC port.
pub const CM_PORT: u16 = 4670;
/// Cluster manager HTTP port (health, metrics, status page).
pub const CM_HTTP: u16 = 4690;
/// Node manager gRPC port.
pub const NM_PORT: u16 = 4671;
/// Node manager HTTP port (health, metrics).
pub const NM_HTTP: u16 = 4691;
/// Roll-site plaintext port, for the party's own clients.
pub const RS_PORT: u16 = 9370;
/// Roll-site mutual-TLS port, for other parties.
pub const RS_TLS_PORT: u16 = 9371;
/// Roll-site HTTP port (health, metrics, status page).
pub const RS_HTTP: u16 = 9380;

/// Service names inside a party: the same on Kubernetes (Services) and in compose
/// (container names and aliases).
pub const CLUSTERMANAGER: &str = "clustermanager";
/// The roll-site's name inside the party.
pub const ROLLSITE: &str = "rollsite";
/// The node managers' governing (headless) Service; node manager `i` is
/// `nodemanager-<i>.nodemanager`.
pub const NODEMANAGER: &str = "nodemanager";
/// The variable that gives each node manager its own address; the only per-instance setting.
pub const NODEMANAGER_HOST_ENV: &str = "EGGROLL_NODEMANAGER_HOST";

/// The stable name node manager `i` listens on and advertises.
pub fn nodemanager_host(i: u32) -> String {
    format!("{NODEMANAGER}-{i}.{NODEMANAGER}")
}

/// The port other parties reach the roll-site on: 9371 with TLS, 9370 without.
pub fn public_port(party: &PartyFile) -> u16 {
    if party.rollsite.enable_tls {
        RS_TLS_PORT
    } else {
        RS_PORT
    }
}

/// A daemon: its role (the subcommand) and its config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `eggroll ... rollsite`.
    Rollsite,
    /// `eggroll ... clustermanager`.
    Clustermanager,
    /// `eggroll ... nodemanager`.
    Nodemanager,
}

impl Role {
    /// The subcommand, the service name and the config file's stem.
    pub fn name(self) -> &'static str {
        match self {
            Role::Rollsite => ROLLSITE,
            Role::Clustermanager => CLUSTERMANAGER,
            Role::Nodemanager => NODEMANAGER,
        }
    }

    /// The daemon's arguments after the image's entrypoint `/eggroll`.
    pub fn args(self) -> Vec<String> {
        vec![
            "--config".into(),
            format!("{CONF_DIR}/{}.toml", self.name()),
            self.name().into(),
        ]
    }

    /// Its HTTP port (health, readiness, metrics).
    pub fn http_port(self) -> u16 {
        match self {
            Role::Rollsite => RS_HTTP,
            Role::Clustermanager => CM_HTTP,
            Role::Nodemanager => NM_HTTP,
        }
    }

    /// The roles a party runs, in start order.
    pub fn of(party: &PartyFile) -> Vec<Role> {
        [
            (Module::Clustermanager, Role::Clustermanager),
            (Module::Nodemanager, Role::Nodemanager),
            (Module::Rollsite, Role::Rollsite),
        ]
        .into_iter()
        .filter(|(m, _)| party.has(*m))
        .map(|(_, r)| r)
        .collect()
    }
}

/// Environment every daemon container gets, in both targets.
pub fn common_env(party: &PartyFile) -> Vec<(String, String)> {
    vec![
        ("EGGROLL_LOG".into(), party.log_level.clone()),
        ("NO_COLOR".into(), "1".into()),
    ]
}

/// The config files of the party's `/etc/eggroll`, by file name.
pub fn files(party: &PartyFile) -> Result<BTreeMap<String, String>, DeployError> {
    let mut out = BTreeMap::new();
    let id = &party.party_id;
    let cm_address = format!("{CLUSTERMANAGER}:{CM_PORT}");
    if party.has(Module::Clustermanager) {
        let mut t = toml::Table::new();
        t.insert(
            "data_dir".into(),
            format!("{DATA_DIR}/clustermanager").into(),
        );
        t.insert("logs_dir".into(), LOGS_DIR.into());
        t.insert(
            "clustermanager".into(),
            table([
                // Every interface of its pod or container; eggs report to the Service name.
                ("host", "0.0.0.0".into()),
                ("advertise_host", CLUSTERMANAGER.into()),
                ("port", i64::from(CM_PORT).into()),
                ("http_port", i64::from(CM_HTTP).into()),
            ]),
        );
        t.insert(
            "session".into(),
            table([(
                "processors_per_node",
                i64::from(party.nodemanager.session_processors_per_node).into(),
            )]),
        );
        merge_extra(
            &mut t,
            &party.clustermanager.config,
            "clustermanager.config",
        )?;
        out.insert(
            "clustermanager.toml".into(),
            toml_file(party, "cluster manager", "", &t)?,
        );
        let client = table([
            (
                "clustermanager",
                table([
                    ("host", CLUSTERMANAGER.into()),
                    ("port", i64::from(CM_PORT).into()),
                ]),
            ),
            ("rollsite", {
                let mut r = table([
                    ("host", ROLLSITE.into()),
                    ("port", i64::from(RS_PORT).into()),
                ]);
                if let (Some(ms), toml::Value::Table(r)) =
                    (party.rollsite.get_idle_timeout_ms, &mut r)
                {
                    r.insert("get_idle_timeout_ms".into(), to_i64(ms)?.into());
                }
                r
            }),
        ]);
        let toml::Value::Table(client) = client else {
            unreachable!("table() makes tables")
        };
        out.insert(
            "client.toml".into(),
            toml_file(party, "jobs and operator commands", "", &client)?,
        );
    }
    if party.has(Module::Nodemanager) {
        let mut t = toml::Table::new();
        t.insert("data_dir".into(), format!("{DATA_DIR}/data").into());
        t.insert("logs_dir".into(), LOGS_DIR.into());
        t.insert(
            "clustermanager".into(),
            table([
                ("host", CLUSTERMANAGER.into()),
                ("port", i64::from(CM_PORT).into()),
            ]),
        );
        t.insert(
            "nodemanager".into(),
            table([
                ("port", i64::from(NM_PORT).into()),
                ("http_port", i64::from(NM_HTTP).into()),
            ]),
        );
        merge_extra(&mut t, &party.nodemanager.config, "nodemanager.config")?;
        if t.get("nodemanager").and_then(|n| n.get("host")).is_some() {
            return Err(DeployError::Invalid {
                path: "the party file".into(),
                field: "nodemanager.config.nodemanager.host".into(),
                problem: format!(
                    "is set, but each node manager has its own address ({NODEMANAGER_HOST_ENV}, \
                     set per pod): remove it"
                ),
            });
        }
        out.insert(
            "nodemanager.toml".into(),
            toml_file(
                party,
                "node managers",
                &format!(
                    "# nodemanager.host is each node manager's own: {NODEMANAGER_HOST_ENV}=\
                     nodemanager-<i>.nodemanager,\n# set per pod (container); it binds there and \
                     its eggs listen there.\n"
                ),
                &t,
            )?,
        );
    }
    if party.has(Module::Rollsite) {
        let rs = &party.rollsite;
        let mut r = toml::Table::new();
        r.insert("party_id".into(), id.0.clone().into());
        r.insert("host".into(), "0.0.0.0".into());
        r.insert("port".into(), i64::from(RS_PORT).into());
        r.insert("http_port".into(), i64::from(RS_HTTP).into());
        r.insert(
            "route_table".into(),
            format!("{CONF_DIR}/route_table.json").into(),
        );
        r.insert("local_clients".into(), rs.local_clients.join(",").into());
        if party.has(Module::Clustermanager) {
            r.insert("cluster_manager".into(), cm_address.clone().into());
        }
        if rs.enable_tls {
            r.insert("secure_port".into(), i64::from(RS_TLS_PORT).into());
            for (key, file) in ["tls_cert", "tls_key", "tls_ca"].iter().zip(TLS_FILES) {
                r.insert((*key).into(), format!("{CONF_DIR}/tls/{file}").into());
            }
        }
        if rs.polling.enabled && rs.polling.kind == Some(PollingType::Client) {
            if let Some(server) = &rs.polling.server {
                r.insert("polling_exchange".into(), server.address().into());
                r.insert("polling_tls".into(), rs.enable_tls.into());
            }
        }
        let mut t = toml::Table::new();
        t.insert("data_dir".into(), DATA_DIR.into());
        t.insert("logs_dir".into(), LOGS_DIR.into());
        t.insert("rollsite".into(), toml::Value::Table(r));
        merge_extra(&mut t, &rs.config, "rollsite.config")?;
        out.insert(
            "rollsite.toml".into(),
            toml_file(party, "roll-site", "", &t)?,
        );
        out.insert("route_table.json".into(), route_table(party));
    }
    Ok(out)
}

/// The roll-site's route table, as KubeFATE generates it: a route per `partyList` entry,
/// `exchange` (or a polling client's server) as the `default` party, and the parties of a
/// polling server's `clientList` as polling parties.
pub fn route_table(party: &PartyFile) -> String {
    let rs = &party.rollsite;
    let tls = rs.enable_tls;
    let mut routes = serde_json::Map::new();
    for p in &rs.party_list {
        routes.insert(
            p.party_id.0.clone(),
            json!({"default": [{"ip": p.party_ip, "port": p.party_port, "use_ssl": tls}]}),
        );
    }
    let polling_client = rs.polling.enabled && rs.polling.kind == Some(PollingType::Client);
    let default_hop = if polling_client {
        rs.polling.server.as_ref()
    } else {
        rs.exchange.as_ref()
    };
    if let Some(hop) = default_hop {
        routes.insert(
            "default".into(),
            json!({"default": [{"ip": hop.ip, "port": hop.port, "use_ssl": tls}]}),
        );
    }
    if rs.polling.enabled && rs.polling.kind == Some(PollingType::Server) {
        for c in &rs.polling.client_list {
            routes.insert(
                c.party_id.0.clone(),
                json!({"default": [{"ip": "", "port": -1, "is_polling": true, "use_ssl": tls}]}),
            );
        }
    }
    let table = json!({
        "route_table": routes,
        // Parties not listed go to the default route when there is one, and are refused
        // when there is none.
        "permission": {"default_allow": default_hop.is_some()},
        "self_party": [party.party_id.0],
    });
    let mut text = serde_json::to_string_pretty(&table).expect("a JSON value serializes");
    text.push('\n');
    text
}

fn table<const N: usize>(pairs: [(&str, toml::Value); N]) -> toml::Value {
    toml::Value::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn to_i64(n: u64) -> Result<i64, DeployError> {
    i64::try_from(n).map_err(|_| DeployError::Invalid {
        path: "the party file".into(),
        field: "rollsite.getIdleTimeoutMs".into(),
        problem: format!("{n} is too large"),
    })
}

fn toml_file(
    party: &PartyFile,
    what: &str,
    note: &str,
    t: &toml::Table,
) -> Result<String, DeployError> {
    let body = toml::to_string(t).map_err(|e| DeployError::Render(format!("TOML: {e}")))?;
    Ok(format!(
        "# Party {} ({}): {what}. Rendered by `eggroll deploy render` from the party file;\n\
         # edit that and render again.\n{note}\n{body}",
        party.party_id, party.name
    ))
}

/// Merges the party file's extra config keys (YAML) into `t`; they win over rendered ones.
fn merge_extra(
    t: &mut toml::Table,
    extra: &BTreeMap<String, serde_yaml_ng::Value>,
    field: &str,
) -> Result<(), DeployError> {
    for (k, v) in extra {
        let v = yaml_to_toml(v).map_err(|problem| DeployError::Invalid {
            path: "the party file".into(),
            field: format!("{field}.{k}"),
            problem,
        })?;
        merge(t, k, v);
    }
    Ok(())
}

fn merge(t: &mut toml::Table, k: &str, v: toml::Value) {
    match (t.get_mut(k), v) {
        (Some(toml::Value::Table(base)), toml::Value::Table(over)) => {
            for (k2, v2) in over {
                merge(base, &k2, v2);
            }
        }
        (_, v) => {
            t.insert(k.to_string(), v);
        }
    }
}

fn yaml_to_toml(v: &serde_yaml_ng::Value) -> Result<toml::Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match v {
        Y::Bool(b) => toml::Value::Boolean(*b),
        Y::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) => toml::Value::Float(f),
            _ => return Err(format!("{n} is not a number TOML can hold")),
        },
        Y::String(s) => toml::Value::String(s.clone()),
        Y::Sequence(items) => {
            toml::Value::Array(items.iter().map(yaml_to_toml).collect::<Result<_, _>>()?)
        }
        Y::Mapping(m) => {
            let mut t = toml::Table::new();
            for (k, v) in m {
                let k = k
                    .as_str()
                    .ok_or_else(|| format!("key {k:?} is not a string"))?;
                t.insert(k.to_string(), yaml_to_toml(v)?);
            }
            toml::Value::Table(t)
        }
        Y::Null => return Err("is empty (null): give a value or remove the key".into()),
        Y::Tagged(_) => return Err("has a YAML tag, which a config cannot hold".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use eggroll_core::config::EggrollConfig;
    use serde_json::Value;

    fn party(extra: &str) -> PartyFile {
        let text = format!(
            "name: p\nnamespace: p\npartyId: 9999\nrollsite:\n  localClients: [10.244.0.0/16]\n{extra}"
        );
        PartyFile::parse(&text, "party.yaml", &[]).unwrap()
    }

    fn routes(p: &PartyFile) -> Value {
        serde_json::from_str(&route_table(p)).unwrap()
    }

    #[test]
    fn party_list_routes_and_no_default() {
        let p = party(
            "  enableTLS: true\n  partyList:\n  - {partyId: 10000, partyIp: 192.0.2.7, partyPort: 30101}\n  \
             - {partyId: 8888, partyIp: rs.example.org, partyPort: 9371}\n",
        );
        let t = routes(&p);
        assert_eq!(
            t["route_table"]["10000"]["default"][0],
            serde_json::json!({"ip": "192.0.2.7", "port": 30101, "use_ssl": true})
        );
        assert_eq!(
            t["route_table"]["8888"]["default"][0]["ip"],
            "rs.example.org"
        );
        assert!(t["route_table"].get("default").is_none());
        assert_eq!(t["permission"]["default_allow"], false);
        assert_eq!(t["self_party"], serde_json::json!(["9999"]));
    }

    #[test]
    fn exchange_is_the_default_route() {
        let p = party("  exchange: {ip: 192.0.2.1, port: 30000}\n");
        let t = routes(&p);
        assert_eq!(
            t["route_table"]["default"]["default"][0],
            serde_json::json!({"ip": "192.0.2.1", "port": 30000, "use_ssl": false})
        );
        assert_eq!(t["permission"]["default_allow"], true);
    }

    #[test]
    fn polling_client_dials_its_server() {
        let p = party(
            "  enableTLS: true\n  polling:\n    enabled: true\n    type: client\n    \
             server: {ip: 192.0.2.9, port: 30101}\n",
        );
        let t = routes(&p);
        assert_eq!(
            t["route_table"]["default"]["default"][0],
            serde_json::json!({"ip": "192.0.2.9", "port": 30101, "use_ssl": true})
        );
        let files = files(&p).unwrap();
        let rs = &files["rollsite.toml"];
        assert!(
            rs.contains("polling_exchange = \"192.0.2.9:30101\""),
            "{rs}"
        );
        assert!(rs.contains("polling_tls = true"), "{rs}");
    }

    #[test]
    fn polling_server_lists_its_clients() {
        let p = party(
            "  polling:\n    enabled: true\n    type: server\n    clientList: [{partyId: 9998}, {partID: 9997}]\n",
        );
        let t = routes(&p);
        for id in ["9998", "9997"] {
            assert_eq!(
                t["route_table"][id]["default"][0],
                serde_json::json!({"ip": "", "port": -1, "is_polling": true, "use_ssl": false})
            );
        }
        assert!(!files(&p).unwrap()["rollsite.toml"].contains("polling_exchange"));
    }

    /// Every rendered file loads as the daemons load it (unknown keys are refused there).
    #[test]
    fn configs_load_as_the_daemons_load_them() {
        let p = party(
            "  enableTLS: true\n  getIdleTimeoutMs: 60000\n  config: {rollsite: {fsync: true}}\n\
             clustermanager:\n  config: {clustermanager: {heartbeat_timeout_ms: 10000}}\n\
             nodemanager:\n  sessionProcessorsPerNode: 3\n",
        );
        let dir = tempfile::tempdir().unwrap();
        let files = files(&p).unwrap();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            [
                "client.toml",
                "clustermanager.toml",
                "nodemanager.toml",
                "rollsite.toml",
                "route_table.json"
            ]
        );
        let mut loaded = BTreeMap::new();
        for (name, text) in &files {
            if let Some(stem) = name.strip_suffix(".toml") {
                let path = dir.path().join(name);
                std::fs::write(&path, text).unwrap();
                let cfg = EggrollConfig::load_with(Some(&path), |_| None)
                    .unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
                loaded.insert(stem.to_string(), cfg);
            }
        }
        let cm = &loaded["clustermanager"];
        assert_eq!(cm.clustermanager.advertise_host, "clustermanager");
        assert_eq!(cm.clustermanager.heartbeat_timeout_ms, 10000);
        assert_eq!(cm.session.processors_per_node, 3);
        let rs = &loaded["rollsite"].rollsite;
        assert_eq!(rs.party_id, "9999");
        assert!(rs.fsync);
        assert_eq!(rs.local_clients, "10.244.0.0/16");
        assert_eq!(rs.cluster_manager, "clustermanager:4670");
        assert_eq!(rs.tls_key.to_str(), Some("/etc/eggroll/tls/party.key"));
        assert_eq!(loaded["client"].rollsite.get_idle_timeout_ms, 60000);
        let nm = &loaded["nodemanager"];
        assert_eq!(nm.clustermanager.address(), "clustermanager:4670");
        assert_eq!(nm.nodemanager.http_port, NM_HTTP);
        // The node manager's own address is the one per-instance variable.
        let env = |k: &str| (k == NODEMANAGER_HOST_ENV).then(|| nodemanager_host(2));
        let path = dir.path().join("nodemanager.toml");
        let nm2 = EggrollConfig::load_with(Some(&path), env).unwrap();
        assert_eq!(nm2.nodemanager.host, "nodemanager-2.nodemanager");
    }

    #[test]
    fn extra_config_cannot_pin_a_node_manager_address() {
        let p = party("nodemanager:\n  config: {nodemanager: {host: 10.0.0.1}}\n");
        let err = files(&p).unwrap_err().to_string();
        assert!(err.contains("nodemanager.config.nodemanager.host"), "{err}");
    }

    #[test]
    fn an_exchange_runs_the_roll_site_alone() {
        let p = party("modules: [rollsite]\n");
        let files = files(&p).unwrap();
        assert_eq!(files.len(), 2, "{:?}", files.keys());
        assert!(!files["rollsite.toml"].contains("cluster_manager"));
    }
}
