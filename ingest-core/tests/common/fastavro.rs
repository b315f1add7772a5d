//! An independent Avro reader for the tests: Python's fastavro, in a virtual environment
//! under the repository's `.cache/avro-venv` (created, and fastavro installed from PyPI,
//! on first use).

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python virtual environment with fastavro, under the repository's `.cache/`.
pub fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = root.join(".cache/avro-venv");
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import fastavro"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !ready(&python) {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(status.success(), "python3 -m venv {}", venv.display());
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "fastavro==1.*",
            ])
            .status()
            .expect("pip runs");
        assert!(status.success(), "pip install fastavro");
    }
    python
}

/// Decodes a wire-format record with fastavro: the schema id from the record's header,
/// the schema from the registry (`GET /schemas/ids/<id>`), the body with
/// `schemaless_reader`. Prints the record as JSON.
const FASTAVRO_READER: &str = r#"
import io, json, struct, sys, urllib.request
import fastavro
base, path = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
magic, schema_id = struct.unpack(">bI", data[:5])
assert magic == 0, magic
with urllib.request.urlopen(f"{base}/schemas/ids/{schema_id}") as answer:
    schema = fastavro.parse_schema(json.loads(json.loads(answer.read())["schema"]))
body = io.BytesIO(data[5:])
record = fastavro.schemaless_reader(body, schema)
assert body.read() == b"", "bytes left after the record"
print(json.dumps({"schema_id": schema_id, "record": record}))
"#;

/// Decodes the wire-format record in the file at `path` with fastavro, fetching its schema
/// from the registry API at `base`; the record as JSON, with its `schema_id`.
pub fn decode(base: &str, path: &Path) -> serde_json::Value {
    let out = Command::new(python())
        .args(["-c", FASTAVRO_READER, base])
        .arg(path)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "fastavro: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}
