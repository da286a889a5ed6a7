//! `carrier_sink`: the packet sink of the end-to-end benchmark (`bench/src/bin/carrier-e2e.rs`).
//!
//! Attached in native mode to the sink namespace's veth, it counts every frame and drops it
//! (`XDP_DROP`), so the kernel spends nothing on it past the veth's NAPI poll. Frames sent to
//! the expected destination MAC are counted by what their EtherType says, so the harness can
//! check that the forwarded frames are the ones the path should produce (IPv4 after a VRF
//! forward, an MPLS pop or a VXLAN decap, MPLS after a push, VXLAN after a VXLAN encap);
//! everything else (another destination, ARP, IPv6 neighbour discovery, runts) is counted as
//! other. VXLAN is an IPv4 frame whose header has no options, whose protocol is UDP and whose
//! UDP destination port is 4789; nothing past the UDP ports is looked at, and VXLAN in an
//! outer IPv4 header with options counts as IPv4.
//!
//! Who writes what: the harness writes `SINK_DST_MAC` before traffic starts; this program only
//! reads it. This program is the only writer of `SINK_PACKETS` and `SINK_BYTES` (one copy per
//! CPU, so no atomics); the harness only reads and sums them. It shares nothing with
//! `carrier_xdp` and is never attached by the dataplane.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

use crate::parse::{self, EthHdr, Frame, Ipv4Hdr, L4Ports, ETH_P_IPV4};

/// EtherType of MPLS unicast (RFC 3032).
const ETH_P_MPLS_UC: u16 = 0x8847;
/// IP protocol number of UDP.
const IPPROTO_UDP: u8 = 17;
/// The IANA UDP port of VXLAN (RFC 7348).
const VXLAN_PORT: u16 = 4789;

/// Counter index of IPv4 frames (but VXLAN). The harness (`carrier-e2e`) uses the same
/// indexes.
const CLASS_IPV4: u32 = 0;
/// Counter index of MPLS unicast frames.
const CLASS_MPLS: u32 = 1;
/// Counter index of every other frame, including runts.
const CLASS_OTHER: u32 = 2;
/// Counter index of VXLAN frames (IPv4 without options, UDP, destination port 4789).
const CLASS_VXLAN: u32 = 3;
/// Number of classes.
const CLASSES: u32 = 4;

/// Index 0: the destination MAC a frame must carry to count as IPv4 or MPLS — its six bytes
/// in wire order, then two zero bytes, read as a native-endian `u64`; 0 accepts any.
#[map(name = "SINK_DST_MAC")]
static SINK_DST_MAC: Array<u64> = Array::with_max_entries(1, 0);

/// Frames received, by class.
#[map(name = "SINK_PACKETS")]
static SINK_PACKETS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CLASSES, 0);

/// Bytes received (from the Ethernet header on, without the FCS), by class.
#[map(name = "SINK_BYTES")]
static SINK_BYTES: PerCpuArray<u64> = PerCpuArray::with_max_entries(CLASSES, 0);

#[xdp]
pub fn carrier_sink(ctx: XdpContext) -> u32 {
    let frame = Frame::new(&ctx);
    let class = if !to_expected_mac(&frame) {
        CLASS_OTHER
    } else {
        match parse::parse_l2(&frame) {
            Some(l2) if l2.ether_type == ETH_P_IPV4 && is_vxlan(&frame, l2.l3_offset) => {
                CLASS_VXLAN
            }
            Some(l2) if l2.ether_type == ETH_P_IPV4 => CLASS_IPV4,
            Some(l2) if l2.ether_type == ETH_P_MPLS_UC => CLASS_MPLS,
            _ => CLASS_OTHER,
        }
    };
    let len = (ctx.data_end() - ctx.data()) as u64;
    bump(&SINK_PACKETS, class, 1);
    bump(&SINK_BYTES, class, len);
    xdp_action::XDP_DROP
}

/// True when the IPv4 packet at `l3_offset` has no options, is UDP and goes to the VXLAN port.
#[inline(always)]
fn is_vxlan(frame: &Frame, l3_offset: usize) -> bool {
    let Some(ip) = frame.header::<Ipv4Hdr>(l3_offset) else {
        return false;
    };
    if ip.version_ihl != 0x45 || ip.protocol != IPPROTO_UDP {
        return false;
    }
    frame
        .header::<L4Ports>(l3_offset + 20)
        .is_some_and(|udp| u16::from_be_bytes(udp.dst) == VXLAN_PORT)
}

/// True when the frame's destination MAC is the one in `SINK_DST_MAC`, or that is 0.
#[inline(always)]
fn to_expected_mac(frame: &Frame) -> bool {
    let Some(eth) = frame.header::<EthHdr>(0) else {
        return false;
    };
    let expected = SINK_DST_MAC.get(0).copied().unwrap_or(0);
    let d = eth.dst;
    expected == 0 || expected == u64::from_ne_bytes([d[0], d[1], d[2], d[3], d[4], d[5], 0, 0])
}

/// Adds `n` to this CPU's counter `class` of `map`.
#[inline(always)]
fn bump(map: &PerCpuArray<u64>, class: u32, n: u64) {
    if let Some(counter) = map.get_ptr_mut(class) {
        // SAFETY: a per-CPU array value: only this program on this CPU writes it, and XDP
        // programs do not preempt each other on one CPU.
        unsafe { *counter += n };
    }
}
