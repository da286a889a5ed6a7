//! Live changes of the dataplane's part of a PE's config: VRFs added and removed, ports
//! attached to another VRF or bridge domain, detached, given other addresses — from a reloaded
//! file (`carrierctl apply`, SIGHUP) or from the API's edits (`carrierctl vrf add`, `attach`).
//!
//! The control process keeps the dataplane config it runs ([`RunningDataplane`]). A new one is
//! checked against it ([`stage`]): what the dataplane process fixed when it started (its
//! interfaces, the host path, the workers) cannot change without a restart and is refused with
//! nothing applied; the rest is compiled over the running tables so that a VRF keeps its id
//! ([`carrier_dataplane::config::Config::commands_after`]). The rib task then makes the new
//! tables its base and sends the dataplane everything again as one `replace`, which the
//! dataplane swaps in at once: a flow through an unchanged VRF sees one snapshot or the other,
//! both forwarding it.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use carrier_contract::addr::{InterfaceAddr, MacAddr};
use carrier_dataplane::config::{Config as DpConfig, PortConfig};
use carrier_dataplane::tables::{PortRole, Tables};

use crate::bgp::msg::{RouteDistinguisher, RouteTarget};
use crate::config::{ControlConfig, VrfConfig};
use crate::rib::RunningDataplane;
use crate::state::CommandError;

/// A dataplane config checked and compiled, ready to become the base.
#[derive(Debug)]
pub struct Staged {
    /// The config and its commands.
    pub dataplane: RunningDataplane,
    /// The tables it compiles to.
    pub base: Arc<Tables>,
    /// What differs from the running tables, one line each.
    pub changes: Vec<String>,
}

/// Check `new` against the running dataplane config (whose tables are `base`) and compile it;
/// `None` when it compiles to what runs.
pub fn stage(running: &RunningDataplane, base: &Tables, new: DpConfig) -> Result<Option<Staged>, CommandError> {
    restart_only(&running.config, &new).map_err(CommandError::Conflict)?;
    let commands = new.commands_after(base).map_err(|e| CommandError::Invalid(format!("dataplane config: {e}")))?;
    if commands == running.commands {
        return Ok(None);
    }
    let mut tables = Tables::default();
    tables.apply_all(commands.clone()).map_err(|(i, e)| CommandError::Invalid(format!("dataplane config: table command {i}: {e}")))?;
    let changes = describe(base, &tables);
    Ok(Some(Staged { dataplane: RunningDataplane { config: new, commands }, base: Arc::new(tables), changes }))
}

/// What carrier-dataplane fixed when it started: its interfaces (opened, with XDP attached and
/// AF_XDP sockets bound, in this order), the host path and the workers.
fn restart_only(old: &DpConfig, new: &DpConfig) -> Result<(), String> {
    let port = |p: &PortConfig| (p.name.clone(), p.mac, p.vlan, p.host_rate, p.express);
    if new.ports.len() < old.ports.len() || !old.ports.iter().map(port).eq(new.ports.iter().take(old.ports.len()).map(port)) {
        let names = |c: &DpConfig| c.ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
        return Err(format!(
            "the [[port]] list (names and order, mac, vlan, host_rate, express) is the interfaces carrier-dataplane opened ({}): new ports may follow them, but removing, reordering or changing one ({}) takes effect when it restarts (detach a port instead) — nothing was applied",
            names(old),
            names(new)
        ));
    }
    let router = |c: &DpConfig| (c.router.host_addresses.clone(), c.router.host_path, c.router.host_rate, c.router.express, c.router.workers);
    if router(old) != router(new) {
        return Err("[router] host_addresses, host_path, host_rate, express and workers take effect when carrier-dataplane restarts — nothing was applied".into());
    }
    Ok(())
}

/// A port's attachment in words.
fn role(t: &Tables, r: PortRole) -> String {
    match r {
        PortRole::Vrf(v) => format!("vrf {}", t.vrfs.get(v.index()).map_or("?", |v| v.name.as_str())),
        PortRole::Bridge(b) => format!("bridge {}", t.bridges.get(b.index()).map_or("?", |b| b.name.as_str())),
        PortRole::Core => "core".into(),
        PortRole::Detached => "detached".into(),
    }
}

/// The differences between two base tables an operator cares about, one line each.
fn describe(old: &Tables, new: &Tables) -> Vec<String> {
    let mut out = vec![];
    let names = |t: &Tables| t.vrfs.iter().filter(|v| !v.name.is_empty()).map(|v| v.name.clone()).collect::<BTreeSet<_>>();
    let (was, is) = (names(old), names(new));
    out.extend(is.difference(&was).map(|v| format!("dataplane: vrf {v} added")));
    out.extend(was.difference(&is).map(|v| format!("dataplane: vrf {v} removed")));
    for (a, b) in old.ports.iter().zip(&new.ports) {
        let (ra, rb) = (role(old, a.role), role(new, b.role));
        if ra != rb || a.addrs != b.addrs {
            let addrs = |p: &carrier_dataplane::tables::Port| p.addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
            out.push(format!("dataplane: port {}: {ra} [{}] → {rb} [{}]", a.name, addrs(a), addrs(b)));
        } else if (a.proxy_arp, a.anti_spoof, a.mtu) != (b.proxy_arp, b.anti_spoof, b.mtu) {
            out.push(format!("dataplane: port {}: proxy_arp, anti_spoof or mtu changed", a.name));
        }
    }
    for b in new.ports.iter().skip(old.ports.len()) {
        let addrs = b.addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
        out.push(format!("dataplane: port {}: added, {} [{addrs}]", b.name, role(new, b.role)));
    }
    if out.is_empty() {
        out.push("dataplane: routes, labels, neighbours, bridges or router settings changed".into());
    }
    out
}

/// What the API asks to change in the running config.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Create a VRF (in the dataplane, and for BGP when it has an RD or route targets).
    AddVrf {
        /// Name.
        name: String,
        /// Route distinguisher; none: a local VRF (nothing exported).
        rd: Option<RouteDistinguisher>,
        /// Route targets imported.
        import: Vec<RouteTarget>,
        /// Route targets exported.
        export: Vec<RouteTarget>,
        /// ICMP source address.
        source: Option<Ipv4Addr>,
        /// Count packets and bytes forwarded per prefix.
        prefix_counters: bool,
    },
    /// Delete a VRF that no port is attached to.
    DelVrf {
        /// Name.
        name: String,
    },
    /// Attach a port to a VRF, a bridge domain or the core, or detach it (`to: None`). An
    /// interface the config does not list becomes a new port (the dataplane opens it).
    Attach {
        /// The port's interface name.
        port: String,
        /// The router's MAC on a new port; default: the interface's own.
        mac: Option<MacAddr>,
        /// Where to.
        to: Option<Attachment>,
        /// New addresses; `None` keeps the port's (a detached port has none).
        addresses: Option<Vec<InterfaceAddr>>,
    },
}

/// What a port is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    /// A VRF, by name.
    Vrf(String),
    /// A bridge domain, by name.
    Bridge(String),
    /// The core.
    Core,
}

/// The running configs with `edit` made: the control's and the dataplane's.
pub fn edit(ctl: &ControlConfig, dp: &DpConfig, edit: Edit) -> Result<(ControlConfig, DpConfig), CommandError> {
    let (mut ctl, mut dp) = (ctl.clone(), dp.clone());
    match edit {
        Edit::AddVrf { name, rd, import, export, source, prefix_counters } => {
            if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(CommandError::Invalid(format!("{name:?}: a VRF name is 1 to 64 letters, digits, '-', '_' or '.'")));
            }
            if dp.vrfs.iter().any(|v| v.name == name) {
                return Err(CommandError::Conflict(format!("VRF {name:?} exists")));
            }
            if let Some(rd) = rd {
                if let Some(other) = ctl.vrfs.iter().find(|v| v.rd == Some(rd)) {
                    return Err(CommandError::Conflict(format!("RD {rd} is VRF {:?}'s", other.name)));
                }
            }
            dp.vrfs.push(carrier_dataplane::config::VrfConfig::named(&name, source, prefix_counters));
            ctl.vrfs.push(VrfConfig {
                name,
                rd,
                import,
                export,
                redistribute_connected: true,
                redistribute_static: true,
                statics: vec![],
                source: None,
                prefix_counters: None,
            });
        }
        Edit::DelVrf { name } => {
            if !dp.vrfs.iter().any(|v| v.name == name) {
                return Err(CommandError::NotFound(format!("no VRF {name:?}")));
            }
            let attached: Vec<&str> = dp.ports.iter().filter(|p| p.vrf.as_deref() == Some(name.as_str())).map(|p| p.name.as_str()).collect();
            if !attached.is_empty() {
                return Err(CommandError::Conflict(format!("ports {} are attached to VRF {name:?}: detach them first", attached.join(", "))));
            }
            dp.vrfs.retain(|v| v.name != name);
            ctl.vrfs.retain(|v| v.name != name);
        }
        Edit::Attach { port, mac, to, addresses } => {
            if !dp.ports.iter().any(|p| p.name == port) {
                if to.is_none() {
                    return Err(CommandError::NotFound(format!("no port {port:?}")));
                }
                if port.is_empty() || port.len() >= 16 || port.contains(['/', ' ']) || port == "." || port == ".." {
                    return Err(CommandError::Invalid(format!("{port:?} is not an interface name")));
                }
                let mac = match mac.or_else(|| interface_mac(&port)) {
                    Some(m) => m,
                    None => return Err(CommandError::NotFound(format!("no port {port:?}, and no interface of that name here to take its MAC from (give \"mac\")"))),
                };
                dp.ports.push(PortConfig::new(&port, mac));
            }
            let Some(p) = dp.ports.iter_mut().find(|p| p.name == port) else {
                return Err(CommandError::NotFound(format!("no port {port:?}")));
            };
            (p.vrf, p.bridge, p.core, p.detached) = (None, None, false, false);
            match to {
                Some(Attachment::Vrf(v)) => p.vrf = Some(v),
                Some(Attachment::Bridge(b)) => p.bridge = Some(b),
                Some(Attachment::Core) => p.core = true,
                None => {
                    p.detached = true;
                    p.addresses.clear();
                }
            }
            if let Some(a) = addresses {
                p.addresses = a;
            }
            if p.bridge.is_some() && !p.addresses.is_empty() {
                return Err(CommandError::Invalid(format!("port {port:?}: a bridge port has no addresses (give \"addresses\": [])")));
            }
        }
    }
    Ok((ctl, dp))
}

/// The MAC of interface `name` in this process's namespace (`/sys/class/net`).
fn interface_mac(name: &str) -> Option<MacAddr> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PE: &str = include_str!("../../examples/pe.toml");

    fn running() -> (ControlConfig, RunningDataplane, Tables) {
        let ctl = ControlConfig::parse(PE).unwrap();
        let config = DpConfig::parse(PE).unwrap();
        let commands = config.commands().unwrap();
        let tables = config.tables().unwrap();
        (ctl, RunningDataplane { config, commands }, tables)
    }

    /// A VRF added and a port moved to it: staged with the running VRFs' ids kept, the change
    /// described; deleting the VRF while the port is in it is refused; the same config again
    /// stages nothing; a new interface or a host-path setting is refused as needing a restart.
    #[test]
    fn edits_stage_over_the_running_tables() {
        let (ctl, dp, base) = running();
        let port = dp.config.ports.iter().find(|p| p.vrf.is_some()).unwrap().name.clone();
        let (ctl2, dp2) = edit(&ctl, &dp.config, Edit::AddVrf { name: "green".into(), rd: None, import: vec![], export: vec![], source: None, prefix_counters: false }).unwrap();
        let (ctl3, dp3) = edit(&ctl2, &dp2, Edit::Attach { port: port.clone(), mac: None, to: Some(Attachment::Vrf("green".into())), addresses: Some(vec!["10.77.0.1/24".parse().unwrap()]) }).unwrap();
        let staged = stage(&dp, &base, dp3.clone()).unwrap().expect("a change");
        let green = staged.base.vrf_by_name("green").unwrap();
        assert_eq!(usize::from(green.id.0), base.vrfs.len(), "a new VRF takes the next id");
        for v in &base.vrfs {
            assert_eq!(staged.base.vrf_by_name(&v.name).unwrap().id, v.id, "VRF {} kept its id", v.name);
        }
        assert!(staged.changes.contains(&"dataplane: vrf green added".to_string()), "{:?}", staged.changes);
        assert!(staged.changes.iter().any(|c| c.starts_with(&format!("dataplane: port {port}:")) && c.ends_with("→ vrf green [10.77.0.1/24]")), "{:?}", staged.changes);
        assert!(matches!(edit(&ctl3, &dp3, Edit::DelVrf { name: "green".into() }), Err(CommandError::Conflict(m)) if m.contains(&port)));
        assert!(stage(&staged.dataplane, &staged.base, dp3.clone()).unwrap().is_none(), "the same config twice changes nothing");
        // Detached, then the VRF deleted: its id stays unused.
        let (ctl4, dp4) = edit(&ctl3, &dp3, Edit::Attach { port: port.clone(), mac: None, to: None, addresses: None }).unwrap();
        let (_, dp5) = edit(&ctl4, &dp4, Edit::DelVrf { name: "green".into() }).unwrap();
        let after = stage(&staged.dataplane, &staged.base, dp5).unwrap().expect("a change");
        assert!(after.base.vrf_by_name("green").is_none() && after.base.vrfs[usize::from(green.id.0)].name.is_empty());
        assert_eq!(after.base.port_by_name(&port).unwrap().role, PortRole::Detached);
        assert!(after.changes.contains(&"dataplane: vrf green removed".to_string()), "{:?}", after.changes);
        // What needs a restart.
        let mut renamed = dp.config.clone();
        renamed.ports[0].name = "other0".into();
        assert!(matches!(stage(&dp, &base, renamed), Err(CommandError::Conflict(m)) if m.contains("restarts")));
        let mut no_host = dp.config.clone();
        no_host.router.host_path = !no_host.router.host_path;
        assert!(matches!(stage(&dp, &base, no_host), Err(CommandError::Conflict(m)) if m.contains("host_path")));
        // An interface the config does not list: a new port after the others.
        let (_, dp7) = edit(&ctl, &dp.config, Edit::Attach { port: "ce-new".into(), mac: Some("02:00:00:00:09:09".parse().unwrap()), to: Some(Attachment::Vrf("red".into())), addresses: Some(vec!["10.88.0.1/24".parse().unwrap()]) }).unwrap();
        let added = stage(&dp, &base, dp7).unwrap().expect("a change");
        let new = added.base.port_by_name("ce-new").unwrap();
        assert_eq!((usize::from(new.id.0), new.role), (base.ports.len(), PortRole::Vrf(base.vrf_by_name("red").unwrap().id)));
        assert!(added.changes.iter().any(|c| c.starts_with("dataplane: port ce-new:")), "{:?}", added.changes);
        assert!(matches!(edit(&ctl, &dp.config, Edit::Attach { port: "no/such".into(), mac: None, to: Some(Attachment::Core), addresses: None }), Err(CommandError::Invalid(_))));
        // Bad edits.
        assert!(matches!(edit(&ctl, &dp.config, Edit::AddVrf { name: "a b".into(), rd: None, import: vec![], export: vec![], source: None, prefix_counters: false }), Err(CommandError::Invalid(_))));
        assert!(matches!(edit(&ctl, &dp.config, Edit::DelVrf { name: "nope".into() }), Err(CommandError::NotFound(_))));
        assert!(matches!(edit(&ctl, &dp.config, Edit::Attach { port: "nope".into(), mac: None, to: None, addresses: None }), Err(CommandError::NotFound(_))));
        // A VRF that does not exist: the compile says so.
        let (_, dp6) = edit(&ctl, &dp.config, Edit::Attach { port, mac: None, to: Some(Attachment::Vrf("nope".into())), addresses: None }).unwrap();
        assert!(matches!(stage(&dp, &base, dp6), Err(CommandError::Invalid(m)) if m.contains("nope")));
    }
}
