//! Two drivers over real TCP on loopback addresses, peers added, changed and
//! removed while they run.
//!
//! ```text
//!   A (65001) 127.0.0.21 ──── 127.0.0.22 B (65002)
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::mpsc::UnboundedReceiver;
use vpngw_bgp::config::ConfigError;
use vpngw_bgp::driver::{Driver, DriverConfig};
use vpngw_bgp::session::{DownReason, StopReason};
use vpngw_bgp::wire::iana::CeaseSubcode;
use vpngw_bgp::wire::ErrorCode;
use vpngw_bgp::{Event, PeerConfig, PeerId, Speaker, SpeakerConfig, Timers};

const WAIT: Duration = Duration::from_secs(20);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A port free on both addresses (the drivers listen on each).
fn free_port(a: IpAddr, b: IpAddr) -> u16 {
    loop {
        let first = TcpListener::bind(SocketAddr::new(a, 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        if TcpListener::bind(SocketAddr::new(b, port)).is_ok() {
            return port;
        }
    }
}

fn speaker(asn: u32, id: u8, own: &str) -> Speaker {
    Speaker::new(SpeakerConfig {
        local_as: asn,
        router_id: Ipv4Addr::new(10, 0, 0, id),
        local_prefixes: vec![net(own)],
        announce: Vec::new(),
        act_as: None,
        peers: Vec::new(),
    })
    .unwrap()
}

fn peer(name: &str, address: IpAddr, local: IpAddr, asn: u32) -> PeerConfig {
    let mut p = PeerConfig::new(name, address, asn);
    p.local_address = Some(local);
    p.timers = Some(Timers {
        keepalive: 3,
        hold: 9,
    });
    p.connect_retry = Duration::from_secs(1);
    p.idle_hold = Duration::from_secs(1);
    p
}

/// Waits for an event matching `want`, returning it; panics with what was
/// seen after [`WAIT`].
async fn wait_for(
    events: &mut UnboundedReceiver<Event>,
    what: &str,
    want: impl Fn(&Event) -> bool,
) -> Event {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(e)) => seen.push(e),
            Ok(None) => panic!("{what}: the driver ended; saw {seen:#?}"),
            Err(_) => panic!("{what}: not seen; saw {seen:#?}"),
        }
    }
}

#[tokio::test]
async fn peers_added_and_removed_at_runtime() {
    let (a_addr, b_addr) = (ip("127.0.0.21"), ip("127.0.0.22"));
    let port = free_port(a_addr, b_addr);
    let config = DriverConfig {
        port,
        listen: Vec::new(),
        connect_timeout: Duration::from_secs(2),
        start_sessions: true,
        backpressure: None,
    };
    // Neither has a peer to begin with, so neither listens.
    let (a_driver, a, mut a_events) =
        Driver::new(speaker(65001, 1, "172.16.1.0/24"), config.clone());
    let (b_driver, b, mut b_events) = Driver::new(speaker(65002, 2, "192.168.2.0/24"), config);
    let a_task = tokio::spawn(a_driver.run());
    let b_task = tokio::spawn(b_driver.run());

    let to_b = a
        .add_peer(peer("b", b_addr, a_addr, 65002))
        .await
        .unwrap()
        .unwrap();
    let to_a = b
        .add_peer(peer("a", a_addr, b_addr, 65001))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((to_b, to_a), (PeerId(0), PeerId(0)));
    let duplicate = a.add_peer(peer("b2", b_addr, a_addr, 65009)).await.unwrap();
    assert!(matches!(duplicate, Err(ConfigError::DuplicatePeer { .. })));

    a.start_peer(to_b);
    b.start_peer(to_a);
    let up = |id: PeerId| move |e: &Event| matches!(e, Event::PeerUp { peer, .. } if *peer == id);
    wait_for(&mut a_events, "A: session up", up(to_b)).await;
    wait_for(&mut b_events, "B: session up", up(to_a)).await;
    let best = |p: &'static str| move |e: &Event| matches!(e, Event::BestPath { prefix, .. } if *prefix == net(p));
    let gone = |p: &'static str| move |e: &Event| *e == Event::Withdrawn { prefix: net(p) };
    wait_for(&mut b_events, "B: A's prefix", best("172.16.1.0/24")).await;

    // A's own prefixes change: B hears the new one, loses the old one.
    a.set_local_prefixes(vec![net("172.16.2.0/24")]);
    wait_for(
        &mut b_events,
        "B: A's old prefix gone",
        gone("172.16.1.0/24"),
    )
    .await;
    wait_for(&mut b_events, "B: A's new prefix", best("172.16.2.0/24")).await;

    // A announces a default route, then stops.
    a.set_announce(vec![net("0.0.0.0/0")]);
    wait_for(&mut b_events, "B: A's default route", best("0.0.0.0/0")).await;
    a.set_announce(Vec::new());
    wait_for(
        &mut b_events,
        "B: A's default route gone",
        gone("0.0.0.0/0"),
    )
    .await;
    let b_rib = b
        .inspect(|s| s.loc_rib().prefixes().collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(b_rib, vec![net("172.16.2.0/24")]);

    // A drops B from its configuration.
    a.remove_peer(to_b);
    let down = wait_for(
        &mut a_events,
        "A: session down",
        |e| matches!(e, Event::PeerDown { peer, .. } if *peer == to_b),
    )
    .await;
    assert!(
        matches!(
            &down,
            Event::PeerDown {
                reason: DownReason::Stopped(StopReason::Deconfigured),
                was_established: true,
                ..
            }
        ),
        "{down:?}"
    );
    let down = wait_for(
        &mut b_events,
        "B: session down",
        |e| matches!(e, Event::PeerDown { peer, .. } if *peer == to_a),
    )
    .await;
    assert!(
        matches!(
            &down,
            Event::PeerDown { reason: DownReason::NotificationReceived(n), .. }
                if n.code == ErrorCode::Cease
                    && n.subcode == u8::from(CeaseSubcode::PeerDeconfigured)
        ),
        "{down:?}"
    );
    wait_for(&mut b_events, "B: A's prefix gone", gone("172.16.2.0/24")).await;
    assert_eq!(a.inspect(|s| s.peer_ids().count()).await, Some(0));

    // Added again, B comes back under a new id.
    let again = a
        .add_peer(peer("b", b_addr, a_addr, 65002))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, PeerId(1));
    a.start_peer(again);
    wait_for(&mut a_events, "A: session up again", up(again)).await;
    wait_for(&mut b_events, "B: session up again", up(to_a)).await;

    a.shutdown();
    b.shutdown();
    a_task.await.unwrap().unwrap();
    b_task.await.unwrap().unwrap();
}
