//! Catalogue filters of a list request (`genre`, `exclude_genre`,
//! `year_from`, `year_to`, `exclude`): parsed and checked against the
//! catalogue once per request, then applied as a mask before re-ranking and
//! top-k, so `k` items still come back whenever `k` movies pass. Pure: no I/O.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Most movie ids one `exclude` may name.
pub const MAX_EXCLUDE: usize = 500;

/// A request's filters, genres spelled as the catalogue spells them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Keep movies of any of these genres (empty: every genre).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub genre: Vec<String>,
    /// Drop movies of any of these genres.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_genre: Vec<String>,
    /// Keep movies released in or after this year (a movie of unknown year fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year_from: Option<u16>,
    /// Keep movies released in or before this year (a movie of unknown year fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year_to: Option<u16>,
    /// Drop these movie ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<u64>,
}

/// A filter parameter the request got wrong; the message names it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {detail}")]
pub struct FilterError {
    pub param: &'static str,
    pub detail: String,
}

fn bad(param: &'static str, detail: impl Into<String>) -> FilterError {
    FilterError {
        param,
        detail: detail.into(),
    }
}

/// The query parameters [`Filter::parse`] reads.
pub const PARAMS: [&str; 5] = ["genre", "exclude_genre", "year_from", "year_to", "exclude"];

impl Filter {
    /// Reads the filter parameters of `q`. Genres match the catalogue's
    /// `genres` case-insensitively (and come back in its spelling); an
    /// unknown one, a year outside 1800–2100, `year_from` after `year_to`
    /// or a malformed id list is an error naming the parameter.
    pub fn parse(q: &HashMap<String, String>, genres: &[String]) -> Result<Self, FilterError> {
        let genre_list = |param: &'static str| -> Result<Vec<String>, FilterError> {
            let Some(raw) = q.get(param) else {
                return Ok(Vec::new());
            };
            let mut out: Vec<String> = Vec::new();
            for name in raw.split(',').map(str::trim) {
                if name.is_empty() {
                    return Err(bad(param, format!("empty genre in {raw:?}")));
                }
                let known = genres
                    .iter()
                    .find(|g| g.eq_ignore_ascii_case(name))
                    .ok_or_else(|| {
                        bad(
                            param,
                            format!(
                                "unknown genre {name:?}; the catalogue has {}",
                                genres.join(", ")
                            ),
                        )
                    })?;
                if !out.contains(known) {
                    out.push(known.clone());
                }
            }
            Ok(out)
        };
        let year = |param: &'static str| -> Result<Option<u16>, FilterError> {
            let Some(raw) = q.get(param) else {
                return Ok(None);
            };
            match raw.trim().parse::<u16>() {
                Ok(y) if (1800..=2100).contains(&y) => Ok(Some(y)),
                _ => Err(bad(
                    param,
                    format!("must be a year from 1800 to 2100, got {raw:?}"),
                )),
            }
        };
        let exclude = match q.get("exclude") {
            None => Vec::new(),
            Some(raw) => {
                let ids = raw
                    .split(',')
                    .map(|s| s.trim().parse::<u64>())
                    .collect::<Result<Vec<u64>, _>>()
                    .map_err(|_| {
                        bad(
                            "exclude",
                            format!("must be movie ids separated by commas, got {raw:?}"),
                        )
                    })?;
                if ids.len() > MAX_EXCLUDE {
                    return Err(bad(
                        "exclude",
                        format!("at most {MAX_EXCLUDE} movie ids, got {}", ids.len()),
                    ));
                }
                ids
            }
        };
        let f = Filter {
            genre: genre_list("genre")?,
            exclude_genre: genre_list("exclude_genre")?,
            year_from: year("year_from")?,
            year_to: year("year_to")?,
            exclude,
        };
        if let (Some(a), Some(b)) = (f.year_from, f.year_to) {
            if a > b {
                return Err(bad("year_from", format!("{a} is after year_to {b}")));
            }
        }
        if let Some(g) = f.genre.iter().find(|g| f.exclude_genre.contains(g)) {
            return Err(bad(
                "exclude_genre",
                format!("{g:?} is also asked for in genre"),
            ));
        }
        Ok(f)
    }

    /// No filter given.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether a movie of `genres` and `year` passes every filter but `exclude`.
    pub fn admits(&self, genres: &[String], year: Option<u16>) -> bool {
        let any_of = |want: &[String]| genres.iter().any(|g| want.contains(g));
        (self.genre.is_empty() || any_of(&self.genre))
            && !any_of(&self.exclude_genre)
            && self.year_from.is_none_or(|a| year.is_some_and(|y| y >= a))
            && self.year_to.is_none_or(|b| year.is_some_and(|y| y <= b))
    }

    /// The item indices this filter drops, of a catalogue given as
    /// `(movie_id, genres, year)` per index.
    pub fn dropped<'a>(
        &self,
        items: impl IntoIterator<Item = (u64, &'a [String], Option<u16>)>,
    ) -> Vec<u32> {
        items
            .into_iter()
            .enumerate()
            .filter(|(_, (id, genres, year))| {
                !self.admits(genres, *year) || self.exclude.contains(id)
            })
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// The filter as JSON for provenance and traces (`null` when empty).
    pub fn to_json(&self) -> serde_json::Value {
        if self.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

/// Why a list is shorter than asked, for the response body: `None` when
/// `k` items came back.
pub fn short_reason(asked: usize, got: usize, filter: &Filter) -> Option<String> {
    (got < asked).then(|| {
        if filter.is_empty() {
            format!("only {got} unseen movies remain for this user")
        } else {
            format!("only {got} unseen movies pass the filter")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn genres() -> Vec<String> {
        ["Action", "Comedy", "Sci-Fi", "Children's"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn genres_match_the_catalogue_case_insensitively_and_unknown_ones_are_named() {
        let f = Filter::parse(
            &q(&[("genre", "comedy, SCI-FI"), ("exclude_genre", "children's")]),
            &genres(),
        )
        .unwrap();
        assert_eq!(f.genre, vec!["Comedy", "Sci-Fi"]);
        assert_eq!(f.exclude_genre, vec!["Children's"]);
        let e = Filter::parse(&q(&[("genre", "Comedy,Western")]), &genres()).unwrap_err();
        assert_eq!(e.param, "genre");
        assert!(
            e.detail.contains("Western") && e.detail.contains("Sci-Fi"),
            "{e}"
        );
        let e = Filter::parse(&q(&[("exclude_genre", "")]), &genres()).unwrap_err();
        assert_eq!(e.param, "exclude_genre");
        let e = Filter::parse(
            &q(&[("genre", "Action"), ("exclude_genre", "action")]),
            &genres(),
        )
        .unwrap_err();
        assert_eq!(e.param, "exclude_genre");
    }

    #[test]
    fn years_and_ids_are_checked_with_the_parameter_named() {
        for (p, v) in [
            ("year_from", "abc"),
            ("year_to", "1700"),
            ("year_from", "-1"),
            ("exclude", "1,x"),
            ("exclude", ""),
        ] {
            let e = Filter::parse(&q(&[(p, v)]), &genres()).unwrap_err();
            assert_eq!(e.param, p, "{p}={v}: {e}");
        }
        let e = Filter::parse(&q(&[("year_from", "1999"), ("year_to", "1990")]), &genres())
            .unwrap_err();
        assert_eq!(e.param, "year_from");
        let many = (0..=MAX_EXCLUDE)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            Filter::parse(&q(&[("exclude", &many)]), &genres())
                .unwrap_err()
                .param,
            "exclude"
        );
        let f = Filter::parse(
            &q(&[
                ("year_from", "1990"),
                ("year_to", "1990"),
                ("exclude", "7, 9"),
            ]),
            &genres(),
        )
        .unwrap();
        assert_eq!(
            (f.year_from, f.year_to, f.exclude.clone()),
            (Some(1990), Some(1990), vec![7, 9])
        );
        assert!(Filter::parse(&q(&[("k", "5")]), &genres())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn dropped_items_are_those_failing_any_filter() {
        let g = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cat = [
            (10, g(&["Action"]), Some(1995)),
            (11, g(&["Comedy", "Action"]), Some(1985)),
            (12, g(&["Sci-Fi"]), None),
            (13, g(&["Comedy"]), Some(1999)),
        ];
        let view = || cat.iter().map(|(id, gs, y)| (*id, gs.as_slice(), *y));
        let f = Filter::parse(&q(&[("genre", "Action,Sci-Fi")]), &genres()).unwrap();
        assert_eq!(f.dropped(view()), vec![3]);
        let f = Filter::parse(&q(&[("exclude_genre", "Action")]), &genres()).unwrap();
        assert_eq!(f.dropped(view()), vec![0, 1]);
        // A movie of unknown year fails any year bound.
        let f = Filter::parse(&q(&[("year_from", "1990")]), &genres()).unwrap();
        assert_eq!(f.dropped(view()), vec![1, 2]);
        let f = Filter::parse(&q(&[("year_to", "1990"), ("exclude", "11")]), &genres()).unwrap();
        assert_eq!(f.dropped(view()), vec![0, 1, 2, 3]);
        assert!(Filter::default().dropped(view()).is_empty());
        assert_eq!(short_reason(5, 5, &f), None);
        assert!(short_reason(5, 2, &f).unwrap().contains("filter"));
    }
}
