//! A blocking [`Federation`] for algorithm code, as mini-redis wraps its async client: it
//! runs each call on a tokio runtime of its own (or one it shares), so an algorithm never
//! names a runtime. The async [`Federation`] stays underneath for the gateway and the eggs.

use crate::client::Federation;
use crate::error::{Error, Result};
use crate::link::LocalRollsite;
use crate::options::FederationOptions;
use crate::party::Party;
use crate::received::Received;
use bytes::Bytes;
use eggroll_rollpair::{ByteTable, RollPair, RollPairContext};
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};

/// How long [`BlockingFederation::abort`] tries to reach the roll-site: an abort is a last
/// word, not worth a hang.
pub const ABORT_WAIT: Duration = Duration::from_secs(5);

/// The runtime the calls run on.
#[derive(Clone)]
enum Rt {
    /// Made for this federation (and its clones).
    Owned(Arc<Runtime>),
    /// Someone else's: the runtime an in-process roll-site runs on, say.
    Shared(Handle),
}

/// A federation context whose calls block: `remote` / `get` of objects and tables for
/// algorithm code running on an ordinary thread (never call it from inside a tokio runtime).
#[derive(Clone)]
pub struct BlockingFederation {
    inner: Federation,
    rt: Rt,
}

impl BlockingFederation {
    /// A context for `session` as `me` through the roll-site at `rollsite` (`host:port`), on
    /// a small runtime of its own.
    pub fn connect(
        rollsite: &str,
        session: &str,
        me: Party,
        opts: FederationOptions,
    ) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("federation")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the federation's runtime: {e}")))?;
        // The channel connects lazily on the runtime it was made in.
        let inner = {
            let _in = rt.enter();
            Federation::connect(rollsite, session, me, opts)?
        };
        Ok(Self {
            inner,
            rt: Rt::Owned(Arc::new(rt)),
        })
    }

    /// A context that calls the roll-site `site` running in this process, on `rt`, the
    /// runtime that site runs on.
    pub fn in_process<S: LocalRollsite>(
        site: &Arc<S>,
        rt: Handle,
        session: &str,
        me: Party,
        opts: FederationOptions,
    ) -> Result<Self> {
        // Its heartbeats run on `rt`.
        let inner = {
            let _in = rt.enter();
            Federation::in_process(site, session, me, opts)?
        };
        Ok(Self {
            inner,
            rt: Rt::Shared(rt),
        })
    }

    /// Blocks on `fut` on this federation's runtime.
    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        match &self.rt {
            Rt::Owned(rt) => rt.block_on(fut),
            Rt::Shared(h) => h.block_on(fut),
        }
    }

    /// The async federation underneath.
    pub fn as_async(&self) -> &Federation {
        &self.inner
    }

    /// The session id.
    pub fn session(&self) -> &str {
        self.inner.session()
    }

    /// Sends a serde value to `parties`; returns the bytes sent to each party.
    pub fn remote<T: Serialize + ?Sized>(
        &self,
        value: &T,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<u64> {
        self.block_on(self.inner.remote(value, name, tag, parties))
    }

    /// Sends bytes of any size to `parties`; returns the bytes sent to each party.
    pub fn remote_bytes(
        &self,
        data: impl Into<Bytes>,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<u64> {
        self.block_on(self.inner.remote_bytes(data, name, tag, parties))
    }

    /// Receives one serde value from each of `parties`, in their order.
    pub fn get<T: DeserializeOwned>(
        &self,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<Vec<T>> {
        self.block_on(self.inner.get(name, tag, parties))
    }

    /// Receives the bytes sent from each of `parties`, in their order.
    pub fn get_bytes(&self, name: &str, tag: &str, parties: &[Party]) -> Result<Vec<Bytes>> {
        self.block_on(self.inner.get_bytes(name, tag, parties))
    }

    /// Sends a table to `parties`; returns the bytes of table data sent to each party.
    pub fn remote_table<K, V>(
        &self,
        table: &RollPair<K, V>,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<u64>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        self.block_on(self.inner.remote_table(table, name, tag, parties))
    }

    /// Receives the table sent from each of `parties` into new tables of `ctx`.
    pub fn get_table<K, V>(
        &self,
        ctx: &RollPairContext,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<Vec<RollPair<K, V>>>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        self.block_on(self.inner.get_table(ctx, name, tag, parties))
    }

    /// Sends a byte table (FATE's) to `parties`; returns the bytes of table data sent to each.
    pub fn remote_byte_table(
        &self,
        table: &ByteTable,
        name: &str,
        tag: &str,
        parties: &[Party],
    ) -> Result<u64> {
        self.block_on(self.inner.remote_byte_table(table, name, tag, parties))
    }

    /// Receives what `from` sent under `name`/`tag`: bytes, or a byte table made in `ctx`.
    pub fn get_any(
        &self,
        ctx: &RollPairContext,
        name: &str,
        tag: &str,
        from: &Party,
    ) -> Result<Received> {
        self.block_on(self.inner.get_any(ctx, name, tag, from))
    }

    /// Tells `parties` that this party gave up on the session, and why (see
    /// [`Federation::abort`]); gives up after [`ABORT_WAIT`].
    pub fn abort(&self, reason: &str, parties: &[Party]) -> Result<()> {
        // The timer must be made on the runtime: inside the future, not before it.
        self.block_on(async {
            tokio::time::timeout(ABORT_WAIT, self.inner.abort(reason, parties))
                .await
                .map_err(|_| {
                    Error::Internal(format!(
                        "the abort did not reach the roll-site within {} s",
                        ABORT_WAIT.as_secs()
                    ))
                })?
        })
    }
}
