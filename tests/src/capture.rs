//! Packet captures for the privileged tests: tcpdump in a namespace, decoded by tshark (an
//! independent decoder). Frames a dataplane sends or receives over AF_XDP bypass packet taps
//! on its own interfaces, so tests capture on a bridge or host in between.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{run, NetNs};

/// A running `tcpdump -w`; stopped (SIGINT) by [`Capture::stop`], killed on drop.
#[derive(Debug)]
pub struct Capture {
    child: Option<Child>,
    path: PathBuf,
}

impl Capture {
    /// Starts tcpdump on `iface` in `ns` writing `path`, with an optional filter; returns
    /// once it is listening.
    pub fn start(ns: &NetNs, iface: &str, path: &Path, filter: &[&str]) -> Capture {
        let log = path.with_extension("log");
        let stderr = std::fs::File::create(&log).expect("create tcpdump log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "tcpdump",
                "-n",
                "-U",
                "--immediate-mode",
                "-Z",
                "root",
                "-i",
                iface,
                "-w",
            ])
            .arg(path)
            .args(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start tcpdump");
        let mut capture = Capture {
            child: Some(child),
            path: path.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("listening on") {
                break;
            }
            if let Some(status) = capture
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tcpdump on {iface} exited ({status}): {text}");
            }
            assert!(
                Instant::now() < deadline,
                "tcpdump on {iface} did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        capture
    }

    /// Stops the capture (SIGINT, so it flushes) and returns the pcap's path.
    pub fn stop(mut self) -> PathBuf {
        // Let the last frames of the traffic reach the tap.
        std::thread::sleep(Duration::from_millis(200));
        if let Some(child) = self.child.as_mut() {
            run(&["kill", "-INT", &child.id().to_string()]);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() {
                assert!(Instant::now() < deadline, "tcpdump did not stop on SIGINT");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.child = None;
        self.path.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ignored = child.kill();
            let _ignored = child.wait();
        }
    }
}

/// The fields tshark decodes from `pcap` for frames matching `display_filter`, one
/// `Vec` per frame (multi-valued fields joined by commas).
pub fn tshark(pcap: &Path, display_filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec![
        "tshark",
        "-n",
        "-r",
        pcap.to_str().expect("utf-8 path"),
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=/t",
    ];
    for field in fields {
        args.extend_from_slice(&["-e", field]);
    }
    run(&args)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}
