//! BGP interop with real daemons (privileged, run by `cargo xtask test`): GoBGP as route
//! reflector, carrier's control process programming carrier's dataplane.
//!
//! ```text
//!   gobgpd (rr) 10.0.0.254 ──mgmt── 10.0.0.1 PE (carrier-control + carrier-dataplane)
//!                                              ce-red 10.1.0.1/24, core0 192.0.2.1/30
//! ```
//! BGP runs on the kernel-owned management link; the dataplane's ports carry data.

use std::time::Duration;

use carrier_tests::bgp::{eventually, start_control, GoBgp};
use carrier_tests::carrier::Dataplane;
use carrier_tests::netns::{veth_between, NetNs};

const PE_DATAPLANE: &str = r#"
[router]
router_id = "10.255.0.1"
vtep = "10.255.0.1"

[[vrf]]
name = "red"

[[bridge]]
name = "bd100"
vni = 100

[[port]]
name = "ce-red"
mac = "02:00:00:00:01:01"
addresses = ["10.1.0.1/24"]
vrf = "red"

[[port]]
name = "ce-l2"
mac = "02:00:00:00:01:02"
bridge = "bd100"

[[port]]
name = "core0"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24"]
core = true

[[neighbour]]
port = "core0"
ip = "192.0.2.2"
mac = "02:00:00:00:00:02"

[[route]]
prefix = "10.255.0.0/24"
via = "192.0.2.2"
"#;

fn control_config(dp: &Dataplane) -> String {
    format!(
        r#"
[bgp]
asn = 65000
router_id = "10.255.0.1"
vtep = "10.255.0.1"
hold_time = 30

[dataplane]
socket = "{}"
config = "{}"

[labels]
first = 100000
last = 100999

[[neighbor]]
address = "10.0.0.254"
remote_as = 65000
families = ["vpnv4", "evpn"]

[[vrf]]
name = "red"
rd = "65000:1"
import = ["target:65000:1"]
export = ["target:65000:1"]

[[evpn]]
bridge = "bd100"
rd = "10.255.0.1:100"
"#,
        dp.socket.display(),
        dp.config.display()
    )
}

struct Lab {
    rr: NetNs,
    pe: NetNs,
    _ce: NetNs,
    _core: NetNs,
    _l2: NetNs,
}

fn lab() -> Lab {
    let rr = NetNs::new("brr");
    let pe = NetNs::new("bpe");
    let ce = NetNs::new("bce");
    let core = NetNs::new("bco");
    let l2 = NetNs::new("bl2");
    veth_between(&pe, "mgmt", &rr, "mgmt");
    pe.sh("ip addr add 10.0.0.1/24 dev mgmt");
    rr.sh("ip addr add 10.0.0.254/24 dev mgmt");
    veth_between(&pe, "ce-red", &ce, "eth0");
    veth_between(&pe, "ce-l2", &l2, "eth0");
    veth_between(&pe, "core0", &core, "eth0");
    Lab { rr, pe, _ce: ce, _core: core, _l2: l2 }
}



#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn gobgp_route_reflector_programs_vpnv4_and_evpn() {
    let lab = lab();
    let dp = Dataplane::start(&lab.pe, PE_DATAPLANE);
    let gobgp = GoBgp::start(&lab.rr, 65000, "10.0.0.254", &["10.0.0.1"]);
    let control = start_control(&lab.pe, &control_config(&dp));
    gobgp.wait_established("10.0.0.1", Duration::from_secs(30));

    // 1. carrier's own VRF route appears in the route reflector as VPNv4 with RD and RT.
    let rib = eventually("carrier's VPNv4 route in gobgp", Duration::from_secs(15), || {
        let out = gobgp.cli(&["global", "rib", "-a", "vpnv4"]);
        out.contains("65000:1:10.1.0.0/24").then_some(out)
    });
    assert!(rib.contains("Extcomms: [65000:1]"), "{rib}");
    let label: u32 = rib
        .lines()
        .find(|l| l.contains("65000:1:10.1.0.0/24"))
        .and_then(|l| l.split("[").nth(1))
        .and_then(|l| l.split(']').next())
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no label in {rib}"));
    assert!((100000..=100999).contains(&label), "label {label} outside the configured range");
    let d = dp.dump();
    let ilm = d["labels"].as_array().unwrap().iter().find(|l| l["label"] == label).unwrap_or_else(|| panic!("label {label} not in the ILM: {d}"));
    assert_eq!(ilm["action"]["action"], "pop-lookup");

    // 2. Routes injected at the reflector: RT 65000:1 is imported, 65000:99 is not.
    gobgp.cli(&["global", "rib", "-a", "vpnv4", "add", "10.60.0.0/16", "label", "3001", "rd", "65000:9", "rt", "65000:99", "nexthop", "10.255.0.2"]);
    gobgp.cli(&["global", "rib", "-a", "vpnv4", "add", "10.50.0.0/16", "label", "3000", "rd", "65000:9", "rt", "65000:1", "nexthop", "10.255.0.2"]);
    let nh = eventually("10.50.0.0/16 in vrf red", Duration::from_secs(15), || dp.route("red", "10.50.0.0/16"));
    assert_eq!(nh["kind"], "mpls-push", "{nh}");
    assert_eq!(nh["labels"], serde_json::json!([3000]), "{nh}");
    assert_eq!(nh["pe"], "10.255.0.2", "{nh}");
    assert!(dp.route("red", "10.60.0.0/16").is_none(), "a route with RT 65000:99 was imported");

    // 3. Withdraw at the reflector: gone from the FIB.
    gobgp.cli(&["global", "rib", "-a", "vpnv4", "del", "10.50.0.0/16", "label", "3000", "rd", "65000:9", "rt", "65000:1", "nexthop", "10.255.0.2"]);
    eventually("10.50.0.0/16 withdrawn", Duration::from_secs(15), || dp.route("red", "10.50.0.0/16").is_none().then_some(()));

    // 4. EVPN: a type-3 route joins the flood list, a type-2 route installs a MAC and an ARP
    //    binding; carrier's own type-3 shows up in gobgp.
    gobgp.cli(&["global", "rib", "-a", "evpn", "add", "multicast", "10.255.0.4", "etag", "0", "rd", "10.255.0.4:100", "rt", "65000:100", "encap", "vxlan", "nexthop", "10.255.0.4"]);
    gobgp.cli(&[
        "global", "rib", "-a", "evpn", "add", "macadv", "02:44:00:00:00:01", "10.100.0.44", "etag", "0", "label", "100", "rd", "10.255.0.4:100", "rt",
        "65000:100", "encap", "vxlan", "nexthop", "10.255.0.4",
    ]);
    let bridge = eventually("EVPN routes in bd100", Duration::from_secs(15), || {
        let d = dp.dump();
        let b = d["bridges"].as_array()?.iter().find(|b| b["bridge"] == "bd100")?.clone();
        (b["flood"].as_array()?.iter().any(|v| v == "10.255.0.4") && !b["macs"].as_array()?.is_empty()).then_some(b)
    });
    assert_eq!(bridge["macs"][0]["mac"], "02:44:00:00:00:01", "{bridge}");
    assert_eq!(bridge["macs"][0]["dest"]["vtep"], "10.255.0.4", "{bridge}");
    let evpn = gobgp.cli(&["global", "rib", "-a", "evpn"]);
    assert!(evpn.contains("[type:multicast][rd:10.255.0.1:100][etag:0][ip:10.255.0.1]"), "carrier's type-3 is missing:\n{evpn}");

    // 5. SIGTERM without graceful restart: carrier says Cease/Administrative Shutdown
    //    (RFC 4486) before it closes the session.
    let before = gobgp.notifications_from("10.0.0.1");
    let mut control = control;
    control.stop();
    eventually("gobgp received carrier's NOTIFICATION", Duration::from_secs(10), || (gobgp.notifications_from("10.0.0.1") > before).then_some(()));
    assert!(control.log().contains("Cease/Administrative Shutdown"), "{}", control.log());
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn max_prefixes_resets_with_cease_and_drops_the_routes() {
    let lab = lab();
    let dp = Dataplane::start(&lab.pe, PE_DATAPLANE);
    let gobgp = GoBgp::start(&lab.rr, 65000, "10.0.0.254", &["10.0.0.1"]);
    let config = control_config(&dp).replace("families = [\"vpnv4\", \"evpn\"]", "families = [\"vpnv4\", \"evpn\"]\nmax_prefixes = 2");
    let control = start_control(&lab.pe, &config);
    gobgp.wait_established("10.0.0.1", Duration::from_secs(30));
    for (i, prefix) in ["10.50.0.0/16", "10.51.0.0/16"].iter().enumerate() {
        let label = (3000 + i).to_string();
        gobgp.cli(&["global", "rib", "-a", "vpnv4", "add", prefix, "label", &label, "rd", "65000:9", "rt", "65000:1", "nexthop", "10.255.0.2"]);
    }
    eventually("two routes installed", Duration::from_secs(15), || dp.route("red", "10.51.0.0/16").map(|_| ()));
    // The third crosses the limit: Cease 6/1, the peer's routes leave the FIB.
    gobgp.cli(&["global", "rib", "-a", "vpnv4", "add", "10.52.0.0/16", "label", "3002", "rd", "65000:9", "rt", "65000:1", "nexthop", "10.255.0.2"]);
    eventually("routes dropped after the limit", Duration::from_secs(15), || dp.route("red", "10.50.0.0/16").is_none().then_some(()));
    eventually("Cease logged", Duration::from_secs(10), || control.log().contains("Maximum Number of Prefixes Reached").then_some(()));
    let received = gobgp.notifications_from("10.0.0.1");
    assert!(received >= 1, "gobgp received no NOTIFICATION:\n{}", gobgp.cli(&["neighbor", "10.0.0.1"]));
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn tcp_md5_and_gtsm_with_gobgp() {
    let lab = lab();
    let dp = Dataplane::start(&lab.pe, PE_DATAPLANE);
    let gobgp = GoBgp::start_with(
        &lab.rr,
        65000,
        "10.0.0.254",
        &["10.0.0.1"],
        "    auth-password = \"carrier-secret\"",
        "  [neighbors.ttl-security.config]\n    enabled = true\n    ttl-min = 255",
    );
    let secured = |password: &str| {
        control_config(&dp).replace("families = [\"vpnv4\", \"evpn\"]", &format!("families = [\"vpnv4\", \"evpn\"]\npassword = \"{password}\"\nttl_security = 1"))
    };
    // A wrong key: the kernel drops every segment, the session never comes up.
    let mut wrong = start_control(&lab.pe, &secured("not-the-secret"));
    std::thread::sleep(Duration::from_secs(6));
    let neighbor = gobgp.cli(&["neighbor", "10.0.0.1"]);
    assert!(!neighbor.to_lowercase().contains("bgp state = established"), "established with a wrong MD5 key:\n{neighbor}");
    wrong.stop();
    // The right key, and GTSM on both sides: established, routes flow.
    let _control = start_control(&lab.pe, &secured("carrier-secret"));
    gobgp.wait_established("10.0.0.1", Duration::from_secs(30));
    eventually("carrier's route over the signed session", Duration::from_secs(15), || {
        gobgp.cli(&["global", "rib", "-a", "vpnv4"]).contains("65000:1:10.1.0.0/24").then_some(())
    });
}

/// A scripted peer for connection collisions (RFC 4271 §6.8), run in the reflector's
/// namespace: it accepts carrier's connection and reads its OPEN, then opens its own
/// connection with an OPEN carrying `argv[1]` as BGP identifier, and reports what happened on
/// each: `ours: notification 6/7` (closed by carrier with Cease/Connection Collision
/// Resolution) or `ours: established` (OPEN, KEEPALIVE both ways), and the same for
/// `carriers` (the connection carrier opened).
const COLLIDING_PEER: &str = r#"
import socket, struct, sys, time
my_id = socket.inet_aton(sys.argv[1])
def msg(t, body=b""):
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), t) + body
def open_msg():
    caps = bytes([1, 4, 0, 1, 0, 128]) + bytes([65, 4]) + struct.pack("!I", 65000)
    params = bytes([2, len(caps)]) + caps
    return msg(1, struct.pack("!BHH", 4, 65000, 90) + my_id + bytes([len(params)]) + params)
def read_msg(s, timeout):
    s.settimeout(timeout)
    head = b""
    while len(head) < 19:
        d = s.recv(19 - len(head))
        if not d:
            return None
        head += d
    length, t = struct.unpack("!HB", head[16:19])
    body = b""
    while len(body) < length - 19:
        d = s.recv(length - 19 - len(body))
        if not d:
            return None
        body += d
    return t, body
def finish(name, s, send_open):
    try:
        if send_open:
            try:
                first = read_msg(s, 3)
            except socket.timeout:
                first = (0, b"")  # nothing: carrier waits for our OPEN
            if first is None or first[0] == 3:
                print(f"{name}: " + ("closed" if first is None else f"notification {first[1][0]}/{first[1][1]}"))
                return
            s.sendall(open_msg())
        while True:
            m = read_msg(s, 10)
            if m is None:
                print(f"{name}: closed"); return
            if m[0] == 3:
                print(f"{name}: notification {m[1][0]}/{m[1][1]}"); return
            if m[0] == 1:
                s.sendall(msg(4))
            if m[0] == 4:
                s.sendall(msg(4)); print(f"{name}: established"); return
    except socket.timeout:
        print(f"{name}: silent")
listener = socket.socket(); listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("10.0.0.254", 179)); listener.listen(1); listener.settimeout(30)
carriers, _ = listener.accept()
assert read_msg(carriers, 10)[0] == 1, "carrier's first message is its OPEN"
for attempt in range(50):  # carrier may listen a moment after it connects
    ours = socket.socket(); ours.bind(("10.0.0.254", 0)); ours.settimeout(10)
    try:
        ours.connect(("10.0.0.1", 179)); break
    except ConnectionRefusedError:
        ours.close(); time.sleep(0.1)
ours.sendall(open_msg())
if sys.argv[2] == "carriers-first":
    finish("carriers", carriers, True); finish("ours", ours, False)
else:
    finish("ours", ours, False); finish("carriers", carriers, True)
"#;

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn connection_collision_is_resolved_by_bgp_identifier() {
    // carrier's identifier is 10.255.0.1. A peer with a higher one keeps the connection it
    // opened; with a lower one, carrier's connection survives. Either way exactly one session
    // comes up and the other connection gets Cease 6/7.
    for (peer_id, order, expected) in [
        ("10.255.255.254", "ours-first", ["ours: established", "carriers: notification 6/7"]),
        ("10.0.0.9", "carriers-first", ["carriers: established", "ours: notification 6/7"]),
    ] {
        let lab = lab();
        let dp = Dataplane::start(&lab.pe, PE_DATAPLANE);
        let peer = std::thread::spawn({
            let rr = lab.rr.name().to_string();
            move || {
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", &rr, "python3", "-c", COLLIDING_PEER, peer_id, order])
                    .output()
                    .expect("run the scripted peer");
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let config = control_config(&dp).replace("hold_time = 30", "hold_time = 30\nlisten = \"10.0.0.1\"");
        let control = start_control(&lab.pe, &config);
        let out = peer.join().unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines, expected, "peer {peer_id}:\n{out}\ncontrol log:\n{}", control.log());
        assert!(control.log().contains("collision"), "{}", control.log());
    }
}
