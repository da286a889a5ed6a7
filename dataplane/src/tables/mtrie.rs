//! A 16-8-8 multibit trie for IPv4 longest-prefix match, as VPP's `ip4_mtrie_16`: a root of
//! 65,536 leaves indexed by the top 16 bits of the address, and plies of 256 leaves for the
//! next 8 and the last 8 bits, made only where a prefix longer than /16 (or /24) needs them. A
//! lookup is at most three dependent array reads, with no comparison of prefixes.
//!
//! A leaf is a `u32`: 0 is "no route", a value with [`PLY`] set is a ply index, anything else a
//! route slot + 1 (the slot holds the prefix and its next hop, which a lookup returns). Each
//! leaf slot also remembers the length of the prefix that put it there, so that an insert only
//! overwrites slots held by shorter prefixes and a removal hands its slots back to the longest
//! prefix that still covers them. A ply whose 256 leaves become equal again is folded back into
//! its parent and reused.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use carrier_common::NextHopId;

use super::fib::{Ipv4Prefix, Lpm};

/// The prefix index: keys are prefixes the control plane installs, so the fast hasher fits.
type PrefixIndex = HashMap<Ipv4Prefix, u32, std::hash::BuildHasherDefault<super::hash::FxHasher>>;

/// Marks a leaf that points to a ply.
const PLY: u32 = 1 << 31;

/// 256 leaves for 8 bits of the address, and the prefix length behind each.
#[derive(Clone)]
struct Ply {
    leaves: [u32; 256],
    lens: [u8; 256],
}

/// The 16-8-8 trie. Memory: 320 KiB for the root, 1,280 bytes per ply, about 30 bytes per
/// route for the route slots and the prefix index.
#[derive(Clone)]
pub struct Mtrie {
    root: Box<[u32]>,
    root_lens: Box<[u8]>,
    plies: Vec<Ply>,
    free_plies: Vec<u32>,
    /// Route slots: (prefix, next hop); `None` when free.
    slots: Vec<Option<(Ipv4Prefix, NextHopId)>>,
    free_slots: Vec<u32>,
    /// Prefix → slot.
    index: PrefixIndex,
    /// How many routes of each length: a removal looks for the covering route only at the
    /// shorter lengths that exist (a VPN table has a handful), not at all of them.
    by_len: [u32; 33],
}

impl Default for Mtrie {
    fn default() -> Self {
        Mtrie {
            root: vec![0; 1 << 16].into_boxed_slice(),
            root_lens: vec![0; 1 << 16].into_boxed_slice(),
            plies: Vec::new(),
            free_plies: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            index: PrefixIndex::default(),
            by_len: [0; 33],
        }
    }
}

impl std::fmt::Debug for Mtrie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mtrie").field("routes", &self.index.len()).field("plies", &(self.plies.len() - self.free_plies.len())).finish()
    }
}

/// Where a leaf lives: the root (index) or a ply (ply, index).
#[derive(Clone, Copy)]
enum At {
    Root(usize),
    Ply(u32, usize),
}

impl Mtrie {
    /// Every route, in prefix order.
    pub fn routes(&self) -> impl Iterator<Item = (Ipv4Prefix, NextHopId)> + '_ {
        let mut all: Vec<(Ipv4Prefix, NextHopId)> = self.slots.iter().flatten().copied().collect();
        all.sort_unstable_by_key(|(p, _)| (u32::from(p.addr()), p.prefix_len()));
        all.into_iter()
    }

    /// Heap bytes held (root, plies, slots, index), for the FIB benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.root.len() * 5
            + self.plies.capacity() * std::mem::size_of::<Ply>()
            + self.slots.capacity() * std::mem::size_of::<Option<(Ipv4Prefix, NextHopId)>>()
            + self.free_slots.capacity() * 4
            + self.free_plies.capacity() * 4
            // hashbrown: a key, a value and a control byte per bucket, at most 7/8 full.
            + self.index.capacity() * 8 / 7 * (std::mem::size_of::<(Ipv4Prefix, u32)>() + 1)
    }

    fn get(&self, at: At) -> (u32, u8) {
        match at {
            At::Root(i) => (self.root[i], self.root_lens[i]),
            At::Ply(p, i) => {
                let ply = &self.plies[p as usize];
                (ply.leaves[i], ply.lens[i])
            }
        }
    }

    fn set(&mut self, at: At, leaf: u32, len: u8) {
        match at {
            At::Root(i) => {
                self.root[i] = leaf;
                self.root_lens[i] = len;
            }
            At::Ply(p, i) => {
                let ply = &mut self.plies[p as usize];
                ply.leaves[i] = leaf;
                ply.lens[i] = len;
            }
        }
    }

    /// The ply below `at`, made from the leaf there when there is none.
    fn ply_below(&mut self, at: At) -> u32 {
        let (leaf, len) = self.get(at);
        if leaf & PLY != 0 {
            return leaf & !PLY;
        }
        let ply = Ply { leaves: [leaf; 256], lens: [len; 256] };
        let id = match self.free_plies.pop() {
            Some(id) => {
                self.plies[id as usize] = ply;
                id
            }
            None => {
                self.plies.push(ply);
                (self.plies.len() - 1) as u32
            }
        };
        self.set(at, id | PLY, 0);
        id
    }

    /// Puts `leaf` (of a prefix of length `len`) into the slot `at` and everything below it that
    /// a prefix no longer than `len` holds.
    fn fill(&mut self, at: At, leaf: u32, len: u8) {
        let (old, old_len) = self.get(at);
        if old & PLY != 0 {
            let p = old & !PLY;
            for i in 0..256 {
                self.fill(At::Ply(p, i), leaf, len);
            }
        } else if old_len <= len {
            self.set(at, leaf, len);
        }
    }

    /// Replaces `leaf` of length `len` by `with` (of length `with_len`) in the slot `at` and
    /// below; folds plies that become uniform. Returns true when `at` holds a plain leaf after.
    fn unfill(&mut self, at: At, leaf: u32, len: u8, with: u32, with_len: u8) {
        let (old, old_len) = self.get(at);
        if old & PLY != 0 {
            let p = old & !PLY;
            for i in 0..256 {
                self.unfill(At::Ply(p, i), leaf, len, with, with_len);
            }
            self.fold(at, p);
        } else if old == leaf && old_len == len {
            self.set(at, with, with_len);
        }
    }

    /// Folds ply `p` (below `at`) back into a leaf when its leaves are all the same.
    fn fold(&mut self, at: At, p: u32) {
        let ply = &self.plies[p as usize];
        let (first, first_len) = (ply.leaves[0], ply.lens[0]);
        if first & PLY == 0 && ply.leaves.iter().all(|&l| l == first) && ply.lens.iter().all(|&l| l == first_len) {
            self.set(at, first, first_len);
            self.free_plies.push(p);
        }
    }

    /// The slots a prefix covers at the level where it ends: (parent ply or root, first index,
    /// count). Makes the plies on the way.
    fn span(&mut self, prefix: Ipv4Prefix, make: bool) -> Option<(Option<u32>, usize, usize)> {
        let a = u32::from(prefix.addr());
        let len = prefix.prefix_len();
        let hi = (a >> 16) as usize;
        if len <= 16 {
            return Some((None, hi, 1 << (16 - len)));
        }
        let p1 = if make {
            self.ply_below(At::Root(hi))
        } else {
            let (l, _) = self.get(At::Root(hi));
            if l & PLY == 0 {
                return None;
            }
            l & !PLY
        };
        let mid = ((a >> 8) & 0xff) as usize;
        if len <= 24 {
            return Some((Some(p1), mid, 1 << (24 - len)));
        }
        let p2 = if make {
            self.ply_below(At::Ply(p1, mid))
        } else {
            let (l, _) = self.get(At::Ply(p1, mid));
            if l & PLY == 0 {
                return None;
            }
            l & !PLY
        };
        Some((Some(p2), (a & 0xff) as usize, 1 << (32 - len)))
    }

    /// The longest route strictly shorter than `prefix` that covers it: (leaf, length).
    fn covering(&self, prefix: Ipv4Prefix) -> (u32, u8) {
        (0..prefix.prefix_len())
            .rev()
            .filter(|&l| self.by_len[usize::from(l)] > 0)
            .find_map(|l| {
                let p = Ipv4Prefix::new(prefix.addr(), l)?;
                self.index.get(&p).map(|s| (s + 1, l))
            })
            .unwrap_or((0, 0))
    }

    /// Folds the plies on the way to `prefix` that became uniform (deepest first).
    fn fold_path(&mut self, prefix: Ipv4Prefix) {
        let a = u32::from(prefix.addr());
        let hi = (a >> 16) as usize;
        let (l1, _) = self.get(At::Root(hi));
        if l1 & PLY == 0 {
            return;
        }
        let p1 = l1 & !PLY;
        let mid = ((a >> 8) & 0xff) as usize;
        let (l2, _) = self.get(At::Ply(p1, mid));
        if l2 & PLY != 0 {
            self.fold(At::Ply(p1, mid), l2 & !PLY);
        }
        self.fold(At::Root(hi), p1);
    }
}

impl Lpm for Mtrie {
    fn insert(&mut self, prefix: Ipv4Prefix, nexthop: NextHopId) -> Option<NextHopId> {
        if let Some(&slot) = self.index.get(&prefix) {
            // Same prefix: only the next hop in its slot changes; the leaves stay.
            let old = self.slots[slot as usize].replace((prefix, nexthop));
            return old.map(|(_, nh)| nh);
        }
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize] = Some((prefix, nexthop));
                s
            }
            None => {
                self.slots.push(Some((prefix, nexthop)));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(prefix, slot);
        let len = prefix.prefix_len();
        self.by_len[usize::from(len)] += 1;
        if let Some((parent, first, count)) = self.span(prefix, true) {
            for i in first..first + count {
                let at = parent.map_or(At::Root(i), |p| At::Ply(p, i));
                self.fill(at, slot + 1, len);
            }
        }
        None
    }

    fn remove(&mut self, prefix: Ipv4Prefix) -> Option<NextHopId> {
        let slot = self.index.remove(&prefix)?;
        let (_, nexthop) = self.slots[slot as usize].take()?;
        self.free_slots.push(slot);
        let len = prefix.prefix_len();
        self.by_len[usize::from(len)] -= 1;
        let (with, with_len) = self.covering(prefix);
        if let Some((parent, first, count)) = self.span(prefix, false) {
            for i in first..first + count {
                let at = parent.map_or(At::Root(i), |p| At::Ply(p, i));
                self.unfill(at, slot + 1, len, with, with_len);
            }
            self.fold_path(prefix);
        }
        Some(nexthop)
    }

    #[inline]
    fn lookup(&self, addr: Ipv4Addr) -> Option<(Ipv4Prefix, NextHopId)> {
        let a = u32::from(addr);
        let mut leaf = self.root[(a >> 16) as usize];
        if leaf & PLY != 0 {
            leaf = self.plies[(leaf & !PLY) as usize].leaves[((a >> 8) & 0xff) as usize];
            if leaf & PLY != 0 {
                leaf = self.plies[(leaf & !PLY) as usize].leaves[(a & 0xff) as usize];
            }
        }
        match leaf {
            0 => None,
            l => self.slots[(l - 1) as usize],
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::fib::TrieFib;
    use proptest::prelude::*;

    fn p(s: &str) -> Ipv4Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn longest_match_across_the_three_levels() {
        let mut m = Mtrie::default();
        for (s, nh) in [("0.0.0.0/0", 1), ("10.0.0.0/8", 2), ("10.1.0.0/16", 3), ("10.1.2.0/24", 4), ("10.1.2.128/25", 5), ("10.1.2.3/32", 6)] {
            m.insert(p(s), NextHopId(nh));
        }
        let at = |m: &Mtrie, a: &str| m.lookup(a.parse().unwrap()).map(|(p, nh)| (p.to_string(), nh.0));
        assert_eq!(at(&m, "10.1.2.3"), Some(("10.1.2.3/32".into(), 6)));
        assert_eq!(at(&m, "10.1.2.200"), Some(("10.1.2.128/25".into(), 5)));
        assert_eq!(at(&m, "10.1.2.4"), Some(("10.1.2.0/24".into(), 4)));
        assert_eq!(at(&m, "10.1.3.1"), Some(("10.1.0.0/16".into(), 3)));
        assert_eq!(at(&m, "10.2.0.1"), Some(("10.0.0.0/8".into(), 2)));
        assert_eq!(at(&m, "192.0.2.1"), Some(("0.0.0.0/0".into(), 1)));
        // A shorter prefix inserted after longer ones does not cover them.
        m.insert(p("10.1.2.0/23"), NextHopId(7));
        assert_eq!(at(&m, "10.1.2.4"), Some(("10.1.2.0/24".into(), 4)));
        assert_eq!(at(&m, "10.1.3.4"), Some(("10.1.2.0/23".into(), 7)));
        // Removal hands the slots back to what covers them.
        assert_eq!(m.remove(p("10.1.2.0/24")), Some(NextHopId(4)));
        assert_eq!(at(&m, "10.1.2.4"), Some(("10.1.2.0/23".into(), 7)));
        assert_eq!(at(&m, "10.1.2.3"), Some(("10.1.2.3/32".into(), 6)));
        assert_eq!(m.remove(p("0.0.0.0/0")), Some(NextHopId(1)));
        assert_eq!(at(&m, "192.0.2.1"), None);
        assert_eq!(m.remove(p("0.0.0.0/0")), None);
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn plies_fold_back_when_their_routes_go() {
        let mut m = Mtrie::default();
        m.insert(p("10.0.0.0/8"), NextHopId(1));
        let before = m.plies.len() - m.free_plies.len();
        m.insert(p("10.1.2.3/32"), NextHopId(2));
        assert_eq!(m.plies.len() - m.free_plies.len(), before + 2);
        m.remove(p("10.1.2.3/32"));
        assert_eq!(m.plies.len() - m.free_plies.len(), before, "plies not folded");
        assert_eq!(m.lookup("10.1.2.3".parse().unwrap()).map(|(_, nh)| nh.0), Some(1));
    }

    /// An operation on both tables.
    #[derive(Clone, Debug)]
    enum Op {
        Insert(u32, u8, u32),
        Remove(u32, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Addresses from a small pool of /8s and /16s so that prefixes nest and overlap.
        let addr = (0u32..4, 0u32..4, any::<u16>()).prop_map(|(a, b, c)| ((10 + a) << 24) | (b << 16) | u32::from(c));
        prop_oneof![
            3 => (addr.clone(), 0u8..=32, 1u32..50).prop_map(|(a, l, nh)| Op::Insert(a, l, nh)),
            2 => (addr, 0u8..=32).prop_map(|(a, l)| Op::Remove(a, l)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Random inserts and removals, with every step checked against the binary trie.
        #[test]
        fn agrees_with_the_binary_trie(ops in proptest::collection::vec(op(), 1..120), probes in proptest::collection::vec((0u32..4, 0u32..4, any::<u16>()), 64)) {
            let (mut m, mut t) = (Mtrie::default(), TrieFib::default());
            let mut inserted = vec![];
            for o in ops {
                match o {
                    Op::Insert(a, l, nh) => {
                        let pfx = Ipv4Prefix::new(Ipv4Addr::from(a), l).unwrap();
                        prop_assert_eq!(m.insert(pfx, NextHopId(nh)), t.insert(pfx, NextHopId(nh)));
                        inserted.push(pfx);
                    }
                    Op::Remove(a, l) => {
                        // Mostly something that is there.
                        let pfx = if inserted.is_empty() || a % 3 == 0 { Ipv4Prefix::new(Ipv4Addr::from(a), l).unwrap() } else { inserted[a as usize % inserted.len()] };
                        prop_assert_eq!(m.remove(pfx), t.remove(pfx));
                    }
                }
                prop_assert_eq!(m.len(), t.len());
                let routes: Vec<_> = m.routes().collect();
                prop_assert_eq!(routes, t.routes().collect::<Vec<_>>());
                for &(a, b, c) in &probes {
                    let addr = Ipv4Addr::from(((10 + a) << 24) | (b << 16) | u32::from(c));
                    prop_assert_eq!(m.lookup(addr), t.lookup(addr), "{}", addr);
                }
                for pfx in &inserted {
                    let addr = pfx.addr();
                    prop_assert_eq!(m.lookup(addr), t.lookup(addr), "{}", addr);
                }
            }
            // Everything removed: every ply is free again.
            for pfx in inserted {
                m.remove(pfx);
            }
            prop_assert_eq!(m.len(), 0);
            prop_assert_eq!(m.plies.len(), m.free_plies.len());
            prop_assert!(m.root.iter().all(|&l| l == 0));
        }
    }
}
