//! The partitioner: which partition a key belongs to, the same as EggRoll and FATE compute it.
//!
//! MurmurHash3 x86_32 of the key bytes with seed 0, read as a signed 32-bit integer, then the
//! non-negative remainder modulo the partition count: Python's `mmh3.hash(key) % n`.

/// Name of this partitioner as recorded in store metadata.
pub const PARTITIONER: &str = "mmh3";

/// 32-bit MurmurHash3 (x86 variant) of `data`.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k ^= (*b as u32) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The partition of an encoded key among `total` partitions (`total` must be at least 1).
pub fn partition_of(key: &[u8], total: u32) -> u32 {
    debug_assert!(total > 0, "partition count must be positive");
    let hash = murmur3_32(key, 0) as i32 as i64;
    hash.rem_euclid(total.max(1) as i64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// (key hex, mmh3.hash(key), mmh3.hash(key) % 16, mmh3.hash(key) % 7), computed with
    /// Python's mmh3 package.
    const VECTORS: &[(&str, i32, u32, u32)] = &[
        ("", 0, 0, 0),
        ("61", 1009084850, 2, 4),
        ("6162", -1681926305, 15, 4),
        ("616263", -1277324294, 10, 6),
        ("61626364", 1139631978, 10, 2),
        ("6162636465", -392455434, 6, 0),
        ("68656c6c6f20776f726c64", 1586663183, 15, 0),
        ("e4b8ade69687e994ae", 2117267346, 2, 5),
        ("00000000", 593689054, 14, 0),
        ("ffffffffffffff", 18685351, 7, 6),
        ("6b65795f3132333435", 1684151864, 8, 3),
    ];

    #[test]
    fn matches_python_mmh3() {
        for (hex, hash, p16, p7) in VECTORS {
            let key = unhex(hex);
            assert_eq!(murmur3_32(&key, 0) as i32, *hash, "hash of {hex}");
            assert_eq!(partition_of(&key, 16), *p16, "partition of {hex} in 16");
            assert_eq!(partition_of(&key, 7), *p7, "partition of {hex} in 7");
            assert_eq!(partition_of(&key, 1), 0);
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(murmur3_32(&all, 0) as i32, -469103018);
        assert_eq!(partition_of(&all, 16), 6);
    }
}
