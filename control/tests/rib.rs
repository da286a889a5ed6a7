//! RIB → dataplane compile, step by step: numbered inputs (peer events, UPDATEs) and the
//! forwarding state and advertisements they must produce, checked by applying the compiled
//! commands to the example PE's tables and looking packets' destinations up in them.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carrier_control::bgp::msg::{Family, LabelField, Nlri, PathAttributes, PmsiTunnel, RouteTarget, Update};
use carrier_control::config::ControlConfig;
use carrier_control::fib::compile;
use carrier_control::rib::{PeerInfo, Rib};
use carrier_dataplane::config::Config;
use carrier_dataplane::tables::{IlmAction, Lpm, MacDest, NextHop, Tables};
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
last = 5009
[[neighbor]]
address = "10.255.0.254"
remote_as = 65000
families = ["vpnv4", "evpn"]
[[vrf]]
name = "red"
rd = "65000:1"
import = ["target:65000:1"]
export = ["target:65000:1"]
[[vrf]]
name = "blue"
rd = "65000:2"
import = ["target:65000:2"]
export = ["target:65000:2"]
[[evpn]]
bridge = "bd100"
rd = "10.255.0.1:100"
"#;

const RR: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 254);

fn setup() -> (Rib, Arc<Tables>) {
    let base = Arc::new(Config::parse(include_str!("../../examples/pe1.toml")).unwrap().tables().unwrap());
    let cfg = Arc::new(ControlConfig::parse(CONTROL).unwrap());
    let mut rib = Rib::new(cfg, base.clone());
    rib.peer_up(RR, PeerInfo { asn: 65000, router_id: RR, ebgp: false, local_pref: None, restart_time: Some(120) });
    (rib, base)
}

fn vpn_route(prefix: &str, label: u32, nh: &str, rt: &str) -> Update {
    Update {
        withdrawn: vec![],
        attributes: PathAttributes {
            next_hop: Some(nh.parse().unwrap()),
            local_pref: Some(100),
            ext_communities: vec![rt.parse::<RouteTarget>().unwrap().0],
            ..Default::default()
        },
        announced: vec![Nlri::Vpnv4 { rd: "65000:9".parse().unwrap(), label: LabelField::mpls(label), prefix: prefix.parse().unwrap() }],
        eor: None,
    }
}

fn programmed(rib: &mut Rib, base: &Tables, now: Instant) -> Tables {
    let desired = rib.desired(now);
    let (cmds, skipped) = compile(base, &desired);
    assert_eq!(skipped, 0);
    let mut t = base.clone();
    t.apply_all(cmds).unwrap();
    t
}

fn lookup<'a>(t: &'a Tables, vrf: &str, addr: &str) -> Option<&'a NextHop> {
    let v = t.vrf_by_name(vrf).unwrap();
    v.fib.lookup(addr.parse().unwrap()).and_then(|(_, nh)| t.nexthop(nh))
}

#[test]
fn vpnv4_import_by_route_target_withdraw_and_isolation() {
    let (mut rib, base) = setup();
    let now = Instant::now();
    // 1. A VPNv4 route with red's RT, next hop pe2 (resolvable in the underlay).
    rib.update(RR, vpn_route("10.50.0.0/16", 3000, "10.255.0.2", "target:65000:1"));
    let t = programmed(&mut rib, &base, now);
    match lookup(&t, "red", "10.50.1.1") {
        Some(NextHop::MplsPush { labels, pe, .. }) => {
            assert_eq!(labels.as_slice()[0].value(), 3000);
            assert_eq!(*pe, "10.255.0.2".parse::<Ipv4Addr>().unwrap());
        }
        other => panic!("step 1: {other:?}"),
    }
    assert!(lookup(&t, "blue", "10.50.1.1").is_none(), "step 1: red's route leaked into blue");
    // 2. An RT no VRF imports is not installed anywhere.
    rib.update(RR, vpn_route("10.60.0.0/16", 3001, "10.255.0.2", "target:65000:99"));
    let t = programmed(&mut rib, &base, now);
    assert!(lookup(&t, "red", "10.60.1.1").is_none());
    assert!(lookup(&t, "blue", "10.60.1.1").is_none());
    // 3. An unresolvable next hop is held, not installed.
    rib.update(RR, vpn_route("10.70.0.0/16", 3002, "198.51.100.1", "target:65000:1"));
    let t = programmed(&mut rib, &base, now);
    assert!(lookup(&t, "red", "10.70.1.1").is_none());
    assert_eq!(rib.stats.unresolved, 1);
    // 4. Withdraw removes it.
    let mut w = vpn_route("10.50.0.0/16", 3000, "10.255.0.2", "target:65000:1");
    w.withdrawn = std::mem::take(&mut w.announced);
    rib.update(RR, w);
    let t = programmed(&mut rib, &base, now);
    assert!(lookup(&t, "red", "10.50.1.1").is_none());
}

#[test]
fn local_routes_get_labels_and_are_advertised_then_withdrawn_by_diff() {
    let (mut rib, base) = setup();
    let now = Instant::now();
    let ads = rib.advertisements(now);
    // red has two connected subnets (ce-red, ce-red2), blue one; per-VRF labels: two labels.
    let vpn: Vec<_> = ads.iter().filter(|(n, _)| n.family() == Family::Vpnv4).collect();
    assert_eq!(vpn.len(), 3, "{vpn:?}");
    let t = programmed(&mut rib, &base, now);
    let red = t.vrf_by_name("red").unwrap().id;
    let red_label = vpn
        .iter()
        .find_map(|(n, a)| match n {
            Nlri::Vpnv4 { label, rd, .. } if rd.to_string() == "65000:1" => {
                assert!(a.route_targets().any(|rt| rt.to_string() == "target:65000:1"));
                Some(label.as_mpls())
            }
            _ => None,
        })
        .unwrap();
    assert!((5000..=5009).contains(&red_label));
    assert_eq!(t.ilm.get(&carrier_common::Label::new(red_label).unwrap()), Some(&IlmAction::PopLookup { vrf: red }));
    // The first diff announces everything; the second sends nothing; after the peer comes back,
    // everything again.
    let first = rib.updates_for(RR, &[Family::Vpnv4, Family::Evpn], false, &ads);
    assert_eq!(first.iter().map(|u| u.announced.len()).sum::<usize>(), ads.len());
    assert!(rib.updates_for(RR, &[Family::Vpnv4, Family::Evpn], false, &ads).is_empty());
    // Drop one advertisement: exactly it is withdrawn.
    let fewer: Vec<_> = ads[1..].to_vec();
    let diff = rib.updates_for(RR, &[Family::Vpnv4, Family::Evpn], false, &fewer);
    assert_eq!(diff.len(), 1);
    assert_eq!(diff[0].withdrawn, vec![ads[0].0.clone()]);
    // eBGP adds our AS.
    let e = rib.updates_for("192.0.2.9".parse().unwrap(), &[Family::Vpnv4], true, &ads);
    assert!(e.iter().all(|u| u.attributes.as_path == vec![65000]));
}

#[test]
fn evpn_type3_type2_type5_program_bridge_and_vrf() {
    let (mut rib, base) = setup();
    let now = Instant::now();
    let auto_rt: RouteTarget = "65000:100".parse().unwrap();
    let imet = Update {
        withdrawn: vec![],
        attributes: PathAttributes {
            next_hop: Some("10.255.0.4".parse().unwrap()),
            ext_communities: vec![auto_rt.0],
            pmsi_tunnel: Some(PmsiTunnel { tunnel_type: 6, label: LabelField::vni(100), endpoint: "10.255.0.4".parse().unwrap() }),
            ..Default::default()
        },
        announced: vec![Nlri::EvpnImet { rd: "10.255.0.4:100".parse().unwrap(), eth_tag: 0, originator: "10.255.0.4".parse().unwrap() }],
        eor: None,
    };
    let mac = MacAddr([2, 0x44, 0, 0, 0, 1]);
    let mac_ip = Update {
        withdrawn: vec![],
        attributes: PathAttributes { next_hop: Some("10.255.0.4".parse().unwrap()), ext_communities: vec![auto_rt.0], ..Default::default() },
        announced: vec![Nlri::EvpnMacIp(Box::new(carrier_control::bgp::msg::EvpnMacIp {
            rd: "10.255.0.4:100".parse().unwrap(),
            esi: [0; 10],
            eth_tag: 0,
            mac,
            ip: Some("10.100.0.44".parse().unwrap()),
            label1: LabelField::vni(100),
            label2: None,
        }))],
        eor: None,
    };
    let t5 = Update {
        withdrawn: vec![],
        attributes: PathAttributes {
            next_hop: Some("10.255.0.2".parse().unwrap()),
            ext_communities: vec!["target:65000:1".parse::<RouteTarget>().unwrap().0, carrier_control::bgp::msg::router_mac_community(mac)],
            ..Default::default()
        },
        announced: vec![Nlri::EvpnPrefix(Box::new(carrier_control::bgp::msg::EvpnPrefix {
            rd: "10.255.0.2:5".parse().unwrap(),
            esi: [0; 10],
            eth_tag: 0,
            prefix: "10.77.0.0/24".parse().unwrap(),
            gateway: Ipv4Addr::UNSPECIFIED,
            label: LabelField::vni(5000),
        }))],
        eor: None,
    };
    for u in [imet, mac_ip, t5] {
        rib.update(RR, u);
    }
    let t = programmed(&mut rib, &base, now);
    let bd = &t.bridges[0];
    assert!(bd.flood.contains(&"10.255.0.4".parse().unwrap()), "type 3 joins the flood list: {:?}", bd.flood);
    assert_eq!(bd.flood.len(), 3, "the configured VTEPs stay");
    assert_eq!(bd.macs.get(&mac), Some(&MacDest::Vtep("10.255.0.4".parse().unwrap())));
    assert_eq!(bd.arp.get(&"10.100.0.44".parse().unwrap()), Some(&mac));
    match lookup(&t, "red", "10.77.0.9") {
        Some(NextHop::Vxlan { vtep, vni, router_mac }) => {
            assert_eq!((vtep.to_string(), vni.value(), *router_mac), ("10.255.0.2".into(), 5000, Some(mac)));
        }
        other => panic!("type 5: {other:?}"),
    }
    // Our own type-3 carries PMSI ingress replication with the VNI and the VXLAN encapsulation.
    let ads = rib.advertisements(now);
    let (_, a) = ads.iter().find(|(n, _)| matches!(n, Nlri::EvpnImet { .. })).unwrap();
    assert_eq!(a.pmsi_tunnel.map(|p| (p.tunnel_type, p.label.as_vni())), Some((6, 100)));
    assert_eq!(a.encapsulation(), Some(8));
}

#[test]
fn graceful_restart_keeps_stale_routes_until_end_of_rib_or_timeout() {
    let (mut rib, base) = setup();
    let now = Instant::now();
    rib.update(RR, vpn_route("10.50.0.0/16", 3000, "10.255.0.2", "target:65000:1"));
    rib.update(RR, vpn_route("10.51.0.0/16", 3000, "10.255.0.2", "target:65000:1"));
    // 1. The session drops without a NOTIFICATION: routes stay (stale), still forwarding.
    rib.peer_down(RR, true, now);
    let t = programmed(&mut rib, &base, now);
    assert!(lookup(&t, "red", "10.50.1.1").is_some());
    // 2. It comes back and re-sends only one route, then End-of-RIB: the other is swept.
    rib.peer_up(RR, PeerInfo { asn: 65000, router_id: RR, ebgp: false, local_pref: None, restart_time: Some(120) });
    rib.update(RR, vpn_route("10.50.0.0/16", 3000, "10.255.0.2", "target:65000:1"));
    rib.end_of_rib(RR);
    let t = programmed(&mut rib, &base, now);
    assert!(lookup(&t, "red", "10.50.1.1").is_some());
    assert!(lookup(&t, "red", "10.51.1.1").is_none());
    // 3. Down again, and it never returns: the restart time sweeps everything.
    rib.peer_down(RR, true, now);
    assert!(!rib.expire_stale(now + Duration::from_secs(60)));
    assert!(rib.expire_stale(now + Duration::from_secs(121)));
    let t = programmed(&mut rib, &base, now);
    assert!(lookup(&t, "red", "10.50.1.1").is_none());
    // 4. A hard down (NOTIFICATION) drops routes at once.
    rib.peer_up(RR, PeerInfo { asn: 65000, router_id: RR, ebgp: false, local_pref: None, restart_time: Some(120) });
    rib.update(RR, vpn_route("10.50.0.0/16", 3000, "10.255.0.2", "target:65000:1"));
    rib.peer_down(RR, false, now);
    let t = programmed(&mut rib, &base, now);
    assert!(lookup(&t, "red", "10.50.1.1").is_none());
}

#[test]
fn decision_prefers_local_pref_then_shorter_as_path() {
    let (mut rib, base) = setup();
    let now = Instant::now();
    let other: Ipv4Addr = "10.255.0.253".parse().unwrap();
    rib.peer_up(other, PeerInfo { asn: 65000, router_id: other, ebgp: false, local_pref: None, restart_time: None });
    let mut a = vpn_route("10.50.0.0/16", 3000, "10.255.0.2", "target:65000:1");
    a.attributes.as_path = vec![65001, 65002];
    let mut b = vpn_route("10.50.0.0/16", 3333, "10.255.0.3", "target:65000:1");
    b.attributes.as_path = vec![65001];
    rib.update(RR, a.clone());
    rib.update(other, b.clone());
    let t = programmed(&mut rib, &base, now);
    assert!(matches!(lookup(&t, "red", "10.50.0.1"), Some(NextHop::MplsPush { labels, .. }) if labels.as_slice()[0].value() == 3333));
    a.attributes.local_pref = Some(200);
    rib.update(RR, a);
    let t = programmed(&mut rib, &base, now);
    assert!(matches!(lookup(&t, "red", "10.50.0.1"), Some(NextHop::MplsPush { labels, .. }) if labels.as_slice()[0].value() == 3000));
}

#[test]
fn route_targets_change_live() {
    let (mut rib, base) = setup();
    let now = Instant::now();
    rib.update(RR, vpn_route("10.50.0.0/16", 3000, "10.255.0.2", "target:65000:7"));
    let t = programmed(&mut rib, &base, now);
    assert!(lookup(&t, "red", "10.50.1.1").is_none());
    // red now also imports 65000:7 and exports 65000:8: re-import and re-export.
    let text = CONTROL.replace("import = [\"target:65000:1\"]", "import = [\"target:65000:1\", \"target:65000:7\"]").replace(
        "export = [\"target:65000:1\"]",
        "export = [\"target:65000:8\"]",
    );
    let first_ads = rib.advertisements(now);
    let sent_before = rib.updates_for(RR, &[Family::Vpnv4], false, &first_ads);
    assert!(!sent_before.is_empty());
    rib.reconfigure(Arc::new(ControlConfig::parse(&text).unwrap())).unwrap();
    let t = programmed(&mut rib, &base, now);
    assert!(matches!(lookup(&t, "red", "10.50.1.1"), Some(NextHop::MplsPush { .. })), "re-import");
    let ads = rib.advertisements(now);
    let diff = rib.updates_for(RR, &[Family::Vpnv4], false, &ads);
    let red_rt: RouteTarget = "target:65000:8".parse().unwrap();
    assert!(diff.iter().any(|u| u.attributes.route_targets().any(|rt| rt == red_rt)), "re-export with the new RT: {diff:?}");
    // A neighbor change is taken (the daemon restarts that neighbor's session); a label range
    // change is refused.
    let other = CONTROL.replace("10.255.0.254", "10.255.0.250");
    assert!(rib.reconfigure(Arc::new(ControlConfig::parse(&other).unwrap())).is_ok());
    let bad = other.replace("last = 5009", "last = 5019");
    assert!(rib.reconfigure(Arc::new(ControlConfig::parse(&bad).unwrap())).is_err());
}
