//! Privileged tests of carrier's EVPN/VXLAN bridging against the Linux kernel's own VTEP
//! (`ip link add .. type vxlan`), an independent implementation of RFC 7348.
//!
//! Run as root by `cargo xtask test`. The lab, every part in a namespace of its own:
//!
//! ```text
//!  host A ── ce0 ┌─────────┐ core0 ── u0 ┌────────┐ u1 ── eth0 [kernel VTEP 1] vx0 ─ br0 (host B)
//!  10.100.0.1/24 │ carrier │ 192.0.2.1   │ switch │ u2 ── eth0 [kernel VTEP 2] vx0 ─ br0 (host C)
//!                └─────────┘             └────────┘       192.0.2.2 / .3      10.100.0.2 / .3
//! ```
//!
//! carrier bridges ce0 into bridge domain VNI 100 with both kernel VTEPs in its flood list;
//! each kernel VTEP sends its own BUM traffic to carrier (`remote 192.0.2.1`) and learns MACs
//! from what it decapsulates. The underlay switch is a Linux bridge, so a capture on `u0`
//! sees exactly what carrier sends and receives on its core port. IPv6 is off everywhere so
//! that only the test's own traffic crosses the lab.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use carrier_tests::carrier::Dataplane;
use carrier_tests::netns::{self, veth_between, NetNs};

/// carrier's VTEP (and core port) address.
const PE_VTEP: &str = "192.0.2.1";
const PE_CE_MAC: &str = "02:00:00:00:02:01";
const PE_CORE_MAC: &str = "02:00:00:00:00:01";
const HOST_A: &str = "10.100.0.1";
const HOST_A_MAC: &str = "02:aa:00:00:00:01";
const VNI: u32 = 100;
const VXLAN_PORT: u16 = 4789;

/// Kernel VTEP `i` (1-based): its underlay address, its underlay MAC, and the address of the
/// host on its bridge.
fn vtep(i: usize) -> (String, String, String) {
    (
        format!("192.0.2.{}", i + 1),
        format!("02:cc:00:00:00:{:02x}", i + 1),
        format!("10.100.0.{}", i + 1),
    )
}


/// IPv6 off in `ns`, for the interfaces made after this too: no neighbour discovery, MLD or
/// router solicitations in the captures and counters.
fn disable_ipv6(ns: &NetNs) {
    ns.sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
    ns.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
}

/// The lab of the module doc, with `vteps` kernel VTEPs (1 or 2) and carrier running.
struct VxlanLab {
    // Field order is drop order: the dataplane stops before its namespaces go.
    dataplane: Dataplane,
    host_a: NetNs,
    switch: NetNs,
    vteps: Vec<NetNs>,
    _pe: NetNs,
    dir: PathBuf,
}

impl VxlanLab {
    /// carrier is given no neighbours: it resolves the kernel VTEPs by ARP on its core port.
    fn new(vteps: usize) -> VxlanLab {
        netns::require_root();
        let pe = NetNs::new("cvp");
        let host_a = NetNs::new("cva");
        let switch = NetNs::new("cvs");
        let vtep_ns: Vec<NetNs> = (1..=vteps).map(|_| NetNs::new("cvt")).collect();
        for ns in [&pe, &host_a, &switch].into_iter().chain(&vtep_ns) {
            disable_ipv6(ns);
        }

        veth_between(&pe, "ce0", &host_a, "eth0");
        pe.sh(&format!("ip link set ce0 address {PE_CE_MAC}"));
        host_a.sh(&format!("ip link set eth0 address {HOST_A_MAC}"));
        host_a.sh(&format!("ip addr add {HOST_A}/24 dev eth0"));
        host_a.sh("ethtool -K eth0 tx off");

        switch.sh("ip link add sw0 type bridge");
        switch.sh("ip link set sw0 up");
        veth_between(&pe, "core0", &switch, "u0");
        pe.sh(&format!("ip link set core0 address {PE_CORE_MAC}"));
        switch.sh("ip link set u0 master sw0");
        for (i, ns) in vtep_ns.iter().enumerate() {
            let (underlay, mac, host) = vtep(i + 1);
            let port = format!("u{}", i + 1);
            veth_between(&switch, &port, ns, "eth0");
            switch.sh(&format!("ip link set {port} master sw0"));
            ns.sh(&format!("ip link set eth0 address {mac}"));
            ns.sh(&format!("ip addr add {underlay}/24 dev eth0"));
            ns.sh("ethtool -K eth0 tx off");
            ns.sh(&format!(
                "ip link add vx0 type vxlan id {VNI} dstport {VXLAN_PORT} local {underlay} remote {PE_VTEP} dev eth0"
            ));
            ns.sh("ip link add br0 type bridge");
            ns.sh("ip link set vx0 master br0");
            ns.sh("ip link set vx0 up");
            ns.sh("ip link set br0 up");
            ns.sh(&format!("ip addr add {host}/24 dev br0"));
        }

        let flood: Vec<String> = (1..=vteps).map(|i| format!("{:?}", vtep(i).0)).collect();
        let config = format!(
            r#"[router]
router_id = "{PE_VTEP}"
vtep = "{PE_VTEP}"

[[bridge]]
name = "bd{VNI}"
vni = {VNI}
flood = [{flood}]

[[port]]
name = "ce0"
mac = "{PE_CE_MAC}"
bridge = "bd{VNI}"

[[port]]
name = "core0"
mac = "{PE_CORE_MAC}"
addresses = ["{PE_VTEP}/24"]
core = true
"#,
            flood = flood.join(", ")
        );
        let dataplane = Dataplane::start(&pe, &config);
        let dir = dataplane
            .config
            .parent()
            .expect("config is in a scratch dir")
            .to_path_buf();
        VxlanLab {
            dataplane,
            host_a,
            switch,
            vteps: vtep_ns,
            _pe: pe,
            dir,
        }
    }

    /// Counters, with what the dataplane logged when they cannot be read.
    fn counters(&self) -> serde_json::Value {
        // The worker publishes its counters every 100 ms.
        std::thread::sleep(Duration::from_millis(300));
        self.dataplane.counters()
    }
}

fn event(counters: &serde_json::Value, name: &str) -> u64 {
    counters["events"][name].as_u64().unwrap_or(0)
}

/// `ping -c count` from `ns` to `dst`; panics (with `context()`) unless every echo is answered.
fn ping_all(ns: &NetNs, dst: &str, count: u32, context: impl Fn() -> String) {
    let out = ns.exec(&[
        "ping",
        "-n",
        "-c",
        &count.to_string(),
        "-i",
        "0.2",
        "-W",
        "2",
        dst,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("{count} received")),
        "ping {dst} from {}: {}\n{stdout}\n{}",
        ns.name(),
        out.status,
        context()
    );
}

/// A tcpdump writing a pcap, started and ready (it said "listening on") when `start`
/// returns; stopped on drop. `--immediate-mode` so that SIGTERM loses nothing captured.
struct Capture {
    child: Option<Child>,
    path: PathBuf,
}

impl Capture {
    fn start(ns: &NetNs, iface: &str, filter: &str, path: PathBuf) -> Capture {
        let mut cmd = Command::new("ip");
        // `timeout` bounds it even if this process dies without dropping the guard.
        cmd.args([
            "netns",
            "exec",
            ns.name(),
            "timeout",
            "60",
            "tcpdump",
            "--immediate-mode",
            "-U",
            "-n",
            "-i",
            iface,
            "-w",
        ])
        .arg(&path)
        .args(filter.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start tcpdump");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(Ok(()));
                } else {
                    let _ = tx.send(Err(line));
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut errors = Vec::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(())) => break,
                Ok(Err(line)) => errors.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "tcpdump on {iface} in {} did not start: {errors:?}",
                        ns.name()
                    );
                }
            }
        }
        Capture {
            child: Some(child),
            path,
        }
    }

    /// Stops the capture (after a moment for frames in flight) and returns the pcap's path.
    fn stop(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(300));
        self.terminate();
        self.path.clone()
    }

    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The frames of `pcap` matching the display filter, decoded by tshark: one row per frame,
/// one column per field; a field that occurs several times (outer and inner Ethernet) is
/// joined with `|`.
fn tshark(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec![
        "tshark".to_owned(),
        "-r".to_owned(),
        pcap.to_string_lossy().into_owned(),
        "-Y".to_owned(),
        filter.to_owned(),
        "-T".to_owned(),
        "fields".to_owned(),
        "-E".to_owned(),
        "separator=;".to_owned(),
        "-E".to_owned(),
        "occurrence=a".to_owned(),
        "-E".to_owned(),
        "aggregator=|".to_owned(),
    ];
    for field in fields {
        args.push("-e".to_owned());
        args.push((*field).to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    netns::run(&args)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split(';').map(str::to_owned).collect())
        .collect()
}

/// Sends one frame (a scapy expression) from `ns` out of `iface`.
fn send_with_scapy(ns: &NetNs, iface: &str, frame: &str) {
    let script = format!("from scapy.all import *\nsendp({frame}, iface={iface:?}, verbose=0)\n");
    ns.run(&["/usr/bin/python3", "-c", &script]);
}

/// Checks one VXLAN frame carrier sent, as tshark decoded it:
/// `ip.src;ip.dst;udp.srcport;udp.dstport;vxlan.vni;eth.dst(outer|inner)`.
fn check_carrier_vxlan(row: &[String], frames: &[Vec<String>]) -> String {
    let [src, dst, sport, dport, vni, eth_dst, ..] = row else {
        panic!("short tshark row {row:?}");
    };
    assert_eq!(src, PE_VTEP, "outer source: {frames:?}");
    assert_eq!(
        dport,
        &VXLAN_PORT.to_string(),
        "outer UDP destination: {frames:?}"
    );
    let sport: u16 = sport
        .parse()
        .unwrap_or_else(|_| panic!("UDP source port {sport:?}"));
    assert!(
        sport >= 49152,
        "outer UDP source {sport} outside 49152–65535 (RFC 7348 §5): {frames:?}"
    );
    assert_eq!(vni, &VNI.to_string(), "VNI: {frames:?}");
    assert_eq!(
        eth_dst.split('|').nth(1),
        Some("ff:ff:ff:ff:ff:ff"),
        "inner destination MAC: {frames:?}"
    );
    dst.clone()
}

const VXLAN_FIELDS: &[&str] = &[
    "ip.src",
    "ip.dst",
    "udp.srcport",
    "udp.dstport",
    "vxlan.vni",
    "eth.dst",
];

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn vxlan_interop_with_kernel_vtep() {
    let lab = VxlanLab::new(2);
    let (_, _, host_b) = vtep(1);
    let vtep_b = &lab.vteps[0];
    let context = || {
        format!(
            "counters: {}\nlog:\n{}",
            lab.dataplane.counters(),
            lab.dataplane.log()
        )
    };

    // A → B, the lab's first traffic: A's ARP broadcast is flooded head-end to both kernel
    // VTEPs (carrier resolves them by ARP first: A's retry gets through), B answers through
    // its VTEP, carrier decapsulates the answer and learns B's MAC behind 192.0.2.2.
    let capture = Capture::start(&lab.switch, "u0", "", lab.dir.join("underlay.pcap"));
    ping_all(&lab.host_a, &host_b, 3, context);
    // B → A: the kernel VTEP encapsulates toward the MAC it learned from carrier.
    ping_all(vtep_b, HOST_A, 3, context);
    let pcap = capture.stop();

    let arp = format!("vxlan && arp.opcode == 1 && arp.src.proto_ipv4 == {HOST_A} && arp.dst.proto_ipv4 == {host_b}");
    let frames = tshark(&pcap, &arp, VXLAN_FIELDS);
    let mut targets: Vec<String> = frames
        .iter()
        .map(|row| check_carrier_vxlan(row, &frames))
        .collect();
    targets.sort();
    targets.dedup();
    assert_eq!(
        targets,
        [vtep(1).0, vtep(2).0],
        "A's ARP broadcast went to every VTEP of the flood list: {frames:?}"
    );

    // The kernel VTEP's frames toward carrier: VNI 100 to carrier's VTEP address, B's echo
    // reply to A and B's echo request inside.
    let icmp = |kind: u8, src: &str| {
        tshark(
            &pcap,
            &format!("vxlan && icmp.type == {kind} && ip.src == {} && ip.dst == {PE_VTEP} && ip.src == {src}", vtep(1).0),
            &["ip.src", "ip.dst", "udp.dstport", "vxlan.vni"],
        )
    };
    for (kind, what) in [(0u8, "echo replies to A"), (8, "echo requests to A")] {
        let frames = icmp(kind, &host_b);
        assert_eq!(frames.len(), 3, "the kernel VTEP's {what}: {frames:?}");
        for row in &frames {
            assert_eq!(
                row[..],
                [
                    format!("{}|{host_b}", vtep(1).0),
                    format!("{PE_VTEP}|{HOST_A}"),
                    VXLAN_PORT.to_string(),
                    VNI.to_string()
                ],
                "the kernel VTEP's {what}: {frames:?}"
            );
        }
    }
    // What carrier encapsulated, the kernel learned: A's MAC is behind carrier's VTEP.
    let fdb = vtep_b.sh("bridge fdb show dev vx0");
    assert!(
        fdb.lines()
            .any(|l| l.starts_with(HOST_A_MAC) && l.contains(&format!("dst {PE_VTEP}"))),
        "the kernel VTEP did not learn {HOST_A_MAC} behind {PE_VTEP}:\n{fdb}"
    );

    let counters = lab.counters();
    // A on ce0, B behind VTEP 192.0.2.2 (from the outer source of decapsulated frames).
    assert!(event(&counters, "mac-learned") >= 2, "{counters:#}");
    assert!(event(&counters, "replicated") >= 1, "{counters:#}");
    // The only drops: on ce0, flooded copies of A's first ARP broadcast, sent before carrier
    // had resolved the VTEPs (each became an ARP request for its VTEP); on core0, the
    // underlay switch's own IGMP reports (multicast on a routed port).
    for (port, allowed) in [("ce0", "neighbour-miss"), ("core0", "l2-multicast")] {
        let drops = counters["ports"][port]["drops"]
            .as_object()
            .expect("drops object");
        assert!(
            drops.keys().all(|reason| reason == allowed),
            "drops on {port}: {counters:#}"
        );
    }
    assert!(
        event(&counters, "neighbour-learned") >= 2,
        "both VTEPs resolved: {counters:#}"
    );

    // One broadcast in, one copy per VTEP out: carrier makes one replica and sends the
    // original as the last copy.
    let before = event(&counters, "replicated");
    let underlay = Capture::start(
        &lab.switch,
        "u0",
        &format!("udp dst port {VXLAN_PORT}"),
        lab.dir.join("flood-out.pcap"),
    );
    let ingress = Capture::start(&lab.host_a, "eth0", "arp", lab.dir.join("flood-in.pcap"));
    let probe = "10.100.0.77";
    send_with_scapy(
        &lab.host_a,
        "eth0",
        &format!("Ether(dst='ff:ff:ff:ff:ff:ff', src={HOST_A_MAC:?})/ARP(op=1, hwsrc={HOST_A_MAC:?}, psrc={HOST_A:?}, pdst={probe:?})"),
    );
    let (out_pcap, in_pcap) = (underlay.stop(), ingress.stop());
    let probe_filter = format!("arp.dst.proto_ipv4 == {probe}");
    let sent = tshark(&in_pcap, &probe_filter, &["eth.dst"]);
    assert_eq!(sent.len(), 1, "frames into ce0: {sent:?}");
    let frames = tshark(&out_pcap, &format!("vxlan && {probe_filter}"), VXLAN_FIELDS);
    let mut targets: Vec<String> = frames
        .iter()
        .map(|row| check_carrier_vxlan(row, &frames))
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [vtep(1).0, vtep(2).0],
        "one copy per VTEP: {frames:?}"
    );
    let counters = lab.counters();
    assert_eq!(event(&counters, "replicated") - before, 1, "{counters:#}");
}
