//! A persistent table's metadata file (`.meta.json` beside its partitions): how it was made,
//! so a later session, another egg or `eggroll table ls --data-dir` can find it again.

use crate::error::{EggError, Result};
use eggroll_core::names::{validate_name, validate_partitions};
use eggroll_proto::meta::{StoreLocator, StoreType};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File beside a table's partitions that records how it was made.
pub const META_FILE: &str = ".meta.json";

/// A table's metadata as stored in [`META_FILE`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct TableMeta {
    namespace: String,
    name: String,
    store_type: String,
    total_partitions: u32,
    partitioner: String,
    serdes: String,
    key_type: String,
    value_type: String,
    // FATE's type codes (absent in files written before byte tables).
    #[serde(default)]
    key_serdes_type: i32,
    #[serde(default)]
    value_serdes_type: i32,
    #[serde(default)]
    partitioner_type: i32,
}

impl TableMeta {
    fn from_locator(l: &StoreLocator) -> Self {
        Self {
            namespace: l.namespace.clone(),
            name: l.name.clone(),
            store_type: store_type_dir(l.store_type()).to_string(),
            total_partitions: l.total_partitions,
            partitioner: l.partitioner.clone(),
            serdes: l.serdes.clone(),
            key_type: l.key_type.clone(),
            value_type: l.value_type.clone(),
            key_serdes_type: l.key_serdes_type,
            value_serdes_type: l.value_serdes_type,
            partitioner_type: l.partitioner_type,
        }
    }

    fn into_locator(self) -> StoreLocator {
        let mut l = StoreLocator {
            namespace: self.namespace,
            name: self.name,
            total_partitions: self.total_partitions,
            partitioner: self.partitioner,
            serdes: self.serdes,
            key_type: self.key_type,
            value_type: self.value_type,
            key_serdes_type: self.key_serdes_type,
            value_serdes_type: self.value_serdes_type,
            partitioner_type: self.partitioner_type,
            ..Default::default()
        };
        l.set_store_type(StoreType::PERSISTENT);
        l
    }
}

/// The directory name of a store type, as in EggRoll's layout.
pub fn store_type_dir(t: StoreType) -> &'static str {
    match t {
        StoreType::Rocksdb => "ROCKSDB",
        StoreType::InMemory => "IN_MEMORY",
        StoreType::Unspecified => "UNSPECIFIED",
    }
}

/// The directory of table `namespace/name` of type `t` under `data_dir`.
pub fn table_dir(data_dir: &Path, t: StoreType, namespace: &str, name: &str) -> PathBuf {
    data_dir.join(store_type_dir(t)).join(namespace).join(name)
}

/// Checks the names and partition count of a locator before they become directories.
pub fn validate(l: &StoreLocator) -> Result<()> {
    validate_name("namespace", &l.namespace)?;
    validate_name("table name", &l.name)?;
    validate_partitions(l.total_partitions)?;
    Ok(())
}

/// Writes `dir/.meta.json` through the temporary file `tmp_name`, so a reader (or a crash)
/// never sees half of it. Writers racing on one table each use their own `tmp_name`.
pub fn write(dir: &Path, l: &StoreLocator, tmp_name: &str) -> Result<()> {
    let meta =
        serde_json::to_vec_pretty(&TableMeta::from_locator(l)).map_err(|e| EggError::BadMeta {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
    let tmp = dir.join(tmp_name);
    std::fs::write(&tmp, meta).map_err(EggError::io("cannot write table metadata", &tmp))?;
    std::fs::rename(&tmp, dir.join(META_FILE)).map_err(EggError::io(
        "cannot write table metadata",
        dir.join(META_FILE),
    ))
}

/// Reads a metadata file back into the table's locator, checking what it says.
pub fn read(path: &Path) -> Result<StoreLocator> {
    let bytes = std::fs::read(path).map_err(EggError::io("cannot read table metadata", path))?;
    let meta: TableMeta = serde_json::from_slice(&bytes).map_err(|e| EggError::BadMeta {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let l = meta.into_locator();
    validate(&l).map_err(|e| EggError::BadMeta {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(l)
}

/// The names of the subdirectories of `dir`, sorted; none if it does not exist.
pub fn dir_names(dir: &Path) -> Result<Vec<String>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(EggError::io("cannot list", dir))? {
        let entry = entry.map_err(EggError::io("cannot list", dir))?;
        if entry.path().is_dir() {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_metadata_reads_back_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = StoreLocator {
            namespace: "ns".into(),
            name: "t".into(),
            total_partitions: 3,
            partitioner: "mmh3".into(),
            serdes: "postcard".into(),
            key_type: "u64".into(),
            value_type: "String".into(),
            ..Default::default()
        };
        l.set_store_type(StoreType::PERSISTENT);
        write(dir.path(), &l, ".tmp").unwrap();
        assert_eq!(read(&dir.path().join(META_FILE)).unwrap(), l);
        // A FATE byte table's type codes are kept.
        let mut fate = l.clone();
        (fate.partitioner, fate.serdes) = ("integer".into(), "bytes".into());
        (
            fate.key_serdes_type,
            fate.value_serdes_type,
            fate.partitioner_type,
        ) = (1, 0, 1);
        write(dir.path(), &fate, ".tmp").unwrap();
        assert_eq!(read(&dir.path().join(META_FILE)).unwrap(), fate);
        // A file written before the codes were recorded reads as codes 0.
        let old = r#"{"namespace":"ns","name":"t","store_type":"ROCKSDB","total_partitions":3,
            "partitioner":"mmh3","serdes":"postcard","key_type":"u64","value_type":"String"}"#;
        std::fs::write(dir.path().join(META_FILE), old).unwrap();
        assert_eq!(read(&dir.path().join(META_FILE)).unwrap(), l);
        assert!(!dir.path().join(".tmp").exists());
        std::fs::write(dir.path().join(META_FILE), b"{not json").unwrap();
        let err = read(&dir.path().join(META_FILE)).unwrap_err().to_string();
        assert!(err.contains(META_FILE), "{err}");
    }
}
