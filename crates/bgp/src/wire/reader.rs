//! A bounds-checked reader over untrusted bytes.
//!
//! Every read returns [`Truncated`] instead of panicking when the input is
//! too short; callers turn that into the error the protocol prescribes at
//! that point (a NOTIFICATION subcode or an RFC 7606 outcome).

use std::net::{Ipv4Addr, Ipv6Addr};

/// The input ended before the field being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated;

/// Reads big-endian fields from the front of a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Octets not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The unread octets, without consuming them.
    pub(crate) fn peek_rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Consumes and returns everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Consumes the next `n` octets.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(Truncated)?;
        self.buf = tail;
        Ok(head)
    }

    /// A reader over the next `n` octets, which are consumed from this one:
    /// the way to read length-prefixed data without overrunning it.
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader<'a>, Truncated> {
        self.take(n).map(Reader::new)
    }

    /// Consumes the next `N` octets as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let (head, tail) = self.buf.split_first_chunk::<N>().ok_or(Truncated)?;
        self.buf = tail;
        Ok(*head)
    }

    /// One octet.
    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        self.array::<1>().map(|[b]| b)
    }

    /// Two octets, network order.
    pub(crate) fn u16(&mut self) -> Result<u16, Truncated> {
        self.array().map(u16::from_be_bytes)
    }

    /// Four octets, network order.
    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        self.array().map(u32::from_be_bytes)
    }

    /// An IPv4 address.
    pub(crate) fn ipv4(&mut self) -> Result<Ipv4Addr, Truncated> {
        self.array::<4>().map(Ipv4Addr::from)
    }

    /// An IPv6 address.
    pub(crate) fn ipv6(&mut self) -> Result<Ipv6Addr, Truncated> {
        self.array::<16>().map(Ipv6Addr::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_stops_at_the_end() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 3, 9]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.u16(), Err(Truncated));
        assert_eq!(r.remaining(), 1, "a failed read consumes nothing");
        assert_eq!(r.u8(), Ok(9));
        assert!(r.is_empty());
        assert_eq!(r.u8(), Err(Truncated));
    }

    #[test]
    fn sub_reader_is_bounded() {
        let mut r = Reader::new(&[1, 2, 3, 4]);
        let mut s = r.sub(2).unwrap();
        assert_eq!(s.u8(), Ok(1));
        assert_eq!(s.u16(), Err(Truncated));
        assert_eq!(r.rest(), &[3, 4]);
        assert!(Reader::new(&[1]).sub(2).is_err());
        assert_eq!(Reader::new(&[]).take(0), Ok(&[][..]));
    }
}
