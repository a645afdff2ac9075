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

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::sa::{Event, IkeSa, Output, Random, SaConfig, Status, Transmit};
use super::wire::{ExchangeType, Header, IkeSpi};

/// Index of a connection in the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub usize);

/// How long an initiator waits before it tries again after its SA ended.
pub const RESTART_DELAY: Duration = Duration::from_secs(2);
/// The longest wait between attempts (the delay doubles up to this).
pub const RESTART_DELAY_MAX: Duration = Duration::from_secs(30);

/// What the endpoint produced.
#[derive(Debug)]
pub enum EndpointOutput {
    /// A datagram to send.
    Transmit(Transmit),
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

/// Every connection's IKE SAs.
pub struct Endpoint {
    conns: Vec<Conn>,
    sas: HashMap<IkeSpi, (ConnId, IkeSa)>,
    outputs: VecDeque<EndpointOutput>,
    counters: Counters,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("connections", &self.conns.len())
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
            outputs: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// Adds a connection between `local` and `remote` (IKE port 500 on
    /// both, normally). Initiators start at the next
    /// [`handle_timeout`](Self::handle_timeout).
    pub fn add_connection(
        &mut self,
        name: &str,
        cfg: SaConfig,
        local: SocketAddr,
        remote: SocketAddr,
        initiate: bool,
        now: Instant,
    ) -> ConnId {
        self.conns.push(Conn {
            name: name.to_string(),
            cfg,
            local,
            remote,
            initiate,
            current: None,
            restart_at: initiate.then_some(now),
            restart_delay: RESTART_DELAY,
        });
        ConnId(self.conns.len() - 1)
    }

    /// The connection's name.
    pub fn name(&self, conn: ConnId) -> &str {
        self.conns.get(conn.0).map_or("?", |c| c.name.as_str())
    }

    /// Drop counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The status of each connection's current SA.
    pub fn status(&self) -> Vec<(ConnId, &str, Option<Status>)> {
        self.conns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let status = c
                    .current
                    .and_then(|spi| self.sas.get(&spi))
                    .map(|(_, sa)| sa.status());
                (ConnId(i), c.name.as_str(), status)
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
        let restarts = self.conns.iter().filter_map(|c| c.restart_at);
        sas.chain(restarts).min()
    }

    /// ESP arrived on `conn`'s child SA: the peer is alive.
    pub fn note_inbound_traffic(&mut self, conn: ConnId, now: Instant) {
        if let Some(spi) = self.conns.get(conn.0).and_then(|c| c.current) {
            if let Some((_, sa)) = self.sas.get_mut(&spi) {
                sa.note_inbound_traffic(now);
            }
        }
    }

    /// Deletes every SA (clean shutdown): DELETE is sent for established ones.
    pub fn close_all(&mut self, now: Instant) {
        for c in &mut self.conns {
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
                sa.handle_timeout(now);
            }
        }
        for i in 0..self.conns.len() {
            let due = self.conns[i].restart_at.is_some_and(|t| t <= now);
            if due {
                let c = &mut self.conns[i];
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
        let Some(i) = self.conns.iter().position(|c| c.remote.ip() == remote.ip()) else {
            self.counters.unknown_peer += 1;
            return;
        };
        self.counters.accepted += 1;
        let sa = IkeSa::respond(self.conns[i].cfg.clone(), local, remote, datagram, now, rng);
        self.sas.insert(sa.local_spi(), (ConnId(i), sa));
    }

    /// Moves the SAs' outputs out, tracks which SA is current per
    /// connection, removes closed SAs and schedules restarts.
    fn drain_at(&mut self, now: Instant) {
        let mut closed = Vec::new();
        for (spi, (conn, sa)) in &mut self.sas {
            while let Some(o) = sa.poll_output() {
                match o {
                    Output::Transmit(t) => self.outputs.push_back(EndpointOutput::Transmit(t)),
                    Output::Event(e) => {
                        if let Event::Established(_) = e {
                            if let Some(c) = self.conns.get_mut(conn.0) {
                                c.current = Some(*spi);
                                c.restart_delay = RESTART_DELAY;
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
            let Some(c) = self.conns.get_mut(conn.0) else {
                continue;
            };
            if c.current == Some(spi) {
                c.current = None;
                if c.initiate {
                    c.restart_at = Some(now + c.restart_delay);
                    c.restart_delay = (c.restart_delay * 2).min(RESTART_DELAY_MAX);
                }
            }
        }
        // An established SA supersedes older ones of its connection (the
        // peer re-established, e.g. after a restart): close those.
        let current: Vec<(ConnId, IkeSpi)> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.current.map(|s| (ConnId(i), s)))
            .collect();
        let mut superseded = false;
        for (conn, spi) in current {
            let up = self
                .sas
                .get(&spi)
                .is_some_and(|(_, sa)| sa.phase() == super::sa::Phase::Established);
            if !up {
                continue;
            }
            for (other, (c, sa)) in &mut self.sas {
                if *c == conn
                    && *other != spi
                    && sa.phase() == super::sa::Phase::Established
                    && !sa.is_closing()
                {
                    sa.close(now);
                    superseded = true;
                }
            }
        }
        if superseded {
            self.drain_at(now);
        }
    }
}
