//! Key derivation: SKEYSEED and `SK_*` (RFC 7296 §2.14), rekeyed IKE SAs
//! (§2.18), child SA KEYMAT (§2.17) and the PSK AUTH payload (§2.15).

use std::fmt;

use zeroize::Zeroizing;

use super::prf::{ct_eq, prf_parts, prf_plus};
use super::sk::SkCipher;
use super::CryptoError;
use crate::ike::proposal::{Encr, IkeAlgorithms, Integ, Prf};

/// The fixed string of the PSK AUTH computation (§2.15), without a NUL.
const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// `SKEYSEED = prf(Ni | Nr, g^ir)` (§2.14). The nonces are used whole as the
/// HMAC key.
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], shared_secret: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    prf_parts(prf, &key, &[shared_secret])
}

/// The seven keys of an IKE SA and the algorithms they are for.
///
/// For AES-GCM, `SK_ai`/`SK_ar` are empty and `SK_ei`/`SK_er` carry the
/// 4-byte salt after the key ([`Encr::keymat_len`]).
pub struct IkeKeys {
    algs: IkeAlgorithms,
    sk_d: Zeroizing<Vec<u8>>,
    sk_ai: Zeroizing<Vec<u8>>,
    sk_ar: Zeroizing<Vec<u8>>,
    sk_ei: Zeroizing<Vec<u8>>,
    sk_er: Zeroizing<Vec<u8>>,
    sk_pi: Zeroizing<Vec<u8>>,
    sk_pr: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IkeKeys")
            .field("algs", &self.algs)
            .field("sk_d_len", &self.sk_d.len())
            .field("sk_a_len", &self.sk_ai.len())
            .field("sk_e_len", &self.sk_ei.len())
            .field("sk_p_len", &self.sk_pi.len())
            .finish_non_exhaustive()
    }
}

impl IkeKeys {
    /// Keys of a new IKE SA from IKE_SA_INIT (§2.14): SKEYSEED from the
    /// nonces and `g^ir`, then
    /// `{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
    /// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)`.
    pub fn derive(
        algs: &IkeAlgorithms,
        shared_secret: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: &[u8; 8],
        spi_r: &[u8; 8],
    ) -> Result<IkeKeys, CryptoError> {
        let seed = skeyseed(algs.prf, ni, nr, shared_secret);
        IkeKeys::from_skeyseed(algs, &seed, ni, nr, spi_i, spi_r)
    }

    /// Keys of the IKE SA that replaces this one (§2.18):
    /// `SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)` with the old SA's
    /// PRF, then prf+ with the new SA's PRF over the new nonces and SPIs.
    /// `ni`/`spi_i` belong to whoever initiated the CREATE_CHILD_SA exchange
    /// (not necessarily the original initiator).
    pub fn rekey(
        &self,
        new_algs: &IkeAlgorithms,
        shared_secret: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: &[u8; 8],
        spi_r: &[u8; 8],
    ) -> Result<IkeKeys, CryptoError> {
        let seed = prf_parts(self.algs.prf, &self.sk_d, &[shared_secret, ni, nr]);
        IkeKeys::from_skeyseed(new_algs, &seed, ni, nr, spi_i, spi_r)
    }

    /// The prf+ step shared by [`IkeKeys::derive`] and [`IkeKeys::rekey`].
    fn from_skeyseed(
        algs: &IkeAlgorithms,
        skeyseed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: &[u8; 8],
        spi_r: &[u8; 8],
    ) -> Result<IkeKeys, CryptoError> {
        let prf_len = algs.prf.output_len();
        let integ_len = integ_key_len(algs.integ);
        let encr_len = algs.encr.keymat_len();
        let total = 3 * prf_len + 2 * integ_len + 2 * encr_len;
        let mut seed = Vec::with_capacity(ni.len() + nr.len() + 16);
        seed.extend_from_slice(ni);
        seed.extend_from_slice(nr);
        seed.extend_from_slice(spi_i);
        seed.extend_from_slice(spi_r);
        let keymat = prf_plus(algs.prf, skeyseed, &seed, total)?;
        let mut split = Splitter::new(&keymat);
        Ok(IkeKeys {
            algs: *algs,
            sk_d: split.take(prf_len),
            sk_ai: split.take(integ_len),
            sk_ar: split.take(integ_len),
            sk_ei: split.take(encr_len),
            sk_er: split.take(encr_len),
            sk_pi: split.take(prf_len),
            sk_pr: split.take(prf_len),
        })
    }

    /// The algorithms these keys are for.
    pub fn algorithms(&self) -> &IkeAlgorithms {
        &self.algs
    }

    /// SK_d: keys child SAs and the next IKE SA.
    pub fn sk_d(&self) -> &[u8] {
        &self.sk_d
    }

    /// SK_ai: integrity of messages from the initiator (empty for AEAD).
    pub fn sk_ai(&self) -> &[u8] {
        &self.sk_ai
    }

    /// SK_ar: integrity of messages from the responder (empty for AEAD).
    pub fn sk_ar(&self) -> &[u8] {
        &self.sk_ar
    }

    /// SK_ei: encryption of messages from the initiator (with GCM salt).
    pub fn sk_ei(&self) -> &[u8] {
        &self.sk_ei
    }

    /// SK_er: encryption of messages from the responder (with GCM salt).
    pub fn sk_er(&self) -> &[u8] {
        &self.sk_er
    }

    /// SK_pi: binds the initiator's ID into its AUTH payload.
    pub fn sk_pi(&self) -> &[u8] {
        &self.sk_pi
    }

    /// SK_pr: binds the responder's ID into its AUTH payload.
    pub fn sk_pr(&self) -> &[u8] {
        &self.sk_pr
    }

    /// The SK payload protection of messages the initiator sends (SK_ei,
    /// SK_ai) or the responder sends (SK_er, SK_ar).
    pub fn sk_cipher(&self, from_initiator: bool) -> Result<SkCipher, CryptoError> {
        let (e, a) = if from_initiator {
            (&self.sk_ei, &self.sk_ai)
        } else {
            (&self.sk_er, &self.sk_ar)
        };
        SkCipher::new(self.algs.encr, self.algs.integ, e, a)
    }
}

/// Keying material of one child SA pair (§2.17): the keys protecting what
/// the IKE initiator sends and what the IKE responder sends. Encryption
/// keys include the GCM salt; integrity keys are empty for AEAD.
pub struct ChildKeys {
    /// Encryption algorithm.
    pub encr: Encr,
    /// Integrity algorithm (None for AEAD).
    pub integ: Option<Integ>,
    /// Encryption keymat, initiator → responder.
    pub encr_i: Zeroizing<Vec<u8>>,
    /// Integrity key, initiator → responder.
    pub integ_i: Zeroizing<Vec<u8>>,
    /// Encryption keymat, responder → initiator.
    pub encr_r: Zeroizing<Vec<u8>>,
    /// Integrity key, responder → initiator.
    pub integ_r: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildKeys")
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .field("encr_len", &self.encr_i.len())
            .field("integ_len", &self.integ_i.len())
            .finish_non_exhaustive()
    }
}

impl ChildKeys {
    /// `KEYMAT = prf+(SK_d, Ni | Nr)`, or `prf+(SK_d, g^ir (new) | Ni | Nr)`
    /// with PFS (§2.17), split as encryption then integrity key for the
    /// initiator → responder SA, then the same for the reverse SA. `ni`/`nr`
    /// are the nonces of the exchange that creates the child SA
    /// (IKE_SA_INIT's for the first one).
    pub fn derive(
        prf: Prf,
        sk_d: &[u8],
        encr: Encr,
        integ: Option<Integ>,
        shared_secret: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildKeys, CryptoError> {
        let encr_len = encr.keymat_len();
        let integ_len = integ_key_len(integ);
        let dh = shared_secret.unwrap_or_default();
        let mut seed = Zeroizing::new(Vec::with_capacity(dh.len() + ni.len() + nr.len()));
        seed.extend_from_slice(dh);
        seed.extend_from_slice(ni);
        seed.extend_from_slice(nr);
        let keymat = prf_plus(prf, sk_d, &seed, 2 * (encr_len + integ_len))?;
        let mut split = Splitter::new(&keymat);
        Ok(ChildKeys {
            encr,
            integ,
            encr_i: split.take(encr_len),
            integ_i: split.take(integ_len),
            encr_r: split.take(encr_len),
            integ_r: split.take(integ_len),
        })
    }
}

fn integ_key_len(integ: Option<Integ>) -> usize {
    integ.map_or(0, Integ::key_len)
}

/// Cuts consecutive keys out of prf+ output.
struct Splitter<'a> {
    rest: &'a [u8],
}

impl<'a> Splitter<'a> {
    fn new(keymat: &'a [u8]) -> Self {
        Splitter { rest: keymat }
    }

    /// The next `len` bytes; prf+ was asked for the sum of all lengths, so
    /// the material never runs out (it would yield a short key, not panic).
    fn take(&mut self, len: usize) -> Zeroizing<Vec<u8>> {
        let (key, rest) = self.rest.split_at(len.min(self.rest.len()));
        self.rest = rest;
        Zeroizing::new(key.to_vec())
    }
}

/// The AUTH payload data for a pre-shared key (§2.15):
/// `prf(prf(PSK, "Key Pad for IKEv2"), RealMessage | Nonce | prf(SK_p, ID'))`.
///
/// For the initiator's AUTH: `real_message` is its IKE_SA_INIT request as
/// sent, `nonce` is Nr, `sk_p` is SK_pi and `id_body` its IDi payload body.
/// For the responder's: the IKE_SA_INIT response, Ni, SK_pr and IDr. The
/// nonce is always the *other* party's; `id_body` is the ID payload after
/// its 4-byte generic header, starting at the ID Type octet.
pub fn psk_auth(
    prf: Prf,
    psk: &[u8],
    real_message: &[u8],
    nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Zeroizing<Vec<u8>> {
    let padded = prf_parts(prf, psk, &[KEY_PAD]);
    let maced_id = prf_parts(prf, sk_p, &[id_body]);
    prf_parts(prf, &padded, &[real_message, nonce, &maced_id])
}

/// Checks a peer's PSK AUTH data against [`psk_auth`] of the same inputs,
/// in constant time. Errs with [`CryptoError::AuthFailed`] on mismatch.
pub fn verify_psk_auth(
    prf: Prf,
    psk: &[u8],
    real_message: &[u8],
    nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
    received: &[u8],
) -> Result<(), CryptoError> {
    let expected = psk_auth(prf, psk, real_message, nonce, sk_p, id_body);
    if ct_eq(&expected, received) {
        Ok(())
    } else {
        Err(CryptoError::AuthFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::prf::prf;
    use crate::ike::proposal::DhGroup;

    const GCM: IkeAlgorithms = IkeAlgorithms {
        encr: Encr::AesGcm16 { key_bits: 256 },
        integ: None,
        prf: Prf::HmacSha256,
        dh: DhGroup::Curve25519,
    };

    const CBC: IkeAlgorithms = IkeAlgorithms {
        encr: Encr::AesCbc { key_bits: 128 },
        integ: Some(Integ::HmacSha512_256),
        prf: Prf::HmacSha384,
        dh: DhGroup::Ecp384,
    };

    #[test]
    fn ike_key_lengths_follow_the_algorithms() {
        let k = IkeKeys::derive(&GCM, &[1; 32], &[2; 32], &[3; 32], &[4; 8], &[5; 8]).unwrap();
        assert_eq!(
            [
                k.sk_d().len(),
                k.sk_ai().len(),
                k.sk_ar().len(),
                k.sk_ei().len(),
                k.sk_er().len(),
                k.sk_pi().len(),
                k.sk_pr().len()
            ],
            [32, 0, 0, 36, 36, 32, 32]
        );
        let k = IkeKeys::derive(&CBC, &[1; 96], &[2; 32], &[3; 32], &[4; 8], &[5; 8]).unwrap();
        assert_eq!(
            [
                k.sk_d().len(),
                k.sk_ai().len(),
                k.sk_ar().len(),
                k.sk_ei().len(),
                k.sk_er().len(),
                k.sk_pi().len(),
                k.sk_pr().len()
            ],
            [48, 64, 64, 16, 16, 48, 48]
        );
        // The keys are consecutive slices of one prf+ stream.
        let seed = skeyseed(CBC.prf, &[2; 32], &[3; 32], &[1; 96]);
        let mut s = vec![2; 32];
        s.extend_from_slice(&[3; 32]);
        s.extend_from_slice(&[4; 8]);
        s.extend_from_slice(&[5; 8]);
        let stream = prf_plus(CBC.prf, &seed, &s, 48 + 128 + 32 + 96).unwrap();
        assert_eq!(k.sk_d(), &stream[..48]);
        assert_eq!(k.sk_er(), &stream[48 + 128 + 16..48 + 128 + 32]);
        assert_eq!(k.sk_pr(), &stream[48 + 128 + 32 + 48..]);
    }

    #[test]
    fn rekey_uses_old_sk_d_and_old_prf_then_new_prf() {
        let old = IkeKeys::derive(&GCM, &[1; 32], &[2; 32], &[3; 32], &[4; 8], &[5; 8]).unwrap();
        let new = old
            .rekey(&CBC, &[6; 96], &[7; 16], &[8; 24], &[9; 8], &[10; 8])
            .unwrap();
        let mut data = vec![6; 96];
        data.extend_from_slice(&[7; 16]);
        data.extend_from_slice(&[8; 24]);
        let seed = prf(Prf::HmacSha256, old.sk_d(), &data);
        let mut s = vec![7; 16];
        s.extend_from_slice(&[8; 24]);
        s.extend_from_slice(&[9; 8]);
        s.extend_from_slice(&[10; 8]);
        let stream = prf_plus(Prf::HmacSha384, &seed, &s, 48).unwrap();
        assert_eq!(new.sk_d(), &stream[..]);
        assert_eq!(new.algorithms(), &CBC);
    }

    #[test]
    fn child_keymat_order_and_pfs() {
        let sk_d = [0x11; 32];
        let (ni, nr) = ([0x22; 32], [0x33; 32]);
        let integ = Some(Integ::HmacSha256_128);
        let cbc = Encr::AesCbc { key_bits: 256 };
        let k = ChildKeys::derive(Prf::HmacSha256, &sk_d, cbc, integ, None, &ni, &nr).unwrap();
        let mut seed = ni.to_vec();
        seed.extend_from_slice(&nr);
        let stream = prf_plus(Prf::HmacSha256, &sk_d, &seed, 128).unwrap();
        assert_eq!(*k.encr_i, stream[..32]);
        assert_eq!(*k.integ_i, stream[32..64]);
        assert_eq!(*k.encr_r, stream[64..96]);
        assert_eq!(*k.integ_r, stream[96..]);

        let gcm = Encr::AesGcm16 { key_bits: 128 };
        let k = ChildKeys::derive(
            Prf::HmacSha256,
            &sk_d,
            gcm,
            None,
            Some(&[0x44; 32]),
            &ni,
            &nr,
        )
        .unwrap();
        let mut seed = vec![0x44; 32];
        seed.extend_from_slice(&ni);
        seed.extend_from_slice(&nr);
        let stream = prf_plus(Prf::HmacSha256, &sk_d, &seed, 40).unwrap();
        assert_eq!(*k.encr_i, stream[..20]);
        assert_eq!(*k.encr_r, stream[20..]);
        assert!(k.integ_i.is_empty() && k.integ_r.is_empty());
    }

    #[test]
    fn psk_auth_verifies_and_rejects() {
        let auth = psk_auth(Prf::HmacSha256, b"psk", b"msg", b"nonce", b"skp", b"id");
        let check = |psk: &[u8], received: &[u8]| {
            verify_psk_auth(
                Prf::HmacSha256,
                psk,
                b"msg",
                b"nonce",
                b"skp",
                b"id",
                received,
            )
        };
        assert_eq!(check(b"psk", &auth), Ok(()));
        assert_eq!(check(b"psK", &auth), Err(CryptoError::AuthFailed));
        assert_eq!(check(b"psk", &auth[..31]), Err(CryptoError::AuthFailed));
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let k = IkeKeys::derive(&GCM, &[1; 32], &[2; 32], &[3; 32], &[4; 8], &[5; 8]).unwrap();
        let text = format!("{k:?}");
        assert!(text.contains("sk_d_len: 32"), "{text}");
        let hex_d = hex::encode(&k.sk_d()[..4]);
        assert!(!text.contains(&hex_d), "{text}");
    }
}
