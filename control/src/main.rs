//! `carrier-control`: the BGP control process. It speaks BGP to route reflectors and peers,
//! keeps the RIB, allocates labels, and programs the dataplane through its table socket.

use std::path::PathBuf;

use anyhow::{Context, Result};
use carrier_control::config::ControlConfig;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "carrier-control", version, about = "carrier's BGP control process")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the BGP speaker and program the dataplane until SIGINT/SIGTERM.
    Run {
        /// The control config (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a control config (and the dataplane config it names).
    CheckConfig {
        /// The control config (TOML).
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match Cli::parse().command {
        Command::Run { config } => {
            let cfg = ControlConfig::load(&config).with_context(|| format!("control config {}", config.display()))?;
            // Peer tasks run on the workers; the RIB task on this thread (see `daemon`).
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(carrier_control::daemon::run(cfg, config))
        }
        Command::CheckConfig { config } => {
            let cfg = ControlConfig::load(&config).with_context(|| format!("control config {}", config.display()))?;
            let dp = carrier_dataplane::config::Config::load(&cfg.dataplane.config)?;
            let tables = dp.tables()?;
            let text = std::fs::read_to_string(&config)?;
            cfg.check_against(&text, &tables).with_context(|| format!("control config {}", config.display()))?;
            println!("ok: {} neighbors, {} vrfs, {} evpn instances", cfg.neighbors.len(), cfg.vrfs.len(), cfg.evpn.len());
            Ok(())
        }
    }
}
