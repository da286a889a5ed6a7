//! Compile the RIB's desired state into dataplane table commands: routes point at next-hop ids
//! allocated above the base config's, labels become ILM entries, EVPN becomes flood lists, MAC
//! entries and ARP bindings. The result is sent as one `replace`: the dataplane applies it
//! atomically on top of its base tables, and whatever was there before and is not any more
//! disappears.

use std::net::Ipv4Addr;

use carrier_common::{NextHopId, PortId, VrfId};
use carrier_dataplane::tables::{IlmAction, MacDest, NextHop, PortRole, Table, TableCommand, Tables};

use crate::rib::Desired;

struct Compiler<'a> {
    base: &'a Tables,
    cmds: Vec<TableCommand>,
    nexthops: Vec<NextHop>,
}

impl Compiler<'_> {
    fn nexthop(&mut self, nh: NextHop) -> NextHopId {
        let first = self.base.nexthops.len();
        if let Some(i) = self.nexthops.iter().position(|n| *n == nh) {
            return NextHopId((first + i) as u32);
        }
        let id = NextHopId((first + self.nexthops.len()) as u32);
        self.nexthops.push(nh.clone());
        self.cmds.push(TableCommand::NextHop { id, nexthop: nh });
        id
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
}

/// Commands that make the dataplane hold `desired` on top of `base`. Routes whose gateway
/// is in no connected subnet are left out and counted in the second value.
pub fn compile(base: &Tables, desired: &Desired) -> (Vec<TableCommand>, usize) {
    let mut c = Compiler { base, cmds: vec![], nexthops: vec![] };
    let mut skipped = 0;
    for (prefix, gw) in &desired.underlay {
        match c.connected_port(None, *gw) {
            Some(port) => {
                let nh = c.nexthop(NextHop::Adjacency { port, via: Some(*gw) });
                c.cmds.push(TableCommand::Route { table: Table::Underlay, prefix: *prefix, nexthop: nh });
            }
            None => skipped += 1,
        }
    }
    for (vrf, routes) in &desired.statics {
        for (prefix, via) in routes {
            match c.connected_port(Some(*vrf), *via) {
                Some(port) => {
                    let nh = c.nexthop(NextHop::Adjacency { port, via: Some(*via) });
                    c.cmds.push(TableCommand::Route { table: Table::Vrf(*vrf), prefix: *prefix, nexthop: nh });
                }
                None => skipped += 1,
            }
        }
    }
    for (vrf, routes) in &desired.vrf_routes {
        for (prefix, hops) in routes {
            let ids: Vec<NextHopId> = hops.iter().map(|h| c.nexthop(h.clone())).collect();
            let nh = if ids.len() == 1 { ids[0] } else { c.nexthop(NextHop::Ecmp { members: ids }) };
            c.cmds.push(TableCommand::Route { table: Table::Vrf(*vrf), prefix: *prefix, nexthop: nh });
        }
    }
    for (label, (vrf, ce)) in &desired.labels {
        let Some(label) = carrier_common::Label::new(*label) else { continue };
        let action = match ce.and_then(|ce| c.connected_port(Some(*vrf), ce).map(|p| (p, ce))) {
            Some((port, ce)) => IlmAction::PopForward { vrf: *vrf, nexthop: c.nexthop(NextHop::Adjacency { port, via: Some(ce) }) },
            None => IlmAction::PopLookup { vrf: *vrf },
        };
        c.cmds.push(TableCommand::Label { label, action });
    }
    for (bridge, vteps) in &desired.flood {
        let mut all = base.bridges.get(bridge.index()).map(|b| b.flood.clone()).unwrap_or_default();
        for v in vteps {
            if !all.contains(v) {
                all.push(*v);
            }
        }
        c.cmds.push(TableCommand::FloodList { bridge: *bridge, vteps: all });
    }
    for ((bridge, mac), vtep) in &desired.macs {
        c.cmds.push(TableCommand::BridgeMac { bridge: *bridge, mac: *mac, dest: MacDest::Vtep(*vtep) });
    }
    for ((bridge, ip), mac) in &desired.arp {
        c.cmds.push(TableCommand::ArpBinding { bridge: *bridge, ip: *ip, mac: *mac });
    }
    (c.cmds, skipped)
}
