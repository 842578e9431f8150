//! One closed loop on the product's own path: the event lake, the ingest
//! pipeline, the registry and the user-history store in a folder; training,
//! serving and ingesting as the product does.

use super::*;

/// One closed loop: a lake, an ingest pipeline and a registry in a folder.
pub(super) struct Loop {
    pub(super) dir: PathBuf,
    pub(super) lake: Arc<FolderLake>,
    pub(super) registry: Arc<FolderRegistry>,
    pub(super) ingestor: Arc<Ingestor>,
    pub(super) history: Arc<SqliteStore>,
}

/// What one ingest call did.
#[derive(Default)]
pub(super) struct Ingested {
    pub(super) accepted: usize,
    pub(super) quarantined: usize,
}

impl Loop {
    pub(super) fn new(dir: &Path, seed_events: &[Event]) -> Result<Self, SimError> {
        std::fs::create_dir_all(dir).map_err(store_err)?;
        let lake = Arc::new(FolderLake::new(dir.join("lake")));
        let registry = Arc::new(FolderRegistry::new(dir.join("registry")));
        let db = Arc::new(SqliteStore::in_memory().map_err(store_err)?);
        let ingestor = Arc::new(Ingestor::new(lake.clone(), db.clone(), db.clone()));
        let l = Loop {
            dir: dir.to_path_buf(),
            lake,
            registry,
            ingestor,
            history: db,
        };
        l.ingest(seed_events, "seed", SIM_START_MS)?;
        Ok(l)
    }

    /// Sends events through the ingest pipeline as one batch.
    pub(super) fn ingest(
        &self,
        events: &[Event],
        tag: &str,
        now_ms: i64,
    ) -> Result<Ingested, SimError> {
        let records: Vec<RawRecord> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let id = format!("{tag}-{i}");
                RawRecord::new(
                    e.to_json(Some(&id)).to_string().into_bytes(),
                    Source::File {
                        path: format!("simulate/{tag}"),
                        line: i + 1,
                    },
                    None,
                )
            })
            .collect();
        let ing = self.ingestor.clone();
        let report =
            shared::adapters::aws::block_on(async move { ing.ingest(&records, now_ms).await })
                .map_err(store_err)?;
        if report.rejected > 0 {
            return Err(SimError::Store(format!(
                "ingest rejected {} simulated events: {:?}",
                report.rejected, report.rejected_by_field
            )));
        }
        Ok(Ingested {
            accepted: report.accepted,
            quarantined: report.quarantined,
        })
    }

    /// Trains `version` on the lake's training dataset (the world's titles and
    /// genres attached) and publishes it.
    pub(super) fn train(
        &self,
        world: &World,
        version: &str,
        hp: &HyperParams,
    ) -> Result<Manifest, SimError> {
        let lake = self.lake.clone();
        let source = self.dir.join("lake").display().to_string();
        let mut ds = shared::adapters::aws::block_on(async move {
            shared::ingest::lake::dataset(lake.as_ref(), source).await
        })
        .map_err(store_err)?;
        for it in &mut ds.items {
            if let Some(meta) = world.truth.dataset.items.get(it.movie_id as usize - 1) {
                *it = meta.clone();
            }
        }
        let out = train_and_publish(
            self.registry.as_ref(),
            &ds,
            &TrainOptions {
                hp: hp.clone(),
                version: Some(version.to_string()),
                force: true,
                progress: false,
                defaults: None,
            },
        )?;
        Ok(out.manifest)
    }

    pub(super) fn load(&self, version: &str) -> Result<ServingModel, SimError> {
        let art = self.registry.fetch(version).map_err(store_err)?;
        ServingModel::load(&art).map_err(store_err)
    }

    /// Serves `users` (0-based) one after the other; lists of world item indices.
    pub(super) fn serve(
        &self,
        model: &ServingModel,
        users: &[usize],
        k: usize,
        policy: Policy,
        adjustments: &[f32],
    ) -> Result<Vec<Vec<u32>>, SimError> {
        let history = self.history.clone();
        let ids: Vec<u64> = users.iter().map(|&u| u as u64 + 1).collect();
        let seen: Vec<Vec<u64>> = shared::adapters::aws::block_on(async move {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(history.seen(id).await?);
            }
            Ok::<_, shared::ports::StoreError>(out)
        })
        .map_err(store_err)?;
        users
            .iter()
            .zip(seen)
            .map(|(&u, also_seen)| {
                let ranked = model
                    .recommend_adjusted(
                        u as u64 + 1,
                        k,
                        &also_seen,
                        policy,
                        &Default::default(),
                        adjustments,
                    )
                    .map_err(store_err)?;
                Ok(ranked
                    .items
                    .iter()
                    .map(|(i, _)| (model.manifest.items[*i as usize].movie_id - 1) as u32)
                    .collect())
            })
            .collect()
    }
}
