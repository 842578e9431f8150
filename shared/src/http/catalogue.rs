//! The catalogue lists of the recommend function: `GET /similar/{movie_id}`
//! ("more like this", and with `user_id` "because you watched"),
//! `GET /popular` and `GET /trending`. Each takes `k` and the filters of
//! `GET /recommend` ([`crate::domain::filter`]), and answers from state
//! built at load time, so a request is a lookup (trending: one read of the
//! hourly counts, cached for [`TRENDING_CACHE`]).

use super::{movie_json, parse_filter, parse_user_id, ApiError, AppState, RequestId, K_MAX};
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
/// How long one process reuses a window of trending counts. The local
/// server also drops them whenever it ingests events.
pub const TRENDING_CACHE: Duration = Duration::from_secs(10);
/// How `/similar` measures likeness (also in its provenance).
pub const SIMILARITY: &str =
    "cosine of the model's GMF item factors scaled by its prediction weights";

fn parse_k_or(q: &HashMap<String, String>, default: usize) -> Result<usize, ApiError> {
    match q.get("k") {
        None => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(k) if (1..=K_MAX).contains(&k) => Ok(k),
            _ => Err(ApiError::InvalidParameter(format!(
                "k must be an integer from 1 to {K_MAX}, got {raw:?}"
            ))),
        },
    }
}

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
        Some(u) => Some(parse_user_id(u).map_err(ApiError::InvalidParameter)?),
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

/// `(movie_id, count)` of one window.
type Counts = Arc<Vec<(u64, u64)>>;

/// One cached window: when it was read, its hours and its counts.
type Window = (Instant, (i64, i64), Counts);

/// One process's recent windows of trending counts, by `hours`: when each
/// was read, its hours and its counts.
#[derive(Default)]
pub struct TrendingCache {
    windows: Mutex<HashMap<i64, Window>>,
}

impl TrendingCache {
    /// Forgets every window (new events were counted here).
    pub fn clear(&self) {
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn get(&self, hours: i64, window: (i64, i64)) -> Option<Counts> {
        let w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        w.get(&hours)
            .filter(|(at, win, _)| *win == window && at.elapsed() < TRENDING_CACHE)
            .map(|(_, _, c)| c.clone())
    }

    fn put(&self, hours: i64, window: (i64, i64), counts: Counts) {
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hours, (Instant::now(), window, counts));
    }
}

/// `GET /trending?k=20&hours=24[&filters]`: watches and ratings of the last
/// `hours` whole UTC hours (the current one included), most first.
pub(super) async fn trending(
    State(st): State<Arc<AppState>>,
    Extension(RequestId(rid)): Extension<RequestId>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let k = parse_k_or(&q, super::K_DEFAULT)?;
    let hours = trending::parse_hours(q.get("hours").map(String::as_str))
        .map_err(ApiError::InvalidParameter)?;
    let m = model(&st)?;
    let filter = parse_filter(&q, &m)?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let window = trending::window(now_ms, hours);
    let counts = match st.trending_cache.get(hours, window) {
        Some(c) => c,
        None => {
            let c = Arc::new(st.trending()?.window(window.0, window.1).await?);
            st.trending_cache.put(hours, window, c.clone());
            c
        }
    };
    let man = &m.manifest;
    let mut per_item = vec![0u64; man.items.len()];
    for &(movie, n) in counts.iter() {
        if let Some(i) = m.item_index(movie) {
            per_item[i as usize] = n;
        }
    }
    let mut dropped = vec![false; man.items.len()];
    for i in m.dropped(&filter) {
        dropped[i as usize] = true;
    }
    let popularity: Vec<u32> = man.items.iter().map(|i| i.popularity).collect();
    let ranked = trending::rank(&per_item, &popularity, &dropped, k);
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
