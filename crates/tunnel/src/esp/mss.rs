//! TCP MSS clamping for packets entering and leaving a tunnel.
//!
//! Many peers do not reassemble fragmented ESP, so TCP must not send
//! segments that do not fit the tunnel: on SYN and SYN-ACK packets the
//! Maximum Segment Size option is lowered to the clamp, and the TCP
//! checksum is updated incrementally (RFC 1624). Everything else passes
//! untouched; malformed packets are left alone (the receiver drops them).

const TCP: u8 = 6;
const SYN: u8 = 0x02;

/// Lowers the MSS option of a TCP SYN in `packet` (IPv4 or IPv6) to at most
/// `max_mss` — the IPv4 figure (the tunnel MTU minus 40); an IPv6 SYN gets
/// 20 less, its header being 20 octets longer. Returns true if the packet
/// was changed.
pub fn clamp_mss(packet: &mut [u8], mut max_mss: u16) -> bool {
    let Some(&first) = packet.first() else {
        return false;
    };
    let tcp_start = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            let not_first_fragment = packet
                .get(6..8)
                .is_none_or(|f| u16::from_be_bytes([f[0], f[1]]) & 0x1fff != 0);
            if ihl < 20 || packet.get(9) != Some(&TCP) || not_first_fragment {
                return false;
            }
            ihl
        }
        6 => {
            if packet.get(6) != Some(&TCP) {
                return false;
            }
            // The IPv6 header is 20 octets longer: so is the MSS shorter.
            max_mss = max_mss.saturating_sub(20);
            40
        }
        _ => return false,
    };
    let Some(tcp) = packet.get_mut(tcp_start..) else {
        return false;
    };
    if tcp.len() < 20 || tcp[13] & SYN == 0 {
        return false;
    }
    let header_len = usize::from(tcp[12] >> 4) * 4;
    if header_len < 20 || header_len > tcp.len() {
        return false;
    }
    let mut i = 20;
    while i < header_len {
        match tcp[i] {
            0 => return false,
            1 => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || i + len > header_len {
                    return false;
                }
                if kind == 2 && len == 4 {
                    let old = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if old <= max_mss {
                        return false;
                    }
                    tcp[i + 2..i + 4].copy_from_slice(&max_mss.to_be_bytes());
                    let sum = u16::from_be_bytes([tcp[16], tcp[17]]);
                    tcp[16..18].copy_from_slice(&adjust_checksum(sum, old, max_mss).to_be_bytes());
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// RFC 1624 eq. 3: HC' = ~(~HC + ~m + m').
fn adjust_checksum(sum: u16, old: u16, new: u16) -> u16 {
    let mut acc = u32::from(!sum) + u32::from(!old) + u32::from(new);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full one's complement checksum over the TCP segment and pseudo-header.
    fn tcp_checksum_v4(packet: &[u8]) -> u16 {
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let tcp = &packet[ihl..];
        let mut acc: u32 = 0;
        let mut add = |b: &[u8]| {
            for c in b.chunks(2) {
                acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
        };
        add(&packet[12..20]);
        add(&[0, TCP]);
        add(&(tcp.len() as u16).to_be_bytes());
        add(tcp);
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    fn syn_v4(mss: u16) -> Vec<u8> {
        let mut p = vec![0u8; 20 + 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&48u16.to_be_bytes());
        p[8] = 64;
        p[9] = TCP;
        p[12..16].copy_from_slice(&[10, 1, 0, 2]);
        p[16..20].copy_from_slice(&[10, 2, 0, 2]);
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&5201u16.to_be_bytes());
        t[12] = 7 << 4; // 28 bytes
        t[13] = SYN;
        t[20..24].copy_from_slice(&[1, 1, 4, 2]); // NOP NOP SACK-permitted
        t[24..28].copy_from_slice(&[2, 4, 0, 0]);
        t[26..28].copy_from_slice(&mss.to_be_bytes());
        let sum = tcp_checksum_v4(&p);
        p[36..38].copy_from_slice(&sum.to_be_bytes());
        p
    }

    #[test]
    fn clamps_and_keeps_the_checksum_valid() {
        let mut p = syn_v4(1460);
        assert_eq!(tcp_checksum_v4(&p), 0);
        assert!(clamp_mss(&mut p, 1360));
        assert_eq!(u16::from_be_bytes([p[46], p[47]]), 1360);
        assert_eq!(tcp_checksum_v4(&p), 0, "checksum still verifies");
    }

    /// The same SYN in IPv6 (a 40-octet header instead of 20).
    fn syn_v6(mss: u16) -> Vec<u8> {
        let v4 = syn_v4(mss);
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&28u16.to_be_bytes());
        p[6] = TCP;
        p[7] = 64;
        p[8..24].copy_from_slice(
            &"2001:db8:1::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        p[24..40].copy_from_slice(
            &"2001:db8:2::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        p.extend_from_slice(&v4[20..]);
        p
    }

    /// One's complement sum of the IPv6 pseudo-header and the segment.
    fn tcp_checksum_v6(packet: &[u8]) -> u16 {
        let tcp = &packet[40..];
        let mut acc: u32 = 0;
        for c in packet[8..40].chunks(2).chain(tcp.chunks(2)) {
            acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        acc += tcp.len() as u32 + u32::from(TCP);
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn an_ipv6_syn_is_clamped_20_octets_lower() {
        let mut p = syn_v6(1440);
        // Give it a valid checksum first.
        p[56..58].copy_from_slice(&[0, 0]);
        let sum = tcp_checksum_v6(&p);
        p[56..58].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(tcp_checksum_v6(&p), 0);
        // An IPv4 clamp of 1360 (MTU 1400) is 1340 for IPv6.
        assert!(clamp_mss(&mut p, 1360));
        assert_eq!(u16::from_be_bytes([p[66], p[67]]), 1340);
        assert_eq!(tcp_checksum_v6(&p), 0, "checksum still verifies");
        let mut small = syn_v6(1300);
        assert!(!clamp_mss(&mut small, 1360));
    }

    #[test]
    fn leaves_small_mss_non_syn_and_garbage_alone() {
        let mut p = syn_v4(1200);
        let before = p.clone();
        assert!(!clamp_mss(&mut p, 1360));
        assert_eq!(p, before);
        let mut ack = syn_v4(1460);
        ack[33] = 0x10;
        assert!(!clamp_mss(&mut ack, 1360));
        let good = syn_v4(1460);
        for len in 0..good.len() {
            let mut cut = good[..len].to_vec();
            clamp_mss(&mut cut, 1360);
        }
        let mut bad_opts = syn_v4(1460);
        bad_opts[45] = 0;
        bad_opts[44] = 9;
        assert!(!clamp_mss(&mut bad_opts, 1360));
    }
}
