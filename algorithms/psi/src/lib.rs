//! Two-party ECDH private set intersection (PSI) on eggroll-rs, the first step of every
//! vertical federated job in FATE.
//!
//! Each party hashes its ids to Ristretto255 points and blinds them with a secret scalar
//! (parallel over partitions, on its own eggs); the blinded tables cross through roll-site;
//! each party blinds the other's points again; the doubly blinded tables are joined. A party
//! sees only the other's blinded points, never an id outside the intersection.

pub mod crypto;
pub mod functions;
