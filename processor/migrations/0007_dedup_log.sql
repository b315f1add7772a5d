-- De-duplication moves into memory, per partition (see processor::dedup): each
-- checkpoint writes one row per partition with the keys of the events it counted
-- (16 bytes each, grouped by stream minute), keyed by the end offset of the committed
-- range, instead of one seen_events row per event. The ids in seen_events are not
-- carried over: resends of events counted before this migration are caught again only
-- once the new rows cover them (docs/operations.md, "Upgrading").
create table dedup_log (
    group_id   text   not null,
    topic      text   not null,
    partition  int    not null,
    to_offset  bigint not null,
    min_minute bigint not null,
    max_minute bigint not null,
    ids        bytea  not null,
    primary key (group_id, topic, partition, to_offset)
);
-- Hashes do not compress: store them uncompressed, out of line.
alter table dedup_log alter column ids set storage external;

drop table seen_events;
