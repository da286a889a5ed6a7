//! IPv4 headers (RFC 791), with the header checksum of RFC 1071 and the incremental
//! TTL update of RFC 1624.
//!
//! ```text
//!  0        1         2         4       6             8     9      10      12    16    20
//!  | ver/ihl| dscp/ecn| total len| ident | flags/offset| ttl | proto| cksum | src | dst | options..
//! ```
//!
//! [`Ipv4Packet::new_checked`] guarantees: at least 20 bytes, version 4, IHL ≥ 5, the
//! whole header (options included) present, and `header_len ≤ total_len ≤ buffer len`
//! (bytes after `total_len`, such as Ethernet padding, are allowed and ignored by
//! [`Ipv4Packet::payload`]). After it no accessor panics. The checksum is *not* checked:
//! call [`Ipv4Packet::verify_checksum`]. Options are carried, never interpreted.

use std::net::Ipv4Addr;

use super::checksum;
use super::{read_u16, write_u16, Field, Result, WireError};

/// The IP protocol number (IANA "Assigned Internet Protocol Numbers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// 1.
    Icmp,
    /// 6.
    Tcp,
    /// 17.
    Udp,
    /// Any other value (never 1, 6 or 17 when built with `From<u8>`).
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> IpProtocol {
        match value {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> u8 {
        match value {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Unknown(other) => other,
        }
    }
}

mod field {
    use super::Field;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const DSCP_ECN: usize = 1;
    pub(super) const LENGTH: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLG_OFF: usize = 6;
    /// TTL and protocol form one 16-bit word for the checksum.
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: usize = 10;
    pub(super) const SRC: Field = 12..16;
    pub(super) const DST: Field = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = 20;

    /// Wraps `buffer` without any check; accessors may panic if it is too short or
    /// its length fields lie.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after the checks in the module doc; afterwards no accessor panics.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < Self::MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let packet = Ipv4Packet { buffer };
        if packet.version() != 4 || packet.header_len() < Self::MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        let len = packet.buffer.as_ref().len();
        let total_len = usize::from(packet.total_len());
        if packet.header_len() > len {
            return Err(WireError::Truncated);
        }
        if total_len < packet.header_len() {
            return Err(WireError::Malformed);
        }
        if total_len > len {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 after `new_checked`).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes, IHL × 4 (20..=60).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP (high 6 bits) and ECN (low 2 bits) byte.
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// The total length of the datagram, header included.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// The Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// The More Fragments flag.
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// The fragment offset, in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK
    }

    /// The time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's protocol.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let mut addr = [0; 4];
        addr.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        Ipv4Addr::from(addr)
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let mut addr = [0; 4];
        addr.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        Ipv4Addr::from(addr)
    }

    /// True when the header checksum (over `header_len` bytes, options included) is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// The payload: bytes `header_len..total_len`.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// A hash of the flow for ECMP and queue selection: source, destination, protocol,
    /// and for TCP and UDP the two ports when they are there to read — the datagram is
    /// not a fragment (MF clear, offset 0) and carries at least 4 payload bytes — so
    /// that all fragments of one datagram hash alike. [`carrier_common::flow_hash`], which
    /// the XDP express tier computes too.
    pub fn flow_hash(&self) -> u32 {
        carrier_common::flow_hash(self.src_addr().octets(), self.dst_addr().octets(), self.buffer.as_ref()[field::PROTOCOL], self.flow_ports())
    }

    /// The TCP or UDP ports (source and destination as one big-endian word) [`Self::flow_hash`]
    /// hashes; 0 for other protocols, fragments and payloads under 4 bytes.
    pub fn flow_ports(&self) -> u32 {
        if !matches!(self.protocol(), IpProtocol::Tcp | IpProtocol::Udp) || self.more_frags() || self.frag_offset() != 0 {
            return 0;
        }
        self.payload().first_chunk::<4>().map_or(0, |p| u32::from_be_bytes(*p))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the TTL without touching the checksum.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Decrements the TTL by one and updates the checksum incrementally (RFC 1624) from
    /// the TTL/protocol word, so a correct checksum stays correct. The caller checks
    /// `ttl() > 0` first (a TTL of 0 wraps to 255, the checksum still consistent).
    pub fn decrement_ttl(&mut self) {
        let data = self.buffer.as_mut();
        let old_word = read_u16(data, field::TTL);
        data[field::TTL] = data[field::TTL].wrapping_sub(1);
        let new_word = read_u16(data, field::TTL);
        let sum = checksum::update(read_u16(data, field::CHECKSUM), old_word, new_word);
        write_u16(data, field::CHECKSUM, sum);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Recomputes the checksum over the header (`header_len` bytes) and writes it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len();
        let sum = checksum::checksum(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(sum);
    }

    /// Sets the source address (checksum not updated).
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address (checksum not updated).
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Sets the total length (checksum not updated). Setting a length that the buffer
    /// does not hold voids the guarantees of `new_checked` for [`Ipv4Packet::payload`].
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the protocol (checksum not updated).
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.into();
    }

    /// Sets the identification (checksum not updated).
    pub fn set_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    /// The payload, writable: bytes `header_len..total_len`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// Writes a 20-byte header (version 4, IHL 5, DSCP/ECN 0, offset 0, MF clear) with a
/// correct checksum into `buf[..20]`; `total_len` is `20 + payload_len`.
///
/// # Panics
/// If `buf` is shorter than 20 bytes, or `payload_len` exceeds 65515: callers size
/// the packet before emitting.
#[expect(clippy::too_many_arguments, reason = "one argument per header field")]
pub fn emit_header(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    ttl: u8,
    payload_len: u16,
    ident: u16,
    dont_frag: bool,
) {
    let header = &mut buf[..Ipv4Packet::<&[u8]>::MIN_HEADER_LEN];
    let total_len = payload_len
        .checked_add(Ipv4Packet::<&[u8]>::MIN_HEADER_LEN as u16)
        .expect("IPv4 payload longer than 65515 bytes");
    header[field::VER_IHL] = 0x45;
    header[field::DSCP_ECN] = 0;
    write_u16(header, field::LENGTH, total_len);
    write_u16(header, field::IDENT, ident);
    write_u16(header, field::FLG_OFF, if dont_frag { FLAG_DF } else { 0 });
    header[field::TTL] = ttl;
    header[field::PROTOCOL] = protocol.into();
    header[field::SRC].copy_from_slice(&src.octets());
    header[field::DST].copy_from_slice(&dst.octets());
    Ipv4Packet::new_unchecked(header).fill_checksum();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::assert_short_prefixes_rejected;
    use proptest::prelude::*;

    /// The Wikipedia "IPv4 header checksum" example: UDP 192.168.0.1 -> 192.168.0.199,
    /// total length 0x73, DF, TTL 64, checksum b861; followed by 0x73 - 20 payload bytes.
    fn wikipedia_packet() -> Vec<u8> {
        let mut bytes = vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        bytes.extend((0..0x73 - 20).map(|i| i as u8));
        bytes
    }

    #[test]
    fn parse_fixture() {
        let bytes = wikipedia_packet();
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.dscp_ecn(), 0);
        assert_eq!(ip.total_len(), 0x73);
        assert_eq!(ip.ident(), 0);
        assert!(ip.dont_frag());
        assert!(!ip.more_frags());
        assert_eq!(ip.frag_offset(), 0);
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), IpProtocol::Udp);
        assert_eq!(ip.checksum(), 0xb861);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(ip.verify_checksum());
        assert_eq!(ip.payload(), &bytes[20..]);
    }

    /// A fragment with options: IHL 6 (one 4-byte option: 3 NOPs + EOL), DSCP EF (46),
    /// MF set, offset 185 (1480 bytes), ICMP. The checksum is left zero in the fixture,
    /// filled by us, and checked by etherparse.
    #[test]
    fn options_and_fragment_fields() {
        let mut bytes = vec![
            0x46, 0xb8, 0x00, 0x20, 0x12, 0x34, 0x20, 0xb9, 0x05, 0x01, 0x00, 0x00, 10, 0, 0, 1,
            10, 0, 0, 2, 0x01, 0x01, 0x01, 0x00, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        ip.fill_checksum();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.dscp_ecn() >> 2, 46);
        assert_eq!(ip.ident(), 0x1234);
        assert!(!ip.dont_frag() && ip.more_frags());
        assert_eq!(ip.frag_offset(), 185);
        assert_eq!(ip.ttl(), 5);
        assert_eq!(ip.protocol(), IpProtocol::Icmp);
        assert_eq!(ip.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(ip.verify_checksum());
        let theirs = etherparse::Ipv4HeaderSlice::from_slice(&bytes).unwrap();
        assert_eq!(theirs.options(), &[1, 1, 1, 0]);
        assert_eq!(
            theirs.to_header().calc_header_checksum(),
            theirs.header_checksum()
        );
    }

    #[test]
    fn checks() {
        let bytes = wikipedia_packet();
        assert_short_prefixes_rejected(&bytes, 0x73, |b| Ipv4Packet::new_checked(b).map(drop));
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..19]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..0x72]),
            Err(WireError::Truncated)
        );

        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 6]);
        let ip = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(ip.payload().len(), 0x73 - 20);

        let with = |at: usize, value: u8| {
            let mut b = bytes.clone();
            b[at] = value;
            Ipv4Packet::new_checked(b).map(drop)
        };
        assert_eq!(with(0, 0x65), Err(WireError::Malformed)); // version 6
        assert_eq!(with(0, 0x44), Err(WireError::Malformed)); // IHL 4
        assert_eq!(with(3, 19), Err(WireError::Malformed)); // total_len < 20
        assert_eq!(with(2, 0xff), Err(WireError::Truncated)); // total_len > buffer
        let mut header_only = bytes[..20].to_vec();
        header_only[0] = 0x4f; // IHL 15 = 60 bytes, buffer has 20
        assert_eq!(
            Ipv4Packet::new_checked(header_only),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn decrement_ttl_fixture() {
        let mut bytes = wikipedia_packet();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        ip.decrement_ttl();
        assert_eq!(ip.ttl(), 63);
        // 0x4011 -> 0x3f11 lowers the sum by 0x0100: the checksum rises by 0x0100.
        assert_eq!(ip.checksum(), 0xb961);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn setters() {
        let mut bytes = wikipedia_packet();
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        ip.set_ttl(9);
        ip.set_src_addr(Ipv4Addr::new(10, 1, 1, 1));
        ip.set_dst_addr(Ipv4Addr::new(10, 2, 2, 2));
        ip.set_protocol(IpProtocol::Unknown(47));
        ip.set_ident(0xbeef);
        ip.set_total_len(40);
        ip.payload_mut().fill(0xaa);
        assert!(!ip.verify_checksum());
        ip.fill_checksum();
        assert!(ip.verify_checksum());
        ip.set_checksum(0);
        assert_eq!(ip.checksum(), 0);
        assert_eq!(ip.ttl(), 9);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(10, 1, 1, 1));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(10, 2, 2, 2));
        assert_eq!(ip.protocol(), IpProtocol::Unknown(47));
        assert_eq!(ip.ident(), 0xbeef);
        assert_eq!(ip.payload(), &[0xaa; 20]);
        assert_eq!(bytes[40], 20); // untouched beyond total_len
    }

    #[test]
    fn protocol_numbers() {
        for (value, protocol) in [
            (1, IpProtocol::Icmp),
            (6, IpProtocol::Tcp),
            (17, IpProtocol::Udp),
            (47, IpProtocol::Unknown(47)),
        ] {
            assert_eq!(IpProtocol::from(value), protocol);
            assert_eq!(u8::from(protocol), value);
        }
    }

    #[test]
    fn emit_fixture() {
        let mut buf = vec![0u8; 0x73];
        emit_header(
            &mut buf,
            Ipv4Addr::new(192, 168, 0, 1),
            Ipv4Addr::new(192, 168, 0, 199),
            IpProtocol::Udp,
            64,
            0x73 - 20,
            0,
            true,
        );
        assert_eq!(&buf[..20], &wikipedia_packet()[..20]);
    }

    #[test]
    fn flow_hash_ports() {
        let mut bytes = wikipedia_packet();
        let base = Ipv4Packet::new_checked(&bytes[..]).unwrap().flow_hash();
        assert_eq!(
            base,
            Ipv4Packet::new_checked(&bytes[..]).unwrap().flow_hash()
        );
        // Another UDP source port changes the hash ...
        bytes[20] ^= 0xff;
        let other_port = Ipv4Packet::new_checked(&bytes[..]).unwrap().flow_hash();
        assert_ne!(base, other_port);
        // ... unless the datagram is a fragment, where ports are left out.
        bytes[6] |= 0x20; // MF
        let frag_a = Ipv4Packet::new_checked(&bytes[..]).unwrap().flow_hash();
        bytes[20] ^= 0xff;
        let frag_b = Ipv4Packet::new_checked(&bytes[..]).unwrap().flow_hash();
        assert_eq!(frag_a, frag_b);
        // A payload shorter than 4 bytes is hashed without ports and does not panic.
        let mut short = bytes[..23].to_vec();
        short[3] = 23;
        short[6] = 0;
        let _ = Ipv4Packet::new_checked(&short[..]).unwrap().flow_hash();
    }

    /// Any header etherparse can describe, built by etherparse.
    fn etherparse_header() -> impl Strategy<Value = etherparse::Ipv4Header> {
        (
            (
                0u8..64,
                0u8..4,
                any::<u16>(),
                any::<bool>(),
                any::<bool>(),
                0u16..0x2000,
            ),
            (1u8..=255, any::<u8>(), any::<[u8; 4]>(), any::<[u8; 4]>()),
            (0usize..=10, 0u16..100),
        )
            .prop_map(
                |(
                    (dscp, ecn, ident, df, mf, offset),
                    (ttl, proto, src, dst),
                    (opt_words, payload_len),
                )| {
                    let mut header = etherparse::Ipv4Header::new(
                        payload_len,
                        ttl,
                        etherparse::IpNumber(proto),
                        src,
                        dst,
                    )
                    .unwrap();
                    header.dscp = etherparse::Ipv4Dscp::try_new(dscp).unwrap();
                    header.ecn = etherparse::Ipv4Ecn::try_new(ecn).unwrap();
                    header.identification = ident;
                    header.dont_fragment = df;
                    header.more_fragments = mf;
                    header.fragment_offset = etherparse::IpFragOffset::try_new(offset).unwrap();
                    let options: Vec<u8> = (0..opt_words * 4).map(|i| (i % 7) as u8).collect();
                    header.options = options[..].try_into().unwrap();
                    header.total_len = header.header_len() as u16 + payload_len;
                    header.header_checksum = header.calc_header_checksum();
                    header
                },
            )
    }

    proptest! {
        #[test]
        fn never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..80),
                        plausible in any::<bool>()) {
            if plausible && bytes.len() >= 4 {
                // Steer towards headers that pass: version 4, small IHL and total_len.
                bytes[0] = 0x40 | (bytes[0] & 0x0f);
                bytes[2] = 0;
                bytes[3] %= 80;
            }
            if let Ok(mut ip) = Ipv4Packet::new_checked(&mut bytes[..]) {
                let _ = (ip.version(), ip.header_len(), ip.dscp_ecn(), ip.total_len(), ip.ident());
                let _ = (ip.dont_frag(), ip.more_frags(), ip.frag_offset(), ip.ttl());
                let _ = (ip.protocol(), ip.checksum(), ip.src_addr(), ip.dst_addr());
                let _ = (ip.verify_checksum(), ip.payload().len(), ip.flow_hash());
                ip.decrement_ttl();
                ip.set_ttl(1);
                ip.fill_checksum();
                ip.set_checksum(0);
                ip.set_src_addr(Ipv4Addr::LOCALHOST);
                ip.set_dst_addr(Ipv4Addr::LOCALHOST);
                ip.set_protocol(IpProtocol::Tcp);
                ip.set_ident(7);
                let _ = ip.payload_mut().len();
            }
        }

        /// etherparse writes, we read; then decrement_ttl must leave the checksum that
        /// etherparse computes from scratch.
        #[test]
        fn matches_etherparse(header in etherparse_header(), seed in any::<u8>()) {
            let mut bytes = header.to_bytes().to_vec();
            let payload_len = usize::from(header.total_len) - header.header_len();
            bytes.extend((0..payload_len).map(|i| seed.wrapping_add(i as u8)));

            let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
            prop_assert_eq!(ip.version(), 4);
            prop_assert_eq!(ip.header_len(), header.header_len());
            prop_assert_eq!(ip.dscp_ecn(), header.dscp.value() << 2 | header.ecn.value());
            prop_assert_eq!(ip.total_len(), header.total_len);
            prop_assert_eq!(ip.ident(), header.identification);
            prop_assert_eq!(ip.dont_frag(), header.dont_fragment);
            prop_assert_eq!(ip.more_frags(), header.more_fragments);
            prop_assert_eq!(ip.frag_offset(), header.fragment_offset.value());
            prop_assert_eq!(ip.ttl(), header.time_to_live);
            prop_assert_eq!(u8::from(ip.protocol()), header.protocol.0);
            prop_assert_eq!(ip.checksum(), header.header_checksum);
            prop_assert_eq!(ip.src_addr().octets(), header.source);
            prop_assert_eq!(ip.dst_addr().octets(), header.destination);
            prop_assert!(ip.verify_checksum());
            prop_assert_eq!(ip.payload().len(), payload_len);

            ip.decrement_ttl();
            prop_assert!(ip.verify_checksum());
            let after = etherparse::Ipv4HeaderSlice::from_slice(&bytes).unwrap().to_header();
            prop_assert_eq!(after.time_to_live, header.time_to_live - 1);
            prop_assert_eq!(after.header_checksum, after.calc_header_checksum());
            let mut full = bytes.clone();
            let mut recomputed = Ipv4Packet::new_unchecked(&mut full[..]);
            recomputed.fill_checksum();
            prop_assert_eq!(recomputed.checksum(), after.header_checksum);
        }

        /// We write, etherparse reads and checks the checksum.
        #[test]
        fn emit_read_by_etherparse(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
                                   proto in any::<u8>(), ttl in any::<u8>(),
                                   payload_len in 0u16..=65515, ident in any::<u16>(),
                                   df in any::<bool>()) {
            let mut buf = [0u8; 20];
            emit_header(&mut buf, src.into(), dst.into(), proto.into(), ttl, payload_len, ident, df);
            let theirs = etherparse::Ipv4HeaderSlice::from_slice(&buf).unwrap().to_header();
            prop_assert_eq!(theirs.header_checksum, theirs.calc_header_checksum());
            prop_assert_eq!(theirs.source, src);
            prop_assert_eq!(theirs.destination, dst);
            prop_assert_eq!(theirs.protocol.0, proto);
            prop_assert_eq!(theirs.time_to_live, ttl);
            prop_assert_eq!(theirs.total_len, payload_len + 20);
            prop_assert_eq!(theirs.identification, ident);
            prop_assert_eq!(theirs.dont_fragment, df);
            prop_assert!(!theirs.more_fragments);
            prop_assert_eq!(theirs.fragment_offset.value(), 0);
            prop_assert_eq!(theirs.dscp.value(), 0);
        }

        /// Changing any 16-bit header word through checksum::update equals a recompute.
        #[test]
        fn incremental_equals_recompute(header in etherparse_header(), word in 0usize..10,
                                        new_word in any::<u16>()) {
            prop_assume!(word != 5); // the checksum word itself
            let mut bytes = header.to_bytes().to_vec();
            let at = word * 2;
            let old_word = read_u16(&bytes, at);
            let old_checksum = read_u16(&bytes, field::CHECKSUM);
            write_u16(&mut bytes, at, new_word);
            let incremental = checksum::update(old_checksum, old_word, new_word);
            // Recompute over the same bytes (a new IHL must not move the coverage).
            write_u16(&mut bytes, field::CHECKSUM, 0);
            prop_assert_eq!(incremental, checksum::checksum(&bytes[..header.header_len()]));
        }
    }
}
