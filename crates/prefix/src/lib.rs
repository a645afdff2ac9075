//! vpngw-prefix: a map keyed by IP prefix that stores IPv4 keys in 5 octets.
//!
//! `ipnet::IpNet` is 18 octets (an enum over a 17-octet IPv6 network), so a
//! `BTreeMap<IpNet, V>` spends 18 octets of key on every IPv4 route. A full
//! table is a million IPv4 routes held in several tables (Adj-RIB-In,
//! Loc-RIB, Adj-RIB-Out, the kernel's desired and installed routes): the
//! key alone would cost 90 MB. [`PrefixMap`] keeps one B-tree per family,
//! keyed by `Ipv4Net` (5 octets) and `Ipv6Net` (17), behind the same
//! `IpNet` interface, and iterates in `IpNet` order (IPv4 first).
//!
//! Measured with the BGP scale benchmark (`docs/bgp-scale.md`).

use std::collections::BTreeMap;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A map from IP prefix to `V`, IPv4 keys stored compactly. See the crate
/// documentation.
#[derive(Clone, PartialEq, Eq)]
pub struct PrefixMap<V> {
    v4: BTreeMap<Ipv4Net, V>,
    v6: BTreeMap<Ipv6Net, V>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for PrefixMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> PrefixMap<V> {
    /// An empty map.
    pub const fn new() -> Self {
        Self {
            v4: BTreeMap::new(),
            v6: BTreeMap::new(),
        }
    }

    /// How many prefixes.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The value of `prefix`.
    pub fn get(&self, prefix: &IpNet) -> Option<&V> {
        match prefix {
            IpNet::V4(n) => self.v4.get(n),
            IpNet::V6(n) => self.v6.get(n),
        }
    }

    /// The value of `prefix`, to change.
    pub fn get_mut(&mut self, prefix: &IpNet) -> Option<&mut V> {
        match prefix {
            IpNet::V4(n) => self.v4.get_mut(n),
            IpNet::V6(n) => self.v6.get_mut(n),
        }
    }

    /// Whether `prefix` is in the map.
    pub fn contains_key(&self, prefix: &IpNet) -> bool {
        self.get(prefix).is_some()
    }

    /// Sets the value of `prefix`, returning the old one.
    pub fn insert(&mut self, prefix: IpNet, value: V) -> Option<V> {
        match prefix {
            IpNet::V4(n) => self.v4.insert(n, value),
            IpNet::V6(n) => self.v6.insert(n, value),
        }
    }

    /// Removes `prefix`, returning its value.
    pub fn remove(&mut self, prefix: &IpNet) -> Option<V> {
        match prefix {
            IpNet::V4(n) => self.v4.remove(n),
            IpNet::V6(n) => self.v6.remove(n),
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }

    /// Every prefix and its value, IPv4 first, each family in order.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &V)> + '_ {
        self.v4
            .iter()
            .map(|(n, v)| (IpNet::V4(*n), v))
            .chain(self.v6.iter().map(|(n, v)| (IpNet::V6(*n), v)))
    }

    /// Every prefix and its value, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (IpNet, &mut V)> + '_ {
        self.v4
            .iter_mut()
            .map(|(n, v)| (IpNet::V4(*n), v))
            .chain(self.v6.iter_mut().map(|(n, v)| (IpNet::V6(*n), v)))
    }

    /// Every prefix, in order.
    pub fn keys(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.iter().map(|(n, _)| n)
    }

    /// Every value, in prefix order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.v4.values().chain(self.v6.values())
    }

    /// Keeps the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(IpNet, &mut V) -> bool) {
        self.v4.retain(|n, v| keep(IpNet::V4(*n), v));
        self.v6.retain(|n, v| keep(IpNet::V6(*n), v));
    }

    /// Empties the map, returning its prefixes in order (the memory goes
    /// with it).
    pub fn take_keys(&mut self) -> Vec<IpNet> {
        let v4 = std::mem::take(&mut self.v4);
        let v6 = std::mem::take(&mut self.v6);
        let mut out = Vec::with_capacity(v4.len() + v6.len());
        out.extend(v4.into_keys().map(IpNet::V4));
        out.extend(v6.into_keys().map(IpNet::V6));
        out
    }
}

impl<V> std::ops::Index<&IpNet> for PrefixMap<V> {
    type Output = V;

    /// The value of a prefix that is there; panics otherwise (as
    /// `BTreeMap` does).
    fn index(&self, prefix: &IpNet) -> &V {
        #[allow(clippy::expect_used)]
        self.get(prefix).expect("prefix in the map")
    }
}

impl<V> FromIterator<(IpNet, V)> for PrefixMap<V> {
    fn from_iter<I: IntoIterator<Item = (IpNet, V)>>(iter: I) -> Self {
        let mut map = Self::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<V> Extend<(IpNet, V)> for PrefixMap<V> {
    fn extend<I: IntoIterator<Item = (IpNet, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn behaves_like_a_btreemap_keyed_by_ipnet() {
        let keys = [
            "2001:db8::/32",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "::/0",
            "10.1.0.0/16",
            "2001:db8:1::/48",
            "192.0.2.0/24",
        ];
        let mut ours = PrefixMap::new();
        let mut reference = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(ours.insert(net(k), i), reference.insert(net(k), i));
        }
        assert_eq!(ours.insert(net("10.0.0.0/8"), 99), Some(1));
        reference.insert(net("10.0.0.0/8"), 99);
        assert_eq!(ours.len(), reference.len());
        let ours_in_order: Vec<(IpNet, usize)> = ours.iter().map(|(k, v)| (k, *v)).collect();
        let reference_in_order: Vec<(IpNet, usize)> =
            reference.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(ours_in_order, reference_in_order);
        assert_eq!(ours.get(&net("::/0")), Some(&3));
        assert_eq!(ours.remove(&net("::/0")), Some(3));
        assert!(!ours.contains_key(&net("::/0")));
        ours.retain(|k, _| k.prefix_len() > 8);
        assert_eq!(
            ours.take_keys(),
            vec![
                net("10.1.0.0/16"),
                net("192.0.2.0/24"),
                net("2001:db8::/32"),
                net("2001:db8:1::/48")
            ]
        );
        assert!(ours.is_empty());
    }

    #[test]
    fn an_ipv4_entry_is_smaller_than_with_an_ipnet_key() {
        assert_eq!(std::mem::size_of::<Ipv4Net>(), 5);
        assert!(std::mem::size_of::<IpNet>() >= 18);
    }
}
