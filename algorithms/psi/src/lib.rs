//! Two-party ECDH private set intersection (PSI) on eggroll-rs, the first step of every
//! vertical federated job in FATE.
//!
//! Each party hashes its ids to Ristretto255 points and blinds them with a secret scalar
//! (parallel over partitions, on its own eggs); the blinded tables cross through roll-site;
//! each party blinds the other's points again; the doubly blinded tables are joined. A party
//! sees only the other's blinded points, never an id outside the intersection.

pub mod crypto;
pub mod functions;
pub mod protocol;

pub use protocol::{run, Progress, PsiError, PsiOutcome, Role};

/// Demo ids with a known overlap: the guest holds `id-0 .. id-(n-1)`, the host the `n` ids
/// from `id-(n-overlap)`, so exactly `overlap` ids (at most `n`) are in both.
pub fn demo_ids(role: Role, n: u64, overlap: u64) -> impl Iterator<Item = String> {
    let start = match role {
        Role::Guest => 0,
        Role::Host => n - overlap.min(n),
    };
    (start..start + n).map(|i| format!("id-{i}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn demo_ids_overlap_as_asked() {
        for (n, overlap) in [(0, 0), (10, 0), (10, 3), (10, 10), (10, 99)] {
            let g: BTreeSet<String> = demo_ids(Role::Guest, n, overlap).collect();
            let h: BTreeSet<String> = demo_ids(Role::Host, n, overlap).collect();
            assert_eq!(g.len() as u64, n);
            assert_eq!(h.len() as u64, n);
            assert_eq!(g.intersection(&h).count() as u64, overlap.min(n));
        }
    }
}
