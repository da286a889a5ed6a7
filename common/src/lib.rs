//! Types shared by carrier's eBPF programs and its userspace dataplane.
//!
//! Everything here is `#![no_std]`, `Copy`, and — where it crosses into a BPF map —
//! `#[repr(C)]` with fields whose byte order is stated in the doc comment. Userspace
//! never casts packet bytes to these types; they are only map keys and values.
#![no_std]

use core::fmt;

/// A 20-bit MPLS label value (RFC 3032). Construction masks nothing: use
/// [`Label::new`] which refuses values above 2^20 - 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "user", serde(try_from = "u32", into = "u32"))]
#[repr(transparent)]
pub struct Label(u32);

impl TryFrom<u32> for Label {
    type Error = &'static str;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Label::new(value).ok_or("MPLS label out of range (0..=1048575)")
    }
}

impl From<Label> for u32 {
    fn from(label: Label) -> u32 {
        label.0
    }
}

impl Label {
    /// The largest label value, 2^20 - 1.
    pub const MAX: u32 = 0x000F_FFFF;
    /// IPv4 explicit null (RFC 3032 §2.1).
    pub const IPV4_EXPLICIT_NULL: Label = Label(0);
    /// Implicit null: never appears on the wire, means "pop" (RFC 3032 §2.1).
    pub const IMPLICIT_NULL: Label = Label(3);
    /// First label a router may allocate for itself; 0..=15 are reserved.
    pub const FIRST_UNRESERVED: u32 = 16;

    /// A label, or `None` when `value` does not fit in 20 bits.
    pub const fn new(value: u32) -> Option<Label> {
        if value <= Self::MAX {
            Some(Label(value))
        } else {
            None
        }
    }

    /// The label value, always below 2^20.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// True for the reserved range 0..=15.
    pub const fn is_reserved(self) -> bool {
        self.0 < Self::FIRST_UNRESERVED
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A 24-bit VXLAN network identifier (RFC 7348).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "user", serde(try_from = "u32", into = "u32"))]
#[repr(transparent)]
pub struct Vni(u32);

impl TryFrom<u32> for Vni {
    type Error = &'static str;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Vni::new(value).ok_or("VNI out of range (0..=16777215)")
    }
}

impl From<Vni> for u32 {
    fn from(vni: Vni) -> u32 {
        vni.0
    }
}

impl Vni {
    /// The largest VNI, 2^24 - 1.
    pub const MAX: u32 = 0x00FF_FFFF;

    /// A VNI, or `None` when `value` does not fit in 24 bits.
    pub const fn new(value: u32) -> Option<Vni> {
        if value <= Self::MAX {
            Some(Vni(value))
        } else {
            None
        }
    }

    /// The VNI value, always below 2^24.
    pub const fn value(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! index_newtype {
    ($(#[$doc:meta])* $name:ident, $inner:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
        #[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
        #[cfg_attr(feature = "user", serde(transparent))]
        #[repr(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The id as an index into a table.
            pub const fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

index_newtype!(
    /// A VRF (one customer routing table). Assigned densely from 0 by the config.
    VrfId,
    u16
);
index_newtype!(
    /// A carrier port: one interface the dataplane owns. Assigned densely from 0.
    PortId,
    u16
);
index_newtype!(
    /// An entry in the next-hop arena. Routes and ILM entries point at these.
    NextHopId,
    u32
);
index_newtype!(
    /// An EVPN / VXLAN bridge domain (one L2 segment). Assigned densely from 0.
    BridgeDomainId,
    u16
);

/// Per-port counters kept by the XDP program, one copy per CPU
/// (`PerCpuArray` indexed by the port's ifindex slot). Host byte order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XdpPortStats {
    /// Frames handed to the AF_XDP socket (XDP_REDIRECT into the XSKMAP).
    pub redirected: u64,
    /// Frames passed to the kernel stack (host-bound, or no socket bound yet).
    pub passed: u64,
    /// Frames the XDP program dropped (malformed beyond reading the Ethernet header).
    pub dropped: u64,
}

/// Number of port slots in the XDP maps: the most ports one dataplane serves.
pub const MAX_PORTS: u32 = 64;

/// The TCP port of BGP (RFC 4271 §8.2.1): always host-bound.
pub const BGP_TCP_PORT: u16 = 179;

/// The IANA VXLAN UDP port (RFC 7348 §5).
pub const VXLAN_UDP_PORT: u16 = 4789;

// ---------------------------------------------------------------------------
// The XDP program's maps (ebpf/src/main.rs) and the names userspace opens them by
// (dataplane/src/xdp.rs). Keys and values are host byte order unless said otherwise.
// ---------------------------------------------------------------------------

/// RX queues per port the XDP program can steer to AF_XDP sockets. A frame that
/// arrives on a higher queue is passed to the kernel.
pub const MAX_QUEUES: u32 = 4;

/// Entries in the `XSKS` map: one AF_XDP socket per (port slot, RX queue).
pub const XSK_MAP_ENTRIES: u32 = MAX_PORTS * MAX_QUEUES;

/// The `XSKS` index of the AF_XDP socket for RX queue `queue` of port slot `slot`:
/// `slot * MAX_QUEUES + queue`, or `None` when either is out of range.
pub const fn xsk_index(slot: u32, queue: u32) -> Option<u32> {
    if slot < MAX_PORTS && queue < MAX_QUEUES {
        Some(slot * MAX_QUEUES + queue)
    } else {
        None
    }
}

/// Entries in the `HOST_ADDRS` map: the most IPv4 addresses the router owns.
pub const MAX_HOST_ADDRS: u32 = 1024;

/// `HOST_ADDRS` value flag: the address is one of the router's own (BGP sessions and
/// ARP replies to it go to the kernel).
pub const HOST_ADDR_LOCAL: u32 = 1;

/// The name of the XDP program in the eBPF object, as the kernel reports it.
pub const XDP_PROGRAM_NAME: &str = "carrier_xdp";

/// Names of the XDP program's maps in the eBPF object.
pub mod xdp_maps {
    /// `HashMap<u32 ifindex, u32 port slot>`: the interfaces carrier serves.
    pub const PORT_SLOTS: &str = "PORT_SLOTS";
    /// `XskMap` indexed by [`crate::xsk_index`]: the bound AF_XDP sockets.
    pub const XSKS: &str = "XSKS";
    /// `PerCpuArray<XdpPortStats>` indexed by port slot.
    ///
    /// [`XdpPortStats`]: crate::XdpPortStats
    pub const PORT_STATS: &str = "PORT_STATS";
    /// `HashMap<u32 IPv4 address, u32 flags>`: the router's own addresses. The key is
    /// the four address bytes in packet (network) order read as a native-endian
    /// `u32`, i.e. `u32::from_ne_bytes(addr.octets())`.
    pub const HOST_ADDRS: &str = "HOST_ADDRS";
}

// ---------------------------------------------------------------------------
// The express tier: map layouts for moving the hottest paths into XDP.
//
// A later XDP fast path mirrors the dataplane's table commands into maps of these types
// (one writer: the dataplane's table socket thread, on the same `TableCommand`s the
// userspace snapshot applies), and handles in the kernel what they cover: VRF forward,
// MPLS push and pop, VXLAN encap and decap, proxy ARP. A miss in any map sends the frame to
// the AF_XDP path, which handles everything. Nothing here is used yet.
// ---------------------------------------------------------------------------

/// Key of the per-VRF FIB, a `BPF_MAP_TYPE_LPM_TRIE`: `prefix_len` counts the bits of
/// `vrf` and `addr` that must match, so it is 16 (the VRF) + the IPv4 prefix length.
/// `vrf` is big-endian so that the VRF id is the trie's most significant bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FibKey {
    /// 16 + IPv4 prefix length.
    pub prefix_len: u32,
    /// VRF id, big-endian.
    pub vrf: [u8; 2],
    /// IPv4 address, network order.
    pub addr: [u8; 4],
    /// Zero.
    pub pad: [u8; 2],
}

impl FibKey {
    /// The key for `addr/len` in `vrf`.
    pub const fn new(vrf: VrfId, addr: [u8; 4], len: u8) -> FibKey {
        FibKey { prefix_len: 16 + len as u32, vrf: vrf.0.to_be_bytes(), addr, pad: [0; 2] }
    }
}

/// What a fast-path next hop does (`FastNextHop::kind`).
pub mod fast_kind {
    /// Rewrite MACs, decrement TTL, send on `port`.
    pub const ADJACENCY: u8 = 1;
    /// Also push `labels[..label_count]` (outermost first).
    pub const MPLS_PUSH: u8 = 2;
    /// Encapsulate in VXLAN to `vtep` with `vni`.
    pub const VXLAN: u8 = 3;
    /// Leave to the AF_XDP path.
    pub const SLOW_PATH: u8 = 0;
}

/// A fully resolved next hop as the XDP fast path needs it (the userspace arena entry after
/// recursive resolution through the underlay). Host byte order unless said otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FastNextHop {
    /// One of [`fast_kind`].
    pub kind: u8,
    /// Labels used in `labels`.
    pub label_count: u8,
    /// Egress port slot.
    pub port: u16,
    /// Egress ifindex (for `bpf_redirect`).
    pub ifindex: u32,
    /// Labels to push, outermost first (20-bit values).
    pub labels: [u32; 3],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC (the egress port's).
    pub src_mac: [u8; 6],
    /// Remote VTEP, network order (VXLAN).
    pub vtep: [u8; 4],
    /// Local VTEP, network order (VXLAN).
    pub local_vtep: [u8; 4],
    /// VNI (VXLAN).
    pub vni: u32,
}

/// Value of the incoming label map for the fast path: what to do with a top label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FastIlmEntry {
    /// 1: pop and look up in `vrf`; 2: pop and forward to `nexthop`; 0: slow path.
    pub action: u32,
    /// VRF for a pop-and-lookup label.
    pub vrf: u32,
    /// Index into the fast next-hop array for a per-CE label.
    pub nexthop: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_range() {
        assert_eq!(Label::new(Label::MAX).map(Label::value), Some(0xF_FFFF));
        assert!(Label::new(Label::MAX + 1).is_none());
        assert!(Label::new(3).unwrap().is_reserved());
        assert!(!Label::new(16).unwrap().is_reserved());
    }

    #[test]
    fn fib_key_layout_is_lpm_trie_shaped() {
        assert_eq!(core::mem::size_of::<FibKey>(), 12);
        let k = FibKey::new(VrfId(0x0102), [10, 1, 0, 0], 24);
        assert_eq!((k.prefix_len, k.vrf, k.addr), (40, [1, 2], [10, 1, 0, 0]));
        assert_eq!(core::mem::size_of::<FastNextHop>() % 4, 0);
    }

    #[test]
    fn vni_range() {
        assert_eq!(Vni::new(Vni::MAX).map(Vni::value), Some(0xFF_FFFF));
        assert!(Vni::new(Vni::MAX + 1).is_none());
    }
}
