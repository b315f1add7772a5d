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
        // The deprecated name still works, with a warning naming the new one.
        .env("EDGE_AGENT_KAFKA_LINGER_MS", "9")
        .env("EDGE_AGENT_SERVER__MAX_CONNECTIONS", "77")
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
    // Every line names where its value came from.
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} in {text}"))
            .to_owned()
    };
    assert!(
        line("kafka.brokers = ").ends_with("# flag --brokers"),
        "{text}"
    );
    assert!(line("kafka.linger_ms = 9").ends_with("# env EDGE_AGENT_KAFKA_LINGER_MS"));
    assert!(
        line("server.max_connections = 77").ends_with("# env EDGE_AGENT_SERVER__MAX_CONNECTIONS")
    );
    assert!(line("buffer.type = \"log\"").ends_with("# flag --buffer-dir"));
    assert!(line("server.listen = ").ends_with("# default"));
    assert!(line("kafka.properties.\"sasl.password\" = \"<redacted>\"")
        .ends_with(&format!("# file {}", file.display())));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "EDGE_AGENT_KAFKA_LINGER_MS is deprecated: set EDGE_AGENT_KAFKA__LINGER_MS instead"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("MAX_CONNECTIONS"), "{stderr}");
}

/// `--check-config` shows no secret anywhere (stdout or stderr): API keys, secret-named
/// Kafka properties (`sasl.oauthbearer.config` included), and a password inside the
/// URL of another property.
#[test]
fn check_config_never_prints_a_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "[auth]\nkeys = [{ source = \"shop\", key = \"s3cret-key-0123456789\" }]\n\
         [kafka.properties]\n\
         \"sasl.password\" = \"s3cret-1\"\n\
         \"sasl.oauthbearer.config\" = \"clientId=shop clientSecret=s3cret-2\"\n\
         \"sasl.oauthbearer.client.secret\" = \"s3cret-3\"\n\
         \"ssl.keystore.password\" = \"s3cret-4\"\n\
         \"sasl.oauthbearer.token.endpoint.url\" = \"https://shop:s3cret-5@idp/token\"\n\
         \"sasl.oauthbearer.extensions\" = \"logicalCluster=lkc-1,password=s3cret-6\"\n\
         \"sasl.oauthbearer.scope\" = \"http://shop:s3cret-7@example\"\n",
    )
    .expect("write");
    let output = agent()
        .args(["--check-config", "--brokers", "k1:9092"])
        .arg("--config")
        .arg(&file)
        .env("EDGE_AGENT_KAFKA__PROPERTIES__SASL_USERNAME", "shop")
        .output()
        .expect("runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout} {stderr}");
    assert!(
        !stdout.contains("s3cret") && !stderr.contains("s3cret"),
        "{stdout} {stderr}"
    );
    assert!(stdout.contains("http://shop:****@example"), "{stdout}");
    assert!(
        stdout.contains("logicalCluster=lkc-1,password=****"),
        "{stdout}"
    );
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
    let output = agent()
        .arg("--check-config")
        .env("EDGE_AGENT_QUEUE__MAX_EVENTS", "many")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`queue.max_events` (from environment variable EDGE_AGENT_QUEUE__MAX_EVENTS): \"many\" is not a valid integer"),
        "{stderr}"
    );
    let output = agent()
        .args(["--check-config", "--listen", "nowhere"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`server.listen` (from flag --listen)"),
        "{stderr}"
    );
    let output = agent()
        .arg("--check-config")
        .env("EDGE_AGENT_SERVER__LISTN", "127.0.0.1:1")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`server.listn` (from environment variable EDGE_AGENT_SERVER__LISTN): is not a configuration key"),
        "{stderr}"
    );
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

/// Logging to a full disk loses log lines, not the process: the log formatter's report
/// of a failed write went through `eprintln!`, whose panic aborted the agent.
#[cfg(target_os = "linux")]
#[test]
fn an_unwritable_stderr_does_not_take_the_agent_down() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    // No broker listens on port 1: librdkafka logs a connection error every second.
    let mut child = agent()
        .args(["--brokers", "127.0.0.1:1", "--listen", &listen])
        .env("EDGE_AGENT_LOG__LEVEL", "debug")
        .env("EDGE_AGENT_SERVER__SHUTDOWN_TIMEOUT_MS", "1000")
        .stderr(std::fs::File::create("/dev/full").expect("/dev/full"))
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        assert!(
            child.try_wait().expect("status").is_none(),
            "the agent exited"
        );
        assert!(Instant::now() < deadline, "the agent never answered");
        let Ok(mut stream) = TcpStream::connect(&listen) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let body = r#"{"user_id":"u1","product_id":"p1"}"#;
        write!(
            stream,
            "POST /api/events/product-view HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        break answer;
    };
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    // A few seconds of failing log writes (connection errors, debug lines).
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().expect("status").is_none(),
        "the agent died while its log writes failed"
    );
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let status = child.wait().expect("exits");
    assert_eq!(status.signal(), None, "ended by a signal: {status:?}");
}

/// Two agents on one buffer directory (a rolling update that starts the new pod before
/// the old one has stopped): the second refuses to start, naming the first, and so
/// does `buffer repair`; once the first has stopped, both work.
#[cfg(target_os = "linux")]
#[test]
fn a_second_agent_or_repair_refuses_a_buffer_in_use_naming_its_holder() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    let free_port = || {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    };
    let buffer = tempfile::tempdir().expect("buffer dir");
    let start = |listen: &str| {
        agent()
            .args(["--brokers", "127.0.0.1:1", "--listen", listen])
            .arg("--buffer-dir")
            .arg(buffer.path())
            .env("EDGE_AGENT_SERVER_SHUTDOWN_TIMEOUT_MS", "1000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starts")
    };
    let first_listen = format!("127.0.0.1:{}", free_port());
    let mut first = start(&first_listen);
    // Serving means the buffer is open (it is opened before the listener binds).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            first.try_wait().expect("status").is_none(),
            "the first agent exited"
        );
        assert!(Instant::now() < deadline, "the first agent never answered");
        if let Ok(mut stream) = TcpStream::connect(&first_listen) {
            write!(
                stream,
                "GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            )
            .expect("request");
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let holder = format!("pid={}", first.id());

    let mut second = start(&format!("127.0.0.1:{}", free_port()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while second.try_wait().expect("status").is_none() {
        if Instant::now() >= deadline {
            second.kill().expect("kill the second agent");
            let _ = second.wait();
            let _ = Command::new("kill")
                .args(["-TERM", &first.id().to_string()])
                .status();
            let _ = first.wait();
            panic!("a second agent started on a buffer directory in use");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = second
        .wait_with_output()
        .expect("the second agent's output");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("in use by") && stderr.contains(&holder),
        "the error names the holder ({holder}): {stderr}"
    );

    let repair = agent()
        .args(["buffer", "repair"])
        .arg(buffer.path())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&repair.stderr);
    assert_ne!(repair.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&holder), "{stderr}");
    // Inspection only reads, and stays available against a live buffer.
    let inspect = agent()
        .args(["buffer", "inspect"])
        .arg(buffer.path())
        .output()
        .expect("runs");
    assert!(inspect.status.success());

    Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .expect("kill");
    assert!(first.wait().expect("exits").code().is_some());
    let repair = agent()
        .args(["buffer", "repair"])
        .arg(buffer.path())
        .output()
        .expect("runs");
    assert!(
        repair.status.success(),
        "{}",
        String::from_utf8_lossy(&repair.stderr)
    );
}
