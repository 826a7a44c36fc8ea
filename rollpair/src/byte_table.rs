//! Byte tables: keys and values are the caller's own bytes, stored as they are (no codec of
//! ours around them), placed by the table's partitioner over the key bytes and tagged with
//! FATE's serdes and partitioner codes. FATE's client serializes for itself; it reads the
//! codes back from the table, and its sorted merges rely on each partition being in the byte
//! order of its keys, which is the order of our stores.

use crate::context::RollPairContext;
use crate::error::{Error, Result};
use crate::options::{FateTypes, Options, StoreTags};
use crate::table::{Head, RollPair};
use eggroll_core::partitioner::Partitioner;
use eggroll_core::CoreError;
use eggroll_proto::meta::{
    Functor, MapReducePartitions, MergeKind, Sequence, StoreLocator, StoreType,
};

/// The `serdes` a byte table's metadata records.
pub const BYTES_SERDES: &str = "bytes";

/// The key and value type of a byte table's inner `RollPair`: it has no values, so none of
/// the typed operations (which decode) applies to a byte table.
pub enum Raw {}

/// A table of the caller's own bytes.
#[derive(Clone)]
pub struct ByteTable {
    inner: RollPair<Raw, Raw>,
}

/// One pair of a byte table.
pub type BytePair = (Vec<u8>, Vec<u8>);

/// How a byte table's store is tagged.
fn bytes_tags(fate: FateTypes) -> StoreTags {
    StoreTags {
        serdes: BYTES_SERDES,
        key_type: "bytes",
        value_type: "bytes",
        fate,
    }
}

impl RollPairContext {
    /// A new empty byte table of `opts` (its partitioner is the one `types` names).
    pub fn create_bytes(&self, opts: Options, types: FateTypes) -> Result<ByteTable> {
        let opts = opts.with_partitioner(Partitioner::from_fate_type(types.partitioner_type)?);
        let l = self.new_store(&opts, None, &bytes_tags(types))?;
        Ok(ByteTable {
            inner: RollPair::from_locator(self.clone(), l),
        })
    }

    /// A new byte table of `opts` holding `data` (a later duplicate key wins).
    pub fn parallelize_bytes(
        &self,
        data: impl IntoIterator<Item = BytePair>,
        opts: Options,
        types: FateTypes,
    ) -> Result<ByteTable> {
        let t = self.create_bytes(opts, types)?;
        t.put_all(data)?;
        Ok(t)
    }

    /// An existing persistent byte table; a table written by the typed API is refused.
    pub fn load_bytes(&self, namespace: &str, name: &str) -> Result<ByteTable> {
        let t: RollPair<Raw, Raw> = self.load(namespace, name)?;
        ByteTable::check(t.locator())?;
        Ok(ByteTable { inner: t })
    }
}

/// The bytes of the tag before each key that an ordered fold's function gets (see
/// [`ByteTable::map_reduce_folding`]): the source partition and the emission index.
pub const SEQUENCE_TAG_BYTES: usize = eggroll_eggpair::executor::TAG_LEN;

/// A partition's first chunk from the Take job of [`ByteTable::first_chunks`] holds up to
/// this many bytes of pairs: a small partition whole; a larger one's rest is scanned.
pub const WHOLE_BYTES: u64 = 1 << 20;

impl ByteTable {
    /// Refuses a store that does not hold raw bytes.
    fn check(l: &StoreLocator) -> Result<()> {
        if l.serdes == BYTES_SERDES {
            return Ok(());
        }
        Err(Error::from(CoreError::InvalidArgument(format!(
            "table {}/{} holds `{}` -> `{}` pairs encoded by eggroll-rs's typed API ({}), not \
             raw bytes: load it with RollPairContext::load and its types",
            l.namespace, l.name, l.key_type, l.value_type, l.serdes
        ))))
    }

    /// Where the table lives and how it is partitioned.
    pub fn locator(&self) -> &StoreLocator {
        self.inner.locator()
    }

    /// FATE's type codes it was made with.
    pub fn types(&self) -> FateTypes {
        let l = self.locator();
        FateTypes {
            key_serdes_type: l.key_serdes_type,
            value_serdes_type: l.value_serdes_type,
            partitioner_type: l.partitioner_type,
        }
    }

    /// Its partition count.
    pub fn partitions(&self) -> u32 {
        self.inner.partitions()
    }

    /// Its namespace.
    pub fn namespace(&self) -> &str {
        self.inner.namespace()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The session it belongs to.
    pub fn context(&self) -> &RollPairContext {
        self.inner.context()
    }

    /// The untyped table underneath, for what moves encoded pairs as they are (a transfer
    /// to another party scans and writes them without decoding).
    pub fn raw(&self) -> &RollPair<Raw, Raw> {
        &self.inner
    }

    /// Writes pairs in batches, each into the partition of its key; returns how many.
    pub fn put_all(&self, data: impl IntoIterator<Item = BytePair>) -> Result<u64> {
        self.inner.put_all_encoded(data)
    }

    /// Every pair, partition by partition, each partition in the byte order of its keys.
    pub fn get_all(&self) -> Result<impl Iterator<Item = Result<BytePair>> + use<>> {
        self.inner
            .stream_pairs(|k, v, _| Ok((k.to_vec(), v.to_vec())))
    }

    /// The pairs of partition `p`, in key byte order.
    pub fn partition(&self, p: u32) -> Result<Vec<BytePair>> {
        let mut out = Vec::new();
        self.inner.scan_encoded(p, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Partition `p`'s pairs in key byte order, those after the key `after` when given,
    /// handed to `send` packed in chunks of about `chunk_bytes` (whole pairs each, none
    /// empty) as the scan reads them; stops early when `send` answers false.
    pub fn scan_packed(
        &self,
        p: u32,
        after: Option<&[u8]>,
        chunk_bytes: usize,
        send: &mut dyn FnMut(Vec<u8>) -> bool,
    ) -> Result<()> {
        // Keys compare as bytes, so the first key past `after` is `after` and a zero byte.
        let start = after.map_or_else(Vec::new, |k| [k, &[0]].concat());
        let capacity = chunk_bytes.min(1 << 20);
        let mut chunk = Vec::with_capacity(capacity);
        let mut open = true;
        self.inner.scan_encoded_from(p, &start, &mut |k, v| {
            eggroll_core::pairs::push(&mut chunk, k, v);
            if chunk.len() >= chunk_bytes {
                open = send(std::mem::replace(&mut chunk, Vec::with_capacity(capacity)));
            }
            Ok(open)
        })?;
        if open && !chunk.is_empty() {
            send(chunk);
        }
        Ok(())
    }

    /// Every partition's first pairs, up to [`WHOLE_BYTES`] of them, by one Take job: a
    /// small partition whole, a larger one's rest read by [`Self::scan_packed`] after its
    /// head's last key. Indexed by partition.
    pub fn first_chunks(&self) -> Result<Vec<Head>> {
        self.inner.heads_packed(u64::MAX, WHOLE_BYTES)
    }

    /// The first `n` pairs of partition `p`, in key byte order.
    pub fn head(&self, p: u32, n: usize) -> Result<Vec<BytePair>> {
        let mut out = Vec::new();
        if n == 0 {
            return Ok(out);
        }
        self.inner.scan_encoded(p, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(out.len() < n)
        })?;
        Ok(out)
    }

    /// The first `n` pairs of every partition, each in key byte order and packed
    /// (`eggroll_core::pairs`), read in one job; indexed by partition.
    pub fn heads_packed(&self, n: u64) -> Result<Vec<Vec<u8>>> {
        let heads = self.inner.heads_packed(n, 0)?;
        Ok(heads.into_iter().map(|h| h.packed).collect())
    }

    /// The output of `mapper` on every partition, sent back by the eggs instead of stored;
    /// indexed by partition.
    pub fn map_to_caller(&self, mapper: Functor) -> Result<Vec<Vec<BytePair>>> {
        self.inner.map_to_caller_encoded(mapper)
    }

    /// Writes pairs into partition `p` as they are: the caller vouches that their keys
    /// belong there (a map that keeps keys, as FATE's unshuffled ones do); returns how many.
    pub fn put_partition(&self, p: u32, pairs: Vec<BytePair>) -> Result<u64> {
        self.inner
            .put_encoded(p, pairs.iter().map(|(k, v)| (&k[..], &v[..])))
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get_encoded(key)
    }

    /// Sets the value of `key`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.put_one_encoded(key, value)
    }

    /// Removes `key`; true if it was there.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.inner.delete_encoded(key)
    }

    /// How many pairs it holds.
    pub fn count(&self) -> Result<u64> {
        self.inner.count()
    }

    /// The first `n` pairs, in partition order then key order.
    pub fn take(&self, n: u64) -> Result<Vec<BytePair>> {
        self.inner.take_encoded(n)
    }

    /// A copy as `opts` (FATE's `copy_as`; an unspecified store type is persistent), with the
    /// same FATE codes; keys move when the partition count differs.
    pub fn copy_as(&self, opts: Options) -> Result<ByteTable> {
        let types = self.types();
        let opts = Options {
            store_type: match opts.store_type {
                StoreType::Unspecified => StoreType::PERSISTENT,
                t => t,
            },
            ..opts
        }
        .with_partitioner(Partitioner::from_fate_type(types.partitioner_type)?);
        let out = self
            .context()
            .new_store(&opts, Some(self.locator()), &bytes_tags(types))?;
        Ok(ByteTable {
            inner: self.inner.copy_into(out)?,
        })
    }

    /// A new empty byte table of `opts` and `types`, its partitions placed as this table's
    /// are (for outputs that keep keys where they are).
    pub fn create_like(&self, opts: Options, types: FateTypes) -> Result<ByteTable> {
        let opts = opts.with_partitioner(Partitioner::from_fate_type(types.partitioner_type)?);
        let l = self
            .context()
            .new_store(&opts, Some(self.locator()), &bytes_tags(types))?;
        Ok(ByteTable {
            inner: RollPair::from_locator(self.context().clone(), l),
        })
    }

    /// Runs the caller's `mapper` over every partition in the eggs, into the new table
    /// `out`: with `shuffle`, each pair goes to its key's partition of `out` and values of
    /// one key are folded by `combiner` (absent: a later write of a key wins); without, a
    /// partition's output stays in it. Functors of another language (FATE's Python ones)
    /// name functions the eggs register.
    pub fn map_reduce(
        &self,
        mapper: Functor,
        shuffle: bool,
        combiner: Option<Functor>,
        out: &ByteTable,
    ) -> Result<()> {
        if !shuffle && out.partitions() != self.partitions() {
            return Err(Error::from(CoreError::InvalidArgument(format!(
                "a map without a shuffle keeps {} partitions, not {}",
                self.partitions(),
                out.partitions()
            ))));
        }
        if let (true, Some(combiner)) = (shuffle, &combiner) {
            let fold = MapReducePartitions {
                combiner: Some(combiner.clone()),
                sequence: Sequence::Strip as i32,
                ..Default::default()
            };
            return self.map_reduce_in_order(mapper, fold, out);
        }
        let op = MapReducePartitions {
            mapper: Some(mapper),
            shuffle,
            combiner,
            ..Default::default()
        };
        self.inner
            .map_reduce_functors::<Raw, Raw>(op, out.locator().clone())?;
        Ok(())
    }

    /// A shuffle whose values of a key are folded in the order FATE's standalone engine
    /// folds them (source partition, then the order the mapper gave them), whatever order
    /// the eggs deliver them in: FATE's reducers add floats, where another order gives other
    /// bits, and SecureBoost's splits then differ. The shuffle writes tagged keys into a
    /// staging table placed like `out`; a second job, `fold`, folds each partition in key
    /// order.
    fn map_reduce_in_order(
        &self,
        mapper: Functor,
        fold: MapReducePartitions,
        out: &ByteTable,
    ) -> Result<()> {
        let staged = out.create_like(Options::partitions(out.partitions()), out.types())?;
        let shuffled = self.inner.map_reduce_functors::<Raw, Raw>(
            MapReducePartitions {
                mapper: Some(mapper),
                shuffle: true,
                sequence: Sequence::Add as i32,
                ..Default::default()
            },
            staged.locator().clone(),
        );
        let folded = shuffled.and_then(|_| {
            staged
                .inner
                .map_reduce_functors::<Raw, Raw>(fold, out.locator().clone())
        });
        let dropped = staged.destroy();
        folded?;
        dropped
    }

    /// The shuffle with a fold of [`ByteTable::map_reduce`], the fold done by `fold`: a
    /// function of a whole partition, which gets the partition's pairs in fold order, each
    /// key behind a tag of [`SEQUENCE_TAG_BYTES`] bytes, and gives each key once with its
    /// values folded. For a combiner too costly to call pair by pair from Rust, as a Python
    /// one is (a call takes Python's lock).
    pub fn map_reduce_folding(
        &self,
        mapper: Functor,
        fold: Functor,
        out: &ByteTable,
    ) -> Result<()> {
        let fold = MapReducePartitions {
            mapper: Some(fold),
            ..Default::default()
        };
        self.map_reduce_in_order(mapper, fold, out)
    }

    /// Calls the caller's two-partition function on each pair of partitions of this table and
    /// `other` (moved to this table's partitioning first when it differs), writing into `out`
    /// (made with [`ByteTable::create_like`]).
    pub fn merge_partitions(&self, other: &ByteTable, f: Functor, out: &ByteTable) -> Result<()> {
        let right = self.inner.co_partitioned(&other.inner)?;
        self.inner.merge_functor::<Raw, Raw>(
            &right,
            MergeKind::Partitions,
            Some(f),
            out.locator().clone(),
        )?;
        Ok(())
    }

    /// Removes the table and its data.
    pub fn destroy(self) -> Result<()> {
        self.inner.destroy()
    }
}
