//! UDP datagrams (RFC 768), with the IPv4 pseudo-header checksum.
//!
//! ```text
//!  0          2          4        6          8
//!  | src port | dst port | length | checksum | payload...
//! ```
//!
//! [`UdpPacket::new_checked`] guarantees 8 bytes and `8 ≤ length ≤ buffer len` (bytes
//! after `length` are allowed and ignored); after it no accessor panics. The checksum is
//! not checked: call [`UdpPacket::verify_checksum_v4`]. Pass the view the IP payload so
//! that the length field is checked against what the IP header carried.

use std::net::Ipv4Addr;

use super::checksum;
use super::{read_u16, write_u16, Result, WireError};

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
    pub(super) const CHECKSUM: usize = 6;
}

const PROTOCOL_UDP: u8 = 17;

/// A view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Length of the UDP header.
    pub const HEADER_LEN: usize = 8;

    /// Wraps `buffer` without any check; accessors may panic if it is too short or the
    /// length field lies.
    pub fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after checking `8 ≤ length ≤ buffer len`; afterwards no accessor
    /// panics.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(read_u16(data, field::LENGTH));
        if len < Self::HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len > data.len() {
            return Err(WireError::Truncated);
        }
        Ok(UdpPacket { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus payload, in bytes.
    #[expect(
        clippy::len_without_is_empty,
        reason = "the name of the UDP length field"
    )]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The checksum field (0: no checksum).
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload: bytes `8..len`.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..usize::from(self.len())]
    }

    /// True when the checksum is absent (0) or right for this datagram carried in IPv4
    /// from `src` to `dst`.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || self.compute_checksum_v4(src, dst) == 0
    }

    /// The checksum over pseudo-header and datagram (`..len`) as it stands.
    fn compute_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let len = self.len();
        let pseudo = checksum::pseudo_header_v4(src.octets(), dst.octets(), PROTOCOL_UDP, len);
        checksum::fold(pseudo + checksum::sum(&self.buffer.as_ref()[..usize::from(len)]))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port (checksum not updated).
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port (checksum not updated).
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field. A length the buffer does not hold voids the guarantees of
    /// `new_checked` for [`UdpPacket::payload`] and the checksum methods.
    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes and writes the checksum for IPv4 from `src` to `dst`; a computed 0 is
    /// sent as 0xffff (RFC 768: 0 means "no checksum").
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let sum = match self.compute_checksum_v4(src, dst) {
            0 => 0xffff,
            sum => sum,
        };
        self.set_checksum(sum);
    }
}

/// Writes an 8-byte UDP header with checksum 0 ("none") into `buf[..8]`; `len` is the
/// length field (header plus payload).
///
/// # Panics
/// If `buf` is shorter than 8 bytes: callers size the buffer before emitting.
pub fn emit_header(buf: &mut [u8], src_port: u16, dst_port: u16, len: u16) {
    write_u16(buf, field::SRC_PORT, src_port);
    write_u16(buf, field::DST_PORT, dst_port);
    write_u16(buf, field::LENGTH, len);
    write_u16(buf, field::CHECKSUM, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::assert_short_prefixes_rejected;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    /// A VXLAN-bound datagram, 49152 -> 4789, length 12, payload "ping"; checksum
    /// worked by hand: pseudo c000+0201+c000+0202+0011+000c, header c000+12b5+000c,
    /// payload 7069+6e67 sum to 0x3_35b1, fold 0x35b4, ones-complement 0xca4b.
    const DATAGRAM: [u8; 12] = [
        0xc0, 0x00, 0x12, 0xb5, 0x00, 0x0c, 0xca, 0x4b, b'p', b'i', b'n', b'g',
    ];

    #[test]
    fn parse_fixture() {
        let udp = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(udp.src_port(), 49152);
        assert_eq!(udp.dst_port(), 4789);
        assert_eq!(udp.len(), 12);
        assert_eq!(udp.checksum(), 0xca4b);
        assert_eq!(udp.payload(), b"ping");
        assert!(udp.verify_checksum_v4(SRC, DST));
        assert!(!udp.verify_checksum_v4(SRC, Ipv4Addr::new(192, 0, 2, 3)));
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut bytes = DATAGRAM;
        bytes[6] = 0;
        bytes[7] = 0;
        let udp = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(udp.verify_checksum_v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // A datagram whose checksum computes to 0: the payload word is the
        // ones-complement of everything else, so the whole sums to 0xffff.
        let mut bytes = [0u8; 10];
        emit_header(&mut bytes, 1, 2, 10);
        let rest = checksum::pseudo_header_v4([0; 4], [0; 4], 17, 10) + checksum::sum(&bytes);
        bytes[8..].copy_from_slice(&checksum::fold(rest).to_be_bytes());
        let mut udp = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        udp.fill_checksum_v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum_v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn checks() {
        assert_short_prefixes_rejected(&DATAGRAM, 12, |b| UdpPacket::new_checked(b).map(drop));
        assert_eq!(
            UdpPacket::new_checked(&DATAGRAM[..7]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            UdpPacket::new_checked(&DATAGRAM[..11]),
            Err(WireError::Truncated)
        );
        let mut short_len = DATAGRAM;
        short_len[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&short_len[..]),
            Err(WireError::Malformed)
        );
        let mut padded = [0u8; 20];
        padded[..12].copy_from_slice(&DATAGRAM);
        let udp = UdpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(udp.payload(), b"ping");
        assert!(udp.verify_checksum_v4(SRC, DST));
    }

    #[test]
    fn emit_and_fill_round_trip() {
        let mut buf = [0u8; 12];
        emit_header(&mut buf, 49152, 4789, 12);
        buf[8..].copy_from_slice(b"ping");
        let mut udp = UdpPacket::new_checked(&mut buf[..]).unwrap();
        assert_eq!(udp.checksum(), 0);
        udp.fill_checksum_v4(SRC, DST);
        assert_eq!(udp.into_inner(), &DATAGRAM[..]);
    }

    #[test]
    fn setters() {
        let mut buf = DATAGRAM;
        let mut udp = UdpPacket::new_checked(&mut buf[..]).unwrap();
        udp.set_src_port(1);
        udp.set_dst_port(2);
        udp.set_len(10);
        udp.set_checksum(0x1234);
        assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (1, 2, 10));
        assert_eq!(udp.checksum(), 0x1234);
        assert_eq!(udp.payload(), b"pi");
    }

    proptest! {
        #[test]
        fn never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..40),
                        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>()) {
            if let Ok(mut udp) = UdpPacket::new_checked(&mut bytes[..]) {
                let _ = (udp.src_port(), udp.dst_port(), udp.len(), udp.checksum());
                let _ = udp.payload().len();
                let _ = udp.verify_checksum_v4(src.into(), dst.into());
                udp.fill_checksum_v4(src.into(), dst.into());
                prop_assert!(udp.verify_checksum_v4(src.into(), dst.into()));
                udp.set_src_port(1);
                udp.set_dst_port(2);
                udp.set_checksum(0);
            }
        }

        /// Our checksum equals etherparse's, both ways.
        #[test]
        fn matches_etherparse(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
                              sport in any::<u16>(), dport in any::<u16>(),
                              payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let theirs = etherparse::UdpHeader::without_ipv4_checksum(sport, dport, payload.len())
                .unwrap();
            let expected = theirs.calc_checksum_ipv4_raw(src, dst, &payload).unwrap();

            let mut buf = vec![0u8; 8 + payload.len()];
            emit_header(&mut buf, sport, dport, theirs.length);
            buf[8..].copy_from_slice(&payload);
            prop_assert_eq!(&buf[..8], &theirs.to_bytes()[..]);
            let mut udp = UdpPacket::new_checked(&mut buf[..]).unwrap();
            udp.fill_checksum_v4(src.into(), dst.into());
            prop_assert_eq!(udp.checksum(), expected);
            prop_assert!(udp.verify_checksum_v4(src.into(), dst.into()));

            let parsed = etherparse::UdpHeaderSlice::from_slice(&buf).unwrap();
            prop_assert_eq!(parsed.source_port(), sport);
            prop_assert_eq!(parsed.destination_port(), dport);
            prop_assert_eq!(parsed.length(), theirs.length);
            prop_assert_eq!(parsed.checksum(), expected);
        }
    }
}
