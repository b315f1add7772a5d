//! The command line without services: `--check-config`, configuration errors and the
//! disk buffer tools.

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_masked() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "[auth]\nkeys = [{ source = \"shop\", key = \"secret-key-0123456789\" }]\n[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n",
    )
    .expect("write");
    let output = agent()
        .args([
            "--check-config",
            "--brokers",
            "k1:9092",
            "--buffer-dir",
            "/var/spool/agent",
        ])
        .arg("--config")
        .arg(&file)
        .env("EDGE_AGENT_KAFKA_LINGER_MS", "9")
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("brokers = \"k1:9092\""), "{text}");
    assert!(text.contains("linger_ms = 9"), "{text}");
    assert!(text.contains("dir = \"/var/spool/agent\""), "{text}");
    assert!(text.contains("type = \"log\""), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("secret-key"),
        "{text}"
    );
    assert!(text.contains("<redacted>"), "{text}");
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let output = agent()
        .args(["--check-config", "--listen", "nowhere"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("server.listen"));
    let output = agent()
        .arg("--check-config")
        .env("EDGE_AGENT_QUEUE_MAX_EVENTS", "many")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("EDGE_AGENT_QUEUE_MAX_EVENTS"));
}

#[test]
fn buffer_tools_report_verify_and_repair_damage() {
    let dir = tempfile::tempdir().expect("dir");
    // A buffer with records in two segments, then a flipped byte in the first.
    {
        let config = ingest_core::buffer::LogConfig {
            max_bytes: 1 << 20,
            segment_bytes: 4096,
            sync: ingest_core::buffer::SyncPolicy::Always,
        };
        let (log, _) = ingest_core::buffer::LogBuffer::open(dir.path(), config).expect("open");
        let payload = [7u8; 500];
        for _ in 0..20 {
            log.append(&[&payload[..]]).expect("append");
        }
    }
    let mut segments: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let mut bytes = std::fs::read(&segments[0]).expect("read");
    bytes[1000] ^= 0xFF;
    std::fs::write(&segments[0], bytes).expect("write");

    let run = |action: &str| {
        agent()
            .args(["buffer", action])
            .arg(dir.path())
            .output()
            .expect("runs")
    };
    let inspect = run("inspect");
    assert!(inspect.status.success());
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains("damaged:") && text.contains("quarantined"),
        "{text}"
    );
    assert_eq!(run("verify").status.code(), Some(1), "damage found");
    assert!(run("repair").status.success());
    assert!(dir.path().join("quarantine").is_dir());
    let verify = run("verify");
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
