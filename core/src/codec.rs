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
