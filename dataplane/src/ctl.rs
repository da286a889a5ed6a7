//! The table socket: how a control process programs a running dataplane and reads its
//! counters.
//!
//! # Framing
//! A Unix stream socket. Each message, both ways, is a 4-byte big-endian length followed by
//! that many bytes of JSON: a [`Request`] from the client, a [`Response`] from the dataplane,
//! strictly alternating. Messages above [`MAX_MESSAGE`] close the connection.
//!
//! # Semantics
//! - `apply`: the commands are applied to a copy of the current tables; if any is refused,
//!   none is applied and the index of the first bad one is returned. Otherwise the copy is
//!   published as one snapshot: workers see all of the batch or none of it.
//! - `replace`: the same, starting from the dataplane's base tables (those of its config
//!   file: ports, static routes) instead of the current ones. A control process that
//!   (re)connects sends its full state this way; whatever it does not resend disappears.
//! - When a client disconnects or dies, the tables stay as they are: forwarding goes on.
//!
//! The server thread is the only writer of the tables; workers only load snapshots.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::io::CounterBoard;
use crate::tables::{TableCommand, TableHandle, Tables};

/// Largest message accepted (64 MiB).
pub const MAX_MESSAGE: usize = 64 << 20;

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// Apply commands on top of the current tables, atomically.
    Apply {
        /// The commands.
        commands: Vec<TableCommand>,
    },
    /// Replace everything above the base config with these commands, atomically.
    Replace {
        /// The commands.
        commands: Vec<TableCommand>,
    },
    /// The counters summed over workers.
    Counters,
    /// A summary of the tables.
    Status,
    /// Every route, label, flood list and bridge MAC, for operators and tests.
    Dump,
}

/// The dataplane's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum Response {
    /// Every command was applied and published.
    Applied {
        /// How many.
        commands: usize,
        /// Snapshot generation now current.
        generation: u64,
    },
    /// Nothing was applied: command `index` was refused.
    Rejected {
        /// Index of the refused command.
        index: usize,
        /// Why.
        error: String,
    },
    /// Counters, with port and VRF names.
    Counters {
        /// The counters.
        counters: serde_json::Value,
    },
    /// Table summary.
    Status {
        /// Snapshot generation.
        generation: u64,
        /// Ports.
        ports: usize,
        /// VRFs.
        vrfs: usize,
        /// Routes over all VRFs and the underlay.
        routes: usize,
        /// ILM entries.
        labels: usize,
    },
    /// The tables in readable form.
    Dump {
        /// `{table, prefix, nexthop}` per route (`table` is a VRF name or `underlay`).
        routes: Vec<serde_json::Value>,
        /// `{label, action}` per ILM entry.
        labels: Vec<serde_json::Value>,
        /// `{bridge, flood, macs}` per bridge domain.
        bridges: Vec<serde_json::Value>,
    },
    /// The request was not understood.
    Error {
        /// Why.
        error: String,
    },
}

/// A framing or I/O error on the socket.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Socket I/O.
    #[error("table socket: {0}")]
    Io(#[from] std::io::Error),
    /// A message over [`MAX_MESSAGE`].
    #[error("message of {0} bytes is over the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    /// Bad JSON from the peer.
    #[error("bad message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Write one framed message.
pub fn write_message<T: Serialize>(stream: &mut impl Write, msg: &T) -> Result<(), CtlError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_MESSAGE {
        return Err(CtlError::TooLarge(body.len()));
    }
    stream.write_all(&(body.len() as u32).to_be_bytes())?;
    stream.write_all(&body)?;
    stream.flush()?;
    Ok(())
}

/// Read one framed message body; `None` at a clean end of stream.
pub fn read_frame(stream: &mut impl Read) -> Result<Option<Vec<u8>>, CtlError> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(CtlError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(Some(body))
}

/// The writer side of the tables: the base (config) tables, the current master copy, and
/// the handle workers read from.
#[derive(Debug)]
pub struct TableWriter {
    base: Tables,
    master: Tables,
    handle: TableHandle,
    generation: u64,
}

impl TableWriter {
    /// A writer publishing `base` through `handle`.
    pub fn new(base: Tables, handle: TableHandle) -> Self {
        handle.publish(base.clone());
        TableWriter { master: base.clone(), base, handle, generation: 1 }
    }

    fn commit(&mut self, start: Tables, commands: Vec<TableCommand>) -> Response {
        let n = commands.len();
        let mut next = start;
        if let Err((index, e)) = next.apply_all(commands) {
            return Response::Rejected { index, error: e.to_string() };
        }
        self.master = next;
        self.handle.publish(self.master.clone());
        self.generation += 1;
        Response::Applied { commands: n, generation: self.generation }
    }

    /// Handle one request.
    pub fn handle(&mut self, request: Request, board: &CounterBoard) -> Response {
        match request {
            Request::Apply { commands } => self.commit(self.master.clone(), commands),
            Request::Replace { commands } => self.commit(self.base.clone(), commands),
            Request::Counters => {
                let t = &self.master;
                let ports: Vec<String> = t.ports.iter().map(|p| p.name.clone()).collect();
                let vrfs: Vec<String> = t.vrfs.iter().map(|v| v.name.clone()).collect();
                Response::Counters { counters: board.to_json(&ports, &vrfs) }
            }
            Request::Dump => dump(&self.master),
            Request::Status => {
                use crate::tables::Lpm;
                let t = &self.master;
                Response::Status {
                    generation: self.generation,
                    ports: t.ports.len(),
                    vrfs: t.vrfs.len(),
                    routes: t.underlay.len() + t.vrfs.iter().map(|v| v.fib.len()).sum::<usize>(),
                    labels: t.ilm.len(),
                }
            }
        }
    }
}

fn dump(t: &Tables) -> Response {
    use serde_json::json;
    let nh = |id: carrier_common::NextHopId| t.nexthop(id).map_or_else(|| json!(null), |n| json!(n));
    let mut routes = vec![];
    for (name, fib) in std::iter::once(("underlay".to_string(), &t.underlay)).chain(t.vrfs.iter().map(|v| (v.name.clone(), &v.fib))) {
        for (prefix, id) in fib.routes() {
            routes.push(json!({"table": name, "prefix": prefix.to_string(), "nexthop": nh(id)}));
        }
    }
    let mut labels: Vec<_> = t.ilm.iter().map(|(l, a)| (l.value(), json!({"label": l.value(), "action": a}))).collect();
    labels.sort_by_key(|(l, _)| *l);
    let bridges = t
        .bridges
        .iter()
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
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
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
            Ok(req) => match writer.lock() {
                Ok(mut w) => w.handle(req, board),
                Err(_) => Response::Error { error: "table writer poisoned".into() },
            },
            Err(e) => Response::Error { error: format!("bad request: {e}") },
        };
        if write_message(&mut stream, &response).is_err() {
            return;
        }
    }
}

/// A client of the table socket.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connect to the dataplane's socket.
    pub fn connect(path: &Path) -> Result<Client, CtlError> {
        Ok(Client { stream: UnixStream::connect(path)? })
    }

    /// Send a request and wait for the answer.
    pub fn request(&mut self, request: &Request) -> Result<Response, CtlError> {
        write_message(&mut self.stream, request)?;
        let body = read_frame(&mut self.stream)?.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        Ok(serde_json::from_slice(&body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
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
        let r = w.handle(Request::Apply { commands: vec![route.clone(), bad] }, &board);
        assert!(matches!(r, Response::Rejected { index: 1, .. }), "{r:?}");
        assert!(handle.load().vrfs[red.index()].fib.lookup("10.77.1.1".parse().unwrap()).is_none(), "half a batch leaked");
        let r = w.handle(Request::Apply { commands: vec![route] }, &board);
        assert!(matches!(r, Response::Applied { commands: 1, generation: 2 }), "{r:?}");
        assert!(handle.load().vrfs[red.index()].fib.lookup("10.77.1.1".parse().unwrap()).is_some());
        let r = w.handle(Request::Replace { commands: vec![] }, &board);
        assert!(matches!(r, Response::Applied { .. }));
        assert!(handle.load().vrfs[red.index()].fib.lookup("10.77.1.1".parse().unwrap()).is_none(), "replace keeps only base");
        assert!(handle.load().vrfs[red.index()].fib.lookup("10.2.0.1".parse().unwrap()).is_some(), "base routes stay");
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
        let mut c = Client::connect(&path).unwrap();
        assert!(matches!(c.request(&Request::Status).unwrap(), Response::Status { ports: 6, .. }));
        // Garbage JSON gets an error and the connection stays usable.
        write_message(&mut c.stream, &serde_json::json!({"request": "nope"})).unwrap();
        let body = read_frame(&mut c.stream).unwrap().unwrap();
        assert!(matches!(serde_json::from_slice::<Response>(&body).unwrap(), Response::Error { .. }));
        assert!(matches!(c.request(&Request::Counters).unwrap(), Response::Counters { .. }));
        STOP.store(true, Ordering::Relaxed);
        t.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
