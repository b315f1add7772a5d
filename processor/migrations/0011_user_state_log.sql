-- Each user's state (event times for sessions, recent products) moves into memory,
-- owned per partition number by the instance that reads it (see processor::user_state):
-- each checkpoint writes one log row per partition number with the state of the users
-- it changed, and from time to time a snapshot of all of them, instead of reading,
-- locking and rewriting one user_activity row per user. The times in user_activity are
-- not carried over: a session in progress at the upgrade may be counted once more
-- (docs/operations.md, "Upgrading").

-- One sequence per partition number: every checkpoint of that number moves it by one
-- from the value its instance loaded (the fence), and it numbers the log rows.
create table partition_state (
    group_id  text   not null,
    partition int    not null,
    seq       bigint not null,
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

-- What remains of user_activity is what the recommendations API reads: each user's
-- recent products, and the time of their newest event (for pruning).
alter table user_activity add column last_ms bigint;
update user_activity set last_ms = times[cardinality(times)];
alter table user_activity drop column times, drop column version;
