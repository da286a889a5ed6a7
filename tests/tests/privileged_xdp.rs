//! Privileged tests of the XDP program and its loader (`dataplane/src/xdp.rs`).
//!
//! Run as root by `cargo xtask test`, which builds the eBPF object and sets
//! `CARRIER_EBPF_OBJECT` so the dataplane library in this binary embeds it. Each test
//! puts the carrier port — one end of a veth pair — in the test process's own
//! namespace (the loader attaches by name there), with an address from 198.18.0.0/15
//! (RFC 2544, benchmarking) unique to the test, and the peer end in a fresh namespace
//! that the test deletes; deleting it deletes the pair.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use carrier_common::{PortId, XdpPortStats, MAX_QUEUES};
use carrier_dataplane::io::xsk::XskPorts;
use carrier_dataplane::xdp::{self, XdpDataplane, XdpError};
use carrier_tests::netns::{self, NetNs};

/// One carrier port wired to a peer namespace: `port` here at `198.18.{net}.1/30`,
/// `peer0` in `peer` at `198.18.{net}.2/30`.
struct Wire {
    peer: NetNs,
    port: String,
    port_addr: String,
}

impl Wire {
    fn new(net: u8) -> Wire {
        netns::require_root();
        assert!(
            xdp::has_embedded_object(),
            "the dataplane was built without the XDP object: run `cargo xtask test`"
        );
        let peer = NetNs::new("cxn");
        let port = netns::unique_name("cxp");
        netns::veth_pair(None, &port, Some(&peer), "peer0");
        let port_addr = format!("198.18.{net}.1");
        netns::run(&[
            "ip",
            "addr",
            "add",
            &format!("{port_addr}/30"),
            "dev",
            &port,
        ]);
        peer.run(&[
            "ip",
            "addr",
            "add",
            &format!("198.18.{net}.2/30"),
            "dev",
            "peer0",
        ]);
        Wire {
            peer,
            port,
            port_addr,
        }
    }

    /// Three pings from the peer to the port's address; panics unless one is answered.
    fn ping_port(&self) {
        self.peer
            .run(&["ping", "-c", "3", "-i", "0.2", "-W", "1", &self.port_addr]);
    }
}


/// The one carrier_xdp on `ifname`; panics when there is none or something else.
fn carrier_program_id(ifname: &str) -> u64 {
    match netns::xdp_programs(None, ifname).as_slice() {
        [(id, name)] if name == "carrier_xdp" => *id,
        other => panic!("expected carrier_xdp alone on {ifname}, found {other:?}"),
    }
}

fn delta(after: XdpPortStats, before: XdpPortStats) -> XdpPortStats {
    XdpPortStats {
        redirected: after.redirected - before.redirected,
        passed: after.passed - before.passed,
        dropped: after.dropped - before.dropped,
    }
}

/// Assembles a two-instruction XDP program (`r0 = XDP_PASS; exit`) named `name` with
/// LLVM's assembler and attaches it to `ifname` the legacy (netlink) way with
/// iproute2, as a crashed process or another tool would leave it.
fn attach_with_iproute2(ifname: &str, name: &str, dir: &std::path::Path) {
    let source = dir.join(format!("{name}.s"));
    let object = dir.join(format!("{name}.o"));
    std::fs::write(
        &source,
        format!(
            "\t.section xdp,\"ax\",@progbits\n\t.globl {name}\n\t.type {name},@function\n\
             {name}:\n\tr0 = 2\n\texit\n\t.size {name}, .-{name}\n\
             \t.section license,\"aw\",@progbits\n\t.globl _license\n_license:\n\t.asciz \"GPL\"\n"
        ),
    )
    .expect("write the assembly");
    netns::run(&[
        &llvm_mc(),
        "-triple",
        "bpfel",
        "-filetype=obj",
        "-o",
        object.to_str().expect("utf-8 path"),
        source.to_str().expect("utf-8 path"),
    ]);
    netns::run(&[
        "ip",
        "link",
        "set",
        "dev",
        ifname,
        "xdpgeneric",
        "obj",
        object.to_str().expect("utf-8 path"),
        "sec",
        "xdp",
    ]);
}

/// `llvm-mc` from PATH or from the newest /usr/lib/llvm-N (installed by `cargo xtask
/// setup` with llvm-N-dev).
fn llvm_mc() -> String {
    if netns::exec(&["sh", "-c", "command -v llvm-mc"])
        .status
        .success()
    {
        return "llvm-mc".to_owned();
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib")
        .expect("read /usr/lib")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let major = name.strip_prefix("llvm-")?.parse().ok()?;
            let tool = entry.path().join("bin/llvm-mc");
            tool.is_file().then_some((major, tool))
        })
        .collect();
    candidates.sort();
    let (_, tool) = candidates
        .pop()
        .expect("llvm-mc not found: run `cargo xtask setup` (installs llvm-N-dev)");
    tool.to_string_lossy().into_owned()
}

/// A scratch directory under the target dir, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> ScratchDir {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(netns::unique_name(name));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ignored = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn attaches_passes_unbound_traffic_and_detaches() {
    let wire = Wire::new(1);
    let slot = 3;
    let mut dataplane = XdpDataplane::load().expect("load the XDP program");
    let mode = dataplane.attach(&wire.port, slot).expect("attach");
    eprintln!("attached in {mode} mode");
    carrier_program_id(&wire.port);

    let before = dataplane.port_stats(slot).expect("read stats");
    wire.ping_port();
    let counted = delta(dataplane.port_stats(slot).expect("read stats"), before);
    // No AF_XDP socket is bound: every frame (ARP request, 3 echo requests) is
    // passed to the kernel, which answers.
    assert!(counted.passed >= 4, "{counted:?}");
    assert_eq!(counted.redirected, 0, "{counted:?}");
    assert_eq!(counted.dropped, 0, "{counted:?}");
    // Other slots see nothing.
    assert_eq!(
        dataplane.port_stats(slot + 1).expect("read stats"),
        XdpPortStats::default()
    );

    dataplane.detach_all().expect("detach");
    assert_eq!(netns::xdp_programs(None, &wire.port), Vec::new());
    wire.ping_port();
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn replaces_a_carrier_program_left_by_a_dataplane_that_did_not_exit() {
    let wire = Wire::new(2);
    let mut first = XdpDataplane::load().expect("load the XDP program");
    first.attach(&wire.port, 0).expect("first attach");
    let stale = carrier_program_id(&wire.port);
    // As if the first dataplane hung: its BPF link stays open and attached.
    std::mem::forget(first);

    let mut second = XdpDataplane::load().expect("load the XDP program again");
    second
        .attach(&wire.port, 0)
        .expect("attach over the stale program");
    let current = carrier_program_id(&wire.port);
    assert_ne!(current, stale, "the stale program is still attached");

    let before = second.port_stats(0).expect("read stats");
    wire.ping_port();
    let counted = delta(second.port_stats(0).expect("read stats"), before);
    assert!(counted.passed >= 4, "{counted:?}");

    drop(second);
    assert_eq!(netns::xdp_programs(None, &wire.port), Vec::new());
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn replaces_a_legacy_carrier_program_left_by_a_crash() {
    let wire = Wire::new(3);
    let scratch = ScratchDir::new("cxl");
    // A netlink attachment outlives its process: what a crashed dataplane leaves.
    attach_with_iproute2(&wire.port, "carrier_xdp", &scratch.0);
    let stale = carrier_program_id(&wire.port);

    let mut dataplane = XdpDataplane::load().expect("load the XDP program");
    dataplane
        .attach(&wire.port, 1)
        .expect("attach over the stale program");
    assert_ne!(carrier_program_id(&wire.port), stale);
    wire.ping_port();
    assert!(dataplane.port_stats(1).expect("read stats").passed >= 4);

    dataplane.detach_all().expect("detach");
    assert_eq!(netns::xdp_programs(None, &wire.port), Vec::new());
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn refuses_to_replace_another_program() {
    let wire = Wire::new(4);
    let scratch = ScratchDir::new("cxf");
    attach_with_iproute2(&wire.port, "other_xdp", &scratch.0);

    let mut dataplane = XdpDataplane::load().expect("load the XDP program");
    let error = dataplane
        .attach(&wire.port, 0)
        .expect_err("must not replace another program");
    assert!(
        matches!(&error, XdpError::ForeignProgram { name, .. } if name == "other_xdp"),
        "{error}"
    );
    assert!(error.to_string().contains("not carrier's"), "{error}");
    // The other program is untouched.
    match netns::xdp_programs(None, &wire.port).as_slice() {
        [(_, name)] => assert_eq!(name, "other_xdp"),
        other => panic!("expected other_xdp alone, found {other:?}"),
    }
}

/// Sends `frames` (scapy expressions) from `ns` out of `iface`, with Debian's scapy
/// (`python3-scapy`, installed by `cargo xtask setup`; a pyenv python may lack it).
fn send_with_scapy(ns: &NetNs, iface: &str, frames: &[String]) {
    let script = format!(
        "from scapy.all import *\nfor frame in [{}]:\n    sendp(frame, iface={iface:?}, verbose=0)\n",
        frames.join(",\n    ")
    );
    ns.run(&["/usr/bin/python3", "-c", &script]);
}

#[test]
#[ignore = "privileged: run by cargo xtask test"]
fn steers_to_the_socket_but_keeps_bgp_and_arp_replies_for_the_host() {
    let wire = Wire::new(5);
    // Keep IPv6 neighbour discovery and MLD off the counters.
    for (ns, iface) in [(None, wire.port.as_str()), (Some(&wire.peer), "peer0")] {
        let sysctl = format!("net.ipv6.conf.{iface}.disable_ipv6=1");
        match ns {
            Some(ns) => ns.run(&["sysctl", "-qw", &sysctl]),
            None => netns::run(&["sysctl", "-qw", &sysctl]),
        };
    }
    let host = Ipv4Addr::new(198, 18, 5, 1);
    let port_mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", wire.port))
        .expect("read the port's MAC");
    let eth = format!("Ether(dst={:?})", port_mac.trim());
    // The kernel answers some frames (a RST to the SYN): a permanent neighbour entry
    // keeps its ARP request, and so the peer's ARP reply, off the counters.
    let peer_mac = wire.peer.run(&["cat", "/sys/class/net/peer0/address"]);
    netns::run(&[
        "ip",
        "neigh",
        "replace",
        "198.18.5.2",
        "lladdr",
        peer_mac.trim(),
        "dev",
        &wire.port,
        "nud",
        "permanent",
    ]);
    let slot = 2;
    let mut dataplane = XdpDataplane::load().expect("load the XDP program");
    dataplane.attach(&wire.port, slot).expect("attach");
    dataplane.add_host_addr(host).expect("add host address");
    // The dataplane's own AF_XDP socket, bound to RX queue 0. It goes in every queue's
    // `XSKS` entry so that the program redirects whichever queue a frame arrives on
    // (veth has one per CPU); the kernel then drops frames of other queues, after the
    // program counted them. Nobody reads the ring: these few frames fit in it.
    let sockets = XskPorts::open(&[(PortId(slot as u16), wire.port.clone())])
        .expect("open an AF_XDP socket on the port");
    let socket = sockets.sockets();
    let [(_, 0, socket)] = socket.as_slice() else {
        panic!("expected one socket on queue 0, got {}", socket.len());
    };
    for queue in 0..MAX_QUEUES {
        dataplane
            .bind_socket(slot, queue, *socket)
            .expect("bind socket");
    }

    let ip = |src: &str, dst: &str| format!("IP(src={src:?}, dst={dst:?})");
    let (us, peer, other) = ("198.18.5.1", "198.18.5.2", "198.18.5.3");
    let host_bound = [
        format!("{eth}/{}/TCP(dport=179)", ip(peer, us)),
        format!("{eth}/{}/TCP(sport=179)", ip(us, other)),
        format!("{eth}/Dot1Q(vlan=7)/{}/TCP(dport=179)", ip(peer, us)),
        format!(
            "{eth}/IP(src={peer:?}, dst={us:?}, ihl=6, options=[IPOption_NOP()]*4)/TCP(sport=179)"
        ),
        format!("{eth}/ARP(op=2, psrc={peer:?}, pdst={us:?})"),
        format!("{eth}/Dot1Q(vlan=7)/ARP(op=2, psrc={peer:?}, pdst={us:?})"),
    ];
    let steered = [
        format!("{eth}/{}/ICMP()", ip(peer, us)),
        format!("{eth}/{}/TCP(dport=179)", ip(peer, other)),
        format!("{eth}/{}/TCP(dport=180)", ip(peer, us)),
        format!("{eth}/{}/UDP(dport=179)", ip(peer, us)),
        format!("{eth}/IP(src={peer:?}, dst={us:?}, frag=10)/TCP(dport=179)"),
        format!("{eth}/ARP(op=1, psrc={peer:?}, pdst={us:?})"),
        format!("{eth}/ARP(op=2, psrc={peer:?}, pdst={other:?})"),
        format!("{eth}/Dot1Q(vlan=7)/{}/ICMP()", ip(peer, us)),
        format!("{eth}/IP(src={peer:?}, dst={us:?}, proto=6)"),
        format!(
            "Ether(dst={:?}, type=0x8100)/Raw(b'\\x00')",
            port_mac.trim()
        ),
    ];

    let before = dataplane.port_stats(slot).expect("read stats");
    send_with_scapy(&wire.peer, "peer0", &host_bound);
    let after_host = dataplane.port_stats(slot).expect("read stats");
    assert_eq!(
        delta(after_host, before),
        XdpPortStats {
            redirected: 0,
            passed: host_bound.len() as u64,
            dropped: 0
        },
        "host-bound frames: {host_bound:#?}"
    );
    send_with_scapy(&wire.peer, "peer0", &steered);
    let after_steered = dataplane.port_stats(slot).expect("read stats");
    assert_eq!(
        delta(after_steered, after_host),
        XdpPortStats {
            redirected: steered.len() as u64,
            passed: 0,
            dropped: 0
        },
        "steered frames: {steered:#?}"
    );

    // Unbound again, everything reaches the kernel: ping works.
    for queue in 0..MAX_QUEUES {
        dataplane.unbind_socket(slot, queue).expect("unbind socket");
    }
    dataplane
        .remove_host_addr(host)
        .expect("remove host address");
    wire.ping_port();
}
