//! `cargo xtask setup`: make a fresh Debian bookworm machine (as root) able to build
//! and test carrier, and do nothing on one that already is.
//!
//! 1. A nightly toolchain: `nightly` when it runs, else the pinned [`PINNED_NIGHTLY`]
//!    (installed when missing). `CARRIER_NIGHTLY=<toolchain>` overrides the choice.
//!    Its `rustc -vV` "LLVM version" decides N below.
//! 2. apt packages: `llvm-N-dev` (for bpf-linker; also brings `llvm-mc`, which the
//!    privileged tests use) and the test tools (scapy, tshark, tcpdump, iproute2,
//!    ping, traceroute, ethtool; the BGP peers gobgpd, ExaBGP, FRR and BIRD 2).
//!    `apt-get update` runs only when one is missing.
//! 3. `rust-src` for the nightly (`-Z build-std=core`).
//! 4. `cargo-fuzz` (the fuzz targets in `fuzz/`), and `bpf-linker` built against LLVM N; rebuilt when the installed one links a
//!    different LLVM (a mismatch fails the eBPF link with "Invalid record").

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd::{probe, probe_stdout, run};
use crate::Paths;

/// The nightly used when `nightly` is missing or broken: rustc 1.97 with LLVM 22,
/// which aya-ebpf 0.2.1 builds with.
pub const PINNED_NIGHTLY: &str = "nightly-2026-05-20";

/// The cargo-fuzz release installed (the fuzz targets' runner).
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The bpf-linker release installed (it has `llvm-21` and `llvm-22` features).
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// The apt packages the tests use, besides `llvm-N-dev`.
const TEST_PACKAGES: &[&str] = &[
    "python3-scapy",
    "tshark",
    "tcpdump",
    "iproute2",
    "iputils-ping",
    "traceroute",
    "ethtool",
    // nsenter: the tests start the dataplane in its namespace with it (essential, listed to
    // say so).
    "util-linux",
    // BGP peers for the control process's interop tests.
    "gobgpd",
    "exabgp",
    "frr",
    // BIRD 2: the tests run their own `bird` in a namespace (config, control socket and pid
    // file in a scratch dir); the system `bird` service is not needed.
    "bird2",
    // The metrics tests: `promtool check metrics`, and a real server scraping carrier.
    "prometheus",
    // The demo queries Prometheus and prints curl commands to try.
    "curl",
    // A virtualenv for schemathesis (PyPI), should `python3` be Debian's.
    "python3-venv",
    // carrier-pathcost --instructions: instructions per packet counted by callgrind.
    "valgrind",
];

/// The nightly toolchain the eBPF crate is built with.
#[derive(Debug)]
pub struct Toolchain {
    /// The rustup toolchain name, for `cargo +NAME`.
    pub name: String,
    /// The major version of the LLVM it was built with.
    pub llvm_major: u32,
}

/// Installs whatever is missing; returns the nightly toolchain to build eBPF with.
pub fn setup(paths: &Paths) -> Result<Toolchain> {
    println!("xtask setup: checking toolchains and packages");
    let toolchain = nightly()?;
    println!(
        "xtask setup: nightly toolchain `{}` (LLVM {})",
        toolchain.name, toolchain.llvm_major
    );
    apt_packages(paths, toolchain.llvm_major)?;
    rust_src(&toolchain)?;
    bpf_linker(paths, toolchain.llvm_major)?;
    cargo_fuzz(paths)?;
    schemathesis(paths)?;
    println!("xtask setup: all set");
    Ok(toolchain)
}

/// The schemathesis release the API test runs (PyPI).
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// Where schemathesis is installed: a virtualenv of its own under the target directory.
pub fn schemathesis_venv(paths: &Paths) -> std::path::PathBuf {
    paths.target.join("tools/schemathesis")
}

/// schemathesis in a virtualenv (PyPI), for the API test; reinstalled when the version differs.
fn schemathesis(paths: &Paths) -> Result<()> {
    let venv = schemathesis_venv(paths);
    let st = venv.join("bin/st");
    let want = format!("version {SCHEMATHESIS_VERSION}");
    if probe_stdout(Command::new(&st).arg("--version")).is_some_and(|v| v.contains(&want)) {
        println!("xtask setup: schemathesis {SCHEMATHESIS_VERSION} present");
        return Ok(());
    }
    println!("xtask setup: installing schemathesis {SCHEMATHESIS_VERSION} into {}", venv.display());
    run(Command::new("python3").arg("-m").arg("venv").arg("--clear").arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", &format!("schemathesis=={SCHEMATHESIS_VERSION}")]))
        .context("pip install schemathesis")?;
    Ok(())
}

/// True when running as root.
pub fn is_root() -> Result<bool> {
    let uid = probe_stdout(Command::new("id").arg("-u")).context("running `id -u`")?;
    Ok(uid.trim() == "0")
}

/// A `rustup` that never installs a toolchain on its own.
fn rustup() -> Command {
    let mut rustup = Command::new("rustup");
    rustup
        .env("RUSTUP_AUTO_INSTALL", "0")
        .env_remove("RUSTUP_TOOLCHAIN");
    rustup
}

/// The LLVM major of toolchain `name`'s rustc, or `None` when it does not run.
fn rustc_llvm_major(name: &str) -> Option<u32> {
    let version = probe_stdout(rustup().args(["run", name, "rustc", "-vV"]))?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .and_then(|version| version.split('.').next())
        .and_then(|major| major.trim().parse().ok())
}

fn nightly() -> Result<Toolchain> {
    if probe(rustup().arg("--version")).is_none() {
        bail!("rustup is not installed: carrier builds its eBPF program with a rustup nightly toolchain");
    }
    let wanted: Vec<String> = match std::env::var("CARRIER_NIGHTLY") {
        Ok(name) if !name.is_empty() => vec![name],
        _ => vec!["nightly".to_owned(), PINNED_NIGHTLY.to_owned()],
    };
    for name in &wanted {
        if let Some(llvm_major) = rustc_llvm_major(name) {
            return Ok(Toolchain {
                name: name.clone(),
                llvm_major,
            });
        }
    }
    let name = wanted.last().context("a toolchain to try")?.clone();
    println!("xtask setup: no working nightly toolchain; installing `{name}`");
    run(rustup().args([
        "toolchain",
        "install",
        &name,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))?;
    let llvm_major = rustc_llvm_major(&name).with_context(|| {
        format!("`rustup run {name} rustc -vV` still fails after installing it")
    })?;
    Ok(Toolchain { name, llvm_major })
}

fn apt_packages(paths: &Paths, llvm_major: u32) -> Result<()> {
    let llvm_dev = format!("llvm-{llvm_major}-dev");
    let wanted: Vec<&str> = std::iter::once(llvm_dev.as_str())
        .chain(TEST_PACKAGES.iter().copied())
        .collect();
    let installed = installed_packages(&wanted)?;
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|package| !installed.contains(*package))
        .collect();
    if missing.is_empty() {
        println!("xtask setup: apt packages present ({})", wanted.join(" "));
        return Ok(());
    }
    if !is_root()? {
        bail!(
            "missing apt packages: {}; run `cargo xtask setup` as root, or install them",
            missing.join(" ")
        );
    }
    println!(
        "xtask setup: installing apt packages: {}",
        missing.join(" ")
    );
    let tmp = paths.tmp()?;
    // tshark asks whether non-root users may capture; answer before it asks.
    let mut debconf = Command::new("sh");
    debconf.args([
        "-c",
        "echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections",
    ]);
    run(&mut debconf)?;
    let apt = |args: &[&str]| -> Result<()> {
        let mut apt = Command::new("apt-get");
        apt.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("TMPDIR", &tmp);
        run(&mut apt)
    };
    apt(&["update"])?;
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install).with_context(|| {
        format!(
            "installing {}; {llvm_dev} must match the nightly's LLVM {llvm_major}",
            missing.join(" ")
        )
    })
}

/// Which of `packages` dpkg reports as installed.
fn installed_packages(packages: &[&str]) -> Result<BTreeSet<String>> {
    let output = probe(
        Command::new("dpkg-query")
            .args(["-W", "-f", "${Package} ${db:Status-Abbrev}\n"])
            .args(packages),
    )
    .context("running dpkg-query: `cargo xtask setup` supports Debian only")?;
    // dpkg-query exits 1 when some package is unknown; its stdout still lists the rest.
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (package, status) = line.split_once(' ')?;
            status.starts_with("ii").then(|| package.to_owned())
        })
        .collect())
}

fn rust_src(toolchain: &Toolchain) -> Result<()> {
    let sysroot =
        probe_stdout(rustup().args(["run", &toolchain.name, "rustc", "--print", "sysroot"]))
            .context("asking the nightly rustc for its sysroot")?;
    let core = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if core.is_file() {
        println!("xtask setup: rust-src present");
        return Ok(());
    }
    println!("xtask setup: installing rust-src for `{}`", toolchain.name);
    run(rustup().args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        &toolchain.name,
    ]))
}

/// cargo-fuzz, which builds the fuzz targets (`fuzz/`) with libFuzzer and runs them.
fn cargo_fuzz(paths: &Paths) -> Result<()> {
    let version = probe_stdout(Command::new("cargo").args(["fuzz", "--version"]).env("PATH", path_with_cargo_bin()));
    if version.as_deref().is_some_and(|v| v.contains(CARGO_FUZZ_VERSION)) {
        println!("xtask setup: cargo-fuzz {CARGO_FUZZ_VERSION} present");
        return Ok(());
    }
    println!("xtask setup: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    let tmp = paths.tmp()?;
    run(Command::new("cargo")
        .current_dir(&tmp)
        .args(["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--locked", "--force"])
        .env("TMPDIR", &tmp)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR"))
}

fn bpf_linker(paths: &Paths, llvm_major: u32) -> Result<()> {
    let binary = find_in_path("bpf-linker");
    let installed_major = binary.as_deref().and_then(bpf_linker_llvm_major);
    match (&binary, installed_major) {
        (Some(_), Some(major)) if major == llvm_major => {
            println!("xtask setup: bpf-linker present (LLVM {major})");
            return Ok(());
        }
        (Some(path), Some(major)) => println!(
            "xtask setup: {} links LLVM {major}, the nightly has LLVM {llvm_major}: rebuilding",
            path.display()
        ),
        (Some(path), None) => println!(
            "xtask setup: cannot tell which LLVM {} links: rebuilding",
            path.display()
        ),
        (None, _) => println!("xtask setup: installing bpf-linker for LLVM {llvm_major}"),
    }

    let tmp = paths.tmp()?;
    let feature = format!("llvm-{llvm_major}");
    let install = |locked: bool| -> Result<()> {
        let mut cargo = Command::new("cargo");
        cargo
            .current_dir(&tmp)
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--force",
                "--no-default-features",
                "--features",
                &feature,
            ])
            .env("LLVM_PREFIX", format!("/usr/lib/llvm-{llvm_major}"))
            .env("TMPDIR", &tmp)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO_TARGET_DIR");
        if locked {
            cargo.arg("--locked");
        }
        run(&mut cargo)
    };
    if install(true).is_err() {
        println!("xtask setup: `cargo install --locked` failed; retrying without --locked");
        install(false)?;
    }
    find_in_path("bpf-linker")
        .map(drop)
        .context("bpf-linker was installed but is neither on PATH nor in $CARGO_HOME/bin")
}

/// PATH with `$CARGO_HOME/bin` appended, so rustc finds `bpf-linker` there.
pub fn path_with_cargo_bin() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(cargo_home().map(|home| home.join("bin")));
    std::env::join_paths(dirs).unwrap_or(path)
}

/// The LLVM major a bpf-linker binary links: from cargo's install record
/// (`llvm-N` feature), else from the libLLVM it loads.
fn bpf_linker_llvm_major(binary: &Path) -> Option<u32> {
    probe(Command::new(binary).arg("--version")).filter(|output| output.status.success())?;
    let from_record = cargo_home()
        .and_then(|home| std::fs::read_to_string(home.join(".crates2.json")).ok())
        .and_then(|record| {
            let record: serde_json::Value = serde_json::from_str(&record).ok()?;
            let installs = record.get("installs")?.as_object()?;
            let (_, install) = installs
                .iter()
                .find(|(package, _)| package.starts_with("bpf-linker "))?;
            install
                .get("features")?
                .as_array()?
                .iter()
                .filter_map(serde_json::Value::as_str)
                .find_map(|feature| feature.strip_prefix("llvm-")?.parse().ok())
        });
    from_record.or_else(|| {
        let libraries = probe_stdout(Command::new("ldd").arg(binary))?;
        libraries.split_whitespace().find_map(|word| {
            let name = word.rsplit('/').next()?;
            let version = name
                .strip_prefix("libLLVM.so.")
                .or_else(|| name.strip_prefix("libLLVM-"))?;
            version
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
    })
}

fn cargo_home() -> Option<PathBuf> {
    match std::env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => Some(PathBuf::from(home)),
        _ => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")),
    }
}

/// `program` on PATH or in `$CARGO_HOME/bin`.
fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cargo_home().map(|home| home.join("bin")))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
