//! Getting audio in and out: streams of blocks, WAV files, other formats through symphonia (decoded,
//! resampled and remixed to a graph's format), and the built-in demo signal.

pub mod decode;
pub mod demo;
pub mod stream;
pub mod wav;
