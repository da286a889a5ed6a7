//! TAP devices: the kernel side of the host path (see `crate::host`).
//!
//! A [`Tap`] is a non-persistent TAP interface (`IFF_TAP | IFF_NO_PI`): the kernel deletes it
//! when the last descriptor closes, so a dataplane that dies — even by SIGKILL — leaves no
//! mirror behind. Frames written to it are received by the host stack as if they arrived on
//! that interface; frames the host stack sends on it are read here. The descriptor is
//! non-blocking: a full kernel queue is a counted drop, never a stalled worker.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `TUNSETIFF` = `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `TUNSETCARRIER` = `_IOW('T', 226, int)`.
const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` with the flags member of its union (all TUNSETIFF reads).
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// One TAP interface, open for reading and writing frames.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Create the TAP interface `name` in the current network namespace (down, with a random
    /// MAC: the caller configures it).
    pub fn create(name: &str) -> io::Result<Tap> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a valid interface name")));
        }
        let path = c"/dev/net/tun";
        let fd = open(path)?;
        let mut req = IfReqFlags { name: [0; libc::IFNAMSIZ], flags: IFF_TAP | IFF_NO_PI, _pad: [0; 22] };
        for (d, s) in req.name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` has its layout (name, then
        // the union, whose flags member is a short) and outlives the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReqFlags) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tap { fd, name: name.to_string() })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hand one frame to the host stack. `WouldBlock` when its queue is full.
    pub fn write(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: writes `frame.len()` bytes from a live slice to an fd this Tap owns.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Read one frame the host stack sent into `buf`; `None` when there is none.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: reads at most `buf.len()` bytes into a live, exclusively borrowed buffer.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        }
    }

    /// Set the interface's carrier (its operational state follows the port's link).
    pub fn set_carrier(&self, up: bool) -> io::Result<()> {
        set_carrier(self.fd.as_raw_fd(), up)
    }

    /// A second descriptor of the same interface (e.g. for a thread that sets the carrier).
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// The descriptor, for poll().
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `TUNSETCARRIER` on any descriptor of a TAP interface.
pub fn set_carrier(fd: RawFd, up: bool) -> io::Result<()> {
    let v: libc::c_int = up.into();
    // SAFETY: TUNSETCARRIER reads an int through the pointer; `v` outlives the call.
    if unsafe { libc::ioctl(fd, TUNSETCARRIER, &v as *const libc::c_int) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn open(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated path; the returned descriptor is checked and then owned.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_any_syscall() {
        for name in ["", "a-name-longer-than-15", "a/b", "a b"] {
            assert_eq!(Tap::create(name).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
    }
}
