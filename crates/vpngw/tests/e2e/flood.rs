//! IKE under attack: a flood of IKE_SA_INIT requests.
//!
//! ```text
//!  [gw-x attacker] 203.0.113.1-40, and 198.51.100.1 (spoofed) --.
//!                                                                [wan] -- 192.0.2.1 [gw-g vpngw] -- [host-g 10.1.0.2]
//!  [host-p1 10.2.0.2] -- [gw-p1 vpngw] 198.51.100.1 ------------'
//! ```
//!
//! The attacker sends IKE_SA_INIT requests as fast as it can, fresh SPIs
//! and key shares each, from 40 addresses no connection names and from the
//! configured peer's own address (the router sends the answers to the real
//! peer, so the attacker never sees them). Requests from unknown addresses
//! are dropped before any state is made. Those spoofing the real peer are
//! answered, but only configured peers make state, so the half-open table
//! stays far below the threshold past which every request would get a
//! stateless COOKIE challenge (RFC 7296 §2.6; that path is tested in the
//! endpoint's unit tests). Memory stays bounded, and the real peer still
//! connects during the flood.

use super::*;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use vpngw_netns_tests::fabric::Fabric;
use vpngw_netns_tests::traffic::in_netns;
use vpngw_tunnel::driver::SystemRandom;
use vpngw_tunnel::ike::proposal::{parse_esp, parse_ike};
use vpngw_tunnel::ike::sa::{IkeSa, Output, SaConfig};
use vpngw_tunnel::ike::wire::Identification;

/// `count` distinct IKE_SA_INIT requests from `from` to `to`.
fn requests(count: usize, from: Ipv4Addr, to: SocketAddr) -> Vec<Vec<u8>> {
    let mut rng = SystemRandom::new();
    let now = Instant::now();
    (0..count)
        .filter_map(|_| {
            let cfg = SaConfig {
                local_id: Identification::ipv4(from),
                remote_id: Identification::ipv4(Ipv4Addr::new(192, 0, 2, 1)),
                psk: zeroize::Zeroizing::new(b"not the key".to_vec()),
                ike_proposals: vec![parse_ike("aes256gcm16-prfsha256-x25519").unwrap()],
                esp_proposals: vec![parse_esp("aes256gcm16").unwrap()],
                dpd_interval: Duration::from_secs(10),
                dpd_timeout: Duration::from_secs(45),
                retransmit_timeout: Duration::from_secs(2),
                retransmit_tries: 1,
                force_encap: true,
                ike_lifetime: Duration::from_secs(3600),
                child_lifetime: Duration::from_secs(3600),
                child_lifetime_bytes: 1 << 40,
                child_lifetime_packets: 0,
            };
            let mut sa = IkeSa::initiate(cfg, SocketAddr::new(from.into(), 500), to, now, &mut rng);
            sa.handle_timeout(now, &mut rng);
            std::iter::from_fn(|| sa.poll_output()).find_map(|o| match o {
                Output::Transmit(t) => Some(t.data),
                Output::NatKeepalive { .. } | Output::Event(_) => None,
            })
        })
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// IKE_SA_INIT requests per second the flood sends.
const FLOOD_RATE: f64 = 50_000.0;

#[test]
fn an_ike_flood_keeps_memory_bounded_and_the_real_peer_still_connects() {
    let scenario = "IKE flood";
    let mut f = Fabric::new();
    f.add_site("g", 1, &["192.0.2.1"]);
    f.add_site("p1", 2, &["198.51.100.1"]);
    let junk: Vec<String> = (1..=40).map(|i| format!("203.0.113.{i}")).collect();
    let junk_refs: Vec<&str> = junk.iter().map(String::as_str).collect();
    f.add_site("x", 3, &junk_refs);
    // The attacker also claims the real peer's address (the router keeps
    // routing it to the real peer).
    f.site("x").gw.ip("addr add 198.51.100.1/32 dev wan0");
    let tunnel = |name, local, remote, addr, peer_addr, prefix, initiate| Tunnel {
        name,
        local,
        remote,
        addr,
        peer_addr,
        routing: Routing::Static(vec![prefix]),
        initiate,
    };
    let g = Daemon::start(
        &f,
        "g",
        &Gw {
            asn: 65515,
            prefixes: vec!["10.1.0.0/24"],
            announce: vec![],
            conn_extra: "",
            tunnels: vec![tunnel(
                "p1",
                "192.0.2.1",
                "198.51.100.1",
                "169.254.21.1",
                "169.254.21.2",
                "10.2.0.0/24",
                false,
            )],
        },
    );
    let rss_before = rss_kib(g.proc.pid());

    // The flood: precomputed requests, sent round-robin from every source.
    let target = SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), 500);
    let mut sources: Vec<Ipv4Addr> = junk.iter().map(|a| a.parse().unwrap()).collect();
    sources.push(Ipv4Addr::new(198, 51, 100, 1));
    let batches: Vec<(UdpSocket, Vec<Vec<u8>>)> = sources
        .iter()
        .map(|src| {
            let src = *src;
            let socket = in_netns(&f.site("x").gw, move || {
                UdpSocket::bind(SocketAddr::new(src.into(), 0)).unwrap()
            });
            (socket, requests(50, src, target))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || {
            let mut i = 0usize;
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                for (socket, msgs) in &batches {
                    if socket.send_to(&msgs[i % msgs.len()], target).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
                // Paced at FLOOD_RATE: beyond what one IKE thread on this
                // 2-core machine can read, every datagram — the real
                // peer's too — is a coin toss in a full socket buffer.
                let due = start.elapsed().as_secs_f64() * FLOOD_RATE;
                if sent.load(Ordering::Relaxed) as f64 > due {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let flood_start = Instant::now();
    std::thread::sleep(Duration::from_secs(2));

    // The real peer connects in the middle of it.
    let p1 = Daemon::start(
        &f,
        "p1",
        &Gw {
            asn: 65010,
            prefixes: vec!["10.2.0.0/24"],
            announce: vec![],
            conn_extra: "",
            tunnels: vec![tunnel(
                "g",
                "198.51.100.1",
                "192.0.2.1",
                "169.254.21.2",
                "169.254.21.1",
                "10.1.0.0/24",
                true,
            )],
        },
    );
    let took = g.wait_route("10.2.0.0/24", &["p1"]);
    p1.wait_route("10.1.0.0/24", &["g"]);
    let mut rss_peak = rss_kib(g.proc.pid());
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        rss_peak = rss_peak.max(rss_kib(g.proc.pid()));
    }
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    let secs = flood_start.elapsed().as_secs_f64();
    let total = sent.load(Ordering::Relaxed);
    f.wait_ping("g", "10.2.0.2", SETUP);

    let sas = g.json(&["sas"]);
    let ike = &sas["ike"];
    let cookies = ike["cookie_challenges"].as_u64().unwrap();
    let unknown = ike["unknown_peer"].as_u64().unwrap();
    report(
        scenario,
        &format!(
            "{total} IKE_SA_INIT in {secs:.1} s ({:.0}/s) from 41 addresses: {unknown} dropped as from unknown peers, {cookies} answered with a cookie; the real peer's tunnel up {:.1} s after it started; vpngw RSS {} KiB before, {} KiB at most during",
            total as f64 / secs,
            took.as_secs_f64(),
            rss_before,
            rss_peak
        ),
    );
    // Only configured peers' addresses make state: spoofing the real
    // peer's address reaches its 4 half-open SAs, past which that address
    // is asked for cookies (the spoofer cannot answer them; the real peer
    // does); everything else is dropped as from unknown peers.
    assert!(unknown > 0, "{ike}");
    assert!(ike["accepted"].as_u64().unwrap() > 0, "{ike}");
    assert!(
        rss_peak < rss_before + 64 * 1024,
        "memory bounded: {rss_before} -> {rss_peak} KiB"
    );
}
