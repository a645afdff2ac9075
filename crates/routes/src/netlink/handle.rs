//! A [`Programmer`] on its own thread, for a daemon that must not block.
//!
//! Commands go in through a channel (sending never blocks) and wake the
//! thread through an eventfd; the thread also wakes on kernel
//! notifications. Each wake-up takes every queued command, then the
//! notifications, then applies once — so a burst of best-path changes
//! becomes a few large batches. What happens comes back through the
//! `on_event` callback, called on the driver thread (an async daemon gives
//! it a closure that sends into its own channel).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use ipnet::IpNet;

use super::{enter_netns, ApplyReport, Config, Error, Event, Programmer};
use crate::nexthop::{Tunnel, TunnelId};
use crate::table::{Mode, RouteTable};

/// An apply of this many route operations leaves enough freed memory
/// behind to be worth handing back ([`crate::release_free_memory`]).
const LARGE_APPLY: usize = 10_000;

/// A look at the route table, run on the driver thread.
type Inspect = Box<dyn FnOnce(&RouteTable) + Send>;

/// A change for the route programmer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Add or update a tunnel, with whether it is up.
    SetTunnel(Tunnel, bool),
    /// Forget a tunnel.
    RemoveTunnel(TunnelId),
    /// The tunnel went up or down.
    SetTunnelUp(TunnelId, bool),
    /// Route a prefix through these tunnels (ECMP); none withdraws it.
    SetRoute(IpNet, Vec<TunnelId>),
    /// The same with a tunnel set shared by many prefixes (a full table
    /// goes through one or two sets): nothing is allocated per prefix.
    SetRouteShared(IpNet, Arc<[TunnelId]>),
    /// Withdraw a prefix.
    Withdraw(IpNet),
    /// End of graceful restart: remove what was adopted and not set again.
    SweepStale,
}

/// What the driver thread reports through the callback.
#[derive(Debug)]
pub enum Notice {
    /// A kernel event, already acted on.
    Event(Event),
    /// Operations the kernel refused in an apply.
    Failed(Vec<super::OpError>),
    /// A driver error (the thread goes on; the next apply resyncs).
    Error(Error),
}

enum Msg {
    Command(Command),
    Sync(Sender<Result<ApplyReport, Error>>),
    Inspect(Inspect),
    Stop {
        keep: bool,
        reply: Sender<Result<(), Error>>,
    },
}

/// The running route programmer thread.
#[derive(Debug)]
pub struct Handle {
    tx: Sender<Msg>,
    /// Commands sent and not yet taken by the thread.
    backlog: Arc<AtomicUsize>,
    wake: Arc<OwnedFd>,
    mode: Mode,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Command(c) => write!(f, "Command({c:?})"),
            Msg::Sync(_) => f.write_str("Sync"),
            Msg::Inspect(_) => f.write_str("Inspect"),
            Msg::Stop { keep, .. } => write!(f, "Stop {{ keep: {keep} }}"),
        }
    }
}

impl Handle {
    /// Starts the driver thread: it enters `netns` if given (a path such as
    /// `/run/netns/NAME`), opens a [`Programmer`] with `config` (purging or
    /// adopting what an earlier run left) and waits for commands. Returns
    /// once the programmer is open, or its error.
    pub fn spawn(
        config: Config,
        netns: Option<PathBuf>,
        on_event: impl FnMut(Notice) + Send + 'static,
    ) -> Result<Handle, Error> {
        // SAFETY: eventfd(2) with valid flags; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return Err(Error::io("create eventfd", errno));
        }
        // SAFETY: fd is a fresh descriptor we own.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_wake = Arc::clone(&wake);
        let backlog = Arc::new(AtomicUsize::new(0));
        let thread_backlog = Arc::clone(&backlog);
        let thread = std::thread::Builder::new()
            .name("vpngw-routes".into())
            .spawn(move || {
                let opened = netns
                    .as_deref()
                    .map_or(Ok(()), enter_netns)
                    .and_then(|()| Programmer::open(config));
                match opened {
                    Ok(programmer) => {
                        let _ = ready_tx.send(Ok(programmer.mode()));
                        run(programmer, &rx, &thread_wake, &thread_backlog, on_event);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| {
                Error::io(
                    "spawn route thread",
                    e.raw_os_error().unwrap_or(libc::EAGAIN),
                )
            })?;
        let mode = ready_rx.recv().map_err(|_| Error::Stopped)??;
        Ok(Handle {
            tx,
            backlog,
            wake,
            mode,
            thread: Some(thread),
        })
    }

    /// The mode the programmer runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Queues a command; never blocks.
    pub fn send(&self, command: Command) -> Result<(), Error> {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        self.post(Msg::Command(command))
    }

    /// Queues a command without waking the thread: for a burst (a full
    /// table's best paths), so the thread wakes once for many commands and
    /// sends them to the kernel in large batches. [`Handle::wake`] after.
    pub fn queue(&self, command: Command) -> Result<(), Error> {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Msg::Command(command))
            .map_err(|_| Error::Stopped)
    }

    /// Wakes the thread for what [`Handle::queue`] left.
    pub fn wake(&self) -> Result<(), Error> {
        self.notify()
    }

    /// How many commands are queued and not yet taken by the thread, as a
    /// counter another thread can read: a producer that can wait (the BGP
    /// speaker, reading peers) holds back while it is high — the kernel is
    /// behind.
    pub fn backlog_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.backlog)
    }

    /// Waits until everything sent so far is applied; returns what the
    /// applies since the previous sync did. Blocks: from async code, call it on a blocking thread.
    pub fn sync(&self) -> Result<ApplyReport, Error> {
        let (reply, answer) = mpsc::channel();
        self.post(Msg::Sync(reply))?;
        answer.recv().map_err(|_| Error::Stopped)?
    }

    /// Runs `f` on the route table on the driver thread, after everything
    /// sent so far is applied (to show what is installed and why). Never
    /// blocks: `f` answers through whatever channel it captured.
    pub fn inspect(&self, f: impl FnOnce(&RouteTable) + Send + 'static) -> Result<(), Error> {
        self.post(Msg::Inspect(Box::new(f)))
    }

    /// Stops the thread after applying what is queued: removes every route
    /// and nexthop of ours unless `keep` (graceful restart). Blocks.
    pub fn stop(mut self, keep: bool) -> Result<(), Error> {
        let (reply, answer) = mpsc::channel();
        self.post(Msg::Stop { keep, reply })?;
        let result = answer.recv().map_err(|_| Error::Stopped)?;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        result
    }

    fn post(&self, msg: Msg) -> Result<(), Error> {
        self.tx.send(msg).map_err(|_| Error::Stopped)?;
        self.notify()
    }

    fn notify(&self) -> Result<(), Error> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        let rc = unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if rc < 0 {
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            // EAGAIN: the counter is saturated, the thread is awake anyway.
            if errno != libc::EAGAIN {
                return Err(Error::io("wake route thread", errno));
            }
        }
        Ok(())
    }
}

impl Drop for Handle {
    /// Without [`Handle::stop`], the thread is told to stop and remove our
    /// routes (as `stop(false)`); the drop does not wait for it.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let (reply, _) = mpsc::channel();
            let _ = self.post(Msg::Stop { keep: false, reply });
        }
    }
}

/// The driver loop: wait, take commands and notifications, apply.
fn run(
    mut programmer: Programmer,
    rx: &Receiver<Msg>,
    wake: &OwnedFd,
    backlog: &AtomicUsize,
    mut on_event: impl FnMut(Notice),
) {
    // What the applies since the last sync did (a sync may find its
    // commands applied by an earlier wake-up).
    let mut since_sync = ApplyReport::default();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: programmer.event_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of two pollfd.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            if errno != libc::EINTR {
                on_event(Notice::Error(Error::io("poll", errno)));
            }
            continue;
        }
        let mut counter: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 (nonblocking eventfd).
        let _ = unsafe { libc::read(wake.as_raw_fd(), (&mut counter as *mut u64).cast(), 8) };

        let mut syncs = Vec::new();
        let mut inspections: Vec<Inspect> = Vec::new();
        let mut stop = None;
        loop {
            match rx.try_recv() {
                Ok(Msg::Command(command)) => {
                    backlog.fetch_sub(1, Ordering::Relaxed);
                    if let Err(e) = execute(&mut programmer, command) {
                        on_event(Notice::Error(e));
                    }
                }
                Ok(Msg::Sync(reply)) => syncs.push(reply),
                Ok(Msg::Inspect(f)) => inspections.push(f),
                Ok(Msg::Stop { keep, reply }) => {
                    stop = Some((keep, reply));
                    break;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // The handle is gone without a stop: clean up.
                    let _ = programmer.apply();
                    let _ = programmer.shutdown(false);
                    return;
                }
            }
        }
        match programmer.process_events() {
            Ok(events) => {
                for event in events {
                    on_event(Notice::Event(event));
                }
            }
            Err(e) => on_event(Notice::Error(e)),
        }
        let report = programmer.apply();
        match &report {
            Ok(r) => {
                if !r.failures.is_empty() {
                    on_event(Notice::Failed(r.failures.clone()));
                }
                if r.routes_replaced + r.routes_deleted >= LARGE_APPLY {
                    crate::release_free_memory();
                }
                since_sync.merge(r);
            }
            Err(e) => on_event(Notice::Error(e.clone())),
        }
        if !syncs.is_empty() {
            let answer = report.map(|_| std::mem::take(&mut since_sync));
            for reply in syncs {
                let _ = reply.send(answer.clone());
            }
        }
        for f in inspections {
            f(programmer.table());
        }
        if let Some((keep, reply)) = stop {
            let _ = reply.send(programmer.shutdown(keep));
            return;
        }
    }
}

fn execute(programmer: &mut Programmer, command: Command) -> Result<(), Error> {
    match command {
        Command::SetTunnel(tunnel, up) => programmer.set_tunnel(tunnel, up)?,
        Command::RemoveTunnel(id) => programmer.remove_tunnel(&id),
        Command::SetTunnelUp(id, up) => {
            programmer.set_tunnel_up(&id, up);
        }
        Command::SetRoute(prefix, tunnels) => programmer.set_route(prefix, tunnels),
        Command::SetRouteShared(prefix, tunnels) => programmer.set_route_shared(prefix, &tunnels),
        Command::Withdraw(prefix) => programmer.withdraw(&prefix),
        Command::SweepStale => programmer.sweep_stale(),
    }
    Ok(())
}
