//! The curve operations of ECDH PSI on Ristretto255: ids hash to points, and a secret scalar
//! blinds them. Blinding commutes, `(H(x)·a)·b = (H(x)·b)·a`, which is what lets two parties
//! compare ids that neither shows the other.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

/// A compressed point: 32 bytes, the key type of blinded tables.
pub type Point = [u8; 32];

/// Domain separation, so these hashes never collide with another protocol's.
const DOMAIN: &[u8] = b"eggroll-rs psi v1 ristretto255 sha512";

/// A party's secret blinding scalar. It travels to the party's own eggs inside tasks and
/// nowhere else.
#[derive(Clone, Serialize, Deserialize)]
pub struct Secret(pub [u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh secret from the operating system's randomness.
    pub fn random() -> Result<Self, String> {
        let mut wide = [0u8; 64];
        getrandom::fill(&mut wide).map_err(|e| format!("no randomness for the PSI secret: {e}"))?;
        Ok(Self(Scalar::from_bytes_mod_order_wide(&wide).to_bytes()))
    }

    fn scalar(&self) -> Scalar {
        Scalar::from_bytes_mod_order(self.0)
    }

    /// `H(id)·secret`, compressed.
    pub fn hash_and_blind(&self, id: &[u8]) -> Point {
        let mut h = Sha512::new();
        h.update(DOMAIN);
        h.update((id.len() as u64).to_le_bytes());
        h.update(id);
        let wide: [u8; 64] = h.finalize().into();
        (RistrettoPoint::from_uniform_bytes(&wide) * self.scalar())
            .compress()
            .to_bytes()
    }

    /// `P·secret` for a point another party blinded; None if the bytes are not a point
    /// (the sender is faulty or hostile).
    pub fn blind(&self, p: &Point) -> Option<Point> {
        let point = CompressedRistretto(*p).decompress()?;
        Some((point * self.scalar()).compress().to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blinding_commutes_and_hides() {
        let (a, b) = (Secret::random().unwrap(), Secret::random().unwrap());
        for id in [&b"alice"[..], b"", "键🙂".as_bytes(), &[0u8; 1000]] {
            let ab = b.blind(&a.hash_and_blind(id)).unwrap();
            let ba = a.blind(&b.hash_and_blind(id)).unwrap();
            assert_eq!(ab, ba);
            assert_ne!(a.hash_and_blind(id), b.hash_and_blind(id));
        }
        assert_ne!(a.hash_and_blind(b"x"), a.hash_and_blind(b"y"));
        // Not every 32 bytes are a point.
        assert!(a.blind(&[0xff; 32]).is_none());
    }
}
