//! The host exception path: the router's own stack reachable through its dataplane ports.
//!
//! Each routed port (core or VRF) gets a kernel mirror, a TAP named `cp-<port>` with the
//! port's MAC, MTU and addresses, whose carrier follows the port's link (linux-cp's model;
//! a TAP rather than a veth pair because the dataplane is the other end: one descriptor, no
//! second interface, and it disappears with the process, even after SIGKILL). Frames whose
//! verdict is `ToHost(port)` are written to that mirror; what the kernel sends on it comes
//! back to the worker as a from-host frame of the port (see `pipeline::process`): addressed
//! to the port's own MAC it is routed in the port's table, anything else goes straight out.
//!
//! Where the mirrors live: core ports' in the dataplane's own namespace (BGP over a core link,
//! ssh to a core address); a VRF's ports' in a namespace of that VRF, `<ns>-<vrf>` (`<ns>` is
//! the dataplane's namespace name, or `carrier`). The kernel here has no VRF devices, and two
//! VRFs may use the same addresses (pe1.toml's red and blue both own 10.1.0.1/24): in one
//! namespace the host stack would answer one VRF's customer through the other's port. In the
//! VRF's namespace its default route points at the dataplane (a permanent neighbour with the
//! port's MAC), so replies to remote sites of the VPN are routed in the VRF like any packet
//! the router originates. Services for a VRF run in its namespace (`ip netns exec`), as with
//! `ip vrf exec`.
//!
//! Neighbours: the kernel resolves its own next hops by ARP through the mirror (requests go
//! straight out; replies come back to both the dataplane, which learns, and the kernel); the
//! dataplane answers ARP only for the port's addresses and by proxy, and passes the requests
//! it does not answer to the kernel, which (with `arp_ignore = 1`) answers only for addresses
//! on that mirror.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use carrier_common::PortId;

use crate::io::netdev;
use crate::io::tap::{self, Tap};
use crate::tables::{InterfaceAddr, PortRole, Tables};
use crate::wire::MacAddr;

/// The gateway the VRF namespaces' default route points at; a permanent neighbour entry maps
/// it to the port's MAC, so the kernel never ARPs for it.
pub const GATEWAY: &str = "169.254.0.1";

/// One mirror to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The port it mirrors.
    pub port: PortId,
    /// The port's interface name.
    pub port_name: String,
    /// The mirror's name.
    pub name: String,
    /// The port's MAC.
    pub mac: MacAddr,
    /// The port's MTU.
    pub mtu: u16,
    /// The port's addresses.
    pub addrs: Vec<InterfaceAddr>,
    /// The namespace it goes to (`None`: the dataplane's own).
    pub netns: Option<String>,
    /// Whether the namespace's default route points through this mirror (the first port of
    /// each VRF).
    pub default_route: bool,
}

/// The mirror's name: `cp-<port>` when that fits in an interface name, else `cp<id>-<the
/// port name's first characters>`.
pub fn mirror_name(port: &str, id: PortId) -> String {
    let name = format!("cp-{port}");
    if name.len() < libc::IFNAMSIZ {
        return name;
    }
    let mut short = format!("cp{}-", id.0);
    short.extend(port.chars().take(libc::IFNAMSIZ - 1 - short.len()));
    short
}

/// The mirrors `tables` needs: one per routed port (bridge ports have no addresses and no
/// host side); VRF ports' in `<prefix>-<vrf>`.
pub fn plan(tables: &Tables, prefix: &str) -> Vec<Mirror> {
    let mut seen_vrf = BTreeSet::new();
    tables
        .ports
        .iter()
        .filter_map(|p| {
            let (netns, default_route) = match p.role {
                PortRole::Core => (None, false),
                PortRole::Vrf(v) => {
                    let vrf = tables.vrfs.get(v.index()).map_or_else(|| v.to_string(), |v| v.name.clone());
                    (Some(format!("{prefix}-{vrf}")), seen_vrf.insert(v))
                }
                PortRole::Bridge(_) | PortRole::Detached => return None,
            };
            Some(Mirror {
                port: p.id,
                port_name: p.name.clone(),
                name: mirror_name(&p.name, p.id),
                mac: p.mac,
                mtu: p.mtu,
                addrs: p.addrs.clone(),
                netns,
                default_route,
            })
        })
        .collect()
}

/// The name `ip netns` knows the current namespace by, if any: the entry of `/run/netns`
/// whose namespace inode is ours.
pub fn own_netns_name() -> Option<String> {
    let ours = std::fs::metadata("/proc/self/ns/net").ok()?;
    std::fs::read_dir("/run/netns").ok()?.flatten().find_map(|e| {
        let m = std::fs::metadata(e.path()).ok()?;
        (m.ino() == ours.ino() && m.dev() == ours.dev()).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

/// Why the host path could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Creating a TAP failed.
    #[error("creating the mirror {name} of port {port}: {source}")]
    Tap {
        /// The mirror.
        name: String,
        /// The port.
        port: String,
        /// Why.
        source: std::io::Error,
    },
    /// An `ip` command failed.
    #[error("`{command}` failed: {stderr}")]
    Ip {
        /// The command line.
        command: String,
        /// What it printed.
        stderr: String,
    },
}

fn ip(args: &[&str]) -> Result<(), HostError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip").args(args).output().map_err(|e| HostError::Ip { command: command.clone(), stderr: e.to_string() })?;
    if !out.status.success() {
        return Err(HostError::Ip { command, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(())
}

/// `ip` in `netns` (or here).
fn ip_in(netns: Option<&str>, args: &[&str]) -> Result<(), HostError> {
    match netns {
        Some(ns) => {
            let mut full = vec!["-n", ns];
            full.extend_from_slice(args);
            ip(&full)
        }
        None => ip(args),
    }
}

/// A sysctl of one interface in `netns`, written through `ip netns exec` (sysctls under
/// /proc/sys/net are the writer's namespace's).
fn if_sysctl(netns: Option<&str>, family: &str, ifname: &str, key: &str, value: &str) -> Result<(), HostError> {
    let path = format!("/proc/sys/net/{family}/conf/{ifname}/{key}");
    match netns {
        Some(ns) => ip(&["netns", "exec", ns, "sh", "-c", &format!("echo {value} > {path}")]),
        None => std::fs::write(&path, value).map_err(|e| HostError::Ip { command: format!("write {path}"), stderr: e.to_string() }),
    }
}

/// The live host path: the mirrors' second descriptors (to follow the ports' links) and the
/// VRF namespaces, deleted when dropped (the TAPs themselves go with the worker's
/// descriptors).
#[derive(Debug)]
pub struct HostPath {
    links: Vec<(String, OwnedFd, Option<bool>)>,
    namespaces: Vec<String>,
    /// Deletes the VRF namespaces once the dataplane is gone: a shell started while the
    /// dataplane still had all its capabilities, in a process group of its own, that waits
    /// for the end of its stdin — closed when the dataplane drops this, or dies (even by
    /// SIGKILL). Deleting a namespace unmounts it (`CAP_SYS_ADMIN`), which the running
    /// dataplane then does not need to keep.
    reaper: Option<std::process::Child>,
}

impl HostPath {
    /// Create every mirror of `plan`, configure it, and return it with its TAP for the worker.
    /// A VRF namespace left by an earlier run that died is reused.
    pub fn create(plan: &[Mirror]) -> Result<(HostPath, Vec<(PortId, Tap)>), HostError> {
        let mut host = HostPath { links: vec![], namespaces: vec![], reaper: None };
        let mut taps = vec![];
        for m in plan {
            if let Some(ns) = &m.netns {
                if !host.namespaces.contains(ns) {
                    // Reuse one a dead run left, unless it is only the empty file a
                    // namespace made in a private mount namespace leaves behind.
                    if std::path::Path::new("/run/netns").join(ns).exists() && ip_in(Some(ns), &["link", "show", "lo"]).is_err() {
                        let _ = ip(&["netns", "del", ns]);
                    }
                    if !std::path::Path::new("/run/netns").join(ns).exists() {
                        ip(&["netns", "add", ns])?;
                    }
                    host.namespaces.push(ns.clone());
                    ip_in(Some(ns), &["link", "set", "lo", "up"])?;
                }
            }
            let tap = Tap::create(&m.name).map_err(|source| HostError::Tap { name: m.name.clone(), port: m.port_name.clone(), source })?;
            let fd = tap.try_clone_fd().map_err(|source| HostError::Tap { name: m.name.clone(), port: m.port_name.clone(), source })?;
            let mac = m.mac.to_string();
            let mtu = m.mtu.to_string();
            ip(&["link", "set", "dev", &m.name, "address", &mac, "mtu", &mtu])?;
            if let Some(ns) = &m.netns {
                ip(&["link", "set", "dev", &m.name, "netns", ns])?;
            }
            let ns = m.netns.as_deref();
            // Answer ARP only for addresses on this mirror; accept what the dataplane hands
            // over whatever the reverse path (it arrives on the mirror of the owning port).
            if_sysctl(ns, "ipv4", &m.name, "arp_ignore", "1")?;
            if_sysctl(ns, "ipv4", &m.name, "rp_filter", "0")?;
            // The dataplane forwards IPv4 only: no router solicitations, MLD or DAD from the
            // mirror onto the port (a kernel without IPv6 has nothing to turn off).
            if std::path::Path::new("/proc/sys/net/ipv6").exists() {
                if_sysctl(ns, "ipv6", &m.name, "disable_ipv6", "1")?;
            }
            for a in &m.addrs {
                let addr = format!("{}/{}", a.addr, a.prefix.prefix_len());
                ip_in(ns, &["addr", "replace", &addr, "dev", &m.name])?;
            }
            ip_in(ns, &["link", "set", "dev", &m.name, "up"])?;
            if m.default_route {
                ip_in(ns, &["neigh", "replace", GATEWAY, "lladdr", &mac, "dev", &m.name, "nud", "permanent"])?;
                ip_in(ns, &["route", "replace", "default", "via", GATEWAY, "dev", &m.name, "onlink"])?;
            }
            host.links.push((m.port_name.clone(), fd, None));
            taps.push((m.port, tap));
        }
        host.follow_links();
        host.start_reaper()?;
        Ok((host, taps))
    }

    /// Set each mirror's carrier from its port's (up and running); called
    /// periodically. Returns the changes made: (port, up).
    pub fn follow_links(&mut self) -> Vec<(String, bool)> {
        let mut changed = vec![];
        for (port, fd, last) in &mut self.links {
            let up = netdev::is_running(port).unwrap_or(false);
            if *last != Some(up) && tap::set_carrier(fd.as_raw_fd(), up).is_ok() {
                *last = Some(up);
                changed.push((port.clone(), up));
            }
        }
        changed
    }

    /// The VRF namespaces in use.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
}

impl HostPath {
    /// Start the reaper of the VRF namespaces (see [`HostPath`]).
    fn start_reaper(&mut self) -> Result<(), HostError> {
        use std::os::unix::process::CommandExt;
        if self.namespaces.is_empty() {
            return Ok(());
        }
        let child = Command::new("sh")
            .args(["-c", r#"cat > /dev/null; for ns in "$@"; do ip netns del "$ns" 2> /dev/null; done"#, "carrier-netns-reaper"])
            .args(&self.namespaces)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| HostError::Ip { command: "sh (the VRF namespaces' reaper)".into(), stderr: e.to_string() })?;
        self.reaper = Some(child);
        Ok(())
    }
}

impl Drop for HostPath {
    fn drop(&mut self) {
        match self.reaper.take() {
            // End its stdin and wait until it has deleted them.
            Some(mut reaper) => {
                drop(reaper.stdin.take());
                let _ = reaper.wait();
            }
            // Not started (creation failed half-way, still privileged): delete them here.
            None => {
                for ns in &self.namespaces {
                    let _ = ip(&["netns", "del", ns]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn names_fit_an_interface_name() {
        assert_eq!(mirror_name("core0", PortId(4)), "cp-core0");
        assert_eq!(mirror_name("ce-red2", PortId(1)), "cp-ce-red2");
        let long = mirror_name("pe1core-123456789", PortId(12));
        assert_eq!(long, "cp12-pe1core-12");
        assert!(long.len() < libc::IFNAMSIZ);
    }

    #[test]
    fn plan_puts_vrf_ports_in_their_vrf_namespace() {
        let tables = Config::parse(include_str!("../../examples/pe1.toml")).unwrap().tables().unwrap();
        let plan = plan(&tables, "pe1");
        let by_port: Vec<(&str, Option<&str>, bool)> = plan.iter().map(|m| (m.port_name.as_str(), m.netns.as_deref(), m.default_route)).collect();
        assert_eq!(
            by_port,
            vec![
                ("ce-red", Some("pe1-red"), true),
                ("ce-red2", Some("pe1-red"), false),
                ("ce-blue", Some("pe1-blue"), true),
                ("core0", None, false),
                ("core1", None, false),
            ],
            "the bridge port has no mirror; red and blue (both 10.1.0.1/24) are apart"
        );
        let red = &plan[0];
        assert_eq!((red.name.as_str(), red.mac.to_string().as_str(), red.mtu), ("cp-ce-red", "02:00:00:00:01:01", 1500));
        assert_eq!(red.addrs[0].addr.to_string(), "10.1.0.1");
    }
}
