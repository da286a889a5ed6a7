//! netgauze-bgp-pkt's reading of a well-formed UPDATE, converted into the domain model.

use std::net::{IpAddr, Ipv4Addr};

use netgauze_bgp_pkt::nlri::{
    Ipv4MplsVpnUnicastAddress, Ipv4UnicastAddress, L2EvpnAddress, L2EvpnIpPrefixRoute, L2EvpnRoute,
    LabeledNextHop, MplsLabel,
};
use netgauze_bgp_pkt::path_attribute::{
    Aggregator, AsPath, AsPathSegmentType, MpReach, MpUnreach, Origin as NgOrigin,
    PathAttributeValue,
};
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

use carrier_dataplane::tables::Ipv4Prefix;
use carrier_contract::MacAddr;

use super::walk::{merge_as4_path, parse_pmsi};
use super::{attr, CodecContext};
use crate::bgp::msg::{LabelField, Nlri, Origin, PathAttributes, RouteDistinguisher, Update};

fn rd(r: netgauze_bgp_pkt::nlri::RouteDistinguisher) -> RouteDistinguisher {
    RouteDistinguisher(u64::from(r).to_be_bytes())
}

fn label(l: &MplsLabel) -> LabelField {
    let v = l.value();
    LabelField(u32::from_be_bytes([0, v[0], v[1], v[2]]))
}

fn ipv4_nlri(a: &Ipv4UnicastAddress) -> Option<Nlri> {
    let net = a.network().address();
    Ipv4Prefix::new(net.addr(), net.prefix_len()).map(|prefix| Nlri::Ipv4 { prefix })
}

fn vpnv4_nlri(a: &Ipv4MplsVpnUnicastAddress) -> Option<Nlri> {
    let net = a.network().address();
    Some(Nlri::Vpnv4 {
        rd: rd(a.rd()),
        label: label(a.label_stack().first()?),
        prefix: Ipv4Prefix::new(net.addr(), net.prefix_len())?,
    })
}

/// EVPN types 2, 3, 5 with IPv4 addresses; the rest is not modelled (as in the walker).
fn evpn_nlri(a: &L2EvpnAddress) -> Option<Nlri> {
    match a.route() {
        L2EvpnRoute::MacIpAdvertisement(r) => {
            let ip = match r.ip() {
                None => None,
                Some(IpAddr::V4(ip)) => Some(ip),
                Some(IpAddr::V6(_)) => return None,
            };
            Some(Nlri::EvpnMacIp(Box::new(crate::bgp::msg::EvpnMacIp {
                rd: rd(r.rd()),
                esi: *r.segment_id().value(),
                eth_tag: r.tag().value(),
                mac: MacAddr(*r.mac().value()),
                ip,
                label1: label(r.mpls_label1()),
                label2: r.mpls_label2().map(label),
            })))
        }
        L2EvpnRoute::InclusiveMulticastEthernetTagRoute(r) => match r.ip() {
            IpAddr::V4(originator) => Some(Nlri::EvpnImet {
                rd: rd(r.rd()),
                eth_tag: r.tag().value(),
                originator,
            }),
            IpAddr::V6(_) => None,
        },
        L2EvpnRoute::IpPrefixRoute(L2EvpnIpPrefixRoute::V4(r)) => Some(Nlri::EvpnPrefix(Box::new(crate::bgp::msg::EvpnPrefix {
            rd: rd(r.rd()),
            esi: *r.segment_id().value(),
            eth_tag: r.tag().value(),
            prefix: Ipv4Prefix::new(r.prefix().addr(), r.prefix().prefix_len())?,
            gateway: r.gateway(),
            label: label(r.label()),
        }))),
        _ => None,
    }
}

fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// Parse `buf` (one UPDATE frame) with netgauze and convert it. `walked` is the walker's
/// reading, from which the extended communities and unknown attributes are taken raw.
pub(super) fn decode_update(
    buf: &[u8],
    ctx: &CodecContext,
    walked: &Update,
) -> Result<Update, String> {
    let mut pctx = BgpParsingContext::new(
        ctx.four_octet_as,
        Default::default(),
        Default::default(),
        true,
        true,
        true,
        true,
    );
    let msg =
        BgpMessage::parse(&mut SliceReader::new(buf), &mut pctx).map_err(|e| e.to_string())?;
    let BgpMessage::Update(u) = msg else {
        return Err("not an UPDATE".into());
    };
    let mut withdrawn: Vec<Nlri> = u.withdraw_routes().iter().filter_map(ipv4_nlri).collect();
    let mut announced: Vec<Nlri> = u.nlri().iter().filter_map(ipv4_nlri).collect();
    let mut a = PathAttributes::default();
    let mut next_hop_attr = None;
    let mut mp_next_hop = None;
    let mut mp_announced = vec![];
    let mut mp_withdrawn = vec![];
    let mut as4 = None;
    let mut aggregator_as = None;
    let flatten = |segs: Vec<(AsPathSegmentType, Vec<u32>)>| -> Vec<u32> {
        segs.into_iter().flat_map(|(_, asns)| asns).collect()
    };
    for pa in u.path_attributes() {
        match pa.value() {
            PathAttributeValue::Origin(o) => {
                a.origin = match o {
                    NgOrigin::IGP => Origin::Igp,
                    NgOrigin::EGP => Origin::Egp,
                    NgOrigin::Incomplete => Origin::Incomplete,
                }
            }
            PathAttributeValue::AsPath(AsPath::As2PathSegments(s)) => {
                a.as_path = flatten(
                    s.iter()
                        .map(|s| {
                            (
                                s.segment_type(),
                                s.as_numbers().iter().map(|x| u32::from(*x)).collect(),
                            )
                        })
                        .collect(),
                )
            }
            PathAttributeValue::AsPath(AsPath::As4PathSegments(s)) => {
                a.as_path = flatten(
                    s.iter()
                        .map(|s| (s.segment_type(), s.as_numbers().to_vec()))
                        .collect(),
                )
            }
            PathAttributeValue::As4Path(p) if !ctx.four_octet_as => {
                as4 = Some(flatten(
                    p.segments()
                        .iter()
                        .map(|s| (s.segment_type(), s.as_numbers().to_vec()))
                        .collect(),
                ))
            }
            PathAttributeValue::NextHop(n) => next_hop_attr = Some(n.next_hop()),
            PathAttributeValue::MultiExitDiscriminator(m) => a.med = Some(m.metric()),
            PathAttributeValue::LocalPreference(l) => a.local_pref = Some(l.metric()),
            PathAttributeValue::Aggregator(Aggregator::As2Aggregator(g)) => {
                aggregator_as = Some(u32::from(*g.asn()))
            }
            PathAttributeValue::Aggregator(Aggregator::As4Aggregator(g)) => {
                aggregator_as = Some(*g.asn())
            }
            PathAttributeValue::Communities(c) => {
                a.communities = c.communities().iter().map(|c| c.value()).collect()
            }
            PathAttributeValue::Originator(o) => a.originator_id = Some(o.id()),
            PathAttributeValue::ClusterList(c) => {
                a.cluster_list = c.cluster_list().iter().map(|c| c.id()).collect()
            }
            PathAttributeValue::MpReach(r) => match r {
                MpReach::Ipv4Unicast { next_hop, nlri, .. } => {
                    mp_next_hop = v4(*next_hop);
                    mp_announced.extend(nlri.iter().filter_map(ipv4_nlri));
                }
                MpReach::Ipv4MplsVpnUnicast { next_hop, nlri } => {
                    if let LabeledNextHop::Ipv4(h) = next_hop {
                        mp_next_hop = Some(h.next_hop());
                    }
                    mp_announced.extend(nlri.iter().filter_map(vpnv4_nlri));
                }
                MpReach::L2Evpn { next_hop, nlri } => {
                    mp_next_hop = v4(*next_hop);
                    mp_announced.extend(nlri.iter().filter_map(evpn_nlri));
                }
                _ => {}
            },
            PathAttributeValue::MpUnreach(r) => match r {
                MpUnreach::Ipv4Unicast { nlri } => {
                    mp_withdrawn.extend(nlri.iter().filter_map(ipv4_nlri))
                }
                MpUnreach::Ipv4MplsVpnUnicast { nlri } => {
                    mp_withdrawn.extend(nlri.iter().filter_map(vpnv4_nlri))
                }
                MpUnreach::L2Evpn { nlri } => {
                    mp_withdrawn.extend(nlri.iter().filter_map(evpn_nlri))
                }
                _ => {}
            },
            PathAttributeValue::UnknownAttribute(u) if u.code() == attr::PMSI_TUNNEL => {
                a.pmsi_tunnel = parse_pmsi(u.value());
            }
            _ => {}
        }
    }
    announced.extend(mp_announced);
    withdrawn.extend(mp_withdrawn);
    a.next_hop = mp_next_hop.or(next_hop_attr);
    if !ctx.four_octet_as {
        a.as_path = merge_as4_path(std::mem::take(&mut a.as_path), as4, aggregator_as);
    }
    a.ext_communities = walked.attributes.ext_communities.clone();
    a.unknown = walked.attributes.unknown.clone();
    Ok(Update {
        withdrawn,
        attributes: a,
        announced,
        eor: walked.eor,
    })
}
