//! Path attributes (RFC 4271 §4.3, §5; RFC 1997; RFC 4760; RFC 6793).
//!
//! Decoding one attribute checks its flags and its value and answers with
//! the RFC 4271 §6.3 error; what to do about that error (RFC 7606) is
//! decided by the UPDATE decoder, which knows the whole message.

use std::net::Ipv4Addr;

use super::error::{EncodeError, UpdateError};
use super::iana::{AttributeType, AS_TRANS};
use super::mp::{MpReachNlri, MpUnreachNlri};
use super::reader::Reader;
use super::{writer, DecodeContext};

/// Attribute flags (RFC 4271 §4.3), the high four bits of the first octet
/// of an attribute.
///
/// ```text
///   0   1   2   3   4   5   6   7
/// +---+---+---+---+---+---+---+---+
/// | O | T | P | E |    unused     |
/// +---+---+---+---+---+---+---+---+
/// ```
///
/// Decoded attributes keep O, T and P as received. E only frames the length,
/// so it is dropped on decode and chosen on encode (set exactly when the
/// value exceeds 255 octets); the unused bits are dropped too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AttributeFlags(pub u8);

impl AttributeFlags {
    /// O: optional (1) or well-known (0).
    pub const OPTIONAL: Self = Self(0x80);
    /// T: transitive.
    pub const TRANSITIVE: Self = Self(0x40);
    /// P: partial (some speaker on the way did not recognize it).
    pub const PARTIAL: Self = Self(0x20);
    /// E: two-octet length.
    pub const EXTENDED_LENGTH: Self = Self(0x10);
    /// The flags of every well-known attribute: transitive.
    pub const WELL_KNOWN: Self = Self(0x40);
    /// Optional transitive.
    pub const OPTIONAL_TRANSITIVE: Self = Self(0xc0);
    /// Optional non-transitive.
    pub const OPTIONAL_NON_TRANSITIVE: Self = Self(0x80);

    /// The O bit.
    pub fn is_optional(self) -> bool {
        self.0 & Self::OPTIONAL.0 != 0
    }

    /// The T bit.
    pub fn is_transitive(self) -> bool {
        self.0 & Self::TRANSITIVE.0 != 0
    }

    /// The P bit.
    pub fn is_partial(self) -> bool {
        self.0 & Self::PARTIAL.0 != 0
    }

    /// The E bit.
    pub fn is_extended_length(self) -> bool {
        self.0 & Self::EXTENDED_LENGTH.0 != 0
    }

    /// These flags with P set, as done when passing on an optional
    /// transitive attribute that was not recognized (RFC 4271 §5).
    pub fn with_partial(self) -> Self {
        Self(self.0 | Self::PARTIAL.0)
    }

    /// Only the O and T bits.
    fn category(self) -> Self {
        Self(self.0 & (Self::OPTIONAL.0 | Self::TRANSITIVE.0))
    }
}

/// ORIGIN (RFC 4271 §5.1.1): closed, an undefined value is an error.
///
/// ```text
/// +--------------+
/// | Origin (1)   |   0 IGP, 1 EGP, 2 INCOMPLETE
/// +--------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// Interior to the originating AS.
    Igp,
    /// Learned through EGP.
    Egp,
    /// Learned by other means.
    Incomplete,
}

impl Origin {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Igp),
            1 => Some(Self::Egp),
            2 => Some(Self::Incomplete),
            _ => None,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Igp => 0,
            Self::Egp => 1,
            Self::Incomplete => 2,
        }
    }
}

/// AS_PATH segment type (RFC 4271 §4.3, RFC 5065 §3): closed, an unknown
/// type makes the AS_PATH malformed (RFC 7606 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AsPathSegmentType {
    /// 1: unordered set of ASes.
    AsSet,
    /// 2: ordered sequence of ASes.
    AsSequence,
    /// 3: sequence of member ASes of the local confederation.
    AsConfedSequence,
    /// 4: set of member ASes of the local confederation.
    AsConfedSet,
}

impl AsPathSegmentType {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::AsSet),
            2 => Some(Self::AsSequence),
            3 => Some(Self::AsConfedSequence),
            4 => Some(Self::AsConfedSet),
            _ => None,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::AsSet => 1,
            Self::AsSequence => 2,
            Self::AsConfedSequence => 3,
            Self::AsConfedSet => 4,
        }
    }
}

/// One AS_PATH segment.
///
/// ```text
/// +--------------+--------------+------------------------------+
/// | Type (1)     | Count (1)    | Count ASes, 2 or 4 octets each ~
/// +--------------+--------------+------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsPathSegment {
    /// Set or sequence.
    pub segment_type: AsPathSegmentType,
    /// The AS numbers, in order.
    pub asns: Vec<u32>,
}

/// AS_PATH (RFC 4271 §5.1.2) or AS4_PATH (RFC 6793 §3): a list of segments.
/// ASes are 4 octets on the wire when both speakers support it (and always
/// in AS4_PATH), else 2 octets; on a 2-octet encode, an AS above 65535 is
/// written as AS_TRANS and the caller adds AS4_PATH.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AsPath {
    /// Segments, in order.
    pub segments: Vec<AsPathSegment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE (empty if `asns` is).
    pub fn from_sequence(asns: Vec<u32>) -> Self {
        let segments = if asns.is_empty() {
            Vec::new()
        } else {
            vec![AsPathSegment {
                segment_type: AsPathSegmentType::AsSequence,
                asns,
            }]
        };
        Self { segments }
    }

    /// Decodes segments with 4-octet ASes if `four_octet`, else 2-octet.
    /// Malformed per RFC 7606 §7.2: an unknown segment type, a zero count,
    /// a count overrunning the value, or a stray trailing octet.
    fn decode(value: &[u8], four_octet: bool) -> Result<Self, UpdateError> {
        let malformed = |_| UpdateError::MalformedAsPath;
        let mut r = Reader::new(value);
        let mut segments = Vec::new();
        while !r.is_empty() {
            let segment_type = AsPathSegmentType::from_u8(r.u8().map_err(malformed)?)
                .ok_or(UpdateError::MalformedAsPath)?;
            let count = usize::from(r.u8().map_err(malformed)?);
            if count == 0 {
                return Err(UpdateError::MalformedAsPath);
            }
            let width = if four_octet { 4 } else { 2 };
            let mut seg = r.sub(count * width).map_err(malformed)?;
            let mut asns = Vec::with_capacity(count);
            while !seg.is_empty() {
                let asn = if four_octet {
                    seg.u32()
                } else {
                    seg.u16().map(u32::from)
                };
                asns.push(asn.map_err(malformed)?);
            }
            segments.push(AsPathSegment { segment_type, asns });
        }
        Ok(Self { segments })
    }

    /// Encodes the segments; a segment of more than 255 ASes is written as
    /// several segments of the same type, an empty one is skipped.
    fn encode(&self, four_octet: bool, out: &mut Vec<u8>) {
        for segment in &self.segments {
            for chunk in segment.asns.chunks(usize::from(u8::MAX)) {
                out.push(segment.segment_type.to_u8());
                out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
                for asn in chunk {
                    if four_octet {
                        out.extend_from_slice(&asn.to_be_bytes());
                    } else {
                        let asn = u16::try_from(*asn).unwrap_or(AS_TRANS);
                        out.extend_from_slice(&asn.to_be_bytes());
                    }
                }
            }
        }
    }
}

/// AGGREGATOR (RFC 4271 §5.1.7) or AS4_AGGREGATOR (RFC 6793 §3): the AS and
/// router that formed an aggregate.
///
/// ```text
/// +-----------------------------+-----------------------------+
/// | AS (2 octets, or 4 when both speakers support it / AS4_)  |
/// +-----------------------------+-----------------------------+
/// | IP address (4 octets)                                     |
/// +-----------------------------------------------------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    /// The aggregating AS.
    pub asn: u32,
    /// The aggregating router's address (its BGP identifier).
    pub address: Ipv4Addr,
}

impl Aggregator {
    fn decode(value: &[u8], four_octet: bool) -> Option<Self> {
        let mut r = Reader::new(value);
        let asn = if four_octet {
            r.u32().ok()?
        } else {
            u32::from(r.u16().ok()?)
        };
        let address = r.ipv4().ok()?;
        r.is_empty().then_some(Self { asn, address })
    }

    fn encode(&self, four_octet: bool, out: &mut Vec<u8>) {
        if four_octet {
            out.extend_from_slice(&self.asn.to_be_bytes());
        } else {
            let asn = u16::try_from(self.asn).unwrap_or(AS_TRANS);
            out.extend_from_slice(&asn.to_be_bytes());
        }
        out.extend_from_slice(&self.address.octets());
    }
}

/// One community (RFC 1997): four octets, by convention AS:value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    /// NO_EXPORT: not advertised outside the AS (or confederation).
    pub const NO_EXPORT: Self = Self(0xFFFF_FF01);
    /// NO_ADVERTISE: not advertised to any peer.
    pub const NO_ADVERTISE: Self = Self(0xFFFF_FF02);
    /// NO_EXPORT_SUBCONFED: not advertised to external peers.
    pub const NO_EXPORT_SUBCONFED: Self = Self(0xFFFF_FF03);

    /// The community `asn:value`.
    pub fn new(asn: u16, value: u16) -> Self {
        Self((u32::from(asn) << 16) | u32::from(value))
    }

    /// The high two octets.
    pub fn asn(self) -> u16 {
        self.0
            .to_be_bytes()
            .first_chunk::<2>()
            .map_or(0, |b| u16::from_be_bytes(*b))
    }

    /// The low two octets.
    pub fn value(self) -> u16 {
        self.0
            .to_be_bytes()
            .last_chunk::<2>()
            .map_or(0, |b| u16::from_be_bytes(*b))
    }
}

/// The value of a path attribute, decoded by type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttributeValue {
    /// ORIGIN (type 1, well-known mandatory).
    Origin(Origin),
    /// AS_PATH (type 2, well-known mandatory).
    AsPath(AsPath),
    /// NEXT_HOP (type 3, well-known mandatory for IPv4 NLRI).
    ///
    /// ```text
    /// +-------------------------------+
    /// | IPv4 address (4 octets)       |
    /// +-------------------------------+
    /// ```
    NextHop(Ipv4Addr),
    /// MULTI_EXIT_DISC (type 4, optional non-transitive): 4 octets.
    MultiExitDisc(u32),
    /// LOCAL_PREF (type 5, well-known, internal peers only): 4 octets.
    LocalPref(u32),
    /// ATOMIC_AGGREGATE (type 6, well-known discretionary): no value.
    AtomicAggregate,
    /// AGGREGATOR (type 7, optional transitive).
    Aggregator(Aggregator),
    /// COMMUNITIES (type 8, optional transitive): a non-empty list of
    /// four-octet communities.
    Communities(Vec<Community>),
    /// MP_REACH_NLRI (type 14, optional non-transitive).
    MpReachNlri(MpReachNlri),
    /// MP_UNREACH_NLRI (type 15, optional non-transitive).
    MpUnreachNlri(MpUnreachNlri),
    /// AS4_PATH (type 17, optional transitive): sent to and from speakers
    /// without 4-octet AS support.
    As4Path(AsPath),
    /// AS4_AGGREGATOR (type 18, optional transitive).
    As4Aggregator(Aggregator),
    /// An optional attribute this module does not decode, kept raw so it
    /// can be passed on (with [`AttributeFlags::with_partial`]) or dropped.
    Unknown {
        /// Type code.
        type_code: AttributeType,
        /// Value as received.
        value: Vec<u8>,
    },
}

impl AttributeValue {
    /// The type code.
    pub fn type_code(&self) -> AttributeType {
        match self {
            Self::Origin(_) => AttributeType::Origin,
            Self::AsPath(_) => AttributeType::AsPath,
            Self::NextHop(_) => AttributeType::NextHop,
            Self::MultiExitDisc(_) => AttributeType::MultiExitDisc,
            Self::LocalPref(_) => AttributeType::LocalPref,
            Self::AtomicAggregate => AttributeType::AtomicAggregate,
            Self::Aggregator(_) => AttributeType::Aggregator,
            Self::Communities(_) => AttributeType::Communities,
            Self::MpReachNlri(_) => AttributeType::MpReachNlri,
            Self::MpUnreachNlri(_) => AttributeType::MpUnreachNlri,
            Self::As4Path(_) => AttributeType::As4Path,
            Self::As4Aggregator(_) => AttributeType::As4Aggregator,
            Self::Unknown { type_code, .. } => *type_code,
        }
    }

    fn encode(&self, ctx: &DecodeContext, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Self::Origin(o) => out.push(o.to_u8()),
            Self::AsPath(p) => p.encode(ctx.four_octet_as, out),
            Self::NextHop(a) => out.extend_from_slice(&a.octets()),
            Self::MultiExitDisc(v) | Self::LocalPref(v) => out.extend_from_slice(&v.to_be_bytes()),
            Self::AtomicAggregate => {}
            Self::Aggregator(a) => a.encode(ctx.four_octet_as, out),
            Self::Communities(cs) => {
                for c in cs {
                    out.extend_from_slice(&c.0.to_be_bytes());
                }
            }
            Self::MpReachNlri(m) => m.encode(out)?,
            Self::MpUnreachNlri(m) => m.encode(out),
            Self::As4Path(p) => p.encode(true, out),
            Self::As4Aggregator(a) => a.encode(true, out),
            Self::Unknown { value, .. } => out.extend_from_slice(value),
        }
        Ok(())
    }
}

/// The O and T bits an attribute type must carry, for the types whose
/// specification fixes them.
pub(crate) fn expected_category(type_code: AttributeType) -> Option<AttributeFlags> {
    match type_code {
        AttributeType::Origin
        | AttributeType::AsPath
        | AttributeType::NextHop
        | AttributeType::LocalPref
        | AttributeType::AtomicAggregate => Some(AttributeFlags::WELL_KNOWN),
        AttributeType::MultiExitDisc
        | AttributeType::MpReachNlri
        | AttributeType::MpUnreachNlri
        | AttributeType::OriginatorId
        | AttributeType::ClusterList => Some(AttributeFlags::OPTIONAL_NON_TRANSITIVE),
        AttributeType::Aggregator
        | AttributeType::Communities
        | AttributeType::As4Path
        | AttributeType::As4Aggregator
        | AttributeType::ExtendedCommunities
        | AttributeType::LargeCommunities
        | AttributeType::OnlyToCustomer => Some(AttributeFlags::OPTIONAL_TRANSITIVE),
        AttributeType::Unknown(_) => None,
    }
}

/// One path attribute: flags and value.
///
/// ```text
/// +---------------+---------------+---------------------------+
/// | Attr. Flags   | Attr. Type    | Attr. Length (1 or 2 oct.)|
/// +---------------+---------------+---------------------------+
/// | Attribute Value (variable)                                ~
/// +-----------------------------------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathAttribute {
    /// O, T and P as received or to send (E is chosen on encode).
    pub flags: AttributeFlags,
    /// The decoded value.
    pub value: AttributeValue,
}

impl From<AttributeValue> for PathAttribute {
    fn from(value: AttributeValue) -> Self {
        Self::new(value)
    }
}

/// An attribute as framed in the attribute list, before its value is
/// decoded.
pub(crate) struct RawAttribute<'a> {
    pub(crate) flags: AttributeFlags,
    pub(crate) type_code: AttributeType,
    pub(crate) value: &'a [u8],
    /// The whole attribute: flags, type, length and value.
    pub(crate) raw: &'a [u8],
}

/// The attribute list ends inside an attribute (RFC 7606 §4).
pub(crate) struct Overrun<'a> {
    /// The type code, if it could be read.
    pub(crate) type_code: Option<AttributeType>,
    /// The octets left, from the start of the attribute.
    pub(crate) raw: &'a [u8],
}

impl<'a> RawAttribute<'a> {
    /// Frames the next attribute of the list.
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, Overrun<'a>> {
        let start = r.peek_rest();
        let mut overrun = Overrun {
            type_code: None,
            raw: start,
        };
        let Ok(flags) = r.u8().map(AttributeFlags) else {
            return Err(overrun);
        };
        let Ok(type_code) = r.u8().map(AttributeType::from) else {
            return Err(overrun);
        };
        overrun.type_code = Some(type_code);
        let length = if flags.is_extended_length() {
            r.u16().map(usize::from)
        } else {
            r.u8().map(usize::from)
        };
        let Ok(length) = length else {
            return Err(overrun);
        };
        let Ok(value) = r.take(length) else {
            *r = Reader::new(&[]);
            return Err(overrun);
        };
        let consumed = start.len().saturating_sub(r.remaining());
        Ok(Self {
            flags: AttributeFlags(flags.0 & 0xe0),
            type_code,
            value,
            raw: start.get(..consumed).unwrap_or(start),
        })
    }

    /// Checks the flags and decodes the value. `ctx` says whether AS
    /// numbers in AS_PATH and AGGREGATOR take 4 octets.
    pub(crate) fn decode(&self, ctx: &DecodeContext) -> Result<PathAttribute, UpdateError> {
        let attribute = || self.raw.to_vec();
        let type_code = self.type_code;
        let length_error = || UpdateError::AttributeLength {
            type_code,
            attribute: attribute(),
        };
        match expected_category(type_code) {
            Some(expected) if expected != self.flags.category() => {
                return Err(UpdateError::AttributeFlags {
                    type_code,
                    attribute: attribute(),
                });
            }
            Some(_) => {}
            None if !self.flags.is_optional() => {
                return Err(UpdateError::UnrecognizedWellKnownAttribute {
                    type_code,
                    attribute: attribute(),
                });
            }
            None => {}
        }
        let u32_value = || -> Result<u32, UpdateError> {
            let bytes: [u8; 4] = self.value.try_into().map_err(|_| length_error())?;
            Ok(u32::from_be_bytes(bytes))
        };
        let value = match type_code {
            AttributeType::Origin => {
                let [v] = self.value else {
                    return Err(length_error());
                };
                let origin = Origin::from_u8(*v).ok_or_else(|| UpdateError::InvalidOrigin {
                    attribute: attribute(),
                })?;
                AttributeValue::Origin(origin)
            }
            AttributeType::AsPath => {
                AttributeValue::AsPath(AsPath::decode(self.value, ctx.four_octet_as)?)
            }
            AttributeType::NextHop => {
                let address = Ipv4Addr::from(u32_value()?);
                // RFC 4271 §6.3: it must be a valid host address.
                if address.is_unspecified() || address.is_multicast() || address.is_broadcast() {
                    return Err(UpdateError::InvalidNextHop {
                        attribute: attribute(),
                    });
                }
                AttributeValue::NextHop(address)
            }
            AttributeType::MultiExitDisc => AttributeValue::MultiExitDisc(u32_value()?),
            AttributeType::LocalPref => AttributeValue::LocalPref(u32_value()?),
            AttributeType::AtomicAggregate => {
                if !self.value.is_empty() {
                    return Err(length_error());
                }
                AttributeValue::AtomicAggregate
            }
            AttributeType::Aggregator => AttributeValue::Aggregator(
                Aggregator::decode(self.value, ctx.four_octet_as).ok_or_else(length_error)?,
            ),
            AttributeType::Communities => {
                if self.value.is_empty() || self.value.len() % 4 != 0 {
                    return Err(length_error());
                }
                let mut r = Reader::new(self.value);
                let mut communities = Vec::with_capacity(self.value.len() / 4);
                while let Ok(c) = r.u32() {
                    communities.push(Community(c));
                }
                AttributeValue::Communities(communities)
            }
            AttributeType::MpReachNlri => AttributeValue::MpReachNlri(
                MpReachNlri::decode(self.value).map_err(|_| self.optional_error())?,
            ),
            AttributeType::MpUnreachNlri => AttributeValue::MpUnreachNlri(
                MpUnreachNlri::decode(self.value).map_err(|_| self.optional_error())?,
            ),
            AttributeType::As4Path => AttributeValue::As4Path(AsPath::decode(self.value, true)?),
            AttributeType::As4Aggregator => AttributeValue::As4Aggregator(
                Aggregator::decode(self.value, true).ok_or_else(length_error)?,
            ),
            AttributeType::OriginatorId
            | AttributeType::ClusterList
            | AttributeType::ExtendedCommunities
            | AttributeType::LargeCommunities
            | AttributeType::OnlyToCustomer
            | AttributeType::Unknown(_) => AttributeValue::Unknown {
                type_code,
                value: self.value.to_vec(),
            },
        };
        Ok(PathAttribute {
            flags: self.flags,
            value,
        })
    }

    fn optional_error(&self) -> UpdateError {
        UpdateError::OptionalAttribute {
            type_code: self.type_code,
            attribute: self.raw.to_vec(),
        }
    }
}

impl PathAttribute {
    /// An attribute with the flags its type calls for; an unknown type gets
    /// optional transitive (set `flags` yourself to say otherwise).
    pub fn new(value: AttributeValue) -> Self {
        let flags =
            expected_category(value.type_code()).unwrap_or(AttributeFlags::OPTIONAL_TRANSITIVE);
        Self { flags, value }
    }

    /// The type code.
    pub fn type_code(&self) -> AttributeType {
        self.value.type_code()
    }

    /// Decodes exactly one attribute (header and value) on its own, checking
    /// flags and value. The RFC 7606 handling of an error depends on the
    /// rest of the UPDATE: see [`ErrorHandling::for_attribute`].
    ///
    /// [`ErrorHandling::for_attribute`]: super::ErrorHandling::for_attribute
    pub fn decode(buf: &[u8], ctx: &DecodeContext) -> Result<Self, UpdateError> {
        let mut r = Reader::new(buf);
        let raw = RawAttribute::read(&mut r).map_err(|o| UpdateError::AttributeLength {
            type_code: o.type_code.unwrap_or(AttributeType::Unknown(0)),
            attribute: o.raw.to_vec(),
        })?;
        if !r.is_empty() {
            return Err(UpdateError::MalformedAttributeList);
        }
        raw.decode(ctx)
    }

    /// Encodes the attribute: O, T and P from `flags`, E when the value
    /// exceeds 255 octets.
    pub fn encode(&self, ctx: &DecodeContext, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let flags = self.flags.0 & 0xe0;
        let start = out.len();
        out.push(flags | AttributeFlags::EXTENDED_LENGTH.0);
        out.push(self.type_code().into());
        let at = writer::begin_u16(out);
        self.value.encode(ctx, out)?;
        let length = out.len().saturating_sub(at + 2);
        match u8::try_from(length) {
            Ok(short) => {
                // Fits one octet: drop the E bit and the second length octet.
                if let Some(f) = out.get_mut(start) {
                    *f = flags;
                }
                if let Some(l) = out.get_mut(at) {
                    *l = short;
                }
                out.remove(at + 1);
                Ok(())
            }
            Err(_) => writer::end_u16(out, at, "attribute value"),
        }
    }
}
