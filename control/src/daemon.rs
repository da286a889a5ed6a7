//! The control process's event loop: tokio tasks move bytes and fire timers; the BGP
//! sessions ([`Session`]) and the [`Rib`] decide.
//!
//! ```text
//!  ┌──────────┐ accepted TCP ┌───────────────┐ PeerEvent  ┌──────────────┐ ToDataplane  ┌─────────────┐
//!  │ listener │─────────────▶│ peer task ×N  │───────────▶│  rib task    │─────────────▶│ dataplane   │
//!  └──────────┘              │ Session (FSM) │◀───────────│ Rib,Compiler │◀─────────────│ writer      │
//!       TCP ⇄ codec ⇄ FSM    └───────────────┘ PeerCmd    └──────────────┘ applied seq, │ (std thread)│
//!                             (runtime workers)            (runtime's own   resync asks  └─────────────┘
//!                                                           thread)                 table socket ▶
//!         watch<PeerStatus> ▼              watch<RibSummary> ▼ ▲ Command
//!                     ┌──────────────────────────────────────────────┐   ┌────────────────────┐
//!                     │ State ◀── api (axum), /metrics, carrierctl  │◀──│ dataplane poller   │
//!                     └──────────────────────────────────────────────┘   │ (std thread)       │
//!                                                   watch<DataplaneStatus> └────────────────────┘
//! ```
//! - peer task: owns one [`Session`] and its TCP stream; decodes frames, runs the FSM, encodes
//!   what it says, keeps its timers. Peer tasks run on the runtime's worker threads, the rib
//!   task on the thread that drives the runtime: however long a flush takes, KEEPALIVEs go
//!   out and hold timers run;
//! - rib task: owns the [`Rib`] and the [`Compiler`]; every event marks what it touched, and
//!   at most every [`FLUSH_EVERY`] (sooner when [`FLUSH_PENDING`] destinations wait) a flush
//!   compiles only those into an incremental `apply`, and sends per peer the UPDATE diff;
//! - state ([`crate::state`]): the peer tasks, the rib task and a dataplane poller publish
//!   what operators read; the API sends commands to the rib task, which answers between
//!   events and relays neighbour commands to the peer tasks;
//! - dataplane writer (a std thread): keeps a table-socket connection and sends the changes in
//!   order, in chunks. After it (re)connects — the dataplane may have restarted — or after a
//!   refused change, it asks the rib task for the whole state and sends it as a `replace`
//!   before any further change.
//!
//! Graceful restart (RFC 4724): when the dataplane already holds state from an earlier run,
//! this process is a restarting speaker: it sets the R bit, and defers its first flush until
//! every peer sent End-of-RIB (or the restart time passes), so forwarding never drops to an
//! empty table while the peers resend. It also takes over the labels the earlier run left in
//! the dataplane's ILM ([`Rib::adopt_labels`]), so that the labels remote PEs hold stay right.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use carrier_contract::socket::{Client, Request, Response};
use carrier_contract::command::{IlmAction, TableCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::bgp::codec::{self, CodecContext};
use crate::bgp::fsm::{cease_subcode, Input, Output, PeerConfig, Session, Timer};
use crate::bgp::msg::{error_code, Family, Message, Notification, Update};
use crate::config::{ControlConfig, NeighborConfig};
use crate::fib::Compiler;
use crate::rib::{PeerInfo, Rib};
use crate::state::{
    ApplySummary, Command, CommandError, ControlCounters, DataplaneStatus, History, NeighborAction, PeerStatus,
    RibSummary, State, UPDATE_LATENCY_BUCKETS,
};

/// How often the rib task republishes its summary.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

/// Longest wait between a change and its flush.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Destinations waiting that make a flush happen before the tick.
pub const FLUSH_PENDING: usize = 100_000;

/// Once this many commands were sent since the last time, the dataplane writer gives the
/// allocator's free memory back to the kernel (see [`crate::sys::release_free_memory`]); it
/// also does when it goes idle after any.
const TRIM_AFTER: usize = 50_000;

/// What a peer task tells the RIB.
#[derive(Debug)]
pub enum PeerEvent {
    /// Established.
    Up {
        /// Peer address.
        addr: Ipv4Addr,
        /// Its facts.
        info: PeerInfo,
        /// Negotiated families.
        families: Vec<Family>,
    },
    /// Session lost.
    Down {
        /// Peer address.
        addr: Ipv4Addr,
        /// Keep its routes as stale (graceful restart helper).
        graceful: bool,
    },
    /// The peer asked for our routes again (ROUTE-REFRESH).
    Refresh {
        /// Peer address.
        addr: Ipv4Addr,
    },
    /// Routes (announcements, withdrawals, or an End-of-RIB when empty).
    Update {
        /// Peer address.
        addr: Ipv4Addr,
        /// The update.
        update: Update,
        /// The family of an empty update (End-of-RIB).
        eor: Option<Family>,
    },
}

/// What the RIB tells a peer task.
#[derive(Debug)]
pub enum PeerCommand {
    /// Send these UPDATEs, then End-of-RIB for these families.
    Send(Vec<Update>, Vec<Family>),
    /// Reset the session with this NOTIFICATION (e.g. Cease/Maximum Number of Prefixes
    /// Reached, RFC 4486); it restarts after the usual backoff.
    Reset(crate::bgp::msg::Notification),
    /// ManualStop: Cease/Administrative Shutdown (RFC 4486 §4), no restart.
    Stop,
    /// ManualStart after a `Stop` (operator: neighbor up).
    Start,
    /// Ask the peer for its routes again (soft reset in).
    RequestRefresh,
    /// Zero the session's message counters.
    ClearCounters,
    /// The neighbor was removed from the configuration: Cease/Peer De-configured (RFC 4486
    /// §4), then the task ends.
    Deconfigure,
}

/// A neighbor's task and how to reach it.
#[derive(Debug)]
struct PeerHandle {
    cmds: mpsc::Sender<PeerCommand>,
    accept: mpsc::Sender<TcpStream>,
    task: tokio::task::JoinHandle<()>,
}

/// The neighbors' tasks. The rib task adds and removes them when a configuration is applied,
/// the listener hands them the connections it accepts, the shutdown stops them all.
#[derive(Clone, Debug)]
struct PeerSet {
    tasks: Arc<std::sync::Mutex<HashMap<Ipv4Addr, PeerHandle>>>,
    events: mpsc::Sender<PeerEvent>,
    views: Arc<RwLock<BTreeMap<Ipv4Addr, watch::Receiver<PeerStatus>>>>,
    /// The BGP listener's socket, which needs each neighbor's TCP MD5 key and the GTSM hops.
    listener: Option<std::os::fd::RawFd>,
}

impl PeerSet {
    /// Starts the task of neighbor `n` of `cfg`.
    fn spawn(&self, cfg: &ControlConfig, n: &NeighborConfig, restarting: bool) -> Result<()> {
        if let Some(fd) = self.listener {
            if let Some(p) = &n.password {
                crate::sys::set_md5(fd, n.address, p.as_bytes()).with_context(|| format!("TCP MD5 for {}", n.address))?;
            }
            if let Some(hops) = cfg.neighbors.iter().filter_map(|n| n.ttl_security).max() {
                crate::sys::set_gtsm(fd, hops).context("GTSM on the listener")?;
            }
        }
        let pc = peer_config(cfg, n, restarting)?;
        let (ctx, crx) = mpsc::channel(16);
        let (atx, arx) = mpsc::channel(4);
        let (status_tx, status_rx) = watch::channel(peer_status(&Session::new(pc.clone()), false, &History::default()));
        self.views.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(n.address, status_rx);
        let task = tokio::spawn(peer_task(pc, n.clone(), self.events.clone(), crx, arx, status_tx));
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(n.address, PeerHandle { cmds: ctx, accept: atx, task });
        Ok(())
    }

    /// Stops neighbor `addr`'s task with Cease/Peer De-configured and waits (up to 2 s) until
    /// it ended, so that its last events reach the rib task before a successor's.
    async fn remove(&self, addr: Ipv4Addr) {
        let handle = self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&addr);
        self.views.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&addr);
        if let Some(h) = handle {
            let _ = h.cmds.send(PeerCommand::Deconfigure).await;
            if tokio::time::timeout(Duration::from_secs(2), h.task).await.is_err() {
                log::warn!("peer {addr}: its task did not end in 2 s after being de-configured");
            }
        }
    }

    /// The command channel of neighbor `addr`.
    fn cmds(&self, addr: Ipv4Addr) -> Option<mpsc::Sender<PeerCommand>> {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&addr).map(|h| h.cmds.clone())
    }

    /// Where a connection accepted from `addr` goes.
    fn acceptor(&self, addr: Ipv4Addr) -> Option<mpsc::Sender<TcpStream>> {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&addr).map(|h| h.accept.clone())
    }

    /// Every neighbor's command channel.
    fn all(&self) -> Vec<mpsc::Sender<PeerCommand>> {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().map(|h| h.cmds.clone()).collect()
    }
}

/// Run until SIGINT/SIGTERM.
///
/// SIGHUP re-reads `path` and applies the VRF and EVPN policy live (route targets, RDs,
/// redistribution, statics): routes are re-imported and re-exported at the next flush.
pub async fn run(cfg: ControlConfig, path: PathBuf) -> Result<()> {
    let cfg = Arc::new(cfg);
    let (commands_tx, commands_rx) = mpsc::channel::<Command>(64);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("SIGHUP handler")?;
    let reload_tx = commands_tx.clone();
    let config_path = path.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let text = std::fs::read_to_string(&config_path).unwrap_or_default();
            match ControlConfig::load(&config_path) {
                Ok(c) => {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    let _ = reload_tx.send(Command::Apply { config: Box::new(c), text, reply }).await;
                    match answer.await {
                        Ok(Ok(summary)) => log::info!("SIGHUP: applied ({})", if summary.unchanged { "no change".to_string() } else { summary.changes.join("; ") }),
                        Ok(Err(e)) => log::error!("SIGHUP: {e}; keeping the running configuration"),
                        Err(_) => {}
                    }
                }
                Err(e) => log::error!("SIGHUP: {}: {e}; keeping the running configuration", config_path.display()),
            }
        }
    });
    let dp_config = carrier_dataplane::config::Config::load(&cfg.dataplane.config)
        .with_context(|| format!("dataplane config {}", cfg.dataplane.config.display()))?;
    // Compiled once: the commands head every `replace`, and a reload is compared with them.
    let base_source = dp_config.commands().context("dataplane config")?;
    let mut base = carrier_dataplane::tables::Tables::default();
    base.apply_all(base_source.clone()).map_err(|(i, e)| anyhow::anyhow!("dataplane config: table command {i}: {e}"))?;
    let base = Arc::new(base);
    let dp_config = crate::rib::RunningDataplane { config: dp_config, commands: base_source };
    let text = std::fs::read_to_string(&path).with_context(|| format!("control config {}", path.display()))?;
    cfg.check_against(&text, &base).with_context(|| format!("control config {}", path.display()))?;
    let found = dataplane_state(&cfg.dataplane.socket);
    // Graceful restart only when configured: without it the peers drop our routes at once and
    // resend theirs without End-of-RIB guarantees, so deferring would only delay convergence.
    let restarting = found.as_ref().is_some_and(|f| f.generation > 1) && cfg.bgp.graceful_restart.is_some();
    if restarting {
        log::info!("the dataplane already holds state: restarting speaker, first flush deferred until End-of-RIB");
    }
    let (events_tx, events_rx) = mpsc::channel::<PeerEvent>(1024);
    let listener = match cfg.bgp.listen {
        Some(addr) => Some(TcpListener::bind(SocketAddrV4::new(addr, cfg.bgp.port)).await.with_context(|| format!("listening on {addr}:{}", cfg.bgp.port))?),
        None => None,
    };
    let peers = PeerSet {
        tasks: Arc::default(),
        events: events_tx,
        views: Arc::new(RwLock::new(BTreeMap::new())),
        listener: listener.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
    };
    for n in &cfg.neighbors {
        peers.spawn(&cfg, n, restarting)?;
    }
    let counters = Arc::new(ControlCounters::default());
    let update_latency = prometheus_client::metrics::histogram::Histogram::new(UPDATE_LATENCY_BUCKETS);
    let (summary_tx, summary_rx) = watch::channel(Arc::new(RibSummary::default()));
    let state = State {
        peers: peers.views.clone(),
        rib: summary_rx,
        dataplane: spawn_dataplane_poller(cfg.dataplane.socket.clone(), Duration::from_millis(cfg.api.poll_ms)),
        commands: commands_tx,
        dataplane_socket: cfg.dataplane.socket.clone(),
        counters: counters.clone(),
        update_latency: update_latency.clone(),
        started: Instant::now(),
    };
    if cfg.api.enabled {
        match crate::api::bind(&cfg.api).await {
            Ok(listener) => {
                tokio::spawn(crate::api::serve(listener, state.clone(), cfg.api.clone()));
            }
            Err(e) => log::error!("API: cannot listen on {}: {e}; running without it", cfg.api.listen),
        }
    }
    if let Some(listener) = listener {
        log::info!("listening for BGP on {}", listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()));
        let peers = peers.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, from)) = listener.accept().await else { continue };
                let SocketAddr::V4(from) = from else { continue };
                match peers.acceptor(*from.ip()) {
                    Some(tx) => {
                        let _ = tx.send(stream).await;
                    }
                    None => log::warn!("refused BGP connection from {from}: not a configured neighbor"),
                }
            }
        });
    }
    let dataplane = spawn_dataplane_writer(cfg.dataplane.socket.clone(), counters, update_latency);
    let mut rib = Rib::new(cfg.clone(), base.clone()).with_dataplane(dp_config);
    if let Some(found) = found.filter(|f| f.generation > 1) {
        let kept = rib.adopt_labels(&found.ilm, Instant::now());
        log::info!("kept {kept} labels of the dataplane's ILM: {:?}", rib.labels_in_use());
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
    let deadline = restarting.then(|| Instant::now() + Duration::from_secs(u64::from(cfg.bgp.graceful_restart.unwrap_or(120))));
    let signal = tokio::select! {
        r = rib_task(rib, Compiler::new(base), (events_rx, commands_rx), (peers.clone(), summary_tx), dataplane, deadline) => return r,
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    if cfg.bgp.graceful_restart.is_some() {
        // RFC 4724: the peers keep our routes while we are away; a NOTIFICATION would make
        // them drop them (RFC 8538 §3), so the sessions just close.
        log::info!("stopping ({signal}); graceful restart: sessions closed without NOTIFICATION");
        return Ok(());
    }
    log::info!("stopping ({signal}): Cease/Administrative Shutdown to every peer");
    for tx in peers.all() {
        let _ = tx.send(PeerCommand::Stop).await;
    }
    // The peer tasks write the NOTIFICATION as soon as they run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// Reads the dataplane's status and counters every `every` and publishes them.
fn spawn_dataplane_poller(socket: PathBuf, every: Duration) -> watch::Receiver<Arc<DataplaneStatus>> {
    let first = DataplaneStatus { socket: socket.display().to_string(), last_error: Some("not read yet".into()), ..Default::default() };
    let (tx, rx) = watch::channel(Arc::new(first));
    std::thread::Builder::new()
        .name("dataplane-poller".into())
        .spawn(move || {
            let mut client: Option<Client> = None;
            loop {
                let mut status = DataplaneStatus { socket: socket.display().to_string(), polled_at: crate::state::unix_now(), ..Default::default() };
                if client.is_none() {
                    client = Client::connect(&socket).ok();
                }
                let polled = client.as_mut().ok_or_else(|| "cannot connect to the table socket".to_string()).and_then(|c| {
                    match c.request(&Request::Status).map_err(|e| e.to_string())? {
                        Response::Status { generation, ports, vrfs, routes, labels, workers } => {
                            (status.generation, status.ports, status.vrfs, status.routes, status.labels, status.workers) =
                                (generation, ports as u64, vrfs as u64, routes as u64, labels as u64, workers);
                        }
                        other => return Err(format!("unexpected answer {other:?}")),
                    }
                    match c.request(&Request::Counters).map_err(|e| e.to_string())? {
                        Response::Counters { counters } => status.counters = counters,
                        other => return Err(format!("unexpected answer {other:?}")),
                    }
                    match c.request(&Request::Neighbours).map_err(|e| e.to_string())? {
                        Response::Neighbours { neighbours } => status.neighbours = neighbours,
                        other => return Err(format!("unexpected answer {other:?}")),
                    }
                    Ok(())
                });
                match polled {
                    Ok(()) => status.connected = true,
                    Err(e) => {
                        client = None;
                        status.last_error = Some(e);
                    }
                }
                if tx.send(Arc::new(status)).is_err() {
                    return;
                }
                std::thread::sleep(every);
            }
        })
        .expect("spawn dataplane poller");
    rx
}

/// What a peer task publishes.
fn peer_status(session: &Session, admin_down: bool, history: &History) -> PeerStatus {
    use crate::bgp::fsm::State as S;
    let st = session.stats();
    let cfg = session.config();
    let established = session.established_at();
    let uptime = established.map(|t| t.elapsed().as_secs());
    PeerStatus {
        address: cfg.remote_addr.to_string(),
        remote_as: cfg.remote_as,
        local_as: cfg.local_as,
        state: match session.state() {
            S::Idle => "idle",
            S::Connect => "connect",
            S::Active => "active",
            S::OpenSent => "opensent",
            S::OpenConfirm => "openconfirm",
            S::Established => "established",
        }
        .into(),
        admin_down,
        router_id: session.peer_open().map(|o| o.router_id.to_string()),
        uptime_seconds: uptime,
        // As recorded when it came up (derived from the uptime it would drift by a second
        // between reads).
        established_at: uptime.map(|u| history.last("established").unwrap_or_else(|| crate::state::unix_now().saturating_sub(u))),
        hold_time: established.map(|_| session.hold_time()),
        families: if established.is_some() { session.families().iter().map(|f| f.name().to_string()).collect() } else { vec![] },
        last_error: st.last_error.as_ref().map(ToString::to_string),
        flaps: st.flaps,
        messages: st.messages.clone(),
        prefixes: vec![],
        history: history.entries(),
    }
}

fn peer_config(cfg: &ControlConfig, n: &NeighborConfig, restarting: bool) -> Result<PeerConfig> {
    Ok(PeerConfig {
        local_as: cfg.bgp.asn,
        remote_as: n.remote_as,
        router_id: cfg.bgp.router_id,
        remote_addr: n.address,
        families: n.families()?,
        hold_time: cfg.bgp.hold_time,
        connect_retry: Duration::from_secs(5),
        passive: n.passive,
        graceful_restart: cfg.bgp.graceful_restart,
        restarting: restarting && cfg.bgp.graceful_restart.is_some(),
    })
}

/// What the dataplane holds when this process starts.
struct DataplaneState {
    /// Snapshot generation: above 1 once a control process replaced the config's tables.
    generation: u64,
    /// The ILM: label → action.
    ilm: Vec<(u32, IlmAction)>,
}

/// The dataplane's generation and ILM, if it answers.
fn dataplane_state(socket: &std::path::Path) -> Option<DataplaneState> {
    let mut c = Client::connect(socket).ok()?;
    let Response::Status { generation, .. } = c.request(&Request::Status).ok()? else { return None };
    let ilm = match c.request(&Request::Dump) {
        Ok(Response::Dump { labels, .. }) => labels
            .into_iter()
            .filter_map(|l| {
                let label = u32::try_from(l["label"].as_u64()?).ok()?;
                let action = serde_json::from_value::<IlmAction>(l["action"].clone()).ok()?;
                Some((label, action))
            })
            .collect(),
        other => {
            log::warn!("cannot read the dataplane's ILM ({other:?}): labels will be allocated afresh");
            vec![]
        }
    };
    Some(DataplaneState { generation, ilm })
}

/// What the rib task hands the dataplane writer, numbered.
#[derive(Debug)]
enum ToDataplane {
    /// A change on top of what the dataplane holds (`apply`).
    Change(u64, Vec<TableCommand>),
    /// The whole state (`replace`), as asked for through the writer's resync channel.
    Full(u64, Vec<TableCommand>),
}

/// The dataplane writer's channels, as the rib task sees them.
struct WriterHandle {
    tx: std::sync::mpsc::Sender<ToDataplane>,
    /// The newest batch number the dataplane applied.
    applied: tokio::sync::watch::Receiver<u64>,
    /// Bumped when the writer needs the whole state.
    resync: tokio::sync::watch::Receiver<u64>,
}

/// Give free memory back once [`TRIM_AFTER`] commands were sent since the last time.
fn trim_after_many(untrimmed: &mut usize) {
    if *untrimmed >= TRIM_AFTER {
        crate::sys::release_free_memory();
        *untrimmed = 0;
    }
}

/// The dataplane writer: applies changes in order on one table-socket connection; on a new
/// connection, or after a refused change, it drops changes until the whole state arrives.
fn spawn_dataplane_writer(socket: PathBuf, counters: Arc<ControlCounters>, latency: prometheus_client::metrics::histogram::Histogram) -> WriterHandle {
    let (tx, rx) = std::sync::mpsc::channel::<ToDataplane>();
    let (applied_tx, applied) = tokio::sync::watch::channel(0u64);
    let (resync_tx, resync) = tokio::sync::watch::channel(0u64);
    std::thread::Builder::new()
        .name("dataplane-writer".into())
        .spawn(move || {
            let mut client: Option<Client> = None;
            // The connection holds the whole state: changes can go on top of it.
            let mut synced = false;
            let ask_resync = || resync_tx.send_modify(|n| *n += 1);
            // Commands sent since the allocator last gave its free memory back.
            let mut untrimmed = 0usize;
            loop {
                let mut batch: Vec<ToDataplane> = vec![];
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(m) => batch.push(m),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        // Idle after changes: what they freed goes back to the kernel.
                        if std::mem::take(&mut untrimmed) > 0 {
                            crate::sys::release_free_memory();
                        }
                        // Idle: make sure the dataplane is still there. One that died (and
                        // maybe came back) is found now, not at the next route change, and a
                        // new one is re-fed at once.
                        if let Some(c) = client.as_mut() {
                            if let Err(e) = c.request(&Request::Status) {
                                log::warn!("dataplane connection lost: {e}");
                                client = None;
                            }
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
                batch.extend(rx.try_iter());
                if client.is_none() {
                    client = Client::connect(&socket).ok();
                    if client.is_some() {
                        counters.table_socket_connects.fetch_add(1, Ordering::Relaxed);
                        log::info!("connected to the dataplane at {}", socket.display());
                        synced = false;
                        ask_resync();
                    }
                }
                let Some(c) = client.as_mut() else { continue };
                // What comes before the newest whole state is in it.
                if let Some(i) = batch.iter().rposition(|m| matches!(m, ToDataplane::Full(..))) {
                    batch.drain(..i);
                }
                let mut changes: Vec<TableCommand> = vec![];
                let mut last = None;
                for m in batch {
                    match m {
                        ToDataplane::Full(seq, cmds) => {
                            let started = Instant::now();
                            untrimmed += cmds.len();
                            let sent = c.send(true, &cmds);
                            drop(cmds);
                            trim_after_many(&mut untrimmed);
                            match sent {
                                Ok(Response::Applied { commands, generation }) => {
                                    latency.observe(started.elapsed().as_secs_f64());
                                    log::info!("dataplane: whole state of {commands} commands applied in {:?} (generation {generation})", started.elapsed());
                                    synced = true;
                                    let _ = applied_tx.send(seq);
                                }
                                Ok(other) => log::error!("dataplane refused the whole table state: {other:?}"),
                                Err(e) => {
                                    log::warn!("dataplane connection lost: {e}");
                                    client = None;
                                    break;
                                }
                            }
                        }
                        ToDataplane::Change(seq, cmds) if synced => {
                            changes.extend(cmds);
                            last = Some(seq);
                        }
                        ToDataplane::Change(..) => {}
                    }
                }
                let (Some(seq), Some(c)) = (last, client.as_mut()) else { continue };
                let started = Instant::now();
                untrimmed += changes.len();
                let sent = c.send(false, &changes);
                drop(changes);
                trim_after_many(&mut untrimmed);
                match sent {
                    Ok(Response::Applied { commands, generation }) => {
                        latency.observe(started.elapsed().as_secs_f64());
                        log::debug!("dataplane: {commands} commands applied in {:?} (generation {generation})", started.elapsed());
                        let _ = applied_tx.send(seq);
                    }
                    Ok(other) => {
                        log::error!("dataplane refused a change: {other:?}; sending the whole state instead");
                        synced = false;
                        ask_resync();
                    }
                    Err(e) => {
                        log::warn!("dataplane connection lost: {e}");
                        client = None;
                    }
                }
            }
        })
        .expect("spawn dataplane writer");
    WriterHandle { tx, applied, resync }
}

async fn rib_task(
    mut rib: Rib,
    mut compiler: Compiler,
    (mut events, mut commands): (mpsc::Receiver<PeerEvent>, mpsc::Receiver<Command>),
    (peers, summary): (PeerSet, watch::Sender<Arc<RibSummary>>),
    dataplane: WriterHandle,
    mut deferred_until: Option<Instant>,
) -> Result<()> {
    let WriterHandle { tx: dataplane, mut applied, mut resync } = dataplane;
    // The writer asks for the whole state after it connects; answered at the next flush.
    let mut resync_wanted = false;
    // Batches sent to the dataplane, and the one whose advertisements wait for it: labels are
    // advertised only once the dataplane has them in its ILM.
    let mut batch = 0u64;
    let mut advertise_after: Option<u64> = None;
    let mut up: HashMap<Ipv4Addr, (Vec<Family>, bool, bool)> = HashMap::new(); // families, ebgp, eor sent
    let mut eor_from: HashMap<Ipv4Addr, Vec<Family>> = HashMap::new();
    let mut dirty = true;
    let mut due = false;
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    let (mut updates_processed, mut flushes) = (0u64, 0u64);
    let mut summary_due = Instant::now();
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { return Ok(()) };
                dirty = true;
                match ev {
                    PeerEvent::Up { addr, info, families } => {
                        log::info!("peer {addr} established (AS {}, families {:?})", info.asn, families);
                        let ebgp = info.ebgp;
                        rib.peer_up(addr, info);
                        up.insert(addr, (families, ebgp, false));
                    }
                    PeerEvent::Down { addr, graceful } => {
                        log::info!("peer {addr} down{}", if graceful { " (graceful: routes kept as stale)" } else { "" });
                        rib.peer_down(addr, graceful, Instant::now());
                        up.remove(&addr);
                        eor_from.remove(&addr);
                    }
                    PeerEvent::Refresh { addr } => rib.resend(addr),
                    PeerEvent::Update { addr, update, eor } => {
                        updates_processed += 1;
                        if let Some(f) = eor {
                            log::info!("peer {addr}: End-of-RIB {f:?}");
                            eor_from.entry(addr).or_default().push(f);
                            rib.end_of_rib(addr);
                        } else {
                            // Routes of a family the session did not negotiate are not used
                            // (RFC 4760 §6, RFC 5492 §3).
                            let mut update = update;
                            let negotiated: &[Family] = up.get(&addr).map_or(&[], |(f, _, _)| f);
                            let before = update.announced.len() + update.withdrawn.len();
                            update.announced.retain(|n| negotiated.contains(&n.family()));
                            update.withdrawn.retain(|n| negotiated.contains(&n.family()));
                            let ignored = before - update.announced.len() - update.withdrawn.len();
                            if ignored > 0 {
                                rib.stats.wrong_family += ignored;
                                log::warn!("peer {addr}: {ignored} routes of a family not negotiated on the session ignored ({} so far)", rib.stats.wrong_family);
                            }
                            let n = rib.update(addr, update);
                            let max = rib.config().neighbors.iter().find(|x| x.address == addr).and_then(|x| x.max_prefixes);
                            if max.is_some_and(|m| n > m) {
                                log::warn!("peer {addr}: {n} prefixes exceed the limit: Cease/Maximum Number of Prefixes Reached, its routes are dropped");
                                rib.peer_down(addr, false, Instant::now());
                                if let Some(tx) = peers.cmds(addr) {
                                    let _ = tx.send(PeerCommand::Reset(crate::bgp::msg::Notification::new(crate::bgp::msg::error_code::CEASE, 1))).await;
                                }
                            }
                        }
                    }
                }
            }
            _ = tick.tick() => {
                if rib.expire_stale(Instant::now()) {
                    dirty = true;
                }
                due = true;
            }
            _ = applied.changed() => {}
            r = resync.changed() => {
                if r.is_ok() {
                    resync_wanted = true;
                    dirty = true;
                    due = true;
                }
            }
            c = commands.recv() => {
                if let Some(c) = c {
                    if command(&mut rib, &compiler, &peers, c).await {
                        dirty = true;
                        due = true;
                        summary_due = Instant::now();
                    }
                    if !compiler.is_over(rib.base()) {
                        // New base tables: everything is compiled again over them and sent
                        // as one `replace` (the dataplane swaps it in atomically).
                        compiler = Compiler::new(rib.base_arc());
                        resync_wanted = true;
                    }
                }
            }
        }
        if Instant::now() >= summary_due {
            let mut s = rib.summary(&compiler);
            (s.counters.updates_processed, s.counters.flushes) = (updates_processed, flushes);
            summary.send_replace(Arc::new(s));
            summary_due = Instant::now() + SUMMARY_EVERY;
        }
        if advertise_after.is_some_and(|b| *applied.borrow() >= b) {
            advertise_after = None;
            let ads = rib.advertisements(Instant::now());
            for (addr, (families, ebgp, eor_sent)) in up.iter_mut() {
                let updates = rib.updates_for(*addr, families, *ebgp, &ads);
                let eor = if *eor_sent { vec![] } else { families.clone() };
                *eor_sent = true;
                if updates.is_empty() && eor.is_empty() {
                    continue;
                }
                if let Some(tx) = peers.cmds(*addr) {
                    let _ = tx.send(PeerCommand::Send(updates, eor)).await;
                }
            }
        }
        if let Some(d) = deferred_until {
            let all_eor = !up.is_empty() && up.iter().all(|(a, (fams, _, _))| fams.iter().all(|f| eor_from.get(a).is_some_and(|e| e.contains(f))));
            if all_eor || Instant::now() >= d {
                log::info!("route selection no longer deferred ({})", if all_eor { "End-of-RIB from every peer" } else { "restart time passed" });
                deferred_until = None;
            } else {
                continue;
            }
        }
        if !dirty || !(due || rib.pending() >= FLUSH_PENDING) {
            continue;
        }
        (dirty, due) = (false, false);
        let started = Instant::now();
        let delta = rib.changes(started, &compiler);
        let skipped = compiler.skipped;
        let cmds = compiler.apply(&delta);
        if compiler.skipped > skipped {
            log::warn!("{} routes have a gateway in no connected subnet", compiler.skipped - skipped);
        }
        let message = if std::mem::take(&mut resync_wanted) {
            // The base first (it starts with `clear`): the dataplane holds the control's
            // view of its config, VRFs added and ports re-attached since it started included.
            let mut all = rib.dataplane().map(|d| d.commands.clone()).unwrap_or_default();
            all.extend(compiler.full_state());
            Some(ToDataplane::Full(batch + 1, all))
        } else {
            (!cmds.is_empty()).then(|| ToDataplane::Change(batch + 1, cmds))
        };
        if let Some(message) = message {
            batch += 1;
            flushes += 1;
            let n = match &message {
                ToDataplane::Change(_, c) | ToDataplane::Full(_, c) => c.len(),
            };
            log::debug!("flush {batch}: {} route changes → {n} commands in {:?}", delta.routes.len(), started.elapsed());
            let _ = dataplane.send(message);
        }
        // Advertise once the dataplane holds what was just sent (or, with nothing new, at once).
        advertise_after = Some(batch);
    }
}

/// Carry out an operator's command in the rib task; true when the RIB changed (flush soon).
async fn command(rib: &mut Rib, fib: &Compiler, peers: &PeerSet, c: Command) -> bool {
    match c {
        Command::Routes { vrf, reply } => {
            let _ = reply.send(rib.show_routes(vrf.as_deref(), fib));
            false
        }
        Command::Labels { reply } => {
            let _ = reply.send(rib.show_labels());
            false
        }
        Command::Evpn { reply } => {
            let _ = reply.send(rib.show_evpn());
            false
        }
        Command::Neighbor { addr, action, reply } => {
            let Some(tx) = peers.cmds(addr) else {
                let _ = reply.send(Err(CommandError::NotFound(format!("no neighbor {addr}"))));
                return false;
            };
            log::info!("operator: neighbor {addr} {action:?}");
            let cmd = match action {
                NeighborAction::Up => PeerCommand::Start,
                NeighborAction::Down => PeerCommand::Stop,
                NeighborAction::SoftResetIn => PeerCommand::RequestRefresh,
                NeighborAction::ClearCounters => PeerCommand::ClearCounters,
                NeighborAction::SoftResetOut => {
                    rib.resend(addr);
                    let _ = reply.send(Ok(()));
                    return true;
                }
            };
            let r = tx.send(cmd).await.map_err(|_| CommandError::Unavailable);
            let _ = reply.send(r);
            false
        }
        Command::AddStatic { vrf, prefix, via, reply } => {
            let r = rib.with_static(&vrf, prefix, Some(via)).and_then(|cfg| rib.reconfigure(Arc::new(cfg)).map_err(CommandError::Conflict));
            let changed = r.is_ok();
            if changed {
                log::info!("operator: static route {prefix} via {via} in VRF {vrf}");
            }
            let _ = reply.send(r);
            changed
        }
        Command::DelStatic { vrf, prefix, reply } => {
            let r = rib.with_static(&vrf, prefix, None).and_then(|cfg| rib.reconfigure(Arc::new(cfg)).map_err(CommandError::Conflict));
            let changed = r.is_ok();
            if changed {
                log::info!("operator: static route {prefix} removed from VRF {vrf}");
            }
            let _ = reply.send(r);
            changed
        }
        Command::Edit { edit, reply } => {
            let r = match rib.dataplane() {
                None => Err(CommandError::Unavailable),
                Some(dp) => match crate::reconfig::edit(rib.config(), &dp.config, edit) {
                    Ok((ctl, dp)) => take_config(rib, Arc::new(ctl), "", Some(dp)).await,
                    Err(e) => Err(e),
                },
            };
            let changed = r.as_ref().is_ok_and(|c| !c.is_empty());
            if let Ok(changes) = &r {
                log::info!("operator: {}", if changes.is_empty() { "no change".to_string() } else { changes.join("; ") });
            }
            let _ = reply.send(r.map(|changes| ApplySummary { unchanged: changes.is_empty(), changes }));
            changed
        }
        Command::Apply { mut config, text, reply } => {
            let running = rib.config().dataplane.config.clone();
            // The dataplane's config as it now reads: this file's own sections, or the
            // dataplane file the running one names, read again.
            let dp_text = if config.single_file {
                config.dataplane.config = running.clone();
                Some(Ok(text.clone()))
            } else {
                if config.dataplane.config.is_relative() && running.ends_with(&config.dataplane.config) {
                    // A relative dataplane path names the running one (the API has no file to
                    // resolve it against).
                    config.dataplane.config = running.clone();
                }
                (config.dataplane.config == running)
                    .then(|| std::fs::read_to_string(&running).map_err(|e| CommandError::Invalid(format!("dataplane config {}: {e}", running.display()))))
            };
            let dp = match dp_text.map(|t| t.and_then(|t| carrier_dataplane::config::Config::parse(&t).map_err(|e| CommandError::Invalid(format!("the dataplane's sections: {e}"))))) {
                Some(Err(e)) => {
                    let _ = reply.send(Err(e));
                    return false;
                }
                Some(Ok(dp)) => Some(dp),
                None => None,
            };
            let config = Arc::new(*config);
            let old_neighbors = rib.config().neighbors.clone();
            let changes = match take_config(rib, config.clone(), &text, dp).await {
                Ok(changes) => changes,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return false;
                }
            };
            if changes.is_empty() {
                let _ = reply.send(Ok(ApplySummary { unchanged: true, changes }));
                return false;
            }
            let old = old_neighbors;
            // Neighbors: removed ones are de-configured and forgotten with their routes; a
            // changed one is removed and started again with its new settings; new ones start.
            // The others' sessions are not touched.
            let now = Instant::now();
            for n in &old {
                let kept = config.neighbors.iter().find(|x| x.address == n.address);
                if kept != Some(n) {
                    log::info!("config: neighbor {} {}", n.address, if kept.is_some() { "changed: restarting its session" } else { "removed" });
                    peers.remove(n.address).await;
                    rib.forget_peer(n.address, now);
                }
            }
            let mut failed = vec![];
            for n in &config.neighbors {
                if old.iter().find(|x| x.address == n.address) != Some(n) {
                    if let Err(e) = peers.spawn(&config, n, false) {
                        log::warn!("config: neighbor {}: {e:#}", n.address);
                        failed.push(format!("neighbor {}: {e:#}", n.address));
                    }
                }
            }
            let _ = reply.send(if failed.is_empty() { Ok(ApplySummary { unchanged: false, changes }) } else { Err(CommandError::Conflict(failed.join("; "))) });
            true
        }
    }
}

/// Take a new control config and, when given, a new dataplane config: both checked before
/// either is taken (a bad one changes nothing). Returns what changed, one line each.
async fn take_config(rib: &mut Rib, config: Arc<ControlConfig>, text: &str, dp: Option<carrier_dataplane::config::Config>) -> Result<Vec<String>, CommandError> {
    let staged = match (dp, rib.dataplane()) {
        (Some(dp), Some(running)) => crate::reconfig::stage(running, rib.base(), dp)?,
        _ => None,
    };
    let base = staged.as_ref().map_or_else(|| rib.base_arc(), |s| s.base.clone());
    config.check_against(text, &base).map_err(|e| CommandError::Invalid(e.to_string()))?;
    // New interfaces: the dataplane opens them first, or nothing is applied.
    let new_ports: Vec<_> = base.ports.iter().skip(rib.base().ports.len()).cloned().collect();
    if !new_ports.is_empty() {
        let socket = rib.config().dataplane.socket.clone();
        let names = new_ports.iter().map(|p| p.name.clone()).collect::<Vec<_>>().join(", ");
        let answer = tokio::task::spawn_blocking(move || Client::connect(&socket)?.request(&Request::AddPorts { ports: new_ports }))
            .await
            .map_err(|_| CommandError::Unavailable)?;
        match answer {
            Ok(Response::Applied { .. }) => log::info!("dataplane: opened {names}"),
            Ok(Response::Error { error }) => return Err(CommandError::Conflict(format!("the dataplane did not open {names}: {error} — nothing was applied"))),
            Ok(other) => return Err(CommandError::Conflict(format!("the dataplane did not open {names}: {other:?} — nothing was applied"))),
            Err(e) => return Err(CommandError::Conflict(format!("new ports ({names}) need the dataplane, which is not reachable: {e} — nothing was applied"))),
        }
    }
    let mut changes = crate::config::diff(rib.config(), &config);
    if *rib.config() != *config {
        rib.reconfigure(config).map_err(CommandError::Conflict)?;
    }
    if let Some(s) = staged {
        changes.extend(s.changes);
        rib.rebase(s.dataplane, s.base);
    }
    Ok(changes)
}

/// One neighbour: connects (or waits for the listener to hand it a connection), runs the
/// session, and relays between the socket, the FSM and the RIB.
async fn peer_task(
    pc: PeerConfig,
    n: NeighborConfig,
    events: mpsc::Sender<PeerEvent>,
    mut cmds: mpsc::Receiver<PeerCommand>,
    mut accepted: mpsc::Receiver<TcpStream>,
    status: watch::Sender<PeerStatus>,
) {
    let addr = n.address;
    let mut session = Session::new(pc);
    let mut history = History::default();
    let mut admin_down = false;
    let mut stream: Option<TcpStream> = None;
    let mut ctx = CodecContext::default();
    let mut timers: HashMap<Timer, tokio::time::Instant> = HashMap::new();
    let mut buf: Vec<u8> = Vec::with_capacity(65536);
    let (conn_tx, mut conn_rx) = mpsc::channel::<Option<TcpStream>>(2);
    // Connection collisions (RFC 4271 §6.8): a second connection is held until its OPEN says
    // the peer's BGP identifier; then one of the two is closed with Cease/Connection Collision
    // Resolution. `handover` is the winner waiting for the loser to be closed.
    let (cand_tx, mut cand_rx) = mpsc::channel::<(TcpStream, Vec<u8>, Option<Ipv4Addr>)>(2);
    let mut handover: Option<(TcpStream, Vec<u8>)> = None;
    let mut existing_outgoing = false;
    let mut pending = session.process(Input::Start, Instant::now());
    let mut deconfigured = false;
    loop {
        // Carry out what the FSM said.
        for out in pending.drain(..) {
            match out {
                Output::Connect => {
                    let tx = conn_tx.clone();
                    let target = SocketAddrV4::new(addr, n.port);
                    let local = n.local_address;
                    let (password, gtsm) = (n.password.clone(), n.ttl_security);
                    tokio::spawn(async move {
                        let r = connect(target, local, password.as_deref(), gtsm).await;
                        let _ = tx.send(r).await;
                    });
                }
                Output::Send(msg) => {
                    if let Some(s) = stream.as_mut() {
                        if let Err(e) = s.write_all(&codec::encode(&msg, &ctx)).await {
                            log::warn!("peer {addr}: write: {e}");
                        }
                    }
                }
                Output::SendEndOfRib(family) => {
                    if let Some(s) = stream.as_mut() {
                        let _ = s.write_all(&codec::encode(&Message::Update(Update::end_of_rib(family)), &ctx)).await;
                    }
                }
                Output::Close => {
                    // Half-close first so that a NOTIFICATION just written reaches the peer
                    // before the socket goes away.
                    if let Some(mut s) = stream.take() {
                        let _ = s.shutdown().await;
                    }
                    buf.clear();
                }
                Output::SetTimer(t, d) => {
                    timers.insert(t, tokio::time::Instant::now() + d);
                }
                Output::CancelTimer(t) => {
                    timers.remove(&t);
                }
                Output::Established { open, families, four_octet_as, .. } => {
                    ctx.four_octet_as = four_octet_as;
                    let info = PeerInfo {
                        asn: open.asn,
                        router_id: open.router_id,
                        ebgp: open.asn != pc_local_as(&session),
                        local_pref: n.local_pref,
                        restart_time: open.graceful_restart.as_ref().map(|g| g.restart_time),
                    };
                    history.push("established");
                    let _ = events.send(PeerEvent::Up { addr, info, families }).await;
                }
                Output::Down { reason, graceful } => {
                    log::info!("peer {addr}: {reason}");
                    history.push(format!("down: {reason}"));
                    let _ = events.send(PeerEvent::Down { addr, graceful }).await;
                }
                Output::Received(update) => {
                    let eor = update.eor;
                    let _ = events.send(PeerEvent::Update { addr, update, eor }).await;
                }
                Output::TreatAsWithdraw(update, reason) => {
                    log::warn!("peer {addr}: treat-as-withdraw ({reason})");
                    let _ = events.send(PeerEvent::Update { addr, update, eor: None }).await;
                }
                Output::Counted(what) => log::info!("peer {addr}: {what}"),
                Output::RouteRefresh(family) => {
                    log::info!("peer {addr}: route refresh for {family:?}");
                    let _ = events.send(PeerEvent::Refresh { addr }).await;
                }
            }
        }
        status.send_replace(peer_status(&session, admin_down, &history));
        if deconfigured {
            return;
        }
        // The loser of a collision is closed now: go on with the winner.
        if stream.is_none() {
            if let Some((s, bytes)) = handover.take() {
                log::info!("peer {addr}: continuing on the peer's connection, which won the collision");
                stream = Some(s);
                existing_outgoing = false;
                buf = bytes;
                pending = session.process(Input::TcpConnected, Instant::now());
                feed(&mut buf, &mut session, &ctx, &mut pending);
                continue;
            }
        }
        let next_timer = timers.iter().min_by_key(|(_, at)| **at).map(|(t, at)| (*t, *at));
        let sleep = async {
            match next_timer {
                Some((_, at)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let read = async {
            match stream.as_mut() {
                Some(s) => {
                    let mut chunk = [0u8; 16384];
                    s.read(&mut chunk).await.map(|n| chunk[..n].to_vec())
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {
                if let Some((t, _)) = next_timer {
                    timers.remove(&t);
                    pending = session.process(Input::Timer(t), Instant::now());
                }
            }
            r = read => match r {
                Ok(bytes) if !bytes.is_empty() => {
                    buf.extend_from_slice(&bytes);
                    feed(&mut buf, &mut session, &ctx, &mut pending);
                }
                _ => {
                    stream = None;
                    buf.clear();
                    pending = session.process(Input::TcpClosed, Instant::now());
                }
            },
            c = conn_rx.recv() => {
                match c.flatten() {
                    Some(s) if stream.is_none() => {
                        stream = Some(s);
                        existing_outgoing = true;
                        pending = session.process(Input::TcpConnected, Instant::now());
                    }
                    Some(_) => {}
                    None => pending = session.process(Input::TcpFailed, Instant::now()),
                }
            }
            a = accepted.recv() => {
                if let Some(s) = a {
                    if stream.is_none() && handover.is_none() {
                        log::info!("peer {addr}: accepted incoming connection");
                        stream = Some(s);
                        existing_outgoing = false;
                        pending = session.process(Input::TcpConnected, Instant::now());
                    } else {
                        log::info!("peer {addr}: a second connection while one is up: reading its OPEN (collision, RFC 4271 §6.8)");
                        let tx = cand_tx.clone();
                        tokio::spawn(async move {
                            let (s, bytes, id) = read_open(s).await;
                            let _ = tx.send((s, bytes, id)).await;
                        });
                    }
                }
            }
            c = cand_rx.recv() => {
                let Some((mut s, bytes, remote_id)) = c else { continue };
                let (state, local_id) = (session.state(), session.config().router_id);
                // A connection without an OPEN, or one arriving while another already won,
                // always loses; with none in use the new one is taken.
                let keep_existing = match remote_id {
                    None => true,
                    Some(_) if handover.is_some() => true,
                    Some(_) if stream.is_none() => false,
                    Some(id) => session.keeps_connection_against(id, existing_outgoing),
                };
                if keep_existing {
                    log::info!(
                        "peer {addr}: collision: keeping the {} connection ({state:?}; identifiers local {local_id}, peer {}); closing the new one",
                        if existing_outgoing { "outgoing" } else { "incoming" },
                        remote_id.map_or_else(|| "unknown".to_string(), |i| i.to_string())
                    );
                    let n = Notification::new(error_code::CEASE, cease_subcode::CONNECTION_COLLISION);
                    let _ = s.write_all(&codec::encode(&Message::Notification(n), &CodecContext::default())).await;
                    let _ = s.shutdown().await;
                } else {
                    log::info!(
                        "peer {addr}: collision: the peer's connection wins (identifiers local {local_id}, peer {}); closing ours",
                        remote_id.map_or_else(String::new, |i| i.to_string())
                    );
                    if stream.is_some() {
                        pending.extend(session.process(Input::CollisionLost, Instant::now()));
                    }
                    handover = Some((s, bytes));
                }
            }
            c = cmds.recv() => {
                match c {
                    Some(PeerCommand::Reset(n)) => {
                        pending.extend(session.process(Input::DecodeError(codec::DecodeError::Reset(n)), Instant::now()));
                    }
                    Some(PeerCommand::Stop) => {
                        admin_down = true;
                        history.push("admin down");
                        pending.extend(session.process(Input::Stop, Instant::now()));
                    }
                    Some(PeerCommand::Start) => {
                        if admin_down {
                            admin_down = false;
                            history.push("admin up");
                        }
                        pending.extend(session.process(Input::Start, Instant::now()));
                    }
                    Some(PeerCommand::RequestRefresh) => pending.extend(session.process(Input::RequestRefresh, Instant::now())),
                    Some(PeerCommand::ClearCounters) => session.clear_counters(),
                    Some(PeerCommand::Deconfigure) => {
                        history.push("de-configured");
                        let cease = Notification::new(error_code::CEASE, cease_subcode::PEER_DECONFIGURED);
                        pending.extend(session.process(Input::DecodeError(codec::DecodeError::Reset(cease)), Instant::now()));
                        deconfigured = true;
                    }
                    Some(PeerCommand::Send(updates, eors)) => {
                        let now = Instant::now();
                        for u in updates {
                            pending.extend(session.process(Input::Send(u), now));
                        }
                        for f in eors {
                            pending.extend(session.process(Input::SendEndOfRib(f), now));
                        }
                    }
                    None => return,
                }
            }
        }
    }
}

/// Decode every whole message in `buf` and feed it to `session`.
fn feed(buf: &mut Vec<u8>, session: &mut Session, ctx: &CodecContext, pending: &mut Vec<Output>) {
    loop {
        match codec::frame_len(buf) {
            Ok(Some(len)) if buf.len() >= len => {
                let frame: Vec<u8> = buf.drain(..len).collect();
                let input = match codec::decode(&frame, ctx) {
                    Ok(m) => Input::Message(m),
                    Err(e) => Input::DecodeError(e),
                };
                pending.extend(session.process(input, Instant::now()));
            }
            Ok(_) => break,
            Err(notification) => {
                pending.extend(session.process(Input::DecodeError(codec::DecodeError::Reset(notification)), Instant::now()));
                buf.clear();
                break;
            }
        }
    }
}

/// How long a colliding connection gets to send its OPEN.
const COLLISION_OPEN_WAIT: Duration = Duration::from_secs(10);

/// Read a colliding connection's first message; returns the connection, every byte read (to
/// be fed to the session if this connection wins) and the BGP identifier of its OPEN, if the
/// first message was a well-formed OPEN in time.
async fn read_open(mut s: TcpStream) -> (TcpStream, Vec<u8>, Option<Ipv4Addr>) {
    let mut bytes = Vec::with_capacity(4096);
    let deadline = tokio::time::Instant::now() + COLLISION_OPEN_WAIT;
    loop {
        match codec::frame_len(&bytes) {
            Ok(Some(len)) if bytes.len() >= len => {
                let id = match codec::decode(&bytes[..len], &CodecContext::default()) {
                    Ok(Message::Open(open)) => Some(open.router_id),
                    _ => None,
                };
                return (s, bytes, id);
            }
            Ok(_) => {}
            Err(_) => return (s, bytes, None),
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&chunk[..n]),
            _ => return (s, bytes, None),
        }
    }
}

fn pc_local_as(session: &Session) -> u32 {
    session.config().local_as
}

async fn connect(target: SocketAddrV4, local: Option<Ipv4Addr>, password: Option<&str>, gtsm: Option<u8>) -> Option<TcpStream> {
    use std::os::fd::AsRawFd;
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    if let Some(p) = password {
        if let Err(e) = crate::sys::set_md5(socket.as_raw_fd(), *target.ip(), p.as_bytes()) {
            log::error!("TCP MD5 toward {target}: {e}");
            return None;
        }
    }
    if let Some(hops) = gtsm {
        if let Err(e) = crate::sys::set_gtsm(socket.as_raw_fd(), hops) {
            log::error!("GTSM toward {target}: {e}");
            return None;
        }
    }
    if let Some(l) = local {
        socket.bind(SocketAddr::V4(SocketAddrV4::new(l, 0))).ok()?;
    }
    match tokio::time::timeout(Duration::from_secs(5), socket.connect(SocketAddr::V4(target))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Some(s)
        }
        _ => None,
    }
}
