//! The command line, run as a process (no services needed).

use std::process::Command;

fn processor() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_processor"));
    for (name, _) in std::env::vars() {
        if name.starts_with("PROCESSOR_") {
            command.env_remove(name);
        }
    }
    command
}

#[test]
fn check_config_prints_the_effective_layers_with_secrets_masked() {
    let dir = std::env::temp_dir().join(format!("processor-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("processor.toml");
    std::fs::write(
        &file,
        "reporting_currency = \"USD\"\n[kafka]\ngroup_id = \"from-file\"\n[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n",
    )
    .expect("config file");
    let output = processor()
        .arg("--config")
        .arg(&file)
        .args([
            "--postgres",
            "postgres://app:s3cret@db:5432/shop",
            "--check-config",
        ])
        .env("PROCESSOR_KAFKA__GROUP_ID", "from-env")
        .env("PROCESSOR_CHECKPOINT__INTERVAL_MS", "250")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("reporting_currency = \"USD\""), "{stdout}");
    assert!(stdout.contains("group_id = \"from-env\""), "{stdout}");
    assert!(stdout.contains("interval_ms = 250"), "{stdout}");
    assert!(
        stdout.contains("postgres://app:****@db:5432/shop"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("s3cret") && !stdout.contains("hunter2"),
        "{stdout}"
    );
    // The shared format: one line per key with its origin.
    let line = |start: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} in {stdout}"))
            .to_owned()
    };
    assert!(
        stdout.starts_with("# processor: effective configuration"),
        "{stdout}"
    );
    assert!(line("kafka.group_id = ").ends_with("# env PROCESSOR_KAFKA__GROUP_ID"));
    assert!(line("reporting_currency = ").ends_with(&format!("# file {}", file.display())));
    assert!(line("postgres.url = ").ends_with("# flag --postgres"));
    assert!(line("dedup.window_minutes = ").ends_with("# default"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--check-config` shows no password, wherever the configuration holds one: URL user
/// information, `password=` query parameters, secret-named Kafka properties
/// (`sasl.oauthbearer.config` included), the search credentials; and a PostgreSQL
/// `key=value` connection string, which is refused, is not echoed either.
#[test]
fn check_config_never_prints_a_password() {
    let dir = std::env::temp_dir().join(format!("processor-cli-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("processor.toml");
    std::fs::write(
        &file,
        "[kafka.properties]\n\
         \"sasl.password\" = \"kafka-s3cret-1\"\n\
         \"sasl.oauthbearer.config\" = \"clientId=shop clientSecret=s3cret-2\"\n\
         \"sasl.oauthbearer.client.secret\" = \"s3cret-3\"\n\
         \"ssl.keystore.password\" = \"s3cret-4\"\n\
         [search]\nusername = \"shop\"\npassword = \"s3cret-5\"\nurl = \"https://search:9200\"\n",
    )
    .expect("config file");
    let output = processor()
        .arg("--config")
        .arg(&file)
        .arg("--check-config")
        .env(
            "PROCESSOR_POSTGRES__URL",
            "postgres://app:s3cret-6@db:5432/shop?sslmode=disable&password=s3cret-7",
        )
        .env("PROCESSOR_REDIS__URL", "redis://:s3cret-8@cache:6379/0")
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
    assert!(
        stdout.contains("postgres://app:****@db:5432/shop?sslmode=disable&password=****"),
        "{stdout}"
    );

    // A key/value connection string is refused (the URL form is required), without
    // echoing it.
    let output = processor()
        .arg("--check-config")
        .env(
            "PROCESSOR_POSTGRES__URL",
            "host=db user=app password=s3cret-9",
        )
        .output()
        .expect("runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(!output.status.success());
    assert!(stderr.contains("postgres.url"), "{stderr}");
    assert!(
        !stdout.contains("s3cret") && !stderr.contains("s3cret"),
        "{stdout} {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_key_fails_with_its_name() {
    let output = processor()
        .arg("--check-config")
        .env("PROCESSOR_WINDOWS__ALLOWED_LATENESS_SECONDS", "5")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("allowed_lateness_seconds"), "{stderr}");
    assert_eq!(
        output.status.code(),
        Some(2),
        "2 for a bad configuration, as the agent"
    );
    assert!(
        stderr.contains("`windows.allowed_lateness_seconds` (from environment variable PROCESSOR_WINDOWS__ALLOWED_LATENESS_SECONDS): is not a configuration key"),
        "{stderr}"
    );
    let output = processor()
        .args(["--check-config", "--listen", "nowhere"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`listen` (from flag --listen)"), "{stderr}");
}
