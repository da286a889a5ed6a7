#!/usr/bin/python3
"""Independent check of a golden case's outputs, decoded with scapy.

Usage: /usr/bin/python3 tests/gen/check_case.py <case> <outdir>

Written against scapy 2.5.0 (Debian python3-scapy), Python 3.11. <outdir> holds what
carrier's Replayer wrote for tests/fixtures/<case>/: one <port>.pcap per egress port,
replies.pcap (sent back on the ingress port), to-host.pcap, and counters.json. This script
reads the case's inputs (tests/fixtures/<case>/NN-<port>.pcap) and asserts, frame by frame,
what the RFCs say the router must send: MACs, VLAN tags, addresses, TTLs, checksums
(recomputed by scapy), ICMP errors and their quotes, MPLS label stack entries, VXLAN
headers, ARP replies, and the counters. It exits non-zero with a message at the first
failed assertion, and also when an output is missing or an unexpected one exists.

It shares nothing with the Rust code: decoding is scapy's (or done by hand here, for MPLS
label stack entries), and every expected value is written out below from examples/pe1.toml
(tests/gen/topo.py) and the RFCs.
"""

import json
import logging
import sys
from pathlib import Path

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # no interface/route warnings at import

from scapy.all import ARP, ICMP, IP, UDP, Dot1Q, Ether, RawPcapReader
from scapy.layers.vxlan import VXLAN

from topo import *  # noqa: F403  (the addresses of examples/pe1.toml)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PORTS = ["ce-red", "ce-red2", "ce-blue", "ce-l2", "core0", "core1"]
ETH_IPV4, ETH_ARP, ETH_MPLS, ETH_VLAN = 0x0800, 0x0806, 0x8847, 0x8100
ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
ANY = object()  # a counter not checked


class CheckFailed(Exception):
    pass


def fail(msg):
    raise CheckFailed(msg)


def eq(got, want, what):
    if got != want:
        fail(f"{what}: got {got!r}, expected {want!r}")


def ok(cond, what):
    if not cond:
        fail(what)


def read_pcap(path):
    return [bytes(data) for data, _meta in RawPcapReader(str(path))]


# --- layer checks ------------------------------------------------------------------------


def ether(raw, what, *, src, dst, ethertype, vlan=None):
    """Check the Ethernet header (and 802.1Q tag); returns the offset of the L3 header."""
    ok(len(raw) >= 14, f"{what}: {len(raw)} bytes, shorter than an Ethernet header")
    p = Ether(raw)
    eq(p.dst, dst, f"{what}: Ethernet destination")
    eq(p.src, src, f"{what}: Ethernet source")
    if vlan is None:
        eq(p.type, ethertype, f"{what}: ethertype (untagged)")
        return 14
    eq(p.type, ETH_VLAN, f"{what}: ethertype (802.1Q tag for VLAN {vlan})")
    eq(p[Dot1Q].vlan, vlan, f"{what}: VLAN id")
    eq(p[Dot1Q].type, ethertype, f"{what}: ethertype inside the VLAN tag")
    return 18


def ipv4(raw, what):
    """Parse an IPv4 packet at the start of `raw`; checks version, lengths and the header
    checksum (scapy recomputes it after the field is deleted). Returns (IP, packet bytes)."""
    ok(len(raw) >= 20, f"{what}: {len(raw)} bytes, shorter than an IPv4 header")
    ip = IP(raw)
    eq(ip.version, 4, f"{what}: IP version")
    ok(ip.ihl >= 5, f"{what}: IHL {ip.ihl} < 5")
    ok(ip.len <= len(raw), f"{what}: IP total length {ip.len} > the {len(raw)} bytes present")
    pkt = raw[: ip.len]
    ip = IP(pkt)
    rebuilt = IP(pkt)
    del rebuilt.chksum
    eq(ip.chksum, IP(bytes(rebuilt)).chksum, f"{what}: IPv4 header checksum (vs scapy's)")
    return ip, pkt


def icmp_checksum(icmp_raw, what):
    icmp = ICMP(icmp_raw)
    rebuilt = ICMP(icmp_raw)
    del rebuilt.chksum
    eq(icmp.chksum, ICMP(bytes(rebuilt)).chksum, f"{what}: ICMP checksum (vs scapy's)")
    return icmp


def same_ip(out_pkt, in_pkt, what, *, ttl):
    """The forwarded IPv4 packet is the received one with only TTL (and so the header
    checksum) changed."""
    in_len = IP(in_pkt).len
    eq(len(out_pkt), in_len, f"{what}: IP total length")
    eq(out_pkt[8], ttl, f"{what}: TTL")
    norm = lambda b: b[:8] + b"\0" + b[9:10] + b"\0\0" + b[12:in_len]  # noqa: E731
    eq(norm(out_pkt).hex(), norm(in_pkt).hex(), f"{what}: IPv4 packet apart from TTL and checksum")


def routed(raw, orig, what, *, src, dst, ttl_dec=1, vlan=None, in_off=14):
    """An IPv4 packet routed out of a port: new MACs, TTL decremented, checksum valid,
    everything else as received."""
    off = ether(raw, what, src=src, dst=dst, ethertype=ETH_IPV4, vlan=vlan)
    ip, pkt = ipv4(raw[off:], what)
    o, opkt = ipv4(orig[in_off:], f"{what} (input)")
    ok(len(raw) - off >= ip.len, f"{what}: frame shorter than its IP packet")
    same_ip(pkt, opkt, what, ttl=o.ttl - ttl_dec)
    return ip


def mpls_stack(raw, off, what):
    """Parse label stack entries by hand (RFC 3032 §2.1): label 20 bits, TC 3, S 1, TTL 8.
    Returns ([(label, tc, s, ttl)], offset after the bottom of stack)."""
    stack = []
    while True:
        ok(len(raw) >= off + 4, f"{what}: label stack truncated after {len(stack)} entries")
        w = int.from_bytes(raw[off : off + 4], "big")
        lse = (w >> 12, (w >> 9) & 7, (w >> 8) & 1, w & 0xFF)
        stack.append(lse)
        off += 4
        if lse[2]:
            return stack, off
        ok(len(stack) < 8, f"{what}: no bottom-of-stack bit in 8 entries")


def labelled(raw, what, *, src, dst, stack):
    """A labelled frame: Ethernet with ethertype 0x8847, then exactly `stack` (list of
    (label, tc, s, ttl)). Returns the offset of the payload under the stack."""
    off = ether(raw, what, src=src, dst=dst, ethertype=ETH_MPLS)
    got, off = mpls_stack(raw, off, what)
    eq(got, stack, f"{what}: label stack [(label, tc, s, ttl), ...]")
    return off


def icmp_error(pkt_raw, what, *, src, dst, icmp_type, code, about, ttl=64, rest=b"\0\0\0\0", quoted_ttl=None):
    """An ICMP error (RFC 792, RFC 1812 §4.3.2.3): from `src` to `dst`, quoting the IPv4
    datagram `about` as received: at least its header and 8 bytes of data, no more than
    576 bytes in all. With `quoted_ttl`, the quoted header carries that TTL (a change
    "normally performed in forwarding ... before the error was detected", which RFC 1812
    lets the router leave in) and a checksum valid for it."""
    ip, pkt = ipv4(pkt_raw, what)
    eq(ip.src, src, f"{what}: ICMP error source")
    eq(ip.dst, dst, f"{what}: ICMP error destination")
    eq(ip.proto, 1, f"{what}: protocol")
    eq(ip.ttl, ttl, f"{what}: TTL")
    eq((ip.flags.MF, ip.frag), (0, 0), f"{what}: not a fragment")
    ok(ip.len <= 576, f"{what}: {ip.len} bytes, more than 576 (RFC 1812 §4.3.2.3)")
    icmp_raw = pkt[ip.ihl * 4 :]
    icmp = icmp_checksum(icmp_raw, what)
    eq((icmp.type, icmp.code), (icmp_type, code), f"{what}: ICMP (type, code)")
    eq(icmp_raw[4:8].hex(), rest.hex(), f"{what}: ICMP bytes 4..8")
    quote = icmp_raw[8:]
    o = IP(about)
    orig = about[: o.len]
    need = min(o.ihl * 4 + 8, len(orig))
    ok(len(quote) >= need, f"{what}: quotes {len(quote)} bytes, needs the header and 8 bytes ({need})")
    if quoted_ttl is not None:
        eq(quote[8], quoted_ttl, f"{what}: TTL in the quoted header")
        ipv4(quote[: o.ihl * 4] + b"\0" * (o.len - o.ihl * 4), f"{what}: quoted header")
        quote = quote[:8] + orig[8:9] + quote[9:10] + orig[10:12] + quote[12:]
    eq(quote.hex(), orig[: len(quote)].hex(), f"{what}: quoted datagram (the original as received)")
    return ip


def icmp_echo_reply(pkt_raw, request, what, *, src, dst, ttl=64):
    """An echo reply (RFC 792) to the IPv4 `request`: same id, sequence and data."""
    ip, pkt = ipv4(pkt_raw, what)
    eq((ip.src, ip.dst, ip.proto, ip.ttl), (src, dst, 1, ttl), f"{what}: (src, dst, proto, TTL)")
    icmp_raw = pkt[ip.ihl * 4 :]
    icmp = icmp_checksum(icmp_raw, what)
    req, req_pkt = ipv4(request, f"{what} (request)")
    req_icmp = req_pkt[req.ihl * 4 :]
    eq((icmp.type, icmp.code), (ICMP_ECHO_REPLY, 0), f"{what}: ICMP (type, code)")
    eq(icmp_raw[4:].hex(), req_icmp[4:].hex(), f"{what}: id, sequence and data echoed")
    return ip


def vxlan(raw, what, *, src_mac, dst_mac, src, dst, vni, off=None):
    """A VXLAN frame (RFC 7348): outer IPv4/UDP to port 4789 with a source port from the
    dynamic range, I flag, the VNI, reserved bits zero. Returns the inner frame."""
    if off is None:
        off = ether(raw, what, src=src_mac, dst=dst_mac, ethertype=ETH_IPV4)
    ip, pkt = ipv4(raw[off:], f"{what} outer")
    eq((ip.src, ip.dst, ip.proto), (src, dst, 17), f"{what}: outer (src, dst, protocol)")
    eq((ip.flags.MF, ip.frag), (0, 0), f"{what}: outer not a fragment")
    ok(ip.ttl > 1, f"{what}: outer TTL {ip.ttl}")
    eq(len(raw) - off, ip.len, f"{what}: outer IP length covers the frame")
    udp = UDP(pkt[ip.ihl * 4 :])
    eq(udp.dport, VXLAN_PORT, f"{what}: UDP destination port")
    ok(49152 <= udp.sport <= 65535, f"{what}: UDP source port {udp.sport} not in 49152..65535 (RFC 7348 §5)")
    eq(udp.len, ip.len - ip.ihl * 4, f"{what}: UDP length")
    if udp.chksum != 0:
        rebuilt = IP(pkt)
        del rebuilt[UDP].chksum
        eq(udp.chksum, IP(bytes(rebuilt))[UDP].chksum, f"{what}: UDP checksum (zero or valid)")
    vx_raw = pkt[ip.ihl * 4 + 8 : ip.ihl * 4 + 16]
    vx = VXLAN(vx_raw)
    eq(vx_raw[0], 0x08, f"{what}: VXLAN flags (I only)")
    eq(vx_raw[1:4].hex() + vx_raw[7:8].hex(), "00000000", f"{what}: VXLAN reserved bits")
    eq(vx.vni, vni, f"{what}: VNI")
    return pkt[ip.ihl * 4 + 16 :]


def arp_reply(raw, what, *, src_mac, dst_mac, sender_mac, sender_ip, target_mac, target_ip, vlan=None):
    off = ether(raw, what, src=src_mac, dst=dst_mac, ethertype=ETH_ARP, vlan=vlan)
    a = ARP(raw[off:])
    eq((a.hwtype, a.ptype, a.hwlen, a.plen), (1, 0x0800, 6, 4), f"{what}: ARP Ethernet/IPv4 header")
    eq(a.op, 2, f"{what}: ARP operation (reply)")
    eq((a.hwsrc, a.psrc), (sender_mac, sender_ip), f"{what}: ARP sender (MAC, IP)")
    eq((a.hwdst, a.pdst), (target_mac, target_ip), f"{what}: ARP target (MAC, IP)")


def arp_request(raw, what, *, src_mac, sender_ip, target_ip, vlan=None):
    off = ether(raw, what, src=src_mac, dst=BROADCAST, ethertype=ETH_ARP, vlan=vlan)
    a = ARP(raw[off:])
    eq((a.hwtype, a.ptype, a.hwlen, a.plen), (1, 0x0800, 6, 4), f"{what}: ARP Ethernet/IPv4 header")
    eq(a.op, 1, f"{what}: ARP operation (request)")
    eq((a.hwsrc, a.psrc), (src_mac, sender_ip), f"{what}: ARP sender (MAC, IP)")
    eq(a.pdst, target_ip, f"{what}: ARP target IP")


# --- a run -------------------------------------------------------------------------------


class Run:
    """The inputs and outputs of one case. `out`/`replies` hand out output frames and mark
    the file as expected; `counters` checks counters.json and that nothing else was sent."""

    def __init__(self, case, outdir):
        self.case = case
        self.outdir = Path(outdir)
        fixture = FIXTURES / case
        ok(fixture.is_dir(), f"no fixture directory {fixture}")
        self.steps = []
        for p in sorted(fixture.glob("[0-9][0-9]-*.pcap")):
            self.steps.append((p.stem.split("-", 1)[1], read_pcap(p)))
        ok(self.steps, f"{fixture}: no NN-<port>.pcap inputs")
        ok(self.outdir.is_dir(), f"output directory {self.outdir} does not exist")
        self.files = {}
        for p in sorted(self.outdir.iterdir()):
            if p.name == "counters.json":
                continue
            ok(p.suffix == ".pcap", f"unexpected output file {p.name}")
            self.files[p.stem] = read_pcap(p)
        cj = self.outdir / "counters.json"
        ok(cj.is_file(), "counters.json is missing")
        self.json = json.loads(cj.read_text())
        self.taken = set()
        self.reply_ports = []

    def input(self, step, n):
        """Input frame `n` (from 1) of step `step` (from 1)."""
        return self.steps[step - 1][1][n - 1]

    def out(self, name, count):
        """The frames sent on port `name` (or `replies`, `to-host`); exactly `count`."""
        ok(name not in self.taken, f"{name}.pcap checked twice")
        frames = self.files.get(name)
        ok(frames is not None, f"{name}.pcap is missing: expected {count} frames there")
        eq(len(frames), count, f"number of frames in {name}.pcap")
        self.taken.add(name)
        return frames

    def replies(self, *ports):
        """Replies (sent back on their ingress port), one port name per reply, in order."""
        frames = self.out("replies", len(ports))
        self.reply_ports = list(ports)
        return frames

    def counters(self, *, drops=None, to_host=None, vrfs=None, vrf_drops=None, labels_in=None, labels_out=None, events=None):
        """counters.json, exactly:
        - per port: rx from the inputs, tx from the outputs (packets and bytes), to_host, and
          `drops` {port: {reason: n}} (ports not named have none);
        - `vrfs` {vrf: lookups (packets)}; `vrf_drops` {vrf: drops} when given;
        - `labels_in`/`labels_out` {label: packets or (packets, bytes)} (none when not given;
          ANY skips the check);
        - `events` {name: n}.
        Every mismatch is reported at once. Fails first on output files no check took."""
        extra = sorted(set(self.files) - self.taken)
        ok(not extra, f"unexpected outputs: {', '.join(n + '.pcap' for n in extra)} "
           f"({', '.join(f'{n}: {len(self.files[n])} frames' for n in extra)})")
        c = self.json
        eq(sorted(c), ["events", "labels_in", "labels_out", "ports", "vrfs"], "counters.json sections")
        eq(sorted(c["ports"]), sorted(PORTS), "counters.json ports")
        ok(set(drops or {}) <= set(PORTS), f"unknown ports in expected drops: {drops}")
        problems = []

        def check(got, want, what):
            if got != want:
                problems.append(f"{what}: got {got!r}, expected {want!r}")

        for port in PORTS:
            pc = c["ports"][port]
            ins = [f for p, frames in self.steps if p == port for f in frames]
            check(pc["rx"], {"packets": len(ins), "bytes": sum(map(len, ins))}, f"{port} rx")
            outs = list(self.files.get(port, []))
            outs += [f for f, p in zip(self.files.get("replies", []), self.reply_ports) if p == port]
            check(pc["tx"], {"packets": len(outs), "bytes": sum(map(len, outs))}, f"{port} tx")
            check(pc["to_host"], (to_host or {}).get(port, 0), f"{port} to_host")
            check(pc["drops"], (drops or {}).get(port, {}), f"{port} drops by reason")
        check(sum((to_host or {}).values()), len(self.files.get("to-host", [])), "to_host vs frames in to-host.pcap")
        if vrfs is not None:
            check({name: v["lookups"]["packets"] for name, v in c["vrfs"].items()}, vrfs, "VRF lookups (packets)")
        if vrf_drops is not None:
            check({name: v["drops"] for name, v in c["vrfs"].items()}, vrf_drops, "VRF drops")
        for key, want in (("labels_in", labels_in), ("labels_out", labels_out)):
            if want is ANY:
                continue
            want = want or {}
            got = c[key]
            check(sorted(map(int, got)), sorted(want), f"{key}: labels")
            for label, w in want.items():
                g = got.get(str(label), {"packets": 0, "bytes": 0})
                if isinstance(w, tuple):
                    check((g["packets"], g["bytes"]), w, f"{key}[{label}] (packets, bytes)")
                else:
                    check(g["packets"], w, f"{key}[{label}] packets")
        check(c["events"], events or {}, "events")
        ok(not problems, "\n  ".join(["counters.json differs:"] + problems))

# --- cases -------------------------------------------------------------------------------

CASES = {}


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn

    return register


@case("vrf-forward")
def vrf_forward(r):
    # ce-red -> 10.3.0.2 on ce-red2: router MAC of ce-red2 -> the neighbour's, TTL - 1.
    red2 = r.out("ce-red2", 4)
    for i, n in enumerate([1, 7, 8, 9]):
        routed(red2[i], r.input(1, n), f"ce-red2 frame {i + 1} (input {n})", src=CE_RED2_MAC, dst=RED2_HOST_MAC)
    te, unreach = r.replies("ce-red", "ce-red")
    off = ether(te, "time exceeded", src=CE_RED_MAC, dst=RED_HOST_MAC, ethertype=ETH_IPV4)
    icmp_error(te[off:], "time exceeded", src=CE_RED_IP, dst=RED_HOST, icmp_type=ICMP_TIME_EXCEEDED, code=0, about=r.input(1, 2)[14:])
    off = ether(unreach, "net unreachable", src=CE_RED_MAC, dst=RED_HOST_MAC, ethertype=ETH_IPV4)
    icmp_error(unreach[off:], "net unreachable", src=CE_RED_IP, dst=RED_HOST, icmp_type=ICMP_UNREACH, code=0, about=r.input(1, 4)[14:])
    r.counters(
        drops={"ce-red": {"ttl-expired": 1, "blackhole": 1, "no-route": 1, "anti-spoof": 2}},
        # one lookup per packet, one more per ICMP error routed back
        vrfs={"red": 11, "blue": 0},
        events={"icmp-time-exceeded": 1, "icmp-unreachable": 1},
    )


@case("mpls-push")
def mpls_push(r):
    core = r.out("core0", 4)
    # (input, stack): uniform TTL mode — label TTL = IP TTL after the decrement; TC = IP
    # precedence (RFC 3270 §2.3.1 style default mapping); S only on the VPN label.
    want = [
        (1, [(1000, 0, 1, 63)]),
        (2, [(300, 0, 0, 63), (1001, 0, 1, 63)]),
        (3, [(1000, 5, 1, 9)]),
        (4, [(300, 5, 0, 199), (1001, 5, 1, 199)]),
    ]
    for frame, (n, stack) in zip(core, want):
        what = f"core0 frame for input {n}"
        off = labelled(frame, what, src=CORE0_MAC, dst=P0_MAC, stack=stack)
        ip, pkt = ipv4(frame[off:], what)
        orig = r.input(1, n)[14:]
        same_ip(pkt, orig, what, ttl=IP(orig).ttl - 1)
        eq(len(frame), off + ip.len, f"{what}: frame length")
    (te,) = r.replies("ce-red")
    off = ether(te, "time exceeded", src=CE_RED_MAC, dst=RED_HOST_MAC, ethertype=ETH_IPV4)
    icmp_error(te[off:], "time exceeded", src=CE_RED_IP, dst=RED_HOST, icmp_type=ICMP_TIME_EXCEEDED, code=0, about=r.input(1, 5)[14:])
    r.counters(
        drops={"ce-red": {"ttl-expired": 1}},
        vrfs={"red": 6, "blue": 0},
        # bytes of labelled frames are checked in the counters case
        labels_out={1000: 2, 1001: 2, 300: 2},
        events={"icmp-time-exceeded": 1},
    )


@case("local-ce-to-ce")
def local_ce_to_ce(r):
    red2 = r.out("ce-red2", 2)
    routed(red2[0], r.input(1, 1), "ce-red2 frame 1", src=CE_RED2_MAC, dst=RED2_HOST_MAC)
    routed(red2[1], r.input(1, 2), "ce-red2 frame 2 (TCP, TTL 5)", src=CE_RED2_MAC, dst=RED2_HOST_MAC)
    (red,) = r.out("ce-red", 1)
    routed(red, r.input(2, 1), "ce-red frame (from ce-red2)", src=CE_RED_MAC, dst=RED_HOST_MAC)
    te, echo = r.replies("ce-red2", "ce-red2")
    off = ether(te, "time exceeded", src=CE_RED2_MAC, dst=RED2_HOST_MAC, ethertype=ETH_IPV4)
    icmp_error(te[off:], "time exceeded", src=CE_RED2_IP, dst=RED2_HOST, icmp_type=ICMP_TIME_EXCEEDED, code=0, about=r.input(2, 2)[14:])
    off = ether(echo, "echo reply", src=CE_RED2_MAC, dst=RED2_HOST_MAC, ethertype=ETH_IPV4)
    icmp_echo_reply(echo[off:], r.input(2, 3)[14:], "echo reply from ce-red's address", src=CE_RED_IP, dst=RED2_HOST)
    r.counters(
        drops={"ce-red2": {"ttl-expired": 1}},
        vrfs={"red": 7, "blue": 0},
        events={"icmp-time-exceeded": 1, "icmp-echo-reply": 1},
    )


def popped(frame, orig, what, *, dst_mac, ttl, src_mac=CE_RED_MAC, vlan=None):
    """An IPv4 packet that arrived under a label stack, sent untagged (or tagged `vlan`)
    to a CE: the inner packet with only its TTL changed."""
    off = ether(frame, what, src=src_mac, dst=dst_mac, ethertype=ETH_IPV4, vlan=vlan)
    _, in_off = mpls_stack(orig, 14, f"{what} (input)")
    ip, pkt = ipv4(frame[off:], what)
    same_ip(pkt, ipv4(orig[in_off:], f"{what} (input)")[1], what, ttl=ttl)
    eq(len(frame), off + ip.len, f"{what}: frame length")


def inner_ip(raw, step, n):
    """The IPv4 packet under the label stack of input `n` of `step`."""
    frame = raw.input(step, n)
    _, off = mpls_stack(frame, 14, f"input {step}.{n}")
    return frame[off:]


@case("mpls-pop")
def mpls_pop(r):
    red = r.out("ce-red", 4)
    # uniform mode (RFC 3443 §3.1): IP TTL = min(IP TTL, label TTL - 1)
    popped(red[0], r.input(1, 1), "label 100, label TTL 60", dst_mac=RED_HOST_MAC, ttl=59)
    popped(red[1], r.input(1, 2), "label 100, IP TTL 30", dst_mac=RED_HOST_MAC, ttl=30)
    popped(red[2], r.input(1, 3), "per-CE label 101", dst_mac=RED_HOST_MAC, ttl=63)
    popped(red[3], r.input(1, 9), "label 100 TC 3, label TTL 10", dst_mac=RED_HOST_MAC, ttl=9)

    # Label TTL expiring at the egress PE: time exceeded from VRF red (its first address),
    # routed back to the sender over red's route to 10.2.0.0/24: label 1000 toward pe2.
    te6, te10 = r.replies("core0", "core0")
    for frame, n, dst in ((te6, 6, "10.2.0.5"), (te10, 10, "10.2.0.6")):
        what = f"time exceeded for input {n}"
        off = labelled(frame, what, src=CORE0_MAC, dst=P0_MAC, stack=[(1000, 0, 1, 64)])
        icmp_error(frame[off:], what, src=CE_RED_IP, dst=dst, icmp_type=ICMP_TIME_EXCEEDED, code=0, about=inner_ip(r, 1, n))

    core = r.out("core0", 4)
    # transit swap 500 -> 600: TTL - 1, TC and S kept, payload untouched, toward pe2
    for frame, n, stack in ((core[0], 1, [(600, 2, 1, 63)]), (core[2], 3, [(600, 0, 0, 19), (1234, 0, 1, 20)])):
        what = f"swapped input 2.{n}"
        off = labelled(frame, what, src=CORE0_MAC, dst=P0_MAC, stack=stack)
        eq(frame[off:].hex(), inner_ip(r, 2, n).hex(), f"{what}: payload under the stack")
    # RFC 3032 §2.3.2: label TTL expired in transit — ICMP time exceeded from the LSR (its
    # router id), under the same stack with the outgoing label, sent on along the LSP.
    for frame, n, stack in ((core[1], 2, [(600, 2, 1, 255)]), (core[3], 4, [(600, 0, 0, 255), (1234, 0, 1, 255)])):
        what = f"transit time exceeded for input 2.{n}"
        off = labelled(frame, what, src=CORE0_MAC, dst=P0_MAC, stack=stack)
        icmp_error(frame[off:], what, src=ROUTER_ID, dst="10.7.0.9", icmp_type=ICMP_TIME_EXCEEDED, code=0, about=inner_ip(r, 2, n), ttl=255)

    r.counters(
        drops={
            "core0": {"mpls-unknown-label": 1, "mpls-bos-expected": 1, "mpls-ttl-expired": 2, "blackhole": 1, "mpls-payload-not-ipv4": 1},
            "core1": {"mpls-ttl-expired": 2},
        },
        vrfs={"red": 6, "blue": 0},
        labels_in={100: 7, 101: 2, 777: 1, 500: 4},
        labels_out={1000: 2, 600: 4},
        events={"icmp-time-exceeded": 4},
    )


@case("mpls-pipe")
def mpls_pipe(r):
    # RFC 3443 pipe model: labels pushed with TTL 255, IP TTL decremented once by each PE.
    core = r.out("core0", 2)
    for frame, n, stack, ttl in ((core[0], 1, [(1000, 0, 1, 255)], 63), (core[1], 2, [(300, 0, 0, 255), (1001, 0, 1, 255)], 9)):
        what = f"pushed input {n}"
        off = labelled(frame, what, src=CORE0_MAC, dst=P0_MAC, stack=stack)
        same_ip(ipv4(frame[off:], what)[1], r.input(1, n)[14:], what, ttl=ttl)
    red = r.out("ce-red", 2)
    popped(red[0], r.input(2, 1), "label 100 TTL 5", dst_mac=RED_HOST_MAC, ttl=63)
    popped(red[1], r.input(2, 2), "per-CE label 101", dst_mac=RED_HOST_MAC, ttl=63)
    for frame, n, dst in zip(r.replies("core0", "core0"), (3, 4), ("10.2.0.5", "10.2.0.6")):
        what = f"time exceeded for input 2.{n}"
        off = labelled(frame, what, src=CORE0_MAC, dst=P0_MAC, stack=[(1000, 0, 1, 255)])
        icmp_error(frame[off:], what, src=CE_RED_IP, dst=dst, icmp_type=ICMP_TIME_EXCEEDED, code=0, about=inner_ip(r, 2, n))
    r.counters(
        drops={"core0": {"ttl-expired": 2}},
        vrfs={"red": 6, "blue": 0},
        labels_in={100: 2, 101: 2},
        labels_out={1000: 3, 1001: 1, 300: 1},
        events={"icmp-time-exceeded": 2},
    )


@case("mpls-reserved")
def mpls_reserved(r):
    core = r.out("core0", 2)
    # Implicit null (RFC 3032 §2.1) is never put on the wire: toward pe2 the packet leaves
    # unlabelled (ethertype IPv4), toward pe3 with the transport label alone, which then is
    # the bottom of the stack.
    routed(core[0], r.input(1, 1), "implicit null toward pe2", src=CORE0_MAC, dst=P0_MAC)
    off = labelled(core[1], "implicit null over transport 300", src=CORE0_MAC, dst=P0_MAC, stack=[(300, 0, 1, 63)])
    same_ip(ipv4(core[1][off:], "implicit null over transport 300")[1], r.input(1, 2)[14:], "implicit null over transport 300", ttl=63)
    # Explicit null alone over IPv4 (RFC 4182): popped, routed in the underlay toward pe2 —
    # back out core0, where it came from (the replay files such frames with the replies).
    (back,) = r.replies("core0")
    routed(back, r.input(2, 2), "explicit null over IPv4", src=CORE0_MAC, dst=P0_MAC, in_off=18)
    # Explicit null over label 100: popped, then 100 pops into red (uniform: min(IP, label - 1)).
    red = r.out("ce-red", 2)
    popped(red[0], r.input(2, 1), "explicit null over label 100", dst_mac=RED_HOST_MAC, ttl=59)
    popped(red[1], r.input(2, 3), "two explicit nulls over label 100", dst_mac=RED_HOST_MAC, ttl=63)
    r.counters(
        vrfs={"red": 4, "blue": 0},
        labels_in={100: 2},
        labels_out={300: 1},
    )


@case("vrf-isolation")
def vrf_isolation(r):
    core = r.out("core0", 2)
    for frame, (step, n), label in ((core[0], (1, 1), 2000), (core[1], (3, 1), 1000)):
        what = f"VPN frame from input {step}.{n}"
        off = labelled(frame, what, src=CORE0_MAC, dst=P0_MAC, stack=[(label, 0, 1, 63)])
        same_ip(ipv4(frame[off:], what)[1], r.input(step, n)[14:], what, ttl=63)
    (blue,) = r.out("ce-blue", 1)
    popped(blue, r.input(2, 1), "label 200", src_mac=CE_BLUE_MAC, dst_mac=BLUE_HOST_MAC, ttl=63)
    (red,) = r.out("ce-red", 1)
    popped(red, r.input(2, 2), "label 100", dst_mac=RED_HOST_MAC, ttl=63)

    u2, arp, u5, u8 = r.replies("ce-blue", "ce-blue", "ce-blue", "core0")
    for frame, n in ((u2, 2), (u5, 5)):
        what = f"unreachable for blue input {n}"
        off = ether(frame, what, src=CE_BLUE_MAC, dst=BLUE_HOST_MAC, ethertype=ETH_IPV4)
        icmp_error(frame[off:], what, src=CE_RED_IP, dst=BLUE_HOST, icmp_type=ICMP_UNREACH, code=0, about=r.input(1, n)[14:])
    arp_reply(arp, "blue proxy ARP for 10.2.0.5", src_mac=CE_BLUE_MAC, dst_mac=BLUE_HOST_MAC, sender_mac=CE_BLUE_MAC,
              sender_ip="10.2.0.5", target_mac=BLUE_HOST_MAC, target_ip=BLUE_HOST)
    # blue's label to a red-only address: the error stays in blue, over blue's label 2000
    off = labelled(u8, "unreachable for label 200", src=CORE0_MAC, dst=P0_MAC, stack=[(2000, 0, 1, 64)])
    icmp_error(u8[off:], "unreachable for label 200", src=CE_RED_IP, dst="10.2.0.5", icmp_type=ICMP_UNREACH, code=0, about=inner_ip(r, 2, 3),
               quoted_ttl=63)  # uniform mode: min(IP TTL 64, label TTL 64 - 1), set at the pop
    r.counters(
        drops={"ce-blue": {"arp-not-answered": 1, "no-route": 2}, "core0": {"no-route": 1}},
        vrfs={"red": 2, "blue": 8},
        labels_in={200: 2, 100: 1},
        labels_out={2000: 2, 1000: 1},
        events={"arp-reply-proxy": 1, "icmp-unreachable": 3},  # the blue host is a static neighbour: nothing learned
    )


def vxlan_to(frame, what, vtep, vni, inner):
    """VXLAN from our VTEP to `vtep` out core0: plain IPv4 to pe2, under transport label 300
    (label TTL = outer IP TTL, TC 0) to pe3. Checks the inner frame is `inner`."""
    if vtep == PE3:
        off = labelled(frame, what, src=CORE0_MAC, dst=P0_MAC, stack=[(300, 0, 1, IP(frame[18:]).ttl)])
    else:
        off = ether(frame, what, src=CORE0_MAC, dst=P0_MAC, ethertype=ETH_IPV4)
    got = vxlan(frame, what, src_mac=CORE0_MAC, dst_mac=P0_MAC, src=VTEP, dst=vtep, vni=vni, off=off)
    eq(got.hex(), inner.hex(), f"{what}: inner frame unchanged")


def outer_dst(frame):
    off = 18 if Ether(frame).type == ETH_MPLS else 14
    return IP(frame[off:]).dst


@case("vxlan")
def vxlan_case(r):
    core = r.out("core0", 7)
    # 1. head-end replication of the broadcast to both VTEPs of the flood list (either order)
    flood = sorted(core[0:2], key=outer_dst)
    eq([outer_dst(f) for f in flood], [PE2, PE3], "flooded ARP request: one copy per VTEP")
    for f in flood:
        vxlan_to(f, f"flood of input 1.1 to {outer_dst(f)}", outer_dst(f), BD_VNI, r.input(1, 1))
    # 2. known remote MAC: one copy, to pe2
    vxlan_to(core[2], "input 2.1 to a MAC behind pe2", PE2, BD_VNI, r.input(2, 1))
    # 4. unknown unicast: flooded
    flood = sorted(core[3:5], key=outer_dst)
    eq([outer_dst(f) for f in flood], [PE2, PE3], "flooded unknown unicast: one copy per VTEP")
    for f in flood:
        vxlan_to(f, f"flood of input 2.3 to {outer_dst(f)}", outer_dst(f), BD_VNI, r.input(2, 3))
    # 11. EVPN type-5: VNI 5000 to pe2; inner Ethernet to pe2's router MAC from ours (the
    # first core port's MAC by default), inner IP routed (TTL - 1)
    inner = vxlan(core[5], "type-5 route 10.5.0.0/24", src_mac=CORE0_MAC, dst_mac=P0_MAC, src=VTEP, dst=PE2, vni=L3_VNI)
    routed(inner, r.input(4, 1), "type-5 inner frame", src=CORE0_MAC, dst=ROUTER_MAC_PE2)
    eq(len(inner), 14 + IP(inner[14:]).len, "type-5 inner frame length")
    # 12. to the MAC learned from VXLAN (input 3.4) behind pe2
    vxlan_to(core[6], "input 5.1 to a MAC learned behind pe2", PE2, BD_VNI, r.input(5, 1))

    # 3. ARP suppression: answered from the EVPN binding, as if by 02:ee:00:00:00:09
    (sup,) = r.replies("ce-l2")
    arp_reply(sup, "ARP suppression for 10.100.0.9", src_mac=REMOTE_L2_MAC, dst_mac=L2_HOST_MAC,
              sender_mac=REMOTE_L2_MAC, sender_ip=REMOTE_L2_IP, target_mac=L2_HOST_MAC, target_ip=L2_HOST)

    # decapsulated VNI 100 frames: the inner frame byte for byte
    l2 = r.out("ce-l2", 2)
    for frame, n in ((l2[0], 1), (l2[1], 4)):
        vx = r.input(3, n)
        eq(frame.hex(), vx[14 + 20 + 8 + 8 :].hex(), f"ce-l2: inner frame of VXLAN input 3.{n}")
    # L3 VNI 5000: routed in red to 10.1.0.2
    (red,) = r.out("ce-red", 1)
    routed(red, r.input(3, 2), "L3 VNI 5000 to ce-red", src=CE_RED_MAC, dst=RED_HOST_MAC, in_off=14 + 20 + 8 + 8 + 14)

    r.counters(
        drops={"core0": {"vxlan-unknown-vni": 1, "bridge-split-horizon": 1, "vxlan-malformed": 1}, "ce-l2": {"bridge-hairpin": 1}},
        vrfs={"red": 2, "blue": 0},
        labels_out={300: 2},
        # MACs learned: the host on ce-l2, 02:ee:..:09 and 02:ee:..:0a from VXLAN, 02:ee:..:11
        events={"replicated": 2, "mac-learned": 4, "arp-suppressed": 1},
    )


@case("proxy-arp")
def proxy_arp(r):
    replies = r.replies(*["ce-red"] * 6, "core0")
    for frame, n, ip in zip(replies, (1, 2, 5, 8), ("10.2.0.5", CE_RED_IP, RED2_HOST, "10.5.0.5")):
        arp_reply(frame, f"ARP reply for {ip} (input {n})", src_mac=CE_RED_MAC, dst_mac=RED_HOST_MAC,
                  sender_mac=CE_RED_MAC, sender_ip=ip, target_mac=RED_HOST_MAC, target_ip=RED_HOST)
    arp_reply(replies[4], "ARP reply to a unicast request", src_mac=CE_RED_MAC, dst_mac="02:aa:00:00:00:44",
              sender_mac=CE_RED_MAC, sender_ip=CE_RED_IP, target_mac="02:aa:00:00:00:44", target_ip="10.1.0.4")
    arp_reply(replies[5], "ARP reply to an off-subnet sender", src_mac=CE_RED_MAC, dst_mac="02:aa:00:00:00:55",
              sender_mac=CE_RED_MAC, sender_ip=CE_RED_IP, target_mac="02:aa:00:00:00:55", target_ip="10.50.0.1")
    arp_reply(replies[6], "ARP reply on core0", src_mac=CORE0_MAC, dst_mac=P0_MAC,
              sender_mac=CORE0_MAC, sender_ip=CORE0_IP, target_mac=P0_MAC, target_ip=P0_IP)
    learned, glean = r.out("ce-red", 2)
    routed(learned, r.input(2, 1), "to the neighbour learned from an ARP reply", src=CE_RED_MAC, dst="02:aa:00:00:00:33")
    arp_request(glean, "ARP request for an unknown neighbour", src_mac=CE_RED_MAC, sender_ip=CE_RED_IP, target_ip="10.1.0.99")
    r.counters(
        drops={"ce-red": {"arp-not-answered": 4}, "ce-red2": {"neighbour-miss": 1}, "core0": {"arp-not-answered": 1}},
        vrfs={"red": 2, "blue": 0},
        # learned: 10.1.0.3 and 10.1.0.4 on ce-red (10.1.0.2 on ce-red and 192.0.2.2 on core0 are
        # static neighbours with the same MAC: confirmed, not learned)
        events={"arp-reply-proxy": 3, "arp-reply-own": 4, "neighbour-learned": 2, "arp-request-sent": 1},
    )


@case("icmp-echo")
def icmp_echo(r):
    replies = r.replies(*["ce-red"] * 4, "core0", "core0", "core0", "ce-blue")
    for frame, n, src in zip(replies, (1, 2, 3, 4), (CE_RED_IP, CE_RED2_IP, CE_RED_IP, CE_RED_IP)):
        what = f"echo reply to input 1.{n}"
        off = ether(frame, what, src=CE_RED_MAC, dst=RED_HOST_MAC, ethertype=ETH_IPV4)
        icmp_echo_reply(frame[off:], r.input(1, n)[14:], what, src=src, dst=RED_HOST)
    for frame, n, src in ((replies[4], 1, CORE0_IP), (replies[5], 2, CORE1_IP)):
        what = f"echo reply to input 2.{n}"
        off = ether(frame, what, src=CORE0_MAC, dst=P0_MAC, ethertype=ETH_IPV4)
        icmp_echo_reply(frame[off:], r.input(2, n)[14:], what, src=src, dst=P0_IP)
    what = "echo reply over the VPN"
    off = labelled(replies[6], what, src=CORE0_MAC, dst=P0_MAC, stack=[(1000, 0, 1, 64)])
    icmp_echo_reply(replies[6][off:], inner_ip(r, 2, 3), what, src=CE_RED_IP, dst="10.2.0.5")
    what = "echo reply in blue"
    off = ether(replies[7], what, src=CE_BLUE_MAC, dst=BLUE_HOST_MAC, ethertype=ETH_IPV4)
    icmp_echo_reply(replies[7][off:], r.input(3, 1)[14:], what, src=CE_RED_IP, dst=BLUE_HOST)
    host = r.out("to-host", 2)
    for frame, n in zip(host, (6, 7)):
        eq(frame.hex(), r.input(1, n).hex(), f"to-host: input 1.{n} as received")
    r.counters(
        drops={"ce-red": {"icmp-bad-checksum": 1}},
        to_host={"ce-red": 2},
        # two per echo (request and reply), one per other packet
        vrfs={"red": 13, "blue": 2},
        labels_in={100: 1},
        labels_out={1000: 1},
        events={"icmp-echo-reply": 8},
    )


@case("ecmp")
def ecmp(r):
    port_of = {}
    total = 0
    for port, mac, peer in (("core0", CORE0_MAC, P0_MAC), ("core1", CORE1_MAC, P1_MAC)):
        frames = r.files.get(port, [])
        ok(frames, f"ECMP: no flow on {port}: all 32 flows hashed to one link")
        for i, frame in enumerate(r.out(port, len(frames))):
            what = f"{port} frame {i + 1}"
            off = labelled(frame, what, src=mac, dst=peer, stack=[(1002, 0, 1, 63)])
            ip, pkt = ipv4(frame[off:], what)
            flow = UDP(pkt[ip.ihl * 4 :]).sport - 10000
            ok(0 <= flow < 32, f"{what}: unknown flow")
            same_ip(pkt, r.input(1, flow + 1)[14:], what, ttl=63)
            ok(port_of.setdefault(flow, port) == port, f"ECMP: flow {flow} sent on both core0 and core1")
            total += 1
    eq(total, 64, "ECMP: frames sent")
    eq(sorted(port_of), list(range(32)), "ECMP: flows seen")
    r.counters(vrfs={"red": 64, "blue": 0}, labels_out={1002: 64})


@case("malformed")
def malformed(r):
    r.counters(
        drops={
            "ce-red": {
                "eth-truncated": 1, "ipv4-bad-checksum": 1, "ipv4-malformed": 4, "unknown-ethertype": 1,
                "l2-not-for-us": 1, "l2-multicast": 1, "mpls-on-customer-port": 1, "vlan-mismatch": 1, "arp-malformed": 1,
            },
            "core0": {"mpls-malformed": 1, "ipv4-malformed": 1, "udp-malformed": 1, "vxlan-malformed": 1, "ipv4-bad-checksum": 1},
            "ce-l2": {"bad-source-mac": 1, "eth-truncated": 1},
        },
        vrfs={"red": 0, "blue": 0},
        labels_in={100: 2},
    )


@case("counters")
def counters(r):
    # The frames, briefly (other cases check them in depth).
    (red2,) = r.out("ce-red2", 1)
    routed(red2, r.input(1, 1), "routed", src=CE_RED2_MAC, dst=RED2_HOST_MAC)
    core = r.out("core0", 4)
    labelled(core[0], "two labels", src=CORE0_MAC, dst=P0_MAC, stack=[(300, 0, 0, 63), (1001, 0, 1, 63)])
    labelled(core[1], "one label", src=CORE0_MAC, dst=P0_MAC, stack=[(1000, 0, 1, 63)])
    flood = sorted(core[2:4], key=outer_dst)
    eq([outer_dst(f) for f in flood], [PE2, PE3], "flooded ARP request: one copy per VTEP")
    for f in flood:
        vxlan_to(f, f"flood to {outer_dst(f)}", outer_dst(f), BD_VNI, r.input(3, 1))
    (red,) = r.out("ce-red", 1)
    popped(red, r.input(2, 1), "label 100", dst_mac=RED_HOST_MAC, ttl=63)
    te, glean, swapped = r.replies("ce-red", "ce-red", "core0")
    arp_request(glean, "ARP request for 10.1.0.99", src_mac=CE_RED_MAC, sender_ip=CE_RED_IP, target_ip="10.1.0.99")
    off = ether(te, "time exceeded", src=CE_RED_MAC, dst=RED_HOST_MAC, ethertype=ETH_IPV4)
    icmp_error(te[off:], "time exceeded", src=CE_RED_IP, dst=RED_HOST, icmp_type=ICMP_TIME_EXCEEDED, code=0, about=r.input(1, 4)[14:])
    labelled(swapped, "swapped (back out of core0)", src=CORE0_MAC, dst=P0_MAC, stack=[(600, 0, 1, 63)])

    # Strict counters: per-port rx/tx packets and bytes (from the pcaps, in Run.counters),
    # label counters in packets and bytes of the whole frame as received or sent
    # (PacketBytes: "Bytes (the whole frame)"), and VRF drops for every packet dropped after
    # it entered the VRF — also the ones answered with an ICMP error or an ARP request.
    r.counters(
        drops={"ce-red": {"ttl-expired": 1, "blackhole": 1, "neighbour-miss": 1}},
        vrfs={"red": 8, "blue": 0},
        vrf_drops={"red": 3, "blue": 0},
        labels_in={100: (1, len(r.input(2, 1))), 500: (1, len(r.input(2, 2)))},
        labels_out={
            300: (2, len(core[0]) + len(flood[1])),
            1001: (1, len(core[0])),
            1000: (1, len(core[1])),
            600: (1, len(swapped)),
        },
        events={"icmp-time-exceeded": 1, "arp-request-sent": 1, "replicated": 1, "mac-learned": 1},
    )


@case("mtu")
def mtu(r):
    (red2,) = r.out("ce-red2", 1)
    routed(red2, r.input(1, 1), "1500 bytes, exactly the MTU", src=CE_RED2_MAC, dst=RED2_HOST_MAC)
    (core,) = r.out("core0", 1)
    off = labelled(core, "1496 bytes + a label", src=CORE0_MAC, dst=P0_MAC, stack=[(1000, 0, 1, 63)])
    eq(len(core) - off + 4, 1500, "labelled packet size")
    # RFC 1191 §4, RFC 1812 §5.2.7.1, RFC 3032 §3: DF set and too big once labelled —
    # destination unreachable, fragmentation needed, next-hop MTU = link MTU - label stack.
    frag3, frag4 = r.replies("ce-red", "ce-red")
    for frame, n, mtu_ in ((frag3, 3, 1496), (frag4, 4, 1492)):
        what = f"fragmentation needed for input {n}"
        off = ether(frame, what, src=CE_RED_MAC, dst=RED_HOST_MAC, ethertype=ETH_IPV4)
        icmp_error(frame[off:], what, src=CE_RED_IP, dst=RED_HOST, icmp_type=ICMP_UNREACH, code=4,
                   about=r.input(1, n)[14:], rest=b"\0\0" + mtu_.to_bytes(2, "big"))
    r.counters(
        drops={"ce-red": {"mtu-exceeded": 2}},
        vrfs={"red": 6, "blue": 0},
        labels_out=ANY,  # whether labels of packets dropped for their size count is not this case's business
        events={"icmp-unreachable": 2},
    )


@case("vlan-ports")
def vlan_ports(r):
    (red2,) = r.out("ce-red2", 1)
    routed(red2, r.input(1, 1), "VLAN 10 -> VLAN 20", src=CE_RED2_MAC, dst=RED2_HOST_MAC, vlan=20, in_off=18)
    core = r.out("core0", 2)
    off = labelled(core[0], "VLAN 10 -> core0 untagged", src=CORE0_MAC, dst=P0_MAC, stack=[(1000, 0, 1, 63)])
    same_ip(ipv4(core[0][off:], "labelled")[1], r.input(1, 2)[18:], "labelled", ttl=63)
    # the bridge port's tag is not carried over VXLAN
    inner = r.input(3, 1)
    untagged = inner[:12] + inner[16:]
    vxlan_to(core[1], "tagged bridge frame over VXLAN", PE2, BD_VNI, untagged)
    arp, echo = r.replies("ce-red", "ce-red")
    arp_reply(arp, "ARP reply on VLAN 10", src_mac=CE_RED_MAC, dst_mac=RED_HOST_MAC, sender_mac=CE_RED_MAC,
              sender_ip=CE_RED_IP, target_mac=RED_HOST_MAC, target_ip=RED_HOST, vlan=10)
    off = ether(echo, "echo reply on VLAN 10", src=CE_RED_MAC, dst=RED_HOST_MAC, ethertype=ETH_IPV4, vlan=10)
    icmp_echo_reply(echo[off:], r.input(1, 6)[18:], "echo reply on VLAN 10", src=CE_RED_IP, dst=RED_HOST)
    (red,) = r.out("ce-red", 1)
    popped(red, r.input(2, 1), "label 100 -> VLAN 10", dst_mac=RED_HOST_MAC, ttl=63, vlan=10)
    (l2,) = r.out("ce-l2", 1)
    vx_inner = r.input(4, 1)[14 + 20 + 8 + 8 :]
    eq(l2.hex(), (vx_inner[:12] + bytes.fromhex("8100001e") + vx_inner[12:]).hex(), "decapsulated frame, tagged VLAN 30")
    r.counters(
        drops={"ce-red": {"vlan-mismatch": 2}},
        vrfs={"red": 5, "blue": 0},
        labels_in={100: 1},
        labels_out={1000: 1},
        events={"arp-reply-own": 1, "icmp-echo-reply": 1, "mac-learned": 2},  # the red host is static
    )


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: check_case.py <case> <outdir>")
    case_name, outdir = argv
    check = CASES.get(case_name)
    if check is None:
        sys.exit(f"check_case.py: no checks for case {case_name!r} (known: {', '.join(sorted(CASES))})")
    try:
        check(Run(case_name, outdir))
    except CheckFailed as e:
        print(f"FAIL {case_name}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"ok {case_name}")


if __name__ == "__main__":
    main(sys.argv[1:])
