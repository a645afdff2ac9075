//! The decision process, one row per tie-breaker.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr};

use vpngw_bgp::decision::{compare, select, Candidate, PathSource, TieBreaker};
use vpngw_bgp::rib::PathAttributes;
use vpngw_bgp::wire::{AsPath, Origin};

fn attrs(path: &[u32]) -> PathAttributes {
    let mut a = PathAttributes::originated(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    a.as_path = AsPath::from_sequence(path.to_vec());
    a
}

fn source(id: u8, external: bool) -> PathSource {
    PathSource {
        router_id: Ipv4Addr::new(10, 0, 0, id),
        address: IpAddr::V4(Ipv4Addr::new(169, 254, 21, id)),
        external,
    }
}

struct Row {
    name: &'static str,
    /// The preferred path.
    winner: (PathAttributes, PathSource),
    loser: (PathAttributes, PathSource),
    step: TieBreaker,
}

fn rows() -> Vec<Row> {
    let base = || attrs(&[65001, 65010]);
    let with = |f: &dyn Fn(&mut PathAttributes)| {
        let mut a = base();
        f(&mut a);
        a
    };
    vec![
        Row {
            name: "higher LOCAL_PREF wins over a shorter path",
            winner: (with(&|a| a.local_pref = Some(200)), source(9, true)),
            loser: (attrs(&[65001]), source(1, true)),
            step: TieBreaker::LocalPref,
        },
        Row {
            name: "shorter AS_PATH wins (prepending works)",
            winner: (base(), source(9, true)),
            loser: (attrs(&[65001, 65001, 65010]), source(1, true)),
            step: TieBreaker::AsPathLength,
        },
        Row {
            name: "IGP origin wins over INCOMPLETE",
            winner: (base(), source(9, true)),
            loser: (with(&|a| a.origin = Origin::Incomplete), source(1, true)),
            step: TieBreaker::Origin,
        },
        Row {
            name: "lower MED from the same neighbor AS wins",
            winner: (with(&|a| a.med = Some(10)), source(9, true)),
            loser: (with(&|a| a.med = Some(20)), source(1, true)),
            step: TieBreaker::MultiExitDisc,
        },
        Row {
            name: "eBGP wins over iBGP",
            winner: (base(), source(9, true)),
            loser: (base(), source(1, false)),
            step: TieBreaker::EbgpOverIbgp,
        },
        Row {
            name: "lower router id wins",
            winner: (base(), source(1, true)),
            loser: (base(), source(2, true)),
            step: TieBreaker::RouterId,
        },
        Row {
            name: "lower peer address wins",
            winner: (
                base(),
                PathSource {
                    address: IpAddr::V4(Ipv4Addr::new(169, 254, 21, 1)),
                    ..source(5, true)
                },
            ),
            loser: (
                base(),
                PathSource {
                    address: IpAddr::V4(Ipv4Addr::new(169, 254, 21, 2)),
                    ..source(5, true)
                },
            ),
            step: TieBreaker::PeerAddress,
        },
    ]
}

#[test]
fn one_row_per_tie_breaker() {
    for row in rows() {
        let w = Candidate {
            attrs: &row.winner.0,
            source: row.winner.1,
        };
        let l = Candidate {
            attrs: &row.loser.0,
            source: row.loser.1,
        };
        assert_eq!(
            compare(&w, &l),
            (Ordering::Less, Some(row.step)),
            "{}",
            row.name
        );
        assert_eq!(
            compare(&l, &w),
            (Ordering::Greater, Some(row.step)),
            "{}",
            row.name
        );
        // The elimination gives the same answer, and keeps why the loser lost.
        let sel = select(&[l, w]).unwrap();
        assert_eq!(sel.best, 1, "{}", row.name);
        assert_eq!(sel.lost, vec![(0, row.step)], "{}", row.name);
        assert_eq!(
            sel.ecmp.len(),
            if row.step.keeps_ecmp() { 2 } else { 1 },
            "{}: ECMP only past step 5",
            row.name
        );
    }
}

#[test]
fn med_is_not_compared_across_neighbor_ases() {
    let mut a = attrs(&[65001]);
    a.med = Some(100);
    let mut b = attrs(&[65002]);
    b.med = Some(1);
    let ca = Candidate {
        attrs: &a,
        source: source(1, true),
    };
    let cb = Candidate {
        attrs: &b,
        source: source(2, true),
    };
    // MED is skipped; the router id decides.
    assert_eq!(
        compare(&ca, &cb),
        (Ordering::Less, Some(TieBreaker::RouterId))
    );
}

#[test]
fn missing_med_counts_as_zero() {
    let a = attrs(&[65001]);
    let mut b = attrs(&[65001]);
    b.med = Some(5);
    let ca = Candidate {
        attrs: &a,
        source: source(2, true),
    };
    let cb = Candidate {
        attrs: &b,
        source: source(1, true),
    };
    assert_eq!(
        compare(&ca, &cb),
        (Ordering::Less, Some(TieBreaker::MultiExitDisc))
    );
}

#[test]
fn equal_paths_from_several_peers_form_the_ecmp_set() {
    let a = attrs(&[65001]);
    let b = attrs(&[65001]);
    let c = attrs(&[65001, 65001]);
    let cands = [
        Candidate {
            attrs: &a,
            source: source(3, true),
        },
        Candidate {
            attrs: &b,
            source: source(2, true),
        },
        Candidate {
            attrs: &c,
            source: source(1, true),
        },
    ];
    let sel = select(&cands).unwrap();
    assert_eq!(sel.best, 1);
    assert_eq!(sel.ecmp, vec![1, 0]);
    assert!(sel.lost.contains(&(2, TieBreaker::AsPathLength)));
    assert!(sel.lost.contains(&(0, TieBreaker::RouterId)));
    assert_eq!(select(&[]), None);
}

#[test]
fn identical_paths_compare_equal() {
    let a = attrs(&[65001]);
    let c = Candidate {
        attrs: &a,
        source: source(1, true),
    };
    assert_eq!(compare(&c, &c), (Ordering::Equal, None));
}
