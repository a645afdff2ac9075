//! The SK payload path after decryption. The inner payload chain parser
//! (`decode_payloads` on the decrypted plaintext) is public: it runs on the
//! input first, with the round-trip check. Then the same plaintext goes
//! through the real thing: it is encrypted with the SK keys of a real
//! `IkeSa` after a real IKE_SA_INIT exchange (the other end played by hand,
//! see `vpngw_fuzz::ResponderFixture` / `InitiatorFixture`), so the SA
//! decrypts it and its exchange handlers (IKE_AUTH, CREATE_CHILD_SA,
//! INFORMATIONAL, responses) run on it. Never panics; whatever the SA sends
//! back decodes, and its encrypted part decrypts and decodes too.
//!
//! input = mode, exchange, header tweaks, first inner payload type, inner
//! payloads:
//! - mode bit 0: 0 = the SA under test is the responder (we send its
//!   requests), 1 = the initiator (we answer its IKE_AUTH request, or, once
//!   established, send it requests); bit 1: establish the SA first with a
//!   valid IKE_AUTH; bit 2: run its timers afterwards; bit 3: send twice.
//! - exchange: low two bits pick IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL,
//!   IKE_SA_INIT; with bit 7 set, the exchange type is the low 7 bits.
//! - tweaks: bits 0-1 move the message ID (expected, one less, one more,
//!   far), bit 2 flips the R flag, bit 3 the I flag.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vpngw_fuzz::{
    check_payload_chain, drain, open_sent, seal_message, sock, InitiatorFixture, ResponderFixture,
    Rng, I_IP, R_IP,
};
use vpngw_tunnel::ike::sa::IkeSa;
use vpngw_tunnel::ike::wire::{ExchangeType, Flags, Header, PayloadType};

struct Fixtures {
    responder: ResponderFixture,
    initiator: InitiatorFixture,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| Fixtures {
        responder: ResponderFixture::new(),
        initiator: InitiatorFixture::new(),
    })
}

fn exchange(selector: u8) -> ExchangeType {
    if selector & 0x80 != 0 {
        return ExchangeType(selector & 0x7f);
    }
    match selector & 3 {
        0 => ExchangeType::IKE_AUTH,
        1 => ExchangeType::CREATE_CHILD_SA,
        2 => ExchangeType::INFORMATIONAL,
        _ => ExchangeType::IKE_SA_INIT,
    }
}

fn tweak(mut header: Header, tweaks: u8) -> Header {
    header.message_id = match tweaks & 3 {
        0 => header.message_id,
        1 => header.message_id.wrapping_sub(1),
        2 => header.message_id.wrapping_add(1),
        _ => header.message_id ^ 0x8000_0000,
    };
    if tweaks & 4 != 0 {
        header.flags = Flags(header.flags.0 ^ Flags::RESPONSE.0);
    }
    if tweaks & 8 != 0 {
        header.flags = Flags(header.flags.0 ^ Flags::INITIATOR.0);
    }
    header
}

fuzz_target!(|data: &[u8]| {
    let [mode, exch, tweaks, first, inner @ ..] = data else {
        return;
    };
    let first = PayloadType(*first);
    check_payload_chain(first, inner);

    let f = fixtures();
    let mut rng = Rng::new(u64::from(*mode) << 8 | u64::from(*exch));
    let initiator = mode & 1 != 0;
    let establish = mode & 2 != 0;
    let (mut sa, header, sk, from, keys_back, now): (IkeSa, Header, _, _, _, _) = if initiator {
        let fx = &f.initiator;
        let (sa, header) = if establish {
            // Established: we, the original responder, send a request.
            let mut h = fx.header(exchange(*exch), 0);
            h.flags = Flags(0);
            (fx.established(&mut rng), h)
        } else {
            (fx.initiator().0, fx.header(exchange(*exch), 1))
        };
        (sa, header, &fx.to_peer, sock(R_IP), &fx.from_peer, fx.now)
    } else {
        let fx = &f.responder;
        let (sa, mid) = if establish {
            (fx.established(&mut rng), 2)
        } else {
            (fx.responder(), 1)
        };
        let header = fx.header(exchange(*exch), mid);
        (sa, header, &fx.to_peer, sock(I_IP), &fx.from_peer, fx.now)
    };
    let header = tweak(header, *tweaks);
    let datagram = seal_message(sk, &header, first, inner);
    let times = if mode & 8 != 0 { 2 } else { 1 };
    for _ in 0..times {
        sa.handle(now, from, &datagram, &mut rng);
        let (sent, _) = drain(&mut sa);
        for d in &sent {
            let _ = open_sent(keys_back, d);
        }
    }
    if mode & 4 != 0 {
        for _ in 0..4 {
            let Some(t) = sa.poll_timeout() else { break };
            sa.handle_timeout(t, &mut rng);
            let (sent, _) = drain(&mut sa);
            for d in &sent {
                let _ = open_sent(keys_back, d);
            }
        }
    }
    let _ = (
        sa.status(),
        sa.phase(),
        sa.is_closed(),
        sa.other_local_spis(),
    );
});
