//! The UPDATE message (RFC 4271 §4.3) and its revised error handling
//! (RFC 7606).
//!
//! [`Update::decode`] returns `Err` only for the errors that reset the
//! session. Everything RFC 7606 softens comes back inside the `Ok` value:
//!
//! - treat-as-withdraw: [`Update::treat_as_withdraw`] holds the reason and
//!   every prefix the UPDATE announced; those prefixes are removed from
//!   `nlri` and MP_REACH_NLRI is removed from `path_attributes`, so nothing
//!   of the UPDATE can be installed by mistake. Withdrawals (the withdrawn
//!   routes field, MP_UNREACH_NLRI) still apply.
//! - attribute discard: [`Update::discarded_attributes`] lists what was
//!   dropped and why; the rest of the UPDATE stands.
//!
//! The outcomes, by cause:
//!
//! | cause | outcome |
//! |---|---|
//! | withdrawn routes / attribute lengths overrun the message (RFC 4271 §6.3) | session reset, Malformed Attribute List |
//! | a prefix in withdrawn routes or NLRI does not parse (RFC 7606 §5.3) | session reset, Invalid Network Field |
//! | MP_REACH_NLRI or MP_UNREACH_NLRI twice (RFC 7606 §3 g) | session reset, Malformed Attribute List |
//! | MP_REACH_NLRI / MP_UNREACH_NLRI malformed, or cut off (§7.11, §4) | session reset, Optional Attribute Error / Attribute Length Error |
//! | unrecognized well-known attribute (RFC 4271 §6.3) | session reset |
//! | last attribute overruns the list, or fewer than 3 octets left (§4) | treat-as-withdraw; the NLRI is found through Total Path Attribute Length |
//! | ORIGIN, AS_PATH, MED, COMMUNITIES malformed or with wrong flags (§7) | treat-as-withdraw |
//! | NEXT_HOP malformed, with IPv4 NLRI / without (§7.3, RFC 4760 §3) | treat-as-withdraw / attribute discard |
//! | LOCAL_PREF from an internal peer, malformed (§7.5) | treat-as-withdraw |
//! | LOCAL_PREF from an external peer (§7.5) | attribute discard |
//! | ATOMIC_AGGREGATE, AGGREGATOR, AS4_PATH, AS4_AGGREGATOR malformed (§7.6, §7.7, RFC 6793 §6) | attribute discard |
//! | AS4_PATH / AS4_AGGREGATOR from a 4-octet peer (RFC 6793 §4.1) | attribute discard |
//! | an attribute repeated (§3 g) | the repeats are discarded |
//! | ORIGIN, AS_PATH or NEXT_HOP missing where routes are announced (§3 d) | treat-as-withdraw |

use std::net::Ipv4Addr;

use ipnet::{Ipv4Net, Ipv6Net};

use super::attribute::{AsPath, AttributeValue, Origin, PathAttribute, RawAttribute};
use super::error::{EncodeError, ErrorHandling, UpdateError};
use super::iana::{Afi, AttributeType, Safi};
use super::mp::{MpReachNlri, MpUnreachNlri};
use super::reader::Reader;
use super::{nlri, writer, DecodeContext};

/// UPDATE (RFC 4271 §4.3). IPv6 routes travel in the MP_REACH_NLRI and
/// MP_UNREACH_NLRI attributes. Attributes are encoded in the order given;
/// RFC 7606 §5.1 asks that MP_REACH_NLRI / MP_UNREACH_NLRI come first.
///
/// ```text
/// +-----------------------------------------------------+
/// |   Withdrawn Routes Length (2 octets)                |
/// +-----------------------------------------------------+
/// |   Withdrawn Routes (variable)                       |
/// +-----------------------------------------------------+
/// |   Total Path Attribute Length (2 octets)            |
/// +-----------------------------------------------------+
/// |   Path Attributes (variable)                        |
/// +-----------------------------------------------------+
/// |   Network Layer Reachability Information (variable) |
/// +-----------------------------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Update {
    /// IPv4 prefixes withdrawn.
    pub withdrawn_routes: Vec<Ipv4Net>,
    /// Path attributes, in wire order.
    pub path_attributes: Vec<PathAttribute>,
    /// IPv4 prefixes announced with these attributes.
    pub nlri: Vec<Ipv4Net>,
    /// Decode only: set when RFC 7606 says to treat the UPDATE as a
    /// withdrawal. Ignored on encode.
    pub treat_as_withdraw: Option<TreatAsWithdraw>,
    /// Decode only: attributes dropped under RFC 7606 / RFC 6793. Ignored on
    /// encode.
    pub discarded_attributes: Vec<DiscardedAttribute>,
}

/// An UPDATE to be treated as a withdrawal (RFC 7606 §2): withdraw these
/// prefixes, as well as the UPDATE's own withdrawals, and keep the session.
/// Prefixes of other address families in MP_REACH_NLRI are not listed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TreatAsWithdraw {
    /// The error that RFC 4271 would have answered with a NOTIFICATION; for
    /// the log.
    pub reason: UpdateError,
    /// IPv4 prefixes announced (NLRI field and MP_REACH_NLRI).
    pub ipv4: Vec<Ipv4Net>,
    /// IPv6 prefixes announced (MP_REACH_NLRI).
    pub ipv6: Vec<Ipv6Net>,
}

/// An attribute dropped from a received UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DiscardedAttribute {
    /// Its type code.
    pub type_code: AttributeType,
    /// Why it was dropped.
    pub reason: DiscardReason,
}

/// Why an attribute was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DiscardReason {
    /// Malformed, and RFC 7606 says "attribute discard".
    Malformed(UpdateError),
    /// It repeats an attribute already seen (RFC 7606 §3 g).
    Duplicate,
    /// LOCAL_PREF from an external peer (RFC 4271 §5.1.5, RFC 7606 §7.5).
    LocalPrefFromExternalPeer,
    /// AS4_PATH or AS4_AGGREGATOR from a peer that supports 4-octet AS
    /// numbers (RFC 6793 §4.1).
    As4FromFourOctetPeer,
}

/// A set of attribute type codes.
#[derive(Default)]
struct TypeSet([u64; 4]);

impl TypeSet {
    /// Adds `t`; returns false if it was already there.
    fn insert(&mut self, t: AttributeType) -> bool {
        let code = u8::from(t);
        let bit = 1u64 << (code % 64);
        match self.0.get_mut(usize::from(code / 64)) {
            Some(word) if *word & bit == 0 => {
                *word |= bit;
                true
            }
            Some(_) | None => false,
        }
    }
}

fn is_mp(t: AttributeType) -> bool {
    match t {
        AttributeType::MpReachNlri | AttributeType::MpUnreachNlri => true,
        AttributeType::Origin
        | AttributeType::AsPath
        | AttributeType::NextHop
        | AttributeType::MultiExitDisc
        | AttributeType::LocalPref
        | AttributeType::AtomicAggregate
        | AttributeType::Aggregator
        | AttributeType::Communities
        | AttributeType::OriginatorId
        | AttributeType::ClusterList
        | AttributeType::ExtendedCommunities
        | AttributeType::As4Path
        | AttributeType::As4Aggregator
        | AttributeType::LargeCommunities
        | AttributeType::OnlyToCustomer
        | AttributeType::Unknown(_) => false,
    }
}

impl Update {
    /// Decodes an UPDATE body (the octets after the message header) with
    /// the revised error handling of RFC 7606; see the module documentation.
    pub fn decode(body: &[u8], ctx: &DecodeContext) -> Result<Self, UpdateError> {
        let list = |_| UpdateError::MalformedAttributeList;
        let network = |_| UpdateError::InvalidNetworkField;
        let mut r = Reader::new(body);
        let withdrawn_length = r.u16().map_err(list)?;
        let withdrawn = r.take(usize::from(withdrawn_length)).map_err(list)?;
        let attributes_length = r.u16().map_err(list)?;
        let attributes = r.take(usize::from(attributes_length)).map_err(list)?;
        let mut update = Update {
            withdrawn_routes: nlri::decode_ipv4(withdrawn).map_err(network)?,
            nlri: nlri::decode_ipv4(r.rest()).map_err(network)?,
            ..Update::default()
        };
        let announces_ipv4 = !update.nlri.is_empty();
        let mut treat_as_withdraw = None;
        let mut seen = TypeSet::default();
        let mut r = Reader::new(attributes);
        while !r.is_empty() {
            let raw = match RawAttribute::read(&mut r) {
                Ok(raw) => raw,
                Err(overrun) => {
                    // RFC 7606 §4: the list ends inside an attribute. The NLRI
                    // field is still found through the total length, unless
                    // the broken attribute is the one carrying NLRI.
                    let type_code = overrun.type_code.unwrap_or(AttributeType::Unknown(0));
                    let error = UpdateError::AttributeLength {
                        type_code,
                        attribute: overrun.raw.to_vec(),
                    };
                    if is_mp(type_code) {
                        return Err(error);
                    }
                    treat_as_withdraw.get_or_insert(error);
                    break;
                }
            };
            let type_code = raw.type_code;
            let discard = |reason| DiscardedAttribute { type_code, reason };
            if !seen.insert(type_code) {
                if is_mp(type_code) {
                    return Err(UpdateError::MalformedAttributeList);
                }
                update
                    .discarded_attributes
                    .push(discard(DiscardReason::Duplicate));
                continue;
            }
            if type_code == AttributeType::LocalPref && !ctx.internal_peer {
                let reason = DiscardReason::LocalPrefFromExternalPeer;
                update.discarded_attributes.push(discard(reason));
                continue;
            }
            if ctx.four_octet_as
                && (type_code == AttributeType::As4Path
                    || type_code == AttributeType::As4Aggregator)
            {
                let reason = DiscardReason::As4FromFourOctetPeer;
                update.discarded_attributes.push(discard(reason));
                continue;
            }
            match raw.decode(ctx) {
                Ok(attribute) => update.path_attributes.push(attribute),
                Err(error) => match ErrorHandling::for_attribute(type_code, ctx, announces_ipv4) {
                    ErrorHandling::SessionReset => return Err(error),
                    ErrorHandling::TreatAsWithdraw => {
                        treat_as_withdraw.get_or_insert(error);
                    }
                    ErrorHandling::AttributeDiscard => {
                        let reason = DiscardReason::Malformed(error);
                        update.discarded_attributes.push(discard(reason));
                    }
                },
            }
        }
        if treat_as_withdraw.is_none() {
            treat_as_withdraw = update
                .missing_well_known()
                .map(|type_code| UpdateError::MissingWellKnownAttribute { type_code });
        }
        if let Some(reason) = treat_as_withdraw {
            update.withdraw_announced(reason);
        }
        Ok(update)
    }

    /// The first well-known mandatory attribute missing from an UPDATE that
    /// announces routes (RFC 7606 §3 d: NEXT_HOP only with IPv4 NLRI).
    fn missing_well_known(&self) -> Option<AttributeType> {
        let reach = self.mp_reach_nlri().is_some();
        let ipv4 = !self.nlri.is_empty();
        [
            (AttributeType::Origin, ipv4 || reach),
            (AttributeType::AsPath, ipv4 || reach),
            (AttributeType::NextHop, ipv4),
        ]
        .into_iter()
        .find(|(t, needed)| *needed && self.attribute(*t).is_none())
        .map(|(t, _)| t)
    }

    /// Moves every announced prefix into a [`TreatAsWithdraw`].
    fn withdraw_announced(&mut self, reason: UpdateError) {
        let mut ipv4 = std::mem::take(&mut self.nlri);
        let mut ipv6 = Vec::new();
        self.path_attributes.retain(|a| {
            if let AttributeValue::MpReachNlri(reach) = &a.value {
                match reach {
                    MpReachNlri::Ipv4Unicast { nlri, .. } => ipv4.extend_from_slice(nlri),
                    MpReachNlri::Ipv6Unicast { nlri, .. } => ipv6.extend_from_slice(nlri),
                    MpReachNlri::Other { .. } => {}
                }
                false
            } else {
                true
            }
        });
        self.treat_as_withdraw = Some(TreatAsWithdraw { reason, ipv4, ipv6 });
    }

    /// Encodes the UPDATE body.
    pub fn encode(&self, ctx: &DecodeContext, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let at = writer::begin_u16(out);
        nlri::encode_ipv4(&self.withdrawn_routes, out);
        writer::end_u16(out, at, "withdrawn routes")?;
        let at = writer::begin_u16(out);
        for attribute in &self.path_attributes {
            attribute.encode(ctx, out)?;
        }
        writer::end_u16(out, at, "path attributes")?;
        nlri::encode_ipv4(&self.nlri, out);
        Ok(())
    }

    /// The value of the first attribute of type `type_code`.
    pub fn attribute(&self, type_code: AttributeType) -> Option<&AttributeValue> {
        self.path_attributes
            .iter()
            .find(|a| a.type_code() == type_code)
            .map(|a| &a.value)
    }

    /// ORIGIN.
    pub fn origin(&self) -> Option<Origin> {
        if let Some(AttributeValue::Origin(o)) = self.attribute(AttributeType::Origin) {
            Some(*o)
        } else {
            None
        }
    }

    /// AS_PATH.
    pub fn as_path(&self) -> Option<&AsPath> {
        if let Some(AttributeValue::AsPath(p)) = self.attribute(AttributeType::AsPath) {
            Some(p)
        } else {
            None
        }
    }

    /// NEXT_HOP.
    pub fn next_hop(&self) -> Option<Ipv4Addr> {
        if let Some(AttributeValue::NextHop(a)) = self.attribute(AttributeType::NextHop) {
            Some(*a)
        } else {
            None
        }
    }

    /// MP_REACH_NLRI.
    pub fn mp_reach_nlri(&self) -> Option<&MpReachNlri> {
        if let Some(AttributeValue::MpReachNlri(m)) = self.attribute(AttributeType::MpReachNlri) {
            Some(m)
        } else {
            None
        }
    }

    /// MP_UNREACH_NLRI.
    pub fn mp_unreach_nlri(&self) -> Option<&MpUnreachNlri> {
        if let Some(AttributeValue::MpUnreachNlri(m)) = self.attribute(AttributeType::MpUnreachNlri)
        {
            Some(m)
        } else {
            None
        }
    }

    /// The address family this UPDATE marks the End-of-RIB of (RFC 4724
    /// §2): an empty UPDATE for IPv4 unicast, or one holding only an empty
    /// MP_UNREACH_NLRI.
    pub fn end_of_rib(&self) -> Option<(Afi, Safi)> {
        if !self.withdrawn_routes.is_empty() || !self.nlri.is_empty() {
            return None;
        }
        match self.path_attributes.as_slice() {
            [] => Some((Afi::Ipv4, Safi::Unicast)),
            [only] => match &only.value {
                AttributeValue::MpUnreachNlri(m) if m.is_empty() => Some((m.afi(), m.safi())),
                AttributeValue::Origin(_)
                | AttributeValue::AsPath(_)
                | AttributeValue::NextHop(_)
                | AttributeValue::MultiExitDisc(_)
                | AttributeValue::LocalPref(_)
                | AttributeValue::AtomicAggregate
                | AttributeValue::Aggregator(_)
                | AttributeValue::Communities(_)
                | AttributeValue::MpReachNlri(_)
                | AttributeValue::MpUnreachNlri(_)
                | AttributeValue::As4Path(_)
                | AttributeValue::As4Aggregator(_)
                | AttributeValue::Unknown { .. } => None,
            },
            _ => None,
        }
    }
}
