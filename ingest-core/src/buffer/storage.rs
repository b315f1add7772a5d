//! The file-system operations the log uses, behind a trait so tests can inject faults
//! (a full disk, a failing fsync) without a special file system.
//!
//! The buffer holds event payloads (personal data), so on Unix [`StdStorage`] creates its
//! directories with mode 0700 and its files with mode 0600 (whatever the umask), and
//! never follows a symbolic link to a file: a link planted in the directory (say
//! `00000000000000000000.seg -> /etc/passwd`, or `-> /dev/zero`) is refused with an
//! error naming it, so neither recovery nor `buffer repair` reads or truncates what it
//! points at. An existing directory keeps its mode.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// An open file, shared between the appender and the thread running a group commit.
pub type FileHandle = Arc<dyn StorageFile>;

/// A file opened for appending.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Appends all of `buf` at the end of the file.
    fn write_all(&self, buf: &[u8]) -> io::Result<()>;
    /// Flushes the file's data (and the metadata needed to read it) to stable storage.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates (or extends) the file to `len` bytes; later appends start there.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// The directory-level operations of the log.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents if they are missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Opens `path` for appending, creating it if it does not exist.
    fn open_append(&self, path: &Path) -> io::Result<FileHandle>;
    /// Reads the whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Reads exactly `len` bytes starting at `offset`.
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// The names of the entries of `dir`, in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Makes the entries of `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The file's last modification time.
    fn modified(&self, path: &Path) -> io::Result<SystemTime>;
}

/// [`Storage`] on the real file system, through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdStorage;

#[derive(Debug)]
struct StdFile(File);

impl StorageFile for StdFile {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        (&self.0).write_all(buf)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

/// Creates `dir` and its missing parents, private to the owner (0700 on Unix).
pub(crate) fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens `path` with `options` (a created file is private to the owner: 0600 on Unix),
/// refusing anything but a regular file: a symbolic link (even one pointing at a
/// regular file), a device, a FIFO. The path is checked before the open and the opened
/// file after it, so a link swapped in between is caught before the caller reads,
/// writes or truncates anything.
pub(crate) fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => return Err(not_regular(&meta)),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = options.open(path)?;
    let opened = file.metadata()?;
    let now = fs::symlink_metadata(path)?;
    if !now.file_type().is_file() {
        return Err(not_regular(&now));
    }
    if !opened.is_file() || !same_file(&opened, &now) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the file was replaced while it was opened; refusing it",
        ));
    }
    Ok(file)
}

fn not_regular(meta: &fs::Metadata) -> io::Error {
    let what = if meta.file_type().is_symlink() {
        "a symbolic link (the disk buffer does not follow links)"
    } else if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}; refusing to open it"),
    )
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &fs::Metadata, _: &fs::Metadata) -> bool {
    true
}

impl Storage for StdStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        create_private_dir_all(dir)
    }

    fn open_append(&self, path: &Path) -> io::Result<FileHandle> {
        let file = open_regular(path, OpenOptions::new().append(true).create(true))?;
        Ok(Arc::new(StdFile(file)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut file = open_regular(path, OpenOptions::new().read(true))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut file = open_regular(path, OpenOptions::new().read(true))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0; len];
        file.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            // Names that are not UTF-8 cannot be ours; skipping them is safe.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // Directory fsync is how POSIX makes entries durable; other platforms have no
        // equivalent through std, and there it is a no-op.
        if cfg!(unix) {
            File::open(dir)?.sync_all()
        } else {
            Ok(())
        }
    }

    fn modified(&self, path: &Path) -> io::Result<SystemTime> {
        fs::symlink_metadata(path)?.modified()
    }
}
