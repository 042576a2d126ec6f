//! Opening the database: telling a vhdkit catalog from any other file,
//! the connection's settings (WAL, busy timeout, foreign keys) and the
//! schema migrations, numbered by `PRAGMA user_version`.
//!
//! A catalog carries [`APPLICATION_ID`] in its header. A file that is not
//! SQLite, a database of another program, a damaged database or one made by
//! a newer vhdkit is refused before anything is written to it.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{CatalogError, DbContext, Result};

/// `PRAGMA application_id` of a vhdkit catalog ("VHDC").
pub const APPLICATION_ID: i64 = 0x5648_4443;
/// How long a writer waits for another to finish before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of the database file SQLite maps (reads need no copy).
const MMAP_BYTES: i64 = 1 << 30;
/// SQLite's page cache per connection, in KiB.
const CACHE_KIB: i64 = 64 << 10;
/// The first 16 bytes of every SQLite 3 database.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Each step takes the schema from version `index` to `index + 1`.
const MIGRATIONS: [&str; 1] = [V1];

/// Version 1: images, their properties, and the indexes the look-ups use.
const V1: &str = "
CREATE TABLE images (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT,
    visibility TEXT NOT NULL,
    protected INTEGER NOT NULL,
    os_hidden INTEGER NOT NULL,
    disk_format TEXT NOT NULL,
    container_format TEXT NOT NULL,
    min_disk INTEGER NOT NULL,
    min_ram INTEGER NOT NULL,
    checksum TEXT,
    os_hash_algo TEXT NOT NULL,
    os_hash_value TEXT,
    size INTEGER,
    virtual_size INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    source_path TEXT NOT NULL,
    stored_path TEXT,
    reference INTEGER NOT NULL,
    disk_type TEXT NOT NULL,
    forced INTEGER NOT NULL,
    structure TEXT NOT NULL
);
CREATE INDEX images_by_name ON images(name);
CREATE INDEX images_by_status ON images(status);
CREATE INDEX images_by_stored_path ON images(stored_path);
CREATE TABLE properties (
    image_seq INTEGER NOT NULL REFERENCES images(seq) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (image_seq, key)
) WITHOUT ROWID;
CREATE INDEX properties_by_value ON properties(key, value, image_seq);
";

/// The schema version this vhdkit writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Opens `path` as a catalog, creating it when it does not exist, and
/// brings its schema up to date.
pub fn open(path: &Path) -> Result<Connection> {
    refuse_non_sqlite(path)?;
    let not_catalog = |e: rusqlite::Error| CatalogError::NotACatalog {
        path: path.to_path_buf(),
        detail: format!("unreadable as SQLite: {e}"),
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).db(path, "open the catalog")?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .db(path, "set the busy timeout")?;
    identify(&conn, path).map_err(|e| match e {
        CatalogError::Database { source, .. } => not_catalog(source),
        other => other,
    })?;
    // WAL lets readers run while one process writes; the mode is kept in
    // the file, so this changes something only on a new catalog.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .db(path, "set WAL mode")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(CatalogError::NotACatalog {
            path: path.to_path_buf(),
            detail: format!("SQLite refused WAL mode (journal mode {mode})"),
        });
    }
    conn.pragma_update(None, "foreign_keys", true)
        .db(path, "enable foreign keys")?;
    // Look-ups over a large catalog read the pages through a map and keep
    // them, instead of a read() per page into SQLite's 2 MB default cache.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .db(path, "set the map size")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .db(path, "set the cache size")?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// A non-empty file that does not start with SQLite's header is refused
/// before SQLite opens it.
fn refuse_non_sqlite(path: &Path) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(crate::Error::io(path, "stat the catalog", e).into()),
    };
    let foreign = |detail: String| CatalogError::NotACatalog {
        path: path.to_path_buf(),
        detail,
    };
    if !meta.is_file() {
        return Err(foreign("not a regular file".into()));
    }
    if meta.len() == 0 {
        return Ok(());
    }
    let mut head = [0u8; 16];
    let mut f =
        std::fs::File::open(path).map_err(|e| crate::Error::io(path, "open the catalog", e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(crate::Error::io(path, "read the catalog", e).into()),
        }
    }
    if &head[..n] != SQLITE_MAGIC.as_slice() {
        return Err(foreign(format!(
            "not an SQLite database (first bytes {:02x?}, expected \"SQLite format 3\\0\")",
            &head[..n.min(8)]
        )));
    }
    Ok(())
}

/// Our application id, or an empty database; anything else is foreign.
/// The three values are read in one read transaction: another process
/// creating the catalog at the same moment commits its schema and its
/// application id together, and a reader must not see half of that.
fn identify(conn: &Connection, path: &Path) -> Result<()> {
    conn.execute_batch("BEGIN")
        .db(path, "begin reading the catalog's identity")?;
    let read = identify_in(conn, path);
    let _ = conn.execute_batch(if read.is_ok() { "COMMIT" } else { "ROLLBACK" });
    read
}

fn identify_in(conn: &Connection, path: &Path) -> Result<()> {
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .db(path, "read the application id")?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .db(path, "read the schema version")?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .db(path, "read the schema")?;
    let foreign = |detail: String| CatalogError::NotACatalog {
        path: path.to_path_buf(),
        detail,
    };
    if app != APPLICATION_ID && (app != 0 || objects > 0 || version != 0) {
        return Err(foreign(format!(
            "an SQLite database of another program (application_id {app:#x}, {objects} schema objects; a catalog has {APPLICATION_ID:#x})"
        )));
    }
    if version > latest_version() {
        return Err(foreign(format!(
            "schema version {version} is newer than this vhdkit knows ({}); use a newer vhdkit",
            latest_version()
        )));
    }
    Ok(())
}

/// Applies every migration the file lacks, each in its own write
/// transaction (two processes creating a catalog at once apply each once).
fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    loop {
        conn.execute_batch("BEGIN IMMEDIATE")
            .db(path, "begin a migration")?;
        let step = (|| -> Result<bool> {
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .db(path, "read the schema version")?;
            let Some(sql) = usize::try_from(version)
                .ok()
                .and_then(|v| MIGRATIONS.get(v))
            else {
                return Ok(false);
            };
            conn.execute_batch(sql).db(path, "migrate the schema")?;
            conn.pragma_update(None, "user_version", version + 1)
                .db(path, "write the schema version")?;
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .db(path, "write the application id")?;
            Ok(true)
        })();
        match step {
            Ok(more) => {
                conn.execute_batch("COMMIT")
                    .db(path, "commit a migration")?;
                if !more {
                    return Ok(());
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
}

/// `PRAGMA quick_check`: "ok", or the problems SQLite finds.
pub fn quick_check(conn: &Connection, path: &Path) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare("PRAGMA quick_check")
        .db(path, "check the database")?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .db(path, "check the database")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .db(path, "check the database")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_catalog_gets_the_latest_schema_and_our_id() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.db");
        let c = open(&p).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, latest_version());
        drop(c);
        // Opening again changes nothing.
        let c = open(&p).unwrap();
        let id: i64 = c
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, APPLICATION_ID);
    }

    #[test]
    fn foreign_files_are_refused_and_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let text = t.path().join("notes.txt");
        std::fs::write(&text, b"hello, not a database").unwrap();
        let e = open(&text).err().unwrap();
        assert!(matches!(e, CatalogError::NotACatalog { .. }), "{e}");
        assert!(e.to_string().contains("not an SQLite database"), "{e}");
        assert_eq!(std::fs::read(&text).unwrap(), b"hello, not a database");

        let other = t.path().join("other.db");
        let c = Connection::open(&other).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(c);
        let before = std::fs::read(&other).unwrap();
        let e = open(&other).err().unwrap();
        assert!(e.to_string().contains("another program"), "{e}");
        assert_eq!(std::fs::read(&other).unwrap(), before);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.db");
        drop(open(&p).unwrap());
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", latest_version() + 1)
            .unwrap();
        drop(c);
        let e = open(&p).err().unwrap();
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[test]
    fn a_damaged_database_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.db");
        drop(open(&p).unwrap());
        // Keep the header, overwrite the schema page with garbage.
        let mut bytes = std::fs::read(&p).unwrap();
        for b in bytes.iter_mut().skip(100) {
            *b = 0xA5;
        }
        std::fs::write(&p, &bytes).unwrap();
        let e = open(&p).err().unwrap();
        assert!(matches!(e, CatalogError::NotACatalog { .. }), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), bytes);
    }
}
