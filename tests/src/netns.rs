//! Network-namespace guards for the privileged tests (run as root by `cargo xtask test`).
//!
//! The contract: every privileged test builds its topology in namespaces made by
//! [`NetNs::new`], which are deleted when the guard drops — also when the test panics,
//! since unwinding runs `Drop`. Deleting a namespace deletes the veth ends inside it,
//! and with them their peers. Helpers panic with the failing command and its stderr
//! instead of returning `Result`, so the test's trace shows what broke.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Makes names unique within this test process; the pid makes them unique across
/// processes.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Linux limit on interface names (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// `{prefix}{pid}{counter}`: unique on this machine while this process lives, and
/// short enough to serve as (the start of) an interface name. Panics when it would
/// be longer than [`MAX_IFNAME_LEN`].
pub fn unique_name(prefix: &str) -> String {
    let name = format!(
        "{prefix}{}{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    assert!(
        name.len() <= MAX_IFNAME_LEN,
        "name {name:?} is longer than {MAX_IFNAME_LEN} bytes: use a shorter prefix"
    );
    name
}

/// Runs `args[0]` with the other arguments in the current namespace; panics unless
/// it exits 0. Returns its stdout.
pub fn run(args: &[&str]) -> String {
    checked(args, exec(args))
}

/// Runs a command given as one whitespace-separated string (no quoting) in the
/// current namespace; panics unless it exits 0. Returns its stdout.
pub fn sh(cmd: &str) -> String {
    run(&cmd.split_whitespace().collect::<Vec<_>>())
}

/// Runs `args[0]` with the other arguments in the current namespace, whatever its
/// exit status.
pub fn exec(args: &[&str]) -> Output {
    let (program, rest) = args.split_first().expect("a command to run");
    Command::new(program)
        .args(rest)
        .output()
        .unwrap_or_else(|error| panic!("cannot start `{}`: {error}", args.join(" ")))
}

fn checked(args: &[&str], output: Output) -> String {
    assert!(
        output.status.success(),
        "`{}` failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout),
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Panics unless the test runs as root, with a message that says how to run it.
pub fn require_root() {
    let uid = run(&["id", "-u"]);
    assert_eq!(
        uid.trim(),
        "0",
        "privileged tests need root: run them with `cargo xtask test` as root"
    );
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace named [`unique_name`]`(prefix)` with its loopback up.
    pub fn new(prefix: &str) -> NetNs {
        let ns = NetNs {
            name: unique_name(prefix),
        };
        run(&["ip", "netns", "add", &ns.name]);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Creates a namespace with exactly this name (the demo's, which a later run must find to
    /// clean up after a crash); panics if it exists.
    pub fn named(name: &str) -> NetNs {
        run(&["ip", "netns", "add", name]);
        let ns = NetNs { name: name.to_string() };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace, whatever its exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        exec(&full)
    }

    /// Runs a command inside the namespace; panics unless it exits 0. Returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// [`NetNs::run`] with the command as one whitespace-separated string.
    pub fn sh(&self, cmd: &str) -> String {
        self.run(&cmd.split_whitespace().collect::<Vec<_>>())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Errors are ignored: a panic here would abort a test that is already
        // unwinding, and a leftover namespace is visible in `ip netns`.
        let _ignored = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        // A dataplane in this namespace makes `<name>-<vrf>` for its VRFs' host path and
        // deletes them when it stops; after a SIGKILL they are left: delete them here.
        let prefix = format!("{}-", self.name);
        for entry in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                let _ignored = Command::new("ip").args(["netns", "del", &name]).output();
            }
        }
    }
}

/// Creates a veth pair: `a_name` in `a_ns` and `b_name` in `b_ns` (`None` = the
/// current namespace), both up. A pair with an end in a namespace disappears with
/// it; a pair with both ends in the current namespace must be deleted by the test.
pub fn veth_pair(a_ns: Option<&NetNs>, a_name: &str, b_ns: Option<&NetNs>, b_name: &str) {
    for name in [a_name, b_name] {
        assert!(
            name.len() <= MAX_IFNAME_LEN,
            "interface name {name:?} is longer than {MAX_IFNAME_LEN} bytes"
        );
    }
    run(&[
        "ip", "link", "add", a_name, "type", "veth", "peer", "name", b_name,
    ]);
    for (ns, name) in [(a_ns, a_name), (b_ns, b_name)] {
        match ns {
            Some(ns) => {
                run(&["ip", "link", "set", name, "netns", ns.name()]);
                ns.run(&["ip", "link", "set", name, "up"]);
            }
            None => {
                run(&["ip", "link", "set", name, "up"]);
            }
        }
    }
}

/// Creates a veth pair with `a_name` in `a` and `b_name` in `b`, both up. Made inside `a`,
/// so names only need to be unique within each namespace.
pub fn veth_between(a: &NetNs, a_name: &str, b: &NetNs, b_name: &str) {
    veth_between_queues(a, a_name, b, b_name, 1);
}

/// [`veth_between`] with `queues` receive and transmit queues on both ends.
pub fn veth_between_queues(a: &NetNs, a_name: &str, b: &NetNs, b_name: &str, queues: u32) {
    let q = queues.to_string();
    run(&["ip", "-n", a.name(), "link", "add", a_name, "numrxqueues", &q, "numtxqueues", &q, "type", "veth", "peer", "name", b_name, "numrxqueues", &q, "numtxqueues", &q, "netns", b.name()]);
    a.run(&["ip", "link", "set", a_name, "up"]);
    b.run(&["ip", "link", "set", b_name, "up"]);
}

/// The XDP programs `ip -j -d link show` reports on `ifname` (in `ns`, or the current
/// namespace): (id, name).
pub fn xdp_programs(ns: Option<&NetNs>, ifname: &str) -> Vec<(u64, String)> {
    let args = ["ip", "-j", "-d", "link", "show", "dev", ifname];
    let json = match ns {
        Some(ns) => ns.run(&args),
        None => run(&args),
    };
    let links: serde_json::Value = serde_json::from_str(&json).expect("ip -j prints JSON");
    let Some(xdp) = links[0].get("xdp") else {
        return Vec::new();
    };
    let programs: Vec<&serde_json::Value> = match xdp.get("attached") {
        Some(serde_json::Value::Array(attached)) => attached.iter().filter_map(|entry| entry.get("prog")).collect(),
        _ => xdp.get("prog").into_iter().collect(),
    };
    programs
        .into_iter()
        .map(|p| (p["id"].as_u64().expect("program id"), p["name"].as_str().unwrap_or_default().to_owned()))
        .collect()
}
