//! Getting audio in and out: WAV files, the built-in demo signal, and offline rendering through the audio
//! side.

pub mod decode;
pub mod demo;
pub mod render;
pub mod wav;
