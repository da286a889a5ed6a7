//! A worker keeps next hops resolved through the underlay (`ResolvedHop` in `pipeline/ip.rs`)
//! across batches, each good for one generation of the tables. Through random changes to
//! what a resolution depends on — the VPN route's push, the PE's underlay route (moved between
//! core links, into a transport LSP, onto an ECMP pair, withdrawn), the static neighbours —
//! a worker that keeps its cache forwards every frame (routed from a CE into an MPLS push or
//! VXLAN toward PE2, or swapped in transit toward it) exactly as the interpretive path does
//! (`process_traced` with a recording tracer, which never uses the cache): the same verdicts,
//! the same bytes out, the same label counters.

use std::net::Ipv4Addr;

use carrier_common::{Label, NextHopId, PortId};
use carrier_dataplane::config::Config;
use carrier_dataplane::pipeline::{process, process_traced, Batch, Frame, StepTrace, VecFrame, VecPool, Worker};
use carrier_dataplane::tables::{LabelStack, Lpm, NextHop, Table, TableCommand, Tables};

mod common;

use common::Rng;

/// An IPv4/UDP frame from `src_mac` to `dst_mac`.
fn udp_frame(dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], sport: u16) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&[0x02, 0xaa, 0, 0, 0, 2, 0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 38, 0, 1, 0, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = carrier_dataplane::wire::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&sport.to_be_bytes());
    ip.extend_from_slice(&[0x13, 0x89, 0, 18, 0, 0]);
    ip.extend_from_slice(&[0x55; 10]);
    f.extend_from_slice(&ip);
    f
}

fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// A random change to something a resolved next hop depends on.
fn change(rng: &mut Rng, t: &Tables, spare: NextHopId) -> Vec<TableCommand> {
    let red = t.vrf_by_name("red").unwrap().id;
    let pe2 = "10.255.0.2/32".parse().unwrap();
    let label = |v: u32| Label::new(v).unwrap();
    match rng.below(6) {
        // The VPN route's push gets another label (or implicit null: no label).
        0 => {
            let (_, id) = t.vrfs[red.index()].fib.lookup(a("10.2.0.1")).unwrap();
            let labels = if rng.below(4) == 0 { vec![] } else { vec![label(1000 + rng.below(50))] };
            vec![TableCommand::NextHop { id, nexthop: NextHop::MplsPush { labels: LabelStack::new(&labels).unwrap(), tc: None, pe: a("10.255.0.2") } }]
        }
        // PE2's underlay route: over core0, over core1, into a transport LSP, onto ECMP.
        1 => {
            let port = PortId(4 + rng.below(2) as u16);
            let via = if port == PortId(4) { a("192.0.2.2") } else { a("192.0.2.6") };
            let nexthop = match rng.below(3) {
                0 => NextHop::Adjacency { port, via: Some(via) },
                1 => NextHop::MplsPush { labels: LabelStack::new(&[label(300 + rng.below(5))]).unwrap(), tc: None, pe: via },
                _ => NextHop::Ecmp { members: vec![spare, NextHopId(spare.0 + 1)] },
            };
            let id = NextHopId(spare.0 + 2 + rng.below(4));
            vec![TableCommand::NextHop { id, nexthop }, TableCommand::Route { table: Table::Underlay, prefix: pe2, nexthop: id }]
        }
        // PE2's underlay route withdrawn, or back.
        2 => {
            if rng.below(2) == 0 {
                vec![TableCommand::Withdraw { table: Table::Underlay, prefix: pe2 }]
            } else {
                vec![TableCommand::Route { table: Table::Underlay, prefix: pe2, nexthop: spare }]
            }
        }
        // The static neighbours of the core links: gone (the pipeline sends an ARP request),
        // back, or with another MAC.
        3 => {
            let (port, ip) = if rng.below(2) == 0 { (PortId(4), a("192.0.2.2")) } else { (PortId(5), a("192.0.2.6")) };
            if rng.below(3) == 0 {
                vec![TableCommand::RemoveNeighbour { port, ip }]
            } else {
                let mac = carrier_dataplane::wire::MacAddr([2, 0xcc, 0, 0, rng.below(3) as u8, 2]);
                vec![TableCommand::Neighbour { port, ip, mac }]
            }
        }
        // The TTL mode.
        4 => {
            let mut router = t.router.clone();
            router.ttl_mode = if rng.below(2) == 0 { carrier_dataplane::tables::TtlMode::Pipe } else { carrier_dataplane::tables::TtlMode::Uniform };
            vec![TableCommand::Router(router)]
        }
        // Nothing: the cache must keep serving.
        _ => vec![],
    }
}

#[test]
fn a_worker_keeping_resolved_next_hops_forwards_as_the_interpretive_path() {
    let mut t = Config::parse(include_str!("../../examples/pe1.toml")).unwrap().tables().unwrap();
    assert_eq!(t.port_by_name("core0").map(|p| p.id), Some(PortId(4)));
    assert_eq!(t.port_by_name("core1").map(|p| p.id), Some(PortId(5)));
    let ce_red = t.port_by_name("ce-red").unwrap();
    let (ingress, mac) = (ce_red.id, ce_red.mac.0);
    let core0_mac = t.port_by_name("core0").unwrap().mac.0;
    // Plain next hops over core0 and core1 the changes point PE2's route at.
    let spare = NextHopId(t.nexthops.len() as u32);
    t.apply(TableCommand::NextHop { id: spare, nexthop: NextHop::Adjacency { port: PortId(4), via: Some(a("192.0.2.2")) } }).unwrap();
    t.apply(TableCommand::NextHop { id: NextHopId(spare.0 + 1), nexthop: NextHop::Adjacency { port: PortId(5), via: Some(a("192.0.2.6")) } }).unwrap();
    let (mut cached, mut reference) = (Worker::default(), Worker::default());
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut forwarded, mut pushed) = (0, 0);
    for step in 0..400 {
        for cmd in change(&mut rng, &t, spare) {
            t.apply(cmd.clone()).unwrap_or_else(|e| panic!("step {step}: {cmd:?}: {e}"));
        }
        for k in 0..8 {
            let dst = match rng.below(4) {
                0 | 1 => [10, 2, 0, 1 + rng.below(200) as u8],
                2 => [10, 6, 0, 5],
                _ => [10, 5, 0, 9],
            };
            let mut frame = udp_frame(mac, [10, 1, 0, 2], dst, 1000 + k);
            let mut ingress = ingress;
            // Every third frame is transit MPLS from the core: label 500, swapped to 600
            // toward PE2 (TTL 1 now and then: ICMP back along the LSP).
            if k % 3 == 0 {
                let ttl = if rng.below(8) == 0 { 1 } else { 64 };
                let mut f = core0_mac.to_vec();
                f.extend_from_slice(&[0x02, 0xcc, 0, 0, 0, 2, 0x88, 0x47]);
                f.extend_from_slice(&((500u32 << 12) | 0x100 | ttl).to_be_bytes());
                f.extend_from_slice(&frame[14..]);
                frame = f;
                ingress = PortId(4);
            }
            let run = |worker: &mut Worker, traced: bool| {
                let mut batch = Batch::default();
                batch.push(VecFrame::new(&frame), ingress);
                if traced {
                    process_traced(&t, &mut batch, worker, &mut VecPool, &mut StepTrace::default());
                } else {
                    process(&t, &mut batch, worker, &mut VecPool);
                }
                batch.packets.iter().map(|p| (p.verdict, p.frame.data().to_vec())).collect::<Vec<_>>()
            };
            let (fast, slow) = (run(&mut cached, false), run(&mut reference, true));
            assert_eq!(fast, slow, "step {step}, frame to {dst:?} on {ingress}");
            forwarded += fast.iter().filter(|(v, _)| matches!(v, carrier_dataplane::pipeline::Verdict::Forward(_))).count();
            pushed += fast.iter().filter(|(_, f)| f.get(12..14) == Some(&[0x88, 0x47])).count();
        }
    }
    let labels = |w: &Worker| w.counters.labels_out.iter().map(|(l, c)| (l, *c)).collect::<Vec<_>>();
    assert_eq!(labels(&cached), labels(&reference), "labels out");
    assert_eq!(cached.counters.ports, reference.counters.ports, "port counters");
    assert!(forwarded > 1500 && pushed > 800, "the changes leave most frames forwarded: {forwarded} forwarded, {pushed} labelled");
}
