//! `cargo xtask <command>`: carrier's build, test and run tasks.
//!
//! - `setup`: installs what the build and the test suite need on a Debian machine
//!   (apt packages, a nightly toolchain with `rust-src`, `bpf-linker` built against
//!   the nightly's LLVM). Idempotent, and quick when everything is there.
//! - `build [--release]`: builds the XDP program (`ebpf/`, nightly + build-std) to
//!   `target/bpf/carrier-xdp.o`, then the workspace with `CARRIER_EBPF_OBJECT` set so
//!   the dataplane embeds it.
//! - `test`: setup, the unprivileged suite (`cargo test --workspace`), build, then
//!   the privileged tests (`tests/tests/privileged_*.rs`, network namespaces, root).
//! - `fuzz [--seconds N] [TARGET...]`: builds the cargo-fuzz targets (`fuzz/`) and runs each
//!   for N seconds (default 60) from its seeds (`fuzz/seeds/`) and the corpus it grew before
//!   (`target/fuzz/corpus/`); crashes land in `target/fuzz/artifacts/`. `test` runs every
//!   target for [`TEST_FUZZ_SECONDS`].
//! - `run [--config FILE] [--keep | --check]`: release build, then runs `carrier-dataplane run`
//!   on the config, or, without one, the pseudo-WAN demo (`carrier-demo`, `tests/src/demo.rs`);
//!   `--check` asserts every claim of the demo and exits non-zero if one fails. `test` ends
//!   with `run --check`.
//!
//! Every command it runs is printed first, prefixed with `+`.

mod cmd;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::cmd::{print_command, run, run_counting_tests, TestCounts};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "carrier's build, test and run tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install the toolchain and packages the build and tests need (Debian, as root).
    Setup,
    /// Build the XDP object and the workspace with the object embedded.
    Build {
        /// Build the workspace in release mode.
        #[arg(long)]
        release: bool,
    },
    /// Setup, unprivileged tests, build, then the privileged tests (as root).
    Test,
    /// Run the fuzz targets, each for a bounded time.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// The targets (default: all of `cargo fuzz list`).
        targets: Vec<String>,
    },
    /// Release build, then run the dataplane.
    Run {
        /// The dataplane configuration file; without one, the built-in demo network runs.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Demo only: leave the network up until Ctrl-C.
        #[arg(long, conflicts_with = "check")]
        keep: bool,
        /// Demo only: assert every claim, tear down, exit non-zero if one failed.
        #[arg(long)]
        check: bool,
    },
}

/// Where things are.
#[derive(Debug)]
pub struct Paths {
    /// The workspace root.
    pub root: PathBuf,
    /// The workspace target directory.
    pub target: PathBuf,
}

impl Paths {
    fn new() -> Result<Paths> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask lives in a workspace")?
            .to_path_buf();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.join("target"),
        };
        Ok(Paths { root, target })
    }

    /// The eBPF object `build` produces and the dataplane embeds.
    pub fn bpf_object(&self) -> PathBuf {
        self.target.join("bpf").join("carrier-xdp.o")
    }

    /// A scratch directory for installs (TMPDIR), created on demand.
    pub fn tmp(&self) -> Result<PathBuf> {
        let tmp = self.target.join("tmp");
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        Ok(tmp)
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let paths = Paths::new()?;
    match cli.task {
        Task::Setup => {
            setup::setup(&paths)?;
        }
        Task::Build { release } => {
            let toolchain = setup::setup(&paths)?;
            build(&paths, &toolchain, release)?;
        }
        Task::Test => test(&paths)?,
        Task::Fuzz { seconds, targets } => {
            let toolchain = setup::setup(&paths)?;
            if !fuzz(&paths, &toolchain, seconds, &targets)? {
                bail!("a fuzz target failed (crash inputs in {})", paths.target.join("fuzz/artifacts").display());
            }
        }
        Task::Run { config, keep, check } => {
            let toolchain = setup::setup(&paths)?;
            build(&paths, &toolchain, true)?;
            let mut command = run_command(&paths, config, keep, check);
            print_command(&command);
            let error = std::os::unix::process::CommandExt::exec(&mut command);
            return Err(error).with_context(|| format!("executing {:?}", command.get_program()));
        }
    }
    Ok(())
}

/// Builds the eBPF object, copies it to `target/bpf/carrier-xdp.o`, then builds the
/// workspace with `CARRIER_EBPF_OBJECT` pointing at it.
fn build(paths: &Paths, toolchain: &setup::Toolchain, release: bool) -> Result<()> {
    let object = build_ebpf(paths, toolchain)?;
    let mut cargo = cargo_command(paths);
    cargo.args(["build", "--workspace"]);
    if release {
        cargo.arg("--release");
    }
    cargo.env("CARRIER_EBPF_OBJECT", &object);
    run(&mut cargo)?;
    println!(
        "xtask: built the workspace with {} embedded",
        object.display()
    );
    Ok(())
}

/// `cargo +nightly build -Z build-std=core --target bpfel-unknown-none --release` in
/// `ebpf/`; returns the path of the copied object.
fn build_ebpf(paths: &Paths, toolchain: &setup::Toolchain) -> Result<PathBuf> {
    let ebpf_target = paths.target.join("ebpf");
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(paths.root.join("ebpf"))
        .arg(format!("+{}", toolchain.name))
        .args([
            "build",
            "-Z",
            "build-std=core",
            "--target",
            "bpfel-unknown-none",
            "--release",
        ])
        .env("CARGO_TARGET_DIR", &ebpf_target)
        .env("PATH", setup::path_with_cargo_bin());
    // What the outer `cargo run` exported must not leak into the nightly build.
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
    ] {
        cargo.env_remove(var);
    }
    run(&mut cargo)?;

    let built = ebpf_target
        .join("bpfel-unknown-none")
        .join("release")
        .join("carrier-xdp");
    let object = paths.bpf_object();
    std::fs::create_dir_all(object.parent().context("object has a parent")?)?;
    let bytes = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    // Rewriting an unchanged object would make cargo rebuild the dataplane.
    if std::fs::read(&object).ok().as_deref() != Some(bytes.as_slice()) {
        std::fs::write(&object, &bytes).with_context(|| format!("writing {}", object.display()))?;
    }
    println!("xtask: eBPF object at {}", object.display());
    Ok(object)
}

/// A `cargo` for the workspace, run from its root.
fn cargo_command(paths: &Paths) -> Command {
    let mut cargo = Command::new("cargo");
    cargo.current_dir(&paths.root);
    cargo
}

/// The full suite: setup, unprivileged tests, build, privileged tests.
fn test(paths: &Paths) -> Result<()> {
    if !setup::is_root()? {
        bail!(
            "`cargo xtask test` needs root: it installs packages and its privileged tests \
             create network namespaces and attach XDP programs; run it as root"
        );
    }
    let toolchain = setup::setup(paths)?;
    let mut counts = TestCounts::default();

    println!("xtask: unprivileged tests");
    let mut unprivileged = cargo_command(paths);
    unprivileged
        .args(["test", "--workspace", "--no-fail-fast"])
        .env_remove("CARRIER_EBPF_OBJECT");
    let unprivileged_ok = run_counting_tests(&mut unprivileged, &mut counts)?;
    // A failure there does not stop the run: one CI run should report everything.

    let mut failures = Vec::new();
    if !unprivileged_ok {
        failures.push("the unprivileged tests");
    }
    match build(paths, &toolchain, false) {
        Ok(()) => {
            println!("xtask: privileged tests");
            let mut privileged = cargo_command(paths);
            privileged
                .args([
                    "test",
                    "-p",
                    "carrier-tests",
                    "--test",
                    "privileged_*",
                    "--",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env("CARRIER_EBPF_OBJECT", paths.bpf_object());
            if !run_counting_tests(&mut privileged, &mut counts)? {
                failures.push("the privileged tests");
            }
            // The end-to-end L3VPN tests again with the XDP express tier off: the AF_XDP path
            // alone gives the same results.
            println!("xtask: privileged L3VPN tests with the express tier off (CARRIER_EXPRESS=0)");
            let mut express = cargo_command(paths);
            express
                .args(["test", "-p", "carrier-tests", "--test", "privileged_l3vpn", "--", "--ignored", "--test-threads=1"])
                .env("CARRIER_EBPF_OBJECT", paths.bpf_object())
                .env("CARRIER_EXPRESS", "0");
            if !run_counting_tests(&mut express, &mut counts)? {
                failures.push("the L3VPN tests with the express tier off");
            }
        }
        Err(error) => {
            println!("xtask: build failed, privileged tests not run: {error:#}");
            failures.push("the build");
        }
    }

    // Every fuzz target, briefly (longer runs: `cargo xtask fuzz`, tests/FUZZING.md).
    println!("xtask: fuzz targets, {TEST_FUZZ_SECONDS} s each");
    match fuzz(paths, &toolchain, TEST_FUZZ_SECONDS, &[]) {
        Ok(true) => counts.passed += 1,
        Ok(false) => {
            counts.failed += 1;
            failures.push("a fuzz target");
        }
        Err(error) => {
            println!("xtask: fuzzing did not run: {error:#}");
            failures.push("the fuzz build");
        }
    }

    // The README's main command, as a test: `cargo xtask run --check`.
    println!("xtask: the demo (cargo xtask run --check)");
    let demo_ok = build(paths, &toolchain, true).is_ok() && {
        let mut demo = run_command(paths, None, false, true);
        print_command(&demo);
        demo.status().is_ok_and(|s| s.success())
    };
    if demo_ok {
        counts.passed += 1;
        println!("xtask: demo check passed");
    } else {
        counts.failed += 1;
        failures.push("the demo (cargo xtask run --check)");
    }

    // A failed step that printed no failing test (a compile error) still counts once.
    let failed = counts.failed.max(failures.len() as u64);
    println!("xtask: {} passed, {} failed", counts.passed, failed);
    if !failures.is_empty() {
        bail!("failed: {}", failures.join(", "));
    }
    Ok(())
}

/// Seconds each fuzz target runs in `cargo xtask test`.
const TEST_FUZZ_SECONDS: u32 = 20;

/// Builds the fuzz targets and runs each of `targets` (all when empty) for `seconds`; false
/// when one found a crash.
fn fuzz(paths: &Paths, toolchain: &setup::Toolchain, seconds: u32, targets: &[String]) -> Result<bool> {
    let dir = paths.root.join("fuzz");
    let cargo_fuzz = || {
        let mut c = Command::new("cargo");
        c.current_dir(&dir).arg(format!("+{}", toolchain.name)).arg("fuzz").env("PATH", setup::path_with_cargo_bin()).env_remove("RUSTUP_TOOLCHAIN").env_remove("CARGO_TARGET_DIR");
        c
    };
    run(cargo_fuzz().arg("build"))?;
    let targets: Vec<String> = if targets.is_empty() {
        let list = cmd::probe_stdout(cargo_fuzz().arg("list")).context("cargo fuzz list")?;
        list.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
    } else {
        targets.to_vec()
    };
    let mut ok = true;
    for target in &targets {
        let corpus = paths.target.join("fuzz/corpus").join(target);
        let artifacts = paths.target.join("fuzz/artifacts").join(target);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        let mut command = cargo_fuzz();
        command.args(["run", target]).arg(&corpus).arg(dir.join("seeds").join(target)).arg("--").arg(format!("-max_total_time={seconds}")).arg(format!("-artifact_prefix={}/", artifacts.display())).arg("-print_final_stats=1");
        if run(&mut command).is_err() {
            println!("xtask: fuzz target {target} failed: crash inputs in {}", artifacts.display());
            ok = false;
        }
    }
    Ok(ok)
}

/// The release binary `run` executes: the dataplane on `config`, or the demo.
fn run_command(paths: &Paths, config: Option<PathBuf>, keep: bool, check: bool) -> Command {
    let release = paths.target.join("release");
    match config {
        Some(config) => {
            let mut dataplane = Command::new(release.join("carrier-dataplane"));
            dataplane.arg("run").arg("--config").arg(config);
            dataplane
        }
        None => {
            // The demo finds carrier-dataplane, carrier-control and carrierctl next to itself.
            let mut demo = Command::new(release.join("carrier-demo"));
            if keep {
                demo.arg("--keep");
            }
            if check {
                demo.arg("--check");
            }
            demo
        }
    }
}
