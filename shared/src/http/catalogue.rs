//! The catalogue lists of the recommend function: `GET /similar/{movie_id}`
//! ("more like this", and with `user_id` "because you watched"),
//! `GET /popular` and `GET /trending`. Each takes `k` and the filters of
//! `GET /recommend` ([`crate::domain::filter`]), and answers from state
//! built at load time, so a request is a lookup (trending: a sum of hourly
//! counts each process caches, [`TrendingCache`]).

use super::{movie_json, parse_filter, parse_k_or, parse_user_id, ApiError, AppState, RequestId};
use crate::domain::filter::{short_reason, Filter};
use crate::domain::trending;
use crate::scoring::ServingModel;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `k` of `/similar` when the request names none.
pub const SIMILAR_K_DEFAULT: usize = 10;
/// How long one process reuses the current hour's trending counts. The
/// local server also drops them whenever it ingests events.
pub const TRENDING_CACHE: Duration = Duration::from_secs(10);
/// How `/similar` measures likeness (also in its provenance).
pub const SIMILARITY: &str =
    "cosine of the model's GMF item factors scaled by its prediction weights";

fn parse_movie_id(s: &str) -> Result<u64, ApiError> {
    match s.parse::<u64>() {
        Ok(v) if s.bytes().all(|b| b.is_ascii_digit()) => Ok(v),
        _ => Err(ApiError::InvalidParameter(format!(
            "movie_id must be a non-negative integer, got {s:?}"
        ))),
    }
}

fn model(st: &AppState) -> Result<Arc<ServingModel>, ApiError> {
    st.current_model()
        .ok_or_else(|| ApiError::unavailable("no_model", "no model version is loaded"))
}

fn provenance(m: &ServingModel, rid: &str, filter: &Filter, start: Instant) -> Value {
    json!({
        "request_id": rid,
        "model_name": m.manifest.name,
        "model_version": m.manifest.version,
        "model_sha256": m.manifest.model_sha256(),
        "filter": filter.to_json(),
        "latency_ms": start.elapsed().as_secs_f64() * 1e3,
    })
}

fn with_shortfall(
    mut body: Value,
    k: usize,
    got: usize,
    filter: &Filter,
    why: Option<String>,
) -> Value {
    if got < k {
        body["fewer_than_k"] = json!(why.or_else(|| short_reason(k, got, filter)));
    }
    body
}

/// `GET /similar/{movie_id}?k=10[&user_id=U][&filters]`.
#[utoipa::path(get, path = "/similar/{movie_id}", tag = "recommend",
    params(("movie_id" = u64, Path, description = "A movie of the catalogue"),
        ("user_id" = Option<u64>, Query, description = "Because this user watched the movie: their seen movies left out, the neighbours ordered by their score"),
        super::openapi::ListQuery),
    security((), ("api_key" = [])),
    responses((status = 200, description = "The neighbours, closest first (or by the user's score)", body = super::openapi::SimilarResponse),
        super::openapi::BadParameter,
        super::openapi::NotFound,
        super::openapi::Unavailable))]
pub(super) async fn similar(
    State(st): State<Arc<AppState>>,
    Extension(RequestId(rid)): Extension<RequestId>,
    Path(movie): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let movie_id = parse_movie_id(&movie)?;
    let k = parse_k_or(&q, SIMILAR_K_DEFAULT)?;
    let user_id = match q.get("user_id") {
        None => None,
        Some(u) => Some(parse_user_id(u)?),
    };
    // A named user is served by the model of their rollout arm.
    let m = match user_id {
        Some(u) => st.serving().map(|s| s.assign(u).model.clone()),
        None => st.current_model(),
    }
    .ok_or_else(|| ApiError::unavailable("no_model", "no model version is loaded"))?;
    let filter = parse_filter(&q, &m)?;
    let index = m.item_index(movie_id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no movie {movie_id} in the catalogue of model version {}",
            m.version()
        ))
    })?;
    let seen = match user_id {
        Some(u) => st.history()?.seen(u).await.unwrap_or_else(|e| {
            tracing::warn!(request_id = %rid, error = %e, "user history unavailable; excluding training history only");
            Vec::new()
        }),
        None => Vec::new(),
    };
    let list = m
        .similar(index, k, user_id.map(|u| (u, seen.as_slice())), &filter)
        .map_err(|e| {
            tracing::error!(request_id = %rid, error = %e, "scoring failed");
            ApiError::internal("scoring_failed", "the model could not score this request")
        })?
        .ok_or_else(|| {
            ApiError::unavailable(
                "no_neighbours",
                format!(
                    "model version {} has no neighbour lists (exported before neighbours.bin); retrain it to serve /similar",
                    m.version()
                ),
            )
        })?;
    let man = &m.manifest;
    let items: Vec<Value> = list
        .items
        .iter()
        .map(|&(i, sim, score)| {
            let mut extra = json!({"similarity": sim});
            if let Some(s) = score {
                extra["score"] = json!(s);
            }
            movie_json(man, i, extra)
        })
        .collect();
    let mut prov = provenance(&m, &rid, &filter, start);
    prov["similarity"] = json!(SIMILARITY);
    prov["user_vector"] = json!(list.user_vector);
    prov["order"] = json!(match list.user_vector {
        Some(_) => "user_score",
        None => "similarity",
    });
    let body = json!({
        "movie": movie_json(man, index, json!({})),
        "user_id": user_id,
        "model": man.version,
        "items": list.items.iter().map(|&(i, _, _)| man.items[i as usize].movie_id).collect::<Vec<_>>(),
        "similar": items,
        "provenance": prov,
    });
    let got = list.items.len();
    let why = (got < k && filter.is_empty()).then(|| {
        format!("only {got} of the movie's nearest neighbours remain (seen movies are left out)")
    });
    Ok(Json(with_shortfall(body, k, got, &filter, why)).into_response())
}

/// `GET /popular?k=20[&filters]`: training popularity.
#[utoipa::path(get, path = "/popular", tag = "recommend",
    params(super::openapi::ListQuery),
    security((), ("api_key" = [])),
    responses((status = 200, description = "Most interactions in training first", body = super::openapi::PopularResponse),
        super::openapi::BadParameter,
        super::openapi::Unavailable))]
pub(super) async fn popular(
    State(st): State<Arc<AppState>>,
    Extension(RequestId(rid)): Extension<RequestId>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let k = parse_k_or(&q, super::K_DEFAULT)?;
    let m = model(&st)?;
    let filter = parse_filter(&q, &m)?;
    let ranked = m.popular(k, &filter);
    let man = &m.manifest;
    let recs: Vec<Value> = ranked
        .iter()
        .map(|&(i, s)| {
            movie_json(
                man,
                i,
                json!({"popularity": man.items[i as usize].popularity, "score": s}),
            )
        })
        .collect();
    let mut prov = provenance(&m, &rid, &filter, start);
    prov["source"] = json!("training interactions per movie");
    let body = json!({
        "model": man.version,
        "items": ranked.iter().map(|&(i, _)| man.items[i as usize].movie_id).collect::<Vec<_>>(),
        "recommendations": recs,
        "provenance": prov,
    });
    Ok(Json(with_shortfall(body, k, ranked.len(), &filter, None)).into_response())
}

/// `(movie_id, count)` of one hour.
type Counts = Arc<Vec<(u64, u64)>>;

/// One process's hourly trending counts, each with when it was read. A
/// window is summed from these, so whatever windows clients ask for, a
/// process reads each hour at most once per [`TRENDING_CACHE`] (the
/// current hour) or [`TRENDING_PAST_HOUR_CACHE`] (earlier hours, which
/// change only by late events): at most 168 queries per five minutes and
/// one per ten seconds, however many distinct `hours` a client cycles through.
#[derive(Default)]
pub struct TrendingCache {
    hours: Mutex<HashMap<i64, (Instant, Counts)>>,
}

/// How long a past hour's counts are reused.
pub const TRENDING_PAST_HOUR_CACHE: Duration = Duration::from_secs(300);

impl TrendingCache {
    /// Forgets every hour (new events were counted here).
    pub fn clear(&self) {
        self.hours.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Each movie's count over `from..=to` (the current hour is `to`),
    /// reading from `store` only the hours not fresh here.
    async fn window(
        &self,
        store: &dyn crate::ports::TrendingStore,
        (from, to): (i64, i64),
    ) -> Result<HashMap<u64, u64>, crate::ports::StoreError> {
        let fresh = |h: i64, at: &Instant| {
            at.elapsed()
                < match h == to {
                    true => TRENDING_CACHE,
                    false => TRENDING_PAST_HOUR_CACHE,
                }
        };
        let mut have: Vec<Counts> = Vec::new();
        let mut missing: Vec<i64> = Vec::new();
        {
            let mut cached = self.hours.lock().unwrap_or_else(|p| p.into_inner());
            cached.retain(|h, _| *h > to - trending::MAX_HOURS - 1);
            for h in from..=to {
                match cached.get(&h).filter(|(at, _)| fresh(h, at)) {
                    Some((_, c)) => have.push(c.clone()),
                    None => missing.push(h),
                }
            }
        }
        for h in missing {
            let c: Counts = Arc::new(store.window(h, h).await?);
            self.hours
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(h, (Instant::now(), c.clone()));
            have.push(c);
        }
        let mut sums: HashMap<u64, u64> = HashMap::new();
        for c in have {
            for &(m, n) in c.iter() {
                *sums.entry(m).or_default() += n;
            }
        }
        Ok(sums)
    }
}

/// `GET /trending?k=20&hours=24[&filters]`: watches and ratings of the last
/// `hours` whole UTC hours (the current one included), most first.
#[utoipa::path(get, path = "/trending", tag = "recommend",
    params(("hours" = Option<u32>, Query, description = "Whole UTC hours summed, the current one included: 1 to 168 (default 24)", minimum = 1, maximum = 168),
        super::openapi::ListQuery),
    security((), ("api_key" = [])),
    responses((status = 200, description = "Most watched and rated in the window first", body = super::openapi::TrendingResponse),
        super::openapi::BadParameter,
        super::openapi::Unavailable))]
pub(super) async fn trending(
    State(st): State<Arc<AppState>>,
    Extension(RequestId(rid)): Extension<RequestId>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let k = parse_k_or(&q, super::K_DEFAULT)?;
    let hours = trending::parse_hours(q.get("hours").map(String::as_str))?;
    let m = model(&st)?;
    let filter = parse_filter(&q, &m)?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let window = trending::window(now_ms, hours);
    let counts = st
        .trending_cache
        .window(st.trending()?.as_ref(), window)
        .await?;
    let man = &m.manifest;
    let mut per_item = vec![0u64; man.items.len()];
    for (&movie, &n) in counts.iter() {
        if let Some(i) = m.item_index(movie) {
            per_item[i as usize] = n;
        }
    }
    let ranked = trending::rank(&per_item, m.popularity(), &m.dropped_mask(&filter), k);
    let recs: Vec<Value> = ranked
        .iter()
        .map(|&(i, n)| movie_json(man, i, json!({"count": n})))
        .collect();
    let hour = |h: i64| {
        chrono::DateTime::from_timestamp(h * 3600, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    let mut prov = provenance(&m, &rid, &filter, start);
    prov["source"] = json!("watch and rate events per movie per hour, summed over the window");
    let body = json!({
        "model": man.version,
        "hours": hours,
        "window": {"from": hour(window.0), "to": hour(window.1 + 1)},
        "items": ranked.iter().map(|&(i, _)| man.items[i as usize].movie_id).collect::<Vec<_>>(),
        "recommendations": recs,
        "provenance": prov,
    });
    let got = ranked.len();
    let why = (got < k).then(|| match filter.is_empty() {
        true => {
            format!("only {got} catalogue movies were watched or rated in the last {hours} hours")
        }
        false => {
            format!("only {got} movies watched or rated in the last {hours} hours pass the filter")
        }
    });
    Ok(Json(with_shortfall(body, k, got, &filter, why)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{StoreError, TrendingStore};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Movie 1 has count `hour` in every hour; counts the reads.
    #[derive(Default)]
    struct Hours(AtomicUsize);

    #[async_trait::async_trait]
    impl TrendingStore for Hours {
        async fn add(&self, _: &[(i64, u64, u32)], _: i64) -> Result<(), StoreError> {
            Ok(())
        }
        async fn window(&self, from: i64, to: i64) -> Result<Vec<(u64, u64)>, StoreError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(vec![(1, (from..=to).map(|h| h as u64).sum())])
        }
    }

    #[tokio::test]
    async fn windows_are_summed_from_hours_each_read_once_whatever_the_windows_asked() {
        let (store, cache) = (Hours::default(), TrendingCache::default());
        let reads = || store.0.load(Ordering::Relaxed);
        let w = cache.window(&store, (1000, 1023)).await.unwrap();
        assert_eq!(w[&1], (1000..=1023).sum::<u64>());
        assert_eq!(reads(), 24);
        // Every window from 1 to 168 hours ending now: only the new hours are read.
        for hours in 1..=trending::MAX_HOURS {
            let w = cache.window(&store, (1024 - hours, 1023)).await.unwrap();
            assert_eq!(w[&1], (1024 - hours..=1023).map(|h| h as u64).sum::<u64>());
        }
        assert_eq!(reads(), 168, "each hour once");
        // The local server drops them when it ingests.
        cache.clear();
        cache.window(&store, (1020, 1023)).await.unwrap();
        assert_eq!(reads(), 172);
    }
}
