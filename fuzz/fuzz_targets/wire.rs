//! Every wire view's checked constructor and accessors on arbitrary bytes.
#![no_main]

use carrier_dataplane::wire::{mpls, ArpPacket, EthernetFrame, Icmpv4Packet, Ipv4Packet, UdpPacket, VxlanHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = EthernetFrame::new_checked(data) {
        let _ = (e.dst_addr(), e.src_addr(), e.ethertype(), e.vlan_id(), e.payload().len());
    }
    if let Ok(a) = ArpPacket::new_checked(data) {
        let _ = (a.operation(), a.sender_hw(), a.sender_ip(), a.target_hw(), a.target_ip());
    }
    if let Ok(ip) = Ipv4Packet::new_checked(data) {
        let _ = (ip.verify_checksum(), ip.flow_hash(), ip.payload().len(), ip.src_addr(), ip.dst_addr());
    }
    if let Ok(u) = UdpPacket::new_checked(data) {
        let _ = (u.src_port(), u.dst_port(), u.payload().len());
    }
    if let Ok(i) = Icmpv4Packet::new_checked(data) {
        let _ = (i.msg_type(), i.code(), i.verify_checksum(), i.payload().len());
    }
    if let Ok(v) = VxlanHeader::new_checked(data) {
        let _ = (v.vni(), v.payload().len());
    }
    let _ = mpls::stack_depth(data, 8);
    let _ = mpls::LabelStackEntry::parse(data);
});
