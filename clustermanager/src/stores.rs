//! Persistent stores on the cluster: recording a new one where a session's nodes are, finding
//! one, forgetting one. The records themselves are the [`Catalog`](crate::catalog::Catalog).

use crate::catalog::record_id;
use crate::cluster::Cluster;
use crate::error::{CmError, Result};
use eggroll_proto::meta::{Store, StoreLocator};

impl Cluster {
    /// Gets a store, or with `create` records a new persistent one placed on the session's
    /// nodes (every live node when no session is named).
    pub async fn get_store(&self, req: eggroll_proto::meta::StoreRequest) -> Result<Store> {
        use eggroll_core::names::{validate_name, validate_partitions};
        use eggroll_proto::meta::StoreType;
        let l = req
            .locator
            .ok_or_else(|| CmError::Invalid("the request names no store locator".into()))?;
        validate_name("namespace", &l.namespace)?;
        validate_name("table name", &l.name)?;
        if !req.create {
            return self.catalog().get(&l);
        }
        validate_partitions(l.total_partitions)?;
        if l.store_type() != StoreType::PERSISTENT {
            return Err(CmError::Invalid(format!(
                "only persistent (ROCKSDB) stores are recorded by the cluster manager, not {}",
                l.store_type().as_str_name()
            )));
        }
        let nodes: Vec<u64> = if req.session_id.is_empty() {
            self.nodes()
                .alive()
                .iter()
                .map(|n| n.registration.node_id)
                .collect()
        } else {
            self.session(&req.session_id)?
                .processors
                .iter()
                .map(|p| p.server_node_id)
                .collect()
        };
        let store = Store {
            partitions: eggroll_core::placement::spread(&nodes, l.total_partitions)?,
            locator: Some(l.clone()),
            options: Default::default(),
        };
        self.catalog().insert(store.clone())?;
        if let Err(e) = self.meta.put("store", &record_id(&l), &store).await {
            let _ = self.catalog().remove(&l);
            return Err(e);
        }
        tracing::info!(namespace = %l.namespace, name = %l.name, partitions = l.total_partitions, "store created");
        Ok(store)
    }

    /// Forgets a store (its data is removed by the eggs, through a Destroy job).
    pub async fn delete_store(&self, l: &StoreLocator) -> Result<Store> {
        let store = self.catalog().get(l)?;
        self.meta.delete("store", &record_id(l)).await?;
        self.catalog().remove(l)?;
        Ok(store)
    }
}
