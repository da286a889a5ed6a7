//! Per-VRF IPv4 forwarding information base: longest-prefix match from an address to a
//! [`NextHopId`].
//!
//! The structure sits behind [`Lpm`]: [`Fib`] is the 16-8-8 multibit trie of `mtrie.rs` (at
//! most three array reads per lookup); [`TrieFib`], the binary prefix trie it replaced, stays as
//! the reference the differential test and the FIB benchmark compare it with. Each VRF owns its
//! own [`Fib`]: two VRFs with the same prefix are two different entries in two different
//! tables, so they never collide.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use carrier_common::NextHopId;
use prefix_trie::PrefixMap;
use serde::{Deserialize, Serialize};

/// An IPv4 prefix. The address is always stored with its host bits cleared.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    addr: u32,
    len: u8,
}

impl Ipv4Prefix {
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

/// Longest-prefix match over IPv4 prefixes.
pub trait Lpm {
    /// Install or replace a route.
    fn insert(&mut self, prefix: Ipv4Prefix, nexthop: NextHopId) -> Option<NextHopId>;
    /// Remove a route, returning what it pointed at.
    fn remove(&mut self, prefix: Ipv4Prefix) -> Option<NextHopId>;
    /// The longest prefix containing `addr`, and its next hop.
    fn lookup(&self, addr: Ipv4Addr) -> Option<(Ipv4Prefix, NextHopId)>;
    /// Number of routes.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The FIB of one VRF.
pub type Fib = super::mtrie::Mtrie;

/// A binary prefix trie (`prefix-trie`): the FIB before [`Fib`], kept as a reference.
#[derive(Clone, Default)]
pub struct TrieFib {
    trie: PrefixMap<(u32, u8), NextHopId>,
    routes: usize,
}

impl fmt::Debug for TrieFib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrieFib").field("routes", &self.routes).finish()
    }
}

impl TrieFib {
    /// Every route, in prefix order.
    pub fn routes(&self) -> impl Iterator<Item = (Ipv4Prefix, NextHopId)> + '_ {
        self.trie.iter().map(|(p, nh)| (Ipv4Prefix { addr: p.0, len: p.1 }, *nh))
    }
}

impl Lpm for TrieFib {
    fn insert(&mut self, prefix: Ipv4Prefix, nexthop: NextHopId) -> Option<NextHopId> {
        let old = self.trie.insert((prefix.addr, prefix.len), nexthop);
        if old.is_none() {
            self.routes += 1;
        }
        old
    }

    fn remove(&mut self, prefix: Ipv4Prefix) -> Option<NextHopId> {
        let old = self.trie.remove(&(prefix.addr, prefix.len));
        if old.is_some() {
            self.routes -= 1;
        }
        old
    }

    fn lookup(&self, addr: Ipv4Addr) -> Option<(Ipv4Prefix, NextHopId)> {
        self.trie
            .get_lpm(&(u32::from(addr), 32))
            .map(|(p, nh)| (Ipv4Prefix { addr: p.0, len: p.1 }, *nh))
    }

    fn len(&self) -> usize {
        self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ipv4Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_parse_masks_host_bits() {
        assert_eq!(p("10.1.2.3/16").to_string(), "10.1.0.0/16");
        assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert!("10.0.0.0/33".parse::<Ipv4Prefix>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Prefix>().is_err());
        assert!("x/8".parse::<Ipv4Prefix>().is_err());
    }

    #[test]
    fn longest_match_wins() {
        let mut fib = Fib::default();
        fib.insert(p("0.0.0.0/0"), NextHopId(1));
        fib.insert(p("10.0.0.0/8"), NextHopId(2));
        fib.insert(p("10.1.0.0/16"), NextHopId(3));
        fib.insert(p("10.1.2.3/32"), NextHopId(4));
        let at = |fib: &Fib, s: &str| fib.lookup(s.parse().unwrap()).map(|(_, nh)| nh.0);
        assert_eq!(at(&fib, "10.1.2.3"), Some(4));
        assert_eq!(at(&fib, "10.1.2.4"), Some(3));
        assert_eq!(at(&fib, "10.2.0.1"), Some(2));
        assert_eq!(at(&fib, "192.0.2.1"), Some(1));
        assert_eq!(fib.remove(p("0.0.0.0/0")), Some(NextHopId(1)));
        assert_eq!(at(&fib, "192.0.2.1"), None);
        assert_eq!(fib.len(), 3);
    }

    #[test]
    fn interface_addr_keeps_host_part() {
        let a: InterfaceAddr = "10.1.0.1/24".parse().unwrap();
        assert_eq!(a.addr, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(a.prefix, p("10.1.0.0/24"));
        assert_eq!(a.to_string(), "10.1.0.1/24");
    }
}
