//! The IKE SA state machine (RFC 7296), sans-IO.
//!
//! One [`IkeSa`] is one IKE SA with the child SA it carries, from the first
//! IKE_SA_INIT to its deletion. It never touches a socket or a clock: the
//! driver feeds it datagrams ([`IkeSa::handle`]) and the passing of time
//! ([`IkeSa::handle_timeout`], at the instant [`IkeSa::poll_timeout`] asked
//! for), and drains what it produced with [`IkeSa::poll_output`]: datagrams
//! to send and events for the rest of the daemon (established, child SA
//! installed with its keys, deleted, closed with a reason). Randomness (SPIs,
//! nonces, DH secrets, IVs) comes in through [`Random`]. That makes every
//! exchange testable in memory, with simulated time, loss and reordering.
//!
//! What it implements:
//! - IKE_SA_INIT and IKE_AUTH in both roles, PSK authentication (§2.15),
//!   one child SA with 0.0.0.0/0 selectors, narrowed to whatever the peer
//!   proposes (route-based tunnels);
//! - COOKIE (§2.6) and INVALID_KE_PAYLOAD (§2.7) retries as initiator (the
//!   responder's cookie is the endpoint's business, it is stateless);
//! - NAT detection (§2.23), with NAT-T forced the way strongSwan's
//!   `encap = yes` does it (a fake source hash), because our ESP always
//!   travels in UDP 4500; the move to port 4500 after IKE_SA_INIT; NAT
//!   keepalives (RFC 3948 §2.3) after [`NAT_KEEPALIVE_INTERVAL`] of silence;
//! - reliability (§2.1–2.3): one request in flight, retransmission with
//!   exponential backoff, responses cached and resent byte for byte for a
//!   retransmitted request, message IDs checked;
//! - INFORMATIONAL: liveness checks both ways (DPD), DELETE of the IKE SA
//!   and of the child SA, INITIAL_CONTACT sent;
//! - CREATE_CHILD_SA in both roles of the exchange and both IKE roles
//!   (`rekey`): rekeying the child (§1.3.3, PFS when the ESP proposal has
//!   DH groups, INVALID_KE_PAYLOAD retried) with make-before-break
//!   ([`Event::ChildRekeyed`], then the old child's DELETE), and rekeying
//!   the IKE SA (§1.3.2, §2.18) in place ([`Event::IkeRekeyed`]; see
//!   `IkeSa::adopt`); simultaneous rekeys resolved by the nonces (§2.8.1,
//!   §2.8.2), TEMPORARY_FAILURE and CHILD_SA_NOT_FOUND where §2.25 says so;
//!   a request for an additional child is refused with NO_ADDITIONAL_SAS;
//! - lifetimes: each SA rekeys itself at its soft lifetime (10% and a
//!   random 0–5% before the hard one, [`soft_deadline`]), whichever side's
//!   timer fires first, the child also at 90% of its byte lifetime
//!   ([`IkeSa::note_child_bytes`]); a rekey that fails is retried, and at
//!   the hard lifetime the IKE SA is deleted
//!   ([`CloseReason::LifetimeExpired`]); [`IkeSa::rekey_child`] and
//!   [`IkeSa::rekey_ike`] force one;
//! - clear reasons for failure: AUTHENTICATION_FAILED and
//!   NO_PROPOSAL_CHOSEN (naming what each side offered) both ways.
//!
//! One [`IkeSa`] object stays one connection's SA across IKE rekeys: it
//! turns itself into the new SA and keeps the old one inside (retired)
//! until that one's DELETE exchange is over; [`IkeSa::local_spi`] changes
//! and [`IkeSa::other_local_spis`] names the SPIs it still answers for.
//!
//! Known limit: in a child rekey collision, the child our losing exchange
//! created is never installed, only deleted, so what the peer sends on it
//! in the round trip before it learns the outcome is lost.

mod exchange;
mod rekey;

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::crypto::{ChildKeys, IkeKeys, SkCipher};
use super::proposal::{EspAlgorithms, EspProposal, IkeAlgorithms, IkeProposal};
use super::wire::{
    decode_payloads, Encrypted, ExchangeType, Flags, Header, Identification, IkeSpi, Message,
    Payload, TrafficSelector,
};
use crate::esp::sa::SaKeys;

/// The IKE port.
pub const IKE_PORT: u16 = 500;
/// The NAT-T port (RFC 3948): IKE with a non-ESP marker, and ESP in UDP.
pub const NATT_PORT: u16 = 4500;

/// A source of cryptographically secure random bytes, supplied by the
/// driver (the core never draws randomness itself).
pub trait Random {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// How one connection's IKE SAs behave.
#[derive(Clone)]
pub struct SaConfig {
    /// Our identity (IDi or IDr).
    pub local_id: Identification,
    /// The identity the peer must present.
    pub remote_id: Identification,
    /// The pre-shared key.
    pub psk: Zeroizing<Vec<u8>>,
    /// IKE proposals, preferred first.
    pub ike_proposals: Vec<IkeProposal>,
    /// ESP proposals, preferred first.
    pub esp_proposals: Vec<EspProposal>,
    /// Send a liveness check after this long without hearing from the peer.
    pub dpd_interval: Duration,
    /// Declare the peer dead when a request stays unanswered this long.
    pub dpd_timeout: Duration,
    /// The first retransmission timeout; it doubles with each retry.
    pub retransmit_timeout: Duration,
    /// Retransmissions of a request before giving up (besides the timeout).
    pub retransmit_tries: u32,
    /// Claim a NAT so that ESP runs in UDP 4500 even without one.
    pub force_encap: bool,
    /// The IKE SA's hard lifetime; it is rekeyed at its soft lifetime
    /// ([`soft_deadline`]: 10% and a random few percent earlier).
    pub ike_lifetime: Duration,
    /// The child SA's hard lifetime; rekeyed at its soft lifetime.
    pub child_lifetime: Duration,
    /// The child SA's lifetime in bytes (both directions together, as the
    /// datapath reports them through [`IkeSa::note_child_bytes`]); rekeyed
    /// at 90% of it, deleted (with the IKE SA, which restarts) at 100%.
    pub child_lifetime_bytes: u64,
    /// The child SA's lifetime in packets, both directions (0: none);
    /// rekeyed at 90%, deleted at 100%.
    pub child_lifetime_packets: u64,
}

impl fmt::Debug for SaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaConfig")
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("ike_proposals", &self.ike_proposals)
            .field("esp_proposals", &self.esp_proposals)
            .field("dpd_interval", &self.dpd_interval)
            .field("dpd_timeout", &self.dpd_timeout)
            .field("ike_lifetime", &self.ike_lifetime)
            .field("child_lifetime", &self.child_lifetime)
            .field("child_lifetime_bytes", &self.child_lifetime_bytes)
            .finish_non_exhaustive()
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Our address and port to send from (500 or 4500).
    pub local: SocketAddr,
    /// Where to.
    pub remote: SocketAddr,
    /// The IKE message (without the non-ESP marker; the driver adds it on
    /// port 4500).
    pub data: Vec<u8>,
}

/// An installed child SA pair, with everything the ESP datapath needs.
pub struct ChildSa {
    /// The SPI we receive on (chosen by us).
    pub spi_in: u32,
    /// The SPI we send with (chosen by the peer).
    pub spi_out: u32,
    /// The negotiated algorithms.
    pub algorithms: EspAlgorithms,
    /// Keys for what we receive.
    pub keys_in: SaKeys,
    /// Keys for what we send.
    pub keys_out: SaKeys,
    /// Our traffic selectors.
    pub ts_local: Vec<TrafficSelector>,
    /// The peer's traffic selectors.
    pub ts_remote: Vec<TrafficSelector>,
    /// ESP travels in UDP 4500.
    pub udp_encap: bool,
}

impl fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSa")
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .field("algorithms", &self.algorithms)
            .field("udp_encap", &self.udp_encap)
            .finish_non_exhaustive()
    }
}

/// Why an IKE SA ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// PSK authentication failed: we rejected the peer's AUTH
    /// (`by_peer` false) or the peer rejected ours.
    AuthenticationFailed {
        /// The peer sent AUTHENTICATION_FAILED.
        by_peer: bool,
    },
    /// The peer presented another identity than configured.
    IdentityMismatch {
        /// What it presented.
        presented: String,
    },
    /// No common proposal, for the IKE SA or the child SA.
    NoProposalChosen {
        /// Which SA: "IKE" or "ESP".
        sa: &'static str,
        /// What we offer, strongSwan notation.
        ours: String,
        /// What the peer offered (empty if it sent only the notify).
        theirs: String,
        /// The peer sent NO_PROPOSAL_CHOSEN.
        by_peer: bool,
    },
    /// The peer refused with another error notify (e.g. TS_UNACCEPTABLE).
    Refused {
        /// The notify type's name or number.
        notify: String,
    },
    /// Setup timed out: no answer to a request.
    Timeout,
    /// An established peer stopped answering (dead peer detection).
    DeadPeer,
    /// The peer deleted the IKE SA.
    DeletedByPeer,
    /// We deleted it ([`IkeSa::close`]).
    DeletedLocally,
    /// The IKE SA or its child SA reached its hard lifetime without being
    /// rekeyed, and we deleted the IKE SA (a new one replaces it).
    LifetimeExpired {
        /// Which SA: "IKE" or "child".
        sa: &'static str,
    },
    /// The peer restarted: it set up a new IKE SA with INITIAL_CONTACT,
    /// and holds no state of this one (RFC 7296 §2.4). Ended without a
    /// DELETE, which it could not answer.
    Superseded,
    /// The peer broke the protocol in a way that ends the SA.
    Protocol(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::AuthenticationFailed { by_peer: true } => {
                write!(f, "AUTHENTICATION_FAILED from the peer: it rejected our PSK authentication (check the PSK and our ID)")
            }
            CloseReason::AuthenticationFailed { by_peer: false } => {
                write!(f, "AUTHENTICATION_FAILED: the peer's AUTH does not verify with our PSK (check the PSK)")
            }
            CloseReason::IdentityMismatch { presented } => {
                write!(f, "the peer presented identity {presented}, which is not the configured remote_id")
            }
            CloseReason::NoProposalChosen {
                sa,
                ours,
                theirs,
                by_peer,
            } => {
                let who = if *by_peer {
                    "the peer found"
                } else {
                    "we found"
                };
                write!(f, "NO_PROPOSAL_CHOSEN for the {sa} SA: {who} no common proposal; we offer [{ours}]")?;
                if theirs.is_empty() {
                    Ok(())
                } else {
                    write!(f, ", the peer offered [{theirs}]")
                }
            }
            CloseReason::Refused { notify } => write!(f, "the peer refused with {notify}"),
            CloseReason::Timeout => write!(f, "no answer from the peer"),
            CloseReason::DeadPeer => write!(f, "dead peer: no answer to liveness checks"),
            CloseReason::DeletedByPeer => write!(f, "deleted by the peer"),
            CloseReason::Superseded => write!(
                f,
                "the peer restarted: its new IKE SA (INITIAL_CONTACT) replaces this one"
            ),
            CloseReason::DeletedLocally => write!(f, "deleted locally"),
            CloseReason::LifetimeExpired { sa } => {
                write!(
                    f,
                    "the {sa} SA reached its hard lifetime without being rekeyed"
                )
            }
            CloseReason::Protocol(what) => write!(f, "protocol error: {what}"),
        }
    }
}

/// What happened, for the daemon.
#[derive(Debug)]
pub enum Event {
    /// The IKE SA is established.
    Established(IkeAlgorithms),
    /// A child SA is ready: install it in the datapath.
    ChildInstalled(ChildSa),
    /// A rekey (CREATE_CHILD_SA, RFC 7296 §1.3.3) replaced the child SA
    /// `old_spi_in`/`old_spi_out` with `new`: make before break. Install
    /// the new inbound SA first, then switch outbound to the new SA, and
    /// keep the old inbound SA until [`Event::ChildDeleted`] names it (the
    /// peer may still send on it for a moment).
    ChildRekeyed {
        /// The replaced child's inbound SPI (still installed).
        old_spi_in: u32,
        /// The replaced child's outbound SPI (no longer used).
        old_spi_out: u32,
        /// The new child SA.
        new: ChildSa,
        /// We answered the rekey: the peer installs the new child only when
        /// our answer reaches it, so keep sending on the old SA until the
        /// peer's first packet on the new one (or the old one's deletion).
        delay_outbound: bool,
    },
    /// A child SA is gone: remove it from the datapath.
    ChildDeleted {
        /// Our inbound SPI.
        spi_in: u32,
        /// Our outbound SPI.
        spi_out: u32,
    },
    /// The IKE SA was rekeyed (RFC 7296 §2.18): it continues under these
    /// SPIs with new keys, carrying the child SA over.
    IkeRekeyed {
        /// The new SA's initiator SPI (the rekey initiator's).
        spi_i: IkeSpi,
        /// The new SA's responder SPI.
        spi_r: IkeSpi,
    },
    /// The IKE SA (and any child) is gone.
    Closed(CloseReason),
}

/// What [`IkeSa::poll_output`] yields.
#[derive(Debug)]
pub enum Output {
    /// A datagram to send.
    Transmit(Transmit),
    /// A NAT keepalive (RFC 3948 §2.3): the single octet 0xFF from port
    /// 4500, without the non-ESP marker.
    NatKeepalive {
        /// Our address (port 4500).
        local: SocketAddr,
        /// The peer's address.
        remote: SocketAddr,
    },
    /// An event.
    Event(Event),
}

/// A NAT keepalive is sent after this long without sending anything to
/// the peer (RFC 3948 §2.3 suggests 20 seconds).
pub const NAT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// A rekey that failed (TEMPORARY_FAILURE, no proposal, ...) is tried again
/// after this long (plus jitter), until the hard lifetime.
const REKEY_RETRY: Duration = Duration::from_secs(10);

/// Which end of the IKE SA we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent IKE_SA_INIT.
    Initiator,
    /// We answered it.
    Responder,
}

/// Where the IKE SA is, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    InitReplied,
    /// Up.
    Established,
    /// Gone; drain the outputs and drop it.
    Closed,
}

/// A snapshot for `vpngw sas`.
#[derive(Debug, Clone)]
pub struct Status {
    /// Our role.
    pub role: Role,
    /// Where the SA is.
    pub phase: Phase,
    /// Initiator's SPI.
    pub spi_i: IkeSpi,
    /// Responder's SPI.
    pub spi_r: IkeSpi,
    /// IKE algorithms, once chosen.
    pub algorithms: Option<IkeAlgorithms>,
    /// When it was established.
    pub established_at: Option<Instant>,
    /// A NAT was detected (or claimed): IKE and ESP use port 4500.
    pub nat: bool,
    /// The child SA (inbound SPI, outbound SPI, algorithms), if any.
    pub child: Option<(u32, u32, EspAlgorithms)>,
    /// The child SA's traffic selectors, ours and the peer's.
    pub child_selectors: Option<(Vec<TrafficSelector>, Vec<TrafficSelector>)>,
    /// Our address and the peer's.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
}

/// What an outstanding request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Init,
    Auth,
    Liveness,
    DeleteIke,
    /// INFORMATIONAL DELETE of the child whose inbound SPI this is.
    DeleteChild(u32),
    /// CREATE_CHILD_SA rekeying the child ([`IkeSa::child_rekey`]).
    RekeyChild,
    /// CREATE_CHILD_SA rekeying the IKE SA ([`IkeSa::ike_rekey`]).
    RekeyIke,
}

/// A child SA pair as the IKE SA keeps track of it (its keys went to the
/// datapath with the event that installed it).
#[derive(Debug, Clone)]
struct Child {
    spi_in: u32,
    spi_out: u32,
    algorithms: EspAlgorithms,
    ts_local: Vec<TrafficSelector>,
    ts_remote: Vec<TrafficSelector>,
    /// The soft lifetime: start a rekey then (None while one is under way).
    rekey_at: Option<Instant>,
    /// The hard lifetime.
    expire_at: Instant,
    /// Rekey once the datapath reports this many bytes.
    rekey_bytes: u64,
    /// Rekey once it reports this many packets (u64::MAX: no limit).
    rekey_packets: u64,
}

/// Our one request in flight (window size 1).
#[derive(Debug)]
struct Request {
    kind: RequestKind,
    message_id: u32,
    data: Vec<u8>,
    first_sent: Instant,
    next_send: Instant,
    retries: u32,
}

/// State of the initial exchanges, kept until IKE_AUTH completes.
struct Setup {
    ke: Option<super::crypto::KeyExchange>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    /// IKE_SA_INIT request and response as they went on the wire (AUTH signs them).
    init_request: Vec<u8>,
    init_response: Vec<u8>,
    cookie: Option<Vec<u8>>,
    /// Our inbound SPI for the first child.
    child_spi_in: u32,
}

/// The keys and ciphers of an IKE SA.
struct Keys {
    ike: IkeKeys,
    sk_in: SkCipher,
    sk_out: SkCipher,
}

/// One IKE SA. See the module documentation.
pub struct IkeSa {
    cfg: SaConfig,
    role: Role,
    phase: Phase,
    spi_i: IkeSpi,
    spi_r: IkeSpi,
    local: SocketAddr,
    remote: SocketAddr,
    nat: bool,
    setup: Option<Setup>,
    keys: Option<Keys>,
    algorithms: Option<IkeAlgorithms>,
    /// The child SA in use (outbound traffic goes there).
    child: Option<Child>,
    /// Children a rekey replaced, still installed (the peer may still send
    /// on them) until their DELETE exchange completes, ours or the peer's.
    retiring: Vec<Child>,
    /// Children that lost a rekey collision on our side (§2.8.1): never
    /// installed, deleted by us. (inbound SPI, outbound SPI).
    redundant: Vec<(u32, u32)>,
    /// The peer sent INITIAL_CONTACT in IKE_AUTH: it holds no other IKE SA
    /// with us (it restarted), so ours that came before this one are dead.
    peer_initial_contact: bool,
    /// Our CREATE_CHILD_SA rekeying the child, from queued to answered.
    child_rekey: Option<rekey::ChildRekey>,
    /// Our CREATE_CHILD_SA rekeying the IKE SA, from queued to answered.
    ike_rekey: Option<rekey::IkeRekey>,
    /// The IKE SA the peer's rekey created while ours was in flight (a
    /// collision, §2.8.2), with the lowest nonce of its exchange; kept until
    /// our rekey is answered and the nonces decide which survives.
    successor: Option<(Box<IkeSa>, Vec<u8>)>,
    /// Predecessors (rekeyed IKE SAs) and redundant SAs of a rekey
    /// collision, finishing their DELETE exchange. They carry no child.
    retired: Vec<IkeSa>,
    /// Set on a retired SA: it is dropped silently at this instant if its
    /// DELETE has not completed by then.
    retire_deadline: Option<Instant>,
    /// The IKE SA's soft lifetime (None while a rekey is under way).
    ike_rekey_at: Option<Instant>,
    /// The IKE SA's hard lifetime.
    ike_expire_at: Option<Instant>,
    /// Why we are deleting the SA, when not on request ([`IkeSa::close`]).
    closing_reason: Option<CloseReason>,
    /// When we last sent anything to the peer (for NAT keepalives), and
    /// whether something was sent since that was written down.
    last_sent: Instant,
    sent: bool,
    /// When this SA object was made (its IKE_SA_INIT sent or received).
    created_at: Instant,
    established_at: Option<Instant>,
    /// Our next request's message ID.
    next_message_id: u32,
    request: Option<Request>,
    /// Requests waiting for the one in flight.
    queued: VecDeque<RequestKind>,
    /// The peer's next expected request ID, and our response to the
    /// previous one, resent verbatim if it is retransmitted.
    peer_message_id: u32,
    last_response: Option<(u32, Vec<u8>)>,
    /// When we last heard anything authentic from the peer.
    last_heard: Instant,
    outputs: VecDeque<Output>,
}

impl fmt::Debug for IkeSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IkeSa")
            .field("role", &self.role)
            .field("phase", &self.phase)
            .field("spi_i", &self.spi_i)
            .field("spi_r", &self.spi_r)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// Errors that end processing of one message; mapped to "drop" or to an
/// SA-ending reason by the caller.
#[derive(Debug)]
enum Drop {
    /// Silently discard (bad ICV, unexpected message ID, garbage).
    Silently,
    /// End the SA for this reason.
    Close(CloseReason),
}

impl IkeSa {
    /// Starts an IKE SA as initiator: queues the IKE_SA_INIT request.
    pub fn initiate(
        cfg: SaConfig,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        rng: &mut dyn Random,
    ) -> IkeSa {
        let mut sa = IkeSa::new(
            cfg,
            Role::Initiator,
            random_spi(rng),
            IkeSpi::ZERO,
            local,
            remote,
            now,
        );
        sa.phase = Phase::InitSent;
        exchange::send_init_request(&mut sa, now, rng, None);
        sa
    }

    /// Answers an IKE_SA_INIT request that arrived from `remote` on
    /// `local`. The returned SA is already [`Phase::Closed`] when the
    /// request was refused (its error response is in the outputs).
    pub fn respond(
        cfg: SaConfig,
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &[u8],
        now: Instant,
        rng: &mut dyn Random,
    ) -> IkeSa {
        let spi_i = Header::peek(datagram)
            .map(|(h, _)| h.spi_i)
            .unwrap_or(IkeSpi::ZERO);
        let mut sa = IkeSa::new(
            cfg,
            Role::Responder,
            spi_i,
            random_spi(rng),
            local,
            remote,
            now,
        );
        sa.phase = Phase::InitReplied;
        match exchange::handle_init_request(&mut sa, datagram, now, rng) {
            Ok(()) => {}
            Err(Drop::Silently) => sa.phase = Phase::Closed,
            Err(Drop::Close(reason)) => sa.close_with(reason),
        }
        sa
    }

    fn new(
        cfg: SaConfig,
        role: Role,
        spi_i: IkeSpi,
        spi_r: IkeSpi,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> IkeSa {
        IkeSa {
            cfg,
            role,
            phase: Phase::Closed,
            spi_i,
            spi_r,
            local,
            remote,
            nat: false,
            setup: None,
            keys: None,
            algorithms: None,
            child: None,
            retiring: Vec::new(),
            redundant: Vec::new(),
            peer_initial_contact: false,
            child_rekey: None,
            ike_rekey: None,
            successor: None,
            retired: Vec::new(),
            retire_deadline: None,
            ike_rekey_at: None,
            ike_expire_at: None,
            closing_reason: None,
            last_sent: now,
            sent: false,
            created_at: now,
            established_at: None,
            next_message_id: 0,
            request: None,
            queued: VecDeque::new(),
            peer_message_id: 0,
            last_response: None,
            last_heard: now,
            outputs: VecDeque::new(),
        }
    }

    /// Our SPI: the one the peer puts in our slot of the header. It
    /// changes when the IKE SA is rekeyed (see [`IkeSa::other_local_spis`]).
    pub fn local_spi(&self) -> IkeSpi {
        match self.role {
            Role::Initiator => self.spi_i,
            Role::Responder => self.spi_r,
        }
    }

    /// Our SPIs of the SAs this one still answers for besides itself: a
    /// rekeyed predecessor finishing its DELETE, the redundant SA of a
    /// rekey collision, the SA the peer's rekey created while ours is in
    /// flight. The endpoint routes datagrams for these SPIs here too.
    pub fn other_local_spis(&self) -> Vec<IkeSpi> {
        self.retired
            .iter()
            .filter(|r| !r.is_closed())
            .map(IkeSa::local_spi)
            .chain(self.successor.as_ref().map(|(s, _)| s.local_spi()))
            .collect()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the SA is gone (drain the outputs, then drop it).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether a DELETE of this SA is under way.
    pub fn is_closing(&self) -> bool {
        self.request
            .as_ref()
            .is_some_and(|r| r.kind == RequestKind::DeleteIke)
            || self.queued.contains(&RequestKind::DeleteIke)
    }

    /// A snapshot for operators.
    pub fn status(&self) -> Status {
        Status {
            role: self.role,
            phase: self.phase,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            algorithms: self.algorithms,
            established_at: self.established_at,
            nat: self.nat,
            child: self
                .child
                .as_ref()
                .map(|c| (c.spi_in, c.spi_out, c.algorithms)),
            child_selectors: self
                .child
                .as_ref()
                .map(|c| (c.ts_local.clone(), c.ts_remote.clone())),
            local: self.local,
            remote: self.remote,
        }
    }

    /// The next output, if any: ours first, then what retired SAs send
    /// (their events are theirs alone: they carry no child and their end
    /// is part of a rekey, not news for the daemon).
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.outputs.pop_front() {
            return Some(o);
        }
        let mut i = 0;
        while let Some(r) = self.retired.get_mut(i) {
            while let Some(o) = r.poll_output() {
                if let Output::Transmit(t) = o {
                    return Some(Output::Transmit(t));
                }
            }
            if r.is_closed() {
                self.retired.remove(i);
            } else {
                i += 1;
            }
        }
        if let Some((s, _)) = &mut self.successor {
            while let Some(o) = s.poll_output() {
                if let Output::Transmit(t) = o {
                    return Some(Output::Transmit(t));
                }
            }
        }
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        let nested = self.retired.iter().filter_map(IkeSa::poll_timeout).min();
        let own = if let Some(deadline) = self.retire_deadline {
            let req = self
                .request
                .as_ref()
                .map(|r| r.next_send.min(r.first_sent + self.give_up_after(r.kind)));
            Some(req.map_or(deadline, |r| r.min(deadline)))
        } else {
            let mut t: Option<Instant> = None;
            let mut at = |x: Option<Instant>| {
                if let Some(x) = x {
                    t = Some(t.map_or(x, |t| t.min(x)));
                }
            };
            if let Some(req) = &self.request {
                at(Some(
                    req.next_send
                        .min(req.first_sent + self.give_up_after(req.kind)),
                ));
            }
            if self.phase == Phase::Established {
                if self.request.is_none() {
                    at(Some(self.last_heard + self.cfg.dpd_interval));
                }
                // A closing SA only waits for its DELETE's answer:
                // `handle_timeout` neither rekeys it nor keeps its NAT
                // binding alive, so nothing else may wake it (it would be
                // woken again and again for nothing).
                if !self.is_closing() {
                    at(self.ike_rekey_at);
                    at(self.ike_expire_at);
                    if let Some(c) = &self.child {
                        at(c.rekey_at);
                        at(Some(c.expire_at));
                    }
                    if self.nat {
                        at(Some(self.last_sent + NAT_KEEPALIVE_INTERVAL));
                    }
                }
            }
            t
        };
        [own, nested].into_iter().flatten().min()
    }

    /// The datapath saw authentic ESP from the peer: proof of liveness
    /// that saves a DPD exchange (RFC 7296 §2.4).
    pub fn note_inbound_traffic(&mut self, now: Instant) {
        if now > self.last_heard {
            self.last_heard = now;
        }
    }

    /// The datapath's byte count of the current child SA (both directions,
    /// since it was installed). Past 90% of the configured byte lifetime
    /// the child is rekeyed at the next [`handle_timeout`](Self::handle_timeout)
    /// ([`poll_timeout`](Self::poll_timeout) then says `now`).
    pub fn note_child_bytes(&mut self, now: Instant, bytes: u64) {
        self.note_child_usage(now, bytes, 0);
    }

    /// The datapath's byte and packet counts of the current child SA (both
    /// directions, since it was installed): past 90% of either lifetime the
    /// child is rekeyed; past 100% (a rekey that did not happen in time)
    /// its hard lifetime has ended, as when its time runs out.
    pub fn note_child_usage(&mut self, now: Instant, bytes: u64, packets: u64) {
        let hard_bytes = self.cfg.child_lifetime_bytes;
        let hard_packets = match self.cfg.child_lifetime_packets {
            0 => u64::MAX,
            n => n,
        };
        if let Some(c) = &mut self.child {
            if (bytes >= c.rekey_bytes || packets >= c.rekey_packets) && c.rekey_at.is_some() {
                c.rekey_at = Some(now);
            }
            if bytes >= hard_bytes || packets >= hard_packets {
                c.expire_at = c.expire_at.min(now);
            }
        }
    }

    /// Time passed: retransmit, give up, check liveness, rekey at the soft
    /// lifetimes, end the SA at the hard ones, send NAT keepalives.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut dyn Random) {
        if self.phase == Phase::Closed {
            return;
        }
        for r in &mut self.retired {
            if r.poll_timeout().is_some_and(|t| t <= now) {
                r.handle_timeout(now, rng);
            }
        }
        if self.retire_deadline.is_some_and(|d| now >= d) {
            // A retired SA whose DELETE never completed: drop it quietly.
            self.phase = Phase::Closed;
            return;
        }
        if let Some(req) = &mut self.request {
            let give_up = req.first_sent + give_up_after(&self.cfg, req.kind);
            if now >= give_up || (now >= req.next_send && req.retries >= self.cfg.retransmit_tries)
            {
                let reason = match req.kind {
                    RequestKind::Init | RequestKind::Auth => CloseReason::Timeout,
                    RequestKind::Liveness
                    | RequestKind::DeleteChild(_)
                    | RequestKind::RekeyChild
                    | RequestKind::RekeyIke => CloseReason::DeadPeer,
                    RequestKind::DeleteIke => self
                        .closing_reason
                        .take()
                        .unwrap_or(CloseReason::DeletedLocally),
                };
                self.request = None;
                self.close_with(reason);
                return;
            }
            if now >= req.next_send {
                req.retries += 1;
                let backoff = self
                    .cfg
                    .retransmit_timeout
                    .saturating_mul(1 << req.retries.min(16));
                req.next_send = now + backoff;
                let data = req.data.clone();
                self.transmit(data);
            }
        }
        if self.phase != Phase::Established || self.retire_deadline.is_some() || self.is_closing() {
            return;
        }
        if self.ike_expire_at.is_some_and(|t| now >= t) {
            self.expire("IKE", now);
            return;
        }
        if self.child.as_ref().is_some_and(|c| now >= c.expire_at) {
            self.expire("child", now);
            return;
        }
        if self.ike_rekey_at.is_some_and(|t| now >= t) {
            self.ike_rekey_at = None;
            rekey::start_ike_rekey(self, now, rng);
        }
        if self
            .child
            .as_ref()
            .and_then(|c| c.rekey_at)
            .is_some_and(|t| now >= t)
        {
            if let Some(c) = &mut self.child {
                c.rekey_at = None;
            }
            rekey::start_child_rekey(self, now, rng);
        }
        if self.request.is_none() && now >= self.last_heard + self.cfg.dpd_interval {
            self.queue_request(RequestKind::Liveness, now);
        }
        self.sync_sent(now);
        if self.nat && now >= self.last_sent + NAT_KEEPALIVE_INTERVAL {
            self.last_sent = now;
            self.outputs.push_back(Output::NatKeepalive {
                local: self.local,
                remote: self.remote,
            });
        }
    }

    /// Starts a rekey of the child SA now (CREATE_CHILD_SA with REKEY_SA,
    /// §1.3.3), as the soft lifetime would; for operators who force one.
    /// Does nothing unless the SA is established with a child and no rekey
    /// of it is under way.
    pub fn rekey_child(&mut self, now: Instant, rng: &mut dyn Random) {
        if self.phase == Phase::Established && self.retire_deadline.is_none() {
            if let Some(c) = &mut self.child {
                c.rekey_at = None;
            }
            rekey::start_child_rekey(self, now, rng);
            self.sync_sent(now);
        }
    }

    /// Checks the peer's liveness now (an empty INFORMATIONAL request,
    /// §2.4) instead of after `dpd_interval` of silence: something hinted
    /// that the peer is gone. Unanswered within `dpd_timeout`, the SA
    /// closes as [`CloseReason::DeadPeer`]. Does nothing unless the SA is
    /// established; a request already in flight is check enough.
    pub fn check_liveness(&mut self, now: Instant) {
        if self.phase == Phase::Established
            && self.retire_deadline.is_none()
            && self.request.is_none()
        {
            self.queue_request(RequestKind::Liveness, now);
            self.sync_sent(now);
        }
    }

    /// Starts a rekey of the IKE SA now (§1.3.2), as the soft lifetime
    /// would. Does nothing unless the SA is established and no IKE rekey is
    /// under way.
    pub fn rekey_ike(&mut self, now: Instant, rng: &mut dyn Random) {
        if self.phase == Phase::Established && self.retire_deadline.is_none() {
            self.ike_rekey_at = None;
            rekey::start_ike_rekey(self, now, rng);
            self.sync_sent(now);
        }
    }

    /// A hard lifetime passed: delete the IKE SA (with its child); the
    /// endpoint restarts an initiator's connection.
    fn expire(&mut self, sa: &'static str, now: Instant) {
        self.ike_expire_at = None;
        if let Some(c) = &mut self.child {
            c.rekey_at = None;
        }
        self.closing_reason = Some(CloseReason::LifetimeExpired { sa });
        self.queued.clear();
        self.queue_request(RequestKind::DeleteIke, now);
    }

    /// Deletes the IKE SA (and its child): sends DELETE, then closes when
    /// it is answered or times out.
    pub fn close(&mut self, now: Instant) {
        match self.phase {
            Phase::Established => {
                self.queued.clear();
                self.queue_request(RequestKind::DeleteIke, now);
                self.sync_sent(now);
            }
            Phase::InitSent | Phase::AuthSent | Phase::InitReplied => {
                self.close_with(CloseReason::DeletedLocally)
            }
            Phase::Closed => {}
        }
    }

    /// Whether the peer sent INITIAL_CONTACT when this SA was set up.
    pub fn peer_initial_contact(&self) -> bool {
        self.peer_initial_contact
    }

    /// Whether this SA was established before `t`.
    pub fn established_before(&self, t: Instant) -> bool {
        self.established_at.is_some_and(|e| e < t)
    }

    /// When this SA's setup began.
    pub fn created_at(&self) -> Instant {
        self.created_at
    }

    /// Ends the SA at once, without a DELETE: the peer restarted and
    /// announced it with INITIAL_CONTACT on a new SA
    /// ([`CloseReason::Superseded`]).
    pub fn supersede(&mut self) {
        self.close_with(CloseReason::Superseded);
    }

    /// Whether a message with this header belongs to this SA.
    fn matches(&self, header: &Header) -> bool {
        // SPIr is learned from the IKE_SA_INIT response, and is still zero
        // in a retransmitted IKE_SA_INIT request.
        let spi_r_ok = header.spi_r == self.spi_r
            || self.phase == Phase::InitSent
            || (self.role == Role::Responder
                && header.spi_r.is_zero()
                && header.exchange_type == ExchangeType::IKE_SA_INIT);
        header.spi_i == self.spi_i && spi_r_ok
    }

    /// Processes a datagram from `remote` (already matched to this SA by
    /// its SPIs, or to one of [`other_local_spis`](Self::other_local_spis);
    /// without the non-ESP marker).
    pub fn handle(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        datagram: &[u8],
        rng: &mut dyn Random,
    ) {
        if self.phase == Phase::Closed {
            return;
        }
        let Ok((header, _)) = Header::peek(datagram) else {
            return;
        };
        if !self.matches(&header) {
            self.handle_nested(now, remote, &header, datagram, rng);
            return;
        }
        let result = if header.flags.response() {
            self.handle_response(now, remote, &header, datagram, rng)
        } else {
            self.handle_request(now, remote, &header, datagram, rng)
        };
        match result {
            Ok(()) => {}
            Err(Drop::Silently) => {}
            Err(Drop::Close(reason)) => self.close_with(reason),
        }
        self.sync_sent(now);
    }

    /// Everything is sent at the `now` of the call that sent it: note it.
    fn sync_sent(&mut self, now: Instant) {
        if self.sent {
            self.sent = false;
            self.last_sent = now;
        }
    }

    /// A datagram for a retired SA or for the successor a collision left
    /// pending.
    fn handle_nested(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        header: &Header,
        datagram: &[u8],
        rng: &mut dyn Random,
    ) {
        if let Some(r) = self.retired.iter_mut().find(|r| r.matches(header)) {
            r.handle(now, remote, datagram, rng);
            return;
        }
        let Some((s, _)) = &mut self.successor else {
            return;
        };
        if !s.matches(header) {
            return;
        }
        s.handle(now, remote, datagram, rng);
        if s.is_closed() {
            // The peer deleted it: it lost the collision on the peer's side
            // (§2.8.2). Keep what it still has to send.
            if let Some((mut s, _)) = self.successor.take() {
                while let Some(o) = s.poll_output() {
                    if let Output::Transmit(t) = o {
                        self.outputs.push_back(Output::Transmit(t));
                    }
                }
            }
        }
    }

    fn handle_response(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        header: &Header,
        datagram: &[u8],
        rng: &mut dyn Random,
    ) -> Result<(), Drop> {
        let Some(req) = &self.request else {
            return Err(Drop::Silently);
        };
        // A response must come from the peer, for our request in flight.
        let from_peer = match self.role {
            Role::Initiator => !header.flags.initiator(),
            Role::Responder => header.flags.initiator(),
        };
        if !from_peer || header.message_id != req.message_id {
            return Err(Drop::Silently);
        }
        let kind = req.kind;
        if kind == RequestKind::Init {
            return exchange::handle_init_response(self, header, datagram, now, rng);
        }
        let payloads = self.decrypt(datagram)?;
        self.heard(now, remote);
        self.request = None;
        match kind {
            RequestKind::Auth => exchange::handle_auth_response(self, &payloads, now, rng)?,
            RequestKind::Liveness => {}
            RequestKind::DeleteIke => {
                let reason = self
                    .closing_reason
                    .take()
                    .unwrap_or(CloseReason::DeletedLocally);
                return Err(Drop::Close(reason));
            }
            RequestKind::DeleteChild(spi_in) => self.child_deleted(spi_in),
            RequestKind::RekeyChild => rekey::handle_child_response(self, &payloads, now, rng)?,
            RequestKind::RekeyIke => rekey::handle_ike_response(self, &payloads, now, rng)?,
            RequestKind::Init => return Err(Drop::Silently),
        }
        self.send_queued(now);
        Ok(())
    }

    /// The DELETE exchange of the child with inbound SPI `spi_in` is over
    /// (either side's): it leaves the datapath.
    fn child_deleted(&mut self, spi_in: u32) {
        if let Some(i) = self.retiring.iter().position(|c| c.spi_in == spi_in) {
            let c = self.retiring.remove(i);
            self.event(Event::ChildDeleted {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        } else if self.child.as_ref().is_some_and(|c| c.spi_in == spi_in) {
            if let Some(c) = self.child.take() {
                self.event(Event::ChildDeleted {
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                });
            }
        }
        self.redundant.retain(|(i, _)| *i != spi_in);
    }

    fn handle_request(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        header: &Header,
        datagram: &[u8],
        rng: &mut dyn Random,
    ) -> Result<(), Drop> {
        let from_peer = match self.role {
            Role::Initiator => !header.flags.initiator(),
            Role::Responder => header.flags.initiator(),
        };
        if !from_peer {
            return Err(Drop::Silently);
        }
        // A retransmission of the request we answered last: resend the
        // answer byte for byte (§2.1), without processing it again.
        if let Some((id, response)) = &self.last_response {
            if header.message_id == *id {
                if header.exchange_type == ExchangeType::IKE_SA_INIT {
                    // Answer on the port the retransmission came to (500).
                    let mut local = self.local;
                    local.set_port(IKE_PORT);
                    let data = response.clone();
                    self.outputs.push_back(Output::Transmit(Transmit {
                        local,
                        remote,
                        data,
                    }));
                } else if self.decrypt(datagram).is_ok() {
                    let response = response.clone();
                    self.transmit(response);
                }
                return Ok(());
            }
        }
        if header.message_id != self.peer_message_id {
            return Err(Drop::Silently);
        }
        if header.exchange_type == ExchangeType::IKE_SA_INIT {
            return Err(Drop::Silently);
        }
        let payloads = self.decrypt(datagram)?;
        self.heard(now, remote);
        match (self.phase, header.exchange_type) {
            (Phase::InitReplied, ExchangeType::IKE_AUTH) => {
                exchange::handle_auth_request(self, header, &payloads, now, rng)
            }
            (Phase::Established, ExchangeType::INFORMATIONAL) => {
                exchange::handle_informational(self, header, &payloads, now, rng)
            }
            (Phase::Established, ExchangeType::CREATE_CHILD_SA) => {
                rekey::handle_request(self, header, &payloads, now, rng)
            }
            _ => Err(Drop::Silently),
        }
    }

    /// Records that an authentic message arrived from `remote`; behind a
    /// NAT the peer's address may change, and we follow it (§2.23).
    fn heard(&mut self, now: Instant, remote: SocketAddr) {
        self.last_heard = now;
        if self.nat && remote != self.remote {
            self.remote = remote;
        }
    }

    /// Queues a request of ours, sending it at once if none is in flight.
    fn queue_request(&mut self, kind: RequestKind, now: Instant) {
        if !self.queued.contains(&kind) {
            self.queued.push_back(kind);
        }
        self.send_queued(now);
    }

    /// Sends the next queued request if none is in flight. A queued rekey
    /// whose state went away meanwhile (the peer rekeyed first) is skipped.
    fn send_queued(&mut self, now: Instant) {
        while self.request.is_none() && self.phase != Phase::Closed {
            let Some(kind) = self.queued.pop_front() else {
                return;
            };
            let (exchange, payloads) = match kind {
                RequestKind::Liveness => (ExchangeType::INFORMATIONAL, Vec::new()),
                RequestKind::DeleteIke => (
                    ExchangeType::INFORMATIONAL,
                    vec![Payload::Delete(super::wire::Delete::ike())],
                ),
                RequestKind::DeleteChild(spi_in) => (
                    ExchangeType::INFORMATIONAL,
                    vec![Payload::Delete(super::wire::Delete::esp(vec![spi_in]))],
                ),
                RequestKind::RekeyChild => match rekey::child_request(self) {
                    Some(p) => (ExchangeType::CREATE_CHILD_SA, p),
                    None => continue,
                },
                RequestKind::RekeyIke => match rekey::ike_request(self) {
                    Some(p) => (ExchangeType::CREATE_CHILD_SA, p),
                    None => continue,
                },
                RequestKind::Init | RequestKind::Auth => continue,
            };
            self.send_encrypted_request(kind, exchange, payloads, now);
        }
    }

    /// Encrypts and sends a request, keeping it for retransmission.
    fn send_encrypted_request(
        &mut self,
        kind: RequestKind,
        exchange: ExchangeType,
        payloads: Vec<Payload>,
        now: Instant,
    ) {
        let message_id = self.next_message_id;
        let flags = self.flags(false);
        match self.encrypt(exchange, flags, message_id, &payloads) {
            Ok(data) => {
                self.next_message_id = self.next_message_id.wrapping_add(1);
                self.start_request(kind, message_id, data, now);
            }
            Err(reason) => self.close_with(reason),
        }
    }

    /// Sends `data` as request `message_id` and arms its retransmission.
    fn start_request(&mut self, kind: RequestKind, message_id: u32, data: Vec<u8>, now: Instant) {
        self.transmit(data.clone());
        self.request = Some(Request {
            kind,
            message_id,
            data,
            first_sent: now,
            next_send: now + self.cfg.retransmit_timeout,
            retries: 0,
        });
    }

    /// Sends a response to the peer's request `message_id` and caches it.
    fn respond_with(&mut self, message_id: u32, data: Vec<u8>) {
        self.transmit(data.clone());
        self.last_response = Some((message_id, data));
        self.peer_message_id = message_id.wrapping_add(1);
    }

    /// Encrypts and sends a response.
    fn respond_encrypted(
        &mut self,
        exchange: ExchangeType,
        message_id: u32,
        payloads: &[Payload],
    ) -> Result<(), Drop> {
        let flags = self.flags(true);
        let data = self
            .encrypt(exchange, flags, message_id, payloads)
            .map_err(Drop::Close)?;
        self.respond_with(message_id, data);
        Ok(())
    }

    fn flags(&self, response: bool) -> Flags {
        let mut bits = 0;
        if self.role == Role::Initiator {
            bits |= Flags::INITIATOR.0;
        }
        if response {
            bits |= Flags::RESPONSE.0;
        }
        Flags(bits)
    }

    fn header(&self, exchange: ExchangeType, flags: Flags, message_id: u32) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            exchange_type: exchange,
            flags,
            message_id,
        }
    }

    /// Builds a message whose only payload is SK around `payloads`. The IV
    /// is derived from the message ID and direction: unique per SK key.
    fn encrypt(
        &self,
        exchange: ExchangeType,
        flags: Flags,
        message_id: u32,
        payloads: &[Payload],
    ) -> Result<Vec<u8>, CloseReason> {
        let keys = self
            .keys
            .as_ref()
            .ok_or_else(|| CloseReason::Protocol("no keys yet".into()))?;
        let (first, inner) = super::wire::encode_payloads(payloads)
            .map_err(|e| CloseReason::Protocol(format!("cannot encode: {e}")))?;
        let header = self.header(exchange, flags, message_id);
        let body_len = keys.sk_out.body_len(inner.len());
        let prefix = Encrypted::prefix(&header, first, body_len)
            .map_err(|e| CloseReason::Protocol(format!("cannot encode: {e}")))?;
        let iv = message_iv(keys.sk_out.iv_len(), message_id, flags);
        let body = keys
            .sk_out
            .protect(&prefix, &iv, &inner)
            .map_err(|e| CloseReason::Protocol(format!("cannot encrypt: {e}")))?;
        Ok(super::wire::assemble(prefix, &body))
    }

    /// Decrypts a message whose last payload is SK; any failure drops it
    /// silently (§2.21.2: an invalid ICV is not answered).
    fn decrypt(&self, datagram: &[u8]) -> Result<Vec<Payload>, Drop> {
        let keys = self.keys.as_ref().ok_or(Drop::Silently)?;
        let message = Message::decode(datagram).map_err(|_| Drop::Silently)?;
        let Some(Payload::Encrypted(sk)) = message.payloads.last() else {
            return Err(Drop::Silently);
        };
        let prefix = sk.authenticated_prefix(datagram).ok_or(Drop::Silently)?;
        let inner = keys
            .sk_in
            .unprotect(prefix, &sk.body)
            .map_err(|_| Drop::Silently)?;
        decode_payloads(sk.next_payload, &inner).map_err(|_| Drop::Silently)
    }

    fn transmit(&mut self, data: Vec<u8>) {
        self.sent = true;
        self.outputs.push_back(Output::Transmit(Transmit {
            local: self.local,
            remote: self.remote,
            data,
        }));
    }

    fn event(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    /// Ends the SA: reports the child's removal and the reason.
    fn close_with(&mut self, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        let children: Vec<Child> = self
            .child
            .take()
            .into_iter()
            .chain(self.retiring.drain(..))
            .collect();
        for c in children {
            self.event(Event::ChildDeleted {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
        self.phase = Phase::Closed;
        self.request = None;
        self.queued.clear();
        self.setup = None;
        self.child_rekey = None;
        self.ike_rekey = None;
        self.successor = None;
        self.redundant.clear();
        self.event(Event::Closed(reason));
    }

    /// Records a new child SA as the one in use, with its lifetimes.
    fn track_child(&mut self, child: &ChildSa, now: Instant, rng: &mut dyn Random) -> Child {
        let lifetime = self.cfg.child_lifetime;
        let bytes = self.cfg.child_lifetime_bytes;
        Child {
            spi_in: child.spi_in,
            spi_out: child.spi_out,
            algorithms: child.algorithms,
            ts_local: child.ts_local.clone(),
            ts_remote: child.ts_remote.clone(),
            rekey_at: Some(soft_deadline(now, lifetime, rng)),
            expire_at: now + lifetime,
            rekey_bytes: bytes / 10 * 9,
            rekey_packets: match self.cfg.child_lifetime_packets {
                0 => u64::MAX,
                n => n / 10 * 9,
            },
        }
    }

    /// Arms the IKE SA's lifetimes (at establishment and after a rekey).
    fn arm_ike_lifetime(&mut self, now: Instant, rng: &mut dyn Random) {
        self.ike_rekey_at = Some(soft_deadline(now, self.cfg.ike_lifetime, rng));
        self.ike_expire_at = Some(now + self.cfg.ike_lifetime);
    }

    /// Turns this SA into `new`, the IKE SA a rekey created (§2.18), in
    /// place: the object keeps its identity for the endpoint (which
    /// re-indexes it under the new [`local_spi`](Self::local_spi)) and its
    /// outputs, and the connection's state moves over with it (the child
    /// SAs, queued requests). The old SA becomes a retired SA inside this
    /// one, answering for its own SPIs until its DELETE exchange is over:
    /// ours when `delete_old` (we initiated the surviving rekey), otherwise
    /// the peer's.
    fn adopt(&mut self, mut new: IkeSa, delete_old: bool, now: Instant, rng: &mut dyn Random) {
        std::mem::swap(self, &mut new);
        let mut old = new;
        self.outputs = std::mem::take(&mut old.outputs);
        self.child = old.child.take();
        self.retiring = std::mem::take(&mut old.retiring);
        self.redundant = std::mem::take(&mut old.redundant);
        self.child_rekey = old.child_rekey.take();
        self.retired = std::mem::take(&mut old.retired);
        self.last_heard = now;
        self.last_sent = old.last_sent;
        self.queued = old
            .queued
            .drain(..)
            .filter(|k| !matches!(k, RequestKind::DeleteIke | RequestKind::RekeyIke))
            .collect();
        self.arm_ike_lifetime(now, rng);
        old.ike_rekey = None;
        old.successor = None;
        old.ike_rekey_at = None;
        old.ike_expire_at = None;
        old.retire(now);
        if delete_old {
            old.queue_request(RequestKind::DeleteIke, now);
            old.sync_sent(now);
        }
        self.retired.push(old);
        self.event(Event::IkeRekeyed {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
        });
        self.send_queued(now);
    }

    /// Makes this SA a retired one: no timers but its DELETE's, dropped
    /// when that exchange is over or after the DPD timeout.
    fn retire(&mut self, now: Instant) {
        self.retire_deadline = Some(now + self.cfg.dpd_timeout);
    }

    fn give_up_after(&self, kind: RequestKind) -> Duration {
        give_up_after(&self.cfg, kind)
    }

    /// Switches IKE to port 4500 on both ends (after NAT detection).
    fn float_to_natt(&mut self) {
        self.nat = true;
        self.local.set_port(NATT_PORT);
        if self.remote.port() == IKE_PORT {
            self.remote.set_port(NATT_PORT);
        }
    }

    /// The child SA's keys, oriented for us: `exchange_initiator` says
    /// whether we initiated the exchange that created it (the KEYMAT's
    /// first half protects what that exchange's initiator sends, §2.17).
    #[allow(clippy::too_many_arguments)]
    fn child_sa(
        &self,
        exchange_initiator: bool,
        keys: ChildKeys,
        spi_in: u32,
        spi_out: u32,
        algorithms: EspAlgorithms,
        ts_local: Vec<TrafficSelector>,
        ts_remote: Vec<TrafficSelector>,
    ) -> ChildSa {
        let ChildKeys {
            encr,
            integ,
            encr_i,
            integ_i,
            encr_r,
            integ_r,
        } = keys;
        let i = SaKeys {
            encr,
            integ,
            encr_key: encr_i,
            integ_key: integ_i,
        };
        let r = SaKeys {
            encr,
            integ,
            encr_key: encr_r,
            integ_key: integ_r,
        };
        let (keys_in, keys_out) = if exchange_initiator { (r, i) } else { (i, r) };
        ChildSa {
            spi_in,
            spi_out,
            algorithms,
            keys_in,
            keys_out,
            ts_local,
            ts_remote,
            udp_encap: self.nat,
        }
    }
}

/// The soft lifetime: 10% before the hard one, and a random 0–5% of the
/// lifetime earlier still, so that two peers with the same configuration
/// rarely start rekeying at once (§2.8.1).
pub fn soft_deadline(now: Instant, lifetime: Duration, rng: &mut dyn Random) -> Instant {
    let mut b = [0u8; 4];
    rng.fill(&mut b);
    let fraction = f64::from(u32::from_be_bytes(b)) / f64::from(u32::MAX);
    let jitter = (lifetime / 20).mul_f64(fraction);
    now + lifetime.saturating_sub(lifetime / 10 + jitter)
}

/// How long a request may go unanswered: setup requests as long as the
/// retransmissions take, requests of an established SA the DPD timeout.
fn give_up_after(cfg: &SaConfig, kind: RequestKind) -> Duration {
    match kind {
        RequestKind::Liveness
        | RequestKind::DeleteIke
        | RequestKind::DeleteChild(_)
        | RequestKind::RekeyChild
        | RequestKind::RekeyIke => cfg.dpd_timeout,
        RequestKind::Init | RequestKind::Auth => {
            let mut total = Duration::ZERO;
            for i in 0..=cfg.retransmit_tries {
                total += cfg.retransmit_timeout.saturating_mul(1 << i.min(16));
            }
            total
        }
    }
}

/// A deterministic, unique IV per (key, message): the message ID and the
/// response bit. For AES-CBC the IV must also be unpredictable to an
/// attacker who chooses plaintext, which IKE's attacker cannot (the
/// plaintext is ours and fixed by the protocol); RFC 7296 §3.14 requires
/// unpredictability only against such chosen-plaintext attacks.
fn message_iv(len: usize, message_id: u32, flags: Flags) -> Vec<u8> {
    let mut iv = vec![0u8; len];
    let tail = message_id.to_be_bytes();
    let n = iv.len();
    if n >= 5 {
        iv[n - 4..].copy_from_slice(&tail);
        iv[n - 5] = u8::from(flags.response());
    }
    iv
}

fn random_spi(rng: &mut dyn Random) -> IkeSpi {
    loop {
        let mut spi = [0u8; 8];
        rng.fill(&mut spi);
        if spi != [0; 8] {
            return IkeSpi(spi);
        }
    }
}

/// A child SPI: random, never 0..=255 (reserved, RFC 4303 §2.1).
fn random_child_spi(rng: &mut dyn Random) -> u32 {
    loop {
        let mut b = [0u8; 4];
        rng.fill(&mut b);
        let spi = u32::from_be_bytes(b);
        if spi > 255 {
            return spi;
        }
    }
}

/// Our identity as a string for messages.
fn describe_id(id: &Identification) -> String {
    use super::wire::IdType;
    match id.id_type {
        IdType::ID_IPV4_ADDR if id.data.len() == 4 => {
            let mut o = [0u8; 4];
            o.copy_from_slice(&id.data);
            IpAddr::from(o).to_string()
        }
        IdType::ID_IPV6_ADDR if id.data.len() == 16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&id.data);
            IpAddr::from(o).to_string()
        }
        IdType::ID_FQDN | IdType::ID_RFC822_ADDR => String::from_utf8_lossy(&id.data).into_owned(),
        other => format!(
            "{other:?}:{}",
            id.data
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
    }
}

#[cfg(test)]
mod tests;
