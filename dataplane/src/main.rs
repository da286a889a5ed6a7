//! `carrier-dataplane`: the dataplane binary.
//!
//! - `replay`: run the pipeline over a pcap offline and write what each port would send;
//! - `trace`: show step by step what the pipeline decides for one frame;
//! - `check-config`: load a config and print the tables it compiles to;
//! - `run`: forward on the config's interfaces (XDP + AF_XDP), serving the table socket;
//! - `ctl`: talk to a running dataplane's table socket (counters, status, apply, replace).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use carrier_dataplane::config::Config;
use carrier_dataplane::replay::{read_pcap, Replayer};
use carrier_dataplane::tables::Tables;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "carrier-dataplane", version, about = "carrier's provider-edge dataplane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline over a pcap; write one pcap per egress port (plus replies.pcap and
    /// to-host.pcap) and counters.json into the output directory.
    Replay {
        /// The config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The input capture.
        #[arg(long = "in")]
        input: PathBuf,
        /// The port (interface name) the frames arrive on.
        #[arg(long)]
        ingress: String,
        /// Where to write the outputs.
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Print each step the pipeline takes for one frame.
    Trace {
        /// The config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The port (interface name) the frame arrives on.
        #[arg(long)]
        ingress: String,
        /// The frame as hex (spaces and colons allowed).
        #[arg(long, conflicts_with = "pcap")]
        hex: Option<String>,
        /// A pcap to take the frame from.
        #[arg(long, requires = "index")]
        pcap: Option<PathBuf>,
        /// The frame's index in the pcap (from 0).
        #[arg(long)]
        index: Option<usize>,
    },
    /// Load a config and print the table commands it compiles to (JSON lines).
    CheckConfig {
        /// The config file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Forward on the interfaces named in the config: attach the XDP program, open AF_XDP
    /// sockets, serve the table socket, until SIGINT or SIGTERM.
    Run {
        /// The config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The table socket (default: the config's `[dataplane] socket`, else
        /// /run/carrier/dataplane.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Pin worker 0 to this CPU, worker N to the Nth after it (leave the other CPUs to the
        /// kernel's receive work).
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Talk to a running dataplane's table socket.
    Ctl {
        /// The table socket.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[command(subcommand)]
        action: CtlAction,
    },
}

const DEFAULT_SOCKET: &str = "/run/carrier/dataplane.sock";

#[derive(Subcommand, Debug)]
enum CtlAction {
    /// Print the counters (JSON).
    Counters,
    /// Print a table summary.
    Status,
    /// Print every route, label and bridge entry (JSON).
    Dump,
    /// The neighbours: configured and learned from ARP.
    Neighbours,
    /// Apply the table commands of a config file on top of the current tables.
    Apply {
        /// Config file whose compiled commands are sent (its `clear` is left out).
        #[arg(long)]
        config: PathBuf,
    },
    /// Replace everything above the base config with a config file's commands; with --hold,
    /// stay connected until killed (as a control process would).
    Replace {
        /// Config file whose compiled commands are sent.
        #[arg(long)]
        config: PathBuf,
        /// Stay connected after the reply.
        #[arg(long)]
        hold: bool,
    },
}

fn load(path: &std::path::Path) -> Result<Tables> {
    let config = Config::load(path).with_context(|| format!("config {}", path.display()))?;
    config.tables().with_context(|| format!("config {}", path.display()))
}

fn ingress_port(tables: &Tables, name: &str) -> Result<carrier_common::PortId> {
    match tables.port_by_name(name) {
        Some(p) => Ok(p.id),
        None => {
            let names: Vec<&str> = tables.ports.iter().map(|p| p.name.as_str()).collect();
            bail!("no port named {name:?} in the config (ports: {})", names.join(", "))
        }
    }
}

fn parse_hex(s: &str) -> Result<Vec<u8>> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
    if !digits.len().is_multiple_of(2) {
        bail!("hex frame has an odd number of digits");
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).with_context(|| format!("not hex: {:?}", &digits[i..i + 2])))
        .collect()
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Replay { config, input, ingress, out_dir } => {
            let tables = load(&config)?;
            let port = ingress_port(&tables, &ingress)?;
            let frames = read_pcap(&input)?;
            let n = frames.len();
            let mut r = Replayer::new(&tables);
            r.feed(frames, port);
            r.write_outputs(&out_dir)?;
            println!("{n} frames in on {ingress}");
            for (name, frames) in &r.out {
                println!("{:>6} out  {}", frames.len(), out_dir.join(format!("{name}.pcap")).display());
            }
            let mut drops = std::collections::BTreeMap::new();
            for (_, reason) in &r.drops {
                *drops.entry(reason.name()).or_insert(0) += 1;
            }
            for (reason, count) in drops {
                println!("{count:>6} dropped: {reason}");
            }
            println!("counters: {}", out_dir.join("counters.json").display());
        }
        Command::Trace { config, ingress, hex, pcap, index } => {
            let tables = load(&config)?;
            let port = ingress_port(&tables, &ingress)?;
            let frame = match (hex, pcap, index) {
                (Some(h), _, _) => parse_hex(&h)?,
                (None, Some(p), Some(i)) => {
                    let frames = read_pcap(&p)?;
                    let n = frames.len();
                    frames.into_iter().nth(i).with_context(|| format!("{} has {n} frames; no index {i}", p.display()))?
                }
                _ => bail!("give --hex FRAME or --pcap FILE --index N"),
            };
            let mut r = Replayer::new(&tables);
            let (steps, verdict) = r.trace(&frame, port);
            for (i, s) in steps.iter().enumerate() {
                println!("{:>2}. {s}", i + 1);
            }
            println!("verdict: {verdict:?}");
            for (name, frames) in &r.out {
                for f in frames {
                    println!("out {name}: {}", f.iter().map(|b| format!("{b:02x}")).collect::<String>());
                }
            }
        }
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            for cmd in c.commands()? {
                println!("{}", serde_json::to_string(&cmd)?);
            }
            let t = c.tables()?;
            eprintln!("ok: {} ports, {} vrfs, {} labels, {} bridge domains", t.ports.len(), t.vrfs.len(), t.ilm.len(), t.bridges.len());
        }
        Command::Run { config, socket, cpu } => run(&config, socket.as_deref(), cpu)?,
        Command::Ctl { socket, action } => ctl(&socket, action)?,
    }
    Ok(())
}

fn run(config: &std::path::Path, socket: Option<&std::path::Path>, cpu: Option<usize>) -> Result<()> {
    use carrier_dataplane::ctl::{bind, serve_on, TableWriter};
    use carrier_dataplane::io::{self, signals, xsk::XskPorts, CounterBoard};
    use carrier_dataplane::tables::TableHandle;
    use carrier_dataplane::xdp::XdpDataplane;

    let parsed = Config::load(config).with_context(|| format!("config {}", config.display()))?;
    let mut tables = parsed.tables().with_context(|| format!("config {}", config.display()))?;
    // A single-file PE config may name the table socket (relative: from the file's directory).
    let from_file = parsed.dataplane.as_ref().and_then(|d| d.socket.clone()).map(|s| match config.parent() {
        Some(dir) if s.is_relative() => dir.join(s),
        _ => s,
    });
    let socket_path = socket.map(std::path::Path::to_path_buf).or(from_file).unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let socket = socket_path.as_path();
    if !signals::is_root() {
        bail!("carrier-dataplane run needs root (CAP_NET_ADMIN and CAP_BPF) to attach XDP programs and open AF_XDP sockets");
    }
    for p in &tables.ports {
        if carrier_dataplane::io::netdev::ifindex(&p.name).is_none() {
            bail!("port {:?} of the config: there is no such interface here", p.name);
        }
    }
    let mut xdp = XdpDataplane::load().context("loading the XDP program")?;
    let mut modes = std::collections::HashMap::new();
    for p in &tables.ports {
        let mode = xdp.attach(&p.name, u32::from(p.id.0)).with_context(|| format!("attaching XDP to {}", p.name))?;
        log::info!("port {} ({}): XDP attached in {mode} mode", p.name, p.id);
        modes.insert(p.id, mode.name());
    }
    for a in &parsed.router.host_addresses {
        xdp.add_host_addr(*a)?;
        log::info!("host address {a}: BGP and ARP replies for it go to the kernel");
    }
    let ports: Vec<_> = tables.ports.iter().map(|p| (p.id, p.name.clone())).collect();
    // A worker per receive queue, each with a socket on its queue of every port.
    let rx_queues = tables.ports.iter().map(|p| carrier_dataplane::io::netdev::rx_queues(&p.name)).min().unwrap_or(1);
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let workers = match parsed.router.workers {
        0 => rx_queues.min(cpus),
        n if n > rx_queues => {
            log::warn!("workers = {n}, but a port has only {rx_queues} receive queue(s): {rx_queues} workers");
            rx_queues
        }
        n => n,
    }
    .clamp(1, carrier_common::MAX_QUEUES as usize);
    let mut queues = Vec::with_capacity(workers);
    for q in 0..workers {
        queues.push(XskPorts::open_queue(&ports, q as u32).with_context(|| format!("opening AF_XDP sockets on queue {q}"))?);
    }
    log::info!("{workers} AF_XDP worker(s), one per receive queue (the ports have at least {rx_queues}; {cpus} CPUs)");
    let mut xsk = queues.remove(0);
    let mut host = None;
    if parsed.router.host_path {
        let prefix = carrier_dataplane::host::own_netns_name().unwrap_or_else(|| "carrier".to_string());
        let plan = carrier_dataplane::host::plan(&tables, &prefix);
        let (path, taps) = carrier_dataplane::host::HostPath::create(&plan).context("creating the host path (kernel mirrors of the ports)")?;
        for m in &plan {
            log::info!("port {}: host path through {} in {}", m.port_name, m.name, m.netns.as_deref().unwrap_or("this namespace"));
        }
        for (port, tap) in taps {
            xsk.attach_host(port, tap);
            if let Some(p) = tables.ports.get_mut(port.index()) {
                p.host = true;
            }
        }
        host = Some(path);
    } else {
        log::info!("host path off: traffic for the router's own addresses is counted as to_host and dropped");
    }
    for x in std::iter::once(&xsk).chain(&queues) {
        if let Err(e) = x.prefer_busy_poll() {
            log::info!("busy polling not enabled ({e}): the worker waits in poll() when idle");
        }
        for (port, queue, fd) in x.sockets() {
            xdp.bind_socket(u32::from(port.0), queue, fd)?;
        }
    }
    let listener = bind(socket).with_context(|| format!("table socket {}", socket.display()))?;
    // Everything privileged that starts the dataplane is done (threads come after: capabilities
    // are per thread, and they inherit these).
    match carrier_dataplane::io::caps::drop_all_but_kept() {
        Ok(kept) => log::info!("capabilities dropped but {} (also from the bounding set)", kept.join(", ")),
        Err(e) => log::warn!("could not drop capabilities ({e}): running with all of them"),
    }
    let stop = signals::install();
    let handle = TableHandle::new(tables.clone());
    let board = CounterBoard::new(workers);
    // CARRIER_EXPRESS=1 / 0 overrides the config (the test suite runs the end-to-end tests
    // both ways).
    let express_on = match std::env::var("CARRIER_EXPRESS").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => parsed.router.express,
    };
    // Ports a change adds while running are opened by the XDP thread (it owns the program).
    let (ports_link, port_rx) = carrier_dataplane::ctl::PortLink::channel();
    let (writer, mirror_rx) = if express_on {
        let (link, rx) = carrier_dataplane::express::MirrorLink::channel();
        (TableWriter::new(tables.clone(), handle.clone()).with_mirror(link).with_ports(ports_link), Some(rx))
    } else {
        (TableWriter::new(tables.clone(), handle.clone()).with_ports(ports_link), None)
    };
    // Which tier serves each port's received frames, and why.
    let mut not_served = vec![];
    for p in &tables.ports {
        let mode = modes.get(&p.id).copied().unwrap_or("");
        let why = if !express_on {
            Some("the express tier is off")
        } else if !parsed.express_on(&p.name) {
            Some("express = false on the port")
        } else if mode != "native" {
            Some("the XDP program runs in skb mode here")
        } else if p.vlan.is_some() && matches!(p.role, carrier_dataplane::tables::PortRole::Bridge(_)) {
            Some("a tagged bridge port")
        } else {
            None
        };
        match why {
            None => log::info!("port {}: express tier (VRF forward, MPLS push, pop and swap, routed VXLAN, known-unicast bridging in the XDP program), the rest on AF_XDP", p.name),
            Some(why) => {
                log::info!("port {}: AF_XDP path only ({why})", p.name);
                not_served.push(u32::from(p.id.0));
            }
        }
    }
    let server = serve_on(listener, socket, writer, board.clone(), stop)
        .with_context(|| format!("table socket {}", socket.display()))?;
    log::info!("forwarding on {} ports; table socket {}", ports.len(), socket.display());
    println!("carrier-dataplane: forwarding on {}; table socket {}", ports.iter().map(|p| p.1.as_str()).collect::<Vec<_>>().join(", "), socket.display());
    // The XDP program's owner: mirrors the tables into the express tier, publishes the
    // program's counters until stop, then detaches.
    let mut xdp_ports: Vec<(u32, String, &'static str)> = tables.ports.iter().map(|p| (u32::from(p.id.0), p.name.clone(), modes.get(&p.id).copied().unwrap_or(""))).collect();
    let xdp_board = board.clone();
    let xdp_handle = handle.clone();
    let xdp_thread = std::thread::Builder::new().name("xdp".into()).spawn(move || -> Result<()> {
        use carrier_dataplane::express::{Change, Mirror};
        let mut mirror = Mirror::new(express_on).not_serving(not_served);
        if express_on {
            for (port, takes) in xdp.refresh_egress() {
                if !takes {
                    log::warn!("express tier: port {port} does not take redirected frames (a veth whose peer has neither GRO nor an XDP program): frames out of it go through the AF_XDP path; `ethtool -K <peer> gro on` lets the XDP program send them");
                }
            }
        }
        let mut learned = xdp_board.learned();
        let mut resync = false;
        if let Err(e) = mirror.sync(&mut xdp, &xdp_handle.load(), &learned, Change::All) {
            log::warn!("express tier: writing its tables failed ({e}); retrying");
            resync = true;
        }
        if express_on {
            log::info!("express tier on: the XDP program forwards VRF, MPLS push, pop and swap, routed VXLAN, known-unicast bridging itself");
        }
        let mut next_publish = std::time::Instant::now();
        let mut rounds = 0u64;
        let mut last_labels = ExpressLabels::default();
        // Adjacency slot → its packet count at the last read.
        let mut last_adj: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
        // Ports whose headroom check the log has told.
        let mut headroom_told: std::collections::HashSet<usize> = std::collections::HashSet::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            while let Ok(job) = port_rx.try_recv() {
                let r = open_port_live(&mut xdp, &xdp_board, &job.name, job.port, express_on);
                match &r {
                    Ok(mode) => {
                        log::info!("port {} ({}): opened while running, XDP in {mode} mode, a socket on every worker's queue; no host mirror", job.name, job.port);
                        if *mode != "native" || !express_on {
                            mirror.set_not_served(u32::from(job.port.0));
                        }
                        xdp_ports.push((u32::from(job.port.0), job.name.clone(), mode));
                    }
                    Err(e) => log::warn!("port {} ({}): {e}", job.name, job.port),
                }
                let _ = job.done.send(r.map(|_| ()));
            }
            if let Some(rx) = &mirror_rx {
                match rx.recv_timeout(std::time::Duration::from_millis(20)) {
                    Ok(job) => {
                        learned = xdp_board.learned();
                        let change = match &job.commands {
                            Some(c) if !resync => Change::Commands(c),
                            _ => Change::All,
                        };
                        resync = match mirror.sync(&mut xdp, &job.tables, &learned, change) {
                            Ok(()) => false,
                            Err(e) => {
                                log::warn!("express tier: writing its tables failed ({e}); resyncing");
                                true
                            }
                        };
                        drop(job.tables);
                        let _ = job.done.send(());
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            } else {
                std::thread::sleep(io::PUBLISH_EVERY);
            }
            if std::time::Instant::now() < next_publish {
                continue;
            }
            next_publish = std::time::Instant::now() + io::PUBLISH_EVERY;
            rounds += 1;
            if let Some(h) = host.as_mut() {
                for (port, up) in h.follow_links() {
                    log::info!("port {port}: link {}, its mirror follows", if up { "up" } else { "down" });
                }
            }
            let stats = xdp_ports.iter().filter_map(|(slot, name, mode)| xdp.port_stats(*slot).ok().map(|s| (name.clone(), *mode, s))).collect();
            xdp_board.publish_xdp(stats);
            if !express_on {
                continue;
            }
            for (port, takes) in xdp.refresh_egress() {
                if takes {
                    log::info!("express tier: port {port} takes redirected frames: the XDP program sends out of it");
                } else {
                    log::warn!("express tier: port {port} does not take redirected frames (a veth whose peer has neither GRO nor an XDP program): frames out of it go through the AF_XDP path; `ethtool -K <peer> gro on` lets the XDP program send them");
                }
            }
            let snapshot = xdp_handle.load();
            let now_learned = xdp_board.learned();
            if !now_learned.same_entries(&learned) || resync {
                learned = now_learned;
                let change = if resync { Change::All } else { Change::Neighbours };
                resync = mirror.sync(&mut xdp, &snapshot, &learned, change).is_err();
            }
            // Ports and VRFs every round; labels and adjacencies (batch reads of 4096) every
            // round while there are few, else every tenth.
            let (labels, slots) = if mirror.slots_used() <= 16_384 || rounds % 10 == 1 { (mirror.labels().collect::<Vec<_>>(), mirror.slots_used()) } else { (vec![], 0) };
            match xdp.express_counters(snapshot.vrfs.len() as u32, &labels, slots) {
                Ok(c) => {
                    for (p, s) in snapshot.ports.iter().zip(&c.ports).enumerate().filter(|(i, (_, s))| (s.headroom_ok | s.headroom_short) != 0 && headroom_told.insert(*i)).map(|(_, x)| x) {
                        if s.headroom_short == 0 {
                            log::info!("express tier: port {}: its first frame had the XDP headroom the tier's largest push needs ({} bytes)", p.name, carrier_common::express::MAX_GROWTH);
                        } else {
                            log::warn!("express tier: port {}: the driver leaves less than {} bytes of XDP headroom: frames received here that need labels pushed or VXLAN are left to the AF_XDP path (punt reason `headroom`)", p.name, carrier_common::express::MAX_GROWTH);
                        }
                    }
                    publish_express(&xdp_board, &mut mirror, &snapshot, &c, slots > 0, &mut last_labels);
                    if slots > 0 {
                        // Neighbours the tier sent to since the last read: in use, for aging.
                        let neighbours = mirror.neighbour_slots();
                        let used: Vec<_> = c
                            .adjacencies
                            .iter()
                            .filter(|(slot, b)| last_adj.insert(*slot, b.packets) != Some(b.packets))
                            .filter_map(|(slot, _)| neighbours.get(slot).copied())
                            .collect();
                        if !used.is_empty() {
                            xdp_board.mark_express_used(used);
                        }
                    }
                }
                Err(e) => log::debug!("express counters: {e}"),
            }
            // Per-prefix counts of the VRFs that keep them, once a second (a read of the
            // whole counter map).
            if rounds % 10 == 1 {
                publish_route_stats(&mut xdp, &mirror, &snapshot, &xdp_board);
            }
        }
        for (slot, name, _) in &xdp_ports {
            if let Ok(s) = xdp.port_stats(*slot) {
                log::info!("port {name}: xdp redirected {} passed {} dropped {}", s.redirected, s.passed, s.dropped);
            }
        }
        xdp.detach_all()?;
        drop(host);
        Ok(())
    })?;
    // Workers 1.. on threads of their own (the host path's mirrors are worker 0's).
    let mut others = vec![];
    for (i, mut x) in queues.into_iter().enumerate() {
        let q = i + 1;
        let (handle, board) = (handle.clone(), board.clone());
        let thread = std::thread::Builder::new().name(format!("worker-{q}")).spawn(move || {
            if let Some(cpu) = cpu {
                match io::signals::pin_to_cpu(cpu + q) {
                    Ok(()) => log::info!("worker {q} pinned to CPU {}", cpu + q),
                    Err(e) => log::warn!("worker {q}: pinning to CPU {} failed ({e})", cpu + q),
                }
            }
            let worker = io::run_worker(&mut x, &handle, stop, &board, q);
            log::info!("worker {q} stopping: {:?}; kernel socket stats (port, rx dropped, rx ring full) {:?}", x.stats, x.kernel_stats());
            worker.counters
        })?;
        others.push(thread);
    }
    if let Some(cpu) = cpu {
        io::signals::pin_to_cpu(cpu).with_context(|| format!("pinning the worker to CPU {cpu}"))?;
        log::info!("worker 0 pinned to CPU {cpu}");
    }
    let worker = io::run_worker(&mut xsk, &handle, stop, &board, 0);
    log::info!("worker 0 stopping: {:?}; kernel socket stats (port, rx dropped, rx ring full) {:?}", xsk.stats, xsk.kernel_stats());
    let names: Vec<String> = tables.ports.iter().map(|p| p.name.clone()).collect();
    let vrfs: Vec<String> = tables.vrfs.iter().map(|v| v.name.clone()).collect();
    // The worker's final counters with what the express tier forwarded (as last published).
    let mut total = worker.counters.clone();
    for thread in others {
        match thread.join() {
            Ok(counters) => total.merge(&counters),
            Err(_) => bail!("a worker panicked"),
        }
    }
    total.merge(&board.express_total());
    println!("{}", serde_json::to_string(&total.to_json(&names, &vrfs))?);
    drop(xsk);
    match xdp_thread.join() {
        Ok(r) => r?,
        Err(_) => bail!("the XDP thread panicked"),
    }
    let _ = server.join();
    Ok(())
}

/// The express tier's label counters as last read: (label, counters) in and out.
#[derive(Default)]
struct ExpressLabels {
    inbound: carrier_dataplane::tables::LabelCounters,
    outbound: carrier_dataplane::tables::LabelCounters,
}

/// Open interface `name` as port `port` while running: the XDP program attached, a socket on
/// every worker's queue, the XSKMAP pointed at them. Returns the attach mode.
fn open_port_live(xdp: &mut carrier_dataplane::xdp::XdpDataplane, board: &carrier_dataplane::io::CounterBoard, name: &str, port: carrier_common::PortId, express_on: bool) -> Result<&'static str, String> {
    let slot = u32::from(port.0);
    if carrier_dataplane::io::netdev::ifindex(name).is_none() {
        return Err(format!("there is no interface {name} here"));
    }
    let mode = xdp.attach(name, slot).map_err(|e| format!("attaching XDP to {name}: {e}"))?.name();
    let sockets = match board.open_port(port, name, std::time::Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            let _ = xdp.detach(name);
            return Err(e);
        }
    };
    for (queue, fd) in sockets {
        // SAFETY: the descriptor is a socket its worker owns and keeps open for the process's
        // life; the XSKMAP takes its own reference.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if let Err(e) = xdp.bind_socket(slot, queue, fd) {
            let _ = xdp.detach(name);
            return Err(format!("{name}: queue {queue}: {e}"));
        }
    }
    if express_on {
        xdp.refresh_egress();
    }
    Ok(mode)
}

/// Publish what the XDP program counted per route of the VRFs with per-prefix counters, by
/// (VRF, prefix); counters of slots no counted route holds any more are deleted.
fn publish_route_stats(xdp: &mut carrier_dataplane::xdp::XdpDataplane, mirror: &carrier_dataplane::express::Mirror, tables: &carrier_dataplane::tables::Tables, board: &carrier_dataplane::io::CounterBoard) {
    use carrier_dataplane::express::ExpressMaps;
    let mut counts = std::collections::BTreeMap::new();
    if mirror.counts_prefixes() {
        match xdp.route_stats() {
            Ok(stats) => {
                let owners = mirror.counted_routes(tables);
                for (slot, c) in stats {
                    match owners.get(&slot) {
                        Some(&key) => {
                            let e: &mut carrier_dataplane::pipeline::PacketBytes = counts.entry(key).or_default();
                            e.packets += c.packets;
                            e.bytes += c.bytes;
                        }
                        None => {
                            let _ = xdp.clear_route_stats(slot);
                        }
                    }
                }
            }
            Err(e) => log::debug!("express route counters: {e}"),
        }
    }
    board.publish_express_prefixes(counts);
}

/// Publish the express tier's counters in the workers' terms. `full`: labels and
/// adjacencies were read this round; otherwise the last ones (`last`) are kept.
fn publish_express(
    board: &carrier_dataplane::io::CounterBoard,
    mirror: &mut carrier_dataplane::express::Mirror,
    tables: &carrier_dataplane::tables::Tables,
    c: &carrier_dataplane::xdp::ExpressCounters,
    full: bool,
    last: &mut ExpressLabels,
) {
    use carrier_common::express::Punt;
    use carrier_dataplane::pipeline::{Counters, PacketBytes};
    let pb = |b: carrier_common::express::ExBytes| PacketBytes { packets: b.packets, bytes: b.bytes };
    let mut out = Counters::default();
    out.ensure(tables.ports.len(), tables.vrfs.len());
    for (i, s) in c.ports.iter().enumerate() {
        if let Some(p) = out.ports.get_mut(i) {
            p.rx = pb(s.rx);
            p.tx = pb(s.tx);
        }
    }
    // ARP requests for own addresses the program answered (sent back out of their port).
    out.events[carrier_dataplane::pipeline::Event::ArpReplyOwn as usize] = c.ports.iter().map(|s| s.arp_replies).sum();
    out.events[carrier_dataplane::pipeline::Event::ArpReplyProxy as usize] = c.ports.iter().map(|s| s.arp_proxy_replies).sum();
    out.events[carrier_dataplane::pipeline::Event::ArpSuppressed as usize] = c.ports.iter().map(|s| s.arp_suppressed).sum();
    for (i, v) in c.vrfs.iter().enumerate() {
        if let Some(o) = out.vrfs.get_mut(i) {
            o.lookups = pb(*v);
        }
    }
    {
        if full {
            mirror.prune_retired(tables);
            let slots = mirror.slot_labels();
            let mut outs = carrier_dataplane::tables::LabelCounters::default();
            for (slot, b) in &c.adjacencies {
                for l in slots.get(slot).into_iter().flatten() {
                    outs.add_count(*l, pb(*b));
                }
            }
            for (l, (p, b)) in &mirror.retired_labels_out {
                outs.add_count(*l, PacketBytes { packets: *p, bytes: *b });
            }
            let mut ins = carrier_dataplane::tables::LabelCounters::default();
            for (l, b) in &c.labels_in {
                ins.add_count(*l, pb(*b));
            }
            (last.inbound, last.outbound) = (ins, outs);
        }
        out.labels_in.clone_from(&last.inbound);
        out.labels_out.clone_from(&last.outbound);
    }
    let ports = tables
        .ports
        .iter()
        .zip(&c.ports)
        .map(|(p, s)| {
            let punts = Punt::ALL.iter().filter(|r| s.punts[**r as usize] > 0).map(|r| (r.name().to_string(), s.punts[*r as usize])).collect();
            let headroom = match (s.headroom_ok, s.headroom_short) {
                (0, 0) => None,
                (_, 0) => Some(true),
                _ => Some(false),
            };
            (p.name.clone(), s.rx.packets, punts, headroom)
        })
        .collect();
    board.publish_express(out, ports);
}

fn ctl(socket: &std::path::Path, action: CtlAction) -> Result<()> {
    use carrier_dataplane::ctl::{Client, Request, Response};
    let mut client = Client::connect(socket).with_context(|| format!("connecting to {}", socket.display()))?;
    let (request, hold) = match action {
        CtlAction::Counters => (Request::Counters, false),
        CtlAction::Status => (Request::Status, false),
        CtlAction::Dump => (Request::Dump, false),
        CtlAction::Neighbours => (Request::Neighbours, false),
        CtlAction::Apply { config } => {
            let mut commands = Config::load(&config)?.commands()?;
            commands.retain(|c| !matches!(c, carrier_dataplane::tables::TableCommand::Clear));
            (Request::Apply { commands, more: false }, false)
        }
        CtlAction::Replace { config, hold } => {
            let mut commands = Config::load(&config)?.commands()?;
            commands.retain(|c| !matches!(c, carrier_dataplane::tables::TableCommand::Clear));
            (Request::Replace { commands, more: false }, hold)
        }
    };
    let response = client.request(&request)?;
    println!("{}", serde_json::to_string_pretty(&response)?);
    if let Response::Rejected { .. } | Response::Error { .. } = response {
        bail!("the dataplane refused the request");
    }
    if hold {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    Ok(())
}
