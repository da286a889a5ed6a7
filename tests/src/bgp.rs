//! Running carrier's control process and real BGP daemons (GoBGP) in test namespaces.
//!
//! BGP runs over a management network owned by the kernel (`mgmt`, no XDP on it); data runs
//! over the dataplane's ports. Every process is stopped when its guard drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::carrier::{scratch_dir, workspace};
use crate::netns::NetNs;

/// A child process in a namespace, stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// Its log file.
    pub log: PathBuf,
    /// Its working directory (configs).
    pub dir: PathBuf,
}

impl Daemon {
    /// Start `args` in `ns` with stdout and stderr to `dir/name.log`.
    pub fn spawn(ns: &NetNs, dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::spawn_env(ns.name(), dir, name, args, env)
    }

    /// [`Daemon::spawn`] in a namespace this test did not make (e.g. a VRF's host namespace,
    /// which the dataplane makes), by name.
    pub fn spawn_in(ns: &str, dir: &Path, name: &str, args: &[&str]) -> Daemon {
        Self::spawn_env(ns, dir, name, args, &[])
    }

    fn spawn_env(ns: &str, dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open log");
        let err = out.try_clone().expect("dup log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).args(args).current_dir(dir).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {args:?}: {e}"));
        Daemon { child: Some(child), log, dir: dir.to_path_buf() }
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL (a crash).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-KILL", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    /// Stop it (SIGTERM, up to 5 s, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The control binary built next to the dataplane.
pub fn control_bin() -> PathBuf {
    let bin = std::env::var_os("CARRIER_CONTROL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug/carrier-control"));
    assert!(bin.exists(), "{} is missing: run the privileged tests with `cargo xtask test`", bin.display());
    bin
}

/// Start `carrier-control run` in `ns` on a config text.
pub fn start_control(ns: &NetNs, config: &str) -> Daemon {
    let dir = scratch_dir("ctl");
    std::fs::write(dir.join("control.toml"), config).expect("write control config");
    let bin = control_bin();
    Daemon::spawn(ns, &dir, "control", &[bin.to_str().expect("utf-8 path"), "run", "--config", "control.toml"], &[("RUST_LOG", "info")])
}

/// A GoBGP route reflector: `gobgpd` with every `clients` address as a route-reflector client
/// for VPNv4 and EVPN, and its `gobgp` CLI.
#[derive(Debug)]
pub struct GoBgp {
    /// The daemon.
    pub daemon: Daemon,
    ns: String,
    api_port: u16,
}

impl GoBgp {
    /// Start gobgpd in `ns` as AS `asn` with `router_id`, clients in the same AS.
    pub fn start(ns: &NetNs, asn: u32, router_id: &str, clients: &[&str]) -> GoBgp {
        Self::start_with(ns, asn, router_id, clients, "", "")
    }

    /// [`GoBgp::start`] with extra lines for each neighbor's `[neighbors.config]` table
    /// (e.g. `auth-password = "x"`) and after it (e.g. a `[neighbors.ttl-security.config]`).
    pub fn start_with(ns: &NetNs, asn: u32, router_id: &str, clients: &[&str], in_config: &str, after: &str) -> GoBgp {
        let dir = scratch_dir("gobgp");
        let mut conf = format!("[global.config]\n  as = {asn}\n  router-id = \"{router_id}\"\n  local-address-list = [\"{router_id}\"]\n\n");
        for c in clients {
            conf.push_str(&format!(
                "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{c}\"\n    peer-as = {asn}\n{in_config}\n{after}\n  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = \"{router_id}\"\n  [neighbors.timers.config]\n    connect-retry = 1\n"
            ));
            for family in ["l3vpn-ipv4-unicast", "l2vpn-evpn", "ipv4-unicast"] {
                conf.push_str(&format!("  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{family}\"\n"));
            }
        }
        std::fs::write(dir.join("gobgpd.toml"), conf).expect("write gobgpd.toml");
        let api_port = 50051;
        let daemon = Daemon::spawn(ns, &dir, "gobgpd", &["gobgpd", "-f", "gobgpd.toml", "--api-hosts", &format!("127.0.0.1:{api_port}")], &[]);
        let g = GoBgp { daemon, ns: ns.name().to_string(), api_port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while g.try_cli(&["global"]).is_none() {
            assert!(Instant::now() < deadline, "gobgpd did not come up:\n{}", g.daemon.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        g
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let port = self.api_port.to_string();
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "gobgp", "-u", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run the `gobgp` CLI; panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|| panic!("gobgp {args:?} failed; gobgpd log:\n{}", self.daemon.log()))
    }

    /// How many NOTIFICATIONs gobgpd received from the neighbor at `addr` (`gobgp neighbor`).
    pub fn notifications_from(&self, addr: &str) -> u32 {
        self.cli(&["neighbor", addr])
            .lines()
            .find(|l| l.trim_start().starts_with("Notifications:"))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Wait until the neighbor at `addr` is established.
    pub fn wait_established(&self, addr: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let out = self.try_cli(&["neighbor", addr]).unwrap_or_default();
            if out.to_lowercase().contains("bgp state = established") {
                return;
            }
            assert!(Instant::now() < deadline, "neighbor {addr} not established:\n{out}\ngobgpd log:\n{}", self.daemon.log());
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Poll `f` until it returns `Some`, up to `within`; panics with `what` otherwise.
pub fn eventually<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
