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
