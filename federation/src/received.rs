//! `get_any`: whatever a party sent under a name and tag, bytes or a byte table, as EggRoll's
//! `RollSite.pull` answers FATE: the sender's header says which.

use crate::client::Federation;
use crate::error::{Error, Result};
use crate::link::Link;
use crate::party::Party;
use bytes::Bytes;
use eggroll_core::transfer::{TransferKey, OBJECT, TABLE};
use eggroll_rollpair::{ByteTable, RollPairContext};
use std::time::Instant;

/// What a party sent: an object's bytes, or a byte table (received into the caller's session).
pub enum Received {
    /// Bytes sent with `remote_bytes`.
    Object(Bytes),
    /// A byte table sent with `remote_byte_table`.
    Table(ByteTable),
}

impl Federation {
    /// Receives what `from` sent under `name`/`tag`: bytes, or a byte table written into a new
    /// table of `ctx` in the federation session's namespace. A transfer cut off by the
    /// roll-site going away is read again from the start (the roll-site keeps it).
    pub async fn get_any(
        &self,
        ctx: &RollPairContext,
        name: &str,
        tag: &str,
        from: &Party,
    ) -> Result<Received> {
        let key = self.key(name, tag, from, &self.inner.me);
        self.reread(|| self.get_any_once(ctx, &key)).await
    }

    async fn get_any_once(&self, ctx: &RollPairContext, key: &TransferKey) -> Result<Received> {
        let started = Instant::now();
        if let Link::InProcess(w) = &self.inner.link {
            // An in-process roll-site hands an object over mapped: ask what it is first.
            let site = Link::local(w).map_err(|s| Error::hop(self.local_hop(), s))?;
            let h = site
                .clone()
                .header(key, self.inner.opts.get_idle_timeout)
                .await
                .map_err(|s| Error::hop(self.local_hop(), s))?;
            if h.data_type == OBJECT {
                let data = self.read_object_in_process(site, key).await?;
                return self
                    .took_object(key, data, started)
                    .await
                    .map(Received::Object);
            }
        }
        let (first, h, stream) = self.first_packet(key).await?;
        match h.data_type.as_str() {
            OBJECT => {
                let data = self.assemble_object(key, Some(first), stream).await?;
                self.took_object(key, data, started)
                    .await
                    .map(Received::Object)
            }
            TABLE => self
                .receive_byte_table(ctx, key, &h, first, stream, started)
                .await
                .map(Received::Table),
            other => Err(Error::BadPacket(format!(
                "{} was sent as {other:?}, neither an object nor a table",
                key.rs_key()
            ))),
        }
    }
}
