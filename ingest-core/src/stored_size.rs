//! The sizes of an event's form in the disk buffer (the layout is documented in
//! `delivery/stored.rs`), apart from the Kafka side: configuration validation sizes the
//! buffer by [`MAX_OVERHEAD`], and builds without the `kafka` feature.

use crate::custom::MAX_CUSTOM_NAME;

/// Version, kind, event id, received_at and the two length fields.
pub(crate) const FIXED_LEN: usize = 1 + 1 + 16 + 8 + 2 + 2;
/// Upper bound of the bytes a stored record adds to its payload, for sizing the buffer
/// (the key is at most 128 characters of UTF-8, the source is cut to 1 KiB, a custom
/// event's name is at most [`MAX_CUSTOM_NAME`] bytes, the experiments header at most
/// [`MAX_EXPERIMENTS_HEADER`]).
pub(crate) const MAX_OVERHEAD: usize =
    FIXED_LEN + 1024 + 128 * 4 + 2 + MAX_CUSTOM_NAME + 2 + MAX_EXPERIMENTS_HEADER;
/// The longest `experiments` header: 64 flags of `name=variant,` with names of 64 bytes.
pub(crate) const MAX_EXPERIMENTS_HEADER: usize =
    crate::contract::MAX_EXPERIMENTS * (64 + 1 + 64 + 1);
