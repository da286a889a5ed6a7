//! The incremental path (RIB dirty set → [`Rib::changes`] → [`Compiler::apply`] → `apply` on
//! the dataplane's tables) against the from-scratch reference ([`Rib::desired`] compiled whole
//! and applied to the base tables), after every flush of a random sequence of announcements,
//! withdrawals, session losses and graceful restarts over overlapping prefixes, RDs, route
//! targets, reserved labels and next hops that resolve only through learned IPv4 routes.
//! And: a flush after one UPDATE sends commands for that UPDATE only, whatever the table size.
#![expect(clippy::manual_is_multiple_of, reason = "rust-version 1.85 predates is_multiple_of")]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use carrier_common::NextHopId;
use carrier_control::bgp::msg::{LabelField, Nlri, PathAttributes, PmsiTunnel, RouteTarget, Update};
use carrier_control::config::ControlConfig;
use carrier_control::fib::{compile, Compiler};
use carrier_control::rib::{PeerInfo, Rib};
use carrier_dataplane::config::Config;
use carrier_dataplane::tables::{IlmAction, NextHop, TableCommand, Tables};
use carrier_dataplane::wire::MacAddr;

const CONTROL: &str = r#"
[bgp]
asn = 65000
router_id = "10.255.0.1"
vtep = "10.255.0.1"
[dataplane]
config = "pe1.toml"
[labels]
first = 5000
last = 5099
mode = "per-nexthop"
[[vrf]]
name = "red"
rd = "65000:1"
import = ["target:65000:1"]
export = ["target:65000:1"]
[[vrf.static]]
prefix = "10.80.3.0/24"
via = "10.1.0.2"
[[vrf]]
name = "blue"
rd = "65000:2"
import = ["target:65000:2", "target:65000:3"]
export = ["target:65000:2"]
[[evpn]]
bridge = "bd100"
rd = "10.255.0.1:100"
"#;

const PEERS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 255, 0, 254), Ipv4Addr::new(10, 255, 0, 253)];

fn setup() -> (Rib, Arc<Tables>) {
    let base = Arc::new(Config::parse(include_str!("../../examples/pe1.toml")).unwrap().tables().unwrap());
    let cfg = Arc::new(ControlConfig::parse(CONTROL).unwrap());
    let mut rib = Rib::new(cfg, base.clone());
    for (i, p) in PEERS.into_iter().enumerate() {
        rib.peer_up(p, PeerInfo { asn: 65000, router_id: p, ebgp: false, local_pref: None, restart_time: (i == 0).then_some(120) });
    }
    (rib, base)
}

/// Deterministic xorshift, so a failure replays.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.next() as usize % from.len()]
    }
}

/// A next hop, written out with ids resolved (ECMP members sorted), for comparing tables
/// whose ids differ.
fn show(t: &Tables, id: NextHopId) -> String {
    match t.nexthop(id) {
        Some(NextHop::Ecmp { members }) => {
            let mut m: Vec<String> = members.iter().map(|m| show(t, *m)).collect();
            m.sort();
            format!("ecmp{m:?}")
        }
        Some(nh) => format!("{nh:?}"),
        None => format!("missing next hop {id}"),
    }
}

/// Everything the pipeline reads that the control process programs, with ids resolved.
fn view(t: &Tables) -> BTreeMap<String, Vec<String>> {
    let mut v = BTreeMap::new();
    v.insert("underlay".into(), t.underlay.routes().map(|(p, nh)| format!("{p} {}", show(t, nh))).collect());
    for vrf in &t.vrfs {
        v.insert(format!("vrf {}", vrf.name), vrf.fib.routes().map(|(p, nh)| format!("{p} {}", show(t, nh))).collect());
    }
    let mut ilm: Vec<String> = t
        .ilm
        .iter()
        .map(|(l, a)| match a {
            IlmAction::PopForward { vrf, nexthop } => format!("{} pop-forward {vrf} {}", l.value(), show(t, *nexthop)),
            other => format!("{} {other:?}", l.value()),
        })
        .collect();
    ilm.sort();
    v.insert("ilm".into(), ilm);
    for b in &t.bridges {
        let mut macs: Vec<String> = b.macs.iter().map(|(m, d)| format!("{m} {d:?}")).collect();
        macs.sort();
        let mut arp: Vec<String> = b.arp.iter().map(|(i, m)| format!("{i} {m}")).collect();
        arp.sort();
        v.insert(format!("bridge {}", b.name), [vec![format!("flood {:?}", b.flood)], macs, arp].concat());
    }
    v
}

fn attrs(nh: Ipv4Addr, rt: &str, local_pref: u32) -> PathAttributes {
    PathAttributes { next_hop: Some(nh), local_pref: Some(local_pref), ext_communities: vec![rt.parse::<RouteTarget>().unwrap().0], ..Default::default() }
}

/// One random UPDATE (or session event) for the RIB.
fn step(rib: &mut Rib, rng: &mut Rng, now: Instant) {
    let peer = rng.pick(&PEERS);
    let prefix = format!("10.80.{}.0/{}", rng.next() % 6, rng.pick(&[24, 24, 16])).parse().unwrap();
    let rd = rng.pick(&["65000:9", "65000:10"]).parse().unwrap();
    let nh: Ipv4Addr = rng.pick(&["10.255.0.2", "10.255.0.3", "10.255.0.4", "198.51.100.1", "10.99.1.1"]).parse().unwrap();
    let rt = rng.pick(&["target:65000:1", "target:65000:2", "target:65000:3", "target:65000:7"]);
    let label = rng.pick(&[3, 7, 0, 3000, 3001, 3002, 3003]);
    let update = match rng.next() % 12 {
        0..=3 => Update {
            announced: vec![Nlri::Vpnv4 { rd, label: LabelField::mpls(label), prefix }],
            attributes: attrs(nh, rt, rng.pick(&[100, 200])),
            ..Default::default()
        },
        4 | 5 => Update { withdrawn: vec![Nlri::Vpnv4 { rd, label: LabelField(0x80_0000), prefix }], ..Default::default() },
        6 => {
            // The underlay route through which 10.99.1.1 resolves, or its withdrawal.
            let v4 = Nlri::Ipv4 { prefix: "10.99.0.0/16".parse().unwrap() };
            if rng.next() % 2 == 0 {
                Update { announced: vec![v4], attributes: attrs(rng.pick(&["192.0.2.2".parse().unwrap(), "192.0.2.6".parse().unwrap()]), rt, 100), ..Default::default() }
            } else {
                Update { withdrawn: vec![v4], ..Default::default() }
            }
        }
        7 => {
            let n = Nlri::EvpnPrefix(Box::new(carrier_control::bgp::msg::EvpnPrefix { rd, esi: [0; 10], eth_tag: 0, prefix, gateway: Ipv4Addr::UNSPECIFIED, label: LabelField::vni(5000 + label) }));
            if rng.next() % 2 == 0 {
                Update { announced: vec![n], attributes: attrs(nh, rt, 100), ..Default::default() }
            } else {
                Update { withdrawn: vec![n], ..Default::default() }
            }
        }
        8 => {
            let mac = MacAddr([2, 0x44, 0, 0, 0, (rng.next() % 4) as u8]);
            let n = Nlri::EvpnMacIp(Box::new(carrier_control::bgp::msg::EvpnMacIp { rd, esi: [0; 10], eth_tag: 0, mac, ip: Some(Ipv4Addr::new(10, 100, 0, 40 + mac.0[5])), label1: LabelField::vni(100), label2: None }));
            let imet = Nlri::EvpnImet { rd, eth_tag: 0, originator: nh };
            let mut a = attrs(nh, "65000:100", 100);
            a.pmsi_tunnel = Some(PmsiTunnel { tunnel_type: 6, label: LabelField::vni(100), endpoint: nh });
            if rng.next() % 2 == 0 {
                Update { announced: vec![n, imet], attributes: a, ..Default::default() }
            } else {
                Update { withdrawn: vec![n, imet], ..Default::default() }
            }
        }
        9 => {
            rib.peer_down(PEERS[1], false, now);
            rib.peer_up(PEERS[1], PeerInfo { asn: 65000, router_id: PEERS[1], ebgp: false, local_pref: None, restart_time: None });
            return;
        }
        10 => {
            // A graceful restart of the first peer: stale, then its End-of-RIB sweeps them.
            rib.peer_down(PEERS[0], true, now);
            rib.peer_up(PEERS[0], PeerInfo { asn: 65000, router_id: PEERS[0], ebgp: false, local_pref: None, restart_time: Some(120) });
            if rng.next() % 2 == 0 {
                rib.end_of_rib(PEERS[0]);
            }
            return;
        }
        _ => Update {
            announced: vec![Nlri::Vpnv4 { rd, label: LabelField::mpls(label), prefix: "10.80.3.0/24".parse().unwrap() }],
            attributes: attrs(nh, rt, 100),
            ..Default::default()
        },
    };
    rib.update(peer, update);
}

#[test]
fn incremental_flushes_match_the_from_scratch_state() {
    for seed in [0x2545_f491, 0x9e37_79b9, 0x1234_5678] {
        let (mut rib, base) = setup();
        let mut compiler = Compiler::new(base.clone());
        let mut dataplane = (*base).clone();
        let mut rng = Rng(seed);
        let now = Instant::now();
        let mut checked = 0;
        for i in 0..600 {
            step(&mut rib, &mut rng, now);
            if rng.next() % 3 != 0 {
                continue;
            }
            let cmds = compiler.apply(&rib.changes(now, &compiler));
            dataplane.apply_all(cmds.clone()).unwrap_or_else(|(j, e)| panic!("seed {seed:#x} step {i}: command {j} ({:?}) refused: {e}", cmds[j]));
            let mut reference = (*base).clone();
            reference.apply_all(compile(&base, &rib.desired(now)).0).unwrap();
            assert_eq!(view(&dataplane), view(&reference), "seed {seed:#x} step {i}: incremental state differs from the reference");
            // The whole state the compiler would resend after a reconnect is the same again.
            let mut resent = (*base).clone();
            resent.apply_all(compiler.full_state()).unwrap();
            assert_eq!(view(&resent), view(&reference), "seed {seed:#x} step {i}: full state differs");
            // No next hop leaks: every one above the base is used, and the compiler knows each.
            let above: Vec<usize> = (base.nexthops.len()..dataplane.nexthops.len()).filter(|i| dataplane.nexthops[*i].is_some()).collect();
            assert_eq!(above.len(), compiler.nexthops(), "seed {seed:#x} step {i}: next hops in the dataplane vs the compiler");
            for id in above {
                assert!(dataplane.nexthop_refs(NextHopId(id as u32)) > 0, "seed {seed:#x} step {i}: next hop {id} is unused");
            }
            checked += 1;
        }
        assert!(checked > 100, "seed {seed:#x}: only {checked} flushes compared");
    }
}

#[test]
fn a_flush_after_one_update_sends_only_that_change() {
    let (mut rib, base) = setup();
    let mut compiler = Compiler::new(base.clone());
    let now = Instant::now();
    let prefixes: Vec<Nlri> = (0..20_000u32)
        .map(|i| Nlri::Vpnv4 { rd: "65000:9".parse().unwrap(), label: LabelField::mpls(3000), prefix: carrier_dataplane::tables::Ipv4Prefix::new(Ipv4Addr::from(0x1400_0000 + (i << 8)), 24).unwrap() })
        .collect();
    rib.update(PEERS[0], Update { announced: prefixes.clone(), attributes: attrs("10.255.0.2".parse().unwrap(), "target:65000:1", 100), ..Default::default() });
    let first = compiler.apply(&rib.changes(now, &compiler));
    assert!(first.len() > 20_000, "the first flush installs every route: {} commands", first.len());
    // One more route over the same next hop: one command.
    let one = Nlri::Vpnv4 { rd: "65000:9".parse().unwrap(), label: LabelField::mpls(3000), prefix: "30.0.0.0/24".parse().unwrap() };
    rib.update(PEERS[0], Update { announced: vec![one.clone()], attributes: attrs("10.255.0.2".parse().unwrap(), "target:65000:1", 100), ..Default::default() });
    let delta = rib.changes(now, &compiler);
    assert_eq!(delta.routes.len(), 1, "{delta:?}");
    let cmds = compiler.apply(&delta);
    assert!(matches!(cmds.as_slice(), [TableCommand::Route { .. }]), "{cmds:?}");
    // A new label for one existing route: its new next hop and the route.
    rib.update(PEERS[0], Update { announced: vec![Nlri::Vpnv4 { rd: "65000:9".parse().unwrap(), label: LabelField::mpls(3001), prefix: "30.0.0.0/24".parse().unwrap() }], attributes: attrs("10.255.0.2".parse().unwrap(), "target:65000:1", 100), ..Default::default() });
    let cmds = compiler.apply(&rib.changes(now, &compiler));
    assert!(matches!(cmds.as_slice(), [TableCommand::NextHop { .. }, TableCommand::Route { .. }]), "{cmds:?}");
    // Its withdrawal: the route, then the next hop nothing else uses.
    rib.update(PEERS[0], Update { withdrawn: vec![one], ..Default::default() });
    let cmds = compiler.apply(&rib.changes(now, &compiler));
    assert!(matches!(cmds.as_slice(), [TableCommand::Withdraw { .. }, TableCommand::RemoveNextHop { .. }]), "{cmds:?}");
    // Nothing new: nothing sent.
    assert!(compiler.apply(&rib.changes(now, &compiler)).is_empty());
}

/// The RIB keeps no copy of what it handed on: it compares each flush with the compiler's
/// routes. A static route of the control config that comes and goes over a BGP route for the
/// same prefix (reconfigured live) gives, after each flush, what the from-scratch reference
/// holds: the static while it is configured, BGP's route again once it is gone, nothing once
/// BGP withdraws too.
#[test]
fn a_static_that_comes_and_goes_over_a_bgp_route_matches_the_reference() {
    let (mut rib, base) = setup();
    let mut compiler = Compiler::new(base.clone());
    let mut dataplane = (*base).clone();
    let now = Instant::now();
    let prefix: carrier_dataplane::tables::Ipv4Prefix = "10.80.3.0/24".parse().unwrap();
    let bgp = Nlri::Vpnv4 { rd: "65000:9".parse().unwrap(), label: LabelField::mpls(3000), prefix };
    rib.update(PEERS[0], Update { announced: vec![bgp.clone()], attributes: attrs("10.255.0.2".parse().unwrap(), "target:65000:1", 100), ..Default::default() });
    let without_static = Arc::new(ControlConfig::parse(&CONTROL.replace("[[vrf.static]]\nprefix = \"10.80.3.0/24\"\nvia = \"10.1.0.2\"\n", "")).unwrap());
    let with_static = Arc::new(ControlConfig::parse(CONTROL).unwrap());
    let red = base.vrf_by_name("red").unwrap();
    let route = |t: &Tables| t.vrfs[red.id.index()].fib.routes().find(|(p, _)| *p == prefix).map(|(_, nh)| show(t, nh));
    let mut shown = vec![];
    for (step, cfg) in [None, Some(&without_static), Some(&with_static), Some(&without_static)].into_iter().enumerate() {
        if let Some(cfg) = cfg {
            rib.reconfigure(cfg.clone()).unwrap();
        }
        let cmds = compiler.apply(&rib.changes(now, &compiler));
        dataplane.apply_all(cmds.clone()).unwrap_or_else(|(j, e)| panic!("step {step}: command {j} ({:?}) refused: {e}", cmds[j]));
        let mut reference = (*base).clone();
        reference.apply_all(compile(&base, &rib.desired(now)).0).unwrap();
        assert_eq!(view(&dataplane), view(&reference), "step {step}");
        shown.push(route(&dataplane).unwrap_or_default());
    }
    rib.update(PEERS[0], Update { withdrawn: vec![bgp], ..Default::default() });
    let cmds = compiler.apply(&rib.changes(now, &compiler));
    dataplane.apply_all(cmds).unwrap();
    assert_eq!(route(&dataplane), None, "BGP withdrew and no static is configured");
    assert!(shown[0].contains("Adjacency") && shown[2].contains("Adjacency"), "the static wins: {shown:?}");
    assert!(shown[1].contains("MplsPush") && shown[3].contains("MplsPush"), "BGP's route without the static: {shown:?}");
}
