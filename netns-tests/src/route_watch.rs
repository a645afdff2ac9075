//! Watching a namespace's kernel routing table as it changes, for
//! benchmarks: a thread holds a NETLINK_ROUTE socket subscribed to IPv4
//! route and nexthop notifications and keeps
//!
//! - the set of IPv4 routes of one protocol (vpngw's 200, BIRD's 12) in one
//!   table, with the time of the last change, so a bench can ask "when did
//!   the kernel hold all N" or "when did the last one leave";
//! - every nexthop group notification (id, members, time), so a bench can
//!   ask when a group lost a member.
//!
//! The socket's receive buffer is forced to 1 GiB, so a million route
//! notifications queue without loss; if the kernel still drops some
//! (ENOBUFS), the watcher says so ([`RouteWatch::overflowed`]) rather than
//! count wrong.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::traffic::in_netns;
use crate::Netns;

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEXTHOP: u16 = 104;
const RTM_DELNEXTHOP: u16 = 105;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTNLGRP_NEXTHOP: u32 = 32;
const RTA_DST: u16 = 1;
const RTA_TABLE: u16 = 15;
const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NLMSG_HDR: usize = 16;

/// What the watcher has seen.
#[derive(Debug)]
pub struct WatchState {
    /// Routes of the protocol in the table: (network, length).
    pub routes: HashSet<(u32, u8)>,
    /// When a route last came or went.
    pub last_route_change: Instant,
    /// Nexthop group notifications: when, the group id, its member ids
    /// (empty for a deleted group).
    pub groups: Vec<(Instant, u32, Vec<u32>)>,
    /// The current members of each group.
    pub members: HashMap<u32, Vec<u32>>,
    /// The kernel dropped notifications (ENOBUFS): counts are not exact.
    pub overflowed: bool,
}

/// A watcher thread over one namespace.
pub struct RouteWatch {
    state: Arc<(Mutex<WatchState>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RouteWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteWatch").finish()
    }
}

fn open_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket calls on a descriptor we own; option values
    // live on the stack for each call.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let owned = OwnedFd::from_raw_fd(fd);
        let size: libc::c_int = 1 << 30;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::addr_of!(size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut sa: libc::sockaddr_nl = std::mem::zeroed();
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = RTMGRP_IPV4_ROUTE;
        if libc::bind(
            fd,
            std::ptr::addr_of!(sa).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let group = RTNLGRP_NEXTHOP;
        if libc::setsockopt(
            fd,
            libc::SOL_NETLINK,
            libc::NETLINK_ADD_MEMBERSHIP,
            std::ptr::addr_of!(group).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        Ok(owned)
    }
}

/// The attributes of a message body after its fixed header of `fixed`
/// octets: (type, value).
fn attributes(body: &[u8], fixed: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = body.get(fixed..).unwrap_or(&[]);
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*rest.first()?, *rest.get(1)?]));
        let kind = u16::from_ne_bytes([*rest.get(2)?, *rest.get(3)?]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let value = rest.get(4..len)?;
        rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
        Some((kind, value))
    })
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

impl RouteWatch {
    /// Starts watching `ns` for IPv4 routes of `protocol` in `table`.
    pub fn start(ns: &Netns, protocol: u8, table: u32) -> RouteWatch {
        let fd = in_netns(ns, open_socket).expect("netlink socket for the route watcher");
        let state = Arc::new((
            Mutex::new(WatchState {
                routes: HashSet::new(),
                last_route_change: Instant::now(),
                groups: Vec::new(),
                members: HashMap::new(),
                overflowed: false,
            }),
            Condvar::new(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            while !sp.load(Ordering::Relaxed) {
                // SAFETY: recv into a buffer we own, of its length.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                let now = Instant::now();
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::ENOBUFS) {
                        st.0.lock().expect("watch state").overflowed = true;
                    }
                    continue;
                }
                let mut data = buf.get(..n as usize).unwrap_or(&[]);
                let (lock, cv) = &*st;
                let mut s = lock.lock().expect("watch state");
                while data.len() >= NLMSG_HDR {
                    let len = u32_of(data).unwrap_or(0) as usize;
                    let kind = u16::from_ne_bytes([data[4], data[5]]);
                    if len < NLMSG_HDR || len > data.len() {
                        break;
                    }
                    let body = &data[NLMSG_HDR..len];
                    match kind {
                        RTM_NEWROUTE | RTM_DELROUTE if body.len() >= 12 => {
                            let (family, dst_len, rt_table, proto) =
                                (body[0], body[1], body[4], body[5]);
                            let mut dst = 0;
                            let mut tbl = u32::from(rt_table);
                            for (t, v) in attributes(body, 12) {
                                match t {
                                    RTA_DST => dst = u32_of(v).map(u32::from_be).unwrap_or(0),
                                    RTA_TABLE => tbl = u32_of(v).unwrap_or(tbl),
                                    _ => {}
                                }
                            }
                            if family == libc::AF_INET as u8 && proto == protocol && tbl == table {
                                let changed = if kind == RTM_NEWROUTE {
                                    s.routes.insert((dst, dst_len))
                                } else {
                                    s.routes.remove(&(dst, dst_len))
                                };
                                if changed {
                                    s.last_route_change = now;
                                }
                            }
                        }
                        RTM_NEWNEXTHOP | RTM_DELNEXTHOP => {
                            let mut id = 0;
                            let mut members = Vec::new();
                            for (t, v) in attributes(body, 8) {
                                match t {
                                    NHA_ID => id = u32_of(v).unwrap_or(0),
                                    NHA_GROUP => {
                                        members = v.chunks_exact(8).filter_map(u32_of).collect()
                                    }
                                    _ => {}
                                }
                            }
                            if kind == RTM_DELNEXTHOP {
                                members.clear();
                                s.members.remove(&id);
                            } else if !members.is_empty() {
                                s.members.insert(id, members.clone());
                            }
                            if kind == RTM_DELNEXTHOP || !members.is_empty() {
                                s.groups.push((now, id, members));
                            }
                        }
                        _ => {}
                    }
                    data = data.get((len + 3) & !3..).unwrap_or(&[]);
                }
                drop(s);
                cv.notify_all();
            }
        });
        RouteWatch {
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until `done` holds and returns the time of the last route
    /// change then; `None` after `timeout`.
    pub fn wait(&self, timeout: Duration, done: impl Fn(&WatchState) -> bool) -> Option<Instant> {
        let (lock, cv) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut s = lock.lock().expect("watch state");
        loop {
            if done(&s) {
                return Some(s.last_route_change);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            s = cv.wait_timeout(s, left).expect("watch state").0;
        }
    }

    /// Reads the state.
    pub fn with<T>(&self, f: impl FnOnce(&WatchState) -> T) -> T {
        f(&self.state.0.lock().expect("watch state"))
    }

    /// Routes counted now.
    pub fn count(&self) -> usize {
        self.with(|s| s.routes.len())
    }

    /// Whether the kernel dropped notifications.
    pub fn overflowed(&self) -> bool {
        self.with(|s| s.overflowed)
    }
}

impl Drop for RouteWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
