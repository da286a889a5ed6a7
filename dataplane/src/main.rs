//! `carrier-dataplane`: the dataplane binary.
//!
//! - `replay`: run the pipeline over a pcap offline and write what each port would send;
//! - `trace`: show step by step what the pipeline decides for one frame;
//! - `check-config`: load a config and print the tables it compiles to.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use carrier_dataplane::config::Config;
use carrier_dataplane::replay::{read_pcap, Replayer};
use carrier_dataplane::tables::Tables;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "carrier-dataplane", version, about = "carrier's provider-edge dataplane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline over a pcap; write one pcap per egress port (plus replies.pcap and
    /// to-host.pcap) and counters.json into the output directory.
    Replay {
        /// The config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The input capture.
        #[arg(long = "in")]
        input: PathBuf,
        /// The port (interface name) the frames arrive on.
        #[arg(long)]
        ingress: String,
        /// Where to write the outputs.
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Print each step the pipeline takes for one frame.
    Trace {
        /// The config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The port (interface name) the frame arrives on.
        #[arg(long)]
        ingress: String,
        /// The frame as hex (spaces and colons allowed).
        #[arg(long, conflicts_with = "pcap")]
        hex: Option<String>,
        /// A pcap to take the frame from.
        #[arg(long, requires = "index")]
        pcap: Option<PathBuf>,
        /// The frame's index in the pcap (from 0).
        #[arg(long)]
        index: Option<usize>,
    },
    /// Load a config and print the table commands it compiles to (JSON lines).
    CheckConfig {
        /// The config file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
}

fn load(path: &PathBuf) -> Result<Tables> {
    let config = Config::load(path).with_context(|| format!("config {}", path.display()))?;
    config.tables().with_context(|| format!("config {}", path.display()))
}

fn ingress_port(tables: &Tables, name: &str) -> Result<carrier_common::PortId> {
    match tables.port_by_name(name) {
        Some(p) => Ok(p.id),
        None => {
            let names: Vec<&str> = tables.ports.iter().map(|p| p.name.as_str()).collect();
            bail!("no port named {name:?} in the config (ports: {})", names.join(", "))
        }
    }
}

fn parse_hex(s: &str) -> Result<Vec<u8>> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
    if digits.len() % 2 != 0 {
        bail!("hex frame has an odd number of digits");
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).with_context(|| format!("not hex: {:?}", &digits[i..i + 2])))
        .collect()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay { config, input, ingress, out_dir } => {
            let tables = load(&config)?;
            let port = ingress_port(&tables, &ingress)?;
            let frames = read_pcap(&input)?;
            let n = frames.len();
            let mut r = Replayer::new(&tables);
            r.feed(frames, port);
            r.write_outputs(&out_dir)?;
            println!("{n} frames in on {ingress}");
            for (name, frames) in &r.out {
                println!("{:>6} out  {}", frames.len(), out_dir.join(format!("{name}.pcap")).display());
            }
            let mut drops = std::collections::BTreeMap::new();
            for (_, reason) in &r.drops {
                *drops.entry(reason.name()).or_insert(0) += 1;
            }
            for (reason, count) in drops {
                println!("{count:>6} dropped: {reason}");
            }
            println!("counters: {}", out_dir.join("counters.json").display());
        }
        Command::Trace { config, ingress, hex, pcap, index } => {
            let tables = load(&config)?;
            let port = ingress_port(&tables, &ingress)?;
            let frame = match (hex, pcap, index) {
                (Some(h), _, _) => parse_hex(&h)?,
                (None, Some(p), Some(i)) => {
                    let frames = read_pcap(&p)?;
                    let n = frames.len();
                    frames.into_iter().nth(i).with_context(|| format!("{} has {n} frames; no index {i}", p.display()))?
                }
                _ => bail!("give --hex FRAME or --pcap FILE --index N"),
            };
            let mut r = Replayer::new(&tables);
            let (steps, verdict) = r.trace(&frame, port);
            for (i, s) in steps.iter().enumerate() {
                println!("{:>2}. {s}", i + 1);
            }
            println!("verdict: {verdict:?}");
            for (name, frames) in &r.out {
                for f in frames {
                    println!("out {name}: {}", f.iter().map(|b| format!("{b:02x}")).collect::<String>());
                }
            }
        }
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            for cmd in c.commands()? {
                println!("{}", serde_json::to_string(&cmd)?);
            }
            let t = c.tables()?;
            eprintln!("ok: {} ports, {} vrfs, {} labels, {} bridge domains", t.ports.len(), t.vrfs.len(), t.ilm.len(), t.bridges.len());
        }
    }
    Ok(())
}
