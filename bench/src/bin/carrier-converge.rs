//! `carrier-converge`: how long carrier takes to program N BGP VPNv4 routes into a running
//! dataplane, and to remove them again, with gobgpd fed the same UPDATEs as the reference.
//!
//! ```text
//!                      speaker ns: this program's BGP speaker (a thread, carrier's own codec)
//!            198.51.100.2/30 ┌──────┴──────┐ 198.51.100.6/30
//!                       to-pe│             │to-gb
//!                        mgmt│             │mgmt
//!            198.51.100.1/30 │             │ 198.51.100.5/30
//!   PE ns: carrier-control ──┘             └── gobgp ns: gobgpd (the reference, AS 65000)
//!          carrier-dataplane (XDP + AF_XDP on ce0 and core0; mgmt is the kernel's)
//!   ce ns  eth0 192.168.1.2 ──ce0── PE ──core0── eth0 192.0.2.2  core ns (tcpdump)
//!                          192.168.1.1   192.0.2.1
//! ```
//!
//! # Contract
//! As root, for every N of `--routes` and every label mode of `--label-mode`:
//! 1. carrier: a fresh `carrier-dataplane` (VRF `vpn` on ce0, core port core0, a static
//!    underlay route to the remote PE 203.0.113.2 via 192.0.2.2) and a fresh `carrier-control`
//!    (VRF `vpn` imports `target:65000:1`, one iBGP neighbour: the speaker). Once the session
//!    is up and the dataplane's tables are steady, the speaker writes N VPNv4 routes — RD
//!    65000:100, distinct /24s from 10.0.0.0 upward, RT 65000:1, next hop 203.0.113.2, label
//!    16000 for all (`same`) or 16000 + i (`per-route`) — packed by carrier's encoder into
//!    UPDATEs of at most 4096 bytes, then End-of-RIB. The table socket's `status` is polled
//!    every 100 ms until it counts N routes more than before: **announce** is the time from
//!    the first UPDATE written to that poll. Then one UDP packet from the customer host to
//!    the last prefix is captured on the core side and decoded by tshark (**probe**: the label
//!    on the wire against the route's). Then the speaker withdraws all N (packed the same
//!    way): **withdraw** is the time until the count is back.
//! 2. gobgpd: a fresh gobgpd peering with the same speaker gets the same UPDATE bytes;
//!    `gobgp global rib -a vpnv4 summary` is polled (every 100 ms plus its own run time)
//!    until it reports N destinations, then 0 after the withdrawals.
//!
//! Also reported per phase: the speaker's own sending time (first UPDATE to its last byte
//! accepted by the kernel), the peak RSS (VmHWM, reset before each phase through
//! `/proc/PID/clear_refs`) with the growth per route, and the CPU seconds (utime + stime) of
//! carrier-control, carrier-dataplane and gobgpd; and the largest gap between KEEPALIVEs
//! carrier sent the speaker during the announce and withdraw phases, counted from the last
//! one before each (the speaker sends its own from a background thread every hold time / 3).
//!
//! Times are poll-bound: they are up to one poll interval late (100 ms, plus the time of the
//! poll itself: ~10 ms for the `gobgp` CLI, longer for the table socket while the dataplane
//! applies an update). A phase only ends on a count taken after the speaker wrote its last
//! byte. A phase that does not finish within `--timeout-secs` is reported as "not converged
//! after X s (n of N …)"; nothing here asserts a time. Every wait is bounded; namespaces and
//! processes are removed by guards, also on error, panic or Ctrl-C. Logs and configs stay
//! under `target/privileged/`.
//!
//! # Running it
//! ```text
//! cargo xtask build --release
//! cargo build --release -p carrier-control -p carrier-bench
//! sudo CARRIER_DATAPLANE_BIN=target/release/carrier-dataplane \
//!      CARRIER_CONTROL_BIN=target/release/carrier-control \
//!      target/release/carrier-converge --routes 10000,100000,1000000 --label-mode both --write
//! ```
//! `cargo xtask build --release` builds the XDP object and then the whole workspace in release
//! with it embedded in `carrier-dataplane` (carrier-control and this harness included); the
//! plain `cargo build` rebuilds only the control process and the harness after a change to
//! them (it does not touch the `carrier-dataplane` binary). Without the two variables the
//! binaries are taken from `target/release/`. gobgpd, gobgp, tcpdump and tshark come with
//! `cargo xtask setup`. `--write` appends the results under
//! `## Convergence on the wire (BGP VPNv4)` in `bench/RESULTS.md`.
//!
//! `--churn SECS`: the churn benchmark. Routes 0..1000 are stable, the N of `--routes` after
//! them flap: the speaker writes all N withdrawals and waits until the dataplane has removed
//! them, then all N announcements and waits until it holds them again, round after round for
//! SECS seconds (a round started is finished). Meanwhile the customer host sends
//! 1,000 UDP flows, one to a host of each stable route, [`STABLE_PPS`] packets/s in all, from
//! 1 s before the churn until 1 s after carrier is back to all routes installed; the core
//! neighbour's veth counts the MPLS frames to its MAC that arrive (`carrier_sink` in XDP, which
//! drops them). Reported: route updates (withdrawals + announcements) per second, from the
//! first byte to the dataplane holding every route again after the last round, the stable packets sent / arrived / lost,
//! the largest KEEPALIVE gap, and the CPU seconds of both processes. With `--check`, exit 1
//! unless every round finished and nothing was lost.
//!
//! `--rate R` paces the churn: no more than R route updates written per second. `--flaps F`
//! makes it the soak: a second peer (198.51.100.10, port 1179, BGP identifier below the
//! speaker's) announces the first 100 stable routes again with the same next hop and labels,
//! so their best path moves to it and back; its session is brought down and up F times, spread
//! over the churn — every other time it sends a Cease itself, otherwise the operator sends
//! `down` through carrier-control's API — and `up` through the API after each, once carrier is
//! out of Established. The RSS of both processes is sampled every 250 ms; reported: the flaps
//! done and counted by carrier (`GET /peers/{address}`), and the RSS once a tenth of the flaps
//! were done against the RSS a second after the end. With `--check`, also exit 1 unless every
//! flap was done and counted and neither RSS grew by more than 4 MiB.
//!
//! `--kill-control` measures nothing: for each N it kills carrier-control with SIGKILL once
//! half the routes are installed, checks the dataplane keeps and forwards them while control is
//! away, restarts it (graceful restart configured) and checks the dataplane never holds fewer
//! and ends with exactly N; one table row per N (`tests/RELIABILITY.md` records them).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use carrier_bench::run::{cpu_model, install_stop_handler, loadavg, section_range, stopped};
use carrier_bench::sink::{Sink, CLASS_MPLS};
use carrier_control::bgp::codec::{decode, encode, frame_len, CodecContext};
use carrier_control::bgp::msg::{
    Family, LabelField, Message, Nlri, Notification, Open, PathAttributes, RouteDistinguisher,
    RouteTarget, Update,
};
use carrier_dataplane::ctl::{read_frame, write_message, Request, Response};
use carrier_tests::bgp::{start_control, GoBgp};
use carrier_tests::capture::{tshark, Capture};
use carrier_tests::carrier::{scratch_dir, workspace, Dataplane};
use carrier_tests::netns::{veth_between, NetNs};
use clap::{Parser, ValueEnum};

/// Heading of this benchmark's section in `bench/RESULTS.md`.
const RESULTS_HEADING: &str = "## Convergence on the wire (BGP VPNv4)";

/// Everyone's AS: the sessions are iBGP.
const ASN: u32 = 65000;
/// The speaker's address toward the PE, and its BGP identifier.
const SPEAKER_PE_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The PE's management address (kernel-owned, carrier-control's session source).
const PE_MGMT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The speaker's address toward gobgpd.
const SPEAKER_GOBGP_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 6);
/// gobgpd's address and router id.
const GOBGP_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 5);
/// The PE's router id.
const PE_ROUTER_ID: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// Next hop of every announced route: a remote PE, resolved by the dataplane's underlay route
/// via the core neighbour.
const REMOTE_PE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The core neighbour (on core0) and its MAC.
const CORE_NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const CORE_NEIGHBOUR_MAC: &str = "02:00:00:00:02:02";
/// The customer host (on ce0), its MAC, and the PE's address on ce0.
const CE_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
const CE_HOST_MAC: &str = "02:aa:00:00:00:02";
const CE_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
/// The PE's MACs on its dataplane ports.
const CE0_MAC: &str = "02:00:00:00:01:01";
const CORE0_MAC: &str = "02:00:00:00:00:01";
/// RD of the announced routes, and the RT carrier's VRF imports.
const ROUTE_RD: &str = "65000:100";
const ROUTE_RT: &str = "target:65000:1";
/// The label of route 0 (and of every route with `--label-mode same`).
const FIRST_LABEL: u32 = 16_000;
/// Largest MPLS label.
const MAX_LABEL: u32 = (1 << 20) - 1;
/// Routes are /24s from 10.0.0.0 upward; this many stay below 127.0.0.0.
const MAX_ROUTES: usize = 4_000_000;
/// Routes that stay while the others flap (`--churn`); each carries one flow.
const STABLE: usize = 1_000;
/// The flapping peer's address in the speaker's namespace (`--flaps`), and its BGP identifier:
/// below the speaker's, so that its paths win while it is up.
const FLAPPER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const FLAPPER_ID: Ipv4Addr = Ipv4Addr::new(10, 255, 255, 1);
/// The flapping peer's TCP port (the speaker holds 179 on every address).
const FLAPPER_PORT: u16 = 1179;
/// The flapping peer announces the first this many stable routes again, with the same next
/// hop and labels: their best path moves to it and back at every flap, traffic on.
const FLAPPER_ROUTES: usize = 100;
/// carrier-control's API in the PE's namespace (its default listen address), and the token
/// the soak configures for writes.
const API: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9179);
const API_TOKEN: &str = "carrier-converge-soak";
/// The soak's memory bound (`--check`): the RSS of each process at the end may exceed its RSS
/// once a tenth of the flaps were done by at most this much (allocator noise, no per-session
/// or per-update growth).
const SOAK_RSS_BOUND: u64 = 4 << 20;
/// The stable flows' rate, packets per second in all (`--churn`).
const STABLE_PPS: u64 = 20_000;
/// Interval of every poll (table socket, gobgp CLI).
const POLL: Duration = Duration::from_millis(100);
/// Port of gobgpd's API in its namespace (the one `GoBgp::start` configures).
const GOBGP_API_PORT: &str = "50051";
/// Writes to the speaker's socket are chunked at message boundaries to about this size, so
/// that its KEEPALIVEs can go in between.
const SEND_CHUNK: usize = 64 << 10;

// --- command line -------------------------------------------------------------------------

/// BGP VPNv4 convergence of carrier (control + dataplane), with gobgpd as the reference.
#[derive(Debug, Parser)]
#[command(name = "carrier-converge")]
struct Cli {
    /// Numbers of routes to announce and withdraw, one run each.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    routes: Vec<usize>,
    /// VPN labels: one for all routes, one per route, or a run of each.
    #[arg(long, value_enum, default_value_t = LabelChoice::Both)]
    label_mode: LabelChoice,
    /// Bound of each phase (announce, withdraw, for carrier and for gobgpd), in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Hold time the speaker and carrier-control propose (KEEPALIVEs every third of it).
    #[arg(long, default_value_t = 90)]
    hold_time: u16,
    /// Append the results to bench/RESULTS.md.
    #[arg(long)]
    write: bool,
    /// Instead of timing: kill -9 carrier-control once half the routes are installed, check
    /// that the dataplane keeps them and forwards while it is away, restart it (graceful
    /// restart configured, so it defers its first update until End-of-RIB), and check that the
    /// dataplane ends with exactly the N routes, never having held fewer than at the kill.
    #[arg(long)]
    kill_control: bool,
    /// Correctness only (the test suite's mode): no gobgpd reference and no report; exit 1
    /// unless every announce and withdraw completed — the dataplane's route count back to its
    /// base after the withdraw, nothing stale —, every probe went out with its route's label,
    /// and no KEEPALIVE from carrier was missed meanwhile (with `--kill-control`: unless nothing
    /// was lost).
    #[arg(long)]
    check: bool,
    /// Instead of timing: churn for this many seconds. 1,000 stable routes carry 1,000 flows
    /// (20,000 packets/s in all) from the customer host while the N routes of `--routes` are
    /// withdrawn and announced again in a loop; reports the route updates per second that
    /// reached the dataplane, and the stable flows' packets sent and counted on the core
    /// (target: 0 lost).
    #[arg(long)]
    churn: Option<u64>,
    /// With `--churn`: write the flapping routes at most this many updates per second
    /// (withdrawals and announcements; default: as fast as carrier takes them).
    #[arg(long)]
    rate: Option<u64>,
    /// With `--churn` (the soak): a second peer's session is brought down and up this many
    /// times meanwhile — every other time the peer ends it (Cease), otherwise the operator
    /// (`POST /neighbors/{address}` `down`), and `up` through the API after each. Reported:
    /// the flaps done and the RSS of both processes over the run.
    #[arg(long, default_value_t = 0)]
    flaps: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LabelChoice {
    Same,
    PerRoute,
    Both,
}

impl LabelChoice {
    fn modes(self) -> &'static [LabelMode] {
        match self {
            LabelChoice::Same => &[LabelMode::Same],
            LabelChoice::PerRoute => &[LabelMode::PerRoute],
            LabelChoice::Both => &[LabelMode::Same, LabelMode::PerRoute],
        }
    }
}

/// How the announced routes are labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LabelMode {
    /// [`FIRST_LABEL`] on every route.
    Same,
    /// [`FIRST_LABEL`] + i on route i.
    PerRoute,
}

impl LabelMode {
    fn name(self) -> &'static str {
        match self {
            LabelMode::Same => "same",
            LabelMode::PerRoute => "per-route",
        }
    }

    /// The label of route `i`.
    fn label(self, i: usize) -> u32 {
        match self {
            LabelMode::Same => FIRST_LABEL,
            LabelMode::PerRoute => {
                FIRST_LABEL + u32::try_from(i).expect("checked against MAX_LABEL")
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("carrier-converge: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    ensure!(!cli.routes.is_empty(), "--routes lists no size");
    for &n in &cli.routes {
        ensure!(
            (1..=MAX_ROUTES).contains(&n),
            "--routes: {n} is outside 1..={MAX_ROUTES}"
        );
        if cli.label_mode != LabelChoice::Same {
            let last = FIRST_LABEL as usize + n - 1;
            ensure!(
                last <= MAX_LABEL as usize,
                "--routes: {n} routes with a label each would need label {last} > {MAX_LABEL}"
            );
        }
    }
    ensure!(cli.timeout_secs >= 1, "--timeout-secs must be at least 1");
    ensure!(cli.churn.is_none_or(|s| (1..=600).contains(&s)), "--churn must be 1..=600 seconds");
    ensure!(!(cli.churn.is_some() && cli.kill_control), "--churn and --kill-control are separate runs");
    ensure!(cli.churn.is_some() || (cli.rate.is_none() && cli.flaps == 0), "--rate and --flaps go with --churn");
    ensure!(cli.rate.is_none_or(|r| r >= 1), "--rate must be at least 1 update/s");
    ensure!(cli.flaps <= 100_000, "--flaps: at most 100,000");
    if cli.churn.is_some() {
        for &n in &cli.routes {
            ensure!(STABLE + n <= MAX_ROUTES, "--routes: {n} flapping routes after {STABLE} stable ones exceed {MAX_ROUTES}");
            ensure!(cli.label_mode == LabelChoice::Same || FIRST_LABEL as usize + STABLE + n - 1 <= MAX_LABEL as usize, "--routes: {n} routes with a label each run past label {MAX_LABEL}");
        }
    }
    ensure!(
        cli.hold_time == 0 || cli.hold_time >= 3,
        "--hold-time must be 0 or at least 3 (RFC 4271 §4.2)"
    );
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "carrier-converge needs root (namespaces, XDP)"
    );
    let command = command_line();
    find_binaries()?;
    for tool in ["gobgpd", "gobgp", "tcpdump", "tshark"] {
        ensure!(
            on_path(tool),
            "{tool} is not installed: run `cargo xtask setup`"
        );
    }
    install_stop_handler();

    let load_before = loadavg();
    let lab = Lab::up();
    let timeout = Duration::from_secs(cli.timeout_secs);
    let mut rows = vec![];
    let mut churns = vec![];
    for &n in &cli.routes {
        for &mode in cli.label_mode.modes() {
            eprintln!(
                "carrier-converge: N = {n}, labels {}: encoding",
                mode.name()
            );
            let updates = Updates::new(n, mode)?;
            eprintln!(
                "carrier-converge: {} announce UPDATEs ({:.1} MiB), {} withdraw UPDATEs ({:.1} MiB)",
                updates.announce_messages,
                mib(updates.announce.len() as u64),
                updates.withdraw_messages,
                mib(updates.withdraw.len() as u64)
            );
            if let Some(secs) = cli.churn {
                eprintln!("carrier-converge: N = {n}, labels {}: {secs} s of churn beside {STABLE} stable routes and flows", mode.name());
                let churn = churn_run(&lab, cli, n, mode, secs, timeout)?;
                eprintln!("carrier-converge:   {}", churn.summary());
                ensure!(
                    !cli.check || (churn.lost() == Some(0) && churn.took.is_ok() && churn.rounds > 0 && churn.sent > 0),
                    "N = {n}: the churn did not finish its rounds, or stable flows lost packets: {}",
                    churn.summary()
                );
                if let (true, Some(soak)) = (cli.check, &churn.soak) {
                    soak.check(cli.flaps).with_context(|| churn.summary())?;
                }
                churns.push(churn);
                continue;
            }
            if cli.kill_control {
                eprintln!("carrier-converge: N = {n}, labels {}: kill -9 of carrier-control half-way", mode.name());
                let report = kill_control_run(&lab, cli, &updates, timeout)?;
                println!("{report}");
                ensure!(!cli.check || report.ends_with("| nothing lost |"), "N = {n}: routes lost or wrong across the kill: {report}");
                continue;
            }
            if cli.check {
                eprintln!("carrier-converge: N = {n}, labels {}: carrier (check)", mode.name());
                let carrier = carrier_run(&lab, cli, &updates, timeout)?;
                let summary = carrier.summary(n);
                eprintln!("carrier-converge:   {summary}");
                let done = |p: &Phase| matches!(p.outcome, Outcome::Converged(_));
                ensure!(
                    done(&carrier.announce) && done(&carrier.withdraw) && carrier.probe.starts_with("label "),
                    "N = {n}, labels {}: {summary}",
                    mode.name()
                );
                // Timers never starve while the RIB is busy: no KEEPALIVE from carrier missed
                // (a gap of two intervals would be one missed; the peer drops at three).
                let interval = Duration::from_secs(u64::from(cli.hold_time / 3));
                ensure!(
                    cli.hold_time == 0 || carrier.keepalive.max_gap < 2 * interval,
                    "N = {n}, labels {}: a KEEPALIVE from carrier came {:.1} s after the one before (one is due every {} s)",
                    mode.name(),
                    carrier.keepalive.max_gap.as_secs_f64(),
                    interval.as_secs()
                );
                continue;
            }
            eprintln!("carrier-converge: N = {n}, labels {}: carrier", mode.name());
            let carrier = carrier_run(&lab, cli, &updates, timeout)?;
            eprintln!("carrier-converge:   {}", carrier.summary(n));
            eprintln!("carrier-converge: N = {n}, labels {}: gobgpd", mode.name());
            let gobgp = gobgp_run(&lab, cli, &updates, timeout)?;
            eprintln!("carrier-converge:   {}", gobgp.summary(n));
            rows.push(Row {
                n,
                mode,
                carrier,
                gobgp,
            });
        }
    }
    drop(lab);
    if cli.churn.is_some() {
        let mut table = churn_table(&churns);
        if churns.iter().any(|c| c.soak.is_some()) {
            table.push('\n');
            table.push_str(&soak_table(&churns));
        }
        println!("{table}");
        if cli.write && !cli.check {
            let path = workspace().join("bench/RESULTS.md");
            let section = format!("### {} — churn\n\n    {command}   # as root\n\n{table}\n", utc_now());
            append_section(&path, &section)?;
            eprintln!("carrier-converge: appended to {}", path.display());
        }
        return Ok(());
    }
    if cli.kill_control || cli.check {
        return Ok(());
    }
    let report = Report {
        rows,
        command,
        load_before,
        load_after: loadavg(),
        hold_time: cli.hold_time,
    };
    let tables = report.tables();
    println!("{tables}");
    if cli.write {
        let path = workspace().join("bench/RESULTS.md");
        append_section(&path, &report.section(&tables))?;
        eprintln!("carrier-converge: appended to {}", path.display());
    }
    Ok(())
}

/// Points the test helpers at the release binaries unless `CARRIER_DATAPLANE_BIN` /
/// `CARRIER_CONTROL_BIN` say otherwise, checks that they exist, and makes the paths absolute
/// (the helpers start processes in their scratch directories).
fn find_binaries() -> Result<()> {
    for (var, name) in [
        ("CARRIER_DATAPLANE_BIN", "carrier-dataplane"),
        ("CARRIER_CONTROL_BIN", "carrier-control"),
    ] {
        let path = std::env::var_os(var).map_or_else(
            || workspace().join("target/release").join(name),
            PathBuf::from,
        );
        let path = path.canonicalize().with_context(|| {
            format!("{} ({var}) is missing: run `cargo xtask build --release` (see carrier-converge's module doc)", path.display())
        })?;
        // Before any thread is started: nothing reads the environment concurrently.
        std::env::set_var(var, &path);
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

// --- the lab --------------------------------------------------------------------------------

/// The namespaces of the module doc, wired and addressed; processes are started per run.
#[derive(Debug)]
struct Lab {
    speaker: NetNs,
    pe: NetNs,
    ce: NetNs,
    core: NetNs,
    gobgp: NetNs,
    /// Captures of the probes.
    scratch: PathBuf,
}

impl Lab {
    /// Builds the namespaces (panics, like the test helpers, when a command fails; the
    /// namespaces made so far are deleted by their guards).
    fn up() -> Lab {
        let [speaker, pe, ce, core, gobgp] = ["cvs", "cvp", "cvc", "cvk", "cvg"].map(quiet_ns);
        veth_between(&speaker, "to-pe", &pe, "mgmt");
        veth_between(&speaker, "to-gb", &gobgp, "mgmt");
        speaker.sh(&format!("ip addr add {SPEAKER_PE_SIDE}/30 dev to-pe"));
        speaker.sh(&format!("ip addr add {SPEAKER_GOBGP_SIDE}/30 dev to-gb"));
        pe.sh(&format!("ip addr add {PE_MGMT}/30 dev mgmt"));
        gobgp.sh(&format!("ip addr add {GOBGP_ADDR}/30 dev mgmt"));
        speaker.sh(&format!("ip addr add {FLAPPER}/32 dev to-pe"));
        pe.sh(&format!("ip route add {FLAPPER}/32 dev mgmt"));

        veth_between(&pe, "ce0", &ce, "eth0");
        veth_between(&pe, "core0", &core, "eth0");
        pe.sh(&format!("ip link set dev ce0 address {CE0_MAC}"));
        pe.sh(&format!("ip link set dev core0 address {CORE0_MAC}"));
        ce.sh(&format!("ip link set dev eth0 address {CE_HOST_MAC}"));
        ce.sh(&format!("ip addr add {CE_HOST}/24 dev eth0"));
        ce.sh(&format!("ip route add default via {CE_GATEWAY}"));
        ce.sh(&format!(
            "ip neigh replace {CE_GATEWAY} lladdr {CE0_MAC} dev eth0 nud permanent"
        ));
        core.sh(&format!(
            "ip link set dev eth0 address {CORE_NEIGHBOUR_MAC}"
        ));
        core.sh(&format!("ip addr add {CORE_NEIGHBOUR}/24 dev eth0"));
        Lab {
            speaker,
            pe,
            ce,
            core,
            gobgp,
            scratch: scratch_dir("conv"),
        }
    }

    /// A fresh BGP listener in the speaker's namespace (one per run, so that no connection
    /// left from an earlier run waits in its backlog).
    fn listen(&self) -> Result<TcpListener> {
        self.listen_on(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 179))
    }

    /// A fresh listener on `addr` in the speaker's namespace.
    fn listen_on(&self, addr: SocketAddrV4) -> Result<TcpListener> {
        in_netns(&self.speaker, || {
            let listener = TcpListener::bind(addr)
                .with_context(|| format!("binding {addr} in the speaker's namespace"))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
    }
}

/// A namespace without IPv6, so that router solicitations and MLD stay off its links.
fn quiet_ns(prefix: &str) -> NetNs {
    let ns = NetNs::new(prefix);
    ns.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
    ns.sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
    ns
}

fn dataplane_config() -> String {
    format!(
        r#"[router]
router_id = "{PE_ROUTER_ID}"

[[vrf]]
name = "vpn"

[[port]]
name = "ce0"
mac = "{CE0_MAC}"
addresses = ["{CE_GATEWAY}/24"]
vrf = "vpn"

[[port]]
name = "core0"
mac = "{CORE0_MAC}"
addresses = ["192.0.2.1/24"]
core = true

[[neighbour]]
port = "ce0"
ip = "{CE_HOST}"
mac = "{CE_HOST_MAC}"

[[neighbour]]
port = "core0"
ip = "{CORE_NEIGHBOUR}"
mac = "{CORE_NEIGHBOUR_MAC}"

[[route]]
prefix = "{REMOTE_PE}/32"
via = "{CORE_NEIGHBOUR}"
"#
    )
}

fn control_config(dp: &Dataplane, hold_time: u16) -> String {
    control_config_with(dp, hold_time, false)
}

/// With `flapper`: the flapping peer as a second neighbour, and an API token for the
/// neighbour commands.
fn control_config_with(dp: &Dataplane, hold_time: u16, flapper: bool) -> String {
    let extra = if flapper {
        format!("\n[[neighbor]]\naddress = \"{FLAPPER}\"\nremote_as = {ASN}\nport = {FLAPPER_PORT}\nfamilies = [\"vpnv4\"]\n\n[api]\ntoken = \"{API_TOKEN}\"\n")
    } else {
        String::new()
    };
    let base = format!(
        r#"[bgp]
asn = {ASN}
router_id = "{PE_ROUTER_ID}"
hold_time = {hold_time}

[dataplane]
socket = "{socket}"
config = "{config}"

[[neighbor]]
address = "{SPEAKER_PE_SIDE}"
remote_as = {ASN}
families = ["vpnv4"]

[[vrf]]
name = "vpn"
rd = "{PE_ROUTER_ID}:1"
import = ["{ROUTE_RT}"]
export = ["{ROUTE_RT}"]
"#,
        socket = dp.socket.display(),
        config = dp.config.display(),
    );
    base + &extra
}

/// Runs `f` on a thread inside `ns`: sockets it creates stay in that namespace.
fn in_netns<T: Send>(ns: &NetNs, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = format!("/var/run/netns/{}", ns.name());
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).with_context(|| format!("opening {path}"))?;
            // SAFETY: a valid namespace fd; CLONE_NEWNET moves only this (short-lived) thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {path}: {}", std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .map_err(|_| anyhow!("a thread in {} panicked", ns.name()))?
    })
}

// --- the routes -----------------------------------------------------------------------------

/// The bytes the speaker writes for one run, encoded before any clock starts.
#[derive(Debug)]
struct Updates {
    /// Routes `first..first + n`.
    first: usize,
    n: usize,
    mode: LabelMode,
    /// N announcements then End-of-RIB, as concatenated UPDATE messages.
    announce: Vec<u8>,
    announce_messages: usize,
    /// N withdrawals.
    withdraw: Vec<u8>,
    withdraw_messages: usize,
}

impl Updates {
    fn new(n: usize, mode: LabelMode) -> Result<Updates> {
        Updates::range(0, n, mode)
    }

    /// Routes `first..first + n`.
    fn range(first: usize, n: usize, mode: LabelMode) -> Result<Updates> {
        let rd: RouteDistinguisher = ROUTE_RD.parse()?;
        let rt: RouteTarget = ROUTE_RT.parse()?;
        let mut nlri = Vec::with_capacity(n);
        for i in first..first + n {
            nlri.push(Nlri::Vpnv4 {
                rd,
                label: LabelField::mpls(mode.label(i)),
                prefix: route_prefix(i)
                    .parse()
                    .map_err(|_| anyhow!("bad prefix {}", route_prefix(i)))?,
            });
        }
        let attributes = PathAttributes {
            next_hop: Some(REMOTE_PE),
            local_pref: Some(100),
            ext_communities: vec![rt.0],
            ..PathAttributes::default()
        };
        // Both peers advertise 4-octet ASNs; the AS_PATH is empty (iBGP) either way.
        let ctx = CodecContext {
            four_octet_as: true,
            add_path: false,
        };
        let announce = encode(
            &Message::Update(Update {
                announced: nlri.clone(),
                attributes,
                eor: Some(Family::Vpnv4),
                ..Update::default()
            }),
            &ctx,
        );
        let withdraw = encode(
            &Message::Update(Update {
                withdrawn: nlri,
                ..Update::default()
            }),
            &ctx,
        );
        Ok(Updates {
            first,
            n,
            mode,
            announce_messages: message_count(&announce)?,
            announce,
            withdraw_messages: message_count(&withdraw)?,
            withdraw,
        })
    }

    /// An address in the last route's prefix, and that route's label.
    /// A host in route `i`'s prefix, and its label.
    fn probe_target_of(&self, i: usize) -> (Ipv4Addr, u32) {
        (Ipv4Addr::from(route_base(i) + 1), self.mode.label(i))
    }
}

/// The network address of route `i`: the i-th /24 from 10.0.0.0.
fn route_base(i: usize) -> u32 {
    u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (u32::try_from(i).expect("i < MAX_ROUTES") << 8)
}

fn route_prefix(i: usize) -> String {
    format!("{}/24", Ipv4Addr::from(route_base(i)))
}

/// Splits concatenated messages at their boundaries (checking each header).
fn message_ends(bytes: &[u8]) -> Result<Vec<usize>> {
    let mut ends = vec![];
    let mut at = 0;
    while at < bytes.len() {
        let len = frame_len(&bytes[at..])
            .map_err(|n| anyhow!("the encoder produced a bad header at byte {at}: {n:?}"))?
            .ok_or_else(|| anyhow!("the encoder produced a truncated message at byte {at}"))?;
        at += len;
        ends.push(at);
    }
    Ok(ends)
}

fn message_count(bytes: &[u8]) -> Result<usize> {
    Ok(message_ends(bytes)?.len())
}

// --- the speaker ----------------------------------------------------------------------------

/// One established BGP session of the speaker: a reader thread records what the peer sends
/// (KEEPALIVE arrival times, a NOTIFICATION, the end of the stream), a keepalive thread
/// writes a KEEPALIVE every hold time / 3, and [`Session::send`] writes UPDATEs. Writers take
/// the stream's lock per whole message chunk, so their messages never interleave. Closed
/// (Cease, then shutdown) on drop.
#[derive(Debug)]
struct Session {
    peer: Ipv4Addr,
    writer: Arc<Mutex<TcpStream>>,
    shared: Arc<Shared>,
    /// Negotiated hold time.
    hold_time: u16,
    threads: Vec<JoinHandle<()>>,
}

/// What the session's threads share with the harness. Written by the reader thread (and
/// `ended` by the writers on a failed write); read by the harness.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Arrival of each KEEPALIVE from the peer, the handshake's included.
    keepalives: Mutex<Vec<Instant>>,
    /// Why the session ended, once it has.
    ended: Mutex<Option<String>>,
}

impl Shared {
    fn end(&self, why: String) {
        let mut ended = self.ended.lock().expect("not poisoned");
        if ended.is_none() {
            *ended = Some(why);
        }
    }

    fn ended(&self) -> Option<String> {
        self.ended.lock().expect("not poisoned").clone()
    }
}

/// Reads whole messages off a stream.
#[derive(Debug)]
struct FrameReader {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl FrameReader {
    /// The next message; `Ok(None)` at the end of the stream. A read timeout surfaces as an
    /// error of kind `WouldBlock`/`TimedOut` with the partial message kept.
    fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            match frame_len(&self.buf) {
                Ok(Some(len)) if self.buf.len() >= len => {
                    return Ok(Some(self.buf.drain(..len).collect()))
                }
                Ok(_) => {}
                Err(n) => {
                    return Err(std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!("bad message header from the peer: {n:?}"),
                    ))
                }
            }
            let mut chunk = [0u8; 16 << 10];
            let got = self.stream.read(&mut chunk)?;
            if got == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
    }
}

fn message_type(frame: &[u8]) -> u8 {
    frame[18]
}

/// Message types (RFC 4271 §4.1).
const OPEN: u8 = 1;
const NOTIFICATION: u8 = 3;
const KEEPALIVE: u8 = 4;

fn describe_notification(frame: &[u8]) -> String {
    match decode(frame, &CodecContext::default()) {
        Ok(Message::Notification(n)) => format!(
            "NOTIFICATION {}/{} (data {:02x?})",
            n.code, n.subcode, n.data
        ),
        _ => "an undecodable NOTIFICATION".to_string(),
    }
}

impl Session {
    /// Accepts the connection from `peer` on `listener` (dropping any other) and runs the
    /// OPEN exchange, within `within`.
    fn accept(
        listener: &TcpListener,
        local_id: Ipv4Addr,
        peer: Ipv4Addr,
        hold_time: u16,
        within: Duration,
    ) -> Result<Session> {
        let deadline = Instant::now() + within;
        let stream = loop {
            ensure!(!stopped(), "interrupted");
            match listener.accept() {
                Ok((stream, from)) if from.ip() == std::net::IpAddr::V4(peer) => break stream,
                Ok((_, from)) => eprintln!(
                    "carrier-converge: dropped a BGP connection from {from} (waiting for {peer})"
                ),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    ensure!(
                        Instant::now() < deadline,
                        "{peer} did not connect to the speaker within {within:?}"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e).context("accepting a BGP connection"),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        stream.set_write_timeout(Some(Duration::from_millis(200)))?;
        let mut reader = FrameReader {
            stream: stream.try_clone()?,
            buf: vec![],
        };
        let mut writer = stream;
        let open = Open {
            asn: ASN,
            hold_time,
            router_id: local_id,
            families: vec![Family::Vpnv4],
            four_octet_as: true,
            route_refresh: true,
            graceful_restart: None,
        };
        let ctx = CodecContext {
            four_octet_as: true,
            add_path: false,
        };
        write_before(&mut writer, &encode(&Message::Open(open), &ctx), deadline)?;

        // OpenSent → OpenConfirm → Established (RFC 4271 §8.2.2).
        let mut negotiated = None;
        let established = loop {
            ensure!(!stopped(), "interrupted");
            ensure!(
                Instant::now() < deadline,
                "no BGP session with {peer} within {within:?}"
            );
            let frame = match reader.next() {
                Ok(Some(frame)) => frame,
                Ok(None) => bail!("{peer} closed the connection during the OPEN exchange"),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(e) => return Err(e).with_context(|| format!("reading from {peer}")),
            };
            match (message_type(&frame), negotiated) {
                (OPEN, None) => {
                    let Ok(Message::Open(theirs)) = decode(&frame, &ctx) else {
                        bail!("{peer} sent an OPEN the codec refuses")
                    };
                    ensure!(
                        theirs.families.contains(&Family::Vpnv4),
                        "{peer} does not offer VPNv4: {theirs:?}"
                    );
                    negotiated = Some(hold_time.min(theirs.hold_time));
                    write_before(&mut writer, &encode(&Message::Keepalive, &ctx), deadline)?;
                }
                (KEEPALIVE, Some(hold)) => break (Instant::now(), hold),
                (NOTIFICATION, _) => bail!(
                    "{peer} refused the session: {}",
                    describe_notification(&frame)
                ),
                (ty, _) => bail!("{peer} sent message type {ty} during the OPEN exchange"),
            }
        };
        let (established_at, hold_time) = established;
        let shared = Arc::new(Shared {
            keepalives: Mutex::new(vec![established_at]),
            ..Shared::default()
        });
        let writer = Arc::new(Mutex::new(writer));
        let mut threads = vec![];
        {
            let shared = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("bgp-reader".into())
                    .spawn(move || read_loop(reader, &shared))?,
            );
        }
        if hold_time > 0 {
            let (shared, writer) = (shared.clone(), writer.clone());
            let every = Duration::from_secs(u64::from(hold_time / 3).max(1));
            threads.push(
                std::thread::Builder::new()
                    .name("bgp-keepalive".into())
                    .spawn(move || keepalive_loop(&writer, &shared, every))?,
            );
        }
        Ok(Session {
            peer,
            writer,
            shared,
            hold_time,
            threads,
        })
    }

    /// Why the session ended, if it has.
    fn ended(&self) -> Option<String> {
        self.shared.ended()
    }

    /// Writes `bytes` (whole messages) in chunks of about [`SEND_CHUNK`]; returns when the
    /// first chunk's write began and when the last byte was accepted by the kernel.
    fn send(&self, bytes: &[u8], deadline: Instant) -> Result<(Instant, Instant)> {
        let mut first = None;
        let mut from = 0;
        for end in message_ends(bytes)? {
            if end - from < SEND_CHUNK && end < bytes.len() {
                continue;
            }
            if let Some(why) = self.ended() {
                bail!("the session with {} ended: {why}", self.peer);
            }
            let mut stream = self.writer.lock().expect("not poisoned");
            first.get_or_insert_with(Instant::now);
            if let Err(e) = write_before(&mut stream, &bytes[from..end], deadline) {
                // A partly written message leaves the stream unusable.
                self.shared.end(format!("write failed: {e:#}"));
                return Err(e);
            }
            from = end;
        }
        let done = Instant::now();
        Ok((first.unwrap_or(done), done))
    }

    /// The longest time without a KEEPALIVE from the peer between `from` and `to` (counting
    /// from the last one before `from`), and how many arrived in that window.
    fn keepalive_gap(&self, from: Instant, to: Instant) -> (Duration, usize) {
        let arrivals = self.shared.keepalives.lock().expect("not poisoned");
        let before = arrivals
            .iter()
            .rev()
            .find(|t| **t <= from)
            .copied()
            .unwrap_or(from);
        let within: Vec<Instant> = arrivals
            .iter()
            .copied()
            .filter(|t| *t > from && *t <= to)
            .collect();
        let mut last = before;
        let mut gap = Duration::ZERO;
        for t in within.iter().copied().chain(std::iter::once(to)) {
            gap = gap.max(t - last);
            last = t;
        }
        (gap, within.len())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.ended().is_none() {
            // Cease / administrative shutdown (RFC 4486), best effort.
            let cease = encode(
                &Message::Notification(Notification::new(6, 2)),
                &CodecContext::default(),
            );
            if let Ok(mut stream) = self.writer.lock() {
                let _ = write_before(&mut stream, &cease, Instant::now() + Duration::from_secs(1));
            }
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Ok(stream) = self.writer.lock() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for thread in &self.threads {
            thread.thread().unpark();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Writes all of `bytes`, retrying the socket's short write timeouts until `deadline`.
fn write_before(stream: &mut TcpStream, bytes: &[u8], deadline: Instant) -> Result<()> {
    let mut at = 0;
    while at < bytes.len() {
        match stream.write(&bytes[at..]) {
            Ok(0) => bail!("the connection is closed"),
            Ok(n) => at += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                ensure!(!stopped(), "interrupted");
                ensure!(
                    Instant::now() < deadline,
                    "the peer did not read {} more bytes in time",
                    bytes.len() - at
                );
            }
            Err(e) => return Err(e).context("writing to the peer"),
        }
    }
    Ok(())
}

fn read_loop(mut reader: FrameReader, shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        match reader.next() {
            Ok(Some(frame)) => match message_type(&frame) {
                KEEPALIVE => shared
                    .keepalives
                    .lock()
                    .expect("not poisoned")
                    .push(Instant::now()),
                NOTIFICATION => {
                    shared.end(format!("the peer sent {}", describe_notification(&frame)));
                    return;
                }
                // The peer's own UPDATEs (its VRF's connected subnet) are of no interest.
                _ => {}
            },
            Ok(None) => {
                shared.end("the peer closed the connection".into());
                return;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                if !shared.stop.load(Ordering::Relaxed) {
                    shared.end(format!("reading: {e}"));
                }
                return;
            }
        }
    }
}

fn keepalive_loop(writer: &Mutex<TcpStream>, shared: &Shared, every: Duration) {
    let keepalive = encode(&Message::Keepalive, &CodecContext::default());
    let mut next = Instant::now() + every;
    while !shared.stop.load(Ordering::Relaxed) && shared.ended().is_none() {
        let now = Instant::now();
        if now < next {
            // Woken early by the session's drop.
            std::thread::park_timeout((next - now).min(Duration::from_millis(50)));
            continue;
        }
        next += every;
        let mut stream = writer.lock().expect("not poisoned");
        if let Err(e) = write_before(&mut stream, &keepalive, Instant::now() + every) {
            shared.end(format!("KEEPALIVE write failed: {e:#}"));
            return;
        }
    }
}

// --- measuring ------------------------------------------------------------------------------

/// How a phase ended.
#[derive(Debug, Clone)]
enum Outcome {
    /// The count was reached this long after the first UPDATE was written.
    Converged(Duration),
    /// The phase's bound passed with `count` routes of N (installed, or still installed for a
    /// withdrawal).
    NotConverged {
        after: Duration,
        count: Option<usize>,
    },
    /// The session or the speaker failed.
    Failed(String),
}

/// One announce or withdraw phase.
#[derive(Debug, Clone)]
struct Phase {
    /// When the first UPDATE was written (or the phase began, if none was).
    first: Instant,
    /// When the harness stopped watching.
    end: Instant,
    outcome: Outcome,
    /// The speaker's own sending time, or why it did not finish.
    send: Result<Duration, String>,
}

impl Phase {
    /// A phase that could not start.
    fn skipped(why: &str) -> Phase {
        let now = Instant::now();
        Phase {
            first: now,
            end: now,
            outcome: Outcome::Failed(why.to_string()),
            send: Err(why.to_string()),
        }
    }

    fn secs(&self) -> Option<f64> {
        match self.outcome {
            Outcome::Converged(d) => Some(d.as_secs_f64()),
            _ => None,
        }
    }

    /// The outcome for a table cell; `what` is "installed" or "still installed".
    fn cell(&self, n: usize, what: &str) -> String {
        match &self.outcome {
            Outcome::Converged(d) => format!("{:.2}", d.as_secs_f64()),
            Outcome::NotConverged { after, count } => {
                let count = count.map_or_else(|| "?".to_string(), |c| c.to_string());
                format!(
                    "not converged after {:.0} s ({count} of {n} {what})",
                    after.as_secs_f64()
                )
            }
            Outcome::Failed(why) => format!("failed: {why}"),
        }
    }

    fn send_cell(&self) -> String {
        match &self.send {
            Ok(d) => format!("{:.3}", d.as_secs_f64()),
            Err(why) => format!("unfinished: {why}"),
        }
    }
}

/// Sends `bytes` on `session` while polling `count` (given the phase's deadline, which
/// bounds it) every [`POLL`] until `done` holds on a count taken after the last byte was
/// written, or `timeout` passes. The sender is bounded by the same deadline.
fn run_phase(
    session: &Session,
    bytes: &[u8],
    timeout: Duration,
    mut count: impl FnMut(Instant) -> Option<usize>,
    done: impl Fn(usize) -> bool,
) -> Phase {
    let start = Instant::now();
    let deadline = start + timeout;
    std::thread::scope(|s| {
        let (sent_tx, sent_rx) = mpsc::channel();
        s.spawn(move || {
            let _ = sent_tx.send(session.send(bytes, deadline));
        });
        let mut sent: Option<Result<(Instant, Instant)>> = None;
        let mut last = None;
        // Some(when) once done, None at the deadline, Err if the session or the run ended.
        let reached: Result<Option<Instant>, String> = loop {
            if stopped() {
                break Err("interrupted".to_string());
            }
            if sent.is_none() {
                sent = sent_rx.try_recv().ok();
            }
            if let Some(Err(e)) = &sent {
                break Err(format!("the speaker could not send: {e:#}"));
            }
            if let Some(why) = session.ended() {
                break Err(why);
            }
            let all_sent = sent.is_some();
            let c = count(deadline);
            let now = Instant::now();
            if let Some(c) = c {
                last = Some(c);
                if all_sent && done(c) {
                    break Ok(Some(now));
                }
            }
            if now >= deadline {
                break Ok(None);
            }
            std::thread::sleep(POLL.min(deadline - now));
        };
        let end = Instant::now();
        let sent = match sent {
            Some(sent) => sent,
            None => sent_rx
                .recv()
                .unwrap_or_else(|_| Err(anyhow!("the sender panicked"))),
        };
        let first = sent.as_ref().map_or(start, |(first, _)| *first);
        let send = sent
            .map(|(first, last)| last - first)
            .map_err(|e| format!("{e:#}"));
        let outcome = match reached {
            Ok(Some(at)) => Outcome::Converged(at.saturating_duration_since(first)),
            Ok(None) => Outcome::NotConverged {
                after: timeout,
                count: last,
            },
            Err(why) => Outcome::Failed(why),
        };
        Phase {
            first,
            end,
            outcome,
            send,
        }
    })
}

/// Memory and CPU of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    /// VmRSS, bytes.
    rss: u64,
    /// VmHWM (peak RSS since start or the last reset), bytes.
    hwm: u64,
    /// utime + stime, seconds.
    cpu: f64,
}

fn usage(pid: u32) -> Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |key: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))?;
        let value: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("bad {line:?}"))?;
        Ok(value * 1024)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("bad /proc/{pid}/stat field {i}"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Usage {
        rss: kib("VmRSS:")?,
        hwm: kib("VmHWM:")?,
        cpu: (ticks(14)? + ticks(15)?) as f64 / hz,
    })
}

/// Resets a process's peak RSS to its current RSS (Linux ≥ 4.0).
fn reset_peak(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting the peak RSS of {pid}"))
}

/// A process's memory and CPU over the two phases of a run.
#[derive(Debug, Clone, Copy, Default)]
struct ProcReport {
    /// RSS before the announcements.
    rss_before: u64,
    /// Peak RSS during the announcements.
    peak_announce: u64,
    /// Peak RSS during the withdrawals.
    peak_withdraw: u64,
    /// RSS after the withdrawals.
    rss_after: u64,
    cpu_announce: f64,
    cpu_withdraw: f64,
}

/// Samples a process around the phases of a run.
#[derive(Debug)]
struct Meter {
    pid: u32,
    report: ProcReport,
    cpu_mark: f64,
}

impl Meter {
    /// Starts metering `pid`, which must be running the binary `name` (the guards' pids are
    /// those of `ip netns exec`, which execs the command in place).
    fn start(pid: u32, name: &str) -> Result<Meter> {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .with_context(|| format!("process {pid} ({name}) is gone"))?;
        ensure!(
            exe.file_name().is_some_and(|f| f == name),
            "process {pid} runs {} instead of {name}",
            exe.display()
        );
        reset_peak(pid)?;
        let u = usage(pid)?;
        Ok(Meter {
            pid,
            report: ProcReport {
                rss_before: u.rss,
                ..ProcReport::default()
            },
            cpu_mark: u.cpu,
        })
    }

    /// After the announcements: their peak and CPU; resets the peak for the withdrawals.
    fn announced(&mut self) -> Result<()> {
        let u = usage(self.pid)?;
        self.report.peak_announce = u.hwm;
        self.report.cpu_announce = u.cpu - self.cpu_mark;
        self.cpu_mark = u.cpu;
        reset_peak(self.pid)
    }

    fn withdrawn(mut self) -> Result<ProcReport> {
        let u = usage(self.pid)?;
        self.report.peak_withdraw = u.hwm;
        self.report.rss_after = u.rss;
        self.report.cpu_withdraw = u.cpu - self.cpu_mark;
        Ok(self.report)
    }
}

// --- carrier --------------------------------------------------------------------------------

/// carrier's side of one run.
#[derive(Debug)]
struct CarrierRun {
    announce: Phase,
    withdraw: Phase,
    probe: String,
    keepalive: KeepaliveReport,
    control: ProcReport,
    dataplane: ProcReport,
    logs: String,
}

impl CarrierRun {
    fn summary(&self, n: usize) -> String {
        format!(
            "announce {} (sent in {}), withdraw {} (sent in {}), probe: {}, max KEEPALIVE gap {} s; logs: {}",
            self.announce.cell(n, "installed"),
            self.announce.send_cell(),
            self.withdraw.cell(n, "still installed"),
            self.withdraw.send_cell(),
            self.probe,
            self.keepalive.cell(),
            self.logs
        )
    }
}

/// The KEEPALIVEs carrier sent the speaker during the announce and withdraw phases.
#[derive(Debug, Clone, Copy)]
struct KeepaliveReport {
    /// The longest time without one, counted from the last one before each phase.
    max_gap: Duration,
    /// How many arrived.
    seen: usize,
    /// The negotiated hold time (one is due every third of it).
    hold_time: u16,
}

impl KeepaliveReport {
    fn cell(&self) -> String {
        if self.hold_time == 0 {
            return "— (hold time 0)".to_string();
        }
        let due = f64::from(self.hold_time / 3);
        let late = if self.max_gap.as_secs_f64() > f64::from(self.hold_time) {
            ", past the hold time"
        } else {
            ""
        };
        format!(
            "{:.1} (due every {due:.0}{late})",
            self.max_gap.as_secs_f64()
        )
    }
}

/// The dataplane's route count (over all VRFs and the underlay), from its table socket's
/// `status` request.
#[derive(Debug)]
struct TableStatus {
    socket: PathBuf,
    stream: Option<UnixStream>,
}

impl TableStatus {
    /// (routes, generation), waiting for the answer until `deadline` (at least a second: the
    /// dataplane answers after the update it is applying); `None` when the socket does not
    /// answer in time (the connection is dropped and made again next time).
    fn get(&mut self, deadline: Instant) -> Option<(usize, u64)> {
        if self.stream.is_none() {
            self.stream = UnixStream::connect(&self.socket).ok();
        }
        let stream = self.stream.as_mut()?;
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let reply = stream
            .set_read_timeout(Some(wait))
            .and_then(|()| stream.set_write_timeout(Some(wait)))
            .ok()
            .and_then(|()| write_message(stream, &Request::Status).ok())
            .and_then(|()| read_frame(stream).ok().flatten())
            .and_then(|body| serde_json::from_slice::<Response>(&body).ok());
        match reply {
            Some(Response::Status {
                routes, generation, ..
            }) => Some((routes, generation)),
            _ => {
                self.stream = None;
                None
            }
        }
    }

    /// The route count once the generation has not moved for a second (carrier-control's
    /// first programming is done), within `within`.
    fn settled(&mut self, within: Duration) -> Result<usize> {
        let deadline = Instant::now() + within;
        let mut seen: Option<(usize, u64, Instant)> = None;
        loop {
            ensure!(!stopped(), "interrupted");
            let now = Instant::now();
            if let Some((routes, generation)) = self.get(deadline) {
                match seen {
                    Some((r, g, since)) if r == routes && g == generation => {
                        if now - since >= Duration::from_secs(1) {
                            return Ok(routes);
                        }
                    }
                    _ => seen = Some((routes, generation, now)),
                }
            }
            ensure!(
                now < deadline,
                "the dataplane's tables did not settle within {within:?}"
            );
            std::thread::sleep(POLL);
        }
    }
}

fn carrier_run(lab: &Lab, cli: &Cli, updates: &Updates, timeout: Duration) -> Result<CarrierRun> {
    let n = updates.n;
    let listener = lab.listen()?;
    let dp = Dataplane::start(&lab.pe, &dataplane_config());
    let control = start_control(&lab.pe, &control_config(&dp, cli.hold_time));
    let logs = format!(
        "{} {}",
        dp.socket
            .parent()
            .map_or_else(String::new, |d| d.display().to_string()),
        control.dir.display()
    );
    let session = Session::accept(
        &listener,
        SPEAKER_PE_SIDE,
        PE_MGMT,
        cli.hold_time,
        Duration::from_secs(30),
    )
    .with_context(|| {
        format!(
            "carrier-control's session\n--- control log ---\n{}",
            control.log()
        )
    })?;
    let mut status = TableStatus {
        socket: dp.socket.clone(),
        stream: None,
    };
    let base = status.settled(Duration::from_secs(30))?;

    let mut meters = (
        Meter::start(control.pid(), "carrier-control")?,
        Meter::start(dp.pid(), "carrier-dataplane")?,
    );
    let announce = run_phase(
        &session,
        &updates.announce,
        timeout,
        |deadline| {
            status
                .get(deadline)
                .map(|(routes, _)| routes.saturating_sub(base))
        },
        |c| c >= n,
    );
    meters.0.announced()?;
    meters.1.announced()?;
    let probe = match announce.outcome {
        Outcome::Converged(_) => probe(lab, updates),
        _ => "not sent (not converged)".to_string(),
    };
    let withdraw = match session.ended() {
        None => run_phase(
            &session,
            &updates.withdraw,
            timeout,
            |deadline| {
                status
                    .get(deadline)
                    .map(|(routes, _)| routes.saturating_sub(base))
            },
            |c| c == 0,
        ),
        Some(_) => Phase::skipped("no session"),
    };
    let (control_report, dataplane_report) = (meters.0.withdrawn()?, meters.1.withdrawn()?);
    // Over both phases, leaving out the probe between them (the session is idle then).
    let (gap_a, seen_a) = session.keepalive_gap(announce.first, announce.end);
    let (gap_w, seen_w) = session.keepalive_gap(withdraw.first, withdraw.end);
    let keepalive = KeepaliveReport {
        max_gap: gap_a.max(gap_w),
        seen: seen_a + seen_w,
        hold_time: session.hold_time,
    };
    if let Some(why) = session.ended() {
        eprintln!("carrier-converge: the session with carrier-control ended: {why}\n--- control log (tail) ---\n{}", tail(&control.log(), 30));
    }
    drop(session);
    drop(control);
    drop(dp);
    Ok(CarrierRun {
        announce,
        withdraw,
        probe,
        keepalive,
        control: control_report,
        dataplane: dataplane_report,
        logs,
    })
}

/// One UDP packet from the customer host to the last route's prefix, captured on the core
/// neighbour and decoded by tshark: the label on the wire against the route's.
fn probe(lab: &Lab, updates: &Updates) -> String {
    probe_route(lab, updates, updates.first + updates.n - 1)
}

/// One UDP packet to a host of route `i`, captured on the core side: is it sent with the label?
fn probe_route(lab: &Lab, updates: &Updates, i: usize) -> String {
    let (dst, want) = updates.probe_target_of(i);
    let pcap = lab
        .scratch
        .join(format!("probe-{}-{}-{i}.pcap", updates.n, updates.mode.name()));
    let capture = Capture::start(&lab.core, "eth0", &pcap, &["mpls"]);
    let sent = in_netns(&lab.ce, || {
        let socket = UdpSocket::bind(SocketAddrV4::new(CE_HOST, 0))?;
        socket.send_to(b"carrier-converge probe", SocketAddrV4::new(dst, 9))?;
        Ok(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let pcap = capture.stop();
    if let Err(e) = sent {
        return format!("not sent: {e:#}");
    }
    let frames = tshark(&pcap, "mpls", &["mpls.label", "ip.dst"]);
    let expected = [want.to_string(), dst.to_string()];
    match frames.as_slice() {
        [] => format!("no MPLS frame on the core for {dst}"),
        [frame] if frame[..] == expected[..] => format!("label {want} to {dst} on the wire"),
        _ => format!("wrong: {frames:?} on the wire, expected label {want} to {dst}"),
    }
}

/// One `--churn` run.
#[derive(Debug)]
struct ChurnRun {
    n: usize,
    mode: LabelMode,
    secs: u64,
    /// `--rate`.
    rate: Option<u64>,
    /// Withdraw + announce rounds of all N written.
    rounds: usize,
    /// Route updates (withdrawals and announcements) written.
    updates: usize,
    /// From the first byte of the churn until the dataplane held every route again, or why
    /// it did not.
    took: Result<Duration, String>,
    /// Stable packets sent by the customer host, and MPLS frames counted on the core.
    sent: u64,
    arrived: Option<u64>,
    keepalive: KeepaliveReport,
    /// CPU seconds over the churn: carrier-control, carrier-dataplane.
    cpu: (f64, f64),
    /// `--flaps`: the second peer's flaps and the memory over the run.
    soak: Option<SoakReport>,
    logs: String,
}

/// What the soak's flapping peer did, and the memory of both processes meanwhile.
#[derive(Debug, Clone)]
struct SoakReport {
    /// Flaps done (a session Established, its routes sent, brought down, started again).
    done: usize,
    /// From the first flap to the last.
    took: Duration,
    /// Why the flaps stopped early.
    failed: Option<String>,
    /// carrier-control's own count of the flapping peer's flaps (`GET /peers/{address}`).
    carrier_flaps: Option<u64>,
    samples: Vec<MemorySample>,
}

/// (time since the churn began, flaps done, RSS of carrier-control, RSS of carrier-dataplane).
type MemorySample = (Duration, usize, u64, u64);

impl SoakReport {
    /// The sample taken once a tenth of the flaps were done (the warm one) and the last one
    /// (after the run settled).
    fn warm_and_end(&self) -> Option<(MemorySample, MemorySample)> {
        let end = *self.samples.last()?;
        let warm = *self.samples.iter().find(|s| s.1 * 10 >= self.done.max(1))?;
        Some((warm, end))
    }

    /// Growth of (control, dataplane) RSS from the warm sample to the end, in bytes (negative:
    /// shrank).
    fn growth(&self) -> Option<(i64, i64)> {
        let (w, e) = self.warm_and_end()?;
        Some((e.2 as i64 - w.2 as i64, e.3 as i64 - w.3 as i64))
    }

    fn summary(&self) -> String {
        let (growth, per_flap) = match (self.growth(), self.warm_and_end()) {
            (Some((c, d)), Some((w, e))) => {
                let flaps = (e.1 - w.1).max(1) as i64;
                (format!("RSS growth after the first tenth of the flaps: control {} KiB, dataplane {} KiB", c / 1024, d / 1024), format!(" ({} / {} B per flap)", c / flaps, d / flaps))
            }
            _ => ("no memory samples".to_string(), String::new()),
        };
        format!(
            "{} flaps in {:.1} s (carrier counted {}){}; {growth}{per_flap}",
            self.done,
            self.took.as_secs_f64(),
            self.carrier_flaps.map_or_else(|| "?".to_string(), |f| f.to_string()),
            self.failed.as_ref().map_or_else(String::new, |f| format!(", stopped: {f}"))
        )
    }

    /// `--check`: every flap done and counted by carrier, memory within [`SOAK_RSS_BOUND`].
    fn check(&self, flaps: usize) -> Result<()> {
        ensure!(self.done == flaps && self.failed.is_none(), "{} of {flaps} flaps done: {}", self.done, self.summary());
        ensure!(self.carrier_flaps.is_some_and(|f| f >= flaps as u64), "carrier-control counted fewer flaps: {}", self.summary());
        let (c, d) = self.growth().ok_or_else(|| anyhow!("no memory samples"))?;
        ensure!(c <= SOAK_RSS_BOUND as i64 && d <= SOAK_RSS_BOUND as i64, "RSS grew by more than {} MiB: {}", SOAK_RSS_BOUND >> 20, self.summary());
        Ok(())
    }
}

fn soak_table(runs: &[ChurnRun]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| flapping routes | labels | rate limit, updates/s | flaps of the second peer (done / counted by carrier) | flaps took, s | RSS control: after 1/10 of the flaps → end, MiB | RSS dataplane, MiB | growth per flap, B (control / dataplane) |");
    let _ = writeln!(s, "|---:|---|---:|---|---:|---|---|---|");
    let mib = |b: u64| format!("{:.1}", b as f64 / (1 << 20) as f64);
    for r in runs {
        let Some(soak) = &r.soak else { continue };
        let (c, d, per) = match soak.warm_and_end() {
            Some((w, e)) => {
                let flaps = (e.1 - w.1).max(1) as i64;
                (format!("{} → {}", mib(w.2), mib(e.2)), format!("{} → {}", mib(w.3), mib(e.3)), format!("{} / {}", (e.2 as i64 - w.2 as i64) / flaps, (e.3 as i64 - w.3 as i64) / flaps))
            }
            None => ("?".into(), "?".into(), "?".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} / {} | {:.1} | {c} | {d} | {per} |",
            r.n,
            r.mode.name(),
            r.rate.map_or_else(|| "—".to_string(), |x| x.to_string()),
            soak.done,
            soak.carrier_flaps.map_or_else(|| "?".to_string(), |f| f.to_string()),
            soak.took.as_secs_f64(),
        );
    }
    s
}

/// One request to carrier-control's API (from a thread in the PE's namespace, where ureq's
/// socket is made), with the soak's token: the status code and the body.
fn api_request(method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let request = ureq::request(method, &format!("http://{API}{path}"))
        .timeout(Duration::from_secs(5))
        .set("Authorization", &format!("Bearer {API_TOKEN}"))
        .set("Content-Type", "application/json");
    let response = match if body.is_empty() { request.call() } else { request.send_string(body) } {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(anyhow!("{method} {path}: {e}")),
    };
    let status = response.status();
    Ok((status, response.into_string().context("reading the API's answer")?))
}

/// The flapping peer's entry of `GET /peers/{address}`.
fn flapper_state() -> Result<serde_json::Value> {
    let (status, body) = api_request("GET", &format!("/peers/{FLAPPER}"), "")?;
    ensure!(status == 200, "GET /peers/{FLAPPER}: {status} {body}");
    serde_json::from_str(&body).with_context(|| format!("GET /peers/{FLAPPER}: {body}"))
}

fn neighbor_command(action: &str) -> Result<()> {
    let (status, body) = api_request("POST", &format!("/neighbors/{FLAPPER}"), &format!("{{\"action\":\"{action}\"}}"))?;
    ensure!(status == 200, "neighbor {FLAPPER} {action}: {status} {body}");
    Ok(())
}

/// `--flaps`: runs on a thread in the PE's namespace (for the API); `listener` is the flapping
/// peer's, in the speaker's. Each flap: accept carrier's connection, the OPEN exchange, the
/// [`FLAPPER_ROUTES`] routes and End-of-RIB; then the peer ends the session with a Cease
/// (even flaps) or the operator does (`down`, odd flaps); once carrier is out of Established,
/// `up` makes it connect again at once. Flap k starts `k × every` after the first. Stops early
/// on `stop` or an error.
fn flap_loop(listener: &TcpListener, routes: &Updates, flaps: usize, every: Duration, hold_time: u16, stop: &AtomicBool, done: &AtomicUsize) -> Result<()> {
    let start = Instant::now();
    let established = |state: &serde_json::Value| state["state"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("established"));
    for k in 0..flaps {
        if stop.load(Ordering::Relaxed) || stopped() {
            bail!("stopped");
        }
        let session = Session::accept(listener, FLAPPER_ID, PE_MGMT, hold_time, Duration::from_secs(30)).with_context(|| format!("flap {k}"))?;
        session.send(&routes.announce, Instant::now() + Duration::from_secs(10))?;
        // Established on carrier's side too (it reads the speaker's KEEPALIVE after the
        // speaker is Established): only then is it a flap.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = flapper_state()?;
            if established(&state) {
                break;
            }
            ensure!(Instant::now() < deadline, "flap {k}: carrier not Established 10 s after the speaker: {state}");
            std::thread::sleep(Duration::from_millis(1));
        }
        let due = start + every * u32::try_from(k + 1).unwrap_or(u32::MAX);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        if k % 2 == 1 {
            neighbor_command("down")?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while session.ended().is_none() {
                ensure!(Instant::now() < deadline, "flap {k}: carrier did not close the session after `down`");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(session);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = flapper_state()?;
            if !established(&state) {
                break;
            }
            ensure!(Instant::now() < deadline, "flap {k}: carrier still Established 10 s after the peer left: {state}");
            std::thread::sleep(Duration::from_millis(1));
        }
        neighbor_command("up")?;
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}


impl ChurnRun {
    fn lost(&self) -> Option<u64> {
        self.arrived.map(|a| self.sent.saturating_sub(a))
    }

    fn rate(&self) -> Option<f64> {
        self.took.as_ref().ok().map(|d| self.updates as f64 / d.as_secs_f64())
    }

    fn summary(&self) -> String {
        format!(
            "{} rounds, {} route updates, {}, stable packets sent {} arrived {} lost {}, max KEEPALIVE gap {} s, CPU s control {:.1} dataplane {:.1}; logs: {}",
            self.rounds,
            self.updates,
            match (&self.took, self.rate()) {
                (Ok(d), Some(r)) => format!("back to all routes after {:.2} s ({r:.0} updates/s)", d.as_secs_f64()),
                (Err(why), _) => format!("not back to all routes: {why}"),
                _ => String::new(),
            },
            self.sent,
            self.arrived.map_or_else(|| "?".to_string(), |a| a.to_string()),
            self.lost().map_or_else(|| "?".to_string(), |l| l.to_string()),
            self.keepalive.cell(),
            self.cpu.0,
            self.cpu.1,
            self.logs
        ) + &self.soak.as_ref().map_or_else(String::new, |s| format!("; soak: {}", s.summary()))
    }
}

fn churn_table(runs: &[ChurnRun]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| flapping routes | labels | churn s | rounds (withdraw + announce all) | route updates that reached the dataplane | last round done after, s | updates/s | stable flows: packets sent / arrived / lost | max KEEPALIVE gap s | CPU s control / dataplane |");
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---|---:|---|");
    for r in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} / **{}** | {} | {:.1} / {:.1} |",
            r.n,
            r.mode.name(),
            r.secs,
            r.rounds,
            r.updates,
            r.took.as_ref().map_or_else(|why| format!("not: {why}"), |d| format!("{:.2}", d.as_secs_f64())),
            r.rate().map_or_else(|| "—".to_string(), |x| format!("{x:.0}")),
            r.sent,
            r.arrived.map_or_else(|| "?".to_string(), |a| a.to_string()),
            r.lost().map_or_else(|| "?".to_string(), |l| l.to_string()),
            r.keepalive.cell(),
            r.cpu.0,
            r.cpu.1,
        );
    }
    s
}

/// What the churn loop, the sender and the flapping peer did.
struct Churned {
    rounds: usize,
    updates: usize,
    took: Result<Duration, String>,
    start: Instant,
    sent_all: Instant,
    sent: u64,
    /// `--flaps`: how long the flaps took, and why they stopped early.
    flapped: Option<(Duration, Option<String>)>,
}

/// `--churn`: the stable routes and the N flapping ones, traffic through the stable ones
/// while the others flap.
fn churn_run(lab: &Lab, cli: &Cli, n: usize, mode: LabelMode, secs: u64, timeout: Duration) -> Result<ChurnRun> {
    let stable = Updates::range(0, STABLE, mode)?;
    let flap = Updates::range(STABLE, n, mode)?;
    let listener = lab.listen()?;
    let flapper = if cli.flaps > 0 { Some((lab.listen_on(SocketAddrV4::new(FLAPPER, FLAPPER_PORT))?, Updates::range(0, FLAPPER_ROUTES.min(STABLE), mode)?)) } else { None };
    let dp = Dataplane::start(&lab.pe, &dataplane_config());
    let control = start_control(&lab.pe, &control_config_with(&dp, cli.hold_time, flapper.is_some()));
    let logs = format!("{} {}", dp.socket.parent().map_or_else(String::new, |d| d.display().to_string()), control.dir.display());
    let session = Session::accept(&listener, SPEAKER_PE_SIDE, PE_MGMT, cli.hold_time, Duration::from_secs(30))
        .with_context(|| format!("carrier-control's session\n--- control log ---\n{}", control.log()))?;
    let mut status = TableStatus { socket: dp.socket.clone(), stream: None };
    let base = status.settled(Duration::from_secs(30))?;
    let all = base + STABLE + n;
    // Every route in, then the stable ones checked on the wire.
    // Until the dataplane holds `want` routes.
    let wait_for = |status: &mut TableStatus, want: usize, within: Duration| -> Result<Instant, String> {
        let deadline = Instant::now() + within;
        loop {
            if stopped() {
                return Err("interrupted".into());
            }
            if let Some(why) = session.ended() {
                return Err(why);
            }
            if status.get(deadline).is_some_and(|(routes, _)| routes == want) {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                return Err(format!("not within {within:?}"));
            }
            std::thread::sleep(POLL);
        }
    };
    let deadline = Instant::now() + timeout;
    session.send(&stable.announce, deadline)?;
    session.send(&flap.announce, deadline)?;
    wait_for(&mut status, all, timeout).map_err(|why| anyhow!("the {} routes were not installed: {why}", STABLE + n))?;
    let probe = probe_route(lab, &stable, STABLE - 1);
    ensure!(probe.starts_with("label "), "stable route {}: {probe}", STABLE - 1);

    // The core neighbour counts the MPLS frames to its MAC in XDP (and drops them).
    let object = std::env::var_os("CARRIER_EBPF_OBJECT").map_or_else(|| workspace().join("target/bpf/carrier-xdp.o"), PathBuf::from);
    let mac = CORE_NEIGHBOUR_MAC.parse().map_err(|e| anyhow!("{e:?}"))?;
    let sink = Sink::attach(lab.core.name(), "eth0", &object, Some(mac))?;
    let mpls = || sink.counts().map(|c| c.0[CLASS_MPLS]);
    let before = mpls()?;
    let stop = AtomicBool::new(false);
    let meters = (usage(control.pid())?, usage(dp.pid())?);
    // The soak's flapping peer and the memory samples.
    let (flaps_done, flaps_stop, sampling) = (AtomicUsize::new(0), AtomicBool::new(false), AtomicBool::new(true));
    let samples = Mutex::new(vec![]);
    let soak_start = Instant::now();
    let sample = || {
        if let (Ok(c), Ok(d)) = (usage(control.pid()), usage(dp.pid())) {
            samples.lock().expect("not poisoned").push((soak_start.elapsed(), flaps_done.load(Ordering::Relaxed), c.rss, d.rss));
        }
    };
    let result = std::thread::scope(|s| -> Result<Churned> {
        let flapping = flapper.as_ref().map(|(listener, routes)| {
            s.spawn(|| {
                let started = Instant::now();
                let result = in_netns(&lab.pe, || flap_loop(listener, routes, cli.flaps, Duration::from_secs(secs) / u32::try_from(cli.flaps).unwrap_or(u32::MAX), cli.hold_time, &flaps_stop, &flaps_done));
                (started.elapsed(), result.err().map(|e| format!("{e:#}")))
            })
        });
        if flapping.is_some() {
            s.spawn(|| {
                while sampling.load(Ordering::Relaxed) {
                    sample();
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        }
        let sender = s.spawn(|| {
            in_netns(&lab.ce, || {
                let socket = UdpSocket::bind(SocketAddrV4::new(CE_HOST, 0))?;
                let start = Instant::now();
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(secs + timeout.as_secs() + 10) {
                    let due = (start.elapsed().as_secs_f64() * STABLE_PPS as f64) as u64;
                    while sent < due {
                        let (dst, _) = stable.probe_target_of(sent as usize % STABLE);
                        if socket.send_to(&sent.to_be_bytes(), SocketAddrV4::new(dst, 9)).is_ok() {
                            sent += 1;
                        }
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Ok(sent)
            })
        });
        std::thread::sleep(Duration::from_secs(1));
        let start = Instant::now();
        let churn_deadline = start + Duration::from_secs(secs);
        // Each half of a round is written, then waited for in the dataplane, so that every
        // update reaches it (written back to back, carrier-control would fold a withdrawal and
        // the announcement after it into nothing between two flushes).
        let (mut rounds, mut updates) = (0, 0);
        let mut took = Err("no round".to_string());
        'churn: while Instant::now() < churn_deadline {
            for (bytes, want) in [(&flap.withdraw, base + STABLE), (&flap.announce, all)] {
                // `--rate`: no more than that many updates written by now.
                if let Some(rate) = cli.rate {
                    let due = start + Duration::from_secs_f64(updates as f64 / rate as f64);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
                let done = session
                    .send(bytes, Instant::now() + timeout)
                    .map_err(|e| format!("the speaker could not send: {e:#}"))
                    .and_then(|_| wait_for(&mut status, want, timeout));
                match done {
                    Ok(at) => {
                        updates += n;
                        took = Ok(at - start);
                    }
                    Err(why) => {
                        took = Err(why);
                        break 'churn;
                    }
                }
            }
            rounds += 1;
        }
        let sent_all = Instant::now();
        // The flaps finish (bounded by their own waits) while the stable flows still run.
        let flapped = flapping.map(|f| {
            let deadline = Instant::now() + timeout;
            while !f.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            flaps_stop.store(true, Ordering::Relaxed);
            f.join().unwrap_or_else(|_| (Duration::ZERO, Some("the flapping thread panicked".into())))
        });
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        sampling.store(false, Ordering::Relaxed);
        let sent = sender.join().map_err(|_| anyhow!("the sender panicked"))??;
        Ok(Churned { rounds, updates, took, start, sent_all, sent, flapped })
    });
    std::thread::sleep(Duration::from_millis(300));
    let arrived = mpls().ok().map(|c| c - before);
    drop(sink);
    let Churned { rounds, updates, took, start, sent_all, sent, flapped } = result?;
    let soak = match flapped {
        Some((took, failed)) => {
            // The settled end: the last sample, a second after everything stopped.
            sample();
            let carrier_flaps = in_netns(&lab.pe, flapper_state).ok().and_then(|p| p["flaps"].as_u64());
            Some(SoakReport { done: flaps_done.load(Ordering::Relaxed), took, failed, carrier_flaps, samples: samples.into_inner().expect("not poisoned") })
        }
        None => None,
    };
    let cpu = (usage(control.pid())?.cpu - meters.0.cpu, usage(dp.pid())?.cpu - meters.1.cpu);
    let (gap, seen) = session.keepalive_gap(start, sent_all);
    let keepalive = KeepaliveReport { max_gap: gap, seen, hold_time: session.hold_time };
    if let Some(why) = session.ended() {
        eprintln!("carrier-converge: the session with carrier-control ended: {why}\n--- control log (tail) ---\n{}", tail(&control.log(), 30));
    }
    drop(session);
    drop(control);
    drop(dp);
    Ok(ChurnRun { n, mode, secs, rate: cli.rate, rounds, updates, took, sent, arrived, keepalive, cpu, soak, logs })
}

/// `--kill-control`: kill -9 carrier-control half-way through learning N routes, restart it,
/// and say what the dataplane held and forwarded meanwhile.
fn kill_control_run(lab: &Lab, cli: &Cli, updates: &Updates, timeout: Duration) -> Result<String> {
    let n = updates.n;
    let listener = lab.listen()?;
    let dp = Dataplane::start(&lab.pe, &dataplane_config());
    let config = control_config(&dp, cli.hold_time).replacen("[dataplane]", "graceful_restart = 120\n\n[dataplane]", 1);
    let mut control = start_control(&lab.pe, &config);
    let session = Session::accept(&listener, SPEAKER_PE_SIDE, PE_MGMT, cli.hold_time, Duration::from_secs(30))
        .with_context(|| format!("carrier-control's session\n--- control log ---\n{}", control.log()))?;
    let mut status = TableStatus { socket: dp.socket.clone(), stream: None };
    let base = status.settled(Duration::from_secs(30))?;
    let count = |status: &mut TableStatus| status.get(Instant::now() + Duration::from_secs(5)).map(|(r, _)| r.saturating_sub(base));

    // 1. Announce; kill -9 once half is installed.
    let half = run_phase(&session, &updates.announce, timeout, |d| status.get(d).map(|(r, _)| r.saturating_sub(base)), |c| c >= n / 2);
    ensure!(matches!(half.outcome, Outcome::Converged(_)), "half the routes never got installed: {:?}", half.outcome);
    control.kill9();
    let at_kill = count(&mut status).context("the table socket after the kill")?;
    // 2. Control away for 2 s: the dataplane keeps what it has, and forwards it.
    let mut least_away = at_kill;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        least_away = least_away.min(count(&mut status).unwrap_or(0));
    }
    let probe_away = probe_route(lab, updates, 0);
    drop(session);
    // 3. Restart: the speaker sends everything again on the new session.
    let control = start_control(&lab.pe, &config);
    let session = Session::accept(&listener, SPEAKER_PE_SIDE, PE_MGMT, cli.hold_time, Duration::from_secs(30))
        .with_context(|| format!("carrier-control's session after the restart\n--- control log ---\n{}", control.log()))?;
    let mut least_back = usize::MAX;
    let back = run_phase(
        &session,
        &updates.announce,
        timeout,
        |d| {
            let c = status.get(d).map(|(r, _)| r.saturating_sub(base));
            if let Some(c) = c {
                least_back = least_back.min(c);
            }
            c
        },
        |c| c == n,
    );
    // Settled: nothing more, nothing less.
    std::thread::sleep(Duration::from_secs(1));
    let end = count(&mut status).unwrap_or(0);
    let probe_back = probe_route(lab, updates, n - 1);
    let back_time = match back.outcome {
        Outcome::Converged(d) => format!("{:.2} s from the first UPDATE of the new session", d.as_secs_f64()),
        other => format!("{other:?}"),
    };
    let ok = least_away >= at_kill && least_back >= at_kill && end == n && probe_away.starts_with("label") && probe_back.starts_with("label");
    Ok(format!(
        "| {n} | {} | {at_kill} | {least_away} | {probe_away} | {least_back} | {end} ({back_time}) | {probe_back} | {} |",
        updates.mode.name(),
        if ok { "nothing lost" } else { "LOST OR WRONG" }
    ))
}

// --- gobgpd ---------------------------------------------------------------------------------

/// gobgpd's side of one run.
#[derive(Debug)]
struct GobgpRun {
    announce: Phase,
    withdraw: Phase,
    gobgpd: ProcReport,
}

impl GobgpRun {
    fn summary(&self, n: usize) -> String {
        format!(
            "announce {} (sent in {}), withdraw {} (sent in {})",
            self.announce.cell(n, "in the RIB"),
            self.announce.send_cell(),
            self.withdraw.cell(n, "still in the RIB"),
            self.withdraw.send_cell()
        )
    }
}

fn gobgp_run(lab: &Lab, cli: &Cli, updates: &Updates, timeout: Duration) -> Result<GobgpRun> {
    let n = updates.n;
    let listener = lab.listen()?;
    let gobgp = GoBgp::start(
        &lab.gobgp,
        ASN,
        &GOBGP_ADDR.to_string(),
        &[&SPEAKER_GOBGP_SIDE.to_string()],
    );
    let session = Session::accept(
        &listener,
        SPEAKER_GOBGP_SIDE,
        GOBGP_ADDR,
        cli.hold_time,
        Duration::from_secs(30),
    )
    .with_context(|| {
        format!(
            "gobgpd's session\n--- gobgpd log ---\n{}",
            gobgp.daemon.log()
        )
    })?;
    let pid = gobgp.daemon.pid();
    let mut meter = Meter::start(pid, "gobgpd")?;
    let announce = run_phase(
        &session,
        &updates.announce,
        timeout,
        |deadline| gobgp_destinations(&lab.gobgp, deadline),
        |c| c >= n,
    );
    meter.announced()?;
    let withdraw = match session.ended() {
        None => run_phase(
            &session,
            &updates.withdraw,
            timeout,
            |deadline| gobgp_destinations(&lab.gobgp, deadline),
            |c| c == 0,
        ),
        Some(_) => Phase::skipped("no session"),
    };
    let gobgpd = meter.withdrawn()?;
    if let Some(why) = session.ended() {
        eprintln!(
            "carrier-converge: the session with gobgpd ended: {why}\n--- gobgpd log (tail) ---\n{}",
            tail(&gobgp.daemon.log(), 30)
        );
    }
    drop(session);
    drop(gobgp);
    Ok(GobgpRun {
        announce,
        withdraw,
        gobgpd,
    })
}

/// Destinations in gobgpd's VPNv4 RIB (`gobgp global rib -a vpnv4 summary`), or `None`
/// when the CLI fails or runs past `deadline` (at least a second).
fn gobgp_destinations(ns: &NetNs, deadline: Instant) -> Option<usize> {
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .as_secs()
        .max(1)
        .to_string();
    let out = ns.exec(&[
        "timeout",
        &wait,
        "gobgp",
        "-u",
        "127.0.0.1",
        "-p",
        GOBGP_API_PORT,
        "global",
        "rib",
        "-a",
        "vpnv4",
        "summary",
    ]);
    if !out.status.success() {
        return None;
    }
    parse_destinations(&String::from_utf8_lossy(&out.stdout))
}

/// "Table afi:AFI_IP safi:SAFI_MPLS_VPN\nDestination: 10000, Path: 10000" (gobgp 3.x) → 10000.
fn parse_destinations(text: &str) -> Option<usize> {
    let rest = text.split_once("Destination:")?.1;
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

// --- the report -----------------------------------------------------------------------------

#[derive(Debug)]
struct Row {
    n: usize,
    mode: LabelMode,
    carrier: CarrierRun,
    gobgp: GobgpRun,
}

#[derive(Debug)]
struct Report {
    rows: Vec<Row>,
    command: String,
    load_before: String,
    load_after: String,
    hold_time: u16,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Peak RSS in MiB and its growth over the RSS before, per route.
fn memory_cell(peak: u64, before: u64, n: usize) -> String {
    format!(
        "{:.1} ({:.0})",
        mib(peak),
        peak.saturating_sub(before) as f64 / n as f64
    )
}

impl Report {
    /// The main table and the details table, in markdown.
    fn tables(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| N | labels | carrier announce s | carrier withdraw s | peer send s (announce / withdraw) | max KEEPALIVE gap s | control peak RSS MiB (B/route) | dataplane peak RSS MiB (B/route) | control CPU s (announce / withdraw) | dataplane CPU s (announce / withdraw) | gobgpd announce s | carrier / gobgpd | probe |"
        );
        let _ = writeln!(
            s,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for r in &self.rows {
            let c = &r.carrier;
            let ratio = match (c.announce.secs(), r.gobgp.announce.secs()) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "—".to_string(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} / {} | {} | {} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {} | {ratio} | {} |",
                r.n,
                r.mode.name(),
                c.announce.cell(r.n, "installed"),
                c.withdraw.cell(r.n, "still installed"),
                c.announce.send_cell(),
                c.withdraw.send_cell(),
                c.keepalive.cell(),
                memory_cell(c.control.peak_announce, c.control.rss_before, r.n),
                memory_cell(c.dataplane.peak_announce, c.dataplane.rss_before, r.n),
                c.control.cpu_announce,
                c.control.cpu_withdraw,
                c.dataplane.cpu_announce,
                c.dataplane.cpu_withdraw,
                r.gobgp.announce.cell(r.n, "in the RIB"),
                c.probe,
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| N | labels | KEEPALIVEs from carrier in the phases | control RSS MiB before / after withdraw (peak in withdraw) | dataplane RSS MiB before / after withdraw (peak in withdraw) | gobgpd withdraw s | peer send to gobgpd s (announce / withdraw) | gobgpd peak RSS MiB (B/route) | gobgpd CPU s (announce / withdraw) |"
        );
        let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let (c, g) = (&r.carrier, &r.gobgp);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} / {:.1} ({:.1}) | {:.1} / {:.1} ({:.1}) | {} | {} / {} | {} | {:.2} / {:.2} |",
                r.n,
                r.mode.name(),
                c.keepalive.seen,
                mib(c.control.rss_before),
                mib(c.control.rss_after),
                mib(c.control.peak_withdraw),
                mib(c.dataplane.rss_before),
                mib(c.dataplane.rss_after),
                mib(c.dataplane.peak_withdraw),
                g.withdraw.cell(r.n, "still in the RIB"),
                g.announce.send_cell(),
                g.withdraw.send_cell(),
                memory_cell(g.gobgpd.peak_announce, g.gobgpd.rss_before, r.n),
                g.gobgpd.cpu_announce,
                g.gobgpd.cpu_withdraw,
            );
        }
        s
    }

    /// A dated subsection for bench/RESULTS.md.
    fn section(&self, tables: &str) -> String {
        let date = utc_now();
        let uname = std::process::Command::new("uname")
            .arg("-srm")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let cpu = cpu_model();
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        let sizes: Vec<String> = self
            .rows
            .iter()
            .map(|r| r.n.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut s = String::new();
        let _ = writeln!(s, "### {date} — N = {}\n", sizes.join(", "));
        let _ = writeln!(s, "{uname}, {cpu}, {cpus} CPUs online; load average before {}, after {}; hold time {} s.\n", self.load_before, self.load_after, self.hold_time);
        let _ = writeln!(s, "    cd /work/main   # the workspace root");
        let _ = writeln!(s, "    cargo xtask build --release");
        let _ = writeln!(
            s,
            "    cargo build --release -p carrier-control -p carrier-bench"
        );
        let _ = writeln!(s, "    {}   # as root\n", self.command);
        let _ = writeln!(s, "{tables}");
        s
    }
}

/// How this program was started, with the binary variables the caller set.
fn command_line() -> String {
    let mut parts = vec![];
    for var in ["CARRIER_DATAPLANE_BIN", "CARRIER_CONTROL_BIN"] {
        if let Some(v) = std::env::var_os(var) {
            let v = PathBuf::from(v);
            let shown = v
                .strip_prefix(workspace())
                .map_or_else(|_| v.display().to_string(), |p| p.display().to_string());
            parts.push(format!("{var}={shown}"));
        }
    }
    let mut args = std::env::args();
    let program = args.next().map(PathBuf::from).unwrap_or_default();
    let program = program.strip_prefix(workspace()).map_or_else(
        |_| program.display().to_string(),
        |p| p.display().to_string(),
    );
    parts.push(program);
    parts.extend(args);
    parts.join(" ")
}

/// The intro of this benchmark's section, written with its first results.
const SECTION_INTRO: &str = "\
`carrier-converge` (`bench/src/bin/carrier-converge.rs`, whose module doc is the contract): a
BGP speaker in a namespace announces N VPNv4 routes (distinct /24s, one RD, an RT the PE's VRF
imports, next hop a remote PE resolved over the core port) to carrier-control, which programs a
running carrier-dataplane; then withdraws them. **announce** / **withdraw**: first UPDATE
written → the dataplane's table socket counts N more / N fewer routes (polled every 100 ms).
**probe**: one UDP packet to the last prefix after the announce, captured on the core side and
decoded by tshark. **peer send**: the speaker's own writing time. Peak RSS is per phase (reset
before each), B/route its growth over the RSS before the announce divided by N. gobgpd gets the
same UPDATE bytes from the same speaker in the same run; its time is until `gobgp global rib
-a vpnv4 summary` reports N destinations. Each size and label mode runs on fresh processes.
";

/// Appends `subsection` to this benchmark's section of `path` (made at the end of the file,
/// with its intro, if missing).
fn append_section(path: &Path, subsection: &str) -> Result<()> {
    let old = std::fs::read_to_string(path)
        .unwrap_or_else(|_| "# carrier benchmark results\n".to_owned());
    let new = match section_range(&old, RESULTS_HEADING) {
        Some(range) => {
            let (head, tail) = old.split_at(range.end);
            let mut s = head.trim_end_matches('\n').to_owned();
            s.push_str("\n\n");
            s.push_str(subsection.trim_end_matches('\n'));
            s.push('\n');
            if !tail.is_empty() {
                s.push('\n');
                s.push_str(tail);
            }
            s
        }
        None => {
            let mut s = old.trim_end_matches('\n').to_owned();
            let _ = write!(
                s,
                "\n\n{RESULTS_HEADING}\n\n{SECTION_INTRO}\n{}",
                subsection.trim_end_matches('\n')
            );
            s.push('\n');
            s
        }
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

// --- small helpers --------------------------------------------------------------------------

/// The date and time, for a section heading.
fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_distinct_slash_24s_and_pack_into_4096_byte_updates() {
        assert_eq!(route_prefix(0), "10.0.0.0/24");
        assert_eq!(route_prefix(1), "10.0.1.0/24");
        assert_eq!(route_prefix(65_536), "11.0.0.0/24");
        assert_eq!(route_prefix(MAX_ROUTES - 1), "71.8.255.0/24");
        let u = Updates::new(1000, LabelMode::PerRoute).unwrap();
        let ends = message_ends(&u.announce).unwrap();
        let mut from = 0;
        for end in &ends {
            assert!(end - from <= 4096);
            from = *end;
        }
        // Every route is announced once, with its label, then End-of-RIB.
        let mut announced = vec![];
        let mut from = 0;
        for end in ends {
            match decode(
                &u.announce[from..end],
                &CodecContext {
                    four_octet_as: true,
                    add_path: false,
                },
            )
            .unwrap()
            {
                Message::Update(update) if update.eor.is_some() => {
                    assert_eq!(end, u.announce.len())
                }
                Message::Update(update) => announced.extend(update.announced),
                other => panic!("{other:?}"),
            }
            from = end;
        }
        assert_eq!(announced.len(), 1000);
        let Nlri::Vpnv4 { label, prefix, .. } = &announced[999] else {
            panic!()
        };
        assert_eq!(
            (label.as_mpls(), prefix.to_string()),
            (16_999, "10.3.231.0/24".to_string())
        );
        assert_eq!(u.probe_target_of(u.n - 1), ("10.3.231.1".parse().unwrap(), 16_999));
    }

    #[test]
    fn gobgp_summary() {
        assert_eq!(
            parse_destinations(
                "Table afi:AFI_IP safi:SAFI_MPLS_VPN\nDestination: 10000, Path: 10000\n"
            ),
            Some(10_000)
        );
        assert_eq!(
            parse_destinations("Table afi:AFI_IP safi:SAFI_MPLS_VPN\nDestination: 0, Path: 0\n"),
            Some(0)
        );
        assert_eq!(parse_destinations("error"), None);
    }

    #[test]
    fn section_is_appended_within_its_own() {
        let dir =
            std::env::temp_dir().join(format!("carrier-converge-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("RESULTS.md");
        std::fs::write(&path, "# r\n\n## Other\n\ntext\n").unwrap();
        append_section(&path, "### one\n\nA\n").unwrap();
        append_section(&path, "### two\n\nB\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# r\n\n## Other\n\ntext\n\n## Convergence on the wire"),
            "{text}"
        );
        assert!(text.ends_with("### one\n\nA\n\n### two\n\nB\n"), "{text}");
        std::fs::write(
            &path,
            format!("# r\n\n{RESULTS_HEADING}\n\nintro\n\n## Later\n\nx\n"),
        )
        .unwrap();
        append_section(&path, "### three\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("# r\n\n{RESULTS_HEADING}\n\nintro\n\n### three\n\n## Later\n\nx\n")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
