//! Packed pair batches: many pairs in one buffer, `[u32 LE key length][key][u32 LE value
//! length][value]` each. A batch on the wire is then one allocation, not two per pair.

use crate::error::{CoreError, Result};

/// Appends one pair.
pub fn pack(buf: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    buf.reserve(8 + k.len() + v.len());
    buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
    buf.extend_from_slice(k);
    buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
    buf.extend_from_slice(v);
}

/// The pairs of a packed batch, in order; an error where the buffer is cut short.
pub fn unpack(buf: &[u8]) -> Unpack<'_> {
    Unpack { rest: buf }
}

/// Iterator over the pairs of a packed batch.
pub struct Unpack<'a> {
    rest: &'a [u8],
}

impl<'a> Unpack<'a> {
    fn field(&mut self) -> Result<&'a [u8]> {
        let truncated =
            || CoreError::InvalidArgument("a packed pair batch is truncated or corrupt".into());
        let (len, rest) = self.rest.split_first_chunk::<4>().ok_or_else(truncated)?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(truncated());
        }
        let (field, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(field)
    }
}

impl<'a> Iterator for Unpack<'a> {
    type Item = Result<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let pair = self.field().and_then(|k| Ok((k, self.field()?)));
        if pair.is_err() {
            self.rest = &[];
        }
        Some(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (vec![], vec![]),
            (b"k".to_vec(), vec![0xff; 300]),
            ("键".as_bytes().to_vec(), vec![]),
        ];
        let mut buf = Vec::new();
        for (k, v) in &pairs {
            pack(&mut buf, k, v);
        }
        let back: Vec<(Vec<u8>, Vec<u8>)> = unpack(&buf)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(back, pairs);
        // Cut anywhere: whole pairs before the cut come back, and a cut inside a pair is an
        // error, never a shorter pair.
        let mut boundaries = vec![0];
        for (k, v) in &pairs {
            boundaries.push(boundaries.last().unwrap() + 8 + k.len() + v.len());
        }
        for cut in 0..buf.len() {
            let got: Vec<_> = unpack(&buf[..cut]).collect();
            let whole = boundaries.iter().filter(|b| **b <= cut).count() - 1;
            let ok = got.iter().filter(|r| r.is_ok()).count();
            assert_eq!(ok, whole, "cut at {cut}");
            let at_boundary = boundaries.contains(&cut);
            assert_eq!(
                got.last().is_some_and(|r| r.is_err()),
                !at_boundary,
                "cut at {cut}"
            );
        }
        assert!(unpack(&[1, 0, 0]).next().unwrap().is_err());
        assert!(unpack(&[5, 0, 0, 0, b'a']).next().unwrap().is_err());
    }
}
