//! Ethernet II frames (IEEE 802.3 / RFC 894) with at most one IEEE 802.1Q VLAN tag.
//!
//! ```text
//!  0      6      12        14     16        18
//!  | dst  | src  | 0x8100  | TCI  | type    | payload...   (tagged)
//!  | dst  | src  | type    | payload...                    (untagged)
//! ```
//!
//! [`EthernetFrame::new_checked`] guarantees the 14-byte header is present, and the
//! 4-byte tag too when the outer EtherType is 0x8100; after it no accessor panics.
//! Only one tag is understood: a second 0x8100 (or an 802.1ad 0x88a8 outer tag) shows
//! as the frame's [`EtherType`], for the caller to refuse. The FCS is not part of the
//! buffer.

pub use carrier_contract::MacAddr;

use super::{read_u16, write_u16, Field, Result, WireError};

/// An EtherType (IEEE 802 numbers). Build it with `From<u16>`, which maps the known
/// values to their variants, so that `Unknown` never holds one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// 0x0800.
    Ipv4,
    /// 0x0806.
    Arp,
    /// 0x8100, an IEEE 802.1Q tag.
    Vlan,
    /// 0x8847, MPLS unicast.
    Mpls,
    /// 0x86dd.
    Ipv6,
    /// Any other value.
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(value: u16) -> EtherType {
        match value {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x8100 => EtherType::Vlan,
            0x8847 => EtherType::Mpls,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(value: EtherType) -> u16 {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::Mpls => 0x8847,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Unknown(other) => other,
        }
    }
}

mod field {
    use super::Field;
    pub(super) const DST: Field = 0..6;
    pub(super) const SRC: Field = 6..12;
    /// The outer EtherType, or the TPID 0x8100 of a tag.
    pub(super) const ETHERTYPE: usize = 12;
    /// Tag Control Information: PCP (3 bits), DEI (1), VLAN id (12).
    pub(super) const TCI: usize = 14;
    /// The EtherType after the tag.
    pub(super) const INNER_ETHERTYPE: usize = 16;
}

const TPID_8021Q: u16 = 0x8100;

/// A view of an Ethernet II frame, optionally 802.1Q-tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Length of an untagged header.
    pub const HEADER_LEN: usize = 14;
    /// Length of one 802.1Q tag.
    pub const VLAN_TAG_LEN: usize = 4;

    /// Wraps `buffer` without any check; accessors may panic if it is too short.
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking it holds the whole header (14 bytes, or 18 when the
    /// outer EtherType is 0x8100); afterwards no accessor panics.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if read_u16(data, field::ETHERTYPE) == TPID_8021Q
            && data.len() < Self::HEADER_LEN + Self::VLAN_TAG_LEN
        {
            return Err(WireError::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn is_tagged(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::ETHERTYPE) == TPID_8021Q
    }

    fn ethertype_offset(&self) -> usize {
        if self.is_tagged() {
            field::INNER_ETHERTYPE
        } else {
            field::ETHERTYPE
        }
    }

    /// The destination address.
    pub fn dst_addr(&self) -> MacAddr {
        let mut addr = [0; 6];
        addr.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr(addr)
    }

    /// The source address.
    pub fn src_addr(&self) -> MacAddr {
        let mut addr = [0; 6];
        addr.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr(addr)
    }

    /// The Tag Control Information (PCP, DEI, VLAN id) when an 802.1Q tag is present.
    pub fn vlan_tci(&self) -> Option<u16> {
        self.is_tagged()
            .then(|| read_u16(self.buffer.as_ref(), field::TCI))
    }

    /// The 12-bit VLAN id when an 802.1Q tag is present.
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & 0x0fff)
    }

    /// The EtherType of the payload: the one after the tag when the frame is tagged.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(read_u16(self.buffer.as_ref(), self.ethertype_offset()))
    }

    /// 14, or 18 when tagged.
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            Self::HEADER_LEN + Self::VLAN_TAG_LEN
        } else {
            Self::HEADER_LEN
        }
    }

    /// The bytes after the header (including any Ethernet padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the payload's EtherType: at offset 16 when tagged, else at 12. (Setting
    /// [`EtherType::Vlan`] on an untagged frame makes it read as tagged.)
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        let at = self.ethertype_offset();
        write_u16(self.buffer.as_mut(), at, ethertype.into());
    }

    /// The bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// Writes an untagged 14-byte Ethernet header into `buf[..14]`.
///
/// # Panics
/// If `buf` is shorter than 14 bytes: callers size the buffer before emitting.
pub fn emit_header(buf: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: EtherType) {
    buf[field::DST].copy_from_slice(&dst.0);
    buf[field::SRC].copy_from_slice(&src.0);
    write_u16(buf, field::ETHERTYPE, ethertype.into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::assert_short_prefixes_rejected;
    use proptest::prelude::*;

    /// An untagged IPv4 frame: 02:00:00:00:00:02 <- 02:00:00:00:00:01, type 0800.
    const UNTAGGED: [u8; 16] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x00, // ethertype
        0x45, 0x00, // payload (start of an IPv4 header)
    ];

    /// An 802.1Q frame, PCP 5 DEI 0 VLAN 100 (TCI a064), carrying ARP, to broadcast.
    const TAGGED: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // src
        0x81, 0x00, 0xa0, 0x64, // tag
        0x08, 0x06, // inner ethertype
        0x00, 0x01, // payload (ARP htype)
    ];

    #[test]
    fn parse_untagged() {
        let frame = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(frame.dst_addr(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(frame.src_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(frame.vlan_tci(), None);
        assert_eq!(frame.vlan_id(), None);
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        assert_eq!(frame.header_len(), 14);
        assert_eq!(frame.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn parse_tagged() {
        let frame = EthernetFrame::new_checked(&TAGGED[..]).unwrap();
        assert!(frame.dst_addr().is_broadcast());
        assert_eq!(frame.src_addr(), MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(frame.vlan_tci(), Some(0xa064));
        assert_eq!(frame.vlan_id(), Some(100));
        assert_eq!(frame.ethertype(), EtherType::Arp);
        assert_eq!(frame.header_len(), 18);
        assert_eq!(frame.payload(), &[0x00, 0x01]);
    }

    #[test]
    fn truncated() {
        assert_short_prefixes_rejected(&UNTAGGED, 14, |b| EthernetFrame::new_checked(b).map(drop));
        assert_short_prefixes_rejected(&TAGGED, 18, |b| EthernetFrame::new_checked(b).map(drop));
        assert_eq!(
            EthernetFrame::new_checked(&TAGGED[..17]).unwrap_err(),
            WireError::Truncated
        );
        assert!(EthernetFrame::new_checked(&UNTAGGED[..14]).is_ok());
        assert!(EthernetFrame::new_checked(&TAGGED[..18]).is_ok());
    }

    #[test]
    fn setters() {
        let mut bytes = TAGGED;
        let mut frame = EthernetFrame::new_checked(&mut bytes[..]).unwrap();
        frame.set_dst_addr(MacAddr([1, 2, 3, 4, 5, 6]));
        frame.set_src_addr(MacAddr([7, 8, 9, 10, 11, 12]));
        frame.set_ethertype(EtherType::Mpls);
        frame.payload_mut()[0] = 0xaa;
        assert_eq!(frame.dst_addr(), MacAddr([1, 2, 3, 4, 5, 6]));
        assert_eq!(frame.src_addr(), MacAddr([7, 8, 9, 10, 11, 12]));
        assert_eq!(frame.ethertype(), EtherType::Mpls);
        assert_eq!(frame.vlan_id(), Some(100));
        assert_eq!(&bytes[12..19], &[0x81, 0x00, 0xa0, 0x64, 0x88, 0x47, 0xaa]);
    }

    #[test]
    fn emit_round_trip() {
        let mut buf = [0u8; 20];
        let (dst, src) = (MacAddr([0, 1, 2, 3, 4, 5]), MacAddr([6, 7, 8, 9, 10, 11]));
        emit_header(&mut buf, dst, src, EtherType::Ipv6);
        let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!((frame.dst_addr(), frame.src_addr()), (dst, src));
        assert_eq!(frame.ethertype(), EtherType::Ipv6);
        assert_eq!(frame.payload().len(), 6);
        assert_eq!(EthernetFrame::new_checked(buf).unwrap().into_inner(), buf);
    }

    #[test]
    fn ethertype_numbers() {
        for (value, ty) in [
            (0x0800, EtherType::Ipv4),
            (0x0806, EtherType::Arp),
            (0x8100, EtherType::Vlan),
            (0x8847, EtherType::Mpls),
            (0x86dd, EtherType::Ipv6),
            (0x88a8, EtherType::Unknown(0x88a8)),
        ] {
            assert_eq!(EtherType::from(value), ty);
            assert_eq!(u16::from(ty), value);
        }
    }

    #[test]
    fn mac_text() {
        let mac: MacAddr = "02:00:5E:10:00:0a".parse().unwrap();
        assert_eq!(mac, MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x0a]));
        assert_eq!(mac.to_string(), "02:00:5e:10:00:0a");
        assert_eq!(format!("{mac:?}"), "02:00:5e:10:00:0a");
        for bad in [
            "",
            "02:00:5e:10:00",
            "02:00:5e:10:00:0a:",
            "02-00-5e-10-00-0a",
            "02:00:5e:10:00:0g",
            "+2:00:5e:10:00:0a",
            "002:00:5e:10:00:0",
            "02:00:5e:10:00:é",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(carrier_contract::MacParseError), "{bad:?}");
        }
    }

    #[test]
    fn mac_kinds() {
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        assert!(MacAddr([0x02, 0, 0, 0, 0, 1]).is_unicast());
        assert!(MacAddr::ZERO.is_unicast() && MacAddr::default() == MacAddr::ZERO);
    }

    proptest! {
        #[test]
        fn mac_text_round_trip(bytes in any::<[u8; 6]>()) {
            let mac = MacAddr(bytes);
            prop_assert_eq!(mac.to_string().parse::<MacAddr>(), Ok(mac));
        }

        #[test]
        fn never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(mut frame) = EthernetFrame::new_checked(&mut bytes[..]) {
                let _ = (frame.dst_addr(), frame.src_addr(), frame.vlan_tci(), frame.vlan_id());
                let _ = (frame.ethertype(), frame.header_len(), frame.payload().len());
                let ethertype = frame.ethertype();
                frame.set_ethertype(ethertype);
                frame.set_dst_addr(MacAddr::BROADCAST);
                frame.set_src_addr(MacAddr::ZERO);
                let _ = frame.payload_mut().len();
            }
        }

        /// Compares every field with etherparse's independent decoder.
        #[test]
        fn matches_etherparse(
            dst in any::<[u8; 6]>(),
            src in any::<[u8; 6]>(),
            tag in proptest::option::of((any::<u16>(), any::<u16>())),
            ethertype in prop_oneof![Just(0x0800u16), Just(0x0806), Just(0x8847), any::<u16>()],
            payload in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&dst);
            bytes.extend_from_slice(&src);
            match tag {
                Some((tci, inner)) => {
                    bytes.extend_from_slice(&[0x81, 0x00]);
                    bytes.extend_from_slice(&tci.to_be_bytes());
                    bytes.extend_from_slice(&inner.to_be_bytes());
                }
                None => bytes.extend_from_slice(&ethertype.to_be_bytes()),
            }
            bytes.extend_from_slice(&payload);

            let ours = EthernetFrame::new_checked(&bytes[..]).unwrap();
            let theirs = etherparse::Ethernet2HeaderSlice::from_slice(&bytes).unwrap();
            prop_assert_eq!(ours.dst_addr().0, theirs.destination());
            prop_assert_eq!(ours.src_addr().0, theirs.source());
            let outer = theirs.ether_type().0;
            if outer == 0x8100 {
                let vlan = etherparse::SingleVlanHeaderSlice::from_slice(&bytes[14..]).unwrap();
                let tci = ours.vlan_tci().unwrap();
                prop_assert_eq!(ours.vlan_id(), Some(vlan.vlan_identifier().value()));
                prop_assert_eq!(tci >> 13, u16::from(vlan.priority_code_point().value()));
                prop_assert_eq!(tci & 0x1000 != 0, vlan.drop_eligible_indicator());
                prop_assert_eq!(u16::from(ours.ethertype()), vlan.ether_type().0);
                prop_assert_eq!(ours.payload(), &bytes[18..]);
            } else {
                prop_assert_eq!(ours.vlan_tci(), None);
                prop_assert_eq!(u16::from(ours.ethertype()), outer);
                prop_assert_eq!(ours.payload(), &bytes[14..]);
            }
        }
    }
}
