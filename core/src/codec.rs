//! The one binary format for typed keys and values (postcard, a compact serde format).
//!
//! Keys are partitioned and sorted by their encoded bytes, so every component must encode
//! with this module and nothing else.

use crate::error::{CoreError, Result};
use serde::{de::DeserializeOwned, Serialize};

/// Name of this codec as recorded in store metadata.
pub const SERDES: &str = "postcard";

/// Encodes a value into a new buffer.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|source| CoreError::Encode {
        type_name: std::any::type_name::<T>(),
        source,
    })
}

/// Encodes a value at the end of `out`, reusing its allocation.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    let buf = std::mem::take(out);
    *out = postcard::to_extend(value, buf).map_err(|source| CoreError::Encode {
        type_name: std::any::type_name::<T>(),
        source,
    })?;
    Ok(())
}

/// Decodes a value; `what` names the bytes in the error ("value of table ns/name").
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &dyn Fn() -> String) -> Result<T> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(CoreError::Decode {
            what: format!("{} ({} trailing bytes)", what(), rest.len()),
            type_name: std::any::type_name::<T>(),
            source: postcard::Error::DeserializeBadEncoding,
        }),
        Err(source) => Err(CoreError::Decode {
            what: what(),
            type_name: std::any::type_name::<T>(),
            source,
        }),
    }
}

/// Writes postcard's varint length prefix, as it precedes a sequence of `len` items.
pub fn encode_seq_len(len: usize, out: &mut Vec<u8>) {
    let mut n = len as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_rejects_wrong_types() {
        let bytes = encode(&("clé", 7u64)).unwrap();
        let back: (String, u64) = decode(&bytes, &|| "test".into()).unwrap();
        assert_eq!(back, ("clé".to_string(), 7));
        let err = decode::<u64>(&encode("not a number").unwrap(), &|| "value".into()).unwrap_err();
        assert!(err.to_string().contains("u64"), "{err}");
        assert!(decode::<String>(&[0xff, 0xff], &|| "value".into()).is_err());
    }

    proptest! {
        #[test]
        fn seq_len_matches_postcard(items in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut manual = Vec::new();
            encode_seq_len(items.len(), &mut manual);
            manual.extend_from_slice(&items);
            prop_assert_eq!(manual, encode(&items).unwrap());
        }
    }
}

/// Raw bytes as a value or key: encoded exactly as `Vec<u8>` is (a length, then the bytes),
/// but copied in one piece instead of byte by byte. Use it for blobs.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub Vec<u8>);

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl std::ops::Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> std::result::Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Bytes, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(Bytes(out))
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

#[cfg(test)]
mod bytes_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bytes_encode_exactly_as_vec_u8(v in proptest::collection::vec(any::<u8>(), 0..600)) {
            let as_vec = encode(&v).unwrap();
            prop_assert_eq!(&encode(&Bytes(v.clone())).unwrap(), &as_vec);
            let back: Bytes = decode(&as_vec, &|| "bytes".into()).unwrap();
            prop_assert_eq!(back.0, v.clone());
            let back: Vec<u8> = decode(&encode(&Bytes(v.clone())).unwrap(), &|| "vec".into()).unwrap();
            prop_assert_eq!(back, v);
        }
    }
}
