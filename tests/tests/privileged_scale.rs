//! Scale and process faults with a BGP peer (privileged, run by `cargo xtask test`), through the
//! `carrier-converge` harness (`bench/src/bin/carrier-converge.rs`, whose module doc is the
//! contract) in its `--check` mode: correctness only, nothing timed.
//!
//! - 1,000,000 VPNv4 routes announced and withdrawn again, with one label and with a label per
//!   route: every route installed (the last one probed on the wire, its label decoded by tshark),
//!   then every route gone — the dataplane's route count back to exactly where it was; and with a
//!   9 s hold time, no KEEPALIVE from carrier missed while it was busy (measured at the peer).
//! - 20,000 routes flapping for 5 s (withdrawn and announced again, round after round, each half
//!   waited for in the dataplane) beside 1,000 stable routes with a flow each: every stable
//!   packet sent arrives on the core, with one label and with a label per route.
//! - the soak: 60 s of 10,000 route updates/s (5,000 routes with a label each, withdrawn and
//!   announced again) beside the 1,000 stable flows, while a second peer's session flaps 1,000
//!   times (every other time the peer sends a Cease, otherwise the operator's `down` through the
//!   API; `up` after each) and its paths for 100 of the stable routes win and lose: no stable
//!   packet lost, every flap counted by carrier, and the RSS of both processes at the end within
//!   4 MiB of what it was after the first 100 flaps.
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
fn a_million_routes_in_and_out_leave_nothing_stale_and_keepalives_on_time() {
    // Hold time 9 s: a KEEPALIVE is due from carrier every 3 s while it is busy with the routes.
    converge(&["--routes", "1000000", "--label-mode", "both", "--timeout-secs", "300", "--hold-time", "9", "--check"]);
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn soak_of_updates_and_session_flaps_keeps_flows_and_memory_flat() {
    converge(&["--routes", "5000", "--label-mode", "per-route", "--timeout-secs", "60", "--churn", "60", "--rate", "10000", "--flaps", "1000", "--check"]);
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
