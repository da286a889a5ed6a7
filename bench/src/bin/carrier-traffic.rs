//! `carrier-traffic`: a paced UDP stream and a loss-counting receiver, for the privileged
//! end-to-end tests (run each side in its own network namespace).
//!
//! ```text
//! carrier-traffic send --dst IP:PORT --pps N --secs S [--size BYTES]
//!     → {"sent":N,"errors":E,"elapsed_secs":T}
//! carrier-traffic recv --bind IP:PORT --secs S [--idle-secs I]
//!     → {"received":R,"unique":U,"duplicates":D,"reordered":O,"max_seq":M,"lost":L,"gaps":[[a,b],..]}
//! ```
//!
//! The contract: every datagram carries its sequence number (u64, big-endian) in payload
//! bytes 0..8, the sender's clock (µs since its first datagram, u64 big-endian) in 8..16 and
//! the magic `carrier!` in 16..24; datagrams without the magic are ignored. Sequence numbers
//! start at 0 and are given only to datagrams the kernel accepted, so `sent` is exact.
//!
//! The receiver stops at `--secs` (a hard limit) or, once something arrived, after
//! `--idle-secs` (default 1) without a datagram. `lost` counts the sequence numbers missing
//! below the highest one seen (0..=max_seq); datagrams lost after the last one received are
//! not visible to it, so a caller that knows `sent` should compare `sent` with `unique`.
//! `gaps` lists the first missing ranges (inclusive), to place a loss in time
//! (`seq / pps` seconds after the start).
//!
//! Pacing: the sender keeps `sent ≈ elapsed × pps`, sending what is due and then sleeping
//! for 200 µs, so it uses little CPU; both sides are bounded by `--secs`.

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"carrier!";
/// Payload bytes the header fields need.
const HEADER_LEN: usize = 24;
/// Largest sequence number the receiver tracks (a bitmap of this many bits, 16 MiB).
const MAX_TRACKED_SEQ: u64 = 1 << 27;
/// How many missing ranges the receiver lists.
const MAX_GAPS: usize = 32;
/// Longest run either side accepts.
const MAX_SECS: f64 = 600.0;

fn usage() -> ExitCode {
    eprintln!(
        "usage: carrier-traffic send --dst IP:PORT --pps N --secs S [--size BYTES]\n       \
         carrier-traffic recv --bind IP:PORT --secs S [--idle-secs I]"
    );
    ExitCode::from(2)
}

/// `--name value` pairs after the subcommand.
struct Args(Vec<(String, String)>);

impl Args {
    fn parse(raw: &[String]) -> Result<Args, String> {
        let mut pairs = Vec::new();
        let mut it = raw.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("expected a --flag, got {flag:?}"))?;
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            pairs.push((name.to_owned(), value.clone()));
        }
        Ok(Args(pairs))
    }

    fn get<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => v.parse().map_err(|e| format!("--{name} {v:?}: {e}")),
            None => default.ok_or_else(|| format!("--{name} is required")),
        }
    }

    fn check_known(&self, known: &[&str]) -> Result<(), String> {
        match self.0.iter().find(|(n, _)| !known.contains(&n.as_str())) {
            Some((n, _)) => Err(format!("unknown flag --{n}")),
            None => Ok(()),
        }
    }
}

fn secs(value: f64, name: &str) -> Result<Duration, String> {
    if !(value > 0.0 && value <= MAX_SECS) {
        return Err(format!("--{name} must be in (0, {MAX_SECS}]"));
    }
    Ok(Duration::from_secs_f64(value))
}

fn send(args: &Args) -> Result<String, String> {
    args.check_known(&["dst", "pps", "secs", "size"])?;
    let dst: SocketAddr = args.get("dst", None)?;
    let pps: u64 = args.get("pps", None)?;
    let duration = secs(args.get("secs", None)?, "secs")?;
    let size: usize = args.get("size", Some(64))?;
    if !(1..=1_000_000).contains(&pps) {
        return Err("--pps must be in 1..=1000000".into());
    }
    if !(HEADER_LEN..=1472).contains(&size) {
        return Err(format!("--size must be in {HEADER_LEN}..=1472"));
    }
    let bind: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("literal address");
    let socket = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    let mut payload = vec![0u8; size];
    payload[16..24].copy_from_slice(MAGIC);
    let (mut sent, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * pps as f64) as u64 + 1;
        // Bounded catch-up: after a long stall, at most 1 ms worth of packets per round.
        let mut burst = due.saturating_sub(sent).min(pps / 1000 + 1);
        while burst > 0 {
            payload[0..8].copy_from_slice(&sent.to_be_bytes());
            let micros = start.elapsed().as_micros() as u64;
            payload[8..16].copy_from_slice(&micros.to_be_bytes());
            // Unconnected: an ICMP port unreachable must not turn into an error here.
            match socket.send_to(&payload, dst) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
            burst -= 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(format!(
        "{{\"sent\":{sent},\"errors\":{errors},\"elapsed_secs\":{:.3}}}",
        start.elapsed().as_secs_f64()
    ))
}

/// Which sequence numbers arrived.
struct SeenSet {
    bits: Vec<u64>,
}

impl SeenSet {
    /// Marks `seq`; false when it was already marked.
    fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let fresh = self.bits[word] & (1 << bit) == 0;
        self.bits[word] |= 1 << bit;
        fresh
    }

    fn contains(&self, seq: u64) -> bool {
        self.bits
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

fn recv(args: &Args) -> Result<String, String> {
    args.check_known(&["bind", "secs", "idle-secs"])?;
    let bind: SocketAddr = args.get("bind", None)?;
    let limit = secs(args.get("secs", None)?, "secs")?;
    let idle = secs(args.get("idle-secs", Some(1.0))?, "idle-secs")?;
    let socket = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| format!("set timeout: {e}"))?;
    // A receive buffer of 16 MiB (root may exceed rmem_max): a receiver descheduled for a
    // while on a busy machine must not drop what the router delivered.
    let want: libc::c_int = 16 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a c_int option on a socket this function owns.
        let r = unsafe { libc::setsockopt(std::os::fd::AsRawFd::as_raw_fd(&socket), libc::SOL_SOCKET, opt, (&want as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t) };
        if r == 0 {
            break;
        }
    }
    let overflows_before = udp_rcvbuf_errors();
    // Tell a waiting caller that the socket is bound (stdout carries only the result).
    eprintln!("carrier-traffic: listening on {bind}");
    let mut seen = SeenSet { bits: Vec::new() };
    let (mut received, mut unique, mut reordered, mut ignored) = (0u64, 0u64, 0u64, 0u64);
    let mut max_seq: Option<u64> = None;
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut last_arrival: Option<Instant> = None;
    while start.elapsed() < limit && last_arrival.is_none_or(|t| t.elapsed() < idle) {
        let n = match socket.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(format!("recv: {e}")),
        };
        if n < HEADER_LEN || &buf[16..24] != MAGIC {
            ignored += 1;
            continue;
        }
        let seq = u64::from_be_bytes(buf[0..8].try_into().expect("8 bytes"));
        if seq >= MAX_TRACKED_SEQ {
            ignored += 1;
            continue;
        }
        last_arrival = Some(Instant::now());
        received += 1;
        if max_seq.is_some_and(|m| seq < m) {
            reordered += 1;
        }
        if seen.insert(seq) {
            unique += 1;
        }
        max_seq = max_seq.max(Some(seq));
    }
    let mut gaps = Vec::new();
    if let Some(max) = max_seq {
        let mut seq = 0;
        while seq <= max && gaps.len() < MAX_GAPS {
            if seen.contains(seq) {
                seq += 1;
                continue;
            }
            let first = seq;
            while seq <= max && !seen.contains(seq) {
                seq += 1;
            }
            gaps.push(format!("[{first},{}]", seq - 1));
        }
    }
    let lost = max_seq.map_or(0, |m| m + 1 - unique);
    let max_seq = max_seq.map_or("null".to_owned(), |m| m.to_string());
    // Datagrams this namespace's UDP dropped for a full receive buffer meanwhile: a loss at
    // the receiver, not on the way.
    let rcvbuf_errors = udp_rcvbuf_errors().saturating_sub(overflows_before);
    Ok(format!(
        "{{\"received\":{received},\"unique\":{unique},\"duplicates\":{},\"reordered\":{reordered},\
         \"ignored\":{ignored},\"max_seq\":{max_seq},\"lost\":{lost},\"gaps\":[{}],\"rcvbuf_errors\":{rcvbuf_errors},\"elapsed_secs\":{:.3}}}",
        received - unique,
        gaps.join(","),
        start.elapsed().as_secs_f64()
    ))
}

/// `Udp: RcvbufErrors` of /proc/net/snmp (this network namespace's).
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else { return 0 };
    names.split_whitespace().zip(values.split_whitespace()).find(|(n, _)| *n == "RcvbufErrors").and_then(|(_, v)| v.parse().ok()).unwrap_or(0)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        return usage();
    };
    let result = Args::parse(rest).and_then(|args| match command.as_str() {
        "send" => send(&args),
        "recv" => recv(&args),
        _ => Err(format!("unknown command {command:?}")),
    });
    match result {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("carrier-traffic: {message}");
            usage()
        }
    }
}
