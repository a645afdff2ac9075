//! TUN offloads, done in user space: the virtio-net header the kernel puts
//! in front of every packet of an `IFF_VNET_HDR` TUN device, TCP
//! segmentation of the super-packets it hands over with TSO enabled (up to
//! 64 KiB in one read instead of one read per MTU-sized packet), checksum
//! completion, and the reverse — coalescing consecutive TCP segments, or
//! UDP datagrams of one size, of one flow into one super-packet for one
//! write (GRO; UDP as `VIRTIO_NET_HDR_GSO_UDP_L4`, which the kernel cuts
//! back into the datagrams, or hands whole to a receiver with `UDP_GRO`).
//!
//! Plain functions over byte slices; no I/O. The datapath calls them per
//! read and per write; nothing allocates.

/// Length of `struct virtio_net_hdr` (no `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start +
/// csum_offset` holds only the pseudo-header sum.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the receiver may skip checksum checks.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP datagrams of `gso_size` bytes of
/// payload each, one header (`UDP_SEGMENT`).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN` (ORed into the type).
pub const GSO_ECN: u8 = 0x80;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// The virtio-net header (native byte order, as TUN uses by default on a
/// little-endian host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_*` flags.
    pub flags: u8,
    /// `GSO_*` type.
    pub gso_type: u8,
    /// Length of the headers (IP + TCP) of a GSO packet.
    pub hdr_len: u16,
    /// Payload bytes per segment of a GSO packet.
    pub gso_size: u16,
    /// Where checksumming starts (with `F_NEEDS_CSUM`).
    pub csum_start: u16,
    /// Where, from `csum_start`, the checksum goes.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header at the start of `b`.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// Writes the header into `out[..VNET_HDR_LEN]`.
    pub fn write(&self, out: &mut [u8]) {
        if let Some(o) = out.get_mut(..VNET_HDR_LEN) {
            o[0] = self.flags;
            o[1] = self.gso_type;
            o[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
            o[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
            o[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
            o[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        }
    }
}

/// Why a packet from the TUN device could not be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// Shorter than its headers say, or not IP.
    Malformed,
    /// A GSO type or protocol we did not ask the kernel for.
    Unsupported,
    /// A segment does not fit the scratch buffer.
    TooLarge,
}

/// Adds `data` to a ones'-complement sum (big-endian 16-bit words).
fn add(mut sum: u64, data: &[u8]) -> u64 {
    // Eight bytes at a time, as two 32-bit halves (no overflow below 2^32
    // chunks).
    let mut eights = data.chunks_exact(8);
    for c in &mut eights {
        let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        sum += (v >> 32) + (v & 0xffff_ffff);
    }
    let mut chunks = eights.remainder().chunks_exact(4);
    for c in &mut chunks {
        sum += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        sum += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        sum += u64::from(rest[i]) << 8;
    }
    sum
}

/// Folds a sum to 16 bits.
fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `data` (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(add(0, data))
}

/// The TCP/UDP pseudo-header sum of an IP packet's addresses, protocol and
/// upper-layer length; None if not IPv4 or IPv6.
fn pseudo_sum(packet: &[u8], proto: u8, len: usize) -> Option<u64> {
    match packet.first()? >> 4 {
        4 => {
            let addrs = packet.get(12..20)?;
            Some(add(0, addrs) + u64::from(proto) + len as u64)
        }
        6 => {
            let addrs = packet.get(8..40)?;
            Some(add(0, addrs) + u64::from(proto) + len as u64)
        }
        _ => None,
    }
}

/// Completes a `F_NEEDS_CSUM` packet: the 16 bits at `start + offset`
/// hold the pseudo-header sum; the checksum of everything from `start`
/// replaces them.
pub fn complete_checksum(
    packet: &mut [u8],
    start: usize,
    offset: usize,
) -> Result<(), OffloadError> {
    let at = start + offset;
    if at + 2 > packet.len() || start > packet.len() {
        return Err(OffloadError::Malformed);
    }
    let sum = add(0, &packet[start..]);
    let c = !fold(sum);
    packet[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// IP and TCP header lengths of a TCP packet: (IP header length, TCP
/// header length); IPv6 without extension headers only.
fn tcp_headers(packet: &[u8]) -> Result<(usize, usize), OffloadError> {
    let first = *packet.first().ok_or(OffloadError::Malformed)?;
    let ip_len = match first >> 4 {
        4 => {
            if packet.get(9) != Some(&PROTO_TCP) {
                return Err(OffloadError::Unsupported);
            }
            usize::from(first & 0x0f) * 4
        }
        6 => {
            if packet.get(6) != Some(&PROTO_TCP) {
                return Err(OffloadError::Unsupported);
            }
            40
        }
        _ => return Err(OffloadError::Malformed),
    };
    let doff = usize::from(packet.get(ip_len + 12).ok_or(OffloadError::Malformed)? >> 4) * 4;
    if ip_len < 20 || doff < 20 || ip_len + doff > packet.len() {
        return Err(OffloadError::Malformed);
    }
    Ok((ip_len, doff))
}

/// A UDP datagram that may join a `GSO_UDP_L4` run: IPv4 without options
/// or fragmentation, or IPv6 with UDP as the first next header; lengths
/// consistent, some payload. Returns (IP header length, packet end).
fn plain_udp(packet: &[u8]) -> Option<(usize, usize)> {
    let (ip_len, end) = match packet.first()? >> 4 {
        4 => {
            let h = packet.get(..20)?;
            if h[0] != 0x45 || h[9] != PROTO_UDP || h[6] & 0x3f != 0 || h[7] != 0 {
                return None;
            }
            (20, usize::from(u16::from_be_bytes([h[2], h[3]])))
        }
        6 => {
            let h = packet.get(..40)?;
            if h[6] != PROTO_UDP {
                return None;
            }
            (40, 40 + usize::from(u16::from_be_bytes([h[4], h[5]])))
        }
        _ => return None,
    };
    let udp = packet.get(ip_len..ip_len + 8)?;
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    (end == packet.len() && udp_len == end - ip_len && udp_len > 8).then_some((ip_len, end))
}

/// Sets the IP length fields and checksum and the TCP checksum of a TCP
/// packet whose headers and payload are in place.
fn finish_tcp(seg: &mut [u8], ip_len: usize) -> Result<(), OffloadError> {
    set_ip_length(seg, ip_len);
    let tcp_len = seg.len() - ip_len;
    let pseudo = pseudo_sum(seg, PROTO_TCP, tcp_len).ok_or(OffloadError::Malformed)?;
    seg[ip_len + 16..ip_len + 18].copy_from_slice(&[0, 0]);
    let c = !fold(add(pseudo, &seg[ip_len..]));
    seg[ip_len + 16..ip_len + 18].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Sets the IP header's length field to `seg`'s length (IPv4: with a new
/// header checksum; IPv6: the payload after the 40-byte header).
fn set_ip_length(seg: &mut [u8], ip_len: usize) {
    let total = seg.len();
    if seg[0] >> 4 == 4 {
        seg[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        seg[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&seg[..ip_len]);
        seg[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        seg[4..6].copy_from_slice(&((total - ip_len) as u16).to_be_bytes());
    }
}

/// Builds segment `i` of a super-packet in `scratch`: its `hl` bytes of
/// headers, then payload from `hl + i * mss`, at most `mss` bytes and not
/// past `end`; an IPv4 id one more per segment. Lengths and checksums are
/// the caller's.
fn cut<'a>(
    packet: &[u8],
    scratch: &'a mut [u8],
    hl: usize,
    mss: usize,
    end: usize,
    i: usize,
) -> &'a mut [u8] {
    let from = hl + i * mss;
    let to = (from + mss).min(end);
    let seg = &mut scratch[..hl + (to - from)];
    seg[..hl].copy_from_slice(&packet[..hl]);
    seg[hl..].copy_from_slice(&packet[from..to]);
    if seg[0] >> 4 == 4 {
        let id = u16::from_be_bytes([packet[4], packet[5]]).wrapping_add(i as u16);
        seg[4..6].copy_from_slice(&id.to_be_bytes());
    }
    seg
}

/// Splits what one read from the TUN device returned (`packet`, after the
/// virtio-net header `hdr`) into ordinary IP packets, each built in
/// `scratch` and handed to `f` with its checksums complete. A packet that
/// needs no segmentation is handed over in place. Returns how many
/// packets `f` got.
pub fn segment(
    hdr: &VnetHdr,
    packet: &mut [u8],
    scratch: &mut [u8],
    mut f: impl FnMut(&mut [u8]),
) -> Result<usize, OffloadError> {
    let gso = hdr.gso_type & !GSO_ECN;
    if gso == GSO_NONE {
        if hdr.flags & F_NEEDS_CSUM != 0 {
            complete_checksum(
                packet,
                usize::from(hdr.csum_start),
                usize::from(hdr.csum_offset),
            )?;
        }
        f(packet);
        return Ok(1);
    }
    if gso == GSO_UDP_L4 {
        return segment_udp(hdr, packet, scratch, f);
    }
    if gso != GSO_TCPV4 && gso != GSO_TCPV6 {
        return Err(OffloadError::Unsupported);
    }
    let (ip_len, tcp_len) = tcp_headers(packet)?;
    let hl = ip_len + tcp_len;
    let mss = usize::from(hdr.gso_size);
    // An IPv4 total length shorter than the read trims padding.
    let end = if packet[0] >> 4 == 4 {
        usize::from(u16::from_be_bytes([packet[2], packet[3]])).clamp(hl, packet.len())
    } else {
        packet.len()
    };
    let payload = end - hl;
    if mss == 0 || payload == 0 {
        finish_tcp(&mut packet[..end], ip_len)?;
        f(&mut packet[..end]);
        return Ok(1);
    }
    if hl + mss > scratch.len() {
        return Err(OffloadError::TooLarge);
    }
    let seq = u32::from_be_bytes([
        packet[ip_len + 4],
        packet[ip_len + 5],
        packet[ip_len + 6],
        packet[ip_len + 7],
    ]);
    let flags = packet[ip_len + 13];
    let count = payload.div_ceil(mss);
    for i in 0..count {
        let seg = cut(packet, scratch, hl, mss, end, i);
        let s = seq.wrapping_add((i * mss) as u32);
        seg[ip_len + 4..ip_len + 8].copy_from_slice(&s.to_be_bytes());
        let mut fl = flags;
        if i + 1 < count {
            fl &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            fl &= !TCP_CWR;
        }
        seg[ip_len + 13] = fl;
        finish_tcp(seg, ip_len)?;
        f(seg);
    }
    Ok(count)
}

/// [`segment`] for a `GSO_UDP_L4` packet: one UDP datagram per `gso_size`
/// bytes of payload, each with its own lengths and a full checksum.
fn segment_udp(
    hdr: &VnetHdr,
    packet: &mut [u8],
    scratch: &mut [u8],
    mut f: impl FnMut(&mut [u8]),
) -> Result<usize, OffloadError> {
    let first = *packet.first().ok_or(OffloadError::Malformed)?;
    let (ip_len, end) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            let total = packet.get(2..4).ok_or(OffloadError::Malformed)?;
            (ihl, usize::from(u16::from_be_bytes([total[0], total[1]])))
        }
        6 => (40, packet.len()),
        _ => return Err(OffloadError::Malformed),
    };
    let proto = if first >> 4 == 4 {
        packet.get(9)
    } else {
        packet.get(6)
    };
    if proto != Some(&PROTO_UDP) {
        return Err(OffloadError::Unsupported);
    }
    let hl = ip_len + 8;
    let mss = usize::from(hdr.gso_size);
    if ip_len < 20 || hl > packet.len() || mss == 0 {
        return Err(OffloadError::Malformed);
    }
    let end = end.clamp(hl, packet.len());
    if hl + mss > scratch.len() {
        return Err(OffloadError::TooLarge);
    }
    let count = (end - hl).div_ceil(mss).max(1);
    for i in 0..count {
        let seg = cut(packet, scratch, hl, mss, end, i);
        set_ip_length(seg, ip_len);
        let udp_len = seg.len() - ip_len;
        seg[ip_len + 4..ip_len + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        seg[ip_len + 6..ip_len + 8].copy_from_slice(&[0, 0]);
        let pseudo = pseudo_sum(seg, PROTO_UDP, udp_len).ok_or(OffloadError::Malformed)?;
        // 0 means "no checksum" in UDP: a computed 0 is sent as all ones.
        let c = match !fold(add(pseudo, &seg[ip_len..])) {
            0 => 0xffff,
            c => c,
        };
        seg[ip_len + 6..ip_len + 8].copy_from_slice(&c.to_be_bytes());
        f(seg);
    }
    Ok(count)
}

/// Coalesces consecutive TCP segments of one flow into one super-packet
/// for a single write to an `IFF_VNET_HDR` TUN device (GRO in user space);
/// likewise consecutive UDP datagrams of one flow with the same payload
/// length (the last may be shorter), as one `GSO_UDP_L4` packet.
///
/// [`Coalescer::push`] takes each decrypted packet; it either joins the
/// super-packet being built or says the caller must [`Coalescer::flush`]
/// first. The buffer holds the virtio-net header, then the first
/// segment's headers, then every segment's payload.
#[derive(Debug)]
pub struct Coalescer {
    buf: Vec<u8>,
    /// Bytes in `buf` (header included); 0: empty.
    len: usize,
    ip_len: usize,
    hl: usize,
    mss: usize,
    segments: usize,
    next_seq: u32,
    /// The last segment was shorter than `mss` or carried PSH/FIN: nothing
    /// may follow it.
    closed: bool,
    /// What is held is UDP, not TCP.
    udp: bool,
    /// Whether UDP datagrams are coalesced at all.
    udp_allowed: bool,
}

/// What [`Coalescer::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// The packet joined (or started) the super-packet.
    Merged,
    /// It cannot join: flush, then push it again.
    Flush,
    /// Not something to coalesce: flush, then write it alone.
    Alone,
}

/// The most a super-packet carries (IP's 64 KiB limit, less headroom).
const GRO_MAX: usize = 65_000;
/// The most segments in one super-packet.
const GRO_MAX_SEGMENTS: usize = 64;

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer::new()
    }
}

impl Coalescer {
    /// An empty coalescer (its buffer is allocated once, here).
    pub fn new() -> Coalescer {
        Coalescer {
            buf: vec![0; VNET_HDR_LEN + GRO_MAX + 256],
            len: 0,
            ip_len: 0,
            hl: 0,
            mss: 0,
            segments: 0,
            next_seq: 0,
            closed: false,
            udp: false,
            udp_allowed: true,
        }
    }

    /// One that leaves UDP alone (each datagram its own write): for
    /// measuring what UDP coalescing gives.
    pub fn tcp_only() -> Coalescer {
        Coalescer {
            udp_allowed: false,
            ..Coalescer::new()
        }
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `packet` belongs to the flow held (same addresses, protocol
    /// and ports); false if empty.
    pub fn holds_flow(&self, packet: &[u8]) -> bool {
        if self.len == 0 {
            return false;
        }
        let head = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + self.hl];
        let ip_len = self.ip_len;
        let same_ip = match head[0] >> 4 {
            4 => packet.get(9) == Some(&head[9]) && packet.get(12..20) == Some(&head[12..20]),
            _ => packet.get(6) == Some(&head[6]) && packet.get(8..40) == Some(&head[8..40]),
        };
        packet.first().map(|b| b >> 4) == Some(head[0] >> 4)
            && same_ip
            && packet.get(ip_len..ip_len + 4) == Some(&head[ip_len..ip_len + 4])
    }

    /// Offers one IP packet (checksums valid).
    pub fn push(&mut self, packet: &[u8]) -> Push {
        let Ok((ip_len, tcp_len)) = tcp_headers(packet) else {
            return self.push_udp(packet);
        };
        if self.len != 0 && self.udp {
            return Push::Flush;
        }
        let hl = ip_len + tcp_len;
        let v4 = packet[0] >> 4 == 4;
        // Only plain segments: no IP options, no fragments, nothing but
        // ACK (and PSH) set, some payload.
        let flags = packet[ip_len + 13];
        let end = if v4 {
            usize::from(u16::from_be_bytes([packet[2], packet[3]]))
        } else {
            40 + usize::from(u16::from_be_bytes([packet[4], packet[5]]))
        };
        if end != packet.len()
            || end <= hl
            || (v4 && (ip_len != 20 || packet[6] & 0x3f != 0 || packet[7] != 0))
            || flags & !(0x10 | TCP_PSH) != 0
            || flags & 0x10 == 0
        {
            return Push::Alone;
        }
        let payload = end - hl;
        let seq = u32::from_be_bytes([
            packet[ip_len + 4],
            packet[ip_len + 5],
            packet[ip_len + 6],
            packet[ip_len + 7],
        ]);
        if self.len == 0 {
            self.start(packet, ip_len, hl, payload, seq, flags);
            return Push::Merged;
        }
        let head = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + self.hl];
        // Same flow and same headers but for lengths, ids, sequence and
        // checksums.
        let same_ip = if v4 {
            head[0..2] == packet[0..2]
                && head[8..10] == packet[8..10]
                && head[12..20] == packet[12..20]
        } else {
            head[0..4] == packet[0..4] && head[6..40] == packet[6..40]
        };
        let same = hl == self.hl
            && ip_len == self.ip_len
            && same_ip
            && head[ip_len..ip_len + 4] == packet[ip_len..ip_len + 4]
            && head[ip_len + 8..ip_len + 13] == packet[ip_len + 8..ip_len + 13]
            && head[ip_len + 13] & !TCP_PSH == flags & !TCP_PSH
            && head[ip_len + 14..ip_len + 16] == packet[ip_len + 14..ip_len + 16]
            && head[ip_len + 18..hl] == packet[ip_len + 18..hl];
        if !same || seq != self.next_seq || !self.room_for(payload) {
            return Push::Flush;
        }
        self.append(&packet[hl..end]);
        self.next_seq = seq.wrapping_add(payload as u32);
        if payload < self.mss || flags & TCP_PSH != 0 {
            self.closed = true;
            // The super-packet carries the last segment's PSH.
            self.buf[VNET_HDR_LEN + ip_len + 13] |= flags & TCP_PSH;
        }
        Push::Merged
    }

    fn start(
        &mut self,
        packet: &[u8],
        ip_len: usize,
        hl: usize,
        payload: usize,
        seq: u32,
        flags: u8,
    ) {
        self.buf[VNET_HDR_LEN..VNET_HDR_LEN + hl + payload]
            .copy_from_slice(&packet[..hl + payload]);
        self.len = VNET_HDR_LEN + hl + payload;
        self.ip_len = ip_len;
        self.hl = hl;
        self.mss = payload;
        self.segments = 1;
        self.next_seq = seq.wrapping_add(payload as u32);
        self.closed = flags & TCP_PSH != 0;
        self.udp = false;
    }

    /// Whether another segment of `payload` bytes may follow what is held:
    /// nothing closed the run, no longer than the first, room left.
    fn room_for(&self, payload: usize) -> bool {
        !self.closed
            && payload <= self.mss
            && self.len + payload <= VNET_HDR_LEN + GRO_MAX
            && self.segments < GRO_MAX_SEGMENTS
    }

    /// Adds one segment's payload to what is held.
    fn append(&mut self, payload: &[u8]) {
        self.buf[self.len..self.len + payload.len()].copy_from_slice(payload);
        self.len += payload.len();
        self.segments += 1;
    }

    /// [`Coalescer::push`] for what is not TCP: a UDP datagram joins a
    /// run of its flow's datagrams of its size.
    fn push_udp(&mut self, packet: &[u8]) -> Push {
        let Some((ip_len, end)) = plain_udp(packet).filter(|_| self.udp_allowed) else {
            return Push::Alone;
        };
        let hl = ip_len + 8;
        let payload = end - hl;
        if self.len == 0 {
            self.buf[VNET_HDR_LEN..VNET_HDR_LEN + end].copy_from_slice(&packet[..end]);
            self.len = VNET_HDR_LEN + end;
            self.ip_len = ip_len;
            self.hl = hl;
            self.mss = payload;
            self.segments = 1;
            self.closed = false;
            self.udp = true;
            return Push::Merged;
        }
        let head = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + self.hl];
        // Same flow, same header fields but for lengths, ids and checksums.
        let same_ip = if ip_len == 20 {
            head[0..2] == packet[0..2]
                && head[6..10] == packet[6..10]
                && head[12..20] == packet[12..20]
        } else {
            head[0..4] == packet[0..4] && head[6..40] == packet[6..40]
        };
        if !self.udp
            || !same_ip
            || ip_len != self.ip_len
            || head[ip_len..ip_len + 4] != packet[ip_len..ip_len + 4]
            || !self.room_for(payload)
        {
            return Push::Flush;
        }
        self.append(&packet[hl..end]);
        // A shorter datagram ends the run: segments are all `mss` long but
        // the last.
        self.closed = payload < self.mss;
        Push::Merged
    }

    /// The held packet, ready for one write (virtio-net header first), and
    /// empties the coalescer; None if empty.
    pub fn flush(&mut self) -> Option<&[u8]> {
        if self.len == 0 {
            return None;
        }
        let len = std::mem::take(&mut self.len);
        let ip_len = self.ip_len;
        let packet = &mut self.buf[VNET_HDR_LEN..len];
        let total = packet.len();
        let v4 = packet[0] >> 4 == 4;
        let hdr = if self.segments == 1 {
            // One segment: as it came, checksums valid.
            VnetHdr {
                flags: F_DATA_VALID,
                ..VnetHdr::default()
            }
        } else {
            set_ip_length(packet, ip_len);
            // CHECKSUM_PARTIAL: the checksum field holds the pseudo-header
            // sum (over the whole length); the kernel finishes it per
            // segment.
            let l4_total = total - ip_len;
            let (proto, csum_offset, gso_type) = if self.udp {
                // The UDP length covers everything; the kernel sets each
                // segment's.
                packet[ip_len + 4..ip_len + 6].copy_from_slice(&(l4_total as u16).to_be_bytes());
                (PROTO_UDP, 6, GSO_UDP_L4)
            } else {
                (PROTO_TCP, 16, if v4 { GSO_TCPV4 } else { GSO_TCPV6 })
            };
            let pseudo = pseudo_sum(packet, proto, l4_total).unwrap_or(0);
            packet[ip_len + csum_offset..ip_len + csum_offset + 2]
                .copy_from_slice(&fold(pseudo).to_be_bytes());
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type,
                hdr_len: self.hl as u16,
                gso_size: self.mss as u16,
                csum_start: ip_len as u16,
                csum_offset: csum_offset as u16,
            }
        };
        hdr.write(&mut self.buf[..VNET_HDR_LEN]);
        Some(&self.buf[..len])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An IPv4 TCP packet with valid checksums.
    fn tcp4(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40 + payload.len()];
        p[0] = 0x45;
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[10, 1, 0, 2]);
        p[16..20].copy_from_slice(&[10, 2, 0, 2]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&7u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p[34..36].copy_from_slice(&512u16.to_be_bytes());
        p[40..].copy_from_slice(payload);
        finish_tcp(&mut p, 20).unwrap();
        p
    }

    /// A UDP datagram (IPv4 or IPv6) with valid checksums, as a host's
    /// kernel would send it.
    fn udp(v6: bool, id: u16, sport: u16, payload: &[u8]) -> Vec<u8> {
        let ip_len = if v6 { 40 } else { 20 };
        let mut p = vec![0u8; ip_len + 8 + payload.len()];
        let udp_len = 8 + payload.len();
        if v6 {
            p[0] = 0x60;
            p[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            p[6] = PROTO_UDP;
            p[7] = 64;
            p[8..24].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            p[24..40].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        } else {
            p[0] = 0x45;
            let total = p.len() as u16;
            p[2..4].copy_from_slice(&total.to_be_bytes());
            p[4..6].copy_from_slice(&id.to_be_bytes());
            p[6] = 0x40; // DF
            p[8] = 64;
            p[9] = PROTO_UDP;
            p[12..16].copy_from_slice(&[10, 1, 0, 2]);
            p[16..20].copy_from_slice(&[10, 2, 0, 2]);
            let c = checksum(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        p[ip_len..ip_len + 2].copy_from_slice(&sport.to_be_bytes());
        p[ip_len + 2..ip_len + 4].copy_from_slice(&5201u16.to_be_bytes());
        p[ip_len + 4..ip_len + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        p[ip_len + 8..].copy_from_slice(payload);
        let pseudo = pseudo_sum(&p, PROTO_UDP, udp_len).unwrap();
        let c = match !fold(add(pseudo, &p[ip_len..])) {
            0 => 0xffff,
            c => c,
        };
        p[ip_len + 6..ip_len + 8].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn udp_datagrams_of_one_flow_become_one_gso_packet_and_segment_back() {
        for v6 in [false, true] {
            let ip_len = if v6 { 40 } else { 20 };
            let sent = [
                udp(v6, 7, 40000, &[1u8; 1000]),
                udp(v6, 8, 40000, &[2u8; 1000]),
                udp(v6, 9, 40000, &[3u8; 1000]),
                udp(v6, 10, 40000, &[4u8; 500]),
            ];
            let mut c = Coalescer::new();
            for d in &sent {
                assert_eq!(c.push(d), Push::Merged, "v6 {v6}");
            }
            // Nothing follows a shorter datagram.
            assert_eq!(c.push(&udp(v6, 11, 40000, &[5u8; 1000])), Push::Flush);
            let out = c.flush().unwrap().to_vec();
            let hdr = VnetHdr::parse(&out).unwrap();
            assert_eq!(hdr.gso_type, GSO_UDP_L4);
            assert_eq!(hdr.flags, F_NEEDS_CSUM);
            assert_eq!(usize::from(hdr.gso_size), 1000);
            assert_eq!(usize::from(hdr.hdr_len), ip_len + 8);
            assert_eq!((usize::from(hdr.csum_start), hdr.csum_offset), (ip_len, 6));
            let p = &out[VNET_HDR_LEN..];
            assert_eq!(p.len(), ip_len + 8 + 3500);
            let udp_len = u16::from_be_bytes([p[ip_len + 4], p[ip_len + 5]]);
            assert_eq!(usize::from(udp_len), 8 + 3500);
            // What the kernel does with it gives back exactly what was sent.
            let mut again = p.to_vec();
            let mut scratch = vec![0u8; 2000];
            let mut segs = Vec::new();
            let n = segment(&hdr, &mut again, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
            assert_eq!(n, 4);
            assert_eq!(segs, sent, "v6 {v6}");
        }
    }

    #[test]
    fn udp_of_other_flows_sizes_or_protocols_is_not_merged() {
        let mut c = Coalescer::new();
        assert_eq!(c.push(&udp(false, 1, 40000, &[1u8; 1000])), Push::Merged);
        assert_eq!(
            c.push(&udp(false, 2, 40001, &[1u8; 1000])),
            Push::Flush,
            "another port"
        );
        assert_eq!(
            c.push(&udp(false, 2, 40000, &[1u8; 1001])),
            Push::Flush,
            "longer"
        );
        assert_eq!(
            c.push(&udp(true, 2, 40000, &[1u8; 1000])),
            Push::Flush,
            "IPv6"
        );
        assert_eq!(c.push(&tcp4(1, 0x10, &[1u8; 1000])), Push::Flush, "TCP");
        let mut fragment = udp(false, 2, 40000, &[1u8; 1000]);
        fragment[6] |= 0x20; // more fragments
        assert_eq!(c.push(&fragment), Push::Alone, "a fragment");
        let mut icmp = udp(false, 2, 40000, &[1u8; 1000]);
        icmp[9] = 1;
        assert_eq!(c.push(&icmp), Push::Alone, "ICMP");
        assert_eq!(
            c.push(&udp(false, 2, 40000, &[1u8; 1000])[..500]),
            Push::Alone,
            "cut short"
        );
        // A run of one goes out as it came.
        let one = c.flush().unwrap();
        assert_eq!(VnetHdr::parse(one).unwrap().gso_type, GSO_NONE);
        assert_eq!(
            &one[VNET_HDR_LEN..],
            &udp(false, 1, 40000, &[1u8; 1000])[..]
        );
        // Switched off, UDP is left alone.
        let mut tcp_only = Coalescer::tcp_only();
        assert_eq!(
            tcp_only.push(&udp(false, 1, 40000, &[1u8; 1000])),
            Push::Alone
        );
    }

    #[test]
    fn a_bad_udp_gso_packet_is_an_error_not_a_panic() {
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            gso_size: 1000,
            csum_start: 20,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        let mut scratch = vec![0u8; 2000];
        let mut tcp = tcp4(1, 0x10, &[0u8; 3000]);
        assert_eq!(
            segment(&hdr, &mut tcp, &mut scratch, |_| {}),
            Err(OffloadError::Unsupported)
        );
        let mut short = udp(false, 1, 1, &[0u8; 3000]);
        for cut in [0, 1, 10, 20, 27] {
            let r = segment(&hdr, &mut short[..cut].to_vec(), &mut scratch, |_| {});
            assert!(r.is_err(), "{cut} bytes: {r:?}");
        }
        let zero = VnetHdr { gso_size: 0, ..hdr };
        assert_eq!(
            segment(&zero, &mut short, &mut scratch, |_| {}),
            Err(OffloadError::Malformed)
        );
        let mut small = vec![0u8; 100];
        assert_eq!(
            segment(&hdr, &mut short, &mut small, |_| {}),
            Err(OffloadError::TooLarge)
        );
    }

    fn valid(p: &[u8]) -> bool {
        let ip_ok = checksum(&p[..20]) == 0;
        let tcp_len = p.len() - 20;
        let tcp_ok = !fold(add(pseudo_sum(p, PROTO_TCP, tcp_len).unwrap(), &p[20..])) == 0;
        ip_ok && tcp_ok
    }

    #[test]
    fn the_word_sum_agrees_with_rfc1071_one_word_at_a_time() {
        // RFC 1071's definition, 16 bits at a time.
        let slow = |d: &[u8]| {
            let mut sum: u64 = d
                .chunks(2)
                .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
                .sum();
            while sum >> 16 != 0 {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            !(sum as u16)
        };
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in (0..100).chain([1399, 1400, 1401, 9000, 65_535, 70_000]) {
            assert_eq!(checksum(&data[..len]), slow(&data[..len]), "{len} bytes");
            assert_eq!(
                checksum(&data[3..3 + len.min(69_000)]),
                slow(&data[3..3 + len.min(69_000)])
            );
        }
        let ones = vec![0xffu8; 65_536];
        assert_eq!(checksum(&ones), slow(&ones));
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn a_tso_super_packet_is_cut_into_valid_segments() {
        let payload: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        let mut big = tcp4(1000, 0x18 | TCP_FIN, &payload); // ACK PSH FIN
                                                            // As the kernel hands it over: partial checksum, GSO TCPv4, MSS 1448.
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 40,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut scratch = vec![0u8; 2000];
        let mut segs = Vec::new();
        let n = segment(&hdr, &mut big, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(n, 3);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(valid(s), "segment {i} checksums");
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(seq, 1000 + (i as u32) * 1448);
            assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
            let last = i == 2;
            assert_eq!(
                s[33] & (TCP_FIN | TCP_PSH) != 0,
                last,
                "FIN/PSH only on the last"
            );
            joined.extend_from_slice(&s[40..]);
        }
        assert_eq!(joined, payload);
        assert_eq!(segs[2].len(), 40 + 4000 - 2 * 1448);
    }

    #[test]
    fn a_partial_checksum_is_completed() {
        let mut p = tcp4(5, 0x10, b"hello");
        // Replace the checksum by the pseudo-header sum, as CHECKSUM_PARTIAL.
        let pseudo = fold(pseudo_sum(&p, PROTO_TCP, p.len() - 20).unwrap());
        p[36..38].copy_from_slice(&pseudo.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let mut scratch = [0u8; 100];
        let mut out = Vec::new();
        segment(&hdr, &mut p, &mut scratch, |s| out = s.to_vec()).unwrap();
        assert!(valid(&out));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let hdr = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 100,
            ..VnetHdr::default()
        };
        let mut scratch = [0u8; 200];
        for len in 0..60 {
            let mut p = vec![0x45u8; len];
            let _ = segment(&hdr, &mut p, &mut scratch, |_| {});
        }
        let mut udp = tcp4(0, 0x10, b"x");
        udp[9] = 17;
        assert_eq!(
            segment(&hdr, &mut udp, &mut scratch, |_| {}),
            Err(OffloadError::Unsupported)
        );
        let bad = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 500,
            ..VnetHdr::default()
        };
        let mut p = tcp4(0, 0x10, b"x");
        assert_eq!(
            segment(&bad, &mut p, &mut scratch, |_| {}),
            Err(OffloadError::Malformed)
        );
    }

    #[test]
    fn consecutive_segments_coalesce_into_one_super_packet() {
        let mut c = Coalescer::new();
        let a = tcp4(100, 0x10, &[1u8; 1000]);
        let b = tcp4(1100, 0x10, &[2u8; 1000]);
        let last = tcp4(2100, 0x18, &[3u8; 500]);
        assert_eq!(c.push(&a), Push::Merged);
        assert_eq!(c.push(&b), Push::Merged);
        assert_eq!(c.push(&last), Push::Merged);
        // Nothing may follow a short or PSH segment.
        assert_eq!(c.push(&tcp4(2600, 0x10, &[4u8; 1000])), Push::Flush);
        let out = c.flush().unwrap().to_vec();
        assert!(c.is_empty());
        let hdr = VnetHdr::parse(&out).unwrap();
        assert_eq!(hdr.gso_type, GSO_TCPV4);
        assert_eq!(hdr.gso_size, 1000);
        assert_eq!(hdr.hdr_len, 40);
        let p = &out[VNET_HDR_LEN..];
        assert_eq!(p.len(), 40 + 2500);
        assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
        assert_eq!(checksum(&p[..20]), 0);
        assert_eq!(p[33] & TCP_PSH, TCP_PSH);
        // Segmenting it again gives back the three packets, valid.
        let mut again = p.to_vec();
        let mut scratch = vec![0u8; 2000];
        let mut segs = Vec::new();
        segment(&hdr, &mut again, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(segs.len(), 3);
        assert!(segs.iter().all(|s| valid(s)));
        assert_eq!(segs[1][40..], b[40..]);
    }

    #[test]
    fn other_flows_gaps_and_control_packets_are_not_merged() {
        let mut c = Coalescer::new();
        assert_eq!(c.push(&tcp4(100, 0x10, &[1u8; 1000])), Push::Merged);
        assert_eq!(c.push(&tcp4(5000, 0x10, &[1u8; 1000])), Push::Flush, "gap");
        let mut other = tcp4(1100, 0x10, &[1u8; 1000]);
        other[20] ^= 1; // another source port
        finish_tcp(&mut other, 20).unwrap();
        assert_eq!(c.push(&other), Push::Flush, "another flow");
        assert_eq!(c.push(&tcp4(1100, 0x02, &[])), Push::Alone, "a SYN");
        assert_eq!(c.push(&tcp4(1100, 0x10, &[])), Push::Alone, "a bare ACK");
        // One segment alone goes out as it was, marked valid.
        let one = c.flush().unwrap();
        let hdr = VnetHdr::parse(one).unwrap();
        assert_eq!(hdr.gso_type, GSO_NONE);
        assert!(valid(&one[VNET_HDR_LEN..]));
    }
}
