-- Search documents committed with their checkpoint and not yet acknowledged by the
-- search index (see processor/src/search). Deleted once the index has answered.
create table search_outbox (
    seq       bigserial   primary key,
    event_id  text        not null,
    document  text        not null,
    queued_at timestamptz not null default now()
);
