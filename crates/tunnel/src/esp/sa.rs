//! One ESP SA direction (RFC 4303): seal outbound packets, open inbound ones.
//!
//! ```text
//!  0                   1                   2                   3
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |               Security Parameters Index (SPI)                 |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |                      Sequence Number                          |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |        IV (8 bytes for AES-GCM, 16 for AES-CBC)  ...          |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |   Payload (the inner IP packet) | Padding | Pad Len | Next Hdr|  encrypted
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |        ICV (16 for AES-GCM, the HMAC truncation for CBC)      |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Both directions work in caller-owned buffers and allocate nothing per
//! packet. [`OutboundSa::seal`] takes `&self` (the sequence counter is
//! atomic) so several transmit threads may share one SA; [`InboundSa::open`]
//! decrypts in place and owns its replay window.
//!
//! AES-GCM follows RFC 4106: nonce = 4-byte salt || 8-byte IV, the IV is the
//! 64-bit sequence number (unique per key, as the RFC allows), AAD = SPI ||
//! sequence (|| high bits in the middle with ESN). AES-CBC with
//! HMAC-SHA2 follows RFC 3602 and RFC 4868; the IV is the sequence number
//! encrypted under the SA's key (NIST SP 800-38A, Appendix C), unpredictable
//! without drawing randomness per packet. With ESN the high-order sequence
//! bits are authenticated but not sent (RFC 4303 §2.2.1).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use zeroize::Zeroizing;

use super::replay::{ReplayError, ReplayWindow};
use crate::ike::proposal::{Encr, Integ};

/// ESP header: SPI and sequence number.
pub const HEADER_LEN: usize = 8;
/// IP protocol number of IPv4 (the Next Header of a tunnelled IPv4 packet).
pub const NEXT_IPV4: u8 = 4;
/// IP protocol number of IPv6.
pub const NEXT_IPV6: u8 = 41;
/// "No next header": a dummy packet (RFC 4303 §2.6), dropped on receipt.
pub const NEXT_NONE: u8 = 59;

/// The keys of one SA direction, as the child SA's KEYMAT split them.
/// Zeroized on drop; `Debug` shows the algorithms only.
pub struct SaKeys {
    /// Encryption algorithm.
    pub encr: Encr,
    /// Integrity algorithm (None for AES-GCM).
    pub integ: Option<Integ>,
    /// Encryption key; for AES-GCM followed by the 4-byte salt.
    pub encr_key: Zeroizing<Vec<u8>>,
    /// Integrity key (empty for AES-GCM).
    pub integ_key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaKeys")
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .finish_non_exhaustive()
    }
}

/// The keys do not fit the algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Wrong encryption key length.
    #[error("encryption key has {got} bytes, {expected} expected")]
    EncrKeyLength {
        /// Bytes given.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// Wrong integrity key length, or integrity missing for CBC.
    #[error("integrity key or algorithm does not fit the encryption algorithm")]
    Integrity,
}

/// Why a packet could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// The output buffer is too small for the ESP packet.
    BufferTooSmall,
    /// The sequence number space is used up: the SA must be rekeyed.
    SequenceExhausted,
}

/// Why an inbound packet was dropped. A fieldless `Copy` enum: the
/// datapath counts these, it never logs them per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Shorter than header, IV, one block and ICV.
    Truncated,
    /// Ciphertext not a whole number of cipher blocks.
    BadLength,
    /// Refused by the anti-replay window before decryption.
    Replay(ReplayError),
    /// ICV verification failed.
    Integrity,
    /// Pad Length larger than the payload.
    BadPadding,
    /// A dummy packet (Next Header 59): dropped by design.
    Dummy,
}

// One per SA, held inline: no pointer to chase per packet.
#[allow(clippy::large_enum_variant)]
enum Aes {
    Aes128(aes::Aes128),
    Aes256(aes::Aes256),
}

impl Aes {
    fn new(key: &[u8]) -> Result<Aes, KeyError> {
        match key.len() {
            16 => aes::Aes128::new_from_slice(key).map(Aes::Aes128),
            32 => aes::Aes256::new_from_slice(key).map(Aes::Aes256),
            got => return Err(KeyError::EncrKeyLength { got, expected: 32 }),
        }
        .map_err(|_| KeyError::EncrKeyLength {
            got: key.len(),
            expected: 32,
        })
    }

    fn encrypt(&self, block: &mut [u8; 16]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Aes::Aes128(k) => k.encrypt_block(b),
            Aes::Aes256(k) => k.encrypt_block(b),
        }
    }

    fn decrypt(&self, block: &mut [u8; 16]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Aes::Aes128(k) => k.decrypt_block(b),
            Aes::Aes256(k) => k.decrypt_block(b),
        }
    }
}

// One per SA, held inline: no pointer to chase per packet.
#[allow(clippy::large_enum_variant)]
enum Cipher {
    Gcm {
        key: LessSafeKey,
        salt: [u8; 4],
    },
    Cbc {
        aes: Aes,
        hmac: hmac::Key,
        icv_len: usize,
    },
}

impl Cipher {
    fn new(keys: &SaKeys) -> Result<Cipher, KeyError> {
        let expected = keys.encr.keymat_len();
        if keys.encr_key.len() != expected {
            return Err(KeyError::EncrKeyLength {
                got: keys.encr_key.len(),
                expected,
            });
        }
        match (keys.encr, keys.integ) {
            (Encr::AesGcm16 { key_bits }, None) => {
                let (key, salt) = keys.encr_key.split_at(expected - 4);
                let alg = if key_bits == 128 {
                    &aead::AES_128_GCM
                } else {
                    &aead::AES_256_GCM
                };
                let key = UnboundKey::new(alg, key).map_err(|_| KeyError::EncrKeyLength {
                    got: key.len(),
                    expected: expected - 4,
                })?;
                let mut s = [0; 4];
                s.copy_from_slice(salt);
                Ok(Cipher::Gcm {
                    key: LessSafeKey::new(key),
                    salt: s,
                })
            }
            (Encr::AesCbc { .. }, Some(integ)) => {
                if keys.integ_key.len() != integ.key_len() {
                    return Err(KeyError::Integrity);
                }
                let alg = match integ {
                    Integ::HmacSha256_128 => hmac::HMAC_SHA256,
                    Integ::HmacSha384_192 => hmac::HMAC_SHA384,
                    Integ::HmacSha512_256 => hmac::HMAC_SHA512,
                };
                Ok(Cipher::Cbc {
                    aes: Aes::new(&keys.encr_key)?,
                    hmac: hmac::Key::new(alg, &keys.integ_key),
                    icv_len: integ.icv_len(),
                })
            }
            (Encr::AesGcm16 { .. }, Some(_)) | (Encr::AesCbc { .. }, None) => {
                Err(KeyError::Integrity)
            }
        }
    }

    fn iv_len(&self) -> usize {
        match self {
            Cipher::Gcm { .. } => 8,
            Cipher::Cbc { .. } => 16,
        }
    }

    fn icv_len(&self) -> usize {
        match self {
            Cipher::Gcm { .. } => 16,
            Cipher::Cbc { icv_len, .. } => *icv_len,
        }
    }

    /// Alignment of payload + trailer: 4 for GCM, the block for CBC.
    fn align(&self) -> usize {
        match self {
            Cipher::Gcm { .. } => 4,
            Cipher::Cbc { .. } => 16,
        }
    }
}

fn gcm_nonce(salt: &[u8; 4], iv: &[u8]) -> Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(iv);
    Nonce::assume_unique_for_key(n)
}

/// AAD for AES-GCM: SPI || seq, or SPI || seq high || seq low with ESN.
fn gcm_aad(spi: u32, seq: u64, esn: bool, buf: &mut [u8; 12]) -> usize {
    buf[..4].copy_from_slice(&spi.to_be_bytes());
    if esn {
        buf[4..].copy_from_slice(&seq.to_be_bytes());
        12
    } else {
        buf[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        8
    }
}

fn cbc_icv(key: &hmac::Key, authenticated: &[u8], seq: u64, esn: bool) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(authenticated);
    if esn {
        ctx.update(&((seq >> 32) as u32).to_be_bytes());
    }
    ctx.sign()
}

/// AES-CBC encryption in place (RFC 3602); `data` is whole blocks.
fn cbc_encrypt(aes: &Aes, iv: [u8; 16], data: &mut [u8]) {
    let mut prev = iv;
    for chunk in data.chunks_exact_mut(16) {
        let mut block = [0u8; 16];
        for ((b, p), c) in block.iter_mut().zip(&prev).zip(chunk.iter()) {
            *b = p ^ c;
        }
        aes.encrypt(&mut block);
        chunk.copy_from_slice(&block);
        prev = block;
    }
}

/// AES-CBC decryption in place; `data` is whole blocks.
fn cbc_decrypt(aes: &Aes, iv: [u8; 16], data: &mut [u8]) {
    let mut prev = iv;
    for chunk in data.chunks_exact_mut(16) {
        let mut block = [0u8; 16];
        block.copy_from_slice(chunk);
        let cipher_block = block;
        aes.decrypt(&mut block);
        for ((c, b), p) in chunk.iter_mut().zip(&block).zip(&prev) {
            *c = b ^ p;
        }
        prev = cipher_block;
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The sending half of a child SA.
pub struct OutboundSa {
    spi: u32,
    esn: bool,
    seq: AtomicU64,
    cipher: Cipher,
}

impl std::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:08x}", self.spi))
            .field("esn", &self.esn)
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl OutboundSa {
    /// An SA sending with the peer's `spi`.
    pub fn new(spi: u32, esn: bool, keys: &SaKeys) -> Result<OutboundSa, KeyError> {
        Ok(OutboundSa {
            spi,
            esn,
            seq: AtomicU64::new(0),
            cipher: Cipher::new(keys)?,
        })
    }

    /// The SPI this SA sends.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// Packets sealed so far (the last sequence number used).
    pub fn packets(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// The ESP packet length for an inner packet of `inner_len` bytes.
    pub fn sealed_len(&self, inner_len: usize) -> usize {
        let c = &self.cipher;
        HEADER_LEN + c.iv_len() + (inner_len + 2).next_multiple_of(c.align()) + c.icv_len()
    }

    /// Encrypts `inner` (an IP packet with protocol `next_header`) into
    /// `out`, returning the ESP packet's length.
    pub fn seal(&self, inner: &[u8], next_header: u8, out: &mut [u8]) -> Result<usize, SealError> {
        let total = self.sealed_len(inner.len());
        let out = out.get_mut(..total).ok_or(SealError::BufferTooSmall)?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if (!self.esn && seq > u64::from(u32::MAX)) || seq == u64::MAX {
            return Err(SealError::SequenceExhausted);
        }
        let c = &self.cipher;
        let (iv_len, icv_len) = (c.iv_len(), c.icv_len());
        let body_start = HEADER_LEN + iv_len;
        let body_end = total - icv_len;
        out[..4].copy_from_slice(&self.spi.to_be_bytes());
        out[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        // Payload, then padding 1, 2, 3, ... (RFC 4303 §2.4), Pad Length, Next Header.
        out[body_start..body_start + inner.len()].copy_from_slice(inner);
        let pad_len = body_end - body_start - inner.len() - 2;
        for (i, b) in out[body_start + inner.len()..body_end - 2]
            .iter_mut()
            .enumerate()
        {
            *b = (i + 1) as u8;
        }
        out[body_end - 2] = pad_len as u8;
        out[body_end - 1] = next_header;
        match c {
            Cipher::Gcm { key, salt } => {
                let iv = seq.to_be_bytes();
                out[HEADER_LEN..body_start].copy_from_slice(&iv);
                let mut aad = [0u8; 12];
                let aad_len = gcm_aad(self.spi, seq, self.esn, &mut aad);
                let (head, tail) = out.split_at_mut(body_end);
                let tag = key
                    .seal_in_place_separate_tag(
                        gcm_nonce(salt, &iv),
                        Aad::from(&aad[..aad_len]),
                        &mut head[body_start..],
                    )
                    .map_err(|_| SealError::BufferTooSmall)?;
                tail.copy_from_slice(tag.as_ref());
            }
            Cipher::Cbc { aes, hmac, icv_len } => {
                let mut iv = [0u8; 16];
                iv[..8].copy_from_slice(&seq.to_be_bytes());
                aes.encrypt(&mut iv);
                out[HEADER_LEN..body_start].copy_from_slice(&iv);
                cbc_encrypt(aes, iv, &mut out[body_start..body_end]);
                let tag = cbc_icv(hmac, &out[..body_end], seq, self.esn);
                out[body_end..].copy_from_slice(&tag.as_ref()[..*icv_len]);
            }
        }
        Ok(total)
    }
}

/// The receiving half of a child SA, with its anti-replay window.
pub struct InboundSa {
    spi: u32,
    replay: ReplayWindow,
    esn: bool,
    cipher: Cipher,
}

impl std::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:08x}", self.spi))
            .field("esn", &self.esn)
            .field("top", &self.replay.top())
            .finish_non_exhaustive()
    }
}

/// A packet [`InboundSa::open`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Where the inner packet lies in the buffer passed to `open`.
    pub inner: Range<usize>,
    /// Its protocol (4 for IPv4, 41 for IPv6).
    pub next_header: u8,
    /// Its full (64-bit) sequence number.
    pub seq: u64,
}

impl InboundSa {
    /// An SA receiving on our `spi`.
    pub fn new(spi: u32, esn: bool, keys: &SaKeys) -> Result<InboundSa, KeyError> {
        InboundSa::with_replay_window(spi, esn, super::replay::WINDOW, keys)
    }

    /// An SA receiving on our `spi` with an anti-replay window of `window`
    /// packets (32..=1024).
    pub fn with_replay_window(
        spi: u32,
        esn: bool,
        window: u64,
        keys: &SaKeys,
    ) -> Result<InboundSa, KeyError> {
        Ok(InboundSa {
            spi,
            replay: ReplayWindow::with_size(esn, window),
            esn,
            cipher: Cipher::new(keys)?,
        })
    }

    /// The SPI this SA receives.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The highest sequence number received.
    pub fn top(&self) -> u64 {
        self.replay.top()
    }

    /// Verifies and decrypts the ESP packet in `packet` in place. The SPI
    /// has been looked up by the caller. Replays are refused before any
    /// cryptography; the window moves only after the ICV verified.
    pub fn open(&mut self, packet: &mut [u8]) -> Result<Opened, OpenError> {
        let c = &self.cipher;
        let (iv_len, icv_len, align) = (c.iv_len(), c.icv_len(), c.align());
        let body_start = HEADER_LEN + iv_len;
        if packet.len() < body_start + align + icv_len {
            return Err(OpenError::Truncated);
        }
        let body_end = packet.len() - icv_len;
        if (body_end - body_start) % align != 0 {
            return Err(OpenError::BadLength);
        }
        let seq_low = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let seq = self.replay.check(seq_low).map_err(OpenError::Replay)?;
        match c {
            Cipher::Gcm { key, salt } => {
                let mut aad = [0u8; 12];
                let aad_len = gcm_aad(self.spi, seq, self.esn, &mut aad);
                let (head, body) = packet.split_at_mut(body_start);
                key.open_in_place(
                    gcm_nonce(salt, &head[HEADER_LEN..]),
                    Aad::from(&aad[..aad_len]),
                    body,
                )
                .map_err(|_| OpenError::Integrity)?;
            }
            Cipher::Cbc { aes, hmac, icv_len } => {
                let tag = cbc_icv(hmac, &packet[..body_end], seq, self.esn);
                if !ct_eq(&tag.as_ref()[..*icv_len], &packet[body_end..]) {
                    return Err(OpenError::Integrity);
                }
                let mut iv = [0u8; 16];
                iv.copy_from_slice(&packet[HEADER_LEN..body_start]);
                cbc_decrypt(aes, iv, &mut packet[body_start..body_end]);
            }
        }
        if !self.replay.accept(seq) {
            return Err(OpenError::Replay(ReplayError::Duplicate));
        }
        let next_header = packet[body_end - 1];
        let pad_len = usize::from(packet[body_end - 2]);
        let inner_end = (body_end - 2)
            .checked_sub(pad_len)
            .filter(|&e| e >= body_start);
        let inner_end = inner_end.ok_or(OpenError::BadPadding)?;
        if next_header == NEXT_NONE {
            return Err(OpenError::Dummy);
        }
        Ok(Opened {
            inner: body_start..inner_end,
            next_header,
            seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(encr: Encr, integ: Option<Integ>, seed: u8) -> SaKeys {
        let klen = encr.keymat_len();
        SaKeys {
            encr,
            integ,
            encr_key: Zeroizing::new((0..klen).map(|i| seed.wrapping_add(i as u8)).collect()),
            integ_key: Zeroizing::new(
                (0..integ.map_or(0, |i| i.key_len()))
                    .map(|i| seed ^ i as u8)
                    .collect(),
            ),
        }
    }

    const SUITES: [(Encr, Option<Integ>); 5] = [
        (Encr::AesGcm16 { key_bits: 128 }, None),
        (Encr::AesGcm16 { key_bits: 256 }, None),
        (Encr::AesCbc { key_bits: 128 }, Some(Integ::HmacSha256_128)),
        (Encr::AesCbc { key_bits: 256 }, Some(Integ::HmacSha384_192)),
        (Encr::AesCbc { key_bits: 256 }, Some(Integ::HmacSha512_256)),
    ];

    fn pair(encr: Encr, integ: Option<Integ>, esn: bool) -> (OutboundSa, InboundSa) {
        let k = keys(encr, integ, 7);
        (
            OutboundSa::new(0x1234_5678, esn, &k).unwrap(),
            InboundSa::new(0x1234_5678, esn, &k).unwrap(),
        )
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 3602 §4, cases #1 and #2: the AES-CBC the ESP SAs use.
    #[test]
    fn aes_cbc_matches_rfc3602_vectors() {
        for (key, iv, plain, cipher) in [
            (
                "06a9214036b8a15b512e03d534120006",
                "3dafba429d9eb430b422da802c9fac41",
                b"Single block msg".to_vec(),
                "e353779c1079aeb82708942dbe77181a",
            ),
            (
                "c286696d887c9aa0611bbb3e2025a45a",
                "562e17996d093d28ddb3ba695a2e6f58",
                (0u8..32).collect(),
                "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1",
            ),
        ] {
            let aes = Aes::new(&unhex(key)).unwrap();
            let mut iv_bytes = [0u8; 16];
            iv_bytes.copy_from_slice(&unhex(iv));
            let mut data = plain.clone();
            cbc_encrypt(&aes, iv_bytes, &mut data);
            assert_eq!(data, unhex(cipher));
            cbc_decrypt(&aes, iv_bytes, &mut data);
            assert_eq!(data, plain);
        }
    }

    #[test]
    fn round_trip_every_suite_and_size() {
        for (encr, integ) in SUITES {
            for esn in [false, true] {
                let (tx, mut rx) = pair(encr, integ, esn);
                for len in [0usize, 1, 2, 3, 13, 14, 15, 16, 17, 20, 1400, 1500] {
                    let inner: Vec<u8> = (0..len).map(|i| i as u8).collect();
                    let mut buf = vec![0u8; 2048];
                    let n = tx.seal(&inner, NEXT_IPV4, &mut buf).unwrap();
                    assert_eq!(n, tx.sealed_len(len));
                    assert_eq!(&buf[..4], &0x1234_5678u32.to_be_bytes());
                    let opened = rx.open(&mut buf[..n]).unwrap();
                    assert_eq!(
                        &buf[opened.inner.clone()],
                        &inner[..],
                        "{encr:?} {esn} {len}"
                    );
                    assert_eq!(opened.next_header, NEXT_IPV4);
                }
            }
        }
    }

    #[test]
    fn tampering_replay_and_wrong_key_are_refused() {
        for (encr, integ) in SUITES {
            let (tx, mut rx) = pair(encr, integ, false);
            let mut buf = [0u8; 256];
            let n = tx.seal(b"hello", NEXT_IPV4, &mut buf).unwrap();
            for i in 4..n {
                let mut bad = buf;
                bad[i] ^= 0x01;
                let err = rx.open(&mut bad[..n]).unwrap_err();
                assert!(
                    matches!(err, OpenError::Integrity | OpenError::Replay(_)),
                    "byte {i}: {err:?}"
                );
            }
            let mut good = buf;
            rx.open(&mut good[..n]).unwrap();
            let mut again = buf;
            assert_eq!(
                rx.open(&mut again[..n]),
                Err(OpenError::Replay(ReplayError::Duplicate))
            );
            let mut other = InboundSa::new(0x1234_5678, false, &keys(encr, integ, 8)).unwrap();
            let n2 = tx.seal(b"hello", NEXT_IPV4, &mut buf).unwrap();
            assert_eq!(other.open(&mut buf[..n2]), Err(OpenError::Integrity));
        }
    }

    #[test]
    fn short_and_misaligned_packets_never_panic() {
        for (encr, integ) in SUITES {
            let (tx, mut rx) = pair(encr, integ, true);
            let mut buf = [0u8; 256];
            let n = tx.seal(b"some inner packet", NEXT_IPV6, &mut buf).unwrap();
            for len in 0..n {
                let mut cut = buf;
                assert!(rx.open(&mut cut[..len]).is_err(), "{len}");
            }
        }
    }

    #[test]
    fn small_buffer_and_key_errors() {
        let (tx, _) = pair(Encr::AesGcm16 { key_bits: 256 }, None, false);
        let mut small = [0u8; 20];
        assert_eq!(
            tx.seal(b"0123456789", NEXT_IPV4, &mut small),
            Err(SealError::BufferTooSmall)
        );
        let mut k = keys(Encr::AesGcm16 { key_bits: 256 }, None, 1);
        k.encr_key.pop();
        assert!(matches!(
            OutboundSa::new(1, false, &k),
            Err(KeyError::EncrKeyLength { .. })
        ));
        let k = keys(Encr::AesCbc { key_bits: 256 }, None, 1);
        assert_eq!(
            OutboundSa::new(1, false, &k).unwrap_err(),
            KeyError::Integrity
        );
    }

    #[test]
    fn sequence_numbers_run_out_without_esn() {
        let (tx, _) = pair(Encr::AesGcm16 { key_bits: 128 }, None, false);
        tx.seq.store(u64::from(u32::MAX) - 1, Ordering::Relaxed);
        let mut buf = [0u8; 128];
        assert!(tx.seal(b"x", NEXT_IPV4, &mut buf).is_ok());
        assert_eq!(
            tx.seal(b"x", NEXT_IPV4, &mut buf),
            Err(SealError::SequenceExhausted)
        );
    }

    #[test]
    fn dummy_packets_are_dropped() {
        let (tx, mut rx) = pair(Encr::AesGcm16 { key_bits: 128 }, None, false);
        let mut buf = [0u8; 128];
        let n = tx.seal(b"", NEXT_NONE, &mut buf).unwrap();
        assert_eq!(rx.open(&mut buf[..n]), Err(OpenError::Dummy));
    }
}
