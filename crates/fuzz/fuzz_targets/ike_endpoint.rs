//! `Endpoint::handle` with arbitrary datagrams from fixed peers: one
//! connection answers 192.0.2.1 (it may send anything, an IKE_SA_INIT
//! request first), one initiates to 203.0.113.9 (which may answer
//! anything). Never panics; everything the endpoint sends decodes.
//!
//! input = a flags octet (bit 0: demand cookies from the first half-open
//! SA on), then datagrams, each behind a 3-octet header: control (bit 0:
//! from 203.0.113.9, bit 1: arrived on port 4500 with the non-ESP marker,
//! bits 2-7: seconds to let pass first), length (16 bits, big endian).
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vpngw_fuzz::{sa_config, sock, Rng, I_IP, R_IP};
use vpngw_tunnel::esp::natt::{classify, Natt};
use vpngw_tunnel::ike::endpoint::{Endpoint, EndpointOutput};
use vpngw_tunnel::ike::wire::Message;

const B_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

fn drain(ep: &mut Endpoint) {
    while let Some(o) = ep.poll_output() {
        if let EndpointOutput::Transmit(t) = o {
            if let Err(e) = Message::decode(&t.data) {
                panic!("the endpoint sent a message that does not decode: {e:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, datagrams @ ..] = data else {
        return;
    };
    let mut rest = datagrams;
    let mut now = std::time::Instant::now();
    let mut rng = Rng::new(7);
    let mut ep = Endpoint::new();
    if flags & 1 != 0 {
        ep.set_cookie_threshold(0);
    }
    let local = sock(R_IP);
    ep.add_connection("a", sa_config(R_IP, I_IP), local, sock(I_IP), false, now);
    ep.add_connection("b", sa_config(R_IP, B_IP), local, sock(B_IP), true, now);
    ep.handle_timeout(now, &mut rng);
    drain(&mut ep);
    while let [ctl, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;
        let advance = Duration::from_secs(u64::from(ctl >> 2));
        if !advance.is_zero() {
            now += advance;
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now, &mut rng);
                drain(&mut ep);
            }
        }
        let peer = if ctl & 1 != 0 { B_IP } else { I_IP };
        let (local, remote) = if ctl & 2 != 0 {
            (
                SocketAddr::new(R_IP.into(), 4500),
                SocketAddr::new(peer.into(), 4500),
            )
        } else {
            (local, sock(peer))
        };
        let datagram = if ctl & 2 != 0 {
            match classify(datagram) {
                Natt::Ike(ike) => ike,
                Natt::Esp(_) | Natt::Keepalive | Natt::Malformed => continue,
            }
        } else {
            datagram
        };
        ep.handle(now, local, remote, datagram, &mut rng);
        drain(&mut ep);
    }
    let _ = (ep.counters(), ep.status().len());
    ep.close_all(now);
    drain(&mut ep);
});
