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

use carrier_common::NextHopId;
use prefix_trie::PrefixMap;
pub use carrier_contract::{InterfaceAddr, Ipv4Prefix, PrefixParseError};

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
        self.trie.iter().filter_map(|(p, nh)| Some((Ipv4Prefix::new(Ipv4Addr::from(p.0), p.1)?, *nh)))
    }
}

impl Lpm for TrieFib {
    fn insert(&mut self, prefix: Ipv4Prefix, nexthop: NextHopId) -> Option<NextHopId> {
        let old = self.trie.insert((u32::from(prefix.addr()), prefix.prefix_len()), nexthop);
        if old.is_none() {
            self.routes += 1;
        }
        old
    }

    fn remove(&mut self, prefix: Ipv4Prefix) -> Option<NextHopId> {
        let old = self.trie.remove(&(u32::from(prefix.addr()), prefix.prefix_len()));
        if old.is_some() {
            self.routes -= 1;
        }
        old
    }

    fn lookup(&self, addr: Ipv4Addr) -> Option<(Ipv4Prefix, NextHopId)> {
        self.trie
            .get_lpm(&(u32::from(addr), 32))
            .and_then(|(p, nh)| Some((Ipv4Prefix::new(Ipv4Addr::from(p.0), p.1)?, *nh)))
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
