//! Shared helpers for carrier's tests: network-namespace guards for the privileged
//! tests, and the runner for the scapy scripts that check golden cases independently.
pub mod carrier;
pub mod demo;
pub mod netns;
pub mod routed;
pub mod bgp;
pub mod capture;
