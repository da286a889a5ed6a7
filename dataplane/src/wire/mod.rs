//! Zero-copy header views over packet bytes, in the smoltcp style.
//!
//! Every protocol has a view `Xxx<T: AsRef<[u8]>>` that wraps a buffer and reads or
//! writes fields in place, at fixed byte ranges, in network byte order. Nothing here
//! allocates, copies a packet, or casts bytes to a struct.
//!
//! # The contract of a view
//! - `new_checked(buffer)` validates the buffer once (length, and the few fields that
//!   other accessors depend on). On success **no accessor of that view panics**, for any
//!   content of the buffer: this is what receive paths use.
//! - `new_unchecked(buffer)` validates nothing: it is for buffers the caller has sized
//!   and is about to write (emit paths). Accessors may then panic on a short buffer.
//! - A failed check returns [`WireError::Truncated`] when the bytes run out before the
//!   header (or the length it announces) ends, and [`WireError::Malformed`] when a field
//!   holds a value this dataplane cannot interpret.
//! - Free `emit*` functions write a whole header into a caller-sized buffer and panic if
//!   it is too short (documented on each): they are never fed received data.
//!
//! Protocol numbers are enums with an `Unknown(..)` case ([`EtherType`], [`IpProtocol`]),
//! and wire values with a restricted range use the newtypes of `carrier-common`
//! (`Label`, `Vni`).

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod mpls;
pub mod udp;
pub mod vxlan;

pub use arp::ArpPacket;
pub use ethernet::{EtherType, EthernetFrame, MacAddr};
pub use icmpv4::Icmpv4Packet;
pub use ipv4::{IpProtocol, Ipv4Packet};
pub use mpls::LabelStackEntry;
pub use udp::UdpPacket;
pub use vxlan::VxlanHeader;

/// Why a buffer is not a valid header of the protocol being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the header, or the length the header announces, does.
    #[error("truncated")]
    Truncated,
    /// A field holds a value that makes the header uninterpretable.
    #[error("malformed")]
    Malformed,
}

/// The result of parsing a header.
pub type Result<T> = core::result::Result<T, WireError>;

/// A field's byte range inside its header.
type Field = core::ops::Range<usize>;

/// Reads the big-endian `u16` at `data[at..at + 2]`.
#[inline]
fn read_u16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// Writes `value` big-endian at `data[at..at + 2]`.
#[inline]
fn write_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Test helpers shared by the per-protocol test modules.
#[cfg(test)]
mod test_util {
    /// Asserts that every strict prefix of `bytes` shorter than `min` is refused by
    /// `check` (and that none of them panics).
    pub(super) fn assert_short_prefixes_rejected<E: core::fmt::Debug>(
        bytes: &[u8],
        min: usize,
        check: impl Fn(&[u8]) -> Result<(), E>,
    ) {
        for len in 0..min.min(bytes.len() + 1) {
            assert!(
                check(&bytes[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
    }
}
