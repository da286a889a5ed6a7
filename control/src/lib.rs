//! carrier's control process: a BGP speaker (sans-IO sessions, tokio only for sockets and
//! timers), the RIB with VRF import/export by route target and label allocation, and the
//! compile step that programs the dataplane through its table socket with
//! [`carrier_dataplane::tables::TableCommand`]s.
pub mod bgp;
pub mod config;
pub mod labels;
pub mod fib;
pub mod rib;
pub mod reconfig;
pub mod daemon;
pub mod sys;
pub mod state;
pub mod api;
pub mod metrics;
