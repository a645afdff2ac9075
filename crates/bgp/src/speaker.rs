//! The speaker: every peer's session, the RIBs and the policy, as one pure
//! state machine the driver (or a test) feeds with time and bytes.
//!
//! The contract is the session's, one level up: [`Speaker::handle`] takes a
//! peer's [`Input`], [`Speaker::handle_timeout`] fires timers,
//! [`Speaker::poll_output`] drains connections to open, bytes to send,
//! connections to close and [`Event`]s for the daemon, and
//! [`Speaker::poll_timeout`] says when to call again.
//!
//! Route flow, all at once within one `handle`:
//!
//! ```text
//! UPDATE ─▶ Adj-RIB-In(peer) ─import policy─▶ decision ─▶ Loc-RIB ─▶ Event::BestPath / Withdrawn
//!                                                              │
//!       own and announced prefixes ─────────────────────────▶ export policy ─▶ Adj-RIB-Out(each peer) ─▶ UPDATE
//! ```
//!
//! Routes learned from one peer reach the others with our ASN prepended
//! (transit); a session going down removes its routes and the withdrawals
//! go out in the same call.
//!
//! We originate two kinds of prefixes, neither of them in the Loc-RIB (they
//! are not routes into a tunnel) and both advertised to every peer with an
//! empty AS_PATH before export prepends our ASN, ORIGIN IGP and next hop
//! self:
//!
//! - own prefixes ([`SpeakerConfig::local_prefixes`]): a peer's identical
//!   route is refused on import ([`ImportRefusal::OwnPrefix`]);
//! - announced prefixes ([`SpeakerConfig::announce`]: a default route, a
//!   summary, ...): a peer's identical route is accepted into its
//!   Adj-RIB-In, but our origination wins the decision, as a locally
//!   originated route does in BGP: the learned route does not enter the
//!   Loc-RIB (no [`Event::BestPath`]) and every peer, the one that sent it
//!   included, keeps hearing our origination. Once the prefix is no longer
//!   announced, the learned route is selected as any other. A learned
//!   default route is never re-advertised ([`ExportRefusal::DefaultRoute`]);
//!   an announced one is.
//!
//! Peers, own and announced prefixes may change while running (a
//! configuration reload): [`Speaker::add_peer`], [`Speaker::remove_peer`],
//! [`Speaker::set_local_prefixes`] and [`Speaker::set_announce`] touch only
//! what changed; the other sessions keep running.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::config::{ConfigError, ConfigWarning, Gateway, PeerConfig, Profile, SpeakerConfig};
use crate::decision::{self, Candidate, PathSource};
use crate::policy::{ExportRefusal, ImportRefusal, Policy};
use vpngw_prefix::PrefixMap;

use crate::rib::{
    AdjRibIn, AdjRibOut, AttributeStore, Decision, LocRib, LocRibEntry, NextHop, PathAttributes,
    Refused, Route,
};
use crate::session::{
    ConnectionId, DownReason, Event as SessionEvent, Input, Negotiated, Output as SessionOutput,
    SendError, Session, SessionConfig, State, StopReason,
};
use crate::wire::{
    Community, EncodeError, Message, MpReachNlri, MpUnreachNlri, PathAttribute, Update,
};
use crate::PeerId;

/// IPv4 prefixes per UPDATE (at most 5 octets each).
const IPV4_PER_UPDATE: usize = 500;
/// IPv6 prefixes per UPDATE (at most 17 octets each).
const IPV6_PER_UPDATE: usize = 150;

/// Something the daemon hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A session reached Established.
    PeerUp {
        /// The peer.
        peer: PeerId,
        /// Its name.
        name: String,
        /// Its BGP Identifier.
        router_id: Ipv4Addr,
        /// The negotiated hold time.
        hold_time: u16,
    },
    /// A session went down, or an attempt to bring it up failed.
    PeerDown {
        /// The peer.
        peer: PeerId,
        /// Its name.
        name: String,
        /// Why.
        reason: DownReason,
        /// Whether it had been Established (its routes are gone).
        was_established: bool,
    },
    /// The best path of a prefix, or its ECMP set, changed.
    BestPath {
        /// The prefix.
        prefix: IpNet,
        /// The best path.
        best: Route,
        /// The next hops of the ECMP set (the best first).
        next_hops: Arc<[NextHop]>,
    },
    /// No path to the prefix is left.
    Withdrawn {
        /// The prefix.
        prefix: IpNet,
    },
    /// Routes from a peer refused by import policy.
    Refused {
        /// The peer.
        peer: PeerId,
        /// Each prefix and why.
        routes: Vec<(IpNet, ImportRefusal)>,
    },
    /// Routes held back from a peer by export policy.
    HeldBack {
        /// The peer.
        peer: PeerId,
        /// Each prefix and why.
        routes: Vec<(IpNet, ExportRefusal)>,
    },
}

/// What the speaker asks of the driver, and what it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the peer (from `local` if given), and
    /// abandon any attempt still out for it.
    Connect {
        /// The peer.
        peer: PeerId,
        /// Source address.
        local: Option<IpAddr>,
        /// Destination address (port 179).
        remote: IpAddr,
    },
    /// Send octets on a connection.
    Send {
        /// The peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// Whole messages.
        bytes: Vec<u8>,
    },
    /// Close a connection once what was sent on it is out.
    Close {
        /// The peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
    },
    /// An event for the daemon.
    Event(Event),
}

#[derive(Debug)]
struct Peer {
    config: PeerConfig,
    session: Session,
    adj_in: AdjRibIn,
    adj_out: AdjRibOut,
    /// Prefixes whose advertisement changed since the last flush.
    dirty_out: BTreeSet<IpNet>,
    /// Held-back routes not yet reported.
    held_events: Vec<(IpNet, ExportRefusal)>,
    last_down: Option<DownReason>,
}

/// Every peer ever configured, at the index of its [`PeerId`]. A removed
/// peer leaves a tombstone (`None`), so ids are never reused; every lookup
/// and loop here skips tombstones.
#[derive(Debug, Default)]
struct Peers {
    slots: Vec<Option<Peer>>,
}

impl Peers {
    fn get(&self, i: usize) -> Option<&Peer> {
        self.slots.get(i)?.as_ref()
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Peer> {
        self.slots.get_mut(i)?.as_mut()
    }

    /// How many ids were handed out (live peers and tombstones).
    fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The live peers with their index.
    fn iter(&self) -> impl Iterator<Item = (usize, &Peer)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
    }

    /// The live peers.
    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.slots.iter_mut().flatten()
    }

    fn push(&mut self, peer: Peer) -> PeerId {
        self.slots.push(Some(peer));
        PeerId(self.slots.len() - 1)
    }

    /// Leaves a tombstone at `i`.
    fn remove(&mut self, i: usize) -> Option<Peer> {
        self.slots.get_mut(i)?.take()
    }
}

/// One peer as seen from outside.
#[derive(Debug, Clone, Copy)]
pub struct PeerStatus<'a> {
    /// Its id.
    pub id: PeerId,
    /// Its configuration.
    pub config: &'a PeerConfig,
    /// The FSM state.
    pub state: State,
    /// What was negotiated, when Established.
    pub negotiated: Option<&'a Negotiated>,
    /// Why it last went down.
    pub last_down: Option<&'a DownReason>,
    /// What it sent us.
    pub adj_rib_in: &'a AdjRibIn,
    /// What we send it.
    pub adj_rib_out: &'a AdjRibOut,
}

/// The BGP speaker. See the module documentation.
#[derive(Debug)]
pub struct Speaker {
    local_as: u32,
    router_id: Ipv4Addr,
    act_as: Option<Profile>,
    policy: Policy,
    /// Announced prefixes: originated, not own (see the module
    /// documentation).
    announce: BTreeSet<IpNet>,
    peers: Peers,
    store: AttributeStore,
    loc_rib: LocRib,
    warnings: Vec<ConfigWarning>,
    outputs: VecDeque<Output>,
    /// Export results of learned paths during one run: (peer, the path's
    /// attributes, the peer it came from, IPv4) → the path's attributes
    /// (kept alive, so the pointer in the key stays theirs) and what the
    /// peer is sent. Emptied at the end of every run.
    export_cache: HashMap<ExportKey, ExportEntry>,
    /// The next hops of the last best-path event.
    last_hops: Arc<[NextHop]>,
}

type ExportKey = (usize, usize, PeerId, bool);
type ExportEntry = (
    Arc<PathAttributes>,
    Result<Arc<PathAttributes>, ExportRefusal>,
);

impl Speaker {
    /// A speaker for `config`, all sessions Idle until [`Speaker::start`].
    pub fn new(config: SpeakerConfig) -> Result<Self, ConfigError> {
        let warnings = config.validate()?;
        let mut speaker = Self {
            local_as: config.local_as,
            router_id: config.router_id,
            act_as: config.act_as,
            policy: Policy {
                local_as: config.local_as,
                own_prefixes: config.local_prefixes.into_iter().collect(),
            },
            announce: config.announce.into_iter().collect(),
            peers: Peers::default(),
            store: AttributeStore::default(),
            loc_rib: LocRib::default(),
            warnings,
            outputs: VecDeque::new(),
            export_cache: HashMap::new(),
            last_hops: Arc::new([]),
        };
        for pc in config.peers {
            let peer = speaker.new_peer(pc);
            speaker.peers.push(peer);
        }
        Ok(speaker)
    }

    /// A peer in Idle with empty RIBs.
    fn new_peer(&self, config: PeerConfig) -> Peer {
        let timers = config.effective_timers();
        let session = Session::new(SessionConfig {
            local_as: self.local_as,
            router_id: self.router_id,
            remote_as: config.remote_as,
            passive: config.passive,
            hold_time: timers.hold,
            keepalive_time: timers.keepalive,
            connect_retry_time: config.connect_retry,
            idle_hold_time: config.idle_hold,
            ipv6: true,
        });
        Peer {
            config,
            session,
            adj_in: AdjRibIn::default(),
            adj_out: AdjRibOut::default(),
            dirty_out: BTreeSet::new(),
            held_events: Vec::new(),
            last_down: None,
        }
    }

    /// What the configuration check had to say about the configuration in
    /// force (checked again by [`Speaker::add_peer`],
    /// [`Speaker::remove_peer`], [`Speaker::set_local_prefixes`] and
    /// [`Speaker::set_announce`]).
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// Our ASN.
    pub fn local_as(&self) -> u32 {
        self.local_as
    }

    /// Our BGP Identifier.
    pub fn router_id(&self) -> Ipv4Addr {
        self.router_id
    }

    /// Starts every session.
    pub fn start(&mut self, now: Instant) {
        for i in 0..self.peers.slots() {
            self.handle(now, PeerId(i), Input::Start);
        }
    }

    /// Stops one session (the tunnel under it went down, the operator asked,
    /// ...); it stays down until [`Input::Start`].
    pub fn stop_peer(&mut self, now: Instant, peer: PeerId, reason: StopReason) {
        self.handle(
            now,
            peer,
            Input::Stop {
                reason,
                restart_after: None,
            },
        );
    }

    /// Adds a peer while running (a configuration reload). It is checked as
    /// [`SpeakerConfig::validate`] checks each peer of a whole configuration,
    /// against the live peers (an address already in use is refused), and
    /// starts Idle until [`Input::Start`]. Its id is the next one never
    /// handed out: ids of removed peers are not reused.
    pub fn add_peer(&mut self, _now: Instant, config: PeerConfig) -> Result<PeerId, ConfigError> {
        let taken: BTreeSet<IpAddr> = self.peers.iter().map(|(_, p)| p.config.address).collect();
        let own: Vec<IpNet> = self.policy.own_prefixes.iter().copied().collect();
        let announce: Vec<IpNet> = self.announce.iter().copied().collect();
        self.gateway(&own, &announce).check_peer(&config, &taken)?;
        let peer = self.new_peer(config);
        let id = self.peers.push(peer);
        self.recheck_warnings();
        Ok(id)
    }

    /// Removes a peer (it left the configuration): its session ends with
    /// Cease / Peer De-configured (RFC 4486), the routes learned from it
    /// are withdrawn as when a session goes down, and it is forgotten. Its
    /// id stays retired; inputs for it are ignored.
    pub fn remove_peer(&mut self, now: Instant, peer: PeerId) {
        let Some(p) = self.peers.get_mut(peer.0) else {
            return;
        };
        p.session.handle(
            now,
            Input::Stop {
                reason: StopReason::Deconfigured,
                restart_after: None,
            },
        );
        self.run(now);
        // Going down cleared its Adj-RIB-In already; whatever is left (none
        // expected) leaves with it.
        let gone = self
            .peers
            .remove(peer.0)
            .map(|mut p| p.adj_in.clear())
            .unwrap_or_default();
        self.decide(gone, None);
        self.run(now);
        self.recheck_warnings();
        self.store.collect_garbage();
    }

    /// Replaces the gateway's own prefixes: new ones are advertised to the
    /// established peers, removed ones withdrawn from them (or replaced by
    /// a learned path; still advertised if announced), and the import
    /// policy runs again over what the peers sent: a received route
    /// identical to a new own prefix is refused
    /// ([`ImportRefusal::OwnPrefix`]) and leaves the Loc-RIB, one refused
    /// only for matching a prefix that is no longer ours is accepted and
    /// may become the best path (unless it is announced: see
    /// [`Speaker::set_announce`]).
    pub fn set_local_prefixes(&mut self, now: Instant, prefixes: Vec<IpNet>) {
        let new: BTreeSet<IpNet> = prefixes.into_iter().collect();
        let old = std::mem::replace(&mut self.policy.own_prefixes, new);
        let changed: BTreeSet<IpNet> = old
            .symmetric_difference(&self.policy.own_prefixes)
            .copied()
            .collect();
        if changed.is_empty() {
            return;
        }
        for i in 0..self.peers.slots() {
            self.reimport(i, &changed);
        }
        self.decide(changed.iter().copied().collect(), None);
        // Own prefixes are not in the Loc-RIB: export each change even
        // where the decision did not move.
        for prefix in &changed {
            for q in 0..self.peers.slots() {
                self.export(q, *prefix);
            }
        }
        self.run(now);
        self.recheck_warnings();
        self.store.collect_garbage();
    }

    /// Replaces the announced prefixes ([`SpeakerConfig::announce`]; the
    /// caller checks them as [`SpeakerConfig::validate`] does): new ones
    /// are advertised to the established peers, removed ones withdrawn from
    /// them, or replaced by the best learned path, which then enters the
    /// Loc-RIB ([`Event::BestPath`]). A newly announced prefix that had a
    /// learned best path leaves the Loc-RIB ([`Event::Withdrawn`]): our
    /// origination wins. Import policy does not change: announced prefixes
    /// are not own.
    pub fn set_announce(&mut self, now: Instant, prefixes: Vec<IpNet>) {
        let new: BTreeSet<IpNet> = prefixes.into_iter().collect();
        let old = std::mem::replace(&mut self.announce, new);
        let changed: BTreeSet<IpNet> = old.symmetric_difference(&self.announce).copied().collect();
        if changed.is_empty() {
            return;
        }
        self.decide(changed.iter().copied().collect(), None);
        // Originated prefixes are not in the Loc-RIB: export each change
        // even where the decision did not move.
        for prefix in &changed {
            for q in 0..self.peers.slots() {
                self.export(q, *prefix);
            }
        }
        self.run(now);
        self.recheck_warnings();
        self.store.collect_garbage();
    }

    /// The announced prefixes ([`SpeakerConfig::announce`]).
    pub fn announced(&self) -> &BTreeSet<IpNet> {
        &self.announce
    }

    /// Whether we originate `prefix`: one of our own, or announced.
    fn originates(&self, prefix: &IpNet) -> bool {
        self.policy.is_own(prefix) || self.announce.contains(prefix)
    }

    /// Runs import policy again over peer `i`'s routes for `prefixes`
    /// (whose own-prefix status changed), reporting newly refused ones.
    fn reimport(&mut self, i: usize, prefixes: &BTreeSet<IpNet>) {
        let Some(p) = self.peers.get_mut(i) else {
            return;
        };
        let mut refused: Vec<(IpNet, ImportRefusal)> = Vec::new();
        for prefix in prefixes {
            // Malformed routes have no attributes and stay refused.
            let attrs = if let Some(a) = p.adj_in.get(prefix) {
                Arc::clone(a)
            } else if let Some(a) = p
                .adj_in
                .refused()
                .get(prefix)
                .and_then(|r| r.attrs.as_ref())
            {
                Arc::clone(a)
            } else {
                continue;
            };
            match self
                .policy
                .check_import(prefix, &attrs, p.config.import.as_ref())
            {
                Ok(()) => {
                    if p.adj_in.get(prefix).is_none() {
                        p.adj_in.accept(*prefix, attrs);
                    }
                }
                Err(reason) => {
                    let unchanged = p
                        .adj_in
                        .refused()
                        .get(prefix)
                        .is_some_and(|r| r.reason == reason);
                    if !unchanged {
                        refused.push((*prefix, reason.clone()));
                        p.adj_in.refuse(
                            *prefix,
                            Refused {
                                attrs: Some(attrs),
                                reason,
                            },
                        );
                    }
                }
            }
        }
        if !refused.is_empty() {
            self.outputs.push_back(Output::Event(Event::Refused {
                peer: PeerId(i),
                routes: refused,
            }));
        }
    }

    /// The gateway-wide settings peers are checked against.
    fn gateway<'a>(&self, own: &'a [IpNet], announce: &'a [IpNet]) -> Gateway<'a> {
        Gateway {
            local_as: self.local_as,
            act_as: self.act_as,
            local_prefixes: own,
            announce,
        }
    }

    /// Recomputes the warnings for the configuration now in force.
    fn recheck_warnings(&mut self) {
        let own: Vec<IpNet> = self.policy.own_prefixes.iter().copied().collect();
        let announce: Vec<IpNet> = self.announce.iter().copied().collect();
        let gateway = self.gateway(&own, &announce);
        let mut taken = BTreeSet::new();
        let mut warnings = Vec::new();
        for (_, p) in self.peers.iter() {
            // Every live peer passed this check when it was added.
            if let Ok(w) = gateway.check_peer(&p.config, &taken) {
                warnings.extend(w);
            }
            taken.insert(p.config.address);
        }
        self.warnings = warnings;
    }

    /// The (live) peer a connection from `remote` belongs to.
    pub fn find_peer(&self, remote: IpAddr) -> Option<PeerId> {
        self.peers
            .iter()
            .find(|(_, p)| p.config.address == remote)
            .map(|(i, _)| PeerId(i))
    }

    /// Every live peer's id (removed peers are left out).
    pub fn peer_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.iter().map(|(i, _)| PeerId(i))
    }

    /// One peer's state and RIBs; `None` for an unknown or removed peer.
    pub fn peer(&self, id: PeerId) -> Option<PeerStatus<'_>> {
        let p = self.peers.get(id.0)?;
        Some(PeerStatus {
            id,
            config: &p.config,
            state: p.session.state(),
            negotiated: p.session.negotiated(),
            last_down: p.last_down.as_ref(),
            adj_rib_in: &p.adj_in,
            adj_rib_out: &p.adj_out,
        })
    }

    /// The Loc-RIB, with each prefix's paths.
    pub fn loc_rib(&self) -> LocRibView<'_> {
        LocRibView { speaker: self }
    }

    /// Peer `peer`'s path for `prefix`, from its Adj-RIB-In.
    fn route_of(&self, peer: PeerId, prefix: &IpNet) -> Option<Route> {
        let attrs = self.peers.get(peer.0)?.adj_in.get(prefix)?;
        Some(Route {
            peer,
            attrs: Arc::clone(attrs),
        })
    }

    /// The best path of `prefix`.
    fn best_route(&self, prefix: &IpNet) -> Option<Route> {
        self.route_of(self.loc_rib.best_peer(prefix)?, prefix)
    }

    /// How many distinct attribute sets the RIBs share.
    pub fn attribute_sets(&self) -> usize {
        self.store.len()
    }

    /// Feeds an input to one peer's session and runs everything it causes.
    pub fn handle(&mut self, now: Instant, peer: PeerId, input: Input<'_>) {
        let Some(p) = self.peers.get_mut(peer.0) else {
            return;
        };
        p.session.handle(now, input);
        self.run(now);
    }

    /// Fires every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for p in self.peers.iter_mut() {
            if p.session.poll_timeout().is_some_and(|t| t <= now) {
                p.session.handle(now, Input::Timer);
            }
        }
        self.run(now);
        self.store.collect_garbage();
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Speaker::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .iter()
            .filter_map(|(_, p)| p.session.poll_timeout())
            .min()
    }

    /// Drains every session and sends what changed, until nothing moves.
    fn run(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            for i in 0..self.peers.slots() {
                while let Some(out) = self.peers.get_mut(i).and_then(|p| p.session.poll_output()) {
                    moved = true;
                    self.session_output(now, i, out);
                }
            }
            for i in 0..self.peers.slots() {
                moved |= self.flush(now, i);
            }
            if !moved {
                break;
            }
        }
        self.export_cache = HashMap::new();
    }

    fn session_output(&mut self, now: Instant, i: usize, out: SessionOutput) {
        let peer = PeerId(i);
        match out {
            SessionOutput::Connect => {
                if let Some(p) = self.peers.get(i) {
                    self.outputs.push_back(Output::Connect {
                        peer,
                        local: p.config.local_address,
                        remote: p.config.address,
                    });
                }
            }
            SessionOutput::Send { connection, bytes } => {
                self.outputs.push_back(Output::Send {
                    peer,
                    connection,
                    bytes,
                });
            }
            SessionOutput::Close { connection } => {
                self.outputs.push_back(Output::Close { peer, connection });
            }
            SessionOutput::Event(SessionEvent::Established(negotiated)) => {
                self.established(i, &negotiated);
            }
            SessionOutput::Event(SessionEvent::Update(update)) => {
                self.update_received(now, i, *update);
            }
            SessionOutput::Event(SessionEvent::RouteRefresh(_)) => {
                if let Some(p) = self.peers.get_mut(i) {
                    let all: Vec<IpNet> = p.adj_out.advertised().keys().collect();
                    p.dirty_out.extend(all);
                }
            }
            SessionOutput::Event(SessionEvent::Down {
                reason,
                was_established,
            }) => self.down(i, reason, was_established),
        }
    }

    fn established(&mut self, i: usize, negotiated: &Negotiated) {
        let Some(p) = self.peers.get(i) else {
            return;
        };
        self.outputs.push_back(Output::Event(Event::PeerUp {
            peer: PeerId(i),
            name: p.config.name.clone(),
            router_id: negotiated.peer_router_id(),
            hold_time: negotiated.hold_time,
        }));
        // What we originate first: it goes out before learned routes when
        // the peer's cap is short.
        let mut prefixes: Vec<IpNet> = self.policy.own_prefixes.iter().copied().collect();
        prefixes.extend(self.announce.difference(&self.policy.own_prefixes).copied());
        prefixes.extend(self.loc_rib.prefixes());
        for prefix in prefixes {
            self.export(i, prefix);
        }
    }

    fn down(&mut self, i: usize, reason: DownReason, was_established: bool) {
        let Some(p) = self.peers.get_mut(i) else {
            return;
        };
        p.last_down = Some(reason.clone());
        self.outputs.push_back(Output::Event(Event::PeerDown {
            peer: PeerId(i),
            name: p.config.name.clone(),
            reason,
            was_established,
        }));
        let gone = p.adj_in.clear();
        p.adj_out.clear();
        p.dirty_out.clear();
        p.held_events.clear();
        self.decide(gone, None);
        self.store.collect_garbage();
    }

    fn update_received(&mut self, now: Instant, i: usize, update: Update) {
        let Some(p) = self.peers.get(i) else {
            return;
        };
        // Queued behind an error that already closed the session.
        let Some(negotiated) = p.session.negotiated() else {
            return;
        };
        let internal = negotiated.context.internal_peer;
        let four_octet = negotiated.context.four_octet_as;
        let mut touched: Vec<IpNet> = Vec::new();
        let mut refused: Vec<(IpNet, ImportRefusal)> = Vec::new();

        let mut withdrawn: Vec<IpNet> = update
            .withdrawn_routes
            .iter()
            .map(|n| IpNet::V4(*n))
            .collect();
        match update.mp_unreach_nlri() {
            Some(MpUnreachNlri::Ipv4Unicast(v)) => {
                withdrawn.extend(v.iter().map(|n| IpNet::V4(*n)))
            }
            Some(MpUnreachNlri::Ipv6Unicast(v)) => {
                withdrawn.extend(v.iter().map(|n| IpNet::V6(*n)))
            }
            Some(MpUnreachNlri::Other { .. }) | None => {}
        }
        let mut malformed: Vec<(IpNet, ImportRefusal)> = Vec::new();
        if let Some(taw) = &update.treat_as_withdraw {
            let reason = ImportRefusal::Malformed(taw.reason.clone());
            malformed.extend(taw.ipv4.iter().map(|n| (IpNet::V4(*n), reason.clone())));
            malformed.extend(taw.ipv6.iter().map(|n| (IpNet::V6(*n), reason.clone())));
        }
        let mut announced: Vec<(IpNet, IpAddr)> = Vec::new();
        if let Some(nh) = update.next_hop() {
            announced.extend(update.nlri.iter().map(|n| (IpNet::V4(*n), IpAddr::V4(nh))));
        }
        match update.mp_reach_nlri() {
            Some(MpReachNlri::Ipv4Unicast { next_hop, nlri }) => {
                let nh = mp_address(next_hop);
                announced.extend(nlri.iter().map(|n| (IpNet::V4(*n), nh)));
            }
            Some(MpReachNlri::Ipv6Unicast { next_hop, nlri }) => {
                let nh = mp_address(next_hop);
                announced.extend(nlri.iter().map(|n| (IpNet::V6(*n), nh)));
            }
            Some(MpReachNlri::Other { .. }) | None => {}
        }

        let Some(p) = self.peers.get_mut(i) else {
            return;
        };
        for prefix in withdrawn {
            p.adj_in.remove(&prefix);
            touched.push(prefix);
        }
        for (prefix, reason) in malformed {
            p.adj_in.refuse(
                prefix,
                Refused {
                    attrs: None,
                    reason: reason.clone(),
                },
            );
            refused.push((prefix, reason));
            touched.push(prefix);
        }
        // One shared attribute set per next hop.
        let mut by_next_hop: HashMap<IpAddr, Arc<PathAttributes>> = HashMap::new();
        for (prefix, nh) in announced {
            let attrs = by_next_hop
                .entry(nh)
                .or_insert_with(|| {
                    self.store.intern(PathAttributes::from_received(
                        &update.path_attributes,
                        nh,
                        internal,
                        four_octet,
                    ))
                })
                .clone();
            match self
                .policy
                .check_import(&prefix, &attrs, p.config.import.as_ref())
            {
                Ok(()) => p.adj_in.accept(prefix, attrs),
                Err(reason) => {
                    refused.push((prefix, reason.clone()));
                    p.adj_in.refuse(
                        prefix,
                        Refused {
                            attrs: Some(attrs),
                            reason,
                        },
                    );
                }
            }
            touched.push(prefix);
        }
        if !refused.is_empty() {
            self.outputs.push_back(Output::Event(Event::Refused {
                peer: PeerId(i),
                routes: refused,
            }));
        }
        let limit = p.config.max_prefixes;
        if p.adj_in.received() > usize::try_from(limit).unwrap_or(usize::MAX) {
            // The routes leave with the session (Down clears the Adj-RIB-In).
            let restart_after = Some(p.config.max_prefix_restart);
            p.session.handle(
                now,
                Input::Stop {
                    reason: StopReason::MaxPrefixes { limit },
                    restart_after,
                },
            );
            return;
        }
        self.decide(touched, Some(PeerId(i)));
    }

    /// Runs the decision process for `prefixes`, updates the Loc-RIB,
    /// reports changes and exports them to every peer.
    ///
    /// `announcer` is the peer whose UPDATE touched `prefixes`, if one did:
    /// the Loc-RIB keeps only which peers' paths are selected, so a path of
    /// that peer that stays selected may have new attributes, and counts as
    /// changed.
    fn decide(&mut self, prefixes: Vec<IpNet>, announcer: Option<PeerId>) {
        let prefixes: BTreeSet<IpNet> = prefixes.into_iter().collect();
        for prefix in prefixes {
            let new = self.select(&prefix, false).map(|d| d.entry);
            let new_peers: Option<Vec<PeerId>> =
                new.as_ref().map(|e| e.ecmp().map(|r| r.peer).collect());
            let old_peers = self.loc_rib.peers(&prefix);
            let renewed = |peer: PeerId| announcer == Some(peer);
            let changed = old_peers != new_peers
                || new_peers
                    .as_ref()
                    .is_some_and(|p| p.iter().any(|peer| renewed(*peer)));
            if !changed {
                continue;
            }
            // What peers hear depends on the best path alone: a change in
            // the ECMP set behind it sends nothing.
            let old_best = old_peers.as_ref().and_then(|p| p.first().copied());
            let new_best = new_peers.as_ref().and_then(|p| p.first().copied());
            let best_moved = old_best != new_best || new_best.is_some_and(renewed);
            self.loc_rib.set(prefix, new_peers.as_deref());
            let event = match &new {
                Some(entry) => Event::BestPath {
                    prefix,
                    best: entry.best.clone(),
                    next_hops: self.shared_hops(entry),
                },
                None => Event::Withdrawn { prefix },
            };
            self.outputs.push_back(Output::Event(event));
            if best_moved {
                for q in 0..self.peers.slots() {
                    self.export(q, prefix);
                }
            }
        }
    }

    /// The next hops of `entry`, shared with the previous event when they
    /// are the same (a full table from one peer has one set): no
    /// allocation per prefix.
    fn shared_hops(&mut self, entry: &LocRibEntry) -> Arc<[NextHop]> {
        let same = self.last_hops.len() == entry.ecmp_len()
            && entry
                .ecmp()
                .zip(self.last_hops.iter())
                .all(|(r, h)| h.peer == r.peer && h.address == r.attrs.next_hop);
        if !same {
            self.last_hops = entry.next_hops().into();
        }
        Arc::clone(&self.last_hops)
    }

    /// The decision process for `prefix` in full, with the paths that
    /// lost and why (the Loc-RIB keeps only the winners).
    pub fn decision(&self, prefix: &IpNet) -> Option<Decision> {
        self.select(prefix, true)
    }

    /// The decision for `prefix`; the losers are listed only if `lost`.
    fn select(&self, prefix: &IpNet, lost: bool) -> Option<Decision> {
        // Our own origination is preferred to any learned path, and is not
        // a Loc-RIB route (own prefixes never get this far: refused on
        // import).
        if self.originates(prefix) {
            return None;
        }
        // One path (a table from one peer): nothing to compare, nothing
        // to allocate.
        let mut only = None;
        let mut paths = 0;
        for (i, p) in self.peers.iter() {
            if let (Some(attrs), Some(_)) = (p.adj_in.get(prefix), p.session.negotiated()) {
                paths += 1;
                if paths > 1 {
                    break;
                }
                only = Some(Route {
                    peer: PeerId(i),
                    attrs: Arc::clone(attrs),
                });
            }
        }
        if paths < 2 {
            return only.map(|best| Decision {
                entry: LocRibEntry {
                    best,
                    others: Box::new([]),
                },
                lost: Vec::new(),
            });
        }
        let mut routes: Vec<(Route, PathSource)> = Vec::new();
        for (i, p) in self.peers.iter() {
            let (Some(attrs), Some(negotiated)) = (p.adj_in.get(prefix), p.session.negotiated())
            else {
                continue;
            };
            routes.push((
                Route {
                    peer: PeerId(i),
                    attrs: Arc::clone(attrs),
                },
                PathSource {
                    router_id: negotiated.peer_router_id(),
                    address: p.config.address,
                    external: p.config.remote_as != self.local_as,
                },
            ));
        }
        let candidates: Vec<Candidate<'_>> = routes
            .iter()
            .map(|(r, source)| Candidate {
                attrs: &r.attrs,
                source: *source,
            })
            .collect();
        let selection = decision::select(&candidates)?;
        let route = |i: usize| routes.get(i).map(|(r, _)| r.clone());
        Some(Decision {
            entry: LocRibEntry {
                best: route(selection.best)?,
                others: selection
                    .ecmp
                    .iter()
                    .filter(|&&i| i != selection.best)
                    .filter_map(|i| route(*i))
                    .collect(),
            },
            lost: if lost {
                selection
                    .lost
                    .iter()
                    .filter_map(|(i, why)| route(*i).map(|r| (r, *why)))
                    .collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Marks `prefix` to be looked at for peer `q` in the next flush,
    /// where what to advertise is worked out from the Loc-RIB.
    fn export(&mut self, q: usize, prefix: IpNet) {
        if let Some(p) = self.peers.get_mut(q) {
            if p.session.negotiated().is_some() {
                p.dirty_out.insert(prefix);
            }
        }
    }

    /// What peer `q` should hear for `prefix` now: `None` for nothing (no
    /// route, not originated), else the attributes or why it is held back.
    /// Learned routes go through the per-run export cache: the attributes a
    /// path is exported with depend on the path, the peer and the family,
    /// not on the prefix, so a full table costs one transformation per
    /// distinct path, not one per prefix.
    fn desired_export(
        &mut self,
        q: usize,
        prefix: &IpNet,
    ) -> Option<Result<Arc<PathAttributes>, ExportRefusal>> {
        if self.originates(prefix) {
            // Interned: our prefixes with equal attributes share an UPDATE.
            return Some(
                self.export_attributes(q, prefix, None)
                    .map(|a| self.store.intern(a)),
            );
        }
        let best = self.best_route(prefix)?;
        // The checks that depend on the prefix, in export_attributes' order.
        if let Err(reason) = self.export_prefix_checks(q, prefix, Some(&best)) {
            return Some(Err(reason));
        }
        let key = (
            q,
            Arc::as_ptr(&best.attrs) as usize,
            best.peer,
            prefix.addr().is_ipv4(),
        );
        if let Some((_, result)) = self.export_cache.get(&key) {
            return Some(result.clone());
        }
        // Not interned: the cache shares the result for this run, and
        // nothing keeps it after.
        let result = self.export_attributes(q, prefix, Some(&best)).map(Arc::new);
        self.export_cache
            .insert(key, (Arc::clone(&best.attrs), result.clone()));
        Some(result)
    }

    /// The export checks that depend on the prefix rather than on its
    /// path's attributes — its family, the peer's export list, and for a
    /// learned route whether it came from this peer and whether it is a
    /// default route — in the order [`Speaker::export_attributes`] applies
    /// them (the export cache holds only what comes after).
    fn export_prefix_checks(
        &self,
        q: usize,
        prefix: &IpNet,
        route: Option<&Route>,
    ) -> Result<(), ExportRefusal> {
        let Some(p) = self.peers.get(q) else {
            return Err(ExportRefusal::AddressFamilyNotNegotiated);
        };
        let Some(negotiated) = p.session.negotiated() else {
            return Err(ExportRefusal::AddressFamilyNotNegotiated);
        };
        let family_ok = match prefix {
            IpNet::V4(_) => negotiated.ipv4,
            IpNet::V6(_) => negotiated.ipv6,
        };
        if !family_ok {
            return Err(ExportRefusal::AddressFamilyNotNegotiated);
        }
        if let Some(list) = &p.config.export {
            if !list.permits(prefix) {
                return Err(ExportRefusal::ExportPrefixList);
            }
        }
        if let Some(r) = route {
            if r.peer == PeerId(q) {
                return Err(ExportRefusal::LearnedFromPeer);
            }
            if prefix.prefix_len() == 0 {
                return Err(ExportRefusal::DefaultRoute);
            }
        }
        Ok(())
    }

    /// What we advertise to `peer` now, with the attributes as sent.
    pub fn advertised_to(&self, peer: PeerId) -> PrefixMap<PathAttributes> {
        let Some(p) = self.peers.get(peer.0) else {
            return PrefixMap::new();
        };
        p.adj_out
            .advertised()
            .keys()
            .filter_map(|prefix| {
                let route = if self.originates(&prefix) {
                    None
                } else {
                    Some(self.best_route(&prefix)?)
                };
                let attrs = self
                    .export_attributes(peer.0, &prefix, route.as_ref())
                    .ok()?;
                Some((prefix, attrs))
            })
            .collect()
    }

    /// The attributes to advertise `prefix` with to peer `q`: a prefix we
    /// originate (own or announced) when `route` is `None`.
    fn export_attributes(
        &self,
        q: usize,
        prefix: &IpNet,
        route: Option<&Route>,
    ) -> Result<PathAttributes, ExportRefusal> {
        self.export_prefix_checks(q, prefix, route)?;
        let (Some(p), Some(negotiated)) = (
            self.peers.get(q),
            self.peers.get(q).and_then(|p| p.session.negotiated()),
        ) else {
            return Err(ExportRefusal::AddressFamilyNotNegotiated);
        };
        let external = p.config.remote_as != self.local_as;
        let mut attrs = match route {
            None => PathAttributes::originated(crate::rib::UNSPECIFIED),
            Some(r) => {
                let from_internal = self
                    .peers
                    .get(r.peer.0)
                    .is_some_and(|o| o.config.remote_as == self.local_as);
                if !external && from_internal {
                    return Err(ExportRefusal::IbgpToIbgp);
                }
                if r.attrs.communities.contains(&Community::NO_ADVERTISE) {
                    return Err(ExportRefusal::WellKnownCommunity(Community::NO_ADVERTISE));
                }
                if external && r.attrs.communities.contains(&Community::NO_EXPORT) {
                    return Err(ExportRefusal::WellKnownCommunity(Community::NO_EXPORT));
                }
                if external && r.attrs.as_path_contains(p.config.remote_as) {
                    return Err(ExportRefusal::PeerAsInPath {
                        asn: p.config.remote_as,
                    });
                }
                (*r.attrs).clone()
            }
        };
        if external {
            attrs.prepend(self.local_as, 1 + usize::from(p.config.prepend));
            attrs.med = None;
            attrs.local_pref = None;
            attrs.next_hop = self_next_hop(p, negotiated, prefix)?;
        } else {
            attrs.local_pref = Some(attrs.degree_of_preference());
            if route.is_none() {
                attrs.next_hop = self_next_hop(p, negotiated, prefix)?;
            }
        }
        Ok(attrs)
    }

    /// Works out what changed for peer `i` and sends it; true if anything
    /// was sent or reported.
    fn flush(&mut self, now: Instant, i: usize) -> bool {
        // Room left under the peer's cap goes to what was held back for it.
        let retry: Vec<IpNet> = match self.peers.get(i) {
            Some(p) => match p.config.peer_cap() {
                Some((cap, _))
                    if p.adj_out.advertised().len()
                        < usize::try_from(cap).unwrap_or(usize::MAX) =>
                {
                    p.adj_out
                        .held_back()
                        .iter()
                        .filter(|(_, r)| matches!(r, ExportRefusal::PeerCap { .. }))
                        .map(|(n, _)| n)
                        .collect()
                }
                Some(_) | None => Vec::new(),
            },
            None => Vec::new(),
        };
        if let Some(p) = self.peers.get_mut(i) {
            for prefix in retry {
                p.adj_out.remove(&prefix);
                if p.session.negotiated().is_some() {
                    p.dirty_out.insert(prefix);
                }
            }
        }

        let Some(p) = self.peers.get_mut(i) else {
            return false;
        };
        if p.dirty_out.is_empty() {
            return report_held(&mut self.outputs, p, i);
        }
        let dirty = std::mem::take(&mut p.dirty_out);
        let mut withdraw_v4: Vec<Ipv4Net> = Vec::new();
        let mut withdraw_v6: Vec<Ipv6Net> = Vec::new();
        let mut groups: Vec<(Arc<PathAttributes>, Vec<Ipv4Net>, Vec<Ipv6Net>)> = Vec::new();
        let mut group_of: HashMap<*const PathAttributes, usize> = HashMap::new();
        for prefix in dirty {
            let desired = self.desired_export(i, &prefix);
            let Some(p) = self.peers.get_mut(i) else {
                return false;
            };
            let withdraw = match desired {
                None => p.adj_out.remove(&prefix),
                Some(Err(reason)) => hold_back(p, prefix, reason),
                Some(Ok(attrs)) => {
                    let advertised = p.adj_out.advertised().contains_key(&prefix);
                    let full = p.config.peer_cap().filter(|(cap, _)| {
                        p.adj_out.advertised().len() >= usize::try_from(*cap).unwrap_or(usize::MAX)
                    });
                    if let (Some((cap, profile)), false) = (full, advertised) {
                        hold_back(p, prefix, ExportRefusal::PeerCap { cap, profile });
                        continue;
                    }
                    p.adj_out.advertise(prefix);
                    let g = *group_of.entry(Arc::as_ptr(&attrs)).or_insert_with(|| {
                        groups.push((Arc::clone(&attrs), Vec::new(), Vec::new()));
                        groups.len() - 1
                    });
                    if let Some((_, v4, v6)) = groups.get_mut(g) {
                        match prefix {
                            IpNet::V4(n) => v4.push(n),
                            IpNet::V6(n) => v6.push(n),
                        }
                    }
                    false
                }
            };
            if withdraw {
                match prefix {
                    IpNet::V4(n) => withdraw_v4.push(n),
                    IpNet::V6(n) => withdraw_v6.push(n),
                }
            }
        }
        let Some(p) = self.peers.get_mut(i) else {
            return false;
        };
        report_held(&mut self.outputs, p, i);
        let four_octet = p
            .session
            .negotiated()
            .is_some_and(|n| n.context.four_octet_as);
        let session = &mut p.session;
        send_chunked(session, now, &withdraw_v4, IPV4_PER_UPDATE, &|chunk| {
            Update {
                withdrawn_routes: chunk.to_vec(),
                ..Update::default()
            }
        });
        send_chunked(session, now, &withdraw_v6, IPV6_PER_UPDATE, &|chunk| {
            Update {
                path_attributes: vec![PathAttribute::new(
                    crate::wire::AttributeValue::MpUnreachNlri(MpUnreachNlri::Ipv6Unicast(
                        chunk.to_vec(),
                    )),
                )],
                ..Update::default()
            }
        });
        for (attrs, v4, v6) in &groups {
            send_chunked(session, now, v4, IPV4_PER_UPDATE, &|chunk| Update {
                path_attributes: attrs.to_wire(None, four_octet),
                nlri: chunk.to_vec(),
                ..Update::default()
            });
            send_chunked(session, now, v6, IPV6_PER_UPDATE, &|chunk| Update {
                path_attributes: attrs.to_wire(
                    Some(MpReachNlri::Ipv6Unicast {
                        next_hop: attrs.mp_next_hop(),
                        nlri: chunk.to_vec(),
                    }),
                    four_octet,
                ),
                ..Update::default()
            });
        }
        true
    }
}

/// The Loc-RIB as [`Speaker::loc_rib`] shows it: each prefix's selected
/// paths, put together from the peers' Adj-RIB-Ins.
#[derive(Clone, Copy)]
pub struct LocRibView<'a> {
    speaker: &'a Speaker,
}

impl std::fmt::Debug for LocRibView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocRib").field("len", &self.len()).finish()
    }
}

impl LocRibView<'_> {
    /// The entry of `prefix`: its best path and the other ECMP members.
    pub fn get(&self, prefix: &IpNet) -> Option<LocRibEntry> {
        let peers = self.speaker.loc_rib.peers(prefix)?;
        let (best, others) = peers.split_first()?;
        Some(LocRibEntry {
            best: self.speaker.route_of(*best, prefix)?,
            others: others
                .iter()
                .filter_map(|p| self.speaker.route_of(*p, prefix))
                .collect(),
        })
    }

    /// Every prefix with a route, in order.
    pub fn prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.speaker.loc_rib.prefixes()
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.speaker.loc_rib.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.speaker.loc_rib.is_empty()
    }
}

/// Reports the routes newly held back from peer `i`; true if there were.
fn report_held(outputs: &mut VecDeque<Output>, p: &mut Peer, i: usize) -> bool {
    if p.held_events.is_empty() {
        return false;
    }
    let routes = std::mem::take(&mut p.held_events);
    outputs.push_back(Output::Event(Event::HeldBack {
        peer: PeerId(i),
        routes,
    }));
    true
}

/// Records that `prefix` is held back from `p`, reporting it unless it is
/// the obvious case (not sent back to where it came from) or unchanged.
fn hold_back(p: &mut Peer, prefix: IpNet, reason: ExportRefusal) -> bool {
    let unchanged = p.adj_out.held_back().get(&prefix) == Some(&reason);
    let report = !unchanged
        && match reason {
            ExportRefusal::LearnedFromPeer | ExportRefusal::AddressFamilyNotNegotiated => false,
            ExportRefusal::DefaultRoute
            | ExportRefusal::ExportPrefixList
            | ExportRefusal::PeerAsInPath { .. }
            | ExportRefusal::IbgpToIbgp
            | ExportRefusal::WellKnownCommunity(_)
            | ExportRefusal::NoNextHop
            | ExportRefusal::PeerCap { .. } => true,
        };
    if report {
        p.held_events.push((prefix, reason.clone()));
    }
    p.adj_out.hold_back(prefix, reason)
}

/// Our address as the next hop for `prefix` towards `p`.
fn self_next_hop(
    p: &Peer,
    negotiated: &Negotiated,
    prefix: &IpNet,
) -> Result<IpAddr, ExportRefusal> {
    let local = negotiated.local.ip();
    match prefix {
        IpNet::V4(_) => match (local, p.config.local_address) {
            (IpAddr::V4(_), _) => Ok(local),
            (IpAddr::V6(_), Some(a @ IpAddr::V4(_))) => Ok(a),
            (IpAddr::V6(_), Some(IpAddr::V6(_)) | None) => Err(ExportRefusal::NoNextHop),
        },
        IpNet::V6(_) => match (p.config.ipv6_next_hop, local) {
            (Some(a), _) => Ok(IpAddr::V6(a)),
            (None, IpAddr::V6(_)) => Ok(local),
            (None, IpAddr::V4(_)) => Err(ExportRefusal::NoNextHop),
        },
    }
}

fn mp_address(next_hop: &crate::wire::MpNextHop) -> IpAddr {
    match next_hop {
        crate::wire::MpNextHop::Ipv4(a) => IpAddr::V4(*a),
        crate::wire::MpNextHop::Ipv6 { global, .. } => IpAddr::V6(*global),
    }
}

/// Sends `prefixes` in UPDATEs of at most `per_update` prefixes, halving a
/// chunk whose UPDATE would exceed 4096 octets.
fn send_chunked<T: Copy>(
    session: &mut Session,
    now: Instant,
    prefixes: &[T],
    per_update: usize,
    build: &dyn Fn(&[T]) -> Update,
) {
    for chunk in prefixes.chunks(per_update.max(1)) {
        send_split(session, now, chunk, build);
    }
}

fn send_split<T: Copy>(
    session: &mut Session,
    now: Instant,
    chunk: &[T],
    build: &dyn Fn(&[T]) -> Update,
) {
    if chunk.is_empty() {
        return;
    }
    match session.send(now, &Message::Update(build(chunk))) {
        Ok(()) | Err(SendError::NotEstablished) => {}
        Err(SendError::Encode(EncodeError::MessageTooLong { .. })) if chunk.len() > 1 => {
            let (a, b) = chunk.split_at(chunk.len() / 2);
            send_split(session, now, a, build);
            send_split(session, now, b, build);
        }
        Err(SendError::Encode(
            EncodeError::MessageTooLong { .. } | EncodeError::FieldTooLong { .. },
        )) => {}
    }
}
