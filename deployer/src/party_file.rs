//! The party file: KubeFATE's `cluster.yaml` field names (camelCase) for one party, with
//! eggroll-rs's own fields where KubeFATE has none; parsing, `--set` overrides, defaults and
//! validation with errors that name the field and say what to do.
//!
//! The fields, their defaults and which are ours are listed in `deploy/kubernetes/README.md`.

use crate::DeployError;
use serde::{Deserialize, Deserializer};
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// One party as its operator declares it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartyFile {
    /// The deployment's name (KubeFATE's `name`); labels every object.
    pub name: String,
    /// The Kubernetes namespace everything goes into (KubeFATE's `namespace`).
    pub namespace: String,
    /// This party's id (KubeFATE's `partyId`).
    pub party_id: PartyId,
    /// What this party runs: `rollsite`, `clustermanager`, `nodemanager` (KubeFATE's
    /// `modules`); an exchange lists `rollsite` alone.
    #[serde(default = "all_modules")]
    pub modules: Vec<Module>,
    /// The eggroll-rs image (ours; one image serves every role).
    #[serde(default = "default_image")]
    pub image: String,
    /// Kubernetes image pull policy (KubeFATE's `pullPolicy`); empty: Kubernetes' default.
    #[serde(default)]
    pub pull_policy: Option<String>,
    /// Secrets to pull the image with (KubeFATE's `imagePullSecrets`, `[{name}]`).
    #[serde(default)]
    pub image_pull_secrets: Vec<NameRef>,
    /// `EGGROLL_LOG` of every daemon (ours): `info`, `debug`, or a tracing filter.
    #[serde(default = "default_log")]
    pub log_level: String,
    /// The roll-site (KubeFATE's `rollsite`).
    #[serde(default)]
    pub rollsite: Rollsite,
    /// The cluster manager (ours; KubeFATE keeps this metadata in MySQL).
    #[serde(default)]
    pub clustermanager: ClusterManager,
    /// The node managers (KubeFATE's `nodemanager`).
    #[serde(default)]
    pub nodemanager: NodeManager,
    /// What only the docker-compose bundle needs (ours).
    #[serde(default)]
    pub compose: Compose,
    /// KubeFATE's chart keys, accepted so that a KubeFATE file loads, and ignored.
    #[serde(default)]
    pub chart_name: Option<Value>,
    /// Ignored (KubeFATE's chart version).
    #[serde(default)]
    pub chart_version: Option<Value>,
    /// Ignored (KubeFATE's image registry of FATE's images; set `image` instead).
    #[serde(default)]
    pub registry: Option<Value>,
    /// Ignored (KubeFATE's tag of FATE's images; set `image` instead).
    #[serde(default)]
    pub image_tag: Option<Value>,
    /// Ignored: eggroll-rs's data always persists in volume claims.
    #[serde(default)]
    pub persistence: Option<Value>,
    /// Ignored (KubeFATE's istio switch).
    #[serde(default)]
    pub istio: Option<Value>,
    /// Ignored (KubeFATE's pod security policy switch; the pods run as non-root anyway).
    #[serde(default)]
    pub pod_security_policy: Option<Value>,
    /// Ignored: the backend is eggroll-rs.
    #[serde(default)]
    pub backend: Option<Value>,
}

/// A party id: KubeFATE writes numbers, route tables strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyId(pub String);

impl<'de> Deserialize<'de> for PartyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(PartyId(scalar(d)?))
    }
}

impl std::fmt::Display for PartyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A number or a string in YAML, as text (party ids, quantities such as `cpu: 1`).
fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(i64),
        F(f64),
        S(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::N(n) => n.to_string(),
        Raw::F(f) => f.to_string(),
        Raw::S(s) => s,
    })
}

/// `{name: ...}`, as KubeFATE lists image pull secrets.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameRef {
    /// The secret's name.
    pub name: String,
}

/// A component of a party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Module {
    /// The federation gateway.
    Rollsite,
    /// Sessions, metadata, node registry.
    Clustermanager,
    /// The egg supervisors, one per pod of the StatefulSet.
    Nodemanager,
}

impl<'de> Deserialize<'de> for Module {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "rollsite" => Ok(Module::Rollsite),
            "clustermanager" => Ok(Module::Clustermanager),
            "nodemanager" => Ok(Module::Nodemanager),
            other => Err(serde::de::Error::custom(format!(
                "module `{other}` is not part of eggroll-rs (FATE's other modules deploy with \
                 KubeFATE); list only rollsite, clustermanager and nodemanager"
            ))),
        }
    }
}

fn all_modules() -> Vec<Module> {
    vec![
        Module::Rollsite,
        Module::Clustermanager,
        Module::Nodemanager,
    ]
}

fn default_image() -> String {
    format!("eggroll-rs:{}", env!("CARGO_PKG_VERSION"))
}

fn default_log() -> String {
    "info".into()
}

/// How the roll-site's public Service is exposed (KubeFATE's `rollsite.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum ServiceType {
    /// Inside the cluster only (an exchange or a peer in the same cluster).
    #[serde(rename = "ClusterIP")]
    ClusterIp,
    /// On a port of every node (KubeFATE's default).
    #[default]
    NodePort,
    /// Through the cloud's load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The name Kubernetes gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The roll-site.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollsite {
    /// Type of the Service other parties reach (KubeFATE's `type`).
    #[serde(rename = "type", default)]
    pub service_type: ServiceType,
    /// The node port of that Service, with `type: NodePort` (KubeFATE's `nodePort`); empty:
    /// Kubernetes picks one.
    #[serde(default)]
    pub node_port: Option<u16>,
    /// The other parties' roll-sites (KubeFATE's `partyList`): a route each.
    #[serde(default)]
    pub party_list: Vec<PartyEntry>,
    /// The exchange every other party is reached through (KubeFATE's `exchange`): the
    /// route table's `default` route.
    #[serde(default)]
    pub exchange: Option<Endpoint>,
    /// Mutual TLS between roll-sites (KubeFATE's `enableTLS`): the roll-site listens on 9371
    /// with the certificate of `tlsSecret`, and every route to another party says `use_ssl`.
    #[serde(default, rename = "enableTLS")]
    pub enable_tls: bool,
    /// The Secret with `party.crt`, `party.key` and `trusted-cas.pem` (ours).
    #[serde(default = "default_tls_secret")]
    pub tls_secret: String,
    /// Polling (KubeFATE's `polling`): a party behind a firewall holds streams open to a
    /// server, which calls it back down them.
    #[serde(default)]
    pub polling: Polling,
    /// Addresses or CIDRs of the party's own clients, the only ones that may collect what
    /// other parties sent (ours, `rollsite.local_clients`): on Kubernetes the pod network's
    /// CIDR, in the compose trial the party network's subnet.
    #[serde(default)]
    pub local_clients: Vec<String>,
    /// A job's get fails after this long without data from the other party (ours,
    /// `rollsite.get_idle_timeout_ms` of the jobs' `client.toml`); empty: the default.
    #[serde(default)]
    pub get_idle_timeout_ms: Option<u64>,
    /// Storage class of the volume of the roll-site's receive buffer (ours); empty: the cluster's default.
    #[serde(default)]
    pub storage_class: Option<String>,
    /// Size of that volume, e.g. `10Gi`.
    #[serde(default)]
    pub size: Option<String>,
    /// Access mode of that volume: `ReadWriteOnce` (default), `ReadWriteMany`, ...
    #[serde(default)]
    pub access_mode: Option<String>,
    /// Kubernetes node selector (KubeFATE's `nodeSelector`).
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Kubernetes resource requests and limits (KubeFATE's `resources`).
    #[serde(default = "rollsite_resources")]
    pub resources: Resources,
    /// Extra keys of the roll-site's TOML config (ours), e.g. `{rollsite: {fsync: true}}`.
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
}

impl Default for Rollsite {
    fn default() -> Self {
        serde_yaml_ng::from_str("{}").expect("the defaults of rollsite deserialize from {}")
    }
}

fn default_tls_secret() -> String {
    "rollsite-tls".into()
}

/// Where another party's roll-site is.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartyEntry {
    /// Its party id.
    pub party_id: PartyId,
    /// Its address (IP or DNS name) as this party dials it.
    pub party_ip: String,
    /// Its port (its node port, or 9371 / 9370).
    pub party_port: u16,
}

/// An address and port.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// IP address or DNS name.
    pub ip: String,
    /// Port.
    pub port: u16,
}

impl Endpoint {
    /// `ip:port` (brackets around an IPv6 address).
    pub fn address(&self) -> String {
        if self.ip.contains(':') {
            format!("[{}]:{}", self.ip, self.port)
        } else {
            format!("{}:{}", self.ip, self.port)
        }
    }
}

/// Polling mode (KubeFATE's `rollsite.polling`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Polling {
    /// Whether this roll-site polls or is polled.
    #[serde(default)]
    pub enabled: bool,
    /// `client`: holds streams open to `server`; `server`: serves the parties of `clientList`.
    #[serde(rename = "type", default)]
    pub kind: Option<PollingType>,
    /// The polling server a client dials.
    #[serde(default)]
    pub server: Option<Endpoint>,
    /// The parties that poll this server.
    #[serde(default)]
    pub client_list: Vec<PollingClient>,
}

/// Which end of polling this roll-site is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollingType {
    /// Dials out to a server and is called back down the streams.
    Client,
    /// Accepts the streams of its clients.
    Server,
}

/// A party that polls this roll-site.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollingClient {
    /// Its party id (KubeFATE's chart spells it `partID`; both are read).
    #[serde(alias = "partID")]
    pub party_id: PartyId,
}

/// A persistent volume claim's settings (KubeFATE's `storageClass`, `size`, `accessMode`).
#[derive(Clone, Debug)]
pub struct Storage<'a> {
    /// Storage class; `None`: the cluster's default.
    pub storage_class: Option<&'a str>,
    /// Size of the claim, e.g. `10Gi`.
    pub size: &'a str,
    /// `ReadWriteOnce` (default), `ReadWriteMany`, ...
    pub access_mode: &'a str,
}

macro_rules! storage_of {
    ($($t:ty => $size:expr),*) => {$(
        impl $t {
            /// Its volume's settings, with the defaults filled in.
            pub fn storage(&self) -> Storage<'_> {
                Storage {
                    storage_class: self.storage_class.as_deref().filter(|s| !s.is_empty()),
                    size: self.size.as_deref().unwrap_or($size),
                    access_mode: self.access_mode.as_deref().unwrap_or("ReadWriteOnce"),
                }
            }
        }
    )*};
}
storage_of!(Rollsite => "2Gi", ClusterManager => "1Gi", NodeManager => "10Gi");

/// Kubernetes resource requests and limits, quantities as Kubernetes writes them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// What the scheduler reserves.
    #[serde(default)]
    pub requests: BTreeMap<String, Quantity>,
    /// What the container may not exceed.
    #[serde(default)]
    pub limits: BTreeMap<String, Quantity>,
}

/// A quantity (`500m`, `2Gi`, `1`), numbers read as text.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Quantity(scalar(d)?))
    }
}

fn resources(req: (&str, &str), lim: (&str, &str)) -> Resources {
    let q = |s: &str| Quantity(s.to_string());
    Resources {
        requests: [("cpu".into(), q(req.0)), ("memory".into(), q(req.1))].into(),
        limits: [("cpu".into(), q(lim.0)), ("memory".into(), q(lim.1))].into(),
    }
}

fn rollsite_resources() -> Resources {
    resources(("250m", "256Mi"), ("2", "2Gi"))
}

fn clustermanager_resources() -> Resources {
    resources(("100m", "256Mi"), ("1", "1Gi"))
}

fn nodemanager_resources() -> Resources {
    // The node manager's eggs run in its pod: the limits are the whole node's share.
    resources(("1", "2Gi"), ("4", "8Gi"))
}

/// The cluster manager (ours).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterManager {
    /// Storage class of the volume of its metadata; empty: the cluster's default.
    #[serde(default)]
    pub storage_class: Option<String>,
    /// Size of that volume, e.g. `10Gi`.
    #[serde(default)]
    pub size: Option<String>,
    /// Access mode of that volume: `ReadWriteOnce` (default), `ReadWriteMany`, ...
    #[serde(default)]
    pub access_mode: Option<String>,
    /// Kubernetes node selector.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Kubernetes resource requests and limits.
    #[serde(default = "clustermanager_resources")]
    pub resources: Resources,
    /// Extra keys of its TOML config, e.g. `{clustermanager: {heartbeat_timeout_ms: 10000}}`.
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
}

impl Default for ClusterManager {
    fn default() -> Self {
        serde_yaml_ng::from_str("{}").expect("the defaults of clustermanager deserialize from {}")
    }
}

/// The node managers (KubeFATE's `nodemanager`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeManager {
    /// How many (KubeFATE's `replicas`; its older charts say `count`).
    #[serde(default = "two", alias = "count")]
    pub replicas: u32,
    /// Egg-pair processes per node manager in each session (KubeFATE's
    /// `sessionProcessorsPerNode`; the cluster manager's `session.processors_per_node`).
    #[serde(default = "four")]
    pub session_processors_per_node: u32,
    /// Storage class of the volume of each node manager's data (a claim per pod); empty: the cluster's default.
    #[serde(default)]
    pub storage_class: Option<String>,
    /// Size of that volume, e.g. `10Gi`.
    #[serde(default)]
    pub size: Option<String>,
    /// Access mode of that volume: `ReadWriteOnce` (default), `ReadWriteMany`, ...
    #[serde(default)]
    pub access_mode: Option<String>,
    /// Kubernetes node selector.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Kubernetes resource requests and limits of each node manager with its eggs.
    #[serde(default = "nodemanager_resources")]
    pub resources: Resources,
    /// Extra keys of its TOML config, e.g. `{nodemanager: {heartbeat_interval_ms: 2000}}`.
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
}

impl Default for NodeManager {
    fn default() -> Self {
        serde_yaml_ng::from_str("{}").expect("the defaults of nodemanager deserialize from {}")
    }
}

fn two() -> u32 {
    2
}

fn four() -> u32 {
    4
}

/// What only the docker-compose bundle needs (ours).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Compose {
    /// The party network's subnet (`10.213.1.0/24`); empty: docker picks one.
    #[serde(default)]
    pub subnet: Option<String>,
    /// An external network shared with the other parties' roll-sites only, on which this
    /// roll-site is `rollsite-<partyId>`; empty: the public port is published on the host.
    #[serde(default)]
    pub exchange_network: Option<String>,
    /// The host port the public port is published on when there is no exchange network;
    /// empty: the same number as the port (9371 with TLS, 9370 without).
    #[serde(default)]
    pub host_port: Option<u16>,
}

impl PartyFile {
    /// Reads `path`, applies `sets` (`a.b[0].c=value`, the value read as YAML), and validates.
    pub fn load(path: &Path, sets: &[String]) -> Result<Self, DeployError> {
        let text = std::fs::read_to_string(path).map_err(|source| DeployError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string(), sets)
    }

    /// Parses the YAML `text` (`source` names it in errors), applies `sets`, and validates.
    pub fn parse(text: &str, source: &str, sets: &[String]) -> Result<Self, DeployError> {
        let bad = |reason: String| DeployError::Parse {
            path: source.to_string(),
            reason,
        };
        let mut tree: Value = serde_yaml_ng::from_str(text).map_err(|e| bad(e.to_string()))?;
        for set in sets {
            apply_set(&mut tree, set)?;
        }
        let party: PartyFile = serde_yaml_ng::from_value(tree).map_err(|e| bad(e.to_string()))?;
        party.validate(source)?;
        Ok(party)
    }

    /// Whether the party runs `module`.
    pub fn has(&self, module: Module) -> bool {
        self.modules.contains(&module)
    }

    fn validate(&self, source: &str) -> Result<(), DeployError> {
        let invalid = |field: &str, problem: String| DeployError::Invalid {
            path: source.to_string(),
            field: field.to_string(),
            problem,
        };
        if !is_dns_label(&self.namespace) {
            return Err(invalid(
                "namespace",
                format!(
                    "{:?} is not a Kubernetes namespace name: use lower-case letters, digits \
                     and '-', at most 63, starting and ending with a letter or digit",
                    self.namespace
                ),
            ));
        }
        if !is_dns_label(&self.name) {
            return Err(invalid(
                "name",
                format!(
                    "{:?} is not a valid label value here: use lower-case letters, digits and \
                     '-', at most 63",
                    self.name
                ),
            ));
        }
        let id_ok =
            |id: &str| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !id_ok(&self.party_id.0) {
            return Err(invalid(
                "partyId",
                format!(
                    "{:?} is not a party id: use digits (letters and '-' also work)",
                    self.party_id.0
                ),
            ));
        }
        if self.modules.is_empty() {
            return Err(invalid(
                "modules",
                "is empty: list rollsite, clustermanager and nodemanager (an exchange: rollsite)"
                    .into(),
            ));
        }
        if self.has(Module::Nodemanager) && !self.has(Module::Clustermanager) {
            return Err(invalid(
                "modules",
                "lists nodemanager without clustermanager: node managers register with the \
                 party's cluster manager, add it"
                    .into(),
            ));
        }
        if self.image.trim().is_empty() {
            return Err(invalid(
                "image",
                "is empty: name the eggroll-rs image (build-image.sh)".into(),
            ));
        }
        let rs = &self.rollsite;
        if let Some(port) = rs.node_port {
            if rs.service_type == ServiceType::ClusterIp {
                return Err(invalid(
                    "rollsite.nodePort",
                    format!(
                        "is {port} but rollsite.type is ClusterIP, which has no node port: set \
                         type: NodePort, or remove nodePort"
                    ),
                ));
            }
            if !(30000..=32767).contains(&port) {
                return Err(invalid(
                    "rollsite.nodePort",
                    format!(
                        "{port} is outside Kubernetes' default node port range 30000-32767: \
                         pick one inside it, or remove nodePort to let Kubernetes pick"
                    ),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in rs.party_list.iter().enumerate() {
            let field = format!("rollsite.partyList[{i}]");
            if p.party_id == self.party_id {
                return Err(invalid(
                    &format!("{field}.partyId"),
                    format!(
                        "is this party's own id {}: list the other parties only",
                        self.party_id
                    ),
                ));
            }
            if !seen.insert(p.party_id.0.clone()) {
                return Err(invalid(
                    &format!("{field}.partyId"),
                    format!("party {} is listed twice: keep one entry", p.party_id),
                ));
            }
            check_endpoint(&p.party_ip, p.party_port)
                .map_err(|m| invalid(&format!("{field}.partyIp/partyPort"), m))?;
        }
        if let Some(ex) = &rs.exchange {
            check_endpoint(&ex.ip, ex.port).map_err(|m| invalid("rollsite.exchange", m))?;
        }
        let polling = &rs.polling;
        if polling.enabled {
            match polling.kind {
                None => {
                    return Err(invalid(
                        "rollsite.polling.type",
                        "is missing with polling enabled: say client (this party dials out) \
                         or server (its clients dial in)"
                            .into(),
                    ))
                }
                Some(PollingType::Client) => {
                    let server = polling.server.as_ref().ok_or_else(|| {
                        invalid(
                            "rollsite.polling.server",
                            "is missing for a polling client: give the server's {ip, port}".into(),
                        )
                    })?;
                    check_endpoint(&server.ip, server.port)
                        .map_err(|m| invalid("rollsite.polling.server", m))?;
                    if rs.exchange.is_some() {
                        return Err(invalid(
                            "rollsite.exchange",
                            "is set on a polling client, whose default route is its polling \
                             server: remove one of them"
                                .into(),
                        ));
                    }
                }
                Some(PollingType::Server) => {
                    if polling.client_list.is_empty() {
                        return Err(invalid(
                            "rollsite.polling.clientList",
                            "is empty for a polling server: list the parties that poll it".into(),
                        ));
                    }
                    for (i, c) in polling.client_list.iter().enumerate() {
                        if seen.contains(&c.party_id.0) {
                            return Err(invalid(
                                &format!("rollsite.polling.clientList[{i}].partyId"),
                                format!(
                                    "party {} is also in rollsite.partyList: a party either \
                                     polls or is dialled, remove one",
                                    c.party_id
                                ),
                            ));
                        }
                    }
                }
            }
        }
        if self.has(Module::Rollsite) {
            if rs.local_clients.is_empty() {
                return Err(invalid(
                    "rollsite.localClients",
                    "is empty: list the party's own clients, which alone may collect what \
                     other parties sent (on Kubernetes the pod network's CIDR, e.g. \
                     10.244.0.0/16; in the compose trial the party network's subnet)"
                        .into(),
                ));
            }
            for (i, c) in rs.local_clients.iter().enumerate() {
                if !is_ip_or_cidr(c) {
                    return Err(invalid(
                        &format!("rollsite.localClients[{i}]"),
                        format!("{c:?} is not an IP address or a CIDR such as 10.244.0.0/16"),
                    ));
                }
            }
            if rs.enable_tls && !is_dns_label(&rs.tls_secret) && !is_dns_name(&rs.tls_secret) {
                return Err(invalid(
                    "rollsite.tlsSecret",
                    format!("{:?} is not a Secret name", rs.tls_secret),
                ));
            }
        }
        if self.has(Module::Nodemanager) {
            let nm = &self.nodemanager;
            if nm.replicas == 0 || nm.replicas > 999 {
                return Err(invalid(
                    "nodemanager.replicas",
                    format!("is {}: give 1 to 999 node managers", nm.replicas),
                ));
            }
            if nm.session_processors_per_node == 0 {
                return Err(invalid(
                    "nodemanager.sessionProcessorsPerNode",
                    "is 0: a session needs at least one egg per node".into(),
                ));
            }
        }
        for (field, s) in [
            ("rollsite", rs.storage()),
            ("clustermanager", self.clustermanager.storage()),
            ("nodemanager", self.nodemanager.storage()),
        ] {
            let mode = s.access_mode;
            {
                if ![
                    "ReadWriteOnce",
                    "ReadWriteOncePod",
                    "ReadWriteMany",
                    "ReadOnlyMany",
                ]
                .contains(&mode)
                {
                    return Err(invalid(
                        &format!("{field}.accessMode"),
                        format!(
                            "{mode:?} is not an access mode: ReadWriteOnce, ReadWriteOncePod \
                             or ReadWriteMany"
                        ),
                    ));
                }
            }
        }
        if let Some(subnet) = &self.compose.subnet {
            if !subnet.contains('/') || !is_ip_or_cidr(subnet) {
                return Err(invalid(
                    "compose.subnet",
                    format!("{subnet:?} is not a subnet such as 10.213.1.0/24"),
                ));
            }
        }
        Ok(())
    }
}

fn check_endpoint(ip: &str, port: u16) -> Result<(), String> {
    if ip.trim().is_empty() {
        return Err("has an empty address: give the IP or DNS name this party dials".into());
    }
    if ip.parse::<IpAddr>().is_err() && !is_dns_name(ip) {
        return Err(format!("{ip:?} is neither an IP address nor a DNS name"));
    }
    if port == 0 {
        return Err(format!("{ip} has port 0: give the port this party dials"));
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// An IP address, or an address and prefix length within the address's bits.
pub fn is_ip_or_cidr(s: &str) -> bool {
    match s.split_once('/') {
        None => s.parse::<IpAddr>().is_ok(),
        Some((ip, bits)) => match (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
    }
}

/// Sets `path=value` in `tree`: `path` is keys joined by `.`, each with optional `[index]`s
/// (an index one past a list's end appends); `value` is read as YAML (`[a, b]` is a list).
pub fn apply_set(tree: &mut Value, set: &str) -> Result<(), DeployError> {
    let bad = |reason: String| DeployError::Set {
        arg: set.to_string(),
        reason,
    };
    let (path, raw) = set
        .split_once('=')
        .ok_or_else(|| bad("is not PATH=VALUE, e.g. rollsite.nodePort=30091".into()))?;
    let value: Value = if raw.is_empty() {
        Value::String(String::new())
    } else {
        serde_yaml_ng::from_str(raw).map_err(|e| bad(format!("the value is not YAML: {e}")))?
    };
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if key.is_empty() {
            return Err(bad(format!("{path:?} has an empty key")));
        }
        steps.push(Step::Key(key.to_string()));
        while !rest.is_empty() {
            let (index, after) = rest
                .split_once(']')
                .ok_or_else(|| bad(format!("{part:?} has a '[' without ']'")))?;
            let index = index
                .parse::<usize>()
                .map_err(|_| bad(format!("[{index}] is not a list index")))?;
            steps.push(Step::Index(index));
            rest = after.strip_prefix('[').unwrap_or(after);
            if !after.is_empty() && !after.starts_with('[') {
                return Err(bad(format!("{part:?} has text after ']'")));
            }
        }
    }
    let mut node = tree;
    for step in steps {
        node = match step {
            Step::Key(k) => {
                if node.is_null() {
                    *node = Value::Mapping(Default::default());
                }
                let map = node
                    .as_mapping_mut()
                    .ok_or_else(|| bad(format!("{k:?} is under something that is not a map")))?;
                map.entry(Value::String(k)).or_insert(Value::Null)
            }
            Step::Index(i) => {
                if node.is_null() {
                    *node = Value::Sequence(Vec::new());
                }
                let list = node
                    .as_sequence_mut()
                    .ok_or_else(|| bad(format!("[{i}] indexes something that is not a list")))?;
                if i == list.len() {
                    list.push(Value::Null);
                }
                let len = list.len();
                list.get_mut(i)
                    .ok_or_else(|| bad(format!("[{i}] is past the list's end ({len} entries)")))?
            }
        };
    }
    *node = value;
    Ok(())
}

enum Step {
    Key(String),
    Index(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name: eggroll-9999\nnamespace: eggroll-9999\npartyId: 9999\n\
                           rollsite:\n  localClients: [10.244.0.0/16]\n";

    fn parse(text: &str) -> Result<PartyFile, DeployError> {
        PartyFile::parse(text, "party.yaml", &[])
    }

    #[test]
    fn defaults_follow_kubefate() {
        let p = parse(MINIMAL).unwrap();
        assert_eq!(p.party_id.0, "9999");
        assert_eq!(p.modules, all_modules());
        assert_eq!(p.rollsite.service_type, ServiceType::NodePort);
        assert!(!p.rollsite.enable_tls);
        assert_eq!(p.rollsite.tls_secret, "rollsite-tls");
        assert_eq!(p.nodemanager.replicas, 2);
        assert_eq!(p.nodemanager.session_processors_per_node, 4);
        assert_eq!(p.nodemanager.resources, nodemanager_resources());
        assert_eq!(p.image, format!("eggroll-rs:{}", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn reads_kubefate_spellings() {
        let text = format!(
            "{MINIMAL}chartName: fate\nchartVersion: v1.5.3\nregistry: ''\npersistence: false\n\
             nodemanager:\n  count: 3\n  resources:\n    requests: {{cpu: 1, memory: 2Gi}}\n"
        );
        let p = parse(&text).unwrap();
        assert_eq!(p.nodemanager.replicas, 3);
        assert_eq!(
            p.nodemanager.resources.requests["cpu"],
            Quantity("1".into())
        );
        assert!(p.nodemanager.resources.limits.is_empty());
        let polling =
            "name: x\nnamespace: x\npartyId: 1\nrollsite:\n  localClients: [10.0.0.1]\n  \
                       polling: {enabled: true, type: server, clientList: [{partID: 7}]}\n";
        assert_eq!(
            parse(polling).unwrap().rollsite.polling.client_list[0]
                .party_id
                .0,
            "7"
        );
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let cases = [
            ("namespace: Eggroll", "`namespace`"),
            ("modules: [rollsite, mysql]", "module `mysql`"),
            ("modules: [nodemanager]", "add it"),
            ("rollsite: {type: ClusterIP, nodePort: 30091, localClients: [1.2.3.4]}", "ClusterIP"),
            ("rollsite: {nodePort: 8080, localClients: [1.2.3.4]}", "30000-32767"),
            ("rollsite: {localClients: []}", "rollsite.localClients"),
            ("rollsite: {localClients: [pods]}", "localClients[0]"),
            (
                "rollsite: {localClients: [1.2.3.4], partyList: [{partyId: 9999, partyIp: a, partyPort: 1}]}",
                "own id",
            ),
            (
                "rollsite: {localClients: [1.2.3.4], polling: {enabled: true, type: client}}",
                "rollsite.polling.server",
            ),
            (
                "rollsite: {localClients: [1.2.3.4], polling: {enabled: true}}",
                "rollsite.polling.type",
            ),
            (
                "rollsite: {localClients: [1.2.3.4], polling: {enabled: true, type: server}}",
                "clientList",
            ),
            ("nodemanager: {replicas: 0}", "nodemanager.replicas"),
            ("nodemanager: {accessMode: RWO}", "nodemanager.accessMode"),
            ("rollsite: {localClients: [1.2.3.4], typo: 1}", "typo"),
        ];
        for (extra, want) in cases {
            // Each case replaces one top-level key of the minimal file.
            let set = extra.replacen(": ", "=", 1);
            let err = match PartyFile::parse(MINIMAL, "party.yaml", &[set]) {
                Ok(_) => panic!("{extra} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(want), "{extra}: {err} lacks {want}");
            assert!(err.contains("party.yaml"), "{err}");
        }
    }

    #[test]
    fn sets_override_paths() {
        let sets = [
            "rollsite.partyList[0].partyIp=rollsite-10000".to_string(),
            "rollsite.partyList[0].partyId=10000".to_string(),
            "rollsite.partyList[0].partyPort=9371".to_string(),
            "rollsite.localClients=[10.1.2.0/24, 10.1.3.4]".to_string(),
            "compose.subnet=10.1.2.0/24".to_string(),
        ];
        let p = PartyFile::parse(MINIMAL, "party.yaml", &sets).unwrap();
        assert_eq!(p.rollsite.party_list[0].party_ip, "rollsite-10000");
        assert_eq!(p.rollsite.party_list[0].party_port, 9371);
        assert_eq!(p.rollsite.local_clients, ["10.1.2.0/24", "10.1.3.4"]);
        assert_eq!(p.compose.subnet.as_deref(), Some("10.1.2.0/24"));
        for (set, want) in [
            ("rollsite", "PATH=VALUE"),
            ("rollsite.partyList[5].partyIp=x", "past the list's end"),
            ("name.x=1", "not a map"),
            ("rollsite.localClients[x]=1", "not a list index"),
        ] {
            let err = PartyFile::parse(MINIMAL, "party.yaml", &[set.to_string()])
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{set}: {err}");
        }
    }

    #[test]
    fn cidrs() {
        assert!(is_ip_or_cidr("10.244.0.0/16"));
        assert!(is_ip_or_cidr("fd00::/8"));
        assert!(is_ip_or_cidr("127.0.0.1"));
        assert!(!is_ip_or_cidr("10.0.0.0/33"));
        assert!(!is_ip_or_cidr("pods"));
    }
}
