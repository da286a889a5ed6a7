//! Property tests: whatever bytes arrive on whatever port, the pipeline returns a verdict and
//! never panics; and mutations of valid frames never panic either.

use carrier_common::PortId;
use carrier_dataplane::config::Config;
use carrier_dataplane::pipeline::{process, Batch, VecFrame, VecPool, Verdict, Worker};
use carrier_dataplane::tables::Tables;
use proptest::prelude::*;

fn tables() -> Tables {
    let text = include_str!("../../examples/pe1.toml");
    Config::parse(text).unwrap().tables().unwrap()
}

/// A few valid frames to mutate: IPv4 to a VPN route, MPLS with label 100, VXLAN VNI 100, ARP.
fn seeds() -> Vec<(Vec<u8>, u16)> {
    let ip = |dst: [u8; 4]| {
        let mut f = vec![0x02, 0, 0, 0, 1, 1, 0x02, 0xaa, 0, 0, 0, 2, 0x08, 0x00];
        let mut h = [0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 1, 0, 2, dst[0], dst[1], dst[2], dst[3]];
        let c = carrier_dataplane::wire::checksum::checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&h);
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0]);
        f
    };
    let mut mpls = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0xcc, 0, 0, 0, 2, 0x88, 0x47, 0x00, 0x06, 0x41, 0x40];
    mpls.extend_from_slice(&ip([10, 1, 0, 2])[14..]);
    let mut vx = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0xcc, 0, 0, 0, 2, 0x08, 0x00];
    let inner = ip([10, 100, 0, 5]);
    let udp_len = (16 + inner.len()) as u16;
    let mut h = [0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 255, 0, 2, 10, 255, 0, 1];
    h[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    let c = carrier_dataplane::wire::checksum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    vx.extend_from_slice(&h);
    vx.extend_from_slice(&[0xc0, 0x00, 0x12, 0xb5]);
    vx.extend_from_slice(&udp_len.to_be_bytes());
    vx.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0, 100, 0]);
    vx.extend_from_slice(&inner);
    let arp = vec![
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0xaa, 0, 0, 0, 2, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1, 0x02, 0xaa, 0, 0, 0,
        2, 10, 1, 0, 2, 0, 0, 0, 0, 0, 0, 10, 2, 0, 5,
    ];
    vec![(ip([10, 2, 0, 5]), 0), (ip([10, 1, 0, 1]), 0), (mpls, 4), (vx, 4), (arp.clone(), 0), (arp, 3)]
}

fn run(tables: &Tables, frame: &[u8], port: u16) -> Vec<Verdict> {
    let mut batch = Batch::default();
    batch.push(VecFrame::new(frame), PortId(port));
    let mut worker = Worker::default();
    process(tables, &mut batch, &mut worker, &mut VecPool);
    batch.packets.iter().map(|p| p.verdict).collect()
}

#[test]
fn seeds_are_forwarded_not_dropped() {
    let t = tables();
    for (i, (frame, port)) in seeds().iter().enumerate() {
        let v = run(&t, frame, *port);
        assert!(!matches!(v[0], Verdict::Drop(_) | Verdict::Pending), "seed {i} on port {port}: {v:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), port in 0u16..8) {
        let t = tables();
        let v = run(&t, &bytes, port);
        prop_assert!(v.iter().all(|v| *v != Verdict::Pending));
    }

    #[test]
    fn mutated_frames_never_panic(seed in 0usize..6, flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let t = tables();
        let (mut frame, port) = seeds()[seed].clone();
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        let len = cut.index(frame.len() + 1);
        let v = run(&t, &frame[..len.max(1)], port);
        prop_assert!(v.iter().all(|v| *v != Verdict::Pending));
    }
}
