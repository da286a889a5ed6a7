//! Privileged end-to-end tests of the L3VPN path: two carrier PEs (`carrier-dataplane run`
//! on XDP + AF_XDP) joined by a core link, with hosts of two VRFs that use the same
//! addresses, all in network namespaces this test makes and deletes.
//!
//! ```text
//!  hA  10.1.0.2 ─ce0┐                                  ┌ce0─ hB  10.2.0.2     (VRF red)
//!                   PE1 ─core0─ p1 [br0 tap] p2 ─core0─ PE2
//!  hA' 10.1.0.2 ─ce1┘    192.0.2.1/30     192.0.2.2/30 └ce1─ hB' 10.2.0.2     (VRF blue)
//! ```
//!
//! PE1 reaches 10.2.0.0/24 with VPN label 2001 (red) or 2002 (blue) toward PE2
//! (10.255.0.2, via 192.0.2.2); PE2 reaches 10.1.0.0/24 with 1001 / 1002. Nothing on the
//! core is static: the PEs find each other by ARP (gleaning on a neighbour miss).
//!
//! The core link runs through a Linux bridge in a third namespace ("tap") because the
//! dataplane's own frames are invisible to a capture on the PE ports themselves: AF_XDP
//! transmits with `__dev_direct_xmit`, which skips the packet taps, and frames a native
//! XDP program redirects to AF_XDP never reach them either (tried: tcpdump on PE1's
//! `core0` records nothing while pings cross it). A capture on the tap's `p1`
//! sees every frame of the core link once, from a decoder (tshark) independent of carrier.
//!
//! Hosts turn TX checksum offload off: over veth the kernel leaves UDP checksums to a
//! "device" that never fills them, and carrier forwards the frames as they are.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use carrier_tests::capture::{tshark, Capture};
use carrier_tests::carrier::{scratch_dir, Dataplane};
use carrier_tests::netns::{self, NetNs};

/// The MAC of each PE port (the dataplane's, from its config; the veth gets it too).
const PE1_CE0_MAC: &str = "02:00:00:01:00:10";
const PE1_CE1_MAC: &str = "02:00:00:01:00:11";
const PE1_CORE0_MAC: &str = "02:00:00:01:00:01";
const PE2_CE0_MAC: &str = "02:00:00:02:00:10";
const PE2_CE1_MAC: &str = "02:00:00:02:00:11";
const PE2_CORE0_MAC: &str = "02:00:00:02:00:01";

/// PE1. Besides the VPN routes, red routes 10.1.5.0/24 to PE2 (host B answers for
/// 10.1.5.5), which a host on ce0 with a /16 reaches through proxy ARP.
const PE1_CONFIG: &str = r#"
[router]
router_id = "10.255.0.1"
ttl_mode = "uniform"

[[vrf]]
name = "red"
source = "10.1.255.1"

[[vrf]]
name = "blue"

[[port]]
name = "ce0"
mac = "02:00:00:01:00:10"
addresses = ["10.1.0.1/24"]
vrf = "red"
proxy_arp = true

[[port]]
name = "ce1"
mac = "02:00:00:01:00:11"
addresses = ["10.1.0.1/24"]
vrf = "blue"
proxy_arp = true

[[port]]
name = "core0"
mac = "02:00:00:01:00:01"
addresses = ["192.0.2.1/30"]
core = true

[[route]]
prefix = "10.255.0.2/32"
via = "192.0.2.2"

[[route]]
vrf = "red"
prefix = "10.2.0.0/24"
mpls = { labels = [2001], pe = "10.255.0.2" }

[[route]]
vrf = "red"
prefix = "10.1.5.0/24"
mpls = { labels = [2001], pe = "10.255.0.2" }

[[route]]
vrf = "blue"
prefix = "10.2.0.0/24"
mpls = { labels = [2002], pe = "10.255.0.2" }

[[label]]
label = 1001
action = "lookup"
vrf = "red"

[[label]]
label = 1002
action = "lookup"
vrf = "blue"
"#;

/// PE2, the mirror of PE1. Red's ICMP source 10.2.255.1 is what a packet that arrived by
/// MPLS is answered from (traceroute's second hop).
const PE2_CONFIG: &str = r#"
[router]
router_id = "10.255.0.2"
ttl_mode = "uniform"

[[vrf]]
name = "red"
source = "10.2.255.1"

[[vrf]]
name = "blue"

[[port]]
name = "ce0"
mac = "02:00:00:02:00:10"
addresses = ["10.2.0.1/24"]
vrf = "red"
proxy_arp = true

[[port]]
name = "ce1"
mac = "02:00:00:02:00:11"
addresses = ["10.2.0.1/24"]
vrf = "blue"
proxy_arp = true

[[port]]
name = "core0"
mac = "02:00:00:02:00:01"
addresses = ["192.0.2.2/30"]
core = true

[[route]]
prefix = "10.255.0.1/32"
via = "192.0.2.1"

[[route]]
vrf = "red"
prefix = "10.1.0.0/24"
mpls = { labels = [1001], pe = "10.255.0.1" }

[[route]]
vrf = "red"
prefix = "10.1.5.0/24"
via = "10.2.0.2"

[[route]]
vrf = "blue"
prefix = "10.1.0.0/24"
mpls = { labels = [1002], pe = "10.255.0.1" }

[[label]]
label = 2001
action = "lookup"
vrf = "red"

[[label]]
label = 2002
action = "lookup"
vrf = "blue"
"#;

/// The topology of the module doc, running. Fields drop in order: the dataplanes stop
/// before their namespaces go.
struct L3vpn {
    pe1_dp: Dataplane,
    pe2_dp: Dataplane,
    /// Host A (red, behind PE1's ce0).
    red_a: NetNs,
    /// Host B (red, behind PE2's ce0); also answers for 10.1.5.5.
    red_b: NetNs,
    /// Host A' (blue, behind PE1's ce1).
    blue_a: NetNs,
    /// Host B' (blue, behind PE2's ce1).
    blue_b: NetNs,
    /// The bridge in the middle of the core link; capture on its `p1`.
    tap: NetNs,
    _pe1: NetNs,
    _pe2: NetNs,
    /// Captures and scripts.
    scratch: PathBuf,
}

impl L3vpn {
    /// Builds the topology and starts both dataplanes. Host A gets 10.1.0.2 with prefix
    /// length `a_prefix_len` (24, or 16 to make it ARP for off-subnet addresses).
    fn new(a_prefix_len: u8) -> L3vpn {
        netns::require_root();
        let pe1 = quiet_ns("lpe1");
        let pe2 = quiet_ns("lpe2");
        let tap = quiet_ns("ltap");
        let red_a = quiet_ns("lra");
        let red_b = quiet_ns("lrb");
        let blue_a = quiet_ns("lba");
        let blue_b = quiet_ns("lbb");

        for (pe, port, mac, host) in [
            (&pe1, "ce0", PE1_CE0_MAC, &red_a),
            (&pe1, "ce1", PE1_CE1_MAC, &blue_a),
            (&pe2, "ce0", PE2_CE0_MAC, &red_b),
            (&pe2, "ce1", PE2_CE1_MAC, &blue_b),
        ] {
            veth_between(pe, port, mac, host, "eth0");
        }
        veth_between(&pe1, "core0", PE1_CORE0_MAC, &tap, "p1");
        veth_between(&pe2, "core0", PE2_CORE0_MAC, &tap, "p2");
        tap.sh("ip link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0");
        tap.sh("ip link set p1 master br0");
        tap.sh("ip link set p2 master br0");
        tap.sh("ip link set br0 up");

        host(&red_a, &format!("10.1.0.2/{a_prefix_len}"), "10.1.0.1");
        host(&blue_a, "10.1.0.2/24", "10.1.0.1");
        host(&red_b, "10.2.0.2/24", "10.2.0.1");
        host(&blue_b, "10.2.0.2/24", "10.2.0.1");
        red_b.sh("ip addr add 10.1.5.5/32 dev lo");

        let pe1_dp = Dataplane::start(&pe1, PE1_CONFIG);
        let pe2_dp = Dataplane::start(&pe2, PE2_CONFIG);
        L3vpn {
            pe1_dp,
            pe2_dp,
            red_a,
            red_b,
            blue_a,
            blue_b,
            tap,
            _pe1: pe1,
            _pe2: pe2,
            scratch: scratch_dir("l3vpn"),
        }
    }

    /// Starts a capture of the core link (both directions) into `name`.pcap.
    fn capture_core(&self, name: &str) -> Capture {
        Capture::start(
            &self.tap,
            "p1",
            &self.scratch.join(format!("{name}.pcap")),
            &[],
        )
    }

    /// The logs of both dataplanes, for failure messages.
    fn logs(&self) -> String {
        format!(
            "--- pe1 log ---\n{}\n--- pe2 log ---\n{}",
            self.pe1_dp.log(),
            self.pe2_dp.log()
        )
    }
}

/// A namespace without IPv6, so that router solicitations, MLD and neighbour discovery
/// stay off the links, the captures and the counters.
fn quiet_ns(prefix: &str) -> NetNs {
    let ns = NetNs::new(prefix);
    ns.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
    ns.sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
    ns
}

/// A veth pair made inside the namespaces (so fixed names like `ce0` cannot collide with
/// other tests): `a_name` in `a` with MAC `a_mac`, `b_name` in `b`, both up.
fn veth_between(a: &NetNs, a_name: &str, a_mac: &str, b: &NetNs, b_name: &str) {
    a.sh(&format!(
        "ip link add {a_name} type veth peer name {b_name} netns {}",
        b.name()
    ));
    a.run(&["ip", "link", "set", "dev", a_name, "address", a_mac]);
    a.run(&["ip", "link", "set", "dev", a_name, "up"]);
    b.run(&["ip", "link", "set", "dev", b_name, "up"]);
    // A veth delivers frames an XDP program redirects into it (the express tier) only when
    // its peer runs NAPI: GRO on, as a real NIC always has a receive path.
    b.sh(&format!("ethtool -K {b_name} gro on"));
}

/// Configures a host on its `eth0`: address, default gateway, no TX checksum offload.
fn host(ns: &NetNs, addr: &str, gateway: &str) {
    ns.run(&["ip", "addr", "add", addr, "dev", "eth0"]);
    ns.run(&["ip", "route", "add", "default", "via", gateway]);
    ns.sh("ethtool -K eth0 tx off");
}

/// `ping -c count` from `ns` to `dst`, 0.2 s apart, waiting one second for the last
/// reply; returns the number of replies and ping's output.
fn ping(ns: &NetNs, dst: &str, count: u32) -> (u32, String) {
    let count = count.to_string();
    let out = ns.exec(&["ping", "-n", "-c", &count, "-i", "0.2", "-W", "1", dst]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let received = text
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once(" transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0);
    (received, text)
}

/// A few pings that may be lost while the PEs glean ARP on the way, until one is
/// answered (at most 5 rounds); panics if none is.
fn warm_up(ns: &NetNs, dst: &str, vpn: &L3vpn) {
    for _ in 0..5 {
        if ping(ns, dst, 2).0 > 0 {
            return;
        }
    }
    panic!("no reply from {dst} after warm-up pings\n{}", vpn.logs());
}


/// `counters[section][key]["packets"]`, 0 when absent.
fn packets(counters: &serde_json::Value, section: &str, key: &str) -> u64 {
    counters[section][key]["packets"].as_u64().unwrap_or(0)
}

/// Reads the counters after the worker published them (every 100 ms).
fn counters(dp: &Dataplane) -> serde_json::Value {
    std::thread::sleep(Duration::from_millis(300));
    dp.counters()
}

/// Sends three UDP datagrams from host A to host B port 5000 and returns what B received:
/// one `source payload` line per datagram.
fn udp_a_to_b(vpn: &L3vpn) -> Vec<String> {
    let receiver = "import socket\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.bind(('10.2.0.2', 5000))\n\
        s.settimeout(3)\n\
        print('ready', flush=True)\n\
        try:\n\
        \x20   for _ in range(3):\n\
        \x20       data, (src, _) = s.recvfrom(2048)\n\
        \x20       print(src, data.decode(), flush=True)\n\
        except socket.timeout:\n\
        \x20   pass\n";
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            vpn.red_b.name(),
            "/usr/bin/python3",
            "-c",
            receiver,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the UDP receiver");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut ready = String::new();
    stdout
        .read_line(&mut ready)
        .expect("read the receiver's stdout");
    if ready.trim() != "ready" {
        let _ignored = child.kill();
        let output = child.wait_with_output().expect("wait for the receiver");
        panic!(
            "UDP receiver failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let sender = "import socket, time\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        for i in range(3):\n\
        \x20   s.sendto(f'udp-{i}'.encode() * 50, ('10.2.0.2', 5000))\n\
        \x20   time.sleep(0.1)\n";
    vpn.red_a.run(&["/usr/bin/python3", "-c", sender]);
    let received: Vec<String> = stdout.lines().map_while(Result::ok).collect();
    let status = child.wait().expect("wait for the UDP receiver");
    assert!(status.success(), "UDP receiver failed ({status})");
    received
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn l3vpn_two_pes() {
    let vpn = L3vpn::new(24);

    // Red: host A to host B over label 2001, back over 1001. The first pings may be
    // lost while each PE gleans the other's MAC on the core and its host's on ce0.
    let core = vpn.capture_core("red");
    let (warm, text) = ping(&vpn.red_a, "10.2.0.2", 5);
    assert!(
        warm >= 3,
        "red warm-up: {warm}/5 replies\n{text}\n{}",
        vpn.logs()
    );
    let (replies, text) = ping(&vpn.red_a, "10.2.0.2", 5);
    assert_eq!(
        replies,
        5,
        "red A → B: {replies}/5 replies\n{text}\n{}",
        vpn.logs()
    );
    let received = udp_a_to_b(&vpn);
    let expected: Vec<String> = (0..3)
        .map(|i| format!("10.1.0.2 {}", format!("udp-{i}").repeat(50)))
        .collect();
    assert_eq!(received, expected, "UDP A → B");
    let red_pcap = core.stop();

    // The core carries A → B under 2001 and B → A under 1001, one label (S = 1), with the
    // label TTL equal to the IP TTL (uniform mode: 64 less PE1's or PE2's hop).
    let fields = [
        "mpls.label",
        "mpls.bottom",
        "mpls.ttl",
        "ip.ttl",
        "ip.src",
        "ip.dst",
        "ip.proto",
    ];
    let labelled = tshark(&red_pcap, "mpls", &fields);
    let a_to_b: Vec<_> = labelled.iter().filter(|f| f[4] == "10.1.0.2").collect();
    let b_to_a: Vec<_> = labelled.iter().filter(|f| f[4] == "10.2.0.2").collect();
    assert!(
        a_to_b.len() >= 11,
        "A → B on the core (≥ 8 echo requests + 3 datagrams): {labelled:?}"
    );
    assert!(
        b_to_a.len() >= 8,
        "B → A on the core (≥ 8 echo replies): {labelled:?}"
    );
    for f in &a_to_b {
        assert_eq!(
            f[..4],
            ["2001", "1", "63", "63"],
            "A → B frame (label, S, label TTL, IP TTL): {f:?}"
        );
        assert_eq!(f[5], "10.2.0.2", "{f:?}");
    }
    for f in &b_to_a {
        assert_eq!(
            f[..4],
            ["1001", "1", "63", "63"],
            "B → A frame (label, S, label TTL, IP TTL): {f:?}"
        );
        assert_eq!(f[5], "10.1.0.2", "{f:?}");
    }
    assert_eq!(
        a_to_b.iter().filter(|f| f[6] == "17").count(),
        3,
        "UDP on the core: {a_to_b:?}"
    );
    assert_eq!(
        labelled.len(),
        a_to_b.len() + b_to_a.len(),
        "other labelled frames: {labelled:?}"
    );
    // PE1 found PE2 by ARP gleaning: a request for 192.0.2.2, answered by PE2 (which
    // learned PE1 from the request).
    let arp = tshark(
        &red_pcap,
        "arp",
        &[
            "arp.opcode",
            "arp.src.proto_ipv4",
            "arp.dst.proto_ipv4",
            "arp.src.hw_mac",
        ],
    );
    assert!(
        arp.iter()
            .any(|f| f[..3] == ["1", "192.0.2.1", "192.0.2.2"]),
        "PE1 did not ARP for PE2: {arp:?}"
    );
    assert!(
        arp.iter()
            .any(|f| f[0] == "2" && f[1] == "192.0.2.2" && f[3] == PE2_CORE0_MAC),
        "PE2 did not answer PE1's ARP: {arp:?}"
    );

    // Blue: the same addresses, another VPN label; red hosts see nothing of it and blue
    // hosts nothing of red.
    let core = vpn.capture_core("blue");
    let on_red_b = Capture::start(
        &vpn.red_b,
        "eth0",
        &vpn.scratch.join("red-b.pcap"),
        &["icmp"],
    );
    warm_up(&vpn.blue_a, "10.2.0.2", &vpn);
    let (replies, text) = ping(&vpn.blue_a, "10.2.0.2", 5);
    assert_eq!(
        replies,
        5,
        "blue A' → B': {replies}/5 replies\n{text}\n{}",
        vpn.logs()
    );
    let blue_pcap = core.stop();
    let red_b_pcap = on_red_b.stop();
    let labelled = tshark(&blue_pcap, "mpls", &fields);
    for (src, dst, label) in [
        ("10.1.0.2", "10.2.0.2", "2002"),
        ("10.2.0.2", "10.1.0.2", "1002"),
    ] {
        let way: Vec<_> = labelled.iter().filter(|f| f[4] == src).collect();
        assert!(
            way.len() >= 6,
            "blue {src} → {dst} on the core: {labelled:?}"
        );
        for f in way {
            assert_eq!(
                f[..6],
                [label, "1", "63", "63", src, dst],
                "blue frame (label, S, label TTL, IP TTL, source, destination): {f:?}"
            );
        }
    }
    assert_eq!(
        labelled
            .iter()
            .filter(|f| f[4] != "10.1.0.2" && f[4] != "10.2.0.2")
            .count(),
        0,
        "{labelled:?}"
    );
    let leaked = tshark(&red_b_pcap, "icmp", &["ip.src", "ip.dst", "icmp.type"]);
    assert_eq!(
        leaked,
        Vec::<Vec<String>>::new(),
        "red host B saw blue's ICMP"
    );

    let on_blue_b = Capture::start(
        &vpn.blue_b,
        "eth0",
        &vpn.scratch.join("blue-b.pcap"),
        &["icmp"],
    );
    let on_red_b = Capture::start(
        &vpn.red_b,
        "eth0",
        &vpn.scratch.join("red-b2.pcap"),
        &["icmp"],
    );
    let (replies, text) = ping(&vpn.red_a, "10.2.0.2", 5);
    assert_eq!(replies, 5, "red A → B again: {replies}/5\n{text}");
    let blue_b_pcap = on_blue_b.stop();
    let red_b_pcap = on_red_b.stop();
    let leaked = tshark(&blue_b_pcap, "icmp", &["ip.src", "ip.dst", "icmp.type"]);
    assert_eq!(
        leaked,
        Vec::<Vec<String>>::new(),
        "blue host B' saw red's ICMP"
    );
    let seen = tshark(&red_b_pcap, "icmp", &["ip.src", "ip.dst", "icmp.type"]);
    assert_eq!(
        seen.len(),
        10,
        "red host B: 5 requests and 5 replies: {seen:?}"
    );

    // The counters agree. Red: A sent 15 echo requests and 3 datagrams and got at least 13
    // replies, so at least 16 requests and datagrams crossed the core under 2001 and 13
    // replies under 1001; each was looked up in red on both PEs. Blue: at least 6 each way.
    let pe1 = counters(&vpn.pe1_dp);
    let pe2 = counters(&vpn.pe2_dp);
    for (dp, counters, section, label, least) in [
        ("pe1", &pe1, "labels_out", "2001", 16),
        ("pe1", &pe1, "labels_in", "1001", 13),
        ("pe1", &pe1, "labels_out", "2002", 6),
        ("pe1", &pe1, "labels_in", "1002", 6),
        ("pe2", &pe2, "labels_in", "2001", 16),
        ("pe2", &pe2, "labels_out", "1001", 13),
        ("pe2", &pe2, "labels_in", "2002", 6),
        ("pe2", &pe2, "labels_out", "1002", 6),
    ] {
        let counted = packets(counters, section, label);
        assert!(
            counted >= least,
            "{dp} {section} {label}: {counted} < {least}\n{counters:#}"
        );
    }
    // With the express tier on (the default; `cargo xtask test` runs these tests again with
    // CARRIER_EXPRESS=0, the AF_XDP path alone), the XDP program forwarded the pushes
    // (customer port) and pops (core port) itself, and the counters above include them.
    if std::env::var("CARRIER_EXPRESS").as_deref() != Ok("0") {
        for (dp, counters, port) in [("pe1", &pe1, "ce0"), ("pe1", &pe1, "core0"), ("pe2", &pe2, "ce0"), ("pe2", &pe2, "core0")] {
            let n = counters["xdp"][port]["express_forwarded"].as_u64().unwrap_or(0);
            assert!(n >= 5, "{dp} {port}: the express tier forwarded {n} frames\n{counters:#}");
        }
    }
    for (dp, counters) in [("pe1", &pe1), ("pe2", &pe2)] {
        for (vrf, least) in [("red", 29), ("blue", 12)] {
            let counted = packets(&counters["vrfs"], vrf, "lookups");
            assert!(
                counted >= least,
                "{dp} lookups in {vrf}: {counted} < {least}\n{counters:#}"
            );
        }
        // ARP gleaning: each PE asked for a MAC it missed and learned the answers.
        for event in ["arp-request-sent", "neighbour-learned"] {
            assert!(
                counters["events"][event].as_u64().unwrap_or(0) >= 1,
                "{dp} {event}: {counters:#}"
            );
        }
    }
}

/// The host's neighbour entry for `ip` on `eth0`: (lladdr, states), as `ip -j neigh` says.
fn neighbour(ns: &NetNs, ip: &str) -> Option<(Option<String>, Vec<String>)> {
    let json = ns.run(&["ip", "-j", "neigh", "show", "dev", "eth0", "to", ip]);
    let entries: serde_json::Value = serde_json::from_str(&json).expect("ip -j prints JSON");
    let entry = entries.as_array()?.iter().find(|e| e["dst"] == ip)?;
    let lladdr = entry["lladdr"].as_str().map(str::to_owned);
    let states = entry["state"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some((lladdr, states))
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn proxy_arp_routed_mode() {
    // Host A thinks all of 10.1.0.0/16 is on its link, so it ARPs for 10.1.5.5 itself;
    // PE1's red routes 10.1.5.0/24 to PE2 (host B has 10.1.5.5), and ce0 has proxy ARP.
    let vpn = L3vpn::new(16);
    let (replies, text) = ping(&vpn.red_a, "10.1.0.1", 2);
    assert_eq!(replies, 2, "gateway: {replies}/2\n{text}\n{}", vpn.logs());
    warm_up(&vpn.red_a, "10.1.5.5", &vpn);
    let (replies, text) = ping(&vpn.red_a, "10.1.5.5", 3);
    assert_eq!(
        replies, 3,
        "10.1.5.5 through proxy ARP and the VPN: {replies}/3\n{text}"
    );
    // Not answered: 10.1.9.9, which red does not route, and 10.1.0.77, which red routes
    // back out of ce0 (the host must find it on the link itself).
    for unanswered in ["10.1.9.9", "10.1.0.77"] {
        let (replies, text) = ping(&vpn.red_a, unanswered, 1);
        assert_eq!(replies, 0, "{unanswered} answered:\n{text}");
    }

    let neighbours = vpn.red_a.run(&["ip", "neigh", "show", "dev", "eth0"]);
    for resolved in ["10.1.0.1", "10.1.5.5"] {
        let Some((lladdr, states)) = neighbour(&vpn.red_a, resolved) else {
            panic!("no neighbour entry for {resolved}:\n{neighbours}");
        };
        assert_eq!(
            lladdr.as_deref(),
            Some(PE1_CE0_MAC),
            "{resolved}:\n{neighbours}"
        );
        assert!(
            states
                .iter()
                .any(|s| ["REACHABLE", "STALE", "DELAY", "PROBE"].contains(&s.as_str())),
            "{resolved} in state {states:?}:\n{neighbours}"
        );
    }
    for unanswered in ["10.1.9.9", "10.1.0.77"] {
        let Some((lladdr, states)) = neighbour(&vpn.red_a, unanswered) else {
            panic!("no neighbour entry for {unanswered} (was it ARPed?):\n{neighbours}");
        };
        assert_eq!(lladdr, None, "{unanswered} was answered:\n{neighbours}");
        assert!(
            states.iter().any(|s| s == "INCOMPLETE" || s == "FAILED"),
            "{unanswered} in state {states:?}:\n{neighbours}"
        );
    }

    let pe1 = counters(&vpn.pe1_dp);
    let events = &pe1["events"];
    assert!(
        events["arp-reply-proxy"].as_u64().unwrap_or(0) >= 1,
        "{pe1:#}"
    );
    assert!(
        events["arp-reply-own"].as_u64().unwrap_or(0) >= 1,
        "{pe1:#}"
    );
    // The host sends at least one request for each unanswered address; the dataplane hands
    // requests it does not answer to PE1's host stack (red's mirror of ce0), which answers
    // only for its own addresses: nothing came back above.
    let to_host = pe1["ports"]["ce0"]["to_host"].as_u64().unwrap_or(0);
    assert!(to_host >= 2, "ce0 to_host {to_host}: {pe1:#}");
}

/// The hops `traceroute -n` printed: (hop, address or `*`).
fn traceroute_hops(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let hop = words.next()?.parse().ok()?;
            Some((hop, words.next()?.to_owned()))
        })
        .collect()
}

/// The `ttl=` of each reply in ping's output.
fn reply_ttls(text: &str) -> Vec<u8> {
    text.lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix("ttl=")?.parse().ok())
        })
        .collect()
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn icmp_ping_and_traceroute() {
    let vpn = L3vpn::new(24);

    // PE1 answers for its own address on ce0 in both VRFs, with TTL 64.
    for host in [&vpn.red_a, &vpn.blue_a] {
        let (replies, text) = ping(host, "10.1.0.1", 3);
        assert_eq!(
            replies,
            3,
            "ping 10.1.0.1 from {}: {replies}/3\n{text}\n{}",
            host.name(),
            vpn.logs()
        );
        assert_eq!(reply_ttls(&text), [64, 64, 64], "{text}");
    }
    // PE2's red address, across the VPN: PE2 answers with 64, PE1's pop makes it 63.
    warm_up(&vpn.red_a, "10.2.0.1", &vpn);
    let (replies, text) = ping(&vpn.red_a, "10.2.0.1", 3);
    assert_eq!(replies, 3, "ping 10.2.0.1: {replies}/3\n{text}");
    assert_eq!(reply_ttls(&text), [63, 63, 63], "{text}");

    // Traceroute to host B: PE1 (TTL expires on ce0), PE2 (the label TTL expires on the pop;
    // answered from red's source address), then B itself.
    warm_up(&vpn.red_a, "10.2.0.2", &vpn);
    let out = vpn.red_a.exec(&[
        "timeout",
        "20",
        "traceroute",
        "-n",
        "-q",
        "1",
        "-w",
        "1",
        "-m",
        "5",
        "10.2.0.2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "traceroute failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hops = traceroute_hops(&text);
    let expected: Vec<(u32, String)> = [(1, "10.1.0.1"), (2, "10.2.255.1"), (3, "10.2.0.2")]
        .map(|(n, a)| (n, a.to_owned()))
        .to_vec();
    assert_eq!(hops, expected, "traceroute:\n{text}\n{}", vpn.logs());

    let pe1 = counters(&vpn.pe1_dp);
    let pe2 = counters(&vpn.pe2_dp);
    assert!(
        pe1["events"]["icmp-echo-reply"].as_u64().unwrap_or(0) >= 6,
        "{pe1:#}"
    );
    assert!(
        pe1["events"]["icmp-time-exceeded"].as_u64().unwrap_or(0) >= 1,
        "{pe1:#}"
    );
    assert!(
        pe1["ports"]["ce0"]["drops"]["ttl-expired"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{pe1:#}"
    );
    assert!(
        pe2["events"]["icmp-echo-reply"].as_u64().unwrap_or(0) >= 3,
        "{pe2:#}"
    );
    assert!(
        pe2["events"]["icmp-time-exceeded"].as_u64().unwrap_or(0) >= 1,
        "{pe2:#}"
    );
    assert!(
        pe2["ports"]["core0"]["drops"]["mpls-ttl-expired"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{pe2:#}"
    );
}
