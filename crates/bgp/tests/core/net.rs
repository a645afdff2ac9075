//! Speakers wired to each other in memory, with a simulated clock: every
//! Connect reaches the speaker owning the address, bytes go straight
//! across, a Close reaches the other end as TcpClosed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use vpngw_bgp::session::{ConnectionId, Direction, Input};
use vpngw_bgp::{Event, Output, PeerId, Speaker};

pub(crate) struct Node {
    pub(crate) speaker: Speaker,
    /// Every address this node's sessions use.
    pub(crate) addresses: Vec<IpAddr>,
    pub(crate) events: Vec<Event>,
}

pub(crate) struct Net {
    pub(crate) nodes: Vec<Node>,
    pub(crate) t0: Instant,
    pub(crate) now: Instant,
    links: HashMap<(usize, ConnectionId), (usize, PeerId, ConnectionId)>,
    next: u64,
    /// Links that drop every connection attempt: (from, to) node indices.
    pub(crate) cut: Vec<(usize, usize)>,
}

impl Net {
    pub(crate) fn new(nodes: Vec<(Speaker, Vec<IpAddr>)>) -> Net {
        let t0 = Instant::now();
        Net {
            nodes: nodes
                .into_iter()
                .map(|(speaker, addresses)| Node {
                    speaker,
                    addresses,
                    events: Vec::new(),
                })
                .collect(),
            t0,
            now: t0,
            links: HashMap::new(),
            next: 0,
            cut: Vec::new(),
        }
    }

    pub(crate) fn start(&mut self) {
        for n in &mut self.nodes {
            n.speaker.start(self.now);
        }
        self.run();
    }

    /// Delivers everything until nothing moves.
    pub(crate) fn run(&mut self) {
        loop {
            let mut moved = false;
            for n in 0..self.nodes.len() {
                while let Some(out) = self.nodes[n].speaker.poll_output() {
                    moved = true;
                    self.apply(n, out);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances the clock second by second up to `t0 + secs`.
    pub(crate) fn run_until(&mut self, secs: u64) {
        let end = self.t0 + Duration::from_secs(secs);
        while self.now < end {
            self.now += Duration::from_secs(1);
            for n in &mut self.nodes {
                if n.speaker.poll_timeout().is_some_and(|t| t <= self.now) {
                    n.speaker.handle_timeout(self.now);
                }
            }
            self.run();
        }
    }

    pub(crate) fn handle(&mut self, n: usize, peer: PeerId, input: Input<'_>) {
        self.nodes[n].speaker.handle(self.now, peer, input);
    }

    fn apply(&mut self, n: usize, out: Output) {
        match out {
            Output::Connect {
                peer,
                local,
                remote,
            } => {
                let target = self
                    .nodes
                    .iter()
                    .position(|m| m.addresses.contains(&remote))
                    .filter(|m| !self.cut.contains(&(n, *m)));
                let local = local.unwrap_or(self.nodes[n].addresses[0]);
                let far_peer = target.and_then(|m| self.nodes[m].speaker.find_peer(local));
                let (Some(m), Some(far_peer)) = (target, far_peer) else {
                    self.handle(n, peer, Input::TcpConnectFailed);
                    return;
                };
                self.next += 1;
                let near = ConnectionId(self.next);
                self.next += 1;
                let far = ConnectionId(self.next);
                self.links.insert((n, near), (m, far_peer, far));
                self.links.insert((m, far), (n, peer, near));
                let ephemeral = SocketAddr::new(local, 40000 + self.next as u16);
                let listening = SocketAddr::new(remote, 179);
                self.handle(
                    n,
                    peer,
                    Input::TcpConnected {
                        connection: near,
                        direction: Direction::Outbound,
                        local: ephemeral,
                        remote: listening,
                    },
                );
                self.handle(
                    m,
                    far_peer,
                    Input::TcpConnected {
                        connection: far,
                        direction: Direction::Inbound,
                        local: listening,
                        remote: ephemeral,
                    },
                );
            }
            Output::Send {
                connection, bytes, ..
            } => {
                if let Some(&(m, peer, c)) = self.links.get(&(n, connection)) {
                    self.handle(
                        m,
                        peer,
                        Input::Bytes {
                            connection: c,
                            data: &bytes,
                        },
                    );
                }
            }
            Output::Close { connection, .. } => {
                if let Some((m, peer, c)) = self.links.remove(&(n, connection)) {
                    self.links.remove(&(m, c));
                    self.handle(m, peer, Input::TcpClosed { connection: c });
                }
            }
            Output::Event(e) => self.nodes[n].events.push(e),
        }
    }
}
