//! The BGP session FSM (RFC 4271 §8): connect-retry, hold and keepalive
//! timers, passive mode, collision detection; sans-IO.
//!
//! A [`Session`] is one peer's state machine. It never touches a socket or
//! a clock: the driver feeds it [`Input`]s with the current time through
//! [`Session::handle`], drains what it has to do with
//! [`Session::poll_output`] (open a connection, send bytes, close a
//! connection, report an [`Event`]) and calls `handle(now, Input::Timer)`
//! once [`Session::poll_timeout`] has passed.
//!
//! Connections are named by the driver ([`ConnectionId`]). A session holds
//! at most two at once: while one is in OpenSent or OpenConfirm, the peer
//! may open a second one in the other direction. As soon as the peer's BGP
//! Identifier is known (its OPEN arrived on either connection), the
//! collision is resolved as RFC 4271 §6.8 says: the connection initiated by
//! the speaker with the higher BGP Identifier survives, the other is closed
//! with Cease / Connection Collision Resolution. Both ends apply the same
//! rule to the same pair of identifiers, so they close the same TCP
//! connection. A connection arriving while Established is refused the same
//! way.
//!
//! States map onto connections: with no connection the session is Idle,
//! Connect (a connection attempt is out) or Active (waiting: passive, or
//! between attempts); otherwise it is in the most advanced state of its
//! connections.
//!
//! After an error the session goes to Idle and starts again by itself after
//! the IdleHoldTime (or the delay the caller gives with [`Input::Stop`]);
//! during that time incoming connections are refused, as in Idle.

use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::wire::iana::{
    CeaseSubcode, FsmSubcode, MessageHeaderSubcode, OpenSubcode, UpdateSubcode,
};
use crate::wire::{
    Afi, Capability, DecodeContext, EncodeError, ErrorCode, Message, Notification, Open,
    RouteRefresh, Safi, Update,
};

/// The hold timer while waiting for the peer's OPEN (RFC 4271 §8.2.2
/// suggests 4 minutes).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// A TCP connection, numbered by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We connected to the peer.
    Outbound,
    /// The peer connected to us.
    Inbound,
}

/// The FSM states (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Refusing connections; nothing going on.
    Idle,
    /// Waiting for our connection attempt.
    Connect,
    /// Waiting for the peer to connect (or for the next attempt).
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for a KEEPALIVE.
    OpenConfirm,
    /// Exchanging routes.
    Established,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Idle => "Idle",
            Self::Connect => "Connect",
            Self::Active => "Active",
            Self::OpenSent => "OpenSent",
            Self::OpenConfirm => "OpenConfirm",
            Self::Established => "Established",
        })
    }
}

/// What one session needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our ASN.
    pub local_as: u32,
    /// Our BGP Identifier.
    pub router_id: Ipv4Addr,
    /// The peer's ASN.
    pub remote_as: u32,
    /// Never initiate; wait for the peer.
    pub passive: bool,
    /// HoldTime we propose (0, or at least 3).
    pub hold_time: u16,
    /// KeepaliveTime (the negotiated hold time / 3 when smaller).
    pub keepalive_time: u16,
    /// ConnectRetryTime.
    pub connect_retry_time: Duration,
    /// IdleHoldTime after an error.
    pub idle_hold_time: Duration,
    /// Offer IPv6 unicast (RFC 4760) besides IPv4 unicast.
    pub ipv6: bool,
}

/// Why a session stopped on our side's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The operator (or the daemon) stopped it.
    Administrative,
    /// The peer was removed from the configuration.
    Deconfigured,
    /// The path to the peer failed (the tunnel went down).
    TransportDown,
    /// The peer announced more prefixes than allowed.
    MaxPrefixes {
        /// The limit.
        limit: u32,
    },
}

impl StopReason {
    /// The Cease subcode sent (RFC 4486).
    fn notification(self) -> Notification {
        match self {
            Self::Administrative | Self::TransportDown => {
                Notification::cease(CeaseSubcode::AdministrativeShutdown)
            }
            Self::Deconfigured => Notification::cease(CeaseSubcode::PeerDeconfigured),
            Self::MaxPrefixes { limit } => {
                // RFC 4486 §4: AFI, SAFI and the upper bound.
                let mut data = Vec::with_capacity(7);
                data.extend_from_slice(&u16::from(Afi::Ipv4).to_be_bytes());
                data.push(u8::from(Safi::Unicast));
                data.extend_from_slice(&limit.to_be_bytes());
                Notification::new(
                    ErrorCode::Cease,
                    CeaseSubcode::MaximumNumberOfPrefixesReached,
                    data,
                )
            }
        }
    }
}

/// Why a session went down (or a connection attempt ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// The peer sent something wrong; we answered with this NOTIFICATION.
    NotificationSent(Notification),
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// Nothing heard from the peer for the hold time; we sent Hold Timer
    /// Expired.
    HoldTimerExpired,
    /// The TCP connection closed without a NOTIFICATION.
    ConnectionClosed,
    /// We stopped it, and sent Cease.
    Stopped(StopReason),
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotificationSent(n) => write!(f, "sent NOTIFICATION {}", describe(n)),
            Self::NotificationReceived(n) => write!(f, "received NOTIFICATION {}", describe(n)),
            Self::HoldTimerExpired => f.write_str("hold timer expired"),
            Self::ConnectionClosed => f.write_str("connection closed by the peer"),
            Self::Stopped(StopReason::Administrative) => f.write_str("stopped by the operator"),
            Self::Stopped(StopReason::Deconfigured) => f.write_str("peer removed from the config"),
            Self::Stopped(StopReason::TransportDown) => f.write_str("the tunnel went down"),
            Self::Stopped(StopReason::MaxPrefixes { limit }) => write!(
                f,
                "the peer sent more than {limit} prefixes; \
                 sent Cease / Maximum Number of Prefixes Reached"
            ),
        }
    }
}

/// A NOTIFICATION in words: "Cease / Maximum Number of Prefixes Reached".
pub fn describe(n: &Notification) -> String {
    let code = n.code;
    let sub = n.subcode;
    let (code_text, sub_text) = match code {
        ErrorCode::MessageHeader => (
            "Message Header Error",
            words(&format!("{:?}", MessageHeaderSubcode::from(sub))),
        ),
        ErrorCode::OpenMessage => (
            "OPEN Message Error",
            words(&format!("{:?}", OpenSubcode::from(sub))),
        ),
        ErrorCode::UpdateMessage => (
            "UPDATE Message Error",
            words(&format!("{:?}", UpdateSubcode::from(sub))),
        ),
        ErrorCode::HoldTimerExpired => ("Hold Timer Expired", String::new()),
        ErrorCode::FiniteStateMachine => (
            "Finite State Machine Error",
            words(&format!("{:?}", FsmSubcode::from(sub))),
        ),
        ErrorCode::Cease => ("Cease", words(&format!("{:?}", CeaseSubcode::from(sub)))),
        ErrorCode::RouteRefreshMessage => ("ROUTE-REFRESH Message Error", format!("{sub}")),
        ErrorCode::Unknown(c) => return format!("code {c} subcode {sub}"),
    };
    if sub == 0 || sub_text.is_empty() {
        code_text.to_string()
    } else {
        format!("{code_text} / {sub_text}")
    }
}

/// `MaximumNumberOfPrefixesReached` → `Maximum Number Of Prefixes Reached`.
fn words(camel: &str) -> String {
    let mut out = String::new();
    for (i, ch) in camel.chars().enumerate() {
        if i > 0 && ch.is_uppercase() {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

/// What was agreed in the OPEN exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The connection the session runs on.
    pub connection: ConnectionId,
    /// Our address on it.
    pub local: SocketAddr,
    /// The peer's address on it.
    pub remote: SocketAddr,
    /// The peer's OPEN.
    pub peer_open: Open,
    /// The hold time in force (0: no keepalives).
    pub hold_time: u16,
    /// The keepalive interval in force.
    pub keepalive_time: u16,
    /// What decoding needs: 4-octet ASes, internal peer.
    pub context: DecodeContext,
    /// IPv4 unicast was negotiated.
    pub ipv4: bool,
    /// IPv6 unicast was negotiated.
    pub ipv6: bool,
}

impl Negotiated {
    /// The peer's BGP Identifier.
    pub fn peer_router_id(&self) -> Ipv4Addr {
        self.peer_open.bgp_identifier
    }
}

/// Something the session tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The session reached Established.
    Established(Box<Negotiated>),
    /// An UPDATE arrived (RFC 7606 outcomes inside).
    Update(Box<Update>),
    /// The peer asks for our routes again (RFC 2918).
    RouteRefresh(RouteRefresh),
    /// The session (or its last connection) went down.
    Down {
        /// Why.
        reason: DownReason,
        /// Whether it had been Established (routes must go).
        was_established: bool,
    },
}

/// What the session asks of the driver, and what it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the peer, abandoning any attempt still out.
    Connect,
    /// Send these octets on the connection.
    Send {
        /// The connection.
        connection: ConnectionId,
        /// One or more whole messages.
        bytes: Vec<u8>,
    },
    /// Close the connection once what was sent on it is out.
    Close {
        /// The connection.
        connection: ConnectionId,
    },
    /// An event for the owner.
    Event(Event),
}

/// What happens to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// ManualStart / AutomaticStart: connect (or wait, when passive).
    Start,
    /// ManualStop: send Cease, close, go Idle; start again after
    /// `restart_after` if given.
    Stop {
        /// Why (sets the Cease subcode).
        reason: StopReason,
        /// Start again after this long.
        restart_after: Option<Duration>,
    },
    /// A connection is up: ours completed (Tcp_CR_Acked) or the peer's was
    /// accepted (TcpConnectionConfirmed).
    TcpConnected {
        /// Its id.
        connection: ConnectionId,
        /// Who opened it.
        direction: Direction,
        /// Our address.
        local: SocketAddr,
        /// The peer's address.
        remote: SocketAddr,
    },
    /// Our connection attempt failed (TcpConnectionFails).
    TcpConnectFailed,
    /// A connection closed or broke.
    TcpClosed {
        /// Which.
        connection: ConnectionId,
    },
    /// Octets arrived on a connection.
    Bytes {
        /// Which.
        connection: ConnectionId,
        /// The octets, framed by the session itself.
        data: &'a [u8],
    },
    /// Time passed: fire the timers that are due.
    Timer,
}

#[derive(Debug)]
struct Connection {
    id: ConnectionId,
    direction: Direction,
    local: SocketAddr,
    remote: SocketAddr,
    state: State,
    rx: Vec<u8>,
    negotiated: Option<Negotiated>,
    hold_deadline: Option<Instant>,
    keepalive_at: Option<Instant>,
}

/// One peer's RFC 4271 FSM. See the module documentation.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    /// Idle, Connect or Active: the state while no connection exists.
    base: State,
    connections: Vec<Connection>,
    connect_retry_at: Option<Instant>,
    connect_retry_counter: u32,
    restart_at: Option<Instant>,
    /// The pending restart is the IdleHoldTime after an error (not an
    /// operator's stop, not a max-prefix pause): a connection from the peer
    /// may start the session early.
    restart_on_connection: bool,
    outputs: VecDeque<Output>,
}

impl Session {
    /// A session in Idle.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            base: State::Idle,
            connections: Vec::new(),
            connect_retry_at: None,
            connect_retry_counter: 0,
            restart_at: None,
            restart_on_connection: false,
            outputs: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.connections
            .iter()
            .map(|c| c.state)
            .max()
            .unwrap_or(self.base)
    }

    /// What was negotiated, once Established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.connections
            .iter()
            .find(|c| c.state == State::Established)
            .and_then(|c| c.negotiated.as_ref())
    }

    /// How many connection attempts failed since the last start
    /// (ConnectRetryCounter).
    pub fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `handle(now, Input::Timer)` is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conn_timers = self
            .connections
            .iter()
            .flat_map(|c| [c.hold_deadline, c.keepalive_at]);
        [self.connect_retry_at, self.restart_at]
            .into_iter()
            .chain(conn_timers)
            .flatten()
            .min()
    }

    /// Sends a message on the Established connection. KEEPALIVE and UPDATE
    /// restart the keepalive timer.
    pub fn send(&mut self, now: Instant, message: &Message) -> Result<(), SendError> {
        let Some(conn) = self
            .connections
            .iter_mut()
            .find(|c| c.state == State::Established)
        else {
            return Err(SendError::NotEstablished);
        };
        let ctx = conn
            .negotiated
            .as_ref()
            .map(|n| n.context)
            .unwrap_or_default();
        let bytes = message.to_bytes(&ctx)?;
        if let Some(n) = &conn.negotiated {
            if n.keepalive_time > 0 {
                conn.keepalive_at = Some(now + secs(n.keepalive_time));
            }
        }
        self.outputs.push_back(Output::Send {
            connection: conn.id,
            bytes,
        });
        Ok(())
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Start => self.start(now),
            Input::Stop {
                reason,
                restart_after,
            } => self.stop(now, reason, restart_after),
            Input::TcpConnected {
                connection,
                direction,
                local,
                remote,
            } => self.connected(now, connection, direction, local, remote),
            Input::TcpConnectFailed => self.connect_failed(now),
            Input::TcpClosed { connection } => {
                if let Some(i) = self.index(connection) {
                    self.drop_connection(now, i, None, DownReason::ConnectionClosed);
                }
            }
            Input::Bytes { connection, data } => self.bytes(now, connection, data),
            Input::Timer => self.timers(now),
        }
    }

    fn start(&mut self, now: Instant) {
        if self.base != State::Idle || !self.connections.is_empty() {
            return;
        }
        self.restart_at = None;
        self.connect_retry_counter = 0;
        if self.config.passive {
            self.base = State::Active;
        } else {
            self.initiate(now);
        }
    }

    fn initiate(&mut self, now: Instant) {
        self.base = State::Connect;
        self.connect_retry_at = Some(now + self.config.connect_retry_time);
        self.outputs.push_back(Output::Connect);
    }

    fn stop(&mut self, now: Instant, reason: StopReason, restart_after: Option<Duration>) {
        let was_established = self.state() == State::Established;
        let had_connections = !self.connections.is_empty();
        let notification = reason.notification();
        for conn in std::mem::take(&mut self.connections) {
            self.send_notification(conn.id, &notification);
            self.outputs.push_back(Output::Close {
                connection: conn.id,
            });
        }
        self.base = State::Idle;
        self.connect_retry_at = None;
        self.restart_at = restart_after.map(|d| now + d);
        self.restart_on_connection = false;
        if had_connections {
            self.outputs.push_back(Output::Event(Event::Down {
                reason: DownReason::Stopped(reason),
                was_established,
            }));
        }
    }

    fn connected(
        &mut self,
        now: Instant,
        id: ConnectionId,
        direction: Direction,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        // Idle while an automatic restart is pending (after an error, for
        // the IdleHoldTime): a connection from the peer starts the session
        // at once, passively (RFC 4271's AutomaticStart with passive TCP
        // establishment). Refusing it would let two peers whose hold timers
        // expired together refuse each other in lock step, each coming out
        // of its IdleHoldTime while the other is still in it.
        if self.base == State::Idle
            && self.connections.is_empty()
            && self.restart_at.is_some()
            && self.restart_on_connection
        {
            self.restart_at = None;
            self.restart_on_connection = false;
            self.base = State::Active;
        }
        let refuse = match self.state() {
            // Idle otherwise (stopped) refuses every connection.
            State::Idle => Some(None),
            // §6.8: with an Established session, the new connection loses.
            State::Established => Some(Some(Notification::cease(
                CeaseSubcode::ConnectionCollisionResolution,
            ))),
            State::Connect | State::Active | State::OpenSent | State::OpenConfirm => {
                if self.connections.len() >= 2 {
                    Some(Some(Notification::cease(CeaseSubcode::ConnectionRejected)))
                } else {
                    None
                }
            }
        };
        if let Some(notification) = refuse {
            if let Some(n) = notification {
                self.send_notification(id, &n);
            }
            self.outputs.push_back(Output::Close { connection: id });
            return;
        }
        // A second connection once the peer's identifier is known: the
        // collision is resolved at once.
        let mut loser_existing = None;
        if let Some(peer_id) = self.known_peer_id() {
            let keep = self.collision_winner(peer_id);
            let existing = self.connections.first().map(|c| c.direction);
            if direction != keep || existing == Some(direction) {
                let n = Notification::cease(CeaseSubcode::ConnectionCollisionResolution);
                self.send_notification(id, &n);
                self.outputs.push_back(Output::Close { connection: id });
                return;
            }
            loser_existing = self.connections.first().map(|c| c.id);
        }
        self.connect_retry_at = None;
        self.connections.push(Connection {
            id,
            direction,
            local,
            remote,
            state: State::OpenSent,
            rx: Vec::new(),
            negotiated: None,
            hold_deadline: Some(now + OPEN_HOLD_TIME),
            keepalive_at: None,
        });
        let open = self.open_message();
        self.send_raw(id, &Message::Open(open));
        if let Some(i) = loser_existing.and_then(|c| self.index(c)) {
            let n = Notification::cease(CeaseSubcode::ConnectionCollisionResolution);
            self.drop_connection(now, i, Some(n.clone()), DownReason::NotificationSent(n));
        }
    }

    fn connect_failed(&mut self, now: Instant) {
        self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
        if self.base == State::Connect {
            self.base = State::Active;
            if self.connect_retry_at.is_none() && self.connections.is_empty() {
                self.connect_retry_at = Some(now + self.config.connect_retry_time);
            }
        }
    }

    fn timers(&mut self, now: Instant) {
        if self.restart_at.is_some_and(|t| t <= now) {
            self.restart_at = None;
            self.start(now);
        }
        if self.connect_retry_at.is_some_and(|t| t <= now) {
            self.connect_retry_at = None;
            if self.connections.is_empty() && !self.config.passive {
                match self.base {
                    State::Connect | State::Active => self.initiate(now),
                    State::Idle | State::OpenSent | State::OpenConfirm | State::Established => {}
                }
            }
        }
        let mut i = 0;
        while let Some(conn) = self.connections.get_mut(i) {
            if conn.hold_deadline.is_some_and(|t| t <= now) {
                let n = Notification::hold_timer_expired();
                self.drop_connection(now, i, Some(n), DownReason::HoldTimerExpired);
                continue;
            }
            if conn.keepalive_at.is_some_and(|t| t <= now) {
                let keepalive = conn.negotiated.as_ref().map_or(0, |n| n.keepalive_time);
                conn.keepalive_at = (keepalive > 0).then(|| now + secs(keepalive));
                let id = conn.id;
                self.send_raw(id, &Message::Keepalive);
            }
            i += 1;
        }
    }

    fn bytes(&mut self, now: Instant, id: ConnectionId, data: &[u8]) {
        let Some(i) = self.index(id) else {
            return;
        };
        if let Some(conn) = self.connections.get_mut(i) {
            conn.rx.extend_from_slice(data);
        }
        loop {
            // Re-find: a message may have removed a connection.
            let Some(i) = self.index(id) else {
                return;
            };
            let Some(conn) = self.connections.get_mut(i) else {
                return;
            };
            let ctx = conn
                .negotiated
                .as_ref()
                .map(|n| n.context)
                .unwrap_or_default();
            let length = match crate::wire::Message::frame_length(&conn.rx) {
                Ok(Some(length)) if conn.rx.len() >= length => length,
                Ok(Some(_)) | Ok(None) => return,
                Err(e) => {
                    let n = e.notification();
                    self.drop_connection(now, i, Some(n.clone()), DownReason::NotificationSent(n));
                    return;
                }
            };
            let frame: Vec<u8> = conn.rx.drain(..length).collect();
            match Message::decode(&frame, &ctx) {
                Ok(message) => self.message(now, i, message),
                Err(e) => {
                    let n = e.notification();
                    self.drop_connection(now, i, Some(n.clone()), DownReason::NotificationSent(n));
                    return;
                }
            }
        }
    }

    fn message(&mut self, now: Instant, i: usize, message: Message) {
        let Some(conn) = self.connections.get_mut(i) else {
            return;
        };
        if let Message::Notification(n) = message {
            self.drop_connection(now, i, None, DownReason::NotificationReceived(n));
            return;
        }
        // Any message from the peer shows it is alive.
        if let Some(n) = &conn.negotiated {
            conn.hold_deadline = (n.hold_time > 0).then(|| now + secs(n.hold_time));
        }
        let fsm_error = |subcode: FsmSubcode| {
            Notification::new(ErrorCode::FiniteStateMachine, subcode, Vec::new())
        };
        match (conn.state, message) {
            (State::OpenSent, Message::Open(open)) => self.open_received(now, i, open),
            (
                State::OpenSent,
                Message::Keepalive | Message::Update(_) | Message::RouteRefresh(_),
            ) => {
                let n = fsm_error(FsmSubcode::UnexpectedMessageInOpenSent);
                self.drop_connection(now, i, Some(n.clone()), DownReason::NotificationSent(n));
            }
            (State::OpenConfirm, Message::Keepalive) => self.established(i),
            (
                State::OpenConfirm,
                Message::Open(_) | Message::Update(_) | Message::RouteRefresh(_),
            ) => {
                let n = fsm_error(FsmSubcode::UnexpectedMessageInOpenConfirm);
                self.drop_connection(now, i, Some(n.clone()), DownReason::NotificationSent(n));
            }
            (State::Established, Message::Keepalive) => {}
            (State::Established, Message::Update(update)) => {
                self.outputs
                    .push_back(Output::Event(Event::Update(Box::new(update))));
            }
            (State::Established, Message::RouteRefresh(r)) => {
                self.outputs
                    .push_back(Output::Event(Event::RouteRefresh(r)));
            }
            (State::Established, Message::Open(_)) => {
                let n = fsm_error(FsmSubcode::UnexpectedMessageInEstablished);
                self.drop_connection(now, i, Some(n.clone()), DownReason::NotificationSent(n));
            }
            // Connections only exist from OpenSent on, and a NOTIFICATION
            // was handled above.
            (State::Idle | State::Connect | State::Active, _)
            | (
                State::OpenSent | State::OpenConfirm | State::Established,
                Message::Notification(_),
            ) => {}
        }
    }

    /// Checks the peer's OPEN (RFC 4271 §6.2) and moves to OpenConfirm.
    fn open_received(&mut self, now: Instant, i: usize, open: Open) {
        let open_error = |subcode: OpenSubcode, data: Vec<u8>| {
            Notification::new(ErrorCode::OpenMessage, subcode, data)
        };
        let internal = self.config.remote_as == self.config.local_as;
        let refusal = if open.asn() != self.config.remote_as {
            Some(open_error(
                OpenSubcode::BadPeerAs,
                open.my_as.to_be_bytes().to_vec(),
            ))
        } else if internal && open.bgp_identifier == self.config.router_id {
            // RFC 6286 §2.2: within an AS the identifiers must differ.
            Some(open_error(OpenSubcode::BadBgpIdentifier, Vec::new()))
        } else {
            None
        };
        if let Some(n) = refusal {
            self.drop_connection(now, i, Some(n.clone()), DownReason::NotificationSent(n));
            return;
        }
        let hold_time = self.config.hold_time.min(open.hold_time);
        let keepalive_time = if hold_time == 0 {
            0
        } else {
            self.config.keepalive_time.min(hold_time / 3).max(1)
        };
        let mut peer_v4 = false;
        let mut peer_v6 = false;
        let mut peer_mp = false;
        let mut four_octet = false;
        for cap in open.capabilities() {
            match cap {
                Capability::Multiprotocol { afi, safi } => {
                    peer_mp = true;
                    let unicast = *safi == Safi::Unicast;
                    peer_v4 |= unicast && *afi == Afi::Ipv4;
                    peer_v6 |= unicast && *afi == Afi::Ipv6;
                }
                Capability::FourOctetAs { .. } => four_octet = true,
                Capability::RouteRefresh | Capability::Unknown { .. } => {}
            }
        }
        let ipv6 = self.config.ipv6;
        let Some(conn) = self.connections.get_mut(i) else {
            return;
        };
        conn.negotiated = Some(Negotiated {
            connection: conn.id,
            local: conn.local,
            remote: conn.remote,
            peer_open: open,
            hold_time,
            keepalive_time,
            context: DecodeContext {
                four_octet_as: four_octet,
                internal_peer: internal,
            },
            // RFC 4760 §8: a peer without the capability does IPv4 unicast.
            ipv4: peer_v4 || !peer_mp,
            ipv6: ipv6 && peer_v6,
        });
        conn.state = State::OpenConfirm;
        conn.hold_deadline = (hold_time > 0).then(|| now + secs(hold_time));
        conn.keepalive_at = (keepalive_time > 0).then(|| now + secs(keepalive_time));
        let id = conn.id;
        self.send_raw(id, &Message::Keepalive);
        self.resolve_collision(now, i);
    }

    /// The direction of the connection that survives a collision
    /// (RFC 4271 §6.8): the one initiated by the higher BGP Identifier.
    fn collision_winner(&self, peer_id: Ipv4Addr) -> Direction {
        if u32::from(self.config.router_id) > u32::from(peer_id) {
            Direction::Outbound
        } else {
            Direction::Inbound
        }
    }

    /// The peer's BGP Identifier, once an OPEN arrived on any connection.
    fn known_peer_id(&self) -> Option<Ipv4Addr> {
        self.connections
            .iter()
            .find_map(|c| c.negotiated.as_ref().map(Negotiated::peer_router_id))
    }

    /// RFC 4271 §6.8. Connection `i` just brought the peer's OPEN: if
    /// another connection exists, the one not initiated by the speaker with
    /// the higher BGP Identifier is closed now. The identifier is the
    /// peer's, whichever connection brought it, so the other connection
    /// need not have reached OpenConfirm, and both sides close the same TCP
    /// connection.
    fn resolve_collision(&mut self, now: Instant, i: usize) {
        let Some(this) = self.connections.get(i) else {
            return;
        };
        let Some(peer_id) = this.negotiated.as_ref().map(|n| n.peer_router_id()) else {
            return;
        };
        let this_id = this.id;
        let this_direction = this.direction;
        let Some(other) = self.connections.iter().position(|c| c.id != this_id) else {
            return;
        };
        let keep = self.collision_winner(peer_id);
        let loser = if this_direction == keep { other } else { i };
        let n = Notification::cease(CeaseSubcode::ConnectionCollisionResolution);
        self.drop_connection(now, loser, Some(n.clone()), DownReason::NotificationSent(n));
    }

    fn established(&mut self, i: usize) {
        let Some(conn) = self.connections.get_mut(i) else {
            return;
        };
        conn.state = State::Established;
        let id = conn.id;
        let negotiated = conn.negotiated.clone();
        // The other connection, if any, loses (§6.8).
        let others: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|c| c.id != id)
            .map(|c| c.id)
            .collect();
        let n = Notification::cease(CeaseSubcode::ConnectionCollisionResolution);
        for other in others {
            self.send_notification(other, &n);
            self.outputs.push_back(Output::Close { connection: other });
        }
        self.connections.retain(|c| c.id == id);
        self.connect_retry_counter = 0;
        if let Some(negotiated) = negotiated {
            self.outputs
                .push_back(Output::Event(Event::Established(Box::new(negotiated))));
        }
    }

    /// Ends connection `i`, sending `notification` first if given. If it
    /// was the Established one, or the last one, the session goes Idle and
    /// restarts after the IdleHoldTime.
    fn drop_connection(
        &mut self,
        now: Instant,
        i: usize,
        notification: Option<Notification>,
        reason: DownReason,
    ) {
        if i >= self.connections.len() {
            return;
        }
        let conn = self.connections.remove(i);
        if let Some(n) = &notification {
            self.send_notification(conn.id, n);
        }
        self.outputs.push_back(Output::Close {
            connection: conn.id,
        });
        let collision = matches!(
            &reason,
            DownReason::NotificationSent(n)
                if n.code == ErrorCode::Cease
                    && n.subcode == u8::from(CeaseSubcode::ConnectionCollisionResolution)
        );
        let was_established = conn.state == State::Established;
        if !self.connections.is_empty() && (collision || !was_established) {
            return;
        }
        for other in std::mem::take(&mut self.connections) {
            self.outputs.push_back(Output::Close {
                connection: other.id,
            });
        }
        self.base = State::Idle;
        self.connect_retry_at = None;
        self.restart_at = Some(now + self.config.idle_hold_time);
        self.restart_on_connection = true;
        self.outputs.push_back(Output::Event(Event::Down {
            reason,
            was_established,
        }));
    }

    fn open_message(&self) -> Open {
        let mut caps = vec![Capability::Multiprotocol {
            afi: Afi::Ipv4,
            safi: Safi::Unicast,
        }];
        if self.config.ipv6 {
            caps.push(Capability::Multiprotocol {
                afi: Afi::Ipv6,
                safi: Safi::Unicast,
            });
        }
        caps.push(Capability::RouteRefresh);
        caps.push(Capability::FourOctetAs {
            asn: self.config.local_as,
        });
        Open::new(
            self.config.local_as,
            self.config.hold_time,
            self.config.router_id,
            caps,
        )
    }

    fn send_notification(&mut self, id: ConnectionId, n: &Notification) {
        self.send_raw(id, &Message::Notification(n.clone()));
    }

    fn send_raw(&mut self, id: ConnectionId, message: &Message) {
        // OPEN, KEEPALIVE and NOTIFICATION do not depend on the context and
        // always fit: a NOTIFICATION's data is cut to fit.
        let bytes = match message.to_bytes(&DecodeContext::default()) {
            Ok(bytes) => bytes,
            Err(_) => match message {
                Message::Notification(n) => {
                    let mut short = n.clone();
                    short.data.truncate(4096 - 21);
                    Message::Notification(short)
                        .to_bytes(&DecodeContext::default())
                        .unwrap_or_default()
                }
                Message::Open(_)
                | Message::Update(_)
                | Message::Keepalive
                | Message::RouteRefresh(_) => Vec::new(),
            },
        };
        if !bytes.is_empty() {
            self.outputs.push_back(Output::Send {
                connection: id,
                bytes,
            });
        }
    }

    fn index(&self, id: ConnectionId) -> Option<usize> {
        self.connections.iter().position(|c| c.id == id)
    }
}

/// Why [`Session::send`] did not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Only an Established session sends UPDATEs.
    #[error("the session is not established")]
    NotEstablished,
    /// The message does not encode.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

fn secs(s: u16) -> Duration {
    Duration::from_secs(u64::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_read_as_words() {
        assert_eq!(
            describe(&Notification::cease(
                CeaseSubcode::MaximumNumberOfPrefixesReached
            )),
            "Cease / Maximum Number Of Prefixes Reached"
        );
        assert_eq!(
            describe(&Notification::hold_timer_expired()),
            "Hold Timer Expired"
        );
        assert_eq!(
            describe(&Notification::new(ErrorCode::Unknown(9), 1, vec![])),
            "code 9 subcode 1"
        );
    }
}
