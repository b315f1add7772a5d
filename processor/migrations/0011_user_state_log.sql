-- Each user's state (event times for sessions, recent products) moves into memory,
-- owned per partition number by the instance that reads it (see processor::user_state):
-- each checkpoint writes one log row per partition number with the state of the users
-- it changed, and from time to time a snapshot of all of them, instead of reading,
-- locking and rewriting one user_activity row per user. The times in user_activity are
-- not carried over: a session in progress at the upgrade may be counted once more
-- (docs/operations.md, "Upgrading").

-- One sequence per partition number: every checkpoint of that number moves it by one
-- from the value its instance loaded (the fence), and it numbers the log rows.
-- copied_seq: the sequence up to which the users' recent products are copied to
-- user_activity (an instance that loads a number behind it copies them all again).
create table partition_state (
    group_id   text   not null,
    partition  int    not null,
    seq        bigint not null,
    copied_seq bigint not null default 0,
    primary key (group_id, partition)
);

create table user_state_log (
    group_id  text    not null,
    partition int     not null,
    seq       bigint  not null,
    -- Whether the row holds every user of its number (the rows before it are deleted).
    snapshot  boolean not null,
    states    bytea   not null,
    primary key (group_id, partition, seq)
);
-- Rows are zstd-compressed by the processor: stored as they are, out of line.
alter table user_state_log alter column states set storage external;

-- What remains of user_activity is what the recommendations API reads: each user's
-- recent products, and the time of their newest event (for pruning), copied from the
-- users' state at most once per recommendations.publish_interval_secs.
alter table user_activity add column last_ms bigint;
update user_activity set last_ms = times[cardinality(times)];
alter table user_activity drop column times, drop column version;
