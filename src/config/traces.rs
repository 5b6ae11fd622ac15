//! The `[traces]` section: where OpenTelemetry spans are exported (OTLP over HTTP/protobuf),
//! how traces are sampled and what the resource says. Off unless `traces.endpoint` is set.
//!
//! The standard `OTEL_*` variables are a layer of their own (`OTEL_VARIABLES`), between the
//! configuration file and the `TSAPI_*` variables, so a platform that injects them (an
//! operator, a Helm chart) configures the service like any other, and an explicit
//! `TSAPI_TRACES__*` still wins. Their values are checked like every other key's, and an error
//! names the `OTEL_*` variable it came from.

use std::time::Duration;

use figment::providers::Env;
use figment::value::{Dict, Map};
use figment::{Metadata, Profile, Provider};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration;
use super::redis::Refuse;

/// The standard variables read, and the key each one sets.
pub const OTEL_VARIABLES: [(&str, &str); 7] = [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "traces.endpoint"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "traces.url"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "traces.protocol"),
    ("OTEL_SERVICE_NAME", "traces.service_name"),
    ("OTEL_RESOURCE_ATTRIBUTES", "traces.resource_attributes"),
    ("OTEL_TRACES_SAMPLER", "traces.sampler"),
    ("OTEL_TRACES_SAMPLER_ARG", "traces.sampler_arg"),
];

/// The name figment gives the `OTEL_*` layer, so that errors can name the variable.
pub const OTEL_LAYER_NAME: &str = "OpenTelemetry environment variable";

/// Longest `resource_attributes` and `service_name` accepted: every exported batch carries
/// them.
const MAX_RESOURCE_BYTES: usize = 4096;

/// Most spans `queue_size` may hold; each waiting span is about a kilobyte.
const MAX_QUEUE_SIZE: usize = 100_000;

/// The `[traces]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TracesConfig {
    /// Base URL of an OTLP/HTTP receiver (an OpenTelemetry Collector, Grafana Tempo, Jaeger),
    /// such as `http://otel-collector:4318`; spans are posted to `<endpoint>/v1/traces` as
    /// protobuf. `http://` only: run a collector next to the service to reach a receiver that
    /// needs TLS or credentials. Unset (the default) with `url` unset too, no span is made and
    /// nothing is exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The whole URL spans are posted to, used as given (no path is added), such as
    /// `http://otel-collector:4318/v1/traces`: for a receiver whose traces path is not
    /// `/v1/traces`, or a platform that sets `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`. Wins over
    /// `endpoint`, as the OpenTelemetry specification has a signal's own variable win over the
    /// shared one. `http://` only, like `endpoint`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The OTLP transport; only `http/protobuf` is built in. A platform asking for another one
    /// is told so at start-up, instead of losing every span.
    pub protocol: Protocol,
    /// The resource's `service.name`. Unset, the `service.name` of `resource_attributes` if it
    /// has one, else `timestamp-api`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// More resource attributes, as `key=value` pairs separated by commas (values
    /// percent-encoded), such as `deployment.environment.name=prod,k8s.pod.name=api-0`; at
    /// most 4 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_attributes: Option<String>,
    /// Which traces are recorded: the OpenTelemetry sampler names. `parentbased_*` follow the
    /// caller's decision (the `traceparent` flag) and apply the rest to new traces.
    pub sampler: Sampler,
    /// The share of new traces recorded by `traceidratio` and `parentbased_traceidratio`, from
    /// 0 to 1; ignored by the other samplers.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sampler_arg: f64,
    /// Most ended spans waiting for export. When the receiver is slow or down and the queue is
    /// full, a span is dropped and counted (`timestamp_api_trace_spans_total{outcome="dropped"}`)
    /// instead of slowing a request.
    #[schemars(range(min = 1, max = MAX_QUEUE_SIZE))]
    pub queue_size: usize,
    /// Longest one export may take, retries of a `429`/`503` included; its spans are then
    /// counted as `failed`. Above 0 and at most `60s`.
    #[serde(with = "duration")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub export_timeout: Duration,
}

/// The OTLP transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Protocol {
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// The samplers of the OpenTelemetry specification (`OTEL_TRACES_SAMPLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    #[serde(rename = "traceidratio")]
    TraceIdRatio,
    ParentbasedAlwaysOn,
    ParentbasedAlwaysOff,
    #[serde(rename = "parentbased_traceidratio")]
    ParentbasedTraceIdRatio,
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            url: None,
            protocol: Protocol::HttpProtobuf,
            service_name: None,
            resource_attributes: None,
            sampler: Sampler::ParentbasedAlwaysOn,
            sampler_arg: 1.0,
            queue_size: 2048,
            export_timeout: Duration::from_secs(10),
        }
    }
}

/// The layer of `OTEL_*` variables, each under the key it sets; named `OTEL_LAYER_NAME`.
pub struct OtelEnvironment;

impl Provider for OtelEnvironment {
    fn metadata(&self) -> Metadata {
        Metadata::named(OTEL_LAYER_NAME)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Env::raw()
            .filter_map(|variable| {
                let (name, key) = OTEL_VARIABLES
                    .iter()
                    .find(|(name, _)| variable.as_str() == *name)?;
                // The specification reads an empty variable as an unset one.
                std::env::var_os(name).filter(|value| !value.is_empty())?;
                Some((*key).into())
            })
            .data()
    }
}

/// The `OTEL_*` variable that sets `key`, if one does.
pub fn otel_variable(key: &str) -> Option<&'static str> {
    OTEL_VARIABLES
        .iter()
        .find(|(_, sets)| *sets == key)
        .map(|(variable, _)| *variable)
}

impl TracesConfig {
    /// Refuses values that parse but cannot work.
    pub(super) fn check(&self, refuse: Refuse<'_>) -> Result<(), super::ConfigError> {
        if let Some(endpoint) = &self.endpoint {
            traces_url(endpoint).map_err(|message| refuse("traces.endpoint", message))?;
        }
        if let Some(url) = &self.url {
            check_http_url(url).map_err(|message| refuse("traces.url", message))?;
        }
        if let Some(name) = &self.service_name
            && (name.is_empty() || name.len() > MAX_RESOURCE_BYTES)
        {
            return Err(refuse(
                "traces.service_name",
                format!("must be 1 to {MAX_RESOURCE_BYTES} bytes"),
            ));
        }
        if let Some(attributes) = &self.resource_attributes {
            if attributes.len() > MAX_RESOURCE_BYTES {
                return Err(refuse(
                    "traces.resource_attributes",
                    format!("must be at most {MAX_RESOURCE_BYTES} bytes"),
                ));
            }
            resource_attributes(attributes)
                .map_err(|message| refuse("traces.resource_attributes", message))?;
        }
        if !(0.0..=1.0).contains(&self.sampler_arg) {
            return Err(refuse(
                "traces.sampler_arg",
                "must be a ratio from 0 to 1".into(),
            ));
        }
        if !(1..=MAX_QUEUE_SIZE).contains(&self.queue_size) {
            return Err(refuse(
                "traces.queue_size",
                format!("must be from 1 to {MAX_QUEUE_SIZE}"),
            ));
        }
        if self.export_timeout.is_zero() || self.export_timeout > Duration::from_secs(60) {
            return Err(refuse(
                "traces.export_timeout",
                "must be more than 0 and at most 60s".into(),
            ));
        }
        Ok(())
    }

    /// Where spans are posted, when tracing is on.
    pub fn traces_url(&self) -> Option<String> {
        if let Some(url) = &self.url {
            return check_http_url(url).ok().map(|()| url.clone());
        }
        self.endpoint
            .as_deref()
            .and_then(|endpoint| traces_url(endpoint).ok())
    }

    /// `service.name`: the key, else the resource attributes', else the service's name.
    pub fn resource(&self) -> Vec<(String, String)> {
        let mut attributes = self
            .resource_attributes
            .as_deref()
            .and_then(|text| resource_attributes(text).ok())
            .unwrap_or_default();
        if let Some(name) = &self.service_name {
            attributes.retain(|(key, _)| key != "service.name");
            attributes.push(("service.name".into(), name.clone()));
        } else if !attributes.iter().any(|(key, _)| key == "service.name") {
            attributes.push(("service.name".into(), "timestamp-api".into()));
        }
        attributes
    }
}

/// `<endpoint>/v1/traces`, as the OTLP specification builds it from a base URL.
fn traces_url(endpoint: &str) -> Result<String, String> {
    check_http_url(endpoint)?;
    Ok(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
}

/// Refuses what the exporter cannot post to: anything but an `http://` URL with a host.
fn check_http_url(text: &str) -> Result<(), String> {
    let uri: hyper::Uri = text
        .parse()
        .map_err(|error| format!("not a URL: {error}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "https:// is not supported: send spans to a collector next to the \
                 service over http://, and let it forward them with TLS"
                    .into(),
            );
        }
        _ => return Err("must be an http:// URL such as http://otel-collector:4318".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("must name a host, as in http://otel-collector:4318".into());
    }
    if uri.query().is_some() {
        return Err("must not have a query".into());
    }
    Ok(())
}

/// The `key=value,…` list of `OTEL_RESOURCE_ATTRIBUTES`, values percent-decoded.
fn resource_attributes(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|member| !member.is_empty())
        .map(|member| {
            let (key, value) = member
                .split_once('=')
                .ok_or_else(|| format!("{member:?} is not key=value"))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(format!("{member:?} has no key"));
            }
            let value = percent_decode(value.trim())
                .ok_or_else(|| format!("the value of {key} is not percent-encoded UTF-8"))?;
            Ok((key.to_owned(), value))
        })
        .collect()
}

fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_to_the_base_url() {
        for (endpoint, url) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            ("http://10.0.0.1/otlp", "http://10.0.0.1/otlp/v1/traces"),
        ] {
            assert_eq!(traces_url(endpoint).unwrap(), url);
        }
        for bad in [
            "collector:4318",
            "https://collector:4318",
            "grpc://collector:4317",
            "http://",
            "http://c:4318/?a=b",
            "",
        ] {
            assert!(traces_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resource_attributes_follow_the_otel_format() {
        assert_eq!(
            resource_attributes(" a=1, b = x%2Cy ,,c=%E2%9C%93").unwrap(),
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x,y".to_owned()),
                ("c".to_owned(), "✓".to_owned())
            ]
        );
        for bad in ["a", "=1", "a=%zz", "a=%e2"] {
            assert!(resource_attributes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_service_name_key_wins_over_the_resource_attribute() {
        let mut config = TracesConfig::default();
        let name = |config: &TracesConfig| {
            config
                .resource()
                .into_iter()
                .filter(|(key, _)| key == "service.name")
                .map(|(_, value)| value)
                .collect::<Vec<_>>()
        };
        assert_eq!(name(&config), ["timestamp-api"]);
        config.resource_attributes = Some("service.name=from-attributes,team=a".into());
        assert_eq!(name(&config), ["from-attributes"]);
        config.service_name = Some("from-key".into());
        assert_eq!(name(&config), ["from-key"]);
        assert!(config.resource().contains(&("team".into(), "a".into())));
    }
}
