//! The pseudo-WAN demo network (`cargo xtask run`): two carrier PEs fed by BGP through a GoBGP
//! route reflector, four VRFs with the same customer addresses, an EVPN/VXLAN bridge domain
//! that a kernel VXLAN VTEP joins as a foreign PE, a routed-mode (proxy-ARP) customer, and a
//! Prometheus server scraping both PEs. [`DRAWING`] shows it.
//!
//! Every namespace is named `cdemo-…` (fixed names, so that a later run finds and removes what
//! a crashed one left: [`remove_leftovers`]); every process runs inside one of them. Dropping
//! [`PseudoWan`] stops the processes and deletes the namespaces.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bgp::{Daemon, GoBgp};
use crate::carrier::Dataplane;
use crate::netns::{veth_between, NetNs};

/// Every namespace of the demo starts with this.
pub const PREFIX: &str = "cdemo-";
/// The AS of the PEs and the route reflector.
pub const ASN: u32 = 65000;
/// The VRFs; VRF `i` (0-based) has route target and RD number `i + 1`. All four use the same
/// customer addresses: 10.1.0.0/24 behind PE1, 10.2.0.0/24 behind PE2.
pub const VRFS: [&str; 4] = ["red", "blue", "green", "yellow"];
/// The route reflector's address on the core.
pub const RR: &str = "192.0.2.254";
/// The kernel VXLAN VTEP's address on the core.
pub const KERNEL_VTEP: &str = "192.0.2.9";
/// The EVPN bridge domain's VNI (route target ASN:VNI, RFC 8365).
pub const VNI: u32 = 100;
/// The routed-mode customer: a /32 behind PE2 in VRF red, default route on-link.
pub const ROUTED_HOST: &str = "10.9.0.5";
/// The Prometheus server's address on the management network.
pub const OPS: &str = "172.31.0.254";
/// The control API's port on every PE (all addresses of the PE's namespace).
pub const API_PORT: u16 = 9179;
/// The bearer token for API writes.
pub const TOKEN: &str = "carrier-demo";

/// What the demo builds.
pub const DRAWING: &str = r"
                  cdemo-rr  gobgpd route reflector 192.0.2.254, AS 65000
                                       |
  cdemo-vtep  kernel VXLAN VTEP ------ + ------ core 192.0.2.0/24 (a bridge in cdemo-core);
  192.0.2.9, host 10.100.0.9           |        BGP runs over it, through the PEs' host path
                 +---------------------+---------------------+
                 | core0 192.0.2.1                            | core0 192.0.2.2
          +-------------+                              +-------------+
  red1  --|  cdemo-pe1  |  MPLS L3VPN: VPN label per   |  cdemo-pe2  |-- red2     10.2.0.2
  blue1 --|  carrier    |  VRF, VPNv4 via the RR       |  carrier    |-- blue2    10.2.0.2
  green1--|  10.255.0.1 |                              |  10.255.0.2 |-- green2   10.2.0.2
  yellow1-|             |  EVPN VNI 100: type 2/3,     |             |-- yellow2  10.2.0.2
  evpn1 --|             |  VXLAN, head-end replication |             |-- evpn2    10.100.0.2
          +-------------+                              +-------------+-- routed   10.9.0.5/32
   10.1.0.2 in each VRF, | mgmt 172.31.0.1          172.31.0.2 |     (red, proxy ARP)
   evpn1 10.100.0.1      +---- cdemo-ops: Prometheus 172.31.0.254:9090 ----+
";

/// The binaries the demo runs, side by side in one target directory.
#[derive(Clone, Debug)]
pub struct Bins {
    /// carrier-dataplane.
    pub dataplane: PathBuf,
    /// carrier-control.
    pub control: PathBuf,
    /// carrierctl.
    pub carrierctl: PathBuf,
}

impl Bins {
    /// The binaries next to `exe` (the demo's own executable).
    pub fn next_to(exe: &Path) -> Bins {
        let dir = exe.parent().unwrap_or(Path::new("."));
        Bins { dataplane: dir.join("carrier-dataplane"), control: dir.join("carrier-control"), carrierctl: dir.join("carrierctl") }
    }
}

/// PE `me`'s router id (BGP identifier, VPNv4 next hop).
pub fn router_id(me: u8) -> String {
    format!("10.255.0.{me}")
}

/// PE `me`'s address on the core (its VTEP).
pub fn core_addr(me: u8) -> String {
    format!("192.0.2.{me}")
}

/// PE `me`'s management address (API, metrics).
pub fn mgmt_addr(me: u8) -> String {
    format!("172.31.0.{me}")
}

/// The MAC of PE `me`'s port `port`, in the dataplane config and on the veth.
fn port_mac(me: u8, port: &str) -> String {
    let n = match port {
        "core0" => 0x01,
        "ce-evpn" => 0x30,
        "ce-routed" => 0x20,
        vrf => 0x10 + VRFS.iter().position(|v| format!("ce-{v}") == vrf).expect("a VRF port") as u8,
    };
    format!("02:00:00:0{me}:00:{n:02x}")
}

/// The MAC of the EVPN host behind PE `me` (9: the kernel VTEP's host).
pub fn evpn_mac(me: u8) -> String {
    format!("02:ee:00:00:00:0{me}")
}

/// The EVPN host behind PE `me` (9: the kernel VTEP's).
pub fn evpn_addr(me: u8) -> String {
    format!("10.100.0.{me}")
}

/// The customer host of `vrf` behind PE `me`.
pub fn host_addr(me: u8) -> String {
    format!("10.{me}.0.2")
}

/// PE `me`'s configuration, one file read by both processes (`docs/config.md`): BGP (the
/// reflector as only neighbor, over the core port), labels, the API on every address; the
/// ports, the four VRFs with RD router-id:n and RT 65000:n, the bridge domain with its local
/// host's MAC and its EVPN instance, the underlay route to the other PE's router id. Everything
/// VPN comes from BGP. `socket`: the dataplane's table socket, which both take from here.
pub fn pe_config(me: u8, socket: &Path) -> String {
    let peer = 3 - me;
    let first = u32::from(me) * 100_000;
    let mut c = format!(
        "# carrier pseudo-WAN demo: PE{me}. One file for both processes: carrier-dataplane reads\n\
         # the ports, VRFs and bridges; carrier-control the BGP side. VPN routes, labels and EVPN\n\
         # state come from carrier-control over the table socket.\n\
         [router]\nrouter_id = \"{rid}\"\nvtep = \"{core}\"\nttl_mode = \"uniform\"\n\
         # The XDP express tier: VRF forward, MPLS push and pop in the XDP program itself.\n\
         express = true\n\n\
         [bgp]\nasn = {ASN}\nrouter_id = \"{rid}\"\nvtep = \"{core}\"\nhold_time = 30\n\n\
         [dataplane]\nsocket = \"{socket}\"\n\n\
         [labels]\nfirst = {first}\nlast = {last}\n\n\
         [api]\nlisten = \"0.0.0.0:{API_PORT}\"\ntoken = \"{TOKEN}\"\n\n\
         [[neighbor]]\naddress = \"{RR}\"\nremote_as = {ASN}\nfamilies = [\"vpnv4\", \"evpn\"]\n",
        rid = router_id(me),
        core = core_addr(me),
        socket = socket.display(),
        last = first + 999,
    );
    for (i, v) in VRFS.iter().enumerate() {
        let n = i + 1;
        c.push_str(&format!(
            "\n[[vrf]]\nname = \"{v}\"\nrd = \"{rid}:{n}\"\nimport = [\"target:{ASN}:{n}\"]\nexport = [\"target:{ASN}:{n}\"]\n",
            rid = router_id(me)
        ));
    }
    c.push_str(&format!(
        "\n[[bridge]]\nname = \"bd{VNI}\"\nvni = {VNI}\nmacs = [{{ mac = \"{}\", port = \"ce-evpn\" }}]\n\n[[evpn]]\nbridge = \"bd{VNI}\"\nrd = \"{rid}:{VNI}\"\n",
        evpn_mac(me),
        rid = router_id(me)
    ));
    for v in VRFS {
        c.push_str(&format!(
            "\n[[port]]\nname = \"ce-{v}\"\nmac = \"{}\"\naddresses = [\"10.{me}.0.1/24\"]\nvrf = \"{v}\"\n",
            port_mac(me, &format!("ce-{v}"))
        ));
    }
    c.push_str(&format!("\n[[port]]\nname = \"ce-evpn\"\nmac = \"{}\"\nbridge = \"bd{VNI}\"\n", port_mac(me, "ce-evpn")));
    if me == 2 {
        c.push_str(&format!(
            "\n# routed mode: the customer has a /32 and an on-link default route; carrier answers\n\
             # its ARP for every address VRF red routes elsewhere\n\
             [[port]]\nname = \"ce-routed\"\nmac = \"{}\"\naddresses = [\"10.9.0.1/24\"]\nvrf = \"red\"\nproxy_arp = true\n",
            port_mac(me, "ce-routed")
        ));
    }
    c.push_str(&format!(
        "\n[[port]]\nname = \"core0\"\nmac = \"{}\"\naddresses = [\"{}/24\"]\ncore = true\n\n[[route]]\nprefix = \"{}/32\"\nvia = \"{}\"\n",
        port_mac(me, "core0"),
        core_addr(me),
        router_id(peer),
        core_addr(peer)
    ));
    c
}

/// Removes what a previous run left: kills every process in a `cdemo-…` namespace and deletes
/// the namespaces (with them their veths and XDP programs). Returns how many it deleted.
pub fn remove_leftovers() -> usize {
    let names: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    for name in &names {
        let pids = Command::new("ip").args(["netns", "pids", name]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).output();
        }
    }
    if !names.is_empty() {
        // Let the killed processes go before their namespaces do.
        std::thread::sleep(Duration::from_millis(300));
    }
    for name in &names {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
    }
    names.len()
}

/// A namespace of the demo, IPv6 off (no router solicitations or MLD in captures and counters).
fn demo_ns(role: &str) -> NetNs {
    let ns = NetNs::named(&format!("{PREFIX}{role}"));
    ns.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
    ns.sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
    ns
}

/// A Linux bridge `name` in `ns` with `members`, no STP delay, no multicast snooping.
fn bridge(ns: &NetNs, name: &str, members: &[&str]) {
    ns.sh(&format!("ip link add {name} type bridge stp_state 0 forward_delay 0 mcast_snooping 0"));
    for m in members {
        ns.sh(&format!("ip link set {m} master {name}"));
    }
    ns.sh(&format!("ip link set {name} up"));
}

/// A customer host on `eth0`: its address, its route, TX checksum offload off (over veth the
/// kernel leaves checksums to a "device" that never fills them; carrier forwards frames as
/// they are), GRO on (a veth takes frames the XDP express tier redirects into it only while
/// its peer runs NAPI).
fn host(ns: &NetNs, addr: &str, route: &str) {
    ns.run(&["ip", "addr", "add", addr, "dev", "eth0"]);
    ns.sh(&format!("ip route add {route}"));
    ns.sh("ethtool -K eth0 tx off gro on");
}

/// One PE: processes first (dropped in this order), then its namespace.
#[derive(Debug)]
pub struct Pe {
    /// carrier-control.
    pub control: Daemon,
    /// carrier-dataplane.
    pub dp: Dataplane,
    /// 1 or 2.
    pub me: u8,
    /// `cdemo-pe1` / `cdemo-pe2`.
    pub ns: NetNs,
}

/// The running demo network. Fields drop in order: processes, then namespaces.
#[derive(Debug)]
pub struct PseudoWan {
    /// PE1.
    pub pe1: Pe,
    /// PE2.
    pub pe2: Pe,
    /// The route reflector.
    pub rr: GoBgp,
    /// Prometheus, scraping both PEs.
    pub prometheus: Daemon,
    /// Customer hosts: `(vrf, me)` → namespace, in [`VRFS`] order, PE1's first.
    pub hosts: Vec<(String, u8, NetNs)>,
    /// The EVPN hosts behind PE1 and PE2.
    pub evpn: [NetNs; 2],
    /// The routed-mode customer behind PE2.
    pub routed: NetNs,
    /// The kernel VXLAN VTEP (its host is its own bridge `br100`).
    pub vtep: NetNs,
    /// The core: a bridge joining the PEs' core ports, the reflector and the kernel VTEP.
    pub core: NetNs,
    /// The management network: Prometheus, the PEs' `mgmt` links.
    pub ops: NetNs,
    /// The reflector's namespace.
    pub rr_ns: NetNs,
    /// Configs, logs.
    pub dir: PathBuf,
    /// The binaries.
    pub bins: Bins,
}

impl PseudoWan {
    /// Builds the namespaces and links, then starts the reflector, the PEs and Prometheus.
    /// Configs and logs go to `dir`.
    pub fn up(dir: &Path, bins: &Bins) -> PseudoWan {
        std::fs::create_dir_all(dir).expect("create the demo's directory");
        let core = demo_ns("core");
        let ops = demo_ns("ops");
        let rr_ns = demo_ns("rr");
        let vtep = demo_ns("vtep");
        let pe_ns = [demo_ns("pe1"), demo_ns("pe2")];
        let evpn = [demo_ns("evpn1"), demo_ns("evpn2")];
        let routed = demo_ns("routed");
        let mut hosts = vec![];
        for me in [1u8, 2] {
            for v in VRFS {
                hosts.push((v.to_string(), me, demo_ns(&format!("{v}{me}"))));
            }
        }

        // The core: PEs, reflector and kernel VTEP on one bridge.
        veth_between(&rr_ns, "eth0", &core, "rr");
        rr_ns.sh(&format!("ip addr add {RR}/24 dev eth0"));
        veth_between(&vtep, "eth0", &core, "vtep");
        vtep.sh(&format!("ip addr add {KERNEL_VTEP}/24 dev eth0"));
        // Like the customers' (see `host`): a veth leaves TCP and UDP checksums to a "device"
        // that never fills them, and carrier passes frames to the host stack as they came.
        for ns in [&rr_ns, &vtep] {
            ns.sh("ethtool -K eth0 tx off");
        }
        // The kernel VTEP: VNI 100, head-end replication to both PEs, MACs learned from what it
        // decapsulates; its bridge holds the host address.
        vtep.sh(&format!("ip link add vx{VNI} type vxlan id {VNI} local {KERNEL_VTEP} dstport 4789"));
        for me in [1, 2] {
            vtep.sh(&format!("bridge fdb append 00:00:00:00:00:00 dev vx{VNI} dst {}", core_addr(me)));
        }
        bridge(&vtep, &format!("br{VNI}"), &[&format!("vx{VNI}")]);
        vtep.sh(&format!("ip link set br{VNI} address {}", evpn_mac(9)));
        vtep.sh(&format!("ip addr add {}/24 dev br{VNI}", evpn_addr(9)));
        vtep.sh(&format!("ip link set vx{VNI} up"));

        for (i, ns) in pe_ns.iter().enumerate() {
            let me = i as u8 + 1;
            veth_between(ns, "core0", &core, &format!("pe{me}"));
            veth_between(ns, "mgmt", &ops, &format!("pe{me}"));
            ns.sh(&format!("ip addr add {}/24 dev mgmt", mgmt_addr(me)));
            for (v, host_me, h) in &hosts {
                if *host_me == me {
                    veth_between(ns, &format!("ce-{v}"), h, "eth0");
                    host(h, &format!("{}/24", host_addr(me)), &format!("default via 10.{me}.0.1"));
                }
            }
            veth_between(ns, "ce-evpn", &evpn[i], "eth0");
            evpn[i].sh(&format!("ip link set eth0 address {}", evpn_mac(me)));
            host(&evpn[i], &format!("{}/24", evpn_addr(me)), "10.100.0.0/16 dev eth0");
            let mut ports: Vec<String> = VRFS.iter().map(|v| format!("ce-{v}")).collect();
            ports.extend(["ce-evpn".to_string(), "core0".to_string()]);
            if me == 2 {
                veth_between(ns, "ce-routed", &routed, "eth0");
                host(&routed, &format!("{ROUTED_HOST}/32"), "default dev eth0");
                ports.push("ce-routed".to_string());
            }
            for p in ports {
                ns.run(&["ip", "link", "set", "dev", &p, "address", &port_mac(me, &p)]);
            }
        }
        bridge(&core, "br0", &["rr", "vtep", "pe1", "pe2"]);
        // The core link's far ends run NAPI, so the express tier sends to the core too.
        for pe in ["pe1", "pe2"] {
            core.sh(&format!("ethtool -K {pe} gro on"));
        }
        bridge(&ops, "br0", &["pe1", "pe2"]);
        ops.sh(&format!("ip addr add {OPS}/24 dev br0"));

        let rr = GoBgp::start(&rr_ns, ASN, RR, &[&core_addr(1), &core_addr(2)]);
        let [ns1, ns2] = pe_ns;
        let start_pe = |me: u8, ns: NetNs| {
            let pe_dir = dir.join(format!("pe{me}"));
            std::fs::create_dir_all(&pe_dir).expect("create the PE's directory");
            let (config, socket) = (pe_dir.join("pe.toml"), pe_dir.join("dataplane.sock"));
            std::fs::write(&config, pe_config(me, &socket)).expect("write the PE's config");
            let dp = Dataplane::start_with_bin(&bins.dataplane, &ns, &config, &socket, &pe_dir.join("dataplane.log"));
            let control = Daemon::spawn(&ns, &pe_dir, "control", &[&bins.control.to_string_lossy(), "run", "--config", "pe.toml"], &[("RUST_LOG", "info")]);
            Pe { control, dp, me, ns }
        };
        let pe1 = start_pe(1, ns1);
        let pe2 = start_pe(2, ns2);

        let prom_dir = dir.join("prometheus");
        std::fs::create_dir_all(&prom_dir).expect("create Prometheus's directory");
        std::fs::write(
            prom_dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\nscrape_configs:\n  - job_name: carrier\n    static_configs:\n      - targets: ['{}:{API_PORT}']\n        labels: {{pe: pe1}}\n      - targets: ['{}:{API_PORT}']\n        labels: {{pe: pe2}}\n",
                mgmt_addr(1),
                mgmt_addr(2)
            ),
        )
        .expect("write prometheus.yml");
        let prometheus = Daemon::spawn(
            &ops,
            &prom_dir,
            "prometheus",
            &["prometheus", "--config.file=prometheus.yml", "--storage.tsdb.path=data", "--web.listen-address=0.0.0.0:9090"],
            &[],
        );

        PseudoWan { pe1, pe2, rr, prometheus, hosts, evpn, routed, vtep, core, ops, rr_ns, dir: dir.to_path_buf(), bins: bins.clone() }
    }

    /// PE `me`.
    pub fn pe(&self, me: u8) -> &Pe {
        if me == 1 {
            &self.pe1
        } else {
            &self.pe2
        }
    }

    /// The host of `vrf` behind PE `me`.
    pub fn host(&self, vrf: &str, me: u8) -> &NetNs {
        &self.hosts.iter().find(|(v, m, _)| v == vrf && *m == me).expect("a demo host").2
    }

    /// Announces the kernel VTEP at the reflector, as its (non-BGP) PE would: a type-3 route
    /// for the flood list and a type-2 route for its host's MAC and address.
    pub fn announce_kernel_vtep(&self) {
        let rd = format!("{KERNEL_VTEP}:{VNI}");
        let rt = format!("{ASN}:{VNI}");
        let vni = VNI.to_string();
        self.rr.cli(&["global", "rib", "-a", "evpn", "add", "multicast", KERNEL_VTEP, "etag", "0", "rd", &rd, "rt", &rt, "encap", "vxlan", "nexthop", KERNEL_VTEP]);
        self.rr.cli(&[
            "global", "rib", "-a", "evpn", "add", "macadv", &evpn_mac(9), &evpn_addr(9), "etag", "0", "label", &vni, "rd", &rd, "rt", &rt, "encap", "vxlan", "nexthop",
            KERNEL_VTEP,
        ]);
    }

    /// `carrierctl ARGS` in PE `me`'s namespace: (exit code, stdout and stderr).
    pub fn carrierctl(&self, me: u8, args: &[&str]) -> (i32, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", self.pe(me).ns.name()])
            .arg(&self.bins.carrierctl)
            .args(args)
            .output()
            .expect("run carrierctl");
        (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    /// `carrierctl --json ARGS` in PE `me`'s namespace, parsed; `None` when it fails.
    pub fn carrierctl_json(&self, me: u8, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (code, out) = self.carrierctl(me, &all);
        if code != 0 {
            return None;
        }
        serde_json::from_str(&out).ok()
    }

    /// A Prometheus instant query from the ops namespace: the result vector, or `None`.
    pub fn prometheus_query(&self, query: &str) -> Option<Vec<serde_json::Value>> {
        let out = self.ops.exec(&["curl", "-sf", "--max-time", "3", "--data-urlencode", &format!("query={query}"), "http://127.0.0.1:9090/api/v1/query"]);
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["data"]["result"].as_array().cloned()
    }

    /// Every log, for a failure report.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for pe in [&self.pe1, &self.pe2] {
            s.push_str(&format!("--- PE{} control ---\n{}\n--- PE{} dataplane ---\n{}\n", pe.me, pe.control.log(), pe.me, pe.dp.log()));
        }
        s.push_str(&format!("--- gobgpd ---\n{}\n", self.rr.daemon.log()));
        s
    }
}

/// ICMP echo requests the kernel of `ns` received (`Icmp: InEchos` of `/proc/net/snmp`).
pub fn in_echos(ns: &NetNs) -> u64 {
    let snmp = ns.run(&["cat", "/proc/net/snmp"]);
    let mut icmp = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (Some(names), Some(values)) = (icmp.next(), icmp.next()) else { return 0 };
    names.split_whitespace().zip(values.split_whitespace()).find(|(n, _)| *n == "InEchos").and_then(|(_, v)| v.parse().ok()).unwrap_or(0)
}

/// `ping -c count` from `ns` to `dst`: how many answers came back.
pub fn ping(ns: &NetNs, dst: &str, count: u32) -> u32 {
    let out = ns.exec(&["ping", "-n", "-q", "-c", &count.to_string(), "-i", "0.2", "-W", "1", dst]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(',').find_map(|part| part.trim().strip_suffix(" received").and_then(|n| n.trim().parse().ok())).unwrap_or(0)
}

/// `traceroute -n` from `ns` to `dst`: (hop, address) for every hop that answered.
pub fn traceroute(ns: &NetNs, dst: &str) -> (Vec<(u32, String)>, String) {
    let out = ns.exec(&["traceroute", "-n", "-q", "1", "-w", "1", "-m", "5", dst]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let hops = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let hop = f.next()?.parse().ok()?;
            let addr = f.next()?;
            (addr != "*").then(|| (hop, addr.to_string()))
        })
        .collect();
    (hops, text)
}
