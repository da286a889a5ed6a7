//! The whole pipeline on the example PE: first byte picks the ingress port, the rest is the
//! frame. Seed the corpus from tests/fixtures/*/*.pcap (see fuzz/README.md).
#![no_main]

use std::sync::OnceLock;

use carrier_common::PortId;
use carrier_dataplane::config::Config;
use carrier_dataplane::pipeline::{process, Batch, VecFrame, VecPool, Worker};
use carrier_dataplane::tables::Tables;
use libfuzzer_sys::fuzz_target;

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| Config::parse(include_str!("../../examples/pe1.toml")).unwrap().tables().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Some((&port, frame)) = data.split_first() else { return };
    let mut batch = Batch::default();
    batch.push(VecFrame::new(frame), PortId(u16::from(port % 8)));
    let mut worker = Worker::default();
    process(tables(), &mut batch, &mut worker, &mut VecPool);
});
