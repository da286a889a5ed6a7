//! Multibit tries for IPv4 longest-prefix match, as VPP's `ip4_mtrie`: a root of
//! 2^`ROOT_BITS` leaves indexed by the top bits of the address, and plies of 256 leaves for
//! each further 8 bits, made only where a longer prefix needs them. A lookup is at most
//! `1 + (32 - ROOT_BITS) / 8` dependent array reads, with no comparison of prefixes.
//!
//! - [`Mtrie`] (16-8-8, as VPP's `ip4_mtrie_16`) is the FIB of one VRF in the pipeline.
//! - `Mtrie<8>` with one root per VRF (8-8-8-8) is what the express tier's XDP program walks:
//!   the mirror keeps one, with a [`Journal`] of the leaves each change wrote, and copies
//!   them into the program's array map (`dataplane/src/express.rs`).
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

/// The prefix index: keys are (root, prefix) the control plane installs, so the fast hasher
/// fits.
type PrefixIndex = HashMap<(u16, Ipv4Prefix), u32, std::hash::BuildHasherDefault<super::hash::FxHasher>>;

/// Marks a leaf that points to a ply.
pub const PLY: u32 = 1 << 31;

/// 256 leaves for 8 bits of the address, and the prefix length behind each.
#[derive(Clone)]
struct Ply {
    leaves: [u32; 256],
    lens: [u8; 256],
}

/// A multibit trie with `roots` roots of 2^`ROOT_BITS` leaves (one table each) and plies of
/// 8 bits shared by all of them. The default, 16-8-8 with one root: 320 KiB for the root,
/// 1,280 bytes per ply, about 30 bytes per route for the route slots and the prefix index.
#[derive(Clone)]
pub struct Mtrie<const ROOT_BITS: u32 = 16> {
    root: Box<[u32]>,
    root_lens: Box<[u8]>,
    plies: Vec<Ply>,
    /// Where each ply hangs (the leaf that points at it).
    parents: Vec<At>,
    free_plies: Vec<u32>,
    /// Route slots: (prefix, next hop); `None` when free.
    slots: Vec<Option<(Ipv4Prefix, NextHopId)>>,
    free_slots: Vec<u32>,
    /// (Root, prefix) → slot.
    index: PrefixIndex,
    /// How many routes of each length: a removal looks for the covering route only at the
    /// shorter lengths that exist (a VPN table has a handful), not at all of them.
    by_len: [u32; 33],
    /// What changed since [`Mtrie::take_journal`], when kept.
    journal: Option<Journal>,
}

/// The leaves, plies and slots changed since the journal was last taken, to copy the trie
/// elsewhere (the express tier's map). While a journal is kept, plies and slots freed are
/// reused only after the next [`Mtrie::take_journal`]: a reader of the copy that still holds
/// an old leaf finds what it pointed at unchanged until the copy's writes are done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    /// Root leaves written (indices into all roots: `root << ROOT_BITS | top bits`).
    pub roots: Vec<u32>,
    /// Leaves of plies written: (ply, index).
    pub leaves: Vec<(u32, u8)>,
    /// Plies made.
    pub made: Vec<u32>,
    /// Plies freed.
    pub freed: Vec<u32>,
    /// Route slots written (a new route, or a route's next hop changed).
    pub slots: Vec<u32>,
    /// Route slots freed.
    pub freed_slots: Vec<u32>,
}

impl<const ROOT_BITS: u32> Default for Mtrie<ROOT_BITS> {
    fn default() -> Self {
        Mtrie::with_roots(1)
    }
}

impl<const ROOT_BITS: u32> std::fmt::Debug for Mtrie<ROOT_BITS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mtrie").field("routes", &self.index.len()).field("plies", &(self.plies.len() - self.free_plies.len())).finish()
    }
}

/// Where a leaf lives: the roots (index) or a ply (ply, index).
#[derive(Clone, Copy)]
enum At {
    Root(usize),
    Ply(u32, usize),
}

impl<const ROOT_BITS: u32> Mtrie<ROOT_BITS> {
    /// A trie of `roots` empty tables.
    pub fn with_roots(roots: usize) -> Self {
        const { assert!(ROOT_BITS >= 8 && ROOT_BITS <= 24 && ROOT_BITS.is_multiple_of(8)) };
        Mtrie {
            root: vec![0; roots << ROOT_BITS].into_boxed_slice(),
            root_lens: vec![0; roots << ROOT_BITS].into_boxed_slice(),
            plies: Vec::new(),
            parents: Vec::new(),
            free_plies: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            index: PrefixIndex::default(),
            by_len: [0; 33],
            journal: None,
        }
    }

    /// Keep a [`Journal`] of the changes from now on.
    pub fn keep_journal(&mut self) {
        self.journal.get_or_insert_with(Journal::default);
    }

    /// The changes since the last call (each item once, in the order first written), and
    /// the plies and slots freed meanwhile become reusable. Empty when no journal is kept.
    pub fn take_journal(&mut self) -> Journal {
        let Some(j) = self.journal.as_mut() else { return Journal::default() };
        let mut j = std::mem::take(j);
        self.free_plies.extend_from_slice(&j.freed);
        self.free_slots.extend_from_slice(&j.freed_slots);
        fn dedup<T: Copy + Eq + std::hash::Hash>(v: &mut Vec<T>) {
            let mut seen = std::collections::HashSet::with_capacity(v.len());
            v.retain(|x| seen.insert(*x));
        }
        dedup(&mut j.roots);
        dedup(&mut j.leaves);
        dedup(&mut j.slots);
        j
    }

    /// Root leaf `i` (of all roots).
    pub fn root_leaf(&self, i: u32) -> u32 {
        self.root[i as usize]
    }

    /// The 256 leaves of ply `p`.
    pub fn ply_leaves(&self, p: u32) -> &[u32; 256] {
        &self.plies[p as usize].leaves
    }

    /// The route in slot `s`, if it holds one.
    pub fn slot(&self, s: u32) -> Option<(Ipv4Prefix, NextHopId)> {
        self.slots.get(s as usize).copied().flatten()
    }

    /// The slots that hold a route: (slot, next hop).
    pub fn live_slots(&self) -> impl Iterator<Item = (u32, NextHopId)> + '_ {
        self.slots.iter().enumerate().filter_map(|(s, r)| r.map(|(_, nh)| (s as u32, nh)))
    }

    /// The plies in use (neither free nor freed since the journal was taken).
    pub fn live_plies(&self) -> impl Iterator<Item = u32> + '_ {
        let mut free: std::collections::HashSet<u32> = self.free_plies.iter().copied().collect();
        free.extend(self.journal.iter().flat_map(|j| j.freed.iter().copied()));
        (0..self.plies.len() as u32).filter(move |p| !free.contains(p))
    }

    /// Every route, in prefix order (of all roots).
    pub fn routes(&self) -> impl Iterator<Item = (Ipv4Prefix, NextHopId)> + '_ {
        let mut all: Vec<(Ipv4Prefix, NextHopId)> = self.slots.iter().flatten().copied().collect();
        all.sort_unstable_by_key(|(p, _)| (u32::from(p.addr()), p.prefix_len()));
        all.into_iter()
    }

    /// Heap bytes held (root, plies, slots, index), for the FIB benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.root.len() * 5
            + self.plies.capacity() * (std::mem::size_of::<Ply>() + std::mem::size_of::<At>())
            + self.slots.capacity() * std::mem::size_of::<Option<(Ipv4Prefix, NextHopId)>>()
            + self.free_slots.capacity() * 4
            + self.free_plies.capacity() * 4
            // hashbrown: a key, a value and a control byte per bucket, at most 7/8 full.
            + self.index.capacity() * 8 / 7 * (std::mem::size_of::<((u16, Ipv4Prefix), u32)>() + 1)
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
        if let Some(j) = &mut self.journal {
            match at {
                At::Root(i) => j.roots.push(i as u32),
                At::Ply(p, i) => j.leaves.push((p, i as u8)),
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
                self.parents[id as usize] = at;
                id
            }
            None => {
                self.plies.push(ply);
                self.parents.push(at);
                (self.plies.len() - 1) as u32
            }
        };
        if let Some(j) = &mut self.journal {
            j.made.push(id);
        }
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
    /// below; folds plies that become uniform.
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
            match &mut self.journal {
                Some(j) => j.freed.push(p),
                None => self.free_plies.push(p),
            }
        }
    }

    /// Moves plies numbered `limit` or higher into free plies below `limit` while there are
    /// any, so that a copy holding only the plies below `limit` holds as much of the trie as
    /// fits. Each move is journaled as a ply made, its parent's leaf and the ply freed.
    /// Returns how many plies moved.
    pub fn relocate_above(&mut self, limit: u32) -> usize {
        if self.plies.len() as u32 <= limit || !self.free_plies.iter().any(|q| *q < limit) {
            return 0;
        }
        let high: Vec<u32> = self.live_plies().filter(|p| *p >= limit).collect();
        let mut moved = 0;
        for p in high {
            let Some(at) = self.free_plies.iter().position(|q| *q < limit) else { break };
            let q = self.free_plies.swap_remove(at);
            let (pu, qu) = (p as usize, q as usize);
            self.plies[qu] = self.plies[pu].clone();
            self.parents[qu] = self.parents[pu];
            for i in 0..256 {
                let leaf = self.plies[qu].leaves[i];
                if leaf & PLY != 0 {
                    self.parents[(leaf & !PLY) as usize] = At::Ply(q, i);
                }
            }
            if let Some(j) = &mut self.journal {
                j.made.push(q);
            }
            self.set(self.parents[qu], q | PLY, 0);
            match &mut self.journal {
                Some(j) => j.freed.push(p),
                None => self.free_plies.push(p),
            }
            moved += 1;
        }
        moved
    }

    /// The root leaf the address `a` of table `root` starts at.
    fn root_at(root: u16, a: u32) -> usize {
        (usize::from(root) << ROOT_BITS) | (a >> (32 - ROOT_BITS)) as usize
    }

    /// The slots a prefix of table `root` covers at the level where it ends: (parent ply or
    /// root, first index, count). Makes the plies on the way when `make`.
    fn span(&mut self, root: u16, prefix: Ipv4Prefix, make: bool) -> Option<(Option<u32>, usize, usize)> {
        let a = u32::from(prefix.addr());
        let len = u32::from(prefix.prefix_len());
        let top = Self::root_at(root, a);
        if len <= ROOT_BITS {
            return Some((None, top, 1 << (ROOT_BITS - len)));
        }
        let (mut at, mut end) = (At::Root(top), ROOT_BITS);
        loop {
            let p = if make {
                self.ply_below(at)
            } else {
                let (l, _) = self.get(at);
                if l & PLY == 0 {
                    return None;
                }
                l & !PLY
            };
            end += 8;
            let i = ((a >> (32 - end)) & 0xff) as usize;
            if len <= end {
                return Some((Some(p), i, 1 << (end - len)));
            }
            at = At::Ply(p, i);
        }
    }

    /// The longest route of table `root` strictly shorter than `prefix` that covers it:
    /// (leaf, length).
    fn covering(&self, root: u16, prefix: Ipv4Prefix) -> (u32, u8) {
        (0..prefix.prefix_len())
            .rev()
            .filter(|&l| self.by_len[usize::from(l)] > 0)
            .find_map(|l| {
                let p = Ipv4Prefix::new(prefix.addr(), l)?;
                self.index.get(&(root, p)).map(|s| (s + 1, l))
            })
            .unwrap_or((0, 0))
    }

    /// Folds the plies on the way to `prefix` that became uniform (deepest first).
    fn fold_path(&mut self, root: u16, prefix: Ipv4Prefix) {
        let a = u32::from(prefix.addr());
        let mut path = Vec::with_capacity(4);
        let (mut at, mut end) = (At::Root(Self::root_at(root, a)), ROOT_BITS);
        loop {
            let (l, _) = self.get(at);
            if l & PLY == 0 {
                break;
            }
            path.push((at, l & !PLY));
            end += 8;
            at = At::Ply(l & !PLY, ((a >> (32 - end)) & 0xff) as usize);
        }
        for (at, p) in path.into_iter().rev() {
            self.fold(at, p);
        }
    }

    /// Install or replace a route in table `root`; the next hop it replaced.
    pub fn insert_in(&mut self, root: u16, prefix: Ipv4Prefix, nexthop: NextHopId) -> Option<NextHopId> {
        if let Some(&slot) = self.index.get(&(root, prefix)) {
            // Same prefix: only the next hop in its slot changes; the leaves stay.
            let old = self.slots[slot as usize].replace((prefix, nexthop));
            if let Some(j) = &mut self.journal {
                j.slots.push(slot);
            }
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
        if let Some(j) = &mut self.journal {
            j.slots.push(slot);
        }
        self.index.insert((root, prefix), slot);
        let len = prefix.prefix_len();
        self.by_len[usize::from(len)] += 1;
        if let Some((parent, first, count)) = self.span(root, prefix, true) {
            for i in first..first + count {
                let at = parent.map_or(At::Root(i), |p| At::Ply(p, i));
                self.fill(at, slot + 1, len);
            }
        }
        None
    }

    /// Remove a route from table `root`; the next hop it had.
    pub fn remove_in(&mut self, root: u16, prefix: Ipv4Prefix) -> Option<NextHopId> {
        let slot = self.index.remove(&(root, prefix))?;
        let (_, nexthop) = self.slots[slot as usize].take()?;
        match &mut self.journal {
            Some(j) => j.freed_slots.push(slot),
            None => self.free_slots.push(slot),
        }
        let len = prefix.prefix_len();
        self.by_len[usize::from(len)] -= 1;
        let (with, with_len) = self.covering(root, prefix);
        if let Some((parent, first, count)) = self.span(root, prefix, false) {
            for i in first..first + count {
                let at = parent.map_or(At::Root(i), |p| At::Ply(p, i));
                self.unfill(at, slot + 1, len, with, with_len);
            }
            self.fold_path(root, prefix);
        }
        Some(nexthop)
    }

    /// The longest prefix of table `root` containing `addr`, and its next hop.
    #[inline]
    pub fn lookup_in(&self, root: u16, addr: Ipv4Addr) -> Option<(Ipv4Prefix, NextHopId)> {
        self.lookup_slot_in(root, addr).map(|(_, p, nh)| (p, nh))
    }

    /// [`Mtrie::lookup_in`] with the route's slot (what per-prefix counters are kept by).
    #[inline]
    pub fn lookup_slot_in(&self, root: u16, addr: Ipv4Addr) -> Option<(u32, Ipv4Prefix, NextHopId)> {
        let a = u32::from(addr);
        let mut leaf = self.root[Self::root_at(root, a)];
        let mut shift = 32 - ROOT_BITS;
        while leaf & PLY != 0 && shift >= 8 {
            shift -= 8;
            leaf = self.plies[(leaf & !PLY) as usize].leaves[((a >> shift) & 0xff) as usize];
        }
        match leaf {
            0 => None,
            l => self.slots[(l - 1) as usize].map(|(p, nh)| (l - 1, p, nh)),
        }
    }

    /// The prefix of the route in `slot`, if one holds it.
    pub fn slot_prefix(&self, slot: u32) -> Option<Ipv4Prefix> {
        self.slots.get(slot as usize).copied().flatten().map(|(p, _)| p)
    }

    /// The slot of the route `prefix` under `root`.
    pub fn slot_of(&self, root: u16, prefix: Ipv4Prefix) -> Option<u32> {
        self.index.get(&(root, prefix)).copied()
    }
}

impl<const ROOT_BITS: u32> Lpm for Mtrie<ROOT_BITS> {
    fn insert(&mut self, prefix: Ipv4Prefix, nexthop: NextHopId) -> Option<NextHopId> {
        self.insert_in(0, prefix, nexthop)
    }

    fn remove(&mut self, prefix: Ipv4Prefix) -> Option<NextHopId> {
        self.remove_in(0, prefix)
    }

    #[inline]
    fn lookup(&self, addr: Ipv4Addr) -> Option<(Ipv4Prefix, NextHopId)> {
        self.lookup_in(0, addr)
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
        let mut m = Mtrie::<16>::default();
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
        let mut m = Mtrie::<16>::default();
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
            let (mut m, mut t) = (Mtrie::<16>::default(), TrieFib::default());
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

    /// A copy of an 8-8-8-8 trie kept only from its journals, walked as the XDP program walks
    /// its map.
    #[derive(Default)]
    struct Copy {
        roots: Vec<u32>,
        plies: HashMap<u32, [u32; 256]>,
        slots: HashMap<u32, u32>,
    }

    impl Copy {
        fn apply(&mut self, m: &Mtrie<8>, j: &Journal) {
            for &s in &j.slots {
                if let Some((_, nh)) = m.slot(s) {
                    self.slots.insert(s, nh.0);
                }
            }
            for &p in &j.made {
                self.plies.insert(p, *m.ply_leaves(p));
            }
            for &(p, i) in &j.leaves {
                if !j.freed.contains(&p) {
                    self.plies.get_mut(&p).expect("a leaf of a ply never made")[usize::from(i)] = m.ply_leaves(p)[usize::from(i)];
                }
            }
            for &r in &j.roots {
                self.roots[r as usize] = m.root_leaf(r);
            }
        }

        fn lookup(&self, root: u16, a: u32) -> Option<u32> {
            let mut leaf = self.roots[(usize::from(root) << 8) | (a >> 24) as usize];
            for shift in [16, 8, 0] {
                if leaf & PLY == 0 {
                    break;
                }
                leaf = self.plies[&(leaf & !PLY)][((a >> shift) & 0xff) as usize];
            }
            (leaf != 0).then(|| self.slots[&(leaf - 1)])
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Several tables in one 8-8-8-8 trie, changed in batches (and plies relocated below
        /// a limit); after each batch a copy made only from the journal answers every probe
        /// as a binary trie per table does, and nothing freed in a batch was reused within it.
        #[test]
        fn journal_copies_the_trie(batches in proptest::collection::vec(proptest::collection::vec((0u16..3, op()), 1..40), 1..8), probes in proptest::collection::vec((0u16..3, 0u32..4, 0u32..4, any::<u16>()), 48)) {
            let mut m = Mtrie::<8>::with_roots(3);
            m.keep_journal();
            let mut tries = [TrieFib::default(), TrieFib::default(), TrieFib::default()];
            let mut copy = Copy { roots: vec![0; 3 << 8], ..Copy::default() };
            let mut inserted = vec![];
            for batch in batches {
                for (root, o) in batch {
                    let t = &mut tries[usize::from(root)];
                    match o {
                        Op::Insert(a, l, nh) => {
                            let pfx = Ipv4Prefix::new(Ipv4Addr::from(a), l).unwrap();
                            prop_assert_eq!(m.insert_in(root, pfx, NextHopId(nh)), t.insert(pfx, NextHopId(nh)));
                            inserted.push((root, pfx));
                        }
                        Op::Remove(a, l) => {
                            let (root, pfx) = if inserted.is_empty() || a % 3 == 0 { (root, Ipv4Prefix::new(Ipv4Addr::from(a), l).unwrap()) } else { inserted[a as usize % inserted.len()] };
                            prop_assert_eq!(m.remove_in(root, pfx), tries[usize::from(root)].remove(pfx));
                        }
                    }
                }
                // Plies above 6 move down where room was freed (parents and children follow).
                m.relocate_above(6);
                let j = m.take_journal();
                let made: std::collections::HashSet<u32> = j.made.iter().copied().collect();
                prop_assert_eq!(made.len(), j.made.len(), "a ply made twice in one batch");
                let slots: std::collections::HashSet<u32> = j.freed_slots.iter().copied().collect();
                prop_assert_eq!(slots.len(), j.freed_slots.len(), "a slot freed twice in one batch");
                copy.apply(&m, &j);
                for &(root, a, b, c) in &probes {
                    let addr = ((10 + a) << 24) | (b << 16) | u32::from(c);
                    let want = tries[usize::from(root)].lookup(Ipv4Addr::from(addr)).map(|(_, nh)| nh.0);
                    prop_assert_eq!(copy.lookup(root, addr), want, "table {} {}", root, Ipv4Addr::from(addr));
                    prop_assert_eq!(m.lookup_in(root, Ipv4Addr::from(addr)).map(|(_, nh)| nh.0), want);
                }
                for &(root, pfx) in &inserted {
                    let want = tries[usize::from(root)].lookup(pfx.addr()).map(|(_, nh)| nh.0);
                    prop_assert_eq!(copy.lookup(root, u32::from(pfx.addr())), want, "table {} {}", root, pfx);
                }
            }
        }
    }
}
