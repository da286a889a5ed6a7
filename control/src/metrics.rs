//! `/metrics`: the state layer in the Prometheus text format, encoded by `prometheus-client`.
//!
//! Built afresh at each scrape from the published views, so a series exists exactly while what
//! it counts does: a local label's series while the label is allocated, a peer's while it is
//! configured. Names follow Prometheus conventions (`carrier_` prefix, base units, `_total` on
//! counters, added by the encoder) and, for BGP, GoBGP's and frr_exporter's where they fit.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::state::{Command, State};

type Labels = Vec<(&'static str, String)>;

/// A family of counters set from absolute values.
fn counters(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>, values: impl IntoIterator<Item = (Labels, u64)>) {
    let family = Family::<Labels, Counter>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).inc_by(v);
    }
    match unit {
        Some(u) => registry.register_with_unit(name, help, u, family),
        None => registry.register(name, help, family),
    }
}

/// A family of gauges.
fn gauges(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>, values: impl IntoIterator<Item = (Labels, i64)>) {
    let family = Family::<Labels, Gauge>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).set(v);
    }
    match unit {
        Some(u) => registry.register_with_unit(name, help, u, family),
        None => registry.register(name, help, family),
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// GoBGP's numbering of FSM states in `bgp_peer_state`.
fn state_number(state: &str) -> i64 {
    match state {
        "idle" => 1,
        "connect" => 2,
        "active" => 3,
        "opensent" => 4,
        "openconfirm" => 5,
        "established" => 6,
        _ => 0,
    }
}

/// The metrics text.
pub async fn render(state: &State) -> String {
    let mut registry = Registry::with_prefix("carrier");
    let dp = state.dataplane.borrow().clone();
    let rib = state.rib.borrow().clone();
    let peers = state.peers();
    // Local labels come from the rib task; without it (stopping) the label series are left out.
    let labels = state.ask(|reply| Command::Labels { reply }).await.unwrap_or_default();
    let c = &dp.counters;

    gauges(&mut registry, "dataplane_connected", "1 when the dataplane's table socket answered the last poll", None, [(vec![], i64::from(dp.connected))]);
    counters(
        &mut registry,
        "table_socket_connects",
        "Times the control process (re)connected to the dataplane's table socket to program it",
        None,
        [(vec![], state.counters.table_socket_connects.load(std::sync::atomic::Ordering::Relaxed))],
    );
    registry.register_with_unit(
        "dataplane_update_latency",
        "Time the dataplane took to apply one change sent by the control process",
        Unit::Seconds,
        state.update_latency.clone(),
    );
    gauges(&mut registry, "fib_routes", "Routes in the dataplane over all VRFs and the underlay", None, [(vec![], i(dp.routes))]);
    gauges(&mut registry, "ilm_entries", "Entries of the dataplane's incoming label map", None, [(vec![], i(dp.labels))]);
    gauges(&mut registry, "labels_allocated", "Local VPN labels allocated by the control process", None, [(vec![], i(rib.labels_allocated))]);

    counters(
        &mut registry,
        "worker_rx_packets",
        "Frames the AF_XDP worker of the receive queue received, over all ports (frames the XDP express tier forwards never reach a worker)",
        None,
        dp.workers.iter().enumerate().map(|(q, n)| (vec![("queue", q.to_string())], *n)),
    );
    let port = |p: &String| vec![("port", p.clone())];
    counters(&mut registry, "port_rx_packets", "Frames received on the port", None, c.ports.iter().map(|(p, v)| (port(p), v.rx.packets)));
    counters(&mut registry, "port_rx", "Bytes received on the port", Some(Unit::Bytes), c.ports.iter().map(|(p, v)| (port(p), v.rx.bytes)));
    counters(&mut registry, "port_tx_packets", "Frames sent on the port", None, c.ports.iter().map(|(p, v)| (port(p), v.tx.packets)));
    counters(&mut registry, "port_tx", "Bytes sent on the port", Some(Unit::Bytes), c.ports.iter().map(|(p, v)| (port(p), v.tx.bytes)));
    counters(&mut registry, "port_to_host_packets", "Frames received on the port and given to the host stack", None, c.ports.iter().map(|(p, v)| (port(p), v.to_host)));
    counters(
        &mut registry,
        "port_drops",
        "Frames received on the port and dropped, by reason",
        None,
        c.ports.iter().flat_map(|(p, v)| v.drops.iter().map(move |(r, n)| (vec![("port", p.clone()), ("reason", r.clone())], *n))),
    );
    counters(&mut registry, "express_forwarded_packets", "Frames received on the port that the XDP express tier forwarded itself (also in the port, VRF and label counters)", None, c.xdp.iter().map(|(p, v)| (port(p), v.express_forwarded)));
    counters(
        &mut registry,
        "express_punts",
        "Frames received on the port that the XDP express tier left to the AF_XDP path, by reason",
        None,
        c.xdp.iter().flat_map(|(p, v)| v.express_punts.iter().map(move |(r, n)| (vec![("port", p.clone()), ("reason", r.clone())], *n))),
    );
    counters(&mut registry, "vrf_lookups", "Packets looked up in the VRF", None, c.vrfs.iter().map(|(v, n)| (vec![("vrf", v.clone())], n.lookups.packets)));
    counters(&mut registry, "vrf_drops", "Packets dropped after entering the VRF", None, c.vrfs.iter().map(|(v, n)| (vec![("vrf", v.clone())], n.drops)));

    let label = |l: &crate::state::LabelView| vec![("label", l.label.to_string()), ("vrf", l.vrf.clone()), ("type", l.kind.clone())];
    let by_label = |l: &crate::state::LabelView| c.labels_in.get(&l.label).copied().unwrap_or_default();
    counters(&mut registry, "label_in_packets", "Packets received with this local label on top", None, labels.iter().map(|l| (label(l), by_label(l).packets)));
    counters(&mut registry, "label_in", "Bytes received with this local label on top", Some(Unit::Bytes), labels.iter().map(|l| (label(l), by_label(l).bytes)));
    counters(&mut registry, "label_out_packets", "Packets sent with this label pushed", None, c.labels_out.iter().map(|(l, v)| (vec![("label", l.to_string())], v.packets)));
    counters(&mut registry, "label_out", "Bytes sent with this label pushed", Some(Unit::Bytes), c.labels_out.iter().map(|(l, v)| (vec![("label", l.to_string())], v.bytes)));

    let peer = |p: &crate::state::PeerStatus| vec![("peer", p.address.clone())];
    gauges(&mut registry, "bgp_peer_state", "BGP FSM state: 1 idle, 2 connect, 3 active, 4 opensent, 5 openconfirm, 6 established", None, peers.iter().map(|p| (peer(p), state_number(&p.state))));
    gauges(&mut registry, "bgp_peer_up", "1 when the session is Established", None, peers.iter().map(|p| (peer(p), i64::from(p.state == "established"))));
    gauges(&mut registry, "bgp_peer_admin_down", "1 when an operator stopped the session", None, peers.iter().map(|p| (peer(p), i64::from(p.admin_down))));
    gauges(&mut registry, "bgp_peer_uptime", "Time since the session came up (0 when down)", Some(Unit::Seconds), peers.iter().map(|p| (peer(p), i(p.uptime_seconds.unwrap_or(0)))));
    counters(&mut registry, "bgp_peer_flaps", "Times the Established session went down", None, peers.iter().map(|p| (peer(p), p.flaps)));
    let messages = |p: &crate::state::PeerStatus, inbound: bool| {
        let m = &p.messages;
        let v = if inbound {
            [("open", m.opens_in), ("update", m.updates_in), ("notification", m.notifications_in), ("keepalive", m.keepalives_in)]
        } else {
            [("open", m.opens_out), ("update", m.updates_out), ("notification", m.notifications_out), ("keepalive", m.keepalives_out)]
        };
        v.into_iter().map(|(t, n)| (vec![("peer", p.address.clone()), ("type", t.to_string())], n)).collect::<Vec<_>>()
    };
    counters(&mut registry, "bgp_messages_received", "BGP messages received, by type", None, peers.iter().flat_map(|p| messages(p, true)));
    counters(&mut registry, "bgp_messages_sent", "BGP messages sent, by type", None, peers.iter().flat_map(|p| messages(p, false)));
    let prefixes = |f: fn(&crate::state::PrefixCounts) -> u64| {
        peers.iter().flat_map(move |p| p.prefixes.iter().map(move |c| (vec![("peer", p.address.clone()), ("family", c.family.clone())], i(f(c))))).collect::<Vec<_>>()
    };
    gauges(&mut registry, "bgp_routes_received", "Paths in the peer's Adj-RIB-In", None, prefixes(|c| c.received));
    gauges(&mut registry, "bgp_routes_accepted", "Paths of the peer that a VRF, bridge or the underlay imports", None, prefixes(|c| c.accepted));
    gauges(&mut registry, "bgp_routes_advertised", "Paths advertised to the peer", None, prefixes(|c| c.advertised));
    counters(&mut registry, "bgp_updates_processed", "UPDATE messages the RIB processed", None, [(vec![], rib.counters.updates_processed)]);
    counters(&mut registry, "rib_flushes", "Flushes that sent changes to the dataplane", None, [(vec![], rib.counters.flushes)]);
    gauges(&mut registry, "rib_unresolved_paths", "Paths whose next hop does not resolve (at the last flush)", None, [(vec![], i(rib.counters.unresolved))]);

    let mut text = String::new();
    if encode(&mut text, &registry).is_err() {
        text.clear();
    }
    text
}

/// The OpenMetrics text `prometheus-client` encodes, for clients of the classic Prometheus text
/// format (0.0.4, what `promtool check metrics` reads): there a counter's HELP and TYPE name the
/// sample (`x_total`), not the family (`x`), and `# UNIT` and `# EOF` do not exist. Only those
/// comment lines change; every sample is the encoder's.
pub fn to_classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{tag}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn classic_names_counters_by_their_samples() {
        let om = "# HELP carrier_x Things.\n# TYPE carrier_x counter\ncarrier_x_total{a=\"1\"} 3\n# HELP carrier_y_bytes Size.\n# TYPE carrier_y_bytes gauge\n# UNIT carrier_y_bytes bytes\ncarrier_y_bytes 5\n# EOF\n";
        assert_eq!(
            super::to_classic(om),
            "# HELP carrier_x_total Things.\n# TYPE carrier_x_total counter\ncarrier_x_total{a=\"1\"} 3\n# HELP carrier_y_bytes Size.\n# TYPE carrier_y_bytes gauge\ncarrier_y_bytes 5\n"
        );
    }
}
