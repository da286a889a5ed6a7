//! Running carrier's dataplane inside a test namespace.
//!
//! [`Dataplane::start`] writes a config, starts `carrier-dataplane run` in the namespace and
//! waits for its table socket; dropping the guard stops it (SIGTERM, then SIGKILL), so a
//! failing test never leaves a dataplane attached to anything. The binary is the one
//! `cargo xtask build` made with the XDP object embedded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{unique_name, NetNs};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// The dataplane binary: `$CARRIER_DATAPLANE_BIN`, else `target/debug/carrier-dataplane`.
pub fn dataplane_bin() -> PathBuf {
    let bin = std::env::var_os("CARRIER_DATAPLANE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug/carrier-dataplane"));
    assert!(bin.exists(), "{} is missing: run the privileged tests with `cargo xtask test`", bin.display());
    bin
}

/// A scratch directory for one test, under `target/privileged/`.
pub fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = workspace().join("target/privileged").join(unique_name(prefix));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A running dataplane; stopped on drop.
#[derive(Debug)]
pub struct Dataplane {
    child: Option<Child>,
    ns: String,
    bin: PathBuf,
    /// Its table socket.
    pub socket: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    log: PathBuf,
}

impl Dataplane {
    /// Write `config` and start the dataplane in `ns`; waits (up to 15 s) for its socket.
    pub fn start(ns: &NetNs, config: &str) -> Dataplane {
        let dir = scratch_dir("dp");
        let path = dir.join("carrier.toml");
        std::fs::write(&path, config).expect("write config");
        Self::start_with(ns, &path, &dir.join("dp.sock"), &dir.join("dataplane.log"))
    }

    /// Start on an existing config file and socket path (for restarts).
    pub fn start_with(ns: &NetNs, config: &Path, socket: &Path, log: &Path) -> Dataplane {
        Self::start_with_bin(&dataplane_bin(), ns, config, socket, log)
    }

    /// [`Dataplane::start_with`] with the binary `bin` (the demo runs the release build).
    pub fn start_with_bin(bin: &Path, ns: &NetNs, config: &Path, socket: &Path, log: &Path) -> Dataplane {
        // A socket file left by a killed dataplane would look like the new one being up.
        let _ = std::fs::remove_file(socket);
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open log");
        let err = out.try_clone().expect("dup log");
        // `nsenter --net`, not `ip netns exec`: the latter gives the process a private mount
        // namespace, where the VRF namespaces the dataplane makes for its host path
        // (`ip netns add`) would be invisible to the test.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name()))
            .arg("--")
            .arg(bin)
            .args(["run", "--config"])
            .arg(config)
            .arg("--socket")
            .arg(socket)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start carrier-dataplane");
        let mut dp = Dataplane { child: Some(child), ns: ns.name().to_string(), bin: bin.to_path_buf(), socket: socket.to_path_buf(), config: config.to_path_buf(), log: log.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !dp.socket.exists() {
            if let Some(status) = dp.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("carrier-dataplane exited ({status}) before serving its socket:\n{}", dp.log());
            }
            assert!(Instant::now() < deadline, "carrier-dataplane did not come up in 15 s:\n{}", dp.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        dp
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Run `carrier-dataplane ctl --socket S <args>`; panics unless it succeeds. Returns stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin).arg("ctl").arg("--socket").arg(&self.socket).args(args).output().expect("run ctl");
        assert!(out.status.success(), "ctl {args:?} failed:\n{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The counters (the `counters` object of the reply).
    pub fn counters(&self) -> serde_json::Value {
        let reply: serde_json::Value = serde_json::from_str(&self.ctl(&["counters"])).expect("counters JSON");
        reply["counters"].clone()
    }

    /// Every route, label and bridge entry (`ctl dump`).
    pub fn dump(&self) -> serde_json::Value {
        serde_json::from_str(&self.ctl(&["dump"])).expect("dump JSON")
    }

    /// The next hop of `prefix` in `table` (a VRF name or `underlay`), if installed.
    pub fn route(&self, table: &str, prefix: &str) -> Option<serde_json::Value> {
        dumped_route(&self.dump(), table, prefix).cloned()
    }

    /// SIGKILL, as a crash would; the XDP program may be left behind.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-KILL", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (up to 5 s, then SIGKILL); returns the log.
    pub fn stop(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        let _ = &self.ns;
        self.log()
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The next hop of `prefix` in `table` within a `ctl dump` reply.
pub fn dumped_route<'a>(dump: &'a serde_json::Value, table: &str, prefix: &str) -> Option<&'a serde_json::Value> {
    dump["routes"].as_array()?.iter().find(|r| r["table"] == table && r["prefix"] == prefix).map(|r| &r["nexthop"])
}
