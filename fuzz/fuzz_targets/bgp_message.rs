//! BGP message decoding on arbitrary bytes, as a session reads them: the framing check, then
//! the decoder (for UPDATEs the RFC 7606 walker, then netgauze for what the walker let through).
//! A message or a decode error (a NOTIFICATION to send or an RFC 7606 action), never a panic;
//! and a message that decodes re-encodes to bytes that decode to the same routes and encode to
//! the same bytes again (an UPDATE that changes nothing encodes to nothing).
#![no_main]

use carrier_control::bgp::codec::{decode, encode, frame_len, CodecContext};
use carrier_control::bgp::msg::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else { return };
    let ctx = CodecContext { four_octet_as: flags & 1 == 1, add_path: false };
    if !matches!(frame_len(bytes), Ok(Some(len)) if len == bytes.len()) {
        // The session never hands the decoder anything else; the decoder must still cope.
        let _ = decode(bytes, &ctx);
        return;
    }
    if let Ok(message) = decode(bytes, &ctx) {
        let again = encode(&message, &ctx);
        if again.is_empty() {
            // The encoder sends nothing only for an UPDATE that changes nothing (attributes
            // without a route, e.g. an MP_REACH of a family carrier does not know, discarded).
            match &message {
                Message::Update(u) => assert!(u.announced.is_empty() && u.withdrawn.is_empty() && u.eor.is_none(), "{message:?} encoded as nothing"),
                other => panic!("{other:?} encoded as nothing"),
            }
            return;
        }
        // Re-encoding is stable, and routes survive it. (Not the whole message: the encoder
        // sets the Partial bit of unknown transitive attributes it passes on, RFC 4271 §5.)
        match decode(&again, &ctx) {
            Ok(decoded) => {
                assert_eq!(encode(&decoded, &ctx), again, "{message:?} is not stable through encode/decode");
                if let (Message::Update(a), Message::Update(b)) = (&message, &decoded) {
                    assert_eq!((&a.announced, &a.withdrawn, &a.eor), (&b.announced, &b.withdrawn, &b.eor), "routes changed through encode/decode");
                } else {
                    assert_eq!(decoded, message, "re-encoded as {again:02x?}");
                }
            }
            Err(e) => panic!("{message:?} re-encoded as {again:02x?} does not decode: {e:?}"),
        }
    }
});
