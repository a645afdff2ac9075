//! The OPEN message (RFC 4271 §4.2) and its optional parameters (RFC 5492,
//! RFC 9072).

use std::net::Ipv4Addr;

use super::capability::Capability;
use super::error::{EncodeError, OpenError};
use super::iana::{ParameterType, AS_TRANS};
use super::reader::Reader;
use super::{writer, BGP_VERSION};

/// OPEN (RFC 4271 §4.2). The version is always 4: any other version is
/// refused on decode and 4 is written on encode.
///
/// ```text
/// 0               8               16              24           31
/// +---------------+-------------------------------+
/// |    Version    |    My Autonomous System       |
/// +---------------+-------------------------------+---------------+
/// |          Hold Time            |     BGP Identifier  ...       |
/// +---------------+---------------+---------------+---------------+
/// |  ... BGP Identifier           | Opt Parm Len  |  Optional     |
/// +-------------------------------+---------------+  Parameters   |
/// ~                                                   (variable)  ~
/// +---------------------------------------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Open {
    /// The sender's AS number, or AS_TRANS when it needs 4 octets.
    pub my_as: u16,
    /// Proposed hold time in seconds: 0, or at least 3.
    pub hold_time: u16,
    /// The sender's BGP identifier (non-zero).
    pub bgp_identifier: Ipv4Addr,
    /// Optional parameters, in order.
    pub optional_parameters: Vec<OptionalParameter>,
}

/// An OPEN optional parameter. Only Capabilities (RFC 5492) is accepted: any
/// other type is answered with "Unsupported Optional Parameter".
///
/// ```text
/// +---------------+---------------+----------------------------+
/// |  Parm. Type   | Parm. Length  |  Parameter Value (variable) ~
/// +---------------+---------------+----------------------------+
/// ```
///
/// With RFC 9072 extended lengths, Parm. Length is two octets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OptionalParameter {
    /// Parameter type 2: a list of capabilities.
    Capabilities(Vec<Capability>),
}

impl Open {
    /// An OPEN for AS `asn` (written as AS_TRANS in My Autonomous System
    /// when it needs 4 octets) carrying `capabilities` in one parameter.
    pub fn new(
        asn: u32,
        hold_time: u16,
        bgp_identifier: Ipv4Addr,
        capabilities: Vec<Capability>,
    ) -> Self {
        let optional_parameters = if capabilities.is_empty() {
            Vec::new()
        } else {
            vec![OptionalParameter::Capabilities(capabilities)]
        };
        Self {
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_identifier,
            optional_parameters,
        }
    }

    /// Every capability, across all parameters.
    pub fn capabilities(&self) -> impl Iterator<Item = &Capability> {
        self.optional_parameters.iter().flat_map(|p| match p {
            OptionalParameter::Capabilities(caps) => caps.iter(),
        })
    }

    /// The sender's AS: from the 4-octet AS capability if present (RFC 6793
    /// §4.1), else My Autonomous System.
    pub fn asn(&self) -> u32 {
        self.capabilities()
            .find_map(|c| match c {
                Capability::FourOctetAs { asn } => Some(*asn),
                Capability::Multiprotocol { .. }
                | Capability::RouteRefresh
                | Capability::Unknown { .. } => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    /// Decodes an OPEN body (the octets after the message header), checking
    /// what RFC 4271 §6.2 and RFC 7607 ask of every OPEN. The session still
    /// checks the peer's AS and the hold time against its configuration.
    pub fn decode(body: &[u8]) -> Result<Self, OpenError> {
        let short = |_| OpenError::Malformed { what: "OPEN" };
        let mut r = Reader::new(body);
        let version = r.u8().map_err(short)?;
        if version != BGP_VERSION {
            return Err(OpenError::UnsupportedVersionNumber { version });
        }
        let my_as = r.u16().map_err(short)?;
        if my_as == 0 {
            return Err(OpenError::BadPeerAs { asn: 0 });
        }
        let hold_time = r.u16().map_err(short)?;
        if hold_time == 1 || hold_time == 2 {
            return Err(OpenError::UnacceptableHoldTime { hold_time });
        }
        let bgp_identifier = r.ipv4().map_err(short)?;
        if bgp_identifier.is_unspecified() {
            return Err(OpenError::BadBgpIdentifier {
                identifier: bgp_identifier,
            });
        }
        let malformed = |_| OpenError::Malformed {
            what: "optional parameters",
        };
        let opt_len = r.u8().map_err(short)?;
        // RFC 9072: a length of 255 followed by type 255 announces
        // two-octet lengths.
        let extended = opt_len == 255 && r.peek_rest().first() == Some(&255);
        let mut params = if extended {
            let _marker = r.u8().map_err(malformed)?;
            let length = r.u16().map_err(malformed)?;
            r.sub(usize::from(length)).map_err(malformed)?
        } else {
            r.sub(usize::from(opt_len)).map_err(malformed)?
        };
        if !r.is_empty() {
            return Err(OpenError::Malformed {
                what: "OPEN length",
            });
        }
        let mut optional_parameters = Vec::new();
        while !params.is_empty() {
            let parameter_type = ParameterType::from(params.u8().map_err(malformed)?);
            let length = if extended {
                params.u16().map_err(malformed)?
            } else {
                u16::from(params.u8().map_err(malformed)?)
            };
            let mut value = params.sub(usize::from(length)).map_err(malformed)?;
            match parameter_type {
                ParameterType::Capabilities => {
                    let mut caps = Vec::new();
                    while !value.is_empty() {
                        caps.push(Capability::decode(&mut value)?);
                    }
                    optional_parameters.push(OptionalParameter::Capabilities(caps));
                }
                ParameterType::Authentication
                | ParameterType::ExtendedLength
                | ParameterType::Unknown(_) => {
                    return Err(OpenError::UnsupportedOptionalParameter { parameter_type });
                }
            }
        }
        Ok(Self {
            my_as,
            hold_time,
            bgp_identifier,
            optional_parameters,
        })
    }

    /// Encodes the OPEN body. Optional parameters use RFC 9072 extended
    /// lengths only when they do not fit in 255 octets.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(BGP_VERSION);
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_identifier.octets());
        let start = out.len();
        let at = writer::begin_u8(out);
        let fits = self
            .encode_parameters(false, out)
            .and_then(|()| writer::end_u8(out, at, "optional parameters"));
        if fits.is_err() {
            out.truncate(start);
            out.extend_from_slice(&[255, u8::from(ParameterType::ExtendedLength)]);
            let at = writer::begin_u16(out);
            self.encode_parameters(true, out)?;
            writer::end_u16(out, at, "optional parameters")?;
        }
        Ok(())
    }

    fn encode_parameters(&self, extended: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        for param in &self.optional_parameters {
            match param {
                OptionalParameter::Capabilities(caps) => {
                    out.push(ParameterType::Capabilities.into());
                    let at = if extended {
                        writer::begin_u16(out)
                    } else {
                        writer::begin_u8(out)
                    };
                    for cap in caps {
                        cap.encode(out)?;
                    }
                    if extended {
                        writer::end_u16(out, at, "optional parameter")?;
                    } else {
                        writer::end_u8(out, at, "optional parameter")?;
                    }
                }
            }
        }
        Ok(())
    }
}
