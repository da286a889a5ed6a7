//! AF_XDP sockets (xdpilone) over one UMEM shared by every port a worker serves, so a frame
//! received on one port is transmitted on another without a copy.
//!
//! Frame ownership: a UMEM chunk is in exactly one place at a time — the free list, a fill
//! ring, the kernel (received, not yet read), a [`UmemFrame`] in a batch, or a transmit ring
//! until its completion comes back. Chunks return to the free list from the completion rings
//! and from every verdict that sends nothing.

use std::ffi::CString;
use std::num::NonZeroU32;
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

use carrier_common::PortId;
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use super::tap::Tap;
use super::Ports;
use crate::pipeline::{Batch, Counters, DropReason, Frame, FramePool, Verdict};

/// Bytes per UMEM chunk.
pub const FRAME_SIZE: u32 = 4096;
/// Chunks in the UMEM (64 MiB): the ports' fill rings, and as many again for frames in flight
/// (transmit rings, the host path, replicas).
pub const FRAMES: u32 = 16384;
/// Descriptors per ring.
const RING_SIZE: u32 = 4096;
/// Most receive buffers kept in one port's fill ring.
const FILL_TARGET: u32 = 3072;

/// Receive buffers kept in each fill ring with `ports` ports: at most [`FILL_TARGET`], and all
/// fill rings together at most half the UMEM. With more, the fill rings swallowed the whole
/// pool and nothing was left to transmit or to read the host path into (seen with 6 ports).
fn fill_target(ports: usize) -> u32 {
    let share = FRAMES / 2 / (ports.max(1) as u32);
    share.min(FILL_TARGET)
}
/// Headroom of frames the pool makes (replicas).
const POOL_HEADROOM: u32 = 256;

/// Why the AF_XDP set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// mmap of the UMEM area failed.
    #[error("cannot map {0} bytes for the UMEM: {1}")]
    Mmap(usize, std::io::Error),
    /// An interface that does not exist.
    #[error("no interface named {0:?}")]
    NoInterface(String),
    /// A socket call failed.
    #[error("AF_XDP {what} on {ifname}: {errno} (is AF_XDP available, and are you root?)")]
    Socket {
        /// The step.
        what: &'static str,
        /// The interface.
        ifname: String,
        /// errno.
        errno: std::io::Error,
    },
}

fn sock_err(what: &'static str, ifname: &str, e: xdpilone::Errno) -> XskError {
    XskError::Socket { what, ifname: ifname.to_string(), errno: std::io::Error::from_raw_os_error(e.get_raw()) }
}

/// The anonymous mapping behind the UMEM.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> Result<Area, XskError> {
        // SAFETY: an anonymous private mapping; no file, no aliasing with existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(XskError::Mmap(len, std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| XskError::Mmap(len, std::io::Error::other("null mapping")))?;
        Ok(Area { ptr, len })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; the UMEM and every socket using
        // it are dropped before the area (field order of `XskPorts`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A frame in a UMEM chunk. It owns its chunk exclusively while it exists.
#[derive(Debug)]
pub struct UmemFrame {
    base: NonNull<u8>,
    chunk: u64,
    start: u32,
    end: u32,
}

impl UmemFrame {
    fn ptr(&self) -> *mut u8 {
        // SAFETY: `chunk + start` lies inside the UMEM area: chunks are FRAME_SIZE-aligned
        // offsets below the area's length and `start <= end <= FRAME_SIZE`.
        unsafe { self.base.as_ptr().add(self.chunk as usize + self.start as usize) }
    }

    fn desc(&self) -> XdpDesc {
        XdpDesc { addr: self.chunk + u64::from(self.start), len: self.end - self.start, options: 0 }
    }
}

impl Frame for UmemFrame {
    fn data(&self) -> &[u8] {
        // SAFETY: the frame owns its chunk (see the module doc); the range is inside it.
        unsafe { std::slice::from_raw_parts(self.ptr(), (self.end - self.start) as usize) }
    }
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `data`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), (self.end - self.start) as usize) }
    }
    fn headroom(&self) -> usize {
        self.start as usize
    }
    fn push_front(&mut self, n: usize) -> bool {
        match u32::try_from(n) {
            Ok(n) if n <= self.start => {
                self.start -= n;
                true
            }
            _ => false,
        }
    }
    fn pull_front(&mut self, n: usize) -> bool {
        match u32::try_from(n) {
            Ok(n) if n <= self.end - self.start => {
                self.start += n;
                true
            }
            _ => false,
        }
    }
    fn resize(&mut self, len: usize) -> bool {
        match u32::try_from(len) {
            Ok(len) if self.start + len <= FRAME_SIZE => {
                self.end = self.start + len;
                true
            }
            _ => false,
        }
    }
}

/// The free chunks; also the pool replicas come from.
#[derive(Debug)]
pub struct UmemPool {
    base: NonNull<u8>,
    free: Vec<u64>,
}

impl UmemPool {
    fn chunk_of(addr: u64) -> u64 {
        addr & !u64::from(FRAME_SIZE - 1)
    }

    fn frame(&self, addr: u64, len: u32) -> UmemFrame {
        let chunk = Self::chunk_of(addr);
        let start = (addr - chunk) as u32;
        UmemFrame { base: self.base, chunk, start, end: (start + len).min(FRAME_SIZE) }
    }
}

impl FramePool<UmemFrame> for UmemPool {
    fn copy_of(&mut self, data: &[u8]) -> Option<UmemFrame> {
        if data.len() > (FRAME_SIZE - POOL_HEADROOM) as usize {
            return None;
        }
        let chunk = self.free.pop()?;
        let mut f = UmemFrame { base: self.base, chunk, start: POOL_HEADROOM, end: POOL_HEADROOM + data.len() as u32 };
        f.data_mut().copy_from_slice(data);
        Some(f)
    }
}

/// Counters of the I/O layer itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XskStats {
    /// Frames not sent because a transmit ring was full.
    pub tx_ring_full: u64,
    /// Receive buffers not given to the kernel because the free list was empty.
    pub fill_starved: u64,
}

/// Most frames read from the mirrors per receive call.
const HOST_BUDGET: usize = 64;
/// Under load, the mirrors are polled every this many receive calls (always when the AF_XDP
/// rings had nothing): one poll() per several batches instead of a read() per mirror per batch.
const HOST_POLL_EVERY: u32 = 8;

struct XskPort {
    port: PortId,
    ifname: String,
    device: DeviceQueue,
    rx: RingRx,
    tx: RingTx,
    user: User,
    /// Chunks in this port's fill ring.
    in_fill: u32,
    /// Receive buffers to keep in the fill ring ([`fill_target`]).
    fill_target: u32,
    /// Frames staged for transmit in this batch.
    staged: Vec<XdpDesc>,
}

/// AF_XDP sockets on one receive queue of each port, sharing one UMEM: one worker's ports.
pub struct XskPorts {
    /// The receive queue the sockets are bound to.
    queue: u32,
    ports: Vec<XskPort>,
    /// PortId → index in `ports`.
    by_id: Vec<Option<usize>>,
    pool: UmemPool,
    pollfds: Vec<libc::pollfd>,
    /// The host path: a kernel mirror per port (by port index), see `crate::host`.
    taps: Vec<Option<Tap>>,
    /// The mirrors' descriptors for poll(), and whose they are.
    host_pollfds: Vec<libc::pollfd>,
    host_ports: Vec<PortId>,
    /// Receive calls so far (for [`HOST_POLL_EVERY`]).
    rounds: u32,
    /// I/O counters.
    pub stats: XskStats,
    umem: Umem,
    _area: Area,
}

// SAFETY: everything an `XskPorts` holds — the mapping behind its UMEM (raw pointers), the
// UMEM, the sockets and their rings, the free list, the mirrors — is owned by it alone and used
// only through `&mut self`; no other handle to them exists, so the whole may move to the
// thread of the worker that will use it (it is opened before the threads start, while the
// process still has the capabilities AF_XDP needs).
unsafe impl Send for XskPorts {}

impl std::fmt::Debug for XskPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskPorts").field("ports", &self.ports.iter().map(|p| &p.ifname).collect::<Vec<_>>()).finish()
    }
}

impl XskPorts {
    /// Open a socket on queue 0 of each `(port, ifname)`.
    pub fn open(ports: &[(PortId, String)]) -> Result<XskPorts, XskError> {
        XskPorts::open_queue(ports, 0)
    }

    /// Open a socket on receive queue `queue` of each `(port, ifname)`, with a UMEM of their
    /// own (a worker per queue: nothing is shared with another queue's sockets).
    pub fn open_queue(ports: &[(PortId, String)], queue: u32) -> Result<XskPorts, XskError> {
        let len = (FRAME_SIZE * FRAMES) as usize;
        let area = Area::new(len)?;
        let config = UmemConfig { fill_size: RING_SIZE, complete_size: RING_SIZE, frame_size: FRAME_SIZE, headroom: 0, flags: 0 };
        let slice = NonNull::slice_from_raw_parts(area.ptr, len);
        // SAFETY: the area is page-aligned (mmap), lives as long as the UMEM (`_area` is the
        // last field of `XskPorts`, dropped after `umem` and the sockets), and is used only
        // through `UmemFrame`s that own disjoint chunks.
        let umem = unsafe { Umem::new(config, slice) }.map_err(|e| sock_err("UMEM registration", "-", e))?;
        let mut pool = UmemPool { base: area.ptr, free: (0..FRAMES).rev().map(|i| u64::from(i * FRAME_SIZE)).collect() };
        let mut out = vec![];
        let mut by_id = vec![];
        for (i, (port, ifname)) in ports.iter().enumerate() {
            let p = open_socket(&umem, &mut pool, queue, *port, ifname, i == 0, ports.len())?;
            if by_id.len() <= port.index() {
                by_id.resize(port.index() + 1, None);
            }
            by_id[port.index()] = Some(out.len());
            out.push(p);
        }
        let pollfds = out.iter().map(|p| libc::pollfd { fd: p.rx.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
        Ok(XskPorts { queue, ports: out, by_id, pool, pollfds, taps: vec![], host_pollfds: vec![], host_ports: vec![], rounds: 0, stats: XskStats::default(), umem, _area: area })
    }

    /// Open a socket on this worker's queue of another interface, sharing the UMEM (a port
    /// attached while the dataplane runs). Returns the socket's descriptor for the XSKMAP; the
    /// socket stays owned here.
    pub fn add_port(&mut self, port: PortId, ifname: &str) -> Result<RawFd, XskError> {
        // Asked again (an earlier attempt failed elsewhere): the socket is there.
        if let Some(i) = self.by_id.get(port.index()).copied().flatten() {
            return Ok(self.ports[i].user.as_raw_fd());
        }
        let p = open_socket(&self.umem, &mut self.pool, self.queue, port, ifname, false, self.ports.len() + 1)?;
        let fd = p.user.as_raw_fd();
        if self.by_id.len() <= port.index() {
            self.by_id.resize(port.index() + 1, None);
        }
        self.by_id[port.index()] = Some(self.ports.len());
        self.pollfds.push(libc::pollfd { fd: p.rx.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        self.ports.push(p);
        Ok(fd)
    }

    /// Give `port` its kernel mirror: to-host verdicts for it are written there, and what the
    /// host stack sends on it is received as from-host frames of `port`.
    pub fn attach_host(&mut self, port: PortId, tap: Tap) {
        let pollfd = libc::pollfd { fd: tap.raw_fd(), events: libc::POLLIN, revents: 0 };
        self.pollfds.push(pollfd);
        self.host_pollfds.push(pollfd);
        self.host_ports.push(port);
        if self.taps.len() <= port.index() {
            self.taps.resize_with(port.index() + 1, || None);
        }
        self.taps[port.index()] = Some(tap);
    }

    /// The socket of each port, for the XSKMAP: (port, queue, fd).
    pub fn sockets(&self) -> Vec<(PortId, u32, BorrowedFd<'_>)> {
        self.ports
            .iter()
            .map(|p| {
                let fd: RawFd = p.user.as_raw_fd();
                // SAFETY: the socket fd is owned by `p.user`, which outlives the borrow of self.
                (p.port, self.queue, unsafe { BorrowedFd::borrow_raw(fd) })
            })
            .collect()
    }

    /// Ask the kernel to busy-poll the sockets (SO_PREFER_BUSY_POLL, 20 µs, budget 64), so a
    /// worker that shares a CPU with the receive softirq drives the NAPI itself instead of
    /// being starved by it. Needs kernel support; an error leaves the sockets as they were.
    pub fn prefer_busy_poll(&self) -> std::io::Result<()> {
        for p in &self.ports {
            let fd = p.user.as_raw_fd();
            for (opt, val) in [(libc::SO_PREFER_BUSY_POLL, 1), (libc::SO_BUSY_POLL, 20), (libc::SO_BUSY_POLL_BUDGET, 64)] {
                let v: libc::c_int = val;
                // SAFETY: `v` is a c_int that outlives the call; the fd belongs to `p.user`.
                let r = unsafe {
                    libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&v as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
                };
                if r != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }

    /// Chunks on the free list (for tests and stats).
    pub fn free_frames(&self) -> usize {
        self.pool.free.len()
    }

    /// Kernel-side statistics of one port's socket: (rx dropped, rx ring full).
    pub fn kernel_stats(&self) -> Vec<(String, u64, u64)> {
        let _ = &self.umem;
        self.ports
            .iter()
            .filter_map(|p| p.user.statistics_v2().ok().map(|s| (p.ifname.clone(), s.rx_dropped, s.rx_ring_full)))
            .collect()
    }
}

/// A socket on `queue` of `ifname` over `umem` (the first of a UMEM when `first`), its rings
/// mapped, bound, and its fill ring filled for one of `ports` ports.
fn open_socket(umem: &Umem, pool: &mut UmemPool, queue: u32, port: PortId, ifname: &str, first: bool, ports: usize) -> Result<XskPort, XskError> {
    let cname = CString::new(ifname).map_err(|_| XskError::NoInterface(ifname.to_string()))?;
    let mut info = IfInfo::invalid();
    info.from_name(&cname).map_err(|_| XskError::NoInterface(ifname.to_string()))?;
    info.set_queue(queue);
    let sock = if first { Socket::with_shared(&info, umem) } else { Socket::new(&info) }.map_err(|e| sock_err("socket", ifname, e))?;
    let device = umem.fq_cq(&sock).map_err(|e| sock_err("fill/completion rings", ifname, e))?;
    let user = umem
        .rx_tx(
            &sock,
            &SocketConfig {
                rx_size: NonZeroU32::new(RING_SIZE),
                tx_size: NonZeroU32::new(RING_SIZE),
                // Sockets sharing the first one's UMEM must not pass flags: they inherit its
                // need-wakeup mode (the kernel answers EINVAL otherwise).
                bind_flags: if first { SocketConfig::XDP_BIND_NEED_WAKEUP } else { 0 },
            },
        )
        .map_err(|e| sock_err("rx/tx rings", ifname, e))?;
    let rx = user.map_rx().map_err(|e| sock_err("rx ring mmap", ifname, e))?;
    let tx = user.map_tx().map_err(|e| sock_err("tx ring mmap", ifname, e))?;
    umem.bind(&user).map_err(|e| sock_err("bind", ifname, e))?;
    let mut p = XskPort { port, ifname: ifname.to_string(), device, rx, tx, user, in_fill: 0, fill_target: fill_target(ports), staged: Vec::with_capacity(64) };
    refill(&mut p, pool, &mut XskStats::default());
    Ok(p)
}

/// Reap transmit completions into the free list and top the fill ring up.
fn refill(p: &mut XskPort, pool: &mut UmemPool, stats: &mut XskStats) {
    {
        let mut done = p.device.complete(RING_SIZE);
        while let Some(addr) = done.read() {
            pool.free.push(UmemPool::chunk_of(addr));
        }
        done.release();
    }
    let want = p.fill_target.saturating_sub(p.in_fill);
    if want == 0 {
        return;
    }
    let give = want.min(pool.free.len() as u32);
    if give < want {
        stats.fill_starved += u64::from(want - give);
    }
    if give == 0 {
        return;
    }
    // xdpilone's reservation may come back shorter than asked even with room in the ring (it
    // refreshes its cached consumer index only when the cache runs dry): reserve again until
    // everything is given or the ring is really full. Only what was inserted leaves the list.
    let mut given = 0;
    while given < give {
        let mut fill = p.device.fill(give - given);
        let take = (fill.capacity() as usize).min(pool.free.len());
        if take == 0 {
            break;
        }
        let start = pool.free.len() - take;
        let n = fill.insert(pool.free[start..].iter().copied());
        fill.commit();
        drop(fill);
        pool.free.truncate(pool.free.len() - n as usize);
        given += n;
        if n == 0 {
            break;
        }
    }
    p.in_fill += given;
}

impl XskPorts {
    /// Read up to `max` frames the host stack sent on the mirrors that poll() says are ready.
    fn receive_from_host(&mut self, batch: &mut Batch<UmemFrame>, max: usize) -> usize {
        for p in &mut self.host_pollfds {
            p.revents = 0;
        }
        // SAFETY: `host_pollfds` is a valid array of `len` pollfd structs owned by self; a zero
        // timeout does not block.
        let ready = unsafe { libc::poll(self.host_pollfds.as_mut_ptr(), self.host_pollfds.len() as libc::nfds_t, 0) };
        if ready <= 0 {
            return 0;
        }
        let mut got = 0;
        for (pollfd, port) in self.host_pollfds.iter().zip(&self.host_ports) {
            let Some(tap) = self.taps.get(port.index()).and_then(Option::as_ref) else { continue };
            if pollfd.revents & libc::POLLIN == 0 {
                continue;
            }
            loop {
                if got >= max {
                    return got;
                }
                let Some(chunk) = self.pool.free.pop() else { return got };
                let mut f = UmemFrame { base: self.pool.base, chunk, start: POOL_HEADROOM, end: FRAME_SIZE };
                match tap.read(f.data_mut()) {
                    Ok(Some(n)) if n > 0 => {
                        f.end = POOL_HEADROOM + n as u32;
                        batch.push_from_host(f, *port);
                        got += 1;
                    }
                    _ => {
                        self.pool.free.push(chunk);
                        break;
                    }
                }
            }
        }
        got
    }
}

impl Ports for XskPorts {
    type Frame = UmemFrame;
    type Pool = UmemPool;

    fn receive(&mut self, batch: &mut Batch<UmemFrame>, max: usize) -> usize {
        let mut got = 0;
        for p in &mut self.ports {
            refill(p, &mut self.pool, &mut self.stats);
            if got >= max {
                continue;
            }
            let mut rx = p.rx.receive((max - got) as u32);
            let mut n = 0;
            while let Some(desc) = rx.read() {
                batch.push(self.pool.frame(desc.addr, desc.len), p.port);
                n += 1;
            }
            rx.release();
            drop(rx);
            p.in_fill = p.in_fill.saturating_sub(n);
            got += n as usize;
            if n == 0 && p.device.needs_wakeup() {
                p.device.wake();
            }
        }
        self.rounds = self.rounds.wrapping_add(1);
        if !self.host_pollfds.is_empty() && (got == 0 || self.rounds.is_multiple_of(HOST_POLL_EVERY)) {
            // Not bounded by `max`: a full batch from the wire must not starve the host's frames.
            got += self.receive_from_host(batch, HOST_BUDGET);
        }
        got
    }

    fn transmit(&mut self, batch: &mut Batch<UmemFrame>, counters: &mut Counters) {
        for pkt in batch.packets.drain(..) {
            let egress = match pkt.verdict {
                Verdict::Forward(port) => Some(port),
                Verdict::Reply => Some(pkt.ingress),
                Verdict::ToHost(port) => {
                    if let Some(tap) = self.taps.get(port.index()).and_then(Option::as_ref) {
                        if tap.write(pkt.frame.data()).is_err() {
                            counters.host_refused(pkt.ingress, DropReason::HostQueueFull);
                        }
                    }
                    None
                }
                _ => None,
            };
            match egress.and_then(|e| self.by_id.get(e.index()).copied().flatten()) {
                Some(i) => self.ports[i].staged.push(pkt.frame.desc()),
                None => self.pool.free.push(pkt.frame.chunk),
            }
        }
        for p in &mut self.ports {
            if p.staged.is_empty() {
                continue;
            }
            // As in `refill`: a short reservation is not a full ring; reserve until all is
            // in or the ring takes nothing more.
            let mut sent = 0usize;
            while sent < p.staged.len() {
                let mut w = p.tx.transmit((p.staged.len() - sent) as u32);
                let n = w.insert(p.staged[sent..].iter().copied()) as usize;
                w.commit();
                if n == 0 {
                    break;
                }
                sent += n;
            }
            for d in &p.staged[sent..] {
                self.pool.free.push(UmemPool::chunk_of(d.addr));
                self.stats.tx_ring_full += 1;
            }
            p.staged.clear();
            // In copy mode each sendto() makes the kernel send at most 32 descriptors
            // (TX_BATCH_SIZE in net/xdp/xsk.c): kick until the ring is drained, a bounded
            // number of times (a full peer queue leaves the rest for the next batch).
            if p.tx.needs_wakeup() {
                let mut kicks = 0;
                while p.tx.pending() > 0 && kicks < 16 {
                    p.tx.wake();
                    kicks += 1;
                }
            }
        }
    }

    fn pool(&mut self) -> &mut UmemPool {
        &mut self.pool
    }

    fn add_port(&mut self, port: PortId, ifname: &str) -> Result<(u32, i32), String> {
        XskPorts::add_port(self, port, ifname).map(|fd| (self.queue, fd)).map_err(|e| e.to_string())
    }

    fn wait(&mut self, timeout: Duration) {
        for p in &mut self.pollfds {
            p.revents = 0;
        }
        // SAFETY: `pollfds` is a valid array of `len` pollfd structs owned by self.
        unsafe {
            libc::poll(self.pollfds.as_mut_ptr(), self.pollfds.len() as libc::nfds_t, timeout.as_millis() as libc::c_int);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_rings_leave_half_the_umem_in_flight() {
        assert_eq!(fill_target(1), FILL_TARGET);
        assert_eq!(fill_target(2), FILL_TARGET);
        for ports in 1..=64 {
            let t = fill_target(ports);
            assert!(t > 0 && t <= FILL_TARGET, "{ports} ports: {t}");
            assert!(t * ports as u32 <= FRAMES / 2, "{ports} ports × {t} fill buffers leave less than half of {FRAMES}");
        }
    }

    #[test]
    fn umem_frame_bounds() {
        let area = Area::new(FRAME_SIZE as usize * 2).unwrap();
        let mut pool = UmemPool { base: area.ptr, free: vec![0, u64::from(FRAME_SIZE)] };
        let mut f = pool.copy_of(&[1, 2, 3]).unwrap();
        assert_eq!(f.chunk, u64::from(FRAME_SIZE));
        assert_eq!(f.data(), &[1, 2, 3]);
        assert!(f.push_front(POOL_HEADROOM as usize));
        assert!(!f.push_front(1));
        assert!(f.pull_front(POOL_HEADROOM as usize));
        assert!(f.resize((FRAME_SIZE - POOL_HEADROOM) as usize));
        assert!(!f.resize((FRAME_SIZE - POOL_HEADROOM + 1) as usize));
        let g = pool.frame(u64::from(FRAME_SIZE) + 300, 60);
        assert_eq!((g.chunk, g.start, g.end), (u64::from(FRAME_SIZE), 300, 360));
        assert!(pool.copy_of(&[0; 4000]).is_none());
        let _ = f;
        drop(area);
    }
}
