//! carrier's dataplane: wire formats, forwarding tables and the packet pipeline, as a pure
//! library that runs the same in `cargo test` and in the AF_XDP workers.
pub mod config;
pub mod ctl;
pub mod express;
pub mod host;
pub mod io;
pub mod pipeline;
pub mod replay;
pub mod tables;
pub mod wire;
pub mod xdp;
