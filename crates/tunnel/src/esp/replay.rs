//! The ESP anti-replay window (RFC 4303 §3.4.3 and Appendix A), ESN aware.
//!
//! The datapath calls [`ReplayWindow::check`] before decrypting (cheap: a
//! duplicate or a packet left of the window never costs an AEAD operation)
//! and [`ReplayWindow::accept`] only after the ICV verified, so forged
//! packets cannot move the window. With ESN, `check` also infers the
//! high-order 32 bits of the sequence number from the window (RFC 4303
//! Appendix A2), which the ICV then authenticates.

/// The largest (and default) window size in packets. Large windows keep
/// reordering across multiple datapath threads from dropping good packets.
pub const WINDOW: u64 = 1024;
/// The smallest window a configuration may ask for.
pub const MIN_WINDOW: u64 = 32;
const WORDS: usize = (WINDOW / 64) as usize;

/// Why a packet was refused before decryption. Counted, never logged per
/// packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Sequence number zero is never sent (RFC 4303 §3.3.3).
    Zero,
    /// Left of the window: too old to tell.
    TooOld,
    /// Already received.
    Duplicate,
}

/// One inbound SA's window. `top` is the highest authenticated sequence
/// number (64-bit, whether or not ESN is on); bit `i` of the bitmap says
/// whether `top - i` has been received.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    top: u64,
    bits: [u64; WORDS],
    esn: bool,
    /// Packets the window spans (MIN_WINDOW..=WINDOW).
    size: u64,
}

impl ReplayWindow {
    /// An empty window; `esn` selects 64-bit sequence numbers.
    pub fn new(esn: bool) -> ReplayWindow {
        ReplayWindow::with_size(esn, WINDOW)
    }

    /// An empty window of `size` packets (clamped to MIN_WINDOW..=WINDOW).
    pub fn with_size(esn: bool, size: u64) -> ReplayWindow {
        ReplayWindow {
            top: 0,
            bits: [0; WORDS],
            esn,
            size: size.clamp(MIN_WINDOW, WINDOW),
        }
    }

    /// The highest sequence number accepted so far.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Checks the 32 bits carried in the packet; returns the full sequence
    /// number to authenticate and later [`accept`](Self::accept).
    pub fn check(&self, seq_low: u32) -> Result<u64, ReplayError> {
        let seq = if self.esn {
            self.infer_high(seq_low)
        } else {
            u64::from(seq_low)
        };
        if seq == 0 {
            return Err(ReplayError::Zero);
        }
        if seq > self.top {
            return Ok(seq);
        }
        let age = self.top - seq;
        if age >= self.size {
            return Err(ReplayError::TooOld);
        }
        if self.bit(age) {
            return Err(ReplayError::Duplicate);
        }
        Ok(seq)
    }

    /// Marks `seq` (from [`check`](Self::check), after the ICV verified) as
    /// received, sliding the window if it is new. Returns false if it was
    /// received meanwhile (another packet with the same number won).
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq > self.top {
            self.shift(seq - self.top);
            self.top = seq;
            self.set(0);
            return true;
        }
        let age = self.top - seq;
        if age >= self.size || self.bit(age) {
            return false;
        }
        self.set(age);
        true
    }

    /// RFC 4303 Appendix A2.2: the high-order bits for a received low part.
    fn infer_high(&self, seq_low: u32) -> u64 {
        let top_low = self.top as u32;
        let top_high = self.top >> 32;
        let bottom_low = top_low.wrapping_sub((self.size - 1) as u32);
        let high = if u64::from(top_low) >= self.size - 1 {
            // The window lies within one 2^32 subspace.
            if seq_low >= bottom_low {
                top_high
            } else {
                top_high + 1
            }
        } else if seq_low >= bottom_low {
            // The window spans two subspaces; this is from the lower one
            // (at the very start there is no lower one: it is ahead of us).
            top_high.checked_sub(1).unwrap_or(top_high)
        } else {
            top_high
        };
        (high << 32) | u64::from(seq_low)
    }

    fn bit(&self, age: u64) -> bool {
        let (word, bit) = ((age / 64) as usize, age % 64);
        self.bits.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn set(&mut self, age: u64) {
        let (word, bit) = ((age / 64) as usize, age % 64);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= 1 << bit;
        }
    }

    /// Ages every entry by `by` positions (bit i moves to bit i + by).
    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            self.bits = [0; WORDS];
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        for i in (0..WORDS).rev() {
            let from = i.checked_sub(words);
            let hi = from.and_then(|f| self.bits.get(f)).copied().unwrap_or(0);
            let lo = from
                .and_then(|f| f.checked_sub(1))
                .and_then(|f| self.bits.get(f))
                .copied()
                .unwrap_or(0);
            self.bits[i] = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (64 - bits))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(w: &mut ReplayWindow, seq_low: u32) -> Result<u64, ReplayError> {
        let seq = w.check(seq_low)?;
        assert!(w.accept(seq));
        Ok(seq)
    }

    #[test]
    fn in_order_reordered_duplicate_and_old() {
        let mut w = ReplayWindow::new(false);
        assert_eq!(w.check(0), Err(ReplayError::Zero));
        for s in 1..=10 {
            receive(&mut w, s).unwrap();
        }
        assert_eq!(w.check(7), Err(ReplayError::Duplicate));
        receive(&mut w, 2000).unwrap();
        // 2000 - 1024 = 976 is just outside, 977 just inside.
        assert_eq!(w.check(976), Err(ReplayError::TooOld));
        receive(&mut w, 977).unwrap();
        assert_eq!(w.check(977), Err(ReplayError::Duplicate));
        receive(&mut w, 1999).unwrap();
        receive(&mut w, 1500).unwrap();
        assert_eq!(w.check(1500), Err(ReplayError::Duplicate));
        assert_eq!(w.check(10), Err(ReplayError::TooOld));
    }

    #[test]
    fn shifts_across_word_boundaries_keep_history() {
        let mut w = ReplayWindow::new(false);
        for s in [1u32, 2, 64, 65, 130] {
            receive(&mut w, s).unwrap();
        }
        for s in [1u32, 2, 64, 65, 130] {
            assert_eq!(w.check(s), Err(ReplayError::Duplicate), "seq {s}");
        }
        for s in [3u32, 63, 66, 129] {
            assert!(w.check(s).is_ok(), "seq {s}");
        }
        receive(&mut w, 130 + 64 * 3 + 5).unwrap();
        for s in [1u32, 2, 64, 65, 130] {
            assert_eq!(
                w.check(s),
                Err(ReplayError::Duplicate),
                "after shift, seq {s}"
            );
        }
    }

    #[test]
    fn accept_refuses_a_number_accepted_meanwhile() {
        let mut w = ReplayWindow::new(false);
        let a = w.check(5).unwrap();
        let b = w.check(5).unwrap();
        assert!(w.accept(a));
        assert!(!w.accept(b));
    }

    #[test]
    fn esn_infers_the_high_bits_across_a_wrap() {
        let mut w = ReplayWindow::new(true);
        let near = u32::MAX - 10;
        assert_eq!(receive(&mut w, near).unwrap(), u64::from(near));
        // The low part wrapped: the next subspace.
        assert_eq!(receive(&mut w, 3).unwrap(), (1 << 32) | 3);
        // A late packet from before the wrap is still placed in subspace 0.
        assert_eq!(receive(&mut w, near + 2).unwrap(), u64::from(near + 2));
        assert_eq!(w.check(near), Err(ReplayError::Duplicate));
        // Far ahead in subspace 1.
        assert_eq!(receive(&mut w, 5000).unwrap(), (1 << 32) | 5000);
        // A stale number from before the wrap, far left of the window, is
        // read as the next subspace (RFC 4303 A2); the ICV, which covers the
        // inferred high bits, then rejects it, and `accept` is never called.
        assert_eq!(w.check(near + 5), Ok((1 << 32) | u64::from(near + 5)));
    }

    #[test]
    fn a_smaller_window_is_honoured() {
        let mut w = ReplayWindow::with_size(false, 64);
        receive(&mut w, 100).unwrap();
        assert_eq!(w.check(36), Err(ReplayError::TooOld));
        receive(&mut w, 37).unwrap();
        assert_eq!(ReplayWindow::with_size(false, 1).size, MIN_WINDOW);
        assert_eq!(ReplayWindow::with_size(false, 1 << 20).size, WINDOW);
    }

    #[test]
    fn without_esn_a_wrap_is_old() {
        let mut w = ReplayWindow::new(false);
        receive(&mut w, u32::MAX).unwrap();
        assert_eq!(w.check(3), Err(ReplayError::TooOld));
    }
}
