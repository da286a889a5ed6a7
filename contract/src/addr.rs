//! Addresses in the table commands: MACs, IPv4 prefixes, interface addresses.

use core::fmt;
use core::str::FromStr;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// A 48-bit IEEE MAC address, in wire order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// True for ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True when the I/G bit (least significant bit of the first octet) is set;
    /// broadcast is multicast too.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True when the I/G bit is clear.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not a MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacParseError;

impl fmt::Display for MacParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a MAC address (six colon-separated hex octets, aa:bb:cc:dd:ee:ff)")
    }
}

impl std::error::Error for MacParseError {}

impl FromStr for MacAddr {
    type Err = MacParseError;

    /// Parses exactly six colon-separated two-digit hex octets (either case),
    /// e.g. `02:00:5e:10:00:01`; anything else is a [`MacParseError`].
    fn from_str(s: &str) -> Result<MacAddr, MacParseError> {
        fn hex(digit: u8) -> Result<u8, MacParseError> {
            match digit {
                b'0'..=b'9' => Ok(digit - b'0'),
                b'a'..=b'f' => Ok(digit - b'a' + 10),
                b'A'..=b'F' => Ok(digit - b'A' + 10),
                _ => Err(MacParseError),
            }
        }
        let bytes = s.as_bytes();
        if bytes.len() != 17 {
            return Err(MacParseError);
        }
        let mut addr = [0u8; 6];
        for (i, octet) in addr.iter_mut().enumerate() {
            let at = i * 3;
            if i > 0 && bytes[at - 1] != b':' {
                return Err(MacParseError);
            }
            *octet = hex(bytes[at])? << 4 | hex(bytes[at + 1])?;
        }
        Ok(MacAddr(addr))
    }
}

/// An IPv4 prefix. The address is always stored with its host bits cleared.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    addr: u32,
    len: u8,
}

impl Ipv4Prefix {
    /// 0.0.0.0/0, the least prefix in their order.
    pub const DEFAULT: Ipv4Prefix = Ipv4Prefix { addr: 0, len: 0 };

    /// A prefix; host bits of `addr` are cleared. `None` when `len > 32`.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Ipv4Prefix> {
        if len > 32 {
            return None;
        }
        Some(Ipv4Prefix { addr: u32::from(addr) & Self::mask(len), len })
    }

    /// The host route for one address.
    pub fn host(addr: Ipv4Addr) -> Ipv4Prefix {
        Ipv4Prefix { addr: u32::from(addr), len: 32 }
    }

    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }

    /// The prefix length, 0..=32.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True when `addr` lies inside this prefix.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & Self::mask(self.len) == self.addr
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

impl fmt::Debug for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error for a prefix string that is not `a.b.c.d/len`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IPv4 prefix (a.b.c.d/len): {0:?}")]
pub struct PrefixParseError(pub String);

impl FromStr for Ipv4Prefix {
    type Err = PrefixParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PrefixParseError(s.to_string());
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let len: u8 = len.parse().map_err(|_| err())?;
        Ipv4Prefix::new(addr, len).ok_or_else(err)
    }
}

impl Serialize for Ipv4Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An interface address: the router's address on a port plus the connected prefix length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct InterfaceAddr {
    /// The router's own address.
    pub addr: Ipv4Addr,
    /// The connected subnet.
    pub prefix: Ipv4Prefix,
}

impl FromStr for InterfaceAddr {
    type Err = PrefixParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let prefix: Ipv4Prefix = s.parse()?;
        let addr = s.split_once('/').and_then(|(a, _)| a.parse().ok()).ok_or_else(|| PrefixParseError(s.into()))?;
        Ok(InterfaceAddr { addr, prefix })
    }
}

impl fmt::Display for InterfaceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix.prefix_len())
    }
}

impl Serialize for InterfaceAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InterfaceAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
