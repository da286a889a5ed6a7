//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! [`sum`] accumulates 16-bit big-endian words into a partial ones-complement sum
//! (an odd trailing byte is padded with a zero byte on the right); partial sums of
//! even-length pieces, and [`pseudo_header_v4`], may be added together with `+` and
//! handed to [`fold`], which folds the carries and returns the ones-complement — the
//! value that goes into a checksum field. A buffer whose checksum field is correct
//! gives `fold(sum(buffer)) == 0`.

/// The partial ones-complement sum of `data` taken as big-endian 16-bit words, an odd
/// trailing byte padded with zero. The result is folded to at most `0xffff`, so many
/// partial sums can be added in a `u32` without overflow.
///
/// Eight bytes at a time in the machine's byte order: the ones-complement sum does not depend
/// on the order of the bytes within the words (RFC 1071 §2(B)), so the native sum, folded to
/// 16 bits, is the big-endian one with its two bytes swapped on a little-endian machine.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut quads = data.chunks_exact(8);
    for q in &mut quads {
        let w = u64::from_ne_bytes([q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]]);
        // Two 32-bit halves: at most 2^33 per step, no overflow before 2^31 steps.
        acc += (w & 0xffff_ffff) + (w >> 32);
    }
    let mut words = quads.remainder().chunks_exact(2);
    for word in &mut words {
        acc += u64::from(u16::from_ne_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        // Padded with a zero byte on the right, as a big-endian word.
        acc += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    // 2^16 ≡ 1 (mod 2^16 - 1): folding keeps the ones-complement value.
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u32::from(u16::from_be(acc as u16))
}

/// Folds the carries of a partial sum into 16 bits and returns its ones-complement:
/// the checksum value to write into a header.
pub fn fold(sum: u32) -> u16 {
    let mut acc = sum;
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum of `data`, i.e. `fold(sum(data))`.
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum(data))
}

/// The checksum after one 16-bit word of the covered data changes from `old_word` to
/// `new_word`, without touching the rest of the data: RFC 1624 eq. 3,
/// `HC' = ~(~HC + ~m + m')`. When `old_checksum` was computed with [`checksum`] and the
/// new data is not all zeros, the result equals a full recompute bit for bit.
pub fn update(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    fold(u32::from(!old_checksum) + u32::from(!old_word) + u32::from(new_word))
}

/// The partial sum of the IPv4 pseudo-header (RFC 768, RFC 793 §3.1): source and
/// destination address, zero and protocol, and the upper-layer `length` in bytes.
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, length: u16) -> u32 {
    u32::from(u16::from_be_bytes([src[0], src[1]]))
        + u32::from(u16::from_be_bytes([src[2], src[3]]))
        + u32::from(u16::from_be_bytes([dst[0], dst[1]]))
        + u32::from(u16::from_be_bytes([dst[2], dst[3]]))
        + u32::from(protocol)
        + u32::from(length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 §3 worked example: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
    /// The word-at-a-time sum of RFC 1071's definition, big-endian: the reference.
    fn sum_by_words(data: &[u8]) -> u32 {
        let mut acc: u64 = data.chunks(2).map(|w| u64::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)]))).sum();
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u32
    }

    proptest! {
        /// Eight bytes at a time in native order gives the big-endian word sum, at every
        /// length (odd ones too) and alignment.
        #[test]
        fn sum_equals_the_word_by_word_sum(data in proptest::collection::vec(any::<u8>(), 0..200), skip in 0usize..8) {
            let data = &data[skip.min(data.len())..];
            prop_assert_eq!(sum(data), sum_by_words(data));
        }
    }

    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    /// The IPv4 header from the Wikipedia "IPv4 header checksum" example (checksum b861).
    #[test]
    fn known_ipv4_header() {
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0);
        header[10] = 0;
        header[11] = 0;
        assert_eq!(checksum(&header), 0xb861);
    }

    #[test]
    fn odd_length_pads_right() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0xab]), 0x1234 + 0xab00);
        assert_eq!(sum(&[]), 0);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn fold_carries() {
        assert_eq!(fold(0x0001_fffe), !0xffff);
        assert_eq!(fold(0xffff_ffff), !0xffff);
        assert_eq!(fold(0), 0xffff);
    }

    #[test]
    fn pseudo_header_words() {
        let s = pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 17, 8);
        assert_eq!(s, 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 8);
    }

    /// The reference: RFC 1071 summing done the slow and obvious way.
    fn reference_checksum(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for (i, byte) in data.iter().enumerate() {
            acc += if i % 2 == 0 {
                u64::from(*byte) << 8
            } else {
                u64::from(*byte)
            };
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    proptest! {
        #[test]
        fn matches_reference(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(checksum(&data), reference_checksum(&data));
        }

        #[test]
        fn partial_sums_add(a in proptest::collection::vec(any::<u16>(), 0..100),
                            b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let a: Vec<u8> = a.iter().flat_map(|w| w.to_be_bytes()).collect();
            let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
            prop_assert_eq!(fold(sum(&a) + sum(&b)), checksum(&whole));
        }

        #[test]
        fn incremental_update_equals_recompute(
            words in proptest::collection::vec(any::<u16>(), 1..64),
            index in any::<prop::sample::Index>(),
            new_word in any::<u16>(),
        ) {
            let mut data: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            let at = index.index(words.len()) * 2;
            let old_checksum = checksum(&data);
            let old_word = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new_word.to_be_bytes());
            // All-zero data is the one case where +0 and -0 differ (RFC 1624 §3).
            prop_assume!(data.iter().any(|b| *b != 0));
            prop_assert_eq!(update(old_checksum, old_word, new_word), checksum(&data));
        }
    }
}
