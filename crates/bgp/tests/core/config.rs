//! Configuration checks: reserved ASNs, cloud profiles.

use std::net::{IpAddr, Ipv4Addr};

use vpngw_bgp::config::{ConfigError, ConfigWarning, Profile};
use vpngw_bgp::{PeerConfig, SpeakerConfig, Timers};

fn speaker(peers: Vec<PeerConfig>) -> SpeakerConfig {
    SpeakerConfig {
        local_as: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        local_prefixes: vec!["10.1.0.0/16".parse().unwrap()],
        announce: Vec::new(),
        act_as: None,
        peers,
    }
}

fn peer(asn: u32) -> PeerConfig {
    PeerConfig::new("p", IpAddr::V4(Ipv4Addr::new(169, 254, 21, 1)), asn)
}

#[test]
fn reserved_peer_asns_are_refused() {
    for asn in [0, 23456, 65535, 4_294_967_295] {
        let err = speaker(vec![peer(asn)]).validate().unwrap_err();
        assert!(
            matches!(err, ConfigError::ReservedPeerAs { asn: a, .. } if a == asn),
            "{asn}: {err}"
        );
    }
    // Azure's own list applies when we act like Azure.
    let mut azure_like = speaker(vec![peer(65515)]);
    assert!(azure_like.validate().is_ok());
    azure_like.act_as = Some(Profile::Azure);
    let err = azure_like.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "peer p: ASN 65515 is reserved (reserved by azure)"
    );
    for asn in [8074, 12076, 65518, 64500, 65540] {
        azure_like.peers[0].remote_as = asn;
        assert!(azure_like.validate().is_err(), "{asn}");
    }
    azure_like.peers[0].remote_as = 65001;
    assert!(azure_like.validate().is_ok());
}

#[test]
fn bad_values_are_refused() {
    let mut c = speaker(vec![peer(65001)]);
    c.local_as = 0;
    assert!(matches!(
        c.validate(),
        Err(ConfigError::ReservedLocalAs { .. })
    ));
    let mut c = speaker(vec![peer(65001)]);
    c.peers[0].timers = Some(Timers {
        keepalive: 1,
        hold: 2,
    });
    assert!(matches!(c.validate(), Err(ConfigError::BadTimers { .. })));
    let c = speaker(vec![peer(65001), peer(65002)]);
    assert!(matches!(
        c.validate(),
        Err(ConfigError::DuplicatePeer { .. })
    ));
}

#[test]
fn azure_profile_warns_about_what_azure_would_refuse() {
    let mut p = PeerConfig::new("azure", IpAddr::V4(Ipv4Addr::new(169, 254, 30, 1)), 65515);
    p.profile = Some(Profile::Azure);
    p.passive = true;
    p.timers = Some(Timers {
        keepalive: 3,
        hold: 9,
    });
    let mut c = speaker(vec![p]);
    c.local_as = 65517;
    c.local_prefixes = (0..4001u32)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap())
        .collect();
    let warnings = c.validate().unwrap();
    let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert!(
        matches!(warnings[0], ConfigWarning::TimersDifferFromProfile { .. }),
        "{text:?}"
    );
    assert!(warnings
        .iter()
        .any(|w| matches!(w, ConfigWarning::PassiveTowardsNonInitiatingCloud { .. })));
    assert!(warnings
        .iter()
        .any(|w| matches!(w, ConfigWarning::OutsideApipaRange { .. })));
    assert!(warnings
        .iter()
        .any(|w| matches!(w, ConfigWarning::LocalAsReservedByPeer { asn: 65517, .. })));
    assert!(warnings.iter().any(|w| matches!(
        w,
        ConfigWarning::OwnPrefixesOverPeerCap {
            prefixes: 4001,
            cap: 4000,
            ..
        }
    )));
    assert!(
        text.iter().any(|t| t.contains("accepts at most 4000")),
        "{text:?}"
    );
}

#[test]
fn profiles_set_timers() {
    let mut p = peer(64512);
    assert_eq!(
        p.effective_timers(),
        Timers {
            keepalive: 60,
            hold: 180
        }
    );
    p.profile = Some(Profile::Aws);
    assert_eq!(
        p.effective_timers(),
        Timers {
            keepalive: 10,
            hold: 30
        }
    );
    assert_eq!(p.peer_cap(), Some((100, Profile::Aws)));
    p.profile = Some(Profile::Azure);
    assert_eq!(
        p.effective_timers(),
        Timers {
            keepalive: 60,
            hold: 180
        }
    );
    assert_eq!(p.peer_cap(), Some((4000, Profile::Azure)));
}
