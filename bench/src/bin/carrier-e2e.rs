//! `carrier-e2e`: end-to-end forwarding rate of carrier on veth, in both of its tiers (AF_XDP
//! and express), against baselines measured in the same run on the same namespaces: Linux IPv4
//! forwarding, Linux's own VXLAN (a `vxlan` device encapsulating or decapsulating the same
//! frames as carrier's VXLAN paths), and two minimal forwarders that are the ceilings of the
//! tiers (`carrier_minfwd` in XDP; carrier's AF_XDP I/O with no pipeline).
//!
//! ```text
//!  gen ns                    DUT ns                            sink ns
//!  e2g ──veth── e2i  [carrier-dataplane | Linux forwarding |   e2o ──veth── e2s
//!                     minimal XDP or AF_XDP forwarder]
//!  generator thread          threaded NAPI of e2i, and the      carrier_sink (XDP, native):
//!  (carrier_gen's XDP_TX     carrier process or the AF_XDP      counts by EtherType, drops;
//!  through BPF_PROG_TEST_RUN forwarder thread: all on the DUT   its NAPI on the generator CPU
//!  live frames, or AF_XDP    CPU
//!  copy-mode TX, or AF_PACKET
//!  sendmmsg), on the
//!  generator CPU
//! ```
//!
//! The contract: as root, `carrier-e2e` builds the three namespaces (named with its pid),
//! then for each offered load, frame size, round and path starts the DUT (`carrier-dataplane
//! run` with the path's config, `ip_forward=1`, or a minimal forwarder), starts the generator,
//! lets it warm up, counts what the sink received over `--secs` seconds, and stops both. Rounds
//! interleave the paths so slow drift (other load on the machine) spreads over all of them. It
//! prints a markdown table per load and frame size: per path the median forwarded rate at the
//! sink, every run, the ratio to its Linux baseline (Linux's VXLAN in the same direction for
//! the VXLAN paths, Linux IPv4 forwarding for the others), the CPU time the DUT used in the window
//! (so a rate per whole CPU too), the offered rate (frames the generator handed to the kernel,
//! as fast as it goes or paced by `--load`), and where frames were lost on the veths; then
//! what carrier itself counted. `--write` puts them into `bench/RESULTS.md` under
//! `## End-to-end forwarding on veth`, replacing only that section, and a bar chart of the
//! forwarded rates into `bench/e2e.svg`.
//!
//! `--no-drop` prints, in place of those tables, each path's no-drop rate per frame size: the
//! highest offered rate at which at most 0.1% (`--no-drop-loss`) of the frames the generator
//! sent in the window did not reach the sink as the path's class. A search per path (round by round, paths in
//! turn) runs it flooded, then paced at up to `--no-drop-steps` loads (7), halving the bracket
//! between the highest passing and the lowest failing load; when the generator cannot offer
//! more than a passing load (flooded, or short of a paced target) the rate is marked as a lower
//! bound (≥). Its table puts the rate over the baseline's no-drop rate as the other tables do.
//!
//! `--routes N` (default 1: one prefix per path) puts N routes into the DUT's table and spreads
//! the flows' destinations over them: the first N /24s of 10.128.0.0/9, flow `f` of `F` to
//! host .2 of route `f·N/F` (fewer flows than routes: every `N/F`-th route gets one flow, the
//! rest are only in the table). In carrier's VRF red they are routes via the sink (VRF forward,
//! MPLS pop, VXLAN decap), VPN routes to the remote PE with a label each (MPLS push: labels
//! 1000 to 1000+N−1), or EVPN type-5 routes to the remote VTEP (VXLAN encap); in Linux's main
//! table, routes via the sink, or onto its vxlan device via the remote VTEP (encap). The
//! minimal forwarders have no table: they get the same frames and ignore the destinations. The
//! live generator then writes a template per flow (the IPv4 checksums differ), not one.
//!
//! Only frames of the class the path must produce count as forwarded (IPv4 after a VRF forward, an
//! MPLS pop or a VXLAN decap, MPLS after a push, VXLAN after a VXLAN encap); a run where they are
//! under 99% of what the sink saw is marked. The sink tells VXLAN from IPv4 by the outer headers
//! alone (IPv4 without options, UDP to port 4789); the VXLAN header and the inner frame are not
//! checked at run time (the frame builders' tests and carrier's own differential tests check
//! those). Every step is bounded in time; namespaces, the dataplane, the XDP programs, the
//! harness's threads and the scratch directory are removed or stopped by guards, also on error,
//! panic or Ctrl-C.
//!
//! Set-up facts this relies on (kernel 6.x veth): a veth hands frames to its peer's NAPI
//! (where native XDP runs) only when the sending end has TSO off, and has a NAPI at all only
//! with XDP attached or GRO on; it takes XDP frames (a redirect, the live generator's XDP_TX)
//! only if its peer had GRO or XDP when it came up; with `threaded` NAPI each receive queue is
//! a kthread that can be pinned, so the DUT's receive work runs on the DUT CPU and not on the
//! sender's.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::num::NonZeroU32;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use aya::maps::{Array, DevMap, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use carrier_bench::run::{
    cpu_model, install_stop_handler, is_root, loadavg, section_range, setns, stopped, InNetNs,
};
use carrier_bench::sink::{Sink, CLASSES, CLASS_IPV4, CLASS_MPLS, CLASS_VXLAN};
use carrier_bench::{mpls_frame, udp_frame, vxlan_frame};
use carrier_common::PortId;
use carrier_dataplane::io::xsk::XskPorts;
use carrier_dataplane::io::Ports as _;
use carrier_dataplane::pipeline::{Batch, Counters, Frame as _, Verdict};
use carrier_dataplane::xdp::{bpf_prog_test_run, BpfTestRun, XdpMd, BPF_F_TEST_XDP_LIVE_FRAMES};
use clap::{Parser, ValueEnum};

// --- the topology -------------------------------------------------------------------------

/// Interface names inside the namespaces. Short, so that the threaded-NAPI kthread names
/// (`napi/<ifname>-<id>`, cut at 15 characters) keep the whole interface name.
const GEN_IF: &str = "e2g";
const DUT_IN: &str = "e2i";
const DUT_OUT: &str = "e2o";
const SINK_IF: &str = "e2s";

const GEN_MAC: &str = "02:aa:00:00:00:02";
const DUT_IN_MAC: &str = "02:00:00:00:01:01";
const DUT_OUT_MAC: &str = "02:00:00:00:01:03";
const SINK_MAC: &str = "02:aa:00:00:00:03";

/// The customer behind the generator, and the destination behind the sink.
const CUSTOMER_SRC: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const SINK_DST: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 2);
/// A destination in the remote PE's prefix (MPLS push).
const REMOTE_DST: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 5);
/// The VPN label pushed toward the remote PE, and the per-VRF label popped.
const PUSH_LABEL: u32 = 1000;
const POP_LABEL: u32 = 100;

/// The DUT's VTEP (carrier's `[router] vtep`; Linux's vxlan device's `local`, on `lo`), and the
/// remote VTEP: behind the sink for an encap, behind the generator for a decap.
const DUT_VTEP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 2);
/// The L3 VNI of VRF red (EVPN type-5, routed VXLAN).
const VNI: u32 = 5000;
/// The DUT's router MAC on VXLAN (carrier's `[router] router_mac`, the MAC of Linux's vxlan
/// device): the inner source after an encap, the inner destination of the decap frames.
const DUT_ROUTER_MAC: &str = "02:00:00:00:01:05";
/// The remote VTEP's router MAC: the inner destination after an encap, the inner source of
/// the decap frames.
const REMOTE_ROUTER_MAC: &str = "02:dd:00:00:00:02";
/// The core link (MPLS and VXLAN paths): the DUT's address on its core port, and the core
/// neighbour's (the sink for a push or an encap, the generator for a pop or a decap).
const CORE_DUT: &str = "192.0.2.1/30";
const CORE_PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Bytes VXLAN puts in front of the inner frame: outer Ethernet (14), IPv4 (20), UDP (8) and
/// VXLAN (8).
const VXLAN_OVERHEAD: usize = 50;
/// Longest inner frame of the VXLAN paths: its IPv4 packet and the 50 bytes in front fit the
/// veths' 1500-byte MTU (1450 is also the MTU Linux gives its vxlan device).
const MAX_VXLAN_FRAME: usize = 1500 - VXLAN_OVERHEAD + 14;
/// Linux's vxlan device in the DUT namespace (the kernel VXLAN baselines).
const KERNEL_VXLAN_DEV: &str = "e2x";

/// With `--routes N` over 1, the routes are the first N /24s of this /9 (10.128.0.0/24,
/// 10.128.1.0/24, ...), all toward the sink's side, and each flow's destination is host
/// [`ROUTE_HOST`] of one of them (see [`flow_prefix`]).
const ROUTE_RANGE: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 0);
const ROUTE_RANGE_LEN: u8 = 9;
/// Most `--routes`: the /24s in [`ROUTE_RANGE`].
const MAX_ROUTES: u32 = 1 << (24 - ROUTE_RANGE_LEN);
/// The host of a route's prefix the flows to it go to.
const ROUTE_HOST: u32 = 2;


/// Shortest and longest IPv4 frame (without the FCS); under a label a frame is 4 bytes longer,
/// and the longest then just fits the veths' 1500-byte MTU.
const MIN_FRAME: usize = 60;
const MAX_FRAME: usize = 1510;
/// Bytes of Ethernet, IPv4 and UDP headers in an IPv4 frame.
const UDP_HEADERS: usize = 14 + 20 + 8;

/// Share of the sink's frames that must be of the path's class for a run to count as clean.
const MIN_CLASS_SHARE: f64 = 0.99;
/// How long the dataplane may take to serve its socket, and to stop.
const DATAPLANE_START: Duration = Duration::from_secs(15);
const DATAPLANE_STOP: Duration = Duration::from_secs(5);
/// Heading of this benchmark's section in `bench/RESULTS.md`.
const RESULTS_HEADING: &str = "## End-to-end forwarding on veth";

// --- command line -------------------------------------------------------------------------

/// End-to-end forwarding rate of carrier on veth, with Linux IPv4 forwarding as the baseline.
#[derive(Debug, Parser)]
#[command(name = "carrier-e2e")]
struct Cli {
    /// Seconds measured per run.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Runs per path (the table shows the median).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds of traffic before each measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Paths to measure, in this order within a round. The `express-*` paths need a dataplane
    /// with the express tier (`express` under `[router]`); leave them out for one without.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = DEFAULT_PATHS
    )]
    paths: Vec<PathKind>,
    /// Generator: `auto` measures each on the Linux path first and keeps the fastest.
    #[arg(long, alias = "gen", value_enum, default_value_t = GenChoice::Auto)]
    generator: GenChoice,
    /// Seconds each generator runs in the `auto` comparison.
    #[arg(long, default_value_t = DEFAULT_COMPARE_SECS)]
    compare_secs: f64,
    /// Offered loads, each measured on every path: `max` (the generator sends as fast as it
    /// can) or a rate in Mpps, e.g. `max,0.45`.
    #[arg(long = "load", value_delimiter = ',', default_value = "max")]
    loads: Vec<Load>,
    /// Frames the generator hands the kernel per system call (AF_XDP: per `sendto`, 32 or
    /// more; AF_PACKET: per `sendmmsg`; default 64) or, for the live generator, per batch
    /// inside `BPF_PROG_TEST_RUN` (at most 256, the default; it is also the size of the call's
    /// page pool, and a smaller pool recycles fewer of the pages the sink frees, which slows
    /// the generator). The kernel here is not preemptible: a long call keeps the sink's NAPI
    /// (on the same CPU) from running, and the sink's ring overflows.
    #[arg(long)]
    gen_batch: Option<u32>,
    /// Distinct flows (UDP source ports) in the generated traffic.
    #[arg(long, default_value_t = 1024)]
    flows: u16,
    /// Routes in the DUT's table (carrier's VRF, Linux's main table), each a /24 of
    /// 10.128.0.0/9 toward the sink's side, with the flows' destinations spread over them
    /// (1: today's single prefix per path). Best with `--flows` at least as many.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_ROUTES)))]
    routes: u32,
    /// Instead of the `--load` tables: per path and frame size, search for the highest paced
    /// load forwarded with at most 0.1% loss (a flooded run, then a binary search).
    #[arg(long, conflicts_with_all = ["loads", "write", "chart"])]
    no_drop: bool,
    /// Most loss, in percent of the frames offered in a run's window, that the no-drop search
    /// lets pass.
    #[arg(long, default_value_t = DEFAULT_NO_DROP_LOSS)]
    no_drop_loss: f64,
    /// Paced runs of each no-drop search after its flooded run.
    #[arg(long, default_value_t = DEFAULT_NO_DROP_STEPS, value_parser = clap::value_parser!(u32).range(1..=12))]
    no_drop_steps: u32,
    /// Sizes of the IPv4 frames in bytes, without the FCS, each measured on every path at
    /// every load, e.g. `60,512`: from 60 to 1510 (frames under a label are 4 bytes longer,
    /// and must fit the veths' 1500-byte MTU; in VXLAN they are the inner frames, 50 bytes
    /// more on the wire, and at most 1464 with a VXLAN path).
    #[arg(long = "frame-size", value_delimiter = ',', default_value = "60")]
    frame_sizes: Vec<usize>,
    /// CPU of the generator (and of the sink's NAPI and this harness).
    #[arg(long, default_value_t = 0)]
    gen_cpu: usize,
    /// CPU of the DUT: the dataplane process and the threaded NAPI of its ingress veth.
    #[arg(long, default_value_t = 1)]
    dut_cpu: usize,
    /// The dataplane binary (built by `cargo xtask build --release`).
    #[arg(long)]
    dataplane: Option<PathBuf>,
    /// The eBPF object holding `carrier_sink` and `carrier_gen` (written by `cargo xtask
    /// build`).
    #[arg(long)]
    object: Option<PathBuf>,
    /// Write the tables into bench/RESULTS.md and the chart into bench/e2e.svg.
    #[arg(long)]
    write: bool,
    /// Also write the chart (SVG) here.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Keep the scratch directory (dataplane configs and logs) under target/tmp.
    #[arg(long)]
    keep_logs: bool,
}

impl Cli {
    /// Frames per system call (per batch for the live generator) of generator `kind`.
    fn gen_batch(&self, kind: GenKind) -> u32 {
        self.gen_batch.unwrap_or(match kind {
            GenKind::Live => LIVE_MAX_BATCH,
            GenKind::Xsk | GenKind::Packet => 64,
        })
    }
}

/// Seconds each generator runs in the `auto` comparison, unless told.
const DEFAULT_COMPARE_SECS: f64 = 3.0;
/// Paced runs of a no-drop search after its flooded one, unless told: the bracket then
/// narrows to under 1% of the flooded offered rate.
const DEFAULT_NO_DROP_STEPS: u32 = 7;

/// Every path, in the order of a round: the baselines first.
const DEFAULT_PATHS: &str = "kernel,kernel-vxlan-encap,kernel-vxlan-decap,xdp-min,afxdp-min,vrf-forward,mpls-push,mpls-pop,vxlan-encap,vxlan-decap,express-vrf-forward,express-mpls-push,express-mpls-pop,express-vxlan-encap,express-vxlan-decap";

/// [`DEFAULT_PATHS`], parsed.
fn default_paths() -> Vec<PathKind> {
    DEFAULT_PATHS
        .split(',')
        .filter_map(|name| PathKind::from_str(name, false).ok())
        .collect()
}

/// One forwarding path through the DUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
enum PathKind {
    /// Linux IPv4 forwarding (the baseline), same frames as `vrf-forward`.
    Kernel,
    /// Linux VXLAN encap (the baseline of the VXLAN encap paths), same frames in and out as
    /// `vxlan-encap`: IPv4 forwarding to a route through a `vxlan` device, whose static
    /// neighbour is the remote router MAC and whose FDB sends that MAC to the remote VTEP.
    KernelVxlanEncap,
    /// Linux VXLAN decap (the baseline of the VXLAN decap paths), same frames in and out as
    /// `vxlan-decap`: a `vxlan` device on the DUT's VTEP address decapsulates, and IPv4
    /// forwarding sends the inner packet out of the egress veth.
    KernelVxlanDecap,
    /// `carrier_minfwd` (baseline): XDP on the ingress veth rewrites the MACs, decrements the
    /// TTL and redirects to the egress veth; the ceiling of any XDP forwarder here.
    XdpMin,
    /// The AF_XDP minimal forwarder (baseline): carrier's XDP steering and AF_XDP I/O
    /// (`carrier_xdp`, `XskPorts`) with the same rewrite as `xdp-min` in place of the
    /// pipeline; the ceiling of the AF_XDP tier here.
    AfxdpMin,
    /// carrier, AF_XDP tier: customer port to customer port in one VRF.
    VrfForward,
    /// carrier, AF_XDP tier: customer port to core port, pushing the VPN label.
    MplsPush,
    /// carrier, AF_XDP tier: core port to customer port, popping a per-VRF label.
    MplsPop,
    /// carrier, AF_XDP tier: customer port to core port, a VRF route to a remote VTEP
    /// (routed VXLAN, EVPN type-5): encapsulated in VXLAN with the L3 VNI.
    VxlanEncap,
    /// carrier, AF_XDP tier: core port to customer port, VXLAN to the DUT's VTEP with the L3
    /// VNI decapsulated and routed in its VRF.
    VxlanDecap,
    /// carrier, express (XDP) tier: as `vrf-forward`.
    ExpressVrfForward,
    /// carrier, express (XDP) tier: as `mpls-push`.
    ExpressMplsPush,
    /// carrier, express (XDP) tier: as `mpls-pop`.
    ExpressMplsPop,
    /// carrier, express (XDP) tier: as `vxlan-encap`.
    ExpressVxlanEncap,
    /// carrier, express (XDP) tier: as `vxlan-decap`.
    ExpressVxlanDecap,
}

/// What a path does to a frame, whoever forwards it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// IPv4 in, IPv4 out (VRF forward, or plain IPv4 forwarding).
    Ipv4,
    /// IPv4 in, MPLS out (VPN label pushed).
    Push,
    /// MPLS in (per-VRF label), IPv4 out.
    Pop,
    /// IPv4 in, VXLAN out (routed VXLAN with the L3 VNI, to the remote VTEP).
    VxlanEncap,
    /// VXLAN in (the L3 VNI, to the DUT's VTEP), IPv4 out.
    VxlanDecap,
}

/// Who forwards: a baseline, or one of carrier's tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tier {
    /// Linux, or a minimal forwarder with no pipeline.
    Baseline,
    /// carrier's AF_XDP tier (`express = false`): XDP steers frames to the userspace pipeline.
    AfXdp,
    /// carrier's express tier (`express = true`): the forwarding happens in XDP.
    Express,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GenChoice {
    Auto,
    Live,
    Xsk,
    Packet,
}

/// How the generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GenKind {
    /// `BPF_PROG_TEST_RUN` of `carrier_gen` in live-frames mode: XDP_TX out of the gen veth.
    Live,
    /// AF_XDP in copy mode: a TX ring over a UMEM of pre-built frames.
    Xsk,
    /// AF_PACKET raw socket with PACKET_QDISC_BYPASS and sendmmsg.
    Packet,
}

impl GenKind {
    fn name(self) -> &'static str {
        match self {
            GenKind::Live => "XDP live frames (BPF_PROG_TEST_RUN)",
            GenKind::Xsk => "AF_XDP copy-mode TX",
            GenKind::Packet => "AF_PACKET sendmmsg (qdisc bypass)",
        }
    }
}

/// The offered load of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Load {
    /// As fast as the generator goes.
    Max,
    /// Paced at this many Mpps.
    Paced(f64),
}

impl Load {
    fn rate(self) -> Option<f64> {
        match self {
            Load::Max => None,
            Load::Paced(mpps) => Some(mpps),
        }
    }
}

impl std::str::FromStr for Load {
    type Err = String;
    fn from_str(s: &str) -> Result<Load, String> {
        if s == "max" {
            return Ok(Load::Max);
        }
        match s.parse::<f64>() {
            Ok(mpps) if mpps > 0.0 && mpps <= 100.0 => Ok(Load::Paced(mpps)),
            _ => Err(format!(
                "{s:?}: expected `max` or a rate in Mpps in (0, 100]"
            )),
        }
    }
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Load::Max => f.write_str("max"),
            Load::Paced(mpps) => write!(f, "{mpps}"),
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("carrier-e2e: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    ensure!(
        cli.secs > 0.0 && cli.secs <= 120.0,
        "--secs must be in (0, 120]"
    );
    ensure!(
        cli.warmup >= 0.0 && cli.warmup <= 30.0,
        "--warmup must be in [0, 30]"
    );
    ensure!(
        cli.compare_secs > 0.0 && cli.compare_secs <= 30.0,
        "--compare-secs must be in (0, 30]"
    );
    ensure!((1..=20).contains(&cli.runs), "--runs must be in 1..=20");
    ensure!(cli.flows >= 1, "--flows must be at least 1");
    ensure!(!cli.loads.is_empty(), "--load is empty");
    ensure!(
        (0.0..=10.0).contains(&cli.no_drop_loss),
        "--no-drop-loss must be in [0, 10] (percent)"
    );
    ensure!(!cli.frame_sizes.is_empty(), "--frame-size is empty");
    ensure!(
        cli.frame_sizes
            .iter()
            .all(|size| (MIN_FRAME..=MAX_FRAME).contains(size)),
        "--frame-size must be in {MIN_FRAME}..={MAX_FRAME}"
    );
    ensure!(!cli.paths.is_empty(), "--paths is empty");
    ensure!(
        !cli.paths.iter().any(|p| p.is_vxlan())
            || cli.frame_sizes.iter().all(|size| *size <= MAX_VXLAN_FRAME),
        "with a VXLAN path --frame-size must be at most {MAX_VXLAN_FRAME} (the frame's IPv4 \
         packet and {VXLAN_OVERHEAD} bytes of VXLAN must fit the veths' 1500-byte MTU): leave \
         the VXLAN paths out for longer frames"
    );
    ensure!(
        cli.gen_cpu != cli.dut_cpu,
        "--gen-cpu and --dut-cpu must differ"
    );
    let cpus = online_cpus();
    ensure!(
        cli.gen_cpu < cpus && cli.dut_cpu < cpus,
        "this machine has {cpus} CPUs"
    );
    ensure!(
        is_root(),
        "carrier-e2e needs root: it creates namespaces and attaches XDP programs"
    );

    let root = workspace();
    let dataplane = cli
        .dataplane
        .clone()
        .unwrap_or_else(|| root.join("target/release/carrier-dataplane"));
    let object = cli
        .object
        .clone()
        .unwrap_or_else(|| root.join("target/bpf/carrier-xdp.o"));
    let needs_carrier = cli.paths.iter().any(|p| !p.is_baseline());
    if needs_carrier {
        ensure!(
            dataplane.is_file(),
            "{} is missing: run `cargo xtask build --release`",
            dataplane.display()
        );
    }
    ensure!(
        object.is_file(),
        "{} is missing: run `cargo xtask build --release`",
        object.display()
    );

    install_stop_handler();
    install_wake_handler()?;
    let scratch = Scratch::new(&root.join("target/tmp"), cli.keep_logs)?;
    let has_express = needs_carrier && dataplane_has_express(&dataplane, &scratch)?;
    if needs_carrier {
        let express: Vec<&str> = cli
            .paths
            .iter()
            .filter(|p| p.tier() == Tier::Express)
            .map(|p| p.name())
            .collect();
        ensure!(
            has_express || express.is_empty(),
            "{} has no express tier (its config refuses `express` under [router]), so it \
             cannot run {}: leave the express paths out, e.g. --paths kernel,xdp-min,vrf-forward,mpls-push,mpls-pop",
            dataplane.display(),
            express.join(", ")
        );
    }
    // The harness itself stays off the DUT CPU.
    pin_thread(cli.gen_cpu)?;
    let load_before = loadavg();
    let net = Topology::up(cli)?;
    let sink = Sink::attach(&net.sink.name, SINK_IF, &object, Some(SINK_MAC.parse::<carrier_dataplane::wire::MacAddr>().map_err(|e| anyhow!("{e:?}"))?))?;
    println!(
        "carrier-e2e: namespaces {}, {}, {}; sink attached on {SINK_IF}",
        net.gen.name, net.dut.name, net.sink.name
    );

    // The live generator's program: required for `--generator live`, tried for `auto`; with
    // room for a template per flow when the flows go to different routes.
    let live_templates = if cli.routes > 1 {
        u32::from(cli.flows)
    } else {
        1
    };
    let live = match cli.generator {
        GenChoice::Live => Some(LiveGen::load(&object, live_templates)?),
        GenChoice::Auto => LiveGen::load(&object, live_templates)
            .map_err(|e| println!("carrier-e2e: no live generator: {e:#}"))
            .ok(),
        GenChoice::Xsk | GenChoice::Packet => None,
    }
    .map(RefCell::new);

    let bench = Bench {
        cli,
        net: &net,
        sink: &sink,
        scratch: &scratch,
        dataplane: &dataplane,
        object: &object,
        has_express,
        live: live.as_ref(),
    };
    let (gen_kind, comparison) = match cli.generator {
        GenChoice::Live => (GenKind::Live, vec![]),
        GenChoice::Xsk => (GenKind::Xsk, vec![]),
        GenChoice::Packet => (GenKind::Packet, vec![]),
        GenChoice::Auto => bench.compare_generators()?,
    };
    println!("carrier-e2e: generator: {}", gen_kind.name());

    let (results, searches) = if cli.no_drop {
        (vec![], bench.no_drop(gen_kind)?)
    } else {
        (bench.loads(gen_kind)?, vec![])
    };
    let load_after = loadavg();
    drop(sink);
    drop(net);

    let report = Report {
        cli,
        gen_kind,
        comparison,
        results,
        load_before,
        load_after,
    };
    if cli.no_drop {
        for results in &searches {
            println!(
                "\nno-drop rate, ≤{}% loss: {}-byte frames{}\n\n{}",
                cli.no_drop_loss,
                results.frame_size,
                describe_routes(cli.routes),
                report.no_drop_table(results)
            );
        }
        let note = searches
            .iter()
            .flat_map(|r| &r.paths)
            .flat_map(|(_, s)| s.iter().flat_map(|s| &s.runs))
            .map(|step| step.sample.gen_note.as_str())
            .next()
            .unwrap_or_default();
        println!(
            "Generator set-up: {}, {note}, {} flows. Load average before {}, after {}.",
            report.gen_kind.name(),
            cli.flows,
            report.load_before,
            report.load_after
        );
        return Ok(());
    }
    for load in &report.results {
        println!(
            "\noffered load: {}, {}-byte frames{}\n\n{}\n{}",
            describe_load(load.load),
            load.frame_size,
            describe_routes(cli.routes),
            report.table(load),
            report.carrier_table(load)
        );
    }
    let chart = chart(&report.results, &report.chart_title());
    if let Some(path) = &cli.chart {
        std::fs::write(path, &chart).with_context(|| format!("writing {}", path.display()))?;
        println!("carrier-e2e: wrote {}", path.display());
    }
    if cli.write {
        let section = report.section();
        let path = root.join("bench/RESULTS.md");
        write_section(&path, &section)?;
        println!("carrier-e2e: wrote {}", path.display());
        let path = root.join(CHART_FILE);
        std::fs::write(&path, &chart).with_context(|| format!("writing {}", path.display()))?;
        println!("carrier-e2e: wrote {}", path.display());
    }
    Ok(())
}

/// The workspace root (bench/ is one of its members).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

// --- routes -------------------------------------------------------------------------------

/// The `index`-th route of `--routes` (under [`MAX_ROUTES`]): a /24 of [`ROUTE_RANGE`].
fn route_prefix(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ROUTE_RANGE) + (index << 8))
}

/// The route flow `flow` of `flows` goes to, with `routes` routes: `flow × routes / flows`, so
/// the flows spread evenly over all the routes. With at least as many flows as routes every
/// route gets traffic (⌈flows / routes⌉ or ⌊flows / routes⌋ flows each); with fewer, every
/// `routes / flows`-th route does, one flow each, the others are only in the table.
fn flow_prefix(flow: u16, flows: u16, routes: u32) -> u32 {
    (u64::from(flow) * u64::from(routes) / u64::from(flows.max(1))) as u32
}

/// The routes of `--routes` (none for 1: the paths' own single prefix), each as the config's
/// `[[route]]` in VRF red with the target `target(index)` (a `via = ..`, `mpls = ..` or
/// `vxlan = ..` line).
fn vrf_routes(routes: u32, target: impl Fn(u32) -> String) -> String {
    let mut out = String::new();
    if routes > 1 {
        for index in 0..routes {
            let _ = write!(
                out,
                "\n[[route]]\nvrf = \"red\"\nprefix = \"{}/24\"\n{}\n",
                route_prefix(index),
                target(index)
            );
        }
    }
    out
}

/// Linux's share of `--routes` in the DUT namespace for a kernel baseline: the same N /24s
/// in its main table, added with one `ip -batch` and flushed (`ip route flush root`, all of
/// [`ROUTE_RANGE`]) when dropped. Toward the sink neighbour for IPv4 forwarding and the VXLAN
/// decap; onto the vxlan device via the remote VTEP (`onlink`) for the VXLAN encap, as its
/// single route is (so it must come after [`KernelVxlan`], and goes with its device).
#[derive(Debug)]
struct KernelRoutes<'a> {
    ns: &'a NetNs,
}

impl<'a> KernelRoutes<'a> {
    /// Adds `routes` routes for `route` (none, and `None`, for a single route).
    fn up(
        ns: &'a NetNs,
        scratch: &Scratch,
        route: Route,
        routes: u32,
    ) -> Result<Option<KernelRoutes<'a>>> {
        if routes <= 1 {
            return Ok(None);
        }
        let target = match route {
            Route::VxlanEncap => format!("via {REMOTE_VTEP} dev {KERNEL_VXLAN_DEV} onlink"),
            Route::Ipv4 | Route::Push | Route::Pop | Route::VxlanDecap => {
                format!("via {SINK_DST} dev {DUT_OUT}")
            }
        };
        let mut batch = String::new();
        for index in 0..routes {
            let _ = writeln!(batch, "route add {}/24 {target}", route_prefix(index));
        }
        let file = scratch.dir.join("kernel-routes.batch");
        std::fs::write(&file, batch).with_context(|| format!("writing {}", file.display()))?;
        // The guard first: a batch that fails half-way leaves routes to flush.
        let guard = KernelRoutes { ns };
        let file = file.to_string_lossy().into_owned();
        ns.run(&["ip", "-batch", &file])
            .with_context(|| format!("adding {routes} routes to Linux's table"))?;
        Ok(Some(guard))
    }
}

impl Drop for KernelRoutes<'_> {
    fn drop(&mut self) {
        let range = format!("{ROUTE_RANGE}/{ROUTE_RANGE_LEN}");
        let _ = self.ns.run(&["ip", "route", "flush", "root", &range]);
    }
}

// --- paths --------------------------------------------------------------------------------

impl PathKind {
    fn name(self) -> &'static str {
        match self {
            PathKind::Kernel => "Linux IPv4 forwarding",
            PathKind::KernelVxlanEncap => "Linux VXLAN encap",
            PathKind::KernelVxlanDecap => "Linux VXLAN decap",
            PathKind::XdpMin => "XDP minimal forwarder",
            PathKind::AfxdpMin => "AF_XDP minimal forwarder",
            PathKind::VrfForward => "carrier VRF forward",
            PathKind::MplsPush => "carrier MPLS push",
            PathKind::MplsPop => "carrier MPLS pop",
            PathKind::ExpressVrfForward => "carrier express VRF forward",
            PathKind::ExpressMplsPush => "carrier express MPLS push",
            PathKind::ExpressMplsPop => "carrier express MPLS pop",
            PathKind::VxlanEncap => "carrier VXLAN encap",
            PathKind::VxlanDecap => "carrier VXLAN decap",
            PathKind::ExpressVxlanEncap => "carrier express VXLAN encap",
            PathKind::ExpressVxlanDecap => "carrier express VXLAN decap",
        }
    }

    fn tier(self) -> Tier {
        match self {
            PathKind::Kernel
            | PathKind::KernelVxlanEncap
            | PathKind::KernelVxlanDecap
            | PathKind::XdpMin
            | PathKind::AfxdpMin => Tier::Baseline,
            PathKind::VrfForward
            | PathKind::MplsPush
            | PathKind::MplsPop
            | PathKind::VxlanEncap
            | PathKind::VxlanDecap => Tier::AfXdp,
            PathKind::ExpressVrfForward
            | PathKind::ExpressMplsPush
            | PathKind::ExpressMplsPop
            | PathKind::ExpressVxlanEncap
            | PathKind::ExpressVxlanDecap => Tier::Express,
        }
    }

    /// What the path does to a frame.
    fn route(self) -> Route {
        match self {
            PathKind::Kernel
            | PathKind::XdpMin
            | PathKind::AfxdpMin
            | PathKind::VrfForward
            | PathKind::ExpressVrfForward => Route::Ipv4,
            PathKind::MplsPush | PathKind::ExpressMplsPush => Route::Push,
            PathKind::MplsPop | PathKind::ExpressMplsPop => Route::Pop,
            PathKind::KernelVxlanEncap | PathKind::VxlanEncap | PathKind::ExpressVxlanEncap => {
                Route::VxlanEncap
            }
            PathKind::KernelVxlanDecap | PathKind::VxlanDecap | PathKind::ExpressVxlanDecap => {
                Route::VxlanDecap
            }
        }
    }

    /// A VXLAN path (its frames are 50 bytes longer on one side).
    fn is_vxlan(self) -> bool {
        matches!(self.route(), Route::VxlanEncap | Route::VxlanDecap)
    }

    /// The Linux baseline the path's ratios are over: Linux's own VXLAN in the same direction
    /// for the VXLAN paths, Linux IPv4 forwarding for the rest (Linux has no MPLS forwarding
    /// here). A Linux baseline is its own.
    fn baseline(self) -> PathKind {
        match self.route() {
            Route::VxlanEncap => PathKind::KernelVxlanEncap,
            Route::VxlanDecap => PathKind::KernelVxlanDecap,
            Route::Ipv4 | Route::Push | Route::Pop => PathKind::Kernel,
        }
    }

    /// The frames in and out, for `size`-byte IPv4 frames, and the table's routes when there
    /// are `routes` of them (`--routes`; the minimal forwarders have no table).
    fn describe(self, size: usize, routes: u32) -> String {
        let text = self.describe_frames(size, routes);
        match self {
            _ if routes <= 1 => text,
            PathKind::XdpMin | PathKind::AfxdpMin => format!("{text}; no table"),
            _ => format!("{text}; {routes} routes"),
        }
    }

    /// [`PathKind::describe`] without the route count.
    fn describe_frames(self, size: usize, routes: u32) -> String {
        let labelled = size + 4;
        let vxlan = size + VXLAN_OVERHEAD;
        match (self, self.route()) {
            (PathKind::Kernel, _) => format!("IPv4/UDP {size} B in, IPv4 {size} B out (baseline)"),
            (PathKind::KernelVxlanEncap, _) => format!(
                "IPv4/UDP {size} B in, VXLAN (VNI {VNI}) {vxlan} B out (baseline: Linux vxlan device)"
            ),
            (PathKind::KernelVxlanDecap, _) => format!(
                "VXLAN (VNI {VNI}) {vxlan} B in, IPv4 {size} B out (baseline: Linux vxlan device)"
            ),
            (PathKind::XdpMin, _) => {
                format!("IPv4/UDP {size} B in, IPv4 {size} B out (baseline: MACs, TTL, redirect)")
            }
            (PathKind::AfxdpMin, _) => {
                format!("IPv4/UDP {size} B in, IPv4 {size} B out (baseline: AF_XDP, MACs, TTL)")
            }
            (_, Route::Ipv4) => format!("IPv4/UDP {size} B in, IPv4 {size} B out, one VRF"),
            (_, Route::Push) if routes > 1 => format!(
                "IPv4/UDP {size} B in, MPLS (labels {PUSH_LABEL}–{}, one per route) {labelled} B out",
                PUSH_LABEL + routes - 1
            ),
            (_, Route::Push) => {
                format!("IPv4/UDP {size} B in, MPLS (label {PUSH_LABEL}) {labelled} B out")
            }
            (_, Route::Pop) => {
                format!("MPLS (label {POP_LABEL}) {labelled} B in, IPv4 {size} B out")
            }
            (_, Route::VxlanEncap) => {
                format!("IPv4/UDP {size} B in, VXLAN (VNI {VNI}) {vxlan} B out, EVPN type-5")
            }
            (_, Route::VxlanDecap) => {
                format!("VXLAN (VNI {VNI}) {vxlan} B in, IPv4 {size} B out, L3 VNI")
            }
        }
    }

    /// A baseline (no carrier), against which the carrier paths are put.
    fn is_baseline(self) -> bool {
        self.tier() == Tier::Baseline
    }

    /// The sink's class of the frames the path must produce.
    fn expected_class(self) -> usize {
        match self.route() {
            Route::Push => CLASS_MPLS,
            Route::VxlanEncap => CLASS_VXLAN,
            Route::Ipv4 | Route::Pop | Route::VxlanDecap => CLASS_IPV4,
        }
    }

    fn expected_class_name(self) -> &'static str {
        match self.expected_class() {
            CLASS_MPLS => "MPLS",
            CLASS_VXLAN => "VXLAN",
            _ => "IPv4",
        }
    }

    /// Where the UDP source port is in this path's frames (the live generator writes it): the
    /// inner packet's in VXLAN, whose outer source port stays 50000.
    fn sport_offset(self) -> u32 {
        match self.route() {
            Route::Pop => 14 + 4 + 20,
            Route::VxlanDecap => (VXLAN_OVERHEAD + 14 + 20) as u32,
            Route::Ipv4 | Route::Push | Route::VxlanEncap => 14 + 20,
        }
    }

    /// Bytes of each frame the live generator writes back before sending it again: every
    /// header a forwarder may rewrite in place (the kernel reuses the pages the DUT and the
    /// sink hand back). A decap rewrites the inner Ethernet header and the inner IPv4 TTL and
    /// checksum, past the first [`GEN_SHORT_TEMPLATE`] bytes.
    fn template_len(self) -> usize {
        match self.route() {
            Route::VxlanDecap => GEN_TEMPLATE_LEN,
            Route::Ipv4 | Route::Push | Route::Pop | Route::VxlanEncap => GEN_SHORT_TEMPLATE,
        }
    }

    /// The (inner) destination address of flow `flow` of `flows` with `routes` routes: with
    /// one, the path's own (the sink for IPv4 out, a host of the remote PE's or VTEP's prefix
    /// for a push or an encap); with more, host [`ROUTE_HOST`] of the flow's route
    /// ([`flow_prefix`]).
    fn destination(self, flow: u16, flows: u16, routes: u32) -> Ipv4Addr {
        if routes > 1 {
            let prefix = route_prefix(flow_prefix(flow, flows, routes));
            return Ipv4Addr::from(u32::from(prefix) + ROUTE_HOST);
        }
        match self.route() {
            Route::Ipv4 | Route::Pop | Route::VxlanDecap => SINK_DST,
            Route::Push | Route::VxlanEncap => REMOTE_DST,
        }
    }

    /// One frame per flow, as the generator sends them to the DUT's ingress veth: IPv4
    /// frames of `size` bytes (4 more under a label, 50 more in VXLAN). The flows differ in
    /// the UDP source port and, with `routes` over 1, in the (inner) destination address
    /// ([`PathKind::destination`]), each with its own IPv4 checksum.
    fn frames(self, flows: u16, size: usize, routes: u32) -> Vec<Vec<u8>> {
        let payload = size - UDP_HEADERS;
        (0..flows)
            .map(|flow| {
                let sport = FIRST_PORT + flow;
                let dst = self.destination(flow, flows, routes);
                match self.route() {
                    Route::Ipv4 | Route::Push | Route::VxlanEncap => {
                        udp_frame(DUT_IN_MAC, GEN_MAC, CUSTOMER_SRC, dst, sport, payload)
                    }
                    Route::Pop => {
                        let inner = udp_frame(DUT_IN_MAC, GEN_MAC, REMOTE_DST, dst, sport, payload);
                        mpls_frame(DUT_IN_MAC, GEN_MAC, POP_LABEL, 64, &inner[14..])
                    }
                    Route::VxlanDecap => {
                        let inner = udp_frame(
                            DUT_ROUTER_MAC,
                            REMOTE_ROUTER_MAC,
                            REMOTE_DST,
                            dst,
                            sport,
                            payload,
                        );
                        vxlan_frame(DUT_IN_MAC, GEN_MAC, REMOTE_VTEP, DUT_VTEP, VNI, &inner)
                    }
                }
            })
            .collect()
    }

    /// The dataplane's config for this path (docs/config.md); `None` for the baselines. The
    /// tier is chosen by `express` under `[router]`, written only when the dataplane knows
    /// the key (`has_express`; one that does not refuses it, and has only the AF_XDP tier).
    /// With `routes` over 1, VRF red holds that many /24s ([`route_prefix`]): toward the sink
    /// (VRF forward, MPLS pop, VXLAN decap: the routes' next hop is the sink neighbour), VPN
    /// routes to the remote PE with a label each (MPLS push: [`PUSH_LABEL`] + the route's
    /// index), or EVPN type-5 routes to the remote VTEP (VXLAN encap); in place of the single
    /// remote prefix for a push or an encap, beside the connected subnets otherwise.
    fn carrier_config(self, has_express: bool, routes: u32) -> Option<String> {
        let express = match self.tier() {
            Tier::Baseline => return None,
            _ if !has_express => "",
            Tier::AfXdp => "express = false\n",
            Tier::Express => "express = true\n",
        };
        // The VXLAN paths' VTEP, and the router MAC that is the inner source of an encap.
        let vtep = if self.is_vxlan() {
            format!("vtep = \"{DUT_VTEP}\"\nrouter_mac = \"{DUT_ROUTER_MAC}\"\n")
        } else {
            String::new()
        };
        let head = format!("# written by carrier-e2e\n[router]\nrouter_id = \"10.255.0.1\"\n{vtep}{express}\n[[vrf]]\nname = \"red\"\n");
        let customer_in = port(DUT_IN, DUT_IN_MAC, "10.1.0.1/24", "vrf = \"red\"")
            + &neighbour(DUT_IN, &CUSTOMER_SRC.to_string(), GEN_MAC);
        let customer_out = port(DUT_OUT, DUT_OUT_MAC, "10.3.0.1/24", "vrf = \"red\"")
            + &neighbour(DUT_OUT, &SINK_DST.to_string(), SINK_MAC);
        // The core port toward the sink (push, encap) or from the generator (pop, decap).
        let core_out = port(DUT_OUT, DUT_OUT_MAC, CORE_DUT, "core = true")
            + &neighbour(DUT_OUT, &CORE_PEER.to_string(), SINK_MAC);
        let core_in = port(DUT_IN, DUT_IN_MAC, CORE_DUT, "core = true")
            + &neighbour(DUT_IN, &CORE_PEER.to_string(), GEN_MAC);
        // The remote PE / VTEP, behind the sink.
        let underlay =
            format!("\n[[route]]\nprefix = \"{REMOTE_VTEP}/32\"\nvia = \"{CORE_PEER}\"\n");
        // The path's VRF routes: `--routes` of them, or the single remote prefix of a push or
        // an encap (the other paths' single destination is in a connected subnet).
        let to_sink = vrf_routes(routes, |_| format!("via = \"{SINK_DST}\""));
        let push = |index: u32| {
            format!(
                "mpls = {{ labels = [{}], pe = \"{REMOTE_VTEP}\" }}",
                PUSH_LABEL + index
            )
        };
        let encap = |_: u32| {
            format!("vxlan = {{ vtep = \"{REMOTE_VTEP}\", vni = {VNI}, router_mac = \"{REMOTE_ROUTER_MAC}\" }}")
        };
        let remote = |target: &dyn Fn(u32) -> String| {
            if routes > 1 {
                vrf_routes(routes, target)
            } else {
                format!(
                    "\n[[route]]\nvrf = \"red\"\nprefix = \"10.2.0.0/24\"\n{}\n",
                    target(0)
                )
            }
        };
        let config = match self.route() {
            Route::Ipv4 => format!("{head}{customer_in}{customer_out}{to_sink}"),
            Route::Push => format!("{head}{customer_in}{core_out}{underlay}{}", remote(&push)),
            Route::Pop => {
                format!(
                    r#"{head}{core_in}{customer_out}
[[label]]
label = {POP_LABEL}
action = "lookup"
vrf = "red"
{to_sink}"#
                )
            }
            Route::VxlanEncap => {
                format!("{head}{customer_in}{core_out}{underlay}{}", remote(&encap))
            }
            Route::VxlanDecap => {
                format!(
                    r#"{head}{core_in}{customer_out}
[[vni]]
vni = {VNI}
vrf = "red"
{to_sink}"#
                )
            }
        };
        Some(config)
    }
}

/// Whether `dataplane` knows `express` under `[router]`: its `check-config` accepts the VRF
/// forward config with `express = false`. It must accept the config without the key, or
/// something else is wrong.
fn dataplane_has_express(dataplane: &Path, scratch: &Scratch) -> Result<bool> {
    let check = |has_express: bool| -> Result<std::result::Result<(), String>> {
        let config = PathKind::VrfForward
            .carrier_config(has_express, 1)
            .context("the VRF forward path has a config")?;
        let file = scratch.dir.join("express-probe.toml");
        std::fs::write(&file, config).with_context(|| format!("writing {}", file.display()))?;
        let output = Command::new(dataplane)
            .args(["check-config", "--config"])
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} check-config", dataplane.display()))?;
        Ok(if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        })
    };
    if check(true)?.is_ok() {
        return Ok(true);
    }
    match check(false)? {
        Ok(()) => Ok(false),
        Err(stderr) => bail!(
            "{} check-config refuses the VRF forward config: {stderr}",
            dataplane.display()
        ),
    }
}

/// A `[[port]]` section; `role` is its `vrf = ..` or `core = true` line.
fn port(name: &str, mac: &str, address: &str, role: &str) -> String {
    format!("\n[[port]]\nname = \"{name}\"\nmac = \"{mac}\"\naddresses = [\"{address}\"]\n{role}\n")
}

/// A static `[[neighbour]]` section.
fn neighbour(port: &str, ip: &str, mac: &str) -> String {
    format!("\n[[neighbour]]\nport = \"{port}\"\nip = \"{ip}\"\nmac = \"{mac}\"\n")
}

// --- namespaces and the topology ----------------------------------------------------------

/// Runs a command; fails unless it exits 0, with its stderr. Returns stdout.
fn sh(args: &[&str]) -> Result<String> {
    let (program, rest) = args.split_first().context("an empty command")?;
    let output = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A network namespace named `{prefix}{pid}`, deleted on drop (with the veths in it).
#[derive(Debug)]
struct NetNs {
    name: String,
}

impl NetNs {
    fn new(prefix: &str) -> Result<NetNs> {
        let name = format!("{prefix}{}", std::process::id());
        sh(&["ip", "netns", "add", &name])?;
        let ns = NetNs { name };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        // New namespaces start with IPv6 on; its neighbour discovery would reach the sink.
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
        Ok(ns)
    }

    /// Runs a command inside the namespace (`ip netns exec`, which also mounts its /sys).
    fn run(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["ip", "netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        sh(&full)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ignored = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .output();
    }
}

/// gen ns —veth— DUT ns —veth— sink ns, with the kernel's forwarding state in the DUT ready
/// (addresses, a permanent neighbour) but `ip_forward` off.
#[derive(Debug)]
struct Topology {
    gen: NetNs,
    dut: NetNs,
    sink: NetNs,
    /// napi kthreads that existed before this topology: never ours to pin.
    foreign_napi: HashSet<i32>,
    gen_cpu: usize,
    dut_cpu: usize,
}

impl Topology {
    fn up(cli: &Cli) -> Result<Topology> {
        let foreign_napi = napi_threads("").into_iter().map(|(pid, _)| pid).collect();
        let net = Topology {
            gen: NetNs::new("e2gen")?,
            dut: NetNs::new("e2dut")?,
            sink: NetNs::new("e2snk")?,
            foreign_napi,
            gen_cpu: cli.gen_cpu,
            dut_cpu: cli.dut_cpu,
        };
        for (a_ns, a, a_mac, b_ns, b, b_mac) in [
            (&net.gen, GEN_IF, GEN_MAC, &net.dut, DUT_IN, DUT_IN_MAC),
            (&net.dut, DUT_OUT, DUT_OUT_MAC, &net.sink, SINK_IF, SINK_MAC),
        ] {
            sh(&[
                "ip", "link", "add", a, "netns", &a_ns.name, "address", a_mac, "type", "veth",
                "peer", "name", b, "netns", &b_ns.name, "address", b_mac,
            ])?;
            // TSO off on both ends: a veth hands frames to its peer's NAPI only then.
            // GRO on: the receiving end has a NAPI (so a pinnable kthread) even without XDP.
            // Both ends get their features before either comes up: a veth takes XDP frames
            // from `ndo_xdp_xmit` (an XDP redirect, the live generator's XDP_TX) only if its
            // peer wanted GRO (or had XDP) when the veth came up.
            for (ns, dev) in [(a_ns, a), (b_ns, b)] {
                ns.run(&[
                    "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "on",
                ])?;
            }
            for (ns, dev) in [(a_ns, a), (b_ns, b)] {
                ns.run(&["ip", "link", "set", dev, "up"])?;
            }
        }
        for (ns, dev) in [(&net.dut, DUT_IN), (&net.sink, SINK_IF)] {
            ns.run(&[
                "sh",
                "-c",
                &format!("echo 1 > /sys/class/net/{dev}/threaded"),
            ])?;
        }
        let dut = &net.dut;
        dut.run(&["ip", "addr", "add", "10.1.0.1/24", "dev", DUT_IN])?;
        dut.run(&["ip", "addr", "add", "10.3.0.1/24", "dev", DUT_OUT])?;
        dut.run(&[
            "ip",
            "neigh",
            "replace",
            &SINK_DST.to_string(),
            "lladdr",
            SINK_MAC,
            "dev",
            DUT_OUT,
            "nud",
            "permanent",
        ])?;
        dut.run(&[
            "ip",
            "neigh",
            "replace",
            &CUSTOMER_SRC.to_string(),
            "lladdr",
            GEN_MAC,
            "dev",
            DUT_IN,
            "nud",
            "permanent",
        ])?;
        dut.run(&["sysctl", "-qw", "net.ipv4.ip_forward=0"])?;
        net.pin_napi()?;
        Ok(net)
    }

    /// Pins the DUT ingress NAPI to the DUT CPU and the sink's to the generator CPU. Called
    /// before every run: attaching XDP may give an interface a new NAPI (a new kthread).
    /// Returns the kthreads: (DUT ingress, sink).
    fn pin_napi(&self) -> Result<(Vec<i32>, Vec<i32>)> {
        let (mut dut, mut sink) = (vec![], vec![]);
        for (dev, cpu) in [(DUT_IN, self.dut_cpu), (SINK_IF, self.gen_cpu)] {
            let threads: Vec<i32> = napi_threads(dev)
                .into_iter()
                .map(|(pid, _)| pid)
                .filter(|pid| !self.foreign_napi.contains(pid))
                .collect();
            ensure!(
                !threads.is_empty(),
                "no threaded NAPI kthread for {dev} (is `threaded` supported here?)"
            );
            for &pid in &threads {
                set_affinity(pid, cpu)
                    .with_context(|| format!("pinning napi kthread {pid} of {dev}"))?;
                if dev == SINK_IF {
                    // The sink must never be the bottleneck: its NAPI preempts the generator
                    // (and anything else) on the generator CPU. XDP_DROP keeps it cheap.
                    set_fifo(pid).with_context(|| format!("SCHED_FIFO for napi kthread {pid}"))?;
                }
            }
            if dev == DUT_IN {
                dut = threads;
            } else {
                sink = threads;
            }
        }
        Ok((dut, sink))
    }

    /// `tx_dropped` of the generator's veth (frames the DUT's full receive ring refused) and
    /// of the DUT's egress veth (frames the sink's full receive ring refused).
    fn ring_drops(&self) -> (u64, u64) {
        let read = |ns: &NetNs, dev: &str| {
            ns.run(&[
                "cat",
                &format!("/sys/class/net/{dev}/statistics/tx_dropped"),
            ])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
        };
        (read(&self.gen, GEN_IF), read(&self.dut, DUT_OUT))
    }
}

/// Threaded-NAPI kthreads (`napi/<dev>-<id>`) whose name starts with `napi/{dev}`:
/// (pid, name). With an empty `dev`, all of them.
fn napi_threads(dev: &str) -> Vec<(i32, String)> {
    let prefix = if dev.is_empty() {
        "napi/".to_owned()
    } else {
        format!("napi/{dev}-")
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let comm = comm.trim();
            comm.starts_with(&prefix).then(|| (pid, comm.to_owned()))
        })
        .collect()
}

// --- the sink -----------------------------------------------------------------------------

// --- generators ---------------------------------------------------------------------------

/// A generator thread in the gen namespace, pinned to the generator CPU, sending as fast as
/// it can until stopped. `sent` counts frames the kernel took (completions for AF_XDP,
/// `sendmmsg`'s count for AF_PACKET), including those the DUT's full ring then dropped.
struct Generator {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<()>>>,
    /// How the sender is set up, from [`Sender::note`].
    note: String,
    /// The thread's id, for its CPU time.
    tid: Arc<AtomicI32>,
}

impl Generator {
    fn start(
        net: &Topology,
        kind: GenKind,
        frames: Vec<Vec<u8>>,
        rate: Option<f64>,
        batch: u32,
        limit: Duration,
        live: Option<OwnedFd>,
    ) -> Result<Generator> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let tid = Arc::new(AtomicI32::new(0));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String>>();
        let ns = format!("/var/run/netns/{}", net.gen.name);
        let cpu = net.gen_cpu;
        let (stop2, sent2, tid2) = (stop.clone(), sent.clone(), tid.clone());
        let thread = std::thread::Builder::new()
            .name("generator".into())
            .spawn(move || {
                let deadline = Instant::now() + limit;
                tid2.store(gettid(), Ordering::Relaxed);
                let setup = setns(&ns).and_then(|()| pin_thread(cpu));
                let sender: Result<Box<dyn Sender>> = setup.and_then(|()| match kind {
                    GenKind::Live => {
                        let program = live.context("no carrier_gen for the live generator")?;
                        LiveSender::open(GEN_IF, &frames[0], program, batch)
                            .map(|s| Box::new(s) as Box<dyn Sender>)
                    }
                    GenKind::Xsk => XskSender::open(GEN_IF, &frames, batch)
                        .map(|s| Box::new(s) as Box<dyn Sender>),
                    GenKind::Packet => PacketSender::open(GEN_IF, &frames, batch)
                        .map(|s| Box::new(s) as Box<dyn Sender>),
                });
                let mut sender = match sender {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(s.note()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("{e:#}")));
                        return Err(e);
                    }
                };
                let mut rounds = 0u32;
                let start = Instant::now();
                while !stop2.load(Ordering::Relaxed) {
                    // Paced: what is due by now, at most a ring's worth at once.
                    let max = rate.map_or(u32::MAX, |mpps| {
                        let due = (start.elapsed().as_secs_f64() * mpps * 1e6) as u64;
                        due.saturating_sub(sender.submitted())
                            .min(u64::from(GEN_RING)) as u32
                    });
                    let n = sender.send_some(max);
                    if n > 0 {
                        sent2.fetch_add(n, Ordering::Relaxed);
                    }
                    if let Some(e) = sender.take_error() {
                        return Err(e);
                    }
                    rounds = rounds.wrapping_add(1);
                    if rounds & 1023 == 0 && Instant::now() > deadline {
                        break;
                    }
                }
                Ok(())
            })
            .context("spawning the generator thread")?;
        let mut generator = Generator {
            stop,
            sent,
            tid,
            thread: Some(thread),
            note: String::new(),
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(note)) => {
                generator.note = note;
                Ok(generator)
            }
            Ok(Err(e)) => {
                generator.finish();
                Err(e.context(format!("starting the {} generator", kind.name())))
            }
            Err(_) => Err(anyhow!("the generator did not come up in 10 s")),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The generator thread's id (0 until it runs).
    fn tid(&self) -> i32 {
        self.tid.load(Ordering::Relaxed)
    }

    /// Stops the thread and waits for it. A thread inside a long system call (the live
    /// generator's `BPF_PROG_TEST_RUN`) is interrupted with [`WAKE_SIGNAL`].
    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let tid = self.tid();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !thread.is_finished() && tid > 0 && Instant::now() < deadline {
                // SAFETY: tgkill to a thread of this process (it has not been joined, so its
                // id is not reused); WAKE_SIGNAL's handler does nothing.
                unsafe {
                    libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, WAKE_SIGNAL);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("carrier-e2e: generator: {e:#}"),
                Err(_) => eprintln!("carrier-e2e: the generator thread panicked"),
            }
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The signal that interrupts the generator thread's system call when it is stopped.
const WAKE_SIGNAL: libc::c_int = libc::SIGUSR1;

extern "C" fn on_wake_signal(_signal: libc::c_int) {}

/// Makes [`WAKE_SIGNAL`] interrupt a system call (no `SA_RESTART`) and do nothing else.
fn install_wake_handler() -> Result<()> {
    // SAFETY: sigaction is plain old data; zero is a valid value (empty mask, no flags).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_wake_signal as *const () as libc::sighandler_t;
    // SAFETY: `action` is a valid sigaction whose handler is async-signal-safe (it does
    // nothing).
    let rc = unsafe { libc::sigaction(WAKE_SIGNAL, &action, std::ptr::null_mut()) };
    ensure!(rc == 0, "sigaction: {}", std::io::Error::last_os_error());
    Ok(())
}

/// One way of sending frames.
trait Sender {
    /// Sends a batch of at most `max` new frames; returns how many frames the kernel took
    /// (for AF_XDP: completions, which may be of earlier batches).
    fn send_some(&mut self, max: u32) -> u64;
    /// Frames handed to the kernel so far (for pacing).
    fn submitted(&self) -> u64;
    /// How it is set up, for the report.
    fn note(&self) -> String;
    /// An error that stops the generator, once.
    fn take_error(&mut self) -> Option<anyhow::Error> {
        None
    }
}

/// Bytes per UMEM chunk of the AF_XDP generator, and chunks (more than may be in flight).
const GEN_CHUNK: u32 = 2048;
const GEN_CHUNKS: u32 = 4096;
/// TX and completion ring size of the AF_XDP generator.
const GEN_RING: u32 = 2048;
/// `XDP_MAX_TX_SKB_BUDGET` (include/uapi/linux/if_xdp.h, Linux 6.17): frames one `sendto`
/// may send in copy mode (default 32). Older kernels refuse it; then the default stays.
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
/// Frames one copy-mode `sendto` sends without that option (`TX_BATCH_SIZE`).
const XDP_TX_BATCH_DEFAULT: u32 = 32;
/// Send buffer of the generator sockets: copy-mode AF_XDP and AF_PACKET skbs are charged to
/// it until freed, which for veth is far away (at the DUT or the sink).
const GEN_SNDBUF: libc::c_int = 64 << 20;

/// An anonymous mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Result<Mapping> {
        // SAFETY: a fresh anonymous private mapping; nothing else refers to that memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!("mmap {len} bytes: {}", std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).context("mmap returned null")?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range mmap returned; the UMEM using it is dropped first (field
        // order of `XskSender`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// AF_XDP copy-mode TX: every chunk of the UMEM holds one pre-built frame (flows in turn),
/// descriptors cycle through the chunks, completions free ring room.
struct XskSender {
    device: xdpilone::DeviceQueue,
    tx: xdpilone::RingTx,
    _user: xdpilone::User,
    _umem: xdpilone::Umem,
    _area: Mapping,
    lens: Vec<u32>,
    next: u32,
    in_flight: u32,
    /// Descriptors put on the TX ring so far.
    submitted: u64,
    /// Frames one sendto may send.
    budget: u32,
}

impl XskSender {
    fn open(ifname: &str, frames: &[Vec<u8>], batch: u32) -> Result<XskSender> {
        let len = (GEN_CHUNK * GEN_CHUNKS) as usize;
        let area = Mapping::new(len)?;
        let mut lens = Vec::with_capacity(GEN_CHUNKS as usize);
        for chunk in 0..GEN_CHUNKS as usize {
            let frame = &frames[chunk % frames.len()];
            ensure!(
                frame.len() <= GEN_CHUNK as usize,
                "frame longer than a chunk"
            );
            // SAFETY: the chunk lies inside the mapping (chunk < GEN_CHUNKS), nothing else
            // uses the mapping yet, and the frame fits in the chunk (checked above).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    frame.as_ptr(),
                    area.ptr.as_ptr().add(chunk * GEN_CHUNK as usize),
                    frame.len(),
                );
            }
            lens.push(frame.len() as u32);
        }
        let config = xdpilone::UmemConfig {
            fill_size: GEN_RING,
            complete_size: GEN_RING,
            frame_size: GEN_CHUNK,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the mapping is page-aligned, outlives the UMEM (`_area` is the last field),
        // and the kernel only reads it (TX); we never write it again.
        let umem =
            unsafe { xdpilone::Umem::new(config, NonNull::slice_from_raw_parts(area.ptr, len)) }
                .map_err(|e| errno("UMEM registration", e))?;
        let name = CString::new(ifname)?;
        let mut info = xdpilone::IfInfo::invalid();
        info.from_name(&name)
            .map_err(|e| errno("interface lookup", e))?;
        info.set_queue(0);
        let socket = xdpilone::Socket::with_shared(&info, &umem).map_err(|e| errno("socket", e))?;
        let device = umem
            .fq_cq(&socket)
            .map_err(|e| errno("fill/completion rings", e))?;
        let user = umem
            .rx_tx(
                &socket,
                &xdpilone::SocketConfig {
                    rx_size: None,
                    tx_size: NonZeroU32::new(GEN_RING),
                    bind_flags: xdpilone::SocketConfig::XDP_BIND_COPY
                        | xdpilone::SocketConfig::XDP_BIND_NEED_WAKEUP,
                },
            )
            .map_err(|e| errno("tx ring", e))?;
        let tx = user.map_tx().map_err(|e| errno("tx ring mmap", e))?;
        umem.bind(&user).map_err(|e| errno("bind", e))?;
        let fd = user.as_raw_fd();
        let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, GEN_SNDBUF);
        // Frames one sendto sends: the kernel's default is 32; more needs the socket option
        // (best effort: older kernels keep 32).
        let budget = batch.clamp(XDP_TX_BATCH_DEFAULT, GEN_RING);
        let budget = if budget == XDP_TX_BATCH_DEFAULT {
            budget
        } else {
            match setsockopt(
                fd,
                libc::SOL_XDP,
                XDP_MAX_TX_SKB_BUDGET,
                budget as libc::c_int,
            ) {
                Ok(()) => budget,
                Err(_) => XDP_TX_BATCH_DEFAULT,
            }
        };
        Ok(XskSender {
            device,
            tx,
            _user: user,
            _umem: umem,
            _area: area,
            lens,
            next: 0,
            in_flight: 0,
            submitted: 0,
            budget,
        })
    }
}

impl Sender for XskSender {
    fn send_some(&mut self, max: u32) -> u64 {
        let mut done = 0u32;
        {
            let mut complete = self.device.complete(GEN_RING);
            while complete.read().is_some() {
                done += 1;
            }
            complete.release();
        }
        self.in_flight -= done;
        // Batches of at least 64 unless paced below that.
        let want = (GEN_RING - self.in_flight).min(max);
        if want > 0 && (want >= 64 || want == max) {
            let (next, lens) = (self.next, &self.lens);
            let mut writer = self.tx.transmit(want);
            let put = writer.insert((0..want).map(|i| {
                let chunk = (next + i) % GEN_CHUNKS;
                xdpilone::xdp::XdpDesc {
                    addr: u64::from(chunk * GEN_CHUNK),
                    len: lens[chunk as usize],
                    options: 0,
                }
            }));
            writer.commit();
            drop(writer);
            self.next = (self.next + put) % GEN_CHUNKS;
            self.in_flight += put;
            self.submitted += u64::from(put);
        }
        // Copy mode sends only from within sendto.
        self.tx.wake();
        u64::from(done)
    }

    fn submitted(&self) -> u64 {
        self.submitted
    }

    fn note(&self) -> String {
        format!(
            "{GEN_CHUNKS}-chunk UMEM, {GEN_RING}-entry TX ring, up to {} frames per sendto",
            self.budget
        )
    }
}

/// AF_PACKET raw socket bound to the interface, bypassing the qdisc, sending every flow's
/// frame with one `sendmmsg` per batch.
struct PacketSender {
    fd: OwnedFd,
    /// The frames, kept alive for `messages` to point into.
    _frames: Vec<Vec<u8>>,
    _iovecs: Vec<libc::iovec>,
    messages: Vec<libc::mmsghdr>,
    next: usize,
    /// Frames sent so far.
    submitted: u64,
    /// Messages per sendmmsg.
    batch: usize,
}

/// Most messages one `sendmmsg` takes (UIO_MAXIOV).
const UIO_MAXIOV: usize = 1024;

impl PacketSender {
    fn open(ifname: &str, frames: &[Vec<u8>], batch: u32) -> Result<PacketSender> {
        let batch = (batch as usize).clamp(1, UIO_MAXIOV);
        // SAFETY: plain socket(2); the returned fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a new fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            1,
        )
        .context("PACKET_QDISC_BYPASS")?;
        let _ = setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            GEN_SNDBUF,
        );
        let name = CString::new(ifname)?;
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        ensure!(ifindex != 0, "no interface {ifname}");
        // SAFETY: sockaddr_ll is plain old data; zero is a valid value for every field.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // Protocol 0: the socket sends on the interface and receives nothing.
        // SAFETY: `addr` is a valid sockaddr_ll and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        ensure!(
            rc == 0,
            "bind AF_PACKET to {ifname}: {}",
            std::io::Error::last_os_error()
        );
        // At least a batch of messages, cycling through the flows.
        let count = frames.len().max(batch);
        let frames: Vec<Vec<u8>> = (0..count)
            .map(|i| frames[i % frames.len()].clone())
            .collect();
        let mut iovecs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr().cast_mut().cast(),
                iov_len: f.len(),
            })
            .collect();
        let messages = iovecs
            .iter_mut()
            .map(|iov| {
                // SAFETY: msghdr is plain old data; zero is valid (no name, no control data).
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_iov = std::ptr::from_mut(iov);
                hdr.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: hdr,
                    msg_len: 0,
                }
            })
            .collect();
        Ok(PacketSender {
            fd,
            _frames: frames,
            _iovecs: iovecs,
            messages,
            next: 0,
            submitted: 0,
            batch,
        })
    }
}

impl Sender for PacketSender {
    fn send_some(&mut self, max: u32) -> u64 {
        let n = self
            .batch
            .min(self.messages.len() - self.next)
            .min(max as usize);
        if n == 0 {
            std::hint::spin_loop();
            return 0;
        }
        // SAFETY: `messages[next..next + n]` are initialised mmsghdrs whose iovecs point into
        // `_frames`, which lives as long as `self`; the kernel only reads the frames.
        let sent = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                self.messages.as_mut_ptr().add(self.next),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if sent <= 0 {
            std::hint::spin_loop();
            return 0;
        }
        self.next = (self.next + sent as usize) % self.messages.len();
        self.submitted += sent as u64;
        sent as u64
    }

    fn submitted(&self) -> u64 {
        self.submitted
    }

    fn note(&self) -> String {
        format!("{} frames per sendmmsg", self.batch)
    }
}

// --- the live-frames generator ------------------------------------------------------------

/// Most frames per batch in live-frames mode (`TEST_XDP_MAX_BATCH`, net/bpf/test_run.c).
const LIVE_MAX_BATCH: u32 = 256;
/// Program runs per `BPF_PROG_TEST_RUN` call (several seconds here): each call sets up and
/// tears down a page pool, which here costs around 20 ms (the CPU idles meanwhile), so calls
/// must be long. The harness stops the generator by interrupting the call ([`WAKE_SIGNAL`]);
/// the bound keeps a call from running for minutes if that fails.
const LIVE_REPEAT: u32 = 1 << 26;
/// The generator's program and maps in the eBPF object (`ebpf/src/gen.rs`).
const GEN_PROGRAM: &str = "carrier_gen";
const GEN_CONFIG: &str = "GEN_CONFIG";
const GEN_FRAMES: &str = "GEN_FRAMES";
const GEN_TEMPLATE: &str = "GEN_TEMPLATE";
/// Bytes of `GEN_TEMPLATE` (`ebpf/src/gen.rs`: `TEMPLATE_LEN`): the most the program writes
/// back into every frame, enough for the headers of a VXLAN frame and its inner frame.
const GEN_TEMPLATE_LEN: usize = 96;
/// Template bytes written back by default (`ebpf/src/gen.rs`: `SHORT_TEMPLATE`): Ethernet, a
/// label, IPv4, UDP.
const GEN_SHORT_TEMPLATE: usize = 48;
/// `GEN_CONFIG` indexes (`ebpf/src/gen.rs`: `CONFIG_*`).
const GEN_CONFIG_SPORT_OFFSET: u32 = 0;
const GEN_CONFIG_FLOWS: u32 = 1;
const GEN_CONFIG_FIRST_PORT: u32 = 2;
const GEN_CONFIG_INTERVAL: u32 = 3;
const GEN_CONFIG_TEMPLATE_LEN: u32 = 4;
const GEN_CONFIG_TEMPLATES: u32 = 5;
/// UDP source port of the first flow (the rest follow it).
const FIRST_PORT: u16 = 1024;

/// `carrier_gen` loaded (not attached), with its maps: the harness sets what it sends before
/// each run and reads how many frames it sent.
struct LiveGen {
    ebpf: Ebpf,
    /// Entries of its `GEN_TEMPLATE`: 1, or one per flow.
    templates: u32,
}

impl std::fmt::Debug for LiveGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveGen")
    }
}

impl LiveGen {
    /// Loads the program with room for `templates` templates (`GEN_TEMPLATE`'s entries: 1, or
    /// one per flow when the flows differ in more than the UDP source port).
    fn load(object: &Path, templates: u32) -> Result<LiveGen> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(GEN_TEMPLATE, templates.max(1))
            .load_file(object)
            .with_context(|| format!("loading {}", object.display()))?;
        let program: &mut Xdp = ebpf
            .program_mut(GEN_PROGRAM)
            .with_context(|| {
                format!(
                    "{} has no {GEN_PROGRAM}: rebuild with `cargo xtask build --release`",
                    object.display()
                )
            })?
            .try_into()
            .context("carrier_gen is not an XDP program")?;
        program.load().context("loading carrier_gen")?;
        Ok(LiveGen {
            ebpf,
            templates: templates.max(1),
        })
    }

    /// Sets what it sends: each of `frames`' first `template_len` bytes ([`GEN_SHORT_TEMPLATE`]
    /// or [`GEN_TEMPLATE_LEN`]: its headers) as a template (one for every flow, or one per
    /// flow: flow `f` gets `frames[f]`), and `flows` UDP source ports from [`FIRST_PORT`]
    /// written at `sport_offset`; and how fast: as fast as it goes, or `rate` Mpps.
    fn configure(
        &mut self,
        frames: &[Vec<u8>],
        template_len: usize,
        sport_offset: u32,
        flows: u16,
        rate: Option<f64>,
    ) -> Result<()> {
        ensure!(
            template_len == GEN_SHORT_TEMPLATE || template_len == GEN_TEMPLATE_LEN,
            "the generator writes back {GEN_SHORT_TEMPLATE} or {GEN_TEMPLATE_LEN} bytes, not {template_len}"
        );
        ensure!(
            frames.len() == 1 || frames.len() == usize::from(flows),
            "one template, or one per flow"
        );
        ensure!(
            frames.len() <= self.templates as usize,
            "carrier_gen was loaded with room for {} templates, not {}",
            self.templates,
            frames.len()
        );
        ensure!(
            frames.iter().all(|frame| frame.len() >= template_len),
            "frame shorter than the generator's template"
        );
        ensure!(
            sport_offset as usize + 2 <= template_len,
            "the source port lies past the generator's template"
        );
        {
            let mut templates = Array::<&mut MapData, [u8; GEN_TEMPLATE_LEN]>::try_from(
                self.ebpf
                    .map_mut(GEN_TEMPLATE)
                    .context("the object has no GEN_TEMPLATE")?,
            )?;
            for (index, frame) in frames.iter().enumerate() {
                // Zero-padded past what is written back.
                let mut template = [0u8; GEN_TEMPLATE_LEN];
                let head = frame.len().min(GEN_TEMPLATE_LEN);
                template[..head].copy_from_slice(&frame[..head]);
                templates
                    .set(index as u32, template, 0)
                    .context("writing GEN_TEMPLATE")?;
            }
        }
        let mut config = Array::<&mut MapData, u64>::try_from(
            self.ebpf
                .map_mut(GEN_CONFIG)
                .context("the object has no GEN_CONFIG")?,
        )?;
        // The time between frames in 1/16 ns (the program's unit): 1e3 / rate ns.
        let interval = rate.map_or(0, |mpps| (16e3 / mpps).round() as u64);
        for (index, value) in [
            (GEN_CONFIG_SPORT_OFFSET, u64::from(sport_offset)),
            (GEN_CONFIG_FLOWS, u64::from(flows)),
            (GEN_CONFIG_FIRST_PORT, u64::from(FIRST_PORT)),
            (GEN_CONFIG_INTERVAL, interval),
            (GEN_CONFIG_TEMPLATE_LEN, template_len as u64),
            (GEN_CONFIG_TEMPLATES, frames.len() as u64),
        ] {
            config.set(index, value, 0).context("writing GEN_CONFIG")?;
        }
        Ok(())
    }

    /// A descriptor of the loaded program for the generator thread.
    fn program_fd(&self) -> Result<OwnedFd> {
        let program: &Xdp = self
            .ebpf
            .program(GEN_PROGRAM)
            .context("no carrier_gen")?
            .try_into()
            .context("carrier_gen is not an XDP program")?;
        let fd = program.fd().context("carrier_gen is not loaded")?;
        fd.as_fd()
            .try_clone_to_owned()
            .context("duplicating carrier_gen's descriptor")
    }

    /// Frames the program has sent so far, on all CPUs.
    fn frames(&self) -> Result<u64> {
        let map = self
            .ebpf
            .map(GEN_FRAMES)
            .context("the object has no GEN_FRAMES")?;
        let frames: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).context("GEN_FRAMES")?;
        Ok(frames
            .get(&0, 0)
            .context("reading GEN_FRAMES")?
            .iter()
            .sum())
    }
}

/// `BPF_PROG_TEST_RUN` of `carrier_gen` in live-frames mode with the generator's veth as the
/// ingress interface: each call runs the program `repeat` times over one frame, and the
/// program's `XDP_TX` sends each copy out of the veth, to the DUT's receive ring.
struct LiveSender {
    program: OwnedFd,
    frame: Vec<u8>,
    ctx: XdpMd,
    /// Frames per batch inside the kernel.
    batch: u32,
    /// Frames handed to the kernel so far.
    submitted: u64,
    /// A failed call, reported once by [`Sender::take_error`].
    error: Option<anyhow::Error>,
}

impl LiveSender {
    fn open(ifname: &str, frame: &[u8], program: OwnedFd, batch: u32) -> Result<LiveSender> {
        let name = CString::new(ifname)?;
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        ensure!(ifindex != 0, "no interface {ifname}");
        let mut sender = LiveSender {
            program,
            frame: frame.to_vec(),
            ctx: XdpMd {
                data_end: u32::try_from(frame.len())?,
                ingress_ifindex: ifindex,
                ..XdpMd::default()
            },
            batch: batch.clamp(1, LIVE_MAX_BATCH),
            submitted: 0,
            error: None,
        };
        // One frame, to fail here (old kernel, wrong layout) rather than in the loop.
        sender
            .run(1)
            .context("BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (Linux 5.18 or later)")?;
        Ok(sender)
    }

    /// Sends `repeat` frames; returns when the kernel has run the program for all of them.
    fn run(&mut self, repeat: u32) -> std::io::Result<()> {
        let mut attr = BpfTestRun {
            prog_fd: self.program.as_raw_fd() as u32,
            data_size_in: self.frame.len() as u32,
            data_in: self.frame.as_ptr() as u64,
            repeat,
            ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
            ctx_in: std::ptr::from_ref(&self.ctx) as u64,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: self.batch,
            ..BpfTestRun::default()
        };
        // SAFETY: the frame and the context are live for the call; the kernel only reads
        // them (no `data_out` / `ctx_out` in live mode) and writes `retval` / `duration`.
        unsafe { bpf_prog_test_run(&mut attr) }?;
        Ok(())
    }
}

impl Sender for LiveSender {
    fn send_some(&mut self, max: u32) -> u64 {
        // Paced, the program drops what is not due yet (see `ebpf/src/gen.rs`); the count
        // returned is of program runs, the frames sent are in GEN_FRAMES.
        let repeat = max.min(LIVE_REPEAT);
        match self.run(repeat) {
            Ok(()) => {
                self.submitted += u64::from(repeat);
                u64::from(repeat)
            }
            // Interrupted: the harness is stopping the generator (or Ctrl-C). What was sent
            // is in GEN_FRAMES.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
            Err(e) => {
                self.error = Some(anyhow!("BPF_PROG_TEST_RUN: {e}"));
                0
            }
        }
    }

    fn submitted(&self) -> u64 {
        self.submitted
    }

    fn note(&self) -> String {
        format!(
            "`carrier_gen` returning XDP_TX (paced: XDP_DROP until a frame is due), batches of {}, {LIVE_REPEAT} runs per call",
            self.batch
        )
    }

    fn take_error(&mut self) -> Option<anyhow::Error> {
        self.error.take()
    }
}

fn setsockopt(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> Result<()> {
    // SAFETY: `value` is a live c_int and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    ensure!(
        rc == 0,
        "setsockopt({level}, {name}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

fn errno(what: &str, e: xdpilone::Errno) -> anyhow::Error {
    anyhow!(
        "AF_XDP {what}: {}",
        std::io::Error::from_raw_os_error(e.get_raw())
    )
}

// --- the device under test ----------------------------------------------------------------

/// The forwarder of one run; stopped when dropped.
#[derive(Debug)]
enum Dut<'a> {
    /// Linux forwarding (`ip_forward=1`), for the kernel VXLAN baselines its vxlan device and
    /// underlay, and with `--routes` its routes (dropped in this order: the vxlan device goes
    /// before its routes are flushed, taking those over it along).
    Kernel(
        &'a NetNs,
        #[expect(
            dead_code,
            reason = "held for its drop, which undoes Linux's VXLAN set-up"
        )]
        Option<KernelVxlan<'a>>,
        #[expect(dead_code, reason = "held for its drop, which flushes the routes")]
        Option<KernelRoutes<'a>>,
    ),
    AfxdpMin(AfxdpFwd),
    XdpMin(#[expect(dead_code, reason = "held for its drop, which detaches the program")] MinFwd),
    Carrier(Dataplane),
}

impl Dut<'_> {
    fn start<'a>(bench: &Bench<'a>, path: PathKind) -> Result<Dut<'a>> {
        let net = bench.net;
        match path.carrier_config(bench.has_express, bench.cli.routes) {
            None if path == PathKind::XdpMin => {
                Ok(Dut::XdpMin(MinFwd::attach(&net.dut, bench.object)?))
            }
            None if path == PathKind::AfxdpMin => Ok(Dut::AfxdpMin(AfxdpFwd::start(
                &net.dut,
                bench.object,
                bench.cli.dut_cpu,
            )?)),
            None => {
                let vxlan = KernelVxlan::up(&net.dut, path.route())?;
                let routes =
                    KernelRoutes::up(&net.dut, bench.scratch, path.route(), bench.cli.routes)?;
                net.dut.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
                Ok(Dut::Kernel(&net.dut, vxlan, routes))
            }
            Some(config) => Ok(Dut::Carrier(Dataplane::start(
                &net.dut,
                bench.scratch,
                bench.dataplane,
                path,
                &config,
                bench.cli.dut_cpu,
            )?)),
        }
    }
}

/// The AF_XDP minimal forwarder: a thread of the harness in the DUT namespace, pinned to the
/// DUT CPU, with carrier's own XDP steering (`carrier_xdp` on the ingress veth, native mode)
/// and AF_XDP I/O (`XskPorts`: one UMEM, copy mode, the same batches, fill and completion
/// handling and busy-poll option as `carrier-dataplane run`). Each frame gets the same rewrite
/// as in `carrier_minfwd` (the sink's and the egress veth's MACs, TTL minus one with an RFC 1624
/// checksum update) and goes out of the egress veth's socket: what carrier's AF_XDP tier costs
/// without its pipeline. Stopped, with the program detached, when dropped.
#[derive(Debug)]
struct AfxdpFwd {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<CarrierStats>>>,
    /// The thread's id, for its CPU time.
    tid: i32,
}

/// carrier's steering program and its maps in the eBPF object (`ebpf/src/main.rs`).
const CARRIER_PROGRAM: &str = "carrier_xdp";
const CARRIER_PORT_SLOTS: &str = carrier_common::xdp_maps::PORT_SLOTS;
const CARRIER_PORT_BY_IFINDEX: &str = carrier_common::xdp_maps::PORT_BY_IFINDEX;
const CARRIER_XSKS: &str = "XSKS";

impl AfxdpFwd {
    fn start(ns: &NetNs, object: &Path, cpu: usize) -> Result<AfxdpFwd> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<i32>>();
        let ns = format!("/var/run/netns/{}", ns.name);
        let object = object.to_path_buf();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("afxdp-min".into())
            .spawn(move || {
                let setup = setns(&ns)
                    .and_then(|()| pin_thread(cpu))
                    .and_then(|()| AfxdpFwd::open(&object));
                let (ebpf, mut xsk) = match setup {
                    Ok(opened) => {
                        let _ = ready_tx.send(Ok(gettid()));
                        opened
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("{e:#}")));
                        return Err(e);
                    }
                };
                let (received, forwarded) = AfxdpFwd::forward(&mut xsk, &stop2);
                let (socket_dropped, socket_ring_full) = xsk
                    .kernel_stats()
                    .into_iter()
                    .find(|(ifname, _, _)| ifname == DUT_IN)
                    .map_or((0, 0), |(_, dropped, ring_full)| (dropped, ring_full));
                let stats = CarrierStats {
                    received,
                    forwarded,
                    drops: vec![],
                    tx_ring_full: xsk.stats.tx_ring_full,
                    socket_dropped,
                    socket_ring_full,
                };
                // The sockets close before the program is detached.
                drop(xsk);
                drop(ebpf);
                Ok(stats)
            })
            .context("spawning the AF_XDP forwarder thread")?;
        let mut fwd = AfxdpFwd {
            stop,
            thread: Some(thread),
            tid: 0,
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(tid)) => {
                fwd.tid = tid;
                Ok(fwd)
            }
            Ok(Err(e)) => Err(e.context("starting the AF_XDP minimal forwarder")),
            Err(_) => Err(anyhow!(
                "the AF_XDP minimal forwarder did not come up in 10 s"
            )),
        }
    }

    /// In the DUT namespace: `carrier_xdp` on the ingress veth, steering to the ingress
    /// socket of an `XskPorts` over both veths.
    fn open(object: &Path) -> Result<(Ebpf, XskPorts)> {
        let mut ebpf =
            Ebpf::load_file(object).with_context(|| format!("loading {}", object.display()))?;
        let name = CString::new(DUT_IN)?;
        // SAFETY: a valid NUL-terminated name.
        let ingress = unsafe { libc::if_nametoindex(name.as_ptr()) };
        ensure!(ingress != 0, "no interface {DUT_IN}");
        // As `XdpDataplane::attach`: small ifindexes in the array, others in the hash.
        if ingress < carrier_common::SMALL_IFINDEX {
            aya::maps::Array::<&mut MapData, u32>::try_from(
                ebpf.map_mut(CARRIER_PORT_BY_IFINDEX)
                    .context("the object has no PORT_BY_IFINDEX")?,
            )?
            .set(ingress, u32::from(AFXDP_IN.0) + 1, 0)
            .context("writing PORT_BY_IFINDEX")?;
        } else {
            aya::maps::HashMap::<&mut MapData, u32, u32>::try_from(
                ebpf.map_mut(CARRIER_PORT_SLOTS)
                    .context("the object has no PORT_SLOTS")?,
            )?
            .insert(ingress, u32::from(AFXDP_IN.0), 0)
            .context("writing PORT_SLOTS")?;
        }
        let xsk = XskPorts::open(&[
            (AFXDP_IN, DUT_IN.to_owned()),
            (AFXDP_OUT, DUT_OUT.to_owned()),
        ])
        .context("opening the AF_XDP sockets")?;
        // As `carrier-dataplane run`: best effort.
        let _ = xsk.prefer_busy_poll();
        {
            let mut xsks = aya::maps::XskMap::try_from(
                ebpf.map_mut(CARRIER_XSKS)
                    .context("the object has no XSKS")?,
            )?;
            for (port, queue, fd) in xsk.sockets() {
                if port == AFXDP_IN {
                    let index = carrier_common::xsk_index(u32::from(port.0), queue)
                        .context("queue out of range")?;
                    xsks.set(index, fd, 0).context("writing XSKS")?;
                }
            }
        }
        let program: &mut Xdp = ebpf
            .program_mut(CARRIER_PROGRAM)
            .context("the object has no carrier_xdp")?
            .try_into()
            .context("carrier_xdp is not an XDP program")?;
        program.load().context("loading carrier_xdp")?;
        program
            .attach(DUT_IN, XdpMode::Driver)
            .context("attaching carrier_xdp in native mode")?;
        Ok((ebpf, xsk))
    }

    /// The worker loop of `carrier_dataplane::io::run_worker`, with the rewrite in place of
    /// the pipeline. Returns the frames received and those given to the egress socket.
    fn forward(xsk: &mut XskPorts, stop: &AtomicBool) -> (u64, u64) {
        let mac = |s: &str| s.parse::<carrier_dataplane::wire::MacAddr>().map(|m| m.0);
        let (Ok(dst), Ok(src)) = (mac(SINK_MAC), mac(DUT_OUT_MAC)) else {
            return (0, 0);
        };
        let (mut received, mut forwarded) = (0u64, 0u64);
        let mut batch = Batch::default();
        let mut counters = Counters::default();
        let mut idle_rounds = 0u32;
        while !stop.load(Ordering::Relaxed) {
            if xsk.receive(&mut batch, carrier_dataplane::io::BATCH) == 0 {
                idle_rounds += 1;
                if idle_rounds > 64 {
                    xsk.wait(Duration::from_millis(10));
                }
                continue;
            }
            idle_rounds = 0;
            received += batch.packets.len() as u64;
            for packet in &mut batch.packets {
                packet.verdict = if rewrite(packet.frame.data_mut(), &dst, &src) {
                    forwarded += 1;
                    Verdict::Forward(AFXDP_OUT)
                } else {
                    // Not ours to forward (no kernel path here): the chunk is recycled.
                    Verdict::Consumed
                };
            }
            xsk.transmit(&mut batch, &mut counters);
        }
        (received, forwarded)
    }

    /// Stops the thread; what it counted, if it ran.
    fn stop(&mut self) -> Option<CarrierStats> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take()?.join() {
            Ok(Ok(stats)) => Some(stats),
            Ok(Err(e)) => {
                eprintln!("carrier-e2e: AF_XDP minimal forwarder: {e:#}");
                None
            }
            Err(_) => {
                eprintln!("carrier-e2e: the AF_XDP minimal forwarder panicked");
                None
            }
        }
    }
}

/// `carrier_minfwd`'s rewrite of an IPv4 frame with a TTL above 1: `dst` and `src` MACs, TTL
/// minus one, checksum updated. False, and nothing changed, for any other frame.
fn rewrite(frame: &mut [u8], dst: &[u8; 6], src: &[u8; 6]) -> bool {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] || frame[22] <= 1 {
        return false;
    }
    frame[..6].copy_from_slice(dst);
    frame[6..12].copy_from_slice(src);
    let old = u16::from_be_bytes([frame[22], frame[23]]);
    frame[22] -= 1;
    let new = u16::from_be_bytes([frame[22], frame[23]]);
    let checksum = u16::from_be_bytes([frame[24], frame[25]]);
    frame[24..26].copy_from_slice(&checksum_update(checksum, old, new).to_be_bytes());
    true
}

/// The AF_XDP minimal forwarder's ports (as carrier numbers them: ingress first).
const AFXDP_IN: PortId = PortId(0);
const AFXDP_OUT: PortId = PortId(1);

/// An IPv4 header checksum after one 16-bit word changed from `old` to `new`: RFC 1624
/// equation 3, as in `ebpf/src/minfwd.rs`.
fn checksum_update(checksum: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

impl Drop for AfxdpFwd {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// `carrier_minfwd` attached in native mode to the DUT's ingress veth, redirecting to its
/// egress veth with the sink's MAC; detached when dropped.
struct MinFwd {
    _ebpf: Ebpf,
}

impl std::fmt::Debug for MinFwd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MinFwd")
    }
}

/// The minimal forwarder's program and maps in the eBPF object (`ebpf/src/minfwd.rs`).
const MINFWD_PROGRAM: &str = "carrier_minfwd";
const MINFWD_MACS: &str = "MINFWD_MACS";
const MINFWD_PORTS: &str = "MINFWD_PORTS";

impl MinFwd {
    fn attach(ns: &NetNs, object: &Path) -> Result<MinFwd> {
        let mut ebpf =
            Ebpf::load_file(object).with_context(|| format!("loading {}", object.display()))?;
        let mac = |s: &str| {
            s.parse::<carrier_dataplane::wire::MacAddr>()
                .map_err(|e| anyhow!("{e:?}"))
        };
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&mac(SINK_MAC)?.0);
        macs[6..].copy_from_slice(&mac(DUT_OUT_MAC)?.0);
        Array::<&mut MapData, [u8; 12]>::try_from(
            ebpf.map_mut(MINFWD_MACS)
                .context("the object has no MINFWD_MACS")?,
        )?
        .set(0, macs, 0)
        .context("writing MINFWD_MACS")?;
        // Interface names are looked up, the DEVMAP entry resolved and the link made in this
        // thread's namespace.
        let _inside = InNetNs::enter(&ns.name)?;
        let name = CString::new(DUT_OUT)?;
        // SAFETY: a valid NUL-terminated name.
        let egress = unsafe { libc::if_nametoindex(name.as_ptr()) };
        ensure!(egress != 0, "no interface {DUT_OUT}");
        DevMap::try_from(
            ebpf.map_mut(MINFWD_PORTS)
                .context("the object has no MINFWD_PORTS")?,
        )?
        .set(0, egress, None, 0)
        .context("writing MINFWD_PORTS")?;
        let program: &mut Xdp = ebpf
            .program_mut(MINFWD_PROGRAM)
            .with_context(|| {
                format!(
                    "{} has no {MINFWD_PROGRAM}: rebuild with `cargo xtask build --release`",
                    object.display()
                )
            })?
            .try_into()
            .context("carrier_minfwd is not an XDP program")?;
        program.load().context("loading carrier_minfwd")?;
        program
            .attach(DUT_IN, XdpMode::Driver)
            .context("attaching carrier_minfwd in native mode")?;
        Ok(MinFwd { _ebpf: ebpf })
    }
}

impl Drop for Dut<'_> {
    fn drop(&mut self) {
        if let Dut::Kernel(ns, ..) = self {
            let _ = ns.run(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        }
    }
}

/// Linux's own VXLAN in the DUT namespace for a kernel VXLAN baseline, set up beside the
/// topology's IPv4 forwarding state (addresses on the veths, the sink's permanent neighbour)
/// and undone, step by step in reverse, when dropped (also after a failed step).
///
/// Both directions: the DUT's VTEP address on `lo` (a vxlan device's `local` must be a local
/// address, for its socket and for the outer route lookup), and [`KERNEL_VXLAN_DEV`], a `vxlan`
/// device with the L3 VNI, that `local`, UDP port 4789, no learning, no outer UDP checksum (as
/// carrier: 0), and the DUT's router MAC as its own. Encap (the device over the egress veth):
/// the core address on the egress veth, the sink as the permanent neighbour of the core peer,
/// the remote VTEP routed through it; the remote prefix routed onto the device via the remote
/// VTEP (`onlink`), whose permanent neighbour on the device is the remote router MAC, which the
/// device's FDB sends to the remote VTEP. So the inner frame goes from the DUT's to the remote
/// router MAC, the outer one from the egress veth to the sink, as carrier's. Decap (the device
/// over the ingress veth): the outer packet is local (to the VTEP address), the device takes it
/// from its UDP socket, and the inner frame, to the device's MAC, is routed out of the egress
/// veth to the sink by the topology's connected route and neighbour. The decapsulated packets
/// go through the device's GRO cell (a NAPI on the CPU that received them: the DUT CPU).
#[derive(Debug)]
struct KernelVxlan<'a> {
    ns: &'a NetNs,
    /// Commands that undo the steps taken so far, in the order taken.
    undo: Vec<Vec<String>>,
}

impl<'a> KernelVxlan<'a> {
    /// Sets up Linux's VXLAN for `route`; `None` for a route without VXLAN.
    fn up(ns: &'a NetNs, route: Route) -> Result<Option<KernelVxlan<'a>>> {
        let encap = match route {
            Route::VxlanEncap => true,
            Route::VxlanDecap => false,
            Route::Ipv4 | Route::Push | Route::Pop => return Ok(None),
        };
        let mut vx = KernelVxlan { ns, undo: vec![] };
        let vtep = format!("{DUT_VTEP}/32");
        vx.step(
            &["ip", "addr", "add", &vtep, "dev", "lo"],
            &["ip", "addr", "del", &vtep, "dev", "lo"],
        )?;
        let (remote, peer, vni) = (
            REMOTE_VTEP.to_string(),
            CORE_PEER.to_string(),
            VNI.to_string(),
        );
        if encap {
            vx.step(
                &["ip", "addr", "add", CORE_DUT, "dev", DUT_OUT],
                &["ip", "addr", "del", CORE_DUT, "dev", DUT_OUT],
            )?;
            vx.step(
                &[
                    "ip",
                    "neigh",
                    "replace",
                    &peer,
                    "lladdr",
                    SINK_MAC,
                    "dev",
                    DUT_OUT,
                    "nud",
                    "permanent",
                ],
                &["ip", "neigh", "del", &peer, "dev", DUT_OUT],
            )?;
            let host = format!("{remote}/32");
            vx.step(
                &["ip", "route", "add", &host, "via", &peer, "dev", DUT_OUT],
                &["ip", "route", "del", &host],
            )?;
        }
        let underlay = if encap { DUT_OUT } else { DUT_IN };
        let local = DUT_VTEP.to_string();
        vx.step(
            &[
                "ip",
                "link",
                "add",
                KERNEL_VXLAN_DEV,
                "address",
                DUT_ROUTER_MAC,
                "type",
                "vxlan",
                "id",
                &vni,
                "local",
                &local,
                "dstport",
                "4789",
                "dev",
                underlay,
                "nolearning",
                "noudpcsum",
            ],
            &["ip", "link", "del", KERNEL_VXLAN_DEV],
        )?;
        vx.step(&["ip", "link", "set", KERNEL_VXLAN_DEV, "up"], &[])?;
        if encap {
            // The device's own neighbours, FDB entry and route go with it.
            vx.step(
                &[
                    "bridge",
                    "fdb",
                    "append",
                    REMOTE_ROUTER_MAC,
                    "dev",
                    KERNEL_VXLAN_DEV,
                    "dst",
                    &remote,
                ],
                &[],
            )?;
            vx.step(
                &[
                    "ip",
                    "neigh",
                    "replace",
                    &remote,
                    "lladdr",
                    REMOTE_ROUTER_MAC,
                    "dev",
                    KERNEL_VXLAN_DEV,
                    "nud",
                    "permanent",
                ],
                &[],
            )?;
            vx.step(
                &[
                    "ip",
                    "route",
                    "add",
                    "10.2.0.0/24",
                    "via",
                    &remote,
                    "dev",
                    KERNEL_VXLAN_DEV,
                    "onlink",
                ],
                &[],
            )?;
        }
        Ok(Some(vx))
    }

    /// Runs `args` in the namespace and, when it succeeded, remembers `undo` (if any).
    fn step(&mut self, args: &[&str], undo: &[&str]) -> Result<()> {
        self.ns.run(args)?;
        if !undo.is_empty() {
            self.undo.push(undo.iter().map(|&a| a.to_owned()).collect());
        }
        Ok(())
    }
}

impl Drop for KernelVxlan<'_> {
    fn drop(&mut self) {
        for undo in self.undo.iter().rev() {
            let args: Vec<&str> = undo.iter().map(String::as_str).collect();
            let _ = self.ns.run(&args);
        }
    }
}

/// `carrier-dataplane run` in the DUT namespace, pinned to the DUT CPU; SIGTERM on drop
/// (SIGKILL after [`DATAPLANE_STOP`]).
#[derive(Debug)]
struct Dataplane {
    child: Option<Child>,
    log: PathBuf,
}

impl Dataplane {
    fn start(
        ns: &NetNs,
        scratch: &Scratch,
        binary: &Path,
        path: PathKind,
        config: &str,
        cpu: usize,
    ) -> Result<Dataplane> {
        let tag = format!("{path:?}").to_lowercase();
        let config_path = scratch.dir.join(format!("{tag}.toml"));
        std::fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let socket = scratch.dir.join(format!("{tag}.sock"));
        let _ = std::fs::remove_file(&socket);
        let log = scratch.dir.join(format!("{tag}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        // `nsenter --net` (not `ip netns exec`, whose private mount namespace would hide the
        // VRF namespaces of the dataplane's host path from everyone else).
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .args(["--", "taskset", "-c", &cpu.to_string()])
            .arg(binary)
            .args(["run", "--config"])
            .arg(&config_path)
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting carrier-dataplane")?;
        let mut dp = Dataplane {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + DATAPLANE_START;
        while !socket.exists() {
            if let Some(status) = dp.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!(
                    "carrier-dataplane exited ({status}) before serving its socket:\n{}",
                    dp.log_text()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "carrier-dataplane did not come up in {DATAPLANE_START:?}:\n{}",
                dp.log_text()
            );
            sleep(Duration::from_millis(20))?;
        }
        Ok(dp)
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + DATAPLANE_STOP;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }
}

/// target/tmp/carrier-e2e-<pid>: dataplane configs, sockets and logs; removed on drop unless
/// kept.
#[derive(Debug)]
struct Scratch {
    dir: PathBuf,
    keep: bool,
}

impl Scratch {
    fn new(parent: &Path, keep: bool) -> Result<Scratch> {
        let dir = parent.join(format!("carrier-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch { dir, keep })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep || std::thread::panicking() {
            eprintln!("carrier-e2e: logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// --- measuring ----------------------------------------------------------------------------

/// One run of one path.
#[derive(Debug, Clone)]
struct Sample {
    /// Frames the generator handed to the kernel, per second.
    offered_mpps: f64,
    /// Frames of the path's class the sink received, per second.
    forwarded_mpps: f64,
    /// Share of the sink's frames that were of the path's class.
    class_share: f64,
    /// Offered frames dropped at the DUT's ingress veth (its receive ring was full), per second.
    ring_drop_mpps: f64,
    /// Forwarded frames dropped at the sink's veth (its receive ring was full), per second:
    /// the sink fell behind, and the forwarded rate is then a lower bound.
    sink_drop_mpps: f64,
    /// Frames the sink saw in the window, by class (IPv4, MPLS, other, VXLAN).
    sink_frames: [u64; CLASSES],
    /// CPU time the DUT used (ingress NAPI kthread and dataplane process), in CPUs: 1.0 is
    /// all of one CPU for the whole window.
    dut_cpu: f64,
    /// Time the DUT CPU spent on anything else (other processes, interrupts, time stolen by
    /// the hypervisor), in CPUs.
    other_cpu: f64,
    /// The same on the generator CPU, besides the generator, the sink's NAPI and the harness.
    other_gen_cpu: f64,
    /// The part of `dut_cpu` the ingress NAPI kthread used (XDP, and for Linux all of it).
    napi_cpu: f64,
    /// How the generator was set up.
    gen_note: String,
    /// What the dataplane counted over its whole run (carrier paths).
    carrier: Option<CarrierStats>,
}

impl Sample {
    fn clean(&self) -> bool {
        self.class_share >= MIN_CLASS_SHARE
    }

    /// The DUT was not what limited the rate, which is then a lower bound of what it can
    /// forward: the sink fell behind (lost over 1% of what it counted), the DUT forwarded
    /// nearly all that was offered (97% or more), or the DUT CPU idled for over 10% of the
    /// window (an XDP forwarder that the generator CPU, which also runs the sink, cannot
    /// saturate).
    fn lower_bound(&self) -> bool {
        self.sink_drop_mpps > self.forwarded_mpps * 0.01
            || self.forwarded_mpps >= self.offered_mpps * 0.97
            || self.dut_cpu + self.other_cpu < 0.9
    }
}

/// What every run needs: the options, the namespaces, the sink, where configs and logs go,
/// and the dataplane binary.
struct Bench<'a> {
    cli: &'a Cli,
    net: &'a Topology,
    sink: &'a Sink,
    scratch: &'a Scratch,
    dataplane: &'a Path,
    /// The eBPF object (the minimal forwarder's program).
    object: &'a Path,
    /// The dataplane knows `express` under `[router]` (it has the express tier).
    has_express: bool,
    /// The live generator's program, when it loaded.
    live: Option<&'a RefCell<LiveGen>>,
}

/// One run: a path at a load.
#[derive(Debug, Clone, Copy)]
struct Run {
    path: PathKind,
    gen: GenKind,
    load: Load,
    /// Bytes of the IPv4 frames (without the FCS).
    frame_size: usize,
    warmup: f64,
    secs: f64,
}

/// The runs of every path at one offered load.
#[derive(Debug)]
struct LoadResults {
    load: Load,
    /// Bytes of the IPv4 frames.
    frame_size: usize,
    paths: Vec<(PathKind, Vec<Sample>)>,
}

/// The route count of the tables' headings: nothing for the single route of each path.
fn describe_routes(routes: u32) -> String {
    if routes > 1 {
        format!(", {routes} routes in the DUT's table (the flows' destinations spread over them)")
    } else {
        String::new()
    }
}

fn describe_load(load: Load) -> String {
    match load {
        Load::Max => "as fast as the generator goes".to_owned(),
        Load::Paced(mpps) => format!("paced at {mpps} Mpps"),
    }
}

impl Bench<'_> {
    /// Starts the DUT and the generator, measures one window, stops both.
    fn measure(&self, run: Run) -> Result<Sample> {
        let Bench {
            cli,
            net,
            sink,
            live,
            ..
        } = *self;
        let Run {
            path,
            gen,
            load,
            frame_size,
            warmup,
            secs,
        } = run;
        let mut dut = Dut::start(self, path)?;
        // The DUT's work: its ingress NAPI kthread, and the dataplane process (all its threads).
        let (napi_tasks, sink_tasks) = net.pin_napi()?;
        let dataplane_tasks: Vec<i32> = match &dut {
            Dut::Carrier(dp) => dp.pid().into_iter().collect(),
            Dut::AfxdpMin(fwd) => vec![fwd.tid],
            Dut::Kernel(..) | Dut::XdpMin(_) => vec![],
        };
        let limit = Duration::from_secs_f64(warmup + secs + 30.0);
        let frames = path.frames(cli.flows, frame_size, cli.routes);
        let live = match (gen, live) {
            (GenKind::Live, Some(live)) => {
                // A template per flow when the flows differ in more than the port.
                let templates = if cli.routes > 1 {
                    &frames[..]
                } else {
                    &frames[..1]
                };
                live.borrow_mut().configure(
                    templates,
                    path.template_len(),
                    path.sport_offset(),
                    cli.flows,
                    load.rate(),
                )?;
                Some(live.borrow().program_fd()?)
            }
            (GenKind::Live, None) => bail!("the live generator is not loaded"),
            _ => None,
        };
        let mut generator = Generator::start(
            net,
            gen,
            frames,
            // The live generator's program paces itself.
            load.rate().filter(|_| gen != GenKind::Live),
            cli.gen_batch(gen),
            limit,
            live,
        )?;
        // Frames offered so far: the live generator's program counts them exactly; the
        // others count what each system call took.
        let offered = |generator: &Generator| -> Result<u64> {
            match (gen, self.live) {
                (GenKind::Live, Some(live)) => live.borrow().frames(),
                _ => Ok(generator.sent()),
            }
        };
        sleep(Duration::from_secs_f64(warmup))?;
        // What runs on the generator CPU on our behalf: the generator, the sink, this thread.
        let mut gen_tasks = sink_tasks;
        gen_tasks.extend([generator.tid(), gettid()].into_iter().filter(|t| *t > 0));
        let drops0 = net.ring_drops();
        let (sent0, sink0, cpu0, gcpu0, t0) = (
            offered(&generator)?,
            sink.counts()?,
            (
                cpu_ticks(&napi_tasks)?,
                cpu_ticks(&dataplane_tasks)?,
                cpu_busy_ticks(cli.dut_cpu)?,
            ),
            (cpu_ticks(&gen_tasks)?, cpu_busy_ticks(cli.gen_cpu)?),
            Instant::now(),
        );
        sleep(Duration::from_secs_f64(secs))?;
        let (sent1, sink1, cpu1, gcpu1, t1) = (
            offered(&generator)?,
            sink.counts()?,
            (
                cpu_ticks(&napi_tasks)?,
                cpu_ticks(&dataplane_tasks)?,
                cpu_busy_ticks(cli.dut_cpu)?,
            ),
            (cpu_ticks(&gen_tasks)?, cpu_busy_ticks(cli.gen_cpu)?),
            Instant::now(),
        );
        let drops1 = net.ring_drops();
        generator.finish();
        let dataplane_log = match &dut {
            Dut::Carrier(dp) => Some(dp.log.clone()),
            Dut::Kernel(..) | Dut::XdpMin(_) | Dut::AfxdpMin(_) => None,
        };
        let afxdp_stats = match &mut dut {
            Dut::AfxdpMin(fwd) => fwd.stop(),
            _ => None,
        };
        // Stopping the dataplane makes it print its counters.
        drop(dut);
        let carrier = afxdp_stats.or_else(|| {
            dataplane_log.as_ref().and_then(|log| {
                CarrierStats::from_log(&std::fs::read_to_string(log).unwrap_or_default())
            })
        });
        let elapsed = (t1 - t0).as_secs_f64();
        let cpus = |ticks0: u64, ticks1: u64| {
            ticks1.saturating_sub(ticks0) as f64 / clock_ticks_per_second() / elapsed
        };
        let delta: [u64; CLASSES] = std::array::from_fn(|c| sink1.0[c].saturating_sub(sink0.0[c]));
        let total: u64 = delta.iter().sum();
        let forwarded = delta[path.expected_class()];
        if forwarded == 0 {
            let log = dataplane_log
                .map(|l| std::fs::read_to_string(l).unwrap_or_default())
                .unwrap_or_default();
            bail!("nothing of the expected class reached the sink (sink saw {total} frames: {delta:?}; offered {})\n{log}", sent1 - sent0);
        }
        Ok(Sample {
            offered_mpps: (sent1 - sent0) as f64 / elapsed / 1e6,
            forwarded_mpps: forwarded as f64 / elapsed / 1e6,
            class_share: forwarded as f64 / total as f64,
            ring_drop_mpps: drops1.0.saturating_sub(drops0.0) as f64 / elapsed / 1e6,
            sink_drop_mpps: drops1.1.saturating_sub(drops0.1) as f64 / elapsed / 1e6,
            sink_frames: delta,
            napi_cpu: cpus(cpu0.0, cpu1.0),
            other_cpu: (cpus(cpu0.2, cpu1.2) - cpus(cpu0.0 + cpu0.1, cpu1.0 + cpu1.1)).max(0.0),
            other_gen_cpu: (cpus(gcpu0.1, gcpu1.1) - cpus(gcpu0.0, gcpu1.0)).max(0.0),
            dut_cpu: cpus(cpu0.0 + cpu0.1, cpu1.0 + cpu1.1),
            gen_note: generator.note.clone(),
            carrier,
        })
    }

    /// Runs each generator (the live one when it loaded) on the kernel path for
    /// `--compare-secs`, as fast as it goes; returns the fastest (by offered rate) and every
    /// outcome (a generator that fails to start is left out of the choice, with its error).
    fn compare_generators(&self) -> Result<(GenKind, Comparison)> {
        let mut outcomes = vec![];
        let kinds = [GenKind::Live, GenKind::Xsk, GenKind::Packet];
        for kind in kinds {
            if kind == GenKind::Live && self.live.is_none() {
                outcomes.push((kind, Err("carrier_gen did not load".to_owned())));
                continue;
            }
            let run = Run {
                path: PathKind::Kernel,
                gen: kind,
                load: Load::Max,
                frame_size: self.cli.frame_sizes[0],
                warmup: 1.0,
                secs: self.cli.compare_secs,
            };
            match self.measure(run) {
                Ok(sample) => {
                    println!(
                        "  generator {:<38} offered {:>6.3} Mpps  (Linux forwarded {:.3} Mpps)",
                        kind.name(),
                        sample.offered_mpps,
                        sample.forwarded_mpps
                    );
                    outcomes.push((kind, Ok(sample)));
                }
                Err(e) if !stopped() => {
                    println!("  generator {:<38} unavailable: {e:#}", kind.name());
                    outcomes.push((kind, Err(format!("{e:#}"))));
                }
                Err(e) => return Err(e),
            }
        }
        let best = outcomes
            .iter()
            .filter_map(|(kind, outcome)| Some((*kind, outcome.as_ref().ok()?.offered_mpps)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(kind, _)| kind)
            .context("no generator works")?;
        Ok((best, outcomes))
    }
}

/// Each generator's run on the Linux path, or why it did not run.
type Comparison = Vec<(GenKind, Result<Sample, String>)>;

/// The dataplane's own counters over one whole run (warm-up, window and stop), from what
/// `carrier-dataplane run` prints when it stops: the counters JSON and the I/O statistics line.
#[derive(Debug, Clone, Default)]
struct CarrierStats {
    /// Frames the pipeline received on the ingress port.
    received: u64,
    /// Frames the pipeline sent out of the egress port (before the TX ring).
    forwarded: u64,
    /// Pipeline drops on the ingress port, by reason.
    drops: Vec<(String, u64)>,
    /// Frames lost because the TX ring was full.
    tx_ring_full: u64,
    /// The ingress socket's kernel statistics: `rx_dropped` (no fill buffer) and
    /// `rx_ring_full`.
    socket_dropped: u64,
    socket_ring_full: u64,
}

impl CarrierStats {
    fn from_log(log: &str) -> Option<CarrierStats> {
        let json: serde_json::Value = log
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())?;
        let ports = json.get("ports")?;
        let count = |port: &str, dir: &str| ports.get(port)?.get(dir)?.get("packets")?.as_u64();
        let drops = ports
            .get(DUT_IN)
            .and_then(|p| p.get("drops"))
            .and_then(serde_json::Value::as_object)
            .map(|d| {
                d.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        // The n-th number after the last occurrence of `key`.
        let number_after = |key: &str, n: usize| -> Option<u64> {
            let rest = &log[log.rfind(key)? + key.len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .nth(n)?
                .parse()
                .ok()
        };
        let socket = format!("(\"{DUT_IN}\",");
        Some(CarrierStats {
            received: count(DUT_IN, "rx")?,
            forwarded: count(DUT_OUT, "tx")?,
            drops,
            tx_ring_full: number_after("tx_ring_full:", 0).unwrap_or(0),
            socket_dropped: number_after(&socket, 0).unwrap_or(0),
            socket_ring_full: number_after(&socket, 1).unwrap_or(0),
        })
    }
}

// --- the no-drop search -------------------------------------------------------------------

/// Most loss a run of the no-drop search may have to pass, unless told (`--no-drop-loss`): 0.1%
/// of the frames offered in its window (offered as the generator counted them, lost = offered −
/// frames of the path's class at the sink; frames refused at the DUT's ingress ring count as
/// lost).
const DEFAULT_NO_DROP_LOSS: f64 = 0.1;
/// A paced run that offered under this share of its target: the generator could not pace
/// that fast (behind carrier's AF_XDP tier the live generator falls short near 1 Mpps, see
/// [`METHOD`]).
const GEN_SHORTFALL: f64 = 0.97;
/// The search stops once its bracket is narrower than this share of its top.
const NO_DROP_RESOLUTION: f64 = 0.01;
/// The first paced load is the flooded run's forwarded rate, kept within this share of the
/// flooded offered rate (the search's first top) from either end.
const NO_DROP_FIRST_MARGIN: f64 = 0.02;

impl Sample {
    /// Share of the offered frames that did not reach the sink as the path's class, in the
    /// window (0 when the counts' edges put slightly more at the sink than offered).
    fn loss(&self) -> f64 {
        if self.offered_mpps > 0.0 {
            ((self.offered_mpps - self.forwarded_mpps) / self.offered_mpps).max(0.0)
        } else {
            1.0
        }
    }

    /// Lost at most `max_loss` (a share, not percent).
    fn no_drop(&self, max_loss: f64) -> bool {
        self.loss() <= max_loss
    }
}

/// One run of a no-drop search: the load asked for (the first flooded, the others paced) and
/// what was measured.
#[derive(Debug, Clone)]
struct Step {
    load: Load,
    sample: Sample,
}

impl Step {
    /// A paced run whose generator offered under [`GEN_SHORTFALL`] of the load asked for.
    fn short(&self) -> bool {
        match self.load {
            Load::Max => false,
            Load::Paced(mpps) => self.sample.offered_mpps < mpps * GEN_SHORTFALL,
        }
    }
}

/// One path's search for its no-drop rate, the highest offered rate it forwards with at most
/// `max_loss` lost: a flooded run first (its offered rate is the most the generator
/// sends on this path, the top of the bracket; passing it ends the search), then paced runs:
/// the first at the flooded run's forwarded rate, the others halving the bracket between the
/// highest passing load (0 at first) and the lowest failing one. It ends after `steps` paced
/// runs, when the bracket is under [`NO_DROP_RESOLUTION`] of its top, or when a paced run
/// passes with the generator short of its target (it cannot pace higher). Pure: the caller
/// runs each [`NoDropSearch::next`] load and hands back the sample.
#[derive(Debug, Clone)]
struct NoDropSearch {
    /// Paced runs after the flooded one.
    steps: u32,
    /// Most loss of a passing run (a share of the offered frames).
    max_loss: f64,
    /// Every run so far, in order.
    runs: Vec<Step>,
    /// The highest paced load (Mpps) that passed, 0 before one did.
    low: f64,
    /// The lowest load that failed: the flooded offered rate, then paced loads.
    high: f64,
    /// The generator could not offer more than what passed: the no-drop rate is at least the
    /// best run's.
    generator_limited: bool,
}

impl NoDropSearch {
    fn new(steps: u32, max_loss: f64) -> NoDropSearch {
        NoDropSearch {
            steps,
            max_loss,
            runs: vec![],
            low: 0.0,
            high: 0.0,
            generator_limited: false,
        }
    }

    /// The load of the next run, or `None` when the search is over.
    fn next(&self) -> Option<Load> {
        let Some(flood) = self.runs.first() else {
            return Some(Load::Max);
        };
        let paced = self.runs.len() - 1;
        if self.generator_limited
            || paced >= self.steps as usize
            || self.high <= 0.0
            || self.high - self.low <= self.high * NO_DROP_RESOLUTION
        {
            return None;
        }
        let target = if paced == 0 {
            flood.sample.forwarded_mpps.clamp(
                self.high * NO_DROP_FIRST_MARGIN,
                self.high * (1.0 - NO_DROP_FIRST_MARGIN),
            )
        } else {
            (self.low + self.high) / 2.0
        };
        Some(Load::Paced(target))
    }

    /// Takes the outcome of the last [`NoDropSearch::next`] load's run.
    fn record(&mut self, step: Step) {
        let pass = step.sample.no_drop(self.max_loss);
        match step.load {
            Load::Max => {
                self.high = step.sample.offered_mpps;
                if pass {
                    self.low = self.high;
                    self.generator_limited = true;
                }
            }
            Load::Paced(target) if pass => {
                self.low = self.low.max(target);
                self.generator_limited = step.short();
            }
            Load::Paced(target) => self.high = self.high.min(target),
        }
        self.runs.push(step);
    }

    /// The passing run that offered the most: the no-drop rate is what it offered.
    fn best(&self) -> Option<&Sample> {
        self.runs
            .iter()
            .map(|step| &step.sample)
            .filter(|sample| sample.no_drop(self.max_loss))
            .max_by(|a, b| a.offered_mpps.total_cmp(&b.offered_mpps))
    }

    /// The no-drop rate found (0 when nothing passed), and whether it is a lower bound.
    fn rate(&self) -> (f64, bool) {
        (
            self.best().map_or(0.0, |s| s.offered_mpps),
            self.generator_limited,
        )
    }

    /// The lowest load that failed (Mpps asked for; for the flooded run, what it offered).
    fn lowest_failure(&self) -> Option<f64> {
        self.runs
            .iter()
            .filter(|step| !step.sample.no_drop(self.max_loss))
            .map(|step| step.load.rate().unwrap_or(step.sample.offered_mpps))
            .min_by(f64::total_cmp)
    }

    /// The runs, for the table: each load and whether it passed (✓, ✗; "short" when the
    /// generator fell short of it).
    fn trail(&self) -> String {
        let runs: Vec<String> = self
            .runs
            .iter()
            .map(|step| {
                let load = match step.load {
                    Load::Max => "max".to_owned(),
                    Load::Paced(mpps) => format!("{mpps:.3}"),
                };
                format!(
                    "{load} {}{}",
                    if step.sample.no_drop(self.max_loss) {
                        "✓"
                    } else {
                        "✗"
                    },
                    if step.short() { " (short)" } else { "" }
                )
            })
            .collect();
        runs.join(", ")
    }
}

/// The no-drop searches of every path at one frame size, `--runs` each.
#[derive(Debug)]
struct NoDropResults {
    /// Bytes of the IPv4 frames.
    frame_size: usize,
    paths: Vec<(PathKind, Vec<NoDropSearch>)>,
}

impl Bench<'_> {
    /// The `--load` runs: every load and frame size, path by path in rounds (so slow drift
    /// spreads over the paths), with generator `gen`.
    /// A run of the measured series (`--load` and `--no-drop`): the command line's warm-up and
    /// window.
    fn measured_run(&self, path: PathKind, gen: GenKind, load: Load, frame_size: usize) -> Run {
        Run { path, gen, load, frame_size, warmup: self.cli.warmup, secs: self.cli.secs }
    }

    fn loads(&self, gen_kind: GenKind) -> Result<Vec<LoadResults>> {
        let cli = self.cli;
        let rounds = cli.runs;
        let per_run = cli.warmup + cli.secs + 1.5;
        let total_runs = rounds * cli.paths.len() * cli.loads.len() * cli.frame_sizes.len();
        println!(
            "carrier-e2e: {} loads × {} frame sizes × {rounds} rounds × {} paths × ~{per_run:.0} s ≈ {:.0} s",
            cli.loads.len(),
            cli.frame_sizes.len(),
            cli.paths.len(),
            total_runs as f64 * per_run
        );
        let mut results = vec![];
        for (&load, &frame_size) in cli
            .loads
            .iter()
            .flat_map(|load| cli.frame_sizes.iter().map(move |size| (load, size)))
        {
            println!(
                "carrier-e2e: offered load {}, {frame_size}-byte frames{}",
                describe_load(load),
                describe_routes(cli.routes)
            );
            let mut by_path: Vec<(PathKind, Vec<Sample>)> =
                cli.paths.iter().map(|p| (*p, vec![])).collect();
            for round in 0..rounds {
                for (path, samples) in &mut by_path {
                    let run = self.measured_run(*path, gen_kind, load, frame_size);
                    let sample = self.measure(run).with_context(|| {
                        format!(
                            "{} (load {load}, {frame_size}-byte frames, round {})",
                            path.name(),
                            round + 1
                        )
                    })?;
                    println!(
                        "  round {} {:<27} offered {:>5.3} Mpps  forwarded {:>5.3} Mpps{}",
                        round + 1,
                        path.name(),
                        sample.offered_mpps,
                        sample.forwarded_mpps,
                        if sample.clean() {
                            format!(
                                "  DUT CPU {:.2}; other work on DUT / gen CPU {:.2} / {:.2}",
                                sample.dut_cpu, sample.other_cpu, sample.other_gen_cpu
                            )
                        } else {
                            let [ipv4, mpls, other, vxlan] = sample.sink_frames;
                            format!(
                                "  (!) only {:.1}% of the sink's frames are {} (IPv4 {ipv4}, MPLS {mpls}, VXLAN {vxlan}, other {other})",
                                sample.class_share * 100.0,
                                path.expected_class_name()
                            )
                        }
                    );
                    samples.push(sample);
                }
            }
            results.push(LoadResults {
                load,
                frame_size,
                paths: by_path,
            });
        }
        Ok(results)
    }

    /// The no-drop search of every path at every frame size, with generator `gen`: round by
    /// round, a whole search of each path in turn (so slow drift spreads over the paths as in
    /// the `--load` tables).
    fn no_drop(&self, gen: GenKind) -> Result<Vec<NoDropResults>> {
        let cli = self.cli;
        let per_run = cli.warmup + cli.secs + 1.5;
        let most =
            cli.runs * cli.paths.len() * cli.frame_sizes.len() * (cli.no_drop_steps as usize + 1);
        println!(
            "carrier-e2e: no-drop search (≤{}% loss): {} frame sizes × {} rounds × {} paths × at most {} runs × ~{per_run:.0} s ≤ {:.0} s",
            cli.no_drop_loss,
            cli.frame_sizes.len(),
            cli.runs,
            cli.paths.len(),
            cli.no_drop_steps + 1,
            most as f64 * per_run
        );
        let mut results = vec![];
        for &frame_size in &cli.frame_sizes {
            println!(
                "carrier-e2e: no-drop search, {frame_size}-byte frames{}",
                describe_routes(cli.routes)
            );
            let mut by_path: Vec<(PathKind, Vec<NoDropSearch>)> =
                cli.paths.iter().map(|p| (*p, vec![])).collect();
            for round in 0..cli.runs {
                for (path, searches) in &mut by_path {
                    let mut search = NoDropSearch::new(cli.no_drop_steps, cli.no_drop_loss / 100.0);
                    while let Some(load) = search.next() {
                        let run = self.measured_run(*path, gen, load, frame_size);
                        let sample = self.measure(run).with_context(|| {
                            format!(
                                "{} (no-drop search, load {}, {frame_size}-byte frames, round {})",
                                path.name(),
                                describe_load(load),
                                round + 1
                            )
                        })?;
                        let step = Step { load, sample };
                        let sample = &step.sample;
                        println!(
                            "  round {} {:<27} {:<12} offered {:>5.3} Mpps  forwarded {:>5.3} Mpps  loss {:>7.3}%  {}  (refused at DUT ingress {:.3}, lost at the sink {:.3} Mpps){}",
                            round + 1,
                            path.name(),
                            match load {
                                Load::Max => "flooded".to_owned(),
                                Load::Paced(mpps) => format!("at {mpps:.3}"),
                            },
                            sample.offered_mpps,
                            sample.forwarded_mpps,
                            sample.loss() * 100.0,
                            if sample.no_drop(search.max_loss) {
                                "pass"
                            } else {
                                "FAIL"
                            },
                            sample.ring_drop_mpps,
                            sample.sink_drop_mpps,
                            if step.short() {
                                "  (the generator fell short of the load)"
                            } else {
                                ""
                            }
                        );
                        search.record(step);
                    }
                    let (rate, bound) = search.rate();
                    println!(
                        "  round {} {:<27} no-drop rate {}{rate:.3} Mpps{}",
                        round + 1,
                        path.name(),
                        if bound { "≥ " } else { "" },
                        if bound {
                            "  (the generator could not offer more: a lower bound)"
                        } else {
                            ""
                        }
                    );
                    searches.push(search);
                }
            }
            results.push(NoDropResults {
                frame_size,
                paths: by_path,
            });
        }
        Ok(results)
    }
}

impl Report<'_> {
    /// The no-drop table of one frame size.
    fn no_drop_table(&self, results: &NoDropResults) -> String {
        // Per path: (median no-drop rate, a lower bound in any run).
        let summary = |searches: &[NoDropSearch]| {
            (
                median(searches.iter().map(|s| s.rate().0).collect()),
                searches.iter().any(|s| s.rate().1),
            )
        };
        let baseline = |path: PathKind| {
            results
                .paths
                .iter()
                .find(|(p, _)| *p == path.baseline())
                .map(|(_, searches)| summary(searches))
        };
        let mut t = String::new();
        let _ = writeln!(
            t,
            "| path | frames | no-drop Mpps (median) | runs | vs Linux (VXLAN: Linux VXLAN) | forwarded at it, Mpps | loss at it | DUT CPU at it | lowest failing load, Mpps | flooded: offered / forwarded, Mpps | loads tried (last run) |"
        );
        let _ = writeln!(t, "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|");
        for (path, searches) in &results.paths {
            let (rate, bound) = summary(searches);
            let best: Vec<&Sample> = searches.iter().filter_map(NoDropSearch::best).collect();
            let at_best = |f: fn(&Sample) -> f64| {
                if best.is_empty() {
                    "–".to_owned()
                } else {
                    format!("{:.3}", median(best.iter().map(|s| f(s)).collect()))
                }
            };
            let runs: Vec<String> = searches
                .iter()
                .map(|s| match s.rate() {
                    _ if s.best().is_none() => {
                        format!("< {:.3}", s.lowest_failure().unwrap_or(0.0))
                    }
                    (r, true) => format!("≥ {r:.3}"),
                    (r, false) => format!("{r:.3}"),
                })
                .collect();
            let failing: Vec<f64> = searches
                .iter()
                .filter_map(NoDropSearch::lowest_failure)
                .collect();
            let flood: Vec<&Sample> = searches
                .iter()
                .filter_map(|s| s.runs.first().map(|step| &step.sample))
                .collect();
            let _ =
                writeln!(
                t,
                "| {} | {} | **{}{rate:.3}** | {} | {} | {} | {} | {} | {} | {:.3} / {:.3} | {} |",
                path.name(),
                path.describe(results.frame_size, self.cli.routes),
                if bound { "≥ " } else { "" },
                runs.join(", "),
                ratio(*path, rate, bound, baseline(*path)),
                at_best(|s| s.forwarded_mpps),
                if best.is_empty() {
                    "–".to_owned()
                } else {
                    format!("{:.3}%", median(best.iter().map(|s| s.loss() * 100.0).collect()))
                },
                if best.is_empty() {
                    "–".to_owned()
                } else {
                    format!("{:.2}", median(best.iter().map(|s| s.dut_cpu).collect()))
                },
                if failing.is_empty() {
                    "none".to_owned()
                } else {
                    format!("{:.3}", median(failing))
                },
                median(flood.iter().map(|s| s.offered_mpps).collect()),
                median(flood.iter().map(|s| s.forwarded_mpps).collect()),
                searches.last().map(NoDropSearch::trail).unwrap_or_default(),
            );
        }
        let _ = writeln!(
            t,
            "\nNo-drop rate: the highest offered rate (frames the generator sent, per second) at which at most {}% of them did not reach the sink as the path's class in a {} s window (after {} s of warm-up; frames refused at the DUT's ingress ring count as lost, and so would frames the sink's ring refused, which the step log shows apart); \
             found per path by a flooded run and then up to {} paced runs halving the bracket between the highest passing and the lowest failing load. \
             ≥: the generator could not offer more (the flooded run passed, or a paced run passed with the generator short of its load by over {:.0}%, marked \"short\"), so the rate is a lower bound; \
             < : no load passed. Ratios as in the `--load` tables (≥ / ≤ / ? when a side is a bound).",
            self.cli.no_drop_loss,
            self.cli.secs,
            self.cli.warmup,
            self.cli.no_drop_steps,
            (1.0 - GEN_SHORTFALL) * 100.0,
        );
        t
    }
}

// --- the report ---------------------------------------------------------------------------

struct Report<'a> {
    cli: &'a Cli,
    gen_kind: GenKind,
    comparison: Comparison,
    results: Vec<LoadResults>,
    load_before: String,
    load_after: String,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The cell of `path`'s ratio of `value` (a lower bound when `bound`) over its baseline's
/// `base` (value, and whether a lower bound), when the baseline was measured. A ratio over a
/// baseline that is a lower bound is an upper bound (≤), a lower bound over a baseline that is
/// not is a lower bound (≥), and ? when both are bounds.
fn ratio(path: PathKind, value: f64, bound: bool, base: Option<(f64, bool)>) -> String {
    match base {
        Some(_) if path == path.baseline() => "1.00×".to_owned(),
        Some((b, base_bound)) if b > 0.0 => {
            let mark = match (bound, base_bound) {
                (false, false) => "",
                (true, false) => "≥ ",
                (false, true) => "≤ ",
                (true, true) => "? ",
            };
            format!("{mark}{:.2}×", value / b)
        }
        _ => "–".to_owned(),
    }
}

impl Report<'_> {
    /// The main table of one offered load.
    fn table(&self, results: &LoadResults) -> String {
        let per_cpu = |s: &Sample| {
            if s.dut_cpu > 0.0 {
                s.forwarded_mpps / s.dut_cpu
            } else {
                0.0
            }
        };
        // (forwarded, per CPU, lower bound) of a path's Linux baseline row
        // (`PathKind::baseline`), when it was measured.
        let baseline = |path: PathKind| {
            results
                .paths
                .iter()
                .find(|(p, _)| *p == path.baseline())
                .map(|(_, s)| {
                    (
                        median(s.iter().map(|s| s.forwarded_mpps).collect()),
                        median(s.iter().map(per_cpu).collect()),
                        s.iter().any(Sample::lower_bound),
                    )
                })
        };
        let mut t = String::new();
        let _ = writeln!(
            t,
            "| path | frames | forwarded Mpps (median) | runs | vs Linux (VXLAN: Linux VXLAN) | DUT CPU used | other work on DUT / gen CPU | Mpps per DUT CPU | per CPU vs Linux (VXLAN: Linux VXLAN) | offered Mpps | refused at DUT ingress, Mpps | lost at the sink, Mpps |"
        );
        let _ = writeln!(
            t,
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (path, samples) in &results.paths {
            let fwd = median(samples.iter().map(|s| s.forwarded_mpps).collect());
            let cpu = median(samples.iter().map(|s| s.dut_cpu).collect());
            let other = median(samples.iter().map(|s| s.other_cpu).collect());
            let other_gen = median(samples.iter().map(|s| s.other_gen_cpu).collect());
            let fwd_per_cpu = median(samples.iter().map(per_cpu).collect());
            let offered = median(samples.iter().map(|s| s.offered_mpps).collect());
            let refused = median(samples.iter().map(|s| s.ring_drop_mpps).collect());
            let sink_lost = median(samples.iter().map(|s| s.sink_drop_mpps).collect());
            let bound = samples.iter().any(Sample::lower_bound);
            let runs: Vec<String> = samples
                .iter()
                .map(|s| {
                    format!(
                        "{}{:.3}{}",
                        if s.lower_bound() { "≥ " } else { "" },
                        s.forwarded_mpps,
                        if s.clean() { "" } else { " (!)" }
                    )
                })
                .collect();
            let _ = writeln!(
                t,
                "| {} | {} | **{}{fwd:.3}** | {} | {} | {cpu:.2} | {other:.2} / {other_gen:.2} | {fwd_per_cpu:.3} | {} | {offered:.3} | {refused:.3} | {sink_lost:.3} |",
                path.name(),
                path.describe(results.frame_size, self.cli.routes),
                if bound { "≥ " } else { "" },
                runs.join(", "),
                ratio(*path, fwd, bound, baseline(*path).map(|b| (b.0, b.2))),
                ratio(*path, fwd_per_cpu, bound, baseline(*path).map(|b| (b.1, b.2))),
            );
        }
        t
    }

    /// What carrier itself counted in the last run of each of its paths at one load.
    fn carrier_table(&self, results: &LoadResults) -> String {
        let mut t = String::new();
        for (path, samples) in &results.paths {
            let Some(stats) = samples.last().and_then(|s| s.carrier.as_ref()) else {
                continue;
            };
            if t.is_empty() {
                let _ = writeln!(t, "| path (last run, whole run) | frames into the pipeline | forwarded by the pipeline | lost: TX ring full | dropped before the socket: no fill buffer / RX ring full | pipeline drops on ingress | DUT CPU (median): ingress NAPI + dataplane |");
                let _ = writeln!(t, "|---|---:|---:|---:|---:|---|---|");
            }
            let pct = |n: u64| {
                if stats.received == 0 {
                    0.0
                } else {
                    n as f64 * 100.0 / stats.received as f64
                }
            };
            let drops: Vec<String> = stats
                .drops
                .iter()
                .map(|(reason, n)| format!("{reason} {n} ({:.1}%)", pct(*n)))
                .collect();
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} ({:.1}%) | {} / {} | {} | {:.2} + {:.2} |",
                path.name(),
                stats.received,
                stats.forwarded,
                stats.tx_ring_full,
                pct(stats.tx_ring_full),
                stats.socket_dropped,
                stats.socket_ring_full,
                if drops.is_empty() {
                    "none".to_owned()
                } else {
                    drops.join(", ")
                },
                median(samples.iter().map(|s| s.napi_cpu).collect()),
                median(samples.iter().map(|s| s.dut_cpu - s.napi_cpu).collect()),
            );
        }
        t
    }

    /// The chart's title: what, when, where.
    fn chart_title(&self) -> String {
        let date = sh(&["date", "-u", "+%Y-%m-%d"]).unwrap_or_default();
        format!(
            "carrier end-to-end forwarding on veth, {} (runs: {} × {} s; one DUT CPU)",
            date.trim(),
            self.cli.runs,
            self.cli.secs
        )
    }

    /// The whole section for bench/RESULTS.md.
    fn section(&self) -> String {
        let cli = self.cli;
        let date = sh(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let cpu = cpu_model();
        let cpus = online_cpus();
        let mut command = format!(
            "target/release/carrier-e2e --secs {} --runs {} --warmup {} --flows {} --gen-cpu {} --dut-cpu {}",
            cli.secs, cli.runs, cli.warmup, cli.flows, cli.gen_cpu, cli.dut_cpu
        );
        if let Some(batch) = cli.gen_batch {
            let _ = write!(command, " --gen-batch {batch}");
        }
        if cli.frame_sizes != [MIN_FRAME] {
            let sizes: Vec<String> = cli.frame_sizes.iter().map(usize::to_string).collect();
            let _ = write!(command, " --frame-size {}", sizes.join(","));
        }
        if cli.routes != 1 {
            let _ = write!(command, " --routes {}", cli.routes);
        }
        if cli.loads != [Load::Max] {
            let loads: Vec<String> = cli.loads.iter().map(Load::to_string).collect();
            let _ = write!(command, " --load {}", loads.join(","));
        }
        if cli.generator != GenChoice::Auto {
            if let Some(v) = cli.generator.to_possible_value() {
                let _ = write!(command, " --generator {}", v.get_name());
            }
        } else if cli.compare_secs != DEFAULT_COMPARE_SECS {
            let _ = write!(command, " --compare-secs {}", cli.compare_secs);
        }
        if cli.paths != default_paths() {
            let names: Vec<String> = cli
                .paths
                .iter()
                .filter_map(|p| p.to_possible_value().map(|v| v.get_name().to_owned()))
                .collect();
            let _ = write!(command, " --paths {}", names.join(","));
        }

        let mut s = String::new();
        let _ = writeln!(s, "{RESULTS_HEADING}\n");
        let _ = writeln!(
            s,
            "Written by `carrier-e2e --write` on {} — Linux {}, {cpu}, {cpus} vCPUs; load average before {}, after {}.\n",
            date.trim(),
            kernel.trim(),
            self.load_before,
            self.load_after
        );
        let _ = writeln!(s, "    cd /work/main   # the workspace root\n    cargo xtask build --release\n    cargo build --release -p carrier-bench --bin carrier-e2e\n    {command}   # as root\n");
        let _ = writeln!(
            s,
            "![Forwarded Mpps per path and tier, against Linux and the XDP minimal forwarder](e2e.svg)\n\n\
             The chart ([e2e.svg](e2e.svg), written by the same run) shows the median forwarded rate of every table below on one scale.\n"
        );
        for load in &self.results {
            let _ = writeln!(
                s,
                "### Offered load: {}, {}-byte frames{}\n",
                describe_load(load.load),
                load.frame_size,
                describe_routes(cli.routes)
            );
            let _ = writeln!(s, "{}", self.table(load));
            let carrier = self.carrier_table(load);
            if !carrier.is_empty() {
                let _ = writeln!(s, "{carrier}");
            }
        }
        let _ = writeln!(
            s,
            "Main tables:\n\n\
             - **forwarded**: frames of the path's output class (IPv4, MPLS or VXLAN, sent to the sink's MAC) the sink counted, per second, over {} s after {} s of warm-up; \
             the median of {} runs in bold, then every run ((!): under {:.0}% of the sink's frames were of that class). Paths are interleaved round by round.\n\
             - **vs Linux**: the median over the median of its Linux baseline at the same load: same namespaces, veths, frames and session. \
             The baseline of the VXLAN paths is Linux's own VXLAN in the same direction (encap or decap, same frames in and out); \
             of the others Linux IPv4 forwarding.\n\
             - **DUT CPU used**: CPU time of the DUT's ingress NAPI kthread plus (carrier) the dataplane process per second of the window; \
             1.00 is all of the DUT CPU. **Other work on DUT / gen CPU**: the rest of each CPU's busy time (other processes on the machine, interrupts, time the hypervisor stole; \
             on the generator CPU besides the generator, the sink's NAPI and the harness). On the DUT CPU it means the DUT got less than a whole CPU (the per-CPU column still compares); \
             on the generator CPU it slows the generator and the sink, which also free carrier's sent frames (copy-mode completions), so carrier's rate drops with it.\n\
             - **Mpps per DUT CPU**: forwarded over DUT CPU used, the rate per whole CPU. carrier's worker busy-polls while traffic flows, \
             so its DUT CPU is near 1.00 at any load: compare per CPU only where both are saturated.\n\
             - **offered**: frames the generator handed to the kernel per second. \
             **Refused at DUT ingress**: of those, dropped because the DUT's veth receive ring (256 frames) was full. \
             **Lost at the sink**: forwarded frames dropped because the sink's ring was full; 0 unless the sink fell behind.\n\
             - **≥**: a lower bound, the DUT was not the limit: it forwarded 97% or more of what was offered, the sink lost over 1%, or the DUT CPU idled for over 10% of the window. \
             Ratios over a lower bound are upper bounds (≤), a lower bound over a measured rate gives ≥, and ? when both are bounds.\n",
            cli.secs,
            cli.warmup,
            cli.runs,
            MIN_CLASS_SHARE * 100.0,
        );
        let _ = writeln!(
            s,
            "carrier's tables: its own counters in the last run of each path, as `carrier-dataplane run` prints them when it stops \
             (whole run, warm-up included). \"Dropped before the socket\" is the ingress AF_XDP socket's kernel statistics: \
             `rx_dropped` (frames redirected to it while its fill ring was empty) and `rx_ring_full`. \
             The DUT CPU split is the median over the runs. The AF_XDP minimal forwarder's row is what its loop counted \
             (its \"pipeline\" is the rewrite, its \"dataplane\" CPU its thread). The express tier's frames never reach the pipeline, \
             and `carrier-dataplane run` does not print what the tier forwarded when it stops, so its paths have no row.\n"
        );
        if let Some(note) = self
            .results
            .iter()
            .flat_map(|load| &load.paths)
            .find_map(|(_, samples)| samples.first())
            .map(|s| s.gen_note.as_str())
        {
            let _ = writeln!(
                s,
                "Generator set-up: {}, {note}, {} flows.\n",
                self.gen_kind.name(),
                cli.flows
            );
        }
        if !self.comparison.is_empty() {
            let _ = writeln!(s, "Generator choice (each on the Linux path for {} s; the fastest one is used above):\n", cli.compare_secs);
            let _ = writeln!(
                s,
                "| generator | offered Mpps | Linux forwarded Mpps |\n|---|---:|---:|"
            );
            for (kind, outcome) in &self.comparison {
                let _ = match outcome {
                    Ok(sample) => writeln!(
                        s,
                        "| {} | {:.3} | {:.3} |",
                        kind.name(),
                        sample.offered_mpps,
                        sample.forwarded_mpps
                    ),
                    Err(e) => writeln!(s, "| {} | unavailable: {e} | – |", kind.name()),
                };
            }
            let _ = writeln!(s);
        }
        s.push_str(METHOD);
        s
    }
}

/// How the numbers are made; part of the written section.
const METHOD: &str = "\
How it is measured (`bench/src/bin/carrier-e2e.rs`):

- Topology: three namespaces `e2gen<pid>` —veth— `e2dut<pid>` —veth— `e2snk<pid>`. TSO and GSO
  are off on every veth end (a veth passes frames to its peer's NAPI, where native XDP runs,
  only then) and GRO is on (the receiving end then always has a NAPI). The DUT's ingress veth
  and the sink's veth use threaded NAPI: the DUT's kthread is pinned to the DUT CPU, so all of
  the DUT's receive work runs there and none on the sender's CPU; the sink's is pinned to the
  generator CPU and runs SCHED_FIFO, so the sink keeps up even when the generator (or other
  work) keeps that CPU busy.
- DUT, carrier: `taskset -c <dut cpu> carrier-dataplane run --config <path config>` (the
  release build with `carrier_xdp` embedded). The tier is the config's `express` under
  `[router]`: `false` for the AF_XDP paths, `true` for the express ones (the harness first asks
  `carrier-dataplane check-config` whether it knows the key; a dataplane that does not has
  only the AF_XDP tier, gets configs without the key, and cannot run the express paths). AF_XDP
  tier: its XDP program runs in native mode on both veths and steers every frame to the
  AF_XDP sockets (copy mode: veth has no zero-copy). On one DUT CPU the dataplane process and
  the ingress NAPI kthread (XDP, copy into the UMEM) share the CPU; under overload the kthread
  takes most of it and frames are dropped for want of fill-ring buffers. Express tier: the
  same paths forwarded in XDP, in the ingress NAPI kthread; compare them with the XDP minimal
  forwarder, their ceiling.
- DUT, Linux: `net.ipv4.ip_forward=1`, the same two veths with 10.1.0.1/24 and 10.3.0.1/24, a
  permanent neighbour for the sink (no ARP), IPv6 off, no netfilter rules. Linux has no MPLS
  forwarding here, so the baseline is plain IPv4 forwarding of the VRF path's frames. All of
  its work is in the ingress NAPI kthread.
- DUT, Linux VXLAN (the baselines of the VXLAN paths, same frames in and out): a `vxlan`
  device (VNI 5000, `local` 10.255.0.1 on `lo`, port 4789, `nolearning`, `noudpcsum` as
  carrier, whose outer UDP checksum is 0, and the DUT's router MAC)
  besides the above. Encap: over the egress veth, which gets 192.0.2.1/30, the sink as the
  permanent neighbour 192.0.2.2, the remote VTEP 10.255.0.2/32 routed via it; 10.2.0.0/24
  routed onto the device via 10.255.0.2 `onlink`, a permanent neighbour giving it the remote
  router MAC and an FDB entry sending that MAC to the remote VTEP. Decap: over the ingress
  veth; the inner frames are to the device's MAC and routed out of the egress veth.
- DUT, XDP minimal forwarder (the second baseline, the ceiling of any XDP forwarder here):
  `carrier_minfwd` (`ebpf/src/minfwd.rs`), attached by the harness in native mode on the DUT's
  ingress veth, writes the sink's and the egress veth's MACs from a map, decrements the TTL
  with an incremental checksum update (RFC 1624) and redirects through a DEVMAP to the egress
  veth; no lookup, no pipeline. It forwards the VRF path's frames, and all of its work is in
  the ingress NAPI kthread. It needs well under a whole DUT CPU for what the generator CPU can
  send and sink at once, so its forwarded rate is usually a lower bound: compare it per DUT
  CPU. Part of the frames are refused at the DUT's ingress even then: the DUT's kthread
  idles between bursts and wakes late (an IPI to a halted vCPU), while the veth's ring holds
  only 256 frames.
- DUT, AF_XDP minimal forwarder (the third baseline, the ceiling of carrier's AF_XDP tier
  here): a thread of the harness in the DUT namespace, pinned to the DUT CPU, with carrier's
  own XDP steering (`carrier_xdp` in native mode on the ingress veth) and AF_XDP I/O
  (`carrier_dataplane::io::xsk::XskPorts`: one UMEM, copy mode, 256-frame batches, busy-poll
  option, the same loop as the dataplane's worker), doing `carrier_minfwd`'s rewrite on each
  frame instead of the pipeline and sending it from the egress veth's socket. It forwards the
  VRF path's frames; its DUT CPU is the ingress NAPI kthread plus that thread.
- Paths, each in both tiers: VRF forward (two customer ports in VRF red, static neighbours);
  MPLS push (customer port → core port, VPN label 1000 toward a PE behind a static
  neighbour); MPLS pop (core port → customer port, per-VRF label 100 looked up in VRF red);
  VXLAN encap (customer port → core port, a VRF route to the remote VTEP 10.255.0.2 with
  VNI 5000 and its router MAC, routed VXLAN as EVPN type-5, the VTEP behind a static
  neighbour); VXLAN decap (core port → customer port, VXLAN to the DUT's VTEP 10.255.0.1 with
  the L3 VNI 5000 of VRF red, routed in the VRF). In VXLAN the frame size is the inner
  frame's; the outer one is 50 bytes longer (60-byte frames: 110 on the wire), built by
  `carrier_bench::vxlan_frame` with outer UDP source port 50000 (the flows differ in the inner
  source port).
  1024 flows (UDP source ports), IPv4/UDP frames of each `--frame-size` (60 bytes by default,
  e.g. `60,512`; 4 bytes more with a label: 64 and 516), built by `carrier_bench::udp_frame`
  / `mpls_frame`; every path is measured at every size and load, one table each. The configs
  are written next to the dataplane's log (`--keep-logs` keeps them).
- Generator: a thread of the harness in the gen namespace, pinned to the generator CPU, sending
  as fast as it goes (or paced, `--load`). By default the harness measures each kind on the
  Linux path and keeps the fastest (the table below). Live frames (`--generator live`):
  `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` runs `carrier_gen`
  (`ebpf/src/gen.rs`) over one frame with the gen veth as the ingress interface; its
  `XDP_TX` sends each frame out of that veth as an XDP redirect, straight into the DUT's
  receive ring, with no skb and no socket. The kernel reuses the pages of a page pool, so the
  program writes the frame's first 48 bytes (every header; 96 for VXLAN decap, whose inner
  Ethernet, TTL and checksum the DUT rewrites) back from a template each time,
  then the UDP source port of the frame's flow; paced, it sends a frame only when one is due by
  `bpf_ktime_get_ns` and drops the rest at once, so the frames are spread evenly within one
  long call (each call sets up and tears down a page pool, around 20 ms here; the harness
  interrupts the call with a signal to stop). Its offered rate is what the program counted.
  The DUT then receives XDP frames, as from a NIC driver: Linux builds the skb on the DUT
  CPU. The older generators: AF_XDP copy-mode TX (a UMEM of pre-built frames, TX ring,
  need-wakeup, `XDP_MAX_TX_SKB_BUDGET` for more than 32 frames per `sendto`) and AF_PACKET
  with `PACKET_QDISC_BYPASS` and `sendmmsg` top out around 1.1 and 0.7 Mpps here; their
  frames reach the DUT as skbs built on the generator CPU. `--gen-batch` frames per system
  call (default 64): this kernel runs with `preempt=none`, so one long call (2048 frames)
  keeps the sink's NAPI off the CPU long enough for the sink's 256-frame ring to overflow. For
  live frames it is the batch inside the kernel (the kernel reschedules between batches) and
  the size of the call's page pool (default and most, 256: a pool of 64 recycles too few of
  the pages the sink frees, and the generator slows to allocating pages). The generator CPU
  also runs the sink, so through a fast forwarder the generator sends less (around 3.5 Mpps
  here) than into a DUT that refuses most frames (4 to 5 Mpps).
- Offered loads: `max` floods the DUT. carrier then loses most of the DUT CPU to its own
  ingress NAPI kthread (XDP, and the copy into the UMEM of frames that are then dropped for
  want of fill buffers), so paced loads around carrier's capacity are measured too: they show
  up to which rate it keeps up, and what it does just past that without a flood. Linux's CPU
  use follows the load (no busy polling), so its per-CPU column is its cost per frame at any
  load; carrier's is only meaningful where it is saturated.
- Routes (`--routes N`, when the heading says so): the DUT's table holds N /24s of
  10.128.0.0/9 and the flows' destinations (host .2) spread evenly over them, each frame with
  its own IPv4 checksum (the live generator writes a template per flow). carrier: N routes in
  VRF red via the sink (VRF forward, MPLS pop, VXLAN decap), N VPN routes to the remote PE
  with a label each (MPLS push, labels from 1000), or N EVPN type-5 routes (VXLAN encap); the
  express tier gets them through its mirror into its LPM trie. Linux: N routes in its main
  table (`ip -batch`), via the sink or onto the vxlan device (encap). The minimal forwarders
  have no table and ignore the destinations.
- Sink: `carrier_sink` (`ebpf/src/sink.rs`, in the same object as `carrier_xdp`), attached in
  native mode on the sink's veth by the harness through aya, counts frames per CPU by
  EtherType (IPv4, MPLS; frames to another MAC count as other), IPv4 without options to UDP
  port 4789 as VXLAN (nothing past the outer UDP ports is looked at), and drops them; the harness
  reads the counters at the start and end of each window.
- CPU: utime + stime of the DUT's tasks from `/proc/<pid>/stat` at the window's edges.
- Chart: `bench/e2e.svg`, hand-written SVG from the same run (`--write`; `--chart FILE` writes
  it elsewhere): the median forwarded rate of every path, one group per offered load and frame
  size, on one scale; Linux grey, carrier's AF_XDP tier blue and its express tier orange, each
  tier's ceiling (the AF_XDP and the XDP minimal forwarder) a lighter shade of its colour;
  lower bounds paler and outlined, with ≥.
- The generator CPU also runs the sink, whose cost per frame depends on the forwarder in
  front of it: XDP frames (Linux builds skbs the sink turns back cheaply; a redirect hands over
  the generator's own pages) cost little, but each frame carrier sends in AF_XDP copy mode is
  an skb the sink copies into a page for its XDP program and whose destructor takes the
  sending socket's completion-queue lock, contended with carrier's process on the DUT CPU. So
  behind carrier's AF_XDP tier the live generator falls short of a paced rate near 1 Mpps (it
  offers what the offered column says), and those runs count as lower bounds.
- Variance: past its capacity carrier's rate moves by up to ±40% between runs and between
  sessions on this machine (see the runs column), and its own counters point at its transmit
  side: frames its pipeline forwarded but lost because the AF_XDP TX ring was full. In copy
  mode one `sendto` sends at most 32 frames, and each sent frame's skb stays charged to the
  socket's send buffer until the sink's NAPI frees it, so how promptly the sink (on the
  generator CPU) runs likely feeds back into carrier's transmit rate. Linux forwarding has no
  such coupling.

Performance claims are these ratios against the baseline of the same run; no test asserts a
rate.
";

// --- the chart ----------------------------------------------------------------------------

/// Where `--write` puts the chart (from the workspace root); RESULTS.md links it by its name.
const CHART_FILE: &str = "bench/e2e.svg";

/// Fill of a path's bars: Linux grey, each carrier tier its own hue, and the minimal forwarder
/// that is a tier's ceiling a lighter shade of it.
fn tier_colour(path: PathKind) -> &'static str {
    match (path, path.tier()) {
        (PathKind::XdpMin, _) => "#f3b27a",
        (PathKind::AfxdpMin, _) => "#9dc3e6",
        (_, Tier::Baseline) => "#9e9e9e",
        (_, Tier::AfXdp) => "#2f6ea8",
        (_, Tier::Express) => "#e06c1a",
    }
}

/// Escapes text for SVG.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart of the median forwarded rate of every path, one group per offered
/// load and frame size, on one scale; a lower bound is drawn paler and labelled with ≥.
/// Hand-written SVG 1.1: no scripts, no external fonts or styles.
fn chart(results: &[LoadResults], title: &str) -> String {
    const WIDTH: f64 = 880.0;
    const LABEL: f64 = 250.0;
    const BAR_AREA: f64 = WIDTH - LABEL - 90.0;
    const ROW: f64 = 22.0;
    const HEADING: f64 = 30.0;
    const TOP: f64 = 48.0;
    let rows: Vec<(f64, bool)> = results
        .iter()
        .flat_map(|load| &load.paths)
        .map(|(_, samples)| {
            (
                median(samples.iter().map(|s| s.forwarded_mpps).collect()),
                samples.iter().any(Sample::lower_bound),
            )
        })
        .collect();
    let top = rows.iter().map(|r| r.0).fold(0.0, f64::max);
    // A round scale: steps of 0.5, 1, 2 or 5 × a power of ten, four to ten of them.
    let step = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|step| top / step <= 8.0)
        .unwrap_or(20.0);
    let steps = (top / step).ceil().max(1.0);
    let scale = BAR_AREA / (steps * step);
    let body: f64 = results
        .iter()
        .map(|load| HEADING + ROW * load.paths.len() as f64)
        .sum();
    let height = TOP + body + 30.0 + 28.0;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">{}</text>"#,
        xml(title)
    );
    let _ = writeln!(
        svg,
        r##"<text x="10" y="38" fill="#444444">Forwarded Mpps at the sink (median of the runs); paler bars with ≥ are lower bounds: the DUT was not the limit.</text>"##
    );
    // Grid lines and their values, over the whole body.
    let (grid_top, grid_bottom) = (TOP, TOP + body);
    for i in 0..=steps as usize {
        let x = LABEL + i as f64 * step * scale;
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{grid_top}" x2="{x:.1}" y2="{grid_bottom}" stroke="#dddddd"/>"##
        );
        let _ = writeln!(
            svg,
            r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#444444">{}</text>"##,
            grid_bottom + 14.0,
            format_mpps(i as f64 * step)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444444">Mpps</text>"##,
        LABEL + BAR_AREA / 2.0,
        grid_bottom + 28.0
    );
    let mut y = TOP;
    let mut row = rows.iter();
    for load in results {
        let _ = writeln!(
            svg,
            r#"<text x="10" y="{:.1}" font-weight="bold">{}, {}-byte frames</text>"#,
            y + 20.0,
            xml(&describe_load(load.load)),
            load.frame_size
        );
        y += HEADING;
        for (path, _) in &load.paths {
            let Some(&(mpps, bound)) = row.next() else {
                break;
            };
            let width = mpps * scale;
            let colour = tier_colour(*path);
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LABEL - 8.0,
                y + 15.0,
                xml(path.name())
            );
            let _ = writeln!(
                svg,
                r#"<rect x="{LABEL}" y="{:.1}" width="{width:.1}" height="{:.1}" fill="{colour}"{}/>"#,
                y + 3.0,
                ROW - 6.0,
                if bound {
                    format!(r#" fill-opacity="0.45" stroke="{colour}""#)
                } else {
                    String::new()
                },
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}">{}{mpps:.3}</text>"#,
                LABEL + width + 5.0,
                y + 15.0,
                if bound { "≥ " } else { "" }
            );
            y += ROW;
        }
    }
    // The legend.
    let legend_y = grid_bottom + 48.0;
    let mut x = 10.0;
    for (name, path) in [
        ("Linux", PathKind::Kernel),
        ("AF_XDP minimal forwarder", PathKind::AfxdpMin),
        ("carrier, AF_XDP tier", PathKind::VrfForward),
        ("XDP minimal forwarder", PathKind::XdpMin),
        ("carrier, express tier", PathKind::ExpressVrfForward),
    ] {
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{legend_y:.1}">{name}</text>"#,
            legend_y - 10.0,
            tier_colour(path),
            x + 17.0
        );
        x += 30.0 + 6.5 * name.len() as f64;
    }
    svg.push_str("</svg>\n");
    svg
}

/// A grid value: no trailing zeros.
fn format_mpps(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map_or(text.clone(), str::to_owned)
}

/// Replaces this benchmark's section of the results file (from its heading to the next `## `
/// heading), or appends it; creates the file if needed.
fn write_section(path: &Path, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(path)
        .unwrap_or_else(|_| "# carrier benchmark results\n\n".to_owned());
    let new = match section_range(&old, RESULTS_HEADING) {
        Some(std::ops::Range { start, end }) => {
            format!(
                "{}{}{}",
                &old[..start],
                section.trim_end_matches('\n').to_owned() + "\n",
                if end < old.len() {
                    format!("\n{}", &old[end..])
                } else {
                    String::new()
                }
            )
        }
        None => {
            let mut s = old.trim_end_matches('\n').to_owned();
            s.push_str("\n\n");
            s.push_str(section);
            s
        }
    };
    let mut file = File::create(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(new.as_bytes())?;
    Ok(())
}

// --- small system helpers -----------------------------------------------------------------

/// Sleeps, failing early when the run is interrupted.
fn sleep(total: Duration) -> Result<()> {
    let end = Instant::now() + total;
    loop {
        ensure!(!stopped(), "interrupted");
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below the CPU count (checked by the caller), far below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// Pins the calling thread to `cpu`.
fn pin_thread(cpu: usize) -> Result<()> {
    set_affinity(0, cpu)
}

/// Pins task `pid` (0: the calling thread) to `cpu`.
fn set_affinity(pid: i32, cpu: usize) -> Result<()> {
    let set = cpu_set(cpu);
    // SAFETY: `set` is a valid cpu_set_t and its size is passed.
    let rc = unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    ensure!(
        rc == 0,
        "sched_setaffinity({pid}, cpu {cpu}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Real-time priority of the sink's NAPI kthread (SCHED_FIFO; below the kernel's own
/// threaded IRQ handlers at 50).
const SINK_NAPI_PRIORITY: libc::c_int = 10;

/// Makes task `pid` SCHED_FIFO at [`SINK_NAPI_PRIORITY`].
fn set_fifo(pid: i32) -> Result<()> {
    let param = libc::sched_param {
        sched_priority: SINK_NAPI_PRIORITY,
    };
    // SAFETY: `param` is a valid sched_param that outlives the call.
    let rc = unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &param) };
    ensure!(
        rc == 0,
        "sched_setscheduler({pid}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Busy time of `cpu` (everything but idle and iowait, steal included) from /proc/stat, in
/// clock ticks.
fn cpu_busy_ticks(cpu: usize) -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .with_context(|| format!("no {name} in /proc/stat"))?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    ensure!(fields.len() == 8, "short {name} line in /proc/stat");
    Ok(fields.iter().sum::<u64>() - fields[3] - fields[4])
}

/// The calling thread's id.
fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// utime + stime of the tasks, in clock ticks: a thread of this process counts alone, another
/// process with all its threads. (`/proc/<tid>/stat` of a thread of this process would count
/// the whole process: the generator, the harness and the AF_XDP forwarder together.)
fn cpu_ticks(pids: &[i32]) -> Result<u64> {
    let mut total = 0;
    for pid in pids {
        let own_thread = format!("/proc/self/task/{pid}/stat");
        let path = if Path::new(&own_thread).exists() {
            own_thread
        } else {
            format!("/proc/{pid}/stat")
        };
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // Fields after the command name (which may hold spaces): state is the 3rd field,
        // utime the 14th, stime the 15th.
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Result<u64> {
            fields
                .get(n - 3)
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("/proc/{pid}/stat field {n}"))
        };
        total += field(14)? + field(15)?;
    }
    Ok(total)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPUs online on the machine (not only those this thread may run on: it is pinned).
fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use carrier_dataplane::config::Config;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    /// The paths whose frames and configs differ (the others share them).
    const ROUTED: [PathKind; 5] = [
        PathKind::VrfForward,
        PathKind::MplsPush,
        PathKind::MplsPop,
        PathKind::VxlanEncap,
        PathKind::VxlanDecap,
    ];

    /// The IPv4 header the path's route looks up (the inner one under a label or in VXLAN)
    /// as etherparse reads it, and the UDP source port after it.
    fn looked_up(path: PathKind, frame: &[u8]) -> (etherparse::Ipv4Header, u16) {
        let ip = match path.route() {
            Route::Pop => &frame[18..],
            Route::VxlanDecap => &frame[VXLAN_OVERHEAD + 14..],
            Route::Ipv4 | Route::Push | Route::VxlanEncap => &frame[14..],
        };
        let packet = SlicedPacket::from_ip(ip).expect("the IPv4 packet parses");
        let Some(NetSlice::Ipv4(v4)) = &packet.net else {
            panic!("not IPv4")
        };
        let Some(TransportSlice::Udp(udp)) = &packet.transport else {
            panic!("not UDP")
        };
        (v4.header().to_header(), udp.source_port())
    }

    /// With `--routes`, every flow's frame goes to host 2 of its own route's /24, with a
    /// correct IPv4 checksum, and the flows spread over the whole range; the source port (the
    /// live generator's rewrite, at `sport_offset`) is the flow's.
    #[test]
    fn flows_spread_over_the_routes() {
        let (flows, routes) = (64u16, 1000u32);
        for path in ROUTED {
            let frames = path.frames(flows, 60, routes);
            assert_eq!(frames.len(), usize::from(flows));
            let mut prefixes = HashSet::new();
            for (flow, frame) in frames.iter().enumerate() {
                let (ip, sport) = looked_up(path, frame);
                assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "{path:?}");
                let dst = u32::from(Ipv4Addr::from(ip.destination));
                assert_eq!(dst & 0xff, ROUTE_HOST);
                let index = (dst - u32::from(ROUTE_RANGE)) >> 8;
                assert!(index < routes, "{path:?}: {dst:#x}");
                prefixes.insert(index);
                assert_eq!(sport, FIRST_PORT + flow as u16);
                let at = path.sport_offset() as usize;
                assert_eq!(frame[at..at + 2], sport.to_be_bytes());
            }
            assert_eq!(
                prefixes.len(),
                usize::from(flows),
                "{path:?}: one route per flow"
            );
            // Up to the last part of the range.
            let last = routes * (u32::from(flows) - 1) / u32::from(flows);
            assert_eq!(prefixes.iter().max(), Some(&last), "{path:?}");
        }
        // More flows than routes: every route gets some.
        let used: HashSet<u32> = (0..1000).map(|f| flow_prefix(f, 1000, 300)).collect();
        assert_eq!(used.len(), 300);
        // A single route is today's destination.
        let (ip, _) = looked_up(
            PathKind::VrfForward,
            &PathKind::VrfForward.frames(1, 60, 1)[0],
        );
        assert_eq!(Ipv4Addr::from(ip.destination), SINK_DST);
    }

    /// Every carrier path's config, with one route and with many, is one the dataplane parses
    /// and compiles, and holds the routes asked for.
    #[test]
    fn configs_compile_with_many_routes() {
        for path in ROUTED {
            for routes in [1, 300] {
                for has_express in [false, true] {
                    let text = path
                        .carrier_config(has_express, routes)
                        .expect("a carrier path has a config");
                    let config = Config::parse(&text)
                        .unwrap_or_else(|e| panic!("{path:?}, {routes} routes: {e:?}\n{text}"));
                    config
                        .tables()
                        .unwrap_or_else(|e| panic!("{path:?}, {routes} routes: {e:?}"));
                    if routes > 1 {
                        assert_eq!(
                            text.matches("vrf = \"red\"\nprefix").count(),
                            routes as usize,
                            "{path:?}"
                        );
                    }
                }
            }
        }
        let push = PathKind::MplsPush
            .carrier_config(true, 300)
            .expect("config");
        assert!(push.contains(&format!("labels = [{}]", PUSH_LABEL + 299)));
        assert!(PathKind::Kernel.carrier_config(true, 300).is_none());
    }

    /// A sample of a run that offered `offered` and forwarded `forwarded` Mpps.
    fn sample(offered: f64, forwarded: f64) -> Sample {
        Sample {
            offered_mpps: offered,
            forwarded_mpps: forwarded,
            class_share: 1.0,
            ring_drop_mpps: 0.0,
            sink_drop_mpps: 0.0,
            sink_frames: [0; CLASSES],
            dut_cpu: 0.5,
            other_cpu: 0.0,
            other_gen_cpu: 0.0,
            napi_cpu: 0.5,
            gen_note: String::new(),
            carrier: None,
        }
    }

    /// Runs a search against a model: a DUT forwarding up to `capacity` Mpps (all of it
    /// below, and only `flooded` when flooded past it), a generator flooding at `flood` and
    /// pacing up to `pace` Mpps.
    fn search(capacity: f64, flooded: f64, flood: f64, pace: f64) -> NoDropSearch {
        let mut search = NoDropSearch::new(DEFAULT_NO_DROP_STEPS, DEFAULT_NO_DROP_LOSS / 100.0);
        while let Some(load) = search.next() {
            let offered = match load {
                Load::Max => flood,
                Load::Paced(mpps) => mpps.min(pace),
            };
            let forwarded = match load {
                Load::Max if offered > capacity => flooded,
                _ => offered.min(capacity),
            };
            search.record(Step {
                load,
                sample: sample(offered, forwarded),
            });
            assert!(search.runs.len() <= DEFAULT_NO_DROP_STEPS as usize + 1);
        }
        search
    }

    #[test]
    fn no_drop_search_brackets_the_capacity() {
        // A DUT that collapses when flooded: the search climbs above the flooded rate.
        let s = search(2.0, 0.8, 4.0, 4.0);
        let (rate, bound) = s.rate();
        assert!(!bound);
        assert!(rate <= 2.0 && rate > 2.0 * 0.97, "{rate}: {}", s.trail());
        assert!(s.lowest_failure().expect("a failure") > 2.0);
        // A DUT that keeps its rate when flooded.
        let (rate, bound) = search(1.5, 1.5, 4.0, 4.0).rate();
        assert!(!bound && rate <= 1.5 && rate > 1.5 * 0.97, "{rate}");
        // Faster than the generator: the flooded run passes, a lower bound.
        let s = search(5.0, 5.0, 4.0, 4.0);
        assert_eq!(s.runs.len(), 1);
        assert_eq!(s.rate(), (4.0, true));
        // The generator paces no faster than 1 Mpps: a lower bound at what it sent.
        let s = search(3.0, 0.5, 4.0, 1.0);
        let (rate, bound) = s.rate();
        assert!(bound && (rate - 1.0).abs() < 1e-9, "{rate}: {}", s.trail());
        // Losing everything: nothing passes.
        let s = search(0.0, 0.0, 4.0, 4.0);
        assert!(s.best().is_none());
        assert_eq!(s.rate(), (0.0, false));
    }
}
