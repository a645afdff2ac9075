//! Traffic selectors (RFC 7296 §3.13.1).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::{u16_len, DecodeError, EncodeError};
use super::iana::TsType;
use super::reader::{patch_u16, Reader};

/// One traffic selector of a TSi/TSr payload.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   TS Type     |IP Protocol ID*|       Selector Length         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Start Port*         |           End Port*           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                         Starting Address*                     ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                         Ending Address*                       ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// (*) These fields depend on the TS Type; the two address-range types are
/// decoded, others are kept raw.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrafficSelector {
    /// TS_IPV4_ADDR_RANGE (7).
    Ipv4AddrRange {
        /// IP Protocol ID (0: any).
        ip_protocol_id: u8,
        /// Start Port.
        start_port: u16,
        /// End Port.
        end_port: u16,
        /// Starting Address.
        starting_address: Ipv4Addr,
        /// Ending Address.
        ending_address: Ipv4Addr,
    },
    /// TS_IPV6_ADDR_RANGE (8).
    Ipv6AddrRange {
        /// IP Protocol ID (0: any).
        ip_protocol_id: u8,
        /// Start Port.
        start_port: u16,
        /// End Port.
        end_port: u16,
        /// Starting Address.
        starting_address: Ipv6Addr,
        /// Ending Address.
        ending_address: Ipv6Addr,
    },
    /// Any other TS Type, raw.
    Unknown {
        /// TS Type.
        ts_type: TsType,
        /// The octet after TS Type (IP Protocol ID in the RFC 7296 types).
        octet1: u8,
        /// Everything after Selector Length.
        data: Vec<u8>,
    },
}

impl TrafficSelector {
    /// 0.0.0.0/0, any protocol, ports 0-65535: what a route-based tunnel negotiates.
    pub fn ipv4_any() -> TrafficSelector {
        TrafficSelector::Ipv4AddrRange {
            ip_protocol_id: 0,
            start_port: 0,
            end_port: u16::MAX,
            starting_address: Ipv4Addr::UNSPECIFIED,
            ending_address: Ipv4Addr::BROADCAST,
        }
    }

    /// ::/0, any protocol, ports 0-65535.
    pub fn ipv6_any() -> TrafficSelector {
        TrafficSelector::Ipv6AddrRange {
            ip_protocol_id: 0,
            start_port: 0,
            end_port: u16::MAX,
            starting_address: Ipv6Addr::UNSPECIFIED,
            ending_address: Ipv6Addr::from(u128::MAX),
        }
    }

    /// As an operator reads it: a prefix when the range is one
    /// (`0.0.0.0/0`, `2001:db8::/32`), else `first-last`; the protocol and
    /// ports after it when they are not "any" (`10.0.0.0/8[6/443]`).
    pub fn describe(&self) -> String {
        fn range<A: std::fmt::Display>(first: A, last: A, bits: u32, a: u128, b: u128) -> String {
            let size = b.wrapping_sub(a);
            // A prefix: the range is 2^h addresses, aligned on 2^h.
            if a <= b && size & size.wrapping_add(1) == 0 && a & size == 0 {
                format!("{first}/{}", bits - (128 - size.leading_zeros()))
            } else {
                format!("{first}-{last}")
            }
        }
        let (text, proto, start, end) = match self {
            TrafficSelector::Ipv4AddrRange {
                ip_protocol_id,
                start_port,
                end_port,
                starting_address,
                ending_address,
            } => (
                range(
                    starting_address,
                    ending_address,
                    32,
                    u128::from(u32::from(*starting_address)),
                    u128::from(u32::from(*ending_address)),
                ),
                *ip_protocol_id,
                *start_port,
                *end_port,
            ),
            TrafficSelector::Ipv6AddrRange {
                ip_protocol_id,
                start_port,
                end_port,
                starting_address,
                ending_address,
            } => (
                range(
                    starting_address,
                    ending_address,
                    128,
                    u128::from(*starting_address),
                    u128::from(*ending_address),
                ),
                *ip_protocol_id,
                *start_port,
                *end_port,
            ),
            TrafficSelector::Unknown { ts_type, .. } => return format!("TS type {}", ts_type.0),
        };
        if proto == 0 && start == 0 && end == u16::MAX {
            text
        } else if start == 0 && end == u16::MAX {
            format!("{text}[{proto}]")
        } else {
            format!("{text}[{proto}/{start}-{end}]")
        }
    }

    /// TS Type.
    pub fn ts_type(&self) -> TsType {
        match self {
            TrafficSelector::Ipv4AddrRange { .. } => TsType::TS_IPV4_ADDR_RANGE,
            TrafficSelector::Ipv6AddrRange { .. } => TsType::TS_IPV6_ADDR_RANGE,
            TrafficSelector::Unknown { ts_type, .. } => *ts_type,
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<TrafficSelector, DecodeError> {
        let ts_type = TsType(r.u8("traffic selector")?);
        let octet1 = r.u8("traffic selector")?;
        let length = usize::from(r.u16("traffic selector")?);
        let body_len = length
            .checked_sub(4)
            .filter(|n| *n <= r.remaining())
            .ok_or(DecodeError::BadLength {
                what: "traffic selector",
                length,
            })?;
        let mut b = r.sub(body_len, "traffic selector")?;
        let ts = match ts_type {
            TsType::TS_IPV4_ADDR_RANGE => {
                if body_len != 12 {
                    return Err(DecodeError::BadLength {
                        what: "TS_IPV4_ADDR_RANGE",
                        length,
                    });
                }
                TrafficSelector::Ipv4AddrRange {
                    ip_protocol_id: octet1,
                    start_port: b.u16("traffic selector")?,
                    end_port: b.u16("traffic selector")?,
                    starting_address: Ipv4Addr::from(b.array::<4>("traffic selector")?),
                    ending_address: Ipv4Addr::from(b.array::<4>("traffic selector")?),
                }
            }
            TsType::TS_IPV6_ADDR_RANGE => {
                if body_len != 36 {
                    return Err(DecodeError::BadLength {
                        what: "TS_IPV6_ADDR_RANGE",
                        length,
                    });
                }
                TrafficSelector::Ipv6AddrRange {
                    ip_protocol_id: octet1,
                    start_port: b.u16("traffic selector")?,
                    end_port: b.u16("traffic selector")?,
                    starting_address: Ipv6Addr::from(b.array::<16>("traffic selector")?),
                    ending_address: Ipv6Addr::from(b.array::<16>("traffic selector")?),
                }
            }
            other => TrafficSelector::Unknown {
                ts_type: other,
                octet1,
                data: b.rest().to_vec(),
            },
        };
        b.finish("traffic selector")?;
        Ok(ts)
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        match self {
            TrafficSelector::Ipv4AddrRange {
                ip_protocol_id,
                start_port,
                end_port,
                starting_address,
                ending_address,
            } => {
                out.extend_from_slice(&[TsType::TS_IPV4_ADDR_RANGE.0, *ip_protocol_id, 0, 0]);
                out.extend_from_slice(&start_port.to_be_bytes());
                out.extend_from_slice(&end_port.to_be_bytes());
                out.extend_from_slice(&starting_address.octets());
                out.extend_from_slice(&ending_address.octets());
            }
            TrafficSelector::Ipv6AddrRange {
                ip_protocol_id,
                start_port,
                end_port,
                starting_address,
                ending_address,
            } => {
                out.extend_from_slice(&[TsType::TS_IPV6_ADDR_RANGE.0, *ip_protocol_id, 0, 0]);
                out.extend_from_slice(&start_port.to_be_bytes());
                out.extend_from_slice(&end_port.to_be_bytes());
                out.extend_from_slice(&starting_address.octets());
                out.extend_from_slice(&ending_address.octets());
            }
            TrafficSelector::Unknown {
                ts_type,
                octet1,
                data,
            } => {
                out.extend_from_slice(&[ts_type.0, *octet1, 0, 0]);
                out.extend_from_slice(data);
            }
        }
        let length = u16_len("traffic selector", out.len() - start)?;
        patch_u16(out, start + 2, length);
        Ok(())
    }
}

/// Decodes the body of a TSi/TSr payload.
pub(crate) fn read_selectors(r: &mut Reader<'_>) -> Result<Vec<TrafficSelector>, DecodeError> {
    let count = r.u8("TS payload")?;
    let _reserved = r.take(3, "TS payload")?;
    let selectors = (0..count)
        .map(|_| TrafficSelector::read(r))
        .collect::<Result<Vec<_>, _>>()?;
    r.finish("traffic selectors")?;
    Ok(selectors)
}

/// Encodes the body of a TSi/TSr payload.
pub(crate) fn write_selectors(
    selectors: &[TrafficSelector],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.push(super::error::u8_count(
        "traffic selectors",
        selectors.len(),
    )?);
    out.extend_from_slice(&[0, 0, 0]);
    selectors.iter().try_for_each(|ts| ts.write(out))
}
