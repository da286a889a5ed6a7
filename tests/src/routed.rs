//! The routed lab of the end-to-end tests that send traffic through one carrier PE, and the
//! `carrier-traffic` runner.
//!
//! ```text
//!  host A 10.1.0.2/24 ── ce-a ┌─────────────┐ ce-b ── host B 10.2.0.2/24 (+ 10.9.0.2 on lo)
//!         gw 10.1.0.1         │ carrier, VRF │         gw 10.2.0.1
//!                             │ red          │
//!                             └─────────────┘
//! ```

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::carrier::workspace;
use crate::netns::{self, veth_between_queues, NetNs};

pub const A_MAC: &str = "02:aa:00:00:00:02";
pub const B_MAC: &str = "02:bb:00:00:00:02";
pub const PE_A_MAC: &str = "02:00:00:00:01:01";
pub const PE_B_MAC: &str = "02:00:00:00:01:02";
pub const HOST_B: &str = "10.2.0.2";
/// B's address that only the fed route reaches.
pub const FED_DST: &str = "10.9.0.2";

/// The base config: the two customer ports of VRF red, nothing else.
pub fn base_config() -> String {
    format!(
        r#"[router]
router_id = "10.255.0.1"

[[vrf]]
name = "red"

[[port]]
name = "ce-a"
mac = "{PE_A_MAC}"
addresses = ["10.1.0.1/24"]
vrf = "red"

[[port]]
name = "ce-b"
mac = "{PE_B_MAC}"
addresses = ["10.2.0.1/24"]
vrf = "red"
"#
    )
}


/// `carrier-traffic`: `$CARRIER_TRAFFIC_BIN`, else `target/debug/carrier-traffic` (built by
/// `cargo build --workspace`, which `cargo xtask test` runs).
pub fn traffic_bin() -> PathBuf {
    let bin = std::env::var_os("CARRIER_TRAFFIC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug/carrier-traffic"));
    assert!(
        bin.exists(),
        "{} is missing: run the privileged tests with `cargo xtask test` (or `cargo build -p carrier-bench --bin carrier-traffic`)",
        bin.display()
    );
    bin
}

/// The lab of the module doc, without the dataplane.
#[derive(Debug)]
pub struct RoutedLab {
    /// The PE's namespace.
    pub pe: NetNs,
    /// Host A.
    pub host_a: NetNs,
    /// Host B.
    pub host_b: NetNs,
}

impl Default for RoutedLab {
    fn default() -> Self {
        Self::new()
    }
}

impl RoutedLab {
    /// Makes the namespaces, veths and host addresses.
    pub fn new() -> RoutedLab {
        RoutedLab::with_queues(1)
    }

    /// [`RoutedLab::new`] with `queues` receive and transmit queues on every veth.
    pub fn with_queues(queues: u32) -> RoutedLab {
        netns::require_root();
        let lab = RoutedLab {
            pe: NetNs::new("crp"),
            host_a: NetNs::new("cra"),
            host_b: NetNs::new("crb"),
        };
        for ns in [&lab.pe, &lab.host_a, &lab.host_b] {
            // No neighbour discovery or MLD in the counters.
            ns.sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
            ns.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
        }
        for (port, port_mac, host, host_mac, addr) in [
            ("ce-a", PE_A_MAC, &lab.host_a, A_MAC, "10.1.0.2/24"),
            ("ce-b", PE_B_MAC, &lab.host_b, B_MAC, "10.2.0.2/24"),
        ] {
            veth_between_queues(&lab.pe, port, host, "eth0", queues);
            lab.pe.sh(&format!("ip link set {port} address {port_mac}"));
            host.sh(&format!("ip link set eth0 address {host_mac}"));
            host.sh(&format!("ip addr add {addr} dev eth0"));
            host.sh("ethtool -K eth0 tx off");
        }
        lab.host_a.sh("ip route add default via 10.1.0.1");
        lab.host_b.sh("ip route add default via 10.2.0.1");
        lab.host_b.sh(&format!("ip addr add {FED_DST}/32 dev lo"));
        lab
    }

    /// `ping -c count` from A to `dst`: true when every echo was answered.
    pub fn ping_from_a(&self, dst: &str, count: u32) -> bool {
        let out = self.host_a.exec(&[
            "ping",
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "1",
            dst,
        ]);
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains(&format!("{count} received"))
    }

    /// A reaches `dst`: after two echoes that may be lost (carrier drops a packet whose next
    /// hop it is still resolving, `neighbour-miss`: the first echo resolves B, the first
    /// answer resolves A), three echoes all answered.
    pub fn a_reaches(&self, dst: &str) -> bool {
        let _ = self.ping_from_a(dst, 2);
        self.ping_from_a(dst, 3)
    }
}

/// A `carrier-traffic` run in a namespace; killed on drop (it is bounded by `--secs` too).
#[derive(Debug)]
pub struct Traffic {
    child: Option<Child>,
    what: &'static str,
}

impl Traffic {
    /// Starts `carrier-traffic what args…` in `ns`.
    pub fn start(ns: &NetNs, what: &'static str, args: &[&str]) -> Traffic {
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(traffic_bin())
            .arg(what)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start carrier-traffic {what}: {e}"));
        Traffic {
            child: Some(child),
            what,
        }
    }

    /// A receiver on `bind` for at most `secs` (2 s idle ends it), once its socket is bound.
    pub fn receiver(ns: &NetNs, bind: &str, secs: u64) -> Traffic {
        let mut t = Traffic::start(ns, "recv", &["--bind", bind, "--secs", &secs.to_string(), "--idle-secs", "2"]);
        t.wait_listening();
        t
    }

    /// For `recv`: waits (up to 5 s) until it says its socket is bound.
    pub fn wait_listening(&mut self) {
        let child = self.child.as_mut().expect("running");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stderr.read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
        assert!(
            line.contains("listening"),
            "carrier-traffic {} did not start: {line:?}",
            self.what
        );
    }

    /// Waits for it to finish and returns its JSON report.
    pub fn report(mut self) -> serde_json::Value {
        let child = self.child.take().expect("running");
        let out = child.wait_with_output().expect("wait for carrier-traffic");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "carrier-traffic {} failed ({}): {stdout}{}",
            self.what,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("carrier-traffic {} printed {stdout:?}: {e}", self.what))
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

