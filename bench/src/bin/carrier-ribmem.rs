//! `carrier-ribmem`: the control process's memory per VPNv4 route, without the network: a
//! [`Rib`] and a [`Compiler`] over `examples/pe1.toml` learn N routes (distinct /24s, RD
//! 65000:9, RT 65000:1 imported by VRF red, next hop 10.255.0.2 resolved in the underlay), in
//! UPDATEs of 500 NLRI as a peer packs them, flushed to table commands every 20,000 routes as
//! the daemon's flush would. Reported: the process's RSS growth per route (VmRSS before and
//! after; the commands of each flush are dropped, as after the dataplane took them), for one
//! label for all routes and a label per route, and the sizes of the types the RIB keys by.
//!
//! ```text
//! cargo build --release -p carrier-bench
//! target/release/carrier-ribmem --routes 1000000 && target/release/carrier-ribmem --routes 1000000 --per-route
//! ```
//! Not a test: it asserts nothing. The issue's target is ≤300 B/route for carrier-control.
#![expect(clippy::manual_is_multiple_of, reason = "rust-version 1.85 predates is_multiple_of")]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use carrier_control::bgp::msg::{LabelField, Nlri, PathAttributes, RouteTarget, Update};
use carrier_control::config::ControlConfig;
use carrier_control::fib::Compiler;
use carrier_control::rib::{PeerInfo, Rib};
use carrier_dataplane::config::Config;
use carrier_dataplane::tables::{Ipv4Prefix, NextHop};
use clap::Parser;

const CONTROL: &str = r#"
[bgp]
asn = 65000
router_id = "10.255.0.1"
[dataplane]
config = "pe1.toml"
[labels]
first = 5000
last = 5099
[[vrf]]
name = "red"
rd = "65000:1"
import = ["target:65000:1"]
export = ["target:65000:1"]
"#;

#[derive(Debug, Parser)]
#[command(name = "carrier-ribmem")]
struct Cli {
    /// Routes to learn.
    #[arg(long, default_value_t = 1_000_000)]
    routes: u32,
    /// A label per route (default: one label for all).
    #[arg(long)]
    per_route: bool,
    /// Only learn: no flush (what the peer's RIB and the path index hold alone).
    #[arg(long)]
    no_flush: bool,
}

fn rss() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}

/// Learns `n` routes (a label each when `per_route`); returns (bytes per route, seconds).
fn learn(n: u32, per_route: bool, flush: bool) -> Result<(f64, f64)> {
    let base = Arc::new(Config::parse(include_str!("../../../examples/pe1.toml"))?.tables()?);
    let cfg = Arc::new(ControlConfig::parse(CONTROL)?);
    let peer = Ipv4Addr::new(10, 255, 0, 254);
    let mut rib = Rib::new(cfg, base.clone());
    rib.peer_up(peer, PeerInfo { asn: 65000, router_id: peer, ebgp: false, local_pref: None, restart_time: None });
    let mut compiler = Compiler::new(base);
    let attributes = PathAttributes {
        next_hop: Some(Ipv4Addr::new(10, 255, 0, 2)),
        local_pref: Some(100),
        ext_communities: vec!["target:65000:1".parse::<RouteTarget>().map_err(|e| anyhow::anyhow!("{e:?}"))?.0],
        ..Default::default()
    };
    let rd = "65000:9".parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let before = rss()?;
    let started = Instant::now();
    let now = Instant::now();
    let mut i = 0u32;
    while i < n {
        let announced: Vec<Nlri> = (i..(i + 500).min(n))
            .map(|k| {
                let prefix = Ipv4Prefix::new(Ipv4Addr::from(0x0a00_0000 + (k << 8)), 24).expect("a /24");
                Nlri::Vpnv4 { rd, label: LabelField::mpls(if per_route { 16_000 + k } else { 16_000 }), prefix }
            })
            .collect();
        i += announced.len() as u32;
        rib.update(peer, Update { announced, attributes: attributes.clone(), ..Default::default() });
        if flush && (i % 20_000 == 0 || i == n) {
            drop(compiler.apply(&rib.changes(now, &compiler)));
        }
    }
    let grown = rss()?.saturating_sub(before);
    anyhow::ensure!(!flush || compiler.routes() >= n as usize, "only {} of {n} routes compiled", compiler.routes());
    Ok((grown as f64 / f64::from(n), started.elapsed().as_secs_f64()))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    println!(
        "type sizes (bytes): Nlri {}, Ipv4Prefix {}, NextHop {}, PathAttributes {}",
        std::mem::size_of::<Nlri>(),
        std::mem::size_of::<Ipv4Prefix>(),
        std::mem::size_of::<NextHop>(),
        std::mem::size_of::<PathAttributes>()
    );
    let (per, secs) = learn(cli.routes, cli.per_route, !cli.no_flush)?;
    println!(
        "{} routes, {}{}: {per:.0} B/route RSS growth, in {secs:.2} s",
        cli.routes,
        if cli.per_route { "a label per route" } else { "one label" },
        if cli.no_flush { ", learned only (no flush)" } else { ", learned and compiled" }
    );
    Ok(())
}
