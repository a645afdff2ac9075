//! The TUN offload code, which sees packets a remote peer chose (decrypted
//! ESP, coalesced on the way into the TUN device) and super-packets from
//! the kernel. Never panics, and:
//! - mode 0: each record is a decrypted packet offered to `Coalescer::push`
//!   (flushing when it says so). Every super-packet it builds, cut up again
//!   by `segment` as the kernel would, gives back as many packets as went
//!   in, carrying the same payload octets in the same order;
//! - mode 1: each record is a virtio-net header and a packet as a TUN read
//!   returns them, cut up by `segment` (a piece is the packet itself or
//!   fits the scratch buffer).
//!
//! input = control octet (bit 0 mode, bit 1 UDP coalescing off), then
//! records of a 2-octet length and octets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpngw_fuzz::records;
use vpngw_tunnel::driver::offload::{segment, Coalescer, Push, VnetHdr, GSO_NONE, VNET_HDR_LEN};

/// Checks a flushed super-packet against the packets that went into it.
fn check(out: &[u8], merged: &[Vec<u8>]) {
    let hdr = VnetHdr::parse(out).expect("a flush starts with a header");
    let mut packet = out[VNET_HDR_LEN..].to_vec();
    if hdr.gso_type == GSO_NONE {
        assert_eq!(merged.len(), 1, "several packets flushed without GSO");
        assert_eq!(packet, merged[0], "a lone packet changed");
        return;
    }
    let hl = usize::from(hdr.hdr_len);
    let mut scratch = vec![0u8; 70_000];
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    segment(&hdr, &mut packet, &mut scratch, |s| pieces.push(s.to_vec()))
        .expect("our own super-packet segments");
    assert_eq!(pieces.len(), merged.len(), "segments in and out");
    for (p, m) in pieces.iter().zip(merged) {
        assert_eq!(p.len(), m.len(), "a segment's length");
        assert_eq!(p[hl..], m[hl..], "a segment's payload");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    if control & 1 == 0 {
        let mut c = if control & 2 == 0 {
            Coalescer::new()
        } else {
            Coalescer::tcp_only()
        };
        let mut merged: Vec<Vec<u8>> = Vec::new();
        for record in records(rest) {
            let _ = c.holds_flow(record);
            let mut pushed = c.push(record);
            if pushed == Push::Flush {
                if let Some(out) = c.flush() {
                    check(out, &merged);
                }
                merged.clear();
                pushed = c.push(record);
            }
            match pushed {
                Push::Merged => merged.push(record.to_vec()),
                Push::Flush | Push::Alone => {
                    if let Some(out) = c.flush() {
                        check(out, &merged);
                    }
                    merged.clear();
                }
            }
        }
        if let Some(out) = c.flush() {
            check(out, &merged);
        }
    } else {
        let mut scratch = vec![0u8; 2048];
        for record in records(rest) {
            let Some(hdr) = VnetHdr::parse(record) else {
                continue;
            };
            let mut packet = record[VNET_HDR_LEN..].to_vec();
            let most = packet.len().max(scratch.len());
            let _ = segment(&hdr, &mut packet, &mut scratch, |s| {
                assert!(s.len() <= most, "a piece longer than what it came from");
            });
        }
    }
});
