//! The RFC 4271 §8 FSM with a simulated clock.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use vpngw_bgp::session::{
    ConnectionId, Direction, DownReason, Event, Input, Output, Session, SessionConfig, State,
    StopReason,
};
use vpngw_bgp::wire::iana::{
    CeaseSubcode, FsmSubcode, MessageHeaderSubcode, OpenSubcode, UpdateSubcode,
};
use vpngw_bgp::wire::{ErrorCode, Message, Notification, Open, Update};

use super::fake::{open, split, CTX};

const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const C1: ConnectionId = ConnectionId(1);
const C2: ConnectionId = ConnectionId(2);

fn config() -> SessionConfig {
    SessionConfig {
        local_as: 65000,
        router_id: LOCAL_ID,
        remote_as: 65001,
        passive: false,
        hold_time: 9,
        keepalive_time: 3,
        connect_retry_time: Duration::from_secs(5),
        idle_hold_time: Duration::from_secs(2),
        ipv6: true,
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A session under test with its clock.
struct T {
    s: Session,
    t0: Instant,
    now: Instant,
}

impl T {
    fn new(config: SessionConfig) -> T {
        let t0 = Instant::now();
        T {
            s: Session::new(config),
            t0,
            now: t0,
        }
    }

    fn input(&mut self, input: Input<'_>) -> Vec<Output> {
        self.s.handle(self.now, input);
        std::iter::from_fn(|| self.s.poll_output()).collect()
    }

    /// Moves the clock to `t0 + secs` and fires due timers.
    fn at(&mut self, secs: u64) -> Vec<Output> {
        self.now = self.t0 + Duration::from_secs(secs);
        self.input(Input::Timer)
    }

    fn connect(&mut self, c: ConnectionId, direction: Direction) -> Vec<Output> {
        self.input(Input::TcpConnected {
            connection: c,
            direction,
            local: addr("10.0.0.2:179"),
            remote: addr("10.0.0.1:40000"),
        })
    }

    fn recv(&mut self, c: ConnectionId, m: &Message) -> Vec<Output> {
        let bytes = m.to_bytes(&CTX).unwrap();
        self.recv_bytes(c, &bytes)
    }

    fn recv_bytes(&mut self, c: ConnectionId, bytes: &[u8]) -> Vec<Output> {
        self.input(Input::Bytes {
            connection: c,
            data: bytes,
        })
    }

    /// Start, our connection up, OPEN/KEEPALIVE exchanged.
    fn established(&mut self) -> Vec<Output> {
        let mut out = self.input(Input::Start);
        out.extend(self.connect(C1, Direction::Outbound));
        out.extend(self.recv(C1, &Message::Open(open(65001, 90, PEER_ID))));
        out.extend(self.recv(C1, &Message::Keepalive));
        assert_eq!(self.s.state(), State::Established);
        out
    }
}

/// Messages sent on `c`.
fn sent(out: &[Output], c: ConnectionId) -> Vec<Message> {
    out.iter()
        .filter_map(|o| {
            let Output::Send { connection, bytes } = o else {
                return None;
            };
            (*connection == c).then(|| split(bytes))
        })
        .flatten()
        .collect()
}

fn notification(out: &[Output], c: ConnectionId) -> Option<Notification> {
    sent(out, c).into_iter().find_map(|m| {
        let Message::Notification(n) = m else {
            return None;
        };
        Some(n)
    })
}

fn closed(out: &[Output], c: ConnectionId) -> bool {
    out.contains(&Output::Close { connection: c })
}

fn down(out: &[Output]) -> Option<(DownReason, bool)> {
    out.iter().find_map(|o| {
        let Output::Event(Event::Down {
            reason,
            was_established,
        }) = o
        else {
            return None;
        };
        Some((reason.clone(), *was_established))
    })
}

fn n(code: ErrorCode, subcode: impl Into<u8>) -> (ErrorCode, u8) {
    (code, subcode.into())
}

fn code_of(x: &Notification) -> (ErrorCode, u8) {
    (x.code, x.subcode)
}

#[test]
fn active_open_exchange_reaches_established() {
    let mut t = T::new(config());
    let out = t.input(Input::Start);
    assert_eq!(out, vec![Output::Connect]);
    assert_eq!(t.s.state(), State::Connect);
    let out = t.connect(C1, Direction::Outbound);
    let Message::Open(ours) = &sent(&out, C1)[0] else {
        panic!("OPEN first")
    };
    assert_eq!(
        (ours.asn(), ours.hold_time, ours.bgp_identifier),
        (65000, 9, LOCAL_ID)
    );
    assert_eq!(t.s.state(), State::OpenSent);
    let out = t.recv(C1, &Message::Open(open(65001, 90, PEER_ID)));
    assert_eq!(sent(&out, C1), vec![Message::Keepalive]);
    assert_eq!(t.s.state(), State::OpenConfirm);
    let out = t.recv(C1, &Message::Keepalive);
    let Some(Output::Event(Event::Established(neg))) = out.first() else {
        panic!("Established expected, got {out:?}")
    };
    // The smaller hold time wins; keepalive is at most a third of it.
    assert_eq!((neg.hold_time, neg.keepalive_time), (9, 3));
    assert!(neg.context.four_octet_as);
    assert!(neg.ipv4 && !neg.ipv6, "the peer offered IPv4 only");
    assert_eq!(neg.peer_router_id(), PEER_ID);
}

#[test]
fn passive_mode_waits_for_the_peer() {
    let mut t = T::new(SessionConfig {
        passive: true,
        ..config()
    });
    assert!(t.input(Input::Start).is_empty());
    assert_eq!(t.s.state(), State::Active);
    assert_eq!(t.s.poll_timeout(), None, "no connect-retry timer");
    assert!(t.at(600).is_empty(), "never connects by itself");
    let out = t.connect(C1, Direction::Inbound);
    assert!(matches!(sent(&out, C1)[0], Message::Open(_)));
    t.recv(C1, &Message::Open(open(65001, 90, PEER_ID)));
    t.recv(C1, &Message::Keepalive);
    assert_eq!(t.s.state(), State::Established);
}

#[test]
fn idle_refuses_connections() {
    let mut t = T::new(config());
    let out = t.connect(C1, Direction::Inbound);
    assert_eq!(out, vec![Output::Close { connection: C1 }]);
    assert_eq!(t.s.state(), State::Idle);
}

#[test]
fn connect_retry_timer_tries_again() {
    let mut t = T::new(config());
    t.input(Input::Start);
    assert!(t.input(Input::TcpConnectFailed).is_empty());
    assert_eq!(t.s.state(), State::Active);
    assert_eq!(t.s.connect_retry_counter(), 1);
    assert!(t.at(4).is_empty());
    assert_eq!(t.at(5), vec![Output::Connect]);
    assert_eq!(t.s.state(), State::Connect);
    // An attempt that hangs is abandoned and retried at the next expiry.
    assert_eq!(t.at(10), vec![Output::Connect]);
}

#[test]
fn keepalives_are_paced_and_received_ones_hold_the_session() {
    let mut t = T::new(config());
    t.established();
    assert!(t.at(2).is_empty());
    assert_eq!(sent(&t.at(3), C1), vec![Message::Keepalive]);
    assert_eq!(sent(&t.at(6), C1), vec![Message::Keepalive]);
    t.now = t.t0 + Duration::from_secs(7);
    t.recv(C1, &Message::Keepalive);
    // Without that KEEPALIVE the hold timer would have fired at 9.
    let out = t.at(9);
    assert_eq!(sent(&out, C1), vec![Message::Keepalive]);
    assert_eq!(t.s.state(), State::Established);
    // An UPDATE sent restarts the keepalive timer.
    t.now = t.t0 + Duration::from_secs(11);
    t.s.send(t.now, &Message::Update(Update::default()))
        .unwrap();
    let _ = std::iter::from_fn(|| t.s.poll_output()).count();
    assert!(sent(&t.at(12), C1).is_empty());
    assert_eq!(sent(&t.at(14), C1), vec![Message::Keepalive]);
}

#[test]
fn hold_timer_expiry_sends_notification_and_restarts() {
    let mut t = T::new(config());
    t.established();
    // Not earlier: a silent peer keeps the session until the hold time
    // (9 s) is up...
    for s in [3, 6, 8] {
        let out = t.at(s);
        assert_eq!(notification(&out, C1), None, "at {s} s: {out:?}");
        assert_eq!(t.s.state(), State::Established, "at {s} s");
    }
    // ...and not later: at 9 s it is gone.
    let out = t.at(9);
    assert_eq!(
        notification(&out, C1).map(|x| code_of(&x)),
        Some(n(ErrorCode::HoldTimerExpired, 0u8))
    );
    assert!(closed(&out, C1));
    assert_eq!(down(&out), Some((DownReason::HoldTimerExpired, true)));
    assert_eq!(t.s.state(), State::Idle);
    // IdleHoldTime (2 s) later it starts again by itself.
    assert!(t.at(10).is_empty());
    assert_eq!(t.at(11), vec![Output::Connect]);
}

#[test]
fn a_connection_during_the_idle_hold_time_starts_the_session() {
    // Two peers whose hold timers expired together would otherwise refuse
    // each other in lock step: each connects as it leaves its IdleHoldTime,
    // while the other is still in it.
    let mut t = T::new(config());
    t.established();
    for s in [3, 6, 9] {
        t.at(s);
    }
    assert_eq!(t.s.state(), State::Idle);
    t.now = t.t0 + Duration::from_secs(10);
    let out = t.connect(ConnectionId(2), Direction::Inbound);
    assert!(
        matches!(sent(&out, ConnectionId(2))[0], Message::Open(_)),
        "accepted and answered with an OPEN: {out:?}"
    );
    t.recv(ConnectionId(2), &Message::Open(open(65001, 90, PEER_ID)));
    t.recv(ConnectionId(2), &Message::Keepalive);
    assert_eq!(t.s.state(), State::Established);
    // The IdleHoldTime's own restart does not come on top.
    assert!(!t.at(11).contains(&Output::Connect));
}

#[test]
fn a_stopped_session_still_refuses_connections() {
    let mut t = T::new(config());
    t.established();
    t.input(Input::Stop {
        reason: StopReason::Administrative,
        restart_after: Some(Duration::from_secs(30)),
    });
    let out = t.connect(ConnectionId(2), Direction::Inbound);
    assert_eq!(
        out,
        vec![Output::Close {
            connection: ConnectionId(2)
        }]
    );
}

#[test]
fn hold_timer_in_open_sent_is_four_minutes() {
    let mut t = T::new(config());
    t.input(Input::Start);
    t.connect(C1, Direction::Outbound);
    assert!(t.at(239).is_empty());
    let out = t.at(240);
    assert_eq!(
        notification(&out, C1).map(|x| code_of(&x)),
        Some(n(ErrorCode::HoldTimerExpired, 0u8))
    );
    assert_eq!(down(&out), Some((DownReason::HoldTimerExpired, false)));
}

#[test]
fn header_errors_are_answered() {
    let keepalive = Message::Keepalive.to_bytes(&CTX).unwrap();
    let mut bad_marker = keepalive.clone();
    bad_marker[3] = 0;
    let mut bad_length = keepalive.clone();
    bad_length[17] = 0;
    bad_length[18] = 18;
    let mut bad_type = keepalive.clone();
    bad_type[18] = 9;
    // A KEEPALIVE must be exactly 19 octets.
    let mut long_keepalive = keepalive.clone();
    long_keepalive[17] = 0;
    long_keepalive[16] = 0;
    long_keepalive[17] = 20;
    long_keepalive.push(0);
    let cases = [
        (bad_marker, MessageHeaderSubcode::ConnectionNotSynchronized),
        (bad_length, MessageHeaderSubcode::BadMessageLength),
        (bad_type, MessageHeaderSubcode::BadMessageType),
        (long_keepalive, MessageHeaderSubcode::BadMessageLength),
    ];
    for (bytes, subcode) in cases {
        let mut t = T::new(config());
        t.established();
        let out = t.recv_bytes(C1, &bytes);
        let sent = notification(&out, C1).expect("a NOTIFICATION");
        assert_eq!(code_of(&sent), n(ErrorCode::MessageHeader, subcode));
        assert!(closed(&out, C1));
        assert_eq!(down(&out), Some((DownReason::NotificationSent(sent), true)));
    }
}

#[test]
fn bytes_are_framed_across_reads() {
    let mut t = T::new(config());
    t.input(Input::Start);
    t.connect(C1, Direction::Outbound);
    let mut stream = Message::Open(open(65001, 90, PEER_ID))
        .to_bytes(&CTX)
        .unwrap();
    stream.extend(Message::Keepalive.to_bytes(&CTX).unwrap());
    for byte in &stream {
        t.recv_bytes(C1, std::slice::from_ref(byte));
    }
    assert_eq!(t.s.state(), State::Established);
}

fn open_error_case(open_bytes: Vec<u8>, config: SessionConfig) -> (ErrorCode, u8, Vec<u8>) {
    let mut t = T::new(config);
    t.input(Input::Start);
    t.connect(C1, Direction::Outbound);
    let out = t.recv_bytes(C1, &open_bytes);
    let sent = notification(&out, C1).expect("a NOTIFICATION");
    assert!(closed(&out, C1));
    assert_eq!(t.s.state(), State::Idle);
    (sent.code, sent.subcode, sent.data)
}

fn open_bytes(o: &Open) -> Vec<u8> {
    Message::Open(o.clone()).to_bytes(&CTX).unwrap()
}

#[test]
fn open_errors_are_answered() {
    let good = open(65001, 90, PEER_ID);
    // Bad peer AS: another AS than configured.
    let (code, sub, _) = open_error_case(open_bytes(&open(65009, 90, PEER_ID)), config());
    assert_eq!(
        (code, sub),
        n(ErrorCode::OpenMessage, OpenSubcode::BadPeerAs)
    );
    // Unsupported version: the data is the version we speak.
    let mut v3 = open_bytes(&good);
    v3[19] = 3;
    let (code, sub, data) = open_error_case(v3, config());
    assert_eq!(
        (code, sub),
        n(
            ErrorCode::OpenMessage,
            OpenSubcode::UnsupportedVersionNumber
        )
    );
    assert_eq!(data, vec![0, 4]);
    // Unacceptable hold time: 1 or 2 seconds.
    let (code, sub, _) = open_error_case(open_bytes(&open(65001, 2, PEER_ID)), config());
    assert_eq!(
        (code, sub),
        n(ErrorCode::OpenMessage, OpenSubcode::UnacceptableHoldTime)
    );
    // Bad BGP identifier: 0.0.0.0, or our own over iBGP.
    let (code, sub, _) = open_error_case(
        open_bytes(&open(65001, 90, Ipv4Addr::UNSPECIFIED)),
        config(),
    );
    assert_eq!(
        (code, sub),
        n(ErrorCode::OpenMessage, OpenSubcode::BadBgpIdentifier)
    );
    let ibgp = SessionConfig {
        remote_as: 65000,
        ..config()
    };
    let (code, sub, _) = open_error_case(open_bytes(&open(65000, 90, LOCAL_ID)), ibgp);
    assert_eq!(
        (code, sub),
        n(ErrorCode::OpenMessage, OpenSubcode::BadBgpIdentifier)
    );
    // Unsupported optional parameter (type 1, authentication).
    let mut auth = open_bytes(&open(65001, 90, PEER_ID).clone());
    auth.truncate(28);
    auth.extend([3, 1, 1, 0]);
    let len = u16::try_from(auth.len()).unwrap().to_be_bytes();
    auth[16] = len[0];
    auth[17] = len[1];
    let (code, sub, _) = open_error_case(auth, config());
    assert_eq!(
        (code, sub),
        n(
            ErrorCode::OpenMessage,
            OpenSubcode::UnsupportedOptionalParameter
        )
    );
}

#[test]
fn unexpected_messages_are_fsm_errors() {
    // KEEPALIVE in OpenSent.
    let mut t = T::new(config());
    t.input(Input::Start);
    t.connect(C1, Direction::Outbound);
    let out = t.recv(C1, &Message::Keepalive);
    assert_eq!(
        notification(&out, C1).map(|x| code_of(&x)),
        Some(n(
            ErrorCode::FiniteStateMachine,
            FsmSubcode::UnexpectedMessageInOpenSent
        ))
    );
    // UPDATE in OpenConfirm.
    let mut t = T::new(config());
    t.input(Input::Start);
    t.connect(C1, Direction::Outbound);
    t.recv(C1, &Message::Open(open(65001, 90, PEER_ID)));
    let out = t.recv(C1, &Message::Update(Update::default()));
    assert_eq!(
        notification(&out, C1).map(|x| code_of(&x)),
        Some(n(
            ErrorCode::FiniteStateMachine,
            FsmSubcode::UnexpectedMessageInOpenConfirm
        ))
    );
    // OPEN in Established.
    let mut t = T::new(config());
    t.established();
    let out = t.recv(C1, &Message::Open(open(65001, 90, PEER_ID)));
    assert_eq!(
        notification(&out, C1).map(|x| code_of(&x)),
        Some(n(
            ErrorCode::FiniteStateMachine,
            FsmSubcode::UnexpectedMessageInEstablished
        ))
    );
    assert_eq!(t.s.state(), State::Idle);
}

/// An UPDATE body from hex fields.
fn update_bytes(withdrawn: &[u8], attributes: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend((withdrawn.len() as u16).to_be_bytes());
    body.extend(withdrawn);
    body.extend((attributes.len() as u16).to_be_bytes());
    body.extend(attributes);
    body.extend(nlri);
    let mut msg = vec![0xff; 16];
    msg.extend(((19 + body.len()) as u16).to_be_bytes());
    msg.push(2);
    msg.extend(body);
    msg
}

const ORIGIN: [u8; 4] = [0x40, 1, 1, 0];
const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 10, 0, 0, 1];
const NLRI: [u8; 4] = [24, 198, 51, 100];

#[test]
fn update_errors_reset_the_session_or_withdraw_as_rfc7606_says() {
    // Withdrawn routes length overrunning the message: session reset,
    // Malformed Attribute List.
    let mut t = T::new(config());
    t.established();
    let mut bad = update_bytes(&[], &[], &[]);
    bad[19] = 0;
    bad[20] = 9;
    let out = t.recv_bytes(C1, &bad);
    assert_eq!(
        notification(&out, C1).map(|x| code_of(&x)),
        Some(n(
            ErrorCode::UpdateMessage,
            UpdateSubcode::MalformedAttributeList
        ))
    );
    assert_eq!(t.s.state(), State::Idle);

    // A prefix longer than 32 bits: Invalid Network Field.
    let mut t = T::new(config());
    t.established();
    let mut attrs = ORIGIN.to_vec();
    attrs.extend([0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9]);
    attrs.extend(NEXT_HOP);
    let out = t.recv_bytes(C1, &update_bytes(&[], &attrs, &[33, 1, 2, 3, 4, 5]));
    assert_eq!(
        notification(&out, C1).map(|x| code_of(&x)),
        Some(n(
            ErrorCode::UpdateMessage,
            UpdateSubcode::InvalidNetworkField
        ))
    );

    // A bad AS_PATH segment (type 5): treat-as-withdraw, the session stays.
    let mut t = T::new(config());
    t.established();
    let mut attrs = ORIGIN.to_vec();
    attrs.extend([0x40, 2, 6, 5, 1, 0, 0, 0xfd, 0xe9]);
    attrs.extend(NEXT_HOP);
    let out = t.recv_bytes(C1, &update_bytes(&[], &attrs, &NLRI));
    assert_eq!(notification(&out, C1), None);
    let Some(Output::Event(Event::Update(u))) = out.first() else {
        panic!("an UPDATE event, got {out:?}")
    };
    assert!(u.nlri.is_empty());
    assert_eq!(u.treat_as_withdraw.as_ref().unwrap().ipv4.len(), 1);
    assert_eq!(t.s.state(), State::Established);

    // A truncated attribute (NEXT_HOP claims 8 octets, 4 left):
    // treat-as-withdraw too.
    let mut t = T::new(config());
    t.established();
    let mut attrs = ORIGIN.to_vec();
    attrs.extend([0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9]);
    attrs.extend([0x40, 3, 8, 10, 0, 0, 1]);
    let out = t.recv_bytes(C1, &update_bytes(&[], &attrs, &NLRI));
    assert_eq!(notification(&out, C1), None);
    assert_eq!(t.s.state(), State::Established);

    // An unrecognized well-known attribute: session reset.
    let mut t = T::new(config());
    t.established();
    let mut attrs = ORIGIN.to_vec();
    attrs.extend([0x40, 99, 1, 0]);
    let out = t.recv_bytes(C1, &update_bytes(&[], &attrs, &[]));
    assert_eq!(
        notification(&out, C1).map(|x| code_of(&x)),
        Some(n(
            ErrorCode::UpdateMessage,
            UpdateSubcode::UnrecognizedWellKnownAttribute
        ))
    );
}

#[test]
fn received_notification_ends_the_session() {
    let mut t = T::new(config());
    t.established();
    let cease = Notification::cease(CeaseSubcode::AdministrativeShutdown);
    let out = t.recv(C1, &Message::Notification(cease.clone()));
    assert_eq!(notification(&out, C1), None, "no NOTIFICATION back");
    assert!(closed(&out, C1));
    assert_eq!(
        down(&out),
        Some((DownReason::NotificationReceived(cease), true))
    );
}

#[test]
fn closed_connection_ends_the_session() {
    let mut t = T::new(config());
    t.established();
    let out = t.input(Input::TcpClosed { connection: C1 });
    assert_eq!(down(&out), Some((DownReason::ConnectionClosed, true)));
}

#[test]
fn stop_sends_cease_and_stays_down() {
    let mut t = T::new(config());
    t.established();
    let out = t.input(Input::Stop {
        reason: StopReason::Administrative,
        restart_after: None,
    });
    assert_eq!(
        notification(&out, C1).map(|x| code_of(&x)),
        Some(n(ErrorCode::Cease, CeaseSubcode::AdministrativeShutdown))
    );
    assert_eq!(t.s.poll_timeout(), None);
    assert!(t.at(3600).is_empty());
}

#[test]
fn max_prefixes_stop_sends_cease_1_and_restarts_after_the_interval() {
    let mut t = T::new(config());
    t.established();
    let out = t.input(Input::Stop {
        reason: StopReason::MaxPrefixes { limit: 4000 },
        restart_after: Some(Duration::from_secs(30)),
    });
    let sent = notification(&out, C1).unwrap();
    assert_eq!(
        code_of(&sent),
        n(
            ErrorCode::Cease,
            CeaseSubcode::MaximumNumberOfPrefixesReached
        )
    );
    // AFI 1, SAFI 1, limit.
    assert_eq!(sent.data, vec![0, 1, 1, 0, 0, 0x0f, 0xa0]);
    assert!(t.at(29).is_empty());
    assert_eq!(t.at(30), vec![Output::Connect]);
}

/// Both sides connect at once; each connection gets the peer's OPEN.
fn collision(local_id: Ipv4Addr) -> (T, Vec<Output>) {
    let mut t = T::new(SessionConfig {
        router_id: local_id,
        ..config()
    });
    t.input(Input::Start);
    let mut out = t.connect(C1, Direction::Outbound);
    out.extend(t.connect(C2, Direction::Inbound));
    assert_eq!(t.s.state(), State::OpenSent);
    out.extend(t.recv(C1, &Message::Open(open(65001, 90, PEER_ID))));
    out.extend(t.recv(C2, &Message::Open(open(65001, 90, PEER_ID))));
    (t, out)
}

#[test]
fn collision_keeps_our_connection_when_our_id_is_higher() {
    let (mut t, out) = collision(Ipv4Addr::new(10, 0, 0, 9));
    assert_eq!(
        notification(&out, C2).map(|x| code_of(&x)),
        Some(n(
            ErrorCode::Cease,
            CeaseSubcode::ConnectionCollisionResolution
        ))
    );
    assert!(closed(&out, C2) && !closed(&out, C1));
    assert_eq!(down(&out), None, "the session goes on");
    t.recv(C1, &Message::Keepalive);
    assert_eq!(t.s.state(), State::Established);
    assert_eq!(t.s.negotiated().unwrap().connection, C1);
}

#[test]
fn collision_keeps_the_peers_connection_when_its_id_is_higher() {
    let (mut t, out) = collision(Ipv4Addr::new(10, 0, 0, 0));
    assert!(closed(&out, C1) && !closed(&out, C2));
    assert_eq!(
        notification(&out, C1).map(|x| code_of(&x)),
        Some(n(
            ErrorCode::Cease,
            CeaseSubcode::ConnectionCollisionResolution
        ))
    );
    t.recv(C2, &Message::Keepalive);
    assert_eq!(t.s.state(), State::Established);
    assert_eq!(t.s.negotiated().unwrap().connection, C2);
}

#[test]
fn second_connection_after_the_peers_open_is_resolved_at_once() {
    // Our identifier is lower: the peer's connection wins over ours, even
    // though ours is already in OpenConfirm.
    let mut t = T::new(SessionConfig {
        router_id: Ipv4Addr::new(10, 0, 0, 0),
        ..config()
    });
    t.input(Input::Start);
    t.connect(C1, Direction::Outbound);
    t.recv(C1, &Message::Open(open(65001, 90, PEER_ID)));
    let out = t.connect(C2, Direction::Inbound);
    assert!(closed(&out, C1) && !closed(&out, C2));
    assert!(matches!(sent(&out, C2)[0], Message::Open(_)));
    assert_eq!(down(&out), None);
    // And the other way round, a late connection of ours loses.
    let mut t = T::new(SessionConfig {
        router_id: Ipv4Addr::new(10, 0, 0, 0),
        ..config()
    });
    t.input(Input::Start);
    t.connect(C2, Direction::Inbound);
    t.recv(C2, &Message::Open(open(65001, 90, PEER_ID)));
    let out = t.connect(C1, Direction::Outbound);
    assert!(closed(&out, C1) && !closed(&out, C2));
    assert_eq!(
        notification(&out, C1).map(|x| code_of(&x)),
        Some(n(
            ErrorCode::Cease,
            CeaseSubcode::ConnectionCollisionResolution
        ))
    );
}

#[test]
fn connection_while_established_is_refused() {
    let mut t = T::new(config());
    t.established();
    let out = t.connect(C2, Direction::Inbound);
    assert_eq!(
        notification(&out, C2).map(|x| code_of(&x)),
        Some(n(
            ErrorCode::Cease,
            CeaseSubcode::ConnectionCollisionResolution
        ))
    );
    assert!(closed(&out, C2));
    assert_eq!(t.s.state(), State::Established);
}

#[test]
fn reaching_established_on_one_connection_closes_the_other() {
    let mut t = T::new(config());
    t.input(Input::Start);
    let mut out = t.connect(C1, Direction::Outbound);
    out.extend(t.connect(C2, Direction::Inbound));
    // Our identifier is higher: once the peer's is known, its connection
    // goes, though it has not sent an OPEN yet.
    out.extend(t.recv(C1, &Message::Open(open(65001, 90, PEER_ID))));
    assert!(closed(&out, C2));
    t.recv(C1, &Message::Keepalive);
    assert_eq!(t.s.state(), State::Established);
}
