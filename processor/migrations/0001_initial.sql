-- The processor's schema. Minutes are Unix seconds of the minute's start (UTC);
-- amounts are integer micro-units of the reporting currency, so sums are exact.

-- Per-minute counters of one source partition (events per type, orders, revenue, ...).
create table rollup_counts (
    minute    bigint not null,
    topic     text   not null,
    partition int    not null,
    metric    text   not null,
    value     bigint not null,
    primary key (minute, topic, partition, metric)
);

-- Per-minute keyed counters of one source partition (views per product, searches per
-- query, ...): the top lists are read from these.
create table rollup_tops (
    minute    bigint not null,
    topic     text   not null,
    partition int    not null,
    dimension text   not null,
    key       text   not null,
    value     bigint not null,
    primary key (minute, topic, partition, dimension, key)
);

-- Per-minute sets of users (all users, viewers, buyers, cart adders, per experiment
-- variant): exact distinct counts, and the source of the Redis sets and HyperLogLogs.
create table rollup_members (
    minute   bigint not null,
    set_name text   not null,
    member   text   not null,
    primary key (minute, set_name, member)
);

-- The next offset to read per partition, and the partition's event-time watermark,
-- committed in the same transaction as the rollups above.
create table consumer_offsets (
    group_id     text   not null,
    topic        text   not null,
    partition    int    not null,
    next_offset  bigint not null,
    watermark_ms bigint not null,
    primary key (group_id, topic, partition)
);

-- Event ids already counted (the de-duplication state), pruned past the window.
create table seen_events (
    event_id text   primary key,
    minute   bigint not null
);
create index seen_events_minute on seen_events (minute);

-- (minute, partition) rollups committed but maybe not yet written to Redis.
create table redis_outbox (
    minute    bigint not null,
    topic     text   not null,
    partition int    not null,
    version   bigint not null,
    primary key (minute, topic, partition)
);

-- The product catalog the processor enriches events with (maintained by the shop).
create table if not exists products (
    id       text primary key,
    name     text not null,
    category text,
    brand    text,
    price    double precision,
    currency text
);

-- Conversion rates: one unit of `currency` is `rate_to_reporting` units of the
-- configured reporting currency (the reporting currency itself needs no row).
create table if not exists currency_rates (
    currency          text primary key,
    rate_to_reporting double precision not null check (rate_to_reporting > 0)
);
