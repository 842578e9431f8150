//! The trending counts of the local stack: a table of the SQLite file,
//! `(hour, movie_id) → n`, rows past their expiry deleted as new ones come.

use super::SqliteStore;
use crate::ports::{StoreError, TrendingStore};
use rusqlite::params;

#[async_trait::async_trait]
impl TrendingStore for SqliteStore {
    async fn add(&self, counts: &[(i64, u64, u32)], expires_at: i64) -> Result<(), StoreError> {
        let counts = counts.to_vec();
        let now = chrono::Utc::now().timestamp();
        self.run("trending", move |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO trending (hour, movie_id, n, expires_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(hour, movie_id) DO UPDATE SET n = n + excluded.n,
                                                              expires_at = MAX(expires_at, excluded.expires_at)",
                )?;
                for (hour, movie, n) in counts {
                    st.execute(params![hour, movie as i64, n as i64, expires_at])?;
                }
            }
            tx.execute("DELETE FROM trending WHERE expires_at <= ?1", params![now])?;
            tx.commit()
        })
        .await
    }

    async fn window(&self, from_hour: i64, to_hour: i64) -> Result<Vec<(u64, u64)>, StoreError> {
        self.read("trending", move |c| {
            let mut st = c.prepare_cached(
                "SELECT movie_id, SUM(n) FROM trending WHERE hour BETWEEN ?1 AND ?2
                 GROUP BY movie_id HAVING SUM(n) > 0 ORDER BY movie_id",
            )?;
            let rows = st.query_map(params![from_hour, to_hour], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })?;
            rows.collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_add_up_per_hour_and_a_window_sums_only_its_hours() {
        let s = SqliteStore::in_memory().unwrap();
        let far = chrono::Utc::now().timestamp() + 86_400;
        s.add(&[(10, 1, 2), (11, 1, 1), (11, 2, 5)], far)
            .await
            .unwrap();
        s.add(&[(11, 1, 3), (12, 3, 1)], far).await.unwrap();
        assert_eq!(s.window(11, 11).await.unwrap(), vec![(1, 4), (2, 5)]);
        assert_eq!(
            s.window(10, 12).await.unwrap(),
            vec![(1, 6), (2, 5), (3, 1)]
        );
        assert_eq!(s.window(13, 20).await.unwrap(), vec![]);
        // Expired rows go when the next counts come.
        s.add(&[(1, 9, 1)], 1).await.unwrap();
        s.add(&[(12, 3, 1)], far).await.unwrap();
        assert_eq!(s.window(0, 5).await.unwrap(), vec![]);
    }
}
