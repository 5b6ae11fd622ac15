//! The configuration's layers, validation and secrets, through figment's `Jail` (a private
//! environment and working directory per test).

// figment's `Jail` fixes the closures' error type; its size does not matter in tests.
#![allow(clippy::result_large_err)]

use figment::Jail;

use super::*;

fn load_in(jail: &Jail, file: Option<&str>) -> Result<Config, ConfigError> {
    let path = file.map(|name| jail.directory().join(name));
    Config::load(path.as_deref().map(|path| (path, FileOrigin::CommandLine)))
}

fn error_in(jail: &Jail, file: Option<&str>) -> String {
    match load_in(jail, file) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(error) => error.to_string(),
    }
}

/// The start-up error with only these environment variables set and, if given, a
/// configuration file `(name, contents)`.
fn refusal(variables: &[(&str, &str)], file: Option<(&str, &str)>) -> String {
    let mut error = String::new();
    Jail::expect_with(|jail| {
        for (variable, value) in variables {
            jail.set_env(variable, value);
        }
        if let Some((name, contents)) = file {
            jail.create_file(name, contents)?;
        }
        error = error_in(jail, file.map(|(name, _)| name));
        Ok(())
    });
    error
}

#[test]
fn defaults_listen_locally() {
    Jail::expect_with(|jail| {
        let config = load_in(jail, None).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.admin_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(config.log, "info");
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.drain_delay, Duration::ZERO);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(config.redis.url, "redis://127.0.0.1:6379/0");
        assert_eq!(config.redis.key_prefix, "ts:");
        assert!(config.redis.command_timeout < Duration::from_secs(1));
        assert!(config.redis.connect_timeout < Duration::from_secs(1));
        assert!(config.redis.password.is_none());
        Ok(())
    });
}

#[test]
fn environment_overrides_file_overrides_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "tsapi.toml",
            r#"
            listen = "0.0.0.0:9000"
            [redis]
            url = "redis://file-host:6379/0"
            key_prefix = "file:"
            "#,
        )?;
        jail.set_env("TSAPI_REDIS__URL", "redis://env-host:6380/0");
        jail.set_env("TSAPI_REDIS__COMMAND_TIMEOUT", "400ms");
        let config = load_in(jail, Some("tsapi.toml")).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.redis.url, "redis://env-host:6380/0");
        assert_eq!(config.redis.key_prefix, "file:");
        assert_eq!(config.redis.command_timeout, Duration::from_millis(400));
        Ok(())
    });
}

#[test]
fn a_bad_file_value_names_the_file() {
    let bad = "[redis]\nconnect_timeout = \"soon\"\n";
    let error = refusal(&[], Some(("bad.toml", bad)));
    assert!(
        error.starts_with("redis.connect_timeout (from file "),
        "{error}"
    );
    assert!(error.contains("bad.toml"), "{error}");
    assert!(error.contains("\"soon\""), "{error}");
}

#[test]
fn unknown_keys_are_refused_wherever_they_come_from() {
    let error = refusal(&[], Some(("typo.toml", "lisen = \"127.0.0.1:1\"\n")));
    assert!(error.starts_with("lisen (from file "), "{error}");
    let error = refusal(&[("TSAPI_REDIS__HOST", "x")], None);
    assert!(
        error.starts_with("redis.host (from environment variable TSAPI_REDIS__HOST): unknown key"),
        "{error}"
    );
}

#[test]
fn the_config_path_and_git_sha_variables_are_not_keys() {
    Jail::expect_with(|jail| {
        jail.set_env("TSAPI_CONFIG", "/nonexistent.toml");
        jail.set_env("TSAPI_GIT_SHA", "abc123");
        load_in(jail, None).unwrap();
        Ok(())
    });
}

#[test]
fn a_password_from_the_environment_is_refused_with_a_hint() {
    let error = refusal(&[("TSAPI_REDIS__PASSWORD", "hunter2")], None);
    assert!(
        error.starts_with("redis.password (from environment variable"),
        "{error}"
    );
    assert!(error.contains("redis.password_file"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn credentials_in_the_url_are_refused_without_echoing_them() {
    let error = refusal(
        &[("TSAPI_REDIS__URL", "redis://app:hunter2@redis:6379/0")],
        None,
    );
    assert!(error.starts_with("redis.url (from environment variable TSAPI_REDIS__URL)"));
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn the_password_comes_from_its_file_and_is_never_printed() {
    Jail::expect_with(|jail| {
        jail.create_file("password", "s3cr3t-value\n")?;
        jail.set_env("TSAPI_REDIS__USERNAME", "app");
        jail.set_env(
            "TSAPI_REDIS__PASSWORD_FILE",
            jail.directory().join("password").display(),
        );
        let config = load_in(jail, None).unwrap();
        assert_eq!(
            config.redis.password.as_ref().map(Secret::expose),
            Some("s3cr3t-value")
        );
        for shown in [format!("{config:?}"), config.to_redacted_toml()] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("[redacted]"), "{shown}");
        }
        Ok(())
    });
}

#[test]
fn the_cursor_key_comes_from_its_file_is_long_enough_and_is_never_printed() {
    Jail::expect_with(|jail| {
        let key = "k".repeat(40);
        jail.create_file("cursor_key", &format!("{key}\n"))?;
        jail.create_file("short_key", "sixteen-bytes-ok\n")?;
        jail.set_env(
            "TSAPI_CURSOR_KEY_FILE",
            jail.directory().join("cursor_key").display(),
        );
        let config = load_in(jail, None).unwrap();
        assert_eq!(
            config.cursor_key.as_ref().map(Secret::expose),
            Some(key.as_str())
        );
        for shown in [format!("{config:?}"), config.to_redacted_toml()] {
            assert!(!shown.contains(&key), "{shown}");
            assert!(shown.contains("[redacted]"), "{shown}");
        }
        jail.set_env(
            "TSAPI_CURSOR_KEY_FILE",
            jail.directory().join("short_key").display(),
        );
        let error = error_in(jail, None);
        assert!(error.contains("shorter than 32 bytes"), "{error}");
        assert!(!error.contains("sixteen"), "{error}");
        Ok(())
    });
}

#[test]
fn unreadable_or_empty_password_files_are_refused() {
    Jail::expect_with(|jail| {
        jail.set_env("TSAPI_REDIS__PASSWORD_FILE", "/nonexistent/password");
        let error = error_in(jail, None);
        assert!(
            error.starts_with("redis.password_file (from environment variable TSAPI_REDIS__PASSWORD_FILE): /nonexistent/password: "),
            "{error}"
        );
        jail.create_file("empty", "\n")?;
        jail.set_env(
            "TSAPI_REDIS__PASSWORD_FILE",
            jail.directory().join("empty").display(),
        );
        assert!(error_in(jail, None).ends_with("is empty"));
        Ok(())
    });
}

#[test]
fn a_missing_config_file_is_an_error_when_named() {
    Jail::expect_with(|jail| {
        let error = error_in(jail, Some("absent.toml"));
        assert!(error.starts_with("configuration file "), "{error}");
        assert!(error.contains("absent.toml (named by --config)"), "{error}");
        Ok(())
    });
}

#[test]
fn a_duration_without_a_unit_is_refused() {
    let error = refusal(&[("TSAPI_REDIS__COMMAND_TIMEOUT", "250")], None);
    assert!(error.contains("needs a unit"), "{error}");
}

#[test]
fn operability_keys_come_from_the_documented_variables() {
    Jail::expect_with(|jail| {
        jail.set_env("TSAPI_ADMIN_LISTEN", "0.0.0.0:9191");
        jail.set_env("TSAPI_LOG", "warn,timestamp_api=debug");
        jail.set_env("TSAPI_LOG_FORMAT", "text");
        jail.set_env("TSAPI_DRAIN_DELAY", "5s");
        jail.set_env("TSAPI_SHUTDOWN_TIMEOUT", "20s");
        jail.set_env("TSAPI_RESPONSE_BUFFER_BYTES", "33554432");
        let config = load_in(jail, None).unwrap();
        assert_eq!(config.response_buffer_bytes, 32 * 1024 * 1024);
        assert_eq!(config.admin_listen.to_string(), "0.0.0.0:9191");
        assert_eq!(config.log, "warn,timestamp_api=debug");
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.drain_delay, Duration::from_secs(5));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(20));
        Ok(())
    });
}

#[test]
fn a_bad_value_is_refused_naming_its_key_and_variable() {
    for (variable, value, key) in [
        ("TSAPI_LISTEN", "not-an-address", "listen"),
        ("TSAPI_REDIS__KEY_PREFIX", "ts*", "redis.key_prefix"),
        (
            "TSAPI_REDIS__COMMAND_TIMEOUT",
            "0ms",
            "redis.command_timeout",
        ),
        (
            "TSAPI_REDIS__COMMAND_TIMEOUT",
            "5m",
            "redis.command_timeout",
        ),
        ("TSAPI_LOG_FORMAT", "xml", "log_format"),
        ("TSAPI_LOG", "info,[", "log"),
        ("TSAPI_ADMIN_LISTEN", "127.0.0.1:8080", "admin_listen"),
        ("TSAPI_SHUTDOWN_TIMEOUT", "0s", "shutdown_timeout"),
        ("TSAPI_DRAIN_DELAY", "10m", "drain_delay"),
        ("TSAPI_MAX_CONNECTIONS", "0", "max_connections"),
        ("TSAPI_MAX_CONNECTIONS", "1000000", "max_connections"),
        ("TSAPI_WRITE_TIMEOUT", "0s", "write_timeout"),
        ("TSAPI_IDLE_TIMEOUT", "6m", "idle_timeout"),
        (
            "TSAPI_RESPONSE_BUFFER_BYTES",
            "65536",
            "response_buffer_bytes",
        ),
        (
            "TSAPI_RESPONSE_BUFFER_BYTES",
            "2147483648",
            "response_buffer_bytes",
        ),
        (
            "TSAPI_CURSOR_KEY_FILE",
            "/nonexistent/cursor_key",
            "cursor_key_file",
        ),
    ] {
        let error = refusal(&[(variable, value)], None);
        assert!(
            error.starts_with(&format!("{key} (from environment variable {variable})")),
            "{error}"
        );
    }
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(duration::parse("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(duration::parse("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(duration::parse("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(duration::parse("1m 30s"), Ok(Duration::from_secs(90)));
    assert_eq!(duration::parse("0"), Ok(Duration::ZERO));
    assert!(duration::parse("10").is_err());
    assert!(duration::parse("-1s").is_err());
    assert!(duration::parse("s").is_err());
}

#[test]
fn the_redacted_rendering_reads_back_as_the_same_configuration() {
    let mut config = Config::default();
    config.redis.password_file = Some("/run/secrets/redis_password".into());
    config.redis.password = Some(Secret::new("s3cr3t"));
    let shown = config.to_redacted_toml();
    assert!(!shown.contains("s3cr3t"), "{shown}");
    let mut again: Config = toml::from_str(&shown).unwrap();
    again.redis.password = config.redis.password.clone();
    assert_eq!(again.to_redacted_toml(), shown);
}

#[test]
fn sentinel_and_replica_acks_come_from_the_documented_variables() {
    Jail::expect_with(|jail| {
        jail.create_file("sentinel_password", "s3nt1nel\n")?;
        for (variable, value) in [
            ("ADDRESSES", "sentinel-0:26379, 10.0.0.7:26380,[::1]:26381"),
            ("MASTER", "timestamps"),
            ("USERNAME", "watcher"),
            ("PASSWORD_FILE", "sentinel_password"),
        ] {
            jail.set_env(format!("TSAPI_REDIS__SENTINEL__{variable}"), value);
        }
        jail.set_env("TSAPI_REDIS__MIN_REPLICA_ACKS", "1");
        jail.set_env("TSAPI_REDIS__REPLICA_ACK_TIMEOUT", "50ms");
        let config = load_in(jail, None).unwrap();
        let sentinel = &config.redis.sentinel;
        let addresses: Vec<String> = sentinel.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(
            addresses,
            ["sentinel-0:26379", "10.0.0.7:26380", "[::1]:26381"]
        );
        assert_eq!(sentinel.master.as_deref(), Some("timestamps"));
        assert_eq!(
            sentinel.password.as_ref().map(Secret::expose),
            Some("s3nt1nel")
        );
        assert_eq!(config.redis.min_replica_acks, 1);
        assert_eq!(config.redis.replica_ack_timeout, Duration::from_millis(50));
        let shown = config.to_redacted_toml();
        assert!(!shown.contains("s3nt1nel"), "{shown}");
        assert!(
            shown.contains("# redis.sentinel.password: [redacted]"),
            "{shown}"
        );
        // The rendering reads back: addresses as a TOML array.
        let again: Config = toml::from_str(&shown).unwrap();
        assert_eq!(again.redis.sentinel.addresses, sentinel.addresses);
        Ok(())
    });
}

#[test]
fn sentinel_and_replica_ack_mistakes_are_refused_naming_the_key() {
    let sentinel = |addresses| {
        [
            ("TSAPI_REDIS__SENTINEL__ADDRESSES", addresses),
            ("TSAPI_REDIS__SENTINEL__MASTER", "timestamps"),
        ]
    };
    for (variables, key) in [
        (
            &[("TSAPI_REDIS__SENTINEL__ADDRESSES", "s:26379")][..],
            "redis.sentinel.addresses",
        ),
        (
            &[("TSAPI_REDIS__SENTINEL__MASTER", "timestamps")][..],
            "redis.sentinel.master",
        ),
        (&sentinel("sentinel-0")[..], "redis.sentinel.addresses"),
        (&sentinel("s:0")[..], "redis.sentinel.addresses"),
        (&sentinel("s:26379,:26380")[..], "redis.sentinel.addresses"),
        (
            &[
                ("TSAPI_REDIS__SENTINEL__ADDRESSES", "s:26379"),
                ("TSAPI_REDIS__SENTINEL__MASTER", "two words"),
            ][..],
            "redis.sentinel.master",
        ),
        (
            &[("TSAPI_REDIS__SENTINEL__USERNAME", "watcher")][..],
            "redis.sentinel.username",
        ),
        (
            &[("TSAPI_REDIS__MIN_REPLICA_ACKS", "17")][..],
            "redis.min_replica_acks",
        ),
        (
            &[("TSAPI_REDIS__REPLICA_ACK_TIMEOUT", "0ms")][..],
            "redis.replica_ack_timeout",
        ),
        // More than half of the default command timeout (250ms), with WAIT in use.
        (
            &[
                ("TSAPI_REDIS__MIN_REPLICA_ACKS", "1"),
                ("TSAPI_REDIS__REPLICA_ACK_TIMEOUT", "200ms"),
            ][..],
            "redis.replica_ack_timeout",
        ),
    ] {
        let error = refusal(variables, None);
        assert!(
            error.starts_with(&format!("{key} (from environment variable")),
            "{error}"
        );
    }
    let error = refusal(&[("TSAPI_REDIS__SENTINEL__PASSWORD", "hunter2")], None);
    assert!(error.contains("redis.sentinel.password_file"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn cluster_seeds_come_from_their_variable_and_misuse_is_refused_naming_the_key() {
    Jail::expect_with(|jail| {
        jail.set_env(
            "TSAPI_REDIS__CLUSTER__ADDRESSES",
            "redis-0:6379, redis-1:6379",
        );
        jail.set_env("TSAPI_REDIS__URL", "rediss://ignored:1");
        let config = load_in(jail, None).unwrap();
        let seeds: Vec<String> = config
            .redis
            .cluster
            .addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(seeds, ["redis-0:6379", "redis-1:6379"]);
        Ok(())
    });
    let cluster = ("TSAPI_REDIS__CLUSTER__ADDRESSES", "redis-0:6379");
    for (variables, key, says) in [
        (
            &[
                cluster,
                ("TSAPI_REDIS__SENTINEL__ADDRESSES", "s:26379"),
                ("TSAPI_REDIS__SENTINEL__MASTER", "m"),
            ][..],
            "redis.sentinel.addresses",
            "cannot be used with redis.cluster.addresses",
        ),
        (
            &[
                cluster,
                ("TSAPI_REDIS__URL", "rediss://x:1"),
                ("TSAPI_REDIS__TLS__SERVER_NAME", "redis.example"),
            ][..],
            "redis.tls.server_name",
            "cannot be used with redis.cluster.addresses",
        ),
        (
            &[cluster, ("TSAPI_REDIS__URL", "redis://x:1/3")][..],
            "redis.url",
            "database 0",
        ),
        (
            &[cluster, ("TSAPI_REDIS__KEY_PREFIX", "{ts}:")][..],
            "redis.key_prefix",
            "hash tag",
        ),
        (
            &[("TSAPI_REDIS__CLUSTER__ADDRESSES", "redis-0")][..],
            "redis.cluster.addresses",
            "host:port",
        ),
    ] {
        let error = refusal(variables, None);
        assert!(
            error.starts_with(&format!("{key} (from environment variable")) && error.contains(says),
            "{error}"
        );
    }
    // Braces that are no hash tag (empty, or never closed) hash the whole key, as Redis does.
    for prefix in ["{}ts:", "ts{:"] {
        let variables = [cluster, ("TSAPI_REDIS__KEY_PREFIX", prefix)];
        Jail::expect_with(|jail| {
            for (variable, value) in variables {
                jail.set_env(variable, value);
            }
            load_in(jail, None).unwrap();
            Ok(())
        });
    }
}

#[test]
fn a_long_replica_ack_timeout_is_fine_while_no_wait_is_sent() {
    Jail::expect_with(|jail| {
        jail.set_env("TSAPI_REDIS__REPLICA_ACK_TIMEOUT", "200ms");
        let config = load_in(jail, None).unwrap();
        assert_eq!(config.redis.min_replica_acks, 0);
        Ok(())
    });
}

/// A CA certificate and a client pair it signed, as PEM: (ca, client cert, client key).
fn tls_files() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let client = rcgen::CertificateParams::new(vec!["service".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), client.pem(), key.serialize_pem())
}

#[test]
fn tls_keys_come_from_the_documented_variables() {
    let (ca, cert, key) = tls_files();
    Jail::expect_with(|jail| {
        jail.create_file("ca.pem", &ca)?;
        jail.create_file("client.crt", &cert)?;
        jail.create_file("client.key", &key)?;
        jail.set_env("TSAPI_REDIS__URL", "rediss://redis.example:6380/0");
        jail.set_env("TSAPI_REDIS__TLS__CA_FILE", "ca.pem");
        jail.set_env("TSAPI_REDIS__TLS__CLIENT_CERT_FILE", "client.crt");
        jail.set_env("TSAPI_REDIS__TLS__CLIENT_KEY_FILE", "client.key");
        jail.set_env("TSAPI_REDIS__TLS__SERVER_NAME", "redis.internal");
        let config = load_in(jail, None).unwrap();
        assert!(config.redis.tls_enabled());
        let tls = &config.redis.tls;
        assert_eq!(tls.ca_file.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(
            tls.client_cert_file.as_deref(),
            Some(Path::new("client.crt"))
        );
        assert_eq!(
            tls.client_key_file.as_deref(),
            Some(Path::new("client.key"))
        );
        assert_eq!(tls.server_name.as_deref(), Some("redis.internal"));
        Ok(())
    });
}

#[test]
fn tls_mistakes_are_refused_naming_the_key_and_never_quoting_the_key_file() {
    let (ca, cert, key) = tls_files();
    let tls = |extra: &[(&'static str, &'static str)]| {
        let mut variables = vec![
            ("TSAPI_REDIS__URL", "rediss://redis.example:6380/0"),
            ("TSAPI_REDIS__TLS__CA_FILE", "ca.pem"),
        ];
        variables.extend_from_slice(extra);
        variables
    };
    let pair = |cert_file: &'static str, key_file: &'static str| {
        tls(&[
            ("TSAPI_REDIS__TLS__CLIENT_CERT_FILE", cert_file),
            ("TSAPI_REDIS__TLS__CLIENT_KEY_FILE", key_file),
        ])
    };
    for (variables, key_name) in [
        (
            vec![
                ("TSAPI_REDIS__URL", "redis://redis.example:6379/0"),
                ("TSAPI_REDIS__TLS__CA_FILE", "ca.pem"),
            ],
            "redis.tls.ca_file",
        ),
        (
            vec![("TSAPI_REDIS__TLS__SERVER_NAME", "redis.internal")],
            "redis.tls.server_name",
        ),
        (
            tls(&[("TSAPI_REDIS__TLS__CLIENT_CERT_FILE", "client.crt")]),
            "redis.tls.client_cert_file",
        ),
        (
            tls(&[("TSAPI_REDIS__TLS__CLIENT_KEY_FILE", "client.key")]),
            "redis.tls.client_key_file",
        ),
        (
            tls(&[("TSAPI_REDIS__TLS__SERVER_NAME", "not a name")]),
            "redis.tls.server_name",
        ),
        (
            vec![("TSAPI_REDIS__URL", "rediss://redis.example:6380/0#insecure")],
            "redis.url",
        ),
        (
            vec![
                ("TSAPI_REDIS__URL", "rediss://redis.example:6380/0"),
                ("TSAPI_REDIS__TLS__CA_FILE", "missing.pem"),
            ],
            "redis.tls.ca_file",
        ),
        (
            vec![
                ("TSAPI_REDIS__URL", "rediss://redis.example:6380/0"),
                ("TSAPI_REDIS__TLS__CA_FILE", "garbage.pem"),
            ],
            "redis.tls.ca_file",
        ),
        (
            pair("client.crt", "garbage.key"),
            "redis.tls.client_key_file",
        ),
    ] {
        let mut error = String::new();
        Jail::expect_with(|jail| {
            jail.create_file("ca.pem", &ca)?;
            jail.create_file("client.crt", &cert)?;
            jail.create_file("client.key", &key)?;
            jail.create_file("garbage.pem", "not a certificate")?;
            jail.create_file("garbage.key", "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n")?;
            for (variable, value) in &variables {
                jail.set_env(variable, value);
            }
            error = error_in(jail, None);
            Ok(())
        });
        assert!(error.starts_with(&format!("{key_name} (from ")), "{error}");
        assert!(!error.contains("c2VjcmV0"), "{error}");
    }
}

#[test]
fn traces_are_off_by_default_and_the_otel_variables_turn_them_on() {
    Jail::expect_with(|jail| {
        let config = load_in(jail, None).unwrap();
        assert_eq!(config.traces, TracesConfig::default());
        assert_eq!(config.traces.traces_url(), None);
        // Empty is unset, as the OpenTelemetry specification reads its variables.
        jail.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", "");
        jail.set_env("OTEL_TRACES_SAMPLER", "");
        assert_eq!(load_in(jail, None).unwrap().traces, TracesConfig::default());

        jail.create_file(
            "t.toml",
            "[traces]\nservice_name = \"from-file\"\nsampler_arg = 0.5\n",
        )?;
        jail.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        jail.set_env("OTEL_SERVICE_NAME", "from-otel");
        jail.set_env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio");
        jail.set_env("OTEL_TRACES_SAMPLER_ARG", "0.25");
        let config = load_in(jail, Some("t.toml")).unwrap();
        assert_eq!(
            config.traces.traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        // The standard variables win over the file, the service's own over both.
        assert_eq!(config.traces.service_name.as_deref(), Some("from-otel"));
        assert_eq!(config.traces.sampler, Sampler::ParentbasedTraceIdRatio);
        assert_eq!(config.traces.sampler_arg, 0.25);
        jail.set_env("TSAPI_TRACES__SAMPLER_ARG", "1");
        assert_eq!(
            load_in(jail, Some("t.toml")).unwrap().traces.sampler_arg,
            1.0
        );
        Ok(())
    });
}

#[test]
fn the_traces_endpoint_variable_is_a_whole_url_that_wins_over_the_base_one() {
    Jail::expect_with(|jail| {
        let tempo = "http://tempo:4318/otlp/traces";
        jail.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        jail.set_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", tempo);
        assert_eq!(
            load_in(jail, None).unwrap().traces.traces_url().as_deref(),
            Some(tempo)
        );
        jail.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", "");
        assert_eq!(
            load_in(jail, None).unwrap().traces.traces_url().as_deref(),
            Some(tempo)
        );
        jail.set_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "");
        assert_eq!(load_in(jail, None).unwrap().traces.traces_url(), None);
        jail.set_env("TSAPI_TRACES__URL", "http://agent:4318/v1/traces");
        assert_eq!(
            load_in(jail, None).unwrap().traces.traces_url().as_deref(),
            Some("http://agent:4318/v1/traces")
        );
        Ok(())
    });
}

#[test]
fn bad_trace_settings_name_the_otel_variable_they_came_from() {
    for (variable, value, expected) in [
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://tempo:4318/v1/traces",
            "traces.url (from environment variable OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): https://",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector:4318",
            "traces.endpoint (from environment variable OTEL_EXPORTER_OTLP_ENDPOINT): https://",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "grpc",
            "traces.protocol (from environment variable OTEL_EXPORTER_OTLP_PROTOCOL)",
        ),
        (
            "OTEL_TRACES_SAMPLER",
            "jaeger_remote",
            "traces.sampler (from environment variable OTEL_TRACES_SAMPLER)",
        ),
        (
            "OTEL_TRACES_SAMPLER_ARG",
            "1.5",
            "traces.sampler_arg (from environment variable OTEL_TRACES_SAMPLER_ARG): must be a ratio",
        ),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "team",
            "traces.resource_attributes (from environment variable OTEL_RESOURCE_ATTRIBUTES)",
        ),
        (
            "TSAPI_TRACES__QUEUE_SIZE",
            "0",
            "traces.queue_size (from environment variable TSAPI_TRACES__QUEUE_SIZE)",
        ),
        (
            "TSAPI_TRACES__EXPORT_TIMEOUT",
            "0s",
            "traces.export_timeout (from environment variable TSAPI_TRACES__EXPORT_TIMEOUT)",
        ),
    ] {
        let error = refusal(&[(variable, value)], None);
        assert!(error.starts_with(expected), "{variable}={value}: {error}");
    }
}
