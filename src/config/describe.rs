//! The configuration described by itself: every key with its environment variable, kind,
//! bounds, default and doc comment, read from `Config`'s JSON schema (schemars derives it from
//! the structs, their serde attributes and `Default`). `timestamp-api config --describe` prints
//! it; the key table of docs/configuration.md and nix/config-keys.json, which the NixOS module
//! builds its options from, are generated from it, and `generated_copies_are_current` fails
//! while a committed copy is stale.

use serde::Serialize;
use serde_json::Value;

use super::{Config, env_variable};

/// One configuration key, as the reference tables and the NixOS module need it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyDescription {
    /// Dotted path: `redis.sentinel.addresses`.
    pub key: String,
    /// `TSAPI_REDIS__SENTINEL__ADDRESSES`.
    pub env: String,
    /// The OpenTelemetry variable that also sets it (`OTEL_SERVICE_NAME`), if one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otel_env: Option<&'static str>,
    pub kind: Kind,
    /// The accepted values of an `enum`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<u64>,
    /// As the service writes it in TOML; absent when the key is unset by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The field's doc comment, one paragraph (Markdown).
    pub description: String,
}

/// What a key's value is; the NixOS module maps each to an option type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    String,
    Integer,
    /// A decimal number, such as `0.25`.
    Number,
    Enum,
    /// humantime: `250ms`, `10s`, `1m 30s`.
    Duration,
    /// `host:port` with an IP address.
    SocketAddress,
    /// Comma-separated `host:port` in one environment variable, or a TOML array.
    HostPortList,
    /// A file whose content is a secret: read at start-up, never logged.
    SecretFile,
    /// A file the service reads (at start-up and again later) whose content is not secret,
    /// such as a CA bundle; the NixOS module hands it over like a secret file.
    CredentialFile,
}

/// Every key, section by section (the top level, then `redis`, then `redis.sentinel`), each
/// section's keys in alphabetical order.
pub fn describe() -> Vec<KeyDescription> {
    let schema = schemars::schema_for!(Config);
    let schema = schema.as_value();
    let mut keys = Vec::new();
    section(schema, schema, "", &mut keys);
    keys
}

fn section(root: &Value, schema: &Value, prefix: &str, keys: &mut Vec<KeyDescription>) {
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    let mut subsections = Vec::new();
    for (name, property) in properties {
        let key = format!("{prefix}{name}");
        let target = resolve(root, property);
        if target["type"] == "object" {
            subsections.push((key, target));
            continue;
        }
        keys.push(KeyDescription {
            env: env_variable(&key),
            otel_env: super::traces::otel_variable(&key),
            kind: kind_of(target),
            values: target["enum"]
                .as_array()
                .map(|values| {
                    values
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            minimum: target["minimum"].as_u64(),
            maximum: target["maximum"].as_u64(),
            default: property.get("default").cloned(),
            description: paragraph(
                property["description"]
                    .as_str()
                    .or_else(|| target["description"].as_str())
                    .unwrap_or_default(),
            ),
            key,
        });
    }
    for (key, target) in subsections {
        section(root, target, &format!("{key}."), keys);
    }
}

/// The schema a property stands for: itself, or the definition its `$ref` names.
fn resolve<'a>(root: &'a Value, property: &'a Value) -> &'a Value {
    property["$ref"]
        .as_str()
        .and_then(|reference| reference.strip_prefix("#/$defs/"))
        .map_or(property, |name| &root["$defs"][name])
}

fn kind_of(schema: &Value) -> Kind {
    match schema["format"].as_str() {
        Some("duration") => Kind::Duration,
        Some("socket-address") => Kind::SocketAddress,
        Some("host-port-list") => Kind::HostPortList,
        Some("secret-file") => Kind::SecretFile,
        Some("credential-file") => Kind::CredentialFile,
        _ if schema.get("enum").is_some() => Kind::Enum,
        _ if schema["type"] == "integer" => Kind::Integer,
        _ if schema["type"] == "number" => Kind::Number,
        _ => Kind::String,
    }
}

/// A doc comment's lines as one paragraph: the table cell and the option text are one.
fn paragraph(doc: &str) -> String {
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// nix/config-keys.json, what `timestamp-api config --describe` prints.
pub fn json(keys: &[KeyDescription]) -> String {
    // Plain structs of strings, numbers and JSON values serialise without fail.
    let mut text = serde_json::to_string_pretty(keys).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generated::{check_block, check_copy};

    /// The key table of docs/configuration.md.
    fn markdown_table(keys: &[KeyDescription]) -> String {
        let mut table =
            String::from("| Key | Environment variable | Default | Meaning |\n|---|---|---|---|\n");
        for key in keys {
            let default = match &key.default {
                None => "unset".to_owned(),
                Some(Value::String(text)) => format!("`{text}`"),
                Some(value) => format!("`{value}`"),
            };
            let mut meaning = key.description.clone();
            if !key.values.is_empty() {
                meaning.push_str(&format!(" One of `{}`.", key.values.join("`, `")));
            }
            if let (Some(minimum), Some(maximum)) = (key.minimum, key.maximum) {
                meaning.push_str(&format!(" From {minimum} to {maximum}."));
            }
            let variables = match key.otel_env {
                Some(otel) => format!("`{}` or `{otel}`", key.env),
                None => format!("`{}`", key.env),
            };
            table.push_str(&format!(
                "| `{}` | {variables} | {default} | {} |\n",
                key.key,
                meaning.replace('|', "\\|")
            ));
        }
        table
    }

    #[test]
    fn generated_copies_are_current() {
        let keys = describe();
        check_copy("nix/config-keys.json", &json(&keys));
        check_block("docs/configuration.md", "keys", &markdown_table(&keys));
        let mut otel = String::from("| Variable | Key |\n|---|---|\n");
        for (variable, key) in super::super::traces::OTEL_VARIABLES {
            otel.push_str(&format!("| `{variable}` | `{key}` |\n"));
        }
        check_block("docs/configuration.md", "otel-variables", &otel);
    }

    /// README.md's table of the common variables is written by hand, since it groups and
    /// annotates them; this holds every variable and default it names to the code's, so a
    /// renamed key or a changed default cannot leave it behind.
    #[test]
    fn the_readme_table_names_real_variables_with_their_defaults() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let errors = readme_table_errors(&readme, &describe());
        assert!(errors.is_empty(), "README.md:\n{}", errors.join("\n"));
    }

    #[test]
    fn the_readme_check_catches_a_wrong_name_or_default() {
        let keys = describe();
        let table = |row: &str| format!("| Environment variable | Default |\n|---|---|\n{row}\n\n");
        assert_eq!(
            readme_table_errors(
                &table("| `TSAPI_REDIS__CONNECT_TIMEOUT` / `TSAPI_LOG` | `250ms` / `info` |"),
                &keys
            ),
            Vec::<String>::new()
        );
        for (row, error) in [
            (
                "| `TSAPI_REDIS__TIMEOUT` | `250ms` |",
                "TSAPI_REDIS__TIMEOUT is no key's variable",
            ),
            (
                "| `TSAPI_REDIS__CONNECT_TIMEOUT` | `1s` |",
                "TSAPI_REDIS__CONNECT_TIMEOUT: the default is `250ms`, not `1s`",
            ),
            (
                "| `TSAPI_REDIS__USERNAME` | `admin` |",
                "TSAPI_REDIS__USERNAME: the default is unset, not `admin`",
            ),
            (
                "| `TSAPI_LOG` | unset |",
                "TSAPI_LOG: the default is `info`, not unset",
            ),
            (
                "| `TSAPI_TRACES__ENDPOINT` or `OTEL_SERVICE_NAME` | unset |",
                "OTEL_SERVICE_NAME does not set TSAPI_TRACES__ENDPOINT",
            ),
            (
                "| `TSAPI_LOG` / `TSAPI_LOG_FORMAT` | `info` / `json` / `x` |",
                "3 defaults for 2 variables",
            ),
        ] {
            assert_eq!(readme_table_errors(&table(row), &keys), [error], "{row}");
        }
        assert_eq!(
            readme_table_errors("no table", &keys),
            ["no `| Environment variable | Default |` table"]
        );
    }

    /// What is wrong with the `| Environment variable | Default |` table of `readme`. A row
    /// names variables separated by ` / ` (one key each, perhaps `or` its `OTEL_*` twin) and
    /// their defaults in the same order, or one default for all of them; `unset…` is no default.
    fn readme_table_errors(readme: &str, keys: &[KeyDescription]) -> Vec<String> {
        let rows: Vec<&str> = readme
            .lines()
            .skip_while(|line| !line.starts_with("| Environment variable | Default |"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .collect();
        if rows.is_empty() {
            return vec!["no `| Environment variable | Default |` table".into()];
        }
        let quoted = |text: &str| -> Vec<String> {
            text.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let mut errors = Vec::new();
        for row in rows {
            let cells: Vec<&str> = row
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let [variables, defaults] = cells[..] else {
                errors.push(format!("{row}: not two cells"));
                continue;
            };
            let variables: Vec<&str> = variables.split(" / ").collect();
            let mut defaults: Vec<&str> = defaults.split(" / ").collect();
            if defaults.len() == 1 {
                defaults = vec![defaults[0]; variables.len()];
            }
            if defaults.len() != variables.len() {
                errors.push(format!(
                    "{} defaults for {} variables",
                    defaults.len(),
                    variables.len()
                ));
                continue;
            }
            for (names, default) in variables.into_iter().zip(defaults) {
                // Other quoted words in the cell (`rediss://`) are comments.
                let names: Vec<String> = quoted(names)
                    .into_iter()
                    .filter(|word| {
                        word.bytes().all(|byte| {
                            byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_'
                        })
                    })
                    .collect();
                let Some((env, twins)) = names.split_first() else {
                    errors.push(format!("{row}: a group without a variable"));
                    continue;
                };
                let Some(key) = keys.iter().find(|key| key.env == *env) else {
                    errors.push(format!("{env} is no key's variable"));
                    continue;
                };
                for twin in twins {
                    if key.otel_env != Some(twin.as_str()) {
                        errors.push(format!("{twin} does not set {env}"));
                    }
                }
                let written = if default.starts_with("unset") {
                    None
                } else {
                    quoted(default).into_iter().next()
                };
                let actual = match &key.default {
                    None | Some(Value::Null) => None,
                    Some(Value::String(text)) => Some(text.clone()),
                    Some(value) => Some(value.to_string()),
                };
                // `1` in the table is the `1.0` of the schema.
                let number = |text: &String| text.parse::<f64>().ok();
                let same = written == actual
                    || matches!((&written, &actual),
                        (Some(written), Some(actual)) if number(written).is_some()
                            && number(written) == number(actual));
                if !same {
                    let show = |value: &Option<String>| {
                        value
                            .as_ref()
                            .map_or("unset".to_owned(), |text| format!("`{text}`"))
                    };
                    errors.push(format!(
                        "{env}: the default is {}, not {}",
                        show(&actual),
                        show(&written)
                    ));
                }
            }
        }
        errors
    }

    #[test]
    fn every_key_is_described_with_its_variable_and_default() {
        let keys = describe();
        let find = |name: &str| keys.iter().find(|key| key.key == name).unwrap();
        let acks = find("redis.min_replica_acks");
        assert_eq!(acks.env, "TSAPI_REDIS__MIN_REPLICA_ACKS");
        assert_eq!(
            (acks.kind, acks.minimum, acks.maximum),
            (Kind::Integer, Some(0), Some(16))
        );
        assert_eq!(acks.default, Some(Value::from(0)));
        assert_eq!(
            find("redis.connect_timeout").default,
            Some(Value::from("250ms"))
        );
        assert_eq!(find("redis.sentinel.addresses").kind, Kind::HostPortList);
        assert_eq!(find("redis.password_file").kind, Kind::SecretFile);
        assert_eq!(find("redis.tls.client_key_file").kind, Kind::SecretFile);
        assert_eq!(find("redis.tls.ca_file").kind, Kind::CredentialFile);
        assert_eq!(find("redis.password_file").default, None);
        assert_eq!(find("log_format").values, ["json", "text"]);
        let ratio = find("traces.sampler_arg");
        assert_eq!(
            (ratio.kind, ratio.otel_env),
            (Kind::Number, Some("OTEL_TRACES_SAMPLER_ARG"))
        );
        assert_eq!(
            find("traces.endpoint").otel_env,
            Some("OTEL_EXPORTER_OTLP_ENDPOINT")
        );
        assert_eq!(
            find("traces.url").otel_env,
            Some("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        );
        assert_eq!(find("traces.queue_size").otel_env, None);
        assert!(find("log_format").description.starts_with("`json`"));
        // Held secrets are not keys; every key has a description.
        assert!(
            keys.iter()
                .all(|key| !key.key.ends_with("password") && key.key != "cursor_key")
        );
        assert!(
            keys.iter().all(|key| !key.description.is_empty()),
            "{keys:#?}"
        );
    }
}
