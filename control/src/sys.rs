//! Socket options the BGP sessions need that tokio does not expose: TCP MD5 signatures
//! (RFC 2385) and the Generalized TTL Security Mechanism (RFC 5082); giving the C allocator's
//! free memory back to the kernel. The only `unsafe` of the control process.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

/// Longest TCP MD5 key Linux takes (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY: usize = 80;

/// `struct tcp_md5sig` of `linux/tcp.h`.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY],
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialised `T` of the size passed; the kernel only
    // reads it. An invalid fd is reported as an error, not undefined behaviour.
    let r = unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast(), std::mem::size_of::<T>() as libc::socklen_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sign (and require signatures on) TCP segments to and from `peer` with `key` (RFC 2385).
/// Set it on a socket before `connect`, or on the listening socket before the peer connects.
pub fn set_md5(fd: RawFd, peer: Ipv4Addr, key: &[u8]) -> io::Result<()> {
    if key.len() > MD5_MAX_KEY {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("TCP MD5 keys are at most {MD5_MAX_KEY} bytes")));
    }
    // SAFETY: all-zero bytes are a valid `sockaddr_storage` (and a valid `TcpMd5Sig`).
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(peer.octets()) },
        sin_zero: [0; 8],
    };
    // SAFETY: `sockaddr_in` fits in `sockaddr_storage`, which is designed to hold any
    // socket address; both are plain old data.
    unsafe {
        std::ptr::copy_nonoverlapping((&sin as *const libc::sockaddr_in).cast::<u8>(), (&mut sig.addr as *mut libc::sockaddr_storage).cast::<u8>(), std::mem::size_of::<libc::sockaddr_in>());
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig)
}

/// GTSM (RFC 5082): send with TTL 255 and drop what arrives with a TTL below
/// `256 - hops` (one hop: the peer is directly connected).
pub fn set_gtsm(fd: RawFd, hops: u8) -> io::Result<()> {
    let hops = hops.max(1);
    let ttl: libc::c_int = 255;
    let min: libc::c_int = 256 - libc::c_int::from(hops);
    setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl)?;
    setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min)
}

/// Give the memory the C allocator holds free back to the kernel (`malloc_trim(0)`: every
/// arena, free pages in the middle of the heap too). A flush of a large change frees its
/// commands and their encoding at once, on several threads' arenas; without this, the
/// process kept that transient peak as resident memory for as long as it ran.
pub fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers and only changes the allocator's own state.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn options_apply_to_a_tcp_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = listener.as_raw_fd();
        set_md5(fd, Ipv4Addr::LOCALHOST, b"secret").unwrap();
        set_gtsm(fd, 1).unwrap();
        assert!(set_md5(fd, Ipv4Addr::LOCALHOST, &[0; 81]).is_err());
        assert!(set_md5(-1, Ipv4Addr::LOCALHOST, b"x").is_err());
    }
}
