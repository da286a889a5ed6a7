//! The hasher of the tables' maps: FxHash's rotate-xor-multiply (as in rustc), a few cycles per
//! word against SipHash's tens. It is not collision-resistant, so it is used only for maps whose
//! keys the operator or the control plane chose — the ILM, the VNI map, configured and EVPN
//! neighbours and MACs, the FIB's prefix index, the per-label counters (20-bit labels: the
//! multiply is a bijection, distinct labels never share a hash). The maps a packet's sender fills
//! (the workers' learned neighbours and MACs) keep std's SipHash, so a flood of chosen MACs
//! cannot turn their lookups linear.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash over the words written.
#[derive(Clone, Copy, Debug, Default)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_labels_hash_apart() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let b = BuildHasherDefault::<FxHasher>::default();
        let mut seen = std::collections::HashSet::new();
        for label in 0u32..(1 << 20) {
            assert!(seen.insert(b.hash_one(label)), "label {label} collides");
        }
    }
}
