//! `cargo xtask run` with no config: bring up the built-in demo network (two PEs, VRFs red and
//! blue with overlapping addresses, an MPLS core), show it working, tear it down.
//! `--keep` leaves it up until Enter is pressed, for poking at it by hand.

use std::io::BufRead as _;

use carrier_tests::capture::{tshark, Capture};
use carrier_tests::demo::DemoNet;
use carrier_tests::netns::NetNs;

fn step(title: &str) {
    println!("\n=== {title}");
}

fn show(ns: &NetNs, cmd: &[&str]) -> String {
    println!("$ ip netns exec {} {}", ns.name(), cmd.join(" "));
    let out = ns.exec(cmd);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    print!("{text}");
    text
}

fn main() {
    let keep = std::env::args().any(|a| a == "--keep");
    if String::from_utf8_lossy(&std::process::Command::new("id").arg("-u").output().map(|o| o.stdout).unwrap_or_default()).trim() != "0" {
        eprintln!("the demo creates network namespaces and attaches XDP programs: run it as root");
        std::process::exit(1);
    }
    step("building the demo network: PE1 and PE2, VRFs red and blue (same addresses), an MPLS core");
    let net = DemoNet::up();
    println!("PE1 {} and PE2 {} forward with carrier (XDP + AF_XDP); hosts are namespaces.", net.pe1.name(), net.pe2.name());

    step("red-a (10.1.0.2) pings red-b (10.2.0.2) across the core; the first echo may go to ARP");
    show(&net.red_a, &["ping", "-c", "4", "-i", "0.3", "-W", "1", "10.2.0.2"]);
    step("blue-a has the same address as red-a and reaches blue-b in its own VPN");
    show(&net.blue_a, &["ping", "-c", "3", "-i", "0.3", "-W", "1", "10.2.0.2"]);

    step("what the core link carries: MPLS with the VPN label (tshark decodes a capture)");
    let dir = carrier_tests::carrier::scratch_dir("demo");
    let capture = Capture::start(&net.wire, "w1", &dir.join("core.pcap"), &["mpls"]);
    let _ = net.red_a.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.2.0.2"]);
    let _ = net.blue_a.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.2.0.2"]);
    let pcap = capture.stop();
    let fields = ["eth.src", "mpls.label", "mpls.ttl", "ip.src", "ip.dst", "ip.ttl", "icmp.type"];
    println!("{}", fields.join("\t"));
    for frame in tshark(&pcap, "mpls", &fields) {
        println!("{}", frame.join("\t"));
    }
    let _ = std::fs::remove_dir_all(&dir);

    step("traceroute red-a → red-b: PE1, then PE2 (TTL expiry inside the MPLS core), then the host");
    show(&net.red_a, &["traceroute", "-n", "-q", "1", "-w", "1", "-m", "4", "10.2.0.2"]);

    step("PE1 counters (carrier-dataplane ctl counters)");
    let c = net.dp1.counters();
    for (port, v) in c["ports"].as_object().into_iter().flatten() {
        println!("  port {port:8} rx {:>4} tx {:>4} drops {}", v["rx"]["packets"], v["tx"]["packets"], v["drops"]);
    }
    println!("  labels in {}  labels out {}", c["labels_in"], c["labels_out"]);
    println!("  vrfs {}", c["vrfs"]);
    println!("  events {}", c["events"]);
    println!("  xdp program (redirected to AF_XDP / passed to the kernel / dropped) {}", c["xdp"]);

    if keep {
        step("the network stays up: try `ip netns exec <ns> ping ...`; press Enter to tear it down");
        for ns in [&net.red_a, &net.red_b, &net.blue_a, &net.blue_b, &net.pe1, &net.pe2] {
            println!("  {}", ns.name());
        }
        let _ = std::io::stdin().lock().lines().next();
    }
    step("tearing down");
    drop(net);
    println!("done");
}
