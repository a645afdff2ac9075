//! vpngw-bfd against BIRD 2's BFD over a veth link (needs root). Our
//! driver runs in this process: a thread enters our namespace (setns)
//! before it creates its tokio runtime and sockets.
//!
//! ```text
//!   [ours] g1 169.254.30.2/30 ──veth── 169.254.30.1/30 b1 [BIRD]
//!   vpngw-bfd 100 ms x 3                 protocol bfd, 100 ms x 3,
//!                                        neighbor 169.254.30.2
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vpngw_bfd::driver::{Counters, SessionStatus};
use vpngw_bfd::{Bfd, Diagnostic, DriverConfig, Event, Handle, SessionConfig, SessionId, State};
use vpngw_netns_tests::netns::{run_checked, unique_id};
use vpngw_netns_tests::{veth, wait_until, Netns, Proc, WorkDir};

const OURS: &str = "169.254.30.2";
const BIRDS: &str = "169.254.30.1";
/// Generous bound on noticing a failure whose detection time is 300 ms.
const DETECT_BOUND: Duration = Duration::from_secs(2);

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

/// Our BFD driver on its own thread inside a namespace; events arrive
/// stamped with when the driver reported them.
struct Ours {
    handle: Handle,
    events: mpsc::Receiver<(Instant, SessionId, Event)>,
    thread: Option<JoinHandle<()>>,
    rt: tokio::runtime::Runtime,
}

impl Ours {
    fn start(ns: &Netns) -> Ours {
        let (handle_tx, handle_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let thread = in_netns(ns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (handle, mut rx) = Bfd::spawn(DriverConfig::default()).unwrap();
                handle_tx.send(handle).unwrap();
                while let Some((id, event)) = rx.recv().await {
                    let _ = event_tx.send((Instant::now(), id, event));
                }
            });
        });
        Ours {
            handle: handle_rx.recv().unwrap(),
            events,
            thread: Some(thread),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn add(&self, local: &str, peer: &str, config: SessionConfig) -> SessionId {
        let local: IpAddr = local.parse().unwrap();
        let peer: IpAddr = peer.parse().unwrap();
        self.rt
            .block_on(self.handle.add_session(local, peer, config))
            .unwrap()
    }

    fn status(&self, id: SessionId) -> SessionStatus {
        self.rt
            .block_on(self.handle.status(id))
            .expect("session exists")
    }

    fn counters(&self) -> Counters {
        self.rt
            .block_on(self.handle.counters())
            .expect("driver running")
    }

    /// The next event, within `within`.
    fn next_event(&self, within: Duration) -> (Instant, SessionId, Event) {
        self.events
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("no BFD event within {within:?}: {e}"))
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

struct Bird {
    proc: Proc,
    ctl: String,
}

impl Bird {
    fn start(ns: &Netns, dir: &WorkDir) -> Bird {
        vpngw_netns_tests::require_program("bird", "bird2");
        let conf = dir.write(
            "bird.conf",
            &format!(
                r#"router id {BIRDS};
log stderr all;

protocol device {{
    scan time 1;
}}

protocol bfd {{
    interface "b1" {{
        min rx interval 100 ms;
        min tx interval 100 ms;
        multiplier 3;
    }};
    neighbor {OURS};
}}
"#
            ),
        );
        let ctl = dir.join("bird.ctl").to_str().unwrap().to_string();
        let pid = dir.join("bird.pid");
        let proc = Proc::spawn(
            ns,
            "bird",
            &[
                "bird",
                "-f",
                "-c",
                conf.to_str().unwrap(),
                "-s",
                &ctl,
                "-P",
                pid.to_str().unwrap(),
            ],
            &[],
            &dir.join("bird.log"),
        );
        let bird = Bird { proc, ctl };
        wait_until("BIRD's control socket", Duration::from_secs(10), || {
            if std::path::Path::new(&bird.ctl).exists() {
                Ok(())
            } else {
                Err(bird.proc.log())
            }
        });
        bird
    }

    /// `birdc show bfd sessions`.
    fn sessions(&self) -> String {
        run_checked(
            std::process::Command::new("birdc").args(["-s", &self.ctl, "show", "bfd", "sessions"]),
        )
    }

    /// BIRD's line for our session: Ok when it is in `state`.
    fn session_in(&self, state: &str) -> Result<String, String> {
        let out = self.sessions();
        match out.lines().find(|l| l.starts_with(OURS)) {
            Some(line) if line.split_whitespace().nth(2) == Some(state) => Ok(line.to_string()),
            Some(_) | None => Err(out),
        }
    }
}

fn fast() -> SessionConfig {
    SessionConfig {
        local_discr: 0,
        desired_min_tx: Duration::from_millis(100),
        required_min_rx: Duration::from_millis(100),
        detect_mult: 3,
    }
}

#[test]
fn bfd_with_bird_comes_up_and_detects_failures() {
    vpngw_netns_tests::require_root();
    let id = unique_id();
    let dir = WorkDir::new(&id);
    let gw = Netns::new(&id, "bfd-gw");
    let bird_ns = Netns::new(&id, "bfd-b1");
    veth(&gw, "g1", &bird_ns, "b1");
    bird_ns.ip(&format!("addr add {BIRDS}/30 dev b1"));
    let mut bird = Bird::start(&bird_ns, &dir);
    let ours = Ours::start(&gw);

    // The session is added before our address exists, as a tunnel's may
    // not yet (IP_FREEBIND): it starts, but its packets cannot leave.
    let session = ours.add(OURS, BIRDS, fast());
    std::thread::sleep(Duration::from_millis(1500));
    let counters = ours.counters();
    assert!(counters.send_errors >= 1, "{counters:?}");
    assert_eq!(counters.sent, 0, "{counters:?}");
    assert_eq!(ours.status(session).state, State::Down);

    // The address appears. BIRD sends at its 1 s idle rate until it
    // hears us; we answer at once, so the handshake takes about one
    // interval of ours or BIRD's.
    let added = Instant::now();
    gw.ip(&format!("addr add {OURS}/30 dev g1"));
    let (at, sid, event) = ours.next_event(Duration::from_secs(10));
    assert_eq!((sid, event), (session, Event::Up));
    println!(
        "our session up {:?} after our address was added",
        at - added
    );
    let line = wait_until("BIRD's session Up", Duration::from_secs(5), || {
        bird.session_in("Up")
    });
    println!("BIRD: {line}");

    // The Poll Sequences moved both sides to 100 ms: our interval and
    // detection time, and BIRD's interval (0.100) and timeout (0.300),
    // which it only computes from our Desired Min TX once it learnt it.
    let line = wait_until("both sides at 100 ms x 3", Duration::from_secs(5), || {
        let s = ours.status(session);
        let line = bird.session_in("Up")?;
        let cols: Vec<&str> = line.split_whitespace().collect();
        let bird_fast = cols.len() >= 6 && cols[4] == "0.100" && cols[5] == "0.300";
        if s.transmit_interval == Duration::from_millis(100)
            && s.detection_time == Some(Duration::from_millis(300))
            && bird_fast
        {
            Ok(line)
        } else {
            Err(format!("ours: {s:?}\nBIRD: {line}"))
        }
    });
    println!("BIRD at full rate: {line}");
    let status = ours.status(session);
    assert_eq!(status.state, State::Up);
    assert_eq!(status.remote_state, State::Up);
    assert!((49152..=65535).contains(&status.source_port));

    // A silent failure: BIRD's end of the link goes down. We notice
    // within the detection time.
    std::thread::sleep(Duration::from_millis(500));
    let cut = Instant::now();
    bird_ns.ip("link set b1 down");
    let (at, sid, event) = ours.next_event(DETECT_BOUND + Duration::from_secs(1));
    let detected = at - cut;
    println!("link down: we reported {event:?} after {detected:?} (detection time 300 ms)");
    assert_eq!(
        (sid, event),
        (
            session,
            Event::Down(Diagnostic::ControlDetectionTimeExpired)
        )
    );
    assert!(detected < DETECT_BOUND, "detected only after {detected:?}");

    // The link comes back: so does the session.
    let healed = Instant::now();
    bird_ns.ip("link set b1 up");
    let (at, _, event) = ours.next_event(Duration::from_secs(20));
    assert_eq!(event, Event::Up);
    println!("link up: session up again after {:?}", at - healed);
    wait_until("BIRD's session Up again", Duration::from_secs(5), || {
        bird.session_in("Up")
    });

    // We go AdminDown: BIRD sees it at once, without waiting for its
    // detection time.
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    ours.handle.admin_down(session);
    let (_, _, event) = ours.next_event(Duration::from_secs(1));
    assert_eq!(event, Event::Down(Diagnostic::AdministrativelyDown));
    let line = wait_until("BIRD's session Down", Duration::from_secs(2), || {
        bird.session_in("Down")
    });
    println!(
        "admin down: BIRD shows Down after {:?}: {line}",
        t.elapsed()
    );
    ours.handle.admin_up(session);
    let (_, _, event) = ours.next_event(Duration::from_secs(10));
    assert_eq!(event, Event::Up);

    // BIRD stops: we report Down in time (BIRD may say AdminDown on its
    // way out, else the detection time runs out).
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    bird.proc.stop();
    let (at, sid, event) = ours.next_event(DETECT_BOUND + Duration::from_secs(1));
    let noticed = at - t;
    println!("BIRD stopped: we reported {event:?} after {noticed:?}");
    assert_eq!(sid, session);
    assert!(matches!(event, Event::Down(_)));
    assert!(noticed < DETECT_BOUND, "noticed only after {noticed:?}");
    let status = ours.status(session);
    assert_eq!(status.state, State::Down);
}
