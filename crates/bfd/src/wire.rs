//! The BFD Control packet (RFC 5880 §4.1): encode, decode and the
//! context-free reception checks of §6.8.6.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       My Discriminator                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Your Discriminator                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Desired Min TX Interval                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Required Min RX Interval                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Intervals are microseconds on the wire and stay so in [`ControlPacket`]
//! (see [`ControlPacket::desired_min_tx`] for a [`Duration`]).
//!
//! **No authentication.** This implementation has no authentication
//! (RFC 5880 §6.7): a packet with the A bit set is refused with
//! [`DecodeError::Authentication`] — §6.8.6 requires discarding it when
//! no authentication is configured — and we never send one. The
//! single-hop TTL check (RFC 5881 §5, done by the driver) is what protects
//! the session instead.
//!
//! Decoding never panics and never indexes unchecked; every error is a
//! [`DecodeError`] value.

use std::fmt;
use std::time::Duration;

/// The protocol version this module speaks (RFC 5880 §4.1).
pub const VERSION: u8 = 1;

/// Length of the mandatory section, which is all we send.
pub const MANDATORY_LEN: usize = 24;

/// Field offsets of the mandatory section.
mod field {
    use std::ops::Range;

    pub(super) const VERS_DIAG: usize = 0;
    pub(super) const STATE_FLAGS: usize = 1;
    pub(super) const DETECT_MULT: usize = 2;
    pub(super) const LENGTH: usize = 3;
    pub(super) const MY_DISCR: Range<usize> = 4..8;
    pub(super) const YOUR_DISCR: Range<usize> = 8..12;
    pub(super) const DESIRED_MIN_TX: Range<usize> = 12..16;
    pub(super) const REQUIRED_MIN_RX: Range<usize> = 16..20;
    pub(super) const REQUIRED_MIN_ECHO_RX: Range<usize> = 20..24;
}

/// Bits of the second octet, after the two state bits.
mod flag {
    pub(super) const POLL: u8 = 0x20;
    pub(super) const FINAL: u8 = 0x10;
    pub(super) const CONTROL_PLANE_INDEPENDENT: u8 = 0x08;
    pub(super) const AUTHENTICATION: u8 = 0x04;
    pub(super) const DEMAND: u8 = 0x02;
    pub(super) const MULTIPOINT: u8 = 0x01;
}

/// The session state as carried in the Sta field (RFC 5880 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// 0: held down by the operator; the session does not come up.
    AdminDown,
    /// 1: down, or never up.
    Down,
    /// 2: the remote is heard, but it has not yet heard us.
    Init,
    /// 3: both ends hear each other.
    Up,
}

impl State {
    /// The two-bit codepoint.
    pub fn code(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    /// The state for a two-bit codepoint (higher bits are ignored).
    pub fn from_code(code: u8) -> State {
        match code & 0x3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        })
    }
}

/// The Diag field: why the sender's session last changed state
/// (RFC 5880 §4.1). Open: reserved codepoints (9–31) are kept as
/// [`Diagnostic::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    /// 0: no diagnostic.
    None,
    /// 1: Control Detection Time Expired — the peer went silent.
    ControlDetectionTimeExpired,
    /// 2: Echo Function Failed.
    EchoFunctionFailed,
    /// 3: Neighbor Signaled Session Down (the peer said Down or AdminDown).
    NeighborSignaledSessionDown,
    /// 4: Forwarding Plane Reset.
    ForwardingPlaneReset,
    /// 5: Path Down.
    PathDown,
    /// 6: Concatenated Path Down.
    ConcatenatedPathDown,
    /// 7: Administratively Down.
    AdministrativelyDown,
    /// 8: Reverse Concatenated Path Down.
    ReverseConcatenatedPathDown,
    /// A reserved codepoint (9–31), kept as received.
    Other(u8),
}

impl Diagnostic {
    /// The five-bit codepoint.
    pub fn code(self) -> u8 {
        match self {
            Diagnostic::None => 0,
            Diagnostic::ControlDetectionTimeExpired => 1,
            Diagnostic::EchoFunctionFailed => 2,
            Diagnostic::NeighborSignaledSessionDown => 3,
            Diagnostic::ForwardingPlaneReset => 4,
            Diagnostic::PathDown => 5,
            Diagnostic::ConcatenatedPathDown => 6,
            Diagnostic::AdministrativelyDown => 7,
            Diagnostic::ReverseConcatenatedPathDown => 8,
            Diagnostic::Other(code) => code & 0x1f,
        }
    }

    /// The diagnostic for a five-bit codepoint (higher bits are ignored).
    pub fn from_code(code: u8) -> Diagnostic {
        match code & 0x1f {
            0 => Diagnostic::None,
            1 => Diagnostic::ControlDetectionTimeExpired,
            2 => Diagnostic::EchoFunctionFailed,
            3 => Diagnostic::NeighborSignaledSessionDown,
            4 => Diagnostic::ForwardingPlaneReset,
            5 => Diagnostic::PathDown,
            6 => Diagnostic::ConcatenatedPathDown,
            7 => Diagnostic::AdministrativelyDown,
            8 => Diagnostic::ReverseConcatenatedPathDown,
            other => Diagnostic::Other(other),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diagnostic::None => f.write_str("no diagnostic"),
            Diagnostic::ControlDetectionTimeExpired => {
                f.write_str("control detection time expired")
            }
            Diagnostic::EchoFunctionFailed => f.write_str("echo function failed"),
            Diagnostic::NeighborSignaledSessionDown => {
                f.write_str("neighbor signaled session down")
            }
            Diagnostic::ForwardingPlaneReset => f.write_str("forwarding plane reset"),
            Diagnostic::PathDown => f.write_str("path down"),
            Diagnostic::ConcatenatedPathDown => f.write_str("concatenated path down"),
            Diagnostic::AdministrativelyDown => f.write_str("administratively down"),
            Diagnostic::ReverseConcatenatedPathDown => {
                f.write_str("reverse concatenated path down")
            }
            Diagnostic::Other(code) => write!(f, "diagnostic {code}"),
        }
    }
}

/// Why a datagram is not a Control packet we accept. Each is a "MUST be
/// discarded" of RFC 5880 §6.8.6 (or of this implementation, where noted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the 24-byte mandatory section.
    #[error("packet too short: {0} bytes")]
    Truncated(usize),
    /// The version is not 1.
    #[error("unsupported BFD version {0}")]
    Version(u8),
    /// The A bit is set: authentication is not supported here, so the
    /// packet is discarded (RFC 5880 §6.8.6, no bfd.AuthType configured).
    #[error("authenticated packet, authentication is not supported")]
    Authentication,
    /// The Length field is below the mandatory section.
    #[error("length field {0} below the minimum of 24")]
    LengthTooSmall(u8),
    /// The Length field is more than the datagram carries.
    #[error("length field {length} beyond the {available} bytes received")]
    LengthBeyondPayload {
        /// The Length field.
        length: u8,
        /// The bytes the datagram had.
        available: usize,
    },
    /// Detect Mult is zero.
    #[error("detect multiplier is zero")]
    ZeroDetectMult,
    /// The Multipoint bit is set.
    #[error("multipoint bit set")]
    Multipoint,
    /// Both Poll and Final are set (RFC 5880 §6.5 forbids sending that; we
    /// discard it, as BIRD does).
    #[error("both poll and final bits set")]
    PollAndFinal,
    /// My Discriminator is zero.
    #[error("my discriminator is zero")]
    ZeroMyDiscriminator,
    /// Your Discriminator is zero while the state is Init or Up.
    #[error("your discriminator is zero in state {0}")]
    ZeroYourDiscriminator(State),
}

/// A BFD Control packet without an authentication section.
///
/// Decoded packets have passed every context-free check of RFC 5880
/// §6.8.6; the ones that need the session (which Your Discriminator
/// selects) are the session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlPacket {
    /// Diag: why the sender last changed state.
    pub diag: Diagnostic,
    /// Sta: the sender's session state.
    pub state: State,
    /// P: the sender asks for verification (a Poll Sequence).
    pub poll: bool,
    /// F: the sender answers a Poll.
    pub final_: bool,
    /// C: the sender's BFD does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// D: the sender wants Demand mode (not supported here; see the
    /// session docs).
    pub demand: bool,
    /// Detect Mult: the sender's detection time multiplier.
    pub detect_mult: u8,
    /// My Discriminator: the sender's id of the session, non-zero.
    pub my_discr: u32,
    /// Your Discriminator: the receiver's id, or zero if not yet known.
    pub your_discr: u32,
    /// Desired Min TX Interval, microseconds.
    pub desired_min_tx_us: u32,
    /// Required Min RX Interval, microseconds; zero: send nothing.
    pub required_min_rx_us: u32,
    /// Required Min Echo RX Interval, microseconds; zero: no Echo.
    pub required_min_echo_rx_us: u32,
}

fn be_u32(bytes: &[u8], range: std::ops::Range<usize>) -> u32 {
    match bytes.get(range).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
        Some(b) => u32::from_be_bytes(b),
        None => 0,
    }
}

fn octet(bytes: &[u8], index: usize) -> u8 {
    bytes.get(index).copied().unwrap_or(0)
}

impl ControlPacket {
    /// Decodes a UDP payload and applies the context-free checks of
    /// RFC 5880 §6.8.6 in its order. Bytes past the Length field are
    /// ignored.
    pub fn decode(bytes: &[u8]) -> Result<ControlPacket, DecodeError> {
        let first = bytes.first().copied().ok_or(DecodeError::Truncated(0))?;
        let version = first >> 5;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        if bytes.len() < MANDATORY_LEN {
            return Err(DecodeError::Truncated(bytes.len()));
        }
        let flags = octet(bytes, field::STATE_FLAGS);
        if flags & flag::AUTHENTICATION != 0 {
            return Err(DecodeError::Authentication);
        }
        let length = octet(bytes, field::LENGTH);
        if usize::from(length) < MANDATORY_LEN {
            return Err(DecodeError::LengthTooSmall(length));
        }
        if usize::from(length) > bytes.len() {
            return Err(DecodeError::LengthBeyondPayload {
                length,
                available: bytes.len(),
            });
        }
        let detect_mult = octet(bytes, field::DETECT_MULT);
        if detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        if flags & flag::MULTIPOINT != 0 {
            return Err(DecodeError::Multipoint);
        }
        let poll = flags & flag::POLL != 0;
        let final_ = flags & flag::FINAL != 0;
        if poll && final_ {
            return Err(DecodeError::PollAndFinal);
        }
        let my_discr = be_u32(bytes, field::MY_DISCR);
        if my_discr == 0 {
            return Err(DecodeError::ZeroMyDiscriminator);
        }
        let state = State::from_code(flags >> 6);
        let your_discr = be_u32(bytes, field::YOUR_DISCR);
        if your_discr == 0 {
            match state {
                State::AdminDown | State::Down => {}
                State::Init | State::Up => return Err(DecodeError::ZeroYourDiscriminator(state)),
            }
        }
        Ok(ControlPacket {
            diag: Diagnostic::from_code(octet(bytes, field::VERS_DIAG)),
            state,
            poll,
            final_,
            control_plane_independent: flags & flag::CONTROL_PLANE_INDEPENDENT != 0,
            demand: flags & flag::DEMAND != 0,
            detect_mult,
            my_discr,
            your_discr,
            desired_min_tx_us: be_u32(bytes, field::DESIRED_MIN_TX),
            required_min_rx_us: be_u32(bytes, field::REQUIRED_MIN_RX),
            required_min_echo_rx_us: be_u32(bytes, field::REQUIRED_MIN_ECHO_RX),
        })
    }

    /// Encodes the packet: version 1, no authentication section, no
    /// Multipoint bit, Length 24. The fields are written as they are; a
    /// session only builds packets that [`ControlPacket::decode`] accepts.
    pub fn encode(&self) -> [u8; MANDATORY_LEN] {
        let mut out = [0u8; MANDATORY_LEN];
        let mut flags = self.state.code() << 6;
        for (set, bit) in [
            (self.poll, flag::POLL),
            (self.final_, flag::FINAL),
            (
                self.control_plane_independent,
                flag::CONTROL_PLANE_INDEPENDENT,
            ),
            (self.demand, flag::DEMAND),
        ] {
            if set {
                flags |= bit;
            }
        }
        let header = [
            (VERSION << 5) | self.diag.code(),
            flags,
            self.detect_mult,
            MANDATORY_LEN as u8,
        ];
        let words = [
            self.my_discr,
            self.your_discr,
            self.desired_min_tx_us,
            self.required_min_rx_us,
            self.required_min_echo_rx_us,
        ];
        for (slot, byte) in out.iter_mut().zip(
            header
                .into_iter()
                .chain(words.into_iter().flat_map(u32::to_be_bytes)),
        ) {
            *slot = byte;
        }
        out
    }

    /// Desired Min TX Interval as a [`Duration`].
    pub fn desired_min_tx(&self) -> Duration {
        Duration::from_micros(self.desired_min_tx_us.into())
    }

    /// Required Min RX Interval as a [`Duration`].
    pub fn required_min_rx(&self) -> Duration {
        Duration::from_micros(self.required_min_rx_us.into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    /// A Control packet BIRD 2.0.12 sent to a silent neighbor, captured on
    /// the veth of the interop topology (`ip netns exec NS tcpdump -i g1
    /// -nn -vv -X udp port 3784`; IP TTL 255, TOS 0xc0, source port
    /// 55311): Down, no diagnostic, mult 3, my discr 0xac02_50d9, your
    /// discr 0, desired min TX 1 s (BIRD's idle rate), required min RX
    /// 100 ms, no Echo.
    const BIRD_DOWN: [u8; 24] = [
        0x20, 0x40, 0x03, 0x18, 0xac, 0x02, 0x50, 0xd9, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x42,
        0x40, 0x00, 0x01, 0x86, 0xa0, 0x00, 0x00, 0x00, 0x00,
    ];

    fn up_packet() -> ControlPacket {
        ControlPacket {
            diag: Diagnostic::None,
            state: State::Up,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discr: 0x0102_0304,
            your_discr: 0x0a0b_0c0d,
            desired_min_tx_us: 100_000,
            required_min_rx_us: 100_000,
            required_min_echo_rx_us: 0,
        }
    }

    #[test]
    fn decodes_a_bird_packet() {
        let p = ControlPacket::decode(&BIRD_DOWN).unwrap();
        assert_eq!(p.state, State::Down);
        assert_eq!(p.diag, Diagnostic::None);
        assert_eq!(p.detect_mult, 3);
        assert_eq!(p.my_discr, 0xac02_50d9);
        assert_eq!(p.your_discr, 0);
        assert_eq!(p.desired_min_tx(), Duration::from_secs(1));
        assert_eq!(p.required_min_rx(), Duration::from_millis(100));
        assert!(!p.poll && !p.final_ && !p.demand && !p.control_plane_independent);
        assert_eq!(p.encode(), BIRD_DOWN);
    }

    #[test]
    fn encodes_the_mandatory_section() {
        let bytes = up_packet().encode();
        assert_eq!(
            bytes,
            [
                0x20, 0xe0, 0x03, 0x18, 0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d, 0x00, 0x01,
                0x86, 0xa0, 0x00, 0x01, 0x86, 0xa0, 0x00, 0x00, 0x00, 0x00
            ]
        );
        assert_eq!(ControlPacket::decode(&bytes).unwrap(), up_packet());
    }

    #[test]
    fn diagnostics_round_trip_and_stay_open() {
        for code in 0..32u8 {
            assert_eq!(Diagnostic::from_code(code).code(), code);
        }
        assert_eq!(Diagnostic::from_code(17), Diagnostic::Other(17));
        let mut p = up_packet();
        p.diag = Diagnostic::Other(30);
        assert_eq!(
            ControlPacket::decode(&p.encode()).unwrap().diag,
            Diagnostic::Other(30)
        );
    }

    fn with(mut bytes: [u8; 24], edit: impl FnOnce(&mut [u8; 24])) -> [u8; 24] {
        edit(&mut bytes);
        bytes
    }

    #[test]
    fn refuses_what_rfc_5880_6_8_6_discards() {
        let good = up_packet().encode();
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (Vec::new(), DecodeError::Truncated(0)),
            (good[..23].to_vec(), DecodeError::Truncated(23)),
            (
                with(good, |b| b[0] = 0x00).to_vec(),
                DecodeError::Version(0),
            ),
            (
                with(good, |b| b[0] = 0x40).to_vec(),
                DecodeError::Version(2),
            ),
            (
                with(good, |b| b[1] |= 0x04).to_vec(),
                DecodeError::Authentication,
            ),
            (
                with(good, |b| b[3] = 23).to_vec(),
                DecodeError::LengthTooSmall(23),
            ),
            (
                with(good, |b| b[3] = 25).to_vec(),
                DecodeError::LengthBeyondPayload {
                    length: 25,
                    available: 24,
                },
            ),
            (
                with(good, |b| b[2] = 0).to_vec(),
                DecodeError::ZeroDetectMult,
            ),
            (
                with(good, |b| b[1] |= 0x01).to_vec(),
                DecodeError::Multipoint,
            ),
            (
                with(good, |b| b[1] |= 0x10).to_vec(),
                DecodeError::PollAndFinal,
            ),
            (
                with(good, |b| b[4..8].copy_from_slice(&[0; 4])).to_vec(),
                DecodeError::ZeroMyDiscriminator,
            ),
            (
                with(good, |b| b[8..12].copy_from_slice(&[0; 4])).to_vec(),
                DecodeError::ZeroYourDiscriminator(State::Up),
            ),
            (
                with(good, |b| {
                    b[1] = 0x80;
                    b[8..12].copy_from_slice(&[0; 4]);
                })
                .to_vec(),
                DecodeError::ZeroYourDiscriminator(State::Init),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(ControlPacket::decode(&bytes), Err(want), "{bytes:02x?}");
        }
        // Your Discriminator zero is fine while Down or AdminDown.
        for sta in [0x00u8, 0x40] {
            let b = with(good, |b| {
                b[1] = sta;
                b[8..12].copy_from_slice(&[0; 4]);
            });
            assert!(ControlPacket::decode(&b).is_ok());
        }
        // Bytes after Length are ignored, a Length covering them is fine.
        let mut long = good.to_vec();
        long.extend_from_slice(&[0xee; 8]);
        assert_eq!(ControlPacket::decode(&long).unwrap(), up_packet());
        long[3] = 32;
        assert_eq!(ControlPacket::decode(&long).unwrap(), up_packet());
    }

    fn arb_packet() -> impl Strategy<Value = ControlPacket> {
        (
            (
                0u8..32,
                0u8..4,
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            ),
            (1u8..=255, 1u32.., any::<u32>()),
            (any::<u32>(), any::<u32>(), any::<u32>()),
        )
            .prop_map(
                |((diag, state, poll, fin, cpi, demand), (mult, my, your), (tx, rx, echo))| {
                    let state = State::from_code(state);
                    let your = match state {
                        State::Init | State::Up if your == 0 => 1,
                        State::AdminDown | State::Down | State::Init | State::Up => your,
                    };
                    ControlPacket {
                        diag: Diagnostic::from_code(diag),
                        state,
                        poll,
                        final_: fin && !poll,
                        control_plane_independent: cpi,
                        demand,
                        detect_mult: mult,
                        my_discr: my,
                        your_discr: your,
                        desired_min_tx_us: tx,
                        required_min_rx_us: rx,
                        required_min_echo_rx_us: echo,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn valid_packets_round_trip(p in arb_packet()) {
            prop_assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = ControlPacket::decode(&bytes) {
                // What decodes re-encodes to the same mandatory section
                // (Length normalised to 24).
                let mut want = [0u8; 24];
                want.copy_from_slice(&bytes[..24]);
                want[3] = 24;
                prop_assert_eq!(p.encode(), want);
            }
        }

        #[test]
        fn near_valid_bytes_never_panic(
            p in arb_packet(),
            flips in proptest::collection::vec((0usize..24, any::<u8>()), 1..4),
            cut in 0usize..=24,
        ) {
            let mut bytes = p.encode();
            for (at, x) in flips {
                bytes[at] ^= x;
            }
            let _ = ControlPacket::decode(&bytes[..cut]);
            let _ = ControlPacket::decode(&bytes);
        }
    }
}
