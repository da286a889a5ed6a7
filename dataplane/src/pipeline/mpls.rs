//! MPLS from the core: the ILM lookup, pop (per-VRF and per-CE labels), swap, TTL (RFC 3032,
//! RFC 3443) and ICMP for an expiring label TTL.

use super::ip::{checked_ipv4, Hop};
use super::{trace, Ctx, DropReason, Event, Frame, FramePool, Tracer, Verdict};
use crate::tables::{IlmAction, Table, TtlMode};
use crate::wire::{icmpv4, EtherType, ipv4, mpls, mpls::LabelStackEntry, Icmpv4Packet, IpProtocol, Ipv4Packet};

/// Deepest label stack the pipeline walks.
const MAX_STACK: usize = 8;

impl<F: Frame, P: FramePool<F>, T: Tracer> Ctx<'_, F, P, T> {
    /// A labelled packet on a core port; the top label is at `off`.
    pub(crate) fn mpls_input(&mut self, frame: &mut F, mut off: usize) -> Verdict {
        // IPv4 explicit null is popped (RFC 3032 §2.1, RFC 4182): what is under it is handled
        // as if it had come without it.
        let lse = loop {
            let Ok(lse) = LabelStackEntry::parse(&frame.data()[off..]) else {
                return Verdict::Drop(DropReason::MplsMalformed);
            };
            if lse.label != carrier_common::Label::IPV4_EXPLICIT_NULL {
                break lse;
            }
            trace!(self.tracer, "pop explicit null (s {})", lse.bottom);
            off += mpls::LSE_LEN;
            if lse.bottom {
                return self.core_ipv4_input(frame, off);
            }
        };
        let len = frame.len();
        self.worker.counters.labels_in.add(lse.label.value(), len);
        trace!(self.tracer, "label {} tc {} s {} ttl {}", lse.label, lse.tc, lse.bottom, lse.ttl);
        let Some(action) = self.tables.ilm.get(&lse.label) else {
            trace!(self.tracer, "label {} is not in the ILM", lse.label);
            return Verdict::Drop(DropReason::MplsUnknownLabel);
        };
        trace!(self.tracer, "ILM {}: {:?}", lse.label, action);
        match action {
            IlmAction::Swap { out, pe } => {
                if lse.ttl <= 1 {
                    return self.transit_ttl_expired(frame, off, *out, *pe, lse.tc);
                }
                let swapped = LabelStackEntry { label: *out, ttl: lse.ttl - 1, ..lse };
                swapped.emit(&mut frame.data_mut()[off..off + 4]);
                self.label_out(*out);
                // The way toward the PE resolved before (not while tracing: the trace shows
                // every step); else the interpretive path, which may pick an ECMP member by
                // the flow under the stack.
                if !T::ENABLED {
                    if let Some(r) = self.resolved_swap(lse.label, *pe) {
                        return self.send_resolved(frame, off, &r, EtherType::Mpls, lse.tc, lse.ttl - 1);
                    }
                }
                let hash = self.inner_hash(frame, off);
                self.send_underlay(frame, off, *pe, EtherType::Mpls, lse.tc, lse.ttl - 1, super::ip::FlowHash::Known(hash), 0)
            }
            IlmAction::PopLookup { vrf } | IlmAction::PopForward { vrf, .. } => {
                let vrf = *vrf;
                self.vrf = Some(vrf);
                if !lse.bottom {
                    return Verdict::Drop(DropReason::MplsNotBottom);
                }
                let ip_off = off + mpls::LSE_LEN;
                if frame.data().get(ip_off).is_none_or(|b| b >> 4 != 4) {
                    return Verdict::Drop(DropReason::MplsPayloadNotIpv4);
                }
                let info = match checked_ipv4(frame, ip_off) {
                    Ok(i) => i,
                    Err(r) => return Verdict::Drop(r),
                };
                let table = Table::Vrf(vrf);
                let uniform = self.tables.router.ttl_mode == TtlMode::Uniform;
                let label_ttl = lse.ttl.saturating_sub(1);
                if uniform && label_ttl == 0 {
                    trace!(self.tracer, "label TTL expires at the egress PE");
                    return self.icmp_error(
                        frame,
                        table,
                        ip_off,
                        Hop::Disposed,
                        (icmpv4::TIME_EXCEEDED, 0, 0),
                        DropReason::MplsTtlExpired,
                        0,
                    );
                }
                let mut ttl = info.ttl;
                if uniform && label_ttl < info.ttl {
                    let mut ip = Ipv4Packet::new_unchecked(&mut frame.data_mut()[ip_off..]);
                    ip.set_ttl(label_ttl);
                    ip.fill_checksum();
                    ttl = label_ttl;
                }
                trace!(self.tracer, "pop: IP TTL {}", ttl);
                let hop = if uniform { Hop::Disposed } else { Hop::Routed { check_source: false } };
                match action {
                    IlmAction::PopForward { nexthop, .. } => {
                        if !uniform {
                            if ttl <= 1 {
                                return self.icmp_error(frame, table, ip_off, hop, (icmpv4::TIME_EXCEEDED, 0, 0), DropReason::TtlExpired, 0);
                            }
                            super::ip::decrement_ttl(frame.data_mut(), ip_off);
                            ttl -= 1;
                        }
                        match self.tables.nexthop(*nexthop) {
                            Some(nh) => self.forward_ip(frame, ip_off, *nexthop, nh, info, ttl, 0),
                            None => Verdict::Drop(DropReason::InvalidNextHop),
                        }
                    }
                    _ => self.route(frame, table, ip_off, hop, 0),
                }
            }
        }
    }

    /// Flow hash of the IPv4 packet under the label stack, or the top label when there is none.
    fn inner_hash(&self, frame: &F, off: usize) -> u32 {
        let d = &frame.data()[off..];
        let depth = mpls::stack_depth(d, MAX_STACK).unwrap_or(1);
        d.get(depth * 4..)
            .and_then(|ip| Ipv4Packet::new_checked(ip).ok())
            .map(|ip| ip.flow_hash())
            .unwrap_or_else(|| u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
    }

    /// RFC 3032 §2.3.2: a transit LSR whose label TTL expires builds an ICMP time exceeded
    /// for the IPv4 packet under the stack, keeps the stack, and sends it on along the LSP;
    /// the egress routes it back to the sender. Without an IPv4 payload, a counted drop.
    fn transit_ttl_expired(&mut self, frame: &mut F, off: usize, out: carrier_common::Label, pe: std::net::Ipv4Addr, tc: u8) -> Verdict {
        let Ok(depth) = mpls::stack_depth(&frame.data()[off..], MAX_STACK) else {
            return Verdict::Drop(DropReason::MplsMalformed);
        };
        let ip_off = off + depth * mpls::LSE_LEN;
        if checked_ipv4(frame, ip_off).is_err() {
            return Verdict::Drop(DropReason::MplsTtlExpired);
        }
        let ip = Ipv4Packet::new_unchecked(&frame.data()[ip_off..]);
        let src = ip.src_addr();
        let quote = (ip.header_len() + 8).min(usize::from(ip.total_len()));
        if ip.protocol() == IpProtocol::Icmp && ip.payload().first().is_some_and(|t| *t != icmpv4::ECHO_REQUEST) {
            return Verdict::Drop(DropReason::MplsTtlExpired);
        }
        // Move the label stack 28 bytes toward the front to make room for the new IPv4 and
        // ICMP headers in front of the quoted bytes, which stay where they are.
        if !frame.push_front(28) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        frame.data_mut().copy_within(28..28 + ip_off, 0);
        let source = self.tables.router.router_id;
        let ident = self.worker.next_ident();
        let d = frame.data_mut();
        ipv4::emit_header(&mut d[ip_off..ip_off + 20], source, src, IpProtocol::Icmp, 255, (8 + quote) as u16, ident, false);
        d[ip_off + 20] = icmpv4::TIME_EXCEEDED;
        d[ip_off + 21] = 0;
        d[ip_off + 22..ip_off + 28].fill(0);
        if !frame.resize(ip_off + 28 + quote) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        Icmpv4Packet::new_unchecked(&mut frame.data_mut()[ip_off + 20..]).fill_checksum();
        for i in 0..depth {
            let at = off + i * 4;
            let d = frame.data_mut();
            let mut lse = LabelStackEntry::from_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
            if i == 0 {
                lse.label = out;
            }
            lse.ttl = 255;
            lse.emit(&mut d[at..at + 4]);
        }
        self.count_drop(DropReason::MplsTtlExpired);
        self.worker.counters.event(Event::IcmpTimeExceeded);
        trace!(self.tracer, "label TTL expired in transit: ICMP time exceeded to {} sent on along the LSP", src);
        self.label_out(out);
        self.send_underlay(frame, off, pe, EtherType::Mpls, tc, 255, super::ip::FlowHash::Known(0), 0)
    }
}
