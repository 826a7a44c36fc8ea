//! Partitioners: which partition a key belongs to, the same as EggRoll and FATE compute it.
//!
//! The default, [`Partitioner::Mmh3`]: MurmurHash3 x86_32 of the key bytes with seed 0, read
//! as a signed 32-bit integer, then the non-negative remainder modulo the partition count:
//! Python's `mmh3.hash(key) % n`. A table records its partitioner's name in its metadata
//! (`StoreLocator.partitioner`), and every writer and shuffle places keys by that one.

use crate::error::{CoreError, Result};

/// Name of the default partitioner as recorded in store metadata.
pub const PARTITIONER: &str = "mmh3";

/// How a table's keys are placed in its partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Partitioner {
    /// MurmurHash3 x86_32 of the key bytes, signed, non-negative remainder (FATE's types 0
    /// and 2, EggRoll's default).
    #[default]
    Mmh3,
    /// The key bytes read as one unsigned big-endian integer, modulo the partition count
    /// (FATE's type 1: Python's `int.from_bytes(key, "big") % n`).
    Integer,
}

impl Partitioner {
    /// The partitioner a table's metadata names ("" is the default, for tables written
    /// before the name was recorded).
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "" | PARTITIONER => Ok(Partitioner::Mmh3),
            "integer" => Ok(Partitioner::Integer),
            other => Err(CoreError::InvalidArgument(format!(
                "unknown partitioner {other:?}: eggroll-rs places keys with \"mmh3\" or \"integer\""
            ))),
        }
    }

    /// Its name in store metadata.
    pub fn name(self) -> &'static str {
        match self {
            Partitioner::Mmh3 => PARTITIONER,
            Partitioner::Integer => "integer",
        }
    }

    /// The partitioner of FATE's `partitioner_type` code.
    pub fn from_fate_type(code: i32) -> Result<Self> {
        match code {
            0 | 2 => Ok(Partitioner::Mmh3),
            1 => Ok(Partitioner::Integer),
            3 => Err(CoreError::InvalidArgument(
                "FATE's java-string-like partitioner (type 3) is not supported by eggroll-rs; \
                 use type 0 (mmh3, FATE's default) or 1 (integer)"
                    .into(),
            )),
            other => Err(CoreError::InvalidArgument(format!(
                "unknown FATE partitioner type {other}: FATE defines 0 (default, mmh3), \
                 1 (integer), 2 (mmh3) and 3 (java-string-like)"
            ))),
        }
    }

    /// The partition of `key` among `total` partitions (`total` must be at least 1).
    pub fn partition(self, key: &[u8], total: u32) -> u32 {
        match self {
            Partitioner::Mmh3 => partition_of(key, total),
            Partitioner::Integer => {
                // The remainder, a byte at a time: the integer may be any length.
                let n = total.max(1) as u64;
                key.iter().fold(0u64, |r, &b| (r * 256 + b as u64) % n) as u32
            }
        }
    }
}

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

    /// (key hex, int.from_bytes(key, "big") % 16, % 7, % 1000003), computed with Python.
    const INTEGER_VECTORS: &[(&str, u32, u32, u32)] = &[
        ("", 0, 0, 0),
        ("00", 0, 0, 0),
        ("01", 1, 1, 1),
        ("ff", 15, 3, 255),
        ("0100", 0, 4, 256),
        ("00000000000000ff", 15, 3, 255),
        ("ffffffffffffffffffffffffffffffff", 15, 3, 3025),
        ("0102030405060708090a0b0c0d0e0f101112131415", 5, 0, 692263),
        (
            "8000000000000000000000000000000000000000000000000000000000000001",
            1,
            2,
            578327,
        ),
    ];

    #[test]
    fn the_integer_partitioner_matches_python() {
        for (hex, p16, p7, pbig) in INTEGER_VECTORS {
            let key = unhex(hex);
            let part = |n| Partitioner::Integer.partition(&key, n);
            assert_eq!(
                (part(16), part(7), part(1_000_003)),
                (*p16, *p7, *pbig),
                "{hex}"
            );
            assert_eq!(part(1), 0);
        }
        // Against u128 arithmetic for every short key shape.
        for n in [1u32, 2, 3, 10, 255, 256, 65_537, u32::MAX] {
            for x in [
                0u128,
                1,
                255,
                256,
                65_535,
                1 << 40,
                u64::MAX as u128,
                u128::MAX,
            ] {
                let key = x.to_be_bytes();
                assert_eq!(
                    Partitioner::Integer.partition(&key, n) as u128,
                    x % n as u128,
                    "{x} % {n}"
                );
            }
        }
    }

    #[test]
    fn partitioners_by_name_and_by_fate_type() {
        for p in [Partitioner::Mmh3, Partitioner::Integer] {
            assert_eq!(Partitioner::from_name(p.name()).unwrap(), p);
        }
        assert_eq!(Partitioner::from_name("").unwrap(), Partitioner::Mmh3);
        let e = Partitioner::from_name("crc32").unwrap_err().to_string();
        assert!(e.contains("crc32") && e.contains("integer"), "{e}");
        assert_eq!(Partitioner::from_fate_type(0).unwrap(), Partitioner::Mmh3);
        assert_eq!(
            Partitioner::from_fate_type(1).unwrap(),
            Partitioner::Integer
        );
        assert_eq!(Partitioner::from_fate_type(2).unwrap(), Partitioner::Mmh3);
        let e = Partitioner::from_fate_type(3).unwrap_err().to_string();
        assert!(
            e.contains("java-string-like") && e.contains("type 0"),
            "{e}"
        );
        assert!(Partitioner::from_fate_type(9).is_err());
        assert_eq!(
            Partitioner::Mmh3.partition(b"abc", 16),
            partition_of(b"abc", 16)
        );
    }

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
