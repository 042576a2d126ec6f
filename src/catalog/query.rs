//! Finding images by property, the way scripts pick "the newest ubuntu
//! 24.04 image with auto_disk_config=True" without a hard-coded id. Each
//! property filter is a look-up in the `(key, value, image)` index; several
//! are intersected before any image row is read.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::Connection;
use serde::Serialize;

use super::records::{self, Entry, COLUMNS};
use super::status::ImageStatus;
use super::store::Store;
use super::{DbContext, Result};

/// The fields `--sort` accepts.
pub const SORT_KEYS: [&str; 10] = [
    "created_at",
    "updated_at",
    "name",
    "status",
    "size",
    "virtual_size",
    "min_disk",
    "min_ram",
    "id",
    "owner",
];

/// `KEY[:asc|desc]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sort {
    pub key: &'static str,
    pub descending: bool,
}

impl Default for Sort {
    /// Glance's default order: newest first.
    fn default() -> Self {
        Sort {
            key: "created_at",
            descending: true,
        }
    }
}

impl Sort {
    pub fn parse(text: &str) -> std::result::Result<Sort, String> {
        let (key, dir) = text.split_once(':').unwrap_or((text, "asc"));
        let key = SORT_KEYS
            .into_iter()
            .find(|k| *k == key)
            .ok_or_else(|| format!("--sort {key:?}: expected one of {}", SORT_KEYS.join(", ")))?;
        let descending = match dir {
            "asc" => false,
            "desc" => true,
            other => return Err(format!("--sort direction {other:?}: expected asc or desc")),
        };
        Ok(Sort { key, descending })
    }
}

/// What `list` and `find` select.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Every one must match (key = value).
    pub properties: Vec<(String, String)>,
    pub name: Option<String>,
    pub status: Option<ImageStatus>,
    pub owner: Option<String>,
    pub sort: Sort,
    pub limit: Option<u64>,
}

/// The column `ORDER BY` uses for a sort key. Records are numbered in the
/// order they are created (`seq`), so "newest" follows the primary key
/// instead of a sort on text.
fn order_column(key: &str) -> &str {
    match key {
        "created_at" => "seq",
        other => other,
    }
}

/// The `seq`s of the images having every property in `properties`,
/// ascending. Each filter is one range of the `(key, value, image_seq)`
/// index, already in `seq` order; the ranges are intersected here (a merge
/// costs a few nanoseconds per entry, where SQLite's `INTERSECT` or a probe
/// per entry costs microseconds).
fn matching(conn: &Connection, db: &Path, properties: &[(String, String)]) -> Result<Vec<i64>> {
    let mut stmt = conn
        .prepare(
            "SELECT image_seq FROM properties WHERE key = ?1 AND value = ?2 ORDER BY image_seq",
        )
        .db(db, "find by property")?;
    let mut ranges = Vec::with_capacity(properties.len());
    for (k, v) in properties {
        let seqs = stmt
            .query_map([k, v], |r| r.get::<_, i64>(0))
            .db(db, "find by property")?
            .collect::<rusqlite::Result<Vec<i64>>>()
            .db(db, "find by property")?;
        ranges.push(seqs);
    }
    ranges.sort_by_key(Vec::len);
    let mut ranges = ranges.into_iter();
    let mut out = ranges.next().unwrap_or_default();
    for other in ranges {
        out = intersect(&out, &other);
    }
    Ok(out)
}

/// The values in both ascending lists.
fn intersect(a: &[i64], b: &[i64]) -> Vec<i64> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(*x);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The SQL and its parameters for `filter`, selecting `what`; `seqs` (a
/// JSON array) are the images the property filters left.
fn build(what: &str, filter: &Filter, seqs: Option<String>) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {what} FROM images");
    let mut params: Vec<Value> = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    if let Some(list) = seqs {
        clauses.push("seq IN (SELECT value FROM json_each(?))".into());
        params.push(Value::Text(list));
    }
    for (column, value) in [
        ("name", filter.name.clone()),
        ("status", filter.status.map(|s| s.name().to_string())),
        ("owner", filter.owner.clone()),
    ] {
        if let Some(v) = value {
            clauses.push(format!("{column} = ?"));
            params.push(Value::Text(v));
        }
    }
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    let dir = if filter.sort.descending {
        "DESC"
    } else {
        "ASC"
    };
    // The sort key comes from SORT_KEYS, never from the user's text.
    match order_column(filter.sort.key) {
        "seq" => sql.push_str(&format!(" ORDER BY seq {dir}")),
        column => sql.push_str(&format!(" ORDER BY {column} {dir}, seq {dir}")),
    }
    if let Some(n) = filter.limit {
        sql.push_str(" LIMIT ?");
        params.push(Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
    }
    (sql, params)
}

/// Runs `filter` selecting `what`, mapping each row with `map`.
fn select<T>(
    conn: &Connection,
    db: &Path,
    what: &str,
    filter: &Filter,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let seqs = if filter.properties.is_empty() {
        None
    } else {
        let seqs = matching(conn, db, &filter.properties)?;
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        serde_json::to_string(&seqs).ok()
    };
    let (sql, params) = build(what, filter, seqs);
    let mut stmt = conn.prepare(&sql).db(db, "list images")?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), map)
        .db(db, "list images")?
        .collect::<rusqlite::Result<Vec<T>>>()
        .db(db, "list images")?;
    Ok(rows)
}

/// The images `filter` selects, in its order, with their properties.
pub fn list(conn: &Connection, db: &Path, store: &Store, filter: &Filter) -> Result<Vec<Entry>> {
    let mut entries = select(conn, db, COLUMNS, filter, |r| records::from_row(r, store))?;
    records::load_properties(conn, db, &mut entries)?;
    Ok(entries)
}

/// The ids of the active images with every property in `properties`,
/// newest first (only the newest with `latest`).
pub fn find(
    conn: &Connection,
    db: &Path,
    properties: &[(String, String)],
    latest: bool,
) -> Result<Vec<String>> {
    let filter = Filter {
        properties: properties.to_vec(),
        status: Some(ImageStatus::Active),
        limit: latest.then_some(1),
        ..Filter::default()
    };
    select(conn, db, "id", &filter, |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_parse() {
        assert_eq!(
            Sort::parse("size:desc").unwrap(),
            Sort {
                key: "size",
                descending: true
            }
        );
        assert!(!Sort::parse("name").unwrap().descending);
        assert!(Sort::parse("checksum").is_err());
        assert!(Sort::parse("name:up").is_err());
    }

    #[test]
    fn ranges_intersect() {
        assert_eq!(intersect(&[1, 3, 5, 7, 9], &[2, 3, 4, 9, 10]), [3, 9]);
        assert!(intersect(&[], &[1]).is_empty());
    }

    #[test]
    fn newest_first_follows_the_primary_key() {
        let f = Filter {
            status: Some(ImageStatus::Active),
            limit: Some(1),
            ..Default::default()
        };
        let (sql, params) = build("id", &f, Some("[1,2]".into()));
        assert!(sql.contains("json_each"), "{sql}");
        assert!(sql.ends_with("ORDER BY seq DESC LIMIT ?"), "{sql}");
        assert_eq!(params.len(), 3);
    }
}
