//! Store metadata: every persistent table of the cluster and where its partitions live.

use crate::error::{CmError, Result};
use eggroll_proto::meta::{Store, StoreLocator};
use std::collections::BTreeMap;

/// Stores by (namespace, name).
#[derive(Default)]
pub struct Catalog {
    stores: BTreeMap<(String, String), Store>,
}

/// The durable record id of a store.
pub fn record_id(l: &StoreLocator) -> String {
    format!("{}/{}", l.namespace, l.name)
}

fn key(l: &StoreLocator) -> (String, String) {
    (l.namespace.clone(), l.name.clone())
}

impl Catalog {
    /// The stores of the durable records.
    pub fn restore(stores: Vec<Store>) -> Self {
        let stores = stores
            .into_iter()
            .filter_map(|s| Some((key(s.locator.as_ref()?), s)))
            .collect();
        Self { stores }
    }

    /// A store by locator.
    pub fn get(&self, l: &StoreLocator) -> Result<Store> {
        self.stores
            .get(&key(l))
            .cloned()
            .ok_or_else(|| CmError::NoSuchStore {
                namespace: l.namespace.clone(),
                name: l.name.clone(),
            })
    }

    /// Adds a new store; an error if one of that name exists.
    pub fn insert(&mut self, store: Store) -> Result<()> {
        let l = store.locator.clone().unwrap_or_default();
        if self.stores.contains_key(&key(&l)) {
            return Err(CmError::StoreExists {
                namespace: l.namespace,
                name: l.name,
            });
        }
        self.stores.insert(key(&l), store);
        Ok(())
    }

    /// Removes a store.
    pub fn remove(&mut self, l: &StoreLocator) -> Result<Store> {
        self.stores
            .remove(&key(l))
            .ok_or_else(|| CmError::NoSuchStore {
                namespace: l.namespace.clone(),
                name: l.name.clone(),
            })
    }

    /// The stores whose namespace and name match glob patterns.
    pub fn list(&self, namespace: &str, name: &str) -> Result<Vec<Store>> {
        let pattern = |p: &str| {
            let p = if p.is_empty() { "*" } else { p };
            glob::Pattern::new(p)
                .map_err(|e| CmError::Invalid(format!("`{p}` is not a valid glob pattern: {e}")))
        };
        let (ns, nm) = (pattern(namespace)?, pattern(name)?);
        Ok(self
            .stores
            .iter()
            .filter(|((a, b), _)| ns.matches(a) && nm.matches(b))
            .map(|(_, s)| s.clone())
            .collect())
    }
}
