//! ESP datapath crypto: which AES-GCM implementation, and what one SA costs.
//!
//! `cargo bench -p vpngw-tunnel --bench esp`
//!
//! - `aead/{ring,aes-gcm}/{seal,open}/N`: the raw AEAD of both candidate
//!   crates in place on an N-byte payload (the choice issue 3 asks for).
//! - `esp/{suite}/{seal,open}/N`: our `OutboundSa::seal` and
//!   `InboundSa::open` for an N-byte inner packet, everything included
//!   (header, padding, ICV, replay window).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use aes_gcm::aead::{AeadInPlace, KeyInit};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use vpngw_tunnel::esp::sa::{InboundSa, OutboundSa, SaKeys, NEXT_IPV4};
use vpngw_tunnel::ike::proposal::{Encr, Integ};
use zeroize::Zeroizing;

const SIZES: [usize; 4] = [64, 512, 1400, 9000];

fn aead(c: &mut Criterion) {
    let key = [7u8; 32];
    let nonce = [1u8; 12];
    let aad = [2u8; 8];
    let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
    let rc_key = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
    let mut group = c.benchmark_group("aead");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0u8; size];
        group.bench_function(BenchmarkId::new("ring/seal", size), |b| {
            b.iter(|| {
                let n = Nonce::assume_unique_for_key(nonce);
                ring_key
                    .seal_in_place_separate_tag(n, Aad::from(&aad), &mut buf)
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("aes-gcm/seal", size), |b| {
            b.iter(|| {
                rc_key
                    .encrypt_in_place_detached((&nonce).into(), &aad, &mut buf)
                    .unwrap()
            })
        });
        // Open: a valid ciphertext and tag, decrypted into a fresh copy each time.
        let mut sealed = vec![0u8; size];
        let tag = ring_key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut sealed,
            )
            .unwrap();
        let mut with_tag = sealed.clone();
        with_tag.extend_from_slice(tag.as_ref());
        group.bench_function(BenchmarkId::new("ring/open", size), |b| {
            b.iter_batched_ref(
                || with_tag.clone(),
                |ct| {
                    let n = Nonce::assume_unique_for_key(nonce);
                    ring_key
                        .open_in_place(n, Aad::from(&aad), ct)
                        .unwrap()
                        .len()
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function(BenchmarkId::new("aes-gcm/open", size), |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |ct| {
                    rc_key
                        .decrypt_in_place_detached((&nonce).into(), &aad, ct, tag.as_ref().into())
                        .unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn keys(encr: Encr, integ: Option<Integ>) -> SaKeys {
    SaKeys {
        encr,
        integ,
        encr_key: Zeroizing::new(vec![3u8; encr.keymat_len()]),
        integ_key: Zeroizing::new(vec![4u8; integ.map_or(0, |i| i.key_len())]),
    }
}

fn esp(c: &mut Criterion) {
    let suites = [
        ("aes256gcm16", Encr::AesGcm16 { key_bits: 256 }, None),
        (
            "aes256-sha256",
            Encr::AesCbc { key_bits: 256 },
            Some(Integ::HmacSha256_128),
        ),
    ];
    let mut group = c.benchmark_group("esp");
    for (name, encr, integ) in suites {
        let k = keys(encr, integ);
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            let inner = vec![0x45u8; size];
            let tx = OutboundSa::new(0x1000, true, &k).unwrap();
            let mut out = vec![0u8; size + 128];
            group.bench_function(BenchmarkId::new(format!("{name}/seal"), size), |b| {
                b.iter(|| tx.seal(&inner, NEXT_IPV4, &mut out).unwrap())
            });
            let mut rx = InboundSa::new(0x1000, true, &k).unwrap();
            group.bench_function(BenchmarkId::new(format!("{name}/open"), size), |b| {
                b.iter_batched_ref(
                    || {
                        let mut p = vec![0u8; size + 128];
                        let n = tx.seal(&inner, NEXT_IPV4, &mut p).unwrap();
                        p.truncate(n);
                        p
                    },
                    |p| rx.open(p).unwrap().inner.len(),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, aead, esp);
criterion_main!(benches);
