//! Loading carrier's XDP program (`ebpf/`) and attaching it to the carrier ports.
//!
//! The contract: [`XdpDataplane`] owns the loaded `carrier_xdp` program and its maps.
//! [`XdpDataplane::attach`] puts the program on a port — native (driver) mode when the
//! driver supports it, generic (skb) mode otherwise — and records the port's slot in
//! `PORT_BY_IFINDEX` (or `PORT_SLOTS`); dropping the `XdpDataplane` detaches every port. A `carrier_xdp`
//! left on an interface by a dataplane that died is detached and replaced; anyone
//! else's XDP program is left alone and reported as [`XdpError::ForeignProgram`].
//!
//! Who writes what: this module is the only userspace writer of `PORT_BY_IFINDEX`, `PORT_SLOTS`, `XSKS`
//! and `HOST_ADDRS`; the XDP program only reads them. The XDP program is the only
//! writer of `PORT_STATS` (one copy per CPU); [`XdpDataplane::port_stats`] reads and
//! sums it.
//!
//! The object is embedded at build time by `build.rs` when `CARRIER_EBPF_OBJECT` is
//! set (`cargo xtask build` does that). A binary built without it still runs its
//! pure pipeline, and [`XdpDataplane::load`] fails with [`XdpError::ObjectMissing`].
//!
//! Everything needs root (CAP_BPF, CAP_NET_ADMIN); without it the errors say so.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;
use std::process::Command;

use aya::maps::{Array, DevMap, HashMap, IterableMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, XskMap};
use aya::programs::xdp::{XdpError as AyaXdpError, XdpLinkId};
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, Pod};
use carrier_common::{
    express, xdp_maps, xsk_index, XdpPortStats, HOST_ADDR_LOCAL, MAX_PORTS, MAX_QUEUES, XDP_PROGRAM_NAME,
};

/// The eBPF object `build.rs` copied into `OUT_DIR`, when the build had one.
fn embedded_object() -> Option<&'static [u8]> {
    #[cfg(carrier_ebpf)]
    {
        Some(aya::include_bytes_aligned!(concat!(
            env!("OUT_DIR"),
            "/carrier-xdp.o"
        )))
    }
    #[cfg(not(carrier_ebpf))]
    {
        None
    }
}

/// True when this binary embeds the XDP object (it was built by `cargo xtask build`).
pub const fn has_embedded_object() -> bool {
    cfg!(carrier_ebpf)
}

/// How the program runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttachMode {
    /// Native XDP, run by the driver before it allocates an skb (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// Generic XDP, run by the kernel on the skb (`XDP_FLAGS_SKB_MODE`): slower, but
    /// works on every interface.
    Skb,
}

impl AttachMode {
    /// `native` or `skb`.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        })
    }
}

/// Why loading, attaching or updating the XDP program failed. Variants that wrap an
/// aya error return it as [`std::error::Error::source`], which holds the errno: print
/// with the chain (anyhow's `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The binary was built without `CARRIER_EBPF_OBJECT`.
    #[error("this binary was built without the eBPF object; build it with `cargo xtask build`")]
    ObjectMissing,
    /// The kernel refused a BPF or netlink operation with EPERM.
    #[error("{what} was not permitted: carrier's XDP dataplane needs CAP_BPF and CAP_NET_ADMIN, run as root")]
    PermissionDenied {
        /// The operation that was refused.
        what: &'static str,
    },
    /// The embedded object could not be parsed or its maps created.
    #[error("loading the eBPF object failed")]
    Object(#[source] Box<EbpfError>),
    /// The object has no XDP program called `carrier_xdp`.
    #[error("the eBPF object has no XDP program named `{XDP_PROGRAM_NAME}`")]
    ProgramMissing,
    /// The kernel rejected the program; the message carries the verifier log.
    #[error("the kernel rejected `{XDP_PROGRAM_NAME}`: {0}")]
    Verifier(Box<ProgramError>),
    /// The object has no map of this name or type.
    #[error("the eBPF object has no usable map `{0}`")]
    MapMissing(&'static str),
    /// Reading or writing a map failed.
    #[error("XDP map `{map}`")]
    Map {
        /// The map's name.
        map: &'static str,
        /// What went wrong.
        #[source]
        source: Box<MapError>,
    },
    /// No interface of that name in this network namespace.
    #[error("no network interface named `{ifname}`")]
    UnknownInterface {
        /// The interface name asked for.
        ifname: String,
    },
    /// A port slot at or above [`MAX_PORTS`].
    #[error("port slot {slot} is out of range: the XDP maps hold {MAX_PORTS} ports")]
    SlotOutOfRange {
        /// The slot asked for.
        slot: u32,
    },
    /// A (slot, RX queue) pair with no `XSKS` entry.
    #[error("no AF_XDP socket entry for port slot {slot} RX queue {queue}: the XDP maps hold {MAX_PORTS} ports of {MAX_QUEUES} queues")]
    QueueOutOfRange {
        /// The slot asked for.
        slot: u32,
        /// The RX queue asked for.
        queue: u32,
    },
    /// The interface runs an XDP program that is not carrier's.
    #[error("interface `{ifname}` already runs XDP program `{name}` (id {id}), which is not carrier's: remove it first (ip link set dev {ifname} xdp off)")]
    ForeignProgram {
        /// The interface.
        ifname: String,
        /// The other program's name as the kernel reports it.
        name: String,
        /// The other program's id.
        id: u32,
    },
    /// A `carrier_xdp` from an earlier dataplane could not be removed.
    #[error("could not detach the stale `{XDP_PROGRAM_NAME}` (program id {id}) from `{ifname}`: {reason}")]
    StaleProgram {
        /// The interface.
        ifname: String,
        /// The stale program's id.
        id: u32,
        /// What went wrong.
        reason: String,
    },
    /// Both native and skb mode attachment failed.
    #[error(
        "attaching `{XDP_PROGRAM_NAME}` to `{ifname}` failed in native mode ({}) and in skb mode ({})",
        error_chain(.native),
        error_chain(.skb)
    )]
    Attach {
        /// The interface.
        ifname: String,
        /// The native (driver) mode error.
        native: Box<ProgramError>,
        /// The generic (skb) mode error.
        skb: Box<ProgramError>,
    },
    /// Detaching from a port failed.
    #[error("detaching `{XDP_PROGRAM_NAME}` from `{ifname}`")]
    Detach {
        /// The interface.
        ifname: String,
        /// What went wrong.
        #[source]
        source: Box<ProgramError>,
    },
    /// Reading an interface's XDP state with `ip` failed.
    #[error("reading the XDP state of `{ifname}` with `ip -j -d link show`: {reason}")]
    Inspect {
        /// The interface.
        ifname: String,
        /// What went wrong.
        reason: String,
    },
}

/// One port the program is attached to.
#[derive(Debug)]
struct Port {
    ifindex: u32,
    slot: u32,
    /// The port takes redirected frames, so the express tier may send out of it.
    egress: bool,
    link: XdpLinkId,
}

/// carrier's loaded XDP program and its maps. See the module documentation.
#[derive(Debug)]
pub struct XdpDataplane {
    ebpf: Ebpf,
    /// Attached ports by interface name.
    ports: BTreeMap<String, Port>,
}

impl XdpDataplane {
    /// Loads the embedded object: creates the maps and verifies `carrier_xdp`.
    pub fn load() -> Result<Self, XdpError> {
        let object = embedded_object().ok_or(XdpError::ObjectMissing)?;
        let mut ebpf = Ebpf::load(object).map_err(|error| {
            if error_chain_has_os_error(&error, libc::EPERM) {
                XdpError::PermissionDenied {
                    what: "creating the XDP maps",
                }
            } else {
                XdpError::Object(Box::new(error))
            }
        })?;
        let program: &mut Xdp = ebpf
            .program_mut(XDP_PROGRAM_NAME)
            .ok_or(XdpError::ProgramMissing)?
            .try_into()
            .map_err(|_| XdpError::ProgramMissing)?;
        program.load().map_err(|error| {
            if program_os_error(&error) == Some(libc::EPERM) {
                XdpError::PermissionDenied {
                    what: "loading the XDP program",
                }
            } else {
                XdpError::Verifier(Box::new(error))
            }
        })?;
        Ok(XdpDataplane {
            ebpf,
            ports: BTreeMap::new(),
        })
    }

    /// Attaches `carrier_xdp` to `ifname` as carrier port `slot`: native mode, or skb
    /// mode when native fails. A stale `carrier_xdp` on the interface is detached
    /// first; another program makes this fail with [`XdpError::ForeignProgram`].
    /// Attaching an interface again moves it to the new slot.
    pub fn attach(&mut self, ifname: &str, slot: u32) -> Result<AttachMode, XdpError> {
        if slot >= MAX_PORTS {
            return Err(XdpError::SlotOutOfRange { slot });
        }
        if self.ports.contains_key(ifname) {
            self.detach(ifname)?;
        }
        let ifindex = if_index(ifname)?;
        self.set_port_slot(ifindex, Some(slot))?;

        let attached = match self.attach_link(ifname, ifindex) {
            Err(error) if is_busy(&error) => self
                .remove_stale(ifname)
                .and_then(|()| self.attach_link(ifname, ifindex)),
            other => other,
        };
        if let Err(error) = self.set_egress(slot, ifindex) {
            log::warn!("express tier: no egress entry for {ifname}: {}", error_chain(&error));
        }
        match attached {
            Ok((link, mode)) => {
                log::info!(
                    "attached {XDP_PROGRAM_NAME} to {ifname} (ifindex {ifindex}, port slot {slot}) in {mode} mode"
                );
                self.ports.insert(ifname.to_owned(), Port { ifindex, slot, egress: true, link });
                Ok(mode)
            }
            Err(error) => {
                let _ignored = self.set_port_slot(ifindex, None);
                Err(error)
            }
        }
    }

    /// Detaches the program from `ifname`, if this dataplane attached it there.
    pub fn detach(&mut self, ifname: &str) -> Result<(), XdpError> {
        let Some(port) = self.ports.remove(ifname) else {
            return Ok(());
        };
        let detached = self
            .program_mut()?
            .detach(port.link)
            .map_err(|source| XdpError::Detach {
                ifname: ifname.to_owned(),
                source: Box::new(source),
            });
        // The slot entry is harmless once the program is off the interface, and the
        // ifindex may already be gone: a failed removal is not worth reporting.
        let _ignored = self.set_port_slot(port.ifindex, None);
        log::info!("detached {XDP_PROGRAM_NAME} from {ifname}");
        detached
    }

    /// Detaches the program from every port; returns the first error after trying all.
    pub fn detach_all(&mut self) -> Result<(), XdpError> {
        let ifnames: Vec<String> = self.ports.keys().cloned().collect();
        let mut first_error = None;
        for ifname in ifnames {
            if let Err(error) = self.detach(&ifname) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Marks `addr` as one of the router's own: BGP to or from it and ARP replies for
    /// it go to the kernel instead of the AF_XDP socket.
    pub fn add_host_addr(&mut self, addr: Ipv4Addr) -> Result<(), XdpError> {
        self.host_addrs()?
            .insert(host_addr_key(addr), HOST_ADDR_LOCAL, 0)
            .map_err(map_error(xdp_maps::HOST_ADDRS))
    }

    /// Forgets `addr` as one of the router's own; absent addresses are fine.
    pub fn remove_host_addr(&mut self, addr: Ipv4Addr) -> Result<(), XdpError> {
        match self.host_addrs()?.remove(&host_addr_key(addr)) {
            Err(MapError::KeyNotFound) | Ok(()) => Ok(()),
            Err(source) => Err(map_error(xdp_maps::HOST_ADDRS)(source)),
        }
    }

    /// Steers frames of port `slot`, RX queue `queue` to the AF_XDP socket `socket`.
    pub fn bind_socket(
        &mut self,
        slot: u32,
        queue: u32,
        socket: BorrowedFd<'_>,
    ) -> Result<(), XdpError> {
        let index = xsk_index(slot, queue).ok_or(XdpError::QueueOutOfRange { slot, queue })?;
        self.xsks()?
            .set(index, socket, 0)
            .map_err(map_error(xdp_maps::XSKS))
    }

    /// Stops steering port `slot`, RX queue `queue` to a socket: its frames go to the
    /// kernel again. Unbound entries are fine.
    pub fn unbind_socket(&mut self, slot: u32, queue: u32) -> Result<(), XdpError> {
        let index = xsk_index(slot, queue).ok_or(XdpError::QueueOutOfRange { slot, queue })?;
        match self.xsks()?.unset(index) {
            Err(MapError::KeyNotFound) | Ok(()) => Ok(()),
            Err(source) => Err(map_error(xdp_maps::XSKS)(source)),
        }
    }

    /// The counters of port `slot`, summed over all CPUs.
    pub fn port_stats(&self, slot: u32) -> Result<XdpPortStats, XdpError> {
        if slot >= MAX_PORTS {
            return Err(XdpError::SlotOutOfRange { slot });
        }
        let map = self
            .ebpf
            .map(xdp_maps::PORT_STATS)
            .ok_or(XdpError::MapMissing(xdp_maps::PORT_STATS))?;
        let stats: PerCpuArray<&MapData, PortStatsValue> =
            PerCpuArray::try_from(map).map_err(map_error(xdp_maps::PORT_STATS))?;
        let per_cpu = stats
            .get(&slot, 0)
            .map_err(map_error(xdp_maps::PORT_STATS))?;
        Ok(per_cpu
            .iter()
            .fold(XdpPortStats::default(), |sum, PortStatsValue(cpu)| {
                XdpPortStats {
                    redirected: sum.redirected + cpu.redirected,
                    passed: sum.passed + cpu.passed,
                    dropped: sum.dropped + cpu.dropped,
                }
            }))
    }

    /// Attaches in native mode, else in skb mode.
    fn attach_link(
        &mut self,
        ifname: &str,
        ifindex: u32,
    ) -> Result<(XdpLinkId, AttachMode), XdpError> {
        let program = self.program_mut()?;
        let native = match program.attach_to_if_index(ifindex, XdpMode::Driver) {
            Ok(link) => return Ok((link, AttachMode::Native)),
            Err(error) => error,
        };
        match program.attach_to_if_index(ifindex, XdpMode::Skb) {
            Ok(link) => {
                log::info!("{ifname}: native XDP failed ({native}); falling back to skb mode");
                Ok((link, AttachMode::Skb))
            }
            Err(skb) => {
                if [&native, &skb]
                    .into_iter()
                    .any(|error| program_os_error(error) == Some(libc::EPERM))
                {
                    return Err(XdpError::PermissionDenied {
                        what: "attaching the XDP program",
                    });
                }
                Err(XdpError::Attach {
                    ifname: ifname.to_owned(),
                    native: Box::new(native),
                    skb: Box::new(skb),
                })
            }
        }
    }

    /// Removes a `carrier_xdp` that an earlier dataplane left on `ifname`; refuses to
    /// touch any other program.
    fn remove_stale(&mut self, ifname: &str) -> Result<(), XdpError> {
        let attached = attached_programs(ifname)?;
        if let Some(foreign) = attached
            .iter()
            .find(|program| program.name != XDP_PROGRAM_NAME)
        {
            return Err(XdpError::ForeignProgram {
                ifname: ifname.to_owned(),
                name: foreign.name.clone(),
                id: foreign.id,
            });
        }
        for stale in &attached {
            log::warn!(
                "{ifname}: detaching stale {XDP_PROGRAM_NAME} (program id {}) left by an earlier dataplane",
                stale.id
            );
        }
        if attached.is_empty() {
            return Ok(());
        }

        // A netlink ("legacy") attachment outlives the process that made it: that is
        // what a dataplane that crashed leaves behind. The mode must match, so clear
        // both; clearing an empty mode is a no-op.
        for mode in ["xdpgeneric", "xdpdrv"] {
            let _ignored = Command::new("ip")
                .args(["link", "set", "dev", ifname, mode, "off"])
                .output();
        }
        let attached = attached_programs(ifname)?;
        if attached.is_empty() {
            return Ok(());
        }

        // A BPF link: its owner still holds it open (or pinned it). Detach the link
        // itself, which leaves the owner a defunct link.
        let ifindex = if_index(ifname)?;
        for stale in &attached {
            bpf_link::detach_xdp_links(ifindex, stale.id).map_err(|error| {
                XdpError::StaleProgram {
                    ifname: ifname.to_owned(),
                    id: stale.id,
                    reason: error.to_string(),
                }
            })?;
        }
        match attached_programs(ifname)?.first() {
            None => Ok(()),
            Some(still) => Err(XdpError::StaleProgram {
                ifname: ifname.to_owned(),
                id: still.id,
                reason: "still attached after removing its netlink attachment and BPF links"
                    .to_owned(),
            }),
        }
    }

    fn program_mut(&mut self) -> Result<&mut Xdp, XdpError> {
        self.ebpf
            .program_mut(XDP_PROGRAM_NAME)
            .ok_or(XdpError::ProgramMissing)?
            .try_into()
            .map_err(|_| XdpError::ProgramMissing)
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, XdpError> {
        self.ebpf.map_mut(name).ok_or(XdpError::MapMissing(name))
    }

    /// Records (or, `None`, forgets) the port slot of `ifindex`: in `PORT_BY_IFINDEX` for
    /// small ifindexes, in `PORT_SLOTS` for the others. Forgetting an absent entry is fine.
    fn set_port_slot(&mut self, ifindex: u32, slot: Option<u32>) -> Result<(), XdpError> {
        if ifindex < carrier_common::SMALL_IFINDEX {
            let mut map: Array<&mut MapData, u32> = Array::try_from(self.map_mut(xdp_maps::PORT_BY_IFINDEX)?).map_err(map_error(xdp_maps::PORT_BY_IFINDEX))?;
            return map.set(ifindex, slot.map_or(0, |s| s + 1), 0).map_err(map_error(xdp_maps::PORT_BY_IFINDEX));
        }
        let mut slots = self.port_slots()?;
        match slot {
            Some(s) => slots.insert(ifindex, s, 0).map_err(map_error(xdp_maps::PORT_SLOTS)),
            None => match slots.remove(&ifindex) {
                Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
                Err(e) => Err(map_error(xdp_maps::PORT_SLOTS)(e)),
            },
        }
    }

    fn port_slots(&mut self) -> Result<HashMap<&mut MapData, u32, u32>, XdpError> {
        HashMap::try_from(self.map_mut(xdp_maps::PORT_SLOTS)?)
            .map_err(map_error(xdp_maps::PORT_SLOTS))
    }

    fn host_addrs(&mut self) -> Result<HashMap<&mut MapData, u32, u32>, XdpError> {
        HashMap::try_from(self.map_mut(xdp_maps::HOST_ADDRS)?)
            .map_err(map_error(xdp_maps::HOST_ADDRS))
    }

    fn xsks(&mut self) -> Result<XskMap<&mut MapData>, XdpError> {
        XskMap::try_from(self.map_mut(xdp_maps::XSKS)?).map_err(map_error(xdp_maps::XSKS))
    }
}

impl Drop for XdpDataplane {
    fn drop(&mut self) {
        if let Err(error) = self.detach_all() {
            log::warn!("detaching XDP on shutdown: {}", error_chain(&error));
        }
    }
}

/// Express-tier map values as aya reads and writes them.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Raw<T>(T);

/// Plain `#[repr(C)]` records of integers and byte arrays without padding: any bit pattern
/// is a valid value.
///
/// # Safety
/// Implement only for such types.
unsafe trait Plain: Copy + 'static {}
// SAFETY: `#[repr(C)]` records of integers and byte arrays, no padding (their sizes are
// checked in `carrier_common`'s tests).
unsafe impl Plain for express::ExConfig {}
// SAFETY: as above.
unsafe impl Plain for express::ExPort {}
// SAFETY: as above.
unsafe impl Plain for express::ExAdj {}
// SAFETY: as above.
unsafe impl Plain for express::ExIlm {}
// SAFETY: as above.
unsafe impl Plain for express::MacKey {}
// SAFETY: as above.
unsafe impl Plain for express::ExMac {}
// SAFETY: as above.
unsafe impl Plain for express::PortAddr {}
// SAFETY: as above.
unsafe impl Plain for express::ExNeigh {}
// SAFETY: as above.
unsafe impl Plain for express::ExBytes {}
// SAFETY: as above.
unsafe impl Plain for express::ExPortStats {}
// SAFETY: an integer.
unsafe impl Plain for u32 {}
// SAFETY: `Raw` is transparent over a `Plain` type.
unsafe impl<T: Plain> Pod for Raw<T> {}

/// The express tier's counters, summed over CPUs.
#[derive(Debug, Default, Clone)]
pub struct ExpressCounters {
    /// By port slot.
    pub ports: Vec<express::ExPortStats>,
    /// By VRF id.
    pub vrfs: Vec<express::ExBytes>,
    /// (label, counters) of the labels asked for, nonzero only.
    pub labels_in: Vec<(u32, express::ExBytes)>,
    /// (adjacency slot, counters), nonzero only.
    pub adjacencies: Vec<(u32, express::ExBytes)>,
}

impl XdpDataplane {
    fn set_egress(&mut self, slot: u32, ifindex: u32) -> std::io::Result<()> {
        let mut map = DevMap::try_from(self.map_mut(express::EGRESS).map_err(io_error(express::EGRESS))?).map_err(|e| std::io::Error::other(e.to_string()))?;
        map.set(slot, ifindex, None, 0).map_err(|e| std::io::Error::other(format!("express map {}: {e}", express::EGRESS)))
    }

    /// Follows whether each port takes frames an XDP program redirects into it (the kernel's
    /// `NETDEV_XDP_ACT_NDO_XMIT`; a veth does only while its peer runs NAPI) and keeps the
    /// express tier's egress entry only for ports that do, so it never sends a frame the
    /// kernel would drop: a frame to any other port is punted to the AF_XDP path, which
    /// transmits through the stack. Returns the ports whose state changed, with the new one.
    pub fn refresh_egress(&mut self) -> Vec<(String, bool)> {
        let mut changed = vec![];
        let ports: Vec<(String, u32, u32, bool)> = self.ports.iter().map(|(n, p)| (n.clone(), p.ifindex, p.slot, p.egress)).collect();
        let features = crate::io::netdev::XdpFeatures::open();
        for (name, ifindex, slot, was) in ports {
            let takes = match features.as_ref().map_err(|_| ()).and_then(|f| f.get(ifindex).map_err(|_| ())) {
                Ok(Some(f)) => f & crate::io::netdev::XDP_ACT_NDO_XMIT != 0,
                // A kernel without the netdev family cannot say: assume the port does.
                Ok(None) => true,
                Err(_) => was,
            };
            if takes == was {
                continue;
            }
            let done = if takes { self.set_egress(slot, ifindex) } else { self.clear_egress(slot) };
            match done {
                Ok(()) => {
                    if let Some(p) = self.ports.get_mut(&name) {
                        p.egress = takes;
                    }
                    changed.push((name, takes));
                }
                Err(e) => log::warn!("express tier: egress entry of {name}: {e}"),
            }
        }
        changed
    }

    fn clear_egress(&mut self, slot: u32) -> std::io::Result<()> {
        use std::os::fd::{AsFd, AsRawFd};
        let map = self.ebpf.map(express::EGRESS).ok_or_else(|| std::io::Error::other("no EX_EGRESS map"))?;
        let devmap = DevMap::try_from(map).map_err(|e| std::io::Error::other(e.to_string()))?;
        let fd = devmap.map().fd().as_fd().as_raw_fd();
        #[repr(C)]
        struct DeleteAttr {
            map_fd: u32,
            pad: u32,
            key: u64,
            value: u64,
            flags: u64,
        }
        let key = slot;
        let attr = DeleteAttr { map_fd: fd as u32, pad: 0, key: &key as *const u32 as u64, value: 0, flags: 0 };
        // SAFETY: BPF_MAP_DELETE_ELEM (3) reads `attr` and the 4-byte key it points at, both
        // alive for the call.
        let r = unsafe { libc::syscall(libc::SYS_bpf, 3, &attr as *const DeleteAttr, std::mem::size_of::<DeleteAttr>()) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Set (`Some`) or remove (`None`; absent is fine) a key of the express hash map `name`.
    fn hash_set<K: Plain, V: Plain>(&mut self, name: &'static str, key: K, value: Option<V>) -> std::io::Result<()> {
        let mut map = HashMap::<&mut MapData, Raw<K>, Raw<V>>::try_from(self.map_mut(name).map_err(io_error(name))?).map_err(|e| std::io::Error::other(e.to_string()))?;
        let r = match value {
            Some(v) => map.insert(Raw(key), Raw(v), 0),
            None => match map.remove(&Raw(key)) {
                Err(MapError::KeyNotFound) => Ok(()),
                Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                other => other,
            },
        };
        r.map_err(|e| std::io::Error::other(format!("express map {name}: {e}")))
    }

    fn array<T: Plain>(&mut self, name: &'static str) -> Result<Array<&mut MapData, Raw<T>>, XdpError> {
        Array::try_from(self.map_mut(name)?).map_err(map_error(name))
    }

    /// The per-CPU sums of `count` entries of per-CPU array `name` from `first`, read in
    /// batches (one system call per batch, not per entry).
    fn per_cpu_sums(&self, name: &'static str, first: u32, count: u32) -> Result<Vec<express::ExBytes>, XdpError> {
        use std::os::fd::{AsFd, AsRawFd};
        let map = self.ebpf.map(name).ok_or(XdpError::MapMissing(name))?;
        let arr: PerCpuArray<&MapData, Raw<express::ExBytes>> = PerCpuArray::try_from(map).map_err(map_error(name))?;
        let fd = arr.map().fd().as_fd().as_raw_fd();
        let mut out = Vec::with_capacity(count as usize);
        let mut next = first;
        let end = first.saturating_add(count);
        while next < end {
            let n = LOOKUP_BATCH.min(end - next);
            // An array's batch cursor is the last index read.
            let (got, _, _) = lookup_sums_batch(name, fd, (next != 0).then(|| next - 1), n)?;
            let len = got.len();
            out.extend(got.into_iter().map(|(_, sum)| sum));
            if len < n as usize {
                break;
            }
            next += n;
        }
        Ok(out)
    }

    /// The express tier's counters: ports and VRFs (`vrfs` of them), the labels in
    /// `labels`, and adjacency slots below `slots`.
    pub fn express_counters(&self, vrfs: u32, labels: &[u32], slots: u32) -> Result<ExpressCounters, XdpError> {
        let mut c = ExpressCounters::default();
        let map = self.ebpf.map(express::PORT_STATS).ok_or(XdpError::MapMissing(express::PORT_STATS))?;
        let ports: PerCpuArray<&MapData, Raw<express::ExPortStats>> = PerCpuArray::try_from(map).map_err(map_error(express::PORT_STATS))?;
        for slot in 0..self.ports.values().map(|p| p.slot + 1).max().unwrap_or(0) {
            let per_cpu = ports.get(&slot, 0).map_err(map_error(express::PORT_STATS))?;
            let mut sum = express::ExPortStats::default();
            for Raw(s) in per_cpu.iter() {
                sum.rx.packets += s.rx.packets;
                sum.rx.bytes += s.rx.bytes;
                sum.tx.packets += s.tx.packets;
                sum.tx.bytes += s.tx.bytes;
                sum.headroom_ok += s.headroom_ok;
                sum.headroom_short += s.headroom_short;
                for (a, b) in sum.punts.iter_mut().zip(&s.punts) {
                    *a += b;
                }
                sum.arp_replies += s.arp_replies;
                sum.arp_proxy_replies += s.arp_proxy_replies;
                sum.arp_suppressed += s.arp_suppressed;
            }
            c.ports.push(sum);
        }
        c.vrfs = self.per_cpu_sums(express::VRF_STATS, 0, vrfs.min(express::MAX_VRFS))?;
        if let (Some(lo), Some(hi)) = (labels.iter().min(), labels.iter().max()) {
            let all = self.per_cpu_sums(express::LABEL_STATS, *lo, hi - lo + 1)?;
            c.labels_in = labels.iter().filter_map(|l| all.get((l - lo) as usize).filter(|b| b.packets > 0).map(|b| (*l, *b))).collect();
        }
        if slots > 0 {
            c.adjacencies = self.per_cpu_sums(express::ADJ_STATS, 0, slots.min(express::MAX_ADJ))?.into_iter().enumerate().filter(|(_, b)| b.packets > 0).map(|(i, b)| (i as u32, b)).collect();
        }
        Ok(c)
    }
}

impl XdpDataplane {
    /// Runs `carrier_xdp` once on `frame` as if it had arrived on interface `ifindex`, RX
    /// queue 0 (`BPF_PROG_TEST_RUN`): the program's action and the frame as it left it.
    /// Maps are read and written as for a real frame; a redirect is only returned, not
    /// done. For tests.
    pub fn test_run(&self, ifindex: u32, frame: &[u8]) -> std::io::Result<(u32, Vec<u8>)> {
        self.test_run_on_queue(ifindex, 0, frame)
    }

    /// [`XdpDataplane::test_run`] on RX queue `queue`.
    pub fn test_run_on_queue(&self, ifindex: u32, queue: u32, frame: &[u8]) -> std::io::Result<(u32, Vec<u8>)> {
        use std::os::fd::{AsFd, AsRawFd};
        let program: &Xdp = self
            .ebpf
            .program(XDP_PROGRAM_NAME)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| std::io::Error::other("no carrier_xdp program"))?;
        let fd = program.fd().map_err(|e| std::io::Error::other(e.to_string()))?.as_fd().as_raw_fd();
        let mut out = vec![0u8; frame.len() + 256];
        let ctx = XdpMd { data_end: frame.len() as u32, ingress_ifindex: ifindex, rx_queue_index: queue, ..XdpMd::default() };
        let mut attr = BpfTestRun {
            prog_fd: fd as u32,
            data_size_in: frame.len() as u32,
            data_size_out: out.len() as u32,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: 1,
            ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
            ctx_in: std::ptr::from_ref(&ctx) as u64,
            ..BpfTestRun::default()
        };
        // SAFETY: the frame, the output buffer and the context live across the call, with
        // the sizes given.
        unsafe { bpf_prog_test_run(&mut attr)? };
        out.truncate(attr.data_size_out as usize);
        Ok((attr.retval, out))
    }
}

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h), as of Linux 5.18: the
/// argument of `BPF_PROG_TEST_RUN`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct BpfTestRun {
    /// The program.
    pub prog_fd: u32,
    /// Out: the program's return value (an XDP action).
    pub retval: u32,
    /// Bytes at `data_in`.
    pub data_size_in: u32,
    /// In: room at `data_out`; out: bytes written there.
    pub data_size_out: u32,
    /// The frame.
    pub data_in: u64,
    /// Where the frame goes after the program (0: nowhere).
    pub data_out: u64,
    /// Program runs.
    pub repeat: u32,
    /// Out: mean nanoseconds per run.
    pub duration: u32,
    /// Bytes at `ctx_in`.
    pub ctx_size_in: u32,
    /// Room at `ctx_out`.
    pub ctx_size_out: u32,
    /// The context: an [`XdpMd`] for XDP.
    pub ctx_in: u64,
    /// Where the context goes after the program (0: nowhere).
    pub ctx_out: u64,
    /// `BPF_F_TEST_*`, e.g. [`BPF_F_TEST_XDP_LIVE_FRAMES`].
    pub flags: u32,
    /// CPU to run on (with `BPF_F_TEST_RUN_ON_CPU`).
    pub cpu: u32,
    /// Frames per batch in live-frames mode.
    pub batch_size: u32,
    /// The struct's tail padding, zero (the kernel checks every byte past the last field it
    /// knows is zero).
    pub _pad: u32,
}

/// `struct xdp_md` (include/uapi/linux/bpf.h): the context `BPF_PROG_TEST_RUN` takes for
/// XDP. `data` 0 and `data_end` the frame's length (no metadata), `egress_ifindex` 0.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct XdpMd {
    /// Start of the frame (0).
    pub data: u32,
    /// End of the frame: its length.
    pub data_end: u32,
    /// Start of the metadata (0).
    pub data_meta: u32,
    /// The interface the frame arrives on.
    pub ingress_ifindex: u32,
    /// Its RX queue.
    pub rx_queue_index: u32,
    /// 0.
    pub egress_ifindex: u32,
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: redirects and `XDP_TX` are carried out, as for a received
/// frame (Linux 5.18).
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `BPF_PROG_TEST_RUN` with `attr`.
///
/// # Safety
/// Every pointer in `attr` must be valid for the size given beside it for the whole call.
pub unsafe fn bpf_prog_test_run(attr: &mut BpfTestRun) -> std::io::Result<()> {
    // SAFETY: `attr` is the kernel's layout; its pointers are the caller's promise.
    let r = unsafe { libc::syscall(libc::SYS_bpf, 10 /* BPF_PROG_TEST_RUN */, std::ptr::from_mut(attr), std::mem::size_of::<BpfTestRun>()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `bpf_attr` for the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries one lookup batch carries.
const LOOKUP_BATCH: u32 = 4096;

/// One lookup batch: (key, sum over CPUs) per entry, the cursor to go on from, whether the
/// map ended.
type SumsBatch = (Vec<(u32, express::ExBytes)>, u32, bool);

/// One `BPF_MAP_LOOKUP_BATCH` of up to `n` entries of the per-CPU map `fd` (`name`; u32 keys,
/// `ExBytes` values) from the batch cursor `from` (`None`: the start): each entry's key and
/// sum over CPUs, the cursor to go on from, and whether the map ended (a u32 cursor: an
/// array's is the last index read, a hash map's a bucket).
fn lookup_sums_batch(name: &'static str, fd: std::os::fd::RawFd, from: Option<u32>, n: u32) -> Result<SumsBatch, XdpError> {
    let syscall = |call: &'static str, io_error: std::io::Error| XdpError::Map { map: name, source: Box::new(MapError::SyscallError(aya::sys::SyscallError { call, io_error })) };
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| syscall("nr_cpus", e))?;
    let mut keys = vec![0u32; n as usize];
    let mut values = vec![express::ExBytes::default(); n as usize * cpus];
    let mut in_batch = from.unwrap_or(0);
    let mut out_batch: u32 = 0;
    let mut attr = BatchAttr {
        in_batch: if from.is_some() { &mut in_batch as *mut u32 as u64 } else { 0 },
        out_batch: &mut out_batch as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: n,
        map_fd: fd as u32,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: `attr` is the kernel's `bpf_attr.batch` layout; the buffers hold `n` keys and
    // `n * cpus` values of the map's value size (16 bytes, a multiple of 8).
    let r = unsafe { libc::syscall(libc::SYS_bpf, 24 /* BPF_MAP_LOOKUP_BATCH */, &mut attr as *mut BatchAttr, std::mem::size_of::<BatchAttr>()) };
    let done = if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(syscall("bpf_map_lookup_batch", e));
        }
        true
    } else {
        false
    };
    let got = (0..attr.count as usize)
        .map(|i| {
            let sum = values[i * cpus..(i + 1) * cpus].iter().fold(express::ExBytes::default(), |mut s, c| {
                s.packets += c.packets;
                s.bytes += c.bytes;
                s
            });
            (keys[i], sum)
        })
        .collect();
    Ok((got, out_batch, done))
}

fn io_error(name: &'static str) -> impl Fn(XdpError) -> std::io::Error {
    move |e| std::io::Error::other(format!("express map {name}: {}", error_chain(&e)))
}

impl crate::express::ExpressMaps for XdpDataplane {
    fn set_config(&mut self, config: express::ExConfig) -> std::io::Result<()> {
        self.array(express::CONFIG).and_then(|mut m| m.set(0, Raw(config), 0).map_err(map_error(express::CONFIG))).map_err(io_error(express::CONFIG))
    }
    fn set_port(&mut self, slot: u32, port: express::ExPort) -> std::io::Result<()> {
        self.array(express::PORTS).and_then(|mut m| m.set(slot, Raw(port), 0).map_err(map_error(express::PORTS))).map_err(io_error(express::PORTS))
    }
    fn set_fib(&mut self, entries: &[(u32, u32)]) -> std::io::Result<()> {
        self.set_u32s(express::FIB, entries)
    }
    fn set_fib_slots(&mut self, slots: &[(u32, u32)]) -> std::io::Result<()> {
        self.set_u32s(express::FIB_SLOTS, slots)
    }
    fn set_nexthop(&mut self, nexthop: u32, at: u32) -> std::io::Result<()> {
        self.set_u32s(express::NH, &[(nexthop, at)])
    }
    fn set_adj(&mut self, slot: u32, adj: express::ExAdj) -> std::io::Result<()> {
        self.array(express::ADJ).and_then(|mut m| m.set(slot, Raw(adj), 0).map_err(map_error(express::ADJ))).map_err(io_error(express::ADJ))
    }
    fn set_ilm(&mut self, label: u32, entry: express::ExIlm) -> std::io::Result<()> {
        self.array(express::ILM).and_then(|mut m| m.set(label, Raw(entry), 0).map_err(map_error(express::ILM))).map_err(io_error(express::ILM))
    }
    fn set_vni(&mut self, vni: u32, vrf: Option<u32>) -> std::io::Result<()> {
        self.hash_set(express::VNI, vni, vrf)
    }
    fn set_mac(&mut self, key: express::MacKey, mac: Option<express::ExMac>) -> std::io::Result<()> {
        self.hash_set(express::MACS, key, mac)
    }
    fn set_neighbour(&mut self, key: express::PortAddr, neighbour: Option<express::ExNeigh>) -> std::io::Result<()> {
        self.hash_set(express::NEIGH, key, neighbour)
    }
    fn set_arp_bind(&mut self, key: express::PortAddr, mac: Option<express::ExNeigh>) -> std::io::Result<()> {
        self.hash_set(express::ARP_BIND, key, mac)
    }
    fn set_nh_arp(&mut self, nexthop: u32, value: u32) -> std::io::Result<()> {
        self.set_u32s(express::NH_ARP, &[(nexthop, value)])
    }
    fn set_own(&mut self, key: express::PortAddr, own: bool) -> std::io::Result<()> {
        self.hash_set(express::OWN, key, own.then_some(1u32))
    }
    fn set_adjs(&mut self, items: &[(u32, express::ExAdj)]) -> std::io::Result<()> {
        let keys: Vec<u32> = items.iter().map(|i| i.0).collect();
        let values: Vec<express::ExAdj> = items.iter().map(|i| i.1).collect();
        let fd = self.raw_map_fd(express::ADJ)?;
        if items.is_empty() || write_batch(fd, plain_bytes(&keys), 4, Some((plain_bytes(&values), std::mem::size_of::<express::ExAdj>())), items.len())? {
            return Ok(());
        }
        items.iter().try_for_each(|(slot, adj)| self.set_adj(*slot, *adj))
    }
    fn set_nexthops(&mut self, items: &[(u32, u32)]) -> std::io::Result<()> {
        self.set_u32s(express::NH, items)
    }
    fn take_adj_counters(&mut self, slot: u32) -> std::io::Result<(u64, u64)> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let mut map: PerCpuArray<&mut MapData, Raw<express::ExBytes>> =
            PerCpuArray::try_from(self.map_mut(express::ADJ_STATS).map_err(io_error(express::ADJ_STATS))?).map_err(|e| std::io::Error::other(e.to_string()))?;
        let per_cpu = map.get(&slot, 0).map_err(|e| std::io::Error::other(e.to_string()))?;
        let (p, b) = per_cpu.iter().fold((0, 0), |(p, b), Raw(c)| (p + c.packets, b + c.bytes));
        let zeros = aya::maps::PerCpuValues::try_from(vec![Raw(express::ExBytes::default()); cpus]).map_err(|e| std::io::Error::other(e.to_string()))?;
        map.set(slot, zeros, 0).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok((p, b))
    }
    fn clear_route_stats(&mut self, slot: u32) -> std::io::Result<()> {
        let map = self.map_mut(express::ROUTE_STATS).map_err(io_error(express::ROUTE_STATS))?;
        let mut stats: PerCpuHashMap<&mut MapData, u32, Raw<express::ExBytes>> = PerCpuHashMap::try_from(map).map_err(|e| std::io::Error::other(e.to_string()))?;
        match stats.remove(&slot) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }
}

impl XdpDataplane {
    /// What the program counted per route slot (`EX_ROUTE_STATS`), summed over CPUs, read in
    /// batches.
    pub fn route_stats(&self) -> Result<Vec<(u32, express::ExBytes)>, XdpError> {
        use std::os::fd::{AsFd, AsRawFd};
        let name = express::ROUTE_STATS;
        let map = self.ebpf.map(name).ok_or(XdpError::MapMissing(name))?;
        let stats: PerCpuHashMap<&MapData, u32, Raw<express::ExBytes>> = PerCpuHashMap::try_from(map).map_err(map_error(name))?;
        let fd = stats.map().fd().as_fd().as_raw_fd();
        let mut out = vec![];
        let mut cursor = None;
        loop {
            let (got, next, done) = lookup_sums_batch(name, fd, cursor, LOOKUP_BATCH)?;
            out.extend(got);
            if done {
                return Ok(out);
            }
            cursor = Some(next);
        }
    }
}

impl XdpDataplane {
    /// Write (index, value) entries of the `Array<u32>` map `name`, in order: in batches
    /// where the kernel has them, else one at a time.
    fn set_u32s(&mut self, name: &'static str, items: &[(u32, u32)]) -> std::io::Result<()> {
        let keys: Vec<u32> = items.iter().map(|i| i.0).collect();
        let values: Vec<u32> = items.iter().map(|i| i.1).collect();
        let fd = self.raw_map_fd(name)?;
        if items.is_empty() || write_batch(fd, plain_bytes(&keys), 4, Some((plain_bytes(&values), 4)), items.len())? {
            return Ok(());
        }
        let mut map = Array::<&mut MapData, u32>::try_from(self.map_mut(name).map_err(io_error(name))?).map_err(|e| std::io::Error::other(format!("express map {name}: {e}")))?;
        items.iter().try_for_each(|(i, v)| map.set(*i, *v, 0).map_err(|e| std::io::Error::other(format!("express map {name}: {e}"))))
    }

    /// The file descriptor of array map `name`.
    fn raw_map_fd(&self, name: &'static str) -> std::io::Result<std::os::fd::RawFd> {
        use std::os::fd::{AsFd, AsRawFd};
        match self.ebpf.map(name) {
            Some(Map::Array(d)) => Ok(d.fd().as_fd().as_raw_fd()),
            _ => Err(std::io::Error::other(format!("no array map {name}"))),
        }
    }
}

/// Most entries one batch system call carries.
const WRITE_BATCH: usize = 8192;

/// `BPF_MAP_UPDATE_BATCH` (`values` given) or `BPF_MAP_DELETE_BATCH` (`values` `None`) of
/// `count` entries, `key_size` / `value_size` bytes each, in chunks of [`WRITE_BATCH`]. A
/// deletion of an absent key skips that key. `Ok(false)` when the kernel has no batch
/// operations for this map (the caller then writes one entry at a time).
fn write_batch(fd: std::os::fd::RawFd, keys: &[u8], key_size: usize, values: Option<(&[u8], usize)>, count: usize) -> std::io::Result<bool> {
    let mut done = 0;
    while done < count {
        let n = (count - done).min(WRITE_BATCH);
        let mut attr = BatchAttr {
            in_batch: 0,
            out_batch: 0,
            keys: keys[done * key_size..].as_ptr() as u64,
            values: values.map_or(0, |(v, size)| v[done * size..].as_ptr() as u64),
            count: n as u32,
            map_fd: fd as u32,
            elem_flags: 0,
            flags: 0,
        };
        let cmd = if values.is_some() { 26 /* BPF_MAP_UPDATE_BATCH */ } else { 27 /* BPF_MAP_DELETE_BATCH */ };
        // SAFETY: `attr` is the kernel's `bpf_attr.batch` layout; `keys` (and `values`) hold
        // `n` entries of the map's key (and value) size from the offsets given, alive for
        // the call.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, &mut attr as *mut BatchAttr, std::mem::size_of::<BatchAttr>()) };
        if r == 0 {
            done += n;
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            // EINVAL, ENOTSUPP (the kernel's 524) or EOPNOTSUPP before anything was written:
            // no batch operations for this map type.
            Some(libc::EINVAL | 524 | libc::EOPNOTSUPP) if done == 0 && attr.count == 0 => return Ok(false),
            // A deletion stopped at an absent key: skip it.
            Some(libc::ENOENT) if values.is_none() => done += attr.count as usize + 1,
            _ => return Err(e),
        }
    }
    Ok(true)
}

/// The raw bytes of `Plain` values, in order.
fn plain_bytes<T: Plain>(values: &[T]) -> &[u8] {
    // SAFETY: `Plain` types have no padding and any bit pattern; the slice covers exactly
    // `values`.
    unsafe { std::slice::from_raw_parts(values.as_ptr() as *const u8, std::mem::size_of_val(values)) }
}

/// `PORT_STATS` values as aya reads them.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct PortStatsValue(XdpPortStats);

// SAFETY: `XdpPortStats` is `#[repr(C)]` with three `u64` fields: no padding, and
// every bit pattern is a valid value. `repr(transparent)` keeps that layout.
unsafe impl Pod for PortStatsValue {}

/// The `HOST_ADDRS` key of `addr`: its bytes in network order, read as the XDP
/// program reads them from the packet.
fn host_addr_key(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

fn map_error(map: &'static str) -> impl Fn(MapError) -> XdpError {
    move |source| XdpError::Map {
        map,
        source: Box::new(source),
    }
}

/// The ifindex of `ifname` in this process's network namespace.
fn if_index(ifname: &str) -> Result<u32, XdpError> {
    crate::io::netdev::ifindex(ifname).ok_or_else(|| XdpError::UnknownInterface { ifname: ifname.to_owned() })
}

/// The errno behind an aya program error, when there is one.
fn program_os_error(error: &ProgramError) -> Option<i32> {
    match error {
        ProgramError::SyscallError(syscall) => syscall.io_error.raw_os_error(),
        ProgramError::LoadError { io_error, .. } | ProgramError::IOError(io_error) => {
            io_error.raw_os_error()
        }
        ProgramError::XdpError(AyaXdpError::NetlinkError(netlink)) => netlink.raw_os_error(),
        _ => None,
    }
}

/// True when `error` says another XDP program holds the interface: the kernel answers
/// EBUSY for the same mode and EEXIST for the other one.
fn is_busy(error: &XdpError) -> bool {
    let XdpError::Attach { native, skb, .. } = error else {
        return false;
    };
    [native, skb].into_iter().any(|error| {
        matches!(
            program_os_error(error),
            Some(libc::EBUSY) | Some(libc::EEXIST)
        )
    })
}

/// `error` and its sources, joined with ": " (aya keeps the errno in the source).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let more = source.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = source.source();
    }
    text
}

/// True when an `io::Error` with `errno` is somewhere in `error`'s source chain.
fn error_chain_has_os_error(error: &(dyn std::error::Error + 'static), errno: i32) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io_error) = error.downcast_ref::<io::Error>() {
            if io_error.raw_os_error() == Some(errno) {
                return true;
            }
        }
        if let Some(syscall) = error.downcast_ref::<aya::sys::SyscallError>() {
            if syscall.io_error.raw_os_error() == Some(errno) {
                return true;
            }
        }
        next = error.source();
    }
    false
}

/// An XDP program the kernel reports on an interface.
#[derive(Debug)]
struct AttachedProgram {
    id: u32,
    name: String,
}

/// The XDP programs on `ifname`, from `ip -j -d link show dev IFNAME`: one entry
/// per attach mode (`"xdp": {"prog": …}` or `"xdp": {"attached": [{"prog": …}]}`).
fn attached_programs(ifname: &str) -> Result<Vec<AttachedProgram>, XdpError> {
    let inspect_error = |reason: String| XdpError::Inspect {
        ifname: ifname.to_owned(),
        reason,
    };
    let output = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", ifname])
        .output()
        .map_err(|error| inspect_error(error.to_string()))?;
    if !output.status.success() {
        return Err(inspect_error(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    let links: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|error| inspect_error(error.to_string()))?;
    let Some(xdp) = links.get(0).and_then(|link| link.get("xdp")) else {
        return Ok(Vec::new());
    };
    let programs: Vec<&serde_json::Value> = match xdp.get("attached") {
        Some(serde_json::Value::Array(attached)) => attached
            .iter()
            .filter_map(|entry| entry.get("prog"))
            .collect(),
        _ => xdp.get("prog").into_iter().collect(),
    };
    programs
        .into_iter()
        .map(|program| {
            let id = program
                .get("id")
                .and_then(serde_json::Value::as_u64)
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| inspect_error(format!("no program id in {program}")))?;
            let name = program
                .get("name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Ok(AttachedProgram { id, name })
        })
        .collect()
}

/// The three `bpf(2)` commands aya does not wrap: finding and detaching a BPF link
/// that another file descriptor (another process, or a leaked handle) owns.
mod bpf_link {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use aya::programs::links::LinkType;

    // `enum bpf_cmd` and `enum bpf_link_type` values from include/uapi/linux/bpf.h.
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
    const BPF_LINK_DETACH: libc::c_long = 34;
    const BPF_LINK_TYPE_XDP: u32 = 6;

    /// The head of `struct bpf_link_info` up to `xdp.ifindex`. The kernel fills only
    /// the `info_len` bytes it is given.
    #[repr(C)]
    #[derive(Default)]
    struct XdpLinkInfo {
        link_type: u32,
        id: u32,
        prog_id: u32,
        /// The union after `prog_id` is 8-byte aligned.
        _pad: u32,
        ifindex: u32,
        _tail: u32,
    }

    /// Detaches every XDP BPF link of program `prog_id` on interface `ifindex`.
    pub(super) fn detach_xdp_links(ifindex: u32, prog_id: u32) -> io::Result<()> {
        let link_ids: Vec<u32> = aya::programs::loaded_links()
            .filter_map(Result::ok)
            .filter(|link| {
                link.program_id() == prog_id && matches!(link.link_type(), Ok(LinkType::Xdp))
            })
            .map(|link| link.id())
            .collect();
        for link_id in link_ids {
            let Ok(link) = link_fd_by_id(link_id) else {
                continue; // gone meanwhile
            };
            let info = link_info(&link)?;
            if info.link_type == BPF_LINK_TYPE_XDP && info.ifindex == ifindex {
                log::warn!(
                    "detaching XDP BPF link {link_id} (program {prog_id}) from ifindex {ifindex}"
                );
                link_detach(&link)?;
            }
        }
        Ok(())
    }

    fn bpf(cmd: libc::c_long, attr: &mut [u32]) -> io::Result<libc::c_long> {
        // SAFETY: `attr` is a live, writable, zero-initialised buffer laid out as the
        // part of `union bpf_attr` that `cmd` reads; its length is passed as the size,
        // and the kernel checks that any bytes it does not know are zero.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr.as_mut_ptr(),
                std::mem::size_of_val(attr),
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    fn link_fd_by_id(link_id: u32) -> io::Result<OwnedFd> {
        // { link_id, next_id, open_flags }
        let mut attr = [link_id, 0, 0, 0];
        let fd = bpf(BPF_LINK_GET_FD_BY_ID, &mut attr)?;
        let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf() returned a bad fd"))?;
        // SAFETY: BPF_LINK_GET_FD_BY_ID returned a new file descriptor that nothing
        // else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn link_info(link: &OwnedFd) -> io::Result<XdpLinkInfo> {
        let mut info = XdpLinkInfo::default();
        let pointer = std::ptr::from_mut(&mut info) as u64;
        let info_len = u32::try_from(std::mem::size_of::<XdpLinkInfo>())
            .map_err(|_| io::Error::other("bpf_link_info too large"))?;
        let fd = u32::try_from(link.as_raw_fd()).map_err(|_| io::Error::other("bad fd"))?;
        // { bpf_fd, info_len, info (u64 pointer, little-endian halves on x86_64) }
        #[cfg(target_endian = "little")]
        let mut attr = [fd, info_len, pointer as u32, (pointer >> 32) as u32];
        #[cfg(target_endian = "big")]
        let mut attr = [fd, info_len, (pointer >> 32) as u32, pointer as u32];
        // The kernel writes into `info` through the pointer above; `info` outlives
        // the call.
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
        Ok(info)
    }

    fn link_detach(link: &OwnedFd) -> io::Result<()> {
        let fd = u32::try_from(link.as_raw_fd()).map_err(|_| io::Error::other("bad fd"))?;
        // { link_fd }
        let mut attr = [fd, 0];
        bpf(BPF_LINK_DETACH, &mut attr).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addr_key_is_packet_byte_order() {
        let key = host_addr_key(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(key.to_ne_bytes(), [192, 0, 2, 1]);
    }

    #[test]
    fn missing_object_says_how_to_build_it() {
        if has_embedded_object() {
            return;
        }
        let error = XdpDataplane::load().unwrap_err();
        assert!(error.to_string().contains("cargo xtask build"), "{error}");
    }
}
