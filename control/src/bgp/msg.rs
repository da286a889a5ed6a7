//! BGP messages as the control process sees them: a small domain model that the codec
//! (`codec.rs`, on netgauze-bgp-pkt) decodes into and encodes from, and that the session
//! state machine and the RIB work with. Only what carrier uses is modelled: IPv4 unicast,
//! VPNv4 (RFC 4364), L2VPN EVPN routes of types 2, 3 and 5 (RFC 7432, RFC 9136), and the
//! attributes those need.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use carrier_dataplane::tables::Ipv4Prefix;
use carrier_contract::MacAddr;

/// An address family carrier speaks (AFI/SAFI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// AFI 1 / SAFI 1.
    Ipv4Unicast,
    /// AFI 1 / SAFI 128 (MPLS-labelled VPN).
    Vpnv4,
    /// AFI 25 / SAFI 70.
    Evpn,
}

impl Family {
    /// (AFI, SAFI).
    pub const fn afi_safi(self) -> (u16, u8) {
        match self {
            Family::Ipv4Unicast => (1, 1),
            Family::Vpnv4 => (1, 128),
            Family::Evpn => (25, 70),
        }
    }

    /// The name operators see (the config's spelling; GoBGP's for the long forms).
    pub const fn name(self) -> &'static str {
        match self {
            Family::Ipv4Unicast => "ipv4-unicast",
            Family::Vpnv4 => "l3vpn-ipv4-unicast",
            Family::Evpn => "l2vpn-evpn",
        }
    }

    /// The family for an (AFI, SAFI), if carrier speaks it.
    pub const fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (1, 1) => Some(Family::Ipv4Unicast),
            (1, 128) => Some(Family::Vpnv4),
            (25, 70) => Some(Family::Evpn),
            _ => None,
        }
    }
}

/// Error for a string that is not a route distinguisher or route target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a route distinguisher/target (ASN:NN or IP:NN): {0:?}")]
pub struct RdParseError(pub String);

/// A route distinguisher (RFC 4364 §4.2): 8 bytes, type 0 (2-byte ASN:4-byte), type 1
/// (IPv4:2-byte) or type 2 (4-byte ASN:2-byte).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RouteDistinguisher(pub [u8; 8]);

fn parse_admin_value(s: &str) -> Result<(u16, [u8; 6]), RdParseError> {
    let err = || RdParseError(s.to_string());
    let (admin, value) = s.rsplit_once(':').ok_or_else(err)?;
    if let Ok(ip) = admin.parse::<Ipv4Addr>() {
        let v: u16 = value.parse().map_err(|_| err())?;
        let mut b = [0u8; 6];
        b[..4].copy_from_slice(&ip.octets());
        b[4..].copy_from_slice(&v.to_be_bytes());
        return Ok((1, b));
    }
    let asn: u32 = admin.parse().map_err(|_| err())?;
    let mut b = [0u8; 6];
    if let Ok(asn16) = u16::try_from(asn) {
        let v: u32 = value.parse().map_err(|_| err())?;
        b[..2].copy_from_slice(&asn16.to_be_bytes());
        b[2..].copy_from_slice(&v.to_be_bytes());
        Ok((0, b))
    } else {
        let v: u16 = value.parse().map_err(|_| err())?;
        b[..4].copy_from_slice(&asn.to_be_bytes());
        b[4..].copy_from_slice(&v.to_be_bytes());
        Ok((2, b))
    }
}

fn fmt_admin_value(kind: u8, b: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match kind {
        0 => write!(f, "{}:{}", u16::from_be_bytes([b[0], b[1]]), u32::from_be_bytes([b[2], b[3], b[4], b[5]])),
        1 => write!(f, "{}:{}", Ipv4Addr::new(b[0], b[1], b[2], b[3]), u16::from_be_bytes([b[4], b[5]])),
        2 => write!(f, "{}:{}", u32::from_be_bytes([b[0], b[1], b[2], b[3]]), u16::from_be_bytes([b[4], b[5]])),
        _ => write!(f, "type{}:{:02x?}", kind, b),
    }
}

impl RouteDistinguisher {
    /// The RD's type (0, 1 or 2).
    pub fn kind(&self) -> u16 {
        u16::from_be_bytes([self.0[0], self.0[1]])
    }
}

impl FromStr for RouteDistinguisher {
    type Err = RdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, b) = parse_admin_value(s)?;
        let mut rd = [0u8; 8];
        rd[..2].copy_from_slice(&kind.to_be_bytes());
        rd[2..].copy_from_slice(&b);
        Ok(RouteDistinguisher(rd))
    }
}

impl fmt::Display for RouteDistinguisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_admin_value(self.0[1], &self.0[2..], f)
    }
}

impl fmt::Debug for RouteDistinguisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RD({self})")
    }
}

/// A route target extended community (RFC 4360 §4): the 8 bytes as on the wire
/// (type 0x00/0x01/0x02, sub-type 0x02).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteTarget(pub [u8; 8]);

impl RouteTarget {
    /// The extended community, if it is a route target.
    pub fn from_ext_community(c: [u8; 8]) -> Option<RouteTarget> {
        (c[0] & 0x3f <= 2 && c[1] == 0x02).then_some(RouteTarget(c))
    }
}

impl FromStr for RouteTarget {
    type Err = RdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("target:").unwrap_or(s);
        let (kind, b) = parse_admin_value(s)?;
        let mut c = [0u8; 8];
        c[0] = kind as u8;
        c[1] = 0x02;
        c[2..].copy_from_slice(&b);
        Ok(RouteTarget(c))
    }
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("target:")?;
        fmt_admin_value(self.0[0] & 0x3f, &self.0[2..], f)
    }
}

impl fmt::Debug for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RT({self})")
    }
}

/// The BGP Encapsulation extended community (RFC 9012 §4.1: type 0x03, sub-type 0x0c); tunnel
/// type 8 is VXLAN, 10 MPLS. Decides how an EVPN label field is read (VNI or MPLS label).
pub const ENCAP_VXLAN: u16 = 8;
/// Tunnel type MPLS in the encapsulation extended community.
pub const ENCAP_MPLS: u16 = 10;

/// The tunnel type of an encapsulation extended community, if `c` is one.
pub fn encapsulation(c: [u8; 8]) -> Option<u16> {
    (c[0] == 0x03 && c[1] == 0x0c).then(|| u16::from_be_bytes([c[6], c[7]]))
}

/// The encapsulation extended community for a tunnel type.
pub fn encapsulation_community(tunnel_type: u16) -> [u8; 8] {
    let t = tunnel_type.to_be_bytes();
    [0x03, 0x0c, 0, 0, 0, 0, t[0], t[1]]
}

/// The EVPN router's MAC extended community (RFC 9135 §8.1: type 0x06, sub-type 0x03).
pub fn router_mac(c: [u8; 8]) -> Option<MacAddr> {
    (c[0] == 0x06 && c[1] == 0x03).then(|| MacAddr([c[2], c[3], c[4], c[5], c[6], c[7]]))
}

/// The router's MAC extended community.
pub fn router_mac_community(mac: MacAddr) -> [u8; 8] {
    let m = mac.0;
    [0x06, 0x03, m[0], m[1], m[2], m[3], m[4], m[5]]
}

/// A 3-byte label field of an NLRI, as on the wire: an MPLS label in the high 20 bits (with
/// the bottom-of-stack bit in bit 0), or a 24-bit VNI when the route's encapsulation is VXLAN.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct LabelField(pub u32);

impl LabelField {
    /// An MPLS label with the bottom-of-stack bit set.
    pub fn mpls(label: u32) -> LabelField {
        LabelField((label << 4) | 1)
    }
    /// A VNI.
    pub fn vni(vni: u32) -> LabelField {
        LabelField(vni & 0x00ff_ffff)
    }
    /// Read as an MPLS label.
    pub fn as_mpls(self) -> u32 {
        self.0 >> 4
    }
    /// Read as a VNI.
    pub fn as_vni(self) -> u32 {
        self.0 & 0x00ff_ffff
    }
}

/// An EVPN type 2 route: MAC/IP advertisement (RFC 7432 §7.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EvpnMacIp {
    /// Route distinguisher.
    pub rd: RouteDistinguisher,
    /// Ethernet segment identifier.
    pub esi: [u8; 10],
    /// Ethernet tag.
    pub eth_tag: u32,
    /// The MAC.
    pub mac: MacAddr,
    /// The IP, if any.
    pub ip: Option<Ipv4Addr>,
    /// Label 1 (L2 VNI for VXLAN).
    pub label1: LabelField,
    /// Label 2 (L3 VNI), if any.
    pub label2: Option<LabelField>,
}

/// An EVPN type 5 route: IP prefix (RFC 9136 §3).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EvpnPrefix {
    /// Route distinguisher.
    pub rd: RouteDistinguisher,
    /// Ethernet segment identifier.
    pub esi: [u8; 10],
    /// Ethernet tag.
    pub eth_tag: u32,
    /// The prefix.
    pub prefix: Ipv4Prefix,
    /// Gateway IP.
    pub gateway: Ipv4Addr,
    /// Label (L3 VNI for VXLAN).
    pub label: LabelField,
}

/// One NLRI: 24 bytes (the EVPN type 2 and 5 routes are boxed).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Nlri {
    /// IPv4 unicast.
    Ipv4 {
        /// The prefix.
        prefix: Ipv4Prefix,
    },
    /// VPNv4 (RFC 4364): RD, one label, prefix.
    Vpnv4 {
        /// Route distinguisher.
        rd: RouteDistinguisher,
        /// The VPN label.
        label: LabelField,
        /// The prefix.
        prefix: Ipv4Prefix,
    },
    /// EVPN type 2: MAC/IP advertisement (boxed: it would double the size of every NLRI).
    EvpnMacIp(Box<EvpnMacIp>),
    /// EVPN type 3: inclusive multicast Ethernet tag.
    EvpnImet {
        /// Route distinguisher.
        rd: RouteDistinguisher,
        /// Ethernet tag.
        eth_tag: u32,
        /// Originating router's address (the VTEP).
        originator: Ipv4Addr,
    },
    /// EVPN type 5: IP prefix (boxed, as type 2).
    EvpnPrefix(Box<EvpnPrefix>),
}

impl Nlri {
    /// The family of this NLRI.
    pub fn family(&self) -> Family {
        match self {
            Nlri::Ipv4 { .. } => Family::Ipv4Unicast,
            Nlri::Vpnv4 { .. } => Family::Vpnv4,
            _ => Family::Evpn,
        }
    }
}

/// ORIGIN (RFC 4271 §5.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Origin {
    /// IGP.
    #[default]
    Igp,
    /// EGP.
    Egp,
    /// INCOMPLETE.
    Incomplete,
}

/// PMSI tunnel attribute (RFC 6514 §5), as EVPN type 3 routes carry it (RFC 8365: tunnel type
/// 6, ingress replication).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PmsiTunnel {
    /// Tunnel type (6 = ingress replication).
    pub tunnel_type: u8,
    /// The label field (VNI for VXLAN).
    pub label: LabelField,
    /// Tunnel endpoint (the VTEP).
    pub endpoint: Ipv4Addr,
}

/// An attribute carried through unchanged (unknown optional transitive).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    /// Flags as received (the partial bit is set when passed on).
    pub flags: u8,
    /// Type code.
    pub code: u8,
    /// Value.
    pub value: Vec<u8>,
}

/// Path attributes of an UPDATE.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathAttributes {
    /// ORIGIN.
    pub origin: Origin,
    /// AS_PATH flattened: AS_SEQUENCE members in order (an AS_SET is one entry per RFC 4271
    /// §9.1.2.2 when counting; kept as its members here).
    pub as_path: Vec<u32>,
    /// NEXT_HOP, or the MP_REACH next hop.
    pub next_hop: Option<Ipv4Addr>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// COMMUNITIES.
    pub communities: Vec<u32>,
    /// EXTENDED COMMUNITIES (route targets, encapsulation, router MAC), 8 bytes each.
    pub ext_communities: Vec<[u8; 8]>,
    /// ORIGINATOR_ID (route reflection).
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST.
    pub cluster_list: Vec<Ipv4Addr>,
    /// PMSI_TUNNEL.
    pub pmsi_tunnel: Option<PmsiTunnel>,
    /// Unknown optional transitive attributes, passed on.
    pub unknown: Vec<RawAttribute>,
}

impl PathAttributes {
    /// The route targets among the extended communities.
    pub fn route_targets(&self) -> impl Iterator<Item = RouteTarget> + '_ {
        self.ext_communities.iter().filter_map(|c| RouteTarget::from_ext_community(*c))
    }

    /// The tunnel type of the encapsulation extended community, if present.
    pub fn encapsulation(&self) -> Option<u16> {
        self.ext_communities.iter().find_map(|c| encapsulation(*c))
    }

    /// The router's MAC extended community, if present.
    pub fn router_mac(&self) -> Option<MacAddr> {
        self.ext_communities.iter().find_map(|c| router_mac(*c))
    }
}

/// An UPDATE: withdrawals and announcements (any family; MP_REACH/MP_UNREACH are folded in).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Withdrawn NLRI.
    pub withdrawn: Vec<Nlri>,
    /// Attributes of the announced NLRI.
    pub attributes: PathAttributes,
    /// Announced NLRI.
    pub announced: Vec<Nlri>,
    /// Set on an End-of-RIB marker (RFC 4724 §2) for this family: the codec decodes an empty
    /// UPDATE as IPv4 unicast's and an UPDATE with only an empty MP_UNREACH as that family's,
    /// and encodes an `Update` with `eor` set as that marker.
    pub eor: Option<Family>,
}

impl Update {
    /// The End-of-RIB marker of a family.
    pub fn end_of_rib(family: Family) -> Update {
        Update { eor: Some(family), ..Default::default() }
    }

    /// True for an End-of-RIB marker (RFC 4724 §2): an UPDATE with nothing in it (IPv4), or
    /// only an empty MP_UNREACH (other families; the codec reports those as `eor`).
    pub fn is_empty(&self) -> bool {
        self.withdrawn.is_empty() && self.announced.is_empty()
    }
}

/// Graceful restart capability (RFC 4724 §3).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GracefulRestart {
    /// Restart state bit: this speaker has restarted.
    pub restarting: bool,
    /// Restart time in seconds (12 bits).
    pub restart_time: u16,
    /// Families with their forwarding-state-preserved bit.
    pub families: Vec<(Family, bool)>,
}

/// An OPEN with the capabilities carrier uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// The speaker's AS (from the 4-octet AS capability when present).
    pub asn: u32,
    /// Proposed hold time.
    pub hold_time: u16,
    /// BGP identifier.
    pub router_id: Ipv4Addr,
    /// Multiprotocol capabilities carrier understands (others are ignored).
    pub families: Vec<Family>,
    /// 4-octet AS capability (RFC 6793).
    pub four_octet_as: bool,
    /// Route refresh capability (RFC 2918).
    pub route_refresh: bool,
    /// Graceful restart capability.
    pub graceful_restart: Option<GracefulRestart>,
}

/// A NOTIFICATION (RFC 4271 §4.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Data.
    pub data: Vec<u8>,
}

impl Notification {
    /// A notification without data.
    pub fn new(code: u8, subcode: u8) -> Notification {
        Notification { code, subcode, data: vec![] }
    }
}

/// NOTIFICATION error codes (RFC 4271 §4.5).
pub mod error_code {
    /// Message header error.
    pub const HEADER: u8 = 1;
    /// OPEN message error.
    pub const OPEN: u8 = 2;
    /// UPDATE message error.
    pub const UPDATE: u8 = 3;
    /// Hold timer expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite state machine error.
    pub const FSM: u8 = 5;
    /// Cease (RFC 4486 subcodes).
    pub const CEASE: u8 = 6;
}

/// A BGP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// OPEN.
    Open(Open),
    /// UPDATE.
    Update(Update),
    /// NOTIFICATION.
    Notification(Notification),
    /// KEEPALIVE.
    Keepalive,
    /// ROUTE-REFRESH for a family.
    RouteRefresh(Family),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rd_and_rt_text_round_trip() {
        for s in ["65000:100", "192.0.2.1:7", "4200000000:5"] {
            let rd: RouteDistinguisher = s.parse().unwrap();
            assert_eq!(rd.to_string(), s);
            let rt: RouteTarget = s.parse().unwrap();
            assert_eq!(rt.to_string(), format!("target:{s}"));
            assert_eq!(RouteTarget::from_ext_community(rt.0), Some(rt));
        }
        let rd: RouteDistinguisher = "65000:100".parse().unwrap();
        assert_eq!(rd.0, [0, 0, 0xfd, 0xe8, 0, 0, 0, 100]);
        assert!("65000".parse::<RouteDistinguisher>().is_err());
        assert!("x:1".parse::<RouteTarget>().is_err());
    }

    #[test]
    fn communities() {
        assert_eq!(encapsulation(encapsulation_community(ENCAP_VXLAN)), Some(8));
        let m = MacAddr([2, 0, 0, 0, 0, 9]);
        assert_eq!(router_mac(router_mac_community(m)), Some(m));
        assert_eq!(LabelField::mpls(1000).as_mpls(), 1000);
        assert_eq!(LabelField::vni(5000).as_vni(), 5000);
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

serde_via_str!(RouteDistinguisher);
serde_via_str!(RouteTarget);
