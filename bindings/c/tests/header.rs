//! The committed `include/ingest.h` must be what cbindgen generates from the source
//! now (build.rs writes it to `$OUT_DIR`). Rewrite it with
//! `INGEST_FFI_WRITE_HEADER=1 cargo test -p ingest-ffi --test header`.

#[test]
fn the_committed_header_matches_the_source() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/ingest.h"));
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/ingest.h");
    if std::env::var_os("INGEST_FFI_WRITE_HEADER").is_some() {
        std::fs::write(committed_path, generated).expect("include/ingest.h written");
    }
    let committed = std::fs::read_to_string(committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "bindings/c/include/ingest.h differs from the Rust source: run \
         `INGEST_FFI_WRITE_HEADER=1 cargo test -p ingest-ffi --test header` and commit it"
    );
}
