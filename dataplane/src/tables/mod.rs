//! The forwarding tables the pipeline reads: ports, per-VRF FIBs, the underlay FIB, the
//! next-hop arena, the incoming label map (ILM), the VNI map, bridge domains and neighbours.
//!
//! # Who writes, who reads
//! [`Tables`] is an immutable snapshot for readers. One writer (the config loader, the table
//! socket, later the control process) keeps its own master copy, applies [`TableCommand`]s to
//! it, and publishes a clone through [`TableHandle`]. Workers load the current snapshot once
//! per batch and never lock. A command that refers to something missing is refused with a
//! [`TableError`] and changes nothing.

mod fib;
pub mod hash;
pub mod labels;
pub mod mtrie;

use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use carrier_common::{BridgeDomainId, Label, NextHopId, PortId, Vni, VrfId};

pub use carrier_contract::command::{
    IlmAction, LabelStack, MacDest, NextHop, Port, PortRole, RouterSettings, Table, TableCommand, TtlMode, VniTarget,
    DEFAULT_MAC_TIMEOUT, DEFAULT_NEIGHBOUR_TIMEOUT,
};
pub use fib::{Fib, InterfaceAddr, Ipv4Prefix, Lpm, PrefixParseError, TrieFib};
pub use hash::FastMap;
pub use labels::{Ilm, LabelCounters};
pub use mtrie::Mtrie;

use crate::wire::MacAddr;

/// An EVPN/VXLAN bridge domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeDomain {
    /// Dense id.
    pub id: BridgeDomainId,
    /// Operator's name.
    pub name: String,
    /// The VNI this domain is carried in.
    pub vni: Vni,
    /// Local ports in the domain.
    pub ports: Vec<PortId>,
    /// Remote VTEPs that get a copy of broadcast, unknown unicast and multicast (head-end
    /// replication).
    pub flood: Vec<Ipv4Addr>,
    /// Static and EVPN type-2 MACs.
    pub macs: FastMap<MacAddr, MacDest>,
    /// Known IP→MAC bindings for ARP suppression.
    pub arp: FastMap<Ipv4Addr, MacAddr>,
}

/// A VRF.
#[derive(Clone, Debug, Default)]
pub struct Vrf {
    /// Dense id.
    pub id: VrfId,
    /// Operator's name.
    pub name: String,
    /// The VRF's routes.
    pub fib: Fib,
    /// Source address for ICMP the router sends in this VRF when no port address fits.
    pub source: Option<Ipv4Addr>,
    /// Packets and bytes forwarded are counted per prefix.
    pub prefix_counters: bool,
}

/// A command that would leave the tables inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No port with that id.
    #[error("unknown port {0}")]
    UnknownPort(PortId),
    /// No VRF with that id.
    #[error("unknown VRF {0}")]
    UnknownVrf(VrfId),
    /// No bridge domain with that id.
    #[error("unknown bridge domain {0}")]
    UnknownBridge(BridgeDomainId),
    /// No next hop with that id.
    #[error("unknown next hop {0}")]
    UnknownNextHop(NextHopId),
    /// Ids are dense: the next new one must be the current count.
    #[error("{what} id {id} is not dense (next free id is {next})")]
    NotDense {
        /// Kind of object.
        what: &'static str,
        /// Given id.
        id: u32,
        /// Expected id.
        next: u32,
    },
    /// ECMP members must be plain next hops.
    #[error("next hop {0}: an ECMP group needs at least one member and cannot contain another group")]
    BadEcmp(NextHopId),
    /// A next hop still used by a route or label.
    #[error("next hop {0} is still in use")]
    NextHopInUse(NextHopId),
    /// A reserved label in the ILM.
    #[error("label {0} is reserved (0..=15)")]
    ReservedLabel(Label),
    /// A next-hop id beyond [`MAX_NEXTHOPS`] (the arena is indexed by id).
    #[error("next hop id {0} is out of range (the limit is {MAX_NEXTHOPS})")]
    NextHopIdOutOfRange(NextHopId),
}

/// Most next hops (the arena is a vector indexed by id: a bound on what one command can make
/// the writer allocate).
pub const MAX_NEXTHOPS: usize = 1 << 22;

/// Up to four labels, without allocating (a next hop's stack, or a swap's out label).
#[derive(Clone, Copy, Debug, Default)]
struct OutLabels {
    labels: [u32; 4],
    len: usize,
}

impl OutLabels {
    fn push(&mut self, label: u32) {
        if self.len < self.labels.len() {
            self.labels[self.len] = label;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[u32] {
        &self.labels[..self.len]
    }
}

/// An immutable snapshot of every table the pipeline reads.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    /// Router-wide settings.
    pub router: RouterSettings,
    /// Ports by [`PortId`].
    pub ports: Vec<Port>,
    /// VRFs by [`VrfId`].
    pub vrfs: Vec<Vrf>,
    /// The core table resolving PEs and VTEPs.
    pub underlay: Fib,
    /// The next-hop arena by [`NextHopId`].
    pub nexthops: Vec<Option<NextHop>>,
    /// The incoming label map, an array by label.
    pub ilm: Ilm,
    /// Bridge domains by [`BridgeDomainId`].
    pub bridges: Vec<BridgeDomain>,
    /// VNIs arriving from the core.
    pub vnis: FastMap<Vni, VniTarget>,
    /// Static neighbours.
    pub neighbours: FastMap<(PortId, Ipv4Addr), MacAddr>,
    /// References to each next hop by [`NextHopId`]: routes, ILM entries and ECMP groups that
    /// point at it. Kept by [`Tables::apply`], so that removing a next hop costs O(1), not a
    /// scan of every table.
    refs: Vec<u32>,
    /// Which state this is: a number no other state of any `Tables` had ([`Tables::touch`]).
    /// A worker's cache of resolved next hops is good for one generation.
    generation: u64,
    /// Labels some next hop pushes or some ILM entry swaps in, with how many do: a worker
    /// forgets the out-counters of labels no longer here (a label per route would otherwise
    /// leave a counter, and a metric series, behind for every route that ever existed).
    pushed: labels::LabelArray<u32>,
}

/// The last generation handed out (see [`Tables::generation`]).
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Tables {
    /// Which state this is: [`Tables::apply`] (and [`Tables::touch`]) give the tables a
    /// generation no state of any `Tables` in the process had before; a copy keeps it (same
    /// content). What is derived from the tables and kept across batches (a worker's resolved
    /// next hops) is good while the generation is the same. Code that changes a field
    /// directly calls [`Tables::touch`] after.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A new generation: the tables changed outside [`Tables::apply`].
    pub fn touch(&mut self) {
        self.generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    }

    /// True when a next hop pushes `label` or an ILM entry swaps it in.
    pub fn is_pushed(&self, label: u32) -> bool {
        self.pushed.get(label).is_some()
    }

    /// The labels a next hop puts on, or an ILM entry swaps in (at most three and one).
    fn out_labels(nexthop: Option<&NextHop>, action: Option<&IlmAction>) -> OutLabels {
        let mut out = OutLabels::default();
        if let Some(NextHop::MplsPush { labels, .. }) = nexthop {
            for l in labels.as_slice() {
                out.push(l.value());
            }
        }
        if let Some(IlmAction::Swap { out: l, .. }) = action {
            out.push(l.value());
        }
        out
    }

    /// Counts the out labels of what comes in and uncounts those of what it replaces.
    fn track_pushed(&mut self, new: OutLabels, old: OutLabels) {
        for &l in new.as_slice() {
            self.pushed.update(l, |n| *n += 1);
        }
        for &l in old.as_slice() {
            self.pushed.update(l, |n| *n = n.saturating_sub(1));
        }
    }

    /// A port by id.
    pub fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(id.index())
    }

    /// A port by interface name.
    pub fn port_by_name(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// A VRF by name.
    pub fn vrf_by_name(&self, name: &str) -> Option<&Vrf> {
        self.vrfs.iter().find(|v| v.name == name)
    }

    /// The router MAC: the inner source of routed VXLAN (EVPN type-5). The configured one,
    /// else the first core port's.
    pub fn router_mac(&self) -> MacAddr {
        self.router
            .router_mac
            .or_else(|| self.ports.iter().find(|p| p.role == PortRole::Core).map(|p| p.mac))
            .unwrap_or(MacAddr::ZERO)
    }

    /// A next hop by id.
    /// Whether `ip` on `port` is the gateway of some next hop (a route goes through it).
    /// Scans the next hops: for the rare neighbour about to expire.
    pub fn is_gateway(&self, port: PortId, ip: Ipv4Addr) -> bool {
        self.nexthops.iter().flatten().any(|nh| matches!(nh, NextHop::Adjacency { port: p, via: Some(v) } if *p == port && *v == ip))
    }

    pub fn nexthop(&self, id: NextHopId) -> Option<&NextHop> {
        self.nexthops.get(id.index()).and_then(Option::as_ref)
    }

    /// The FIB a [`Table`] names.
    pub fn fib(&self, table: Table) -> Option<&Fib> {
        match table {
            Table::Vrf(v) => self.vrfs.get(v.index()).map(|v| &v.fib),
            Table::Underlay => Some(&self.underlay),
        }
    }

    fn fib_mut(&mut self, table: Table) -> Result<&mut Fib, TableError> {
        match table {
            Table::Vrf(v) => self.vrfs.get_mut(v.index()).map(|v| &mut v.fib).ok_or(TableError::UnknownVrf(v)),
            Table::Underlay => Ok(&mut self.underlay),
        }
    }

    fn check_port(&self, id: PortId) -> Result<(), TableError> {
        self.port(id).map(|_| ()).ok_or(TableError::UnknownPort(id))
    }

    fn check_vrf(&self, id: VrfId) -> Result<(), TableError> {
        self.vrfs.get(id.index()).map(|_| ()).ok_or(TableError::UnknownVrf(id))
    }

    fn check_nexthop(&self, id: NextHopId) -> Result<(), TableError> {
        self.nexthop(id).map(|_| ()).ok_or(TableError::UnknownNextHop(id))
    }

    fn bridge_mut(&mut self, id: BridgeDomainId) -> Result<&mut BridgeDomain, TableError> {
        self.bridges.get_mut(id.index()).ok_or(TableError::UnknownBridge(id))
    }

    fn dense(what: &'static str, id: usize, len: usize) -> Result<(), TableError> {
        if id > len {
            return Err(TableError::NotDense { what, id: id as u32, next: len as u32 });
        }
        Ok(())
    }

    /// How many routes, ILM entries and ECMP groups point at next hop `id`.
    pub fn nexthop_refs(&self, id: NextHopId) -> u32 {
        self.refs.get(id.index()).copied().unwrap_or(0)
    }

    fn hold(&mut self, id: NextHopId) {
        if self.refs.len() <= id.index() {
            self.refs.resize(id.index() + 1, 0);
        }
        self.refs[id.index()] += 1;
    }

    fn release(&mut self, id: Option<NextHopId>) {
        if let Some(r) = id.and_then(|id| self.refs.get_mut(id.index())) {
            *r = r.saturating_sub(1);
        }
    }

    fn ilm_nexthop(action: Option<&IlmAction>) -> Option<NextHopId> {
        match action {
            Some(IlmAction::PopForward { nexthop, .. }) => Some(*nexthop),
            _ => None,
        }
    }

    fn ecmp_members(nh: Option<&NextHop>) -> &[NextHopId] {
        match nh {
            Some(NextHop::Ecmp { members }) => members,
            _ => &[],
        }
    }

    /// Apply one command. On error nothing changed (but for the generation).
    pub fn apply(&mut self, cmd: TableCommand) -> Result<(), TableError> {
        let r = self.apply_one(cmd);
        self.touch();
        r
    }

    fn apply_one(&mut self, cmd: TableCommand) -> Result<(), TableError> {
        match cmd {
            TableCommand::Clear => *self = Tables::default(),
            TableCommand::Router(r) => self.router = r,
            TableCommand::Port(port) => {
                Self::dense("port", port.id.index(), self.ports.len())?;
                match port.role {
                    PortRole::Vrf(v) => self.check_vrf(v)?,
                    PortRole::Bridge(b) => {
                        self.bridges.get(b.index()).ok_or(TableError::UnknownBridge(b))?;
                    }
                    PortRole::Core | PortRole::Detached => {}
                }
                let id = port.id.index();
                if id == self.ports.len() {
                    self.ports.push(port);
                } else {
                    self.ports[id] = port;
                }
            }
            TableCommand::Vrf { id, name, source, prefix_counters } => {
                Self::dense("VRF", id.index(), self.vrfs.len())?;
                if id.index() == self.vrfs.len() {
                    self.vrfs.push(Vrf { id, name, fib: Fib::default(), source, prefix_counters });
                } else {
                    let vrf = &mut self.vrfs[id.index()];
                    vrf.name = name;
                    vrf.source = source;
                    vrf.prefix_counters = prefix_counters;
                }
            }
            TableCommand::NextHop { id, nexthop } => {
                match &nexthop {
                    NextHop::Adjacency { port, .. } => self.check_port(*port)?,
                    NextHop::Ecmp { members } => {
                        if members.is_empty() {
                            return Err(TableError::BadEcmp(id));
                        }
                        for m in members {
                            match self.nexthop(*m) {
                                None => return Err(TableError::UnknownNextHop(*m)),
                                Some(NextHop::Ecmp { .. }) => return Err(TableError::BadEcmp(id)),
                                Some(_) => {}
                            }
                        }
                    }
                    _ => {}
                }
                let i = id.index();
                if i >= MAX_NEXTHOPS {
                    return Err(TableError::NextHopIdOutOfRange(id));
                }
                if i >= self.nexthops.len() {
                    self.nexthops.resize(i + 1, None);
                }
                for &m in Self::ecmp_members(Some(&nexthop)) {
                    self.hold(m);
                }
                let new_labels = Self::out_labels(Some(&nexthop), None);
                let old = self.nexthops[i].replace(nexthop);
                for &m in Self::ecmp_members(old.as_ref()) {
                    self.release(Some(m));
                }
                let old_labels = Self::out_labels(old.as_ref(), None);
                self.track_pushed(new_labels, old_labels);
            }
            TableCommand::RemoveNextHop { id } => {
                self.check_nexthop(id)?;
                if self.nexthop_refs(id) > 0 {
                    return Err(TableError::NextHopInUse(id));
                }
                let old = self.nexthops[id.index()].take();
                for &m in Self::ecmp_members(old.as_ref()) {
                    self.release(Some(m));
                }
                let old_labels = Self::out_labels(old.as_ref(), None);
                self.track_pushed(OutLabels::default(), old_labels);
            }
            TableCommand::Route { table, prefix, nexthop } => {
                self.check_nexthop(nexthop)?;
                let old = self.fib_mut(table)?.insert(prefix, nexthop);
                self.hold(nexthop);
                self.release(old);
            }
            TableCommand::Withdraw { table, prefix } => {
                let old = self.fib_mut(table)?.remove(prefix);
                self.release(old);
            }
            TableCommand::Label { label, action } => {
                if label.is_reserved() {
                    return Err(TableError::ReservedLabel(label));
                }
                match &action {
                    IlmAction::PopLookup { vrf } => self.check_vrf(*vrf)?,
                    IlmAction::PopForward { vrf, nexthop } => {
                        self.check_vrf(*vrf)?;
                        self.check_nexthop(*nexthop)?;
                    }
                    IlmAction::Swap { .. } => {}
                }
                if let Some(nh) = Self::ilm_nexthop(Some(&action)) {
                    self.hold(nh);
                }
                let new_labels = Self::out_labels(None, Some(&action));
                let old = self.ilm.insert(label, action);
                self.release(Self::ilm_nexthop(old.as_ref()));
                let old_labels = Self::out_labels(None, old.as_ref());
                self.track_pushed(new_labels, old_labels);
            }
            TableCommand::RemoveLabel { label } => {
                let old = self.ilm.remove(&label);
                self.release(Self::ilm_nexthop(old.as_ref()));
                let old_labels = Self::out_labels(None, old.as_ref());
                self.track_pushed(OutLabels::default(), old_labels);
            }
            TableCommand::Neighbour { port, ip, mac } => {
                self.check_port(port)?;
                self.neighbours.insert((port, ip), mac);
            }
            TableCommand::RemoveNeighbour { port, ip } => {
                self.neighbours.remove(&(port, ip));
            }
            TableCommand::Bridge { id, name, vni, ports } => {
                Self::dense("bridge domain", id.index(), self.bridges.len())?;
                for p in &ports {
                    self.check_port(*p)?;
                }
                if id.index() == self.bridges.len() {
                    self.bridges.push(BridgeDomain { id, name, vni, ports, ..Default::default() });
                } else {
                    let bd = &mut self.bridges[id.index()];
                    bd.name = name;
                    bd.vni = vni;
                    bd.ports = ports;
                }
            }
            TableCommand::FloodList { bridge, vteps } => self.bridge_mut(bridge)?.flood = vteps,
            TableCommand::BridgeMac { bridge, mac, dest } => {
                if let MacDest::Port(p) = dest {
                    self.check_port(p)?;
                }
                self.bridge_mut(bridge)?.macs.insert(mac, dest);
            }
            TableCommand::RemoveBridgeMac { bridge, mac } => {
                self.bridge_mut(bridge)?.macs.remove(&mac);
            }
            TableCommand::ArpBinding { bridge, ip, mac } => {
                self.bridge_mut(bridge)?.arp.insert(ip, mac);
            }
            TableCommand::RemoveArpBinding { bridge, ip } => {
                self.bridge_mut(bridge)?.arp.remove(&ip);
            }
            TableCommand::VniMap { vni, target } => {
                match target {
                    VniTarget::Bridge(b) => {
                        self.bridges.get(b.index()).ok_or(TableError::UnknownBridge(b))?;
                    }
                    VniTarget::Vrf(v) => self.check_vrf(v)?,
                }
                self.vnis.insert(vni, target);
            }
            TableCommand::RemoveVni { vni } => {
                self.vnis.remove(&vni);
            }
        }
        Ok(())
    }

    /// Apply commands in order; stops at the first error and reports its index.
    pub fn apply_all(&mut self, cmds: impl IntoIterator<Item = TableCommand>) -> Result<(), (usize, TableError)> {
        for (i, cmd) in cmds.into_iter().enumerate() {
            self.apply(cmd).map_err(|e| (i, e))?;
        }
        Ok(())
    }
}

/// The published snapshot. Written by one writer with [`TableHandle::publish`]; read by
/// workers with [`TableHandle::load`] once per batch, without locks.
#[derive(Clone, Debug, Default)]
pub struct TableHandle {
    current: Arc<ArcSwap<Tables>>,
}

impl TableHandle {
    /// A handle publishing `tables`.
    pub fn new(tables: Tables) -> TableHandle {
        TableHandle { current: Arc::new(ArcSwap::from_pointee(tables)) }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Tables> {
        self.current.load_full()
    }

    /// Replace the snapshot; readers pick it up at their next batch.
    pub fn publish(&self, mut tables: Tables) {
        tables.touch();
        self.current.store(Arc::new(tables));
    }

    /// Replace the snapshot and hand back the one it replaces, which readers may still hold
    /// until their current batch ends (see [`crate::ctl::TableWriter`], which reuses it).
    pub fn swap(&self, tables: Arc<Tables>) -> Arc<Tables> {
        self.current.swap(tables)
    }
}

/// A port for tests: `p<id>`, MAC `02:00:00:00:00:<id>`, no addresses, untagged, MTU 1500.
#[cfg(test)]
pub(crate) fn test_port(id: u16, role: PortRole) -> Port {
    Port {
        id: PortId(id),
        name: format!("p{id}"),
        mac: MacAddr([2, 0, 0, 0, 0, id as u8]),
        addrs: vec![],
        role,
        proxy_arp: false,
        anti_spoof: false,
        vlan: None,
        mtu: 1500,
        host: false,
        host_rate: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(id: u16, role: PortRole) -> Port {
        test_port(id, role)
    }

    #[test]
    fn references_are_checked() {
        let mut t = Tables::default();
        assert_eq!(t.apply(TableCommand::Port(port(0, PortRole::Vrf(VrfId(0))))), Err(TableError::UnknownVrf(VrfId(0))));
        t.apply(TableCommand::Vrf { id: VrfId(0), name: "red".into(), source: None, prefix_counters: false }).unwrap();
        t.apply(TableCommand::Port(port(0, PortRole::Vrf(VrfId(0))))).unwrap();
        assert!(matches!(t.apply(TableCommand::Port(port(5, PortRole::Core))), Err(TableError::NotDense { .. })));
        let route = TableCommand::Route {
            table: Table::Vrf(VrfId(0)),
            prefix: "10.0.0.0/8".parse().unwrap(),
            nexthop: NextHopId(0),
        };
        assert_eq!(t.apply(route.clone()), Err(TableError::UnknownNextHop(NextHopId(0))));
        t.apply(TableCommand::NextHop { id: NextHopId(0), nexthop: NextHop::Blackhole }).unwrap();
        t.apply(route).unwrap();
        assert_eq!(t.apply(TableCommand::RemoveNextHop { id: NextHopId(0) }), Err(TableError::NextHopInUse(NextHopId(0))));
        let lbl = Label::new(3).unwrap();
        assert_eq!(
            t.apply(TableCommand::Label { label: lbl, action: IlmAction::PopLookup { vrf: VrfId(0) } }),
            Err(TableError::ReservedLabel(lbl))
        );
        // Found by tests/bad_input.rs: an id of 4e9 made the writer allocate 80 GB and abort.
        let far = NextHopId(4_000_000_000);
        assert_eq!(t.apply(TableCommand::NextHop { id: far, nexthop: NextHop::Blackhole }), Err(TableError::NextHopIdOutOfRange(far)));
    }

    /// The reference counts kept by `apply` equal a count over every table, through random
    /// route, label and ECMP changes; a referenced next hop cannot be removed.
    #[test]
    fn nexthop_refs_match_a_scan() {
        let mut t = Tables::default();
        t.apply(TableCommand::Vrf { id: VrfId(0), name: "red".into(), source: None, prefix_counters: false }).unwrap();
        for id in 0..4 {
            t.apply(TableCommand::NextHop { id: NextHopId(id), nexthop: NextHop::Blackhole }).unwrap();
        }
        let scan = |t: &Tables, id: NextHopId| {
            let fib = |f: &Fib| f.routes().filter(|(_, nh)| *nh == id).count();
            let ecmp = t.nexthops.iter().flatten().map(|nh| Tables::ecmp_members(Some(nh)).iter().filter(|m| **m == id).count()).sum::<usize>();
            let ilm = t.ilm.values().filter(|a| matches!(a, IlmAction::PopForward { nexthop, .. } if *nexthop == id)).count();
            (fib(&t.underlay) + t.vrfs.iter().map(|v| fib(&v.fib)).sum::<usize>() + ecmp + ilm) as u32
        };
        let mut x = 0x2545_f491_u32;
        for _ in 0..3000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let nh = NextHopId(x % 4);
            let prefix = Ipv4Prefix::new(Ipv4Addr::from(0x0a00_0000 | ((x >> 8) % 16) << 8), 24).unwrap();
            let table = if x & 0x10000 == 0 { Table::Vrf(VrfId(0)) } else { Table::Underlay };
            let label = Label::new(100 + (x >> 20) % 8).unwrap();
            let cmd = match (x >> 4) % 7 {
                0 | 1 => TableCommand::Route { table, prefix, nexthop: nh },
                2 => TableCommand::Withdraw { table, prefix },
                3 => TableCommand::Label { label, action: IlmAction::PopForward { vrf: VrfId(0), nexthop: nh } },
                4 if x & 0x40000 != 0 => TableCommand::Label { label, action: IlmAction::Swap { out: Label::new(500 + (x >> 22) % 4).unwrap(), pe: Ipv4Addr::new(10, 255, 0, 2) } },
                4 => TableCommand::RemoveLabel { label },
                5 if x & 0x20000 == 0 => TableCommand::NextHop { id: NextHopId(4 + x % 2), nexthop: NextHop::Ecmp { members: vec![nh, NextHopId((x >> 3) % 4)] } },
                5 => TableCommand::NextHop {
                    id: NextHopId(x % 4),
                    nexthop: NextHop::MplsPush { labels: LabelStack::new(&[Label::new(500 + (x >> 21) % 4).unwrap()]).unwrap(), pe: Ipv4Addr::new(10, 255, 0, 2), tc: None },
                },

                _ => TableCommand::RemoveNextHop { id: NextHopId(4 + x % 2) },
            };
            let _ = t.apply(cmd);
            for id in 0..6 {
                assert_eq!(t.nexthop_refs(NextHopId(id)), scan(&t, NextHopId(id)), "next hop {id}");
            }
            let mut pushed: std::collections::BTreeMap<u32, u32> = std::collections::BTreeMap::new();
            for l in t.nexthops.iter().flatten().flat_map(|nh| Tables::out_labels(Some(nh), None).as_slice().to_vec()).chain(t.ilm.values().flat_map(|a| Tables::out_labels(None, Some(a)).as_slice().to_vec())) {
                *pushed.entry(l).or_default() += 1;
            }
            assert_eq!(pushed, t.pushed.iter().map(|(l, n)| (l, *n)).collect(), "pushed labels");
        }
        let used = (0..4).map(NextHopId).find(|id| t.nexthop_refs(*id) > 0).unwrap();
        assert_eq!(t.apply(TableCommand::RemoveNextHop { id: used }), Err(TableError::NextHopInUse(used)));
    }

    #[test]
    fn ecmp_cannot_nest() {
        let mut t = Tables::default();
        t.apply(TableCommand::NextHop { id: NextHopId(0), nexthop: NextHop::Blackhole }).unwrap();
        t.apply(TableCommand::NextHop { id: NextHopId(1), nexthop: NextHop::Ecmp { members: vec![NextHopId(0)] } })
            .unwrap();
        assert_eq!(
            t.apply(TableCommand::NextHop { id: NextHopId(2), nexthop: NextHop::Ecmp { members: vec![NextHopId(1)] } }),
            Err(TableError::BadEcmp(NextHopId(2)))
        );
        assert_eq!(
            t.apply(TableCommand::NextHop { id: NextHopId(2), nexthop: NextHop::Ecmp { members: vec![] } }),
            Err(TableError::BadEcmp(NextHopId(2)))
        );
    }

    #[test]
    fn commands_round_trip_as_json() {
        let cmds = vec![
            TableCommand::Label { label: Label::new(1000).unwrap(), action: IlmAction::PopLookup { vrf: VrfId(1) } },
            TableCommand::NextHop {
                id: NextHopId(3),
                nexthop: NextHop::MplsPush {
                    labels: LabelStack::new(&[Label::new(1000).unwrap()]).unwrap(),
                    tc: None,
                    pe: Ipv4Addr::new(10, 255, 0, 2),
                },
            },
            TableCommand::BridgeMac {
                bridge: BridgeDomainId(0),
                mac: MacAddr([2, 0, 0, 0, 0, 9]),
                dest: MacDest::Vtep(Ipv4Addr::new(192, 0, 2, 2)),
            },
        ];
        let json = serde_json::to_string(&cmds).unwrap();
        let back: Vec<TableCommand> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cmds);
        let bad = r#"[{"op":"label","label":2000000,"action":"pop-lookup","vrf":0}]"#;
        assert!(serde_json::from_str::<Vec<TableCommand>>(bad).is_err());
    }

    #[test]
    fn snapshot_readers_keep_old_tables() {
        let handle = TableHandle::new(Tables::default());
        let before = handle.load();
        let mut next = (*before).clone();
        next.apply(TableCommand::Vrf { id: VrfId(0), name: "red".into(), source: None, prefix_counters: false }).unwrap();
        handle.publish(next);
        assert!(before.vrfs.is_empty());
        assert_eq!(handle.load().vrfs.len(), 1);
    }
}
