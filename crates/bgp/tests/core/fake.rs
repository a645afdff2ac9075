//! A hand-played peer: the test writes its messages, and reads what the
//! speaker sent it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use ipnet::IpNet;
use vpngw_bgp::rib::PathAttributes;
use vpngw_bgp::session::{ConnectionId, Direction, Input};
use vpngw_bgp::wire::{
    AsPath, AttributeValue, Capability, DecodeContext, Message, Open, Origin, PathAttribute, Update,
};
use vpngw_bgp::{Output, PeerId, Speaker};

/// The 4-octet AS context both sides negotiate here.
pub(crate) const CTX: DecodeContext = DecodeContext {
    four_octet_as: true,
    internal_peer: false,
};

/// One peer the test plays by hand against a speaker.
pub(crate) struct Fake {
    pub(crate) peer: PeerId,
    pub(crate) connection: ConnectionId,
}

impl Fake {
    /// Connects to `speaker` as `peer` (inbound), exchanges OPEN and
    /// KEEPALIVE, and returns the fake with what the speaker output.
    pub(crate) fn establish(
        speaker: &mut Speaker,
        now: Instant,
        peer: PeerId,
        connection: u64,
        asn: u32,
        router_id: Ipv4Addr,
    ) -> (Fake, Vec<Output>) {
        let fake = Fake {
            peer,
            connection: ConnectionId(connection),
        };
        let config = speaker.peer(peer).unwrap().config.clone();
        let local = config
            .local_address
            .unwrap_or(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254)));
        speaker.handle(
            now,
            peer,
            Input::TcpConnected {
                connection: fake.connection,
                direction: Direction::Inbound,
                local: SocketAddr::new(local, 179),
                remote: SocketAddr::new(config.address, 40000),
            },
        );
        fake.send(speaker, now, &Message::Open(open(asn, 180, router_id)));
        fake.send(speaker, now, &Message::Keepalive);
        let out = drain(speaker);
        (fake, out)
    }

    /// Sends a message to the speaker.
    pub(crate) fn send(&self, speaker: &mut Speaker, now: Instant, message: &Message) {
        let bytes = message.to_bytes(&CTX).unwrap();
        self.send_bytes(speaker, now, &bytes);
    }

    /// Sends raw octets to the speaker.
    pub(crate) fn send_bytes(&self, speaker: &mut Speaker, now: Instant, bytes: &[u8]) {
        speaker.handle(
            now,
            self.peer,
            Input::Bytes {
                connection: self.connection,
                data: bytes,
            },
        );
    }

    /// Announces `prefixes` with `as_path` (from this peer) and `next_hop`.
    pub(crate) fn announce(
        &self,
        speaker: &mut Speaker,
        now: Instant,
        prefixes: &[&str],
        as_path: &[u32],
        next_hop: Ipv4Addr,
    ) {
        let update = Update {
            path_attributes: vec![
                PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
                PathAttribute::new(AttributeValue::AsPath(AsPath::from_sequence(
                    as_path.to_vec(),
                ))),
                PathAttribute::new(AttributeValue::NextHop(next_hop)),
            ],
            nlri: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            ..Update::default()
        };
        self.send(speaker, now, &Message::Update(update));
    }

    /// Withdraws `prefixes`.
    pub(crate) fn withdraw(&self, speaker: &mut Speaker, now: Instant, prefixes: &[&str]) {
        let update = Update {
            withdrawn_routes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            ..Update::default()
        };
        self.send(speaker, now, &Message::Update(update));
    }
}

/// An OPEN with the capabilities a modern peer sends.
pub(crate) fn open(asn: u32, hold: u16, id: Ipv4Addr) -> Open {
    Open::new(
        asn,
        hold,
        id,
        vec![
            Capability::Multiprotocol {
                afi: vpngw_bgp::wire::Afi::Ipv4,
                safi: vpngw_bgp::wire::Safi::Unicast,
            },
            Capability::FourOctetAs { asn },
        ],
    )
}

/// Everything the speaker has to output.
pub(crate) fn drain(speaker: &mut Speaker) -> Vec<Output> {
    std::iter::from_fn(|| speaker.poll_output()).collect()
}

/// The messages sent to `peer` in `outputs`.
pub(crate) fn sent_to(outputs: &[Output], peer: PeerId) -> Vec<Message> {
    let mut out = Vec::new();
    for o in outputs {
        if let Output::Send { peer: p, bytes, .. } = o {
            if *p == peer {
                out.extend(split(bytes));
            }
        }
    }
    out
}

/// Splits a byte stream into decoded messages.
pub(crate) fn split(mut bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while let Ok(Some(len)) = Message::frame_length(bytes) {
        out.push(Message::decode(&bytes[..len], &CTX).unwrap());
        bytes = &bytes[len..];
    }
    out
}

/// The UPDATEs among `messages`.
pub(crate) fn updates(messages: &[Message]) -> Vec<Update> {
    messages
        .iter()
        .filter_map(|m| {
            let Message::Update(u) = m else { return None };
            Some(u.clone())
        })
        .collect()
}

/// The IPv4 prefixes announced, with their attributes normalized.
pub(crate) fn announced(updates: &[Update]) -> Vec<(IpNet, PathAttributes)> {
    let mut out = Vec::new();
    for u in updates {
        if let Some(nh) = u.next_hop() {
            let attrs =
                PathAttributes::from_received(&u.path_attributes, IpAddr::V4(nh), false, true);
            for n in &u.nlri {
                out.push((IpNet::V4(*n), attrs.clone()));
            }
        }
    }
    out
}

/// The IPv4 prefixes withdrawn.
pub(crate) fn withdrawn(updates: &[Update]) -> Vec<IpNet> {
    updates
        .iter()
        .flat_map(|u| u.withdrawn_routes.iter().map(|n| IpNet::V4(*n)))
        .collect()
}

pub(crate) fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
