-- The counter tables are updated in place at every checkpoint. Free space in each page
-- lets PostgreSQL write the new row version next to the old one without touching the
-- indexes (a HOT update), which keeps the checkpoint's upserts from rewriting the
-- primary key index. Applies to pages written from now on; `vacuum full` rewrites an
-- existing table with it.
alter table product_pairs set (fillfactor = 70);
alter table user_activity set (fillfactor = 70);
