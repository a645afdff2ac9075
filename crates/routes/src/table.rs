//! The route programmer's state, without I/O: the desired table (prefix →
//! set of tunnels), the tunnels and their groups ([`NexthopModel`]), what is
//! installed ([`KernelState`]), and which prefixes may differ. The driver
//! asks it for the operations of each step, sends them, and reports back
//! each one that succeeded.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use ipnet::IpNet;
use vpngw_prefix::PrefixMap;

use crate::diff::{self, KernelState, Op, RouteTarget};
use crate::nexthop::{Family, GroupChange, NexthopModel, NhId, Tunnel, TunnelId};

/// How routes reach their tunnels in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Routes point at nexthop groups (`nhid`); a tunnel failure is one
    /// group change per affected group.
    NexthopObjects,
    /// Classic routes with their paths inline (RTA_MULTIPATH), for kernels
    /// without nexthop objects; a tunnel failure rewrites each route.
    Multipath,
}

/// A shared tunnel set and its group for IPv4 and IPv6, once known.
type SharedSet = (Arc<[TunnelId]>, [Option<NhId>; 2]);

/// The desired routes, the tunnel/group model and the installed state.
#[derive(Debug, Clone)]
pub struct RouteTable {
    mode: Mode,
    model: NexthopModel,
    /// Prefix → the group of its tunnel set (a model group even in
    /// multipath mode, where it is never sent to the kernel).
    desired: PrefixMap<NhId>,
    installed: KernelState,
    dirty: HashSet<IpNet>,
    /// Dirty prefixes taken for chunked planning, not yet planned.
    planning: Vec<IpNet>,
    /// The shared tunnel set of the last [`RouteTable::set_route_shared`]
    /// and its group per family.
    last_set: Option<SharedSet>,
}

impl RouteTable {
    /// An empty table; nexthop ids are allocated from `id_base` upwards.
    pub fn new(mode: Mode, id_base: NhId) -> RouteTable {
        RouteTable {
            mode,
            model: NexthopModel::new(id_base),
            desired: PrefixMap::new(),
            installed: KernelState::default(),
            dirty: HashSet::new(),
            planning: Vec::new(),
            last_set: None,
        }
    }

    /// How routes are programmed.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// What is installed, as far as this table knows.
    pub fn installed(&self) -> &KernelState {
        &self.installed
    }

    /// The tunnels and groups.
    pub fn model(&self) -> &NexthopModel {
        &self.model
    }

    /// How many prefixes are desired.
    pub fn len(&self) -> usize {
        self.desired.len()
    }

    /// Whether no prefix is desired.
    pub fn is_empty(&self) -> bool {
        self.desired.is_empty()
    }

    /// Adds or updates a tunnel (`up`: the daemon considers it up).
    pub fn set_tunnel(&mut self, tunnel: Tunnel, up: bool) {
        let moved = self
            .model
            .tunnel(&tunnel.id)
            .is_some_and(|old| *old != tunnel);
        let changes = self.model.set_tunnel(tunnel, up);
        self.after(&changes);
        if moved && self.mode == Mode::Multipath {
            // Classic routes name the device and gateway: every route
            // through the tunnel changes. (Nexthop objects are replaced in
            // place instead.)
            self.dirty_groups(changes.iter().map(|c| c.group).collect());
        }
    }

    /// Forgets a tunnel; routes lose it as a path.
    pub fn remove_tunnel(&mut self, id: &TunnelId) {
        let changes = self.model.remove_tunnel(id);
        self.after(&changes);
    }

    /// Sets whether the daemon considers tunnel `id` up. Returns false if
    /// the tunnel is unknown.
    pub fn set_tunnel_up(&mut self, id: &TunnelId, up: bool) -> bool {
        if self.model.tunnel(id).is_none() {
            return false;
        }
        let changes = self.model.set_admin(id, up);
        self.after(&changes);
        true
    }

    /// The kernel says the link `ifindex` is up or down; returns the tunnel
    /// on it, if any. A link down counts as the tunnel down.
    pub fn set_link(&mut self, ifindex: u32, up: bool) -> Option<TunnelId> {
        let (id, changes) = self.model.set_link(ifindex, up)?;
        self.after(&changes);
        Some(id)
    }

    /// Sets the tunnels of `prefix` (ECMP across them); an empty set
    /// withdraws it.
    pub fn set_route(&mut self, prefix: IpNet, tunnels: impl IntoIterator<Item = TunnelId>) {
        let prefix = prefix.trunc();
        let tunnels: BTreeSet<TunnelId> = tunnels.into_iter().collect();
        if tunnels.is_empty() {
            self.withdraw(&prefix);
            return;
        }
        let group = self.model.acquire(Family::of(&prefix), tunnels);
        if let Some(old) = self.desired.insert(prefix, group) {
            self.model.release(old);
        }
        self.dirty.insert(prefix);
    }

    /// [`RouteTable::set_route`] with a tunnel set many prefixes share:
    /// when `tunnels` is the set of the last call, its group is reused
    /// without building the set again.
    pub fn set_route_shared(&mut self, prefix: IpNet, tunnels: &Arc<[TunnelId]>) {
        let prefix = prefix.trunc();
        if tunnels.is_empty() {
            self.withdraw(&prefix);
            return;
        }
        let family = Family::of(&prefix);
        let slot = usize::from(family == Family::V6);
        let cached = match &self.last_set {
            Some((set, groups)) if Arc::ptr_eq(set, tunnels) => groups[slot],
            Some(_) | None => {
                self.last_set = Some((Arc::clone(tunnels), [None, None]));
                None
            }
        };
        // A cached group is only good while it lives (ids are reused).
        let group = match cached.filter(|&g| self.model.refs(g) > 0) {
            Some(g) => {
                self.model.add_ref(g);
                g
            }
            None => {
                let g = self
                    .model
                    .acquire(family, tunnels.iter().cloned().collect());
                if let Some((_, groups)) = &mut self.last_set {
                    groups[slot] = Some(g);
                }
                g
            }
        };
        if let Some(old) = self.desired.insert(prefix, group) {
            self.model.release(old);
        }
        self.dirty.insert(prefix);
    }

    /// Withdraws `prefix`.
    pub fn withdraw(&mut self, prefix: &IpNet) {
        let prefix = prefix.trunc();
        if let Some(old) = self.desired.remove(&prefix) {
            self.model.release(old);
        }
        self.dirty.insert(prefix);
    }

    /// The kernel says our route for `prefix` was deleted. If we had it
    /// installed, it is forgotten and will be put back; returns whether so.
    pub fn route_lost(&mut self, prefix: &IpNet) -> bool {
        if self.installed.remove_route(prefix).is_none() {
            return false;
        }
        self.dirty.insert(*prefix);
        true
    }

    /// The kernel says nexthop `id` was deleted. Mirrors what the kernel did
    /// with it (groups shrink, routes through a vanished group go) and
    /// marks those routes to be put back. Returns how many routes went.
    pub fn nexthop_lost(&mut self, id: NhId) -> usize {
        if !self.installed.nexthops().contains_key(&id) {
            return 0;
        }
        let lost = self.installed.remove_nexthop(id);
        let count = lost.len();
        self.dirty.extend(lost);
        count
    }

    /// Takes `state` (found in the kernel at start) as installed: graceful
    /// restart. Nothing of it is removed until [`RouteTable::sweep_stale`];
    /// routes set meanwhile are moved over one by one.
    pub fn adopt(&mut self, state: KernelState) {
        self.model.reserve(state.nexthops().keys().copied());
        self.installed = state;
    }

    /// Marks every installed and desired prefix for comparison, so that
    /// what is installed but no longer desired goes (after an adoption, or
    /// to recover after lost notifications).
    pub fn sweep_stale(&mut self) {
        self.dirty.extend(self.installed.routes().keys());
        self.dirty.extend(self.desired.keys());
    }

    /// Replaces the installed state with a fresh dump and compares
    /// everything (after the kernel notifications overflowed).
    pub fn resync(&mut self, state: KernelState) {
        self.adopt(state);
        self.sweep_stale();
    }

    /// Whether some prefix may differ from what is installed.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty() || !self.planning.is_empty()
    }

    /// The route `prefix` should have in the kernel, if any.
    pub fn desired_target(&self, prefix: &IpNet) -> Option<RouteTarget> {
        let group = *self.desired.get(prefix)?;
        match self.mode {
            Mode::NexthopObjects => self
                .model
                .group_usable(group)
                .then_some(RouteTarget::Nexthop(group)),
            Mode::Multipath => {
                let paths = self.model.group_paths(group);
                (!paths.is_empty()).then_some(RouteTarget::Paths(paths.into()))
            }
        }
    }

    /// Step 1: nexthop objects to create or replace.
    pub fn plan_nexthops(&self) -> Vec<Op> {
        match self.mode {
            Mode::NexthopObjects => {
                diff::nexthop_upserts(&self.model.desired_objects(), &self.installed)
            }
            Mode::Multipath => Vec::new(),
        }
    }

    /// Step 2: route operations for every prefix that may have changed;
    /// they are no longer dirty after this.
    pub fn plan_routes(&mut self) -> Vec<Op> {
        // Taken, not drained: a drained set keeps its capacity, tens of
        // megabytes after a full table.
        let mut dirty: Vec<IpNet> = std::mem::take(&mut self.planning);
        dirty.extend(std::mem::take(&mut self.dirty));
        diff::route_changes(&dirty, |p| self.desired_target(p), &self.installed)
    }

    /// Step 2 a chunk at a time: the operations for at most `max` of the
    /// prefixes that may have changed; `None` once every one was planned.
    /// (A chunk may plan nothing when its prefixes did not change.)
    pub fn plan_routes_chunk(&mut self, max: usize) -> Option<Vec<Op>> {
        if self.planning.is_empty() {
            if self.dirty.is_empty() {
                return None;
            }
            self.planning = std::mem::take(&mut self.dirty).into_iter().collect();
        }
        let from = self.planning.len().saturating_sub(max.max(1));
        let chunk: Vec<IpNet> = self.planning.split_off(from);
        if self.planning.is_empty() {
            self.planning = Vec::new();
        }
        Some(diff::route_changes(
            &chunk,
            |p| self.desired_target(p),
            &self.installed,
        ))
    }

    /// Step 3: nexthop objects to delete.
    pub fn plan_deletes(&self) -> Vec<Op> {
        let desired = match self.mode {
            Mode::NexthopObjects => self.model.desired_objects(),
            Mode::Multipath => Default::default(),
        };
        diff::nexthop_deletes(&desired, &self.installed, |id| self.model.owns(id))
    }

    /// Records that `op` succeeded (or, for a delete, that its object was
    /// already gone).
    pub fn applied(&mut self, op: &Op) {
        self.installed.apply(op);
    }

    /// After tunnel changes: which routes must be looked at again. With
    /// nexthop objects only the groups that came back to life (their routes
    /// were deleted with the group); with classic routes every group whose
    /// members changed.
    fn after(&mut self, changes: &[GroupChange]) {
        let groups: HashSet<NhId> = match self.mode {
            Mode::NexthopObjects => changes
                .iter()
                .filter(|c| c.now_usable && !c.was_usable)
                .map(|c| c.group)
                .collect(),
            Mode::Multipath => changes.iter().map(|c| c.group).collect(),
        };
        self.dirty_groups(groups);
    }

    fn dirty_groups(&mut self, groups: HashSet<NhId>) {
        if groups.is_empty() {
            return;
        }
        let prefixes = self
            .desired
            .iter()
            .filter(|(_, g)| groups.contains(g))
            .map(|(p, _)| p);
        self.dirty.extend(prefixes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::nexthop::{NexthopObject, Path};
    use std::net::Ipv4Addr;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn tunnel(name: &str, ifindex: u32) -> Tunnel {
        Tunnel {
            id: TunnelId::from(name),
            ifindex,
            peer_v4: Some(Ipv4Addr::new(169, 254, 21, ifindex as u8)),
            peer_v6: None,
        }
    }

    fn t(name: &str) -> TunnelId {
        TunnelId::from(name)
    }

    /// Runs the three steps as if the kernel accepted everything; returns
    /// the operations, step by step.
    fn apply(table: &mut RouteTable) -> [Vec<Op>; 3] {
        let a = table.plan_nexthops();
        for op in &a {
            table.applied(op);
        }
        let b = table.plan_routes();
        for op in &b {
            table.applied(op);
        }
        let c = table.plan_deletes();
        for op in &c {
            table.applied(op);
        }
        [a, b, c]
    }

    fn two_tunnels(mode: Mode, routes: usize) -> RouteTable {
        let mut table = RouteTable::new(mode, 1000);
        table.set_tunnel(tunnel("a", 10), true);
        table.set_tunnel(tunnel("b", 11), true);
        for i in 0..routes {
            table.set_route(
                p(&format!("10.{}.{}.0/24", i / 256, i % 256)),
                [t("a"), t("b")],
            );
        }
        table.set_route(p("192.0.2.0/24"), [t("a")]);
        apply(&mut table);
        table
    }

    #[test]
    fn ecmp_routes_share_one_group() {
        let table = two_tunnels(Mode::NexthopObjects, 50);
        let installed = table.installed();
        assert_eq!(installed.routes().len(), 51);
        // Two singles, the {a,b} group and the {a} group.
        assert_eq!(installed.nexthops().len(), 4);
        let target = installed.routes().get(&p("10.0.7.0/24")).unwrap();
        let RouteTarget::Nexthop(g) = &target else {
            panic!("not a nexthop route")
        };
        assert!(matches!(
            installed.nexthops()[g],
            NexthopObject::Group { ref members } if members.len() == 2
        ));
    }

    #[test]
    fn tunnel_down_is_one_group_replace_plus_one_group_delete() {
        let mut table = two_tunnels(Mode::NexthopObjects, 500);
        table.set_tunnel_up(&t("a"), false);
        let [ups, routes, dels] = apply(&mut table);
        // {a,b} shrinks to {b}: one message for 500 routes.
        assert_eq!(ups.len(), 1, "{ups:?}");
        assert!(
            matches!(&ups[0], Op::ReplaceNexthop { object: NexthopObject::Group { members }, .. } if members.len() == 1)
        );
        assert!(routes.is_empty(), "{routes:?}");
        // {a} is empty: deleting it takes 192.0.2.0/24; then a's nexthop.
        assert_eq!(dels.len(), 2, "{dels:?}");
        assert_eq!(table.installed().routes().len(), 500);
        assert!(!table.installed().routes().contains_key(&p("192.0.2.0/24")));

        // Back up: the group grows again, 192.0.2.0/24 is re-added.
        table.set_tunnel_up(&t("a"), true);
        let [ups, routes, dels] = apply(&mut table);
        assert_eq!(ups.len(), 3, "a's nexthop, {{a,b}} and {{a}}: {ups:?}");
        assert_eq!(
            routes,
            vec![Op::ReplaceRoute {
                prefix: p("192.0.2.0/24"),
                target: table.installed().routes().get(&p("192.0.2.0/24")).unwrap()
            }]
        );
        assert!(dels.is_empty());
    }

    #[test]
    fn both_down_removes_every_route() {
        let mut table = two_tunnels(Mode::NexthopObjects, 20);
        table.set_tunnel_up(&t("a"), false);
        table.set_link(11, false);
        let [_, routes, dels] = apply(&mut table);
        assert!(routes.is_empty());
        assert_eq!(dels.len(), 4);
        assert!(table.installed().routes().is_empty());
        assert!(table.installed().nexthops().is_empty());
        assert_eq!(table.len(), 21, "still desired, back when a tunnel is");
    }

    #[test]
    fn multipath_mode_rewrites_each_route() {
        let mut table = two_tunnels(Mode::Multipath, 30);
        assert!(table.installed().nexthops().is_empty());
        let RouteTarget::Paths(paths) = &table.installed().routes().get(&p("10.0.1.0/24")).unwrap()
        else {
            panic!("not a classic route")
        };
        assert_eq!(paths.len(), 2);
        table.set_tunnel_up(&t("b"), false);
        let [ups, routes, dels] = apply(&mut table);
        assert!(ups.is_empty() && dels.is_empty());
        assert_eq!(routes.len(), 30);
        let RouteTarget::Paths(paths) = &table.installed().routes().get(&p("10.0.1.0/24")).unwrap()
        else {
            panic!("not a classic route")
        };
        assert_eq!(
            &paths[..],
            &[Path {
                ifindex: 10,
                gateway: Some("169.254.21.10".parse().unwrap())
            }]
        );
    }

    #[test]
    fn withdraw_and_move_between_sets() {
        let mut table = two_tunnels(Mode::NexthopObjects, 3);
        table.withdraw(&p("10.0.0.0/24"));
        table.set_route(p("10.0.1.0/24"), [t("b")]);
        let [ups, routes, dels] = apply(&mut table);
        assert_eq!(ups.len(), 1, "the new {{b}} group: {ups:?}");
        assert_eq!(routes.len(), 2);
        assert!(dels.is_empty(), "{{a,b}} is still used by 10.0.2.0/24");
        table.set_route(p("10.0.2.0/24"), []);
        let [_, routes, dels] = apply(&mut table);
        assert_eq!(
            routes,
            vec![Op::DeleteRoute {
                prefix: p("10.0.2.0/24")
            }]
        );
        assert_eq!(dels.len(), 1, "{{a,b}} unused now: {dels:?}");
    }

    #[test]
    fn a_route_lost_behind_our_back_is_put_back() {
        let mut table = two_tunnels(Mode::NexthopObjects, 3);
        assert!(table.route_lost(&p("10.0.1.0/24")));
        assert!(!table.route_lost(&p("10.99.0.0/24")));
        let [_, routes, _] = apply(&mut table);
        assert_eq!(routes.len(), 1);
    }

    #[test]
    fn adopted_routes_stay_until_the_sweep() {
        let old = two_tunnels(Mode::NexthopObjects, 10);
        let state = old.installed().clone();
        let mut table = RouteTable::new(Mode::NexthopObjects, 1000);
        table.adopt(state);
        table.set_tunnel(tunnel("a", 10), true);
        table.set_tunnel(tunnel("b", 11), true);
        table.set_route(p("10.0.3.0/24"), [t("a"), t("b")]);
        let [ups, routes, dels] = apply(&mut table);
        assert_eq!(ups.len(), 3, "new ids for a, b and {{a,b}}");
        assert_eq!(routes.len(), 1);
        assert!(dels.is_empty(), "adopted objects in use stay: {dels:?}");
        assert_eq!(table.installed().routes().len(), 11);
        table.sweep_stale();
        let [_, routes, dels] = apply(&mut table);
        assert_eq!(routes.len(), 10);
        assert_eq!(dels.len(), 4, "the adopted two groups and two singles");
        assert_eq!(table.installed().routes().len(), 1);
    }
}
