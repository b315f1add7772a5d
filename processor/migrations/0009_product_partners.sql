-- Product-pair counts as one row per product and kind instead of one row per ordered
-- pair (see processor::recommend::fold): a fold rewrites the lists of the products its
-- deltas touch, a few thousand rows, where it used to upsert every pair (hundreds of
-- thousands of rows, each with its index entry).
--
-- `partners`/`counts`: every partner of `a` with its count, most counted first, ties by
-- partner id in byte order. `top_partners`/`top_counts`: their first
-- `recommendations.partners_per_product` entries when the row was written, which is
-- what recommendations read (a short array, not the whole list).
create table product_partners (
    kind         text     not null,
    a            text     not null,
    partners     text[]   not null,
    counts       bigint[] not null,
    top_partners text[]   not null,
    top_counts   bigint[] not null,
    n            integer  generated always as (cardinality(partners)) stored,
    primary key (kind, a)
);
-- Rewritten whole at every fold that touches the product: room for the new version in
-- the same page keeps the update from touching the primary key index.
alter table product_partners set (fillfactor = 70);

insert into product_partners (kind, a, partners, counts, top_partners, top_counts)
select kind, a, partners, counts, partners[1:50], counts[1:50]
from (
    select kind, a,
           array_agg(b order by count desc, b collate "C") as partners,
           array_agg(count order by count desc, b collate "C") as counts
    from product_pairs
    group by kind, a
) lists;

drop table product_pairs;
