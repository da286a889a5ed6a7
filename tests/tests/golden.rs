//! Golden pipeline cases, run without root.
//!
//! Each case is a directory `tests/fixtures/<case>/` holding:
//! - `NN-<port>.pcap`: input frames, written by scapy (`tests/gen/gen_cases.py`), fed in
//!   lexical order, each file on the port named after the dash. All steps of a case share
//!   one [`Replayer`], so what the pipeline learns (neighbours, MACs) carries over.
//! - `config.toml` (optional): the PE configuration; `examples/pe1.toml` when absent.
//! - `expected/`: the outputs the replay wrote last time they were accepted —
//!   `<port>.pcap`, `replies.pcap`, `to-host.pcap`, `counters.json` — compared byte for byte.
//!
//! After the comparison, `tests/gen/check_case.py <case> <outdir>` decodes the outputs with
//! scapy and checks every field that matters for the case against the RFCs, independently of
//! our own encoders and decoders. A case passes only when both agree.
//!
//! Accept a change of output on purpose with `CARRIER_UPDATE_GOLDEN=1 cargo test -p
//! carrier-tests --test golden`: `expected/` is rewritten and the scapy check still runs.
//! The Python interpreter is `/usr/bin/python3` (Debian's, with `python3-scapy`), or the one
//! `CARRIER_PYTHON` names; without scapy the tests fail — `cargo xtask setup` installs it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use carrier_dataplane::config::Config;
use carrier_dataplane::replay::{read_pcap, Replayer};

/// Set to `1` to rewrite each case's `expected/` from the current output.
const UPDATE_ENV: &str = "CARRIER_UPDATE_GOLDEN";
/// Overrides the Python interpreter that runs the scapy checks.
const PYTHON_ENV: &str = "CARRIER_PYTHON";
/// Debian's interpreter, the one `python3-scapy` installs into.
const DEFAULT_PYTHON: &str = "/usr/bin/python3";

/// `tests/` (this crate).
fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where a case's outputs are written: `target/golden/<case>`.
fn output_dir(case: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("golden").join(case)
}

fn python() -> String {
    std::env::var(PYTHON_ENV).unwrap_or_else(|_| DEFAULT_PYTHON.to_string())
}

/// Fails (never skips) when the interpreter cannot import scapy: CI installs it, and a golden
/// case checked only against its own past output proves little.
fn require_scapy() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let py = python();
        let out = Command::new(&py)
            .args(["-c", "import scapy, scapy.all; print(scapy.__version__)"])
            .output()
            .map_err(|e| format!("cannot run {py}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{py} cannot import scapy: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    });
    if let Err(e) = result {
        panic!(
            "the golden tests check their outputs with scapy, and {e}.\n\
             Run `cargo xtask setup` (it installs Debian's python3-scapy), or set {PYTHON_ENV} \
             to a Python interpreter that has scapy."
        );
    }
}

/// The input steps of a case: `(path, port name)`, in lexical order of the file names.
fn input_steps(dir: &Path) -> Vec<(PathBuf, String)> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut steps: Vec<(PathBuf, String)> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .map(|p| {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let port = match stem.split_once('-') {
                Some((nn, port)) if !nn.is_empty() && nn.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() => {
                    port.to_string()
                }
                _ => panic!("{}: input pcaps are named NN-<port>.pcap", p.display()),
            };
            (p, port)
        })
        .collect();
    steps.sort();
    steps
}

/// File names in `dir` (empty when it does not exist).
fn file_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return vec![];
    };
    let mut names: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n    ")
}

/// Why two output files differ, in words a reader can act on.
fn describe_difference(name: &str, got: &Path, want: &Path) -> String {
    if name.ends_with(".pcap") {
        let (Ok(g), Ok(w)) = (read_pcap(got), read_pcap(want)) else {
            return format!("{name}: the files differ (and one is not a readable pcap)");
        };
        if g.len() != w.len() {
            return format!("{name}: {} frames, expected {}", g.len(), w.len());
        }
        let i = g.iter().zip(&w).position(|(a, b)| a != b).unwrap_or(0);
        return format!(
            "{name}: frame {} of {} differs\n  got:\n    {}\n  expected:\n    {}",
            i + 1,
            g.len(),
            hex(&g[i]),
            hex(&w[i])
        );
    }
    format!(
        "{name} differs\n--- got ---\n{}\n--- expected ---\n{}",
        fs::read_to_string(got).unwrap_or_default(),
        fs::read_to_string(want).unwrap_or_default()
    )
}

/// Byte-for-byte comparison of the output directory with `expected/`; `Err` describes
/// every difference.
fn compare(out: &Path, expected: &Path) -> Result<(), String> {
    if !expected.is_dir() {
        return Err(format!("{} does not exist", expected.display()));
    }
    let (got, want) = (file_names(out), file_names(expected));
    let mut problems = vec![];
    for name in want.iter().filter(|n| !got.contains(n)) {
        problems.push(format!("{name}: expected but not written"));
    }
    for name in got.iter().filter(|n| !want.contains(n)) {
        problems.push(format!("{name}: written but not expected"));
    }
    for name in got.iter().filter(|n| want.contains(n)) {
        let (g, w) = (out.join(name), expected.join(name));
        if fs::read(&g).ok() != fs::read(&w).ok() {
            problems.push(describe_difference(name, &g, &w));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Replace `expected/` by the current outputs.
fn update(out: &Path, expected: &Path) {
    if expected.exists() {
        fs::remove_dir_all(expected).unwrap_or_else(|e| panic!("cannot remove {}: {e}", expected.display()));
    }
    fs::create_dir_all(expected).unwrap_or_else(|e| panic!("cannot create {}: {e}", expected.display()));
    for name in file_names(out) {
        fs::copy(out.join(&name), expected.join(&name)).unwrap_or_else(|e| panic!("cannot copy {name}: {e}"));
    }
}

/// Run the independent scapy check; `Err` carries its output.
fn scapy_check(case: &str, out: &Path) -> Result<(), String> {
    let script = crate_dir().join("gen").join("check_case.py");
    let result = Command::new(python())
        .arg(&script)
        .arg(case)
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", python(), script.display()));
    if result.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} {case} {} failed ({}):\n{}{}",
        script.display(),
        out.display(),
        result.status,
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    ))
}

fn run_case(case: &str) {
    require_scapy();
    let dir = crate_dir().join("fixtures").join(case);
    let own_config = dir.join("config.toml");
    let config_path = if own_config.exists() { own_config } else { dir.join("../../../examples/pe1.toml") };
    let tables = Config::load(&config_path)
        .and_then(|c| c.tables())
        .unwrap_or_else(|e| panic!("{}: {e}", config_path.display()));

    let steps = input_steps(&dir);
    assert!(!steps.is_empty(), "{}: no NN-<port>.pcap inputs (run tests/gen/gen_cases.py)", dir.display());
    let mut replayer = Replayer::new(&tables);
    for (path, port) in &steps {
        let port = tables
            .port_by_name(port)
            .unwrap_or_else(|| panic!("{}: no port {port:?} in {}", path.display(), config_path.display()));
        let frames = read_pcap(path).unwrap_or_else(|e| panic!("{e:#}"));
        replayer.feed(frames, port.id);
    }

    let out = output_dir(case);
    if out.exists() {
        fs::remove_dir_all(&out).unwrap_or_else(|e| panic!("cannot remove {}: {e}", out.display()));
    }
    replayer.write_outputs(&out).unwrap_or_else(|e| panic!("cannot write {}: {e:#}", out.display()));

    let expected = dir.join("expected");
    let golden = if std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1") {
        update(&out, &expected);
        Ok(())
    } else {
        compare(&out, &expected).map_err(|e| {
            format!(
                "outputs in {} differ from {}:\n{e}\n(if the change is intended, rerun with {UPDATE_ENV}=1)",
                out.display(),
                expected.display()
            )
        })
    };
    let checked = scapy_check(case, &out);
    let failures: Vec<String> = [golden, checked].into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "golden case {case}:\n{}", failures.join("\n\n"));
}

macro_rules! golden_cases {
    ($($name:ident => $case:literal,)+) => {
        $(
            #[test]
            fn $name() {
                run_case($case);
            }
        )+

        /// Every fixture directory has its test, and every test its directory.
        #[test]
        fn every_fixture_is_a_case() {
            let cases: Vec<&str> = vec![$($case),+];
            let dirs = file_names(&crate_dir().join("fixtures"));
            assert_eq!(dirs, { let mut c = cases.clone(); c.sort(); c }, "tests/fixtures/ and the cases in golden.rs differ");
        }
    };
}

golden_cases! {
    vrf_forward => "vrf-forward",
    local_ce_to_ce => "local-ce-to-ce",
    mpls_push => "mpls-push",
    mpls_pop => "mpls-pop",
    mpls_pipe => "mpls-pipe",
    mpls_reserved => "mpls-reserved",
    vrf_isolation => "vrf-isolation",
    vxlan => "vxlan",
    proxy_arp => "proxy-arp",
    icmp_echo => "icmp-echo",
    ecmp => "ecmp",
    malformed => "malformed",
    counters => "counters",
    mtu => "mtu",
    vlan_ports => "vlan-ports",
}
