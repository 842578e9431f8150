//! The embedded database of the local stack (SQLite, bundled): traces with
//! expiry, user history, rollout state and trending counts ([`super::trending`])
//! in one file.
//!
//! One writer connection and, for a file, a few read-only ones: in WAL mode
//! readers never wait behind a write (nor a checkpoint), so a request's
//! history read does not queue behind trace or ingest writes. Every read
//! sees what was committed before it started (events posted a moment ago).

use crate::ports::{
    IngestState, RateWindow, RolloutChange, RolloutSpec, RolloutState, RolloutStore, StoreError,
    TraceStore, UserHistory,
};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Read-only connections of a file database.
const READERS: usize = 4;
/// How long a statement waits for a lock another process holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One SQLite file implementing the local stores. Calls run on tokio's
/// blocking pool so a slow disk never stalls the request workers.
#[derive(Clone)]
pub struct SqliteStore {
    /// The one writer (and the reader of an in-memory database).
    conn: Arc<Mutex<Connection>>,
    /// Read-only connections (empty in memory: reads use the writer).
    readers: Arc<[Mutex<Connection>]>,
    next_reader: Arc<AtomicUsize>,
}

fn err(store: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::unavailable(store, e)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(err("sqlite"))?;
        let mut store = Self::init(conn)?;
        // Opened after the writer switched the file to WAL (readers need its -shm).
        let readers = (0..READERS)
            .map(|_| {
                let c = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(BUSY_TIMEOUT)?;
                Ok(Mutex::new(c))
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(err("sqlite"))?;
        store.readers = readers.into();
        Ok(store)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(err("sqlite"))?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err("sqlite"))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS traces (request_id TEXT PRIMARY KEY, body TEXT NOT NULL, expires_at INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS traces_expiry ON traces(expires_at);
             CREATE TABLE IF NOT EXISTS user_history (user_id INTEGER NOT NULL, movie_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
                                                      PRIMARY KEY (user_id, movie_id));
             CREATE TABLE IF NOT EXISTS rollout (id INTEGER PRIMARY KEY CHECK (id = 1), version TEXT NOT NULL,
                                                 updated_by TEXT NOT NULL, updated_at INTEGER NOT NULL, counter INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS ingest_keys (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS rate_windows (user_id INTEGER PRIMARY KEY, entries TEXT NOT NULL, revision INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS trending (hour INTEGER NOT NULL, movie_id INTEGER NOT NULL, n INTEGER NOT NULL,
                                                  expires_at INTEGER NOT NULL, PRIMARY KEY (hour, movie_id));",
        )
        .map_err(err("sqlite"))?;
        // Databases from before the audit window read lack the time column.
        let has_ts: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('traces') WHERE name = 'ts_ms'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(err("sqlite"))?
            > 0;
        if !has_ts {
            conn.execute_batch("ALTER TABLE traces ADD COLUMN ts_ms INTEGER NOT NULL DEFAULT 0;")
                .map_err(err("sqlite"))?;
        }
        conn.execute_batch("CREATE INDEX IF NOT EXISTS traces_time ON traces(ts_ms);")
            .map_err(err("sqlite"))?;
        // Databases from before rollout strategies lack their columns.
        for (col, decl) in [
            ("strategy", "TEXT NOT NULL DEFAULT 'fixed'"),
            ("candidate", "TEXT"),
            ("percentage", "REAL NOT NULL DEFAULT 0"),
            ("experiment_id", "TEXT"),
            ("salt", "TEXT"),
            ("primary_policy", "TEXT"),
            ("candidate_policy", "TEXT"),
        ] {
            let has: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info('rollout') WHERE name = ?1",
                    [col],
                    |r| r.get(0),
                )
                .map_err(err("sqlite"))?;
            if has == 0 {
                conn.execute_batch(&format!("ALTER TABLE rollout ADD COLUMN {col} {decl};"))
                    .map_err(err("sqlite"))?;
            }
        }
        // Databases from before the arrival-time limit lack its column.
        let has_arrivals: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('rate_windows') WHERE name = 'arrivals'",
                [],
                |r| r.get(0),
            )
            .map_err(err("sqlite"))?;
        if has_arrivals == 0 {
            conn.execute_batch(
                "ALTER TABLE rate_windows ADD COLUMN arrivals TEXT NOT NULL DEFAULT '[]';",
            )
            .map_err(err("sqlite"))?;
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS rollout_changes (revision INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        )
        .map_err(err("sqlite"))?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new([]),
            next_reader: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn lock(conn: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
        conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the writer connection on the blocking pool.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        store: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut Self::lock(&conn)))
            .await
            .map_err(|e| StoreError::unavailable(store, e))?
            .map_err(err(store))
    }

    /// Runs the read `f` on a free read-only connection (the writer in
    /// memory) on the blocking pool.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        store: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.readers.is_empty() {
            return self.run(store, move |c| f(c)).await;
        }
        let (readers, start) = (
            self.readers.clone(),
            self.next_reader.fetch_add(1, Ordering::Relaxed),
        );
        tokio::task::spawn_blocking(move || {
            let n = readers.len();
            let conn = (0..n)
                .find_map(|i| readers[(start + i) % n].try_lock().ok())
                .unwrap_or_else(|| Self::lock(&readers[start % n]));
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::unavailable(store, e))?
        .map_err(err(store))
    }

    /// Deletes expired traces; returns how many.
    pub fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        Self::lock(&self.conn)
            .execute("DELETE FROM traces WHERE expires_at <= ?1", params![now])
            .map_err(err("traces"))
    }
}

fn parse_trace(body: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::unavailable("traces", e))
}

#[async_trait::async_trait]
impl TraceStore for SqliteStore {
    async fn put(
        &self,
        request_id: &str,
        trace: &serde_json::Value,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let (rid, body) = (request_id.to_string(), trace.to_string());
        let ts = trace["timestamp"].as_i64().unwrap_or(0);
        let now = chrono::Utc::now().timestamp();
        let rid2 = rid.clone();
        let changed = self
            .run("traces", move |c| {
                // An expired trace under the id may be replaced; a live one stays.
                c.execute(
                    "INSERT INTO traces (request_id, body, expires_at, ts_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(request_id) DO UPDATE SET body = excluded.body,
                        expires_at = excluded.expires_at, ts_ms = excluded.ts_ms
                     WHERE traces.expires_at <= ?5",
                    params![rid2, body, expires_at, ts, now],
                )
            })
            .await?;
        match changed {
            0 => Err(StoreError::Conflict {
                store: "traces",
                reason: format!("a trace of request {rid} is stored already"),
            }),
            _ => Ok(()),
        }
    }

    async fn put_many(
        &self,
        traces: &[(String, serde_json::Value, i64)],
    ) -> Vec<Result<(), StoreError>> {
        let rows: Vec<(String, String, i64, i64)> = traces
            .iter()
            .map(|(id, t, exp)| {
                let ts = t["timestamp"].as_i64().unwrap_or(0);
                (id.clone(), t.to_string(), *exp, ts)
            })
            .collect();
        let n = rows.len();
        let now = chrono::Utc::now().timestamp();
        // One transaction: one fsync-free WAL commit for the whole batch.
        let changed = self
            .run("traces", move |c| {
                let tx = c.transaction()?;
                let mut changed = Vec::with_capacity(rows.len());
                {
                    let mut st = tx.prepare_cached(
                        "INSERT INTO traces (request_id, body, expires_at, ts_ms) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(request_id) DO UPDATE SET body = excluded.body,
                            expires_at = excluded.expires_at, ts_ms = excluded.ts_ms
                         WHERE traces.expires_at <= ?5",
                    )?;
                    for (rid, body, exp, ts) in &rows {
                        changed.push(st.execute(params![rid, body, exp, ts, now])?);
                    }
                }
                tx.commit()?;
                Ok(changed)
            })
            .await;
        match changed {
            Ok(changed) => changed
                .into_iter()
                .zip(traces)
                .map(|(c, (rid, _, _))| match c {
                    0 => Err(StoreError::Conflict {
                        store: "traces",
                        reason: format!("a trace of request {rid} is stored already"),
                    }),
                    _ => Ok(()),
                })
                .collect(),
            Err(e) => {
                let reason = e.to_string();
                (0..n)
                    .map(|_| Err(StoreError::unavailable("traces", &reason)))
                    .collect()
            }
        }
    }

    async fn get(
        &self,
        request_id: &str,
        now: i64,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let rid = request_id.to_string();
        let body: Option<String> = self
            .read("traces", move |c| {
                c.query_row(
                    "SELECT body FROM traces WHERE request_id = ?1 AND expires_at > ?2",
                    params![rid, now],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        body.as_deref().map(parse_trace).transpose()
    }

    async fn window(
        &self,
        from_ms: i64,
        to_ms: i64,
        now: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let bodies: Vec<String> = self
            .read("traces", move |c| {
                let mut st = c.prepare_cached(
                    "SELECT body FROM traces WHERE ts_ms >= ?1 AND ts_ms < ?2 AND expires_at > ?3 ORDER BY ts_ms, request_id",
                )?;
                let rows = st.query_map(params![from_ms, to_ms, now], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| parse_trace(b)).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read("sqlite", |c| c.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }
}

#[async_trait::async_trait]
impl UserHistory for SqliteStore {
    async fn seen(&self, user_id: u64) -> Result<Vec<u64>, StoreError> {
        self.read("user_history", move |c| {
            let mut st = c.prepare_cached(
                "SELECT movie_id FROM user_history WHERE user_id = ?1 ORDER BY ts_ms DESC, movie_id",
            )?;
            let rows = st.query_map(params![user_id as i64], |r| r.get::<_, i64>(0))?;
            rows.map(|r| r.map(|v| v as u64)).collect()
        })
        .await
    }

    async fn append(&self, user_id: u64, movie_ids: &[u64], ts_ms: i64) -> Result<(), StoreError> {
        let movies = movie_ids.to_vec();
        self.run("user_history", move |c| {
            let tx = c.transaction()?;
            for m in movies {
                tx.execute(
                    "INSERT INTO user_history (user_id, movie_id, ts_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT(user_id, movie_id) DO UPDATE SET ts_ms = MAX(ts_ms, excluded.ts_ms)",
                    params![user_id as i64, m as i64, ts_ms],
                )?;
            }
            tx.commit()
        })
        .await
    }

    async fn append_events(&self, events: &[(u64, u64, i64)]) -> Result<(), StoreError> {
        let events = events.to_vec();
        self.run("user_history", move |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO user_history (user_id, movie_id, ts_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT(user_id, movie_id) DO UPDATE SET ts_ms = MAX(ts_ms, excluded.ts_ms)",
                )?;
                for (u, m, ts) in events {
                    st.execute(params![u as i64, m as i64, ts])?;
                }
            }
            tx.commit()
        })
        .await
    }
}

#[async_trait::async_trait]
impl IngestState for SqliteStore {
    async fn seen_keys(&self, keys: &[String], now: i64) -> Result<HashSet<String>, StoreError> {
        let keys = keys.to_vec();
        self.read("ingest_state", move |c| {
            let mut st =
                c.prepare_cached("SELECT 1 FROM ingest_keys WHERE key = ?1 AND expires_at > ?2")?;
            let mut found = HashSet::new();
            for k in keys {
                if st.exists(params![k, now])? {
                    found.insert(k);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn remember_keys(&self, keys: &[String], expires_at: i64) -> Result<(), StoreError> {
        let keys = keys.to_vec();
        self.run("ingest_state", move |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO ingest_keys (key, expires_at) VALUES (?1, ?2)",
                )?;
                for k in keys {
                    st.execute(params![k, expires_at])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn rate_window(&self, user_id: u64) -> Result<RateWindow, StoreError> {
        let row: Option<(String, String, i64)> = self
            .read("ingest_state", move |c| {
                c.query_row(
                    "SELECT entries, arrivals, revision FROM rate_windows WHERE user_id = ?1",
                    params![user_id as i64],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
            })
            .await?;
        let json = |s: &str| {
            serde_json::from_str(s).map_err(|e| StoreError::unavailable("ingest_state", e))
        };
        match row {
            None => Ok(RateWindow::default()),
            Some((entries, arrivals, revision)) => Ok(RateWindow {
                entries: json(&entries)?,
                arrivals: json(&arrivals)?,
                revision: revision as u64,
            }),
        }
    }

    async fn save_rate_window(&self, user_id: u64, w: &RateWindow) -> Result<(), StoreError> {
        let entries = serde_json::to_string(&w.entries).expect("pairs serialise");
        let arrivals = serde_json::to_string(&w.arrivals).expect("pairs serialise");
        let expected = w.revision as i64;
        let changed = self
            .run("ingest_state", move |c| {
                let tx = c.transaction()?;
                let current: i64 = tx
                    .query_row(
                        "SELECT revision FROM rate_windows WHERE user_id = ?1",
                        params![user_id as i64],
                        |r| r.get(0),
                    )
                    .optional()?
                    .unwrap_or(0);
                if current != expected {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT OR REPLACE INTO rate_windows (user_id, entries, arrivals, revision) VALUES (?1, ?2, ?3, ?4)",
                    params![user_id as i64, entries, arrivals, expected + 1],
                )?;
                tx.commit()?;
                Ok(true)
            })
            .await?;
        if changed {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                store: "ingest_state",
                reason: format!("rate window of user {user_id} changed since revision {expected}"),
            })
        }
    }
}

fn read_rollout(c: &Connection) -> rusqlite::Result<Option<RolloutState>> {
    c.query_row(
        "SELECT version, updated_by, updated_at, counter, strategy, candidate, percentage, experiment_id, salt,
                primary_policy, candidate_policy
         FROM rollout WHERE id = 1",
        [],
        |r| {
            Ok(RolloutState {
                served_version: r.get(0)?,
                updated_by: r.get(1)?,
                updated_at: r.get(2)?,
                revision: r.get::<_, i64>(3)? as u64,
                strategy: r.get::<_, String>(4)?.parse().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
                })?,
                candidate_version: r.get(5)?,
                percentage: r.get(6)?,
                experiment_id: r.get(7)?,
                salt: r.get(8)?,
                primary_policy: r.get(9)?,
                candidate_policy: r.get(10)?,
            })
        },
    )
    .optional()
}

#[async_trait::async_trait]
impl RolloutStore for SqliteStore {
    async fn state(&self) -> Result<Option<RolloutState>, StoreError> {
        self.read("rollout", read_rollout).await
    }

    async fn set(
        &self,
        expected: u64,
        spec: &RolloutSpec,
        updated_by: &str,
    ) -> Result<RolloutState, StoreError> {
        let state = spec.state(
            expected + 1,
            updated_by,
            chrono::Utc::now().timestamp_millis(),
        );
        let reason = spec.reason.clone();
        let outcome = self
            .run("rollout", move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let previous = read_rollout(&tx)?;
                let found = previous.as_ref().map_or(0, |s| s.revision);
                if found != expected {
                    return Ok(Err(found));
                }
                tx.execute(
                    "INSERT INTO rollout (id, version, updated_by, updated_at, counter, strategy, candidate, percentage, experiment_id, salt,
                                          primary_policy, candidate_policy)
                     VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT(id) DO UPDATE SET version = excluded.version, updated_by = excluded.updated_by,
                     updated_at = excluded.updated_at, counter = excluded.counter, strategy = excluded.strategy,
                     candidate = excluded.candidate, percentage = excluded.percentage,
                     experiment_id = excluded.experiment_id, salt = excluded.salt,
                     primary_policy = excluded.primary_policy, candidate_policy = excluded.candidate_policy",
                    params![
                        state.served_version,
                        state.updated_by,
                        state.updated_at,
                        state.revision as i64,
                        state.strategy.as_str(),
                        state.candidate_version,
                        state.percentage,
                        state.experiment_id,
                        state.salt,
                        state.primary_policy,
                        state.candidate_policy
                    ],
                )?;
                let change = RolloutChange {
                    state: state.clone(),
                    previous,
                    reason: reason.clone(),
                };
                tx.execute(
                    "INSERT OR REPLACE INTO rollout_changes (revision, body) VALUES (?1, ?2)",
                    params![state.revision as i64, serde_json::to_string(&change).expect("json")],
                )?;
                tx.commit()?;
                Ok(Ok(state))
            })
            .await?;
        outcome.map_err(|found| StoreError::Conflict {
            store: "rollout",
            reason: format!("expected revision {expected}, found {found}"),
        })
    }

    async fn changes(&self, limit: usize) -> Result<Vec<RolloutChange>, StoreError> {
        let bodies: Vec<String> = self
            .read("rollout", move |c| {
                let mut st = c.prepare_cached(
                    "SELECT body FROM rollout_changes ORDER BY revision DESC LIMIT ?1",
                )?;
                let rows = st.query_map(params![limit as i64], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        bodies
            .iter()
            .map(|b| {
                serde_json::from_str(b)
                    .map_err(|e| StoreError::unavailable("rollout", format!("change log: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
