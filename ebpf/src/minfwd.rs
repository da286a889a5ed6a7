//! `carrier_minfwd`: the minimal XDP forwarder of the end-to-end benchmark
//! (`bench/src/bin/carrier-e2e.rs`), a baseline: the least work any XDP IPv4 forwarder does on
//! veth, so the ceiling of carrier's express tier there.
//!
//! Attached in native mode to the DUT's ingress veth by the harness. For an IPv4 frame with a
//! TTL above 1 it writes the destination and source MACs from `MINFWD_MACS`, decrements the TTL
//! with an incremental checksum update (RFC 1624, equation 3) and redirects the frame through
//! `MINFWD_PORTS` (a DEVMAP) to the egress veth. No lookup: one next hop for every frame.
//! Anything else — not IPv4, a TTL of 0 or 1, a runt — passes to the kernel. It is never
//! attached by the dataplane.
//!
//! Who writes what: the harness writes `MINFWD_MACS` and `MINFWD_PORTS` before it attaches
//! the program; this program only reads them. This program is the only writer of
//! `MINFWD_STATS` (one copy per CPU, so no atomics); the harness only reads it.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, DevMap, PerCpuArray},
    programs::XdpContext,
};

use crate::parse::ETH_P_IPV4;

/// Offset of the EtherType in the frame.
const ETHER_TYPE: usize = 12;
/// Offset of the IPv4 header's TTL (then the protocol) in the frame.
const IPV4_TTL: usize = 14 + 8;
/// Offset of the IPv4 header checksum in the frame.
const IPV4_CHECKSUM: usize = 14 + 10;
/// Bytes the program reads and writes: Ethernet and the IPv4 header up to its checksum.
const TOUCHED: usize = IPV4_CHECKSUM + 2;

/// `MINFWD_STATS` index of frames redirected to the egress veth. The harness (`carrier-e2e`)
/// uses the same indexes.
const STAT_REDIRECTED: u32 = 0;
/// `MINFWD_STATS` index of frames passed to the kernel.
const STAT_PASSED: u32 = 1;
/// `MINFWD_STATS` index of frames dropped because `MINFWD_PORTS` had no egress.
const STAT_NO_EGRESS: u32 = 2;
/// Entries of `MINFWD_STATS`.
const STATS: u32 = 3;

/// Index 0: the rewritten Ethernet addresses, destination then source, in wire order.
#[map(name = "MINFWD_MACS")]
static MINFWD_MACS: Array<[u8; 12]> = Array::with_max_entries(1, 0);

/// Index 0: the egress veth.
#[map(name = "MINFWD_PORTS")]
static MINFWD_PORTS: DevMap = DevMap::with_max_entries(1, 0);

/// Frames by outcome, by the `STAT_*` indexes.
#[map(name = "MINFWD_STATS")]
static MINFWD_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS, 0);

#[xdp]
pub fn carrier_minfwd(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + TOUCHED > ctx.data_end() {
        return pass();
    }
    let at = |offset: usize| (start + offset) as *mut u8;
    // SAFETY (this access and those marked "see above"): `[start, start + TOUCHED)` lies inside the frame (checked
    // above), which the kernel keeps alive and writable while the program runs; the accesses
    // are to byte arrays, of alignment 1, within that range.
    let ether_type = u16::from_be_bytes(unsafe { *(at(ETHER_TYPE) as *const [u8; 2]) });
    if ether_type != ETH_P_IPV4 {
        return pass();
    }
    // TTL and protocol: the 16-bit word the checksum update works on.
    // SAFETY: see above.
    let [ttl, protocol] = unsafe { *(at(IPV4_TTL) as *const [u8; 2]) };
    if ttl <= 1 {
        // The kernel sends the ICMP time exceeded.
        return pass();
    }
    let Some(macs) = MINFWD_MACS.get(0) else {
        return pass();
    };
    // SAFETY: see above.
    let checksum = u16::from_be_bytes(unsafe { *(at(IPV4_CHECKSUM) as *const [u8; 2]) });
    let checksum = checksum_update(
        checksum,
        u16::from_be_bytes([ttl, protocol]),
        u16::from_be_bytes([ttl - 1, protocol]),
    );
    // SAFETY: see above.
    unsafe {
        *(at(0) as *mut [u8; 12]) = *macs;
        *at(IPV4_TTL) = ttl - 1;
        *(at(IPV4_CHECKSUM) as *mut [u8; 2]) = checksum.to_be_bytes();
    }
    match MINFWD_PORTS.redirect(0, u64::from(xdp_action::XDP_DROP)) {
        Ok(action) => {
            bump(STAT_REDIRECTED);
            action
        }
        Err(action) => {
            bump(STAT_NO_EGRESS);
            action
        }
    }
}

/// The header checksum `checksum` after one 16-bit word of the header changed from `old` to
/// `new`: RFC 1624 equation 3, `HC' = ~(~HC + ~m + m')` in one's complement arithmetic.
#[inline(always)]
fn checksum_update(checksum: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[inline(always)]
fn pass() -> u32 {
    bump(STAT_PASSED);
    xdp_action::XDP_PASS
}

/// Adds one to this CPU's counter `index`.
#[inline(always)]
fn bump(index: u32) {
    if let Some(counter) = MINFWD_STATS.get_ptr_mut(index) {
        // SAFETY: a per-CPU array value: only this program on this CPU writes it, and XDP
        // programs do not preempt each other on one CPU.
        unsafe { *counter += 1 };
    }
}
