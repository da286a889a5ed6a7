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

/// The flow hash both forwarding tiers use, so that they pick the same ECMP member and
/// the same VXLAN source port for a packet: source, destination, protocol and — for TCP and
/// UDP datagrams that are not fragments and carry them — the two ports, `ports` being the
/// first four payload bytes read big-endian (0 when there are none). Deterministic across
/// runs, processes and tiers (murmur3's 64-bit finalizer); not keyed, so not for
/// adversarial hash tables.
#[inline(always)]
pub const fn flow_hash(src: [u8; 4], dst: [u8; 4], protocol: u8, ports: u32) -> u32 {
    let addrs = u64::from_be_bytes([src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3]]);
    let rest = (protocol as u64) << 32 | ports as u64;
    let h = fmix64(addrs ^ fmix64(rest));
    (h ^ (h >> 32)) as u32
}

/// murmur3's 64-bit finalizer: every input bit affects every output bit.
#[inline(always)]
const fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The hash of a non-IP frame for VXLAN source-port entropy, both tiers: FNV-1a over its
/// destination and source MACs (the frame's first 12 bytes).
#[inline(always)]
pub const fn mac_hash(macs: &[u8; 12]) -> u32 {
    let mut h = 0x811c_9dc5u32;
    let mut i = 0;
    while i < 12 {
        h = (h ^ macs[i] as u32).wrapping_mul(0x0100_0193);
        i += 1;
    }
    h
}

/// The VXLAN UDP source port for a flow hash (RFC 7348 §5: from the dynamic range).
#[inline(always)]
pub const fn vxlan_source_port(hash: u32) -> u16 {
    0xc000 | (hash as u16 & 0x3fff)
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

/// Interfaces with an ifindex below this are looked up in `PORT_BY_IFINDEX`, an array; the
/// others in `PORT_SLOTS`, a hash.
pub const SMALL_IFINDEX: u32 = 4096;

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
    /// `HashMap<u32 ifindex, u32 port slot>`: the interfaces carrier serves whose ifindex is
    /// [`crate::SMALL_IFINDEX`] or more.
    pub const PORT_SLOTS: &str = "PORT_SLOTS";
    /// `Array<u32>` by ifindex below [`crate::SMALL_IFINDEX`]: the port slot + 1 of the
    /// interfaces carrier serves, 0 for the others (one array read per frame, no hash).
    pub const PORT_BY_IFINDEX: &str = "PORT_BY_IFINDEX";
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
// The express tier: the XDP program forwards what it can itself (VRF forward, MPLS push,
// per-VRF label pop) from a compiled copy of the tables, and redirects everything else to
// the AF_XDP path ("punts"), which handles everything. The dataplane's mirror
// (`dataplane/src/express.rs`) is the only writer of these maps; the program only reads
// them, and writes only its per-CPU counters.
// ---------------------------------------------------------------------------

/// The express tier's maps, their sizes and record layouts. Host byte order unless said
/// otherwise.
pub mod express {
    /// `Array<ExConfig>` with one entry: whether the tier is on, and router-wide settings.
    pub const CONFIG: &str = "EX_CONFIG";
    /// `Array<ExPort>` by port slot.
    pub const PORTS: &str = "EX_PORTS";
    /// `Array<u32>`: the VRFs' routes as one 8-8-8-8 multibit trie, in plies of 256 leaves
    /// (entry `ply * 256 + byte`). Ply `v` < [`MAX_VRFS`] is VRF `v`'s root, indexed by the
    /// first byte of the address; the others are made where longer prefixes need them. A
    /// leaf is 0 (no route), [`FIB_PLY`] | the ply for the next byte, [`FIB_PUNT`] (a route
    /// the tier has no room for: punt), or a route slot + 1 (see [`FIB_SLOTS`]). The mirror
    /// writes a new ply whole before the leaf that points at it, and reuses a freed ply or
    /// slot only at its next commit.
    pub const FIB: &str = "EX_FIB";
    /// `Array<u32>` by route slot: the next-hop id (an index into [`NH`]) of the route a
    /// [`FIB`] leaf names; a route's next hop changes here alone.
    pub const FIB_SLOTS: &str = "EX_FIB_SLOTS";
    /// In a [`FIB_SLOTS`] value: the route's VRF counts per prefix; the program counts the
    /// packets it forwards by the route in [`ROUTE_STATS`] (the rest of the value is the
    /// next-hop id).
    pub const ROUTE_COUNTED: u32 = 1 << 31;
    const _: () = assert!(MAX_NEXTHOPS < ROUTE_COUNTED, "next-hop ids fit beside the counted bit");
    /// `PerCpuHashMap<u32, ExBytes>`: route slot → what the program forwarded by it, for
    /// routes marked [`ROUTE_COUNTED`]. The program makes an entry at a route's first packet
    /// (and punts the packet when the map is full, so the AF_XDP path counts it); the mirror
    /// deletes a slot's entry when the slot gets another route or none.
    pub const ROUTE_STATS: &str = "EX_ROUTE_STATS";
    /// Entries of [`ROUTE_STATS`]: counted routes the program forwards at once.
    pub const MAX_COUNTED_ROUTES: u32 = 1 << 16;
    /// A [`FIB`] leaf that points at a ply.
    pub const FIB_PLY: u32 = 1 << 31;
    /// A [`FIB`] leaf the program punts (the plies or slots behind it did not fit).
    pub const FIB_PUNT: u32 = FIB_PLY - 1;
    /// Plies of [`FIB`] besides the VRFs' roots.
    pub const MAX_FIB_PLIES: u32 = 1 << 14;
    /// Entries of [`FIB`].
    pub const FIB_ENTRIES: u32 = (MAX_VRFS + MAX_FIB_PLIES) * 256;
    /// `Array<u32>` by next-hop id: 0 when the next hop has no record, else where its
    /// records are: `(buckets - 1) << NH_BUCKETS_SHIFT | (first slot + 1)`, the [`ExAdj`]s
    /// of `buckets` consecutive slots of [`ADJ`] (ECMP flattened: a packet takes bucket
    /// `flow_hash % buckets`; one bucket without ECMP). Flipped (a 4-byte store) after the
    /// new records are written, so a reader never sees a record half-written.
    pub const NH: &str = "EX_NH";
    /// `Array<ExAdj>` by adjacency slot.
    pub const ADJ: &str = "EX_ADJ";
    /// `Array<ExIlm>` by incoming label (labels below [`MAX_LABEL`]).
    pub const ILM: &str = "EX_ILM";
    /// `DevMap` by port slot: the egress interfaces.
    pub const EGRESS: &str = "EX_EGRESS";
    /// `PerCpuArray<ExPortStats>` by port slot.
    pub const PORT_STATS: &str = "EX_PORT_STATS";
    /// `PerCpuArray<ExBytes>` by VRF id: packets looked up in the VRF.
    pub const VRF_STATS: &str = "EX_VRF_STATS";
    /// `PerCpuArray<ExBytes>` by incoming label: packets received with that top label.
    pub const LABEL_STATS: &str = "EX_LABEL_STATS";
    /// `PerCpuArray<ExBytes>` by adjacency slot: packets sent through it (the out-label
    /// counters are derived from these and the record's labels).
    pub const ADJ_STATS: &str = "EX_ADJ_STATS";
    /// `HashMap<u32, u32>`: VNI → VRF id (an L3 VNI, EVPN type-5), or [`VNI_BRIDGE`] | bridge
    /// domain id (an L2 VNI), for VXLAN decapsulation.
    pub const VNI: &str = "EX_VNI";
    /// An [`VNI`] value naming a bridge domain.
    pub const VNI_BRIDGE: u32 = 1 << 31;
    /// `HashMap<MacKey, ExMac>`: the MACs of the bridge domains, static and learned.
    pub const MACS: &str = "EX_MACS";
    /// Entries of [`MACS`].
    pub const MAX_MACS: u32 = 1 << 17;
    /// `HashMap<PortAddr, ExNeigh>`: the neighbours the router knows (configured and
    /// learned): an ARP request from one of them, with the MAC known, teaches nothing new.
    pub const NEIGH: &str = "EX_NEIGH";
    /// `HashMap<PortAddr, u32>`: the ports' own addresses (the program answers ARP for them).
    pub const OWN: &str = "EX_OWN";
    /// Entries of [`NEIGH`] (and of [`OWN`]).
    pub const MAX_NEIGH: u32 = 1 << 17;
    /// `Array<u32>` by next-hop id: whether an address routed over the next hop is "routed
    /// elsewhere" for proxy ARP, as the pipeline decides it: [`ARP_ANY`] from any port (a
    /// push, VXLAN, ECMP, a local address), `port + 1` from any port but `port` (a neighbour
    /// or connected subnet out of it), 0 when the program leaves the request to the pipeline.
    pub const NH_ARP: &str = "EX_NH_ARP";
    /// An [`NH_ARP`] value: proxied from any port.
    pub const ARP_ANY: u32 = u32::MAX;
    /// `HashMap<PortAddr, ExNeigh>`: the bridge domains' ARP suppression bindings (EVPN
    /// type-2 MAC/IP, configured): key `slot` is the bridge domain, the value the MAC the
    /// address is at. Entries: [`MAX_NEIGH`].
    pub const ARP_BIND: &str = "EX_ARP_BIND";

    /// Key of [`NEIGH`] and [`OWN`]: an address on a port.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[repr(C)]
    pub struct PortAddr {
        /// The port slot.
        pub slot: u16,
        /// Zero.
        pub pad: u16,
        /// The IPv4 address, network order.
        pub addr: [u8; 4],
    }

    /// Value of [`NEIGH`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct ExNeigh {
        /// The neighbour's MAC.
        pub mac: [u8; 6],
        /// Zero.
        pub pad: [u8; 2],
    }
    /// Entries of [`VNI`].
    pub const MAX_VNIS: u32 = 65_536;

    /// Next-hop ids the tier can hold; a route over a higher id is punted.
    pub const MAX_NEXTHOPS: u32 = 1 << 20;
    /// Adjacency records the tier can hold.
    pub const MAX_ADJ: u32 = 1 << 18;
    /// Labels below this are in [`ILM`]; higher ones are punted.
    pub const MAX_LABEL: u32 = 1 << 18;
    /// VRFs the tier serves; packets of higher VRF ids are punted.
    pub const MAX_VRFS: u32 = 4096;
    /// Routes (prefixes over all VRFs) [`FIB_SLOTS`] holds.
    pub const MAX_ROUTES: u32 = 1 << 21;
    /// Labels one adjacency pushes (VPN label and transport labels).
    pub const MAX_PUSH: usize = 4;
    /// Where the bucket count starts in an [`NH`] value.
    pub const NH_BUCKETS_SHIFT: u32 = 24;
    /// The first slot + 1 in an [`NH`] value.
    pub const NH_SLOT_MASK: u32 = (1 << NH_BUCKETS_SHIFT) - 1;
    /// The most buckets one next hop's records have: the least common multiple of the ECMP
    /// group sizes on its paths (a next hop needing more is punted).
    pub const MAX_BUCKETS: u32 = 64;

    /// `ExConfig::flags`: the tier is on.
    pub const CONFIG_ON: u32 = 1;
    /// `ExConfig::flags`: MPLS TTL mode pipe (label TTL 255 on push; IP TTL kept on pop).
    pub const CONFIG_PIPE: u32 = 2;

    /// Router-wide settings.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct ExConfig {
        /// [`CONFIG_ON`], [`CONFIG_PIPE`].
        pub flags: u32,
        /// The local VTEP address (network order; zero: none): VXLAN to it is decapsulated.
        pub vtep: [u8; 4],
    }

    /// `ExPort::kind`: the program punts everything from this port.
    pub const PORT_PUNT: u8 = 0;
    /// `ExPort::kind`: a customer port routed in `vrf`.
    pub const PORT_VRF: u8 = 1;
    /// `ExPort::kind`: a core port (labelled packets arrive here).
    pub const PORT_CORE: u8 = 2;
    /// `ExPort::kind`: an untagged customer port of bridge domain `vrf`.
    pub const PORT_BRIDGE: u8 = 3;
    /// `ExPort::flags`: check the source address (anti-spoof, uRPF) on this port.
    pub const PORT_ANTI_SPOOF: u8 = 1;
    /// `ExPort::flags`: proxy ARP (routed mode): answer for addresses the VRF routes
    /// elsewhere (see [`NH_ARP`]).
    pub const PORT_PROXY_ARP: u8 = 2;

    /// One port as the express tier sees it.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct ExPort {
        /// [`PORT_PUNT`], [`PORT_VRF`] or [`PORT_CORE`].
        pub kind: u8,
        /// [`PORT_ANTI_SPOOF`].
        pub flags: u8,
        /// The VRF of a [`PORT_VRF`] port.
        pub vrf: u16,
        /// The port's MAC: frames to another destination are punted.
        pub mac: [u8; 6],
        /// Largest IP packet plus labels the port sends.
        pub mtu: u16,
        /// The port's 802.1Q VLAN id (frames received must carry it, frames sent carry it);
        /// 0: untagged.
        pub vlan: u16,
    }

    /// No port: `ExAdj::port` of a record that only serves the source check.
    pub const NO_PORT: u16 = u16::MAX;
    /// `ExAdj::tc`: copy the IP precedence into the labels' traffic class.
    pub const TC_FROM_IP: u8 = 0xff;

    /// A compiled next hop: everything the program needs to send a packet there, recursion
    /// through the underlay and the neighbour's MAC already resolved.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct ExAdj {
        /// Egress port slot; [`NO_PORT`] when the program cannot forward over this next
        /// hop (the packet is punted) but the record still answers the source check.
        pub port: u16,
        /// The port a source routed over this next hop must arrive on; [`NO_PORT`] when
        /// no port passes the check.
        pub rpf_port: u16,
        /// Labels to push (in `labels[..nlabels]`, outermost first).
        pub nlabels: u8,
        /// Traffic class of the pushed labels, or [`TC_FROM_IP`].
        pub tc: u8,
        /// Egress MTU (IP packet plus labels).
        pub mtu: u16,
        /// Destination MAC.
        pub dst: [u8; 6],
        /// Source MAC (the egress port's).
        pub src: [u8; 6],
        /// Label stack entries without TC and TTL: `label << 12 | S << 8`.
        pub labels: [u32; MAX_PUSH],
        /// VXLAN: the second word of the VXLAN header as on the wire, read big-endian:
        /// `VNI << 8`.
        pub vni: u32,
        /// VXLAN: the ones-complement sum (unfolded) of the outer IPv4 header's words that do
        /// not change per packet (version and length, TTL and protocol, the addresses); the
        /// program adds the total length and the identification and folds.
        pub outer_sum: u32,
        /// VXLAN: the outer source (the local VTEP) and destination (the remote VTEP),
        /// network order.
        pub outer_src: [u8; 4],
        /// See `outer_src`.
        pub outer_dst: [u8; 4],
        /// VXLAN: the inner Ethernet destination (the remote router MAC, or broadcast) and
        /// source (this router's MAC).
        pub inner_dst: [u8; 6],
        /// See `inner_dst`.
        pub inner_src: [u8; 6],
        /// [`ENCAP_NONE`] (push `labels`, if any) or [`ENCAP_VXLAN`] (no labels).
        pub encap: u8,
        /// VXLAN: the outer IPv4 TTL.
        pub outer_ttl: u8,
        /// The egress port's 802.1Q VLAN id, written in a tag before the EtherType; 0:
        /// untagged. VXLAN records are untagged (a tagged underlay port is punted).
        pub vlan: u16,
    }

    /// `ExAdj::encap`: IPv4, or MPLS when the record pushes labels.
    pub const ENCAP_NONE: u8 = 0;
    /// `ExAdj::encap`: VXLAN (EVPN type-5) with the record's outer headers.
    pub const ENCAP_VXLAN: u8 = 1;
    /// `ExAdj::encap`: VXLAN of a bridged frame as it is (no inner Ethernet written).
    pub const ENCAP_VXLAN_L2: u8 = 2;

    /// Key of [`MACS`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[repr(C)]
    pub struct MacKey {
        /// The bridge domain.
        pub bd: u16,
        /// The MAC.
        pub mac: [u8; 6],
    }

    /// `ExMac::flags`: the entry was learned (no static entry for the MAC): a frame from it
    /// at this place teaches nothing new, so the program may forward it.
    pub const MAC_LEARNED: u8 = 1;

    /// Where a MAC of a bridge domain is. Twelve bytes, replaced whole (hash map update).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct ExMac {
        /// The local port slot, or [`NO_PORT`] when the MAC is behind a VTEP.
        pub port: u16,
        /// [`MAC_LEARNED`].
        pub flags: u8,
        /// Zero.
        pub pad: u8,
        /// Behind a VTEP: the next hop (an index into [`NH`]) whose record encapsulates toward
        /// it.
        pub nexthop: u32,
        /// Behind a VTEP: its address (network order), what decapsulated frames from the MAC
        /// must come from.
        pub vtep: [u8; 4],
    }
    /// Bytes a VXLAN record puts before the inner IPv4 packet after the outer Ethernet header:
    /// outer IPv4, UDP, VXLAN and inner Ethernet.
    pub const VXLAN_OVERHEAD: usize = 20 + 8 + 8 + 14;
    /// The most the program grows a frame at its head: VXLAN (four labels and a tag, 20 bytes,
    /// are less).
    pub const MAX_GROWTH: usize = VXLAN_OVERHEAD;

    /// `ExIlm::action`: punt.
    pub const ILM_PUNT: u16 = 0;
    /// `ExIlm::action`: pop (bottom of stack) and look the IPv4 packet up in `vrf`.
    pub const ILM_POP_LOOKUP: u16 = 1;
    /// `ExIlm::action`: pop (bottom of stack) and send the IPv4 packet to next hop `nexthop`
    /// (a per-CE label), no lookup.
    pub const ILM_POP_FORWARD: u16 = 2;
    /// `ExIlm::action`: swap toward the next LSR: next hop `nexthop`'s record carries the
    /// transport labels to push and, last, the outgoing label (its S bit replaced by the
    /// incoming one's).
    pub const ILM_SWAP: u16 = 3;

    /// What the program does with a top label. Eight bytes: replaced by one store.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct ExIlm {
        /// [`ILM_PUNT`], [`ILM_POP_LOOKUP`], [`ILM_POP_FORWARD`] or [`ILM_SWAP`].
        pub action: u16,
        /// The VRF of [`ILM_POP_LOOKUP`].
        pub vrf: u16,
        /// The next-hop id (an index into [`NH`]) of [`ILM_POP_FORWARD`] and [`ILM_SWAP`].
        pub nexthop: u32,
    }

    /// Packets and bytes.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct ExBytes {
        /// Packets.
        pub packets: u64,
        /// Bytes (the whole frame).
        pub bytes: u64,
    }

    /// Why the program left a frame to the AF_XDP path. The names are the counter names.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(u32)]
    pub enum Punt {
        /// The tier is off, or the port is not one it serves (tagged, skb mode, turned off).
        Port = 0,
        /// Not unicast to the port's MAC, or an EtherType the tier does not handle.
        L2,
        /// An IPv4 header with options, a bad length or checksum, or not version 4.
        Ipv4,
        /// TTL (or label TTL) expiring here: ICMP is the pipeline's.
        Ttl,
        /// No route in the express FIB.
        NoRoute,
        /// A next hop the tier does not compile (ECMP over too many buckets, VXLAN over
        /// labels, unresolved neighbour, local).
        NextHop,
        /// Too big for the egress MTU.
        Mtu,
        /// A label the tier does not handle (unknown, reserved, a pop not at the bottom of
        /// the stack).
        Label,
        /// VXLAN the tier does not decapsulate (an unknown VNI, a malformed or fragmented
        /// outer packet, a tagged inner frame).
        Vxlan,
        /// The source check failed or could not be decided.
        AntiSpoof,
        /// The frame could not be resized.
        Headroom,
        /// A bridged frame the tier leaves to the pipeline: to an unknown, broadcast or
        /// multicast MAC (flooding), from a MAC not learned there yet (learning), ARP
        /// (suppression), tagged.
        Bridge,
        /// A route of a VRF that counts per prefix, with no room left for its counter in
        /// `EX_ROUTE_STATS`.
        RouteCounters,
    }

    impl Punt {
        /// How many reasons there are.
        pub const COUNT: usize = 13;
        /// Every reason, in index order.
        pub const ALL: [Punt; Punt::COUNT] = [
            Punt::Port,
            Punt::L2,
            Punt::Ipv4,
            Punt::Ttl,
            Punt::NoRoute,
            Punt::NextHop,
            Punt::Mtu,
            Punt::Label,
            Punt::Vxlan,
            Punt::AntiSpoof,
            Punt::Headroom,
            Punt::Bridge,
            Punt::RouteCounters,
        ];

        /// The counter name.
        pub const fn name(self) -> &'static str {
            match self {
                Punt::Port => "port",
                Punt::L2 => "l2",
                Punt::Ipv4 => "ipv4",
                Punt::Ttl => "ttl",
                Punt::NoRoute => "no-route",
                Punt::NextHop => "next-hop",
                Punt::Mtu => "mtu",
                Punt::Label => "label",
                Punt::Vxlan => "vxlan",
                Punt::AntiSpoof => "anti-spoof",
                Punt::Headroom => "headroom",
                Punt::Bridge => "bridge",
                Punt::RouteCounters => "route-counters",
            }
        }
    }

    /// Per-port counters of the express tier (one copy per CPU).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct ExPortStats {
        /// Frames received and forwarded by the tier.
        pub rx: ExBytes,
        /// Frames the tier sent out of this port.
        pub tx: ExBytes,
        /// 1 once this CPU's first frame on the port found the headroom the tier's largest
        /// push needs ([`MAX_GROWTH`] bytes in front of the frame, `bpf_xdp_adjust_head`), else 0.
        pub headroom_ok: u64,
        /// 1 once this CPU's first frame on the port found less (the driver's XDP headroom is
        /// short: frames needing a push or VXLAN are punted, counted `headroom`), else 0.
        pub headroom_short: u64,
        /// Frames received here and punted, by [`Punt`].
        pub punts: [u64; Punt::COUNT],
        /// ARP requests for the port's own addresses the program answered.
        pub arp_replies: u64,
        /// ARP requests it answered for addresses routed elsewhere (proxy ARP).
        pub arp_proxy_replies: u64,
        /// ARP requests on a bridge port it answered from the domain's bindings (ARP
        /// suppression).
        pub arp_suppressed: u64,
    }
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
    fn express_layouts() {
        use express::*;
        assert!(MAX_ROUTES < FIB_PUNT && (FIB_ENTRIES as u64) < u64::from(FIB_PLY), "FIB leaves fit beside the ply bit");
        assert_eq!(core::mem::size_of::<ExAdj>(), 68);
        assert_eq!(core::mem::offset_of!(ExAdj, vlan), 66, "no implicit padding");
        assert_eq!(core::mem::size_of::<ExPort>(), 14);
        assert_eq!(core::mem::size_of::<ExIlm>(), 8);
        assert_eq!((core::mem::size_of::<MacKey>(), core::mem::size_of::<ExMac>()), (8, 12));
        assert_eq!(core::mem::size_of::<ExPortStats>(), 48 + 8 * Punt::COUNT + 24);
        assert_eq!((core::mem::size_of::<PortAddr>(), core::mem::size_of::<ExNeigh>()), (8, 8));
        for (i, p) in Punt::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i);
        }
    }

    #[test]
    fn vni_range() {
        assert_eq!(Vni::new(Vni::MAX).map(Vni::value), Some(0xFF_FFFF));
        assert!(Vni::new(Vni::MAX + 1).is_none());
    }
}
