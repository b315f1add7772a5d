//! Configuration files: arbitrary text read as the edge agent's TOML file
//! (`AgentConfig::layers`, edge-agent/src/config.rs) or as ingest-core's
//! (`IngestConfig::from_toml`, the sections the agent and the bindings share), through
//! ingest-common's layering, then validated and printed as `--check-config` prints it.
//!
//! The first byte chooses: even, the agent's file; odd, ingest-core's. The rest is the
//! text (UTF-8 only: a file that is not is refused before TOML sees it).
//!
//! Invariants, beyond "no panic":
//! - A refused file names a key, or a position in the text (`line N, column M`).
//! - A refused configuration names the offending key.
//! - A configuration that validates survives a round trip: the `--check-config` report
//!   (secrets masked), read back as a file, gives exactly the masked configuration, and
//!   that validates too (for the agent, unless API keys were masked: a mask is too short
//!   to be a key).
//! - The report shows no secret of the input: secret-named `kafka.properties` read back
//!   as the mask, API keys as the mask, and the registry's URL and the other properties
//!   without the `user:password@` of a URL they held.
#![no_main]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use ingest_common::secret::{is_secret_name, REDACTED};
use ingest_common::{ConfigError, Layers, Loaded};
use ingest_core::IngestConfig;
use ingest_fuzz::agent_config::{AgentConfig, Overrides, MASK};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode % 2 == 0 {
        agent(text);
    } else {
        ingest(text);
    }
});

/// A file the agent's loader reads, rewritten for every input (the loader takes a path).
fn config_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory").keep();
        dir.join("edge-agent.toml")
    })
}

fn agent(text: &str) {
    let path = config_file();
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write the configuration file");
    let loaded = match AgentConfig::layers(Some(path), std::iter::empty(), &Overrides::default()) {
        Ok(loaded) => loaded,
        Err(e) => return check_load_error(&e),
    };
    let config = &loaded.config;
    if let Err(e) = config.validate() {
        assert!(
            !e.key().is_empty(),
            "a refused configuration names no key: {e}"
        );
        return;
    }
    let masked = config.redacted();
    let report = loaded
        .check_config_report("edge-agent", &masked)
        .expect("a valid configuration prints");
    let again = read_back::<AgentConfig>(&report);
    assert!(
        again == masked,
        "the report reads back differently:\n{report}"
    );
    if config.auth.keys.is_empty() {
        if let Err(e) = again.validate() {
            panic!("the printed configuration does not validate: {e}\n{report}");
        }
    }
    for key in &again.auth.keys {
        assert_eq!(key.key, MASK, "an API key printed");
    }
    check_properties(&config.kafka.properties, &again.kafka.properties);
    check_url(&config.avro.registry_url, &again.avro.registry_url);
}

fn ingest(text: &str) {
    let parsed = IngestConfig::from_toml(text);
    let loaded: Result<Loaded<IngestConfig>, ConfigError> =
        Layers::<IngestConfig>::new().and_then(|l| l.toml(text)?.load());
    let loaded = match (parsed, loaded) {
        (Ok(parsed), Ok(loaded)) => {
            assert!(parsed == loaded.config, "from_toml and the layers disagree");
            loaded
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            return check_load_error(&a);
        }
        (a, b) => panic!(
            "from_toml and the layers disagree: {:?} / {:?}",
            a.err(),
            b.err()
        ),
    };
    let config = &loaded.config;
    let settings = match config.validate() {
        Ok(settings) => settings,
        Err(e) => {
            assert!(
                !e.key().is_empty(),
                "a refused configuration names no key: {e}"
            );
            return;
        }
    };
    let masked = config.redacted();
    let report = loaded
        .check_config_report("ingest", &masked)
        .expect("a valid configuration prints");
    let again = read_back::<IngestConfig>(&report);
    assert!(
        again == masked,
        "the report reads back differently:\n{report}"
    );
    let settings_again = match again.validate() {
        Ok(s) => s,
        Err(e) => panic!("the printed configuration does not validate: {e}\n{report}"),
    };
    assert_eq!(settings.limits(), settings_again.limits());
    for kind in ingest_core::EventKind::ALL {
        assert_eq!(settings.topic(kind), settings_again.topic(kind));
    }
    assert_eq!(settings.custom_topic(), settings_again.custom_topic());
    assert_eq!(settings.has_disk_buffer(), settings_again.has_disk_buffer());
    check_properties(&config.kafka.properties, &again.kafka.properties);
}

fn read_back<T>(report: &str) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned + Default,
{
    match Layers::<T>::new().and_then(|l| l.toml(report)?.load()) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("the report does not read back: {e}\n{report}"),
    }
}

/// A file that does not load: a key is named, or the text's position.
fn check_load_error(e: &ConfigError) {
    let reason = e.reason();
    assert!(
        !e.key().is_empty() || (reason.contains("line ") && reason.contains("column")),
        "neither a key nor a position: {e}"
    );
}

/// Secret-named properties read back from the report as the mask; the others without
/// the password of a URL they held.
fn check_properties(input: &BTreeMap<String, String>, printed: &BTreeMap<String, String>) {
    for (name, value) in input {
        let shown = printed.get(name).map(String::as_str);
        if is_secret_name(name) {
            assert_eq!(shown, Some(REDACTED), "{name} printed");
        } else {
            check_url(value, shown.unwrap_or_default());
        }
    }
}

/// `printed` (a value as the report shows it) does not hold the `user:password@` of
/// `url` (`scheme://user:password@host/...`).
fn check_url(url: &str, printed: &str) {
    let Some((_, rest)) = url.split_once("://") else {
        return;
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return;
    };
    let userinfo = &authority[..at];
    let Some((_, password)) = userinfo.split_once(':') else {
        return;
    };
    if password.is_empty() || password == ingest_common::secret::URL_PASSWORD_MASK {
        return;
    }
    let shown = format!("{userinfo}@");
    assert!(
        !printed.contains(&shown),
        "a URL password printed: {url:?} as {printed:?}"
    );
}
