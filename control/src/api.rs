//! The control-plane API: HTTP/JSON over axum, described by an OpenAPI 3 document generated
//! from these handlers (utoipa), served at `/openapi.json` and checked into `docs/openapi.json`
//! (a test keeps the two equal).
//!
//! Reads are open unless `api.token_for_reads` is set; writes need `Authorization: Bearer
//! <api.token>` (401 without it, 403 with another token, compared in constant time; with no
//! token configured, writes are refused). Every error is a JSON [`ErrorBody`] with a stable
//! `code`; bad input is a 4xx, never a 500. Handlers read only the state layer
//! ([`crate::state`]) and change things only through its commands.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use carrier_dataplane::tables::Ipv4Prefix;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::config::{ApiConfig, ControlConfig};
use crate::reconfig::{Attachment, Edit};
use crate::state::{
    ApplySummary, Command, CommandError, DataplaneStatus, EvpnView, InterfaceView, LabelView, NeighborAction, PeerStatus, RouteView, State, VrfInfo,
};

/// Largest request body (bytes).
pub const MAX_BODY: usize = 1 << 20;

/// An error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code: `bad-request`, `invalid-json`, `not-found`, `unauthorized`,
    /// `forbidden`, `conflict`, `payload-too-large`, `method-not-allowed`, `unavailable`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

/// An error, as a status and an [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(ErrorBody { code: self.code.into(), message: self.message })).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let (status, code) = match e {
            CommandError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            CommandError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            CommandError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            CommandError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            _ => "invalid-json",
        };
        // Axum answers 422 for JSON of the wrong shape; to clients it is bad input all the same.
        let status = if status.is_client_error() { status } else { StatusCode::BAD_REQUEST };
        ApiError::new(status, code, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `/health`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the dataplane does not answer or a configured session is not
    /// Established. (The answer is a 200 either way: the API itself is healthy.)
    pub status: String,
    /// The dataplane's table socket answered the last poll.
    pub dataplane_connected: bool,
    /// Sessions Established.
    pub sessions_established: usize,
    /// Sessions configured (and not administratively down).
    pub sessions_configured: usize,
    /// The last error seen: the dataplane poll's, else the most recent session's.
    pub last_error: Option<String>,
    /// Seconds since the control process started.
    pub uptime_seconds: u64,
}

/// One port's counters.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PortStats {
    /// Port.
    pub port: String,
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames given to the host stack.
    pub to_host: u64,
    /// Frames from the host stack.
    pub from_host: u64,
    /// Drops by reason.
    pub drops: BTreeMap<String, u64>,
}

/// A neighbour of the dataplane: an address's MAC on a port.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NeighbourView {
    /// Port.
    pub port: String,
    /// The neighbour's address.
    pub ip: String,
    /// Its MAC.
    pub mac: String,
    /// `static` (the dataplane config) or `learned` (ARP).
    pub source: String,
}

/// One label's counters (OpenConfig AFT: packets-forwarded, octets-forwarded).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LabelStats {
    /// Label.
    pub label: u32,
    /// `in` (popped here, top of the stack on arrival) or `out` (pushed here).
    pub direction: String,
    /// Packets.
    pub packets_forwarded: u64,
    /// Bytes.
    pub octets_forwarded: u64,
}

/// One route's counters (an OpenConfig AFT `ipv4-entry`: packets-forwarded, octets-forwarded).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PrefixStats {
    /// VRF (network instance).
    pub vrf: String,
    /// The route's prefix.
    pub prefix: String,
    /// Packets forwarded by the route (transit traffic, both forwarding tiers).
    pub packets_forwarded: u64,
    /// Their bytes (frames as looked up).
    pub octets_forwarded: u64,
}

/// `?vrf=` of `/stats/prefixes`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PrefixQuery {
    /// A VRF with `prefix_counters = true`.
    pub vrf: String,
}

/// One VRF's counters.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VrfStats {
    /// VRF (network instance).
    pub vrf: String,
    /// Packets looked up.
    pub lookups_packets: u64,
    /// Bytes looked up.
    pub lookups_bytes: u64,
    /// Packets dropped after the lookup.
    pub drops: u64,
}

/// Drops of one reason on one port.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DropStats {
    /// Port.
    pub port: String,
    /// The drop reason's name.
    pub reason: String,
    /// Packets.
    pub packets: u64,
}

/// `?vrf=` of `/rib`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RibQuery {
    /// A VRF name, or `underlay`; absent: every VRF and the underlay.
    pub vrf: Option<String>,
}

/// `{address}` in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AddressPath {
    /// The neighbour's address.
    #[param(format = Ipv4)]
    pub address: String,
}

/// `{name}` in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VrfPath {
    /// The VRF's name.
    pub name: String,
}

/// `{name}/routes/{addr}/{len}` in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RoutePath {
    /// The VRF's name.
    pub name: String,
    /// The prefix's address.
    #[param(format = Ipv4)]
    pub addr: String,
    /// The prefix's length.
    #[param(minimum = 0, maximum = 32)]
    pub len: u8,
}

/// Body of `POST /neighbors/{address}`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NeighborRequest {
    /// What to do.
    pub action: NeighborAction,
}

/// Body of `POST /vrfs/{name}/routes`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticRouteRequest {
    /// Prefix, e.g. `10.9.0.0/24` (host bits must be zero).
    #[schema(pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$")]
    pub prefix: String,
    /// CE next hop in a connected subnet of the VRF.
    #[schema(format = Ipv4)]
    pub via: String,
}

/// Body of `POST /vrfs`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VrfCreateRequest {
    /// Name: 1 to 64 letters, digits, `-`, `_` or `.`.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    /// Route distinguisher (`ASN:n` or `IP:n`); absent: a local VRF, nothing exported.
    #[serde(default)]
    pub rd: Option<String>,
    /// Route targets imported (`ASN:n` or `IP:n`).
    #[serde(default)]
    pub import: Vec<String>,
    /// Route targets attached on export.
    #[serde(default)]
    pub export: Vec<String>,
    /// Source address of ICMP the router sends in the VRF when no port address fits.
    #[serde(default)]
    #[schema(format = Ipv4)]
    pub source: Option<String>,
    /// Count packets and bytes forwarded per prefix (`GET /stats/prefixes`).
    #[serde(default)]
    pub prefix_counters: bool,
}

/// Body of `POST /interfaces/{name}/attach`: exactly one of `vrf`, `bridge`, `core`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    /// A VRF's name.
    #[serde(default)]
    pub vrf: Option<String>,
    /// A bridge domain's name.
    #[serde(default)]
    pub bridge: Option<String>,
    /// The core.
    #[serde(default)]
    pub core: bool,
    /// The port's addresses with prefix length (`10.1.0.1/24`); absent: kept.
    #[serde(default)]
    pub addresses: Option<Vec<String>>,
    /// For an interface the config does not list yet (it becomes a port): the router's MAC on
    /// it; default: the interface's own.
    #[serde(default)]
    pub mac: Option<String>,
}

/// `{name}` of an interface in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PortPath {
    /// The port's interface name.
    pub name: String,
}

/// A write's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Done {
    /// Always true.
    pub ok: bool,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "carrier control-plane API", description = "Read the PE's BGP, RIB, label, EVPN and dataplane state; change neighbours, static routes and the configuration."),
    paths(
        health, peers, peer, interfaces, neighbours, vrfs, vrf, rib, mpls, evpn, stats_ports, stats_labels, stats_vrfs, stats_drops, stats_prefixes, dataplane,
        metrics, neighbor, add_route, del_route, apply, add_vrf, del_vrf, attach, detach
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        }
    }
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Bind the API's listener; a warning when it is not on loopback.
pub async fn bind(cfg: &ApiConfig) -> std::io::Result<tokio::net::TcpListener> {
    if !cfg.listen.ip().is_loopback() {
        log::warn!("API listening on {}, not a loopback address: reads are open to that network unless api.token_for_reads is set", cfg.listen);
    }
    tokio::net::TcpListener::bind(cfg.listen).await
}

/// Serve the API until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: State, cfg: ApiConfig) {
    log::info!("API and /metrics on http://{}", cfg.listen);
    if let Err(e) = axum::serve(listener, router(state, &cfg)).await {
        log::error!("API: {e}");
    }
}

#[derive(Clone)]
struct Ctx {
    state: State,
    token: Option<String>,
}

/// The API's routes.
pub fn router(state: State, cfg: &ApiConfig) -> Router {
    let ctx = Ctx { state, token: cfg.token.clone() };
    let writes = Router::new()
        .route("/neighbors/{address}", post(neighbor))
        .route("/vrfs/{name}/routes", post(add_route))
        .route("/vrfs/{name}/routes/{addr}/{len}", axum::routing::delete(del_route))
        .route("/config", axum::routing::put(apply))
        .route("/vrfs", post(add_vrf))
        .route("/vrfs/{name}", axum::routing::delete(del_vrf))
        .route("/interfaces/{name}/attach", post(attach))
        .route("/interfaces/{name}/detach", post(detach))
        .route_layer(axum::middleware::from_fn_with_state(ctx.clone(), require_token));
    let mut reads = Router::new()
        .route("/health", get(health))
        .route("/peers", get(peers))
        .route("/peers/{address}", get(peer))
        .route("/interfaces", get(interfaces))
        .route("/neighbours", get(neighbours))
        .route("/vrfs", get(vrfs))
        .route("/vrfs/{name}", get(vrf))
        .route("/rib", get(rib))
        .route("/mpls", get(mpls))
        .route("/evpn", get(evpn))
        .route("/stats/ports", get(stats_ports))
        .route("/stats/labels", get(stats_labels))
        .route("/stats/vrfs", get(stats_vrfs))
        .route("/stats/drops", get(stats_drops))
        .route("/stats/prefixes", get(stats_prefixes))
        .route("/dataplane", get(dataplane))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { Json(openapi()) }));
    if cfg.token_for_reads {
        reads = reads.route_layer(axum::middleware::from_fn_with_state(ctx.clone(), require_token));
    }
    reads
        .merge(writes)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "method not allowed here") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// Equal without leaking where two byte strings differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff));
    }
    diff == 0
}

async fn require_token(AxState(ctx): AxState<Ctx>, headers: HeaderMap, request: Request, next: Next) -> Response {
    let Some(token) = ctx.token.as_deref() else {
        return ApiError::new(StatusCode::FORBIDDEN, "forbidden", "writes are disabled: no api.token is configured").into_response();
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "an Authorization: Bearer token is needed").into_response(),
        Some(g) if !constant_time_eq(g.as_bytes(), token.as_bytes()) => {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", "wrong token").into_response()
        }
        Some(_) => next.run(request).await,
    }
}

fn parse_addr(s: &str) -> Result<Ipv4Addr, ApiError> {
    s.parse().map_err(|_| ApiError::bad_request(format!("{s:?} is not an IPv4 address")))
}

fn parse_prefix(s: &str) -> Result<Ipv4Prefix, ApiError> {
    let p: Ipv4Prefix = s.parse().map_err(|e| ApiError::bad_request(format!("{s:?}: {e}")))?;
    // The prefix parser masks host bits; a route given with them set is a typo, not a route.
    if p.to_string() != s {
        return Err(ApiError::bad_request(format!("{s:?} has host bits set (did you mean {p}?)")));
    }
    Ok(p)
}

#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
async fn health(AxState(ctx): AxState<Ctx>) -> Json<Health> {
    let dp = ctx.state.dataplane.borrow().clone();
    let peers = ctx.state.peers();
    let configured = peers.iter().filter(|p| !p.admin_down).count();
    let established = peers.iter().filter(|p| p.state == "established").count();
    let last_error = dp.last_error.clone().or_else(|| peers.iter().filter_map(|p| p.last_error.clone()).next());
    let ok = dp.connected && established >= configured;
    let h = Health {
        status: if ok { "ok" } else { "degraded" }.into(),
        dataplane_connected: dp.connected,
        sessions_established: established,
        sessions_configured: configured,
        last_error,
        uptime_seconds: ctx.state.started.elapsed().as_secs(),
    };
    Json(h)
}

#[utoipa::path(get, path = "/peers", responses((status = 200, body = Vec<PeerStatus>)))]
async fn peers(AxState(ctx): AxState<Ctx>) -> Json<Vec<PeerStatus>> {
    Json(ctx.state.peers())
}

#[utoipa::path(get, path = "/peers/{address}", params(AddressPath),
    responses((status = 200, body = PeerStatus), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn peer(AxState(ctx): AxState<Ctx>, address: Result<Path<String>, PathRejection>) -> ApiResult<PeerStatus> {
    let addr = parse_addr(&address?.0)?;
    ctx.state.peers().into_iter().find(|p| p.address == addr.to_string()).map(Json).ok_or_else(|| ApiError::not_found(format!("no neighbor {addr}")))
}

#[utoipa::path(get, path = "/interfaces", responses((status = 200, body = Vec<InterfaceView>)))]
async fn interfaces(AxState(ctx): AxState<Ctx>) -> Json<Vec<InterfaceView>> {
    let dp = ctx.state.dataplane.borrow().clone();
    let mut list = ctx.state.rib.borrow().interfaces.clone();
    for i in &mut list {
        i.link = match carrier_dataplane::io::netdev::is_running(&i.name) {
            Ok(true) => "up",
            Ok(false) => "down",
            Err(_) => "unknown",
        }
        .into();
        if let Some(c) = dp.counters.ports.get(&i.name) {
            (i.rx_packets, i.tx_packets, i.drops) = (c.rx.packets, c.tx.packets, c.drops.values().sum());
        }
        if let Some(x) = dp.counters.xdp.get(&i.name) {
            i.xdp.clone_from(&x.mode);
            (i.express_forwarded, i.express_punted) = (x.express_forwarded, x.express_punts.values().sum());
        }
    }
    Json(list)
}

#[utoipa::path(get, path = "/neighbours", responses((status = 200, body = Vec<NeighbourView>)))]
async fn neighbours(AxState(ctx): AxState<Ctx>) -> Json<Vec<NeighbourView>> {
    // As of the dataplane poller's last read (none while it cannot reach the dataplane: see
    // /dataplane and /health).
    let dp = ctx.state.dataplane.borrow().clone();
    Json(dp.neighbours.iter().map(|n| NeighbourView { port: n.port.clone(), ip: n.ip.to_string(), mac: n.mac.clone(), source: n.source.clone() }).collect())
}

#[utoipa::path(get, path = "/vrfs", responses((status = 200, body = Vec<VrfInfo>)))]
async fn vrfs(AxState(ctx): AxState<Ctx>) -> Json<Vec<VrfInfo>> {
    Json(ctx.state.rib.borrow().vrfs.clone())
}

#[utoipa::path(get, path = "/vrfs/{name}", params(VrfPath),
    responses((status = 200, body = VrfInfo), (status = 404, body = ErrorBody)))]
async fn vrf(AxState(ctx): AxState<Ctx>, name: Result<Path<String>, PathRejection>) -> ApiResult<VrfInfo> {
    let name = name?.0;
    ctx.state.rib.borrow().vrfs.iter().find(|v| v.name == name).cloned().map(Json).ok_or_else(|| ApiError::not_found(format!("no VRF {name:?}")))
}

#[utoipa::path(get, path = "/rib", params(RibQuery), responses((status = 200, body = Vec<RouteView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rib(AxState(ctx): AxState<Ctx>, q: Result<Query<RibQuery>, QueryRejection>) -> ApiResult<Vec<RouteView>> {
    let vrf = q?.0.vrf;
    Ok(Json(ctx.state.ask(|reply| Command::Routes { vrf, reply }).await??))
}

#[utoipa::path(get, path = "/mpls", responses((status = 200, body = Vec<LabelView>)))]
async fn mpls(AxState(ctx): AxState<Ctx>) -> ApiResult<Vec<LabelView>> {
    let mut labels = ctx.state.ask(|reply| Command::Labels { reply }).await?;
    let dp = ctx.state.dataplane.borrow().clone();
    for l in &mut labels {
        if let Some(c) = dp.counters.labels_in.get(&l.label) {
            (l.packets_in, l.bytes_in) = (c.packets, c.bytes);
        }
    }
    Ok(Json(labels))
}

#[utoipa::path(get, path = "/evpn", responses((status = 200, body = Vec<EvpnView>)))]
async fn evpn(AxState(ctx): AxState<Ctx>) -> ApiResult<Vec<EvpnView>> {
    Ok(Json(ctx.state.ask(|reply| Command::Evpn { reply }).await?))
}

#[utoipa::path(get, path = "/stats/ports", responses((status = 200, body = Vec<PortStats>)))]
async fn stats_ports(AxState(ctx): AxState<Ctx>) -> Json<Vec<PortStats>> {
    let dp = ctx.state.dataplane.borrow().clone();
    Json(
        dp.counters
            .ports
            .iter()
            .map(|(port, c)| PortStats {
                port: port.clone(),
                rx_packets: c.rx.packets,
                rx_bytes: c.rx.bytes,
                tx_packets: c.tx.packets,
                tx_bytes: c.tx.bytes,
                to_host: c.to_host,
                from_host: c.from_host,
                drops: c.drops.clone(),
            })
            .collect(),
    )
}

#[utoipa::path(get, path = "/stats/labels", responses((status = 200, body = Vec<LabelStats>)))]
async fn stats_labels(AxState(ctx): AxState<Ctx>) -> Json<Vec<LabelStats>> {
    let dp = ctx.state.dataplane.borrow().clone();
    let mut out = vec![];
    for (dir, map) in [("in", &dp.counters.labels_in), ("out", &dp.counters.labels_out)] {
        out.extend(map.iter().map(|(l, c)| LabelStats { label: *l, direction: dir.into(), packets_forwarded: c.packets, octets_forwarded: c.bytes }));
    }
    Json(out)
}

#[utoipa::path(get, path = "/stats/prefixes", params(PrefixQuery),
    responses((status = 200, body = Vec<PrefixStats>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn stats_prefixes(AxState(ctx): AxState<Ctx>, q: Result<Query<PrefixQuery>, QueryRejection>) -> ApiResult<Vec<PrefixStats>> {
    use carrier_contract::socket::{Client, Request as DpRequest, Response as DpResponse};
    let vrf = q?.0.vrf;
    let (path, asked) = (ctx.state.dataplane_socket.clone(), vrf.clone());
    // Read from the dataplane on request: per-prefix counts grow with the table, so they are
    // not part of the poller's snapshot.
    let answer = tokio::task::spawn_blocking(move || Client::connect(&path)?.request(&DpRequest::Prefixes { vrf: asked }))
        .await
        .map_err(|_| ApiError::from(CommandError::Unavailable))?;
    match answer {
        Ok(DpResponse::Prefixes { prefixes }) => Ok(Json(
            prefixes
                .into_iter()
                .map(|p| PrefixStats { vrf: vrf.clone(), prefix: p.prefix.to_string(), packets_forwarded: p.packets, octets_forwarded: p.bytes })
                .collect(),
        )),
        Ok(DpResponse::Error { error }) if error.starts_with("no VRF") => Err(ApiError::not_found(error)),
        Ok(DpResponse::Error { error }) => Err(ApiError::new(StatusCode::CONFLICT, "conflict", error)),
        Ok(other) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("unexpected answer from the dataplane: {other:?}"))),
        Err(e) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("the dataplane: {e}"))),
    }
}

#[utoipa::path(get, path = "/stats/vrfs", responses((status = 200, body = Vec<VrfStats>)))]
async fn stats_vrfs(AxState(ctx): AxState<Ctx>) -> Json<Vec<VrfStats>> {
    let dp = ctx.state.dataplane.borrow().clone();
    Json(
        dp.counters
            .vrfs
            .iter()
            .map(|(vrf, c)| VrfStats { vrf: vrf.clone(), lookups_packets: c.lookups.packets, lookups_bytes: c.lookups.bytes, drops: c.drops })
            .collect(),
    )
}

#[utoipa::path(get, path = "/stats/drops", responses((status = 200, body = Vec<DropStats>)))]
async fn stats_drops(AxState(ctx): AxState<Ctx>) -> Json<Vec<DropStats>> {
    let dp = ctx.state.dataplane.borrow().clone();
    let mut out = vec![];
    for (port, c) in &dp.counters.ports {
        out.extend(c.drops.iter().map(|(reason, n)| DropStats { port: port.clone(), reason: reason.clone(), packets: *n }));
    }
    Json(out)
}

#[utoipa::path(get, path = "/dataplane", responses((status = 200, body = DataplaneStatus)))]
async fn dataplane(AxState(ctx): AxState<Ctx>) -> Json<DataplaneStatus> {
    Json((*ctx.state.dataplane.borrow().clone()).clone())
}

#[utoipa::path(get, path = "/metrics", responses((status = 200,
    description = "OpenMetrics text when the Accept header asks for it (as Prometheus does), else the classic Prometheus text format",
    content_type = "text/plain")))]
async fn metrics(AxState(ctx): AxState<Ctx>, headers: HeaderMap) -> Response {
    let text = crate::metrics::render(&ctx.state).await;
    let openmetrics = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/openmetrics-text"));
    if openmetrics {
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::to_classic(&text)).into_response()
    }
}

#[utoipa::path(post, path = "/neighbors/{address}", request_body = NeighborRequest, security(("bearer" = [])),
    params(AddressPath),
    responses((status = 200, body = Done), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn neighbor(
    AxState(ctx): AxState<Ctx>,
    address: Result<Path<String>, PathRejection>,
    body: Result<Json<NeighborRequest>, JsonRejection>,
) -> ApiResult<Done> {
    let addr = parse_addr(&address?.0)?;
    let action = body?.0.action;
    ctx.state.ask(|reply| Command::Neighbor { addr, action, reply }).await??;
    Ok(Json(Done { ok: true }))
}

#[utoipa::path(post, path = "/vrfs/{name}/routes", request_body = StaticRouteRequest, security(("bearer" = [])),
    params(VrfPath),
    responses((status = 201, body = Done), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn add_route(
    AxState(ctx): AxState<Ctx>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<StaticRouteRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Done>), ApiError> {
    let vrf = name?.0;
    let body = body?.0;
    let (prefix, via) = (parse_prefix(&body.prefix)?, parse_addr(&body.via)?);
    ctx.state.ask(|reply| Command::AddStatic { vrf, prefix, via, reply }).await??;
    Ok((StatusCode::CREATED, Json(Done { ok: true })))
}

#[utoipa::path(delete, path = "/vrfs/{name}/routes/{addr}/{len}", security(("bearer" = [])),
    params(RoutePath),
    responses((status = 200, body = Done), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn del_route(AxState(ctx): AxState<Ctx>, path: Result<Path<(String, String, String)>, PathRejection>) -> ApiResult<Done> {
    let (vrf, addr, len) = path?.0;
    let prefix = parse_prefix(&format!("{addr}/{len}"))?;
    ctx.state.ask(|reply| Command::DelStatic { vrf, prefix, reply }).await??;
    Ok(Json(Done { ok: true }))
}

#[utoipa::path(put, path = "/config", security(("bearer" = [])),
    request_body(content = String, description = "the control config (TOML)", content_type = "text/plain"),
    responses((status = 200, body = ApplySummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn apply(AxState(ctx): AxState<Ctx>, body: Result<String, axum::extract::rejection::StringRejection>) -> ApiResult<ApplySummary> {
    let text = body.map_err(|r| {
        let status = r.status();
        ApiError::new(status, if status == StatusCode::PAYLOAD_TOO_LARGE { "payload-too-large" } else { "bad-request" }, r.body_text())
    })?;
    let config = ControlConfig::parse(&text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(ctx.state.ask(|reply| Command::Apply { config: Box::new(config), text, reply }).await??))
}

fn parse_list<T: std::str::FromStr>(what: &str, list: &[String]) -> Result<Vec<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    list.iter().map(|x| x.parse().map_err(|e| ApiError::bad_request(format!("{what} {x:?}: {e}")))).collect()
}

#[utoipa::path(post, path = "/vrfs", request_body = VrfCreateRequest, security(("bearer" = [])),
    responses((status = 201, body = ApplySummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_vrf(AxState(ctx): AxState<Ctx>, body: Result<Json<VrfCreateRequest>, JsonRejection>) -> Result<(StatusCode, Json<ApplySummary>), ApiError> {
    let b = body?.0;
    let rd = b.rd.as_deref().map(|r| r.parse().map_err(|e| ApiError::bad_request(format!("rd {r:?}: {e}")))).transpose()?;
    let source = b.source.as_deref().map(parse_addr).transpose()?;
    let edit = Edit::AddVrf { name: b.name, rd, import: parse_list("route target", &b.import)?, export: parse_list("route target", &b.export)?, source, prefix_counters: b.prefix_counters };
    let summary = ctx.state.ask(|reply| Command::Edit { edit, reply }).await??;
    Ok((StatusCode::CREATED, Json(summary)))
}

#[utoipa::path(delete, path = "/vrfs/{name}", security(("bearer" = [])), params(VrfPath),
    responses((status = 200, body = ApplySummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn del_vrf(AxState(ctx): AxState<Ctx>, name: Result<Path<String>, PathRejection>) -> ApiResult<ApplySummary> {
    let edit = Edit::DelVrf { name: name?.0 };
    Ok(Json(ctx.state.ask(|reply| Command::Edit { edit, reply }).await??))
}

#[utoipa::path(post, path = "/interfaces/{name}/attach", request_body = AttachRequest, security(("bearer" = [])), params(PortPath),
    responses((status = 200, body = ApplySummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn attach(AxState(ctx): AxState<Ctx>, name: Result<Path<String>, PathRejection>, body: Result<Json<AttachRequest>, JsonRejection>) -> ApiResult<ApplySummary> {
    let port = name?.0;
    let b = body?.0;
    let to = match (b.vrf, b.bridge, b.core) {
        (Some(v), None, false) => Attachment::Vrf(v),
        (None, Some(bd), false) => Attachment::Bridge(bd),
        (None, None, true) => Attachment::Core,
        _ => return Err(ApiError::bad_request("give exactly one of \"vrf\", \"bridge\" or \"core\": true")),
    };
    let addresses = b.addresses.as_deref().map(|a| parse_list("address", a)).transpose()?;
    let mac = b.mac.as_deref().map(|m| m.parse().map_err(|_| ApiError::bad_request(format!("{m:?} is not a MAC address")))).transpose()?;
    let edit = Edit::Attach { port, mac, to: Some(to), addresses };
    Ok(Json(ctx.state.ask(|reply| Command::Edit { edit, reply }).await??))
}

#[utoipa::path(post, path = "/interfaces/{name}/detach", security(("bearer" = [])), params(PortPath),
    responses((status = 200, body = ApplySummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn detach(AxState(ctx): AxState<Ctx>, name: Result<Path<String>, PathRejection>) -> ApiResult<ApplySummary> {
    let edit = Edit::Attach { port: name?.0, mac: None, to: None, addresses: None };
    Ok(Json(ctx.state.ask(|reply| Command::Edit { edit, reply }).await??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokem"));
        assert!(!constant_time_eq(b"secret-token", b"secret-token-"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
