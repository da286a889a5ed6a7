//! `cargo xtask run` with no config: the pseudo-WAN demo (`carrier_tests::demo`). It builds
//! the network, waits for BGP to converge, proves reachability (pings within every VRF and
//! none across, the routed-mode customer, a traceroute across the MPLS core, pings across the
//! EVPN segment including a kernel VTEP), shows the operator's view (carrierctl, Prometheus)
//! and tears everything down.
//!
//! - `--keep`: leave it up until Ctrl-C.
//! - `--check`: the same, every claim asserted; exits 1 if one fails (the test suite runs it).
//!
//! A run first removes what an earlier (crashed) run left; Ctrl-C, SIGTERM and failures
//! remove every namespace, veth and process it made. Two runs at once are refused (a lock).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use carrier_tests::capture::{tshark, Capture};
use carrier_tests::demo::{
    core_addr, evpn_addr, evpn_mac, host_addr, in_echos, ping, remove_leftovers, traceroute, Bins, PseudoWan, API_PORT, DRAWING, KERNEL_VTEP, OPS, PREFIX,
    ROUTED_HOST, VNI, VRFS,
};

const LOCK: &str = "/run/carrier-demo.lock";

/// What the demo claims, each checked: printed as it goes, counted for the exit status.
#[derive(Debug, Default)]
struct Claims {
    passed: u32,
    failed: Vec<String>,
}

impl Claims {
    fn check(&mut self, ok: bool, what: &str, detail: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
            println!("  ok    {what}");
        } else {
            let detail = detail();
            println!("  FAIL  {what}\n        {}", detail.replace('\n', "\n        "));
            self.failed.push(what.to_string());
        }
    }
}

fn step(title: &str) {
    println!("\n=== {title}");
}

/// The signal that asked the demo to stop (0: none yet).
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP.store(sig, Ordering::Relaxed);
}

/// SIGINT, SIGTERM and SIGHUP remove the demo network and exit: a handler notes the signal, a
/// thread acts on it. (Children start with default dispositions: exec resets caught signals.)
fn handle_signals() {
    for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe { libc::signal(s, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
    std::thread::spawn(|| loop {
        let sig = STOP.load(Ordering::Relaxed);
        if sig != 0 {
            eprintln!("\ninterrupted (signal {sig}): removing the demo network");
            let n = remove_leftovers();
            eprintln!("removed {n} namespaces and the processes in them");
            std::process::exit(130);
        }
        std::thread::sleep(Duration::from_millis(100));
    });
}

/// Holds the demo's lock for the process's life, or says who holds it.
fn lock() -> Result<std::fs::File, String> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(LOCK).map_err(|e| format!("{LOCK}: {e}"))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!("another carrier demo is running (it holds {LOCK}); stop it first"));
    }
    Ok(file)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keep = args.iter().any(|a| a == "--keep");
    let check = args.iter().any(|a| a == "--check");
    if let Some(bad) = args.iter().find(|a| *a != "--keep" && *a != "--check") {
        eprintln!("usage: carrier-demo [--keep | --check] (unknown argument {bad:?})");
        std::process::exit(2);
    }
    if String::from_utf8_lossy(&std::process::Command::new("id").arg("-u").output().map(|o| o.stdout).unwrap_or_default()).trim() != "0" {
        eprintln!("the demo creates network namespaces and attaches XDP programs: run it as root");
        std::process::exit(1);
    }
    let _lock = lock().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1);
    });
    handle_signals();
    let exe = std::env::current_exe().expect("the demo's own path");
    let bins = Bins::next_to(&exe);
    for bin in [&bins.dataplane, &bins.control, &bins.carrierctl] {
        if !bin.exists() {
            eprintln!("{} is missing: run the demo with `cargo xtask run`", bin.display());
            std::process::exit(1);
        }
    }
    let dir = exe.parent().and_then(|d| d.parent()).map_or_else(|| PathBuf::from("demo"), |t| t.join("demo"));

    let left = remove_leftovers();
    if left > 0 {
        println!("removed {left} namespaces (and their processes) an earlier run left");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let start = Instant::now();
    // A panic (a command that failed while building) unwinds through PseudoWan's guards; then
    // whatever is left goes by name.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| demo(&dir, &bins, keep, check)));
    let left = remove_leftovers();
    match outcome {
        Ok(claims) if claims.failed.is_empty() => {
            println!("\n{} claims verified, none failed ({:.0} s); the demo network is gone", claims.passed, start.elapsed().as_secs_f64());
        }
        Ok(claims) => {
            println!("\n{} claims verified, {} FAILED: {}", claims.passed, claims.failed.len(), claims.failed.join("; "));
            println!("logs and configs: {}", dir.display());
            std::process::exit(1);
        }
        Err(_) => {
            println!("\nthe demo failed (above); removed {left} namespaces; logs and configs: {}", dir.display());
            std::process::exit(1);
        }
    }
}

fn demo(dir: &std::path::Path, bins: &Bins, keep: bool, check: bool) -> Claims {
    let mut claims = Claims::default();
    step("the pseudo-WAN: two carrier PEs, a GoBGP route reflector, 4 VRFs with the same addresses, EVPN with a kernel VTEP");
    print!("{DRAWING}");
    let net = PseudoWan::up(dir, bins);
    net.announce_kernel_vtep();
    println!("started: gobgpd (route reflector), carrier-dataplane + carrier-control on each PE, Prometheus; configs and logs in {}", dir.display());

    step("waiting for BGP: sessions with the reflector, routes received, forwarding state installed");
    let converged = wait_for_convergence(&net);
    claims.check(converged, "both PEs established with the reflector and installed every remote VPN route, flood-list entry and MAC", || net.logs());

    step("reachability within each VRF: host 1 (10.1.0.2, behind PE1) pings host 2 (10.2.0.2, behind PE2); all four VRFs use these addresses");
    for v in VRFS {
        let src = net.host(v, 1);
        let _ = ping(src, &host_addr(2), 2);
        let before: BTreeMap<&str, u64> = VRFS.iter().map(|w| (*w, in_echos(net.host(w, 2)))).collect();
        let got = ping(src, &host_addr(2), 3);
        let delta: BTreeMap<&str, u64> = VRFS.iter().map(|w| (*w, in_echos(net.host(w, 2)) - before[w])).collect();
        let only_own = delta.iter().all(|(w, d)| if *w == v { *d >= 3 } else { *d == 0 });
        claims.check(got == 3 && only_own, &format!("{v}1 → {v}2 {}: {got}/3 answered, echo requests reached {PREFIX}{v}2 and no other VRF's host", host_addr(2)), || {
            format!("echo requests received per VRF host at {}: {delta:?}", host_addr(2))
        });
    }

    step("isolation and routed mode: 10.9.0.5/32 sits behind PE2 in VRF red only, with an on-link default route (PE2 answers its ARP by proxy)");
    let _ = ping(net.host("red", 1), ROUTED_HOST, 2);
    let before = in_echos(&net.routed);
    let got = ping(net.host("red", 1), ROUTED_HOST, 3);
    let reached = in_echos(&net.routed) - before;
    claims.check(got == 3 && reached >= 3, &format!("red1 → routed customer {ROUTED_HOST}: {got}/3 answered"), || format!("{reached} echo requests reached it"));
    let neigh = net.routed.run(&["ip", "neigh", "show", &host_addr(1)]);
    let proxy_mac = "02:00:00:02:00:20";
    claims.check(neigh.contains(proxy_mac), &format!("the routed customer resolved {} (in another site) to PE2's port MAC {proxy_mac}: proxy ARP", host_addr(1)), || format!("ip neigh: {neigh}"));
    for v in ["blue", "green", "yellow"] {
        let before = in_echos(&net.routed);
        let got = ping(net.host(v, 1), ROUTED_HOST, 2);
        let reached = in_echos(&net.routed) - before;
        claims.check(got == 0 && reached == 0, &format!("{v}1 → {ROUTED_HOST}: no answer, nothing reached it (VRF {v} has no route there)"), || format!("{got} answers, {reached} echo requests reached it"));
    }

    step("traceroute red1 → red2 across the MPLS core (PE2 answers for a label TTL that expires there)");
    let (hops, text) = traceroute(net.host("red", 1), &host_addr(2));
    print!("{text}");
    let addrs: Vec<&str> = hops.iter().map(|(_, a)| a.as_str()).collect();
    claims.check(addrs.len() == 3 && addrs[0] == "10.1.0.1" && addrs[2] == host_addr(2), "traceroute: PE1 (10.1.0.1), PE2, then red2", || text.clone());

    step("what the core carries: MPLS with PE2's VPN labels (tcpdump on the core bridge, decoded by tshark)");
    let pcap_dir = dir.join("capture");
    std::fs::create_dir_all(&pcap_dir).expect("capture directory");
    let capture = Capture::start(&net.core, "pe1", &pcap_dir.join("core.pcap"), &["mpls"]);
    for v in VRFS {
        let _ = ping(net.host(v, 1), &host_addr(2), 1);
    }
    let pcap = capture.stop();
    let fields = ["eth.src", "mpls.label", "mpls.ttl", "ip.src", "ip.dst", "icmp.type"];
    println!("  {}", fields.join("\t"));
    let frames = tshark(&pcap, "mpls", &fields);
    for f in &frames {
        println!("  {}", f.join("\t"));
    }
    let sent: BTreeSet<u64> = frames.iter().filter(|f| f[0] == "02:00:00:01:00:01").filter_map(|f| f[1].parse().ok()).collect();
    let pe2_labels: BTreeSet<u64> = net
        .carrierctl_json(2, &["show", "mpls"])
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l["label"].as_u64())
        .collect();
    claims.check(sent.len() == 4 && sent.is_subset(&pe2_labels), "PE1 sends each VRF's traffic under a different label, each one PE2 allocated", || {
        format!("labels PE1 sent: {sent:?}; PE2's labels: {pe2_labels:?}")
    });

    step("EVPN VNI 100: evpn1 (behind PE1) pings evpn2 (behind PE2) and the kernel VTEP's host 10.100.0.9");
    for (src, dst) in [(0usize, evpn_addr(2)), (0, evpn_addr(9)), (1, evpn_addr(9))] {
        let _ = ping(&net.evpn[src], &dst, 2);
        let got = ping(&net.evpn[src], &dst, 3);
        claims.check(got == 3, &format!("evpn{} → {dst}: {got}/3 answered", src + 1), String::new);
    }

    step("the operator's view on PE1 (carrierctl over the control API)");
    for args in [&["show", "peers"][..], &["show", "interfaces"], &["show", "neighbours"], &["show", "vrf"], &["show", "mpls"], &["show", "evpn"], &["show", "stats", "labels"]] {
        println!("\n$ ip netns exec {PREFIX}pe1 carrierctl {}", args.join(" "));
        let (code, out) = net.carrierctl(1, args);
        print!("{out}");
        claims.check(code == 0, &format!("carrierctl {} exits 0", args.join(" ")), || format!("exit {code}"));
    }
    let peers = net.carrierctl_json(1, &["show", "peers"]).unwrap_or_default();
    claims.check(peers.as_array().is_some_and(|p| p.iter().any(|p| p["state"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("established")))), "carrierctl: PE1's session with the reflector is Established", || peers.to_string());
    let interfaces = net.carrierctl_json(1, &["show", "interfaces"]).unwrap_or_default();
    claims.check(
        interfaces.as_array().is_some_and(|l| l.len() == 6 && l.iter().all(|i| i["link"] == "up" && i["xdp"] == "native")),
        "carrierctl: PE1's 6 ports are up, each with the XDP program attached in native mode",
        || interfaces.to_string(),
    );
    let express: u64 = interfaces.as_array().map_or(0, |l| l.iter().filter_map(|i| i["express_forwarded"].as_u64()).sum());
    claims.check(express > 0, &format!("carrierctl: PE1's XDP express tier forwarded {express} frames itself (VRF, push, pop), counted with the rest"), || interfaces.to_string());
    let neighbours = net.carrierctl_json(1, &["show", "neighbours"]).unwrap_or_default();
    let red1_mac = net.host("red", 1).run(&["cat", "/sys/class/net/eth0/address"]).trim().to_string();
    claims.check(
        neighbours.as_array().is_some_and(|l| l.iter().any(|n| n["port"] == "ce-red" && n["ip"] == host_addr(1) && n["mac"] == red1_mac.as_str())),
        &format!("carrierctl: PE1 learned red1 ({}) at its own MAC {red1_mac} on ce-red", host_addr(1)),
        || neighbours.to_string(),
    );
    let labels = net.carrierctl_json(1, &["show", "mpls"]).unwrap_or_default();
    let counted: Vec<(String, u64)> = labels.as_array().into_iter().flatten().map(|l| (l["vrf"].as_str().unwrap_or("").to_string(), l["packets_in"].as_u64().unwrap_or(0))).collect();
    claims.check(
        VRFS.iter().all(|v| counted.iter().any(|(w, n)| w == v && *n > 0)),
        "carrierctl: each VRF's label on PE1 counted the replies that came back under it",
        || format!("{counted:?}"),
    );
    let evpn = net.carrierctl_json(1, &["show", "evpn"]).unwrap_or_default();
    let bd = evpn.as_array().and_then(|l| l.iter().find(|e| e["vni"] == VNI)).cloned().unwrap_or_default();
    let has = |key: &str, field: Option<&str>, want: &str| {
        bd[key].as_array().is_some_and(|l| l.iter().any(|x| match field {
            Some(f) => x[f] == want,
            None => x == want,
        }))
    };
    claims.check(
        has("flood", None, &core_addr(2)) && has("flood", None, KERNEL_VTEP) && has("macs", Some("mac"), &evpn_mac(2)) && has("macs", Some("mac"), &evpn_mac(9)),
        "carrierctl: VNI 100 floods to PE2 and the kernel VTEP, and knows both remote hosts' MACs from EVPN type-2 routes",
        || bd.to_string(),
    );

    step(&format!("Prometheus ({OPS}:9090, in {PREFIX}ops) scrapes both PEs' /metrics"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut up, mut label_packets) = (vec![], vec![]);
    while Instant::now() < deadline {
        up = net.prometheus_query("up{job=\"carrier\"} == 1").unwrap_or_default();
        label_packets = net.prometheus_query("sum by (pe) (carrier_label_in_packets_total) > 0").unwrap_or_default();
        if up.len() == 2 && label_packets.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    for r in &label_packets {
        println!("  sum by (pe) (carrier_label_in_packets_total): {} {}", r["metric"]["pe"].as_str().unwrap_or("?"), r["value"][1].as_str().unwrap_or("?"));
    }
    claims.check(up.len() == 2, "Prometheus: both PEs' targets are up", || format!("{up:?}"));
    claims.check(label_packets.len() == 2, "Prometheus: both PEs report packets received under their VPN labels", || format!("{label_packets:?}"));

    step("try it");
    println!(
        "  step into a host:     ip netns exec {PREFIX}red1 ping 10.2.0.2\n\
         \x20 the CLI on a PE:      ip netns exec {PREFIX}pe1 {} show rib --vrf red\n\
         \x20 the API (OpenAPI):    ip netns exec {PREFIX}ops curl -s http://172.31.0.1:{API_PORT}/openapi.json\n\
         \x20 metrics:              ip netns exec {PREFIX}ops curl -s http://172.31.0.1:{API_PORT}/metrics\n\
         \x20 Prometheus:           ip netns exec {PREFIX}ops curl -s 'http://{OPS}:9090/api/v1/query?query=carrier_bgp_routes_received'\n\
         \x20 the reflector:        ip netns exec {PREFIX}rr gobgp global rib -a vpnv4\n\
         \x20 configs and logs:     {}",
        bins.carrierctl.display(),
        dir.display()
    );
    if keep && !check {
        println!("\nthe network stays up; Ctrl-C removes it");
        loop {
            std::thread::park();
        }
    }
    step("tearing down");
    drop(net);
    claims
}

/// Prints progress (each PE's session and routes received) until both PEs forward everything
/// the other PE and the kernel VTEP announced, or 90 s pass.
fn wait_for_convergence(net: &PseudoWan) -> bool {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let mut line = String::new();
        let mut done = true;
        for me in [1u8, 2] {
            let peers = net.carrierctl_json(me, &["show", "peers"]).unwrap_or_default();
            let rr = peers.as_array().and_then(|p| p.first()).cloned().unwrap_or_default();
            let received: Vec<String> = rr["prefixes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{} {}", c["family"].as_str().unwrap_or("?").replace("l3vpn-ipv4-unicast", "vpnv4").replace("l2vpn-evpn", "evpn"), c["received"]))
                .collect();
            let (have, want) = installed(net, me);
            done &= have == want;
            line.push_str(&format!("PE{me} {:<11} {:<22} installed {have}/{want}   ", rr["state"].as_str().unwrap_or("starting"), received.join(", ")));
        }
        if line != last {
            println!("  {:>5.1} s  {}", start.elapsed().as_secs_f64(), line.trim_end());
            last = line;
        }
        if done {
            return true;
        }
        if start.elapsed() > Duration::from_secs(90) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How much of what PE `me` should have learned its dataplane holds: (have, want).
fn installed(net: &PseudoWan, me: u8) -> (usize, usize) {
    let peer = 3 - me;
    let dump = net.pe(me).dp.dump();
    let mut want: Vec<(String, String)> = VRFS.iter().map(|v| (v.to_string(), format!("10.{peer}.0.0/24"))).collect();
    if me == 1 {
        want.push(("red".to_string(), "10.9.0.0/24".to_string()));
    }
    let mut have = want.iter().filter(|(t, p)| carrier_tests::carrier::dumped_route(&dump, t, p).is_some_and(|nh| nh["kind"] == "mpls-push")).count();
    let bd = dump["bridges"].as_array().and_then(|b| b.iter().find(|b| b["bridge"] == format!("bd{VNI}"))).cloned().unwrap_or_default();
    let flood = |vtep: &str| bd["flood"].as_array().is_some_and(|f| f.iter().any(|v| v == vtep));
    let mac = |m: &str| bd["macs"].as_array().is_some_and(|l| l.iter().any(|x| x["mac"] == m));
    have += [flood(&core_addr(peer)), flood(KERNEL_VTEP), mac(&evpn_mac(peer)), mac(&evpn_mac(9))].iter().filter(|b| **b).count();
    (have, want.len() + 4)
}
