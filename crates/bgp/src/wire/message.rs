//! The message header and the message types (RFC 4271 §4, RFC 2918).

use super::error::{DecodeError, EncodeError, HeaderError};
use super::iana::{Afi, CeaseSubcode, ErrorCode, MessageType, Safi};
use super::open::Open;
use super::reader::Reader;
use super::update::Update;
use super::{writer, DecodeContext, HEADER_LEN, MARKER, MAX_MESSAGE_LEN};

/// Smallest OPEN: header plus 10 octets.
const MIN_OPEN_LEN: u16 = 29;
/// Smallest UPDATE: header plus the two length fields.
const MIN_UPDATE_LEN: u16 = 23;
/// Smallest NOTIFICATION: header plus code and subcode.
const MIN_NOTIFICATION_LEN: u16 = 21;
/// The only ROUTE-REFRESH length: header plus AFI, reserved, SAFI.
const ROUTE_REFRESH_LEN: u16 = 23;

/// The message header (RFC 4271 §4.1).
///
/// ```text
/// +---------------------------------------------------------------+
/// |                  Marker (16 octets, all ones)                 |
/// +-------------------------------+---------------+---------------+
/// |     Length (19..=4096)        |     Type      |
/// +-------------------------------+---------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Length of the whole message, header included.
    pub length: u16,
    /// Message type (always a known one after [`Header::decode`]).
    pub message_type: MessageType,
}

impl Header {
    /// Decodes and checks the first 19 octets of `buf` (RFC 4271 §6.1):
    /// marker, length within 19..=4096 and fitting the type, known type.
    pub fn decode(buf: &[u8]) -> Result<Self, HeaderError> {
        let mut r = Reader::new(buf);
        let truncated = |_| HeaderError::Truncated {
            available: buf.len(),
        };
        let marker = r.array::<16>().map_err(truncated)?;
        let length = r.u16().map_err(truncated)?;
        let message_type = MessageType::from(r.u8().map_err(truncated)?);
        if marker != MARKER {
            return Err(HeaderError::ConnectionNotSynchronized);
        }
        if !(u16::from(HEADER_LEN)..=MAX_MESSAGE_LEN).contains(&length) {
            return Err(HeaderError::BadMessageLength { length });
        }
        let fits = match message_type {
            MessageType::Open => length >= MIN_OPEN_LEN,
            MessageType::Update => length >= MIN_UPDATE_LEN,
            MessageType::Notification => length >= MIN_NOTIFICATION_LEN,
            MessageType::Keepalive => length == u16::from(HEADER_LEN),
            MessageType::RouteRefresh => length == ROUTE_REFRESH_LEN,
            MessageType::Unknown(message_type) => {
                return Err(HeaderError::BadMessageType { message_type });
            }
        };
        if !fits {
            return Err(HeaderError::BadMessageLength { length });
        }
        Ok(Self {
            length,
            message_type,
        })
    }
}

/// NOTIFICATION (RFC 4271 §4.5). The subcode is kept as an octet; the
/// subcode enums in [`super::iana`] convert to and from it.
///
/// ```text
/// +---------------+---------------+-------------------------------+
/// | Error code    | Error subcode |   Data (variable)             ~
/// +---------------+---------------+-------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notification {
    /// Error code.
    pub code: ErrorCode,
    /// Error subcode (0 when unspecific).
    pub subcode: u8,
    /// Data, as the code and subcode define it.
    pub data: Vec<u8>,
}

impl Notification {
    /// A NOTIFICATION from its parts.
    pub fn new(code: ErrorCode, subcode: impl Into<u8>, data: Vec<u8>) -> Self {
        Self {
            code,
            subcode: subcode.into(),
            data,
        }
    }

    /// Cease with `subcode` and no data (RFC 4486).
    pub fn cease(subcode: CeaseSubcode) -> Self {
        Self::new(ErrorCode::Cease, subcode, Vec::new())
    }

    /// Hold Timer Expired.
    pub fn hold_timer_expired() -> Self {
        Self::new(ErrorCode::HoldTimerExpired, 0, Vec::new())
    }

    /// Decodes a NOTIFICATION body.
    pub fn decode(body: &[u8]) -> Result<Self, HeaderError> {
        let mut r = Reader::new(body);
        let short = |_| HeaderError::BadMessageLength {
            length: u16::try_from(body.len().saturating_add(usize::from(HEADER_LEN)))
                .unwrap_or(u16::MAX),
        };
        let code = ErrorCode::from(r.u8().map_err(short)?);
        let subcode = r.u8().map_err(short)?;
        Ok(Self {
            code,
            subcode,
            data: r.rest().to_vec(),
        })
    }

    /// Encodes the NOTIFICATION body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code.into());
        out.push(self.subcode);
        out.extend_from_slice(&self.data);
    }
}

/// ROUTE-REFRESH (RFC 2918 §3): ask the peer to send its routes of one
/// address family again.
///
/// ```text
/// 0               8               16              24           31
/// +-------------------------------+---------------+---------------+
/// |              AFI              |   Reserved    |     SAFI      |
/// +-------------------------------+---------------+---------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRefresh {
    /// Address family.
    pub afi: Afi,
    /// Subsequent address family.
    pub safi: Safi,
}

impl RouteRefresh {
    /// Decodes a ROUTE-REFRESH body (exactly 4 octets).
    pub fn decode(body: &[u8]) -> Result<Self, HeaderError> {
        let bad_length = HeaderError::BadMessageLength {
            length: u16::try_from(body.len().saturating_add(usize::from(HEADER_LEN)))
                .unwrap_or(u16::MAX),
        };
        let mut r = Reader::new(body);
        let (Ok(afi), Ok(_reserved), Ok(safi), true) = (r.u16(), r.u8(), r.u8(), r.is_empty())
        else {
            return Err(bad_length);
        };
        Ok(Self {
            afi: afi.into(),
            safi: safi.into(),
        })
    }

    /// Encodes the ROUTE-REFRESH body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&u16::from(self.afi).to_be_bytes());
        out.push(0);
        out.push(self.safi.into());
    }
}

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// OPEN.
    Open(Open),
    /// UPDATE.
    Update(Update),
    /// NOTIFICATION.
    Notification(Notification),
    /// KEEPALIVE: the header alone.
    Keepalive,
    /// ROUTE-REFRESH.
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// The message type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Self::Open(_) => MessageType::Open,
            Self::Update(_) => MessageType::Update,
            Self::Notification(_) => MessageType::Notification,
            Self::Keepalive => MessageType::Keepalive,
            Self::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }

    /// Frames a byte stream: `Ok(None)` while fewer than 19 octets are
    /// buffered, else the length of the first message once its header
    /// checks out. The caller waits for that many octets, then calls
    /// [`Message::decode`] on exactly them.
    pub fn frame_length(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        if buf.len() < usize::from(HEADER_LEN) {
            return Ok(None);
        }
        Ok(Some(usize::from(Header::decode(buf)?.length)))
    }

    /// Decodes one whole message: `buf` holds exactly the octets its header
    /// announces. `ctx` carries what the session negotiated.
    pub fn decode(buf: &[u8], ctx: &DecodeContext) -> Result<Self, DecodeError> {
        let header = Header::decode(buf)?;
        if buf.len() != usize::from(header.length) {
            return Err(HeaderError::LengthMismatch {
                length: header.length,
                available: buf.len(),
            }
            .into());
        }
        let body = buf.get(usize::from(HEADER_LEN)..).unwrap_or_default();
        let message = match header.message_type {
            MessageType::Open => Self::Open(Open::decode(body)?),
            MessageType::Update => Self::Update(Update::decode(body, ctx)?),
            MessageType::Notification => Self::Notification(Notification::decode(body)?),
            MessageType::Keepalive => Self::Keepalive,
            MessageType::RouteRefresh => Self::RouteRefresh(RouteRefresh::decode(body)?),
            MessageType::Unknown(message_type) => {
                return Err(HeaderError::BadMessageType { message_type }.into());
            }
        };
        Ok(message)
    }

    /// Appends the encoded message to `out`. On error `out` is left as it
    /// was.
    pub fn encode(&self, ctx: &DecodeContext, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.encode_inner(ctx, start, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_inner(
        &self,
        ctx: &DecodeContext,
        start: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        out.extend_from_slice(&MARKER);
        let at = writer::begin_u16(out);
        out.push(self.message_type().into());
        match self {
            Self::Open(open) => open.encode(out)?,
            Self::Update(update) => update.encode(ctx, out)?,
            Self::Notification(notification) => notification.encode(out),
            Self::Keepalive => {}
            Self::RouteRefresh(refresh) => refresh.encode(out),
        }
        let length = out.len().saturating_sub(start);
        match u16::try_from(length) {
            Ok(l) if l <= MAX_MESSAGE_LEN => {
                writer::patch_u16(out, at, l);
                Ok(())
            }
            Ok(_) | Err(_) => Err(EncodeError::MessageTooLong { length }),
        }
    }

    /// The encoded message as a new vector.
    pub fn to_bytes(&self, ctx: &DecodeContext) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(ctx, &mut out)?;
        Ok(out)
    }
}
