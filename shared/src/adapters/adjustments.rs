//! The exposure controller's adjustments in any object store (a folder
//! locally, `s3://bucket/exposure` in AWS), in the format of
//! [`crate::artifact::adjustments`]: the object first, the pointer last.

use crate::artifact::adjustments::{decode_pointer, encode, key_of, verify, LATEST_KEY};
use crate::artifact::{AdjustmentsPointer, ArtifactError};
use crate::domain::exposure_control::Adjustments;
use crate::ports::{AdjustmentStore, AdjustmentsError, EventLake};
use std::sync::Arc;

/// Adjustments in an object store.
pub struct AdjustmentObjects {
    objects: Arc<dyn EventLake>,
}

impl AdjustmentObjects {
    pub fn new(objects: Arc<dyn EventLake>) -> Self {
        AdjustmentObjects { objects }
    }
}

#[async_trait::async_trait]
impl AdjustmentStore for AdjustmentObjects {
    async fn latest(&self) -> Result<Option<AdjustmentsPointer>, AdjustmentsError> {
        // A missing pointer is a cold start, told apart from a failing store.
        match self.objects.get_optional(LATEST_KEY).await? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode_pointer(&bytes)?)),
        }
    }

    async fn fetch(&self, pointer: &AdjustmentsPointer) -> Result<Adjustments, AdjustmentsError> {
        match self.objects.get_optional(&pointer.key).await? {
            Some(bytes) => Ok(verify(pointer, &bytes)?),
            None => Err(ArtifactError::Missing {
                file: pointer.key.clone(),
            }
            .into()),
        }
    }

    async fn publish(&self, a: &Adjustments) -> Result<AdjustmentsPointer, AdjustmentsError> {
        a.validate().map_err(|e| ArtifactError::Invalid {
            file: key_of(a.version),
            reason: e.to_string(),
        })?;
        let (bytes, pointer) = encode(a);
        self.objects.put_object(&pointer.key, bytes).await?;
        let p = serde_json::to_vec_pretty(&pointer).expect("pointer serialises");
        self.objects.put_object(LATEST_KEY, p).await?;
        Ok(pointer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::exposure_control::ControllerConfig;
    use std::collections::HashMap;

    fn sample() -> Adjustments {
        let w: HashMap<u64, u64> = [(1, 90), (2, 5), (3, 5)].into_iter().collect();
        Adjustments::default().update(&w, 20, &ControllerConfig::default(), 7)
    }

    #[tokio::test]
    async fn the_store_publishes_and_reads_back_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Arc::new(crate::adapters::local::FolderLake::new(dir.path()));
        let store = AdjustmentObjects::new(objects);
        assert_eq!(store.latest().await.unwrap(), None, "cold start");
        let a = sample();
        let p = store.publish(&a).await.unwrap();
        let b = a.update(&HashMap::new(), 20, &ControllerConfig::default(), 8);
        let p2 = store.publish(&b).await.unwrap();
        assert_eq!(store.latest().await.unwrap(), Some(p2.clone()));
        assert_eq!(store.fetch(&p2).await.unwrap(), b);
        // Older versions stay readable (immutable objects).
        assert_eq!(store.fetch(&p).await.unwrap(), a);
        // A tampered object is refused by name.
        std::fs::write(dir.path().join("adj-000002.json"), b"{}").unwrap();
        let e = store.fetch(&p2).await.unwrap_err().to_string();
        assert!(e.contains("adj-000002.json: checksum mismatch"), "{e}");
    }
}
