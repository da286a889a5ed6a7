//! The table socket: how a control process programs a running dataplane and reads its
//! counters.
//!
//! # Framing
//! A Unix stream socket. Each message, both ways, is a 4-byte big-endian length followed by
//! that many bytes of JSON: a [`Request`] from the client, a [`Response`] from the dataplane,
//! strictly alternating. A message above [`MAX_MESSAGE`] closes the connection; a larger
//! change travels as several messages (chunks, below), so the size of one change is not
//! limited.
//!
//! # Semantics
//! - `apply`: the commands are applied on top of the current tables; if any is refused,
//!   none is applied and the index of the first bad one is returned. Otherwise the result is
//!   published as one snapshot: workers see all of the batch or none of it.
//! - `replace`: the same, starting from the dataplane's base tables (those of its config
//!   file: ports, static routes) instead of the current ones. A control process that
//!   (re)connects sends its full state this way; whatever it does not resend disappears.
//! - Chunks: an `apply` or `replace` with `"more": true` is staged and answered `staged`;
//!   the chunks that follow on the same connection, up to and including the first without
//!   `more`, form one atomic change (their kind is the first chunk's). Indexes in a
//!   `rejected` answer count over all chunks. Any other request in between, or the client
//!   going away, discards what was staged. [`Client::send`] chunks by [`CHUNK_COMMANDS`].
//! - A `replace` that starts with `clear` (what carrier-control sends: its view of the config,
//!   then its routes) rebuilds everything, the base included; the ports stay the interfaces this
//!   process opened (see `TableWriter::keep_ports`): a change may re-attach them, and ports it
//!   appends are opened first (`add-ports`).
//! - `add-ports`: open interfaces as ports after the running ones (XDP attached, an AF_XDP
//!   socket on every worker's queue), detached until a change attaches them; nothing is
//!   published. carrier-control sends it before a change that adds ports, so that a port the
//!   dataplane cannot open refuses the change before anything is applied.
//! - `prefixes`: what each route of a VRF with `prefix_counters` forwarded, both tiers summed.
//! - When a client disconnects or dies, the tables stay as they are: forwarding goes on.
//!
//! The server thread is the only writer of the tables; workers only load snapshots. How a
//! change is applied without copying every table is described at [`TableWriter`].

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use carrier_contract::socket::{read_frame, write_message, Client, CtlError, NeighbourEntry, Request, Response, CHUNK_COMMANDS, MAX_MESSAGE};

use crate::io::CounterBoard;
use crate::tables::{TableCommand, TableHandle, Tables};

/// How long a commit waits for the workers to let go of the previous snapshot before it
/// copies the current one instead (workers hold a snapshot for one batch: microseconds).
const SPARE_WAIT: Duration = Duration::from_millis(100);

/// The writer side of the tables: the base (config) tables, the handle workers read from,
/// and the previous snapshot kept for reuse.
///
/// # Updates cost what they change (left-right)
/// Two copies of the tables exist: the published snapshot, which workers read, and the one it
/// replaced (`spare`). Workers load a snapshot once per batch, so within a batch of the swap
/// no worker holds the spare any more and the writer owns it again. A commit brings the spare
/// up to date by applying the previous change to it, applies the new change, and publishes
/// it: each change is applied twice, and nothing is copied. Only when the spare cannot be had
/// (a reader held it past [`SPARE_WAIT`], a change was refused half-way, or after a
/// `replace`, which rebuilds from the base anyway) does a commit copy the published snapshot.
#[derive(Debug)]
pub struct TableWriter {
    base: Tables,
    /// Opens ports a change appends (see [`TableWriter::keep_ports`]).
    ports_link: Option<PortLink>,
    handle: TableHandle,
    generation: u64,
    /// The snapshot the published one replaced; readers may still hold it.
    spare: Option<Arc<Tables>>,
    /// The change published since `spare` was current (shared with the mirror: a change of
    /// a million commands is not copied).
    behind: Arc<Vec<TableCommand>>,
    /// The express tier's mirror, told of every commit before it is acknowledged.
    mirror: Option<crate::express::MirrorLink>,
}

impl TableWriter {
    /// A writer publishing `base` through `handle`.
    pub fn new(base: Tables, handle: TableHandle) -> Self {
        handle.publish(base.clone());
        TableWriter { base, ports_link: None, handle, generation: 1, spare: None, behind: Arc::default(), mirror: None }
    }

    /// Tell `mirror` of every commit, and wait for it, before acknowledging the commit: once
    /// a withdraw is acknowledged, neither tier forwards over it.
    pub fn with_mirror(mut self, mirror: crate::express::MirrorLink) -> Self {
        self.mirror = Some(mirror);
        self
    }

    /// Open the ports a change appends through `link` (the thread that owns the XDP program)
    /// before the change is published.
    pub fn with_ports(mut self, link: PortLink) -> Self {
        self.ports_link = Some(link);
        self
    }

    /// The spare snapshot, owned again and brought up to date; `None` when it cannot be had.
    fn take_spare(&mut self) -> Option<Tables> {
        let mut spare = self.spare.take()?;
        let behind = std::mem::take(&mut self.behind);
        let deadline = Instant::now() + SPARE_WAIT;
        let mut tables = loop {
            match Arc::try_unwrap(spare) {
                Ok(t) => break t,
                Err(held) if Instant::now() < deadline => {
                    spare = held;
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(_) => {
                    log::debug!("a reader still holds the previous snapshot: copying the current one");
                    return None;
                }
            }
        };
        // The same commands were applied to the published copy, which was equal to this one.
        tables.apply_all(behind.iter().cloned()).ok()?;
        Some(tables)
    }

    fn commit(&mut self, replace: bool, commands: Vec<TableCommand>) -> Response {
        let n = commands.len();
        let mut next = if replace {
            self.spare = None;
            self.behind = Arc::default();
            self.base.clone()
        } else {
            self.take_spare().unwrap_or_else(|| (*self.handle.load()).clone())
        };
        if let Err((index, e)) = next.apply_all(commands.iter().cloned()) {
            // `next` is half-changed: dropped; the next commit copies the published snapshot.
            return Response::Rejected { index, error: e.to_string() };
        }
        if let Err(error) = self.keep_ports(&mut next) {
            return Response::Error { error };
        }
        // `keep_ports` set the ports' host flags directly, outside `apply`.
        next.touch();
        let next = Arc::new(next);
        let previous = self.handle.swap(next.clone());
        let commands = Arc::new(commands);
        if let Some(m) = &self.mirror {
            m.sync(next, (!replace).then(|| commands.clone()));
        } else {
            drop(next);
        }
        if !replace {
            self.spare = Some(previous);
            self.behind = commands;
        }
        self.generation += 1;
        Response::Applied { commands: n, generation: self.generation }
    }

    /// The ports are the interfaces this process opened: a change may re-attach a port (role,
    /// addresses, proxy ARP, anti-spoof, MTU) but not add, remove, rename or re-address one
    /// (name, MAC, VLAN), which takes a restart. A port's kernel mirror (the host path) serves
    /// it only while its role and addresses are the ones the mirror was made for: a mirror
    /// sits in its VRF's namespace with the port's addresses, and must not hand another VRF's
    /// traffic to that namespace.
    fn keep_ports(&mut self, next: &mut Tables) -> Result<(), String> {
        let n = self.base.ports.len();
        let same = next.ports.len() >= n && next.ports.iter().zip(&self.base.ports).all(|(a, b)| a.name == b.name && a.mac == b.mac && a.vlan == b.vlan);
        if !same {
            let names = |ports: &[crate::tables::Port]| ports.iter().map(|p| format!("{} ({}, vlan {:?})", p.name, p.mac, p.vlan)).collect::<Vec<_>>().join(", ");
            return Err(format!(
                "the ports are the interfaces carrier-dataplane opened ({}); removing or reordering them or changing a MAC or VLAN takes a restart, only new ones may follow them (asked for: {})",
                names(&self.base.ports),
                names(&next.ports)
            ));
        }
        // New ports: opened (XDP attached, a socket on every worker's queue) before the
        // change that names them is published. They have no host mirror.
        let new: Vec<crate::tables::Port> = next.ports[n..].to_vec();
        self.add_ports(&new)?;
        for (p, b) in next.ports.iter_mut().zip(&self.base.ports) {
            p.host = b.host && p.role == b.role && p.addrs == b.addrs;
        }
        Ok(())
    }

    /// Open `ports` after the running ones (see [`Request::AddPorts`]); they join the base
    /// tables detached.
    fn add_ports(&mut self, ports: &[crate::tables::Port]) -> Result<(), String> {
        for p in ports {
            match self.base.ports.get(p.id.index()) {
                Some(b) if b.name == p.name && b.mac == p.mac && b.vlan == p.vlan => continue,
                Some(b) => return Err(format!("port {}: id {} is {}'s", p.name, p.id, b.name)),
                None if p.id.index() != self.base.ports.len() => return Err(format!("port {}: id {} does not follow the {} running ports", p.name, p.id, self.base.ports.len())),
                None => {}
            }
            if self.base.ports.iter().any(|b| b.name == p.name) {
                return Err(format!("port {}: open already under another id", p.name));
            }
            let Some(link) = &self.ports_link else {
                return Err(format!("port {}: this dataplane cannot open ports while it runs", p.name));
            };
            link.open(p.id, &p.name)?;
            self.base.ports.push(crate::tables::Port { role: crate::tables::PortRole::Detached, addrs: vec![], host: false, ..p.clone() });
        }
        Ok(())
    }

    /// Handle one request. Chunked changes are assembled by [`Stager`]; here a request with
    /// `more` set is refused.
    pub fn handle(&mut self, request: Request, board: &CounterBoard) -> Response {
        match request {
            Request::Apply { more: true, .. } | Request::Replace { more: true, .. } => {
                Response::Error { error: "a chunked change must go through the table socket".into() }
            }
            Request::Apply { commands, .. } => self.commit(false, commands),
            Request::Replace { commands, .. } => self.commit(true, commands),
            Request::Counters => {
                let t = self.handle.load();
                let ports: Vec<String> = t.ports.iter().map(|p| p.name.clone()).collect();
                let vrfs: Vec<String> = t.vrfs.iter().map(|v| v.name.clone()).collect();
                Response::Counters { counters: board.view(&ports, &vrfs) }
            }
            Request::Dump => dump(&self.handle.load()),
            Request::AddPorts { ports } => match self.add_ports(&ports) {
                Ok(()) => Response::Applied { commands: 0, generation: self.generation },
                Err(error) => Response::Error { error },
            },
            Request::Prefixes { vrf } => {
                let t = self.handle.load();
                match t.vrf_by_name(&vrf).filter(|_| !vrf.is_empty()) {
                    None => Response::Error { error: format!("no VRF {vrf:?}") },
                    Some(v) if !v.prefix_counters => {
                        Response::Error { error: format!("VRF {vrf:?} does not count per prefix (prefix_counters = true in its [[vrf]])") }
                    }
                    Some(v) => Response::Prefixes {
                        prefixes: board
                            .prefixes(v.id, &v.fib)
                            .into_iter()
                            .map(|(prefix, c)| carrier_contract::socket::PrefixCount { prefix, packets: c.packets, bytes: c.bytes })
                            .collect(),
                    },
                }
            }
            Request::Neighbours => neighbours(&self.handle.load(), board),
            Request::Status => {
                use crate::tables::Lpm;
                let t = self.handle.load();
                Response::Status {
                    generation: self.generation,
                    ports: t.ports.len(),
                    vrfs: t.vrfs.len(),
                    routes: t.underlay.len() + t.vrfs.iter().map(|v| v.fib.len()).sum::<usize>(),
                    labels: t.ilm.len(),
                    workers: board.worker_frames(),
                }
            }
        }
    }
}

/// A port to open while the dataplane runs, for the thread that owns the XDP program: attach
/// the program, have every worker open a socket on its queue, point the XSKMAP at them.
#[derive(Debug)]
pub struct PortJob {
    /// The port's id (its slot in the XDP maps).
    pub port: carrier_common::PortId,
    /// Its interface.
    pub name: String,
    /// Where the answer goes.
    pub done: std::sync::mpsc::Sender<Result<(), String>>,
}

/// The writer's end of the channel to the thread that opens ports.
#[derive(Debug, Clone)]
pub struct PortLink(std::sync::mpsc::Sender<PortJob>);

impl PortLink {
    /// Most a port may take to open.
    const WITHIN: Duration = Duration::from_secs(10);

    /// A link and the receiver the opening thread reads.
    pub fn channel() -> (PortLink, std::sync::mpsc::Receiver<PortJob>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (PortLink(tx), rx)
    }

    /// Open `name` as port `port`, and wait for it.
    fn open(&self, port: carrier_common::PortId, name: &str) -> Result<(), String> {
        let (done, answer) = std::sync::mpsc::channel();
        self.0.send(PortJob { port, name: name.to_string(), done }).map_err(|_| format!("port {name}: the XDP thread is gone"))?;
        answer.recv_timeout(Self::WITHIN).map_err(|_| format!("port {name}: not opened within {:?}", Self::WITHIN))?
    }
}

/// The configured neighbours and those the workers learned, sorted by port and address.
fn neighbours(t: &Tables, board: &CounterBoard) -> Response {
    let name = |p: carrier_common::PortId| t.port(p).map_or_else(|| p.to_string(), |p| p.name.clone());
    let mut list: Vec<(carrier_common::PortId, std::net::Ipv4Addr, u8, NeighbourEntry)> = t
        .neighbours
        .iter()
        .map(|(&(port, ip), mac)| (port, ip, 0, NeighbourEntry { port: name(port), ip, mac: mac.to_string(), source: "static".into() }))
        .collect();
    for (port, ip, mac, _) in board.learned().neighbours {
        if t.neighbours.get(&(port, ip)) != Some(&mac) {
            list.push((port, ip, 1, NeighbourEntry { port: name(port), ip, mac: mac.to_string(), source: "learned".into() }));
        }
    }
    list.sort_by_key(|a| (a.0, a.1, a.2));
    Response::Neighbours { neighbours: list.into_iter().map(|(_, _, _, e)| e).collect() }
}

/// One connection's chunked change being assembled: whether it is a replace, and its commands.
#[derive(Debug, Default)]
pub struct Stager {
    staged: Option<(bool, Vec<TableCommand>)>,
}

impl Stager {
    /// Most commands one chunked change may stage (a bound on what a client can make the
    /// dataplane hold; 1M routes take about 2M commands).
    pub const MAX_STAGED: usize = 16 << 20;

    /// Stage a chunk, or hand a whole request (with everything staged before it) to `writer`.
    pub fn request(&mut self, request: Request, writer: &Mutex<TableWriter>, board: &CounterBoard) -> Response {
        let (replace, commands, more) = match request {
            Request::Apply { commands, more } => (false, commands, more),
            Request::Replace { commands, more } => (true, commands, more),
            other => {
                if self.staged.take().is_some() {
                    log::warn!("table socket: a chunked change was left unfinished and is discarded");
                }
                return with_writer(writer, |w| w.handle(other, board));
            }
        };
        let (replace, all) = match self.staged.take() {
            Some((first, mut staged)) => {
                staged.extend(commands);
                (first, staged)
            }
            None => (replace, commands),
        };
        if all.len() > Self::MAX_STAGED {
            return Response::Error { error: format!("a chunked change of over {} commands is refused", Self::MAX_STAGED) };
        }
        if more {
            let n = all.len();
            self.staged = Some((replace, all));
            return Response::Staged { commands: n };
        }
        let request = if replace { Request::Replace { commands: all, more: false } } else { Request::Apply { commands: all, more: false } };
        with_writer(writer, |w| w.handle(request, board))
    }
}

fn with_writer(writer: &Mutex<TableWriter>, f: impl FnOnce(&mut TableWriter) -> Response) -> Response {
    match writer.lock() {
        Ok(mut w) => f(&mut w),
        Err(_) => Response::Error { error: "table writer poisoned".into() },
    }
}

fn dump(t: &Tables) -> Response {
    use serde_json::json;
    let nh = |id: carrier_common::NextHopId| t.nexthop(id).map_or_else(|| json!(null), |n| json!(n));
    let mut routes = vec![];
    for (name, fib) in std::iter::once(("underlay".to_string(), &t.underlay)).chain(t.vrfs.iter().filter(|v| !v.name.is_empty()).map(|v| (v.name.clone(), &v.fib))) {
        for (prefix, id) in fib.routes() {
            routes.push(json!({"table": name, "prefix": prefix.to_string(), "nexthop": nh(id)}));
        }
    }
    let mut labels: Vec<_> = t.ilm.iter().map(|(l, a)| (l.value(), json!({"label": l.value(), "action": a}))).collect();
    labels.sort_by_key(|(l, _)| *l);
    let bridges = t
        .bridges
        .iter()
        .filter(|b| !b.name.is_empty())
        .map(|b| {
            let mut macs: Vec<_> = b.macs.iter().map(|(m, d)| json!({"mac": m.to_string(), "dest": d})).collect();
            macs.sort_by_key(|m| m["mac"].as_str().map(str::to_string));
            json!({"bridge": b.name, "vni": b.vni.value(), "flood": b.flood, "macs": macs})
        })
        .collect();
    Response::Dump { routes, labels: labels.into_iter().map(|(_, v)| v).collect(), bridges }
}

/// Serve the table socket at `path` until `stop` is set. Each client gets a thread; requests
/// are applied one at a time through the shared [`TableWriter`].
pub fn serve(path: &Path, writer: TableWriter, board: CounterBoard, stop: &'static AtomicBool) -> Result<std::thread::JoinHandle<()>, CtlError> {
    serve_on(bind(path)?, path, writer, board, stop)
}

/// Make the table socket at `path` (its directory too), root-only (0600).
pub fn bind(path: &Path) -> Result<UnixListener, CtlError> {
    let said = |what: String| move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(said(format!("cannot create its directory {}", dir.display())))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(said(format!("cannot make the socket {}", path.display())))?;
    // Whoever can connect can rewrite every table: the owner (root) only.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(listener)
}

/// [`serve`] on a socket [`bind`] made (so that the process can drop privileges in between).
pub fn serve_on(listener: UnixListener, path: &Path, writer: TableWriter, board: CounterBoard, stop: &'static AtomicBool) -> Result<std::thread::JoinHandle<()>, CtlError> {
    listener.set_nonblocking(true)?;
    let writer = Arc::new(Mutex::new(writer));
    let path: PathBuf = path.to_path_buf();
    Ok(std::thread::Builder::new().name("table-socket".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let (writer, board) = (writer.clone(), board.clone());
                    let _ = std::thread::Builder::new().name("table-client".into()).spawn(move || client(stream, &writer, &board, stop));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    log::warn!("table socket accept: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    })?)
}

fn client(mut stream: UnixStream, writer: &Mutex<TableWriter>, board: &CounterBoard, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut stager = Stager::default();
    while !stop.load(Ordering::Relaxed) {
        let body = match read_frame(&mut stream) {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(CtlError::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                let _ = write_message(&mut stream, &Response::Error { error: e.to_string() });
                return;
            }
        };
        let response = match serde_json::from_slice::<Request>(&body) {
            Ok(req) => stager.request(req, writer, board),
            Err(e) => Response::Error { error: format!("bad request: {e}") },
        };
        if write_message(&mut stream, &response).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::pipeline::Learnt;
    use crate::tables::Lpm;

    #[test]
    fn apply_is_atomic_and_replace_starts_from_base() {
        let base = Config::parse(include_str!("../../examples/pe1.toml")).unwrap().tables().unwrap();
        let handle = TableHandle::new(Tables::default());
        let mut w = TableWriter::new(base, handle.clone());
        let board = CounterBoard::new(1);
        let red = handle.load().vrf_by_name("red").unwrap().id;
        let prefix = "10.77.0.0/16".parse().unwrap();
        let route = TableCommand::Route { table: crate::tables::Table::Vrf(red), prefix, nexthop: carrier_common::NextHopId(0) };
        let bad = TableCommand::Route { table: crate::tables::Table::Vrf(red), prefix, nexthop: carrier_common::NextHopId(9999) };
        let r = w.handle(Request::Apply { commands: vec![route.clone(), bad], more: false }, &board);
        assert!(matches!(r, Response::Rejected { index: 1, .. }), "{r:?}");
        assert!(handle.load().vrfs[red.index()].fib.lookup("10.77.1.1".parse().unwrap()).is_none(), "half a batch leaked");
        let r = w.handle(Request::Apply { commands: vec![route], more: false }, &board);
        assert!(matches!(r, Response::Applied { commands: 1, generation: 2 }), "{r:?}");
        assert!(handle.load().vrfs[red.index()].fib.lookup("10.77.1.1".parse().unwrap()).is_some());
        let r = w.handle(Request::Replace { commands: vec![], more: false }, &board);
        assert!(matches!(r, Response::Applied { .. }));
        assert!(handle.load().vrfs[red.index()].fib.lookup("10.77.1.1".parse().unwrap()).is_none(), "replace keeps only base");
        assert!(handle.load().vrfs[red.index()].fib.lookup("10.2.0.1".parse().unwrap()).is_some(), "base routes stay");
    }

    /// A replace may re-attach ports (here ce-red to blue, ce-blue detached) but not change the
    /// set of interfaces; a port's host mirror is kept only while its role and addresses are
    /// those it was made for.
    #[test]
    fn replace_reattaches_ports_but_keeps_the_interfaces() {
        let text = include_str!("../../examples/pe1.toml");
        let mut base = Config::parse(text).unwrap().tables().unwrap();
        for p in &mut base.ports {
            p.host = true;
        }
        let handle = TableHandle::new(Tables::default());
        let mut w = TableWriter::new(base.clone(), handle.clone());
        let board = CounterBoard::new(1);
        let moved = text
            .replace("addresses = [\"10.3.0.1/24\"]\nvrf = \"red\"", "addresses = [\"10.3.0.1/24\"]\nvrf = \"blue\"")
            .replace("addresses = [\"10.1.0.1/24\"]\nvrf = \"blue\"", "addresses = [\"10.1.0.1/24\"]\ndetached = true");
        assert_ne!(moved, text);
        let commands = Config::parse(&moved).unwrap().commands_after(&base).unwrap();
        let r = w.handle(Request::Replace { commands, more: false }, &board);
        assert!(matches!(r, Response::Applied { .. }), "{r:?}");
        let t = handle.load();
        let (ce_red2, ce_blue, ce_red) = (t.port_by_name("ce-red2").unwrap(), t.port_by_name("ce-blue").unwrap(), t.port_by_name("ce-red").unwrap());
        assert_eq!(ce_red2.role, crate::tables::PortRole::Vrf(t.vrf_by_name("blue").unwrap().id));
        assert_eq!(ce_blue.role, crate::tables::PortRole::Detached);
        assert!(!ce_red2.host && !ce_blue.host && ce_red.host, "mirrors kept only for unchanged ports");
        let blue = &t.vrf_by_name("blue").unwrap().fib;
        assert!(blue.lookup("10.3.0.9".parse().unwrap()).is_some() && blue.lookup("10.1.0.9".parse().unwrap()).is_none(), "connected routes follow the ports");
        // Another interface, or one fewer: refused, the published tables untouched.
        for changed in [text.replace("\"ce-red\"", "\"ce-new\""), text.replacen("02:00:00:00:01:01", "02:00:00:00:09:09", 1)] {
            let commands = Config::parse(&changed).unwrap().commands().unwrap();
            let r = w.handle(Request::Replace { commands, more: false }, &board);
            let Response::Error { error } = r else { panic!("accepted: {r:?}") };
            assert!(error.contains("takes a restart"), "{error}");
            assert_eq!(handle.load().port_by_name("ce-blue").unwrap().role, crate::tables::PortRole::Detached);
        }
        // A port after the others needs the XDP thread to open it: this writer has none.
        let added = format!("{text}\n[[port]]\nname = \"ce-new\"\nmac = \"02:00:00:00:09:09\"\ndetached = true\n");
        let commands = Config::parse(&added).unwrap().commands().unwrap();
        let r = w.handle(Request::Replace { commands, more: false }, &board);
        assert!(matches!(&r, Response::Error { error } if error.contains("cannot open ports")), "{r:?}");
    }

    /// A VRF with per-prefix counters counts what each route forwarded; another VRF answers
    /// that it does not count; a withdrawn route leaves the list.
    #[test]
    fn prefix_counters_count_what_each_route_forwarded() {
        use crate::pipeline::{process, Batch, VecFrame, VecPool, Worker};
        let text = include_str!("../../examples/pe1.toml").replacen("name = \"red\"\n", "name = \"red\"\nprefix_counters = true\n", 1);
        let base = Config::parse(&text).unwrap().tables().unwrap();
        let handle = TableHandle::new(Tables::default());
        let mut w = TableWriter::new(base.clone(), handle.clone());
        let board = CounterBoard::new(1);
        let ce_red = base.port_by_name("ce-red").unwrap();
        let frame = |dst: [u8; 4]| {
            let mut f = ce_red.mac.0.to_vec();
            f.extend_from_slice(&[0x02, 0xaa, 0, 0, 0, 2, 0x08, 0x00]);
            let mut h = [0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 1, 0, 2, dst[0], dst[1], dst[2], dst[3]];
            let c = crate::wire::checksum::checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&h);
            f.extend_from_slice(&[0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0]);
            f
        };
        let mut worker = Worker::default();
        let mut batch = Batch::default();
        for dst in [[10, 2, 0, 5], [10, 2, 0, 6], [10, 2, 0, 7], [10, 3, 0, 2], [10, 3, 0, 2], [10, 99, 0, 1]] {
            batch.push(VecFrame::new(&frame(dst)), ce_red.id);
        }
        process(&handle.load(), &mut batch, &mut worker, &mut VecPool);
        board.publish(0, &worker.counters);
        let counts = |w: &mut TableWriter, vrf: &str| match w.handle(Request::Prefixes { vrf: vrf.into() }, &board) {
            Response::Prefixes { prefixes } => Ok(prefixes.iter().map(|p| (p.prefix.to_string(), p.packets, p.bytes)).collect::<Vec<_>>()),
            Response::Error { error } => Err(error),
            r => panic!("{r:?}"),
        };
        let len = frame([0; 4]).len() as u64;
        assert_eq!(counts(&mut w, "red"), Ok(vec![("10.2.0.0/24".to_string(), 3, 3 * len), ("10.3.0.0/24".to_string(), 2, 2 * len)]), "10.99.0.1 has no route");
        assert!(counts(&mut w, "blue").is_err_and(|e| e.contains("does not count")));
        assert!(counts(&mut w, "nope").is_err_and(|e| e.contains("no VRF")));
        let red = crate::tables::Table::Vrf(base.vrf_by_name("red").unwrap().id);
        let r = w.handle(Request::Apply { commands: vec![TableCommand::Withdraw { table: red, prefix: "10.2.0.0/24".parse().unwrap() }], more: false }, &board);
        assert!(matches!(r, Response::Applied { .. }), "{r:?}");
        assert_eq!(counts(&mut w, "red"), Ok(vec![("10.3.0.0/24".to_string(), 2, 2 * len)]));
    }

    /// `neighbours` lists the config's neighbours and what the workers learned (a learned entry
    /// equal to a configured one once, as static), sorted by port and address.
    #[test]
    fn neighbours_merge_config_and_what_workers_learned() {
        let base = Config::parse(include_str!("../../examples/pe1.toml")).unwrap().tables().unwrap();
        let handle = TableHandle::new(Tables::default());
        let mut w = TableWriter::new(base.clone(), handle);
        let board = CounterBoard::new(2);
        let ce_red2 = base.ports.iter().find(|p| p.name == "ce-red2").unwrap().id;
        let ce_red = base.ports.iter().find(|p| p.name == "ce-red").unwrap().id;
        let mac = |s: &str| s.parse::<crate::wire::MacAddr>().unwrap();
        let mut worker = crate::pipeline::Worker::default();
        worker.neighbours.insert((ce_red2, "10.3.0.9".parse().unwrap()), Learnt::new(mac("02:aa:00:00:00:09"), 1));
        worker.neighbours.insert((ce_red, "10.1.0.2".parse().unwrap()), Learnt::new(mac("02:aa:00:00:00:02"), 1)); // = the config's
        board.publish_learned(1, &worker);
        let Response::Neighbours { neighbours } = w.handle(Request::Neighbours, &board) else { panic!("not a neighbours answer") };
        let rows: Vec<(String, String, String, String)> = neighbours.iter().map(|n| (n.port.clone(), n.ip.to_string(), n.mac.clone(), n.source.clone())).collect();
        let row = |p: &str, ip: &str, m: &str, s: &str| (p.to_string(), ip.to_string(), m.to_string(), s.to_string());
        assert!(rows.contains(&row("ce-red2", "10.3.0.9", "02:aa:00:00:00:09", "learned")), "{rows:?}");
        assert!(rows.contains(&row("ce-red", "10.1.0.2", "02:aa:00:00:00:02", "static")), "{rows:?}");
        assert_eq!(rows.iter().filter(|r| r.1 == "10.1.0.2" && r.0 == "ce-red").count(), 1, "{rows:?}");
        assert_eq!(rows.len(), base.neighbours.len() + 1, "{rows:?}");
        // As JSON on the socket.
        let json = serde_json::to_value(Response::Neighbours { neighbours }).unwrap();
        assert_eq!(json["response"], "neighbours");
    }

    /// Many small changes, each applied to the reused spare snapshot, end in the same tables as
    /// applying them all at once to a copy; a refused change leaves the published tables alone
    /// and the next change still lands.
    #[test]
    fn changes_applied_to_the_spare_match_a_fresh_copy() {
        let base = Config::parse(include_str!("../../examples/pe1.toml")).unwrap().tables().unwrap();
        let handle = TableHandle::new(Tables::default());
        let mut w = TableWriter::new(base.clone(), handle.clone());
        let board = CounterBoard::new(1);
        let red = crate::tables::Table::Vrf(base.vrf_by_name("red").unwrap().id);
        let mut all = vec![];
        for i in 0..200u32 {
            let prefix = crate::tables::Ipv4Prefix::new(std::net::Ipv4Addr::from(0x0a40_0000 + (i % 50) * 256), 24).unwrap();
            let cmd = if i % 7 == 3 {
                TableCommand::Withdraw { table: red, prefix }
            } else {
                TableCommand::Route { table: red, prefix, nexthop: carrier_common::NextHopId(i % 2) }
            };
            all.push(cmd.clone());
            let held = handle.load(); // a reader in the middle of a batch
            let r = w.handle(Request::Apply { commands: vec![cmd], more: false }, &board);
            assert!(matches!(r, Response::Applied { .. }), "{r:?}");
            drop(held);
            if i == 100 {
                let bad = TableCommand::Route { table: red, prefix, nexthop: carrier_common::NextHopId(9999) };
                let r = w.handle(Request::Apply { commands: vec![TableCommand::Withdraw { table: red, prefix }, bad], more: false }, &board);
                assert!(matches!(r, Response::Rejected { index: 1, .. }), "{r:?}");
            }
        }
        let mut expect = base;
        expect.apply_all(all).unwrap();
        let got = handle.load();
        let routes = |t: &Tables| t.vrfs.iter().map(|v| v.fib.routes().collect::<Vec<_>>()).collect::<Vec<_>>();
        assert_eq!(routes(&got), routes(&expect));
        for id in 0..3 {
            assert_eq!(got.nexthop_refs(carrier_common::NextHopId(id)), expect.nexthop_refs(carrier_common::NextHopId(id)));
        }
    }

    #[test]
    fn framing_round_trip_and_limits() {
        let mut buf = vec![];
        write_message(&mut buf, &Request::Status).unwrap();
        assert_eq!(&buf[..4], &(buf.len() as u32 - 4).to_be_bytes());
        let body = read_frame(&mut &buf[..]).unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<Request>(&body).unwrap(), Request::Status);
        assert!(read_frame(&mut &[][..]).unwrap().is_none());
        let huge = ((MAX_MESSAGE + 1) as u32).to_be_bytes();
        assert!(matches!(read_frame(&mut &huge[..]), Err(CtlError::TooLarge(_))));
    }

    #[test]
    fn socket_serves_requests_and_survives_garbage() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let dir = std::env::temp_dir().join(format!("carrier-ctl-{}", std::process::id()));
        let path = dir.join("dp.sock");
        let base = Config::parse(include_str!("../../examples/pe1.toml")).unwrap().tables().unwrap();
        let handle = TableHandle::new(Tables::default());
        let t = serve(&path, TableWriter::new(base, handle), CounterBoard::new(1), &STOP).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "the socket is the owner's only");
        }
        let mut c = Client::connect(&path).unwrap();
        assert!(matches!(c.request(&Request::Status).unwrap(), Response::Status { ports: 6, .. }));
        // Garbage JSON gets an error and the connection stays usable.
        write_message(c.stream(), &serde_json::json!({"request": "nope"})).unwrap();
        let body = read_frame(c.stream()).unwrap().unwrap();
        assert!(matches!(serde_json::from_slice::<Response>(&body).unwrap(), Response::Error { .. }));
        assert!(matches!(c.request(&Request::Counters).unwrap(), Response::Counters { .. }));
        // A change of 2.5 chunks arrives as one: nothing is visible until the last chunk, a
        // bad command in the last chunk refuses all of it (its index counted over all chunks).
        let red = crate::tables::Table::Vrf(carrier_common::VrfId(0));
        let routes: Vec<TableCommand> = (0..(CHUNK_COMMANDS * 5 / 2) as u32)
            .map(|i| TableCommand::Route {
                table: red,
                prefix: crate::tables::Ipv4Prefix::new(std::net::Ipv4Addr::from(0x6400_0000 + i * 256), 24).unwrap(),
                nexthop: carrier_common::NextHopId(0),
            })
            .collect();
        let mut bad = routes.clone();
        bad.push(TableCommand::Route { table: red, prefix: "10.99.0.0/16".parse().unwrap(), nexthop: carrier_common::NextHopId(9999) });
        let r = c.send(false, &bad).unwrap();
        assert!(matches!(r, Response::Rejected { index, .. } if index == routes.len()), "{r:?}");
        let Response::Status { routes: before, .. } = c.request(&Request::Status).unwrap() else { panic!() };
        let r = c.send(false, &routes).unwrap();
        assert!(matches!(r, Response::Applied { commands, .. } if commands == routes.len()), "{r:?}");
        let Response::Status { routes: after, .. } = c.request(&Request::Status).unwrap() else { panic!() };
        assert_eq!(after, before + routes.len());
        // A replace in chunks starts from the base again.
        let r = c.send(true, &routes[..10]).unwrap();
        assert!(matches!(r, Response::Applied { commands: 10, .. }), "{r:?}");
        let Response::Status { routes: replaced, .. } = c.request(&Request::Status).unwrap() else { panic!() };
        assert_eq!(replaced, before + 10);
        STOP.store(true, Ordering::Relaxed);
        t.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
