//! IPv4: the FIB lookup in a VRF or the underlay, TTL, next-hop resolution and rewrite, ARP
//! (own addresses, proxy ARP, gleaning), ICMP echo and ICMP errors.

use std::net::Ipv4Addr;

use carrier_common::{Label, PortId, VrfId};

use super::{room_before, trace, Ctx, DropReason, Event, Frame, FramePool, Tracer, Verdict};
use crate::tables::{Lpm, NextHop, PortRole, Table, TtlMode};
use crate::wire::{arp, icmpv4, ipv4, mpls::LabelStackEntry, ArpPacket, EtherType, Icmpv4Packet, IpProtocol, Ipv4Packet, MacAddr};

/// How a packet reached the lookup: this decides TTL handling and which checks apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hop {
    /// Received as IP on a port: decrement TTL; check the source when the port asks.
    Routed { check_source: bool },
    /// Just popped from MPLS in uniform mode: the pop was the TTL hop.
    Disposed,
    /// Made by the router itself (ICMP): no TTL change, never answered with ICMP errors.
    Originated,
}

/// Deepest next-hop recursion (VPN route → PE → transport LSP → adjacency).
const MAX_DEPTH: u8 = 4;

/// Entries of a worker's cache of resolved next hops (direct-mapped by next-hop id: 4096 ×
/// 56 bytes, the hot next hops of any table).
pub(crate) const HOP_CACHE: usize = 4096;

/// Most labels a resolved next hop pushes (VPN and transport together); a deeper stack is
/// forwarded without the cache.
const RESOLVED_LABELS: usize = 6;

/// The cache key of the way toward the PE of ILM swap entry `label` (next hops' keys are
/// their id + 1, below 2^22).
fn swap_key(label: Label) -> u32 {
    0x8000_0000 | label.value()
}

/// A next hop resolved down to the port and neighbour it sends through: an adjacency to a
/// gateway, a push whose PE's underlay route (and transport LSPs, recursively) led to one, a
/// routed VXLAN next hop's way to its VTEP, or an ILM swap's way to its PE. The recursion is
/// done once, when the entry is made, not per packet; the neighbour's MAC is in it when the
/// tables hold the neighbour (a learned one is looked up per packet, which marks it in use).
/// Good for the tables' [`Tables::generation`] it was made in: any change to the tables makes
/// every entry stale. Underlay ECMP (a member per flow) is not resolved: the interpretive
/// path serves it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResolvedHop {
    generation: u64,
    /// The next hop's id + 1, or [`swap_key`] (0: an empty entry).
    key: u32,
    port: PortId,
    /// The neighbour.
    via: Ipv4Addr,
    /// The neighbour's MAC, when the tables hold it.
    mac: Option<MacAddr>,
    /// The labels pushed, outermost first (the transport labels, then the VPN route's).
    labels: [Label; RESOLVED_LABELS],
    labels_len: u8,
    /// The push's TC (else the packet's precedence).
    tc: Option<u8>,
    /// Not resolved: the interpretive path serves this next hop. Kept so that it is not tried
    /// again per packet.
    unresolved: bool,
}

impl Default for ResolvedHop {
    /// An empty entry (key 0).
    fn default() -> Self {
        ResolvedHop { generation: 0, key: 0, port: PortId(0), via: Ipv4Addr::UNSPECIFIED, mac: None, labels: [Label::default(); RESOLVED_LABELS], labels_len: 0, tc: None, unresolved: false }
    }
}

impl ResolvedHop {
    /// Next hop `id` of `tables` resolved; `None` for what the interpretive path serves.
    fn of_nexthop(tables: &crate::tables::Tables, id: carrier_common::NextHopId) -> Option<ResolvedHop> {
        let mut r = ResolvedHop::default();
        match tables.nexthop(id)? {
            // A connected route's neighbour is the packet's destination: nothing to resolve.
            NextHop::Adjacency { via: None, .. } => return None,
            NextHop::Adjacency { port, via: Some(via) } => r.arrive(tables, *port, *via),
            NextHop::MplsPush { labels, tc, pe } => {
                r.tc = *tc;
                r.prepend(labels.as_slice())?;
                // As `send_underlay`, from the depth a VPN route's push starts at.
                r.underlay(tables, *pe, 1)?;
            }
            // The outer packet's way to the VTEP (the encapsulation is per packet).
            NextHop::Vxlan { vtep, .. } => r.underlay(tables, *vtep, 0)?,
            _ => return None,
        }
        Some(r)
    }

    /// The way through the underlay toward `pe` of a label an ILM entry swaps in (its
    /// transport labels, port and neighbour), as `send_underlay` from a swap (depth 0).
    fn of_swap(tables: &crate::tables::Tables, pe: Ipv4Addr) -> Option<ResolvedHop> {
        let mut r = ResolvedHop::default();
        r.underlay(tables, pe, 0)?;
        Some(r)
    }

    /// Walk the underlay from `dst` as `send_underlay` does from `depth`: the transport
    /// labels go in front, the adjacency it ends at is the port and neighbour. `None` where
    /// `send_underlay` would pick per flow (ECMP) or drop.
    fn underlay(&mut self, tables: &crate::tables::Tables, mut dst: Ipv4Addr, mut depth: u8) -> Option<()> {
        loop {
            if depth > MAX_DEPTH {
                return None;
            }
            let (_, nh) = tables.underlay.lookup(dst)?;
            match tables.nexthop(nh)? {
                NextHop::Adjacency { port, via } => {
                    self.arrive(tables, *port, via.unwrap_or(dst));
                    return Some(());
                }
                NextHop::MplsPush { labels, pe: next, .. } => {
                    self.prepend(labels.as_slice())?;
                    dst = *next;
                    depth += 1;
                }
                _ => return None,
            }
        }
    }

    /// The way ends at neighbour `via` on `port`.
    fn arrive(&mut self, tables: &crate::tables::Tables, port: PortId, via: Ipv4Addr) {
        self.port = port;
        self.via = via;
        self.mac = tables.neighbours.get(&(port, via)).copied();
    }

    /// Put `outer` in front of the labels.
    fn prepend(&mut self, outer: &[Label]) -> Option<()> {
        let (n, k) = (usize::from(self.labels_len), outer.len());
        if n + k > RESOLVED_LABELS {
            return None;
        }
        self.labels.copy_within(0..n, k);
        self.labels[..k].copy_from_slice(outer);
        self.labels_len = (n + k) as u8;
        Some(())
    }
}

/// The IPv4 fields the path needs, read once after the header checks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IpInfo {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: IpProtocol,
    pub hash: FlowHash,
    pub precedence: u8,
}

/// Check the IPv4 header at `off` (length, version, checksum) and trim Ethernet padding.
pub(crate) fn checked_ipv4<F: Frame>(frame: &mut F, off: usize) -> Result<IpInfo, DropReason> {
    let data = frame.data().get(off..).ok_or(DropReason::Ipv4Malformed)?;
    // Nearly every packet: a 20-byte header without options, read at fixed offsets.
    if let Some(h) = data.first_chunk::<20>().filter(|h| h[0] == 0x45) {
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if total < 20 {
            return Err(DropReason::Ipv4Malformed);
        }
        if total > data.len() {
            // As `Ipv4Packet::new_checked`: truncated.
            return Err(DropReason::Ipv4Malformed);
        }
        if header_checksum_20(h) != 0xffff {
            return Err(DropReason::Ipv4BadChecksum);
        }
        let protocol = h[9];
        let unfragmented = h[6] & 0x3f == 0 && h[7] == 0;
        let ports = match (protocol, data.get(20..24)) {
            (6 | 17, Some(p)) if unfragmented && total >= 24 => u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
            _ => 0,
        };
        let (src, dst) = ([h[12], h[13], h[14], h[15]], [h[16], h[17], h[18], h[19]]);
        let info = IpInfo {
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
            ttl: h[8],
            protocol: IpProtocol::from(protocol),
            hash: FlowHash::Ipv4 { src, dst, protocol, ports },
            precedence: h[1] >> 5,
        };
        frame.resize(off + total);
        return Ok(info);
    }
    checked_ipv4_general(frame, off)
}

/// [`checked_ipv4`] for any header (options, or not IPv4 at all), through [`Ipv4Packet`].
fn checked_ipv4_general<F: Frame>(frame: &mut F, off: usize) -> Result<IpInfo, DropReason> {
    let data = frame.data().get(off..).ok_or(DropReason::Ipv4Malformed)?;
    let ip = Ipv4Packet::new_checked(data).map_err(|_| DropReason::Ipv4Malformed)?;
    if !ip.verify_checksum() {
        return Err(DropReason::Ipv4BadChecksum);
    }
    let info = IpInfo {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        ttl: ip.ttl(),
        protocol: ip.protocol(),
        hash: FlowHash::of(&ip),
        precedence: ip.dscp_ecn() >> 5,
    };
    let total = usize::from(ip.total_len());
    frame.resize(off + total);
    Ok(info)
}

/// A flow's hash (ECMP member, VXLAN source port), computed only when something asks: most
/// packets go over a next hop that needs none.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FlowHash {
    /// Already known.
    Known(u32),
    /// The fields of an IPv4 packet's 5-tuple ([`carrier_common::flow_hash`]).
    Ipv4 {
        /// Source and destination addresses.
        src: [u8; 4],
        dst: [u8; 4],
        /// IP protocol.
        protocol: u8,
        /// TCP or UDP ports (source, destination) as one word; 0 otherwise.
        ports: u32,
    },
}

impl FlowHash {
    /// The fields of `ip`'s flow, as [`Ipv4Packet::flow_hash`] reads them.
    fn of(ip: &Ipv4Packet<&[u8]>) -> FlowHash {
        FlowHash::Ipv4 { src: ip.src_addr().octets(), dst: ip.dst_addr().octets(), protocol: ip.protocol().into(), ports: ip.flow_ports() }
    }

    /// The hash.
    pub(crate) fn get(self) -> u32 {
        match self {
            FlowHash::Known(h) => h,
            FlowHash::Ipv4 { src, dst, protocol, ports } => carrier_common::flow_hash(src, dst, protocol, ports),
        }
    }
}

/// The ones-complement sum of a 20-byte IPv4 header, folded: 0xffff when its checksum is
/// right (the same test as `checksum(header) == 0`).
#[inline]
fn header_checksum_20(h: &[u8; 20]) -> u16 {
    let mut acc: u32 = 0;
    for i in 0..10 {
        acc += u32::from(u16::from_be_bytes([h[2 * i], h[2 * i + 1]]));
    }
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// TTL − 1 on the IPv4 header at `off` (checked already), its checksum updated as
/// [`Ipv4Packet::decrement_ttl`] does (RFC 1624), with one bounds check.
#[inline]
pub(crate) fn decrement_ttl(data: &mut [u8], off: usize) {
    if let Some(h) = data.get_mut(off..).and_then(|d| d.first_chunk_mut::<12>()) {
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] = h[8].wrapping_sub(1);
        let new = u16::from_be_bytes([h[8], h[9]]);
        let sum = crate::wire::checksum::update(u16::from_be_bytes([h[10], h[11]]), old, new);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}

fn ip_mut<F: Frame>(frame: &mut F, off: usize) -> Ipv4Packet<&mut [u8]> {
    Ipv4Packet::new_unchecked(&mut frame.data_mut()[off..])
}

impl<F: Frame, P: FramePool<F>, T: Tracer> Ctx<'_, F, P, T> {
    /// Route the IPv4 packet at `ip_off` in `table`.
    pub(crate) fn route(&mut self, frame: &mut F, table: Table, ip_off: usize, hop: Hop, depth: u8) -> Verdict {
        if depth > MAX_DEPTH {
            return Verdict::Drop(DropReason::NextHopTooDeep);
        }
        let info = match checked_ipv4(frame, ip_off) {
            Ok(i) => i,
            Err(r) => return Verdict::Drop(r),
        };
        let Some(fib) = self.tables.fib(table) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        if let Table::Vrf(v) = table {
            self.vrf = Some(v);
            let len = frame.len();
            if let Some(c) = self.worker.counters.vrf(v) {
                c.lookups.add(len);
            }
        }
        trace!(self.tracer, "ipv4 {} → {} ttl {} proto {:?} in {}", info.src, info.dst, info.ttl, info.protocol, self.table_name(table));
        if hop == (Hop::Routed { check_source: true }) {
            let ok = fib.lookup(info.src).is_some_and(|(_, nh)| self.nexthop_is_on_port(nh, self.ingress));
            if !ok {
                trace!(self.tracer, "source {} is not routed back out of the ingress port", info.src);
                return Verdict::Drop(DropReason::AntiSpoof);
            }
        }
        let Some((slot, prefix, nh_id)) = fib.lookup_slot_in(0, info.dst) else {
            trace!(self.tracer, "no route to {}", info.dst);
            return self.icmp_error(frame, table, ip_off, hop, (icmpv4::DEST_UNREACHABLE, 0, 0), DropReason::NoRoute, depth);
        };
        let Some(nh_id) = self.pick(nh_id, info.hash) else {
            return Verdict::Drop(DropReason::InvalidNextHop);
        };
        let Some(nh) = self.tables.nexthop(nh_id) else {
            return Verdict::Drop(DropReason::InvalidNextHop);
        };
        trace!(self.tracer, "matched {} → next hop {}: {:?}", prefix, nh_id, nh);
        match nh {
            NextHop::Receive => return self.local_input(frame, table, ip_off, depth),
            NextHop::ToHost => return self.host_input(frame, table, ip_off, info.dst),
            NextHop::Blackhole => return Verdict::Drop(DropReason::Blackhole),
            _ => {}
        }
        if let Hop::Routed { .. } = hop {
            if info.ttl <= 1 {
                trace!(self.tracer, "TTL {} expires here", info.ttl);
                return self.icmp_error(frame, table, ip_off, hop, (icmpv4::TIME_EXCEEDED, 0, 0), DropReason::TtlExpired, depth);
            }
            decrement_ttl(frame.data_mut(), ip_off);
            self.decremented = true;
        }
        let ttl = if let Hop::Routed { .. } = hop { info.ttl - 1 } else { info.ttl };
        // Transit only: what the router originates (ICMP) is not the route's traffic.
        if let (Table::Vrf(v), false) = (table, hop == Hop::Originated) {
            if self.tables.vrfs[v.index()].prefix_counters {
                self.worker.counters.prefix(v, slot, prefix, frame.len());
            }
        }
        self.forward_ip(frame, ip_off, nh_id, nh, info, ttl, depth)
    }

    /// Next hop `id` resolved (see [`ResolvedHop`]), from the worker's cache or made now;
    /// `None` when it cannot be.
    fn resolved(&mut self, id: carrier_common::NextHopId) -> Option<ResolvedHop> {
        let tables = self.tables;
        self.cached(id.0.wrapping_add(1), id.index(), || ResolvedHop::of_nexthop(tables, id))
    }

    /// The way toward `pe` of ILM swap entry `label`, resolved (from the cache or now).
    pub(crate) fn resolved_swap(&mut self, label: Label, pe: Ipv4Addr) -> Option<ResolvedHop> {
        let tables = self.tables;
        self.cached(swap_key(label), label.value() as usize, || ResolvedHop::of_swap(tables, pe))
    }

    /// The cache entry `key` (in slot `index` modulo the size), made by `make` when the slot
    /// holds another key or is of another generation of the tables.
    fn cached(&mut self, key: u32, index: usize, make: impl FnOnce() -> Option<ResolvedHop>) -> Option<ResolvedHop> {
        let generation = self.tables.generation();
        let cache = &mut self.worker.hops;
        if cache.is_empty() {
            cache.resize(HOP_CACHE, ResolvedHop::default());
        }
        let entry = &mut cache[index % HOP_CACHE];
        if entry.key != key || entry.generation != generation {
            *entry = ResolvedHop { generation, key, ..make().unwrap_or(ResolvedHop { unresolved: true, ..ResolvedHop::default() }) };
        }
        (!entry.unresolved).then_some(*entry)
    }

    /// [`Ctx::send_underlay`] along a resolved way: what starts at `off` (`ethertype` says
    /// what it is) gets the labels (the innermost with the S bit on an IPv4 packet), then
    /// goes to the neighbour. Inlined into its three callers: called, it cost mpls-push 43
    /// more instructions per packet (1,160 against 1,117, `carrier-pathcost --instructions`).
    #[inline(always)]
    pub(crate) fn send_resolved(&mut self, frame: &mut F, mut off: usize, r: &ResolvedHop, ethertype: EtherType, tc: u8, ttl: u8) -> Verdict {
        let labels = &r.labels[..usize::from(r.labels_len)];
        if !self.push_labels(frame, &mut off, labels, ethertype == EtherType::Ipv4, tc, ttl) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        let ethertype = if labels.is_empty() { ethertype } else { EtherType::Mpls };
        match r.mac {
            Some(mac) => self.transmit(frame, off, r.port, mac, ethertype),
            None => self.send_to_neighbour(frame, off, r.port, r.via, ethertype),
        }
    }

    /// Send the IPv4 packet at `ip_off` (TTL already handled) to a forwarding next hop `nh`
    /// (whose id is `id`).
    #[expect(clippy::too_many_arguments, reason = "the packet, the next hop and what the path read of the header")]
    pub(crate) fn forward_ip(&mut self, frame: &mut F, ip_off: usize, id: carrier_common::NextHopId, nh: &NextHop, info: IpInfo, ttl: u8, depth: u8) -> Verdict {
        // A push or an adjacency resolved before: its labels and neighbour at once. Not while
        // tracing (the trace shows every step) nor for what the router originates (ICMP:
        // its own recursion limit).
        if !T::ENABLED && depth == 0 && matches!(nh, NextHop::Adjacency { via: Some(_), .. } | NextHop::MplsPush { .. } | NextHop::Vxlan { .. }) {
            if let Some(r) = self.resolved(id) {
                if let NextHop::Vxlan { vtep, vni, router_mac } = nh {
                    return self.vxlan_routed(frame, ip_off, info.hash, *vtep, *vni, *router_mac, Some(&r));
                }
                // The labels' TTL and TC as a push sets them (an adjacency pushes none).
                let ttl = match self.tables.router.ttl_mode {
                    TtlMode::Uniform => ttl,
                    TtlMode::Pipe => 255,
                };
                return self.send_resolved(frame, ip_off, &r, EtherType::Ipv4, r.tc.unwrap_or(info.precedence), ttl);
            }
        }
        match nh {
            NextHop::Adjacency { port, via } => self.send_to_neighbour(frame, ip_off, *port, via.unwrap_or(info.dst), EtherType::Ipv4),
            NextHop::MplsPush { labels, tc, pe } => {
                let ttl = match self.tables.router.ttl_mode {
                    TtlMode::Uniform => ttl,
                    TtlMode::Pipe => 255,
                };
                let tc = tc.unwrap_or(info.precedence);
                let mut off = ip_off;
                if !self.push_labels(frame, &mut off, labels.as_slice(), true, tc, ttl) {
                    return Verdict::Drop(DropReason::NoHeadroom);
                }
                // No label (the remote PE advertised implicit null, RFC 3032 §2.1): plain IPv4.
                let ethertype = if labels.as_slice().is_empty() { EtherType::Ipv4 } else { EtherType::Mpls };
                self.send_underlay(frame, off, *pe, ethertype, tc, ttl, info.hash, depth + 1)
            }
            NextHop::Vxlan { vtep, vni, router_mac } => self.vxlan_routed(frame, ip_off, info.hash, *vtep, *vni, *router_mac, None),
            NextHop::Ecmp { .. } | NextHop::Receive | NextHop::ToHost | NextHop::Blackhole => {
                Verdict::Drop(DropReason::InvalidNextHop)
            }
        }
    }

    /// The IPv4 packet at `ip_off` (its flow `flow`) in an Ethernet frame to the remote
    /// router MAC, in VXLAN toward `vtep` (EVPN type-5), along `way` when its way to the
    /// VTEP is resolved.
    #[expect(clippy::too_many_arguments, reason = "the packet, its flow and the next hop's fields")]
    fn vxlan_routed(&mut self, frame: &mut F, ip_off: usize, flow: FlowHash, vtep: Ipv4Addr, vni: carrier_common::Vni, router_mac: Option<MacAddr>, way: Option<&ResolvedHop>) -> Verdict {
        let mut off = ip_off;
        if !room_before(frame, &mut off, 14) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        let inner_dst = router_mac.unwrap_or(MacAddr::BROADCAST);
        crate::wire::ethernet::emit_header(&mut frame.data_mut()[off..off + 14], inner_dst, MacAddr::ZERO, EtherType::Ipv4);
        if !frame.pull_front(off) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        self.vxlan_encap(frame, 14, vtep, vni, Some(flow), way)
    }

    /// Push `labels` (outermost first) in front of `*off`; the innermost gets the S bit when
    /// `bottom` is set. Counts each label out.
    pub(crate) fn push_labels(&mut self, frame: &mut F, off: &mut usize, labels: &[Label], bottom: bool, tc: u8, ttl: u8) -> bool {
        for (i, label) in labels.iter().enumerate().rev() {
            if !room_before(frame, off, 4) {
                return false;
            }
            let lse = LabelStackEntry { label: *label, tc, bottom: bottom && i == labels.len() - 1, ttl };
            lse.emit(&mut frame.data_mut()[*off..*off + 4]);
            self.label_out(*label);
            trace!(self.tracer, "push label {} tc {} ttl {} s {}", label, tc, ttl, lse.bottom);
        }
        true
    }

    /// Send what starts at `off` (an IPv4 packet, or a labelled one: `ethertype` says which)
    /// toward `dst` through the underlay: out an adjacency, or into an LSP when the underlay
    /// route pushes (transport) labels, recursively. The first label pushed onto an IPv4
    /// packet gets the bottom-of-stack bit.
    #[expect(clippy::too_many_arguments, reason = "the label context travels with the frame through the recursion")]
    pub(crate) fn send_underlay(
        &mut self,
        frame: &mut F,
        mut off: usize,
        mut dst: Ipv4Addr,
        mut ethertype: EtherType,
        tc: u8,
        ttl: u8,
        hash: FlowHash,
        mut depth: u8,
    ) -> Verdict {
        loop {
            if depth > MAX_DEPTH {
                return Verdict::Drop(DropReason::NextHopTooDeep);
            }
            let Some((prefix, nh)) = self.tables.underlay.lookup(dst) else {
                trace!(self.tracer, "no underlay route to {}", dst);
                return Verdict::Drop(DropReason::NoRoute);
            };
            let Some(nh) = self.pick(nh, hash).and_then(|n| self.tables.nexthop(n)) else {
                return Verdict::Drop(DropReason::InvalidNextHop);
            };
            trace!(self.tracer, "underlay {} matched {}: {:?}", dst, prefix, nh);
            match nh {
                NextHop::Adjacency { port, via } => return self.send_to_neighbour(frame, off, *port, via.unwrap_or(dst), ethertype),
                NextHop::MplsPush { labels, pe: next, .. } => {
                    if !self.push_labels(frame, &mut off, labels.as_slice(), ethertype == EtherType::Ipv4, tc, ttl) {
                        return Verdict::Drop(DropReason::NoHeadroom);
                    }
                    if !labels.as_slice().is_empty() {
                        ethertype = EtherType::Mpls;
                    }
                    dst = *next;
                    depth += 1;
                }
                NextHop::Blackhole => return Verdict::Drop(DropReason::Blackhole),
                _ => return Verdict::Drop(DropReason::InvalidNextHop),
            }
        }
    }

    /// Send to the neighbour `target` on `port`: its MAC from the neighbour table, or an ARP
    /// request for it instead when it is not known yet.
    fn send_to_neighbour(&mut self, frame: &mut F, off: usize, port: PortId, target: Ipv4Addr, ethertype: EtherType) -> Verdict {
        let static_mac = self.tables.neighbours.get(&(port, target)).copied();
        let now = self.worker.now;
        // A learned neighbour is marked in use (it is probed before it expires).
        let mac = static_mac.or_else(|| {
            self.worker.neighbours.get_mut(&(port, target)).map(|l| {
                l.used = now;
                l.value
            })
        });
        match mac {
            Some(mac) => self.transmit(frame, off, port, mac, ethertype),
            None => self.arp_glean(frame, port, target),
        }
    }

    /// One member of an ECMP group by flow hash, or the next hop itself.
    pub(crate) fn pick(&self, id: carrier_common::NextHopId, hash: FlowHash) -> Option<carrier_common::NextHopId> {
        match self.tables.nexthop(id)? {
            NextHop::Ecmp { members } if !members.is_empty() => Some(members[hash.get() as usize % members.len()]),
            NextHop::Ecmp { .. } => None,
            _ => Some(id),
        }
    }

    fn nexthop_is_on_port(&self, nh: carrier_common::NextHopId, port: PortId) -> bool {
        match self.tables.nexthop(nh) {
            Some(NextHop::Adjacency { port: p, .. }) => *p == port,
            Some(NextHop::Ecmp { members }) => members.iter().any(|m| self.nexthop_is_on_port(*m, port)),
            _ => false,
        }
    }

    fn table_name(&self, table: Table) -> String {
        if !T::ENABLED {
            return String::new();
        }
        match table {
            Table::Vrf(v) => format!("vrf {}", self.tables.vrfs.get(v.index()).map_or("?", |v| v.name.as_str())),
            Table::Underlay => "underlay".to_string(),
        }
    }

    /// The neighbour's MAC is unknown: turn the frame into an ARP request for it on `port`.
    /// The original packet counts as a `neighbour-miss` drop.
    pub(crate) fn arp_glean(&mut self, frame: &mut F, port: PortId, target: Ipv4Addr) -> Verdict {
        trace!(self.tracer, "no MAC for {} on port {}: send an ARP request", target, port);
        // The original packet is the drop; the request is counted as it goes out.
        self.arp_request(frame, port, target, MacAddr::BROADCAST, |ctx| {
            ctx.count_drop(DropReason::NeighbourMiss);
            ctx.worker.counters.event(Event::ArpRequestSent);
        })
    }

    /// Turn the frame into an ARP request for `target` from the router's address on `port`
    /// (in `target`'s subnet, or its first), sent to `dst` (broadcast, or the neighbour's MAC
    /// for a probe); `sending` runs once the request is written, before it is sent.
    pub(crate) fn arp_request(&mut self, frame: &mut F, port: PortId, target: Ipv4Addr, dst: MacAddr, sending: impl FnOnce(&mut Self)) -> Verdict {
        self.labels_out_len = 0;
        let Some(p) = self.tables.port(port) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        let Some(spa) = p.addrs.iter().find(|a| a.prefix.contains(target)).or(p.addrs.first()).map(|a| a.addr) else {
            return Verdict::Drop(DropReason::NeighbourMiss);
        };
        let mac = p.mac;
        if !frame.resize(14 + ArpPacket::<&[u8]>::HEADER_LEN) {
            return Verdict::Drop(DropReason::NeighbourMiss);
        }
        arp::emit(&mut frame.data_mut()[14..], ArpPacket::<&[u8]>::REQUEST, mac, spa, MacAddr::ZERO, target);
        sending(self);
        self.transmit(frame, 14, port, dst, EtherType::Arp)
    }

    /// A packet for one of the router's own addresses.
    fn local_input(&mut self, frame: &mut F, table: Table, ip_off: usize, depth: u8) -> Verdict {
        let d = &frame.data()[ip_off..];
        let ip = Ipv4Packet::new_unchecked(d);
        let hl = ip.header_len();
        let is_echo = ip.protocol() == IpProtocol::Icmp
            && ip.frag_offset() == 0
            && !ip.more_frags()
            && Icmpv4Packet::new_checked(ip.payload()).is_ok_and(|i| i.msg_type() == icmpv4::ECHO_REQUEST);
        if !is_echo {
            let dst = ip.dst_addr();
            trace!(self.tracer, "for the router itself: to host");
            return self.host_input(frame, table, ip_off, dst);
        }
        if !Icmpv4Packet::new_unchecked(ip.payload()).verify_checksum() {
            return Verdict::Drop(DropReason::IcmpBadChecksum);
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let ident = self.worker.next_ident();
        let mut ip = ip_mut(frame, ip_off);
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl(64);
        ip.set_ident(ident);
        ip.fill_checksum();
        let mut icmp = Icmpv4Packet::new_unchecked(&mut frame.data_mut()[ip_off + hl..]);
        let old = icmp.checksum();
        icmp.set_msg_type(icmpv4::ECHO_REPLY);
        icmp.set_checksum(crate::wire::checksum::update(old, u16::from(icmpv4::ECHO_REQUEST) << 8, 0));
        self.worker.counters.event(Event::EchoReply);
        trace!(self.tracer, "echo request to {}: reply to {}", dst, src);
        self.route(frame, table, ip_off, Hop::Originated, depth + 1)
    }

    /// Replace the packet at `ip_off` by an ICMP error about it (type, code, rest-of-header)
    /// and route that back to the sender in `table`. The original counts as a drop with
    /// `reason`; when RFC 1812 §4.3.2.7 forbids the error, that drop is the verdict.
    #[expect(clippy::too_many_arguments, reason = "what to send, about which packet, and in which table")]
    pub(crate) fn icmp_error(
        &mut self,
        frame: &mut F,
        table: Table,
        ip_off: usize,
        hop: Hop,
        (icmp_type, code, rest): (u8, u8, u32),
        reason: DropReason,
        depth: u8,
    ) -> Verdict {
        let ip = Ipv4Packet::new_unchecked(&frame.data()[ip_off..]);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let about_error = ip.protocol() == IpProtocol::Icmp
            && ip.frag_offset() == 0
            && ip.payload().first().is_some_and(|t| ![icmpv4::ECHO_REQUEST, icmpv4::ECHO_REPLY, 13, 14].contains(t));
        let forbidden = hop == Hop::Originated
            || about_error
            || ip.frag_offset() != 0
            || src.is_unspecified()
            || src.is_broadcast()
            || src.is_multicast()
            || src.is_loopback()
            || dst.is_broadcast()
            || dst.is_multicast();
        if forbidden {
            trace!(self.tracer, "no ICMP error for this packet (RFC 1812 §4.3.2.7)");
            return Verdict::Drop(reason);
        }
        let quote = (ip.header_len() + 8).min(usize::from(ip.total_len()));
        let source = self.icmp_source(table);
        self.labels_out_len = 0;
        let mut off = ip_off;
        if !room_before(frame, &mut off, 28) || !frame.resize(off + 28 + quote) {
            return Verdict::Drop(reason);
        }
        let ident = self.worker.next_ident();
        let d = frame.data_mut();
        ipv4::emit_header(&mut d[off..off + 20], source, src, IpProtocol::Icmp, 64, (8 + quote) as u16, ident, false);
        d[off + 20] = icmp_type;
        d[off + 21] = code;
        d[off + 22..off + 24].fill(0);
        d[off + 24..off + 28].copy_from_slice(&rest.to_be_bytes());
        Icmpv4Packet::new_unchecked(&mut d[off + 20..]).fill_checksum();
        self.count_drop(reason);
        self.worker.counters.event(if icmp_type == icmpv4::TIME_EXCEEDED { Event::IcmpTimeExceeded } else { Event::IcmpUnreachable });
        trace!(self.tracer, "ICMP type {} code {} from {} to {}", icmp_type, code, source, src);
        self.route(frame, table, off, Hop::Originated, depth + 1)
    }

    /// The address ICMP from the router carries in `table`: the ingress port's address when
    /// it is in that VRF, else the VRF's configured source, else any address of the VRF's
    /// ports, else the router id.
    pub(crate) fn icmp_source(&self, table: Table) -> Ipv4Addr {
        let t = self.tables;
        if let Table::Vrf(v) = table {
            let in_vrf = |p: &&crate::tables::Port| p.role == PortRole::Vrf(v) && !p.addrs.is_empty();
            if let Some(p) = t.port(self.ingress).filter(in_vrf) {
                return p.addrs[0].addr;
            }
            if let Some(s) = t.vrfs.get(v.index()).and_then(|v| v.source) {
                return s;
            }
            if let Some(p) = t.ports.iter().find(in_vrf) {
                return p.addrs[0].addr;
            }
        }
        t.router.router_id
    }

    /// ARP on a routed (VRF or core) port: learn the sender, answer for the router's own
    /// addresses, and by proxy for addresses the VRF routes elsewhere.
    pub(crate) fn arp_input(&mut self, frame: &mut F, l2len: usize) -> Verdict {
        let Ok(a) = ArpPacket::new_checked(&frame.data()[l2len..]) else {
            return Verdict::Drop(DropReason::ArpMalformed);
        };
        let (op, sha, spa, tpa) = (a.operation(), a.sender_hw(), a.sender_ip(), a.target_ip());
        let Some(port) = self.tables.port(self.ingress) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        trace!(self.tracer, "arp op {} who-has {} tell {} ({})", op, tpa, spa, sha);
        let is_static = self.tables.neighbours.get(&(self.ingress, spa)) == Some(&sha);
        if !is_static && !spa.is_unspecified() && sha.is_unicast() && port.addrs.iter().any(|a| a.prefix.contains(spa)) {
            self.worker.learn_neighbour(self.ingress, spa, sha);
        }
        // With a kernel mirror, the host stack sees the replies (it may be waiting for one:
        // both sides learn from it) and the requests the dataplane does not answer (for
        // addresses only the kernel owns; it answers only for its own, `arp_ignore = 1`).
        let host = port.host;
        if op == ArpPacket::<&[u8]>::REPLY {
            return if host { self.arp_to_host(frame, l2len) } else { Verdict::Consumed };
        }
        if op != ArpPacket::<&[u8]>::REQUEST || spa == tpa {
            return if host { self.arp_to_host(frame, l2len) } else { Verdict::Drop(DropReason::ArpNotAnswered) };
        }
        let own = port.addrs.iter().any(|a| a.addr == tpa);
        let proxy = !own
            && port.proxy_arp
            && match port.role {
                PortRole::Vrf(v) => self.routed_elsewhere(v, tpa),
                _ => false,
            };
        if !own && !proxy {
            trace!(self.tracer, "not answering for {}", tpa);
            return if host { self.arp_to_host(frame, l2len) } else { Verdict::Drop(DropReason::ArpNotAnswered) };
        }
        let mac = port.mac;
        let mut a = ArpPacket::new_unchecked(&mut frame.data_mut()[l2len..]);
        a.set_operation(ArpPacket::<&[u8]>::REPLY);
        a.set_sender_hw(mac);
        a.set_sender_ip(tpa);
        a.set_target_hw(sha);
        a.set_target_ip(spa);
        self.worker.counters.event(if own { Event::ArpReplyOwn } else { Event::ArpReplyProxy });
        trace!(self.tracer, "{} is-at {} ({})", tpa, mac, if own { "own address" } else { "proxy" });
        self.transmit(frame, l2len, self.ingress, sha, EtherType::Arp)
    }

    /// An ARP frame for the ingress port's kernel mirror: untagged, MACs as received.
    fn arp_to_host(&mut self, frame: &mut F, l2len: usize) -> Verdict {
        trace!(self.tracer, "arp to the host stack");
        let (dst, src) = {
            let d = frame.data();
            (MacAddr(d[0..6].try_into().unwrap_or_default()), MacAddr(d[6..12].try_into().unwrap_or_default()))
        };
        if !super::set_front(frame, l2len, 14) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        super::l2::write_ethernet(frame.data_mut(), dst, src, EtherType::Arp, None);
        Verdict::ToHost(self.ingress)
    }

    /// A packet for the host stack, found by a lookup in `table`: to the kernel mirror of the
    /// port of `table` that owns `dst`, else of the ingress port when it is in `table`, else of
    /// any mirrored port of `table`. The frame becomes untagged Ethernet to that port's MAC
    /// (it stays as received when it came untagged to that port).
    /// Without a mirror (e.g. in `replay`) the frame stays as received, for the ingress port.
    pub(crate) fn host_input(&mut self, frame: &mut F, table: Table, ip_off: usize, dst: Ipv4Addr) -> Verdict {
        let ports = &self.tables.ports;
        let of_table = |p: &crate::tables::Port| match table {
            Table::Vrf(v) => p.role == PortRole::Vrf(v),
            Table::Underlay => p.role == PortRole::Core,
        };
        let in_table = |p: &&crate::tables::Port| p.host && of_table(p);
        let target = ports
            .iter()
            .filter(in_table)
            .find(|p| p.addrs.iter().any(|a| a.addr == dst))
            .or_else(|| self.tables.port(self.ingress).filter(in_table))
            .or_else(|| ports.iter().find(in_table));
        let Some(target) = target else {
            // No mirror for this table. Never another table's mirror (a VRF's packet that came
            // over MPLS must not reach the core's host stack): counted on the ingress port
            // when it belongs to the table, else dropped.
            if self.tables.port(self.ingress).is_some_and(of_table) {
                return Verdict::ToHost(self.ingress);
            }
            trace!(self.tracer, "no host path for {}", self.table_name(table));
            return Verdict::Drop(DropReason::ToHostUnsupported);
        };
        let (id, mac) = (target.id, target.mac);
        if id == self.ingress && ip_off == 14 && frame.data().get(12..14) == Some(&[0x08, 0x00]) {
            trace!(self.tracer, "to the host stack through the mirror of {}, as received", target.name);
            return Verdict::ToHost(id);
        }
        if !super::set_front(frame, ip_off, 14) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        super::l2::write_ethernet(frame.data_mut(), mac, mac, EtherType::Ipv4, None);
        trace!(self.tracer, "to the host stack through the mirror of {}", target.name);
        Verdict::ToHost(id)
    }

    /// True when `vrf` routes `addr` somewhere other than back out of the ingress port.
    fn routed_elsewhere(&self, vrf: VrfId, addr: Ipv4Addr) -> bool {
        let Some((_, nh)) = self.tables.vrfs.get(vrf.index()).and_then(|v| v.fib.lookup(addr)) else {
            return false;
        };
        match self.tables.nexthop(nh) {
            Some(NextHop::Adjacency { port, .. }) => *port != self.ingress,
            Some(NextHop::MplsPush { .. } | NextHop::Vxlan { .. } | NextHop::Ecmp { .. } | NextHop::Receive) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::pipeline::VecFrame;
    use proptest::prelude::*;

    proptest! {
        /// The fixed-offset path for option-less headers decides as the general one: the
        /// same drop, or the same fields and hash and the same trimmed frame.
        #[test]
        fn the_fast_header_path_decides_as_the_general_one(
            mut bytes in proptest::collection::vec(any::<u8>(), 20..40),
            fix_checksum: bool,
            total in 0u16..48,
        ) {
            bytes[0] = 0x45;
            bytes[2..4].copy_from_slice(&total.to_be_bytes());
            if fix_checksum {
                bytes[10..12].copy_from_slice(&[0, 0]);
                let c = crate::wire::checksum::checksum(&bytes[..20]);
                bytes[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let (mut a, mut b) = (VecFrame::new(&bytes), VecFrame::new(&bytes));
            let (fast, general) = (checked_ipv4(&mut a, 0), checked_ipv4_general(&mut b, 0));
            let view = |r: &Result<IpInfo, DropReason>| r.as_ref().map(|i| (i.src, i.dst, i.ttl, i.protocol, i.precedence, i.hash.get())).map_err(|e| *e);
            prop_assert_eq!(view(&fast), view(&general));
            prop_assert_eq!(a.data(), b.data());
        }
    }

    proptest! {
        /// The in-place TTL decrement writes what `Ipv4Packet::decrement_ttl` writes.
        #[test]
        fn ttl_decrement_in_place_matches_the_packets(header in proptest::array::uniform20(any::<u8>())) {
            let mut a = header;
            let mut b = header;
            decrement_ttl(&mut a, 0);
            Ipv4Packet::new_unchecked(&mut b[..]).decrement_ttl();
            prop_assert_eq!(a, b);
        }
    }

    /// The deferred hash is the packet's flow hash: TCP and UDP with ports, fragments and
    /// other protocols without.
    #[test]
    fn the_deferred_flow_hash_is_the_packets() {
        let mut h = [0x45u8, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 1, 0, 2, 10, 3, 0, 2, 0x30, 0x39, 0x82, 0x9a, 0, 8, 0, 0];
        for (protocol, frag) in [(17u8, 0u8), (6, 0), (1, 0), (17, 0x20), (6, 0x01)] {
            h[9] = protocol;
            h[6] = frag;
            let ip = Ipv4Packet::new_checked(&h[..]).unwrap();
            assert_eq!(FlowHash::of(&ip).get(), ip.flow_hash(), "protocol {protocol} frag {frag:#x}");
        }
    }
}
