//! Offline runs of the pipeline: feed captured frames in, collect what each port would send.
//! Used by the `replay` and `trace` subcommands and by the golden tests.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::time::Duration;

use carrier_common::PortId;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};

use crate::pipeline::{self, Batch, DropReason, StepTrace, VecFrame, VecPool, Verdict, Worker};
use crate::tables::Tables;

/// Output file name (without `.pcap`) for replies sent back on the ingress port.
pub const REPLIES: &str = "replies";
/// Output file name (without `.pcap`) for frames handed to the host.
pub const TO_HOST: &str = "to-host";

/// Runs frames through the pipeline with one worker whose learned state (neighbours, MACs)
/// carries over from one frame to the next, as on a live port.
#[derive(Debug)]
pub struct Replayer<'t> {
    tables: &'t Tables,
    /// The worker: counters and learned state.
    pub worker: Worker,
    /// Frames sent, by egress port name, [`REPLIES`] or [`TO_HOST`].
    pub out: BTreeMap<String, Vec<Vec<u8>>>,
    /// Dropped frames: (input index, reason).
    pub drops: Vec<(usize, DropReason)>,
    fed: usize,
}

impl<'t> Replayer<'t> {
    /// A replayer over `tables`.
    pub fn new(tables: &'t Tables) -> Self {
        Replayer { tables, worker: Worker::default(), out: BTreeMap::new(), drops: vec![], fed: 0 }
    }

    /// Run `frames`, all received on `ingress`, in batches of 32.
    pub fn feed(&mut self, frames: impl IntoIterator<Item = Vec<u8>>, ingress: PortId) {
        let mut frames = frames.into_iter().peekable();
        while frames.peek().is_some() {
            let mut batch = Batch::default();
            let first = self.fed;
            for f in frames.by_ref().take(32) {
                batch.push(VecFrame::new(&f), ingress);
                self.fed += 1;
            }
            pipeline::process(self.tables, &mut batch, &mut self.worker, &mut VecPool);
            self.collect(batch, first);
        }
    }

    /// Run one frame with a tracer; returns the steps and the verdict.
    pub fn trace(&mut self, frame: &[u8], ingress: PortId) -> (Vec<String>, Verdict) {
        let mut batch = Batch::default();
        batch.push(VecFrame::new(frame), ingress);
        let mut tracer = StepTrace::default();
        pipeline::process_traced(self.tables, &mut batch, &mut self.worker, &mut VecPool, &mut tracer);
        let verdict = batch.packets[0].verdict;
        let first = self.fed;
        self.fed += 1;
        self.collect(batch, first);
        (tracer.steps, verdict)
    }

    fn collect(&mut self, batch: Batch<VecFrame>, first: usize) {
        for (i, p) in batch.packets.into_iter().enumerate() {
            use pipeline::Frame as _;
            let key = match p.verdict {
                Verdict::Forward(port) => self.port_name(port),
                Verdict::Reply => REPLIES.to_string(),
                Verdict::ToHost(_) => TO_HOST.to_string(),
                Verdict::Drop(r) => {
                    self.drops.push((first + i, r));
                    continue;
                }
                Verdict::Consumed | Verdict::Pending => continue,
            };
            self.out.entry(key).or_default().push(p.frame.data().to_vec());
        }
    }

    fn port_name(&self, port: PortId) -> String {
        self.tables.port(port).map_or_else(|| format!("port{port}"), |p| p.name.clone())
    }

    /// The counters as JSON, with port and VRF names.
    pub fn counters_json(&self) -> serde_json::Value {
        let ports: Vec<String> = self.tables.ports.iter().map(|p| p.name.clone()).collect();
        let vrfs: Vec<String> = self.tables.vrfs.iter().map(|v| v.name.clone()).collect();
        self.worker.counters.to_json(&ports, &vrfs)
    }

    /// Write one pcap per output (`<name>.pcap`) and `counters.json` into `dir`.
    pub fn write_outputs(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, frames) in &self.out {
            write_pcap(&dir.join(format!("{name}.pcap")), frames)?;
        }
        let json = serde_json::to_string_pretty(&self.counters_json())?;
        std::fs::write(dir.join("counters.json"), json + "\n")?;
        Ok(())
    }
}

/// Read every frame of a pcap file.
pub fn read_pcap(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    use anyhow::Context as _;
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = PcapReader::new(BufReader::new(file)).with_context(|| format!("{} is not a pcap file", path.display()))?;
    let mut frames = vec![];
    while let Some(p) = reader.next_packet() {
        frames.push(p.with_context(|| format!("bad packet in {}", path.display()))?.data.into_owned());
    }
    Ok(frames)
}

/// Write frames to a pcap file (Ethernet link type), timestamps one microsecond apart.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> anyhow::Result<()> {
    let mut w = PcapWriter::new(BufWriter::new(File::create(path)?))?;
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(Duration::from_micros(i as u64), f.len() as u32, f))?;
    }
    Ok(())
}
