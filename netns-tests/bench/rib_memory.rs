//! Where a full table's memory goes, without namespaces or root: the BGP
//! speaker and the route table, driven in memory as the daemon drives them,
//! under an allocator that counts. A benchmark, not a test: it prints a
//! table.
//!
//! A feeder peer announces N prefixes (the table of `bgp_feed`, as in the
//! `bgp_scale` benchmark) to a speaker with a second, transit peer; each
//! best path goes into a `RouteTable` as the daemon sends it, and every
//! planned kernel operation is taken as done. Printed: the heap in use
//! after each stage (speaker with the table, route table with it), bytes
//! per prefix, the peak, and the CPU time of each stage.
//!
//! ```text
//! cargo bench -p vpngw-netns-tests --bench rib_memory [-- 100000 1000000]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vpngw_bgp::config::{PeerConfig, SpeakerConfig};
use vpngw_bgp::session::{ConnectionId, Direction, Input};
use vpngw_bgp::wire::{Capability, DecodeContext, Message, Open};
use vpngw_bgp::{Event, Output, PeerId, Speaker};
use vpngw_netns_tests::bgp_feed::FeedTable;
use vpngw_routes::{Mode, RouteTable, Tunnel, TunnelId};

/// Counts live and peak heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: ptr came from System with this layout.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CTX: DecodeContext = DecodeContext {
    four_octet_as: true,
    internal_peer: false,
};
const FEED: PeerId = PeerId(0);
const SINK: PeerId = PeerId(1);

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn bytes(message: &Message) -> Vec<u8> {
    message.to_bytes(&CTX).unwrap()
}

fn establish(s: &mut Speaker, now: Instant, peer: PeerId, asn: u32, id: Ipv4Addr) {
    let remote = s.peer(peer).unwrap().config.address;
    s.handle(
        now,
        peer,
        Input::TcpConnected {
            connection: ConnectionId(peer.0 as u64 + 1),
            direction: Direction::Inbound,
            local: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(169, 254, 21, 1)), 179),
            remote: SocketAddr::new(remote, 40000),
        },
    );
    let open = Open::new(
        asn,
        180,
        id,
        vec![
            Capability::Multiprotocol {
                afi: vpngw_bgp::wire::Afi::Ipv4,
                safi: vpngw_bgp::wire::Safi::Unicast,
            },
            Capability::FourOctetAs { asn },
        ],
    );
    for m in [Message::Open(open), Message::Keepalive] {
        s.handle(
            now,
            peer,
            Input::Bytes {
                connection: ConnectionId(peer.0 as u64 + 1),
                data: &bytes(&m),
            },
        );
    }
}

/// Takes the speaker's outputs as the daemon does: best paths into the
/// route table (one shared tunnel set), the rest dropped.
fn drain(s: &mut Speaker, table: &mut RouteTable, tunnels: &Arc<[TunnelId]>) -> usize {
    let mut changes = 0;
    while let Some(out) = s.poll_output() {
        if let Output::Event(e) = out {
            match e {
                Event::BestPath { prefix, .. } => {
                    table.set_route_shared(prefix, tunnels);
                    changes += 1;
                }
                Event::Withdrawn { prefix } => {
                    table.withdraw(&prefix);
                    changes += 1;
                }
                Event::PeerUp { .. }
                | Event::PeerDown { .. }
                | Event::Refused { .. }
                | Event::HeldBack { .. } => {}
            }
        }
    }
    changes
}

/// Plans and "applies" every pending route operation.
fn apply(table: &mut RouteTable) {
    for op in table.plan_nexthops() {
        table.applied(&op);
    }
    while let Some(ops) = table.plan_routes_chunk(8192) {
        for op in &ops {
            table.applied(op);
        }
    }
    for op in table.plan_deletes() {
        table.applied(&op);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![100_000, 1_000_000];
    }
    println!("| prefixes | speaker (B/prefix) | route table (B/prefix) | total (B/prefix) | peak | load CPU | withdraw CPU |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let feed = FeedTable::generate(n, 20_261_203);
        let wire = feed.announce_bytes(65010, Ipv4Addr::new(169, 254, 21, 2));
        let withdraw = feed.withdraw_bytes();
        let now = Instant::now();
        let base = live();
        PEAK.store(base, Ordering::Relaxed);
        let config = SpeakerConfig {
            local_as: 65515,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            local_prefixes: vec!["192.0.2.0/24".parse().unwrap()],
            announce: Vec::new(),
            act_as: None,
            peers: vec![
                {
                    let mut p =
                        PeerConfig::new("feed", IpAddr::V4(Ipv4Addr::new(169, 254, 21, 2)), 65010);
                    p.max_prefixes = 4_000_000;
                    p
                },
                PeerConfig::new("sink", IpAddr::V4(Ipv4Addr::new(169, 254, 22, 2)), 65020),
            ],
        };
        let mut s = Speaker::new(config).unwrap();
        let mut table = RouteTable::new(Mode::NexthopObjects, 0x7670_0000);
        table.set_tunnel(
            Tunnel {
                id: TunnelId("feed".into()),
                ifindex: 10,
                peer_v4: Some(Ipv4Addr::new(169, 254, 21, 2)),
                peer_v6: None,
            },
            true,
        );
        let tunnels: Arc<[TunnelId]> = vec![TunnelId("feed".into())].into();
        s.start(now);
        establish(&mut s, now, FEED, 65010, Ipv4Addr::new(10, 0, 0, 1));
        establish(&mut s, now, SINK, 65020, Ipv4Addr::new(10, 0, 0, 2));
        drain(&mut s, &mut table, &tunnels);
        apply(&mut table);

        let before = live();
        let t = Instant::now();
        let mut in_table = 0;
        for chunk in wire.chunks(64 * 1024) {
            s.handle(
                now,
                FEED,
                Input::Bytes {
                    connection: ConnectionId(1),
                    data: chunk,
                },
            );
            in_table += drain(&mut s, &mut table, &tunnels);
            if in_table >= 65_536 {
                apply(&mut table);
                in_table = 0;
            }
        }
        apply(&mut table);
        let load_cpu = t.elapsed();
        assert_eq!(s.loc_rib().len(), n, "every prefix in the Loc-RIB");
        assert_eq!(
            table.installed().routes().len(),
            n,
            "every prefix installed"
        );
        let loaded = live();
        let table_bytes = {
            // The route table alone: what dropping it gives back.
            let snapshot = live();
            let t2 = std::mem::replace(
                &mut table,
                RouteTable::new(Mode::NexthopObjects, 0x7670_0000),
            );
            drop(t2);
            let freed = snapshot - live();
            // Load it again so the withdrawal has something to remove.
            table = rebuild(&s, &tunnels);
            freed
        };
        let speaker_bytes = loaded - before - table_bytes;
        let peak = PEAK.load(Ordering::Relaxed) - base;

        let t = Instant::now();
        for chunk in withdraw.chunks(64 * 1024) {
            s.handle(
                now,
                FEED,
                Input::Bytes {
                    connection: ConnectionId(1),
                    data: chunk,
                },
            );
            drain(&mut s, &mut table, &tunnels);
        }
        apply(&mut table);
        let withdraw_cpu = t.elapsed();
        assert!(s.loc_rib().is_empty());
        let per = |b: usize| b as f64 / n as f64;
        println!(
            "| {n} | {:.0} | {:.0} | {:.0} | {:.1} MiB | {} | {} |",
            per(speaker_bytes),
            per(table_bytes),
            per(speaker_bytes + table_bytes),
            peak as f64 / (1 << 20) as f64,
            ms(load_cpu),
            ms(withdraw_cpu),
        );
    }
}

fn rebuild(s: &Speaker, tunnels: &Arc<[TunnelId]>) -> RouteTable {
    let mut table = RouteTable::new(Mode::NexthopObjects, 0x7670_0000);
    table.set_tunnel(
        Tunnel {
            id: TunnelId("feed".into()),
            ifindex: 10,
            peer_v4: Some(Ipv4Addr::new(169, 254, 21, 2)),
            peer_v6: None,
        },
        true,
    );
    for prefix in s.loc_rib().prefixes() {
        table.set_route_shared(prefix, tunnels);
    }
    apply(&mut table);
    table
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}
