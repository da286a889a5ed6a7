//! Privileged test of the AF_XDP path on more than one receive queue: a worker per queue.
//!
//! The routed lab (`carrier_tests::routed`) with two queues on every veth and the express tier
//! off, so that every frame goes through the workers: streams from host A to host B, each from a
//! socket of its own (the kernel spreads sockets over the veth's transmit queues, which are the
//! PE's receive queues), all arrive, and both workers received a share of them. A neighbour one
//! worker learns (B answers its ARP request on whichever queue) is taken by the other within a
//! publish interval, or that worker would keep dropping its frames to B.

use std::time::Duration;

use carrier_tests::carrier::Dataplane;
use carrier_tests::routed::{base_config, RoutedLab, Traffic, HOST_B};

/// Streams, datagrams a second each, seconds.
const STREAMS: u16 = 16;
const PPS: u32 = 1_000;
const SECS: u32 = 2;

#[test]
#[ignore = "needs root: run with cargo xtask test"]
fn a_worker_per_receive_queue_shares_what_it_learns() {
    let lab = RoutedLab::with_queues(2);
    let config = base_config().replacen("[router]\n", "[router]\nexpress = false\n", 1);
    let dp = Dataplane::start(&lab.pe, &config);
    assert!(dp.log().contains("2 AF_XDP worker(s)"), "two queues, two workers:\n{}", dp.log());
    assert!(lab.a_reaches(HOST_B), "A reaches B\n{}", dp.log());
    // What one worker learned reaches the other within a publish interval.
    std::thread::sleep(Duration::from_millis(300));

    let mut receivers = vec![];
    for i in 0..STREAMS {
        let bind = format!("{HOST_B}:{}", 7100 + i);
        let mut r = Traffic::start(&lab.host_b, "recv", &["--bind", &bind, "--secs", "10", "--idle-secs", "2"]);
        r.wait_listening();
        receivers.push(r);
    }
    let (pps, secs) = (PPS.to_string(), SECS.to_string());
    let senders: Vec<_> = (0..STREAMS)
        .map(|i| {
            let dst = format!("{HOST_B}:{}", 7100 + i);
            Traffic::start(&lab.host_a, "send", &["--dst", &dst, "--pps", &pps, "--secs", &secs])
        })
        .collect();
    let sent: Vec<u64> = senders.into_iter().map(|s| s.report()["sent"].as_u64().unwrap_or(0)).collect();
    let received: Vec<u64> = receivers.into_iter().map(|r| r.report()["unique"].as_u64().unwrap_or(0)).collect();
    let status: serde_json::Value = serde_json::from_str(&dp.ctl(&["status"])).expect("status JSON");
    let workers: Vec<u64> = status["workers"].as_array().expect("workers in the status").iter().map(|w| w.as_u64().unwrap_or(0)).collect();
    eprintln!("sent {sent:?}, received {received:?}, frames per worker {workers:?}");
    assert_eq!(sent, received, "every datagram of every stream arrives\n{}", dp.log());
    let total: u64 = sent.iter().sum();
    assert!(total >= u64::from(STREAMS) * u64::from(PPS * SECS) * 9 / 10, "sent {total}");
    assert_eq!(workers.len(), 2, "{status}");
    for (q, frames) in workers.iter().enumerate() {
        assert!(*frames >= total / 20, "worker {q} received {frames} of {total} frames: the streams did not spread over both queues ({workers:?})");
    }
}
