//! The control config parser on arbitrary text: an error or a config, never a panic; a config
//! that parses differs from itself in nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = carrier_control::config::ControlConfig::parse(text) {
        assert!(carrier_control::config::diff(&c, &c).is_empty());
    }
    let _ = carrier_dataplane::config::Config::parse(text).map(|c| c.tables());
});
