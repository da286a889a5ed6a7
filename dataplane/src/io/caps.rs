//! Dropping the capabilities the running dataplane does not need.
//!
//! Once the XDP program is attached, the AF_XDP sockets are bound, the host path is made and the
//! table socket listens, the dataplane keeps only [`KEPT`]: `net_admin` (the mirrors' carrier
//! state, detaching XDP on exit), `bpf` and `perfmon` (reading and updating the XDP program's
//! maps), `net_raw`, `ipc_lock` and `sys_resource` (the sockets and the locked UMEM). Not
//! `sys_admin`: the VRF namespaces of the host path (whose deletion unmounts them) are deleted
//! by a reaper the host path starts before the drop (`crate::host::HostPath`). Everything else —
//! module loading, ptrace, raw I/O, changing user ids, overriding file permissions, killing other
//! processes, … — goes from the effective, permitted and inheritable sets, the ambient set and the
//! bounding set, so neither the dataplane nor a program it starts can get it back.

use std::io;

/// The capabilities kept: (number, name as in capabilities(7) without `CAP_`).
pub const KEPT: &[(u32, &str)] = &[(12, "net_admin"), (13, "net_raw"), (14, "ipc_lock"), (24, "sys_resource"), (38, "perfmon"), (39, "bpf")];

/// The kept set as a bit mask (bit n = capability n), as `/proc/PID/status` prints it.
pub fn kept_mask() -> u64 {
    KEPT.iter().fold(0, |m, (c, _)| m | 1 << c)
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;
const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_CLEAR_ALL: libc::c_ulong = 4;

/// The highest capability this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

/// Drops every capability but [`KEPT`] (those the process has); returns the names of those it
/// still holds.
pub fn drop_all_but_kept() -> io::Result<Vec<&'static str>> {
    let keep = kept_mask();
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes next.
    for cap in 0..=last_cap() {
        if keep & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` into `data`, as version 3 defines.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let words = [keep as u32, (keep >> 32) as u32];
    for (d, w) in data.iter_mut().zip(words) {
        d.permitted &= w;
        d.effective &= w;
        d.inheritable = 0;
    }
    // SAFETY: capset reads the header and two `Data`.
    if unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let held = u64::from(data[0].effective) | u64::from(data[1].effective) << 32;
    Ok(KEPT.iter().filter(|(c, _)| held & (1 << c) != 0).map(|(_, n)| *n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_mask_has_exactly_the_kept_capabilities() {
        let m = kept_mask();
        assert_eq!(m.count_ones() as usize, KEPT.len());
        // CAP_NET_ADMIN (12) and CAP_BPF (39) in, CAP_SYS_MODULE (16) and CAP_SYS_PTRACE (19) out.
        assert!(m & (1 << 12) != 0 && m & (1 << 39) != 0);
        assert!(m & (1 << 16) == 0 && m & (1 << 19) == 0);
    }
}
