//! `InboundSa::open` with fixed keys, for each suite we implement (AES-GCM
//! 128/256, AES-CBC with HMAC-SHA-256/384/512), with and without ESN.
//! Never panics, and:
//! - mode 0: arbitrary packets (the length checks, the replay window
//!   before any crypto, the ICV check);
//! - mode 1: inner packets sealed by `OutboundSa::seal` open to the same
//!   octets, protocol and sequence number;
//! - mode 2: packets forged with the right keys around arbitrary
//!   plaintext (`vpngw_fuzz::esp_forge`), so that what follows the ICV
//!   check (padding, Next Header, the window moving) sees arbitrary
//!   octets; what opens lies inside the packet;
//! - mode 3: a sealed packet with one octet after the SPI changed never
//!   opens.
//!
//! input = control octet (bits 0-2 suite, bit 3 ESN, bits 4-5 mode, bits
//! 6-7 replay window size), then records of a 2-octet length and octets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpngw_fuzz::{esp_forge, esp_keys, records, ESP_SPI as SPI, ESP_SUITES as SUITES};
use vpngw_tunnel::esp::sa::{InboundSa, OpenError, OutboundSa, HEADER_LEN, NEXT_NONE};

const WINDOWS: [u64; 4] = [1024, 32, 64, 100];

fuzz_target!(|data: &[u8]| {
    let [ctl, rest @ ..] = data else {
        return;
    };
    let (encr, integ) = SUITES[usize::from(ctl & 7) % SUITES.len()];
    let esn = ctl & 8 != 0;
    let window = WINDOWS[usize::from(ctl >> 6)];
    let k = esp_keys(encr, integ);
    let tx = OutboundSa::new(SPI, esn, &k).expect("outbound SA");
    let mut rx = InboundSa::with_replay_window(SPI, esn, window, &k).expect("inbound SA");
    for record in records(rest) {
        match (ctl >> 4) & 3 {
            0 => {
                let mut packet = record.to_vec();
                if let Ok(o) = rx.open(&mut packet) {
                    assert!(o.inner.start <= o.inner.end && o.inner.end <= packet.len());
                }
            }
            1 => {
                let [next_header, inner @ ..] = record else {
                    continue;
                };
                let mut packet = vec![0u8; tx.sealed_len(inner.len())];
                let n = tx.seal(inner, *next_header, &mut packet).expect("seal");
                assert_eq!(n, packet.len());
                match rx.open(&mut packet) {
                    Ok(o) => {
                        assert_ne!(*next_header, NEXT_NONE);
                        assert_eq!(&packet[o.inner.clone()], inner, "ESP round trip");
                        assert_eq!(o.next_header, *next_header);
                        assert_eq!(o.seq, tx.packets());
                    }
                    Err(OpenError::Dummy) => assert_eq!(*next_header, NEXT_NONE),
                    Err(e) => panic!("a sealed packet did not open: {e:?}"),
                }
            }
            2 => {
                let [a, b, c, d, body @ ..] = record else {
                    continue;
                };
                let seq = u32::from_be_bytes([*a, *b, *c, *d]);
                let mut packet = esp_forge(&k, esn, seq, body);
                let sent = packet.clone();
                if let Ok(o) = rx.open(&mut packet) {
                    // What opened is the plaintext forged: its start, and
                    // its last octet as Next Header.
                    let align = if k.integ.is_some() { 16 } else { 4 };
                    let plain = &body[..body.len() / align * align];
                    assert!(o.inner.start <= o.inner.end && o.inner.end <= packet.len());
                    assert_eq!(packet[..HEADER_LEN], sent[..HEADER_LEN]);
                    assert_eq!(&packet[o.inner.clone()], &plain[..o.inner.len()]);
                    assert_eq!(Some(&o.next_header), plain.last());
                    assert_eq!(o.seq & 0xffff_ffff, u64::from(seq));
                    assert_ne!(o.next_header, NEXT_NONE);
                }
            }
            _ => {
                let [at, xor, inner @ ..] = record else {
                    continue;
                };
                let mut packet = vec![0u8; tx.sealed_len(inner.len())];
                tx.seal(inner, 4, &mut packet).expect("seal");
                // The SPI octets are the caller's (it found the SA by them):
                // GCM authenticates the SA's SPI, not the packet's copy.
                let at = 4 + usize::from(*at) % (packet.len() - 4);
                packet[at] ^= xor.max(&1);
                let opened = rx.open(&mut packet);
                assert!(opened.is_err(), "a changed packet opened: octet {at}");
            }
        }
    }
    let _ = (rx.top(), rx.spi(), tx.spi());
});
