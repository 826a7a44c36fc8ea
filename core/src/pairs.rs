//! The one format of a batch of encoded pairs, wherever pairs travel in bulk (puts and gets
//! between clients and eggs, shuffles, table batches between roll-sites):
//! `[u32 big-endian key length][key][u32 big-endian value length][value]`, repeated.
//! A batch is one allocation, not two per pair, and it is EggRoll's table batch layout.

use crate::error::{CoreError, Result};

/// Appends one pair to a batch.
pub fn push(buf: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    buf.reserve(8 + k.len() + v.len());
    buf.extend_from_slice(&(k.len() as u32).to_be_bytes());
    buf.extend_from_slice(k);
    buf.extend_from_slice(&(v.len() as u32).to_be_bytes());
    buf.extend_from_slice(v);
}

/// Writes one pair, in the batch format, to `out` (a file, a buffered writer).
pub fn write(out: &mut impl std::io::Write, k: &[u8], v: &[u8]) -> std::io::Result<()> {
    out.write_all(&(k.len() as u32).to_be_bytes())?;
    out.write_all(k)?;
    out.write_all(&(v.len() as u32).to_be_bytes())?;
    out.write_all(v)
}

/// How many bytes [`push`] adds for a pair of these lengths.
pub fn encoded_len(k: usize, v: usize) -> usize {
    8 + k + v
}

/// The pairs of a batch, in order; an error naming the byte offset where it is cut short.
pub fn iter(batch: &[u8]) -> Pairs<'_> {
    Pairs { batch, at: 0 }
}

/// Every pair of a batch, or the error of the first malformed one.
pub fn collect(batch: &[u8]) -> Result<Vec<(&[u8], &[u8])>> {
    iter(batch).collect()
}

/// Iterator over the pairs of a batch; stops after the first error.
pub struct Pairs<'a> {
    batch: &'a [u8],
    at: usize,
}

impl<'a> Pairs<'a> {
    fn field(&mut self, what: &str, pair_at: usize) -> Result<&'a [u8]> {
        let rest = &self.batch[self.at..];
        let Some((len, rest)) = rest.split_first_chunk::<4>() else {
            return Err(CoreError::BadPacket(format!(
                "pair batch truncated: the {what} length of the pair at byte {pair_at} is cut off"
            )));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(CoreError::BadPacket(format!(
                "pair batch truncated: the {what} of the pair at byte {pair_at} says {len} bytes, {} remain",
                rest.len()
            )));
        }
        self.at += 4 + len;
        Ok(&rest[..len])
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.batch.len() {
            return None;
        }
        let pair_at = self.at;
        let pair = self
            .field("key", pair_at)
            .and_then(|k| Ok((k, self.field("value", pair_at)?)));
        if pair.is_err() {
            self.at = self.batch.len();
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
            push(&mut buf, k, v);
        }
        assert_eq!(
            buf.len(),
            pairs
                .iter()
                .map(|(k, v)| encoded_len(k.len(), v.len()))
                .sum::<usize>()
        );
        assert_eq!(&buf[..8], &[0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&buf[8..12], &[0, 0, 0, 1], "lengths are big-endian");
        let back: Vec<(Vec<u8>, Vec<u8>)> = collect(&buf)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(back, pairs);
        // Cut anywhere: whole pairs before the cut come back, and a cut inside a pair is an
        // error, never a shorter pair.
        let mut boundaries = vec![0];
        for (k, v) in &pairs {
            boundaries.push(boundaries.last().unwrap() + encoded_len(k.len(), v.len()));
        }
        for cut in 0..buf.len() {
            let got: Vec<_> = iter(&buf[..cut]).collect();
            let whole = boundaries.iter().filter(|b| **b <= cut).count() - 1;
            let ok = got.iter().filter(|r| r.is_ok()).count();
            assert_eq!(ok, whole, "cut at {cut}");
            let at_boundary = boundaries.contains(&cut);
            assert_eq!(
                got.last().is_some_and(|r| r.is_err()),
                !at_boundary,
                "cut at {cut}"
            );
            assert_eq!(collect(&buf[..cut]).is_err(), !at_boundary, "cut at {cut}");
        }
        let err = iter(&[0, 0, 0]).next().unwrap().unwrap_err().to_string();
        assert!(
            err.contains("key length") && err.contains("byte 0"),
            "{err}"
        );
        let err = collect(&[0, 0, 0, 5, b'a']).unwrap_err().to_string();
        assert!(err.contains("says 5 bytes, 1 remain"), "{err}");
    }
}
