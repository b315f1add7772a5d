//! Redis: the live view the analytics API reads, written only from committed state.
//!
//! ## Keys (all under the configured prefix `P`, per minute `M` = Unix seconds)
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:M:parts` | set | the sources (`topic:partition`) with counters in minute M |
//! | `P:M:c:SRC` | hash | metric → absolute value for source SRC |
//! | `P:M:t:DIM:SRC` | sorted set | key → absolute value (views per product, ...) |
//! | `P:M:v` | hash | `c:SRC` / `t:DIM:SRC` → the version (offset) the values are at |
//! | `P:M:s:SET` | set | users (viewers, buyers, cart adders, per experiment variant) |
//! | `P:M:hll` | HyperLogLog | users, for `unique_users` |
//! | `P:M:exps` | set | `flag\tvariant` pairs seen in minute M |
//!
//! ## Why a replay cannot double-count
//!
//! Counters are never incremented here. A source's values are the absolute totals that
//! PostgreSQL returned in the checkpoint that committed them, written with the version
//! (the partition's committed offset) by a script that refuses an older version than
//! the one stored: writing the same values twice changes nothing, and a slow instance
//! cannot overwrite newer values after a rebalance. Sets and HyperLogLogs only grow
//! (`SADD`, `PFADD`), so adding a member again is harmless. If the process dies between
//! the commit and these writes, the outbox rows in PostgreSQL bring them back at the next
//! start ([`crate::pipeline`] re-writes them from the committed tables).
//!
//! ## When Redis loses its data
//!
//! A Redis restarted without persistence (or flushed) comes back empty. The key `P:view`
//! (no expiry) marks a live view this processor wrote; when it is missing, the pipeline
//! queues every (minute, partition) of the retention period in the outbox again and
//! re-writes them from PostgreSQL, then sets the marker ([`LiveView::has_marker`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use redis::aio::ConnectionManager;

use crate::aggregate::{set, TopicPartition};
use crate::error::Error;
use crate::store::Committed;

/// Sets the target (hash or sorted set) only if the version is not older than stored.
const VERSIONED_WRITE: &str = r"
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if current > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
for i = 5, #ARGV, 2 do
  if ARGV[4] == 'z' then
    redis.call('ZADD', KEYS[2], ARGV[i + 1], ARGV[i])
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
";

/// A sorted set of one minute, source and dimension.
type TopsKey<'a> = (i64, &'a TopicPartition, &'a str);

/// Members written per command at most.
const MEMBERS_PER_COMMAND: usize = 1_000;

/// The Redis live view.
#[derive(Clone)]
pub struct LiveView {
    connection: ConnectionManager,
    prefix: String,
    ttl_secs: u64,
}

fn source(tp: &TopicPartition) -> String {
    format!("{}:{}", tp.topic, tp.partition)
}

/// Sum of values per name over a window.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MinuteTotals {
    /// The minute (Unix seconds).
    pub minute: i64,
    /// metric → value, summed over sources.
    pub counts: HashMap<String, i64>,
    /// dimension → key → value, summed over sources.
    pub tops: HashMap<String, HashMap<String, i64>>,
}

/// Everything the API needs for a window, read from Redis.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// Per minute, in order.
    pub minutes: Vec<MinuteTotals>,
    /// Estimated distinct users (HyperLogLog union).
    pub unique_users: u64,
    /// Distinct viewers.
    pub viewers: HashSet<String>,
    /// Distinct buyers.
    pub buyers: HashSet<String>,
    /// Distinct cart adders.
    pub cart_adders: HashSet<String>,
    /// (flag, variant) → (users, buyers), distinct.
    pub experiments: BTreeMap<(String, String), (u64, u64)>,
}

impl LiveView {
    /// Connects (reconnecting on its own after failures).
    ///
    /// # Errors
    ///
    /// [`Error::Redis`].
    pub async fn connect(url: &str, prefix: &str, ttl_secs: u64) -> Result<LiveView, Error> {
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new(client).await?;
        Ok(LiveView {
            connection,
            prefix: prefix.to_owned(),
            ttl_secs,
        })
    }

    fn key(&self, minute: i64, rest: &str) -> String {
        format!("{}:{minute}:{rest}", self.prefix)
    }

    /// Queues the registration of `src` as a writer of `minute` and a versioned write
    /// of `pairs` into the hash (`kind` `"h"`) or sorted set (`"z"`) named `field`.
    #[allow(clippy::too_many_arguments)]
    fn queue_versioned(
        &self,
        pipe: &mut redis::Pipeline,
        minute: i64,
        src: &str,
        field: &str,
        version: i64,
        kind: &str,
        pairs: Vec<(&str, i64)>,
    ) {
        pipe.cmd("SADD")
            .arg(self.key(minute, "parts"))
            .arg(src)
            .ignore();
        pipe.cmd("EXPIRE")
            .arg(self.key(minute, "parts"))
            .arg(self.ttl_secs)
            .ignore();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(VERSIONED_WRITE)
            .arg(2)
            .arg(self.key(minute, "v"))
            .arg(self.key(minute, field))
            .arg(field)
            .arg(version)
            .arg(self.ttl_secs)
            .arg(kind);
        for (name, value) in pairs {
            cmd.arg(name).arg(value);
        }
        pipe.add_command(cmd).ignore();
    }

    /// Writes committed values at `version` per source, and members.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`]; nothing is lost then (the outbox still names these minutes).
    pub async fn write(
        &self,
        committed: &Committed,
        versions: &HashMap<TopicPartition, i64>,
        members: &BTreeSet<(i64, String, String)>,
    ) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        let mut counts: BTreeMap<(i64, &TopicPartition), Vec<(&str, i64)>> = BTreeMap::new();
        for (minute, tp, metric, value) in &committed.counts {
            counts
                .entry((*minute, tp))
                .or_default()
                .push((metric, *value));
        }
        for ((minute, tp), values) in counts {
            let Some(version) = versions.get(tp) else {
                continue;
            };
            let src = source(tp);
            self.queue_versioned(
                &mut pipe,
                minute,
                &src,
                &format!("c:{src}"),
                *version,
                "h",
                values,
            );
        }
        let mut tops: BTreeMap<TopsKey<'_>, Vec<(&str, i64)>> = BTreeMap::new();
        for (minute, tp, dim, key, value) in &committed.tops {
            tops.entry((*minute, tp, dim))
                .or_default()
                .push((key, *value));
        }
        for ((minute, tp, dim), values) in tops {
            let Some(version) = versions.get(tp) else {
                continue;
            };
            let src = source(tp);
            self.queue_versioned(
                &mut pipe,
                minute,
                &src,
                &format!("t:{dim}:{src}"),
                *version,
                "z",
                values,
            );
        }
        let mut by_set: BTreeMap<(i64, &str), Vec<&str>> = BTreeMap::new();
        for (minute, name, member) in members {
            by_set.entry((*minute, name)).or_default().push(member);
        }
        for ((minute, name), list) in by_set {
            if let Some(rest) = name.strip_prefix("exp_users\t") {
                pipe.cmd("SADD")
                    .arg(self.key(minute, "exps"))
                    .arg(rest)
                    .ignore();
                pipe.cmd("EXPIRE")
                    .arg(self.key(minute, "exps"))
                    .arg(self.ttl_secs)
                    .ignore();
            }
            for chunk in list.chunks(MEMBERS_PER_COMMAND) {
                if name == set::USERS {
                    pipe.cmd("PFADD")
                        .arg(self.key(minute, "hll"))
                        .arg(chunk)
                        .ignore();
                }
                pipe.cmd("SADD")
                    .arg(self.key(minute, &format!("s:{name}")))
                    .arg(chunk)
                    .ignore();
            }
            if name == set::USERS {
                pipe.cmd("EXPIRE")
                    .arg(self.key(minute, "hll"))
                    .arg(self.ttl_secs)
                    .ignore();
            }
            pipe.cmd("EXPIRE")
                .arg(self.key(minute, &format!("s:{name}")))
                .arg(self.ttl_secs)
                .ignore();
        }
        let mut conn = self.connection.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Reads the window of `minutes` (Unix seconds of each minute's start).
    ///
    /// # Errors
    ///
    /// [`Error::Redis`].
    pub async fn snapshot(&self, minutes: &[i64]) -> Result<Snapshot, Error> {
        let mut conn = self.connection.clone();
        let mut pipe = redis::pipe();
        for &m in minutes {
            pipe.cmd("SMEMBERS").arg(self.key(m, "parts"));
            pipe.cmd("SMEMBERS").arg(self.key(m, "exps"));
        }
        let listed: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
        let mut parts: Vec<(i64, Vec<String>)> = Vec::new();
        let mut experiments: BTreeSet<(String, String)> = BTreeSet::new();
        for (i, &m) in minutes.iter().enumerate() {
            parts.push((m, listed.get(2 * i).cloned().unwrap_or_default()));
            for pair in listed.get(2 * i + 1).into_iter().flatten() {
                if let Some((flag, variant)) = pair.split_once('\t') {
                    experiments.insert((flag.to_owned(), variant.to_owned()));
                }
            }
        }

        let mut pipe = redis::pipe();
        let mut reads: Vec<(usize, Option<String>)> = Vec::new();
        for (i, (m, srcs)) in parts.iter().enumerate() {
            for src in srcs {
                pipe.cmd("HGETALL").arg(self.key(*m, &format!("c:{src}")));
                reads.push((i, None));
                for dim in crate::aggregate::dimension::ALL {
                    pipe.cmd("ZRANGE")
                        .arg(self.key(*m, &format!("t:{dim}:{src}")))
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES");
                    reads.push((i, Some(dim.to_owned())));
                }
            }
        }
        let values: Vec<Vec<(String, f64)>> = if reads.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await?
        };
        let mut snapshot = Snapshot {
            minutes: minutes
                .iter()
                .map(|&minute| MinuteTotals {
                    minute,
                    ..MinuteTotals::default()
                })
                .collect(),
            ..Snapshot::default()
        };
        for ((i, dim), pairs) in reads.into_iter().zip(values) {
            let Some(totals) = snapshot.minutes.get_mut(i) else {
                continue;
            };
            for (name, value) in pairs {
                let value = value as i64;
                match &dim {
                    None => *totals.counts.entry(name).or_insert(0) += value,
                    Some(d) => {
                        *totals
                            .tops
                            .entry(d.clone())
                            .or_default()
                            .entry(name)
                            .or_insert(0) += value
                    }
                }
            }
        }

        let set_keys = |name: &str| -> Vec<String> {
            minutes
                .iter()
                .map(|&m| self.key(m, &format!("s:{name}")))
                .collect()
        };
        let mut pipe = redis::pipe();
        let hll: Vec<String> = minutes.iter().map(|&m| self.key(m, "hll")).collect();
        pipe.cmd("PFCOUNT").arg(&hll);
        pipe.cmd("SUNION").arg(set_keys(set::VIEWERS));
        pipe.cmd("SUNION").arg(set_keys(set::BUYERS));
        pipe.cmd("SUNION").arg(set_keys(set::CART_ADDERS));
        for (flag, variant) in &experiments {
            pipe.cmd("SUNION")
                .arg(set_keys(&set::experiment_users(flag, variant)));
            pipe.cmd("SUNION")
                .arg(set_keys(&set::experiment_buyers(flag, variant)));
        }
        if minutes.is_empty() {
            return Ok(snapshot);
        }
        let (unique, rest): (u64, Vec<HashSet<String>>) = {
            let raw: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
            let mut it = raw.into_iter();
            let unique: u64 = match it.next() {
                Some(v) => redis::from_redis_value(v).map_err(redis::RedisError::from)?,
                None => 0,
            };
            let mut rest = Vec::new();
            for v in it {
                rest.push(
                    redis::from_redis_value::<HashSet<String>>(v)
                        .map_err(redis::RedisError::from)?,
                );
            }
            (unique, rest)
        };
        snapshot.unique_users = unique;
        let mut rest = rest.into_iter();
        snapshot.viewers = rest.next().unwrap_or_default();
        snapshot.buyers = rest.next().unwrap_or_default();
        snapshot.cart_adders = rest.next().unwrap_or_default();
        for pair in experiments {
            let users = rest.next().map_or(0, |s| s.len() as u64);
            let buyers = rest.next().map_or(0, |s| s.len() as u64);
            snapshot.experiments.insert(pair, (users, buyers));
        }
        Ok(snapshot)
    }

    /// Whether the marker of a written live view is there; `false` means Redis lost (or
    /// never had) the view.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`].
    pub async fn has_marker(&self) -> Result<bool, Error> {
        let mut conn = self.connection.clone();
        let n: i64 = redis::cmd("EXISTS")
            .arg(format!("{}:view", self.prefix))
            .query_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// Sets the marker (after the re-write of the view was queued durably).
    ///
    /// # Errors
    ///
    /// [`Error::Redis`].
    pub async fn set_marker(&self) -> Result<(), Error> {
        let mut conn = self.connection.clone();
        redis::cmd("SET")
            .arg(format!("{}:view", self.prefix))
            .arg(1)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Whether Redis answers.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`].
    pub async fn ping(&self) -> Result<(), Error> {
        let mut conn = self.connection.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }
}
