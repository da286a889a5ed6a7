//! Two carrier PEs learning each other's VPN routes through a GoBGP route reflector, and
//! forwarding between their customers over MPLS (privileged, run by `cargo xtask test`).
//!
//! ```text
//!                  gobgpd (route reflector) 10.0.0.254
//!                        │ mgmt: a Linux bridge, 10.0.0.0/24, kernel-owned (BGP)
//!              ┌─────────┴──────────┐
//!        10.0.0.1                 10.0.0.2
//!  red-a  ─ce-red─┐                          ┌─ce-red─  red-b  10.2.0.2
//!  10.1.0.2       PE1 ─core0─[wire]─core0─ PE2                (VRF red,  RT 65000:1)
//!  blue-a ─ce-blue┘ 192.0.2.1/24  192.0.2.2/24 └ce-blue─ blue-b 10.2.0.2 (VRF blue, RT 65000:2)
//!  10.1.0.2          router id 10.255.0.1 / 10.255.0.2
//! ```
//! Each PE runs `carrier-dataplane` (XDP + AF_XDP on ce-red, ce-blue and core0) and
//! `carrier-control`, whose only neighbour is the reflector. Nothing VPN-related is static:
//! each control process exports its VRFs' connected subnets as VPNv4 with its own RD, RT and
//! per-VRF label, and installs what it imports from the other PE. The dataplane configs hold
//! only the ports and an underlay route to the other PE's router id; the PEs find each
//! other's MACs by ARP. The PEs allocate labels from different ranges (PE1 100000.., PE2
//! 200000..), so that a label on the wire says which PE chose it.
//!
//! The core link runs through a bridge in the `wire` namespace: frames the dataplane sends
//! over AF_XDP skip the packet taps of its own ports, so captures are taken there and decoded
//! by tshark, independently of carrier.
//!
//! Two tests: the PEs exchange routes and forward across the core with the labels they
//! advertised, each VRF isolated from the other; and PE1's control process, killed and
//! restarted with graceful restart (RFC 4724) under a steady stream both ways, loses no packet
//! and comes back with the same labels.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use carrier_tests::bgp::{start_control, Daemon};
use carrier_tests::capture::{tshark, Capture};
use carrier_tests::carrier::{dumped_route, scratch_dir, Dataplane};
use carrier_tests::netns::{self, veth_between, NetNs};
use carrier_tests::routed::Traffic;

/// The reflector's address on the management bridge.
const RR: &str = "10.0.0.254";
const ASN: u32 = 65000;
/// Port of gobgpd's API, inside its namespace.
const GOBGP_API: &str = "50051";

/// The VRFs every PE has: name, route target (and RD number), and the same customer
/// addresses in both.
const VRFS: [(&str, u32); 2] = [("red", 1), ("blue", 2)];

/// PE `me` (1 or 2): its management address.
fn mgmt_addr(me: u8) -> String {
    format!("10.0.0.{me}")
}

/// PE `me`'s router id: BGP identifier, next hop of its VPN routes, target of the other PE's
/// underlay route.
fn router_id(me: u8) -> String {
    format!("10.255.0.{me}")
}

/// PE `me`'s route distinguisher for VRF number `n` (type 1: router id : n).
fn rd(me: u8, n: u32) -> String {
    format!("{}:{n}", router_id(me))
}

/// PE `me`'s label range: PE1 100000..=100999, PE2 200000..=200999.
fn label_range(me: u8) -> std::ops::RangeInclusive<u32> {
    let first = u32::from(me) * 100_000;
    first..=first + 999
}

/// PE `me`'s dataplane config: the two customer ports, the core port, and the underlay route
/// to the other PE's router id. No VPN route, no label, no static neighbour.
fn dataplane_config(me: u8) -> String {
    let peer = 3 - me;
    format!(
        r#"[router]
router_id = "10.255.0.{me}"
ttl_mode = "uniform"

[[vrf]]
name = "red"

[[vrf]]
name = "blue"

[[port]]
name = "ce-red"
mac = "{red_mac}"
addresses = ["10.{me}.0.1/24"]
vrf = "red"

[[port]]
name = "ce-blue"
mac = "{blue_mac}"
addresses = ["10.{me}.0.1/24"]
vrf = "blue"

[[port]]
name = "core0"
mac = "{core_mac}"
addresses = ["192.0.2.{me}/24"]
core = true

[[route]]
prefix = "10.255.0.{peer}/32"
via = "192.0.2.{peer}"
"#,
        red_mac = port_mac(me, "ce-red"),
        blue_mac = port_mac(me, "ce-blue"),
        core_mac = port_mac(me, "core0"),
    )
}

/// The MAC of PE `me`'s `port` (in the dataplane config and on the veth).
fn port_mac(me: u8, port: &str) -> String {
    let n = match port {
        "core0" => 1,
        "ce-red" => 0x10,
        "ce-blue" => 0x11,
        other => panic!("no port {other}"),
    };
    format!("02:00:00:0{me}:00:{n:02x}")
}

/// PE `me`'s control config, with graceful restart if `graceful_restart`, and the VRF
/// sections in the order `vrf_order` (names from [`VRFS`]).
fn control_config(me: u8, dp: &Dataplane, graceful_restart: Option<u16>, vrf_order: [&str; 2]) -> String {
    let range = label_range(me);
    let mut c = format!(
        r#"[bgp]
asn = {ASN}
router_id = "{rid}"
hold_time = 30
{gr}

[dataplane]
socket = "{socket}"
config = "{config}"

[labels]
first = {first}
last = {last}

[[neighbor]]
address = "{RR}"
remote_as = {ASN}
families = ["vpnv4"]
"#,
        rid = router_id(me),
        gr = graceful_restart.map(|t| format!("graceful_restart = {t}")).unwrap_or_default(),
        socket = dp.socket.display(),
        config = dp.config.display(),
        first = range.start(),
        last = range.end(),
    );
    for name in vrf_order {
        let n = vrf_number(name);
        c.push_str(&format!(
            "\n[[vrf]]\nname = \"{name}\"\nrd = \"{}\"\nimport = [\"target:{ASN}:{n}\"]\nexport = [\"target:{ASN}:{n}\"]\n",
            rd(me, n)
        ));
    }
    c
}

fn vrf_number(name: &str) -> u32 {
    VRFS.iter().find(|(v, _)| *v == name).unwrap_or_else(|| panic!("no VRF {name}")).1
}

/// A namespace without IPv6, so that router solicitations, MLD and neighbour discovery stay
/// off the links, the captures and the counters.
fn quiet_ns(prefix: &str) -> NetNs {
    let ns = NetNs::new(prefix);
    ns.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
    ns.sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
    ns
}

/// A customer host on its `eth0`: address, default gateway, no TX checksum offload (over veth
/// the kernel leaves UDP checksums to a "device" that never fills them, and carrier forwards
/// frames as they are).
fn host(ns: &NetNs, addr: &str, gateway: &str) {
    ns.run(&["ip", "addr", "add", addr, "dev", "eth0"]);
    ns.run(&["ip", "route", "add", "default", "via", gateway]);
    ns.sh("ethtool -K eth0 tx off");
}

/// A Linux bridge `br0` in `ns` without STP delays or multicast snooping.
fn bridge(ns: &NetNs, members: &[&str]) {
    ns.sh("ip link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0");
    for m in members {
        ns.sh(&format!("ip link set {m} master br0"));
    }
    ns.sh("ip link set br0 up");
}

/// Polls `f` every 200 ms until it returns `Some`, for up to `within`; panics with `what` and
/// `context()` otherwise.
fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>, context: impl Fn() -> String) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out ({within:?}) waiting for {what}\n{}", context());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One VPNv4 path in the reflector's RIB, as `gobgp -j global rib -a vpnv4` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct VpnRoute {
    rd: String,
    prefix: String,
    labels: Vec<u32>,
    next_hop: String,
    route_targets: Vec<String>,
    /// Kept by the graceful-restart helper while its advertiser is away.
    stale: bool,
}

/// gobgpd as route reflector for VPNv4, with every PE a client; graceful restart (helper and
/// per family) when `graceful_restart` is set. Stopped on drop.
struct Reflector {
    daemon: Daemon,
    ns: String,
}

impl Reflector {
    fn start(ns: &NetNs, clients: &[String], graceful_restart: Option<u16>) -> Reflector {
        let dir = scratch_dir("rr");
        let mut conf = format!("[global.config]\n  as = {ASN}\n  router-id = \"{RR}\"\n  local-address-list = [\"{RR}\"]\n");
        for c in clients {
            conf.push_str(&format!(
                "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{c}\"\n    peer-as = {ASN}\n  \
                 [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = \"{RR}\"\n  \
                 [neighbors.timers.config]\n    connect-retry = 1\n    idle-hold-time-after-reset = 1\n"
            ));
            if let Some(t) = graceful_restart {
                conf.push_str(&format!("  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = {t}\n"));
            }
            conf.push_str("  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"l3vpn-ipv4-unicast\"\n");
            if graceful_restart.is_some() {
                conf.push_str("    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n");
            }
        }
        std::fs::write(dir.join("gobgpd.toml"), &conf).expect("write gobgpd.toml");
        let daemon = Daemon::spawn(ns, &dir, "gobgpd", &["gobgpd", "-f", "gobgpd.toml", "--api-hosts", &format!("127.0.0.1:{GOBGP_API}")], &[]);
        let rr = Reflector { daemon, ns: ns.name().to_string() };
        wait_for("gobgpd's API", Duration::from_secs(10), || rr.try_cli(&["global"]), || format!("gobgpd.toml:\n{conf}\nlog:\n{}", rr.daemon.log()));
        rr
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "gobgp", "-u", "127.0.0.1", "-p", GOBGP_API])
            .args(args)
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|| panic!("gobgp {args:?} failed; gobgpd log:\n{}", self.daemon.log()))
    }

    /// The session with `addr` is established.
    fn established(&self, addr: &str) -> bool {
        self.try_cli(&["neighbor", addr]).is_some_and(|out| out.to_lowercase().contains("bgp state = established"))
    }

    /// Every VPNv4 path, sorted by RD and prefix; `None` if the CLI fails or prints something
    /// else than the expected JSON.
    fn try_vpnv4(&self) -> Option<Vec<VpnRoute>> {
        let out = self.try_cli(&["-j", "global", "rib", "-a", "vpnv4"])?;
        let rib: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
        let mut routes = vec![];
        for (key, paths) in rib.as_object()? {
            for p in paths.as_array()? {
                let nlri = &p["nlri"];
                let rd = format!("{}:{}", nlri["rd"]["admin"].as_str()?, nlri["rd"]["assigned"].as_u64()?);
                let attrs = p["attrs"].as_array()?;
                let next_hop = attrs.iter().find(|a| a["type"] == 14).and_then(|a| a["nexthop"].as_str()).unwrap_or_default().to_string();
                let route_targets = attrs
                    .iter()
                    .filter(|a| a["type"] == 16)
                    .flat_map(|a| a["value"].as_array().cloned().unwrap_or_default())
                    .filter(|c| c["subtype"] == 2)
                    .filter_map(|c| c["value"].as_str().map(str::to_string))
                    .collect();
                let route = VpnRoute {
                    rd,
                    prefix: nlri["prefix"].as_str()?.to_string(),
                    labels: nlri["labels"].as_array()?.iter().filter_map(serde_json::Value::as_u64).map(|l| l as u32).collect(),
                    next_hop,
                    route_targets,
                    stale: p["stale"].as_bool().unwrap_or(false),
                };
                assert_eq!(key, &format!("{}:{}", route.rd, route.prefix), "gobgp's key and NLRI disagree: {p}");
                routes.push(route);
            }
        }
        routes.sort_by(|a, b| (&a.rd, &a.prefix).cmp(&(&b.rd, &b.prefix)));
        Some(routes)
    }

    fn vpnv4(&self) -> Vec<VpnRoute> {
        self.try_vpnv4().unwrap_or_else(|| panic!("gobgp -j global rib -a vpnv4 failed:\n{}", self.try_cli(&["global", "rib", "-a", "vpnv4"]).unwrap_or_default()))
    }
}

/// One PE: its control process and dataplane (stopped in this order when it drops), and its
/// namespace.
struct Pe {
    control: Daemon,
    dp: Dataplane,
    me: u8,
    ns: NetNs,
}

impl Pe {
    /// The table dump of its dataplane.
    fn dump(&self) -> serde_json::Value {
        self.dp.dump()
    }

    /// The dataplane's table generation.
    fn generation(&self) -> u64 {
        let status: serde_json::Value = serde_json::from_str(&self.dp.ctl(&["status"])).expect("status JSON");
        status["generation"].as_u64().unwrap_or_else(|| panic!("no generation in {status}"))
    }

    fn logs(&self) -> String {
        format!("--- PE{} control ---\n{}\n--- PE{} dataplane ---\n{}", self.me, self.control.log(), self.me, self.dp.log())
    }
}


/// The ILM of a dump: label → action.
fn dumped_ilm(dump: &serde_json::Value) -> BTreeMap<u64, serde_json::Value> {
    dump["labels"].as_array().into_iter().flatten().filter_map(|l| Some((l["label"].as_u64()?, l["action"].clone()))).collect()
}

/// The topology of the module doc, every process running and both sessions established.
/// Fields drop in order: processes first, namespaces last.
struct Lab {
    pe1: Pe,
    pe2: Pe,
    rr: Reflector,
    red_a: NetNs,
    red_b: NetNs,
    blue_a: NetNs,
    blue_b: NetNs,
    wire: NetNs,
    _mgmt: NetNs,
    _rr_ns: NetNs,
    scratch: PathBuf,
}

impl Lab {
    fn up(graceful_restart: Option<u16>) -> Lab {
        netns::require_root();
        let mgmt = quiet_ns("pmg");
        let rr_ns = quiet_ns("prr");
        let wire = quiet_ns("pwi");
        let pe_ns = [quiet_ns("ppe1"), quiet_ns("ppe2")];
        let [red_a, red_b, blue_a, blue_b] = ["pra", "prb", "pba", "pbb"].map(quiet_ns);

        veth_between(&rr_ns, "mgmt", &mgmt, "m0");
        rr_ns.sh(&format!("ip addr add {RR}/24 dev mgmt"));
        for (i, ns) in pe_ns.iter().enumerate() {
            let me = i as u8 + 1;
            veth_between(ns, "mgmt", &mgmt, &format!("m{me}"));
            ns.sh(&format!("ip addr add {}/24 dev mgmt", mgmt_addr(me)));
            veth_between(ns, "core0", &wire, &format!("w{me}"));
            let (red, blue) = if me == 1 { (&red_a, &blue_a) } else { (&red_b, &blue_b) };
            veth_between(ns, "ce-red", red, "eth0");
            veth_between(ns, "ce-blue", blue, "eth0");
            for port in ["core0", "ce-red", "ce-blue"] {
                ns.run(&["ip", "link", "set", "dev", port, "address", &port_mac(me, port)]);
            }
            host(red, &format!("10.{me}.0.2/24"), &format!("10.{me}.0.1"));
            host(blue, &format!("10.{me}.0.2/24"), &format!("10.{me}.0.1"));
        }
        bridge(&mgmt, &["m0", "m1", "m2"]);
        bridge(&wire, &["w1", "w2"]);

        let rr = Reflector::start(&rr_ns, &[mgmt_addr(1), mgmt_addr(2)], graceful_restart);
        let [ns1, ns2] = pe_ns;
        let start_pe = |me: u8, ns: NetNs| {
            let dp = Dataplane::start(&ns, &dataplane_config(me));
            let control = start_control(&ns, &control_config(me, &dp, graceful_restart, ["red", "blue"]));
            Pe { control, dp, me, ns }
        };
        let pe1 = start_pe(1, ns1);
        let pe2 = start_pe(2, ns2);
        let lab = Lab { pe1, pe2, rr, red_a, red_b, blue_a, blue_b, wire, _mgmt: mgmt, _rr_ns: rr_ns, scratch: scratch_dir("bgppe") };
        for me in [1, 2] {
            wait_for(&format!("PE{me}'s session with the reflector"), Duration::from_secs(30), || lab.rr.established(&mgmt_addr(me)).then_some(()), || lab.logs());
        }
        lab
    }

    fn pe(&self, me: u8) -> &Pe {
        if me == 1 {
            &self.pe1
        } else {
            &self.pe2
        }
    }

    /// The host of `vrf` behind PE `me`.
    fn host(&self, vrf: &str, me: u8) -> &NetNs {
        match (vrf, me) {
            ("red", 1) => &self.red_a,
            ("red", _) => &self.red_b,
            (_, 1) => &self.blue_a,
            _ => &self.blue_b,
        }
    }

    fn logs(&self) -> String {
        format!(
            "{}\n{}\n--- gobgpd ---\n{}\n--- gobgp global rib -a vpnv4 ---\n{}",
            self.pe1.logs(),
            self.pe2.logs(),
            self.rr.daemon.log(),
            self.rr.try_cli(&["global", "rib", "-a", "vpnv4"]).unwrap_or_default()
        )
    }

    /// Waits until the reflector holds exactly the four routes the PEs export (each VRF's
    /// connected subnet, from each PE, not stale) and returns them.
    fn wait_for_vpn_routes(&self) -> Vec<VpnRoute> {
        wait_for(
            "the four VPNv4 routes at the reflector",
            Duration::from_secs(20),
            || self.rr.try_vpnv4().filter(|r| r.len() == 4 && r.iter().all(|r| !r.stale)),
            || self.logs(),
        )
    }

    /// Waits until both dataplanes forward the other PE's subnets with the labels the other PE
    /// advertised.
    fn wait_for_installed(&self, labels: &Labels) {
        for me in [1u8, 2] {
            let peer = 3 - me;
            let pe = self.pe(me);
            for (vrf, _) in VRFS {
                let want = serde_json::json!({"kind": "mpls-push", "labels": [labels.of(peer, vrf)], "pe": router_id(peer)});
                let prefix = format!("10.{peer}.0.0/24");
                wait_for(
                    &format!("PE{me} to install {prefix} in {vrf} with PE{peer}'s label"),
                    Duration::from_secs(10),
                    || {
                        let nh = dumped_route(&pe.dump(), vrf, &prefix).cloned()?;
                        (nh["kind"] == want["kind"] && nh["labels"] == want["labels"] && nh["pe"] == want["pe"]).then_some(())
                    },
                    || format!("want {want}\ndump: {}\n{}", pe.dump(), self.logs()),
                );
            }
        }
    }

    /// Pings `dst` from `ns` until one answer comes (up to 5 rounds of 2): the first packets
    /// of a flow may be dropped while a PE resolves a neighbour (`neighbour-miss`).
    fn warm_up(&self, ns: &NetNs, dst: &str) {
        for _ in 0..5 {
            if ping(ns, dst, 2).0 > 0 {
                return;
            }
        }
        panic!("no reply from {dst} (from {}) after warm-up pings\n{}", ns.name(), self.logs());
    }
}

/// The labels the PEs advertised, by PE and VRF, as the reflector reports them.
#[derive(Debug, PartialEq, Eq)]
struct Labels(BTreeMap<(u8, String), u32>);

impl Labels {
    /// Checks that `routes` are exactly what the PEs export — per PE and VRF one route with
    /// the PE's RD, the VRF's RT, the PE's router id as next hop and one label from the PE's
    /// range, the two VRFs of a PE with different labels — and returns the labels.
    fn from_routes(routes: &[VpnRoute]) -> Labels {
        let mut labels = BTreeMap::new();
        for me in [1u8, 2] {
            for (vrf, n) in VRFS {
                let route = routes
                    .iter()
                    .find(|r| r.rd == rd(me, n))
                    .unwrap_or_else(|| panic!("no route with PE{me}'s {vrf} RD {} at the reflector: {routes:#?}", rd(me, n)));
                assert_eq!(route.prefix, format!("10.{me}.0.0/24"), "{route:?}");
                assert_eq!(route.next_hop, router_id(me), "{route:?}");
                assert_eq!(route.route_targets, [format!("{ASN}:{n}")], "{route:?}");
                let [label] = route.labels[..] else { panic!("not one label: {route:?}") };
                assert!(label_range(me).contains(&label), "PE{me}'s label {label} is outside its range {:?}: {route:?}", label_range(me));
                labels.insert((me, vrf.to_string()), label);
            }
            assert_ne!(labels[&(me, "red".to_string())], labels[&(me, "blue".to_string())], "PE{me} gave both VRFs one label: {routes:#?}");
        }
        assert_eq!(routes.len(), 4, "other routes at the reflector: {routes:#?}");
        Labels(labels)
    }

    fn of(&self, me: u8, vrf: &str) -> u32 {
        self.0[&(me, vrf.to_string())]
    }
}

/// `ping -c count` from `ns` to `dst`, 0.2 s apart, waiting one second for the last reply;
/// returns the number of replies and ping's output.
fn ping(ns: &NetNs, dst: &str, count: u32) -> (u32, String) {
    let count = count.to_string();
    let out = ns.exec(&["ping", "-n", "-c", &count, "-i", "0.2", "-W", "1", dst]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let received = text
        .lines()
        .find_map(|line| line.split_once(" transmitted, ")?.1.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (received, text)
}


#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn two_pes_via_gobgp_reflector_ping_across() {
    let lab = Lab::up(None);

    // 1. The reflector holds each PE's two VRF subnets as VPNv4, with the PE's RD, the VRF's
    //    RT, the PE as next hop and a per-VRF label from the PE's own range.
    let routes = lab.wait_for_vpn_routes();
    let labels = Labels::from_routes(&routes);
    eprintln!("reflector's VPNv4 routes: {routes:#?}");

    // 2. Each PE imported the other's routes by RT (red into red, blue into blue, with the
    //    label the other PE chose) and holds its own labels in its ILM: pop, look up in the VRF.
    lab.wait_for_installed(&labels);
    for me in [1u8, 2] {
        let dump = lab.pe(me).dump();
        let ilm = dumped_ilm(&dump);
        for (vrf, n) in VRFS {
            let action = ilm.get(&u64::from(labels.of(me, vrf))).unwrap_or_else(|| panic!("PE{me}'s {vrf} label is not in its ILM: {dump}"));
            assert_eq!(action["action"], "pop-lookup", "PE{me} {vrf}: {action}");
            // VRF ids are given in the dataplane config's order: red 0, blue 1.
            assert_eq!(action["vrf"], n - 1, "PE{me}'s {vrf} label pops into another VRF: {action}");
        }
        assert_eq!(ilm.len(), 2, "PE{me}'s ILM holds other labels: {dump}");
    }

    // 3. Each VRF's hosts reach each other across the core, and the core carries their packets
    //    under exactly the label the destination PE advertised (one label, bottom of stack).
    //    A second address that only blue-b has is reachable in blue and not in red.
    lab.blue_b.sh("ip addr add 10.2.0.9/32 dev lo");
    let fields = ["mpls.label", "mpls.bottom", "ip.src", "ip.dst", "icmp.type"];
    for (vrf, _) in VRFS {
        let other = if vrf == "red" { "blue" } else { "red" };
        let (a, b) = (lab.host(vrf, 1), lab.host(vrf, 2));
        lab.warm_up(a, "10.2.0.2");
        lab.warm_up(b, "10.1.0.2");
        if vrf == "blue" {
            lab.warm_up(a, "10.2.0.9");
        }
        let core = Capture::start(&lab.wire, "w1", &lab.scratch.join(format!("{vrf}-core.pcap")), &[]);
        let leak = [1u8, 2].map(|me| Capture::start(lab.host(other, me), "eth0", &lab.scratch.join(format!("{vrf}-leak-{me}.pcap")), &[]));
        for (from, to, name) in [(a, "10.2.0.2", "A → B"), (b, "10.1.0.2", "B → A")] {
            let (got, text) = ping(from, to, 5);
            assert_eq!(got, 5, "{vrf} {name}: {text}\n{}", lab.logs());
        }
        let (got, text) = ping(a, "10.2.0.9", 3);
        match vrf {
            "blue" => assert_eq!(got, 3, "blue A → 10.2.0.9 (blue-b's): {text}\n{}", lab.logs()),
            _ => assert_eq!(got, 0, "red A reached 10.2.0.9, an address only blue-b has: {text}"),
        }
        std::thread::sleep(Duration::from_millis(200));
        let pcap = core.stop();
        let leaks = leak.map(Capture::stop);

        let frames = tshark(&pcap, "mpls", &fields);
        let count = |src: &str, dst: &str, icmp: &str| frames.iter().filter(|f| f[2] == src && f[3] == dst && f[4] == icmp).count();
        // A → B: 5 echo requests, 5 replies to B's echoes; B → A the same. In blue, 3 more
        // echoes to 10.2.0.9 and their replies; in red those 3 requests go out unanswered.
        let extra = if vrf == "blue" { 3 } else { 0 };
        assert_eq!(count("10.1.0.2", "10.2.0.2", "8"), 5, "{vrf}: A → B echo requests on the core: {frames:?}");
        assert_eq!(count("10.1.0.2", "10.2.0.2", "0"), 5, "{vrf}: A → B echo replies on the core: {frames:?}");
        assert_eq!(count("10.2.0.2", "10.1.0.2", "8"), 5, "{vrf}: B → A echo requests on the core: {frames:?}");
        assert_eq!(count("10.2.0.2", "10.1.0.2", "0"), 5, "{vrf}: B → A echo replies on the core: {frames:?}");
        assert_eq!(count("10.1.0.2", "10.2.0.9", "8"), 3, "{vrf}: A → 10.2.0.9 echo requests on the core: {frames:?}");
        assert_eq!(count("10.2.0.9", "10.1.0.2", "0"), extra, "{vrf}: 10.2.0.9 → A echo replies on the core: {frames:?}");
        assert_eq!(frames.len(), 20 + 3 + extra, "{vrf}: other labelled frames on the core: {frames:?}");
        for f in &frames {
            let to_pe = if f[2] == "10.1.0.2" { 2 } else { 1 };
            let want = labels.of(to_pe, vrf).to_string();
            assert_eq!([f[0].as_str(), f[1].as_str()], [want.as_str(), "1"], "{vrf} frame {f:?}: want PE{to_pe}'s {vrf} label {want}, alone");
        }
        for (me, leak) in [1, 2].iter().zip(&leaks) {
            let seen = tshark(leak, "icmp", &["ip.src", "ip.dst", "icmp.type"]);
            assert!(seen.is_empty(), "{vrf} ICMP reached the {other} host behind PE{me}: {seen:?}");
        }
    }
}

/// Clears a flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// The `Udp:` counters of `/proc/net/snmp` in `ns`: `InDatagrams`, `RcvbufErrors`, ...
fn udp_snmp(ns: &NetNs) -> BTreeMap<String, u64> {
    let snmp = ns.run(&["cat", "/proc/net/snmp"]);
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else { panic!("no Udp: lines in {snmp}") };
    names.split_whitespace().zip(values.split_whitespace()).skip(1).filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?))).collect()
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn control_restart_keeps_forwarding() {
    const GR: u16 = 120;
    /// A → B, through PE1's FIB: lost if PE1's first flush after the restart lacks the route.
    const PPS_AB: u64 = 10_000;
    /// B → A, to PE1's label: lost if PE1 changes or drops its label across the restart.
    const PPS_BA: u64 = 2_000;
    const SECS: u64 = 15;
    let mut lab = Lab::up(Some(GR));
    let routes = lab.wait_for_vpn_routes();
    let labels = Labels::from_routes(&routes);
    lab.wait_for_installed(&labels);
    lab.warm_up(&lab.red_a, "10.2.0.2");
    lab.warm_up(&lab.red_b, "10.1.0.2");
    let ilm_before = dumped_ilm(&lab.pe1.dump());
    let generation_before = lab.pe1.generation();
    let first_log = lab.pe1.control.log.clone();
    let neighbor = lab.rr.cli(&["neighbor", &mgmt_addr(1)]);
    assert!(
        neighbor.lines().any(|l| l.trim().starts_with("graceful-restart:") && l.contains("advertised and received")),
        "graceful restart not negotiated with PE1:\n{neighbor}"
    );

    let udp_before = [udp_snmp(&lab.red_b), udp_snmp(&lab.red_a)];
    let recv_b = Traffic::receiver(&lab.red_b, "10.2.0.2:7000", SECS + 10);
    let recv_a = Traffic::receiver(&lab.red_a, "10.1.0.2:7001", SECS + 10);
    let send_ab = Traffic::start(&lab.red_a, "send", &["--dst", "10.2.0.2:7000", "--pps", &PPS_AB.to_string(), "--secs", &SECS.to_string()]);
    let send_ba = Traffic::start(&lab.red_b, "send", &["--dst", "10.1.0.2:7001", "--pps", &PPS_BA.to_string(), "--secs", &SECS.to_string()]);
    let t0 = Instant::now();
    let at = |secs: f64| std::thread::sleep(Duration::from_secs_f64(secs).saturating_sub(t0.elapsed()));
    let mut timeline = vec![];
    let pe1_routes: Vec<VpnRoute> = routes.iter().filter(|r| r.next_hop == router_id(1)).cloned().collect();

    // The reflector is watched from the start of the stream until PE1 is back: the four
    // routes must stay, with their labels, the whole time.
    let watching = AtomicBool::new(true);
    let (snapshots, down, back) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut seen = vec![];
            while watching.load(Ordering::Relaxed) {
                seen.push((t0.elapsed(), lab.rr.try_vpnv4()));
                std::thread::sleep(Duration::from_millis(150));
            }
            seen
        });
        // Stops the watcher when this closure ends, also by a panic (the scope joins it).
        let stop = StopOnDrop(&watching);

        at(3.0);
        lab.pe1.control.kill9();
        timeline.push(format!("PE1's control killed at {:.2} s", t0.elapsed().as_secs_f64()));
        // Right after the kill: the reflector saw the session drop and keeps PE1's routes as
        // stale (RFC 4724 helper), labels unchanged.
        wait_for("the reflector to see PE1's session drop", Duration::from_secs(3), || (!lab.rr.established(&mgmt_addr(1))).then_some(()), || lab.logs());
        let during = lab.rr.vpnv4();
        let down = t0.elapsed();
        timeline.push(format!("session down at the reflector at {:.2} s", down.as_secs_f64()));
        for r in &pe1_routes {
            assert!(
                during.contains(&VpnRoute { stale: true, ..r.clone() }),
                "right after the kill the reflector lost or changed PE1's {r:?}, or does not hold it as stale: {during:#?}\n{}",
                lab.logs()
            );
        }

        // The restart reorders the VRF sections: an allocation that followed the config order
        // would swap red's and blue's labels, and B's traffic to PE1's red label would land in
        // blue until PE2 learned the new labels.
        at(4.0);
        lab.pe1.control = start_control(&lab.pe1.ns, &control_config(1, &lab.pe1.dp, Some(GR), ["blue", "red"]));
        timeline.push(format!("PE1's control restarted at {:.2} s", t0.elapsed().as_secs_f64()));
        wait_for("PE1's session to come back", Duration::from_secs(10), || lab.rr.established(&mgmt_addr(1)).then_some(()), || lab.logs());
        let back = t0.elapsed();
        timeline.push(format!("session re-established at {:.2} s", back.as_secs_f64()));
        wait_for("PE1's first table replace after the restart", Duration::from_secs(10), || (lab.pe1.generation() > generation_before).then_some(()), || lab.logs());
        timeline.push(format!("PE1's dataplane replaced at {:.2} s", t0.elapsed().as_secs_f64()));
        wait_for("PE1's routes refreshed at the reflector", Duration::from_secs(10), || lab.rr.try_vpnv4().filter(|r| r.iter().all(|r| !r.stale)), || lab.logs());
        timeline.push(format!("PE1's routes refreshed at {:.2} s", t0.elapsed().as_secs_f64()));
        drop(stop);
        (watcher.join().expect("watcher"), down, back)
    });
    let refreshed_at = t0.elapsed();
    let (sent_ab, got_b, sent_ba, got_a) = (send_ab.report(), recv_b.report(), send_ba.report(), recv_a.report());
    // What each receiving host's kernel counted during the stream: datagrams delivered to the
    // socket, and datagrams it dropped because the receiver (starved of CPU) let its socket
    // buffer fill. Both mean the routers delivered the datagram.
    let udp = [(&lab.red_b, &udp_before[0]), (&lab.red_a, &udp_before[1])].map(|(ns, before)| {
        let after = udp_snmp(ns);
        let delta = |k: &str| after[k] - before[k];
        (delta("InDatagrams"), delta("RcvbufErrors"), delta("NoPorts"))
    });
    let report = format!(
        "timeline {timeline:?}\nA → B: sender {sent_ab}, receiver {got_b}\nB → A: sender {sent_ba}, receiver {got_a}\n\
         UDP (in, socket buffer full, no port) at B, A: {udp:?}\n\
         (gaps are sequence numbers: seq / pps = seconds after the start)\n--- PE1's first control ---\n{}\n{}\n\
         --- PE1 counters ---\n{:#}\n--- PE2 counters ---\n{:#}",
        std::fs::read_to_string(&first_log).unwrap_or_default(),
        lab.logs(),
        lab.pe1.dp.counters(),
        lab.pe2.dp.counters(),
    );
    eprintln!("timeline: {timeline:?}\nA → B: {sent_ab} / {got_b}\nB → A: {sent_ba} / {got_a}\n(in, socket buffer full, no port) at B, A: {udp:?}");

    // The whole restart happened while the traffic ran (with 2 s to spare).
    assert!(refreshed_at + Duration::from_secs(2) < Duration::from_secs(SECS), "the restart outlasted the traffic: {report}");
    // Nothing lost by the routers either way: every datagram sent reached the receiving
    // host's UDP layer, counted by its kernel. The receiver got all of them but those its
    // kernel counted as dropped for a full socket buffer — a receiver starved of CPU by the
    // tests running beside this one, not a loss in the network.
    for ((pps, sent, got), (delivered, buffer_full, no_port)) in [(PPS_AB, &sent_ab, &got_b), (PPS_BA, &sent_ba, &got_a)].into_iter().zip(udp) {
        let n = sent["sent"].as_u64().expect("sent");
        assert!(n >= pps * SECS * 9 / 10, "a sender fell behind its pace: {report}");
        assert_eq!(sent["errors"], 0, "{report}");
        assert_eq!(no_port, 0, "datagrams reached a host without its receiver: {report}");
        assert_eq!(delivered + buffer_full, n, "datagrams lost in the network: {report}");
        assert_eq!(got["unique"].as_u64(), Some(delivered), "the receiver and its kernel disagree: {report}");
        assert_eq!(got["duplicates"], 0, "{report}");
    }
    // The reflector held the four routes, with their labels, at every look — several of them
    // while PE1 was away.
    let away = snapshots.iter().filter(|(when, _)| (down..back).contains(when)).count();
    assert!(away >= 5, "{away} looks at the reflector while PE1 was away: {snapshots:?}");
    for (when, rib) in &snapshots {
        let rib = rib.as_ref().unwrap_or_else(|| panic!("gobgp failed at {when:?}: {report}"));
        let unmarked: Vec<VpnRoute> = rib.iter().map(|r| VpnRoute { stale: false, ..r.clone() }).collect();
        assert_eq!(unmarked, routes, "at {when:?} the reflector's routes differ: {report}");
    }
    // The restarted process was a restarting speaker and waited for the reflector's
    // End-of-RIB before it replaced the dataplane's tables.
    let log = lab.pe1.control.log();
    assert!(log.contains("restarting speaker"), "{report}");
    assert!(log.contains("no longer deferred (End-of-RIB from every peer)"), "{report}");
    // Converged to the same state: same routes and labels at the reflector, same ILM at PE1,
    // PE2 still pushing PE1's labels.
    assert_eq!(lab.rr.vpnv4(), routes, "{report}");
    assert_eq!(dumped_ilm(&lab.pe1.dump()), ilm_before, "PE1's ILM changed across the restart: {report}");
    lab.wait_for_installed(&labels);
}
