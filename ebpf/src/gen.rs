//! `carrier_gen`: the traffic generator of the end-to-end benchmark (`bench/src/bin/carrier-e2e.rs`).
//!
//! Never attached to an interface. The harness runs it with `BPF_PROG_TEST_RUN` in live-frames
//! mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18+) with the generator's veth as the ingress
//! interface: the kernel copies the harness's frame into pages of a page pool once, calls this
//! program for each of `repeat` frames, and — because it returns `XDP_TX` — sends each one out
//! of that veth as an XDP redirect, to the peer's receive ring and its NAPI (where the device
//! under test runs). No skb, no socket, no copy per frame.
//!
//! The kernel fills each page of its pool with the frame only when it first allocates the page,
//! and a page comes back from the receiver with whatever the receiver wrote into it: Linux
//! forwarding rewrites the MACs, the TTL and the checksum in place, an XDP forwarder may move
//! the frame's start and write a label. So for every frame this program first writes the
//! headers back from `GEN_TEMPLATE` (the frame's first [`SHORT_TEMPLATE`] bytes, which cover
//! Ethernet, one label, IPv4 and UDP; or, when `GEN_CONFIG` says so, the first
//! [`TEMPLATE_LEN`], which also cover the inner Ethernet, IPv4 and UDP headers of VXLAN, which
//! a decapsulating forwarder rewrites), then the UDP source port, so the traffic is `flows`
//! flows: the port is `first_port + n % flows`, `n` this CPU's frame count. The UDP checksums
//! of the harness's frames are 0 (none), so nothing else changes; no forwarder here writes the
//! payload. When the flows differ in more than the port (`carrier-e2e --routes`: each flow's
//! destination address in another route's prefix, so another IPv4 checksum too), the harness
//! gives each flow a template of its own (`GEN_CONFIG` says how many; `GEN_TEMPLATE` then has
//! an entry per flow, its size set by the harness when it loads the program) and flow `f`'s
//! frames get template `f`; the port is still written after it, and is the template's own.
//!
//! Paced (a non-zero interval in `GEN_CONFIG`), it sends a frame only when the next one is
//! due by `bpf_ktime_get_ns` and drops the others at once (`XDP_DROP`, back into the page
//! pool): the sent frames are spread evenly in time within one long `BPF_PROG_TEST_RUN` call,
//! which matters because each call costs milliseconds of set-up and tear-down. After a stall it
//! catches up by at most [`CATCH_UP`] frames at once.
//!
//! Who writes what: the harness writes `GEN_CONFIG` and `GEN_TEMPLATE` before it runs the
//! program; this program only reads them. This program is the only writer of `GEN_FRAMES` and
//! `GEN_NEXT` (one copy per CPU, so no atomics); the harness reads and sums `GEN_FRAMES`: the
//! frames offered.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

/// `GEN_CONFIG` index of the UDP source port's offset from the frame's start (34 for IPv4
/// under Ethernet, 38 under one MPLS label, 84 for the inner packet of VXLAN). The harness
/// (`carrier-e2e`) uses the same indexes.
const CONFIG_SPORT_OFFSET: u32 = 0;
/// `GEN_CONFIG` index of the number of flows (0 counts as 1).
const CONFIG_FLOWS: u32 = 1;
/// `GEN_CONFIG` index of the first flow's UDP source port.
const CONFIG_FIRST_PORT: u32 = 2;
/// `GEN_CONFIG` index of the time between two frames, in 1/16 ns; 0 sends every frame.
const CONFIG_INTERVAL: u32 = 3;
/// `GEN_CONFIG` index of the template bytes written back: [`TEMPLATE_LEN`] for that many
/// (the frame must be as long), anything else for [`SHORT_TEMPLATE`].
const CONFIG_TEMPLATE_LEN: u32 = 4;
/// `GEN_CONFIG` index of the number of templates in `GEN_TEMPLATE`, one per flow (0 or 1: one
/// template, index 0, for every flow).
const CONFIG_TEMPLATES: u32 = 5;
/// Entries of `GEN_CONFIG`.
const CONFIG_ENTRIES: u32 = 6;
/// Most frames sent back to back to catch up after a stall, when paced.
const CATCH_UP: u64 = 16;
/// Largest source-port offset accepted; a bound the verifier can see.
const MAX_SPORT_OFFSET: usize = TEMPLATE_LEN - 2;

/// Template bytes written back by default: Ethernet (14), a label (4), IPv4 (20) and UDP (8),
/// rounded up. The harness's frames are at least 60 bytes long.
const SHORT_TEMPLATE: usize = 48;

/// Bytes of `GEN_TEMPLATE`: also VXLAN's outer IPv4, UDP and VXLAN headers (50 bytes in all
/// with the outer Ethernet) and the inner Ethernet (14), IPv4 (20) and UDP (8) headers, rounded
/// up; stored as two halves of [`SHORT_TEMPLATE`] bytes, each a constant-size copy. The
/// harness's VXLAN frames are at least 110 bytes long.
const TEMPLATE_LEN: usize = 2 * SHORT_TEMPLATE;

/// Index 0: the first [`TEMPLATE_LEN`] bytes of the frame (zero-padded when it is shorter),
/// written back into every frame: the first [`SHORT_TEMPLATE`] of them, or all. With per-flow
/// templates (`CONFIG_TEMPLATES` over 1), index `f` is flow `f`'s; the harness then loads the
/// program with as many entries as flows (one here, for everyone else who loads the object).
#[map(name = "GEN_TEMPLATE")]
static GEN_TEMPLATE: Array<[[u8; SHORT_TEMPLATE]; 2]> = Array::with_max_entries(1, 0);

/// What to send, by the `CONFIG_*` indexes.
#[map(name = "GEN_CONFIG")]
static GEN_CONFIG: Array<u64> = Array::with_max_entries(CONFIG_ENTRIES, 0);

/// Index 0: frames this program has been called for (each one sent, or refused by the peer's
/// full ring, which the veth counts as a transmit drop).
#[map(name = "GEN_FRAMES")]
static GEN_FRAMES: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Index 0, paced: when the next frame is due, in 1/16 ns of `bpf_ktime_get_ns`.
#[map(name = "GEN_NEXT")]
static GEN_NEXT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn carrier_gen(ctx: XdpContext) -> u32 {
    let config = |index| GEN_CONFIG.get(index).copied().unwrap_or(0);
    let interval = config(CONFIG_INTERVAL);
    if interval != 0 && !due(interval) {
        return xdp_action::XDP_DROP;
    }
    let Some(count) = GEN_FRAMES.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: a per-CPU array value: only this program on this CPU writes it, and XDP programs
    // do not preempt each other on one CPU.
    let n = unsafe {
        let n = *count;
        *count = n + 1;
        n
    };
    let start = ctx.data();
    if start + SHORT_TEMPLATE > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let flows = config(CONFIG_FLOWS).max(1);
    let flow = n % flows;
    let templates = config(CONFIG_TEMPLATES);
    let index = if templates > 1 { flow % templates } else { 0 };
    let Some(template) = GEN_TEMPLATE.get(index as u32) else {
        return xdp_action::XDP_ABORTED;
    };
    let [head, tail] = template;
    // SAFETY: `[start, start + SHORT_TEMPLATE)` lies inside the frame (checked above), which the
    // kernel keeps alive and writable while the program runs; a byte array has alignment 1.
    unsafe { *(start as *mut [u8; SHORT_TEMPLATE]) = *head };
    if config(CONFIG_TEMPLATE_LEN) == TEMPLATE_LEN as u64 {
        let at = start + SHORT_TEMPLATE;
        if at + SHORT_TEMPLATE > ctx.data_end() {
            return xdp_action::XDP_ABORTED;
        }
        // SAFETY: `[at, at + SHORT_TEMPLATE)` lies inside the frame (checked just above), as
        // above.
        unsafe { *(at as *mut [u8; SHORT_TEMPLATE]) = *tail };
    }

    let port = (config(CONFIG_FIRST_PORT) + flow) as u16;
    let offset = config(CONFIG_SPORT_OFFSET) as usize;
    if offset <= MAX_SPORT_OFFSET {
        let at = start + offset;
        if at + 2 <= ctx.data_end() {
            // SAFETY: `[at, at + 2)` lies inside the frame (checked just above), which the
            // kernel keeps alive and writable while the program runs; a byte array has
            // alignment 1.
            unsafe { *(at as *mut [u8; 2]) = port.to_be_bytes() };
        }
    }
    xdp_action::XDP_TX
}

/// Paced at one frame per `interval` (1/16 ns): true when a frame is due now, and then books
/// the next one.
#[inline(always)]
fn due(interval: u64) -> bool {
    let Some(next) = GEN_NEXT.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() } << 4;
    // SAFETY: a per-CPU array value, written only by this program on this CPU (see above).
    let booked = unsafe { *next };
    if now < booked {
        return false;
    }
    let floor = now.saturating_sub(CATCH_UP * interval);
    // SAFETY: as above.
    unsafe { *next = booked.max(floor) + interval };
    true
}
