//! Tunnels added to and removed from a running datapath, in a network
//! namespace (needs root): a tunnel added at runtime carries traffic both
//! ways; a removed one takes its TUN device and its inbound SAs with it
//! while the others keep working.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::NetNs;
use vpngw_tunnel::driver::datapath::{Datapath, SaCounters, TunnelSpec};
use vpngw_tunnel::driver::tun::Tun;
use vpngw_tunnel::esp::sa::{InboundSa, OutboundSa, SaKeys, NEXT_IPV4};
use vpngw_tunnel::ike::proposal::Encr;
use zeroize::Zeroizing;

fn keys(seed: u8) -> SaKeys {
    let encr = Encr::AesGcm16 { key_bits: 256 };
    SaKeys {
        encr,
        integ: None,
        encr_key: Zeroizing::new(
            (0..encr.keymat_len())
                .map(|i| seed.wrapping_add(i as u8))
                .collect(),
        ),
        integ_key: Zeroizing::new(Vec::new()),
    }
}

/// The tunnel of connection `conn` as the test's peer sees it: the SAs
/// mirroring the datapath's and the tunnel's addresses.
struct Peer {
    conn: usize,
    /// Seals what the peer sends (the datapath's inbound SA).
    seal: OutboundSa,
    /// Opens what the datapath sends (its outbound SA).
    open: InboundSa,
    local: Ipv4Addr,
    remote: Ipv4Addr,
}

/// Creates TUN `vgt<conn>-<gen>` with `10.0.<conn>.1 peer 10.0.<conn>.2`.
fn tunnel(conn: usize, generation: u8) -> (TunnelSpec, Ipv4Addr, Ipv4Addr) {
    let octet = u8::try_from(conn % 251).unwrap(); // 0, 5, 1000 → 0, 5, 247
    let local = Ipv4Addr::new(10, 0, octet, 1);
    let remote = Ipv4Addr::new(10, 0, octet, 2);
    let tun = Tun::create(&format!("vgt{conn}-{generation}")).unwrap();
    tun.set_mtu(1400).unwrap();
    tun.set_ptp_v4(local, remote).unwrap();
    tun.set_up(true).unwrap();
    (TunnelSpec { tun, mss_clamp: 0 }, local, remote)
}

/// Installs a fresh SA pair for `conn` in the datapath.
fn install(
    dp: &Datapath,
    conn: usize,
    generation: u8,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    peer_addr: SocketAddr,
) -> Peer {
    let base = 0x1000_0000 + (conn as u32) * 0x100 + u32::from(generation) * 2;
    let (spi_in, spi_out) = (base, base + 1);
    let seed = (conn as u8).wrapping_mul(16).wrapping_add(generation * 2);
    let (k_in, k_out) = (keys(seed), keys(seed + 1));
    dp.install(
        conn,
        InboundSa::new(spi_in, false, &k_in).unwrap(),
        OutboundSa::new(spi_out, false, &k_out).unwrap(),
        peer_addr,
        &Arc::new(SaCounters::default()),
    );
    Peer {
        conn,
        seal: OutboundSa::new(spi_in, false, &k_in).unwrap(),
        open: InboundSa::new(spi_out, false, &k_out).unwrap(),
        local,
        remote,
    }
}

/// An IPv4/UDP packet (UDP checksum 0: none).
fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let mut sum = 0u32;
    for w in p[..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

struct Lab {
    ns: NetNs,
    dp: Datapath,
    dp_addr: SocketAddr,
    /// The far end of the ESP: receives what the datapath sends.
    peer: UdpSocket,
}

impl Lab {
    /// Traffic from the gateway into `p`'s tunnel comes out of the datapath
    /// as ESP under `p`'s outbound SA.
    fn outbound_works(&self, p: &mut Peer) -> bool {
        let app = UdpSocket::bind((p.local, 0)).unwrap();
        let marker = format!("to {} via conn {}", p.remote, p.conn);
        let mut buf = [0u8; 2048];
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            app.send_to(marker.as_bytes(), (p.remote, 9999)).unwrap();
            let got_until = Instant::now() + Duration::from_millis(100);
            while Instant::now() < got_until {
                let Ok((n, _)) = self.peer.recv_from(&mut buf) else {
                    break;
                };
                let packet = &mut buf[..n];
                if packet[..4] != p.open.spi().to_be_bytes() {
                    continue; // another tunnel's, or a stale SA's
                }
                let Ok(opened) = p.open.open(packet) else {
                    continue;
                };
                let inner = &packet[opened.inner];
                if inner.ends_with(marker.as_bytes()) && inner[16..20] == p.remote.octets() {
                    return true;
                }
            }
        }
        false
    }

    /// ESP from the peer under `p`'s inbound SA reaches an application on
    /// the gateway through `p`'s TUN device.
    fn inbound_works(&self, p: &mut Peer) -> bool {
        let app = UdpSocket::bind((p.local, 0)).unwrap();
        app.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = app.local_addr().unwrap().port();
        let marker = format!("from {} via conn {}", p.remote, p.conn);
        let inner = udp_packet(p.remote, p.local, port, marker.as_bytes());
        let mut esp = vec![0u8; 2048];
        let mut buf = [0u8; 2048];
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            let n = p.seal.seal(&inner, NEXT_IPV4, &mut esp).unwrap();
            self.peer.send_to(&esp[..n], self.dp_addr).unwrap();
            if let Ok(n) = app.recv(&mut buf) {
                if buf[..n] == *marker.as_bytes() {
                    return true;
                }
            }
        }
        false
    }

    fn works(&self, p: &mut Peer) -> bool {
        self.outbound_works(p) && self.inbound_works(p)
    }

    /// ESP under `p`'s (removed) inbound SA counts as an unknown SPI.
    fn unknown_spi(&self, p: &mut Peer) -> bool {
        let inner = udp_packet(p.remote, p.local, 9, b"anyone?");
        let mut esp = vec![0u8; 2048];
        let before = self.dp.global_counters().0;
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            let n = p.seal.seal(&inner, NEXT_IPV4, &mut esp).unwrap();
            self.peer.send_to(&esp[..n], self.dp_addr).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            if self.dp.global_counters().0 > before {
                return true;
            }
        }
        false
    }
}

#[test]
fn tunnels_are_added_and_removed_while_running() {
    let ns = NetNs::enter("dp-add");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dp_addr = socket.local_addr().unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let (ike_tx, _ike_rx) = tokio::sync::mpsc::channel(16);
    let (spec0, l0, r0) = tunnel(0, 0);
    let dp = Datapath::start(socket, ike_tx, vec![spec0]).unwrap();
    let mut lab = Lab {
        ns,
        dp,
        dp_addr,
        peer,
    };
    assert_eq!(lab.dp.tunnels(), vec![0]);
    let mut p0 = install(&lab.dp, 0, 0, l0, r0, peer_addr);
    assert!(lab.works(&mut p0), "the tunnel given at start works");

    // A tunnel added at runtime, at a sparse index.
    let (spec5, l5, r5) = tunnel(5, 0);
    lab.dp.add_tunnel(5, spec5).unwrap();
    assert!(lab.ns.has_link("vgt5-0"));
    assert_eq!(lab.dp.tun(5).map(Tun::name), Some("vgt5-0"));
    assert_eq!(lab.dp.tunnels(), vec![0, 5]);
    assert!(lab.dp.tun(3).is_none() && lab.dp.counters(3).is_none());
    let mut p5 = install(&lab.dp, 5, 0, l5, r5, peer_addr);
    assert!(lab.works(&mut p5), "a tunnel added at runtime works");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut c5 = lab.dp.counters(5).unwrap();
    // Counted after the write and after the send: the peer may see the
    // packets first.
    while (c5.rx_packets == 0 || c5.tx_packets == 0) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        c5 = lab.dp.counters(5).unwrap();
    }
    assert!(c5.rx_packets >= 1 && c5.tx_packets >= 1, "{c5:?}");

    // An index in use is refused (and the refused device goes away).
    let (dup, _, _) = tunnel(5, 1);
    let err = lab.dp.add_tunnel(5, dup).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert!(!lab.ns.has_link("vgt5-1"));
    assert_eq!(lab.dp.tun(5).map(Tun::name), Some("vgt5-0"));

    // Removal: the device is gone when remove_tunnel returns, and so are
    // its inbound SAs; the other tunnel carries on.
    let c0 = lab.dp.counters(0).unwrap();
    lab.dp.remove_tunnel(5);
    assert!(!lab.ns.has_link("vgt5-0"), "the TUN device is gone");
    assert!(lab.dp.tun(5).is_none() && lab.dp.counters(5).is_none());
    assert_eq!(lab.dp.tunnels(), vec![0]);
    assert!(lab.unknown_spi(&mut p5), "its inbound SA is gone");
    assert!(lab.works(&mut p0), "the other tunnel still works");
    // The receive thread counts a packet after writing it to the TUN
    // device: the application may see it first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut c0_after = lab.dp.counters(0).unwrap();
    while c0_after.rx_packets <= c0.rx_packets && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        c0_after = lab.dp.counters(0).unwrap();
    }
    assert!(c0_after.rx_packets > c0.rx_packets, "{c0_after:?}");
    lab.dp.remove_tunnel(5); // again: nothing
                             // SA commands for a connection without a tunnel are ignored.
    let mut stale = install(&lab.dp, 5, 2, l5, r5, peer_addr);
    assert!(lab.unknown_spi(&mut stale));

    // The index can take a new tunnel, as can any other.
    let (again, l5, r5) = tunnel(5, 3);
    lab.dp.add_tunnel(5, again).unwrap();
    let mut p5 = install(&lab.dp, 5, 3, l5, r5, peer_addr);
    assert!(lab.works(&mut p5), "a re-added tunnel works");
    let (far, l1000, r1000) = tunnel(1000, 0);
    lab.dp.add_tunnel(1000, far).unwrap();
    let mut p1000 = install(&lab.dp, 1000, 0, l1000, r1000, peer_addr);
    assert!(lab.works(&mut p1000));
    assert!(lab.works(&mut p0));
    assert_eq!(lab.dp.tunnels(), vec![0, 5, 1000]);

    // Stopping takes every device with it.
    let Lab { ns, dp, .. } = lab;
    dp.stop();
    for name in ["vgt0-0", "vgt5-3", "vgt1000-0"] {
        assert!(!ns.has_link(name), "{name} outlived the datapath");
    }
}
