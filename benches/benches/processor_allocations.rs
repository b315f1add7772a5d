//! Heap allocations per event of the processor's per-event work (the same input as the
//! `processor` bench): decoding with the content check, and aggregation into one
//! checkpoint's rollup. Counted with dhat's allocator, so this target measures no time.
//!
//! ```text
//! cargo bench -p ingest-benches --bench processor_allocations
//! ```

mod processor_input;

use ingest_core::model::Event;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// Allocations made by `work`, and their bytes.
fn count(work: impl FnOnce()) -> (u64, u64) {
    let before = dhat::HeapStats::get();
    work();
    let after = dhat::HeapStats::get();
    (
        after.total_blocks - before.total_blocks,
        after.total_bytes - before.total_bytes,
    )
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let n = processor_input::EVENTS;
    let records = processor_input::records(n);
    let (blocks, bytes) = count(|| {
        for (kind, value) in &records {
            let event = Event::decode(*kind, value).expect("valid");
            event.check_content().expect("storable");
            std::hint::black_box(event);
        }
    });
    println!(
        "decode_and_check: {:.1} allocations and {:.0} bytes per event",
        blocks as f64 / n as f64,
        bytes as f64 / n as f64
    );
    assert!(blocks >= n as u64, "a decoded event owns its strings");

    let incoming = processor_input::incoming(n);
    let catalog = processor_input::catalog();
    let (blocks, bytes) = count(|| {
        std::hint::black_box(processor_input::aggregate(&catalog, &incoming));
    });
    println!(
        "aggregate: {:.1} allocations and {:.0} bytes per event",
        blocks as f64 / n as f64,
        bytes as f64 / n as f64
    );
    assert!(blocks > 0);
}
