//! The configuration's layers, validation rules, masking and documentation.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_validate_and_report_in_eur() {
    let config = ProcessorConfig::layered(None, env(&[]), &Overrides::default()).expect("ok");
    assert_eq!(config, ProcessorConfig::default());
    let settings = config.validate().expect("valid");
    assert_eq!(settings.reporting_currency, "EUR");
    assert_eq!(settings.kafka.topics.dead_letter, "events-dlq");
}

#[test]
fn layers_override_in_order_file_env_flags() {
    let file = r#"
        listen = "127.0.0.1:1"
        [kafka]
        brokers = "file:9092"
        group_id = "from-file"
        [checkpoint]
        interval_ms = 50
    "#;
    let vars = env(&[
        ("PROCESSOR_KAFKA__GROUP_ID", "from-env"),
        ("PROCESSOR_CHECKPOINT__INTERVAL_MS", "75"),
        ("PROCESSOR_KAFKA__BROKERS", "env:9092"),
        ("OTHER_THING", "ignored"),
    ]);
    let flags = Overrides {
        brokers: Some("flag:9092".to_owned()),
        ..Overrides::default()
    };
    let config = ProcessorConfig::layered(Some(file), vars, &flags).expect("ok");
    assert_eq!(config.listen, "127.0.0.1:1");
    assert_eq!(config.kafka.group_id, "from-env");
    assert_eq!(config.kafka.brokers, "flag:9092");
    assert_eq!(config.checkpoint.interval_ms, 75);
    // Untouched keys keep their defaults.
    assert_eq!(config.redis.retention_minutes, 120);
}

#[test]
fn each_value_keeps_its_origin_and_errors_name_it() {
    use ingest_common::Origin;
    let dir = std::env::temp_dir().join(format!("processor-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("processor.json");
    std::fs::write(
        &file,
        r#"{"kafka": {"group_id": "from-json"}, "experiments": {"flags": ["a"]}}"#,
    )
    .expect("write");
    let loaded = ProcessorConfig::load(
        Some(&file),
        env(&[
            ("PROCESSOR_CHECKPOINT__MAX_PENDING_EVENTS", "10"),
            ("PROCESSOR_LISTEN", "127.0.0.1:9"),
            (
                "PROCESSOR_EXPERIMENTS__FLAGS",
                "checkout_v2, search_ranking",
            ),
        ]),
        &Overrides {
            redis: Some("redis://r:1/0".to_owned()),
            ..Overrides::default()
        },
    )
    .expect("loads");
    let config = &loaded.config;
    assert_eq!(config.kafka.group_id, "from-json");
    assert_eq!(config.checkpoint.max_pending_events, 10);
    assert_eq!(config.listen, "127.0.0.1:9");
    assert_eq!(config.experiments.flags, ["checkout_v2", "search_ranking"]);
    assert_eq!(config.redis.url, "redis://r:1/0");
    assert_eq!(loaded.origin("kafka.group_id"), Origin::File(file.clone()));
    assert_eq!(
        loaded.origin("checkpoint.max_pending_events"),
        Origin::Env("PROCESSOR_CHECKPOINT__MAX_PENDING_EVENTS".into())
    );
    assert_eq!(loaded.origin("redis.url"), Origin::Flag("--redis".into()));
    assert_eq!(loaded.origin("dedup.window_minutes"), Origin::Default);
    assert!(loaded.deprecations().is_empty());

    let loaded = ProcessorConfig::load(
        None,
        env(&[("PROCESSOR_API__TOP_N", "0")]),
        &Overrides::default(),
    )
    .expect("loads");
    let Err(Error::Config(error)) = loaded.config.validate() else {
        panic!("api.top_n = 0 is refused");
    };
    assert_eq!(
        loaded.explain(error).to_string(),
        "invalid configuration `api.top_n` (from environment variable PROCESSOR_API__TOP_N): must be in 1..=1000"
    );
    let error = ProcessorConfig::load(
        None,
        env(&[("PROCESSOR_DEDUP__WINDOW_MINUTES", "a day")]),
        &Overrides::default(),
    )
    .expect_err("not a number");
    assert_eq!(
        error.to_string(),
        "invalid configuration `dedup.window_minutes` (from environment variable PROCESSOR_DEDUP__WINDOW_MINUTES): \"a day\" is not a valid integer"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_key_is_documented_and_every_documented_key_exists() {
    let doc = include_str!("../../../docs/processor.md");
    let section = ingest_common::layers::markdown_section(doc, "## Configuration", "## ")
        .expect("the configuration section");
    let in_code = ingest_common::layers::leaf_keys(&ProcessorConfig::default());
    if let Err(drift) =
        ingest_common::layers::check_documented("docs/processor.md", section, in_code)
    {
        panic!("{drift}");
    }
}

#[test]
fn unknown_keys_are_rejected_in_file_and_env() {
    let err = ProcessorConfig::layered(
        Some("[kafka]\nbrokerz = \"x\""),
        env(&[]),
        &Overrides::default(),
    )
    .expect_err("unknown key");
    assert!(err.to_string().contains("brokerz"), "{err}");
    let err =
        ProcessorConfig::layered(None, env(&[("PROCESSOR_NOPE", "1")]), &Overrides::default())
            .expect_err("unknown env key");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn the_search_sink_is_off_by_default_and_validated_when_on() {
    assert!(ProcessorConfig::default()
        .validate()
        .expect("defaults")
        .search
        .is_none());
    let file =
        "[search]\nenabled = true\nurl = \"http://10.0.0.5:9201\"\nindex = \"shop-events\"\n";
    let env = env(&[("PROCESSOR_SEARCH__BATCH_SIZE", "250")]);
    let settings = ProcessorConfig::layered(Some(file), env, &Overrides::default())
        .expect("layers")
        .validate()
        .expect("valid");
    let search = settings.search.expect("enabled");
    assert_eq!(search.url.to_string(), "http://10.0.0.5:9201");
    assert_eq!(
        (search.index.as_str(), search.batch_size),
        ("shop-events", 250)
    );
    assert_eq!(
        (search.auth, search.ca_file, search.gzip),
        (None, None, true)
    );
    assert_eq!(
        search.group_id, "processor-search",
        "derived from kafka.group_id"
    );
    // A file written for the outbox-based sink still loads.
    let file = "[search]\nenabled = true\ngroup_id = \"shop-index\"\nmax_queued_documents = 5\n";
    let search = ProcessorConfig::layered(Some(file), self::env(&[]), &Overrides::default())
        .expect("layers")
        .validate()
        .expect("valid")
        .search
        .expect("enabled");
    assert_eq!(search.group_id, "shop-index");

    let file = "[search]\nenabled = true\nurl = \"https://os.internal\"\nusername = \"ingest\"\n\
                ca_file = \"/etc/ca.pem\"\ngzip = false\n";
    let vars = self::env(&[("PROCESSOR_SEARCH__PASSWORD", "pw:1")]);
    let search = ProcessorConfig::layered(Some(file), vars, &Overrides::default())
        .expect("layers")
        .validate()
        .expect("valid")
        .search
        .expect("enabled");
    assert_eq!(search.url.to_string(), "https://os.internal:9200");
    assert_eq!(
        search.auth,
        Some(SearchAuth::Basic {
            username: "ingest".into(),
            password: Secret::new("pw:1"),
        })
    );
    assert!(!format!("{search:?}").contains("pw:1"), "{search:?}");
    assert_eq!(search.ca_file, Some("/etc/ca.pem".into()));
    assert!(!search.gzip);
    let mut config = ProcessorConfig::default();
    config.search.enabled = true;
    config.search.api_key = "aWQ6a2V5".into();
    let search = config.validate().expect("valid").search.expect("enabled");
    assert_eq!(
        search.auth,
        Some(SearchAuth::ApiKey(Secret::new("aWQ6a2V5")))
    );

    for (key, change) in [
        (
            "search.url",
            (|c: &mut SearchConfig| c.url = "ftp://x".into()) as fn(&mut SearchConfig),
        ),
        ("search.url", |c| c.url = "https://u:p@x".into()),
        ("search.api_key", |c| {
            c.username = "u".into();
            c.api_key = "k".into();
        }),
        ("search.api_key", |c| c.api_key = "a b".into()),
        ("search.password", |c| c.password = "p".into()),
        ("search.username", |c| c.username = "a:b".into()),
        ("search.index", |c| c.index = "Shop".into()),
        ("search.index", |c| c.index = "a b".into()),
        ("search.batch_size", |c| c.batch_size = 0),
        ("search.group_id", |c| c.group_id = "processor".into()),
        ("search.initial_backoff_ms", |c| c.max_backoff_ms = 1),
    ] {
        let mut config = ProcessorConfig::default();
        config.search.enabled = true;
        change(&mut config.search);
        let error = config.validate().expect_err("invalid").to_string();
        assert!(error.contains(key), "{key}: {error}");
    }
}

#[test]
fn pruning_keeps_what_the_live_view_is_rebuilt_from() {
    let mut config = ProcessorConfig::default();
    config.pruning.rollup_retention_minutes = config.redis.retention_minutes - 1;
    let error = config.validate().expect_err("too short").to_string();
    assert!(
        error.contains("pruning.rollup_retention_minutes"),
        "{error}"
    );
    let mut config = ProcessorConfig::default();
    config.pruning.max_product_pairs = 0;
    assert!(config.validate().is_err());
    let settings = ProcessorConfig::default().validate().expect("defaults");
    assert_eq!(settings.rollup_retention_minutes, 43_200);
    assert_eq!(settings.prune_interval, Duration::from_secs(60));
}

#[test]
fn recommendation_bounds_are_checked() {
    for (key, change) in [
        (
            "recommendations.partners_per_product",
            (|c| c.partners_per_product = 0) as fn(&mut RecommendationsConfig),
        ),
        ("recommendations.publish_interval_secs", |c| {
            c.publish_interval_secs = 0
        }),
        ("recommendations.pair_window", |c| c.pair_window = 21),
        ("recommendations.fold_interval_ms", |c| {
            c.fold_interval_ms = 0
        }),
        ("recommendations.fold_max_pairs", |c| c.fold_max_pairs = 0),
    ] {
        let mut config = ProcessorConfig::default();
        change(&mut config.recommendations);
        let error = config.validate().expect_err("invalid").to_string();
        assert!(error.contains(key), "{key}: {error}");
    }
    let settings = ProcessorConfig::default().validate().expect("defaults");
    assert_eq!(settings.recommendations_partners, 50);
    assert_eq!(settings.recommendations_interval, Duration::from_secs(30));
    assert_eq!(settings.pair_fold_interval, Duration::from_secs(10));
}

#[test]
fn experiment_flags_are_all_by_default_or_the_listed_ones() {
    let settings = ProcessorConfig::default().validate().expect("defaults");
    assert_eq!(settings.experiment_flags, None);
    let config = ProcessorConfig::layered(
        Some("[experiments]\nflags = [\"checkout_v2\", \"search_ranking\"]"),
        Vec::new(),
        &Overrides::default(),
    )
    .expect("parses");
    let flags = config.validate().expect("valid").experiment_flags;
    assert_eq!(
        flags.map(|f| f.into_iter().collect::<Vec<_>>()),
        Some(vec!["checkout_v2".to_owned(), "search_ranking".to_owned()])
    );
    let config = ProcessorConfig {
        experiments: ExperimentsConfig {
            flags: vec!["a=b".to_owned()],
        },
        ..ProcessorConfig::default()
    };
    let error = config.validate().expect_err("refused").to_string();
    assert!(error.contains("experiments.flags"), "{error}");
}

#[test]
fn validation_names_the_key() {
    let config = ProcessorConfig {
        reporting_currency: "euro".to_owned(),
        ..ProcessorConfig::default()
    };
    assert!(config
        .validate()
        .expect_err("bad")
        .to_string()
        .contains("reporting_currency"));
    let mut config = ProcessorConfig::default();
    config
        .kafka
        .properties
        .insert("enable.auto.commit".to_owned(), "true".to_owned());
    assert!(config
        .validate()
        .expect_err("bad")
        .to_string()
        .contains("enable.auto.commit"));
    let mut config = ProcessorConfig::default();
    config.kafka.topics.cart = "purchases".to_owned();
    assert!(config.validate().is_err());
}

#[test]
fn secrets_are_masked() {
    assert_eq!(
        mask_url("postgres://app:s3cret@db:5432/x"),
        "postgres://app:****@db:5432/x"
    );
    assert_eq!(mask_url("redis://:pw@h:1/0"), "redis://:****@h:1/0");
    assert_eq!(mask_url("redis://h:1/0"), "redis://h:1/0");
    let mut config = ProcessorConfig::default();
    config.postgres.url = "postgres://app:s3cret@db/x".to_owned();
    config
        .kafka
        .properties
        .insert("sasl.password".to_owned(), "hunter2".to_owned());
    config
        .kafka
        .properties
        .insert("ssl.key.password".to_owned(), "hunter3".to_owned());
    config.search.password = "hunter4".to_owned();
    config.search.api_key = "hunter5".to_owned();
    let text = config.masked_toml();
    assert!(
        !text.contains("s3cret") && !text.contains("hunter"),
        "{text}"
    );
    assert!(text.contains("password = \"<redacted>\""), "{text}");
    assert!(text.contains("****"));
}

/// `--check-config` masks a password in the schema registry's URL too.
#[test]
fn the_registry_url_is_masked_in_check_config() {
    let mut config = ProcessorConfig::default();
    config.schema_registry.url = "https://reg:registry-s3cret@registry:8081".to_owned();
    let text = config.masked_toml();
    assert!(!text.contains("registry-s3cret"), "{text}");
    assert!(text.contains("https://reg:****@registry:8081"), "{text}");
}

/// Neither the configuration nor the validated settings print a password through
/// `Debug`: not in a URL's user information, not in a `password=` query parameter,
/// not in a secret-named Kafka property (`sasl.oauthbearer.config` included), not in
/// the search credentials.
#[test]
fn debug_output_masks_every_password() {
    let mut config = ProcessorConfig::default();
    config.postgres.url =
        "postgres://app:pg-s3cret@db/x?sslmode=disable&password=pg-query".to_owned();
    config.redis.url = "redis://:redis-s3cret@cache:6379/0".to_owned();
    for (name, value) in [
        ("sasl.password", "kafka-s3cret"),
        ("sasl.oauthbearer.config", "clientSecret=oauth-s3cret"),
        ("sasl.oauthbearer.client.secret", "client-s3cret"),
    ] {
        config
            .kafka
            .properties
            .insert(name.to_owned(), value.to_owned());
    }
    config.search.password = "search-s3cret".to_owned();
    config.schema_registry.url = "https://reg:registry-s3cret@registry:8081".to_owned();
    let settings = config.validate().expect("valid");
    for text in [format!("{config:?}"), format!("{settings:?}")] {
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("pg-query"), "{text}");
        assert!(text.contains("postgres://app:****@db/x"), "{text}");
    }
    // The values themselves are untouched.
    assert!(settings.postgres_url.expose().contains("pg-s3cret"));
    let registry = settings.schema_registry.as_ref().expect("a registry");
    assert!(registry.url.expose().contains("registry-s3cret"));
    assert_eq!(&*settings.redis_url, "redis://:redis-s3cret@cache:6379/0");
}

#[test]
fn api_bounds_have_defaults_and_are_checked() {
    let settings = ProcessorConfig::default().validate().expect("defaults");
    assert_eq!(settings.max_concurrent_queries, 8);
    assert_eq!(settings.max_experiment_pairs, 100);
    assert_eq!(settings.api_postgres_connections, 4);
    assert_eq!(settings.api_statement_timeout, Duration::from_secs(2));
    for (key, change) in [
        (
            "api.max_concurrent_queries",
            (|c| c.max_concurrent_queries = 0) as fn(&mut ApiConfig),
        ),
        ("api.max_experiment_pairs", |c| c.max_experiment_pairs = 0),
        ("api.max_experiment_pairs", |c| {
            c.max_experiment_pairs = 10_001
        }),
        ("api.postgres_connections", |c| c.postgres_connections = 0),
        ("api.statement_timeout_ms", |c| c.statement_timeout_ms = 0),
    ] {
        let mut config = ProcessorConfig::default();
        change(&mut config.api);
        let error = config.validate().expect_err("invalid").to_string();
        assert!(error.contains(key), "{key}: {error}");
    }
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let b = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(350),
    };
    assert_eq!(b.delay(1), Duration::from_millis(100));
    assert_eq!(b.delay(2), Duration::from_millis(200));
    assert_eq!(b.delay(3), Duration::from_millis(350));
    assert_eq!(b.delay(60), Duration::from_millis(350));
}

#[test]
fn store_tls_settings_are_validated_without_io() {
    let mut config = ProcessorConfig::default();
    config.postgres.url =
        "postgres://app:pw@db/shop?sslmode=verify-full&sslrootcert=/nowhere/ca.pem".to_owned();
    config.redis.url = "rediss://:pw@cache:6380/0".to_owned();
    config.redis.ca_file = "/nowhere/redis-ca.pem".to_owned();
    // The files are read when connecting, not here.
    let settings = config.validate().expect("valid");
    assert_eq!(
        settings.redis_ca_file.as_deref(),
        Some(std::path::Path::new("/nowhere/redis-ca.pem"))
    );
    for (change, key, why) in [
        (
            (|c: &mut ProcessorConfig| c.postgres.url.push_str("&sslmode=allow"))
                as fn(&mut ProcessorConfig),
            "postgres.url",
            "sslmode `allow`",
        ),
        (
            |c: &mut ProcessorConfig| c.redis.url = "redis://cache:6379/0".to_owned(),
            "redis.ca_file",
            "rediss://",
        ),
        (
            |c: &mut ProcessorConfig| c.redis.url = "rediss://cache:6380/0#insecure".to_owned(),
            "redis.url",
            "redis.ca_file",
        ),
    ] {
        let mut config = config.clone();
        change(&mut config);
        let error = config.validate().expect_err("refused").to_string();
        assert!(error.contains(key) && error.contains(why), "{error}");
        assert!(!error.contains("pw"), "{error}");
    }
}
