//! The control process's configuration (TOML): the BGP speaker, its neighbours, label
//! allocation, the VRFs' RD/RT and redistribution, and EVPN instances. It names the
//! dataplane config too, whose ports, VRFs and bridges the control process programs.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use carrier_dataplane::tables::Ipv4Prefix;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::bgp::msg::{Family, RouteDistinguisher, RouteTarget};

mod check;

/// A configuration that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    /// Bad TOML or a value of the wrong shape.
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    /// Well-formed but inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// Well-formed but inconsistent, at a place in the file.
    #[error("line {line}, column {column}: {field}: {message}")]
    At {
        /// 1-based line (0: not found in the text).
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field's path, e.g. `vrf[1].rd`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole file: the control process's own (with `[dataplane] config` naming the
/// dataplane's file), or a single-file PE config that holds the dataplane's sections too
/// (`[dataplane] config` left out; `docs/config.md`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// The BGP speaker.
    pub bgp: BgpConfig,
    /// The dataplane to program.
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    /// Label allocation.
    #[serde(default)]
    pub labels: LabelConfig,
    /// BGP neighbours.
    #[serde(default, rename = "neighbor")]
    pub neighbors: Vec<NeighborConfig>,
    /// VRFs (by the dataplane config's names).
    #[serde(default, rename = "vrf")]
    pub vrfs: Vec<VrfConfig>,
    /// EVPN instances (by the dataplane config's bridge names).
    #[serde(default, rename = "evpn")]
    pub evpn: Vec<EvpnConfig>,
    /// The control-plane API and `/metrics`.
    #[serde(default)]
    pub api: ApiConfig,
    /// The dataplane's sections of a single-file PE config (carrier-dataplane reads and checks
    /// them): `[router]`.
    #[serde(default)]
    pub router: Option<IgnoredAny>,
    /// (the dataplane's) `[[bridge]]`.
    #[serde(default)]
    pub bridge: Option<IgnoredAny>,
    /// (the dataplane's) `[[port]]`.
    #[serde(default)]
    pub port: Option<IgnoredAny>,
    /// (the dataplane's) `[[neighbour]]`: ARP neighbours (BGP peers are `[[neighbor]]`).
    #[serde(default)]
    pub neighbour: Option<IgnoredAny>,
    /// (the dataplane's) `[[route]]`.
    #[serde(default)]
    pub route: Option<IgnoredAny>,
    /// (the dataplane's) `[[label]]`.
    #[serde(default)]
    pub label: Option<IgnoredAny>,
    /// (the dataplane's) `[[vni]]`.
    #[serde(default)]
    pub vni: Option<IgnoredAny>,
    /// This file is a single-file PE config (no `[dataplane] config`): the dataplane's config is
    /// this file too.
    #[serde(skip)]
    pub single_file: bool,
}

/// `[api]`: the HTTP API (`crate::api`) and Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Address and port; a warning is logged when it is not a loopback address.
    #[serde(default = "default_api_listen")]
    pub listen: std::net::SocketAddr,
    /// Bearer token that writes need; without one, writes are refused.
    pub token: Option<String>,
    /// Reads need the token too (default: reads are open).
    #[serde(default)]
    pub token_for_reads: bool,
    /// How often the dataplane's counters are read (ms).
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_api_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT))
}

/// The API's default port (on 127.0.0.1).
pub const DEFAULT_API_PORT: u16 = 9179;

fn default_poll_ms() -> u64 {
    1000
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { enabled: true, listen: default_api_listen(), token: None, token_for_reads: false, poll_ms: default_poll_ms() }
    }
}

/// `[bgp]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BgpConfig {
    /// Local AS.
    pub asn: u32,
    /// BGP identifier.
    pub router_id: Ipv4Addr,
    /// Address to listen on for passive sessions (port 179); none: no listener.
    pub listen: Option<Ipv4Addr>,
    /// TCP port (179; tests may use another).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Proposed hold time.
    #[serde(default = "default_hold")]
    pub hold_time: u16,
    /// Graceful restart time (s); absent: no graceful restart.
    pub graceful_restart: Option<u16>,
    /// Install equal paths as ECMP.
    #[serde(default)]
    pub multipath: bool,
    /// The local VTEP for EVPN (type-3 originator, next hop of EVPN routes).
    pub vtep: Option<Ipv4Addr>,
}

fn default_port() -> u16 {
    179
}

fn default_hold() -> u16 {
    90
}

/// `[dataplane]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// The dataplane's table socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The dataplane's config file (relative paths are from this file's directory); left out
    /// in a single-file PE config, whose own path it becomes when loaded.
    #[serde(default)]
    pub config: PathBuf,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig { socket: default_socket(), config: PathBuf::new() }
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/carrier/dataplane.sock")
}

/// How VPN labels are allocated.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LabelMode {
    /// One label per VRF: pop and look up.
    #[default]
    PerVrf,
    /// One label per CE next hop: pop and forward.
    PerNexthop,
    /// One label per prefix.
    PerPrefix,
}

/// `[labels]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabelConfig {
    /// First label of the range.
    #[serde(default = "default_label_first")]
    pub first: u32,
    /// Last label of the range.
    #[serde(default = "default_label_last")]
    pub last: u32,
    /// Allocation mode.
    #[serde(default)]
    pub mode: LabelMode,
    /// Seconds a freed label waits before reuse.
    #[serde(default = "default_hold_down")]
    pub hold_down: u64,
}

fn default_label_first() -> u32 {
    100_000
}
fn default_label_last() -> u32 {
    199_999
}
fn default_hold_down() -> u64 {
    30
}

impl Default for LabelConfig {
    fn default() -> Self {
        LabelConfig { first: default_label_first(), last: default_label_last(), mode: LabelMode::PerVrf, hold_down: default_hold_down() }
    }
}

/// `[[neighbor]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    /// Peer address.
    pub address: Ipv4Addr,
    /// Peer AS.
    pub remote_as: u32,
    /// Families: `ipv4`, `vpnv4`, `evpn`.
    #[serde(default = "default_families")]
    pub families: Vec<String>,
    /// Only accept connections.
    #[serde(default)]
    pub passive: bool,
    /// Peer TCP port (tests).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Set our address as next hop of routes we pass on.
    #[serde(default)]
    pub next_hop_self: bool,
    /// MED sent on routes to this neighbour.
    pub med: Option<u32>,
    /// LOCAL_PREF given to routes from this neighbour.
    pub local_pref: Option<u32>,
    /// Most prefixes accepted; over it the session is reset (Cease 6/1).
    pub max_prefixes: Option<usize>,
    /// Local address to connect from.
    pub local_address: Option<Ipv4Addr>,
    /// TCP MD5 signature password (RFC 2385).
    pub password: Option<String>,
    /// GTSM (RFC 5082): the peer is at most this many hops away (1: directly connected).
    pub ttl_security: Option<u8>,
}

fn default_families() -> Vec<String> {
    vec!["vpnv4".into()]
}

impl NeighborConfig {
    /// The families as [`Family`] values.
    pub fn families(&self) -> Result<Vec<Family>, ConfigError> {
        self.families
            .iter()
            .map(|f| match f.as_str() {
                "ipv4" | "ipv4-unicast" => Ok(Family::Ipv4Unicast),
                "vpnv4" | "l3vpn-ipv4-unicast" => Ok(Family::Vpnv4),
                "evpn" | "l2vpn-evpn" => Ok(Family::Evpn),
                other => Err(ConfigError::Invalid(format!("neighbor {}: unknown family {other:?} (ipv4, vpnv4, evpn)", self.address))),
            })
            .collect()
    }
}

/// `[[vrf]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VrfConfig {
    /// The dataplane VRF's name.
    pub name: String,
    /// Route distinguisher of exported routes; a VRF without one is local (nothing exported).
    pub rd: Option<RouteDistinguisher>,
    /// Route targets imported.
    #[serde(default)]
    pub import: Vec<RouteTarget>,
    /// Route targets attached on export.
    #[serde(default)]
    pub export: Vec<RouteTarget>,
    /// Export the VRF's connected subnets.
    #[serde(default = "yes")]
    pub redistribute_connected: bool,
    /// Export the VRF's static routes (those of the dataplane config and `static` here).
    #[serde(default = "yes")]
    pub redistribute_static: bool,
    /// Static routes: prefix → CE next hop.
    #[serde(default, rename = "static")]
    pub statics: Vec<StaticRoute>,
    /// The dataplane's key of a VRF in a single-file PE config (its ICMP source).
    pub source: Option<IgnoredAny>,
    /// The dataplane's key of a VRF in a single-file PE config (per-prefix counters).
    pub prefix_counters: Option<IgnoredAny>,
}

fn yes() -> bool {
    true
}

/// A static VRF route.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    /// Prefix.
    pub prefix: Ipv4Prefix,
    /// CE next hop (in a connected subnet of the VRF).
    pub via: Ipv4Addr,
}

/// `[[evpn]]`: an EVPN instance over a dataplane bridge domain.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EvpnConfig {
    /// The dataplane bridge's name.
    pub bridge: String,
    /// Route distinguisher.
    pub rd: RouteDistinguisher,
    /// Imported RTs (default: auto, ASN:VNI per RFC 8365 §5.1.2.1).
    #[serde(default)]
    pub import: Vec<RouteTarget>,
    /// Exported RTs (default: auto).
    #[serde(default)]
    pub export: Vec<RouteTarget>,
}

/// What differs between two configurations, one line per difference, for operators
/// (`carrierctl apply`, SIGHUP); empty when they are equal.
pub fn diff(old: &ControlConfig, new: &ControlConfig) -> Vec<String> {
    let mut out = vec![];
    if old.bgp != new.bgp {
        out.push("bgp settings changed".to_string());
    }
    if old.dataplane != new.dataplane {
        out.push("dataplane settings changed (take effect at restart)".to_string());
    }
    if old.labels != new.labels {
        out.push("label settings changed".to_string());
    }
    if old.api != new.api {
        out.push("api settings changed (take effect at restart)".to_string());
    }
    fn keyed<'a, T: PartialEq, K: PartialEq + std::fmt::Display>(what: &str, old: &'a [T], new: &'a [T], key: impl Fn(&T) -> K, out: &mut Vec<String>) {
        for n in new {
            match old.iter().find(|o| key(o) == key(n)) {
                None => out.push(format!("{what} {} added", key(n))),
                Some(o) if o != n => out.push(format!("{what} {} changed", key(n))),
                Some(_) => {}
            }
        }
        for o in old {
            if !new.iter().any(|n| key(n) == key(o)) {
                out.push(format!("{what} {} removed", key(o)));
            }
        }
    }
    keyed("neighbor", &old.neighbors, &new.neighbors, |n| n.address, &mut out);
    keyed("vrf", &old.vrfs, &new.vrfs, |v| v.name.clone(), &mut out);
    keyed("evpn", &old.evpn, &new.evpn, |e| e.bridge.clone(), &mut out);
    out
}

impl ControlConfig {
    /// The dataplane's sections this file holds, by name.
    pub fn dataplane_sections(&self) -> Vec<&'static str> {
        [
            ("[router]", self.router.is_some()),
            ("[[bridge]]", self.bridge.is_some()),
            ("[[port]]", self.port.is_some()),
            ("[[neighbour]]", self.neighbour.is_some()),
            ("[[route]]", self.route.is_some()),
            ("[[label]]", self.label.is_some()),
            ("[[vni]]", self.vni.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, here)| here.then_some(name))
        .collect()
    }

    /// Parse and check (see [`check`] for what is checked beyond the types).
    pub fn parse(text: &str) -> Result<ControlConfig, ConfigError> {
        let mut c: ControlConfig = toml::from_str(text)?;
        c.single_file = c.dataplane.config.as_os_str().is_empty();
        let mut sections = c.dataplane_sections();
        // The dataplane's keys of a [[vrf]] too: in a control file that names a separate
        // dataplane config they would be ignored without a word.
        if c.vrfs.iter().any(|v| v.source.is_some() || v.prefix_counters.is_some()) {
            sections.push("[[vrf]] source and prefix_counters");
        }
        if !c.single_file && !sections.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{} belong to the dataplane config, and this file names a separate one ({}): move them there, or leave out `[dataplane] config` to make this a single-file PE config",
                sections.join(", "),
                c.dataplane.config.display()
            )));
        }
        check::check(&c, &check::Source::new(text))?;
        Ok(c)
    }

    /// Check this config (parsed from `text`) against the dataplane's tables: the VRFs and
    /// bridges it names exist there, its label range leaves the dataplane's own labels alone.
    pub fn check_against(&self, text: &str, tables: &carrier_dataplane::tables::Tables) -> Result<(), ConfigError> {
        check::check_against(self, &check::Source::new(text), tables)
    }

    /// Read, parse, and resolve the dataplane config path against this file's directory.
    pub fn load(path: &Path) -> Result<ControlConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io(path.display().to_string(), e))?;
        let mut c = ControlConfig::parse(&text)?;
        if c.single_file {
            c.dataplane.config = path.to_path_buf();
        } else if c.dataplane.config.is_relative() {
            if let Some(dir) = path.parent() {
                c.dataplane.config = dir.join(&c.dataplane.config);
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let c = ControlConfig::parse(
            r#"
            [bgp]
            asn = 65000
            router_id = "10.255.0.1"
            [dataplane]
            config = "pe1.toml"
            [[neighbor]]
            address = "192.0.2.254"
            remote_as = 65000
            families = ["vpnv4", "evpn"]
            [[vrf]]
            name = "red"
            rd = "65000:1"
            import = ["target:65000:1"]
            export = ["65000:1"]
            "#,
        )
        .unwrap();
        assert_eq!(c.neighbors[0].families().unwrap(), vec![Family::Vpnv4, Family::Evpn]);
        assert_eq!(c.vrfs[0].import, c.vrfs[0].export);
        assert!(ControlConfig::parse("[bgp]\nasn=1\nrouter_id=\"1.1.1.1\"\n[dataplane]\nconfig=\"x\"\n[labels]\nfirst=3").is_err());
        assert!(ControlConfig::parse("[bgp]\nasn=1\nrouter_id=\"1.1.1.1\"\n[dataplane]\nconfig=\"x\"\n[[neighbor]]\naddress=\"1.1.1.2\"\nremote_as=1\nfamilies=[\"ipv6\"]").is_err());
    }

    const HEAD: &str = "[bgp]\nasn = 65000\nrouter_id = \"10.255.0.1\"\n[dataplane]\nconfig = \"pe1.toml\"\n";

    /// The error for `HEAD + tail`, as (line, column, field, message).
    fn error(tail: &str) -> (usize, usize, String, String) {
        match ControlConfig::parse(&format!("{HEAD}{tail}")) {
            Err(ConfigError::At { line, column, field, message }) => (line, column, field, message),
            other => panic!("{tail}: {other:?}"),
        }
    }

    #[test]
    fn each_error_class_names_its_place() {
        let vrf = |name: &str, rd: &str| format!("[[vrf]]\nname = \"{name}\"\nrd = \"{rd}\"\n");
        // Lines: HEAD is 5 lines; the second [[vrf]] starts at line 9, its rd on line 11.
        let (l, c, f, m) = error(&(vrf("red", "65000:1") + &vrf("blue", "65000:1")));
        assert_eq!((l, c, f.as_str()), (11, 6, "vrf[1].rd"));
        assert!(m.contains("65000:1") && m.contains("\"red\""), "{m}");
        let (l, _, f, m) = error(&(vrf("red", "65000:1") + &vrf("red", "65000:2")));
        assert_eq!((l, f.as_str()), (10, "vrf[1].name"));
        assert!(m.contains("twice"), "{m}");
        let (l, c, f, m) = error(&(vrf("red", "65000:1") + "static = [{ prefix = \"10.9.0.1/24\", via = \"10.1.0.2\" }]\n"));
        assert_eq!((l, f.as_str()), (9, "vrf[0].static[0].prefix"));
        assert_eq!(c, 22, "{m}");
        assert!(m.contains("not on its mask") && m.contains("10.9.0.0/24"), "{m}");
        let (l, _, f, _) = error("[[neighbor]]\naddress = \"192.0.2.2\"\nremote_as = 1\nfamilies = [\"ipv6\"]\n");
        assert_eq!((l, f.as_str()), (9, "neighbor[0].families"));
        let n = "[[neighbor]]\naddress = \"192.0.2.2\"\nremote_as = 1\n";
        let (l, _, f, _) = error(&format!("{n}{n}"));
        assert_eq!((l, f.as_str()), (10, "neighbor[1].address"));
        let (l, _, f, m) = error("[labels]\nfirst = 3\n");
        assert_eq!((l, f.as_str()), (7, "labels.first"));
        assert!(m.contains("16"), "{m}");
        let (_, _, f, _) = error("[api]\ntoken = \"short\"\n");
        assert_eq!(f, "api.token");
        // The dataplane's keys of a VRF in a control file that names a dataplane file.
        let e = ControlConfig::parse(&format!("{HEAD}[[vrf]]\nname = \"red\"\nprefix_counters = true\n")).unwrap_err().to_string();
        assert!(e.contains("[[vrf]] source and prefix_counters") && e.contains("pe1.toml"), "{e}");
        // A bad route target is a type error, placed by toml itself.
        let e = ControlConfig::parse(&format!("{HEAD}[[vrf]]\nname = \"red\"\nrd = \"65000:1\"\nimport = [\"target:x\"]\n")).unwrap_err();
        assert!(e.to_string().contains("line 9"), "{e}");
    }

    /// `examples/pe.toml`: one file both processes read, each its part.
    #[test]
    fn a_single_file_pe_config_is_read_by_both_processes() {
        let text = include_str!("../../examples/pe.toml");
        let dp = carrier_dataplane::config::Config::parse(text).unwrap();
        let tables = dp.tables().unwrap();
        assert_eq!(tables.ports.len(), 4);
        assert!(tables.vrf_by_name("lab").is_some() && tables.vrf_by_name("red").is_some());
        assert_eq!(dp.dataplane.and_then(|d| d.socket), Some(PathBuf::from("/run/carrier/dataplane.sock")));
        let c = ControlConfig::parse(text).unwrap();
        assert!(c.single_file);
        c.check_against(text, &tables).unwrap();
        assert_eq!(c.neighbors.len(), 1);
        let red = c.vrfs.iter().find(|v| v.name == "red").unwrap();
        assert_eq!((red.rd.map(|r| r.to_string()), red.statics.len()), (Some("65000:1".into()), 1));
        assert_eq!(c.vrfs.iter().find(|v| v.name == "lab").unwrap().rd, None, "a VRF without rd is local");
        // Loaded from a path, its dataplane config is itself.
        let dir = std::env::temp_dir().join(format!("carrier-single-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pe.toml"), text).unwrap();
        let loaded = ControlConfig::load(&dir.join("pe.toml"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(loaded.unwrap().dataplane.config, dir.join("pe.toml"));
    }

    /// A control file that names a separate dataplane config cannot hold dataplane sections;
    /// a VRF that exports needs an rd; a typo in either part is still refused by its reader.
    #[test]
    fn the_two_parts_of_a_file_are_checked() {
        let e = ControlConfig::parse(&format!("{HEAD}[[port]]\nname = \"x\"\n[router]\nrouter_id = \"10.0.0.1\"\n")).unwrap_err();
        assert!(e.to_string().contains("[router], [[port]]") && e.to_string().contains("pe1.toml"), "{e}");
        let single = "[bgp]\nasn = 65000\nrouter_id = \"10.255.0.1\"\n";
        let (l, f, m) = match ControlConfig::parse(&format!("{single}[[vrf]]\nname = \"red\"\nexport = [\"target:65000:1\"]\n")) {
            Err(ConfigError::At { line, field, message, .. }) => (line, field, message),
            other => panic!("{other:?}"),
        };
        assert_eq!((l, f.as_str()), (6, "vrf[0].export"));
        assert!(m.contains("no rd"), "{m}");
        let e = ControlConfig::parse(&format!("{single}[[vrf]]\nname = \"red\"\nrd = \"65000:1\"\nimprot = []\n")).unwrap_err();
        assert!(e.to_string().contains("improt"), "{e}");
        let e = carrier_dataplane::config::Config::parse(&format!("{single}[[vrf]]\nname = \"red\"\nsorce = \"10.0.0.1\"\n")).unwrap_err();
        assert!(e.to_string().contains("sorce"), "{e}");
        let e = carrier_dataplane::config::Config::parse("[dataplane]\nsocket = \"/x\"\nsockt = 1\n").unwrap_err();
        assert!(e.to_string().contains("sockt"), "{e}");
    }

    #[test]
    fn names_unknown_to_the_dataplane_are_placed() {
        let base = carrier_dataplane::config::Config::parse(include_str!("../../examples/pe1.toml")).unwrap().tables().unwrap();
        let text = format!("{HEAD}[[vrf]]\nname = \"red\"\nrd = \"65000:1\"\n[[vrf]]\nname = \"green\"\nrd = \"65000:3\"\n");
        let c = ControlConfig::parse(&text).unwrap();
        match c.check_against(&text, &base) {
            Err(ConfigError::At { line: 10, field, message, .. }) => {
                assert_eq!(field, "vrf[1].name");
                assert!(message.contains("green") && message.contains("dataplane"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let text = format!("{HEAD}[[evpn]]\nbridge = \"bd999\"\nrd = \"65000:9\"\n");
        let c = ControlConfig::parse(&text).unwrap();
        assert!(matches!(c.check_against(&text, &base), Err(ConfigError::At { line: 7, .. })));
        let ilm = base.ilm.keys().next().map(|l| l.value()).expect("pe1.toml has static labels");
        let text = format!("{HEAD}[labels]\nfirst = {ilm}\nlast = {}\n", ilm + 10);
        let c = ControlConfig::parse(&text).unwrap();
        assert!(matches!(c.check_against(&text, &base), Err(ConfigError::At { line: 7, .. })), "{:?}", c.check_against(&text, &base));
    }
}
