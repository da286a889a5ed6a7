//! The BGP session state machine (RFC 4271 §8), sans-IO: `Session::process(Input, now)`
//! returns the `Output`s to carry out, timers included (RustyBGP `daemon/src/fsm.rs`). The
//! daemon's per-peer task only moves bytes, opens and closes the TCP connection and fires
//! timers; it never decides anything about BGP.
//!
//! ```text
//!   daemon (tokio)                               Session (this file, no IO)
//!   connect()/accept() ── TcpConnected/Failed ─▶ ┐
//!   reader: codec decode ── Message/DecodeError ▶ │ process(input, now) ─▶ Vec<Output>
//!   sleep(d) fired      ── Timer(t) ──────────▶ │   Connect / Close     ─▶ socket
//!   RIB                 ── Send/SendEndOfRib ──▶ ┘   Send / SendEndOfRib ─▶ codec encode ─▶ writer
//!                                                    SetTimer / CancelTimer ─▶ sleeps
//!                                                    Established / Down / Received /
//!                                                    TreatAsWithdraw / RouteRefresh ─▶ RIB
//!                                                    Counted ─▶ counters
//! ```
//!
//! Contract with the daemon:
//! - `SetTimer(t, d)` replaces timer `t` if it is armed; `CancelTimer(t)` stops it. A timer
//!   that fires late or after a cancel is harmless: the session keeps each timer's deadline and
//!   ignores a fire for a timer it has not armed, and re-arms for the remainder if one fires
//!   early.
//! - The Hold and Keepalive timers are lazy: receiving a KEEPALIVE/UPDATE or sending an UPDATE
//!   only records the time, instead of producing a `SetTimer` per message (a full table is
//!   hundreds of thousands of UPDATEs). When the timer fires the session checks the recorded
//!   time and re-arms for the remainder, which is exactly the RFC's "restart the timer".
//! - `Close` releases the current connection (or aborts a pending connect); it is idempotent.
//! - `Down` follows every connection that reached OpenSent; the RIB only acts on it for a
//!   session it saw `Established`.
//! - `SendEndOfRib(family)` for a family other than IPv4 unicast: the codec encodes an UPDATE
//!   whose only attribute is an empty MP_UNREACH_NLRI for that AFI/SAFI (RFC 4724 §2). The
//!   IPv4 unicast End-of-RIB is an empty UPDATE and comes out as a plain `Send`.
//!
//! Connection collisions (§6.8): the session is given one connection at a time. When another
//! connection for the same peer arrives while one is in use, the daemon reads the new one's
//! OPEN (nothing is sent on it yet) and decides with the peer's BGP identifier from it:
//! - no connection in use (session Idle, Connect or Active): hand the new one over
//!   (`TcpConnected`; Idle answers it with `Close`);
//! - OpenSent or OpenConfirm: [`collision_keep_existing`]; if the existing connection loses,
//!   `Input::CollisionLost` (NOTIFICATION Cease/Connection Collision Resolution, → Active),
//!   then `TcpConnected` for the new one and the OPEN already read from it as input; if it
//!   wins, the new one gets the NOTIFICATION and is closed;
//! - Established: the new connection gets the NOTIFICATION and is closed (§6.8: an
//!   Established session wins); so does one whose first message is not an OPEN in time.
//!
//! Reconnection: after the session goes down (not after `Stop`) it waits in Idle for the
//! ConnectRetry timer, which here plays the IdleHoldTimer of §8.1.1 (DampPeerOscillations,
//! Event 13): 5 s, then doubling up to 60 s (gobgpd refuses a reconnect within ~5 s). A
//! failed or timed-out connect attempt doubles it too. The backoff returns to its initial
//! value on `Start` and when a session that stayed Established for [`STABLE_SESSION`] goes
//! down.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::msg::{error_code, Family, GracefulRestart, Message, Notification, Open, Update};

/// The hold time while waiting for the peer's OPEN (§8.2.2: "a large value", 4 minutes).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);
/// The backoff's ceiling.
pub const MAX_CONNECT_RETRY: Duration = Duration::from_secs(60);
/// A session Established this long resets the backoff when it goes down.
pub const STABLE_SESSION: Duration = Duration::from_secs(60);

/// OPEN error subcodes (RFC 4271 §6.2).
pub mod open_subcode {
    /// Bad Peer AS.
    pub const BAD_PEER_AS: u8 = 2;
    /// Bad BGP Identifier.
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    /// Unacceptable Hold Time.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
}

/// FSM error subcodes (RFC 6608 §3).
pub mod fsm_subcode {
    /// Unspecified.
    pub const UNSPECIFIED: u8 = 0;
    /// Receive Unexpected Message in OpenSent State.
    pub const OPEN_SENT: u8 = 1;
    /// Receive Unexpected Message in OpenConfirm State.
    pub const OPEN_CONFIRM: u8 = 2;
    /// Receive Unexpected Message in Established State.
    pub const ESTABLISHED: u8 = 3;
}

/// Cease subcodes (RFC 4486 §4).
pub mod cease_subcode {
    /// Administrative Shutdown.
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    /// Peer De-configured.
    pub const PEER_DECONFIGURED: u8 = 3;
    /// Connection Collision Resolution.
    pub const CONNECTION_COLLISION: u8 = 7;
}

/// What the codec could not decode cleanly (RFC 7606 error handling).
pub use super::codec::DecodeError;

/// One peer's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// Our AS.
    pub local_as: u32,
    /// The AS the peer must announce (else NOTIFICATION Bad Peer AS).
    pub remote_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// The peer's address (for the daemon; the session does not use it).
    pub remote_addr: Ipv4Addr,
    /// Families we offer (multiprotocol capabilities, RFC 4760).
    pub families: Vec<Family>,
    /// Our proposed hold time in seconds (90 by default; 0 = no keepalives; 1 and 2 are
    /// invalid and sent as 3).
    pub hold_time: u16,
    /// Initial ConnectRetry/backoff time (5 s by default; doubles up to 60 s).
    pub connect_retry: Duration,
    /// Never open a connection; wait for the peer's.
    pub passive: bool,
    /// Advertise graceful restart (RFC 4724) with this restart time in seconds.
    pub graceful_restart: Option<u16>,
    /// We have restarted: set the Restart State bit and the forwarding-state bits.
    pub restarting: bool,
}

impl PeerConfig {
    /// A configuration with the defaults: IPv4 unicast, hold time 90 s, connect retry 5 s,
    /// active, no graceful restart.
    pub fn new(local_as: u32, remote_as: u32, router_id: Ipv4Addr, remote_addr: Ipv4Addr) -> Self {
        PeerConfig {
            local_as,
            remote_as,
            router_id,
            remote_addr,
            families: vec![Family::Ipv4Unicast],
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            passive: false,
            graceful_restart: None,
            restarting: false,
        }
    }
}

/// An event for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// ManualStart (§8.1.2 Event 1; Event 5 when passive).
    Start,
    /// ManualStop (§8.1.2 Event 2): Cease/Administrative Shutdown, no automatic restart.
    Stop,
    /// Our connect succeeded, or an accepted connection was handed over (§8.1.4 Events 16/17).
    TcpConnected,
    /// The connect attempt failed (§8.1.4 Event 18).
    TcpFailed,
    /// The connection was closed or broke (§8.1.4 Event 18).
    TcpClosed,
    /// A decoded message (§8.1.5 Events 19-28).
    Message(Message),
    /// A message the codec could not decode cleanly.
    DecodeError(DecodeError),
    /// A timer armed by `Output::SetTimer` fired (§8.1.3).
    Timer(Timer),
    /// The RIB wants this UPDATE sent.
    Send(Update),
    /// The RIB has sent its table for this family: send End-of-RIB (RFC 4724 §2).
    SendEndOfRib(Family),
    /// The daemon resolved a connection collision (§6.8) against this session's connection.
    CollisionLost,
    /// An operator asked for the peer's routes again (soft reset in): send ROUTE-REFRESH for
    /// each negotiated family, if the peer advertised the capability (RFC 2918 §3).
    RequestRefresh,
}

/// The session's timers (§8.1.3; ConnectRetry doubles as the IdleHoldTimer in Idle).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// ConnectRetryTimer (and the Idle backoff before an automatic restart).
    ConnectRetry,
    /// HoldTimer.
    Hold,
    /// KeepaliveTimer.
    Keepalive,
}

impl Timer {
    fn index(self) -> usize {
        self as usize
    }
}

/// Why a session went down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// The peer sent a NOTIFICATION (§8.2.2 Events 24/25).
    NotificationReceived(Notification),
    /// We sent a NOTIFICATION: an OPEN check failed, the hold timer expired, an unexpected
    /// message, or the codec asked for a reset.
    NotificationSent(Notification),
    /// The TCP connection closed or broke without a NOTIFICATION (§8.2.2 Event 18).
    ConnectionLost,
    /// ManualStop (Cease/Administrative Shutdown sent).
    AdminStop,
    /// A connection collision was resolved against this connection (Cease 6/7 sent).
    CollisionLost,
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::NotificationReceived(n) => {
                write!(f, "received NOTIFICATION {}/{} ({})", n.code, n.subcode, describe(n))
            }
            DownReason::NotificationSent(n) => {
                write!(f, "sent NOTIFICATION {}/{} ({})", n.code, n.subcode, describe(n))
            }
            DownReason::ConnectionLost => f.write_str("connection lost"),
            DownReason::AdminStop => f.write_str("administrative shutdown"),
            DownReason::CollisionLost => f.write_str("connection collision resolution"),
        }
    }
}

/// A name for a NOTIFICATION's code/subcode, for logs.
fn describe(n: &Notification) -> &'static str {
    match (n.code, n.subcode) {
        (error_code::HEADER, _) => "message header error",
        (error_code::OPEN, open_subcode::BAD_PEER_AS) => "bad peer AS",
        (error_code::OPEN, open_subcode::BAD_BGP_IDENTIFIER) => "bad BGP identifier",
        (error_code::OPEN, open_subcode::UNACCEPTABLE_HOLD_TIME) => "unacceptable hold time",
        (error_code::OPEN, _) => "OPEN message error",
        (error_code::UPDATE, _) => "UPDATE message error",
        (error_code::HOLD_TIMER_EXPIRED, _) => "hold timer expired",
        (error_code::FSM, _) => "finite state machine error",
        (error_code::CEASE, cease_subcode::ADMINISTRATIVE_SHUTDOWN) => "administrative shutdown",
        (error_code::CEASE, cease_subcode::CONNECTION_COLLISION) => "connection collision",
        (error_code::CEASE, _) => "cease",
        _ => "unknown error",
    }
}

/// What the daemon must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Open an active TCP connection to the peer (port 179).
    Connect,
    /// Encode and send this message.
    Send(Message),
    /// Encode and send End-of-RIB for a family other than IPv4 unicast (empty MP_UNREACH).
    SendEndOfRib(Family),
    /// Close the connection (or abort the pending connect). Idempotent.
    Close,
    /// Arm (or re-arm) a timer.
    SetTimer(Timer, Duration),
    /// Stop a timer.
    CancelTimer(Timer),
    /// The session is up (§8.2.2 OpenConfirm, Event 26).
    Established {
        /// The peer's OPEN.
        open: Open,
        /// Negotiated families: ours ∩ the peer's, in our order.
        families: Vec<Family>,
        /// Both sides speak 4-octet AS numbers (RFC 6793).
        four_octet_as: bool,
        /// Negotiated hold time in seconds (0: no keepalives).
        hold_time: u16,
    },
    /// The session went down.
    Down {
        /// Why.
        reason: DownReason,
        /// The peer advertised graceful restart and the Established session dropped without
        /// a NOTIFICATION: keep its routes as stale (RFC 4724 §4.2, helper mode).
        graceful: bool,
    },
    /// An UPDATE for the RIB.
    Received(Update),
    /// An UPDATE treated as withdraw (RFC 7606 §2): all its NLRI are in `withdrawn`; or,
    /// when only some routes were at fault (RFC 8277 §2.3), those are in `withdrawn` and the
    /// others are announced as usual.
    TreatAsWithdraw(Update, String),
    /// The peer asked for our routes of a family again (RFC 2918).
    RouteRefresh(Family),
    /// Count this event.
    Counted(&'static str),
}

/// Session states (§8.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Idle.
    Idle,
    /// Connect: an active connection attempt is in progress.
    Connect,
    /// Active: waiting for the peer to connect (or for the next attempt).
    Active,
    /// OpenSent.
    OpenSent,
    /// OpenConfirm.
    OpenConfirm,
    /// Established.
    Established,
}

/// Messages in and out of one session, by type.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MessageCounters {
    /// OPENs received.
    pub opens_in: u64,
    /// OPENs sent.
    pub opens_out: u64,
    /// UPDATEs received (including treat-as-withdraw and attribute-discard ones).
    pub updates_in: u64,
    /// UPDATEs sent (including End-of-RIB).
    pub updates_out: u64,
    /// NOTIFICATIONs received.
    pub notifications_in: u64,
    /// NOTIFICATIONs sent.
    pub notifications_out: u64,
    /// KEEPALIVEs received.
    pub keepalives_in: u64,
    /// KEEPALIVEs sent.
    pub keepalives_out: u64,
}

/// Message and session counters (one writer: the peer's task).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Messages by type.
    pub messages: MessageCounters,
    /// Times an Established session went down.
    pub flaps: u64,
    /// Why the session last went down.
    pub last_error: Option<DownReason>,
}

/// Under §6.8, whether to keep the existing connection when another one for the same peer
/// arrives: the connection initiated by the speaker with the higher BGP identifier survives.
/// `existing_is_outgoing`: we opened the existing connection. Identical identifiers (legal
/// for eBGP since RFC 6286) fall to "keep ours"; RFC 6286 §2.3's AS-number tie-break is not
/// implemented.
pub fn collision_keep_existing(local_id: Ipv4Addr, remote_id: Ipv4Addr, existing_is_outgoing: bool) -> bool {
    if u32::from(local_id) < u32::from(remote_id) {
        // The peer's connection survives.
        !existing_is_outgoing
    } else {
        existing_is_outgoing
    }
}

/// One BGP session with one peer.
#[derive(Debug)]
pub struct Session {
    cfg: PeerConfig,
    state: State,
    stats: SessionStats,
    /// Each timer's deadline while armed (indexed by `Timer::index`).
    deadlines: [Option<Instant>; 3],
    /// Delay before the next automatic restart or connect attempt.
    backoff: Duration,
    /// Restart automatically after going down (false after `Stop`, until `Start`).
    auto_restart: bool,
    /// The peer's OPEN, from OpenSent on.
    peer_open: Option<Open>,
    /// Negotiated, from OpenConfirm on.
    families: Vec<Family>,
    four_octet_as: bool,
    hold_time: u16,
    /// Last KEEPALIVE/UPDATE received, last KEEPALIVE/UPDATE sent (lazy timers).
    last_rx: Instant,
    last_tx: Instant,
    established_at: Option<Instant>,
}

impl Session {
    /// A session in Idle; nothing happens until `Input::Start`.
    pub fn new(cfg: PeerConfig) -> Self {
        let now = Instant::now();
        Session {
            backoff: cfg.connect_retry,
            cfg,
            state: State::Idle,
            stats: SessionStats::default(),
            deadlines: [None; 3],
            auto_restart: false,
            peer_open: None,
            families: Vec::new(),
            four_octet_as: false,
            hold_time: 0,
            last_rx: now,
            last_tx: now,
            established_at: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Counters.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &PeerConfig {
        &self.cfg
    }

    /// §6.8 for this session's connection against a new one whose OPEN carries `remote_id`:
    /// whether the existing connection stays. An Established session always stays; in OpenSent
    /// and OpenConfirm the connection of the speaker with the higher identifier stays
    /// ([`collision_keep_existing`]); in any other state the connection in hand is on its way
    /// out or not yet used, and the new one is refused rather than raced against it.
    pub fn keeps_connection_against(&self, remote_id: Ipv4Addr, existing_is_outgoing: bool) -> bool {
        match self.state {
            State::Established => true,
            State::OpenSent | State::OpenConfirm => collision_keep_existing(self.cfg.router_id, remote_id, existing_is_outgoing),
            _ => true,
        }
    }

    /// The peer's OPEN, from OpenSent on.
    pub fn peer_open(&self) -> Option<&Open> {
        self.peer_open.as_ref()
    }

    /// The negotiated families (from OpenConfirm on).
    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// The negotiated hold time (s).
    pub fn hold_time(&self) -> u16 {
        self.hold_time
    }

    /// Since when the session is Established.
    pub fn established_at(&self) -> Option<Instant> {
        self.established_at.filter(|_| self.state == State::Established)
    }

    /// Zero the message counters (`clear bgp counters`); flaps and the last error stay.
    pub fn clear_counters(&mut self) {
        self.stats.messages = MessageCounters::default();
    }

    /// The peer's BGP identifier once its OPEN has been accepted (for collision detection).
    pub fn peer_router_id(&self) -> Option<Ipv4Addr> {
        self.peer_open.as_ref().map(|o| o.router_id)
    }

    /// Feed one event; returns what to do, in order.
    pub fn process(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.start(now, &mut out),
            Input::Stop => self.stop(now, &mut out),
            Input::TcpConnected => self.tcp_connected(now, &mut out),
            Input::TcpFailed | Input::TcpClosed => self.tcp_lost(now, &mut out),
            Input::Message(m) => self.message(m, now, &mut out),
            Input::DecodeError(e) => self.decode_error(e, now, &mut out),
            Input::Timer(t) => self.timer(t, now, &mut out),
            Input::Send(update) => {
                if self.state == State::Established {
                    self.stats.messages.updates_out += 1;
                    self.last_tx = now;
                    out.push(Output::Send(Message::Update(update)));
                } else {
                    out.push(Output::Counted("update-dropped-not-established"));
                }
            }
            Input::SendEndOfRib(family) => {
                if self.state == State::Established && self.families.contains(&family) {
                    self.stats.messages.updates_out += 1;
                    self.last_tx = now;
                    out.push(if family == Family::Ipv4Unicast {
                        Output::Send(Message::Update(Update::default()))
                    } else {
                        Output::SendEndOfRib(family)
                    });
                } else {
                    out.push(Output::Counted("eor-dropped"));
                }
            }
            Input::RequestRefresh => {
                let supported = self.peer_open.as_ref().is_some_and(|o| o.route_refresh);
                if self.state == State::Established && supported {
                    for f in self.families.clone() {
                        self.last_tx = now;
                        out.push(Output::Send(Message::RouteRefresh(f)));
                    }
                } else {
                    out.push(Output::Counted("route-refresh-not-possible"));
                }
            }
            Input::CollisionLost => {
                if matches!(self.state, State::OpenSent | State::OpenConfirm) {
                    let n = Notification::new(error_code::CEASE, cease_subcode::CONNECTION_COLLISION);
                    self.teardown(Some(n), DownReason::CollisionLost, false, now, &mut out);
                    // Wait for the daemon to hand over the winning connection.
                    self.state = State::Active;
                    if !self.cfg.passive {
                        let d = self.backoff;
                        self.set_timer(Timer::ConnectRetry, d, now, &mut out);
                    }
                } else {
                    out.push(Output::Counted("fsm-input-ignored"));
                }
            }
        }
        out
    }

    /// ManualStart (§8.1.2 Event 1/5); ignored outside Idle (§8.2.2).
    fn start(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.state != State::Idle {
            return;
        }
        self.auto_restart = true;
        self.backoff = self.cfg.connect_retry;
        // A Start while waiting out the backoff starts now.
        self.cancel_timer(Timer::ConnectRetry, out);
        self.leave_idle(now, out);
    }

    /// Idle → Connect (active) or Active (passive, §8.2.2 Idle Event 5).
    fn leave_idle(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.cfg.passive {
            self.state = State::Active;
        } else {
            self.connect_attempt(now, out);
        }
    }

    /// Initiate a TCP connection and (re)start the ConnectRetry timer (§8.2.2 Idle Event 1,
    /// Connect/Active Event 9).
    fn connect_attempt(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.state = State::Connect;
        out.push(Output::Connect);
        let d = self.backoff;
        self.set_timer(Timer::ConnectRetry, d, now, out);
    }

    fn bump_backoff(&mut self) {
        self.backoff = (self.backoff * 2).min(MAX_CONNECT_RETRY);
    }

    /// ManualStop (§8.1.2 Event 2, §8.2.2 "in any state"): Cease/Administrative Shutdown if a
    /// connection is up, release everything, Idle, no automatic restart.
    fn stop(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.auto_restart = false;
        match self.state {
            State::Idle => self.cancel_timer(Timer::ConnectRetry, out),
            State::Connect | State::Active => {
                if self.state == State::Connect {
                    out.push(Output::Close);
                }
                self.cancel_timer(Timer::ConnectRetry, out);
                self.state = State::Idle;
            }
            State::OpenSent | State::OpenConfirm | State::Established => {
                let n = Notification::new(error_code::CEASE, cease_subcode::ADMINISTRATIVE_SHUTDOWN);
                self.teardown(Some(n), DownReason::AdminStop, false, now, out);
            }
        }
    }

    /// Tcp_CR_Acked / TcpConnectionConfirmed (§8.2.2 Connect/Active Events 16/17): send OPEN,
    /// HoldTimer to the large value, → OpenSent.
    fn tcp_connected(&mut self, now: Instant, out: &mut Vec<Output>) {
        match self.state {
            State::Connect | State::Active => {
                self.cancel_timer(Timer::ConnectRetry, out);
                self.stats.messages.opens_out += 1;
                out.push(Output::Send(Message::Open(self.our_open())));
                self.set_timer(Timer::Hold, OPEN_HOLD_TIME, now, out);
                self.state = State::OpenSent;
            }
            // §8.2.2 Idle: "refuses all incoming BGP connections".
            State::Idle => {
                out.push(Output::Close);
                out.push(Output::Counted("connection-refused-idle"));
            }
            // The daemon resolves collisions before handing a connection over (module doc).
            State::OpenSent | State::OpenConfirm | State::Established => {
                out.push(Output::Counted("fsm-input-ignored"));
            }
        }
    }

    /// TcpConnectionFails (§8.2.2 Event 18).
    fn tcp_lost(&mut self, now: Instant, out: &mut Vec<Output>) {
        match self.state {
            // Connect Event 18: → Active; the ConnectRetry timer keeps running and its expiry
            // (Active Event 9) makes the next attempt, with the backoff doubled.
            State::Connect => {
                self.bump_backoff();
                self.state = State::Active;
            }
            State::Idle | State::Active => {}
            // OpenSent Event 18 goes to Active in the RFC; we go through Idle and the backoff
            // like every other failure.
            State::OpenSent | State::OpenConfirm | State::Established => {
                self.teardown(None, DownReason::ConnectionLost, true, now, out);
            }
        }
    }

    fn message(&mut self, msg: Message, now: Instant, out: &mut Vec<Output>) {
        if matches!(self.state, State::Idle | State::Connect | State::Active) {
            // No connection to receive on: a daemon race; nothing to answer on.
            out.push(Output::Counted("fsm-input-ignored"));
            return;
        }
        match &msg {
            Message::Open(_) => self.stats.messages.opens_in += 1,
            Message::Update(_) => self.stats.messages.updates_in += 1,
            Message::Notification(_) => self.stats.messages.notifications_in += 1,
            Message::Keepalive => self.stats.messages.keepalives_in += 1,
            Message::RouteRefresh(_) => {}
        }
        match (self.state, msg) {
            // NotifMsg / NotifMsgVerErr (§8.2.2 Events 24/25), any connected state.
            (_, Message::Notification(n)) => {
                self.teardown(None, DownReason::NotificationReceived(n), true, now, out);
            }
            // BGPOpen (§8.2.2 OpenSent Event 19).
            (State::OpenSent, Message::Open(open)) => self.open_received(open, now, out),
            // KeepAliveMsg (§8.2.2 OpenConfirm Event 26): → Established.
            (State::OpenConfirm, Message::Keepalive) => {
                self.last_rx = now;
                self.state = State::Established;
                self.established_at = Some(now);
                let open = self.peer_open.clone().expect("peer OPEN accepted in OpenSent");
                out.push(Output::Established {
                    open,
                    families: self.families.clone(),
                    four_octet_as: self.four_octet_as,
                    hold_time: self.hold_time,
                });
            }
            // KeepAliveMsg / UpdateMsg (§8.2.2 Established Events 26/27): restart HoldTimer.
            (State::Established, Message::Keepalive) => self.last_rx = now,
            (State::Established, Message::Update(update)) => {
                self.last_rx = now;
                out.push(Output::Received(update));
            }
            // RFC 2918 §4 (we advertise the capability).
            (State::Established, Message::RouteRefresh(family)) => {
                self.last_rx = now;
                if self.families.contains(&family) {
                    out.push(Output::RouteRefresh(family));
                } else {
                    out.push(Output::Counted("route-refresh-unnegotiated-family"));
                }
            }
            // Anything else is an FSM error (§8.2.2 Events 9-28 "other", RFC 6608).
            _ => self.fsm_error(now, out),
        }
    }

    /// The checks of §6.2 (version is the codec's) and the negotiation of §4.2 (hold time)
    /// and RFC 5492 (capabilities); then KEEPALIVE, timers, → OpenConfirm (§8.2.2 OpenSent
    /// Event 19).
    fn open_received(&mut self, open: Open, now: Instant, out: &mut Vec<Output>) {
        let ibgp = self.cfg.local_as == self.cfg.remote_as;
        let subcode = if open.asn != self.cfg.remote_as {
            Some(open_subcode::BAD_PEER_AS)
        } else if open.hold_time == 1 || open.hold_time == 2 {
            Some(open_subcode::UNACCEPTABLE_HOLD_TIME)
        } else if open.router_id.is_unspecified() || (ibgp && open.router_id == self.cfg.router_id) {
            // RFC 6286 §2.2: the same identifier as ours is only an error for an internal peer.
            Some(open_subcode::BAD_BGP_IDENTIFIER)
        } else {
            None
        };
        if let Some(subcode) = subcode {
            let n = Notification::new(error_code::OPEN, subcode);
            self.teardown(Some(n.clone()), DownReason::NotificationSent(n), true, now, out);
            return;
        }

        // RFC 4760 §1: a speaker without multiprotocol capabilities speaks IPv4 unicast.
        let theirs: &[Family] =
            if open.families.is_empty() { &[Family::Ipv4Unicast] } else { &open.families };
        self.families = self.cfg.families.iter().copied().filter(|f| theirs.contains(f)).collect();
        self.four_octet_as = open.four_octet_as;
        self.hold_time = self.our_hold_time().min(open.hold_time);
        self.peer_open = Some(open);

        self.stats.messages.keepalives_out += 1;
        self.last_tx = now;
        self.last_rx = now;
        out.push(Output::Send(Message::Keepalive));
        if self.hold_time == 0 {
            // §4.2: hold time 0 means neither hold timer nor keepalives.
            self.cancel_timer(Timer::Hold, out);
        } else {
            self.set_timer(Timer::Hold, self.hold(), now, out);
            self.set_timer(Timer::Keepalive, self.keepalive(), now, out);
        }
        self.state = State::OpenConfirm;
    }

    fn decode_error(&mut self, e: DecodeError, now: Instant, out: &mut Vec<Output>) {
        if matches!(self.state, State::Idle | State::Connect | State::Active) {
            out.push(Output::Counted("fsm-input-ignored"));
            return;
        }
        match e {
            DecodeError::Reset(n) => {
                self.teardown(Some(n.clone()), DownReason::NotificationSent(n), true, now, out);
            }
            DecodeError::TreatAsWithdraw { update, reason } => {
                self.stats.messages.updates_in += 1;
                if self.state != State::Established {
                    return self.fsm_error(now, out);
                }
                self.last_rx = now;
                let mut withdrawn = update.withdrawn;
                withdrawn.extend(update.announced);
                let update = Update { withdrawn, ..Update::default() };
                out.push(Output::TreatAsWithdraw(update, reason));
                out.push(Output::Counted("update-treat-as-withdraw"));
            }
            DecodeError::RoutesTreatedAsWithdrawn { update, reason } => {
                self.stats.messages.updates_in += 1;
                if self.state != State::Established {
                    return self.fsm_error(now, out);
                }
                self.last_rx = now;
                out.push(Output::TreatAsWithdraw(update, reason));
                out.push(Output::Counted("update-treat-as-withdraw"));
            }
            DecodeError::AttributeDiscard { update, reason } => {
                self.stats.messages.updates_in += 1;
                if self.state != State::Established {
                    return self.fsm_error(now, out);
                }
                self.last_rx = now;
                log::debug!("UPDATE attribute discarded: {reason}");
                out.push(Output::Received(update));
                out.push(Output::Counted("update-attribute-discard"));
            }
        }
    }

    fn timer(&mut self, t: Timer, now: Instant, out: &mut Vec<Output>) {
        // A fire for a timer that is not armed (cancelled, or replaced and already handled).
        let Some(deadline) = self.deadlines[t.index()] else { return };
        if now < deadline {
            self.set_timer(t, deadline - now, now, out);
            return;
        }
        self.deadlines[t.index()] = None;
        match (t, self.state) {
            // IdleHoldTimer_Expires (§8.1.1 Event 13): automatic restart.
            (Timer::ConnectRetry, State::Idle) if self.auto_restart => self.leave_idle(now, out),
            // ConnectRetryTimer_Expires in Connect (§8.2.2 Event 9): drop the attempt, retry.
            (Timer::ConnectRetry, State::Connect) => {
                out.push(Output::Close);
                self.bump_backoff();
                self.connect_attempt(now, out);
            }
            // ConnectRetryTimer_Expires in Active (§8.2.2 Event 9): initiate a connection.
            (Timer::ConnectRetry, State::Active) if !self.cfg.passive => self.connect_attempt(now, out),
            // HoldTimer_Expires (§8.2.2 Event 10): NOTIFICATION Hold Timer Expired.
            (Timer::Hold, State::OpenSent) => self.hold_expired(now, out),
            (Timer::Hold, State::OpenConfirm | State::Established) => {
                let due = self.last_rx + self.hold();
                if now < due {
                    self.set_timer(Timer::Hold, due - now, now, out);
                } else {
                    self.hold_expired(now, out);
                }
            }
            // KeepaliveTimer_Expires (§8.2.2 Event 11): KEEPALIVE, restart the timer.
            (Timer::Keepalive, State::OpenConfirm | State::Established) => {
                let due = self.last_tx + self.keepalive();
                if now < due {
                    self.set_timer(Timer::Keepalive, due - now, now, out);
                } else {
                    self.stats.messages.keepalives_out += 1;
                    self.last_tx = now;
                    out.push(Output::Send(Message::Keepalive));
                    self.set_timer(Timer::Keepalive, self.keepalive(), now, out);
                }
            }
            _ => {}
        }
    }

    fn hold_expired(&mut self, now: Instant, out: &mut Vec<Output>) {
        let n = Notification::new(error_code::HOLD_TIMER_EXPIRED, 0);
        self.teardown(Some(n.clone()), DownReason::NotificationSent(n), true, now, out);
    }

    /// An unexpected message (RFC 6608 subcode by state).
    fn fsm_error(&mut self, now: Instant, out: &mut Vec<Output>) {
        let subcode = match self.state {
            State::OpenSent => fsm_subcode::OPEN_SENT,
            State::OpenConfirm => fsm_subcode::OPEN_CONFIRM,
            State::Established => fsm_subcode::ESTABLISHED,
            _ => fsm_subcode::UNSPECIFIED,
        };
        let n = Notification::new(error_code::FSM, subcode);
        self.teardown(Some(n.clone()), DownReason::NotificationSent(n), true, now, out);
    }

    /// Leave a connected state: optional NOTIFICATION, Close, stop timers, `Down`, Idle, and
    /// the backoff timer for the automatic restart if `restart`.
    fn teardown(
        &mut self,
        notify: Option<Notification>,
        reason: DownReason,
        restart: bool,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if let Some(n) = notify {
            self.stats.messages.notifications_out += 1;
            out.push(Output::Send(Message::Notification(n)));
        }
        out.push(Output::Close);
        for t in [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive] {
            self.cancel_timer(t, out);
        }
        let was_established = self.state == State::Established;
        // RFC 4724 §4.2: only a TCP termination of an Established session is graceful, and
        // only the families the peer listed in its Graceful Restart capability are kept; a
        // capability without families (BIRD's default, "aware") keeps nothing. The routes are
        // kept per peer here, so all or nothing: kept when every negotiated family is listed.
        let peer_gr = self.peer_open.as_ref().and_then(|o| o.graceful_restart.as_ref()).is_some_and(|g| {
            !self.families.is_empty() && self.families.iter().all(|f| g.families.iter().any(|(listed, _)| listed == f))
        });
        let graceful = was_established && peer_gr && reason == DownReason::ConnectionLost;
        if matches!(self.state, State::OpenSent | State::OpenConfirm | State::Established) {
            out.push(Output::Down { reason: reason.clone(), graceful });
        }
        if was_established {
            self.stats.flaps += 1;
        }
        if self.established_at.is_some_and(|t| now.duration_since(t) >= STABLE_SESSION) {
            self.backoff = self.cfg.connect_retry;
        }
        self.stats.last_error = Some(reason);
        self.peer_open = None;
        self.families.clear();
        self.four_octet_as = false;
        self.hold_time = 0;
        self.established_at = None;
        self.state = State::Idle;
        if restart && self.auto_restart {
            let d = self.backoff;
            self.set_timer(Timer::ConnectRetry, d, now, out);
            self.bump_backoff();
        }
    }

    fn our_hold_time(&self) -> u16 {
        match self.cfg.hold_time {
            1 | 2 => 3,
            h => h,
        }
    }

    fn hold(&self) -> Duration {
        Duration::from_secs(self.hold_time.into())
    }

    /// One third of the hold time (§4.4).
    fn keepalive(&self) -> Duration {
        self.hold() / 3
    }

    /// Our OPEN: multiprotocol per family, 4-octet AS, route refresh, graceful restart if
    /// configured (the codec writes AS_TRANS in the 2-octet field for a 4-octet AS).
    fn our_open(&self) -> Open {
        let cfg = &self.cfg;
        Open {
            asn: cfg.local_as,
            hold_time: self.our_hold_time(),
            router_id: cfg.router_id,
            families: cfg.families.clone(),
            four_octet_as: true,
            route_refresh: true,
            graceful_restart: cfg.graceful_restart.map(|restart_time| GracefulRestart {
                restarting: cfg.restarting,
                restart_time: restart_time.min(0x0fff),
                families: cfg.families.iter().map(|f| (*f, cfg.restarting)).collect(),
            }),
        }
    }

    fn set_timer(&mut self, t: Timer, d: Duration, now: Instant, out: &mut Vec<Output>) {
        self.deadlines[t.index()] = Some(now + d);
        out.push(Output::SetTimer(t, d));
    }

    fn cancel_timer(&mut self, t: Timer, out: &mut Vec<Output>) {
        if self.deadlines[t.index()].take().is_some() {
            out.push(Output::CancelTimer(t));
        }
    }
}

#[cfg(test)]
mod tests {
    //! Numbered steps, each an input at a time → the exact outputs (holo's conformance style).

    use super::*;
    use crate::bgp::msg::Nlri;
    use carrier_dataplane::tables::Ipv4Prefix;

    use Output::{CancelTimer, Close, Connect, Counted, Down, SetTimer};
    use Timer::{ConnectRetry, Hold, Keepalive};

    const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const PEER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn cfg() -> PeerConfig {
        PeerConfig {
            families: vec![Family::Ipv4Unicast, Family::Evpn],
            ..PeerConfig::new(65000, 65001, LOCAL_ID, PEER_ID)
        }
    }

    fn peer_open() -> Open {
        Open {
            asn: 65001,
            hold_time: 90,
            router_id: PEER_ID,
            families: vec![Family::Ipv4Unicast, Family::Evpn],
            four_octet_as: true,
            route_refresh: true,
            graceful_restart: None,
        }
    }

    fn our_open(cfg: &PeerConfig) -> Output {
        Output::Send(Message::Open(Session::new(cfg.clone()).our_open()))
    }

    fn notif(code: u8, subcode: u8) -> Notification {
        Notification::new(code, subcode)
    }

    fn send_notif(code: u8, subcode: u8) -> Output {
        Output::Send(Message::Notification(notif(code, subcode)))
    }

    fn down_sent(code: u8, subcode: u8) -> Output {
        Down { reason: DownReason::NotificationSent(notif(code, subcode)), graceful: false }
    }

    fn msg(m: Message) -> Input {
        Input::Message(m)
    }

    fn prefix(a: u8) -> Nlri {
        Nlri::Ipv4 { prefix: Ipv4Prefix::new(Ipv4Addr::new(192, 0, 2, a), 32).unwrap() }
    }

    /// One step: at `ms` milliseconds after the start, `input` → exactly `expect`.
    struct Step(u64, Input, Vec<Output>);

    fn run(s: &mut Session, t0: Instant, steps: Vec<Step>) {
        for (i, Step(ms, input, expect)) in steps.into_iter().enumerate() {
            let label = format!("{input:?}");
            let got = s.process(input, t0 + Duration::from_millis(ms));
            assert_eq!(got, expect, "step {} at {ms} ms: {label}", i + 1);
        }
    }

    /// An active session driven to Established at t0 + 300 ms with the peer's `open`.
    fn established(cfg: PeerConfig, open: Open) -> (Session, Instant) {
        let t0 = Instant::now();
        let mut s = Session::new(cfg);
        for (ms, input) in [(0, Input::Start), (100, Input::TcpConnected), (200, msg(Message::Open(open)))] {
            s.process(input, t0 + Duration::from_millis(ms));
        }
        let out = s.process(msg(Message::Keepalive), t0 + Duration::from_millis(300));
        assert!(matches!(out[..], [Output::Established { .. }]), "{out:?}");
        (s, t0)
    }

    #[test]
    fn active_happy_path_keepalives_and_hold_expiry() {
        let cfg = cfg();
        let mut s = Session::new(cfg.clone());
        let t0 = Instant::now();
        run(&mut s, t0, vec![
            // 1. ManualStart: connect, ConnectRetry 5 s (§8.2.2 Idle Event 1).
            Step(0, Input::Start, vec![Connect, SetTimer(ConnectRetry, secs(5))]),
            // 2. Connected: OPEN, Hold 240 s (§8.2.2 Connect Event 16).
            Step(100, Input::TcpConnected, vec![
                CancelTimer(ConnectRetry), our_open(&cfg), SetTimer(Hold, secs(240)),
            ]),
            // 3. Peer's OPEN: KEEPALIVE, hold 90, keepalive 30 (Event 19).
            Step(200, msg(Message::Open(peer_open())), vec![
                Output::Send(Message::Keepalive), SetTimer(Hold, secs(90)), SetTimer(Keepalive, secs(30)),
            ]),
            // 4. Peer's KEEPALIVE: Established (OpenConfirm Event 26).
            Step(300, msg(Message::Keepalive), vec![Output::Established {
                open: peer_open(),
                families: vec![Family::Ipv4Unicast, Family::Evpn],
                four_octet_as: true,
                hold_time: 90,
            }]),
            // 5. Keepalive timer: KEEPALIVE and re-arm (Event 11).
            Step(30_200, Input::Timer(Keepalive), vec![
                Output::Send(Message::Keepalive), SetTimer(Keepalive, secs(30)),
            ]),
            // 6. A KEEPALIVE from the peer restarts the hold timer (lazily: nothing to do now).
            Step(60_200, msg(Message::Keepalive), vec![]),
            // 7. The hold timer fires at its first deadline: re-armed for the remainder.
            Step(90_200, Input::Timer(Hold), vec![SetTimer(Hold, secs(60))]),
            // 8. An UPDATE restarts it again and goes to the RIB.
            Step(100_200, msg(Message::Update(Update::default())), vec![Output::Received(Update::default())]),
            // 9. Hold expires for good: NOTIFICATION 4/0, close, down, retry in 5 s (Event 10).
            Step(150_200, Input::Timer(Hold), vec![SetTimer(Hold, secs(40))]),
            Step(190_200, Input::Timer(Hold), vec![
                send_notif(4, 0), Close, CancelTimer(Keepalive), down_sent(4, 0), SetTimer(ConnectRetry, secs(5)),
            ]),
        ]);
        assert_eq!(s.state(), State::Idle);
        let st = s.stats();
        let m = &st.messages;
        assert_eq!((m.opens_out, m.opens_in, m.keepalives_out, m.keepalives_in), (1, 1, 2, 2));
        assert_eq!((st.messages.updates_in, st.messages.notifications_out, st.flaps), (1, 1, 1));
        assert_eq!(st.last_error, Some(DownReason::NotificationSent(notif(4, 0))));
    }

    #[test]
    fn passive_happy_path_with_lower_peer_hold_time() {
        let cfg = PeerConfig { passive: true, ..cfg() };
        let mut s = Session::new(cfg.clone());
        let t0 = Instant::now();
        let open = Open { hold_time: 30, ..peer_open() };
        run(&mut s, t0, vec![
            // 1. Passive ManualStart: Active, nothing to do (Event 5).
            Step(0, Input::Start, vec![]),
            // 2. The RIB cannot send before Established.
            Step(10, Input::Send(Update::default()), vec![Counted("update-dropped-not-established")]),
            // 3. An accepted connection handed over (Active Event 17).
            Step(1000, Input::TcpConnected, vec![our_open(&cfg), SetTimer(Hold, secs(240))]),
            // 4. Hold = min(90, 30), keepalive 10 s.
            Step(1100, msg(Message::Open(open.clone())), vec![
                Output::Send(Message::Keepalive), SetTimer(Hold, secs(30)), SetTimer(Keepalive, secs(10)),
            ]),
            Step(1200, msg(Message::Keepalive), vec![Output::Established {
                open,
                families: vec![Family::Ipv4Unicast, Family::Evpn],
                four_octet_as: true,
                hold_time: 30,
            }]),
            // 5. An UPDATE we send postpones our next KEEPALIVE (§8.2.2 Established).
            Step(6_100, Input::Send(Update::default()), vec![Output::Send(Message::Update(Update::default()))]),
            Step(11_100, Input::Timer(Keepalive), vec![SetTimer(Keepalive, secs(5))]),
            Step(16_100, Input::Timer(Keepalive), vec![
                Output::Send(Message::Keepalive), SetTimer(Keepalive, secs(10)),
            ]),
            // 6. A stale fire (timer already handled) is ignored.
            Step(16_200, Input::Timer(ConnectRetry), vec![]),
        ]);
        assert_eq!(s.state(), State::Established);
    }

    #[test]
    fn hold_expiry_in_open_sent_and_hold_time_zero() {
        let cfg = cfg();
        let mut s = Session::new(cfg.clone());
        let t0 = Instant::now();
        run(&mut s, t0, vec![
            Step(0, Input::Start, vec![Connect, SetTimer(ConnectRetry, secs(5))]),
            Step(100, Input::TcpConnected, vec![
                CancelTimer(ConnectRetry), our_open(&cfg), SetTimer(Hold, secs(240)),
            ]),
            // 1. No OPEN in 4 minutes: 4/0 (§8.2.2 OpenSent Event 10).
            Step(240_100, Input::Timer(Hold), vec![
                send_notif(4, 0), Close, down_sent(4, 0), SetTimer(ConnectRetry, secs(5)),
            ]),
            // 2. Restart after the backoff; the peer proposes hold time 0: no timers (§4.2).
            Step(245_100, Input::Timer(ConnectRetry), vec![Connect, SetTimer(ConnectRetry, secs(10))]),
            Step(245_200, Input::TcpConnected, vec![
                CancelTimer(ConnectRetry), our_open(&cfg), SetTimer(Hold, secs(240)),
            ]),
            Step(245_300, msg(Message::Open(Open { hold_time: 0, ..peer_open() })), vec![
                Output::Send(Message::Keepalive), CancelTimer(Hold),
            ]),
        ]);
        assert_eq!(s.state(), State::OpenConfirm);
    }

    #[test]
    fn open_checks_send_the_right_notification() {
        let ibgp = PeerConfig { remote_as: 65000, ..cfg() };
        // (case, config, peer's OPEN, expected OPEN error subcode or None = accepted)
        let cases = [
            ("bad peer AS", cfg(), Open { asn: 65002, ..peer_open() }, Some(2)),
            ("2-octet peer with AS_TRANS", PeerConfig { remote_as: 4_200_000_000, ..cfg() },
                Open { asn: 23456, four_octet_as: false, ..peer_open() }, Some(2)),
            ("hold time 1", cfg(), Open { hold_time: 1, ..peer_open() }, Some(6)),
            ("hold time 2", cfg(), Open { hold_time: 2, ..peer_open() }, Some(6)),
            ("hold time 3", cfg(), Open { hold_time: 3, ..peer_open() }, None),
            ("router id 0", cfg(), Open { router_id: Ipv4Addr::UNSPECIFIED, ..peer_open() }, Some(3)),
            ("iBGP router id = ours", ibgp.clone(), Open { asn: 65000, router_id: LOCAL_ID, ..peer_open() }, Some(3)),
            ("iBGP ok", ibgp, Open { asn: 65000, ..peer_open() }, None),
            // RFC 6286 §2.2: only an internal peer must differ from us.
            ("eBGP router id = ours", cfg(), Open { router_id: LOCAL_ID, ..peer_open() }, None),
        ];
        for (case, cfg, open, subcode) in cases {
            let t0 = Instant::now();
            let mut s = Session::new(cfg);
            s.process(Input::Start, t0);
            s.process(Input::TcpConnected, t0);
            let got = s.process(msg(Message::Open(open)), t0);
            match subcode {
                Some(sub) => {
                    assert_eq!(got, vec![
                        send_notif(2, sub), Close, CancelTimer(Hold), down_sent(2, sub),
                        SetTimer(ConnectRetry, secs(5)),
                    ], "{case}");
                    assert_eq!(s.state(), State::Idle, "{case}");
                    assert_eq!(s.stats().messages.notifications_out, 1, "{case}");
                }
                None => assert_eq!(s.state(), State::OpenConfirm, "{case}: {got:?}"),
            }
        }
    }

    #[test]
    fn notification_received_reconnects_with_backoff() {
        let cfg = cfg();
        let mut s = Session::new(cfg.clone());
        let t0 = Instant::now();
        let cease = notif(6, 4);
        let down = Down { reason: DownReason::NotificationReceived(cease.clone()), graceful: false };
        run(&mut s, t0, vec![
            Step(0, Input::Start, vec![Connect, SetTimer(ConnectRetry, secs(5))]),
            Step(100, Input::TcpConnected, vec![
                CancelTimer(ConnectRetry), our_open(&cfg), SetTimer(Hold, secs(240)),
            ]),
            // 1. NOTIFICATION in OpenSent (Event 25): close, down, Idle, restart in 5 s.
            Step(200, msg(Message::Notification(cease.clone())), vec![
                Close, CancelTimer(Hold), down.clone(), SetTimer(ConnectRetry, secs(5)),
            ]),
            // 2. An early fire is re-armed for the remainder.
            Step(1_200, Input::Timer(ConnectRetry), vec![SetTimer(ConnectRetry, secs(4))]),
            // 3. The backoff expires: connect again (the attempt timer is the doubled backoff).
            Step(5_200, Input::Timer(ConnectRetry), vec![Connect, SetTimer(ConnectRetry, secs(10))]),
        ]);
        assert_eq!(s.stats().messages.notifications_in, 1);
        // Each further flap doubles the wait before reconnecting, up to 60 s.
        let mut now = t0 + secs(6);
        let mut waits = vec![];
        for _ in 0..6 {
            s.process(Input::TcpConnected, now);
            let out = s.process(msg(Message::Notification(cease.clone())), now);
            let Some(SetTimer(ConnectRetry, d)) = out.last().cloned() else { panic!("{out:?}") };
            waits.push(d.as_secs());
            now += d;
            assert_eq!(s.process(Input::Timer(ConnectRetry), now)[0], Connect);
        }
        assert_eq!(waits, [10, 20, 40, 60, 60, 60]);
        // A session that stayed up for a minute starts the backoff over.
        s.process(Input::TcpConnected, now);
        s.process(msg(Message::Open(peer_open())), now);
        s.process(msg(Message::Keepalive), now);
        now += secs(61);
        s.process(msg(Message::Keepalive), now);
        let out = s.process(msg(Message::Notification(cease)), now);
        assert_eq!(out.last(), Some(&SetTimer(ConnectRetry, secs(5))));
        assert_eq!(s.stats().flaps, 1);
    }

    #[test]
    fn connect_failure_and_timeout_back_off() {
        let mut s = Session::new(cfg());
        let t0 = Instant::now();
        run(&mut s, t0, vec![
            Step(0, Input::Start, vec![Connect, SetTimer(ConnectRetry, secs(5))]),
            // 1. Refused: Active, the running ConnectRetry timer makes the next attempt.
            Step(10, Input::TcpFailed, vec![]),
            Step(5_000, Input::Timer(ConnectRetry), vec![Connect, SetTimer(ConnectRetry, secs(10))]),
            // 2. The attempt hangs: abort it and try again (Connect Event 9).
            Step(15_000, Input::Timer(ConnectRetry), vec![Close, Connect, SetTimer(ConnectRetry, secs(20))]),
            // 3. Incoming connection while connecting: taken (the daemon aborts its connect).
            Step(16_000, Input::TcpConnected, vec![
                CancelTimer(ConnectRetry), our_open(&cfg()), SetTimer(Hold, secs(240)),
            ]),
            // 4. A second connection handed over in OpenSent is a daemon bug: ignored.
            Step(16_100, Input::TcpConnected, vec![Counted("fsm-input-ignored")]),
        ]);
        assert_eq!(s.state(), State::OpenSent);
    }

    #[test]
    fn tcp_loss_is_graceful_only_for_an_established_gr_peer() {
        let every = vec![(Family::Ipv4Unicast, true), (Family::Vpnv4, true), (Family::Evpn, true)];
        let gr = GracefulRestart { restarting: false, restart_time: 120, families: every };
        let gr_open = Open { graceful_restart: Some(gr), ..peer_open() };
        let lost = |graceful| Down { reason: DownReason::ConnectionLost, graceful };
        // 1. GR peer, Established, TCP closes: helper mode.
        let (mut s, t0) = established(cfg(), gr_open.clone());
        run(&mut s, t0, vec![Step(1_000, Input::TcpClosed, vec![
            Close, CancelTimer(Hold), CancelTimer(Keepalive), lost(true), SetTimer(ConnectRetry, secs(5)),
        ])]);
        // 2. Same with TcpFailed.
        let (mut s, t0) = established(cfg(), gr_open.clone());
        assert!(s.process(Input::TcpFailed, t0).contains(&lost(true)));
        // 3. Peer without GR.
        let (mut s, t0) = established(cfg(), peer_open());
        assert!(s.process(Input::TcpClosed, t0).contains(&lost(false)));
        // 4. GR peer but a NOTIFICATION: not graceful (RFC 4724 §4.2).
        let (mut s, t0) = established(cfg(), gr_open.clone());
        let out = s.process(msg(Message::Notification(notif(6, 2))), t0);
        assert!(out.contains(&Down { reason: DownReason::NotificationReceived(notif(6, 2)), graceful: false }));
        // 5. GR peer, lost in OpenConfirm: never Established, not graceful.
        let mut s = Session::new(cfg());
        s.process(Input::Start, t0);
        s.process(Input::TcpConnected, t0);
        s.process(msg(Message::Open(gr_open.clone())), t0);
        assert!(s.process(Input::TcpClosed, t0).contains(&lost(false)));
        // 6. A GR capability that lists no family (BIRD's default, "aware") or not every
        //    negotiated one keeps nothing (RFC 4724 §4.2: only the families listed).
        let negotiated = {
            let (s, _) = established(cfg(), gr_open.clone());
            s.families().to_vec()
        };
        assert!(!negotiated.is_empty());
        for families in [vec![], negotiated[1..].iter().map(|f| (*f, false)).collect()] {
            let open = Open { graceful_restart: Some(GracefulRestart { restarting: false, restart_time: 120, families }), ..peer_open() };
            let (mut s, t0) = established(cfg(), open);
            assert!(s.process(Input::TcpClosed, t0).contains(&lost(false)));
        }
        // 7. Every negotiated family listed: graceful.
        let open = Open { graceful_restart: Some(GracefulRestart { restarting: false, restart_time: 120, families: negotiated.iter().map(|f| (*f, false)).collect() }), ..peer_open() };
        let (mut s, t0) = established(cfg(), open);
        assert!(s.process(Input::TcpClosed, t0).contains(&lost(true)));
    }

    #[test]
    fn decode_errors() {
        let (mut s, t0) = established(cfg(), peer_open());
        let update = Update { withdrawn: vec![prefix(1)], announced: vec![prefix(2), prefix(3)], ..Update::default() };
        let as_withdraw = Update { withdrawn: vec![prefix(1), prefix(2), prefix(3)], ..Update::default() };
        run(&mut s, t0, vec![
            // 1. Attribute discard (RFC 7606): the UPDATE goes on, counted.
            Step(1_000, Input::DecodeError(DecodeError::AttributeDiscard {
                update: update.clone(), reason: "bad MED length".into(),
            }), vec![Output::Received(update.clone()), Counted("update-attribute-discard")]),
            // 2. Treat-as-withdraw: every NLRI withdrawn, counted.
            Step(2_000, Input::DecodeError(DecodeError::TreatAsWithdraw {
                update: update.clone(), reason: "bad ORIGIN".into(),
            }), vec![
                Output::TreatAsWithdraw(as_withdraw, "bad ORIGIN".into()), Counted("update-treat-as-withdraw"),
            ]),
            // 2'. Some routes treated as withdrawn (RFC 8277 §2.3, a label stack): the UPDATE
            //     goes on as the codec left it (those routes withdrawn, the others announced).
            Step(2_500, Input::DecodeError(DecodeError::RoutesTreatedAsWithdrawn {
                update: update.clone(), reason: "2 labels".into(),
            }), vec![
                Output::TreatAsWithdraw(update.clone(), "2 labels".into()), Counted("update-treat-as-withdraw"),
            ]),
            // 3. Reset: send the codec's NOTIFICATION, close, down, retry.
            Step(3_000, Input::DecodeError(DecodeError::Reset(notif(3, 1))), vec![
                send_notif(3, 1), Close, CancelTimer(Hold), CancelTimer(Keepalive), down_sent(3, 1),
                SetTimer(ConnectRetry, secs(5)),
            ]),
        ]);
        assert_eq!((s.stats().messages.updates_in, s.stats().messages.notifications_out), (3, 1));
        // 4. Treat-as-withdraw before Established is an UPDATE in the wrong state (5/2).
        let mut s = Session::new(cfg());
        s.process(Input::Start, t0);
        s.process(Input::TcpConnected, t0);
        s.process(msg(Message::Open(peer_open())), t0);
        let out = s.process(
            Input::DecodeError(DecodeError::TreatAsWithdraw { update: Update::default(), reason: String::new() }),
            t0,
        );
        assert_eq!(out[0], send_notif(5, 2));
        // 5. With no connection, decode errors are stale and ignored.
        assert_eq!(s.process(Input::DecodeError(DecodeError::Reset(notif(1, 1))), t0), vec![
            Counted("fsm-input-ignored"),
        ]);
    }

    #[test]
    fn unexpected_messages_are_fsm_errors() {
        let t0 = Instant::now();
        // OpenSent + KEEPALIVE → 5/1 (RFC 6608).
        let mut s = Session::new(cfg());
        s.process(Input::Start, t0);
        s.process(Input::TcpConnected, t0);
        assert_eq!(s.process(msg(Message::Keepalive), t0), vec![
            send_notif(5, 1), Close, CancelTimer(Hold), down_sent(5, 1), SetTimer(ConnectRetry, secs(5)),
        ]);
        // OpenConfirm + UPDATE → 5/2.
        let mut s = Session::new(cfg());
        s.process(Input::Start, t0);
        s.process(Input::TcpConnected, t0);
        s.process(msg(Message::Open(peer_open())), t0);
        assert_eq!(s.process(msg(Message::Update(Update::default())), t0), vec![
            send_notif(5, 2), Close, CancelTimer(Hold), CancelTimer(Keepalive), down_sent(5, 2),
            SetTimer(ConnectRetry, secs(5)),
        ]);
        // Established + OPEN → 5/3.
        let (mut s, t0) = established(cfg(), peer_open());
        let out = s.process(msg(Message::Open(peer_open())), t0);
        assert_eq!(&out[..2], &[send_notif(5, 3), Close]);
        assert!(out.contains(&down_sent(5, 3)));
        // A message with no connection (Idle) is ignored.
        assert_eq!(s.process(msg(Message::Keepalive), t0), vec![Counted("fsm-input-ignored")]);
    }

    #[test]
    fn stop_sends_administrative_shutdown_and_does_not_restart() {
        let (mut s, t0) = established(cfg(), peer_open());
        run(&mut s, t0, vec![
            // 1. ManualStop (Event 2): Cease 6/2, close, down, no ConnectRetry.
            Step(1_000, Input::Stop, vec![
                send_notif(6, 2), Close, CancelTimer(Hold), CancelTimer(Keepalive),
                Down { reason: DownReason::AdminStop, graceful: false },
            ]),
            // 2. Nothing restarts it: a stale timer fire does nothing.
            Step(10_000, Input::Timer(ConnectRetry), vec![]),
            Step(10_000, Input::TcpConnected, vec![Close, Counted("connection-refused-idle")]),
            // 3. Start again.
            Step(20_000, Input::Start, vec![Connect, SetTimer(ConnectRetry, secs(5))]),
            // 4. Stop while connecting: abort the attempt.
            Step(20_100, Input::Stop, vec![Close, CancelTimer(ConnectRetry)]),
        ]);
        assert_eq!(s.state(), State::Idle);
        assert_eq!(s.stats().last_error, Some(DownReason::AdminStop));
        // Stop during the backoff wait cancels the automatic restart.
        let (mut s, t0) = established(cfg(), peer_open());
        s.process(Input::TcpClosed, t0);
        assert_eq!(s.process(Input::Stop, t0), vec![CancelTimer(ConnectRetry)]);
        assert_eq!(s.process(Input::Timer(ConnectRetry), t0 + secs(5)), vec![]);
    }

    #[test]
    fn negotiation_families_four_octet_as_and_our_capabilities() {
        let cfg = PeerConfig {
            families: vec![Family::Ipv4Unicast, Family::Vpnv4, Family::Evpn],
            graceful_restart: Some(5000),
            restarting: true,
            ..cfg()
        };
        // Our OPEN: every family, 4-octet AS, route refresh, GR with R and F bits.
        let ours = Session::new(cfg.clone()).our_open();
        assert_eq!(ours, Open {
            asn: 65000,
            hold_time: 90,
            router_id: LOCAL_ID,
            families: cfg.families.clone(),
            four_octet_as: true,
            route_refresh: true,
            graceful_restart: Some(GracefulRestart {
                restarting: true,
                restart_time: 4095,
                families: vec![(Family::Ipv4Unicast, true), (Family::Vpnv4, true), (Family::Evpn, true)],
            }),
        });
        // (peer's families, peer's 4-octet AS) → (negotiated families, flag)
        let cases = [
            (vec![Family::Evpn, Family::Ipv4Unicast], true, vec![Family::Ipv4Unicast, Family::Evpn], true),
            (vec![Family::Vpnv4], false, vec![Family::Vpnv4], false),
            // RFC 4760: no multiprotocol capability = IPv4 unicast.
            (vec![], true, vec![Family::Ipv4Unicast], true),
        ];
        for (theirs, four, want, want_four) in cases {
            let t0 = Instant::now();
            let mut s = Session::new(cfg.clone());
            s.process(Input::Start, t0);
            s.process(Input::TcpConnected, t0);
            s.process(msg(Message::Open(Open { families: theirs.clone(), four_octet_as: four, ..peer_open() })), t0);
            let out = s.process(msg(Message::Keepalive), t0);
            let [Output::Established { families, four_octet_as, .. }] = &out[..] else { panic!("{out:?}") };
            assert_eq!((families, *four_octet_as), (&want, want_four), "peer {theirs:?}");
        }
    }

    #[test]
    fn end_of_rib_and_route_refresh() {
        let (mut s, t0) = established(cfg(), peer_open());
        run(&mut s, t0, vec![
            // 1. IPv4 unicast End-of-RIB is an empty UPDATE (RFC 4724 §2).
            Step(1_000, Input::SendEndOfRib(Family::Ipv4Unicast), vec![
                Output::Send(Message::Update(Update::default())),
            ]),
            // 2. Other families: the codec encodes the empty MP_UNREACH.
            Step(1_000, Input::SendEndOfRib(Family::Evpn), vec![Output::SendEndOfRib(Family::Evpn)]),
            // 3. Not negotiated: dropped.
            Step(1_000, Input::SendEndOfRib(Family::Vpnv4), vec![Counted("eor-dropped")]),
            // 4. ROUTE-REFRESH (RFC 2918) for the RIB.
            Step(2_000, msg(Message::RouteRefresh(Family::Evpn)), vec![Output::RouteRefresh(Family::Evpn)]),
            Step(2_000, msg(Message::RouteRefresh(Family::Vpnv4)), vec![
                Counted("route-refresh-unnegotiated-family"),
            ]),
        ]);
        assert_eq!(s.stats().messages.updates_out, 2);
    }

    #[test]
    fn collisions() {
        let low = Ipv4Addr::new(10, 0, 0, 1);
        let high = Ipv4Addr::new(10, 0, 0, 9);
        // (local, remote, existing is ours) → keep existing (§6.8: the higher id's connection wins)
        for (local, remote, outgoing, keep) in [
            (low, high, true, false),
            (low, high, false, true),
            (high, low, true, true),
            (high, low, false, false),
        ] {
            assert_eq!(collision_keep_existing(local, remote, outgoing), keep, "{local} {remote} {outgoing}");
        }
        // The existing connection loses in OpenConfirm: Cease 6/7, → Active, take the new one.
        let cfg = cfg();
        let mut s = Session::new(cfg.clone());
        let t0 = Instant::now();
        s.process(Input::Start, t0);
        s.process(Input::TcpConnected, t0);
        let mut fresh = Session::new(cfg.clone());
        fresh.process(Input::Start, t0);
        assert!(fresh.keeps_connection_against(Ipv4Addr::new(255, 0, 0, 0), false), "no connection in OpenSent/OpenConfirm: refuse");
        s.process(msg(Message::Open(peer_open())), t0);
        assert_eq!(s.peer_router_id(), Some(PEER_ID));
        // In OpenConfirm the identifiers decide (LOCAL_ID against a higher and a lower one).
        assert!(!s.keeps_connection_against(Ipv4Addr::new(255, 0, 0, 0), true));
        assert!(s.keeps_connection_against(Ipv4Addr::new(255, 0, 0, 0), false));
        assert!(s.keeps_connection_against(Ipv4Addr::new(0, 0, 0, 1), true));
        run(&mut s, t0, vec![
            Step(100, Input::CollisionLost, vec![
                send_notif(6, 7), Close, CancelTimer(Hold), CancelTimer(Keepalive),
                Down { reason: DownReason::CollisionLost, graceful: false }, SetTimer(ConnectRetry, secs(5)),
            ]),
            Step(150, Input::TcpConnected, vec![
                CancelTimer(ConnectRetry), our_open(&cfg), SetTimer(Hold, secs(240)),
            ]),
        ]);
        assert_eq!(s.state(), State::OpenSent);
    }
}
