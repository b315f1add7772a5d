-- Records the processor dead-letters (undecodable, unstorable, ...), committed in the
-- checkpoint transaction that moves their partition's offset past them, so each record
-- is queued once whatever happens to the process; a background task produces them to
-- the dead-letter topic and deletes each row once Kafka has acknowledged it.
create table dead_letter_outbox (
    seq           bigserial   primary key,
    topic         text        not null,
    partition     int         not null,
    record_offset bigint      not null,
    reason        text        not null,
    message       text        not null,
    record_key    bytea,
    payload       bytea       not null,
    header_keys   text[]      not null,
    header_values bytea[]     not null,
    queued_at     timestamptz not null default now(),
    unique (topic, partition, record_offset)
);

