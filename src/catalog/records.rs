//! The image record (Glance v2's fields, every custom property) and what the
//! catalog keeps beside it (where the data is, how it was checked), with the
//! SQL that writes and reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::status::ImageStatus;
use super::store::Store;
use super::{CatalogError, DbContext, Result};

/// An image as Glance v2 shows it: its fields, then its properties at the
/// top level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub status: ImageStatus,
    pub owner: Option<String>,
    pub visibility: String,
    pub protected: bool,
    pub os_hidden: bool,
    pub disk_format: String,
    pub container_format: String,
    /// GiB.
    pub min_disk: u64,
    /// MiB.
    pub min_ram: u64,
    /// MD5 hex of the data.
    pub checksum: Option<String>,
    pub os_hash_algo: String,
    /// SHA-512 hex of the data.
    pub os_hash_value: Option<String>,
    /// Bytes of data.
    pub size: Option<u64>,
    /// As Glance's format inspector reads it.
    pub virtual_size: Option<u64>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(flatten)]
    pub properties: BTreeMap<String, String>,
}

/// What the catalog keeps beside the record.
#[derive(Debug, Clone, Serialize)]
pub struct Stored {
    /// The data file: in the store, or the referenced file.
    pub path: Option<PathBuf>,
    /// Only the path is kept (`--reference`); it is verified when used.
    pub reference: bool,
    /// The file the image was added from.
    pub source_path: PathBuf,
    /// raw, fixed, dynamic, differencing.
    pub disk_type: String,
    /// Added with `--force` over preflight FAILs.
    pub forced: bool,
    /// The preflight lines for Glance found when the image was added.
    pub preflight: serde_json::Value,
}

/// One catalogued image: the record and where its data is.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub image: Image,
    pub store: Stored,
    #[serde(skip)]
    pub seq: i64,
    /// `stored_path` as written in the database (relative for the store).
    #[serde(skip)]
    pub stored_path: Option<String>,
}

/// The columns [`from_row`] reads, in order.
pub const COLUMNS: &str = "seq, id, name, status, owner, visibility, protected, os_hidden, \
     disk_format, container_format, min_disk, min_ram, checksum, os_hash_algo, os_hash_value, \
     size, virtual_size, created_at, updated_at, source_path, stored_path, reference, \
     disk_type, forced, structure";

fn u64_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = row.get(i)?;
    Ok(v.map(|n| u64::try_from(n).unwrap_or(0)))
}

/// One row of `SELECT COLUMNS FROM images` (properties not loaded).
pub fn from_row(row: &Row<'_>, store: &Store) -> rusqlite::Result<Entry> {
    let status: String = row.get(3)?;
    let status = ImageStatus::parse(&status).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
    })?;
    let stored_path: Option<String> = row.get(20)?;
    let reference: bool = row.get(21)?;
    let structure: String = row.get(24)?;
    Ok(Entry {
        seq: row.get(0)?,
        image: Image {
            id: row.get(1)?,
            name: row.get(2)?,
            status,
            owner: row.get(4)?,
            visibility: row.get(5)?,
            protected: row.get(6)?,
            os_hidden: row.get(7)?,
            disk_format: row.get(8)?,
            container_format: row.get(9)?,
            min_disk: u64_col(row, 10)?.unwrap_or(0),
            min_ram: u64_col(row, 11)?.unwrap_or(0),
            checksum: row.get(12)?,
            os_hash_algo: row.get(13)?,
            os_hash_value: row.get(14)?,
            size: u64_col(row, 15)?,
            virtual_size: u64_col(row, 16)?,
            created_at: row.get(17)?,
            updated_at: row.get(18)?,
            properties: BTreeMap::new(),
        },
        store: Stored {
            path: stored_path.as_deref().map(|p| store.resolve(p, reference)),
            reference,
            source_path: PathBuf::from(row.get::<_, String>(19)?),
            disk_type: row.get(22)?,
            forced: row.get(23)?,
            preflight: serde_json::from_str(&structure).unwrap_or(serde_json::Value::Null),
        },
        stored_path,
    })
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Writes a new record and its properties; returns its `seq`.
pub fn insert(conn: &Connection, db: &Path, e: &Entry) -> Result<i64> {
    let i = &e.image;
    conn.execute(
        "INSERT INTO images (id, name, status, owner, visibility, protected, os_hidden, \
         disk_format, container_format, min_disk, min_ram, checksum, os_hash_algo, \
         os_hash_value, size, virtual_size, created_at, updated_at, source_path, stored_path, \
         reference, disk_type, forced, structure) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
         ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
        params![
            i.id,
            i.name,
            i.status.name(),
            i.owner,
            i.visibility,
            i.protected,
            i.os_hidden,
            i.disk_format,
            i.container_format,
            i64_of(i.min_disk),
            i64_of(i.min_ram),
            i.checksum,
            i.os_hash_algo,
            i.os_hash_value,
            i.size.map(i64_of),
            i.virtual_size.map(i64_of),
            i.created_at,
            i.updated_at,
            e.store.source_path.to_string_lossy(),
            e.stored_path,
            e.store.reference,
            e.store.disk_type,
            e.store.forced,
            e.store.preflight.to_string(),
        ],
    )
    .db(db, "insert an image")?;
    let seq = conn.last_insert_rowid();
    write_properties(conn, db, seq, &i.properties)?;
    Ok(seq)
}

/// Sets (inserting or replacing) properties of image `seq`.
pub fn write_properties(
    conn: &Connection,
    db: &Path,
    seq: i64,
    properties: &BTreeMap<String, String>,
) -> Result<()> {
    let mut stmt = conn
        .prepare("INSERT OR REPLACE INTO properties (image_seq, key, value) VALUES (?1, ?2, ?3)")
        .db(db, "write properties")?;
    for (k, v) in properties {
        stmt.execute(params![seq, k, v])
            .db(db, "write a property")?;
    }
    Ok(())
}

/// Every property of image `seq`.
pub fn properties(conn: &Connection, db: &Path, seq: i64) -> Result<BTreeMap<String, String>> {
    let mut stmt = conn
        .prepare("SELECT key, value FROM properties WHERE image_seq = ?1")
        .db(db, "read properties")?;
    let rows = stmt
        .query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .db(db, "read properties")?;
    rows.collect::<rusqlite::Result<BTreeMap<_, _>>>()
        .db(db, "read properties")
}

/// Fills in the properties of `entries` with one query.
pub fn load_properties(conn: &Connection, db: &Path, entries: &mut [Entry]) -> Result<()> {
    let index: std::collections::HashMap<i64, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.seq, i))
        .collect();
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let list = serde_json::to_string(&seqs).unwrap_or_else(|_| "[]".into());
    let mut stmt = conn
        .prepare(
            "SELECT image_seq, key, value FROM properties \
             WHERE image_seq IN (SELECT value FROM json_each(?1))",
        )
        .db(db, "read properties")?;
    let mut rows = stmt.query([list]).db(db, "read properties")?;
    while let Some(row) = rows.next().db(db, "read properties")? {
        let seq: i64 = row.get(0).db(db, "read properties")?;
        if let Some(e) = index.get(&seq).and_then(|&i| entries.get_mut(i)) {
            e.image.properties.insert(
                row.get(1).db(db, "read properties")?,
                row.get(2).db(db, "read properties")?,
            );
        }
    }
    Ok(())
}

/// The image whose id is `key`, else the one image named `key`.
pub fn load(conn: &Connection, db: &Path, store: &Store, key: &str) -> Result<Entry> {
    let by_id = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM images WHERE id = ?1"),
            [key],
            |r| from_row(r, store),
        )
        .optional()
        .db(db, "read an image")?;
    let mut entry = match by_id {
        Some(e) => e,
        None => {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM images WHERE name = ?1 ORDER BY seq"
                ))
                .db(db, "read an image")?;
            let mut found: Vec<Entry> = stmt
                .query_map([key], |r| from_row(r, store))
                .db(db, "read an image")?
                .collect::<rusqlite::Result<_>>()
                .db(db, "read an image")?;
            match found.len() {
                0 => return Err(CatalogError::NotFound(key.to_string())),
                1 => found.remove(0),
                n => {
                    let ids: Vec<&str> = found.iter().map(|e| e.image.id.as_str()).collect();
                    return Err(CatalogError::refused(
                        "AMBIGUOUS_NAME",
                        format!(
                            "{n} images are named {key:?} ({}): give an id",
                            ids.join(", ")
                        ),
                    ));
                }
            }
        }
    };
    entry.image.properties = properties(conn, db, entry.seq)?;
    Ok(entry)
}

/// Sets the status (and `updated_at`) of image `seq`; false when the row is
/// gone.
pub fn set_status(
    conn: &Connection,
    db: &Path,
    seq: i64,
    status: ImageStatus,
    now: &str,
) -> Result<bool> {
    let n = conn
        .execute(
            "UPDATE images SET status = ?1, updated_at = ?2 WHERE seq = ?3",
            params![status.name(), now, seq],
        )
        .db(db, "update the status")?;
    Ok(n == 1)
}

/// How many records keep their data at `stored_path`.
pub fn references(conn: &Connection, db: &Path, stored_path: &str) -> Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM images WHERE stored_path = ?1 AND reference = 0",
        [stored_path],
        |r| r.get(0),
    )
    .db(db, "count references")
}
