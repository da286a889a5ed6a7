//! Operator surfaces against a running PE (privileged, run by `cargo xtask test`): carrierctl's
//! tables (golden files), `/metrics` checked by `promtool`, and a real Prometheus server that
//! scrapes carrier and answers a PromQL query for the packets that crossed a local label.
//!
//! ```text
//!   red 10.1.0.2 ─ce-red─ PE (dataplane + control, API on the PE's 127.0.0.1:9179)
//!                          └─core0─ core: gobgpd 192.0.2.2, scapy sends MPLS to red's label
//! ```

use std::path::Path;
use std::time::Duration;

use carrier_tests::bgp::{eventually, start_control, Daemon, GoBgp};
use carrier_tests::carrier::{scratch_dir, workspace, Dataplane};
use carrier_tests::netns::{veth_between, NetNs};

const TOKEN: &str = "operator-test-token";

const PE_DATAPLANE: &str = r#"
[router]
router_id = "10.255.0.1"

[[vrf]]
name = "red"

[[port]]
name = "ce-red"
mac = "02:00:00:00:01:01"
addresses = ["10.1.0.1/24"]
vrf = "red"

[[port]]
name = "core0"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24"]
core = true
"#;

fn control_config(dp: &Dataplane) -> String {
    format!(
        r#"
[bgp]
asn = 65000
router_id = "10.255.0.1"

[dataplane]
socket = "{}"
config = "{}"

[labels]
first = 100000
last = 100999

[api]
token = "{TOKEN}"
poll_ms = 200

[[neighbor]]
address = "192.0.2.2"
remote_as = 65000
families = ["vpnv4"]

[[vrf]]
name = "red"
rd = "65000:1"
import = ["target:65000:1"]
export = ["target:65000:1"]
"#,
        dp.socket.display(),
        dp.config.display()
    )
}

fn carrierctl(ns: &NetNs, args: &[&str]) -> (i32, String) {
    let bin = workspace().join("target/debug/carrierctl");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(&bin)
        .args(if args.contains(&"--token") { &[][..] } else { &["--token", TOKEN][..] })
        .args(args)
        .output()
        .expect("run carrierctl");
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `GET url` from inside `ns`.
fn http_get(ns: &NetNs, url: &str) -> String {
    let script = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')";
    let out = std::process::Command::new("ip").args(["netns", "exec", ns.name(), "python3", "-c", script, url]).output().expect("python3");
    assert!(out.status.success(), "GET {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An aligned table as `cell | cell | ...` lines, cut at the header's column starts, with the
/// cells of the `masked` columns replaced by `*`: what varies run to run (uptimes, traffic
/// counters) and the column widths that follow from it, out of a golden comparison.
fn cells(table: &str, headers: &[&str], masked: &[&str]) -> String {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let mut starts = vec![];
    let mut from = 0;
    for h in headers {
        let at = from + header[from..].find(h).unwrap_or_else(|| panic!("column {h:?} not in {header:?}"));
        starts.push(at);
        from = at + h.len();
    }
    let row = |line: &str, mask: bool| {
        let cut: Vec<String> = starts
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let e = starts.get(i + 1).copied().unwrap_or(usize::MAX).min(line.len());
                let cell = line.get((*s).min(line.len())..e).unwrap_or("").trim();
                if mask && masked.contains(&headers[i]) { "*".to_string() } else { cell.to_string() }
            })
            .collect();
        cut.join(" | ") + "\n"
    };
    let mut out = row(header, false);
    for line in lines {
        out += &row(line, true);
    }
    out
}

/// Compare with `tests/cli-golden/NAME.txt` (written when UPDATE_GOLDEN is set).
fn golden(name: &str, got: &str) {
    let path = workspace().join("tests/cli-golden").join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(got, want, "carrierctl {name} differs from {} (UPDATE_GOLDEN=1 rewrites it)", path.display());
}

/// The Grafana dashboard (docs/grafana-carrier.json) queries only metric families that
/// `metrics` (a full scrape: a peer up, labels, traffic) declares.
fn dashboard_queries_served_metrics(metrics: &str) {
    let served: std::collections::HashSet<&str> = metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    let text = std::fs::read_to_string(workspace().join("docs/grafana-carrier.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).filter(|w| w.starts_with("carrier_")) {
                let name = word.trim_end_matches("_bucket");
                assert!(served.contains(name), "{:?} queries {name}, which /metrics does not serve", panel["title"]);
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "{checked}");
}

fn prometheus_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("prometheus.yml");
    std::fs::write(
        &path,
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: carrier\n    static_configs:\n      - targets: ['127.0.0.1:9179']\n",
    )
    .unwrap();
    path
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn carrierctl_metrics_and_a_real_prometheus_see_the_pe() {
    let pe = NetNs::new("ope");
    let core = NetNs::new("oco");
    let red = NetNs::new("ord");
    veth_between(&pe, "ce-red", &red, "eth0");
    veth_between(&pe, "core0", &core, "eth0");
    red.run(&["ip", "addr", "add", "10.1.0.2/24", "dev", "eth0"]);
    red.run(&["ip", "route", "add", "default", "via", "10.1.0.1"]);
    red.sh("ethtool -K eth0 tx off");
    core.run(&["ip", "addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    // Over veth the kernel leaves TX checksums to a device that never fills them, and the
    // dataplane hands frames on as they are.
    core.sh("ethtool -K eth0 tx off");
    let scratch = scratch_dir("oper");

    let dp = Dataplane::start(&pe, PE_DATAPLANE);
    let gobgp = GoBgp::start(&core, 65000, "192.0.2.2", &["192.0.2.1"]);
    let control = start_control(&pe, &control_config(&dp));
    gobgp.wait_established("192.0.2.1", Duration::from_secs(30));
    gobgp.cli(&["global", "rib", "-a", "vpnv4", "add", "10.9.0.0/24", "label", "5000", "rd", "65000:9", "rt", "65000:1", "nexthop", "192.0.2.2"]);
    eventually("10.9.0.0/24 in vrf red", Duration::from_secs(15), || dp.route("red", "10.9.0.0/24"));

    // 1. carrierctl over the API, compared with golden tables (uptime and counters masked).
    eventually("the peer's prefixes in the summary", Duration::from_secs(10), || {
        let (_, out) = carrierctl(&pe, &["--json", "show", "peers"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        (v[0]["prefixes"][0]["received"] == 1 && v[0]["prefixes"][0]["advertised"] == 1).then_some(())
    });
    let (code, peers) = carrierctl(&pe, &["show", "peers"]);
    assert_eq!(code, 0, "{peers}");
    let peer_cols = ["Peer", "AS", "Up/Down", "State", "#Received", "Accepted", "Advertised", "Flaps", "Last error"];
    golden("show-peers", &cells(&peers, &peer_cols, &["Up/Down"]));
    let (code, rib) = carrierctl(&pe, &["show", "rib", "--vrf", "red"]);
    assert_eq!(code, 0, "{rib}\n{}", control.log());
    golden("show-rib-red", &rib);
    let (_, vrf) = carrierctl(&pe, &["show", "vrf"]);
    golden("show-vrf", &vrf);
    let (_, mpls) = carrierctl(&pe, &["show", "mpls"]);
    let mpls_cols = ["Inbound Label", "Type", "Nexthop", "Outbound Label", "Packets", "Bytes"];
    golden("show-mpls", &cells(&mpls, &mpls_cols, &["Packets", "Bytes"]));
    let (_, ifs) = carrierctl(&pe, &["show", "interfaces"]);
    let if_cols = ["Interface", "Role", "Link", "XDP", "Instance", "Addresses", "MAC", "VLAN", "MTU", "RX", "TX", "Drops"];
    golden("show-interfaces", &cells(&ifs, &if_cols, &["RX", "TX", "Drops"]));
    // Neighbours: red's host, learned from its ARP when it pings the PE; its MAC as its own
    // kernel reports it.
    let _ = red.exec(&["ping", "-c", "1", "-W", "1", "10.1.0.1"]);
    let red_mac = red.run(&["cat", "/sys/class/net/eth0/address"]).trim().to_string();
    let learned = eventually("red's host among the neighbours", Duration::from_secs(5), || {
        let (code, out) = carrierctl(&pe, &["--json", "show", "neighbours"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        (code == 0).then_some(())?;
        v.as_array()?.iter().find(|n| n["ip"] == "10.1.0.2").cloned()
    });
    assert_eq!((&learned["port"], &learned["mac"], &learned["source"]), (&serde_json::json!("ce-red"), &serde_json::json!(red_mac), &serde_json::json!("learned")), "{learned}");
    let (code, table) = carrierctl(&pe, &["show", "neighbours"]);
    assert_eq!(code, 0, "{table}");
    assert!(table.starts_with("Port") && table.contains(&red_mac), "{table}");
    let (code, json) = carrierctl(&pe, &["--json", "show", "mpls"]);
    assert_eq!(code, 0);
    let labels: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let red_label = labels[0]["label"].as_u64().expect("red's label");
    assert_eq!(labels[0]["vrf"], "red");
    // Exit codes say what failed.
    assert_eq!(carrierctl(&pe, &["show", "vrf", "green"]).0, 4);
    assert_eq!(carrierctl(&pe, &["--token", "not-the-token", "route", "add", "red", "10.7.0.0/24", "10.1.0.2"]).0, 5);
    assert_eq!(carrierctl(&pe, &["--api", "http://127.0.0.1:1", "show", "peers"]).0, 3);

    // 2. Traffic across red's label from the core (scapy) and toward gobgp's label 5000.
    let pe_mac = "02:00:00:00:00:01";
    let scapy = format!(
        "from scapy.all import *\nfrom scapy.contrib.mpls import MPLS\n\
         sendp(Ether(dst='{pe_mac}')/MPLS(label={red_label}, s=1, ttl=64)/IP(src='10.9.0.5', dst='10.1.0.2')/UDP(sport=1234, dport=5678)/Raw(b'x'*20), iface='eth0', count=25, verbose=False)"
    );
    let out = std::process::Command::new("ip").args(["netns", "exec", core.name(), "/usr/bin/python3", "-c", &scapy]).output().unwrap();
    assert!(out.status.success(), "scapy: {}", String::from_utf8_lossy(&out.stderr));

    // 3. promtool on what /metrics serves, once the poller has read the counters.
    let metrics = eventually("the label counter in /metrics", Duration::from_secs(10), || {
        let m = http_get(&pe, "http://127.0.0.1:9179/metrics");
        m.lines().any(|l| l.starts_with(&format!("carrier_label_in_packets_total{{label=\"{red_label}\"")) && l.ends_with(" 25")).then_some(m)
    });
    let file = scratch.join("metrics.txt");
    std::fs::write(&file, &metrics).unwrap();
    let check = std::process::Command::new("sh").arg("-c").arg(format!("promtool check metrics < {}", file.display())).output().expect("promtool");
    assert!(check.status.success(), "promtool check metrics: {}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    for name in ["carrier_bgp_peer_state{peer=\"192.0.2.2\"} 6", "carrier_bgp_routes_received{peer=\"192.0.2.2\",family=\"l3vpn-ipv4-unicast\"} 1", "carrier_dataplane_connected 1"] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }

    dashboard_queries_served_metrics(&metrics);

    // 4. A real Prometheus scrapes the PE; PromQL over its HTTP API returns the label's packets.
    let config = prometheus_config(&scratch);
    let tsdb = scratch.join("tsdb");
    let _prom = Daemon::spawn(
        &pe,
        &scratch,
        "prometheus",
        &["prometheus", "--config.file", config.to_str().unwrap(), "--storage.tsdb.path", tsdb.to_str().unwrap(), "--web.listen-address", "127.0.0.1:9090"],
        &[],
    );
    let query = format!("http://127.0.0.1:9090/api/v1/query?query=carrier_label_in_packets_total%7Blabel%3D%22{red_label}%22%7D");
    let answer = eventually("Prometheus has scraped the label counter", Duration::from_secs(30), || {
        let script = "import sys, urllib.request\ntry:\n print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())\nexcept Exception as e:\n print('')";
        let out = std::process::Command::new("ip").args(["netns", "exec", pe.name(), "python3", "-c", script, &query]).output().ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["data"]["result"].as_array()?.len() == 1).then_some(v)
    });
    let sample = &answer["data"]["result"][0];
    assert_eq!(sample["metric"]["vrf"], "red", "{answer}");
    assert_eq!(sample["metric"]["type"], "per-vrf", "{answer}");
    assert_eq!(sample["value"][1], "25", "{answer}");
}

/// schemathesis (`cargo xtask setup` installs it): the API against its own OpenAPI document,
/// every check but positive data acceptance (the schema cannot say that a next hop must lie in
/// a connected subnet, or that a prefix's host bits must be zero), bounded in examples and time.
#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn schemathesis_finds_no_server_error_or_schema_violation() {
    let st = std::env::var_os("CARRIER_SCHEMATHESIS").map_or_else(|| workspace().join("target/tools/schemathesis/bin/st"), Into::into);
    assert!(st.exists(), "{} is missing: run `cargo xtask setup`", st.display());
    let pe = NetNs::new("ost");
    let scratch = scratch_dir("st");
    let dp_config = scratch.join("carrier.toml");
    std::fs::write(&dp_config, PE_DATAPLANE).unwrap();
    let config = format!(
        "[bgp]\nasn = 65000\nrouter_id = \"10.255.0.1\"\n[dataplane]\nsocket = \"{}\"\nconfig = \"{}\"\n[api]\ntoken = \"{TOKEN}\"\n\
         [[neighbor]]\naddress = \"192.0.2.2\"\nremote_as = 65000\nfamilies = [\"vpnv4\"]\npassive = true\n\
         [[vrf]]\nname = \"red\"\nrd = \"65000:1\"\nimport = [\"65000:1\"]\nexport = [\"65000:1\"]\n",
        scratch.join("absent.sock").display(),
        dp_config.display()
    );
    let control = start_control(&pe, &config);
    eventually("the API", Duration::from_secs(10), || {
        let out = std::process::Command::new("ip").args(["netns", "exec", pe.name(), "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9179/peers', timeout=1)"]).output().ok()?;
        out.status.success().then_some(())
    });
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", pe.name(), "timeout", "240"])
        .arg(&st)
        .args(["run", "http://127.0.0.1:9179/openapi.json", "--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        .args(["-n", "40", "--max-response-time", "5", "--seed", "1", "-H", &format!("Authorization: Bearer {TOKEN}")])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its cache of found failures stays in the scratch directory, not in the tree.
        .current_dir(&scratch)
        .output()
        .expect("run schemathesis");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found failures:\n{report}\ncontrol log:\n{}", control.log());
    assert!(report.contains("passed"), "{report}");
}

/// `carrierctl --json show peers`: address → entry.
fn peers_by_address(pe: &NetNs) -> std::collections::BTreeMap<String, serde_json::Value> {
    let (_, out) = carrierctl(pe, &["--json", "show", "peers"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v.as_array().into_iter().flatten().filter_map(|p| Some((p["address"].as_str()?.to_string(), p.clone()))).collect()
}

fn is_established(p: Option<&serde_json::Value>) -> bool {
    p.and_then(|p| p["state"].as_str()).is_some_and(|s| s.eq_ignore_ascii_case("established"))
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn apply_adds_removes_and_changes_neighbors_without_touching_the_others() {
    // PE on a management switch with two gobgpd route reflectors, A and B; data ports as above.
    let pe = NetNs::new("npe");
    let sw = NetNs::new("nsw");
    let (a_ns, b_ns) = (NetNs::new("nga"), NetNs::new("ngb"));
    let (red, core) = (NetNs::new("nrd"), NetNs::new("nco"));
    veth_between(&pe, "ce-red", &red, "eth0");
    veth_between(&pe, "core0", &core, "eth0");
    sw.sh("ip link add br0 type bridge");
    for (ns, port, addr) in [(&pe, "s0", "10.0.0.1"), (&a_ns, "s1", "10.0.0.254"), (&b_ns, "s2", "10.0.0.253")] {
        veth_between(ns, "mgmt", &sw, port);
        ns.sh(&format!("ip addr add {addr}/24 dev mgmt"));
        sw.sh(&format!("ip link set {port} master br0"));
    }
    sw.sh("ip link set br0 up");
    let dp = Dataplane::start(&pe, PE_DATAPLANE);
    let a = GoBgp::start(&a_ns, 65000, "10.0.0.254", &["10.0.0.1"]);
    let b = GoBgp::start(&b_ns, 65000, "10.0.0.253", &["10.0.0.1"]);
    let neighbor = |addr: &str, families: &str| format!("\n[[neighbor]]\naddress = \"{addr}\"\nremote_as = 65000\nfamilies = [{families}]\n");
    // The operator test's config with its neighbor (on the core) replaced by `neighbors`.
    let config = |neighbors: &str| {
        let base = control_config(&dp);
        let start = base.find("[[neighbor]]").expect("a neighbor section");
        let end = base.find("[[vrf]]").expect("a vrf section");
        format!("{}{neighbors}\n{}", &base[..start], &base[end..])
    };
    let control = start_control(&pe, &config(&neighbor("10.0.0.254", "\"vpnv4\"")));
    let dir = scratch_dir("nbr");
    let apply = |text: &str| {
        let file = dir.join("control.toml");
        std::fs::write(&file, text).unwrap();
        carrierctl(&pe, &["--json", "apply", file.to_str().unwrap()])
    };
    let context = || format!("control log:\n{}", control.log());

    a.wait_established("10.0.0.1", Duration::from_secs(30));
    a.cli(&["global", "rib", "-a", "vpnv4", "add", "10.50.0.0/16", "label", "3000", "rd", "65000:9", "rt", "65000:1", "nexthop", "192.0.2.2"]);
    eventually("A's route", Duration::from_secs(15), || dp.route("red", "10.50.0.0/16"));
    let a_before = peers_by_address(&pe)["10.0.0.254"].clone();

    // 1. Add B: it comes up and its route is installed; A's session is not touched.
    let (code, out) = apply(&config(&format!("{}{}", neighbor("10.0.0.254", "\"vpnv4\""), neighbor("10.0.0.253", "\"vpnv4\""))));
    assert_eq!(code, 0, "{out}\n{}", context());
    assert!(out.contains("neighbor 10.0.0.253 added"), "{out}");
    b.wait_established("10.0.0.1", Duration::from_secs(30));
    b.cli(&["global", "rib", "-a", "vpnv4", "add", "10.51.0.0/16", "label", "3001", "rd", "65000:8", "rt", "65000:1", "nexthop", "192.0.2.2"]);
    eventually("B's route", Duration::from_secs(15), || dp.route("red", "10.51.0.0/16"));
    let peers = peers_by_address(&pe);
    let a_now = &peers["10.0.0.254"];
    assert!(is_established(Some(a_now)), "{a_now}");
    assert_eq!((&a_now["flaps"], &a_now["established_at"]), (&a_before["flaps"], &a_before["established_at"]), "A's session was touched: {a_before} → {a_now}");
    assert_eq!(a.notifications_from("10.0.0.1"), 0, "A got a NOTIFICATION");

    // 2. Remove A: it gets Cease/Peer De-configured, its route goes, B's stays, A is no
    //    longer listed.
    let (code, out) = apply(&config(&neighbor("10.0.0.253", "\"vpnv4\"")));
    assert_eq!(code, 0, "{out}\n{}", context());
    eventually("A's NOTIFICATION", Duration::from_secs(10), || (a.notifications_from("10.0.0.1") == 1).then_some(()));
    assert!(a.daemon.log().contains("code 6(cease) subcode 3(peer deconfigured)"), "A was not told Cease/Peer De-configured:\n{}", a.daemon.log());
    eventually("A's route withdrawn", Duration::from_secs(10), || dp.route("red", "10.50.0.0/16").is_none().then_some(()));
    assert!(dp.route("red", "10.51.0.0/16").is_some(), "B's route went with A's");
    let peers = peers_by_address(&pe);
    assert_eq!(peers.keys().collect::<Vec<_>>(), ["10.0.0.253"], "{peers:?}");
    let b_before = peers["10.0.0.253"].clone();
    assert!(control.log().contains("config: neighbor 10.0.0.254 removed"), "{}", context());

    // 3. Change B (a family more): its session restarts with the new families.
    let (code, out) = apply(&config(&neighbor("10.0.0.253", "\"vpnv4\", \"evpn\"")));
    assert_eq!(code, 0, "{out}\n{}", context());
    assert!(out.contains("neighbor 10.0.0.253 changed"), "{out}");
    let b_now = eventually("B back with EVPN", Duration::from_secs(30), || {
        let p = peers_by_address(&pe).remove("10.0.0.253")?;
        (is_established(Some(&p)) && p["families"].as_array()?.iter().any(|f| f == "l2vpn-evpn")).then_some(p)
    });
    assert_ne!(b_now["established_at"], b_before["established_at"], "B's session was not restarted");
    eventually("B's route after the restart", Duration::from_secs(15), || dp.route("red", "10.51.0.0/16"));

    // 4. The same file again changes nothing.
    let (code, out) = apply(&config(&neighbor("10.0.0.253", "\"vpnv4\", \"evpn\"")));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"unchanged\": true") || out.contains("\"unchanged\":true"), "{out}");
}

/// A PE whose red VRF has two sites and whose third customer port starts detached.
const PE_LIVE: &str = r#"
[router]
router_id = "10.255.0.1"

[[vrf]]
name = "red"
prefix_counters = true

[[port]]
name = "ce-red"
mac = "02:00:00:00:01:01"
addresses = ["10.1.0.1/24"]
vrf = "red"

[[port]]
name = "ce-red2"
mac = "02:00:00:00:01:03"
addresses = ["10.3.0.1/24"]
vrf = "red"

[[port]]
name = "ce-x"
mac = "02:00:00:00:01:09"
detached = true

[[port]]
name = "core0"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24"]
core = true
"#;

/// `ping` from `ns` in the background: a bounded flood, its summary read at the end.
fn ping_flood(ns: &NetNs, dst: &str, count: u32) -> std::process::Child {
    std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "ping", "-n", "-q", "-c", &count.to_string(), "-i", "0.005", "-W", "1", dst])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping")
}

/// The dataplane's part of the config changed live, through the API (carrierctl) and by
/// applying edited files: a VRF created, a detached port attached to it (its CE reaches the
/// PE's address there and nothing of red; gobgpd receives the VRF's connected route with its
/// RD), detached (its frames counted as `port-detached`, the route withdrawn from gobgpd) and
/// the VRF deleted; then a VRF added and the port attached to it by editing the files. All the
/// while a ping flood between red's two sites loses nothing, and the BGP session stays up with
/// no new OPEN.
#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn vrfs_and_ports_change_live_without_disturbing_the_rest() {
    let pe = NetNs::new("lpe");
    let (red1, red2, x, core) = (NetNs::new("lr1"), NetNs::new("lr2"), NetNs::new("lcx"), NetNs::new("lco"));
    for (ns, port, addr, gw) in [(&red1, "ce-red", "10.1.0.2/24", "10.1.0.1"), (&red2, "ce-red2", "10.3.0.2/24", "10.3.0.1"), (&x, "ce-x", "10.7.0.2/24", "10.7.0.1")] {
        veth_between(&pe, port, ns, "eth0");
        ns.sh(&format!("ip addr add {addr} dev eth0"));
        ns.sh(&format!("ip route add default via {gw}"));
    }
    veth_between(&pe, "core0", &core, "eth0");
    core.sh("ip addr add 192.0.2.2/24 dev eth0");
    // Over veth the kernel leaves TX checksums to a device that never fills them, and the
    // dataplane hands frames on as they are.
    for ns in [&red1, &red2, &x, &core] {
        ns.sh("ethtool -K eth0 tx off");
    }
    // Red's sites take redirected frames (GRO on a veth peer): the express tier forwards
    // red's flow, and counts it per prefix in the XDP program.
    for ns in [&red1, &red2] {
        ns.sh("ethtool -K eth0 gro on");
    }
    let dp = Dataplane::start(&pe, PE_LIVE);
    let gobgp = GoBgp::start(&core, 65000, "192.0.2.2", &["192.0.2.1"]);
    let control = start_control(&pe, &control_config(&dp));
    let context = || format!("control log:\n{}\ndataplane log:\n{}", control.log(), dp.log());
    gobgp.wait_established("192.0.2.1", Duration::from_secs(30));
    gobgp.cli(&["global", "rib", "-a", "vpnv4", "add", "10.50.0.0/16", "label", "3000", "rd", "65000:9", "rt", "65000:1", "nexthop", "192.0.2.2"]);
    eventually("gobgpd's route in red", Duration::from_secs(15), || dp.route("red", "10.50.0.0/16"));
    let before = peers_by_address(&pe)["192.0.2.2"].clone();
    assert!(is_established(Some(&before)), "{before}");
    let gobgp_has = |prefix: &str, rd: &str| gobgp.cli(&["global", "rib", "-a", "vpnv4"]).lines().any(|l| l.contains(prefix) && l.contains(rd));
    let ctl = |args: &[&str]| {
        let (code, out) = carrierctl(&pe, args);
        assert_eq!(code, 0, "carrierctl {args:?}: {out}\n{}", context());
        out
    };
    // Red's flow, warm before the changes (the first echo may go to ARP resolution, which
    // the dataplane drops as neighbour-miss while it asks).
    carrier_tests::demo::ping(&red1, "10.3.0.2", 2);
    assert_eq!(carrier_tests::demo::ping(&red1, "10.3.0.2", 2), 2, "red's sites do not reach each other\n{}", context());
    let flood = ping_flood(&red1, "10.3.0.2", 3000);

    // 1. Through the API: VRF green, ce-x attached to it with an address.
    let out = ctl(&["vrf", "add", "green", "--rd", "65000:7", "--import", "65000:7", "--export", "65000:7"]);
    assert!(out.contains("dataplane: vrf green added"), "{out}");
    let out = ctl(&["attach", "ce-x", "--vrf", "green", "--address", "10.7.0.1/24"]);
    assert!(out.contains("dataplane: port ce-x: detached [] → vrf green [10.7.0.1/24]"), "{out}");
    assert!(carrier_tests::demo::ping(&x, "10.7.0.1", 3) >= 2, "green's CE does not reach the PE in green\n{}", context());
    assert_eq!(carrier_tests::demo::ping(&x, "10.3.0.2", 2), 0, "green reached red");
    assert!(dp.route("green", "10.7.0.0/24").is_some(), "{}", dp.dump());
    eventually("green's connected route at gobgpd", Duration::from_secs(15), || gobgp_has("10.7.0.0/24", "65000:7").then_some(()));
    let (_, shown) = carrierctl(&pe, &["show", "interfaces"]);
    assert!(shown.lines().any(|l| l.starts_with("ce-x") && l.contains("green") && l.contains("10.7.0.1/24")), "{shown}");
    let (code, out) = carrierctl(&pe, &["vrf", "del", "green"]);
    assert!(code != 0 && out.contains("detach them first"), "{code} {out}");

    // 2. Detached: its frames dropped and counted, green's route withdrawn; green deleted.
    ctl(&["detach", "ce-x"]);
    assert_eq!(carrier_tests::demo::ping(&x, "10.7.0.1", 2), 0, "a detached port answered");
    let drops = eventually("port-detached drops", Duration::from_secs(5), || dp.counters()["ports"]["ce-x"]["drops"]["port-detached"].as_u64().filter(|n| *n > 0));
    assert!(drops >= 2, "{drops}");
    eventually("green's route withdrawn at gobgpd", Duration::from_secs(15), || (!gobgp_has("10.7.0.0/24", "65000:7")).then_some(()));
    let out = ctl(&["vrf", "del", "green"]);
    assert!(out.contains("dataplane: vrf green removed"), "{out}");
    let dump = dp.dump();
    assert!(!dump["routes"].as_array().unwrap().iter().any(|r| r["table"] == "green"), "{dump}");

    // 3. By the files: VRF blue added to both, ce-x in it with another address.
    let dp_text = PE_LIVE
        .replace("[[vrf]]\nname = \"red\"\nprefix_counters = true\n", "[[vrf]]\nname = \"red\"\nprefix_counters = true\n\n[[vrf]]\nname = \"blue\"\n")
        .replace("detached = true", "vrf = \"blue\"\naddresses = [\"10.8.0.1/24\"]");
    std::fs::write(&dp.config, dp_text).unwrap();
    let file = scratch_dir("live").join("control.toml");
    std::fs::write(&file, format!("{}\n[[vrf]]\nname = \"blue\"\nrd = \"65000:8\"\nimport = [\"65000:8\"]\nexport = [\"65000:8\"]\n", control_config(&dp))).unwrap();
    let out = ctl(&["apply", file.to_str().unwrap()]);
    assert!(out.contains("vrf blue added") && out.contains("dataplane: vrf blue added") && out.contains("dataplane: port ce-x: detached [] → vrf blue [10.8.0.1/24]"), "{out}");
    x.sh("ip addr flush dev eth0");
    x.sh("ip addr add 10.8.0.2/24 dev eth0");
    x.sh("ip route add default via 10.8.0.1");
    assert!(carrier_tests::demo::ping(&x, "10.8.0.1", 3) >= 2, "blue's CE does not reach the PE in blue\n{}", context());
    eventually("blue's connected route at gobgpd", Duration::from_secs(15), || gobgp_has("10.8.0.0/24", "65000:8").then_some(()));
    let out = ctl(&["apply", file.to_str().unwrap()]);
    assert!(out.contains("no change"), "the same files again: {out}");
    // A port whose interface does not exist: the dataplane cannot open it, nothing applied;
    // one removed: that takes a restart, nothing applied.
    let running = std::fs::read_to_string(&dp.config).unwrap();
    std::fs::write(&dp.config, format!("{running}\n[[port]]\nname = \"ce-new\"\nmac = \"02:00:00:00:01:0a\"\ndetached = true\n")).unwrap();
    let (code, out) = carrierctl(&pe, &["apply", file.to_str().unwrap()]);
    assert!(code != 0 && out.contains("did not open ce-new") && out.contains("nothing was applied"), "{code} {out}");
    let start = running.find("[[port]]\nname = \"ce-red2\"").unwrap();
    let end = start + running[start..].find("vrf = \"red\"\n").unwrap() + "vrf = \"red\"\n".len();
    std::fs::write(&dp.config, format!("{}{}", &running[..start], &running[end..])).unwrap();
    let (code, out) = carrierctl(&pe, &["apply", file.to_str().unwrap()]);
    assert!(code != 0 && out.contains("restarts") && out.contains("nothing was applied"), "{code} {out}");
    std::fs::write(&dp.config, &running).unwrap();
    assert_eq!(carrier_tests::demo::ping(&x, "10.8.0.1", 1), 1, "a refused apply disturbed blue");

    // 4. An interface made after the dataplane started, attached to red through the API: the
    //    dataplane opens it (XDP, a socket per worker) and its host reaches red's sites.
    let y = NetNs::new("lcy");
    veth_between(&pe, "ce-y", &y, "eth0");
    y.sh("ip addr add 10.9.0.2/24 dev eth0");
    y.sh("ip route add default via 10.9.0.1");
    y.sh("ethtool -K eth0 tx off");
    let out = ctl(&["attach", "ce-y", "--vrf", "red", "--address", "10.9.0.1/24"]);
    assert!(out.contains("dataplane: port ce-y: added, vrf red [10.9.0.1/24]"), "{out}");
    assert!(carrier_tests::demo::ping(&y, "10.9.0.1", 3) >= 2, "the new port's host does not reach the PE\n{}", context());
    assert!(carrier_tests::demo::ping(&y, "10.1.0.2", 3) >= 2, "the new port's host does not reach red's site\n{}", context());
    let (_, shown) = carrierctl(&pe, &["show", "interfaces"]);
    assert!(shown.lines().any(|l| l.starts_with("ce-y") && l.contains("red") && l.contains("10.9.0.1/24")), "{shown}");
    assert!(dp.log().contains("port ce-y (4): opened while running"), "{}", dp.log());

    // Red's flow lost nothing; the session was never reset.
    let out = flood.wait_with_output().expect("ping");
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(summary.contains("3000 packets transmitted, 3000 received"), "red's flow lost packets while VRFs and ports changed:\n{summary}\n{}", context());
    let after = peers_by_address(&pe)["192.0.2.2"].clone();
    assert!(is_established(Some(&after)), "{after}");
    assert_eq!((&after["flaps"], &after["established_at"]), (&before["flaps"], &before["established_at"]), "the session was reset: {before} → {after}");
    assert_eq!(gobgp.notifications_from("192.0.2.1"), 0, "gobgpd got a NOTIFICATION");
    assert!(dp.route("red", "10.50.0.0/16").is_some(), "gobgpd's route left red");

    // Red counts per prefix: the flood's requests went by 10.3.0.0/24, its replies by
    // 10.1.0.0/24, most of them forwarded and counted by the XDP program.
    let counts = eventually("red's per-prefix counters", Duration::from_secs(5), || {
        let (code, out) = carrierctl(&pe, &["--json", "show", "stats", "prefixes", "--vrf", "red"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| code == 0)?;
        let by: std::collections::BTreeMap<String, u64> = v.as_array()?.iter().map(|p| (p["prefix"].as_str().unwrap_or("").to_string(), p["packets_forwarded"].as_u64().unwrap_or(0))).collect();
        (by.get("10.3.0.0/24").copied().unwrap_or(0) >= 3000).then_some(by)
    });
    assert!(counts["10.1.0.0/24"] >= 3000, "{counts:?}");
    // (10.9.0.0/24: the echo replies to the new port's host.)
    assert!(counts.keys().all(|p| ["10.1.0.0/24", "10.3.0.0/24", "10.9.0.0/24"].contains(&p.as_str())), "{counts:?}");
    let (_, ifs) = carrierctl(&pe, &["--json", "show", "interfaces"]);
    let ifs: serde_json::Value = serde_json::from_str(&ifs).unwrap_or_default();
    let express = ifs.as_array().into_iter().flatten().find(|i| i["name"] == "ce-red").and_then(|i| i["express_forwarded"].as_u64()).unwrap_or(0);
    let mode = dp.counters()["xdp"]["ce-red"]["mode"].as_str().unwrap_or("").to_string();
    eprintln!("ce-red: XDP in {mode:?} mode, the express tier forwarded {express}; red's per-prefix counts {counts:?}");
    if mode == "native" && std::env::var("CARRIER_EXPRESS").as_deref() != Ok("0") {
        assert!(express >= 1500, "the express tier forwarded {express} of red's flood on ce-red\n{ifs}");
    }
    let (_, table) = carrierctl(&pe, &["show", "stats", "prefixes", "--vrf", "red"]);
    assert!(table.lines().next().is_some_and(|h| h.starts_with("VRF") && h.contains("Prefix") && h.contains("Packets")), "{table}");
    let (code, out) = carrierctl(&pe, &["show", "stats", "prefixes", "--vrf", "blue"]);
    assert!(code != 0 && out.contains("does not count"), "{code} {out}");
}
