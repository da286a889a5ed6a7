#!/usr/bin/env bash
# ns per run of every BPF program during a flood of each carrier-e2e path given, from the
# kernel's BPF run-time statistics (kernel.bpf_stats_enabled, run_time_ns / run_cnt in the
# programs' fdinfo), sampled 5 s apart in the middle of a 16 s run. The figures include the
# statistics' own clock reads (about 40 ns here: the sink, which only counts, shows ~49 ns).
# As root, after `cargo xtask build --release && cargo build --release -p carrier-bench`:
#     bench/bpf-stats.sh express-vrf-forward express-mpls-push express-mpls-pop xdp-min
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${TMPDIR:-/tmp}/bpf-stats.$$"
mkdir -p "$out"
e2e=
# On any exit: the statistics off, and a run still going stopped (it removes its namespaces).
trap 'sysctl -qw kernel.bpf_stats_enabled=0; [ -n "$e2e" ] && kill -INT "$e2e" 2>/dev/null && wait "$e2e"; rm -rf "$out"' EXIT
sysctl -qw kernel.bpf_stats_enabled=1
snap() {
    for pid in $(pgrep -f "carrier-dataplane|carrier-e2e"); do
        for f in /proc/"$pid"/fdinfo/*; do
            if grep -q prog_tag "$f" 2>/dev/null; then
                awk '/prog_tag|run_time_ns|run_cnt/ {printf "%s ", $2} END {print ""}' "$f"
            fi
        done
    done | sort -u
}
for path in "$@"; do
    target/release/carrier-e2e --secs 16 --runs 1 --warmup 1 --flows 1024 --gen-cpu 0 --dut-cpu 1 \
        --frame-size 60 --load max --generator live --paths "$path" > "$out/e2e.log" 2>&1 &
    e2e=$!
    sleep 8
    snap > "$out/a"
    sleep 5
    snap > "$out/b"
    echo "== $path (program tag: ns per run over runs)"
    join <(sort -u "$out/a") <(sort -u "$out/b") | awk '{dc = $5 - $3; if (dc > 0) printf "  %s: %.1f ns over %d runs\n", $1, ($4 - $2) / dc, dc}'
    wait "$e2e"
    e2e=
done
