//! User functions that travel to the eggs, by name.
//!
//! Rust closures cannot cross a process boundary, so a user function is a type that implements
//! one of the traits below, with its captured parameters as serde fields. [`function`] on that
//! impl names the function and adds it to this process's registry at link time; a task names
//! the function and carries its encoded parameters, and the egg rebuilds it with [`lookup`].
//! Each trait is "erased" into one of three byte-level shapes ([`ErasedFn`]) that the executor
//! runs.
//!
//! A function in one declaration (the attribute reads the trait's types, here `V` and `Out`,
//! off the method's signature; an impl may still spell them out):
//!
//! ```
//! use eggroll_core::codec::{decode, encode};
//! use eggroll_core::functions::{lookup, ErasedFn, Function, MapValues};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Scale { factor: i64 }
//! #[eggroll_core::function]
//! impl MapValues for Scale {
//!     fn map_values(&self, v: i64) -> i64 { v * self.factor }
//! }
//!
//! // Named after its module and type, and registered: an egg finds it by that name.
//! assert!(Scale::NAME.ends_with("::Scale"));
//! let params = encode(&Scale { factor: 3 })?;
//! let Ok(ErasedFn::PerPair(f)) = lookup(Scale::NAME, "map_values", &params) else { panic!() };
//! let mut out = Vec::new();
//! f(&encode(&1u8)?, &encode(&14i64)?, &mut |_, v| Ok(out.push(v)))?;
//! assert_eq!(decode::<i64>(&out[0], &|| "a value".into())?, 42);
//!
//! // `name` fixes the name instead, e.g. for eggs that run another program.
//! #[derive(Serialize, Deserialize)]
//! struct Forget;
//! #[eggroll_core::function(name = "my_crate::Forget")]
//! impl MapValues for Forget {
//!     fn map_values(&self, _: String) {}
//! }
//! assert_eq!(Forget::NAME, "my_crate::Forget");
//! assert!(lookup(Forget::NAME, "map_values", &encode(&Forget)?).is_ok());
//! # Ok::<(), eggroll_core::CoreError>(())
//! ```
//!
//! The attribute refuses traits other than the function traits, and generic impls:
//!
//! ```compile_fail
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Scale;
//! #[eggroll_core::function]
//! impl Clone for Scale { fn clone(&self) -> Self { Scale } }
//! ```
//!
//! ```compile_fail
//! use eggroll_core::functions::MapValues;
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Keep<T>(std::marker::PhantomData<T>);
//! #[eggroll_core::function]
//! impl<T: Send + Sync + 'static> MapValues for Keep<T> {
//!     fn map_values(&self, v: i64) -> i64 { v }
//! }
//! ```

use crate::codec::{decode, encode, encode_seq_len};
use crate::error::{CoreError, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

#[doc(hidden)]
pub use inventory;

pub use eggroll_macros::function;

/// Receives the pairs a function emits, as encoded bytes.
pub type Emit<'a> = dyn FnMut(Vec<u8>, Vec<u8>) -> Result<()> + 'a;
/// The encoded pairs of one partition, in key order.
pub type PairIter<'a> = dyn PairSource + 'a;
/// Sees one borrowed pair of a [`PairSource`].
pub type VisitPair<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// The encoded pairs of one partition, in key order: an iterator of owned pairs that can
/// also lend the rest of them, borrowed, to a visitor that copies them on (into a batch, a
/// file): one allocation per pair saved where the store can lend.
pub trait PairSource: Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> {
    /// Calls `visit` on each pair not yet iterated, in key order.
    fn visit_rest(&mut self, visit: &mut VisitPair) -> Result<()> {
        visit_owned(self, visit)
    }
}

/// Calls `visit` on each owned pair of `pairs`: how a [`PairSource`] that cannot lend visits.
pub fn visit_owned<I>(pairs: &mut I, visit: &mut VisitPair) -> Result<()>
where
    I: Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + ?Sized,
{
    for pair in pairs {
        let (k, v) = pair?;
        visit(&k, &v)?;
    }
    Ok(())
}

/// A plain iterator of owned pairs as a [`PairSource`].
pub struct OwnedPairs<I>(pub I);

impl<I: Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>> Iterator for OwnedPairs<I> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl<I: Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>> PairSource for OwnedPairs<I> {}

type PerPairFn = dyn Fn(&[u8], &[u8], &mut Emit) -> Result<()> + Send + Sync;
type PerPartitionFn = dyn Fn(u32, &mut PairIter, &mut Emit) -> Result<()> + Send + Sync;
type BinaryFn = dyn Fn(&[u8], &[u8]) -> Result<Vec<u8>> + Send + Sync;
type PartitionPairFn =
    dyn Fn(u32, &mut PairIter, &mut PairIter, &mut Emit) -> Result<()> + Send + Sync;

/// A function as the executor runs it: on bytes, with its parameters already decoded.
pub enum ErasedFn {
    /// Called once per pair (map_values, map, flat_map, filter).
    PerPair(Box<PerPairFn>),
    /// Called once per partition with its index (map_partitions, glom, sample, ...).
    PerPartition(Box<PerPartitionFn>),
    /// Combines two encoded values into one (reduce, join, union, seq_op).
    Binary(Box<BinaryFn>),
    /// Called once per pair of co-partitioned partitions with their index, both in key
    /// order (FATE's binary_sorted_map_partitions_with_index).
    PartitionPair(Box<PartitionPairFn>),
}

/// Which trait a registered function implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FnKind {
    /// [`MapValues`].
    MapValues,
    /// [`Map`].
    Map,
    /// [`FlatMap`].
    FlatMap,
    /// [`Filter`].
    Filter,
    /// [`MapPartitions`].
    MapPartitions,
    /// [`CollapsePartitions`].
    CollapsePartitions,
    /// [`Reduce`].
    Reduce,
    /// [`Join`].
    Join,
    /// [`SeqOp`].
    SeqOp,
    /// A byte-level function built into eggroll-rs (glom, sample, ...).
    Builtin,
}

impl FnKind {
    /// The kind's name as it travels in a task.
    pub fn as_str(self) -> &'static str {
        match self {
            FnKind::MapValues => "map_values",
            FnKind::Map => "map",
            FnKind::FlatMap => "flat_map",
            FnKind::Filter => "filter",
            FnKind::MapPartitions => "map_partitions",
            FnKind::CollapsePartitions => "collapse_partitions",
            FnKind::Reduce => "reduce",
            FnKind::Join => "join",
            FnKind::SeqOp => "seq_op",
            FnKind::Builtin => "builtin",
        }
    }
}

/// One entry of the registry; made by [`function`].
pub struct Registration {
    /// The function's unique name.
    pub name: &'static str,
    /// The trait it implements.
    pub kind: FnKind,
    /// Rebuilds the function from its encoded parameters.
    pub build: fn(&[u8]) -> Result<ErasedFn>,
}

inventory::collect!(Registration);

fn registry() -> &'static HashMap<&'static str, Vec<&'static Registration>> {
    static REGISTRY: OnceLock<HashMap<&'static str, Vec<&'static Registration>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut map: HashMap<&'static str, Vec<&'static Registration>> = HashMap::new();
        for reg in inventory::iter::<Registration> {
            map.entry(reg.name).or_default().push(reg);
        }
        map
    })
}

/// Names of every function registered in this process, sorted.
pub fn registered_names() -> Vec<&'static str> {
    let mut names: Vec<_> = registry().keys().copied().collect();
    names.sort_unstable();
    names
}

/// Finds `name`, checks that it implements `kind`, and rebuilds it from `params`.
pub fn lookup(name: &str, kind: &str, params: &[u8]) -> Result<ErasedFn> {
    let regs = registry()
        .get(name)
        .ok_or_else(|| CoreError::UnknownFunction {
            name: name.to_string(),
            known: registry().len(),
        })?;
    if regs.len() > 1 {
        return Err(CoreError::InvalidArgument(format!(
            "function name `{name}` is registered {} times in this process; give each function a unique NAME",
            regs.len()
        )));
    }
    let reg = regs[0];
    if reg.kind.as_str() != kind {
        return Err(CoreError::WrongFunctionKind {
            name: name.to_string(),
            registered: reg.kind.as_str(),
            wanted: kind.to_string(),
        });
    }
    (reg.build)(params)
}

/// What every user function has: a unique name, serde parameters and one kind.
///
/// Implemented by [`function`] only, which also registers the function: a function trait's
/// impl without the attribute does not compile, so no unregistered function reaches a task.
///
/// ```compile_fail,E0277
/// use eggroll_core::functions::MapValues;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Scale { factor: i64 }
/// impl MapValues for Scale { // no #[function]: Scale is not a Function
///     type V = i64; type Out = i64;
///     fn map_values(&self, v: i64) -> i64 { v * self.factor }
/// }
/// ```
///
/// Nor does a hand-written impl of `Function` (it lacks the item that the attribute supplies):
///
/// ```compile_fail,E0046
/// use eggroll_core::functions::{Function, MapValues};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Scale { factor: i64 }
/// impl Function for Scale { const NAME: &'static str = "my_crate::Scale"; }
/// impl MapValues for Scale {
///     type V = i64; type Out = i64;
///     fn map_values(&self, v: i64) -> i64 { v * self.factor }
/// }
/// ```
///
/// A function has exactly the kind it was registered with, so using it as another kind is a
/// compile error, whether it is passed where another trait is wanted ...
///
/// ```compile_fail,E0277
/// use eggroll_core::functions::{builtin::SumI64, MapValues};
///
/// fn map_values<F: MapValues>(_: &F) {} // the bound of RollPair::map_values
/// map_values(&SumI64); // a Reduce
/// ```
///
/// ... or given a second trait by hand:
///
/// ```compile_fail,E0271
/// use eggroll_core::functions::{MapValues, Reduce};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Max;
/// #[eggroll_core::function]
/// impl Reduce for Max {
///     fn reduce(&self, a: i64, b: i64) -> i64 { a.max(b) }
/// }
/// impl MapValues for Max { // registered as a Reduce, so not a MapValues
///     type V = i64; type Out = i64;
///     fn map_values(&self, v: i64) -> i64 { v }
/// }
/// ```
pub trait Function: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Unique name under which the function is registered, e.g. `"my_crate::AddOne"`.
    const NAME: &'static str;
    /// The trait it implements; supplied by [`function`] with the registration, which is
    /// what makes a hand-written impl of `Function` incomplete.
    #[doc(hidden)]
    type Kind: erase::Kind;
}

/// Maps each value, keeping its key (and so its partition).
pub trait MapValues: Function<Kind = erase::MapValues> {
    /// Input value type.
    type V: DeserializeOwned;
    /// Output value type.
    type Out: Serialize;
    /// Maps one value.
    fn map_values(&self, value: Self::V) -> Self::Out;
}

/// Maps each pair to a new pair; the output is re-partitioned by the new key.
pub trait Map: Function<Kind = erase::Map> {
    /// Input key type.
    type K: DeserializeOwned;
    /// Input value type.
    type V: DeserializeOwned;
    /// Output key type.
    type K2: Serialize;
    /// Output value type.
    type V2: Serialize;
    /// Maps one pair.
    fn map(&self, key: Self::K, value: Self::V) -> (Self::K2, Self::V2);
}

/// Maps each pair to any number of pairs; the output is re-partitioned by key.
pub trait FlatMap: Function<Kind = erase::FlatMap> {
    /// Input key type.
    type K: DeserializeOwned;
    /// Input value type.
    type V: DeserializeOwned;
    /// Output key type.
    type K2: Serialize;
    /// Output value type.
    type V2: Serialize;
    /// Maps one pair.
    fn flat_map(&self, key: Self::K, value: Self::V) -> Vec<(Self::K2, Self::V2)>;
}

/// Keeps the pairs for which it returns true.
pub trait Filter: Function<Kind = erase::Filter> {
    /// Key type.
    type K: DeserializeOwned;
    /// Value type.
    type V: DeserializeOwned;
    /// Whether to keep a pair.
    fn filter(&self, key: &Self::K, value: &Self::V) -> bool;
}

/// Maps a whole partition (with its index) to pairs; the output is re-partitioned by key.
pub trait MapPartitions: Function<Kind = erase::MapPartitions> {
    /// Input key type.
    type K: DeserializeOwned;
    /// Input value type.
    type V: DeserializeOwned;
    /// Output key type.
    type K2: Serialize;
    /// Output value type.
    type V2: Serialize;
    /// Maps one partition; `emit` takes each output pair.
    fn map_partitions(
        &self,
        partition: u32,
        items: &mut dyn Iterator<Item = (Self::K, Self::V)>,
        emit: &mut dyn FnMut(Self::K2, Self::V2),
    );
}

/// Folds a whole partition into one value, stored under the partition's last key.
pub trait CollapsePartitions: Function<Kind = erase::CollapsePartitions> {
    /// Key type.
    type K: DeserializeOwned + Serialize;
    /// Input value type.
    type V: DeserializeOwned;
    /// Output value type.
    type Out: Serialize;
    /// Folds one non-empty partition.
    fn collapse(&self, items: &mut dyn Iterator<Item = (Self::K, Self::V)>) -> Self::Out;
}

/// An associative (and, across partitions, commutative) combination of two values.
pub trait Reduce: Function<Kind = erase::Reduce> {
    /// Value type.
    type V: DeserializeOwned + Serialize;
    /// Combines two values.
    fn reduce(&self, a: Self::V, b: Self::V) -> Self::V;
}

/// Merges the values of equal keys of two tables.
pub trait Join: Function<Kind = erase::Join> {
    /// Left value type.
    type V: DeserializeOwned;
    /// Right value type.
    type W: DeserializeOwned;
    /// Output value type.
    type Out: Serialize;
    /// Merges one pair of values.
    fn join(&self, left: Self::V, right: Self::W) -> Self::Out;
}

/// Folds a value into an accumulator (the `seq_op` of `aggregate`).
pub trait SeqOp: Function<Kind = erase::SeqOp> {
    /// Accumulator type.
    type Acc: DeserializeOwned + Serialize;
    /// Value type.
    type V: DeserializeOwned;
    /// Folds one value in.
    fn seq_op(&self, acc: Self::Acc, value: Self::V) -> Self::Acc;
}

/// Adapters from each trait to its byte-level shape, one type per trait; used by [`function`].
#[doc(hidden)]
pub mod erase {
    use super::*;

    /// What an adapter type stands for: the kind that travels in a task.
    pub trait Kind {
        /// The kind.
        const KIND: FnKind;
    }

    fn params<F: Function>(bytes: &[u8]) -> Result<F> {
        decode(bytes, &|| format!("parameters of function `{}`", F::NAME))
    }

    fn key<K: DeserializeOwned>(bytes: &[u8]) -> Result<K> {
        decode(bytes, &|| "a key".to_string())
    }

    fn value<V: DeserializeOwned>(bytes: &[u8]) -> Result<V> {
        decode(bytes, &|| "a value".to_string())
    }

    /// Decodes pairs as a plain iterator for user code; the first error stops it and is kept.
    struct Decoded<'a, 'b, K, V> {
        inner: &'a mut PairIter<'b>,
        error: Option<CoreError>,
        last_key: Option<Vec<u8>>,
        _types: std::marker::PhantomData<(K, V)>,
    }

    impl<K: DeserializeOwned, V: DeserializeOwned> Iterator for Decoded<'_, '_, K, V> {
        type Item = (K, V);
        fn next(&mut self) -> Option<(K, V)> {
            if self.error.is_some() {
                return None;
            }
            let step = self.inner.next()?.and_then(|(k, v)| {
                let pair = (key(&k)?, value(&v)?);
                self.last_key = Some(k);
                Ok(pair)
            });
            match step {
                Ok(pair) => Some(pair),
                Err(e) => {
                    self.error = Some(e);
                    None
                }
            }
        }
    }

    fn decoded<'a, 'b, K, V>(inner: &'a mut PairIter<'b>) -> Decoded<'a, 'b, K, V> {
        Decoded {
            inner,
            error: None,
            last_key: None,
            _types: std::marker::PhantomData,
        }
    }

    /// Declares the adapter types, one per trait, each with its [`Kind`].
    macro_rules! adapters {
        ($($name:ident),*) => {$(
            #[doc = concat!("[`", stringify!($name), "`](super::", stringify!($name), ") adapter.")]
            pub struct $name;
            impl Kind for $name {
                const KIND: FnKind = FnKind::$name;
            }
        )*};
    }
    #[rustfmt::skip]
    adapters!(MapValues, Map, FlatMap, Filter, MapPartitions, CollapsePartitions, Reduce, Join, SeqOp);

    impl MapValues {
        /// Rebuilds the function.
        pub fn build<F: super::MapValues>(bytes: &[u8]) -> Result<ErasedFn> {
            let f: F = params(bytes)?;
            Ok(ErasedFn::PerPair(Box::new(move |k, v, emit| {
                emit(k.to_vec(), encode(&f.map_values(value(v)?))?)
            })))
        }
    }

    impl Map {
        /// Rebuilds the function.
        pub fn build<F: super::Map>(bytes: &[u8]) -> Result<ErasedFn> {
            let f: F = params(bytes)?;
            Ok(ErasedFn::PerPair(Box::new(move |k, v, emit| {
                let (k2, v2) = f.map(key(k)?, value(v)?);
                emit(encode(&k2)?, encode(&v2)?)
            })))
        }
    }

    impl FlatMap {
        /// Rebuilds the function.
        pub fn build<F: super::FlatMap>(bytes: &[u8]) -> Result<ErasedFn> {
            let f: F = params(bytes)?;
            Ok(ErasedFn::PerPair(Box::new(move |k, v, emit| {
                for (k2, v2) in f.flat_map(key(k)?, value(v)?) {
                    emit(encode(&k2)?, encode(&v2)?)?;
                }
                Ok(())
            })))
        }
    }

    impl Filter {
        /// Rebuilds the function.
        pub fn build<F: super::Filter>(bytes: &[u8]) -> Result<ErasedFn> {
            let f: F = params(bytes)?;
            Ok(ErasedFn::PerPair(Box::new(move |k, v, emit| {
                if f.filter(&key(k)?, &value(v)?) {
                    emit(k.to_vec(), v.to_vec())?;
                }
                Ok(())
            })))
        }
    }

    impl MapPartitions {
        /// Rebuilds the function.
        pub fn build<F: super::MapPartitions>(bytes: &[u8]) -> Result<ErasedFn> {
            let f: F = params(bytes)?;
            Ok(ErasedFn::PerPartition(Box::new(
                move |partition, input, emit| {
                    let mut items = decoded::<F::K, F::V>(input);
                    let mut failed: Option<CoreError> = None;
                    f.map_partitions(partition, &mut items, &mut |k2, v2| {
                        if failed.is_none() {
                            let r = encode(&k2).and_then(|k| Ok((k, encode(&v2)?)));
                            if let Err(e) = r.and_then(|(k, v)| emit(k, v)) {
                                failed = Some(e);
                            }
                        }
                    });
                    match items.error.or(failed) {
                        Some(e) => Err(e),
                        None => Ok(()),
                    }
                },
            )))
        }
    }

    impl CollapsePartitions {
        /// Rebuilds the function.
        pub fn build<F: super::CollapsePartitions>(bytes: &[u8]) -> Result<ErasedFn> {
            let f: F = params(bytes)?;
            Ok(ErasedFn::PerPartition(Box::new(move |_, input, emit| {
                let Some(first) = input.next() else {
                    return Ok(());
                };
                let mut raw = OwnedPairs(std::iter::once(first).chain(&mut *input));
                let mut items = decoded::<F::K, F::V>(&mut raw);
                let out = f.collapse(&mut items);
                // Drain what the function did not read, so the key is the partition's last.
                for _ in items.by_ref() {}
                if let Some(e) = items.error.take() {
                    return Err(e);
                }
                emit(items.last_key.take().unwrap_or_default(), encode(&out)?)
            })))
        }
    }

    impl Reduce {
        /// Rebuilds the function.
        pub fn build<F: super::Reduce>(bytes: &[u8]) -> Result<ErasedFn> {
            let f: F = params(bytes)?;
            Ok(ErasedFn::Binary(Box::new(move |a, b| {
                encode(&f.reduce(value(a)?, value(b)?))
            })))
        }
    }

    impl Join {
        /// Rebuilds the function.
        pub fn build<F: super::Join>(bytes: &[u8]) -> Result<ErasedFn> {
            let f: F = params(bytes)?;
            Ok(ErasedFn::Binary(Box::new(move |a, b| {
                encode(&f.join(value(a)?, value(b)?))
            })))
        }
    }

    impl SeqOp {
        /// Rebuilds the function.
        pub fn build<F: super::SeqOp>(bytes: &[u8]) -> Result<ErasedFn> {
            let f: F = params(bytes)?;
            Ok(ErasedFn::Binary(Box::new(move |acc, v| {
                encode(&f.seq_op(value(acc)?, value(v)?))
            })))
        }
    }
}

/// Byte-level functions built into eggroll-rs, generic over every key and value type.
pub mod builtin {
    use super::*;
    use serde::Deserialize;

    /// Name of the built-in that turns a partition into one list of its pairs.
    pub const GLOM: &str = "eggroll::glom";
    /// Name of the built-in that keeps a random fraction of pairs.
    pub const SAMPLE: &str = "eggroll::sample";
    /// Name of the built-in that replaces every value with `1u64` (count-like helper).
    pub const ONES: &str = "eggroll::ones";

    /// Parameters of [`SAMPLE`].
    #[derive(Clone, Copy, Debug, Serialize, Deserialize)]
    pub struct SampleParams {
        /// Probability of keeping each pair, in [0, 1].
        pub fraction: f64,
        /// Seed; the same seed gives the same sample.
        pub seed: u64,
    }

    /// A partition as one pair: its last key and the list of its pairs, encoded exactly as
    /// the codec encodes `Vec<(K, V)>` (a length, then each key and value).
    fn glom(_: &[u8]) -> Result<ErasedFn> {
        Ok(ErasedFn::PerPartition(Box::new(|_, input, emit| {
            let mut body = Vec::new();
            let mut count = 0usize;
            let mut last = None;
            for pair in input {
                let (k, v) = pair?;
                body.extend_from_slice(&k);
                body.extend_from_slice(&v);
                count += 1;
                last = Some(k);
            }
            let Some(last) = last else { return Ok(()) };
            let mut value = Vec::with_capacity(body.len() + 10);
            encode_seq_len(count, &mut value);
            value.extend_from_slice(&body);
            emit(last, value)
        })))
    }

    fn sample(bytes: &[u8]) -> Result<ErasedFn> {
        let p: SampleParams = decode(bytes, &|| "parameters of sample".into())?;
        if !(0.0..=1.0).contains(&p.fraction) {
            return Err(CoreError::InvalidArgument(format!(
                "sample fraction {} is outside [0, 1]",
                p.fraction
            )));
        }
        Ok(ErasedFn::PerPartition(Box::new(
            move |partition, input, emit| {
                let mut state = p.seed ^ (u64::from(partition) << 32) ^ 0x9e37_79b9_7f4a_7c15;
                for pair in input {
                    let (k, v) = pair?;
                    let draw = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
                    if draw < p.fraction {
                        emit(k, v)?;
                    }
                }
                Ok(())
            },
        )))
    }

    fn ones(_: &[u8]) -> Result<ErasedFn> {
        let one = encode(&1u64)?;
        Ok(ErasedFn::PerPair(Box::new(move |k, _, emit| {
            emit(k.to_vec(), one.clone())
        })))
    }

    /// A small, well-mixed generator; enough for sampling, not for cryptography.
    fn splitmix64(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    inventory::submit! { Registration { name: GLOM, kind: FnKind::Builtin, build: glom } }
    inventory::submit! { Registration { name: SAMPLE, kind: FnKind::Builtin, build: sample } }
    inventory::submit! { Registration { name: ONES, kind: FnKind::MapValues, build: ones } }

    macro_rules! sum_of {
        ($name:ident, $t:ty, $doc:literal) => {
            #[doc = $doc]
            #[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
            pub struct $name;
            #[crate::function(name = concat!("eggroll::", stringify!($name)))]
            impl Reduce for $name {
                type V = $t;
                fn reduce(&self, a: $t, b: $t) -> $t {
                    a + b
                }
            }
        };
    }

    sum_of!(
        SumI64,
        i64,
        "Sums `i64` values (wrapping is a bug: overflow panics in debug)."
    );
    sum_of!(SumU64, u64, "Sums `u64` values.");
    sum_of!(SumF64, f64, "Sums `f64` values.");
}

#[cfg(test)]
mod tests {
    use super::builtin::*;
    use super::*;

    #[test]
    fn lookup_finds_builtins_and_names_faults() {
        assert!(registered_names().contains(&"eggroll::SumU64"));
        let ErasedFn::Binary(sum) =
            lookup("eggroll::SumU64", "reduce", &encode(&SumU64).unwrap()).unwrap()
        else {
            panic!("sum is binary")
        };
        let out = sum(&encode(&2u64).unwrap(), &encode(&40u64).unwrap()).unwrap();
        assert_eq!(decode::<u64>(&out, &|| "sum".into()).unwrap(), 42);

        let err = lookup("no::such", "map_values", &[])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no::such"), "{err}");
        let err = lookup("eggroll::SumU64", "map_values", &[])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("reduce") && err.contains("map_values"),
            "{err}"
        );
        let err = lookup(
            SAMPLE,
            "builtin",
            &encode(&SampleParams {
                fraction: 2.0,
                seed: 1,
            })
            .unwrap(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("fraction"), "{err}");
    }

    #[test]
    fn glom_encodes_like_a_vec_of_pairs() {
        let ErasedFn::PerPartition(f) = lookup(GLOM, "builtin", &[]).unwrap() else {
            panic!("glom is per partition")
        };
        let pairs: Vec<(String, u32)> = vec![("a".into(), 1), ("b".into(), 2)];
        let mut input = OwnedPairs(
            pairs
                .iter()
                .map(|(k, v)| Ok((encode(k).unwrap(), encode(v).unwrap()))),
        );
        let mut out = Vec::new();
        f(0, &mut input, &mut |k, v| {
            out.push((k, v));
            Ok(())
        })
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(decode::<String>(&out[0].0, &|| "k".into()).unwrap(), "b");
        let list: Vec<(String, u32)> = decode(&out[0].1, &|| "v".into()).unwrap();
        assert_eq!(list, pairs);
    }
}
