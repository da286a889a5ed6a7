//! Privileged tests of restarts: of the control process that feeds a running dataplane its
//! tables, and of the dataplane itself after a crash.
//!
//! Run as root by `cargo xtask test` (which builds `carrier-traffic` with the workspace).
//! The lab, one namespace each:
//!
//! ```text
//!  host A 10.1.0.2/24 ── ce-a ┌─────────────┐ ce-b ── host B 10.2.0.2/24 (+ 10.9.0.2 on lo)
//!         gw 10.1.0.1         │ carrier, VRF │         gw 10.2.0.1
//!                             │ red          │
//!                             └─────────────┘
//! ```
//!
//! The feeder is what a control process does to the table socket: `carrier-dataplane ctl
//! replace --config routes.toml --hold` sends its whole state as one `replace` and stays
//! connected. Only the fed state routes 10.9.0.0/24 (to B), so traffic to 10.9.0.2 flows only
//! while the dataplane holds it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use carrier_tests::carrier::{dataplane_bin, Dataplane};
use carrier_tests::netns::{self, veth_between, NetNs};
use carrier_tests::routed::{base_config, RoutedLab, Traffic, FED_DST, HOST_B};


/// What the control process feeds: the base (its routes need the connected subnets to
/// resolve their gateways) and the route to B's 10.9.0.0/24.
fn fed_config() -> String {
    format!(
        "{}\n[[route]]\nvrf = \"red\"\nprefix = \"10.9.0.0/24\"\nvia = \"{HOST_B}\"\n",
        base_config()
    )
}


/// The table generation `ctl status` reports.
fn generation(dataplane: &Dataplane) -> u64 {
    let status: serde_json::Value =
        serde_json::from_str(&dataplane.ctl(&["status"])).expect("status JSON");
    status["generation"]
        .as_u64()
        .unwrap_or_else(|| panic!("no generation in {status}"))
}

/// Counters, after the worker's next publication (every 100 ms).
fn counters(dataplane: &Dataplane) -> serde_json::Value {
    std::thread::sleep(Duration::from_millis(300));
    dataplane.counters()
}

/// A control process holding the table socket: `ctl replace --config F --hold`; killed
/// (SIGKILL) on drop.
struct Feeder {
    child: Child,
}

impl Feeder {
    /// Starts it and waits (up to 10 s) for the dataplane's answer; returns the generation
    /// its `replace` made.
    fn start(socket: &Path, config: &Path) -> (Feeder, u64) {
        let mut child = Command::new(dataplane_bin())
            .arg("ctl")
            .arg("--socket")
            .arg(socket)
            .args(["replace", "--config"])
            .arg(config)
            .arg("--hold")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the feeder");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // The reply is pretty-printed JSON: parse what came so far after each line.
        std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
                if let Ok(reply) = serde_json::from_str::<serde_json::Value>(&text) {
                    let _ = tx.send(reply);
                    return;
                }
            }
        });
        let mut feeder = Feeder { child };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(reply) if reply["response"] == "applied" => {
                assert!(
                    feeder.child.try_wait().expect("feeder status").is_none(),
                    "the feeder exited instead of holding the socket"
                );
                let generation = reply["generation"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no generation in {reply}"));
                (feeder, generation)
            }
            other => {
                feeder.kill9();
                let mut stderr = String::new();
                if let Some(mut e) = feeder.child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                panic!("the feeder's replace was not applied: {other:?}\n{stderr}");
            }
        }
    }

    fn kill9(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.child.id().to_string()])
                .status();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The `Udp:` counters of `/proc/net/snmp` in `ns`, as `name=value` pairs.
fn udp_snmp(ns: &NetNs) -> String {
    let snmp = ns.run(&["cat", "/proc/net/snmp"]);
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    match (udp.next(), udp.next()) {
        (Some(names), Some(values)) => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => snmp,
    }
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn table_feeder_restart_keeps_forwarding() {
    const PPS: u64 = 10_000;
    const SECS: u64 = 10;
    const PORT: u16 = 7000;
    let lab = RoutedLab::new();
    let mut dataplane = Dataplane::start(&lab.pe, &base_config());
    let dir = dataplane
        .config
        .parent()
        .expect("config is in a scratch dir")
        .to_path_buf();
    let routes = dir.join("routes.toml");
    std::fs::write(&routes, fed_config()).expect("write routes.toml");
    let context = || {
        format!(
            "counters: {:#}\nlog:\n{}",
            dataplane.counters(),
            dataplane.log()
        )
    };

    // The base tables do not reach 10.9.0.2: forwarding to it depends on the fed route.
    assert!(
        lab.a_reaches(HOST_B),
        "A cannot reach B's connected address: {}",
        context()
    );
    assert!(
        !lab.ping_from_a(FED_DST, 1),
        "{FED_DST} is reachable before the route was fed"
    );
    let no_route = counters(&dataplane)["ports"]["ce-a"]["drops"]["no-route"]
        .as_u64()
        .unwrap_or(0);
    assert!(no_route >= 1, "expected a no-route drop: {}", context());

    let start_generation = generation(&dataplane);
    let (mut feeder, fed) = Feeder::start(&dataplane.socket, &routes);
    assert_eq!(fed, start_generation + 1);
    assert!(
        lab.a_reaches(FED_DST),
        "the fed route does not forward: {}",
        context()
    );

    let mut receiver = Traffic::start(
        &lab.host_b,
        "recv",
        &[
            "--bind",
            &format!("{FED_DST}:{PORT}"),
            "--secs",
            &(SECS + 10).to_string(),
            "--idle-secs",
            "2",
        ],
    );
    receiver.wait_listening();
    let sender = Traffic::start(
        &lab.host_a,
        "send",
        &[
            "--dst",
            &format!("{FED_DST}:{PORT}"),
            "--pps",
            &PPS.to_string(),
            "--secs",
            &SECS.to_string(),
        ],
    );
    let t0 = Instant::now();
    let at = |secs: f64| {
        let when = Duration::from_secs_f64(secs);
        std::thread::sleep(when.saturating_sub(t0.elapsed()));
    };
    // Twice: the control process crashes, the tables stay; it comes back and replaces them.
    let mut timeline = Vec::new();
    let mut generations = vec![fed];
    for (kill_at, restart_at) in [(2.5, 3.5), (5.5, 6.5)] {
        at(kill_at);
        feeder.kill9();
        timeline.push(format!("killed at {:.3} s", t0.elapsed().as_secs_f64()));
        at(restart_at);
        let (next, generation) = Feeder::start(&dataplane.socket, &routes);
        feeder = next;
        generations.push(generation);
        timeline.push(format!(
            "restarted at {:.3} s (generation {generation})",
            t0.elapsed().as_secs_f64()
        ));
    }
    let sent = sender.report();
    let received = receiver.report();
    drop(feeder);
    eprintln!("feeder: {timeline:?}\nsender: {sent}\nreceiver: {received}");

    let (sent_n, unique) = (
        sent["sent"].as_u64().expect("sent"),
        received["unique"].as_u64().expect("unique"),
    );
    let final_generation = generation(&dataplane);
    let final_counters = counters(&dataplane);
    let udp = udp_snmp(&lab.host_b);
    // The I/O layer's own drops (transmit ring full, fill ring starved) are logged at stop.
    let log = dataplane.stop();
    let report = format!(
        "sender {sent}\nreceiver {received}\n(gaps are sequence numbers: at {PPS} pps, seq / {PPS} = seconds)\n\
         feeder {timeline:?}\nB's UDP counters: {udp}\ncounters: {final_counters:#}\nlog:\n{log}"
    );
    assert!(
        sent_n >= PPS * SECS * 9 / 10,
        "the sender fell behind its pace: {report}"
    );
    assert_eq!(sent["errors"], 0, "{report}");
    assert_eq!(received["duplicates"], 0, "{report}");
    assert_eq!(sent_n.saturating_sub(unique), 0, "datagrams lost: {report}");
    assert_eq!(
        generations,
        [
            start_generation + 1,
            start_generation + 2,
            start_generation + 3
        ],
        "{report}"
    );
    assert_eq!(final_generation, start_generation + 3, "{report}");
}


#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn stale_program_after_kill9() {
    let lab = RoutedLab::new();
    let mut first = Dataplane::start(&lab.pe, &base_config());
    let ports = ["ce-a", "ce-b"];
    assert!(
        lab.a_reaches(HOST_B),
        "the first dataplane does not forward:\n{}",
        first.log()
    );
    let before: Vec<_> = ports.iter().map(|p| netns::xdp_programs(Some(&lab.pe), p)).collect();
    for (port, programs) in ports.iter().zip(&before) {
        assert!(
            matches!(programs.as_slice(), [(_, name)] if name == "carrier_xdp"),
            "{port} before the crash: {programs:?}"
        );
    }

    first.kill9();
    // What a crash leaves: with BPF links the program goes with the process; a netlink
    // attachment would stay. Either way the next dataplane must take over.
    let left: Vec<_> = ports.iter().map(|p| netns::xdp_programs(Some(&lab.pe), p)).collect();
    eprintln!("XDP programs after kill -9: {left:?} (before: {before:?})");
    for (port, programs) in ports.iter().zip(&left) {
        assert!(
            programs.iter().all(|(_, name)| name == "carrier_xdp"),
            "{port} after the crash: {programs:?}"
        );
    }

    // The same config, socket path and log, as a supervisor would restart it. The dead
    // process's socket file is still there; `start_with` waits for the socket file, so it is
    // removed first (the dataplane itself replaces a stale one).
    let (config, socket) = (first.config.clone(), first.socket.clone());
    let log = config.with_file_name("dataplane.log");
    if socket.exists() {
        eprintln!("stale table socket left by the crash: {}", socket.display());
        std::fs::remove_file(&socket).expect("remove the stale socket");
    }
    let second = Dataplane::start_with(&lab.pe, &config, &socket, &log);
    for (port, stale) in ports.iter().zip(&left) {
        let programs = netns::xdp_programs(Some(&lab.pe), port);
        match programs.as_slice() {
            [(id, name)] if name == "carrier_xdp" => {
                assert!(
                    stale.iter().all(|(old, _)| old != id),
                    "{port}: the stale program {id} is still attached"
                );
            }
            other => panic!("{port} after the restart: {other:?}\n{}", second.log()),
        }
    }
    let rx_before = counters(&second)["ports"]["ce-a"]["rx"]["packets"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        lab.a_reaches(HOST_B),
        "the restarted dataplane does not forward:\n{}",
        second.log()
    );
    let after = counters(&second);
    let rx = after["ports"]["ce-a"]["rx"]["packets"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        rx >= rx_before + 5,
        "the echoes did not go through the new dataplane: {after:#}"
    );
}

/// A table socket that cannot be made (its directory cannot be created): the dataplane says which
/// directory and why, exits non-zero, and leaves no XDP program on its port.
#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn unusable_socket_directory_is_a_clear_error_and_leaves_nothing_attached() {
    let ns = NetNs::new("rsk");
    let peer = NetNs::new("rsp");
    veth_between(&ns, "core0", &peer, "eth0");
    let dir = carrier_tests::carrier::scratch_dir("sock");
    let config = dir.join("carrier.toml");
    std::fs::write(&config, "[router]\nrouter_id = \"10.255.0.1\"\n\n[[port]]\nname = \"core0\"\nmac = \"02:00:00:00:00:01\"\naddresses = [\"192.0.2.1/24\"]\ncore = true\n").unwrap();
    // /proc/sys accepts no new directory, even from root.
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .arg("--")
        .arg(dataplane_bin())
        .args(["run", "--config"])
        .arg(&config)
        .args(["--socket", "/proc/sys/carrier-test/dp.sock"])
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run carrier-dataplane");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it ran: {stderr}");
    assert!(stderr.contains("table socket /proc/sys/carrier-test/dp.sock") && stderr.contains("cannot create its directory /proc/sys/carrier-test"), "{stderr}");
    assert_eq!(netns::xdp_programs(Some(&ns), "core0"), Vec::new(), "XDP left attached:\n{stderr}");
}
