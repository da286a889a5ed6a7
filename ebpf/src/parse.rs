//! Bounds-checked header access for XDP programs.
//!
//! The contract: every read of packet memory goes through [`Frame::header`], which
//! checks `data + offset + size_of::<T>() <= data_end` before it hands out a reference,
//! so the verifier sees a bounds check in front of every access and no caller can read
//! past the frame. Header structs are `#[repr(C)]` and made of byte arrays only
//! (alignment 1, no padding): multi-byte fields are read with `from_be_bytes`, never
//! assumed aligned or in host order.
//!
//! The express tier (`express.rs`) writes through [`Frame::header_mut`], checked the
//! same way; the program logic stays free of pointer arithmetic.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;

/// EtherType of IPv4 (RFC 894).
pub const ETH_P_IPV4: u16 = 0x0800;
/// EtherType of ARP (RFC 826).
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType (TPID) of an IEEE 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;

/// ARP operation code of a reply (RFC 826).
pub const ARP_OP_REPLY: u16 = 2;
/// ARP hardware type of Ethernet.
pub const ARP_HTYPE_ETHERNET: u16 = 1;

/// The packet memory of one frame: `[start, end)` as the kernel gave it to the program.
pub struct Frame {
    start: usize,
    end: usize,
}

impl Frame {
    /// The frame the program was called for.
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Frame {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// The header of type `T` at `offset` bytes from the start of the frame, or `None`
    /// when the frame is too short to hold it.
    #[inline(always)]
    pub fn header<T: Header>(&self, offset: usize) -> Option<&T> {
        let at = self.start + offset;
        if at + size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: `[at, at + size_of::<T>())` lies inside the frame (checked just
        // above), the kernel keeps the frame alive and unchanged while the program
        // runs, and `T: Header` has alignment 1 and accepts any bit pattern.
        Some(unsafe { &*(at as *const T) })
    }

    /// [`Frame::header`] for writing.
    #[inline(always)]
    #[allow(clippy::mut_from_ref, reason = "packet memory, not the Frame, is handed out; one writer per program run")]
    pub fn header_mut<T: Header>(&self, offset: usize) -> Option<&mut T> {
        let at = self.start + offset;
        if at + size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: as in `header`; the program is the only one touching this frame while it
        // runs, and callers hold one header reference at a time.
        Some(unsafe { &mut *(at as *mut T) })
    }

    /// The frame's length in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.start
    }
}

/// A wire header that can be viewed in place: `#[repr(C)]`, alignment 1, every bit
/// pattern valid.
///
/// # Safety
///
/// Implement only for `#[repr(C)]` structs made of `u8` and `[u8; N]` fields.
pub unsafe trait Header {}

/// Ethernet II header (IEEE 802.3 clause 3.2.6).
#[repr(C)]
pub struct EthHdr {
    /// Destination MAC address.
    pub dst: [u8; 6],
    /// Source MAC address.
    pub src: [u8; 6],
    /// EtherType or TPID, network byte order.
    pub ether_type: [u8; 2],
}

/// The two bytes after the TPID of an 802.1Q tag, then the inner EtherType.
#[repr(C)]
pub struct VlanTag {
    /// PCP, DEI and VLAN id, network byte order.
    pub tci: [u8; 2],
    /// EtherType of the payload, network byte order.
    pub ether_type: [u8; 2],
}

/// IPv4 header without options (RFC 791 §3.1).
#[repr(C)]
pub struct Ipv4Hdr {
    /// Version (high nibble) and header length in 32-bit words (low nibble).
    pub version_ihl: u8,
    /// DSCP and ECN.
    pub tos: u8,
    /// Total length, network byte order.
    pub total_len: [u8; 2],
    /// Identification, network byte order.
    pub id: [u8; 2],
    /// Flags (3 bits) and fragment offset (13 bits), network byte order.
    pub frag: [u8; 2],
    /// Time to live.
    pub ttl: u8,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Header checksum, network byte order.
    pub checksum: [u8; 2],
    /// Source address, network byte order.
    pub src: [u8; 4],
    /// Destination address, network byte order.
    pub dst: [u8; 4],
}

/// The ports at the start of a TCP or UDP header.
#[repr(C)]
pub struct L4Ports {
    /// Source port, network byte order.
    pub src: [u8; 2],
    /// Destination port, network byte order.
    pub dst: [u8; 2],
}

/// ARP for IPv4 over Ethernet (RFC 826): 28 bytes.
#[repr(C)]
pub struct ArpIpv4 {
    /// Hardware type, network byte order (1 = Ethernet).
    pub htype: [u8; 2],
    /// Protocol type, network byte order (0x0800 = IPv4).
    pub ptype: [u8; 2],
    /// Hardware address length (6).
    pub hlen: u8,
    /// Protocol address length (4).
    pub plen: u8,
    /// Operation, network byte order (1 = request, 2 = reply).
    pub oper: [u8; 2],
    /// Sender hardware address.
    pub sha: [u8; 6],
    /// Sender protocol address, network byte order.
    pub spa: [u8; 4],
    /// Target hardware address.
    pub tha: [u8; 6],
    /// Target protocol address, network byte order.
    pub tpa: [u8; 4],
}

// SAFETY: all of these are `#[repr(C)]` structs of `u8` and `[u8; N]` fields.
unsafe impl Header for EthHdr {}
// SAFETY: as above.
unsafe impl Header for VlanTag {}
// SAFETY: as above.
unsafe impl Header for Ipv4Hdr {}
// SAFETY: as above.
unsafe impl Header for L4Ports {}
// SAFETY: as above.
unsafe impl Header for ArpIpv4 {}
// SAFETY: a byte array.
unsafe impl<const N: usize> Header for [u8; N] {}

impl Ipv4Hdr {
    /// The IP version field (4 for a valid header).
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.version_ihl >> 4
    }

    /// The header length in bytes: 20..=60 for a valid header.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.version_ihl & 0x0f) * 4
    }

    /// True for the first (or only) fragment, the one that carries the L4 header.
    #[inline(always)]
    pub fn is_first_fragment(&self) -> bool {
        u16::from_be_bytes(self.frag) & 0x1fff == 0
    }
}

/// Where the network layer starts, after Ethernet and at most one 802.1Q tag.
pub struct L2 {
    /// EtherType of the payload (after the tag, if any).
    pub ether_type: u16,
    /// Offset of the payload from the start of the frame: 14 or 18.
    pub l3_offset: usize,
}

/// Parses the Ethernet header and one optional 802.1Q tag. `None` when the frame is
/// shorter than an Ethernet header. A tagged frame too short for its tag reports
/// the TPID as its EtherType, which no caller treats as host-bound.
#[inline(always)]
pub fn parse_l2(frame: &Frame) -> Option<L2> {
    let eth: &EthHdr = frame.header(0)?;
    let ether_type = u16::from_be_bytes(eth.ether_type);
    let l3_offset = size_of::<EthHdr>();
    if ether_type == ETH_P_8021Q {
        if let Some(tag) = frame.header::<VlanTag>(l3_offset) {
            return Some(L2 {
                ether_type: u16::from_be_bytes(tag.ether_type),
                l3_offset: l3_offset + size_of::<VlanTag>(),
            });
        }
    }
    Some(L2 {
        ether_type,
        l3_offset,
    })
}
