//! Capabilities advertised in OPEN (RFC 5492).

use super::error::{EncodeError, OpenError};
use super::iana::{Afi, CapabilityCode, Safi};
use super::reader::Reader;
use super::writer;

/// One capability (RFC 5492 §4). Capabilities we do not decode are kept with
/// their raw value, so they can be logged or compared.
///
/// ```text
/// +------------------------------+
/// | Capability Code (1 octet)    |
/// +------------------------------+
/// | Capability Length (1 octet)  |
/// +------------------------------+
/// | Capability Value (variable)  |
/// ~                              ~
/// +------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Multiprotocol extensions (RFC 4760 §8): one address family.
    ///
    /// ```text
    ///  0       7      15      23      31
    /// +-------+-------+-------+-------+
    /// |      AFI      | Res.  | SAFI  |
    /// +-------+-------+-------+-------+
    /// ```
    Multiprotocol {
        /// Address family.
        afi: Afi,
        /// Subsequent address family.
        safi: Safi,
    },
    /// Route refresh (RFC 2918 §3): no value.
    RouteRefresh,
    /// Support for 4-octet AS numbers (RFC 6793 §3): the speaker's AS.
    ///
    /// ```text
    /// +-------------------------------+
    /// | AS number (4 octets)          |
    /// +-------------------------------+
    /// ```
    FourOctetAs {
        /// The speaker's 4-octet AS number.
        asn: u32,
    },
    /// Any other capability, kept as received.
    Unknown {
        /// Capability code.
        code: CapabilityCode,
        /// Capability value.
        value: Vec<u8>,
    },
}

impl Capability {
    /// The capability code.
    pub fn code(&self) -> CapabilityCode {
        match self {
            Self::Multiprotocol { .. } => CapabilityCode::Multiprotocol,
            Self::RouteRefresh => CapabilityCode::RouteRefresh,
            Self::FourOctetAs { .. } => CapabilityCode::FourOctetAs,
            Self::Unknown { code, .. } => *code,
        }
    }

    /// Reads one capability (code, length, value).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, OpenError> {
        let malformed = |_| OpenError::Malformed { what: "capability" };
        let code = CapabilityCode::from(r.u8().map_err(malformed)?);
        let length = r.u8().map_err(malformed)?;
        let mut value = r.sub(usize::from(length)).map_err(malformed)?;
        let capability = match code {
            CapabilityCode::Multiprotocol if length == 4 => {
                let afi = Afi::from(value.u16().map_err(malformed)?);
                let _reserved = value.u8().map_err(malformed)?;
                let safi = Safi::from(value.u8().map_err(malformed)?);
                Self::Multiprotocol { afi, safi }
            }
            CapabilityCode::RouteRefresh if length == 0 => Self::RouteRefresh,
            CapabilityCode::FourOctetAs if length == 4 => {
                let asn = value.u32().map_err(malformed)?;
                if asn == 0 {
                    // RFC 7607 §2: AS 0 in the capability is a Bad Peer AS.
                    return Err(OpenError::BadPeerAs { asn });
                }
                Self::FourOctetAs { asn }
            }
            CapabilityCode::Multiprotocol
            | CapabilityCode::RouteRefresh
            | CapabilityCode::FourOctetAs => {
                return Err(OpenError::Malformed { what: "capability" })
            }
            CapabilityCode::OutboundRouteFiltering
            | CapabilityCode::ExtendedNextHop
            | CapabilityCode::ExtendedMessage
            | CapabilityCode::Role
            | CapabilityCode::GracefulRestart
            | CapabilityCode::AddPath
            | CapabilityCode::EnhancedRouteRefresh
            | CapabilityCode::LongLivedGracefulRestart
            | CapabilityCode::Fqdn
            | CapabilityCode::RouteRefreshCisco
            | CapabilityCode::Unknown(_) => Self::Unknown {
                code,
                value: value.rest().to_vec(),
            },
        };
        Ok(capability)
    }

    /// Writes one capability.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.code().into());
        let at = writer::begin_u8(out);
        match self {
            Self::Multiprotocol { afi, safi } => {
                out.extend_from_slice(&u16::from(*afi).to_be_bytes());
                out.push(0);
                out.push((*safi).into());
            }
            Self::RouteRefresh => {}
            Self::FourOctetAs { asn } => out.extend_from_slice(&asn.to_be_bytes()),
            Self::Unknown { value, .. } => out.extend_from_slice(value),
        }
        writer::end_u8(out, at, "capability value")
    }
}
