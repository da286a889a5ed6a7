//! Interfaces of the current network namespace, asked by ioctl rather than through /sys
//! (which shows the namespace it was mounted for, not necessarily the process's).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The interface's index in the current network namespace (netlink-free and independent of
/// which namespace /sys was mounted for).
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name; the call only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// How many receive queues the interface has, asked of the current namespace with
/// `ETHTOOL_GCHANNELS` (the larger of its RX and combined channels); 1 when the driver does
/// not say.
pub fn rx_queues(name: &str) -> usize {
    /// `struct ethtool_channels`.
    #[repr(C)]
    #[derive(Default)]
    struct Channels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    /// `struct ifreq` with `ifr_data`.
    #[repr(C)]
    struct IfReqData {
        name: [libc::c_char; libc::IFNAMSIZ],
        data: *mut Channels,
        _pad: [u8; 16],
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    if name.len() >= libc::IFNAMSIZ {
        return 1;
    }
    // SAFETY: a plain datagram socket, checked and then owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return 1;
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut channels = Channels { cmd: ETHTOOL_GCHANNELS, ..Channels::default() };
    let mut req = IfReqData { name: [0; libc::IFNAMSIZ], data: &mut channels, _pad: [0; 16] };
    for (d, s) in req.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCETHTOOL reads the name and the command of `struct ifreq` / `struct
    // ethtool_channels` and writes the latter, which `channels` lays out; both outlive the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfReqData) } != 0 {
        return 1;
    }
    channels.rx_count.max(channels.combined_count).max(1) as usize
}

/// Whether the interface is up with carrier (`IFF_RUNNING`), asked of the current namespace.
pub fn is_running(name: &str) -> io::Result<bool> {
    #[repr(C)]
    struct IfReqShort {
        name: [libc::c_char; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "interface name too long"));
    }
    // SAFETY: a plain datagram socket, checked and then owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReqShort { name: [0; libc::IFNAMSIZ], flags: 0, _pad: [0; 22] };
    for (d, s) in req.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of a `struct ifreq`, which
    // `req` lays out; it outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req as *mut IfReqShort) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req.flags & libc::IFF_RUNNING as libc::c_short != 0)
}

/// `NETDEV_XDP_ACT_NDO_XMIT`: the interface takes frames an XDP program redirects into it.
/// A veth has it only while its peer runs NAPI (GRO on, or an XDP program attached).
pub const XDP_ACT_NDO_XMIT: u64 = 1 << 2;

/// The interface's XDP features (`NETDEV_A_DEV_XDP_FEATURES`, `NETDEV_XDP_ACT_*` bits) from the
/// kernel's `netdev` generic netlink family, asked of the current namespace. `Ok(None)` when
/// the kernel has no such family (before 6.3).
pub fn xdp_features(ifindex: u32) -> io::Result<Option<u64>> {
    XdpFeatures::open()?.get(ifindex)
}

/// One netlink socket, and the `netdev` family resolved once, for asking many interfaces'
/// XDP features (see [`xdp_features`]).
pub struct XdpFeatures {
    sock: Genl,
    family: Option<u16>,
}

impl std::fmt::Debug for XdpFeatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpFeatures").field("family", &self.family).finish()
    }
}

impl XdpFeatures {
    /// Opens the socket and resolves the family.
    pub fn open() -> io::Result<XdpFeatures> {
        let sock = Genl::open()?;
        let family = sock.family_id("netdev")?;
        Ok(XdpFeatures { sock, family })
    }

    /// `ifindex`'s features; `Ok(None)` when the kernel has no `netdev` family.
    pub fn get(&self, ifindex: u32) -> io::Result<Option<u64>> {
        let Some(family) = self.family else {
            return Ok(None);
        };
        // NETDEV_CMD_DEV_GET (1), version 1, NETDEV_A_DEV_IFINDEX (1).
        let reply = self.sock.request(family, 1, 1, &[(1, &ifindex.to_ne_bytes())])?;
        // NETDEV_A_DEV_XDP_FEATURES (3), a u64.
        Ok(attr(&reply, 3).and_then(|v| v.get(..8)).map(|b| u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])))
    }
}

/// A generic netlink socket for one request at a time.
struct Genl(OwnedFd);

impl Genl {
    fn open() -> io::Result<Genl> {
        // SAFETY: a netlink socket, checked and then owned.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_GENERIC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let sock = Genl(unsafe { OwnedFd::from_raw_fd(fd) });
        let tv = libc::timeval { tv_sec: 1, tv_usec: 0 };
        // SAFETY: SO_RCVTIMEO takes a `timeval`, which outlives the call.
        unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv as *const libc::timeval as *const libc::c_void, std::mem::size_of::<libc::timeval>() as u32) };
        Ok(sock)
    }

    /// The id of generic netlink family `name`, `None` when the kernel has none.
    fn family_id(&self, name: &str) -> io::Result<Option<u16>> {
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        // GENL_ID_CTRL (0x10), CTRL_CMD_GETFAMILY (3), CTRL_ATTR_FAMILY_NAME (2).
        match self.request(0x10, 3, 2, &[(2, &n)]) {
            // CTRL_ATTR_FAMILY_ID (1), a u16.
            Ok(reply) => Ok(attr(&reply, 1).and_then(|v| v.get(..2)).map(|b| u16::from_ne_bytes([b[0], b[1]]))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Send one request and return the attributes of its reply.
    fn request(&self, family: u16, cmd: u8, version: u8, attrs: &[(u16, &[u8])]) -> io::Result<Vec<u8>> {
        let mut msg = vec![0u8; 20];
        msg[4..6].copy_from_slice(&family.to_ne_bytes());
        msg[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
        msg[16] = cmd;
        msg[17] = version;
        for (t, v) in attrs {
            let len = 4 + v.len();
            msg.extend_from_slice(&(len as u16).to_ne_bytes());
            msg.extend_from_slice(&t.to_ne_bytes());
            msg.extend_from_slice(v);
            msg.resize(msg.len().next_multiple_of(4), 0);
        }
        let total = msg.len() as u32;
        msg[0..4].copy_from_slice(&total.to_ne_bytes());
        // SAFETY: sends `msg`'s bytes to the kernel (a zeroed `sockaddr_nl` is the kernel).
        let sent = unsafe {
            let mut to: libc::sockaddr_nl = std::mem::zeroed();
            to.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(self.0.as_raw_fd(), msg.as_ptr() as *const libc::c_void, msg.len(), 0, &to as *const libc::sockaddr_nl as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_nl>() as u32)
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 8192];
        // SAFETY: receives into `buf`, at most its length.
        let got = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let buf = &buf[..got as usize];
        if buf.len() < 16 {
            return Err(io::Error::other("short netlink reply"));
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if kind == libc::NLMSG_ERROR as u16 {
            let errno = buf.get(16..20).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            return Err(io::Error::from_raw_os_error(-errno));
        }
        let len = (u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize).min(buf.len());
        Ok(buf.get(20..len).unwrap_or_default().to_vec())
    }
}

/// The payload of the first attribute of type `kind` in `attrs`.
fn attr(attrs: &[u8], kind: u16) -> Option<&[u8]> {
    let mut at = 0;
    while at + 4 <= attrs.len() {
        let len = usize::from(u16::from_ne_bytes([attrs[at], attrs[at + 1]]));
        let t = u16::from_ne_bytes([attrs[at + 2], attrs[at + 3]]) & 0x3fff;
        if len < 4 || at + len > attrs.len() {
            return None;
        }
        if t == kind {
            return Some(&attrs[at + 4..at + len]);
        }
        at += len.next_multiple_of(4);
    }
    None
}
