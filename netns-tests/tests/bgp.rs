//! vpngw-bgp against BIRD 2 over veth links. Our speaker runs in this
//! process: a thread enters the gateway namespace (setns) before it creates
//! its tokio runtime and sockets, then runs the real driver. Each test
//! builds its own namespaces; the topology is drawn above each.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use vpngw_bgp::driver::{Driver, DriverConfig, Handle};
use vpngw_bgp::policy::ImportRefusal;
use vpngw_bgp::session::State;
use vpngw_bgp::wire::{
    AsPath, AttributeValue, DecodeContext, Message, Open, Origin, PathAttribute, Update,
};
use vpngw_bgp::{Event, PeerConfig, PeerId, Speaker, SpeakerConfig, Timers};
use vpngw_netns_tests::bird_peer::{BirdPeer, BirdPeerConfig, BirdSession};
use vpngw_netns_tests::netns::unique_id;
use vpngw_netns_tests::{veth, wait_until, Netns, WorkDir};

const WAIT: Duration = Duration::from_secs(30);
const OUR_AS: u32 = 65000;
const OWN_PREFIX: &str = "10.1.0.0/16";

/// Runs `f` on a new thread inside namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open the namespace");
        // SAFETY: setns on a descriptor we hold open; it only changes this
        // thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// Our speaker, running with its driver inside a namespace.
struct Ours {
    handle: Handle,
    events: mpsc::Receiver<Event>,
    seen: Vec<Event>,
    thread: Option<JoinHandle<()>>,
}

impl Ours {
    fn start(ns: &Netns, config: SpeakerConfig) -> Ours {
        let (handle_tx, handle_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let thread = in_netns(ns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let speaker = Speaker::new(config).unwrap();
                let (driver, handle, mut rx) = Driver::new(speaker, DriverConfig::default());
                handle_tx.send(handle).unwrap();
                tokio::spawn(async move {
                    while let Some(e) = rx.recv().await {
                        let _ = event_tx.send(e);
                    }
                });
                driver.run().await.unwrap();
            });
        });
        Ours {
            handle: handle_rx.recv().unwrap(),
            events,
            seen: Vec::new(),
            thread: Some(thread),
        }
    }

    fn inspect<R: Send + 'static>(&self, f: impl FnOnce(&Speaker) -> R + Send + 'static) -> R {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(self.handle.inspect(f)).expect("driver running")
    }

    /// Every event so far.
    fn events(&mut self) -> &[Event] {
        self.seen.extend(self.events.try_iter());
        &self.seen
    }

    fn state(&self, peer: usize) -> State {
        self.inspect(move |s| s.peer(PeerId(peer)).unwrap().state)
    }

    fn in_state(&self, want: State) -> Result<(), String> {
        let state = self.state(0);
        if state == want {
            Ok(())
        } else {
            Err(state.to_string())
        }
    }

    fn loc_rib_has(&self, prefix: &str) -> Result<String, String> {
        let p: ipnet::IpNet = prefix.parse().unwrap();
        self.inspect(move |s| {
            let text = format!("{:#?}", s.loc_rib().prefixes().collect::<Vec<_>>());
            s.loc_rib()
                .get(&p)
                .map(|e| {
                    format!(
                        "{} via {}",
                        e.best.attrs.as_path_text(),
                        e.best.attrs.next_hop
                    )
                })
                .ok_or(text)
        })
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn our_peer(name: &str, address: &str, local: &str, asn: u32) -> PeerConfig {
    let mut p = PeerConfig::new(name, ip(address), asn);
    p.local_address = Some(ip(local));
    p.timers = Some(Timers {
        keepalive: 3,
        hold: 9,
    });
    p.connect_retry = Duration::from_secs(2);
    p.idle_hold = Duration::from_secs(1);
    p
}

fn our_config(peers: Vec<PeerConfig>) -> SpeakerConfig {
    SpeakerConfig {
        local_as: OUR_AS,
        router_id: Ipv4Addr::new(10, 255, 0, 1),
        local_prefixes: vec![OWN_PREFIX.parse().unwrap(), "10.2.0.0/24".parse().unwrap()],
        announce: Vec::new(),
        act_as: None,
        peers,
    }
}

/// ```text
///   [gw] g1 169.254.21.2/30 ──veth── 169.254.21.1/30 b1 [bird AS 65001]
///   AS 65000, own 10.1.0.0/16, 10.2.0.0/24     originates 172.16.1.0/24, 172.16.2.0/24
/// ```
struct OneBird {
    _dir: WorkDir,
    gw: Netns,
    bird_ns: Netns,
    bird: BirdPeer,
}

fn one_bird(tag: &str, bird_passive: bool, originate: &[&str]) -> OneBird {
    let id = unique_id();
    let dir = WorkDir::new(&id);
    let gw = Netns::new(&id, &format!("{tag}-gw"));
    let bird_ns = Netns::new(&id, &format!("{tag}-b1"));
    veth(&gw, "g1", &bird_ns, "b1");
    gw.ip("addr add 169.254.21.2/30 dev g1");
    bird_ns.ip("addr add 169.254.21.1/30 dev b1");
    let mut session = BirdSession::new("vpngw", "169.254.21.1", "169.254.21.2", OUR_AS);
    session.passive = bird_passive;
    let bird = BirdPeer::start(
        &bird_ns,
        &dir,
        "b1",
        &BirdPeerConfig {
            router_id: "10.255.0.11".into(),
            local_as: 65001,
            sessions: vec![session],
            originate: originate.iter().map(ToString::to_string).collect(),
            transit: false,
        },
    );
    OneBird {
        _dir: dir,
        gw,
        bird_ns,
        bird,
    }
}

fn exchange_routes(tag: &str, we_are_passive: bool) {
    let lab = one_bird(tag, !we_are_passive, &["172.16.1.0/24", "172.16.2.0/24"]);
    let mut peer = our_peer("b1", "169.254.21.1", "169.254.21.2", 65001);
    peer.passive = we_are_passive;
    let ours = Ours::start(&lab.gw, our_config(vec![peer]));
    wait_until("BIRD's session to us", WAIT, || {
        lab.bird.established("vpngw")
    });
    // BIRD's routes reach our Loc-RIB.
    for p in ["172.16.1.0/24", "172.16.2.0/24"] {
        let got = wait_until(&format!("{p} in our Loc-RIB"), WAIT, || ours.loc_rib_has(p));
        assert_eq!(got, "65001 via 169.254.21.1");
    }
    // Ours appear in BIRD with our AS path and our address as next hop.
    for p in [OWN_PREFIX, "10.2.0.0/24"] {
        let route = wait_until(&format!("{p} in BIRD"), WAIT, || lab.bird.route(p));
        assert!(route.contains("BGP.as_path: 65000\n"), "{route}");
        assert!(route.contains("BGP.next_hop: 169.254.21.2"), "{route}");
    }
    println!("{}", lab.bird.birdc("show route all protocol vpngw"));
    assert_eq!(ours.state(0), State::Established);
    let _ = &lab.bird_ns;
}

#[test]
fn bird_routes_both_ways_our_side_active() {
    exchange_routes("act", false);
}

#[test]
fn bird_routes_both_ways_our_side_passive() {
    exchange_routes("pas", true);
}

/// ```text
///   [gw] g1 .21.2 ──veth── .21.1 b1 [bird AS 65001]
///   max prefixes 5                  originates 8 prefixes
/// ```
#[test]
fn bird_over_max_prefix_gets_cease_maximum_prefixes() {
    let prefixes: Vec<String> = (1..=8).map(|i| format!("172.16.{i}.0/24")).collect();
    let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let lab = one_bird("max", true, &refs);
    let mut peer = our_peer("b1", "169.254.21.1", "169.254.21.2", 65001);
    peer.max_prefixes = 5;
    peer.max_prefix_restart = Duration::from_secs(3);
    let mut ours = Ours::start(&lab.gw, our_config(vec![peer]));
    let protocols = wait_until("BIRD to receive our Cease", WAIT, || {
        let out = lab.bird.birdc("show protocols all vpngw");
        if out.contains("Received: Maximum number of prefixes reached") {
            Ok(out)
        } else {
            Err(format!("{out}\n{}", lab.bird.log()))
        }
    });
    println!("{protocols}");
    wait_until("our PeerDown for max prefixes", WAIT, || {
        let found = ours.events().iter().any(|e| {
            matches!(e, Event::PeerDown { reason, .. }
                if reason.to_string().contains("more than 5 prefixes"))
        });
        found
            .then_some(())
            .ok_or_else(|| format!("{:?}", ours.seen))
    });
    assert!(ours.loc_rib_has("172.16.1.0/24").is_err());
    // After the interval we try again (and close again): a second Cease.
    wait_until("a second Cease after the retry interval", WAIT, || {
        let log = lab.bird.log();
        let n = log
            .matches("Received: Maximum number of prefixes reached")
            .count();
        if n >= 2 {
            Ok(())
        } else {
            Err(log)
        }
    });
}

/// ```text
///   [gw] g1 .21.2 ──veth── .21.1 b1 [bird AS 65001]
///   own 10.1.0.0/16                 originates 10.1.0.0/16 (ours!) and 10.0.0.0/8
/// ```
#[test]
fn prefix_identical_to_ours_is_refused_with_its_reason() {
    let lab = one_bird("own", true, &[OWN_PREFIX, "10.0.0.0/8"]);
    let peer = our_peer("b1", "169.254.21.1", "169.254.21.2", 65001);
    let mut ours = Ours::start(&lab.gw, our_config(vec![peer]));
    wait_until("the larger prefix accepted", WAIT, || {
        ours.loc_rib_has("10.0.0.0/8")
    });
    let own: ipnet::IpNet = OWN_PREFIX.parse().unwrap();
    let reason = wait_until("the identical one refused", WAIT, || {
        ours.inspect(move |s| {
            s.peer(PeerId(0))
                .unwrap()
                .adj_rib_in
                .refused()
                .get(&own)
                .map(|r| r.reason.clone())
                .ok_or_else(|| "not refused yet".to_string())
        })
    });
    assert_eq!(reason, ImportRefusal::OwnPrefix);
    assert!(ours.loc_rib_has(OWN_PREFIX).is_err());
    let events = ours.events();
    let said = events.iter().find_map(|e| match e {
        Event::Refused { routes, .. } => routes
            .iter()
            .find(|(p, _)| *p == own)
            .map(|(_, r)| r.to_string()),
        Event::PeerUp { .. }
        | Event::PeerDown { .. }
        | Event::BestPath { .. }
        | Event::Withdrawn { .. }
        | Event::HeldBack { .. } => None,
    });
    assert_eq!(
        said.as_deref(),
        Some("identical to one of the gateway's own prefixes")
    );
}

/// ```text
///   [b1 bird AS 65001] .21.1 ──veth── .21.2 g1 [gw AS 65000] g2 .22.2 ──veth── .22.1 [b2 bird AS 65002]
///   originates 172.16.1.0/24                                         originates 192.168.2.0/24
/// ```
#[test]
fn transit_between_two_bird_peers() {
    let id = unique_id();
    let dir = WorkDir::new(&id);
    let gw = Netns::new(&id, "tr-gw");
    let b1_ns = Netns::new(&id, "tr-b1");
    let b2_ns = Netns::new(&id, "tr-b2");
    veth(&gw, "g1", &b1_ns, "b1");
    veth(&gw, "g2", &b2_ns, "b2");
    gw.ip("addr add 169.254.21.2/30 dev g1");
    gw.ip("addr add 169.254.22.2/30 dev g2");
    b1_ns.ip("addr add 169.254.21.1/30 dev b1");
    b2_ns.ip("addr add 169.254.22.1/30 dev b2");
    let bird = |ns: &Netns, name: &str, n: u8, asn: u32, originate: &str| {
        BirdPeer::start(
            ns,
            &dir,
            name,
            &BirdPeerConfig {
                router_id: format!("10.255.0.1{n}"),
                local_as: asn,
                sessions: vec![BirdSession::new(
                    "vpngw",
                    &format!("169.254.2{n}.1"),
                    &format!("169.254.2{n}.2"),
                    OUR_AS,
                )],
                originate: vec![originate.to_string()],
                transit: false,
            },
        )
    };
    let b1 = bird(&b1_ns, "b1", 1, 65001, "172.16.1.0/24");
    let b2 = bird(&b2_ns, "b2", 2, 65002, "192.168.2.0/24");
    let ours = Ours::start(
        &gw,
        our_config(vec![
            our_peer("b1", "169.254.21.1", "169.254.21.2", 65001),
            our_peer("b2", "169.254.22.1", "169.254.22.2", 65002),
        ]),
    );
    let at_b2 = wait_until("b1's route at b2", WAIT, || b2.route("172.16.1.0/24"));
    assert!(at_b2.contains("BGP.as_path: 65000 65001\n"), "{at_b2}");
    assert!(at_b2.contains("BGP.next_hop: 169.254.22.2"), "{at_b2}");
    let at_b1 = wait_until("b2's route at b1", WAIT, || b1.route("192.168.2.0/24"));
    assert!(at_b1.contains("BGP.as_path: 65000 65002\n"), "{at_b1}");
    assert!(at_b1.contains("BGP.next_hop: 169.254.21.2"), "{at_b1}");
    println!("b2: {}", b2.birdc("show route all protocol vpngw"));
    // b1 stops originating: the withdrawal follows through us.
    b1.birdc("disable originated");
    wait_until("the withdrawal at b2", WAIT, || {
        match b2.route("172.16.1.0/24") {
            Ok(r) => Err(r),
            Err(_) => Ok(()),
        }
    });
    assert!(ours.loc_rib_has("172.16.1.0/24").is_err());
}

/// A raw BGP peer speaking bytes over std::net from its own namespace.
struct RawPeer {
    stream: TcpStream,
}

impl RawPeer {
    fn send(&mut self, m: &Message) {
        let bytes = m.to_bytes(&CTX4).unwrap();
        self.stream.write_all(&bytes).unwrap();
    }

    /// Reads one message (None on EOF).
    fn recv(&mut self) -> Option<Message> {
        let mut header = [0u8; 19];
        self.stream.read_exact(&mut header).ok()?;
        let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
        let mut msg = header.to_vec();
        msg.resize(len, 0);
        self.stream.read_exact(&mut msg[19..]).ok()?;
        Some(Message::decode(&msg, &CTX4).unwrap())
    }
}

const CTX4: DecodeContext = DecodeContext {
    four_octet_as: true,
    internal_peer: false,
};

/// ```text
///   [gw] g1 169.254.21.2 ──veth── 169.254.21.1 f1 [raw peer, AS 65001, in this process]
///   passive for the raw peer
/// ```
#[test]
fn malformed_update_ends_as_rfc7606_says() {
    let id = unique_id();
    let _dir = WorkDir::new(&id);
    let gw = Netns::new(&id, "mal-gw");
    let fake_ns = Netns::new(&id, "mal-f1");
    veth(&gw, "g1", &fake_ns, "f1");
    gw.ip("addr add 169.254.21.2/30 dev g1");
    fake_ns.ip("addr add 169.254.21.1/30 dev f1");
    let mut peer = our_peer("f1", "169.254.21.1", "169.254.21.2", 65001);
    peer.passive = true;
    let ours = Ours::start(&gw, our_config(vec![peer]));
    let fake = in_netns(&fake_ns, || {
        let stream = wait_until("our listener", WAIT, || {
            TcpStream::connect("169.254.21.2:179").map_err(|e| e.to_string())
        });
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut p = RawPeer { stream };
        p.send(&Message::Open(Open::new(
            65001,
            90,
            Ipv4Addr::new(10, 255, 0, 21),
            vec![vpngw_bgp::wire::Capability::FourOctetAs { asn: 65001 }],
        )));
        assert!(matches!(p.recv(), Some(Message::Open(_))));
        assert_eq!(p.recv(), Some(Message::Keepalive));
        p.send(&Message::Keepalive);
        p
    })
    .join()
    .unwrap();
    wait_until("our side Established", WAIT, || {
        ours.in_state(State::Established)
    });
    let mut p = fake;
    // A good route first.
    p.send(&Message::Update(Update {
        path_attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::from_sequence(vec![65001]))),
            PathAttribute::new(AttributeValue::NextHop(Ipv4Addr::new(169, 254, 21, 1))),
        ],
        nlri: vec!["198.51.100.0/24".parse().unwrap()],
        ..Update::default()
    }));
    wait_until("the good route", WAIT, || {
        ours.loc_rib_has("198.51.100.0/24")
    });
    // The same prefix with an AS_PATH segment of type 5 and then a
    // truncated NEXT_HOP: RFC 7606 treat-as-withdraw, the session stays.
    let update = |attrs: &[u8]| {
        let mut m = vec![0xff; 16];
        let body = 4 + attrs.len() + 4;
        m.extend(u16::try_from(19 + body).unwrap().to_be_bytes());
        m.push(2);
        m.extend([0, 0]);
        m.extend(u16::try_from(attrs.len()).unwrap().to_be_bytes());
        m.extend(attrs);
        m.extend([24, 198, 51, 100]);
        m
    };
    let bad_segment = update(&[
        0x40, 1, 1, 0, 0x40, 2, 6, 5, 1, 0, 0, 0xfd, 0xe9, 0x40, 3, 4, 169, 254, 21, 1,
    ]);
    p.stream.write_all(&bad_segment).unwrap();
    wait_until("the route withdrawn", WAIT, || {
        match ours.loc_rib_has("198.51.100.0/24") {
            Ok(r) => Err(r),
            Err(_) => Ok(()),
        }
    });
    let truncated = update(&[
        0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9, 0x40, 3, 8, 169, 254, 21, 1,
    ]);
    p.stream.write_all(&truncated).unwrap();
    p.send(&Message::Keepalive);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ours.state(0),
        State::Established,
        "treat-as-withdraw keeps the session"
    );
    let reason = ours.inspect(|s| {
        s.peer(PeerId(0))
            .unwrap()
            .adj_rib_in
            .refused()
            .values()
            .map(|r| r.reason.to_string())
            .collect::<Vec<_>>()
    });
    assert_eq!(
        reason,
        vec!["malformed UPDATE treated as withdraw (RFC 7606): attribute length error in NextHop"]
    );
    // A broken header: Message Header Error / Connection Not Synchronized.
    let mut bad_marker = Message::Keepalive.to_bytes(&CTX4).unwrap();
    bad_marker[0] = 0;
    p.stream.write_all(&bad_marker).unwrap();
    let answer = loop {
        match p.recv() {
            Some(Message::Notification(n)) => break n,
            Some(Message::Keepalive | Message::Update(_)) => continue,
            other => panic!("expected a NOTIFICATION, got {other:?}"),
        }
    };
    assert_eq!(
        (u8::from(answer.code), answer.subcode),
        (1, 1),
        "{answer:?}"
    );
    assert_eq!(p.recv(), None, "then the connection closes");
    // And the speaker is alive and well: the session comes back to Active.
    wait_until("our side back to listening", WAIT, || {
        ours.in_state(State::Active)
    });
}
