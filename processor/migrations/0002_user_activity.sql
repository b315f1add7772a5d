-- Each user's recent event times (Unix ms, sorted), for sessions with an inactivity
-- timeout; written in the checkpoint transaction like the rollups.
create table user_activity (
    member text   primary key,
    times  bigint[] not null
);
