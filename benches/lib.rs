//! fxgraph's benchmarks live in `engine.rs` (`cargo bench -p fxgraph-benches --bench engine`) and in the
//! Python scripts beside it; this library only gives the crate a home. See BENCHMARKS.md.
