//! The RIB: Adj-RIB-In per peer, VRF import by route target, the decision process, local
//! routes (the VRFs' connected and static routes, EVPN type-3 per instance), labels, and the
//! Adj-RIB-Out diff that decides what to send to each peer. Sans-IO: the daemon feeds it
//! events and asks it what to send and what to program.
//!
//! Every change marks what it touched: the destination (a VPN or IPv4 unicast prefix) of each
//! path that came, went or changed, or the EVPN bridge state. A flush ([`Rib::changes`])
//! recomputes only those destinations, through an index from prefix to the paths that reach
//! it, and hands the [`Delta`] to the compiler ([`crate::fib`]): work per flush follows the
//! change, not the size of the table. [`Rib::desired`] computes the whole state from scratch;
//! it is the reference the incremental path is tested against.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carrier_common::{BridgeDomainId, VrfId};
use carrier_contract::command::{IlmAction, LabelStack, MacDest, NextHop, Table};
use carrier_contract::Ipv4Prefix;
use carrier_dataplane::tables::{Lpm, Tables};
use carrier_contract::MacAddr;

use crate::bgp::msg::{
    encapsulation_community, Family, LabelField, Nlri, Origin, PathAttributes, PmsiTunnel,
    RouteTarget, Update, ENCAP_VXLAN,
};
use crate::config::{ControlConfig, LabelMode};
use crate::fib::{Compiler, Delta, EvpnState, RouteTo};
use crate::labels::{Exhausted, LabelAllocator};

mod show;
pub use show::label_mode_name;

/// Where a path came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Originated here.
    Local,
    /// Learned from the peer at this address.
    Peer(Ipv4Addr),
}

/// One path to a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// Origin of the path.
    pub source: Source,
    /// Attributes.
    pub attrs: Arc<PathAttributes>,
    /// The peer's BGP identifier (tie-break).
    pub peer_router_id: Ipv4Addr,
    /// Learned over eBGP.
    pub ebgp: bool,
    /// Kept through a graceful restart, not yet refreshed.
    pub stale: bool,
}

impl Path {
    fn local_pref(&self) -> u32 {
        self.attrs.local_pref.unwrap_or(100)
    }

    /// The decision process key, smaller is better (RFC 4271 §9.1.2.2, with MED always
    /// compared): local pref, AS path length, origin, MED, eBGP over iBGP, router id.
    fn rank(&self) -> (std::cmp::Reverse<u32>, usize, Origin, u32, bool, Ipv4Addr) {
        (
            std::cmp::Reverse(self.local_pref()),
            self.attrs.as_path.len(),
            self.attrs.origin,
            self.attrs.med.unwrap_or(0),
            !self.ebgp,
            self.peer_router_id,
        )
    }

    /// Equal for multipath: everything but the router id.
    fn multipath_rank(&self) -> (std::cmp::Reverse<u32>, usize, Origin, u32, bool) {
        let r = self.rank();
        (r.0, r.1, r.2, r.3, r.4)
    }
}

/// A peer's session facts the RIB needs.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// Its AS.
    pub asn: u32,
    /// Its BGP identifier.
    pub router_id: Ipv4Addr,
    /// eBGP session.
    pub ebgp: bool,
    /// LOCAL_PREF override for its routes.
    pub local_pref: Option<u32>,
    /// Graceful restart time it advertised, if any.
    pub restart_time: Option<u16>,
}

#[derive(Debug, Default)]
struct PeerRib {
    /// The NLRI as received (with its labels), found by its [`route_key`], → the path.
    routes: HashMap<Received, Path>,
    /// When its stale routes are swept if it has not come back.
    stale_deadline: Option<Instant>,
}

/// A route in a peer's Adj-RIB-In as it was received (with its labels), compared and hashed by
/// its [`route_key`]: one announced again with other labels replaces it. (The NLRI is kept once,
/// not as a key and again as received: a 1M-route RIB is ~100 MB smaller.)
#[derive(Clone, Debug)]
struct Received(Nlri);

impl PartialEq for Received {
    fn eq(&self, other: &Self) -> bool {
        route_key(&self.0) == route_key(&other.0)
    }
}

impl Eq for Received {}

impl std::hash::Hash for Received {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        route_key(&self.0).hash(state);
    }
}

/// What the RIB counted (for logs and metrics).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RibStats {
    /// VPN and EVPN routes whose next hop does not resolve in the underlay.
    pub unresolved: usize,
    /// Routes dropped because labels ran out.
    pub label_exhausted: usize,
    /// Paths swept after a graceful restart.
    pub stale_swept: usize,
    /// VPNv4 paths not used because their label is reserved (0..=15 except 3, implicit null,
    /// which means "no label"; RFC 3032 §2.1), counted at each flush that looked at them.
    pub reserved_label: usize,
    /// Routes received in a family their session did not negotiate, ignored (all peers).
    pub wrong_family: usize,
}

/// A destination a path leads to, as the flush recomputes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Dest {
    /// An IPv4 unicast prefix (the underlay).
    Unicast(Ipv4Prefix),
    /// A VPN prefix (VPNv4 of any RD, EVPN type 5), for every VRF that imports it.
    Vpn(Ipv4Prefix),
}

impl Dest {
    /// The destination of a route; `None` for EVPN type 2 and 3 (bridge state).
    fn of(n: &Nlri) -> Option<Dest> {
        match n {
            Nlri::Ipv4 { prefix } => Some(Dest::Unicast(*prefix)),
            Nlri::Vpnv4 { prefix, .. } => Some(Dest::Vpn(*prefix)),
            Nlri::EvpnPrefix(r) => Some(Dest::Vpn(r.prefix)),
            Nlri::EvpnMacIp(_) | Nlri::EvpnImet { .. } => None,
        }
    }
}

/// What the changes since the last flush touched.
#[derive(Debug, Default)]
struct Dirty {
    dests: HashSet<Dest>,
    evpn: bool,
    /// Everything (the first flush, a new policy).
    all: bool,
}

/// How a route key changed in a peer's Adj-RIB-In.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Added,
    Replaced,
    Removed,
}

/// A path in the index: the peer holding it, and what sets its route key apart from the other
/// keys to the same destination (the prefix is the destination's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PathRef {
    peer: Ipv4Addr,
    kind: KeyKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Ipv4,
    Vpnv4(crate::bgp::msg::RouteDistinguisher),
    EvpnPrefix(crate::bgp::msg::RouteDistinguisher, u32),
}

impl PathRef {
    /// The reference to `peer`'s route `key` (a [`route_key`]); `None` for keys without a
    /// [`Dest`].
    fn of(peer: Ipv4Addr, key: &Nlri) -> Option<PathRef> {
        let kind = match key {
            Nlri::Ipv4 { .. } => KeyKind::Ipv4,
            Nlri::Vpnv4 { rd, .. } => KeyKind::Vpnv4(*rd),
            Nlri::EvpnPrefix(r) => KeyKind::EvpnPrefix(r.rd, r.eth_tag),
            Nlri::EvpnMacIp(_) | Nlri::EvpnImet { .. } => return None,
        };
        Some(PathRef { peer, kind })
    }

    /// The route key this refers to, toward `dest`: what [`route_key`] gave.
    fn key(&self, dest: Dest) -> Nlri {
        let (Dest::Unicast(prefix) | Dest::Vpn(prefix)) = dest;
        match self.kind {
            KeyKind::Ipv4 => Nlri::Ipv4 { prefix },
            KeyKind::Vpnv4(rd) => Nlri::Vpnv4 { rd, label: LabelField(0), prefix },
            KeyKind::EvpnPrefix(rd, eth_tag) => {
                Nlri::EvpnPrefix(Box::new(crate::bgp::msg::EvpnPrefix { rd, esi: [0; 10], eth_tag, prefix, gateway: Ipv4Addr::UNSPECIFIED, label: LabelField(0) }))
            }
        }
    }
}

/// The paths to one destination: one (nearly always) without a heap allocation, more in a
/// vector.
#[derive(Clone, Debug)]
enum Paths {
    One(PathRef),
    Many(Vec<PathRef>),
}

impl Paths {
    fn as_slice(&self) -> &[PathRef] {
        match self {
            Paths::One(r) => std::slice::from_ref(r),
            Paths::Many(v) => v,
        }
    }

    fn push(&mut self, r: PathRef) {
        match self {
            Paths::One(a) => *self = Paths::Many(vec![*a, r]),
            Paths::Many(v) => v.push(r),
        }
    }

    /// Takes `r` out; true when no path is left.
    fn remove(&mut self, r: PathRef) -> bool {
        match self {
            Paths::One(a) => *a == r,
            Paths::Many(v) => {
                v.retain(|x| *x != r);
                if let [one] = v.as_slice() {
                    *self = Paths::One(*one);
                    return false;
                }
                v.is_empty()
            }
        }
    }
}

/// Paths by destination: who holds a path to each prefix, under which route key.
#[derive(Debug, Default)]
struct PathIndex {
    by_dest: HashMap<Dest, Paths>,
    dirty: Dirty,
}

impl PathIndex {
    /// Note that `peer`'s route `key` changed.
    fn note(&mut self, peer: Ipv4Addr, key: &Nlri, change: Change) {
        let Some(dest) = Dest::of(key) else {
            self.dirty.evpn = true;
            return;
        };
        self.dirty.dests.insert(dest);
        let Some(r) = PathRef::of(peer, key) else { return };
        match change {
            Change::Added => match self.by_dest.entry(dest) {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().push(r),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Paths::One(r));
                }
            },
            Change::Replaced => {}
            Change::Removed => {
                if self.by_dest.get_mut(&dest).is_some_and(|v| v.remove(r)) {
                    self.by_dest.remove(&dest);
                }
            }
        }
    }

    /// Remove the routes of `rib` for which `gone` holds, noting each.
    fn sweep(&mut self, peer: Ipv4Addr, rib: &mut PeerRib, gone: impl Fn(&Path) -> bool) -> usize {
        let before = rib.routes.len();
        rib.routes.retain(|k, p| {
            let remove = gone(p);
            if remove {
                self.note(peer, &route_key(&k.0), Change::Removed);
            }
            !remove
        });
        before - rib.routes.len()
    }
}

/// What the last flush handed to the compiler, to compare the next one against. The VPN
/// routes are not here: the compiler's route map holds them (see [`Rib::changes`]).
#[derive(Debug, Default)]
struct Handed {
    /// IPv4 unicast routes: prefix → gateway.
    underlay: BTreeMap<Ipv4Prefix, Ipv4Addr>,
    /// The control config's static VRF routes: (VRF, prefix) → CE.
    statics: BTreeMap<(VrfId, Ipv4Prefix), Ipv4Addr>,
    /// Local labels.
    labels: BTreeMap<u32, (VrfId, Option<Ipv4Addr>)>,
    /// EVPN bridge state.
    evpn: EvpnState,
}

/// The dataplane's config as the control process runs it.
#[derive(Debug, Clone)]
pub struct RunningDataplane {
    /// The parsed config (its dataplane sections).
    pub config: carrier_dataplane::config::Config,
    /// What it compiles to: the head of every `replace` the control process sends.
    pub commands: Vec<carrier_dataplane::tables::TableCommand>,
}

/// The RIB.
#[derive(Debug)]
pub struct Rib {
    cfg: Arc<ControlConfig>,
    base: Arc<Tables>,
    /// The dataplane's config and the table commands it compiles to (what `base` was built
    /// from, the head of every `replace`); `None` in tests that give only tables.
    dataplane: Option<RunningDataplane>,
    peers: BTreeMap<Ipv4Addr, (PeerInfo, PeerRib)>,
    labels: LabelAllocator<Holder>,
    /// What each peer was last sent: [`route_key`] → the NLRI as sent and its attributes.
    sent: HashMap<Ipv4Addr, HashMap<Nlri, (Nlri, Arc<PathAttributes>)>>,
    /// Paths by destination, and what changed since the last flush.
    index: PathIndex,
    /// What the last flush handed on.
    handed: Handed,
    /// The configured VRFs that exist in the dataplane, with their import route targets.
    imports: Vec<(VrfId, Vec<RouteTarget>)>,
    /// Counters.
    pub stats: RibStats,
}

/// What a label stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LabelKey {
    /// Per-VRF label.
    Vrf(String),
    /// Per-next-hop label: VRF and CE address.
    NextHop(String, Ipv4Addr),
    /// Per-prefix label.
    Prefix(String, Ipv4Prefix),
}

/// What the label allocator holds a label for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Holder {
    /// Local routes.
    Route(LabelKey),
    /// Nothing: a label passed over while taking over the dataplane's labels
    /// ([`Rib::adopt_labels`]), released into hold-down at once.
    PassedOver(u32),
}

/// The part of an NLRI that names the route. Labels, and in EVPN routes the ESI and the
/// gateway, are the route's attributes, not its name: an announcement with another label
/// replaces the route (RFC 8277 §2, RFC 7432 §7.2, RFC 9136 §3.1), and a withdrawal matches
/// whatever its label field holds (RFC 8277 §2.4: 0x800000 by convention, ignored on receipt).
pub fn route_key(n: &Nlri) -> Nlri {
    match n {
        Nlri::Vpnv4 { rd, prefix, .. } => Nlri::Vpnv4 { rd: *rd, label: LabelField(0), prefix: *prefix },
        Nlri::EvpnMacIp(r) => Nlri::EvpnMacIp(Box::new(crate::bgp::msg::EvpnMacIp {
            rd: r.rd,
            esi: [0; 10],
            eth_tag: r.eth_tag,
            mac: r.mac,
            ip: r.ip,
            label1: LabelField(0),
            label2: None,
        })),
        Nlri::EvpnPrefix(r) => Nlri::EvpnPrefix(Box::new(crate::bgp::msg::EvpnPrefix {
            rd: r.rd,
            esi: [0; 10],
            eth_tag: r.eth_tag,
            prefix: r.prefix,
            gateway: Ipv4Addr::UNSPECIFIED,
            label: LabelField(0),
        })),
        Nlri::Ipv4 { .. } | Nlri::EvpnImet { .. } => n.clone(),
    }
}

/// A local VRF route to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRoute {
    /// VRF name.
    pub vrf: String,
    /// Prefix.
    pub prefix: Ipv4Prefix,
    /// CE next hop for static routes; `None` for connected.
    pub via: Option<Ipv4Addr>,
}

impl Rib {
    /// A RIB over the dataplane's base tables.
    pub fn new(cfg: Arc<ControlConfig>, base: Arc<Tables>) -> Rib {
        let l = &cfg.labels;
        let labels = LabelAllocator::new(l.first, l.last, Duration::from_secs(l.hold_down));
        let mut rib = Rib {
            cfg,
            base,
            dataplane: None,
            peers: BTreeMap::new(),
            labels,
            sent: HashMap::new(),
            index: PathIndex::default(),
            handed: Handed::default(),
            imports: vec![],
            stats: RibStats::default(),
        };
        rib.policy_changed();
        rib
    }

    /// After a new configuration: re-derive the import table, and recompute everything at
    /// the next flush.
    fn policy_changed(&mut self) {
        let base = &self.base;
        self.imports = self.cfg.vrfs.iter().filter_map(|v| Some((base.vrf_by_name(&v.name)?.id, v.import.clone()))).collect();
        self.index.dirty.all = true;
    }

    /// Take a new configuration's VRF and EVPN policy (RDs, route targets, redistribution,
    /// statics) live: the next `desired`/`advertisements` re-import and re-export with it.
    /// Neighbours, labels and the BGP identity need a restart; a change there is reported.
    pub fn reconfigure(&mut self, new: Arc<ControlConfig>) -> Result<(), String> {
        let (old, newc) = (&self.cfg, &new);
        if old.bgp.asn != newc.bgp.asn || old.bgp.router_id != newc.bgp.router_id {
            return Err("the BGP AS or router id changed: restart carrier-control".into());
        }
        if old.labels.first != newc.labels.first || old.labels.last != newc.labels.last {
            return Err("the label range changed: restart carrier-control".into());
        }
        if old.bgp.listen != newc.bgp.listen || old.bgp.port != newc.bgp.port {
            return Err("the BGP listen address or port changed: restart carrier-control".into());
        }
        self.cfg = new;
        self.policy_changed();
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &ControlConfig {
        &self.cfg
    }

    /// The dataplane's base tables.
    pub fn base(&self) -> &Tables {
        &self.base
    }

    /// Remember the dataplane config `base` was compiled from.
    pub fn with_dataplane(mut self, dataplane: RunningDataplane) -> Rib {
        self.dataplane = Some(dataplane);
        self
    }

    /// The dataplane config the base tables were compiled from, when known.
    pub fn dataplane(&self) -> Option<&RunningDataplane> {
        self.dataplane.as_ref()
    }

    /// The dataplane's base tables, shared.
    pub fn base_arc(&self) -> Arc<Tables> {
        self.base.clone()
    }

    /// Take a new dataplane config (VRFs added or removed, ports re-attached): its tables
    /// become the base, and the next flush recomputes everything over them (the rib task
    /// sees the new base and starts its compiler again over it).
    pub fn rebase(&mut self, dataplane: RunningDataplane, base: Arc<Tables>) {
        self.base = base;
        self.dataplane = Some(dataplane);
        // Handed on over the old base: all of it is handed again (VRF ids, next-hop ids and
        // connected subnets may have changed).
        self.handed = Handed::default();
        self.policy_changed();
    }

    /// A session came up. Stale routes of a restarting peer stay until its End-of-RIB.
    pub fn peer_up(&mut self, addr: Ipv4Addr, info: PeerInfo) {
        let entry = self.peers.entry(addr).or_insert_with(|| (info.clone(), PeerRib::default()));
        entry.0 = info;
        self.sent.remove(&addr);
    }

    /// A session went down. With `graceful` (RFC 4724 helper) its routes are kept as stale
    /// until it comes back and sends End-of-RIB, or its restart time passes.
    pub fn peer_down(&mut self, addr: Ipv4Addr, graceful: bool, now: Instant) {
        self.sent.remove(&addr);
        let Some((info, rib)) = self.peers.get_mut(&addr) else { return };
        match (graceful, info.restart_time) {
            (true, Some(t)) => {
                for p in rib.routes.values_mut() {
                    p.stale = true;
                }
                rib.stale_deadline = Some(now + Duration::from_secs(u64::from(t)));
            }
            _ => {
                self.index.sweep(addr, rib, |_| true);
                rib.stale_deadline = None;
            }
        }
    }

    /// A neighbor was removed from the configuration: its routes are withdrawn (no graceful
    /// restart for a peer that is gone) and the RIB forgets it.
    pub fn forget_peer(&mut self, addr: Ipv4Addr, now: Instant) {
        self.peer_down(addr, false, now);
        self.peers.remove(&addr);
    }

    /// Forget what a peer was sent, so that the next flush sends it everything again
    /// (ROUTE-REFRESH, RFC 2918).
    pub fn resend(&mut self, addr: Ipv4Addr) {
        self.sent.remove(&addr);
    }

    /// End-of-RIB from a peer: its routes still stale are gone (RFC 4724 §4.2).
    pub fn end_of_rib(&mut self, addr: Ipv4Addr) {
        if let Some((_, rib)) = self.peers.get_mut(&addr) {
            self.stats.stale_swept += self.index.sweep(addr, rib, |p| p.stale);
            rib.stale_deadline = None;
        }
    }

    /// Sweep stale routes whose restart time passed; true if anything changed.
    pub fn expire_stale(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for (addr, (_, rib)) in self.peers.iter_mut() {
            if rib.stale_deadline.is_some_and(|d| now >= d) {
                self.stats.stale_swept += self.index.sweep(*addr, rib, |p| p.stale);
                rib.stale_deadline = None;
                changed = true;
            }
        }
        changed
    }

    /// Apply an UPDATE from a peer. Returns the number of prefixes it now holds.
    pub fn update(&mut self, addr: Ipv4Addr, update: Update) -> usize {
        let Some((info, rib)) = self.peers.get_mut(&addr) else { return 0 };
        for n in update.withdrawn {
            let key = route_key(&n);
            if rib.routes.remove(&Received(n)).is_some() {
                self.index.note(addr, &key, Change::Removed);
            }
        }
        if !update.announced.is_empty() {
            let mut attrs = update.attributes;
            if let Some(lp) = info.local_pref {
                attrs.local_pref = Some(lp);
            } else if info.ebgp {
                attrs.local_pref = None;
            }
            // A route reflected back to us (RFC 4456 §8) or with our AS in the path is ignored.
            let looped = attrs.originator_id == Some(self.cfg.bgp.router_id) || (info.ebgp && attrs.as_path.contains(&self.cfg.bgp.asn));
            if looped {
                return rib.routes.len();
            }
            let attrs = Arc::new(attrs);
            for n in update.announced {
                let path = Path { source: Source::Peer(addr), attrs: attrs.clone(), peer_router_id: info.router_id, ebgp: info.ebgp, stale: false };
                let key = route_key(&n);
                // Removed first: `insert` would keep the old key, with the old labels.
                let change = if rib.routes.remove(&Received(key.clone())).is_some() { Change::Replaced } else { Change::Added };
                self.index.note(addr, &key, change);
                rib.routes.insert(Received(n), path);
            }
        }
        rib.routes.len()
    }

    /// Every learned path, for `show`.
    pub fn learned(&self) -> impl Iterator<Item = (&Nlri, &Path)> {
        self.peers.values().flat_map(|(_, rib)| rib.routes.iter().map(|(n, p)| (&n.0, p)))
    }

    fn vrf_cfg(&self, name: &str) -> Option<&crate::config::VrfConfig> {
        self.cfg.vrfs.iter().find(|v| v.name == name)
    }

    /// The local routes of each configured VRF that are exported: connected subnets and static
    /// routes of the dataplane config, plus the control config's statics.
    pub fn local_routes(&self) -> Vec<LocalRoute> {
        let mut out = vec![];
        // A VRF without an RD is local: nothing of it is exported (nor labelled).
        for v in self.cfg.vrfs.iter().filter(|v| v.rd.is_some()) {
            let Some(vrf) = self.base.vrf_by_name(&v.name) else { continue };
            for (prefix, nh) in vrf.fib.routes() {
                match self.base.nexthop(nh) {
                    Some(NextHop::Adjacency { via: None, .. }) if v.redistribute_connected => {
                        out.push(LocalRoute { vrf: v.name.clone(), prefix, via: None })
                    }
                    Some(NextHop::Adjacency { via: Some(via), .. }) if v.redistribute_static => {
                        out.push(LocalRoute { vrf: v.name.clone(), prefix, via: Some(*via) })
                    }
                    _ => {}
                }
            }
            if v.redistribute_static {
                for s in &v.statics {
                    out.push(LocalRoute { vrf: v.name.clone(), prefix: s.prefix, via: Some(s.via) });
                }
            }
        }
        out
    }

    fn label_key(&self, r: &LocalRoute) -> LabelKey {
        match (self.cfg.labels.mode, r.via) {
            (LabelMode::PerVrf, _) | (LabelMode::PerNexthop, None) => LabelKey::Vrf(r.vrf.clone()),
            (LabelMode::PerNexthop, Some(via)) => LabelKey::NextHop(r.vrf.clone(), via),
            (LabelMode::PerPrefix, _) => LabelKey::Prefix(r.vrf.clone(), r.prefix),
        }
    }

    /// Allocate (or find) the labels of the local routes; frees labels no route uses any more.
    pub fn local_labels(&mut self, now: Instant) -> Vec<(LocalRoute, Result<u32, Exhausted>)> {
        let routes = self.local_routes();
        let keys: Vec<LabelKey> = routes.iter().map(|r| self.label_key(r)).collect();
        let keep: std::collections::HashSet<LabelKey> = keys.iter().cloned().collect();
        self.labels.retain(now, |h| matches!(h, Holder::Route(k) if keep.contains(k)));
        let mut out = vec![];
        for (r, k) in routes.into_iter().zip(keys) {
            let l = self.labels.get(&Holder::Route(k), now);
            if l.is_err() {
                self.stats.label_exhausted += 1;
            }
            out.push((r, l));
        }
        out
    }

    /// The labels in use and what they stand for.
    pub fn labels_in_use(&self) -> Vec<(LabelKey, u32)> {
        let mut v: Vec<_> = self
            .labels
            .in_use()
            .filter_map(|(h, l)| match h {
                Holder::Route(k) => Some((k.clone(), l)),
                Holder::PassedOver(_) => None,
            })
            .collect();
        v.sort_by_key(|(_, l)| *l);
        v
    }

    /// Take over the labels an earlier run of this process left in the dataplane's ILM, so that
    /// a restart does not renumber them: remote PEs keep sending with the labels they learned,
    /// and until they learn new ones a changed label would drop their traffic — or deliver it
    /// to another VRF if the label went to that VRF.
    ///
    /// A pop-and-look-up label of the configured range goes back to what it stands for: its
    /// VRF (per-VRF labels, and the connected routes' label in per-next-hop mode), or in
    /// per-prefix mode one of the VRF's local prefixes (a VRF's prefix labels all forward
    /// alike, so no traffic can tell which). Other labels of the range — per-CE labels, whose
    /// next hop the ILM names by an id of the earlier run; labels of a VRF no longer exported —
    /// go into hold-down, so that nothing else gets them while remote PEs may still use them.
    /// Labels of the dataplane's own config are left alone.
    ///
    /// Call it before the first flush; once labels are allocated it does nothing. Returns how
    /// many labels were kept.
    pub fn adopt_labels(&mut self, ilm: &[(u32, IlmAction)], now: Instant) -> usize {
        if self.labels.in_use().next().is_some() {
            return 0;
        }
        let (first, last) = (self.cfg.labels.first, self.cfg.labels.last);
        let mut found: BTreeMap<u32, &IlmAction> = BTreeMap::new();
        for (label, action) in ilm {
            let static_label = carrier_common::Label::new(*label).is_some_and(|l| self.base.ilm.contains_key(&l));
            if (first..=last).contains(label) && !static_label {
                found.insert(*label, action);
            }
        }
        let Some(&highest) = found.keys().next_back() else { return 0 };
        // Keys of the local routes, in order, each once.
        let mut wanted: Vec<LabelKey> = vec![];
        for r in self.local_routes() {
            let k = self.label_key(&r);
            if !wanted.contains(&k) {
                wanted.push(k);
            }
        }
        let mut claims: HashMap<u32, LabelKey> = HashMap::new();
        for (label, action) in &found {
            let IlmAction::PopLookup { vrf } = action else { continue };
            let Some(name) = self.base.vrfs.iter().find(|v| v.id == *vrf).map(|v| v.name.as_str()) else { continue };
            let pops_into = |k: &LabelKey| matches!(k, LabelKey::Vrf(v) | LabelKey::Prefix(v, _) if v == name);
            if let Some(i) = wanted.iter().position(pops_into) {
                claims.insert(*label, wanted.remove(i));
            }
        }
        // The allocator is fresh: it hands out first, first + 1, ... in turn. Take every label
        // up to the highest found, for its key or for nobody, then release the latter.
        for label in first..=highest {
            let holder = claims.get(&label).map_or(Holder::PassedOver(label), |k| Holder::Route(k.clone()));
            let got = self.labels.get(&holder, now);
            debug_assert_eq!(got, Ok(label), "a fresh allocator hands labels out in order");
        }
        self.labels.retain(now, |h| matches!(h, Holder::Route(_)));
        claims.len()
    }

    /// The VNI of a dataplane bridge.
    fn bridge_vni(&self, bridge: &str) -> Option<(BridgeDomainId, u32)> {
        self.base.bridges.iter().find(|b| b.name == bridge).map(|b| (b.id, b.vni.value()))
    }

    fn auto_rt(&self, vni: u32) -> RouteTarget {
        let asn = self.cfg.bgp.asn;
        let text = if asn <= 0xffff { format!("{asn}:{vni}") } else { format!("{asn}:{}", vni & 0xffff) };
        text.parse().unwrap_or(RouteTarget([0, 2, 0, 0, 0, 0, 0, 0]))
    }

    fn evpn_rts(&self, e: &crate::config::EvpnConfig, vni: u32) -> (Vec<RouteTarget>, Vec<RouteTarget>) {
        let auto = self.auto_rt(vni);
        let import = if e.import.is_empty() { vec![auto] } else { e.import.clone() };
        let export = if e.export.is_empty() { vec![auto] } else { e.export.clone() };
        (import, export)
    }

    /// The best path(s) per destination among paths whose route targets match `import`.
    ///
    /// Deterministic whatever the order of `candidates`: equal ranks fall to the lower peer
    /// address (RFC 4271 §9.1.2.2 g), then to the lower route (RD, label); multipath members
    /// come in that order too.
    fn select<'a>(&self, mut candidates: Vec<(&'a Nlri, &'a Path)>) -> Vec<(&'a Nlri, &'a Path)> {
        decision_order(&mut candidates);
        let Some(best) = candidates.first().copied() else { return vec![] };
        if !self.cfg.bgp.multipath {
            return vec![best];
        }
        let r = best.1.multipath_rank();
        candidates.into_iter().filter(|(_, p)| p.multipath_rank() == r).collect()
    }

    /// True when `addr` resolves in the dataplane's underlay.
    pub fn resolves(&self, addr: Ipv4Addr) -> bool {
        self.base.underlay.lookup(addr).is_some()
    }

    /// True when `addr` resolves in the dataplane's underlay or over an IPv4 unicast route the
    /// last flush handed on.
    fn resolves_now(&self, addr: Ipv4Addr) -> bool {
        self.resolves(addr) || self.handed.underlay.keys().any(|u| u.contains(addr))
    }
}

/// Sort paths best first: by the decision process's rank, then (deterministic whatever the
/// order they came in) by peer address and route.
fn decision_order(candidates: &mut [(&Nlri, &Path)]) {
    candidates.sort_by(|(an, ap), (bn, bp)| ap.rank().cmp(&bp.rank()).then(ap.source.cmp(&bp.source)).then(an.cmp(bn)));
}

/// The desired state compiled from the RIB.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Desired {
    /// VRF routes: VRF → prefix → next hops (several = ECMP).
    pub vrf_routes: BTreeMap<VrfId, BTreeMap<Ipv4Prefix, Vec<NextHop>>>,
    /// Underlay routes learned over IPv4 unicast: prefix → gateway.
    pub underlay: BTreeMap<Ipv4Prefix, Ipv4Addr>,
    /// Incoming labels: label → VRF and optional CE next hop.
    pub labels: BTreeMap<u32, (VrfId, Option<Ipv4Addr>)>,
    /// Bridge flood lists.
    pub flood: BTreeMap<BridgeDomainId, BTreeSet<Ipv4Addr>>,
    /// Bridge MACs behind remote VTEPs.
    pub macs: BTreeMap<(BridgeDomainId, MacAddr), Ipv4Addr>,
    /// ARP suppression bindings.
    pub arp: BTreeMap<(BridgeDomainId, Ipv4Addr), MacAddr>,
    /// Static VRF routes from the control config: VRF → prefix → CE.
    pub statics: BTreeMap<VrfId, BTreeMap<Ipv4Prefix, Ipv4Addr>>,
}

/// True when a path can be used at all: a VPNv4 label must be an ordinary label or implicit
/// null (RFC 3032 §2.1); explicit null and the other reserved values cannot carry a VPN route.
fn usable(n: &Nlri) -> bool {
    match n {
        Nlri::Vpnv4 { label, .. } => {
            let l = label.as_mpls();
            l == carrier_common::Label::IMPLICIT_NULL.value() || l > 15
        }
        _ => true,
    }
}

impl Rib {
    /// The local labels and the control config's static VRF routes (few: recomputed whole).
    #[expect(clippy::type_complexity, reason = "two plain maps, named where they are used")]
    fn local_state(&mut self, now: Instant) -> (BTreeMap<u32, (VrfId, Option<Ipv4Addr>)>, BTreeMap<(VrfId, Ipv4Prefix), Ipv4Addr>) {
        let (mut labels, mut statics) = (BTreeMap::new(), BTreeMap::new());
        for (r, label) in self.local_labels(now) {
            let Some(vrf) = self.base.vrf_by_name(&r.vrf).map(|v| v.id) else { continue };
            if let (Some(via), true) = (r.via, self.vrf_cfg(&r.vrf).is_some_and(|v| v.statics.iter().any(|s| s.prefix == r.prefix))) {
                statics.insert((vrf, r.prefix), via);
            }
            if let Ok(label) = label {
                let ce = match self.cfg.labels.mode {
                    LabelMode::PerNexthop => r.via,
                    _ => None,
                };
                labels.insert(label, (vrf, ce));
            }
        }
        (labels, statics)
    }

    /// The best IPv4 unicast path's gateway among `cands`, when it resolves in the base
    /// underlay.
    fn best_gateway(&self, cands: Vec<(&Nlri, &Path)>) -> Result<Option<Ipv4Addr>, ()> {
        let Some((_, best)) = self.select(cands).first().copied() else { return Ok(None) };
        match best.attrs.next_hop {
            Some(nh) if self.resolves(nh) => Ok(Some(nh)),
            _ => Err(()),
        }
    }

    /// The next hops of one VRF's route among the paths `cands` it imports; unresolved and
    /// unusable paths are counted in `stats`.
    fn vrf_hops(&self, cands: Vec<(&Nlri, &Path)>, resolves: &mut impl FnMut(Ipv4Addr) -> bool, stats: &mut RibStats) -> Vec<NextHop> {
        let (usable_paths, reserved): (Vec<_>, Vec<_>) = cands.into_iter().partition(|(n, _)| usable(n));
        stats.reserved_label += reserved.len();
        let mut hops = vec![];
        for (n, p) in self.select(usable_paths) {
            let Some(nh) = p.attrs.next_hop else { continue };
            if !resolves(nh) {
                stats.unresolved += 1;
                continue;
            }
            match n {
                Nlri::Vpnv4 { label, .. } => {
                    let label = label.as_mpls();
                    // Implicit null: the remote PE wants the packet without a label.
                    let stack = if label == carrier_common::Label::IMPLICIT_NULL.value() {
                        LabelStack::new(&[])
                    } else {
                        carrier_common::Label::new(label).and_then(|l| LabelStack::new(&[l]))
                    };
                    let Some(labels) = stack else { continue };
                    hops.push(NextHop::MplsPush { labels, tc: None, pe: nh });
                }
                Nlri::EvpnPrefix(route) => {
                    let crate::bgp::msg::EvpnPrefix { label, .. } = &**route;
                    let Some(vni) = carrier_common::Vni::new(label.as_vni()) else { continue };
                    hops.push(NextHop::Vxlan { vtep: nh, vni, router_mac: p.attrs.router_mac() });
                }
                _ => {}
            }
        }
        hops
    }

    /// EVPN type 2 and 3 routes → bridge domains by import RT.
    fn evpn_state(&self) -> EvpnState {
        let mut e = EvpnState::default();
        for cfg in &self.cfg.evpn {
            let Some((bd, vni)) = self.bridge_vni(&cfg.bridge) else { continue };
            let (import, _) = self.evpn_rts(cfg, vni);
            for (n, p) in self.learned() {
                if !matches!(n, Nlri::EvpnImet { .. } | Nlri::EvpnMacIp(_)) || !p.attrs.route_targets().any(|rt| import.contains(&rt)) {
                    continue;
                }
                match n {
                    Nlri::EvpnImet { originator, .. } => {
                        let vtep = p.attrs.pmsi_tunnel.map_or(*originator, |t| t.endpoint);
                        e.flood.entry(bd).or_default().insert(vtep);
                    }
                    Nlri::EvpnMacIp(route) => {
                        let crate::bgp::msg::EvpnMacIp { mac, ip, .. } = &**route;
                        let Some(nh) = p.attrs.next_hop else { continue };
                        e.macs.insert((bd, *mac), nh);
                        if let Some(ip) = ip {
                            e.arp.insert((bd, *ip), *mac);
                        }
                    }
                    _ => {}
                }
            }
        }
        e
    }

    /// The paths to `dest`, through the index.
    fn paths_to(&self, dest: Dest) -> Vec<(&Nlri, &Path)> {
        let Some(paths) = self.index.by_dest.get(&dest) else { return vec![] };
        paths.as_slice().iter().filter_map(|r| self.peers.get(&r.peer)?.1.routes.get_key_value(&Received(r.key(dest))).map(|(n, p)| (&n.0, p))).collect()
    }

    /// The VRFs that import a path to VPN destination `dest`, with their next hops, sorted by
    /// VRF. `resolved` remembers which next hops resolve, for the rest of the flush.
    fn vpn_routes(&self, dest: Dest, resolved: &mut HashMap<Ipv4Addr, bool>, stats: &mut RibStats) -> Vec<(VrfId, Vec<NextHop>)> {
        let paths = self.paths_to(dest);
        let mut resolves = |nh: Ipv4Addr| *resolved.entry(nh).or_insert_with(|| self.resolves_now(nh));
        let mut out = vec![];
        for (vrf, import) in &self.imports {
            let cands: Vec<(&Nlri, &Path)> = paths.iter().filter(|(_, p)| p.attrs.route_targets().any(|rt| import.contains(&rt))).copied().collect();
            if cands.is_empty() {
                continue;
            }
            let hops = self.vrf_hops(cands, &mut resolves, stats);
            if !hops.is_empty() {
                out.push((*vrf, hops));
            }
        }
        out.sort_by_key(|(v, _)| *v);
        out
    }

    /// What changed since the last flush, for the destinations the changes touched: the
    /// incremental counterpart of [`Rib::desired`]. `fib` is the compiler that got every
    /// earlier delta: its routes are what the dataplane holds, and each VPN route is compared
    /// with them (the RIB keeps no copy of what it handed on: at a million routes that copy
    /// cost ~100 bytes a route). Statics, local labels and (when an EVPN route changed) the
    /// bridge state are few and recomputed whole.
    pub fn changes(&mut self, now: Instant, fib: &Compiler) -> Delta {
        let mut delta = Delta::default();
        let dirty = std::mem::take(&mut self.index.dirty);
        let mut dests = dirty.dests;
        self.stats.unresolved = 0;
        self.stats.reserved_label = 0;
        let (labels, statics) = self.local_state(now);
        for (k, ce) in &statics {
            if self.handed.statics.get(k) != Some(ce) {
                delta.routes.push((Table::Vrf(k.0), k.1, Some(RouteTo::Via(*ce))));
            }
        }
        // A static that went: BGP's route for the prefix, if any, comes back (below).
        dests.extend(self.handed.statics.keys().filter(|k| !statics.contains_key(k)).map(|(_, p)| Dest::Vpn(*p)));
        if labels != self.handed.labels {
            delta.labels = Some(labels.clone());
            self.handed.labels = labels;
        }
        // Every destination the RIB has a path to or handed on (both kinds).
        let known = |rib: &Rib| {
            let handed = fib.vrf_prefixes().map(Dest::Vpn).chain(rib.handed.underlay.keys().map(|p| Dest::Unicast(*p)));
            rib.index.by_dest.keys().copied().chain(handed).collect::<Vec<_>>()
        };
        if dirty.all {
            dests.extend(known(self));
        }
        // The underlay first: VPN next hops resolve over it.
        let mut underlay_changed = false;
        for dest in &dests {
            let Dest::Unicast(prefix) = *dest else { continue };
            let new = match self.best_gateway(self.paths_to(*dest)) {
                Ok(gw) => gw,
                Err(()) => {
                    self.stats.unresolved += 1;
                    None
                }
            };
            if new != self.handed.underlay.get(&prefix).copied() {
                underlay_changed = true;
                match new {
                    Some(gw) => self.handed.underlay.insert(prefix, gw),
                    None => self.handed.underlay.remove(&prefix),
                };
                delta.routes.push((Table::Underlay, prefix, new.map(RouteTo::Via)));
            }
        }
        if underlay_changed {
            dests.extend(known(self));
        }
        let mut resolved: HashMap<Ipv4Addr, bool> = HashMap::new();
        let mut stats = std::mem::take(&mut self.stats);
        for dest in &dests {
            let Dest::Vpn(prefix) = *dest else { continue };
            let new = self.vpn_routes(*dest, &mut resolved, &mut stats);
            // The VRFs that route the prefix now, and those that will: one or two, nearly always.
            let mut vrfs: Vec<VrfId> = new.iter().map(|(v, _)| *v).chain(fib.vrfs_routing(prefix)).collect();
            vrfs.sort_unstable();
            vrfs.dedup();
            for vrf in vrfs {
                // A static route of the control config wins over BGP for the same prefix.
                if statics.contains_key(&(vrf, prefix)) {
                    continue;
                }
                let hops = new.iter().find(|(v, _)| *v == vrf).map(|(_, h)| h.as_slice());
                if !fib.holds(Table::Vrf(vrf), prefix, hops) {
                    delta.routes.push((Table::Vrf(vrf), prefix, hops.map(|h| RouteTo::Hops(h.to_vec()))));
                }
            }
        }
        self.stats = stats;
        self.handed.statics = statics;
        if dirty.evpn || dirty.all {
            let e = self.evpn_state();
            if e != self.handed.evpn {
                delta.evpn = Some(e.clone());
                self.handed.evpn = e;
            }
        }
        delta
    }

    /// Destinations waiting for the next flush.
    pub fn pending(&self) -> usize {
        self.index.dirty.dests.len()
    }
}

impl Rib {
    /// The whole desired forwarding state, computed from scratch over every path: the
    /// reference for [`Rib::changes`]. A static route of the control config for a prefix
    /// leaves that prefix out of `vrf_routes` (the static wins).
    pub fn desired(&mut self, now: Instant) -> Desired {
        let mut d = Desired::default();
        self.stats.unresolved = 0;
        self.stats.reserved_label = 0;
        let (labels, statics) = self.local_state(now);
        d.labels = labels;
        for ((vrf, prefix), ce) in &statics {
            d.statics.entry(*vrf).or_default().insert(*prefix, *ce);
        }
        let peers = std::mem::take(&mut self.peers);
        let learned: Vec<(&Nlri, &Path)> = peers.values().flat_map(|(_, rib)| rib.routes.iter().map(|(n, p)| (&n.0, p))).collect();
        // IPv4 unicast → underlay (next hop must be on a connected core subnet).
        let mut v4: BTreeMap<Ipv4Prefix, Vec<(&Nlri, &Path)>> = BTreeMap::new();
        for (n, p) in &learned {
            if let Nlri::Ipv4 { prefix } = n {
                v4.entry(*prefix).or_default().push((n, p));
            }
        }
        for (prefix, cands) in v4 {
            match self.best_gateway(cands) {
                Ok(Some(gw)) => {
                    d.underlay.insert(prefix, gw);
                }
                Ok(None) => {}
                Err(()) => self.stats.unresolved += 1,
            }
        }
        // VPNv4 and EVPN type 5 → VRFs by import RT.
        let mut stats = std::mem::take(&mut self.stats);
        for (vrf, import) in self.imports.clone() {
            let mut by_prefix: BTreeMap<Ipv4Prefix, Vec<(&Nlri, &Path)>> = BTreeMap::new();
            for (n, p) in &learned {
                let prefix = match n {
                    Nlri::Vpnv4 { prefix, .. } => *prefix,
                    Nlri::EvpnPrefix(r) => r.prefix,
                    _ => continue,
                };
                if p.attrs.route_targets().any(|rt| import.contains(&rt)) {
                    by_prefix.entry(prefix).or_default().push((n, p));
                }
            }
            for (prefix, cands) in by_prefix {
                if statics.contains_key(&(vrf, prefix)) {
                    continue;
                }
                let (base, underlay) = (&self.base, &d.underlay);
                let mut resolves = |nh: Ipv4Addr| base.underlay.lookup(nh).is_some() || underlay.keys().any(|u| u.contains(nh));
                let hops = self.vrf_hops(cands, &mut resolves, &mut stats);
                if !hops.is_empty() {
                    d.vrf_routes.entry(vrf).or_default().insert(prefix, hops);
                }
            }
        }
        self.stats = stats;
        drop(learned);
        self.peers = peers;
        let e = self.evpn_state();
        (d.flood, d.macs, d.arp) = (e.flood, e.macs, e.arp);
        d
    }

    /// The routes to advertise (the same to every peer): local VRF routes as VPNv4, and per
    /// EVPN instance a type-3 route (and type-2 routes for the bridge's static local MACs).
    pub fn advertisements(&mut self, now: Instant) -> Vec<(Nlri, Arc<PathAttributes>)> {
        let mut out = vec![];
        let nh = self.cfg.bgp.vtep.unwrap_or(self.cfg.bgp.router_id);
        let mut attrs_by_vrf: HashMap<String, Arc<PathAttributes>> = HashMap::new();
        for (r, label) in self.local_labels(now) {
            let Ok(label) = label else { continue };
            let Some((v, rd)) = self.vrf_cfg(&r.vrf).and_then(|v| Some((v, v.rd?))) else { continue };
            let attrs = attrs_by_vrf
                .entry(r.vrf.clone())
                .or_insert_with(|| {
                    Arc::new(PathAttributes {
                        origin: Origin::Igp,
                        next_hop: Some(self.cfg.bgp.router_id),
                        local_pref: Some(100),
                        ext_communities: v.export.iter().map(|rt| rt.0).collect(),
                        ..Default::default()
                    })
                })
                .clone();
            out.push((Nlri::Vpnv4 { rd, label: LabelField::mpls(label), prefix: r.prefix }, attrs));
        }
        for e in &self.cfg.evpn {
            let Some((bd, vni)) = self.bridge_vni(&e.bridge) else { continue };
            let (_, export) = self.evpn_rts(e, vni);
            let mut ext: Vec<[u8; 8]> = export.iter().map(|rt| rt.0).collect();
            ext.push(encapsulation_community(ENCAP_VXLAN));
            let imet = PathAttributes {
                origin: Origin::Igp,
                next_hop: Some(nh),
                local_pref: Some(100),
                ext_communities: ext.clone(),
                pmsi_tunnel: Some(PmsiTunnel { tunnel_type: 6, label: LabelField::vni(vni), endpoint: nh }),
                ..Default::default()
            };
            out.push((Nlri::EvpnImet { rd: e.rd, eth_tag: 0, originator: nh }, Arc::new(imet)));
            let mac_attrs = Arc::new(PathAttributes {
                origin: Origin::Igp,
                next_hop: Some(nh),
                local_pref: Some(100),
                ext_communities: ext,
                ..Default::default()
            });
            let domain = &self.base.bridges[bd.index()];
            let mut macs: Vec<_> = domain.macs.iter().filter(|(_, d)| matches!(d, MacDest::Port(_))).map(|(m, _)| *m).collect();
            macs.sort();
            for mac in macs {
                let ip = domain.arp.iter().find(|(_, m)| **m == mac).map(|(ip, _)| *ip);
                out.push((
                    Nlri::EvpnMacIp(Box::new(crate::bgp::msg::EvpnMacIp { rd: e.rd, esi: [0; 10], eth_tag: 0, mac, ip, label1: LabelField::vni(vni), label2: None })),
                    mac_attrs.clone(),
                ));
            }
        }
        out
    }

    /// What to send to a peer of the given families so that it holds exactly `ads`: UPDATEs
    /// grouped by attributes, withdrawals first. Remembers what was sent.
    pub fn updates_for(&mut self, peer: Ipv4Addr, families: &[Family], ebgp: bool, ads: &[(Nlri, Arc<PathAttributes>)]) -> Vec<Update> {
        let local_as = self.cfg.bgp.asn;
        let med = self.cfg.neighbors.iter().find(|n| n.address == peer).and_then(|n| n.med);
        let want: HashMap<Nlri, (Nlri, Arc<PathAttributes>)> = ads
            .iter()
            .filter(|(n, _)| families.contains(&n.family()))
            .map(|(n, a)| {
                let mut a = (**a).clone();
                if ebgp {
                    a.as_path.insert(0, local_as);
                    a.local_pref = None;
                }
                if med.is_some() {
                    a.med = med;
                }
                (route_key(n), (n.clone(), Arc::new(a)))
            })
            .collect();
        let sent = self.sent.entry(peer).or_default();
        // Routes no longer wanted are withdrawn; a route whose label changed is announced
        // again, which replaces it at the peer without a withdrawal in between.
        let mut withdrawn: BTreeMap<Family, Vec<Nlri>> = BTreeMap::new();
        for (k, (n, _)) in sent.iter() {
            if !want.contains_key(k) {
                withdrawn.entry(n.family()).or_default().push(n.clone());
            }
        }
        let mut groups: Vec<(Family, Arc<PathAttributes>, Vec<Nlri>)> = vec![];
        let mut wanted: Vec<_> = want.into_iter().collect();
        wanted.sort_by(|a, b| a.1 .0.cmp(&b.1 .0));
        for (k, (n, a)) in wanted {
            if sent.get(&k).is_some_and(|(sn, sa)| *sn == n && *sa == a) {
                continue;
            }
            match groups.iter_mut().find(|(f, ga, _)| *f == n.family() && *ga == a) {
                Some(g) => g.2.push(n.clone()),
                None => groups.push((n.family(), a.clone(), vec![n.clone()])),
            }
            sent.insert(k, (n, a));
        }
        let mut out = vec![];
        for (_, w) in withdrawn {
            for n in &w {
                sent.remove(&route_key(n));
            }
            out.push(Update { withdrawn: w, ..Default::default() });
        }
        for (_, a, ns) in groups {
            out.push(Update { withdrawn: vec![], attributes: (*a).clone(), announced: ns, eor: None });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RR: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 254);

    /// The path index keeps a route's key as a [`PathRef`] under its [`Dest`]: rebuilt, it is
    /// the [`route_key`] again, for every kind of route that has a destination; and the
    /// Adj-RIB-In finds a route by its key whatever labels it came with.
    #[test]
    fn index_references_and_received_routes_find_their_route_keys() {
        let rd: crate::bgp::msg::RouteDistinguisher = "65000:9".parse().unwrap();
        let prefix: Ipv4Prefix = "10.9.0.0/16".parse().unwrap();
        let routes = [
            Nlri::Ipv4 { prefix },
            Nlri::Vpnv4 { rd, label: LabelField::mpls(3000), prefix },
            Nlri::EvpnPrefix(Box::new(crate::bgp::msg::EvpnPrefix { rd, esi: [7; 10], eth_tag: 5, prefix, gateway: Ipv4Addr::new(10, 0, 0, 9), label: LabelField::mpls(100) })),
        ];
        for n in &routes {
            let key = route_key(n);
            let dest = Dest::of(&key).unwrap();
            assert_eq!(PathRef::of(RR, &key).unwrap().key(dest), key, "{n:?}");
            let mut rib: HashMap<Received, u8> = HashMap::new();
            rib.insert(Received(n.clone()), 1);
            assert_eq!(rib.get(&Received(key.clone())), Some(&1), "{n:?} by its key");
        }
        // Two RDs to one prefix are two paths; a path with another label is the same one.
        let a = PathRef::of(RR, &route_key(&routes[1])).unwrap();
        let b = PathRef::of(RR, &Nlri::Vpnv4 { rd: "65000:10".parse().unwrap(), label: LabelField(0), prefix }).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, PathRef::of(RR, &route_key(&Nlri::Vpnv4 { rd, label: LabelField::mpls(7), prefix })).unwrap());
        let mut paths = Paths::One(a);
        paths.push(b);
        assert_eq!(paths.as_slice(), &[a, b]);
        assert!(!paths.remove(a) && paths.as_slice() == [b]);
        assert!(paths.remove(b));
        assert!(PathRef::of(RR, &Nlri::EvpnImet { rd, eth_tag: 0, originator: RR }).is_none());
    }

    /// The example PE (red: two connected subnets, blue: one) under a control config with the
    /// VRF sections in `order` and labels 5000..=5009 in `mode`.
    fn rib(order: [&str; 2], mode: &str) -> Rib {
        let base = Arc::new(carrier_dataplane::config::Config::parse(include_str!("../../../examples/pe1.toml")).unwrap().tables().unwrap());
        let mut text = format!(
            "[bgp]\nasn = 65000\nrouter_id = \"10.255.0.1\"\n[dataplane]\nconfig = \"pe1.toml\"\n\
             [labels]\nfirst = 5000\nlast = 5009\nmode = \"{mode}\"\n"
        );
        for name in order {
            let n = if name == "red" { 1 } else { 2 };
            text.push_str(&format!("[[vrf]]\nname = \"{name}\"\nrd = \"65000:{n}\"\nimport = [\"target:65000:{n}\"]\nexport = [\"target:65000:{n}\"]\n"));
        }
        let mut rib = Rib::new(Arc::new(ControlConfig::parse(&text).unwrap()), base);
        rib.peer_up(RR, PeerInfo { asn: 65000, router_id: RR, ebgp: false, local_pref: None, restart_time: Some(120) });
        rib
    }

    fn vpn(label: u32, prefix: &str) -> Nlri {
        Nlri::Vpnv4 { rd: "65000:9".parse().unwrap(), label: LabelField::mpls(label), prefix: prefix.parse().unwrap() }
    }

    fn announce(n: Nlri) -> Update {
        let rt: RouteTarget = "target:65000:1".parse().unwrap();
        let attributes = PathAttributes { next_hop: Some("10.255.0.2".parse().unwrap()), ext_communities: vec![rt.0], ..Default::default() };
        Update { withdrawn: vec![], attributes, announced: vec![n], eor: None }
    }

    /// The labels red's 10.50.0.0/16 is pushed with.
    fn pushed(rib: &mut Rib) -> Vec<Vec<u32>> {
        let red = rib.base().vrf_by_name("red").unwrap().id;
        let d = rib.desired(Instant::now());
        let hops = d.vrf_routes.get(&red).and_then(|r| r.get(&"10.50.0.0/16".parse().unwrap())).cloned().unwrap_or_default();
        hops.iter()
            .map(|h| match h {
                NextHop::MplsPush { labels, .. } => labels.as_slice().iter().map(|l| l.value()).collect(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_new_label_replaces_the_route_and_a_withdrawal_ignores_the_label() {
        let mut rib = rib(["red", "blue"], "per-vrf");
        // 1. Announced with 3000.
        rib.update(RR, announce(vpn(3000, "10.50.0.0/16")));
        assert_eq!(pushed(&mut rib), [[3000]]);
        // 2. Announced again with 3001 (the remote PE restarted and renumbered): one route,
        //    the new label — not two paths with the old one possibly preferred.
        assert_eq!(rib.update(RR, announce(vpn(3001, "10.50.0.0/16"))), 1);
        assert_eq!(pushed(&mut rib), [[3001]]);
        // 3. Withdrawn with the label field 0x800000 (RFC 8277 §2.4): gone.
        let withdraw = Nlri::Vpnv4 { rd: "65000:9".parse().unwrap(), label: LabelField(0x80_0000), prefix: "10.50.0.0/16".parse().unwrap() };
        assert_eq!(rib.update(RR, Update { withdrawn: vec![withdraw], ..Default::default() }), 0);
        assert!(pushed(&mut rib).is_empty());
    }

    #[test]
    fn implicit_null_is_pushed_as_no_label_and_other_reserved_labels_are_unusable() {
        let mut rib = rib(["red", "blue"], "per-vrf");
        // 1. Label 3 (implicit null, as BIRD 2 sends under `next hop self`): the route is
        //    installed toward the PE with nothing pushed (RFC 3032 §2.1: never on the wire).
        rib.update(RR, announce(vpn(3, "10.50.0.0/16")));
        assert_eq!(pushed(&mut rib), [Vec::<u32>::new()]);
        // 2. An ordinary label replaces it and is pushed.
        rib.update(RR, announce(vpn(16, "10.50.0.0/16")));
        assert_eq!(pushed(&mut rib), [[16]]);
        // 3. Explicit null (0) and the entropy label indicator (7) cannot carry a VPN route:
        //    no route at all, counted.
        for reserved in [0, 7] {
            rib.update(RR, announce(vpn(reserved, "10.50.0.0/16")));
            assert!(pushed(&mut rib).is_empty(), "label {reserved}");
            assert_eq!(rib.stats.reserved_label, 1, "label {reserved}");
        }
    }

    #[test]
    fn a_changed_label_is_announced_without_a_withdrawal() {
        let mut rib = rib(["red", "blue"], "per-vrf");
        let ads = vec![(vpn(5000, "10.1.0.0/24"), Arc::new(PathAttributes::default()))];
        assert_eq!(rib.updates_for(RR, &[Family::Vpnv4], false, &ads).len(), 1);
        let changed = vec![(vpn(5003, "10.1.0.0/24"), Arc::new(PathAttributes::default()))];
        let updates = rib.updates_for(RR, &[Family::Vpnv4], false, &changed);
        assert_eq!(updates.len(), 1, "{updates:?}");
        assert!(updates[0].withdrawn.is_empty(), "{updates:?}");
        assert_eq!(updates[0].announced, [changed[0].0.clone()]);
        // Withdrawn later: with the label it was last sent with.
        let updates = rib.updates_for(RR, &[Family::Vpnv4], false, &[]);
        assert_eq!(updates.len(), 1, "{updates:?}");
        assert_eq!(updates[0].withdrawn, [changed[0].0.clone()]);
    }

    #[test]
    fn a_restart_takes_over_the_labels_in_the_ilm() {
        let now = Instant::now();
        // 1. The first run: red 5000, blue 5001 (config order).
        let mut first = rib(["red", "blue"], "per-vrf");
        let d = first.desired(now);
        let (red, blue) = (first.base().vrf_by_name("red").unwrap().id, first.base().vrf_by_name("blue").unwrap().id);
        assert_eq!(d.labels.iter().map(|(l, (v, _))| (*l, *v)).collect::<Vec<_>>(), [(5000, red), (5001, blue)]);
        // 2. What the dataplane holds after it: its labels, a stray per-CE label and a label
        //    of the dataplane's own config (100), plus one outside the range.
        let ilm = vec![
            (100, IlmAction::PopLookup { vrf: red }),
            (5000, IlmAction::PopLookup { vrf: red }),
            (5001, IlmAction::PopLookup { vrf: blue }),
            (5003, IlmAction::PopForward { vrf: red, nexthop: carrier_common::NextHopId(40) }),
            (7000, IlmAction::PopLookup { vrf: blue }),
        ];
        // 3. The restarted run has the VRFs in the other order: it keeps red 5000, blue 5001.
        let mut second = rib(["blue", "red"], "per-vrf");
        assert_eq!(second.adopt_labels(&ilm, now), 2);
        assert_eq!(second.labels_in_use(), [(LabelKey::Vrf("red".into()), 5000), (LabelKey::Vrf("blue".into()), 5001)]);
        let d = second.desired(now);
        assert_eq!(d.labels.iter().map(|(l, (v, _))| (*l, *v)).collect::<Vec<_>>(), [(5000, red), (5001, blue)]);
        // 4. The stray 5003 and the never-used 5002 are in hold-down: a new key gets 5004.
        let mut held = rib(["red", "blue"], "per-prefix");
        assert_eq!(held.adopt_labels(&ilm, now), 2, "red's 5000 and blue's 5001 each go to a prefix of their VRF");
        held.desired(now);
        let labels: Vec<u32> = held.labels_in_use().into_iter().map(|(_, l)| l).collect();
        assert_eq!(labels, [5000, 5001, 5004], "red's second prefix gets a fresh label past the held ones");
        // 5. Once labels are allocated, it does nothing.
        assert_eq!(held.adopt_labels(&ilm, now), 0);
    }
}
