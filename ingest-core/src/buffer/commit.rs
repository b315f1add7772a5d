//! Group commit: concurrent appenders waiting for durability share one `fdatasync`.
//!
//! The first waiter to find no sync in progress becomes the leader: it snapshots how far
//! the log has been written, syncs, and publishes that point as `synced_up_to`. Waiters
//! that arrive while a sync runs sleep on the condition variable; when it finishes they
//! either find their records covered or one of them leads the next round. A sync
//! therefore covers every append written before it started, however many there were.
//!
//! A failed sync poisons the commit for good: after an fsync error the kernel may have
//! dropped the dirty pages, so a later successful fsync proves nothing (retrying would
//! report durability that does not exist). The log must be reopened and re-verified.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::error::BufferError;
use super::storage::FileHandle;

#[derive(Debug)]
struct CommitState {
    /// Every record below this sequence number is on stable storage.
    synced_up_to: u64,
    leader_active: bool,
    failed: Option<String>,
}

/// Shared durability watermark with leader/follower syncing.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    state: Mutex<CommitState>,
    done: Condvar,
}

/// What a leader must sync: the file being appended to (none when every segment was
/// deleted) and the sequence number the log was written up to when it was captured.
pub(crate) type SyncPoint = (Option<(FileHandle, PathBuf)>, u64);

impl GroupCommit {
    pub(crate) fn new(synced_up_to: u64) -> Self {
        GroupCommit {
            state: Mutex::new(CommitState {
                synced_up_to,
                leader_active: false,
                failed: None,
            }),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CommitState> {
        // The guarded state is three plain fields updated in single assignments; no
        // panic can leave them half-written, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until every record below `target` is durable, syncing as leader when no
    /// other thread is. `sync_point` is called (at most once, without this lock held)
    /// to learn what to sync; segments other than the one it returns must already be
    /// durable.
    pub(crate) fn wait_durable(
        &self,
        target: u64,
        sync_point: impl FnOnce() -> Result<SyncPoint, BufferError>,
    ) -> Result<(), BufferError> {
        let mut sync_point = Some(sync_point);
        let mut state = self.lock();
        loop {
            if state.synced_up_to >= target {
                return Ok(());
            }
            if let Some(reason) = &state.failed {
                return Err(BufferError::Poisoned {
                    reason: reason.clone(),
                });
            }
            if state.leader_active {
                state = self
                    .done
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // A thread leads at most once: its own sync covers its target, because the
            // sync point is captured after its records were written.
            let Some(sync_point) = sync_point.take() else {
                return Err(BufferError::Poisoned {
                    reason: format!("sync point fell behind sequence number {target}"),
                });
            };
            state.leader_active = true;
            drop(state);
            let result = sync_point().and_then(|(file, written)| {
                if let Some((file, path)) = file {
                    file.sync_data()
                        .map_err(|e| BufferError::io("syncing", path, e))?;
                }
                Ok(written)
            });
            state = self.lock();
            state.leader_active = false;
            self.done.notify_all();
            match result {
                Ok(written) => state.synced_up_to = state.synced_up_to.max(written),
                Err(err) => {
                    state.failed = Some(err.to_string());
                    return Err(err);
                }
            }
        }
    }

    /// Records that an fsync outside the group commit (a segment roll) failed.
    pub(crate) fn poison(&self, reason: String) {
        let mut state = self.lock();
        state.failed.get_or_insert(reason);
        self.done.notify_all();
    }

    /// Why the commit is poisoned, if it is.
    pub(crate) fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }
}
