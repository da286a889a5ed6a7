//! BGP under faults with a real peer (privileged, run by `cargo xtask test`): gobgpd as route
//! reflector crashes, has its TCP connection reset (also in the middle of a burst of UPDATEs),
//! and goes silent until carrier's hold timer expires. After each fault carrier's dataplane must
//! hold exactly what the peer holds (no stale route, no lost one, no stale label), and the
//! operator's view (`carrierctl --json show peers`) and the log must say what happened. And
//! the dataplane killed under a running carrier-control: it must be re-fed when it comes back.
//!
//! ```text
//!   gobgpd (rr) 10.0.0.254 ──mgmt── 10.0.0.1 PE (carrier-control + carrier-dataplane)
//!                                              ce-red 10.1.0.1/24, core0 192.0.2.1/24
//! ```
//! BGP runs on the kernel-owned management link, so the faults are made there: `ss -K` (the
//! kernel aborts gobgpd's socket and sends a RST), a blackhole route in the reflector's namespace
//! (carrier stops hearing KEEPALIVEs), `kill -9` of gobgpd.

use std::collections::BTreeMap;
use std::time::Duration;

use carrier_tests::bgp::{eventually, start_control, GoBgp};
use carrier_tests::carrier::{workspace, Dataplane};
use carrier_tests::netns::{self, veth_between, NetNs};

const PE: &str = "10.0.0.1";
const RR: &str = "10.0.0.254";
/// Routes the reflector originates into VRF red (RT 65000:1).
const ROUTES: u32 = 60;

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

[[neighbour]]
port = "core0"
ip = "192.0.2.2"
mac = "02:00:00:00:00:02"

[[route]]
prefix = "10.255.0.0/24"
via = "192.0.2.2"
"#;

/// Hold time 3 s (the least RFC 4271 allows): gobgpd's 90 s is negotiated down to it, so a
/// silent peer is noticed within 3 s.
fn control_config(dp: &Dataplane) -> String {
    format!(
        r#"
[bgp]
asn = 65000
router_id = "10.255.0.1"
hold_time = 3

[dataplane]
socket = "{}"
config = "{}"

[labels]
first = 100000
last = 100999

[[neighbor]]
address = "{RR}"
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

/// Route `i` the reflector originates: (prefix, label).
fn route(i: u32) -> (String, u32) {
    (format!("10.60.{}.0/24", i), 3000 + i)
}

fn announce(rr: &GoBgp, i: u32, add: bool) {
    let (prefix, label) = route(i);
    let label = label.to_string();
    rr.cli(&["global", "rib", "-a", "vpnv4", if add { "add" } else { "del" }, &prefix, "label", &label, "rd", "65000:9", "rt", "65000:1", "nexthop", "10.255.0.2"]);
}

/// What VRF red forwards over MPLS: prefix → pushed label.
fn vrf_red(dp: &Dataplane) -> BTreeMap<String, u64> {
    dp.dump()["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["table"] == "red" && r["nexthop"]["kind"] == "mpls-push")
        .filter_map(|r| Some((r["prefix"].as_str()?.to_string(), r["nexthop"]["labels"][0].as_u64()?)))
        .collect()
}

/// What the reflector holds for VRF red, read from gobgp's own RIB: prefix → label.
fn rr_red(rr: &GoBgp) -> BTreeMap<String, u64> {
    let out = rr.cli(&["-j", "global", "rib", "-a", "vpnv4"]);
    let rib: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("gobgp JSON ({e}): {out}"));
    let mut routes = BTreeMap::new();
    for paths in rib.as_object().into_iter().flat_map(|o| o.values()) {
        for p in paths.as_array().into_iter().flatten() {
            let rt1 = p["attrs"].as_array().into_iter().flatten().filter(|a| a["type"] == 16).flat_map(|a| a["value"].as_array().cloned().unwrap_or_default()).any(|c| c["value"] == "65000:1");
            let (Some(prefix), Some(label)) = (p["nlri"]["prefix"].as_str(), p["nlri"]["labels"][0].as_u64()) else { continue };
            // carrier's own route (10.1.0.0/24) comes back from the reflector? It must not be
            // installed as a VPN route at home; it is not in gobgp's originated set either way.
            if rt1 && prefix.starts_with("10.60.") {
                routes.insert(prefix.to_string(), label);
            }
        }
    }
    routes
}

/// The ILM's labels (carrier's own allocations).
fn ilm(dp: &Dataplane) -> Vec<u64> {
    dp.dump()["labels"].as_array().into_iter().flatten().filter_map(|l| l["label"].as_u64()).collect()
}

/// `carrierctl --json show peers` in `ns`: the reflector's entry, once the API answers.
fn peer(ns: &NetNs) -> serde_json::Value {
    eventually("carrierctl show peers", Duration::from_secs(10), || {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(workspace().join("target/debug/carrierctl"))
            .args(["--json", "show", "peers"])
            .output()
            .ok()?;
        let peers: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        peers.as_array()?.iter().find(|p| p["address"] == RR).cloned()
    })
}

fn established(ns: &NetNs) -> bool {
    peer(ns)["state"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("established"))
}

/// Waits until VRF red holds exactly what the reflector holds, and that is `want` routes.
fn wait_in_sync(what: &str, dp: &Dataplane, rr: &GoBgp, want: usize) {
    eventually(what, Duration::from_secs(20), || {
        let (fib, rib) = (vrf_red(dp), rr_red(rr));
        (rib.len() == want && fib == rib).then_some(())
    });
}

/// The namespaces of the module doc: the PE, the reflector's, a CE and a core neighbour, wired
/// and with the management link addressed.
fn lab() -> (NetNs, NetNs, NetNs, NetNs) {
    let pe = NetNs::new("fpe");
    let rr_ns = NetNs::new("frr");
    let ce = NetNs::new("fce");
    let core = NetNs::new("fco");
    veth_between(&pe, "mgmt", &rr_ns, "mgmt");
    pe.sh(&format!("ip addr add {PE}/24 dev mgmt"));
    rr_ns.sh(&format!("ip addr add {RR}/24 dev mgmt"));
    veth_between(&pe, "ce-red", &ce, "eth0");
    veth_between(&pe, "core0", &core, "eth0");
    (pe, rr_ns, ce, core)
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn peer_crash_tcp_reset_and_hold_timer_expiry_leave_nothing_stale() {
    let (pe, rr_ns, _ce, _core) = lab();

    let dp = Dataplane::start(&pe, PE_DATAPLANE);
    let mut rr = GoBgp::start(&rr_ns, 65000, RR, &[PE]);
    let control = start_control(&pe, &control_config(&dp));
    let context = |what: &str| format!("{what}\ncontrol log:\n{}", control.log());
    eventually("the session", Duration::from_secs(30), || established(&pe).then_some(()));
    for i in 0..ROUTES {
        announce(&rr, i, true);
    }
    wait_in_sync("all routes installed", &dp, &rr, ROUTES as usize);
    let labels = ilm(&dp);
    assert_eq!(labels.len(), 1, "one per-VRF label for red: {labels:?}");

    // Withdrawals reach the FIB.
    for i in 0..10 {
        announce(&rr, i, false);
    }
    wait_in_sync("10 withdrawals applied", &dp, &rr, ROUTES as usize - 10);

    // 1. The peer crashes: carrier sees the connection go, withdraws every route it learned
    //    (no graceful restart here), and counts a flap.
    rr.daemon.kill9();
    eventually("routes withdrawn after the peer crashed", Duration::from_secs(10), || vrf_red(&dp).is_empty().then_some(()));
    let p = peer(&pe);
    assert!(!established(&pe), "{p}");
    assert_eq!(p["flaps"], 1, "{}", context(&p.to_string()));
    assert_eq!(p["last_error"], "connection lost", "{p}");
    rr = GoBgp::start(&rr_ns, 65000, RR, &[PE]);
    eventually("the session after the peer's restart", Duration::from_secs(30), || established(&pe).then_some(()));
    for i in 10..ROUTES {
        announce(&rr, i, true);
    }
    wait_in_sync("routes back after the peer's restart", &dp, &rr, ROUTES as usize - 10);
    assert_eq!(ilm(&dp), labels, "carrier's own label changed across a peer flap");

    // 2. TCP reset: the kernel aborts gobgpd's socket (RST to carrier). Once in steady state,
    //    once while the reflector is sending a burst of UPDATEs.
    for (round, burst) in [(2u64, false), (3, true)] {
        let adder = burst.then(|| {
            let ns = rr_ns.name().to_string();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let (prefix, label) = route(i);
                    let _ = std::process::Command::new("ip")
                        .args(["netns", "exec", &ns, "gobgp", "-p", "50051", "global", "rib", "-a", "vpnv4", "add", &prefix, "label", &label.to_string(), "rd", "65000:9", "rt", "65000:1", "nexthop", "10.255.0.2"])
                        .output();
                }
            })
        });
        if burst {
            std::thread::sleep(Duration::from_millis(150));
        }
        let killed = rr_ns.run(&["ss", "-K", "-t", "dst", PE]);
        if let Some(adder) = adder {
            adder.join().expect("the adder thread");
        }
        eventually(&format!("flap {round} counted"), Duration::from_secs(10), || (peer(&pe)["flaps"].as_u64() >= Some(round)).then_some(()));
        eventually(&format!("the session after reset {round}"), Duration::from_secs(30), || established(&pe).then_some(()));
        let want = if burst { ROUTES as usize } else { ROUTES as usize - 10 };
        wait_in_sync(&format!("in sync after reset {round} ({killed})"), &dp, &rr, want);
        assert_eq!(ilm(&dp), labels, "carrier's own label changed across a TCP reset");
    }

    // 3. The peer goes silent (its packets to the PE blackholed): carrier's hold timer expires,
    //    it sends NOTIFICATION 4/0 (the reflector still hears it) and withdraws the routes.
    rr_ns.sh(&format!("ip route add blackhole {PE}/32"));
    eventually("hold timer expiry", Duration::from_secs(15), || {
        let p = peer(&pe);
        p["last_error"].as_str().is_some_and(|e| e.contains("4/0")).then_some(p)
    });
    eventually("routes withdrawn after the hold timer expired", Duration::from_secs(10), || vrf_red(&dp).is_empty().then_some(()));
    assert!(control.log().contains("hold timer expired"), "{}", context("no hold-timer log line"));
    rr_ns.sh(&format!("ip route del blackhole {PE}/32"));
    eventually("the session after the blackhole", Duration::from_secs(40), || established(&pe).then_some(()));
    wait_in_sync("in sync after the blackhole", &dp, &rr, ROUTES as usize);
    assert_eq!(ilm(&dp), labels, "carrier's own label changed across a hold-timer expiry");
    assert!(peer(&pe)["flaps"].as_u64() >= Some(4), "{}", peer(&pe));
}

/// `carrierctl --json` `what` in `ns`, once the API answers.
fn carrierctl(ns: &NetNs, what: &[&str]) -> serde_json::Value {
    eventually(&format!("carrierctl {what:?}"), Duration::from_secs(10), || {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(workspace().join("target/debug/carrierctl"))
            .arg("--json")
            .args(what)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    })
}

/// The dataplane is killed with SIGKILL under a running carrier-control with BGP routes, and
/// started again (as a supervisor would, same config and socket): carrier-control notices it
/// gone (its health says so, its BGP session stays up), and once it is back re-feeds it the
/// whole state without any BGP change to prompt it — VRF red equals the reflector's RIB again,
/// with carrier's own label unchanged — and the restarted dataplane's XDP program replaced the
/// dead one's on every port.
#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn dataplane_killed_under_control_is_refed_when_it_comes_back() {
    let (pe, rr_ns, _ce, _core) = lab();

    let mut dp = Dataplane::start(&pe, PE_DATAPLANE);
    let rr = GoBgp::start(&rr_ns, 65000, RR, &[PE]);
    let control = start_control(&pe, &control_config(&dp));
    eventually("the session", Duration::from_secs(30), || established(&pe).then_some(()));
    for i in 0..ROUTES {
        announce(&rr, i, true);
    }
    wait_in_sync("all routes installed", &dp, &rr, ROUTES as usize);
    let labels = ilm(&dp);
    let ports = ["ce-red", "core0"];
    let before: Vec<_> = ports.iter().map(|p| netns::xdp_programs(Some(&pe), p)).collect();

    dp.kill9();
    eventually("health: dataplane disconnected", Duration::from_secs(10), || {
        let h = carrierctl(&pe, &["show", "health"]);
        (h["dataplane_connected"] == false).then_some(h)
    });
    assert!(established(&pe), "the BGP session does not depend on the dataplane: {}", peer(&pe));

    let (config, socket) = (dp.config.clone(), dp.socket.clone());
    let log = config.with_file_name("dataplane-2.log");
    let dp = Dataplane::start_with(&pe, &config, &socket, &log);
    wait_in_sync("the restarted dataplane re-fed", &dp, &rr, ROUTES as usize);
    assert_eq!(ilm(&dp), labels, "carrier's own label changed across the dataplane's restart");
    for (port, old) in ports.iter().zip(&before) {
        let now = netns::xdp_programs(Some(&pe), port);
        assert!(matches!(now.as_slice(), [(id, name)] if name == "carrier_xdp" && old.iter().all(|(o, _)| o != id)), "{port}: before {old:?}, now {now:?}");
    }
    assert!(control.log().contains("connected to the dataplane"), "{}", control.log());
    eventually("health: dataplane connected again", Duration::from_secs(10), || {
        let h = carrierctl(&pe, &["show", "health"]);
        (h["dataplane_connected"] == true).then_some(h)
    });
}
