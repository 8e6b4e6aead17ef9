//! How far Fluent Bit's `tail` input has read each log file, from its `DB` (SQLite).
//!
//! `tail` keeps one row per file in `in_tail_files` (`name`, `inode`, `offset`), updated as it
//! reads (the same table from 1.9 to 5.x). The wrapper opens it read-only for a moment at each
//! rotation and at the end of the Job; it never writes to it and holds no lock between reads.
//!
//! Limits, all of which make the answer "not known to be read", never "read":
//! - `DB.locking true` takes SQLite's exclusive lock for Fluent Bit's whole run, so nobody
//!   else can read the file: the shipped configs leave it off.
//! - In WAL mode (tail's default) a read-only reader needs the `-shm` and `-wal` files to exist
//!   or be creatable (SQLite ≥ 3.22); both containers mount the same emptyDir, so they do.
//! - A row matches a file by inode *and* file name: an inode freed by a deleted generation and
//!   reused by a new one must not carry the old one's offset. The directory may be mounted at
//!   another path in Fluent Bit's container, so only the file name is compared.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// One file as `tail` knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailedFile {
    pub file_name: String,
    pub inode: u64,
    pub offset: u64,
}

#[derive(Debug, Clone)]
pub struct TailDb {
    path: PathBuf,
}

impl TailDb {
    pub fn new(path: &Path) -> TailDb {
        TailDb {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every file `tail` has recorded. An error (no database yet, locked, another schema)
    /// means nothing is known to be read.
    pub fn files(&self) -> Result<Vec<TailedFile>, String> {
        if !self.path.exists() {
            return Err("Fluent Bit has not created it yet".into());
        }
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| e.to_string())?;
        // Fluent Bit's writes are short: wait a little for one rather than fail.
        connection
            .busy_timeout(Duration::from_millis(500))
            .map_err(|e| e.to_string())?;
        let mut statement = connection
            .prepare("SELECT name, inode, offset FROM in_tail_files")
            .map_err(|e| e.to_string())?;
        let rows = statement
            .query_map([], |row| {
                let name: String = row.get(0)?;
                let inode: i64 = row.get(1)?;
                let offset: i64 = row.get(2)?;
                Ok(TailedFile {
                    file_name: Path::new(&name)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or(name),
                    inode: inode as u64,
                    offset: offset.max(0) as u64,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }

    /// How many of `size` bytes of the file `file_name` (inode `inode`) `tail` has not read
    /// yet, per `files`: all of them when it has no row for it.
    pub fn unread(files: &[TailedFile], file_name: &str, inode: u64, size: u64) -> u64 {
        files
            .iter()
            .filter(|f| f.inode == inode && f.file_name == file_name)
            .map(|f| size.saturating_sub(f.offset))
            .min()
            .unwrap_or(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as Fluent Bit 5.1.1 creates it (read from a real `DB`).
    const SCHEMA: &str = "CREATE TABLE in_tail_files (id INTEGER PRIMARY KEY, name TEXT NOT NULL, \
        offset INTEGER, inode INTEGER, created INTEGER, rotated INTEGER DEFAULT 0, \
        offset_marker INTEGER DEFAULT 0, offset_marker_size INTEGER DEFAULT 0)";

    #[test]
    fn reads_offsets_by_inode_and_file_name_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .unwrap();
        writer.execute(SCHEMA, []).unwrap();
        writer
            .execute(
                "INSERT INTO in_tail_files (name, offset, inode, created) VALUES \
                 ('/elsewhere/app.log', 100, 7, 0), ('/elsewhere/app.1.log', 40, 8, 0)",
                [],
            )
            .unwrap();
        // The writer stays open, as Fluent Bit does.
        let db = TailDb::new(&path);
        let files = db.files().unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(TailDb::unread(&files, "app.log", 7, 100), 0);
        assert_eq!(TailDb::unread(&files, "app.log", 7, 150), 50);
        assert_eq!(TailDb::unread(&files, "app.1.log", 8, 100), 60);
        // Same inode under another name (reused), or a file it never saw: nothing read.
        assert_eq!(TailDb::unread(&files, "app.2.log", 7, 100), 100);
        assert_eq!(TailDb::unread(&files, "app.3.log", 9, 10), 10);
    }

    #[test]
    fn no_database_or_another_schema_is_an_error_not_a_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(TailDb::new(&dir.path().join("missing.db")).files().is_err());
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .unwrap()
            .execute("CREATE TABLE t (x INTEGER)", [])
            .unwrap();
        assert!(TailDb::new(&path).files().is_err());
    }
}
