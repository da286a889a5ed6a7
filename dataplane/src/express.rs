//! The express tier's mirror: compiles the tables into the XDP program's express maps
//! (`carrier_common::express`), so the program forwards the common cases itself (see
//! `ebpf/src/express.rs`) and punts the rest to the AF_XDP path.
//!
//! # What is compiled
//! - Ports: customer ports routed in a VRF and core ports, untagged or tagged (their VLAN
//!   id is checked on frames in and written into the records out of them; VXLAN only over
//!   untagged ones), and untagged bridge ports; any other port is punted whole.
//! - Every VRF route into one 8-8-8-8 multibit trie with a root per VRF (`EX_FIB`; the
//!   mirror keeps the same trie, [`ExFib`], and copies what each change wrote from its
//!   journal), whose leaves name a route slot holding the next-hop id; every next hop to an
//!   adjacency record with recursion through the underlay and the neighbour's MAC already
//!   resolved (egress port, MACs, the whole label stack with the bottom-of-stack bit, TC,
//!   MTU; for routed VXLAN the outer and inner headers with the outer checksum's constant
//!   part) — or to a record that only answers the source check (`port` = `NO_PORT`) when
//!   the program cannot forward over it: VXLAN over labels, local, blackhole, an
//!   unresolved neighbour, a connected subnet.
//! - ECMP anywhere on a next hop's paths (its own group, the underlay's toward the PE or
//!   VTEP): one record per bucket in consecutive slots, as many buckets as the least common
//!   multiple of the group sizes, so the program's `hash % buckets` picks what the
//!   pipeline's `hash % members` picks at every level (see [`compile_nexthop`]).
//! - A connected subnet forwards to the packet's own destination: for every neighbour known
//!   on a VRF port (configured or learned) whose address the VRF routes over that subnet,
//!   a /32 to a record of its own (ids from [`SYNTHETIC_BASE`] up).
//! - Labels below `MAX_LABEL`: per-VRF (pop and look up); per-CE (pop, then a record of the
//!   label's own) and swap (a record of its own whose last label is the outgoing one, the
//!   transport labels before it), their records under synthetic ids like the neighbours';
//!   L3 VNIs (EVPN type-5) to their VRF, L2 VNIs to their bridge domain.
//! - The ports' own addresses (`EX_OWN`) and the known neighbours with their MACs
//!   (`EX_NEIGH`), so the program answers ARP requests the pipeline would learn nothing from.
//! - Bridge domains' MACs (`EX_MACS`): configured ones and those the workers learned (only
//!   these let a frame from them be forwarded: the pipeline would learn nothing new from it);
//!   behind a VTEP, a record per (domain, VTEP) that encapsulates toward it.
//!
//! # Updates cost what they change, make before break
//! [`Mirror::sync`] takes the commands of one commit: route commands touch their keys,
//! next-hop commands their records, label commands their ILM entries. A change that can
//! move resolution anywhere (ports, router settings, underlay routes, neighbours) recompiles
//! every record, and a `replace` (or the first sync) diffs everything against what the maps
//! hold. A new trie ply is written whole before the leaf that points at it, and a freed
//! ply or route slot is reused only at the next sync. A changed record is written into a free slot and then the next hop's 4-byte index
//! is flipped to it, so the program never reads a half-written record; the old slot is
//! reused only after [`QUARANTINE`]. A next hop is unlinked (punted) before routes that
//! still point at it are withdrawn; punting is always safe, since the AF_XDP path has the
//! new tables already.
//!
//! # Who writes what
//! The thread that owns the XDP program is the only caller, and [`ExpressMaps`] its only way
//! into the maps; tests use [`MemMaps`].

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use carrier_common::express::{
    ExAdj, ExConfig, ExIlm, ExMac, ExNeigh, ExPort, MacKey, PortAddr, ARP_ANY, PORT_PROXY_ARP, FIB_PLY, FIB_PUNT, MAX_FIB_PLIES, MAX_ROUTES, CONFIG_ON, ENCAP_VXLAN, ENCAP_VXLAN_L2, MAC_LEARNED, PORT_BRIDGE, VNI_BRIDGE, CONFIG_PIPE, ILM_POP_FORWARD, ILM_POP_LOOKUP, ILM_PUNT, ILM_SWAP, MAX_ADJ, MAX_BUCKETS, MAX_LABEL, MAX_NEXTHOPS, MAX_PUSH,
    MAX_VRFS, NH_BUCKETS_SHIFT, NH_SLOT_MASK, NO_PORT, PORT_ANTI_SPOOF, PORT_CORE, PORT_PUNT, PORT_VRF, ROUTE_COUNTED, TC_FROM_IP,
};
use carrier_common::{BridgeDomainId, Label, NextHopId, PortId, VrfId, MAX_PORTS};

pub use crate::io::Learned;
use crate::tables::mtrie::PLY;
use crate::tables::{FastMap, IlmAction, MacDest, Ipv4Prefix, Lpm, Mtrie, NextHop, PortRole, Table, TableCommand, Tables, TtlMode};
use crate::wire::MacAddr;

/// Next-hop ids from here up are the mirror's own (neighbours on connected subnets); a
/// route over a control-plane id this high is punted.
pub const SYNTHETIC_BASE: u32 = MAX_NEXTHOPS - 65_536;

/// The id routes over next hops the tier cannot index point at: never given a record, so the
/// program punts them (the route stays in the trie so that no shorter prefix matches instead).
pub const PUNT_NEXTHOP: u32 = MAX_NEXTHOPS - 1;

/// The next-hop id a route's map entry holds.
fn route_target(nh: u32) -> u32 {
    if nh >= SYNTHETIC_BASE {
        PUNT_NEXTHOP
    } else {
        nh
    }
}

/// How long a replaced adjacency slot rests before it is reused (the program may still be
/// reading it: an XDP run lasts microseconds).
pub const QUARANTINE: Duration = Duration::from_millis(20);

/// Deepest next-hop recursion, as in the pipeline.
const MAX_DEPTH: u8 = 4;

/// The express maps as the mirror writes them.
pub trait ExpressMaps {
    /// Write the router-wide entry.
    fn set_config(&mut self, config: ExConfig) -> std::io::Result<()>;
    /// Write a port's entry.
    fn set_port(&mut self, slot: u32, port: ExPort) -> std::io::Result<()>;
    /// Write `EX_FIB` entries: (index, leaf), in order.
    fn set_fib(&mut self, entries: &[(u32, u32)]) -> std::io::Result<()>;
    /// Write `EX_FIB_SLOTS` entries: (route slot, next-hop id).
    fn set_fib_slots(&mut self, slots: &[(u32, u32)]) -> std::io::Result<()>;
    /// Point a next hop at an adjacency slot + 1, or 0.
    fn set_nexthop(&mut self, nexthop: u32, at: u32) -> std::io::Result<()>;
    /// Write an adjacency record.
    fn set_adj(&mut self, slot: u32, adj: ExAdj) -> std::io::Result<()>;
    /// Write a label's entry.
    fn set_ilm(&mut self, label: u32, entry: ExIlm) -> std::io::Result<()>;
    /// Map a VNI to a VRF or (`VNI_BRIDGE` |) a bridge domain, or remove it (`None`).
    fn set_vni(&mut self, vni: u32, vrf: Option<u32>) -> std::io::Result<()>;
    /// Set or remove (`None`) a bridge domain's MAC.
    fn set_mac(&mut self, key: MacKey, mac: Option<ExMac>) -> std::io::Result<()>;
    /// Set or remove (`None`) a known neighbour.
    fn set_neighbour(&mut self, key: PortAddr, neighbour: Option<ExNeigh>) -> std::io::Result<()>;
    /// Mark an address as the port's own, or not.
    fn set_own(&mut self, key: PortAddr, own: bool) -> std::io::Result<()>;
    /// Write next hop `nexthop`'s proxy-ARP entry (`EX_NH_ARP`).
    fn set_nh_arp(&mut self, nexthop: u32, value: u32) -> std::io::Result<()>;
    /// Set or remove (`None`) an ARP suppression binding (`EX_ARP_BIND`).
    fn set_arp_bind(&mut self, key: PortAddr, mac: Option<ExNeigh>) -> std::io::Result<()>;
    /// An adjacency slot is about to be reused: its packet counters so far belong to the
    /// record it held; return them and start from zero.
    fn take_adj_counters(&mut self, slot: u32) -> std::io::Result<(u64, u64)>;
    /// Route slot `slot` gets another route: forget what the program counted for it
    /// (`EX_ROUTE_STATS`).
    fn clear_route_stats(&mut self, slot: u32) -> std::io::Result<()>;
    /// Write many adjacency records (in one system call where the maps allow).
    fn set_adjs(&mut self, items: &[(u32, ExAdj)]) -> std::io::Result<()> {
        items.iter().try_for_each(|(slot, adj)| self.set_adj(*slot, *adj))
    }
    /// Point many next hops (see [`ExpressMaps::set_nexthop`]).
    fn set_nexthops(&mut self, items: &[(u32, u32)]) -> std::io::Result<()> {
        items.iter().try_for_each(|(nh, at)| self.set_nexthop(*nh, *at))
    }
}

/// The writes of one sync, held back and then written in batches, in an order that never
/// lets the program read something half-made: every new adjacency record first, then the
/// next-hop indices (in the order they were made), then the ILM entries, then the FIB (see
/// [`FibWrites`]).
struct Pending<'m, M: ExpressMaps> {
    maps: &'m mut M,
    adjs: Vec<(u32, ExAdj)>,
    nexthops: Vec<(u32, u32)>,
    ilm: Vec<(u32, ExIlm)>,
    macs: Vec<(MacKey, Option<ExMac>)>,
    fib: FibWrites,
}

impl<M: ExpressMaps> Pending<'_, M> {
    fn flush(self) -> std::io::Result<()> {
        self.maps.set_adjs(&self.adjs)?;
        self.maps.set_nexthops(&self.nexthops)?;
        for (label, entry) in self.ilm {
            self.maps.set_ilm(label, entry)?;
        }
        for (key, mac) in self.macs {
            self.maps.set_mac(key, mac)?;
        }
        self.maps.set_fib_slots(&self.fib.slots)?;
        self.maps.set_fib(&self.fib.made)?;
        self.maps.set_fib(&self.fib.leaves)
    }
}

impl<M: ExpressMaps> ExpressMaps for Pending<'_, M> {
    fn set_config(&mut self, config: ExConfig) -> std::io::Result<()> {
        self.maps.set_config(config)
    }
    fn set_port(&mut self, slot: u32, port: ExPort) -> std::io::Result<()> {
        self.maps.set_port(slot, port)
    }
    fn set_fib(&mut self, entries: &[(u32, u32)]) -> std::io::Result<()> {
        self.maps.set_fib(entries)
    }
    fn set_fib_slots(&mut self, slots: &[(u32, u32)]) -> std::io::Result<()> {
        self.maps.set_fib_slots(slots)
    }
    fn set_nexthop(&mut self, nexthop: u32, at: u32) -> std::io::Result<()> {
        self.nexthops.push((nexthop, at));
        Ok(())
    }
    fn set_adj(&mut self, slot: u32, adj: ExAdj) -> std::io::Result<()> {
        self.adjs.push((slot, adj));
        Ok(())
    }
    fn set_ilm(&mut self, label: u32, entry: ExIlm) -> std::io::Result<()> {
        self.ilm.push((label, entry));
        Ok(())
    }
    fn set_mac(&mut self, key: MacKey, mac: Option<ExMac>) -> std::io::Result<()> {
        self.macs.push((key, mac));
        Ok(())
    }
    fn set_neighbour(&mut self, key: PortAddr, neighbour: Option<ExNeigh>) -> std::io::Result<()> {
        self.maps.set_neighbour(key, neighbour)
    }
    fn set_own(&mut self, key: PortAddr, own: bool) -> std::io::Result<()> {
        self.maps.set_own(key, own)
    }
    fn set_nh_arp(&mut self, nexthop: u32, value: u32) -> std::io::Result<()> {
        self.maps.set_nh_arp(nexthop, value)
    }
    fn set_arp_bind(&mut self, key: PortAddr, mac: Option<ExNeigh>) -> std::io::Result<()> {
        self.maps.set_arp_bind(key, mac)
    }
    fn set_vni(&mut self, vni: u32, vrf: Option<u32>) -> std::io::Result<()> {
        self.maps.set_vni(vni, vrf)
    }
    fn take_adj_counters(&mut self, slot: u32) -> std::io::Result<(u64, u64)> {
        self.maps.take_adj_counters(slot)
    }
    fn clear_route_stats(&mut self, slot: u32) -> std::io::Result<()> {
        self.maps.clear_route_stats(slot)
    }
}

/// The express FIB as the mirror keeps it: `EX_FIB`'s trie, a root per VRF, next hops as the
/// ids the program's leaves name (see [`route_target`]).
pub type ExFib = Mtrie<8>;

/// The `EX_FIB` writes of one sync, in the order they are made: the route slots (new routes,
/// changed next hops: nothing points at a new slot yet), the plies made (whole: nothing
/// points at them yet), then the leaves of the roots and of plies that were already there
/// (which link the new plies and slots in and the freed ones out).
#[derive(Debug, Default)]
struct FibWrites {
    slots: Vec<(u32, u32)>,
    made: Vec<(u32, u32)>,
    leaves: Vec<(u32, u32)>,
}

impl FibWrites {
    /// What `fib` wrote since the last call; with `all`, everything it holds (after a failed
    /// sync, when the map may differ from it anywhere).
    fn take(fib: &mut ExFib, all: bool) -> FibWrites {
        let j = fib.take_journal();
        fn entry(ply: u32, i: u32) -> u32 {
            (MAX_VRFS + ply) * 256 + i
        }
        fn ply_entries(fib: &ExFib, p: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
            fib.ply_leaves(p).iter().zip(0..).map(move |(l, i)| (entry(p, i), fib_leaf(*l)))
        }
        let mut w = FibWrites::default();
        if all {
            w.slots = fib.live_slots().filter(|(s, _)| *s < MAX_ROUTES).map(|(s, nh)| (s, nh.0)).collect();
            w.made = fib.live_plies().filter(|p| *p < MAX_FIB_PLIES).flat_map(|p| ply_entries(fib, p)).collect();
            w.leaves = (0..MAX_VRFS * 256).map(|r| (r, fib_leaf(fib.root_leaf(r)))).collect();
            return w;
        }
        let freed: HashSet<u32> = j.freed.iter().copied().collect();
        let made: HashSet<u32> = j.made.iter().copied().filter(|p| !freed.contains(p) && *p < MAX_FIB_PLIES).collect();
        w.slots = j.slots.iter().filter(|s| **s < MAX_ROUTES).filter_map(|s| fib.slot(*s).map(|(_, nh)| (*s, nh.0))).collect();
        w.made = j.made.iter().filter(|p| made.contains(p)).flat_map(|p| ply_entries(fib, *p)).collect();
        w.leaves = j.roots.iter().map(|r| (*r, fib_leaf(fib.root_leaf(*r)))).collect();
        w.leaves.extend(
            j.leaves
                .iter()
                .filter(|(p, _)| *p < MAX_FIB_PLIES && !freed.contains(p) && !made.contains(p))
                .map(|(p, i)| (entry(*p, u32::from(*i)), fib_leaf(fib.ply_leaves(*p)[usize::from(*i)]))),
        );
        w
    }
}

/// The `EX_FIB` leaf for a leaf of the mirror's trie: plies after the VRFs' roots; what does
/// not fit the map is punted.
fn fib_leaf(leaf: u32) -> u32 {
    match leaf {
        0 => 0,
        l if l & PLY != 0 => {
            let p = l & !PLY;
            if p < MAX_FIB_PLIES {
                FIB_PLY | (MAX_VRFS + p)
            } else {
                FIB_PUNT
            }
        }
        l if l - 1 < MAX_ROUTES => l,
        _ => FIB_PUNT,
    }
}

/// What one commit changed, as the mirror needs to know it.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// Everything may have changed (a replace, a restart, the first sync).
    All,
    /// These commands were applied.
    Commands(&'a [TableCommand]),
    /// Only what the workers learned (neighbours, MACs) changed.
    Neighbours,
}

/// Map writes one sync made, by kind (what a test checks to see that a change costs what
/// it changes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Writes {
    /// Routes set or removed.
    pub routes: usize,
    /// Adjacency records written.
    pub adjacencies: usize,
    /// Next-hop indices flipped.
    pub nexthops: usize,
    /// ILM entries written.
    pub labels: usize,
    /// Port and config entries written.
    pub ports: usize,
}

/// One installed next hop: its first slot and its records (one per bucket, in consecutive
/// slots).
#[derive(Debug, Clone)]
struct Installed {
    slot: u32,
    adjs: Vec<ExAdj>,
}

impl Installed {
    /// (slot, record) of every bucket.
    fn slots(&self) -> impl Iterator<Item = (u32, &ExAdj)> + '_ {
        (self.slot..).zip(&self.adjs)
    }

    /// The next hop's `NH` value.
    fn nh_value(&self) -> u32 {
        (self.adjs.len() as u32 - 1) << NH_BUCKETS_SHIFT | (self.slot + 1)
    }
}

/// The mirror's picture of what the maps hold. See the module documentation.
#[derive(Debug)]
pub struct Mirror {
    on: bool,
    config: Option<ExConfig>,
    ports: Vec<Option<ExPort>>,
    /// Real routes in the maps: (VRF, prefix) → next hop.
    routes: FastMap<(u16, Ipv4Prefix), u32>,
    /// The routes as the program's trie holds them.
    fib: ExFib,
    /// A sync failed: the FIB is written whole at the next.
    fib_resync: bool,
    /// Neighbour /32s in the maps: (VRF, address) → synthetic next-hop id.
    neighbour_routes: FastMap<(u16, Ipv4Addr), u32>,
    /// Next hop → its installed adjacency.
    installed: FastMap<u32, Installed>,
    ilm: FastMap<u32, ExIlm>,
    /// L3 VNIs in the maps → VRF.
    vnis: FastMap<u32, u32>,
    /// Free runs of consecutive slots by length.
    free: FastMap<usize, Vec<u32>>,
    /// Runs of slots resting: (first slot, length, since).
    quarantine: Vec<(u32, usize, Instant)>,
    next_slot: u32,
    free_synthetic: Vec<u32>,
    /// Synthetic ids unlinked during the current sync.
    freed_synthetic: Vec<u32>,
    next_synthetic: u32,
    /// Per-CE and swap labels → the synthetic next hop holding their records.
    ilm_ids: FastMap<u32, u32>,
    /// Bridge MACs in the maps.
    macs: FastMap<MacKey, ExMac>,
    /// Known neighbours in the maps.
    neighbours_in: FastMap<PortAddr, ExNeigh>,
    /// `EX_NH_ARP` entries that are not 0.
    nh_arp: FastMap<u32, u32>,
    /// `EX_ARP_BIND`: the bridge domains' ARP bindings.
    arp_bind: FastMap<PortAddr, ExNeigh>,
    /// The ports' own addresses in the maps.
    own: HashSet<PortAddr>,
    /// (bridge domain, VTEP) → the synthetic next hop encapsulating toward it.
    l2_ids: FastMap<(u16, Ipv4Addr), u32>,
    /// Labels of the records in resting slots.
    resting_labels: FastMap<u32, Vec<u32>>,
    /// Packets and bytes sent through slots since reused, by the labels they pushed.
    pub retired_labels_out: FastMap<u32, (u64, u64)>,
    /// What the last sync wrote.
    pub last: Writes,
    /// Port slots whose received frames the tier leaves to the AF_XDP path.
    not_served: HashSet<u32>,
    /// The log said the adjacency slots ran out.
    full_warned: bool,
    /// Next hop → the ECMP groups it was a member of when they were compiled (a superset:
    /// stale entries only cost a recompile).
    groups_of: FastMap<u32, Vec<u32>>,
    /// VRFs with per-prefix counters: their routes are marked `ROUTE_COUNTED` and the program
    /// counts them in `EX_ROUTE_STATS`.
    counted: HashSet<u16>,
}

impl Mirror {
    /// A mirror of empty maps; `on` says whether the tier forwards at all.
    pub fn new(on: bool) -> Mirror {
        Mirror {
            on,
            config: None,
            ports: Vec::new(),
            routes: FastMap::default(),
            fib: {
                let mut fib = ExFib::with_roots(MAX_VRFS as usize);
                fib.keep_journal();
                fib
            },
            fib_resync: false,
            neighbour_routes: FastMap::default(),
            installed: FastMap::default(),
            ilm: FastMap::default(),
            vnis: FastMap::default(),
            free: FastMap::default(),
            quarantine: Vec::new(),
            next_slot: 0,
            free_synthetic: Vec::new(),
            freed_synthetic: Vec::new(),
            next_synthetic: SYNTHETIC_BASE,
            ilm_ids: FastMap::default(),
            macs: FastMap::default(),
            l2_ids: FastMap::default(),
            neighbours_in: FastMap::default(),
            nh_arp: FastMap::default(),
            arp_bind: FastMap::default(),
            own: HashSet::new(),
            resting_labels: FastMap::default(),
            retired_labels_out: FastMap::default(),
            last: Writes::default(),
            not_served: HashSet::new(),
            full_warned: false,
            groups_of: FastMap::default(),
            counted: HashSet::new(),
        }
    }

    /// The routes of VRFs that count per prefix, by route slot: (VRF, the prefix their
    /// count belongs to). A neighbour's host route (made by the mirror for a neighbour on a
    /// connected subnet) counts for that subnet's route, as in the pipeline.
    pub fn counted_routes(&self, tables: &Tables) -> FastMap<u32, (VrfId, Ipv4Prefix)> {
        let mut out = FastMap::default();
        for &(vrf, prefix) in self.routes.keys().filter(|k| self.counted.contains(&k.0)) {
            if let Some(slot) = self.fib.slot_of(vrf, prefix) {
                out.insert(slot, (VrfId(vrf), prefix));
            }
        }
        for &(vrf, ip) in self.neighbour_routes.keys().filter(|k| self.counted.contains(&k.0)) {
            let covering = tables.vrfs.get(usize::from(vrf)).and_then(|v| v.fib.lookup(ip)).map(|(p, _)| p);
            if let (Some(slot), Some(prefix)) = (self.fib.slot_of(vrf, Ipv4Prefix::host(ip)), covering) {
                // A real /32 of the same address owns the slot then.
                out.entry(slot).or_insert((VrfId(vrf), prefix));
            }
        }
        out
    }

    /// The adjacency slots of the host routes the mirror made for neighbours on connected
    /// subnets: slot → (port, neighbour). Traffic through one is traffic to that neighbour.
    pub fn neighbour_slots(&self) -> FastMap<u32, (PortId, Ipv4Addr)> {
        let mut out = FastMap::default();
        for (&(_, ip), id) in &self.neighbour_routes {
            if let Some(i) = self.installed.get(id) {
                for (slot, adj) in i.slots() {
                    out.insert(slot, (PortId(adj.port), ip));
                }
            }
        }
        out
    }

    /// Whether some VRF counts per prefix.
    pub fn counts_prefixes(&self) -> bool {
        !self.counted.is_empty()
    }

    /// The tier leaves frames received on these port slots to the AF_XDP path (ports with the
    /// tier off, or where the program runs in skb mode); takes effect at the next sync.
    pub fn not_serving(mut self, slots: impl IntoIterator<Item = u32>) -> Mirror {
        self.not_served = slots.into_iter().collect();
        self
    }

    /// Leave frames received on port slot `slot` to the AF_XDP path from the next sync on (a
    /// port attached while the dataplane runs, where the tier cannot serve it).
    pub fn set_not_served(&mut self, slot: u32) {
        self.not_served.insert(slot);
    }

    /// Whether the tier forwards.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The adjacency records in use: (slot, record), for counters.
    pub fn adjacencies(&self) -> impl Iterator<Item = (u32, &ExAdj)> + '_ {
        self.installed.values().flat_map(Installed::slots)
    }

    /// The slots of next hops with more than one bucket (ECMP), each with its bucket number.
    pub fn ecmp_slots(&self) -> FastMap<u32, u32> {
        self.installed.values().filter(|i| i.adjs.len() > 1).flat_map(|i| (i.slot..i.slot + i.adjs.len() as u32).zip(0..)).collect()
    }

    /// The labels each adjacency slot's record pushes: the records in use and those resting
    /// in quarantine (whose counters are not taken yet).
    pub fn slot_labels(&self) -> FastMap<u32, Vec<u32>> {
        let mut m: FastMap<u32, Vec<u32>> = self.adjacencies().map(|(slot, adj)| (slot, record_labels(adj).collect())).collect();
        for (slot, labels) in &self.resting_labels {
            m.insert(*slot, labels.clone());
        }
        m
    }

    /// Forget the retired counters of labels no longer pushed by anything (as the workers
    /// forget theirs).
    pub fn prune_retired(&mut self, tables: &Tables) {
        self.retired_labels_out.retain(|l, _| tables.is_pushed(*l));
    }

    /// Slots handed out so far (every slot in use is below this).
    pub fn slots_used(&self) -> u32 {
        self.next_slot
    }

    /// Labels the tier pops.
    pub fn labels(&self) -> impl Iterator<Item = u32> + '_ {
        self.ilm.iter().filter(|(_, e)| e.action != ILM_PUNT).map(|(l, _)| *l)
    }

    /// Bring the maps in line with `tables` after `change`; `learned` are the neighbours the
    /// workers learned. On error the maps may be half-updated: the caller resyncs with
    /// [`Change::All`] (and the tier punts what it cannot decide meanwhile).
    pub fn sync(&mut self, maps: &mut impl ExpressMaps, tables: &Tables, learned: &Learned, change: Change<'_>) -> std::io::Result<()> {
        let mut pending = Pending { maps, adjs: vec![], nexthops: vec![], ilm: vec![], macs: vec![], fib: FibWrites::default() };
        let result = self.sync_into(&mut pending, tables, learned, change);
        // Ids unlinked in this sync are reused only by the next one: by then nothing the
        // program reads points at them.
        self.free_synthetic.append(&mut self.freed_synthetic);
        pending.fib = FibWrites::take(&mut self.fib, std::mem::take(&mut self.fib_resync));
        let result = result.and_then(|()| pending.flush());
        self.fib_resync = result.is_err();
        result
    }

    fn sync_into(&mut self, maps: &mut impl ExpressMaps, tables: &Tables, learned: &Learned, change: Change<'_>) -> std::io::Result<()> {
        let learned_macs: Vec<_> = learned.macs.iter().map(|&(bd, mac, dest, _)| (bd, mac, dest)).collect();
        self.last = Writes::default();
        let now = Instant::now();
        let (ready, resting): (Vec<_>, Vec<_>) = self.quarantine.drain(..).partition(|(_, _, t)| now.duration_since(*t) >= QUARANTINE);
        self.quarantine = resting;
        for (slot, len, _) in ready {
            self.free.entry(len).or_default().push(slot);
        }

        let config = ExConfig {
            flags: if self.on { CONFIG_ON } else { 0 } | if tables.router.ttl_mode == TtlMode::Pipe { CONFIG_PIPE } else { 0 },
            vtep: tables.router.vtep.map_or([0; 4], |v| v.octets()),
        };
        // Switching off (or changing the TTL mode) takes effect before anything else changes.
        if self.config.is_some_and(|c| c != config) {
            maps.set_config(ExConfig::default())?;
            self.config = Some(ExConfig::default());
            self.last.ports += 1;
        }
        if !self.on {
            if self.config != Some(config) {
                maps.set_config(config)?;
                self.config = Some(config);
                self.last.ports += 1;
            }
            return Ok(());
        }
        let neighbours = Neighbours { tables, learned: learned.neighbours.iter().map(|(p, i, m, _)| ((*p, *i), *m)).collect() };

        let mut all_records = false;
        let mut dirty_nh: HashSet<u32> = HashSet::new();
        let mut dirty_labels: HashSet<u32> = HashSet::new();
        let mut dirty_vnis = false;
        let mut dirty_macs = matches!(change, Change::Neighbours);
        let mut route_cmds: Vec<&TableCommand> = Vec::new();
        let everything = matches!(change, Change::All);
        match change {
            Change::All => all_records = true,
            Change::Neighbours => all_records = true,
            Change::Commands(cmds) => {
                for c in cmds {
                    match c {
                        TableCommand::Route { table: Table::Vrf(_), .. } | TableCommand::Withdraw { table: Table::Vrf(_), .. } => route_cmds.push(c),
                        TableCommand::NextHop { id, .. } | TableCommand::RemoveNextHop { id } => {
                            dirty_nh.insert(id.0);
                        }
                        TableCommand::Label { label, .. } | TableCommand::RemoveLabel { label } => {
                            dirty_labels.insert(label.value());
                        }
                        TableCommand::VniMap { .. } | TableCommand::RemoveVni { .. } => dirty_vnis = true,
                        TableCommand::Bridge { .. } | TableCommand::BridgeMac { .. } | TableCommand::ArpBinding { .. } | TableCommand::RemoveArpBinding { .. } => dirty_macs = true,
                        TableCommand::Vrf { .. } | TableCommand::FloodList { .. } => {}
                        _ => all_records = true,
                    }
                }
            }
        }
        // A next hop the underlay routes over (or a member of one) moves the resolution of
        // every record through it: all of them are recompiled.
        if !all_records && !dirty_nh.is_empty() {
            let mut under: HashSet<u32> = HashSet::new();
            for (_, nh) in tables.underlay.routes() {
                under.insert(nh.0);
                if let Some(NextHop::Ecmp { members }) = tables.nexthop(nh) {
                    under.extend(members.iter().map(|m| m.0));
                }
            }
            all_records = dirty_nh.iter().any(|id| under.contains(id));
        }
        if everything || self.ports.len() != tables.ports.len() || all_records {
            self.sync_ports(maps, tables)?;
        }

        // Records first (make), then routes, then what is gone (break).
        let ids: Vec<u32> = if all_records {
            let mut ids: Vec<u32> = (0..tables.nexthops.len() as u32).filter(|i| tables.nexthops[*i as usize].is_some()).collect();
            ids.extend(self.installed.keys().filter(|id| **id < SYNTHETIC_BASE && tables.nexthop(NextHopId(**id)).is_none()));
            ids
        } else {
            // An ECMP group's record (its source check) depends on its members: a changed
            // member recompiles the groups it is in.
            let groups: Vec<u32> = dirty_nh.iter().filter_map(|m| self.groups_of.get(m)).flatten().copied().collect();
            dirty_nh.extend(groups);
            dirty_nh.into_iter().collect()
        };
        for &id in &ids {
            if id >= SYNTHETIC_BASE {
                continue;
            }
            if let Some(NextHop::Ecmp { members }) = tables.nexthop(NextHopId(id)) {
                for m in members {
                    let g = self.groups_of.entry(m.0).or_default();
                    if !g.contains(&id) {
                        g.push(id);
                    }
                }
            }
            let record = compile_nexthop(tables, &neighbours, NextHopId(id));
            self.install(maps, id, record)?;
            self.set_nh_arp(maps, id, proxy_arp_value(tables, NextHopId(id)))?;
        }

        // VRFs that count per prefix: their routes' slot values carry `ROUTE_COUNTED`.
        let counted: HashSet<u16> = tables.vrfs.iter().filter(|v| v.prefix_counters).map(|v| v.id.0).collect();
        let recount: HashSet<u16> = counted.symmetric_difference(&self.counted).copied().collect();
        self.counted.clone_from(&counted);
        let target = |vrf: u16, nh: u32| NextHopId(route_target(nh) | if counted.contains(&vrf) { ROUTE_COUNTED } else { 0 });
        // Routes new in a counting VRF: their slots' counters start from zero.
        let mut fresh: Vec<(u16, Ipv4Prefix)> = vec![];
        if everything {
            let mut want: FastMap<(u16, Ipv4Prefix), u32> = FastMap::default();
            for v in &tables.vrfs {
                if u32::from(v.id.0) >= MAX_VRFS {
                    continue;
                }
                for (prefix, nh) in v.fib.routes() {
                    want.insert((v.id.0, prefix), nh.0);
                }
            }
            for (key, nh) in &want {
                if self.routes.get(key) != Some(nh) {
                    if counted.contains(&key.0) && !self.routes.contains_key(key) {
                        fresh.push(*key);
                    }
                    self.fib.insert_in(key.0, key.1, target(key.0, *nh));
                    self.last.routes += 1;
                }
            }
            let gone: Vec<_> = self.routes.keys().filter(|k| !want.contains_key(*k)).copied().collect();
            for key in gone {
                self.fib.remove_in(key.0, key.1);
                self.last.routes += 1;
            }
            self.routes = want;
        } else {
            // The last command for a key wins.
            let mut last: FastMap<(u16, Ipv4Prefix), Option<u32>> = FastMap::default();
            for c in route_cmds {
                match c {
                    TableCommand::Route { table: Table::Vrf(v), prefix, nexthop } => {
                        last.insert((v.0, *prefix), Some(nexthop.0));
                    }
                    TableCommand::Withdraw { table: Table::Vrf(v), prefix } => {
                        last.insert((v.0, *prefix), None);
                    }
                    _ => {}
                }
            }
            for (key, nh) in last {
                if u32::from(key.0) >= MAX_VRFS {
                    continue;
                }
                match nh {
                    Some(nh) => {
                        let before = self.routes.insert(key, nh);
                        if before != Some(nh) {
                            if before.is_none() && counted.contains(&key.0) {
                                fresh.push(key);
                            }
                            self.fib.insert_in(key.0, key.1, target(key.0, nh));
                            self.last.routes += 1;
                        }
                    }
                    None => {
                        if self.routes.remove(&key).is_some() {
                            self.fib.remove_in(key.0, key.1);
                            self.last.routes += 1;
                        }
                    }
                }
            }
        }
        // A VRF that started or stopped counting: its routes change target.
        if !recount.is_empty() {
            for (key, nh) in self.routes.iter().filter(|(k, _)| recount.contains(&k.0)) {
                self.fib.insert_in(key.0, key.1, target(key.0, *nh));
                self.last.routes += 1;
                if counted.contains(&key.0) {
                    fresh.push(*key);
                }
            }
            for (key, id) in self.neighbour_routes.iter().filter(|(k, _)| recount.contains(&k.0)) {
                self.fib.insert_in(key.0, Ipv4Prefix::host(key.1), target(key.0, *id));
                self.last.routes += 1;
                if counted.contains(&key.0) {
                    fresh.push((key.0, Ipv4Prefix::host(key.1)));
                }
            }
        }
        for (vrf, prefix) in fresh {
            if let Some(slot) = self.fib.slot_of(vrf, prefix) {
                maps.clear_route_stats(slot)?;
            }
        }
        self.sync_neighbour_routes(maps, tables, &neighbours)?;
        if everything || all_records {
            self.sync_arp(maps, tables, &neighbours, learned)?;
        }
        // Plies made while the map was full move into room freed since.
        self.fib.relocate_above(MAX_FIB_PLIES);

        let labels: Vec<u32> = if everything || all_records {
            let mut l: Vec<u32> = tables.ilm.keys().map(|l| l.value()).collect();
            l.extend(self.ilm.keys().copied());
            l.sort_unstable();
            l.dedup();
            l
        } else {
            // A per-CE label's record follows its next hop (a swap's follows the underlay:
            // a change there recompiles every record and label).
            let changed: HashSet<u32> = ids.iter().copied().collect();
            dirty_labels.extend(self.ilm_ids.keys().filter(|l| {
                matches!(Label::new(**l).and_then(|l| tables.ilm.get(&l)), Some(IlmAction::PopForward { nexthop, .. }) if changed.contains(&nexthop.0))
            }));
            dirty_labels.into_iter().collect()
        };
        for label in labels {
            if label >= MAX_LABEL {
                continue;
            }
            let (mut entry, records) = match Label::new(label).and_then(|l| tables.ilm.get(&l)) {
                Some(IlmAction::PopLookup { vrf }) if u32::from(vrf.0) < MAX_VRFS => (ExIlm { action: ILM_POP_LOOKUP, vrf: vrf.0, nexthop: 0 }, None),
                // The pipeline sends to the next hop itself, never picking in an ECMP group.
                Some(IlmAction::PopForward { nexthop, .. }) if !matches!(tables.nexthop(*nexthop), None | Some(NextHop::Ecmp { .. })) => {
                    (ExIlm { action: ILM_POP_FORWARD, ..ExIlm::default() }, compile_nexthop(tables, &neighbours, *nexthop))
                }
                Some(IlmAction::Swap { out, pe }) => {
                    let records = compile_buckets(|picks| resolve(tables, &neighbours, *pe, &[*out], TC_FROM_IP, picks), ExAdj { port: NO_PORT, rpf_port: NO_PORT, ..ExAdj::default() });
                    (ExIlm { action: ILM_SWAP, ..ExIlm::default() }, Some(records).filter(|r| r.len() == 1 && r[0].port != NO_PORT))
                }
                _ => (ExIlm::default(), None),
            };
            if entry.action != ILM_POP_LOOKUP {
                match records {
                    Some(records) => {
                        let id = match self.ilm_ids.get(&label) {
                            Some(id) => Some(*id),
                            None => self.alloc_synthetic(),
                        };
                        match id {
                            Some(id) => {
                                self.install(maps, id, Some(records))?;
                                self.ilm_ids.insert(label, id);
                                entry.nexthop = id;
                            }
                            None => entry = ExIlm::default(),
                        }
                    }
                    None => entry = ExIlm::default(),
                }
            }
            // A label that no longer needs its records lets them go once it is rewritten
            // (the write is pending and goes before the unlinking).
            if entry.action == ILM_PUNT || entry.action == ILM_POP_LOOKUP {
                if let Some(id) = self.ilm_ids.remove(&label) {
                    self.install(maps, id, None)?;
                    self.freed_synthetic.push(id);
                }
            }
            let old = self.ilm.get(&label).copied().unwrap_or_default();
            if old != entry {
                maps.set_ilm(label, entry)?;
                self.last.labels += 1;
            }
            if entry == ExIlm::default() {
                self.ilm.remove(&label);
            } else {
                self.ilm.insert(label, entry);
            }
        }

        if everything || all_records || dirty_vnis {
            let want: FastMap<u32, u32> = tables
                .vnis
                .iter()
                .filter_map(|(vni, t)| match t {
                    crate::tables::VniTarget::Vrf(v) if u32::from(v.0) < MAX_VRFS => Some((vni.value(), u32::from(v.0))),
                    crate::tables::VniTarget::Bridge(b) if u32::from(b.0) < MAX_VRFS => Some((vni.value(), VNI_BRIDGE | u32::from(b.0))),
                    _ => None,
                })
                .collect();
            self.last.labels += write_diff(&mut self.vnis, want, |vni, vrf| maps.set_vni(vni, vrf))?;
        }

        if everything || all_records || dirty_macs {
            self.sync_macs(maps, tables, &neighbours, &learned_macs)?;
        }

        if self.config != Some(config) {
            maps.set_config(config)?;
            self.config = Some(config);
            self.last.ports += 1;
        }
        Ok(())
    }

    /// The bridge domains' MACs: static ones where they are, learned ones (flagged, so a frame
    /// from them at that place may be forwarded); behind a VTEP, a record per (domain, VTEP)
    /// encapsulating toward it.
    fn sync_macs(&mut self, maps: &mut impl ExpressMaps, tables: &Tables, neighbours: &Neighbours<'_>, learned: &[(BridgeDomainId, MacAddr, MacDest)]) -> std::io::Result<()> {
        let mut want: FastMap<MacKey, (MacDest, bool)> = FastMap::default();
        for &(bd, mac, dest) in learned {
            want.insert(MacKey { bd: bd.0, mac: mac.0 }, (dest, true));
        }
        for b in &tables.bridges {
            for (mac, dest) in &b.macs {
                want.insert(MacKey { bd: b.id.0, mac: mac.0 }, (*dest, false));
            }
        }
        // The records toward each VTEP, recompiled every time (few, and they follow the
        // underlay, the neighbours and the bridges' VNIs).
        let mut vteps: FastMap<(u16, Ipv4Addr), Option<Vec<ExAdj>>> = FastMap::default();
        for (key, (dest, _)) in &want {
            if let MacDest::Vtep(v) = dest {
                vteps.entry((key.bd, *v)).or_insert_with(|| {
                    let vni = tables.bridges.iter().find(|b| b.id.0 == key.bd)?.vni;
                    let punt = ExAdj { port: NO_PORT, rpf_port: NO_PORT, ..ExAdj::default() };
                    Some(compile_buckets(|picks| vxlan(tables, neighbours, *v, vni, None, picks).map(|a| ExAdj { encap: ENCAP_VXLAN_L2, ..a }), punt))
                });
            }
        }
        for (pair, records) in &vteps {
            let Some(records) = records else { continue };
            let id = match self.l2_ids.get(pair) {
                Some(id) => *id,
                None => match self.alloc_synthetic() {
                    Some(id) => id,
                    None => continue,
                },
            };
            self.install(maps, id, Some(records.clone()))?;
            self.l2_ids.insert(*pair, id);
        }
        let mut next: FastMap<MacKey, ExMac> = FastMap::default();
        for (key, (dest, learned)) in want {
            if u32::from(key.bd) >= MAX_VRFS {
                continue;
            }
            let flags = if learned { MAC_LEARNED } else { 0 };
            let entry = match dest {
                // Only behind a port still in the domain (one re-attached live leaves its MACs
                // to the pipeline, which floods them as unknown).
                MacDest::Port(p) if u32::from(p.0) < MAX_PORTS && tables.port(p).is_some_and(|x| x.role == PortRole::Bridge(BridgeDomainId(key.bd))) => {
                    ExMac { port: p.0, flags, ..ExMac::default() }
                }
                MacDest::Vtep(v) => match self.l2_ids.get(&(key.bd, v)) {
                    Some(id) => ExMac { port: NO_PORT, flags, nexthop: *id, vtep: v.octets(), ..ExMac::default() },
                    None => continue,
                },
                MacDest::Port(_) => continue,
            };
            next.insert(key, entry);
        }
        self.last.labels += write_diff(&mut self.macs, next, |key, mac| maps.set_mac(key, mac))?;
        // ARP suppression bindings.
        let binds: FastMap<PortAddr, ExNeigh> = tables
            .bridges
            .iter()
            .filter(|b| u32::from(b.id.0) < MAX_VRFS)
            .flat_map(|b| b.arp.iter().map(move |(ip, mac)| (PortAddr { slot: b.id.0, pad: 0, addr: ip.octets() }, ExNeigh { mac: mac.0, pad: [0; 2] })))
            .collect();
        self.last.labels += write_diff(&mut self.arp_bind, binds, |key, mac| maps.set_arp_bind(key, mac))?;
        // Records no MAC uses any more go (after the MACs are rewritten: the writes are pending).
        let used: HashSet<(u16, Ipv4Addr)> = vteps.into_iter().filter(|(_, r)| r.is_some()).map(|(k, _)| k).collect();
        for pair in self.l2_ids.keys().filter(|k| !used.contains(*k)).copied().collect::<Vec<_>>() {
            if let Some(id) = self.l2_ids.remove(&pair) {
                self.install(maps, id, None)?;
                self.freed_synthetic.push(id);
            }
        }
        Ok(())
    }

    fn sync_ports(&mut self, maps: &mut impl ExpressMaps, tables: &Tables) -> std::io::Result<()> {
        let n = tables.ports.len().max(self.ports.len()).min(MAX_PORTS as usize);
        self.ports.resize(n, None);
        for slot in 0..n {
            let want = match tables.ports.get(slot) {
                Some(_) if self.not_served.contains(&(slot as u32)) => ExPort::default(),
                Some(p) => compile_port(p),
                None => ExPort::default(),
            };
            if self.ports[slot] != Some(want) {
                maps.set_port(slot as u32, want)?;
                self.ports[slot] = Some(want);
                self.last.ports += 1;
            }
        }
        Ok(())
    }

    /// Point next hop `id` at `records` (new slots when they changed), or unlink it.
    fn install(&mut self, maps: &mut impl ExpressMaps, id: u32, records: Option<Vec<ExAdj>>) -> std::io::Result<()> {
        let old = self.installed.get(&id).cloned();
        match records {
            Some(adjs) => {
                if old.as_ref().is_some_and(|o| o.adjs == adjs) {
                    return Ok(());
                }
                let Some(slot) = self.alloc(maps, adjs.len())? else {
                    // Full: the next hop stays punted.
                    if let Some(o) = old {
                        maps.set_nexthop(id, 0)?;
                        self.installed.remove(&id);
                        self.rest(o);
                    }
                    if !self.full_warned {
                        log::warn!("express tier: all {MAX_ADJ} adjacency slots in use; next hop {id} and any more are left to the AF_XDP path");
                        self.full_warned = true;
                    }
                    return Ok(());
                };
                let new = Installed { slot, adjs };
                for (at, adj) in new.slots() {
                    maps.set_adj(at, *adj)?;
                    self.last.adjacencies += 1;
                }
                maps.set_nexthop(id, new.nh_value())?;
                self.last.nexthops += 1;
                self.installed.insert(id, new);
                if let Some(o) = old {
                    self.rest(o);
                }
            }
            None => {
                if let Some(o) = old {
                    maps.set_nexthop(id, 0)?;
                    self.last.nexthops += 1;
                    self.installed.remove(&id);
                    self.rest(o);
                }
            }
        }
        Ok(())
    }

    /// The first of `len` consecutive free slots.
    fn alloc(&mut self, maps: &mut impl ExpressMaps, len: usize) -> std::io::Result<Option<u32>> {
        if let Some(slot) = self.free.get_mut(&len).and_then(Vec::pop) {
            // The counters of the records the slots held go to those records' labels.
            for at in slot..slot + len as u32 {
                let (packets, bytes) = maps.take_adj_counters(at)?;
                self.retire(at, packets, bytes);
            }
            return Ok(Some(slot));
        }
        if self.next_slot + len as u32 <= MAX_ADJ {
            self.next_slot += len as u32;
            return Ok(Some(self.next_slot - len as u32));
        }
        Ok(None)
    }

    /// Slots no next hop points at any more rest in quarantine; their labels are kept for
    /// their counters.
    fn rest(&mut self, old: Installed) {
        self.quarantine.push((old.slot, old.adjs.len(), Instant::now()));
        for (slot, adj) in old.slots() {
            self.resting_labels.insert(slot, record_labels(adj).collect());
        }
    }

    fn retire(&mut self, slot: u32, packets: u64, bytes: u64) {
        if let Some(labels) = self.resting_labels.remove(&slot) {
            if packets == 0 {
                return;
            }
            for l in labels {
                let e = self.retired_labels_out.entry(l).or_default();
                e.0 += packets;
                e.1 += bytes;
            }
        }
    }

    /// What lets the program answer ARP itself: the ports' own addresses and the neighbours
    /// the router knows (configured and learned) with their MACs. A request the program
    /// answers never reaches a worker, so a neighbour is here only when no worker would learn
    /// from its requests: configured, or learned with the same MAC by every worker that knows
    /// it. When workers disagree (a MAC that moved, relearned by one worker so far) its
    /// requests stay the workers' until each has relearned it.
    fn sync_arp(&mut self, maps: &mut impl ExpressMaps, tables: &Tables, neighbours: &Neighbours<'_>, learned: &Learned) -> std::io::Result<()> {
        let key = |port: PortId, ip: Ipv4Addr| PortAddr { slot: port.0, pad: 0, addr: ip.octets() };
        let own: HashSet<PortAddr> = tables.ports.iter().filter(|p| u32::from(p.id.0) < MAX_PORTS).flat_map(|p| p.addrs.iter().map(move |a| key(p.id, a.addr))).collect();
        for k in own.difference(&self.own) {
            maps.set_own(*k, true)?;
        }
        for k in self.own.difference(&own) {
            maps.set_own(*k, false)?;
        }
        self.own = own;
        let mut macs_of: FastMap<(PortId, Ipv4Addr), MacAddr> = FastMap::default();
        let mut disputed: HashSet<(PortId, Ipv4Addr)> = HashSet::new();
        for &(port, ip, mac, _) in &learned.neighbours {
            if *macs_of.entry((port, ip)).or_insert(mac) != mac {
                disputed.insert((port, ip));
            }
        }
        let want: FastMap<PortAddr, ExNeigh> = neighbours
            .all()
            .into_iter()
            .filter(|(k, _)| u32::from(k.0 .0) < MAX_PORTS && (tables.neighbours.contains_key(k) || !disputed.contains(k)))
            .map(|((port, ip), mac)| (key(port, ip), ExNeigh { mac: mac.0, pad: [0; 2] }))
            .collect();
        write_diff(&mut self.neighbours_in, want, |k, n| maps.set_neighbour(k, n))?;
        Ok(())
    }

    /// Write next hop `id`'s proxy-ARP entry when it changed.
    fn set_nh_arp(&mut self, maps: &mut impl ExpressMaps, id: u32, value: u32) -> std::io::Result<()> {
        if self.nh_arp.get(&id).copied().unwrap_or(0) != value {
            maps.set_nh_arp(id, value)?;
            if value == 0 {
                self.nh_arp.remove(&id);
            } else {
                self.nh_arp.insert(id, value);
            }
        }
        Ok(())
    }

    /// A next-hop id of the mirror's own, if any is left.
    fn alloc_synthetic(&mut self) -> Option<u32> {
        self.free_synthetic.pop().or_else(|| {
            (self.next_synthetic < PUNT_NEXTHOP).then(|| {
                self.next_synthetic += 1;
                self.next_synthetic - 1
            })
        })
    }

    fn sync_neighbour_routes(&mut self, maps: &mut impl ExpressMaps, tables: &Tables, neighbours: &Neighbours<'_>) -> std::io::Result<()> {
        let mut want: FastMap<(u16, Ipv4Addr), ExAdj> = FastMap::default();
        for ((port, ip), mac) in neighbours.all() {
            let Some(p) = tables.port(port) else { continue };
            let PortRole::Vrf(vrf) = p.role else { continue };
            if u32::from(vrf.0) >= MAX_VRFS {
                continue;
            }
            let Some((prefix, nh)) = tables.vrfs.get(vrf.index()).and_then(|v| v.fib.lookup(ip)) else { continue };
            if prefix.prefix_len() == 32 {
                continue;
            }
            if let Some(NextHop::Adjacency { port: on, via: None }) = tables.nexthop(nh) {
                if *on == port {
                    if let Some(adj) = adjacency(tables, port, mac, &[], TC_FROM_IP) {
                        want.insert((vrf.0, ip), adj);
                    }
                }
            }
        }
        for (key, adj) in &want {
            let id = match self.neighbour_routes.get(key) {
                Some(id) => *id,
                None => {
                    let Some(id) = self.alloc_synthetic() else {
                        continue;
                    };
                    id
                }
            };
            self.install(maps, id, Some(vec![*adj]))?;
            // A connected neighbour is out of its port: proxied from the others.
            self.set_nh_arp(maps, id, u32::from(adj.port) + 1)?;
            if !self.neighbour_routes.contains_key(key) {
                // Counted like any route of a counting VRF (its count is the connected
                // subnet's: see `Mirror::counted_routes`).
                let counted = self.counted.contains(&key.0);
                self.fib.insert_in(key.0, Ipv4Prefix::host(key.1), NextHopId(id | if counted { ROUTE_COUNTED } else { 0 }));
                self.last.routes += 1;
                self.neighbour_routes.insert(*key, id);
                if let Some(slot) = self.fib.slot_of(key.0, Ipv4Prefix::host(key.1)).filter(|_| counted) {
                    maps.clear_route_stats(slot)?;
                }
            }
        }
        let gone: Vec<_> = self.neighbour_routes.keys().filter(|k| !want.contains_key(*k)).copied().collect();
        for key in gone {
            let Some(id) = self.neighbour_routes.remove(&key) else { continue };
            // A real /32 may own the key now: then the route command already rewrote it.
            if !self.routes.contains_key(&(key.0, Ipv4Prefix::host(key.1))) {
                self.fib.remove_in(key.0, Ipv4Prefix::host(key.1));
                self.last.routes += 1;
            }
            self.install(maps, id, None)?;
            self.set_nh_arp(maps, id, 0)?;
            self.freed_synthetic.push(id);
        }
        Ok(())
    }
}

/// Bring a map the mirror keeps whole in line with `want`: `write` sets what is new or changed
/// and removes (`None`) what is gone; `have` becomes `want`. Returns the writes.
fn write_diff<K: Copy + Eq + std::hash::Hash, V: Copy + PartialEq>(
    have: &mut FastMap<K, V>,
    want: FastMap<K, V>,
    mut write: impl FnMut(K, Option<V>) -> std::io::Result<()>,
) -> std::io::Result<usize> {
    let mut writes = 0;
    for (k, v) in &want {
        if have.get(k) != Some(v) {
            write(*k, Some(*v))?;
            writes += 1;
        }
    }
    for k in have.keys().filter(|k| !want.contains_key(*k)).copied().collect::<Vec<_>>() {
        write(k, None)?;
        writes += 1;
    }
    *have = want;
    Ok(writes)
}

/// Static neighbours first, then learned ones, as the pipeline resolves them.
struct Neighbours<'a> {
    tables: &'a Tables,
    learned: FastMap<(PortId, Ipv4Addr), MacAddr>,
}

impl Neighbours<'_> {
    fn get(&self, port: PortId, ip: Ipv4Addr) -> Option<MacAddr> {
        self.tables.neighbours.get(&(port, ip)).or_else(|| self.learned.get(&(port, ip))).copied()
    }

    fn all(&self) -> Vec<((PortId, Ipv4Addr), MacAddr)> {
        let mut v: Vec<_> = self.learned.iter().map(|(k, m)| (*k, *m)).collect();
        v.retain(|(k, _)| !self.tables.neighbours.contains_key(k));
        v.extend(self.tables.neighbours.iter().map(|(k, m)| (*k, *m)));
        v
    }
}

/// Whether an address routed over next hop `id` is routed elsewhere for proxy ARP, as the
/// pipeline's `routed_elsewhere` decides (see `NH_ARP`): 0 when the pipeline would not answer
/// (or the next hop is gone).
fn proxy_arp_value(tables: &Tables, id: NextHopId) -> u32 {
    match tables.nexthop(id) {
        Some(NextHop::Adjacency { port, .. }) if u32::from(port.0) < MAX_PORTS => u32::from(port.0) + 1,
        Some(NextHop::MplsPush { .. } | NextHop::Vxlan { .. } | NextHop::Ecmp { .. } | NextHop::Receive) => ARP_ANY,
        _ => 0,
    }
}

/// A port as the tier sees it.
fn compile_port(p: &crate::tables::Port) -> ExPort {
    let (kind, vrf) = match p.role {
        PortRole::Bridge(_) if p.vlan.is_some() => (PORT_PUNT, 0),
        PortRole::Vrf(v) if u32::from(v.0) < MAX_VRFS => (PORT_VRF, v.0),
        PortRole::Bridge(b) if u32::from(b.0) < MAX_VRFS => (PORT_BRIDGE, b.0),
        PortRole::Core => (PORT_CORE, 0),
        _ => (PORT_PUNT, 0),
    };
    let mut flags = if p.anti_spoof { PORT_ANTI_SPOOF } else { 0 };
    if p.proxy_arp && kind == PORT_VRF {
        flags |= PORT_PROXY_ARP;
    }
    ExPort { kind, flags, vrf, mac: p.mac.0, mtu: p.mtu, vlan: p.vlan.unwrap_or(0) }
}

/// The records of next hop `id`, one per bucket (see `NH` in `carrier_common::express`):
/// forwarding where the program can send over the bucket's path, else only the source check;
/// `None` when the next hop does not exist. A next hop with ECMP on its paths (the VRF route's
/// group, the underlay's groups toward the PE or VTEP) gets as many buckets as the least
/// common multiple of the group sizes, so that bucket `hash % buckets` picks at every level
/// the member the pipeline picks with `hash % members`; more than `MAX_BUCKETS` is punted.
fn compile_nexthop(tables: &Tables, neighbours: &Neighbours<'_>, id: NextHopId) -> Option<Vec<ExAdj>> {
    let nh = tables.nexthop(id)?;
    let punt = ExAdj { port: NO_PORT, rpf_port: rpf_port(tables, nh), ..ExAdj::default() };
    Some(compile_buckets(|picks| forward_record(tables, neighbours, id, picks), punt))
}

/// One record per bucket from `record` (`None`: the bucket is punted with `punt`), as many
/// buckets as the ECMP groups it meets need (see [`compile_nexthop`]); every record keeps
/// `punt`'s source check.
fn compile_buckets(mut record: impl FnMut(&mut Picks) -> Option<ExAdj>, punt: ExAdj) -> Vec<ExAdj> {
    let mut buckets = 1usize;
    loop {
        let mut need = buckets;
        let mut records = Vec::with_capacity(buckets);
        for bucket in 0..buckets {
            let mut picks = Picks { hash: bucket, sizes: vec![] };
            let forward = record(&mut picks);
            need = picks.sizes.iter().fold(need, |l, n| lcm(l, *n));
            records.push(forward.map_or(punt, |a| ExAdj { rpf_port: punt.rpf_port, ..a }));
        }
        if need == buckets {
            return records;
        }
        if need > MAX_BUCKETS as usize {
            return vec![punt];
        }
        buckets = need;
    }
}

/// The ECMP choices of one bucket: the pipeline's `pick` with the bucket number for the flow
/// hash, and the sizes of the groups met (the bucket count must be a multiple of each).
struct Picks {
    hash: usize,
    sizes: Vec<usize>,
}

impl Picks {
    /// Next hop `id`, or the member of its ECMP group this bucket takes.
    fn pick<'t>(&mut self, tables: &'t Tables, id: NextHopId) -> Option<&'t NextHop> {
        match tables.nexthop(id)? {
            NextHop::Ecmp { members } if !members.is_empty() => {
                self.sizes.push(members.len());
                tables.nexthop(members[self.hash % members.len()])
            }
            NextHop::Ecmp { .. } => None,
            nh => Some(nh),
        }
    }
}

fn lcm(a: usize, b: usize) -> usize {
    let gcd = |mut x: usize, mut y: usize| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    a / gcd(a, b) * b
}

/// Where one bucket of next hop `id` sends, as `route` and `forward_ip` do: `None` when the
/// program cannot send there itself.
fn forward_record(tables: &Tables, neighbours: &Neighbours<'_>, id: NextHopId, picks: &mut Picks) -> Option<ExAdj> {
    match picks.pick(tables, id)? {
        NextHop::Adjacency { port, via: Some(gw) } => neighbours.get(*port, *gw).and_then(|mac| adjacency(tables, *port, mac, &[], TC_FROM_IP)),
        NextHop::MplsPush { labels, tc, pe } => resolve(tables, neighbours, *pe, labels.as_slice(), tc.unwrap_or(TC_FROM_IP), picks),
        NextHop::Vxlan { vtep, vni, router_mac } => vxlan(tables, neighbours, *vtep, *vni, *router_mac, picks),
        _ => None,
    }
}

/// The one port a source routed over `nh` must arrive on (the pipeline accepts any port of
/// an adjacency, or of any member of an ECMP group); `NO_PORT` when none or several.
fn rpf_port(tables: &Tables, nh: &NextHop) -> u16 {
    match nh {
        NextHop::Adjacency { port, .. } => port.0,
        NextHop::Ecmp { members } => {
            let ports: HashSet<u16> = members
                .iter()
                .filter_map(|m| match tables.nexthop(*m) {
                    Some(NextHop::Adjacency { port, .. }) => Some(port.0),
                    _ => None,
                })
                .collect();
            if ports.len() == 1 {
                ports.into_iter().next().unwrap_or(NO_PORT)
            } else {
                NO_PORT
            }
        }
        _ => NO_PORT,
    }
}

/// Push `labels` (inner) toward `pe` through the underlay, as `send_underlay` does.
fn resolve(tables: &Tables, neighbours: &Neighbours<'_>, pe: Ipv4Addr, labels: &[Label], tc: u8, picks: &mut Picks) -> Option<ExAdj> {
    let mut stack: Vec<Label> = labels.to_vec();
    let mut dst = pe;
    let mut depth = 1;
    loop {
        if depth > MAX_DEPTH {
            return None;
        }
        let (_, nh) = tables.underlay.lookup(dst)?;
        match picks.pick(tables, nh)? {
            NextHop::Adjacency { port, via } => {
                let mac = neighbours.get(*port, via.unwrap_or(dst))?;
                return adjacency(tables, *port, mac, &stack, tc);
            }
            NextHop::MplsPush { labels, pe: next, .. } => {
                let mut s = labels.as_slice().to_vec();
                s.extend_from_slice(&stack);
                stack = s;
                dst = *next;
                depth += 1;
            }
            _ => return None,
        }
    }
}

/// Routed VXLAN toward `vtep` (EVPN type-5), as `forward_ip` and `vxlan_encap` do it: inner
/// Ethernet to the remote router MAC (broadcast when it sent none) from this router's MAC,
/// outer IPv4 from the local VTEP (no DSCP, DF clear, the configured TTL), UDP to 4789 without
/// checksum, through the underlay to a neighbour. Without a local VTEP, or when the underlay
/// pushes labels toward `vtep`, the program punts.
fn vxlan(tables: &Tables, neighbours: &Neighbours<'_>, vtep: Ipv4Addr, vni: carrier_common::Vni, router_mac: Option<MacAddr>, picks: &mut Picks) -> Option<ExAdj> {
    let local = tables.router.vtep?;
    let under = resolve(tables, neighbours, vtep, &[], TC_FROM_IP, picks)?;
    if under.nlabels != 0 || under.vlan != 0 {
        return None;
    }
    let ttl = tables.router.vxlan_ttl;
    let word = |b: [u8; 4], i: usize| u32::from(u16::from_be_bytes([b[i], b[i + 1]]));
    let (src, dst) = (local.octets(), vtep.octets());
    let outer_sum = 0x4500 + (u32::from(ttl) << 8 | 17) + word(src, 0) + word(src, 2) + word(dst, 0) + word(dst, 2);
    Some(ExAdj {
        encap: ENCAP_VXLAN,
        outer_ttl: ttl,
        inner_dst: router_mac.unwrap_or(MacAddr::BROADCAST).0,
        inner_src: tables.router_mac().0,
        outer_src: src,
        outer_dst: dst,
        vni: vni.value() << 8,
        outer_sum,
        ..under
    })
}

/// A forwarding record out of `port` to `mac` with `stack` (outermost first).
fn adjacency(tables: &Tables, port: PortId, mac: MacAddr, stack: &[Label], tc: u8) -> Option<ExAdj> {
    let p = tables.port(port)?;
    if u32::from(port.0) >= MAX_PORTS || stack.len() > MAX_PUSH {
        return None;
    }
    let mut labels = [0u32; MAX_PUSH];
    for (i, l) in stack.iter().enumerate() {
        let bottom = if i == stack.len() - 1 { 1 << 8 } else { 0 };
        labels[i] = l.value() << 12 | bottom;
    }
    Some(ExAdj { port: port.0, rpf_port: NO_PORT, nlabels: stack.len() as u8, tc, mtu: p.mtu, dst: mac.0, src: p.mac.0, labels, vlan: p.vlan.unwrap_or(0), ..ExAdj::default() })
}

/// The labels an adjacency record pushes (for its counters).
pub fn record_labels(adj: &ExAdj) -> impl Iterator<Item = u32> + '_ {
    adj.labels[..usize::from(adj.nlabels).min(MAX_PUSH)].iter().map(|l| l >> 12)
}

/// A commit for the mirror: the tables published and the commands applied (`None`: a
/// replace). `done` is signalled once the maps are written.
#[derive(Debug)]
pub struct MirrorJob {
    /// The published snapshot.
    pub tables: std::sync::Arc<Tables>,
    /// The commands, or `None` for a replace.
    pub commands: Option<std::sync::Arc<Vec<TableCommand>>>,
    /// Signalled when done.
    pub done: std::sync::mpsc::SyncSender<()>,
}

/// The table writer's end of the mirror: see [`crate::ctl::TableWriter::with_mirror`].
#[derive(Debug, Clone)]
pub struct MirrorLink(std::sync::mpsc::SyncSender<MirrorJob>);

/// Longest a commit waits for the mirror.
const MIRROR_WAIT: Duration = Duration::from_secs(120);

impl MirrorLink {
    /// A link and the receiver the mirror's thread reads jobs from.
    pub fn channel() -> (MirrorLink, std::sync::mpsc::Receiver<MirrorJob>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        (MirrorLink(tx), rx)
    }

    /// Hand a commit to the mirror and wait until its maps are written.
    pub fn sync(&self, tables: std::sync::Arc<Tables>, commands: Option<std::sync::Arc<Vec<TableCommand>>>) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.0.send(MirrorJob { tables, commands, done }).is_ok() && wait.recv_timeout(MIRROR_WAIT).is_err() {
            log::warn!("express tier: the mirror did not confirm a commit within {MIRROR_WAIT:?}");
        }
    }
}

/// Express maps in memory, for tests and the tier's own checks.
#[derive(Debug, Default, Clone)]
pub struct MemMaps {
    /// The config entry.
    pub config: ExConfig,
    /// Ports by slot.
    pub ports: FastMap<u32, ExPort>,
    /// `EX_FIB` entries (the trie's leaves) that are not 0.
    pub fib: FastMap<u32, u32>,
    /// `EX_FIB_SLOTS`: route slot → next-hop id.
    pub fib_slots: FastMap<u32, u32>,
    /// Next hop → slot + 1.
    pub nexthops: FastMap<u32, u32>,
    /// Adjacencies by slot.
    pub adjs: FastMap<u32, ExAdj>,
    /// ILM by label.
    pub ilm: FastMap<u32, ExIlm>,
    /// VNI → VRF, or `VNI_BRIDGE` | bridge domain.
    pub vnis: FastMap<u32, u32>,
    /// Bridge MACs.
    pub macs: FastMap<MacKey, ExMac>,
    /// Known neighbours.
    pub neighbours: FastMap<PortAddr, ExNeigh>,
    /// The ports' own addresses.
    pub own: HashSet<PortAddr>,
    /// `EX_NH_ARP` entries that are not 0.
    pub nh_arp: FastMap<u32, u32>,
    /// ARP suppression bindings.
    pub arp_bind: FastMap<PortAddr, ExNeigh>,
    /// Route slots whose counters were cleared, in order.
    pub route_stats_cleared: Vec<u32>,
}

/// Set `key` to `value` in `map`, or remove it (`None`), as a map write does.
fn put<K: Eq + std::hash::Hash, V>(map: &mut FastMap<K, V>, key: K, value: Option<V>) -> std::io::Result<()> {
    match value {
        Some(v) => map.insert(key, v),
        None => map.remove(&key),
    };
    Ok(())
}

impl ExpressMaps for MemMaps {
    fn clear_route_stats(&mut self, slot: u32) -> std::io::Result<()> {
        self.route_stats_cleared.push(slot);
        Ok(())
    }
    fn set_neighbour(&mut self, key: PortAddr, neighbour: Option<ExNeigh>) -> std::io::Result<()> {
        put(&mut self.neighbours, key, neighbour)
    }
    fn set_own(&mut self, key: PortAddr, own: bool) -> std::io::Result<()> {
        if own {
            self.own.insert(key);
        } else {
            self.own.remove(&key);
        }
        Ok(())
    }
    fn set_arp_bind(&mut self, key: PortAddr, mac: Option<ExNeigh>) -> std::io::Result<()> {
        put(&mut self.arp_bind, key, mac)
    }
    fn set_nh_arp(&mut self, nexthop: u32, value: u32) -> std::io::Result<()> {
        put(&mut self.nh_arp, nexthop, (value != 0).then_some(value))
    }
    fn set_mac(&mut self, key: MacKey, mac: Option<ExMac>) -> std::io::Result<()> {
        put(&mut self.macs, key, mac)
    }
    fn set_config(&mut self, config: ExConfig) -> std::io::Result<()> {
        self.config = config;
        Ok(())
    }
    fn set_port(&mut self, slot: u32, port: ExPort) -> std::io::Result<()> {
        self.ports.insert(slot, port);
        Ok(())
    }
    fn set_fib(&mut self, entries: &[(u32, u32)]) -> std::io::Result<()> {
        entries.iter().try_for_each(|&(i, leaf)| put(&mut self.fib, i, (leaf != 0).then_some(leaf)))
    }
    fn set_fib_slots(&mut self, slots: &[(u32, u32)]) -> std::io::Result<()> {
        self.fib_slots.extend(slots.iter().copied());
        Ok(())
    }
    fn set_nexthop(&mut self, nexthop: u32, at: u32) -> std::io::Result<()> {
        self.nexthops.insert(nexthop, at);
        Ok(())
    }
    fn set_adj(&mut self, slot: u32, adj: ExAdj) -> std::io::Result<()> {
        self.adjs.insert(slot, adj);
        Ok(())
    }
    fn set_ilm(&mut self, label: u32, entry: ExIlm) -> std::io::Result<()> {
        put(&mut self.ilm, label, (entry != ExIlm::default()).then_some(entry))
    }
    fn set_vni(&mut self, vni: u32, vrf: Option<u32>) -> std::io::Result<()> {
        put(&mut self.vnis, vni, vrf)
    }
    fn take_adj_counters(&mut self, _slot: u32) -> std::io::Result<(u64, u64)> {
        Ok((0, 0))
    }
}

impl MemMaps {
    /// The next-hop id of the route for `addr` in `vrf`: the program's walk of `EX_FIB`
    /// (`None`: no route, or punted).
    pub fn route(&self, vrf: VrfId, addr: Ipv4Addr) -> Option<u32> {
        let a = addr.octets();
        let mut leaf = *self.fib.get(&(u32::from(vrf.0) * 256 + u32::from(a[0])))?;
        for byte in &a[1..] {
            if leaf & FIB_PLY == 0 {
                break;
            }
            leaf = *self.fib.get(&((leaf & !FIB_PLY) * 256 + u32::from(*byte)))?;
        }
        if leaf == FIB_PUNT || leaf & FIB_PLY != 0 {
            return None;
        }
        self.fib_slots.get(&(leaf - 1)).map(|v| v & !ROUTE_COUNTED)
    }

    /// Whether the route for `addr` in `vrf` is marked counted (`ROUTE_COUNTED`).
    pub fn counted(&self, vrf: VrfId, addr: Ipv4Addr) -> bool {
        let a = addr.octets();
        let Some(mut leaf) = self.fib.get(&(u32::from(vrf.0) * 256 + u32::from(a[0]))).copied() else { return false };
        for byte in &a[1..] {
            if leaf & FIB_PLY == 0 {
                break;
            }
            leaf = self.fib.get(&((leaf & !FIB_PLY) * 256 + u32::from(*byte))).copied().unwrap_or(0);
        }
        leaf != 0 && leaf & FIB_PLY == 0 && leaf != FIB_PUNT && self.fib_slots.get(&(leaf - 1)).is_some_and(|v| v & ROUTE_COUNTED != 0)
    }

    /// The record a packet to `addr` in `vrf` would use: longest match, then the next hop's
    /// slot (the program's lookup, for tests).
    pub fn lookup(&self, vrf: VrfId, addr: Ipv4Addr) -> Option<ExAdj> {
        self.lookup_hashed(vrf, addr, 0)
    }

    /// [`MemMaps::lookup`] for a packet of flow hash `hash` (its ECMP bucket).
    pub fn lookup_hashed(&self, vrf: VrfId, addr: Ipv4Addr, hash: u32) -> Option<ExAdj> {
        let at = *self.nexthops.get(&self.route(vrf, addr)?)?;
        let first = at & NH_SLOT_MASK;
        if first == 0 {
            return None;
        }
        let buckets = (at >> NH_BUCKETS_SHIFT) + 1;
        self.adjs.get(&(first - 1 + hash % buckets)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{InterfaceAddr, LabelStack, Port, RouterSettings};

    fn p(s: &str) -> Ipv4Prefix {
        s.parse().unwrap()
    }

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    /// A customer port (0, VRF 0), a core port (1), a PE behind a core neighbour, and
    /// `routes` VPN routes over one push next hop (label 5000).
    fn tables(routes: u32) -> Tables {
        let mut t = Tables::default();
        let port = |id: u16, role| {
            let addrs = vec![InterfaceAddr { addr: Ipv4Addr::new(10, id as u8, 0, 1), prefix: p(&format!("10.{id}.0.0/24")) }];
            TableCommand::Port(Port { addrs, ..crate::tables::test_port(id, role) })
        };
        let mut cmds = vec![
            TableCommand::Router(RouterSettings::default()),
            TableCommand::Vrf { id: VrfId(0), name: "red".into(), source: None, prefix_counters: false },
            port(0, PortRole::Vrf(VrfId(0))),
            port(1, PortRole::Core),
            TableCommand::Neighbour { port: PortId(1), ip: Ipv4Addr::new(10, 1, 0, 2), mac: mac(0x42) },
            TableCommand::NextHop { id: NextHopId(0), nexthop: NextHop::Adjacency { port: PortId(1), via: Some(Ipv4Addr::new(10, 1, 0, 2)) } },
            TableCommand::Route { table: Table::Underlay, prefix: p("10.255.0.2/32"), nexthop: NextHopId(0) },
            TableCommand::NextHop {
                id: NextHopId(1),
                nexthop: NextHop::MplsPush { labels: LabelStack::new(&[Label::new(5000).unwrap()]).unwrap(), tc: None, pe: Ipv4Addr::new(10, 255, 0, 2) },
            },
            TableCommand::NextHop { id: NextHopId(2), nexthop: NextHop::Adjacency { port: PortId(0), via: None } },
            TableCommand::Route { table: Table::Vrf(VrfId(0)), prefix: p("10.0.0.0/24"), nexthop: NextHopId(2) },
            TableCommand::Neighbour { port: PortId(0), ip: Ipv4Addr::new(10, 0, 0, 7), mac: mac(0x07) },
            TableCommand::Label { label: Label::new(100_000).unwrap(), action: IlmAction::PopLookup { vrf: VrfId(0) } },
        ];
        for i in 0..routes {
            cmds.push(TableCommand::Route { table: Table::Vrf(VrfId(0)), prefix: Ipv4Prefix::new(Ipv4Addr::from(0xac10_0000 + (i << 8)), 24).unwrap(), nexthop: NextHopId(1) });
        }
        t.apply_all(cmds).unwrap();
        t
    }

    #[test]
    fn compiles_push_through_the_underlay_and_connected_neighbours() {
        let t = tables(3);
        let mut maps = MemMaps::default();
        let mut m = Mirror::new(true);
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        let push = maps.lookup(VrfId(0), Ipv4Addr::new(172, 16, 1, 9)).expect("a route to 172.16.1.0/24");
        assert_eq!((push.port, push.nlabels, push.dst, push.src, push.mtu), (1, 1, mac(0x42).0, mac(1).0, 1500));
        assert_eq!(push.labels[0], 5000 << 12 | 1 << 8, "label 5000, bottom of stack");
        assert_eq!(push.tc, TC_FROM_IP);
        // The connected subnet itself is punted; its known neighbour has a /32 of its own.
        let subnet = maps.lookup(VrfId(0), Ipv4Addr::new(10, 0, 0, 99)).unwrap();
        assert_eq!((subnet.port, subnet.rpf_port), (NO_PORT, 0));
        let host = maps.lookup(VrfId(0), Ipv4Addr::new(10, 0, 0, 7)).unwrap();
        assert_eq!((host.port, host.dst, host.nlabels), (0, mac(7).0, 0));
        assert_eq!(maps.ilm.get(&100_000), Some(&ExIlm { action: ILM_POP_LOOKUP, vrf: 0, nexthop: 0 }));
        assert_eq!(maps.config.flags, CONFIG_ON);
        assert_eq!(maps.ports.get(&1).map(|p| p.kind), Some(PORT_CORE));
        // Proxy ARP: a pushed route is elsewhere from every port, the connected subnet and
        // its neighbour's /32 from every port but port 0.
        let arp = |a: [u8; 4]| maps.route(VrfId(0), Ipv4Addr::from(a)).and_then(|nh| maps.nh_arp.get(&nh).copied());
        assert_eq!(arp([172, 16, 1, 9]), Some(ARP_ANY));
        assert_eq!(arp([10, 0, 0, 99]), Some(1));
        assert_eq!(arp([10, 0, 0, 7]), Some(1));
    }

    #[test]
    fn compiles_routed_vxlan_with_its_outer_headers() {
        let mut t = tables(0);
        let vtep = Ipv4Addr::new(192, 0, 3, 1);
        t.apply_all(vec![
            TableCommand::NextHop { id: NextHopId(3), nexthop: NextHop::Vxlan { vtep: Ipv4Addr::new(10, 255, 0, 2), vni: carrier_common::Vni::new(5010).unwrap(), router_mac: Some(mac(0x55)) } },
            TableCommand::Route { table: Table::Vrf(VrfId(0)), prefix: p("172.17.0.0/16"), nexthop: NextHopId(3) },
        ])
        .unwrap();
        let mut maps = MemMaps::default();
        let mut m = Mirror::new(true);
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        // Without a local VTEP the pipeline drops (no VTEP address): the tier punts.
        assert_eq!(maps.lookup(VrfId(0), Ipv4Addr::new(172, 17, 0, 1)).map(|a| a.port), Some(NO_PORT));
        let settings = RouterSettings { vtep: Some(vtep), vxlan_ttl: 17, ..RouterSettings::default() };
        let cmds = vec![TableCommand::Router(settings)];
        t.apply_all(cmds.clone()).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&cmds)).unwrap();
        let vx = maps.lookup(VrfId(0), Ipv4Addr::new(172, 17, 0, 1)).unwrap();
        assert_eq!((vx.encap, vx.port, vx.nlabels, vx.dst, vx.src), (ENCAP_VXLAN, 1, 0, mac(0x42).0, mac(1).0));
        assert_eq!((vx.inner_dst, vx.inner_src, vx.vni, vx.outer_ttl), (mac(0x55).0, mac(1).0, 5010 << 8, 17));
        assert_eq!((vx.outer_src, vx.outer_dst), ([192, 0, 3, 1], [10, 255, 0, 2]));
        // The partial sum plus the length and identification gives the header's checksum.
        let mut header = [0u8; 20];
        crate::wire::ipv4::emit_header(&mut header, vtep, Ipv4Addr::new(10, 255, 0, 2), crate::wire::IpProtocol::Udp, 17, 80, 0x1234, false);
        let sum = vx.outer_sum + 100 + 0x1234;
        let mut acc = (sum & 0xffff) + (sum >> 16);
        acc = (acc & 0xffff) + (acc >> 16);
        assert_eq!(!(acc as u16), u16::from_be_bytes([header[10], header[11]]));
    }

    #[test]
    fn ecmp_is_flattened_into_buckets_the_pipeline_would_pick() {
        let mut t = tables(0);
        let core = |n: u8| Ipv4Addr::new(10, 1, 0, n);
        let mut cmds = vec![];
        for n in 3..=4u8 {
            cmds.push(TableCommand::Neighbour { port: PortId(1), ip: core(n), mac: mac(0x40 + n) });
            cmds.push(TableCommand::NextHop { id: NextHopId(u32::from(n) + 7), nexthop: NextHop::Adjacency { port: PortId(1), via: Some(core(n)) } });
        }
        // The PE over an underlay group of three (10.1.0.2, .3, .4); a VRF group of two pushes
        // to it (labels 6000, 6001); a VRF group of two neighbours on the customer port.
        cmds.extend([
            TableCommand::NextHop { id: NextHopId(20), nexthop: NextHop::Ecmp { members: vec![NextHopId(0), NextHopId(10), NextHopId(11)] } },
            TableCommand::Route { table: Table::Underlay, prefix: p("10.255.0.2/32"), nexthop: NextHopId(20) },
            TableCommand::NextHop { id: NextHopId(21), nexthop: NextHop::MplsPush { labels: LabelStack::new(&[Label::new(6001).unwrap()]).unwrap(), tc: None, pe: Ipv4Addr::new(10, 255, 0, 2) } },
            TableCommand::NextHop { id: NextHopId(22), nexthop: NextHop::Ecmp { members: vec![NextHopId(1), NextHopId(21)] } },
            TableCommand::Route { table: Table::Vrf(VrfId(0)), prefix: p("172.18.0.0/16"), nexthop: NextHopId(22) },
            TableCommand::Neighbour { port: PortId(0), ip: Ipv4Addr::new(10, 0, 0, 8), mac: mac(0x08) },
            TableCommand::NextHop { id: NextHopId(23), nexthop: NextHop::Adjacency { port: PortId(0), via: Some(Ipv4Addr::new(10, 0, 0, 7)) } },
            TableCommand::NextHop { id: NextHopId(24), nexthop: NextHop::Adjacency { port: PortId(0), via: Some(Ipv4Addr::new(10, 0, 0, 8)) } },
            TableCommand::NextHop { id: NextHopId(25), nexthop: NextHop::Ecmp { members: vec![NextHopId(23), NextHopId(24)] } },
            TableCommand::Route { table: Table::Vrf(VrfId(0)), prefix: p("172.19.0.0/16"), nexthop: NextHopId(25) },
        ]);
        t.apply_all(cmds).unwrap();
        let mut maps = MemMaps::default();
        let mut m = Mirror::new(true);
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        // lcm(2, 3) = 6 buckets: bucket b takes VRF member b % 2, underlay member b % 3.
        let dst = Ipv4Addr::new(172, 18, 0, 1);
        let gateways = [mac(0x42), mac(0x43), mac(0x44)];
        for hash in 0..12u32 {
            let r = maps.lookup_hashed(VrfId(0), dst, hash).unwrap();
            let label = if hash % 2 == 0 { 5000 } else { 6001 };
            assert_eq!((r.port, r.labels[0] >> 12, r.dst), (1, label, gateways[(hash % 3) as usize].0), "hash {hash}");
        }
        assert_eq!(maps.nexthops.get(&22).map(|v| (v >> NH_BUCKETS_SHIFT) + 1), Some(6));
        let (a, b) = (maps.lookup_hashed(VrfId(0), Ipv4Addr::new(172, 19, 0, 1), 0).unwrap(), maps.lookup_hashed(VrfId(0), Ipv4Addr::new(172, 19, 0, 1), 1).unwrap());
        assert_eq!((a.dst, b.dst, a.rpf_port, b.rpf_port), (mac(7).0, mac(8).0, 0, 0), "a group on one port passes the source check in every bucket");

        // An underlay next hop changes: every record through it follows.
        let cmds = vec![TableCommand::Neighbour { port: PortId(1), ip: Ipv4Addr::new(10, 1, 0, 9), mac: mac(0x49) }];
        t.apply_all(cmds.clone()).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&cmds)).unwrap();
        let cmds = vec![TableCommand::NextHop { id: NextHopId(10), nexthop: NextHop::Adjacency { port: PortId(1), via: Some(Ipv4Addr::new(10, 1, 0, 9)) } }];
        t.apply_all(cmds.clone()).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&cmds)).unwrap();
        assert_eq!(maps.lookup_hashed(VrfId(0), dst, 1).map(|r| r.dst), Some(mac(0x49).0), "bucket 1: underlay member 1, now 10.1.0.9");
        assert_eq!(maps.lookup(VrfId(0), Ipv4Addr::new(172, 16, 0, 1)), None, "no such route");
    }

    #[test]
    fn swap_and_per_ce_labels_get_records_of_their_own() {
        let mut t = tables(0);
        let cmds = vec![
            TableCommand::Label { label: Label::new(100_001).unwrap(), action: IlmAction::Swap { out: Label::new(7000).unwrap(), pe: Ipv4Addr::new(10, 255, 0, 2) } },
            TableCommand::NextHop { id: NextHopId(5), nexthop: NextHop::Adjacency { port: PortId(0), via: Some(Ipv4Addr::new(10, 0, 0, 7)) } },
            TableCommand::Label { label: Label::new(100_002).unwrap(), action: IlmAction::PopForward { vrf: VrfId(0), nexthop: NextHopId(5) } },
            TableCommand::NextHop { id: NextHopId(6), nexthop: NextHop::Ecmp { members: vec![NextHopId(5), NextHopId(5)] } },
            TableCommand::Label { label: Label::new(100_003).unwrap(), action: IlmAction::PopForward { vrf: VrfId(0), nexthop: NextHopId(6) } },
        ];
        t.apply_all(cmds).unwrap();
        let mut maps = MemMaps::default();
        let mut m = Mirror::new(true);
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        let record = |maps: &MemMaps, label: u32| {
            let e = maps.ilm[&label];
            let at = maps.nexthops[&e.nexthop];
            (e.action, maps.adjs[&((at & NH_SLOT_MASK) - 1)])
        };
        let (action, swap) = record(&maps, 100_001);
        assert_eq!((action, swap.port, swap.nlabels, swap.labels[0], swap.dst), (ILM_SWAP, 1, 1, 7000 << 12 | 1 << 8, mac(0x42).0));
        let (action, ce) = record(&maps, 100_002);
        assert_eq!((action, ce.port, ce.nlabels, ce.dst), (ILM_POP_FORWARD, 0, 0, mac(7).0));
        // The pipeline does not pick in a per-CE label's ECMP group: punted.
        assert_eq!(maps.ilm.get(&100_003), None);

        // The per-CE next hop moves to an unknown neighbour: its label's record follows.
        let cmds = vec![TableCommand::NextHop { id: NextHopId(5), nexthop: NextHop::Adjacency { port: PortId(0), via: Some(Ipv4Addr::new(10, 0, 0, 99)) } }];
        t.apply_all(cmds.clone()).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&cmds)).unwrap();
        assert_eq!(record(&maps, 100_002).1.port, NO_PORT);
        // Removed: the entry goes, and so do its records.
        let cmds = vec![TableCommand::RemoveLabel { label: Label::new(100_001).unwrap() }];
        let id = maps.ilm[&100_001].nexthop;
        t.apply_all(cmds.clone()).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&cmds)).unwrap();
        assert_eq!((maps.ilm.get(&100_001), maps.nexthops.get(&id)), (None, Some(&0)));
        assert!(m.labels().any(|l| l == 100_002));
    }

    #[test]
    fn bridge_macs_static_and_learned_with_records_toward_vteps() {
        use carrier_common::{BridgeDomainId, Vni};
        let mut t = tables(0);
        let bd = BridgeDomainId(0);
        let port = |id: u16| crate::tables::test_port(id, PortRole::Bridge(bd));
        t.apply_all(vec![
            TableCommand::Router(RouterSettings { vtep: Some(Ipv4Addr::new(192, 0, 3, 1)), ..RouterSettings::default() }),
            TableCommand::Bridge { id: bd, name: "blue".into(), vni: Vni::new(700).unwrap(), ports: vec![] },
            TableCommand::Port(port(2)),
            TableCommand::Port(port(3)),
            TableCommand::BridgeMac { bridge: bd, mac: mac(0x70), dest: MacDest::Vtep(Ipv4Addr::new(10, 255, 0, 2)) },
            TableCommand::VniMap { vni: Vni::new(700).unwrap(), target: crate::tables::VniTarget::Bridge(bd) },
        ])
        .unwrap();
        let mut maps = MemMaps::default();
        let mut m = Mirror::new(true);
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        assert_eq!(maps.ports.get(&2).map(|p| (p.kind, p.vrf)), Some((PORT_BRIDGE, 0)));
        assert_eq!(maps.vnis.get(&700), Some(&VNI_BRIDGE), "bridge domain 0");
        let remote = maps.macs[&MacKey { bd: 0, mac: mac(0x70).0 }];
        assert_eq!((remote.port, remote.flags, remote.vtep), (NO_PORT, 0, [10, 255, 0, 2]), "configured: not a learned entry");
        let at = maps.nexthops[&remote.nexthop];
        let record = maps.adjs[&((at & NH_SLOT_MASK) - 1)];
        assert_eq!((record.encap, record.port, record.dst, record.vni, record.outer_dst), (ENCAP_VXLAN_L2, 1, mac(0x42).0, 700 << 8, [10, 255, 0, 2]));

        // Learned: a host on port 3 and one behind another VTEP; then both forgotten.
        let learned = Learned { neighbours: vec![], macs: vec![(bd, mac(0x33), MacDest::Port(PortId(3)), 1), (bd, mac(0x71), MacDest::Vtep(Ipv4Addr::new(10, 255, 0, 2)), 1)] };
        m.sync(&mut maps, &t, &learned, Change::Neighbours).unwrap();
        let local = maps.macs[&MacKey { bd: 0, mac: mac(0x33).0 }];
        assert_eq!((local.port, local.flags), (3, MAC_LEARNED));
        let far = maps.macs[&MacKey { bd: 0, mac: mac(0x71).0 }];
        assert_eq!((far.flags, far.nexthop), (MAC_LEARNED, remote.nexthop), "one record per (domain, VTEP)");
        m.sync(&mut maps, &t, &Learned::default(), Change::Neighbours).unwrap();
        assert_eq!(maps.macs.len(), 1);

        // An ARP binding comes and goes with its command.
        let ip = Ipv4Addr::new(10, 70, 0, 5);
        let key = PortAddr { slot: 0, pad: 0, addr: ip.octets() };
        let cmds = vec![TableCommand::ArpBinding { bridge: bd, ip, mac: mac(0x70) }];
        t.apply_all(cmds.clone()).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&cmds)).unwrap();
        assert_eq!(maps.arp_bind.get(&key).map(|b| b.mac), Some(mac(0x70).0));
        let cmds = vec![TableCommand::RemoveArpBinding { bridge: bd, ip }];
        t.apply_all(cmds.clone()).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&cmds)).unwrap();
        assert!(maps.arp_bind.is_empty());
    }

    #[test]
    fn an_update_writes_what_it_changes() {
        let mut t = tables(10_000);
        let mut maps = MemMaps::default();
        let mut m = Mirror::new(true);
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        assert!(m.last.routes >= 10_000);
        // One route in, one out.
        let cmds = vec![
            TableCommand::Route { table: Table::Vrf(VrfId(0)), prefix: p("192.168.1.0/24"), nexthop: NextHopId(1) },
            TableCommand::Withdraw { table: Table::Vrf(VrfId(0)), prefix: p("172.16.0.0/24") },
        ];
        t.apply_all(cmds.clone()).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&cmds)).unwrap();
        assert_eq!(m.last, Writes { routes: 2, ..Writes::default() });
        assert!(maps.lookup(VrfId(0), Ipv4Addr::new(192, 168, 1, 1)).is_some());
        assert!(maps.lookup(VrfId(0), Ipv4Addr::new(172, 16, 0, 1)).is_none());
        // A next hop changes: one record (a new slot), one index flip, no route.
        let cmds = vec![TableCommand::NextHop {
            id: NextHopId(1),
            nexthop: NextHop::MplsPush { labels: LabelStack::new(&[Label::new(6000).unwrap()]).unwrap(), tc: Some(5), pe: Ipv4Addr::new(10, 255, 0, 2) },
        }];
        let before = maps.nexthops[&1];
        t.apply_all(cmds.clone()).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&cmds)).unwrap();
        assert_eq!(m.last, Writes { adjacencies: 1, nexthops: 1, ..Writes::default() });
        assert_ne!(maps.nexthops[&1], before, "a changed record goes to a new slot");
        let adj = maps.lookup(VrfId(0), Ipv4Addr::new(172, 16, 5, 1)).unwrap();
        assert_eq!((adj.labels[0] >> 12, adj.tc), (6000, 5));
        // A replace with nothing changed writes nothing.
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        assert_eq!(m.last, Writes::default());
    }

    /// What the program's walk of `EX_FIB` finds for `addr` in `vrf` agrees with the VRF's
    /// table: the same next hop, or a punt.
    fn agrees(maps: &MemMaps, t: &Tables, vrf: u16, addr: Ipv4Addr) -> Result<(), String> {
        let want = t.vrfs[usize::from(vrf)].fib.lookup(addr).map(|(_, nh)| route_target(nh.0));
        let got = maps.route(VrfId(vrf), addr);
        if got == want {
            Ok(())
        } else {
            Err(format!("VRF {vrf} {addr}: the map gives {got:?}, the table {want:?}"))
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        /// Routes of two VRFs announced, changed and withdrawn in commits of several
        /// commands: after each, the map walked as the program walks it agrees with the
        /// tables for every route's own address and random probes; a replace then writes
        /// nothing.
        #[test]
        fn the_fib_follows_the_tables_through_churn(
            commits in proptest::collection::vec(proptest::collection::vec((0u16..2, 0u32..4, 0u32..4, proptest::prelude::any::<u16>(), 8u8..=32, proptest::prelude::any::<bool>(), 1u32..3), 1..30), 1..10),
            probes in proptest::collection::vec((0u16..2, 0u32..4, 0u32..4, proptest::prelude::any::<u16>()), 32),
        ) {
            let mut t = tables(0);
            t.apply(TableCommand::Vrf { id: VrfId(1), name: "blue".into(), source: None, prefix_counters: false }).unwrap();
            let (mut maps, mut m) = (MemMaps::default(), Mirror::new(true));
            m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
            let mut seen = vec![];
            for commit in commits {
                let cmds: Vec<TableCommand> = commit
                    .into_iter()
                    .map(|(vrf, a, b, c, len, announce, nh)| {
                        let prefix = Ipv4Prefix::new(Ipv4Addr::from(((172 + a) << 24) | (b << 16) | u32::from(c)), len).unwrap();
                        seen.push((vrf, prefix.addr()));
                        let table = Table::Vrf(VrfId(vrf));
                        if announce { TableCommand::Route { table, prefix, nexthop: NextHopId(nh) } } else { TableCommand::Withdraw { table, prefix } }
                    })
                    .collect();
                t.apply_all(cmds.clone()).unwrap();
                m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&cmds)).unwrap();
                for &(vrf, addr) in &seen {
                    agrees(&maps, &t, vrf, addr).map_err(proptest::test_runner::TestCaseError::fail)?;
                }
                for &(vrf, a, b, c) in &probes {
                    agrees(&maps, &t, vrf, Ipv4Addr::from(((172 + a) << 24) | (b << 16) | u32::from(c))).map_err(proptest::test_runner::TestCaseError::fail)?;
                }
            }
            m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
            proptest::prop_assert_eq!(m.last, Writes::default());
        }
    }

    /// More plies than `EX_FIB` holds: the routes behind the plies that do not fit are
    /// punted (never sent over a shorter prefix), the others forwarded; once routes go, the
    /// rest fit again.
    #[test]
    fn routes_beyond_the_map_are_punted_until_they_fit() {
        let mut t = tables(0);
        t.apply(TableCommand::Route { table: Table::Vrf(VrfId(0)), prefix: p("172.0.0.0/8"), nexthop: NextHopId(2) }).unwrap();
        // A /32 per (b1, b2): a ply for each /24, one per /16, one for 172/8.
        let host = |i: u32| Ipv4Addr::from(0xac00_0001 | (i << 8));
        let n = MAX_FIB_PLIES + 300;
        let cmds: Vec<TableCommand> = (0..n).map(|i| TableCommand::Route { table: Table::Vrf(VrfId(0)), prefix: Ipv4Prefix::host(host(i)), nexthop: NextHopId(1) }).collect();
        t.apply_all(cmds.clone()).unwrap();
        let (mut maps, mut m) = (MemMaps::default(), Mirror::new(true));
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        let (mut forwarded, mut punted) = (0, 0);
        for i in 0..n {
            match maps.route(VrfId(0), host(i)) {
                Some(1) => forwarded += 1,
                None => punted += 1,
                other => panic!("{} went to {other:?}", host(i)),
            }
        }
        assert!(punted > 0 && forwarded > MAX_FIB_PLIES - 600, "{forwarded} forwarded, {punted} punted");
        // Half of the routes go: everything left fits again.
        let gone: Vec<TableCommand> = (0..n / 2).map(|i| TableCommand::Withdraw { table: Table::Vrf(VrfId(0)), prefix: Ipv4Prefix::host(host(i)) }).collect();
        t.apply_all(gone.clone()).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&gone)).unwrap();
        // The plies freed are reusable from the next sync on.
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        for i in 0..n {
            agrees(&maps, &t, 0, host(i)).unwrap();
        }
    }

    #[test]
    fn learned_neighbours_resolve_and_unresolve() {
        let mut t = tables(1);
        // The PE's neighbour only learned, not configured.
        t.apply(TableCommand::RemoveNeighbour { port: PortId(1), ip: Ipv4Addr::new(10, 1, 0, 2) }).unwrap();
        let mut maps = MemMaps::default();
        let mut m = Mirror::new(true);
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        assert_eq!(maps.lookup(VrfId(0), Ipv4Addr::new(172, 16, 0, 1)).map(|a| a.port), Some(NO_PORT), "unresolved: punted (the pipeline sends ARP)");
        let learned = Learned { neighbours: vec![(PortId(1), Ipv4Addr::new(10, 1, 0, 2), mac(0x99), 1), (PortId(0), Ipv4Addr::new(10, 0, 0, 8), mac(8), 1)], macs: vec![] };
        m.sync(&mut maps, &t, &learned, Change::Neighbours).unwrap();
        let adj = maps.lookup(VrfId(0), Ipv4Addr::new(172, 16, 0, 1)).unwrap();
        assert_eq!((adj.port, adj.dst), (1, mac(0x99).0));
        assert_eq!(maps.lookup(VrfId(0), Ipv4Addr::new(10, 0, 0, 8)).map(|a| a.dst), Some(mac(8).0));
        m.sync(&mut maps, &t, &Learned::default(), Change::Neighbours).unwrap();
        assert_eq!(maps.lookup(VrfId(0), Ipv4Addr::new(172, 16, 0, 1)).map(|a| a.port), Some(NO_PORT));
        assert_eq!(maps.lookup(VrfId(0), Ipv4Addr::new(10, 0, 0, 8)).map(|a| a.port), Some(NO_PORT), "back to the punted subnet");
    }

    #[test]
    fn arp_is_answered_for_own_addresses_from_neighbours_no_worker_would_learn() {
        let t = tables(0);
        let mut maps = MemMaps::default();
        let mut m = Mirror::new(true);
        let at = |port: u16, ip: [u8; 4]| PortAddr { slot: port, pad: 0, addr: ip };
        let moved = Ipv4Addr::new(10, 0, 0, 9);
        // 10.0.0.8 learned by one worker; 10.0.0.9 by two, with different MACs (it moved and
        // one worker has relearned it).
        let learned = Learned { neighbours: vec![(PortId(0), Ipv4Addr::new(10, 0, 0, 8), mac(8), 1), (PortId(0), moved, mac(9), 1), (PortId(0), moved, mac(0x19), 1)], macs: vec![] };
        m.sync(&mut maps, &t, &learned, Change::All).unwrap();
        assert_eq!(maps.own, HashSet::from([at(0, [10, 0, 0, 1]), at(1, [10, 1, 0, 1])]));
        let neighbour = |k: PortAddr| maps.neighbours.get(&k).map(|n| n.mac);
        assert_eq!(neighbour(at(0, [10, 0, 0, 7])), Some(mac(7).0), "configured");
        assert_eq!(neighbour(at(1, [10, 1, 0, 2])), Some(mac(0x42).0), "configured");
        assert_eq!(neighbour(at(0, [10, 0, 0, 8])), Some(mac(8).0), "learned");
        assert_eq!(neighbour(at(0, [10, 0, 0, 9])), None, "the workers disagree: its requests are theirs");
        // Every worker has relearned it; the other is forgotten.
        let learned = Learned { neighbours: vec![(PortId(0), moved, mac(0x19), 1)], macs: vec![] };
        m.sync(&mut maps, &t, &learned, Change::Neighbours).unwrap();
        assert_eq!(maps.neighbours.get(&at(0, [10, 0, 0, 9])).map(|n| n.mac), Some(mac(0x19).0));
        assert_eq!(maps.neighbours.get(&at(0, [10, 0, 0, 8])), None);
    }

    /// A route over a next-hop id the tier cannot index stays in the trie, punted, so the
    /// covering route does not take its traffic.
    #[test]
    fn routes_over_unindexable_next_hops_are_punted_not_skipped() {
        let mut t = tables(0);
        let big = NextHopId(SYNTHETIC_BASE + 5);
        t.apply_all([
            TableCommand::Route { table: Table::Vrf(VrfId(0)), prefix: p("172.16.0.0/16"), nexthop: NextHopId(1) },
            TableCommand::NextHop { id: big, nexthop: NextHop::Adjacency { port: PortId(1), via: Some(Ipv4Addr::new(10, 1, 0, 2)) } },
            TableCommand::Route { table: Table::Vrf(VrfId(0)), prefix: p("172.16.9.0/24"), nexthop: big },
        ])
        .unwrap();
        let mut maps = MemMaps::default();
        let mut m = Mirror::new(true);
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        assert!(maps.lookup(VrfId(0), Ipv4Addr::new(172, 16, 1, 1)).is_some_and(|a| a.nlabels == 1));
        assert_eq!(maps.route(VrfId(0), Ipv4Addr::new(172, 16, 9, 1)), Some(PUNT_NEXTHOP));
        assert!(maps.lookup(VrfId(0), Ipv4Addr::new(172, 16, 9, 1)).is_none(), "punted, not sent over the /16");
    }

    /// A VRF with per-prefix counters: its routes (and its connected neighbours' host routes)
    /// are marked counted and still forwarded; a new route's slot starts from zero; turned
    /// off, the marks go; the counted routes map back to their prefixes (a neighbour's to its
    /// subnet).
    #[test]
    fn a_vrf_counting_per_prefix_marks_its_routes() {
        let mut t = tables(4);
        let count = |on: bool| TableCommand::Vrf { id: VrfId(0), name: "red".into(), source: None, prefix_counters: on };
        t.apply(count(true)).unwrap();
        let mut maps = MemMaps::default();
        let mut m = Mirror::new(true);
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        let (far, near) = (Ipv4Addr::new(172, 16, 1, 1), Ipv4Addr::new(10, 0, 0, 7));
        assert!(maps.counted(VrfId(0), far) && maps.counted(VrfId(0), near));
        assert!(maps.lookup(VrfId(0), far).is_some_and(|a| a.nlabels == 1), "counted and forwarded");
        assert!(maps.lookup(VrfId(0), near).is_some());
        let routes = m.counted_routes(&t);
        let slot = m.fib.slot_of(0, p("172.16.1.0/24")).unwrap();
        assert_eq!(routes.get(&slot), Some(&(VrfId(0), p("172.16.1.0/24"))));
        let host = m.fib.slot_of(0, Ipv4Prefix::host(near)).unwrap();
        assert_eq!(routes.get(&host), Some(&(VrfId(0), p("10.0.0.0/24"))), "a neighbour counts for its subnet");
        assert!(maps.route_stats_cleared.contains(&slot) && maps.route_stats_cleared.contains(&host));
        // A new route: its slot is cleared; a changed next hop is not.
        maps.route_stats_cleared.clear();
        let add = [TableCommand::Route { table: Table::Vrf(VrfId(0)), prefix: p("172.17.0.0/16"), nexthop: NextHopId(1) }];
        t.apply_all(add.clone()).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&add)).unwrap();
        assert_eq!(maps.route_stats_cleared, vec![m.fib.slot_of(0, p("172.17.0.0/16")).unwrap()]);
        t.apply(count(false)).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&[count(false)])).unwrap();
        assert!(!maps.counted(VrfId(0), far) && !maps.counted(VrfId(0), near));
        assert!(maps.lookup(VrfId(0), far).is_some() && m.counted_routes(&t).is_empty());
    }

    /// An ECMP group's source check follows its members: a member that changes recompiles
    /// the group though the group itself did not change.
    #[test]
    fn a_changed_member_recompiles_its_ecmp_group() {
        let mut t = tables(0);
        let adj = |port| NextHop::Adjacency { port: PortId(port), via: Some(Ipv4Addr::new(10, 0, 0, 7)) };
        t.apply_all([
            TableCommand::NextHop { id: NextHopId(10), nexthop: adj(0) },
            TableCommand::NextHop { id: NextHopId(11), nexthop: NextHop::Ecmp { members: vec![NextHopId(10), NextHopId(10)] } },
            TableCommand::Route { table: Table::Vrf(VrfId(0)), prefix: p("172.17.0.0/16"), nexthop: NextHopId(11) },
        ])
        .unwrap();
        let mut maps = MemMaps::default();
        let mut m = Mirror::new(true);
        m.sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        assert_eq!(maps.lookup(VrfId(0), Ipv4Addr::new(172, 17, 0, 1)).map(|a| a.rpf_port), Some(0));
        let cmds = vec![TableCommand::NextHop { id: NextHopId(10), nexthop: adj(1) }];
        t.apply_all(cmds.clone()).unwrap();
        m.sync(&mut maps, &t, &Learned::default(), Change::Commands(&cmds)).unwrap();
        assert_eq!(maps.lookup(VrfId(0), Ipv4Addr::new(172, 17, 0, 1)).map(|a| a.rpf_port), Some(1), "the group's record follows its member");
    }

    #[test]
    fn off_writes_the_tier_off() {
        let t = tables(1);
        let mut maps = MemMaps::default();
        Mirror::new(false).sync(&mut maps, &t, &Learned::default(), Change::All).unwrap();
        assert_eq!(maps.config.flags & CONFIG_ON, 0);
    }
}
