//! The model registry as a folder: `<root>/<version>/{model.onnx,history.bin,manifest.json}`.

use crate::artifact::{Manifest, MANIFEST_FILE};
use crate::ports::{valid_version, ArtifactFile, ModelStore, RegistryError, VerifiedArtifact};
use std::path::{Path, PathBuf};

/// A registry in a local folder. Publishing writes into a temporary folder and
/// renames it into place, so readers never see a half-written version.
#[derive(Clone, Debug)]
pub struct FolderRegistry {
    root: PathBuf,
}

impl FolderRegistry {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FolderRegistry { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io(path: &Path, source: std::io::Error) -> RegistryError {
        RegistryError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn check(version: &str) -> Result<(), RegistryError> {
        if valid_version(version) {
            Ok(())
        } else {
            Err(RegistryError::InvalidVersion(version.into()))
        }
    }
}

/// A manifest's `created_at` (empty if unreadable), without building the id
/// maps and catalogue that a full [`Manifest`] holds: listing only sorts by it.
fn created_at(path: &Path) -> String {
    #[derive(serde::Deserialize)]
    struct Head {
        created_at: String,
    }
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Head>(&b).ok())
        .map(|h| h.created_at)
        .unwrap_or_default()
}

impl ModelStore for FolderRegistry {
    fn list_versions(&self) -> Result<Vec<String>, RegistryError> {
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io(&self.root, e)),
        };
        let mut found = Vec::new();
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_version(&name) || !entry.path().join(MANIFEST_FILE).is_file() {
                continue;
            }
            let created = created_at(&entry.path().join(MANIFEST_FILE));
            found.push((created, name));
        }
        found.sort();
        Ok(found.into_iter().map(|(_, n)| n).collect())
    }

    fn read_manifest(&self, version: &str) -> Result<Manifest, RegistryError> {
        Self::check(version)?;
        let path = self.root.join(version).join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RegistryError::NotFound(version.into()),
            _ => Self::io(&path, e),
        })?;
        Manifest::from_json(&bytes).map_err(|source| RegistryError::Artifact {
            version: version.into(),
            source,
        })
    }

    fn publish(
        &self,
        manifest: &Manifest,
        files: &[ArtifactFile<'_>],
    ) -> Result<(), RegistryError> {
        let version = &manifest.version;
        Self::check(version)?;
        let dest = self.root.join(version);
        if dest.exists() {
            return Err(RegistryError::AlreadyExists(version.clone()));
        }
        std::fs::create_dir_all(&self.root).map_err(|e| Self::io(&self.root, e))?;
        let tmp = self
            .root
            .join(format!(".tmp-{version}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Self::io(&tmp, e))?;
        let write = |name: &str, bytes: &[u8]| {
            let p = tmp.join(name);
            std::fs::write(&p, bytes).map_err(|e| Self::io(&p, e))
        };
        for f in files {
            write(f.name, f.bytes)?;
        }
        let json = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
        write(MANIFEST_FILE, &json)?;
        // Verify what landed on disk before making it visible.
        manifest
            .verify_dir(&tmp)
            .map_err(|source| RegistryError::Artifact {
                version: version.clone(),
                source,
            })?;
        if dest.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(RegistryError::AlreadyExists(version.clone()));
        }
        std::fs::rename(&tmp, &dest).map_err(|e| Self::io(&dest, e))
    }

    fn fetch(&self, version: &str) -> Result<VerifiedArtifact, RegistryError> {
        let manifest = self.read_manifest(version)?;
        let dir = self.root.join(version);
        manifest
            .verify_dir(&dir)
            .map_err(|source| RegistryError::Artifact {
                version: version.into(),
                source,
            })?;
        Ok(VerifiedArtifact { dir, manifest })
    }
}
