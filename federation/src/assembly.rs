//! Where an object received over gRPC is put together.

use bytes::Bytes;

/// Where an object received over gRPC is put together.
pub(crate) enum Assembly {
    /// A small object, or one whose sender did not say its size: a growing Vec.
    Vec(Vec<u8>),
    /// A large object of known size: anonymous memory asking for huge pages, so that the
    /// kernel faults it in 2 MiB at a time instead of 4 KiB (half the cost of the copy was
    /// page faults).
    Mapped(memmap2::MmapMut, usize),
}

impl Assembly {
    /// Objects from this size on get huge pages.
    const MAPPED_FROM: usize = 64 << 20;

    pub(crate) fn new(size: usize) -> Self {
        if size >= Self::MAPPED_FROM {
            if let Ok(m) = memmap2::MmapMut::map_anon(size) {
                // Advice only: without transparent huge pages this is ordinary memory.
                let _ = m.advise(memmap2::Advice::HugePage);
                return Assembly::Mapped(m, 0);
            }
        }
        Assembly::Vec(Vec::with_capacity(size))
    }

    /// Bytes received so far.
    pub(crate) fn len(&self) -> usize {
        match self {
            Assembly::Vec(v) => v.len(),
            Assembly::Mapped(_, filled) => *filled,
        }
    }

    pub(crate) fn extend(&mut self, body: &[u8]) -> std::result::Result<(), String> {
        match self {
            Assembly::Vec(v) => v.extend_from_slice(body),
            Assembly::Mapped(m, filled) => {
                let end = *filled + body.len();
                let Some(dst) = m.get_mut(*filled..end) else {
                    return Err(format!(
                        "more bytes arrived than the {} its header announced",
                        m.len()
                    ));
                };
                dst.copy_from_slice(body);
                *filled = end;
            }
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> std::result::Result<Bytes, String> {
        match self {
            Assembly::Vec(v) => Ok(Bytes::from(v)),
            Assembly::Mapped(m, filled) if filled == m.len() => Ok(Bytes::from_owner(m)),
            Assembly::Mapped(m, filled) => Err(format!(
                "{filled} bytes arrived of the {} its header announced",
                m.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Assembly;

    #[test]
    fn assembly_keeps_the_bytes_in_order_and_holds_senders_to_the_size_they_announced() {
        let data: Vec<u8> = (0..(Assembly::MAPPED_FROM + 12_345) as u32)
            .map(|i| (i % 253) as u8)
            .collect();
        for size in [0, 10, data.len()] {
            let mut a = Assembly::new(size);
            let want = &data[..size];
            for piece in want.chunks(1 << 20) {
                a.extend(piece).unwrap();
            }
            assert_eq!(a.len(), size);
            assert_eq!(&a.finish().unwrap()[..], want, "size {size}");
        }
        // An unknown size (0 announced) grows as needed.
        let mut a = Assembly::new(0);
        a.extend(b"ab").unwrap();
        a.extend(b"cd").unwrap();
        assert_eq!(&a.finish().unwrap()[..], b"abcd");
        // A large object that overruns or falls short of its announced size is refused.
        let mut a = Assembly::new(Assembly::MAPPED_FROM);
        a.extend(&data[..Assembly::MAPPED_FROM]).unwrap();
        assert!(a.extend(b"x").unwrap_err().contains("more bytes"));
        let mut a = Assembly::new(Assembly::MAPPED_FROM);
        a.extend(&data[..100]).unwrap();
        assert!(a.finish().unwrap_err().contains("100 bytes arrived"));
    }
}
