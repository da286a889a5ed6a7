//! The built-in demo network: two carrier PEs joined by a core link, each with a customer of
//! VRF red and a customer of VRF blue that use the same addresses.
//!
//! ```text
//!  red-a 10.1.0.2 ─ce-red─┐                          ┌─ce-red─ red-b 10.2.0.2
//!                         PE1 ─core0─[wire]─core0─ PE2   192.0.2.0/30
//!                         (the wire namespace bridges the core link; capture there)
//! blue-a 10.1.0.2 ─ce-blue┘    MPLS: red 2001/1001   └ce-blue─ blue-b 10.2.0.2
//!                                    blue 2002/1002
//! ```
//! Every namespace is deleted and every dataplane stopped when [`DemoNet`] drops.

use std::fmt::Write as _;

use crate::carrier::Dataplane;
use crate::netns::{veth_between, NetNs};

/// PE config: `me`/`peer` are 1 or 2.
pub fn pe_config(me: u8, peer: u8) -> String {
    let mut c = String::new();
    let _ = write!(
        c,
        r#"# carrier demo: PE{me}
[router]
router_id = "10.255.0.{me}"
ttl_mode = "uniform"

[[vrf]]
name = "red"
[[vrf]]
name = "blue"

[[port]]
name = "ce-red"
mac = "02:00:00:00:0{me}:01"
addresses = ["10.{me}.0.1/24"]
vrf = "red"
proxy_arp = true

[[port]]
name = "ce-blue"
mac = "02:00:00:00:0{me}:02"
addresses = ["10.{me}.0.1/24"]
vrf = "blue"
proxy_arp = true

[[port]]
name = "core0"
mac = "02:00:00:00:0{me}:00"
addresses = ["192.0.2.{me}/30"]
core = true

[[route]]
prefix = "10.255.0.{peer}/32"
via = "192.0.2.{peer}"

[[route]]
vrf = "red"
prefix = "10.{peer}.0.0/24"
mpls = {{ labels = [{peer}001], pe = "10.255.0.{peer}" }}

[[route]]
vrf = "blue"
prefix = "10.{peer}.0.0/24"
mpls = {{ labels = [{peer}002], pe = "10.255.0.{peer}" }}

[[label]]
label = {me}001
action = "lookup"
vrf = "red"

[[label]]
label = {me}002
action = "lookup"
vrf = "blue"
"#
    );
    c
}

/// The running demo network.
#[derive(Debug)]
pub struct DemoNet {
    /// PE1's dataplane (dropped first: fields drop in order).
    pub dp1: Dataplane,
    /// PE2's dataplane.
    pub dp2: Dataplane,
    /// PE namespaces.
    pub pe1: NetNs,
    /// PE2.
    pub pe2: NetNs,
    /// Red customer behind PE1.
    pub red_a: NetNs,
    /// Red customer behind PE2.
    pub red_b: NetNs,
    /// Blue customer behind PE1 (same address as red_a).
    pub blue_a: NetNs,
    /// Blue customer behind PE2 (same address as red_b).
    pub blue_b: NetNs,
    /// The core link's middle: a Linux bridge `br0` joining `w1` (to PE1) and `w2` (to PE2).
    /// Capture here: frames a dataplane sends or receives over AF_XDP bypass packet taps on
    /// the PE's own interfaces.
    pub wire: NetNs,
}

/// A veth pair `a` in `a_ns` — `b` in `b_ns`, both up, with an optional MAC on the `a` end.
pub fn link(a_ns: &NetNs, a: &str, a_mac: Option<&str>, b_ns: &NetNs, b: &str) {
    veth_between(a_ns, a, b_ns, b);
    if let Some(mac) = a_mac {
        a_ns.run(&["ip", "link", "set", a, "address", mac]);
    }
}

/// Give a host namespace its address and default route; checksum offload off so that the
/// UDP it sends is complete when carrier forwards it.
pub fn host(ns: &NetNs, addr: &str, gw: &str) {
    ns.run(&["ip", "addr", "add", addr, "dev", "eth0"]);
    ns.run(&["ip", "route", "add", "default", "via", gw]);
    let _ = ns.exec(&["ethtool", "-K", "eth0", "tx", "off"]);
}

impl DemoNet {
    /// Build the namespaces and links and start both dataplanes.
    pub fn up() -> DemoNet {
        let pe1 = NetNs::new("cpe1");
        let pe2 = NetNs::new("cpe2");
        let red_a = NetNs::new("cra");
        let red_b = NetNs::new("crb");
        let blue_a = NetNs::new("cba");
        let blue_b = NetNs::new("cbb");
        let wire = NetNs::new("cwire");
        wire.sh("ip link add br0 type bridge");
        wire.sh("ip link set br0 up");
        link(&pe1, "core0", Some("02:00:00:00:01:00"), &wire, "w1");
        link(&pe2, "core0", Some("02:00:00:00:02:00"), &wire, "w2");
        wire.sh("ip link set w1 master br0");
        wire.sh("ip link set w2 master br0");
        for (me, pe, red, blue) in [(1, &pe1, &red_a, &blue_a), (2, &pe2, &red_b, &blue_b)] {
            link(pe, "ce-red", Some(&format!("02:00:00:00:0{me}:01")), red, "eth0");
            link(pe, "ce-blue", Some(&format!("02:00:00:00:0{me}:02")), blue, "eth0");
            host(red, &format!("10.{me}.0.2/24"), &format!("10.{me}.0.1"));
            host(blue, &format!("10.{me}.0.2/24"), &format!("10.{me}.0.1"));
        }
        let dp1 = Dataplane::start(&pe1, &pe_config(1, 2));
        let dp2 = Dataplane::start(&pe2, &pe_config(2, 1));
        DemoNet { dp1, dp2, pe1, pe2, red_a, red_b, blue_a, blue_b, wire }
    }
}
