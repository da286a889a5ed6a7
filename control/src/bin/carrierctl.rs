//! `carrierctl`: the operator's CLI over carrier-control's API, in the manner of vtysh,
//! birdc and the gobgp CLI: aligned tables by default, `--json` for scripts.
//!
//! Exit codes: 0 done; 2 usage; 3 the API cannot be reached; 4 the request was refused as
//! bad input or naming nothing (4xx); 5 not allowed (401/403); 6 the router answered with an
//! error of its own (5xx) or reports itself degraded (`show health`).

use std::process::ExitCode;

use carrier_control::api::{DropStats, ErrorBody, Health, LabelStats, NeighbourView, PortStats, PrefixStats, VrfStats};
use carrier_control::state::{DataplaneStatus, EvpnView, InterfaceView, LabelView, PeerStatus, RouteView, VrfInfo};
use clap::{Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;

#[derive(Parser, Debug)]
#[command(name = "carrierctl", version, about = "Operate a carrier PE through its control-plane API")]
struct Cli {
    /// The API's base URL.
    #[arg(long, env = "CARRIER_API", default_value = "http://127.0.0.1:9179")]
    api: String,
    /// Bearer token for writes (api.token of the control config).
    #[arg(long, env = "CARRIER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show state.
    Show {
        #[command(subcommand)]
        what: Show,
    },
    /// Apply a control config file: only what differs from the running one changes.
    Apply {
        /// The control config (TOML).
        file: std::path::PathBuf,
    },
    /// Static VRF routes.
    Route {
        #[command(subcommand)]
        op: RouteOp,
    },
    /// Create or delete a VRF (live; the running config, not the file).
    Vrf {
        #[command(subcommand)]
        op: VrfOp,
    },
    /// Attach a port to a VRF, a bridge domain or the core (live; the running config).
    Attach {
        /// The port's interface name.
        port: String,
        /// Into this VRF.
        #[arg(long, group = "to")]
        vrf: Option<String>,
        /// Into this bridge domain.
        #[arg(long, group = "to")]
        bridge: Option<String>,
        /// As a core port.
        #[arg(long, group = "to")]
        core: bool,
        /// The port's addresses (repeat; a.b.c.d/len); without: kept.
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// For an interface the dataplane does not have yet: the router's MAC on it (default:
        /// the interface's own).
        #[arg(long)]
        mac: Option<String>,
    },
    /// Detach a port: it drops what it receives until attached again.
    Detach {
        /// The port's interface name.
        port: String,
    },
    /// Act on a BGP neighbour.
    Neighbor {
        /// Its address.
        address: String,
        /// What to do.
        action: NeighborCmd,
    },
}

#[derive(Subcommand, Debug)]
enum Show {
    /// BGP neighbours (like `gobgp neighbor`).
    Peers,
    /// Dataplane interfaces.
    Interfaces,
    /// Neighbours (ARP): configured and learned.
    #[command(alias = "neighbors")]
    Neighbours,
    /// VRFs, or one VRF.
    Vrf {
        /// VRF name.
        name: Option<String>,
    },
    /// Routes with their paths and the decision.
    Rib {
        /// Only this VRF (or `underlay`).
        #[arg(long)]
        vrf: Option<String>,
    },
    /// Local labels (like FRR's `show mpls table`) with their traffic.
    Mpls,
    /// EVPN instances: flood lists and remote MACs.
    Evpn,
    /// Counters.
    Stats {
        /// Which.
        what: StatsKind,
        /// The VRF of `prefixes`.
        #[arg(long)]
        vrf: Option<String>,
    },
    /// Health: dataplane connection and sessions.
    Health,
    /// The dataplane's table status.
    Dataplane,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum StatsKind {
    Ports,
    Labels,
    Vrfs,
    Drops,
    /// Per route of a VRF with per-prefix counters (`--vrf`).
    Prefixes,
}

#[derive(Subcommand, Debug)]
enum RouteOp {
    /// Add (or replace) a static route.
    Add {
        /// VRF.
        vrf: String,
        /// Prefix, e.g. 10.9.0.0/24.
        prefix: String,
        /// CE next hop.
        via: String,
    },
    /// Remove a static route.
    Del {
        /// VRF.
        vrf: String,
        /// Prefix.
        prefix: String,
    },
}

#[derive(Subcommand, Debug)]
enum VrfOp {
    /// Create a VRF.
    Add {
        /// Name.
        name: String,
        /// Route distinguisher (ASN:n or IP:n); without: a local VRF.
        #[arg(long)]
        rd: Option<String>,
        /// Route target to import (repeat).
        #[arg(long)]
        import: Vec<String>,
        /// Route target to export (repeat).
        #[arg(long)]
        export: Vec<String>,
        /// ICMP source address.
        #[arg(long)]
        source: Option<String>,
        /// Count packets and bytes per prefix (`show stats prefixes --vrf NAME`).
        #[arg(long)]
        prefix_counters: bool,
    },
    /// Delete a VRF no port is attached to.
    Del {
        /// Name.
        name: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum NeighborCmd {
    /// Start the session after `down`.
    Up,
    /// Stop it (Cease/Administrative Shutdown).
    Down,
    /// Ask the peer for its routes again (ROUTE-REFRESH).
    SoftResetIn,
    /// Send the peer our routes again.
    SoftResetOut,
    /// Zero its message counters.
    ClearCounters,
}

/// A failure, with the exit code it maps to.
struct Failure(u8, String);

struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Api {
    /// The status code and body of a request; only an unreachable API is an error here.
    fn call_status(&self, method: &str, path: &str, body: Option<(&str, String)>) -> Result<(u16, String), Failure> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.agent.request(method, &url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let r = match body {
            Some((ctype, text)) => req.set("Content-Type", ctype).send_string(&text),
            None => req.call(),
        };
        let resp = match r {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => return Err(Failure(3, format!("cannot reach the API at {}: {e}", self.base))),
        };
        let code = resp.status();
        let text = resp.into_string().map_err(|e| Failure(3, format!("reading the answer: {e}")))?;
        Ok((code, text))
    }

    /// The body of a successful request; an error answer becomes a [`Failure`].
    fn call(&self, method: &str, path: &str, body: Option<(&str, String)>) -> Result<String, Failure> {
        let (code, text) = self.call_status(method, path, body)?;
        if (200..300).contains(&code) {
            return Ok(text);
        }
        let msg = serde_json::from_str::<ErrorBody>(&text).map_or(text, |e| format!("{} ({})", e.message, e.code));
        let exit = match code {
            401 | 403 => 5,
            400..=499 => 4,
            _ => 6,
        };
        Err(Failure(exit, format!("{method} {path}: {code}: {msg}")))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<(T, String), Failure> {
        let text = self.call("GET", path, None)?;
        let v = serde_json::from_str(&text).map_err(|e| Failure(6, format!("GET {path}: unexpected answer: {e}")))?;
        Ok((v, text))
    }
}

/// Left-aligned columns, two spaces apart, with a header line.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        s.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(ToString::to_string).collect());
    for r in rows {
        out += &line(r);
    }
    out
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), ToString::to_string)
}

/// `1d02h03m` style, as BGP daemons print session times.
fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

fn show(api: &Api, what: Show, json: bool) -> Result<String, Failure> {
    macro_rules! fetch {
        ($t:ty, $path:expr) => {{
            let (v, text): ($t, String) = api.get(&$path)?;
            if json {
                return Ok(text + "\n");
            }
            v
        }};
    }
    Ok(match what {
        Show::Peers => {
            let peers = fetch!(Vec<PeerStatus>, "/peers");
            let rows = peers
                .iter()
                .map(|p| {
                    let sum = |f: fn(&carrier_control::state::PrefixCounts) -> u64| p.prefixes.iter().map(f).sum::<u64>().to_string();
                    let state = if p.admin_down { "Idle (Admin)".to_string() } else { p.state.clone() };
                    vec![
                        p.address.clone(),
                        p.remote_as.to_string(),
                        p.uptime_seconds.map_or_else(|| "never".into(), duration),
                        state,
                        sum(|c| c.received),
                        sum(|c| c.accepted),
                        sum(|c| c.advertised),
                        p.flaps.to_string(),
                        opt(&p.last_error),
                    ]
                })
                .collect();
            table(&["Peer", "AS", "Up/Down", "State", "#Received", "Accepted", "Advertised", "Flaps", "Last error"], rows)
        }
        Show::Interfaces => {
            let list = fetch!(Vec<InterfaceView>, "/interfaces");
            let rows = list
                .iter()
                .map(|i| {
                    vec![
                        i.name.clone(),
                        i.role.clone(),
                        i.link.clone(),
                        if i.xdp.is_empty() { "-".into() } else { i.xdp.clone() },
                        opt(&i.instance),
                        i.addresses.join(","),
                        i.mac.clone(),
                        opt(&i.vlan),
                        i.mtu.to_string(),
                        i.rx_packets.to_string(),
                        i.tx_packets.to_string(),
                        i.drops.to_string(),
                    ]
                })
                .collect();
            table(&["Interface", "Role", "Link", "XDP", "Instance", "Addresses", "MAC", "VLAN", "MTU", "RX", "TX", "Drops"], rows)
        }
        Show::Neighbours => {
            let list = fetch!(Vec<NeighbourView>, "/neighbours");
            let rows = list.iter().map(|n| vec![n.port.clone(), n.ip.clone(), n.mac.clone(), n.source.clone()]).collect();
            table(&["Port", "Address", "MAC", "Source"], rows)
        }
        Show::Vrf { name: None } => {
            let vrfs = fetch!(Vec<VrfInfo>, "/vrfs");
            let rows = vrfs
                .iter()
                .map(|v| vec![v.name.clone(), v.rd.clone(), v.import.join(","), v.export.join(","), v.label_mode.clone(), v.bgp_routes.to_string()])
                .collect();
            table(&["VRF", "RD", "Import", "Export", "Labels", "BGP routes"], rows)
        }
        Show::Vrf { name: Some(n) } => {
            let v = fetch!(VrfInfo, format!("/vrfs/{n}"));
            let mut out = format!(
                "VRF {}\n  RD {}\n  import {}\n  export {}\n  label mode {}\n  redistribute connected {}, static {}\n  BGP routes {}\n",
                v.name,
                v.rd,
                v.import.join(" "),
                v.export.join(" "),
                v.label_mode,
                v.redistribute_connected,
                v.redistribute_static,
                v.bgp_routes
            );
            for s in &v.statics {
                out += &format!("  static {} via {}\n", s.prefix, s.via);
            }
            out
        }
        Show::Rib { vrf } => {
            let path = match &vrf {
                Some(v) => format!("/rib?vrf={v}"),
                None => "/rib".into(),
            };
            let routes = fetch!(Vec<RouteView>, path);
            let mut rows = vec![];
            for r in &routes {
                for (i, p) in r.paths.iter().enumerate() {
                    let first = i == 0;
                    rows.push(vec![
                        if first { r.vrf.clone() } else { String::new() },
                        if p.best { "*>".into() } else { "  ".into() },
                        if first { r.prefix.clone() } else { String::new() },
                        r.protocol.clone(),
                        opt(&p.next_hop),
                        opt(&p.label),
                        p.local_pref.to_string(),
                        p.as_path.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
                        p.source.clone(),
                        opt(&p.reason),
                    ]);
                }
            }
            table(&["VRF", "", "Prefix", "Proto", "Next hop", "Label", "LocPrf", "AS path", "From", "Why"], rows)
        }
        Show::Mpls => {
            let labels = fetch!(Vec<LabelView>, "/mpls");
            let rows = labels
                .iter()
                .map(|l| {
                    let nh = match (&l.next_hop, &l.prefix) {
                        (Some(nh), _) => format!("{nh} ({})", l.vrf),
                        (None, Some(p)) => format!("{p} ({})", l.vrf),
                        (None, None) => format!("{} (lookup)", l.vrf),
                    };
                    let out = l.out_label.map_or_else(|| "pop".to_string(), |o| o.to_string());
                    vec![l.label.to_string(), l.kind.clone(), nh, out, l.packets_in.to_string(), l.bytes_in.to_string()]
                })
                .collect();
            table(&["Inbound Label", "Type", "Nexthop", "Outbound Label", "Packets", "Bytes"], rows)
        }
        Show::Evpn => {
            let list = fetch!(Vec<EvpnView>, "/evpn");
            let mut out = String::new();
            for e in &list {
                out += &format!("EVPN {} VNI {} RD {} import {} export {}\n", e.bridge, e.vni, e.rd, e.import.join(","), e.export.join(","));
                out += &format!("  flood list: {}\n", if e.flood.is_empty() { "-".into() } else { e.flood.join(" ") });
                let rows = e.macs.iter().map(|m| vec![format!("  {}", m.mac), opt(&m.ip), m.vtep.clone()]).collect();
                out += &table(&["  MAC", "IP", "VTEP"], rows);
            }
            out
        }
        Show::Stats { what: StatsKind::Ports, .. } => {
            let list = fetch!(Vec<PortStats>, "/stats/ports");
            let rows = list
                .iter()
                .map(|p| {
                    vec![
                        p.port.clone(),
                        p.rx_packets.to_string(),
                        p.rx_bytes.to_string(),
                        p.tx_packets.to_string(),
                        p.tx_bytes.to_string(),
                        p.to_host.to_string(),
                        p.from_host.to_string(),
                        p.drops.values().sum::<u64>().to_string(),
                    ]
                })
                .collect();
            table(&["Port", "RX packets", "RX bytes", "TX packets", "TX bytes", "To host", "From host", "Drops"], rows)
        }
        Show::Stats { what: StatsKind::Labels, .. } => {
            let list = fetch!(Vec<LabelStats>, "/stats/labels");
            let rows = list.iter().map(|l| vec![l.label.to_string(), l.direction.clone(), l.packets_forwarded.to_string(), l.octets_forwarded.to_string()]).collect();
            table(&["Label", "Dir", "Packets", "Bytes"], rows)
        }
        Show::Stats { what: StatsKind::Vrfs, .. } => {
            let list = fetch!(Vec<VrfStats>, "/stats/vrfs");
            let rows = list.iter().map(|v| vec![v.vrf.clone(), v.lookups_packets.to_string(), v.lookups_bytes.to_string(), v.drops.to_string()]).collect();
            table(&["VRF", "Lookups", "Bytes", "Drops"], rows)
        }
        Show::Stats { what: StatsKind::Prefixes, vrf } => {
            let Some(vrf) = vrf else { return Err(Failure(4, "show stats prefixes needs --vrf NAME".into())) };
            let list = fetch!(Vec<PrefixStats>, format!("/stats/prefixes?vrf={vrf}"));
            let rows = list.iter().map(|p| vec![p.vrf.clone(), p.prefix.clone(), p.packets_forwarded.to_string(), p.octets_forwarded.to_string()]).collect();
            table(&["VRF", "Prefix", "Packets", "Bytes"], rows)
        }
        Show::Stats { what: StatsKind::Drops, .. } => {
            let list = fetch!(Vec<DropStats>, "/stats/drops");
            let rows = list.iter().map(|d| vec![d.port.clone(), d.reason.clone(), d.packets.to_string()]).collect();
            table(&["Port", "Reason", "Packets"], rows)
        }
        Show::Health => {
            let (code, text) = api.call_status("GET", "/health", None)?;
            let h: Health = serde_json::from_str(&text).map_err(|e| Failure(6, format!("unexpected answer: {e}")))?;
            let out = if json {
                text + "\n"
            } else {
                format!(
                "status {}\ndataplane {}\nsessions {}/{} established\nuptime {}\nlast error {}\n",
                h.status,
                if h.dataplane_connected { "connected" } else { "not connected" },
                h.sessions_established,
                h.sessions_configured,
                duration(h.uptime_seconds),
                opt(&h.last_error)
            )
            };
            if code != 200 {
                return Err(Failure(6, format!("GET /health: {code}: {out}")));
            }
            if h.status != "ok" {
                print!("{out}");
                return Err(Failure(6, "degraded".into()));
            }
            out
        }
        Show::Dataplane => {
            let d = fetch!(DataplaneStatus, "/dataplane");
            format!(
                "socket {}\nconnected {}\ngeneration {}\nports {}  vrfs {}  routes {}  labels {}\nworkers {} (frames received by queue: {})\nlast error {}\n",
                d.socket,
                d.connected,
                d.generation,
                d.ports,
                d.vrfs,
                d.routes,
                d.labels,
                d.workers.len(),
                d.workers.iter().map(u64::to_string).collect::<Vec<_>>().join(" "),
                opt(&d.last_error)
            )
        }
    })
}

/// An [`carrier_control::state::ApplySummary`] answer: what changed, a line each.
fn summary(answer: &str, json: bool) -> Result<String, Failure> {
    if json {
        return Ok(format!("{answer}\n"));
    }
    let s: carrier_control::state::ApplySummary = serde_json::from_str(answer).map_err(|e| Failure(6, format!("unexpected answer: {e}")))?;
    Ok(if s.unchanged { "no change\n".into() } else { s.changes.iter().map(|c| format!("{c}\n")).collect() })
}

fn run(cli: Cli) -> Result<String, Failure> {
    let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(30)).build();
    let api = Api { base: cli.api, token: cli.token, agent };
    match cli.command {
        Cmd::Show { what } => show(&api, what, cli.json),
        Cmd::Apply { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| Failure(4, format!("{}: {e}", file.display())))?;
            summary(&api.call("PUT", "/config", Some(("text/plain", text)))?, cli.json)
        }
        Cmd::Route { op: RouteOp::Add { vrf, prefix, via } } => {
            let body = serde_json::json!({"prefix": prefix, "via": via}).to_string();
            api.call("POST", &format!("/vrfs/{vrf}/routes"), Some(("application/json", body)))?;
            Ok(format!("static route {prefix} via {via} added to VRF {vrf}\n"))
        }
        Cmd::Route { op: RouteOp::Del { vrf, prefix } } => {
            let Some((addr, len)) = prefix.split_once('/') else { return Err(Failure(4, format!("{prefix:?} is not a prefix (a.b.c.d/len)"))) };
            api.call("DELETE", &format!("/vrfs/{vrf}/routes/{addr}/{len}"), None)?;
            Ok(format!("static route {prefix} removed from VRF {vrf}\n"))
        }
        Cmd::Vrf { op: VrfOp::Add { name, rd, import, export, source, prefix_counters } } => {
            let body = serde_json::json!({"name": name, "rd": rd, "import": import, "export": export, "source": source, "prefix_counters": prefix_counters}).to_string();
            summary(&api.call("POST", "/vrfs", Some(("application/json", body)))?, cli.json)
        }
        Cmd::Vrf { op: VrfOp::Del { name } } => summary(&api.call("DELETE", &format!("/vrfs/{name}"), None)?, cli.json),
        Cmd::Attach { port, vrf, bridge, core, addresses, mac } => {
            let mut body = serde_json::json!({"vrf": vrf, "bridge": bridge, "core": core, "mac": mac});
            if !addresses.is_empty() {
                body["addresses"] = serde_json::json!(addresses);
            }
            if vrf.is_none() && bridge.is_none() && !core {
                return Err(Failure(4, "give one of --vrf, --bridge or --core".into()));
            }
            summary(&api.call("POST", &format!("/interfaces/{port}/attach"), Some(("application/json", body.to_string())))?, cli.json)
        }
        Cmd::Detach { port } => summary(&api.call("POST", &format!("/interfaces/{port}/detach"), None)?, cli.json),
        Cmd::Neighbor { address, action } => {
            let name = action.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
            let body = serde_json::json!({ "action": name }).to_string();
            api.call("POST", &format!("/neighbors/{address}"), Some(("application/json", body)))?;
            Ok(format!("neighbor {address}: {name}\n"))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(Failure(code, msg)) => {
            eprintln!("carrierctl: {msg}");
            ExitCode::from(code)
        }
    }
}
