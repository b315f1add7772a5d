//! The C example and the C test program (`tests/c/ingest_test.c`), built with the
//! system's C compiler against `libingest.a` and run under valgrind (errors and
//! definite or indirect leaks fail the run), against the real Kafka of
//! `KAFKA_BOOTSTRAP`. What the C program submitted is then read back from Kafka and
//! compared byte for byte, with the key and headers `docs/events.md` documents.
//!
//! `scripts/test-bindings` builds the library and runs this; it needs `gcc` and
//! `valgrind` (the script installs them when missing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ingest_core::config::TopicConfig;
use ingest_core::IngestConfig;

const WAIT: Duration = Duration::from_secs(60);

/// The libraries `libingest.a` needs besides itself (`cargo rustc -p ingest-ffi --lib
/// --crate-type staticlib -- --print native-static-libs` lists them).
const NATIVE_LIBS: &[&str] = &[
    "-lcurl",
    "-lz",
    "-lssl",
    "-lcrypto",
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

fn kafka() -> String {
    testkit::bootstrap(
        "KAFKA_BOOTSTRAP",
        "KAFKA_STATE_DIR=/tmp/kafka-dev scripts/kafka start",
    )
}

/// The directory of the `libingest.a` to test: `INGEST_FFI_LIB_DIR` (e.g.
/// `target/release-ffi`), else the one cargo built next to this test's `deps/`.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = match std::env::var_os("INGEST_FFI_LIB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps/<test>")
            .to_owned(),
    };
    assert!(
        dir.join("libingest.a").exists(),
        "no libingest.a in {}: build it first (`cargo build -p ingest-ffi`, as scripts/test-bindings does)",
        dir.display()
    );
    dir
}

/// Compiles C sources into `out` with the system's C compiler, warnings as errors.
fn compile(sources: &[&str], out: &Path) {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("gcc")
        .args([
            "-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-O1", "-pthread",
        ])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .args(sources.iter().map(|s| crate_dir.join(s)))
        .arg(library_dir().join("libingest.a"))
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(out)
        .status()
        .expect("gcc runs (install it: apt-get install gcc)");
    assert!(status.success(), "compiling {sources:?} failed");
}

/// Runs `program` under valgrind: memory errors and definite or indirect leaks fail.
fn valgrind(program: &Path, args: &[&Path]) -> std::process::Output {
    let started = Instant::now();
    let output = Command::new("valgrind")
        .args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            concat!(
                "--suppressions=",
                env!("CARGO_MANIFEST_DIR"),
                "/tests/valgrind.supp"
            ),
        ])
        .arg(program)
        .args(args)
        .output()
        .expect("valgrind runs (install it: apt-get install valgrind)");
    eprintln!(
        "{} under valgrind: {:?}, {}\n--- stdout\n{}--- stderr\n{}",
        program.display(),
        started.elapsed(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn config(brokers: &str, prefix: &str) -> IngestConfig {
    let topic = |name: &str| TopicConfig {
        name: format!("{prefix}-{name}"),
        partitions: 2,
        replication_factor: 1,
    };
    let mut config = IngestConfig::default();
    config.kafka.brokers = brokers.to_owned();
    config.topics.product_view = topic("product-views");
    config.topics.cart = topic("cart-events");
    config.topics.purchase = topic("purchases");
    config.topics.search = topic("search-events");
    config.topics.dead_letter = topic("events-dlq");
    config.topics.custom = topic("custom-events");
    config
}

fn topics_toml(prefix: &str) -> String {
    [
        "product_view:product-views",
        "cart:cart-events",
        "purchase:purchases",
        "search:search-events",
        "dead_letter:events-dlq",
    ]
    .iter()
    .map(|pair| {
        let (key, name) = pair.split_once(':').expect("key:name");
        format!("[topics.{key}]\nname = \"{prefix}-{name}\"\npartitions = 2\n")
    })
    .collect()
}

#[test]
fn the_c_test_program_passes_under_valgrind_and_kafka_holds_what_it_sent() {
    let brokers = kafka();
    let prefix = testkit::unique("cabi");
    let settings = config(&brokers, &prefix).validate().expect("valid");
    ingest_core::ensure_topics_blocking(&settings, WAIT).expect("topics created");

    let work = tempfile::tempdir().expect("tempdir");
    let buffer = work.path().join("buffer");
    let toml = format!(
        "source = \"c-test\"\n[kafka]\nbrokers = \"{brokers}\"\nlinger_ms = 2\n\
         [buffer]\ntype = \"log\"\ndir = \"{}\"\n{}",
        buffer.display(),
        topics_toml(&prefix)
    );
    let topic = |name: &str| serde_json_topic(&prefix, name);
    let json = format!(
        r#"{{"source":"c-test","kafka":{{"brokers":"{brokers}","linger_ms":2}},"topics":{{"product_view":{},"cart":{},"purchase":{},"search":{},"dead_letter":{}}}}}"#,
        topic("product-views"),
        topic("cart-events"),
        topic("purchases"),
        topic("search-events"),
        topic("events-dlq")
    );
    let toml_path = work.path().join("config.toml");
    let json_path = work.path().join("config.json");
    let manifest_path = work.path().join("manifest.tsv");
    std::fs::write(&toml_path, toml).expect("write");
    std::fs::write(&json_path, json).expect("write");

    let program = work.path().join("ingest_test");
    compile(&["tests/c/ingest_test.c"], &program);
    let output = valgrind(&program, &[&toml_path, &json_path, &manifest_path]);
    assert!(
        output.status.success(),
        "the C test program failed (exit {:?}; 99 is a valgrind finding); see its output above",
        output.status.code()
    );

    let manifest = std::fs::read_to_string(&manifest_path).expect("manifest written");
    let mut expected: HashMap<&str, Vec<(&str, &str, &str)>> = HashMap::new();
    for line in manifest.lines() {
        let mut fields = line.splitn(4, '\t');
        let (Some(kind), Some(id), Some(key), Some(payload)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            panic!("malformed manifest line {line:?}");
        };
        expected.entry(kind).or_default().push((id, key, payload));
    }
    let total: usize = expected.values().map(Vec::len).sum();
    assert_eq!(
        total,
        4 + 2 + 8 * 25,
        "every accepted event is in the manifest"
    );
    let topic_of = |kind: &str| match kind {
        "product_view" => settings.config().topics.product_view.name.clone(),
        "cart" => settings.config().topics.cart.name.clone(),
        "purchase" => settings.config().topics.purchase.name.clone(),
        "search" => settings.config().topics.search.name.clone(),
        other => panic!("unknown kind {other}"),
    };
    for (kind, events) in &expected {
        let records = testkit::consume(&brokers, &topic_of(kind), events.len(), WAIT);
        assert_eq!(
            records.len(),
            events.len(),
            "{kind}: exactly what was acknowledged"
        );
        let by_id: HashMap<&str, &testkit::Consumed> =
            records.iter().map(|r| (r.header("event_id"), r)).collect();
        for (id, key, payload) in events {
            let record = by_id
                .get(id)
                .unwrap_or_else(|| panic!("{kind} event {id} is not in Kafka"));
            assert_eq!(record.payload, payload.as_bytes(), "byte for byte");
            assert_eq!(record.key.as_deref(), Some(key.as_bytes()), "keyed by user");
            assert_eq!(record.header("event_type"), *kind);
            assert_eq!(record.header("schema"), format!("json:{kind}/v1"));
            assert_eq!(record.header("source"), "c-test");
            assert!(!record.header("received_at").is_empty());
        }
    }
    // The rejected events went to the dead-letter topic with their reasons.
    let dead = testkit::consume(
        &brokers,
        &settings.config().topics.dead_letter.name,
        5,
        WAIT,
    );
    let codes: Vec<&str> = dead.iter().map(|r| r.header("error_code")).collect();
    for code in [
        "missing_field",
        "invalid_json",
        "event_too_large",
        "empty_body",
    ] {
        assert!(codes.contains(&code), "{code} dead-lettered: {codes:?}");
    }
}

fn serde_json_topic(prefix: &str, name: &str) -> String {
    format!(r#"{{"name":"{prefix}-{name}","partitions":2}}"#)
}

#[test]
fn the_example_delivers_under_valgrind() {
    let brokers = kafka();
    let mut config = IngestConfig::default();
    config.kafka.brokers = brokers.clone();
    let settings = config.validate().expect("valid");
    ingest_core::ensure_topics_blocking(&settings, WAIT).expect("default topics");
    let work = tempfile::tempdir().expect("tempdir");
    let program = work.path().join("submit");
    compile(&["examples/submit.c"], &program);
    let output = valgrind(&program, &[Path::new(&brokers)]);
    assert!(
        output.status.success(),
        "the example failed; see its output above"
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("delivered "));
}

#[test]
fn the_readme_example_runs_as_written() {
    let brokers = kafka();
    let mut config = IngestConfig::default();
    config.kafka.brokers = brokers.clone();
    let settings = config.validate().expect("valid");
    ingest_core::ensure_topics_blocking(&settings, WAIT).expect("default topics");
    let readme = include_str!("../README.md");
    let start = readme.find("```c\n").expect("the README has a C block") + "```c\n".len();
    let end = start + readme[start..].find("```").expect("the block ends");
    // Only the broker's address differs from the README.
    let source = readme[start..end].replace("127.0.0.1:9092", &brokers);
    let work = tempfile::tempdir().expect("tempdir");
    let source_path = work.path().join("readme.c");
    std::fs::write(&source_path, source).expect("write");
    let program = work.path().join("readme");
    compile(&[source_path.to_str().expect("UTF-8 path")], &program);
    let output = Command::new(&program).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.starts_with("ok "),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
