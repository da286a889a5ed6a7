//! The host path in the pipeline (no root): which port's kernel mirror gets traffic for the
//! router, what the frame looks like there (checked with etherparse), what happens to frames
//! the host stack sends, and the host-path rate limit.

use std::time::{Duration, Instant};

use carrier_common::PortId;
use carrier_dataplane::config::Config;
use carrier_dataplane::io::HostPolicer;
use carrier_dataplane::pipeline::{process, Batch, Counters, DropReason, Frame, VecFrame, VecPool, Verdict, Worker};
use carrier_dataplane::tables::Tables;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

mod common;
use common::arp;

const CE_RED: PortId = PortId(0);
const CE_BLUE: PortId = PortId(2);
const CORE0: PortId = PortId(4);
const CE_RED_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const CE_BLUE_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
const CORE0_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CE_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 2];
const P_MAC: [u8; 6] = [2, 0xcc, 0, 0, 0, 2];

/// pe1.toml with every routed port mirrored (as `run` marks them once the mirrors exist).
fn mirrored() -> Tables {
    let mut t = Config::parse(include_str!("../../examples/pe1.toml")).unwrap().tables().unwrap();
    for p in &mut t.ports {
        p.host = !matches!(p.role, carrier_dataplane::tables::PortRole::Bridge(_));
    }
    t
}

fn plain() -> Tables {
    Config::parse(include_str!("../../examples/pe1.toml")).unwrap().tables().unwrap()
}

fn udp(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    let mut out = vec![];
    PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(src, dst, ttl).udp(40000, 33434).write(&mut out, b"probe").unwrap();
    out
}

/// `udp(...)` behind one MPLS label (bottom of stack, TTL 64), as a P router sends it.
fn labelled(label: u32, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let f = udp(P_MAC, CORE0_MAC, src, dst, 64);
    let mut out = f[..12].to_vec();
    out.extend_from_slice(&[0x88, 0x47]);
    out.extend_from_slice(&((label << 12) | 0x100 | 64).to_be_bytes());
    out.extend_from_slice(&f[14..]);
    out
}

fn run(tables: &Tables, frames: &[(&[u8], PortId, bool)]) -> (Vec<(Verdict, Vec<u8>)>, Worker) {
    let mut batch = Batch::default();
    for (f, port, from_host) in frames {
        if *from_host {
            batch.push_from_host(VecFrame::new(f), *port);
        } else {
            batch.push(VecFrame::new(f), *port);
        }
    }
    let mut worker = Worker::default();
    process(tables, &mut batch, &mut worker, &mut VecPool);
    (batch.packets.iter().map(|p| (p.verdict, p.frame.data().to_vec())).collect(), worker)
}

/// (destination MAC, source IP, destination IP, TTL, UDP payload) of an untagged Ethernet/IPv4/UDP
/// frame, by etherparse.
fn decode(frame: &[u8]) -> ([u8; 6], [u8; 4], [u8; 4], u8, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    assert!(p.vlan.is_none(), "untagged");
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else { panic!("not Ethernet II") };
    let Some(NetSlice::Ipv4(ip)) = p.net else { panic!("not IPv4: {frame:02x?}") };
    let h = ip.header();
    assert!(h.to_header().header_checksum == h.to_header().calc_header_checksum(), "IPv4 checksum");
    let Some(TransportSlice::Udp(u)) = p.transport else { panic!("not UDP") };
    (eth.destination(), h.source(), h.destination(), h.ttl(), u.payload().to_vec())
}

#[test]
fn traffic_for_a_port_address_goes_to_that_ports_mirror() {
    let t = mirrored();
    let probe = udp(CE_MAC, CE_RED_MAC, [10, 1, 0, 2], [10, 1, 0, 1], 64);
    let (out, w) = run(&t, &[(&probe, CE_RED, false)]);
    assert_eq!(out[0].0, Verdict::ToHost(CE_RED));
    assert_eq!(out[0].1, probe, "a frame received on the mirrored port reaches the kernel as received");
    assert_eq!(w.counters.ports[CE_RED.index()].to_host, 1);

    let probe = udp(P_MAC, CORE0_MAC, [192, 0, 2, 2], [192, 0, 2, 1], 64);
    let (out, _) = run(&t, &[(&probe, CORE0, false)]);
    assert_eq!(out[0].0, Verdict::ToHost(CORE0));
}

#[test]
fn vpn_traffic_for_a_vrf_address_goes_to_that_vrfs_mirror_only() {
    let t = mirrored();
    // Label 100 is red's, 200 blue's; both VRFs own 10.1.0.1 on their customer port.
    for (label, port, mac) in [(100, CE_RED, CE_RED_MAC), (200, CE_BLUE, CE_BLUE_MAC)] {
        let (out, _) = run(&t, &[(&labelled(label, [10, 2, 0, 5], [10, 1, 0, 1]), CORE0, false)]);
        assert_eq!(out[0].0, Verdict::ToHost(port), "label {label}");
        let (dst_mac, src, dst, _, payload) = decode(&out[0].1);
        assert_eq!((dst_mac, src, dst, payload.as_slice()), (mac, [10, 2, 0, 5], [10, 1, 0, 1], &b"probe"[..]), "label {label}");
    }
}

#[test]
fn without_mirrors_to_host_traffic_is_only_counted_as_before() {
    let probe = udp(CE_MAC, CE_RED_MAC, [10, 1, 0, 2], [10, 1, 0, 1], 64);
    let (out, w) = run(&plain(), &[(&probe, CE_RED, false)]);
    assert_eq!(out[0], (Verdict::ToHost(CE_RED), probe));
    assert_eq!(w.counters.ports[CE_RED.index()].to_host, 1);
}

#[test]
fn a_vrfs_host_traffic_never_reaches_another_tables_mirror() {
    // Found by the VRF isolation property test: red without a mirror, core0 with one; a
    // packet for red's address that came over MPLS on core0 must not go to core0's mirror.
    let mut t = plain();
    t.ports[CORE0.index()].host = true;
    let (out, w) = run(&t, &[(&labelled(100, [10, 2, 0, 5], [10, 1, 0, 1]), CORE0, false)]);
    assert_eq!(out[0].0, Verdict::Drop(DropReason::ToHostUnsupported));
    assert_eq!(w.counters.ports[CORE0.index()].drops[DropReason::ToHostUnsupported as usize], 1);
}

#[test]
fn arp_replies_are_learned_and_passed_and_unanswered_requests_go_to_the_kernel() {
    let reply = arp(2, [2, 0xaa, 0, 0, 0, 7], [10, 1, 0, 7], CE_RED_MAC, [10, 1, 0, 1], CE_RED_MAC);
    // Not one of the dataplane's addresses (maybe one the operator gave the kernel).
    let request = arp(1, [2, 0xaa, 0, 0, 0, 7], [10, 1, 0, 7], [0; 6], [10, 1, 0, 99], [0xff; 6]);

    let (out, w) = run(&mirrored(), &[(&reply, CE_RED, false), (&request, CE_RED, false)]);
    assert_eq!(out[0], (Verdict::ToHost(CE_RED), reply.clone()));
    assert_eq!(out[1], (Verdict::ToHost(CE_RED), request.clone()));
    assert_eq!(w.neighbours.get(&(CE_RED, "10.1.0.7".parse().unwrap())).map(|m| m.value.0), Some([2, 0xaa, 0, 0, 0, 7]), "the dataplane learned too");

    let (out, _) = run(&plain(), &[(&reply, CE_RED, false), (&request, CE_RED, false)]);
    assert_eq!(out[0].0, Verdict::Consumed);
    assert_eq!(out[1].0, Verdict::Drop(DropReason::ArpNotAnswered));

    // A request for the port's own address is still answered by the dataplane.
    let own = arp(1, [2, 0xaa, 0, 0, 0, 7], [10, 1, 0, 7], [0; 6], [10, 1, 0, 1], [0xff; 6]);
    let (out, _) = run(&mirrored(), &[(&own, CE_RED, false)]);
    assert_eq!(out[0].0, Verdict::Reply);
}

#[test]
fn host_frames_to_a_neighbour_go_straight_out_of_the_port() {
    let t = mirrored();
    let f = udp(CE_RED_MAC, CE_MAC, [10, 1, 0, 1], [10, 1, 0, 2], 64);
    let (out, w) = run(&t, &[(&f, CE_RED, true)]);
    assert_eq!(out[0], (Verdict::Reply, f), "out of the mirrored port itself, unchanged");
    assert_eq!(w.counters.ports[CE_RED.index()].from_host, 1);
    assert_eq!(w.counters.ports[CE_RED.index()].rx.packets, 0, "not counted as received on the wire");
    assert_eq!(w.counters.ports[CE_RED.index()].tx.packets, 1);
    let req = arp(1, CE_RED_MAC, [10, 1, 0, 1], [0; 6], [10, 1, 0, 2], [0xff; 6]);
    let (out, _) = run(&t, &[(&req, CE_RED, true)]);
    assert_eq!(out[0], (Verdict::Reply, req), "the kernel's own ARP request");
}

#[test]
fn host_frames_to_the_port_mac_are_routed_in_the_ports_vrf_without_a_ttl_hop() {
    let t = mirrored();
    // The kernel of red's namespace answers a remote site of the VPN (its default route
    // points at the port's MAC): out of core0 with red's VPN label 1000 for 10.2.0.0/24.
    let f = udp(CE_RED_MAC, CE_RED_MAC, [10, 1, 0, 1], [10, 2, 0, 5], 64);
    let (out, _) = run(&t, &[(&f, CE_RED, true)]);
    assert_eq!(out[0].0, Verdict::Forward(CORE0));
    let frame = &out[0].1;
    assert_eq!(&frame[..6], &[2, 0xcc, 0, 0, 0, 2], "to pe2's next hop on core0");
    assert_eq!(&frame[12..14], &[0x88, 0x47]);
    let lse = u32::from_be_bytes(frame[14..18].try_into().unwrap());
    assert_eq!((lse >> 12, lse & 0x100 != 0), (1000, true), "VPN label, bottom of stack");
    let inner = SlicedPacket::from_ip(&frame[18..]).unwrap();
    let Some(NetSlice::Ipv4(ip)) = inner.net else { panic!("not IPv4") };
    assert_eq!((ip.header().destination(), ip.header().ttl()), ([10, 2, 0, 5], 64), "originated: no TTL decrement");

    // Blue's kernel sending to the same address takes blue's label, never red's.
    let f = udp(CE_BLUE_MAC, CE_BLUE_MAC, [10, 1, 0, 1], [10, 2, 0, 5], 64);
    let (out, _) = run(&t, &[(&f, CE_BLUE, true)]);
    let lse = u32::from_be_bytes(out[0].1[14..18].try_into().unwrap());
    assert_eq!((out[0].0, lse >> 12), (Verdict::Forward(CORE0), 2000));

    // Tagged frames from the kernel are refused (the mirror is untagged).
    let mut tagged = udp(CE_RED_MAC, CE_MAC, [10, 1, 0, 1], [10, 1, 0, 2], 64);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    let (out, _) = run(&t, &[(&tagged, CE_RED, true)]);
    assert_eq!(out[0].0, Verdict::Drop(DropReason::VlanMismatch));
}

#[test]
fn the_host_path_rate_limit_is_a_token_bucket_per_port() {
    let mut t = mirrored();
    t.ports[CE_RED.index()].host_rate = 500; // burst: max(50, 32) = 50
    t.ports[CORE0.index()].host_rate = 0; // no limit
    let probe = udp(CE_MAC, CE_RED_MAC, [10, 1, 0, 2], [10, 1, 0, 1], 64);
    let core = udp(P_MAC, CORE0_MAC, [192, 0, 2, 2], [192, 0, 2, 1], 64);
    let mut policer = HostPolicer::default();
    let t0 = Instant::now();
    let batch = |n: usize, at: Instant, policer: &mut HostPolicer| -> Counters {
        let mut b = Batch::default();
        for _ in 0..n {
            b.push(VecFrame::new(&probe), CE_RED);
            b.push(VecFrame::new(&core), CORE0);
        }
        let mut w = Worker::default();
        process(&t, &mut b, &mut w, &mut VecPool);
        policer.police(&t, &mut b, &mut w.counters, at);
        let limited = b.packets.iter().filter(|p| p.verdict == Verdict::Drop(DropReason::HostRateLimited)).count();
        assert_eq!(limited as u64, w.counters.ports[CE_RED.index()].drops[DropReason::HostRateLimited as usize]);
        w.counters
    };
    let c = batch(200, t0, &mut policer);
    assert_eq!((c.ports[CE_RED.index()].to_host, c.ports[CORE0.index()].to_host), (50, 200), "the burst, and no limit on core0");
    let c = batch(200, t0 + Duration::from_millis(20), &mut policer);
    assert_eq!(c.ports[CE_RED.index()].to_host, 10, "20 ms at 500/s");
    let c = batch(200, t0 + Duration::from_secs(10), &mut policer);
    assert_eq!(c.ports[CE_RED.index()].to_host, 50, "an idle bucket holds only the burst");
}
