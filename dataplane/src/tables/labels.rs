//! Arrays indexed by MPLS label: the incoming label map ([`Ilm`]) and the per-label counters
//! ([`LabelCounters`]).
//!
//! The 20-bit label space is split into 1,024 pages of 1,024 labels; a page is allocated when
//! its first label is set and freed when its last one is cleared. A lookup is two dependent
//! loads (the page, the slot) with no hashing: labels a control plane allocates come in runs
//! (carrier-control's per-route labels are consecutive), so a million labels fill a thousand
//! pages and cost a slot each (12 bytes for an ILM entry, 16 for a counter), where a hash map
//! cost a bucket, its control byte and its spare capacity. A lone label costs a page (12 or
//! 16 KiB); the whole space at most 12 or 16 MiB.
//!
//! A slot equal to `T::default()` is empty: `None` for the ILM, zero packets for a counter.

use std::fmt;

use carrier_common::Label;

use super::IlmAction;
use crate::pipeline::PacketBytes;

/// Labels per page (the low bits of a label index the page).
const PAGE_BITS: u32 = 10;
const PAGE: usize = 1 << PAGE_BITS;
/// Pages over the 20-bit label space.
const PAGES: usize = 1 << (20 - PAGE_BITS);

#[derive(Clone)]
struct Page<T> {
    /// Slots that are not empty.
    used: u32,
    slots: Box<[T]>,
}

/// A value per 20-bit label, in pages allocated on demand.
#[derive(Clone)]
pub struct LabelArray<T> {
    /// By `label >> PAGE_BITS`; empty until a label is set (an empty table allocates nothing).
    pages: Vec<Option<Page<T>>>,
    /// Slots that are not empty, over all pages.
    len: usize,
}

impl<T> Default for LabelArray<T> {
    fn default() -> Self {
        LabelArray { pages: Vec::new(), len: 0 }
    }
}

impl<T: Copy + Default + PartialEq> LabelArray<T> {
    fn split(label: u32) -> (usize, usize) {
        ((label >> PAGE_BITS) as usize, (label as usize) & (PAGE - 1))
    }

    /// The value of `label`, `None` when its slot is empty (or `label` is not a 20-bit value).
    #[inline]
    pub fn get(&self, label: u32) -> Option<&T> {
        let (p, s) = Self::split(label);
        let slot = &self.pages.get(p)?.as_ref()?.slots[s];
        (*slot != T::default()).then_some(slot)
    }

    /// Change the slot of `label` with `f`, allocating its page if needed; keeps the counts
    /// of used slots, frees the page when its last slot becomes empty. A label beyond 20 bits
    /// is ignored.
    #[inline]
    pub fn update<R>(&mut self, label: u32, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let (p, s) = Self::split(label);
        if p >= PAGES {
            return None;
        }
        if self.pages.len() <= p {
            self.pages.resize_with(p + 1, || None);
        }
        let page = self.pages[p].get_or_insert_with(|| Page { used: 0, slots: vec![T::default(); PAGE].into_boxed_slice() });
        let slot = &mut page.slots[s];
        let was = *slot != T::default();
        let r = f(slot);
        let is = *slot != T::default();
        match (was, is) {
            (false, true) => {
                page.used += 1;
                self.len += 1;
            }
            (true, false) => {
                page.used -= 1;
                self.len -= 1;
            }
            _ => {}
        }
        if page.used == 0 {
            self.pages[p] = None;
        }
        Some(r)
    }

    /// Set the slot of `label`, returning what it held (`T::default()` when empty).
    pub fn set(&mut self, label: u32, value: T) -> T {
        self.update(label, |slot| std::mem::replace(slot, value)).unwrap_or_default()
    }

    /// Slots that are not empty.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No slot is set.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The labels that are set and their values, in label order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> + '_ {
        self.pages.iter().enumerate().filter_map(|(p, page)| page.as_ref().map(|page| (p, page))).flat_map(|(p, page)| {
            page.slots.iter().enumerate().filter(|(_, v)| **v != T::default()).map(move |(s, v)| (((p << PAGE_BITS) | s) as u32, v))
        })
    }

    /// Keep only the labels `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(u32, &T) -> bool) {
        let gone: Vec<u32> = self.iter().filter(|(l, v)| !keep(*l, v)).map(|(l, _)| l).collect();
        for l in gone {
            self.set(l, T::default());
        }
    }
}

impl<T: Copy + Default + PartialEq> PartialEq for LabelArray<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Copy + Default + PartialEq> Eq for LabelArray<T> {}

impl<T: Copy + Default + PartialEq + fmt::Debug> fmt::Debug for LabelArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The incoming label map: what to do with a packet by its top label.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Ilm(LabelArray<Option<IlmAction>>);

impl Ilm {
    /// The action of `label`.
    #[inline]
    pub fn get(&self, label: &Label) -> Option<&IlmAction> {
        self.0.get(label.value()).and_then(Option::as_ref)
    }

    /// Whether `label` has an action.
    pub fn contains_key(&self, label: &Label) -> bool {
        self.get(label).is_some()
    }

    /// Set the action of `label`, returning the one it replaces.
    pub fn insert(&mut self, label: Label, action: IlmAction) -> Option<IlmAction> {
        self.0.set(label.value(), Some(action))
    }

    /// Remove the action of `label`, returning it.
    pub fn remove(&mut self, label: &Label) -> Option<IlmAction> {
        self.0.set(label.value(), None)
    }

    /// Labels with an action.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No label has an action.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Labels and their actions, in label order.
    pub fn iter(&self) -> impl Iterator<Item = (Label, &IlmAction)> + '_ {
        self.0.iter().filter_map(|(l, a)| Some((Label::new(l)?, a.as_ref()?)))
    }

    /// Labels with an action, in order.
    pub fn keys(&self) -> impl Iterator<Item = Label> + '_ {
        self.iter().map(|(l, _)| l)
    }

    /// The actions, in label order.
    pub fn values(&self) -> impl Iterator<Item = &IlmAction> + '_ {
        self.iter().map(|(_, a)| a)
    }
}

impl fmt::Debug for Ilm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Packets and bytes by label value (a worker's `labels_in` and `labels_out`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LabelCounters(LabelArray<PacketBytes>);

impl LabelCounters {
    /// Count a packet of `len` bytes for `label`.
    #[inline]
    pub fn add(&mut self, label: u32, len: usize) {
        self.0.update(label, |c| c.add(len));
    }

    /// Add `count` to `label`'s counter.
    pub fn add_count(&mut self, label: u32, count: PacketBytes) {
        self.0.update(label, |c| {
            c.packets += count.packets;
            c.bytes += count.bytes;
        });
    }

    /// The counter of `label`, `None` before its first packet.
    pub fn get(&self, label: u32) -> Option<&PacketBytes> {
        self.0.get(label)
    }

    /// Labels counted and their counters, in label order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &PacketBytes)> + '_ {
        self.0.iter()
    }

    /// Labels counted.
    pub fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().map(|(l, _)| l)
    }

    /// Keep only the labels `keep` says yes to.
    pub fn retain(&mut self, keep: impl FnMut(u32, &PacketBytes) -> bool) {
        self.0.retain(keep);
    }
}

impl std::ops::Index<&u32> for LabelCounters {
    type Output = PacketBytes;

    fn index(&self, label: &u32) -> &PacketBytes {
        self.get(*label).expect("no counter for this label")
    }
}

impl fmt::Debug for LabelCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use carrier_common::VrfId;

    use super::*;

    /// Random sets and clears against a `BTreeMap`: the same lookups, the same iteration in
    /// label order, the same length, and a page is freed with its last label.
    #[test]
    fn agrees_with_a_map() {
        let mut table: LabelArray<u32> = LabelArray::default();
        let mut model = BTreeMap::new();
        let mut x = 0x9e37_79b9_u32;
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Labels bunched in three regions, so pages fill and empty.
            let label = [16, 0xf_f800, 500_000][(x % 3) as usize] + (x >> 8) % 2048;
            let value = if x & 0x30 == 0 { 0 } else { 1 + (x >> 20) % 7 };
            let old = table.set(label, value);
            let model_old = if value == 0 { model.remove(&label) } else { model.insert(label, value) };
            assert_eq!(old, model_old.unwrap_or(0), "step {step}, label {label}");
            assert_eq!(table.get(label), model.get(&label));
            assert_eq!(table.len(), model.len());
            if step % 1000 == 0 {
                assert!(table.iter().map(|(l, v)| (l, *v)).eq(model.iter().map(|(l, v)| (*l, *v))));
            }
        }
        let pages = |t: &LabelArray<u32>| t.pages.iter().flatten().count();
        let expected: std::collections::BTreeSet<u32> = model.keys().map(|l| l >> PAGE_BITS).collect();
        assert_eq!(pages(&table), expected.len());
        table.retain(|_, _| false);
        assert_eq!((table.len(), pages(&table)), (0, 0));
        assert_eq!(table.get(1 << 20), None);
        assert_eq!(table.set(1 << 20, 5), 0, "a label beyond 20 bits is ignored");
        assert!(table.is_empty());
    }

    #[test]
    fn ilm_acts_as_a_map_of_labels() {
        let l = |v| Label::new(v).unwrap();
        let mut ilm = Ilm::default();
        ilm.insert(l(100_000), IlmAction::PopLookup { vrf: VrfId(1) });
        ilm.insert(l(16), IlmAction::Swap { out: l(17), pe: Ipv4Addr::new(10, 0, 0, 1) });
        assert_eq!(ilm.len(), 2);
        assert_eq!(ilm.keys().collect::<Vec<_>>(), [l(16), l(100_000)]);
        assert_eq!(ilm.insert(l(100_000), IlmAction::PopLookup { vrf: VrfId(2) }), Some(IlmAction::PopLookup { vrf: VrfId(1) }));
        assert_eq!(ilm.get(&l(100_000)), Some(&IlmAction::PopLookup { vrf: VrfId(2) }));
        assert_eq!(ilm.remove(&l(16)), Some(IlmAction::Swap { out: l(17), pe: Ipv4Addr::new(10, 0, 0, 1) }));
        assert!(!ilm.contains_key(&l(16)));
        assert_eq!(ilm.len(), 1);
    }

    #[test]
    fn counters_count_and_compare_by_content() {
        let mut a = LabelCounters::default();
        a.add(1000, 60);
        a.add(1000, 40);
        a.add(5, 10);
        assert_eq!(a[&1000], PacketBytes { packets: 2, bytes: 100 });
        let mut b = LabelCounters::default();
        b.add_count(5, PacketBytes { packets: 1, bytes: 10 });
        b.add(900_000, 1);
        b.retain(|l, _| l != 900_000);
        b.add_count(1000, PacketBytes { packets: 2, bytes: 100 });
        assert_eq!(a, b, "a freed page does not make two equal counter sets differ");
    }
}
