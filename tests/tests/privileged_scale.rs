//! Scale and process faults with a BGP peer (privileged, run by `cargo xtask test`), through the
//! `carrier-converge` harness (`bench/src/bin/carrier-converge.rs`, whose module doc is the
//! contract) in its `--check` mode: correctness only, nothing timed.
//!
//! - 200,000 VPNv4 routes announced and withdrawn again, with one label and with a label per
//!   route: every route installed (the last one probed on the wire, its label decoded by tshark),
//!   then every route gone — the dataplane's route count back to exactly where it was; and with a
//!   9 s hold time, no KEEPALIVE from carrier missed while it was busy (measured at the peer).
//! - 20,000 routes flapping for 5 s (withdrawn and announced again, round after round, each half
//!   waited for in the dataplane) beside 1,000 stable routes with a flow each: every stable
//!   packet sent arrives on the core, with one label and with a label per route.
//! - carrier-control killed with SIGKILL half-way through learning them and restarted (graceful
//!   restart): the dataplane keeps and forwards what it had, never holds fewer, and ends with
//!   exactly the peer's routes.
//!
//! The debug binaries, as the rest of the suite; `bench/RESULTS.md` has the release timings at 1M.

use std::process::Command;

use carrier_tests::carrier::workspace;

fn converge(args: &[&str]) {
    let target = workspace().join("target/debug");
    let bin = target.join("carrier-converge");
    assert!(bin.exists(), "{} is missing: run the privileged tests with `cargo xtask test`", bin.display());
    let out = Command::new(&bin)
        .args(args)
        .env("CARRIER_DATAPLANE_BIN", target.join("carrier-dataplane"))
        .env("CARRIER_CONTROL_BIN", target.join("carrier-control"))
        .output()
        .expect("run carrier-converge");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "carrier-converge {args:?} failed:\n{text}");
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn two_hundred_thousand_routes_in_and_out_leave_nothing_stale_and_keepalives_on_time() {
    // Hold time 9 s: a KEEPALIVE is due from carrier every 3 s while it is busy with the routes.
    converge(&["--routes", "200000", "--label-mode", "both", "--timeout-secs", "120", "--hold-time", "9", "--check"]);
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn control_killed_while_learning_loses_nothing() {
    converge(&["--routes", "200000", "--label-mode", "same", "--timeout-secs", "120", "--kill-control", "--check"]);
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn stable_flows_lose_nothing_while_other_routes_flap() {
    converge(&["--routes", "20000", "--label-mode", "both", "--timeout-secs", "60", "--churn", "5", "--check"]);
}
