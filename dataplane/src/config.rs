//! The declarative configuration file (TOML) for static tables, and its compilation into
//! [`TableCommand`]s — the same commands the table socket and the control process send.
//!
//! The format is documented in `docs/config.md`; every section refuses unknown keys, and every
//! reference (a VRF, port or bridge name, a gateway outside any connected subnet) is checked,
//! with an error naming the section at fault.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use carrier_common::{BridgeDomainId, Label, NextHopId, PortId, Vni, VrfId};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::tables::{
    IlmAction, InterfaceAddr, Ipv4Prefix, LabelStack, MacDest, NextHop, Port, PortRole, RouterSettings, Table, TableCommand,
    Tables, TtlMode, VniTarget,
};
use crate::wire::MacAddr;

/// A configuration that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or a key or value of the wrong shape.
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    /// Well-formed but inconsistent.
    #[error("{section}: {message}")]
    Invalid {
        /// Which section, e.g. `route 10.0.0.0/8 in vrf red`.
        section: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(section: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { section: section.into(), message: message.into() }
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Router-wide settings.
    #[serde(default)]
    pub router: RouterConfig,
    /// VRFs.
    #[serde(default, rename = "vrf")]
    pub vrfs: Vec<VrfConfig>,
    /// Bridge domains.
    #[serde(default, rename = "bridge")]
    pub bridges: Vec<BridgeConfig>,
    /// Ports.
    #[serde(default, rename = "port")]
    pub ports: Vec<PortConfig>,
    /// Static neighbours.
    #[serde(default, rename = "neighbour")]
    pub neighbours: Vec<NeighbourConfig>,
    /// Static routes.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// Incoming labels.
    #[serde(default, rename = "label")]
    pub labels: Vec<LabelConfig>,
    /// L3 VNIs (bridge VNIs are mapped automatically).
    #[serde(default, rename = "vni")]
    pub vnis: Vec<VniConfig>,
    /// `[dataplane]` of a single-file PE config: `run` serves the table socket named there
    /// when no `--socket` is given.
    #[serde(default)]
    pub dataplane: Option<DataplaneSection>,
    /// The control process's sections of a single-file PE config (`docs/config.md`): they are
    /// carrier-control's to read and check, and left alone here.
    #[serde(default)]
    pub bgp: Option<IgnoredAny>,
    /// (carrier-control's) `[[neighbor]]`: BGP neighbours.
    #[serde(default, rename = "neighbor")]
    pub bgp_neighbors: Option<IgnoredAny>,
    /// (carrier-control's) `[labels]`: the label range.
    #[serde(default, rename = "labels")]
    pub label_range: Option<IgnoredAny>,
    /// (carrier-control's) `[[evpn]]`.
    #[serde(default)]
    pub evpn: Option<IgnoredAny>,
    /// (carrier-control's) `[api]`.
    #[serde(default)]
    pub api: Option<IgnoredAny>,
}

/// `[dataplane]` as the dataplane reads it from a single-file PE config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneSection {
    /// The table socket.
    pub socket: Option<std::path::PathBuf>,
    /// carrier-control's pointer to a separate dataplane file (absent in a single file).
    pub config: Option<IgnoredAny>,
}

/// `[router]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Router id, the source of ICMP from the core.
    #[serde(default = "unspecified")]
    pub router_id: Ipv4Addr,
    /// Local VTEP address.
    pub vtep: Option<Ipv4Addr>,
    /// `uniform` (default) or `pipe`.
    #[serde(default)]
    pub ttl_mode: TtlMode,
    /// Outer TTL of VXLAN packets (default 64).
    #[serde(default = "default_vxlan_ttl")]
    pub vxlan_ttl: u8,
    /// Router MAC for routed VXLAN (default: the first core port's MAC).
    pub router_mac: Option<MacAddr>,
    /// Addresses the host's kernel owns on the ports themselves (e.g. the BGP session's, on a
    /// port without a mirror): the XDP program passes BGP (TCP 179) to or from them, and ARP
    /// replies to them, to the kernel.
    #[serde(default)]
    pub host_addresses: Vec<Ipv4Addr>,
    /// The host path: a kernel mirror (`cp-<port>`) per routed port, see `docs/host-path.md`
    /// (default true; `run` only).
    #[serde(default = "yes")]
    pub host_path: bool,
    /// Most frames per second given to the host stack per port (default 20000; 0: no limit).
    #[serde(default = "default_host_rate")]
    pub host_rate: u32,
    /// The XDP express tier (default true): the XDP program forwards VRF, MPLS push and
    /// per-VRF pop itself and leaves the rest to the AF_XDP path (`run` only, on ports where
    /// the program runs in native mode; see `docs/express.md`).
    #[serde(default = "default_express")]
    pub express: bool,
    /// AF_XDP workers, one per receive queue (`run` only): 0 (the default) for as many as
    /// the port with the fewest receive queues has, at most one per CPU.
    #[serde(default)]
    pub workers: usize,
    /// Seconds a learned neighbour lives without an ARP from it (default 1200; 0: forever).
    /// One still in use gets unicast ARP probes in its last seconds, as Linux does.
    #[serde(default = "default_neighbour_timeout")]
    pub neighbour_timeout: u32,
    /// Seconds a learned MAC lives without a frame from it (default 300; 0: forever).
    #[serde(default = "default_mac_timeout")]
    pub mac_timeout: u32,
}

fn default_neighbour_timeout() -> u32 {
    crate::tables::DEFAULT_NEIGHBOUR_TIMEOUT
}

fn default_mac_timeout() -> u32 {
    crate::tables::DEFAULT_MAC_TIMEOUT
}

fn default_express() -> bool {
    true
}

fn yes() -> bool {
    true
}

fn default_host_rate() -> u32 {
    20_000
}

fn unspecified() -> Ipv4Addr {
    Ipv4Addr::UNSPECIFIED
}

fn default_vxlan_ttl() -> u8 {
    64
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig { router_id: unspecified(), vtep: None, ttl_mode: TtlMode::Uniform, vxlan_ttl: default_vxlan_ttl(), router_mac: None, host_addresses: vec![], host_path: true, host_rate: default_host_rate(), express: default_express(), workers: 0, neighbour_timeout: default_neighbour_timeout(), mac_timeout: default_mac_timeout() }
    }
}

/// `[[vrf]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrfConfig {
    /// Name, referred to by ports, routes and labels.
    pub name: String,
    /// ICMP source address when no port address of the VRF fits.
    pub source: Option<Ipv4Addr>,
    /// Count packets and bytes forwarded per prefix (`carrierctl show stats prefixes`).
    #[serde(default)]
    pub prefix_counters: bool,
    /// carrier-control's keys of a VRF in a single-file PE config (RD, RTs, redistribution,
    /// statics): read and checked there.
    pub rd: Option<IgnoredAny>,
    /// (carrier-control's)
    pub import: Option<IgnoredAny>,
    /// (carrier-control's)
    pub export: Option<IgnoredAny>,
    /// (carrier-control's)
    pub redistribute_connected: Option<IgnoredAny>,
    /// (carrier-control's)
    pub redistribute_static: Option<IgnoredAny>,
    /// (carrier-control's)
    #[serde(rename = "static")]
    pub statics: Option<IgnoredAny>,
}

impl VrfConfig {
    /// A VRF with only the dataplane's keys.
    pub fn named(name: &str, source: Option<Ipv4Addr>, prefix_counters: bool) -> VrfConfig {
        VrfConfig { name: name.to_string(), source, prefix_counters, rd: None, import: None, export: None, redistribute_connected: None, redistribute_static: None, statics: None }
    }
}

/// `[[bridge]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Name, referred to by ports.
    pub name: String,
    /// VNI carrying the domain.
    pub vni: Vni,
    /// Remote VTEPs for head-end replication.
    #[serde(default)]
    pub flood: Vec<Ipv4Addr>,
    /// Static MACs.
    #[serde(default)]
    pub macs: Vec<BridgeMacConfig>,
    /// IP→MAC bindings for ARP suppression.
    #[serde(default)]
    pub arp: Vec<ArpBindingConfig>,
}

/// A static MAC in a bridge domain: behind a local port or a remote VTEP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeMacConfig {
    /// The MAC.
    pub mac: MacAddr,
    /// Local port name.
    pub port: Option<String>,
    /// Remote VTEP.
    pub vtep: Option<Ipv4Addr>,
}

/// An ARP suppression binding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArpBindingConfig {
    /// IP.
    pub ip: Ipv4Addr,
    /// MAC.
    pub mac: MacAddr,
}

/// `[[port]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Interface name.
    pub name: String,
    /// The router's MAC on the port.
    pub mac: MacAddr,
    /// Addresses with prefix length, e.g. `10.1.0.1/24`.
    #[serde(default)]
    pub addresses: Vec<InterfaceAddr>,
    /// Customer port in this VRF.
    pub vrf: Option<String>,
    /// Customer port in this bridge domain.
    pub bridge: Option<String>,
    /// Core port.
    #[serde(default)]
    pub core: bool,
    /// Attached to nothing: every frame received is dropped (counted as `port-detached`). What
    /// `carrierctl detach` makes of a port.
    #[serde(default)]
    pub detached: bool,
    /// Proxy ARP (routed mode).
    #[serde(default)]
    pub proxy_arp: bool,
    /// Source address check.
    #[serde(default)]
    pub anti_spoof: bool,
    /// 802.1Q VLAN id.
    pub vlan: Option<u16>,
    /// MTU (default 1500).
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Most frames per second to the host stack from this port (default: `[router] host_rate`;
    /// 0: no limit).
    pub host_rate: Option<u32>,
    /// The XDP express tier on frames received here (default: `[router] express`).
    pub express: Option<bool>,
}

impl PortConfig {
    /// A detached port with defaults: what attaching an interface the config does not list
    /// starts from.
    pub fn new(name: &str, mac: MacAddr) -> PortConfig {
        PortConfig {
            name: name.to_string(),
            mac,
            addresses: vec![],
            vrf: None,
            bridge: None,
            core: false,
            detached: true,
            proxy_arp: false,
            anti_spoof: false,
            vlan: None,
            mtu: default_mtu(),
            host_rate: None,
            express: None,
        }
    }
}

fn default_mtu() -> u16 {
    1500
}

/// `[[neighbour]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourConfig {
    /// Port name.
    pub port: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// MAC.
    pub mac: MacAddr,
}

/// Where a route (or an ECMP member) sends packets: exactly one of the fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Gateway address (adjacency); the port is found from the connected subnets unless given.
    pub via: Option<Ipv4Addr>,
    /// Egress port: with `via`, pins the port; alone, the prefix is connected on that port.
    pub port: Option<String>,
    /// MPLS push toward a remote PE.
    pub mpls: Option<MplsTarget>,
    /// VXLAN toward a remote VTEP.
    pub vxlan: Option<VxlanTarget>,
    /// `blackhole` or `host`.
    pub action: Option<String>,
}

/// `mpls = { labels = [...], pe = "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MplsTarget {
    /// Labels, outermost first (usually the VPN label alone); 3 (implicit null) is not
    /// pushed.
    pub labels: Vec<Label>,
    /// Remote PE, resolved in the underlay.
    pub pe: Ipv4Addr,
    /// Traffic class (default: IP precedence).
    pub tc: Option<u8>,
}

/// `vxlan = { vtep = "...", vni = N, router_mac = "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanTarget {
    /// Remote VTEP.
    pub vtep: Ipv4Addr,
    /// VNI.
    pub vni: Vni,
    /// Inner destination MAC (EVPN router MAC).
    pub router_mac: Option<MacAddr>,
}

/// `[[route]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// VRF name; absent means the underlay.
    pub vrf: Option<String>,
    /// Prefix.
    pub prefix: Ipv4Prefix,
    /// Single target.
    #[serde(flatten)]
    pub target: TargetConfig,
    /// ECMP members instead of a single target.
    pub ecmp: Option<Vec<TargetConfig>>,
}

/// `[[label]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelConfig {
    /// Incoming label.
    pub label: Label,
    /// `lookup` (pop, look up in `vrf`), `forward` (pop, send to `via` in `vrf`) or `swap`.
    pub action: String,
    /// VRF for `lookup` and `forward`.
    pub vrf: Option<String>,
    /// Gateway for `forward`.
    pub via: Option<Ipv4Addr>,
    /// Outgoing label for `swap`.
    pub out: Option<Label>,
    /// Next LSR for `swap`.
    pub pe: Option<Ipv4Addr>,
}

/// `[[vni]]`: an L3 VNI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VniConfig {
    /// VNI.
    pub vni: Vni,
    /// VRF its packets are routed in.
    pub vrf: String,
}

impl Config {
    /// Whether the express tier serves frames received on port `name` (its own setting, else
    /// the router's).
    pub fn express_on(&self, name: &str) -> bool {
        self.ports.iter().find(|p| p.name == name).and_then(|p| p.express).unwrap_or(self.router.express)
    }

    /// Parse TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// Read and parse a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        Config::parse(&text)
    }

    /// Compile into table commands (starting with `Clear`: a full-state replacement).
    pub fn commands(&self) -> Result<Vec<TableCommand>, ConfigError> {
        Compiler::new(self, None).run()
    }

    /// Compile as a change of `running`, the tables compiled from an earlier version of this
    /// config: a VRF keeps the id it has there, a removed VRF leaves its id unused (a VRF
    /// without a name and routes: per-VRF counters never pass to another VRF), and new VRFs
    /// take ids after the last.
    pub fn commands_after(&self, running: &Tables) -> Result<Vec<TableCommand>, ConfigError> {
        let vrfs: Vec<&str> = running.vrfs.iter().map(|v| v.name.as_str()).collect();
        let bridges: Vec<&str> = running.bridges.iter().map(|b| b.name.as_str()).collect();
        Compiler::new(self, Some((vrfs, bridges))).run()
    }

    /// Compile and apply to fresh tables.
    pub fn tables(&self) -> Result<Tables, ConfigError> {
        let mut tables = Tables::default();
        tables.apply_all(self.commands()?).map_err(|(i, e)| invalid(format!("table command {i}"), e.to_string()))?;
        Ok(tables)
    }
}

struct Compiler<'c> {
    config: &'c Config,
    /// The VRF and bridge-domain names of the running tables by id (see
    /// [`Config::commands_after`]).
    running: Option<(Vec<&'c str>, Vec<&'c str>)>,
    cmds: Vec<TableCommand>,
    vrfs: HashMap<&'c str, VrfId>,
    bridges: HashMap<&'c str, BridgeDomainId>,
    ports: HashMap<&'c str, PortId>,
    nexthops: Vec<NextHop>,
}

impl<'c> Compiler<'c> {
    fn new(config: &'c Config, running: Option<(Vec<&'c str>, Vec<&'c str>)>) -> Self {
        Compiler { config, running, cmds: vec![TableCommand::Clear], vrfs: HashMap::new(), bridges: HashMap::new(), ports: HashMap::new(), nexthops: vec![] }
    }

    fn run(mut self) -> Result<Vec<TableCommand>, ConfigError> {
        let c = self.config;
        let r = &c.router;
        self.cmds.push(TableCommand::Router(RouterSettings {
            router_id: r.router_id,
            vtep: r.vtep,
            ttl_mode: r.ttl_mode,
            vxlan_ttl: r.vxlan_ttl,
            router_mac: r.router_mac,
            neighbour_timeout: r.neighbour_timeout,
            mac_timeout: r.mac_timeout,
        }));
        for (i, v) in c.vrfs.iter().enumerate() {
            if v.name.is_empty() {
                return Err(invalid("vrf", "name must not be empty"));
            }
            if self.vrfs.insert(&v.name, VrfId(i as u16)).is_some() {
                return Err(invalid(format!("vrf {}", v.name), "defined twice"));
            }
        }
        let names: Vec<&str> = c.vrfs.iter().map(|v| v.name.as_str()).collect();
        for (i, slot) in id_slots(self.running.as_ref().map(|r| r.0.as_slice()), &names).into_iter().enumerate() {
            let id = VrfId(u16::try_from(i).map_err(|_| invalid("vrf", "more than 65535 VRF ids used since the dataplane started: restart it"))?);
            match slot.map(|k| &c.vrfs[k]) {
                Some(v) => {
                    self.vrfs.insert(&v.name, id);
                    self.cmds.push(TableCommand::Vrf { id, name: v.name.clone(), source: v.source, prefix_counters: v.prefix_counters });
                }
                None => self.cmds.push(TableCommand::Vrf { id, name: String::new(), source: None, prefix_counters: false }),
            }
        }
        for (i, b) in c.bridges.iter().enumerate() {
            if b.name.is_empty() {
                return Err(invalid("bridge", "name must not be empty"));
            }
            if self.bridges.insert(&b.name, BridgeDomainId(i as u16)).is_some() {
                return Err(invalid(format!("bridge {}", b.name), "defined twice"));
            }
        }
        // Bridge domains keep their ids across a recompile as VRFs do: a worker's learned MACs
        // are kept by bridge-domain id.
        let names: Vec<&str> = c.bridges.iter().map(|b| b.name.as_str()).collect();
        for (i, slot) in id_slots(self.running.as_ref().map(|r| r.1.as_slice()), &names).into_iter().enumerate() {
            let id = BridgeDomainId(u16::try_from(i).map_err(|_| invalid("bridge", "more than 65535 bridge ids used since the dataplane started: restart it"))?);
            match slot.map(|k| &c.bridges[k]) {
                Some(b) => {
                    self.bridges.insert(&b.name, id);
                    self.cmds.push(TableCommand::Bridge { id, name: b.name.clone(), vni: b.vni, ports: vec![] });
                }
                None => self.cmds.push(TableCommand::Bridge { id, name: String::new(), vni: Vni::try_from(0).map_err(|e| invalid("bridge", e))?, ports: vec![] }),
            }
        }
        self.ports()?;
        self.bridge_contents()?;
        for n in &c.neighbours {
            let port = self.port(&n.port, || format!("neighbour {}", n.ip))?;
            self.cmds.push(TableCommand::Neighbour { port, ip: n.ip, mac: n.mac });
        }
        self.connected_routes();
        for r in &c.routes {
            self.route(r)?;
        }
        for l in &c.labels {
            self.label(l)?;
        }
        for v in &c.vnis {
            let vrf = self.vrf(&v.vrf, || format!("vni {}", v.vni))?;
            self.cmds.push(TableCommand::VniMap { vni: v.vni, target: VniTarget::Vrf(vrf) });
        }
        Ok(self.cmds)
    }

    fn ports(&mut self) -> Result<(), ConfigError> {
        for (i, p) in self.config.ports.iter().enumerate() {
            let section = || format!("port {}", p.name);
            let id = PortId(i as u16);
            if self.ports.insert(&p.name, id).is_some() {
                return Err(invalid(section(), "defined twice"));
            }
            let role = match (&p.vrf, &p.bridge, p.core, p.detached) {
                (Some(v), None, false, false) => PortRole::Vrf(self.vrf(v, section)?),
                (None, Some(b), false, false) => PortRole::Bridge(
                    *self.bridges.get(b.as_str()).ok_or_else(|| invalid(section(), format!("unknown bridge {b:?}")))?,
                ),
                (None, None, true, false) => PortRole::Core,
                (None, None, false, true) => PortRole::Detached,
                _ => return Err(invalid(section(), "give exactly one of vrf = \"..\", bridge = \"..\", core = true or detached = true")),
            };
            if p.vlan.is_some_and(|v| v == 0 || v > 4094) {
                return Err(invalid(section(), "vlan must be 1..=4094"));
            }
            if p.mtu < 68 {
                return Err(invalid(section(), "mtu must be at least 68"));
            }
            if !p.mac.is_unicast() {
                return Err(invalid(section(), "mac must be a unicast address"));
            }
            self.cmds.push(TableCommand::Port(Port {
                id,
                name: p.name.clone(),
                mac: p.mac,
                addrs: p.addresses.clone(),
                role,
                proxy_arp: p.proxy_arp,
                anti_spoof: p.anti_spoof,
                vlan: p.vlan,
                mtu: p.mtu,
                host: false,
                host_rate: p.host_rate.unwrap_or(self.config.router.host_rate),
            }));
        }
        Ok(())
    }

    fn bridge_contents(&mut self) -> Result<(), ConfigError> {
        for b in &self.config.bridges {
            let id = self.bridges[b.name.as_str()];
            let ports: Vec<PortId> = self
                .config
                .ports
                .iter()
                .enumerate()
                .filter(|(_, p)| p.bridge.as_deref() == Some(b.name.as_str()))
                .map(|(i, _)| PortId(i as u16))
                .collect();
            self.cmds.push(TableCommand::Bridge { id, name: b.name.clone(), vni: b.vni, ports });
            self.cmds.push(TableCommand::FloodList { bridge: id, vteps: b.flood.clone() });
            for m in &b.macs {
                let section = || format!("bridge {} mac {}", b.name, m.mac);
                let dest = match (&m.port, m.vtep) {
                    (Some(p), None) => MacDest::Port(self.port(p, section)?),
                    (None, Some(v)) => MacDest::Vtep(v),
                    _ => return Err(invalid(section(), "give exactly one of port or vtep")),
                };
                self.cmds.push(TableCommand::BridgeMac { bridge: id, mac: m.mac, dest });
            }
            for a in &b.arp {
                self.cmds.push(TableCommand::ArpBinding { bridge: id, ip: a.ip, mac: a.mac });
            }
            self.cmds.push(TableCommand::VniMap { vni: b.vni, target: VniTarget::Bridge(id) });
        }
        Ok(())
    }

    /// Each routed port's addresses: a receive route for the address and a connected route
    /// for its subnet, in the port's VRF or (core ports) the underlay.
    fn connected_routes(&mut self) {
        for (i, p) in self.config.ports.iter().enumerate() {
            let table = match (&p.vrf, p.core) {
                (Some(v), _) => Table::Vrf(self.vrfs[v.as_str()]),
                (None, true) => Table::Underlay,
                _ => continue,
            };
            for a in &p.addresses {
                let port = PortId(i as u16);
                let connected = self.nexthop(NextHop::Adjacency { port, via: None });
                self.cmds.push(TableCommand::Route { table, prefix: a.prefix, nexthop: connected });
                let receive = self.nexthop(NextHop::Receive);
                self.cmds.push(TableCommand::Route { table, prefix: Ipv4Prefix::host(a.addr), nexthop: receive });
            }
        }
    }

    fn route(&mut self, r: &RouteConfig) -> Result<(), ConfigError> {
        let (table, tname) = match &r.vrf {
            Some(v) => (Table::Vrf(self.vrf(v, || format!("route {}", r.prefix))?), format!("vrf {v}")),
            None => (Table::Underlay, "underlay".to_string()),
        };
        let section = format!("route {} in {}", r.prefix, tname);
        let nexthop = match &r.ecmp {
            Some(members) => {
                if !target_is_empty(&r.target) {
                    return Err(invalid(section, "ecmp replaces via/port/mpls/vxlan/action: give one or the other"));
                }
                if members.is_empty() {
                    return Err(invalid(section, "ecmp needs at least one member"));
                }
                let mut ids = vec![];
                for m in members {
                    let nh = self.target(m, table, &section)?;
                    ids.push(self.nexthop(nh));
                }
                self.nexthop(NextHop::Ecmp { members: ids })
            }
            None => {
                let nh = self.target(&r.target, table, &section)?;
                self.nexthop(nh)
            }
        };
        self.cmds.push(TableCommand::Route { table, prefix: r.prefix, nexthop });
        Ok(())
    }

    fn target(&self, t: &TargetConfig, table: Table, section: &str) -> Result<NextHop, ConfigError> {
        let given = [t.via.is_some() || t.port.is_some(), t.mpls.is_some(), t.vxlan.is_some(), t.action.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(invalid(section, "give exactly one of via/port, mpls, vxlan or action"));
        }
        if let Some(m) = &t.mpls {
            if m.tc.is_some_and(|tc| tc > 7) {
                return Err(invalid(section, "mpls tc must be 0..=7"));
            }
            // Implicit null (3) stands for "no label here" (RFC 3032 §2.1), as in BGP: it is
            // never put on the wire, so `labels = [3]` sends the packet unlabelled to the PE.
            if m.labels.is_empty() {
                return Err(invalid(section, "mpls needs 1 to 3 labels (3, implicit null, for none)"));
            }
            let pushed: Vec<Label> = m.labels.iter().copied().filter(|l| *l != Label::IMPLICIT_NULL).collect();
            let labels = LabelStack::new(&pushed).ok_or_else(|| invalid(section, "mpls needs 1 to 3 labels"))?;
            return Ok(NextHop::MplsPush { labels, tc: m.tc, pe: m.pe });
        }
        if let Some(v) = &t.vxlan {
            return Ok(NextHop::Vxlan { vtep: v.vtep, vni: v.vni, router_mac: v.router_mac });
        }
        if let Some(a) = &t.action {
            return match a.as_str() {
                "blackhole" => Ok(NextHop::Blackhole),
                "host" => Ok(NextHop::ToHost),
                _ => Err(invalid(section, format!("unknown action {a:?} (blackhole or host)"))),
            };
        }
        let port = match &t.port {
            Some(p) => self.port(p, || section.to_string())?,
            None => {
                let via = t.via.unwrap_or(Ipv4Addr::UNSPECIFIED);
                self.connected_port(table, via)
                    .ok_or_else(|| invalid(section, format!("gateway {via} is in no connected subnet of this table")))?
            }
        };
        let role_ok = match (table, self.config.ports[port.index()].vrf.as_deref(), self.config.ports[port.index()].core) {
            (Table::Vrf(v), Some(name), _) => self.vrfs.get(name) == Some(&v),
            (Table::Underlay, None, true) => true,
            _ => false,
        };
        if !role_ok {
            return Err(invalid(section, "the port is not in this route's table"));
        }
        Ok(NextHop::Adjacency { port, via: t.via })
    }

    fn connected_port(&self, table: Table, addr: Ipv4Addr) -> Option<PortId> {
        self.config.ports.iter().enumerate().find_map(|(i, p)| {
            let in_table = match table {
                Table::Vrf(v) => p.vrf.as_deref().and_then(|n| self.vrfs.get(n)) == Some(&v),
                Table::Underlay => p.core,
            };
            (in_table && p.addresses.iter().any(|a| a.prefix.contains(addr))).then_some(PortId(i as u16))
        })
    }

    fn label(&mut self, l: &LabelConfig) -> Result<(), ConfigError> {
        let section = format!("label {}", l.label);
        if l.label.is_reserved() {
            return Err(invalid(section, "labels 0..=15 are reserved"));
        }
        let action = match l.action.as_str() {
            "lookup" => {
                let vrf = l.vrf.as_deref().ok_or_else(|| invalid(&section, "lookup needs vrf"))?;
                IlmAction::PopLookup { vrf: self.vrf(vrf, || section.clone())? }
            }
            "forward" => {
                let vrf_name = l.vrf.as_deref().ok_or_else(|| invalid(&section, "forward needs vrf"))?;
                let vrf = self.vrf(vrf_name, || section.clone())?;
                let via = l.via.ok_or_else(|| invalid(&section, "forward needs via"))?;
                let port = self
                    .connected_port(Table::Vrf(vrf), via)
                    .ok_or_else(|| invalid(&section, format!("{via} is in no connected subnet of vrf {vrf_name}")))?;
                let nexthop = self.nexthop(NextHop::Adjacency { port, via: Some(via) });
                IlmAction::PopForward { vrf, nexthop }
            }
            "swap" => IlmAction::Swap {
                out: l.out.ok_or_else(|| invalid(&section, "swap needs out"))?,
                pe: l.pe.ok_or_else(|| invalid(&section, "swap needs pe"))?,
            },
            other => return Err(invalid(section, format!("unknown action {other:?} (lookup, forward or swap)"))),
        };
        self.cmds.push(TableCommand::Label { label: l.label, action });
        Ok(())
    }

    /// The id of an identical next hop already emitted, or a new one.
    fn nexthop(&mut self, nh: NextHop) -> NextHopId {
        if let Some(i) = self.nexthops.iter().position(|n| *n == nh) {
            return NextHopId(i as u32);
        }
        let id = NextHopId(self.nexthops.len() as u32);
        self.nexthops.push(nh.clone());
        self.cmds.push(TableCommand::NextHop { id, nexthop: nh });
        id
    }

    fn vrf(&self, name: &str, section: impl FnOnce() -> String) -> Result<VrfId, ConfigError> {
        self.vrfs.get(name).copied().ok_or_else(|| invalid(section(), format!("unknown vrf {name:?}")))
    }

    fn port(&self, name: &str, section: impl FnOnce() -> String) -> Result<PortId, ConfigError> {
        self.ports.get(name).copied().ok_or_else(|| invalid(section(), format!("unknown port {name:?}")))
    }
}

/// Which of the configured `names` (VRFs, bridge domains) each id holds (`None`: an unused
/// id): the running ones keep their ids (an unnamed running one is an unused id), new ones
/// follow in config order.
fn id_slots(running: Option<&[&str]>, names: &[&str]) -> Vec<Option<usize>> {
    let Some(running) = running else { return (0..names.len()).map(Some).collect() };
    let mut slots: Vec<Option<usize>> = running.iter().map(|r| names.iter().position(|n| !r.is_empty() && n == r)).collect();
    for k in 0..names.len() {
        if !slots.contains(&Some(k)) {
            slots.push(Some(k));
        }
    }
    slots
}

fn target_is_empty(t: &TargetConfig) -> bool {
    t.via.is_none() && t.port.is_none() && t.mpls.is_none() && t.vxlan.is_none() && t.action.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::Lpm;

    /// Recompiled after a change, a VRF keeps its id, a removed one leaves its id unused, a
    /// new one takes the next; a port without a VRF is detached; a port given two roles, or
    /// a nameless VRF, is refused.
    #[test]
    fn recompiled_vrfs_keep_their_ids_and_ports_detach() {
        let running = Config::parse(PE).unwrap().tables().unwrap();
        // red renamed green (to the RIB: red removed, green added), ce-red detached.
        let changed = PE.replace("\"red\"", "\"green\"").replace("vrf = \"green\"\n        proxy_arp = true", "detached = true");
        let mut t = Tables::default();
        t.apply_all(Config::parse(&changed).unwrap().commands_after(&running).unwrap()).unwrap();
        let names: Vec<&str> = t.vrfs.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["", "blue", "green"], "red's id unused, blue kept its id, green after");
        assert_eq!(running.vrf_by_name("blue").unwrap().id, t.vrf_by_name("blue").unwrap().id);
        let ce_red = t.port_by_name("ce-red").unwrap();
        assert_eq!(ce_red.role, PortRole::Detached);
        let green = &t.vrfs[2].fib;
        assert!(green.lookup("10.2.0.1".parse().unwrap()).is_some() && green.lookup("10.1.0.1".parse().unwrap()).is_none(), "a detached port has no connected routes");
        assert!(t.vrfs[0].fib.is_empty());
        // A recompile of the same config changes nothing.
        let mut again = Tables::default();
        again.apply_all(Config::parse(&changed).unwrap().commands_after(&t).unwrap()).unwrap();
        assert_eq!(again.vrfs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), names);
        let two = PE.replace("vrf = \"blue\"\n", "vrf = \"blue\"\n        detached = true\n");
        let e = Config::parse(&two).unwrap().commands().unwrap_err().to_string();
        assert!(e.contains("port ce-blue") && e.contains("detached = true"), "{e}");
        let e = Config::parse(&PE.replacen("name = \"red\"", "name = \"\"", 1)).unwrap().commands().unwrap_err().to_string();
        assert!(e.contains("name must not be empty"), "{e}");
    }

    const PE: &str = r#"
        [router]
        router_id = "10.255.0.1"
        vtep = "10.255.0.1"

        [[vrf]]
        name = "red"
        [[vrf]]
        name = "blue"

        [[port]]
        name = "ce-red"
        mac = "02:00:00:00:01:01"
        addresses = ["10.1.0.1/24"]
        vrf = "red"
        proxy_arp = true

        [[port]]
        name = "ce-blue"
        mac = "02:00:00:00:01:02"
        addresses = ["10.1.0.1/24"]
        vrf = "blue"

        [[port]]
        name = "core"
        mac = "02:00:00:00:00:01"
        addresses = ["192.0.2.1/30"]
        core = true

        [[route]]
        prefix = "10.255.0.2/32"
        via = "192.0.2.2"

        [[route]]
        vrf = "red"
        prefix = "10.2.0.0/24"
        mpls = { labels = [1000], pe = "10.255.0.2" }

        [[label]]
        label = 2000
        action = "lookup"
        vrf = "red"
    "#;

    #[test]
    fn compiles_a_pe() {
        let t = Config::parse(PE).unwrap().tables().unwrap();
        assert_eq!(t.ports.len(), 3);
        let red = &t.vrfs[0].fib;
        let blue = &t.vrfs[1].fib;
        let (_, nh) = red.lookup("10.2.0.9".parse().unwrap()).unwrap();
        assert!(matches!(t.nexthop(nh), Some(NextHop::MplsPush { .. })));
        assert!(blue.lookup("10.2.0.9".parse().unwrap()).is_none(), "blue must not see red's route");
        let (_, nh) = red.lookup("10.1.0.1".parse().unwrap()).unwrap();
        assert_eq!(t.nexthop(nh), Some(&NextHop::Receive));
        assert!(t.underlay.lookup("10.255.0.2".parse().unwrap()).is_some());
        assert!(t.ilm.contains_key(&Label::new(2000).unwrap()));
    }

    fn err(text: &str) -> String {
        match Config::parse(text).and_then(|c| c.commands()) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_the_section() {
        assert!(err("[[port]]\nname = \"a\"\nmac = \"02:00:00:00:00:01\"\nvrf = \"nope\"").contains("unknown vrf \"nope\""));
        assert!(err("[[port]]\nname = \"a\"\nmac = \"02:00:00:00:00:01\"").contains("exactly one of vrf"));
        assert!(err("[[route]]\nprefix = \"10.0.0.0/8\"\nvia = \"1.2.3.4\"").contains("no connected subnet"));
        assert!(err("[[route]]\nprefix = \"10.0.0.0/33\"\naction = \"blackhole\"").contains("prefix"));
        assert!(err("[[label]]\nlabel = 3\naction = \"lookup\"").contains("reserved"));
        assert!(err("[[label]]\nlabel = 1048576\naction = \"lookup\"").contains("out of range"));
        assert!(err("[routr]\n").contains("unknown field"));
        assert!(err("[[route]]\nprefix = \"10.0.0.0/8\"\naction = \"blackhole\"\nmpls = { labels = [16], pe = \"1.1.1.1\" }")
            .contains("exactly one"));
    }
}
