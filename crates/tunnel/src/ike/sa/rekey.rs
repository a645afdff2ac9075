//! CREATE_CHILD_SA (RFC 7296 §1.3): rekeying the child SA (§1.3.3) and the
//! IKE SA (§1.3.2, §2.18), as initiator and as responder of the exchange.
//!
//! Child SA rekey: `N(REKEY_SA, old inbound SPI), SA, Ni, [KEi], TSi, TSr`,
//! with a KE payload when the ESP proposal has DH groups (PFS). The new
//! child's KEYMAT comes from SK_d, the new `g^ir` with PFS, and the nonces
//! of this exchange, whose initiator's traffic takes the first keys
//! (§2.17). The new child is reported with [`Event::ChildRekeyed`] (make
//! before break) and the rekey initiator deletes the old one (§1.4.1).
//!
//! IKE SA rekey: `SA (new 8-octet SPI), Ni, KEi`; the new keys come from
//! the old SK_d (§2.18, [`IkeKeys::rekey`]). The new IKE SA takes the
//! child over and message IDs start at 0; see [`IkeSa::adopt`] for how the
//! object turns into it.
//!
//! Collisions (§2.8.1, §2.8.2, §2.25): when the peer rekeys the same SA
//! while our rekey is in flight, we answer as usual and, once our own
//! exchange is answered, compare the four nonces octet by octet: the SA
//! the exchange with the lowest nonce created is redundant and deleted by
//! whoever initiated that exchange; the initiator of the other exchange
//! deletes the old SA. A request to rekey an SA that is being deleted (or
//! an IKE SA while a child rekey is in flight, and the reverse) gets
//! TEMPORARY_FAILURE; one for an unknown child CHILD_SA_NOT_FOUND; one
//! that would create another child NO_ADDITIONAL_SAS (one child per
//! connection).

use std::time::Instant;

use super::exchange::{
    error_notify, esp_chosen, ike_chosen, ke_group_asked, new_ke, notify_of, offered, random_bytes,
    select_esp, to_wire, Parts, MAX_INIT_RETRIES, NONCE_LEN,
};
use super::{
    random_child_spi, random_spi, Drop, Event, IkeSa, Keys, Phase, Random, RequestKind, Role,
    REKEY_RETRY,
};
use crate::ike::crypto::{ChildKeys, IkeKeys, KeyExchange};
use crate::ike::proposal::{DhGroup, IkeAlgorithms};
use crate::ike::wire::{
    ExchangeType, Header, IkeSpi, KeyExchange as KePayload, Notify, NotifyType, Payload, Proposal,
    ProtocolId, Spi,
};

/// Our rekey of the child SA, from queued to answered.
pub(super) struct ChildRekey {
    /// The child being rekeyed.
    old_spi_in: u32,
    old_spi_out: u32,
    /// The new child's inbound SPI.
    spi_in: u32,
    ni: Vec<u8>,
    /// With PFS.
    ke: Option<KeyExchange>,
    /// INVALID_KE_PAYLOAD retries.
    retries: u32,
    /// The peer rekeyed the same child while ours was in flight: the
    /// lowest nonce of its exchange (§2.8.1).
    collision: Option<Vec<u8>>,
}

/// Our rekey of the IKE SA, from queued to answered.
pub(super) struct IkeRekey {
    /// Our SPI of the new IKE SA.
    spi: IkeSpi,
    ni: Vec<u8>,
    ke: KeyExchange,
    retries: u32,
}

/// The lower of two nonces, compared octet by octet; a nonce that is a
/// prefix of the other is the lower one (§2.8.1).
fn lowest(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a <= b {
        a.to_vec()
    } else {
        b.to_vec()
    }
}

fn in_flight(sa: &IkeSa, kind: RequestKind) -> bool {
    sa.request.as_ref().is_some_and(|r| r.kind == kind)
}

/// The DH group for PFS: the first one of the first ESP proposal that has
/// any (None: no PFS configured).
fn pfs_group(sa: &IkeSa) -> Option<DhGroup> {
    sa.cfg
        .esp_proposals
        .iter()
        .find_map(|p| p.dh.first().copied())
}

/// Starts our rekey of the child SA (soft lifetime, byte limit, or forced).
pub(super) fn start_child_rekey(sa: &mut IkeSa, now: Instant, rng: &mut dyn Random) {
    if sa.child_rekey.is_some() || sa.is_closing() {
        return;
    }
    let Some(child) = &sa.child else {
        return;
    };
    let (old_spi_in, old_spi_out) = (child.spi_in, child.spi_out);
    let ke = match pfs_group(sa) {
        Some(g) => match new_ke(g, rng) {
            Some(ke) => Some(ke),
            None => {
                retry_child_later(sa, now);
                return;
            }
        },
        None => None,
    };
    sa.child_rekey = Some(ChildRekey {
        old_spi_in,
        old_spi_out,
        spi_in: random_child_spi(rng),
        ni: random_bytes(rng, NONCE_LEN),
        ke,
        retries: 0,
        collision: None,
    });
    sa.queue_request(RequestKind::RekeyChild, now);
}

/// The payloads of our child rekey request, when it is its turn to be
/// sent; None (and the rekey dropped) if the child changed meanwhile.
pub(super) fn child_request(sa: &mut IkeSa) -> Option<Vec<Payload>> {
    let current = sa.child.as_ref().map(|c| c.spi_in);
    let (Some(r), Some(child)) = (&sa.child_rekey, &sa.child) else {
        sa.child_rekey = None;
        return None;
    };
    if current != Some(r.old_spi_in) {
        // The peer rekeyed it first.
        sa.child_rekey = None;
        return None;
    }
    let proposals = sa
        .cfg
        .esp_proposals
        .iter()
        .enumerate()
        .map(|(i, p)| Proposal {
            proposal_num: (i + 1) as u8,
            protocol_id: ProtocolId::ESP,
            spi: Spi::Child(r.spi_in),
            transforms: p.transforms(true).iter().map(to_wire).collect(),
        })
        .collect();
    let mut payloads = vec![
        Payload::Notify(Notify::with_spi(
            ProtocolId::ESP,
            Spi::Child(r.old_spi_in),
            NotifyType::REKEY_SA,
            Vec::new(),
        )),
        Payload::Sa(proposals),
        Payload::Nonce(r.ni.clone()),
    ];
    if let Some(ke) = &r.ke {
        payloads.push(Payload::Ke(KePayload {
            dh_group: ke.group().id(),
            data: ke.public().to_vec(),
        }));
    }
    payloads.push(Payload::TsI(child.ts_local.clone()));
    payloads.push(Payload::TsR(child.ts_remote.clone()));
    Some(payloads)
}

/// Starts our rekey of the IKE SA.
pub(super) fn start_ike_rekey(sa: &mut IkeSa, now: Instant, rng: &mut dyn Random) {
    if sa.ike_rekey.is_some() || sa.successor.is_some() || sa.is_closing() {
        return;
    }
    // The group in use if we still offer it, else our first.
    let current = sa.algorithms.map(|a| a.dh);
    let group = current
        .filter(|g| sa.cfg.ike_proposals.iter().any(|p| p.dh.contains(g)))
        .or_else(|| {
            sa.cfg
                .ike_proposals
                .iter()
                .find_map(|p| p.dh.first().copied())
        });
    let Some(ke) = group.and_then(|g| new_ke(g, rng)) else {
        sa.ike_rekey_at = Some(now + REKEY_RETRY);
        return;
    };
    sa.ike_rekey = Some(IkeRekey {
        spi: random_spi(rng),
        ni: random_bytes(rng, NONCE_LEN),
        ke,
        retries: 0,
    });
    sa.queue_request(RequestKind::RekeyIke, now);
}

/// The payloads of our IKE rekey request.
pub(super) fn ike_request(sa: &mut IkeSa) -> Option<Vec<Payload>> {
    let r = sa.ike_rekey.as_ref()?;
    let proposals = sa
        .cfg
        .ike_proposals
        .iter()
        .enumerate()
        .map(|(i, p)| Proposal {
            proposal_num: (i + 1) as u8,
            protocol_id: ProtocolId::IKE,
            spi: Spi::Ike(r.spi),
            transforms: p.transforms().iter().map(to_wire).collect(),
        })
        .collect();
    Some(vec![
        Payload::Sa(proposals),
        Payload::Nonce(r.ni.clone()),
        Payload::Ke(KePayload {
            dh_group: r.ke.group().id(),
            data: r.ke.public().to_vec(),
        }),
    ])
}

/// Answers a CREATE_CHILD_SA request with a single notify.
fn refuse(sa: &mut IkeSa, mid: u32, notify: NotifyType, data: Vec<u8>) -> Result<(), Drop> {
    sa.respond_encrypted(
        ExchangeType::CREATE_CHILD_SA,
        mid,
        &[Payload::Notify(Notify::new(notify, data))],
    )
}

/// A CREATE_CHILD_SA request from the peer.
pub(super) fn handle_request(
    sa: &mut IkeSa,
    header: &Header,
    payloads: &[Payload],
    now: Instant,
    rng: &mut dyn Random,
) -> Result<(), Drop> {
    let mid = header.message_id;
    if sa.retire_deadline.is_some() || sa.is_closing() {
        // Rekeyed or being deleted (§2.25.1, §2.25.2).
        return refuse(sa, mid, NotifyType::TEMPORARY_FAILURE, Vec::new());
    }
    let parts = Parts::of(payloads);
    let rekey_sa = notify_of(payloads, NotifyType::REKEY_SA);
    let for_ike = parts
        .sa
        .first()
        .is_some_and(|p| p.protocol_id == ProtocolId::IKE);
    match rekey_sa {
        None if for_ike => ike_rekey_request(sa, mid, &parts, now, rng),
        // A new child next to ours: one per connection.
        None => refuse(sa, mid, NotifyType::NO_ADDITIONAL_SAS, Vec::new()),
        Some(n) => {
            let spi = match n.spi {
                Spi::Child(spi) if n.protocol_id == ProtocolId::ESP => Some(spi),
                Spi::Child(_) | Spi::Empty | Spi::Ike(_) => None,
            };
            child_rekey_request(sa, mid, spi, &parts, now, rng)
        }
    }
}

/// The peer rekeys the child whose outbound SPI (its inbound) is `spi`.
fn child_rekey_request(
    sa: &mut IkeSa,
    mid: u32,
    spi: Option<u32>,
    parts: &Parts<'_>,
    now: Instant,
    rng: &mut dyn Random,
) -> Result<(), Drop> {
    if in_flight(sa, RequestKind::RekeyIke) || sa.successor.is_some() {
        return refuse(sa, mid, NotifyType::TEMPORARY_FAILURE, Vec::new());
    }
    let Some(spi) = spi else {
        return refuse(sa, mid, NotifyType::CHILD_SA_NOT_FOUND, Vec::new());
    };
    let Some(old) = sa.child.clone().filter(|c| c.spi_out == spi) else {
        let closing = sa.retiring.iter().any(|c| c.spi_out == spi)
            || sa.redundant.iter().any(|(_, out)| *out == spi);
        let notify = if closing {
            NotifyType::TEMPORARY_FAILURE
        } else {
            NotifyType::CHILD_SA_NOT_FOUND
        };
        return refuse(sa, mid, notify, Vec::new());
    };
    let chosen = select_esp(sa, parts.sa, true);
    let Some((proposal_num, spi_out, algs)) = chosen else {
        return refuse(sa, mid, NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
    };
    let Some(ni) = parts.nonce else {
        return refuse(sa, mid, NotifyType::INVALID_SYNTAX, Vec::new());
    };
    if parts.tsi.is_empty() || parts.tsr.is_empty() {
        return refuse(sa, mid, NotifyType::TS_UNACCEPTABLE, Vec::new());
    }
    let mut ke_out = None;
    let shared = match algs.dh {
        Some(g) => {
            let Some(theirs) = parts.ke.filter(|k| k.dh_group == g.id()) else {
                // §1.3: tell the initiator which group to use.
                return refuse(
                    sa,
                    mid,
                    NotifyType::INVALID_KE_PAYLOAD,
                    g.id().to_be_bytes().to_vec(),
                );
            };
            let Some(ke) = new_ke(g, rng) else {
                return refuse(sa, mid, NotifyType::TEMPORARY_FAILURE, Vec::new());
            };
            let Ok(shared) = ke.compute(&theirs.data) else {
                return refuse(sa, mid, NotifyType::INVALID_SYNTAX, Vec::new());
            };
            ke_out = Some(ke);
            Some(shared)
        }
        None => None,
    };
    let Some(keys) = &sa.keys else {
        return Err(Drop::Silently);
    };
    let nr = random_bytes(rng, NONCE_LEN);
    let child_keys = ChildKeys::derive(
        keys.ike.algorithms().prf,
        keys.ike.sk_d(),
        algs.encr,
        algs.integ,
        shared.as_deref().map(|s| s.as_slice()),
        ni,
        &nr,
    )
    .map_err(|e| {
        Drop::Close(super::CloseReason::Protocol(format!(
            "child key derivation: {e}"
        )))
    })?;
    let spi_in = random_child_spi(rng);
    let mut response = vec![
        Payload::Sa(vec![Proposal {
            proposal_num,
            protocol_id: ProtocolId::ESP,
            spi: Spi::Child(spi_in),
            transforms: esp_chosen(&algs),
        }]),
        Payload::Nonce(nr.clone()),
    ];
    if let Some(ke) = &ke_out {
        response.push(Payload::Ke(KePayload {
            dh_group: ke.group().id(),
            data: ke.public().to_vec(),
        }));
    }
    response.push(Payload::TsI(parts.tsi.to_vec()));
    response.push(Payload::TsR(parts.tsr.to_vec()));
    sa.respond_encrypted(ExchangeType::CREATE_CHILD_SA, mid, &response)?;
    let new = sa.child_sa(
        false,
        child_keys,
        spi_in,
        spi_out,
        algs,
        parts.tsr.to_vec(),
        parts.tsi.to_vec(),
    );
    // Our own rekey of this child: in flight, it collides (§2.8.1) and the
    // nonces decide once it is answered; only queued, it is moot.
    if sa
        .child_rekey
        .as_ref()
        .is_some_and(|r| r.old_spi_in == old.spi_in)
    {
        if in_flight(sa, RequestKind::RekeyChild) {
            if let Some(r) = &mut sa.child_rekey {
                r.collision = Some(lowest(ni, &nr));
            }
        } else {
            sa.child_rekey = None;
            sa.queued.retain(|k| *k != RequestKind::RekeyChild);
        }
    }
    // The peer deletes the old child once it has our answer.
    sa.retiring.push(old.clone());
    sa.child = Some(sa.track_child(&new, now, rng));
    sa.event(Event::ChildRekeyed {
        old_spi_in: old.spi_in,
        old_spi_out: old.spi_out,
        new,
        delay_outbound: true,
    });
    Ok(())
}

/// The answer to our child rekey.
pub(super) fn handle_child_response(
    sa: &mut IkeSa,
    payloads: &[Payload],
    now: Instant,
    rng: &mut dyn Random,
) -> Result<(), Drop> {
    let Some(mut r) = sa.child_rekey.take() else {
        return Ok(());
    };
    if let Some(n) = error_notify(payloads) {
        if n.notify_type == NotifyType::INVALID_KE_PAYLOAD {
            let wanted = ke_group_asked(n)
                .and_then(DhGroup::from_wire)
                .filter(|g| sa.cfg.esp_proposals.iter().any(|p| p.dh.contains(g)));
            let current = r.ke.as_ref().map(KeyExchange::group);
            if let Some(g) = wanted.filter(|g| Some(*g) != current) {
                if r.retries < MAX_INIT_RETRIES {
                    if let Some(ke) = new_ke(g, rng) {
                        r.ke = Some(ke);
                        r.retries += 1;
                        r.ni = random_bytes(rng, NONCE_LEN);
                        sa.child_rekey = Some(r);
                        sa.queued.push_front(RequestKind::RekeyChild);
                        return Ok(());
                    }
                }
            }
        }
        child_rekey_failed(sa, &r, now);
        return Ok(());
    }
    let Some(new) = child_from_response(sa, &r, payloads) else {
        child_rekey_failed(sa, &r, now);
        return Ok(());
    };
    let ours = new.spi_in;
    let theirs_won = r
        .collision
        .as_ref()
        .is_some_and(|theirs| lowest(&r.ni, nonce_of(payloads)) < *theirs);
    if theirs_won {
        // Our new child is the redundant one: we delete it. It was never
        // installed; the peer deletes the old one (§2.8.1).
        sa.redundant.push((new.spi_in, new.spi_out));
        sa.queue_request(RequestKind::DeleteChild(ours), now);
        return Ok(());
    }
    // Ours survives. The child in use (the old one, or the one the peer's
    // colliding rekey created, which the peer deletes) retires.
    if let Some(current) = sa.child.take() {
        sa.retiring.push(current);
    }
    sa.child = Some(sa.track_child(&new, now, rng));
    sa.event(Event::ChildRekeyed {
        old_spi_in: r.old_spi_in,
        old_spi_out: r.old_spi_out,
        new,
        delay_outbound: false,
    });
    if sa.retiring.iter().any(|c| c.spi_in == r.old_spi_in) {
        sa.queue_request(RequestKind::DeleteChild(r.old_spi_in), now);
    }
    Ok(())
}

fn nonce_of(payloads: &[Payload]) -> &[u8] {
    Parts::of(payloads).nonce.unwrap_or_default()
}

/// The new child from a successful answer, or None if the answer does not
/// fit what we asked for.
fn child_from_response(sa: &IkeSa, r: &ChildRekey, payloads: &[Payload]) -> Option<super::ChildSa> {
    let parts = Parts::of(payloads);
    let ([chosen], Some(nr)) = (parts.sa, parts.nonce) else {
        return None;
    };
    let Spi::Child(spi_out) = chosen.spi else {
        return None;
    };
    if chosen.protocol_id != ProtocolId::ESP || parts.tsi.is_empty() || parts.tsr.is_empty() {
        return None;
    }
    let algs = sa
        .cfg
        .esp_proposals
        .iter()
        .find_map(|ours| ours.select(&offered(chosen), true))?;
    let shared = match (algs.dh, &r.ke, parts.ke) {
        (Some(g), Some(ke), Some(theirs)) if ke.group() == g && theirs.dh_group == g.id() => {
            Some(ke.compute(&theirs.data).ok()?)
        }
        (None, _, _) => None,
        (Some(_), _, _) => return None,
    };
    let keys = sa.keys.as_ref()?;
    let child_keys = ChildKeys::derive(
        keys.ike.algorithms().prf,
        keys.ike.sk_d(),
        algs.encr,
        algs.integ,
        shared.as_deref().map(|s| s.as_slice()),
        &r.ni,
        nr,
    )
    .ok()?;
    Some(sa.child_sa(
        true,
        child_keys,
        r.spi_in,
        spi_out,
        algs,
        parts.tsi.to_vec(),
        parts.tsr.to_vec(),
    ))
}

/// Our child rekey was refused or answered with nonsense: try again later
/// (until the hard lifetime), unless the peer's rekey replaced the child.
fn child_rekey_failed(sa: &mut IkeSa, r: &ChildRekey, now: Instant) {
    if sa.child.as_ref().is_some_and(|c| c.spi_in == r.old_spi_in) {
        retry_child_later(sa, now);
    }
}

fn retry_child_later(sa: &mut IkeSa, now: Instant) {
    if let Some(c) = &mut sa.child {
        c.rekey_at = Some((now + REKEY_RETRY).min(c.expire_at));
    }
}

/// The peer rekeys the IKE SA.
fn ike_rekey_request(
    sa: &mut IkeSa,
    mid: u32,
    parts: &Parts<'_>,
    now: Instant,
    rng: &mut dyn Random,
) -> Result<(), Drop> {
    // Busy with a child (§2.25.2), or already answered a rekey.
    let child_busy = sa.request.as_ref().is_some_and(|r| {
        matches!(
            r.kind,
            RequestKind::RekeyChild | RequestKind::DeleteChild(_)
        )
    });
    if child_busy || sa.successor.is_some() {
        return refuse(sa, mid, NotifyType::TEMPORARY_FAILURE, Vec::new());
    }
    let chosen = sa.cfg.ike_proposals.iter().find_map(|ours| {
        parts
            .sa
            .iter()
            .filter(|p| p.protocol_id == ProtocolId::IKE)
            .find_map(|p| match p.spi {
                Spi::Ike(spi) if !spi.is_zero() => ours
                    .select(&offered(p))
                    .map(|algs| (p.proposal_num, spi, algs)),
                Spi::Ike(_) | Spi::Empty | Spi::Child(_) => None,
            })
    });
    let Some((proposal_num, peer_spi, algs)) = chosen else {
        return refuse(sa, mid, NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
    };
    let (Some(ni), Some(theirs)) = (parts.nonce, parts.ke) else {
        return refuse(sa, mid, NotifyType::INVALID_SYNTAX, Vec::new());
    };
    if theirs.dh_group != algs.dh.id() {
        return refuse(
            sa,
            mid,
            NotifyType::INVALID_KE_PAYLOAD,
            algs.dh.id().to_be_bytes().to_vec(),
        );
    }
    let Some(ke) = new_ke(algs.dh, rng) else {
        return refuse(sa, mid, NotifyType::TEMPORARY_FAILURE, Vec::new());
    };
    let Ok(shared) = ke.compute(&theirs.data) else {
        return refuse(sa, mid, NotifyType::INVALID_SYNTAX, Vec::new());
    };
    let Some(keys) = &sa.keys else {
        return Err(Drop::Silently);
    };
    let nr = random_bytes(rng, NONCE_LEN);
    let spi = random_spi(rng);
    let Ok(new_keys) = keys.ike.rekey(&algs, &shared, ni, &nr, &peer_spi.0, &spi.0) else {
        return refuse(sa, mid, NotifyType::TEMPORARY_FAILURE, Vec::new());
    };
    let response = [
        Payload::Sa(vec![Proposal {
            proposal_num,
            protocol_id: ProtocolId::IKE,
            spi: Spi::Ike(spi),
            transforms: ike_chosen(&algs),
        }]),
        Payload::Nonce(nr.clone()),
        Payload::Ke(KePayload {
            dh_group: algs.dh.id(),
            data: ke.public().to_vec(),
        }),
    ];
    let Some(new) = successor(sa, Role::Responder, peer_spi, spi, new_keys, algs, now) else {
        return refuse(sa, mid, NotifyType::TEMPORARY_FAILURE, Vec::new());
    };
    sa.respond_encrypted(ExchangeType::CREATE_CHILD_SA, mid, &response)?;
    if in_flight(sa, RequestKind::RekeyIke) {
        // Both rekey (§2.8.2): decide once ours is answered.
        sa.successor = Some((Box::new(new), lowest(ni, &nr)));
    } else {
        sa.ike_rekey = None;
        sa.queued.retain(|k| *k != RequestKind::RekeyIke);
        // The peer deletes the old SA once it has our answer.
        sa.adopt(new, false, now, rng);
    }
    Ok(())
}

/// The IKE SA a rekey creates: established, message IDs from 0, the
/// exchange's initiator as its original initiator (§2.18).
fn successor(
    sa: &IkeSa,
    role: Role,
    spi_i: IkeSpi,
    spi_r: IkeSpi,
    ike: IkeKeys,
    algs: IkeAlgorithms,
    now: Instant,
) -> Option<IkeSa> {
    let (sk_in, sk_out) = match role {
        Role::Initiator => (ike.sk_cipher(false).ok()?, ike.sk_cipher(true).ok()?),
        Role::Responder => (ike.sk_cipher(true).ok()?, ike.sk_cipher(false).ok()?),
    };
    let mut new = IkeSa::new(sa.cfg.clone(), role, spi_i, spi_r, sa.local, sa.remote, now);
    new.phase = Phase::Established;
    new.nat = sa.nat;
    new.keys = Some(Keys { ike, sk_in, sk_out });
    new.algorithms = Some(algs);
    new.established_at = Some(now);
    Some(new)
}

/// The answer to our IKE rekey.
pub(super) fn handle_ike_response(
    sa: &mut IkeSa,
    payloads: &[Payload],
    now: Instant,
    rng: &mut dyn Random,
) -> Result<(), Drop> {
    let Some(mut r) = sa.ike_rekey.take() else {
        return Ok(());
    };
    if let Some(n) = error_notify(payloads) {
        if n.notify_type == NotifyType::INVALID_KE_PAYLOAD {
            let wanted = ke_group_asked(n)
                .and_then(DhGroup::from_wire)
                .filter(|g| sa.cfg.ike_proposals.iter().any(|p| p.dh.contains(g)));
            if let Some(g) = wanted.filter(|g| *g != r.ke.group()) {
                if r.retries < MAX_INIT_RETRIES {
                    if let Some(ke) = new_ke(g, rng) {
                        r.ke = ke;
                        r.retries += 1;
                        r.ni = random_bytes(rng, NONCE_LEN);
                        sa.ike_rekey = Some(r);
                        sa.queued.push_front(RequestKind::RekeyIke);
                        return Ok(());
                    }
                }
            }
        }
        ike_rekey_failed(sa, now, rng);
        return Ok(());
    }
    let Some((mine, nr)) = ike_sa_from_response(sa, &r, payloads, now) else {
        ike_rekey_failed(sa, now, rng);
        return Ok(());
    };
    match sa.successor.take() {
        Some((theirs, their_lowest)) if lowest(&r.ni, &nr) < their_lowest => {
            // Ours is redundant (§2.8.2): we delete it; the peer deletes
            // the old SA.
            sa.adopt(*theirs, false, now, rng);
            let mut mine = mine;
            mine.retire(now);
            mine.queue_request(RequestKind::DeleteIke, now);
            mine.sync_sent(now);
            sa.retired.push(mine);
        }
        Some((theirs, _)) => {
            // Ours survives; the peer deletes the one its rekey created.
            sa.adopt(mine, true, now, rng);
            let mut theirs = *theirs;
            theirs.retire(now);
            sa.retired.push(theirs);
        }
        None => sa.adopt(mine, true, now, rng),
    }
    Ok(())
}

/// The new IKE SA from a successful answer, with the responder's nonce.
fn ike_sa_from_response(
    sa: &IkeSa,
    r: &IkeRekey,
    payloads: &[Payload],
    now: Instant,
) -> Option<(IkeSa, Vec<u8>)> {
    let parts = Parts::of(payloads);
    let ([chosen], Some(nr), Some(theirs)) = (parts.sa, parts.nonce, parts.ke) else {
        return None;
    };
    let Spi::Ike(peer_spi) = chosen.spi else {
        return None;
    };
    if chosen.protocol_id != ProtocolId::IKE || peer_spi.is_zero() {
        return None;
    }
    let algs = sa
        .cfg
        .ike_proposals
        .iter()
        .find_map(|ours| ours.select(&offered(chosen)))?;
    if algs.dh != r.ke.group() || theirs.dh_group != algs.dh.id() {
        return None;
    }
    let shared = r.ke.compute(&theirs.data).ok()?;
    let keys = sa.keys.as_ref()?;
    let new_keys = keys
        .ike
        .rekey(&algs, &shared, &r.ni, nr, &r.spi.0, &peer_spi.0)
        .ok()?;
    let new = successor(sa, Role::Initiator, r.spi, peer_spi, new_keys, algs, now)?;
    Some((new, nr.to_vec()))
}

/// Our IKE rekey was refused: if the peer's colliding rekey created an SA,
/// that one lives on (the peer deletes the old); otherwise try again later.
fn ike_rekey_failed(sa: &mut IkeSa, now: Instant, rng: &mut dyn Random) {
    if let Some((theirs, _)) = sa.successor.take() {
        sa.adopt(*theirs, false, now, rng);
    } else {
        let retry = now + REKEY_RETRY;
        sa.ike_rekey_at = Some(sa.ike_expire_at.map_or(retry, |e| retry.min(e)));
    }
}
