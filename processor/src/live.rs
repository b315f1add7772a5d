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
//! | `P:snapshots` | string | counter naming the temporary keys of each read |
//! | `P:tmp:ID:NAME` | any | temporary keys of read ID: deleted after it, expire in 60 s |
//!
//! ## What a read costs
//!
//! Users, products, queries and experiment pairs come from event fields, so their
//! numbers per minute are whatever clients send. [`LiveView::snapshot`] therefore never
//! brings a set or a whole sorted set into the processor: the window's keys are merged
//! on the Redis side into temporary keys and only bounded answers come back.
//!
//! - Counters (`c:SRC` hashes) are read per minute and source; their fields are metric
//!   names the processor defines, so they are few.
//! - Top lists: `ZUNIONSTORE` of the window's `t:DIM:SRC` sorted sets, then the script
//!   `RANKED` returns the members of the first `top_n` (ties at the cut resolved on
//!   the Redis side as the API orders them); `ZMSCORE` reads the views and units bought
//!   of the at most `2 × top_n` listed products.
//! - Distinct counts: `SUNIONSTORE` (viewers, buyers, cart adders) and `SDIFFSTORE`
//!   (cart adders who did not buy) answer cardinalities; `unique_users` is `PFCOUNT`.
//! - Experiments: the window's `exps` sets merged into a sorted set with all scores 0,
//!   of which `ZRANGE 0 N-1` gives the first `max_experiment_pairs` pairs in byte order;
//!   two `SUNIONSTORE`s per listed pair answer its distinct users and buyers.
//!
//! So the processor holds O(`top_n` + `max_experiment_pairs` + minutes × sources)
//! values per read; Redis does work linear in the window's data, on its side.
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use ingest_common::ConfigError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::aggregate::{dimension, set, TopicPartition};
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

/// The members of a sorted set that rank in the first `ARGV[1]`, read on the Redis side.
///
/// `KEYS[1]` is ranked by score descending, then (with `ARGV[2]` = `by`) by the score in
/// `KEYS[2]` descending, then by member ascending (byte order): the order of the API's
/// top lists. The answer is the set of those members as `member, score` pairs, in no
/// particular order (the caller sorts them); only the ties at the cut are looked at
/// beyond the first `ARGV[1]`. `KEYS[2]` must hold every member of `KEYS[1]`; `KEYS[3]`
/// is scratch space, deleted before the script returns.
const RANKED: &str = r"
local function ranked(key, k, by)
  if k < 1 then return {} end
  local top = redis.call('ZRANGE', key, 0, k - 1, 'REV', 'WITHSCORES')
  if #top < 2 * k then return top end
  local last = top[#top]
  local out = {}
  for i = 1, #top, 2 do
    if top[i + 1] ~= last then
      out[#out + 1] = top[i]
      out[#out + 1] = top[i + 1]
    end
  end
  local want = k - #out / 2
  local ties
  if by then
    redis.call('ZRANGESTORE', KEYS[3], key, last, last, 'BYSCORE')
    redis.call('ZINTERSTORE', KEYS[3], 2, KEYS[3], by, 'WEIGHTS', 0, 1)
    ties = ranked(KEYS[3], want, nil)
    redis.call('DEL', KEYS[3])
  else
    ties = redis.call('ZRANGE', key, last, last, 'BYSCORE', 'LIMIT', 0, want, 'WITHSCORES')
  end
  for i = 1, #ties, 2 do
    out[#out + 1] = ties[i]
    out[#out + 1] = last
  end
  return out
end
local by = nil
if ARGV[2] == 'by' then by = KEYS[2] end
return ranked(KEYS[1], tonumber(ARGV[1]), by)
";

/// The [`RANKED`] call for the first `n` of `key`, ties broken by `by` (unless `by` is
/// `key` itself) and then by member.
fn ranked(key: &str, by: &str, scratch: &Scratch, n: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(RANKED)
        .arg(3)
        .arg(key)
        .arg(by)
        .arg(scratch.key("rank"))
        .arg(n)
        .arg(if key == by { "" } else { "by" });
    cmd
}

/// The temporary keys of one snapshot, `P:tmp:ID:NAME` with `ID` from `INCR P:snapshots`:
/// unique across processes, deleted after the snapshot and expiring on their own.
struct Scratch {
    base: String,
}

impl Scratch {
    /// Every name used (for the final `DEL`).
    const NAMES: [&'static str; 12] = [
        "views",
        "purchases",
        "searches",
        "zero_results",
        "rank",
        "viewers",
        "buyers",
        "cart_adders",
        "abandoned",
        "exps",
        "exp_users",
        "exp_buyers",
    ];
    /// Lifetime of a temporary key should the final `DEL` not happen.
    const TTL_SECS: u64 = 60;

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.base)
    }
}

/// The replies of a pipeline, read in order.
struct Replies(std::vec::IntoIter<redis::Value>);

impl Replies {
    fn of(values: Vec<redis::Value>) -> Replies {
        Replies(values.into_iter())
    }

    fn next<T: redis::FromRedisValue>(&mut self) -> Result<T, Error> {
        let value = self.0.next().unwrap_or(redis::Value::Nil);
        Ok(redis::from_redis_value(value).map_err(redis::RedisError::from)?)
    }
}

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

/// What one [`LiveView::snapshot`] may return at most, whatever the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Entries per top list (at least 1).
    pub top_n: usize,
    /// (flag, variant) pairs reported at most, the first in byte order of
    /// `flag\tvariant`.
    pub max_experiment_pairs: usize,
}

/// The counters of one minute, summed over sources (saturating).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MinuteTotals {
    /// The minute (Unix seconds).
    pub minute: i64,
    /// metric → value, summed over sources.
    pub counts: HashMap<String, i64>,
}

/// What the API needs for a window, read from Redis: sizes bounded by [`ReadLimits`],
/// whatever the number of users, products, queries or experiments.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// Per minute, in order.
    pub minutes: Vec<MinuteTotals>,
    /// Estimated distinct users (HyperLogLog union).
    pub unique_users: u64,
    /// Distinct viewers.
    pub viewers: u64,
    /// Distinct buyers.
    pub buyers: u64,
    /// Distinct cart adders.
    pub cart_adders: u64,
    /// Distinct cart adders who did not buy.
    pub cart_abandoners: u64,
    /// product → (views, units bought) over the window, for the products among the
    /// first `top_n` by views (then units, then id) or by units (then views, then id):
    /// at most `2 × top_n`.
    pub products: BTreeMap<String, (i64, i64)>,
    /// dimension (`searches`, `zero_results`) → query → count over the window, for the
    /// first `top_n` queries by count (then query).
    pub queries: HashMap<String, HashMap<String, i64>>,
    /// (flag, variant) → (users, buyers), distinct; at most `max_experiment_pairs`.
    pub experiments: BTreeMap<(String, String), (u64, u64)>,
    /// Distinct (flag, variant) pairs in the window, reported or not.
    pub experiment_pairs: u64,
}

impl LiveView {
    /// Connects (reconnecting on its own after failures). A `rediss://` URL connects
    /// over TLS (rustls), checking the server's certificate against the PEM
    /// certificates of `ca_file`, or the system's roots without one. A reply slower
    /// than `response_timeout` fails the command as a connection error (retried).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] (key `redis.ca_file`) naming the file when it cannot be read or
    /// holds no PEM certificate, or when it is given for a plain `redis://` URL;
    /// [`Error::Redis`] when connecting fails (for TLS, the message carries rustls's
    /// reason, e.g. an unknown issuer).
    pub async fn connect(
        url: &str,
        ca_file: Option<&Path>,
        prefix: &str,
        ttl_secs: u64,
        response_timeout: Duration,
    ) -> Result<LiveView, Error> {
        let client = match ca_file {
            None => redis::Client::open(url)?,
            Some(path) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(read_ca_file(path)?),
                },
            )
            .map_err(|e| match e.kind() {
                redis::ErrorKind::InvalidClientConfig => Error::Config(ConfigError::new(
                    "redis.ca_file",
                    format!("{}: {e}", path.display()),
                )),
                _ => Error::Redis(e),
            })?,
        };
        let config = ConnectionManagerConfig::new().set_response_timeout(Some(response_timeout));
        let connection = ConnectionManager::new_with_config(client, config).await?;
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
        // A checkpoint of dead letters only changes no figure: Redis refuses an empty
        // pipeline, which would count as a failed write and force a full re-sync.
        if pipe.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Reads the window of `minutes` (Unix seconds of each minute's start), within
    /// `limits`: the sorted sets and sets of the window are merged on the Redis side
    /// into temporary keys, and only the top lists, the counts and at most
    /// `limits.max_experiment_pairs` experiment figures come back (see the module
    /// documentation).
    ///
    /// # Errors
    ///
    /// [`Error::Redis`]. The temporary keys are deleted whatever the outcome, and
    /// expire on their own if even that fails.
    pub async fn snapshot(&self, minutes: &[i64], limits: ReadLimits) -> Result<Snapshot, Error> {
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
        if minutes.is_empty() {
            return Ok(snapshot);
        }
        let mut conn = self.connection.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("INCR").arg(format!("{}:snapshots", self.prefix));
        for &m in minutes {
            pipe.cmd("SMEMBERS").arg(self.key(m, "parts"));
        }
        let mut replies = Replies::of(pipe.query_async(&mut conn).await?);
        let id: u64 = replies.next()?;
        let mut parts: Vec<(i64, Vec<String>)> = Vec::with_capacity(minutes.len());
        for &m in minutes {
            parts.push((m, replies.next()?));
        }
        let scratch = Scratch {
            base: format!("{}:tmp:{id}", self.prefix),
        };
        let result = self
            .read_window(&mut conn, &scratch, &parts, limits, &mut snapshot)
            .await;
        let deleted = redis::cmd("DEL")
            .arg(Scratch::NAMES.map(|name| scratch.key(name)).as_slice())
            .query_async::<()>(&mut conn)
            .await;
        if let Err(e) = deleted {
            tracing::debug!(error = %e, "temporary keys left to expire");
        }
        result.map(|()| snapshot)
    }

    /// The body of [`LiveView::snapshot`] once the sources of each minute are known.
    async fn read_window(
        &self,
        conn: &mut ConnectionManager,
        scratch: &Scratch,
        parts: &[(i64, Vec<String>)],
        limits: ReadLimits,
        snapshot: &mut Snapshot,
    ) -> Result<(), Error> {
        let top_n = limits.top_n.max(1);
        let tops = |dim: &str| -> Vec<String> {
            parts
                .iter()
                .flat_map(|(m, srcs)| srcs.iter().map(move |src| (*m, src)))
                .map(|(m, src)| self.key(m, &format!("t:{dim}:{src}")))
                .collect()
        };
        let sets = |name: &str| -> Vec<String> {
            parts
                .iter()
                .map(|(m, _)| self.key(*m, &format!("s:{name}")))
                .collect()
        };
        let expire = |pipe: &mut redis::Pipeline, key: &str| {
            pipe.cmd("EXPIRE").arg(key).arg(Scratch::TTL_SECS).ignore();
        };

        let mut pipe = redis::pipe();
        let mut counts: Vec<usize> = Vec::new();
        for (i, (m, srcs)) in parts.iter().enumerate() {
            for src in srcs {
                pipe.cmd("HGETALL").arg(self.key(*m, &format!("c:{src}")));
                counts.push(i);
            }
        }
        // Every product of the window twice: scored by views, and by units bought.
        let (views, bought) = (tops(dimension::VIEWS), tops(dimension::PURCHASES));
        let by_views = scratch.key("views");
        let by_units = scratch.key("purchases");
        let products = !views.is_empty() || !bought.is_empty();
        if products {
            for (into, weights) in [(&by_views, (1, 0)), (&by_units, (0, 1))] {
                let mut cmd = redis::cmd("ZUNIONSTORE");
                cmd.arg(into)
                    .arg(views.len() + bought.len())
                    .arg(&views)
                    .arg(&bought)
                    .arg("WEIGHTS");
                cmd.arg(vec![weights.0; views.len()])
                    .arg(vec![weights.1; bought.len()]);
                pipe.add_command(cmd).ignore();
                expire(&mut pipe, into);
            }
            pipe.add_command(ranked(&by_views, &by_units, scratch, top_n));
            pipe.add_command(ranked(&by_units, &by_views, scratch, top_n));
        }
        let mut queries: Vec<&str> = Vec::new();
        for dim in [dimension::SEARCHES, dimension::ZERO_RESULTS] {
            let keys = tops(dim);
            if keys.is_empty() {
                continue;
            }
            let into = scratch.key(dim);
            pipe.cmd("ZUNIONSTORE")
                .arg(&into)
                .arg(keys.len())
                .arg(&keys)
                .ignore();
            expire(&mut pipe, &into);
            pipe.add_command(ranked(&into, &into, scratch, top_n));
            queries.push(dim);
        }
        let hll: Vec<String> = parts.iter().map(|(m, _)| self.key(*m, "hll")).collect();
        pipe.cmd("PFCOUNT").arg(&hll);
        for name in [set::VIEWERS, set::BUYERS, set::CART_ADDERS] {
            let into = scratch.key(name);
            pipe.cmd("SUNIONSTORE").arg(&into).arg(sets(name));
            expire(&mut pipe, &into);
        }
        pipe.cmd("SDIFFSTORE")
            .arg(scratch.key("abandoned"))
            .arg(scratch.key(set::CART_ADDERS))
            .arg(scratch.key(set::BUYERS));
        expire(&mut pipe, &scratch.key("abandoned"));
        // The pairs of the window, all scored 0 so that they rank in byte order.
        let exps: Vec<String> = parts.iter().map(|(m, _)| self.key(*m, "exps")).collect();
        let pairs_key = scratch.key("exps");
        pipe.cmd("ZUNIONSTORE")
            .arg(&pairs_key)
            .arg(exps.len())
            .arg(&exps)
            .arg("WEIGHTS")
            .arg(vec![0; exps.len()]);
        expire(&mut pipe, &pairs_key);
        let max_pairs = limits.max_experiment_pairs;
        if max_pairs > 0 {
            pipe.cmd("ZRANGE").arg(&pairs_key).arg(0).arg(max_pairs - 1);
        }

        let mut replies = Replies::of(pipe.query_async(&mut *conn).await?);
        for i in counts {
            let values: Vec<(String, i64)> = replies.next()?;
            if let Some(totals) = snapshot.minutes.get_mut(i) {
                for (name, value) in values {
                    let sum = totals.counts.entry(name).or_insert(0);
                    *sum = sum.saturating_add(value);
                }
            }
        }
        let mut candidates: BTreeSet<String> = BTreeSet::new();
        if products {
            for _ in 0..2 {
                let list: Vec<(String, f64)> = replies.next()?;
                candidates.extend(list.into_iter().map(|(id, _)| id));
            }
        }
        for dim in queries {
            let list: Vec<(String, f64)> = replies.next()?;
            snapshot.queries.insert(
                dim.to_owned(),
                list.into_iter().map(|(q, n)| (q, n as i64)).collect(),
            );
        }
        snapshot.unique_users = replies.next()?;
        snapshot.viewers = replies.next()?;
        snapshot.buyers = replies.next()?;
        snapshot.cart_adders = replies.next()?;
        snapshot.cart_abandoners = replies.next()?;
        snapshot.experiment_pairs = replies.next()?;
        let pairs: Vec<String> = if max_pairs > 0 {
            replies.next()?
        } else {
            Vec::new()
        };

        // Views and units bought of the listed products; distinct users per pair.
        let candidates: Vec<String> = candidates.into_iter().collect();
        let mut pipe = redis::pipe();
        if !candidates.is_empty() {
            pipe.cmd("ZMSCORE").arg(&by_views).arg(&candidates);
            pipe.cmd("ZMSCORE").arg(&by_units).arg(&candidates);
        }
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .filter_map(|p| p.split_once('\t'))
            .map(|(flag, variant)| (flag.to_owned(), variant.to_owned()))
            .collect();
        for (flag, variant) in &pairs {
            for (name, into) in [
                (set::experiment_users(flag, variant), "exp_users"),
                (set::experiment_buyers(flag, variant), "exp_buyers"),
            ] {
                let into = scratch.key(into);
                pipe.cmd("SUNIONSTORE").arg(&into).arg(sets(&name));
                expire(&mut pipe, &into);
            }
        }
        if candidates.is_empty() && pairs.is_empty() {
            return Ok(());
        }
        let mut replies = Replies::of(pipe.query_async(&mut *conn).await?);
        if !candidates.is_empty() {
            let views: Vec<Option<f64>> = replies.next()?;
            let units: Vec<Option<f64>> = replies.next()?;
            for ((id, v), u) in candidates.into_iter().zip(views).zip(units) {
                let score = |s: Option<f64>| s.map_or(0, |s| s as i64);
                snapshot.products.insert(id, (score(v), score(u)));
            }
        }
        for pair in pairs {
            let users: u64 = replies.next()?;
            let buyers: u64 = replies.next()?;
            snapshot.experiments.insert(pair, (users, buyers));
        }
        Ok(())
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

/// The PEM text of `path`, refused unless it holds at least one certificate.
fn read_ca_file(path: &Path) -> Result<Vec<u8>, Error> {
    let bad = |why: String| {
        Error::Config(ConfigError::new(
            "redis.ca_file",
            format!("{}: {why}", path.display()),
        ))
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let mut certificates = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|e| bad(format!("not PEM: {e}")))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(bad("holds no PEM certificate".to_owned()));
    }
    Ok(pem)
}
