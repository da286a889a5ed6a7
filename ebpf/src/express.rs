//! The express tier: the XDP program forwards the common cases itself and leaves the rest
//! to the AF_XDP path.
//!
//! The contract: [`run`] either forwards the frame — rewritten exactly as the userspace
//! pipeline (`dataplane/src/pipeline`) would have rewritten it, counted in this tier's
//! per-CPU counters, and redirected through `EX_EGRESS` — or leaves the frame as it was
//! received (at most trimmed of Ethernet padding, which the pipeline trims too) and counts
//! why, in which case the caller steers it to the AF_XDP socket as before. Every check that
//! could make the pipeline drop a packet, answer it with ICMP, or do anything else than
//! forward it is made before the frame is touched; when any is in doubt, the frame is
//! punted. The tier handles (customer and core ports untagged or tagged with their 802.1Q
//! VLAN id — frames leave a tagged port with its tag; VXLAN only on untagged ones):
//! - IPv4 on a customer port routed in its VRF (optionally source-checked): out of a local
//!   port to a resolved neighbour, or with a pushed label stack (VPN label, transport
//!   labels) toward the core, or in VXLAN to a remote VTEP (EVPN type-5); over ECMP groups
//!   by the flow hash, as the pipeline picks;
//! - on a core port, a bottom-of-stack per-VRF label: pop (uniform or pipe TTL), then the
//!   same VRF lookup; a per-CE label: pop, then its next hop; a swap label: swap and push
//!   the transport labels toward the next LSR; explicit null over any of them: popped;
//! - on a core port, VXLAN to the local VTEP with an L3 VNI (EVPN type-5): decapsulate,
//!   then the same VRF lookup; with an L2 VNI, from the VTEP its inner source MAC was learned
//!   behind, to a MAC on a local bridge port: decapsulate and send;
//! - on an untagged bridge port, a frame from a MAC learned there to a known unicast MAC: out
//!   of the local port it is behind, or in VXLAN to its VTEP;
//! - on an untagged bridge port, an ARP request from a MAC learned there for an address
//!   with a binding in its domain: answered with the bound MAC (ARP suppression);
//! - an ARP request for a port's own address, or (proxy ARP on a customer port) for an
//!   address its VRF routes elsewhere, from a neighbour known with that MAC: answered back
//!   out of the port (redirected to it).
//!
//! Who writes what: the dataplane's mirror (`dataplane/src/express.rs`) is the only writer
//! of the tables (`EX_CONFIG`, `EX_PORTS`, `EX_FIB`, `EX_FIB_SLOTS`, `EX_NH`, `EX_ADJ`, `EX_ILM`,
//! `EX_VNI`, `EX_EGRESS`); this program only reads them, and is the only writer of the counters (one
//! copy per CPU).

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    macros::map,
    maps::{Array, DevMap, HashMap, PerCpuArray, PerCpuHashMap},
    programs::XdpContext,
};
use carrier_common::express::{
    ExAdj, ExBytes, ExConfig, ExIlm, ExPort, ExPortStats, Punt, CONFIG_ON, MAX_GROWTH, CONFIG_PIPE, ENCAP_NONE, ENCAP_VXLAN, ENCAP_VXLAN_L2, VXLAN_OVERHEAD, ExMac, ExNeigh, MacKey, PortAddr, ARP_ANY, PORT_PROXY_ARP, MAC_LEARNED, MAX_MACS, MAX_NEIGH, PORT_BRIDGE, VNI_BRIDGE,
    FIB_ENTRIES, FIB_PLY, FIB_PUNT, ILM_POP_FORWARD, ILM_POP_LOOKUP, ILM_SWAP, MAX_ADJ, PORT_PUNT, NH_BUCKETS_SHIFT, NH_SLOT_MASK, MAX_LABEL, MAX_NEXTHOPS, MAX_PUSH, MAX_ROUTES, MAX_VNIS, MAX_VRFS, NO_PORT,
    PORT_ANTI_SPOOF, PORT_CORE, PORT_VRF, TC_FROM_IP, MAX_COUNTED_ROUTES, ROUTE_COUNTED,
};
use carrier_common::{MAX_PORTS, VXLAN_UDP_PORT};

use crate::parse::{EthHdr, Frame, Ipv4Hdr, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV4};

/// EtherType of MPLS unicast (RFC 3032).
const ETH_P_MPLS_UC: u16 = 0x8847;
/// Outer IPv4 (no options), UDP and VXLAN headers.
const VXLAN_OUTER: usize = 20 + 8 + 8;
/// Length of an Ethernet header.
const ETH_LEN: usize = 14;
/// `Plan::vrf` of a packet not looked up in a VRF (nothing counted).
const NO_VRF: u32 = u32::MAX;

#[map(name = "EX_CONFIG")]
static CONFIG: Array<ExConfig> = Array::with_max_entries(1, 0);
#[map(name = "EX_PORTS")]
static PORTS: Array<ExPort> = Array::with_max_entries(MAX_PORTS, 0);
#[map(name = "EX_FIB")]
static FIB: Array<u32> = Array::with_max_entries(FIB_ENTRIES, 0);
#[map(name = "EX_FIB_SLOTS")]
static FIB_SLOTS: Array<u32> = Array::with_max_entries(MAX_ROUTES, 0);
#[map(name = "EX_NH")]
static NH: Array<u32> = Array::with_max_entries(MAX_NEXTHOPS, 0);
#[map(name = "EX_NH_ARP")]
static NH_ARP: Array<u32> = Array::with_max_entries(MAX_NEXTHOPS, 0);
#[map(name = "EX_ADJ")]
static ADJ: Array<ExAdj> = Array::with_max_entries(MAX_ADJ, 0);
#[map(name = "EX_ILM")]
static ILM: Array<ExIlm> = Array::with_max_entries(MAX_LABEL, 0);
#[map(name = "EX_EGRESS")]
static EGRESS: DevMap = DevMap::with_max_entries(MAX_PORTS, 0);
#[map(name = "EX_VNI")]
static VNI: HashMap<u32, u32> = HashMap::with_max_entries(MAX_VNIS, 0);
#[map(name = "EX_MACS")]
static MACS: HashMap<MacKey, ExMac> = HashMap::with_max_entries(MAX_MACS, 0);
#[map(name = "EX_NEIGH")]
static NEIGH: HashMap<PortAddr, ExNeigh> = HashMap::with_max_entries(MAX_NEIGH, 0);
#[map(name = "EX_ARP_BIND")]
static ARP_BIND: HashMap<PortAddr, ExNeigh> = HashMap::with_max_entries(MAX_NEIGH, 0);
#[map(name = "EX_OWN")]
static OWN: HashMap<PortAddr, u32> = HashMap::with_max_entries(MAX_NEIGH, 0);
#[map(name = "EX_PORT_STATS")]
static PORT_STATS: PerCpuArray<ExPortStats> = PerCpuArray::with_max_entries(MAX_PORTS, 0);
#[map(name = "EX_VRF_STATS")]
static VRF_STATS: PerCpuArray<ExBytes> = PerCpuArray::with_max_entries(MAX_VRFS, 0);
#[map(name = "EX_LABEL_STATS")]
static LABEL_STATS: PerCpuArray<ExBytes> = PerCpuArray::with_max_entries(MAX_LABEL, 0);
#[map(name = "EX_ADJ_STATS")]
static ADJ_STATS: PerCpuArray<ExBytes> = PerCpuArray::with_max_entries(MAX_ADJ, 0);
/// Entries made on first use, not preallocated (`BPF_F_NO_PREALLOC`): memory follows the
/// counted routes that carried traffic.
#[map(name = "EX_ROUTE_STATS")]
static ROUTE_STATS: PerCpuHashMap<u32, ExBytes> = PerCpuHashMap::with_max_entries(MAX_COUNTED_ROUTES, 1);
/// The identification of the outer IPv4 headers this CPU writes (VXLAN), as the pipeline's
/// per-worker counter.
#[map(name = "EX_IDENT")]
static IDENT: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Everything decided about a frame before it is touched.
struct Plan {
    /// Offset of the IPv4 header in the frame as received.
    ip_off: usize,
    /// The IPv4 total length.
    total: usize,
    /// Where it goes.
    adj: ExAdj,
    /// The adjacency's slot in `EX_ADJ`.
    adj_slot: u32,
    /// The IPv4 TTL and header checksum to write.
    ttl: u8,
    checksum: u16,
    /// Traffic class and TTL of the labels written.
    tc: u8,
    label_ttl: u8,
    /// A swap: the incoming label's S bit, for the last label written; the IPv4 header (at
    /// `ip_off` when there is one) and what follows are left alone.
    swap_bottom: Option<u32>,
    /// The VRF looked up, and the length of the frame at the lookup.
    vrf: u32,
    lookup_len: usize,
    /// The label popped, or `None`.
    label_in: Option<u32>,
    /// The flow hash (VXLAN source port).
    hash: u32,
    /// The route's slot + 1 when its VRF counts per prefix, else 0.
    route: u32,
}

/// A bridged frame's way out, decided before it is touched.
struct Bridged {
    /// The egress port slot.
    egress: u32,
    /// Bytes of the frame as received to keep (Ethernet padding after a VXLAN packet goes).
    keep: usize,
    /// Bytes to strip from the front (the outer headers of decapsulated VXLAN).
    strip: usize,
    /// Toward a VTEP: the record (outer headers) and its slot, and the flow hash.
    encap: Option<(ExAdj, u32, u32)>,
}

/// What the tier does with a frame.
enum Todo {
    Routed(Plan),
    Bridged(Bridged),
    /// Answer the ARP request (of a known neighbour, for an own address) with this MAC.
    ArpReply([u8; 6], ArpKind),
}

/// Which ARP reply: for an own address, proxy ARP, ARP suppression (counted apart).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ArpKind {
    Own,
    Proxy,
    Suppressed,
}

/// Forward the frame of port `slot` if the tier can: `Some(action)`. `None` when the tier
/// is off or leaves the frame to the AF_XDP path (counted by reason when the tier is on).
#[inline(always)]
pub fn run(ctx: &XdpContext, slot: u32) -> Option<u32> {
    // Read once per frame: the on switch, the TTL mode and the VTEP.
    let config = CONFIG.get(0).copied().unwrap_or_default();
    if config.flags & CONFIG_ON == 0 {
        return None;
    }
    // The ingress port's counters, looked up once per frame (every slot has an entry).
    let stats = PORT_STATS.get_ptr_mut(slot)?;
    probe_headroom(ctx, stats);
    let frame = Frame::new(ctx);
    let orig_len = frame.len();
    let result = match plan(&frame, slot, &config) {
        Ok(Todo::Routed(plan)) => apply(ctx, stats, orig_len, &plan),
        Ok(Todo::Bridged(b)) => apply_bridge(ctx, stats, orig_len, &b),
        Ok(Todo::ArpReply(mac, proxy)) => arp_reply(ctx, slot, stats, orig_len, mac, proxy),
        Err(p) => Err(p),
    };
    match result {
        Ok(action) => Some(action),
        Err(reason) => {
            let i = reason as usize;
            // SAFETY: a per-CPU array value: only this program on this CPU writes it.
            let s = unsafe { &mut *stats };
            if i < s.punts.len() {
                s.punts[i] += 1;
            }
            None
        }
    }
}

/// On this CPU's first frame of a port (`stats`, its counters): is there room for the largest push in front of
/// it? Moves the frame's head by [`MAX_GROWTH`] and back (a frame of at least an Ethernet
/// header always moves back), and records the answer in the port's counters for the
/// dataplane's log; the frame is left as it was.
#[inline(always)]
fn probe_headroom(ctx: &XdpContext, stats: *mut ExPortStats) {
    // SAFETY: a per-CPU value, written only by this program on this CPU.
    let s = unsafe { &mut *stats };
    if s.headroom_ok != 0 || s.headroom_short != 0 || ctx.data_end() < ctx.data() + ETH_LEN {
        return;
    }
    // SAFETY: helper calls on the program's own context; the second undoes the first.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(MAX_GROWTH as i32)) } == 0 {
        unsafe { bpf_xdp_adjust_head(ctx.ctx, MAX_GROWTH as i32) };
        s.headroom_ok = 1;
    } else {
        s.headroom_short = 1;
    }
}

#[inline(always)]
fn plan(frame: &Frame, slot: u32, config: &ExConfig) -> Result<Todo, Punt> {
    let port = *PORTS.get(slot).ok_or(Punt::Port)?;
    if port.kind == PORT_BRIDGE {
        return plan_bridge(frame, port.vrf, slot);
    }
    let eth: &EthHdr = frame.header(0).ok_or(Punt::L2)?;
    let ether_type = u16::from_be_bytes(eth.ether_type);
    // ARP only on untagged ports (on a tagged one, an untagged request is the pipeline's
    // `vlan-mismatch`, and a tagged one is punted below).
    if ether_type == ETH_P_ARP && port.kind != PORT_PUNT && port.vlan == 0 && (eth.dst == port.mac || eth.dst == [0xff; 6]) {
        return plan_arp(frame, slot, &port).map(|proxy| Todo::ArpReply(port.mac, if proxy { ArpKind::Proxy } else { ArpKind::Own }));
    }
    if eth.dst != port.mac {
        return Err(Punt::L2);
    }
    // A tagged port takes only frames with its VLAN id, an untagged one only untagged frames
    // (the pipeline drops the others as `vlan-mismatch`).
    let tagged = u16::from_be_bytes(eth.ether_type) == ETH_P_8021Q;
    let (l2, ether_type) = if port.vlan != 0 {
        // TPID, TCI, the inner EtherType.
        let tag: &[u8; 6] = frame.header(ETH_LEN - 2).ok_or(Punt::L2)?;
        if !tagged || u16::from_be_bytes([tag[2], tag[3]]) & 0x0fff != port.vlan {
            return Err(Punt::L2);
        }
        (ETH_LEN + 4, u16::from_be_bytes([tag[4], tag[5]]))
    } else if tagged {
        return Err(Punt::L2);
    } else {
        (ETH_LEN, u16::from_be_bytes(eth.ether_type))
    };
    if port.kind == PORT_VRF && ether_type == ETH_P_IPV4 {
        plan_routed(frame, l2, &port, slot, config.flags).map(Todo::Routed)
    } else if port.kind == PORT_CORE && ether_type == ETH_P_MPLS_UC {
        plan_labelled(frame, l2, config.flags).map(Todo::Routed)
    } else if port.kind == PORT_CORE && ether_type == ETH_P_IPV4 && l2 == ETH_LEN {
        plan_decap(frame, config.vtep, config.flags)
    } else {
        Err(Punt::L2)
    }
}

/// The facts of a checked IPv4 header (at `off` of `frame`).
struct Ip<'f> {
    frame: &'f Frame,
    off: usize,
    frag: u16,
    total: usize,
    ttl: u8,
    protocol: u8,
    tos: u8,
    checksum: u16,
    /// The ones-complement sum of the header's words but the checksum, unfolded.
    sum_rest: u32,
    src: [u8; 4],
    dst: [u8; 4],
}

impl Ip<'_> {
    /// `carrier_common::flow_hash`, as the pipeline computes it; only ECMP and VXLAN ask,
    /// so the ports are read only then.
    #[inline(always)]
    fn hash(&self) -> u32 {
        let ports = l4_ports(self.frame, self.off, self.protocol, self.frag, self.total);
        carrier_common::flow_hash(self.src, self.dst, self.protocol, ports)
    }
}

/// The flow hash's ports, as `Ipv4Packet::flow_hash` reads them: the first four payload bytes
/// of a TCP or UDP datagram (IPv4 without options at `off`, `total` bytes, fragment field
/// `frag`) that is not a fragment and carries them; 0 otherwise.
#[inline(always)]
fn l4_ports(frame: &Frame, off: usize, protocol: u8, frag: u16, total: usize) -> u32 {
    if (protocol == 6 || protocol == 17) && frag & 0x3fff == 0 && total >= 24 {
        frame.header::<[u8; 4]>(off + 20).map_or(0, |p| u32::from_be_bytes(*p))
    } else {
        0
    }
}

/// A 20-byte IPv4 header (no options) at `off` whose lengths fit the frame and whose
/// checksum is right; anything else is the pipeline's.
#[inline(always)]
fn checked_ipv4(frame: &Frame, off: usize) -> Result<Ip<'_>, Punt> {
    let ip: &Ipv4Hdr = frame.header(off).ok_or(Punt::Ipv4)?;
    if ip.version_ihl != 0x45 {
        return Err(Punt::Ipv4);
    }
    let total = usize::from(u16::from_be_bytes(ip.total_len));
    if total < 20 || off + total > frame.len() {
        return Err(Punt::Ipv4);
    }
    let w = |a: u8, b: u8| u32::from(u16::from_be_bytes([a, b]));
    let sum_rest = w(ip.version_ihl, ip.tos)
        + w(ip.total_len[0], ip.total_len[1])
        + w(ip.id[0], ip.id[1])
        + w(ip.frag[0], ip.frag[1])
        + w(ip.ttl, ip.protocol)
        + w(ip.src[0], ip.src[1])
        + w(ip.src[2], ip.src[3])
        + w(ip.dst[0], ip.dst[1])
        + w(ip.dst[2], ip.dst[3]);
    let checksum = u16::from_be_bytes(ip.checksum);
    if fold(sum_rest + u32::from(checksum)) != 0 {
        return Err(Punt::Ipv4);
    }
    let frag = u16::from_be_bytes(ip.frag);
    Ok(Ip { frame, off, frag, total, ttl: ip.ttl, protocol: ip.protocol, tos: ip.tos, checksum, sum_rest, src: ip.src, dst: ip.dst })
}

/// Folds the carries of a partial ones-complement sum and returns its complement (what
/// goes into a checksum field); as `checksum::fold` in the dataplane.
#[inline(always)]
fn fold(sum: u32) -> u16 {
    let mut acc = (sum & 0xffff) + (sum >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// RFC 1624 eq. 3, as `checksum::update` in the dataplane.
#[inline(always)]
fn update(checksum: u16, old_word: u16, new_word: u16) -> u16 {
    fold(u32::from(!checksum) + u32::from(!old_word) + u32::from(new_word))
}

/// The adjacency a route in `vrf` gives for `addr`: (record, slot, the route's slot + 1 when
/// it is counted, else 0). An ECMP next hop's bucket is chosen by the flow hash of `flow`
/// (the first bucket without one: every bucket answers the source check alike).
#[inline(always)]
fn lookup(vrf: u32, addr: [u8; 4], flow: Option<&Ip>) -> Option<(ExAdj, u32, u32)> {
    let (value, leaf) = route_entry(vrf, addr)?;
    let (adj, slot) = records(value & !ROUTE_COUNTED, || flow.map_or(0, Ip::hash))?;
    Some((adj, slot, if value & ROUTE_COUNTED != 0 { leaf } else { 0 }))
}

/// The next-hop id of the route in `vrf` for `addr`.
#[inline(always)]
fn route(vrf: u32, addr: [u8; 4]) -> Option<u32> {
    route_entry(vrf, addr).map(|(value, _)| value & !ROUTE_COUNTED)
}

/// The `EX_FIB_SLOTS` value of the route in `vrf` for `addr`, and its slot + 1.
#[inline(always)]
fn route_entry(vrf: u32, addr: [u8; 4]) -> Option<(u32, u32)> {
    if vrf >= MAX_VRFS {
        return None;
    }
    // The VRF's root, then a ply per further byte (see `FIB`), unrolled.
    let mut leaf = *FIB.get(vrf * 256 + u32::from(addr[0]))?;
    if leaf & FIB_PLY != 0 {
        leaf = *FIB.get((leaf & !FIB_PLY) * 256 + u32::from(addr[1]))?;
        if leaf & FIB_PLY != 0 {
            leaf = *FIB.get((leaf & !FIB_PLY) * 256 + u32::from(addr[2]))?;
            if leaf & FIB_PLY != 0 {
                leaf = *FIB.get((leaf & !FIB_PLY) * 256 + u32::from(addr[3]))?;
            }
        }
    }
    if leaf == 0 || leaf == FIB_PUNT || leaf & FIB_PLY != 0 {
        return None;
    }
    FIB_SLOTS.get(leaf - 1).map(|v| (*v, leaf))
}

/// Next hop `nh`'s record for the flow `hash` gives (asked only of an ECMP next hop):
/// (record, slot).
#[inline(always)]
fn records(nh: u32, hash: impl FnOnce() -> u32) -> Option<(ExAdj, u32)> {
    record_at(*NH.get(nh)?, hash)
}

/// The record an `EX_NH` value `at` gives for the flow `hash` gives: (record, slot).
#[inline(always)]
fn record_at(at: u32, hash: impl FnOnce() -> u32) -> Option<(ExAdj, u32)> {
    let first = at & NH_SLOT_MASK;
    if first == 0 {
        return None;
    }
    let buckets = (at >> NH_BUCKETS_SHIFT) + 1;
    let bucket = if buckets > 1 { hash() % buckets } else { 0 };
    let slot = first - 1 + bucket;
    ADJ.get(slot).map(|a| (*a, slot))
}

/// IPv4 from a customer port: anti-spoof, lookup, TTL.
#[inline(always)]
fn plan_routed(frame: &Frame, l2: usize, port: &ExPort, slot: u32, flags: u32) -> Result<Plan, Punt> {
    let ip = checked_ipv4(frame, l2)?;
    let vrf = u32::from(port.vrf);
    if port.flags & PORT_ANTI_SPOOF != 0 {
        match lookup(vrf, ip.src, None) {
            Some((a, _, _)) if u32::from(a.rpf_port) == slot => {}
            _ => return Err(Punt::AntiSpoof),
        }
    }
    let (adj, adj_slot, route) = lookup(vrf, ip.dst, Some(&ip)).ok_or(Punt::NoRoute)?;
    if ip.ttl <= 1 {
        return Err(Punt::Ttl);
    }
    let ttl = ip.ttl - 1;
    let checksum = update(ip.checksum, u16::from_be_bytes([ip.ttl, ip.protocol]), u16::from_be_bytes([ttl, ip.protocol]));
    finish(l2, 0, &ip, adj, adj_slot, ttl, checksum, vrf, None, flags, route)
}

/// A labelled packet from the core. IPv4 explicit null over another label is popped (RFC
/// 4182) and that label handled instead; a bottom-of-stack per-VRF label is popped and the
/// packet looked up in the VRF, a per-CE label popped and the packet sent to its next hop; a
/// swap label swapped (transport labels pushed over it) toward the next LSR.
#[inline(always)]
fn plan_labelled(frame: &Frame, l2: usize, flags: u32) -> Result<Plan, Punt> {
    let mut off = l2;
    let mut lse = u32::from_be_bytes(*frame.header::<[u8; 4]>(off).ok_or(Punt::Label)?);
    if lse >> 12 == 0 && lse & 0x100 == 0 {
        off += 4;
        lse = u32::from_be_bytes(*frame.header::<[u8; 4]>(off).ok_or(Punt::Label)?);
    }
    let label = lse >> 12;
    let bottom = lse & 0x100 != 0;
    let label_ttl = (lse & 0xff) as u8;
    // Explicit null at the bottom and the other reserved labels are the pipeline's.
    if !(16..MAX_LABEL).contains(&label) {
        return Err(Punt::Label);
    }
    let ilm = *ILM.get(label).ok_or(Punt::Label)?;
    match ilm.action {
        ILM_POP_LOOKUP | ILM_POP_FORWARD if bottom => {}
        ILM_SWAP => return plan_swap(frame, off, lse, ilm.nexthop),
        _ => return Err(Punt::Label),
    }
    let ip_off = off + 4;
    let ip = checked_ipv4(frame, ip_off)?;
    let (ttl, checksum) = if flags & CONFIG_PIPE == 0 {
        // Uniform (RFC 3443): the label TTL, decremented by this hop, comes back into the IP
        // header when lower; the pop was the hop, so no further decrement.
        let t = label_ttl.saturating_sub(1);
        if t == 0 {
            return Err(Punt::Ttl);
        }
        if t < ip.ttl {
            let old = u32::from(u16::from_be_bytes([ip.ttl, ip.protocol]));
            let new = u32::from(u16::from_be_bytes([t, ip.protocol]));
            (t, fold(ip.sum_rest - old + new))
        } else {
            (ip.ttl, ip.checksum)
        }
    } else {
        if ip.ttl <= 1 {
            return Err(Punt::Ttl);
        }
        let t = ip.ttl - 1;
        (t, update(ip.checksum, u16::from_be_bytes([ip.ttl, ip.protocol]), u16::from_be_bytes([t, ip.protocol])))
    };
    if ilm.action == ILM_POP_LOOKUP {
        let vrf = u32::from(ilm.vrf);
        let (adj, adj_slot, route) = lookup(vrf, ip.dst, Some(&ip)).ok_or(Punt::NoRoute)?;
        finish(ip_off, 0, &ip, adj, adj_slot, ttl, checksum, vrf, Some(label), flags, route)
    } else {
        // Per-CE: no lookup, so no VRF lookup counted.
        let (adj, adj_slot) = records(ilm.nexthop, || ip.hash()).ok_or(Punt::NextHop)?;
        finish(ip_off, 0, &ip, adj, adj_slot, ttl, checksum, NO_VRF, Some(label), flags, 0)
    }
}

/// Swap `lse` (at `off`) by next hop `nexthop`'s record: its labels replace the incoming one
/// (the last keeps the incoming S bit), all with the incoming TC and TTL − 1, whatever is
/// under them left as it is (padding included, as in the pipeline).
#[inline(always)]
fn plan_swap(frame: &Frame, off: usize, lse: u32, nexthop: u32) -> Result<Plan, Punt> {
    let ttl = (lse & 0xff) as u8;
    if ttl <= 1 {
        return Err(Punt::Ttl);
    }
    let at = *NH.get(nexthop).ok_or(Punt::NextHop)?;
    // ECMP toward the next LSR hashes what is under the stack: the pipeline's.
    if at >> NH_BUCKETS_SHIFT != 0 {
        return Err(Punt::NextHop);
    }
    let (adj, adj_slot) = record_at(at, || 0).ok_or(Punt::NextHop)?;
    let n = usize::from(adj.nlabels);
    if adj.port == NO_PORT || adj.encap != ENCAP_NONE || n == 0 || n > MAX_PUSH || EGRESS.get(u32::from(adj.port)).is_none() {
        return Err(Punt::NextHop);
    }
    let rest = off + 4;
    let len = frame.len();
    if len < rest || len - rest + 4 * n > usize::from(adj.mtu) {
        return Err(Punt::Mtu);
    }
    Ok(Plan {
        ip_off: rest,
        total: len - rest,
        adj,
        adj_slot,
        ttl: 0,
        checksum: 0,
        tc: ((lse >> 9) & 7) as u8,
        label_ttl: ttl - 1,
        swap_bottom: Some(lse & 0x100),
        vrf: NO_VRF,
        lookup_len: 0,
        label_in: Some(lse >> 12),
        hash: 0,
        route: 0,
    })
}

/// IPv4 on a core port: VXLAN to the local VTEP with an L3 VNI (EVPN type-5) is
/// decapsulated and its inner IPv4 packet routed in the VNI's VRF; with an L2 VNI, its inner
/// frame bridged. Anything else on a core port (transit IPv4, the router's own traffic) is the
/// pipeline's.
#[inline(always)]
fn plan_decap(frame: &Frame, vtep: [u8; 4], flags: u32) -> Result<Todo, Punt> {
    let outer = checked_ipv4(frame, ETH_LEN)?;
    if vtep == [0; 4] || outer.dst != vtep || outer.protocol != 17 {
        return Err(Punt::L2);
    }
    if outer.frag & 0x3fff != 0 {
        return Err(Punt::Vxlan);
    }
    let udp: &[u8; 16] = frame.header(ETH_LEN + 20).ok_or(Punt::Vxlan)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != VXLAN_UDP_PORT {
        return Err(Punt::L2);
    }
    // The UDP length covers exactly the rest of the outer packet, and the I flag is set.
    if usize::from(u16::from_be_bytes([udp[4], udp[5]])) != outer.total - 20 || udp[8] & 0x08 == 0 {
        return Err(Punt::Vxlan);
    }
    let vni = u32::from_be_bytes([0, udp[12], udp[13], udp[14]]);
    // SAFETY: a hash map value read once (userspace replaces entries whole, 4 bytes).
    let vrf = unsafe { VNI.get(vni) }.copied().ok_or(Punt::Vxlan)?;
    let inner_l2 = ETH_LEN + VXLAN_OUTER;
    let inner: &EthHdr = frame.header(inner_l2).ok_or(Punt::Vxlan)?;
    if vrf & VNI_BRIDGE != 0 {
        // An L2 VNI: the inner frame is bridged, learned from the outer source.
        let et = u16::from_be_bytes(inner.ether_type);
        if et == ETH_P_8021Q || et == ETH_P_ARP || inner.src[0] & 1 != 0 || inner.dst[0] & 1 != 0 {
            return Err(Punt::Bridge);
        }
        let bd = vrf as u16;
        // SAFETY: hash map values are replaced whole by userspace, never written in place.
        let s = unsafe { MACS.get(MacKey { bd, mac: inner.src }) }.ok_or(Punt::Bridge)?;
        if s.flags & MAC_LEARNED == 0 || s.port != NO_PORT || s.vtep != outer.src {
            return Err(Punt::Bridge);
        }
        // SAFETY: as above.
        let d = *unsafe { MACS.get(MacKey { bd, mac: inner.dst }) }.ok_or(Punt::Bridge)?;
        let keep = ETH_LEN + outer.total;
        return bridge_to(frame, d, u32::MAX, inner_l2, keep - inner_l2, keep, true).map(Todo::Bridged);
    }
    if u16::from_be_bytes(inner.ether_type) != ETH_P_IPV4 {
        return Err(Punt::Vxlan);
    }
    let ip_off = inner_l2 + ETH_LEN;
    let ip = checked_ipv4(frame, ip_off)?;
    // The inner packet ends inside the outer one.
    if ip_off + ip.total > ETH_LEN + outer.total {
        return Err(Punt::Ipv4);
    }
    let (adj, adj_slot, route) = lookup(vrf, ip.dst, Some(&ip)).ok_or(Punt::NoRoute)?;
    if ip.ttl <= 1 {
        return Err(Punt::Ttl);
    }
    let ttl = ip.ttl - 1;
    let checksum = update(ip.checksum, u16::from_be_bytes([ip.ttl, ip.protocol]), u16::from_be_bytes([ttl, ip.protocol]));
    finish(ip_off, inner_l2, &ip, adj, adj_slot, ttl, checksum, vrf, None, flags, route).map(Todo::Routed)
}

/// An ARP request for an address of this port — or, on a customer port with proxy ARP, for
/// an address its VRF routes elsewhere (`Ok(true)`) — from a neighbour the router already
/// knows with that MAC (so the pipeline would learn nothing from it), on a port the tier may
/// send on: the program answers it. Any other ARP (replies, gratuitous, for other addresses,
/// from unknown senders) is the pipeline's.
#[inline(always)]
fn plan_arp(frame: &Frame, slot: u32, port: &ExPort) -> Result<bool, Punt> {
    let arp = arp_request(frame).ok_or(Punt::L2)?;
    if frame.len() - ETH_LEN > usize::from(port.mtu) {
        return Err(Punt::Mtu);
    }
    // The reply leaves through the egress map, as forwarded frames do: only on ports that
    // take redirected frames.
    if EGRESS.get(slot).is_none() {
        return Err(Punt::NextHop);
    }
    // SAFETY: hash map values are replaced whole by userspace, never written in place.
    let own = unsafe { OWN.get(PortAddr { slot: slot as u16, pad: 0, addr: arp.tpa }) }.is_some();
    // Proxy ARP: an address the port's VRF routes elsewhere than back out of this port.
    if !own {
        if port.flags & PORT_PROXY_ARP == 0 || port.kind != PORT_VRF {
            return Err(Punt::L2);
        }
        let nh = route(u32::from(port.vrf), arp.tpa).ok_or(Punt::L2)?;
        match NH_ARP.get(nh).copied().unwrap_or(0) {
            ARP_ANY => {}
            p if p != 0 && p - 1 != slot => {}
            _ => return Err(Punt::L2),
        }
    }
    // SAFETY: as above.
    match unsafe { NEIGH.get(PortAddr { slot: slot as u16, pad: 0, addr: arp.spa }) } {
        Some(n) if n.mac == arp.sha => Ok(!own),
        _ => Err(Punt::L2),
    }
}

/// The frame's Ethernet/IPv4 ARP request, unless it is gratuitous (the sender asks for its
/// own address): the only ARP the program answers.
#[inline(always)]
fn arp_request(frame: &Frame) -> Option<&crate::parse::ArpIpv4> {
    let arp: &crate::parse::ArpIpv4 = frame.header(ETH_LEN)?;
    let request = arp.htype == [0, 1] && arp.ptype == [8, 0] && arp.hlen == 6 && arp.plen == 4 && arp.oper == [0, 1] && arp.spa != arp.tpa;
    request.then_some(arp)
}

/// Turn the ARP request into its reply (`mac` is-at the requested address), back out of the
/// port it came in on, as the pipeline's `arp_input` does.
///
/// Redirected to the ingress port through `EX_EGRESS`, not `XDP_TX`: a veth queues an
/// `XDP_TX` frame on its peer but wakes the peer's NAPI only when an XDP program runs
/// there (`veth_xdp_flush` in the kernel's `drivers/net/veth.c`), so behind a peer that runs
/// NAPI for GRO alone — a customer's or the core's veth — the reply waited for the next frame
/// to come its way, seconds or for ever. A redirect is sent with `XDP_XMIT_FLUSH`, which
/// wakes it.
#[inline(always)]
fn arp_reply(ctx: &XdpContext, slot: u32, stats: *mut ExPortStats, len: usize, mac: [u8; 6], kind: ArpKind) -> Result<u32, Punt> {
    let frame = Frame::new(ctx);
    let arp = frame.header_mut::<crate::parse::ArpIpv4>(ETH_LEN).ok_or(Punt::L2)?;
    let (sha, spa, tpa) = (arp.sha, arp.spa, arp.tpa);
    arp.oper = [0, 2];
    arp.sha = mac;
    arp.spa = tpa;
    arp.tha = sha;
    arp.tpa = spa;
    let eth = frame.header_mut::<EthHdr>(0).ok_or(Punt::L2)?;
    eth.dst = sha;
    eth.src = mac;
    count_port(stats, slot, len, len);
    // SAFETY: per-CPU values, written only by this program on this CPU.
    unsafe {
        match kind {
            ArpKind::Own => (*stats).arp_replies += 1,
            ArpKind::Proxy => (*stats).arp_proxy_replies += 1,
            ArpKind::Suppressed => (*stats).arp_suppressed += 1,
        }
    }
    Ok(EGRESS.redirect(slot, 0).unwrap_or_else(|a| a))
}

/// A frame on an untagged bridge port: forwarded when its source is learned on this port and
/// its destination is known unicast, to a local port or a VTEP.
#[inline(always)]
fn plan_bridge(frame: &Frame, bd: u16, slot: u32) -> Result<Todo, Punt> {
    let eth: &EthHdr = frame.header(0).ok_or(Punt::L2)?;
    let et = u16::from_be_bytes(eth.ether_type);
    if et == ETH_P_8021Q || eth.src[0] & 1 != 0 {
        return Err(Punt::Bridge);
    }
    // SAFETY: hash map values are replaced whole by userspace, never written in place.
    let s = unsafe { MACS.get(MacKey { bd, mac: eth.src }) }.ok_or(Punt::Bridge)?;
    if s.flags & MAC_LEARNED == 0 || u32::from(s.port) != slot {
        return Err(Punt::Bridge);
    }
    if et == ETH_P_ARP {
        return plan_arp_suppress(frame, bd, slot).map(|mac| Todo::ArpReply(mac, ArpKind::Suppressed));
    }
    if eth.dst[0] & 1 != 0 {
        return Err(Punt::Bridge);
    }
    // SAFETY: as above.
    let d = *unsafe { MACS.get(MacKey { bd, mac: eth.dst }) }.ok_or(Punt::Bridge)?;
    let len = frame.len();
    bridge_to(frame, d, slot, 0, len, len, false).map(Todo::Bridged)
}

/// ARP suppression (the pipeline's `arp_suppress`): a request on a bridge port, from a MAC
/// learned there, for an address the domain has a binding for is answered with the bound
/// MAC, back out of the port (when it takes redirected frames). Anything else is flooded or
/// learned by the pipeline.
#[inline(always)]
fn plan_arp_suppress(frame: &Frame, bd: u16, slot: u32) -> Result<[u8; 6], Punt> {
    let arp = arp_request(frame).ok_or(Punt::Bridge)?;
    if EGRESS.get(slot).is_none() {
        return Err(Punt::NextHop);
    }
    // SAFETY: hash map values are replaced whole by userspace, never written in place.
    unsafe { ARP_BIND.get(PortAddr { slot: bd, pad: 0, addr: arp.tpa }) }.map(|b| b.mac).ok_or(Punt::Bridge)
}

/// Where a bridged frame goes: the frame (Ethernet on) starts at `l2` and is `l2_len` bytes;
/// `keep` bytes of the frame as received are kept, the first `l2` stripped. What came from a
/// VTEP never goes back to one (split horizon), nor anything back out of its own port.
#[inline(always)]
fn bridge_to(frame: &Frame, d: ExMac, ingress: u32, l2: usize, l2_len: usize, keep: usize, from_vtep: bool) -> Result<Bridged, Punt> {
    if d.port != NO_PORT {
        let egress = u32::from(d.port);
        if egress == ingress {
            return Err(Punt::Bridge);
        }
        let out = *PORTS.get(egress).ok_or(Punt::Bridge)?;
        if out.kind != PORT_BRIDGE || EGRESS.get(egress).is_none() {
            return Err(Punt::NextHop);
        }
        if l2_len < ETH_LEN || l2_len - ETH_LEN > usize::from(out.mtu) {
            return Err(Punt::Mtu);
        }
        return Ok(Bridged { egress, keep, strip: l2, encap: None });
    }
    if from_vtep {
        return Err(Punt::Bridge);
    }
    let hash = l2_hash(frame)?;
    let (adj, adj_slot) = records(d.nexthop, || hash).ok_or(Punt::NextHop)?;
    if adj.port == NO_PORT || adj.encap != ENCAP_VXLAN_L2 || EGRESS.get(u32::from(adj.port)).is_none() {
        return Err(Punt::NextHop);
    }
    if VXLAN_OUTER + l2_len > usize::from(adj.mtu) {
        return Err(Punt::Mtu);
    }
    Ok(Bridged { egress: u32::from(adj.port), keep, strip: l2, encap: Some((adj, adj_slot, hash)) })
}

/// The pipeline's VXLAN source-port hash of a bridged frame (`vxlan_encap`): the flow hash of
/// an IPv4 packet that `Ipv4Packet::new_checked` accepts (0 for one it refuses), else
/// `carrier_common::mac_hash` of the two MACs. IPv4 with options is left to the pipeline.
#[inline(always)]
fn l2_hash(frame: &Frame) -> Result<u32, Punt> {
    let eth: &EthHdr = frame.header(0).ok_or(Punt::Bridge)?;
    if u16::from_be_bytes(eth.ether_type) != ETH_P_IPV4 {
        let macs: &[u8; 12] = frame.header(0).ok_or(Punt::Bridge)?;
        return Ok(carrier_common::mac_hash(macs));
    }
    let len = frame.len() - ETH_LEN;
    let Some(ip) = frame.header::<Ipv4Hdr>(ETH_LEN) else {
        return Ok(0);
    };
    let hl = usize::from(ip.version_ihl & 0x0f) * 4;
    if ip.version_ihl >> 4 != 4 || hl < 20 {
        return Ok(0);
    }
    if hl != 20 {
        return Err(Punt::Bridge);
    }
    let total = usize::from(u16::from_be_bytes(ip.total_len));
    if total < hl || total > len {
        return Ok(0);
    }
    let ports = l4_ports(frame, ETH_LEN, ip.protocol, u16::from_be_bytes(ip.frag), total);
    Ok(carrier_common::flow_hash(ip.src, ip.dst, ip.protocol, ports))
}

/// Send a bridged frame as decided: trimmed, stripped or encapsulated, counted, redirected.
#[inline(always)]
fn apply_bridge(ctx: &XdpContext, stats: *mut ExPortStats, orig_len: usize, b: &Bridged) -> Result<u32, Punt> {
    if orig_len > b.keep {
        // SAFETY: a helper call on the program's own context.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, -((orig_len - b.keep) as i32)) } != 0 {
            return Err(Punt::Headroom);
        }
    }
    // SAFETY: as above.
    if b.strip > 0 && unsafe { bpf_xdp_adjust_head(ctx.ctx, b.strip as i32) } != 0 {
        return Err(Punt::Headroom);
    }
    let mut adj_slot = None;
    if let Some((adj, at, hash)) = b.encap {
        // SAFETY: as above.
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, -((ETH_LEN + VXLAN_OUTER) as i32)) } != 0 {
            return Err(Punt::Headroom);
        }
        let frame = Frame::new(ctx);
        let inner_len = frame.len() - ETH_LEN - VXLAN_OUTER;
        let eth = frame.header_mut::<EthHdr>(0).ok_or(Punt::Headroom)?;
        eth.dst = adj.dst;
        eth.src = adj.src;
        eth.ether_type = ETH_P_IPV4.to_be_bytes();
        write_vxlan(&frame, &adj, inner_len, hash, false)?;
        adj_slot = Some(at);
    }
    let final_len = Frame::new(ctx).len();
    count_port(stats, b.egress, orig_len, final_len);
    if let Some(at) = adj_slot {
        bump(&ADJ_STATS, at, final_len);
    }
    Ok(EGRESS.redirect(b.egress, 0).unwrap_or_else(|a| a))
}

/// The checks common to the IPv4 paths once the adjacency is known.
#[allow(clippy::too_many_arguments, reason = "one plan's worth of facts")]
#[inline(always)]
fn finish(ip_off: usize, l2_start: usize, ip: &Ip, adj: ExAdj, adj_slot: u32, ttl: u8, checksum: u16, vrf: u32, label_in: Option<u32>, flags: u32, route: u32) -> Result<Plan, Punt> {
    let n = usize::from(adj.nlabels);
    if adj.port == NO_PORT || n > MAX_PUSH || EGRESS.get(u32::from(adj.port)).is_none() {
        return Err(Punt::NextHop);
    }
    let overhead = match adj.encap {
        ENCAP_NONE => n * 4,
        ENCAP_VXLAN if n == 0 && adj.vlan == 0 => VXLAN_OVERHEAD,
        _ => return Err(Punt::NextHop),
    };
    if overhead + ip.total > usize::from(adj.mtu) {
        return Err(Punt::Mtu);
    }
    let tc = if adj.tc == TC_FROM_IP { ip.tos >> 5 } else { adj.tc & 7 };
    let hash = if adj.encap == ENCAP_VXLAN { ip.hash() } else { 0 };
    let label_ttl = if flags & CONFIG_PIPE != 0 { 255 } else { ttl };
    // A counted route's counter exists before the packet is sent by it: with the map full,
    // the AF_XDP path forwards (and counts) it.
    if route != 0 && !route_counter(route - 1) {
        return Err(Punt::RouteCounters);
    }
    Ok(Plan { ip_off, total: ip.total, adj, adj_slot, ttl, checksum, tc, label_ttl, swap_bottom: None, vrf, lookup_len: ip_off - l2_start + ip.total, label_in, hash, route })
}

/// Rewrite the frame as planned, count, and redirect.
#[inline(always)]
fn apply(ctx: &XdpContext, stats: *mut ExPortStats, orig_len: usize, plan: &Plan) -> Result<u32, Punt> {
    // Ethernet padding goes, as in the pipeline.
    let want = plan.ip_off + plan.total;
    if plan.swap_bottom.is_none() && orig_len > want {
        // SAFETY: a helper call on the program's own context.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, -((orig_len - want) as i32)) } != 0 {
            return Err(Punt::Headroom);
        }
    }
    let n = usize::from(plan.adj.nlabels);
    let vxlan = plan.adj.encap == ENCAP_VXLAN;
    let l2_out = if plan.adj.vlan != 0 { ETH_LEN + 4 } else { ETH_LEN };
    let new_ip_off = if vxlan { ETH_LEN + VXLAN_OVERHEAD } else { l2_out + 4 * n };
    let delta = plan.ip_off as i32 - new_ip_off as i32;
    // SAFETY: as above.
    if delta != 0 && unsafe { bpf_xdp_adjust_head(ctx.ctx, delta) } != 0 {
        return Err(Punt::Headroom);
    }
    let frame = Frame::new(ctx);
    let final_len = frame.len();
    let Some(eth) = frame.header_mut::<EthHdr>(0) else {
        return Err(Punt::Headroom);
    };
    eth.dst = plan.adj.dst;
    eth.src = plan.adj.src;
    let ether_type = if n > 0 { ETH_P_MPLS_UC.to_be_bytes() } else { ETH_P_IPV4.to_be_bytes() };
    if l2_out == ETH_LEN {
        eth.ether_type = ether_type;
    } else {
        eth.ether_type = ETH_P_8021Q.to_be_bytes();
        let vid = (plan.adj.vlan & 0x0fff).to_be_bytes();
        let Some(tag) = frame.header_mut::<[u8; 4]>(ETH_LEN) else {
            return Err(Punt::Headroom);
        };
        *tag = [vid[0], vid[1], ether_type[0], ether_type[1]];
    }
    if vxlan {
        write_vxlan(&frame, &plan.adj, ETH_LEN + plan.total, plan.hash, true)?;
    }
    let mut i = 0;
    while i < MAX_PUSH {
        if i < n {
            let mut lse = plan.adj.labels[i] | u32::from(plan.tc) << 9 | u32::from(plan.label_ttl);
            if let Some(s) = plan.swap_bottom {
                if i + 1 == n {
                    lse = lse & !0x100 | s;
                }
            }
            if let Some(at) = frame.header_mut::<[u8; 4]>(l2_out + 4 * i) {
                *at = lse.to_be_bytes();
            }
        }
        i += 1;
    }
    if plan.swap_bottom.is_none() {
        let Some(ip) = frame.header_mut::<Ipv4Hdr>(new_ip_off) else {
            return Err(Punt::Headroom);
        };
        ip.ttl = plan.ttl;
        ip.checksum = plan.checksum.to_be_bytes();
    }

    let egress = u32::from(plan.adj.port);
    count_port(stats, egress, orig_len, final_len);
    bump(&VRF_STATS, plan.vrf, plan.lookup_len);
    if plan.route != 0 {
        if let Some(c) = ROUTE_STATS.get_ptr_mut(plan.route - 1) {
            // SAFETY: this CPU's value of a per-CPU entry, written only by this program here.
            let c = unsafe { &mut *c };
            c.packets += 1;
            c.bytes += plan.lookup_len as u64;
        }
    }
    bump(&ADJ_STATS, plan.adj_slot, final_len);
    if let Some(label) = plan.label_in {
        bump(&LABEL_STATS, label, orig_len);
    }
    Ok(EGRESS.redirect(egress, 0).unwrap_or_else(|a| a))
}

/// The outer IPv4, UDP and VXLAN headers and the inner Ethernet header of a VXLAN record,
/// after the outer Ethernet header, around an inner IPv4 packet of `total` bytes.
#[inline(always)]
fn write_vxlan(frame: &Frame, adj: &ExAdj, inner_len: usize, hash: u32, inner_eth: bool) -> Result<(), Punt> {
    let ident = match IDENT.get_ptr_mut(0) {
        // SAFETY: a per-CPU value, written only by this program on this CPU.
        Some(i) => unsafe {
            *i = (*i).wrapping_add(1);
            *i as u16
        },
        None => 0,
    };
    let udp_len = (8 + 8 + inner_len) as u16;
    let outer_len = 20 + udp_len;
    let ip = frame.header_mut::<Ipv4Hdr>(ETH_LEN).ok_or(Punt::Headroom)?;
    ip.version_ihl = 0x45;
    ip.tos = 0;
    ip.total_len = outer_len.to_be_bytes();
    ip.id = ident.to_be_bytes();
    ip.frag = [0, 0];
    ip.ttl = adj.outer_ttl;
    ip.protocol = 17;
    ip.checksum = fold(adj.outer_sum + u32::from(outer_len) + u32::from(ident)).to_be_bytes();
    ip.src = adj.outer_src;
    ip.dst = adj.outer_dst;
    let udp = frame.header_mut::<[u8; 16]>(ETH_LEN + 20).ok_or(Punt::Headroom)?;
    let sport = carrier_common::vxlan_source_port(hash).to_be_bytes();
    let len = udp_len.to_be_bytes();
    let vni = adj.vni.to_be_bytes();
    *udp = [sport[0], sport[1], (VXLAN_UDP_PORT >> 8) as u8, VXLAN_UDP_PORT as u8, len[0], len[1], 0, 0, 0x08, 0, 0, 0, vni[0], vni[1], vni[2], vni[3]];
    if inner_eth {
        let inner = frame.header_mut::<EthHdr>(ETH_LEN + 36).ok_or(Punt::Headroom)?;
        inner.dst = adj.inner_dst;
        inner.src = adj.inner_src;
        inner.ether_type = ETH_P_IPV4.to_be_bytes();
    }
    Ok(())
}

/// One frame received (`rx_len` bytes) on the port whose counters are `ingress` and sent on
/// `egress` (`tx_len`; it may be the same port).
#[inline(always)]
fn count_port(ingress: *mut ExPortStats, egress: u32, rx_len: usize, tx_len: usize) {
    // SAFETY: per-CPU values, written only by this program on this CPU; each write goes
    // through its own pointer (the two may name the same entry).
    unsafe {
        (*ingress).rx.packets += 1;
        (*ingress).rx.bytes += rx_len as u64;
    }
    if let Some(s) = PORT_STATS.get_ptr_mut(egress) {
        // SAFETY: as above.
        unsafe {
            (*s).tx.packets += 1;
            (*s).tx.bytes += tx_len as u64;
        }
    }
}

/// Whether route slot `slot` has its counter in `EX_ROUTE_STATS`, made now if need be.
#[inline(always)]
fn route_counter(slot: u32) -> bool {
    if ROUTE_STATS.get_ptr_mut(slot).is_some() {
        return true;
    }
    // BPF_NOEXIST (1): another CPU may have made it meanwhile, which is as good.
    ROUTE_STATS.insert(slot, ExBytes::default(), 1).is_ok() || ROUTE_STATS.get_ptr_mut(slot).is_some()
}

#[inline(always)]
fn bump(map: &PerCpuArray<ExBytes>, index: u32, len: usize) {
    if let Some(c) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU values, written only by this program on this CPU.
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += len as u64;
    }
}
