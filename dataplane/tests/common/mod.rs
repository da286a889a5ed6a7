//! Frames the pipeline tests build by hand.

/// An Ethernet frame to `dst` carrying an ARP packet (RFC 826, Ethernet/IPv4): operation `op`
/// (1 request, 2 reply), sender `sha`/`spa`, target `tha`/`tpa`.
pub fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4], dst: [u8; 6]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f
}
