//! Benchmarks of the ingestion platform. The suites live in `benches/`; run them with
//! `cargo bench -p ingest-benches`. Each suite measures the product next to a ceiling
//! taken in the same run, so results read as ratios that survive a noisy machine.
