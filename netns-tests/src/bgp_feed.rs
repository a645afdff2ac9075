//! A small BGP speaker for benchmarks: a feeder that sends a generated
//! table as fast as TCP takes it, and a sink that counts what it receives
//! and when. Both speak real BGP-4 (OPEN with 4-octet AS and IPv4 unicast,
//! KEEPALIVEs, packed UPDATEs) through `vpngw-bgp`'s wire codec, from a
//! thread whose socket lives in a test namespace.
//!
//! The table ([`FeedTable::generate`]) looks like a real IPv4 table where it
//! matters to a receiver: prefix lengths distributed like the Internet's
//! (mostly /24, then /22, /23, ...; see [`LENGTHS`]), prefixes grouped
//! under shared attribute sets (1–16 prefixes per AS_PATH of 1–6 ASes, some
//! with a MED or communities), one UPDATE per attribute set. The prefixes
//! are drawn from public unicast space outside every range the labs
//! address (no packet is ever sent to them; they exist only in the bench's
//! namespaces).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use vpngw_bgp::wire::{
    AsPath, AttributeValue, Capability, Community, DecodeContext, Message, Open, Origin,
    PathAttribute, Update, MAX_MESSAGE_LEN,
};

use crate::traffic::in_netns;
use crate::Netns;

/// Prefix lengths of the generated table and their share in percent,
/// rounded from the public IPv4 table (about 60 % /24, 12 % /22, 10 % /23).
pub const LENGTHS: [(u8, u32); 10] = [
    (24, 60),
    (23, 10),
    (22, 12),
    (21, 5),
    (20, 5),
    (19, 3),
    (18, 1),
    (17, 1),
    (16, 2),
    (15, 1),
];

/// Hold time the feeder and sink offer (the receiver's own is usually lower
/// and wins).
const HOLD_TIME: u16 = 90;

/// Ranges a generated prefix must not touch: "this network", 10/8 (lab
/// LANs), loopback, link-local (tunnel addresses), the documentation ranges
/// (lab underlays), and everything from 224/3 up.
const EXCLUDED: [(u32, u8); 7] = [
    (0x0000_0000, 8),
    (0x0a00_0000, 8),
    (0x7f00_0000, 8),
    (0xa9fe_0000, 16),
    (0xc000_0200, 24),
    (0xc633_6400, 24),
    (0xcb00_7100, 24),
];

/// One attribute set and the prefixes announced with it.
#[derive(Debug, Clone)]
pub struct AttrGroup {
    /// The AS_PATH after the feeder's own AS.
    pub path_tail: Vec<u32>,
    /// MULTI_EXIT_DISC, on some.
    pub med: Option<u32>,
    /// COMMUNITIES, on some.
    pub communities: Vec<Community>,
    /// The prefixes.
    pub prefixes: Vec<Ipv4Net>,
}

/// A generated table.
#[derive(Debug, Clone)]
pub struct FeedTable {
    /// The attribute sets, each with its prefixes.
    pub groups: Vec<AttrGroup>,
}

/// splitmix64: deterministic, dependency-free, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n.max(1))) as u32
    }
}

fn overlaps_excluded(net: u32, len: u8) -> bool {
    EXCLUDED.iter().any(|&(base, blen)| {
        let l = len.min(blen);
        let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
        net & mask == base & mask
    }) || net >= 0xe000_0000
}

impl FeedTable {
    /// `n` distinct prefixes, the same for the same `seed`.
    pub fn generate(n: usize, seed: u64) -> FeedTable {
        let mut rng = Rng(seed);
        let total: u32 = LENGTHS.iter().map(|&(_, w)| w).sum();
        let mut seen: HashSet<Ipv4Net> = HashSet::with_capacity(n);
        let mut prefixes = Vec::with_capacity(n);
        while prefixes.len() < n {
            let mut pick = rng.below(total);
            let mut len = 24;
            for &(l, w) in &LENGTHS {
                if pick < w {
                    len = l;
                    break;
                }
                pick -= w;
            }
            let addr = (rng.next() as u32) & (u32::MAX << (32 - len));
            if overlaps_excluded(addr, len) {
                continue;
            }
            let Ok(net) = Ipv4Net::new(Ipv4Addr::from(addr), len) else {
                continue;
            };
            if seen.insert(net) {
                prefixes.push(net);
            }
        }
        let mut groups = Vec::new();
        let mut rest = prefixes.as_slice();
        while !rest.is_empty() {
            let take = (1 + rng.below(16) as usize).min(rest.len());
            let (mine, tail) = rest.split_at(take);
            rest = tail;
            let path_tail = (0..1 + rng.below(6))
                .map(|_| 1000 + rng.below(60_000))
                .collect();
            let med = (rng.below(4) == 0).then(|| rng.below(1000));
            let communities = if rng.below(3) == 0 {
                (0..1 + rng.below(3))
                    .map(|_| Community::new(rng.below(65_000) as u16 + 1, rng.below(1000) as u16))
                    .collect()
            } else {
                Vec::new()
            };
            groups.push(AttrGroup {
                path_tail,
                med,
                communities,
                prefixes: mine.to_vec(),
            });
        }
        FeedTable { groups }
    }

    /// How many prefixes.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.prefixes.len()).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every prefix.
    pub fn prefixes(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        self.groups.iter().flat_map(|g| g.prefixes.iter().copied())
    }

    /// The UPDATEs announcing the whole table as AS `asn` with next hop
    /// `next_hop`: one per attribute set (split if it would not fit).
    pub fn announce_bytes(&self, asn: u32, next_hop: Ipv4Addr) -> Vec<u8> {
        let ctx = four_octet();
        let mut out = Vec::with_capacity(self.len() * 12);
        for g in &self.groups {
            let mut path = vec![asn];
            path.extend_from_slice(&g.path_tail);
            let mut attrs = vec![
                PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
                PathAttribute::new(AttributeValue::AsPath(AsPath::from_sequence(path))),
                PathAttribute::new(AttributeValue::NextHop(next_hop)),
            ];
            if let Some(m) = g.med {
                attrs.push(PathAttribute::new(AttributeValue::MultiExitDisc(m)));
            }
            if !g.communities.is_empty() {
                attrs.push(PathAttribute::new(AttributeValue::Communities(
                    g.communities.clone(),
                )));
            }
            // 16 prefixes of at most 4 octets each fit any attribute set here.
            let update = Update {
                path_attributes: attrs,
                nlri: g.prefixes.clone(),
                ..Update::default()
            };
            Message::Update(update)
                .encode(&ctx, &mut out)
                .expect("an UPDATE of the generated table encodes");
        }
        out
    }

    /// The UPDATEs withdrawing the whole table, packed as full as they go.
    pub fn withdraw_bytes(&self) -> Vec<u8> {
        let ctx = four_octet();
        let mut out = Vec::new();
        let all: Vec<Ipv4Net> = self.prefixes().collect();
        // 4096 - 19 (header) - 4 (two lengths): at most 4 octets per prefix.
        let per = (usize::from(MAX_MESSAGE_LEN) - 23) / 4;
        for chunk in all.chunks(per) {
            let update = Update {
                withdrawn_routes: chunk.to_vec(),
                ..Update::default()
            };
            Message::Update(update)
                .encode(&ctx, &mut out)
                .expect("a withdrawal encodes");
        }
        out
    }
}

fn four_octet() -> DecodeContext {
    DecodeContext {
        four_octet_as: true,
        internal_peer: false,
    }
}

/// Reads whole messages from a stream.
struct Framer {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
}

impl Framer {
    fn new(stream: TcpStream) -> Framer {
        Framer {
            stream,
            buf: Vec::with_capacity(1 << 20),
            start: 0,
        }
    }

    /// The next message, `Ok(None)` when the peer closed.
    fn next(&mut self) -> std::io::Result<Option<Message>> {
        loop {
            let pending = &self.buf[self.start..];
            match Message::frame_length(pending) {
                Ok(Some(len)) if pending.len() >= len => {
                    let msg = Message::decode(&pending[..len], &four_octet())
                        .map_err(|e| std::io::Error::other(format!("bad message: {e:?}")))?;
                    self.start += len;
                    return Ok(Some(msg));
                }
                Ok(_) => {}
                Err(e) => return Err(std::io::Error::other(format!("bad header: {e:?}"))),
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let old = self.buf.len();
            self.buf.resize(old + 256 * 1024, 0);
            let n = loop {
                match self.stream.read(&mut self.buf[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => return Err(e),
                }
            };
            self.buf.truncate(old + n);
            if n == 0 {
                return Ok(None);
            }
        }
    }
}

/// An Established session: a writer shared with the keepalive thread, the
/// reader handed to whoever consumes it.
struct Established {
    writer: Arc<Mutex<TcpStream>>,
    framer: Framer,
    peer_as: u32,
}

fn establish(stream: TcpStream, asn: u32, router_id: Ipv4Addr) -> std::io::Result<Established> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut framer = Framer::new(stream);
    let open = Open::new(
        asn,
        HOLD_TIME,
        router_id,
        vec![
            Capability::Multiprotocol {
                afi: vpngw_bgp::wire::Afi::Ipv4,
                safi: vpngw_bgp::wire::Safi::Unicast,
            },
            Capability::FourOctetAs { asn },
        ],
    );
    writer.write_all(
        &Message::Open(open)
            .to_bytes(&four_octet())
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?,
    )?;
    let peer_as = match framer.next()? {
        Some(Message::Open(o)) => o.asn(),
        other => {
            return Err(std::io::Error::other(format!(
                "expected OPEN, got {other:?}"
            )))
        }
    };
    writer.write_all(&keepalive())?;
    match framer.next()? {
        Some(Message::Keepalive) => {}
        other => {
            return Err(std::io::Error::other(format!(
                "expected KEEPALIVE, got {other:?}"
            )))
        }
    }
    Ok(Established {
        writer: Arc::new(Mutex::new(writer)),
        framer,
        peer_as,
    })
}

fn keepalive() -> Vec<u8> {
    Message::Keepalive
        .to_bytes(&four_octet())
        .expect("KEEPALIVE encodes")
}

/// Connects from `local` to `remote`:179 inside `ns`, retrying until
/// `deadline`, and brings the session up.
fn connect(
    ns: &Netns,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    asn: u32,
    router_id: Ipv4Addr,
    deadline: Duration,
) -> Established {
    let start = Instant::now();
    loop {
        let attempt = in_netns(ns, move || connect_from(local, remote));
        let last = match attempt.and_then(|s| establish(s, asn, router_id)) {
            Ok(e) => return e,
            Err(e) => e,
        };
        assert!(
            start.elapsed() < deadline,
            "BGP session {local} -> {remote} not up after {deadline:?}: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A TCP connection from `local` (any port) to `remote`:179.
fn connect_from(local: Ipv4Addr, remote: Ipv4Addr) -> std::io::Result<TcpStream> {
    // std has no bind-before-connect; a listener-free bind through libc.
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor we own; the sockaddr_in
    // structures live on the stack for the duration of each call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let sa = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let l = sa(local, 0);
        if libc::bind(fd, std::ptr::addr_of!(l).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let r = sa(remote, 179);
        if libc::connect(fd, std::ptr::addr_of!(r).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// Sends a KEEPALIVE every 30 s until `stop`.
fn keepalives(writer: Arc<Mutex<TcpStream>>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if last.elapsed() >= Duration::from_secs(30) {
                last = Instant::now();
                let mut w = writer.lock().expect("writer");
                if w.write_all(&keepalive()).is_err() {
                    return;
                }
            }
        }
    })
}

/// The feeder: announces and withdraws a table; drains what the receiver
/// sends back.
pub struct Feeder {
    writer: Arc<Mutex<TcpStream>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    asn: u32,
    next_hop: Ipv4Addr,
}

impl std::fmt::Debug for Feeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeder").field("asn", &self.asn).finish()
    }
}

impl Feeder {
    /// Connects from `local` in `ns` to the receiver at `remote` as AS
    /// `asn`, and waits (up to `deadline`) for Established.
    pub fn connect(
        ns: &Netns,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        asn: u32,
        deadline: Duration,
    ) -> Feeder {
        let est = connect(ns, local, remote, asn, local, deadline);
        let stop = Arc::new(AtomicBool::new(false));
        let mut framer = est.framer;
        let drain = std::thread::spawn(move || while let Ok(Some(_)) = framer.next() {});
        let ka = keepalives(est.writer.clone(), stop.clone());
        Feeder {
            writer: est.writer,
            stop,
            threads: vec![drain, ka],
            asn,
            next_hop: local,
        }
    }

    /// Sends `bytes` (whole messages), in pieces so keepalives get between.
    fn send(&self, bytes: &[u8]) {
        for piece in bytes.chunks(1 << 20) {
            let mut w = self.writer.lock().expect("writer");
            w.write_all(piece).expect("feeder write");
        }
    }

    /// Announces every prefix of `table`; returns when the last byte is
    /// in the socket.
    pub fn announce(&self, table: &FeedTable) {
        self.send(&table.announce_bytes(self.asn, self.next_hop));
    }

    /// Withdraws every prefix of `table`.
    pub fn withdraw(&self, table: &FeedTable) {
        self.send(&table.withdraw_bytes());
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(w) = self.writer.lock() {
            let _ = w.shutdown(Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a sink has received.
#[derive(Debug)]
pub struct SinkState {
    /// Each prefix and the first AS of its path after the sender's own
    /// (the AS it came from, across a transit speaker).
    pub routes: HashMap<Ipv4Net, u32>,
    /// UPDATE messages received.
    pub updates: u64,
    /// When the last UPDATE was taken in.
    pub last_change: Instant,
    /// Set when the session ended, with why.
    pub closed: Option<String>,
}

/// The sink: a session that only listens, counting what arrives.
pub struct Sink {
    state: Arc<(Mutex<SinkState>, Condvar)>,
    writer: Arc<Mutex<TcpStream>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish()
    }
}

impl Sink {
    /// Connects from `local` in `ns` to the speaker at `remote` as AS
    /// `asn`, and waits (up to `deadline`) for Established.
    pub fn connect(
        ns: &Netns,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        asn: u32,
        deadline: Duration,
    ) -> Sink {
        let est = connect(ns, local, remote, asn, local, deadline);
        let state = Arc::new((
            Mutex::new(SinkState {
                routes: HashMap::new(),
                updates: 0,
                last_change: Instant::now(),
                closed: None,
            }),
            Condvar::new(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let peer_as = est.peer_as;
        let mut framer = est.framer;
        let st = state.clone();
        let reader = std::thread::spawn(move || loop {
            let msg = framer.next();
            let (lock, cv) = &*st;
            let mut s = lock.lock().expect("sink state");
            match msg {
                Ok(Some(Message::Update(u))) => {
                    for w in &u.withdrawn_routes {
                        s.routes.remove(w);
                    }
                    if !u.nlri.is_empty() {
                        let via = u
                            .as_path()
                            .and_then(|p| {
                                p.segments
                                    .iter()
                                    .flat_map(|seg| seg.asns.iter().copied())
                                    .find(|&a| a != peer_as)
                            })
                            .unwrap_or(0);
                        for n in &u.nlri {
                            s.routes.insert(*n, via);
                        }
                    }
                    s.updates += 1;
                    s.last_change = Instant::now();
                }
                Ok(Some(Message::Notification(n))) => {
                    s.closed = Some(format!("NOTIFICATION {n:?}"));
                }
                Ok(Some(_)) => {}
                Ok(None) => s.closed = Some("closed by the peer".into()),
                Err(e) => s.closed = Some(e.to_string()),
            }
            let done = s.closed.is_some();
            drop(s);
            cv.notify_all();
            if done {
                return;
            }
        });
        let ka = keepalives(est.writer.clone(), stop.clone());
        Sink {
            state,
            writer: est.writer,
            stop,
            threads: vec![reader, ka],
        }
    }

    /// Waits until `done` holds for what was received, and returns when the
    /// UPDATE that made it hold arrived; `None` after `timeout` (or if the
    /// session closed).
    pub fn wait(&self, timeout: Duration, done: impl Fn(&SinkState) -> bool) -> Option<Instant> {
        let (lock, cv) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut s = lock.lock().expect("sink state");
        loop {
            if done(&s) {
                return Some(s.last_change);
            }
            if s.closed.is_some() {
                return None;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            s = cv.wait_timeout(s, left).expect("sink state").0;
        }
    }

    /// Reads the state.
    pub fn with<T>(&self, f: impl FnOnce(&SinkState) -> T) -> T {
        f(&self.state.0.lock().expect("sink state"))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(w) = self.writer.lock() {
            let _ = w.shutdown(Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_distinct_prefixes_in_the_lengths_asked_and_encodes() {
        let t = FeedTable::generate(20_000, 7);
        assert_eq!(t.len(), 20_000);
        let distinct: HashSet<Ipv4Net> = t.prefixes().collect();
        assert_eq!(distinct.len(), 20_000);
        let slash24 = t.prefixes().filter(|p| p.prefix_len() == 24).count();
        assert!((11_000..13_000).contains(&slash24), "{slash24} /24s");
        assert!(t
            .prefixes()
            .all(|p| !overlaps_excluded(u32::from(p.network()), p.prefix_len())));
        // Same seed, same table.
        let again = FeedTable::generate(20_000, 7);
        assert!(t.prefixes().eq(again.prefixes()));
        // Every UPDATE decodes back to its prefixes.
        let bytes = t.announce_bytes(65010, Ipv4Addr::new(169, 254, 21, 2));
        let mut rest = bytes.as_slice();
        let mut seen = 0;
        while !rest.is_empty() {
            let len = Message::frame_length(rest).unwrap().unwrap();
            let Message::Update(u) = Message::decode(&rest[..len], &four_octet()).unwrap() else {
                panic!("not an UPDATE");
            };
            seen += u.nlri.len();
            rest = &rest[len..];
        }
        assert_eq!(seen, 20_000);
        assert!(!t.withdraw_bytes().is_empty());
    }

    #[test]
    fn excluded_ranges_are_excluded() {
        assert!(overlaps_excluded(0x0a01_0000, 16));
        assert!(overlaps_excluded(0x0800_0000, 6)); // covers 10/8
        assert!(overlaps_excluded(0xa9fe_1500, 24));
        assert!(overlaps_excluded(0xe000_0000, 8));
        assert!(!overlaps_excluded(0x0b00_0000, 8));
    }
}
