-- Each user's recent distinct products (newest first), for recommendations.
alter table user_activity
    add column viewed text[] not null default '{}',
    add column bought text[] not null default '{}';

-- Co-view and co-purchase counts per ordered product pair (kind 'view' or 'purchase').
create table product_pairs (
    kind  text   not null,
    a     text   not null,
    b     text   not null,
    count bigint not null,
    primary key (kind, a, b)
);
