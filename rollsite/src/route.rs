//! EggRoll's route table: parsing, lookup, and reloading the file when it changes.
//!
//! ```json
//! {"route_table": {"10000": {"default": [{"ip": "10.0.0.2", "port": 9370, "use_ssl": true}],
//!                            "fateflow": [{"ip": "10.0.0.2", "port": "9360"}]},
//!                  "9999":  {"default": [{"ip": "", "port": -1, "is_polling": true}]},
//!                  "default": {"default": [{"ip": "10.0.0.9", "port": 9370}]}},
//!  "permission": {"default_allow": true},
//!  "self_party": ["10000"]}
//! ```

use crate::error::{Error, Result};
use eggroll_core::sync::{Mutex, RwLock};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One next hop as the route table lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRoute")]
pub struct Route {
    /// Address of the next roll-site (or service).
    pub ip: String,
    /// Its port.
    pub port: u16,
    /// Name to verify its TLS certificate against; default: `ip`.
    pub hostname: Option<String>,
    /// Whether the link must use mutual TLS.
    pub use_ssl: bool,
    /// The party dials out to us over a polling stream; there is no address to call.
    pub is_polling: bool,
    /// CA to trust on this route instead of the roll-site's own.
    pub ca_file: Option<PathBuf>,
    /// Client certificate on this route instead of the roll-site's own.
    pub cert_file: Option<PathBuf>,
    /// Key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl Route {
    /// `ip:port`, for messages and channel keys.
    pub fn address(&self) -> String {
        if self.ip.contains(':') {
            format!("[{}]:{}", self.ip, self.port)
        } else {
            format!("{}:{}", self.ip, self.port)
        }
    }
}

/// Ports are numbers or strings in real files; -1 marks a polling client.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPort {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
struct RawRoute {
    #[serde(default)]
    ip: String,
    port: Option<RawPort>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    use_ssl: Option<bool>,
    /// EggRoll 2.x spells `use_ssl` this way.
    #[serde(default)]
    is_secure: Option<bool>,
    #[serde(default)]
    is_polling: bool,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
}

impl TryFrom<RawRoute> for Route {
    type Error = String;
    fn try_from(r: RawRoute) -> std::result::Result<Self, String> {
        let port = match &r.port {
            None => None,
            Some(RawPort::Number(n)) => Some(*n),
            Some(RawPort::Text(t)) => Some(
                t.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("port {t:?} of endpoint {:?} is not a number", r.ip))?,
            ),
        };
        let use_ssl = r.use_ssl.or(r.is_secure).unwrap_or(false);
        if r.is_polling {
            return Ok(Route {
                ip: r.ip,
                port: 0,
                hostname: r.hostname,
                use_ssl,
                is_polling: true,
                ca_file: r.ca_file,
                cert_file: r.cert_file,
                key_file: r.key_file,
            });
        }
        if r.ip.trim().is_empty() {
            return Err("an endpoint has an empty `ip` and is not `is_polling`".into());
        }
        let port = match port {
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(p) => {
                return Err(format!(
                    "port {p} of endpoint {:?} is outside 1..65535 (only polling clients, with \
                     \"is_polling\": true, may use -1)",
                    r.ip
                ))
            }
            None => return Err(format!("endpoint {:?} has no `port`", r.ip)),
        };
        if r.cert_file.is_some() != r.key_file.is_some() {
            return Err(format!(
                "endpoint {:?} sets only one of `cert_file` and `key_file`",
                r.ip
            ));
        }
        Ok(Route {
            ip: r.ip.trim().to_string(),
            port,
            hostname: r.hostname,
            use_ssl,
            is_polling: false,
            ca_file: r.ca_file,
            cert_file: r.cert_file,
            key_file: r.key_file,
        })
    }
}

#[derive(Deserialize)]
struct RawPermission {
    #[serde(default = "yes")]
    default_allow: bool,
}

fn yes() -> bool {
    true
}

/// Party ids are strings, but some generators write numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPartyId {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
struct RawFile {
    route_table: BTreeMap<String, BTreeMap<String, Vec<Route>>>,
    #[serde(default)]
    permission: Option<RawPermission>,
    #[serde(default)]
    self_party: Option<Vec<RawPartyId>>,
}

/// Where a packet goes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hop {
    /// To this roll-site's own party.
    Local,
    /// To another roll-site or service.
    Remote(Route),
    /// Over the polling stream that party holds open to us.
    Polling(String),
}

/// A parsed route table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: BTreeMap<String, BTreeMap<String, Vec<Route>>>,
    default_allow: bool,
    self_parties: Vec<String>,
    source: String,
}

impl RouteTable {
    /// No routes: only the local party is reachable.
    pub fn empty() -> Self {
        Self {
            default_allow: true,
            source: "(none configured)".into(),
            ..Default::default()
        }
    }

    /// Parses the JSON text of a route table; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        let bad = |reason: String| Error::RouteTable {
            path: source.to_string(),
            reason,
        };
        let raw: RawFile = serde_json::from_str(text).map_err(|e| {
            // serde_json reports the line and column of the fault; say it plainly.
            bad(format!("{e}; fix that line and save the file again"))
        })?;
        for (party, roles) in &raw.route_table {
            if party.trim().is_empty() {
                return Err(bad("a party id in `route_table` is empty".into()));
            }
            for (role, list) in roles {
                if list.is_empty() {
                    return Err(bad(format!(
                        "route_table.{party}.{role} lists no endpoint; give at least one"
                    )));
                }
            }
        }
        Ok(Self {
            routes: raw.route_table,
            default_allow: raw.permission.map(|p| p.default_allow).unwrap_or(true),
            self_parties: raw
                .self_party
                .unwrap_or_default()
                .into_iter()
                .map(|p| match p {
                    RawPartyId::Number(n) => n.to_string(),
                    RawPartyId::Text(t) => t,
                })
                .collect(),
            source: source.to_string(),
        })
    }

    /// Every route, as (party, role, endpoints), in party order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, &[Route])> {
        self.routes.iter().flat_map(|(party, roles)| {
            roles
                .iter()
                .map(move |(role, list)| (party.as_str(), role.as_str(), list.as_slice()))
        })
    }

    /// Where the table came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The route listed for `party` and `role` (falling back to its `default` role), without
    /// the `default` party.
    pub fn explicit(&self, party: &str, role: &str) -> Option<&Route> {
        let roles = self.routes.get(party)?;
        roles
            .get(role)
            .or_else(|| roles.get("default"))
            .and_then(|l| l.first())
    }

    /// Where a packet for `party` in `role` goes from the roll-site of `local_party`.
    pub fn resolve(&self, local_party: &str, party: &str, role: &str) -> Result<Hop> {
        if party == local_party || self.self_parties.iter().any(|p| p == party) {
            // A service of our own party listed by role (e.g. `fateflow`) is called there;
            // everything else is ours to deliver.
            let service = self
                .routes
                .get(party)
                .and_then(|r| r.get(role))
                .and_then(|l| l.first())
                .filter(|r| role != "default" && !r.is_polling);
            return Ok(match service {
                Some(r) => Hop::Remote(r.clone()),
                None => Hop::Local,
            });
        }
        let no_route = || Error::NoRoute {
            party: party.to_string(),
            role: role.to_string(),
            table: self.source.clone(),
        };
        let roles = match self.routes.get(party) {
            Some(r) => r,
            None if !self.default_allow => {
                return Err(Error::Refused(format!(
                    "party {party} is not in the route table {} and its permission.default_allow \
                     is false",
                    self.source
                )))
            }
            None => self.routes.get("default").ok_or_else(no_route)?,
        };
        let route = roles
            .get(role)
            .or_else(|| roles.get("default"))
            .and_then(|l| l.first())
            .ok_or_else(no_route)?;
        Ok(if route.is_polling {
            Hop::Polling(party.to_string())
        } else {
            Hop::Remote(route.clone())
        })
    }

    /// Whether traffic from `party` must arrive over TLS, as its route says.
    pub fn requires_tls_from(&self, party: &str) -> bool {
        self.explicit(party, "default").is_some_and(|r| r.use_ssl)
    }

    /// Whether `party` may hold a polling stream open to us.
    pub fn is_polling_party(&self, party: &str) -> bool {
        self.explicit(party, "default")
            .is_some_and(|r| r.is_polling)
    }
}

/// The live route table of a roll-site: swapped whole when its file changes.
pub struct Routes {
    path: Option<PathBuf>,
    current: RwLock<Arc<RouteTable>>,
    last_text: Mutex<Option<Vec<u8>>>,
    last_error: Mutex<Option<String>>,
}

impl Routes {
    /// Loads `path` (empty: no routes); a bad file is an error here, at startup.
    pub fn load(path: &Path) -> Result<Self> {
        if path.as_os_str().is_empty() {
            return Ok(Self {
                path: None,
                current: RwLock::new(Arc::new(RouteTable::empty())),
                last_text: Mutex::new(None),
                last_error: Mutex::new(None),
            });
        }
        let text = std::fs::read(path).map_err(|e| Error::RouteTable {
            path: path.display().to_string(),
            reason: format!("cannot read it: {e}"),
        })?;
        let table = parse_bytes(&text, path)?;
        Ok(Self {
            path: Some(path.to_path_buf()),
            current: RwLock::new(Arc::new(table)),
            last_text: Mutex::new(Some(text)),
            last_error: Mutex::new(None),
        })
    }

    /// The table in force; transfers keep the one they started with.
    pub fn table(&self) -> Arc<RouteTable> {
        self.current.read().clone()
    }

    /// Why the last reload was rejected, if it was.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// Rereads the file; swaps the table in if the text changed and parses. Returns whether
    /// a new table is in force. A bad file keeps the old table and is reported.
    pub fn reload_if_changed(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) => {
                self.reject(format!(
                    "route table {}: cannot read it: {e}; keeping the previous table",
                    path.display()
                ));
                return false;
            }
        };
        let mut last = self.last_text.lock();
        if last.as_deref() == Some(&text[..]) {
            return false;
        }
        match parse_bytes(&text, path) {
            Ok(table) => {
                *self.current.write() = Arc::new(table);
                *last = Some(text);
                *self.last_error.lock() = None;
                tracing::info!(path = %path.display(), "route table reloaded");
                true
            }
            Err(e) => {
                // Remember the bad text too, so it is reported once, not every tick.
                *last = Some(text);
                self.reject(format!("{e}; keeping the previous table"));
                false
            }
        }
    }

    fn reject(&self, msg: String) {
        tracing::error!("{msg}");
        *self.last_error.lock() = Some(msg);
    }
}

fn parse_bytes(text: &[u8], path: &Path) -> Result<RouteTable> {
    let source = path.display().to_string();
    let text = std::str::from_utf8(text).map_err(|e| Error::RouteTable {
        path: source.clone(),
        reason: format!("not UTF-8 text: {e}"),
    })?;
    RouteTable::parse(text, &source)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBEFATE_STYLE: &str = r#"{
      "route_table": {
        "9999": {"default": [{"ip": "192.0.2.10", "port": "9370"}],
                 "fateflow": [{"ip": "192.0.2.11", "port": 9360}]},
        "10000": {"default": [{"ip": "192.0.2.20", "port": 9370, "is_secure": true}]},
        "8888": {"default": [{"port": -1, "ip": "", "is_polling": true}]},
        "default": {"default": [{"ip": "192.0.2.99", "port": 9370}]}
      },
      "permission": {"default_allow": true},
      "self_party": ["9999"]
    }"#;

    fn route(ip: &str, port: u16) -> Route {
        Route {
            ip: ip.into(),
            port,
            hostname: None,
            use_ssl: false,
            is_polling: false,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }

    #[test]
    fn reads_what_generators_write() {
        let t = RouteTable::parse(KUBEFATE_STYLE, "test").unwrap();
        assert_eq!(t.resolve("9999", "9999", "guest").unwrap(), Hop::Local);
        assert_eq!(
            t.resolve("9999", "9999", "fateflow").unwrap(),
            Hop::Remote(route("192.0.2.11", 9360))
        );
        let Hop::Remote(r) = t.resolve("9999", "10000", "host").unwrap() else {
            panic!("not remote")
        };
        assert!(r.use_ssl && r.port == 9370 && r.ip == "192.0.2.20");
        assert_eq!(
            t.resolve("9999", "8888", "host").unwrap(),
            Hop::Polling("8888".into())
        );
        assert_eq!(
            t.resolve("9999", "7777", "host").unwrap(),
            Hop::Remote(route("192.0.2.99", 9370))
        );
        assert!(t.requires_tls_from("10000") && !t.requires_tls_from("9999"));
        assert!(t.is_polling_party("8888") && !t.is_polling_party("10000"));
        // self_party makes 9999 local even for a roll-site configured as another id.
        assert_eq!(t.resolve("1", "9999", "guest").unwrap(), Hop::Local);
    }

    #[test]
    fn permission_and_missing_routes() {
        let t = RouteTable::parse(
            r#"{"route_table": {"1": {"host": [{"ip": "a", "port": 1}]}},
                "permission": {"default_allow": false}}"#,
            "t",
        )
        .unwrap();
        let e = t.resolve("0", "2", "host").unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e}");
        let e = t.resolve("0", "1", "guest").unwrap_err();
        assert!(e.to_string().contains("no route to party 1"), "{e}");
        let e = RouteTable::empty().resolve("0", "1", "host").unwrap_err();
        assert!(matches!(e, Error::NoRoute { .. }), "{e}");
    }

    #[test]
    fn bad_files_name_the_line() {
        let cases = [
            ("{\n\"route_table\": {\n\"1\": {\"default\": [{\"ip\": \"a\", \"port\": 70000}]}}}", "line 3", "70000"),
            ("{\n\"route_table\": {\n\n\"1\": {\"default\": [{\"ip\": \"a\", \"port\": \"x9\"}]}}}", "line 4", "x9"),
            ("{\n\"route_table\": {\n\"1\": {\"default\": [{\"ip\": \"\", \"port\": 1}]}}}", "line 3", "empty `ip`"),
            ("{\n\"route_table\": {\n\"1\": {\"default\": [{\"ip\": \"a\", \"port\": 1}],}}}", "line 3", ""),
            ("{\"route\": {}}", "line 1", "route_table"),
        ];
        for (text, line, what) in cases {
            let e = RouteTable::parse(text, "f.json").unwrap_err().to_string();
            assert!(
                e.contains(line) && e.contains(what) && e.contains("f.json"),
                "{e}"
            );
        }
        let e = RouteTable::parse(r#"{"route_table": {"1": {"default": []}}}"#, "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("route_table.1.default"), "{e}");
    }

    #[test]
    fn reload_swaps_good_files_and_keeps_the_old_on_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("route_table.json");
        std::fs::write(
            &path,
            r#"{"route_table": {"2": {"default": [{"ip": "127.0.0.1", "port": 1000}]}}}"#,
        )
        .unwrap();
        let routes = Routes::load(&path).unwrap();
        let old = routes.table();
        assert!(!routes.reload_if_changed());
        std::fs::write(&path, "{\n  \"route_table\": {\n    \"2\": nope\n}").unwrap();
        assert!(!routes.reload_if_changed());
        let err = routes.last_error().unwrap();
        assert!(err.contains("line 3") && err.contains("keeping"), "{err}");
        assert_eq!(*routes.table(), *old);
        std::fs::write(
            &path,
            r#"{"route_table": {"2": {"default": [{"ip": "127.0.0.1", "port": 2000}]}}}"#,
        )
        .unwrap();
        assert!(routes.reload_if_changed());
        assert!(routes.last_error().is_none());
        assert_eq!(
            routes.table().resolve("1", "2", "host").unwrap(),
            Hop::Remote(route("127.0.0.1", 2000))
        );
        // A transfer that started before the swap still holds the old table.
        assert_eq!(
            old.resolve("1", "2", "host").unwrap(),
            Hop::Remote(route("127.0.0.1", 1000))
        );
        assert!(Routes::load(&dir.path().join("missing.json")).is_err());
    }
}
