//! Routing information bases: Adj-RIB-In per peer, Loc-RIB, Adj-RIB-Out per
//! peer (RFC 4271 §3.2).
//!
//! Path attributes are shared, not copied per prefix: every
//! [`PathAttributes`] lives once in an [`AttributeStore`] and the RIBs hold
//! `Arc`s to it, so a peer announcing 4000 prefixes with one set of
//! attributes costs one set. Two routes share attributes exactly when their
//! `Arc`s point to the same value, which is also how updates to a peer are
//! packed (one UPDATE per attribute set).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;
use vpngw_prefix::PrefixMap;

use crate::decision::TieBreaker;
use crate::policy::{ExportRefusal, ImportRefusal};
use crate::wire::{
    Aggregator, AsPath, AsPathSegment, AsPathSegmentType, AttributeValue, Community, MpNextHop,
    MpReachNlri, Origin, PathAttribute, AS_TRANS,
};
use crate::PeerId;

/// The LOCAL_PREF a route gets when none was received (RFC 4271 §5.1.5
/// leaves the default to the operator; 100 is what everyone uses).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// The attributes of a path, normalized from an UPDATE: one value per
/// attribute, the next hop of the route's family, AS4_PATH already merged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathAttributes {
    /// ORIGIN.
    pub origin: Origin,
    /// AS_PATH, with 4-octet ASes.
    pub as_path: AsPath,
    /// NEXT_HOP, or the next hop of MP_REACH_NLRI.
    pub next_hop: IpAddr,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF (from internal peers, or assigned on import).
    pub local_pref: Option<u32>,
    /// ATOMIC_AGGREGATE.
    pub atomic_aggregate: bool,
    /// AGGREGATOR.
    pub aggregator: Option<Aggregator>,
    /// COMMUNITIES.
    pub communities: Vec<Community>,
    /// Optional transitive attributes we do not interpret, passed on with
    /// the Partial bit set.
    pub other: Vec<PathAttribute>,
}

impl PathAttributes {
    /// Attributes of a route we originate: IGP, empty AS_PATH.
    pub fn originated(next_hop: IpAddr) -> Self {
        Self {
            origin: Origin::Igp,
            as_path: AsPath::default(),
            next_hop,
            med: None,
            local_pref: None,
            atomic_aggregate: false,
            aggregator: None,
            communities: Vec::new(),
            other: Vec::new(),
        }
    }

    /// The AS_PATH length as the decision process counts it (RFC 4271
    /// §9.1.2.2 a): an AS_SET counts as one, confederation segments as none.
    pub fn as_path_len(&self) -> usize {
        self.as_path
            .segments
            .iter()
            .map(|s| match s.segment_type {
                AsPathSegmentType::AsSequence => s.asns.len(),
                AsPathSegmentType::AsSet => 1,
                AsPathSegmentType::AsConfedSequence | AsPathSegmentType::AsConfedSet => 0,
            })
            .sum()
    }

    /// Whether `asn` appears anywhere in the AS_PATH.
    pub fn as_path_contains(&self, asn: u32) -> bool {
        self.as_path.segments.iter().any(|s| s.asns.contains(&asn))
    }

    /// The AS the route was received from: the first AS of a leading
    /// AS_SEQUENCE (RFC 4271 §9.1.2.2 c); `None` for a path without one.
    pub fn neighbor_as(&self) -> Option<u32> {
        let first = self.as_path.segments.first()?;
        match first.segment_type {
            AsPathSegmentType::AsSequence => first.asns.first().copied(),
            AsPathSegmentType::AsSet
            | AsPathSegmentType::AsConfedSequence
            | AsPathSegmentType::AsConfedSet => None,
        }
    }

    /// LOCAL_PREF, or the default.
    pub fn degree_of_preference(&self) -> u32 {
        self.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
    }

    /// The AS_PATH as text, `65001 65002 {65003 65004}`.
    pub fn as_path_text(&self) -> String {
        let mut parts = Vec::new();
        for s in &self.as_path.segments {
            let asns: Vec<String> = s.asns.iter().map(u32::to_string).collect();
            parts.push(match s.segment_type {
                AsPathSegmentType::AsSequence => asns.join(" "),
                AsPathSegmentType::AsSet => format!("{{{}}}", asns.join(" ")),
                AsPathSegmentType::AsConfedSequence => format!("({})", asns.join(" ")),
                AsPathSegmentType::AsConfedSet => format!("[{}]", asns.join(" ")),
            });
        }
        parts.join(" ")
    }

    /// `asn` put in front of the AS_PATH `times` times (RFC 4271 §5.1.2).
    pub fn prepend(&mut self, asn: u32, times: usize) {
        let extra = std::iter::repeat_n(asn, times);
        match self.as_path.segments.first_mut() {
            Some(first) if first.segment_type == AsPathSegmentType::AsSequence => {
                first.asns.splice(0..0, extra);
            }
            Some(_) | None => self.as_path.segments.insert(
                0,
                AsPathSegment {
                    segment_type: AsPathSegmentType::AsSequence,
                    asns: extra.collect(),
                },
            ),
        }
    }

    /// The attributes from a received UPDATE's attribute list (everything
    /// but the next hop, which depends on the family). `four_octet` says
    /// whether the session negotiated 4-octet ASes; if not, AS4_PATH and
    /// AS4_AGGREGATOR are merged in (RFC 6793 §4.2.3).
    pub fn from_received(
        attributes: &[PathAttribute],
        next_hop: IpAddr,
        internal: bool,
        four_octet: bool,
    ) -> Self {
        let mut out = Self::originated(next_hop);
        out.origin = Origin::Incomplete;
        let mut as4_path = None;
        let mut as4_aggregator = None;
        for a in attributes {
            match &a.value {
                AttributeValue::Origin(o) => out.origin = *o,
                AttributeValue::AsPath(p) => out.as_path = p.clone(),
                AttributeValue::NextHop(_)
                | AttributeValue::MpReachNlri(_)
                | AttributeValue::MpUnreachNlri(_) => {}
                AttributeValue::MultiExitDisc(m) => out.med = Some(*m),
                AttributeValue::LocalPref(l) => {
                    if internal {
                        out.local_pref = Some(*l);
                    }
                }
                AttributeValue::AtomicAggregate => out.atomic_aggregate = true,
                AttributeValue::Aggregator(g) => out.aggregator = Some(*g),
                AttributeValue::Communities(c) => out.communities = c.clone(),
                AttributeValue::As4Path(p) => as4_path = Some(p),
                AttributeValue::As4Aggregator(g) => as4_aggregator = Some(*g),
                AttributeValue::Unknown { .. } => {
                    // Optional transitive ones are passed on, marked
                    // partial; optional non-transitive ones stop here.
                    if a.flags.is_optional() && a.flags.is_transitive() {
                        out.other.push(PathAttribute {
                            flags: a.flags.with_partial(),
                            value: a.value.clone(),
                        });
                    }
                }
            }
        }
        if !internal {
            out.local_pref = None;
        }
        if !four_octet {
            if let Some(as4) = as4_path {
                out.as_path = merge_as4_path(&out.as_path, as4);
            }
            if let (Some(g), Some(g4)) = (out.aggregator, as4_aggregator) {
                if g.asn == u32::from(AS_TRANS) {
                    out.aggregator = Some(g4);
                }
            }
        }
        out
    }

    /// The attribute list to send: in the order RFC 7606 §5.1 asks
    /// (MP_REACH_NLRI first), with NEXT_HOP only when `reach` is `None`
    /// (IPv4 NLRI). Towards a 2-octet peer, AS4_PATH / AS4_AGGREGATOR carry
    /// ASes that do not fit (RFC 6793 §4.2.2).
    pub fn to_wire(&self, reach: Option<MpReachNlri>, four_octet: bool) -> Vec<PathAttribute> {
        let mut out = Vec::new();
        let ipv4_nlri = reach.is_none();
        if let Some(reach) = reach {
            out.push(PathAttribute::new(AttributeValue::MpReachNlri(reach)));
        }
        out.push(PathAttribute::new(AttributeValue::Origin(self.origin)));
        out.push(PathAttribute::new(AttributeValue::AsPath(
            self.as_path.clone(),
        )));
        if ipv4_nlri {
            if let IpAddr::V4(nh) = self.next_hop {
                out.push(PathAttribute::new(AttributeValue::NextHop(nh)));
            }
        }
        if let Some(m) = self.med {
            out.push(PathAttribute::new(AttributeValue::MultiExitDisc(m)));
        }
        if let Some(l) = self.local_pref {
            out.push(PathAttribute::new(AttributeValue::LocalPref(l)));
        }
        if self.atomic_aggregate {
            out.push(PathAttribute::new(AttributeValue::AtomicAggregate));
        }
        if let Some(g) = self.aggregator {
            out.push(PathAttribute::new(AttributeValue::Aggregator(g)));
        }
        if !self.communities.is_empty() {
            out.push(PathAttribute::new(AttributeValue::Communities(
                self.communities.clone(),
            )));
        }
        if !four_octet {
            let wide = |asn: &u32| *asn > u32::from(u16::MAX);
            if self
                .as_path
                .segments
                .iter()
                .any(|s| s.asns.iter().any(wide))
            {
                out.push(PathAttribute::new(AttributeValue::As4Path(
                    self.as_path.clone(),
                )));
            }
            if let Some(g) = self.aggregator.filter(|g| wide(&g.asn)) {
                out.push(PathAttribute::new(AttributeValue::As4Aggregator(g)));
            }
        }
        out.extend(self.other.iter().cloned());
        out
    }

    /// The MP_REACH_NLRI next hop for this path's next hop.
    pub fn mp_next_hop(&self) -> MpNextHop {
        match self.next_hop {
            IpAddr::V4(a) => MpNextHop::Ipv4(a),
            IpAddr::V6(global) => MpNextHop::Ipv6 {
                global,
                link_local: None,
            },
        }
    }
}

/// RFC 6793 §4.2.3: with N ASes in AS_PATH and M in AS4_PATH, the path is
/// the first N-M of AS_PATH followed by AS4_PATH; if M > N, AS4_PATH is
/// ignored. Only plain paths are merged AS by AS: when AS_PATH holds more
/// than AS_SEQUENCEs, AS4_PATH is taken whole if it is no longer.
fn merge_as4_path(as_path: &AsPath, as4: &AsPath) -> AsPath {
    let count = |p: &AsPath| p.segments.iter().map(|s| s.asns.len()).sum::<usize>();
    let (n, m) = (count(as_path), count(as4));
    if m > n {
        return as_path.clone();
    }
    let plain = as_path
        .segments
        .iter()
        .all(|s| s.segment_type == AsPathSegmentType::AsSequence);
    if !plain {
        return as4.clone();
    }
    let mut head: Vec<u32> = as_path
        .segments
        .iter()
        .flat_map(|s| s.asns.iter().copied())
        .take(n - m)
        .collect();
    let mut merged = as4.clone();
    if head.is_empty() {
        return merged;
    }
    match merged.segments.first_mut() {
        Some(first) if first.segment_type == AsPathSegmentType::AsSequence => {
            head.append(&mut first.asns);
            first.asns = head;
        }
        Some(_) | None => merged.segments.insert(
            0,
            AsPathSegment {
                segment_type: AsPathSegmentType::AsSequence,
                asns: head,
            },
        ),
    }
    merged
}

/// Every distinct [`PathAttributes`] in use, each held once.
#[derive(Debug, Default)]
pub struct AttributeStore {
    set: HashSet<Arc<PathAttributes>>,
}

impl AttributeStore {
    /// The shared copy of `attrs`, added if new.
    pub fn intern(&mut self, attrs: PathAttributes) -> Arc<PathAttributes> {
        if let Some(shared) = self.set.get(&attrs) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(attrs);
        self.set.insert(Arc::clone(&shared));
        shared
    }

    /// Drops the sets no RIB refers to any more.
    pub fn collect_garbage(&mut self) {
        self.set.retain(|a| Arc::strong_count(a) > 1);
    }

    /// How many distinct sets are stored.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether none is stored.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// A route as the Loc-RIB holds it: who it came from and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The peer it was learned from.
    pub peer: PeerId,
    /// Its attributes (shared).
    pub attrs: Arc<PathAttributes>,
}

/// A route received but refused, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Its attributes, when they could be read.
    pub attrs: Option<Arc<PathAttributes>>,
    /// Why it was refused.
    pub reason: ImportRefusal,
}

/// What one peer sent us: the routes accepted by import policy, and those
/// refused with their reason.
#[derive(Debug, Default)]
pub struct AdjRibIn {
    accepted: PrefixMap<Arc<PathAttributes>>,
    refused: PrefixMap<Refused>,
}

impl AdjRibIn {
    /// Stores an accepted route, replacing whatever was there.
    pub fn accept(&mut self, prefix: IpNet, attrs: Arc<PathAttributes>) {
        self.refused.remove(&prefix);
        self.accepted.insert(prefix, attrs);
    }

    /// Stores a refused route, replacing whatever was there.
    pub fn refuse(&mut self, prefix: IpNet, refused: Refused) {
        self.accepted.remove(&prefix);
        self.refused.insert(prefix, refused);
    }

    /// Forgets `prefix` (withdrawn).
    pub fn remove(&mut self, prefix: &IpNet) {
        self.accepted.remove(prefix);
        self.refused.remove(prefix);
    }

    /// Forgets everything, returning the prefixes that were accepted.
    pub fn clear(&mut self) -> Vec<IpNet> {
        self.refused.clear();
        self.accepted.take_keys()
    }

    /// The accepted route for `prefix`.
    pub fn get(&self, prefix: &IpNet) -> Option<&Arc<PathAttributes>> {
        self.accepted.get(prefix)
    }

    /// Accepted routes.
    pub fn accepted(&self) -> &PrefixMap<Arc<PathAttributes>> {
        &self.accepted
    }

    /// Refused routes and why.
    pub fn refused(&self) -> &PrefixMap<Refused> {
        &self.refused
    }

    /// Prefixes the peer currently announces, accepted or refused by
    /// policy (what the max-prefix limit counts).
    pub fn received(&self) -> usize {
        let by_policy = self
            .refused
            .values()
            .filter(|r| match r.reason {
                ImportRefusal::Malformed(_) => false,
                ImportRefusal::OwnPrefix
                | ImportRefusal::OwnAsInPath { .. }
                | ImportRefusal::ImportPrefixList => true,
            })
            .count();
        self.accepted.len() + by_policy
    }
}

/// The Loc-RIB entry of one prefix: the best path and the other paths of
/// its ECMP set. Kept small — a full table has a million of them: the
/// paths that lost, and why, are worked out again when asked
/// ([`crate::Speaker::decision`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocRibEntry {
    /// The best path.
    pub best: Route,
    /// The other paths equal to the best up to the router-id step: traffic
    /// is spread over their next hops too. Empty (no allocation) for a
    /// prefix with one path.
    pub others: Box<[Route]>,
}

impl LocRibEntry {
    /// The ECMP set, the best first.
    pub fn ecmp(&self) -> impl Iterator<Item = &Route> {
        std::iter::once(&self.best).chain(self.others.iter())
    }

    /// How many paths the ECMP set has.
    pub fn ecmp_len(&self) -> usize {
        1 + self.others.len()
    }

    /// The distinct next hops of the ECMP set, with the peer of each.
    pub fn next_hops(&self) -> Vec<NextHop> {
        let mut out: Vec<NextHop> = Vec::with_capacity(self.ecmp_len());
        for r in self.ecmp() {
            let hop = NextHop {
                peer: r.peer,
                address: r.attrs.next_hop,
            };
            if !out.contains(&hop) {
                out.push(hop);
            }
        }
        out
    }
}

/// The decision for one prefix in full: the Loc-RIB entry and every path
/// that lost, with the step that eliminated it (ECMP members that lost
/// only the final tie-breaks are listed too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What the Loc-RIB holds.
    pub entry: LocRibEntry,
    /// The paths that lost and why.
    pub lost: Vec<(Route, TieBreaker)>,
}

/// One next hop of a best path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NextHop {
    /// The peer that advertised it (the daemon maps it to a tunnel).
    pub peer: PeerId,
    /// The address.
    pub address: IpAddr,
}

/// The Loc-RIB: which peers' paths are selected for each prefix.
///
/// Only peer ids are stored — the best path's and those of the other ECMP
/// members; their attributes are the ones in those peers' Adj-RIB-Ins, so
/// a prefix with one path (nearly all of a full table) costs a 5-octet key
/// and a 4-octet id. The other ECMP members are kept apart, only where
/// there are some. [`crate::Speaker::loc_rib`] gives the view with the
/// paths put together.
#[derive(Debug, Default)]
pub struct LocRib {
    best: PrefixMap<u32>,
    others: PrefixMap<Box<[u32]>>,
}

fn peer_id(peer: PeerId) -> u32 {
    u32::try_from(peer.0).unwrap_or(u32::MAX)
}

impl LocRib {
    /// The peers of `prefix`'s ECMP set, the best first.
    pub fn peers(&self, prefix: &IpNet) -> Option<Vec<PeerId>> {
        let best = *self.best.get(prefix)?;
        let mut out = vec![PeerId(best as usize)];
        if let Some(others) = self.others.get(prefix) {
            out.extend(others.iter().map(|p| PeerId(*p as usize)));
        }
        Some(out)
    }

    /// The peer of `prefix`'s best path.
    pub fn best_peer(&self, prefix: &IpNet) -> Option<PeerId> {
        self.best.get(prefix).map(|p| PeerId(*p as usize))
    }

    /// Every prefix with a route, in order.
    pub fn prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.best.keys()
    }

    /// Sets (the ECMP set's peers, best first) or clears `prefix`.
    pub fn set(&mut self, prefix: IpNet, peers: Option<&[PeerId]>) {
        match peers.and_then(|p| p.split_first()) {
            Some((best, others)) => {
                self.best.insert(prefix, peer_id(*best));
                if others.is_empty() {
                    self.others.remove(&prefix);
                } else {
                    self.others
                        .insert(prefix, others.iter().map(|p| peer_id(*p)).collect());
                }
            }
            None => {
                self.best.remove(&prefix);
                self.others.remove(&prefix);
            }
        }
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.best.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.best.is_empty()
    }
}

/// What we advertise to one peer, and what we hold back from it and why.
///
/// Only which prefixes were sent is kept, not the attributes: what a peer
/// hears for a prefix is a function of the Loc-RIB's best path, worked
/// out again when needed ([`crate::Speaker::advertised_to`]). A full table
/// passed on to a peer then costs a few octets a prefix, not a pointer and
/// an attribute set of its own.
#[derive(Debug, Default)]
pub struct AdjRibOut {
    advertised: PrefixMap<()>,
    held_back: PrefixMap<ExportRefusal>,
}

impl AdjRibOut {
    /// The prefixes advertised.
    pub fn advertised(&self) -> &PrefixMap<()> {
        &self.advertised
    }

    /// Routes not advertised, and why (except those learned from this peer,
    /// which are never sent back to it).
    pub fn held_back(&self) -> &PrefixMap<ExportRefusal> {
        &self.held_back
    }

    pub(crate) fn advertise(&mut self, prefix: IpNet) {
        self.held_back.remove(&prefix);
        self.advertised.insert(prefix, ());
    }

    /// Holds `prefix` back; returns whether it was advertised (and so must
    /// be withdrawn). A route not sent back to the peer it came from is
    /// not recorded: that is every route of a peer feeding a full table,
    /// and the reason is plain from the Loc-RIB.
    pub(crate) fn hold_back(&mut self, prefix: IpNet, reason: ExportRefusal) -> bool {
        if reason == ExportRefusal::LearnedFromPeer {
            self.held_back.remove(&prefix);
        } else {
            self.held_back.insert(prefix, reason);
        }
        self.advertised.remove(&prefix).is_some()
    }

    /// Forgets `prefix`; returns whether it was advertised.
    pub(crate) fn remove(&mut self, prefix: &IpNet) -> bool {
        self.held_back.remove(prefix);
        self.advertised.remove(prefix).is_some()
    }

    pub(crate) fn clear(&mut self) {
        self.advertised.clear();
        self.held_back.clear();
    }
}

/// 0.0.0.0, for places that need an address before one is known.
pub const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segments: Vec<(AsPathSegmentType, Vec<u32>)>) -> AsPath {
        AsPath {
            segments: segments
                .into_iter()
                .map(|(segment_type, asns)| AsPathSegment { segment_type, asns })
                .collect(),
        }
    }

    #[test]
    fn path_length_counts_a_set_as_one() {
        let mut a = PathAttributes::originated(UNSPECIFIED);
        a.as_path = path(vec![
            (AsPathSegmentType::AsSequence, vec![1, 2]),
            (AsPathSegmentType::AsSet, vec![3, 4, 5]),
            (AsPathSegmentType::AsConfedSequence, vec![6]),
        ]);
        assert_eq!(a.as_path_len(), 3);
        assert_eq!(a.neighbor_as(), Some(1));
        assert!(a.as_path_contains(5));
        assert_eq!(a.as_path_text(), "1 2 {3 4 5} (6)");
    }

    #[test]
    fn prepend_extends_the_leading_sequence() {
        let mut a = PathAttributes::originated(UNSPECIFIED);
        a.prepend(65000, 2);
        assert_eq!(a.as_path_text(), "65000 65000");
        a.prepend(65001, 1);
        assert_eq!(a.as_path_text(), "65001 65000 65000");
        let mut s = PathAttributes::originated(UNSPECIFIED);
        s.as_path = path(vec![(AsPathSegmentType::AsSet, vec![7, 8])]);
        s.prepend(1, 1);
        assert_eq!(s.as_path_text(), "1 {7 8}");
    }

    #[test]
    fn as4_path_replaces_as_trans() {
        let as_path = path(vec![(
            AsPathSegmentType::AsSequence,
            vec![65001, 23456, 23456],
        )]);
        let as4 = path(vec![(AsPathSegmentType::AsSequence, vec![400000, 400001])]);
        assert_eq!(
            merge_as4_path(&as_path, &as4),
            path(vec![(
                AsPathSegmentType::AsSequence,
                vec![65001, 400000, 400001]
            )])
        );
        let too_long = path(vec![(AsPathSegmentType::AsSequence, vec![1, 2, 3, 4])]);
        assert_eq!(merge_as4_path(&as_path, &too_long), as_path);
    }

    #[test]
    fn interning_shares_equal_sets() {
        let mut store = AttributeStore::default();
        let a = store.intern(PathAttributes::originated(UNSPECIFIED));
        let b = store.intern(PathAttributes::originated(UNSPECIFIED));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(store.len(), 1);
        drop((a, b));
        store.collect_garbage();
        assert!(store.is_empty());
    }
}
