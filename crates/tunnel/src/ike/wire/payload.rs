//! Payloads (RFC 7296 §3.2–§3.16) and payload chains.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::encrypted::{Encrypted, EncryptedFragment};
use super::error::{u16_len, DecodeError, EncodeError};
use super::iana::{AuthMethod, IdType, NotifyType, PayloadType, ProtocolId};
use super::reader::{patch_u16, Reader};
use super::sa::{read_proposals, write_proposals, Proposal, Spi};
use super::ts::{read_selectors, write_selectors, TrafficSelector};

/// The Critical bit of the generic payload header.
const CRITICAL: u8 = 0x80;

/// Size of the generic payload header.
pub(crate) const GENERIC_HEADER_LEN: usize = 4;

/// One payload. Every payload starts with the generic payload header:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Next Payload and Payload Length are framing, derived when encoding a
/// chain. The Critical bit is ignored on payload types we recognize and
/// sent as zero for them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Payload {
    /// SA (33): the proposals (§3.3), one after the other:
    ///
    /// ```text
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ~                          <Proposals>                          ~
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    Sa(Vec<Proposal>),
    /// KE (34).
    Ke(KeyExchange),
    /// IDi (35).
    IdI(Identification),
    /// IDr (36).
    IdR(Identification),
    /// AUTH (39).
    Auth(Authentication),
    /// Ni, Nr (40): the Nonce Data, 16 to 256 octets (§3.9).
    Nonce(Vec<u8>),
    /// N (41).
    Notify(Notify),
    /// D (42).
    Delete(Delete),
    /// V (43): the Vendor ID, opaque (§3.12).
    VendorId(Vec<u8>),
    /// TSi (44): the initiator's traffic selectors. The body of TSi and TSr:
    ///
    /// ```text
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// | Number of TSs |                 RESERVED                      |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ~                       <Traffic Selectors>                     ~
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    TsI(Vec<TrafficSelector>),
    /// TSr (45): the responder's traffic selectors.
    TsR(Vec<TrafficSelector>),
    /// SK (46): must be the last payload.
    Encrypted(Encrypted),
    /// SKF (53, RFC 7383): must be the last payload.
    EncryptedFragment(EncryptedFragment),
    /// Any other type (including CERT, CERTREQ, CP and EAP), raw.
    Unknown(UnknownPayload),
}

impl Payload {
    /// The payload type announced in the previous Next Payload field.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Auth(_) => PayloadType::AUTH,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::Encrypted(_) => PayloadType::SK,
            Payload::EncryptedFragment(_) => PayloadType::SKF,
            Payload::Unknown(u) => u.payload_type,
        }
    }
}

/// A payload kept raw: one we do not decode, or do not know.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownPayload {
    /// Its type.
    pub payload_type: PayloadType,
    /// The Critical bit as received.
    pub critical: bool,
    /// The payload after the generic header.
    pub body: Vec<u8>,
}

/// Key Exchange payload (§3.4).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Diffie-Hellman Group Num    |           RESERVED            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                       Key Exchange Data                       ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyExchange {
    /// Diffie-Hellman Group Num (a transform type 4 ID).
    pub dh_group: u16,
    /// Key Exchange Data: the public value.
    pub data: Vec<u8>,
}

/// Identification payload, IDi or IDr (§3.5).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   ID Type     |                 RESERVED                      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                   Identification Data                         ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// The AUTH computation signs this body (ID Type, RESERVED, data), which
/// [`Identification::body`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identification {
    /// ID Type.
    pub id_type: IdType,
    /// Identification Data.
    pub data: Vec<u8>,
}

impl Identification {
    /// ID_IPV4_ADDR.
    pub fn ipv4(addr: Ipv4Addr) -> Identification {
        Identification {
            id_type: IdType::ID_IPV4_ADDR,
            data: addr.octets().to_vec(),
        }
    }

    /// ID_IPV6_ADDR.
    pub fn ipv6(addr: Ipv6Addr) -> Identification {
        Identification {
            id_type: IdType::ID_IPV6_ADDR,
            data: addr.octets().to_vec(),
        }
    }

    /// ID_FQDN.
    pub fn fqdn(name: &str) -> Identification {
        Identification {
            id_type: IdType::ID_FQDN,
            data: name.as_bytes().to_vec(),
        }
    }

    /// ID_RFC822_ADDR.
    pub fn rfc822(addr: &str) -> Identification {
        Identification {
            id_type: IdType::ID_RFC822_ADDR,
            data: addr.as_bytes().to_vec(),
        }
    }

    /// ID_KEY_ID.
    pub fn key_id(key_id: &[u8]) -> Identification {
        Identification {
            id_type: IdType::ID_KEY_ID,
            data: key_id.to_vec(),
        }
    }

    /// The payload body without the generic header (RestOfInitIDPayload /
    /// RestOfRespIDPayload of §2.15).
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.data.len());
        self.write(&mut out);
        out
    }

    fn read(r: &mut Reader<'_>) -> Result<Identification, DecodeError> {
        let id_type = IdType(r.u8("ID payload")?);
        let _reserved = r.take(3, "ID payload")?;
        Ok(Identification {
            id_type,
            data: r.rest().to_vec(),
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.id_type.0, 0, 0, 0]);
        out.extend_from_slice(&self.data);
    }
}

/// Authentication payload (§3.8).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Auth Method   |                RESERVED                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                      Authentication Data                      ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authentication {
    /// Auth Method.
    pub auth_method: AuthMethod,
    /// Authentication Data.
    pub data: Vec<u8>,
}

/// Notify payload (§3.10).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Protocol ID  |   SPI Size    |      Notify Message Type      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                Security Parameter Index (SPI)                 ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                       Notification Data                       ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notify {
    /// Protocol ID: 0 when the SPI is empty, else the SPI's protocol.
    pub protocol_id: ProtocolId,
    /// SPI (empty for most notifies).
    pub spi: Spi,
    /// Notify Message Type.
    pub notify_type: NotifyType,
    /// Notification Data.
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify without SPI (Protocol ID 0).
    pub fn new(notify_type: NotifyType, data: Vec<u8>) -> Notify {
        Notify {
            protocol_id: ProtocolId(0),
            spi: Spi::Empty,
            notify_type,
            data,
        }
    }

    /// A notify about an SA, e.g. REKEY_SA for a Child SA.
    pub fn with_spi(
        protocol_id: ProtocolId,
        spi: Spi,
        notify_type: NotifyType,
        data: Vec<u8>,
    ) -> Notify {
        Notify {
            protocol_id,
            spi,
            notify_type,
            data,
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Notify, DecodeError> {
        let protocol_id = ProtocolId(r.u8("Notify payload")?);
        let spi_size = r.u8("Notify payload")?;
        let notify_type = NotifyType(r.u16("Notify payload")?);
        let spi = Spi::read(r, spi_size, "Notify SPI")?;
        Ok(Notify {
            protocol_id,
            spi,
            notify_type,
            data: r.rest().to_vec(),
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.protocol_id.0, self.spi.size()]);
        out.extend_from_slice(&self.notify_type.0.to_be_bytes());
        self.spi.write(out);
        out.extend_from_slice(&self.data);
    }
}

/// Delete payload (§3.11).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Protocol ID   |   SPI Size    |          Num of SPIs          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~               Security Parameter Index(es) (SPI)              ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// For the IKE SA the SPI Size and the number of SPIs are zero (the SA is
/// the one the message belongs to); for AH and ESP (and any other
/// protocol) the SPIs are four octets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delete {
    /// Protocol ID.
    pub protocol_id: ProtocolId,
    /// The SPIs of the Child SAs, as the receiver of the Delete knows them
    /// (its outbound SAs); empty for IKE.
    pub spis: Vec<u32>,
}

impl Delete {
    /// Deletes the IKE SA.
    pub fn ike() -> Delete {
        Delete {
            protocol_id: ProtocolId::IKE,
            spis: Vec::new(),
        }
    }

    /// Deletes ESP Child SAs.
    pub fn esp(spis: Vec<u32>) -> Delete {
        Delete {
            protocol_id: ProtocolId::ESP,
            spis,
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Delete, DecodeError> {
        let protocol_id = ProtocolId(r.u8("Delete payload")?);
        let spi_size = r.u8("Delete payload")?;
        let num_spis = r.u16("Delete payload")?;
        let expected_size = if protocol_id == ProtocolId::IKE { 0 } else { 4 };
        if spi_size != expected_size {
            return Err(DecodeError::InvalidValue {
                what: "Delete SPI Size",
                value: spi_size.into(),
            });
        }
        if protocol_id == ProtocolId::IKE && num_spis != 0 {
            return Err(DecodeError::InvalidValue {
                what: "Delete Num of SPIs for IKE",
                value: num_spis.into(),
            });
        }
        let spis = (0..num_spis)
            .map(|_| r.u32("Delete SPIs"))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish("Delete SPIs")?;
        Ok(Delete { protocol_id, spis })
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let ike = self.protocol_id == ProtocolId::IKE;
        if ike && !self.spis.is_empty() {
            return Err(EncodeError::InvalidValue {
                what: "Delete SPIs for IKE",
                value: self.spis.len(),
            });
        }
        let num = u16::try_from(self.spis.len()).map_err(|_| EncodeError::TooMany {
            what: "Delete SPIs",
            count: self.spis.len(),
        })?;
        out.extend_from_slice(&[self.protocol_id.0, if ike { 0 } else { 4 }]);
        out.extend_from_slice(&num.to_be_bytes());
        for spi in &self.spis {
            out.extend_from_slice(&spi.to_be_bytes());
        }
        Ok(())
    }
}

/// Nonce Data length limits (§3.9).
pub const NONCE_LEN: std::ops::RangeInclusive<usize> = 16..=256;

/// Decodes a payload chain: `first` is the type announced by the IKE
/// header (or, for decrypted SK contents, by the SK payload's Next Payload
/// field), `bytes` the payloads. An SK or SKF payload ends the chain and
/// must be last.
pub fn decode_payloads(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload>, DecodeError> {
    let mut r = Reader::new(bytes);
    let mut payloads = Vec::new();
    let mut this = first;
    while this != PayloadType::NO_NEXT_PAYLOAD {
        let next = PayloadType(r.u8("generic payload header")?);
        let critical = r.u8("generic payload header")? & CRITICAL != 0;
        let length = usize::from(r.u16("generic payload header")?);
        let body_len = length
            .checked_sub(GENERIC_HEADER_LEN)
            .filter(|n| *n <= r.remaining())
            .ok_or(DecodeError::BadLength {
                what: "payload",
                length,
            })?;
        let mut body = r.sub(body_len, "payload")?;
        let payload = decode_body(this, next, critical, &mut body)?;
        let last = matches!(
            payload,
            Payload::Encrypted(_) | Payload::EncryptedFragment(_)
        );
        payloads.push(payload);
        if last {
            r.finish("Encrypted payload, which must be last")?;
            return Ok(payloads);
        }
        this = next;
    }
    r.finish("payload chain")?;
    Ok(payloads)
}

fn decode_body(
    this: PayloadType,
    next: PayloadType,
    critical: bool,
    b: &mut Reader<'_>,
) -> Result<Payload, DecodeError> {
    let payload = match this {
        PayloadType::SA => Payload::Sa(read_proposals(b)?),
        PayloadType::KE => {
            let dh_group = b.u16("KE payload")?;
            let _reserved = b.u16("KE payload")?;
            Payload::Ke(KeyExchange {
                dh_group,
                data: b.rest().to_vec(),
            })
        }
        PayloadType::IDI => Payload::IdI(Identification::read(b)?),
        PayloadType::IDR => Payload::IdR(Identification::read(b)?),
        PayloadType::AUTH => {
            let auth_method = AuthMethod(b.u8("AUTH payload")?);
            let _reserved = b.take(3, "AUTH payload")?;
            Payload::Auth(Authentication {
                auth_method,
                data: b.rest().to_vec(),
            })
        }
        PayloadType::NONCE => {
            let nonce = b.rest();
            if !NONCE_LEN.contains(&nonce.len()) {
                return Err(DecodeError::BadLength {
                    what: "Nonce Data",
                    length: nonce.len(),
                });
            }
            Payload::Nonce(nonce.to_vec())
        }
        PayloadType::NOTIFY => Payload::Notify(Notify::read(b)?),
        PayloadType::DELETE => Payload::Delete(Delete::read(b)?),
        PayloadType::VENDOR_ID => Payload::VendorId(b.rest().to_vec()),
        PayloadType::TSI => Payload::TsI(read_selectors(b)?),
        PayloadType::TSR => Payload::TsR(read_selectors(b)?),
        PayloadType::SK => Payload::Encrypted(Encrypted {
            next_payload: next,
            body: b.rest().to_vec(),
        }),
        PayloadType::SKF => Payload::EncryptedFragment(EncryptedFragment {
            next_payload: next,
            fragment_number: b.u16("SKF payload")?,
            total_fragments: b.u16("SKF payload")?,
            body: b.rest().to_vec(),
        }),
        other => {
            if critical && !other.is_recognized() {
                return Err(DecodeError::UnsupportedCriticalPayload {
                    payload_type: other,
                });
            }
            Payload::Unknown(UnknownPayload {
                payload_type: other,
                critical,
                body: b.rest().to_vec(),
            })
        }
    };
    b.finish("payload")?;
    Ok(payload)
}

/// Encodes a payload chain; returns the type of the first payload (for the
/// IKE header or the SK payload's Next Payload field) and the bytes.
pub fn encode_payloads(payloads: &[Payload]) -> Result<(PayloadType, Vec<u8>), EncodeError> {
    let mut out = Vec::new();
    let first = write_payloads(payloads, &mut out)?;
    Ok((first, out))
}

/// Appends a payload chain to `out`; returns the type of the first payload.
pub(crate) fn write_payloads(
    payloads: &[Payload],
    out: &mut Vec<u8>,
) -> Result<PayloadType, EncodeError> {
    for (i, p) in payloads.iter().enumerate() {
        let following = payloads.get(i + 1).map(Payload::payload_type);
        let next = match p {
            Payload::Encrypted(Encrypted { next_payload, .. })
            | Payload::EncryptedFragment(EncryptedFragment { next_payload, .. }) => {
                if following.is_some() {
                    return Err(EncodeError::EncryptedNotLast);
                }
                *next_payload
            }
            Payload::Sa(_)
            | Payload::Ke(_)
            | Payload::IdI(_)
            | Payload::IdR(_)
            | Payload::Auth(_)
            | Payload::Nonce(_)
            | Payload::Notify(_)
            | Payload::Delete(_)
            | Payload::VendorId(_)
            | Payload::TsI(_)
            | Payload::TsR(_)
            | Payload::Unknown(_) => following.unwrap_or(PayloadType::NO_NEXT_PAYLOAD),
        };
        let flags = match p {
            Payload::Unknown(UnknownPayload { critical: true, .. }) => CRITICAL,
            Payload::Sa(_)
            | Payload::Ke(_)
            | Payload::IdI(_)
            | Payload::IdR(_)
            | Payload::Auth(_)
            | Payload::Nonce(_)
            | Payload::Notify(_)
            | Payload::Delete(_)
            | Payload::VendorId(_)
            | Payload::TsI(_)
            | Payload::TsR(_)
            | Payload::Encrypted(_)
            | Payload::EncryptedFragment(_)
            | Payload::Unknown(_) => 0,
        };
        let start = out.len();
        out.extend_from_slice(&[next.0, flags, 0, 0]);
        write_body(p, out)?;
        let length = u16_len("payload", out.len() - start)?;
        patch_u16(out, start + 2, length);
    }
    Ok(payloads
        .first()
        .map_or(PayloadType::NO_NEXT_PAYLOAD, Payload::payload_type))
}

fn write_body(p: &Payload, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match p {
        Payload::Sa(proposals) => write_proposals(proposals, out)?,
        Payload::Ke(ke) => {
            out.extend_from_slice(&ke.dh_group.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&ke.data);
        }
        Payload::IdI(id) | Payload::IdR(id) => id.write(out),
        Payload::Auth(auth) => {
            out.extend_from_slice(&[auth.auth_method.0, 0, 0, 0]);
            out.extend_from_slice(&auth.data);
        }
        Payload::Nonce(nonce) => {
            if !NONCE_LEN.contains(&nonce.len()) {
                return Err(EncodeError::InvalidValue {
                    what: "Nonce length",
                    value: nonce.len(),
                });
            }
            out.extend_from_slice(nonce);
        }
        Payload::Notify(n) => n.write(out),
        Payload::Delete(d) => d.write(out)?,
        Payload::VendorId(data) => out.extend_from_slice(data),
        Payload::TsI(ts) | Payload::TsR(ts) => write_selectors(ts, out)?,
        Payload::Encrypted(sk) => out.extend_from_slice(&sk.body),
        Payload::EncryptedFragment(skf) => {
            out.extend_from_slice(&skf.fragment_number.to_be_bytes());
            out.extend_from_slice(&skf.total_fragments.to_be_bytes());
            out.extend_from_slice(&skf.body);
        }
        Payload::Unknown(u) => out.extend_from_slice(&u.body),
    }
    Ok(())
}
