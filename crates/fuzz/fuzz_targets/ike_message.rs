//! The IKE message decoder (header and payload chain) on arbitrary
//! datagrams: never panics; whatever decodes encodes, and decodes again to
//! the same message (see `vpngw_fuzz::check_message`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vpngw_fuzz::check_message(data);
    // Port 4500: what follows the non-ESP marker is an IKE message too.
    if let vpngw_tunnel::esp::natt::Natt::Ike(ike) = vpngw_tunnel::esp::natt::classify(data) {
        vpngw_fuzz::check_message(ike);
    }
});
