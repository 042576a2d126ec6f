//! The catalog: a local image registry with Glance's record model, kept in
//! one SQLite database (rusqlite, SQLite bundled) and a content-addressed
//! store folder beside it.
//!
//! An image is a record of properties plus immutable data, as in Glance v2:
//! [`records`] holds the record and its properties, [`status`] the states
//! and the transitions allowed between them, [`store`] the data (by SHA-512,
//! cloned or copied in, or only referenced), [`query`] the property look-ups
//! scripts use instead of hard-coded ids. [`add`], [`verify`] and [`export`]
//! are the operations that read image data; [`edit`] changes records only.
//!
//! Every change is one `BEGIN IMMEDIATE` transaction, so a reader never sees
//! a half-written row; the database runs in WAL mode with a busy timeout so
//! that several processes can add and list at once. This module does no
//! printing: the `catalog` command renders what it returns.

pub mod add;
pub mod edit;
pub mod export;
pub mod query;
pub mod records;
pub mod schema;
pub mod status;
pub mod store;
pub mod verify;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub use records::{Entry, Image};
pub use status::ImageStatus;
pub use store::Store;

/// Result with the catalog's error.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// The environment variable naming the catalog database.
pub const CATALOG_ENV: &str = "VHDKIT_CATALOG";

/// What can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Reading or writing an image or a store file.
    #[error(transparent)]
    Vhd(#[from] crate::Error),
    /// An SQLite call failed.
    #[error("{}: {op}: {source}", path.display())]
    Database {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The file given as the catalog is not one (another program's data, a
    /// damaged database, a newer schema). It is never written.
    #[error("{}: not a vhdkit catalog: {detail}; the file is left untouched", path.display())]
    NotACatalog { path: PathBuf, detail: String },
    /// A rule refuses the operation (Glance's, or the catalog's own).
    #[error("refused: {message}")]
    Refused { code: &'static str, message: String },
    /// No image has this id or name.
    #[error("no image {0:?} in the catalog")]
    NotFound(String),
}

impl CatalogError {
    pub(crate) fn refused(code: &'static str, message: impl Into<String>) -> CatalogError {
        CatalogError::Refused {
            code,
            message: message.into(),
        }
    }
}

/// The library's error for each catalog error: a database failure is
/// I/O (exit 2), a file that is not a catalog its own kind (exit 2), a
/// refusal and an unknown image refusals (exit 1, with a code).
impl From<CatalogError> for crate::Error {
    fn from(e: CatalogError) -> crate::Error {
        match e {
            CatalogError::Vhd(e) => e,
            CatalogError::Database { path, op, source } => crate::Error::Io {
                path,
                op: format!("catalog database: {op}"),
                source: std::io::Error::other(source),
            },
            CatalogError::NotACatalog { path, detail } => crate::Error::NotCatalog { path, detail },
            CatalogError::Refused { code, message } => {
                crate::Error::refused(Path::new(""), code, message)
            }
            e @ CatalogError::NotFound(_) => {
                crate::Error::refused(Path::new(""), "NOT_FOUND", e.to_string())
            }
        }
    }
}

/// Adds the catalog's path and the operation to an SQLite error.
pub(crate) trait DbContext<T> {
    fn db(self, path: &Path, op: &'static str) -> Result<T>;
}

impl<T> DbContext<T> for rusqlite::Result<T> {
    fn db(self, path: &Path, op: &'static str) -> Result<T> {
        self.map_err(|source| CatalogError::Database {
            path: path.to_path_buf(),
            op,
            source,
        })
    }
}

/// An open catalog: the database and its store.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
    store: Store,
}

impl Catalog {
    /// Where the catalog is: `flag` (`--catalog`), else `$VHDKIT_CATALOG`,
    /// else `$XDG_DATA_HOME/vhdkit/catalog.db` (`~/.local/share` when unset).
    pub fn resolve_path(flag: Option<&Path>) -> Result<PathBuf> {
        if let Some(p) = flag {
            return Ok(p.to_path_buf());
        }
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(p) = env(CATALOG_ENV) {
            return Ok(PathBuf::from(p));
        }
        let data = match (env("XDG_DATA_HOME"), env("HOME")) {
            (Some(x), _) => PathBuf::from(x),
            (None, Some(h)) => PathBuf::from(h).join(".local/share"),
            (None, None) => {
                return Err(crate::Error::Usage(format!(
                    "no catalog path: give --catalog, or set {CATALOG_ENV}, XDG_DATA_HOME or HOME"
                ))
                .into())
            }
        };
        Ok(data.join("vhdkit").join("catalog.db"))
    }

    /// Opens (creating when absent) the catalog at `path` and its store
    /// folder beside it. A file that is not a vhdkit catalog is an error and
    /// stays as it is.
    pub fn open(path: &Path) -> Result<Catalog> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| crate::Error::io(dir, "create the catalog folder", e))?;
        }
        let conn = schema::open(path)?;
        let store = Store::open(&Store::beside(path))?;
        Ok(Catalog {
            conn,
            path: path.to_path_buf(),
            store,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The SQLite connection (read-only use: benches, tests).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The images `filter` selects, with their properties.
    pub fn list(&self, filter: &query::Filter) -> Result<Vec<Entry>> {
        query::list(&self.conn, &self.path, &self.store, filter)
    }

    /// Ids of the active images with every property, newest first.
    pub fn find(&self, properties: &[(String, String)], latest: bool) -> Result<Vec<String>> {
        query::find(&self.conn, &self.path, properties, latest)
    }

    /// One image by id, or by name when exactly one image has it.
    pub fn get(&self, id_or_name: &str) -> Result<Entry> {
        records::load(&self.conn, &self.path, &self.store, id_or_name)
    }
}

/// Starts a write transaction that takes the database's write lock at once
/// (no upgrade from a read lock, which could fail under load).
pub(crate) fn write_tx<'c>(
    conn: &'c mut Connection,
    path: &Path,
) -> Result<rusqlite::Transaction<'c>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .db(path, "begin a write")
}

/// The current time as Glance writes it: `2026-11-29T21:10:58Z`.
pub fn now_rfc3339() -> String {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The VHD epoch's seconds fit in 32 bits until 2136.
    let since_2000 = i64::try_from(unix).unwrap_or(0) - crate::format::VHD_EPOCH_UNIX;
    crate::format::time::rfc3339(u32::try_from(since_2000).unwrap_or(0))
}
