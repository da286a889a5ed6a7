//! MPLS label allocation from a configured range. A freed label waits a hold-down before it
//! is handed out again, so that a remote PE still using the old advertisement never reaches
//! the wrong VRF. Exhaustion is an error the caller reports, never a panic.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// No label is free.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label range {first}..={last} exhausted ({held} labels in hold-down)")]
pub struct Exhausted {
    /// Range start.
    pub first: u32,
    /// Range end.
    pub last: u32,
    /// Labels waiting out their hold-down.
    pub held: usize,
}

/// Labels keyed by what they stand for (a VRF, a next hop, a prefix).
#[derive(Debug)]
pub struct LabelAllocator<K> {
    first: u32,
    last: u32,
    next: u32,
    hold_down: Duration,
    by_key: HashMap<K, u32>,
    free: BTreeSet<u32>,
    held: VecDeque<(Instant, u32)>,
}

impl<K: Eq + Hash + Clone> LabelAllocator<K> {
    /// An allocator over `first..=last`.
    pub fn new(first: u32, last: u32, hold_down: Duration) -> Self {
        LabelAllocator { first, last, next: first, hold_down, by_key: HashMap::new(), free: BTreeSet::new(), held: VecDeque::new() }
    }

    /// The label of `key`, allocating one if needed.
    pub fn get(&mut self, key: &K, now: Instant) -> Result<u32, Exhausted> {
        if let Some(l) = self.by_key.get(key) {
            return Ok(*l);
        }
        while let Some((t, l)) = self.held.front().copied() {
            if now.duration_since(t) < self.hold_down {
                break;
            }
            self.held.pop_front();
            self.free.insert(l);
        }
        let label = if let Some(l) = self.free.pop_first() {
            l
        } else if self.next <= self.last {
            self.next += 1;
            self.next - 1
        } else {
            return Err(Exhausted { first: self.first, last: self.last, held: self.held.len() });
        };
        self.by_key.insert(key.clone(), label);
        Ok(label)
    }

    /// The label of `key`, if allocated.
    pub fn peek(&self, key: &K) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    /// Release every label whose key `keep` rejects; they enter hold-down.
    pub fn retain(&mut self, now: Instant, mut keep: impl FnMut(&K) -> bool) {
        let held = &mut self.held;
        self.by_key.retain(|k, l| {
            let k_ = keep(k);
            if !k_ {
                held.push_back((now, *l));
            }
            k_
        });
    }

    /// Labels in use.
    pub fn in_use(&self) -> impl Iterator<Item = (&K, u32)> {
        self.by_key.iter().map(|(k, l)| (k, *l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_holds_down_and_exhausts() {
        let t0 = Instant::now();
        let mut a = LabelAllocator::new(100, 101, Duration::from_secs(10));
        assert_eq!(a.get(&"red", t0), Ok(100));
        assert_eq!(a.get(&"red", t0), Ok(100));
        assert_eq!(a.get(&"blue", t0), Ok(101));
        assert!(a.get(&"green", t0).is_err(), "range of two is full");
        a.retain(t0, |k| *k != "red");
        assert!(a.get(&"green", t0 + Duration::from_secs(5)).is_err(), "100 is still held down");
        assert_eq!(a.get(&"green", t0 + Duration::from_secs(11)), Ok(100));
        assert_eq!(a.peek(&"blue"), Some(101));
    }
}
