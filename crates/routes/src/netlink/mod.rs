//! The rtnetlink driver: installs routes and nexthop objects, removes stale
//! ones at start, follows link events. The only I/O in this crate.
//!
//! [`Programmer`] is the synchronous driver: it owns a [`RouteTable`] and two
//! NETLINK_ROUTE sockets — one for requests (batches of up to
//! [`BATCH_BYTES`] in one `sendmsg`, the last message of each batch asking
//! for an ack; the kernel answers any failing message with its own error,
//! which is matched back to its operation by sequence number), and one
//! subscribed to link, route and nexthop notifications behind a BPF filter
//! that passes only link changes and deletions of our own objects.
//! [`Handle`] runs a `Programmer` on a dedicated thread for an async
//! daemon.

mod handle;
mod socket;
mod wire;

use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path as FsPath;

use ipnet::IpNet;

use crate::diff::{KernelState, Op, RouteTarget};
use crate::nexthop::{Family, NexthopObject, NhId, Tunnel, TunnelId, DEFAULT_ID_BASE};
use crate::table::{Mode, RouteTable};
use socket::Socket;
use wire::{MsgBuf, RouteKey};

pub use handle::{Command, Handle, Notice};

/// Our route protocol number unless configured otherwise (`proto 200` in
/// `ip route`; unused by the well-known entries of /etc/iproute2/rt_protos).
pub const DEFAULT_PROTOCOL: u8 = 200;
/// The main routing table.
pub const MAIN_TABLE: u32 = 254;
/// Our routes' metric unless configured otherwise.
pub const DEFAULT_METRIC: u32 = 20;
/// The most bytes of requests sent in one `sendmsg`.
pub const BATCH_BYTES: usize = 128 * 1024;

const RECV_BUF: usize = 1 << 20;
const CMD_RCVBUF: usize = 8 << 20;
/// Route operations planned and sent at a time.
const ROUTE_CHUNK: usize = 8192;
const MONITOR_RCVBUF: usize = 32 << 20;

/// How the route programmer is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Protocol number our routes and nexthops carry.
    pub protocol: u8,
    /// Routing table for our routes.
    pub table: u32,
    /// Metric (priority) of our routes. IPv6 stores 0 as 1024.
    pub metric: u32,
    /// Force a mode; `None` detects nexthop objects at start.
    pub mode: Option<Mode>,
    /// Graceful restart: keep what an earlier run left at start (until
    /// [`Programmer::sweep_stale`]) and at a stop, instead of removing it.
    pub adopt: bool,
    /// First nexthop id to allocate.
    pub id_base: NhId,
    /// Keep the kernel's per-route notifications when a nexthop object
    /// changes (`net.ipv4.nexthop_compat_mode`, on by default in Linux).
    /// When false and routes go through nexthop objects, the programmer
    /// turns them off in its namespace while it runs and puts the old value
    /// back at a stop: a tunnel failure then moves every route behind a
    /// group in one operation, without the kernel announcing each route
    /// again (about 1.2 µs a route: 120 ms for 100k). Software that follows
    /// routes one by one (`ip monitor`, routing daemons that predate nexthop
    /// objects) then no longer hears those moves.
    pub per_route_notifications: bool,
}

/// The kernel's switch for per-route notifications of nexthop changes.
const NEXTHOP_COMPAT_MODE: &str = "/proc/sys/net/ipv4/nexthop_compat_mode";

impl Default for Config {
    fn default() -> Config {
        Config {
            protocol: DEFAULT_PROTOCOL,
            table: MAIN_TABLE,
            metric: DEFAULT_METRIC,
            mode: None,
            adopt: false,
            id_base: DEFAULT_ID_BASE,
            per_route_notifications: true,
        }
    }
}

/// A driver failure: a socket call, or a kernel answer we could not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("{op}: {}", std::io::Error::from_raw_os_error(*errno))]
    Io {
        /// What was being done.
        op: &'static str,
        /// The errno.
        errno: i32,
    },
    /// The kernel refused a request that had to succeed.
    #[error("{0}")]
    Kernel(OpError),
    /// The driver thread is gone.
    #[error("the route programmer thread has stopped")]
    Stopped,
}

impl Error {
    fn io(op: &'static str, errno: i32) -> Error {
        Error::Io { op, errno }
    }
}

/// One netlink operation the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// The operation, e.g. `replace route 10.1.0.0/16 nhid 7`.
    pub op: String,
    /// The errno the kernel answered.
    pub errno: i32,
    /// The kernel's extended-ack text, if any.
    pub message: Option<String>,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.op,
            std::io::Error::from_raw_os_error(self.errno)
        )?;
        if let Some(message) = &self.message {
            write!(f, " ({message})")?;
        }
        Ok(())
    }
}

fn describe(op: &Op) -> String {
    match op {
        Op::ReplaceNexthop { id, object } => match object {
            NexthopObject::Single { path, .. } => match path.gateway {
                Some(gw) => format!("replace nexthop {id} via {gw} ifindex {}", path.ifindex),
                None => format!("replace nexthop {id} ifindex {}", path.ifindex),
            },
            NexthopObject::Group { members } => {
                format!("replace nexthop group {id} members {members:?}")
            }
            NexthopObject::Foreign => format!("replace nexthop {id}"),
        },
        Op::DeleteNexthop { id } => format!("delete nexthop {id}"),
        Op::ReplaceRoute { prefix, target } => match target {
            RouteTarget::Nexthop(id) => format!("replace route {prefix} nhid {id}"),
            RouteTarget::Paths(paths) => format!("replace route {prefix} paths {paths:?}"),
        },
        Op::DeleteRoute { prefix } => format!("delete route {prefix}"),
    }
}

/// What one [`Programmer::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Nexthop objects created or replaced.
    pub nexthops_replaced: usize,
    /// Nexthop objects deleted.
    pub nexthops_deleted: usize,
    /// Routes created or replaced.
    pub routes_replaced: usize,
    /// Routes deleted.
    pub routes_deleted: usize,
    /// Operations the kernel refused; the installed state keeps what it was.
    pub failures: Vec<OpError>,
}

impl ApplyReport {
    /// Adds `other`'s counts and failures to this report.
    pub fn merge(&mut self, other: &ApplyReport) {
        self.nexthops_replaced += other.nexthops_replaced;
        self.nexthops_deleted += other.nexthops_deleted;
        self.routes_replaced += other.routes_replaced;
        self.routes_deleted += other.routes_deleted;
        self.failures.extend(other.failures.iter().cloned());
    }

    /// Whether nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.nexthops_replaced + self.nexthops_deleted + self.routes_replaced + self.routes_deleted
            == 0
            && self.failures.is_empty()
    }
}

/// Something the kernel told us, after it has been taken into account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A tunnel's link went down or came back (down counts as tunnel down).
    Link {
        /// The tunnel on that link.
        tunnel: TunnelId,
        /// Whether it is up now.
        up: bool,
    },
    /// Routes of ours were deleted by someone else; they will be put back.
    RoutesLost {
        /// How many.
        count: usize,
    },
    /// Notifications were lost; the installed state was read back from the
    /// kernel and everything will be compared again.
    Resynced,
}

/// Moves the calling thread into the network namespace at `path` (e.g.
/// `/run/netns/NAME`); sockets it opens afterwards belong to it.
pub fn enter_netns(path: &FsPath) -> Result<(), Error> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::io(
            "open network namespace",
            e.raw_os_error().unwrap_or(libc::ENOENT),
        )
    })?;
    // SAFETY: setns on a descriptor we hold open.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        return Err(Error::io("enter network namespace", errno));
    }
    Ok(())
}

/// How one request ended.
type Outcome = Result<(), wire::Ack>;

/// The synchronous route programmer: a [`RouteTable`] and the netlink
/// sockets that make the kernel match it. Setters only record; [`apply`]
/// sends. Sockets belong to the calling thread's network namespace.
///
/// [`apply`]: Programmer::apply
#[derive(Debug)]
pub struct Programmer {
    config: Config,
    table: RouteTable,
    cmd: Socket,
    monitor: Socket,
    seq: u32,
    out: MsgBuf,
    inbuf: Vec<u8>,
    /// The installed state may be wrong (a batch's acks were lost).
    needs_resync: bool,
    /// `nexthop_compat_mode` as found, when we changed it.
    compat_mode_was: Option<String>,
}

impl Programmer {
    /// Opens the sockets, detects nexthop objects (creating and deleting a
    /// probe), then purges what an earlier run of our protocol left — or,
    /// with [`Config::adopt`], takes it as installed.
    pub fn open(config: Config) -> Result<Programmer, Error> {
        let cmd = Socket::open(CMD_RCVBUF)?;
        let monitor = Socket::open(MONITOR_RCVBUF)?;
        monitor.attach_filter(&wire::monitor_filter(config.protocol, cmd.portid()?))?;
        for group in [
            socket::RTNLGRP_LINK,
            socket::RTNLGRP_IPV4_ROUTE,
            socket::RTNLGRP_IPV6_ROUTE,
        ] {
            monitor.join(group)?;
        }
        let mut programmer = Programmer {
            table: RouteTable::new(Mode::Multipath, config.id_base),
            config,
            cmd,
            monitor,
            seq: 1,
            out: MsgBuf::default(),
            inbuf: vec![0; RECV_BUF],
            needs_resync: false,
            compat_mode_was: None,
        };
        let mode = match programmer.config.mode {
            Some(mode) => mode,
            None => programmer.detect_mode()?,
        };
        if mode == Mode::NexthopObjects {
            programmer.monitor.join(socket::RTNLGRP_NEXTHOP)?;
        }
        programmer.table = RouteTable::new(mode, programmer.config.id_base);
        if mode == Mode::NexthopObjects && !programmer.config.per_route_notifications {
            // Best effort: a kernel without the switch simply keeps
            // notifying (slower moves, nothing wrong).
            if let Ok(was) = std::fs::read_to_string(NEXTHOP_COMPAT_MODE) {
                if was.trim() != "0" && std::fs::write(NEXTHOP_COMPAT_MODE, "0").is_ok() {
                    programmer.compat_mode_was = Some(was.trim().to_string());
                }
            }
        }
        if programmer.config.adopt {
            let state = programmer.read_kernel_state(true)?;
            programmer.table.adopt(state);
        } else {
            programmer.purge()?;
        }
        Ok(programmer)
    }

    /// How routes are programmed (detected or configured).
    pub fn mode(&self) -> Mode {
        self.table.mode()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The desired and installed state.
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// The notification socket, to poll for readability before
    /// [`Programmer::process_events`].
    pub fn event_fd(&self) -> RawFd {
        self.monitor.raw_fd()
    }

    /// Adds or updates a tunnel; `up` is whether the daemon considers it up.
    /// Asks the kernel whether its link is up.
    pub fn set_tunnel(&mut self, tunnel: Tunnel, up: bool) -> Result<(), Error> {
        let ifindex = tunnel.ifindex;
        let link_up = self.link_up(ifindex)?;
        self.table.set_tunnel(tunnel, up);
        self.table.set_link(ifindex, link_up);
        Ok(())
    }

    /// Forgets a tunnel.
    pub fn remove_tunnel(&mut self, id: &TunnelId) {
        self.table.remove_tunnel(id);
    }

    /// Sets whether the daemon considers tunnel `id` up; false if unknown.
    pub fn set_tunnel_up(&mut self, id: &TunnelId, up: bool) -> bool {
        self.table.set_tunnel_up(id, up)
    }

    /// Sets the tunnels `prefix` is routed through (ECMP); none withdraws.
    pub fn set_route(&mut self, prefix: IpNet, tunnels: impl IntoIterator<Item = TunnelId>) {
        self.table.set_route(prefix, tunnels);
    }

    /// [`Programmer::set_route`] with a shared tunnel set: nothing is
    /// allocated when the set is the one the last call used.
    pub fn set_route_shared(&mut self, prefix: IpNet, tunnels: &std::sync::Arc<[TunnelId]>) {
        self.table.set_route_shared(prefix, tunnels);
    }

    /// Withdraws `prefix`.
    pub fn withdraw(&mut self, prefix: &IpNet) {
        self.table.withdraw(prefix);
    }

    /// After an adoption: from the next apply on, what is installed but not
    /// desired is removed.
    pub fn sweep_stale(&mut self) {
        self.table.sweep_stale();
    }

    /// Makes the kernel match the table: nexthops, then routes, then
    /// deletions, each in batches.
    pub fn apply(&mut self) -> Result<ApplyReport, Error> {
        if self.needs_resync {
            self.resync()?;
        }
        let mut report = ApplyReport::default();
        let result = self.apply_steps(&mut report);
        if result.is_err() {
            self.needs_resync = true;
        }
        result.map(|()| report)
    }

    fn apply_steps(&mut self, report: &mut ApplyReport) -> Result<(), Error> {
        let ops = self.table.plan_nexthops();
        self.run_ops(&ops, report)?;
        // Routes a chunk at a time: a full table's operations are never all
        // in memory at once.
        while let Some(ops) = self.table.plan_routes_chunk(ROUTE_CHUNK) {
            self.run_ops(&ops, report)?;
        }
        let ops = self.table.plan_deletes();
        self.run_ops(&ops, report)
    }

    /// Reads pending notifications without blocking and takes them into
    /// account (links, routes and nexthops deleted behind our back). Call
    /// [`Programmer::apply`] afterwards to repair.
    pub fn process_events(&mut self) -> Result<Vec<Event>, Error> {
        let mut events = Vec::new();
        let mut lost = 0;
        let mut overflow = false;
        loop {
            let n = match self.monitor.recv(&mut self.inbuf, true) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(libc::ENOBUFS) => {
                    overflow = true;
                    continue;
                }
                Err(errno) => return Err(Error::io("read notifications", errno)),
            };
            let Some(data) = self.inbuf.get(..n) else {
                break;
            };
            for msg in wire::messages(data) {
                match msg.ty {
                    wire::RTM_NEWLINK | wire::RTM_DELLINK => {
                        let Some((ifindex, up)) = wire::parse_link(msg.payload) else {
                            continue;
                        };
                        let up = up && msg.ty == wire::RTM_NEWLINK;
                        let was = self.table.model().link_up(ifindex);
                        if let Some(tunnel) = self.table.set_link(ifindex, up) {
                            if was != Some(up) {
                                events.push(Event::Link { tunnel, up });
                            }
                        }
                    }
                    wire::RTM_DELROUTE => {
                        let Some(route) = wire::parse_route(msg.payload) else {
                            continue;
                        };
                        if self.is_ours(&route) && self.table.route_lost(&route.prefix) {
                            lost += 1;
                        }
                    }
                    wire::RTM_DELNEXTHOP => {
                        let Some(nh) = wire::parse_nexthop(msg.payload) else {
                            continue;
                        };
                        if nh.protocol == self.config.protocol {
                            lost += self.table.nexthop_lost(nh.id);
                        }
                    }
                    _ => {}
                }
            }
        }
        if lost > 0 {
            events.push(Event::RoutesLost { count: lost });
        }
        if overflow {
            self.resync()?;
            events.push(Event::Resynced);
        }
        Ok(events)
    }

    /// Reads back what the kernel holds of ours and compares everything on
    /// the next apply.
    pub fn resync(&mut self) -> Result<(), Error> {
        let state = self.read_kernel_state(false)?;
        self.table.resync(state);
        self.needs_resync = false;
        Ok(())
    }

    /// Stops: removes every route and nexthop of our protocol, unless
    /// `keep` (graceful restart: the next run adopts them).
    pub fn shutdown(mut self, keep: bool) -> Result<(), Error> {
        if let Some(was) = self.compat_mode_was.take() {
            let _ = std::fs::write(NEXTHOP_COMPAT_MODE, was);
        }
        if keep {
            return Ok(());
        }
        self.purge()
    }

    fn key(&self) -> RouteKey {
        RouteKey {
            table: self.config.table,
            metric: self.config.metric,
            protocol: self.config.protocol,
        }
    }

    fn is_ours(&self, route: &wire::KernelRoute) -> bool {
        route.protocol == self.config.protocol
            && route.table == self.config.table
            && route.metric == wire::effective_metric(Family::of(&route.prefix), self.config.metric)
    }

    fn next_seq(&mut self) -> u32 {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1).max(1);
        seq
    }

    /// Sends `items` in batches, encoding each with `encode(buf, item,
    /// seq)`, and returns each one's outcome.
    fn execute<T>(
        &mut self,
        items: &[T],
        encode: impl Fn(&mut MsgBuf, &T, u32),
    ) -> Result<Vec<Outcome>, Error> {
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(items.len());
        let mut start = 0;
        while start < items.len() {
            self.out.clear();
            let first = self.seq;
            let mut end = start;
            while end < items.len() && self.out.len() < BATCH_BYTES {
                let seq = self.next_seq();
                if let Some(item) = items.get(end) {
                    encode(&mut self.out, item, seq);
                }
                end += 1;
            }
            self.out.ack_last();
            let count = self.out.count();
            let last = first.wrapping_add(count as u32).wrapping_sub(1);
            self.cmd.send(self.out.bytes())?;
            let mut batch: Vec<Outcome> = vec![Ok(()); count];
            self.read_acks(first, last, &mut batch)?;
            outcomes.extend(batch);
            start = end;
        }
        Ok(outcomes)
    }

    /// Reads answers until the ack of `last`; errors of earlier messages
    /// come before it.
    fn read_acks(&mut self, first: u32, last: u32, batch: &mut [Outcome]) -> Result<(), Error> {
        loop {
            let n = match self.cmd.recv(&mut self.inbuf, false) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(errno) => return Err(Error::io("read netlink acks", errno)),
            };
            let Some(data) = self.inbuf.get(..n) else {
                continue;
            };
            let mut done = false;
            for msg in wire::messages(data) {
                if msg.ty != wire::NLMSG_ERROR {
                    continue;
                }
                let Some(ack) = wire::parse_ack(&msg) else {
                    continue;
                };
                let index = msg.seq.wrapping_sub(first) as usize;
                if let Some(slot) = batch.get_mut(index) {
                    if ack.errno != 0 {
                        *slot = Err(ack);
                    }
                }
                if msg.seq == last {
                    done = true;
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    fn run_ops(&mut self, ops: &[Op], report: &mut ApplyReport) -> Result<(), Error> {
        if ops.is_empty() {
            return Ok(());
        }
        let key = self.key();
        let outcomes = self.execute(ops, |buf, op, seq| match op {
            Op::ReplaceNexthop { id, object } => {
                wire::replace_nexthop(buf, seq, key.protocol, *id, object)
            }
            Op::DeleteNexthop { id } => wire::delete_nexthop(buf, seq, *id),
            Op::ReplaceRoute { prefix, target } => {
                wire::replace_route(buf, seq, key, prefix, target)
            }
            Op::DeleteRoute { prefix } => wire::delete_route(buf, seq, key, prefix),
        })?;
        for (op, outcome) in ops.iter().zip(outcomes) {
            let is_delete = matches!(op, Op::DeleteNexthop { .. } | Op::DeleteRoute { .. });
            match outcome {
                Ok(()) => {}
                Err(ack) if is_delete && missing(ack.errno) => {}
                Err(ack) => {
                    report.failures.push(OpError {
                        op: describe(op),
                        errno: ack.errno,
                        message: ack.message,
                    });
                    continue;
                }
            }
            self.table.applied(op);
            match op {
                Op::ReplaceNexthop { .. } => report.nexthops_replaced += 1,
                Op::DeleteNexthop { .. } => report.nexthops_deleted += 1,
                Op::ReplaceRoute { .. } => report.routes_replaced += 1,
                Op::DeleteRoute { .. } => report.routes_deleted += 1,
            }
        }
        Ok(())
    }

    /// Creates and deletes a blackhole nexthop: nexthop objects work if the
    /// kernel accepts it.
    fn detect_mode(&mut self) -> Result<Mode, Error> {
        let probe = self.config.id_base.wrapping_sub(1).max(1);
        let protocol = self.config.protocol;
        let created = self.execute(&[probe], |buf, id, seq| {
            wire::replace_nexthop(buf, seq, protocol, *id, &NexthopObject::Foreign)
        })?;
        if created.first().is_some_and(Result::is_ok) {
            self.execute(&[probe], |buf, id, seq| wire::delete_nexthop(buf, seq, *id))?;
            Ok(Mode::NexthopObjects)
        } else {
            Ok(Mode::Multipath)
        }
    }

    /// Whether link `ifindex` exists, is up and has carrier.
    fn link_up(&mut self, ifindex: u32) -> Result<bool, Error> {
        let seq = self.next_seq();
        self.out.clear();
        wire::get_link(&mut self.out, seq, ifindex);
        self.cmd.send(self.out.bytes())?;
        loop {
            let n = match self.cmd.recv(&mut self.inbuf, false) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(errno) => return Err(Error::io("read link state", errno)),
            };
            let Some(data) = self.inbuf.get(..n) else {
                continue;
            };
            for msg in wire::messages(data) {
                if msg.seq != seq {
                    continue;
                }
                if msg.ty == wire::NLMSG_ERROR {
                    // No such device: a link that is not there is down.
                    return Ok(false);
                }
                if msg.ty == wire::RTM_NEWLINK {
                    return Ok(wire::parse_link(msg.payload).is_some_and(|(_, up)| up));
                }
            }
        }
    }

    /// Runs a dump request and hands each answer's payload to `each`.
    fn dump(
        &mut self,
        request: impl Fn(&mut MsgBuf, u32),
        mut each: impl FnMut(u16, &[u8]),
    ) -> Result<(), Error> {
        let seq = self.next_seq();
        self.out.clear();
        request(&mut self.out, seq);
        self.cmd.send(self.out.bytes())?;
        loop {
            let n = match self.cmd.recv(&mut self.inbuf, false) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(errno) => return Err(Error::io("read dump", errno)),
            };
            let Some(data) = self.inbuf.get(..n) else {
                continue;
            };
            for msg in wire::messages(data) {
                if msg.seq != seq {
                    continue;
                }
                match msg.ty {
                    wire::NLMSG_DONE => return Ok(()),
                    wire::NLMSG_ERROR => {
                        let ack = wire::parse_ack(&msg);
                        return match ack {
                            Some(ack) if ack.errno != 0 => Err(Error::Kernel(OpError {
                                op: "dump".to_string(),
                                errno: ack.errno,
                                message: ack.message,
                            })),
                            Some(_) | None => Ok(()),
                        };
                    }
                    ty => each(ty, msg.payload),
                }
            }
        }
    }

    fn dump_routes(&mut self) -> Result<Vec<wire::KernelRoute>, Error> {
        let protocol = self.config.protocol;
        let mut routes = Vec::new();
        for family in [Family::V4, Family::V6] {
            self.dump(
                |buf, seq| wire::dump_routes(buf, seq, family, protocol),
                |ty, payload| {
                    if ty == wire::RTM_NEWROUTE {
                        if let Some(route) = wire::parse_route(payload) {
                            if route.protocol == protocol {
                                routes.push(route);
                            }
                        }
                    }
                },
            )?;
        }
        Ok(routes)
    }

    fn dump_nexthops(&mut self) -> Result<Vec<wire::KernelNexthop>, Error> {
        if self.table.mode() == Mode::Multipath && self.config.mode.is_some() {
            // Forced classic mode may mean no nexthop support at all.
            return Ok(Vec::new());
        }
        let protocol = self.config.protocol;
        let mut nexthops = Vec::new();
        let result = self.dump(wire::dump_nexthops, |ty, payload| {
            if ty == wire::RTM_NEWNEXTHOP {
                if let Some(nh) = wire::parse_nexthop(payload) {
                    if nh.protocol == protocol {
                        nexthops.push(nh);
                    }
                }
            }
        });
        match result {
            Ok(()) => Ok(nexthops),
            // A kernel without nexthop objects has none of ours.
            Err(Error::Kernel(e)) if e.errno == libc::EOPNOTSUPP || e.errno == libc::EINVAL => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// What the kernel holds of ours. With `purge_foreign`, routes of our
    /// protocol in another table or metric are deleted on the way.
    fn read_kernel_state(&mut self, purge_foreign: bool) -> Result<KernelState, Error> {
        let mut state = KernelState::default();
        for nh in self.dump_nexthops()? {
            state.insert_nexthop(nh.id, nh.object);
        }
        let (ours, others): (Vec<_>, Vec<_>) = self
            .dump_routes()?
            .into_iter()
            .partition(|r| self.is_ours(r) && r.unicast && r.target.is_some());
        for route in ours {
            if let Some(target) = route.target {
                state.insert_route(route.prefix, target);
            }
        }
        if purge_foreign {
            self.delete_routes(&others)?;
        }
        Ok(state)
    }

    /// Deletes every nexthop and route of our protocol: groups first (the
    /// kernel takes the routes that use them along), then single nexthops,
    /// then whatever routes remain.
    fn purge(&mut self) -> Result<(), Error> {
        let nexthops = self.dump_nexthops()?;
        let (groups, singles): (Vec<_>, Vec<_>) = nexthops
            .iter()
            .map(|nh| (nh.id, matches!(nh.object, NexthopObject::Group { .. })))
            .partition(|(_, group)| *group);
        for ids in [groups, singles] {
            let ids: Vec<NhId> = ids.into_iter().map(|(id, _)| id).collect();
            self.execute(&ids, |buf, id, seq| wire::delete_nexthop(buf, seq, *id))?;
        }
        let routes = self.dump_routes()?;
        self.delete_routes(&routes)
    }

    fn delete_routes(&mut self, routes: &[wire::KernelRoute]) -> Result<(), Error> {
        let protocol = self.config.protocol;
        let outcomes = self.execute(routes, |buf, route, seq| {
            let key = RouteKey {
                table: route.table,
                metric: route.metric,
                protocol,
            };
            wire::delete_route(buf, seq, key, &route.prefix)
        })?;
        for (route, outcome) in routes.iter().zip(outcomes) {
            if let Err(ack) = outcome {
                if !missing(ack.errno) {
                    return Err(Error::Kernel(OpError {
                        op: format!("delete stale route {} table {}", route.prefix, route.table),
                        errno: ack.errno,
                        message: ack.message,
                    }));
                }
            }
        }
        Ok(())
    }
}

/// Errnos that mean "already gone" for a delete.
fn missing(errno: i32) -> bool {
    errno == libc::ENOENT || errno == libc::ESRCH
}
