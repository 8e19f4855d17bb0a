//! The decoding path for `render -i`, `bench -i` and `play`: any bytes as an audio file (WAV by fxgraph's
//! reader, everything else probed and decoded by symphonia), converted to a 48 kHz stereo graph's format
//! (remixing, resampling) and read to the end. It must answer with samples or an error, never a panic,
//! and every sample it gives is finite.
#![no_main]

use fxgraph::GraphFormat;
use fxgraph::node::AudioOut;
use fxgraph::io::decode::AudioFile;
use fxgraph::io::stream::BlockSource;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        dir.join(format!("fxgraph-fuzz-decode-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("scratch file");
    let format = GraphFormat { sample_rate: 48000, channels: 2 };
    let Ok(mut source) = AudioFile::open(path, format) else { return };
    let block = 1024;
    let mut buf = vec![0.0f32; 2 * block];
    // Bounded: a hostile header may declare hours of audio; a few seconds exercise every path.
    let mut frames = 0;
    while frames < 48000 * 4 {
        match source.read(&mut AudioOut::new(&mut buf, block, 2, block)) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                assert!(n <= block);
                assert!(buf[..n].iter().chain(&buf[block..block + n]).all(|v| v.is_finite()), "non-finite sample");
                frames += n;
            }
        }
    }
});
