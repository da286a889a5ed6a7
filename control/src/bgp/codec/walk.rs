//! Our own walker over a raw UPDATE body: locates the fields, parses the NLRI of the three
//! families and every attribute carrier uses, and classifies what is wrong per RFC 7606.
//! It runs on every UPDATE (see the module doc of `codec`).
//!
//! Rules, each with its section (RFC 7606 unless named otherwise):
//! - Withdrawn Routes Length or Total Attribute Length pointing past the message: the NLRI
//!   cannot be located → reset 3/1 (§5.1 needs both fields to find the NLRI; RFC 4271 §6.3).
//! - A prefix in Withdrawn Routes or NLRI with length > 32 or running past its field → reset
//!   3/10 Invalid Network Field (§5.3, RFC 4271 §6.3).
//! - An attribute header or value running past Total Attribute Length → treat-as-withdraw,
//!   NLRI found through Total Attribute Length (§4); reset 3/1 when the overrunning attribute is
//!   MP_REACH/MP_UNREACH, whose NLRI would be lost (§5.3, §7.11), and when a value overruns
//!   before any NLRI was located (no classic NLRI or withdrawn routes, no MP_REACH/MP_UNREACH
//!   parsed yet): it may hide the MP attribute, which treat-as-withdraw needs parsed (§2).
//! - Optional/Transitive flag bits in conflict with a known attribute's → that attribute is
//!   malformed, handled as below (§3 c).
//! - Missing ORIGIN / AS_PATH when NLRI are announced, missing NEXT_HOP when IPv4 NLRI are
//!   announced → treat-as-withdraw (§3 d; RFC 4760 §3 removes NEXT_HOP for MP-only UPDATEs).
//! - Malformed ORIGIN (§7.1), AS_PATH (§7.2), NEXT_HOP (§7.3), MED (§7.4), LOCAL_PREF (§7.5),
//!   COMMUNITIES (§7.8), ORIGINATOR_ID (§7.9), CLUSTER_LIST (§7.10), EXTENDED COMMUNITIES
//!   (§7.14) → treat-as-withdraw. PMSI_TUNNEL shorter than its fixed part (RFC 6514 §5) →
//!   treat-as-withdraw (§8 default for attributes that affect route selection/forwarding).
//! - Malformed ATOMIC_AGGREGATE (§7.6), AGGREGATOR (§7.7), AS4_PATH / AS4_AGGREGATOR
//!   (RFC 6793 §6) → attribute discard.
//! - MP_REACH / MP_UNREACH malformed: too short, next hop length unexpected for the family,
//!   NLRI not parseable → reset 3/1 (§7.11, §5.3; RFC 4760 §7 would also allow AFI/SAFI
//!   disable, which carrier does not implement).
//! - A VPNv4 route announced with a stack of labels (carrier does not send the Multiple
//!   Labels capability; BIRD 2 sends stacks anyway) → that route alone is treated as
//!   withdrawn, the rest of the UPDATE applies (RFC 8277 §2.3; labels delimited by the
//!   bottom-of-stack bit, see `parse_vpnv4`).
//! - MP_REACH / MP_UNREACH more than once → reset 3/1 (§3 g); any other attribute more than
//!   once → all but the first discarded (§3 g).
//! - Unrecognized attribute with the Optional bit clear → reset 3/2 with the attribute as
//!   data (RFC 4271 §6.3, §3 of RFC 7606 keeps it). Unrecognized optional transitive → kept in
//!   `unknown` (RFC 4271 §5); unrecognized optional non-transitive → quietly ignored.
//! - An EVPN route with an IPv6 next hop, or IPv4 NLRI and MP_REACH with different next
//!   hops: carrier's model cannot carry them → treat-as-withdraw (not an RFC 7606 case; a
//!   safe choice that keeps the session up).
//! - Treat-as-withdraw on an UPDATE with no NLRI at all (nothing announced or withdrawn) is
//!   reported as an attribute discard with an empty update (§5.2: nothing to withdraw).
//!
//! Not checked here (the session knows, the codec does not): LOCAL_PREF / ORIGINATOR_ID /
//! CLUSTER_LIST from an eBGP peer (§7.5, §7.9, §7.10 say discard), the peer's AS first in
//! AS_PATH, a next hop equal to our own address.

use std::net::Ipv4Addr;

use carrier_dataplane::tables::Ipv4Prefix;
use carrier_contract::MacAddr;

use super::{attr, update_error, CodecContext, DecodeError, AS_TRANS};
use crate::bgp::msg::{
    error_code, Family, LabelField, Nlri, Notification, Origin, PathAttributes, PmsiTunnel,
    RawAttribute, RouteDistinguisher, Update,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Severity {
    Discard,
    Withdraw,
}

#[derive(Debug, Clone)]
struct Fault {
    severity: Severity,
    reason: String,
}

/// The walker's reading of an UPDATE: the update (faulty attributes left out) and what was
/// wrong with it short of a session reset.
#[derive(Debug, Clone)]
pub(super) struct Walked {
    pub update: Update,
    faults: Vec<Fault>,
    /// Routes treated as withdrawn on their own (a VPNv4 label stack, see `parse_vpnv4`),
    /// already moved to `update.withdrawn`: why.
    stacked: Vec<String>,
}

impl Walked {
    /// The RFC 7606 verdict, or `None` when the UPDATE is well-formed.
    pub fn verdict(&self) -> Option<DecodeError> {
        let reason = self
            .faults
            .iter()
            .map(|f| f.reason.as_str())
            .chain(self.stacked.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("; ");
        let u = &self.update;
        let worst = self.faults.iter().map(|f| f.severity).max();
        if worst != Some(Severity::Withdraw) && !self.stacked.is_empty() {
            // RFC 8277 §2.3: only the routes with a label stack are withdrawn; the rest of
            // the UPDATE (less any discarded attribute) applies.
            return Some(DecodeError::RoutesTreatedAsWithdrawn {
                update: u.clone(),
                reason,
            });
        }
        let worst = worst?;
        if worst == Severity::Discard || (u.withdrawn.is_empty() && u.announced.is_empty()) {
            let update = if worst == Severity::Discard {
                u.clone()
            } else {
                Update::default()
            };
            return Some(DecodeError::AttributeDiscard { update, reason });
        }
        let mut withdrawn = u.withdrawn.clone();
        withdrawn.extend(u.announced.iter().cloned());
        Some(DecodeError::TreatAsWithdraw {
            update: Update {
                withdrawn,
                ..Update::default()
            },
            reason,
        })
    }
}

fn update_err(subcode: u8, data: Vec<u8>) -> Notification {
    Notification {
        code: error_code::UPDATE,
        subcode,
        data,
    }
}

fn malformed_list() -> Notification {
    update_err(update_error::MALFORMED_ATTRIBUTE_LIST, vec![])
}

fn be16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn label(b: &[u8]) -> LabelField {
    LabelField(u32::from_be_bytes([0, b[0], b[1], b[2]]))
}

/// A prefix from its length and the (possibly short) address bytes.
fn prefix(len: u8, bytes: &[u8]) -> Option<Ipv4Prefix> {
    let mut a = [0u8; 4];
    a[..bytes.len()].copy_from_slice(bytes);
    Ipv4Prefix::new(Ipv4Addr::from(a), len)
}

/// IPv4 prefixes as in Withdrawn Routes / NLRI (RFC 4271 §4.3).
pub(super) fn parse_ipv4_prefixes(mut b: &[u8], out: &mut Vec<Nlri>) -> Result<(), String> {
    while let Some(&len) = b.first() {
        if len > 32 {
            return Err(format!("prefix length {len} > 32"));
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = b.get(1..1 + n).ok_or("prefix runs past its field")?;
        out.push(Nlri::Ipv4 {
            prefix: prefix(len, bytes).ok_or("bad prefix")?,
        });
        b = &b[1 + n..];
    }
    Ok(())
}

/// VPNv4 NLRI (RFC 4364 §4.3.4, RFC 8277 §2): label(s), RD, prefix.
///
/// Carrier does not send the Multiple Labels capability (RFC 8277 §2.1), so a route should
/// carry one label; BIRD 2 sends a static route's whole label stack anyway. An announced
/// route's labels are therefore read up to the one with the bottom-of-stack bit (RFC 3032
/// §2.1): a stack of several is delimited, its route goes to `stacked` with the number of
/// labels (the caller treats that route alone as withdrawn, RFC 8277 §2.3, RFC 7606 §2)
/// instead of being misread as an RD and a prefix, or resetting the session. A first label
/// without the bit whose NLRI has no room for a second is read as the single label (§2.2:
/// the receiver ignores the bit). A withdrawal carries one 3-byte field whatever it holds
/// (§2.4: the compatibility value 0x800000 has the bit clear).
fn parse_vpnv4(
    mut b: &[u8],
    withdrawal: bool,
    out: &mut Vec<Nlri>,
    stacked: &mut Vec<(Nlri, usize)>,
) -> Result<(), String> {
    while let Some(&bits) = b.first() {
        let bits = usize::from(bits);
        if bits < 88 {
            return Err(format!("VPNv4 NLRI length {bits} bits"));
        }
        let n = bits.div_ceil(8);
        let v = b
            .get(1..1 + n)
            .ok_or("VPNv4 NLRI runs past its attribute")?;
        let labels = if withdrawal { 1 } else { vpnv4_labels(v, bits) };
        let prefix_len = u8::try_from(bits - 24 * labels - 64)
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("VPNv4 NLRI length {bits} bits"))?;
        let at = 3 * labels;
        let mut rd = [0u8; 8];
        rd.copy_from_slice(&v[at..at + 8]);
        let route = Nlri::Vpnv4 {
            rd: RouteDistinguisher(rd),
            label: label(&v[..3]),
            prefix: prefix(prefix_len, &v[at + 8..]).ok_or("bad prefix")?,
        };
        if labels > 1 {
            stacked.push((route, labels));
        } else {
            out.push(route);
        }
        b = &b[1 + n..];
    }
    Ok(())
}

/// How many labels an announced VPNv4 NLRI of `bits` bits (`v`: its bytes) carries: up to
/// the bottom-of-stack bit while another label, an RD and a prefix of at most 32 bits still
/// fit; one when the bits do not delimit a stack that leaves a valid prefix.
fn vpnv4_labels(v: &[u8], bits: usize) -> usize {
    let mut labels = 1;
    while v[3 * labels - 1] & 1 == 0 && bits >= 24 * (labels + 1) + 64 {
        labels += 1;
    }
    if bits - 24 * labels - 64 > 32 {
        return 1;
    }
    labels
}

/// EVPN NLRI (RFC 7432 §7, RFC 9136 §3.1): types 2, 3 and 5 with IPv4 addresses are read;
/// other route types and IPv6 variants are skipped by their length (§5.4 of RFC 7606 for
/// unrecognized types); a known type with an inconsistent length is an error.
fn parse_evpn(mut b: &[u8], out: &mut Vec<Nlri>) -> Result<(), String> {
    while !b.is_empty() {
        if b.len() < 2 {
            return Err("EVPN NLRI header truncated".into());
        }
        let (ty, len) = (b[0], usize::from(b[1]));
        let r = b
            .get(2..2 + len)
            .ok_or("EVPN NLRI runs past its attribute")?;
        b = &b[2 + len..];
        let bad = || format!("EVPN route type {ty} with length {len}");
        let rd = |r: &[u8]| {
            let mut rd = [0u8; 8];
            rd.copy_from_slice(&r[..8]);
            RouteDistinguisher(rd)
        };
        let esi = |r: &[u8]| {
            let mut e = [0u8; 10];
            e.copy_from_slice(&r[8..18]);
            e
        };
        match ty {
            2 => {
                if len < 33 || r[22] != 48 {
                    return Err(bad());
                }
                let ip_len = match r[29] {
                    0 => 0,
                    32 => 4,
                    128 => 16,
                    _ => return Err(bad()),
                };
                let labels = r.get(30 + ip_len..).ok_or_else(bad)?;
                if labels.len() != 3 && labels.len() != 6 {
                    return Err(bad());
                }
                if ip_len == 16 {
                    continue; // IPv6 MAC/IP route: not modelled
                }
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&r[23..29]);
                out.push(Nlri::EvpnMacIp(Box::new(crate::bgp::msg::EvpnMacIp {
                    rd: rd(r),
                    esi: esi(r),
                    eth_tag: be32(&r[18..22]),
                    mac: MacAddr(mac),
                    ip: (ip_len == 4).then(|| ip(&r[30..34])),
                    label1: label(&labels[..3]),
                    label2: (labels.len() == 6).then(|| label(&labels[3..])),
                })));
            }
            3 => match (len, r.get(12)) {
                (17, Some(32)) => out.push(Nlri::EvpnImet {
                    rd: rd(r),
                    eth_tag: be32(&r[8..12]),
                    originator: ip(&r[13..17]),
                }),
                (29, Some(128)) => {} // IPv6 originator: not modelled
                _ => return Err(bad()),
            },
            5 => match len {
                34 => {
                    if r[22] > 32 {
                        return Err(bad());
                    }
                    out.push(Nlri::EvpnPrefix(Box::new(crate::bgp::msg::EvpnPrefix {
                        rd: rd(r),
                        esi: esi(r),
                        eth_tag: be32(&r[18..22]),
                        prefix: prefix(r[22], &r[23..27]).ok_or_else(bad)?,
                        gateway: ip(&r[27..31]),
                        label: label(&r[31..34]),
                    })));
                }
                58 => {} // IPv6 prefix route: not modelled
                _ => return Err(bad()),
            },
            _ => {} // types 1, 4 and unknown: skipped
        }
    }
    Ok(())
}

/// The NLRI of an MP_REACH (`withdrawal` false) or MP_UNREACH; VPNv4 routes announced with a
/// stack of labels go to `stacked` (see [`parse_vpnv4`]).
fn parse_family_nlri(
    family: Family,
    b: &[u8],
    withdrawal: bool,
    out: &mut Vec<Nlri>,
    stacked: &mut Vec<(Nlri, usize)>,
) -> Result<(), String> {
    match family {
        Family::Ipv4Unicast => parse_ipv4_prefixes(b, out),
        Family::Vpnv4 => parse_vpnv4(b, withdrawal, out, stacked),
        Family::Evpn => parse_evpn(b, out),
    }
}

/// AS_PATH / AS4_PATH segments flattened (RFC 4271 §4.3, RFC 7606 §7.2): AS_SET and
/// AS_SEQUENCE members in order; AS_CONFED_* segments (RFC 5065) are left out (they do not
/// count in the path), or are an error when `confed_ok` is false (AS4_PATH, RFC 6793 §6).
pub(super) fn parse_as_path(mut b: &[u8], four: bool, confed_ok: bool) -> Result<Vec<u32>, String> {
    let size = if four { 4 } else { 2 };
    let mut out = vec![];
    while !b.is_empty() {
        if b.len() < 2 {
            return Err("AS_PATH segment header truncated".into());
        }
        let (ty, count) = (b[0], usize::from(b[1]));
        if count == 0 {
            return Err("AS_PATH segment of length 0".into());
        }
        let v = b
            .get(2..2 + count * size)
            .ok_or("AS_PATH segment overruns the attribute")?;
        match ty {
            1 | 2 => out.extend(v.chunks(size).map(|c| {
                if four {
                    be32(c)
                } else {
                    u32::from(u16::from_be_bytes([c[0], c[1]]))
                }
            })),
            3 | 4 if confed_ok => {}
            _ => return Err(format!("AS_PATH segment type {ty}")),
        }
        b = &b[2 + count * size..];
    }
    Ok(out)
}

/// RFC 6793 §4.2.3: rebuild the path from AS_PATH and AS4_PATH received from an OLD speaker.
/// AS4_PATH is ignored when longer than AS_PATH, or when AGGREGATOR names an AS other than
/// AS_TRANS. (Counts are of flattened members: an AS_SET is counted by its members here.)
pub(super) fn merge_as4_path(
    as_path: Vec<u32>,
    as4: Option<Vec<u32>>,
    aggregator_as: Option<u32>,
) -> Vec<u32> {
    match as4 {
        Some(as4)
            if as4.len() <= as_path.len()
                && aggregator_as.is_none_or(|a| a == u32::from(AS_TRANS)) =>
        {
            let mut p = as_path[..as_path.len() - as4.len()].to_vec();
            p.extend(as4);
            p
        }
        _ => as_path,
    }
}

/// PMSI tunnel (RFC 6514 §5): flags, tunnel type, label, tunnel identifier. Only IPv4
/// identifiers (9 bytes in all) are modelled; `None` for others.
pub(super) fn parse_pmsi(v: &[u8]) -> Option<PmsiTunnel> {
    (v.len() == 9).then(|| PmsiTunnel {
        tunnel_type: v[1],
        label: label(&v[2..5]),
        endpoint: ip(&v[5..9]),
    })
}

/// Optional/Transitive bits (0x80/0x40) a known attribute must carry (RFC 4271 §5, RFC 4760,
/// RFC 4360, RFC 4456, RFC 6793, RFC 6514).
fn expected_flags(code: u8) -> Option<u8> {
    use attr::*;
    match code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => Some(0x40),
        MED | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH | MP_UNREACH => Some(0x80),
        AGGREGATOR | COMMUNITIES | EXT_COMMUNITIES | AS4_PATH | AS4_AGGREGATOR | PMSI_TUNNEL
        | LARGE_COMMUNITIES => Some(0xc0),
        _ => None,
    }
}

fn attr_name(code: u8) -> String {
    use attr::*;
    match code {
        ORIGIN => "ORIGIN".into(),
        AS_PATH => "AS_PATH".into(),
        NEXT_HOP => "NEXT_HOP".into(),
        MED => "MULTI_EXIT_DISC".into(),
        LOCAL_PREF => "LOCAL_PREF".into(),
        ATOMIC_AGGREGATE => "ATOMIC_AGGREGATE".into(),
        AGGREGATOR => "AGGREGATOR".into(),
        COMMUNITIES => "COMMUNITIES".into(),
        ORIGINATOR_ID => "ORIGINATOR_ID".into(),
        CLUSTER_LIST => "CLUSTER_LIST".into(),
        MP_REACH => "MP_REACH_NLRI".into(),
        MP_UNREACH => "MP_UNREACH_NLRI".into(),
        EXT_COMMUNITIES => "EXTENDED_COMMUNITIES".into(),
        AS4_PATH => "AS4_PATH".into(),
        AS4_AGGREGATOR => "AS4_AGGREGATOR".into(),
        PMSI_TUNNEL => "PMSI_TUNNEL".into(),
        LARGE_COMMUNITIES => "LARGE_COMMUNITY".into(),
        c => format!("attribute {c}"),
    }
}

struct State {
    attrs: PathAttributes,
    faults: Vec<Fault>,
    seen: [bool; 256],
    next_hop_attr: Option<Ipv4Addr>,
    mp_next_hop: Option<Ipv4Addr>,
    mp_next_hop_ipv6: bool,
    mp_announced: Vec<Nlri>,
    mp_withdrawn: Vec<Nlri>,
    /// Announced routes treated as withdrawn on their own (in `mp_withdrawn`): why.
    stacked: Vec<String>,
    as4_path: Option<Vec<u32>>,
    aggregator_as: Option<u32>,
}

impl State {
    fn new() -> State {
        State {
            attrs: PathAttributes::default(),
            faults: vec![],
            seen: [false; 256],
            next_hop_attr: None,
            mp_next_hop: None,
            mp_next_hop_ipv6: false,
            mp_announced: vec![],
            mp_withdrawn: vec![],
            stacked: vec![],
            as4_path: None,
            aggregator_as: None,
        }
    }

    fn fault(&mut self, severity: Severity, reason: String) {
        self.faults.push(Fault { severity, reason });
    }

    /// A malformed known attribute, handled as its section says.
    fn malformed(&mut self, code: u8, what: &str) -> Result<(), Notification> {
        use attr::*;
        let reason = format!("malformed {}: {what}", attr_name(code));
        match code {
            // RFC 7606 §7.6, §7.7; RFC 6793 §6.
            ATOMIC_AGGREGATE | AGGREGATOR | AS4_PATH | AS4_AGGREGATOR => {
                self.fault(Severity::Discard, reason);
                Ok(())
            }
            // RFC 7606 §7.11 / §5.3: the NLRI inside cannot be trusted.
            MP_REACH | MP_UNREACH => {
                log::debug!("UPDATE: {reason}");
                Err(malformed_list())
            }
            _ => {
                self.fault(Severity::Withdraw, reason);
                Ok(())
            }
        }
    }

    #[expect(
        clippy::manual_is_multiple_of,
        reason = "rust-version 1.85 predates is_multiple_of"
    )]
    fn attribute(
        &mut self,
        flags: u8,
        code: u8,
        v: &[u8],
        whole: &[u8],
        ctx: &CodecContext,
    ) -> Result<(), Notification> {
        use attr::*;
        if let Some(expected) = expected_flags(code) {
            if flags & 0xc0 != expected {
                return self.malformed(code, &format!("flags {flags:#04x}"));
            }
        }
        let len = v.len();
        match code {
            ORIGIN => match v {
                [0] => self.attrs.origin = Origin::Igp,
                [1] => self.attrs.origin = Origin::Egp,
                [2] => self.attrs.origin = Origin::Incomplete,
                _ => return self.malformed(code, &format!("value {v:02x?}")),
            },
            AS_PATH => match parse_as_path(v, ctx.four_octet_as, true) {
                Ok(p) => self.attrs.as_path = p,
                Err(e) => return self.malformed(code, &e),
            },
            NEXT_HOP if len == 4 => self.next_hop_attr = Some(ip(v)),
            MED if len == 4 => self.attrs.med = Some(be32(v)),
            LOCAL_PREF if len == 4 => self.attrs.local_pref = Some(be32(v)),
            ATOMIC_AGGREGATE if len == 0 => {}
            AGGREGATOR if len == if ctx.four_octet_as { 8 } else { 6 } => {
                self.aggregator_as = Some(if ctx.four_octet_as {
                    be32(v)
                } else {
                    be16(v) as u32
                });
            }
            COMMUNITIES if len > 0 && len % 4 == 0 => {
                self.attrs.communities = v.chunks(4).map(be32).collect();
            }
            ORIGINATOR_ID if len == 4 => self.attrs.originator_id = Some(ip(v)),
            CLUSTER_LIST if len > 0 && len % 4 == 0 => {
                self.attrs.cluster_list = v.chunks(4).map(ip).collect();
            }
            EXT_COMMUNITIES if len > 0 && len % 8 == 0 => {
                self.attrs.ext_communities = v
                    .chunks(8)
                    .map(|c| {
                        let mut e = [0u8; 8];
                        e.copy_from_slice(c);
                        e
                    })
                    .collect();
            }
            // RFC 6793 §4.1: between NEW speakers AS4_PATH / AS4_AGGREGATOR are ignored.
            AS4_PATH | AS4_AGGREGATOR if ctx.four_octet_as => {}
            AS4_PATH => match parse_as_path(v, true, false) {
                Ok(p) => self.as4_path = Some(p),
                Err(e) => return self.malformed(code, &e),
            },
            AS4_AGGREGATOR if len == 8 => {}
            PMSI_TUNNEL if len >= 5 => match parse_pmsi(v) {
                Some(p) => self.attrs.pmsi_tunnel = Some(p),
                None => log::debug!("PMSI_TUNNEL with a non-IPv4 tunnel identifier ignored"),
            },
            // RFC 8092: not used here, passed on as it came (like an unrecognized one).
            LARGE_COMMUNITIES if len > 0 && len % 12 == 0 => {
                self.attrs.unknown.push(RawAttribute { flags, code, value: v.to_vec() });
            }
            MP_REACH => self.mp_reach(v)?,
            MP_UNREACH => self.mp_unreach(v)?,
            // RFC 8092 §6: a LARGE_COMMUNITY length that is no multiple of 12 is treat-as-withdraw.
            NEXT_HOP | MED | LOCAL_PREF | ATOMIC_AGGREGATE | AGGREGATOR | COMMUNITIES
            | ORIGINATOR_ID | CLUSTER_LIST | EXT_COMMUNITIES | AS4_AGGREGATOR | PMSI_TUNNEL
            | LARGE_COMMUNITIES => {
                return self.malformed(code, &format!("length {len}"));
            }
            _ if flags & 0x80 == 0 => {
                // RFC 4271 §6.3: Unrecognized Well-known Attribute, data = the attribute.
                return Err(update_err(
                    update_error::UNRECOGNIZED_WELL_KNOWN,
                    whole.to_vec(),
                ));
            }
            _ if flags & 0x40 != 0 => {
                log::debug!(
                    "UPDATE: unrecognized optional transitive attribute {code} (flags {flags:#04x}, {len} bytes) kept (the encoder passes it on with the Partial bit)"
                );
                self.attrs.unknown.push(RawAttribute {
                    flags,
                    code,
                    value: v.to_vec(),
                });
            }
            _ => {} // unrecognized optional non-transitive: quietly ignored (RFC 4271 §5)
        }
        Ok(())
    }

    /// MP_REACH_NLRI (RFC 4760 §3).
    fn mp_reach(&mut self, v: &[u8]) -> Result<(), Notification> {
        if v.len() < 5 {
            return self.malformed(attr::MP_REACH, "too short");
        }
        let (afi, safi, nh_len) = (be16(v) as u16, v[2], usize::from(v[3]));
        let Some(nh) = v.get(4..4 + nh_len) else {
            return self.malformed(attr::MP_REACH, "next hop overruns the attribute");
        };
        let Some(nlri) = v.get(5 + nh_len..) else {
            return self.malformed(attr::MP_REACH, "no reserved octet");
        };
        let Some(family) = Family::from_afi_safi(afi, safi) else {
            return Ok(()); // a family carrier does not speak (and did not negotiate): ignored
        };
        // §7.11: the next hop length must be what the family expects.
        let next_hop = match (family, nh_len) {
            (Family::Ipv4Unicast, 4) | (Family::Evpn, 4) => Some(ip(nh)),
            (Family::Vpnv4, 12) => Some(ip(&nh[8..])),
            (Family::Evpn, 16 | 32) => None,
            _ => {
                return self.malformed(
                    attr::MP_REACH,
                    &format!("next hop length {nh_len} for {family:?}"),
                )
            }
        };
        let before = self.mp_announced.len();
        let mut stacked = vec![];
        if let Err(e) = parse_family_nlri(family, nlri, false, &mut self.mp_announced, &mut stacked)
        {
            return self.malformed(attr::MP_REACH, &e);
        }
        for (route, labels) in stacked {
            if let Nlri::Vpnv4 { rd, prefix, .. } = &route {
                self.stacked.push(format!(
                    "VPNv4 {rd} {prefix} with {labels} labels, no Multiple Labels capability"
                ));
            }
            self.mp_withdrawn.push(route);
        }
        self.mp_next_hop = next_hop;
        self.mp_next_hop_ipv6 = next_hop.is_none() && self.mp_announced.len() > before;
        Ok(())
    }

    /// MP_UNREACH_NLRI (RFC 4760 §4).
    fn mp_unreach(&mut self, v: &[u8]) -> Result<(), Notification> {
        if v.len() < 3 {
            return self.malformed(attr::MP_UNREACH, "too short");
        }
        let Some(family) = Family::from_afi_safi(be16(v) as u16, v[2]) else {
            return Ok(());
        };
        if let Err(e) =
            parse_family_nlri(family, &v[3..], true, &mut self.mp_withdrawn, &mut vec![])
        {
            return self.malformed(attr::MP_UNREACH, &e);
        }
        Ok(())
    }
}

/// Walk an UPDATE body (after the 19-byte header). `Err` is a session reset.
pub(super) fn walk_update(body: &[u8], ctx: &CodecContext) -> Result<Walked, Notification> {
    // RFC 4271 §4.3 layout; §6.3 / RFC 7606 §5.1: lengths past the message → 3/1.
    if body.len() < 4 {
        return Err(malformed_list());
    }
    let wend = 2 + be16(body);
    if wend + 2 > body.len() {
        return Err(malformed_list());
    }
    let aend = wend + 2 + be16(&body[wend..]);
    if aend > body.len() {
        return Err(malformed_list());
    }
    let invalid_network = |e: String| {
        log::debug!("UPDATE: {e}");
        update_err(update_error::INVALID_NETWORK_FIELD, vec![])
    };
    let mut withdrawn = vec![];
    parse_ipv4_prefixes(&body[2..wend], &mut withdrawn).map_err(invalid_network)?;
    let mut announced = vec![];
    parse_ipv4_prefixes(&body[aend..], &mut announced).map_err(invalid_network)?;

    let mut st = State::new();
    let mut rest = &body[wend + 2..aend];
    while !rest.is_empty() {
        let flags = rest[0];
        let hdr = if flags & 0x10 != 0 { 4 } else { 3 };
        if rest.len() < hdr {
            // RFC 7606 §4: too few octets left for an attribute header.
            st.fault(
                Severity::Withdraw,
                "attribute header overruns Total Attribute Length".into(),
            );
            break;
        }
        let code = rest[1];
        let len = if hdr == 4 {
            be16(&rest[2..])
        } else {
            usize::from(rest[2])
        };
        if hdr + len > rest.len() {
            // RFC 7606 §4 (treat-as-withdraw), unless the NLRI were in it (§5.3).
            if code == attr::MP_REACH || code == attr::MP_UNREACH {
                return Err(malformed_list());
            }
            // The overrun swallows whatever follows, maybe the MP_REACH/MP_UNREACH. With no
            // NLRI located so far there is nothing to treat as withdrawn, and ignoring the
            // UPDATE would keep routes it replaced or withdrew: reset (§2, last paragraph).
            if withdrawn.is_empty()
                && announced.is_empty()
                && !st.seen[usize::from(attr::MP_REACH)]
                && !st.seen[usize::from(attr::MP_UNREACH)]
            {
                log::debug!(
                    "UPDATE: {} overruns Total Attribute Length before any NLRI was located",
                    attr_name(code)
                );
                return Err(malformed_list());
            }
            st.fault(
                Severity::Withdraw,
                format!("{} overruns Total Attribute Length", attr_name(code)),
            );
            break;
        }
        let (whole, tail) = rest.split_at(hdr + len);
        rest = tail;
        if st.seen[usize::from(code)] {
            // RFC 7606 §3 g.
            if code == attr::MP_REACH || code == attr::MP_UNREACH {
                return Err(malformed_list());
            }
            st.fault(
                Severity::Discard,
                format!("duplicate {} discarded", attr_name(code)),
            );
            continue;
        }
        st.seen[usize::from(code)] = true;
        st.attribute(flags, code, &whole[hdr..], whole, ctx)?;
    }

    let ipv4_announced = !announced.is_empty();
    announced.append(&mut st.mp_announced);
    withdrawn.append(&mut st.mp_withdrawn);
    if !announced.is_empty() {
        // RFC 7606 §3 d.
        for (code, needed) in [
            (attr::ORIGIN, true),
            (attr::AS_PATH, true),
            (attr::NEXT_HOP, ipv4_announced),
        ] {
            if needed && !st.seen[usize::from(code)] {
                st.fault(Severity::Withdraw, format!("missing {}", attr_name(code)));
            }
        }
    }
    if st.mp_next_hop_ipv6 {
        st.fault(
            Severity::Withdraw,
            "EVPN routes with an IPv6 next hop (carrier needs IPv4)".into(),
        );
    }
    if ipv4_announced
        && st.mp_next_hop.is_some()
        && st.next_hop_attr.is_some()
        && st.mp_next_hop != st.next_hop_attr
    {
        st.fault(
            Severity::Withdraw,
            "IPv4 NLRI and MP_REACH with different next hops".into(),
        );
    }
    st.attrs.next_hop = st.mp_next_hop.or(st.next_hop_attr);
    if !ctx.four_octet_as {
        let path = std::mem::take(&mut st.attrs.as_path);
        st.attrs.as_path = merge_as4_path(path, st.as4_path.take(), st.aggregator_as);
    }
    Ok(Walked {
        update: Update {
            withdrawn,
            attributes: st.attrs,
            announced,
            eor: None,
        },
        faults: st.faults,
        stacked: st.stacked,
    })
}
