//! MPLS label stack entries (RFC 3032 §2.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!  |                Label                  | TC  |S|      TTL      |
//! ```
//!
//! An entry is 4 bytes and fully decoded by value ([`LabelStackEntry`]): there is no
//! view. [`LabelStackEntry::parse`] needs only 4 bytes, as every 32-bit value is a valid
//! entry. [`stack_depth`] walks a stack to its bottom (S bit), bounded by a maximum.

use carrier_common::Label;

use super::{Result, WireError};

/// Length of one label stack entry.
pub const LSE_LEN: usize = 4;

/// One decoded label stack entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelStackEntry {
    /// The 20-bit label.
    pub label: Label,
    /// Traffic class, 3 bits (RFC 5462); [`LabelStackEntry::emit`] masks higher bits.
    pub tc: u8,
    /// The S bit: this is the bottom of the stack.
    pub bottom: bool,
    /// Time to live.
    pub ttl: u8,
}

impl LabelStackEntry {
    /// Decodes the entry in the first 4 bytes of `bytes` (more are ignored).
    pub fn parse(bytes: &[u8]) -> Result<LabelStackEntry> {
        match bytes.get(..LSE_LEN) {
            Some(&[a, b, c, d]) => Ok(LabelStackEntry::from_bytes([a, b, c, d])),
            _ => Err(WireError::Truncated),
        }
    }

    /// Decodes an entry: every 32-bit value is one.
    pub fn from_bytes(bytes: [u8; 4]) -> LabelStackEntry {
        let word = u32::from_be_bytes(bytes);
        LabelStackEntry {
            // A 20-bit value always fits: the fallback is never taken.
            label: Label::new(word >> 12).unwrap_or_default(),
            tc: ((word >> 9) & 0x7) as u8,
            bottom: word & 0x100 != 0,
            ttl: word as u8,
        }
    }

    /// Encodes the entry (TC masked to 3 bits).
    pub fn to_bytes(&self) -> [u8; 4] {
        let word = self.label.value() << 12
            | u32::from(self.tc & 0x7) << 9
            | u32::from(self.bottom) << 8
            | u32::from(self.ttl);
        word.to_be_bytes()
    }

    /// Writes the entry into `buf[..4]`.
    ///
    /// # Panics
    /// If `buf` is shorter than 4 bytes: callers size the buffer before emitting.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[..LSE_LEN].copy_from_slice(&self.to_bytes());
    }
}

/// The number of entries in the label stack at the start of `bytes`, up to and
/// including the first one with the S bit set. [`WireError::Truncated`] if `bytes` ends
/// before that entry; [`WireError::Malformed`] if the stack is deeper than `max` (the
/// walk stops after `max` entries, so its cost is bounded by `max`).
pub fn stack_depth(bytes: &[u8], max: usize) -> Result<usize> {
    for (index, entry) in bytes.chunks_exact(LSE_LEN).enumerate() {
        if index >= max {
            return Err(WireError::Malformed);
        }
        if entry[2] & 0x01 != 0 {
            return Ok(index + 1);
        }
    }
    Err(WireError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lse(label: u32, tc: u8, bottom: bool, ttl: u8) -> LabelStackEntry {
        LabelStackEntry {
            label: Label::new(label).unwrap(),
            tc,
            bottom,
            ttl,
        }
    }

    #[test]
    fn parse_fixture() {
        // Label 100, TC 0, S=1, TTL 64.
        assert_eq!(
            LabelStackEntry::parse(&[0x00, 0x06, 0x41, 0x40]),
            Ok(lse(100, 0, true, 64))
        );
        // Label 0xfffff (max), TC 5, S=0, TTL 255.
        assert_eq!(
            LabelStackEntry::parse(&[0xff, 0xff, 0xfa, 0xff, 0x99]),
            Ok(lse(0xf_ffff, 5, false, 255))
        );
        // IPv4 explicit null, TC 7, S=1, TTL 1.
        assert_eq!(
            LabelStackEntry::from_bytes([0x00, 0x00, 0x0f, 0x01]),
            lse(0, 7, true, 1)
        );
    }

    #[test]
    fn emit_fixture() {
        let mut buf = [0u8; 6];
        lse(100, 0, true, 64).emit(&mut buf);
        assert_eq!(buf, [0x00, 0x06, 0x41, 0x40, 0, 0]);
        assert_eq!(lse(16, 0xff, false, 0).to_bytes(), [0x00, 0x01, 0x0e, 0x00]);
    }

    #[test]
    fn truncated() {
        let bytes = [0x00, 0x06, 0x41, 0x40];
        for len in 0..LSE_LEN {
            assert_eq!(
                LabelStackEntry::parse(&bytes[..len]),
                Err(WireError::Truncated)
            );
        }
    }

    #[test]
    fn depth() {
        let top = lse(1000, 0, false, 64).to_bytes();
        let bottom = lse(100, 0, true, 64).to_bytes();
        let stack: Vec<u8> = [top, top, bottom, [0x45, 0, 0, 0]].concat();
        assert_eq!(stack_depth(&stack, 8), Ok(3));
        assert_eq!(stack_depth(&stack, 3), Ok(3));
        assert_eq!(stack_depth(&stack, 2), Err(WireError::Malformed));
        assert_eq!(stack_depth(&stack[..8], 8), Err(WireError::Truncated));
        assert_eq!(stack_depth(&stack[..11], 8), Err(WireError::Truncated));
        assert_eq!(stack_depth(&[], 8), Err(WireError::Truncated));
        assert_eq!(stack_depth(&bottom, 0), Err(WireError::Malformed));
        assert_eq!(stack_depth(&bottom, 1), Ok(1));
    }

    proptest! {
        #[test]
        fn round_trip(label in 0u32..=Label::MAX, tc in 0u8..8, bottom in any::<bool>(),
                      ttl in any::<u8>()) {
            let entry = lse(label, tc, bottom, ttl);
            prop_assert_eq!(LabelStackEntry::from_bytes(entry.to_bytes()), entry);
            prop_assert_eq!(LabelStackEntry::parse(&entry.to_bytes()), Ok(entry));
        }

        #[test]
        fn bytes_round_trip(bytes in any::<[u8; 4]>()) {
            prop_assert_eq!(LabelStackEntry::from_bytes(bytes).to_bytes(), bytes);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40), max in 0usize..12) {
            if let Ok(entry) = LabelStackEntry::parse(&bytes) {
                prop_assert!(entry.label.value() <= Label::MAX && entry.tc < 8);
            }
            if let Ok(depth) = stack_depth(&bytes, max) {
                prop_assert!(depth >= 1 && depth <= max && depth * LSE_LEN <= bytes.len());
                let last = LabelStackEntry::parse(&bytes[(depth - 1) * LSE_LEN..]).unwrap();
                prop_assert!(last.bottom);
            }
        }
    }
}
