//! The C ABI called from Rust with no broker reachable: polled receipts, completion
//! timeouts, closing with undelivered events, and misuse. Runs in plain `cargo test`.

use std::ffi::CStr;
use std::ptr;

use ingest::*;

fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated thread-local string, never NULL.
    unsafe { CStr::from_ptr(ingest_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn an_unreachable_cluster_shows_as_pending_timeouts_and_an_undelivered_report() {
    let config = r#"{"kafka":{"brokers":"127.0.0.1:1","message_timeout_ms":60000},"dead_letter":{"enabled":false}}"#;
    let mut client = ptr::null_mut();
    // SAFETY: valid pointers and lengths throughout; every handle is freed once.
    unsafe {
        let status = ingest_client_new(
            config.as_ptr().cast(),
            config.len(),
            ingest_config_format::INGEST_CONFIG_JSON as u32,
            &mut client,
        );
        assert_eq!(status, ingest_status::INGEST_OK, "{}", last_error());
        let event = br#"{"user_id":"u1","product_id":"sku-1"}"#;
        let mut id = ingest_event_id::default();
        let mut receipt = ptr::null_mut();
        let status = ingest_submit(
            client,
            ingest_event_kind::INGEST_PRODUCT_VIEW as u32,
            event.as_ptr(),
            event.len(),
            &mut id,
            &mut receipt,
        );
        assert_eq!(status, ingest_status::INGEST_OK, "{}", last_error());
        assert_ne!(id.bytes, [0; 16], "an id was generated");
        let delivered = ingest_ack::INGEST_ACK_DELIVERED as u32;
        assert_eq!(
            ingest_receipt_try(receipt, delivered),
            ingest_status::INGEST_PENDING
        );
        assert_eq!(
            ingest_receipt_wait(receipt, delivered, 20),
            ingest_status::INGEST_ERR_TIMEOUT
        );
        assert_eq!(
            ingest_receipt_wait(receipt, 7, 20),
            ingest_status::INGEST_ERR_INVALID_ARGUMENT
        );
        assert!(
            last_error().contains("acknowledgement level 7"),
            "{}",
            last_error()
        );

        let queue = ingest_completions_new(1);
        assert_eq!(
            ingest_completions_watch(queue, receipt, delivered, 20, 5),
            ingest_status::INGEST_OK
        );
        assert_eq!(
            ingest_completions_watch(queue, receipt, delivered, 20, 6),
            ingest_status::INGEST_ERR_QUEUE_FULL,
            "capacity 1"
        );
        let mut done = [ingest_completion {
            tag: 0,
            status: ingest_status::INGEST_OK,
        }; 2];
        assert_eq!(
            ingest_completions_wait(queue, done.as_mut_ptr(), 2, 10_000),
            1
        );
        assert_eq!(
            (done[0].tag, done[0].status),
            (5, ingest_status::INGEST_ERR_TIMEOUT)
        );
        ingest_completions_free(queue);

        let mut health = ingest_health::default();
        assert_eq!(
            ingest_client_health(client, &mut health),
            ingest_status::INGEST_OK
        );
        assert_eq!(health.has_buffer, 0);
        let mut stats = ingest_stats::default();
        assert_eq!(
            ingest_client_stats(client, &mut stats),
            ingest_status::INGEST_OK
        );
        assert_eq!(stats.accepted, 1);

        assert_eq!(ingest_flush(client, 50), ingest_status::INGEST_ERR_TIMEOUT);
        let mut report = ingest_shutdown_report::default();
        assert_eq!(
            ingest_close(client, 200, &mut report),
            ingest_status::INGEST_OK
        );
        assert_eq!((report.undelivered, report.lost), (1, 1));
        assert_eq!(
            ingest_receipt_wait(receipt, delivered, 10_000),
            ingest_status::INGEST_ERR_DELIVERY
        );
        assert!(
            last_error().contains("1 of 1 events not delivered"),
            "{}",
            last_error()
        );
        assert_eq!(
            ingest_close(client, 200, &mut report),
            ingest_status::INGEST_ERR_SHUTTING_DOWN
        );
        ingest_receipt_free(receipt);
        ingest_client_free(client);
    }
}

#[test]
fn a_buffer_held_by_another_client_is_a_buffer_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[kafka]\nbrokers = \"127.0.0.1:1\"\n[buffer]\ntype = \"log\"\ndir = \"{}\"\n",
        dir.path().display()
    );
    let (mut first, mut second) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: valid pointers and lengths; each handle freed once.
    unsafe {
        let toml = ingest_config_format::INGEST_CONFIG_TOML as u32;
        assert_eq!(
            ingest_client_new(config.as_ptr().cast(), config.len(), toml, &mut first),
            ingest_status::INGEST_OK
        );
        let status = ingest_client_new(config.as_ptr().cast(), config.len(), toml, &mut second);
        assert_eq!(status, ingest_status::INGEST_ERR_BUFFER, "{}", last_error());
        assert!(second.is_null());
        ingest_client_free(first);
    }
}
