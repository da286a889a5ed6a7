//! The BGP wire codec: bytes ⇄ [`Message`] (the domain model of `msg.rs`).
//!
//! # Contract
//! - [`frame_len`] finds message boundaries in a TCP byte stream and rejects a bad header
//!   (RFC 4271 §6.1) before the body has arrived.
//! - [`decode`] takes exactly one frame. It never panics on any input (a proptest checks it).
//!   UPDATE errors are classified per RFC 7606 into [`DecodeError`]: session reset,
//!   treat-as-withdraw (of the UPDATE, or of single VPNv4 routes announced with a label
//!   stack, RFC 8277 §2.3) or attribute discard.
//! - [`encode`] produces what GoBGP, FRR and ExaBGP accept. One [`Update`] may become several
//!   concatenated UPDATE messages (one per MP family, and more when the NLRI do not fit in
//!   4096 bytes); see [`encode`].
//!
//! # How an UPDATE is decoded
//! 1. `walk` (our own walker over the raw bytes) locates the withdrawn routes, the
//!    attributes and the NLRI, parses the NLRI of the three families and checks every
//!    attribute against RFC 7606. It runs on every UPDATE: netgauze does not check what
//!    RFC 7606 asks for (missing mandatory attributes, flag conflicts, duplicates, unknown
//!    well-known attributes), so the walker is the error classifier.
//! 2. If the walker found no fault, netgauze-bgp-pkt parses the message and `ng` converts
//!    it into the domain model (extended communities and unknown attributes are taken as raw
//!    bytes from the walker: netgauze types some of them in ways we do not model, and the
//!    encapsulation community is opaque to it). Under `cfg(test)` both results must agree,
//!    so every test is also a differential test of the walker against netgauze.
//! 3. If netgauze refuses an UPDATE the walker accepted, the walker's reading is returned.
//!    netgauze is stricter than RFC 7606 on points that do not affect carrier: the Partial
//!    bit on a well-known attribute, an MP_REACH/MP_UNREACH of an AFI/SAFI it does not know,
//!    an RD of an unassigned type, multicast prefixes in NLRI, AS_CONFED segments.
//!
//! OPEN goes through netgauze; NOTIFICATION, KEEPALIVE and ROUTE-REFRESH are fixed formats
//! read here directly (a NOTIFICATION must decode whatever its code and subcode).
//!
//! ADD-PATH is not supported: `CodecContext::add_path` is ignored.
#![expect(
    clippy::result_large_err,
    reason = "DecodeError carries the Update (the RFC 7606 outcomes); the API is fixed and one copy per bad UPDATE does not matter"
)]

mod ng;
#[cfg(test)]
mod tests;
mod walk;

use std::net::Ipv4Addr;

use netgauze_bgp_pkt::capabilities::BgpCapability;
use netgauze_bgp_pkt::wire::deserializer::open::{
    BgpOpenMessageParsingError, BgpParameterParsingError,
};
use netgauze_bgp_pkt::wire::deserializer::{BgpMessageParsingError, BgpParsingContext};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::AddressType;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

use super::msg::{
    error_code, Family, GracefulRestart, Message, Nlri, Notification, Open, PathAttributes, Update,
};

/// Per-session parsing/encoding context learned from the OPEN exchange.
#[derive(Clone, Copy, Debug, Default)]
pub struct CodecContext {
    /// Both sides advertised the 4-octet AS capability (RFC 6793): AS_PATH carries 4-byte ASNs.
    pub four_octet_as: bool,
    /// ADD-PATH (RFC 7911). Always false for now; ignored by the codec.
    pub add_path: bool,
}

/// Why an UPDATE (or another message) could not be taken as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fatal: send this NOTIFICATION and close (header, OPEN, or UPDATE errors that RFC 7606
    /// says are session-reset).
    #[error("session reset: NOTIFICATION {}/{} (data {:02x?})", .0.code, .0.subcode, .0.data)]
    Reset(Notification),
    /// RFC 7606 treat-as-withdraw: the UPDATE's announced NLRI must be treated as withdrawn
    /// (they are listed in `update.withdrawn`, together with its own withdrawals; `announced`
    /// is empty and `attributes` default). `reason` names the attribute at fault.
    #[error("treat-as-withdraw ({} NLRI): {reason}", .update.withdrawn.len())]
    TreatAsWithdraw {
        /// The withdrawals to apply.
        update: Update,
        /// What was wrong.
        reason: String,
    },
    /// Treat-as-withdraw of some NLRI only (RFC 8277 §2.3 with RFC 7606 §2: a VPNv4 route
    /// announced with more labels than negotiated): those routes are in `update.withdrawn`,
    /// together with the UPDATE's own withdrawals; the rest of `update` (its other NLRI and
    /// attributes, less any discarded one) is to be processed as usual. `reason` names the
    /// routes.
    #[error("treat-as-withdraw of some NLRI: {reason}")]
    RoutesTreatedAsWithdrawn {
        /// The UPDATE to apply, those routes withdrawn.
        update: Update,
        /// Which routes and why.
        reason: String,
    },
    /// RFC 7606 attribute discard: the faulty attribute was dropped; the rest is fine and
    /// `update` is to be processed as usual. Also used, with an empty `update`, for a message
    /// to be ignored (a malformed attribute in an UPDATE without NLRI, a ROUTE-REFRESH for a
    /// family carrier does not speak). `update.eor` is always `None` here: End-of-RIB
    /// markers only come as `Ok(Message::Update(u))` with `u.eor` set.
    #[error("attribute discard: {reason}")]
    AttributeDiscard {
        /// The UPDATE without the faulty attribute(s).
        update: Update,
        /// What was dropped and why.
        reason: String,
    },
}

/// The 19-byte message header (RFC 4271 §4.1).
const HEADER_LEN: usize = 19;
/// Maximum message size without the Extended Message capability (RFC 4271 §4.1).
const MAX_MESSAGE_LEN: usize = 4096;
/// AS_TRANS (RFC 6793 §9).
pub const AS_TRANS: u16 = 23456;

/// Message types (RFC 4271 §4.1, RFC 2918 §3).
mod msg_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// Message header error subcodes (RFC 4271 §6.1).
mod header_error {
    pub const NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_LENGTH: u8 = 2;
    pub const BAD_TYPE: u8 = 3;
}

/// OPEN message error subcodes (RFC 4271 §6.2).
mod open_error {
    pub const UNSPECIFIC: u8 = 0;
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_BGP_ID: u8 = 3;
    pub const UNSUPPORTED_OPT_PARAM: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
}

/// UPDATE message error subcodes (RFC 4271 §6.3).
pub(crate) mod update_error {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
}

/// ROUTE-REFRESH message error (RFC 7313 §5): code 7, subcode 1 invalid message length.
const ROUTE_REFRESH_ERROR: u8 = 7;

/// Length of the first complete message in `buf` (from the 19-byte header), or `Ok(None)` if
/// more bytes are needed. Err for a bad marker, length or type (RFC 4271 §6.1: NOTIFICATION
/// code 1, subcodes 1/2/3; the data is the length field or the type, as §6.1 asks). The
/// marker is checked as soon as its bytes are there.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Notification> {
    let marker = &buf[..buf.len().min(16)];
    if marker.iter().any(|b| *b != 0xff) {
        return Err(Notification::new(
            error_code::HEADER,
            header_error::NOT_SYNCHRONIZED,
        ));
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    let ty = buf[18];
    let bad_length = || Notification {
        code: error_code::HEADER,
        subcode: header_error::BAD_LENGTH,
        data: buf[16..18].to_vec(),
    };
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(bad_length());
    }
    let min_len = match ty {
        msg_type::OPEN => 29,
        msg_type::UPDATE => 23,
        msg_type::NOTIFICATION => 21,
        msg_type::KEEPALIVE => 19,
        // RFC 7313 §5 gives ROUTE-REFRESH its own length error, checked in `decode`.
        msg_type::ROUTE_REFRESH => 19,
        _ => {
            return Err(Notification {
                code: error_code::HEADER,
                subcode: header_error::BAD_TYPE,
                data: vec![ty],
            })
        }
    };
    if len < min_len || (ty == msg_type::KEEPALIVE && len != HEADER_LEN) {
        return Err(bad_length());
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Decode exactly one message (`buf` is exactly one frame, as [`frame_len`] delimits it).
pub fn decode(buf: &[u8], ctx: &CodecContext) -> Result<Message, DecodeError> {
    match frame_len(buf) {
        Err(n) => return Err(DecodeError::Reset(n)),
        Ok(Some(len)) if len == buf.len() => {}
        Ok(_) => {
            let data = buf.get(16..18).map(<[u8]>::to_vec).unwrap_or_default();
            return Err(DecodeError::Reset(Notification {
                code: error_code::HEADER,
                subcode: header_error::BAD_LENGTH,
                data,
            }));
        }
    }
    let body = &buf[HEADER_LEN..];
    match buf[18] {
        msg_type::OPEN => decode_open(buf).map(Message::Open),
        msg_type::UPDATE => decode_update(buf, body, ctx).map(Message::Update),
        msg_type::NOTIFICATION => Ok(Message::Notification(Notification {
            code: body[0],
            subcode: body[1],
            data: body[2..].to_vec(),
        })),
        msg_type::KEEPALIVE => Ok(Message::Keepalive),
        _ => decode_route_refresh(buf, body),
    }
}

/// ROUTE-REFRESH (RFC 2918 §3, RFC 7313 §3/§5).
fn decode_route_refresh(buf: &[u8], body: &[u8]) -> Result<Message, DecodeError> {
    if body.len() != 4 {
        // RFC 7313 §5: Invalid Message Length, data = the whole message.
        return Err(DecodeError::Reset(Notification {
            code: ROUTE_REFRESH_ERROR,
            subcode: 1,
            data: buf.to_vec(),
        }));
    }
    let afi = u16::from_be_bytes([body[0], body[1]]);
    let subtype = body[2];
    let safi = body[3];
    let ignore = |reason: String| DecodeError::AttributeDiscard {
        update: Update::default(),
        reason,
    };
    if subtype != 0 {
        // RFC 7313 §4: BoRR/EoRR without Enhanced Route Refresh negotiated (carrier does not
        // advertise it) and unknown subtypes are ignored.
        return Err(ignore(format!("ROUTE-REFRESH subtype {subtype} ignored")));
    }
    match Family::from_afi_safi(afi, safi) {
        Some(family) => Ok(Message::RouteRefresh(family)),
        // RFC 2918 §4: a ROUTE-REFRESH for an AFI/SAFI not advertised is ignored.
        None => Err(ignore(format!(
            "ROUTE-REFRESH for AFI {afi} SAFI {safi} ignored"
        ))),
    }
}

/// OPEN through netgauze (RFC 4271 §4.2, §6.2; RFC 5492 capabilities).
fn decode_open(buf: &[u8]) -> Result<Open, DecodeError> {
    // Malformed capabilities are skipped (RFC 5492 §3: unknown ones are ignored; a
    // malformed one of a kind carrier needs simply reads as absent, which negotiates it off).
    let mut pctx = BgpParsingContext::new(
        true,
        Default::default(),
        Default::default(),
        true,
        true,
        false,
        true,
    );
    let parsed = BgpMessage::parse(&mut SliceReader::new(buf), &mut pctx);
    let open = match parsed {
        Ok(BgpMessage::Open(open)) => open,
        Ok(_) => {
            return Err(DecodeError::Reset(Notification::new(
                error_code::OPEN,
                open_error::UNSPECIFIC,
            )))
        }
        Err(e) => return Err(DecodeError::Reset(open_notification(&e, buf))),
    };
    let mut out = Open {
        asn: u32::from(open.my_as()),
        hold_time: open.hold_time(),
        router_id: open.bgp_id(),
        families: vec![],
        four_octet_as: false,
        route_refresh: false,
        graceful_restart: None,
    };
    for cap in open.capabilities() {
        match cap {
            BgpCapability::MultiProtocolExtensions(mp) => {
                if let Some(f) = family_of(mp.address_type()) {
                    if !out.families.contains(&f) {
                        out.families.push(f);
                    }
                }
            }
            BgpCapability::FourOctetAs(c) => {
                // RFC 6793 §4.1: the capability carries the speaker's real AS; my_as is
                // AS_TRANS when it does not fit 2 bytes (and equal to it otherwise).
                out.four_octet_as = true;
                out.asn = c.asn4();
            }
            BgpCapability::RouteRefresh => out.route_refresh = true,
            BgpCapability::GracefulRestartCapability(gr) => {
                out.graceful_restart = Some(GracefulRestart {
                    restarting: gr.restart(),
                    restart_time: gr.time(),
                    families: gr
                        .address_families()
                        .iter()
                        .filter_map(|f| {
                            family_of(f.address_type()).map(|fam| (fam, f.forwarding_state()))
                        })
                        .collect(),
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

fn family_of(t: AddressType) -> Option<Family> {
    match t {
        AddressType::Ipv4Unicast => Some(Family::Ipv4Unicast),
        AddressType::Ipv4MplsLabeledVpn => Some(Family::Vpnv4),
        AddressType::L2VpnBgpEvpn => Some(Family::Evpn),
        _ => None,
    }
}

/// The NOTIFICATION for an OPEN netgauze refused (RFC 4271 §6.2).
fn open_notification(e: &BgpMessageParsingError, buf: &[u8]) -> Notification {
    let open = |subcode: u8, data: Vec<u8>| Notification {
        code: error_code::OPEN,
        subcode,
        data,
    };
    match e {
        BgpMessageParsingError::BgpOpenMessageParsingError(e) => match e {
            // Data: the largest locally supported version (4).
            BgpOpenMessageParsingError::UnsupportedVersionNumber { .. } => {
                open(open_error::UNSUPPORTED_VERSION, vec![0, 4])
            }
            BgpOpenMessageParsingError::UnacceptableHoldTime { .. } => {
                open(open_error::UNACCEPTABLE_HOLD_TIME, vec![])
            }
            BgpOpenMessageParsingError::InvalidBgpId { .. } => open(open_error::BAD_BGP_ID, vec![]),
            BgpOpenMessageParsingError::ParameterError(
                BgpParameterParsingError::UndefinedParameterType { code, .. },
            ) => open(open_error::UNSUPPORTED_OPT_PARAM, vec![*code]),
            _ => open(open_error::UNSPECIFIC, vec![]),
        },
        // Optional parameters shorter than the message: the length is wrong.
        BgpMessageParsingError::UnparseableBytes { .. } => Notification {
            code: error_code::HEADER,
            subcode: header_error::BAD_LENGTH,
            data: buf[16..18].to_vec(),
        },
        _ => open(open_error::UNSPECIFIC, vec![]),
    }
}

/// UPDATE: the walker classifies (RFC 7606), netgauze decodes well-formed messages.
fn decode_update(buf: &[u8], body: &[u8], ctx: &CodecContext) -> Result<Update, DecodeError> {
    let mut walked = walk::walk_update(body, ctx).map_err(DecodeError::Reset)?;
    if let Some(err) = walked.verdict() {
        return Err(err);
    }
    if walked.update.is_empty() {
        walked.update.eor = end_of_rib_family(buf);
    }
    match ng::decode_update(buf, ctx, &walked.update) {
        Ok(update) => {
            #[cfg(test)]
            assert_eq!(
                update, walked.update,
                "netgauze and the walker disagree on {buf:02x?}"
            );
            if update != walked.update {
                log::warn!(
                    "BGP codec: netgauze and the walker disagree on an UPDATE; using netgauze's"
                );
            }
            Ok(update)
        }
        Err(e) => {
            log::debug!("netgauze refused an UPDATE the walker accepted ({e}); using the walker's");
            Ok(walked.update)
        }
    }
}

/// Is `buf` (one well-formed UPDATE frame) an End-of-RIB marker (RFC 4724 §2), and whose?
/// An empty UPDATE is IPv4 unicast's; an UPDATE with only an empty MP_UNREACH is that
/// family's. Anything else (an UPDATE with attributes but no NLRI, say) is not a marker.
fn end_of_rib_family(buf: &[u8]) -> Option<Family> {
    if buf.len() < 23 || buf[18] != msg_type::UPDATE {
        return None;
    }
    let body = &buf[HEADER_LEN..];
    let wlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let alen = usize::from(u16::from_be_bytes([
        body.get(2 + wlen).copied()?,
        body.get(3 + wlen).copied()?,
    ]));
    if wlen != 0 || body.len() != 4 + alen {
        return None;
    }
    let attrs = &body[4..];
    if attrs.is_empty() {
        return Some(Family::Ipv4Unicast);
    }
    // One attribute: MP_UNREACH (code 15) holding only AFI/SAFI.
    let (flags, code) = (attrs[0], *attrs.get(1)?);
    let hdr = if flags & 0x10 != 0 { 4 } else { 3 };
    let value = attrs.get(hdr..)?;
    if code != 15 || value.len() != 3 {
        return None;
    }
    Family::from_afi_safi(u16::from_be_bytes([value[0], value[1]]), value[2])
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Attribute flags (RFC 4271 §4.3).
mod flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
    pub const WELL_KNOWN: u8 = TRANSITIVE;
    pub const OPTIONAL_TRANSITIVE: u8 = OPTIONAL | TRANSITIVE;
}

/// Attribute type codes.
pub(crate) mod attr {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MED: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH: u8 = 14;
    pub const MP_UNREACH: u8 = 15;
    pub const EXT_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const PMSI_TUNNEL: u8 = 22;
    /// LARGE_COMMUNITY (RFC 8092).
    pub const LARGE_COMMUNITIES: u8 = 32;
}

fn message(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&[0xff; 16]);
    // Callers keep bodies within MAX_MESSAGE_LEN - HEADER_LEN.
    out.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
    out.push(ty);
    out.extend_from_slice(body);
    out
}

/// Encode one message.
///
/// An [`Update`] may come out as several concatenated UPDATE messages, all to be written to
/// the session as they are:
/// - IPv4 unicast withdrawals and announcements go in the classic fields of one message
///   (with NEXT_HOP);
/// - every other family gets its own messages: one MP_UNREACH per message for withdrawals,
///   one MP_REACH (carrying the next hop, 12 bytes RD 0 + IPv4 for VPNv4 per RFC 4364 §4.3.2,
///   4 bytes for EVPN) with the path attributes for announcements. The caller normally
///   sends one family per Update; mixing families is handled but costs a message each;
/// - when the NLRI do not fit in 4096 bytes they are spread over several messages.
///
/// An Update with `eor: Some(family)` ends with that family's End-of-RIB marker (RFC 4724
/// §2: an empty UPDATE for IPv4, an empty MP_UNREACH otherwise). An empty Update without
/// `eor` encodes to nothing.
/// Attributes are written in type-code order, MP_REACH included (as GoBGP does; RFC 7606 §5.1
/// would rather have MP_REACH first, a SHOULD every peer is indifferent to), which keeps our
/// output byte-identical to GoBGP's for the same route (tested). LOCAL_PREF, MED and the AS_PATH are written as given: which peers
/// get them (iBGP/eBGP) and prepending the local AS are the caller's business. The flattened
/// `as_path` is written as AS_SEQUENCE segments.
pub fn encode(msg: &Message, ctx: &CodecContext) -> Vec<u8> {
    match msg {
        Message::Open(o) => encode_open(o),
        Message::Update(u) => encode_update(u, ctx),
        Message::Notification(n) => {
            let mut body = vec![n.code, n.subcode];
            let room = MAX_MESSAGE_LEN - HEADER_LEN - 2;
            body.extend_from_slice(&n.data[..n.data.len().min(room)]);
            message(msg_type::NOTIFICATION, &body)
        }
        Message::Keepalive => message(msg_type::KEEPALIVE, &[]),
        Message::RouteRefresh(f) => {
            let (afi, safi) = f.afi_safi();
            let a = afi.to_be_bytes();
            message(msg_type::ROUTE_REFRESH, &[a[0], a[1], 0, safi])
        }
    }
}

/// The End-of-RIB marker of a family (RFC 4724 §2).
fn encode_end_of_rib(family: Family) -> Vec<u8> {
    if family == Family::Ipv4Unicast {
        return message(msg_type::UPDATE, &[0, 0, 0, 0]);
    }
    let mut attrs = vec![];
    push_attr(
        &mut attrs,
        flag::OPTIONAL,
        attr::MP_UNREACH,
        &afi_safi_bytes(family),
    );
    update_message(&[], &attrs, &[])
}

fn afi_safi_bytes(family: Family) -> [u8; 3] {
    let (afi, safi) = family.afi_safi();
    let a = afi.to_be_bytes();
    [a[0], a[1], safi]
}

/// OPEN with one Capabilities optional parameter per capability (RFC 5492 §4 allows both
/// layouts; this one never needs a parameter longer than 255 bytes).
fn encode_open(o: &Open) -> Vec<u8> {
    let mut caps: Vec<Vec<u8>> = vec![];
    for f in &o.families {
        let (afi, safi) = f.afi_safi();
        let a = afi.to_be_bytes();
        caps.push(vec![1, 4, a[0], a[1], 0, safi]); // RFC 4760 §8
    }
    if o.route_refresh {
        caps.push(vec![2, 0]); // RFC 2918 §2
    }
    if let Some(gr) = &o.graceful_restart {
        // RFC 4724 §3: restart flags (R = 0x8) and 12-bit time, then AFI/SAFI/flags (F = 0x80).
        let head = (u16::from(gr.restarting) << 15) | (gr.restart_time & 0x0fff);
        let mut c = vec![64, (2 + 4 * gr.families.len()) as u8];
        c.extend_from_slice(&head.to_be_bytes());
        for (f, forwarding) in &gr.families {
            let (afi, safi) = f.afi_safi();
            c.extend_from_slice(&afi.to_be_bytes());
            c.push(safi);
            c.push(if *forwarding { 0x80 } else { 0 });
        }
        caps.push(c);
    }
    if o.four_octet_as {
        let mut c = vec![65, 4]; // RFC 6793 §3
        c.extend_from_slice(&o.asn.to_be_bytes());
        caps.push(c);
    }
    let mut params = vec![];
    for c in caps {
        params.push(2);
        params.push(c.len() as u8);
        params.extend_from_slice(&c);
    }
    let my_as = u16::try_from(o.asn).unwrap_or(AS_TRANS);
    let mut body = vec![4];
    body.extend_from_slice(&my_as.to_be_bytes());
    body.extend_from_slice(&o.hold_time.to_be_bytes());
    body.extend_from_slice(&o.router_id.octets());
    body.push(params.len() as u8);
    body.extend_from_slice(&params);
    message(msg_type::OPEN, &body)
}

/// Append one attribute, with the extended-length flag set exactly when needed.
fn push_attr(out: &mut Vec<u8>, flags: u8, code: u8, value: &[u8]) {
    if value.len() > 255 {
        out.push(flags | flag::EXTENDED_LENGTH);
        out.push(code);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        out.push(flags & !flag::EXTENDED_LENGTH);
        out.push(code);
        out.push(value.len() as u8);
    }
    out.extend_from_slice(value);
}

fn update_message(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + withdrawn.len() + attrs.len() + nlri.len());
    body.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    message(msg_type::UPDATE, &body)
}

/// Room for withdrawn + attributes + NLRI in one UPDATE.
const UPDATE_ROOM: usize = MAX_MESSAGE_LEN - HEADER_LEN - 4;

/// The path attributes of `a` except NEXT_HOP and MP_*, each as (code, encoded attribute),
/// so the caller can slot NEXT_HOP / MP_REACH into type-code order.
fn encode_attributes(a: &PathAttributes, ctx: &CodecContext) -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = vec![];
    fn put_into(out: &mut Vec<(u8, Vec<u8>)>, flags: u8, code: u8, value: &[u8]) {
        let mut v = vec![];
        push_attr(&mut v, flags, code, value);
        out.push((code, v));
    }
    let mut put = |flags: u8, code: u8, value: &[u8]| put_into(&mut out, flags, code, value);
    put(flag::WELL_KNOWN, attr::ORIGIN, &[a.origin as u8]);
    // AS_PATH (RFC 4271 §4.3, RFC 6793 §4): AS_SEQUENCE segments of at most 255 ASNs.
    let mut as_path = vec![];
    let mut as4_path = vec![];
    let needs_as4 = !ctx.four_octet_as && a.as_path.iter().any(|asn| *asn > 0xffff);
    for seg in a.as_path.chunks(255) {
        as_path.extend_from_slice(&[2, seg.len() as u8]);
        as4_path.extend_from_slice(&[2, seg.len() as u8]);
        for asn in seg {
            if ctx.four_octet_as {
                as_path.extend_from_slice(&asn.to_be_bytes());
            } else {
                as_path.extend_from_slice(&u16::try_from(*asn).unwrap_or(AS_TRANS).to_be_bytes());
                as4_path.extend_from_slice(&asn.to_be_bytes());
            }
        }
    }
    put(flag::WELL_KNOWN, attr::AS_PATH, &as_path);
    if let Some(med) = a.med {
        put(flag::OPTIONAL, attr::MED, &med.to_be_bytes());
    }
    if let Some(lp) = a.local_pref {
        put(flag::WELL_KNOWN, attr::LOCAL_PREF, &lp.to_be_bytes());
    }
    if !a.communities.is_empty() {
        let v: Vec<u8> = a.communities.iter().flat_map(|c| c.to_be_bytes()).collect();
        put(flag::OPTIONAL_TRANSITIVE, attr::COMMUNITIES, &v);
    }
    if let Some(id) = a.originator_id {
        put(flag::OPTIONAL, attr::ORIGINATOR_ID, &id.octets());
    }
    if !a.cluster_list.is_empty() {
        let v: Vec<u8> = a.cluster_list.iter().flat_map(|c| c.octets()).collect();
        put(flag::OPTIONAL, attr::CLUSTER_LIST, &v);
    }
    if !a.ext_communities.is_empty() {
        let v: Vec<u8> = a.ext_communities.iter().flatten().copied().collect();
        put(flag::OPTIONAL_TRANSITIVE, attr::EXT_COMMUNITIES, &v);
    }
    // RFC 6793 §4.2.2: towards an OLD speaker, the real path rides in AS4_PATH.
    if needs_as4 {
        put(flag::OPTIONAL_TRANSITIVE, attr::AS4_PATH, &as4_path);
    }
    if let Some(p) = &a.pmsi_tunnel {
        // RFC 6514 §5: flags, tunnel type, MPLS label (3 bytes), tunnel identifier.
        let l = p.label.0.to_be_bytes();
        let mut v = vec![0, p.tunnel_type, l[1], l[2], l[3]];
        v.extend_from_slice(&p.endpoint.octets());
        put(flag::OPTIONAL_TRANSITIVE, attr::PMSI_TUNNEL, &v);
    }
    for u in &a.unknown {
        // RFC 4271 §5: an unrecognized optional transitive attribute is passed on with the
        // Partial bit set. Only optional transitive ones ever land in `unknown`; a code we
        // write ourselves (or twice) is not duplicated.
        let ours = [attr::NEXT_HOP, attr::MP_REACH, attr::MP_UNREACH];
        if out.iter().any(|(c, _)| *c == u.code) || ours.contains(&u.code) {
            continue;
        }
        let flags = (u.flags | flag::OPTIONAL_TRANSITIVE | flag::PARTIAL) & 0xf0;
        put_into(&mut out, flags, u.code, &u.value);
    }
    out.sort_by_key(|(code, _)| *code);
    out
}

/// Encode one NLRI as it appears in the classic fields or MP_REACH/MP_UNREACH.
fn encode_nlri(n: &Nlri, out: &mut Vec<u8>) {
    fn prefix(p: &carrier_dataplane::tables::Ipv4Prefix, out: &mut Vec<u8>) {
        let len = p.prefix_len();
        out.extend_from_slice(&p.addr().octets()[..usize::from(len).div_ceil(8)]);
    }
    fn label(l: super::msg::LabelField, out: &mut Vec<u8>) {
        out.extend_from_slice(&l.0.to_be_bytes()[1..]);
    }
    match n {
        Nlri::Ipv4 { prefix: p } => {
            out.push(p.prefix_len());
            prefix(p, out);
        }
        Nlri::Vpnv4 {
            rd,
            label: l,
            prefix: p,
        } => {
            // RFC 4364 §4.3.4 / RFC 8277 §2: length in bits covers label, RD and prefix.
            out.push(24 + 64 + p.prefix_len());
            label(*l, out);
            out.extend_from_slice(&rd.0);
            prefix(p, out);
        }
        Nlri::EvpnMacIp(route) => {
            let crate::bgp::msg::EvpnMacIp {
            rd,
            esi,
            eth_tag,
            mac,
            ip,
            label1,
            label2,
        } = &**route;
            // RFC 7432 §7.2.
            let mut v = rd.0.to_vec();
            v.extend_from_slice(esi);
            v.extend_from_slice(&eth_tag.to_be_bytes());
            v.push(48);
            v.extend_from_slice(&mac.0);
            match ip {
                Some(ip) => {
                    v.push(32);
                    v.extend_from_slice(&ip.octets());
                }
                None => v.push(0),
            }
            label(*label1, &mut v);
            if let Some(l2) = label2 {
                label(*l2, &mut v);
            }
            out.extend_from_slice(&[2, v.len() as u8]);
            out.extend_from_slice(&v);
        }
        Nlri::EvpnImet {
            rd,
            eth_tag,
            originator,
        } => {
            // RFC 7432 §7.3.
            out.extend_from_slice(&[3, 17]);
            out.extend_from_slice(&rd.0);
            out.extend_from_slice(&eth_tag.to_be_bytes());
            out.push(32);
            out.extend_from_slice(&originator.octets());
        }
        Nlri::EvpnPrefix(route) => {
            let crate::bgp::msg::EvpnPrefix {
            rd,
            esi,
            eth_tag,
            prefix: p,
            gateway,
            label: l,
        } = &**route;
            // RFC 9136 §3.1: the IPv4 prefix is always 4 bytes here.
            out.extend_from_slice(&[5, 34]);
            out.extend_from_slice(&rd.0);
            out.extend_from_slice(esi);
            out.extend_from_slice(&eth_tag.to_be_bytes());
            out.push(p.prefix_len());
            out.extend_from_slice(&p.addr().octets());
            out.extend_from_slice(&gateway.octets());
            label(*l, out);
        }
    }
}

fn encode_update(u: &Update, ctx: &CodecContext) -> Vec<u8> {
    use std::collections::BTreeMap;
    let mut w4: Vec<Vec<u8>> = vec![];
    let mut a4: Vec<Vec<u8>> = vec![];
    let mut mp_w: BTreeMap<Family, Vec<Vec<u8>>> = BTreeMap::new();
    let mut mp_a: BTreeMap<Family, Vec<Vec<u8>>> = BTreeMap::new();
    for n in &u.withdrawn {
        let mut v = vec![];
        encode_nlri(n, &mut v);
        match n.family() {
            Family::Ipv4Unicast => w4.push(v),
            f => mp_w.entry(f).or_default().push(v),
        }
    }
    for n in &u.announced {
        let mut v = vec![];
        encode_nlri(n, &mut v);
        match n.family() {
            Family::Ipv4Unicast => a4.push(v),
            f => mp_a.entry(f).or_default().push(v),
        }
    }
    let mut out = vec![];
    let next_hop = u.attributes.next_hop.unwrap_or_else(|| {
        if !u.announced.is_empty() {
            log::error!("BGP encode: announcement without a next hop; sending 0.0.0.0");
        }
        Ipv4Addr::UNSPECIFIED
    });
    let base = if u.announced.is_empty() {
        vec![]
    } else {
        encode_attributes(&u.attributes, ctx)
    };

    // IPv4 unicast in the classic fields.
    if !w4.is_empty() || !a4.is_empty() {
        let attrs = if a4.is_empty() {
            vec![]
        } else {
            let mut all = base.clone();
            let mut nh = vec![];
            push_attr(
                &mut nh,
                flag::WELL_KNOWN,
                attr::NEXT_HOP,
                &next_hop.octets(),
            );
            all.push((attr::NEXT_HOP, nh));
            all.sort_by_key(|(code, _)| *code);
            all.into_iter().flat_map(|(_, v)| v).collect::<Vec<u8>>()
        };
        let mut wbuf: Vec<u8> = vec![];
        let mut nbuf: Vec<u8> = vec![];
        for w in &w4 {
            if wbuf.len() + w.len() > UPDATE_ROOM {
                out.extend(update_message(&wbuf, &[], &[]));
                wbuf.clear();
            }
            wbuf.extend_from_slice(w);
        }
        for a in &a4 {
            if wbuf.len() + attrs.len() + nbuf.len() + a.len() > UPDATE_ROOM {
                out.extend(update_message(
                    &wbuf,
                    if nbuf.is_empty() { &[] } else { &attrs },
                    &nbuf,
                ));
                wbuf.clear();
                nbuf.clear();
            }
            nbuf.extend_from_slice(a);
        }
        if !wbuf.is_empty() || !nbuf.is_empty() {
            out.extend(update_message(
                &wbuf,
                if nbuf.is_empty() { &[] } else { &attrs },
                &nbuf,
            ));
        }
    }

    // MP_UNREACH, one family per message (RFC 4760 §4).
    for (family, items) in &mp_w {
        // Attribute header (4, extended length) + AFI/SAFI (3).
        for chunk in chunk_nlri(items, UPDATE_ROOM - 4 - 3) {
            let mut v = afi_safi_bytes(*family).to_vec();
            v.extend_from_slice(&chunk);
            let mut attrs = vec![];
            push_attr(&mut attrs, flag::OPTIONAL, attr::MP_UNREACH, &v);
            out.extend(update_message(&[], &attrs, &[]));
        }
    }

    // MP_REACH with the path attributes, one family per message (RFC 4760 §3).
    let rest_len: usize = base.iter().map(|(_, v)| v.len()).sum();
    for (family, items) in &mp_a {
        let mut head = afi_safi_bytes(*family).to_vec();
        match family {
            // RFC 4364 §4.3.2: RD 0 then the IPv4 address.
            Family::Vpnv4 => {
                head.push(12);
                head.extend_from_slice(&[0; 8]);
            }
            _ => head.push(4),
        }
        head.extend_from_slice(&next_hop.octets());
        head.push(0); // reserved
        for chunk in chunk_nlri(
            items,
            UPDATE_ROOM
                .saturating_sub(rest_len + 4 + head.len())
                .max(64),
        ) {
            let mut v = head.clone();
            v.extend_from_slice(&chunk);
            let mut mp = vec![];
            push_attr(&mut mp, flag::OPTIONAL, attr::MP_REACH, &v);
            let mut attrs = vec![];
            for (code, a) in &base {
                if *code > attr::MP_REACH && !mp.is_empty() {
                    attrs.append(&mut mp);
                }
                attrs.extend_from_slice(a);
            }
            attrs.append(&mut mp);
            out.extend(update_message(&[], &attrs, &[]));
        }
    }
    if let Some(family) = u.eor {
        out.extend(encode_end_of_rib(family));
    }
    out
}

/// Concatenated NLRI in chunks of at most `room` bytes (every NLRI is well under 256 bytes).
fn chunk_nlri(items: &[Vec<u8>], room: usize) -> Vec<Vec<u8>> {
    let mut chunks = vec![];
    let mut cur: Vec<u8> = vec![];
    for i in items {
        if !cur.is_empty() && cur.len() + i.len() > room {
            chunks.push(std::mem::take(&mut cur));
        }
        cur.extend_from_slice(i);
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    chunks
}
