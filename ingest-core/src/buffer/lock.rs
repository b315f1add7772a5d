//! The buffer directory's lock: one process (one open buffer) at a time.
//!
//! Two writers on one log corrupt it (both append to the newest segment, both rewrite
//! the ledger and delete segments the other still reads), and in Kubernetes a rolling
//! update starts the new pod before the old one has stopped, on the same volume. So
//! [`LogBuffer::open`](super::LogBuffer::open) and [`repair`](super::repair) take an
//! exclusive advisory lock (`flock(2)` through [`File::try_lock`]) on `<dir>/lock`
//! and hold it until the buffer is dropped; the kernel releases it when the process
//! exits however it exits (`kill -9` included), so a stale lock file never blocks a
//! restart. The lock is per open file, so a second buffer in the same process is
//! refused too.
//!
//! The holder writes `pid=<pid> host=<host name>` into the file, so the error a second
//! process gets names who holds the buffer. The lock is taken on the real file system,
//! outside the [`Storage`](super::Storage) trait: it is a property of the kernel, not of
//! the bytes, and a fault-injecting storage has nothing to add to it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::error::BufferError;
use super::storage::{create_private_dir_all, open_regular};

/// The lock file's name in the buffer directory.
pub const LOCK_FILE: &str = "lock";

/// An exclusive lock on a buffer directory, released when dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    /// Holds the lock: closing the file releases it.
    _file: File,
}

impl DirLock {
    /// Creates `dir` if needed and locks it, recording this process as the holder.
    ///
    /// # Errors
    ///
    /// [`BufferError::Locked`] when another open buffer (in this or another process)
    /// holds the directory; [`BufferError::Io`] when the lock file cannot be created.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, BufferError> {
        create_private_dir_all(dir).map_err(|e| BufferError::io("creating", dir, e))?;
        let path = dir.join(LOCK_FILE);
        // Not through a link: the holder record below truncates the file.
        let mut file = open_regular(
            &path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )
        .map_err(|e| BufferError::io("opening", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(BufferError::Locked {
                    dir: dir.to_path_buf(),
                    holder: holder(&mut file),
                })
            }
            Err(TryLockError::Error(e)) => return Err(BufferError::io("locking", &path, e)),
        }
        // Who holds it, for the error a second process gets. Best effort: the lock
        // itself is what protects the buffer.
        let record = format!(
            "pid={} host={}\n",
            std::process::id(),
            crate::host::host_name()
        );
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(record.as_bytes()));
        if let Err(error) = written {
            tracing::warn!(path = %path.display(), %error, "could not record the disk buffer lock's holder");
        }
        Ok(DirLock { _file: file })
    }
}

/// What the holder wrote into the lock file, or a placeholder.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "an unknown process (it has not recorded itself yet)".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DirLock::acquire(dir.path()).expect("first lock");
        let err = DirLock::acquire(dir.path()).expect_err("second lock");
        let message = err.to_string();
        assert!(
            message.contains(&format!("pid={}", std::process::id())),
            "{message}"
        );
        assert!(err.is_locked());
        drop(first);
        DirLock::acquire(dir.path()).expect("free again once dropped");
        assert!(dir.path().join(LOCK_FILE).exists());
    }
}
