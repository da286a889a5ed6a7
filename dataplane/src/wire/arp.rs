//! ARP for IPv4 over Ethernet (RFC 826).
//!
//! ```text
//!  0      2      4    5    6     8     14    18    24    28
//!  | htype| ptype| hlen| plen| oper| sha | spa | tha | tpa |
//! ```
//!
//! [`ArpPacket::new_checked`] guarantees 28 bytes and htype 1 (Ethernet), ptype 0x0800
//! (IPv4), hlen 6, plen 4; any other ARP flavour is [`WireError::Malformed`]. After it no
//! accessor panics. The operation is not checked: compare it with [`ArpPacket::REQUEST`]
//! and [`ArpPacket::REPLY`].

use std::net::Ipv4Addr;

use super::{read_u16, write_u16, Field, MacAddr, Result, WireError};

mod field {
    use super::Field;
    pub(super) const HTYPE: usize = 0;
    pub(super) const PTYPE: usize = 2;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: usize = 6;
    pub(super) const SHA: Field = 8..14;
    pub(super) const SPA: Field = 14..18;
    pub(super) const THA: Field = 18..24;
    pub(super) const TPA: Field = 24..28;
}

const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = 0x0800;
const OP_REQUEST: u16 = 1;
const OP_REPLY: u16 = 2;

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

// The constants live on one concrete instantiation (as `HashMap::new` does) so that
// `ArpPacket::REQUEST` resolves without naming a buffer type.
impl ArpPacket<&[u8]> {
    /// Operation 1, request (RFC 826).
    pub const REQUEST: u16 = OP_REQUEST;
    /// Operation 2, reply (RFC 826).
    pub const REPLY: u16 = OP_REPLY;
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Length of an Ethernet/IPv4 ARP packet.
    pub const HEADER_LEN: usize = 28;

    /// Wraps `buffer` without any check; accessors may panic if it is too short.
    pub fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after checking its length (28) and that it is Ethernet/IPv4 ARP;
    /// afterwards no accessor panics.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if read_u16(data, field::HTYPE) != HTYPE_ETHERNET
            || read_u16(data, field::PTYPE) != PTYPE_IPV4
            || data[field::HLEN] != 6
            || data[field::PLEN] != 4
        {
            return Err(WireError::Malformed);
        }
        Ok(ArpPacket { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The operation: 1 request, 2 reply.
    pub fn operation(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::OPER)
    }

    /// The sender hardware address.
    pub fn sender_hw(&self) -> MacAddr {
        let mut addr = [0; 6];
        addr.copy_from_slice(&self.buffer.as_ref()[field::SHA]);
        MacAddr(addr)
    }

    /// The sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        let mut addr = [0; 4];
        addr.copy_from_slice(&self.buffer.as_ref()[field::SPA]);
        Ipv4Addr::from(addr)
    }

    /// The target hardware address (zero in a request).
    pub fn target_hw(&self) -> MacAddr {
        let mut addr = [0; 6];
        addr.copy_from_slice(&self.buffer.as_ref()[field::THA]);
        MacAddr(addr)
    }

    /// The target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        let mut addr = [0; 4];
        addr.copy_from_slice(&self.buffer.as_ref()[field::TPA]);
        Ipv4Addr::from(addr)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the operation.
    pub fn set_operation(&mut self, op: u16) {
        write_u16(self.buffer.as_mut(), field::OPER, op);
    }

    /// Sets the sender hardware address.
    pub fn set_sender_hw(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    /// Sets the sender protocol address.
    pub fn set_sender_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    /// Sets the target hardware address.
    pub fn set_target_hw(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    /// Sets the target protocol address.
    pub fn set_target_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }
}

/// Writes a whole 28-byte Ethernet/IPv4 ARP packet into `buf[..28]`.
///
/// # Panics
/// If `buf` is shorter than 28 bytes: callers size the buffer before emitting.
pub fn emit(buf: &mut [u8], op: u16, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) {
    write_u16(buf, field::HTYPE, HTYPE_ETHERNET);
    write_u16(buf, field::PTYPE, PTYPE_IPV4);
    buf[field::HLEN] = 6;
    buf[field::PLEN] = 4;
    let mut packet = ArpPacket::new_unchecked(&mut buf[..ArpPacket::<&[u8]>::HEADER_LEN]);
    packet.set_operation(op);
    packet.set_sender_hw(sha);
    packet.set_sender_ip(spa);
    packet.set_target_hw(tha);
    packet.set_target_ip(tpa);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::assert_short_prefixes_rejected;
    use proptest::prelude::*;

    /// "Who has 192.168.1.1? Tell 192.168.1.100" from 00:11:22:33:44:55, laid out by
    /// hand from RFC 826 (etherparse 0.16 has no ARP decoder to cross-check with).
    const REQUEST_BYTES: [u8; 28] = [
        0x00, 0x01, // htype Ethernet
        0x08, 0x00, // ptype IPv4
        0x06, 0x04, // hlen, plen
        0x00, 0x01, // request
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // sha
        0xc0, 0xa8, 0x01, 0x64, // spa 192.168.1.100
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha
        0xc0, 0xa8, 0x01, 0x01, // tpa 192.168.1.1
    ];

    #[test]
    fn parse_request() {
        let arp = ArpPacket::new_checked(&REQUEST_BYTES[..]).unwrap();
        assert_eq!(arp.operation(), ArpPacket::REQUEST);
        assert_eq!(
            arp.sender_hw(),
            MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55])
        );
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(192, 168, 1, 100));
        assert_eq!(arp.target_hw(), MacAddr::ZERO);
        assert_eq!(arp.target_ip(), Ipv4Addr::new(192, 168, 1, 1));
    }

    #[test]
    fn emit_matches_fixture_and_round_trips() {
        let mut buf = [0xeeu8; 28];
        emit(
            &mut buf,
            ArpPacket::REQUEST,
            MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]),
            Ipv4Addr::new(192, 168, 1, 100),
            MacAddr::ZERO,
            Ipv4Addr::new(192, 168, 1, 1),
        );
        assert_eq!(buf, REQUEST_BYTES);

        // Turn the request into its reply in place, as proxy-ARP does.
        let mut arp = ArpPacket::new_checked(&mut buf[..]).unwrap();
        let mac = MacAddr([0x02, 0, 0, 0, 0, 1]);
        let (requester, asked) = (arp.sender_hw(), arp.target_ip());
        arp.set_operation(ArpPacket::REPLY);
        arp.set_target_hw(requester);
        arp.set_target_ip(arp.sender_ip());
        arp.set_sender_hw(mac);
        arp.set_sender_ip(asked);
        assert_eq!(arp.operation(), 2);
        assert_eq!(arp.sender_hw(), mac);
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(arp.target_hw(), requester);
        assert_eq!(arp.target_ip(), Ipv4Addr::new(192, 168, 1, 100));
        assert_eq!(&arp.into_inner()[..8], &[0, 1, 8, 0, 6, 4, 0, 2]);
    }

    #[test]
    fn malformed() {
        for (at, value) in [(1, 6), (2, 0x86), (4, 8), (5, 16)] {
            let mut bytes = REQUEST_BYTES;
            bytes[at] = value;
            assert_eq!(
                ArpPacket::new_checked(&bytes[..]),
                Err(WireError::Malformed)
            );
        }
    }

    #[test]
    fn truncated() {
        assert_short_prefixes_rejected(&REQUEST_BYTES, 28, |b| ArpPacket::new_checked(b).map(drop));
        assert_eq!(
            ArpPacket::new_checked(&REQUEST_BYTES[..27]),
            Err(WireError::Truncated)
        );
        // Ethernet padding after the 28 bytes is fine.
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(&REQUEST_BYTES);
        assert!(ArpPacket::new_checked(&padded[..]).is_ok());
    }

    proptest! {
        #[test]
        fn never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..40),
                        header in any::<bool>()) {
            if header && bytes.len() >= 6 {
                bytes[..6].copy_from_slice(&REQUEST_BYTES[..6]);
            }
            if let Ok(mut arp) = ArpPacket::new_checked(&mut bytes[..]) {
                let _ = (arp.operation(), arp.sender_hw(), arp.sender_ip());
                let _ = (arp.target_hw(), arp.target_ip());
                arp.set_operation(ArpPacket::REPLY);
                arp.set_sender_hw(MacAddr::ZERO);
                arp.set_sender_ip(Ipv4Addr::UNSPECIFIED);
                arp.set_target_hw(MacAddr::BROADCAST);
                arp.set_target_ip(Ipv4Addr::BROADCAST);
            }
        }

        #[test]
        fn emit_round_trip(op in any::<u16>(), sha in any::<[u8; 6]>(), spa in any::<[u8; 4]>(),
                           tha in any::<[u8; 6]>(), tpa in any::<[u8; 4]>()) {
            let mut buf = [0u8; 28];
            emit(&mut buf, op, MacAddr(sha), spa.into(), MacAddr(tha), tpa.into());
            let arp = ArpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(arp.operation(), op);
            prop_assert_eq!(arp.sender_hw(), MacAddr(sha));
            prop_assert_eq!(arp.sender_ip(), Ipv4Addr::from(spa));
            prop_assert_eq!(arp.target_hw(), MacAddr(tha));
            prop_assert_eq!(arp.target_ip(), Ipv4Addr::from(tpa));
        }
    }
}
