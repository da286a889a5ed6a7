//! BGP: messages, the wire codec, and the session state machine.
pub mod msg;
pub mod codec;
pub mod fsm;
