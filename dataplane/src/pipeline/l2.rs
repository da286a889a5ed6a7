//! Bridge domains and VXLAN: MAC learning, L2 forwarding, ARP suppression, head-end
//! replication of BUM traffic, VXLAN encapsulation (RFC 7348) and decapsulation by VNI.

use std::net::Ipv4Addr;

use carrier_common::{BridgeDomainId, PortId, Vni, VXLAN_UDP_PORT};

use super::ip::{checked_ipv4, Hop};
use super::{room_before, set_front, trace, Ctx, DropReason, Event, Frame, FramePool, Tracer, Verdict};
use crate::tables::{MacDest, PortRole, Table, VniTarget};
use crate::wire::{ipv4, udp, vxlan, ArpPacket, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, MacAddr, UdpPacket, VxlanHeader};

/// Outer headers VXLAN adds in front of the inner Ethernet frame, less the outer Ethernet.
const VXLAN_OVERHEAD: usize = 20 + 8 + 8;

/// Where one copy of a flooded frame goes.
#[derive(Clone, Copy, Debug)]
enum FloodTarget {
    Port(PortId),
    Vtep(Ipv4Addr),
}

impl<F: Frame, P: FramePool<F>, T: Tracer> Ctx<'_, F, P, T> {
    /// A frame on a customer port of a bridge domain.
    pub(crate) fn bridge_input(&mut self, frame: &mut F, bd: BridgeDomainId, l2len: usize) -> Verdict {
        let Some(domain) = self.tables.bridges.get(bd.index()) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        let eth = EthernetFrame::new_unchecked(frame.data());
        let (src, ethertype) = (eth.src_addr(), eth.ethertype());
        if !src.is_unicast() {
            return Verdict::Drop(DropReason::BadSourceMac);
        }
        self.worker.learn_mac(bd, src, MacDest::Port(self.ingress));
        trace!(self.tracer, "bridge {} (vni {}): learned {} on port {}", domain.name, domain.vni, src, self.ingress);
        if ethertype == EtherType::Arp {
            if let Some(v) = self.arp_suppress(frame, bd, l2len) {
                return v;
            }
        }
        self.bridge_forward(frame, bd, l2len, false)
    }

    /// Forward by destination MAC in a bridge domain, or flood. `from_vtep` applies split
    /// horizon: what came from a VTEP never goes back to a VTEP.
    fn bridge_forward(&mut self, frame: &mut F, bd: BridgeDomainId, l2len: usize, from_vtep: bool) -> Verdict {
        let domain = &self.tables.bridges[bd.index()];
        let dst = EthernetFrame::new_unchecked(frame.data()).dst_addr();
        let known = if dst.is_unicast() {
            domain.macs.get(&dst).copied().or_else(|| self.worker.macs.get(&(bd, dst)).map(|l| l.value))
        } else {
            None
        };
        // A MAC learned behind a port that has left the domain since (re-attached live) is
        // not where it was: flooded as unknown, never sent into another domain.
        let tables = self.tables;
        let known = known.filter(|d| match d {
            MacDest::Port(p) => tables.port(*p).is_some_and(|x| x.role == PortRole::Bridge(bd)),
            MacDest::Vtep(_) => true,
        });
        match known {
            Some(MacDest::Port(p)) if p == self.ingress => Verdict::Drop(DropReason::BridgeHairpin),
            Some(MacDest::Port(p)) => {
                trace!(self.tracer, "{} is behind port {}", dst, p);
                self.l2_out(frame, l2len, p)
            }
            Some(MacDest::Vtep(_)) if from_vtep => Verdict::Drop(DropReason::BridgeSplitHorizon),
            Some(MacDest::Vtep(vtep)) => {
                trace!(self.tracer, "{} is behind VTEP {}", dst, vtep);
                let vni = domain.vni;
                self.bridge_encap(frame, l2len, vtep, vni)
            }
            None => self.flood(frame, bd, l2len, from_vtep),
        }
    }

    /// Head-end replication: one copy per local port (but the ingress) and, unless the frame
    /// came from a VTEP, one per VTEP in the flood list. The last target gets the original.
    fn flood(&mut self, frame: &mut F, bd: BridgeDomainId, l2len: usize, from_vtep: bool) -> Verdict {
        let domain = &self.tables.bridges[bd.index()];
        let ingress = self.ingress;
        let ports = domain.ports.iter().filter(|p| **p != ingress).map(|p| FloodTarget::Port(*p));
        let vteps = domain.flood.iter().filter(|_| !from_vtep).map(|v| FloodTarget::Vtep(*v));
        let mut targets = ports.chain(vteps);
        let Some(mut current) = targets.next() else {
            return Verdict::Drop(DropReason::FloodNoMembers);
        };
        let vni = domain.vni;
        trace!(self.tracer, "flood in bridge {} (vni {})", domain.name, vni);
        for next in targets {
            let target = current;
            self.replicate(frame.data(), |ctx, copy| ctx.send_flood_copy(copy, l2len, target, vni));
            current = next;
        }
        self.send_flood_copy(frame, l2len, current, vni)
    }

    fn send_flood_copy(&mut self, frame: &mut F, l2len: usize, target: FloodTarget, vni: Vni) -> Verdict {
        match target {
            FloodTarget::Port(p) => self.l2_out(frame, l2len, p),
            FloodTarget::Vtep(v) => self.bridge_encap(frame, l2len, v, vni),
        }
    }

    /// Send a bridged frame on a local port, keeping its MACs, retagged for the port.
    fn l2_out(&mut self, frame: &mut F, l2len: usize, port: PortId) -> Verdict {
        let Some(p) = self.tables.port(port) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        let eth = EthernetFrame::new_unchecked(frame.data());
        let (dst, src, ethertype) = (eth.dst_addr(), eth.src_addr(), eth.ethertype());
        let (mtu, vlan, name) = (p.mtu, p.vlan, &p.name);
        if frame.len() - l2len > usize::from(mtu) {
            return Verdict::Drop(DropReason::MtuExceeded);
        }
        let new_l2 = if vlan.is_some() { 18 } else { 14 };
        if !set_front(frame, l2len, new_l2) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        write_ethernet(frame.data_mut(), dst, src, ethertype, vlan);
        trace!(self.tracer, "tx on {} ({}): bridged {} → {}", name, port, src, dst);
        Verdict::Forward(port)
    }

    /// Strip the customer VLAN tag and encapsulate the frame toward a VTEP.
    fn bridge_encap(&mut self, frame: &mut F, l2len: usize, vtep: Ipv4Addr, vni: Vni) -> Verdict {
        if l2len != 14 {
            let eth = EthernetFrame::new_unchecked(frame.data());
            let (dst, src, ethertype) = (eth.dst_addr(), eth.src_addr(), eth.ethertype());
            if !set_front(frame, l2len, 14) {
                return Verdict::Drop(DropReason::NoHeadroom);
            }
            write_ethernet(frame.data_mut(), dst, src, ethertype, None);
        }
        self.vxlan_encap(frame, 14, vtep, vni, None, None)
    }

    /// Encapsulate the untagged Ethernet frame that fills `frame` in VXLAN toward `vtep`.
    /// `routed`: the inner IPv4 packet's flow, for a routed frame (EVPN type-5), which gets
    /// the router MAC as inner source; `None` for a bridged frame (its flow is read here).
    /// The outer packet goes along `way` when the way to the VTEP is resolved, else through
    /// the underlay lookup.
    pub(crate) fn vxlan_encap(&mut self, frame: &mut F, inner_l2: usize, vtep: Ipv4Addr, vni: Vni, routed: Option<super::ip::FlowHash>, way: Option<&super::ip::ResolvedHop>) -> Verdict {
        let Some(local) = self.tables.router.vtep else {
            return Verdict::Drop(DropReason::NoVtepAddress);
        };
        let d = frame.data();
        let hash = match routed {
            Some(flow) => flow.get(),
            None => match EthernetFrame::new_unchecked(d).ethertype() {
                EtherType::Ipv4 => Ipv4Packet::new_checked(&d[inner_l2..]).map(|ip| ip.flow_hash()).unwrap_or(0),
                _ => d.first_chunk::<12>().map_or(0, carrier_common::mac_hash),
            },
        };
        if routed.is_some() {
            let mac = self.tables.router_mac();
            frame.data_mut()[6..12].copy_from_slice(&mac.0);
        }
        let inner_len = frame.len();
        let mut off = 0;
        if !room_before(frame, &mut off, VXLAN_OVERHEAD) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        let udp_len = (8 + 8 + inner_len) as u16;
        let ident = self.worker.next_ident();
        let ttl = self.tables.router.vxlan_ttl;
        let d = frame.data_mut();
        ipv4::emit_header(&mut d[off..off + 20], local, vtep, IpProtocol::Udp, ttl, udp_len, ident, false);
        let sport = carrier_common::vxlan_source_port(hash);
        udp::emit_header(&mut d[off + 20..off + 28], sport, VXLAN_UDP_PORT, udp_len);
        vxlan::emit(&mut d[off + 28..off + 36], vni);
        trace!(self.tracer, "vxlan encap vni {} {} → {} udp {} → {}", vni, local, vtep, sport, VXLAN_UDP_PORT);
        match way {
            Some(r) => self.send_resolved(frame, off, r, EtherType::Ipv4, 0, ttl),
            None => self.send_underlay(frame, off, vtep, EtherType::Ipv4, 0, ttl, super::ip::FlowHash::Known(hash), 0),
        }
    }

    /// IPv4 on a core port: VXLAN to the local VTEP is decapsulated; everything else is routed
    /// in the underlay (the router's own addresses included).
    pub(crate) fn core_ipv4_input(&mut self, frame: &mut F, ip_off: usize) -> Verdict {
        let info = match checked_ipv4(frame, ip_off) {
            Ok(i) => i,
            Err(r) => return Verdict::Drop(r),
        };
        if Some(info.dst) != self.tables.router.vtep || info.protocol != IpProtocol::Udp {
            return self.route(frame, Table::Underlay, ip_off, Hop::Routed { check_source: false }, 0);
        }
        let ip = Ipv4Packet::new_unchecked(&frame.data()[ip_off..]);
        let udp_off = ip_off + ip.header_len();
        if ip.frag_offset() != 0 || ip.more_frags() {
            let dst = ip.dst_addr();
            return self.host_input(frame, Table::Underlay, ip_off, dst);
        }
        let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
            return Verdict::Drop(DropReason::UdpMalformed);
        };
        if udp.dst_port() != VXLAN_UDP_PORT {
            return self.route(frame, Table::Underlay, ip_off, Hop::Routed { check_source: false }, 0);
        }
        let Ok(vx) = VxlanHeader::new_checked(udp.payload()) else {
            return Verdict::Drop(DropReason::VxlanMalformed);
        };
        let vni = vx.vni();
        let Some(target) = self.tables.vnis.get(&vni).copied() else {
            trace!(self.tracer, "vni {} is not mapped", vni);
            return Verdict::Drop(DropReason::VxlanUnknownVni);
        };
        let inner_off = udp_off + 16;
        if !frame.pull_front(inner_off) {
            return Verdict::Drop(DropReason::VxlanMalformed);
        }
        let Ok(eth) = EthernetFrame::new_checked(frame.data()) else {
            return Verdict::Drop(DropReason::EthTruncated);
        };
        let (dst, src, ethertype, l2len) = (eth.dst_addr(), eth.src_addr(), eth.ethertype(), eth.header_len());
        trace!(self.tracer, "vxlan decap vni {} from {}: inner {} → {} {:?} → {:?}", vni, info.src, src, dst, ethertype, target);
        match target {
            VniTarget::Bridge(bd) => {
                if !src.is_unicast() {
                    return Verdict::Drop(DropReason::BadSourceMac);
                }
                self.worker.learn_mac(bd, src, MacDest::Vtep(info.src));
                self.bridge_forward(frame, bd, l2len, true)
            }
            VniTarget::Vrf(vrf) if ethertype == EtherType::Ipv4 => {
                self.route(frame, Table::Vrf(vrf), l2len, Hop::Routed { check_source: false }, 0)
            }
            VniTarget::Vrf(_) => Verdict::Drop(DropReason::UnknownEthertype),
        }
    }

    /// ARP suppression: answer a request from the bridge domain's known bindings. `None` when
    /// the frame is not a request for a known address (it is then bridged as usual).
    fn arp_suppress(&mut self, frame: &mut F, bd: BridgeDomainId, l2len: usize) -> Option<Verdict> {
        let a = ArpPacket::new_checked(&frame.data()[l2len..]).ok()?;
        if a.operation() != ArpPacket::REQUEST {
            return None;
        }
        let (sha, spa, tpa) = (a.sender_hw(), a.sender_ip(), a.target_ip());
        let mac = *self.tables.bridges[bd.index()].arp.get(&tpa)?;
        if spa == tpa {
            return None;
        }
        let mut a = ArpPacket::new_unchecked(&mut frame.data_mut()[l2len..]);
        a.set_operation(ArpPacket::REPLY);
        a.set_sender_hw(mac);
        a.set_sender_ip(tpa);
        a.set_target_hw(sha);
        a.set_target_ip(spa);
        let mut eth = EthernetFrame::new_unchecked(frame.data_mut());
        eth.set_dst_addr(sha);
        eth.set_src_addr(mac);
        self.worker.counters.event(Event::ArpSuppressed);
        trace!(self.tracer, "ARP suppression: {} is-at {}", tpa, mac);
        Some(Verdict::Reply)
    }
}

/// Write an Ethernet header (tagged when `vlan` is set) at the start of `d`.
pub(crate) fn write_ethernet(d: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: EtherType, vlan: Option<u16>) {
    d[0..6].copy_from_slice(&dst.0);
    d[6..12].copy_from_slice(&src.0);
    let et: u16 = ethertype.into();
    match vlan {
        Some(vid) => {
            d[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
            d[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
            d[16..18].copy_from_slice(&et.to_be_bytes());
        }
        None => d[12..14].copy_from_slice(&et.to_be_bytes()),
    }
}
