//! Compile the RIB's changes into dataplane table commands, incrementally.
//!
//! The [`Compiler`] holds what the dataplane was told on top of its base tables: routes,
//! next hops, labels, flood lists, MACs and ARP bindings. Each flush hands it a [`Delta`] —
//! only the destinations the RIB touched — and gets back the commands for exactly that change,
//! sent as one atomic `apply`. [`Compiler::full_state`] gives everything again as a `replace`,
//! for a dataplane that (re)connects.
//!
//! Next-hop ids are stable and reference-counted: a next hop keeps its id while any route or
//! label uses it, and its id is freed (and `remove-next-hop` sent) only once nothing does, at
//! the end of the batch in which the last user went away; a freed id is reused by a later
//! batch. So ids name the same next hop for as long as it exists, and counters or mirrors
//! keyed by id stay right.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::sync::Arc;

use carrier_common::{BridgeDomainId, Label, NextHopId, PortId, VrfId};
use carrier_contract::command::{IlmAction, MacDest, NextHop, PortRole, Table, TableCommand};
use carrier_contract::Ipv4Prefix;
use carrier_dataplane::tables::Tables;
use carrier_contract::MacAddr;

use crate::rib::Desired;

/// Where a route goes, as the RIB says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteTo {
    /// BGP next hops (several = ECMP).
    Hops(Vec<NextHop>),
    /// A gateway in one of the table's connected subnets (static routes, IPv4 unicast).
    Via(Ipv4Addr),
}

/// The EVPN state for bridge domains: flood lists, remote MACs, ARP bindings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvpnState {
    /// Bridge flood lists (learned VTEPs; the base config's are kept as well).
    pub flood: BTreeMap<BridgeDomainId, BTreeSet<Ipv4Addr>>,
    /// Bridge MACs behind remote VTEPs.
    pub macs: BTreeMap<(BridgeDomainId, MacAddr), Ipv4Addr>,
    /// ARP suppression bindings.
    pub arp: BTreeMap<(BridgeDomainId, Ipv4Addr), MacAddr>,
}

/// What changed since the last flush.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Routes whose target changed; `None` withdraws.
    pub routes: Vec<(Table, Ipv4Prefix, Option<RouteTo>)>,
    /// The whole label set, when it changed: label → VRF and optional CE (per-CE label).
    pub labels: Option<BTreeMap<u32, (VrfId, Option<Ipv4Addr>)>>,
    /// The whole EVPN state, when it changed.
    pub evpn: Option<EvpnState>,
}

impl Delta {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.labels.is_none() && self.evpn.is_none()
    }
}

impl From<&Desired> for Delta {
    /// Everything in `desired`, as the change from an empty state.
    fn from(d: &Desired) -> Delta {
        let mut routes: Vec<(Table, Ipv4Prefix, Option<RouteTo>)> = vec![];
        for (prefix, gw) in &d.underlay {
            routes.push((Table::Underlay, *prefix, Some(RouteTo::Via(*gw))));
        }
        for (vrf, r) in &d.vrf_routes {
            for (prefix, hops) in r {
                routes.push((Table::Vrf(*vrf), *prefix, Some(RouteTo::Hops(hops.clone()))));
            }
        }
        for (vrf, r) in &d.statics {
            for (prefix, ce) in r {
                routes.push((Table::Vrf(*vrf), *prefix, Some(RouteTo::Via(*ce))));
            }
        }
        Delta {
            routes,
            labels: Some(d.labels.clone()),
            evpn: Some(EvpnState { flood: d.flood.clone(), macs: d.macs.clone(), arp: d.arp.clone() }),
        }
    }
}

#[derive(Debug)]
struct Slot {
    nexthop: NextHop,
    refs: u32,
}

/// The tables routing one prefix above the base, each with its next hop: one inline (nearly
/// every prefix: one VRF), more in a boxed slice sorted by table. 16 bytes, so a million
/// prefixes cost their hash table's 24-byte buckets; this map is also what the RIB compares a
/// flush against (it keeps no copy of what it handed on).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Held {
    One((Table, NextHopId)),
    Many(Box<[(Table, NextHopId)]>),
}

impl Held {
    /// The tables of `all`, sorted; `None` when there are none.
    fn of(mut all: Vec<(Table, NextHopId)>) -> Option<Held> {
        all.sort_by_key(|(t, _)| table_order(*t));
        match all.as_slice() {
            [] => None,
            [one] => Some(Held::One(*one)),
            _ => Some(Held::Many(all.into_boxed_slice())),
        }
    }

    fn as_slice(&self) -> &[(Table, NextHopId)] {
        match self {
            Held::One(one) => std::slice::from_ref(one),
            Held::Many(all) => all,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [(Table, NextHopId)] {
        match self {
            Held::One(one) => std::slice::from_mut(one),
            Held::Many(all) => all,
        }
    }
}

/// Routes by prefix, then table.
#[derive(Debug, Default)]
struct RouteMap {
    by_prefix: HashMap<Ipv4Prefix, Held>,
    len: usize,
}

impl RouteMap {
    fn get(&self, table: Table, prefix: Ipv4Prefix) -> Option<NextHopId> {
        self.by_prefix.get(&prefix)?.as_slice().iter().find(|(t, _)| *t == table).map(|(_, id)| *id)
    }

    fn insert(&mut self, table: Table, prefix: Ipv4Prefix, id: NextHopId) -> Option<NextHopId> {
        match self.by_prefix.entry(prefix) {
            Entry::Vacant(e) => {
                e.insert(Held::One((table, id)));
            }
            Entry::Occupied(mut e) => {
                if let Some((_, old)) = e.get_mut().as_mut_slice().iter_mut().find(|(t, _)| *t == table) {
                    return Some(std::mem::replace(old, id));
                }
                let mut all = e.get().as_slice().to_vec();
                all.push((table, id));
                if let Some(held) = Held::of(all) {
                    e.insert(held);
                }
            }
        }
        self.len += 1;
        None
    }

    fn remove(&mut self, table: Table, prefix: Ipv4Prefix) -> Option<NextHopId> {
        let Entry::Occupied(mut e) = self.by_prefix.entry(prefix) else { return None };
        let old = e.get().as_slice().iter().find(|(t, _)| *t == table)?.1;
        match Held::of(e.get().as_slice().iter().filter(|(t, _)| *t != table).copied().collect()) {
            Some(rest) => *e.get_mut() = rest,
            None => {
                e.remove();
            }
        }
        self.len -= 1;
        Some(old)
    }

    /// The tables routing `prefix`.
    fn tables(&self, prefix: Ipv4Prefix) -> impl Iterator<Item = Table> + '_ {
        self.by_prefix.get(&prefix).into_iter().flat_map(|h| h.as_slice().iter().map(|(t, _)| *t))
    }

    fn iter(&self) -> impl Iterator<Item = (Table, Ipv4Prefix, NextHopId)> + '_ {
        self.by_prefix.iter().flat_map(|(p, h)| h.as_slice().iter().map(move |(t, id)| (*t, *p, *id)))
    }
}

/// The underlay first, then VRFs by id.
fn table_order(t: Table) -> (bool, Option<VrfId>) {
    (matches!(t, Table::Vrf(_)), Compiler::vrf_of(t))
}

/// The incremental compiler: what the dataplane holds above its base tables.
#[derive(Debug)]
pub struct Compiler {
    base: Arc<Tables>,
    /// Next hops by id (index `id - first`), with their reference counts.
    slots: Vec<Option<Slot>>,
    /// The ids of the next hops in `slots`, found by the next hop's hash: a next hop is kept
    /// once (in its slot), the table holds 4-byte ids (with a label per route, a million
    /// next hops; a map keyed by the 32-byte next hop cost ~75 bytes a route). SipHash with
    /// a random key: the next hops' labels and addresses are a BGP peer's choice.
    ids: hashbrown::HashTable<NextHopId>,
    hasher: std::hash::RandomState,
    /// Ids free for the next batch.
    free: Vec<NextHopId>,
    /// Ids freed in this batch: removed from the dataplane at its end, reusable after it.
    freed: Vec<NextHopId>,
    routes: RouteMap,
    labels: BTreeMap<Label, IlmAction>,
    evpn: EvpnState,
    /// Routes left out because their gateway is in no connected subnet (since the start).
    pub skipped: usize,
}

impl Compiler {
    /// A compiler for a dataplane whose base tables are `base`.
    pub fn new(base: Arc<Tables>) -> Compiler {
        Compiler {
            base,
            slots: vec![],
            ids: hashbrown::HashTable::new(),
            hasher: std::hash::RandomState::new(),
            free: vec![],
            freed: vec![],
            routes: RouteMap::default(),
            labels: BTreeMap::new(),
            evpn: EvpnState::default(),
            skipped: 0,
        }
    }

    /// Whether this compiler works over `base` (the same tables, not an equal copy).
    pub fn is_over(&self, base: &Tables) -> bool {
        std::ptr::eq(&*self.base, base)
    }

    fn first(&self) -> u32 {
        self.base.nexthops.len() as u32
    }

    fn slot(&mut self, id: NextHopId) -> Option<&mut Slot> {
        let first = self.first();
        self.slots.get_mut((id.0 - first) as usize).and_then(Option::as_mut)
    }

    /// The id of `nh`, if it has one.
    fn id_of(&self, nh: &NextHop) -> Option<NextHopId> {
        self.ids.find(self.hasher.hash_one(nh), |id| self.nexthop(*id) == Some(nh)).copied()
    }

    /// The id of `nh`, holding one reference to it; a new next hop is announced in `out`.
    fn acquire(&mut self, nh: &NextHop, out: &mut Vec<TableCommand>) -> NextHopId {
        if let Some(id) = self.id_of(nh) {
            if let Some(s) = self.slot(id) {
                s.refs += 1;
            }
            return id;
        }
        let first = self.first();
        let id = self.free.pop().unwrap_or(NextHopId(first + self.slots.len() as u32));
        let i = (id.0 - first) as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i] = Some(Slot { nexthop: nh.clone(), refs: 1 });
        let (slots, hasher) = (&self.slots, &self.hasher);
        let rehash = |id: &NextHopId| slots.get((id.0 - first) as usize).and_then(Option::as_ref).map_or(0, |s| hasher.hash_one(&s.nexthop));
        self.ids.insert_unique(hasher.hash_one(nh), id, rehash);
        out.push(TableCommand::NextHop { id, nexthop: nh.clone() });
        id
    }

    /// One reference to the next hop (or ECMP group) of `hops`.
    fn acquire_hops(&mut self, hops: &[NextHop], out: &mut Vec<TableCommand>) -> Option<NextHopId> {
        match hops {
            [] => None,
            [one] => Some(self.acquire(one, out)),
            many => {
                let members: Vec<NextHopId> = many.iter().map(|h| self.acquire(h, out)).collect();
                let group = NextHop::Ecmp { members: members.clone() };
                let existed = self.id_of(&group).is_some();
                let id = self.acquire(&group, out);
                if existed {
                    // The group already holds its members.
                    for m in members {
                        self.release(m);
                    }
                }
                Some(id)
            }
        }
    }

    /// Drop one reference; at zero the id is freed at the end of the batch.
    fn release(&mut self, id: NextHopId) {
        let Some(s) = self.slot(id) else { return };
        s.refs -= 1;
        if s.refs > 0 {
            return;
        }
        let first = self.first();
        let Some(slot) = self.slots[(id.0 - first) as usize].take() else { return };
        if let Ok(entry) = self.ids.find_entry(self.hasher.hash_one(&slot.nexthop), |x| *x == id) {
            entry.remove();
        }
        self.freed.push(id);
        if let NextHop::Ecmp { members } = slot.nexthop {
            for m in members {
                self.release(m);
            }
        }
    }

    /// The port of `vrf` (or the core, for `None`) whose connected subnet holds `addr`.
    fn connected_port(&self, vrf: Option<VrfId>, addr: Ipv4Addr) -> Option<PortId> {
        self.base
            .ports
            .iter()
            .find(|p| {
                let in_table = match vrf {
                    Some(v) => p.role == PortRole::Vrf(v),
                    None => p.role == PortRole::Core,
                };
                in_table && p.addrs.iter().any(|a| a.prefix.contains(addr))
            })
            .map(|p| p.id)
    }

    fn vrf_of(table: Table) -> Option<VrfId> {
        match table {
            Table::Vrf(v) => Some(v),
            Table::Underlay => None,
        }
    }

    /// Commands that bring the dataplane from the current state to the current state plus
    /// `delta`, in an order the dataplane accepts: new next hops before the routes that use
    /// them, next hops removed after the last route left them.
    pub fn apply(&mut self, delta: &Delta) -> Vec<TableCommand> {
        let mut out = vec![];
        for (table, prefix, to) in &delta.routes {
            let new = match to {
                None => None,
                Some(RouteTo::Hops(hops)) => self.acquire_hops(hops, &mut out),
                Some(RouteTo::Via(gw)) => match self.connected_port(Self::vrf_of(*table), *gw) {
                    Some(port) => Some(self.acquire(&NextHop::Adjacency { port, via: Some(*gw) }, &mut out)),
                    None => {
                        self.skipped += 1;
                        None
                    }
                },
            };
            let old = match new {
                Some(id) => self.routes.insert(*table, *prefix, id),
                None => self.routes.remove(*table, *prefix),
            };
            match (old, new) {
                (Some(o), Some(n)) if o == n => {}
                (_, Some(nexthop)) => out.push(TableCommand::Route { table: *table, prefix: *prefix, nexthop }),
                (Some(_), None) => out.push(TableCommand::Withdraw { table: *table, prefix: *prefix }),
                (None, None) => {}
            }
            if let Some(o) = old {
                self.release(o);
            }
        }
        if let Some(labels) = &delta.labels {
            self.apply_labels(labels, &mut out);
        }
        if let Some(evpn) = &delta.evpn {
            self.apply_evpn(evpn, &mut out);
        }
        for id in std::mem::take(&mut self.freed) {
            out.push(TableCommand::RemoveNextHop { id });
            self.free.push(id);
        }
        out
    }

    fn apply_labels(&mut self, labels: &BTreeMap<u32, (VrfId, Option<Ipv4Addr>)>, out: &mut Vec<TableCommand>) {
        let mut wanted: BTreeMap<Label, IlmAction> = BTreeMap::new();
        for (label, (vrf, ce)) in labels {
            let Some(label) = Label::new(*label) else { continue };
            let action = match ce.and_then(|ce| self.connected_port(Some(*vrf), ce).map(|p| (p, ce))) {
                Some((port, ce)) => IlmAction::PopForward { vrf: *vrf, nexthop: self.acquire(&NextHop::Adjacency { port, via: Some(ce) }, out) },
                None => IlmAction::PopLookup { vrf: *vrf },
            };
            wanted.insert(label, action);
        }
        let old = std::mem::take(&mut self.labels);
        for (label, action) in &wanted {
            if old.get(label) != Some(action) {
                out.push(TableCommand::Label { label: *label, action: *action });
            }
        }
        for label in old.keys().filter(|l| !wanted.contains_key(l)) {
            out.push(TableCommand::RemoveLabel { label: *label });
        }
        // The references the old labels held go; the new ones were taken above.
        for action in old.values() {
            if let IlmAction::PopForward { nexthop, .. } = action {
                self.release(*nexthop);
            }
        }
        self.labels = wanted;
    }

    fn flood_list(&self, bridge: BridgeDomainId, learned: Option<&BTreeSet<Ipv4Addr>>) -> Vec<Ipv4Addr> {
        let mut all = self.base.bridges.get(bridge.index()).map(|b| b.flood.clone()).unwrap_or_default();
        for v in learned.into_iter().flatten() {
            if !all.contains(v) {
                all.push(*v);
            }
        }
        all
    }

    fn apply_evpn(&mut self, new: &EvpnState, out: &mut Vec<TableCommand>) {
        let old = std::mem::take(&mut self.evpn);
        let bridges: BTreeSet<BridgeDomainId> = old.flood.keys().chain(new.flood.keys()).copied().collect();
        for bridge in bridges {
            if old.flood.get(&bridge) != new.flood.get(&bridge) {
                out.push(TableCommand::FloodList { bridge, vteps: self.flood_list(bridge, new.flood.get(&bridge)) });
            }
        }
        for (&(bridge, mac), &vtep) in &new.macs {
            if old.macs.get(&(bridge, mac)) != Some(&vtep) {
                out.push(TableCommand::BridgeMac { bridge, mac, dest: MacDest::Vtep(vtep) });
            }
        }
        for &(bridge, mac) in old.macs.keys().filter(|k| !new.macs.contains_key(k)) {
            // Back to the base config's entry for that MAC, if it has one.
            match self.base.bridges.get(bridge.index()).and_then(|b| b.macs.get(&mac)) {
                Some(dest) => out.push(TableCommand::BridgeMac { bridge, mac, dest: *dest }),
                None => out.push(TableCommand::RemoveBridgeMac { bridge, mac }),
            }
        }
        for (&(bridge, ip), &mac) in &new.arp {
            if old.arp.get(&(bridge, ip)) != Some(&mac) {
                out.push(TableCommand::ArpBinding { bridge, ip, mac });
            }
        }
        for &(bridge, ip) in old.arp.keys().filter(|k| !new.arp.contains_key(k)) {
            match self.base.bridges.get(bridge.index()).and_then(|b| b.arp.get(&ip)) {
                Some(mac) => out.push(TableCommand::ArpBinding { bridge, ip, mac: *mac }),
                None => out.push(TableCommand::RemoveArpBinding { bridge, ip }),
            }
        }
        self.evpn = new.clone();
    }

    /// Everything this compiler put above the base tables, as commands for a `replace`.
    pub fn full_state(&self) -> Vec<TableCommand> {
        let mut out = vec![];
        let first = self.first();
        let slots = self.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|s| (NextHopId(first + i as u32), &s.nexthop)));
        // ECMP groups after their members, whatever their ids.
        let (groups, plain): (Vec<_>, Vec<_>) = slots.partition(|(_, nh)| matches!(nh, NextHop::Ecmp { .. }));
        for (id, nh) in plain.into_iter().chain(groups) {
            out.push(TableCommand::NextHop { id, nexthop: nh.clone() });
        }
        let mut routes: Vec<_> = self.routes.iter().collect();
        routes.sort_by_key(|(t, p, _)| (table_order(*t), *p));
        for (table, prefix, nexthop) in routes {
            out.push(TableCommand::Route { table, prefix, nexthop });
        }
        for (label, action) in &self.labels {
            out.push(TableCommand::Label { label: *label, action: *action });
        }
        for bridge in self.evpn.flood.keys() {
            out.push(TableCommand::FloodList { bridge: *bridge, vteps: self.flood_list(*bridge, self.evpn.flood.get(bridge)) });
        }
        for (&(bridge, mac), &vtep) in &self.evpn.macs {
            out.push(TableCommand::BridgeMac { bridge, mac, dest: MacDest::Vtep(vtep) });
        }
        for (&(bridge, ip), &mac) in &self.evpn.arp {
            out.push(TableCommand::ArpBinding { bridge, ip, mac });
        }
        out
    }

    /// Routes installed above the base tables.
    pub fn routes(&self) -> usize {
        self.routes.len
    }

    /// The VRFs that route `prefix` above the base (BGP or the control config's statics).
    pub fn vrfs_routing(&self, prefix: Ipv4Prefix) -> impl Iterator<Item = VrfId> + '_ {
        self.routes.tables(prefix).filter_map(Self::vrf_of)
    }

    /// Routes above the base per VRF (BGP's and the control config's statics).
    pub fn vrf_route_counts(&self) -> BTreeMap<VrfId, u64> {
        let mut counts = BTreeMap::new();
        for (t, _, _) in self.routes.iter() {
            if let Table::Vrf(v) = t {
                *counts.entry(v).or_default() += 1;
            }
        }
        counts
    }

    /// The prefixes some VRF routes above the base.
    pub fn vrf_prefixes(&self) -> impl Iterator<Item = Ipv4Prefix> + '_ {
        self.routes.by_prefix.iter().filter(|(_, h)| h.as_slice().iter().any(|(t, _)| matches!(t, Table::Vrf(_)))).map(|(p, _)| *p)
    }

    fn nexthop(&self, id: NextHopId) -> Option<&NextHop> {
        self.slots.get(id.0.wrapping_sub(self.first()) as usize).and_then(Option::as_ref).map(|s| &s.nexthop)
    }

    /// The next hops `table` sends `prefix` to (the members of an ECMP group, in order);
    /// empty when it has no route above the base.
    pub fn hops(&self, table: Table, prefix: Ipv4Prefix) -> Vec<&NextHop> {
        match self.routes.get(table, prefix).and_then(|id| self.nexthop(id)) {
            Some(NextHop::Ecmp { members }) => members.iter().filter_map(|m| self.nexthop(*m)).collect(),
            Some(nh) => vec![nh],
            None => vec![],
        }
    }

    /// Whether `table` sends `prefix` to exactly `hops` (no route: `hops` is `None`), without
    /// allocating: the RIB asks for every route a flush touches.
    pub fn holds(&self, table: Table, prefix: Ipv4Prefix, hops: Option<&[NextHop]>) -> bool {
        let have = self.routes.get(table, prefix).and_then(|id| self.nexthop(id));
        match (have, hops) {
            (None, None) => true,
            (Some(NextHop::Ecmp { members }), Some(want)) if want.len() > 1 => {
                members.len() == want.len() && members.iter().zip(want).all(|(m, w)| self.nexthop(*m) == Some(w))
            }
            (Some(nh), Some([want])) => nh == want,
            _ => false,
        }
    }

    /// Next hops in use.
    pub fn nexthops(&self) -> usize {
        self.ids.len()
    }
}

/// Commands that make the dataplane hold `desired` on top of `base` (a `replace`): the whole
/// state compiled from scratch. Routes whose gateway is in no connected subnet are left out
/// and counted in the second value.
pub fn compile(base: &Tables, desired: &Desired) -> (Vec<TableCommand>, usize) {
    let mut c = Compiler::new(Arc::new(base.clone()));
    c.apply(&Delta::from(desired));
    (c.full_state(), c.skipped)
}
