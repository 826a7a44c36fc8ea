//! The PSI's functions, registered by name so a party's eggs can run them. Each is one step
//! of the protocol over one partition; none sees the other party's ids.

use crate::crypto::{Point, Secret};
use eggroll_core::functions::{FlatMap, Function, Join, Map, MapValues};
use eggroll_core::register;
use serde::{Deserialize, Serialize};

/// `id → (H(id)·s, id)`: the party's own ids, keyed by their blinded points.
#[derive(Serialize, Deserialize)]
pub struct HashBlind {
    /// The party's secret.
    pub secret: Secret,
}
impl Function for HashBlind {
    const NAME: &'static str = "psi::HashBlind";
}
impl Map for HashBlind {
    type K = String;
    type V = ();
    type K2 = Point;
    type V2 = String;
    fn map(&self, id: String, _: ()) -> (Point, String) {
        (self.secret.hash_and_blind(id.as_bytes()), id)
    }
}
register!(map: HashBlind);

/// Drops the ids, keeping only the blinded points: what may be sent to the other party.
#[derive(Serialize, Deserialize)]
pub struct Forget;
impl Function for Forget {
    const NAME: &'static str = "psi::Forget";
}
impl MapValues for Forget {
    type V = String;
    type Out = ();
    fn map_values(&self, _: String) {}
}
register!(map_values: Forget);

/// `P → (P, P·s)`: blinds the other party's points again, keeping their keys so the other
/// party can find its own ids back. A key that is not a point is dropped.
#[derive(Serialize, Deserialize)]
pub struct BlindValue {
    /// The party's secret.
    pub secret: Secret,
}
impl Function for BlindValue {
    const NAME: &'static str = "psi::BlindValue";
}
impl FlatMap for BlindValue {
    type K = Point;
    type V = ();
    type K2 = Point;
    type V2 = Point;
    fn flat_map(&self, p: Point, _: ()) -> Vec<(Point, Point)> {
        self.secret
            .blind(&p)
            .map(|pp| (p, pp))
            .into_iter()
            .collect()
    }
}
register!(flat_map: BlindValue);

/// `P → P·s` as the key: the other party's points, doubly blinded. A key that is not a
/// point is dropped.
#[derive(Serialize, Deserialize)]
pub struct BlindKey {
    /// The party's secret.
    pub secret: Secret,
}
impl Function for BlindKey {
    const NAME: &'static str = "psi::BlindKey";
}
impl FlatMap for BlindKey {
    type K = Point;
    type V = ();
    type K2 = Point;
    type V2 = ();
    fn flat_map(&self, p: Point, _: ()) -> Vec<(Point, ())> {
        self.secret
            .blind(&p)
            .map(|pp| (pp, ()))
            .into_iter()
            .collect()
    }
}
register!(flat_map: BlindKey);

/// Joins an id with its doubly blinded point.
#[derive(Serialize, Deserialize)]
pub struct WithDouble;
impl Function for WithDouble {
    const NAME: &'static str = "psi::WithDouble";
}
impl Join for WithDouble {
    type V = String;
    type W = Point;
    type Out = (String, Point);
    fn join(&self, id: String, double: Point) -> (String, Point) {
        (id, double)
    }
}
register!(join: WithDouble);

/// `(id, double) → (double, id)`: re-keys own ids by their doubly blinded points.
#[derive(Serialize, Deserialize)]
pub struct KeyByDouble;
impl Function for KeyByDouble {
    const NAME: &'static str = "psi::KeyByDouble";
}
impl Map for KeyByDouble {
    type K = Point;
    type V = (String, Point);
    type K2 = Point;
    type V2 = String;
    fn map(&self, _: Point, (id, double): (String, Point)) -> (Point, String) {
        (double, id)
    }
}
register!(map: KeyByDouble);

/// Keeps the id of a doubly blinded point that both parties hold.
#[derive(Serialize, Deserialize)]
pub struct KeepId;
impl Function for KeepId {
    const NAME: &'static str = "psi::KeepId";
}
impl Join for KeepId {
    type V = String;
    type W = ();
    type Out = String;
    fn join(&self, id: String, _: ()) -> String {
        id
    }
}
register!(join: KeepId);
