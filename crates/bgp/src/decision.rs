//! The BGP decision process (RFC 4271 §9.1): best path, the ECMP set of
//! equal paths, and the reason each other path lost.
//!
//! The steps, in order (§9.1.2.2 and §9.1.2.1 for LOCAL_PREF):
//!
//! 1. highest LOCAL_PREF (the degree of preference);
//! 2. shortest AS_PATH (an AS_SET counts as one);
//! 3. lowest ORIGIN (IGP < EGP < INCOMPLETE);
//! 4. lowest MULTI_EXIT_DISC, only between paths from the same neighbor
//!    AS (a missing MED counts as 0);
//! 5. a path from an external peer over one from an internal peer;
//! 6. (lowest interior cost to the next hop: every next hop of ours is a
//!    directly connected tunnel peer, so this step never decides);
//! 7. lowest BGP Identifier of the advertising peer;
//! 8. lowest peer address.
//!
//! Paths still equal after step 5 form the ECMP set: the same prefix from
//! several tunnels with equal preference and AS_PATH length. Steps 7 and 8
//! only pick which of them is reported as "the" best.

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::rib::PathAttributes;

/// The step of the decision process that told two paths apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TieBreaker {
    /// Step 1: LOCAL_PREF.
    LocalPref,
    /// Step 2: AS_PATH length.
    AsPathLength,
    /// Step 3: ORIGIN.
    Origin,
    /// Step 4: MULTI_EXIT_DISC.
    MultiExitDisc,
    /// Step 5: external over internal.
    EbgpOverIbgp,
    /// Step 7: BGP Identifier.
    RouterId,
    /// Step 8: peer address.
    PeerAddress,
}

impl TieBreaker {
    /// Whether a path that lost at this step still carries traffic (it is
    /// in the ECMP set).
    pub fn keeps_ecmp(self) -> bool {
        match self {
            Self::RouterId | Self::PeerAddress => true,
            Self::LocalPref
            | Self::AsPathLength
            | Self::Origin
            | Self::MultiExitDisc
            | Self::EbgpOverIbgp => false,
        }
    }
}

impl fmt::Display for TieBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LocalPref => "lower local preference",
            Self::AsPathLength => "longer AS path",
            Self::Origin => "worse origin",
            Self::MultiExitDisc => "higher MED from the same neighbor AS",
            Self::EbgpOverIbgp => "learned over iBGP, an eBGP path exists",
            Self::RouterId => "higher router id (equal-cost, still in the ECMP set)",
            Self::PeerAddress => "higher peer address (equal-cost, still in the ECMP set)",
        })
    }
}

/// Who advertised a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PathSource {
    /// The peer's BGP Identifier.
    pub router_id: Ipv4Addr,
    /// The peer's address.
    pub address: IpAddr,
    /// Whether the peer is in another AS.
    pub external: bool,
}

/// One path to a prefix, as the decision process sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Its attributes.
    pub attrs: &'a PathAttributes,
    /// Its source.
    pub source: PathSource,
}

/// Compares two paths step by step: `Less` means `a` is preferred. The
/// step that decided is returned with it (`None` when they are equal all
/// the way). MED is compared only when both come from the same neighbor AS.
pub fn compare(a: &Candidate<'_>, b: &Candidate<'_>) -> (Ordering, Option<TieBreaker>) {
    let steps: [(TieBreaker, Ordering); 7] = [
        (
            TieBreaker::LocalPref,
            b.attrs
                .degree_of_preference()
                .cmp(&a.attrs.degree_of_preference()),
        ),
        (
            TieBreaker::AsPathLength,
            a.attrs.as_path_len().cmp(&b.attrs.as_path_len()),
        ),
        (TieBreaker::Origin, a.attrs.origin.cmp(&b.attrs.origin)),
        (TieBreaker::MultiExitDisc, med_order(a, b)),
        (
            TieBreaker::EbgpOverIbgp,
            b.source.external.cmp(&a.source.external),
        ),
        (
            TieBreaker::RouterId,
            u32::from(a.source.router_id).cmp(&u32::from(b.source.router_id)),
        ),
        (
            TieBreaker::PeerAddress,
            a.source.address.cmp(&b.source.address),
        ),
    ];
    steps
        .into_iter()
        .find(|(_, o)| o.is_ne())
        .map_or((Ordering::Equal, None), |(t, o)| (o, Some(t)))
}

fn med(c: &Candidate<'_>) -> u32 {
    c.attrs.med.unwrap_or(0)
}

fn med_order(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    if a.attrs.neighbor_as() == b.attrs.neighbor_as() {
        med(a).cmp(&med(b))
    } else {
        Ordering::Equal
    }
}

/// The outcome of the decision process for one prefix; indices point into
/// the candidates given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The best path.
    pub best: usize,
    /// The ECMP set, the best first.
    pub ecmp: Vec<usize>,
    /// Every other path, with the step that eliminated it.
    pub lost: Vec<(usize, TieBreaker)>,
}

/// Keeps the candidates in `left` whose key is minimal; the others lose at
/// `step`.
fn keep_min<K: Ord>(
    candidates: &[Candidate<'_>],
    left: &mut Vec<usize>,
    lost: &mut Vec<(usize, TieBreaker)>,
    step: TieBreaker,
    key: impl Fn(&Candidate<'_>) -> K,
) {
    let keyed: Vec<(usize, K)> = left
        .iter()
        .filter_map(|i| candidates.get(*i).map(|c| (*i, key(c))))
        .collect();
    let Some(min) = keyed.iter().map(|(_, k)| k).min() else {
        return;
    };
    let mut kept = Vec::new();
    for (i, k) in &keyed {
        if k == min {
            kept.push(*i);
        } else {
            lost.push((*i, step));
        }
    }
    *left = kept;
}

/// Runs the decision process over `candidates` (§9.1.2.2 as an elimination,
/// which keeps the MED rule exact when paths come from several neighbor
/// ASes). `None` when there is no candidate.
pub fn select(candidates: &[Candidate<'_>]) -> Option<Selection> {
    let mut left: Vec<usize> = (0..candidates.len()).collect();
    let mut lost = Vec::new();
    keep_min(
        candidates,
        &mut left,
        &mut lost,
        TieBreaker::LocalPref,
        |c| std::cmp::Reverse(c.attrs.degree_of_preference()),
    );
    keep_min(
        candidates,
        &mut left,
        &mut lost,
        TieBreaker::AsPathLength,
        |c| c.attrs.as_path_len(),
    );
    keep_min(candidates, &mut left, &mut lost, TieBreaker::Origin, |c| {
        c.attrs.origin
    });
    // MED: a path loses if another one from the same neighbor AS has a
    // lower MED.
    let contenders: Vec<&Candidate<'_>> = left.iter().filter_map(|i| candidates.get(*i)).collect();
    left.retain(|i| {
        let Some(c) = candidates.get(*i) else {
            return false;
        };
        let beaten = contenders
            .iter()
            .any(|o| o.attrs.neighbor_as() == c.attrs.neighbor_as() && med(o) < med(c));
        if beaten {
            lost.push((*i, TieBreaker::MultiExitDisc));
        }
        !beaten
    });
    keep_min(
        candidates,
        &mut left,
        &mut lost,
        TieBreaker::EbgpOverIbgp,
        |c| !c.source.external,
    );
    let ecmp_set = left.clone();
    keep_min(
        candidates,
        &mut left,
        &mut lost,
        TieBreaker::RouterId,
        |c| u32::from(c.source.router_id),
    );
    keep_min(
        candidates,
        &mut left,
        &mut lost,
        TieBreaker::PeerAddress,
        |c| c.source.address,
    );
    let best = *left.first()?;
    // Candidates tied after every step (the same peer twice cannot happen)
    // lose at the last one.
    for extra in left.iter().skip(1) {
        lost.push((*extra, TieBreaker::PeerAddress));
    }
    let mut ecmp = vec![best];
    ecmp.extend(ecmp_set.into_iter().filter(|i| *i != best));
    Some(Selection { best, ecmp, lost })
}
