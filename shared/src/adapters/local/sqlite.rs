//! The embedded database of the local stack (SQLite, bundled): traces with
//! expiry, user history and rollout state in one file.

use crate::ports::{RolloutStore, StoreError, TraceStore, UserHistory};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// One SQLite file implementing the local stores.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn err(store: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError {
        store,
        reason: e.to_string(),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(err("sqlite"))?;
        Self::init(conn)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(err("sqlite"))?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS traces (request_id TEXT PRIMARY KEY, body TEXT NOT NULL, expires_at INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS traces_expiry ON traces(expires_at);
             CREATE TABLE IF NOT EXISTS user_history (user_id INTEGER NOT NULL, movie_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
                                                      PRIMARY KEY (user_id, movie_id));
             CREATE TABLE IF NOT EXISTS rollout (id INTEGER PRIMARY KEY CHECK (id = 1), version TEXT NOT NULL,
                                                 updated_by TEXT NOT NULL, updated_at INTEGER NOT NULL, counter INTEGER NOT NULL);",
        )
        .map_err(err("sqlite"))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes expired traces; returns how many.
    pub fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        self.conn()
            .execute("DELETE FROM traces WHERE expires_at <= ?1", params![now])
            .map_err(err("traces"))
    }
}

impl TraceStore for SqliteStore {
    fn put(
        &self,
        request_id: &str,
        trace: &serde_json::Value,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO traces (request_id, body, expires_at) VALUES (?1, ?2, ?3)",
                params![request_id, trace.to_string(), expires_at],
            )
            .map(|_| ())
            .map_err(err("traces"))
    }

    fn get(&self, request_id: &str, now: i64) -> Result<Option<serde_json::Value>, StoreError> {
        let body: Option<String> = self
            .conn()
            .query_row(
                "SELECT body FROM traces WHERE request_id = ?1 AND expires_at > ?2",
                params![request_id, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(err("traces"))?;
        body.map(|b| {
            serde_json::from_str(&b).map_err(|e| StoreError {
                store: "traces",
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.conn()
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(err("sqlite"))
    }
}

impl UserHistory for SqliteStore {
    fn seen(&self, user_id: u64) -> Result<Vec<u64>, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT movie_id FROM user_history WHERE user_id = ?1")
            .map_err(err("user_history"))?;
        let rows = st
            .query_map(params![user_id as i64], |r| r.get::<_, i64>(0))
            .map_err(err("user_history"))?;
        rows.map(|r| r.map(|v| v as u64).map_err(err("user_history")))
            .collect()
    }

    fn append(&self, user_id: u64, movie_ids: &[u64], ts_ms: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(err("user_history"))?;
        for m in movie_ids {
            tx.execute(
                "INSERT INTO user_history (user_id, movie_id, ts_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(user_id, movie_id) DO UPDATE SET ts_ms = MAX(ts_ms, excluded.ts_ms)",
                params![user_id as i64, *m as i64, ts_ms],
            )
            .map_err(err("user_history"))?;
        }
        tx.commit().map_err(err("user_history"))
    }
}

impl RolloutStore for SqliteStore {
    fn served_version(&self) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row("SELECT version FROM rollout WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(err("rollout"))
    }

    fn set_served_version(&self, version: &str, updated_by: &str) -> Result<(), StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        self.conn()
            .execute(
                "INSERT INTO rollout (id, version, updated_by, updated_at, counter) VALUES (1, ?1, ?2, ?3, 1)
                 ON CONFLICT(id) DO UPDATE SET version = excluded.version, updated_by = excluded.updated_by,
                 updated_at = excluded.updated_at, counter = counter + 1",
                params![version, updated_by, now],
            )
            .map(|_| ())
            .map_err(err("rollout"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_round_trip_and_expiry() {
        let s = SqliteStore::in_memory().unwrap();
        let t = serde_json::json!({"request_id": "r1", "items": [1, 2]});
        s.put("r1", &t, 1_000).unwrap();
        assert_eq!(s.get("r1", 999).unwrap(), Some(t));
        assert_eq!(
            s.get("r1", 1_000).unwrap(),
            None,
            "expired at its expiry time"
        );
        assert_eq!(s.get("nope", 0).unwrap(), None);
        assert_eq!(s.purge_expired(1_000).unwrap(), 1);
    }

    #[test]
    fn history_and_rollout() {
        let s = SqliteStore::in_memory().unwrap();
        s.append(7, &[3, 4, 3], 10).unwrap();
        let mut seen = s.seen(7).unwrap();
        seen.sort();
        assert_eq!(seen, vec![3, 4]);
        assert!(s.seen(8).unwrap().is_empty());
        assert_eq!(s.served_version().unwrap(), None);
        s.set_served_version("v1", "test").unwrap();
        s.set_served_version("v2", "test").unwrap();
        assert_eq!(s.served_version().unwrap().as_deref(), Some("v2"));
    }
}
