//! carrier's XDP program, `carrier_xdp`.
//!
//! Attached to every carrier port by `dataplane/src/xdp.rs`. For a frame arriving on
//! an interface listed in `PORT_BY_IFINDEX` or `PORT_SLOTS` it
//! - drops frames shorter than an Ethernet header (`dropped`);
//! - passes the router's own control traffic to the kernel (`passed`, see
//!   [`classify`]);
//! - forwards what the express tier can forward itself (see [`express`]);
//! - redirects the rest to the AF_XDP socket in `XSKS` at
//!   `slot * MAX_QUEUES + rx_queue` (`redirected`), or passes it to the kernel when
//!   no socket is bound there (`passed`).
//!
//! Frames of other interfaces pass untouched and uncounted.
//!
//! Who writes what: userspace writes `PORT_BY_IFINDEX`, `PORT_SLOTS`, `XSKS` and `HOST_ADDRS`; this
//! program only reads them. This program writes `PORT_STATS` (one copy per CPU, so no
//! atomics); userspace only reads and sums it.
#![no_std]
#![no_main]

mod classify;
mod express;
mod parse;
mod sink;
mod gen;
mod minfwd;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use carrier_common::{xsk_index, XdpPortStats, MAX_HOST_ADDRS, MAX_PORTS, SMALL_IFINDEX, XSK_MAP_ENTRIES};

use crate::classify::{classify, Verdict};
use crate::parse::Frame;

/// ifindex below `SMALL_IFINDEX` → carrier port slot + 1 (0: not a carrier port).
#[map(name = "PORT_BY_IFINDEX")]
static PORT_BY_IFINDEX: Array<u32> = Array::with_max_entries(SMALL_IFINDEX, 0);

/// ifindex (`SMALL_IFINDEX` or more) → carrier port slot (`0..MAX_PORTS`).
#[map(name = "PORT_SLOTS")]
static PORT_SLOTS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_PORTS, 0);

/// AF_XDP sockets at `slot * MAX_QUEUES + rx_queue`.
#[map(name = "XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(XSK_MAP_ENTRIES, 0);

/// Per-port counters, indexed by slot.
#[map(name = "PORT_STATS")]
static PORT_STATS: PerCpuArray<XdpPortStats> = PerCpuArray::with_max_entries(MAX_PORTS, 0);

/// The router's IPv4 addresses (network-order bytes read as a native `u32`) → flags.
#[map(name = "HOST_ADDRS")]
static HOST_ADDRS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_HOST_ADDRS, 0);

#[xdp]
pub fn carrier_xdp(ctx: XdpContext) -> u32 {
    // The map value is copied out at once: userspace may update the entry.
    let ifindex = ctx.ingress_ifindex() as u32;
    let slot = if ifindex < SMALL_IFINDEX {
        match PORT_BY_IFINDEX.get(ifindex) {
            Some(&at) if at != 0 => at - 1,
            _ => return xdp_action::XDP_PASS,
        }
    } else {
        let Some(slot) = PORT_SLOTS.get_ptr(ifindex).map(|slot| {
            // SAFETY: a non-null pointer to a live map value; u32 has no invalid values.
            unsafe { *slot }
        }) else {
            return xdp_action::XDP_PASS;
        };
        slot
    };
    if slot >= MAX_PORTS {
        return xdp_action::XDP_PASS;
    }

    let frame = Frame::new(&ctx);
    match classify(&frame, |addr| HOST_ADDRS.get_ptr(addr).is_some()) {
        Verdict::Drop => {
            count(slot, |stats| stats.dropped += 1);
            xdp_action::XDP_DROP
        }
        Verdict::ToHost => {
            count(slot, |stats| stats.passed += 1);
            xdp_action::XDP_PASS
        }
        Verdict::Steer => {
            // The express tier forwards only while the dataplane is alive, i.e. the port's
            // AF_XDP socket (queue 0) is bound — the kernel unbinds it when the process dies:
            // a program left behind by a crashed dataplane forwards nothing on stale maps. It
            // forwards on every RX queue (the program runs on each queue's CPU); what it punts
            // from a queue without a socket goes to the kernel, as without the tier.
            let live = xsk_index(slot, 0).is_some_and(|i| XSKS.get(i).is_some());
            match if live { express::run(&ctx, slot) } else { None } {
                Some(action) => action,
                None => steer(&ctx, slot),
            }
        }
    }
}

/// Redirects to the slot's AF_XDP socket for this RX queue; passes when none is bound.
#[inline(always)]
fn steer(ctx: &XdpContext, slot: u32) -> u32 {
    let Some(index) = xsk_index(slot, ctx.rx_queue_index()) else {
        count(slot, |stats| stats.passed += 1);
        return xdp_action::XDP_PASS;
    };
    match XSKS.redirect(index, u64::from(xdp_action::XDP_PASS)) {
        Ok(action) => {
            count(slot, |stats| stats.redirected += 1);
            action
        }
        Err(action) => {
            count(slot, |stats| stats.passed += 1);
            action
        }
    }
}

/// Bumps this CPU's counters of `slot`.
#[inline(always)]
fn count(slot: u32, bump: impl FnOnce(&mut XdpPortStats)) {
    if let Some(stats) = PORT_STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU array value: only this program on this CPU writes it, and
        // XDP programs do not preempt each other on one CPU.
        bump(unsafe { &mut *stats });
    }
}

/// The kernel checks this to allow GPL-only helpers; see `license` in Cargo.toml.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; there is no unwinding.
    loop {}
}
