//! A client of a schema registry's Confluent-compatible REST API (Confluent Schema
//! Registry, Apicurio Registry under `/apis/ccompat/v7`, Karapace): subjects, versions,
//! compatibility and schemas by id, with a bounded cache of the schemas read by id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use serde_json::{json, Value as JsonValue};

pub use crate::compatibility::Compatibility;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What went wrong talking to the registry, or what it refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request did not get an answer (connection refused, timeout).
    #[error("schema registry at {url}: {source}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an error status.
    #[error("schema registry: {method} {url} answered {status}: {body}")]
    Status {
        /// The request's method.
        method: &'static str,
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The answer's body (the registry's message).
        body: String,
    },
    /// The local schema is not compatible with the subject's latest one.
    #[error(
        "the schema of subject {subject} is not {level} compatible with its latest registered version (id {latest_id}): {}",
        reasons.join("; ")
    )]
    Incompatible {
        /// The subject.
        subject: String,
        /// The level checked.
        level: &'static str,
        /// The id of the latest registered schema.
        latest_id: u32,
        /// What breaks it, field by field.
        reasons: Vec<String>,
    },
    /// No schema with this id in the registry.
    #[error("schema registry has no schema with id {0}")]
    UnknownId(u32),
    /// The registry's answer was not what its API describes, or its schema does not
    /// parse.
    #[error("schema registry: unexpected answer from {url}: {why}")]
    Unexpected {
        /// The URL asked.
        url: String,
        /// What was wrong.
        why: String,
    },
}

impl RegistryError {
    /// Whether trying again later may succeed (the registry was unreachable, or answered
    /// 5xx, 408 or 429); a refusal or an unknown id will not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } => true,
            RegistryError::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            _ => false,
        }
    }
}

/// The outcome of [`RegistryClient::ensure_subject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectCheck {
    /// The registry's id of the local schema: what records carry.
    pub id: u32,
    /// The id of the latest schema registered before, if the subject existed.
    pub previous_id: Option<u32>,
}

/// A client of a schema registry's Confluent-compatible API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    cache: Arc<Mutex<HashMap<u32, Arc<Schema>>>>,
    cache_capacity: usize,
}

impl RegistryClient {
    /// A client of the API at `base_url` (e.g. `http://127.0.0.1:8081` for Confluent's,
    /// `http://127.0.0.1:8080/apis/ccompat/v7` for Apicurio's), with `timeout` per
    /// request and at most `cache_capacity` schemas kept by id.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Unexpected`] if the HTTP client cannot be built.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        cache_capacity: usize,
    ) -> Result<RegistryClient, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| RegistryError::Unexpected {
                url: base_url.to_owned(),
                why: e.to_string(),
            })?;
        Ok(RegistryClient {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            cache: Arc::new(Mutex::new(HashMap::new())),
            cache_capacity: cache_capacity.max(1),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<JsonValue>,
    ) -> Result<Option<JsonValue>, RegistryError> {
        let url = format!("{}{path}", self.base);
        let name = match method.as_str() {
            "GET" => "GET",
            "PUT" => "PUT",
            _ => "POST",
        };
        let mut request = self
            .http
            .request(method, &url)
            .header("Accept", CONTENT_TYPE);
        if let Some(body) = body {
            request = request
                .header("Content-Type", CONTENT_TYPE)
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: url.clone(),
                source,
            })?;
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(RegistryError::Status {
                method: name,
                url,
                status,
                body: text,
            });
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| RegistryError::Unexpected {
                url,
                why: format!("not JSON ({e}): {text}"),
            })
    }

    fn unexpected(&self, path: &str, why: impl Into<String>) -> RegistryError {
        RegistryError::Unexpected {
            url: format!("{}{path}", self.base),
            why: why.into(),
        }
    }

    /// Sets the compatibility level of `subject`.
    ///
    /// # Errors
    ///
    /// The registry's refusal or an unreachable registry.
    pub async fn set_compatibility(
        &self,
        subject: &str,
        level: Compatibility,
    ) -> Result<(), RegistryError> {
        let path = format!("/config/{}", encode(subject));
        self.call(
            reqwest::Method::PUT,
            &path,
            Some(json!({ "compatibility": level.as_str() })),
        )
        .await?;
        Ok(())
    }

    /// The latest schema of `subject` and its id, or `None` if the subject has none.
    ///
    /// # Errors
    ///
    /// An unreachable registry or an answer not of the API's shape.
    pub async fn latest(&self, subject: &str) -> Result<Option<(u32, String)>, RegistryError> {
        let path = format!("/subjects/{}/versions/latest", encode(subject));
        let Some(answer) = self.call(reqwest::Method::GET, &path, None).await? else {
            return Ok(None);
        };
        let id = answer["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| self.unexpected(&path, "no id"))?;
        let schema = answer["schema"]
            .as_str()
            .ok_or_else(|| self.unexpected(&path, "no schema"))?;
        Ok(Some((id, schema.to_owned())))
    }

    /// Whether `schema` may follow the latest schema of `subject` at the subject's level.
    ///
    /// # Errors
    ///
    /// An unreachable registry or an answer not of the API's shape.
    pub async fn is_compatible(&self, subject: &str, schema: &str) -> Result<bool, RegistryError> {
        let path = format!(
            "/compatibility/subjects/{}/versions/latest",
            encode(subject)
        );
        let answer = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({ "schema": schema })),
            )
            .await?
            .ok_or_else(|| self.unexpected(&path, "404"))?;
        answer["is_compatible"]
            .as_bool()
            .ok_or_else(|| self.unexpected(&path, "no is_compatible"))
    }

    /// Registers `schema` under `subject` (or finds it, if already there) and returns its
    /// id.
    ///
    /// # Errors
    ///
    /// The registry's refusal (409 when incompatible), or an unreachable registry.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let path = format!("/subjects/{}/versions", encode(subject));
        let answer = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({ "schema": schema })),
            )
            .await?
            .ok_or_else(|| self.unexpected(&path, "404"))?;
        answer["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| self.unexpected(&path, "no id"))
    }

    /// The schema with registry id `id`, parsed; kept in a bounded cache.
    ///
    /// # Errors
    ///
    /// [`RegistryError::UnknownId`] when the registry has none; an unreachable registry;
    /// a schema that does not parse.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(schema) = self.cache.lock().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(schema);
        }
        let path = format!("/schemas/ids/{id}");
        let answer = self
            .call(reqwest::Method::GET, &path, None)
            .await?
            .ok_or(RegistryError::UnknownId(id))?;
        let text = answer["schema"]
            .as_str()
            .ok_or_else(|| self.unexpected(&path, "no schema"))?;
        let schema = Arc::new(
            Schema::parse_str(text)
                .map_err(|e| self.unexpected(&path, format!("the schema does not parse: {e}")))?,
        );
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= self.cache_capacity {
                // Bounded: an arbitrary entry goes (ids are few; any is cheap to refetch).
                if let Some(old) = cache.keys().next().copied() {
                    cache.remove(&old);
                }
            }
            cache.insert(id, schema.clone());
        }
        Ok(schema)
    }

    /// What a producer does at start for each Avro topic's subject: sets its
    /// compatibility `level`, checks `schema` against the latest registered one (if any),
    /// and registers it (or finds its id).
    ///
    /// # Errors
    ///
    /// [`RegistryError::Incompatible`], naming the fields that break it, when the schema
    /// may not follow the latest one at that level; otherwise the registry's errors.
    pub async fn ensure_subject(
        &self,
        subject: &str,
        schema: &str,
        level: Compatibility,
    ) -> Result<SubjectCheck, RegistryError> {
        self.set_compatibility(subject, level).await?;
        let previous = self.latest(subject).await?;
        if let Some((latest_id, latest)) = &previous {
            if !self.is_compatible(subject, schema).await? {
                let reasons = explain(latest, schema, level);
                return Err(RegistryError::Incompatible {
                    subject: subject.to_owned(),
                    level: level.as_str(),
                    latest_id: *latest_id,
                    reasons,
                });
            }
        }
        let id = self.register(subject, schema).await?;
        Ok(SubjectCheck {
            id,
            previous_id: previous.map(|(id, _)| id),
        })
    }
}

/// A subject name as a URL path segment.
fn encode(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for b in subject.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why `new` may not follow `old` at `level`, field by field (top-level and nested record
/// fields). Empty when the local check finds nothing (the registry's verdict still
/// stands; its own reason is then the one to read in its log).
pub(crate) fn explain(old: &str, new: &str, level: Compatibility) -> Vec<String> {
    let (Ok(old), Ok(new)) = (Schema::parse_str(old), Schema::parse_str(new)) else {
        return vec!["a schema does not parse".to_owned()];
    };
    let mut reasons = Vec::new();
    if level.backward() {
        // The new schema reads what the old one wrote.
        diff(&old, &new, "", "a reader of the new schema", &mut reasons);
    }
    if level.forward() {
        // The old schema reads what the new one writes.
        diff(&new, &old, "", "a reader of the old schema", &mut reasons);
    }
    if reasons.is_empty() {
        reasons.push("the registry found the change incompatible".to_owned());
    }
    reasons
}

fn diff(writer: &Schema, reader: &Schema, path: &str, who: &str, out: &mut Vec<String>) {
    let (Schema::Record(w), Schema::Record(r)) = (writer, reader) else {
        if !readable(writer, reader) {
            out.push(format!(
                "field `{}`: {who} cannot read {} as {}",
                path.trim_start_matches('.'),
                type_name(writer),
                type_name(reader)
            ));
        }
        return;
    };
    for field in &r.fields {
        let name = format!("{path}.{}", field.name);
        match w.fields.iter().find(|f| f.name == field.name) {
            None if field.default.is_none() => out.push(format!(
                "field `{}`: {who} requires it, data written before does not have it, and it has no default",
                name.trim_start_matches('.')
            )),
            None => {}
            Some(old) => diff(&old.schema, &field.schema, &name, who, out),
        }
    }
}

/// Whether data of `writer` can be read as `reader`; unions variant by variant (every
/// writer variant must be readable as some reader variant).
fn readable(writer: &Schema, reader: &Schema) -> bool {
    match (writer, reader) {
        (Schema::Union(w), _) => w.variants().iter().all(|v| readable(v, reader)),
        (_, Schema::Union(r)) => r.variants().iter().any(|v| readable(writer, v)),
        _ => SchemaCompatibility::can_read(writer, reader).is_ok(),
    }
}

fn type_name(schema: &Schema) -> String {
    match schema {
        Schema::Union(u) => u
            .variants()
            .iter()
            .map(type_name)
            .collect::<Vec<_>>()
            .join(" | "),
        Schema::Record(r) => format!("record {}", r.name.name()),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"string"},{"name":"price","type":["null","double"],"default":null}]}"#;

    #[test]
    fn an_added_optional_field_is_backward_compatible() {
        let v2 = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"string"},{"name":"price","type":["null","double"],"default":null},{"name":"b","type":["null","string"],"default":null}]}"#;
        assert_eq!(
            explain(V1, v2, Compatibility::Backward),
            ["the registry found the change incompatible"],
            "nothing local to report"
        );
    }

    #[test]
    fn a_retyped_field_is_named() {
        let v2 = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"string"},{"name":"price","type":["null","string"],"default":null}]}"#;
        let reasons = explain(V1, v2, Compatibility::Backward);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].starts_with("field `price`:"), "{reasons:?}");
    }

    #[test]
    fn an_added_required_field_is_named() {
        let v2 = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"string"},{"name":"price","type":["null","double"],"default":null},{"name":"size","type":"long"}]}"#;
        let reasons = explain(V1, v2, Compatibility::Backward);
        assert!(
            reasons[0].starts_with("field `size`:") && reasons[0].contains("no default"),
            "{reasons:?}"
        );
        // Forward only: the old schema reads new data and ignores `size`.
        assert_eq!(
            explain(V1, v2, Compatibility::Forward),
            ["the registry found the change incompatible"]
        );
    }

    #[test]
    fn subjects_are_path_encoded() {
        assert_eq!(encode("product-views-value"), "product-views-value");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
