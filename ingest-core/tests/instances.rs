//! Two ingestors in one process keep their own metric series: every series carries the
//! `ingestor` label (`telemetry.instance`, by default `ingestor-N`). Needs no broker;
//! its own test binary, because it installs the process's metrics recorder.

use std::collections::BTreeMap;

use ingest_core::config::BufferType;
use ingest_core::{IngestConfig, Ingestor};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

fn config(dir: &std::path::Path, max_bytes: u64, instance: &str) -> IngestConfig {
    let mut config = IngestConfig::default();
    config.kafka.brokers = "127.0.0.1:1".to_owned();
    config.buffer.kind = BufferType::Log;
    config.buffer.dir = Some(dir.to_path_buf());
    config.buffer.max_bytes = max_bytes;
    config.buffer.segment_bytes = 1 << 20;
    config.telemetry.instance = instance.to_owned();
    config
}

#[test]
fn two_ingestors_in_one_process_keep_their_own_series() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this test binary");

    let (a, b, c) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let first = Ingestor::builder()
        .config(config(a.path(), 8 << 20, "checkout"))
        .build()
        .expect("builds");
    let second = Ingestor::builder()
        .config(config(b.path(), 16 << 20, "catalog"))
        .build()
        .expect("builds");
    let unnamed = Ingestor::builder()
        .config(config(c.path(), 32 << 20, ""))
        .build()
        .expect("builds");

    let snapshot = snapshotter.snapshot().into_vec();
    let mut max_bytes = BTreeMap::new();
    for (key, _, _, value) in &snapshot {
        let name = key.key().name();
        let ingestor = key
            .key()
            .labels()
            .find(|l| l.key() == "ingestor")
            .map(|l| l.value().to_owned());
        let Some(ingestor) = ingestor else {
            panic!("{name} has no `ingestor` label: {:?}", key.key());
        };
        if name == "ingest_buffer_max_bytes" {
            if let DebugValue::Gauge(v) = value {
                max_bytes.insert(ingestor, v.into_inner());
            }
        }
    }
    assert_eq!(max_bytes.get("checkout"), Some(&f64::from(8u32 << 20)));
    assert_eq!(max_bytes.get("catalog"), Some(&f64::from(16u32 << 20)));
    let numbered: Vec<&String> = max_bytes
        .keys()
        .filter(|k| k.starts_with("ingestor-"))
        .collect();
    assert_eq!(numbered.len(), 1, "{max_bytes:?}");
    assert_eq!(max_bytes[numbered[0]], f64::from(32u32 << 20));
    drop((first, second, unnamed));
}
