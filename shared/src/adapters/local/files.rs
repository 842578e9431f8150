//! The local event lake (a folder) and metrics sink (a JSON-lines file).

use crate::ports::{EventLake, MetricDatum, MetricsPublisher, StoreError};
use std::io::Write;
use std::path::PathBuf;

/// The event lake in a folder: `<root>/<key>`, written to a temporary name
/// and renamed, so readers never see half an object.
#[derive(Clone, Debug)]
pub struct FolderLake {
    root: PathBuf,
}

impl FolderLake {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FolderLake { root: root.into() }
    }

    /// The file of `key`, refusing a key that would leave the folder (empty,
    /// `.` or `..` segments, or an absolute path).
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if !crate::ports::is_relative_key(key) {
            return Err(StoreError::unavailable(
                "event_lake",
                format!("invalid key {key:?}"),
            ));
        }
        Ok(self.root.join(key))
    }
}

#[async_trait::async_trait]
impl EventLake for FolderLake {
    async fn put_object(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || {
            let dir = path.parent().expect("a key has a parent");
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(|e| StoreError::unavailable("event_lake", e))?
        .map_err(|e| StoreError::unavailable("event_lake", e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || crate::data::lake::keys_under(&root, &prefix))
            .await
            .map_err(|e| StoreError::unavailable("event_lake", e))?
            .map_err(|e| StoreError::unavailable("event_lake", e))
    }

    async fn get_object(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(key)?;
        tokio::fs::read(&path)
            .await
            .map_err(|e| StoreError::unavailable("event_lake", format!("{}: {e}", path.display())))
    }

    async fn get_optional(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::unavailable(
                "event_lake",
                format!("{}: {e}", path.display()),
            )),
        }
    }
}

/// Metrics appended to a JSON-lines file, one object per data point.
#[derive(Clone, Debug)]
pub struct FileMetrics {
    path: PathBuf,
}

impl FileMetrics {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileMetrics { path: path.into() }
    }
}

#[async_trait::async_trait]
impl MetricsPublisher for FileMetrics {
    async fn publish(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), StoreError> {
        let mut buf = String::new();
        for d in data {
            let dims: serde_json::Map<String, serde_json::Value> = d
                .dimensions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            buf.push_str(
                &serde_json::json!({"namespace": namespace, "name": d.name, "value": d.value,
                    "unit": d.unit, "dimensions": dims, "timestamp": d.timestamp_ms})
                .to_string(),
            );
            buf.push('\n');
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?
                .write_all(buf.as_bytes())
        })
        .await
        .map_err(|e| StoreError::unavailable("metrics", e))?
        .map_err(|e| StoreError::unavailable("metrics", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lake_writes_keys_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let lake = FolderLake::new(dir.path());
        lake.put_object("incoming/dt=2026-11-28/a.jsonl", b"x\n".to_vec())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("incoming/dt=2026-11-28/a.jsonl")).unwrap(),
            b"x\n"
        );
        assert!(lake.put_object("../evil", vec![]).await.is_err());
        assert!(lake.put_object("a//b", vec![]).await.is_err());
    }

    #[tokio::test]
    async fn metrics_append_one_line_per_point() {
        let dir = tempfile::tempdir().unwrap();
        let m = FileMetrics::new(dir.path().join("m/metrics.jsonl"));
        let d = MetricDatum {
            name: "TailShare".into(),
            value: 0.7,
            unit: "None",
            dimensions: vec![("Stage".into(), "dev".into())],
            timestamp_ms: 5,
        };
        m.publish("MovieRecs", &[d.clone(), d]).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("m/metrics.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["dimensions"]["Stage"], "dev");
        assert_eq!(lines[1]["value"], 0.7);
    }
}
