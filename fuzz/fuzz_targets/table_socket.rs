//! The table socket on arbitrary bytes: framing, request decoding, and the table writer applying
//! whatever decodes to the tables of `examples/pe1.toml`. An error or a new generation, never a
//! panic. Random bytes rarely make a request, so half the inputs instead edit the JSON of a
//! valid request (pe1's own commands as an `apply`): the data says where and what to splice.
#![no_main]

use std::sync::OnceLock;

use carrier_dataplane::config::Config;
use carrier_dataplane::ctl::{read_frame, Request, TableWriter};
use carrier_dataplane::io::CounterBoard;
use carrier_dataplane::tables::{TableHandle, Tables};
use libfuzzer_sys::fuzz_target;

const PE1: &str = include_str!("../../examples/pe1.toml");

fn base() -> &'static (Tables, String) {
    static BASE: OnceLock<(Tables, String)> = OnceLock::new();
    BASE.get_or_init(|| {
        let config = Config::parse(PE1).expect("pe1.toml parses");
        let request = Request::Apply { commands: config.commands().expect("pe1.toml compiles"), more: false };
        (config.tables().expect("pe1.toml compiles"), serde_json::to_string(&request).expect("a request serialises"))
    })
}

fn apply(body: &[u8]) {
    let Ok(request) = serde_json::from_slice::<Request>(body) else { return };
    let (tables, _) = base();
    let mut writer = TableWriter::new(tables.clone(), TableHandle::new(tables.clone()));
    let _ = writer.handle(request, &CounterBoard::new(1));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let mut stream = rest;
        while let Ok(Some(frame)) = read_frame(&mut stream) {
            apply(&frame);
        }
    } else {
        // Splices: [position: 2 bytes][length: 1 byte][replacement up to a 0xff byte]...
        let mut text = base().1.clone().into_bytes();
        let mut d = rest;
        while d.len() >= 3 {
            let at = usize::from(u16::from_le_bytes([d[0], d[1]])) % (text.len() + 1);
            let cut = usize::from(d[2]).min(text.len() - at);
            let end = d[3..].iter().position(|&b| b == 0xff).map_or(d.len(), |p| p + 3);
            text.splice(at..at + cut, d[3..end].iter().copied());
            d = d.get(end + 1..).unwrap_or(&[]);
        }
        apply(&text);
    }
});
