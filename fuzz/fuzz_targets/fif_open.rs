//! Fuzzes `FifReader::open` and the data reads of whatever opens.
#![no_main]

use bf_pipeline::formats::fif::FifReader;
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::write("x_raw.fif", data);
    match FifReader::open(&path) {
        Ok(r) => common::exercise(&r),
        // Split files (FIFFB_REF) are looked up beside the input, still in the scratch dir.
        Err(e) => common::check_err(&e, Some(common::workdir())),
    }
});
