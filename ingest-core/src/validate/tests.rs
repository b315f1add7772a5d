//! Unit and property tests of validation: every rule, and hostile input.

use bytes::Bytes;
use proptest::prelude::*;
use time::macros::datetime;
use time::OffsetDateTime;

use super::*;

const NOW: OffsetDateTime = datetime!(2026-11-24 10:00:00 UTC);

fn check(kind: Option<EventKind>, json: &str) -> Result<ValidEvent, ValidationError> {
    Validator::default().validate_at(kind, Bytes::copy_from_slice(json.as_bytes()), NOW)
}

fn rejects(kind: Option<EventKind>, json: &str) -> ValidationError {
    match check(kind, json) {
        Ok(event) => panic!("accepted {json}: {event:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_rejects(kind: EventKind, json: &str, code: ErrorCode, field: Option<&str>) {
    let err = rejects(Some(kind), json);
    let shown = &json[..json.len().min(120)];
    assert_eq!(err.code(), code, "{shown}: {err}");
    assert_eq!(err.field_path(), field, "{shown}: {err}");
}

const PV: EventKind = EventKind::ProductView;

#[test]
fn valid_events_of_every_type() {
    let cases = [
        (
            PV,
            r#"{"user_id":"u1","product_id":"sku-1","category":"shoes","brand":"Acme","price":19.99,"currency":"EUR"}"#,
        ),
        (
            EventKind::Cart,
            r#"{"anonymous_id":"a1","action":"add","product_id":"sku-1","quantity":2,"price":5,"currency":"USD","cart_id":"c1"}"#,
        ),
        (EventKind::Cart, r#"{"user_id":"u1","action":"clear"}"#),
        (
            EventKind::Cart,
            r#"{"user_id":"u1","action":"remove","product_id":"p"}"#,
        ),
        (
            EventKind::Purchase,
            r#"{"user_id":"u1","order_id":"o1","items":[{"product_id":"p","quantity":1,"price":0}],"total":0,"currency":"JPY","discount":1,"tax":2,"shipping":3,"coupon":"X"}"#,
        ),
        (
            EventKind::Search,
            r#"{"user_id":"u1","query":"red shoes","results_count":0,"filters":{"size":[42]}}"#,
        ),
    ];
    for (kind, json) in cases {
        let event = check(Some(kind), json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(event.kind(), kind);
        assert_eq!(
            event.payload().as_ref(),
            json.as_bytes(),
            "payload untouched"
        );
    }
}

#[test]
fn common_fields_key_and_event_id() {
    let id = "0190c6a4-5a5e-7d5e-8b5e-0123456789ab";
    let event = check(
        Some(PV),
        &format!(r#"{{"event_id":"{id}","user_id":"u1","anonymous_id":"a1","session_id":"s","timestamp":"2026-11-24T09:59:00+01:00","product_id":"p","extra":{{"kept":true}}}}"#),
    )
    .expect("valid");
    assert_eq!(event.event_id().to_string(), id);
    assert!(!event.event_id_generated());
    assert_eq!(
        event.partition_key().as_ref(),
        b"u1",
        "user_id wins over anonymous_id"
    );

    let event = check(
        Some(PV),
        r#"{"anonymous_id":"a1","user_id":null,"product_id":"p"}"#,
    )
    .expect("valid");
    assert_eq!(event.partition_key().as_ref(), b"a1");
    assert!(event.event_id_generated());
    assert_eq!(
        event.event_id().get_version_num(),
        7,
        "generated ids are UUIDv7"
    );
}

#[test]
fn identity_rules() {
    assert_rejects(
        PV,
        r#"{"product_id":"p"}"#,
        ErrorCode::MissingField,
        Some("user_id"),
    );
    assert_rejects(
        PV,
        r#"{"user_id":null,"anonymous_id":null,"product_id":"p"}"#,
        ErrorCode::MissingField,
        Some("user_id"),
    );
    assert_rejects(
        PV,
        r#"{"user_id":"","product_id":"p"}"#,
        ErrorCode::InvalidValue,
        Some("user_id"),
    );
    assert_rejects(
        PV,
        r#"{"user_id":42,"product_id":"p"}"#,
        ErrorCode::InvalidType,
        Some("user_id"),
    );
    let long = "x".repeat(129);
    assert_rejects(
        PV,
        &format!(r#"{{"user_id":"{long}","product_id":"p"}}"#),
        ErrorCode::TooLong,
        Some("user_id"),
    );
    assert_rejects(
        PV,
        &format!(r#"{{"anonymous_id":"{long}","product_id":"p"}}"#),
        ErrorCode::TooLong,
        Some("anonymous_id"),
    );
    assert_rejects(
        PV,
        &format!(r#"{{"user_id":"u","session_id":"{long}","product_id":"p"}}"#),
        ErrorCode::TooLong,
        Some("session_id"),
    );
    // 128 characters of 2 bytes each are 256 bytes, and allowed.
    let wide = "é".repeat(128);
    assert!(check(
        Some(PV),
        &format!(r#"{{"user_id":"{wide}","product_id":"p"}}"#)
    )
    .is_ok());
    assert_rejects(
        PV,
        r#"{"user_id":"u","event_id":"not-a-uuid","product_id":"p"}"#,
        ErrorCode::InvalidEventId,
        Some("event_id"),
    );
    assert_rejects(
        PV,
        r#"{"user_id":"u","event_id":7,"product_id":"p"}"#,
        ErrorCode::InvalidType,
        Some("event_id"),
    );
}

#[test]
fn timestamp_rules() {
    let ok = |ts: &str| {
        check(
            Some(PV),
            &format!(r#"{{"user_id":"u","timestamp":"{ts}","product_id":"p"}}"#),
        )
    };
    assert!(ok("2026-11-24T10:14:00Z").is_ok());
    assert!(ok("2026-11-17T10:01:00.123456Z").is_ok());
    for (ts, code) in [
        ("2026-11-24 10:00:00", ErrorCode::InvalidTimestamp),
        ("yesterday", ErrorCode::InvalidTimestamp),
        ("2026-11-24T10:16:00Z", ErrorCode::TimestampOutOfRange),
        ("2026-11-17T09:59:00Z", ErrorCode::TimestampOutOfRange),
    ] {
        assert_eq!(ok(ts).expect_err(ts).code(), code, "{ts}");
    }
    let limits = Limits {
        max_future_skew: Duration::from_secs(3600),
        ..Limits::default()
    };
    let body = Bytes::from_static(
        br#"{"user_id":"u","timestamp":"2026-11-24T10:30:00Z","product_id":"p"}"#,
    );
    assert!(
        Validator::new(limits)
            .validate_at(Some(PV), body, NOW)
            .is_ok(),
        "skew is configurable"
    );
}

#[test]
fn context_rules() {
    let with = |ctx: &str| {
        check(
            Some(PV),
            &format!(r#"{{"user_id":"u","product_id":"p","context":{ctx}}}"#),
        )
    };
    assert!(with(r#"{"user_agent":"Mozilla/5.0","ip":"2001:db8::1","page_url":"https://x/","referrer":"https://y/","locale":"de-DE","experiments":{"checkout_v2":"control"},"other":1}"#).is_ok());
    let cases = [
        (r#""nope""#, ErrorCode::InvalidType, "context"),
        (
            r#"{"ip":"300.1.1.1"}"#,
            ErrorCode::InvalidValue,
            "context.ip",
        ),
        (
            r#"{"user_agent":5}"#,
            ErrorCode::InvalidType,
            "context.user_agent",
        ),
        (
            r#"{"experiments":["a"]}"#,
            ErrorCode::InvalidType,
            "context.experiments",
        ),
        (
            r#"{"experiments":{"flag":1}}"#,
            ErrorCode::InvalidValue,
            "context.experiments.flag",
        ),
        (
            r#"{"experiments":{"flag":""}}"#,
            ErrorCode::InvalidValue,
            "context.experiments.flag",
        ),
    ];
    for (ctx, code, field) in cases {
        let err = with(ctx).expect_err(ctx);
        assert_eq!(
            (err.code(), err.field_path()),
            (code, Some(field)),
            "{ctx}: {err}"
        );
    }
    let long_locale = format!(r#"{{"locale":"{}"}}"#, "a".repeat(36));
    assert_eq!(
        with(&long_locale).expect_err("locale").code(),
        ErrorCode::TooLong
    );
}

#[test]
fn product_view_rules() {
    assert_rejects(
        PV,
        r#"{"user_id":"u"}"#,
        ErrorCode::MissingField,
        Some("product_id"),
    );
    assert_rejects(
        PV,
        r#"{"user_id":"u","product_id":7}"#,
        ErrorCode::InvalidType,
        Some("product_id"),
    );
    assert_rejects(
        PV,
        r#"{"user_id":"u","product_id":"p","price":-0.01}"#,
        ErrorCode::InvalidValue,
        Some("price"),
    );
    assert_rejects(
        PV,
        r#"{"user_id":"u","product_id":"p","price":"9.99"}"#,
        ErrorCode::InvalidType,
        Some("price"),
    );
    assert_rejects(
        PV,
        r#"{"user_id":"u","product_id":"p","currency":"EURO"}"#,
        ErrorCode::InvalidCurrency,
        Some("currency"),
    );
    assert_rejects(
        PV,
        r#"{"user_id":"u","product_id":"p","currency":"eur"}"#,
        ErrorCode::InvalidCurrency,
        Some("currency"),
    );
    let err = rejects(
        Some(PV),
        r#"{"user_id":"u","product_id":"p","currency":"EURO"}"#,
    );
    assert_eq!(
        err.to_string(),
        r#"invalid_currency: currency: "EURO" is not an ISO 4217 currency code"#
    );
}

#[test]
fn cart_rules() {
    let cart = EventKind::Cart;
    assert_rejects(
        cart,
        r#"{"user_id":"u","product_id":"p"}"#,
        ErrorCode::MissingField,
        Some("action"),
    );
    assert_rejects(
        cart,
        r#"{"user_id":"u","action":"buy","product_id":"p"}"#,
        ErrorCode::InvalidValue,
        Some("action"),
    );
    assert_rejects(
        cart,
        r#"{"user_id":"u","action":"add","quantity":1}"#,
        ErrorCode::MissingField,
        Some("product_id"),
    );
    assert_rejects(
        cart,
        r#"{"user_id":"u","action":"add","product_id":"p"}"#,
        ErrorCode::MissingField,
        Some("quantity"),
    );
    assert_rejects(
        cart,
        r#"{"user_id":"u","action":"update","product_id":"p","quantity":-1}"#,
        ErrorCode::InvalidValue,
        Some("quantity"),
    );
    assert_rejects(
        cart,
        r#"{"user_id":"u","action":"update","product_id":"p","quantity":1.5}"#,
        ErrorCode::InvalidValue,
        Some("quantity"),
    );
    assert_rejects(
        cart,
        r#"{"user_id":"u","action":"remove"}"#,
        ErrorCode::MissingField,
        Some("product_id"),
    );
    assert!(check(
        Some(cart),
        r#"{"user_id":"u","action":"update","product_id":"p","quantity":0}"#
    )
    .is_ok());
    assert!(check(
        Some(cart),
        r#"{"user_id":"u","action":"add","product_id":"p","quantity":2.0}"#
    )
    .is_ok());
}

#[test]
fn purchase_rules() {
    let p = EventKind::Purchase;
    let base = |items: &str| {
        format!(r#"{{"user_id":"u","order_id":"o","items":{items},"total":10,"currency":"EUR"}}"#)
    };
    assert!(check(
        Some(p),
        &base(r#"[{"product_id":"a","quantity":1,"price":10,"name":"kept"}]"#)
    )
    .is_ok());
    assert_rejects(p, &base("[]"), ErrorCode::InvalidValue, Some("items"));
    assert_rejects(p, &base("{}"), ErrorCode::InvalidType, Some("items"));
    assert_rejects(p, &base("[1]"), ErrorCode::InvalidType, Some("items[0]"));
    assert_rejects(
        p,
        &base(r#"[{"product_id":"a","quantity":1,"price":1},{"quantity":1,"price":1}]"#),
        ErrorCode::MissingField,
        Some("items[1].product_id"),
    );
    assert_rejects(
        p,
        &base(r#"[{"product_id":"a","quantity":0,"price":1}]"#),
        ErrorCode::InvalidValue,
        Some("items[0].quantity"),
    );
    assert_rejects(
        p,
        &base(r#"[{"product_id":"a","quantity":1}]"#),
        ErrorCode::MissingField,
        Some("items[0].price"),
    );
    assert_rejects(
        p,
        &base(r#"[{"product_id":"a","quantity":1,"price":-1}]"#),
        ErrorCode::InvalidValue,
        Some("items[0].price"),
    );
    // 1,000 items do not fit the default 32 KiB event limit; raise it to reach the item rule.
    let roomy = Validator::new(Limits {
        max_event_bytes: 1 << 20,
        ..Limits::default()
    });
    let items = |n| vec![r#"{"product_id":"a","quantity":1,"price":1}"#; n].join(",");
    let order = |n| Bytes::from(base(&format!("[{}]", items(n))));
    assert!(roomy.validate_at(Some(p), order(1000), NOW).is_ok());
    let err = roomy
        .validate_at(Some(p), order(1001), NOW)
        .expect_err("1001 items");
    assert_eq!(
        (err.code(), err.field_path()),
        (ErrorCode::InvalidValue, Some("items"))
    );
    let ok_items = r#"[{"product_id":"a","quantity":1,"price":1}]"#;
    assert_rejects(
        p,
        &format!(r#"{{"user_id":"u","items":{ok_items},"total":1,"currency":"EUR"}}"#),
        ErrorCode::MissingField,
        Some("order_id"),
    );
    assert_rejects(
        p,
        &format!(r#"{{"user_id":"u","order_id":"o","items":{ok_items},"currency":"EUR"}}"#),
        ErrorCode::MissingField,
        Some("total"),
    );
    assert_rejects(
        p,
        &format!(r#"{{"user_id":"u","order_id":"o","items":{ok_items},"total":1}}"#),
        ErrorCode::MissingField,
        Some("currency"),
    );
    assert_rejects(
        p,
        &format!(
            r#"{{"user_id":"u","order_id":"o","items":{ok_items},"total":1,"currency":"EUR","tax":-1}}"#
        ),
        ErrorCode::InvalidValue,
        Some("tax"),
    );
}

#[test]
fn search_rules() {
    let s = EventKind::Search;
    assert_rejects(
        s,
        r#"{"user_id":"u"}"#,
        ErrorCode::MissingField,
        Some("query"),
    );
    assert_rejects(
        s,
        &format!(r#"{{"user_id":"u","query":"{}"}}"#, "q".repeat(1025)),
        ErrorCode::TooLong,
        Some("query"),
    );
    assert!(check(
        Some(s),
        &format!(r#"{{"user_id":"u","query":"{}"}}"#, "ü".repeat(1024))
    )
    .is_ok());
    assert_rejects(
        s,
        r#"{"user_id":"u","query":"q","results_count":-1}"#,
        ErrorCode::InvalidValue,
        Some("results_count"),
    );
    assert_rejects(
        s,
        r#"{"user_id":"u","query":"q","filters":[]}"#,
        ErrorCode::InvalidType,
        Some("filters"),
    );
}

#[test]
fn type_field_rules() {
    assert!(check(None, r#"{"type":"search","user_id":"u","query":"q"}"#).is_ok());
    assert!(check(
        Some(EventKind::Search),
        r#"{"type":"search","user_id":"u","query":"q"}"#
    )
    .is_ok());
    let err = rejects(None, r#"{"user_id":"u","query":"q"}"#);
    assert_eq!(
        (err.code(), err.field_path()),
        (ErrorCode::MissingField, Some("type"))
    );
    let err = rejects(None, r#"{"type":"refund","user_id":"u"}"#);
    assert_eq!(err.code(), ErrorCode::UnknownEventType);
    let err = rejects(Some(PV), r#"{"type":"search","user_id":"u","query":"q"}"#);
    assert_eq!(err.code(), ErrorCode::TypeMismatch);
}

#[test]
fn errors_carry_the_event_type_when_it_is_known() {
    let err = rejects(None, r#"{"type":"search","user_id":"u"}"#);
    assert_eq!(
        (err.code(), err.event_kind()),
        (ErrorCode::MissingField, Some(EventKind::Search))
    );
    let err = rejects(None, r#"{"type":"refund","user_id":"u"}"#);
    assert_eq!(err.event_kind(), None, "an unknown type names no kind");
    let err = rejects(None, "[1]");
    assert_eq!(err.event_kind(), None);
    let err = rejects(Some(EventKind::Cart), "[1]");
    assert_eq!(
        err.event_kind(),
        Some(EventKind::Cart),
        "the endpoint names the kind"
    );
}

#[test]
fn hostile_documents() {
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (b"".to_vec(), ErrorCode::EmptyBody),
        (b"  \n ".to_vec(), ErrorCode::EmptyBody),
        (b"{\"user_id\":\"u\",".to_vec(), ErrorCode::InvalidJson),
        (b"{\"user_id\":\"u\"} x".to_vec(), ErrorCode::InvalidJson),
        (b"{'user_id':'u'}".to_vec(), ErrorCode::InvalidJson),
        (
            b"{\"user_id\":\"\xff\xfe\",\"product_id\":\"p\"}".to_vec(),
            ErrorCode::InvalidUtf8,
        ),
        (b"[1,2]".to_vec(), ErrorCode::NotAnObject),
        (b"\"just a string\"".to_vec(), ErrorCode::NotAnObject),
        (b"null".to_vec(), ErrorCode::NotAnObject),
        (
            b"{\"user_id\":\"u\",\"product_id\":\"p\",\"user_id\":\"v\"}".to_vec(),
            ErrorCode::DuplicateField,
        ),
        (
            b"{\"user_id\":\"u\",\"product_id\":\"p\",\"x\":{\"a\":1,\"a\":2}}".to_vec(),
            ErrorCode::DuplicateField,
        ),
        (vec![b'{'; 100_000], ErrorCode::EventTooLarge),
    ];
    for (body, code) in cases {
        let err = Validator::default()
            .validate_at(Some(PV), Bytes::from(body.clone()), NOW)
            .expect_err(&String::from_utf8_lossy(&body));
        assert_eq!(
            err.code(),
            code,
            "{:?}: {err}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
    }
}

#[test]
fn a_duplicate_key_anywhere_outranks_every_other_error_and_the_first_is_named() {
    let cases = [
        // A rule error before the duplicate, in document order and in rule order.
        (PV, r#"{"product_id":"p","x":{"a":1,"a":2}}"#, "a"),
        (
            PV,
            r#"{"user_id":"","product_id":"p","f":[{"b":1,"b":2}]}"#,
            "b",
        ),
        // Inside objects the rules index themselves, with a rule error beside them.
        (
            PV,
            r#"{"user_id":"u","product_id":"p","context":{"ip":"nope","c":1,"c":2}}"#,
            "c",
        ),
        (
            EventKind::Purchase,
            r#"{"user_id":"u","order_id":"o","total":1,"currency":"EUR","items":[{"product_id":"p","quantity":1},{"product_id":"p","quantity":1,"price":1,"price":2}]}"#,
            "price",
        ),
        // `items` of a type that does not read it, on an otherwise valid event.
        (
            PV,
            r#"{"user_id":"u","product_id":"p","items":[{"k":1,"k":2}]}"#,
            "k",
        ),
        // The top-level object's own keys come first, then nested values in order.
        (
            PV,
            r#"{"context":{"a":1,"a":2},"x":{"b":1,"b":2},"product_id":"p","product_id":"q"}"#,
            "product_id",
        ),
        (
            PV,
            r#"{"user_id":"u","product_id":"p","context":{"a":1,"a":2},"x":{"b":1,"b":2}}"#,
            "a",
        ),
        (
            PV,
            r#"{"user_id":"u","product_id":"p","x":{"b":1,"b":2},"context":{"a":1,"a":2}}"#,
            "b",
        ),
        // More unknown keys than the pairwise table holds.
        (
            PV,
            r#"{"user_id":"u","product_id":"p","k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k3":3}"#,
            "k3",
        ),
    ];
    for (kind, json, key) in cases {
        let err = rejects(Some(kind), json);
        assert_eq!(err.code(), ErrorCode::DuplicateField, "{json}: {err}");
        assert_eq!(err.field_path(), Some(key), "{json}: {err}");
    }
}

#[test]
fn nesting_limit_counts_the_event_as_level_one() {
    let nested = |levels: usize| {
        // The event object is level 1; `levels - 1` more objects nest inside "x".
        let inner = "{\"x\":".repeat(levels - 1) + "1" + &"}".repeat(levels - 1);
        format!(r#"{{"user_id":"u","product_id":"p","x":{inner}}}"#)
    };
    assert!(
        check(Some(PV), &nested(32)).is_ok(),
        "32 levels are allowed"
    );
    let err = rejects(Some(PV), &nested(33));
    assert_eq!(err.code(), ErrorCode::TooDeep, "{err}");
    // Far beyond any limit: must fail cleanly, not overflow the stack.
    let deep = "[".repeat(30_000);
    let err = Validator::new(Limits {
        max_event_bytes: 1 << 20,
        ..Limits::default()
    })
    .validate_at(Some(PV), Bytes::from(deep), NOW)
    .expect_err("deep");
    assert!(
        matches!(err.code(), ErrorCode::TooDeep | ErrorCode::InvalidJson),
        "{err}"
    );
}

#[test]
fn huge_numbers_and_strings() {
    // A number beyond u64 in an unknown field: parsed as a float or refused, never a panic.
    let big = format!(
        r#"{{"user_id":"u","product_id":"p","n":{}}}"#,
        "9".repeat(400)
    );
    let _ = check(Some(PV), &big);
    // Valid JSON with an integer beyond 64 bits is accepted: it is kept as sent, and a
    // contract field holding one is out of range, not malformed.
    check(
        Some(PV),
        r#"{"user_id":"u","product_id":"p","n":295236504452978114560}"#,
    )
    .expect("a big integer in an unknown field is valid JSON");
    let err = rejects(
        Some(EventKind::Cart),
        r#"{"user_id":"u","action":"add","product_id":"p","quantity":295236504452978114560}"#,
    );
    assert_eq!(err.code(), ErrorCode::InvalidValue, "{err}");
    let err = rejects(
        Some(PV),
        r#"{"user_id":"u","product_id":"p","price":1e999}"#,
    );
    assert!(
        matches!(err.code(), ErrorCode::InvalidJson | ErrorCode::InvalidValue),
        "{err}"
    );
    // 10 MB string: refused by size before any parsing.
    let huge = format!(
        r#"{{"user_id":"u","product_id":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    assert_eq!(rejects(Some(PV), &huge).code(), ErrorCode::EventTooLarge);
    let limits = Limits {
        max_event_bytes: 16 << 20,
        max_batch_bytes: 16 << 20,
        ..Limits::default()
    };
    let err = Validator::new(limits)
        .validate_at(Some(PV), Bytes::from(huge), NOW)
        .expect_err("product_id too long");
    assert_eq!(err.code(), ErrorCode::TooLong);
}

#[test]
fn scratch_is_reused_safely_across_calls_and_limits() {
    let small = Validator::new(Limits {
        max_depth: 2,
        ..Limits::default()
    });
    let normal = Validator::default();
    let json = r#"{"user_id":"u","product_id":"p","a":{"b":{"c":1}}}"#;
    for _ in 0..3 {
        assert_eq!(
            small
                .validate_at(Some(PV), Bytes::from_static(json.as_bytes()), NOW)
                .expect_err("deep")
                .code(),
            ErrorCode::TooDeep
        );
        assert!(normal
            .validate_at(Some(PV), Bytes::from_static(json.as_bytes()), NOW)
            .is_ok());
    }
}

#[track_caller]
fn assert_refused(kind: EventKind, json: &str, field: &str, message: &str) {
    let err = rejects(Some(kind), json);
    assert_eq!(
        (err.code(), err.field_path(), err.message()),
        (ErrorCode::InvalidValue, Some(field), message),
        "{json}"
    );
    assert_eq!(err.event_kind(), Some(kind), "{json}");
}

const CONTROL: &str = "must not contain control characters (U+0000–U+001F, U+007F–U+009F)";

#[test]
fn identifiers_refuse_control_characters_separators_and_blank_values() {
    // JSON escapes of the refused characters, and what the message says.
    let refused = [
        (r"\u0000", CONTROL),
        (r"\t", CONTROL),
        (r"\n", CONTROL),
        (r"\u001f", CONTROL),
        (r"\u007f", CONTROL),
        (r"\u0085", CONTROL),
        (r"\u009f", CONTROL),
        (
            r"\u2028",
            "must not contain line or paragraph separators (U+2028, U+2029)",
        ),
        (
            r"\u2029",
            "must not contain line or paragraph separators (U+2028, U+2029)",
        ),
    ];
    let fields = [
        (PV, r#"{"user_id":"X","product_id":"p"}"#, "user_id"),
        (
            PV,
            r#"{"anonymous_id":"X","product_id":"p"}"#,
            "anonymous_id",
        ),
        (
            PV,
            r#"{"user_id":"u","session_id":"X","product_id":"p"}"#,
            "session_id",
        ),
        (PV, r#"{"user_id":"u","product_id":"X"}"#, "product_id"),
        (
            EventKind::Cart,
            r#"{"user_id":"u","action":"clear","cart_id":"X"}"#,
            "cart_id",
        ),
        (
            EventKind::Purchase,
            r#"{"user_id":"u","order_id":"X","items":[{"product_id":"p","quantity":1,"price":1}],"total":1,"currency":"EUR"}"#,
            "order_id",
        ),
        (
            EventKind::Purchase,
            r#"{"user_id":"u","order_id":"o","items":[{"product_id":"p","quantity":1,"price":1},{"product_id":"X","quantity":1,"price":1}],"total":1,"currency":"EUR"}"#,
            "items[1].product_id",
        ),
        (
            EventKind::Purchase,
            r#"{"user_id":"u","order_id":"o","items":[{"product_id":"p","quantity":1,"price":1}],"total":1,"currency":"EUR","coupon":"X"}"#,
            "coupon",
        ),
    ];
    for (kind, template, field) in fields {
        let name = field.rsplit('.').next().unwrap_or(field);
        for (escape, reason) in refused {
            let json = template.replace('X', &format!("a{escape}b"));
            assert_refused(kind, &json, field, &format!("{name} {reason}"));
        }
        for blank in [" ", r"  \u00a0", r"\u3000"] {
            let json = template.replace('X', blank);
            assert_refused(
                kind,
                &json,
                field,
                &format!("{name} must not be only whitespace"),
            );
        }
        // Printable text around them is fine: spaces inside, `=`, non-Latin scripts.
        for fine in ["a b", "a=b", "商品-1", r"\u00e9", r"\ud83d\ude00"] {
            let json = template.replace('X', fine);
            check(Some(kind), &json).unwrap_or_else(|e| panic!("{json}: {e}"));
        }
    }
}

#[test]
fn no_string_or_key_may_hold_nul_anywhere() {
    assert_refused(
        EventKind::Search,
        r#"{"user_id":"u","query":"red\u0000shoes"}"#,
        "query",
        "query must not contain U+0000 (NUL)",
    );
    assert_refused(
        PV,
        r#"{"user_id":"u","product_id":"p","category":"\u0000"}"#,
        "category",
        "category must not contain U+0000 (NUL)",
    );
    assert_refused(
        PV,
        r#"{"user_id":"u","product_id":"p","context":{"user_agent":"Mozilla\u0000"}}"#,
        "context.user_agent",
        "user_agent must not contain U+0000 (NUL)",
    );
    assert_refused(
        EventKind::Search,
        r#"{"user_id":"u","query":"q","filters":{"color":["red","\u0000"]}}"#,
        "filters.color[1]",
        "color[1] must not contain U+0000 (NUL)",
    );
    // Unknown fields, at any depth, and keys.
    assert_refused(
        PV,
        r#"{"user_id":"u","product_id":"p","x":{"y":[{"z":"\u0000"}]}}"#,
        "x.y[0].z",
        "z must not contain U+0000 (NUL)",
    );
    assert_refused(
        PV,
        r#"{"user_id":"u","product_id":"p","note":"a\u0000"}"#,
        "note",
        "note must not contain U+0000 (NUL)",
    );
    assert_refused(
        PV,
        r#"{"user_id":"u","product_id":"p","x":{"a\u0000b":1}}"#,
        r#"x."a\0b""#,
        "object keys must not contain U+0000 (NUL)",
    );
    assert_refused(
        PV,
        r#"{"user_id":"u","product_id":"p","context":{"\u0000":1}}"#,
        r#"context."\0""#,
        "object keys must not contain U+0000 (NUL)",
    );
    // Batch elements carry no endpoint type, and are refused the same way.
    let err = rejects(None, r#"{"type":"search","user_id":"u","query":"\u0000"}"#);
    assert_eq!(
        (err.code(), err.field_path(), err.event_kind()),
        (
            ErrorCode::InvalidValue,
            Some("query"),
            Some(EventKind::Search)
        )
    );
    // Other control characters are fine outside identifiers.
    check(
        Some(EventKind::Search),
        r#"{"user_id":"u","query":"a\tb\u0001\u0085\u2028","x":"\u001f"}"#,
    )
    .expect("only U+0000 is refused in text");
}

#[test]
fn an_escaped_backslash_before_u0000_is_text_not_nul() {
    // `\\u0000` is a backslash followed by the letters `u0000`.
    for json in [
        r#"{"user_id":"u","query":"\\u0000"}"#,
        r#"{"user_id":"u","query":"a\\\\\\u0000"}"#,
        r#"{"user_id":"u\\u0000","query":"q","\\u0000":"\\u0000"}"#,
    ] {
        check(Some(EventKind::Search), json).unwrap_or_else(|e| panic!("{json}: {e}"));
    }
    // An odd number of backslashes leaves a real escape.
    assert_refused(
        EventKind::Search,
        r#"{"user_id":"u","query":"a\\\u0000"}"#,
        "query",
        "query must not contain U+0000 (NUL)",
    );
}

#[test]
fn nul_is_reported_after_the_rules_and_after_duplicates() {
    // A rule error elsewhere is the first error in check order.
    let err = rejects(Some(PV), r#"{"user_id":"u","x":"\u0000"}"#);
    assert_eq!(err.code(), ErrorCode::MissingField, "{err}");
    let err = rejects(
        Some(PV),
        r#"{"user_id":"u","product_id":"p","x":"\u0000","y":{"a":1,"a":2}}"#,
    );
    assert_eq!(err.code(), ErrorCode::DuplicateField, "{err}");
}

#[test]
fn a_product_view_needs_version_2_when_it_sets_a_field_version_2_added() {
    let version = |fields: &str| {
        check(
            Some(EventKind::ProductView),
            &format!(r#"{{"user_id":"u","product_id":"p"{fields}}}"#),
        )
        .map(|e| e.schema_version())
    };
    assert_eq!(version(""), Ok(1));
    assert_eq!(
        version(r#","variant":null,"position":null"#),
        Ok(1),
        "null is absent"
    );
    assert_eq!(version(r#","variant":"red / XL""#), Ok(2));
    assert_eq!(version(r#","list_id":"search-results""#), Ok(2));
    assert_eq!(version(r#","position":0"#), Ok(2));
    assert_eq!(version(r#","position":3.0"#), Ok(2));
    assert_eq!(
        check(
            Some(EventKind::Cart),
            r#"{"user_id":"u","action":"clear","variant":"x"}"#
        )
        .map(|e| e.schema_version()),
        Ok(1),
        "an unknown field of another type"
    );
    for (fields, field, code) in [
        (r#","variant":1"#, "variant", ErrorCode::InvalidType),
        (
            r#","variant":"a\u0000b""#,
            "variant",
            ErrorCode::InvalidValue,
        ),
        (r#","list_id":"""#, "list_id", ErrorCode::InvalidValue),
        (r#","position":-1"#, "position", ErrorCode::InvalidValue),
        (r#","position":1.5"#, "position", ErrorCode::InvalidValue),
        (
            r#","position":1000001"#,
            "position",
            ErrorCode::InvalidValue,
        ),
    ] {
        let error = version(fields).expect_err(fields);
        assert_eq!(
            (error.code(), error.field_path()),
            (code, Some(field)),
            "{fields}"
        );
    }
    let long = format!(r#","variant":"{}""#, "v".repeat(257));
    assert_eq!(version(&long).expect_err("long").code(), ErrorCode::TooLong);
}

#[test]
fn a_valid_event_says_whether_it_names_experiments() {
    let names = |context: &str| {
        check(
            Some(EventKind::ProductView),
            &format!(r#"{{"user_id":"u","product_id":"p"{context}}}"#),
        )
        .expect("valid")
        .has_experiments()
    };
    assert!(names(
        r#","context":{"experiments":{"checkout_v2":"control"}}"#
    ));
    assert!(!names(""));
    assert!(!names(r#","context":null"#));
    assert!(!names(r#","context":{"locale":"de-DE"}"#));
    assert!(!names(r#","context":{"experiments":{}}"#));
}

#[test]
fn experiments_refuse_bad_flags_and_variants_with_an_escaped_path() {
    let with = |experiments: &str| {
        check(
            Some(PV),
            &format!(
                r#"{{"user_id":"u","product_id":"p","context":{{"experiments":{experiments}}}}}"#
            ),
        )
    };
    let cases = [
        (
            r#"{"a=b":"on"}"#,
            r#""a=b""#,
            "experiment flag names must not contain '='",
        ),
        (
            r#"{"a\tb":"on"}"#,
            r#""a\tb""#,
            "experiment flag names must not contain control characters (U+0000–U+001F, U+007F–U+009F)",
        ),
        (
            r#"{"x\r\nFake-Header: 1":"on"}"#,
            r#""x\r\nFake-Header: 1""#,
            "experiment flag names must not contain control characters (U+0000–U+001F, U+007F–U+009F)",
        ),
        (
            r#"{"":"on"}"#,
            r#""""#,
            "experiment flag names must not be empty",
        ),
        (
            r#"{" ":"on"}"#,
            r#"" ""#,
            "experiment flag names must not be only whitespace",
        ),
        (
            r#"{"flag":"a\u0000"}"#,
            "flag",
            "experiment variant names must not contain control characters (U+0000–U+001F, U+007F–U+009F)",
        ),
        (
            r#"{"flag":"a\tb"}"#,
            "flag",
            "experiment variant names must not contain control characters (U+0000–U+001F, U+007F–U+009F)",
        ),
        (
            r#"{"flag":""}"#,
            "flag",
            "experiment variant names must not be empty",
        ),
        (
            r#"{"flag":1}"#,
            "flag",
            "experiment variant names must be strings, not a number",
        ),
    ];
    for (experiments, key, message) in cases {
        let err = with(experiments).expect_err(experiments);
        assert_eq!(
            (err.code(), err.field_path(), err.message()),
            (
                ErrorCode::InvalidValue,
                Some(&*format!("context.experiments.{key}")),
                message
            ),
            "{experiments}"
        );
    }
    // A long flag is named by its first 64 characters only.
    let long = "f".repeat(5000);
    let err = with(&format!(r#"{{"{long}":"on"}}"#)).expect_err("long flag");
    assert_eq!(
        err.field_path(),
        Some(&*format!("context.experiments.{:?}…", "f".repeat(64)))
    );
    assert_eq!(
        err.message(),
        "experiment flag names must be at most 128 characters long"
    );
    // `=` is allowed in variants, and a TAB-free flag of 128 characters is fine.
    with(&format!(r#"{{"{}":"a=b"}}"#, "f".repeat(128))).expect("valid experiment");
}

#[test]
fn duplicate_keys_are_named_escaped() {
    let err = rejects(
        Some(PV),
        r#"{"user_id":"u","product_id":"p","x":{"a\nb":1,"a\nb":2}}"#,
    );
    assert_eq!(
        (err.code(), err.field_path()),
        (ErrorCode::DuplicateField, Some(r#""a\nb""#))
    );
}

/// Client text in an error (a duplicate key, a bad value) is shown escaped and cut:
/// a 100 KB key holding NUL, CR, LF and ESC gives a field path and a message of a few
/// dozen characters without a control character, so neither the `error_field` and
/// `error_message` headers of a dead letter nor an HTTP answer can be stuffed or spoofed.
#[test]
fn client_text_in_errors_is_escaped_and_bounded() {
    let limits = Limits {
        max_event_bytes: 1 << 20,
        ..Limits::default()
    };
    let validator = Validator::new(limits);
    let huge = format!("\\u0000\\r\\nFake: 1\\u001b[31m{}", "k".repeat(100_000));
    let control = |text: &str| text.chars().any(char::is_control);
    let cases = [
        // A duplicate key.
        format!(r#"{{"user_id":"u","product_id":"p","x":{{"{huge}":1,"{huge}":2}}}}"#),
        // A bad value of a field whose message quotes it.
        format!(r#"{{"user_id":"u","product_id":"p","timestamp":"{huge}"}}"#),
        format!(r#"{{"user_id":"u","product_id":"p","event_id":"{huge}"}}"#),
        format!(r#"{{"user_id":"u","product_id":"p","context":{{"ip":"{huge}"}}}}"#),
        format!(r#"{{"type":"{huge}","user_id":"u","product_id":"p"}}"#),
        // An experiment flag.
        format!(
            r#"{{"user_id":"u","product_id":"p","context":{{"experiments":{{"{huge}":"on"}}}}}}"#
        ),
    ];
    for json in &cases {
        let err = validator
            .validate_at(None, Bytes::copy_from_slice(json.as_bytes()), NOW)
            .expect_err("refused");
        let (message, field) = (err.message(), err.field_path().unwrap_or(""));
        assert!(
            message.len() < 400 && field.len() < 400,
            "{} / {}: {} and {} bytes",
            err.code(),
            &json[..60],
            message.len(),
            field.len()
        );
        assert!(
            !control(message) && !control(field),
            "{message:?} {field:?}"
        );
        let shown = err.to_string();
        assert!(shown.len() < 800 && !control(&shown), "{shown:?}");
    }
}

#[test]
fn printable_escapes_control_characters_and_cuts() {
    use crate::printable;
    assert!(matches!(
        printable("plain text", 64),
        std::borrow::Cow::Borrowed("plain text")
    ));
    assert_eq!(
        printable("a\0b\r\n\u{2028}", 64),
        "a\\u{0}b\\u{d}\\u{a}\\u{2028}"
    );
    assert_eq!(printable("éééé", 2), "éé…");
    assert_eq!(printable("ab\0", 3), "ab…");
    assert_eq!(printable("ab\0", 7), "ab\\u{0}");
    assert_eq!(printable(&"x".repeat(100_000), 10), "xxxxxxxxxx…");
}

#[test]
fn amounts_and_counts_have_a_maximum() {
    let view = |price: &str| format!(r#"{{"user_id":"u","product_id":"p","price":{price}}}"#);
    for fine in ["1e11", "100000000000", "99999999999.99", "0"] {
        check(Some(PV), &view(fine)).unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
    for (price, shown) in [
        ("100000000001", "1.00000000001e11"),
        ("1e13", "1e13"),
        ("1e308", "1e308"),
        ("18446744073709551615", "1.8446744073709552e19"),
    ] {
        assert_refused(
            PV,
            &view(price),
            "price",
            &format!("price must be at most 1e11, got {shown}"),
        );
    }
    let order = |item_price: &str, total: &str, extra: &str| {
        format!(
            r#"{{"user_id":"u","order_id":"o","items":[{{"product_id":"p","quantity":1,"price":{item_price}}}],"total":{total},"currency":"IDR"{extra}}}"#
        )
    };
    let p = EventKind::Purchase;
    check(
        Some(p),
        &order(
            "1e11",
            "1e11",
            r#","tax":1e11,"discount":1e11,"shipping":1e11"#,
        ),
    )
    .expect("the maximum itself is allowed");
    assert_refused(
        p,
        &order("2e11", "1", ""),
        "items[0].price",
        "price must be at most 1e11, got 2e11",
    );
    assert_refused(
        p,
        &order("1", "1e13", ""),
        "total",
        "total must be at most 1e11, got 1e13",
    );
    for field in ["discount", "tax", "shipping"] {
        let err = rejects(Some(p), &order("1", "1", &format!(r#","{field}":1e12"#)));
        assert_eq!(
            (err.code(), err.field_path()),
            (ErrorCode::InvalidValue, Some(field))
        );
    }

    let cart = |quantity: &str| {
        format!(r#"{{"user_id":"u","action":"add","product_id":"p","quantity":{quantity}}}"#)
    };
    for fine in ["1000000", "1000000.0", "1e6", "2.0"] {
        check(Some(EventKind::Cart), &cart(fine)).unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
    for (quantity, shown) in [
        ("1000001", "1000001"),
        ("9000000000000001", "9000000000000001"),
        ("18446744073709551615", "18446744073709551615"),
        ("1e19", "1e19"),
        ("1e300", "1e300"),
    ] {
        assert_refused(
            EventKind::Cart,
            &cart(quantity),
            "quantity",
            &format!("quantity must be at most 1000000, got {shown}"),
        );
    }
    assert_refused(
        p,
        &order("1", "1", "").replace(r#""quantity":1"#, r#""quantity":1000001"#),
        "items[0].quantity",
        "quantity must be at most 1000000, got 1000001",
    );
    let search = |count: &str| format!(r#"{{"user_id":"u","query":"q","results_count":{count}}}"#);
    check(Some(EventKind::Search), &search("1000000000")).expect("the maximum");
    assert_refused(
        EventKind::Search,
        &search("1000000001"),
        "results_count",
        "results_count must be at most 1000000000, got 1000000001",
    );
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1e12f64..1e12).prop_map(serde_json::Value::from),
        // Any text but U+0000, which no string of an event may hold.
        "[^\u{0}]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..600), kind in 0usize..5) {
        let kind = EventKind::ALL.get(kind).copied();
        let _ = Validator::default().validate_at(kind, Bytes::from(body), NOW);
    }

    #[test]
    fn never_panics_on_arbitrary_json(value in json_value(), kind in 0usize..5) {
        let kind = EventKind::ALL.get(kind).copied();
        let body = serde_json::to_vec(&value).expect("serialises");
        let _ = Validator::default().validate_at(kind, Bytes::from(body), NOW);
    }

    #[test]
    fn valid_product_views_with_any_extra_fields_are_accepted_untouched(
        user in "[a-zA-Z0-9_-]{1,128}",
        // Identifiers refuse control characters (and whitespace alone), U+2028 and U+2029.
        product in "[^\"\\\\\\p{Cc}\u{2028}\u{2029}]{0,39}[^\"\\\\\\p{Cc}\u{2028}\u{2029}\\s]",
        price in proptest::option::of(0f64..1e9),
        extra in proptest::collection::btree_map("x_[a-z]{1,6}", json_value(), 0..4),
    ) {
        let mut event = serde_json::Map::new();
        event.insert("user_id".into(), user.clone().into());
        event.insert("product_id".into(), product.into());
        if let Some(price) = price {
            event.insert("price".into(), price.into());
        }
        for (k, v) in extra {
            event.insert(k, v);
        }
        let body = serde_json::to_vec(&event).expect("serialises");
        let valid = Validator::default()
            .validate_at(Some(PV), Bytes::from(body.clone()), NOW)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(valid.payload().as_ref(), &body[..]);
        prop_assert_eq!(valid.partition_key().as_ref(), user.as_bytes());
    }

    #[test]
    fn any_truncation_of_a_valid_event_is_rejected_cleanly(cut in 1usize..80) {
        let json = br#"{"user_id":"u1","product_id":"sku-1","price":19.99,"currency":"EUR"}"#;
        let cut = cut.min(json.len() - 1);
        let err = Validator::default()
            .validate_at(Some(PV), Bytes::copy_from_slice(&json[..cut]), NOW)
            .expect_err("truncated");
        prop_assert!(matches!(err.code(), ErrorCode::InvalidJson | ErrorCode::EmptyBody), "{}", err);
    }
}
