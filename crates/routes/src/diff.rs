//! Desired-vs-installed: what the kernel holds ([`KernelState`]), and the
//! operations that turn it into what it should hold, in dependency order.
//! Pure: no sockets.
//!
//! Three steps, each a list the driver sends in batches:
//!
//! 1. [`nexthop_upserts`]: single nexthops, then groups, created or replaced
//!    (a group may only name nexthops that exist; a shrinking group is
//!    replaced in place, which moves every route behind it at once);
//! 2. [`route_changes`]: routes replaced or deleted, for the prefixes that
//!    may have changed;
//! 3. [`nexthop_deletes`]: groups, then single nexthops, no longer wanted.
//!    Deleting a group also deletes the routes that still use it — which is
//!    how the routes of a group whose last tunnel went down leave the kernel
//!    in one operation.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;
use vpngw_prefix::PrefixMap;

use crate::nexthop::{NexthopObject, NhId, Path};

/// Where a route sends its traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// A nexthop object (`nhid N`), normally a group.
    Nexthop(NhId),
    /// Classic routes: one path, or several as RTA_MULTIPATH (when the
    /// kernel has no nexthop objects). Sorted, never empty.
    Paths(Box<[Path]>),
}

/// One netlink operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or replace a nexthop object.
    ReplaceNexthop {
        /// Its id.
        id: NhId,
        /// What it should be.
        object: NexthopObject,
    },
    /// Delete a nexthop object (missing is fine).
    DeleteNexthop {
        /// Its id.
        id: NhId,
    },
    /// Create or replace a route.
    ReplaceRoute {
        /// Its destination.
        prefix: IpNet,
        /// Where it should lead.
        target: RouteTarget,
    },
    /// Delete a route (missing is fine).
    DeleteRoute {
        /// Its destination.
        prefix: IpNet,
    },
}

/// What this crate's protocol holds in the kernel: nexthop objects and the
/// routes of the configured table and metric.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelState {
    nexthops: BTreeMap<NhId, NexthopObject>,
    routes: InstalledRoutes,
    /// How many routes point at each nexthop id.
    refs: HashMap<NhId, usize>,
}

/// The installed routes, by prefix. A route through a nexthop object (all
/// of them, on kernels that have nexthop objects) costs its 5-octet IPv4
/// key and the 4-octet id; classic routes keep their paths apart. Ordered,
/// not hashed: a million routes in about a fifth of the memory of a hash
/// table of [`RouteTarget`]s that has just doubled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstalledRoutes {
    by_nexthop: PrefixMap<NhId>,
    by_paths: PrefixMap<Box<[Path]>>,
}

impl InstalledRoutes {
    /// How many routes.
    pub fn len(&self) -> usize {
        self.by_nexthop.len() + self.by_paths.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_nexthop.is_empty() && self.by_paths.is_empty()
    }

    /// The route of `prefix`.
    pub fn get(&self, prefix: &IpNet) -> Option<RouteTarget> {
        match self.by_nexthop.get(prefix) {
            Some(id) => Some(RouteTarget::Nexthop(*id)),
            None => self
                .by_paths
                .get(prefix)
                .map(|p| RouteTarget::Paths(p.clone())),
        }
    }

    /// Whether `prefix` has a route.
    pub fn contains_key(&self, prefix: &IpNet) -> bool {
        self.by_nexthop.contains_key(prefix) || self.by_paths.contains_key(prefix)
    }

    /// Whether the route of `prefix` is `target` (without building it).
    pub fn is(&self, prefix: &IpNet, target: &RouteTarget) -> bool {
        match target {
            RouteTarget::Nexthop(id) => self.by_nexthop.get(prefix) == Some(id),
            RouteTarget::Paths(paths) => self.by_paths.get(prefix) == Some(paths),
        }
    }

    /// Every prefix with a route (nexthop routes first, each kind in order).
    pub fn keys(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.by_nexthop.keys().chain(self.by_paths.keys())
    }

    /// Every route.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, RouteTarget)> + '_ {
        self.by_nexthop
            .iter()
            .map(|(p, id)| (p, RouteTarget::Nexthop(*id)))
            .chain(
                self.by_paths
                    .iter()
                    .map(|(p, paths)| (p, RouteTarget::Paths(paths.clone()))),
            )
    }

    /// The prefixes routed through nexthop `id`.
    fn through(&self, id: NhId) -> Vec<IpNet> {
        self.by_nexthop
            .iter()
            .filter(|(_, n)| **n == id)
            .map(|(p, _)| p)
            .collect()
    }

    fn insert(&mut self, prefix: IpNet, target: RouteTarget) -> Option<RouteTarget> {
        let old = self.remove(&prefix);
        match target {
            RouteTarget::Nexthop(id) => {
                self.by_nexthop.insert(prefix, id);
            }
            RouteTarget::Paths(paths) => {
                self.by_paths.insert(prefix, paths);
            }
        }
        old
    }

    fn remove(&mut self, prefix: &IpNet) -> Option<RouteTarget> {
        match self.by_nexthop.remove(prefix) {
            Some(id) => Some(RouteTarget::Nexthop(id)),
            None => self.by_paths.remove(prefix).map(RouteTarget::Paths),
        }
    }
}

impl KernelState {
    /// The nexthop objects.
    pub fn nexthops(&self) -> &BTreeMap<NhId, NexthopObject> {
        &self.nexthops
    }

    /// The routes, by prefix.
    pub fn routes(&self) -> &InstalledRoutes {
        &self.routes
    }

    /// How many routes point at nexthop `id`.
    pub fn refs(&self, id: NhId) -> usize {
        self.refs.get(&id).copied().unwrap_or(0)
    }

    /// Records a route.
    pub fn insert_route(&mut self, prefix: IpNet, target: RouteTarget) {
        if let RouteTarget::Nexthop(id) = target {
            *self.refs.entry(id).or_insert(0) += 1;
        }
        if let Some(old) = self.routes.insert(prefix, target) {
            self.unref(&old);
        }
    }

    /// Forgets a route; returns what it was.
    pub fn remove_route(&mut self, prefix: &IpNet) -> Option<RouteTarget> {
        let old = self.routes.remove(prefix)?;
        self.unref(&old);
        Some(old)
    }

    fn unref(&mut self, target: &RouteTarget) {
        if let RouteTarget::Nexthop(id) = target {
            if let Some(count) = self.refs.get_mut(id) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.refs.remove(id);
                }
            }
        }
    }

    /// Records a nexthop object.
    pub fn insert_nexthop(&mut self, id: NhId, object: NexthopObject) {
        self.nexthops.insert(id, object);
    }

    /// Forgets nexthop `id` the way the kernel removes one: it leaves every
    /// group it was in, a group left empty goes too, and the routes using
    /// whatever went are gone. Returns the prefixes of those routes.
    pub fn remove_nexthop(&mut self, id: NhId) -> Vec<IpNet> {
        let mut gone = vec![id];
        let mut removed = Vec::new();
        while let Some(id) = gone.pop() {
            if self.nexthops.remove(&id).is_none() && self.refs(id) == 0 {
                continue;
            }
            for (&gid, object) in self.nexthops.iter_mut() {
                if let NexthopObject::Group { members } = object {
                    if members.contains(&id) {
                        members.retain(|m| *m != id);
                        if members.is_empty() {
                            gone.push(gid);
                        }
                    }
                }
            }
            if self.refs(id) > 0 {
                let prefixes = self.routes.through(id);
                for prefix in prefixes {
                    self.remove_route(&prefix);
                    removed.push(prefix);
                }
            }
        }
        removed
    }

    /// Records that `op` succeeded in the kernel.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::ReplaceNexthop { id, object } => self.insert_nexthop(*id, object.clone()),
            Op::DeleteNexthop { id } => {
                self.remove_nexthop(*id);
            }
            Op::ReplaceRoute { prefix, target } => self.insert_route(*prefix, target.clone()),
            Op::DeleteRoute { prefix } => {
                self.remove_route(prefix);
            }
        }
    }
}

/// Step 1: the nexthop objects to create or replace — single nexthops
/// first, then groups — so that `installed` holds every object of `desired`.
pub fn nexthop_upserts(
    desired: &BTreeMap<NhId, NexthopObject>,
    installed: &KernelState,
) -> Vec<Op> {
    let changed = desired
        .iter()
        .filter(|(id, object)| installed.nexthops.get(id) != Some(object));
    let (mut singles, mut groups): (Vec<Op>, Vec<Op>) = (Vec::new(), Vec::new());
    for (&id, object) in changed {
        let op = Op::ReplaceNexthop {
            id,
            object: object.clone(),
        };
        match object {
            NexthopObject::Group { .. } => groups.push(op),
            NexthopObject::Single { .. } | NexthopObject::Foreign => singles.push(op),
        }
    }
    singles.append(&mut groups);
    singles
}

/// Step 2: for each of `prefixes`, the route operation (if any) that makes
/// the installed route match `desired` (`None`: no route).
pub fn route_changes<'a>(
    prefixes: impl IntoIterator<Item = &'a IpNet>,
    desired: impl Fn(&IpNet) -> Option<RouteTarget>,
    installed: &KernelState,
) -> Vec<Op> {
    let mut ops = Vec::new();
    for prefix in prefixes {
        match (desired(prefix), installed.routes.contains_key(prefix)) {
            (Some(target), true) if installed.routes.is(prefix, &target) => {}
            (Some(target), _) => ops.push(Op::ReplaceRoute {
                prefix: *prefix,
                target,
            }),
            (None, true) => ops.push(Op::DeleteRoute { prefix: *prefix }),
            (None, false) => {}
        }
    }
    ops
}

/// Step 3: the installed nexthop objects not in `desired`, groups first.
/// One that routes still use is deleted only if `owned` says it is one of
/// ours (a group whose last tunnel went down: deleting it takes its routes
/// along); an adopted one that routes still use is kept until they move.
pub fn nexthop_deletes(
    desired: &BTreeMap<NhId, NexthopObject>,
    installed: &KernelState,
    owned: impl Fn(NhId) -> bool,
) -> Vec<Op> {
    let (mut groups, mut singles): (Vec<Op>, Vec<Op>) = (Vec::new(), Vec::new());
    let in_kept_group = |id: NhId| {
        installed.nexthops.iter().any(|(gid, object)| {
            matches!(object, NexthopObject::Group { members } if members.contains(&id))
                && !desired.contains_key(gid)
                && installed.refs(*gid) > 0
                && !owned(*gid)
        })
    };
    for (&id, object) in &installed.nexthops {
        if desired.contains_key(&id) {
            continue;
        }
        if installed.refs(id) > 0 && !owned(id) {
            continue;
        }
        let op = Op::DeleteNexthop { id };
        match object {
            NexthopObject::Group { .. } => groups.push(op),
            NexthopObject::Single { .. } | NexthopObject::Foreign => {
                if !in_kept_group(id) {
                    singles.push(op);
                }
            }
        }
    }
    groups.append(&mut singles);
    groups
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::nexthop::Family;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn single(ifindex: u32) -> NexthopObject {
        NexthopObject::Single {
            family: Family::V4,
            path: Path {
                ifindex,
                gateway: None,
            },
        }
    }

    fn group(members: &[NhId]) -> NexthopObject {
        NexthopObject::Group {
            members: members.to_vec(),
        }
    }

    #[test]
    fn upserts_put_singles_before_groups_and_skip_unchanged() {
        let desired = BTreeMap::from([(1, group(&[10, 11])), (10, single(5)), (11, single(6))]);
        let mut installed = KernelState::default();
        installed.insert_nexthop(10, single(5));
        let ops = nexthop_upserts(&desired, &installed);
        assert_eq!(
            ops,
            vec![
                Op::ReplaceNexthop {
                    id: 11,
                    object: single(6)
                },
                Op::ReplaceNexthop {
                    id: 1,
                    object: group(&[10, 11])
                },
            ]
        );
        for op in &ops {
            installed.apply(op);
        }
        assert!(nexthop_upserts(&desired, &installed).is_empty());
    }

    #[test]
    fn shrinking_a_group_is_one_replace_and_no_route_change() {
        let mut installed = KernelState::default();
        for op in [
            Op::ReplaceNexthop {
                id: 10,
                object: single(5),
            },
            Op::ReplaceNexthop {
                id: 11,
                object: single(6),
            },
            Op::ReplaceNexthop {
                id: 1,
                object: group(&[10, 11]),
            },
        ] {
            installed.apply(&op);
        }
        let prefixes: Vec<IpNet> = (0..100).map(|i| p(&format!("10.0.{i}.0/24"))).collect();
        for prefix in &prefixes {
            installed.insert_route(*prefix, RouteTarget::Nexthop(1));
        }
        // Tunnel on ifindex 6 goes down.
        let desired = BTreeMap::from([(1, group(&[10])), (10, single(5))]);
        let ups = nexthop_upserts(&desired, &installed);
        assert_eq!(
            ups,
            vec![Op::ReplaceNexthop {
                id: 1,
                object: group(&[10])
            }]
        );
        for op in &ups {
            installed.apply(op);
        }
        let routes = route_changes(&prefixes, |_| Some(RouteTarget::Nexthop(1)), &installed);
        assert!(routes.is_empty());
        let dels = nexthop_deletes(&desired, &installed, |_| true);
        assert_eq!(dels, vec![Op::DeleteNexthop { id: 11 }]);
    }

    #[test]
    fn deleting_an_emptied_group_takes_its_routes() {
        let mut installed = KernelState::default();
        installed.insert_nexthop(10, single(5));
        installed.insert_nexthop(1, group(&[10]));
        installed.insert_route(p("10.1.0.0/16"), RouteTarget::Nexthop(1));
        installed.insert_route(p("10.2.0.0/16"), RouteTarget::Nexthop(1));
        let desired = BTreeMap::new();
        let dels = nexthop_deletes(&desired, &installed, |_| true);
        assert_eq!(
            dels,
            vec![Op::DeleteNexthop { id: 1 }, Op::DeleteNexthop { id: 10 }]
        );
        installed.apply(&dels[0]);
        assert!(installed.routes().is_empty());
        assert_eq!(installed.refs(1), 0);
    }

    #[test]
    fn adopted_group_in_use_is_kept() {
        let mut installed = KernelState::default();
        installed.insert_nexthop(500, single(5));
        installed.insert_nexthop(501, group(&[500]));
        installed.insert_route(p("10.1.0.0/16"), RouteTarget::Nexthop(501));
        let dels = nexthop_deletes(&BTreeMap::new(), &installed, |_| false);
        assert!(dels.is_empty(), "{dels:?}");
        installed.remove_route(&p("10.1.0.0/16"));
        let dels = nexthop_deletes(&BTreeMap::new(), &installed, |_| false);
        assert_eq!(dels.len(), 2);
    }

    #[test]
    fn route_changes_replace_add_and_delete() {
        let mut installed = KernelState::default();
        installed.insert_route(p("10.1.0.0/16"), RouteTarget::Nexthop(1));
        installed.insert_route(p("10.2.0.0/16"), RouteTarget::Nexthop(1));
        installed.insert_route(p("2001:db8::/32"), RouteTarget::Nexthop(2));
        let prefixes = [
            p("10.1.0.0/16"),
            p("10.2.0.0/16"),
            p("10.3.0.0/16"),
            p("2001:db8::/32"),
            p("10.4.0.0/16"),
        ];
        let desired = |prefix: &IpNet| match prefix.to_string().as_str() {
            "10.1.0.0/16" => Some(RouteTarget::Nexthop(1)),
            "10.2.0.0/16" | "10.3.0.0/16" => Some(RouteTarget::Nexthop(3)),
            _ => None,
        };
        let ops = route_changes(&prefixes, desired, &installed);
        assert_eq!(
            ops,
            vec![
                Op::ReplaceRoute {
                    prefix: p("10.2.0.0/16"),
                    target: RouteTarget::Nexthop(3)
                },
                Op::ReplaceRoute {
                    prefix: p("10.3.0.0/16"),
                    target: RouteTarget::Nexthop(3)
                },
                Op::DeleteRoute {
                    prefix: p("2001:db8::/32")
                },
            ]
        );
        for op in &ops {
            installed.apply(op);
        }
        assert_eq!(installed.refs(1), 1);
        assert_eq!(installed.refs(3), 2);
        assert_eq!(installed.refs(2), 0);
    }

    #[test]
    fn removing_a_member_like_the_kernel_does() {
        let mut installed = KernelState::default();
        installed.insert_nexthop(10, single(5));
        installed.insert_nexthop(11, single(6));
        installed.insert_nexthop(1, group(&[10, 11]));
        installed.insert_nexthop(2, group(&[11]));
        installed.insert_route(p("10.1.0.0/16"), RouteTarget::Nexthop(1));
        installed.insert_route(p("10.2.0.0/16"), RouteTarget::Nexthop(2));
        let lost = installed.remove_nexthop(11);
        assert_eq!(lost, vec![p("10.2.0.0/16")]);
        assert_eq!(installed.nexthops().get(&1), Some(&group(&[10])));
        assert!(!installed.nexthops().contains_key(&2));
        assert_eq!(installed.routes().len(), 1);
    }
}
