//! A session as the registry holds it: its metadata and its lease.

use eggroll_proto::meta::{SessionMeta, SessionStatus};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A session and its lease.
pub struct SessionEntry {
    /// What clients see.
    pub meta: SessionMeta,
    pub(crate) lease: Duration,
    pub(crate) renewed: Instant,
}

impl SessionEntry {
    /// A new session whose client renews it within every `lease`.
    pub fn new(meta: SessionMeta, lease: Duration) -> Self {
        Self {
            meta,
            lease,
            renewed: Instant::now(),
        }
    }

    /// A session read back from the durable records.
    pub fn restored(meta: SessionMeta) -> Self {
        Self {
            meta,
            lease: Duration::ZERO,
            renewed: Instant::now(),
        }
    }

    pub(crate) fn running(&self) -> bool {
        matches!(
            self.meta.status(),
            SessionStatus::New | SessionStatus::Active
        )
    }

    pub(crate) fn nodes(&self) -> BTreeSet<u64> {
        self.meta
            .processors
            .iter()
            .map(|p| p.server_node_id)
            .collect()
    }
}
