-- Every checkpoint adds to the top-list rows of its minute, the same rows again and
-- again while the minute is current. Packed pages left no room for the new row version
-- next to the old one, so most of those updates were not HOT: each wrote a new entry in
-- the five-column primary key. Free space per page makes them HOT (as 0005 did for the
-- other counter tables). Applies to pages written from now on.
alter table rollup_tops set (fillfactor = 60);
