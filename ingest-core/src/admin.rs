//! Creating the topics an ingestor writes to.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::FromClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Settings;
use crate::error::Error;

/// What [`ensure_topics`] found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStatus {
    /// Topic name.
    pub name: String,
    /// Partitions the topic has (as created, or as found).
    pub partitions: i32,
    /// Replication factor used when creating it (as found, for existing topics).
    pub replication_factor: i32,
    /// Whether this call created it.
    pub created: bool,
}

/// [`ensure_topics`] on the calling thread, for hosts without an async runtime.
///
/// # Errors
///
/// As [`ensure_topics`].
pub fn ensure_topics_blocking(
    settings: &Settings,
    timeout: Duration,
) -> Result<Vec<TopicStatus>, Error> {
    // No limit of its own: every request inside is bounded by `timeout`.
    crate::blocking::block_on(ensure_topics(settings, timeout), None)
        .unwrap_or(Err(Error::Timeout(timeout)))
}

/// Creates the event topics and the dead-letter topic with the configured partitions
/// and replication factor, leaving existing topics alone. On a cluster with fewer
/// brokers than the replication factor asks for, the factor is reduced to the broker
/// count, with a warning. New topics get `min.insync.replicas` of 2 when replicated at
/// least 3 times (1 otherwise), so `acks=all` means "on two brokers at least".
///
/// # Errors
///
/// [`Error::Kafka`] if the cluster cannot be reached within `timeout` or refuses to
/// create a topic.
///
/// It needs no tokio runtime: inside one, the blocking metadata request runs on the
/// runtime's blocking pool; outside, on the thread that polls the future.
pub async fn ensure_topics(
    settings: &Settings,
    timeout: Duration,
) -> Result<Vec<TopicStatus>, Error> {
    let admin: AdminClient<DefaultClientContext> = AdminClient::from_config(&settings.producer)
        .map_err(|e| Error::kafka("creating the admin client", e))?;
    let admin = std::sync::Arc::new(admin);

    // Metadata requests block; keep them off the async executor's threads when there
    // is a tokio runtime. Without one (a host polling with its own executor, or
    // `ensure_topics_blocking`) the request runs on the calling thread.
    let metadata_admin = admin.clone();
    let fetch = move || {
        let metadata = metadata_admin.inner().fetch_metadata(None, timeout)?;
        let existing: Vec<(String, i32, i32)> = metadata
            .topics()
            .iter()
            .map(|t| {
                let replicas = t
                    .partitions()
                    .first()
                    .map_or(0, |p| p.replicas().len() as i32);
                (t.name().to_owned(), t.partitions().len() as i32, replicas)
            })
            .collect();
        Ok::<_, rdkafka::error::KafkaError>((metadata.brokers().len() as i32, existing))
    };
    let fetched = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime.spawn_blocking(fetch).await.map_err(|e| Error::Io {
            context: "reading cluster metadata".to_owned(),
            source: std::io::Error::other(e),
        })?,
        Err(_) => fetch(),
    };
    let (brokers, existing) = fetched.map_err(|e| Error::kafka("reading cluster metadata", e))?;

    let config = settings.config();
    let mut statuses = Vec::new();
    let mut to_create = Vec::new();
    for (_, topic) in config.topics.all() {
        if let Some((name, partitions, replicas)) =
            existing.iter().find(|(n, _, _)| n == &topic.name)
        {
            if *partitions != topic.partitions || *replicas < topic.replication_factor.min(brokers)
            {
                // Existing topics are never altered (repartitioning moves keys between
                // partitions and breaks per-user order); say so instead.
                tracing::warn!(
                    topic = %name,
                    partitions,
                    replicas,
                    wanted_partitions = topic.partitions,
                    wanted_replicas = topic.replication_factor,
                    "existing topic differs from the configuration; left as it is"
                );
            }
            statuses.push(TopicStatus {
                name: name.clone(),
                partitions: *partitions,
                replication_factor: *replicas,
                created: false,
            });
            continue;
        }
        let replication = topic.replication_factor.min(brokers.max(1));
        if replication < topic.replication_factor {
            tracing::warn!(
                topic = %topic.name,
                wanted = topic.replication_factor,
                brokers,
                "the cluster has fewer brokers than the replication factor; creating the topic with {replication}"
            );
        }
        let min_insync = if replication >= 3 { "2" } else { "1" };
        to_create.push((
            topic.name.clone(),
            topic.partitions,
            replication,
            min_insync,
        ));
    }
    if !to_create.is_empty() {
        let new_topics: Vec<NewTopic<'_>> = to_create
            .iter()
            .map(|(name, partitions, replication, min_insync)| {
                NewTopic::new(name, *partitions, TopicReplication::Fixed(*replication))
                    .set("min.insync.replicas", min_insync)
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(timeout));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|e| Error::kafka("creating topics", e))?;
        for (result, (name, partitions, replication, _)) in results.into_iter().zip(&to_create) {
            let created = match result {
                Ok(_) => true,
                // Another process created it meanwhile: fine.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => false,
                Err((topic, code)) => {
                    return Err(Error::kafka(
                        format!("creating topic {topic}"),
                        rdkafka::error::KafkaError::AdminOp(code),
                    ))
                }
            };
            if created {
                tracing::info!(topic = %name, partitions, replication, "topic created");
            }
            statuses.push(TopicStatus {
                name: name.clone(),
                partitions: *partitions,
                replication_factor: *replication,
                created,
            });
        }
    }
    Ok(statuses)
}
