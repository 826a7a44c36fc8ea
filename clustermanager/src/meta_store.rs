//! The cluster manager's durable records (nodes, sessions, stores) in one RocksDB partition of
//! its data dir, so they survive a restart.

use crate::error::{CmError, Result};
use eggroll_core::config::StorageConfig;
use eggroll_eggpair::{KeyRange, PartitionStore, Stores};
use eggroll_proto::meta::{StoreLocator, StoreType};
use prost::Message;
use std::path::Path;
use std::sync::Arc;

/// A small key/value store of protobuf records, keyed `<kind>/<id>`.
#[derive(Clone)]
pub struct MetaStore {
    part: Arc<dyn PartitionStore>,
}

impl MetaStore {
    /// Opens (or creates) the records under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let config = StorageConfig {
            block_cache_bytes: 16 << 20,
            write_buffer_bytes: 16 << 20,
            ..StorageConfig::default()
        };
        let stores = Stores::open(data_dir, config)?;
        let mut l = StoreLocator {
            namespace: "__clustermanager".into(),
            name: "meta".into(),
            total_partitions: 1,
            ..Default::default()
        };
        l.set_store_type(StoreType::Rocksdb);
        if stores
            .load(StoreType::Rocksdb, &l.namespace, &l.name)
            .is_err()
        {
            stores.create(&l)?;
        }
        Ok(Self {
            part: stores.partition(&l, 0)?,
        })
    }

    fn key(kind: &str, id: &str) -> Vec<u8> {
        format!("{kind}/{id}").into_bytes()
    }

    /// Writes a record (off the async workers).
    pub async fn put<M: Message>(&self, kind: &str, id: &str, record: &M) -> Result<()> {
        let pair = (Self::key(kind, id), record.encode_to_vec());
        let part = self.part.clone();
        tokio::task::spawn_blocking(move || part.put_batch(&[pair]))
            .await
            .map_err(|e| CmError::Internal(e.to_string()))??;
        Ok(())
    }

    /// Removes a record.
    pub async fn delete(&self, kind: &str, id: &str) -> Result<()> {
        let key = Self::key(kind, id);
        let part = self.part.clone();
        tokio::task::spawn_blocking(move || part.delete(&key))
            .await
            .map_err(|e| CmError::Internal(e.to_string()))??;
        Ok(())
    }

    /// Every record of a kind (at start-up, or listing).
    pub fn all<M: Message + Default>(&self, kind: &str) -> Result<Vec<M>> {
        let prefix = format!("{kind}/");
        let mut out = Vec::new();
        for pair in self.part.iter(KeyRange::prefix(prefix.as_bytes()))? {
            let (k, v) = pair?;
            out.push(M::decode(v.as_slice()).map_err(|e| CmError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }
}
