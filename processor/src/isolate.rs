//! Storing a batch when PostgreSQL refuses part of it: find the records it refuses and
//! store the rest, inside the same fenced checkpoint transaction.
//!
//! The content check when a batch is decoded ([`crate::decode`]) stops every value
//! known to be unstorable; this is the safety net for the classes nobody has found yet.
//! When writing the batch fails with a data error ([`Disposition::Data`]: SQLSTATE class
//! 22, 23 or 54), the batch is bisected: each half is written in a savepoint and rolled
//! back (a probe), and the halves that fail are split again, down to single records:
//! `O(k·log n)` probes for `k` refused records among `n`. Then everything but the
//! refused records is written for real. Each probe aggregates its subset afresh from the
//! committed state, so a probe's outcome does not depend on the others.
//!
//! Refusals that no record explains stop the processor instead of dead-lettering good
//! records ([`Error::Unattributable`]): a batch that fails although both of its halves
//! are stored alone (the values only clash together), more refused records than
//! `max_refused`, or a data error once the refused records are left out.

use std::collections::HashSet;

use crate::aggregate::{Incoming, Rollup};
use crate::error::{Disposition, Error};
use crate::store::{Attempt, Checkpoint, UserStates, WriteSettings, Written};
use crate::user_state::OwnedUsers;

/// Turns a subset of the batch and its users' committed state into the rollup.
pub trait Aggregate: Fn(&[&Incoming], UserStates) -> Rollup {}

impl<F> Aggregate for F where F: Fn(&[&Incoming], UserStates) -> Rollup {}

/// Writes `events` (in order) into `checkpoint`, leaving out the records PostgreSQL
/// refuses. Returns what was written and the refused records, as indices into `events`
/// with the error each met.
///
/// # Errors
///
/// Any error that is not a data error, as it happened (the caller retries or stops);
/// [`Error::Unattributable`] as described in the module documentation.
pub async fn write_isolating(
    checkpoint: &mut Checkpoint<'_>,
    events: &[&Incoming],
    owned: &OwnedUsers,
    settings: &WriteSettings,
    max_refused: usize,
    aggregate: &impl Aggregate,
) -> Result<(Written, Vec<(usize, Error)>), Error> {
    let all: Vec<usize> = (0..events.len()).collect();
    let first = match write(
        checkpoint,
        events,
        (owned, settings),
        &all,
        Attempt::Keep,
        aggregate,
    )
    .await
    {
        Ok(written) => return Ok((written, Vec::new())),
        Err(e) if e.disposition() == Disposition::Data => e,
        Err(e) => return Err(e),
    };
    tracing::warn!(error = %first, events = events.len(),
        "PostgreSQL refused the checkpoint's data: looking for the records it refuses");
    let mut refused: Vec<(usize, Error)> = Vec::new();
    // Subsets known to fail as a whole, with the error they met.
    let mut failing: Vec<(Vec<usize>, Error)> = vec![(all.clone(), first)];
    while let Some((subset, error)) = failing.pop() {
        if subset.len() == 1 {
            if refused.len() == max_refused {
                return Err(Error::Unattributable(Box::new(error)));
            }
            refused.push((subset[0], error));
            continue;
        }
        let (left, right) = subset.split_at(subset.len() / 2);
        let mut any_failed = false;
        // Pushed right first so that the left half is searched first: refused records
        // come out in read order.
        for half in [right, left] {
            match write(
                checkpoint,
                events,
                (owned, settings),
                half,
                Attempt::Probe,
                aggregate,
            )
            .await
            {
                Ok(_) => {}
                Err(e) if e.disposition() == Disposition::Data => {
                    any_failed = true;
                    failing.push((half.to_vec(), e));
                }
                Err(e) => return Err(e),
            }
        }
        if !any_failed {
            return Err(Error::Unattributable(Box::new(error)));
        }
    }
    let skip: HashSet<usize> = refused.iter().map(|(i, _)| *i).collect();
    let rest: Vec<usize> = all.into_iter().filter(|i| !skip.contains(i)).collect();
    match write(
        checkpoint,
        events,
        (owned, settings),
        &rest,
        Attempt::Keep,
        aggregate,
    )
    .await
    {
        Ok(written) => Ok((written, refused)),
        Err(e) if e.disposition() == Disposition::Data => Err(Error::Unattributable(Box::new(e))),
        Err(e) => Err(e),
    }
}

/// Writes the events at `indices` of `events`.
async fn write(
    checkpoint: &mut Checkpoint<'_>,
    events: &[&Incoming],
    (owned, settings): (&OwnedUsers, &WriteSettings),
    indices: &[usize],
    attempt: Attempt,
    aggregate: &impl Aggregate,
) -> Result<Written, Error> {
    let subset: Vec<&Incoming> = indices
        .iter()
        .filter_map(|&i| events.get(i).copied())
        .collect();
    let users = crate::user_state::users_of(&subset);
    checkpoint
        .write(&users, owned, settings, attempt, |states| {
            aggregate(&subset, states)
        })
        .await
}
