//! Packet I/O: the only place with `unsafe` (UMEM, rings, AF_XDP sockets, signals).
//!
//! [`Ports`] is the small trait the worker loop runs over: receive a batch, transmit by
//! verdict, recycle frames, and lend a [`FramePool`] for head-end replicas. [`xsk::XskPorts`]
//! implements it over AF_XDP sockets sharing one UMEM (forwarding between ports needs no copy);
//! [`FakePorts`] implements it over queues of byte vectors, for tests without root.

pub mod caps;
pub mod netdev;
pub mod signals;
pub mod tap;
#[cfg(feature = "io")]
pub mod xsk;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carrier_common::{PortId, VrfId};

use crate::pipeline::{self, Batch, Counters, DropReason, Frame, FramePool, PacketBytes, VecFrame, VecPool, Verdict, Worker};
use crate::tables::Ipv4Prefix;
use crate::tables::{TableHandle, Tables};

/// Frames per receive batch (256 beat 64 by ~25% flooded on veth: bench/RESULTS.md).
pub const BATCH: usize = 256;

/// What the worker loop needs from the packet I/O.
pub trait Ports {
    /// The frame type.
    type Frame: Frame;
    /// The pool replicas come from.
    type Pool: FramePool<Self::Frame>;

    /// Append up to `max` received frames to `batch`; housekeeping (refilling receive buffers,
    /// reaping transmit completions) happens here too. Returns how many were received.
    fn receive(&mut self, batch: &mut Batch<Self::Frame>, max: usize) -> usize;
    /// Send every packet of `batch` whose verdict says so (to the host stack too), recycle the
    /// rest; empties `batch`. A frame the host stack's queue refuses is counted in `counters`
    /// as a `host-queue-full` drop on its ingress port.
    fn transmit(&mut self, batch: &mut Batch<Self::Frame>, counters: &mut Counters);
    /// The pool for replicas.
    fn pool(&mut self) -> &mut Self::Pool;
    /// Block until a frame may be there, at most `timeout`.
    fn wait(&mut self, timeout: Duration);
    /// Open a socket on this worker's queue of interface `ifname` as port `port` (a port
    /// attached while the dataplane runs): (queue, the socket's descriptor for the XSKMAP).
    fn add_port(&mut self, port: PortId, ifname: &str) -> Result<(u32, i32), String> {
        Err(format!("{ifname} (port {port}): these ports cannot be added to"))
    }
}

/// A port to open on every worker's queue, and what each worker answered.
#[derive(Debug, Default)]
pub struct PortRequest {
    /// Counts requests: a worker answers each once.
    pub serial: u64,
    /// The port and its interface.
    pub port: Option<(PortId, String)>,
    /// Per worker: (queue, socket descriptor), or why not.
    pub replies: Vec<Option<Result<(u32, i32), String>>>,
}

/// Where a worker publishes its counters for readers (table socket, metrics). The worker
/// replaces its slot's copy every [`PUBLISH_EVERY`]; readers sum the slots.
#[derive(Debug, Default, Clone)]
pub struct CounterBoard {
    slots: Arc<Mutex<Vec<Counters>>>,
    /// The XDP program's per-port counters (redirected, passed, dropped), by port name;
    /// written by the thread that owns the XDP program.
    xdp: Arc<Mutex<Vec<XdpPort>>>,
    /// Per worker: the neighbours and MACs it learned, republished when they change, and how
    /// often it republished them.
    learned: Arc<Mutex<Vec<(u64, Learned)>>>,
    /// What the XDP express tier forwarded, in the workers' terms (merged into the totals),
    /// and its per-port punts by reason name; written by the thread that owns the program.
    express: Arc<Mutex<(Counters, Vec<ExpressPort>)>>,
    /// The epoch of the worker clock all workers share (learned entries carry its times).
    epoch: Arc<Epoch>,
    /// What the express tier forwarded per prefix, in VRFs with per-prefix counters (its
    /// routes' current prefixes); written by the thread that owns the program.
    express_prefixes: Arc<Mutex<BTreeMap<(VrfId, Ipv4Prefix), PacketBytes>>>,
    /// A port every worker is asked to open (see [`CounterBoard::open_port`]).
    port_request: Arc<Mutex<PortRequest>>,
    /// Neighbours the express tier sent to, and when (the worker clock): aging probes them
    /// as neighbours in use. Written by the thread that owns the program.
    express_used: Arc<Mutex<crate::tables::FastMap<(PortId, std::net::Ipv4Addr), u32>>>,
}

/// When the worker clock started.
#[derive(Debug)]
struct Epoch(Instant);

impl Default for Epoch {
    fn default() -> Self {
        Epoch(Instant::now())
    }
}

/// One port's express-tier figures as the XDP thread publishes them: (port, frames the tier
/// forwarded, punts by reason name, the headroom check: `None` before the port's first frame,
/// then whether the driver leaves room for the tier's largest push).
pub type ExpressPort = (String, u64, std::collections::BTreeMap<String, u64>, Option<bool>);

/// One port's XDP counters as the XDP thread publishes them: (port, attach mode, counters).
pub type XdpPort = (String, &'static str, carrier_common::XdpPortStats);

/// What one worker learned from traffic, each entry with when it was last confirmed (the
/// shared worker clock, seconds: [`CounterBoard::clock`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Learned {
    /// (port, IP) → MAC, from ARP.
    pub neighbours: Vec<LearnedNeighbour>,
    /// (bridge domain, MAC) → where it lives.
    pub macs: Vec<LearnedMac>,
}

/// A learned neighbour: (port, IP, MAC, last confirmed).
pub type LearnedNeighbour = (PortId, std::net::Ipv4Addr, crate::wire::MacAddr, u32);
/// A learned MAC: (bridge domain, MAC, where it lives, last confirmed).
pub type LearnedMac = (carrier_common::BridgeDomainId, crate::wire::MacAddr, crate::tables::MacDest, u32);

impl Learned {
    /// The same neighbours and MACs with the same values, whatever their times.
    pub fn same_entries(&self, other: &Learned) -> bool {
        let n = |(a, b): (&LearnedNeighbour, &LearnedNeighbour)| (a.0, a.1, a.2) == (b.0, b.1, b.2);
        let m = |(a, b): (&LearnedMac, &LearnedMac)| (a.0, a.1, a.2) == (b.0, b.1, b.2);
        self.neighbours.len() == other.neighbours.len()
            && self.macs.len() == other.macs.len()
            && self.neighbours.iter().zip(&other.neighbours).all(n)
            && self.macs.iter().zip(&other.macs).all(m)
    }
}

/// How often a worker publishes its counters.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

impl CounterBoard {
    /// A board with one slot per worker.
    pub fn new(workers: usize) -> Self {
        CounterBoard {
            slots: Arc::new(Mutex::new(vec![Counters::default(); workers])),
            xdp: Arc::default(),
            learned: Arc::new(Mutex::new(vec![(0, Learned::default()); workers])),
            express: Arc::default(),
            epoch: Arc::default(),
            express_prefixes: Arc::default(),
            port_request: Arc::new(Mutex::new(PortRequest { replies: vec![None; workers], ..PortRequest::default() })),
            express_used: Arc::default(),
        }
    }

    /// The worker clock: whole seconds since the board was made, from 1 (0 means never).
    pub fn clock(&self) -> u32 {
        u32::try_from(self.epoch.0.elapsed().as_secs()).unwrap_or(u32::MAX - 1) + 1
    }

    pub(crate) fn publish(&self, slot: usize, counters: &Counters) {
        if let Ok(mut s) = self.slots.lock() {
            if let Some(c) = s.get_mut(slot) {
                c.clone_from(counters);
            }
        }
    }

    /// Replace what worker `slot` learned.
    pub fn publish_learned(&self, slot: usize, worker: &Worker) {
        let learned = Learned {
            neighbours: worker.neighbours.iter().map(|(&(port, ip), l)| (port, ip, l.value, l.seen)).collect(),
            macs: worker.macs.iter().map(|(&(bd, mac), l)| (bd, mac, l.value, l.seen)).collect(),
        };
        if let Ok(mut l) = self.learned.lock() {
            if let Some(s) = l.get_mut(slot) {
                *s = (s.0 + 1, learned);
            }
        }
    }

    /// What the other workers published since worker `slot` last asked (`seen`: the versions
    /// it has taken, kept by the caller): a worker takes its peers' learning, since the reply
    /// to an ARP request it sent may arrive on another queue.
    pub fn learned_by_others(&self, slot: usize, seen: &mut Vec<u64>) -> Vec<Learned> {
        let Ok(l) = self.learned.lock() else { return vec![] };
        seen.resize(l.len(), 0);
        let mut out = vec![];
        for (i, (version, learned)) in l.iter().enumerate() {
            if i != slot && seen[i] != *version {
                seen[i] = *version;
                out.push(learned.clone());
            }
        }
        out
    }

    /// Frames each worker received (from its queue of every port), as last published.
    pub fn worker_frames(&self) -> Vec<u64> {
        self.slots.lock().map(|s| s.iter().map(|c| c.ports.iter().map(|p| p.rx.packets).sum()).collect()).unwrap_or_default()
    }

    /// What every worker learned (a neighbour learned by two workers appears twice when they
    /// disagree on its MAC, once otherwise, with the latest time any of them confirmed it).
    pub fn learned(&self) -> Learned {
        let mut all = Learned::default();
        if let Ok(l) = self.learned.lock() {
            for (_, w) in l.iter() {
                all.neighbours.extend(w.neighbours.iter().copied());
                all.macs.extend(w.macs.iter().copied());
            }
        }
        // Latest first within each (port, IP, MAC): dedup keeps the first.
        all.neighbours.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)).then(b.3.cmp(&a.3)));
        all.neighbours.dedup_by(|a, b| (a.0, a.1, a.2) == (b.0, b.1, b.2));
        all.macs.sort_by(|a, b| (a.0, a.1 .0).cmp(&(b.0, b.1 .0)).then(b.3.cmp(&a.3)));
        all.macs.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        all
    }

    /// Replace the express tier's counters: what it forwarded, and per port (name, frames
    /// forwarded, punts by reason).
    pub fn publish_express(&self, counters: Counters, ports: Vec<ExpressPort>) {
        if let Ok(mut e) = self.express.lock() {
            *e = (counters, ports);
        }
    }

    /// Replace the XDP counters: (port, attach mode, counters).
    pub fn publish_xdp(&self, stats: Vec<XdpPort>) {
        if let Ok(mut x) = self.xdp.lock() {
            *x = stats;
        }
    }

    /// The workers' counters with names (see [`Counters::view`]) and the XDP program's
    /// per-port counters.
    pub fn view(&self, port_names: &[String], vrf_names: &[String]) -> crate::pipeline::CountersView {
        let mut view = self.total().view(port_names, vrf_names);
        if let Ok(x) = self.xdp.lock() {
            view.xdp = x
                .iter()
                .map(|(name, mode, s)| (name.clone(), crate::pipeline::XdpView { mode: (*mode).to_string(), redirected: s.redirected, passed: s.passed, dropped: s.dropped, ..Default::default() }))
                .collect();
        }
        if let Ok(e) = self.express.lock() {
            for (name, forwarded, punts, headroom) in &e.1 {
                if let Some(v) = view.xdp.get_mut(name) {
                    v.express_forwarded = *forwarded;
                    v.express_punts = punts.clone();
                    v.express_headroom = headroom.map(|ok| if ok { "ok" } else { "short" }.to_string());
                }
            }
        }
        view
    }

    /// What the express tier forwarded, in the workers' terms (as last published).
    pub fn express_total(&self) -> Counters {
        self.express.lock().map(|e| e.0.clone()).unwrap_or_default()
    }

    /// Ask every worker to open a socket on its queue of `ifname` as port `port`, and wait
    /// (up to `within`) for their answers: per worker (queue, socket descriptor). A worker
    /// answers at its next housekeeping (every [`PUBLISH_EVERY`]).
    pub fn open_port(&self, port: PortId, ifname: &str, within: Duration) -> Result<Vec<(u32, i32)>, String> {
        let serial = {
            let mut r = self.port_request.lock().map_err(|_| "the port request lock is poisoned".to_string())?;
            r.serial += 1;
            r.port = Some((port, ifname.to_string()));
            r.replies.iter_mut().for_each(|x| *x = None);
            r.serial
        };
        let deadline = Instant::now() + within;
        loop {
            std::thread::sleep(Duration::from_millis(10));
            let mut r = self.port_request.lock().map_err(|_| "the port request lock is poisoned".to_string())?;
            if r.serial == serial && r.replies.iter().all(Option::is_some) {
                r.port = None;
                return r.replies.iter_mut().map(|x| x.take().unwrap_or_else(|| Err("no answer".into()))).collect();
            }
            if Instant::now() >= deadline {
                r.port = None;
                return Err(format!("{ifname}: the workers did not open their sockets within {within:?}"));
            }
        }
    }

    /// The port this worker is asked to open, if it has not answered yet.
    fn port_to_open(&self, slot: usize, answered: u64) -> Option<(u64, PortId, String)> {
        let r = self.port_request.lock().ok()?;
        let (port, name) = r.port.clone()?;
        (r.serial != answered && r.replies.get(slot).is_some_and(Option::is_none)).then_some((r.serial, port, name))
    }

    /// Worker `slot`'s answer to request `serial`.
    fn port_opened(&self, slot: usize, serial: u64, reply: Result<(u32, i32), String>) {
        if let Ok(mut r) = self.port_request.lock() {
            if r.serial == serial {
                if let Some(x) = r.replies.get_mut(slot) {
                    *x = Some(reply);
                }
            }
        }
    }

    /// The express tier sent to these neighbours since it last said.
    pub fn mark_express_used(&self, neighbours: impl IntoIterator<Item = (PortId, std::net::Ipv4Addr)>) {
        let now = self.clock();
        if let Ok(mut m) = self.express_used.lock() {
            for n in neighbours {
                m.insert(n, now);
            }
        }
    }

    /// The neighbours the express tier sent to, and when.
    pub fn express_used(&self) -> crate::tables::FastMap<(PortId, std::net::Ipv4Addr), u32> {
        self.express_used.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Replace the express tier's per-prefix counts.
    pub fn publish_express_prefixes(&self, counts: BTreeMap<(VrfId, Ipv4Prefix), PacketBytes>) {
        if let Ok(mut e) = self.express_prefixes.lock() {
            *e = counts;
        }
    }

    /// What each route of VRF `vrf` forwarded, both tiers summed, by prefix: the workers'
    /// counts of routes `fib` holds in the same slot now, and the express tier's.
    pub fn prefixes(&self, vrf: VrfId, fib: &crate::tables::Fib) -> BTreeMap<Ipv4Prefix, PacketBytes> {
        let mut out = BTreeMap::new();
        if let Ok(s) = self.slots.lock() {
            for c in s.iter() {
                c.prefix_counts(vrf, |slot| fib.slot_prefix(slot), &mut out);
            }
        }
        if let Ok(e) = self.express_prefixes.lock() {
            for (&(_, prefix), c) in e.range((vrf, Ipv4Prefix::DEFAULT)..).take_while(|((v, _), _)| *v == vrf) {
                let o = out.entry(prefix).or_default();
                o.packets += c.packets;
                o.bytes += c.bytes;
            }
        }
        out
    }

    /// The sum over workers.
    pub fn total(&self) -> Counters {
        let mut total = Counters::default();
        if let Ok(s) = self.slots.lock() {
            for c in s.iter() {
                total.merge(c);
            }
        }
        if let Ok(e) = self.express.lock() {
            total.merge(&e.0);
        }
        total
    }
}

/// Run the pipeline over `ports` until `stop` is set: receive a batch, load the current tables
/// once, process, transmit. Spins while traffic flows and sleeps in `wait` when idle, so a
/// worker sharing its CPU with the kernel's receive processing leaves it time.
pub fn run_worker<P: Ports>(ports: &mut P, tables: &TableHandle, stop: &AtomicBool, board: &CounterBoard, slot: usize) -> Worker {
    let mut worker = Worker::default();
    let mut batch = Batch::default();
    let mut policer = HostPolicer::default();
    let mut idle_rounds = 0u32;
    let mut last_publish = Instant::now();
    let mut published_learned = 0u64;
    let mut peers_seen = vec![];
    let mut pruned_for = 0usize;
    let mut aged_at = 0u32;
    let mut probes = Batch::default();
    let mut ports_answered = 0u64;
    worker.now = board.clock();
    while !stop.load(Ordering::Relaxed) {
        let n = ports.receive(&mut batch, BATCH);
        if n == 0 {
            idle_rounds += 1;
            if idle_rounds > 64 {
                ports.wait(Duration::from_millis(10));
            }
        } else {
            idle_rounds = 0;
            let snapshot = tables.load();
            pipeline::process(&snapshot, &mut batch, &mut worker, ports.pool());
            policer.police(&snapshot, &mut batch, &mut worker.counters, Instant::now());
            ports.transmit(&mut batch, &mut worker.counters);
        }
        if last_publish.elapsed() >= PUBLISH_EVERY {
            // Out-label counters of labels nothing pushes any more go, once per new snapshot
            // (by address: holding the old snapshot would keep the writer from reusing it).
            let snapshot = tables.load();
            if Arc::as_ptr(&snapshot) as usize != pruned_for {
                forget_unpushed(&mut worker.counters, &snapshot);
                pruned_for = Arc::as_ptr(&snapshot) as usize;
            }
            drop(snapshot);
            board.publish(slot, &worker.counters);
            if let Some((serial, port, name)) = board.port_to_open(slot, ports_answered) {
                let reply = ports.add_port(port, &name);
                match &reply {
                    Ok((queue, _)) => log::info!("worker {slot}: port {name} ({port}) opened on queue {queue}"),
                    Err(e) => log::warn!("worker {slot}: port {name} ({port}): {e}"),
                }
                board.port_opened(slot, serial, reply);
                ports_answered = serial;
            }
            if worker.learned_changes != published_learned {
                board.publish_learned(slot, &worker);
                published_learned = worker.learned_changes;
            }
            for learned in board.learned_by_others(slot, &mut peers_seen) {
                worker.adopt(&learned.neighbours, &learned.macs);
            }
            // Once a second: age what this worker learned, and probe the neighbours in use
            // that are about to expire.
            worker.now = board.clock();
            if worker.now != aged_at {
                aged_at = worker.now;
                let snapshot = tables.load();
                let used_by_express = board.express_used();
                for (port, ip, mac) in worker.age_with(aged_at, &snapshot, &used_by_express) {
                    let Some(mut frame) = ports.pool().copy_of(&[]) else { break };
                    let verdict = pipeline::arp_probe(&snapshot, &mut worker, ports.pool(), &mut frame, port, ip, mac);
                    probes.packets.push(pipeline::Packet { frame, ingress: port, verdict, from_host: false });
                }
                if !probes.packets.is_empty() {
                    ports.transmit(&mut probes, &mut worker.counters);
                }
            }
            last_publish = Instant::now();
        }
    }
    board.publish(slot, &worker.counters);
    board.publish_learned(slot, &worker);
    worker
}

/// Drops the out-label counters of labels that `tables` no longer pushes or swaps in.
pub fn forget_unpushed(counters: &mut Counters, tables: &Tables) {
    counters.labels_out.retain(|l, _| tables.is_pushed(l));
}

/// The host path's rate limit: a token bucket per mirrored port ([`crate::tables::Port`]'s
/// `host_rate` frames a second, a burst of a tenth of a second, at least 32), so a flood toward
/// the router's addresses cannot starve the host stack or the worker. A frame over the rate
/// becomes a `host-rate-limited` drop on its ingress port instead of a to-host frame.
#[derive(Debug, Default)]
pub struct HostPolicer {
    /// Per port: (tokens, when they were last topped up).
    buckets: Vec<(f64, Option<Instant>)>,
}

impl HostPolicer {
    /// Police the to-host verdicts of `batch` at time `now`.
    pub fn police<F>(&mut self, tables: &Tables, batch: &mut Batch<F>, counters: &mut Counters, now: Instant) {
        for pkt in &mut batch.packets {
            let Verdict::ToHost(port) = pkt.verdict else { continue };
            let Some(p) = tables.port(port) else { continue };
            if !p.host || p.host_rate == 0 {
                continue;
            }
            if self.buckets.len() <= port.index() {
                self.buckets.resize(port.index() + 1, (0.0, None));
            }
            let rate = f64::from(p.host_rate);
            let burst = (rate / 10.0).max(32.0);
            let (tokens, last) = &mut self.buckets[port.index()];
            let elapsed = last.map_or(f64::INFINITY, |l| now.saturating_duration_since(l).as_secs_f64());
            *tokens = (*tokens + elapsed * rate).min(burst);
            *last = Some(now);
            if *tokens >= 1.0 {
                *tokens -= 1.0;
                continue;
            }
            pkt.verdict = Verdict::Drop(DropReason::HostRateLimited);
            counters.host_refused(pkt.ingress, DropReason::HostRateLimited);
        }
    }
}

/// [`Ports`] over in-memory queues: frames to receive go in `rx`, sent frames come out in
/// `tx` with their egress port. For tests of the worker loop without root.
#[derive(Debug, Default)]
pub struct FakePorts {
    /// Frames waiting to be received, with their ingress port.
    pub rx: VecDeque<(Vec<u8>, PortId)>,
    /// Frames sent, with their egress port.
    pub tx: Vec<(PortId, Vec<u8>)>,
    /// Verdicts of everything processed, in order.
    pub verdicts: Vec<Verdict>,
    /// Frames the host stack sent on a port's mirror, waiting to be received.
    pub host_rx: VecDeque<(Vec<u8>, PortId)>,
    /// Frames given to the host stack, with the port whose mirror got them.
    pub host_tx: Vec<(PortId, Vec<u8>)>,
    pool: VecPool,
}

impl Ports for FakePorts {
    type Frame = VecFrame;
    type Pool = VecPool;

    fn receive(&mut self, batch: &mut Batch<VecFrame>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some((frame, port)) = self.rx.pop_front() else { break };
            batch.push(VecFrame::new(&frame), port);
            n += 1;
        }
        while n < max {
            let Some((frame, port)) = self.host_rx.pop_front() else { break };
            batch.push_from_host(VecFrame::new(&frame), port);
            n += 1;
        }
        n
    }

    fn transmit(&mut self, batch: &mut Batch<VecFrame>, _counters: &mut Counters) {
        for p in batch.packets.drain(..) {
            self.verdicts.push(p.verdict);
            match p.verdict {
                Verdict::Forward(port) => self.tx.push((port, p.frame.data().to_vec())),
                Verdict::Reply => self.tx.push((p.ingress, p.frame.data().to_vec())),
                Verdict::ToHost(port) => self.host_tx.push((port, p.frame.data().to_vec())),
                _ => {}
            }
        }
    }

    fn pool(&mut self) -> &mut VecPool {
        &mut self.pool
    }

    fn wait(&mut self, timeout: Duration) {
        std::thread::sleep(timeout.min(Duration::from_millis(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::pipeline::Learnt;
    use crate::tables::{Lpm, TableCommand};

    /// Out-label counters live as long as something pushes (or swaps in) the label.
    #[test]
    fn out_label_counters_go_with_the_last_push() {
        let mut t = Config::parse(include_str!("../../../examples/pe1.toml")).unwrap().tables().unwrap();
        let mut c = Counters::default();
        for l in [1000, 600, 77_777] {
            c.labels_out.add(l, 100);
        }
        forget_unpushed(&mut c, &t);
        let kept = |c: &Counters| {
            let mut k: Vec<u32> = c.labels_out.keys().collect();
            k.sort_unstable();
            k
        };
        // 1000: a VPN route's push; 600: the swap of label 500; 77777: nothing.
        assert_eq!(kept(&c), vec![600, 1000]);
        t.apply(TableCommand::RemoveLabel { label: carrier_common::Label::new(500).unwrap() }).unwrap();
        forget_unpushed(&mut c, &t);
        assert_eq!(kept(&c), vec![1000]);
    }

    fn pe() -> crate::tables::Tables {
        Config::parse(include_str!("../../../examples/pe1.toml")).unwrap().tables().unwrap()
    }

    fn udp(dst: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 1, 1, 0x02, 0xaa, 0, 0, 0, 2, 0x08, 0x00];
        let mut h = [0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 1, 0, 2, dst[0], dst[1], dst[2], dst[3]];
        let c = crate::wire::checksum::checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&h);
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0]);
        f
    }

    #[test]
    fn workers_take_what_their_peers_learned_once() {
        use crate::wire::MacAddr;
        let board = CounterBoard::new(2);
        let ip = std::net::Ipv4Addr::new(10, 0, 0, 9);
        let mut first = Worker::default();
        first.neighbours.insert((PortId(1), ip), Learnt::new(MacAddr([2, 0, 0, 0, 0, 9]), 1));
        board.publish_learned(0, &first);
        let (mut seen, mut second) = (vec![], Worker::default());
        second.neighbours.insert((PortId(1), std::net::Ipv4Addr::new(10, 0, 0, 8)), Learnt::new(MacAddr([2, 0, 0, 0, 0, 8]), 1));
        let news = board.learned_by_others(1, &mut seen);
        assert_eq!(news.len(), 1);
        second.adopt(&news[0].neighbours, &news[0].macs);
        assert_eq!(second.neighbours.get(&(PortId(1), ip)).map(|l| l.value), Some(MacAddr([2, 0, 0, 0, 0, 9])));
        assert_eq!(second.neighbours.len(), 2, "its own stay");
        assert_eq!(second.learned_changes, 0, "taken, not learned");
        assert!(board.learned_by_others(1, &mut seen).is_empty(), "nothing new since");
        assert!(board.learned_by_others(0, &mut vec![]).iter().all(|l| l.neighbours.is_empty()), "a worker's own is not offered back");
        // What a worker learned itself wins over a peer's.
        first.neighbours.insert((PortId(1), std::net::Ipv4Addr::new(10, 0, 0, 8)), Learnt::new(MacAddr([2, 0, 0, 0, 0, 0x88]), 1));
        board.publish_learned(0, &first);
        for l in board.learned_by_others(1, &mut seen) {
            second.adopt(&l.neighbours, &l.macs);
        }
        assert_eq!(second.neighbours.get(&(PortId(1), std::net::Ipv4Addr::new(10, 0, 0, 8))).map(|l| l.value), Some(MacAddr([2, 0, 0, 0, 0, 8])));
    }

    /// The worker loop ages what it learned once a second and sends the probes itself: with a
    /// 3 s neighbour timeout, a neighbour it forwarded to gets unicast ARP probes, then expires.
    #[test]
    fn the_worker_loop_probes_and_expires_neighbours() {
        use crate::pipeline::Event;
        let mut t = pe();
        t.router.neighbour_timeout = 3;
        let handle = TableHandle::new(t);
        let stop = Arc::new(AtomicBool::new(false));
        let board = CounterBoard::new(1);
        let mut ports = FakePorts::default();
        // 10.1.0.7 asks for the router on ce-red, then ce-red2 sends it a packet.
        let mut who_has = vec![0xff; 6];
        who_has.extend_from_slice(&[2, 0xaa, 0, 0, 0, 7, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0xaa, 0, 0, 0, 7, 10, 1, 0, 7, 0, 0, 0, 0, 0, 0, 10, 1, 0, 1]);
        ports.rx.push_back((who_has, PortId(0)));
        let mut to_7 = udp([10, 1, 0, 7]);
        to_7[..6].copy_from_slice(&[2, 0, 0, 0, 1, 3]);
        to_7[14 + 12..14 + 16].copy_from_slice(&[10, 3, 0, 2]);
        let c = crate::wire::checksum::checksum(&{
            let mut h = to_7[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        to_7[24..26].copy_from_slice(&c.to_be_bytes());
        ports.rx.push_back((to_7, PortId(1)));
        let (s2, b2) = (stop.clone(), board.clone());
        let t = std::thread::spawn(move || {
            let w = run_worker(&mut ports, &handle, &s2, &b2, 0);
            (ports, w)
        });
        std::thread::sleep(Duration::from_millis(4500));
        stop.store(true, Ordering::Relaxed);
        let (ports, worker) = t.join().unwrap();
        let to_ce_red: Vec<&Vec<u8>> = ports.tx.iter().filter(|(p, _)| *p == PortId(0)).map(|(_, f)| f).collect();
        assert!(to_ce_red.iter().any(|f| f[12..14] == [0x08, 0x00]), "the packet to .7 was forwarded: {to_ce_red:02x?}");
        let probes: Vec<_> = to_ce_red.iter().filter(|f| f[..6] == [2, 0xaa, 0, 0, 0, 7] && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 1]).collect();
        assert!(!probes.is_empty() && probes.len() <= 3, "unicast ARP requests to .7: {probes:02x?}");
        assert!(probes.iter().all(|f| f[28..32] == [10, 1, 0, 1] && f[38..42] == [10, 1, 0, 7]), "{probes:02x?}");
        assert_eq!(worker.counters.events[Event::ArpProbeSent as usize], probes.len() as u64);
        assert!(!worker.neighbours.contains_key(&(PortId(0), std::net::Ipv4Addr::new(10, 1, 0, 7))), "unanswered, it expired");
        assert_eq!(worker.counters.events[Event::NeighbourExpired as usize], 1);
        assert!(board.learned().neighbours.is_empty(), "and the board no longer offers it");
    }

    #[test]
    fn worker_forwards_and_sees_table_swaps() {
        let handle = TableHandle::new(pe());
        let stop = Arc::new(AtomicBool::new(false));
        let board = CounterBoard::new(1);
        let mut ports = FakePorts::default();
        for _ in 0..100 {
            ports.rx.push_back((udp([10, 2, 0, 5]), PortId(0)));
        }
        // Stop once everything queued is through.
        let (h2, s2, b2) = (handle.clone(), stop.clone(), board.clone());
        let t = std::thread::spawn(move || {
            let w = run_worker(&mut ports, &h2, &s2, &b2, 0);
            (ports, w)
        });
        std::thread::sleep(Duration::from_millis(200));
        // Withdraw the route: later packets are answered with ICMP unreachable (a reply).
        let mut next = (*handle.load()).clone();
        let red = next.vrf_by_name("red").unwrap().id;
        assert!(next.vrfs[red.index()].fib.lookup("10.2.0.5".parse().unwrap()).is_some());
        next.apply(TableCommand::Withdraw { table: crate::tables::Table::Vrf(red), prefix: "10.2.0.0/24".parse().unwrap() })
            .unwrap();
        handle.publish(next);
        stop.store(true, Ordering::Relaxed);
        let (ports, worker) = t.join().unwrap();
        assert_eq!(ports.tx.len(), 100);
        assert!(ports.tx.iter().all(|(p, f)| *p == PortId(4) && f[12..14] == [0x88, 0x47]));
        assert_eq!(worker.counters.labels_out[&1000].packets, 100);
        assert_eq!(board.total().ports[4].tx.packets, 100);

        // A fresh worker on the new tables answers with ICMP unreachable.
        let mut ports = FakePorts::default();
        ports.rx.push_back((udp([10, 2, 0, 5]), PortId(0)));
        let stop = AtomicBool::new(false);
        let mut batch = Batch::default();
        ports.receive(&mut batch, BATCH);
        let mut w = Worker::default();
        pipeline::process(&handle.load(), &mut batch, &mut w, ports.pool());
        ports.transmit(&mut batch, &mut w.counters);
        assert_eq!(ports.verdicts, vec![Verdict::Reply]);
        assert_eq!(ports.tx[0].1[14 + 20], 3, "ICMP destination unreachable");
        let _ = stop;
    }
}
