//! Distributed mode: received tables go straight into the cluster's eggs.
//!
//! With `rollsite.cluster_manager` set, the roll-site keeps a session on that cluster and
//! writes every batch of a received table into a persistent table of its own
//! ([`NAMESPACE`], one table per transfer) before acknowledging it; the receive buffer keeps
//! only the batch markers, so arrival, retries and restarts work as for any transfer. A get
//! then hands over that table instead of copying it. Batches are written as they were
//! encoded (no decoding), each into the partition it was sent in: the pairs are stored under
//! their sequence, so a retried stream rewrites the same keys with the same values.

use crate::error::{Error, Result};
use eggroll_core::codec::Bytes;
use eggroll_core::sync::Mutex;
use eggroll_core::transfer::FATE_TYPES_OPTION;
use eggroll_proto::transfer::RollSiteHeader;
use eggroll_rollpair::{FateTypes, Options, RollPair, RollPairContext, SessionOptions};
use std::collections::HashMap;

/// Namespace of the tables received into the eggs.
pub const NAMESPACE: &str = "rollsite_inbox";

/// The roll-site's session on its cluster and the tables being received into it.
pub struct Inbox {
    address: String,
    party: String,
    ctx: Mutex<Option<RollPairContext>>,
    tables: Mutex<HashMap<String, RollPair<Bytes, Bytes>>>,
}

impl Inbox {
    /// An inbox on the cluster manager at `address`; the session starts on first use.
    pub fn new(address: &str, party: &str) -> Self {
        Self {
            address: address.to_string(),
            party: party.to_string(),
            ctx: Mutex::new(None),
            tables: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the session now, so the first table does not wait for it (eggs take seconds to
    /// start); a failure is logged and tried again on first use. Blocks.
    pub fn warm_up(&self) {
        match self.context() {
            Ok(c) => tracing::info!(cluster = %self.address, session = %c.session_id(),
                "received tables go into this cluster's eggs"),
            Err(e) => {
                tracing::warn!(error = %e, "no session on the cluster yet; retried when a table arrives")
            }
        }
    }

    /// The session, started on first use. Blocks: call it on a blocking thread.
    fn context(&self) -> Result<RollPairContext> {
        let mut ctx = self.ctx.lock();
        if let Some(c) = ctx.as_ref() {
            return Ok(c.clone());
        }
        let opts = SessionOptions {
            name: format!("rollsite-{}", self.party),
            ..Default::default()
        };
        let c = RollPairContext::connect(&self.address, opts).map_err(|e| {
            Error::Config(format!(
                "cannot start a session on the cluster manager at {} \
                 (rollsite.cluster_manager): {e}",
                self.address
            ))
        })?;
        *ctx = Some(c.clone());
        Ok(c)
    }

    /// Writes batches `(partition, body)` of the table transfer `name` (described by
    /// `header`) into its table in the eggs, made on the first batch.
    pub fn write(
        &self,
        name: &str,
        header: &RollSiteHeader,
        batches: &[(u32, bytes::Bytes)],
    ) -> Result<()> {
        let n = header.total_partitions.max(1) as u32;
        let table = {
            // Held while the table is loaded or made: streams of one transfer arrive at once.
            let mut tables = self.tables.lock();
            match tables.get(name) {
                Some(t) => t.clone(),
                None => {
                    let ctx = self.context()?;
                    // Load, else create; a create never overwrites (the cluster manager
                    // refuses a name it has), so if it fails the table may exist after all.
                    let t = match ctx.load::<Bytes, Bytes>(NAMESPACE, name) {
                        Ok(t) => t,
                        Err(_) => match create(&ctx, name, n, header) {
                            Ok(t) => t,
                            Err(e) => ctx.load(NAMESPACE, name).map_err(|_| e)?,
                        },
                    };
                    if t.partitions() != n {
                        return Err(Error::BadPacket(format!(
                            "{NAMESPACE}/{name} has {} partitions but the sender says {n}",
                            t.partitions()
                        )));
                    }
                    tables.insert(name.to_string(), t.clone());
                    t
                }
            }
        };
        let what = format!("table {NAMESPACE}/{name}");
        for (p, body) in batches {
            eggroll_federation::write_batch(&table, n, *p, body.clone(), &what)?;
        }
        Ok(())
    }

    /// Destroys the table `at` (`namespace/name`, as the transfer's header names it) of a
    /// transfer nobody took.
    pub fn destroy(&self, at: &str) -> Result<()> {
        let (namespace, name) = at.split_once('/').unwrap_or((NAMESPACE, at));
        let cached = self.tables.lock().remove(name);
        let table = match cached {
            Some(t) => t,
            None => self.context()?.load::<Bytes, Bytes>(namespace, name)?,
        };
        tracing::warn!(table = %at,
            "destroyed a received table that no get took (rollsite.buffer_expiry_hours)");
        table.destroy()?;
        Ok(())
    }

    /// Forgets the table of a transfer that was taken (it now belongs to the get's caller).
    pub fn forget(&self, name: &str) {
        let t = self.tables.lock().remove(name);
        drop(t);
    }
}

/// The table of a received transfer: a byte table with the sender's FATE codes when it sent
/// one (FATE's), a table of encoded pairs otherwise. Either is written as raw batches.
fn create(
    ctx: &RollPairContext,
    name: &str,
    n: u32,
    header: &RollSiteHeader,
) -> Result<RollPair<Bytes, Bytes>> {
    let opts = Options::persistent(NAMESPACE, name, n);
    match header.options.get(FATE_TYPES_OPTION) {
        Some(codes) => {
            let types = FateTypes::from_header(codes).map_err(Error::BadPacket)?;
            ctx.create_bytes(opts, types)?;
            // The same store, as the raw-batch writer takes it.
            Ok(ctx.load(NAMESPACE, name)?)
        }
        None => Ok(ctx.create(opts)?),
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // The session owns a tokio runtime, which may not be dropped on an async worker.
        let ctx = self.ctx.get_mut().take();
        let tables = std::mem::take(self.tables.get_mut());
        if ctx.is_some() || !tables.is_empty() {
            let _ = std::thread::spawn(move || drop((tables, ctx)));
        }
    }
}
