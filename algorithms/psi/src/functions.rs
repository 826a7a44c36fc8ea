//! The PSI's functions, registered by name so a party's eggs can run them. Each is one step
//! of the protocol over one partition; none sees the other party's ids.

use crate::crypto::{Point, Secret};
use eggroll_core::function;
use eggroll_core::functions::{FlatMap, Join, Map, MapValues};
use serde::{Deserialize, Serialize};

/// `id → (H(id)·s, id)`: the party's own ids, keyed by their blinded points.
#[derive(Serialize, Deserialize)]
pub struct HashBlind {
    /// The party's secret.
    pub secret: Secret,
}
#[function(name = "psi::HashBlind")]
impl Map for HashBlind {
    fn map(&self, id: String, _: ()) -> (Point, String) {
        (self.secret.hash_and_blind(id.as_bytes()), id)
    }
}

/// Drops the ids, keeping only the blinded points: what may be sent to the other party.
#[derive(Serialize, Deserialize)]
pub struct Forget;
#[function(name = "psi::Forget")]
impl MapValues for Forget {
    fn map_values(&self, _: String) {}
}

/// `P → (P, P·s)`: blinds the other party's points again, keeping their keys so the other
/// party can find its own ids back. A key that is not a point is dropped.
#[derive(Serialize, Deserialize)]
pub struct BlindValue {
    /// The party's secret.
    pub secret: Secret,
}
#[function(name = "psi::BlindValue")]
impl FlatMap for BlindValue {
    fn flat_map(&self, p: Point, _: ()) -> Vec<(Point, Point)> {
        self.secret
            .blind(&p)
            .map(|pp| (p, pp))
            .into_iter()
            .collect()
    }
}

/// `P → P·s` as the key: the other party's points, doubly blinded. A key that is not a
/// point is dropped.
#[derive(Serialize, Deserialize)]
pub struct BlindKey {
    /// The party's secret.
    pub secret: Secret,
}
#[function(name = "psi::BlindKey")]
impl FlatMap for BlindKey {
    fn flat_map(&self, p: Point, _: ()) -> Vec<(Point, ())> {
        self.secret
            .blind(&p)
            .map(|pp| (pp, ()))
            .into_iter()
            .collect()
    }
}

/// Joins an id with its doubly blinded point.
#[derive(Serialize, Deserialize)]
pub struct WithDouble;
#[function(name = "psi::WithDouble")]
impl Join for WithDouble {
    fn join(&self, id: String, double: Point) -> (String, Point) {
        (id, double)
    }
}

/// `(id, double) → (double, id)`: re-keys own ids by their doubly blinded points.
#[derive(Serialize, Deserialize)]
pub struct KeyByDouble;
#[function(name = "psi::KeyByDouble")]
impl Map for KeyByDouble {
    fn map(&self, _: Point, (id, double): (String, Point)) -> (Point, String) {
        (double, id)
    }
}

/// Keeps the id of a doubly blinded point that both parties hold.
#[derive(Serialize, Deserialize)]
pub struct KeepId;
#[function(name = "psi::KeepId")]
impl Join for KeepId {
    fn join(&self, id: String, _: ()) -> String {
        id
    }
}
