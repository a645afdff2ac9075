//! The driver over loopback, without root: a hand-played peer on a plain
//! UDP socket (handshake, GTSM, detection), and two drivers talking IPv6
//! to each other. Each test uses its own ports (the two drivers of a
//! namespace cannot share 3784).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;
use vpngw_bfd::driver::{Counters, SOURCE_PORTS};
use vpngw_bfd::{
    Bfd, ControlPacket, Diagnostic, DriverConfig, Event, Handle, SessionConfig, SessionId, State,
};

/// Ports for this test process: `n` selects one of a few per process.
fn port(n: u16) -> u16 {
    20_000 + (std::process::id() % 6_000) as u16 * 4 + n
}

fn fast(discr: u32) -> SessionConfig {
    SessionConfig {
        local_discr: discr,
        desired_min_tx: Duration::from_millis(100),
        required_min_rx: Duration::from_millis(100),
        detect_mult: 3,
    }
}

async fn next_event(
    events: &mut UnboundedReceiver<(SessionId, Event)>,
    within: Duration,
) -> (SessionId, Event) {
    tokio::time::timeout(within, events.recv())
        .await
        .expect("an event in time")
        .expect("driver running")
}

async fn counters(handle: &Handle) -> Counters {
    handle.counters().await.expect("driver running")
}

/// The test's side of the session: a plain socket on 127.0.0.2.
struct FakePeer {
    socket: UdpSocket,
    driver: SocketAddr,
}

impl FakePeer {
    fn recv(&self) -> (ControlPacket, SocketAddr) {
        let mut buf = [0u8; 64];
        let (n, from) = self
            .socket
            .recv_from(&mut buf)
            .expect("a packet from the driver");
        (ControlPacket::decode(&buf[..n]).unwrap(), from)
    }

    /// Receives until a packet matching `f` arrives.
    fn recv_until(&self, f: impl Fn(&ControlPacket) -> bool) -> ControlPacket {
        loop {
            let (p, _) = self.recv();
            if f(&p) {
                return p;
            }
        }
    }

    fn send(&self, p: &ControlPacket) {
        self.socket.send_to(&p.encode(), self.driver).unwrap();
    }
}

fn packet(state: State, your_discr: u32) -> ControlPacket {
    ControlPacket {
        diag: Diagnostic::None,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discr: 0x5eed,
        your_discr,
        desired_min_tx_us: 100_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_against_a_hand_played_peer() {
    let (listen, peer_port) = (port(0), port(1));
    let (handle, mut events) = Bfd::spawn(DriverConfig {
        listen_port: listen,
        peer_port,
        ..DriverConfig::default()
    })
    .unwrap();
    let socket = UdpSocket::bind(("127.0.0.2", peer_port)).unwrap();
    socket.set_ttl(255).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let peer = FakePeer {
        socket,
        driver: SocketAddr::new("127.0.0.1".parse().unwrap(), listen),
    };

    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let id = handle
        .add_session(local, "127.0.0.2".parse().unwrap(), fast(0))
        .await
        .unwrap();
    assert!(matches!(
        handle
            .add_session(local, "127.0.0.2".parse().unwrap(), fast(0))
            .await,
        Err(vpngw_bfd::driver::AddSessionError::Duplicate { .. })
    ));
    let status = handle.status(id).await.unwrap();
    assert_ne!(status.local_discr, 0, "the driver picked a discriminator");

    // The session sends at once, Down, at the slow rate, from a port in
    // the single-hop range.
    let peer_clone = FakePeer {
        socket: peer.socket.try_clone().unwrap(),
        driver: peer.driver,
    };
    let (first, from) = tokio::task::spawn_blocking(move || peer_clone.recv())
        .await
        .unwrap();
    assert_eq!(first.state, State::Down);
    assert_eq!(first.your_discr, 0);
    assert_eq!(first.my_discr, status.local_discr);
    assert_eq!(first.desired_min_tx_us, 1_000_000);
    assert_eq!(from.ip(), local);
    assert_eq!(from.port(), status.source_port);
    assert!(SOURCE_PORTS.contains(&from.port()));

    // A packet that did not arrive with TTL 255 is ignored (GTSM).
    let ttl64 = UdpSocket::bind(("127.0.0.2", 0)).unwrap();
    ttl64.set_ttl(64).unwrap();
    ttl64
        .send_to(&packet(State::Down, 0).encode(), peer.driver)
        .unwrap();
    // Neither is one from an address with no session.
    let stranger = UdpSocket::bind(("127.0.0.3", 0)).unwrap();
    stranger.set_ttl(255).unwrap();
    stranger
        .send_to(&packet(State::Down, 0).encode(), peer.driver)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = counters(&handle).await;
    assert_eq!(c.bad_ttl, 1, "{c:?}");
    assert_eq!(c.no_session, 1, "{c:?}");
    assert_eq!(handle.status(id).await.unwrap().state, State::Down);

    // Handshake: we say Down, it says Init, we say Up, it is Up and polls
    // for its fast rate; we answer Final.
    let peer = tokio::task::spawn_blocking(move || {
        peer.send(&packet(State::Down, 0));
        let init = peer.recv_until(|p| p.state == State::Init);
        assert_eq!(init.your_discr, 0x5eed);
        peer.send(&packet(State::Up, init.my_discr));
        let poll = peer.recv_until(|p| p.state == State::Up && p.poll);
        assert_eq!(poll.desired_min_tx_us, 100_000);
        let mut fin = packet(State::Up, poll.my_discr);
        fin.final_ = true;
        peer.send(&fin);
        (peer, poll.my_discr)
    })
    .await
    .unwrap();
    let (peer, discr) = peer;
    assert_eq!(
        next_event(&mut events, Duration::from_secs(3)).await,
        (id, Event::Up)
    );

    // Keep it up for a second at 100 ms; then fall silent.
    let (peer, last_sent) = tokio::task::spawn_blocking(move || {
        let mut last = Instant::now();
        for _ in 0..10 {
            peer.send(&packet(State::Up, discr));
            last = Instant::now();
            std::thread::sleep(Duration::from_millis(100));
        }
        (peer, last)
    })
    .await
    .unwrap();
    let status = handle.status(id).await.unwrap();
    assert_eq!(status.state, State::Up);
    assert_eq!(status.transmit_interval, Duration::from_millis(100));
    assert_eq!(status.detection_time, Some(Duration::from_millis(300)));
    let (_, event) = next_event(&mut events, Duration::from_secs(2)).await;
    let detected = last_sent.elapsed();
    assert_eq!(event, Event::Down(Diagnostic::ControlDetectionTimeExpired));
    println!("silent peer detected {detected:?} after its last packet (detection time 300 ms)");
    assert!(detected >= Duration::from_millis(290) && detected < Duration::from_secs(2));

    // Removing the session tells the peer AdminDown.
    handle.remove_session(id);
    let admin =
        tokio::task::spawn_blocking(move || peer.recv_until(|p| p.state == State::AdminDown))
            .await
            .unwrap();
    assert_eq!(admin.diag, Diagnostic::AdministrativelyDown);
    assert!(handle.status(id).await.is_none());
    handle.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drivers_over_ipv6_loopback() {
    let (pa, pb) = (port(2), port(3));
    let (a, mut a_events) = Bfd::spawn(DriverConfig {
        listen_port: pa,
        peer_port: pb,
        ..DriverConfig::default()
    })
    .unwrap();
    let (b, mut b_events) = Bfd::spawn(DriverConfig {
        listen_port: pb,
        peer_port: pa,
        ..DriverConfig::default()
    })
    .unwrap();
    let lo: IpAddr = "::1".parse().unwrap();
    let started = Instant::now();
    let a_id = a.add_session(lo, lo, fast(0)).await.unwrap();
    let b_id = b.add_session(lo, lo, fast(0)).await.unwrap();
    assert_eq!(
        next_event(&mut a_events, Duration::from_secs(5)).await,
        (a_id, Event::Up)
    );
    assert_eq!(
        next_event(&mut b_events, Duration::from_secs(5)).await,
        (b_id, Event::Up)
    );
    let up = started.elapsed();
    println!("both up after {up:?}");
    // Triggered packets: no waiting for the 1 s slow-rate ticks.
    assert!(up < Duration::from_millis(500), "up only after {up:?}");

    // After the Poll Sequence both run at 100 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (h, id) in [(&a, a_id), (&b, b_id)] {
        let s = h.status(id).await.unwrap();
        assert_eq!(s.state, State::Up);
        assert_eq!(s.transmit_interval, Duration::from_millis(100));
        assert_eq!(s.detection_time, Some(Duration::from_millis(300)));
    }
    let before = counters(&a).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = counters(&a).await;
    let rate = after.sent - before.sent;
    assert!((8..=16).contains(&rate), "A sent {rate} packets in 1 s");

    // AdminDown on B: A goes down at once, told so.
    b.admin_down(b_id);
    let t = Instant::now();
    assert_eq!(
        next_event(&mut a_events, Duration::from_secs(1)).await,
        (a_id, Event::Down(Diagnostic::NeighborSignaledSessionDown))
    );
    println!("AdminDown noticed after {:?}", t.elapsed());
    assert_eq!(
        next_event(&mut b_events, Duration::from_secs(1)).await,
        (b_id, Event::Down(Diagnostic::AdministrativelyDown))
    );
    b.admin_up(b_id);
    assert_eq!(
        next_event(&mut a_events, Duration::from_secs(5)).await,
        (a_id, Event::Up)
    );
    assert_eq!(
        next_event(&mut b_events, Duration::from_secs(5)).await,
        (b_id, Event::Up)
    );

    // B's driver stops: it says AdminDown on the way out.
    b.shutdown();
    assert_eq!(
        next_event(&mut a_events, Duration::from_secs(1)).await,
        (a_id, Event::Down(Diagnostic::NeighborSignaledSessionDown))
    );
    a.shutdown();
}
