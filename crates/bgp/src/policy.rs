//! The gateway policy applied on import and export, each rule visible as a
//! reason when a route is refused.
//!
//! Import (a route received from a peer, before it may enter the Loc-RIB):
//!
//! | rule | refusal |
//! |---|---|
//! | a prefix identical to one of the gateway's own prefixes (a larger or smaller one is fine) | [`ImportRefusal::OwnPrefix`] |
//! | our own ASN in the AS_PATH (RFC 4271 §9.1.2 loop detection) | [`ImportRefusal::OwnAsInPath`] |
//! | the peer's import prefix list does not permit it | [`ImportRefusal::ImportPrefixList`] |
//! | the UPDATE was malformed and RFC 7606 says treat-as-withdraw | [`ImportRefusal::Malformed`] |
//!
//! More prefixes than the peer's limit is not a per-route refusal: the
//! speaker closes the session (Cease, "Maximum Number of Prefixes Reached").
//!
//! Export (a best path or a prefix we originate, towards one peer): see
//! [`ExportRefusal`]; the peer's cap (from its profile) is applied by the
//! Adj-RIB-Out, which knows how many prefixes are already advertised.

use std::collections::BTreeSet;
use std::fmt;

use ipnet::IpNet;

use crate::config::Profile;
use crate::rib::PathAttributes;
use crate::wire::{Community, UpdateError};

/// Permit or deny, for a prefix list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The prefix passes.
    Permit,
    /// The prefix is refused.
    Deny,
}

/// One prefix list line: `prefix` with optional `ge` / `le` bounds on the
/// length of the prefixes it matches.
///
/// Without `ge` and `le`, only `prefix` itself matches. With them, any
/// prefix inside `prefix` whose length lies in `ge..=le` matches (`ge`
/// defaults to the length of `prefix`, `le` to the address size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefixListEntry {
    /// Permit or deny.
    pub action: Action,
    /// The covering prefix.
    pub prefix: IpNet,
    /// Smallest length matched.
    pub ge: Option<u8>,
    /// Largest length matched.
    pub le: Option<u8>,
}

impl PrefixListEntry {
    /// `permit prefix`.
    pub fn permit(prefix: IpNet) -> Self {
        Self {
            action: Action::Permit,
            prefix,
            ge: None,
            le: None,
        }
    }

    /// `deny prefix`.
    pub fn deny(prefix: IpNet) -> Self {
        Self {
            action: Action::Deny,
            ..Self::permit(prefix)
        }
    }

    /// The same entry with `ge`.
    pub fn ge(self, ge: u8) -> Self {
        Self {
            ge: Some(ge),
            ..self
        }
    }

    /// The same entry with `le`.
    pub fn le(self, le: u8) -> Self {
        Self {
            le: Some(le),
            ..self
        }
    }

    /// Whether `candidate` matches this entry.
    pub fn matches(&self, candidate: &IpNet) -> bool {
        let same_family = matches!(
            (self.prefix, candidate),
            (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
        );
        if !same_family || !self.prefix.contains(candidate) {
            return false;
        }
        let len = candidate.prefix_len();
        if self.ge.is_none() && self.le.is_none() {
            return len == self.prefix.prefix_len();
        }
        let ge = self.ge.unwrap_or(self.prefix.prefix_len());
        let le = self.le.unwrap_or(self.prefix.max_prefix_len());
        (ge..=le).contains(&len)
    }

    /// Why this entry cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let len = self.prefix.prefix_len();
        let max = self.prefix.max_prefix_len();
        if let Some(ge) = self.ge {
            if ge < len || ge > max {
                return Err(format!(
                    "ge {ge} must lie in {len}..={max} for {}",
                    self.prefix
                ));
            }
        }
        if let Some(le) = self.le {
            if le < len || le > max {
                return Err(format!(
                    "le {le} must lie in {len}..={max} for {}",
                    self.prefix
                ));
            }
            if le < self.ge.unwrap_or(len) {
                return Err(format!("le {le} is below ge for {}", self.prefix));
            }
        }
        Ok(())
    }
}

/// An ordered prefix list: the first matching entry decides, and a prefix
/// no entry matches is denied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PrefixList {
    /// Entries, in order.
    pub entries: Vec<PrefixListEntry>,
}

impl PrefixList {
    /// A list of these entries.
    pub fn new(entries: Vec<PrefixListEntry>) -> Self {
        Self { entries }
    }

    /// Whether `prefix` is permitted.
    pub fn permits(&self, prefix: &IpNet) -> bool {
        self.entries
            .iter()
            .find(|e| e.matches(prefix))
            .map(|e| e.action)
            == Some(Action::Permit)
    }
}

/// Why a received route was not accepted into the Adj-RIB-In's usable part.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImportRefusal {
    /// Identical to one of the gateway's own prefixes.
    OwnPrefix,
    /// The AS_PATH holds our own ASN: the route has been through us.
    OwnAsInPath {
        /// Our ASN.
        asn: u32,
    },
    /// The peer's import prefix list does not permit it.
    ImportPrefixList,
    /// The UPDATE announcing it was malformed; RFC 7606 treat-as-withdraw.
    Malformed(UpdateError),
}

impl fmt::Display for ImportRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OwnPrefix => f.write_str("identical to one of the gateway's own prefixes"),
            Self::OwnAsInPath { asn } => {
                write!(f, "AS path contains our own AS {asn} (routing loop)")
            }
            Self::ImportPrefixList => f.write_str("not permitted by the peer's import prefix list"),
            Self::Malformed(e) => write!(f, "malformed UPDATE treated as withdraw (RFC 7606): {e}"),
        }
    }
}

/// Why a route is not advertised to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExportRefusal {
    /// A default route learned from a peer is never re-advertised.
    DefaultRoute,
    /// The peer's export prefix list does not permit it.
    ExportPrefixList,
    /// The best path was learned from this very peer.
    LearnedFromPeer,
    /// The AS_PATH holds the peer's ASN: the peer would drop it as a loop.
    PeerAsInPath {
        /// The peer's ASN.
        asn: u32,
    },
    /// Learned over iBGP, and the peer is internal too (no route
    /// reflection).
    IbgpToIbgp,
    /// The route carries NO_EXPORT and the peer is external, or
    /// NO_ADVERTISE (RFC 1997).
    WellKnownCommunity(Community),
    /// The peer did not negotiate the address family of the prefix.
    AddressFamilyNotNegotiated,
    /// No next hop of the prefix's family to put in the route (an IPv6
    /// prefix over an IPv4 session needs a configured IPv6 next hop).
    NoNextHop,
    /// Advertising it would take the peer over the number of prefixes it
    /// accepts, which would make it tear the session down.
    PeerCap {
        /// How many prefixes the peer accepts.
        cap: u32,
        /// The peer's profile that sets the cap.
        profile: Profile,
    },
}

impl fmt::Display for ExportRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DefaultRoute => f.write_str("a learned default route is never re-advertised"),
            Self::ExportPrefixList => f.write_str("not permitted by the peer's export prefix list"),
            Self::LearnedFromPeer => f.write_str("the best path was learned from this peer"),
            Self::PeerAsInPath { asn } => {
                write!(
                    f,
                    "AS path contains the peer's AS {asn}; it would refuse it"
                )
            }
            Self::IbgpToIbgp => f.write_str("learned over iBGP; not passed to another iBGP peer"),
            Self::WellKnownCommunity(c) => match *c {
                Community::NO_EXPORT => f.write_str("carries NO_EXPORT"),
                Community::NO_ADVERTISE => f.write_str("carries NO_ADVERTISE"),
                other => write!(f, "carries community {}:{}", other.asn(), other.value()),
            },
            Self::AddressFamilyNotNegotiated => {
                f.write_str("the peer did not negotiate this address family")
            }
            Self::NoNextHop => f.write_str("no local next hop of this address family"),
            Self::PeerCap { cap, profile } => write!(
                f,
                "the peer ({profile}) accepts at most {cap} prefixes; \
                 advertising more would make it close the session"
            ),
        }
    }
}

/// The import rules that do not depend on the peer's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Our ASN.
    pub local_as: u32,
    /// The gateway's own prefixes.
    pub own_prefixes: BTreeSet<IpNet>,
}

impl Policy {
    /// Checks a received route: own prefix, own ASN in the path, then the
    /// peer's import list.
    pub fn check_import(
        &self,
        prefix: &IpNet,
        attrs: &PathAttributes,
        import: Option<&PrefixList>,
    ) -> Result<(), ImportRefusal> {
        if self.own_prefixes.contains(prefix) {
            return Err(ImportRefusal::OwnPrefix);
        }
        if attrs.as_path_contains(self.local_as) {
            return Err(ImportRefusal::OwnAsInPath { asn: self.local_as });
        }
        if let Some(list) = import {
            if !list.permits(prefix) {
                return Err(ImportRefusal::ImportPrefixList);
            }
        }
        Ok(())
    }

    /// Whether `prefix` is one of the gateway's own.
    pub fn is_own(&self, prefix: &IpNet) -> bool {
        self.own_prefixes.contains(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn exact_entry_matches_only_itself() {
        let e = PrefixListEntry::permit(net("10.0.0.0/8"));
        assert!(e.matches(&net("10.0.0.0/8")));
        assert!(!e.matches(&net("10.1.0.0/16")));
        assert!(!e.matches(&net("0.0.0.0/0")));
        assert!(!e.matches(&net("::/0")));
    }

    #[test]
    fn ge_le_bound_the_length() {
        let e = PrefixListEntry::permit(net("10.0.0.0/8")).ge(16).le(24);
        assert!(!e.matches(&net("10.0.0.0/8")));
        assert!(e.matches(&net("10.1.0.0/16")));
        assert!(e.matches(&net("10.1.2.0/24")));
        assert!(!e.matches(&net("10.1.2.0/25")));
        assert!(!e.matches(&net("11.1.0.0/16")));
        let le_only = PrefixListEntry::permit(net("10.0.0.0/8")).le(16);
        assert!(le_only.matches(&net("10.0.0.0/8")));
        assert!(le_only.matches(&net("10.2.0.0/16")));
        assert!(!le_only.matches(&net("10.2.3.0/24")));
        let ge_only = PrefixListEntry::permit(net("10.0.0.0/8")).ge(30);
        assert!(ge_only.matches(&net("10.0.0.4/30")));
        assert!(ge_only.matches(&net("10.0.0.4/32")));
        assert!(!ge_only.matches(&net("10.0.0.0/29")));
    }

    #[test]
    fn first_match_wins_and_the_rest_is_denied() {
        let list = PrefixList::new(vec![
            PrefixListEntry::deny(net("10.9.0.0/16")),
            PrefixListEntry::permit(net("10.0.0.0/8")).le(24),
        ]);
        assert!(!list.permits(&net("10.9.0.0/16")));
        assert!(list.permits(&net("10.8.0.0/16")));
        assert!(!list.permits(&net("192.0.2.0/24")));
    }

    #[test]
    fn bad_bounds_are_reported() {
        assert!(PrefixListEntry::permit(net("10.0.0.0/8"))
            .ge(4)
            .check()
            .is_err());
        assert!(PrefixListEntry::permit(net("10.0.0.0/8"))
            .le(33)
            .check()
            .is_err());
        assert!(PrefixListEntry::permit(net("10.0.0.0/8"))
            .ge(24)
            .le(16)
            .check()
            .is_err());
        assert!(PrefixListEntry::permit(net("10.0.0.0/8"))
            .ge(16)
            .le(24)
            .check()
            .is_ok());
    }
}
