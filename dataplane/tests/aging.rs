//! Aging of learned neighbours and MACs (no root): a neighbour nobody sends to expires after
//! the router's `neighbour_timeout`; one in use (sent to since its last ARP, or the gateway of a
//! route) gets unicast ARP probes in its last seconds first, and an answer renews it; a learned
//! MAC expires after `mac_timeout` without frames from it; workers take each other's fresher
//! times. The probe frames are decoded by scapy.

use std::net::Ipv4Addr;
use std::process::Command;

use carrier_common::PortId;
use carrier_dataplane::config::Config;
use carrier_dataplane::pipeline::{arp_probe, process, Batch, Event, Frame, Learnt, VecFrame, VecPool, Verdict, Worker};
use carrier_dataplane::tables::{MacDest, Tables};
use carrier_dataplane::wire::MacAddr;
use etherparse::PacketBuilder;

mod common;
use common::arp;

const CE_RED: PortId = PortId(0);
const CE_RED2: PortId = PortId(1);
const CE_L2: PortId = PortId(3);
const CE_RED_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const CE_RED2_MAC: [u8; 6] = [2, 0, 0, 0, 1, 3];
const HOST7: [u8; 6] = [2, 0xaa, 0, 0, 0, 7];
const HOST8: [u8; 6] = [2, 0xaa, 0, 0, 0, 8];
const GW9: [u8; 6] = [2, 0xaa, 0, 0, 0, 9];

/// pe1.toml with a 60 s neighbour timeout, a 30 s MAC timeout, and a route in VRF red via
/// 10.1.0.9 (a gateway the dataplane has to learn).
fn tables(neighbour_timeout: u32) -> Tables {
    let text = include_str!("../../examples/pe1.toml").replace(
        "[router]\n",
        &format!("[router]\nneighbour_timeout = {neighbour_timeout}\nmac_timeout = 30\n"),
    ) + "\n[[route]]\nvrf = \"red\"\nprefix = \"10.50.0.0/16\"\nvia = \"10.1.0.9\"\n";
    Config::parse(&text).unwrap().tables().unwrap()
}

/// A host on ce-red asks for the router's address (the router learns it).
fn who_has_router(mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    arp(1, mac, ip, [0; 6], [10, 1, 0, 1], [0xff; 6])
}

fn udp(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut out = vec![];
    PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(src, dst, 64).udp(40000, 9).write(&mut out, b"aging").unwrap();
    out
}

/// Runs `frames` through the pipeline at the worker's current time.
fn run(t: &Tables, w: &mut Worker, frames: &[(&[u8], PortId)]) -> Vec<(Verdict, Vec<u8>)> {
    let mut batch = Batch::default();
    for (f, port) in frames {
        batch.push(VecFrame::new(f), *port);
    }
    process(t, &mut batch, w, &mut VecPool);
    batch.packets.iter().map(|p| (p.verdict, p.frame.data().to_vec())).collect()
}

/// Ages at `now` and builds the probes as the worker loop does.
fn age(t: &Tables, w: &mut Worker, now: u32) -> Vec<(Verdict, Vec<u8>)> {
    w.age(now, t)
        .into_iter()
        .map(|(port, ip, mac)| {
            let mut frame = VecFrame::new(&[]);
            let verdict = arp_probe(t, w, &mut VecPool, &mut frame, port, ip, mac);
            (verdict, frame.data().to_vec())
        })
        .collect()
}

fn worker_at(now: u32) -> Worker {
    let mut w = Worker::default();
    w.now = now;
    w
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn known(w: &Worker, host: &str) -> Option<MacAddr> {
    w.neighbours.get(&(CE_RED, ip(host))).map(|l| l.value)
}

fn event(w: &Worker, e: Event) -> u64 {
    w.counters.events[e as usize]
}

/// scapy's reading of a frame: "dst src type op hwsrc psrc hwdst pdst".
fn scapy_arp(frame: &[u8]) -> String {
    let python = std::env::var("CARRIER_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let script = format!(
        "from scapy.all import Ether, ARP\np = Ether(bytes.fromhex('{}'))\na = p[ARP]\nprint(p.dst, p.src, hex(p.type), a.op, a.hwsrc, a.psrc, a.hwdst, a.pdst)",
        frame.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let out = Command::new(&python).args(["-c", &script]).output().unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(out.status.success(), "scapy failed (install it with `cargo xtask setup`): {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_neighbour_in_use_is_probed_before_it_expires_and_an_idle_one_just_expires() {
    let t = tables(60);
    let mut w = worker_at(100);
    // .7 and .8 ask for the router at 100: both learned.
    let out = run(&t, &mut w, &[(&who_has_router(HOST7, [10, 1, 0, 7]), CE_RED), (&who_has_router(HOST8, [10, 1, 0, 8]), CE_RED)]);
    assert!(out.iter().all(|(v, _)| *v == Verdict::Reply), "{out:?}");
    assert_eq!((known(&w, "10.1.0.7"), known(&w, "10.1.0.8")), (Some(MacAddr(HOST7)), Some(MacAddr(HOST8))));

    // At 110 traffic from ce-red2 goes to .7 (connected in VRF red): in use.
    w.now = 110;
    let out = run(&t, &mut w, &[(&udp([2, 0xaa, 0, 0, 0, 3], CE_RED2_MAC, [10, 3, 0, 2], [10, 1, 0, 7]), CE_RED2)]);
    assert_eq!(out[0].0, Verdict::Forward(CE_RED));
    assert_eq!(out[0].1[..6], HOST7);

    // Nothing until the last 3 s of the 60 s; then one probe a second to .7 alone.
    for now in [120, 150, 156] {
        assert!(age(&t, &mut w, now).is_empty(), "probes at {now}");
    }
    for (now, n) in [(157, 1), (158, 2), (159, 3)] {
        let probes = age(&t, &mut w, now);
        assert_eq!(probes.len(), 1, "at {now}: {probes:?}");
        assert_eq!(probes[0].0, Verdict::Forward(CE_RED));
        assert_eq!(
            scapy_arp(&probes[0].1),
            "02:aa:00:00:00:07 02:00:00:00:01:01 0x806 1 02:00:00:00:01:01 10.1.0.1 00:00:00:00:00:00 10.1.0.7",
            "probe {n}: a unicast who-has from the router's address on ce-red"
        );
        assert_eq!(event(&w, Event::ArpProbeSent), n);
    }
    assert_eq!(w.counters.ports[CE_RED.index()].tx.packets, 3 + 1 + 2, "probes, the forwarded packet and the two replies count as tx");

    // Unanswered: both go at 160; the next packet to .7 asks for it again (broadcast).
    assert!(age(&t, &mut w, 160).is_empty());
    assert_eq!((known(&w, "10.1.0.7"), known(&w, "10.1.0.8")), (None, None));
    assert_eq!(event(&w, Event::NeighbourExpired), 2);
    let out = run(&t, &mut w, &[(&udp([2, 0xaa, 0, 0, 0, 3], CE_RED2_MAC, [10, 3, 0, 2], [10, 1, 0, 7]), CE_RED2)]);
    assert_eq!(out[0].0, Verdict::Forward(CE_RED));
    assert_eq!(out[0].1[..6], [0xff; 6], "an ARP request (glean) once it expired");
    assert_eq!(event(&w, Event::ArpRequestSent), 1);
}

/// A neighbour only the express tier sends to (the worker never forwards to it) is in use
/// all the same: probed before it expires.
#[test]
fn a_neighbour_the_express_tier_sends_to_is_probed() {
    let t = tables(60);
    let mut w = worker_at(100);
    run(&t, &mut w, &[(&who_has_router(HOST7, [10, 1, 0, 7]), CE_RED)]);
    let mut used = carrier_dataplane::tables::FastMap::default();
    used.insert((CE_RED, ip("10.1.0.7")), 130);
    assert!(w.age_with(156, &t, &used).is_empty());
    let probes = w.age_with(157, &t, &used);
    assert_eq!(probes, vec![(CE_RED, ip("10.1.0.7"), MacAddr(HOST7))]);
    // Used before it was last confirmed does not count.
    let mut w = worker_at(100);
    run(&t, &mut w, &[(&who_has_router(HOST7, [10, 1, 0, 7]), CE_RED)]);
    used.insert((CE_RED, ip("10.1.0.7")), 99);
    assert!(w.age_with(157, &t, &used).is_empty());
}

#[test]
fn an_answer_to_a_probe_renews_the_neighbour() {
    let t = tables(60);
    let mut w = worker_at(100);
    run(&t, &mut w, &[(&who_has_router(HOST7, [10, 1, 0, 7]), CE_RED)]);
    w.now = 101;
    run(&t, &mut w, &[(&udp([2, 0xaa, 0, 0, 0, 3], CE_RED2_MAC, [10, 3, 0, 2], [10, 1, 0, 7]), CE_RED2)]);
    assert_eq!(age(&t, &mut w, 157).len(), 1);
    // .7 answers the probe at 157.
    let reply = arp(2, HOST7, [10, 1, 0, 7], CE_RED_MAC, [10, 1, 0, 1], CE_RED_MAC);
    assert_eq!(run(&t, &mut w, &[(&reply, CE_RED)])[0].0, Verdict::Consumed);
    assert_eq!(w.neighbours[&(CE_RED, ip("10.1.0.7"))].seen, 157);
    for now in [158, 160, 200] {
        assert!(age(&t, &mut w, now).is_empty(), "at {now}");
    }
    assert_eq!(known(&w, "10.1.0.7"), Some(MacAddr(HOST7)), "renewed past its first 60 s");
    // Not sent to since the answer: no longer in use, it is not probed again and expires.
    assert!(age(&t, &mut w, 214).is_empty());
    assert!(age(&t, &mut w, 217).is_empty());
    assert_eq!(known(&w, "10.1.0.7"), None);
    assert_eq!(event(&w, Event::ArpProbeSent), 1);
}

#[test]
fn a_learned_gateway_is_probed_without_traffic() {
    let t = tables(60);
    let mut w = worker_at(100);
    run(&t, &mut w, &[(&who_has_router(GW9, [10, 1, 0, 9]), CE_RED), (&who_has_router(HOST8, [10, 1, 0, 8]), CE_RED)]);
    let probes = age(&t, &mut w, 157);
    assert_eq!(probes.len(), 1, "only the gateway of 10.50.0.0/16: {probes:?}");
    assert!(scapy_arp(&probes[0].1).ends_with(" 10.1.0.9"), "{}", scapy_arp(&probes[0].1));
}

#[test]
fn a_neighbour_timeout_of_zero_keeps_learned_neighbours() {
    let t = tables(0);
    let mut w = worker_at(100);
    run(&t, &mut w, &[(&who_has_router(HOST7, [10, 1, 0, 7]), CE_RED)]);
    assert!(age(&t, &mut w, 1_000_000).is_empty());
    assert_eq!(known(&w, "10.1.0.7"), Some(MacAddr(HOST7)));
    assert_eq!(event(&w, Event::NeighbourExpired), 0);
}

#[test]
fn learned_macs_expire_without_frames_from_them() {
    let t = tables(60);
    let mut w = worker_at(100);
    let x = [2, 0x11, 0, 0, 0, 1];
    let from_x = udp(x, [2, 0x22, 0, 0, 0, 2], [10, 100, 0, 1], [10, 100, 0, 2]);
    run(&t, &mut w, &[(&from_x, CE_L2)]);
    let bd = t.port(CE_L2).map(|p| match p.role {
        carrier_dataplane::tables::PortRole::Bridge(bd) => bd,
        _ => unreachable!("ce-l2 is a bridge port"),
    });
    let bd = bd.unwrap();
    let learnt = |w: &Worker| w.macs.get(&(bd, MacAddr(x))).map(|l| l.value);
    assert_eq!(learnt(&w), Some(MacDest::Port(CE_L2)));
    // A frame from it at 120 renews it: still there at 149, gone at 150 (30 s after 120).
    w.now = 120;
    run(&t, &mut w, &[(&from_x, CE_L2)]);
    age(&t, &mut w, 149);
    assert_eq!(learnt(&w), Some(MacDest::Port(CE_L2)));
    age(&t, &mut w, 150);
    assert_eq!(learnt(&w), None);
    assert_eq!(event(&w, Event::MacExpired), 1);
}

#[test]
fn workers_take_the_fresher_time_of_what_they_both_know() {
    let mut a = Worker::default();
    a.neighbours.insert((CE_RED, ip("10.1.0.7")), Learnt::new(MacAddr(HOST7), 50));
    // The other worker confirmed the same neighbour later; one with another MAC stays apart.
    a.adopt(&[(CE_RED, ip("10.1.0.7"), MacAddr(HOST7), 90), (CE_RED, ip("10.1.0.8"), MacAddr(HOST8), 80)], &[]);
    assert_eq!(a.neighbours[&(CE_RED, ip("10.1.0.7"))].seen, 90);
    assert_eq!(a.neighbours[&(CE_RED, ip("10.1.0.8"))].seen, 80);
    a.adopt(&[(CE_RED, ip("10.1.0.7"), MacAddr(HOST7), 70), (CE_RED, ip("10.1.0.8"), MacAddr(HOST7), 99)], &[]);
    assert_eq!(a.neighbours[&(CE_RED, ip("10.1.0.7"))].seen, 90, "an older time does not move it back");
    assert_eq!(a.neighbours[&(CE_RED, ip("10.1.0.8"))].value, MacAddr(HOST8), "its own MAC stays");
}
