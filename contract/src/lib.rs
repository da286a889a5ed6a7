//! The contract between carrier's processes: the table commands the control process sends
//! the dataplane (and the dataplane's config compiles to), the table socket's requests,
//! responses and framing with its client, and the counters it reports. `carrier-control` and
//! `carrier-dataplane` both depend on this crate; `carrier_dataplane::tables`, `::ctl`,
//! `::pipeline` and `::wire` re-export what is here under their old paths.

pub mod addr;
pub mod command;
pub mod counters;
pub mod socket;

pub use addr::{InterfaceAddr, Ipv4Prefix, MacAddr, MacParseError, PrefixParseError};
pub use command::*;
pub use counters::{CountersView, PacketBytes, PortView, VrfCounters, XdpView};
