//! The table commands: what the control process (and the dataplane's own config loader) tells
//! the dataplane's table writer, and the types they carry.

use std::net::Ipv4Addr;

use carrier_common::{BridgeDomainId, Label, NextHopId, PortId, Vni, VrfId};
use serde::{Deserialize, Serialize};

use crate::addr::{InterfaceAddr, Ipv4Prefix, MacAddr};

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| serde::de::Error::custom(format!("not a MAC address (aa:bb:cc:dd:ee:ff): {s:?}")))
    }
}

/// How the label TTL is set on push and how the IP TTL is set on pop (RFC 3443).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TtlMode {
    /// Label TTL copied from the IP TTL on push, and back on pop: the core shows in traceroute.
    #[default]
    Uniform,
    /// Label TTL 255 on push; the IP TTL is left alone by the core.
    Pipe,
}

/// Router-wide settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterSettings {
    /// The router's identity and the source of ICMP it sends from the core.
    pub router_id: Ipv4Addr,
    /// The local VTEP address: outer source of VXLAN and the address decapsulation accepts.
    pub vtep: Option<Ipv4Addr>,
    /// MPLS TTL handling.
    pub ttl_mode: TtlMode,
    /// Outer IPv4 TTL of VXLAN packets.
    pub vxlan_ttl: u8,
    /// The router MAC of EVPN type-5 routes (inner source MAC of routed VXLAN); default:
    /// the first core port's MAC.
    pub router_mac: Option<MacAddr>,
    /// Seconds a learned neighbour lives without an ARP from it (0: forever); one in use is
    /// probed before it expires.
    #[serde(default = "default_neighbour_timeout")]
    pub neighbour_timeout: u32,
    /// Seconds a learned MAC lives without a frame from it (0: forever).
    #[serde(default = "default_mac_timeout")]
    pub mac_timeout: u32,
}

/// Learned neighbours live 20 minutes without an ARP from them (Junos' default ARP aging).
pub const DEFAULT_NEIGHBOUR_TIMEOUT: u32 = 1200;

/// Learned MACs live 5 minutes without a frame from them (IEEE 802.1Q's default aging time).
pub const DEFAULT_MAC_TIMEOUT: u32 = 300;

fn default_neighbour_timeout() -> u32 {
    DEFAULT_NEIGHBOUR_TIMEOUT
}

fn default_mac_timeout() -> u32 {
    DEFAULT_MAC_TIMEOUT
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            router_id: Ipv4Addr::UNSPECIFIED,
            vtep: None,
            ttl_mode: TtlMode::Uniform,
            vxlan_ttl: 64,
            router_mac: None,
            neighbour_timeout: DEFAULT_NEIGHBOUR_TIMEOUT,
            mac_timeout: DEFAULT_MAC_TIMEOUT,
        }
    }
}

/// What a port is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortRole {
    /// A customer port whose traffic is routed in a VRF.
    Vrf(VrfId),
    /// A customer port in an EVPN/VXLAN bridge domain (L2).
    Bridge(BridgeDomainId),
    /// A core port toward other PEs: MPLS and VXLAN arrive and leave here.
    Core,
    /// Attached to nothing (detached by the operator): every frame it receives is dropped,
    /// counted as `port-detached`, and nothing is sent out of it (it has no connected subnet,
    /// so no route of a compiled config points at it).
    Detached,
}

/// One interface the dataplane owns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// Dense id, the index into [`Tables::ports`].
    pub id: PortId,
    /// The Linux interface name.
    pub name: String,
    /// The MAC the router uses on this port.
    pub mac: MacAddr,
    /// The router's addresses on this port and their connected subnets.
    pub addrs: Vec<InterfaceAddr>,
    /// Customer (VRF or bridge) or core.
    pub role: PortRole,
    /// Answer ARP for addresses the VRF routes elsewhere (routed mode).
    pub proxy_arp: bool,
    /// Drop packets whose source address the VRF would not route back out of this port.
    pub anti_spoof: bool,
    /// 802.1Q VLAN id carried on this port, if the port is tagged.
    pub vlan: Option<u16>,
    /// Largest IP packet (plus labels) this port sends.
    pub mtu: u16,
    /// The port has a kernel mirror (the host path, `crate::host`): traffic for the host stack
    /// goes there. Set by `carrier-dataplane run` once the mirror exists.
    #[serde(default)]
    pub host: bool,
    /// Most frames per second given to the host stack through this port's mirror (0: no limit).
    #[serde(default)]
    pub host_rate: u32,
}

/// Up to three labels, outermost first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LabelStack {
    labels: [Label; 3],
    len: u8,
}

impl LabelStack {
    /// Most labels one next hop pushes.
    pub const MAX: usize = 3;

    /// A stack from a slice, outermost first; `None` when longer than [`Self::MAX`].
    pub fn new(labels: &[Label]) -> Option<LabelStack> {
        if labels.len() > Self::MAX {
            return None;
        }
        let mut stack = LabelStack::default();
        stack.labels[..labels.len()].copy_from_slice(labels);
        stack.len = labels.len() as u8;
        Some(stack)
    }

    /// The labels, outermost first.
    pub fn as_slice(&self) -> &[Label] {
        &self.labels[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for LabelStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice().iter().map(|l| l.value())).finish()
    }
}

impl Serialize for LabelStack {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

impl<'de> Deserialize<'de> for LabelStack {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<Label>::deserialize(d)?;
        LabelStack::new(&v).ok_or_else(|| serde::de::Error::custom("at most 3 labels per next hop"))
    }
}

/// A next hop in the arena. Routes and ILM entries point at these by [`NextHopId`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NextHop {
    /// Send out `port` to the neighbour `via`, or — for a connected subnet, `via` absent — to
    /// the packet's own destination. The MAC comes from the neighbour table.
    Adjacency {
        /// Egress port.
        port: PortId,
        /// Gateway address; `None` for a connected subnet.
        via: Option<Ipv4Addr>,
    },
    /// Push `labels` (outermost first) and send toward the remote PE `pe`, which is resolved in
    /// the underlay FIB (where a transport label may be pushed in turn).
    MplsPush {
        /// Labels to push, outermost first (usually just the VPN label).
        labels: LabelStack,
        /// Traffic class; `None` copies the IP precedence (DSCP >> 3).
        tc: Option<u8>,
        /// The remote PE (or the next LSR), looked up in the underlay FIB.
        pe: Ipv4Addr,
    },
    /// Encapsulate in VXLAN toward `vtep` (resolved in the underlay FIB) with `vni`. For a routed
    /// (EVPN type-5) next hop, `router_mac` is the inner destination MAC.
    Vxlan {
        /// Remote VTEP address.
        vtep: Ipv4Addr,
        /// VNI carried.
        vni: Vni,
        /// Inner destination MAC for routed VXLAN.
        router_mac: Option<MacAddr>,
    },
    /// Equal-cost multipath: one member per flow, chosen by the 5-tuple hash.
    Ecmp {
        /// Member next hops (none of them an ECMP group itself).
        members: Vec<NextHopId>,
    },
    /// An address of the router itself: ICMP echo answered, everything else to the host.
    Receive,
    /// Hand to the host stack.
    ToHost,
    /// Drop, counted as `blackhole`.
    Blackhole,
}

/// What to do with a packet whose top label is in the ILM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum IlmAction {
    /// Per-VRF label: pop and look the IP destination up in `vrf`.
    PopLookup {
        /// VRF to look up in.
        vrf: VrfId,
    },
    /// Per-CE (per-next-hop) label: pop and forward to `nexthop` without a lookup. `vrf` is used
    /// to route ICMP the router generates for such packets.
    PopForward {
        /// The VRF the next hop belongs to.
        vrf: VrfId,
        /// Where the packet goes.
        nexthop: NextHopId,
    },
    /// Swap the top label for `out` and send toward `pe` through the underlay.
    Swap {
        /// Outgoing label.
        out: Label,
        /// Next LSR, resolved in the underlay FIB.
        pe: Ipv4Addr,
    },
}

/// Where a MAC lives in a bridge domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacDest {
    /// Behind a local port.
    Port(PortId),
    /// Behind a remote VTEP.
    Vtep(Ipv4Addr),
}

/// What a VNI arriving from the core maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VniTarget {
    /// L2: a bridge domain.
    Bridge(BridgeDomainId),
    /// L3 (EVPN type-5): route the inner packet in a VRF.
    Vrf(VrfId),
}

/// Which FIB a route command addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// A customer VRF.
    Vrf(VrfId),
    /// The core (global) table that resolves PEs and VTEPs.
    Underlay,
}

/// One change to the tables: the narrow, serialisable type every writer uses (config loader,
/// table socket, control process).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum TableCommand {
    /// Forget everything: the first command of a full-state replacement.
    Clear,
    /// Router-wide settings.
    Router(RouterSettings),
    /// Add or replace a port.
    Port(Port),
    /// Add or rename a VRF (its routes are kept).
    Vrf {
        /// Dense id.
        id: VrfId,
        /// Name.
        name: String,
        /// ICMP source address.
        source: Option<Ipv4Addr>,
        /// Count packets and bytes forwarded per prefix (OpenConfig AFT entry counters).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        prefix_counters: bool,
    },
    /// Add or replace a next hop.
    NextHop {
        /// Id in the arena.
        id: NextHopId,
        /// The next hop.
        nexthop: NextHop,
    },
    /// Remove a next hop (routes still pointing at it are refused first).
    RemoveNextHop {
        /// Id in the arena.
        id: NextHopId,
    },
    /// Install or replace a route.
    Route {
        /// Which FIB.
        table: Table,
        /// The prefix.
        prefix: Ipv4Prefix,
        /// Where it goes.
        nexthop: NextHopId,
    },
    /// Withdraw a route.
    Withdraw {
        /// Which FIB.
        table: Table,
        /// The prefix.
        prefix: Ipv4Prefix,
    },
    /// Install or replace an ILM entry.
    Label {
        /// Incoming label.
        label: Label,
        /// What to do.
        #[serde(flatten)]
        action: IlmAction,
    },
    /// Remove an ILM entry.
    RemoveLabel {
        /// Incoming label.
        label: Label,
    },
    /// A static neighbour (IP → MAC on a port).
    Neighbour {
        /// Port.
        port: PortId,
        /// Neighbour address.
        ip: Ipv4Addr,
        /// Its MAC.
        mac: MacAddr,
    },
    /// Remove a static neighbour.
    RemoveNeighbour {
        /// Port.
        port: PortId,
        /// Neighbour address.
        ip: Ipv4Addr,
    },
    /// Add or replace a bridge domain (its MACs and bindings are kept).
    Bridge {
        /// Dense id.
        id: BridgeDomainId,
        /// Name.
        name: String,
        /// VNI.
        vni: Vni,
        /// Local ports.
        ports: Vec<PortId>,
    },
    /// Replace a bridge domain's flood list.
    FloodList {
        /// Bridge domain.
        bridge: BridgeDomainId,
        /// Remote VTEPs.
        vteps: Vec<Ipv4Addr>,
    },
    /// Install a MAC in a bridge domain.
    BridgeMac {
        /// Bridge domain.
        bridge: BridgeDomainId,
        /// MAC.
        mac: MacAddr,
        /// Where it lives.
        dest: MacDest,
    },
    /// Remove a MAC from a bridge domain.
    RemoveBridgeMac {
        /// Bridge domain.
        bridge: BridgeDomainId,
        /// MAC.
        mac: MacAddr,
    },
    /// An IP→MAC binding for ARP suppression.
    ArpBinding {
        /// Bridge domain.
        bridge: BridgeDomainId,
        /// IP.
        ip: Ipv4Addr,
        /// MAC.
        mac: MacAddr,
    },
    /// Remove an ARP suppression binding.
    RemoveArpBinding {
        /// Bridge domain.
        bridge: BridgeDomainId,
        /// IP.
        ip: Ipv4Addr,
    },
    /// Map a VNI arriving from the core.
    VniMap {
        /// VNI.
        vni: Vni,
        /// Bridge domain or VRF.
        target: VniTarget,
    },
    /// Remove a VNI mapping.
    RemoveVni {
        /// VNI.
        vni: Vni,
    },
}
