//! The table socket's protocol and its client (the framing and semantics are described in
//! `carrier_dataplane::ctl`, which serves it).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::command::TableCommand;

/// Largest message accepted (64 MiB).
pub const MAX_MESSAGE: usize = 64 << 20;

/// Commands per chunk that [`Client::send`] puts in one message (a few MiB of JSON).
pub const CHUNK_COMMANDS: usize = 20_000;

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// Apply commands on top of the current tables, atomically.
    Apply {
        /// The commands.
        commands: Vec<TableCommand>,
        /// More chunks of the same change follow.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    /// Replace everything above the base config with these commands, atomically.
    Replace {
        /// The commands.
        commands: Vec<TableCommand>,
        /// More chunks of the same change follow.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    /// The counters summed over workers.
    Counters,
    /// A summary of the tables.
    Status,
    /// Every route, label, flood list and bridge MAC, for operators and tests.
    Dump,
    /// The neighbours: configured, and learned from ARP by the workers.
    Neighbours,
    /// Open these interfaces as ports after the running ones (XDP attached, a socket on
    /// every worker's queue), detached until a change attaches them; ports already open are
    /// left as they are. Nothing is published.
    AddPorts {
        /// The ports, with the ids they get.
        ports: Vec<crate::command::Port>,
    },
    /// What each route of a VRF with per-prefix counters forwarded, both tiers summed.
    Prefixes {
        /// The VRF's name.
        vrf: String,
    },
}

/// What one route forwarded (an OpenConfig AFT `ipv4-entry`'s counters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixCount {
    /// The route's prefix.
    pub prefix: crate::Ipv4Prefix,
    /// Packets forwarded by it.
    pub packets: u64,
    /// Their bytes (frames as looked up).
    pub bytes: u64,
}

/// A neighbour (an IP's MAC on a port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourEntry {
    /// The port.
    pub port: String,
    /// The neighbour's address.
    pub ip: std::net::Ipv4Addr,
    /// Its MAC.
    pub mac: String,
    /// `static` (the config) or `learned` (ARP).
    pub source: String,
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
    /// A chunk was staged; the change is applied with its last chunk.
    Staged {
        /// Commands staged so far.
        commands: usize,
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
        counters: crate::counters::CountersView,
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
        /// Frames each AF_XDP worker received (one worker per receive queue, queue 0 first).
        #[serde(default)]
        workers: Vec<u64>,
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
    /// The neighbours, by port and address.
    Neighbours {
        /// Configured ones first where both exist.
        neighbours: Vec<NeighbourEntry>,
    },
    /// Per-prefix counters of one VRF, by prefix; routes that forwarded nothing left out.
    Prefixes {
        /// The counts.
        prefixes: Vec<PrefixCount>,
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

    /// The connection itself, for writing frames that are not [`Request`]s (tests of the
    /// server's error handling).
    pub fn stream(&mut self) -> &mut UnixStream {
        &mut self.stream
    }

    /// Send a request and wait for the answer.
    pub fn request(&mut self, request: &Request) -> Result<Response, CtlError> {
        write_message(&mut self.stream, request)?;
        self.response()
    }

    fn response(&mut self) -> Result<Response, CtlError> {
        let body = read_frame(&mut self.stream)?.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// Send `commands` as one atomic `apply` (or `replace`), in chunks of [`CHUNK_COMMANDS`];
    /// the answer is the dataplane's to the last chunk, or the first that was not `staged`.
    pub fn send(&mut self, replace: bool, commands: &[TableCommand]) -> Result<Response, CtlError> {
        /// A request that borrows its commands, serialised like [`Request`].
        #[derive(Serialize)]
        #[serde(tag = "request", rename_all = "kebab-case")]
        enum Chunk<'a> {
            Apply { commands: &'a [TableCommand], more: bool },
            Replace { commands: &'a [TableCommand], more: bool },
        }
        let n = commands.len().div_ceil(CHUNK_COMMANDS).max(1);
        let mut i = 0;
        loop {
            let part = &commands[(i * CHUNK_COMMANDS).min(commands.len())..((i + 1) * CHUNK_COMMANDS).min(commands.len())];
            i += 1;
            let more = i < n;
            let chunk = if replace { Chunk::Replace { commands: part, more } } else { Chunk::Apply { commands: part, more } };
            let response = self.request_chunk(chunk)?;
            if !more || !matches!(response, Response::Staged { .. }) {
                return Ok(response);
            }
        }
    }

    fn request_chunk(&mut self, chunk: impl Serialize) -> Result<Response, CtlError> {
        write_message(&mut self.stream, &chunk)?;
        self.response()
    }
}
