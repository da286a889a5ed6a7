//! The state layer: typed read models that the tasks owning the state publish, and the
//! commands operators send into those tasks. The API ([`crate::api`]), `/metrics`
//! ([`crate::metrics`]) and through the API `carrierctl` read only this; none of them reaches
//! into a task.
//!
//! ```text
//!  peer task ×N ──── watch<PeerStatus> ────────┐
//!  rib task ──────── watch<RibSummary> ────────┼──▶ State (a cloneable handle) ◀── api, metrics
//!  dataplane poller ─ watch<DataplaneStatus> ──┘        │ Command (mpsc, answered by oneshot)
//!  (std thread, reads the table socket's counters)      ▼
//!                                                    rib task ── PeerCommand ──▶ peer tasks
//! ```
//! Who writes, who reads: each `watch` has one writer (the task named beside it) and any number
//! of readers, which clone the `Arc` they find and never hold a lock while they work. Views
//! whose size follows the RIB (routes, labels, EVPN MACs) are not published after every flush —
//! at a million routes that would cost more than the flush — but asked for: a [`Command`] the
//! rib task answers between two events, from its own maps.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carrier_contract::CountersView;
use carrier_dataplane::tables::Ipv4Prefix;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use utoipa::ToSchema;

pub use crate::bgp::fsm::MessageCounters;
use crate::config::ControlConfig;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Prefix counts of one peer in one family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrefixCounts {
    /// `ipv4-unicast`, `l3vpn-ipv4-unicast` or `l2vpn-evpn`.
    pub family: String,
    /// Paths in the Adj-RIB-In.
    pub received: u64,
    /// Of those, paths some VRF, bridge or the underlay imports (a VPN path whose route
    /// targets no VRF imports is received, not accepted).
    pub accepted: u64,
    /// Paths in the Adj-RIB-Out (what the peer was sent and not withdrawn).
    pub advertised: u64,
}

/// One entry of a session's up/down history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerHistoryEntry {
    /// When (Unix seconds).
    pub at: u64,
    /// What happened: `established`, `down: <reason>`, `admin down`, `admin up`.
    pub event: String,
}

/// A BGP neighbour as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerStatus {
    /// Neighbour address.
    pub address: String,
    /// Configured remote AS.
    pub remote_as: u32,
    /// Local AS.
    pub local_as: u32,
    /// FSM state: `idle`, `connect`, `active`, `opensent`, `openconfirm`, `established`.
    pub state: String,
    /// Stopped by an operator (no automatic restart).
    pub admin_down: bool,
    /// The peer's BGP identifier (from its OPEN).
    pub router_id: Option<String>,
    /// Seconds since Established.
    pub uptime_seconds: Option<u64>,
    /// When the session came up (Unix seconds).
    pub established_at: Option<u64>,
    /// Negotiated hold time (s).
    pub hold_time: Option<u16>,
    /// Negotiated families.
    pub families: Vec<String>,
    /// Why the session last went down.
    pub last_error: Option<String>,
    /// Times an Established session went down.
    pub flaps: u64,
    /// Messages in and out.
    pub messages: MessageCounters,
    /// Prefixes per family (from the RIB's latest summary).
    pub prefixes: Vec<PrefixCounts>,
    /// The last state changes, oldest first.
    pub history: Vec<PeerHistoryEntry>,
}

/// How many history entries a peer keeps.
pub const PEER_HISTORY: usize = 32;

/// The history a peer task keeps.
#[derive(Clone, Debug, Default)]
pub struct History(VecDeque<PeerHistoryEntry>);

impl History {
    /// Record an event now.
    pub fn push(&mut self, event: impl Into<String>) {
        if self.0.len() == PEER_HISTORY {
            self.0.pop_front();
        }
        self.0.push_back(PeerHistoryEntry { at: unix_now(), event: event.into() });
    }

    /// When `event` was last recorded (UNIX seconds).
    pub fn last(&self, event: &str) -> Option<u64> {
        self.0.iter().rev().find(|e| e.event == event).map(|e| e.at)
    }

    /// Oldest first.
    pub fn entries(&self) -> Vec<PeerHistoryEntry> {
        self.0.iter().cloned().collect()
    }
}

/// A VRF: its policy and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VrfInfo {
    /// Name (the network instance).
    pub name: String,
    /// Route distinguisher.
    pub rd: String,
    /// Imported route targets.
    pub import: Vec<String>,
    /// Exported route targets.
    pub export: Vec<String>,
    /// `per-vrf`, `per-nexthop` or `per-prefix`.
    pub label_mode: String,
    /// Connected subnets exported.
    pub redistribute_connected: bool,
    /// Static routes exported.
    pub redistribute_static: bool,
    /// The control process's static routes (API and config).
    pub statics: Vec<StaticRouteView>,
    /// Routes the VRF's FIB holds from BGP (what the last flush handed on).
    pub bgp_routes: u64,
    /// Packets and bytes are counted per prefix (`GET /stats/prefixes?vrf=`).
    #[serde(default)]
    pub prefix_counters: bool,
}

/// A static VRF route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StaticRouteView {
    /// Prefix.
    pub prefix: String,
    /// CE next hop.
    pub via: String,
}

/// What the RIB counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RibCounters {
    /// Paths whose next hop does not resolve (at the last flush).
    pub unresolved: u64,
    /// Routes not exported because labels ran out.
    pub label_exhausted: u64,
    /// Stale paths swept after graceful restarts.
    pub stale_swept: u64,
    /// Paths not used because their label is reserved (at the last flush).
    pub reserved_label: u64,
    /// Routes of a family their session did not negotiate, ignored.
    pub wrong_family: u64,
    /// UPDATEs processed (End-of-RIB included).
    pub updates_processed: u64,
    /// Flushes that sent changes to the dataplane.
    pub flushes: u64,
}

/// What the rib task publishes (at most once a second, and after a command changed it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RibSummary {
    /// The interfaces of the running dataplane config.
    pub interfaces: Vec<InterfaceView>,
    /// Configured VRFs that exist in the dataplane.
    pub vrfs: Vec<VrfInfo>,
    /// Per peer address: prefixes per family.
    pub prefixes: BTreeMap<String, Vec<PrefixCounts>>,
    /// Local labels allocated.
    pub labels_allocated: u64,
    /// Counters.
    pub counters: RibCounters,
}

/// One path to a prefix, with the decision's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PathView {
    /// `local` or the peer's address.
    pub source: String,
    /// BGP next hop (absent for connected routes).
    pub next_hop: Option<String>,
    /// VPN label or VNI as received.
    pub label: Option<u32>,
    /// Route distinguisher as received.
    pub rd: Option<String>,
    /// AS path.
    pub as_path: Vec<u32>,
    /// LOCAL_PREF (100 when absent).
    pub local_pref: u32,
    /// MED.
    pub med: Option<u32>,
    /// `igp`, `egp`, `incomplete`.
    pub origin: String,
    /// Kept through a peer's graceful restart.
    pub stale: bool,
    /// Chosen (installed; several when multipath).
    pub best: bool,
    /// Why the best path won over the next one (`only path`, `local-pref`, `as-path length`,
    /// `origin`, `med`, `ebgp over ibgp`, `router id`, `peer address`, `multipath`), or why
    /// this one is not used (`next hop unresolved`, `reserved label`).
    pub reason: Option<String>,
}

/// One route of a VRF (or of the underlay, `vrf` = `underlay`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteView {
    /// VRF name, or `underlay`.
    pub vrf: String,
    /// Prefix.
    pub prefix: String,
    /// `connected`, `local` (the router's own address), `static` or `bgp`.
    pub protocol: String,
    /// The paths (BGP); a connected or static route has one.
    pub paths: Vec<PathView>,
}

/// What a local label stands for, and its traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LabelView {
    /// The label.
    pub label: u32,
    /// `per-vrf`, `per-nexthop` or `per-prefix` (allocated by the control process), or
    /// `static` (the dataplane config's own `[[label]]`).
    pub kind: String,
    /// The VRF it pops into (`underlay` for a swap).
    pub vrf: String,
    /// The CE it forwards to (per-next-hop labels), or the next LSR of a swap.
    pub next_hop: Option<String>,
    /// The prefix it stands for (per-prefix labels).
    pub prefix: Option<String>,
    /// The label it is swapped to (static swap entries); none: popped.
    #[serde(default)]
    pub out_label: Option<u32>,
    /// Packets received with it on top (dataplane counters).
    pub packets_in: u64,
    /// Bytes received with it on top.
    pub bytes_in: u64,
}

/// A MAC of an EVPN instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EvpnMacView {
    /// MAC.
    pub mac: String,
    /// Remote VTEP.
    pub vtep: String,
    /// IP bound to it (type-2 with IP).
    pub ip: Option<String>,
}

/// An EVPN instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EvpnView {
    /// Bridge domain.
    pub bridge: String,
    /// VNI.
    pub vni: u32,
    /// Route distinguisher.
    pub rd: String,
    /// Imported route targets.
    pub import: Vec<String>,
    /// Exported route targets.
    pub export: Vec<String>,
    /// Remote VTEPs of the flood list (type-3 routes).
    pub flood: Vec<String>,
    /// Remote MACs (type-2 routes).
    pub macs: Vec<EvpnMacView>,
}

/// One interface of the dataplane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InterfaceView {
    /// Linux name.
    pub name: String,
    /// `core`, `vrf` or `bridge`.
    pub role: String,
    /// The VRF or bridge domain it belongs to.
    pub instance: Option<String>,
    /// The router's MAC on it.
    pub mac: String,
    /// Addresses with prefix length.
    pub addresses: Vec<String>,
    /// 802.1Q VLAN.
    pub vlan: Option<u16>,
    /// MTU.
    pub mtu: u16,
    /// Proxy ARP (routed mode).
    pub proxy_arp: bool,
    /// Link state of the Linux interface as this process sees it (`up`, `down`, or `unknown`
    /// when it is not in this process's namespace).
    pub link: String,
    /// How the XDP program is attached to it: `native` (driver) or `skb` (generic); empty
    /// while the dataplane has not said.
    #[serde(default)]
    pub xdp: String,
    /// Received packets (dataplane counters).
    pub rx_packets: u64,
    /// Sent packets.
    pub tx_packets: u64,
    /// Dropped packets (all reasons).
    pub drops: u64,
    /// Received frames the XDP express tier forwarded itself (0 with the tier off).
    #[serde(default)]
    pub express_forwarded: u64,
    /// Received frames the express tier left to the AF_XDP path (all reasons).
    #[serde(default)]
    pub express_punted: u64,
}

/// What the dataplane poller publishes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DataplaneStatus {
    /// The last poll reached the table socket.
    pub connected: bool,
    /// The table socket.
    pub socket: String,
    /// Why the last poll failed.
    pub last_error: Option<String>,
    /// When it was last read (Unix seconds).
    pub polled_at: u64,
    /// Snapshot generation.
    pub generation: u64,
    /// Routes over all VRFs and the underlay.
    pub routes: u64,
    /// ILM entries.
    pub labels: u64,
    /// VRFs.
    pub vrfs: u64,
    /// Ports.
    pub ports: u64,
    /// Frames each AF_XDP worker received, by receive queue (queue 0 first).
    #[serde(default)]
    pub workers: Vec<u64>,
    /// Counters summed over workers.
    #[schema(value_type = Object)]
    pub counters: CountersView,
    /// The neighbours, configured and learned (served by `/neighbours`, not here).
    #[serde(skip)]
    pub neighbours: Vec<carrier_contract::socket::NeighbourEntry>,
}

/// Counters of the control process's own work, shared by the tasks that count.
#[derive(Debug, Default)]
pub struct ControlCounters {
    /// Times the dataplane writer (re)connected to the table socket.
    pub table_socket_connects: std::sync::atomic::AtomicU64,
}

/// What a neighbour command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NeighborAction {
    /// Start the session again after `down`.
    Up,
    /// Stop the session: Cease/Administrative Shutdown, no automatic restart.
    Down,
    /// Ask the peer for its routes again (ROUTE-REFRESH).
    SoftResetIn,
    /// Send the peer everything again.
    SoftResetOut,
    /// Zero the session's message counters.
    ClearCounters,
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No such VRF, neighbour, route.
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but not acceptable (a next hop outside the VRF's subnets).
    #[error("{0}")]
    Invalid(String),
    /// The change needs what this process cannot do live (a restart).
    #[error("{0}")]
    Conflict(String),
    /// The task that answers is gone (the process is stopping).
    #[error("the control process is stopping")]
    Unavailable,
}

/// What changed by an `apply`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApplySummary {
    /// Nothing differed.
    pub unchanged: bool,
    /// What differed, one line each.
    pub changes: Vec<String>,
}

/// A command into the rib task; the answer comes back on `reply`.
#[derive(Debug)]
pub enum Command {
    /// The routes of one VRF, or of all and the underlay.
    Routes {
        /// VRF name; `None`: every VRF and the underlay.
        vrf: Option<String>,
        /// Answer.
        reply: oneshot::Sender<Result<Vec<RouteView>, CommandError>>,
    },
    /// The local labels.
    Labels {
        /// Answer.
        reply: oneshot::Sender<Vec<LabelView>>,
    },
    /// The EVPN instances.
    Evpn {
        /// Answer.
        reply: oneshot::Sender<Vec<EvpnView>>,
    },
    /// Act on a neighbour.
    Neighbor {
        /// Its address.
        addr: Ipv4Addr,
        /// What to do.
        action: NeighborAction,
        /// Answer.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Add (or replace) a static route in a VRF.
    AddStatic {
        /// VRF.
        vrf: String,
        /// Prefix.
        prefix: Ipv4Prefix,
        /// CE next hop.
        via: Ipv4Addr,
        /// Answer.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Remove a static route.
    DelStatic {
        /// VRF.
        vrf: String,
        /// Prefix.
        prefix: Ipv4Prefix,
        /// Answer.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Change the running config: a VRF created or deleted, a port attached or detached.
    Edit {
        /// The change.
        edit: crate::reconfig::Edit,
        /// Answer: what changed.
        reply: oneshot::Sender<Result<ApplySummary, CommandError>>,
    },
    /// Take a new configuration (`carrierctl apply`, SIGHUP).
    Apply {
        /// The configuration, already parsed and checked on its own.
        config: Box<ControlConfig>,
        /// Its text, to place errors found against the dataplane's tables.
        text: String,
        /// Answer.
        reply: oneshot::Sender<Result<ApplySummary, CommandError>>,
    },
}

/// The handle readers hold: every published view, and the command channel.
#[derive(Clone, Debug)]
pub struct State {
    /// Per neighbour, its task's status.
    pub peers: Arc<RwLock<BTreeMap<Ipv4Addr, watch::Receiver<PeerStatus>>>>,
    /// The rib task's summary.
    pub rib: watch::Receiver<Arc<RibSummary>>,
    /// The dataplane poller's view.
    pub dataplane: watch::Receiver<Arc<DataplaneStatus>>,
    /// Commands into the rib task.
    pub commands: mpsc::Sender<Command>,
    /// The dataplane's table socket, for what is read from it on request (per-prefix counters).
    pub dataplane_socket: std::path::PathBuf,
    /// The process's own counters.
    pub counters: Arc<ControlCounters>,
    /// Time the dataplane took to apply each change (seconds), for `/metrics`.
    pub update_latency: prometheus_client::metrics::histogram::Histogram,
    /// When the process started.
    pub started: Instant,
}

/// Buckets of the dataplane update latency histogram (seconds).
pub const UPDATE_LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

impl State {
    /// A state with no tasks behind it (tests, fuzzing): empty views, and every command
    /// answered [`CommandError::Unavailable`].
    pub fn detached() -> State {
        let (commands, _) = mpsc::channel(1);
        State {
            peers: Arc::default(),
            rib: watch::channel(Arc::new(RibSummary::default())).1,
            dataplane: watch::channel(Arc::new(DataplaneStatus::default())).1,
            commands,
            dataplane_socket: std::path::PathBuf::from("/nonexistent/carrier-dataplane.sock"),
            counters: Arc::default(),
            update_latency: prometheus_client::metrics::histogram::Histogram::new(UPDATE_LATENCY_BUCKETS),
            started: Instant::now(),
        }
    }

    /// Every neighbour's status, with the RIB's prefix counts filled in, by address.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let rib = self.rib.borrow().clone();
        let peers = self.peers.read().map(|p| p.values().map(|r| r.borrow().clone()).collect::<Vec<_>>()).unwrap_or_default();
        peers
            .into_iter()
            .map(|mut p| {
                p.prefixes = rib.prefixes.get(&p.address).cloned().unwrap_or_default();
                p
            })
            .collect()
    }

    /// Send a command and wait for its answer.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| CommandError::Unavailable)?;
        tokio::time::timeout(Duration::from_secs(30), rx).await.map_err(|_| CommandError::Unavailable)?.map_err(|_| CommandError::Unavailable)
    }
}
