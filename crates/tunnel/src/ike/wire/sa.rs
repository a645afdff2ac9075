//! The SA payload's substructures (RFC 7296 §3.3): proposals, transforms
//! and transform attributes. Transforms are open (type, ID, attributes) so
//! unknown algorithms survive decoding; `ike::proposal` maps them to the
//! algorithms we implement.

use super::error::{u16_len, u8_count, DecodeError, EncodeError};
use super::header::IkeSpi;
use super::iana::ProtocolId;
use super::reader::{patch_u16, Reader};

/// An SPI in a Proposal or Notify: SPI Size 0, 4 (AH/ESP) or 8 (IKE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Spi {
    /// SPI Size 0 (initial IKE SA proposals, most notifies).
    #[default]
    Empty,
    /// A four-octet AH or ESP SPI.
    Child(u32),
    /// An eight-octet IKE SPI (rekeying an IKE SA).
    Ike(IkeSpi),
}

impl Spi {
    /// SPI Size on the wire.
    pub fn size(self) -> u8 {
        match self {
            Spi::Empty => 0,
            Spi::Child(_) => 4,
            Spi::Ike(_) => 8,
        }
    }

    pub(crate) fn read(
        r: &mut Reader<'_>,
        size: u8,
        what: &'static str,
    ) -> Result<Spi, DecodeError> {
        match size {
            0 => Ok(Spi::Empty),
            4 => r.u32(what).map(Spi::Child),
            8 => r.array(what).map(|a| Spi::Ike(IkeSpi(a))),
            other => Err(DecodeError::InvalidValue {
                what: "SPI Size",
                value: other.into(),
            }),
        }
    }

    pub(crate) fn write(self, out: &mut Vec<u8>) {
        match self {
            Spi::Empty => {}
            Spi::Child(spi) => out.extend_from_slice(&spi.to_be_bytes()),
            Spi::Ike(spi) => out.extend_from_slice(&spi.0),
        }
    }
}

/// Last Substruc values.
const LAST: u8 = 0;
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;

/// One proposal of an SA payload.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Last Substruc |   RESERVED    |         Proposal Length       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                        SPI (variable)                         ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                        <Transforms>                           ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Last Substruc is 0 on the last proposal and 2 on the others.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// Proposal Num: 1 for the first, then +1; a response echoes the one chosen.
    pub proposal_num: u8,
    /// Protocol ID: IKE, AH or ESP.
    pub protocol_id: ProtocolId,
    /// SPI: empty in IKE_SA_INIT, the sender's inbound SPI otherwise.
    pub spi: Spi,
    /// Transforms, in order.
    pub transforms: Vec<Transform>,
}

/// Transform Attribute Type of the Key Length attribute.
pub const ATTR_KEY_LENGTH: u16 = 14;

/// One transform of a proposal. The Key Length attribute has its own field;
/// other attributes are kept in `attributes`.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Last Substruc |   RESERVED    |        Transform Length       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Transform Type |   RESERVED    |          Transform ID         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ~                      Transform Attributes                     ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Last Substruc is 0 on the last transform of a proposal and 3 on the others.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transform {
    /// Transform Type (1 ENCR, 2 PRF, 3 INTEG, 4 DH, 5 ESN).
    pub transform_type: u8,
    /// Transform ID within that type.
    pub transform_id: u16,
    /// The Key Length attribute (14), in bits, if present.
    pub key_length: Option<u16>,
    /// Any other attributes, raw. Encoded after Key Length.
    pub attributes: Vec<Attribute>,
}

impl Transform {
    /// A transform without attributes.
    pub fn new(transform_type: u8, transform_id: u16) -> Transform {
        Transform {
            transform_type,
            transform_id,
            key_length: None,
            attributes: Vec::new(),
        }
    }

    /// A transform with a Key Length attribute (in bits).
    pub fn with_key_len(transform_type: u8, transform_id: u16, key_bits: u16) -> Transform {
        Transform {
            key_length: Some(key_bits),
            ..Transform::new(transform_type, transform_id)
        }
    }
}

/// A transform attribute, in TV (AF=1, two-octet value) or TLV (AF=0) form.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |A|       Attribute Type        |    AF=0  Attribute Length     |
/// |F|                             |    AF=1  Attribute Value      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                   AF=0  Attribute Value                       |
/// |                   AF=1  Not Transmitted                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// AF=1: a fixed two-octet value.
    Tv {
        /// Attribute Type (15 bits).
        attribute_type: u16,
        /// Attribute Value.
        value: u16,
    },
    /// AF=0: a variable-length value.
    Tlv {
        /// Attribute Type (15 bits).
        attribute_type: u16,
        /// Attribute Value.
        value: Vec<u8>,
    },
}

const AF: u16 = 0x8000;

impl Attribute {
    fn read(r: &mut Reader<'_>) -> Result<Attribute, DecodeError> {
        let first = r.u16("transform attribute")?;
        let attribute_type = first & !AF;
        let second = r.u16("transform attribute")?;
        if first & AF != 0 {
            Ok(Attribute::Tv {
                attribute_type,
                value: second,
            })
        } else {
            let value = r.take(second.into(), "transform attribute value")?.to_vec();
            Ok(Attribute::Tlv {
                attribute_type,
                value,
            })
        }
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Attribute::Tv {
                attribute_type,
                value,
            } => {
                out.extend_from_slice(&(attribute_type | AF).to_be_bytes());
                out.extend_from_slice(&value.to_be_bytes());
            }
            Attribute::Tlv {
                attribute_type,
                value,
            } => {
                out.extend_from_slice(&(attribute_type & !AF).to_be_bytes());
                out.extend_from_slice(&u16_len("transform attribute", value.len())?.to_be_bytes());
                out.extend_from_slice(value);
            }
        }
        Ok(())
    }
}

impl Transform {
    fn read(r: &mut Reader<'_>, last: bool) -> Result<Transform, DecodeError> {
        let last_substruc = r.u8("transform")?;
        let expected = if last { LAST } else { MORE_TRANSFORMS };
        if last_substruc != expected {
            return Err(DecodeError::InvalidValue {
                what: "transform Last Substruc",
                value: last_substruc.into(),
            });
        }
        let _reserved = r.u8("transform")?;
        let length = usize::from(r.u16("transform")?);
        let body_len = length.checked_sub(4).ok_or(DecodeError::BadLength {
            what: "transform",
            length,
        })?;
        if body_len < 4 || body_len > r.remaining() {
            return Err(DecodeError::BadLength {
                what: "transform",
                length,
            });
        }
        let mut t = r.sub(body_len, "transform")?;
        let transform_type = t.u8("transform")?;
        let _reserved = t.u8("transform")?;
        let transform_id = t.u16("transform")?;
        let mut transform = Transform::new(transform_type, transform_id);
        while !t.is_empty() {
            let attribute = Attribute::read(&mut t)?;
            match attribute {
                Attribute::Tv {
                    attribute_type: ATTR_KEY_LENGTH,
                    value,
                } if transform.key_length.is_none() => {
                    transform.key_length = Some(value);
                }
                Attribute::Tv { .. } | Attribute::Tlv { .. } => {
                    transform.attributes.push(attribute)
                }
            }
        }
        Ok(transform)
    }

    fn write(&self, last: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[if last { LAST } else { MORE_TRANSFORMS }, 0, 0, 0]);
        out.push(self.transform_type);
        out.push(0);
        out.extend_from_slice(&self.transform_id.to_be_bytes());
        if let Some(bits) = self.key_length {
            Attribute::Tv {
                attribute_type: ATTR_KEY_LENGTH,
                value: bits,
            }
            .write(out)?;
        }
        for a in &self.attributes {
            a.write(out)?;
        }
        let length = u16_len("transform", out.len() - start)?;
        patch_u16(out, start + 2, length);
        Ok(())
    }
}

impl Proposal {
    fn read(r: &mut Reader<'_>) -> Result<(Proposal, bool), DecodeError> {
        let last_substruc = r.u8("proposal")?;
        let last = match last_substruc {
            LAST => true,
            MORE_PROPOSALS => false,
            other => {
                return Err(DecodeError::InvalidValue {
                    what: "proposal Last Substruc",
                    value: other.into(),
                })
            }
        };
        let _reserved = r.u8("proposal")?;
        let length = usize::from(r.u16("proposal")?);
        let body_len = length.checked_sub(4).ok_or(DecodeError::BadLength {
            what: "proposal",
            length,
        })?;
        if body_len < 4 || body_len > r.remaining() {
            return Err(DecodeError::BadLength {
                what: "proposal",
                length,
            });
        }
        let mut p = r.sub(body_len, "proposal")?;
        let proposal_num = p.u8("proposal")?;
        let protocol_id = ProtocolId(p.u8("proposal")?);
        let spi_size = p.u8("proposal")?;
        let num_transforms = p.u8("proposal")?;
        let spi = Spi::read(&mut p, spi_size, "proposal SPI")?;
        let transforms = (0..num_transforms)
            .map(|i| Transform::read(&mut p, i + 1 == num_transforms))
            .collect::<Result<Vec<_>, _>>()?;
        p.finish("proposal's transforms")?;
        Ok((
            Proposal {
                proposal_num,
                protocol_id,
                spi,
                transforms,
            },
            last,
        ))
    }

    fn write(&self, last: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[if last { LAST } else { MORE_PROPOSALS }, 0, 0, 0]);
        out.push(self.proposal_num);
        out.push(self.protocol_id.0);
        out.push(self.spi.size());
        out.push(u8_count("transforms", self.transforms.len())?);
        self.spi.write(out);
        for (i, t) in self.transforms.iter().enumerate() {
            t.write(i + 1 == self.transforms.len(), out)?;
        }
        let length = u16_len("proposal", out.len() - start)?;
        patch_u16(out, start + 2, length);
        Ok(())
    }
}

/// Decodes the body of an SA payload.
pub(crate) fn read_proposals(r: &mut Reader<'_>) -> Result<Vec<Proposal>, DecodeError> {
    let mut proposals = Vec::new();
    while !r.is_empty() {
        let (p, last) = Proposal::read(r)?;
        proposals.push(p);
        if last {
            r.finish("last proposal")?;
        } else if r.is_empty() {
            return Err(DecodeError::Truncated {
                what: "SA payload (more proposals announced)",
            });
        }
    }
    Ok(proposals)
}

/// Encodes the body of an SA payload.
pub(crate) fn write_proposals(
    proposals: &[Proposal],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    for (i, p) in proposals.iter().enumerate() {
        p.write(i + 1 == proposals.len(), out)?;
    }
    Ok(())
}
