//! The docker-compose bundle of a party: `docker-compose.yml` (roll-site, cluster manager,
//! node managers `nodemanager-0..N-1`, and a `job` service for jobs and operator commands)
//! and `conf/`, the same files the pods get. The certificates of `conf/tls/` are the
//! operator's (the trial makes them with openssl); the bundle only names them.

use crate::configs::{self, Role, CONF_DIR, DATA_DIR, LOGS_DIR, NODEMANAGER, ROLLSITE};
use crate::kubernetes::UID;
use crate::party_file::PartyFile;
use crate::{to_yaml, DeployError};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The compose file's name in the bundle.
pub const COMPOSE_FILE: &str = "docker-compose.yml";

/// The bundle: `docker-compose.yml` and `conf/<file>`.
pub fn render(party: &PartyFile) -> Result<BTreeMap<String, String>, DeployError> {
    let mut out: BTreeMap<String, String> = configs::files(party)?
        .into_iter()
        .map(|(name, text)| (format!("conf/{name}"), text))
        .collect();
    let header = format!(
        "# Party {} ({}): rendered by `eggroll deploy render --target compose` from the party\n\
         # file; edit that and render again. Jobs and operator commands run in the job service:\n\
         #   docker-compose run --rm job node list\n",
        party.party_id, party.name
    );
    out.insert(
        COMPOSE_FILE.into(),
        format!("{header}{}", to_yaml(&compose_file(party))?),
    );
    Ok(out)
}

/// The services of the bundle, by name, as one compose file.
pub fn compose_file(party: &PartyFile) -> Value {
    let mut services = Map::new();
    let mut volumes = Map::new();
    let exchange = party
        .compose
        .exchange_network
        .as_deref()
        .filter(|n| !n.is_empty());
    for role in Role::of(party) {
        match role {
            Role::Nodemanager => {
                for i in 0..party.nodemanager.replicas {
                    let name = format!("{NODEMANAGER}-{i}");
                    let mut s = daemon(party, role, &name);
                    let host = configs::nodemanager_host(i);
                    s["environment"][configs::NODEMANAGER_HOST_ENV] = json!(host);
                    // The name it listens on and advertises, as in the StatefulSet.
                    s["networks"] = json!({"party": {"aliases": [host]}});
                    s["depends_on"] = json!([configs::CLUSTERMANAGER]);
                    services.insert(name.clone(), s);
                    volumes.insert(format!("{name}-data"), json!({}));
                }
            }
            Role::Clustermanager | Role::Rollsite => {
                let name = role.name();
                let mut s = daemon(party, role, name);
                if role == Role::Rollsite {
                    let port = configs::public_port(party);
                    match exchange {
                        Some(_) => {
                            s["networks"]["exchange"] =
                                json!({"aliases": [format!("{ROLLSITE}-{}", party.party_id)]});
                        }
                        None => {
                            let host_port = party.compose.host_port.unwrap_or(port);
                            s["networks"]["public"] = json!({});
                            // The only port other parties reach.
                            s["ports"] = json!([format!("{host_port}:{port}")]);
                        }
                    }
                }
                services.insert(name.to_string(), s);
                volumes.insert(format!("{name}-data"), json!({}));
            }
        }
    }
    if party.has(crate::party_file::Module::Clustermanager) {
        let mut job = base(party);
        job["hostname"] = json!("job");
        job["profiles"] = json!(["job"]);
        job["command"] = json!(["--help"]);
        job["environment"] = json!({
            "EGGROLL_LOG": "warn",
            "NO_COLOR": "1",
            "EGGROLL_CONFIG": format!("{CONF_DIR}/client.toml"),
        });
        job["volumes"] = json!([format!("./conf:{CONF_DIR}:ro")]);
        job["networks"] = json!({"party": {}});
        if let Some(j) = job.as_object_mut() {
            j.remove("restart");
            // A job is the user's program: it may write where it runs.
            j.remove("read_only");
        }
        services.insert("job".into(), job);
    }
    let mut party_net = json!({"internal": true});
    if let Some(subnet) = &party.compose.subnet {
        party_net["ipam"] = json!({"config": [{"subnet": subnet}]});
    }
    let mut networks = json!({"party": party_net});
    match exchange {
        Some(name) => networks["exchange"] = json!({"external": true, "name": name}),
        None => networks["public"] = json!({}),
    }
    json!({"services": services, "volumes": volumes, "networks": networks})
}

/// What every service of the bundle shares: the image, non-root, read-only root, tini.
fn base(party: &PartyFile) -> Value {
    json!({
        // EGGROLL_IMAGE picks another build, as the trial does.
        "image": format!("${{EGGROLL_IMAGE:-{}}}", party.image),
        // tini as PID 1: forwards SIGTERM and reaps the eggs of ended sessions.
        "init": true,
        "user": format!("{UID}:{UID}"),
        "read_only": true,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        // Scratch dirs in memory, writable by the daemons' user (docker's default is root's).
        "tmpfs": ["/tmp:mode=1777".to_string(), format!("{LOGS_DIR}:uid={UID},gid={UID},mode=0750")],
        "entrypoint": ["/eggroll"],
        // A daemon that exits is started again; one stopped with docker stop/kill stays.
        "restart": "unless-stopped",
    })
}

fn daemon(party: &PartyFile, role: Role, name: &str) -> Value {
    let mut s = base(party);
    s["hostname"] = json!(name);
    s["command"] = json!(role.args());
    s["environment"] = Value::Object(
        configs::common_env(party)
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect(),
    );
    s["volumes"] = json!([
        format!("./conf:{CONF_DIR}:ro"),
        format!("{name}-data:{DATA_DIR}"),
    ]);
    s["networks"] = json!({"party": {}});
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(extra: &str) -> PartyFile {
        let text = format!(
            "name: t\nnamespace: t\npartyId: 9999\nnodemanager: {{replicas: 2}}\n\
             rollsite:\n  localClients: [10.213.1.0/24]\n  enableTLS: true\n{extra}"
        );
        PartyFile::parse(&text, "party.yaml", &[]).unwrap()
    }

    #[test]
    fn exchange_network_or_published_port() {
        let p = party("compose: {exchangeNetwork: ex, subnet: 10.213.1.0/24}\n");
        let c = compose_file(&p);
        assert_eq!(
            c["services"]["rollsite"]["networks"]["exchange"]["aliases"][0],
            "rollsite-9999"
        );
        assert!(c["services"]["rollsite"].get("ports").is_none());
        assert_eq!(c["networks"]["exchange"]["name"], "ex");
        assert_eq!(
            c["networks"]["party"]["ipam"]["config"][0]["subnet"],
            "10.213.1.0/24"
        );
        assert_eq!(
            c["services"]["nodemanager-1"]["environment"]["EGGROLL_NODEMANAGER_HOST"],
            "nodemanager-1.nodemanager"
        );
        assert!(c["services"].get("nodemanager-2").is_none());

        let c = compose_file(&party("compose: {hostPort: 19371}\n"));
        assert_eq!(c["services"]["rollsite"]["ports"][0], "19371:9371");
        assert!(c["networks"].get("exchange").is_none());
    }

    #[test]
    fn bundle_holds_the_configs() {
        let files = render(&party("")).unwrap();
        for f in ["conf/rollsite.toml", "conf/route_table.json", COMPOSE_FILE] {
            assert!(files.contains_key(f), "{f}: {:?}", files.keys());
        }
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&files[COMPOSE_FILE]).unwrap();
        assert_eq!(
            yaml["services"]["rollsite"]["command"],
            serde_yaml_ng::to_value(Role::Rollsite.args()).unwrap()
        );
    }
}
