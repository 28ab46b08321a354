//! Fuzzes `EdfReader::open` (as `.edf`, and also as `.bdf` when the input starts with 0xFF,
//! BioSemi's version byte) and the data reads of whatever opens.
#![no_main]

use bf_pipeline::formats::edf::EdfReader;
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

fn one(name: &str, data: &[u8]) {
    let path = common::write(name, data);
    match EdfReader::open(&path) {
        Ok(r) => common::exercise(&r),
        Err(e) => common::check_err(&e, Some(common::workdir())),
    }
}

fuzz_target!(|data: &[u8]| {
    one("x.edf", data);
    if data.first() == Some(&0xFF) {
        one("x.bdf", data);
    }
});
