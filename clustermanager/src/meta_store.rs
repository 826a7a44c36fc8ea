//! The cluster manager's durable records (nodes, sessions, stores) in an embedded key/value
//! store of its data dir, so they survive a restart.

use crate::error::{CmError, Result};
use eggroll_eggpair::{KeyRange, KvStore};
use prost::Message;
use std::path::Path;

/// Where in the data dir the records live.
const DIR: &str = "clustermanager-meta";
/// Block cache (and as much again for write buffers) of the records: they are few and small.
const CACHE_BYTES: u64 = 16 << 20;

/// Protobuf records keyed `<kind>/<id>`.
#[derive(Clone)]
pub struct MetaStore {
    kv: KvStore,
}

impl MetaStore {
    /// Opens (or creates) the records under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let dir = data_dir.join(DIR);
        // Before this layout the records were partition 0 of a table in the data dir: the
        // same RocksDB files, moved as they are.
        let old_table = data_dir.join("ROCKSDB/__clustermanager/meta");
        if !dir.exists() && old_table.join("0").exists() {
            std::fs::rename(old_table.join("0"), &dir).map_err(|e| {
                CmError::Internal(format!(
                    "cannot move the records from {} to {}: {e}",
                    old_table.join("0").display(),
                    dir.display()
                ))
            })?;
            let _ = std::fs::remove_dir_all(&old_table);
            tracing::info!("moved the cluster manager's records to {}", dir.display());
        }
        Ok(Self {
            kv: KvStore::open(&dir, CACHE_BYTES)?,
        })
    }

    fn key(kind: &str, id: &str) -> Vec<u8> {
        format!("{kind}/{id}").into_bytes()
    }

    /// Writes a record (off the async workers).
    pub async fn put<M: Message>(&self, kind: &str, id: &str, record: &M) -> Result<()> {
        let pair = (Self::key(kind, id), record.encode_to_vec());
        let kv = self.kv.clone();
        tokio::task::spawn_blocking(move || kv.put(vec![pair]))
            .await
            .map_err(|e| CmError::Internal(e.to_string()))??;
        Ok(())
    }

    /// Removes a record.
    pub async fn delete(&self, kind: &str, id: &str) -> Result<()> {
        let key = Self::key(kind, id);
        let kv = self.kv.clone();
        tokio::task::spawn_blocking(move || kv.delete(&key))
            .await
            .map_err(|e| CmError::Internal(e.to_string()))??;
        Ok(())
    }

    /// Every record of a kind (at start-up, or listing).
    pub fn all<M: Message + Default>(&self, kind: &str) -> Result<Vec<M>> {
        let prefix = format!("{kind}/");
        let mut out = Vec::new();
        for pair in self.kv.iter(KeyRange::prefix(prefix.as_bytes()))? {
            let (k, v) = pair?;
            out.push(M::decode(v.as_slice()).map_err(|e| CmError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eggroll_proto::meta::NodeRegistration;

    #[tokio::test]
    async fn records_survive_a_reopen_and_the_old_layout_moves() {
        let dir = tempfile::tempdir().unwrap();
        let node = |id| NodeRegistration {
            node_id: id,
            host: "127.0.0.1".into(),
            ..Default::default()
        };
        {
            let m = MetaStore::open(dir.path()).unwrap();
            m.put("node", "1", &node(1)).await.unwrap();
            m.put("node", "2", &node(2)).await.unwrap();
            m.delete("node", "1").await.unwrap();
        }
        let m = MetaStore::open(dir.path()).unwrap();
        assert_eq!(m.all::<NodeRegistration>("node").unwrap(), vec![node(2)]);
        drop(m);
        // A data dir of the earlier layout: its records are found after the move.
        let old = tempfile::tempdir().unwrap();
        let table = old.path().join("ROCKSDB/__clustermanager/meta");
        std::fs::create_dir_all(&table).unwrap();
        std::fs::rename(dir.path().join(DIR), table.join("0")).unwrap();
        let m = MetaStore::open(old.path()).unwrap();
        assert_eq!(m.all::<NodeRegistration>("node").unwrap(), vec![node(2)]);
        assert!(!table.exists());
    }
}
