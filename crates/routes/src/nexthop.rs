//! Nexthop groups: the set of tunnel next hops a route uses (one for a single
//! tunnel, several for ECMP). Pure: no sockets.
//!
//! Each tunnel owns one nexthop object per address family (device + the
//! peer's tunnel address of that family, or the bare device when it has
//! none): IPv6 routes cannot use an IPv4 nexthop, so the two families are
//! kept apart. Each distinct set of tunnels that some route asks for, per
//! family, is one group with a stable id, reference-counted by the routes
//! that use it. A group's *members* are the tunnels of its set that are
//! usable now (up, and their link up); when a tunnel goes down, every group
//! that contains it shrinks in place, so the routes pointing at the group do
//! not change. A group with no usable member is not in the kernel at all.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A kernel nexthop object id (a route's `nhid`).
pub type NhId = u32;

/// The first id this crate uses for its nexthop objects unless configured
/// otherwise; high enough to stay out of the way of ids people type by hand.
pub const DEFAULT_ID_BASE: NhId = 0x7670_0000;

/// A tunnel, as the daemon names it (its connection or TUN device name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TunnelId(pub String);

impl fmt::Display for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for TunnelId {
    fn from(name: &str) -> TunnelId {
        TunnelId(name.to_string())
    }
}

/// A tunnel as the route programmer sees it: the device routes leave by and
/// the peer's tunnel addresses (the gateways), if it has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// The daemon's name for it.
    pub id: TunnelId,
    /// The kernel interface index of its device.
    pub ifindex: u32,
    /// The peer's IPv4 tunnel address; IPv4 routes go via it when set.
    pub peer_v4: Option<Ipv4Addr>,
    /// The peer's IPv6 tunnel address; IPv6 routes go via it when set.
    pub peer_v6: Option<Ipv6Addr>,
}

impl Tunnel {
    /// The path routes of `family` take through this tunnel.
    pub fn path(&self, family: Family) -> Path {
        let gateway = match family {
            Family::V4 => self.peer_v4.map(IpAddr::V4),
            Family::V6 => self.peer_v6.map(IpAddr::V6),
        };
        Path {
            ifindex: self.ifindex,
            gateway,
        }
    }
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of a prefix.
    pub fn of(prefix: &ipnet::IpNet) -> Family {
        match prefix {
            ipnet::IpNet::V4(_) => Family::V4,
            ipnet::IpNet::V6(_) => Family::V6,
        }
    }

    fn index(self) -> usize {
        match self {
            Family::V4 => 0,
            Family::V6 => 1,
        }
    }
}

/// One way out: a device, and the gateway on it if there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path {
    /// Interface index of the device.
    pub ifindex: u32,
    /// Next-hop address, if any (a point-to-point tunnel needs none).
    pub gateway: Option<IpAddr>,
}

/// A nexthop object as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NexthopObject {
    /// One path (`ip nexthop add id N via GW dev DEV`).
    Single {
        /// The family of routes that may use it.
        family: Family,
        /// Where it leads.
        path: Path,
    },
    /// A multipath group of single nexthops (`ip nexthop add id N group A/B`),
    /// members sorted by id, equal weights.
    Group {
        /// Member nexthop ids.
        members: Vec<NhId>,
    },
    /// A nexthop this crate did not create and cannot describe (found in a
    /// dump); it is only ever deleted, never compared.
    Foreign,
}

/// How a tunnel state change touched one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupChange {
    /// The group.
    pub group: NhId,
    /// Whether it had a usable member before.
    pub was_usable: bool,
    /// Whether it has one now.
    pub now_usable: bool,
}

#[derive(Debug, Clone)]
struct TunnelEntry {
    tunnel: Tunnel,
    admin_up: bool,
    link_up: bool,
    /// Its nexthop ids, by [`Family::index`].
    nh: [NhId; 2],
}

impl TunnelEntry {
    fn usable(&self) -> bool {
        self.admin_up && self.link_up
    }
}

type GroupKey = (Family, BTreeSet<TunnelId>);

#[derive(Debug, Clone)]
struct GroupEntry {
    family: Family,
    tunnels: BTreeSet<TunnelId>,
    refs: usize,
}

/// Allocates nexthop ids from a base upwards, skipping ids in use.
#[derive(Debug, Clone)]
struct IdAllocator {
    base: NhId,
    next: NhId,
    used: HashSet<NhId>,
}

impl IdAllocator {
    fn allocate(&mut self) -> NhId {
        loop {
            let id = self.next;
            self.next = if self.next == NhId::MAX {
                self.base
            } else {
                self.next + 1
            };
            if id != 0 && self.used.insert(id) {
                return id;
            }
        }
    }

    fn free(&mut self, id: NhId) {
        self.used.remove(&id);
    }
}

/// The tunnels, their nexthop ids, and the reference-counted groups.
#[derive(Debug, Clone)]
pub struct NexthopModel {
    tunnels: BTreeMap<TunnelId, TunnelEntry>,
    groups: BTreeMap<NhId, GroupEntry>,
    by_key: HashMap<GroupKey, NhId>,
    ids: IdAllocator,
}

impl NexthopModel {
    /// An empty model allocating ids from `id_base` upwards.
    pub fn new(id_base: NhId) -> NexthopModel {
        let base = id_base.max(1);
        NexthopModel {
            tunnels: BTreeMap::new(),
            groups: BTreeMap::new(),
            by_key: HashMap::new(),
            ids: IdAllocator {
                base,
                next: base,
                used: HashSet::new(),
            },
        }
    }

    /// Marks ids as taken (found in the kernel), so they are never allocated.
    pub fn reserve(&mut self, ids: impl IntoIterator<Item = NhId>) {
        self.ids.used.extend(ids);
    }

    /// Whether `id` is a nexthop or group of this model.
    pub fn owns(&self, id: NhId) -> bool {
        self.groups.contains_key(&id) || self.tunnels.values().any(|t| t.nh.contains(&id))
    }

    /// Adds a tunnel or updates its device and peers; `up` is whether the
    /// daemon considers it up. Its link counts as up until told otherwise.
    /// Returns the groups whose usability changed.
    pub fn set_tunnel(&mut self, tunnel: Tunnel, up: bool) -> Vec<GroupChange> {
        let id = tunnel.id.clone();
        let before = self.snapshot(&id);
        match self.tunnels.get_mut(&id) {
            Some(entry) => {
                entry.tunnel = tunnel;
                entry.admin_up = up;
            }
            None => {
                let nh = [self.ids.allocate(), self.ids.allocate()];
                self.tunnels.insert(
                    id.clone(),
                    TunnelEntry {
                        tunnel,
                        admin_up: up,
                        link_up: true,
                        nh,
                    },
                );
            }
        }
        self.changes(&id, before)
    }

    /// Forgets a tunnel: groups that contain it lose it for good.
    pub fn remove_tunnel(&mut self, id: &TunnelId) -> Vec<GroupChange> {
        let before = self.snapshot(id);
        if let Some(entry) = self.tunnels.remove(id) {
            for nh in entry.nh {
                self.ids.free(nh);
            }
        }
        self.changes(id, before)
    }

    /// Sets whether the daemon considers the tunnel up. Returns the groups
    /// whose usability changed; empty if the tunnel is unknown.
    pub fn set_admin(&mut self, id: &TunnelId, up: bool) -> Vec<GroupChange> {
        let before = self.snapshot(id);
        if let Some(entry) = self.tunnels.get_mut(id) {
            entry.admin_up = up;
        }
        self.changes(id, before)
    }

    /// Sets whether the tunnel's link is up (IFF_UP and carrier), as the
    /// kernel reports for `ifindex`. Returns the tunnel on that link, if any,
    /// and the groups whose usability changed.
    pub fn set_link(&mut self, ifindex: u32, up: bool) -> Option<(TunnelId, Vec<GroupChange>)> {
        let id = self
            .tunnels
            .values()
            .find(|t| t.tunnel.ifindex == ifindex)
            .map(|t| t.tunnel.id.clone())?;
        let before = self.snapshot(&id);
        if let Some(entry) = self.tunnels.get_mut(&id) {
            entry.link_up = up;
        }
        let changes = self.changes(&id, before);
        Some((id, changes))
    }

    /// Whether the link of the tunnel on `ifindex` is up, if one is there.
    pub fn link_up(&self, ifindex: u32) -> Option<bool> {
        self.tunnels
            .values()
            .find(|t| t.tunnel.ifindex == ifindex)
            .map(|t| t.link_up)
    }

    /// Whether the tunnel is known, up and its link up.
    pub fn usable(&self, id: &TunnelId) -> bool {
        self.tunnels.get(id).is_some_and(TunnelEntry::usable)
    }

    /// The tunnel registered as `id`.
    pub fn tunnel(&self, id: &TunnelId) -> Option<&Tunnel> {
        self.tunnels.get(id).map(|t| &t.tunnel)
    }

    /// The group for `tunnels` in `family`, created if new; takes one
    /// reference. `tunnels` must not be empty.
    pub fn acquire(&mut self, family: Family, tunnels: BTreeSet<TunnelId>) -> NhId {
        let key = (family, tunnels);
        if let Some(&id) = self.by_key.get(&key) {
            if let Some(group) = self.groups.get_mut(&id) {
                group.refs += 1;
            }
            return id;
        }
        let id = self.ids.allocate();
        let (family, tunnels) = key;
        self.groups.insert(
            id,
            GroupEntry {
                family,
                tunnels: tunnels.clone(),
                refs: 1,
            },
        );
        self.by_key.insert((family, tunnels), id);
        id
    }

    /// Takes one more reference to an existing `group`.
    pub fn add_ref(&mut self, group: NhId) {
        if let Some(g) = self.groups.get_mut(&group) {
            g.refs += 1;
        }
    }

    /// Drops one reference to `group`; the group is forgotten (and its id
    /// freed) with the last one.
    pub fn release(&mut self, group: NhId) {
        let Some(entry) = self.groups.get_mut(&group) else {
            return;
        };
        entry.refs = entry.refs.saturating_sub(1);
        if entry.refs == 0 {
            if let Some(entry) = self.groups.remove(&group) {
                self.by_key.remove(&(entry.family, entry.tunnels));
            }
            self.ids.free(group);
        }
    }

    /// How many routes use `group`.
    pub fn refs(&self, group: NhId) -> usize {
        self.groups.get(&group).map_or(0, |g| g.refs)
    }

    /// The usable tunnels of `group`, in name order.
    fn members<'a>(&'a self, group: &'a GroupEntry) -> impl Iterator<Item = &'a TunnelEntry> {
        group
            .tunnels
            .iter()
            .filter_map(|id| self.tunnels.get(id))
            .filter(|t| t.usable())
    }

    /// Whether `group` has at least one usable member.
    pub fn group_usable(&self, group: NhId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|g| self.members(g).next().is_some())
    }

    /// The paths of `group`'s usable members (classic multipath routes).
    pub fn group_paths(&self, group: NhId) -> Vec<Path> {
        let Some(entry) = self.groups.get(&group) else {
            return Vec::new();
        };
        let mut paths: Vec<Path> = self
            .members(entry)
            .map(|t| t.tunnel.path(entry.family))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// The nexthop objects the kernel should hold: one group per group in
    /// use with a usable member, and the single nexthops of their members.
    pub fn desired_objects(&self) -> BTreeMap<NhId, NexthopObject> {
        let mut objects = BTreeMap::new();
        for (&id, group) in &self.groups {
            let mut members: Vec<NhId> = Vec::new();
            for tunnel in self.members(group) {
                let nh = tunnel.nh[group.family.index()];
                members.push(nh);
                objects.insert(
                    nh,
                    NexthopObject::Single {
                        family: group.family,
                        path: tunnel.tunnel.path(group.family),
                    },
                );
            }
            if !members.is_empty() {
                members.sort_unstable();
                objects.insert(id, NexthopObject::Group { members });
            }
        }
        objects
    }

    /// The groups that contain tunnel `id`, and whether each is usable.
    fn snapshot(&self, id: &TunnelId) -> Vec<(NhId, bool)> {
        self.groups
            .iter()
            .filter(|(_, g)| g.tunnels.contains(id))
            .map(|(&gid, g)| (gid, self.members(g).next().is_some()))
            .collect()
    }

    fn changes(&self, id: &TunnelId, before: Vec<(NhId, bool)>) -> Vec<GroupChange> {
        let was_usable: HashMap<NhId, bool> = before.into_iter().collect();
        self.snapshot(id)
            .into_iter()
            .map(|(group, now_usable)| GroupChange {
                group,
                was_usable: was_usable.get(&group).copied().unwrap_or(false),
                now_usable,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn tunnel(name: &str, ifindex: u32, last: u8) -> Tunnel {
        Tunnel {
            id: TunnelId::from(name),
            ifindex,
            peer_v4: Some(Ipv4Addr::new(169, 254, 21, last)),
            peer_v6: None,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<TunnelId> {
        names.iter().map(|n| TunnelId::from(*n)).collect()
    }

    #[test]
    fn one_group_per_distinct_set_reference_counted() {
        let mut m = NexthopModel::new(100);
        m.set_tunnel(tunnel("a", 10, 1), true);
        m.set_tunnel(tunnel("b", 11, 5), true);
        let g1 = m.acquire(Family::V4, set(&["a", "b"]));
        let g2 = m.acquire(Family::V4, set(&["b", "a"]));
        let g3 = m.acquire(Family::V4, set(&["a"]));
        let g6 = m.acquire(Family::V6, set(&["a", "b"]));
        assert_eq!(g1, g2);
        assert_ne!(g1, g3);
        assert_ne!(g1, g6);
        assert_eq!(m.refs(g1), 2);
        m.release(g1);
        assert_eq!(m.refs(g1), 1);
        m.release(g1);
        assert_eq!(m.refs(g1), 0);
        assert!(!m.owns(g1));
        // A new set gets a fresh id, and the freed one may come back.
        let g4 = m.acquire(Family::V4, set(&["b"]));
        assert!(m.owns(g4));
    }

    #[test]
    fn desired_objects_are_singles_and_groups() {
        let mut m = NexthopModel::new(100);
        m.set_tunnel(tunnel("a", 10, 1), true);
        m.set_tunnel(tunnel("b", 11, 5), true);
        let g = m.acquire(Family::V4, set(&["a", "b"]));
        let objects = m.desired_objects();
        assert_eq!(objects.len(), 3);
        let NexthopObject::Group { members } = &objects[&g] else {
            panic!("not a group");
        };
        assert_eq!(members.len(), 2);
        for member in members {
            assert!(matches!(
                objects[member],
                NexthopObject::Single {
                    family: Family::V4,
                    path: Path {
                        gateway: Some(_),
                        ..
                    }
                }
            ));
        }
    }

    #[test]
    fn tunnel_down_shrinks_its_groups_and_empties_single_ones() {
        let mut m = NexthopModel::new(100);
        m.set_tunnel(tunnel("a", 10, 1), true);
        m.set_tunnel(tunnel("b", 11, 5), true);
        let both = m.acquire(Family::V4, set(&["a", "b"]));
        let only_a = m.acquire(Family::V4, set(&["a"]));
        let only_b = m.acquire(Family::V4, set(&["b"]));

        let mut changes = m.set_admin(&TunnelId::from("a"), false);
        changes.sort_by_key(|c| c.group);
        let mut expected = vec![
            GroupChange {
                group: both,
                was_usable: true,
                now_usable: true,
            },
            GroupChange {
                group: only_a,
                was_usable: true,
                now_usable: false,
            },
        ];
        expected.sort_by_key(|c| c.group);
        assert_eq!(changes, expected);

        let objects = m.desired_objects();
        assert!(
            !objects.contains_key(&only_a),
            "empty group is not in the kernel"
        );
        let NexthopObject::Group { members } = &objects[&both] else {
            panic!("not a group");
        };
        let NexthopObject::Group { members: b_members } = &objects[&only_b] else {
            panic!("not a group");
        };
        assert_eq!(members, b_members, "the shared group now holds b only");
        assert_eq!(m.group_paths(both), m.group_paths(only_b));
    }

    #[test]
    fn link_down_counts_as_tunnel_down() {
        let mut m = NexthopModel::new(100);
        m.set_tunnel(tunnel("a", 10, 1), true);
        let g = m.acquire(Family::V4, set(&["a"]));
        let (id, changes) = m.set_link(10, false).unwrap();
        assert_eq!(id, TunnelId::from("a"));
        assert_eq!(
            changes,
            vec![GroupChange {
                group: g,
                was_usable: true,
                now_usable: false
            }]
        );
        assert!(m.set_link(99, false).is_none());
        let (_, changes) = m.set_link(10, true).unwrap();
        assert!(changes[0].now_usable);
        // Still down for the daemon: link up alone does not make it usable.
        m.set_admin(&id, false);
        assert!(!m.group_usable(g));
    }

    #[test]
    fn unknown_tunnel_in_a_set_is_not_a_member_until_added() {
        let mut m = NexthopModel::new(100);
        let g = m.acquire(Family::V6, set(&["later"]));
        assert!(!m.group_usable(g));
        let changes = m.set_tunnel(tunnel("later", 12, 9), true);
        assert_eq!(
            changes,
            vec![GroupChange {
                group: g,
                was_usable: false,
                now_usable: true
            }]
        );
        // No IPv6 peer: the IPv6 path is the bare device.
        assert_eq!(
            m.group_paths(g),
            vec![Path {
                ifindex: 12,
                gateway: None
            }]
        );
        m.remove_tunnel(&TunnelId::from("later"));
        assert!(!m.group_usable(g));
    }

    #[test]
    fn reserved_ids_are_skipped() {
        let mut m = NexthopModel::new(100);
        m.reserve([100, 101, 103]);
        m.set_tunnel(tunnel("a", 10, 1), true);
        let g = m.acquire(Family::V4, set(&["a"]));
        // The tunnel took 102 and 104, the group the next free id.
        assert_eq!(g, 105);
    }
}
