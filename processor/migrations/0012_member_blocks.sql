-- The per-minute set members (users, viewers, buyers, ...) move from a row per member to
-- a row per checkpoint and set: each checkpoint writes the members new to their minute
-- as one array per (minute, set). A row and an index entry per member made the members
-- the largest statement of a checkpoint at 100,000 shoppers; an array per set costs a
-- fraction of it and a tenth of the space.
--
-- A member may appear in more than one block of a minute (after a restart, or once the
-- processor's memory of committed members is full): readers count distinct members.
create table rollup_member_blocks (
    minute   bigint not null,
    set_name text   not null,
    members  text[] not null
);
create index rollup_member_blocks_minute on rollup_member_blocks (minute, set_name);

insert into rollup_member_blocks (minute, set_name, members)
select minute, set_name, array_agg(member order by member)
from rollup_members
group by minute, set_name;

drop table rollup_members;

-- The former table's rows, one per distinct member, for SQL readers such as dashboards.
create view rollup_members as
select distinct b.minute, b.set_name, m.member
from rollup_member_blocks b, unnest(b.members) as m(member);
