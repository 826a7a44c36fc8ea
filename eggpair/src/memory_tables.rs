//! The in-memory tables of a process: each a vector of in-memory partitions, by
//! (namespace, name). They die with the process, or earlier with their session.

use crate::error::{EggError, Result};
use crate::memory::MemStore;
use crate::memory_budget::{MemoryBudget, MemoryUsage};
use eggroll_core::sync::Mutex;
use eggroll_proto::meta::StoreLocator;
use std::collections::HashMap;
use std::sync::Arc;

type Table = Arc<Vec<Arc<MemStore>>>;

/// Every in-memory table of one process, charged to one memory budget.
pub struct MemoryTables {
    tables: Mutex<HashMap<(String, String), Table>>,
    budget: Arc<MemoryBudget>,
}

fn key(l: &StoreLocator) -> (String, String) {
    (l.namespace.clone(), l.name.clone())
}

impl MemoryTables {
    /// No tables yet; their partitions charged to `budget`.
    pub fn new(budget: MemoryBudget) -> Self {
        Self {
            tables: Mutex::default(),
            budget: Arc::new(budget),
        }
    }

    /// The budget's figures now.
    pub fn usage(&self) -> MemoryUsage {
        self.budget.usage()
    }

    fn empty(&self, l: &StoreLocator) -> Table {
        Arc::new(
            (0..l.total_partitions)
                .map(|_| Arc::new(MemStore::with_budget(Some(self.budget.clone()))))
                .collect(),
        )
    }

    /// Makes table `l` empty, replacing one of that name.
    pub fn create(&self, l: &StoreLocator) {
        let table = self.empty(l);
        self.tables.lock().insert(key(l), table);
    }

    /// Partition `p` of table `l`; with `create`, the table comes into being on first touch.
    pub fn partition(&self, l: &StoreLocator, p: u32, create: bool) -> Result<Arc<MemStore>> {
        let table = {
            let mut tables = self.tables.lock();
            if create {
                tables
                    .entry(key(l))
                    .or_insert_with(|| self.empty(l))
                    .clone()
            } else {
                tables
                    .get(&key(l))
                    .cloned()
                    .ok_or_else(|| EggError::NoSuchTable {
                        namespace: l.namespace.clone(),
                        name: l.name.clone(),
                        store_type: "IN_MEMORY".into(),
                    })?
            }
        };
        table.get(p as usize).cloned().ok_or_else(|| {
            EggError::InvalidTask(format!(
                "in-memory table {}/{} has no partition {p}",
                l.namespace, l.name
            ))
        })
    }

    /// Drops table `l`.
    pub fn remove(&self, l: &StoreLocator) {
        self.tables.lock().remove(&key(l));
    }

    /// Drops every table of `namespace`; returns how many.
    pub fn remove_namespace(&self, namespace: &str) -> usize {
        let mut tables = self.tables.lock();
        let before = tables.len();
        tables.retain(|(ns, _), _| ns != namespace);
        before - tables.len()
    }
}
