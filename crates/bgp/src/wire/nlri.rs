//! IP prefixes as they appear in the withdrawn routes and NLRI fields and in
//! MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4271 §4.3, RFC 4760 §5).
//!
//! ```text
//! +---------------------------+
//! |   Length (1 octet)        |   prefix length in bits
//! +---------------------------+
//! |   Prefix (variable)       |   ceil(Length / 8) octets
//! +---------------------------+
//! ```
//!
//! Trailing bits past the prefix length are masked off on decode (RFC 4271
//! lets them be arbitrary); a length beyond the address size is an error.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::reader::{Reader, Truncated};

/// Why a prefix list does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrefixError {
    /// The length exceeds the address size.
    TooLong,
    /// The field ends inside a prefix.
    Truncated,
}

impl From<Truncated> for PrefixError {
    fn from(_: Truncated) -> Self {
        Self::Truncated
    }
}

/// Reads one `(length, prefix)` pair for an address of `N` octets.
fn read_prefix<const N: usize>(r: &mut Reader<'_>) -> Result<(u8, [u8; N]), PrefixError> {
    let bits = r.u8()?;
    if usize::from(bits) > N * 8 {
        return Err(PrefixError::TooLong);
    }
    let octets = r.take(usize::from(bits).div_ceil(8))?;
    let mut addr = [0u8; N];
    for (slot, b) in addr.iter_mut().zip(octets) {
        *slot = *b;
    }
    Ok((bits, addr))
}

/// Decodes a whole field of IPv4 prefixes.
pub(crate) fn decode_ipv4(buf: &[u8]) -> Result<Vec<Ipv4Net>, PrefixError> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    while !r.is_empty() {
        let (bits, addr) = read_prefix::<4>(&mut r)?;
        let net = Ipv4Net::new(Ipv4Addr::from(addr), bits).map_err(|_| PrefixError::TooLong)?;
        out.push(net.trunc());
    }
    Ok(out)
}

/// Decodes a whole field of IPv6 prefixes.
pub(crate) fn decode_ipv6(buf: &[u8]) -> Result<Vec<Ipv6Net>, PrefixError> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    while !r.is_empty() {
        let (bits, addr) = read_prefix::<16>(&mut r)?;
        let net = Ipv6Net::new(Ipv6Addr::from(addr), bits).map_err(|_| PrefixError::TooLong)?;
        out.push(net.trunc());
    }
    Ok(out)
}

/// Writes one prefix: its length, then only the octets it covers.
fn write_prefix(bits: u8, octets: &[u8], out: &mut Vec<u8>) {
    out.push(bits);
    let n = usize::from(bits).div_ceil(8);
    out.extend_from_slice(octets.get(..n).unwrap_or(octets));
}

/// Encodes IPv4 prefixes (host bits are written as zero).
pub(crate) fn encode_ipv4(prefixes: &[Ipv4Net], out: &mut Vec<u8>) {
    for p in prefixes {
        write_prefix(p.prefix_len(), &p.network().octets(), out);
    }
}

/// Encodes IPv6 prefixes (host bits are written as zero).
pub(crate) fn encode_ipv6(prefixes: &[Ipv6Net], out: &mut Vec<u8>) {
    for p in prefixes {
        write_prefix(p.prefix_len(), &p.network().octets(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_prefixes_both_ways() {
        let bytes = [0, 8, 10, 17, 192, 168, 128, 32, 169, 254, 21, 1];
        let nets = vec![
            v4("0.0.0.0/0"),
            v4("10.0.0.0/8"),
            v4("192.168.128.0/17"),
            v4("169.254.21.1/32"),
        ];
        assert_eq!(decode_ipv4(&bytes), Ok(nets.clone()));
        let mut out = Vec::new();
        encode_ipv4(&nets, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn trailing_bits_are_masked() {
        assert_eq!(decode_ipv4(&[9, 10, 255]), Ok(vec![v4("10.128.0.0/9")]));
    }

    #[test]
    fn bad_prefixes_are_errors() {
        assert_eq!(decode_ipv4(&[33, 1, 2, 3, 4, 5]), Err(PrefixError::TooLong));
        assert_eq!(decode_ipv4(&[24, 10, 0]), Err(PrefixError::Truncated));
        assert_eq!(decode_ipv6(&[129]), Err(PrefixError::TooLong));
        assert_eq!(
            decode_ipv6(&[64, 0x20, 1, 0xd, 0xb8]),
            Err(PrefixError::Truncated)
        );
    }

    #[test]
    fn ipv6_prefixes_both_ways() {
        let bytes = [
            32, 0x20, 0x01, 0x0d, 0xb8, 128, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        ];
        let nets: Vec<Ipv6Net> = vec![
            "2001:db8::/32".parse().unwrap(),
            "fe80::1/128".parse().unwrap(),
        ];
        assert_eq!(decode_ipv6(&bytes), Ok(nets.clone()));
        let mut out = Vec::new();
        encode_ipv6(&nets, &mut out);
        assert_eq!(out, bytes);
    }
}
