//! IKEv2 transforms and proposals (RFC 7296 §3.3).
//!
//! The algorithms vpngw implements are closed enums carrying their IANA
//! numbers ("IKEv2 Transform Type N Transform IDs"); on the wire a transform
//! is an open `(type, id, key length)` triple, so unknown ones survive
//! parsing and are simply never selected. Proposals are configured in
//! strongSwan's notation (`aes256gcm16-prfsha256-x25519`,
//! `aes256-sha256-modp2048`), which [`parse_ike`] and [`parse_esp`] read.

/// Transform type 1: encryption algorithm, with its key length in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encr {
    /// ENCR_AES_CBC (12), RFC 3602; needs an integrity algorithm.
    AesCbc {
        /// 128 or 256.
        key_bits: u16,
    },
    /// ENCR_AES_GCM_16 (20), RFC 4106 / RFC 5282; combined mode, no integrity.
    AesGcm16 {
        /// 128 or 256.
        key_bits: u16,
    },
}

impl Encr {
    /// IANA transform ID.
    pub const fn id(self) -> u16 {
        match self {
            Encr::AesCbc { .. } => 12,
            Encr::AesGcm16 { .. } => 20,
        }
    }

    /// Key length in bits (the Key Length attribute).
    pub const fn key_bits(self) -> u16 {
        match self {
            Encr::AesCbc { key_bits } | Encr::AesGcm16 { key_bits } => key_bits,
        }
    }

    /// Bytes of keying material: the key, plus the 4-byte salt for GCM.
    pub const fn keymat_len(self) -> usize {
        match self {
            Encr::AesCbc { key_bits } => key_bits as usize / 8,
            Encr::AesGcm16 { key_bits } => key_bits as usize / 8 + 4,
        }
    }

    /// Whether this is an AEAD (no separate integrity transform).
    pub const fn is_aead(self) -> bool {
        matches!(self, Encr::AesGcm16 { .. })
    }

    /// From an IANA ID and key length, if we implement it.
    pub const fn from_wire(id: u16, key_bits: Option<u16>) -> Option<Encr> {
        match (id, key_bits) {
            (12, Some(k @ (128 | 256))) => Some(Encr::AesCbc { key_bits: k }),
            (20, Some(k @ (128 | 256))) => Some(Encr::AesGcm16 { key_bits: k }),
            _ => None,
        }
    }
}

/// Transform type 2: pseudorandom function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    /// PRF_HMAC_SHA2_256 (5).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

impl Prf {
    /// IANA transform ID.
    pub const fn id(self) -> u16 {
        match self {
            Prf::HmacSha256 => 5,
            Prf::HmacSha384 => 6,
            Prf::HmacSha512 => 7,
        }
    }

    /// Output (and preferred key) length in bytes.
    pub const fn output_len(self) -> usize {
        match self {
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
        }
    }

    /// From an IANA ID, if we implement it.
    pub const fn from_wire(id: u16) -> Option<Prf> {
        match id {
            5 => Some(Prf::HmacSha256),
            6 => Some(Prf::HmacSha384),
            7 => Some(Prf::HmacSha512),
            _ => None,
        }
    }
}

/// Transform type 3: integrity algorithm (RFC 4868 truncations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    /// AUTH_HMAC_SHA2_256_128 (12).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14).
    HmacSha512_256,
}

impl Integ {
    /// IANA transform ID.
    pub const fn id(self) -> u16 {
        match self {
            Integ::HmacSha256_128 => 12,
            Integ::HmacSha384_192 => 13,
            Integ::HmacSha512_256 => 14,
        }
    }

    /// Key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Integ::HmacSha256_128 => 32,
            Integ::HmacSha384_192 => 48,
            Integ::HmacSha512_256 => 64,
        }
    }

    /// Truncated ICV length in bytes.
    pub const fn icv_len(self) -> usize {
        match self {
            Integ::HmacSha256_128 => 16,
            Integ::HmacSha384_192 => 24,
            Integ::HmacSha512_256 => 32,
        }
    }

    /// From an IANA ID, if we implement it.
    pub const fn from_wire(id: u16) -> Option<Integ> {
        match id {
            12 => Some(Integ::HmacSha256_128),
            13 => Some(Integ::HmacSha384_192),
            14 => Some(Integ::HmacSha512_256),
            _ => None,
        }
    }
}

/// Transform type 4: Diffie-Hellman group (key exchange method).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 2048-bit MODP group (14), RFC 3526.
    Modp2048,
    /// 256-bit random ECP group (19), RFC 5903.
    Ecp256,
    /// 384-bit random ECP group (20), RFC 5903.
    Ecp384,
    /// Curve25519 (31), RFC 8031.
    Curve25519,
}

impl DhGroup {
    /// IANA transform ID (also the group number in the KE payload).
    pub const fn id(self) -> u16 {
        match self {
            DhGroup::Modp2048 => 14,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::Curve25519 => 31,
        }
    }

    /// Length of the public value in the KE payload, in bytes.
    pub const fn public_len(self) -> usize {
        match self {
            DhGroup::Modp2048 => 256,
            DhGroup::Ecp256 => 64,
            DhGroup::Ecp384 => 96,
            DhGroup::Curve25519 => 32,
        }
    }

    /// From an IANA ID, if we implement it.
    pub const fn from_wire(id: u16) -> Option<DhGroup> {
        match id {
            14 => Some(DhGroup::Modp2048),
            19 => Some(DhGroup::Ecp256),
            20 => Some(DhGroup::Ecp384),
            31 => Some(DhGroup::Curve25519),
            _ => None,
        }
    }
}

/// Transform type 5: extended sequence numbers (child SAs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Esn {
    /// No ESN (0).
    Off,
    /// 64-bit extended sequence numbers (1).
    On,
}

impl Esn {
    /// IANA transform ID.
    pub const fn id(self) -> u16 {
        match self {
            Esn::Off => 0,
            Esn::On => 1,
        }
    }
}

/// Transform type numbers (RFC 7296 §3.3.2).
pub mod transform_type {
    /// Encryption algorithm (ENCR).
    pub const ENCR: u8 = 1;
    /// Pseudorandom function (PRF).
    pub const PRF: u8 = 2;
    /// Integrity algorithm (INTEG).
    pub const INTEG: u8 = 3;
    /// Diffie-Hellman group (D-H).
    pub const DH: u8 = 4;
    /// Extended sequence numbers (ESN).
    pub const ESN: u8 = 5;
}

/// An IKE SA proposal as configured: every listed algorithm of each type is
/// acceptable, the first one preferred (RFC 7296 §3.3: one proposal may carry
/// several transforms of one type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeProposal {
    /// Encryption algorithms.
    pub encr: Vec<Encr>,
    /// Integrity algorithms (empty for AEAD proposals).
    pub integ: Vec<Integ>,
    /// Pseudorandom functions.
    pub prf: Vec<Prf>,
    /// DH groups.
    pub dh: Vec<DhGroup>,
}

/// A child (ESP) SA proposal as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspProposal {
    /// Encryption algorithms.
    pub encr: Vec<Encr>,
    /// Integrity algorithms (empty for AEAD proposals).
    pub integ: Vec<Integ>,
    /// DH groups for PFS on CREATE_CHILD_SA (empty: no PFS).
    pub dh: Vec<DhGroup>,
    /// Extended sequence numbers accepted, preferred first.
    pub esn: Vec<Esn>,
}

/// The algorithms of an established IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeAlgorithms {
    /// Encryption.
    pub encr: Encr,
    /// Integrity (None for AEAD).
    pub integ: Option<Integ>,
    /// PRF.
    pub prf: Prf,
    /// DH group.
    pub dh: DhGroup,
}

/// The algorithms of an established child SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspAlgorithms {
    /// Encryption.
    pub encr: Encr,
    /// Integrity (None for AEAD).
    pub integ: Option<Integ>,
    /// PFS group used for this child's keys, if any.
    pub dh: Option<DhGroup>,
    /// Extended sequence numbers.
    pub esn: Esn,
}

/// One transform as it appears on the wire: type, ID and key length. The
/// bridge between the open wire form and the algorithms we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireTransform {
    /// Transform type ([`transform_type`]).
    pub kind: u8,
    /// Transform ID.
    pub id: u16,
    /// Key Length attribute, if present.
    pub key_bits: Option<u16>,
}

/// A configured proposal string that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    /// A keyword we do not know.
    #[error("unknown algorithm `{token}` in `{proposal}` (known: {known})")]
    UnknownAlgorithm {
        /// The offending keyword.
        token: String,
        /// The whole proposal.
        proposal: String,
        /// What would have been accepted.
        known: &'static str,
    },
    /// A structurally invalid proposal.
    #[error("invalid proposal `{proposal}`: {reason}")]
    Invalid {
        /// The whole proposal.
        proposal: String,
        /// What is wrong.
        reason: &'static str,
    },
}

const KNOWN_IKE: &str = "aes128 aes256 aes128gcm16 aes256gcm16 sha256 sha384 sha512 \
                         prfsha256 prfsha384 prfsha512 modp2048 ecp256 ecp384 x25519";
const KNOWN_ESP: &str = "aes128 aes256 aes128gcm16 aes256gcm16 sha256 sha384 sha512 \
                         modp2048 ecp256 ecp384 x25519 esn noesn";

enum Token {
    Encr(Encr),
    Integ(Integ),
    Prf(Prf),
    Dh(DhGroup),
    Esn(Esn),
}

fn token(word: &str) -> Option<Token> {
    Some(match word {
        "aes128" | "aes128cbc" => Token::Encr(Encr::AesCbc { key_bits: 128 }),
        "aes256" | "aes256cbc" => Token::Encr(Encr::AesCbc { key_bits: 256 }),
        "aes128gcm16" | "aes128gcm128" => Token::Encr(Encr::AesGcm16 { key_bits: 128 }),
        "aes256gcm16" | "aes256gcm128" => Token::Encr(Encr::AesGcm16 { key_bits: 256 }),
        "sha256" | "sha2_256" => Token::Integ(Integ::HmacSha256_128),
        "sha384" | "sha2_384" => Token::Integ(Integ::HmacSha384_192),
        "sha512" | "sha2_512" => Token::Integ(Integ::HmacSha512_256),
        "prfsha256" => Token::Prf(Prf::HmacSha256),
        "prfsha384" => Token::Prf(Prf::HmacSha384),
        "prfsha512" => Token::Prf(Prf::HmacSha512),
        "modp2048" => Token::Dh(DhGroup::Modp2048),
        "ecp256" => Token::Dh(DhGroup::Ecp256),
        "ecp384" => Token::Dh(DhGroup::Ecp384),
        "x25519" | "curve25519" => Token::Dh(DhGroup::Curve25519),
        "esn" => Token::Esn(Esn::On),
        "noesn" => Token::Esn(Esn::Off),
        _ => return None,
    })
}

/// The PRF strongSwan pairs with an integrity algorithm when none is named.
const fn prf_for(integ: Integ) -> Prf {
    match integ {
        Integ::HmacSha256_128 => Prf::HmacSha256,
        Integ::HmacSha384_192 => Prf::HmacSha384,
        Integ::HmacSha512_256 => Prf::HmacSha512,
    }
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

fn invalid(proposal: &str, reason: &'static str) -> ProposalError {
    ProposalError::Invalid {
        proposal: proposal.to_string(),
        reason,
    }
}

/// Checks that encryption and integrity fit together (AEAD alone, CBC with
/// integrity).
fn check_encr_integ(proposal: &str, encr: &[Encr], integ: &[Integ]) -> Result<(), ProposalError> {
    if encr.is_empty() {
        return Err(invalid(proposal, "no encryption algorithm"));
    }
    let aead = encr.iter().filter(|e| e.is_aead()).count();
    if aead != 0 && aead != encr.len() {
        return Err(invalid(
            proposal,
            "AEAD and non-AEAD encryption cannot share a proposal",
        ));
    }
    if aead != 0 && !integ.is_empty() {
        return Err(invalid(
            proposal,
            "AES-GCM is combined mode and takes no integrity algorithm",
        ));
    }
    if aead == 0 && integ.is_empty() {
        return Err(invalid(
            proposal,
            "AES-CBC needs an integrity algorithm (e.g. sha256)",
        ));
    }
    Ok(())
}

/// Parses an IKE proposal in strongSwan notation, e.g.
/// `aes256gcm16-prfsha256-x25519` or `aes256-sha256-modp2048`. Without an
/// explicit PRF, the PRF matching each integrity algorithm is used.
pub fn parse_ike(proposal: &str) -> Result<IkeProposal, ProposalError> {
    let mut p = IkeProposal {
        encr: vec![],
        integ: vec![],
        prf: vec![],
        dh: vec![],
    };
    for word in proposal.trim().split('-') {
        match token(&word.to_ascii_lowercase()) {
            Some(Token::Encr(e)) => push_unique(&mut p.encr, e),
            Some(Token::Integ(i)) => push_unique(&mut p.integ, i),
            Some(Token::Prf(f)) => push_unique(&mut p.prf, f),
            Some(Token::Dh(g)) => push_unique(&mut p.dh, g),
            Some(Token::Esn(_)) => return Err(invalid(proposal, "esn/noesn apply to ESP only")),
            None => {
                return Err(ProposalError::UnknownAlgorithm {
                    token: word.to_string(),
                    proposal: proposal.to_string(),
                    known: KNOWN_IKE,
                })
            }
        }
    }
    check_encr_integ(proposal, &p.encr, &p.integ)?;
    if p.prf.is_empty() {
        if p.integ.is_empty() {
            return Err(invalid(
                proposal,
                "an AES-GCM IKE proposal needs a PRF (e.g. prfsha256)",
            ));
        }
        for i in p.integ.clone() {
            push_unique(&mut p.prf, prf_for(i));
        }
    }
    if p.dh.is_empty() {
        return Err(invalid(
            proposal,
            "an IKE proposal needs a DH group (e.g. x25519)",
        ));
    }
    Ok(p)
}

/// Parses an ESP proposal in strongSwan notation, e.g. `aes256gcm16` or
/// `aes256-sha256-modp2048-esn`. A DH group means PFS on rekey; ESN defaults
/// to off.
pub fn parse_esp(proposal: &str) -> Result<EspProposal, ProposalError> {
    let mut p = EspProposal {
        encr: vec![],
        integ: vec![],
        dh: vec![],
        esn: vec![],
    };
    for word in proposal.trim().split('-') {
        match token(&word.to_ascii_lowercase()) {
            Some(Token::Encr(e)) => push_unique(&mut p.encr, e),
            Some(Token::Integ(i)) => push_unique(&mut p.integ, i),
            Some(Token::Dh(g)) => push_unique(&mut p.dh, g),
            Some(Token::Esn(e)) => push_unique(&mut p.esn, e),
            Some(Token::Prf(_)) => return Err(invalid(proposal, "a PRF applies to IKE only")),
            None => {
                return Err(ProposalError::UnknownAlgorithm {
                    token: word.to_string(),
                    proposal: proposal.to_string(),
                    known: KNOWN_ESP,
                })
            }
        }
    }
    check_encr_integ(proposal, &p.encr, &p.integ)?;
    if p.esn.is_empty() {
        p.esn.push(Esn::Off);
    }
    Ok(p)
}

fn encr_transform(e: Encr) -> WireTransform {
    WireTransform {
        kind: transform_type::ENCR,
        id: e.id(),
        key_bits: Some(e.key_bits()),
    }
}

fn plain(kind: u8, id: u16) -> WireTransform {
    WireTransform {
        kind,
        id,
        key_bits: None,
    }
}

impl IkeProposal {
    /// The transforms to offer, in preference order.
    pub fn transforms(&self) -> Vec<WireTransform> {
        let mut t: Vec<WireTransform> = self.encr.iter().map(|e| encr_transform(*e)).collect();
        t.extend(self.prf.iter().map(|p| plain(transform_type::PRF, p.id())));
        t.extend(
            self.integ
                .iter()
                .map(|i| plain(transform_type::INTEG, i.id())),
        );
        t.extend(self.dh.iter().map(|g| plain(transform_type::DH, g.id())));
        t
    }

    /// The first algorithms of ours the offered transforms contain.
    pub fn select(&self, offered: &[WireTransform]) -> Option<IkeAlgorithms> {
        let encr = self
            .encr
            .iter()
            .copied()
            .find(|e| offered.contains(&encr_transform(*e)))?;
        let prf = self
            .prf
            .iter()
            .copied()
            .find(|p| offered.contains(&plain(transform_type::PRF, p.id())))?;
        let integ = select_integ(&self.integ, encr, offered)?;
        let dh = self
            .dh
            .iter()
            .copied()
            .find(|g| offered.contains(&plain(transform_type::DH, g.id())))?;
        Some(IkeAlgorithms {
            encr,
            integ,
            prf,
            dh,
        })
    }
}

impl EspProposal {
    /// The transforms to offer; `pfs` adds the DH groups (CREATE_CHILD_SA),
    /// without it (IKE_AUTH) no DH transform is sent.
    pub fn transforms(&self, pfs: bool) -> Vec<WireTransform> {
        let mut t: Vec<WireTransform> = self.encr.iter().map(|e| encr_transform(*e)).collect();
        t.extend(
            self.integ
                .iter()
                .map(|i| plain(transform_type::INTEG, i.id())),
        );
        if pfs {
            t.extend(self.dh.iter().map(|g| plain(transform_type::DH, g.id())));
        }
        t.extend(self.esn.iter().map(|e| plain(transform_type::ESN, e.id())));
        t
    }

    /// The first algorithms of ours the offered transforms contain. With
    /// `pfs`, a DH group must match; without, the offer must carry none (or
    /// `NONE`), as in IKE_AUTH.
    pub fn select(&self, offered: &[WireTransform], pfs: bool) -> Option<EspAlgorithms> {
        let encr = self
            .encr
            .iter()
            .copied()
            .find(|e| offered.contains(&encr_transform(*e)))?;
        let integ = select_integ(&self.integ, encr, offered)?;
        let esn = self
            .esn
            .iter()
            .copied()
            .find(|e| offered.contains(&plain(transform_type::ESN, e.id())))?;
        let offered_dh: Vec<u16> = offered
            .iter()
            .filter(|t| t.kind == transform_type::DH && t.id != 0)
            .map(|t| t.id)
            .collect();
        let dh = if pfs && !self.dh.is_empty() {
            Some(
                self.dh
                    .iter()
                    .copied()
                    .find(|g| offered_dh.contains(&g.id()))?,
            )
        } else if offered_dh.is_empty() || !pfs {
            None
        } else {
            // The peer insists on PFS and we are configured without it.
            return None;
        };
        Some(EspAlgorithms {
            encr,
            integ,
            dh,
            esn,
        })
    }
}

/// Integrity for `encr`: none for AEAD (and the offer must not force one),
/// otherwise the first of ours that is offered.
fn select_integ(ours: &[Integ], encr: Encr, offered: &[WireTransform]) -> Option<Option<Integ>> {
    if encr.is_aead() {
        let forced = offered
            .iter()
            .any(|t| t.kind == transform_type::INTEG && t.id != 0);
        return (!forced).then_some(None);
    }
    ours.iter()
        .copied()
        .find(|i| offered.contains(&plain(transform_type::INTEG, i.id())))
        .map(Some)
}

/// Names an offered proposal in strongSwan notation for log messages such as
/// NO_PROPOSAL_CHOSEN ("peer offered aes128-sha1-modp1024"); transforms we
/// do not implement are named by type and number (`ENCR_3`).
pub fn describe(offered: &[WireTransform]) -> String {
    let names: Vec<String> = offered.iter().map(|t| describe_transform(*t)).collect();
    names.join("-")
}

fn describe_transform(t: WireTransform) -> String {
    let known = match t.kind {
        transform_type::ENCR => Encr::from_wire(t.id, t.key_bits).map(|e| match e {
            Encr::AesCbc { key_bits } => format!("aes{key_bits}"),
            Encr::AesGcm16 { key_bits } => format!("aes{key_bits}gcm16"),
        }),
        transform_type::PRF => {
            Prf::from_wire(t.id).map(|p| format!("prfsha{}", p.output_len() * 8))
        }
        transform_type::INTEG => Integ::from_wire(t.id).map(|i| format!("sha{}", i.key_len() * 8)),
        transform_type::DH => DhGroup::from_wire(t.id).map(|g| match g {
            DhGroup::Modp2048 => "modp2048".to_string(),
            DhGroup::Ecp256 => "ecp256".to_string(),
            DhGroup::Ecp384 => "ecp384".to_string(),
            DhGroup::Curve25519 => "x25519".to_string(),
        }),
        transform_type::ESN => match t.id {
            0 => Some("noesn".to_string()),
            1 => Some("esn".to_string()),
            _ => None,
        },
        _ => None,
    };
    known.unwrap_or_else(|| {
        let kind = match t.kind {
            transform_type::ENCR => "ENCR",
            transform_type::PRF => "PRF",
            transform_type::INTEG => "INTEG",
            transform_type::DH => "DH",
            transform_type::ESN => "ESN",
            _ => "TRANSFORM",
        };
        match t.key_bits {
            Some(bits) => format!("{kind}_{}_{bits}", t.id),
            None => format!("{kind}_{}", t.id),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_proposals() {
        let p = parse_ike("aes256gcm16-prfsha256-x25519").unwrap();
        assert_eq!(p.encr, vec![Encr::AesGcm16 { key_bits: 256 }]);
        assert_eq!(p.prf, vec![Prf::HmacSha256]);
        assert!(p.integ.is_empty());
        assert_eq!(p.dh, vec![DhGroup::Curve25519]);

        let p = parse_ike("aes256-sha256-modp2048").unwrap();
        assert_eq!(p.encr, vec![Encr::AesCbc { key_bits: 256 }]);
        assert_eq!(p.integ, vec![Integ::HmacSha256_128]);
        assert_eq!(
            p.prf,
            vec![Prf::HmacSha256],
            "PRF follows the integrity algorithm"
        );
        assert_eq!(p.dh, vec![DhGroup::Modp2048]);

        let e = parse_esp("aes256gcm16-ecp384-esn-noesn").unwrap();
        assert_eq!(e.dh, vec![DhGroup::Ecp384]);
        assert_eq!(e.esn, vec![Esn::On, Esn::Off]);
        assert_eq!(parse_esp("aes128gcm16").unwrap().esn, vec![Esn::Off]);
    }

    #[test]
    fn bad_proposals_say_what_is_wrong() {
        let err = parse_ike("aes256-sha1-modp1024").unwrap_err().to_string();
        assert!(err.contains("`sha1`") && err.contains("known:"), "{err}");
        let err = parse_ike("aes256gcm16-x25519").unwrap_err().to_string();
        assert!(err.contains("needs a PRF"), "{err}");
        let err = parse_ike("aes256-prfsha256-x25519")
            .unwrap_err()
            .to_string();
        assert!(err.contains("integrity"), "{err}");
        let err = parse_ike("aes256gcm16-sha256-prfsha256-x25519")
            .unwrap_err()
            .to_string();
        assert!(err.contains("combined mode"), "{err}");
        let err = parse_ike("aes256gcm16-prfsha256").unwrap_err().to_string();
        assert!(err.contains("DH group"), "{err}");
        assert!(parse_esp("aes256gcm16-prfsha256").is_err());
    }

    #[test]
    fn selects_our_first_match_from_the_offer() {
        let ours = parse_ike("aes256gcm16-aes128gcm16-prfsha384-prfsha256-ecp256-x25519").unwrap();
        let theirs = parse_ike("aes128gcm16-prfsha256-x25519-modp2048").unwrap();
        let chosen = ours.select(&theirs.transforms()).unwrap();
        assert_eq!(
            chosen,
            IkeAlgorithms {
                encr: Encr::AesGcm16 { key_bits: 128 },
                integ: None,
                prf: Prf::HmacSha256,
                dh: DhGroup::Curve25519,
            }
        );
        let cbc = parse_ike("aes256-sha256-modp2048").unwrap();
        assert_eq!(ours.select(&cbc.transforms()), None);
        assert_eq!(
            cbc.select(&cbc.transforms()).unwrap().integ,
            Some(Integ::HmacSha256_128)
        );
    }

    #[test]
    fn key_length_must_match() {
        let ours = parse_ike("aes256gcm16-prfsha256-x25519").unwrap();
        let theirs = parse_ike("aes128gcm16-prfsha256-x25519").unwrap();
        assert_eq!(ours.select(&theirs.transforms()), None);
    }

    #[test]
    fn esp_pfs_and_esn() {
        let ours = parse_esp("aes256gcm16-ecp384-esn").unwrap();
        // IKE_AUTH: no DH offered, no DH chosen.
        let chosen = ours.select(&ours.transforms(false), false).unwrap();
        assert_eq!(chosen.dh, None);
        assert_eq!(chosen.esn, Esn::On);
        // Rekey with PFS: the group must match.
        assert_eq!(
            ours.select(&ours.transforms(true), true).unwrap().dh,
            Some(DhGroup::Ecp384)
        );
        let other = parse_esp("aes256gcm16-x25519-esn").unwrap();
        assert_eq!(ours.select(&other.transforms(true), true), None);
        // ESN mismatch.
        let noesn = parse_esp("aes256gcm16").unwrap();
        assert_eq!(ours.select(&noesn.transforms(false), false), None);
        // We have no PFS configured but the peer insists on it.
        assert_eq!(noesn.select(&other.transforms(true), true), None);
    }

    #[test]
    fn describes_offers_including_unknown_transforms() {
        let mut offer = parse_ike("aes256-sha256-modp2048").unwrap().transforms();
        offer.push(WireTransform {
            kind: transform_type::ENCR,
            id: 3,
            key_bits: None,
        });
        offer.push(WireTransform {
            kind: transform_type::DH,
            id: 2,
            key_bits: None,
        });
        assert_eq!(
            describe(&offer),
            "aes256-prfsha256-sha256-modp2048-ENCR_3-DH_2"
        );
    }
}
