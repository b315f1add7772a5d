use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Sample {
    listen: String,
    create_topics: bool,
    server: Server,
    kafka: Kafka,
    rate_limit: RateLimit,
}

impl Default for Sample {
    fn default() -> Self {
        Sample {
            listen: "127.0.0.1:1".to_owned(),
            create_topics: false,
            server: Server::default(),
            kafka: Kafka::default(),
            rate_limit: RateLimit::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Server {
    max_connections: usize,
    origins: Vec<String>,
    dir: Option<std::path::PathBuf>,
    ratio: f64,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            max_connections: 10,
            origins: Vec::new(),
            dir: None,
            ratio: 0.5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Kafka {
    brokers: String,
    linger_ms: u64,
    properties: BTreeMap<String, String>,
}

impl Default for Kafka {
    fn default() -> Self {
        Kafka {
            brokers: "k:9092".to_owned(),
            linger_ms: 5,
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RateLimit {
    global_per_sec: u32,
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const NAMES: EnvNames<'static> = EnvNames {
    prefix: "APP_",
    legacy: false,
};

fn layers() -> Layers<Sample> {
    Layers::new().expect("defaults")
}

#[test]
fn defaults_alone_give_the_default_with_default_origins() {
    let loaded = layers().load().expect("loads");
    assert_eq!(loaded.config, Sample::default());
    assert_eq!(loaded.origin("kafka.linger_ms"), Origin::Default);
    assert!(loaded.deprecations().is_empty());
}

#[test]
fn each_layer_overrides_the_one_before_and_is_recorded() {
    let dir = std::env::temp_dir().join(format!("layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("app.toml");
    std::fs::write(
        &file,
        "listen = \"file:1\"\n[kafka]\nlinger_ms = 7\nbrokers = \"file:9092\"\n[kafka.properties]\n\"sasl.username\" = \"shop\"\n",
    )
    .expect("write");
    let loaded = layers()
        .file(&file)
        .expect("file")
        .env(
            NAMES,
            env(&[
                ("APP_KAFKA__LINGER_MS", "9"),
                ("APP_LISTEN", "env:1"),
                ("APP_SERVER__ORIGINS", "https://a, https://b"),
                ("APP_SERVER__DIR", "/var/spool"),
                ("APP_SERVER__RATIO", "0.25"),
                ("APP_CREATE_TOPICS", "true"),
                ("OTHER", "ignored"),
            ]),
        )
        .expect("env")
        .flag("listen", "--listen", "flag:1")
        .expect("flag")
        .load()
        .expect("loads");
    let config = &loaded.config;
    assert_eq!(config.listen, "flag:1");
    assert_eq!(config.kafka.linger_ms, 9);
    assert_eq!(config.kafka.brokers, "file:9092");
    assert_eq!(config.kafka.properties["sasl.username"], "shop");
    assert_eq!(config.server.origins, ["https://a", "https://b"]);
    assert_eq!(config.server.dir.as_deref(), Some(dir_path("/var/spool")));
    assert_eq!(config.server.ratio, 0.25);
    assert!(config.create_topics);
    assert_eq!(config.server.max_connections, 10);

    assert_eq!(loaded.origin("listen"), Origin::Flag("--listen".into()));
    assert_eq!(
        loaded.origin("kafka.linger_ms"),
        Origin::Env("APP_KAFKA__LINGER_MS".into())
    );
    assert_eq!(loaded.origin("kafka.brokers"), Origin::File(file.clone()));
    assert_eq!(
        loaded.origin("kafka.properties.sasl.username"),
        Origin::File(file.clone())
    );
    assert_eq!(loaded.origin("server.max_connections"), Origin::Default);
    let _ = std::fs::remove_dir_all(&dir);
}

fn dir_path(s: &str) -> &std::path::Path {
    std::path::Path::new(s)
}

#[test]
fn toml_and_json_text_layers() {
    let from_toml = layers()
        .toml("[kafka]\nlinger_ms = 3")
        .expect("toml")
        .load()
        .expect("loads");
    let from_json = layers()
        .json(r#"{"kafka": {"linger_ms": 3}}"#)
        .expect("json")
        .load()
        .expect("loads");
    assert_eq!(from_toml.config, from_json.config);
    assert_eq!(from_json.config.kafka.linger_ms, 3);
    assert_eq!(from_json.origin("kafka.linger_ms"), Origin::Text("JSON"));
    let err = layers().json("[1, 2]").err().expect("not an object");
    assert_eq!(err.to_string(), "JSON text: is not a table of keys");
    let err = layers().toml("[kafka\n").err().expect("syntax");
    assert!(err.to_string().starts_with("TOML text: "), "{err}");
}

/// A syntax error names where it is: the message alone ("expected `.`, `=`") named
/// neither a key nor a place in the file (found by the fuzz target `config`).
#[test]
fn a_toml_syntax_error_names_its_line_and_column() {
    let err = layers()
        .toml("source = \"\"\n\n[kafka]\nbrokers\n")
        .err()
        .expect("syntax");
    assert_eq!(err.key(), "");
    assert!(
        err.reason().ends_with("at line 4, column 8"),
        "{}",
        err.reason()
    );
    let err = layers().toml("[kafka\n").err().expect("syntax");
    assert!(err.reason().contains("at line 1, column "), "{err}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let err = layers()
        .file(std::path::Path::new("/nonexistent/app.toml"))
        .err()
        .expect("missing");
    assert!(
        err.to_string()
            .starts_with("file /nonexistent/app.toml: cannot be read"),
        "{err}"
    );
}

#[test]
fn errors_name_the_key_its_origin_and_why() {
    let err = layers()
        .toml("[kafka]\nbrokerz = \"x\"")
        .expect("parses")
        .load()
        .expect_err("unknown");
    assert_eq!(err.key(), "kafka.brokerz");
    assert_eq!(err.origin(), Some(&Origin::Text("TOML")));
    let text = err.to_string();
    assert!(
        text.starts_with(
            "invalid configuration `kafka.brokerz` (from TOML text): is not a configuration key"
        ),
        "{text}"
    );
    assert!(text.contains("`linger_ms`"), "lists the known keys: {text}");

    let err = layers()
        .env(NAMES, env(&[("APP_KAFKA__LINGER_MS", "soon")]))
        .err()
        .expect("not a number");
    assert_eq!(
        err.to_string(),
        "invalid configuration `kafka.linger_ms` (from environment variable APP_KAFKA__LINGER_MS): \"soon\" is not a valid integer"
    );

    let err = layers()
        .env(NAMES, env(&[("APP_NOPE", "1")]))
        .expect("set")
        .load()
        .expect_err("unknown");
    assert_eq!(err.key(), "nope");
    assert_eq!(err.origin(), Some(&Origin::Env("APP_NOPE".into())));

    let err = layers()
        .env(NAMES, env(&[("APP_KAFKA__LINGER_MS", "-1")]))
        .expect("an integer")
        .load()
        .expect_err("negative");
    assert_eq!(err.key(), "kafka.linger_ms");
    assert!(err.to_string().contains("APP_KAFKA__LINGER_MS"), "{err}");

    let err = layers()
        .env(NAMES, env(&[("APP_KAFKA____X", "1")]))
        .err()
        .expect("empty part");
    assert!(
        err.to_string().contains("names no configuration key"),
        "{err}"
    );

    // A validation error of the caller's gets the origin of its key.
    let loaded = layers()
        .flag("server.max_connections", "--max-connections", 0)
        .expect("flag")
        .load()
        .expect("loads");
    let err = loaded.explain(ConfigError::new("server.max_connections", "must be > 0"));
    assert_eq!(
        err.to_string(),
        "invalid configuration `server.max_connections` (from flag --max-connections): must be > 0"
    );
    let err = loaded.explain(ConfigError::new("kafka.linger_ms", "too long"));
    assert_eq!(err.origin(), Some(&Origin::Default));
}

#[test]
fn legacy_single_underscore_names_are_matched_and_reported() {
    let loaded = layers()
        .env(
            NAMES.with_legacy_single_underscore(),
            env(&[
                ("APP_KAFKA_LINGER_MS", "9"),
                ("APP_RATE_LIMIT_GLOBAL_PER_SEC", "100"),
                ("APP_SERVER_DIR", "/spool"),
                ("APP_SERVER__MAX_CONNECTIONS", "3"),
                ("APP_CREATE_TOPICS", "true"),
            ]),
        )
        .expect("env")
        .load()
        .expect("loads");
    assert_eq!(loaded.config.kafka.linger_ms, 9);
    assert_eq!(loaded.config.rate_limit.global_per_sec, 100);
    assert_eq!(
        loaded.config.server.dir.as_deref(),
        Some(dir_path("/spool"))
    );
    assert_eq!(loaded.config.server.max_connections, 3);
    assert!(loaded.config.create_topics);
    let names: Vec<(&str, &str)> = loaded
        .deprecations()
        .iter()
        .map(|d| (d.variable.as_str(), d.replacement.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("APP_KAFKA_LINGER_MS", "APP_KAFKA__LINGER_MS"),
            (
                "APP_RATE_LIMIT_GLOBAL_PER_SEC",
                "APP_RATE_LIMIT__GLOBAL_PER_SEC"
            ),
            ("APP_SERVER_DIR", "APP_SERVER__DIR"),
        ],
        "new names and top-level keys are not deprecated"
    );
    assert_eq!(
        loaded.deprecations()[0].to_string(),
        "environment variable APP_KAFKA_LINGER_MS is deprecated: set APP_KAFKA__LINGER_MS instead (key `kafka.linger_ms`)"
    );
    assert_eq!(
        loaded.origin("kafka.linger_ms"),
        Origin::Env("APP_KAFKA_LINGER_MS".into())
    );
    let err = layers()
        .env(
            NAMES.with_legacy_single_underscore(),
            env(&[("APP_NOPE", "1")]),
        )
        .err()
        .expect("unknown");
    assert_eq!(
        err.to_string(),
        "environment variable APP_NOPE: names no configuration key"
    );
    // Without the legacy convention the old name is just an unknown key.
    let err = layers()
        .env(NAMES, env(&[("APP_KAFKA_LINGER_MS", "9")]))
        .expect("set")
        .load()
        .expect_err("unknown");
    assert_eq!(err.key(), "kafka_linger_ms");
}

#[test]
fn env_values_take_their_key_type() {
    let loaded = layers()
        .env(
            NAMES,
            env(&[
                ("APP_SERVER__ORIGINS", "[\"https://a\"]"),
                ("APP_KAFKA__PROPERTIES", "{ \"sasl.password\" = \"p\" }"),
                ("APP_KAFKA__BROKERS", "1234"),
            ]),
        )
        .expect("env")
        .load()
        .expect("loads");
    assert_eq!(loaded.config.server.origins, ["https://a"]);
    assert_eq!(loaded.config.kafka.properties["sasl.password"], "p");
    assert_eq!(
        loaded.config.kafka.brokers, "1234",
        "a string key stays a string"
    );
    let err = layers()
        .env(NAMES, env(&[("APP_CREATE_TOPICS", "yes")]))
        .err()
        .expect("not a bool");
    assert!(err.to_string().contains("is not a valid boolean"), "{err}");
}

#[test]
fn current_sees_the_layers_so_far() {
    let layers = layers().toml("[kafka]\nlinger_ms = 8").expect("toml");
    assert_eq!(layers.current::<u64>("kafka.linger_ms"), Some(8));
    assert_eq!(layers.current::<u64>("kafka.nothing"), None);
}

#[test]
fn the_check_config_report_is_toml_with_origins() {
    let loaded = layers()
        .toml("[kafka.properties]\n\"sasl.password\" = \"hunter2\"")
        .expect("toml")
        .env(
            NAMES.with_legacy_single_underscore(),
            env(&[("APP_KAFKA_LINGER_MS", "9")]),
        )
        .expect("env")
        .flag("listen", "--listen", "flag:1")
        .expect("flag")
        .load()
        .expect("loads");
    let mut masked = loaded.config.clone();
    crate::secret::mask_properties(masked.kafka.properties.iter_mut());
    let report = loaded.check_config_report("app", &masked).expect("report");
    assert!(
        report.starts_with("# app: effective configuration"),
        "{report}"
    );
    assert!(!report.contains("hunter2"), "{report}");
    let line = |key: &str| {
        report
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {report}"))
            .to_owned()
    };
    assert!(line("listen =").ends_with("# flag --listen"));
    assert!(line("kafka.linger_ms = 9").ends_with("# env APP_KAFKA_LINGER_MS"));
    assert!(line("kafka.brokers = \"k:9092\"").ends_with("# default"));
    assert!(line("kafka.properties.\"sasl.password\" = \"<redacted>\"").ends_with("# TOML text"));
    assert!(line("server.origins = []").ends_with("# default"));
    assert!(report.contains(
        "# warning: environment variable APP_KAFKA_LINGER_MS is deprecated: set APP_KAFKA__LINGER_MS instead"
    ));
    let read_back: Sample = toml::from_str(&report).expect("the report is TOML");
    assert_eq!(read_back, masked);
}

#[test]
fn drift_between_a_page_and_the_code_is_named() {
    let page = "# Page\n## Configuration\n| key | default |\n|---|---|\n| `a` | 1 |\n| `b` | 2 |\n## Next\n| key |\n|---|\n| `c` |\n";
    let section = markdown_section(page, "## Configuration", "## ").expect("section");
    assert!(check_documented("p.md", section, ["a".to_owned(), "b".to_owned()]).is_ok());
    let drift =
        check_documented("p.md", section, ["a".to_owned(), "z".to_owned()]).expect_err("drift");
    assert_eq!(
        drift,
        "p.md: undocumented keys [\"z\"], documented keys the code does not have [\"b\"]"
    );
    assert_eq!(markdown_section(page, "## Missing", "## "), None);
}

#[test]
fn leaf_and_documented_keys() {
    let mut keys = leaf_keys(&Sample::default());
    keys.sort();
    assert_eq!(
        keys,
        [
            "create_topics",
            "kafka.brokers",
            "kafka.linger_ms",
            "kafka.properties",
            "listen",
            "rate_limit.global_per_sec",
            "server.max_connections",
            "server.origins",
            "server.ratio",
        ]
    );
    let doc = "\
# Title\n\
| key | meaning |\n|---|---|\n| `listen` | x |\n\n\
### `[kafka]`\n\n| key | type |\n|---|---|\n| `brokers`, `linger_ms` | x |\n\n\
| property | use instead |\n|---|---|\n| `bootstrap.servers` | x |\n\n\
## Other\n\n| key | meaning |\n|---|---|\n| `server.ratio` | x |\n";
    assert_eq!(
        documented_keys(doc),
        ["listen", "kafka.brokers", "kafka.linger_ms", "server.ratio"]
    );
}
