//! Session tests: two sessions joined by a simulated link with simulated
//! time (the quinn-proto pattern), and single sessions fed by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const MS: Duration = Duration::from_millis(1);

/// xorshift64*: deterministic randomness for the jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

fn config(discr: u32, tx_ms: u64, rx_ms: u64, mult: u8) -> SessionConfig {
    SessionConfig {
        local_discr: discr,
        desired_min_tx: Duration::from_millis(tx_ms),
        required_min_rx: Duration::from_millis(rx_ms),
        detect_mult: mult,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// Decides whether a packet sent by one side gets through.
type Filter = Box<dyn FnMut(Side, &ControlPacket) -> bool>;

/// Two sessions, a link with a fixed latency that can be cut in either
/// direction, and a filter that can drop chosen packets.
struct Pair {
    start: Instant,
    now: Instant,
    a: Session,
    b: Session,
    latency: Duration,
    a_to_b: bool,
    b_to_a: bool,
    /// Returns false to drop a packet sent by `Side`.
    filter: Filter,
    in_flight: Vec<(Instant, Side, ControlPacket)>,
    /// Every packet sent (dropped or not): when, by whom.
    sent: Vec<(Duration, Side, ControlPacket)>,
    /// Every packet delivered: when, to whom.
    delivered: Vec<(Duration, Side, ControlPacket)>,
    events: Vec<(Duration, Side, Event)>,
    rng: Rng,
}

impl Pair {
    fn new(a: SessionConfig, b: SessionConfig) -> Pair {
        let start = Instant::now();
        // B starts a little later, as two real systems would.
        let b_start = start + 3 * MS;
        Pair {
            start,
            now: start,
            a: Session::new(a, start).unwrap(),
            b: Session::new(b, b_start).unwrap(),
            latency: MS,
            a_to_b: true,
            b_to_a: true,
            filter: Box::new(|_, _| true),
            in_flight: Vec::new(),
            sent: Vec::new(),
            delivered: Vec::new(),
            events: Vec::new(),
            rng: Rng(0x1234_5678_9abc_def1),
        }
    }

    fn standard() -> Pair {
        Pair::new(config(0xa, 100, 100, 3), config(0xb, 100, 100, 3))
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn drain(&mut self) {
        let at = self.elapsed();
        for side in [Side::A, Side::B] {
            let (session, link_up) = match side {
                Side::A => (&mut self.a, self.a_to_b),
                Side::B => (&mut self.b, self.b_to_a),
            };
            while let Some(p) = session.poll_transmit() {
                let decoded = ControlPacket::decode(&p.encode());
                assert_eq!(decoded, Ok(p), "a session sent an invalid packet");
                self.sent.push((at, side, p));
                if link_up && (self.filter)(side, &p) {
                    self.in_flight.push((self.now + self.latency, side, p));
                }
            }
            while let Some(e) = session.poll_event() {
                self.events.push((at, side, e));
            }
        }
    }

    /// Runs the simulation until `elapsed() == until`.
    fn run_until(&mut self, until: Duration) {
        let end = self.start + until;
        for _ in 0..1_000_000 {
            self.drain();
            let next = [
                self.a.poll_timeout(),
                self.b.poll_timeout(),
                self.in_flight.iter().map(|(at, _, _)| *at).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => self.now = self.now.max(t),
                Some(_) | None => {
                    self.now = end;
                    return;
                }
            }
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|(at, _, _)| *at <= now);
            self.in_flight = later;
            for (_, from, p) in due {
                let to = match from {
                    Side::A => Side::B,
                    Side::B => Side::A,
                };
                self.delivered.push((now - self.start, to, p));
                let session = match to {
                    Side::A => &mut self.a,
                    Side::B => &mut self.b,
                };
                let _ = session.handle_packet(now, &p);
            }
            let mut rng = || self.rng.next();
            for session in [&mut self.a, &mut self.b] {
                if session.poll_timeout().is_some_and(|t| t <= now) {
                    session.handle_timeout(now, &mut rng);
                }
            }
        }
        panic!("simulation did not reach {until:?}");
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.elapsed() + d;
        self.run_until(until);
    }

    fn events_of(&self, side: Side) -> Vec<Event> {
        self.events
            .iter()
            .filter(|(_, s, _)| *s == side)
            .map(|(_, _, e)| *e)
            .collect()
    }

    /// Times at which `side` sent a packet matching `f`.
    fn sent_times(&self, side: Side, f: impl Fn(&ControlPacket) -> bool) -> Vec<Duration> {
        self.sent
            .iter()
            .filter(|(_, s, p)| *s == side && f(p))
            .map(|(t, _, _)| *t)
            .collect()
    }
}

fn gaps(times: &[Duration]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn config_is_validated() {
    let now = Instant::now();
    let bad = [
        (config(0, 100, 100, 3), ConfigError::ZeroDiscriminator),
        (config(1, 100, 100, 0), ConfigError::ZeroDetectMult),
        (config(1, 0, 100, 3), ConfigError::ZeroDesiredMinTx),
        (
            config(1, 100, 5_000_000, 3),
            ConfigError::IntervalTooLong(Duration::from_secs(5_000)),
        ),
    ];
    for (c, want) in bad {
        assert_eq!(Session::new(c, now).err(), Some(want));
    }
    // Zero Required Min RX is legal: it asks the remote for silence.
    assert!(Session::new(config(1, 100, 0, 3), now).is_ok());
}

#[test]
fn three_way_handshake_brings_both_up() {
    let mut pair = Pair::standard();
    pair.run_until(Duration::from_secs(2));
    assert_eq!(pair.a.state(), State::Up);
    assert_eq!(pair.b.state(), State::Up);
    assert_eq!(pair.events_of(Side::A), [Event::Up]);
    assert_eq!(pair.events_of(Side::B), [Event::Up]);
    assert_eq!(pair.a.remote_discr(), 0xb);
    assert_eq!(pair.b.remote_discr(), 0xa);

    // The states each side went through: Down, Init (or straight to Up
    // when the other side's Init arrived first), Up.
    let a_states: Vec<State> = pair
        .sent
        .iter()
        .filter(|(_, s, _)| *s == Side::A)
        .map(|(_, _, p)| p.state)
        .collect();
    assert_eq!(a_states.first(), Some(&State::Down));
    assert!(a_states.contains(&State::Up));
    // Triggered packets: the handshake takes a few link latencies, not
    // seconds of slow-rate ticks.
    let up_at = pair.events.iter().map(|(t, _, _)| *t).max().unwrap();
    assert!(up_at < 20 * MS, "both up only after {up_at:?}");

    // Until Up, everyone advertised the 1 s slow rate (RFC 5880 §6.8.3),
    // and your discriminator was zero only while Down.
    for (_, _, p) in &pair.sent {
        match p.state {
            State::Down | State::Init => assert_eq!(p.desired_min_tx_us, SLOW_TX_US),
            State::Up => {}
            State::AdminDown => panic!("nobody went AdminDown"),
        }
        if p.your_discr == 0 {
            assert_eq!(p.state, State::Down);
        }
    }
}

#[test]
fn poll_sequence_moves_from_slow_to_configured_rate_after_up() {
    let mut pair = Pair::standard();
    pair.run_until(Duration::from_secs(3));
    // A announced 100 ms with Poll once Up, B answered with Final.
    let poll = pair
        .sent
        .iter()
        .find(|(_, s, p)| *s == Side::A && p.poll)
        .expect("A polls");
    assert_eq!(poll.2.state, State::Up);
    assert_eq!(poll.2.desired_min_tx_us, 100_000);
    assert!(pair
        .sent
        .iter()
        .any(|(t, s, p)| *s == Side::B && p.final_ && *t > poll.0));
    assert!(!pair.a.poll_active());
    assert!(!pair.b.poll_active());
    assert_eq!(pair.a.transmit_interval(), 100 * MS);
    assert_eq!(pair.a.detection_time(), Some(300 * MS));
    assert_eq!(pair.b.detection_time(), Some(300 * MS));

    // Once the polls are done, both send every 75–100 ms.
    let steady = |p: &ControlPacket| !p.final_ && !p.poll;
    for side in [Side::A, Side::B] {
        let times: Vec<Duration> = pair
            .sent_times(side, steady)
            .into_iter()
            .filter(|t| *t > Duration::from_secs(1))
            .collect();
        assert!(
            times.len() >= 19,
            "{side:?} sent {} packets in 2 s",
            times.len()
        );
        for gap in gaps(&times) {
            assert!((75 * MS..=100 * MS).contains(&gap), "{side:?} gap {gap:?}");
        }
    }
    // No Poll without a Final: the sequences ended.
    assert!(
        pair.sent
            .iter()
            .filter(|(t, _, p)| p.poll && *t > Duration::from_secs(1))
            .count()
            == 0
    );
}

#[test]
fn silent_peer_is_detected_within_detect_mult_intervals() {
    let mut pair = Pair::standard();
    pair.run_until(Duration::from_secs(2));
    assert_eq!(pair.a.state(), State::Up);
    let cut = pair.elapsed();
    pair.b_to_a = false;
    pair.run_for(Duration::from_secs(2));

    let last_heard = pair
        .delivered
        .iter()
        .filter(|(t, to, _)| *to == Side::A && *t <= cut + pair.latency)
        .map(|(t, _, _)| *t)
        .max()
        .unwrap();
    let (down_at, _, event) = pair
        .events
        .iter()
        .find(|(_, s, e)| *s == Side::A && matches!(e, Event::Down(_)))
        .copied()
        .expect("A noticed");
    assert_eq!(event, Event::Down(Diagnostic::ControlDetectionTimeExpired));
    let silence = down_at - last_heard;
    assert_eq!(silence, 300 * MS, "detection after {silence:?} of silence");
    assert!(down_at - cut <= 300 * MS);
    assert_eq!(
        pair.a.remote_discr(),
        0,
        "the remote's discriminator is forgotten"
    );
    assert_eq!(pair.a.local_diag(), Diagnostic::ControlDetectionTimeExpired);

    // B still hears A, which now says Down: B goes Down too.
    assert_eq!(
        pair.events_of(Side::B),
        [
            Event::Up,
            Event::Down(Diagnostic::NeighborSignaledSessionDown)
        ]
    );
    // Down again, both are back at the slow rate.
    assert_eq!(pair.a.transmit_interval(), Duration::from_secs(1));

    // The link heals: both come back up.
    pair.b_to_a = true;
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.a.state(), State::Up);
    assert_eq!(pair.b.state(), State::Up);
}

#[test]
fn admin_down_takes_both_down_and_admin_up_recovers() {
    let mut pair = Pair::standard();
    pair.run_until(Duration::from_secs(2));
    let now = pair.now;
    pair.a.admin_down(now);
    assert_eq!(pair.a.state(), State::AdminDown);
    pair.run_for(Duration::from_secs(3));
    assert_eq!(
        pair.events_of(Side::A),
        [Event::Up, Event::Down(Diagnostic::AdministrativelyDown)]
    );
    assert_eq!(
        pair.events_of(Side::B),
        [
            Event::Up,
            Event::Down(Diagnostic::NeighborSignaledSessionDown)
        ]
    );
    // B stays Down (not Init) while A says AdminDown; A keeps telling it,
    // at the slow rate.
    assert_eq!(pair.b.state(), State::Down);
    assert_eq!(pair.b.remote_state(), State::AdminDown);
    assert_eq!(pair.a.state(), State::AdminDown);
    let admin: Vec<Duration> =
        pair.sent_times(Side::A, |p| p.state == State::AdminDown && !p.final_);
    assert!(admin.len() >= 3);
    for gap in gaps(&admin) {
        assert!((750 * MS..=1000 * MS).contains(&gap), "gap {gap:?}");
    }
    // A ignores what B sends meanwhile.
    let probe = pair
        .sent
        .iter()
        .rev()
        .find(|(_, s, _)| *s == Side::B)
        .unwrap()
        .2;
    assert_eq!(
        pair.a.handle_packet(pair.now, &probe),
        Err(Discard::AdminDown)
    );

    let now = pair.now;
    pair.a.admin_up(now);
    assert_eq!(pair.a.state(), State::Down);
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.a.state(), State::Up);
    assert_eq!(pair.b.state(), State::Up);
    assert_eq!(pair.events_of(Side::A).last(), Some(&Event::Up));
}

fn single(c: SessionConfig) -> (Session, Instant) {
    let now = Instant::now();
    (Session::new(c, now).unwrap(), now)
}

/// Runs a lone session (nobody answers) for `d`, returning when it sent.
fn lone_transmit_times(c: SessionConfig, d: Duration, seed: u64) -> Vec<Duration> {
    let (mut s, start) = single(c);
    let mut rng = Rng(seed);
    let mut times = Vec::new();
    loop {
        let at = s.poll_timeout().expect("a lone session keeps sending");
        if at > start + d {
            return times;
        }
        s.handle_timeout(at, &mut || rng.next());
        while let Some(p) = s.poll_transmit() {
            assert_eq!(p.state, State::Down);
            assert_eq!(p.your_discr, 0);
            times.push(at - start);
        }
    }
}

#[test]
fn jitter_stays_within_rfc_bounds() {
    // Not Up: 1 s less 0–25 %.
    let times = lone_transmit_times(config(7, 100, 100, 3), Duration::from_secs(300), 1);
    assert_eq!(
        times.first(),
        Some(&Duration::ZERO),
        "the first packet goes at once"
    );
    let g = gaps(&times);
    assert!(g.len() > 250);
    assert!(
        g.iter().all(|g| (750 * MS..=1000 * MS).contains(g)),
        "{g:?}"
    );
    // The jitter is actually random, over most of the range.
    assert!(g.iter().any(|g| *g < 775 * MS) && g.iter().any(|g| *g > 975 * MS));

    // Detect multiplier 1: 75–90 %.
    let g = gaps(&lone_transmit_times(
        config(7, 100, 100, 1),
        Duration::from_secs(300),
        2,
    ));
    assert!(g.iter().all(|g| (750 * MS..=900 * MS).contains(g)), "{g:?}");
    assert!(g.iter().any(|g| *g < 775 * MS) && g.iter().any(|g| *g > 875 * MS));

    // Up, with a slower remote: the remote's Required Min RX wins.
    let mut pair = Pair::new(config(1, 100, 100, 3), config(2, 300, 300, 3));
    pair.run_until(Duration::from_secs(8));
    assert_eq!(pair.a.transmit_interval(), 300 * MS);
    let times: Vec<Duration> = pair
        .sent_times(Side::A, |p| !p.final_ && !p.poll)
        .into_iter()
        .filter(|t| *t > Duration::from_secs(2))
        .collect();
    for gap in gaps(&times) {
        assert!((225 * MS..=300 * MS).contains(&gap), "gap {gap:?}");
    }
    // A's detection time uses B's slower Desired Min TX and B's mult.
    assert_eq!(pair.a.detection_time(), Some(900 * MS));
    assert_eq!(pair.b.detection_time(), Some(900 * MS));
}

#[test]
fn slower_rate_takes_effect_only_after_final() {
    let mut pair = Pair::standard();
    pair.run_until(Duration::from_secs(2));
    // B drops its Final answers for a while: A keeps polling.
    let drop_finals_until = pair.elapsed() + Duration::from_millis(450);
    let start = pair.start;
    let clock = std::rc::Rc::new(std::cell::Cell::new(pair.now));
    let seen = clock.clone();
    pair.filter = Box::new(move |side, p| {
        !(side == Side::B && p.final_ && seen.get() - start < drop_finals_until)
    });
    let now = pair.now;
    pair.a
        .set_intervals(now, Duration::from_millis(500), Duration::from_millis(100))
        .unwrap();
    assert!(pair.a.poll_active());
    // Still the old rate while unconfirmed.
    assert_eq!(pair.a.transmit_interval(), 100 * MS);
    let mut polls = 0;
    while pair.elapsed() < drop_finals_until {
        pair.run_for(10 * MS);
        clock.set(pair.now);
        assert!(pair.a.poll_active());
        assert_eq!(pair.a.transmit_interval(), 100 * MS);
        polls = pair.sent_times(Side::A, |p| p.poll).len();
    }
    assert!(polls >= 4, "A polled {polls} times");
    pair.run_for(Duration::from_millis(300));
    clock.set(pair.now);
    assert!(!pair.a.poll_active());
    assert_eq!(pair.a.transmit_interval(), 500 * MS);
    // B learnt it from the first Poll already: its detection time grew
    // before A slowed down.
    assert_eq!(pair.b.detection_time(), Some(1500 * MS));
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.a.state(), State::Up);
    assert_eq!(pair.b.state(), State::Up);
    assert_eq!(pair.events_of(Side::B), [Event::Up]);
}

#[test]
fn faster_required_rx_keeps_old_detection_time_until_final() {
    let mut pair = Pair::new(config(1, 100, 200, 3), config(2, 100, 100, 3));
    pair.run_until(Duration::from_secs(2));
    assert_eq!(pair.a.detection_time(), Some(600 * MS));
    let now = pair.now;
    // Hold B's answers back by cutting B → A for a moment.
    pair.b_to_a = false;
    pair.a
        .set_intervals(now, Duration::from_millis(100), Duration::from_millis(100))
        .unwrap();
    assert_eq!(pair.a.detection_time(), Some(600 * MS), "not yet confirmed");
    pair.run_for(150 * MS);
    pair.b_to_a = true;
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.a.detection_time(), Some(300 * MS));
    assert_eq!(pair.a.state(), State::Up);
}

#[test]
fn poll_from_remote_is_answered_at_once_with_final() {
    let (mut s, now) = single(config(5, 100, 100, 3));
    let mut rng = Rng(3);
    s.handle_timeout(now, &mut || rng.next());
    assert!(s.poll_transmit().is_some());
    let mut p = ControlPacket {
        diag: Diagnostic::None,
        state: State::Down,
        poll: true,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discr: 99,
        your_discr: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 50_000,
        required_min_echo_rx_us: 0,
    };
    s.handle_packet(now + MS, &p).unwrap();
    // The state change (Down → Init) and the answer.
    let out: Vec<ControlPacket> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert!(out
        .iter()
        .any(|o| o.final_ && !o.poll && o.your_discr == 99));
    assert!(out.iter().all(|o| o.state == State::Init));

    // Another Poll without a state change: only the Final goes out.
    p.state = State::Down;
    p.your_discr = 5;
    s.handle_packet(now + 2 * MS, &p).unwrap();
    let out: Vec<ControlPacket> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert_eq!(out.len(), 1);
    assert!(out[0].final_);
}

#[test]
fn other_sessions_packets_are_refused() {
    let (mut s, now) = single(config(5, 100, 100, 3));
    let p = ControlPacket {
        diag: Diagnostic::None,
        state: State::Up,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discr: 99,
        your_discr: 6,
        desired_min_tx_us: 100_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
    };
    assert_eq!(s.handle_packet(now, &p), Err(Discard::YourDiscriminator(6)));
    assert_eq!(s.remote_discr(), 0);
    assert_eq!(s.state(), State::Down);
}

#[test]
fn remote_asking_for_silence_gets_no_periodic_packets() {
    let (mut s, now) = single(config(5, 100, 100, 3));
    let mut rng = Rng(4);
    s.handle_timeout(now, &mut || rng.next());
    while s.poll_transmit().is_some() {}
    let p = ControlPacket {
        diag: Diagnostic::None,
        state: State::AdminDown,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discr: 99,
        your_discr: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 0,
        required_min_echo_rx_us: 0,
    };
    s.handle_packet(now + MS, &p).unwrap();
    // Only the detection timer is left.
    assert_eq!(s.poll_timeout(), Some(now + MS + Duration::from_secs(3)));
    s.handle_timeout(now + Duration::from_secs(2), &mut || rng.next());
    assert!(s.poll_transmit().is_none());
    // Silence for a detection time while Down: the remote is forgotten
    // and we start sending again.
    s.handle_timeout(now + MS + Duration::from_secs(3), &mut || rng.next());
    assert_eq!(s.remote_discr(), 0);
    assert_eq!(s.state(), State::Down);
    assert!(s.poll_timeout().is_some());
    assert!(s.events.is_empty(), "nothing to report: it was never up");
}

#[test]
fn init_times_out_without_an_event() {
    let (mut s, now) = single(config(5, 100, 100, 3));
    let p = ControlPacket {
        diag: Diagnostic::None,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 2,
        my_discr: 99,
        your_discr: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
    };
    s.handle_packet(now, &p).unwrap();
    assert_eq!(s.state(), State::Init);
    let deadline = now + Duration::from_secs(2);
    let mut rng = Rng(5);
    s.handle_timeout(deadline - MS, &mut || rng.next());
    assert_eq!(s.state(), State::Init);
    s.handle_timeout(deadline, &mut || rng.next());
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.local_diag(), Diagnostic::ControlDetectionTimeExpired);
    assert_eq!(s.poll_event(), None);
}

fn arb_packet() -> impl Strategy<Value = ControlPacket> {
    (
        0u8..4,
        any::<bool>(),
        any::<bool>(),
        1u8..=5,
        prop_oneof![Just(0u32), Just(1u32), 2u32..5],
        prop_oneof![
            Just(0u32),
            Just(1u32),
            Just(100_000u32),
            Just(1_000_000u32),
            any::<u32>()
        ],
        prop_oneof![
            Just(0u32),
            Just(1u32),
            Just(100_000u32),
            Just(1_000_000u32),
            any::<u32>()
        ],
    )
        .prop_map(|(state, poll, fin, mult, your, tx, rx)| ControlPacket {
            diag: Diagnostic::None,
            state: State::from_code(state),
            poll,
            final_: fin && !poll,
            control_plane_independent: false,
            demand: false,
            detect_mult: mult,
            my_discr: 77,
            your_discr: your,
            desired_min_tx_us: tx,
            required_min_rx_us: rx,
            required_min_echo_rx_us: 0,
        })
}

#[derive(Debug, Clone)]
enum Input {
    Packet(ControlPacket),
    Wait(u32),
    Timeout,
    AdminDown,
    AdminUp,
}

fn arb_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => arb_packet().prop_map(Input::Packet),
        2 => (0u32..2_000_000).prop_map(Input::Wait),
        2 => Just(Input::Timeout),
        1 => Just(Input::AdminDown),
        1 => Just(Input::AdminUp),
    ]
}

proptest! {
    /// Whatever arrives, in whatever order: no panic, every packet we
    /// send is valid, events alternate Up/Down, timers never go back.
    #[test]
    fn arbitrary_inputs_keep_the_session_sane(
        inputs in proptest::collection::vec(arb_input(), 1..80),
        seed in 1u64..,
    ) {
        let start = Instant::now();
        let mut now = start;
        let mut s = Session::new(config(2, 100, 100, 3), now).unwrap();
        let mut rng = Rng(seed);
        let mut was_up = false;
        for input in inputs {
            match input {
                Input::Packet(p) => {
                    let _ = s.handle_packet(now, &p);
                }
                Input::Wait(us) => now += Duration::from_micros(us.into()),
                Input::Timeout => {
                    if let Some(t) = s.poll_timeout() {
                        now = now.max(t);
                        s.handle_timeout(now, &mut || rng.next());
                    }
                }
                Input::AdminDown => s.admin_down(now),
                Input::AdminUp => s.admin_up(now),
            }
            while let Some(p) = s.poll_transmit() {
                prop_assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
                prop_assert_eq!(p.state, s.state());
                if p.state != State::Up {
                    prop_assert!(p.desired_min_tx_us >= SLOW_TX_US);
                }
            }
            while let Some(e) = s.poll_event() {
                match e {
                    Event::Up => prop_assert!(!was_up),
                    Event::Down(_) => prop_assert!(was_up),
                }
                was_up = matches!(e, Event::Up);
            }
            prop_assert_eq!(was_up, s.state() == State::Up);
            if s.poll_timeout().is_some_and(|t| t <= now) {
                // What is due runs; afterwards nothing is left due: the
                // timer never gets stuck in the past.
                s.handle_timeout(now, &mut || rng.next());
                let after = s.poll_timeout();
                prop_assert!(after.is_none_or(|a| a > now), "timer stuck at {:?}", after.map(|a| a - start));
                while s.poll_transmit().is_some() {}
                while let Some(e) = s.poll_event() {
                    was_up = matches!(e, Event::Up);
                }
            }
        }
    }
}
