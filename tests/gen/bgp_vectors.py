#!/usr/bin/python3
"""Independent BGP wire vectors for control/src/bgp/codec.rs.

Two independent implementations write the bytes the codec's tests decode:

* scapy (Debian python3-scapy 2.5.0, `scapy.contrib.bgp`): OPEN with capabilities, UPDATE
  IPv4 with 2- and 4-octet AS_PATH, KEEPALIVE, NOTIFICATION, ROUTE-REFRESH
  -> control/tests/vectors/scapy.hex
* GoBGP (gobgpd/gobgp 3.10.0, Debian package): a real session over 127.0.0.1. gobgpd connects
  to a tiny listener in this script, which answers the OPEN and records every message gobgpd
  sends while routes are added and deleted with the gobgp CLI (VPNv4, EVPN types 2/3/5, IPv4)
  -> control/tests/vectors/gobgp.hex
* BIRD (bird 2.0.12, Debian bird2): a real iBGP session between two network namespaces this
  script makes and deletes. BIRD connects to the same kind of listener and announces VPNv4
  routes of static protocols: one label, no label (BIRD sends label 3, implicit null) and a
  stack of two labels (sent although the listener has no Multiple Labels capability)
  -> control/tests/vectors/bird.hex

Run as: /usr/bin/python3 tests/gen/bgp_vectors.py [scapy] [gobgp] [bird]
(scapy and GoBGP: loopback only, no root needed; BIRD: root, for `ip netns`)

File format: '#' comments; every other line is `name: hex`. The names are what the Rust tests
look up; when a name repeats (several messages of one step) a `.N` suffix is added.
"""

import ctypes
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "control", "tests", "vectors")


def write_vectors(path, header, items):
    with open(path, "w") as f:
        for line in header:
            f.write(f"# {line}\n")
        seen = {}
        for name, data in items:
            n = seen.get(name, 0)
            seen[name] = n + 1
            key = name if n == 0 else f"{name}.{n}"
            f.write(f"{key}: {bytes(data).hex()}\n")
    print(f"wrote {path} ({len(items)} messages)")


# ---------------------------------------------------------------------------------------------
# scapy
# ---------------------------------------------------------------------------------------------


def scapy_vectors():
    import scapy
    from scapy.contrib import bgp
    from scapy.contrib.bgp import (
        BGPHeader, BGPOpen, BGPOptParam, BGPCapMultiprotocol, BGPCapFourBytesASN,
        BGPCapGeneric, BGPCapGracefulRestart, BGPUpdate, BGPPathAttr, BGPPAOrigin, BGPPAASPath,
        BGPPANextHop, BGPPAMultiExitDisc, BGPPALocalPref, BGPPACommunity, BGPNLRI_IPv4,
        BGPKeepAlive, BGPNotification, BGPRouteRefresh, BGPPAOriginatorID, BGPPAClusterList,
    )

    items = []

    def cap_param(cap):
        return BGPOptParam(param_type=2, param_value=cap)

    gr = BGPCapGracefulRestart(
        restart_flags=0x8, restart_time=120,
        entries=[BGPCapGracefulRestart.GRTuple(afi=1, safi=1, flags=0x80),
                 BGPCapGracefulRestart.GRTuple(afi=1, safi=128, flags=0)],
    )
    open_msg = BGPHeader(type=1) / BGPOpen(
        version=4, my_as=23456, hold_time=90, bgp_id="192.0.2.7",
        opt_params=[
            cap_param(BGPCapMultiprotocol(afi=1, safi=1)),
            cap_param(BGPCapMultiprotocol(afi=1, safi=128)),
            cap_param(BGPCapMultiprotocol(afi=25, safi=70)),
            cap_param(BGPCapMultiprotocol(afi=2, safi=1)),  # IPv6: carrier ignores it
            cap_param(BGPCapGeneric(code=2)),  # route refresh
            cap_param(BGPCapGeneric(code=128)),  # old Cisco route refresh
            cap_param(BGPCapFourBytesASN(asn=4200000001)),
            cap_param(gr),
        ],
    )
    items.append(("open_4byte_as_gr", bytes(open_msg)))

    # UPDATE, 2-octet AS_PATH (scapy's default bgp_module_conf.use_2_bytes_asn = True).
    bgp.bgp_module_conf.use_2_bytes_asn = True
    seg = BGPPAASPath.ASPathSegment(segment_type=2, segment_value=[65002, 65003])
    upd2 = BGPHeader(type=2) / BGPUpdate(
        withdrawn_routes=[BGPNLRI_IPv4(prefix="10.9.0.0/16")],
        path_attr=[
            BGPPathAttr(type_flags=0x40, type_code=1, attribute=BGPPAOrigin(origin=0)),
            BGPPathAttr(type_flags=0x40, type_code=2, attribute=BGPPAASPath(segments=[seg])),
            BGPPathAttr(type_flags=0x40, type_code=3, attribute=BGPPANextHop(next_hop="192.0.2.9")),
            BGPPathAttr(type_flags=0x80, type_code=4, attribute=BGPPAMultiExitDisc(med=50)),
            BGPPathAttr(type_flags=0x40, type_code=5, attribute=BGPPALocalPref(local_pref=200)),
            BGPPathAttr(type_flags=0xC0, type_code=8,
                        attribute=BGPPACommunity(community=0xFDE90064)),
            BGPPathAttr(type_flags=0x80, type_code=9,
                        attribute=BGPPAOriginatorID(originator_id="192.0.2.33")),
            BGPPathAttr(type_flags=0x80, type_code=10,
                        attribute=BGPPAClusterList(cluster_list=[0xC0000221, 0xC0000222])),
        ],
        nlri=[BGPNLRI_IPv4(prefix="10.1.0.0/24"), BGPNLRI_IPv4(prefix="172.16.0.0/12"),
              BGPNLRI_IPv4(prefix="192.0.2.128/25")],
    )
    items.append(("update_ipv4_as2", bytes(upd2)))

    bgp.bgp_module_conf.use_2_bytes_asn = False
    from scapy.contrib.bgp import BGPPAAS4BytesPath
    seg4 = BGPPAAS4BytesPath.ASPathSegment(segment_type=2, segment_value=[65002, 4200000001])
    set4 = BGPPAAS4BytesPath.ASPathSegment(segment_type=1, segment_value=[64512, 64513])
    upd4 = BGPHeader(type=2) / BGPUpdate(
        path_attr=[
            BGPPathAttr(type_flags=0x40, type_code=1, attribute=BGPPAOrigin(origin=2)),
            BGPPathAttr(type_flags=0x40, type_code=2,
                        attribute=BGPPAAS4BytesPath(segments=[seg4, set4])),
            BGPPathAttr(type_flags=0x40, type_code=3, attribute=BGPPANextHop(next_hop="192.0.2.10")),
        ],
        nlri=[BGPNLRI_IPv4(prefix="0.0.0.0/0"), BGPNLRI_IPv4(prefix="198.51.100.1/32")],
    )
    items.append(("update_ipv4_as4", bytes(upd4)))
    bgp.bgp_module_conf.use_2_bytes_asn = True

    items.append(("update_eor_ipv4", bytes(BGPHeader(type=2) / BGPUpdate())))
    items.append(("keepalive", bytes(BGPKeepAlive())))
    items.append(("notification_cease_admin_shutdown",
                  bytes(BGPHeader(type=3) / BGPNotification(error_code=6, error_subcode=2))))
    items.append(("notification_hold_timer", bytes(BGPHeader(type=3) / BGPNotification(error_code=4, error_subcode=0))))
    items.append(("route_refresh_vpnv4", bytes(BGPHeader(type=5) / BGPRouteRefresh(afi=1, safi=128))))
    items.append(("route_refresh_evpn", bytes(BGPHeader(type=5) / BGPRouteRefresh(afi=25, safi=70))))

    write_vectors(os.path.join(OUT, "scapy.hex"),
                  [f"generator: scapy {scapy.VERSION} (Debian python3-scapy), scapy.contrib.bgp",
                   "script: tests/gen/bgp_vectors.py"],
                  items)


# ---------------------------------------------------------------------------------------------
# GoBGP
# ---------------------------------------------------------------------------------------------

GOBGPD = "/usr/bin/gobgpd"
GOBGP = "/usr/bin/gobgp"
LISTEN_PORT = 17179
API_PORT = 50099
ASN = 65001

GOBGP_CONF = f"""
[global.config]
  as = {ASN}
  router-id = "192.0.2.1"
  port = -1

[[neighbors]]
  [neighbors.config]
    neighbor-address = "127.0.0.1"
    peer-as = {ASN}
  [neighbors.transport.config]
    remote-port = {LISTEN_PORT}
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 90
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l3vpn-ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l2vpn-evpn"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"""


def bgp_msg(mtype, body):
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), mtype) + body


def our_open():
    caps = b""
    for afi, safi in ((1, 1), (1, 128), (25, 70)):
        caps += bytes([2, 6, 1, 4]) + struct.pack("!HBB", afi, 0, safi)
    caps += bytes([2, 2, 2, 0])  # route refresh
    caps += bytes([2, 6, 65, 4]) + struct.pack("!I", ASN)
    body = struct.pack("!BHH4sB", 4, ASN, 90, socket.inet_aton("192.0.2.2"), len(caps)) + caps
    return bgp_msg(1, body)


class Recorder:
    def __init__(self):
        self.msgs = []
        self.lock = threading.Lock()
        self.step = "session"
        self.conn = None

    def run(self, srv):
        conn, _ = srv.accept()
        self.conn = conn
        buf = b""
        opened = False
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while len(buf) >= 19:
                length = struct.unpack("!H", buf[16:18])[0]
                if len(buf) < length:
                    break
                msg, buf = buf[:length], buf[length:]
                with self.lock:
                    self.msgs.append((self.step, msg))
                if msg[18] == 1 and not opened:
                    opened = True
                    conn.sendall(our_open() + bgp_msg(4, b""))
                elif msg[18] == 4:
                    conn.sendall(bgp_msg(4, b""))

    def set_step(self, step):
        with self.lock:
            self.step = step

    def take(self):
        with self.lock:
            out, self.msgs = self.msgs, []
        return out


def gobgp(*args):
    cmd = [GOBGP, "-p", str(API_PORT)] + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stdout} {r.stderr}")


def gobgp_vectors():
    if not (os.path.exists(GOBGPD) and os.path.exists(GOBGP)):
        print("gobgpd not installed; skipping GoBGP vectors")
        return
    version = subprocess.run([GOBGPD, "--version"], capture_output=True, text=True).stdout.strip()
    tmp = tempfile.mkdtemp(prefix="bgp-vectors-")
    conf = os.path.join(tmp, "gobgpd.toml")
    with open(conf, "w") as f:
        f.write(GOBGP_CONF)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", LISTEN_PORT))
    srv.listen(1)
    rec = Recorder()
    t = threading.Thread(target=rec.run, args=(srv,), daemon=True)
    t.start()
    log = open(os.path.join(tmp, "gobgpd.log"), "w")
    proc = subprocess.Popen([GOBGPD, "-f", conf, "--api-hosts", f"127.0.0.1:{API_PORT}",
                             "--pprof-disable", "-p"], stdout=log, stderr=log)
    items = []
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            time.sleep(0.5)
            with rec.lock:
                kinds = [m[18] for _, m in rec.msgs]
            # Established once gobgpd's KEEPALIVE (OpenConfirm) has come.
            if 4 in kinds:
                break
        time.sleep(2)  # whatever it sends first (End-of-RIB markers, if any)
        session = rec.take()
        for _, m in session:
            name = {1: "open", 2: "update_initial", 4: "keepalive"}.get(m[18], "other")
            if name != "keepalive":
                items.append((name, m))

        steps = [
            ("vpnv4_add", ["global", "rib", "-a", "vpnv4", "add", "10.20.0.0/24", "label", "100",
                           "rd", "65001:10", "rt", "65001:10", "nexthop", "192.0.2.1",
                           "med", "20", "community", "65001:7"]),
            ("vpnv4_del", ["global", "rib", "-a", "vpnv4", "del", "10.20.0.0/24", "label", "100",
                           "rd", "65001:10"]),
            ("evpn_macadv_add", ["global", "rib", "-a", "evpn", "add", "macadv",
                                 "aa:bb:cc:00:00:04", "10.0.0.4", "esi", "0", "etag", "0",
                                 "label", "10010,10020", "rd", "192.0.2.1:10",
                                 "rt", "65001:10010", "encap", "vxlan",
                                 "router-mac", "02:00:00:00:00:01", "nexthop", "192.0.2.1"]),
            ("evpn_macadv_nomip_add", ["global", "rib", "-a", "evpn", "add", "macadv",
                                       "aa:bb:cc:00:00:05", "0.0.0.0", "etag", "0",
                                       "label", "10010", "rd", "192.0.2.1:10",
                                       "rt", "65001:10010", "encap", "vxlan",
                                       "nexthop", "192.0.2.1"]),
            ("evpn_multicast_add", ["global", "rib", "-a", "evpn", "add", "multicast",
                                    "192.0.2.1", "etag", "0", "rd", "192.0.2.1:10",
                                    "rt", "65001:10010", "encap", "vxlan",
                                    "pmsi", "ingress-repl", "10010", "192.0.2.1",
                                    "nexthop", "192.0.2.1"]),
            ("evpn_prefix_add", ["global", "rib", "-a", "evpn", "add", "prefix", "10.30.0.0/24",
                                 "gw", "0.0.0.0", "etag", "0", "label", "5000",
                                 "rd", "192.0.2.1:50", "rt", "65001:5000", "encap", "vxlan",
                                 "router-mac", "02:00:00:00:00:01", "nexthop", "192.0.2.1"]),
            ("evpn_macadv_del", ["global", "rib", "-a", "evpn", "del", "macadv",
                                 "aa:bb:cc:00:00:04", "10.0.0.4", "esi", "0", "etag", "0",
                                 "label", "10010,10020", "rd", "192.0.2.1:10"]),
            ("evpn_multicast_del", ["global", "rib", "-a", "evpn", "del", "multicast",
                                    "192.0.2.1", "etag", "0", "rd", "192.0.2.1:10"]),
            ("evpn_prefix_del", ["global", "rib", "-a", "evpn", "del", "prefix", "10.30.0.0/24",
                                 "gw", "0.0.0.0", "etag", "0", "label", "5000",
                                 "rd", "192.0.2.1:50"]),
            ("ipv4_add", ["global", "rib", "-a", "ipv4", "add", "10.40.0.0/16",
                          "nexthop", "192.0.2.1", "aspath", "65010,4200000001",
                          "local-pref", "300", "large-community", "65001:1:2"]),
            ("ipv4_del", ["global", "rib", "-a", "ipv4", "del", "10.40.0.0/16"]),
        ]
        for step, args in steps:
            rec.set_step(step)
            gobgp(*args)
            time.sleep(1.5)
            for _, m in rec.take():
                if m[18] != 4:
                    items.append((step, m))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if rec.conn is not None:
            rec.conn.close()
        srv.close()
        shutil.rmtree(tmp, ignore_errors=True)
    # GoBGP's last words (a Cease NOTIFICATION when it is stopped) are not kept: timing-dependent.
    write_vectors(os.path.join(OUT, "gobgp.hex"),
                  [f"generator: {version} (Debian package), real iBGP session over 127.0.0.1 "
                   f"(AS {ASN}), routes injected with the gobgp CLI",
                   "script: tests/gen/bgp_vectors.py; names are the CLI step that caused the message"],
                  items)


# ---------------------------------------------------------------------------------------------
# BIRD
# ---------------------------------------------------------------------------------------------

BIRD = "/usr/sbin/bird"

# BIRD (AS 65001, 10.0.0.254) toward the listener at 10.0.0.1. Routes in RD 65001:7 via a
# gateway on the link, so BIRD advertises that gateway and its labels (none: label 3).
BIRD_CONF = f"""
router id 10.0.0.254;
vpn4 table vpntab;
protocol device {{ scan time 1; }}
protocol static vpn_routes {{
    vpn4 {{
        table vpntab;
        import filter {{ bgp_ext_community.add((rt, {ASN}, 1)); accept; }};
    }};
    route {ASN}:7 10.70.0.0/16 via 10.0.0.200 mpls 7000;
    route {ASN}:7 10.71.0.0/16 via 10.0.0.200;
    route {ASN}:7 10.72.0.0/16 via 10.0.0.200 mpls 7200/7201;
}}
protocol bgp listener {{
    local 10.0.0.254 as {ASN};
    neighbor 10.0.0.1 as {ASN};
    connect delay time 1;
    connect retry time 1;
    vpn4 mpls {{ table vpntab; import none; export all; }};
}}
"""

# The message names by the route an UPDATE announces (the second octet of its prefix).
BIRD_ROUTES = {70: "vpnv4_label_7000", 71: "vpnv4_no_label", 72: "vpnv4_two_labels"}


def enter_netns(name):
    """Move this thread (and the processes and sockets it makes later) into netns `name`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), f"setns {name}")
    finally:
        os.close(fd)


def bird_vectors():
    if not os.path.exists(BIRD):
        print("bird not installed; skipping BIRD vectors")
        return
    if os.geteuid() != 0:
        print("BIRD vectors need root (network namespaces); skipping")
        return
    version = subprocess.run([BIRD, "--version"], capture_output=True, text=True)
    version = (version.stdout + version.stderr).strip()
    tmp = tempfile.mkdtemp(prefix="bgp-vectors-")
    # The script's own namespaces, deleted at the end whatever happens.
    bird_ns, rec_ns = f"bvbird{os.getpid()}", f"bvrec{os.getpid()}"
    items = []
    proc = None
    try:
        for ns in (bird_ns, rec_ns):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", bird_ns, "link", "add", "v0", "type", "veth", "peer", "name",
                        "v0", "netns", rec_ns], check=True)
        for ns, addr in ((bird_ns, "10.0.0.254/24"), (rec_ns, "10.0.0.1/24")):
            subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", "v0"], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "v0", "up"], check=True)
        conf = os.path.join(tmp, "bird.conf")
        with open(conf, "w") as f:
            f.write(BIRD_CONF)
        enter_netns(rec_ns)
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("10.0.0.1", 179))
        srv.listen(1)
        rec = Recorder()
        threading.Thread(target=rec.run, args=(srv,), daemon=True).start()
        log = open(os.path.join(tmp, "bird.log"), "w")
        proc = subprocess.Popen(["ip", "netns", "exec", bird_ns, BIRD, "-f", "-c", conf,
                                 "-s", os.path.join(tmp, "bird.ctl"),
                                 "-P", os.path.join(tmp, "bird.pid")], stdout=log, stderr=log)
        # Connect, OPEN, the routes, then the End-of-RIB (an UPDATE with an empty MP_UNREACH).
        deadline = time.time() + 20
        while time.time() < deadline:
            time.sleep(0.5)
            with rec.lock:
                if any(m[18] == 2 and m[23:26] == bytes([0x80, 15, 3]) for _, m in rec.msgs):
                    break
        else:
            log.flush()
            raise RuntimeError(f"no End-of-RIB from BIRD; its log:\n{open(log.name).read()}")
        for _, m in rec.take():
            if m[18] == 1:
                items.append(("open", m))
            elif m[18] == 2:
                at = m.find(bytes.fromhex(f"0000{ASN:04x}00000007"))
                name = "vpnv4_eor" if at < 0 else BIRD_ROUTES.get(m[at + 9], "other")
                items.append((name, m))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in (bird_ns, rec_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    items.sort(key=lambda item: item[0] != "open")
    write_vectors(os.path.join(OUT, "bird.hex"),
                  [f"generator: {version} (Debian bird2 2.0.12-7), real iBGP session between two "
                   f"network namespaces (AS {ASN}), routes from a static protocol",
                   "script: tests/gen/bgp_vectors.py; names say which route an UPDATE announces"],
                  items)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    which = sys.argv[1:] or ["scapy", "gobgp", "bird"]
    if "scapy" in which:
        scapy_vectors()
    if "gobgp" in which:
        gobgp_vectors()
    # Last: it moves this process into a network namespace.
    if "bird" in which:
        bird_vectors()
