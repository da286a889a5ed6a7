//! Benchmark support: frame builders for each pipeline path over the example PE
//! (`examples/pe1.toml`), shared by the criterion benchmark and later end-to-end harnesses.

use std::net::Ipv4Addr;

use carrier_dataplane::config::Config;
use carrier_dataplane::tables::Tables;
use carrier_dataplane::wire::{checksum, ethernet, ipv4, udp, vxlan, EtherType, IpProtocol, MacAddr};

/// The example PE's tables.
pub fn example_tables() -> Tables {
    // A host behind the L2 port, for known-unicast VXLAN decapsulation.
    let text = include_str!("../../examples/pe1.toml").replacen(
        "macs = [{ mac = \"02:ee:00:00:00:09\", vtep = \"10.255.0.2\" }]",
        "macs = [{ mac = \"02:ee:00:00:00:09\", vtep = \"10.255.0.2\" }, { mac = \"02:aa:00:00:00:99\", port = \"ce-l2\" }]",
        1,
    );
    Config::parse(&text).expect("example config parses").tables().expect("example config compiles")
}

fn mac(s: &str) -> MacAddr {
    s.parse().expect("valid MAC")
}

/// An Ethernet/IPv4/UDP frame with `payload` zero bytes (60 bytes on the wire for 18).
pub fn udp_frame(dst_mac: &str, src_mac: &str, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, payload: usize) -> Vec<u8> {
    let udp_len = 8 + payload;
    let mut f = vec![0u8; 14 + 20 + udp_len];
    ethernet::emit_header(&mut f[..14], mac(dst_mac), mac(src_mac), EtherType::Ipv4);
    ipv4::emit_header(&mut f[14..34], src, dst, IpProtocol::Udp, 64, udp_len as u16, 1, false);
    udp::emit_header(&mut f[34..42], sport, 9, udp_len as u16);
    f
}

/// `inner` (an IPv4 packet, from its header on) under one label, in an Ethernet frame.
pub fn mpls_frame(dst_mac: &str, src_mac: &str, label: u32, ttl: u8, inner_ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    ethernet::emit_header(&mut f, mac(dst_mac), mac(src_mac), EtherType::Mpls);
    let lse = (label << 12) | 0x100 | u32::from(ttl);
    f.extend_from_slice(&lse.to_be_bytes());
    f.extend_from_slice(inner_ip);
    f
}

/// `inner` (an Ethernet frame) in VXLAN from `src` to `dst` with `vni`: outer Ethernet,
/// IPv4 (no options, TTL 64, not fragmented, checksum set), UDP from port 50000 to 4789 with
/// no checksum, VXLAN with the I flag; 50 bytes longer than `inner`.
pub fn vxlan_frame(dst_mac: &str, src_mac: &str, src: Ipv4Addr, dst: Ipv4Addr, vni: u32, inner: &[u8]) -> Vec<u8> {
    let udp_len = 16 + inner.len();
    let mut f = vec![0u8; 14 + 20 + 16];
    ethernet::emit_header(&mut f[..14], mac(dst_mac), mac(src_mac), EtherType::Ipv4);
    ipv4::emit_header(&mut f[14..34], src, dst, IpProtocol::Udp, 64, udp_len as u16, 1, false);
    udp::emit_header(&mut f[34..42], 50000, 4789, udp_len as u16);
    vxlan::emit(&mut f[42..50], carrier_common::Vni::new(vni).expect("vni fits"));
    f.extend_from_slice(inner);
    f
}

/// An ARP request (broadcast) from `sha`/`spa` for `tpa`.
pub fn arp_request(sha: &str, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    ethernet::emit_header(&mut f[..14], MacAddr::BROADCAST, mac(sha), EtherType::Arp);
    carrier_dataplane::wire::arp::emit(&mut f[14..], 1, mac(sha), spa, MacAddr::ZERO, tpa);
    f
}

/// An ICMP echo request.
pub fn ping(dst_mac: &str, src_mac: &str, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + 16];
    ethernet::emit_header(&mut f[..14], mac(dst_mac), mac(src_mac), EtherType::Ipv4);
    ipv4::emit_header(&mut f[14..34], src, dst, IpProtocol::Icmp, 64, 24, 1, false);
    f[34] = 8;
    let c = checksum::checksum(&f[34..]);
    f[36..38].copy_from_slice(&c.to_be_bytes());
    f
}

/// One benchmark path: a name, the ingress port index, and 64 frames (distinct flows).
#[derive(Debug, Clone)]
pub struct Path {
    /// Name shown in results.
    pub name: &'static str,
    /// Ingress port index in the example PE.
    pub ingress: u16,
    /// The frames.
    pub frames: Vec<Vec<u8>>,
}

/// Every pipeline path of the example PE, 64 frames each.
pub fn paths() -> Vec<Path> {
    let a = |s: &str| -> Ipv4Addr { s.parse().expect("valid address") };
    let flows = |f: &dyn Fn(u16) -> Vec<u8>| (0..64).map(f).collect::<Vec<_>>();
    let red_mac = "02:00:00:00:01:01";
    let host = "02:aa:00:00:00:02";
    let core_mac = "02:00:00:00:00:01";
    let peer = "02:cc:00:00:00:02";
    let inner_ip = |sport: u16| udp_frame(red_mac, host, a("10.2.0.5"), a("10.1.0.2"), sport, 18)[14..].to_vec();
    vec![
        // ce-red checks the source (anti-spoof); ce-red2 does not.
        Path { name: "vrf-forward", ingress: 0, frames: flows(&|s| udp_frame(red_mac, host, a("10.1.0.2"), a("10.3.0.2"), 1000 + s, 18)) },
        Path { name: "vrf-forward-no-anti-spoof", ingress: 1, frames: flows(&|s| udp_frame("02:00:00:00:01:03", "02:aa:00:00:00:03", a("10.3.0.2"), a("10.1.0.2"), 1000 + s, 18)) },
        Path { name: "mpls-push", ingress: 0, frames: flows(&|s| udp_frame(red_mac, host, a("10.1.0.2"), a("10.2.0.5"), 1000 + s, 18)) },
        Path { name: "mpls-push-transport", ingress: 0, frames: flows(&|s| udp_frame(red_mac, host, a("10.1.0.2"), a("10.4.0.5"), 1000 + s, 18)) },
        Path { name: "mpls-pop-lookup", ingress: 4, frames: flows(&|s| mpls_frame(core_mac, peer, 100, 64, &inner_ip(1000 + s))) },
        Path { name: "mpls-pop-ce", ingress: 4, frames: flows(&|s| mpls_frame(core_mac, peer, 101, 64, &inner_ip(1000 + s))) },
        Path { name: "mpls-swap", ingress: 4, frames: flows(&|s| mpls_frame(core_mac, peer, 500, 64, &inner_ip(1000 + s))) },
        Path { name: "ecmp-mpls-push", ingress: 0, frames: flows(&|s| udp_frame(red_mac, host, a("10.1.0.2"), a("10.6.0.5"), 1000 + s, 18)) },
        Path {
            name: "vxlan-encap-l2",
            ingress: 3,
            frames: flows(&|s| udp_frame("02:ee:00:00:00:09", "02:aa:00:00:00:99", a("10.100.0.2"), a("10.100.0.9"), 1000 + s, 18)),
        },
        Path { name: "vxlan-encap-l3", ingress: 0, frames: flows(&|s| udp_frame(red_mac, host, a("10.1.0.2"), a("10.5.0.5"), 1000 + s, 18)) },
        Path {
            name: "vxlan-decap-l3",
            ingress: 4,
            frames: flows(&|s| {
                vxlan_frame(core_mac, peer, a("10.255.0.2"), a("10.255.0.1"), 5000, &udp_frame("02:00:00:00:00:01", "02:dd:00:00:00:02", a("10.5.0.5"), a("10.1.0.2"), 1000 + s, 18))
            }),
        },
        Path {
            name: "vxlan-decap-l2",
            ingress: 4,
            frames: flows(&|s| {
                vxlan_frame(core_mac, peer, a("10.255.0.2"), a("10.255.0.1"), 100, &udp_frame("02:aa:00:00:00:99", "02:ee:00:00:00:09", a("10.100.0.9"), a("10.100.0.2"), 1000 + s, 18))
            }),
        },
        Path { name: "proxy-arp", ingress: 0, frames: flows(&|_| arp_request(host, a("10.1.0.2"), a("10.2.0.5"))) },
        Path { name: "icmp-echo", ingress: 0, frames: flows(&|_| ping(red_mac, host, a("10.1.0.2"), a("10.1.0.1"))) },
        Path {
            name: "bum-flood-2-vteps",
            ingress: 3,
            frames: flows(&|_| arp_request("02:aa:00:00:00:99", a("10.100.0.2"), a("10.100.0.50"))),
        },
    ]
}

/// What the end-to-end harnesses share about the run itself: being stopped by a signal, running
/// as root, the machine's load.
pub mod run {
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Set by SIGINT/SIGTERM: waits stop early, and the harness's guards clean up.
    static STOP: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_stop_signal(_signal: libc::c_int) {
        STOP.store(true, Ordering::Relaxed);
    }

    /// Make SIGINT and SIGTERM set the flag [`stopped`] reads instead of killing the process.
    pub fn install_stop_handler() {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe {
                libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t);
            }
        }
    }

    /// True once SIGINT or SIGTERM arrived.
    pub fn stopped() -> bool {
        STOP.load(Ordering::Relaxed)
    }

    /// True when running as root.
    pub fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// The CPU's model name, as /proc/cpuinfo gives it.
    pub fn cpu_model() -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_owned()))
            .unwrap_or_default()
    }

    /// Where the section headed `heading` (a `## ` line) lies in a results file: from the
    /// heading to the next `## ` heading (just after its newline) or the end.
    pub fn section_range(text: &str, heading: &str) -> Option<std::ops::Range<usize>> {
        let start = text.find(heading)?;
        let after = start + heading.len();
        Some(start..text[after..].find("\n## ").map_or(text.len(), |i| after + i + 1))
    }

    /// The 1/5/15-minute load averages.
    pub fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
    }

    /// The calling thread inside a network namespace until dropped (then back in its own).
    #[derive(Debug)]
    pub struct InNetNs {
        home: std::fs::File,
    }

    impl InNetNs {
        /// Enter the namespace named `name` (under `/var/run/netns`).
        pub fn enter(name: &str) -> anyhow::Result<InNetNs> {
            use anyhow::Context as _;
            let home = std::fs::File::open("/proc/thread-self/ns/net").context("opening this thread's network namespace")?;
            setns(&format!("/var/run/netns/{name}"))?;
            Ok(InNetNs { home })
        }
    }

    impl Drop for InNetNs {
        fn drop(&mut self) {
            use std::os::fd::AsRawFd as _;
            // SAFETY: `home` is an open namespace file; setns only switches this thread.
            let rc = unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) };
            // Carrying on in the wrong namespace would corrupt later steps.
            assert_eq!(rc, 0, "cannot return to the harness's network namespace: {}", std::io::Error::last_os_error());
        }
    }

    /// Moves the calling thread into the network namespace at `path`.
    pub fn setns(path: &str) -> anyhow::Result<()> {
        use anyhow::Context as _;
        use std::os::fd::AsRawFd as _;
        let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
        // SAFETY: a valid fd of a namespace file; setns with CLONE_NEWNET only changes the
        // calling thread's network namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            anyhow::bail!("setns {path}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// `carrier_sink` (`ebpf/src/sink.rs`): counts and drops every frame a veth receives, by
/// class; the end-to-end harnesses' receiving end.
pub mod sink {
    use std::path::Path;

    use anyhow::{Context, Result};
    use aya::maps::{Array, MapData, PerCpuArray};
    use aya::programs::{Xdp, XdpMode};
    use aya::Ebpf;
    use carrier_dataplane::wire::MacAddr;

    use crate::run::InNetNs;

    /// The sink's counter indexes (`ebpf/src/sink.rs`: `CLASS_*`): IPv4 (but VXLAN), MPLS,
    /// other, VXLAN (IPv4 without options, UDP to port 4789).
    pub const CLASS_IPV4: usize = 0;
    pub const CLASS_MPLS: usize = 1;
    pub const CLASS_OTHER: usize = 2;
    pub const CLASS_VXLAN: usize = 3;
    pub const CLASSES: usize = 4;
    /// The sink's program and maps in the eBPF object.
    const SINK_PROGRAM: &str = "carrier_sink";
    const SINK_PACKETS: &str = "SINK_PACKETS";
    const SINK_DST_MAC: &str = "SINK_DST_MAC";

    /// `carrier_sink` attached in native mode to a veth; detached when dropped.
    pub struct Sink {
        ebpf: Ebpf,
    }

    impl std::fmt::Debug for Sink {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Sink")
        }
    }

    /// Frames the sink counted so far, by class.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct SinkCounts(pub [u64; CLASSES]);

    impl Sink {
        /// Attach to `ifname` in the namespace `netns`, from the eBPF object at `object`. Only
        /// frames to `dst_mac` (any, when `None`) count by their EtherType; others are
        /// [`CLASS_OTHER`].
        pub fn attach(netns: &str, ifname: &str, object: &Path, dst_mac: Option<MacAddr>) -> Result<Sink> {
            let mut ebpf = Ebpf::load_file(object).with_context(|| format!("loading {}", object.display()))?;
            if let Some(mac) = dst_mac {
                let mut bytes = [0u8; 8];
                bytes[..6].copy_from_slice(&mac.0);
                let mut dst = Array::<&mut MapData, u64>::try_from(ebpf.map_mut(SINK_DST_MAC).context("the object has no SINK_DST_MAC")?)?;
                dst.set(0, u64::from_ne_bytes(bytes), 0).context("writing SINK_DST_MAC")?;
            }
            let program: &mut Xdp = ebpf
                .program_mut(SINK_PROGRAM)
                .with_context(|| format!("{} has no {SINK_PROGRAM}: rebuild with `cargo xtask build --release`", object.display()))?
                .try_into()
                .context("carrier_sink is not an XDP program")?;
            program.load().context("loading carrier_sink")?;
            {
                // The interface is looked up, and the link made, in this thread's namespace.
                let _inside = InNetNs::enter(netns)?;
                program.attach(ifname, XdpMode::Driver).context("attaching carrier_sink in native mode")?;
            }
            Ok(Sink { ebpf })
        }

        /// The counts so far.
        pub fn counts(&self) -> Result<SinkCounts> {
            let map = self.ebpf.map(SINK_PACKETS).context("the object has no SINK_PACKETS")?;
            let packets: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map).context("SINK_PACKETS")?;
            let mut counts = SinkCounts::default();
            for (class, count) in counts.0.iter_mut().enumerate() {
                let per_cpu = packets.get(&(class as u32), 0).context("reading SINK_PACKETS")?;
                *count = per_cpu.iter().sum();
            }
            Ok(counts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{EtherType as Et, Ethernet2HeaderSlice, NetSlice, SlicedPacket, TransportSlice};

    /// [`vxlan_frame`] as an independent parser (etherparse) reads it: the outer headers, the
    /// VXLAN header by hand (RFC 7348 §5), and the inner frame whole.
    #[test]
    fn vxlan_frame_parses() {
        let a = |s: &str| -> Ipv4Addr { s.parse().expect("valid address") };
        let inner = udp_frame("02:00:00:00:01:05", "02:dd:00:00:00:02", a("10.2.0.5"), a("10.3.0.2"), 1024, 18);
        let f = vxlan_frame("02:00:00:00:01:01", "02:aa:00:00:00:02", a("10.255.0.2"), a("10.255.0.1"), 5000, &inner);
        assert_eq!(f.len(), inner.len() + 50);

        let p = SlicedPacket::from_ethernet(&f).expect("outer frame parses");
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else { panic!("no outer Ethernet") };
        assert_eq!(eth.destination(), [2, 0, 0, 0, 1, 1]);
        assert_eq!(eth.source(), [2, 0xaa, 0, 0, 0, 2]);
        assert_eq!(eth.ether_type(), Et::IPV4);
        let Some(NetSlice::Ipv4(ip)) = &p.net else { panic!("no outer IPv4") };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!((h.source, h.destination), (a("10.255.0.2").octets(), a("10.255.0.1").octets()));
        assert_eq!(usize::from(h.total_len), f.len() - 14);
        assert_eq!(h.ihl(), 5);
        assert!(!h.more_fragments && h.fragment_offset.value() == 0);
        let Some(TransportSlice::Udp(udp)) = &p.transport else { panic!("no outer UDP") };
        assert_eq!((udp.source_port(), udp.destination_port()), (50000, 4789));
        assert_eq!(usize::from(udp.length()), f.len() - 34);
        assert_eq!(udp.checksum(), 0);

        let vx = udp.payload();
        // Flags with only I set, 24 reserved bits, the VNI, 8 reserved bits.
        assert_eq!(vx[..8], [0x08, 0, 0, 0, 0x00, 0x13, 0x88, 0]);
        assert_eq!(&vx[8..], &inner[..]);
        let inner_eth = Ethernet2HeaderSlice::from_slice(&vx[8..]).expect("inner Ethernet parses");
        assert_eq!(inner_eth.ether_type(), Et::IPV4);
        let q = SlicedPacket::from_ethernet(&vx[8..]).expect("inner frame parses");
        let Some(NetSlice::Ipv4(inner_ip)) = &q.net else { panic!("no inner IPv4") };
        let h = inner_ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.destination, a("10.3.0.2").octets());
        let Some(TransportSlice::Udp(inner_udp)) = &q.transport else { panic!("no inner UDP") };
        assert_eq!(inner_udp.source_port(), 1024);
    }
}
