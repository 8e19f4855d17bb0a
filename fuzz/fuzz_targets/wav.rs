//! The WAV reader: header parsing (RIFF and RF64, fmt and extensible, chunk walking) and sample decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(channels) = fxgraph::io::wav::decode_bytes(data) {
        let info = fxgraph::io::wav::parse_header(data).expect("a file that decodes has a header");
        assert_eq!(channels.len(), info.channels);
        for c in &channels {
            assert_eq!(c.len() as u64, info.frames);
            assert!(c.iter().all(|v| v.is_finite() || info.float));
        }
    }
});
