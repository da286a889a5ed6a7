//! The packet pipeline: classify → VRF / label / VNI lookup → MPLS, VXLAN, proxy ARP, ICMP →
//! rewrite. Pure: no I/O, no locks, no `unsafe`, no allocation per packet (head-end replicas
//! come from the caller's [`FramePool`]; learning tables grow only when they learn).
//!
//! [`process`] runs a [`Batch`] against one [`Tables`] snapshot. Every packet ends in a
//! [`Verdict`]; every drop carries a [`DropReason`] and is counted on its ingress port.
//! The same code runs in `cargo test` over [`VecFrame`]s and in the AF_XDP workers over UMEM.
//! A [`Tracer`] sees each decision; the no-op [`NoTrace`] compiles away, `trace` uses
//! [`StepTrace`].

mod counters;
mod frame;
mod ip;
mod l2;
mod mpls;

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

use carrier_common::{BridgeDomainId, PortId, VrfId};

pub use counters::{Counters, CountersView, DropReason, Event, PacketBytes, PortCounters, PortView, VrfCounters, XdpView};
pub use frame::{Frame, FramePool, VecFrame, VecPool};

use crate::tables::{FastMap, MacDest, PortRole, Tables};
use crate::wire::{EtherType, EthernetFrame, MacAddr};

/// What happens to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not processed yet.
    Pending,
    /// Send on this port.
    Forward(PortId),
    /// Send back on the ingress port (ARP reply, ICMP from the router to a neighbour).
    Reply,
    /// Give to the host stack through this port's kernel mirror (see `crate::host`); without
    /// a mirror the frame is only counted.
    ToHost(PortId),
    /// Absorbed by the dataplane (an ARP reply it learned from); nothing to send.
    Consumed,
    /// Dropped, with the reason.
    Drop(DropReason),
}

/// One packet in a batch.
#[derive(Debug)]
pub struct Packet<F> {
    /// The frame; rewritten in place.
    pub frame: F,
    /// The port it arrived on.
    pub ingress: PortId,
    /// Set by [`process`].
    pub verdict: Verdict,
    /// Written by the host stack on `ingress`'s kernel mirror, to be sent out of that port
    /// (routed by the pipeline when addressed to the port's own MAC).
    pub from_host: bool,
}

/// A batch of packets. [`process`] may append head-end replicas after the received packets;
/// their verdicts are already set.
#[derive(Debug)]
pub struct Batch<F> {
    /// Received packets, then replicas.
    pub packets: Vec<Packet<F>>,
}

impl<F> Default for Batch<F> {
    fn default() -> Self {
        Batch { packets: Vec::with_capacity(64) }
    }
}

impl<F: Frame> Batch<F> {
    /// Add a received frame.
    pub fn push(&mut self, frame: F, ingress: PortId) {
        self.packets.push(Packet { frame, ingress, verdict: Verdict::Pending, from_host: false });
    }

    /// Add a frame the host stack sent on `port`'s kernel mirror.
    pub fn push_from_host(&mut self, frame: F, port: PortId) {
        self.packets.push(Packet { frame, ingress: port, verdict: Verdict::Pending, from_host: true });
    }
}

/// Most entries a worker learns per learning table.
pub const LEARN_LIMIT: usize = 65_536;

/// A neighbour or MAC a worker learned, and how fresh it is (times on the worker clock,
/// [`Worker::now`], in seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Learnt<T> {
    /// The MAC of a neighbour, where a MAC lives.
    pub value: T,
    /// Last confirmed: an ARP from the neighbour, a frame from the MAC.
    pub seen: u32,
    /// Last sent to (neighbours; 0: never since it was learned).
    pub used: u32,
    /// Unicast ARP probes sent since it was last confirmed.
    pub probes: u8,
}

impl<T> Learnt<T> {
    /// Learned (or taken from another worker) at `seen`.
    pub fn new(value: T, seen: u32) -> Self {
        Learnt { value, seen, used: 0, probes: 0 }
    }
}

/// Unicast ARP probes a neighbour in use gets before it expires (Linux: `ucast_solicit`, 3),
/// one a second, in the last seconds of its life.
pub const ARP_PROBES: u8 = 3;

/// A learned entry refreshed by this many seconds or more is published again, so that the
/// other workers (and the express tier) take the fresher time.
const REPUBLISH_AFTER: u32 = 10;

/// A worker's mutable state: its counters and what it learned from traffic. Written only by
/// the worker that owns it.
#[derive(Debug, Default)]
pub struct Worker {
    /// The worker's counters.
    pub counters: Counters,
    /// Neighbours learned from ARP: (port, IP) → MAC.
    pub neighbours: HashMap<(PortId, Ipv4Addr), Learnt<MacAddr>>,
    /// MACs learned in bridge domains.
    pub macs: HashMap<(BridgeDomainId, MacAddr), Learnt<MacDest>>,
    /// Bumped whenever `neighbours` or `macs` change, so the worker republishes them only then.
    pub learned_changes: u64,
    /// The worker clock, seconds: set by the I/O loop from an epoch all workers share (tests
    /// set it by hand). Learned entries age by it.
    pub now: u32,
    /// IPv4 identification for packets the router originates.
    ident: u16,
    /// Next hops resolved through the underlay, by id (direct-mapped, [`ip::HOP_CACHE`]
    /// entries once used), each good for one generation of the tables.
    hops: Vec<ip::ResolvedHop>,
}

/// Learn `value` under `key` at `now` in a worker's learning table: a new entry (`new` is
/// counted), a new value, or the same one confirmed again. Returns whether the worker should
/// republish what it learned (new, changed, or confirmed [`REPUBLISH_AFTER`] seconds or more
/// after the last time, or after probes), and the event to count.
fn learn_entry<K: Eq + std::hash::Hash, V: PartialEq>(map: &mut HashMap<K, Learnt<V>>, key: K, value: V, now: u32, new: Event) -> (bool, Option<Event>) {
    let full = map.len() >= LEARN_LIMIT;
    match map.get_mut(&key) {
        Some(l) if l.value == value => {
            let republish = now.saturating_sub(l.seen) >= REPUBLISH_AFTER || l.probes > 0;
            l.seen = now;
            l.probes = 0;
            (republish, None)
        }
        Some(l) => {
            *l = Learnt::new(value, now);
            (true, None)
        }
        None if full => (false, Some(Event::LearnTableFull)),
        None => {
            map.insert(key, Learnt::new(value, now));
            (true, Some(new))
        }
    }
}

/// Take another worker's entries into `map`: those it does not know, and the fresher time of
/// those it knows with the same value; its own values stay.
fn adopt_entries<K: Eq + std::hash::Hash, V: PartialEq>(map: &mut HashMap<K, Learnt<V>>, entries: impl Iterator<Item = (K, V, u32)>) {
    for (key, value, seen) in entries {
        let full = map.len() >= LEARN_LIMIT;
        match map.get_mut(&key) {
            Some(l) if l.value == value && seen > l.seen => {
                l.seen = seen;
                l.probes = 0;
            }
            Some(_) => {}
            None if !full => {
                map.insert(key, Learnt::new(value, seen));
            }
            None => {}
        }
    }
}

impl Worker {
    fn learn_neighbour(&mut self, port: PortId, ip: Ipv4Addr, mac: MacAddr) {
        let (republish, event) = learn_entry(&mut self.neighbours, (port, ip), mac, self.now, Event::NeighbourLearned);
        self.note_learning(republish, event);
    }

    fn learn_mac(&mut self, bd: BridgeDomainId, mac: MacAddr, dest: MacDest) {
        let (republish, event) = learn_entry(&mut self.macs, (bd, mac), dest, self.now, Event::MacLearned);
        self.note_learning(republish, event);
    }

    fn note_learning(&mut self, republish: bool, event: Option<Event>) {
        if republish {
            self.learned_changes += 1;
        }
        if let Some(e) = event {
            self.counters.event(e);
        }
    }

    /// Take what another worker learned that this one does not know (not counted as this
    /// worker's learning), and the fresher time of what both know with the same value. What
    /// this worker learned itself stays: a MAC that moves is relearned by each worker from the
    /// ARP or frames it receives itself.
    pub fn adopt(&mut self, neighbours: &[(PortId, Ipv4Addr, MacAddr, u32)], macs: &[(BridgeDomainId, MacAddr, MacDest, u32)]) {
        adopt_entries(&mut self.neighbours, neighbours.iter().map(|&(port, ip, mac, seen)| ((port, ip), mac, seen)));
        adopt_entries(&mut self.macs, macs.iter().map(|&(bd, mac, dest, seen)| ((bd, mac), dest, seen)));
    }

    /// Ages what this worker learned, at `now` on the worker clock, by the router's timeouts
    /// in `tables` (0: never): a neighbour or MAC not confirmed for its timeout goes (counted
    /// `neighbour-expired`, `mac-expired`). A neighbour still in use (sent to since it was
    /// last confirmed, or the gateway of a route) is probed first, as Linux does: in the last
    /// [`ARP_PROBES`] seconds of its life it gets a unicast ARP request a second, and an answer
    /// renews it. Returns the probes to send: (port, neighbour, its MAC). Call it about once a
    /// second.
    pub fn age(&mut self, now: u32, tables: &Tables) -> Vec<(PortId, Ipv4Addr, MacAddr)> {
        self.age_with(now, tables, &FastMap::default())
    }

    /// [`Worker::age`], with the neighbours another forwarding tier sent to (the XDP express
    /// tier, which the worker never sees): (port, address) → when last.
    pub fn age_with(&mut self, now: u32, tables: &Tables, used_elsewhere: &FastMap<(PortId, Ipv4Addr), u32>) -> Vec<(PortId, Ipv4Addr, MacAddr)> {
        self.now = now;
        let mut probes = vec![];
        let timeout = tables.router.neighbour_timeout;
        if timeout > 0 {
            let probe_from = timeout.saturating_sub(u32::from(ARP_PROBES)).max(timeout / 2);
            let before = self.neighbours.len();
            let mut expired = 0u64;
            self.neighbours.retain(|&(port, ip), l| {
                let age = now.saturating_sub(l.seen);
                if age >= timeout {
                    expired += 1;
                    return false;
                }
                // One probe a second: the n-th once the age passed probe_from + n.
                if age >= probe_from + u32::from(l.probes) && l.probes < ARP_PROBES {
                    let used = l.used.max(used_elsewhere.get(&(port, ip)).copied().unwrap_or(0));
                    let in_use = (used > 0 && used >= l.seen) || tables.is_gateway(port, ip);
                    if in_use {
                        l.probes += 1;
                        probes.push((port, ip, l.value));
                    }
                }
                true
            });
            if self.neighbours.len() != before {
                self.learned_changes += 1;
            }
            for _ in 0..expired {
                self.counters.event(Event::NeighbourExpired);
            }
        }
        let timeout = tables.router.mac_timeout;
        if timeout > 0 {
            let before = self.macs.len();
            self.macs.retain(|_, l| now.saturating_sub(l.seen) < timeout);
            let expired = (before - self.macs.len()) as u64;
            if expired > 0 {
                self.learned_changes += 1;
            }
            for _ in 0..expired {
                self.counters.event(Event::MacExpired);
            }
        }
        probes
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }
}

/// Sees every decision the pipeline makes for a packet.
pub trait Tracer {
    /// True when steps are recorded (lets callers skip formatting work).
    const ENABLED: bool;
    /// One step.
    fn step(&mut self, args: fmt::Arguments<'_>);
}

/// Records nothing; compiled away.
#[derive(Debug, Default)]
pub struct NoTrace;

impl Tracer for NoTrace {
    const ENABLED: bool = false;
    #[inline(always)]
    fn step(&mut self, _: fmt::Arguments<'_>) {}
}

/// Records each step as a line of text (for `trace`).
#[derive(Debug, Default)]
pub struct StepTrace {
    /// The steps in order.
    pub steps: Vec<String>,
}

impl Tracer for StepTrace {
    const ENABLED: bool = true;
    fn step(&mut self, args: fmt::Arguments<'_>) {
        self.steps.push(args.to_string());
    }
}

macro_rules! trace {
    ($t:expr, $($arg:tt)*) => {
        if T::ENABLED {
            $crate::pipeline::Tracer::step($t, format_args!($($arg)*));
        }
    };
}
pub(crate) use trace;

/// Everything one packet's processing reads and writes besides its frame.
pub(crate) struct Ctx<'a, F: Frame, P: FramePool<F>, T: Tracer> {
    pub tables: &'a Tables,
    pub worker: &'a mut Worker,
    pub pool: &'a mut P,
    pub tracer: &'a mut T,
    /// Replicas made while processing this packet, with their verdicts.
    pub replicas: Vec<(F, Verdict)>,
    /// The VRF the packet entered, for per-VRF drop counting.
    pub vrf: Option<VrfId>,
    pub ingress: PortId,
    /// Labels pushed or swapped in on the frame being built; counted in `labels_out` with the
    /// frame's final length when it is transmitted (not when it is dropped).
    pub labels_out: [u32; 6],
    pub labels_out_len: usize,
    /// The IPv4 TTL at `ttl_off` was decremented by this router (undone when the packet is
    /// quoted in an ICMP fragmentation-needed, which quotes the packet as received).
    pub decremented: bool,
}

/// Run the pipeline over a batch: every received packet gets its verdict; replicas are
/// appended with theirs. Counters of `worker` are updated.
pub fn process<F: Frame, P: FramePool<F>>(tables: &Tables, batch: &mut Batch<F>, worker: &mut Worker, pool: &mut P) {
    process_traced(tables, batch, worker, pool, &mut NoTrace);
}

/// [`process`] with a tracer that sees each decision.
pub fn process_traced<F: Frame, P: FramePool<F>, T: Tracer>(
    tables: &Tables,
    batch: &mut Batch<F>,
    worker: &mut Worker,
    pool: &mut P,
    tracer: &mut T,
) {
    worker.counters.ensure(tables.ports.len(), tables.vrfs.len());
    let received = batch.packets.len();
    for i in 0..received {
        let pkt = &mut batch.packets[i];
        if pkt.verdict != Verdict::Pending {
            continue;
        }
        let mut ctx =
            Ctx { tables, worker: &mut *worker, pool: &mut *pool, tracer: &mut *tracer, replicas: Vec::new(), vrf: None, ingress: pkt.ingress, labels_out: [0; 6], labels_out_len: 0, decremented: false };
        let verdict = if pkt.from_host { ctx.host_output(&mut pkt.frame) } else { ctx.input(&mut pkt.frame) };
        let replicas = std::mem::take(&mut ctx.replicas);
        let (vrf, ingress) = (ctx.vrf, pkt.ingress);
        account(worker, ingress, vrf, verdict, pkt.frame.len());
        pkt.verdict = verdict;
        for (frame, verdict) in replicas {
            account_tx(worker, ingress, verdict, frame.len());
            batch.packets.push(Packet { frame, ingress, verdict, from_host: false });
        }
    }
}

/// Writes into `frame` (its content is replaced) a unicast ARP request from the router to the
/// neighbour `target` at `mac` on `port`: one of [`Worker::age`]'s probes. Returns the verdict
/// to send it (`Forward(port)`, counted as `arp-probe-sent` and in the port's tx), or a drop
/// when the port is gone or has no address. The answer renews the neighbour.
pub fn arp_probe<F: Frame, P: FramePool<F>>(tables: &Tables, worker: &mut Worker, pool: &mut P, frame: &mut F, port: PortId, target: Ipv4Addr, mac: MacAddr) -> Verdict {
    worker.counters.ensure(tables.ports.len(), tables.vrfs.len());
    // No ingress: the router originates it (an impossible port id, so never a `Reply`).
    let mut ctx = Ctx { tables, worker: &mut *worker, pool, tracer: &mut NoTrace, replicas: Vec::new(), vrf: None, ingress: PortId(u16::MAX), labels_out: [0; 6], labels_out_len: 0, decremented: false };
    let verdict = ctx.arp_request(frame, port, target, mac, |ctx| ctx.worker.counters.event(Event::ArpProbeSent));
    account_tx(worker, PortId(u16::MAX), verdict, frame.len());
    verdict
}

fn account(worker: &mut Worker, ingress: PortId, vrf: Option<VrfId>, verdict: Verdict, len: usize) {
    let c = &mut worker.counters;
    match verdict {
        Verdict::Drop(reason) => {
            if let Some(p) = c.port(ingress) {
                p.drops[reason as usize] += 1;
            }
            if let Some(v) = vrf.and_then(|v| c.vrf(v)) {
                v.drops += 1;
            }
        }
        Verdict::ToHost(_) => {
            if let Some(p) = c.port(ingress) {
                p.to_host += 1;
            }
        }
        _ => account_tx(worker, ingress, verdict, len),
    }
}

fn account_tx(worker: &mut Worker, ingress: PortId, verdict: Verdict, len: usize) {
    let out = match verdict {
        Verdict::Forward(p) => p,
        Verdict::Reply => ingress,
        _ => return,
    };
    if let Some(p) = worker.counters.port(out) {
        p.tx.add(len);
    }
}

impl<F: Frame, P: FramePool<F>, T: Tracer> Ctx<'_, F, P, T> {
    /// Classify by ingress port and ethertype.
    fn input(&mut self, frame: &mut F) -> Verdict {
        let Some(port) = self.tables.port(self.ingress) else {
            trace!(self.tracer, "ingress port {} is not configured", self.ingress);
            return Verdict::Drop(DropReason::UnknownPort);
        };
        if let Some(c) = self.worker.counters.port(self.ingress) {
            c.rx.add(frame.len());
        }
        let Ok(eth) = EthernetFrame::new_checked(frame.data()) else {
            return Verdict::Drop(DropReason::EthTruncated);
        };
        let (dst, src, ethertype, l2len, vlan) =
            (eth.dst_addr(), eth.src_addr(), eth.ethertype(), eth.header_len(), eth.vlan_id());
        trace!(self.tracer, "rx on {} ({}): {} → {}, ethertype {:?}, vlan {:?}, {} bytes", port.name, self.ingress, src, dst, ethertype, vlan, frame.len());
        if vlan != port.vlan {
            trace!(self.tracer, "port expects vlan {:?}", port.vlan);
            return Verdict::Drop(DropReason::VlanMismatch);
        }
        match port.role {
            PortRole::Bridge(bd) => return self.bridge_input(frame, bd, l2len),
            PortRole::Detached => return Verdict::Drop(DropReason::PortDetached),
            PortRole::Vrf(_) | PortRole::Core => {}
        }
        if dst != port.mac && !dst.is_broadcast() {
            return Verdict::Drop(if dst.is_multicast() { DropReason::L2Multicast } else { DropReason::NotForUs });
        }
        match (ethertype, port.role) {
            (EtherType::Arp, _) => self.arp_input(frame, l2len),
            (EtherType::Ipv4, PortRole::Vrf(vrf)) => {
                self.route(frame, crate::tables::Table::Vrf(vrf), l2len, ip::Hop::Routed { check_source: port.anti_spoof }, 0)
            }
            (EtherType::Ipv4, _) => self.core_ipv4_input(frame, l2len),
            (EtherType::Mpls, PortRole::Core) => self.mpls_input(frame, l2len),
            (EtherType::Mpls, _) => Verdict::Drop(DropReason::MplsOnCustomerPort),
            _ => Verdict::Drop(DropReason::UnknownEthertype),
        }
    }

    /// A frame the host stack sent on a port's kernel mirror. Addressed to the port's own MAC
    /// (the kernel's route through the dataplane, see `crate::host`) it is routed in the port's
    /// table as a packet the router originates; anything else (ARP, frames to a neighbour the
    /// kernel resolved itself) goes straight out of the port, tagged as the port is.
    fn host_output(&mut self, frame: &mut F) -> Verdict {
        let Some(port) = self.tables.port(self.ingress) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        if let Some(c) = self.worker.counters.port(self.ingress) {
            c.from_host += 1;
        }
        let Ok(eth) = EthernetFrame::new_checked(frame.data()) else {
            return Verdict::Drop(DropReason::EthTruncated);
        };
        let (dst, ethertype, vlan) = (eth.dst_addr(), eth.ethertype(), eth.vlan_id());
        trace!(self.tracer, "from the host stack on {}: → {}, ethertype {:?}, {} bytes", port.name, dst, ethertype, frame.len());
        if vlan.is_some() {
            return Verdict::Drop(DropReason::VlanMismatch);
        }
        if dst != port.mac {
            return self.transmit(frame, 14, port.id, dst, ethertype);
        }
        let table = match (ethertype, port.role) {
            (EtherType::Ipv4, PortRole::Vrf(v)) => crate::tables::Table::Vrf(v),
            (EtherType::Ipv4, PortRole::Core) => crate::tables::Table::Underlay,
            _ => return Verdict::Drop(DropReason::NotForUs),
        };
        self.route(frame, table, 14, ip::Hop::Originated, 0)
    }

    /// Rewrite the L2 header in front of the network header at `net_off` for `port`: the
    /// destination MAC given, the port's MAC as source, and the port's VLAN tag if it has one.
    /// Checks the port's MTU. Returns the verdict to send it.
    fn transmit(&mut self, frame: &mut F, net_off: usize, port: PortId, dst: MacAddr, ethertype: EtherType) -> Verdict {
        let Some(p) = self.tables.port(port) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        if p.role == PortRole::Detached {
            return Verdict::Drop(DropReason::PortDetached);
        }
        if frame.len() - net_off > usize::from(p.mtu) {
            trace!(self.tracer, "{} bytes exceed the MTU {} of {}", frame.len() - net_off, p.mtu, p.name);
            self.labels_out_len = 0;
            return self.too_big(frame, net_off, ethertype, p.mtu);
        }
        let l2len = if p.vlan.is_some() { 18 } else { 14 };
        if !set_front(frame, net_off, l2len) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        l2::write_ethernet(frame.data_mut(), dst, p.mac, ethertype, p.vlan);
        trace!(self.tracer, "tx on {} ({}): {} → {}, ethertype {:?}, {} bytes", p.name, port, p.mac, dst, ethertype, frame.len());
        let len = frame.len();
        for label in &self.labels_out[..self.labels_out_len] {
            self.worker.counters.labels_out.add(*label, len);
        }
        self.labels_out_len = 0;
        if port == self.ingress {
            Verdict::Reply
        } else {
            Verdict::Forward(port)
        }
    }

    /// Hand a copy of the frame's current bytes to `send`, which finishes it and returns its
    /// verdict; the copy is kept as a replica. Counted as a drop when the pool is empty.
    fn replicate(&mut self, data: &[u8], send: impl FnOnce(&mut Self, &mut F) -> Verdict) {
        match self.pool.copy_of(data) {
            Some(mut copy) => {
                self.worker.counters.event(Event::Replicated);
                let v = send(self, &mut copy);
                match v {
                    Verdict::Drop(r) => self.count_drop(r),
                    _ => self.replicas.push((copy, v)),
                }
            }
            None => self.count_drop(DropReason::ReplicationNoBuffer),
        }
    }

    /// Count a drop that is not the packet's own verdict (the original of a packet the router
    /// answered with ICMP or ARP, or a replica that failed), on the port and the VRF.
    fn count_drop(&mut self, reason: DropReason) {
        if let Some(p) = self.worker.counters.port(self.ingress) {
            p.drops[reason as usize] += 1;
        }
        if let Some(v) = self.vrf.and_then(|v| self.worker.counters.vrf(v)) {
            v.drops += 1;
        }
    }

    /// Remember a label pushed (or swapped in) on the frame, for `labels_out`.
    pub(crate) fn label_out(&mut self, label: carrier_common::Label) {
        if self.labels_out_len < self.labels_out.len() {
            self.labels_out[self.labels_out_len] = label.value();
            self.labels_out_len += 1;
        }
    }

    /// A packet too large for its egress port. For IPv4 with DF set (under any label stack)
    /// the sender gets ICMP fragmentation needed with the MTU left after the labels
    /// (RFC 1191, RFC 3032 §3); everything else is a counted drop — carrier does not
    /// fragment.
    fn too_big(&mut self, frame: &mut F, net_off: usize, ethertype: EtherType, mtu: u16) -> Verdict {
        let d = &frame.data()[net_off..];
        let stack = match ethertype {
            EtherType::Ipv4 => 0,
            EtherType::Mpls => match crate::wire::mpls::stack_depth(d, 8) {
                Ok(n) => n * 4,
                Err(_) => return Verdict::Drop(DropReason::MtuExceeded),
            },
            _ => return Verdict::Drop(DropReason::MtuExceeded),
        };
        let ip_off = net_off + stack;
        let df = crate::wire::Ipv4Packet::new_checked(&frame.data()[ip_off..]).is_ok_and(|ip| ip.dont_frag());
        if !df || !frame.pull_front(ip_off) {
            return Verdict::Drop(DropReason::MtuExceeded);
        }
        if self.decremented {
            let mut ip = crate::wire::Ipv4Packet::new_unchecked(frame.data_mut());
            let ttl = ip.ttl().wrapping_add(1);
            ip.set_ttl(ttl);
            ip.fill_checksum();
            self.decremented = false;
        }
        let table = match self.vrf {
            Some(v) => crate::tables::Table::Vrf(v),
            None => crate::tables::Table::Underlay,
        };
        let next_hop_mtu = u32::from(mtu).saturating_sub(stack as u32) & 0xffff;
        self.icmp_error(
            frame,
            table,
            0,
            ip::Hop::Routed { check_source: false },
            (crate::wire::icmpv4::DEST_UNREACHABLE, 4, next_hop_mtu),
            DropReason::MtuExceeded,
            2,
        )
    }
}

/// Make the frame start exactly `len` bytes before `off`: grow or trim the front.
fn set_front<F: Frame>(frame: &mut F, off: usize, len: usize) -> bool {
    if off >= len {
        frame.pull_front(off - len)
    } else {
        frame.push_front(len - off)
    }
}

/// Make room for `n` bytes right before `*off`, growing the frame's front if needed; `*off`
/// becomes the start of the room.
fn room_before<F: Frame>(frame: &mut F, off: &mut usize, n: usize) -> bool {
    if *off < n {
        if !frame.push_front(n - *off) {
            return false;
        }
        *off = n;
    }
    *off -= n;
    true
}
