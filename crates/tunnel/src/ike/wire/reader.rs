//! A bounds-checked cursor over untrusted bytes.
//!
//! Every read is checked: running out of input returns
//! [`DecodeError::Truncated`] naming what was being read, never a panic.

use super::error::DecodeError;

/// A cursor over a byte slice; reads advance it.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        match self.buf.split_at_checked(n) {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(head)
            }
            None => Err(DecodeError::Truncated { what }),
        }
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// A reader over the next `n` bytes (length-prefixed data).
    pub(crate) fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, DecodeError> {
        self.take(n, what).map(Reader::new)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// One octet.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.array::<1>(what).map(|[b]| b)
    }

    /// A big-endian 16-bit integer.
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.array(what).map(u16::from_be_bytes)
    }

    /// A big-endian 32-bit integer.
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_be_bytes)
    }

    /// Fails with [`DecodeError::TrailingData`] unless everything was read.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingData {
                what,
                extra: self.remaining(),
            })
        }
    }
}

/// Writes a big-endian `u16` length at `pos` of a buffer we are building.
///
/// `pos` always points at a placeholder written earlier by the encoder; a
/// position past the end is ignored rather than panicking.
pub(crate) fn patch_u16(out: &mut [u8], pos: usize, value: u16) {
    if let Some(slot) = out.get_mut(pos..pos.saturating_add(2)) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
}

/// Writes a big-endian `u32` at `pos` of a buffer we are building.
pub(crate) fn patch_u32(out: &mut [u8], pos: usize, value: u32) {
    if let Some(slot) = out.get_mut(pos..pos.saturating_add(4)) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_runs_out() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 3, 9]);
        assert_eq!(r.u8("a"), Ok(1));
        assert_eq!(r.u16("b"), Ok(2));
        assert_eq!(r.u32("c"), Ok(3));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.u16("d"), Err(DecodeError::Truncated { what: "d" }));
        // A failed read consumes nothing.
        assert_eq!(
            r.finish("e"),
            Err(DecodeError::TrailingData {
                what: "e",
                extra: 1
            })
        );
        let mut sub = r.sub(1, "f").unwrap();
        assert_eq!(sub.rest(), &[9]);
        assert!(r.is_empty());
    }

    #[test]
    fn patch_out_of_range_is_ignored() {
        let mut buf = [0u8; 3];
        patch_u16(&mut buf, 1, 0x0102);
        patch_u16(&mut buf, 2, 0xffff);
        patch_u32(&mut buf, 0, 0xffff_ffff);
        assert_eq!(buf, [0, 1, 2]);
    }
}
