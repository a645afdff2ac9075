//! The IKE endpoint: every connection's IKE SAs behind one pair of UDP
//! ports, sans-IO.
//!
//! The driver hands it each IKE datagram with the addresses it travelled
//! between; the endpoint finds the SA by its SPIs (RFC 7296 §2.6: ours is
//! SPIi when we initiated, SPIr when we responded), creates a responder SA
//! for a new IKE_SA_INIT from a configured peer, and restarts initiator
//! connections whose SA ended. What the SAs produce comes out of
//! [`Endpoint::poll_output`], tagged with the connection.
//!
//! Datagrams that are not IKE, come from no configured peer or match no SA
//! are dropped and counted ([`Counters`]), never answered with anything
//! that could be used for reflection.
//!
//! Rekeying: an [`IkeSa`] turns itself into its rekeyed successor in place
//! (RFC 7296 §2.18), so one object stays one connection's SA. The endpoint
//! indexes it by its current local SPI (re-indexed when a rekey changes it)
//! and routes the SPIs of the predecessor finishing its DELETE (and of the
//! SAs of a rekey collision) to it as aliases
//! ([`IkeSa::other_local_spis`]).
//!
//! COOKIE (§2.6): while more than [`Endpoint::set_cookie_threshold`]
//! responder SAs are half open, an IKE_SA_INIT request without a valid
//! cookie is answered statelessly with `N(COOKIE)`, where the cookie is
//! `version | HMAC-SHA256(secret, Ni | IPi | SPIi)` under a secret drawn
//! from the [`Random`] passed in and replaced every [`COOKIE_SECRET_LIFETIME`]
//! (the previous one stays valid for one more period).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ring::hmac;

use super::sa::{Event, IkeSa, Output, Phase, Random, SaConfig, Status, Transmit};
use super::wire::{ExchangeType, Flags, Header, IkeSpi, Message, Notify, NotifyType, Payload};

/// A connection of the endpoint: the n-th [`Endpoint::add_connection`]
/// call returns `ConnId(n)` (counting from 0). Ids are never reused: after
/// [`Endpoint::remove_connection`] the id stays retired, so events still
/// in flight for a removed connection can never be mistaken for a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub usize);

/// How long an initiator waits before it tries again after its SA ended.
pub const RESTART_DELAY: Duration = Duration::from_secs(2);
/// The longest wait between attempts (the delay doubles up to this).
pub const RESTART_DELAY_MAX: Duration = Duration::from_secs(30);
/// Half-open responder SAs beyond which IKE_SA_INIT requests must carry a
/// cookie, by default.
pub const COOKIE_THRESHOLD: usize = 64;
/// Half-open responder SAs of one connection beyond which its IKE_SA_INIT
/// requests must carry a cookie (a real peer has one at a time, two in a
/// race).
pub const COOKIE_THRESHOLD_PER_PEER: usize = 4;
/// How long one cookie secret is used.
pub const COOKIE_SECRET_LIFETIME: Duration = Duration::from_secs(120);

/// What the endpoint produced.
#[derive(Debug)]
pub enum EndpointOutput {
    /// A datagram to send.
    Transmit(Transmit),
    /// A NAT keepalive (RFC 3948 §2.3): send the single octet 0xFF from
    /// `local` (port 4500) to `remote`, without the non-ESP marker.
    NatKeepalive {
        /// Our address and port.
        local: SocketAddr,
        /// The peer's.
        remote: SocketAddr,
    },
    /// Something happened on a connection.
    Event(ConnId, Event),
}

/// Datagrams dropped, by reason. For operators and tests: bad input is
/// counted, never logged one by one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Not an IKE header at all.
    pub malformed: u64,
    /// An IKE_SA_INIT from an address no connection names.
    pub unknown_peer: u64,
    /// Matched no SA.
    pub unknown_spi: u64,
    /// Processed by an SA.
    pub accepted: u64,
    /// IKE_SA_INIT requests answered with a COOKIE challenge.
    pub cookie_challenges: u64,
}

struct Conn {
    name: String,
    cfg: SaConfig,
    local: SocketAddr,
    remote: SocketAddr,
    initiate: bool,
    /// The SA this connection uses (the newest established or starting one).
    current: Option<IkeSpi>,
    restart_at: Option<Instant>,
    restart_delay: Duration,
}

/// The secret behind our cookies, and its predecessor.
struct CookieSecret {
    version: u8,
    key: hmac::Key,
    previous: Option<(u8, hmac::Key)>,
    expires: Instant,
}

/// Every connection's IKE SAs.
pub struct Endpoint {
    /// Indexed by [`ConnId`]; `None` once removed (ids are not reused).
    conns: Vec<Option<Conn>>,
    /// Each SA under its current local SPI.
    sas: HashMap<IkeSpi, (ConnId, IkeSa)>,
    /// Local SPIs of rekeyed predecessors (and collision SAs) → the SA
    /// object that answers for them.
    aliases: HashMap<IkeSpi, IkeSpi>,
    outputs: VecDeque<EndpointOutput>,
    counters: Counters,
    cookie_threshold: usize,
    cookie_secret: Option<CookieSecret>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("connections", &self.conns.iter().flatten().count())
            .field("sas", &self.sas.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::new()
    }
}

impl Endpoint {
    /// An endpoint without connections.
    pub fn new() -> Endpoint {
        Endpoint {
            conns: Vec::new(),
            sas: HashMap::new(),
            aliases: HashMap::new(),
            outputs: VecDeque::new(),
            counters: Counters::default(),
            cookie_threshold: COOKIE_THRESHOLD,
            cookie_secret: None,
        }
    }

    /// Demands a cookie (§2.6) from new initiators while more than
    /// `threshold` responder SAs are half open (default [`COOKIE_THRESHOLD`]).
    pub fn set_cookie_threshold(&mut self, threshold: usize) {
        self.cookie_threshold = threshold;
    }

    /// Adds a connection between `local` and `remote` (IKE port 500 on
    /// both, normally). Initiators start at the next
    /// [`handle_timeout`](Self::handle_timeout).
    ///
    /// The n-th call returns `ConnId(n)`, removed connections included:
    /// ids are never reused.
    pub fn add_connection(
        &mut self,
        name: &str,
        cfg: SaConfig,
        local: SocketAddr,
        remote: SocketAddr,
        initiate: bool,
        now: Instant,
    ) -> ConnId {
        self.conns.push(Some(Conn {
            name: name.to_string(),
            cfg,
            local,
            remote,
            initiate,
            current: None,
            restart_at: initiate.then_some(now),
            restart_delay: RESTART_DELAY,
        }));
        ConnId(self.conns.len() - 1)
    }

    /// Removes a connection (configuration reload): every IKE SA of it is
    /// closed (DELETE is sent for established ones, as in
    /// [`close_all`](Self::close_all)) and never restarted. The connection
    /// is gone at once: [`status`](Self::status) no longer lists it,
    /// [`name`](Self::name) gives `"?"` and no new IKE_SA_INIT is matched to
    /// it. The events its SAs emit while closing (`ChildDeleted`, `Closed`)
    /// still carry `conn`, so the caller can clean up; once its SAs are
    /// gone, datagrams for them count as unknown. Its id is not reused.
    pub fn remove_connection(&mut self, conn: ConnId, now: Instant) {
        if self.conns.get_mut(conn.0).and_then(Option::take).is_none() {
            return;
        }
        for (c, sa) in self.sas.values_mut() {
            if *c == conn {
                sa.close(now);
            }
        }
        self.drain_at(now);
    }

    fn conn(&self, conn: ConnId) -> Option<&Conn> {
        self.conns.get(conn.0).and_then(Option::as_ref)
    }

    fn conn_mut(&mut self, conn: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(conn.0).and_then(Option::as_mut)
    }

    /// The live connections with their ids.
    fn live_conns(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (ConnId(i), c)))
    }

    /// The connection's name (`"?"` for an unknown or removed one).
    pub fn name(&self, conn: ConnId) -> &str {
        self.conn(conn).map_or("?", |c| c.name.as_str())
    }

    /// Drop counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The status of each connection's current SA (removed connections
    /// are not listed).
    pub fn status(&self) -> Vec<(ConnId, &str, Option<Status>)> {
        self.live_conns()
            .map(|(id, c)| {
                let status = c
                    .current
                    .and_then(|spi| self.sas.get(&spi))
                    .map(|(_, sa)| sa.status());
                (id, c.name.as_str(), status)
            })
            .collect()
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<EndpointOutput> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sas = self.sas.values().filter_map(|(_, sa)| sa.poll_timeout());
        let restarts = self.live_conns().filter_map(|(_, c)| c.restart_at);
        sas.chain(restarts).min()
    }

    /// `conn`'s current SA.
    fn current_mut(&mut self, conn: ConnId) -> Option<&mut IkeSa> {
        let spi = self.conn(conn).and_then(|c| c.current)?;
        self.sas.get_mut(&spi).map(|(_, sa)| sa)
    }

    /// ESP arrived on `conn`'s child SA: the peer is alive.
    pub fn note_inbound_traffic(&mut self, conn: ConnId, now: Instant) {
        if let Some(sa) = self.current_mut(conn) {
            sa.note_inbound_traffic(now);
        }
    }

    /// The datapath's byte count of `conn`'s current child SA; past the
    /// soft byte lifetime the child is rekeyed (see
    /// [`IkeSa::note_child_bytes`]).
    pub fn note_child_bytes(&mut self, conn: ConnId, now: Instant, bytes: u64) {
        self.note_child_usage(conn, now, bytes, 0);
    }

    /// The datapath's byte and packet counts of `conn`'s current child SA
    /// ([`IkeSa::note_child_usage`]).
    pub fn note_child_usage(&mut self, conn: ConnId, now: Instant, bytes: u64, packets: u64) {
        if let Some(sa) = self.current_mut(conn) {
            sa.note_child_usage(now, bytes, packets);
        }
    }

    /// Forces a rekey of `conn`'s child SA ([`IkeSa::rekey_child`]).
    pub fn rekey_child(&mut self, conn: ConnId, now: Instant, rng: &mut dyn Random) {
        if let Some(sa) = self.current_mut(conn) {
            sa.rekey_child(now, rng);
        }
        self.drain_at(now);
    }

    /// Checks at once that `conn`'s peer is alive ([`IkeSa::check_liveness`]).
    pub fn check_liveness(&mut self, conn: ConnId, now: Instant) {
        if let Some(sa) = self.current_mut(conn) {
            sa.check_liveness(now);
        }
        self.drain_at(now);
    }

    /// Forces a rekey of `conn`'s IKE SA ([`IkeSa::rekey_ike`]).
    pub fn rekey_ike(&mut self, conn: ConnId, now: Instant, rng: &mut dyn Random) {
        if let Some(sa) = self.current_mut(conn) {
            sa.rekey_ike(now, rng);
        }
        self.drain_at(now);
    }

    /// Deletes every SA (clean shutdown): DELETE is sent for established ones.
    pub fn close_all(&mut self, now: Instant) {
        for c in self.conns.iter_mut().flatten() {
            c.restart_at = None;
            c.initiate = false;
        }
        for (_, sa) in self.sas.values_mut() {
            sa.close(now);
        }
        self.drain_at(now);
    }

    /// Time passed: timers of every SA, and restarts.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut dyn Random) {
        for (_, sa) in self.sas.values_mut() {
            if sa.poll_timeout().is_some_and(|t| t <= now) {
                sa.handle_timeout(now, rng);
            }
        }
        for (i, c) in self.conns.iter_mut().enumerate() {
            let Some(c) = c.as_mut() else {
                continue;
            };
            if c.restart_at.is_some_and(|t| t <= now) {
                c.restart_at = None;
                let sa = IkeSa::initiate(c.cfg.clone(), c.local, c.remote, now, rng);
                c.current = Some(sa.local_spi());
                self.sas.insert(sa.local_spi(), (ConnId(i), sa));
            }
        }
        self.drain_at(now);
    }

    /// An IKE datagram (without the non-ESP marker) arrived from `remote`
    /// on `local`.
    pub fn handle(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &[u8],
        rng: &mut dyn Random,
    ) {
        let Ok((header, _)) = Header::peek(datagram) else {
            self.counters.malformed += 1;
            return;
        };
        // The I flag says the sender is the original initiator: then we
        // are the responder and our SPI is SPIr.
        let ours = if header.flags.initiator() {
            header.spi_r
        } else {
            header.spi_i
        };
        let ours = self.aliases.get(&ours).copied().unwrap_or(ours);
        if let Some((_, sa)) = self.sas.get_mut(&ours) {
            self.counters.accepted += 1;
            sa.handle(now, remote, datagram, rng);
        } else if header.flags.initiator()
            && header.spi_r.is_zero()
            && header.exchange_type == ExchangeType::IKE_SA_INIT
            && !header.flags.response()
        {
            self.new_responder(now, local, remote, &header, datagram, rng);
        } else {
            self.counters.unknown_spi += 1;
        }
        self.drain_at(now);
    }

    fn new_responder(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        datagram: &[u8],
        rng: &mut dyn Random,
    ) {
        // A retransmitted IKE_SA_INIT goes to the half-open SA it created.
        let existing = self.sas.iter_mut().find(|(_, (_, sa))| {
            let s = sa.status();
            s.spi_i == header.spi_i
                && s.remote.ip() == remote.ip()
                && s.phase == super::sa::Phase::InitReplied
        });
        if let Some((_, (_, sa))) = existing {
            self.counters.accepted += 1;
            sa.handle(now, remote, datagram, rng);
            return;
        }
        let Some((conn, cfg)) = self
            .live_conns()
            .find(|(_, c)| c.remote.ip() == remote.ip())
            .map(|(id, c)| (id, c.cfg.clone()))
        else {
            self.counters.unknown_peer += 1;
            return;
        };
        let half_open = self
            .sas
            .values()
            .filter(|(_, sa)| sa.phase() == Phase::InitReplied)
            .count();
        // Per peer too: a flood that spoofs a configured peer's address
        // would otherwise cost a Diffie-Hellman per packet and starve the
        // real peer, without ever reaching the global threshold. The real
        // peer receives our answers and returns the cookie; a spoofer
        // cannot.
        let half_open_here = self
            .sas
            .values()
            .filter(|(c, sa)| *c == conn && sa.phase() == Phase::InitReplied)
            .count();
        if (half_open >= self.cookie_threshold || half_open_here >= COOKIE_THRESHOLD_PER_PEER)
            && !self.cookie_ok(now, local, remote, header, datagram, rng)
        {
            return;
        }
        self.counters.accepted += 1;
        let sa = IkeSa::respond(cfg, local, remote, datagram, now, rng);
        self.sas.insert(sa.local_spi(), (conn, sa));
    }

    /// Whether an IKE_SA_INIT request carries a valid cookie; if not, it is
    /// answered with a fresh one (statelessly) and dropped.
    fn cookie_ok(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        datagram: &[u8],
        rng: &mut dyn Random,
    ) -> bool {
        let Ok(message) = Message::decode(datagram) else {
            self.counters.malformed += 1;
            return false;
        };
        let Some(ni) = message.payloads.iter().find_map(|p| {
            if let Payload::Nonce(n) = p {
                Some(n.as_slice())
            } else {
                None
            }
        }) else {
            self.counters.malformed += 1;
            return false;
        };
        let secret = self.cookie_secret(now, rng);
        let presented = message.payloads.iter().find_map(|p| {
            if let Payload::Notify(n) = p {
                (n.notify_type == NotifyType::COOKIE).then_some(n.data.as_slice())
            } else {
                None
            }
        });
        if presented.is_some_and(|c| cookie_valid(secret, c, ni, remote.ip(), header.spi_i)) {
            return true;
        }
        let cookie = make_cookie(secret.version, &secret.key, ni, remote.ip(), header.spi_i);
        let challenge = Message {
            header: Header {
                spi_i: header.spi_i,
                spi_r: IkeSpi::ZERO,
                exchange_type: ExchangeType::IKE_SA_INIT,
                flags: Flags::RESPONSE,
                message_id: 0,
            },
            payloads: vec![Payload::Notify(Notify::new(NotifyType::COOKIE, cookie))],
        };
        if let Ok(data) = challenge.encode() {
            self.counters.cookie_challenges += 1;
            self.outputs.push_back(EndpointOutput::Transmit(Transmit {
                local,
                remote,
                data,
            }));
        }
        false
    }

    /// The current cookie secret, replaced when it is too old.
    fn cookie_secret(&mut self, now: Instant, rng: &mut dyn Random) -> &CookieSecret {
        let secret = match self.cookie_secret.take() {
            Some(s) if now < s.expires => s,
            old => {
                let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
                rng.fill(bytes.as_mut_slice());
                CookieSecret {
                    version: old.as_ref().map_or(0, |s| s.version.wrapping_add(1)),
                    key: hmac::Key::new(hmac::HMAC_SHA256, bytes.as_slice()),
                    previous: old.map(|s| (s.version, s.key)),
                    expires: now + COOKIE_SECRET_LIFETIME,
                }
            }
        };
        self.cookie_secret.insert(secret)
    }

    /// Re-indexes SAs whose local SPI a rekey changed and rebuilds the
    /// aliases of their predecessors' SPIs.
    fn reindex(&mut self) {
        let moved: Vec<(IkeSpi, IkeSpi)> = self
            .sas
            .iter()
            .filter(|(key, (_, sa))| sa.local_spi() != **key)
            .map(|(key, (_, sa))| (*key, sa.local_spi()))
            .collect();
        for (old, new) in moved {
            if self.sas.contains_key(&new) {
                continue;
            }
            if let Some(entry) = self.sas.remove(&old) {
                self.sas.insert(new, entry);
                for c in self.conns.iter_mut().flatten() {
                    if c.current == Some(old) {
                        c.current = Some(new);
                    }
                }
            }
        }
        self.aliases.clear();
        for (key, (_, sa)) in &self.sas {
            for other in sa.other_local_spis() {
                self.aliases.insert(other, *key);
            }
        }
    }

    /// Moves the SAs' outputs out, tracks which SA is current per
    /// connection, removes closed SAs and schedules restarts.
    fn drain_at(&mut self, now: Instant) {
        self.reindex();
        let mut closed = Vec::new();
        for (spi, (conn, sa)) in &mut self.sas {
            while let Some(o) = sa.poll_output() {
                match o {
                    Output::Transmit(t) => self.outputs.push_back(EndpointOutput::Transmit(t)),
                    Output::NatKeepalive { local, remote } => self
                        .outputs
                        .push_back(EndpointOutput::NatKeepalive { local, remote }),
                    Output::Event(e) => {
                        if let Event::Established(_) = e {
                            if let Some(c) = self.conns.get_mut(conn.0).and_then(Option::as_mut) {
                                c.current = Some(*spi);
                                c.restart_delay = RESTART_DELAY;
                                // Up (the peer may have set it up): no
                                // attempt of ours is due any more.
                                c.restart_at = None;
                            }
                        }
                        self.outputs.push_back(EndpointOutput::Event(*conn, e));
                    }
                }
            }
            if sa.is_closed() {
                closed.push((*spi, *conn));
            }
        }
        for (spi, conn) in closed {
            self.sas.remove(&spi);
            let Some(c) = self.conn_mut(conn) else {
                continue;
            };
            if c.current == Some(spi) {
                c.current = None;
                if c.initiate {
                    c.restart_at =
                        Some(now + c.restart_delay + restart_jitter(spi, c.restart_delay));
                    c.restart_delay = (c.restart_delay * 2).min(RESTART_DELAY_MAX);
                }
            }
        }
        // An established SA supersedes older ones of its connection (the
        // peer re-established, e.g. after a restart): close those. If the
        // peer said INITIAL_CONTACT it has no state of those that were up
        // before this one's setup began, and they end at once without a
        // DELETE (RFC 7296 §2.4). One whose setup overlapped this one's
        // (both ends initiating) is closed with a DELETE as before.
        let current: Vec<(ConnId, IkeSpi)> = self
            .live_conns()
            .filter_map(|(id, c)| c.current.map(|s| (id, s)))
            .collect();
        let mut superseded = false;
        for (conn, spi) in current {
            let Some(restarted_at) = self
                .sas
                .get(&spi)
                .filter(|(_, sa)| sa.phase() == super::sa::Phase::Established)
                .map(|(_, sa)| sa.peer_initial_contact().then(|| sa.created_at()))
            else {
                continue;
            };
            for (other, (c, sa)) in &mut self.sas {
                if *c == conn && *other != spi && sa.phase() == super::sa::Phase::Established {
                    if restarted_at.is_some_and(|t| sa.established_before(t)) {
                        sa.supersede();
                        superseded = true;
                    } else if !sa.is_closing() {
                        sa.close(now);
                        superseded = true;
                    }
                }
            }
        }
        if superseded {
            self.drain_at(now);
        }
        self.reindex();
    }
}

/// Up to half of `delay` more, drawn from the closed SA's SPI (random):
/// two ends that both initiate, and lost their SAs together (each kept
/// the SA the other deleted), do not try again in lock step.
fn restart_jitter(spi: IkeSpi, delay: Duration) -> Duration {
    delay * u32::from(spi.0[7]) / 512
}

/// `version | HMAC-SHA256(secret, Ni | IPi | SPIi)`.
fn make_cookie(version: u8, key: &hmac::Key, ni: &[u8], ip: IpAddr, spi_i: IkeSpi) -> Vec<u8> {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(ni);
    match ip {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&spi_i.0);
    let mut cookie = vec![version];
    cookie.extend_from_slice(ctx.sign().as_ref());
    cookie
}

/// Whether `cookie` is one of ours for this request, under the current or
/// the previous secret (compared in constant time).
fn cookie_valid(
    secret: &CookieSecret,
    cookie: &[u8],
    ni: &[u8],
    ip: IpAddr,
    spi_i: IkeSpi,
) -> bool {
    let Some((&version, _)) = cookie.split_first() else {
        return false;
    };
    let key = if version == secret.version {
        &secret.key
    } else if let Some((_, key)) = secret.previous.as_ref().filter(|(v, _)| *v == version) {
        key
    } else {
        return false;
    };
    let expected = make_cookie(version, key, ni, ip, spi_i);
    crate::ike::crypto::ct_eq(&expected, cookie)
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
