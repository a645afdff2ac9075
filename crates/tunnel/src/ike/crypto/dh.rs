//! Diffie-Hellman for the KE payload (RFC 7296 §1.2, §3.4).
//!
//! | group | KE data | shared secret |
//! |---|---|---|
//! | MODP 2048 (RFC 3526) | `g^x mod p`, 256 bytes big-endian, left-padded | `g^xy mod p`, 256 bytes, left-padded |
//! | ECP 256/384 (RFC 5903) | `x \| y` of the point, no 0x04 prefix | the x coordinate |
//! | Curve25519 (RFC 8031) | the 32-byte u coordinate | 32 bytes, never all zero |
//!
//! The private value comes from the caller as [`secret_len`] random bytes:
//! the module itself never draws randomness.

use std::fmt;

use crypto_bigint::modular::constant_mod::{Residue, ResidueParams};
use crypto_bigint::{impl_modulus, Encoding, U2048, U256};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use zeroize::{Zeroize, Zeroizing};

use super::CryptoError;
use crate::ike::proposal::DhGroup;

impl_modulus!(
    Modp2048Prime,
    U2048,
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF"
);

type ModpResidue = Residue<Modp2048Prime, { U2048::LIMBS }>;

/// Bytes of a MODP 2048 private exponent: 256 bits, twice the group's
/// ~110-bit strength with margin (RFC 3526 §8).
const MODP_EXPONENT_LEN: usize = 32;

/// How many random bytes [`KeyExchange::new`] needs for `group`.
pub const fn secret_len(group: DhGroup) -> usize {
    match group {
        DhGroup::Modp2048 => MODP_EXPONENT_LEN,
        DhGroup::Ecp256 => 32,
        DhGroup::Ecp384 => 48,
        DhGroup::Curve25519 => 32,
    }
}

enum Private {
    Modp(Zeroizing<[u8; MODP_EXPONENT_LEN]>),
    Ecp256(p256::SecretKey),
    Ecp384(p384::SecretKey),
    Curve25519(x25519_dalek::StaticSecret),
}

/// One side of a Diffie-Hellman exchange: our private value and the public
/// value for our KE payload. The private value is zeroized on drop.
pub struct KeyExchange {
    group: DhGroup,
    private: Private,
    public: Vec<u8>,
}

impl fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyExchange")
            .field("group", &self.group)
            .field("public_len", &self.public.len())
            .finish_non_exhaustive()
    }
}

impl KeyExchange {
    /// A key exchange in `group` whose private value is made from `random`,
    /// which must be exactly [`secret_len`]`(group)` fresh random bytes.
    /// For ECP, bytes that are zero or not below the group order give
    /// [`CryptoError::InvalidSecret`]: draw again and retry.
    pub fn new(group: DhGroup, random: &[u8]) -> Result<KeyExchange, CryptoError> {
        let expected = secret_len(group);
        if random.len() != expected {
            return Err(CryptoError::SecretLength {
                group,
                expected,
                got: random.len(),
            });
        }
        let (private, public) = match group {
            DhGroup::Modp2048 => {
                let mut exp = Zeroizing::new([0u8; MODP_EXPONENT_LEN]);
                exp.copy_from_slice(random);
                let public = modp_pow(&U2048::from(2u64), &exp);
                // 1 < g^x < p-1 unless x is 0 (or absurdly unlucky).
                if !modp_in_range(&public) {
                    return Err(CryptoError::InvalidSecret { group });
                }
                (Private::Modp(exp), public.to_be_bytes().to_vec())
            }
            DhGroup::Ecp256 => {
                let secret = p256::SecretKey::from_slice(random)
                    .map_err(|_| CryptoError::InvalidSecret { group })?;
                let point = secret.public_key().to_encoded_point(false);
                let public = point.as_bytes().get(1..).unwrap_or_default().to_vec();
                (Private::Ecp256(secret), public)
            }
            DhGroup::Ecp384 => {
                let secret = p384::SecretKey::from_slice(random)
                    .map_err(|_| CryptoError::InvalidSecret { group })?;
                let point = secret.public_key().to_encoded_point(false);
                let public = point.as_bytes().get(1..).unwrap_or_default().to_vec();
                (Private::Ecp384(secret), public)
            }
            DhGroup::Curve25519 => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                bytes.copy_from_slice(random);
                let secret = x25519_dalek::StaticSecret::from(*bytes);
                let public = x25519_dalek::PublicKey::from(&secret).as_bytes().to_vec();
                (Private::Curve25519(secret), public)
            }
        };
        if public.len() != group.public_len() {
            return Err(CryptoError::Cipher("public value of unexpected length"));
        }
        Ok(KeyExchange {
            group,
            private,
            public,
        })
    }

    /// The group.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Our public value: the Key Exchange Data of our KE payload.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// The shared secret `g^ir` from the peer's Key Exchange Data, after
    /// checking it: exact length, ECP point on the curve, MODP value in
    /// `1 < y < p-1`, X25519 result not all zero.
    pub fn compute(&self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let group = self.group;
        let expected = group.public_len();
        if peer.len() != expected {
            return Err(CryptoError::PeerPublicLength {
                group,
                expected,
                got: peer.len(),
            });
        }
        match &self.private {
            Private::Modp(exp) => {
                let y = U2048::from_be_slice(peer);
                if !modp_in_range(&y) {
                    return Err(CryptoError::PeerPublicInvalid {
                        group,
                        reason: "not in the range 1 < y < p-1",
                    });
                }
                let mut shared = modp_pow(&y, exp);
                let out = Zeroizing::new(shared.to_be_bytes().to_vec());
                shared.zeroize();
                Ok(out)
            }
            Private::Ecp256(secret) => {
                let peer = p256::PublicKey::from_sec1_bytes(&uncompressed(peer)).map_err(|_| {
                    CryptoError::PeerPublicInvalid {
                        group,
                        reason: "not a point on the curve",
                    }
                })?;
                let shared =
                    p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            Private::Ecp384(secret) => {
                let peer = p384::PublicKey::from_sec1_bytes(&uncompressed(peer)).map_err(|_| {
                    CryptoError::PeerPublicInvalid {
                        group,
                        reason: "not a point on the curve",
                    }
                })?;
                let shared =
                    p384::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            Private::Curve25519(secret) => {
                let mut bytes = [0u8; 32];
                bytes.copy_from_slice(peer);
                let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(bytes));
                if !shared.was_contributory() {
                    return Err(CryptoError::DegenerateSharedSecret { group });
                }
                Ok(Zeroizing::new(shared.as_bytes().to_vec()))
            }
        }
    }
}

/// `base^exp mod p`, constant time in the exponent's value.
fn modp_pow(base: &U2048, exp: &[u8; MODP_EXPONENT_LEN]) -> U2048 {
    let mut e = U256::from_be_slice(exp);
    let result = ModpResidue::new(base)
        .pow_bounded_exp(&e, 8 * MODP_EXPONENT_LEN)
        .retrieve();
    e.zeroize();
    result
}

/// `1 < y < p-1` (RFC 7296 §5.2 via SP 800-56A: rejects 0, 1, p-1 and
/// anything not reduced).
fn modp_in_range(y: &U2048) -> bool {
    let p_minus_1 = Modp2048Prime::MODULUS.wrapping_sub(&U2048::ONE);
    *y > U2048::ONE && *y < p_minus_1
}

/// SEC1 uncompressed encoding of KE data `x | y` (RFC 5903 §7).
fn uncompressed(xy: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(xy.len() + 1);
    v.push(0x04);
    v.extend_from_slice(xy);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUPS: [DhGroup; 4] = [
        DhGroup::Modp2048,
        DhGroup::Ecp256,
        DhGroup::Ecp384,
        DhGroup::Curve25519,
    ];

    fn pair(group: DhGroup) -> (KeyExchange, KeyExchange) {
        let n = secret_len(group);
        let a: Vec<u8> = (0..n)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(1))
            .collect();
        let b: Vec<u8> = (0..n)
            .map(|i| (i as u8).wrapping_mul(13).wrapping_add(5))
            .collect();
        (
            KeyExchange::new(group, &a).unwrap(),
            KeyExchange::new(group, &b).unwrap(),
        )
    }

    #[test]
    fn both_sides_agree_in_every_group() {
        for group in GROUPS {
            let (a, b) = pair(group);
            assert_eq!(a.public().len(), group.public_len(), "{group:?}");
            assert_ne!(a.public(), b.public());
            let ab = a.compute(b.public()).unwrap();
            let ba = b.compute(a.public()).unwrap();
            assert_eq!(*ab, *ba, "{group:?}");
            let expected_len = match group {
                DhGroup::Modp2048 => 256,
                DhGroup::Ecp256 => 32,
                DhGroup::Ecp384 => 48,
                DhGroup::Curve25519 => 32,
            };
            assert_eq!(ab.len(), expected_len, "{group:?}");
        }
    }

    #[test]
    fn agreement_with_random_secrets() {
        use ring::rand::{SecureRandom, SystemRandom};
        let rng = SystemRandom::new();
        for group in GROUPS {
            let mut a = vec![0; secret_len(group)];
            let mut b = vec![0; secret_len(group)];
            rng.fill(&mut a).unwrap();
            rng.fill(&mut b).unwrap();
            let a = KeyExchange::new(group, &a).unwrap();
            let b = KeyExchange::new(group, &b).unwrap();
            assert_eq!(
                *a.compute(b.public()).unwrap(),
                *b.compute(a.public()).unwrap()
            );
        }
    }

    // RFC 7748 §6.1.
    #[test]
    fn x25519_matches_rfc7748() {
        let alice = hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
            .unwrap();
        let bob_public =
            hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .unwrap();
        let a = KeyExchange::new(DhGroup::Curve25519, &alice).unwrap();
        assert_eq!(
            hex::encode(a.public()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(
            hex::encode(&*a.compute(&bob_public).unwrap()),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }

    #[test]
    fn modp_public_is_two_to_the_exponent() {
        // x = 1 gives g^1 = 2, left-padded to 256 bytes.
        let mut one = [0u8; 32];
        one[31] = 1;
        let kex = KeyExchange::new(DhGroup::Modp2048, &one).unwrap();
        let mut expected = [0u8; 256];
        expected[255] = 2;
        assert_eq!(kex.public(), &expected[..]);
        // x = 0 gives 1: rejected.
        assert_eq!(
            KeyExchange::new(DhGroup::Modp2048, &[0; 32]).unwrap_err(),
            CryptoError::InvalidSecret {
                group: DhGroup::Modp2048
            }
        );
    }

    #[test]
    fn invalid_secrets_are_refused() {
        for group in GROUPS {
            let err = KeyExchange::new(group, &[1; 7]).unwrap_err();
            assert!(
                matches!(err, CryptoError::SecretLength { got: 7, .. }),
                "{err}"
            );
        }
        for group in [DhGroup::Ecp256, DhGroup::Ecp384] {
            let n = secret_len(group);
            assert_eq!(
                KeyExchange::new(group, &vec![0; n]).unwrap_err(),
                CryptoError::InvalidSecret { group }
            );
            // All ones exceeds the group order.
            assert_eq!(
                KeyExchange::new(group, &vec![0xff; n]).unwrap_err(),
                CryptoError::InvalidSecret { group }
            );
        }
    }

    #[test]
    fn invalid_peer_publics_are_rejected() {
        for group in GROUPS {
            let (a, b) = pair(group);
            // Wrong length.
            let short = &b.public()[1..];
            assert!(
                matches!(a.compute(short), Err(CryptoError::PeerPublicLength { .. })),
                "{group:?}"
            );
            let mut long = b.public().to_vec();
            long.push(0);
            assert!(matches!(
                a.compute(&long),
                Err(CryptoError::PeerPublicLength { .. })
            ));
        }
        // ECP: a point off the curve (y changed) and the all-zero "point".
        for group in [DhGroup::Ecp256, DhGroup::Ecp384] {
            let (a, b) = pair(group);
            let mut off = b.public().to_vec();
            let last = off.len() - 1;
            off[last] ^= 1;
            assert!(
                matches!(a.compute(&off), Err(CryptoError::PeerPublicInvalid { .. })),
                "{group:?}"
            );
            let zero = vec![0; group.public_len()];
            assert!(matches!(
                a.compute(&zero),
                Err(CryptoError::PeerPublicInvalid { .. })
            ));
        }
        // MODP: 0, 1, p-1, p and all-ones are out of range.
        let (a, _) = pair(DhGroup::Modp2048);
        let p = Modp2048Prime::MODULUS;
        let mut bad = vec![
            [0u8; 256].to_vec(),
            U2048::ONE.to_be_bytes().to_vec(),
            p.wrapping_sub(&U2048::ONE).to_be_bytes().to_vec(),
            p.to_be_bytes().to_vec(),
        ];
        bad.push(vec![0xff; 256]);
        for y in bad {
            assert!(matches!(
                a.compute(&y),
                Err(CryptoError::PeerPublicInvalid { .. })
            ));
        }
        // X25519: the zero point (a low-order point) yields all zeros.
        let (a, _) = pair(DhGroup::Curve25519);
        assert_eq!(
            a.compute(&[0; 32]).unwrap_err(),
            CryptoError::DegenerateSharedSecret {
                group: DhGroup::Curve25519
            }
        );
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(a.compute(&one).is_err());
    }

    fn sha256_hex(data: &[u8]) -> String {
        hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
    }

    // Reference values from an independent big-integer implementation
    // (Python's pow over the RFC 3526 prime), kept as SHA-256 digests of the
    // 256-byte values: x = 01 02 .. 20, peer x = 40 41 .. 5f.
    #[test]
    fn modp2048_matches_reference_arithmetic() {
        let x: Vec<u8> = (1..=32).collect();
        let peer_x: Vec<u8> = (0x40..0x60).collect();
        let a = KeyExchange::new(DhGroup::Modp2048, &x).unwrap();
        let b = KeyExchange::new(DhGroup::Modp2048, &peer_x).unwrap();
        assert_eq!(
            &a.public()[..8],
            &hex::decode("ce8736a3ad7c8260").unwrap()[..]
        );
        assert_eq!(
            sha256_hex(a.public()),
            "0b9cb9036d2a594a7e3b43169bdf47ee9c7b64a2292203f1bb137b0b648d7e3c"
        );
        assert_eq!(
            sha256_hex(b.public()),
            "a720ccf502b6c8df0c2a1cff3a340a78e4498a5cdf3e5e4fff471825a7755268"
        );
        assert_eq!(
            sha256_hex(&a.compute(b.public()).unwrap()),
            "d422e42858e63e74fd1ba031b9f27970b034dc6852d1d1035287fb1c38722e53"
        );
    }

    // ring is an independent ECDH implementation: the KE encodings (x | y
    // without 0x04, the u coordinate) and the shared secret (x coordinate)
    // must agree with it.
    #[test]
    fn ecdh_agrees_with_ring() {
        use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
        use ring::rand::SystemRandom;
        let rng = SystemRandom::new();
        let cases = [
            (DhGroup::Ecp256, &agreement::ECDH_P256, true),
            (DhGroup::Ecp384, &agreement::ECDH_P384, true),
            (DhGroup::Curve25519, &agreement::X25519, false),
        ];
        for (group, alg, sec1) in cases {
            let (ours, _) = pair(group);
            let theirs = EphemeralPrivateKey::generate(alg, &rng).unwrap();
            let their_public = theirs.compute_public_key().unwrap();
            let ke = if sec1 {
                assert_eq!(their_public.as_ref()[0], 0x04);
                &their_public.as_ref()[1..]
            } else {
                their_public.as_ref()
            };
            let ours_shared = ours.compute(ke).unwrap();
            let our_public = if sec1 {
                uncompressed(ours.public())
            } else {
                ours.public().to_vec()
            };
            let theirs_shared =
                agreement::agree_ephemeral(theirs, &UnparsedPublicKey::new(alg, our_public), |k| {
                    k.to_vec()
                })
                .unwrap();
            assert_eq!(*ours_shared, theirs_shared, "{group:?}");
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let (a, _) = pair(DhGroup::Curve25519);
        let text = format!("{a:?}");
        assert_eq!(
            text,
            "KeyExchange { group: Curve25519, public_len: 32, .. }"
        );
    }
}
