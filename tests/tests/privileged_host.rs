//! The host exception path (privileged, run by `cargo xtask test`): the PE's own stack reached
//! through the dataplane's ports, with BGP over the core link the dataplane owns.
//!
//! ```text
//!   red  10.1.0.2 ─ce-red─┐
//!                         PE (dataplane + control)  ─core0─  core: gobgpd 192.0.2.2
//!   blue 10.1.0.2 ─ce-blue┘   10.1.0.1 in red and in blue,     (no management link)
//!                             192.0.2.1/24 on core0
//! ```
//! The dataplane mirrors core0 as `cp-core0` in the PE's namespace and the customer ports
//! as `cp-ce-red` / `cp-ce-blue` in `<pe>-red` / `<pe>-blue`. What the core sends is captured
//! in the core namespace (frames the dataplane sends bypass captures on its own ports) and
//! decoded by tshark.

use std::time::{Duration, Instant};

use carrier_tests::bgp::{eventually, start_control, Daemon, GoBgp};
use carrier_tests::capture::{tshark, Capture};
use carrier_tests::carrier::{scratch_dir, Dataplane};
use carrier_tests::netns::{veth_between, NetNs};

/// Frames a second the host path takes from core0 (`host_rate`).
const CORE_HOST_RATE: u64 = 300;

const PE_DATAPLANE: &str = r#"
[router]
router_id = "10.255.0.1"

[[vrf]]
name = "red"

[[vrf]]
name = "blue"

[[port]]
name = "ce-red"
mac = "02:00:00:00:01:01"
addresses = ["10.1.0.1/24"]
vrf = "red"

[[port]]
name = "ce-blue"
mac = "02:00:00:00:01:02"
addresses = ["10.1.0.1/24"]
vrf = "blue"

[[port]]
name = "core0"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24"]
core = true
host_rate = 300
"#;

fn control_config(dp: &Dataplane) -> String {
    format!(
        r#"
[bgp]
asn = 65000
router_id = "10.255.0.1"
hold_time = 30

[dataplane]
socket = "{}"
config = "{}"

[labels]
first = 100000
last = 100999

[[neighbor]]
address = "192.0.2.2"
remote_as = 65000
families = ["vpnv4"]

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
"#,
        dp.socket.display(),
        dp.config.display()
    )
}

/// Python run in a namespace: a TCP echo server answering `tag:` + what it got, for `secs`.
const ECHO_SERVER: &str = r#"
import socket, sys, time
addr, port, tag, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), float(sys.argv[4])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port)); s.listen(8); s.settimeout(0.5)
end = time.time() + secs
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.settimeout(2)
    try:
        c.sendall(tag + b":" + c.recv(100))
    except OSError:
        pass
    c.close()
"#;

/// Python: `tcp ADDR PORT` prints what the echo server answered, or `refused` / `timeout`;
/// `udp ADDR PORT` prints `refused` when an ICMP port unreachable came back.
const CLIENT: &str = r#"
import socket, sys
kind, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if kind == "tcp":
        s = socket.create_connection((addr, port), timeout=5)
        s.sendall(b"hello"); print(s.recv(100).decode())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
        s.connect((addr, port)); s.send(b"probe"); s.recv(100); print("answered")
except ConnectionRefusedError:
    print("refused")
except (socket.timeout, TimeoutError):
    print("timeout")
"#;

/// Python: `N RATE ADDR PORT` sends N UDP datagrams at RATE a second (0: as fast as it can,
/// for at most 3 s); prints how many it sent and in how many seconds.
const SENDER: &str = r#"
import socket, sys, time
n, rate, addr, port = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start = time.time(); sent = 0
while sent < n and time.time() - start < 3.0:
    try:
        s.sendto(b"x" * 18, (addr, port)); sent += 1
    except OSError:
        pass
    if rate:
        delay = start + sent / rate - time.time()
        if delay > 0:
            time.sleep(delay)
print(sent, time.time() - start)
"#;

fn python(ns: &str, script: &str, args: &[&str]) -> String {
    let mut full = vec!["ip", "netns", "exec", ns, "python3", "-c", script];
    full.extend_from_slice(args);
    let out = std::process::Command::new(full[0]).args(&full[1..]).output().expect("run python3");
    assert!(out.status.success(), "python in {ns} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An end host on `eth0`; TX checksum offload off (over veth the kernel leaves checksums to a
/// device that never fills them, and the dataplane hands frames on as they are).
fn host(ns: &NetNs, addr: &str, gateway: Option<&str>) {
    ns.run(&["ip", "addr", "add", addr, "dev", "eth0"]);
    if let Some(gw) = gateway {
        ns.run(&["ip", "route", "add", "default", "via", gw]);
    }
    ns.sh("ethtool -K eth0 tx off");
}

/// The hops `traceroute -n` printed: (hop, address or `*`).
fn traceroute(ns: &str, dst: &str) -> Vec<(u32, String)> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "20", "traceroute", "-n", "-q", "1", "-w", "1", "-m", "4", dst])
        .output()
        .expect("run traceroute");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.to_string()))
        })
        .collect()
}

/// Packets the kernel received on `ifname` in `ns`.
fn kernel_rx(ns: &str, ifname: &str) -> u64 {
    let out = std::process::Command::new("ip").args(["-n", ns, "-s", "-j", "link", "show", ifname]).output().expect("ip -s link");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or_else(|| panic!("no rx stats for {ifname} in {ns}: {v}"))
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn host_path_serves_the_router_and_carries_bgp_over_the_core_port() {
    let pe = NetNs::new("hpe");
    let core = NetNs::new("hco");
    let red = NetNs::new("hrd");
    let blue = NetNs::new("hbl");
    veth_between(&pe, "ce-red", &red, "eth0");
    veth_between(&pe, "ce-blue", &blue, "eth0");
    veth_between(&pe, "core0", &core, "eth0");
    host(&red, "10.1.0.2/24", Some("10.1.0.1"));
    host(&blue, "10.1.0.2/24", Some("10.1.0.1"));
    host(&core, "192.0.2.2/24", None);
    let (pe_red, pe_blue) = (format!("{}-red", pe.name()), format!("{}-blue", pe.name()));
    let scratch = scratch_dir("host");

    let mut dp = Dataplane::start(&pe, PE_DATAPLANE);
    // 1. The mirrors: the port's name pattern, MAC and addresses; VRF ports' in their VRF's
    //    namespace; carrier following the port.
    let link = pe.run(&["ip", "-j", "addr", "show", "cp-core0"]);
    let link: serde_json::Value = serde_json::from_str(&link).unwrap();
    assert_eq!(link[0]["address"], "02:00:00:00:00:01", "{link}");
    assert!(link[0]["flags"].as_array().unwrap().iter().any(|f| f == "LOWER_UP"), "carrier on: {link}");
    assert!(link[0]["addr_info"].as_array().unwrap().iter().any(|a| a["local"] == "192.0.2.1" && a["prefixlen"] == 24), "{link}");
    for (ns, ifname, mac) in [(&pe_red, "cp-ce-red", "02:00:00:00:01:01"), (&pe_blue, "cp-ce-blue", "02:00:00:00:01:02")] {
        let out = std::process::Command::new("ip").args(["-n", ns, "-j", "addr", "show", ifname]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(v[0]["address"], mac, "{ifname} in {ns}: {v}\n{}", dp.log());
        assert!(v[0]["addr_info"].as_array().is_some_and(|a| a.iter().any(|a| a["local"] == "10.1.0.1")), "{v}");
    }

    // 1b. Running, the dataplane holds only what it needs: CAP_NET_ADMIN 12, CAP_NET_RAW 13,
    //     CAP_IPC_LOCK 14, CAP_SYS_RESOURCE 24, CAP_PERFMON 38, CAP_BPF 39 (not CAP_SYS_ADMIN)
    //     (capabilities(7)), in every thread, also in the bounding set; nothing inheritable.
    //     Of those, the ones this (root) test process has: a container may withhold some.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let own_bounding = own.lines().find(|l| l.starts_with("CapBnd:")).and_then(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok()).unwrap();
    let kept: u64 = [12u32, 13, 14, 24, 38, 39].iter().fold(0, |m, c| m | 1 << c) & own_bounding;
    assert!(own_bounding & !kept != 0, "this test runs with no more than the kept capabilities: it proves nothing");
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", dp.pid())).unwrap().flatten().collect();
    assert!(tasks.len() >= 3, "the dataplane's threads: {}", tasks.len());
    for task in tasks {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap();
        let cap = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}"));
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        let thread = status.lines().next().unwrap_or_default().to_string();
        for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(cap(set), kept, "{thread} {set} {:#x}, want {kept:#x}", cap(set));
        }
        assert_eq!((cap("CapInh:"), cap("CapAmb:")), (0, 0), "{thread}");
    }
    let line = dp.log().lines().find(|l| l.contains("capabilities dropped but")).map(str::to_string).unwrap_or_else(|| panic!("no capability log line:\n{}", dp.log()));
    assert!(line.contains("net_admin") && line.contains("bpf") && line.contains("bounding set"), "{line}");

    // 2. BGP from gobgpd over the core link the dataplane owns.
    let gobgp = GoBgp::start(&core, 65000, "192.0.2.2", &["192.0.2.1"]);
    let _control = start_control(&pe, &control_config(&dp));
    gobgp.wait_established("192.0.2.1", Duration::from_secs(30));
    eventually("carrier's VPNv4 routes in gobgp", Duration::from_secs(15), || {
        let rib = gobgp.cli(&["global", "rib", "-a", "vpnv4"]);
        (rib.contains("65000:1:10.1.0.0/24") && rib.contains("65000:2:10.1.0.0/24")).then_some(())
    });
    gobgp.cli(&["global", "rib", "-a", "vpnv4", "add", "10.9.0.0/24", "label", "5000", "rd", "65000:9", "rt", "65000:1", "nexthop", "192.0.2.2"]);
    let nh = eventually("10.9.0.0/24 in vrf red", Duration::from_secs(15), || dp.route("red", "10.9.0.0/24"));
    assert_eq!(nh["labels"], serde_json::json!([5000]), "{nh}");

    // 3. Traffic across the same link: from the red customer, and from red's own host stack
    //    (its default route leads into the dataplane, which routes it in red).
    let pcap = scratch.join("core.pcap");
    let capture = Capture::start(&core, "eth0", &pcap, &["mpls"]);
    let sent = python(red.name(), SENDER, &["20", "200", "10.9.0.5", "5000"]);
    assert!(sent.starts_with("20 "), "{sent}");
    let sent = python(&pe_red, SENDER, &["5", "100", "10.9.0.5", "5001"]);
    assert!(sent.starts_with("5 "), "{sent}");
    std::thread::sleep(Duration::from_millis(300));
    let pcap = capture.stop();
    let rows = tshark(&pcap, "mpls.label == 5000 && udp", &["ip.src", "udp.dstport", "ip.ttl", "mpls.bottom"]);
    let from = |src: &str, port: &str| rows.iter().filter(|r| r[0] == src && r[1] == port).collect::<Vec<_>>();
    assert_eq!(from("10.1.0.2", "5000").len(), 20, "customer traffic with VPN label 5000 on the core: {rows:?}\n{}", dp.log());
    let own = from("10.1.0.1", "5001");
    assert_eq!(own.len(), 5, "red's host stack, routed by the dataplane: {rows:?}");
    assert!(own.iter().all(|r| r[2] == "64" && r[3] == "1"), "originated: TTL 64, one label: {own:?}");

    // 4. TCP to the router: from the core to the core address (PE namespace), from the red
    //    customer to red's address (red's namespace). Blue has the same address and no
    //    server: its SYN reaches blue's stack, which refuses — never red's.
    let secs = "30";
    let _core_echo = Daemon::spawn(&pe, &scratch, "echo-core", &["python3", "-c", ECHO_SERVER, "192.0.2.1", "7000", "core", secs], &[]);
    let _red_echo = Daemon::spawn_in(&pe_red, &scratch, "echo-red", &["python3", "-c", ECHO_SERVER, "10.1.0.1", "7000", "red", secs]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(python(core.name(), CLIENT, &["tcp", "192.0.2.1", "7000"]), "core:hello", "{}", dp.log());
    assert_eq!(python(red.name(), CLIENT, &["tcp", "10.1.0.1", "7000"]), "red:hello", "{}", dp.log());
    assert_eq!(python(blue.name(), CLIENT, &["tcp", "10.1.0.1", "7000"]), "refused");

    // 5. UDP to a router address with nothing listening: ICMP port unreachable from the kernel.
    assert_eq!(python(core.name(), CLIENT, &["udp", "192.0.2.1", "9"]), "refused");
    assert_eq!(python(red.name(), CLIENT, &["udp", "10.1.0.1", "9"]), "refused");

    // 6. Traceroute (UDP probes) to a PE address completes at that address.
    assert_eq!(traceroute(core.name(), "192.0.2.1"), vec![(1, "192.0.2.1".to_string())]);
    assert_eq!(traceroute(red.name(), "10.1.0.1"), vec![(1, "10.1.0.1".to_string())]);

    let c = dp.counters();
    assert!(c["ports"]["core0"]["to_host"].as_u64().unwrap_or(0) > 0, "{c:#}");
    assert!(c["ports"]["core0"]["from_host"].as_u64().unwrap_or(0) > 0, "{c:#}");
    assert!(c["ports"]["ce-red"]["from_host"].as_u64().unwrap_or(0) > 0, "{c:#}");

    // 7. A flood toward the core address at well over 10× the host rate while customer
    //    traffic crosses the PE: the host gets at most the rate (plus the burst), the rest
    //    is counted as host-rate-limited, and the transit traffic loses nothing.
    let limited_before = c["ports"]["core0"]["drops"]["host-rate-limited"].as_u64().unwrap_or(0);
    let rx_before = kernel_rx(pe.name(), "cp-core0");
    let pcap = scratch.join("flood.pcap");
    let capture = Capture::start(&core, "eth0", &pcap, &["mpls"]);
    let start = Instant::now();
    let transit = std::thread::spawn({
        let red = red.name().to_string();
        move || python(&red, SENDER, &["400", "200", "10.9.0.5", "5002"])
    });
    let flood = python(core.name(), SENDER, &["200000", "0", "192.0.2.1", "9"]);
    let transit = transit.join().unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let host_got = kernel_rx(pe.name(), "cp-core0") - rx_before;
    let pcap = capture.stop();
    let (flood_sent, flood_secs) = flood.split_once(' ').map(|(n, s)| (n.parse::<u64>().unwrap(), s.parse::<f64>().unwrap())).unwrap();
    assert!(
        flood_sent as f64 / flood_secs >= 10.0 * CORE_HOST_RATE as f64,
        "the flood reached only {flood_sent} in {flood_secs:.2} s: not 10× the limit"
    );
    let allowed = (CORE_HOST_RATE as f64 * (elapsed + 0.5)) as u64 + 32;
    assert!(host_got <= allowed, "the host got {host_got} frames in {elapsed:.2} s; limit {CORE_HOST_RATE}/s allows {allowed}");
    let c = dp.counters();
    let limited = c["ports"]["core0"]["drops"]["host-rate-limited"].as_u64().unwrap_or(0) - limited_before;
    assert!(limited + host_got >= flood_sent * 9 / 10, "flood {flood_sent}, to the host {host_got}, rate-limited {limited}: {c:#}");
    assert!(transit.starts_with("400 "), "{transit}");
    let rows = tshark(&pcap, "mpls.label == 5000 && udp.dstport == 5002", &["ip.src"]);
    assert_eq!(rows.len(), 400, "transit traffic during the flood (flood {flood_sent} in {flood_secs:.2} s; host got {host_got})");
    // 8. The mirror's carrier follows the port's link.
    let lower_up = || {
        let v: serde_json::Value = serde_json::from_str(&pe.run(&["ip", "-j", "link", "show", "cp-core0"])).unwrap();
        v[0]["flags"].as_array().unwrap().iter().any(|f| f == "LOWER_UP")
    };
    core.sh("ip link set eth0 down");
    eventually("cp-core0 without carrier", Duration::from_secs(5), || (!lower_up()).then_some(()));
    core.sh("ip link set eth0 up");
    eventually("cp-core0 with carrier again", Duration::from_secs(5), || lower_up().then_some(()));

    println!("flood {flood_sent} datagrams in {flood_secs:.2} s; host got {host_got} in {elapsed:.2} s; rate-limited {limited}; transit 400/400");

    // 9. Killed (SIGKILL: no cleanup of its own, and without CAP_SYS_ADMIN it could not
    //    unmount them anyway), its VRF namespaces still go: the reaper it started sees it die.
    dp.kill9();
    eventually("the VRF namespaces deleted after the dataplane died", Duration::from_secs(10), || {
        [&pe_red, &pe_blue].iter().all(|ns| !std::path::Path::new("/run/netns").join(ns.as_str()).exists()).then_some(())
    });
}
