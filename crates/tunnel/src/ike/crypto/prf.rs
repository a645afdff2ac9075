//! The negotiated PRF (HMAC-SHA2, RFC 4868) and `prf+` (RFC 7296 §2.13).

use ring::hmac;
use zeroize::Zeroizing;

use super::CryptoError;
use crate::ike::proposal::Prf;

/// The ring HMAC algorithm behind a PRF.
pub(crate) fn hmac_algorithm(prf: Prf) -> hmac::Algorithm {
    match prf {
        Prf::HmacSha256 => hmac::HMAC_SHA256,
        Prf::HmacSha384 => hmac::HMAC_SHA384,
        Prf::HmacSha512 => hmac::HMAC_SHA512,
    }
}

/// `prf(key, data_1 | data_2 | ...)` without concatenating the parts first.
pub(crate) fn prf_parts(prf: Prf, key: &[u8], parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let key = hmac::Key::new(hmac_algorithm(prf), key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    Zeroizing::new(ctx.sign().as_ref().to_vec())
}

/// `prf(key, data)`: HMAC with the negotiated hash, full output length
/// ([`Prf::output_len`]). HMAC takes keys of any length, so Ni | Nr is used
/// whole as the SKEYSEED key.
pub fn prf(prf: Prf, key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
    prf_parts(prf, key, &[data])
}

/// `prf+(key, seed)` truncated to `len` bytes (RFC 7296 §2.13):
/// `T1 = prf(K, S | 0x01)`, `Tn = prf(K, Tn-1 | S | n)`, output
/// `T1 | T2 | ...`. The counter is one octet, so at most 255 blocks exist.
pub fn prf_plus(
    prf: Prf,
    key: &[u8],
    seed: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let block = prf.output_len();
    let max = block * 255;
    if len > max {
        return Err(CryptoError::PrfPlusTooLong {
            requested: len,
            max,
        });
    }
    let key = hmac::Key::new(hmac_algorithm(prf), key);
    let mut out = Zeroizing::new(Vec::with_capacity(len.div_ceil(block) * block));
    let mut counter: u8 = 1;
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&key);
        let start = out.len().saturating_sub(block);
        ctx.update(&out[start..]);
        ctx.update(seed);
        ctx.update(&[counter]);
        out.extend_from_slice(ctx.sign().as_ref());
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    Ok(out)
}

/// Compares two byte strings in time independent of their contents (the
/// lengths are not secret). Use it for ICVs and AUTH values.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    // RFC 4231 §4.2 (test case 1), §4.3 (test case 2) and §4.7 (test case 6).
    #[test]
    fn prf_matches_rfc4231() {
        let tc1_key = [0x0b; 20];
        let tc1_data = b"Hi There";
        assert_eq!(
            *prf(Prf::HmacSha256, &tc1_key, tc1_data),
            h("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        );
        assert_eq!(
            *prf(Prf::HmacSha384, &tc1_key, tc1_data),
            h(
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c
               faea9ea9076ede7f4af152e8b2fa9cb6"
            )
        );
        assert_eq!(
            *prf(Prf::HmacSha512, &tc1_key, tc1_data),
            h(
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde
               daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"
            )
        );
        assert_eq!(
            *prf(Prf::HmacSha256, b"Jefe", b"what do ya want for nothing?"),
            h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        // Test case 6: a key longer than the block size is hashed first.
        assert_eq!(
            *prf(
                Prf::HmacSha256,
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            h("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        );
    }

    #[test]
    fn prf_plus_is_the_chain_of_section_2_13() {
        let key = b"key";
        let seed = b"seed";
        let t1 = prf(Prf::HmacSha256, key, b"seed\x01");
        let mut s2 = t1.to_vec();
        s2.extend_from_slice(b"seed\x02");
        let t2 = prf(Prf::HmacSha256, key, &s2);
        let mut s3 = t2.to_vec();
        s3.extend_from_slice(b"seed\x03");
        let t3 = prf(Prf::HmacSha256, key, &s3);
        let mut expected = t1.to_vec();
        expected.extend_from_slice(&t2);
        expected.extend_from_slice(&t3);
        let out = prf_plus(Prf::HmacSha256, key, seed, 70).unwrap();
        assert_eq!(*out, expected[..70]);
        // A shorter output is a prefix of a longer one.
        let short = prf_plus(Prf::HmacSha256, key, seed, 5).unwrap();
        assert_eq!(*short, out[..5]);
        assert!(prf_plus(Prf::HmacSha256, key, seed, 0).unwrap().is_empty());
    }

    #[test]
    fn prf_plus_stops_at_255_blocks() {
        for p in [Prf::HmacSha256, Prf::HmacSha384, Prf::HmacSha512] {
            let max = p.output_len() * 255;
            assert_eq!(prf_plus(p, b"k", b"s", max).unwrap().len(), max);
            assert_eq!(
                prf_plus(p, b"k", b"s", max + 1).unwrap_err(),
                CryptoError::PrfPlusTooLong {
                    requested: max + 1,
                    max
                }
            );
        }
    }

    #[test]
    fn ct_eq_compares_contents_and_lengths() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
