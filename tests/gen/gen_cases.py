#!/usr/bin/python3
"""Input frames of the golden pipeline cases, built with scapy only (never with our encoder).

Generated with scapy 2.5.0 (Debian python3-scapy), Python 3.11.

For each case this writes tests/fixtures/<case>/NN-<port>.pcap: the golden test feeds the
files in lexical order, each on the port named after the dash, through one Replayer (so
learned neighbours and MACs carry over from step to step). The pcaps are committed; rerun
this script only when a case's inputs change:

    /usr/bin/python3 tests/gen/gen_cases.py            # every case
    /usr/bin/python3 tests/gen/gen_cases.py vxlan      # one case

then `CARRIER_UPDATE_GOLDEN=1 cargo test -p carrier-tests --test golden` for the outputs.
What each input must produce is asserted by check_case.py; the comments here say why each
frame is there.
"""

import logging
import sys
from pathlib import Path

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # no interface/route warnings at import

from scapy.all import ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, IPv6, Padding, Raw, RawPcapWriter
from scapy.contrib.mpls import MPLS
from scapy.layers.vxlan import VXLAN
from scapy.layers.inet import IPOption_Router_Alert

from topo import *  # noqa: F403  (the addresses of examples/pe1.toml)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CASES = {}


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn

    return register


def ip_udp(src_mac, dst_mac, src, dst, payload, sport=1024, dport=5000, **ip):
    return Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst, **ip) / UDP(sport=sport, dport=dport) / Raw(payload)


def from_red(dst, payload, **kw):
    """UDP from the red host behind ce-red."""
    return ip_udp(RED_HOST_MAC, CE_RED_MAC, kw.pop("src", RED_HOST), dst, payload, **kw)


# --- cases -------------------------------------------------------------------------------


@case("vrf-forward")
def vrf_forward():
    return [
        (
            "ce-red",
            [
                # 1. routed to ce-red2: MACs rewritten, TTL 64 -> 63
                from_red(RED2_HOST, b"vrf-forward 1"),
                # 2. TTL 1: ICMP time exceeded from 10.1.0.1
                from_red(RED2_HOST, b"vrf-forward 2 ttl 1", ttl=1),
                # 3. blackhole route 10.9.0.0/24
                from_red("10.9.0.5", b"vrf-forward 3 blackhole"),
                # 4. no route: ICMP net unreachable
                from_red("172.16.0.1", b"vrf-forward 4 no route"),
                # 5. anti-spoof: a source red does not route at all
                from_red(RED2_HOST, b"vrf-forward 5 spoofed", src="10.77.0.1"),
                # 6. anti-spoof: a red source that lives behind another port
                from_red("10.2.0.5", b"vrf-forward 6 spoofed", src=RED2_HOST),
                # 7. TCP with an IP option (IHL 6), DSCP and DF: only TTL and checksum change
                Ether(src=RED_HOST_MAC, dst=CE_RED_MAC)
                / IP(src=RED_HOST, dst=RED2_HOST, ttl=2, tos=0x28, flags="DF", id=0x1234, options=[IPOption_Router_Alert()])
                / TCP(sport=40000, dport=80, flags="S", seq=1000)
                / Raw(b"vrf-forward 7"),
                # 8. padded to the Ethernet minimum: the padding is not part of the IP packet
                from_red(RED2_HOST, b"8") / Padding(b"\x00" * 17),
                # 9. broadcast destination MAC is accepted on a routed port
                ip_udp(RED_HOST_MAC, BROADCAST, RED_HOST, RED2_HOST, b"vrf-forward 9 bcast mac"),
            ],
        )
    ]


@case("mpls-push")
def mpls_push():
    return [
        (
            "ce-red",
            [
                # 1. VPN label 1000 toward pe2, directly over core0
                from_red("10.2.0.5", b"mpls-push 1"),
                # 2. VPN label 1001 toward pe3, under transport label 300
                from_red("10.4.0.5", b"mpls-push 2"),
                # 3. IP precedence 5 (tos 0xa0) -> TC 5; TTL 10 -> label TTL 9
                from_red("10.2.0.5", b"mpls-push 3 tc", tos=0xA0, ttl=10),
                # 4. DSCP EF (tos 0xb8, precedence 5) over two labels, TTL 200
                from_red("10.4.0.5", b"mpls-push 4 ef", tos=0xB8, ttl=200),
                # 5. TTL 1 toward the VPN: time exceeded from the PE, nothing labelled
                from_red("10.2.0.5", b"mpls-push 5 ttl 1", ttl=1),
            ],
        )
    ]



def from_core0(stack, payload):
    """A labelled frame from core0's neighbour: stack is [(label, tc, s, ttl)], outermost first."""
    p = Ether(src=P0_MAC, dst=CORE0_MAC, type=0x8847)
    for label, tc, s, ttl in stack:
        p = p / MPLS(label=label, cos=tc, s=s, ttl=ttl)
    return p / payload


def from_core1(stack, payload):
    p = Ether(src=P1_MAC, dst=CORE1_MAC, type=0x8847)
    for label, tc, s, ttl in stack:
        p = p / MPLS(label=label, cos=tc, s=s, ttl=ttl)
    return p / payload


def udp_ip(src, dst, payload, sport=1024, dport=5000, **ip):
    return IP(src=src, dst=dst, **ip) / UDP(sport=sport, dport=dport) / Raw(payload)


def vxlan_in(vni, inner, *, flags=0x08, sport=50000, src=PE2):
    """VXLAN from a remote VTEP to ours, arriving on core0."""
    return (
        Ether(src=P0_MAC, dst=CORE0_MAC)
        / IP(src=src, dst=VTEP, ttl=62)
        / UDP(sport=sport, dport=VXLAN_PORT)
        / VXLAN(flags=flags, vni=vni)
        / inner
    )


def arp_who_has(src_mac, sender, target, *, dst=BROADCAST, op=1, target_mac="00:00:00:00:00:00"):
    return Ether(src=src_mac, dst=dst) / ARP(op=op, hwsrc=src_mac, psrc=sender, hwdst=target_mac, pdst=target)


def ping(src_mac, dst_mac, src, dst, ident, seq, payload, **ip):
    return Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst, **ip) / ICMP(type=8, id=ident, seq=seq) / Raw(payload)


@case("local-ce-to-ce")
def local_ce_to_ce():
    return [
        (
            "ce-red",
            [
                from_red(RED2_HOST, b"ce-to-ce 1"),
                Ether(src=RED_HOST_MAC, dst=CE_RED_MAC) / IP(src=RED_HOST, dst=RED2_HOST, ttl=5) / TCP(sport=33000, dport=22, flags="PA") / Raw(b"ce-to-ce 2"),
            ],
        ),
        (
            "ce-red2",
            [
                # back the other way, to the static neighbour on ce-red
                ip_udp(RED2_HOST_MAC, CE_RED2_MAC, RED2_HOST, RED_HOST, b"ce-to-ce 3"),
                # TTL 1: time exceeded from ce-red2's own address
                ip_udp(RED2_HOST_MAC, CE_RED2_MAC, RED2_HOST, RED_HOST, b"ce-to-ce 4 ttl 1", ttl=1),
                # ping ce-red's address from ce-red2: answered from 10.1.0.1, out ce-red2
                ping(RED2_HOST_MAC, CE_RED2_MAC, RED2_HOST, CE_RED_IP, 7, 1, b"ce-to-ce 5"),
            ],
        ),
    ]


@case("mpls-pop")
def mpls_pop():
    to_red = lambda payload, ttl=64, src="10.2.0.5", dst=RED_HOST: udp_ip(src, dst, payload, ttl=ttl)  # noqa: E731
    return [
        (
            "core0",
            [
                # 1. per-VRF label 100, label TTL 60 < IP TTL 64: IP TTL becomes 59
                from_core0([(100, 0, 1, 60)], to_red(b"pop 1")),
                # 2. label TTL 255 > IP TTL 30: IP TTL stays 30
                from_core0([(100, 0, 1, 255)], to_red(b"pop 2", ttl=30)),
                # 3. per-CE label 101: straight to 10.1.0.2, IP TTL 63
                from_core0([(101, 0, 1, 64)], to_red(b"pop 3")),
                # 4. a label not in the ILM
                from_core0([(777, 0, 1, 64)], to_red(b"pop 4 unknown label")),
                # 5. label 100 without S, over another label
                from_core0([(100, 0, 0, 64), (16, 0, 1, 64)], to_red(b"pop 5 not bottom")),
                # 6. label TTL 1: time exceeded from VRF red, routed back to 10.2.0.5 over label 1000
                from_core0([(100, 0, 1, 1)], to_red(b"pop 6 label ttl 1")),
                # 7. blackhole in red after the pop
                from_core0([(100, 0, 1, 64)], to_red(b"pop 7 blackhole", dst="10.9.0.5")),
                # 8. IPv6 under the bottom label
                from_core0([(100, 0, 1, 64)], IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2) / Raw(b"pop 8 v6")),
                # 9. TC 3, label TTL 10: IP TTL 9, DSCP left alone
                from_core0([(100, 3, 1, 10)], to_red(b"pop 9", ttl=64)),
                # 10. per-CE label with label TTL 1: time exceeded back to 10.2.0.6 over label 1000
                from_core0([(101, 0, 1, 1)], to_red(b"pop 10 label ttl 1", src="10.2.0.6")),
            ],
        ),
        (
            "core1",
            [
                # 11. transit: swap 500 -> 600 toward pe2 (out core0), TTL - 1, TC kept
                from_core1([(500, 2, 1, 64)], udp_ip("10.7.0.9", "10.8.0.1", b"swap 11")),
                # 12. label TTL 1 in transit: ICMP time exceeded under the kept stack (600, TTL 255),
                #     sent on toward pe2 (RFC 3032 §2.3.2)
                from_core1([(500, 2, 1, 1)], udp_ip("10.7.0.9", "10.8.0.1", b"swap 12 ttl 1")),
                # 13. swap of the top label of two: the inner label is untouched
                from_core1([(500, 0, 0, 20), (1234, 0, 1, 20)], udp_ip("10.7.0.9", "10.8.0.1", b"swap 13")),
                # 14. TTL 1 over two labels: both kept, top swapped, TTLs 255
                from_core1([(500, 0, 0, 1), (1234, 0, 1, 7)], udp_ip("10.7.0.9", "10.8.0.1", b"swap 14 ttl 1")),
            ],
        ),
    ]


@case("vrf-isolation")
def vrf_isolation():
    blue = lambda dst, payload, **kw: ip_udp(BLUE_HOST_MAC, CE_BLUE_MAC, BLUE_HOST, dst, payload, **kw)  # noqa: E731
    vpn = lambda dst, payload: udp_ip("10.2.0.5", dst, payload)  # noqa: E731
    return [
        (
            "ce-blue",
            [
                # 1. the same destination as red's: blue's VPN label 2000
                blue("10.2.0.5", b"blue 1"),
                # 2. a red-only prefix: no route in blue, net unreachable from blue's 10.1.0.1
                blue("10.4.0.5", b"blue 2 red-only"),
                # 3. proxy ARP in blue for a red-only prefix: no answer
                arp_who_has(BLUE_HOST_MAC, BLUE_HOST, "10.4.0.5"),
                # 4. proxy ARP in blue for a blue prefix: ce-blue's MAC
                arp_who_has(BLUE_HOST_MAC, BLUE_HOST, "10.2.0.5"),
                # 5. red's ce-red2 subnet is not in blue either
                blue(RED2_HOST, b"blue 5 red-only"),
            ],
        ),
        (
            "core0",
            [
                # 6. blue's label: to blue's 10.1.0.2 (02:bb:...)
                from_core0([(200, 0, 1, 64)], vpn(BLUE_HOST, b"blue 6")),
                # 7. red's label, same inner packet: to red's 10.1.0.2 (02:aa:...)
                from_core0([(100, 0, 1, 64)], vpn(RED_HOST, b"blue 7 red")),
                # 8. blue's label to a red-only address: unreachable, sent back in blue (label 2000)
                from_core0([(200, 0, 1, 64)], vpn(RED2_HOST, b"blue 8 red-only")),
            ],
        ),
        ("ce-red", [from_red("10.2.0.5", b"red 9")]),
    ]


@case("vxlan")
def vxlan():
    l2 = lambda dst, payload: Ether(src=L2_HOST_MAC, dst=dst) / IP(src=L2_HOST, dst="10.100.0.99") / UDP(sport=7, dport=7) / Raw(payload)  # noqa: E731
    return [
        # 1. broadcast ARP request: head-end replication to pe2 (plain IP) and pe3 (whose
        #    underlay route pushes transport label 300)
        ("ce-l2", [arp_who_has(L2_HOST_MAC, L2_HOST, "10.100.0.50")]),
        (
            "ce-l2",
            [
                # 2. a MAC EVPN put behind pe2: one copy, to pe2
                l2(REMOTE_L2_MAC, b"vxlan 2 known"),
                # 3. ARP for a bound address: answered locally (ARP suppression)
                arp_who_has(L2_HOST_MAC, L2_HOST, REMOTE_L2_IP),
                # 4. unknown unicast: flooded like a broadcast
                l2("02:ee:00:00:00:77", b"vxlan 4 unknown unicast"),
            ],
        ),
        (
            "core0",
            [
                # 5. VNI 100 to the MAC learned on ce-l2 in step 1: decapsulated, out ce-l2
                vxlan_in(BD_VNI, Ether(src=REMOTE_L2_MAC, dst=L2_HOST_MAC) / IP(src=REMOTE_L2_IP, dst=L2_HOST) / UDP(sport=9, dport=9) / Raw(b"vxlan 5")),
                # 6. L3 VNI 5000: routed in red, out ce-red
                vxlan_in(L3_VNI, Ether(src=ROUTER_MAC_PE2, dst=CORE0_MAC) / udp_ip("10.5.0.9", RED_HOST, b"vxlan 6 l3")),
                # 7. a VNI nobody maps
                vxlan_in(9999, Ether(src=REMOTE_L2_MAC, dst=L2_HOST_MAC) / Raw(b"vxlan 7 unknown vni")),
                # 8. inner broadcast from a new remote MAC: only to local ports (split horizon)
                vxlan_in(BD_VNI, Ether(src=REMOTE_L2_MAC_B, dst=BROADCAST) / ARP(op=1, hwsrc=REMOTE_L2_MAC_B, psrc="10.100.0.11", pdst=L2_HOST)),
                # 9. inner frame for a MAC behind a VTEP: never sent back to the core
                vxlan_in(BD_VNI, Ether(src=REMOTE_L2_MAC_B, dst=REMOTE_L2_MAC) / Raw(b"vxlan 9 split horizon")),
                # 10. VXLAN without the I flag
                vxlan_in(BD_VNI, Ether(src=REMOTE_L2_MAC, dst=L2_HOST_MAC) / Raw(b"vxlan 10 no I flag"), flags=0),
            ],
        ),
        # 11. red -> 10.5.0.5: EVPN type-5, VNI 5000 to pe2, inner destination its router MAC
        ("ce-red", [from_red("10.5.0.5", b"vxlan 11 type-5")]),
        (
            "ce-l2",
            [
                # 12. to the MAC learned behind pe2 in step 3
                l2(REMOTE_L2_MAC_B, b"vxlan 12 learned remote"),
                # 13. to a MAC behind the ingress port itself
                Ether(src="02:ee:00:00:00:11", dst=L2_HOST_MAC) / Raw(b"vxlan 13 hairpin"),
            ],
        ),
    ]


@case("proxy-arp")
def proxy_arp():
    req = lambda target, **kw: arp_who_has(RED_HOST_MAC, RED_HOST, target, **kw)  # noqa: E731
    return [
        (
            "ce-red",
            [
                req("10.2.0.5"),  # 1. routed elsewhere (MPLS): proxy
                req(CE_RED_IP),  # 2. the port's own address
                req("10.1.0.77"),  # 3. same subnet, same port: the host answers itself
                req(RED_HOST),  # 4. gratuitous ARP
                req(RED2_HOST),  # 5. behind ce-red2: proxy
                req("10.9.0.5"),  # 6. blackhole: no answer
                req("172.16.0.1"),  # 7. no route: no answer
                req("10.5.0.5"),  # 8. routed over VXLAN: proxy
                # 9. an ARP reply from a new host: consumed, neighbour learned
                arp_who_has("02:aa:00:00:00:33", "10.1.0.3", CE_RED_IP, dst=CE_RED_MAC, op=2, target_mac=CE_RED_MAC),
                # 10. a unicast request to the router's MAC from another new host
                arp_who_has("02:aa:00:00:00:44", "10.1.0.4", CE_RED_IP, dst=CE_RED_MAC),
                # 11. a sender outside the port's subnet: answered, not learned
                arp_who_has("02:aa:00:00:00:55", "10.50.0.1", CE_RED_IP),
            ],
        ),
        (
            "ce-red2",
            [
                # 12. to the host learned in 9: its MAC, out ce-red
                ip_udp(RED2_HOST_MAC, CE_RED2_MAC, RED2_HOST, "10.1.0.3", b"arp 12 learned"),
                # 13. to an unknown host: an ARP request out ce-red instead
                ip_udp(RED2_HOST_MAC, CE_RED2_MAC, RED2_HOST, "10.1.0.99", b"arp 13 unknown"),
            ],
        ),
        (
            "core0",
            [
                arp_who_has(P0_MAC, P0_IP, CORE0_IP),  # 14. core0's own address
                arp_who_has(P0_MAC, P0_IP, CORE1_IP),  # 15. core1's address, asked on core0
            ],
        ),
    ]


@case("icmp-echo")
def icmp_echo():
    red = lambda dst, ident, seq, payload, **kw: ping(RED_HOST_MAC, CE_RED_MAC, RED_HOST, dst, ident, seq, payload, **kw)  # noqa: E731
    bad = red(CE_RED_IP, 5, 5, b"bad checksum")
    bad[ICMP].chksum = 0x1234
    return [
        (
            "ce-red",
            [
                red(CE_RED_IP, 0x1234, 1, b"abcdefghijklmnopqrstuvwxyz012345"),  # 1.
                red(CE_RED2_IP, 0x1234, 2, b"the other red port's address"),  # 2.
                red(CE_RED_IP, 0x1234, 3, b"ttl 1 is fine for the router itself", ttl=1),  # 3.
                red(CE_RED_IP, 0xBEEF, 4, b"odd length payload", flags="DF"),  # 4.
                bad,  # 5. a bad ICMP checksum: dropped
                ip_udp(RED_HOST_MAC, CE_RED_MAC, RED_HOST, CE_RED_IP, b"udp to the router"),  # 6. to host
                Ether(src=RED_HOST_MAC, dst=CE_RED_MAC) / IP(src=RED_HOST, dst=CE_RED_IP) / ICMP(type=0, id=1, seq=1),  # 7. to host
            ],
        ),
        (
            "core0",
            [
                ping(P0_MAC, CORE0_MAC, P0_IP, CORE0_IP, 0x42, 1, b"core0"),  # 8.
                ping(P0_MAC, CORE0_MAC, P0_IP, CORE1_IP, 0x42, 2, b"core1 address via core0"),  # 9.
                # 10. from a remote red site over label 100: the reply goes back over label 1000
                from_core0([(100, 0, 1, 64)], IP(src="10.2.0.5", dst=CE_RED_IP) / ICMP(type=8, id=0x77, seq=9) / Raw(b"over the VPN")),
            ],
        ),
        ("ce-blue", [ping(BLUE_HOST_MAC, CE_BLUE_MAC, BLUE_HOST, CE_RED_IP, 0x99, 1, b"blue")]),  # 11.
    ]


@case("ecmp")
def ecmp():
    flows = [from_red(f"10.6.0.{i % 8 + 1}", b"ecmp flow %d" % i, sport=10000 + i) for i in range(32)]
    # each flow twice, in two batches of 32
    return [("ce-red", flows + flows)]


@case("malformed")
def malformed():
    good = from_red(RED2_HOST, b"malformed")
    raw = bytes(good)
    bad_sum = good.copy()
    bad_sum[IP].chksum = 0xDEAD
    too_long = bytearray(raw)
    too_long[16:18] = (len(raw) - 14 + 20).to_bytes(2, "big")  # total length past the frame
    v6_nibble = bytearray(raw)
    v6_nibble[14] = 0x65
    ihl4 = bytearray(raw)
    ihl4[14] = 0x44
    return [
        (
            "ce-red",
            [
                Raw(raw[:10]),  # 1. truncated Ethernet
                bad_sum,  # 2. bad IPv4 header checksum
                Raw(bytes(too_long)),  # 3. total length > frame
                Raw(bytes(v6_nibble)),  # 4. version 6 under ethertype 0x0800
                Ether(src=RED_HOST_MAC, dst=CE_RED_MAC, type=0x88B5) / Raw(b"local experimental"),  # 5.
                ip_udp(RED_HOST_MAC, "02:99:99:99:99:99", RED_HOST, RED2_HOST, b"foreign mac"),  # 6.
                ip_udp(RED_HOST_MAC, "01:00:5e:00:00:01", RED_HOST, RED2_HOST, b"multicast mac"),  # 7.
                Raw(bytes(ihl4)),  # 8. IHL 4
                Ether(src=RED_HOST_MAC, dst=CE_RED_MAC, type=0x8847) / MPLS(label=100, s=1, ttl=64) / udp_ip(RED_HOST, RED2_HOST, b"mpls from a CE"),  # 9.
                Ether(src=RED_HOST_MAC, dst=CE_RED_MAC) / Dot1Q(vlan=10) / udp_ip(RED_HOST, RED2_HOST, b"tagged"),  # 10.
                Raw(bytes(arp_who_has(RED_HOST_MAC, RED_HOST, CE_RED_IP))[:34]),  # 11. ARP cut short
                Raw(raw[:26]),  # 12. IPv4 header cut short
            ],
        ),
        (
            "core0",
            [
                Raw(bytes(Ether(src=P0_MAC, dst=CORE0_MAC, type=0x8847)) + b"\x00\x64"),  # 13. 2 bytes of MPLS
                # 14. under label 100, an IPv4 header that claims more than is there
                Raw(bytes(from_core0([(100, 0, 1, 64)], IP(src="10.2.0.5", dst=RED_HOST, len=100) / Raw(b"short")))),
                # 15. to our VTEP, UDP cut to 4 bytes
                Ether(src=P0_MAC, dst=CORE0_MAC) / IP(src=PE2, dst=VTEP, proto=17) / Raw(b"\x12\xb5\x12\xb5"),
                # 16. VXLAN header cut to 4 bytes
                Ether(src=P0_MAC, dst=CORE0_MAC) / IP(src=PE2, dst=VTEP) / UDP(sport=50000, dport=VXLAN_PORT) / Raw(b"\x08\x00\x00\x00"),
                # 17. under label 100, a bad IPv4 header checksum
                from_core0([(100, 0, 1, 64)], IP(src="10.2.0.5", dst=RED_HOST, chksum=0xBEEF) / UDP() / Raw(b"bad sum")),
            ],
        ),
        (
            "ce-l2",
            [
                Ether(src=BROADCAST, dst=L2_HOST_MAC) / Raw(b"broadcast source"),  # 18.
                Raw(b"\xff" * 6),  # 19. truncated Ethernet on a bridge port
            ],
        ),
    ]


@case("counters")
def counters():
    return [
        (
            "ce-red",
            [
                from_red(RED2_HOST, b"counters 1"),  # routed
                from_red("10.4.0.5", b"counters 2 two labels"),  # labels 300 + 1001
                from_red("10.2.0.5", b"counters 3 one label"),  # label 1000
                from_red(RED2_HOST, b"counters 4 ttl 1", ttl=1),  # time exceeded
                from_red("10.9.0.5", b"counters 5 blackhole"),  # blackhole
                from_red("10.1.0.99", b"counters 6 unknown neighbour"),  # ARP request instead
            ],
        ),
        (
            "core0",
            [
                from_core0([(100, 0, 1, 64)], udp_ip("10.2.0.5", RED_HOST, b"counters 7 pop")),
                from_core0([(500, 0, 1, 64)], udp_ip("10.7.0.9", "10.8.0.1", b"counters 8 swap")),
            ],
        ),
        # 9. flooded to pe2 (plain VXLAN) and pe3 (VXLAN under transport label 300)
        ("ce-l2", [arp_who_has(L2_HOST_MAC, L2_HOST, "10.100.0.50")]),
    ]


@case("mtu")
def mtu():
    big = lambda dst, total, **kw: from_red(dst, b"x" * (total - 28), **kw)  # noqa: E731
    return [
        (
            "ce-red",
            [
                big(RED2_HOST, 1500, flags="DF"),  # 1. exactly the MTU: forwarded
                big("10.2.0.5", 1496, flags="DF"),  # 2. 1496 + a 4-byte label = 1500: forwarded
                big("10.2.0.5", 1500, flags="DF"),  # 3. 1504 labelled, DF: fragmentation needed, MTU 1496
                big("10.4.0.5", 1500, flags="DF"),  # 4. two labels: MTU 1492
            ],
        )
    ]


@case("mpls-pipe")
def mpls_pipe():
    return [
        (
            "ce-red",
            [
                from_red("10.2.0.5", b"pipe 1"),  # label TTL 255, IP TTL 63
                from_red("10.4.0.5", b"pipe 2", ttl=10),  # both labels TTL 255, IP TTL 9
            ],
        ),
        (
            "core0",
            [
                # 3. label TTL 5 does not leak into the IP TTL: 64 -> 63
                from_core0([(100, 0, 1, 5)], udp_ip("10.2.0.5", RED_HOST, b"pipe 3")),
                # 4. per-CE label: IP TTL 64 -> 63
                from_core0([(101, 0, 1, 200)], udp_ip("10.2.0.5", RED_HOST, b"pipe 4")),
                # 5. IP TTL 1 after the pop: time exceeded back over label 1000 (TTL 255)
                from_core0([(100, 0, 1, 64)], udp_ip("10.2.0.5", RED_HOST, b"pipe 5 ttl 1", ttl=1)),
                # 6. the same over the per-CE label
                from_core0([(101, 0, 1, 64)], udp_ip("10.2.0.6", RED_HOST, b"pipe 6 ttl 1", ttl=1)),
            ],
        ),
    ]


@case("mpls-reserved")
def mpls_reserved():
    return [
        (
            "ce-red",
            [
                # 1. route with implicit null toward pe2 (directly over core0): plain IPv4 out core0
                from_red("10.12.0.5", b"reserved 1 implicit null"),
                # 2. implicit null toward pe3, whose underlay route pushes transport label 300:
                #    only 300, with the bottom-of-stack bit
                from_red("10.13.0.5", b"reserved 2 implicit null over transport"),
            ],
        ),
        (
            "core0",
            [
                # 3. explicit null over red's per-VRF label 100: popped, then 100 as usual
                from_core0([(0, 0, 0, 64), (100, 0, 1, 60)], udp_ip("10.2.0.5", RED_HOST, b"reserved 3")),
                # 4. explicit null alone over IPv4 for pe2: routed in the underlay, out core0
                from_core0([(0, 0, 1, 64)], udp_ip("10.7.0.9", "10.255.0.2", b"reserved 4")),
                # 5. two explicit nulls over label 100
                from_core0([(0, 0, 0, 64), (0, 0, 0, 64), (100, 0, 1, 64)], udp_ip("10.2.0.5", RED_HOST, b"reserved 5")),
            ],
        ),
    ]


@case("vlan-ports")
def vlan_ports():
    red = lambda p, vlan=10: Ether(src=RED_HOST_MAC, dst=CE_RED_MAC) / Dot1Q(vlan=vlan) / p  # noqa: E731
    return [
        (
            "ce-red",
            [
                red(udp_ip(RED_HOST, RED2_HOST, b"vlan 1")),  # 1. out ce-red2, tag 20
                red(udp_ip(RED_HOST, "10.2.0.5", b"vlan 2")),  # 2. out core0, untagged, label 1000
                red(ARP(op=1, hwsrc=RED_HOST_MAC, psrc=RED_HOST, pdst=CE_RED_IP)),  # 3. ARP reply, tag 10
                from_red(RED2_HOST, b"vlan 4 untagged"),  # 4. untagged on a tagged port
                red(udp_ip(RED_HOST, RED2_HOST, b"vlan 5 wrong tag"), vlan=20),  # 5. another VLAN
                red(IP(src=RED_HOST, dst=CE_RED_IP) / ICMP(id=1, seq=1) / Raw(b"vlan 6")),  # 6. echo reply, tag 10
            ],
        ),
        # 7. label 100 -> ce-red, tag 10
        ("core0", [from_core0([(100, 0, 1, 64)], udp_ip("10.2.0.5", RED_HOST, b"vlan 7"))]),
        # 8. tagged frame on the bridge port: VXLAN carries it untagged
        ("ce-l2", [Ether(src=L2_HOST_MAC, dst=REMOTE_L2_MAC) / Dot1Q(vlan=30) / udp_ip(L2_HOST, REMOTE_L2_IP, b"vlan 8")]),
        # 9. VXLAN to the MAC learned in 8: out ce-l2 with tag 30
        ("core0", [vxlan_in(BD_VNI, Ether(src=REMOTE_L2_MAC, dst=L2_HOST_MAC) / udp_ip(REMOTE_L2_IP, L2_HOST, b"vlan 9"))]),
    ]


# --- writing -----------------------------------------------------------------------------


def write_case(name, steps):
    d = FIXTURES / name
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("[0-9][0-9]-*.pcap"):
        old.unlink()
    for i, (port, frames) in enumerate(steps, 1):
        path = d / f"{i:02d}-{port}.pcap"
        w = RawPcapWriter(str(path), linktype=1)  # DLT_EN10MB
        w.write_header(None)
        for j, f in enumerate(frames):
            # Fixed timestamps keep the files identical from one run to the next.
            w.write_packet(bytes(f), sec=1_700_000_000 + i, usec=j)
        w.close()
        print(f"{path.relative_to(FIXTURES.parent)}: {len(frames)} frames")


def main(argv):
    names = argv or sorted(CASES)
    for n in names:
        if n not in CASES:
            sys.exit(f"unknown case {n!r}; cases: {', '.join(sorted(CASES))}")
        write_case(n, CASES[n]())


if __name__ == "__main__":
    main(sys.argv[1:])
