//! `eggroll deploy render`: one declarative party file (KubeFATE's `cluster.yaml` field
//! names, ours where KubeFATE has none) rendered into Kubernetes manifests or a
//! docker-compose bundle. Both targets give the daemons the same command lines and the same
//! config files ([`configs`]), so the compose trial runs what the pods are given.

pub mod compose;
pub mod configs;
pub mod kubernetes;
pub mod party_file;

pub use party_file::PartyFile;

use std::collections::BTreeMap;
use std::path::Path;

/// What can go wrong reading a party file or writing what it renders.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The party file cannot be read.
    #[error("cannot read party file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The party file is not YAML, or has a field of the wrong type or an unknown one.
    #[error("party file {path}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// serde's message, with the line and column.
        reason: String,
    },
    /// A field's value cannot work.
    #[error("party file {path}: `{field}` {problem}")]
    Invalid {
        /// The file.
        path: String,
        /// The field, as a path (`rollsite.partyList[0].partyIp`).
        field: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A `--set` argument is malformed.
    #[error("--set {arg}: {reason}")]
    Set {
        /// The argument.
        arg: String,
        /// What is wrong.
        reason: String,
    },
    /// Serializing an output failed (a bug).
    #[error("cannot render: {0}")]
    Render(String),
    /// Writing the output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What to render.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Kubernetes manifests, one object per file (`kubectl apply -f DIR`).
    Kubernetes,
    /// A docker-compose bundle: `docker-compose.yml` and `conf/`.
    Compose,
}

/// Renders `party` for `target`: relative file path → contents.
pub fn render(party: &PartyFile, target: Target) -> Result<BTreeMap<String, String>, DeployError> {
    match target {
        Target::Kubernetes => kubernetes::render(party),
        Target::Compose => compose::render(party),
    }
}

/// Writes rendered files under `dir` (created as needed). Files already there that this
/// render does not name stay (the compose trial's certificates in `conf/tls/`).
pub fn write(dir: &Path, files: &BTreeMap<String, String>) -> Result<(), DeployError> {
    for (name, text) in files {
        let path = dir.join(name);
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(|source| DeployError::Write {
            path: parent.display().to_string(),
            source,
        })?;
        std::fs::write(&path, text).map_err(|source| DeployError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// YAML text of `value` with the keys Kubernetes and compose users expect first
/// (`apiVersion`, `kind`, `metadata`, `name`, ...), the rest in alphabetical order.
pub(crate) fn to_yaml(value: &serde_json::Value) -> Result<String, DeployError> {
    serde_yaml_ng::to_string(&ordered(value)).map_err(|e| DeployError::Render(format!("YAML: {e}")))
}

const FIRST_KEYS: [&str; 15] = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "image",
    "imagePullPolicy",
    "entrypoint",
    "command",
    "args",
    "type",
    "spec",
    "services",
];

fn ordered(value: &serde_json::Value) -> serde_yaml_ng::Value {
    use serde_json::Value as J;
    use serde_yaml_ng::Value as Y;
    match value {
        J::Null => Y::Null,
        J::Bool(b) => Y::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Y::Number(i.into()),
            (_, Some(u), _) => Y::Number(u.into()),
            (_, _, Some(f)) => Y::Number(f.into()),
            _ => Y::Null,
        },
        J::String(s) => Y::String(s.clone()),
        J::Array(items) => Y::Sequence(items.iter().map(ordered).collect()),
        J::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| {
                (
                    FIRST_KEYS
                        .iter()
                        .position(|f| f == k)
                        .unwrap_or(FIRST_KEYS.len()),
                    k.to_string(),
                )
            });
            let mut out = serde_yaml_ng::Mapping::new();
            for k in keys {
                out.insert(Y::String(k.clone()), ordered(&map[k]));
            }
            Y::Mapping(out)
        }
    }
}
