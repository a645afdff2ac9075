//! The speaker's configuration as this crate takes it: plain structs the
//! daemon fills from its TOML file, checked by [`SpeakerConfig::validate`]
//! into errors (refused) and warnings (told to the operator).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::time::Duration;

use ipnet::IpNet;
use thiserror::Error;

use crate::policy::PrefixList;

/// Keepalive time, seconds, as the clouds use.
pub const DEFAULT_KEEPALIVE: u16 = 60;
/// Hold time, seconds, as the clouds use.
pub const DEFAULT_HOLD: u16 = 180;
/// The largest number of prefixes accepted from a peer by default (Azure's
/// own limit).
pub const DEFAULT_MAX_PREFIXES: u32 = 4000;
/// ConnectRetryTime (RFC 4271 §10 suggests 120 s; a tunnel wants its
/// session back sooner).
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(10);
/// How long a session stays in Idle after an error before it restarts
/// (RFC 4271 §8.1.1 IdleHoldTime).
pub const DEFAULT_IDLE_HOLD: Duration = Duration::from_secs(2);
/// How long a session closed for exceeding its prefix limit stays down.
pub const DEFAULT_MAX_PREFIX_RESTART: Duration = Duration::from_secs(60);
/// The BGP port.
pub const BGP_PORT: u16 = 179;

/// ASNs no peer may use, whatever the cloud: AS 0 (RFC 7607), AS_TRANS
/// (RFC 6793), 65535 and 4294967295 (RFC 7300).
pub const RESERVED_ASNS: [u32; 4] = [0, 23456, 65535, 4_294_967_295];

/// A cloud whose BGP we know: what it accepts and how it behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Azure VPN Gateway.
    Azure,
    /// AWS site-to-site VPN.
    Aws,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Azure => "azure",
            Self::Aws => "aws",
        })
    }
}

impl Profile {
    /// The timers the cloud runs.
    pub fn timers(self) -> Timers {
        match self {
            Self::Azure => Timers {
                keepalive: 60,
                hold: 180,
            },
            Self::Aws => Timers {
                keepalive: 10,
                hold: 30,
            },
        }
    }

    /// How many prefixes the cloud accepts from us before it drops the
    /// session.
    pub fn max_prefixes(self) -> u32 {
        match self {
            Self::Azure => 4000,
            Self::Aws => 100,
        }
    }

    /// The ASNs the cloud refuses for its peers (besides [`RESERVED_ASNS`]).
    pub fn reserved_asns(self) -> &'static [RangeInclusive<u32>] {
        match self {
            Self::Azure => &[
                8074..=8075,
                12076..=12076,
                65515..=65515,
                65517..=65520,
                23456..=23456,
                64496..=64511,
                65535..=65551,
                4_294_967_295..=4_294_967_295,
            ],
            Self::Aws => &[],
        }
    }

    /// The link-local range the cloud's custom BGP addresses must lie in,
    /// when it has one.
    pub fn apipa_range(self) -> Option<RangeInclusive<Ipv4Addr>> {
        match self {
            Self::Azure => Some(Ipv4Addr::new(169, 254, 21, 0)..=Ipv4Addr::new(169, 254, 22, 255)),
            Self::Aws => None,
        }
    }

    /// Whether the cloud never opens the connection itself, so our side
    /// must be active.
    pub fn never_initiates(self) -> bool {
        match self {
            Self::Azure => true,
            Self::Aws => false,
        }
    }

    /// Whether the cloud reserves `asn` for itself.
    pub fn reserves(self, asn: u32) -> bool {
        self.reserved_asns().iter().any(|r| r.contains(&asn))
    }
}

/// Keepalive and hold time, seconds (RFC 4271 §4.2, §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timers {
    /// KeepaliveTime.
    pub keepalive: u16,
    /// HoldTime proposed in OPEN: 0 (no keepalives) or at least 3.
    pub hold: u16,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            keepalive: DEFAULT_KEEPALIVE,
            hold: DEFAULT_HOLD,
        }
    }
}

/// One BGP peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// A name for logs and events (the daemon uses the connection name).
    pub name: String,
    /// The peer's BGP address.
    pub address: IpAddr,
    /// Our address on the session: the source of our connections, where we
    /// listen for this peer, and the next hop we advertise.
    pub local_address: Option<IpAddr>,
    /// The peer's ASN.
    pub remote_as: u32,
    /// Wait for the peer to connect; never initiate.
    pub passive: bool,
    /// Timers; `None` takes the profile's, or 60 / 180.
    pub timers: Option<Timers>,
    /// ConnectRetryTime.
    pub connect_retry: Duration,
    /// IdleHoldTime: how long to stay Idle after an error.
    pub idle_hold: Duration,
    /// The most prefixes accepted from the peer; one more closes the
    /// session with Cease / Maximum Number of Prefixes Reached.
    pub max_prefixes: u32,
    /// How long the session stays down after exceeding `max_prefixes`.
    pub max_prefix_restart: Duration,
    /// How many extra times our ASN is prepended on export.
    pub prepend: u8,
    /// Prefixes accepted from the peer; `None` accepts all.
    pub import: Option<PrefixList>,
    /// Prefixes advertised to the peer; `None` advertises all.
    pub export: Option<PrefixList>,
    /// The cloud the peer is, if it is one.
    pub profile: Option<Profile>,
    /// The next hop for IPv6 prefixes when the session runs over IPv4.
    pub ipv6_next_hop: Option<Ipv6Addr>,
}

impl PeerConfig {
    /// A peer with every default: active, 60 / 180, 4000 prefixes, no
    /// lists, no prepend, no profile.
    pub fn new(name: impl Into<String>, address: IpAddr, remote_as: u32) -> Self {
        Self {
            name: name.into(),
            address,
            local_address: None,
            remote_as,
            passive: false,
            timers: None,
            connect_retry: DEFAULT_CONNECT_RETRY,
            idle_hold: DEFAULT_IDLE_HOLD,
            max_prefixes: DEFAULT_MAX_PREFIXES,
            max_prefix_restart: DEFAULT_MAX_PREFIX_RESTART,
            prepend: 0,
            import: None,
            export: None,
            profile: None,
            ipv6_next_hop: None,
        }
    }

    /// The timers in force: explicit, else the profile's, else 60 / 180.
    pub fn effective_timers(&self) -> Timers {
        self.timers
            .or(self.profile.map(Profile::timers))
            .unwrap_or_default()
    }

    /// How many prefixes the peer accepts from us, when its profile says.
    pub fn peer_cap(&self) -> Option<(u32, Profile)> {
        self.profile.map(|p| (p.max_prefixes(), p))
    }
}

/// The whole speaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerConfig {
    /// Our ASN.
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// The gateway's own ("VNet") prefixes, advertised to every peer; a
    /// peer's route identical to one of them is refused
    /// ([`ImportRefusal::OwnPrefix`](crate::policy::ImportRefusal::OwnPrefix)).
    pub local_prefixes: Vec<IpNet>,
    /// Prefixes originated and advertised to every peer that are not the
    /// gateway's own: a default route (0.0.0.0/0, ::/0), a summary, ... They
    /// go out as local prefixes do (empty AS_PATH before our ASN is
    /// prepended, ORIGIN IGP, next hop self, subject to each peer's export
    /// rules), but a peer's identical route is accepted as any other. Our
    /// origination still wins the decision over it: it stays in the
    /// Adj-RIB-In without entering the Loc-RIB until the prefix is no longer
    /// announced. A prefix also in `local_prefixes` is simply own.
    pub announce: Vec<IpNet>,
    /// Act like this cloud towards our peers: refuse the peer ASNs it
    /// reserves.
    pub act_as: Option<Profile>,
    /// The peers.
    pub peers: Vec<PeerConfig>,
}

/// A configuration the speaker refuses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// Our ASN is reserved.
    #[error("local ASN {asn} is reserved")]
    ReservedLocalAs {
        /// The ASN.
        asn: u32,
    },
    /// The router id is 0.0.0.0.
    #[error("router id 0.0.0.0 is not a valid BGP identifier")]
    BadRouterId,
    /// A peer's ASN is reserved.
    #[error("peer {peer}: ASN {asn} is reserved ({why})")]
    ReservedPeerAs {
        /// The peer's name.
        peer: String,
        /// The ASN.
        asn: u32,
        /// By whom.
        why: String,
    },
    /// Two peers share an address.
    #[error("peer {peer}: address {address} is used by another peer")]
    DuplicatePeer {
        /// The peer's name.
        peer: String,
        /// The address.
        address: IpAddr,
    },
    /// A hold time of 1 or 2 s, or a keepalive time of 0 with a hold time.
    #[error("peer {peer}: hold time {hold} / keepalive {keepalive}: hold time must be 0 or at least 3, keepalive at least 1 and at most the hold time")]
    BadTimers {
        /// The peer's name.
        peer: String,
        /// Hold time.
        hold: u16,
        /// Keepalive time.
        keepalive: u16,
    },
    /// A prefix list entry with impossible bounds.
    #[error("peer {peer}: {list} prefix list: {error}")]
    BadPrefixList {
        /// The peer's name.
        peer: String,
        /// "import" or "export".
        list: &'static str,
        /// What is wrong.
        error: String,
    },
    /// A max-prefix limit of zero.
    #[error("peer {peer}: max prefixes must be at least 1")]
    ZeroMaxPrefixes {
        /// The peer's name.
        peer: String,
    },
    /// A prefix to originate with bits set past its length.
    #[error("{list}: {prefix} has host bits set; expected {}", prefix.trunc())]
    HostBitsSet {
        /// The list it is in ("announce").
        list: &'static str,
        /// The prefix as given.
        prefix: IpNet,
    },
}

/// Something that works but that the operator should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// The peer's profile runs other timers than configured.
    TimersDifferFromProfile {
        /// The peer's name.
        peer: String,
        /// Configured.
        configured: Timers,
        /// The cloud's.
        profile: Timers,
    },
    /// The cloud never connects, and we are passive: no session will come
    /// up.
    PassiveTowardsNonInitiatingCloud {
        /// The peer's name.
        peer: String,
        /// The cloud.
        profile: Profile,
    },
    /// A link-local peer address outside the cloud's APIPA range.
    OutsideApipaRange {
        /// The peer's name.
        peer: String,
        /// The address.
        address: IpAddr,
    },
    /// The cloud reserves our ASN and will refuse the session.
    LocalAsReservedByPeer {
        /// The peer's name.
        peer: String,
        /// Our ASN.
        asn: u32,
        /// The cloud.
        profile: Profile,
    },
    /// More prefixes to originate (own and announced) than the cloud
    /// accepts: some will be held back.
    OwnPrefixesOverPeerCap {
        /// The peer's name.
        peer: String,
        /// How many we originate (`local_prefixes` and `announce`, each
        /// distinct prefix once).
        prefixes: usize,
        /// How many the cloud accepts.
        cap: u32,
        /// The cloud.
        profile: Profile,
    },
    /// One of our own prefixes is refused by the peer's export list.
    OwnPrefixNotExported {
        /// The peer's name.
        peer: String,
        /// The prefix.
        prefix: IpNet,
    },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimersDifferFromProfile {
                peer,
                configured,
                profile,
            } => write!(
                f,
                "peer {peer}: keepalive {} / hold {} configured, the cloud uses {} / {}",
                configured.keepalive, configured.hold, profile.keepalive, profile.hold
            ),
            Self::PassiveTowardsNonInitiatingCloud { peer, profile } => write!(
                f,
                "peer {peer}: passive, but {profile} never initiates BGP: the session will not come up"
            ),
            Self::OutsideApipaRange { peer, address } => write!(
                f,
                "peer {peer}: {address} is outside 169.254.21.0-169.254.22.255, the range Azure accepts"
            ),
            Self::LocalAsReservedByPeer { peer, asn, profile } => write!(
                f,
                "peer {peer}: {profile} reserves our ASN {asn} and will refuse the session"
            ),
            Self::OwnPrefixesOverPeerCap {
                peer,
                prefixes,
                cap,
                profile,
            } => write!(
                f,
                "peer {peer}: {prefixes} own and announced prefixes but {profile} accepts \
                 at most {cap}; the rest will be held back"
            ),
            Self::OwnPrefixNotExported { peer, prefix } => write!(
                f,
                "peer {peer}: own prefix {prefix} is not permitted by the export prefix list"
            ),
        }
    }
}

/// Why `asn` is refused as a peer ASN, if it is.
pub fn reserved_peer_as(asn: u32, act_as: Option<Profile>) -> Option<String> {
    if RESERVED_ASNS.contains(&asn) {
        return Some("reserved by IANA".to_string());
    }
    match act_as {
        Some(profile) if profile.reserves(asn) => Some(format!("reserved by {profile}")),
        Some(_) | None => None,
    }
}

impl SpeakerConfig {
    /// Checks the configuration: errors refuse it, warnings are told.
    pub fn validate(&self) -> Result<Vec<ConfigWarning>, ConfigError> {
        if RESERVED_ASNS.contains(&self.local_as) {
            return Err(ConfigError::ReservedLocalAs { asn: self.local_as });
        }
        if self.router_id.is_unspecified() {
            return Err(ConfigError::BadRouterId);
        }
        if let Some(prefix) = self.announce.iter().find(|p| p.trunc() != **p) {
            return Err(ConfigError::HostBitsSet {
                list: "announce",
                prefix: *prefix,
            });
        }
        let gateway = Gateway {
            local_as: self.local_as,
            act_as: self.act_as,
            local_prefixes: &self.local_prefixes,
            announce: &self.announce,
        };
        let mut warnings = Vec::new();
        let mut addresses = BTreeSet::new();
        for peer in &self.peers {
            warnings.extend(gateway.check_peer(peer, &addresses)?);
            addresses.insert(peer.address);
        }
        Ok(warnings)
    }
}

/// The gateway-wide settings one peer is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gateway<'a> {
    pub(crate) local_as: u32,
    pub(crate) act_as: Option<Profile>,
    pub(crate) local_prefixes: &'a [IpNet],
    /// Announced prefixes (may overlap `local_prefixes`).
    pub(crate) announce: &'a [IpNet],
}

impl Gateway<'_> {
    /// Checks one peer, next to peers already using `taken` addresses.
    pub(crate) fn check_peer(
        &self,
        peer: &PeerConfig,
        taken: &BTreeSet<IpAddr>,
    ) -> Result<Vec<ConfigWarning>, ConfigError> {
        let mut warnings = Vec::new();
        let name = || peer.name.clone();
        if let Some(why) = reserved_peer_as(peer.remote_as, self.act_as) {
            return Err(ConfigError::ReservedPeerAs {
                peer: name(),
                asn: peer.remote_as,
                why,
            });
        }
        if taken.contains(&peer.address) {
            return Err(ConfigError::DuplicatePeer {
                peer: name(),
                address: peer.address,
            });
        }
        let timers = peer.effective_timers();
        let hold_ok = timers.hold == 0 || timers.hold >= 3;
        let keepalive_ok =
            timers.hold == 0 || (timers.keepalive >= 1 && timers.keepalive <= timers.hold);
        if !hold_ok || !keepalive_ok {
            return Err(ConfigError::BadTimers {
                peer: name(),
                hold: timers.hold,
                keepalive: timers.keepalive,
            });
        }
        if peer.max_prefixes == 0 {
            return Err(ConfigError::ZeroMaxPrefixes { peer: name() });
        }
        for (list, which) in [(&peer.import, "import"), (&peer.export, "export")] {
            for entry in list.iter().flat_map(|l| l.entries.iter()) {
                entry.check().map_err(|error| ConfigError::BadPrefixList {
                    peer: name(),
                    list: which,
                    error,
                })?;
            }
        }
        if let Some(export) = &peer.export {
            for prefix in self.local_prefixes {
                if !export.permits(prefix) {
                    warnings.push(ConfigWarning::OwnPrefixNotExported {
                        peer: name(),
                        prefix: *prefix,
                    });
                }
            }
        }
        let Some(profile) = peer.profile else {
            return Ok(warnings);
        };
        if peer.timers.is_some_and(|t| t != profile.timers()) {
            warnings.push(ConfigWarning::TimersDifferFromProfile {
                peer: name(),
                configured: timers,
                profile: profile.timers(),
            });
        }
        if peer.passive && profile.never_initiates() {
            warnings.push(ConfigWarning::PassiveTowardsNonInitiatingCloud {
                peer: name(),
                profile,
            });
        }
        if let (IpAddr::V4(v4), Some(range)) = (peer.address, profile.apipa_range()) {
            if v4.is_link_local() && !range.contains(&v4) {
                warnings.push(ConfigWarning::OutsideApipaRange {
                    peer: name(),
                    address: peer.address,
                });
            }
        }
        if profile.reserves(self.local_as) {
            warnings.push(ConfigWarning::LocalAsReservedByPeer {
                peer: name(),
                asn: self.local_as,
                profile,
            });
        }
        let cap = profile.max_prefixes();
        let originated = self
            .local_prefixes
            .iter()
            .chain(self.announce)
            .collect::<BTreeSet<_>>()
            .len();
        if originated > usize::try_from(cap).unwrap_or(usize::MAX) {
            warnings.push(ConfigWarning::OwnPrefixesOverPeerCap {
                peer: name(),
                prefixes: originated,
                cap,
                profile,
            });
        }
        Ok(warnings)
    }
}
