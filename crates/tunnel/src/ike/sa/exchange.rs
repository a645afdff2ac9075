//! The exchanges of an IKE SA: building requests and processing messages
//! for IKE_SA_INIT (§1.2), IKE_AUTH (§1.2, §2.15) and INFORMATIONAL (§1.4).
//! CREATE_CHILD_SA is in [`super::rekey`].

use std::net::SocketAddr;
use std::time::Instant;

use ring::digest;

use super::{
    describe_id, random_child_spi, CloseReason, Drop, Event, IkeSa, Keys, Phase, RequestKind, Setup,
};
use crate::ike::crypto::{psk_auth, secret_len, verify_psk_auth, ChildKeys, IkeKeys, KeyExchange};
use crate::ike::proposal::{
    describe, transform_type, DhGroup, EspAlgorithms, IkeAlgorithms, WireTransform,
};
use crate::ike::wire::{
    AuthMethod, Authentication, Delete, ExchangeType, Flags, Header, Identification,
    KeyExchange as KePayload, Message, Notify, NotifyType, Payload, Proposal, ProtocolId, Spi,
    TrafficSelector, Transform,
};

use super::Random;

/// Nonce length we send: 32 bytes, at least half the PRF key size (§2.10).
pub(super) const NONCE_LEN: usize = 32;

/// How many INVALID_KE_PAYLOAD or COOKIE round trips we accept in setup.
pub(super) const MAX_INIT_RETRIES: u32 = 3;

pub(super) fn to_wire(t: &WireTransform) -> Transform {
    match t.key_bits {
        Some(bits) => Transform::with_key_len(t.kind, t.id, bits),
        None => Transform::new(t.kind, t.id),
    }
}

fn from_wire(t: &Transform) -> WireTransform {
    WireTransform {
        kind: t.transform_type,
        id: t.transform_id,
        key_bits: t.key_length,
    }
}

pub(super) fn offered(p: &Proposal) -> Vec<WireTransform> {
    p.transforms.iter().map(from_wire).collect()
}

/// The transforms of a chosen IKE proposal, one per type.
pub(super) fn ike_chosen(algs: &IkeAlgorithms) -> Vec<Transform> {
    let mut t = vec![
        Transform::with_key_len(transform_type::ENCR, algs.encr.id(), algs.encr.key_bits()),
        Transform::new(transform_type::PRF, algs.prf.id()),
    ];
    if let Some(integ) = algs.integ {
        t.push(Transform::new(transform_type::INTEG, integ.id()));
    }
    t.push(Transform::new(transform_type::DH, algs.dh.id()));
    t
}

/// The transforms of a chosen ESP proposal, one per type.
pub(super) fn esp_chosen(algs: &EspAlgorithms) -> Vec<Transform> {
    let mut t = vec![Transform::with_key_len(
        transform_type::ENCR,
        algs.encr.id(),
        algs.encr.key_bits(),
    )];
    if let Some(integ) = algs.integ {
        t.push(Transform::new(transform_type::INTEG, integ.id()));
    }
    if let Some(dh) = algs.dh {
        t.push(Transform::new(transform_type::DH, dh.id()));
    }
    t.push(Transform::new(transform_type::ESN, algs.esn.id()));
    t
}

fn describe_ours_ike(sa: &IkeSa) -> String {
    sa.cfg
        .ike_proposals
        .iter()
        .map(|p| describe(&p.transforms()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_ours_esp(sa: &IkeSa) -> String {
    sa.cfg
        .esp_proposals
        .iter()
        .map(|p| describe(&p.transforms(false)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn describe_theirs(proposals: &[Proposal]) -> String {
    proposals
        .iter()
        .map(|p| describe(&offered(p)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn random_bytes(rng: &mut dyn Random, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

/// A DH private value for `group`; retried in the (rare) case the random
/// bytes are not a valid scalar.
pub(super) fn new_ke(group: DhGroup, rng: &mut dyn Random) -> Option<KeyExchange> {
    (0..8).find_map(|_| {
        let secret = zeroize::Zeroizing::new(random_bytes(rng, secret_len(group)));
        KeyExchange::new(group, &secret).ok()
    })
}

/// NAT_DETECTION_*_IP data: SHA-1(SPIi | SPIr | IP | port) (§2.23), over
/// the SPIs in the header of the message that carries the notify: SPIr is
/// zero in the initiator's IKE_SA_INIT request, set in the response.
fn nat_hash(header: &Header, addr: SocketAddr) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&header.spi_i.0);
    ctx.update(&header.spi_r.0);
    match addr.ip() {
        std::net::IpAddr::V4(a) => ctx.update(&a.octets()),
        std::net::IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// Our two NAT detection notifies. With `force_encap` the source hash is
/// deliberately wrong, so both ends see a NAT and use UDP encapsulation.
fn nat_notifies(sa: &IkeSa, header: &Header, rng: &mut dyn Random) -> [Payload; 2] {
    let source = if sa.cfg.force_encap {
        random_bytes(rng, 20)
    } else {
        nat_hash(header, sa.local)
    };
    [
        Payload::Notify(Notify::new(NotifyType::NAT_DETECTION_SOURCE_IP, source)),
        Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            nat_hash(header, sa.remote),
        )),
    ]
}

/// Whether the peer's NAT detection notifies show a NAT between us (or it
/// claims one, as a forced-encapsulation peer does). `header` is the
/// header of the message the notifies came in (the peer hashed its SPIs),
/// `from` the address it came from.
fn nat_detected(sa: &IkeSa, header: &Header, payloads: &[Payload], from: SocketAddr) -> bool {
    let sources: Vec<&[u8]> = notifies(payloads)
        .filter(|n| n.notify_type == NotifyType::NAT_DETECTION_SOURCE_IP)
        .map(|n| n.data.as_slice())
        .collect();
    let destination =
        notify_of(payloads, NotifyType::NAT_DETECTION_DESTINATION_IP).map(|n| n.data.as_slice());
    let peer_behind_nat =
        !sources.is_empty() && !sources.contains(&nat_hash(header, from).as_slice());
    let we_behind_nat = destination.is_some_and(|d| d != nat_hash(header, sa.local).as_slice());
    sa.cfg.force_encap || peer_behind_nat || we_behind_nat
}

pub(super) fn notifies(payloads: &[Payload]) -> impl Iterator<Item = &Notify> {
    payloads.iter().filter_map(|p| {
        if let Payload::Notify(n) = p {
            Some(n)
        } else {
            None
        }
    })
}

pub(super) fn notify_of(payloads: &[Payload], t: NotifyType) -> Option<&Notify> {
    notifies(payloads).find(|n| n.notify_type == t)
}

/// The parts of a message the initial exchanges use, found by type.
#[derive(Default)]
pub(super) struct Parts<'a> {
    pub(super) sa: &'a [Proposal],
    pub(super) ke: Option<&'a KePayload>,
    pub(super) nonce: Option<&'a [u8]>,
    idi: Option<&'a Identification>,
    idr: Option<&'a Identification>,
    auth: Option<&'a Authentication>,
    pub(super) tsi: &'a [TrafficSelector],
    pub(super) tsr: &'a [TrafficSelector],
}

impl<'a> Parts<'a> {
    pub(super) fn of(payloads: &'a [Payload]) -> Parts<'a> {
        let mut parts = Parts::default();
        for p in payloads {
            if let Payload::Sa(list) = p {
                parts.sa = list;
            } else if let Payload::Ke(ke) = p {
                parts.ke = Some(ke);
            } else if let Payload::Nonce(n) = p {
                parts.nonce = Some(n);
            } else if let Payload::IdI(id) = p {
                parts.idi = Some(id);
            } else if let Payload::IdR(id) = p {
                parts.idr = Some(id);
            } else if let Payload::Auth(a) = p {
                parts.auth = Some(a);
            } else if let Payload::TsI(ts) = p {
                parts.tsi = ts;
            } else if let Payload::TsR(ts) = p {
                parts.tsr = ts;
            }
        }
        parts
    }
}

/// The first error notify in a response, if any.
/// The group number an INVALID_KE_PAYLOAD notify asks for (§2.7).
pub(super) fn ke_group_asked(n: &Notify) -> Option<u16> {
    n.data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// Our first ESP proposal (in our order) that one of the peer's offers
/// matches: the proposal number, the peer's SPI and the algorithms. `pfs`
/// as in [`EspProposal::select`](crate::ike::proposal::EspProposal::select).
pub(super) fn select_esp(
    sa: &IkeSa,
    proposals: &[Proposal],
    pfs: bool,
) -> Option<(u8, u32, EspAlgorithms)> {
    sa.cfg.esp_proposals.iter().find_map(|ours| {
        proposals
            .iter()
            .filter(|p| p.protocol_id == ProtocolId::ESP)
            .find_map(|p| match p.spi {
                Spi::Child(spi_out) => ours
                    .select(&offered(p), pfs)
                    .map(|algs| (p.proposal_num, spi_out, algs)),
                Spi::Empty | Spi::Ike(_) => None,
            })
    })
}

pub(super) fn error_notify(payloads: &[Payload]) -> Option<&Notify> {
    notifies(payloads).find(|n| n.notify_type.is_error())
}

pub(super) fn notify_name(t: NotifyType) -> String {
    t.name()
        .map_or_else(|| format!("notify {}", t.0), str::to_string)
}

/// Builds and sends (or resends, after COOKIE / INVALID_KE_PAYLOAD) the
/// IKE_SA_INIT request.
pub(super) fn send_init_request(
    sa: &mut IkeSa,
    now: Instant,
    rng: &mut dyn Random,
    group: Option<DhGroup>,
) {
    let Some(first) = sa.cfg.ike_proposals.first() else {
        sa.close_with(CloseReason::Protocol("no IKE proposal configured".into()));
        return;
    };
    let Some(group) = group.or_else(|| first.dh.first().copied()) else {
        sa.close_with(CloseReason::Protocol("no DH group configured".into()));
        return;
    };
    let ke = match sa.setup.as_mut().and_then(|s| s.ke.take()) {
        Some(ke) if ke.group() == group => ke,
        Some(_) | None => match new_ke(group, rng) {
            Some(ke) => ke,
            None => {
                sa.close_with(CloseReason::Protocol(format!(
                    "cannot create a {group:?} key"
                )));
                return;
            }
        },
    };
    let ni = match &sa.setup {
        Some(s) => s.ni.clone(),
        None => random_bytes(rng, NONCE_LEN),
    };
    let cookie = sa.setup.as_ref().and_then(|s| s.cookie.clone());
    let header = Header {
        spi_i: sa.spi_i,
        spi_r: super::IkeSpi::ZERO,
        exchange_type: ExchangeType::IKE_SA_INIT,
        flags: Flags::INITIATOR,
        message_id: 0,
    };
    let mut payloads = Vec::new();
    if let Some(cookie) = &cookie {
        payloads.push(Payload::Notify(Notify::new(
            NotifyType::COOKIE,
            cookie.clone(),
        )));
    }
    let proposals = sa
        .cfg
        .ike_proposals
        .iter()
        .enumerate()
        .map(|(i, p)| Proposal {
            proposal_num: (i + 1) as u8,
            protocol_id: ProtocolId::IKE,
            spi: Spi::Empty,
            transforms: p.transforms().iter().map(to_wire).collect(),
        })
        .collect();
    payloads.push(Payload::Sa(proposals));
    payloads.push(Payload::Ke(KePayload {
        dh_group: group.id(),
        data: ke.public().to_vec(),
    }));
    payloads.push(Payload::Nonce(ni.clone()));
    payloads.extend(nat_notifies(sa, &header, rng));
    let data = match (Message { header, payloads }).encode() {
        Ok(data) => data,
        Err(e) => {
            sa.close_with(CloseReason::Protocol(format!(
                "cannot encode IKE_SA_INIT: {e}"
            )));
            return;
        }
    };
    sa.setup = Some(Setup {
        ke: Some(ke),
        ni,
        nr: Vec::new(),
        init_request: data.clone(),
        init_response: Vec::new(),
        cookie,
        child_spi_in: 0,
    });
    sa.next_message_id = 1;
    sa.start_request(RequestKind::Init, 0, data, now);
}

/// Responder: an IKE_SA_INIT request for a new SA.
pub(super) fn handle_init_request(
    sa: &mut IkeSa,
    datagram: &[u8],
    now: Instant,
    rng: &mut dyn Random,
) -> Result<(), Drop> {
    let message = Message::decode(datagram).map_err(|_| Drop::Silently)?;
    let h = &message.header;
    if h.flags.response() || !h.flags.initiator() || h.message_id != 0 || !h.spi_r.is_zero() {
        return Err(Drop::Silently);
    }
    let parts = Parts::of(&message.payloads);
    let proposals = parts.sa;
    let (Some(ke_payload), Some(ni)) = (parts.ke, parts.nonce.map(<[u8]>::to_vec)) else {
        send_unencrypted_error(sa, h, NotifyType::INVALID_SYNTAX, Vec::new());
        return Err(Drop::Close(CloseReason::Protocol(
            "IKE_SA_INIT without KE or nonce".into(),
        )));
    };
    // Our preference order first, then the peer's.
    let chosen = sa.cfg.ike_proposals.iter().find_map(|ours| {
        proposals
            .iter()
            .filter(|p| p.protocol_id == ProtocolId::IKE)
            .find_map(|p| ours.select(&offered(p)).map(|algs| (p.proposal_num, algs)))
    });
    let Some((proposal_num, algs)) = chosen else {
        send_unencrypted_error(sa, h, NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
        return Err(Drop::Close(CloseReason::NoProposalChosen {
            sa: "IKE",
            ours: describe_ours_ike(sa),
            theirs: describe_theirs(proposals),
            by_peer: false,
        }));
    };
    if ke_payload.dh_group != algs.dh.id() {
        // §2.7: tell the initiator which group to use; keep no state.
        send_unencrypted_error(
            sa,
            h,
            NotifyType::INVALID_KE_PAYLOAD,
            algs.dh.id().to_be_bytes().to_vec(),
        );
        sa.phase = Phase::Closed;
        return Ok(());
    }
    let ke = new_ke(algs.dh, rng).ok_or(Drop::Silently)?;
    let Ok(shared) = ke.compute(&ke_payload.data) else {
        send_unencrypted_error(sa, h, NotifyType::INVALID_SYNTAX, Vec::new());
        return Err(Drop::Close(CloseReason::Protocol(
            "invalid KE public value".into(),
        )));
    };
    let nr = random_bytes(rng, NONCE_LEN);
    let header = Header {
        spi_i: sa.spi_i,
        spi_r: sa.spi_r,
        exchange_type: ExchangeType::IKE_SA_INIT,
        flags: Flags::RESPONSE,
        message_id: 0,
    };
    // The initiator hashed the SPIs of its request (SPIr zero), not ours.
    let nat = nat_detected(sa, &message.header, &message.payloads, sa.remote);
    let mut payloads = vec![
        Payload::Sa(vec![Proposal {
            proposal_num,
            protocol_id: ProtocolId::IKE,
            spi: Spi::Empty,
            transforms: ike_chosen(&algs),
        }]),
        Payload::Ke(KePayload {
            dh_group: algs.dh.id(),
            data: ke.public().to_vec(),
        }),
        Payload::Nonce(nr.clone()),
    ];
    payloads.extend(nat_notifies(sa, &header, rng));
    let response = Message { header, payloads }
        .encode()
        .map_err(|e| Drop::Close(CloseReason::Protocol(format!("cannot encode: {e}"))))?;
    install_ike_keys(sa, &algs, &shared, &ni, &nr)?;
    sa.setup = Some(Setup {
        ke: None,
        ni,
        nr,
        init_request: datagram.to_vec(),
        init_response: response.clone(),
        cookie: None,
        child_spi_in: 0,
    });
    // The response leaves from where the request came in; with a NAT the
    // initiator moves to port 4500 next, and so do we.
    sa.transmit(response.clone());
    if nat {
        sa.nat = true;
        sa.local.set_port(super::NATT_PORT);
    }
    sa.last_response = Some((0, response));
    sa.peer_message_id = 1;
    sa.last_heard = now;
    Ok(())
}

fn install_ike_keys(
    sa: &mut IkeSa,
    algs: &IkeAlgorithms,
    shared: &[u8],
    ni: &[u8],
    nr: &[u8],
) -> Result<(), Drop> {
    let fail = |e: crate::ike::crypto::CryptoError| {
        Drop::Close(CloseReason::Protocol(format!("key derivation: {e}")))
    };
    let ike = IkeKeys::derive(algs, shared, ni, nr, &sa.spi_i.0, &sa.spi_r.0).map_err(fail)?;
    let (sk_in, sk_out) = match sa.role {
        super::Role::Initiator => (
            ike.sk_cipher(false).map_err(fail)?,
            ike.sk_cipher(true).map_err(fail)?,
        ),
        super::Role::Responder => (
            ike.sk_cipher(true).map_err(fail)?,
            ike.sk_cipher(false).map_err(fail)?,
        ),
    };
    sa.keys = Some(Keys { ike, sk_in, sk_out });
    sa.algorithms = Some(*algs);
    Ok(())
}

/// An unencrypted IKE_SA_INIT error response (no SA state is kept).
fn send_unencrypted_error(sa: &mut IkeSa, request: &Header, notify: NotifyType, data: Vec<u8>) {
    let header = Header {
        spi_i: request.spi_i,
        spi_r: super::IkeSpi::ZERO,
        exchange_type: ExchangeType::IKE_SA_INIT,
        flags: Flags::RESPONSE,
        message_id: 0,
    };
    let message = Message {
        header,
        payloads: vec![Payload::Notify(Notify::new(notify, data))],
    };
    if let Ok(data) = message.encode() {
        sa.transmit(data);
    }
}

/// Initiator: the IKE_SA_INIT response.
pub(super) fn handle_init_response(
    sa: &mut IkeSa,
    header: &Header,
    datagram: &[u8],
    now: Instant,
    rng: &mut dyn Random,
) -> Result<(), Drop> {
    let message = Message::decode(datagram).map_err(|_| Drop::Silently)?;
    let retries = sa.request.as_ref().map_or(0, |r| r.retries);
    if let Some(cookie) = notify_of(&message.payloads, NotifyType::COOKIE) {
        // §2.6: resend the request with the cookie, same SPI, nonce and KE.
        if retries > MAX_INIT_RETRIES {
            return Err(Drop::Close(CloseReason::Protocol(
                "too many COOKIE challenges".into(),
            )));
        }
        if let Some(setup) = &mut sa.setup {
            setup.cookie = Some(cookie.data.clone());
        }
        sa.request = None;
        send_init_request(
            sa,
            now,
            rng,
            sa.setup
                .as_ref()
                .and_then(|s| s.ke.as_ref())
                .map(KeyExchange::group),
        );
        bump_retries(sa, retries + 1);
        return Ok(());
    }
    if let Some(n) = notify_of(&message.payloads, NotifyType::INVALID_KE_PAYLOAD) {
        // §2.7: retry with the group the responder asks for, if we offer it.
        let wanted = ke_group_asked(n);
        let group = wanted
            .and_then(DhGroup::from_wire)
            .filter(|g| sa.cfg.ike_proposals.iter().any(|p| p.dh.contains(g)));
        let current = sa
            .setup
            .as_ref()
            .and_then(|s| s.ke.as_ref())
            .map(KeyExchange::group);
        return match group {
            Some(g) if Some(g) != current && retries <= MAX_INIT_RETRIES => {
                sa.request = None;
                send_init_request(sa, now, rng, Some(g));
                bump_retries(sa, retries + 1);
                Ok(())
            }
            Some(_) | None => Err(Drop::Close(CloseReason::NoProposalChosen {
                sa: "IKE",
                ours: describe_ours_ike(sa),
                theirs: format!(
                    "DH group {}",
                    wanted.map_or_else(|| "?".to_string(), |g| g.to_string())
                ),
                by_peer: true,
            })),
        };
    }
    if let Some(n) = error_notify(&message.payloads) {
        let reason = if n.notify_type == NotifyType::NO_PROPOSAL_CHOSEN {
            CloseReason::NoProposalChosen {
                sa: "IKE",
                ours: describe_ours_ike(sa),
                theirs: String::new(),
                by_peer: true,
            }
        } else {
            CloseReason::Refused {
                notify: notify_name(n.notify_type),
            }
        };
        return Err(Drop::Close(reason));
    }
    if header.spi_r.is_zero() {
        return Err(Drop::Silently);
    }
    let parts = Parts::of(&message.payloads);
    let (Some(ke_payload), Some(nr), [chosen]) =
        (parts.ke, parts.nonce.map(<[u8]>::to_vec), parts.sa)
    else {
        return Err(Drop::Close(CloseReason::Protocol(
            "IKE_SA_INIT response without exactly one proposal, KE and nonce".into(),
        )));
    };
    let algs = sa
        .cfg
        .ike_proposals
        .iter()
        .find_map(|ours| ours.select(&offered(chosen)))
        .ok_or_else(|| {
            Drop::Close(CloseReason::Protocol(format!(
                "the responder chose a proposal we did not offer: {}",
                describe(&offered(chosen))
            )))
        })?;
    let setup = sa.setup.as_mut().ok_or(Drop::Silently)?;
    let ke = setup.ke.take().ok_or(Drop::Silently)?;
    if ke_payload.dh_group != algs.dh.id() || ke.group() != algs.dh {
        return Err(Drop::Close(CloseReason::Protocol(
            "KE group differs from the chosen proposal".into(),
        )));
    }
    let shared = ke.compute(&ke_payload.data).map_err(|e| {
        Drop::Close(CloseReason::Protocol(format!(
            "invalid KE from the responder: {e}"
        )))
    })?;
    setup.nr = nr.clone();
    setup.init_response = datagram.to_vec();
    let ni = setup.ni.clone();
    sa.spi_r = header.spi_r;
    // The responder hashed the SPIs of its response: both of them.
    let nat = nat_detected(sa, &message.header, &message.payloads, sa.remote);
    install_ike_keys(sa, &algs, &shared, &ni, &nr)?;
    sa.request = None;
    sa.last_heard = now;
    if nat {
        sa.float_to_natt();
    }
    send_auth_request(sa, now, rng)
}

fn bump_retries(sa: &mut IkeSa, retries: u32) {
    if let Some(r) = &mut sa.request {
        r.retries = retries;
    }
}

/// Initiator: IKE_AUTH with IDi, AUTH, the child SA proposal and 0/0 selectors.
fn send_auth_request(sa: &mut IkeSa, now: Instant, rng: &mut dyn Random) -> Result<(), Drop> {
    let child_spi_in = random_child_spi(rng);
    let (keys, setup) = match (&sa.keys, &mut sa.setup) {
        (Some(k), Some(s)) => (k, s),
        _ => return Err(Drop::Silently),
    };
    setup.child_spi_in = child_spi_in;
    let prf = keys.ike.algorithms().prf;
    let id = sa.cfg.local_id.clone();
    let auth = psk_auth(
        prf,
        &sa.cfg.psk,
        &setup.init_request,
        &setup.nr,
        keys.ike.sk_pi(),
        &id.body(),
    );
    let proposals = sa
        .cfg
        .esp_proposals
        .iter()
        .enumerate()
        .map(|(i, p)| Proposal {
            proposal_num: (i + 1) as u8,
            protocol_id: ProtocolId::ESP,
            spi: Spi::Child(child_spi_in),
            transforms: p.transforms(false).iter().map(to_wire).collect(),
        })
        .collect();
    let payloads = vec![
        Payload::IdI(id),
        Payload::Auth(Authentication {
            auth_method: AuthMethod::SHARED_KEY_MIC,
            data: auth.to_vec(),
        }),
        Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, Vec::new())),
        Payload::Sa(proposals),
        // Route-based, dual-stack: everything of both families; a peer
        // that carries IPv4 only narrows to 0.0.0.0/0 (RFC 7296 §2.9).
        Payload::TsI(vec![
            TrafficSelector::ipv4_any(),
            TrafficSelector::ipv6_any(),
        ]),
        Payload::TsR(vec![
            TrafficSelector::ipv4_any(),
            TrafficSelector::ipv6_any(),
        ]),
    ];
    sa.phase = Phase::AuthSent;
    sa.send_encrypted_request(RequestKind::Auth, ExchangeType::IKE_AUTH, payloads, now);
    Ok(())
}

/// Whether the peer's PSK AUTH verifies (§2.15). The peer signs its own
/// IKE_SA_INIT message with our nonce and its SK_p: the initiator's are
/// the request, Nr and SK_pi; the responder's the response, Ni and SK_pr.
fn peer_auth_verifies(
    sa: &IkeSa,
    keys: &Keys,
    setup: &Setup,
    id: &Identification,
    auth: &Authentication,
) -> bool {
    let (message, nonce, sk_p) = match sa.role {
        super::Role::Responder => (&setup.init_request, &setup.nr, keys.ike.sk_pi()),
        super::Role::Initiator => (&setup.init_response, &setup.ni, keys.ike.sk_pr()),
    };
    auth.auth_method == AuthMethod::SHARED_KEY_MIC
        && verify_psk_auth(
            keys.ike.algorithms().prf,
            &sa.cfg.psk,
            message,
            nonce,
            sk_p,
            &id.body(),
            &auth.data,
        )
        .is_ok()
}

fn same_id(a: &Identification, b: &Identification) -> bool {
    a.id_type == b.id_type && a.data == b.data
}

/// Responder: IKE_AUTH request.
pub(super) fn handle_auth_request(
    sa: &mut IkeSa,
    header: &Header,
    payloads: &[Payload],
    now: Instant,
    rng: &mut dyn Random,
) -> Result<(), Drop> {
    let Parts {
        idi,
        auth,
        sa: proposals,
        tsi,
        tsr,
        ..
    } = Parts::of(payloads);
    let mid = header.message_id;
    let (Some(idi), Some(auth)) = (idi, auth) else {
        sa.respond_encrypted(
            ExchangeType::IKE_AUTH,
            mid,
            &[Payload::Notify(Notify::new(
                NotifyType::INVALID_SYNTAX,
                Vec::new(),
            ))],
        )?;
        return Err(Drop::Close(CloseReason::Protocol(
            "IKE_AUTH without IDi or AUTH".into(),
        )));
    };
    let refuse = |sa: &mut IkeSa, reason: CloseReason| -> Result<(), Drop> {
        sa.respond_encrypted(
            ExchangeType::IKE_AUTH,
            mid,
            &[Payload::Notify(Notify::new(
                NotifyType::AUTHENTICATION_FAILED,
                Vec::new(),
            ))],
        )?;
        Err(Drop::Close(reason))
    };
    if !same_id(idi, &sa.cfg.remote_id) {
        return refuse(
            sa,
            CloseReason::IdentityMismatch {
                presented: describe_id(idi),
            },
        );
    }
    let (keys, setup) = match (&sa.keys, &sa.setup) {
        (Some(k), Some(s)) => (k, s),
        _ => return Err(Drop::Silently),
    };
    let prf = keys.ike.algorithms().prf;
    if !peer_auth_verifies(sa, keys, setup, idi, auth) {
        return refuse(sa, CloseReason::AuthenticationFailed { by_peer: false });
    }
    sa.peer_initial_contact = notify_of(payloads, NotifyType::INITIAL_CONTACT).is_some();
    let idr = sa.cfg.local_id.clone();
    let our_auth = psk_auth(
        prf,
        &sa.cfg.psk,
        &setup.init_response,
        &setup.ni,
        keys.ike.sk_pr(),
        &idr.body(),
    );
    let mut response = vec![
        Payload::IdR(idr),
        Payload::Auth(Authentication {
            auth_method: AuthMethod::SHARED_KEY_MIC,
            data: our_auth.to_vec(),
        }),
    ];
    let chosen = select_esp(sa, proposals, false);
    let Some((proposal_num, spi_out, algs)) = chosen else {
        response.push(Payload::Notify(Notify::new(
            NotifyType::NO_PROPOSAL_CHOSEN,
            Vec::new(),
        )));
        let reason = CloseReason::NoProposalChosen {
            sa: "ESP",
            ours: describe_ours_esp(sa),
            theirs: describe_theirs(proposals),
            by_peer: false,
        };
        sa.respond_encrypted(ExchangeType::IKE_AUTH, mid, &response)?;
        return Err(Drop::Close(reason));
    };
    if tsi.is_empty() || tsr.is_empty() {
        response.push(Payload::Notify(Notify::new(
            NotifyType::TS_UNACCEPTABLE,
            Vec::new(),
        )));
        sa.respond_encrypted(ExchangeType::IKE_AUTH, mid, &response)?;
        return Err(Drop::Close(CloseReason::Protocol(
            "IKE_AUTH without traffic selectors".into(),
        )));
    }
    // Route-based: we accept 0/0 both ways, so whatever the initiator
    // proposes is a subset we can narrow to (§2.9).
    let (tsi, tsr) = (tsi.to_vec(), tsr.to_vec());
    let spi_in = random_child_spi(rng);
    response.push(Payload::Sa(vec![Proposal {
        proposal_num,
        protocol_id: ProtocolId::ESP,
        spi: Spi::Child(spi_in),
        transforms: esp_chosen(&algs),
    }]));
    response.push(Payload::TsI(tsi.clone()));
    response.push(Payload::TsR(tsr.clone()));
    let child_keys = ChildKeys::derive(
        prf,
        keys.ike.sk_d(),
        algs.encr,
        algs.integ,
        None,
        &setup.ni,
        &setup.nr,
    )
    .map_err(|e| Drop::Close(CloseReason::Protocol(format!("child key derivation: {e}"))))?;
    sa.respond_encrypted(ExchangeType::IKE_AUTH, mid, &response)?;
    let child = sa.child_sa(false, child_keys, spi_in, spi_out, algs, tsr, tsi);
    established(sa, now, child, rng);
    Ok(())
}

/// Initiator: the IKE_AUTH response.
pub(super) fn handle_auth_response(
    sa: &mut IkeSa,
    payloads: &[Payload],
    now: Instant,
    rng: &mut dyn Random,
) -> Result<(), Drop> {
    if let Some(n) = error_notify(payloads) {
        return Err(Drop::Close(match n.notify_type {
            NotifyType::AUTHENTICATION_FAILED => {
                CloseReason::AuthenticationFailed { by_peer: true }
            }
            NotifyType::NO_PROPOSAL_CHOSEN => CloseReason::NoProposalChosen {
                sa: "ESP",
                ours: describe_ours_esp(sa),
                theirs: String::new(),
                by_peer: true,
            },
            other => CloseReason::Refused {
                notify: notify_name(other),
            },
        }));
    }
    let Parts {
        idr,
        auth,
        sa: proposals,
        tsi,
        tsr,
        ..
    } = Parts::of(payloads);
    let (Some(idr), Some(auth)) = (idr, auth) else {
        return Err(Drop::Close(CloseReason::Protocol(
            "IKE_AUTH response without IDr or AUTH".into(),
        )));
    };
    if !same_id(idr, &sa.cfg.remote_id) {
        return Err(Drop::Close(CloseReason::IdentityMismatch {
            presented: describe_id(idr),
        }));
    }
    let (keys, setup) = match (&sa.keys, &sa.setup) {
        (Some(k), Some(s)) => (k, s),
        _ => return Err(Drop::Silently),
    };
    let prf = keys.ike.algorithms().prf;
    if !peer_auth_verifies(sa, keys, setup, idr, auth) {
        return Err(Drop::Close(CloseReason::AuthenticationFailed {
            by_peer: false,
        }));
    }
    sa.peer_initial_contact = notify_of(payloads, NotifyType::INITIAL_CONTACT).is_some();
    let [chosen] = proposals else {
        return Err(Drop::Close(CloseReason::Protocol(
            "IKE_AUTH response without exactly one ESP proposal".into(),
        )));
    };
    let Spi::Child(spi_out) = chosen.spi else {
        return Err(Drop::Close(CloseReason::Protocol(
            "ESP proposal without a 4-byte SPI".into(),
        )));
    };
    let algs = sa
        .cfg
        .esp_proposals
        .iter()
        .find_map(|ours| ours.select(&offered(chosen), false))
        .ok_or_else(|| {
            Drop::Close(CloseReason::Protocol(format!(
                "the responder chose an ESP proposal we did not offer: {}",
                describe(&offered(chosen))
            )))
        })?;
    if tsi.is_empty() || tsr.is_empty() {
        return Err(Drop::Close(CloseReason::Protocol(
            "IKE_AUTH response without traffic selectors".into(),
        )));
    }
    let child_keys = ChildKeys::derive(
        prf,
        keys.ike.sk_d(),
        algs.encr,
        algs.integ,
        None,
        &setup.ni,
        &setup.nr,
    )
    .map_err(|e| Drop::Close(CloseReason::Protocol(format!("child key derivation: {e}"))))?;
    let spi_in = setup.child_spi_in;
    let child = sa.child_sa(
        true,
        child_keys,
        spi_in,
        spi_out,
        algs,
        tsi.to_vec(),
        tsr.to_vec(),
    );
    established(sa, now, child, rng);
    Ok(())
}

fn established(sa: &mut IkeSa, now: Instant, child: super::ChildSa, rng: &mut dyn Random) {
    sa.phase = Phase::Established;
    sa.established_at = Some(now);
    sa.setup = None;
    sa.child = Some(sa.track_child(&child, now, rng));
    sa.arm_ike_lifetime(now, rng);
    if let Some(algs) = sa.algorithms {
        sa.event(Event::Established(algs));
    }
    sa.event(Event::ChildInstalled(child));
}

/// An INFORMATIONAL request: liveness check, DELETE, notifies.
pub(super) fn handle_informational(
    sa: &mut IkeSa,
    header: &Header,
    payloads: &[Payload],
    now: Instant,
    rng: &mut dyn Random,
) -> Result<(), Drop> {
    let mid = header.message_id;
    let mut ours = Vec::new();
    let mut delete_ike = false;
    for p in payloads {
        if let Payload::Delete(d) = p {
            if d.protocol_id == ProtocolId::IKE {
                delete_ike = true;
            } else if d.protocol_id == ProtocolId::ESP {
                for spi in &d.spis {
                    if let Some(spi_in) = delete_child(sa, *spi) {
                        ours.push(spi_in);
                    }
                }
            }
        }
    }
    if delete_ike {
        sa.respond_encrypted(ExchangeType::INFORMATIONAL, mid, &[])?;
        if let Some((successor, _)) = sa.successor.take() {
            // The peer deletes the SA we both rekeyed: the SA its rekey
            // created is the one that lives on (§2.25.2); ours, if it is
            // answered after all, goes nowhere.
            sa.adopt(*successor, false, now, rng);
            if let Some(old) = sa.retired.last_mut() {
                old.phase = Phase::Closed;
            }
            return Ok(());
        }
        return Err(Drop::Close(CloseReason::DeletedByPeer));
    }
    // §1.4.1: answer with the deletion of our inbound halves.
    let response = if ours.is_empty() {
        Vec::new()
    } else {
        vec![Payload::Delete(Delete::esp(ours))]
    };
    sa.respond_encrypted(ExchangeType::INFORMATIONAL, mid, &response)
}

/// The peer deletes the child whose outbound SPI (its inbound) is `spi`:
/// returns our inbound SPI of it, after reporting its removal.
fn delete_child(sa: &mut IkeSa, spi: u32) -> Option<u32> {
    if let Some(i) = sa.redundant.iter().position(|(_, out)| *out == spi) {
        // Never installed; we were deleting it ourselves.
        let (spi_in, _) = sa.redundant.remove(i);
        return Some(spi_in);
    }
    let spi_in = if sa.child.as_ref().is_some_and(|c| c.spi_out == spi) {
        sa.child.as_ref().map(|c| c.spi_in)
    } else {
        sa.retiring
            .iter()
            .find(|c| c.spi_out == spi)
            .map(|c| c.spi_in)
    }?;
    sa.child_deleted(spi_in);
    Some(spi_in)
}
