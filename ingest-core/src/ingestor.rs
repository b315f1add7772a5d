//! The [`Ingestor`]: the library's entry point.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::producer::ThreadedProducer;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::batch::split_batch;
use crate::config::{IngestConfig, Settings};
use crate::custom::CustomEvent;
use crate::delivery::{
    gather_window, BatchReceipt, Breaker, Command, CustomRoute, DeliveryContext, Destination,
    DiskState, Doorbell, Forwarder, Gate, Layout, QueueBudget, Receipt, Record, Rejection, Sender,
    ShutdownReport, Spool, Tracker, Worker,
};
use crate::error::{Error, ErrorCode, ValidationError};
use crate::event::EventKind;
use crate::health::{BufferHealth, Health};
use crate::stats::Stats;
use crate::telemetry::Telemetry;
use crate::validate::{ValidEvent, Validator};

/// Dead letters may use this fraction (1/N) of the queue's bounds.
const DEAD_LETTER_SHARE: usize = 10;

/// The longest deadline `flush` and `shutdown` take: longer ones (`Duration::MAX`, for
/// "no limit") are cut to it, so that computing the deadline cannot overflow.
const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Per-submission options: start from `SubmitOptions::default()` and set what applies
/// (new options may be added without breaking callers).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SubmitOptions {
    /// Overrides the configured `source` header for these events (e.g. the storefront
    /// an API key belongs to).
    pub source: Option<Arc<str>>,
    /// Feature flags to assign the events' users to: an event whose
    /// `context.experiments` names no flag gets its user's variant of every flag
    /// (by `user_id`, else `anonymous_id`) in the `experiments` record header
    /// ([`crate::flags::EXPERIMENTS_HEADER`]); its bytes stay untouched.
    pub flags: Option<Arc<crate::flags::FlagSet>>,
    /// The event types these events may have; `None` allows all. An event of another
    /// type is rejected with [`ErrorCode::TypeNotAllowed`] on its `type` field, like
    /// any invalid event (dead-lettered when that is on). Used for submitters that may
    /// not send every type, such as browsers holding a public key.
    pub allowed_kinds: Option<Arc<[EventKind]>>,
}

impl SubmitOptions {
    /// Sets [`source`](Self::source).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Arc<str>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets [`flags`](Self::flags).
    #[must_use]
    pub fn with_flags(mut self, flags: Arc<crate::flags::FlagSet>) -> Self {
        self.flags = Some(flags);
        self
    }

    /// Sets [`allowed_kinds`](Self::allowed_kinds).
    #[must_use]
    pub fn with_allowed_kinds(mut self, kinds: impl IntoIterator<Item = EventKind>) -> Self {
        self.allowed_kinds = Some(kinds.into_iter().collect());
        self
    }

    /// Whether an event of `kind` may be submitted with these options.
    pub fn allows(&self, kind: EventKind) -> bool {
        self.allowed_kinds
            .as_deref()
            .is_none_or(|kinds| kinds.contains(&kind))
    }

    /// `Ok` when [`allows`](Self::allows) `kind`; else the rejection.
    fn check_kind(&self, kind: EventKind) -> Result<(), ValidationError> {
        if self.allows(kind) {
            return Ok(());
        }
        Err(ValidationError::field(
            ErrorCode::TypeNotAllowed,
            "type",
            format!("{kind} events may not be sent by this submitter"),
        ))
    }
}

/// Validates events and delivers them to Kafka. Cheap to clone; all clones share one
/// producer and queue. Validation runs on the calling thread; delivery runs on a
/// background thread and the Kafka client's threads, so no async runtime is required.
///
/// # Examples
///
/// ```no_run
/// use bytes::Bytes;
/// use ingest_core::{Ack, EventKind, Ingestor};
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), ingest_core::Error> {
/// let ingestor = Ingestor::builder().brokers("127.0.0.1:9092").build()?;
/// let body = Bytes::from_static(br#"{"user_id":"u1","product_id":"sku-1"}"#);
/// let receipt = ingestor.submit(EventKind::ProductView, body)?;
/// receipt.wait(Ack::Delivered).await?;
/// ingestor.shutdown(Duration::from_secs(30)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Ingestor {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    validator: Validator,
    commands: flume::Sender<Command>,
    /// Wakes the delivery thread (memory queue only; the spool waits on the queue).
    doorbell: Arc<Doorbell>,
    /// The producer, for single submissions sent on the caller's thread when nothing
    /// is queued ahead of them (memory queue only).
    direct: Option<Arc<Sender>>,
    budget: Arc<QueueBudget>,
    dead_letter_budget: Arc<QueueBudget>,
    gate: Gate,
    telemetry: Telemetry,
    stop_by: Arc<OnceLock<Instant>>,
    breaker: Arc<Breaker>,
    /// `None` without a disk buffer.
    disk: Option<Arc<DiskState>>,
    /// The delivery thread, or the spool and forwarder threads.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Which of them have died.
    watch: Arc<ThreadWatch>,
    /// The `source` header when a submission names none.
    default_source: Arc<str>,
}

impl std::fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestor")
            .field("brokers", &self.inner.settings.raw.kafka.brokers)
            .field("closed", &self.inner.gate.is_closed())
            .finish()
    }
}

/// Builds an [`Ingestor`]; start from [`Ingestor::builder`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct IngestorBuilder {
    config: IngestConfig,
    #[cfg(feature = "avro")]
    avro: crate::avro::AvroTopics,
}

impl IngestorBuilder {
    /// Replaces the whole configuration (e.g. one read from a TOML file).
    pub fn config(mut self, config: IngestConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the bootstrap brokers (`host:port,...`).
    pub fn brokers(mut self, brokers: impl Into<String>) -> Self {
        self.config.kafka.brokers = brokers.into();
        self
    }

    /// Sets the default `source` header.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.config.source = source.into();
        self
    }

    /// Turns the disk buffer on: the `log` engine in `dir`, other `[buffer]` settings
    /// as configured (1 GiB, synced every 100 ms, `block` when full, by default).
    pub fn disk_buffer(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.buffer.kind = crate::config::BufferType::Log;
        self.config.buffer.dir = Some(dir.into());
        self
    }

    /// Writes the topics of the given event types in Avro (Confluent wire format) with
    /// the schema ids of `topics` (see [`AvroTopics::register`](crate::avro::AvroTopics::register)),
    /// the others in JSON. Events are validated as JSON as always; the Avro body is made
    /// from the parsed event when the record is sent.
    #[cfg(feature = "avro")]
    pub fn avro_topics(mut self, topics: crate::avro::AvroTopics) -> Self {
        self.avro = topics;
        self
    }

    /// Passes a librdkafka property through (e.g. `security.protocol`).
    pub fn producer_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config
            .kafka
            .properties
            .insert(key.into(), value.into());
        self
    }

    /// Validates the configuration, creates the Kafka producer and starts delivery.
    /// Creating the producer does not contact the brokers; an unreachable cluster shows
    /// up as delivery errors, not here.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid configuration, [`Error::Kafka`] if the client
    /// rejects a property.
    pub fn build(self) -> Result<Ingestor, Error> {
        let settings = self.config.validate()?;
        Ingestor::start(
            settings,
            #[cfg(feature = "avro")]
            self.avro,
        )
    }
}

/// The background threads that died, by name. A thread is marked when it unwinds
/// from a panic (with `panic = "abort"` the process ends instead).
#[derive(Debug, Default)]
pub(crate) struct ThreadWatch {
    dead: Mutex<Vec<&'static str>>,
}

impl ThreadWatch {
    fn dead(&self) -> Vec<&'static str> {
        self.dead
            .lock()
            .map(|d| d.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }
}

/// Marks its thread dead in the [`ThreadWatch`] if it is dropped by a panic.
struct DeathNotice {
    name: &'static str,
    watch: Arc<ThreadWatch>,
}

impl Drop for DeathNotice {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(
                thread = self.name,
                "an ingestor thread died; events no longer move past it (restart the process)"
            );
            let mut dead = self
                .watch
                .dead
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            dead.push(self.name);
        }
    }
}

fn spawn(
    name: &'static str,
    watch: &Arc<ThreadWatch>,
    run: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, Error> {
    let notice = DeathNotice {
        name,
        watch: watch.clone(),
    };
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _notice = notice;
            run();
        })
        .map_err(|source| Error::Io {
            context: format!("starting the {name} thread"),
            source,
        })
}

impl Ingestor {
    /// A builder with the default configuration.
    pub fn builder() -> IngestorBuilder {
        IngestorBuilder::default()
    }

    fn start(
        settings: Settings,
        #[cfg(feature = "avro")] avro: crate::avro::AvroTopics,
    ) -> Result<Ingestor, Error> {
        let mut topics: Vec<Arc<str>> = settings.topics.to_vec();
        topics.push(settings.dead_letter_topic.clone());
        topics.push(settings.custom_topic.clone());
        let instance = crate::telemetry::instance_name(settings.instance.as_ref());
        let telemetry = Telemetry::new(&topics, instance);
        let breaker = Arc::new(Breaker::new(settings.breaker, &telemetry));
        let disk = match &settings.disk_buffer {
            Some(disk) => Some(Arc::new(DiskState::open(disk.clone(), &telemetry)?)),
            None => None,
        };
        let producer = ThreadedProducer::from_config_and_context(
            &settings.producer,
            DeliveryContext::new(telemetry.clone(), breaker.clone(), disk.clone()),
        )
        .map_err(|e| Error::kafka("creating the producer", e))?;
        #[allow(unused_mut)]
        let mut sender = Sender::new(
            producer,
            settings.topics.clone(),
            settings.dead_letter_topic.clone(),
            settings.custom_topic.clone(),
            telemetry.clone(),
        );
        #[cfg(feature = "avro")]
        {
            sender.avro = avro;
        }
        let sender = Arc::new(sender);
        // Without a disk buffer, a submission may go straight to the producer; with
        // one, every event goes through the spool to be persisted first.
        let direct = disk.is_none().then(|| sender.clone());
        let queue = &settings.queue;
        let budget = Arc::new(QueueBudget::new(queue.max_events, queue.max_bytes));
        let dead_letter_budget = Arc::new(QueueBudget::new(
            (queue.max_events / DEAD_LETTER_SHARE).max(1),
            (queue.max_bytes / DEAD_LETTER_SHARE).max(settings.dead_letter.max_payload_bytes),
        ));
        // Every command carries at least one record, so the budgets bound the channel;
        // the few extra slots are for control commands (flush, shutdown).
        let channel_slots = queue.max_events + queue.max_events / DEAD_LETTER_SHARE + 16;
        let (commands, receiver) = flume::bounded(channel_slots);
        let stop_by = Arc::new(OnceLock::new());
        let doorbell = Arc::new(Doorbell::new());
        let watch = Arc::new(ThreadWatch::default());
        let threads = match &disk {
            None => {
                let worker = Worker {
                    sender,
                    breaker: breaker.clone(),
                    stop_by: stop_by.clone(),
                    budget: budget.clone(),
                    dead_letter_budget: dead_letter_budget.clone(),
                    telemetry: telemetry.clone(),
                    expired: std::cell::Cell::new(0),
                    flushes: Default::default(),
                    doorbell: doorbell.clone(),
                    gather: gather_window(settings.raw.kafka.linger_ms),
                    layout: Arc::new(Layout::new(
                        settings
                            .raw
                            .kafka
                            .properties
                            .get("partitioner")
                            .map(String::as_str),
                    )),
                };
                let delivery = spawn("ingest-delivery", &watch, move || worker.run(receiver))?;
                doorbell.set_thread(delivery.thread().clone());
                vec![delivery]
            }
            Some(disk) => {
                let forwarder = Forwarder::new(
                    disk.clone(),
                    sender.clone(),
                    breaker.clone(),
                    telemetry.clone(),
                );
                let forwarding = spawn("ingest-forward", &watch, move || forwarder.run())?;
                disk.set_forwarder(forwarding.thread().clone());
                let spool = Spool::new(
                    disk.clone(),
                    sender,
                    budget.clone(),
                    dead_letter_budget.clone(),
                    telemetry.clone(),
                    stop_by.clone(),
                );
                vec![
                    spawn("ingest-spool", &watch, move || spool.run(receiver))?,
                    forwarding,
                ]
            }
        };
        tracing::info!(
            brokers = %settings.raw.kafka.brokers,
            disk_buffer = disk.is_some(),
            "ingestor started"
        );
        let default_source = settings
            .source
            .clone()
            .unwrap_or_else(|| Arc::from(crate::host::host_name()));
        Ok(Ingestor {
            inner: Arc::new(Inner {
                validator: Validator::new(settings.limits.clone()),
                settings,
                commands,
                doorbell,
                direct,
                budget,
                dead_letter_budget,
                gate: Gate::new(),
                telemetry,
                stop_by,
                breaker,
                disk,
                default_source,
                threads: Mutex::new(threads),
                watch,
            }),
        })
    }

    /// A snapshot of the ingestor's health, for readiness checks: the circuit
    /// breaker's state, the queue, the disk buffer and the background threads.
    pub fn health(&self) -> Health {
        let (queue_events, queue_bytes) = self.inner.budget.queued();
        Health {
            breaker: self.inner.breaker.state(),
            queue_events,
            queue_bytes,
            buffer: self.inner.disk.as_ref().map(|disk| {
                let stats = disk.engine.stats();
                BufferHealth {
                    entries: stats.entries,
                    bytes: stats.bytes,
                    max_bytes: disk.settings.max_bytes,
                }
            }),
            shutting_down: self.inner.gate.is_closed(),
            dead_threads: self.dead_threads(),
        }
    }

    /// The ingestor's threads that died, and the disk buffer's own background thread.
    fn dead_threads(&self) -> Vec<&'static str> {
        let mut dead = self.inner.watch.dead();
        if let Some(disk) = &self.inner.disk {
            if !disk.engine.background_alive() {
                dead.push("ingest-buffer");
            }
        }
        dead
    }

    /// The settings this ingestor runs on.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The ingestor's running totals and current levels, for hosts without a metrics
    /// recorder (the same counts also go to the `metrics` facade).
    pub fn stats(&self) -> Stats {
        Stats::read(
            &self.inner.telemetry.counts,
            self.inner.budget.queued(),
            self.health().buffer,
        )
    }

    /// [`flush`](Self::flush) on the calling thread, for hosts without an async
    /// runtime. Any thread may call it.
    ///
    /// # Errors
    ///
    /// As [`flush`](Self::flush).
    pub fn flush_blocking(&self, timeout: Duration) -> Result<(), Error> {
        // The flush ends by `timeout` itself, unless the delivery thread cannot take its
        // command (it waits for room in a full Kafka client queue): then the deadline
        // here ends the wait.
        crate::blocking::block_on(self.flush(timeout), Some(timeout))
            .unwrap_or(Err(Error::Timeout(timeout)))
    }

    /// [`shutdown`](Self::shutdown) on the calling thread, for hosts without an async
    /// runtime. Any thread may call it.
    ///
    /// # Errors
    ///
    /// As [`shutdown`](Self::shutdown).
    pub fn shutdown_blocking(&self, timeout: Duration) -> Result<ShutdownReport, Error> {
        crate::blocking::block_on(self.shutdown(timeout), None)
            .unwrap_or(Err(Error::Timeout(timeout)))
    }

    /// Submits one event of type `kind`. `body` is the event's JSON, which is sent to
    /// Kafka byte for byte.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if the event breaks a rule (it then also goes to the
    /// dead-letter topic, when enabled); [`Error::QueueFull`] or
    /// [`Error::ShuttingDown`] when it cannot be queued now.
    pub fn submit(&self, kind: EventKind, body: Bytes) -> Result<Receipt, Error> {
        self.submit_with(kind, body, &SubmitOptions::default())
    }

    /// [`submit`](Self::submit) with options.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    pub fn submit_with(
        &self,
        kind: EventKind,
        body: Bytes,
        options: &SubmitOptions,
    ) -> Result<Receipt, Error> {
        let received_at_ms = ingest_common::clock::unix_ms();
        let source = self.source(options);
        let checked = options
            .check_kind(kind)
            .and_then(|()| self.inner.validator.validate(Some(kind), body.clone()));
        let event = match checked {
            Ok(event) => event,
            Err(error) => return Err(self.reject(body, error, received_at_ms, &source)),
        };
        let tracker = Tracker::new(1, self.inner.disk.is_some());
        let event_id = event.event_id();
        let bytes = event.payload().len();
        let record = self.record(event, received_at_ms, &source, &tracker, options);
        self.send_or_enqueue(record, bytes)?;
        self.inner.telemetry.accepted(kind, 1);
        Ok(Receipt::new(tracker, Some(event_id)))
    }

    /// Sends payloads that were refused before they reached the validator (by a layer
    /// that translates another format into events, say) to the dead-letter topic with
    /// their errors, exactly as rejected events go there: the `error_code`,
    /// `error_field` and `error_message` headers, the dead letters' own share of the
    /// queue, and the rejection counted in the metrics. Nothing happens to them when
    /// dead letters are off (they are still counted).
    pub fn dead_letter_with(
        &self,
        rejected: Vec<(Bytes, ValidationError)>,
        options: &SubmitOptions,
    ) {
        let received_at_ms = ingest_common::clock::unix_ms();
        for (_, error) in &rejected {
            self.inner.telemetry.rejected(error);
        }
        self.dead_letter(rejected, received_at_ms, &self.source(options));
    }

    /// Submits a custom event (anything outside the four e-commerce types) to the
    /// custom-events topic, through the same queue, disk buffer and acknowledgements as
    /// the others.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if the event fails [`CustomEvent::check`] (its body then goes
    /// to the dead-letter topic, when enabled); [`Error::QueueFull`] or
    /// [`Error::ShuttingDown`] when it cannot be queued now.
    pub fn submit_custom_with(
        &self,
        event: CustomEvent,
        options: &SubmitOptions,
    ) -> Result<Receipt, Error> {
        let received_at_ms = ingest_common::clock::unix_ms();
        let source = self.source(options);
        if let Err(error) = event.check(self.inner.validator.limits()) {
            return Err(self.reject(event.body, error, received_at_ms, &source));
        }
        let tracker = Tracker::new(1, self.inner.disk.is_some());
        let event_id = event.event_id.unwrap_or_else(Uuid::now_v7);
        let bytes = event.body.len();
        let record = Record::new(
            Destination::Custom(Box::new(CustomRoute {
                name: Arc::from(event.name),
                event_id,
            })),
            event.key.map(Bytes::from),
            event.body,
            received_at_ms,
            source,
            tracker.clone(),
        );
        self.send_or_enqueue(record, bytes)?;
        self.inner.telemetry.accepted_custom(1);
        Ok(Receipt::new(tracker, Some(event_id)))
    }

    /// Submits a batch body: NDJSON or a JSON array of events, each naming its `type`.
    /// Valid events are queued even when others are rejected; the rejected ones are
    /// listed in the receipt and go to the dead-letter topic.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when the body as a whole is unusable (empty, too large, too
    /// many events, broken array); [`Error::QueueFull`] or [`Error::ShuttingDown`] when
    /// the valid events cannot be queued now (nothing of the batch is then queued).
    pub fn submit_batch(&self, body: Bytes) -> Result<BatchReceipt, Error> {
        self.submit_batch_with(body, &SubmitOptions::default())
    }

    /// [`submit_batch`](Self::submit_batch) with options.
    ///
    /// # Errors
    ///
    /// As [`submit_batch`](Self::submit_batch).
    pub fn submit_batch_with(
        &self,
        body: Bytes,
        options: &SubmitOptions,
    ) -> Result<BatchReceipt, Error> {
        let received_at_ms = ingest_common::clock::unix_ms();
        let source = self.source(options);
        let elements = match split_batch(&body, self.inner.validator.limits()) {
            Ok(elements) => elements,
            Err(error) => return Err(self.reject(body, error, received_at_ms, &source)),
        };
        let now = OffsetDateTime::now_utc();
        let mut valid = Vec::with_capacity(elements.len());
        let mut rejected = Vec::new();
        let mut dead = Vec::new();
        for (index, element) in elements.into_iter().enumerate() {
            let checked = self
                .inner
                .validator
                .validate_at(None, element.clone(), now)
                .and_then(|event| options.check_kind(event.kind()).map(|()| event));
            match checked {
                Ok(event) => valid.push(event),
                Err(error) => {
                    self.inner.telemetry.rejected(&error);
                    dead.push((element, error.clone()));
                    rejected.push(Rejection { index, error });
                }
            }
        }

        let tracker = Tracker::new(valid.len(), self.inner.disk.is_some());
        let accepted = valid.len();
        let event_ids = valid.iter().map(ValidEvent::event_id).collect();
        if accepted > 0 {
            let mut per_kind = [0u64; 4];
            let mut bytes = 0;
            let records: Vec<Record> = valid
                .into_iter()
                .map(|event| {
                    per_kind[event.kind().index()] += 1;
                    bytes += event.payload().len();
                    self.record(event, received_at_ms, &source, &tracker, options)
                })
                .collect();
            self.enqueue(
                &self.inner.budget,
                Command::SendMany(records),
                accepted,
                bytes,
            )?;
            for kind in EventKind::ALL {
                if per_kind[kind.index()] > 0 {
                    self.inner.telemetry.accepted(kind, per_kind[kind.index()]);
                }
            }
        }
        // Dead-letter only once the batch is taken, so a batch refused for back-pressure
        // and sent again does not dead-letter its bad events twice.
        self.dead_letter(dead, received_at_ms, &source);
        Ok(BatchReceipt {
            receipt: Receipt::new(tracker, None),
            accepted,
            event_ids,
            rejected,
        })
    }

    /// Waits until every event submitted before this call has been delivered to Kafka
    /// or has failed. Meanwhile the queue keeps filling (and may refuse submissions).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if Kafka did not acknowledge everything within `timeout`;
    /// [`Error::ShuttingDown`] after [`shutdown`](Self::shutdown). (`Duration::MAX`
    /// waits without a practical limit, here and in [`shutdown`](Self::shutdown).)
    pub async fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let timeout = timeout.min(LONGEST_WAIT);
        let (done, flushed) = oneshot::channel();
        self.inner
            .commands
            .send_async(Command::Flush { timeout, done })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        self.inner.doorbell.wake();
        match flushed.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Timeout(timeout)),
            Err(_) => Err(Error::ShuttingDown),
        }
    }

    /// Stops taking events, delivers everything queued within `timeout`, and stops the
    /// delivery threads. Events Kafka has not acknowledged by then are counted in the
    /// report and their receipts resolve with an error. Other clones of this ingestor
    /// refuse submissions afterwards.
    ///
    /// With a disk buffer, everything queued is first written to the buffer; what Kafka
    /// has not acknowledged by the deadline stays there
    /// ([`ShutdownReport::kept_in_buffer`]) and the next start delivers it. When the
    /// circuit breaker is open (Kafka unreachable), it does not wait for the deadline.
    /// Once it returns, the buffer directory is released (see
    /// [`BufferEngine::close`](crate::buffer::BufferEngine::close)): a new ingestor may
    /// open it even while clones of this one still exist.
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`] if a shutdown was already started.
    pub async fn shutdown(&self, timeout: Duration) -> Result<ShutdownReport, Error> {
        let timeout = timeout.min(LONGEST_WAIT);
        if !self.inner.gate.close() {
            return Err(Error::ShuttingDown);
        }
        let _ = self.inner.stop_by.set(Instant::now() + timeout);
        let (done, report) = oneshot::channel();
        self.inner
            .commands
            .send_async(Command::Shutdown { timeout, done })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        self.inner.doorbell.wake();
        let report = report.await.map_err(|_| Error::ShuttingDown)?;
        let threads = self
            .inner
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for handle in threads {
            // The threads have sent the report and are returning; joining is immediate.
            let _ = handle.join();
        }
        if let Some(disk) = &self.inner.disk {
            // Everything is synced by now; this releases the buffer directory, so a new
            // ingestor can open it while clones of this one still exist.
            if let Err(error) = disk.engine.close() {
                tracing::error!(%error, "closing the disk buffer failed");
            }
        }
        tracing::info!(
            undelivered = report.undelivered,
            kept_in_buffer = report.kept_in_buffer,
            elapsed = ?report.elapsed,
            "ingestor stopped"
        );
        Ok(report)
    }

    fn source(&self, options: &SubmitOptions) -> Arc<str> {
        options
            .source
            .clone()
            .unwrap_or_else(|| self.inner.default_source.clone())
    }

    fn record(
        &self,
        event: ValidEvent,
        received_at_ms: i64,
        source: &Arc<str>,
        tracker: &Arc<Tracker>,
        options: &SubmitOptions,
    ) -> Record {
        let experiments = match &options.flags {
            Some(flags) if !event.has_experiments() => std::str::from_utf8(event.partition_key())
                .ok()
                .and_then(|user| flags.header_value(user)),
            _ => None,
        };
        let version = event.schema_version();
        let (kind, event_id, key, payload) = event.into_parts();
        Record::new(
            Destination::Event {
                kind,
                event_id,
                version,
            },
            Some(key),
            payload,
            received_at_ms,
            source.clone(),
            tracker.clone(),
        )
        .with_experiments(experiments)
    }

    /// Hands a single event's record to the producer on this thread when nothing is
    /// queued ahead of it (see [`Sender::send_first`]), else queues it: under load the
    /// delivery thread feeds the producer, and submission order is kept either way.
    fn send_or_enqueue(&self, record: Record, bytes: usize) -> Result<(), Error> {
        let _pass = self.inner.gate.enter()?;
        let record = match &self.inner.direct {
            Some(sender) => {
                let budget = &self.inner.budget;
                match sender.send_first(record, || budget.queued().0 == 0) {
                    Ok(()) => return Ok(()),
                    Err(record) => record,
                }
            }
            None => record,
        };
        self.enqueue_passed(&self.inner.budget, Command::Send(record), 1, bytes)
    }

    fn enqueue(
        &self,
        budget: &QueueBudget,
        command: Command,
        events: usize,
        bytes: usize,
    ) -> Result<(), Error> {
        let _pass = self.inner.gate.enter()?;
        self.enqueue_passed(budget, command, events, bytes)
    }

    /// [`enqueue`](Self::enqueue) for a caller already through the gate.
    fn enqueue_passed(
        &self,
        budget: &QueueBudget,
        command: Command,
        events: usize,
        bytes: usize,
    ) -> Result<(), Error> {
        let queued = budget
            .try_reserve(events, bytes)
            .map_err(|full| Error::QueueFull {
                queued_events: full.queued_events,
                queued_bytes: full.queued_bytes,
            })?;
        self.inner.commands.try_send(command).map_err(|e| {
            budget.release(events, bytes);
            match e {
                // Only reachable when control commands hold the last slots.
                flume::TrySendError::Full(_) => {
                    let (queued_events, queued_bytes) = budget.queued();
                    Error::QueueFull {
                        queued_events,
                        queued_bytes,
                    }
                }
                flume::TrySendError::Disconnected(_) => Error::ShuttingDown,
            }
        })?;
        self.inner.doorbell.ring(queued);
        Ok(())
    }

    /// Counts and dead-letters a submission rejected whole, and returns its error.
    fn reject(
        &self,
        payload: Bytes,
        error: ValidationError,
        received_at_ms: i64,
        source: &Arc<str>,
    ) -> Error {
        self.inner.telemetry.rejected(&error);
        self.dead_letter(vec![(payload, error.clone())], received_at_ms, source);
        Error::Invalid(error)
    }

    /// Queues rejected payloads for the dead-letter topic, if enabled. Never blocks and
    /// never takes room from valid events (dead letters have their own budget, a tenth
    /// of the queue's): when it is full they are dropped and counted.
    fn dead_letter(
        &self,
        rejected: Vec<(Bytes, ValidationError)>,
        received_at_ms: i64,
        source: &Arc<str>,
    ) {
        let config = &self.inner.settings.dead_letter;
        if !config.enabled || rejected.is_empty() {
            return;
        }
        let tracker = Tracker::new(rejected.len(), false);
        let mut bytes = 0;
        let count = rejected.len();
        let records: Vec<Record> = rejected
            .into_iter()
            .map(|(payload, error)| {
                let truncated = payload.len() > config.max_payload_bytes;
                let payload = if truncated {
                    payload.slice(..config.max_payload_bytes)
                } else {
                    payload
                };
                bytes += payload.len();
                Record::new(
                    Destination::DeadLetter {
                        error: Box::new(error),
                        truncated,
                    },
                    None,
                    payload,
                    received_at_ms,
                    source.clone(),
                    tracker.clone(),
                )
            })
            .collect();
        if let Err(error) = self.enqueue(
            &self.inner.dead_letter_budget,
            Command::SendMany(records),
            count,
            bytes,
        ) {
            let reason = if error.is_backpressure() && !self.inner.gate.is_closed() {
                "queue_full"
            } else {
                "shutting_down"
            };
            self.inner
                .telemetry
                .dead_letter_dropped(reason, count as u64);
            tracing::debug!(count, %error, "dead-letter records dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panicked forwarder (with `panic = "unwind"`, as in tests and any embedder
    /// that keeps the default) shows in `Health` and takes readiness away.
    #[test]
    fn a_dead_forwarder_shows_in_health_and_readiness() {
        let dir = tempfile::tempdir().expect("tempdir");
        // No broker listens on port 1: nothing needs Kafka here.
        let ingestor = Ingestor::builder()
            .brokers("127.0.0.1:1")
            .disk_buffer(dir.path())
            .build()
            .expect("build");
        let health = ingestor.health();
        assert!(health.threads_alive(), "{health:?}");
        let disk = ingestor.inner.disk.as_ref().expect("disk buffer");
        disk.fail_forwarder
            .store(true, std::sync::atomic::Ordering::SeqCst);
        disk.wake();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ingestor.health().threads_alive() {
            assert!(
                Instant::now() < deadline,
                "the dead forwarder went unnoticed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let health = ingestor.health();
        assert_eq!(health.dead_threads, ["ingest-forward"]);
        assert!(!health.is_ready());
    }

    /// With the forwarder dead, a flush fails and a shutdown returns (nothing waits
    /// for a thread that is gone), reporting the persisted event as kept in the buffer.
    #[test]
    fn a_dead_forwarder_does_not_hang_flush_or_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ingestor = Ingestor::builder()
            .brokers("127.0.0.1:1")
            .disk_buffer(dir.path())
            .build()
            .expect("build");
        let disk = ingestor.inner.disk.as_ref().expect("disk buffer");
        disk.fail_forwarder
            .store(true, std::sync::atomic::Ordering::SeqCst);
        disk.wake();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ingestor.health().threads_alive() {
            assert!(Instant::now() < deadline, "the forwarder did not die");
            std::thread::sleep(Duration::from_millis(5));
        }
        let receipt = ingestor
            .submit(
                EventKind::ProductView,
                Bytes::from_static(br#"{"user_id":"u","product_id":"p"}"#),
            )
            .expect("accepted");
        receipt
            .wait_blocking(crate::Ack::Persisted, Some(Duration::from_secs(10)))
            .expect("persisted: the spool still writes");
        let started = Instant::now();
        assert!(ingestor.flush_blocking(Duration::from_secs(60)).is_err());
        let report = ingestor
            .shutdown_blocking(Duration::from_secs(60))
            .expect("stops");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "flush and shutdown took {:?}",
            started.elapsed()
        );
        assert_eq!(
            (report.undelivered, report.kept_in_buffer),
            (1, 1),
            "{report:?}"
        );
    }
}
