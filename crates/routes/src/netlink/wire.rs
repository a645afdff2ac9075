//! rtnetlink messages: the few this crate sends (routes, nexthop objects,
//! link queries, dumps) and the few it reads (acks, dump entries,
//! notifications). Encoding appends to a buffer so one `sendmsg` carries a
//! whole batch; decoding never panics and never indexes unchecked.
//!
//! Layouts are those of `<linux/netlink.h>`, `<linux/rtnetlink.h>` and
//! `<linux/nexthop.h>`, in host byte order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::diff::RouteTarget;
use crate::nexthop::{Family, NexthopObject, NhId, Path};

// Message types.
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_DELLINK: u16 = 17;
pub(crate) const RTM_GETLINK: u16 = 18;
pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_DELROUTE: u16 = 25;
pub(crate) const RTM_GETROUTE: u16 = 26;
pub(crate) const RTM_NEWNEXTHOP: u16 = 104;
pub(crate) const RTM_DELNEXTHOP: u16 = 105;
pub(crate) const RTM_GETNEXTHOP: u16 = 106;

// Header flags.
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_REPLACE: u16 = 0x100;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
/// In an ack: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// In an ack: only the request's header is echoed.
const NLM_F_CAPPED: u16 = 0x100;
const NLMSGERR_ATTR_MSG: u16 = 1;

// Route attributes.
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_NH_ID: u16 = 30;

// Nexthop attributes.
const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_BLACKHOLE: u16 = 4;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;

// Route message fields.
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const RT_TABLE_UNSPEC: u8 = 0;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_NOWHERE: u8 = 255;
const RTN_UNICAST: u8 = 1;

// Link flags.
const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;

const NLMSGHDR_LEN: usize = 16;
const RTMSG_LEN: usize = 12;
const NHMSG_LEN: usize = 8;
const IFINFOMSG_LEN: usize = 16;
const RTNH_LEN: usize = 8;

/// The IPv6 kernel stores metric 0 as 1024.
pub(crate) fn effective_metric(family: Family, metric: u32) -> u32 {
    match (family, metric) {
        (Family::V6, 0) => 1024,
        (Family::V4 | Family::V6, m) => m,
    }
}

fn family_byte(family: Family) -> u8 {
    match family {
        Family::V4 => AF_INET,
        Family::V6 => AF_INET6,
    }
}

fn addr_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A buffer of netlink messages being built back to back.
#[derive(Debug, Default)]
pub(crate) struct MsgBuf {
    buf: Vec<u8>,
    start: usize,
    /// Offsets of the messages begun so far.
    count: usize,
}

impl MsgBuf {
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.count = 0;
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    fn begin(&mut self, ty: u16, flags: u16, seq: u32) {
        self.start = self.buf.len();
        self.count += 1;
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
    }

    fn end(&mut self) {
        let len = (self.buf.len() - self.start) as u32;
        self.patch_u32(self.start, len);
    }

    /// Adds NLM_F_ACK to the last message begun.
    pub(crate) fn ack_last(&mut self) {
        let at = self.start + 6;
        if let Some(flags) = self.buf.get_mut(at..at + 2) {
            let value = u16::from_ne_bytes([flags[0], flags[1]]) | NLM_F_ACK;
            flags.copy_from_slice(&value.to_ne_bytes());
        }
    }

    fn patch_u32(&mut self, at: usize, value: u32) {
        if let Some(slot) = self.buf.get_mut(at..at + 4) {
            slot.copy_from_slice(&value.to_ne_bytes());
        }
    }

    fn patch_u16(&mut self, at: usize, value: u16) {
        if let Some(slot) = self.buf.get_mut(at..at + 2) {
            slot.copy_from_slice(&value.to_ne_bytes());
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, ty: u16, payload: &[u8]) {
        let len = (4 + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    fn attr_u32(&mut self, ty: u16, value: u32) {
        self.attr(ty, &value.to_ne_bytes());
    }

    fn nest_begin(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.attr(ty, &[]);
        at
    }

    fn nest_end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.patch_u16(at, len);
    }

    /// `struct rtmsg`.
    #[allow(clippy::too_many_arguments)]
    fn rtmsg(&mut self, family: u8, dst_len: u8, table: u8, protocol: u8, scope: u8, ty: u8) {
        self.put(&[family, dst_len, 0, 0, table, protocol, scope, ty]);
        self.put(&0u32.to_ne_bytes());
    }

    /// `struct nhmsg`.
    fn nhmsg(&mut self, family: u8, protocol: u8) {
        self.put(&[family, 0, protocol, 0]);
        self.put(&0u32.to_ne_bytes());
    }
}

/// Where our routes live and how they are tagged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteKey {
    pub(crate) table: u32,
    pub(crate) metric: u32,
    pub(crate) protocol: u8,
}

fn table_byte(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(RT_TABLE_UNSPEC)
}

fn dst(buf: &mut MsgBuf, prefix: &IpNet) {
    buf.attr(RTA_DST, &addr_bytes(&prefix.network()));
}

/// RTM_NEWROUTE with create + replace.
pub(crate) fn replace_route(
    buf: &mut MsgBuf,
    seq: u32,
    key: RouteKey,
    prefix: &IpNet,
    target: &RouteTarget,
) {
    let family = Family::of(prefix);
    let scope = match target {
        RouteTarget::Paths(paths) if paths.iter().all(|p| p.gateway.is_none()) => RT_SCOPE_LINK,
        RouteTarget::Paths(_) | RouteTarget::Nexthop(_) => RT_SCOPE_UNIVERSE,
    };
    buf.begin(
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
        seq,
    );
    buf.rtmsg(
        family_byte(family),
        prefix.prefix_len(),
        table_byte(key.table),
        key.protocol,
        scope,
        RTN_UNICAST,
    );
    dst(buf, prefix);
    buf.attr_u32(RTA_TABLE, key.table);
    buf.attr_u32(RTA_PRIORITY, effective_metric(family, key.metric));
    match target {
        RouteTarget::Nexthop(id) => buf.attr_u32(RTA_NH_ID, *id),
        RouteTarget::Paths(paths) => match &paths[..] {
            [path] => {
                buf.attr_u32(RTA_OIF, path.ifindex);
                if let Some(gw) = &path.gateway {
                    buf.attr(RTA_GATEWAY, &addr_bytes(gw));
                }
            }
            paths => {
                let nest = buf.nest_begin(RTA_MULTIPATH);
                for path in paths {
                    // struct rtnexthop { len, flags, hops (weight - 1), ifindex }
                    let at = buf.len();
                    buf.put(&0u16.to_ne_bytes());
                    buf.put(&[0, 0]);
                    buf.put(&path.ifindex.to_ne_bytes());
                    if let Some(gw) = &path.gateway {
                        buf.attr(RTA_GATEWAY, &addr_bytes(gw));
                    }
                    let len = (buf.len() - at) as u16;
                    buf.patch_u16(at, len);
                }
                buf.nest_end(nest);
            }
        },
    }
    buf.end();
}

/// RTM_DELROUTE for exactly our route (protocol, table, metric).
pub(crate) fn delete_route(buf: &mut MsgBuf, seq: u32, key: RouteKey, prefix: &IpNet) {
    let family = Family::of(prefix);
    buf.begin(RTM_DELROUTE, NLM_F_REQUEST, seq);
    buf.rtmsg(
        family_byte(family),
        prefix.prefix_len(),
        table_byte(key.table),
        key.protocol,
        RT_SCOPE_NOWHERE,
        0,
    );
    dst(buf, prefix);
    buf.attr_u32(RTA_TABLE, key.table);
    buf.attr_u32(RTA_PRIORITY, effective_metric(family, key.metric));
    buf.end();
}

/// RTM_NEWNEXTHOP with create + replace.
pub(crate) fn replace_nexthop(
    buf: &mut MsgBuf,
    seq: u32,
    protocol: u8,
    id: NhId,
    object: &NexthopObject,
) {
    buf.begin(
        RTM_NEWNEXTHOP,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
        seq,
    );
    match object {
        NexthopObject::Single { family, path } => {
            buf.nhmsg(family_byte(*family), protocol);
            buf.attr_u32(NHA_ID, id);
            buf.attr_u32(NHA_OIF, path.ifindex);
            if let Some(gw) = &path.gateway {
                buf.attr(NHA_GATEWAY, &addr_bytes(gw));
            }
        }
        NexthopObject::Group { members } => {
            buf.nhmsg(AF_UNSPEC, protocol);
            buf.attr_u32(NHA_ID, id);
            // struct nexthop_grp { id, weight (- 1), weight_high, resvd2 }
            let mut group = Vec::with_capacity(members.len() * 8);
            for member in members {
                group.extend_from_slice(&member.to_ne_bytes());
                group.extend_from_slice(&[0, 0, 0, 0]);
            }
            buf.attr(NHA_GROUP, &group);
        }
        NexthopObject::Foreign => {
            // Never created: a blackhole keeps the id harmless if asked to.
            buf.nhmsg(AF_INET, protocol);
            buf.attr_u32(NHA_ID, id);
            buf.attr(NHA_BLACKHOLE, &[]);
        }
    }
    buf.end();
}

/// RTM_DELNEXTHOP.
pub(crate) fn delete_nexthop(buf: &mut MsgBuf, seq: u32, id: NhId) {
    buf.begin(RTM_DELNEXTHOP, NLM_F_REQUEST, seq);
    buf.nhmsg(AF_UNSPEC, 0);
    buf.attr_u32(NHA_ID, id);
    buf.end();
}

/// RTM_GETLINK for one interface.
pub(crate) fn get_link(buf: &mut MsgBuf, seq: u32, ifindex: u32) {
    buf.begin(RTM_GETLINK, NLM_F_REQUEST, seq);
    buf.put(&[0, 0, 0, 0]);
    buf.put(&ifindex.to_ne_bytes());
    buf.put(&[0; 8]);
    buf.end();
}

/// A dump of the routes of `protocol`, all tables, one family.
pub(crate) fn dump_routes(buf: &mut MsgBuf, seq: u32, family: Family, protocol: u8) {
    buf.begin(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq);
    buf.rtmsg(family_byte(family), 0, RT_TABLE_UNSPEC, protocol, 0, 0);
    buf.end();
}

/// A dump of all nexthop objects.
pub(crate) fn dump_nexthops(buf: &mut MsgBuf, seq: u32) {
    buf.begin(RTM_GETNEXTHOP, NLM_F_REQUEST | NLM_F_DUMP, seq);
    buf.nhmsg(AF_UNSPEC, 0);
    buf.end();
}

/// One netlink message read from a buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Msg<'a> {
    pub(crate) ty: u16,
    pub(crate) flags: u16,
    pub(crate) seq: u32,
    pub(crate) payload: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The messages in a datagram; stops at the first malformed header.
pub(crate) fn messages(mut buf: &[u8]) -> impl Iterator<Item = Msg<'_>> {
    std::iter::from_fn(move || {
        let len = u32_at(buf, 0)? as usize;
        if len < NLMSGHDR_LEN || len > buf.len() {
            return None;
        }
        let msg = Msg {
            ty: u16_at(buf, 4)?,
            flags: u16_at(buf, 6)?,
            seq: u32_at(buf, 8)?,
            payload: buf.get(NLMSGHDR_LEN..len)?,
        };
        buf = buf.get(align4(len).min(buf.len())..).unwrap_or(&[]);
        Some(msg)
    })
}

/// The attributes in `buf`; stops at the first malformed one.
pub(crate) fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(buf, 0)?);
        let ty = u16_at(buf, 2)? & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = buf.get(4..len)?;
        buf = buf.get(align4(len).min(buf.len())..).unwrap_or(&[]);
        Some((ty, payload))
    })
}

fn attr_u32(payload: &[u8]) -> Option<u32> {
    u32_at(payload, 0)
}

fn ip_of(payload: &[u8]) -> Option<IpAddr> {
    match payload.len() {
        4 => {
            let b: [u8; 4] = payload.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        16 => {
            let b: [u8; 16] = payload.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// An NLMSG_ERROR: 0 for an ack, else a positive errno, and the kernel's
/// extended-ack text if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ack {
    pub(crate) errno: i32,
    pub(crate) message: Option<String>,
}

pub(crate) fn parse_ack(msg: &Msg<'_>) -> Option<Ack> {
    let error = i32::from_ne_bytes(msg.payload.get(0..4)?.try_into().ok()?);
    let mut message = None;
    if msg.flags & NLM_F_ACK_TLVS != 0 {
        // The request follows the error code: its header alone when the
        // kernel capped it (NETLINK_CAP_ACK), else the whole message.
        let orig_len = if msg.flags & NLM_F_CAPPED != 0 {
            NLMSGHDR_LEN
        } else {
            align4(u32_at(msg.payload, 4).map_or(NLMSGHDR_LEN, |l| l as usize))
        };
        let tlvs = msg.payload.get(4 + orig_len..).unwrap_or(&[]);
        for (ty, payload) in attrs(tlvs) {
            if ty == NLMSGERR_ATTR_MSG {
                let text = payload.split(|b| *b == 0).next().unwrap_or(&[]);
                message = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    Some(Ack {
        errno: error.saturating_neg(),
        message,
    })
}

/// A route as the kernel reports it (a dump entry or a notification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelRoute {
    pub(crate) prefix: IpNet,
    pub(crate) table: u32,
    pub(crate) protocol: u8,
    pub(crate) metric: u32,
    pub(crate) unicast: bool,
    pub(crate) target: Option<RouteTarget>,
}

pub(crate) fn parse_route(payload: &[u8]) -> Option<KernelRoute> {
    let head = payload.get(..RTMSG_LEN)?;
    let (family, dst_len, table, protocol, ty) = (head[0], head[1], head[4], head[5], head[7]);
    let family = match family {
        AF_INET => Family::V4,
        AF_INET6 => Family::V6,
        _ => return None,
    };
    let mut table = u32::from(table);
    let mut dst = None;
    let mut metric = 0;
    let mut nh_id = None;
    let mut oif = None;
    let mut gateway = None;
    let mut multipath = None;
    for (attr, value) in attrs(payload.get(RTMSG_LEN..)?) {
        match attr {
            RTA_DST => dst = ip_of(value),
            RTA_TABLE => table = attr_u32(value).unwrap_or(table),
            RTA_PRIORITY => metric = attr_u32(value).unwrap_or(0),
            RTA_NH_ID => nh_id = attr_u32(value),
            RTA_OIF => oif = attr_u32(value),
            RTA_GATEWAY => gateway = ip_of(value),
            RTA_MULTIPATH => multipath = Some(parse_multipath(value)),
            _ => {}
        }
    }
    let addr = dst.unwrap_or(match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let prefix = IpNet::new(addr, dst_len).ok()?;
    let target = match (nh_id, multipath, oif) {
        (Some(id), _, _) => Some(RouteTarget::Nexthop(id)),
        (None, Some(mut paths), _) if !paths.is_empty() => {
            paths.sort();
            Some(RouteTarget::Paths(paths.into()))
        }
        (None, _, Some(ifindex)) => Some(RouteTarget::Paths(Box::new([Path { ifindex, gateway }]))),
        (None, _, None) => None,
    };
    Some(KernelRoute {
        prefix,
        table,
        protocol,
        metric,
        unicast: ty == RTN_UNICAST,
        target,
    })
}

fn parse_multipath(mut buf: &[u8]) -> Vec<Path> {
    let mut paths = Vec::new();
    while let (Some(len), Some(ifindex)) = (u16_at(buf, 0), u32_at(buf, 4)) {
        let len = usize::from(len);
        if len < RTNH_LEN || len > buf.len() {
            break;
        }
        let gateway = buf
            .get(RTNH_LEN..len)
            .and_then(|a| attrs(a).find(|(ty, _)| *ty == RTA_GATEWAY))
            .and_then(|(_, v)| ip_of(v));
        paths.push(Path { ifindex, gateway });
        buf = buf.get(align4(len).min(buf.len())..).unwrap_or(&[]);
    }
    paths
}

/// A nexthop object as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelNexthop {
    pub(crate) id: NhId,
    pub(crate) protocol: u8,
    pub(crate) object: NexthopObject,
}

pub(crate) fn parse_nexthop(payload: &[u8]) -> Option<KernelNexthop> {
    let head = payload.get(..NHMSG_LEN)?;
    let (family, protocol) = (head[0], head[2]);
    let mut id = None;
    let mut group = None;
    let mut oif = None;
    let mut gateway = None;
    for (attr, value) in attrs(payload.get(NHMSG_LEN..)?) {
        match attr {
            NHA_ID => id = attr_u32(value),
            NHA_GROUP => {
                let members: Vec<NhId> = value.chunks_exact(8).filter_map(attr_u32).collect();
                group = Some(members);
            }
            NHA_OIF => oif = attr_u32(value),
            NHA_GATEWAY => gateway = ip_of(value),
            _ => {}
        }
    }
    let family = match family {
        AF_INET => Some(Family::V4),
        AF_INET6 => Some(Family::V6),
        _ => None,
    };
    let object = match (group, oif, family) {
        (Some(mut members), _, _) => {
            members.sort_unstable();
            NexthopObject::Group { members }
        }
        (None, Some(ifindex), Some(family)) => NexthopObject::Single {
            family,
            path: Path { ifindex, gateway },
        },
        (None, _, _) => NexthopObject::Foreign,
    };
    Some(KernelNexthop {
        id: id?,
        protocol,
        object,
    })
}

/// A link notification or answer: its index and whether it can carry
/// traffic (administratively up, with carrier).
pub(crate) fn parse_link(payload: &[u8]) -> Option<(u32, bool)> {
    if payload.len() < IFINFOMSG_LEN {
        return None;
    }
    let index = u32_at(payload, 4)?;
    let flags = u32_at(payload, 8)?;
    Some((index, flags & IFF_UP != 0 && flags & IFF_LOWER_UP != 0))
}

/// A classic BPF program for the notification socket: it lets through
/// link changes, and deletions of routes and nexthops of `protocol` — what
/// the driver acts on — unless our own request socket (`own_portid`) caused
/// them, and drops everything else: above all the echo of our own installs
/// and withdrawals, which would flood the socket at a million routes and
/// force a resync.
pub(crate) fn monitor_filter(protocol: u8, own_portid: u32) -> Vec<libc::sock_filter> {
    // BPF loads are big-endian; netlink headers are host order.
    let ty = |t: u16| u32::from(u16::from_be_bytes(t.to_ne_bytes()));
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    const LDW_ABS: u16 = 0x20;
    const LDH_ABS: u16 = 0x28;
    const LDB_ABS: u16 = 0x30;
    const JEQ_K: u16 = 0x15;
    const JA: u16 = 0x05;
    const RET_K: u16 = 0x06;
    vec![
        op(LDH_ABS, 0, 0, 4),                 // 0: A = nlmsg_type
        op(JEQ_K, 10, 0, ty(RTM_NEWLINK)),    // 1: -> 12 accept
        op(JEQ_K, 9, 0, ty(RTM_DELLINK)),     // 2: -> 12 accept
        op(JEQ_K, 2, 0, ty(RTM_DELROUTE)),    // 3: -> 6
        op(JEQ_K, 3, 0, ty(RTM_DELNEXTHOP)),  // 4: -> 8
        op(RET_K, 0, 0, 0),                   // 5: drop
        op(LDB_ABS, 0, 0, 16 + 5),            // 6: A = rtm_protocol
        op(JA, 0, 0, 1),                      // 7: -> 9
        op(LDB_ABS, 0, 0, 16 + 2),            // 8: A = nh_protocol
        op(JEQ_K, 0, 3, u32::from(protocol)), // 9: -> 10 / 13 drop
        op(LDW_ABS, 0, 0, 12),                // 10: A = nlmsg_pid
        op(JEQ_K, 1, 0, u32::from_be_bytes(own_portid.to_ne_bytes())), // 11: ours -> 13 drop
        op(RET_K, 0, 0, u32::MAX),            // 12: accept
        op(RET_K, 0, 0, 0),                   // 13: drop
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const KEY: RouteKey = RouteKey {
        table: 254,
        metric: 20,
        protocol: 200,
    };

    fn one(buf: &MsgBuf) -> Msg<'_> {
        let all: Vec<Msg<'_>> = messages(buf.bytes()).collect();
        assert_eq!(all.len(), 1);
        all[0]
    }

    #[test]
    fn route_with_nhid_round_trips() {
        let mut buf = MsgBuf::default();
        let prefix: IpNet = "10.20.0.0/16".parse().unwrap();
        replace_route(&mut buf, 7, KEY, &prefix, &RouteTarget::Nexthop(42));
        let msg = one(&buf);
        assert_eq!(msg.ty, RTM_NEWROUTE);
        assert_eq!(msg.seq, 7);
        assert_eq!(msg.flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE);
        let route = parse_route(msg.payload).unwrap();
        assert_eq!(
            route,
            KernelRoute {
                prefix,
                table: 254,
                protocol: 200,
                metric: 20,
                unicast: true,
                target: Some(RouteTarget::Nexthop(42)),
            }
        );
    }

    #[test]
    fn multipath_route_round_trips() {
        let mut buf = MsgBuf::default();
        let prefix: IpNet = "2001:db8:5::/48".parse().unwrap();
        let paths = vec![
            Path {
                ifindex: 3,
                gateway: Some("fe80::1".parse().unwrap()),
            },
            Path {
                ifindex: 4,
                gateway: None,
            },
        ];
        replace_route(
            &mut buf,
            1,
            KEY,
            &prefix,
            &RouteTarget::Paths(paths.clone().into()),
        );
        let route = parse_route(one(&buf).payload).unwrap();
        assert_eq!(route.target, Some(RouteTarget::Paths(paths.into())));
        assert_eq!(route.table, 254);
    }

    #[test]
    fn table_above_255_goes_in_the_attribute() {
        let mut buf = MsgBuf::default();
        let key = RouteKey { table: 1000, ..KEY };
        let prefix: IpNet = "0.0.0.0/0".parse().unwrap();
        delete_route(&mut buf, 1, key, &prefix);
        let msg = one(&buf);
        assert_eq!(msg.payload[4], RT_TABLE_UNSPEC);
        let route = parse_route(msg.payload).unwrap();
        assert_eq!((route.table, route.prefix), (1000, prefix));
    }

    #[test]
    fn nexthops_round_trip() {
        let mut buf = MsgBuf::default();
        let single = NexthopObject::Single {
            family: Family::V4,
            path: Path {
                ifindex: 9,
                gateway: Some("169.254.21.1".parse().unwrap()),
            },
        };
        let group = NexthopObject::Group {
            members: vec![5, 6],
        };
        replace_nexthop(&mut buf, 1, 200, 5, &single);
        replace_nexthop(&mut buf, 2, 200, 10, &group);
        buf.ack_last();
        let msgs: Vec<Msg<'_>> = messages(buf.bytes()).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].flags & NLM_F_ACK, 0);
        assert_ne!(msgs[1].flags & NLM_F_ACK, 0);
        let a = parse_nexthop(msgs[0].payload).unwrap();
        let b = parse_nexthop(msgs[1].payload).unwrap();
        assert_eq!((a.id, a.protocol, a.object), (5, 200, single));
        assert_eq!((b.id, b.object), (10, group));
    }

    #[test]
    fn ack_with_extended_message() {
        // An NLMSG_ERROR as the kernel sends it with CAP_ACK and EXT_ACK:
        // error, the request's header, then NLMSGERR_ATTR_MSG.
        let mut payload = Vec::new();
        payload.extend_from_slice(&(-22i32).to_ne_bytes());
        payload.extend_from_slice(&[0u8; 16]);
        let text = b"Nexthop id does not exist\0";
        let len = (4 + text.len()) as u16;
        payload.extend_from_slice(&len.to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        let msg = Msg {
            ty: NLMSG_ERROR,
            flags: NLM_F_ACK_TLVS | NLM_F_CAPPED,
            seq: 1,
            payload: &payload,
        };
        assert_eq!(
            parse_ack(&msg),
            Some(Ack {
                errno: 22,
                message: Some("Nexthop id does not exist".into())
            })
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut data = vec![0u8; 64];
        for seed in 0..2000u32 {
            for (i, b) in data.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2654435761).wrapping_add(i as u32 * 97) >> 7) as u8;
            }
            for msg in messages(&data) {
                let _ = parse_route(msg.payload);
                let _ = parse_nexthop(msg.payload);
                let _ = parse_link(msg.payload);
                let _ = parse_ack(&msg);
            }
            let _ = parse_route(&data);
            let _ = parse_nexthop(&data);
            let _ = parse_multipath(&data);
        }
    }
}
