//! MP_REACH_NLRI and MP_UNREACH_NLRI (RFC 4760 §3, §4): routes of other
//! address families, decoded for IPv4 and IPv6 unicast and kept raw for the
//! rest.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::error::EncodeError;
use super::iana::{Afi, Safi};
use super::nlri;
use super::reader::{Reader, Truncated};
use super::writer;

/// The address families this module decodes.
enum Family {
    Ipv4Unicast,
    Ipv6Unicast,
    Other,
}

fn family(afi: Afi, safi: Safi) -> Family {
    let unicast = match safi {
        Safi::Unicast => true,
        Safi::Multicast | Safi::Unknown(_) => false,
    };
    match afi {
        Afi::Ipv4 if unicast => Family::Ipv4Unicast,
        Afi::Ipv6 if unicast => Family::Ipv6Unicast,
        Afi::Ipv4 | Afi::Ipv6 | Afi::Unknown(_) => Family::Other,
    }
}

/// The attribute does not parse: RFC 7606 §7.11 and §5.3 leave only a
/// session reset (or disabling the address family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

impl From<Truncated> for Malformed {
    fn from(_: Truncated) -> Self {
        Self
    }
}

/// The next hop of an MP_REACH_NLRI: one IPv4 address, or an IPv6 global
/// address optionally followed by a link-local one (RFC 2545 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MpNextHop {
    /// 4 octets.
    Ipv4(Ipv4Addr),
    /// 16 octets, or 32 with the link-local address.
    Ipv6 {
        /// Global address.
        global: Ipv6Addr,
        /// Link-local address, if sent.
        link_local: Option<Ipv6Addr>,
    },
}

impl MpNextHop {
    fn decode(bytes: &[u8], allow_ipv4: bool) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes);
        let next_hop = match bytes.len() {
            4 if allow_ipv4 => Self::Ipv4(r.ipv4()?),
            16 => Self::Ipv6 {
                global: r.ipv6()?,
                link_local: None,
            },
            32 => Self::Ipv6 {
                global: r.ipv6()?,
                link_local: Some(r.ipv6()?),
            },
            _ => return Err(Malformed),
        };
        Ok(next_hop)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Ipv4(a) => out.extend_from_slice(&a.octets()),
            Self::Ipv6 { global, link_local } => {
                out.extend_from_slice(&global.octets());
                if let Some(ll) = link_local {
                    out.extend_from_slice(&ll.octets());
                }
            }
        }
    }
}

/// MP_REACH_NLRI (RFC 4760 §3): reachable routes of one address family.
/// An IPv4 unicast next hop may be IPv4 or IPv6 (RFC 8950); an IPv6 unicast
/// next hop is IPv6.
///
/// ```text
/// +---------------------------------------------------------+
/// | Address Family Identifier (2 octets)                    |
/// | Subsequent Address Family Identifier (1 octet)          |
/// | Length of Next Hop Network Address (1 octet)            |
/// | Network Address of Next Hop (variable)                  |
/// | Reserved (1 octet, zero)                                |
/// | Network Layer Reachability Information (variable)       |
/// +---------------------------------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MpReachNlri {
    /// AFI 1, SAFI 1.
    Ipv4Unicast {
        /// Next hop.
        next_hop: MpNextHop,
        /// Announced prefixes.
        nlri: Vec<Ipv4Net>,
    },
    /// AFI 2, SAFI 1.
    Ipv6Unicast {
        /// Next hop.
        next_hop: MpNextHop,
        /// Announced prefixes.
        nlri: Vec<Ipv6Net>,
    },
    /// Any other family, kept raw.
    Other {
        /// Address family.
        afi: Afi,
        /// Subsequent address family.
        safi: Safi,
        /// Next hop octets.
        next_hop: Vec<u8>,
        /// NLRI octets.
        nlri: Vec<u8>,
    },
}

impl MpReachNlri {
    /// Address family.
    pub fn afi(&self) -> Afi {
        match self {
            Self::Ipv4Unicast { .. } => Afi::Ipv4,
            Self::Ipv6Unicast { .. } => Afi::Ipv6,
            Self::Other { afi, .. } => *afi,
        }
    }

    /// Subsequent address family.
    pub fn safi(&self) -> Safi {
        match self {
            Self::Ipv4Unicast { .. } | Self::Ipv6Unicast { .. } => Safi::Unicast,
            Self::Other { safi, .. } => *safi,
        }
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(value);
        let afi = Afi::from(r.u16()?);
        let safi = Safi::from(r.u8()?);
        let nh_len = r.u8()?;
        let next_hop = r.take(usize::from(nh_len))?;
        let _reserved = r.u8()?;
        let nlri = r.rest();
        let reach = match family(afi, safi) {
            Family::Ipv4Unicast => Self::Ipv4Unicast {
                next_hop: MpNextHop::decode(next_hop, true)?,
                nlri: nlri::decode_ipv4(nlri).map_err(|_| Malformed)?,
            },
            Family::Ipv6Unicast => Self::Ipv6Unicast {
                next_hop: MpNextHop::decode(next_hop, false)?,
                nlri: nlri::decode_ipv6(nlri).map_err(|_| Malformed)?,
            },
            Family::Other => Self::Other {
                afi,
                safi,
                next_hop: next_hop.to_vec(),
                nlri: nlri.to_vec(),
            },
        };
        Ok(reach)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&u16::from(self.afi()).to_be_bytes());
        out.push(self.safi().into());
        let at = writer::begin_u8(out);
        match self {
            Self::Ipv4Unicast { next_hop, .. } | Self::Ipv6Unicast { next_hop, .. } => {
                next_hop.encode(out);
            }
            Self::Other { next_hop, .. } => out.extend_from_slice(next_hop),
        }
        writer::end_u8(out, at, "MP_REACH_NLRI next hop")?;
        out.push(0);
        match self {
            Self::Ipv4Unicast { nlri, .. } => nlri::encode_ipv4(nlri, out),
            Self::Ipv6Unicast { nlri, .. } => nlri::encode_ipv6(nlri, out),
            Self::Other { nlri, .. } => out.extend_from_slice(nlri),
        }
        Ok(())
    }
}

/// MP_UNREACH_NLRI (RFC 4760 §4): withdrawn routes of one address family.
/// An empty one is the End-of-RIB marker of that family (RFC 4724 §2).
///
/// ```text
/// +---------------------------------------------------------+
/// | Address Family Identifier (2 octets)                    |
/// | Subsequent Address Family Identifier (1 octet)          |
/// | Withdrawn Routes (variable)                             |
/// +---------------------------------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MpUnreachNlri {
    /// AFI 1, SAFI 1.
    Ipv4Unicast(Vec<Ipv4Net>),
    /// AFI 2, SAFI 1.
    Ipv6Unicast(Vec<Ipv6Net>),
    /// Any other family, kept raw.
    Other {
        /// Address family.
        afi: Afi,
        /// Subsequent address family.
        safi: Safi,
        /// Withdrawn routes octets.
        withdrawn: Vec<u8>,
    },
}

impl MpUnreachNlri {
    /// Address family.
    pub fn afi(&self) -> Afi {
        match self {
            Self::Ipv4Unicast(_) => Afi::Ipv4,
            Self::Ipv6Unicast(_) => Afi::Ipv6,
            Self::Other { afi, .. } => *afi,
        }
    }

    /// Subsequent address family.
    pub fn safi(&self) -> Safi {
        match self {
            Self::Ipv4Unicast(_) | Self::Ipv6Unicast(_) => Safi::Unicast,
            Self::Other { safi, .. } => *safi,
        }
    }

    /// Whether no route is listed.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Ipv4Unicast(v) => v.is_empty(),
            Self::Ipv6Unicast(v) => v.is_empty(),
            Self::Other { withdrawn, .. } => withdrawn.is_empty(),
        }
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(value);
        let afi = Afi::from(r.u16()?);
        let safi = Safi::from(r.u8()?);
        let withdrawn = r.rest();
        let unreach = match family(afi, safi) {
            Family::Ipv4Unicast => {
                Self::Ipv4Unicast(nlri::decode_ipv4(withdrawn).map_err(|_| Malformed)?)
            }
            Family::Ipv6Unicast => {
                Self::Ipv6Unicast(nlri::decode_ipv6(withdrawn).map_err(|_| Malformed)?)
            }
            Family::Other => Self::Other {
                afi,
                safi,
                withdrawn: withdrawn.to_vec(),
            },
        };
        Ok(unreach)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&u16::from(self.afi()).to_be_bytes());
        out.push(self.safi().into());
        match self {
            Self::Ipv4Unicast(v) => nlri::encode_ipv4(v, out),
            Self::Ipv6Unicast(v) => nlri::encode_ipv6(v, out),
            Self::Other { withdrawn, .. } => out.extend_from_slice(withdrawn),
        }
    }
}
