//! VRF isolation as a property: random PEs whose VRFs use the same addresses and overlapping
//! prefixes, and random frames from customer ports and from the core. A frame that entered
//! VRF X (on one of X's ports, or under a label of X) never leaves on a port of another VRF,
//! never reaches another VRF's host mirror, never leaves toward the core unlabelled, and never
//! carries a label of another VRF's routes. Seeded and reproducible: a failure prints the seed,
//! the config and the frame.

use std::fmt::Write as _;

use carrier_common::PortId;
use carrier_dataplane::config::Config;
use carrier_dataplane::pipeline::{process, Batch, Frame, VecFrame, VecPool, Verdict, Worker};
use carrier_dataplane::tables::{PortRole, Tables};

mod common;

use common::Rng;

/// Labels VRF `v`'s routes push: `VPN_LABEL_BASE * (v + 1) + k`.
const VPN_LABEL_BASE: u32 = 1000;
/// Prefixes every VRF may route: 10.(50+k).0.0/16.
const POOL: u32 = 8;

/// A random PE: `vrfs` VRFs of two ports each, all with 10.0.0.1/24 and 10.1.0.1/24; each VRF
/// routes a random subset of the shared pool to a local neighbour, to the remote PE with its
/// own VPN labels, or to a blackhole; per VRF a pop-and-lookup label 100+v and a per-CE label
/// 200+v. Some ports have the host path.
fn random_config(rng: &mut Rng, vrfs: u32) -> String {
    let mut c = String::from("[router]\nrouter_id = \"10.255.0.1\"\n");
    for v in 0..vrfs {
        writeln!(c, "[[vrf]]\nname = \"v{v}\"").unwrap();
    }
    for v in 0..vrfs {
        for i in 0..2 {
            writeln!(
                c,
                "[[port]]\nname = \"c{v}{i}\"\nmac = \"02:00:00:00:{v:02x}:{i:02x}\"\naddresses = [\"10.{i}.0.1/24\"]\nvrf = \"v{v}\"\nproxy_arp = {}\nanti_spoof = {}",
                rng.chance(50),
                rng.chance(30)
            )
            .unwrap();
            if rng.chance(80) {
                writeln!(c, "[[neighbour]]\nport = \"c{v}{i}\"\nip = \"10.{i}.0.2\"\nmac = \"02:aa:00:00:{v:02x}:{i:02x}\"").unwrap();
            }
        }
    }
    c.push_str("[[port]]\nname = \"core0\"\nmac = \"02:00:00:00:ff:01\"\naddresses = [\"192.0.2.1/30\"]\ncore = true\n");
    c.push_str("[[neighbour]]\nport = \"core0\"\nip = \"192.0.2.2\"\nmac = \"02:cc:00:00:00:02\"\n");
    c.push_str("[[route]]\nprefix = \"10.255.0.2/32\"\nvia = \"192.0.2.2\"\n");
    for v in 0..vrfs {
        for k in 0..POOL {
            if !rng.chance(60) {
                continue;
            }
            let prefix = format!("10.{}.0.0/16", 50 + k);
            match rng.below(3) {
                0 => writeln!(c, "[[route]]\nvrf = \"v{v}\"\nprefix = \"{prefix}\"\nvia = \"10.{}.0.2\"", rng.below(2)).unwrap(),
                1 => writeln!(
                    c,
                    "[[route]]\nvrf = \"v{v}\"\nprefix = \"{prefix}\"\nmpls = {{ labels = [{}], pe = \"10.255.0.2\" }}",
                    VPN_LABEL_BASE * (v + 1) + k
                )
                .unwrap(),
                _ => writeln!(c, "[[route]]\nvrf = \"v{v}\"\nprefix = \"{prefix}\"\naction = \"blackhole\"").unwrap(),
            }
        }
        writeln!(c, "[[label]]\nlabel = {}\naction = \"lookup\"\nvrf = \"v{v}\"", 100 + v).unwrap();
        writeln!(c, "[[label]]\nlabel = {}\naction = \"forward\"\nvrf = \"v{v}\"\nvia = \"10.0.0.2\"", 200 + v).unwrap();
    }
    c
}

fn ipv4_udp(rng: &mut Rng, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let ttl = [1u8, 2, 64][rng.below(3) as usize];
    let mut h = [0x45, 0, 0, 36, 0, 1, 0, 0, ttl, 17, 0, 0, src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3]];
    let c = carrier_dataplane::wire::checksum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let mut p = h.to_vec();
    p.extend_from_slice(&[0x30, 0x39, 0x82, 0x9a, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    p
}

/// A destination: in the pool, on a customer subnet (the port's own address included), or
/// anywhere.
fn destination(rng: &mut Rng) -> [u8; 4] {
    match rng.below(4) {
        0 | 1 => [10, 50 + rng.below(POOL) as u8, rng.below(4) as u8, 1 + rng.below(250) as u8],
        2 => [10, rng.below(2) as u8, 0, 1 + rng.below(3) as u8],
        _ => [rng.below(256) as u8, rng.below(256) as u8, rng.below(256) as u8, rng.below(256) as u8],
    }
}

/// The labels of an MPLS frame's stack, outermost first.
fn labels(frame: &[u8]) -> Vec<u32> {
    let (mut off, mut out) = (12, vec![]);
    let mut et = u16::from_be_bytes([frame[off], frame[off + 1]]);
    if et == 0x8100 {
        off += 4;
        et = u16::from_be_bytes([frame[off], frame[off + 1]]);
    }
    if et != 0x8847 {
        return out;
    }
    off += 2;
    while let Some(b) = frame.get(off..off + 4) {
        let lse = u32::from_be_bytes(b.try_into().unwrap());
        out.push(lse >> 12);
        off += 4;
        if lse & 0x100 != 0 {
            break;
        }
    }
    out
}

fn vrf_of(t: &Tables, p: PortId) -> Option<u16> {
    match t.port(p)?.role {
        PortRole::Vrf(v) => Some(v.0),
        _ => None,
    }
}

#[test]
fn a_frame_never_leaves_its_vrf() {
    let mut checked = 0;
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let vrfs = 2 + rng.below(2);
        let text = random_config(&mut rng, vrfs);
        let mut t = Config::parse(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}")).tables().unwrap();
        for p in &mut t.ports {
            p.host = rng.chance(50);
            // Now and then a customer port detached (as `carrierctl detach` leaves it).
            if p.name != "core0" && rng.chance(10) {
                p.role = PortRole::Detached;
            }
        }
        let core = t.port_by_name("core0").unwrap().id;
        let mut worker = Worker::default();
        for _ in 0..200 {
            // A frame and the VRF it enters (None: an unknown label, which must go nowhere
            // but the core or the host of the core).
            let (frame, ingress, vrf) = if rng.chance(55) {
                let v = rng.below(vrfs);
                let i = rng.below(2);
                let port = t.port_by_name(&format!("c{v}{i}")).unwrap();
                let mut f = port.mac.0.to_vec();
                f.extend_from_slice(&[0x02, 0xaa, 0, 0, v as u8, i as u8, 0x08, 0x00]);
                let dst = destination(&mut rng);
                f.extend_from_slice(&ipv4_udp(&mut rng, [10, i as u8, 0, 2], dst));
                (f, port.id, Some(v as u16))
            } else {
                let (label, vrf) = match rng.below(5) {
                    0 => (999, None),
                    n => {
                        let v = rng.below(vrfs);
                        (if n % 2 == 0 { 100 + v } else { 200 + v }, Some(v as u16))
                    }
                };
                let mut f = vec![0x02, 0, 0, 0, 0xff, 0x01, 0x02, 0xcc, 0, 0, 0, 2, 0x88, 0x47];
                f.extend_from_slice(&((label << 12) | 0x100 | 64).to_be_bytes());
                let dst = destination(&mut rng);
                f.extend_from_slice(&ipv4_udp(&mut rng, [10, 60, 0, 9], dst));
                (f, core, vrf)
            };
            let mut batch = Batch::default();
            batch.push(VecFrame::new(&frame), ingress);
            process(&t, &mut batch, &mut worker, &mut VecPool);
            if t.port(ingress).is_some_and(|p| p.role == PortRole::Detached) {
                let verdicts: Vec<_> = batch.packets.iter().map(|p| p.verdict).collect();
                assert!(
                    matches!(verdicts[..], [Verdict::Drop(carrier_dataplane::pipeline::DropReason::PortDetached)]),
                    "seed {seed}: a frame on a detached port: {verdicts:?}"
                );
                checked += 1;
                continue;
            }
            for p in &batch.packets {
                let out = p.frame.data();
                let egress = match p.verdict {
                    Verdict::Forward(port) => Some(port),
                    Verdict::Reply => Some(ingress),
                    Verdict::ToHost(port) => Some(port),
                    _ => None,
                };
                let Some(egress) = egress else { continue };
                checked += 1;
                let why = || format!("seed {seed}: frame {frame:02x?} on port {ingress} (vrf {vrf:?}) → {:?}: {out:02x?}\n{text}", p.verdict);
                if egress == core {
                    if matches!(p.verdict, Verdict::ToHost(_)) {
                        assert_eq!(vrf, None, "a VRF's frame reached the core's host mirror: {}", why());
                        continue;
                    }
                    let stack = labels(out);
                    if let Some(v) = vrf {
                        if ingress != core {
                            assert!(!stack.is_empty(), "a VRF's frame left toward the core unlabelled: {}", why());
                        }
                        let range = VPN_LABEL_BASE * (u32::from(v) + 1)..VPN_LABEL_BASE * (u32::from(v) + 1) + POOL;
                        assert!(stack.iter().all(|l| range.contains(l)), "label of another VRF: {}", why());
                    }
                } else {
                    assert_eq!(vrf_of(&t, egress), vrf, "left on a port of another VRF: {}", why());
                }
            }
        }
    }
    assert!(checked > 3000, "only {checked} frames went anywhere: the generator is too weak");
}

/// A MAC learned behind a port that then moves to another bridge domain (re-attached live) is
/// not sent there: frames in the first domain to that MAC are flooded in it as unknown.
#[test]
fn a_port_moved_to_another_bridge_takes_no_traffic_of_the_first() {
    let text = "[router]\nrouter_id = \"10.255.0.1\"\n\
        [[bridge]]\nname = \"b1\"\nvni = 100\n[[bridge]]\nname = \"b2\"\nvni = 200\n\
        [[port]]\nname = \"p1\"\nmac = \"02:00:00:00:00:01\"\nbridge = \"b1\"\n\
        [[port]]\nname = \"p2\"\nmac = \"02:00:00:00:00:02\"\nbridge = \"b1\"\n\
        [[port]]\nname = \"p3\"\nmac = \"02:00:00:00:00:03\"\nbridge = \"b2\"\n";
    let before = Config::parse(text).unwrap().tables().unwrap();
    let moved = Config::parse(&text.replacen("bridge = \"b1\"\n[[port]]\nname = \"p3\"", "bridge = \"b2\"\n[[port]]\nname = \"p3\"", 1).replace("name = \"p2\"\nmac = \"02:00:00:00:00:02\"\nbridge = \"b1\"", "name = \"p2\"\nmac = \"02:00:00:00:00:02\"\nbridge = \"b2\""))
        .unwrap()
        .commands_after(&before)
        .unwrap();
    let mut after = Tables::default();
    after.apply_all(moved).unwrap();
    let (p1, p2) = (before.port_by_name("p1").unwrap().id, before.port_by_name("p2").unwrap().id);
    assert!(matches!(after.port(p2).unwrap().role, PortRole::Bridge(b) if after.bridges[b.index()].name == "b2"));
    let frame = |src: u8, dst: u8| {
        let mut f = vec![2, 0xee, 0, 0, 0, dst, 2, 0xee, 0, 0, 0, src, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, src, 10, 0, 0, dst]);
        f
    };
    let mut worker = Worker::default();
    let mut batch = Batch::default();
    // x (…:02) speaks on p2 while p2 is in b1: learned there.
    batch.push(VecFrame::new(&frame(2, 1)), p2);
    process(&before, &mut batch, &mut worker, &mut VecPool);
    let mut batch = Batch::default();
    batch.push(VecFrame::new(&frame(1, 2)), p1);
    process(&before, &mut batch, &mut worker, &mut VecPool);
    assert_eq!(batch.packets[0].verdict, Verdict::Forward(p2), "known unicast before the move");
    // p2 moved to b2: a frame in b1 to x is flooded in b1 (nobody else there), not sent to p2.
    let mut batch = Batch::default();
    batch.push(VecFrame::new(&frame(1, 2)), p1);
    process(&after, &mut batch, &mut worker, &mut VecPool);
    let verdicts: Vec<_> = batch.packets.iter().map(|p| p.verdict).collect();
    assert!(verdicts.iter().all(|v| *v != Verdict::Forward(p2)), "b1's frame went into b2: {verdicts:?}");
    // The bridge domains kept their ids across the recompile.
    assert_eq!(before.bridges.iter().map(|b| &b.name).collect::<Vec<_>>(), after.bridges.iter().map(|b| &b.name).collect::<Vec<_>>());
}
