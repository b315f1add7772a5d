-- The id of the transaction that last wrote a user's state: an instance that cached the
-- state it wrote updates the row only while it still holds that version
-- (processor/src/user_cache.rs). Rows written before have 0, which no cache holds.
alter table user_activity add column version bigint not null default 0;
