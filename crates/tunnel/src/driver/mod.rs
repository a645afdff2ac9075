//! The tunnel driver: the only I/O in this crate.
//!
//! - [`ike`]: the IKE sockets (UDP 500 and 4500) around the sans-IO
//!   [`Endpoint`](crate::ike::endpoint::Endpoint), on tokio.
//! - [`datapath`]: the ESP threads between the TUN devices and UDP 4500.
//! - [`tun`]: TUN devices (one per connection, like a VTI).
//! - [`SystemRandom`]: the operating system's randomness for the cores.

pub mod datapath;
pub mod ike;
pub mod offload;
pub mod tun;
pub mod udp;

use crate::ike::sa::Random;

/// Randomness from the operating system (getrandom), for the IKE core.
#[derive(Debug)]
pub struct SystemRandom(ring::rand::SystemRandom);

impl SystemRandom {
    /// A new source.
    pub fn new() -> SystemRandom {
        SystemRandom(ring::rand::SystemRandom::new())
    }
}

impl Default for SystemRandom {
    fn default() -> Self {
        SystemRandom::new()
    }
}

impl Random for SystemRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        use ring::rand::SecureRandom;
        // getrandom does not fail on Linux once the pool is initialized;
        // retry rather than hand out predictable bytes.
        while self.0.fill(buf).is_err() {
            std::thread::yield_now();
        }
    }
}
