use super::*;

#[tokio::test]
async fn trace_round_trip_expiry_and_window() {
    let s = SqliteStore::in_memory().unwrap();
    let t = serde_json::json!({"request_id": "r1", "timestamp": 5_000, "items": [1, 2]});
    s.put("r1", &t, 1_000).await.unwrap();
    s.put("r2", &serde_json::json!({"timestamp": 6_000}), 2_000)
        .await
        .unwrap();
    assert_eq!(s.get("r1", 999).await.unwrap(), Some(t.clone()));
    assert_eq!(
        s.get("r1", 1_000).await.unwrap(),
        None,
        "expired at its expiry time"
    );
    assert_eq!(s.get("nope", 0).await.unwrap(), None);
    let w = s.window(5_000, 6_000, 0).await.unwrap();
    assert_eq!(w, vec![t], "window is [from, to)");
    assert_eq!(s.window(0, 10_000, 1_500).await.unwrap().len(), 1);
    assert_eq!(s.purge_expired(1_000).unwrap(), 1);
}

#[tokio::test]
async fn batch_of_traces_in_one_transaction_keeps_live_ids() {
    let s = SqliteStore::in_memory().unwrap();
    let far = chrono::Utc::now().timestamp() + 3_600;
    s.put("taken", &serde_json::json!({"timestamp": 1, "n": 0}), far)
        .await
        .unwrap();
    let batch = vec![
        (
            "a".to_string(),
            serde_json::json!({"timestamp": 2, "n": 1}),
            far,
        ),
        (
            "taken".to_string(),
            serde_json::json!({"timestamp": 3, "n": 2}),
            far,
        ),
        (
            "b".to_string(),
            serde_json::json!({"timestamp": 4, "n": 3}),
            far,
        ),
    ];
    let r = s.put_many(&batch).await;
    assert!(r[0].is_ok() && r[2].is_ok(), "{r:?}");
    assert!(matches!(r[1], Err(StoreError::Conflict { .. })), "{r:?}");
    let now = far - 60;
    assert_eq!(
        s.get("taken", now).await.unwrap().unwrap()["n"],
        0,
        "the first trace stays"
    );
    assert_eq!(s.get("b", now).await.unwrap().unwrap()["n"], 3);
}

#[tokio::test]
async fn file_readers_see_each_committed_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
    assert_eq!(s.readers.len(), READERS);
    for m in 1..=20u64 {
        s.append(9, &[m], m as i64).await.unwrap();
        // A read right after the write, on a read-only connection, sees it.
        assert_eq!(s.seen(9).await.unwrap()[0], m);
    }
    // The readers cannot write.
    let e = s.readers[0]
        .lock()
        .unwrap()
        .execute("DELETE FROM user_history", [])
        .unwrap_err();
    assert!(e.to_string().contains("readonly"), "{e}");
}

#[tokio::test]
async fn history_and_rollout_revisions() {
    let s = SqliteStore::in_memory().unwrap();
    s.append(7, &[3, 4, 3], 10).await.unwrap();
    s.append(7, &[5], 20).await.unwrap();
    assert_eq!(s.seen(7).await.unwrap(), vec![5, 3, 4]);
    assert!(s.seen(8).await.unwrap().is_empty());
    assert_eq!(s.served_version().await.unwrap(), None);
    let a = s.switch(0, "v1", "test").await.unwrap();
    assert_eq!((a.revision, a.served_version.as_str()), (1, "v1"));
    let b = s.switch(1, "v2", "test").await.unwrap();
    assert_eq!(b.revision, 2);
    // A writer that read revision 1 loses and changes nothing.
    let e = s.switch(1, "v3", "late").await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    assert_eq!(s.served_version().await.unwrap().as_deref(), Some("v2"));
}
