//! What the XDP program does with a frame of a carrier port.
//!
//! The contract: [`classify`] reads the frame only through [`crate::parse`] and
//! decides between three outcomes. The router's own control traffic — BGP (TCP port
//! 179) to or from one of its addresses, and ARP replies for one of its addresses, so
//! the kernel can resolve its BGP neighbours — goes to the kernel; frames too short
//! for Ethernet are dropped; everything else goes to the port's AF_XDP socket.

use crate::parse::{
    self, ArpIpv4, Frame, Ipv4Hdr, L4Ports, ARP_HTYPE_ETHERNET, ARP_OP_REPLY, ETH_P_ARP,
    ETH_P_IPV4, IPPROTO_TCP,
};
use carrier_common::BGP_TCP_PORT;

/// The outcome for one frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Shorter than an Ethernet header: drop it.
    Drop,
    /// The router's own control traffic: pass it to the kernel.
    ToHost,
    /// Everything else: redirect it to the port's AF_XDP socket.
    Steer,
}

/// Classifies `frame`; `is_host_addr` says whether an IPv4 address (the four bytes
/// in network order, read as a native-endian `u32`) is one of the router's own.
#[inline(always)]
pub fn classify(frame: &Frame, is_host_addr: impl Fn(u32) -> bool) -> Verdict {
    let Some(l2) = parse::parse_l2(frame) else {
        return Verdict::Drop;
    };
    let host_bound = match l2.ether_type {
        ETH_P_IPV4 => is_bgp(frame, l2.l3_offset, &is_host_addr),
        ETH_P_ARP => is_arp_reply_to_host(frame, l2.l3_offset, &is_host_addr),
        _ => false,
    };
    if host_bound {
        Verdict::ToHost
    } else {
        Verdict::Steer
    }
}

/// IPv4 TCP with source or destination port 179 where the source or destination
/// address is the router's.
#[inline(always)]
fn is_bgp(frame: &Frame, l3_offset: usize, is_host_addr: &impl Fn(u32) -> bool) -> bool {
    let Some(ip) = frame.header::<Ipv4Hdr>(l3_offset) else {
        return false;
    };
    let header_len = ip.header_len();
    if ip.version() != 4
        || header_len < core::mem::size_of::<Ipv4Hdr>()
        || ip.protocol != IPPROTO_TCP
        || !ip.is_first_fragment()
    {
        return false;
    }
    let Some(ports) = frame.header::<L4Ports>(l3_offset + header_len) else {
        return false;
    };
    let bgp = u16::from_be_bytes(ports.src) == BGP_TCP_PORT
        || u16::from_be_bytes(ports.dst) == BGP_TCP_PORT;
    bgp && (is_host_addr(u32::from_ne_bytes(ip.src)) || is_host_addr(u32::from_ne_bytes(ip.dst)))
}

/// An Ethernet/IPv4 ARP reply whose target address is the router's.
#[inline(always)]
fn is_arp_reply_to_host(
    frame: &Frame,
    l3_offset: usize,
    is_host_addr: &impl Fn(u32) -> bool,
) -> bool {
    let Some(arp) = frame.header::<ArpIpv4>(l3_offset) else {
        return false;
    };
    u16::from_be_bytes(arp.htype) == ARP_HTYPE_ETHERNET
        && u16::from_be_bytes(arp.ptype) == ETH_P_IPV4
        && u16::from_be_bytes(arp.oper) == ARP_OP_REPLY
        && is_host_addr(u32::from_ne_bytes(arp.tpa))
}
