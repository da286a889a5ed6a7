//! What operators read of the RIB (`show bgp`, `show mpls`, `show evpn`) and the edits they
//! make to its local routes: views built on demand from the RIB's own maps, for the state
//! layer ([`crate::state`]). Nothing here changes what the RIB decides.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use carrier_contract::command::{IlmAction, NextHop, Table};
use carrier_contract::Ipv4Prefix;

use super::{Dest, LabelKey, Nlri, Path, Rib, Source};
use crate::fib::Compiler;
use crate::bgp::msg::{Family, Origin, RouteTarget};
use crate::config::{ControlConfig, LabelMode, StaticRoute};
use crate::state::{
    CommandError, EvpnMacView, EvpnView, LabelView, PathView, PrefixCounts, RibCounters, RibSummary, RouteView, StaticRouteView, VrfInfo,
};

/// The name of a label mode.
pub fn label_mode_name(m: LabelMode) -> &'static str {
    match m {
        LabelMode::PerVrf => "per-vrf",
        LabelMode::PerNexthop => "per-nexthop",
        LabelMode::PerPrefix => "per-prefix",
    }
}

fn rts(v: &[RouteTarget]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

/// Why `best` beat `next` in the decision process (the first step of RFC 4271 §9.1.2.2
/// where they differ).
fn why(best: &Path, next: Option<&Path>) -> &'static str {
    let Some(next) = next else { return "only path" };
    let (a, b) = (best.rank(), next.rank());
    if a.0 != b.0 {
        "local-pref"
    } else if a.1 != b.1 {
        "as-path length"
    } else if a.2 != b.2 {
        "origin"
    } else if a.3 != b.3 {
        "med"
    } else if a.4 != b.4 {
        "ebgp over ibgp"
    } else if a.5 != b.5 {
        "router id"
    } else {
        "peer address"
    }
}

fn origin_name(o: Origin) -> &'static str {
    match o {
        Origin::Igp => "igp",
        Origin::Egp => "egp",
        Origin::Incomplete => "incomplete",
    }
}

fn path_view(n: &Nlri, p: &Path) -> PathView {
    let (label, rd) = match n {
        Nlri::Vpnv4 { label, rd, .. } => (Some(label.as_mpls()), Some(rd.to_string())),
        Nlri::EvpnPrefix(r) => (Some(r.label.as_vni()), Some(r.rd.to_string())),
        _ => (None, None),
    };
    PathView {
        source: match p.source {
            Source::Local => "local".into(),
            Source::Peer(a) => a.to_string(),
        },
        next_hop: p.attrs.next_hop.map(|a| a.to_string()),
        label,
        rd,
        as_path: p.attrs.as_path.clone(),
        local_pref: p.local_pref(),
        med: p.attrs.med,
        origin: origin_name(p.attrs.origin).into(),
        stale: p.stale,
        best: false,
        reason: None,
    }
}

fn local_route(vrf: &str, prefix: Ipv4Prefix, protocol: &str, via: Option<Ipv4Addr>) -> RouteView {
    RouteView {
        vrf: vrf.into(),
        prefix: prefix.to_string(),
        protocol: protocol.into(),
        paths: vec![PathView {
            source: "local".into(),
            next_hop: via.map(|a| a.to_string()),
            label: None,
            rd: None,
            as_path: vec![],
            local_pref: 100,
            med: None,
            origin: "igp".into(),
            stale: false,
            best: true,
            reason: None,
        }],
    }
}

impl Rib {
    /// The interfaces of the running dataplane config, for `show interfaces`.
    pub fn interfaces(&self) -> Vec<crate::state::InterfaceView> {
        use carrier_dataplane::tables::PortRole;
        let base = &self.base;
        base.ports
            .iter()
            .map(|p| {
                let (role, instance) = match p.role {
                    PortRole::Core => ("core", None),
                    PortRole::Detached => ("detached", None),
                    PortRole::Vrf(v) => ("vrf", base.vrfs.iter().find(|x| x.id == v).map(|x| x.name.clone())),
                    PortRole::Bridge(b) => ("bridge", base.bridges.iter().find(|x| x.id == b).map(|x| x.name.clone())),
                };
                crate::state::InterfaceView {
                    name: p.name.clone(),
                    role: role.into(),
                    instance,
                    mac: p.mac.to_string(),
                    addresses: p.addrs.iter().map(|a| a.to_string()).collect(),
                    vlan: p.vlan,
                    mtu: p.mtu,
                    proxy_arp: p.proxy_arp,
                    link: String::new(),
                    xdp: String::new(),
                    rx_packets: 0,
                    tx_packets: 0,
                    drops: 0,
                    express_forwarded: 0,
                    express_punted: 0,
                }
            })
            .collect()
    }

    /// Sizes and counters, cheap enough to publish once a second at a million routes: one
    /// pass over the Adj-RIBs and one over the routes `fib` (the compiler of the flushes)
    /// installed.
    pub fn summary(&self, fib: &Compiler) -> RibSummary {
        let mut bgp_routes = fib.vrf_route_counts();
        // The control config's statics are not BGP's.
        for (vrf, prefix) in self.handed.statics.keys() {
            if !fib.hops(Table::Vrf(*vrf), *prefix).is_empty() {
                if let Some(n) = bgp_routes.get_mut(vrf) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        let vrfs = self
            .cfg
            .vrfs
            .iter()
            .filter_map(|v| {
                let id = self.base.vrf_by_name(&v.name)?.id;
                Some(VrfInfo {
                    name: v.name.clone(),
                    rd: v.rd.map_or_else(String::new, |rd| rd.to_string()),
                    import: rts(&v.import),
                    export: rts(&v.export),
                    label_mode: label_mode_name(self.cfg.labels.mode).into(),
                    redistribute_connected: v.redistribute_connected,
                    redistribute_static: v.redistribute_static,
                    statics: v.statics.iter().map(|s| StaticRouteView { prefix: s.prefix.to_string(), via: s.via.to_string() }).collect(),
                    bgp_routes: bgp_routes.get(&id).copied().unwrap_or(0),
                    prefix_counters: self.base.vrfs.get(id.index()).is_some_and(|v| v.prefix_counters),
                })
            })
            .collect();
        let evpn_imports: Vec<RouteTarget> = self
            .cfg
            .evpn
            .iter()
            .filter_map(|e| Some(self.evpn_rts(e, self.bridge_vni(&e.bridge)?.1).0))
            .flatten()
            .collect();
        let mut prefixes = BTreeMap::new();
        for (addr, (_, rib)) in &self.peers {
            let mut counts: BTreeMap<Family, PrefixCounts> = BTreeMap::new();
            for (super::Received(n), p) in &rib.routes {
                let c = counts.entry(n.family()).or_default();
                c.received += 1;
                let accepted = match n {
                    Nlri::Ipv4 { .. } => true,
                    Nlri::Vpnv4 { .. } | Nlri::EvpnPrefix(_) => {
                        p.attrs.route_targets().any(|rt| self.imports.iter().any(|(_, i)| i.contains(&rt)))
                    }
                    Nlri::EvpnImet { .. } | Nlri::EvpnMacIp(_) => p.attrs.route_targets().any(|rt| evpn_imports.contains(&rt)),
                };
                c.accepted += u64::from(accepted);
            }
            for (n, _) in self.sent.get(addr).into_iter().flat_map(|s| s.values()) {
                counts.entry(n.family()).or_default().advertised += 1;
            }
            let list = counts
                .into_iter()
                .map(|(f, mut c)| {
                    c.family = f.name().into();
                    c
                })
                .collect();
            prefixes.insert(addr.to_string(), list);
        }
        RibSummary {
            interfaces: self.interfaces(),
            vrfs,
            prefixes,
            labels_allocated: self.labels_in_use().len() as u64,
            counters: RibCounters {
                unresolved: self.stats.unresolved as u64,
                label_exhausted: self.stats.label_exhausted as u64,
                stale_swept: self.stats.stale_swept as u64,
                reserved_label: self.stats.reserved_label as u64,
                wrong_family: self.stats.wrong_family as u64,
                updates_processed: 0,
                flushes: 0,
            },
        }
    }

    /// The routes of VRF `vrf` (connected, static, BGP with every path and the decision), or
    /// with `None` of every configured VRF and the underlay.
    /// `fib` is the compiler of the flushes: a path is best when its route is installed.
    pub fn show_routes(&self, vrf: Option<&str>, fib: &Compiler) -> Result<Vec<RouteView>, CommandError> {
        let names: Vec<String> = match vrf {
            Some("underlay") => vec![],
            Some(v) => {
                if self.base.vrf_by_name(v).is_none() {
                    return Err(CommandError::NotFound(format!("no VRF {v:?}")));
                }
                vec![v.to_string()]
            }
            None => self.base.vrfs.iter().map(|v| v.name.clone()).collect(),
        };
        let mut out = vec![];
        for name in &names {
            out.extend(self.vrf_routes_view(name, fib));
        }
        if vrf.is_none() || vrf == Some("underlay") {
            out.extend(self.underlay_view(fib));
        }
        Ok(out)
    }

    fn vrf_routes_view(&self, name: &str, fib: &Compiler) -> Vec<RouteView> {
        let Some(vrf) = self.base.vrf_by_name(name) else { return vec![] };
        let mut routes: BTreeMap<Ipv4Prefix, RouteView> = BTreeMap::new();
        for (prefix, nh) in vrf.fib.routes() {
            let view = match self.base.nexthop(nh) {
                Some(NextHop::Adjacency { via: None, .. }) => local_route(name, prefix, "connected", None),
                Some(NextHop::Adjacency { via: Some(via), .. }) => local_route(name, prefix, "static", Some(*via)),
                Some(NextHop::Receive) => local_route(name, prefix, "local", None),
                Some(NextHop::MplsPush { pe, .. }) => local_route(name, prefix, "static", Some(*pe)),
                Some(NextHop::Vxlan { vtep, .. }) => local_route(name, prefix, "static", Some(*vtep)),
                _ => local_route(name, prefix, "static", None),
            };
            routes.insert(prefix, view);
        }
        if let Some(cfg) = self.vrf_cfg(name) {
            for s in &cfg.statics {
                routes.insert(s.prefix, local_route(name, s.prefix, "static", Some(s.via)));
            }
        }
        let import = self.imports.iter().find(|(id, _)| *id == vrf.id).map(|(_, i)| i.as_slice()).unwrap_or(&[]);
        for (dest, _) in self.index.by_dest.iter() {
            let Dest::Vpn(prefix) = *dest else { continue };
            if routes.contains_key(&prefix) {
                continue;
            }
            let cands: Vec<(&Nlri, &Path)> =
                self.paths_to(*dest).into_iter().filter(|(_, p)| p.attrs.route_targets().any(|rt| import.contains(&rt))).collect();
            if cands.is_empty() {
                continue;
            }
            routes.insert(prefix, RouteView { vrf: name.into(), prefix: prefix.to_string(), protocol: "bgp".into(), paths: self.decide_view(cands, Some(vrf.id), prefix, fib) });
        }
        routes.into_values().collect()
    }

    fn underlay_view(&self, fib: &Compiler) -> Vec<RouteView> {
        let mut routes: BTreeMap<Ipv4Prefix, RouteView> = BTreeMap::new();
        for (prefix, nh) in self.base.underlay.routes() {
            let via = match self.base.nexthop(nh) {
                Some(NextHop::Adjacency { via, .. }) => *via,
                _ => None,
            };
            routes.insert(prefix, local_route("underlay", prefix, if via.is_some() { "static" } else { "connected" }, via));
        }
        for (dest, _) in self.index.by_dest.iter() {
            let Dest::Unicast(prefix) = *dest else { continue };
            if routes.contains_key(&prefix) {
                continue;
            }
            let paths = self.decide_view(self.paths_to(*dest), None, prefix, fib);
            routes.insert(prefix, RouteView { vrf: "underlay".into(), prefix: prefix.to_string(), protocol: "bgp".into(), paths });
        }
        routes.into_values().collect()
    }

    /// The paths in decision order; the installed ones marked best, the first with why.
    fn decide_view(&self, cands: Vec<(&Nlri, &Path)>, vrf: Option<carrier_common::VrfId>, prefix: Ipv4Prefix, fib: &Compiler) -> Vec<PathView> {
        let mut sorted = cands;
        super::decision_order(&mut sorted);
        let installed_gw = match vrf {
            None => self.handed.underlay.get(&prefix).copied().into_iter().collect::<Vec<_>>(),
            Some(id) => fib
                .hops(Table::Vrf(id), prefix)
                .into_iter()
                .filter_map(|h| match h {
                    NextHop::MplsPush { pe, .. } => Some(*pe),
                    NextHop::Vxlan { vtep, .. } => Some(*vtep),
                    _ => None,
                })
                .collect(),
        };
        let mut views: Vec<PathView> = vec![];
        let mut first_best = true;
        for (i, (n, p)) in sorted.iter().enumerate() {
            let mut v = path_view(n, p);
            let nh = p.attrs.next_hop;
            v.best = nh.is_some_and(|a| installed_gw.contains(&a)) && (first_best || self.cfg.bgp.multipath);
            if v.best {
                v.reason = Some(if first_best { why(p, sorted.get(i + 1).map(|(_, p)| *p)) } else { "multipath" }.into());
                first_best = false;
            } else if !super::usable(n) {
                v.reason = Some("reserved label".into());
            } else if nh.is_none_or(|a| !self.resolves_now(a)) {
                v.reason = Some("next hop unresolved".into());
            }
            views.push(v);
        }
        views
    }

    /// The local labels and what they stand for (traffic counts are the caller's).
    pub fn show_labels(&self) -> Vec<LabelView> {
        let mode = |k: &LabelKey| match k {
            LabelKey::Vrf(_) => "per-vrf",
            LabelKey::NextHop(..) => "per-nexthop",
            LabelKey::Prefix(..) => "per-prefix",
        };
        let allocated = self.labels_in_use().into_iter().map(|(k, label)| {
            let (vrf, next_hop, prefix) = match &k {
                LabelKey::Vrf(v) => (v.clone(), None, None),
                LabelKey::NextHop(v, nh) => (v.clone(), Some(nh.to_string()), None),
                LabelKey::Prefix(v, p) => (v.clone(), None, Some(p.to_string())),
            };
            LabelView { label, kind: mode(&k).into(), vrf, next_hop, prefix, out_label: None, packets_in: 0, bytes_in: 0 }
        });
        // The dataplane config's own labels, which the control process programs as they are.
        let vrf_name = |id| self.base.vrfs.iter().find(|v| v.id == id).map_or_else(|| id.to_string(), |v| v.name.clone());
        let mut fixed: Vec<LabelView> = self
            .base
            .ilm
            .iter()
            .map(|(label, action)| {
                let (vrf, next_hop, out_label) = match action {
                    IlmAction::PopLookup { vrf } => (vrf_name(*vrf), None, None),
                    IlmAction::PopForward { vrf, nexthop } => {
                        let via = match self.base.nexthop(*nexthop) {
                            Some(NextHop::Adjacency { via: Some(via), .. }) => Some(via.to_string()),
                            _ => None,
                        };
                        (vrf_name(*vrf), via, None)
                    }
                    IlmAction::Swap { out, pe } => ("underlay".to_string(), Some(pe.to_string()), Some(out.value())),
                };
                LabelView { label: label.value(), kind: "static".into(), vrf, next_hop, prefix: None, out_label, packets_in: 0, bytes_in: 0 }
            })
            .collect();
        fixed.sort_by_key(|l| l.label);
        allocated.chain(fixed).collect()
    }

    /// The EVPN instances with what the last flush handed to the dataplane.
    pub fn show_evpn(&self) -> Vec<EvpnView> {
        let e = &self.handed.evpn;
        self.cfg
            .evpn
            .iter()
            .filter_map(|cfg| {
                let (bd, vni) = self.bridge_vni(&cfg.bridge)?;
                let (import, export) = self.evpn_rts(cfg, vni);
                let flood = e.flood.get(&bd).map(|s| s.iter().map(ToString::to_string).collect()).unwrap_or_default();
                let macs = e
                    .macs
                    .iter()
                    .filter(|((b, _), _)| *b == bd)
                    .map(|((_, mac), vtep)| EvpnMacView {
                        mac: mac.to_string(),
                        vtep: vtep.to_string(),
                        ip: e.arp.iter().find(|((b, _), m)| *b == bd && *m == mac).map(|((_, ip), _)| ip.to_string()),
                    })
                    .collect();
                Some(EvpnView { bridge: cfg.bridge.clone(), vni, rd: cfg.rd.to_string(), import: rts(&import), export: rts(&export), flood, macs })
            })
            .collect()
    }

    /// The configuration with a static route of VRF `vrf` added (`via` set) or removed: what
    /// the caller hands to [`Rib::reconfigure`]. The next hop must lie in one of the VRF's
    /// connected subnets.
    pub fn with_static(&self, vrf: &str, prefix: Ipv4Prefix, via: Option<Ipv4Addr>) -> Result<ControlConfig, CommandError> {
        let Some(base_vrf) = self.base.vrf_by_name(vrf) else { return Err(CommandError::NotFound(format!("no VRF {vrf:?} in the dataplane"))) };
        let mut cfg = (*self.cfg).clone();
        let Some(v) = cfg.vrfs.iter_mut().find(|v| v.name == vrf) else {
            return Err(CommandError::NotFound(format!("VRF {vrf:?} is not configured for BGP (no [[vrf]] in the control config)")));
        };
        match via {
            Some(via) => {
                let connected = self.base.ports.iter().filter(|p| p.role == carrier_dataplane::tables::PortRole::Vrf(base_vrf.id)).any(|p| p.addrs.iter().any(|a| a.prefix.contains(via)));
                if !connected {
                    return Err(CommandError::Invalid(format!("next hop {via} is in no connected subnet of VRF {vrf:?}")));
                }
                v.statics.retain(|s| s.prefix != prefix);
                v.statics.push(StaticRoute { prefix, via });
            }
            None => {
                let before = v.statics.len();
                v.statics.retain(|s| s.prefix != prefix);
                if v.statics.len() == before {
                    return Err(CommandError::NotFound(format!("VRF {vrf:?} has no static route {prefix}")));
                }
            }
        }
        Ok(cfg)
    }
}
