//! UDP encapsulation on port 4500 (RFC 3948 §2): what a datagram is.
//!
//! ```text
//!  IKE:        | 0x00000000 (non-ESP marker) | IKE header ...
//!  ESP:        | SPI (never 0) | Sequence Number | ...
//!  keepalive:  | 0xFF |
//! ```

/// The four zero octets in front of IKE messages on port 4500.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// What arrived on port 4500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Natt<'a> {
    /// An IKE message (the marker removed).
    Ike(&'a [u8]),
    /// An ESP packet, starting at the SPI.
    Esp(&'a [u8]),
    /// A NAT keepalive (one 0xFF octet).
    Keepalive,
    /// Too short to be any of them.
    Malformed,
}

/// Classifies a datagram received on port 4500.
pub fn classify(datagram: &[u8]) -> Natt<'_> {
    match datagram {
        [0xff] => Natt::Keepalive,
        [0, 0, 0, 0, ike @ ..] if !ike.is_empty() => Natt::Ike(ike),
        // An ESP header and at least some payload: SPI, sequence, more.
        [a, b, c, d, _, _, _, _, _, ..] if [*a, *b, *c, *d] != NON_ESP_MARKER => {
            Natt::Esp(datagram)
        }
        _ => Natt::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_kind() {
        assert_eq!(classify(&[0xff]), Natt::Keepalive);
        assert_eq!(classify(&[0, 0, 0, 0, 1, 2]), Natt::Ike(&[1, 2]));
        let esp = [0, 0, 1, 0, 0, 0, 0, 1, 9, 9];
        assert_eq!(classify(&esp), Natt::Esp(&esp));
        for bad in [
            &[][..],
            &[0, 0, 0, 0],
            &[1, 2, 3],
            &[0xfe],
            &[1, 0, 0, 0, 0, 0, 0, 1],
        ] {
            assert_eq!(classify(bad), Natt::Malformed, "{bad:?}");
        }
    }
}
