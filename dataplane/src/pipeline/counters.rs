//! Counters: per port, per VRF, per incoming and outgoing label, per drop reason and per event.
//!
//! One [`Counters`] per worker, written only by that worker; readers sum the workers' copies.
//! Every drop has a [`DropReason`] with a stable name, and the per-port drop array is indexed
//! by it, so no drop is ever silent.

use carrier_common::{PortId, VrfId};
use std::collections::BTreeMap;

use crate::tables::LabelCounters;

pub use carrier_contract::counters::{CountersView, PacketBytes, PortView, VrfCounters, XdpView};

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order (the counter index order).
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// Number of values.
            pub const COUNT: usize = Self::ALL.len();

            /// The stable, human-readable name used in counters and logs.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named_enum! {
    /// Why a packet was dropped.
    DropReason {
        /// The ingress port is not in the tables.
        UnknownPort = "unknown-port",
        /// Shorter than an Ethernet header (or its VLAN tag).
        EthTruncated = "eth-truncated",
        /// Destination MAC is neither the port's nor broadcast.
        NotForUs = "l2-not-for-us",
        /// Multicast MAC on a routed port (no multicast routing).
        L2Multicast = "l2-multicast",
        /// The VLAN tag does not match the port's.
        VlanMismatch = "vlan-mismatch",
        /// An ethertype the port does not handle.
        UnknownEthertype = "unknown-ethertype",
        /// ARP that is not Ethernet/IPv4 or is truncated.
        ArpMalformed = "arp-malformed",
        /// An ARP request for an address the router does not answer.
        ArpNotAnswered = "arp-not-answered",
        /// An IPv4 header that fails its length or version checks.
        Ipv4Malformed = "ipv4-malformed",
        /// A bad IPv4 header checksum.
        Ipv4BadChecksum = "ipv4-bad-checksum",
        /// Source address fails the anti-spoof check.
        AntiSpoof = "anti-spoof",
        /// No route to the destination.
        NoRoute = "no-route",
        /// The route is a blackhole.
        Blackhole = "blackhole",
        /// TTL expired (an ICMP time-exceeded is sent when allowed).
        TtlExpired = "ttl-expired",
        /// MPLS TTL expired (an ICMP time-exceeded is sent when possible).
        MplsTtlExpired = "mpls-ttl-expired",
        /// The next hop's MAC is not known yet (an ARP request is sent instead).
        NeighbourMiss = "neighbour-miss",
        /// No next hop with the id a route points at.
        InvalidNextHop = "invalid-nexthop",
        /// Recursive next-hop resolution went too deep.
        NextHopTooDeep = "nexthop-too-deep",
        /// The frame's headroom or tailroom is too small for the rewrite.
        NoHeadroom = "no-headroom",
        /// Larger than the egress port's MTU.
        MtuExceeded = "mtu-exceeded",
        /// A truncated or over-deep MPLS label stack.
        MplsMalformed = "mpls-malformed",
        /// A top label not in the ILM.
        MplsUnknownLabel = "mpls-unknown-label",
        /// A pop-and-route label without the bottom-of-stack bit.
        MplsNotBottom = "mpls-bos-expected",
        /// The payload under the popped label is not IPv4.
        MplsPayloadNotIpv4 = "mpls-payload-not-ipv4",
        /// MPLS arriving on a customer port.
        MplsOnCustomerPort = "mpls-on-customer-port",
        /// A truncated or malformed UDP header.
        UdpMalformed = "udp-malformed",
        /// A VXLAN header without the I flag, or truncated.
        VxlanMalformed = "vxlan-malformed",
        /// A VNI not mapped to a bridge domain or VRF.
        VxlanUnknownVni = "vxlan-unknown-vni",
        /// VXLAN needed but no local VTEP address configured.
        NoVtepAddress = "no-vtep-address",
        /// The destination MAC is behind the ingress port.
        BridgeHairpin = "bridge-hairpin",
        /// A frame from a VTEP for a MAC behind another VTEP (split horizon).
        BridgeSplitHorizon = "bridge-split-horizon",
        /// Broadcast/multicast source MAC.
        BadSourceMac = "bad-source-mac",
        /// Flooding with no other member to send to.
        FloodNoMembers = "flood-no-members",
        /// No free frame for a head-end replica.
        ReplicationNoBuffer = "replication-no-buffer",
        /// ICMP to the router with a bad checksum.
        IcmpBadChecksum = "icmp-bad-checksum",
        /// Traffic for the router that it does not serve and no host path exists.
        ToHostUnsupported = "to-host-unsupported",
        /// Over the port's host-path rate (`host_rate`): not given to the host stack.
        HostRateLimited = "host-rate-limited",
        /// The host stack's queue (the kernel mirror) took no more.
        HostQueueFull = "host-queue-full",
        /// Received on a port attached to no VRF, bridge or core (detached by the operator).
        PortDetached = "port-detached",
    }
}

named_enum! {
    /// Things the pipeline did besides forwarding, counted as events.
    Event {
        /// Answered an ARP request for one of its own addresses.
        ArpReplyOwn = "arp-reply-own",
        /// Answered an ARP request by proxy (routed mode).
        ArpReplyProxy = "arp-reply-proxy",
        /// Answered an ARP request from EVPN bindings (ARP suppression).
        ArpSuppressed = "arp-suppressed",
        /// Sent an ARP request for a missing neighbour.
        ArpRequestSent = "arp-request-sent",
        /// Learned a neighbour from ARP.
        NeighbourLearned = "neighbour-learned",
        /// Learned a MAC in a bridge domain.
        MacLearned = "mac-learned",
        /// A learning table was full.
        LearnTableFull = "learn-table-full",
        /// A learned neighbour expired (no ARP from it for the neighbour timeout).
        NeighbourExpired = "neighbour-expired",
        /// A learned MAC expired (no frame from it for the MAC timeout).
        MacExpired = "mac-expired",
        /// Sent a unicast ARP request to a neighbour in use before it expires.
        ArpProbeSent = "arp-probe-sent",
        /// Answered an ICMP echo request.
        EchoReply = "icmp-echo-reply",
        /// Sent ICMP time exceeded.
        IcmpTimeExceeded = "icmp-time-exceeded",
        /// Sent ICMP destination unreachable.
        IcmpUnreachable = "icmp-unreachable",
        /// Made a head-end replica.
        Replicated = "replicated",
    }
}

/// One port's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames received.
    pub rx: PacketBytes,
    /// Frames sent (forwarded, replies, replicas).
    pub tx: PacketBytes,
    /// Frames received here that were handed to the host.
    pub to_host: u64,
    /// Frames the host stack sent on this port's kernel mirror.
    pub from_host: u64,
    /// Frames received here that were dropped, by [`DropReason`] index.
    pub drops: [u64; DropReason::COUNT],
}

impl Default for PortCounters {
    fn default() -> Self {
        PortCounters { rx: PacketBytes::default(), tx: PacketBytes::default(), to_host: 0, from_host: 0, drops: [0; DropReason::COUNT] }
    }
}

/// A worker's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// By [`PortId`].
    pub ports: Vec<PortCounters>,
    /// By [`VrfId`].
    pub vrfs: Vec<VrfCounters>,
    /// By incoming top label value (an array by label, as the ILM).
    pub labels_in: LabelCounters,
    /// By pushed (or swapped-in) label value.
    pub labels_out: LabelCounters,
    /// By [`Event`] index.
    pub events: [u64; Event::COUNT],
    /// By VRF id, then FIB route slot: what each route of a VRF with per-prefix counters
    /// forwarded (not summed by [`Counters::merge`]: see [`Counters::prefix_counts`]).
    pub prefixes: Vec<Vec<Option<RouteCount>>>,
}

/// What the route in one FIB slot forwarded; the prefix tells the slot's route from one that
/// held the slot before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteCount {
    /// The route's prefix.
    pub prefix: crate::tables::Ipv4Prefix,
    /// Packets and bytes.
    pub count: PacketBytes,
}

impl Counters {
    /// Make room for `ports` ports and `vrfs` VRFs (called once per batch, not per packet).
    pub fn ensure(&mut self, ports: usize, vrfs: usize) {
        if self.ports.len() < ports {
            self.ports.resize_with(ports, PortCounters::default);
        }
        if self.vrfs.len() < vrfs {
            self.vrfs.resize(vrfs, VrfCounters::default());
        }
    }

    /// The port's counters (ports are sized by [`Counters::ensure`]).
    #[inline]
    pub fn port(&mut self, port: PortId) -> Option<&mut PortCounters> {
        self.ports.get_mut(port.index())
    }

    /// The VRF's counters.
    #[inline]
    pub fn vrf(&mut self, vrf: VrfId) -> Option<&mut VrfCounters> {
        self.vrfs.get_mut(vrf.index())
    }

    /// Count a packet of `len` bytes forwarded by the route `prefix` in FIB slot `slot` of
    /// VRF `vrf` (a VRF with per-prefix counters).
    #[inline]
    pub fn prefix(&mut self, vrf: VrfId, slot: u32, prefix: crate::tables::Ipv4Prefix, len: usize) {
        let v = vrf.index();
        if self.prefixes.len() <= v {
            self.prefixes.resize_with(v + 1, Vec::new);
        }
        let slots = &mut self.prefixes[v];
        let s = slot as usize;
        if slots.len() <= s {
            slots.resize(s + 1, None);
        }
        match &mut slots[s] {
            Some(c) if c.prefix == prefix => c.count.add(len),
            e => {
                let mut count = PacketBytes::default();
                count.add(len);
                *e = Some(RouteCount { prefix, count });
            }
        }
    }

    /// Add what these counters hold for VRF `vrf` into `out`, by prefix: only slots whose
    /// route `current` still holds there (`current(slot)` is the prefix in the slot now), so
    /// a route's count starts again when it is withdrawn and installed anew.
    pub fn prefix_counts(&self, vrf: VrfId, current: impl Fn(u32) -> Option<crate::tables::Ipv4Prefix>, out: &mut std::collections::BTreeMap<crate::tables::Ipv4Prefix, PacketBytes>) {
        for (slot, c) in self.prefixes.get(vrf.index()).into_iter().flatten().enumerate() {
            if let Some(c) = c.filter(|c| current(slot as u32) == Some(c.prefix)) {
                let e = out.entry(c.prefix).or_default();
                e.packets += c.count.packets;
                e.bytes += c.count.bytes;
            }
        }
    }

    /// Count an event.
    #[inline]
    pub fn event(&mut self, event: Event) {
        self.events[event as usize] += 1;
    }

    /// A frame counted as handed to the host (on `ingress`) that did not reach it after all
    /// (policed, or the mirror's queue was full): it becomes a drop for `reason`.
    pub fn host_refused(&mut self, ingress: PortId, reason: DropReason) {
        if let Some(c) = self.port(ingress) {
            c.to_host = c.to_host.saturating_sub(1);
            c.drops[reason as usize] += 1;
        }
    }

    /// Drops by reason summed over ports.
    pub fn drops_total(&self, reason: DropReason) -> u64 {
        self.ports.iter().map(|p| p.drops[reason as usize]).sum()
    }

    /// Add another worker's counters into these.
    pub fn merge(&mut self, other: &Counters) {
        self.ensure(other.ports.len(), other.vrfs.len());
        for (a, b) in self.ports.iter_mut().zip(&other.ports) {
            a.rx.packets += b.rx.packets;
            a.rx.bytes += b.rx.bytes;
            a.tx.packets += b.tx.packets;
            a.tx.bytes += b.tx.bytes;
            a.to_host += b.to_host;
            a.from_host += b.from_host;
            for (x, y) in a.drops.iter_mut().zip(&b.drops) {
                *x += y;
            }
        }
        for (a, b) in self.vrfs.iter_mut().zip(&other.vrfs) {
            a.lookups.packets += b.lookups.packets;
            a.lookups.bytes += b.lookups.bytes;
            a.drops += b.drops;
        }
        for (to, from) in [(&mut self.labels_in, &other.labels_in), (&mut self.labels_out, &other.labels_out)] {
            for (l, c) in from.iter() {
                to.add_count(l, *c);
            }
        }
        for (x, y) in self.events.iter_mut().zip(&other.events) {
            *x += y;
        }
    }

    /// The view with names: ports and VRFs keyed by the names given, drop reasons and events
    /// by their counter names, zero counts left out.
    pub fn view(&self, port_names: &[String], vrf_names: &[String]) -> CountersView {
        let named = |names: &[String], i: usize| names.get(i).cloned().unwrap_or_else(|| i.to_string());
        let ports = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let drops = DropReason::ALL
                    .iter()
                    .filter(|r| p.drops[**r as usize] > 0)
                    .map(|r| (r.name().to_string(), p.drops[*r as usize]))
                    .collect();
                (named(port_names, i), PortView { rx: p.rx, tx: p.tx, to_host: p.to_host, from_host: p.from_host, drops })
            })
            .collect();
        // An unnamed VRF is an id left unused by a removed VRF: its counters went with it.
        let vrfs = self.vrfs.iter().enumerate().map(|(i, v)| (named(vrf_names, i), *v)).filter(|(name, _)| !name.is_empty()).collect();
        let labels = |m: &LabelCounters| m.iter().map(|(l, c)| (l, *c)).collect();
        let events = Event::ALL
            .iter()
            .filter(|e| self.events[**e as usize] > 0)
            .map(|e| (e.name().to_string(), self.events[*e as usize]))
            .collect();
        CountersView { ports, vrfs, labels_in: labels(&self.labels_in), labels_out: labels(&self.labels_out), events, xdp: BTreeMap::new() }
    }

    /// [`Counters::view`] as JSON.
    pub fn to_json(&self, port_names: &[String], vrf_names: &[String]) -> serde_json::Value {
        serde_json::to_value(self.view(port_names, vrf_names)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_kebab_case() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.extend(Event::ALL.iter().map(|e| e.name()));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        assert!(names.iter().all(|s| s.chars().all(|c| c.is_ascii_lowercase() || c == '-' || c.is_ascii_digit())));
    }

    #[test]
    fn view_round_trips_through_the_table_socket_response() {
        let mut c = Counters::default();
        c.ensure(1, 1);
        c.labels_in.add(100_000, 60);
        c.labels_out.add(5000, 70);
        c.ports[0].drops[DropReason::NoRoute as usize] = 3;
        let view = c.view(&["p".into()], &["red".into()]);
        let text = serde_json::to_string(&crate::ctl::Response::Counters { counters: view.clone() }).unwrap();
        assert_eq!(serde_json::from_str::<crate::ctl::Response>(&text).unwrap(), crate::ctl::Response::Counters { counters: view });
    }

    #[test]
    fn merge_adds() {
        let mut a = Counters::default();
        a.ensure(1, 1);
        a.ports[0].drops[DropReason::NoRoute as usize] = 2;
        a.labels_in.add(100, 60);
        let mut b = a.clone();
        b.merge(&a);
        assert_eq!(b.drops_total(DropReason::NoRoute), 4);
        assert_eq!(b.labels_in[&100], PacketBytes { packets: 2, bytes: 120 });
    }
}
