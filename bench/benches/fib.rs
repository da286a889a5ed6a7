//! The FIB candidates side by side, in one run (issue: compiled forwarding state, benchmark 2):
//! N IPv4 routes spread over V VRFs (one table per VRF, as the dataplane keeps them), for each
//! LPM structure behind `Lpm`: build time, incremental withdraw and re-install rate, random
//! lookups per second on one core, and heap bytes per route (counted by a global allocator).
//!
//!     cargo bench -p carrier-bench --bench fib -- [--routes N] [--vrfs V] [--lookups L]
//!
//! Two route sets: `clustered` (each VRF's prefixes inside 32 /16s, as VPN customer routes
//! are: mostly /24s, some /32s, /25–/30s and /16–/23s) and `random` (prefixes anywhere in the
//! address space: the worst case for a multibit trie's memory).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use carrier_common::NextHopId;
use carrier_dataplane::tables::{Ipv4Prefix, Lpm, Mtrie, TrieFib};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// xorshift64*: deterministic, fast.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The routes: (vrf, prefix, next hop).
fn routes(n: usize, vrfs: usize, clustered: bool, seed: u64) -> Vec<(usize, Ipv4Prefix, NextHopId)> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::with_capacity(n);
    while out.len() < n {
        let vrf = out.len() % vrfs;
        let len = match rng.below(100) {
            0..=69 => 24,
            70..=79 => 32,
            80..=89 => 25 + rng.below(6) as u8,
            _ => 16 + rng.below(8) as u8,
        };
        let addr = if clustered {
            // 32 /16s per VRF, the same ones in every VRF (overlapping customer space).
            let block = rng.below(32) as u32;
            (10 << 24) | ((block * 7 % 256) << 16) | (rng.next() as u32 & 0xffff)
        } else {
            rng.next() as u32
        };
        let Some(prefix) = Ipv4Prefix::new(Ipv4Addr::from(addr), len) else { continue };
        if seen.insert((vrf, prefix)) {
            out.push((vrf, prefix, NextHopId(1 + rng.below(1000) as u32)));
        }
    }
    out
}

/// One candidate's figures.
struct Figures {
    build_s: f64,
    bytes_per_route: f64,
    updates_per_s: f64,
    lookups_per_s: f64,
}

fn measure<T: Lpm + Default>(routes: &[(usize, Ipv4Prefix, NextHopId)], vrfs: usize, lookups: usize) -> Figures {
    let before = LIVE.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut tables: Vec<T> = (0..vrfs).map(|_| T::default()).collect();
    for (vrf, prefix, nh) in routes {
        tables[*vrf].insert(*prefix, *nh);
    }
    let build_s = start.elapsed().as_secs_f64();
    let bytes = LIVE.load(Ordering::Relaxed).saturating_sub(before);

    // Lookups: a random host inside a random installed prefix, in its VRF.
    let mut rng = Rng(7);
    let probes: Vec<(usize, Ipv4Addr)> = (0..1 << 16)
        .map(|_| {
            let (vrf, p, _) = routes[rng.below(routes.len() as u64) as usize];
            let host = if p.prefix_len() == 32 { 0 } else { rng.next() as u32 & (u32::MAX >> p.prefix_len()) };
            (vrf, Ipv4Addr::from(u32::from(p.addr()) | host))
        })
        .collect();
    let start = Instant::now();
    let mut found = 0u64;
    for i in 0..lookups {
        let (vrf, addr) = probes[i & 0xffff];
        if let Some((_, nh)) = tables[vrf].lookup(black_box(addr)) {
            found += u64::from(nh.0);
        }
    }
    black_box(found);
    let lookups_per_s = lookups as f64 / start.elapsed().as_secs_f64();

    // Incremental: withdraw a tenth of the routes, then install them again.
    let churn: Vec<_> = routes.iter().step_by(10).collect();
    let start = Instant::now();
    for (vrf, prefix, _) in &churn {
        tables[*vrf].remove(*prefix);
    }
    for (vrf, prefix, nh) in &churn {
        tables[*vrf].insert(*prefix, *nh);
    }
    let updates_per_s = (2 * churn.len()) as f64 / start.elapsed().as_secs_f64();
    assert_eq!(tables.iter().map(Lpm::len).sum::<usize>(), routes.len(), "routes lost in the churn");
    drop(tables);
    Figures { build_s, bytes_per_route: bytes as f64 / routes.len() as f64, updates_per_s, lookups_per_s }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; anything else of ours is read here.
    let n = arg(&args, "--routes", 1_000_000);
    let vrfs = arg(&args, "--vrfs", 100);
    let lookups = arg(&args, "--lookups", 50_000_000);
    println!("FIB candidates: {n} routes over {vrfs} VRFs, {lookups} lookups each, one core");
    println!();
    println!("| routes | structure | build s | updates/s (withdraw + re-install 10%) | lookups/s | heap B/route |");
    println!("|---|---|---:|---:|---:|---:|");
    for (name, clustered) in [("clustered", true), ("random", false)] {
        let set = routes(n, vrfs, clustered, 0x5eed);
        // Every candidate answers the same on the set: spot-check before measuring.
        let mut check_m = Mtrie::<16>::default();
        let mut check_t = TrieFib::default();
        for (vrf, p, nh) in set.iter().filter(|r| r.0 == 0) {
            let _ = vrf;
            check_m.insert(*p, *nh);
            check_t.insert(*p, *nh);
        }
        let mut rng = Rng(11);
        for _ in 0..100_000 {
            let a = Ipv4Addr::from(rng.next() as u32 & if clustered { 0x0aff_ffff } else { u32::MAX });
            assert_eq!(check_m.lookup(a), check_t.lookup(a), "{a}");
        }
        drop((check_m, check_t));
        for (structure, f) in [("prefix-trie (binary, before)", measure::<TrieFib>(&set, vrfs, lookups)), ("mtrie 16-8-8 (now)", measure::<Mtrie>(&set, vrfs, lookups))] {
            println!(
                "| {name} | {structure} | {:.2} | {:.2}M | {:.1}M | {:.0} |",
                f.build_s,
                f.updates_per_s / 1e6,
                f.lookups_per_s / 1e6,
                f.bytes_per_route
            );
        }
    }
}
