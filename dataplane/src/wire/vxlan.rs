//! VXLAN headers (RFC 7348 §5).
//!
//! ```text
//!  0        1          4     7          8
//!  | flags  | reserved | VNI | reserved | inner Ethernet frame...
//!  |R|R|R|R|I|R|R|R|
//! ```
//!
//! [`VxlanHeader::new_checked`] guarantees 8 bytes and the I flag (0x08) set — a header
//! without a valid VNI is [`WireError::Malformed`]; after it no accessor panics.
//! Reserved bits are ignored on receive (RFC 7348: "MUST be ignored") and zeroed by
//! [`emit`].

use carrier_common::Vni;

use super::{Field, Result, WireError};

mod field {
    use super::Field;
    pub(super) const FLAGS: usize = 0;
    pub(super) const RESERVED1: Field = 1..4;
    pub(super) const VNI: Field = 4..7;
    pub(super) const RESERVED2: usize = 7;
}

/// The I flag: the VNI is valid.
const FLAG_I: u8 = 0x08;

/// A view of a VXLAN header and the inner frame after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    /// Length of the VXLAN header.
    pub const HEADER_LEN: usize = 8;

    /// Wraps `buffer` without any check; accessors may panic if it is too short.
    pub fn new_unchecked(buffer: T) -> Self {
        VxlanHeader { buffer }
    }

    /// Wraps `buffer` after checking it holds 8 bytes with the I flag set; afterwards no
    /// accessor panics.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if data[field::FLAGS] & FLAG_I == 0 {
            return Err(WireError::Malformed);
        }
        Ok(VxlanHeader { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte (0x08 when only I is set).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The 24-bit VXLAN network identifier.
    pub fn vni(&self) -> Vni {
        let vni = &self.buffer.as_ref()[field::VNI];
        // A 24-bit value always fits: the fallback is never taken.
        Vni::new(u32::from_be_bytes([0, vni[0], vni[1], vni[2]])).unwrap_or_default()
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..]
    }
}

/// Writes an 8-byte VXLAN header into `buf[..8]`: flags 0x08, reserved zeros, `vni`.
///
/// # Panics
/// If `buf` is shorter than 8 bytes: callers size the buffer before emitting.
pub fn emit(buf: &mut [u8], vni: Vni) {
    buf[field::FLAGS] = FLAG_I;
    buf[field::RESERVED1].fill(0);
    buf[field::VNI].copy_from_slice(&vni.value().to_be_bytes()[1..]);
    buf[field::RESERVED2] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// VNI 5001 (0x001389), as the RFC 7348 examples and Linux `ip link add vxlan id
    /// 5001` send it, followed by the first bytes of an inner frame.
    const HEADER: [u8; 10] = [0x08, 0x00, 0x00, 0x00, 0x00, 0x13, 0x89, 0x00, 0xff, 0xff];

    #[test]
    fn parse_fixture() {
        let vxlan = VxlanHeader::new_checked(&HEADER[..]).unwrap();
        assert_eq!(vxlan.flags(), 0x08);
        assert_eq!(vxlan.vni(), Vni::new(5001).unwrap());
        assert_eq!(vxlan.payload(), &[0xff, 0xff]);
    }

    #[test]
    fn reserved_bits_ignored() {
        let mut bytes = HEADER;
        bytes[0] = 0xff;
        bytes[1] = 0xaa;
        bytes[7] = 0x55;
        let vxlan = VxlanHeader::new_checked(&bytes[..]).unwrap();
        assert_eq!(vxlan.vni().value(), 5001);
    }

    #[test]
    fn checks() {
        for len in 0..8 {
            assert_eq!(
                VxlanHeader::new_checked(&HEADER[..len]),
                Err(WireError::Truncated)
            );
        }
        let mut no_i = HEADER;
        no_i[0] = 0xf7;
        assert_eq!(
            VxlanHeader::new_checked(&no_i[..]),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn emit_fixture() {
        let mut buf = [0xeeu8; 10];
        emit(&mut buf, Vni::new(5001).unwrap());
        assert_eq!(&buf[..8], &HEADER[..8]);
        assert_eq!(&buf[8..], &[0xee, 0xee]);
        let vxlan = VxlanHeader::new_checked(buf).unwrap();
        assert_eq!(vxlan.into_inner()[..8], HEADER[..8]);
    }

    proptest! {
        #[test]
        fn round_trip(vni in 0u32..=Vni::MAX) {
            let mut buf = [0u8; 8];
            emit(&mut buf, Vni::new(vni).unwrap());
            let vxlan = VxlanHeader::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(vxlan.vni().value(), vni);
            prop_assert_eq!(vxlan.flags(), 0x08);
            prop_assert!(vxlan.payload().is_empty());
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            if let Ok(vxlan) = VxlanHeader::new_checked(&bytes[..]) {
                prop_assert!(vxlan.flags() & 0x08 != 0);
                prop_assert!(vxlan.vni().value() <= Vni::MAX);
                let _ = vxlan.payload().len();
            }
        }
    }
}
