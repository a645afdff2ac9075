//! The IKE header (RFC 7296 §3.1).

use std::fmt;

use super::error::DecodeError;
use super::iana::{ExchangeType, PayloadType};
use super::reader::Reader;

/// An IKE SA SPI: eight octets chosen by one peer; all zero for the
/// responder's SPI in the first IKE_SA_INIT request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct IkeSpi(pub [u8; 8]);

impl IkeSpi {
    /// The all-zero SPI ("not known yet").
    pub const ZERO: IkeSpi = IkeSpi([0; 8]);

    /// Whether this is the all-zero SPI.
    pub fn is_zero(self) -> bool {
        self == IkeSpi::ZERO
    }
}

impl fmt::Debug for IkeSpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", u64::from_be_bytes(self.0))
    }
}

impl From<u64> for IkeSpi {
    fn from(v: u64) -> Self {
        IkeSpi(v.to_be_bytes())
    }
}

/// The Flags octet of the IKE header. Kept raw: unknown bits survive.
///
/// ```text
///  +-+-+-+-+-+-+-+-+
///  |X|X|R|V|I|X|X|X|
///  +-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// I: set in messages sent by the original initiator of the IKE SA.
    pub const INITIATOR: Flags = Flags(0x08);
    /// V: the sender can speak a higher major version (never set by us).
    pub const VERSION: Flags = Flags(0x10);
    /// R: this message is a response.
    pub const RESPONSE: Flags = Flags(0x20);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the Initiator bit is set.
    pub fn initiator(self) -> bool {
        self.contains(Flags::INITIATOR)
    }

    /// Whether the Response bit is set.
    pub fn response(self) -> bool {
        self.contains(Flags::RESPONSE)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        if self.initiator() {
            names.push("I");
        }
        if self.response() {
            names.push("R");
        }
        if self.contains(Flags::VERSION) {
            names.push("V");
        }
        write!(
            f,
            "Flags({:#04x}{}{})",
            self.0,
            if names.is_empty() { "" } else { " " },
            names.join("|")
        )
    }
}

/// The IKE header, without its two framing fields (Next Payload and
/// Length), which the encoder derives from the payloads.
///
/// ```text
///                      1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       IKE SA Initiator's SPI                  |
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       IKE SA Responder's SPI                  |
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                          Message ID                           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                            Length                             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// The version is always sent as 2.0; on receipt a major version other
/// than 2 is an error and the minor version is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// IKE SA Initiator's SPI.
    pub spi_i: IkeSpi,
    /// IKE SA Responder's SPI (zero in the first IKE_SA_INIT request).
    pub spi_r: IkeSpi,
    /// Exchange Type.
    pub exchange_type: ExchangeType,
    /// Flags.
    pub flags: Flags,
    /// Message ID.
    pub message_id: u32,
}

/// The fields of a decoded header that frame the payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Next Payload: the type of the first payload.
    pub next_payload: PayloadType,
    /// Length: the whole message, header included.
    pub length: u32,
}

impl Header {
    /// Size of the IKE header on the wire.
    pub const LEN: usize = 28;

    /// Version octet: major 2, minor 0.
    const VERSION_2_0: u8 = 0x20;

    /// Reads the header at the start of `datagram` (checking only these 28
    /// octets and the major version), e.g. to find the IKE SA before
    /// decoding the rest.
    pub fn peek(datagram: &[u8]) -> Result<(Header, Framing), DecodeError> {
        Self::read(&mut Reader::new(datagram))
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<(Header, Framing), DecodeError> {
        let mut h = r.sub(Self::LEN, "IKE header")?;
        let spi_i = IkeSpi(h.array("IKE header")?);
        let spi_r = IkeSpi(h.array("IKE header")?);
        let next_payload = PayloadType(h.u8("IKE header")?);
        let version = h.u8("IKE header")?;
        let exchange_type = ExchangeType(h.u8("IKE header")?);
        let flags = Flags(h.u8("IKE header")?);
        let message_id = h.u32("IKE header")?;
        let length = h.u32("IKE header")?;
        if version >> 4 != 2 {
            return Err(DecodeError::InvalidMajorVersion {
                major: version >> 4,
            });
        }
        let header = Header {
            spi_i,
            spi_r,
            exchange_type,
            flags,
            message_id,
        };
        Ok((
            header,
            Framing {
                next_payload,
                length,
            },
        ))
    }

    /// Appends the header with the given framing fields.
    pub fn write(&self, framing: Framing, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.0);
        out.extend_from_slice(&self.spi_r.0);
        out.push(framing.next_payload.0);
        out.push(Self::VERSION_2_0);
        out.push(self.exchange_type.0);
        out.push(self.flags.0);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&framing.length.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            spi_i: IkeSpi::from(0x0102_0304_0506_0708),
            spi_r: IkeSpi::ZERO,
            exchange_type: ExchangeType::IKE_SA_INIT,
            flags: Flags::INITIATOR,
            message_id: 7,
        }
    }

    #[test]
    fn round_trip() {
        let framing = Framing {
            next_payload: PayloadType::SA,
            length: 300,
        };
        let mut out = Vec::new();
        sample().write(framing, &mut out);
        assert_eq!(out.len(), Header::LEN);
        assert_eq!(out[16..20], [33, 0x20, 34, 0x08]);
        assert_eq!(Header::peek(&out), Ok((sample(), framing)));
    }

    #[test]
    fn bad_major_version_and_ignored_minor() {
        let mut out = Vec::new();
        sample().write(
            Framing {
                next_payload: PayloadType::SA,
                length: 28,
            },
            &mut out,
        );
        out[17] = 0x21;
        assert!(Header::peek(&out).is_ok());
        out[17] = 0x30;
        let err = Header::peek(&out).unwrap_err();
        assert_eq!(err, DecodeError::InvalidMajorVersion { major: 3 });
        assert_eq!(
            err.notify_type(),
            super::super::iana::NotifyType::INVALID_MAJOR_VERSION
        );
        assert!(Header::peek(&out[..27]).is_err());
    }

    #[test]
    fn flags() {
        let f = Flags::INITIATOR | Flags::RESPONSE;
        assert!(f.initiator() && f.response());
        assert_eq!(format!("{f:?}"), "Flags(0x28 I|R)");
        assert!(!Flags::default().initiator());
    }
}
