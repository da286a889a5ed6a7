//! The dataplane's counters as the table socket carries them: by port, VRF, label, event and
//! XDP port, with names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketBytes {
    /// Packets.
    pub packets: u64,
    /// Bytes (the whole frame).
    pub bytes: u64,
}

impl PacketBytes {
    /// Count one packet of `len` bytes.
    #[inline]
    pub fn add(&mut self, len: usize) {
        self.packets += 1;
        self.bytes += len as u64;
    }
}

/// One VRF's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrfCounters {
    /// Packets looked up in the VRF.
    pub lookups: PacketBytes,
    /// Packets dropped after entering the VRF.
    pub drops: u64,
}

/// One port's counters by name (see [`CountersView`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    /// Frames received.
    pub rx: PacketBytes,
    /// Frames sent.
    pub tx: PacketBytes,
    /// Frames handed to the host stack.
    pub to_host: u64,
    /// Frames the host stack sent (left out of the JSON when zero).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub from_host: u64,
    /// Drops by reason name, nonzero only.
    pub drops: BTreeMap<String, u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The XDP program's counters of one port, and how it is attached there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpView {
    /// `native` (driver) or `skb` (generic) mode; empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// Frames redirected to the AF_XDP socket.
    pub redirected: u64,
    /// Frames passed to the kernel.
    pub passed: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Frames the express tier forwarded itself (they are in the port, VRF and label
    /// counters too).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub express_forwarded: u64,
    /// Frames the express tier left to the AF_XDP path, by reason (nonzero only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub express_punts: BTreeMap<String, u64>,
    /// The express tier's headroom check on the port's first frame: `ok` (room for its
    /// largest push) or `short` (pushes and VXLAN of frames received here are punted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub express_headroom: Option<String>,
}

/// A label-keyed map from JSON, whose keys are strings. (serde_json turns string keys into
/// integers itself, but not inside an internally tagged enum such as the table socket's
/// `Response`, which buffers the map first.)
fn label_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<u32, PacketBytes>, D::Error> {
    let m = BTreeMap::<String, PacketBytes>::deserialize(d)?;
    m.into_iter().map(|(k, v)| k.parse().map(|l| (l, v)).map_err(|_| serde::de::Error::custom(format!("label {k:?} is not a number")))).collect()
}

/// The counters summed over workers, with names: what `ctl counters` prints and the control
/// process reads (typed on both sides, one JSON shape).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersView {
    /// By port name.
    pub ports: BTreeMap<String, PortView>,
    /// By VRF name.
    pub vrfs: BTreeMap<String, VrfCounters>,
    /// By incoming top label.
    #[serde(deserialize_with = "label_map")]
    pub labels_in: BTreeMap<u32, PacketBytes>,
    /// By pushed label.
    #[serde(deserialize_with = "label_map")]
    pub labels_out: BTreeMap<u32, PacketBytes>,
    /// Events by name, nonzero only.
    pub events: BTreeMap<String, u64>,
    /// The XDP program's counters by port name (absent without the XDP program).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xdp: BTreeMap<String, XdpView>,
}
