//! The package loader: any bytes as a `.tar.gz` plugin package, unpacked into a scratch folder under the
//! hostile-archive rules, its manifest parsed. It must answer with a package or an error, never a panic, and
//! never write outside the scratch folder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        dir.join(format!("fxgraph-fuzz-package-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let base = scratch();
    let _ = std::fs::remove_dir_all(base);
    let into = base.join("into");
    std::fs::create_dir_all(&into).expect("scratch folder");
    let archive = base.join("p.tar.gz");
    // Inputs that are not gzip are taken as the tar stream and compressed here, so mutations reach the tar
    // parsing instead of breaking the compression.
    if data.starts_with(&[0x1f, 0x8b]) {
        std::fs::write(&archive, data).expect("scratch file");
    } else {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).expect("compress");
        std::fs::write(&archive, gz.finish().expect("compress")).expect("scratch file");
    }
    if fxgraph::nodes::wasm::packages::unpack(&archive, &into).is_ok() {
        if let Ok(text) = std::fs::read_to_string(into.join("plugin.json")) {
            let _ = fxgraph::nodes::wasm::packages::PackageManifest::parse(&text);
        }
    }
    // Nothing was written beside the folder it was given.
    let beside: Vec<_> = std::fs::read_dir(base).expect("scratch").flatten().map(|e| e.file_name()).collect();
    assert!(beside.len() == 2, "{beside:?}");
});
