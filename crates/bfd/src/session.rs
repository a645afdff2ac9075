//! One BFD session in Asynchronous mode (RFC 5880 §6.8), sans-IO.
//!
//! A [`Session`] is fed with received Control packets
//! ([`Session::handle_packet`]), the passing of time
//! ([`Session::handle_timeout`]) and operator commands
//! ([`Session::admin_down`], [`Session::admin_up`],
//! [`Session::set_intervals`]); it is drained of packets to send
//! ([`Session::poll_transmit`]), the next instant it wants to be woken at
//! ([`Session::poll_timeout`]) and events for its client
//! ([`Session::poll_event`]). It never reads a clock (every input carries
//! `now`) and draws no randomness of its own: the transmit jitter comes
//! from the `rng` the caller passes to [`Session::handle_timeout`].
//!
//! What it does:
//!
//! - The three-way handshake Down → Init → Up and back (§6.2, §6.8.6).
//! - Periodic transmission at max(bfd.DesiredMinTxInterval,
//!   bfd.RemoteMinRxInterval), reduced by a random 0–25 % (10–25 % when
//!   the detect multiplier is 1) (§6.8.7); nothing periodic while the
//!   remote asks for a Required Min RX of zero.
//! - The slow rate: bfd.DesiredMinTxInterval is at least 1 s while the
//!   session is not Up (§6.8.3); the configured rate is advertised once Up.
//! - Poll Sequences (§6.5) whenever the advertised intervals change while
//!   the remote is known; a slower transmit rate or a faster required
//!   receive rate only takes effect once the remote answered with Final
//!   (§6.8.3), the safe direction at once. Polls from the remote are
//!   answered at once with a Final packet.
//! - The detection time: the remote's Detect Mult × max(our
//!   RequiredMinRxInterval, the remote's DesiredMinTxInterval) (§6.8.4);
//!   silence for that long takes an Init or Up session Down with
//!   diagnostic 1 and forgets the remote's discriminator.
//! - AdminDown (§6.8.16): packets keep going out at the slow rate with
//!   state AdminDown, received packets are ignored.
//!
//! A packet goes out at once (besides the periodic ones) when the state
//! changes or a Poll Sequence starts, so the handshake and the switch to
//! the fast rate do not wait for the next 1 s tick.
//!
//! Not supported: Demand mode (we never set D; a remote that sets it still
//! gets periodic packets, which is harmless), the Echo function (we
//! advertise a Required Min Echo RX of zero) and authentication (see
//! [`crate::wire`]).
//!
//! Events: [`Event::Up`] when the session reaches Up, [`Event::Down`] when
//! it leaves Up, with the local diagnostic. A remote that goes AdminDown
//! takes us Down with [`Diagnostic::NeighborSignaledSessionDown`];
//! RFC 5882 §3.2 advises clients not to act on that case, which they can
//! tell apart with [`Session::remote_state`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::wire::{ControlPacket, Diagnostic, State};

/// The DesiredMinTxInterval floor while the session is not Up: 1 s
/// (RFC 5880 §6.8.3), in microseconds.
pub const SLOW_TX_US: u32 = 1_000_000;

/// What a session is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.LocalDiscr: our id of the session, non-zero and unique among
    /// this system's sessions.
    pub local_discr: u32,
    /// How often we would like to send once Up (bfd.DesiredMinTxInterval);
    /// at least 1 s is used while not Up. Non-zero, whole microseconds
    /// (finer parts are dropped), below 2^32 µs.
    pub desired_min_tx: Duration,
    /// How often we can receive (bfd.RequiredMinRxInterval); zero asks the
    /// remote to send nothing periodic. Below 2^32 µs.
    pub required_min_rx: Duration,
    /// bfd.DetectMult: how many intervals without a packet the remote may
    /// take before it declares us down. Non-zero.
    pub detect_mult: u8,
}

impl SessionConfig {
    /// Checks the values; the intervals in microseconds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.local_discr == 0 {
            return Err(ConfigError::ZeroDiscriminator);
        }
        if self.detect_mult == 0 {
            return Err(ConfigError::ZeroDetectMult);
        }
        if micros(self.desired_min_tx)? == 0 {
            return Err(ConfigError::ZeroDesiredMinTx);
        }
        micros(self.required_min_rx)?;
        Ok(())
    }
}

/// A [`SessionConfig`] that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The local discriminator is zero.
    #[error("the local discriminator must not be zero")]
    ZeroDiscriminator,
    /// The detect multiplier is zero.
    #[error("the detect multiplier must not be zero")]
    ZeroDetectMult,
    /// The desired transmit interval is below one microsecond.
    #[error("the desired min TX interval must be at least 1 µs")]
    ZeroDesiredMinTx,
    /// An interval does not fit the 32-bit microsecond field.
    #[error("interval {0:?} is longer than the 32-bit microsecond field allows")]
    IntervalTooLong(Duration),
}

fn micros(d: Duration) -> Result<u32, ConfigError> {
    u32::try_from(d.as_micros()).map_err(|_| ConfigError::IntervalTooLong(d))
}

fn us(v: u32) -> Duration {
    Duration::from_micros(v.into())
}

/// What a session tells its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// The session reached Up: the path works both ways.
    Up,
    /// The session left Up, for this reason (our bfd.LocalDiag).
    Down(Diagnostic),
}

/// Why [`Session::handle_packet`] ignored a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Discard {
    /// Your Discriminator is neither zero nor ours: not this session's.
    #[error("your discriminator {0:#x} is not this session's")]
    YourDiscriminator(u32),
    /// We are AdminDown: the remote's values were noted, nothing more
    /// (RFC 5880 §6.8.6).
    #[error("session is administratively down")]
    AdminDown,
}

/// What we know of the remote end (the bfd.Remote* variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Remote {
    discr: u32,
    state: State,
    diag: Diagnostic,
    desired_min_tx_us: u32,
    required_min_rx_us: u32,
    detect_mult: u8,
    demand: bool,
}

impl Remote {
    /// RFC 5880 §6.8.1 initial values (RemoteMinRxInterval 1 µs).
    const INITIAL: Remote = Remote {
        discr: 0,
        state: State::Down,
        diag: Diagnostic::None,
        desired_min_tx_us: 0,
        required_min_rx_us: 1,
        detect_mult: 0,
        demand: false,
    };
}

/// The intervals a Poll Sequence carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Advertised {
    desired_min_tx_us: u32,
    required_min_rx_us: u32,
}

/// One BFD session; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    /// The configured intervals in microseconds (validated).
    config_desired_min_tx_us: u32,
    config_required_min_rx_us: u32,
    state: State,
    local_diag: Diagnostic,
    remote: Remote,
    /// bfd.DesiredMinTxInterval and bfd.RequiredMinRxInterval: what our
    /// packets carry.
    advertised: Advertised,
    /// The values our timers use: they lag `advertised` in the unsafe
    /// direction until a Poll Sequence confirms it (RFC 5880 §6.8.3).
    tx_desired_in_force_us: u32,
    rx_required_in_force_us: u32,
    /// The Poll Sequence in progress, with the values it announces.
    poll: Option<Advertised>,
    /// The first periodic packet is due at this instant.
    start: Instant,
    last_tx: Option<Instant>,
    /// The reduction (parts per million) applied to the current interval,
    /// drawn at each periodic transmission.
    jitter_ppm: u32,
    /// When the last packet was accepted; None: no detection timer.
    last_rx: Option<Instant>,
    /// A state change or a new poll wants a packet out at once.
    triggered: bool,
    transmit: VecDeque<ControlPacket>,
    events: VecDeque<Event>,
}

impl Session {
    /// A session in state Down that sends its first packet at `now`.
    pub fn new(config: SessionConfig, now: Instant) -> Result<Session, ConfigError> {
        config.validate()?;
        let config_desired_min_tx_us = micros(config.desired_min_tx)?;
        let config_required_min_rx_us = micros(config.required_min_rx)?;
        let desired = config_desired_min_tx_us.max(SLOW_TX_US);
        Ok(Session {
            config,
            config_desired_min_tx_us,
            config_required_min_rx_us,
            state: State::Down,
            local_diag: Diagnostic::None,
            remote: Remote::INITIAL,
            advertised: Advertised {
                desired_min_tx_us: desired,
                required_min_rx_us: config_required_min_rx_us,
            },
            tx_desired_in_force_us: desired,
            rx_required_in_force_us: config_required_min_rx_us,
            poll: None,
            start: now,
            last_tx: None,
            jitter_ppm: jitter_range(config.detect_mult).0,
            last_rx: None,
            triggered: false,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    /// Processes a received Control packet (already decoded, so the
    /// context-free checks of RFC 5880 §6.8.6 passed) that the caller
    /// matched to this session: by Your Discriminator, or by addresses when
    /// that is zero.
    pub fn handle_packet(&mut self, now: Instant, packet: &ControlPacket) -> Result<(), Discard> {
        if packet.your_discr != 0 && packet.your_discr != self.config.local_discr {
            return Err(Discard::YourDiscriminator(packet.your_discr));
        }
        self.remote = Remote {
            discr: packet.my_discr,
            state: packet.state,
            diag: packet.diag,
            desired_min_tx_us: packet.desired_min_tx_us,
            required_min_rx_us: packet.required_min_rx_us,
            detect_mult: packet.detect_mult,
            demand: packet.demand,
        };
        if packet.final_ {
            self.terminate_poll();
        }
        let next = match self.state {
            State::AdminDown => {
                self.flush_triggered(now);
                return Err(Discard::AdminDown);
            }
            State::Down => match packet.state {
                State::Down => Some((State::Init, Diagnostic::None)),
                State::Init => Some((State::Up, Diagnostic::None)),
                State::AdminDown | State::Up => None,
            },
            State::Init => match packet.state {
                State::AdminDown => Some((State::Down, Diagnostic::NeighborSignaledSessionDown)),
                State::Init | State::Up => Some((State::Up, Diagnostic::None)),
                State::Down => None,
            },
            State::Up => match packet.state {
                State::AdminDown | State::Down => {
                    Some((State::Down, Diagnostic::NeighborSignaledSessionDown))
                }
                State::Init | State::Up => None,
            },
        };
        self.last_rx = Some(now);
        if let Some((state, diag)) = next {
            self.set_state(state, diag);
        }
        if packet.poll {
            // RFC 5880 §6.5: answer at once, whatever the timers say.
            let answer = self.packet(false, true);
            self.transmit.push_back(answer);
        }
        self.flush_triggered(now);
        Ok(())
    }

    /// Runs the timers due at `now`: the detection time, then the periodic
    /// transmission. `rng` gives the random numbers for the jitter.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut dyn FnMut() -> u32) {
        if self.detection_deadline().is_some_and(|at| now >= at) {
            self.detection_time_expired();
        }
        self.flush_triggered(now);
        if self.next_transmit().is_some_and(|at| now >= at) {
            let (low, high) = jitter_range(self.config.detect_mult);
            self.jitter_ppm = low + rng() % (high - low + 1);
            self.last_tx = Some(now);
            let packet = self.packet(self.poll.is_some(), false);
            self.transmit.push_back(packet);
        }
    }

    /// The next packet to send, if any.
    pub fn poll_transmit(&mut self) -> Option<ControlPacket> {
        self.transmit.pop_front()
    }

    /// When [`Session::handle_timeout`] wants to run next. None while
    /// nothing is scheduled (the remote asked for no packets, and no
    /// detection timer runs).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_transmit(), self.detection_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event for the client, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Takes the session administratively down (RFC 5880 §6.8.16): state
    /// AdminDown with diagnostic 7, announced at once and then at the slow
    /// rate; received packets are ignored until [`Session::admin_up`].
    pub fn admin_down(&mut self, now: Instant) {
        if self.state == State::AdminDown {
            return;
        }
        self.poll = None;
        self.set_state(State::AdminDown, Diagnostic::AdministrativelyDown);
        self.last_rx = None;
        self.flush_triggered(now);
    }

    /// Ends AdminDown: the session is Down and starts over.
    pub fn admin_up(&mut self, now: Instant) {
        if self.state != State::AdminDown {
            return;
        }
        self.set_state(State::Down, Diagnostic::None);
        self.flush_triggered(now);
    }

    /// Changes the configured intervals. While the session is Up this
    /// starts a Poll Sequence; a slower transmit or a faster receive rate
    /// takes effect when it completes.
    pub fn set_intervals(
        &mut self,
        now: Instant,
        desired_min_tx: Duration,
        required_min_rx: Duration,
    ) -> Result<(), ConfigError> {
        let config = SessionConfig {
            desired_min_tx,
            required_min_rx,
            ..self.config
        };
        config.validate()?;
        self.config = config;
        self.config_desired_min_tx_us = micros(desired_min_tx)?;
        self.config_required_min_rx_us = micros(required_min_rx)?;
        self.apply_intervals();
        self.flush_triggered(now);
        Ok(())
    }

    /// bfd.SessionState.
    pub fn state(&self) -> State {
        self.state
    }

    /// bfd.LocalDiag: why the state last changed.
    pub fn local_diag(&self) -> Diagnostic {
        self.local_diag
    }

    /// The configuration (with the intervals last set).
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// bfd.LocalDiscr.
    pub fn local_discr(&self) -> u32 {
        self.config.local_discr
    }

    /// bfd.RemoteDiscr; zero while unknown.
    pub fn remote_discr(&self) -> u32 {
        self.remote.discr
    }

    /// bfd.RemoteSessionState.
    pub fn remote_state(&self) -> State {
        self.remote.state
    }

    /// The diagnostic the remote last sent.
    pub fn remote_diag(&self) -> Diagnostic {
        self.remote.diag
    }

    /// Whether the remote last asked for Demand mode (which we do not
    /// implement; we keep sending).
    pub fn remote_demand(&self) -> bool {
        self.remote.demand
    }

    /// Whether a Poll Sequence of ours is waiting for its Final.
    pub fn poll_active(&self) -> bool {
        self.poll.is_some()
    }

    /// The transmit interval before jitter: max(DesiredMinTxInterval in
    /// force, the remote's RequiredMinRxInterval).
    pub fn transmit_interval(&self) -> Duration {
        us(self
            .tx_desired_in_force_us
            .max(self.remote.required_min_rx_us))
    }

    /// The detection time (RFC 5880 §6.8.4); None until the remote's
    /// Detect Mult is known.
    pub fn detection_time(&self) -> Option<Duration> {
        if self.remote.detect_mult == 0 {
            return None;
        }
        let interval = self
            .rx_required_in_force_us
            .max(self.remote.desired_min_tx_us);
        Some(us(interval) * u32::from(self.remote.detect_mult))
    }

    fn next_transmit(&self) -> Option<Instant> {
        if self.remote.required_min_rx_us == 0 {
            return None;
        }
        match self.last_tx {
            None => Some(self.start),
            Some(last) => last.checked_add(jittered(self.transmit_interval(), self.jitter_ppm)),
        }
    }

    fn detection_deadline(&self) -> Option<Instant> {
        match self.state {
            State::AdminDown => None,
            State::Down | State::Init | State::Up => {
                self.last_rx?.checked_add(self.detection_time()?)
            }
        }
    }

    fn detection_time_expired(&mut self) {
        self.last_rx = None;
        self.remote = Remote::INITIAL;
        self.poll = None;
        match self.state {
            State::Init | State::Up => {
                self.set_state(State::Down, Diagnostic::ControlDetectionTimeExpired);
            }
            State::AdminDown | State::Down => {}
        }
    }

    fn set_state(&mut self, state: State, diag: Diagnostic) {
        let old = self.state;
        if old == state {
            return;
        }
        self.state = state;
        self.local_diag = diag;
        if state == State::Up {
            self.events.push_back(Event::Up);
        } else if old == State::Up {
            self.events.push_back(Event::Down(diag));
        }
        self.apply_intervals();
        self.triggered = true;
    }

    /// Recomputes the advertised intervals from the configuration and the
    /// state; a change starts a Poll Sequence.
    fn apply_intervals(&mut self) {
        let up = self.state == State::Up;
        let desired = if up {
            self.config_desired_min_tx_us
        } else {
            self.config_desired_min_tx_us.max(SLOW_TX_US)
        };
        let wanted = Advertised {
            desired_min_tx_us: desired,
            required_min_rx_us: self.config_required_min_rx_us,
        };
        if wanted == self.advertised {
            return;
        }
        self.advertised = wanted;
        if !up || wanted.desired_min_tx_us < self.tx_desired_in_force_us {
            self.tx_desired_in_force_us = wanted.desired_min_tx_us;
        }
        if !up || wanted.required_min_rx_us > self.rx_required_in_force_us {
            self.rx_required_in_force_us = wanted.required_min_rx_us;
        }
        self.request_poll();
    }

    fn request_poll(&mut self) {
        // Nobody to ask, or nobody listening to us.
        if self.remote.discr == 0 || self.state == State::AdminDown {
            return;
        }
        if self.poll.is_none() {
            self.poll = Some(self.advertised);
            self.triggered = true;
        }
        // A poll in progress carries on; its Final finds the values
        // changed and starts another (see `terminate_poll`).
    }

    fn terminate_poll(&mut self) {
        let Some(polled) = self.poll.take() else {
            return;
        };
        if polled == self.advertised {
            self.tx_desired_in_force_us = polled.desired_min_tx_us;
            self.rx_required_in_force_us = polled.required_min_rx_us;
        } else {
            self.request_poll();
        }
    }

    fn flush_triggered(&mut self, now: Instant) {
        if !std::mem::take(&mut self.triggered) {
            return;
        }
        // A remote that wants no packets gets none (RFC 5880 §6.8.7).
        if self.remote.required_min_rx_us == 0 {
            return;
        }
        let packet = self.packet(self.poll.is_some(), false);
        self.transmit.push_back(packet);
        self.last_tx = Some(now);
    }

    fn packet(&self, poll: bool, final_: bool) -> ControlPacket {
        ControlPacket {
            diag: self.local_diag,
            state: self.state,
            poll,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discr: self.config.local_discr,
            your_discr: self.remote.discr,
            desired_min_tx_us: self.advertised.desired_min_tx_us,
            required_min_rx_us: self.advertised.required_min_rx_us,
            required_min_echo_rx_us: 0,
        }
    }
}

/// The jitter, as a reduction of the interval in parts per million:
/// 0–25 %, or 10–25 % with a detect multiplier of 1 (RFC 5880 §6.8.7).
fn jitter_range(detect_mult: u8) -> (u32, u32) {
    if detect_mult == 1 {
        (100_000, 250_000)
    } else {
        (0, 250_000)
    }
}

fn jittered(interval: Duration, reduction_ppm: u32) -> Duration {
    let keep = 1_000_000u128.saturating_sub(reduction_ppm.into());
    let nanos = interval.as_nanos().saturating_mul(keep) / 1_000_000;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
