//! Fuzzes `BrainVisionReader::open`: the input is the `.vhdr` text; a small valid data file
//! (`x.eeg`: 2 channels × 100 INT_16 samples, multiplexed) and marker file (`x.vmrk`) lie
//! beside it, so a header that names them (seeds do; the fuzzer may mutate the names) gets
//! through to the channel, marker and data code.
#![no_main]

use std::sync::Once;

use bf_pipeline::formats::brainvision::BrainVisionReader;
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

const VMRK: &str = "Brain Vision Data Exchange Marker File, Version 1.0\r\n\r\n\
[Common Infos]\r\nCodepage=UTF-8\r\nDataFile=x.eeg\r\n\r\n\
[Marker Infos]\r\n\
Mk1=New Segment,,1,1,0,20131113161403794232\r\n\
Mk2=Stimulus,S253,10,0,0\r\n\
Mk3=Response,R  1,50,5,1\r\n\
Mk4=Comment,a\\1b,99,1,0\r\n";

fn eeg() -> Vec<u8> {
    (0..200i16).flat_map(|i| (i * 37 - 3000).to_le_bytes()).collect()
}

fuzz_target!(|data: &[u8]| {
    static SIDE_FILES: Once = Once::new();
    // Written once per process; the reader never writes, so they stay valid.
    SIDE_FILES.call_once(|| {
        common::write("x.eeg", &eeg());
        common::write("x.vmrk", VMRK.as_bytes());
    });
    let path = common::write("x.vhdr", data);
    match BrainVisionReader::open(&path) {
        Ok(r) => common::exercise(&r),
        // DataFile/MarkerFile may name any path, so the error may name a file elsewhere.
        Err(e) => common::check_err(&e, None),
    }
});
