//! The `_bulk` request body and the classification of its answer (pure; no I/O).

use serde_json::Value;

/// The NDJSON body indexing `docs` (`(id, JSON source)`) into `index`, in order. A
/// `create` action: a document whose id the index already holds is answered 409 and
/// left as it is, so a record read again adds nothing and rewrites nothing.
pub fn bulk_body(index: &str, docs: &[(String, String)]) -> Vec<u8> {
    let mut body = Vec::with_capacity(docs.iter().map(|(_, d)| d.len() + 64).sum());
    for (id, source) in docs {
        let action = serde_json::json!({"create": {"_index": index, "_id": id}});
        body.extend_from_slice(action.to_string().as_bytes());
        body.push(b'\n');
        body.extend_from_slice(source.as_bytes());
        body.push(b'\n');
    }
    body
}

/// What the index said about one document of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Indexed now.
    Indexed,
    /// Already in the index (409: created by an earlier attempt or another instance).
    Exists,
    /// Refused for a reason that can pass (429, 5xx): send it again later.
    Retry(String),
    /// Refused for good (another 4xx, e.g. a mapping conflict): sending it again cannot
    /// help.
    Rejected(String),
}

/// The per-document outcomes of a `_bulk` answer, in request order.
///
/// # Errors
///
/// A description when the answer is not a bulk answer for `expected` documents (then
/// nothing is known and every document is retried).
pub fn classify(answer: &[u8], expected: usize) -> Result<Vec<ItemOutcome>, String> {
    let answer: Value =
        serde_json::from_slice(answer).map_err(|e| format!("bulk answer is not JSON: {e}"))?;
    let items = answer
        .get("items")
        .and_then(Value::as_array)
        .ok_or("bulk answer has no items")?;
    if items.len() != expected {
        return Err(format!(
            "bulk answer has {} items for {expected} documents",
            items.len()
        ));
    }
    items
        .iter()
        .map(|item| {
            let result = item
                .get("create")
                .or_else(|| item.get("index"))
                .ok_or("bulk answer item is not a create result")?;
            let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
            let why = || {
                result.get("error").map_or_else(
                    || format!("status {status}"),
                    |e| {
                        let kind = e.get("type").and_then(Value::as_str).unwrap_or("error");
                        let reason = e.get("reason").and_then(Value::as_str).unwrap_or("");
                        format!("status {status}: {kind}: {reason}")
                    },
                )
            };
            Ok(match status {
                200..=299 => ItemOutcome::Indexed,
                409 => ItemOutcome::Exists,
                429 | 500..=599 | 0 => ItemOutcome::Retry(why()),
                _ => ItemOutcome::Rejected(why()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_one_action_and_one_source_line_per_document() {
        let body = bulk_body(
            "events",
            &[
                ("a".into(), r#"{"x":1}"#.into()),
                ("b\"".into(), r#"{"x":2}"#.into()),
            ],
        );
        let text = String::from_utf8(body).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], r#"{"create":{"_id":"a","_index":"events"}}"#);
        assert_eq!(lines[1], r#"{"x":1}"#);
        assert_eq!(lines[2], r#"{"create":{"_id":"b\"","_index":"events"}}"#);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn items_are_indexed_retried_or_rejected_by_status() {
        let answer = br#"{"took":3,"errors":true,"items":[
            {"create":{"_id":"a","status":201}},
            {"create":{"_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}},
            {"create":{"_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_id":"d","status":503}},
            {"create":{"_id":"e","status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}}]}"#;
        let outcomes = classify(answer, 5).expect("a bulk answer");
        assert_eq!(outcomes[0], ItemOutcome::Indexed);
        assert_eq!(outcomes[1], ItemOutcome::Exists);
        assert_eq!(
            outcomes[2],
            ItemOutcome::Retry("status 429: es_rejected_execution_exception: queue full".into())
        );
        assert_eq!(outcomes[3], ItemOutcome::Retry("status 503".into()));
        assert_eq!(
            outcomes[4],
            ItemOutcome::Rejected("status 400: mapper_parsing_exception: bad".into())
        );
    }

    #[test]
    fn an_answer_that_does_not_match_the_request_is_an_error() {
        assert!(classify(b"not json", 1).is_err());
        assert!(classify(br#"{"error":"x"}"#, 1).is_err());
        assert!(classify(br#"{"items":[]}"#, 1).is_err());
    }
}
