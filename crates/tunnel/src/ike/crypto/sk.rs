//! Protection of the Encrypted payload `SK {...}`.
//!
//! ```text
//! body = IV | Encrypt(inner payloads | Padding | Pad Length) | ICV
//! ```
//!
//! - AES-CBC (RFC 7296 §3.14, RFC 3602): 16-byte IV, the plaintext padded
//!   to the 16-byte block, ICV = truncated HMAC (RFC 4868) with SK_a over
//!   the whole message from the IKE header to the end of the ciphertext.
//! - AES-GCM-16 (RFC 5282): 8-byte explicit IV, nonce = 4-byte salt (the
//!   tail of SK_e) | IV, 16-byte tag as ICV, AAD = the message from the IKE
//!   header to the end of the Encrypted payload's generic header. No
//!   padding beyond the Pad Length octet is needed (a stream mode), which
//!   is what strongSwan sends.
//!
//! In both cases the caller passes `prefix`: the exact message bytes before
//! the body, lengths already final ([`SkCipher::body_len`] tells the body's
//! length first).

use std::fmt;

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use zeroize::Zeroizing;

use super::prf::ct_eq;
use super::CryptoError;
use crate::ike::proposal::{Encr, Integ};

const AES_BLOCK: usize = 16;
const GCM_IV: usize = 8;
const GCM_SALT: usize = 4;
const GCM_TAG: usize = 16;

enum Cipher {
    Cbc {
        key: Zeroizing<Vec<u8>>,
        hmac: hmac::Key,
        integ: Integ,
    },
    Gcm {
        /// Boxed: ring's expanded AES-GCM key is large.
        key: Box<LessSafeKey>,
        salt: Zeroizing<[u8; GCM_SALT]>,
    },
}

/// The keys protecting Encrypted payloads in one direction (SK_ei + SK_ai,
/// or SK_er + SK_ar). Key material is zeroized on drop where this crate
/// holds it (ring's expanded keys are ring's).
pub struct SkCipher {
    encr: Encr,
    cipher: Cipher,
}

impl fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let integ = match &self.cipher {
            Cipher::Cbc { integ, .. } => Some(*integ),
            Cipher::Gcm { .. } => None,
        };
        f.debug_struct("SkCipher")
            .field("encr", &self.encr)
            .field("integ", &integ)
            .finish_non_exhaustive()
    }
}

impl SkCipher {
    /// From the negotiated algorithms, the encryption keymat (key, plus the
    /// 4-byte salt for GCM: [`Encr::keymat_len`]) and the integrity key
    /// (empty for GCM). CBC without integrity, or GCM with it, is refused.
    pub fn new(
        encr: Encr,
        integ: Option<Integ>,
        encr_key: &[u8],
        integ_key: &[u8],
    ) -> Result<SkCipher, CryptoError> {
        let keymat_len = encr.keymat_len();
        if encr_key.len() != keymat_len {
            return Err(CryptoError::KeyLength {
                what: "SK_e",
                expected: keymat_len,
                got: encr_key.len(),
            });
        }
        let expected_integ = integ.map_or(0, Integ::key_len);
        if integ_key.len() != expected_integ {
            return Err(CryptoError::KeyLength {
                what: "SK_a",
                expected: expected_integ,
                got: integ_key.len(),
            });
        }
        let cipher = match (encr, integ) {
            (Encr::AesCbc { key_bits }, Some(integ)) => {
                if key_bits != 128 && key_bits != 256 {
                    return Err(CryptoError::Cipher("AES-CBC key must be 128 or 256 bits"));
                }
                Cipher::Cbc {
                    key: Zeroizing::new(encr_key.to_vec()),
                    hmac: hmac::Key::new(integ_algorithm(integ), integ_key),
                    integ,
                }
            }
            (Encr::AesGcm16 { key_bits }, None) => {
                let alg = match key_bits {
                    128 => &aead::AES_128_GCM,
                    256 => &aead::AES_256_GCM,
                    _ => return Err(CryptoError::Cipher("AES-GCM key must be 128 or 256 bits")),
                };
                let (key, salt_bytes) = encr_key.split_at(keymat_len - GCM_SALT);
                let key = UnboundKey::new(alg, key)
                    .map_err(|_| CryptoError::Cipher("AES-GCM key rejected"))?;
                let mut salt = Zeroizing::new([0u8; GCM_SALT]);
                salt.copy_from_slice(salt_bytes);
                Cipher::Gcm {
                    key: Box::new(LessSafeKey::new(key)),
                    salt,
                }
            }
            (Encr::AesCbc { .. }, None) => {
                return Err(CryptoError::Cipher("AES-CBC needs an integrity algorithm"))
            }
            (Encr::AesGcm16 { .. }, Some(_)) => {
                return Err(CryptoError::Cipher("AES-GCM takes no integrity algorithm"))
            }
        };
        Ok(SkCipher { encr, cipher })
    }

    /// IV length: 16 for CBC, 8 for GCM.
    pub fn iv_len(&self) -> usize {
        match self.cipher {
            Cipher::Cbc { .. } => AES_BLOCK,
            Cipher::Gcm { .. } => GCM_IV,
        }
    }

    /// ICV length: the integrity algorithm's truncation, or 16 for GCM.
    pub fn icv_len(&self) -> usize {
        match &self.cipher {
            Cipher::Cbc { integ, .. } => integ.icv_len(),
            Cipher::Gcm { .. } => GCM_TAG,
        }
    }

    /// The block the plaintext is padded to: 16 for CBC, 1 for GCM.
    pub fn block_len(&self) -> usize {
        match self.cipher {
            Cipher::Cbc { .. } => AES_BLOCK,
            Cipher::Gcm { .. } => 1,
        }
    }

    /// Padding octets (not counting Pad Length) `protect` adds after
    /// `inner_len` bytes of payloads: the fewest that align
    /// payloads + Padding + Pad Length to [`SkCipher::block_len`].
    pub fn pad_len(&self, inner_len: usize) -> usize {
        let block = self.block_len();
        (block - (inner_len + 1) % block) % block
    }

    /// Length of the Encrypted payload body `protect` returns for
    /// `inner_len` bytes of payloads: IV + padded ciphertext + ICV.
    pub fn body_len(&self, inner_len: usize) -> usize {
        self.iv_len() + inner_len + self.pad_len(inner_len) + 1 + self.icv_len()
    }

    /// Encrypts and authenticates `inner` (the inner payloads) into the body
    /// of an Encrypted payload, `IV | ciphertext | ICV`. `prefix` is the
    /// message before the body (IKE header through the Encrypted payload's
    /// generic header, with final lengths); `iv` is [`SkCipher::iv_len`]
    /// fresh bytes from the caller (random for CBC; unique per key for GCM,
    /// e.g. the message counter).
    pub fn protect(&self, prefix: &[u8], iv: &[u8], inner: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if iv.len() != self.iv_len() {
            return Err(CryptoError::IvLength {
                expected: self.iv_len(),
                got: iv.len(),
            });
        }
        let pad = self.pad_len(inner.len());
        let mut out = Vec::with_capacity(self.body_len(inner.len()));
        out.extend_from_slice(iv);
        out.extend_from_slice(inner);
        out.resize(out.len() + pad, 0);
        // pad < block_len <= 16, so it fits the octet.
        out.push(u8::try_from(pad).unwrap_or(0));
        let iv_len = iv.len();
        match &self.cipher {
            Cipher::Cbc { key, hmac, integ } => {
                let plain_len = out.len() - iv_len;
                cbc_encrypt(key, iv, &mut out[iv_len..], plain_len)?;
                let tag = icv(hmac, prefix, &out);
                out.extend_from_slice(tag.as_ref().get(..integ.icv_len()).unwrap_or_default());
            }
            Cipher::Gcm { key, salt } => {
                let nonce = gcm_nonce(salt, iv)?;
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(prefix), &mut out[iv_len..])
                    .map_err(|_| CryptoError::Cipher("AES-GCM seal failed"))?;
                out.extend_from_slice(tag.as_ref());
            }
        }
        Ok(out)
    }

    /// Verifies and decrypts an Encrypted payload `body` (IV | ciphertext |
    /// ICV) received after `prefix` (the message bytes before it, as
    /// received). Returns the inner payloads with padding stripped. The ICV
    /// is checked, in constant time, before anything is decrypted.
    pub fn unprotect(&self, prefix: &[u8], body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let iv_len = self.iv_len();
        let icv_len = self.icv_len();
        let min = iv_len + self.block_len().max(1) + icv_len;
        if body.len() < min {
            return Err(CryptoError::ShortBody {
                len: body.len(),
                min,
            });
        }
        let (iv, rest) = body.split_at(iv_len);
        let (ciphertext, received_icv) = rest.split_at(rest.len() - icv_len);
        let mut plain = match &self.cipher {
            Cipher::Cbc { key, hmac, integ } => {
                if ciphertext.len() % AES_BLOCK != 0 {
                    return Err(CryptoError::NotBlockAligned {
                        len: ciphertext.len(),
                        block: AES_BLOCK,
                    });
                }
                let tag = icv(hmac, prefix, &body[..iv_len + ciphertext.len()]);
                let computed = tag.as_ref().get(..integ.icv_len()).unwrap_or_default();
                if !ct_eq(computed, received_icv) {
                    return Err(CryptoError::AuthFailed);
                }
                let mut buf = ciphertext.to_vec();
                cbc_decrypt(key, iv, &mut buf)?;
                buf
            }
            Cipher::Gcm { key, salt } => {
                let nonce = gcm_nonce(salt, iv)?;
                let mut buf = rest.to_vec();
                let len = key
                    .open_in_place(nonce, Aad::from(prefix), &mut buf)
                    .map_err(|_| CryptoError::AuthFailed)?
                    .len();
                buf.truncate(len);
                buf
            }
        };
        let Some(&pad_len) = plain.last() else {
            return Err(CryptoError::ShortBody {
                len: body.len(),
                min,
            });
        };
        let keep = plain.len().checked_sub(usize::from(pad_len) + 1);
        match keep {
            Some(keep) => {
                plain.truncate(keep);
                Ok(plain)
            }
            None => Err(CryptoError::BadPadding {
                pad_len,
                len: plain.len(),
            }),
        }
    }
}

fn integ_algorithm(integ: Integ) -> hmac::Algorithm {
    match integ {
        Integ::HmacSha256_128 => hmac::HMAC_SHA256,
        Integ::HmacSha384_192 => hmac::HMAC_SHA384,
        Integ::HmacSha512_256 => hmac::HMAC_SHA512,
    }
}

/// Full HMAC over `prefix | body`; the caller truncates.
fn icv(key: &hmac::Key, prefix: &[u8], body: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(prefix);
    ctx.update(body);
    ctx.sign()
}

fn gcm_nonce(salt: &[u8; GCM_SALT], iv: &[u8]) -> Result<Nonce, CryptoError> {
    let mut nonce = [0u8; aead::NONCE_LEN];
    let (s, i) = nonce.split_at_mut(GCM_SALT);
    s.copy_from_slice(salt);
    if i.len() != iv.len() {
        return Err(CryptoError::IvLength {
            expected: i.len(),
            got: iv.len(),
        });
    }
    i.copy_from_slice(iv);
    Ok(Nonce::assume_unique_for_key(nonce))
}

/// AES-CBC over `buf[..len]` in place (already padded to the block).
fn cbc_encrypt(key: &[u8], iv: &[u8], buf: &mut [u8], len: usize) -> Result<(), CryptoError> {
    let bad_key = |_| CryptoError::Cipher("AES-CBC key or IV rejected");
    let unaligned = |_| CryptoError::Cipher("AES-CBC plaintext not block aligned");
    match key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(bad_key)?
            .encrypt_padded_mut::<NoPadding>(buf, len)
            .map(drop)
            .map_err(unaligned),
        32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(bad_key)?
            .encrypt_padded_mut::<NoPadding>(buf, len)
            .map(drop)
            .map_err(unaligned),
        _ => Err(CryptoError::Cipher("AES-CBC key must be 16 or 32 bytes")),
    }
}

/// AES-CBC decryption of the whole of `buf` in place.
fn cbc_decrypt(key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), CryptoError> {
    let bad_key = |_| CryptoError::Cipher("AES-CBC key or IV rejected");
    let unaligned = |_| CryptoError::Cipher("AES-CBC ciphertext not block aligned");
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(bad_key)?
            .decrypt_padded_mut::<NoPadding>(buf)
            .map(drop)
            .map_err(unaligned),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(bad_key)?
            .decrypt_padded_mut::<NoPadding>(buf)
            .map(drop)
            .map_err(unaligned),
        _ => Err(CryptoError::Cipher("AES-CBC key must be 16 or 32 bytes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suites() -> Vec<(Encr, Option<Integ>)> {
        let mut v = vec![];
        for key_bits in [128, 256] {
            v.push((Encr::AesGcm16 { key_bits }, None));
            for integ in [
                Integ::HmacSha256_128,
                Integ::HmacSha384_192,
                Integ::HmacSha512_256,
            ] {
                v.push((Encr::AesCbc { key_bits }, Some(integ)));
            }
        }
        v
    }

    fn cipher(encr: Encr, integ: Option<Integ>) -> SkCipher {
        let ek: Vec<u8> = (0..encr.keymat_len()).map(|i| i as u8).collect();
        let ak: Vec<u8> = (0..integ.map_or(0, Integ::key_len))
            .map(|i| 0x80 | i as u8)
            .collect();
        SkCipher::new(encr, integ, &ek, &ak).unwrap()
    }

    const PREFIX: &[u8] = b"IKE header 28 bytes.........SKhd";

    #[test]
    fn round_trip_every_suite_and_length() {
        for (encr, integ) in suites() {
            let c = cipher(encr, integ);
            let iv = vec![0x5a; c.iv_len()];
            for len in [0, 1, 14, 15, 16, 17, 31, 32, 100, 1000] {
                let inner: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
                let body = c.protect(PREFIX, &iv, &inner).unwrap();
                assert_eq!(body.len(), c.body_len(len), "{encr:?} {integ:?} {len}");
                assert_eq!(&body[..c.iv_len()], &iv[..]);
                if matches!(encr, Encr::AesCbc { .. }) {
                    assert_eq!((body.len() - c.iv_len() - c.icv_len()) % 16, 0);
                }
                assert_eq!(c.unprotect(PREFIX, &body).unwrap(), inner);
            }
        }
    }

    #[test]
    fn lengths_per_suite() {
        let gcm = cipher(Encr::AesGcm16 { key_bits: 256 }, None);
        assert_eq!((gcm.iv_len(), gcm.icv_len(), gcm.block_len()), (8, 16, 1));
        assert_eq!(gcm.body_len(180), 8 + 181 + 16);
        let cbc = cipher(Encr::AesCbc { key_bits: 128 }, Some(Integ::HmacSha384_192));
        assert_eq!((cbc.iv_len(), cbc.icv_len(), cbc.block_len()), (16, 24, 16));
        assert_eq!(cbc.pad_len(15), 0);
        assert_eq!(cbc.pad_len(16), 15);
        assert_eq!(cbc.body_len(188), 16 + 192 + 24);
    }

    #[test]
    fn any_flipped_byte_fails() {
        for (encr, integ) in suites() {
            let c = cipher(encr, integ);
            let iv = vec![0x11; c.iv_len()];
            let body = c.protect(PREFIX, &iv, b"some inner payloads").unwrap();
            for i in 0..PREFIX.len() {
                let mut prefix = PREFIX.to_vec();
                prefix[i] ^= 0x01;
                assert_eq!(
                    c.unprotect(&prefix, &body),
                    Err(CryptoError::AuthFailed),
                    "{encr:?} prefix byte {i}"
                );
            }
            // IV, ciphertext and ICV bytes.
            for i in 0..body.len() {
                let mut bad = body.clone();
                bad[i] ^= 0x80;
                assert_eq!(
                    c.unprotect(PREFIX, &bad),
                    Err(CryptoError::AuthFailed),
                    "{encr:?} body byte {i}"
                );
            }
        }
    }

    #[test]
    fn wrong_key_fails() {
        let a = cipher(Encr::AesGcm16 { key_bits: 128 }, None);
        let b = SkCipher::new(Encr::AesGcm16 { key_bits: 128 }, None, &[9; 20], &[]).unwrap();
        let body = a.protect(PREFIX, &[0; 8], b"x").unwrap();
        assert_eq!(b.unprotect(PREFIX, &body), Err(CryptoError::AuthFailed));
    }

    #[test]
    fn short_and_malformed_bodies_are_errors_not_panics() {
        for (encr, integ) in suites() {
            let c = cipher(encr, integ);
            for len in 0..(c.iv_len() + c.icv_len() + 40) {
                let body = vec![0u8; len];
                assert!(c.unprotect(PREFIX, &body).is_err(), "{encr:?} {len}");
            }
        }
        // CBC with a valid ICV over a ciphertext that is not block aligned.
        let c = cipher(Encr::AesCbc { key_bits: 128 }, Some(Integ::HmacSha256_128));
        let body = vec![0u8; 16 + 17 + 16];
        assert_eq!(
            c.unprotect(PREFIX, &body),
            Err(CryptoError::NotBlockAligned { len: 17, block: 16 })
        );
    }

    #[test]
    fn bad_pad_length_is_rejected_after_a_valid_icv() {
        // GCM: one byte of plaintext, the Pad Length itself, claiming 5.
        let c = cipher(Encr::AesGcm16 { key_bits: 128 }, None);
        let (key, salt) = match &c.cipher {
            Cipher::Gcm { key, salt } => (key, salt),
            Cipher::Cbc { .. } => unreachable!(),
        };
        let iv = [3u8; 8];
        let mut buf = vec![5u8];
        let tag = key
            .seal_in_place_separate_tag(gcm_nonce(salt, &iv).unwrap(), Aad::from(PREFIX), &mut buf)
            .unwrap();
        let mut body = iv.to_vec();
        body.extend_from_slice(&buf);
        body.extend_from_slice(tag.as_ref());
        assert_eq!(
            c.unprotect(PREFIX, &body),
            Err(CryptoError::BadPadding { pad_len: 5, len: 1 })
        );
    }

    #[test]
    fn constructor_checks_keys_and_pairing() {
        let gcm = Encr::AesGcm16 { key_bits: 256 };
        let cbc = Encr::AesCbc { key_bits: 256 };
        let sha = Some(Integ::HmacSha256_128);
        assert!(matches!(
            SkCipher::new(gcm, None, &[0; 32], &[]),
            Err(CryptoError::KeyLength {
                what: "SK_e",
                expected: 36,
                got: 32
            })
        ));
        assert!(matches!(
            SkCipher::new(cbc, sha, &[0; 32], &[0; 16]),
            Err(CryptoError::KeyLength {
                what: "SK_a",
                expected: 32,
                got: 16
            })
        ));
        assert!(SkCipher::new(cbc, None, &[0; 32], &[]).is_err());
        assert!(SkCipher::new(gcm, sha, &[0; 36], &[0; 32]).is_err());
        assert!(SkCipher::new(Encr::AesCbc { key_bits: 192 }, sha, &[0; 24], &[0; 32]).is_err());
        let c = cipher(gcm, None);
        assert_eq!(
            c.protect(PREFIX, &[0; 16], b""),
            Err(CryptoError::IvLength {
                expected: 8,
                got: 16
            })
        );
        assert_eq!(
            format!("{c:?}"),
            "SkCipher { encr: AesGcm16 { key_bits: 256 }, integ: None, .. }"
        );
    }
}
