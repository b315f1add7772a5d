//! PostgreSQL: schema migrations, the committed positions, the catalog, and the
//! checkpoint transaction that makes results exactly-once.
//!
//! One file per job, each an `impl Store` block of its own: `checkpoint` (the
//! transaction, see its design notes), `outbox` (the outboxes the background jobs
//! drain), `pairs` (product pairs and recommendations) and `prune` (retention); `tls`
//! reads the URL's `sslmode`/`sslrootcert` and builds the rustls connector.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::{Client, Connection, NoTls};

use crate::aggregate::TopicPartition;
use crate::catalog::Catalog;
use crate::error::Error;
use crate::fast_hash::FastMap;
use crate::recommend::Recent;
use crate::sessions::Activity;

/// `value + delta` in SQL, held at the largest bigint instead of failing (22003): a
/// counter of hostile amounts stops growing; it never stops the checkpoint.
macro_rules! saturating_add {
    ($old:literal, $new:literal) => {
        concat!(
            "case when ",
            $new,
            " > 0 and ",
            $old,
            " > 9223372036854775807 - ",
            $new,
            " then 9223372036854775807 else ",
            $old,
            " + ",
            $new,
            " end"
        )
    };
}

mod checkpoint;
mod outbox;
mod pairs;
mod prune;
mod tls;
mod user_state;

pub use checkpoint::{Attempt, Checkpoint, WriteSettings, Written};
pub use outbox::ClaimedLetters;
pub use pairs::Folded;
pub use tls::{PostgresUrl, SslMode};

/// The migrations, applied in order and recorded in `schema_migrations`.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_initial.sql",
        include_str!("../../migrations/0001_initial.sql"),
    ),
    (
        2,
        "0002_user_activity.sql",
        include_str!("../../migrations/0002_user_activity.sql"),
    ),
    (
        3,
        "0003_recommendations.sql",
        include_str!("../../migrations/0003_recommendations.sql"),
    ),
    (
        4,
        "0004_search_outbox.sql",
        include_str!("../../migrations/0004_search_outbox.sql"),
    ),
    (
        5,
        "0005_counter_fillfactor.sql",
        include_str!("../../migrations/0005_counter_fillfactor.sql"),
    ),
    (
        6,
        "0006_dead_letter_outbox.sql",
        include_str!("../../migrations/0006_dead_letter_outbox.sql"),
    ),
    (
        7,
        "0007_dedup_log.sql",
        include_str!("../../migrations/0007_dedup_log.sql"),
    ),
    (
        8,
        "0008_pair_log.sql",
        include_str!("../../migrations/0008_pair_log.sql"),
    ),
    (
        9,
        "0009_product_partners.sql",
        include_str!("../../migrations/0009_product_partners.sql"),
    ),
    (
        10,
        "0010_user_state_version.sql",
        include_str!("../../migrations/0010_user_state_version.sql"),
    ),
    (
        11,
        "0011_user_state_log.sql",
        include_str!("../../migrations/0011_user_state_log.sql"),
    ),
    (
        12,
        "0012_member_blocks.sql",
        include_str!("../../migrations/0012_member_blocks.sql"),
    ),
    (
        13,
        "0013_tops_fillfactor.sql",
        include_str!("../../migrations/0013_tops_fillfactor.sql"),
    ),
];

/// The committed position of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The next offset to read.
    pub next_offset: i64,
    /// The event-time watermark (Unix ms).
    pub watermark_ms: i64,
}

/// A partition's part of a checkpoint: where it was read from and to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    /// The committed next offset when the batch started (`None`: never committed).
    pub from: Option<i64>,
    /// The next offset after the batch.
    pub to: i64,
}

/// The absolute values after a checkpoint, for the Redis view.
#[derive(Debug, Default)]
pub struct Committed {
    /// (minute, source, metric) → value.
    pub counts: Vec<(i64, TopicPartition, String, i64)>,
    /// (minute, source, dimension, key) → value.
    pub tops: Vec<(i64, TopicPartition, String, String, i64)>,
    /// Whether an outbox row of this checkpoint was already pending (an earlier write
    /// of that view failed): then the view needs a full re-write, not only these values.
    pub backlog: bool,
}

/// The committed per-user state of a batch's users.
#[derive(Debug, Default)]
pub struct UserStates {
    /// Event times, for sessions.
    pub activity: FastMap<String, Activity>,
    /// Recent products, for recommendations.
    pub recent: FastMap<String, Recent>,
}

pub use crate::recommend::Recommendation;

/// Runs `connection` on a task of its own (logging how it ended) and returns its client.
fn run<S, T>((client, connection): (Client, Connection<S, T>)) -> Client
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection closed");
        }
    });
    client
}

/// A PostgreSQL connection.
pub struct Store {
    client: Client,
}

/// The advisory lock that makes migrations one at a time across instances.
const MIGRATION_LOCK: i64 = 7_268_126;

impl Store {
    /// Connects (the connection runs on a spawned task), over TLS as the URL's
    /// `sslmode` and `sslrootcert` say ([`PostgresUrl`]).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the URL's TLS parameters are not acceptable or its
    /// `sslrootcert` file cannot be used; [`Error::Postgres`] when the server cannot be
    /// reached or the TLS handshake fails (the message carries rustls's reason, e.g. an
    /// unknown issuer); [`Error::Timeout`] after `timeout`.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Store, Error> {
        let url = PostgresUrl::parse(url)?;
        let tls = url.connector()?;
        let mut config = url.into_config();
        config.connect_timeout(timeout);
        let connecting = async {
            Ok::<_, tokio_postgres::Error>(match tls {
                None => run(config.connect(NoTls).await?),
                Some(tls) => run(config.connect(tls).await?),
            })
        };
        let client = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| Error::Timeout("connecting to PostgreSQL"))??;
        // Notices (such as "relation already exists, skipping" for the checkpoint's and
        // the fold's temporary tables) would reach the log at every checkpoint.
        client
            .batch_execute("set client_min_messages = warning")
            .await?;
        Ok(Store { client })
    }

    /// Whether the connection is gone (then connect again).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The connection kept in `slot`, opened when there is none or it closed: how the
    /// background jobs keep their own connection across PostgreSQL restarts.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`] or [`Error::Timeout`] when connecting fails (`slot` is then
    /// empty).
    pub async fn reopen<'s>(
        slot: &'s mut Option<Store>,
        url: &str,
        timeout: Duration,
    ) -> Result<&'s mut Store, Error> {
        let store = match slot.take() {
            Some(store) if !store.is_closed() => store,
            _ => Store::connect(url, timeout).await?,
        };
        Ok(slot.insert(store))
    }

    /// Applies the migrations not applied yet, each in its own transaction, under an
    /// advisory lock so instances starting together do not race.
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] naming the file that failed.
    pub async fn migrate(&mut self) -> Result<Vec<&'static str>, Error> {
        // Under the lock too: instances starting together on a new database would
        // otherwise both create the table, and one fail (`create table if not exists`
        // is not safe against a concurrent create).
        let tx = self.client.transaction().await?;
        tx.execute("select pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "create table if not exists schema_migrations (
                 version int primary key,
                 name text not null,
                 applied_at timestamptz not null default now())",
        )
        .await?;
        tx.commit().await?;
        let mut applied = Vec::new();
        for &(version, name, sql) in MIGRATIONS {
            let tx = self.client.transaction().await?;
            tx.execute("select pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            let done = tx
                .query_opt(
                    "select 1 from schema_migrations where version = $1",
                    &[&version],
                )
                .await?
                .is_some();
            if !done {
                tx.batch_execute(sql)
                    .await
                    .map_err(|source| Error::Migration {
                        name: name.to_owned(),
                        source,
                    })?;
                tx.execute(
                    "insert into schema_migrations (version, name) values ($1, $2)",
                    &[&version, &name],
                )
                .await?;
                applied.push(name);
            }
            tx.commit().await?;
        }
        Ok(applied)
    }

    /// The committed position of a partition, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn position(
        &self,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<Option<Position>, Error> {
        let row = self
            .client
            .query_opt(
                "select next_offset, watermark_ms from consumer_offsets
                 where group_id = $1 and topic = $2 and partition = $3",
                &[&group, &tp.topic.as_ref(), &tp.partition],
            )
            .await?;
        Ok(row.map(|r| Position {
            next_offset: r.get(0),
            watermark_ms: r.get(1),
        }))
    }

    /// Loads the catalog (at most `max_products` products) and the rates.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn load_catalog(
        &self,
        reporting_currency: &str,
        max_products: usize,
    ) -> Result<Catalog, Error> {
        let mut catalog = Catalog::new(reporting_currency);
        let limit = i64::try_from(max_products).unwrap_or(i64::MAX);
        for row in self
            .client
            .query(
                "select id, name, category from products order by id limit $1",
                &[&limit],
            )
            .await?
        {
            catalog.insert_product(row.get(0), row.get(1), row.get(2));
        }
        for row in self
            .client
            .query(
                "select currency, rate_to_reporting from currency_rates",
                &[],
            )
            .await?
        {
            catalog.insert_rate(&row.get::<_, String>(0).to_ascii_uppercase(), row.get(1));
        }
        Ok(catalog)
    }

    /// Runs one statement (for health checks).
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn ping(&self) -> Result<(), Error> {
        self.client.simple_query("select 1").await?;
        Ok(())
    }
}

/// Opens a binary `COPY` into the temporary table `table` (created at its first use in
/// the session with `columns`, emptied here and at every commit): how one statement gets
/// rows whose arrays differ in length, which one `unnest` cannot carry. The caller
/// writes the rows (`types` in column order), finishes the writer, and reads the table.
async fn copy_into_temporary(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    columns: &str,
    types: &[tokio_postgres::types::Type],
) -> Result<tokio_postgres::binary_copy::BinaryCopyInWriter, Error> {
    tx.batch_execute(&format!(
        "create temporary table if not exists {table} ({columns}) on commit delete rows;
         truncate {table}"
    ))
    .await?;
    let sink = tx
        .copy_in(&format!("copy {table} from stdin (format binary)"))
        .await?;
    Ok(tokio_postgres::binary_copy::BinaryCopyInWriter::new(
        sink, types,
    ))
}
