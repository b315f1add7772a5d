//! Generates the C header from this crate's source into `$OUT_DIR/ingest.h`. The
//! committed `include/ingest.h` must equal it: `tests/header.rs` fails when it drifts,
//! and `INGEST_FFI_WRITE_HEADER=1 cargo test -p ingest-ffi --test header` rewrites it.

fn main() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    for input in ["src", "cbindgen.toml"] {
        println!("cargo:rerun-if-changed={input}");
    }
    let config = cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(format!("{crate_dir}/src/lib.rs"))
        .generate()
        .expect("the C header generates")
        .write_to_file(format!("{out_dir}/ingest.h"));
}
