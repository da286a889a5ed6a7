//! The cost of each pipeline path per packet: `pipeline::process` over batches of 64 frames,
//! one thread, no I/O. Reports ns/packet and cycles at the CPU's nominal clock and, with
//! `--instructions`, instructions per packet counted by valgrind's callgrind over
//! `pipeline::process` alone — deterministic: the same build gives the same count on any
//! machine and under any load, so it shows what a change did where the timings drown in noise.
//!
//! With `--routes N`, two paths run over a large table as well: `vrf-forward-scale` (N routes
//! in VRF red, destinations drawn at random from them) and `pop-lookup-scale` (N routes spread
//! over 100 VRFs, a per-VRF label each; frames from the core with a random VRF's label and one
//! of its prefixes as destination, pushed back toward a remote PE).
//!
//! Run: `cargo build --release -p carrier-bench && target/release/carrier-pathcost
//! [--instructions] [--routes 10000]`. Results: bench/RESULTS.md.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use carrier_common::{Label, NextHopId, PortId, VrfId};
use carrier_dataplane::pipeline::{process, Batch, Frame, VecFrame, VecPool, Verdict, Worker};
use carrier_dataplane::tables::{IlmAction, Ipv4Prefix, LabelStack, NextHop, Table, TableCommand, Tables};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "ns, cycles and instructions per packet of each pipeline path")]
struct Args {
    /// Only the paths whose name contains this.
    #[arg(long)]
    path: Option<String>,
    /// Batches of 64 frames timed per path.
    #[arg(long, default_value_t = 20_000)]
    batches: u32,
    /// Also run the scale paths over this many routes (0: not).
    #[arg(long, default_value_t = 0)]
    routes: u32,
    /// Count instructions per packet with valgrind (callgrind) instead of timing.
    #[arg(long)]
    instructions: bool,
    /// (What the `--instructions` run executes under valgrind: process the batches, untimed.)
    #[arg(long, hide = true)]
    under_valgrind: bool,
}

/// One path: its name, its tables, its batches of frames and their ingress.
struct Case {
    name: String,
    tables: std::sync::Arc<Tables>,
    frames: Vec<(VecFrame, PortId)>,
}

/// A deterministic generator (xorshift), so every run draws the same destinations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

/// A /24 per route, 10.128.0.0 onwards then 11.0.0.0 onwards: distinct and outside the
/// example PE's own prefixes.
fn prefix(i: u32) -> Ipv4Prefix {
    Ipv4Prefix::new(Ipv4Addr::from(0x0a80_0000 + (i << 8)), 24).expect("a /24")
}

fn cases(routes: u32) -> Result<Vec<Case>> {
    let example = std::sync::Arc::new(carrier_bench::example_tables());
    let mut out: Vec<Case> = carrier_bench::paths()
        .into_iter()
        .map(|p| Case { name: p.name.to_string(), tables: example.clone(), frames: p.frames.iter().map(|f| (VecFrame::new(f), PortId(p.ingress))).collect() })
        .collect();
    if routes == 0 {
        return Ok(out);
    }
    let a = |s: &str| -> Ipv4Addr { s.parse().expect("an address") };
    let (red_mac, host, core_mac, peer) = ("02:00:00:00:01:01", "02:aa:00:00:00:02", "02:00:00:00:00:01", "02:cc:00:00:00:02");
    // The example PE's push next hop toward 10.255.0.2 is what every scale route uses.
    let push = NextHop::MplsPush { labels: LabelStack::new(&[Label::new(7000).expect("a label")]).expect("one label"), tc: None, pe: a("10.255.0.2") };
    let nh = NextHopId(example.nexthops.len() as u32);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // vrf-forward-scale: every route in red.
    let mut t = (*example).clone();
    let red = t.vrf_by_name("red").context("VRF red")?.id;
    let mut cmds = vec![TableCommand::NextHop { id: nh, nexthop: push.clone() }];
    cmds.extend((0..routes).map(|i| TableCommand::Route { table: Table::Vrf(red), prefix: prefix(i), nexthop: nh }));
    t.apply_all(cmds).map_err(|(i, e)| anyhow::anyhow!("command {i}: {e}"))?;
    let frames = (0..4096)
        .map(|s| {
            let dst = prefix(rng.next() % routes).addr();
            let dst = Ipv4Addr::from(u32::from(dst) | 5);
            (VecFrame::new(&carrier_bench::udp_frame(red_mac, host, a("10.1.0.2"), dst, 1000 + s as u16, 18)), PortId(0))
        })
        .collect();
    out.push(Case { name: format!("vrf-forward-scale ({routes} routes)"), tables: std::sync::Arc::new(t), frames });

    // pop-lookup-scale: 100 VRFs, routes spread over them, a per-VRF label each.
    let mut t = (*example).clone();
    let first_vrf = t.vrfs.len() as u16;
    let mut cmds = vec![TableCommand::NextHop { id: nh, nexthop: push }];
    for v in 0..100u16 {
        let id = VrfId(first_vrf + v);
        cmds.push(TableCommand::Vrf { id, name: format!("scale{v}"), source: None, prefix_counters: false });
        cmds.push(TableCommand::Label { label: Label::new(200_000 + u32::from(v)).expect("a label"), action: IlmAction::PopLookup { vrf: id } });
    }
    cmds.extend((0..routes).map(|i| TableCommand::Route { table: Table::Vrf(VrfId(first_vrf + (i % 100) as u16)), prefix: prefix(i), nexthop: nh }));
    t.apply_all(cmds).map_err(|(i, e)| anyhow::anyhow!("command {i}: {e}"))?;
    let frames = (0..4096)
        .map(|s| {
            let i = rng.next() % routes;
            let dst = Ipv4Addr::from(u32::from(prefix(i).addr()) | 5);
            let inner = carrier_bench::udp_frame(red_mac, host, a("10.9.9.9"), dst, 1000 + s as u16, 18)[14..].to_vec();
            (VecFrame::new(&carrier_bench::mpls_frame(core_mac, peer, 200_000 + i % 100, 64, &inner)), PortId(4))
        })
        .collect();
    out.push(Case { name: format!("pop-lookup-scale ({routes} routes, 100 VRFs)"), tables: std::sync::Arc::new(t), frames });
    Ok(out)
}

/// Refill `batch` with the `k`-th 64 frames of `case` (copies into the frames already there:
/// no allocation once the batch has held frames).
fn refill(batch: &mut Batch<VecFrame>, case: &Case, k: usize, spare: &mut Vec<VecFrame>) {
    spare.extend(batch.packets.drain(..).map(|p| p.frame));
    let n = case.frames.len();
    for j in 0..64 {
        let (f, ingress) = &case.frames[(k * 64 + j) % n];
        let frame = match spare.pop() {
            Some(mut x) => {
                x.clone_from(f);
                x
            }
            None => f.clone(),
        };
        batch.push(frame, *ingress);
    }
}

/// Check the path forwards (or replies): a benchmark of drops would mislead.
fn check(case: &Case) -> Result<()> {
    let mut batch = Batch::default();
    refill(&mut batch, case, 0, &mut vec![]);
    process(&case.tables, &mut batch, &mut Worker::default(), &mut VecPool);
    let bad: Vec<_> = batch.packets.iter().map(|p| p.verdict).filter(|v| !matches!(v, Verdict::Forward(_) | Verdict::Reply)).collect();
    if !bad.is_empty() {
        bail!("{}: {bad:?}", case.name);
    }
    Ok(())
}

/// Process `batches` batches of `case`; the time spent in `process` alone.
fn run(case: &Case, batches: u32) -> Duration {
    let mut worker = Worker::default();
    let mut batch = Batch::default();
    let mut spare = vec![];
    let mut spent = Duration::ZERO;
    for k in 0..batches as usize {
        refill(&mut batch, case, k, &mut spare);
        let t = Instant::now();
        process(&case.tables, &mut batch, &mut worker, &mut VecPool);
        spent += t.elapsed();
    }
    std::hint::black_box(batch.packets.first().map(|p| p.frame.data().len()));
    spent
}

/// The nominal clock of the CPU in GHz, from /proc/cpuinfo (`cpu MHz` of the first CPU).
fn ghz() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info.lines().find(|l| l.starts_with("cpu MHz"))?.split(':').nth(1)?.trim().parse().ok()?;
    Some(mhz / 1000.0)
}

/// Instructions callgrind counts inside `pipeline::process` while this program processes
/// `batches` batches of the path named `name`.
fn instructions(name: &str, batches: u32, routes: u32) -> Result<u64> {
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("carrier-pathcost-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let out_file = dir.join("callgrind.out");
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--collect-atstart=no", "--toggle-collect=carrier_dataplane::pipeline::process*"])
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(&exe)
        .args(["--under-valgrind", "--path", name, "--batches", &batches.to_string(), "--routes", &routes.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("valgrind (cargo xtask setup installs it)")?;
    if !status.success() {
        bail!("valgrind on {name}: {status}");
    }
    let text = std::fs::read_to_string(&out_file)?;
    let _ = std::fs::remove_dir_all(&dir);
    // "summary: N" (or "totals: N") is the Ir collected.
    text.lines()
        .find_map(|l| l.strip_prefix("summary: ").or_else(|| l.strip_prefix("totals: ")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no summary in callgrind's output")
}

fn main() -> Result<()> {
    let args = Args::parse();
    let all = cases(args.routes)?;
    let chosen: Vec<&Case> = all.iter().filter(|c| args.path.as_deref().is_none_or(|p| c.name.contains(p))).collect();
    if args.under_valgrind {
        // Exactly one path, by its full name.
        let case = all.iter().find(|c| Some(c.name.as_str()) == args.path.as_deref()).context("--path names one path")?;
        run(case, args.batches);
        return Ok(());
    }
    for c in &chosen {
        check(c)?;
    }
    let ghz = ghz();
    println!("{:<44} {:>10} {:>10} {:>12}", "path", "ns/packet", "cycles", if args.instructions { "instr/packet" } else { "" });
    for c in chosen {
        let spent = run(c, args.batches);
        let ns = spent.as_secs_f64() * 1e9 / f64::from(args.batches) / 64.0;
        let cycles = ghz.map_or_else(|| "-".to_string(), |g| format!("{:.0}", ns * g));
        let instr = if args.instructions {
            // Two runs, 100 and 200 batches: the difference is 100 batches' worth, without
            // what a first batch costs (lazily built state, first allocations).
            let (a, b) = (instructions(&c.name, 100, args.routes)?, instructions(&c.name, 200, args.routes)?);
            format!("{:.1}", (b.saturating_sub(a)) as f64 / 6400.0)
        } else {
            String::new()
        };
        println!("{:<44} {ns:>10.1} {cycles:>10} {instr:>12}", c.name);
    }
    if let Some(g) = ghz {
        println!("(cycles at the nominal {g:.3} GHz of /proc/cpuinfo)");
    }
    Ok(())
}
