use super::*;

fn ex(user: u64, variant: Option<&str>, movies: &[u64]) -> Exposure {
    Exposure {
        request_id: None,
        user_id: user,
        model_version: "v1".into(),
        variant: variant.map(str::to_string),
        ts_ms: 0,
        movie_ids: movies.to_vec(),
    }
}

fn rating(user: u64, ts_ms: i64) -> Rating {
    Rating {
        user_id: user,
        movie_id: 1,
        rating: 4.0,
        ts_ms,
    }
}

/// Catalogue of 20 movies, popularity 100 for movie 1, 50 for movie 2,
/// 1 for the rest. Head (top 10% of 20 = positions 0, 1): movies 1, 2.
/// Primary users 1, 2 were shown [1, 2]; candidate user 3 [3, 4].
/// User 1 has 6 ratings (light), others none (cold start).
#[test]
fn groups_segments_checks_and_datums() {
    let catalog = Catalog::from_items((1..=20).map(|m| {
        (
            m,
            if m == 1 {
                100
            } else if m == 2 {
                50
            } else {
                1
            },
        )
    }));
    let mut users = HashMap::new();
    users.insert(
        1,
        UserMeta {
            gender: "F".into(),
            age_band: "25-34".into(),
        },
    );
    let input = AuditInput {
        exposures: vec![
            ex(1, Some("primary"), &[1, 2]),
            ex(2, Some("primary"), &[1, 2]),
            ex(3, Some("candidate"), &[3, 4]),
        ],
        ratings: (0..6).map(|i| rating(1, i * 86_400_000)).collect(),
        catalog,
        users,
        window: Some(Window {
            from_ms: 0,
            to_ms: 3_600_000,
        }),
        ..AuditInput::default()
    };
    let r = audit(input, &AuditConfig::default(), 5);
    assert_eq!(r.audit_id, "audit-19700101T010000Z");
    assert_eq!(r.groups.len(), 2);
    let cand = &r.groups[0];
    assert_eq!(
        (cand.variant.as_deref(), cand.users),
        (Some("candidate"), 1)
    );
    assert_eq!(cand.metrics.catalog_coverage, Some(2.0 / 20.0));
    // Overall: 4 of 20 exposed (0.2 < 0.4 fails); counts 2,2,1,1.
    let cov = &r.checks[0];
    assert_eq!((cov.value, cov.passed), (Some(0.2), Some(false)));
    assert!(!r.passed);
    let seg = |d: &str, s: &str| {
        r.segments
            .iter()
            .find(|x| x.dimension == d && x.segment == s)
            .unwrap_or_else(|| panic!("segment {d}/{s}"))
            .clone()
    };
    let p = seg("variant", "primary");
    assert_eq!((p.users, p.requests, p.exposures), (2, 2, 4));
    assert!((p.user_share - 2.0 / 3.0).abs() < 1e-12);
    assert!((p.exposure_share - 4.0 / 6.0).abs() < 1e-12);
    assert_eq!(p.mean_popularity, 75.0);
    assert_eq!(p.head_share_by_popularity, 1.0);
    let c = seg("variant", "candidate");
    assert_eq!((c.mean_popularity, c.head_share_by_popularity), (1.0, 0.0));
    assert_eq!(seg("activity", "light").users, 1);
    assert_eq!(seg("activity", "cold_start").users, 2);
    assert_eq!(seg("gender", "F").requests, 1);
    assert!(r
        .segments
        .iter()
        .all(|s| s.dimension != "gender" || s.segment == "F"));

    let d = datums(&r, "dev");
    let find = |name: &str, mv: &str, v: &str| {
        d.iter()
            .find(|x| {
                x.name == name
                    && x.dimensions
                        == vec![
                            ("Stage".to_string(), "dev".to_string()),
                            ("model_version".to_string(), mv.to_string()),
                            ("variant".to_string(), v.to_string()),
                        ]
            })
            .map(|x| (x.value, x.unit, x.timestamp_ms))
    };
    assert_eq!(
        find("CatalogCoverage", ALL, ALL),
        Some((0.2, "None", 3_600_000))
    );
    assert_eq!(
        find("CatalogCoverage", "v1", "candidate"),
        Some((0.1, "None", 3_600_000))
    );
    assert_eq!(
        find("Exposures", "v1", "primary"),
        Some((4.0, "Count", 3_600_000))
    );
    assert_eq!(
        find("SpamUsersFlagged", ALL, ALL),
        Some((0.0, "Count", 3_600_000))
    );
    assert_eq!(
        find("RatingEvents", ALL, ALL),
        Some((6.0, "Count", 3_600_000))
    );
    assert!(find("SpamUsersFlagged", "v1", "primary").is_none());
}

#[test]
fn an_empty_window_publishes_counts_only_and_passes() {
    let input = AuditInput {
        catalog: Catalog::from_items([(1, 1)]),
        ..AuditInput::default()
    };
    let r = audit(input, &AuditConfig::default(), 1_000);
    assert!(r.passed && r.checks.iter().all(|c| c.passed.is_none()));
    let d = datums(&r, "dev");
    let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
    assert!(names.contains(&"Exposures") && !names.contains(&"CatalogCoverage"));
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["catalog_coverage"].is_null());
    assert_eq!(json["spam"]["flagged_users"], serde_json::json!([]));
}

#[test]
fn activity_buckets() {
    let b: Vec<&str> = [0, 4, 5, 19, 20, 99, 100].map(activity_bucket).to_vec();
    assert_eq!(
        b,
        [
            "cold_start",
            "cold_start",
            "light",
            "light",
            "regular",
            "regular",
            "heavy"
        ]
    );
}
