//! Embeds carrier's XDP object in the dataplane, when there is one.
//!
//! `cargo xtask build` compiles `ebpf/` (nightly + bpf-linker) and sets
//! `CARRIER_EBPF_OBJECT` to the object's path. When the variable names an existing
//! file it is copied to `$OUT_DIR/carrier-xdp.o` and the crate is compiled with
//! `--cfg carrier_ebpf`, under which `src/xdp.rs` includes it. Without it the crate
//! still builds — a plain `cargo test` needs no eBPF toolchain — and
//! `XdpDataplane::load` reports that the object is missing. A relative path is taken
//! from this crate's directory.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(carrier_ebpf)");
    println!("cargo::rerun-if-env-changed=CARRIER_EBPF_OBJECT");

    let Some(object) = env::var_os("CARRIER_EBPF_OBJECT").filter(|path| !path.is_empty()) else {
        return;
    };
    let object = PathBuf::from(object);
    println!("cargo::rerun-if-changed={}", object.display());
    if !object.is_file() {
        println!(
            "cargo::warning=CARRIER_EBPF_OBJECT={} is not a file: building without the XDP program",
            object.display()
        );
        return;
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let embedded = out_dir.join("carrier-xdp.o");
    if let Err(error) = fs::copy(&object, &embedded) {
        panic!(
            "copying {} to {}: {error}",
            object.display(),
            embedded.display()
        );
    }
    println!("cargo::rustc-cfg=carrier_ebpf");
}
