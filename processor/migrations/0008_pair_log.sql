-- Product-pair deltas leave the checkpoint's hot path (see processor::recommend::pair_log):
-- each checkpoint writes one row with all of its pair deltas (compressed, each unordered
-- pair once), in the same transaction as the offsets, instead of one product_pairs
-- upsert per pair. A background fold deletes rows and adds their summed deltas to
-- product_pairs in one transaction, so each row is applied exactly once.
create table pair_log (
    seq       bigserial   primary key,
    pairs     bigint      not null,
    deltas    bytea       not null,
    queued_at timestamptz not null default now()
);
-- Already compressed: stored as is, out of line.
alter table pair_log alter column deltas set storage external;
