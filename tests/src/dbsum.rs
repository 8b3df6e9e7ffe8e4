//! A fingerprint of everything a server has stored, to prove that a refused request changed
//! nothing. The server's SQLite file is opened read-only (it may be running: WAL lets a reader
//! see the last committed state without disturbing the writer), every table named in
//! `sqlite_master` is read in rowid order (or primary-key order for tables without rowids), and
//! each table's values — with their SQLite types — are hashed with SHA-256. Two fingerprints are
//! equal exactly when every table holds the same rows in the same order.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

/// A column left out of a fingerprint, with the reason written down where it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Excluded<'a> {
    pub table: &'a str,
    pub column: &'a str,
}

/// The fingerprint of one database: per table, its row count and the SHA-256 of its contents.
#[derive(Clone, PartialEq, Eq)]
pub struct DbSum {
    pub tables: BTreeMap<String, TableSum>,
}

/// One table's part of a [`DbSum`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TableSum {
    pub rows: u64,
    pub sha256: [u8; 32],
}

impl fmt::Debug for TableSum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows, {}", self.rows, hex::encode(&self.sha256[..8]))
    }
}

impl fmt::Debug for DbSum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.tables.iter()).finish()
    }
}

/// Why a fingerprint could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum DbSumError {
    #[error("cannot read {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("cannot open {path} with its data folder's key: {source}")]
    Key {
        path: String,
        source: phakhi_server::db::DbError,
    },
}

impl DbSum {
    /// The fingerprint of the server data folder `data` (its `phakhi.sqlite3`), every column of
    /// every table.
    pub fn of_data(data: &Path) -> DbSum {
        Self::of_file(&data.join(phakhi_server::db::DB_FILE), &[]).expect("fingerprint")
    }

    /// The fingerprint of the SQLite file at `path`, leaving out the `excluded` columns.
    pub fn of_file(path: &Path, excluded: &[Excluded<'_>]) -> Result<DbSum, DbSumError> {
        let wrap = |source| DbSumError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(wrap)?;
        // A server's database is encrypted at rest: it opens with its data folder's key. (A
        // phone store is plain SQLite with sealed rows.)
        if let Some(folder) = path.parent()
            && !phakhi_server::db::atrest::is_plaintext(path).unwrap_or(true)
        {
            let key_error = |source| DbSumError::Key {
                path: path.display().to_string(),
                source,
            };
            phakhi_server::db::atrest::key_for(folder, path, false)
                .and_then(|key| key.apply(&conn))
                .map_err(key_error)?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(wrap)?;
        // One read transaction: every table is read at the same committed state.
        conn.execute_batch("BEGIN").map_err(wrap)?;
        let names: Vec<(String, String)> = {
            let mut stmt = conn
                .prepare(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )
                .map_err(wrap)?;
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(wrap)?
                .collect::<Result<_, _>>()
                .map_err(wrap)?
        };
        let mut tables = BTreeMap::new();
        for (table, sql) in names {
            let order = if sql.to_ascii_uppercase().contains("WITHOUT ROWID") {
                primary_key_order(&conn, &table).map_err(wrap)?
            } else {
                "rowid".to_string()
            };
            let sum = table_sum(&conn, &table, &order, excluded).map_err(wrap)?;
            tables.insert(table, sum);
        }
        conn.execute_batch("COMMIT").map_err(wrap)?;
        Ok(DbSum { tables })
    }

    /// Names of the tables whose contents differ between `self` and `other` (or exist in one
    /// only).
    pub fn changed_tables(&self, other: &DbSum) -> Vec<String> {
        let mut names: Vec<&String> = self.tables.keys().chain(other.tables.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter(|name| self.tables.get(*name) != other.tables.get(*name))
            .cloned()
            .collect()
    }

    /// Rows in `table` (0 when it does not exist).
    pub fn rows(&self, table: &str) -> u64 {
        self.tables.get(table).map_or(0, |sum| sum.rows)
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn primary_key_order(conn: &Connection, table: &str) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote(table)))?;
    let mut keys: Vec<(i64, String)> = stmt
        .query_map([], |row| {
            Ok((row.get::<_, i64>(5)?, row.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|(pk, _)| *pk > 0)
        .collect();
    keys.sort();
    Ok(keys
        .into_iter()
        .map(|(_, name)| quote(&name))
        .collect::<Vec<_>>()
        .join(", "))
}

fn table_sum(
    conn: &Connection,
    table: &str,
    order: &str,
    excluded: &[Excluded<'_>],
) -> rusqlite::Result<TableSum> {
    let columns: Vec<String> = {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote(table)))?;
        stmt.query_map([], |row| row.get::<_, String>(1))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|column| {
                !excluded
                    .iter()
                    .any(|e| e.table == table && e.column == column)
            })
            .collect()
    };
    let mut hasher = Sha256::new();
    hasher.update((table.len() as u64).to_be_bytes());
    hasher.update(table.as_bytes());
    for column in &columns {
        hasher.update((column.len() as u64).to_be_bytes());
        hasher.update(column.as_bytes());
    }
    let mut rows = 0u64;
    if columns.is_empty() {
        let count: i64 =
            conn.query_row(&format!("SELECT COUNT(*) FROM {}", quote(table)), [], |r| {
                r.get(0)
            })?;
        rows = u64::try_from(count).unwrap_or(0);
        hasher.update(rows.to_be_bytes());
    } else {
        let select = columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = conn.prepare(&format!(
            "SELECT {select} FROM {} ORDER BY {order}",
            quote(table)
        ))?;
        let mut result = stmt.query([])?;
        while let Some(row) = result.next()? {
            rows += 1;
            hasher.update(b"R");
            for index in 0..columns.len() {
                hash_value(&mut hasher, row.get_ref(index)?);
            }
        }
    }
    Ok(TableSum {
        rows,
        sha256: hasher.finalize().into(),
    })
}

/// Each value with its type tag and length, so that no two different rows hash alike.
fn hash_value(hasher: &mut Sha256, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => hasher.update([0u8]),
        ValueRef::Integer(v) => {
            hasher.update([1u8]);
            hasher.update(v.to_be_bytes());
        }
        ValueRef::Real(v) => {
            hasher.update([2u8]);
            hasher.update(v.to_bits().to_be_bytes());
        }
        ValueRef::Text(bytes) => {
            hasher.update([3u8]);
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
        ValueRef::Blob(bytes) => {
            hasher.update([4u8]);
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("sample.sqlite3");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE a (id INTEGER PRIMARY KEY, note TEXT, seen INTEGER);
             CREATE TABLE b (k BLOB PRIMARY KEY, v TEXT) WITHOUT ROWID;
             INSERT INTO a (note, seen) VALUES ('ภาคี', 1), (NULL, 2);
             INSERT INTO b VALUES (x'01', 'หนึ่ง');",
        )
        .expect("fill");
        path
    }

    #[test]
    fn any_changed_value_shows_and_excluded_columns_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = sample(dir.path());
        let before = DbSum::of_file(&path, &[]).expect("sum");
        assert_eq!(before.rows("a"), 2);
        assert_eq!(before.rows("b"), 1);
        assert_eq!(DbSum::of_file(&path, &[]).expect("sum"), before);

        let conn = Connection::open(&path).expect("open");
        conn.execute("UPDATE a SET seen = 3 WHERE id = 1", [])
            .expect("update");
        let after = DbSum::of_file(&path, &[]).expect("sum");
        assert_eq!(after.changed_tables(&before), vec!["a".to_string()]);
        let skip = [Excluded {
            table: "a",
            column: "seen",
        }];
        assert_eq!(
            DbSum::of_file(&path, &skip).expect("sum"),
            DbSum::of_file(&path, &skip).expect("sum")
        );
        conn.execute("UPDATE b SET v = 'สอง'", []).expect("update");
        let last = DbSum::of_file(&path, &[]).expect("sum");
        assert_eq!(last.changed_tables(&after), vec!["b".to_string()]);
        // NULL and an empty text are different values.
        conn.execute("UPDATE a SET note = '' WHERE note IS NULL", [])
            .expect("update");
        assert_eq!(
            DbSum::of_file(&path, &[])
                .expect("sum")
                .changed_tables(&last),
            vec!["a".to_string()]
        );
    }
}
