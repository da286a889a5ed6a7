//! carrier's dataplane: wire formats, forwarding tables and the packet pipeline, as a pure
//! library that runs the same in `cargo test` and in the AF_XDP workers. The `io` feature (on
//! by default) adds the XDP loader (`xdp`), the AF_XDP sockets (`io::xsk`), pcap replay and
//! the binary; carrier-control uses the library without it.
pub mod config;
pub mod ctl;
pub mod express;
pub mod host;
pub mod io;
pub mod pipeline;
#[cfg(feature = "io")]
pub mod replay;
pub mod tables;
pub mod wire;
#[cfg(feature = "io")]
pub mod xdp;
