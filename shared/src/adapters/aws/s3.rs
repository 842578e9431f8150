//! S3: the model registry (`s3://bucket/prefix/<version>/{manifest.json,model.onnx,history.bin}`)
//! and the event-lake writer.

use super::{block_on, sdk_error};
use crate::artifact::{sha256_hex, Manifest, MANIFEST_FILE};
use crate::ports::{
    valid_version, ArtifactFile, EventLake, ModelStore, RegistryError, StoreError, VerifiedArtifact,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use std::path::{Path, PathBuf};

/// The model registry in S3. Versions are immutable: the manifest is written
/// last, with `If-None-Match: *`, so a version becomes visible only when all
/// its files are in place and two publishers cannot both create it. Fetched
/// versions are verified file by file and cached under `cache_dir/<version>`
/// (in Lambda, `/tmp`), so a warm container downloads a version once.
#[derive(Clone)]
pub struct S3Registry {
    client: Client,
    bucket: String,
    prefix: String,
    cache_dir: PathBuf,
}

fn s3_err(what: String) -> RegistryError {
    RegistryError::Io {
        path: PathBuf::from(what.clone()),
        source: std::io::Error::other(what),
    }
}

impl S3Registry {
    pub fn new(client: Client, bucket: &str, prefix: &str, cache_dir: impl Into<PathBuf>) -> Self {
        S3Registry {
            client,
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').into(),
            cache_dir: cache_dir.into(),
        }
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn key(&self, version: &str, name: &str) -> String {
        if self.prefix.is_empty() {
            format!("{version}/{name}")
        } else {
            format!("{}/{version}/{name}", self.prefix)
        }
    }

    fn check(version: &str) -> Result<(), RegistryError> {
        if valid_version(version) {
            Ok(())
        } else {
            Err(RegistryError::InvalidVersion(version.into()))
        }
    }

    /// The bytes of one object; `Ok(None)` when it does not exist.
    fn get(&self, key: String) -> Result<Option<Vec<u8>>, RegistryError> {
        let (c, b) = (self.client.clone(), self.bucket.clone());
        block_on(async move {
            match c.get_object().bucket(&b).key(&key).send().await {
                Ok(o) => o
                    .body
                    .collect()
                    .await
                    .map(|d| Some(d.into_bytes().to_vec()))
                    .map_err(|e| s3_err(format!("reading s3://{b}/{key}: {e}"))),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                Err(e) => Err(s3_err(format!("s3://{b}/{key}: {}", sdk_error(e)))),
            }
        })
    }

    fn put(&self, key: String, bytes: Vec<u8>, create_only: bool) -> Result<(), RegistryError> {
        let (c, b) = (self.client.clone(), self.bucket.clone());
        block_on(async move {
            let mut req = c
                .put_object()
                .bucket(&b)
                .key(&key)
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                .body(ByteStream::from(bytes));
            if create_only {
                req = req.if_none_match("*");
            }
            req.send().await.map(|_| ()).map_err(|e| {
                let precondition = e.raw_response().is_some_and(|r| r.status().as_u16() == 412);
                if precondition {
                    RegistryError::AlreadyExists(key.clone())
                } else {
                    s3_err(format!("writing s3://{b}/{key}: {}", sdk_error(e)))
                }
            })
        })
    }

    fn manifest_of(version: &str, bytes: &[u8]) -> Result<Manifest, RegistryError> {
        Manifest::from_json(bytes).map_err(|source| RegistryError::Artifact {
            version: version.into(),
            source,
        })
    }
}

impl ModelStore for S3Registry {
    fn list_versions(&self) -> Result<Vec<String>, RegistryError> {
        let (c, b) = (self.client.clone(), self.bucket.clone());
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let names: Vec<String> = block_on(async move {
            let mut pages = c
                .list_objects_v2()
                .bucket(&b)
                .prefix(&prefix)
                .delimiter("/")
                .into_paginator()
                .send();
            let mut names = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page
                    .map_err(|e| s3_err(format!("listing s3://{b}/{prefix}: {}", sdk_error(e))))?;
                for p in page.common_prefixes() {
                    if let Some(v) = p.prefix().and_then(|p| p.strip_prefix(prefix.as_str())) {
                        names.push(v.trim_end_matches('/').to_string());
                    }
                }
            }
            Ok::<_, RegistryError>(names)
        })?;
        // Order by creation time, as the folder registry does; folders without
        // a manifest are unfinished publishes and are skipped.
        #[derive(serde::Deserialize)]
        struct Head {
            created_at: String,
        }
        let mut found = Vec::new();
        for v in names.into_iter().filter(|v| valid_version(v)) {
            if let Some(bytes) = self.get(self.key(&v, MANIFEST_FILE))? {
                let created = serde_json::from_slice::<Head>(&bytes)
                    .map(|h| h.created_at)
                    .unwrap_or_default();
                found.push((created, v));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, v)| v).collect())
    }

    fn read_manifest(&self, version: &str) -> Result<Manifest, RegistryError> {
        Self::check(version)?;
        let bytes = self
            .get(self.key(version, MANIFEST_FILE))?
            .ok_or_else(|| RegistryError::NotFound(version.into()))?;
        Self::manifest_of(version, &bytes)
    }

    fn publish(
        &self,
        manifest: &Manifest,
        files: &[ArtifactFile<'_>],
    ) -> Result<(), RegistryError> {
        let version = &manifest.version;
        Self::check(version)?;
        if self.get(self.key(version, MANIFEST_FILE))?.is_some() {
            return Err(RegistryError::AlreadyExists(version.clone()));
        }
        for f in files {
            let want = manifest.files.get(f.name).map(|e| e.sha256.as_str());
            if want != Some(sha256_hex(f.bytes).as_str()) {
                return Err(RegistryError::Artifact {
                    version: version.clone(),
                    source: crate::artifact::ArtifactError::ChecksumMismatch {
                        file: f.name.to_string(),
                        expected: want.unwrap_or("(not in manifest)").to_string(),
                        actual: sha256_hex(f.bytes),
                    },
                });
            }
            self.put(self.key(version, f.name), f.bytes.to_vec(), false)?;
        }
        let json = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
        self.put(self.key(version, MANIFEST_FILE), json, true)
            .map_err(|e| match e {
                RegistryError::AlreadyExists(_) => RegistryError::AlreadyExists(version.clone()),
                e => e,
            })
    }

    fn fetch(&self, version: &str) -> Result<VerifiedArtifact, RegistryError> {
        let manifest = self.read_manifest(version)?;
        let verify = |dir: &Path| {
            manifest
                .verify_dir(dir)
                .map_err(|source| RegistryError::Artifact {
                    version: version.into(),
                    source,
                })
        };
        let dir = self
            .cache_dir
            .join(&self.bucket)
            .join(&self.prefix)
            .join(version);
        // A cached copy is used only if it still matches this manifest.
        if dir.is_dir() && verify(&dir).is_ok() {
            return Ok(VerifiedArtifact { dir, manifest });
        }
        let io = |p: &Path, e: std::io::Error| RegistryError::Io {
            path: p.to_path_buf(),
            source: e,
        };
        let parent = dir.parent().unwrap_or(&self.cache_dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
        let tmp = parent.join(format!(".tmp-{version}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        for name in manifest.files.keys() {
            let bytes = self
                .get(self.key(version, name))?
                .ok_or_else(|| s3_err(format!("{}/{version}/{name} is missing", self.url())))?;
            let p = tmp.join(name);
            std::fs::write(&p, &bytes).map_err(|e| io(&p, e))?;
        }
        if let Err(e) = verify(&tmp) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
        Ok(VerifiedArtifact { dir, manifest })
    }
}

/// The event lake in S3: `s3://bucket/prefix/<key>`.
#[derive(Clone)]
pub struct S3Lake {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Lake {
    /// The object key of a lake key (`""` gives the lake's root, with its slash).
    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    pub fn new(client: Client, bucket: &str, prefix: &str) -> Self {
        S3Lake {
            client,
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').into(),
        }
    }
}

#[async_trait::async_trait]
impl EventLake for S3Lake {
    async fn put_object(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let key = self.full_key(key);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                StoreError::unavailable(
                    "event_lake",
                    format!("s3://{}/{key}: {}", self.bucket, sdk_error(e)),
                )
            })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let root = self.full_key("");
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full_key(prefix))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                StoreError::unavailable(
                    "event_lake",
                    format!("listing s3://{}/{root}: {}", self.bucket, sdk_error(e)),
                )
            })?;
            for o in page.contents() {
                if let Some(k) = o.key().and_then(|k| k.strip_prefix(&root)) {
                    out.push(k.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn get_object(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.get_optional(key).await?.ok_or_else(|| {
            StoreError::unavailable(
                "event_lake",
                format!("s3://{}/{}: no such key", self.bucket, self.full_key(key)),
            )
        })
    }

    async fn get_optional(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.full_key(key);
        let fail = |e: String| {
            StoreError::unavailable("event_lake", format!("s3://{}/{key}: {e}", self.bucket))
        };
        // (S3 answers NoSuchKey only to a caller allowed to list the
        // prefix; without s3:ListBucket a missing key is AccessDenied.)
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(out) => {
                let body = out.body.collect().await.map_err(|e| fail(e.to_string()))?;
                Ok(Some(body.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(fail(sdk_error(e))),
        }
    }
}
