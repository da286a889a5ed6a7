//! Codec tests: round trips, independent vectors (scapy, GoBGP), RFC 7606 cases, proptest.
//!
//! Every successful UPDATE decode here also asserts that netgauze and our walker agree (see
//! `decode_update`), so the round trips are differential tests too.

use std::net::Ipv4Addr;

use carrier_dataplane::tables::Ipv4Prefix;
use carrier_contract::MacAddr;
use proptest::prelude::*;

use super::*;
use crate::bgp::msg::{
    encapsulation_community, router_mac_community, LabelField, Origin, PmsiTunnel, RawAttribute,
    RouteDistinguisher, RouteTarget, ENCAP_VXLAN,
};

fn ctx(four_octet_as: bool) -> CodecContext {
    CodecContext {
        four_octet_as,
        add_path: false,
    }
}

fn pfx(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

fn rd(s: &str) -> RouteDistinguisher {
    s.parse().unwrap()
}

fn rt(s: &str) -> [u8; 8] {
    s.parse::<RouteTarget>().unwrap().0
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const SCAPY: &str = include_str!("../../../tests/vectors/scapy.hex");
const GOBGP: &str = include_str!("../../../tests/vectors/gobgp.hex");
const BIRD: &str = include_str!("../../../tests/vectors/bird.hex");

/// The message called `name` in a vectors file (`name: hex` lines).
fn vector(file: &str, name: &str) -> Vec<u8> {
    file.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .map(hex)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

/// Split a byte stream into frames with `frame_len` and decode each.
fn decode_stream(mut bytes: &[u8], c: &CodecContext) -> Vec<Message> {
    let mut out = vec![];
    while !bytes.is_empty() {
        let len = frame_len(bytes).unwrap().expect("complete frame");
        out.push(decode(&bytes[..len], c).unwrap());
        bytes = &bytes[len..];
    }
    out
}

fn decode_one(bytes: &[u8], c: &CodecContext) -> Message {
    let mut m = decode_stream(bytes, c);
    assert_eq!(m.len(), 1, "expected one message");
    m.pop().unwrap()
}

fn round_trip(msg: &Message, c: &CodecContext) {
    let bytes = encode(msg, c);
    assert_eq!(
        &decode_one(&bytes, c),
        msg,
        "round trip of {msg:?} (four_octet_as {})",
        c.four_octet_as
    );
}

fn full_attributes(four: bool) -> PathAttributes {
    PathAttributes {
        origin: Origin::Egp,
        as_path: vec![65001, 65002, if four { 4_200_000_001 } else { 65003 }],
        next_hop: Some(ip("192.0.2.1")),
        med: Some(20),
        local_pref: Some(150),
        communities: vec![0xfde9_0007, 0xffff_ff01],
        ext_communities: vec![
            rt("65001:10"),
            encapsulation_community(ENCAP_VXLAN),
            router_mac_community(MacAddr([2, 0, 0, 0, 0, 1])),
        ],
        originator_id: Some(ip("192.0.2.99")),
        cluster_list: vec![ip("192.0.2.200"), ip("192.0.2.201")],
        pmsi_tunnel: None,
        unknown: vec![RawAttribute {
            flags: 0xe0,
            code: 32,
            value: vec![0, 0, 0xfd, 0xe9, 0, 0, 0, 1, 0, 0, 0, 2],
        }],
    }
}

fn evpn_routes() -> Vec<Nlri> {
    let esi = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    vec![
        Nlri::EvpnMacIp(Box::new(crate::bgp::msg::EvpnMacIp {
            rd: rd("192.0.2.1:10"),
            esi,
            eth_tag: 0,
            mac: MacAddr([0xaa, 0xbb, 0xcc, 0, 0, 4]),
            ip: Some(ip("10.0.0.4")),
            label1: LabelField::vni(10010),
            label2: Some(LabelField::vni(5000)),
        })),
        Nlri::EvpnMacIp(Box::new(crate::bgp::msg::EvpnMacIp {
            rd: rd("192.0.2.1:10"),
            esi: [0; 10],
            eth_tag: 7,
            mac: MacAddr([0xaa, 0xbb, 0xcc, 0, 0, 5]),
            ip: None,
            label1: LabelField::mpls(3000),
            label2: None,
        })),
        Nlri::EvpnImet {
            rd: rd("65001:10"),
            eth_tag: 0,
            originator: ip("192.0.2.1"),
        },
        Nlri::EvpnPrefix(Box::new(crate::bgp::msg::EvpnPrefix {
            rd: rd("4200000000:5"),
            esi: [0; 10],
            eth_tag: 0,
            prefix: pfx("10.30.0.0/24"),
            gateway: ip("0.0.0.0"),
            label: LabelField::vni(5000),
        })),
    ]
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn round_trip_open_keepalive_notification_route_refresh() {
    for four in [false, true] {
        let c = ctx(four);
        let full = Open {
            asn: if four { 4_200_000_001 } else { 65001 },
            hold_time: 90,
            router_id: ip("192.0.2.1"),
            families: vec![Family::Ipv4Unicast, Family::Vpnv4, Family::Evpn],
            four_octet_as: four,
            route_refresh: true,
            graceful_restart: Some(GracefulRestart {
                restarting: true,
                restart_time: 120,
                families: vec![(Family::Vpnv4, true), (Family::Evpn, false)],
            }),
        };
        round_trip(&Message::Open(full), &c);
        let bare = Open {
            asn: 64512,
            hold_time: 0,
            router_id: ip("10.0.0.1"),
            families: vec![],
            four_octet_as: false,
            route_refresh: false,
            graceful_restart: None,
        };
        round_trip(&Message::Open(bare), &c);
        round_trip(&Message::Keepalive, &c);
        round_trip(&Message::Notification(Notification::new(6, 2)), &c);
        round_trip(
            &Message::Notification(Notification {
                code: 3,
                subcode: 2,
                data: vec![0x40, 99, 0],
            }),
            &c,
        );
        for f in [Family::Ipv4Unicast, Family::Vpnv4, Family::Evpn] {
            round_trip(&Message::RouteRefresh(f), &c);
        }
    }
    // A 4-byte ASN in the OPEN goes as AS_TRANS in My AS.
    let o = Open {
        asn: 4_200_000_001,
        hold_time: 90,
        router_id: ip("192.0.2.1"),
        families: vec![],
        four_octet_as: true,
        route_refresh: false,
        graceful_restart: None,
    };
    let b = encode(&Message::Open(o), &ctx(true));
    assert_eq!(&b[20..22], &AS_TRANS.to_be_bytes());
}

#[test]
fn round_trip_updates_every_nlri_type() {
    for four in [false, true] {
        let c = ctx(four);
        // IPv4 announcements + withdrawals together, every attribute.
        let ipv4 = Update {
            withdrawn: vec![
                Nlri::Ipv4 {
                    prefix: pfx("10.9.0.0/16"),
                },
                Nlri::Ipv4 {
                    prefix: pfx("0.0.0.0/0"),
                },
            ],
            attributes: full_attributes(four),
            announced: vec![
                Nlri::Ipv4 {
                    prefix: pfx("10.1.0.0/24"),
                },
                Nlri::Ipv4 {
                    prefix: pfx("192.0.2.128/25"),
                },
                Nlri::Ipv4 {
                    prefix: pfx("198.51.100.7/32"),
                },
            ],
            eor: None,
        };
        round_trip(&Message::Update(ipv4), &c);

        let vpn = Update {
            announced: vec![
                Nlri::Vpnv4 {
                    rd: rd("65001:10"),
                    label: LabelField::mpls(100),
                    prefix: pfx("10.20.0.0/24"),
                },
                Nlri::Vpnv4 {
                    rd: rd("192.0.2.1:7"),
                    label: LabelField::mpls(1_048_575),
                    prefix: pfx("10.21.0.1/32"),
                },
                Nlri::Vpnv4 {
                    rd: rd("4200000000:5"),
                    label: LabelField::mpls(16),
                    prefix: pfx("0.0.0.0/0"),
                },
            ],
            attributes: PathAttributes {
                local_pref: Some(100),
                ..full_attributes(four)
            },
            ..Default::default()
        };
        round_trip(&Message::Update(vpn.clone()), &c);
        let vpn_withdraw = Update {
            withdrawn: vpn.announced.clone(),
            ..Default::default()
        };
        round_trip(&Message::Update(vpn_withdraw), &c);

        let mut evpn_attrs = full_attributes(four);
        evpn_attrs.pmsi_tunnel = Some(PmsiTunnel {
            tunnel_type: 6,
            label: LabelField::vni(10010),
            endpoint: ip("192.0.2.1"),
        });
        let evpn = Update {
            announced: evpn_routes(),
            attributes: evpn_attrs,
            ..Default::default()
        };
        round_trip(&Message::Update(evpn), &c);
        round_trip(
            &Message::Update(Update {
                withdrawn: evpn_routes(),
                ..Default::default()
            }),
            &c,
        );

        // End-of-RIB of every family.
        for f in [Family::Ipv4Unicast, Family::Vpnv4, Family::Evpn] {
            round_trip(&Message::Update(Update::end_of_rib(f)), &c);
        }
        // An empty Update without eor encodes to nothing.
        assert!(encode(&Message::Update(Update::default()), &c).is_empty());
    }
}

#[test]
fn two_octet_session_carries_big_asns_in_as4_path() {
    let u = Update {
        attributes: PathAttributes {
            as_path: vec![65001, 4_200_000_001, 65002],
            next_hop: Some(ip("192.0.2.1")),
            ..Default::default()
        },
        announced: vec![Nlri::Ipv4 {
            prefix: pfx("10.0.0.0/8"),
        }],
        ..Default::default()
    };
    let bytes = encode(&Message::Update(u.clone()), &ctx(false));
    // AS_PATH 2-octet with AS_TRANS, and AS4_PATH (code 17) present.
    let as_path_2 = [0x40, 2, 8, 2, 3, 0xfd, 0xe9, 0x5b, 0xa0, 0xfd, 0xea];
    assert!(bytes.windows(as_path_2.len()).any(|w| w == as_path_2));
    assert!(bytes.windows(2).any(|w| w == [0xc0, 17]));
    assert_eq!(decode_one(&bytes, &ctx(false)), Message::Update(u));
}

#[test]
fn big_updates_are_split_into_several_messages() {
    for four in [false, true] {
        let c = ctx(four);
        let announced: Vec<Nlri> = (0..1500u32)
            .map(|i| Nlri::Ipv4 {
                prefix: Ipv4Prefix::host(Ipv4Addr::from(0x0a00_0000 + i)),
            })
            .collect();
        let u = Update {
            withdrawn: announced[..700].to_vec(),
            attributes: full_attributes(four),
            announced: announced[700..].to_vec(),
            eor: None,
        };
        let bytes = encode(&Message::Update(u.clone()), &c);
        let msgs = decode_stream(&bytes, &c);
        assert!(msgs.len() > 1);
        let mut got = Update::default();
        for m in msgs {
            let Message::Update(m) = m else { panic!() };
            got.withdrawn.extend(m.withdrawn);
            if !m.announced.is_empty() {
                got.attributes = m.attributes;
            }
            got.announced.extend(m.announced);
        }
        assert_eq!(got, u);

        let vpn: Vec<Nlri> = (0..600u32)
            .map(|i| Nlri::Vpnv4 {
                rd: rd("65001:1"),
                label: LabelField::mpls(16 + i),
                prefix: Ipv4Prefix::host(Ipv4Addr::from(0x0a00_0000 + i)),
            })
            .collect();
        for u in [
            Update {
                announced: vpn.clone(),
                attributes: full_attributes(four),
                ..Default::default()
            },
            Update {
                withdrawn: vpn.clone(),
                ..Default::default()
            },
        ] {
            let bytes = encode(&Message::Update(u.clone()), &c);
            let msgs = decode_stream(&bytes, &c);
            assert!(msgs.len() > 1);
            let mut got = Update::default();
            for m in msgs {
                let Message::Update(m) = m else { panic!() };
                got.withdrawn.extend(m.withdrawn);
                if !m.announced.is_empty() {
                    got.attributes = m.attributes;
                }
                got.announced.extend(m.announced);
            }
            assert_eq!(got, u);
        }
    }
}

#[test]
fn an_update_with_two_families_becomes_two_messages() {
    let c = ctx(true);
    let u = Update {
        withdrawn: vec![Nlri::EvpnImet {
            rd: rd("65001:10"),
            eth_tag: 0,
            originator: ip("192.0.2.1"),
        }],
        attributes: PathAttributes {
            next_hop: Some(ip("192.0.2.1")),
            ..Default::default()
        },
        announced: vec![Nlri::Vpnv4 {
            rd: rd("65001:10"),
            label: LabelField::mpls(100),
            prefix: pfx("10.20.0.0/24"),
        }],
        eor: None,
    };
    let msgs = decode_stream(&encode(&Message::Update(u), &c), &c);
    assert_eq!(msgs.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Independent vectors
// ---------------------------------------------------------------------------------------------

#[test]
fn scapy_open_with_capabilities() {
    let m = decode_one(&vector(SCAPY, "open_4byte_as_gr"), &ctx(false));
    assert_eq!(
        m,
        Message::Open(Open {
            asn: 4_200_000_001,
            hold_time: 90,
            router_id: ip("192.0.2.7"),
            families: vec![Family::Ipv4Unicast, Family::Vpnv4, Family::Evpn],
            four_octet_as: true,
            route_refresh: true,
            graceful_restart: Some(GracefulRestart {
                restarting: true,
                restart_time: 120,
                families: vec![(Family::Ipv4Unicast, true), (Family::Vpnv4, false)],
            }),
        })
    );
}

#[test]
fn scapy_updates_and_small_messages() {
    let as2 = vector(SCAPY, "update_ipv4_as2");
    let m = decode_one(&as2, &ctx(false));
    let expected = Update {
        withdrawn: vec![Nlri::Ipv4 {
            prefix: pfx("10.9.0.0/16"),
        }],
        attributes: PathAttributes {
            origin: Origin::Igp,
            as_path: vec![65002, 65003],
            next_hop: Some(ip("192.0.2.9")),
            med: Some(50),
            local_pref: Some(200),
            communities: vec![0xfde9_0064],
            originator_id: Some(ip("192.0.2.33")),
            cluster_list: vec![ip("192.0.2.33"), ip("192.0.2.34")],
            ..Default::default()
        },
        announced: vec![
            Nlri::Ipv4 {
                prefix: pfx("10.1.0.0/24"),
            },
            Nlri::Ipv4 {
                prefix: pfx("172.16.0.0/12"),
            },
            Nlri::Ipv4 {
                prefix: pfx("192.0.2.128/25"),
            },
        ],
        eor: None,
    };
    assert_eq!(m, Message::Update(expected.clone()));
    // Our encoder writes the same bytes as scapy for the same content.
    assert_eq!(encode(&Message::Update(expected), &ctx(false)), as2);

    let m = decode_one(&vector(SCAPY, "update_ipv4_as4"), &ctx(true));
    let Message::Update(u) = m else { panic!() };
    assert_eq!(u.attributes.origin, Origin::Incomplete);
    assert_eq!(
        u.attributes.as_path,
        vec![65002, 4_200_000_001, 64512, 64513]
    );
    assert_eq!(
        u.announced,
        vec![
            Nlri::Ipv4 {
                prefix: pfx("0.0.0.0/0")
            },
            Nlri::Ipv4 {
                prefix: pfx("198.51.100.1/32")
            }
        ]
    );

    let eor = vector(SCAPY, "update_eor_ipv4");
    assert_eq!(
        decode_one(&eor, &ctx(true)),
        Message::Update(Update::end_of_rib(Family::Ipv4Unicast))
    );
    assert_eq!(
        encode(
            &Message::Update(Update::end_of_rib(Family::Ipv4Unicast)),
            &ctx(true)
        ),
        eor
    );
    let ka = vector(SCAPY, "keepalive");
    assert_eq!(decode_one(&ka, &ctx(true)), Message::Keepalive);
    assert_eq!(encode(&Message::Keepalive, &ctx(true)), ka);
    for (name, n) in [
        ("notification_cease_admin_shutdown", Notification::new(6, 2)),
        ("notification_hold_timer", Notification::new(4, 0)),
    ] {
        let b = vector(SCAPY, name);
        assert_eq!(decode_one(&b, &ctx(true)), Message::Notification(n.clone()));
        assert_eq!(encode(&Message::Notification(n), &ctx(true)), b);
    }
    for (name, f) in [
        ("route_refresh_vpnv4", Family::Vpnv4),
        ("route_refresh_evpn", Family::Evpn),
    ] {
        let b = vector(SCAPY, name);
        assert_eq!(decode_one(&b, &ctx(true)), Message::RouteRefresh(f));
        assert_eq!(encode(&Message::RouteRefresh(f), &ctx(true)), b);
    }
}

#[test]
fn gobgp_open() {
    let m = decode_one(&vector(GOBGP, "open"), &ctx(false));
    assert_eq!(
        m,
        Message::Open(Open {
            asn: 65001,
            hold_time: 90,
            router_id: ip("192.0.2.1"),
            families: vec![Family::Ipv4Unicast, Family::Vpnv4, Family::Evpn],
            four_octet_as: true,
            route_refresh: true,
            graceful_restart: Some(GracefulRestart {
                restarting: false,
                restart_time: 120,
                families: vec![
                    (Family::Ipv4Unicast, false),
                    (Family::Vpnv4, false),
                    (Family::Evpn, false)
                ],
            }),
        })
    );
}

/// Decode a GoBGP vector, check it, and check that we encode the same bytes (GoBGP writes
/// attributes in type-code order, as we do).
fn gobgp_update(name: &str, expected: &Update, byte_exact: bool) {
    let c = ctx(true);
    let b = vector(GOBGP, name);
    assert_eq!(
        decode_one(&b, &c),
        Message::Update(expected.clone()),
        "{name}"
    );
    if byte_exact {
        assert_eq!(
            encode(&Message::Update(expected.clone()), &c),
            b,
            "{name}: our encoding differs from GoBGP's"
        );
    }
}

fn gobgp_attrs(ext: Vec<[u8; 8]>) -> PathAttributes {
    PathAttributes {
        origin: Origin::Incomplete,
        as_path: vec![],
        next_hop: Some(ip("192.0.2.1")),
        local_pref: Some(100),
        ext_communities: ext,
        ..Default::default()
    }
}

#[test]
fn gobgp_vpnv4() {
    let route = Nlri::Vpnv4 {
        rd: rd("65001:10"),
        label: LabelField::mpls(100),
        prefix: pfx("10.20.0.0/24"),
    };
    let add = Update {
        attributes: PathAttributes {
            med: Some(20),
            communities: vec![0xfde9_0007],
            ..gobgp_attrs(vec![rt("65001:10")])
        },
        announced: vec![route.clone()],
        ..Default::default()
    };
    gobgp_update("vpnv4_add", &add, true);
    gobgp_update(
        "vpnv4_del",
        &Update {
            withdrawn: vec![route],
            ..Default::default()
        },
        true,
    );
}

#[test]
fn bird_vpnv4() {
    // BIRD 2.0.12's OPEN: VPNv4 and no Multiple Labels capability (RFC 8277 §2.1) of its own.
    let Message::Open(open) = decode_one(&vector(BIRD, "open"), &ctx(false)) else {
        panic!()
    };
    assert_eq!(
        (open.asn, open.families.as_slice(), open.four_octet_as),
        (65001, [Family::Vpnv4].as_slice(), true)
    );
    let c = ctx(true);
    let attrs = PathAttributes {
        origin: Origin::Igp,
        next_hop: Some(ip("10.0.0.200")),
        local_pref: Some(100),
        ext_communities: vec![rt("65001:1")],
        ..Default::default()
    };
    let vpn = |label: LabelField, prefix: &str| Nlri::Vpnv4 {
        rd: rd("65001:7"),
        label,
        prefix: pfx(prefix),
    };
    let announced = |route: Nlri| {
        Message::Update(Update {
            attributes: attrs.clone(),
            announced: vec![route],
            ..Default::default()
        })
    };
    // A static route's label, and a route without one: label 3, implicit null, which the RIB
    // installs with nothing pushed.
    assert_eq!(
        decode_one(&vector(BIRD, "vpnv4_label_7000"), &c),
        announced(vpn(LabelField::mpls(7000), "10.70.0.0/16"))
    );
    assert_eq!(
        decode_one(&vector(BIRD, "vpnv4_no_label"), &c),
        announced(vpn(LabelField::mpls(3), "10.71.0.0/16"))
    );
    // Two labels, 7200 then 7201 with the bottom-of-stack bit, although neither side sent
    // the Multiple Labels capability: that route is treated as withdrawn, no reset.
    match decode(&vector(BIRD, "vpnv4_two_labels"), &c) {
        Err(DecodeError::RoutesTreatedAsWithdrawn { update, reason }) => {
            assert_eq!(
                update.withdrawn,
                [vpn(LabelField(7200 << 4), "10.72.0.0/16")]
            );
            assert!(update.announced.is_empty(), "{update:?}");
            assert!(reason.contains("with 2 labels"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let Message::Update(eor) = decode_one(&vector(BIRD, "vpnv4_eor"), &c) else {
        panic!()
    };
    assert_eq!(eor.eor, Some(Family::Vpnv4));
}

#[test]
fn gobgp_evpn() {
    let mac_ip = Nlri::EvpnMacIp(Box::new(crate::bgp::msg::EvpnMacIp {
        rd: rd("192.0.2.1:10"),
        esi: [0; 10],
        eth_tag: 0,
        mac: MacAddr([0xaa, 0xbb, 0xcc, 0, 0, 4]),
        ip: Some(ip("10.0.0.4")),
        label1: LabelField::vni(10010),
        label2: Some(LabelField::vni(10020)),
    }));
    let router_mac = router_mac_community(MacAddr([2, 0, 0, 0, 0, 1]));
    let vxlan = encapsulation_community(ENCAP_VXLAN);
    let add = Update {
        attributes: gobgp_attrs(vec![rt("65001:10010"), vxlan, router_mac]),
        announced: vec![mac_ip.clone()],
        ..Default::default()
    };
    gobgp_update("evpn_macadv_add", &add, true);
    assert_eq!(add.attributes.encapsulation(), Some(ENCAP_VXLAN));
    assert_eq!(
        add.attributes.router_mac(),
        Some(MacAddr([2, 0, 0, 0, 0, 1]))
    );

    let mac_only = Nlri::EvpnMacIp(Box::new(crate::bgp::msg::EvpnMacIp {
        rd: rd("192.0.2.1:10"),
        esi: [0; 10],
        eth_tag: 0,
        mac: MacAddr([0xaa, 0xbb, 0xcc, 0, 0, 5]),
        ip: None,
        label1: LabelField::vni(10010),
        label2: None,
    }));
    let add = Update {
        attributes: gobgp_attrs(vec![rt("65001:10010"), vxlan]),
        announced: vec![mac_only],
        ..Default::default()
    };
    gobgp_update("evpn_macadv_nomip_add", &add, true);

    let imet = Nlri::EvpnImet {
        rd: rd("192.0.2.1:10"),
        eth_tag: 0,
        originator: ip("192.0.2.1"),
    };
    let add = Update {
        attributes: PathAttributes {
            pmsi_tunnel: Some(PmsiTunnel {
                tunnel_type: 6,
                label: LabelField::vni(10010),
                endpoint: ip("192.0.2.1"),
            }),
            ..gobgp_attrs(vec![rt("65001:10010"), vxlan])
        },
        announced: vec![imet.clone()],
        ..Default::default()
    };
    gobgp_update("evpn_multicast_add", &add, true);

    let prefix = Nlri::EvpnPrefix(Box::new(crate::bgp::msg::EvpnPrefix {
        rd: rd("192.0.2.1:50"),
        esi: [0; 10],
        eth_tag: 0,
        prefix: pfx("10.30.0.0/24"),
        gateway: ip("0.0.0.0"),
        label: LabelField::vni(5000),
    }));
    let add = Update {
        attributes: gobgp_attrs(vec![rt("65001:5000"), vxlan, router_mac]),
        announced: vec![prefix.clone()],
        ..Default::default()
    };
    gobgp_update("evpn_prefix_add", &add, true);

    gobgp_update(
        "evpn_macadv_del",
        &Update {
            withdrawn: vec![mac_ip],
            ..Default::default()
        },
        true,
    );
    gobgp_update(
        "evpn_multicast_del",
        &Update {
            withdrawn: vec![imet],
            ..Default::default()
        },
        true,
    );
    gobgp_update(
        "evpn_prefix_del",
        &Update {
            withdrawn: vec![prefix],
            ..Default::default()
        },
        true,
    );
}

#[test]
fn gobgp_ipv4_with_large_community_as_unknown() {
    // GoBGP puts NEXT_HOP last, so this one is not byte-compared.
    let add = Update {
        attributes: PathAttributes {
            origin: Origin::Incomplete,
            as_path: vec![65010, 4_200_000_001],
            next_hop: Some(ip("192.0.2.1")),
            local_pref: Some(300),
            unknown: vec![RawAttribute {
                flags: 0xc0,
                code: 32,
                value: hex("0000fde90000000100000002"),
            }],
            ..Default::default()
        },
        announced: vec![Nlri::Ipv4 {
            prefix: pfx("10.40.0.0/16"),
        }],
        ..Default::default()
    };
    gobgp_update("ipv4_add", &add, false);
    // Re-advertised with the Partial bit (RFC 4271 §5).
    let again = encode(&Message::Update(add), &ctx(true));
    assert!(again.windows(3).any(|w| w == [0xe0, 32, 12]));
    let del = Update {
        withdrawn: vec![Nlri::Ipv4 {
            prefix: pfx("10.40.0.0/16"),
        }],
        ..Default::default()
    };
    gobgp_update("ipv4_del", &del, true);
}

// ---------------------------------------------------------------------------------------------
// Header, OPEN, ROUTE-REFRESH errors
// ---------------------------------------------------------------------------------------------

fn frame(ty: u8, body: &[u8]) -> Vec<u8> {
    message(ty, body)
}

#[test]
fn frame_len_and_header_errors() {
    let ka = encode(&Message::Keepalive, &ctx(true));
    assert_eq!(frame_len(&ka[..10]), Ok(None));
    assert_eq!(frame_len(&ka[..18]), Ok(None));
    assert_eq!(frame_len(&ka), Ok(Some(19)));
    let mut two = ka.clone();
    two.extend_from_slice(&ka);
    assert_eq!(frame_len(&two), Ok(Some(19)));

    let mut bad = ka.clone();
    bad[3] = 0;
    assert_eq!(frame_len(&bad[..5]).unwrap_err(), Notification::new(1, 1));
    let mut bad = ka.clone();
    bad[16..18].copy_from_slice(&18u16.to_be_bytes());
    assert_eq!(
        frame_len(&bad).unwrap_err(),
        Notification {
            code: 1,
            subcode: 2,
            data: vec![0, 18]
        }
    );
    bad[16..18].copy_from_slice(&5000u16.to_be_bytes());
    assert_eq!(frame_len(&bad).unwrap_err().subcode, 2);
    let mut bad = ka.clone();
    bad[18] = 7;
    assert_eq!(
        frame_len(&bad).unwrap_err(),
        Notification {
            code: 1,
            subcode: 3,
            data: vec![7]
        }
    );
    // KEEPALIVE must be exactly 19 bytes; UPDATE at least 23.
    let long_ka = frame(4, &[0]);
    assert_eq!(frame_len(&long_ka).unwrap_err().subcode, 2);
    let short_update = frame(2, &[0, 0]);
    assert_eq!(
        decode(&short_update, &ctx(true)),
        Err(DecodeError::Reset(Notification {
            code: 1,
            subcode: 2,
            data: vec![0, 21]
        }))
    );
    // A buffer that is not exactly one frame.
    assert!(matches!(
        decode(&two, &ctx(true)),
        Err(DecodeError::Reset(Notification {
            code: 1,
            subcode: 2,
            ..
        }))
    ));
}

#[test]
fn open_errors() {
    let good = encode(
        &Message::Open(Open {
            asn: 65001,
            hold_time: 90,
            router_id: ip("192.0.2.1"),
            families: vec![Family::Vpnv4],
            four_octet_as: true,
            route_refresh: true,
            graceful_restart: None,
        }),
        &ctx(true),
    );
    let reset = |b: &[u8]| match decode(b, &ctx(true)) {
        Err(DecodeError::Reset(n)) => n,
        other => panic!("expected a reset, got {other:?}"),
    };
    let mut b = good.clone();
    b[19] = 3;
    assert_eq!(
        reset(&b),
        Notification {
            code: 2,
            subcode: 1,
            data: vec![0, 4]
        }
    );
    let mut b = good.clone();
    b[22..24].copy_from_slice(&2u16.to_be_bytes());
    assert_eq!(reset(&b).subcode, 6);
    let mut b = good.clone();
    b[24..28].copy_from_slice(&[0, 0, 0, 0]);
    assert_eq!(reset(&b).subcode, 3);
    // Optional parameter type 9 (not Capabilities).
    let mut b = good.clone();
    b[29] = 9;
    assert_eq!(
        reset(&b),
        Notification {
            code: 2,
            subcode: 4,
            data: vec![9]
        }
    );
    // Optional Parameters Length past the message.
    let mut b = good.clone();
    b[28] += 1;
    assert_eq!(reset(&b).code, 2);
}

#[test]
fn route_refresh_errors() {
    let b = frame(5, &[0, 1, 0, 128, 0]);
    assert_eq!(
        decode(&b, &ctx(true)),
        Err(DecodeError::Reset(Notification {
            code: 7,
            subcode: 1,
            data: b.clone()
        }))
    );
    // IPv6 unicast: ignored.
    assert!(matches!(
        decode(&frame(5, &[0, 2, 0, 1]), &ctx(true)),
        Err(DecodeError::AttributeDiscard { update, .. }) if update == Update::default()
    ));
}

// ---------------------------------------------------------------------------------------------
// RFC 7606
// ---------------------------------------------------------------------------------------------

/// One attribute.
fn a(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![];
    if flags & 0x10 != 0 {
        v.extend_from_slice(&[flags, code]);
        v.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        v.extend_from_slice(&[flags, code, value.len() as u8]);
    }
    v.extend_from_slice(value);
    v
}

/// An UPDATE frame from raw parts.
fn upd(withdrawn: &[u8], attrs: &[Vec<u8>], nlri: &[u8]) -> Vec<u8> {
    let attrs: Vec<u8> = attrs.concat();
    update_message(withdrawn, &attrs, nlri)
}

fn origin() -> Vec<u8> {
    a(0x40, 1, &[0])
}
fn as_path4() -> Vec<u8> {
    a(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xe9])
}
fn next_hop() -> Vec<u8> {
    a(0x40, 3, &[192, 0, 2, 1])
}
/// NLRI 10.1.0.0/24.
const NLRI: &[u8] = &[24, 10, 1, 0];
/// Withdrawn 10.9.0.0/16.
const WITHDRAWN: &[u8] = &[16, 10, 9];

fn d(b: &[u8]) -> Result<Message, DecodeError> {
    decode(b, &ctx(true))
}

fn nlri_24() -> Nlri {
    Nlri::Ipv4 {
        prefix: pfx("10.1.0.0/24"),
    }
}

/// Expect treat-as-withdraw of exactly `withdrawn`, with a reason containing `why`.
fn expect_withdraw(b: &[u8], withdrawn: Vec<Nlri>, why: &str) {
    match d(b) {
        Err(DecodeError::TreatAsWithdraw { update, reason }) => {
            assert_eq!(
                update,
                Update {
                    withdrawn,
                    ..Default::default()
                }
            );
            assert!(reason.contains(why), "reason {reason:?} lacks {why:?}");
        }
        other => panic!("expected treat-as-withdraw ({why}), got {other:?}"),
    }
}

fn expect_reset(b: &[u8], code: u8, subcode: u8) -> Notification {
    match d(b) {
        Err(DecodeError::Reset(n)) => {
            assert_eq!((n.code, n.subcode), (code, subcode), "{n:?}");
            n
        }
        other => panic!("expected reset {code}/{subcode}, got {other:?}"),
    }
}

fn expect_discard(b: &[u8], why: &str) -> Update {
    match d(b) {
        Err(DecodeError::AttributeDiscard { update, reason }) => {
            assert!(reason.contains(why), "reason {reason:?} lacks {why:?}");
            update
        }
        other => panic!("expected attribute discard ({why}), got {other:?}"),
    }
}

#[test]
fn rfc7606_fields_that_hide_the_nlri_reset_the_session() {
    // Withdrawn Routes Length past the message (RFC 4271 §6.3, RFC 7606 §5.1).
    let mut b = upd(WITHDRAWN, &[origin(), as_path4(), next_hop()], NLRI);
    b[19..21].copy_from_slice(&200u16.to_be_bytes());
    expect_reset(&b, 3, 1);
    // Total Attribute Length past the message.
    let mut b = upd(&[], &[origin(), as_path4(), next_hop()], NLRI);
    b[21..23].copy_from_slice(&200u16.to_be_bytes());
    expect_reset(&b, 3, 1);
    // Bad prefix in NLRI / withdrawn routes (RFC 7606 §5.3): Invalid Network Field.
    expect_reset(
        &upd(
            &[],
            &[origin(), as_path4(), next_hop()],
            &[33, 10, 1, 0, 0, 0],
        ),
        3,
        10,
    );
    expect_reset(&upd(&[24, 10], &[], &[]), 3, 10);
    expect_reset(
        &upd(&[], &[origin(), as_path4(), next_hop()], &[24, 10, 1]),
        3,
        10,
    );
}

#[test]
fn rfc7606_treat_as_withdraw() {
    let good = [origin(), as_path4(), next_hop()];
    let with = |i: usize, attr: Vec<u8>| {
        let mut v = good.to_vec();
        v[i] = attr;
        v
    };
    let withdrawn_too = vec![
        Nlri::Ipv4 {
            prefix: pfx("10.9.0.0/16"),
        },
        nlri_24(),
    ];
    // §7.1 ORIGIN: undefined value, wrong length.
    expect_withdraw(
        &upd(WITHDRAWN, &with(0, a(0x40, 1, &[3])), NLRI),
        withdrawn_too.clone(),
        "ORIGIN",
    );
    expect_withdraw(
        &upd(&[], &with(0, a(0x40, 1, &[0, 0])), NLRI),
        vec![nlri_24()],
        "ORIGIN",
    );
    // §7.2 AS_PATH: zero-length segment, overrun, bad segment type.
    expect_withdraw(
        &upd(&[], &with(1, a(0x40, 2, &[2, 0])), NLRI),
        vec![nlri_24()],
        "AS_PATH",
    );
    expect_withdraw(
        &upd(&[], &with(1, a(0x40, 2, &[2, 2, 0, 0, 0xfd, 0xe9])), NLRI),
        vec![nlri_24()],
        "AS_PATH",
    );
    expect_withdraw(
        &upd(&[], &with(1, a(0x40, 2, &[7, 1, 0, 0, 0xfd, 0xe9])), NLRI),
        vec![nlri_24()],
        "AS_PATH",
    );
    // 2-octet AS_PATH read in a 4-octet session does not line up.
    expect_withdraw(
        &upd(
            &[],
            &with(1, a(0x40, 2, &[2, 3, 0xfd, 0xe9, 0xfd, 0xea, 0xfd, 0xeb])),
            NLRI,
        ),
        vec![nlri_24()],
        "AS_PATH",
    );
    // §7.3 NEXT_HOP length.
    expect_withdraw(
        &upd(&[], &with(2, a(0x40, 3, &[192, 0, 2, 1, 0])), NLRI),
        vec![nlri_24()],
        "NEXT_HOP",
    );
    // §7.4 MED, §7.5 LOCAL_PREF, §7.8 COMMUNITIES, §7.9 ORIGINATOR_ID, §7.10 CLUSTER_LIST,
    // §7.14 EXTENDED COMMUNITIES: length errors.
    for (attr, why) in [
        (a(0x80, 4, &[0, 0, 1]), "MULTI_EXIT_DISC"),
        (a(0x40, 5, &[0, 100]), "LOCAL_PREF"),
        (a(0xc0, 8, &[0, 0, 0, 1, 2]), "COMMUNITIES"),
        (a(0xc0, 8, &[]), "COMMUNITIES"),
        (a(0x80, 9, &[1, 2, 3]), "ORIGINATOR_ID"),
        (a(0x80, 10, &[1, 2, 3, 4, 5, 6]), "CLUSTER_LIST"),
        (a(0xc0, 16, &[0; 12]), "EXTENDED_COMMUNITIES"),
        (a(0xc0, 22, &[0, 6, 0]), "PMSI_TUNNEL"),
        // RFC 8092 §6: LARGE_COMMUNITY not a multiple of 12 (or empty).
        (a(0xc0, 32, &[0; 13]), "LARGE_COMMUNITY"),
        (a(0xc0, 32, &[]), "LARGE_COMMUNITY"),
    ] {
        let mut attrs = good.to_vec();
        attrs.push(attr);
        expect_withdraw(&upd(&[], &attrs, NLRI), vec![nlri_24()], why);
    }
    // A well-formed LARGE_COMMUNITY is kept, to be passed on as it came.
    let mut attrs = good.to_vec();
    attrs.push(a(0xc0, 32, &[0, 0, 0xfd, 0xe8, 0, 0, 0, 1, 0, 0, 0, 2]));
    match d(&upd(&[], &attrs, NLRI)) {
        Ok(Message::Update(u)) => assert!(u.attributes.unknown.iter().any(|r| r.code == 32 && r.value.len() == 12), "{u:?}"),
        other => panic!("a good LARGE_COMMUNITY: {other:?}"),
    }
    // §3 c: flags in conflict (ORIGIN marked optional, MED marked well-known).
    expect_withdraw(
        &upd(&[], &with(0, a(0xc0, 1, &[0])), NLRI),
        vec![nlri_24()],
        "flags",
    );
    let mut attrs = good.to_vec();
    attrs.push(a(0x40, 4, &[0, 0, 0, 1]));
    expect_withdraw(&upd(&[], &attrs, NLRI), vec![nlri_24()], "MULTI_EXIT_DISC");
    // §3 d: missing well-known mandatory attributes.
    expect_withdraw(
        &upd(&[], &[as_path4(), next_hop()], NLRI),
        vec![nlri_24()],
        "missing ORIGIN",
    );
    expect_withdraw(
        &upd(&[], &[origin(), next_hop()], NLRI),
        vec![nlri_24()],
        "missing AS_PATH",
    );
    expect_withdraw(
        &upd(&[], &[origin(), as_path4()], NLRI),
        vec![nlri_24()],
        "missing NEXT_HOP",
    );
    // §4: the last attribute overruns Total Attribute Length; NLRI found through it.
    let mut attrs: Vec<u8> = good.concat();
    attrs.extend_from_slice(&[0x80, 4, 4, 0, 0]); // MED claims 4 bytes, 2 left
    let b = update_message(&[], &attrs, NLRI);
    expect_withdraw(&b, vec![nlri_24()], "overruns");
    let mut attrs: Vec<u8> = good.concat();
    attrs.extend_from_slice(&[0x80, 4]); // header cut short
    expect_withdraw(
        &update_message(&[], &attrs, NLRI),
        vec![nlri_24()],
        "overruns",
    );
}

#[test]
fn rfc7606_treat_as_withdraw_mp_reach() {
    // A malformed ORIGIN beside an EVPN MP_REACH: the EVPN routes are withdrawn.
    let c = ctx(true);
    let good = Update {
        attributes: PathAttributes {
            next_hop: Some(ip("192.0.2.1")),
            ..Default::default()
        },
        announced: evpn_routes(),
        ..Default::default()
    };
    let bytes = encode(&Message::Update(good), &c);
    let mut bad = bytes.clone();
    // Attributes start at 23; ORIGIN is first: [0x40, 1, 1, 0].
    assert_eq!(&bad[23..27], &[0x40, 1, 1, 0]);
    bad[26] = 9;
    expect_withdraw(&bad, evpn_routes(), "ORIGIN");
    // Missing ORIGIN / AS_PATH with MP_REACH NLRI; NEXT_HOP is not needed (RFC 4760 §3).
    let mp = bytes[23 + 4 + 3..].to_vec(); // past ORIGIN and the empty AS_PATH: MP_REACH onwards
    let only_mp = update_message(&[], &mp, &[]);
    match d(&only_mp) {
        Err(DecodeError::TreatAsWithdraw { update, reason }) => {
            assert_eq!(update.withdrawn, evpn_routes());
            assert!(
                reason.contains("missing ORIGIN")
                    && reason.contains("missing AS_PATH")
                    && !reason.contains("NEXT_HOP")
            );
        }
        other => panic!("{other:?}"),
    }
    // An EVPN MP_REACH with an IPv6 next hop: carrier cannot use it.
    let mut nlri = vec![];
    encode_nlri(&evpn_routes()[2], &mut nlri);
    let mut v = vec![0, 25, 70, 16];
    v.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    v.extend_from_slice(&nlri);
    expect_withdraw(
        &upd(&[], &[origin(), as_path4(), a(0x80, 14, &v)], &[]),
        vec![evpn_routes()[2].clone()],
        "IPv6",
    );
}

#[test]
fn rfc7606_attribute_discard() {
    let good = vec![origin(), as_path4(), next_hop()];
    let expected = Update {
        attributes: PathAttributes {
            as_path: vec![65001],
            next_hop: Some(ip("192.0.2.1")),
            ..Default::default()
        },
        announced: vec![nlri_24()],
        ..Default::default()
    };
    // §7.6 ATOMIC_AGGREGATE with a value, §7.7 AGGREGATOR of the wrong length.
    for (attr, why) in [
        (a(0x40, 6, &[1]), "ATOMIC_AGGREGATE"),
        (a(0xc0, 7, &[0, 1, 2, 3, 4]), "AGGREGATOR"),
    ] {
        let mut attrs = good.clone();
        attrs.push(attr);
        assert_eq!(expect_discard(&upd(&[], &attrs, NLRI), why), expected);
    }
    // Well-formed ones are fine (and not modelled).
    let mut attrs = good.clone();
    attrs.push(a(0x40, 6, &[]));
    attrs.push(a(0xc0, 7, &[0, 0, 0xfd, 0xe9, 192, 0, 2, 1]));
    assert_eq!(
        d(&upd(&[], &attrs, NLRI)),
        Ok(Message::Update(expected.clone()))
    );
    // §3 g: a duplicate attribute is dropped, the first one kept.
    let mut attrs = good.clone();
    attrs.push(a(0x80, 4, &[0, 0, 0, 5]));
    attrs.push(a(0x80, 4, &[0, 0, 0, 6]));
    let u = expect_discard(&upd(&[], &attrs, NLRI), "duplicate MULTI_EXIT_DISC");
    assert_eq!(u.attributes.med, Some(5));
    // A malformed attribute in an UPDATE with no NLRI at all: nothing to withdraw.
    assert_eq!(
        expect_discard(&upd(&[], &[a(0x40, 1, &[7])], &[]), "ORIGIN"),
        Update::default()
    );
    // ... but withdrawals in it are still applied.
    expect_withdraw(
        &upd(WITHDRAWN, &[a(0x40, 1, &[7])], &[]),
        vec![Nlri::Ipv4 {
            prefix: pfx("10.9.0.0/16"),
        }],
        "ORIGIN",
    );
}

#[test]
fn rfc7606_unknown_attributes() {
    let good = vec![origin(), as_path4(), next_hop()];
    // Unknown optional transitive: kept (RFC 4271 §5).
    let mut attrs = good.clone();
    attrs.push(a(0xc0, 99, &[1, 2, 3]));
    let Ok(Message::Update(u)) = d(&upd(&[], &attrs, NLRI)) else {
        panic!()
    };
    assert_eq!(
        u.attributes.unknown,
        vec![RawAttribute {
            flags: 0xc0,
            code: 99,
            value: vec![1, 2, 3]
        }]
    );
    // Unknown optional non-transitive: quietly ignored.
    let mut attrs = good.clone();
    attrs.push(a(0x80, 99, &[1, 2, 3]));
    let Ok(Message::Update(u)) = d(&upd(&[], &attrs, NLRI)) else {
        panic!()
    };
    assert!(u.attributes.unknown.is_empty());
    // Unknown well-known: reset 3/2 with the attribute as data.
    let mut attrs = good.clone();
    attrs.push(a(0x40, 99, &[1, 2, 3]));
    let n = expect_reset(&upd(&[], &attrs, NLRI), 3, 2);
    assert_eq!(n.data, vec![0x40, 99, 3, 1, 2, 3]);
    // Extended-length flag on an unknown attribute longer than 255 bytes.
    let mut attrs = good.clone();
    attrs.push(a(0xd0, 99, &[7; 300]));
    let Ok(Message::Update(u)) = d(&upd(&[], &attrs, NLRI)) else {
        panic!()
    };
    assert_eq!(u.attributes.unknown[0].value.len(), 300);
    let again = encode(&Message::Update(u), &ctx(true));
    assert!(again.windows(4).any(|w| w == [0xf0, 99, 1, 44]));
}

#[test]
fn rfc7606_mp_attribute_errors_reset() {
    let c = ctx(true);
    let vpn = Update {
        attributes: PathAttributes {
            next_hop: Some(ip("192.0.2.1")),
            ..Default::default()
        },
        announced: vec![Nlri::Vpnv4 {
            rd: rd("65001:10"),
            label: LabelField::mpls(100),
            prefix: pfx("10.20.0.0/24"),
        }],
        ..Default::default()
    };
    let good = encode(&Message::Update(vpn), &c);
    assert!(d(&good).is_ok());
    let mp_at = good.windows(2).position(|w| w == [0x80, 14]).unwrap();
    // §7.11: next hop length 4 for VPNv4.
    let mut v = vec![0, 1, 128, 4, 192, 0, 2, 1, 0];
    v.extend_from_slice(&good[mp_at + 3 + 5 + 12..]);
    expect_reset(
        &upd(&[], &[origin(), as_path4(), a(0x80, 14, &v)], &[]),
        3,
        1,
    );
    // NLRI cut short inside MP_REACH.
    let mut v = good[mp_at + 3..].to_vec();
    v.pop();
    expect_reset(
        &upd(&[], &[origin(), as_path4(), a(0x80, 14, &v)], &[]),
        3,
        1,
    );
    // MP_REACH too short.
    expect_reset(
        &upd(&[], &[origin(), as_path4(), a(0x80, 14, &[0, 1, 128])], &[]),
        3,
        1,
    );
    // MP_UNREACH: truncated EVPN route, and too short.
    expect_reset(
        &upd(&[], &[a(0x80, 15, &[0, 25, 70, 3, 17, 0, 0])], &[]),
        3,
        1,
    );
    expect_reset(&upd(&[], &[a(0x80, 15, &[0, 25])], &[]), 3, 1);
    // §3 g: MP_REACH / MP_UNREACH twice.
    let unreach = a(0x80, 15, &[0, 1, 128]);
    expect_reset(&upd(&[], &[unreach.clone(), unreach], &[]), 3, 1);
    // MP_REACH overrunning the attribute list.
    let mut attrs = origin();
    attrs.extend_from_slice(&[0x80, 14, 50, 0, 1, 128]);
    expect_reset(&update_message(&[], &attrs, &[]), 3, 1);
    // An MP_REACH of a family carrier does not speak is ignored.
    let v6 = a(
        0x80,
        14,
        &[
            0, 2, 1, 16, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 32, 0x20, 1,
            0xd, 0xb8,
        ],
    );
    assert_eq!(
        d(&upd(&[], &[origin(), as_path4(), v6], &[])),
        Ok(Message::Update(Update {
            attributes: PathAttributes {
                as_path: vec![65001],
                ..Default::default()
            },
            ..Default::default()
        }))
    );
}

/// A VPNv4 NLRI with the label fields `labels` (each `label << 4`, plus 1 for bottom of
/// stack, as given), RD 65001:10 and `prefix`.
fn vpnv4_nlri(labels: &[u32], prefix: &str) -> Vec<u8> {
    let p = pfx(prefix);
    let len = p.prefix_len();
    let mut v = vec![u8::try_from(24 * labels.len() + 64).unwrap() + len];
    for l in labels {
        v.extend_from_slice(&l.to_be_bytes()[1..]);
    }
    v.extend_from_slice(&rd("65001:10").0);
    v.extend_from_slice(&p.addr().octets()[..usize::from(len).div_ceil(8)]);
    v
}

/// An UPDATE with ORIGIN, AS_PATH and a VPNv4 MP_REACH (next hop 192.0.2.1) of `nlri`.
fn vpnv4_update(nlri: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![0, 1, 128, 12, 0, 0, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1, 0];
    v.extend_from_slice(&nlri.concat());
    upd(&[], &[origin(), as_path4(), a(0x80, 14, &v)], &[])
}

fn vpn(label: LabelField, prefix: &str) -> Nlri {
    Nlri::Vpnv4 {
        rd: rd("65001:10"),
        label,
        prefix: pfx(prefix),
    }
}

#[test]
fn vpnv4_label_stacks_are_withdrawn_alone() {
    // BIRD 2 sends a static route's two labels although carrier did not send the Multiple
    // Labels capability (RFC 8277 §2.1). The labels are delimited by the bottom-of-stack bit;
    // those routes alone are treated as withdrawn (§2.3), the single-label route of the same
    // UPDATE is announced, the session stays up (no reset).
    let one = vpnv4_nlri(&[(100 << 4) | 1], "10.20.0.0/24");
    let two = vpnv4_nlri(&[200 << 4, (201 << 4) | 1], "10.21.0.0/16");
    // Two labels and a /8: 120 bits, which one label would misread as RD 0:200/201… and a /32.
    let two_short = vpnv4_nlri(&[300 << 4, (301 << 4) | 1], "10.0.0.0/8");
    match d(&vpnv4_update(&[one.clone(), two.clone(), two_short])) {
        Err(DecodeError::RoutesTreatedAsWithdrawn { update, reason }) => {
            assert_eq!(
                update.announced,
                [vpn(LabelField::mpls(100), "10.20.0.0/24")]
            );
            assert_eq!(
                update.withdrawn,
                [
                    vpn(LabelField(200 << 4), "10.21.0.0/16"),
                    vpn(LabelField(300 << 4), "10.0.0.0/8")
                ]
            );
            assert_eq!(update.attributes.next_hop, Some(ip("192.0.2.1")));
            assert_eq!(update.attributes.as_path, [65001]);
            assert!(
                reason.contains("VPNv4 65001:10 10.21.0.0/16 with 2 labels"),
                "{reason}"
            );
            assert!(
                reason.contains("VPNv4 65001:10 10.0.0.0/8 with 2 labels"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Alone in its UPDATE: only that withdrawal.
    match d(&vpnv4_update(&[two])) {
        Err(DecodeError::RoutesTreatedAsWithdrawn { update, .. }) => {
            assert!(update.announced.is_empty(), "{update:?}");
            assert_eq!(
                update.withdrawn,
                [vpn(LabelField(200 << 4), "10.21.0.0/16")]
            );
        }
        other => panic!("{other:?}"),
    }
    // Three labels: the same.
    let three = vpnv4_nlri(&[1000 << 4, 1001 << 4, (1002 << 4) | 1], "10.22.0.0/16");
    assert!(matches!(
        d(&vpnv4_update(&[three])),
        Err(DecodeError::RoutesTreatedAsWithdrawn { update, .. }) if update.withdrawn == [vpn(LabelField(1000 << 4), "10.22.0.0/16")]
    ));
    // Beside a malformed ORIGIN the whole UPDATE is withdrawn (RFC 7606 §7.1), stacks too.
    let mut bad = vpnv4_update(&[
        one.clone(),
        vpnv4_nlri(&[200 << 4, (201 << 4) | 1], "10.21.0.0/16"),
    ]);
    assert_eq!(&bad[23..27], &[0x40, 1, 1, 0]);
    bad[26] = 9;
    expect_withdraw(
        &bad,
        vec![
            vpn(LabelField(200 << 4), "10.21.0.0/16"),
            vpn(LabelField::mpls(100), "10.20.0.0/24"),
        ],
        "ORIGIN",
    );
    // One label without the bottom-of-stack bit and no room for a second (a /16 leaves 16
    // bits after the RD): the single label, as RFC 8277 §2.2 reads it.
    let Ok(Message::Update(u)) = d(&vpnv4_update(&[vpnv4_nlri(&[100 << 4], "10.23.0.0/16")]))
    else {
        panic!()
    };
    assert_eq!(u.announced, [vpn(LabelField(100 << 4), "10.23.0.0/16")]);
    // A withdrawal's label field is one compatibility field (RFC 8277 §2.4), bit clear or not.
    let mut unreach = vec![0, 1, 128];
    unreach.extend_from_slice(&vpnv4_nlri(&[0x80_0000], "10.21.0.0/16"));
    let Ok(Message::Update(u)) = d(&upd(&[], &[a(0x80, 15, &unreach)], &[])) else {
        panic!()
    };
    assert_eq!(u.withdrawn, [vpn(LabelField(0x80_0000), "10.21.0.0/16")]);
    // A stack whose prefix would be longer than 32 bits is still an error: reset 3/1.
    let mut long = vpnv4_nlri(&[(100 << 4) | 1], "10.24.0.0/24");
    long[0] = 24 + 64 + 40;
    long.extend_from_slice(&[0, 0]);
    expect_reset(&vpnv4_update(&[long]), 3, 1);
}

#[test]
fn end_of_rib_markers() {
    for f in [Family::Vpnv4, Family::Evpn] {
        let (afi, safi) = f.afi_safi();
        let a = afi.to_be_bytes();
        let b = upd(&[], &[a_(0x80, 15, &[a[0], a[1], safi])], &[]);
        assert_eq!(d(&b), Ok(Message::Update(Update::end_of_rib(f))));
        assert_eq!(
            encode(&Message::Update(Update::end_of_rib(f)), &ctx(true)),
            b
        );
    }
    // IPv6's End-of-RIB: an empty update, but not a marker carrier knows.
    let b = upd(&[], &[a_(0x80, 15, &[0, 2, 1])], &[]);
    assert_eq!(d(&b), Ok(Message::Update(Update::default())));
}

fn a_(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    a(flags, code, value)
}

#[test]
fn as4_path_from_an_old_speaker() {
    // RFC 6793 §4.2.3: AS_PATH [65001, AS_TRANS, 65002] + AS4_PATH [4200000001, 65002].
    let as_path = a(0x40, 2, &[2, 3, 0xfd, 0xe9, 0x5b, 0xa0, 0xfd, 0xea]);
    let as4 = a(0xc0, 17, &[2, 2, 0xfa, 0x56, 0xea, 0x01, 0, 0, 0xfd, 0xea]);
    let b = upd(
        &[],
        &[origin(), as_path.clone(), next_hop(), as4.clone()],
        NLRI,
    );
    let Ok(Message::Update(u)) = decode(&b, &ctx(false)) else {
        panic!()
    };
    assert_eq!(u.attributes.as_path, vec![65001, 4_200_000_001, 65002]);
    // An AGGREGATOR with a real 2-byte AS: AS4_PATH is ignored.
    let agg = a(0xc0, 7, &[0xfd, 0xe9, 192, 0, 2, 1]);
    let b = upd(&[], &[origin(), as_path, next_hop(), agg, as4], NLRI);
    let Ok(Message::Update(u)) = decode(&b, &ctx(false)) else {
        panic!()
    };
    assert_eq!(u.attributes.as_path, vec![65001, 23456, 65002]);
    // Malformed AS4_PATH: discarded (RFC 6793 §6).
    let b = upd(&[], &[origin(), as4_bad()], NLRI);
    assert!(matches!(
        decode(&b, &ctx(false)),
        Err(DecodeError::TreatAsWithdraw { .. })
    ));
    let b = upd(
        &[],
        &[
            origin(),
            a(0x40, 2, &[2, 1, 0xfd, 0xe9]),
            next_hop(),
            as4_bad(),
        ],
        NLRI,
    );
    expect_discard_ctx(&b, &ctx(false), "AS4_PATH");
}

fn as4_bad() -> Vec<u8> {
    a(0xc0, 17, &[2, 2, 0, 0])
}

fn expect_discard_ctx(b: &[u8], c: &CodecContext, why: &str) {
    match decode(b, c) {
        Err(DecodeError::AttributeDiscard { reason, .. }) => assert!(reason.contains(why)),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// proptest: decode never panics
// ---------------------------------------------------------------------------------------------

/// A frame with a valid header around arbitrary body bytes, to get past the header checks.
fn framed(ty: u8, body: Vec<u8>) -> Vec<u8> {
    let mut body = body;
    body.truncate(MAX_MESSAGE_LEN - HEADER_LEN);
    message(ty, &body)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), four in any::<bool>()) {
        let _ = frame_len(&bytes);
        let _ = decode(&bytes, &ctx(four));
    }

    #[test]
    fn decode_never_panics_on_framed_bodies(ty in 1u8..=5, body in proptest::collection::vec(any::<u8>(), 0..300), four in any::<bool>()) {
        let _ = decode(&framed(ty, body), &ctx(four));
    }

    /// Mutations of well-formed UPDATEs of every family reach deep into the walker.
    #[test]
    fn decode_never_panics_on_mutated_updates(which in 0usize..4, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), four in any::<bool>()) {
        let c = ctx(four);
        let u = match which {
            0 => Update { attributes: full_attributes(four), announced: vec![nlri_24()], withdrawn: vec![nlri_24()], eor: None },
            1 => Update { attributes: full_attributes(four), announced: evpn_routes(), ..Default::default() },
            2 => Update { withdrawn: evpn_routes(), ..Default::default() },
            _ => Update {
                attributes: full_attributes(four),
                announced: vec![Nlri::Vpnv4 { rd: rd("65001:10"), label: LabelField::mpls(100), prefix: pfx("10.20.0.0/24") }],
                ..Default::default()
            },
        };
        let mut b = encode(&Message::Update(u), &c);
        for (at, v) in flips {
            let i = HEADER_LEN + at % (b.len() - HEADER_LEN);
            b[i] = v;
        }
        let _ = decode(&b, &c);
    }
}

#[test]
fn rfc7606_overrun_that_hides_the_mp_attributes_resets() {
    // An attribute whose length runs past Total Attribute Length swallows what follows it. With
    // no NLRI located before it (no classic NLRI or withdrawn routes, no MP_REACH/MP_UNREACH
    // parsed yet), the MP_REACH/MP_UNREACH it may hide cannot be parsed, so treat-as-withdraw
    // is impossible and the session is reset (RFC 7606 §2, last paragraph; §5.1). Before the
    // fix the UPDATE was ignored: a VPN route it replaced or withdrew stayed as it was.
    let c = ctx(true);
    let vpnv4 = Nlri::Vpnv4 {
        rd: rd("65001:10"),
        label: LabelField::mpls(100),
        prefix: pfx("10.20.0.0/24"),
    };
    let vpn = Update {
        attributes: PathAttributes {
            next_hop: Some(ip("192.0.2.1")),
            ..Default::default()
        },
        announced: vec![vpnv4.clone()],
        ..Default::default()
    };
    let good = encode(&Message::Update(vpn), &c);
    let mp_at = good.windows(2).position(|w| w == [0x80, 14]).unwrap();
    let mp_reach = good[mp_at..].to_vec();
    // 1. LOCAL_PREF claims the MP_REACH and one byte more.
    let mut attrs = origin();
    attrs.extend_from_slice(&[0x40, 5, (mp_reach.len() + 1) as u8]);
    attrs.extend_from_slice(&mp_reach);
    let n = expect_reset(&update_message(&[], &attrs, &[]), 3, 1);
    assert!(n.data.is_empty(), "{n:?}");
    // 2. The same over an MP_UNREACH (a withdrawal that would be lost).
    let mut unreach = vec![0, 1, 128];
    encode_nlri(&vpnv4, &mut unreach);
    let unreach = a(0x80, 15, &unreach);
    let mut attrs = vec![0x80, 4, (unreach.len() + 1) as u8];
    attrs.extend_from_slice(&unreach);
    expect_reset(&update_message(&[], &attrs, &[]), 3, 1);
    // 3. MP_REACH first (RFC 7606 §5.1), then the overrun: its NLRI are located, so
    //    treat-as-withdraw.
    let mut attrs = mp_reach.clone();
    attrs.extend_from_slice(&origin());
    attrs.extend_from_slice(&[0x40, 5, 4, 0, 0]);
    expect_withdraw(&update_message(&[], &attrs, &[]), vec![vpnv4], "overruns");
    // 4. Classic NLRI: located through Total Attribute Length (RFC 7606 §4), treat-as-withdraw.
    let mut attrs = origin();
    attrs.extend_from_slice(&[0x40, 5, 40, 0, 0]);
    expect_withdraw(
        &update_message(&[], &attrs, NLRI),
        vec![nlri_24()],
        "overruns",
    );
    // 5. Fewer octets left than an attribute header: nothing can hide there; an UPDATE with
    //    no NLRI is ignored (RFC 7606 §5.2).
    let mut attrs = origin();
    attrs.extend_from_slice(&[0x40, 5]);
    expect_discard(&update_message(&[], &attrs, &[]), "overruns");
}
