//! A small closed-loop simulation end to end (the real training, registry,
//! ONNX Runtime serving, ingest pipeline and audit): deterministic for a seed,
//! with the metrics of every round and the attack's outcome.

use shared::artifact::HyperParams;
use shared::data::synthetic::SyntheticConfig;
use shared::domain::rerank::Policy;
use trainer::simulate::{report, simulate, AttackConfig, SimConfig};

fn small(seed: u64) -> SimConfig {
    SimConfig {
        world: SyntheticConfig {
            users: 300,
            items: 200,
            mean_interactions: 30.0,
            cold_start_users: 5,
            seed,
            ..SyntheticConfig::default()
        },
        rounds: 3,
        k: 10,
        policies: vec![Policy::None, Policy::Slots { slots: 3 }],
        hp: HyperParams {
            factors: 16,
            layers: vec![32, 16, 8],
            epochs: 3,
            patience: 2,
            refit: false,
            seed,
            ..HyperParams::default()
        },
        attack: Some(AttackConfig {
            users: 30,
            ..AttackConfig::default()
        }),
        ..SimConfig::default()
    }
}

#[test]
fn a_small_simulation_is_deterministic_and_measures_every_round() {
    let d = tempfile::tempdir().unwrap();
    let cfg = small(11);
    let a = simulate(&cfg, &d.path().join("a")).unwrap();
    let b = simulate(&cfg, &d.path().join("b")).unwrap();
    assert_eq!(a, b, "the same seed gives the same report");
    let other = simulate(
        &SimConfig {
            attack: None,
            ..small(12)
        },
        &d.path().join("c"),
    )
    .unwrap();
    assert_ne!(
        a.trajectories, other.trajectories,
        "another seed, another run"
    );

    assert_eq!(a.trajectories.len(), 2);
    for t in &a.trajectories {
        assert_eq!(t.rounds.len(), 3);
        let mut trained_on = 0;
        for (r, m) in t.rounds.iter().enumerate() {
            assert_eq!(m.round, r);
            assert_eq!(m.model_version, format!("r{r:02}"));
            assert_eq!(m.users_served, 300);
            // Every round's events reach the lake and the next model.
            assert!(m.train_interactions > trained_on, "{t:?}");
            trained_on = m.train_interactions;
            assert!(m.watches + m.ratings > 0);
            assert_eq!(m.accepted + m.quarantined, m.watches + m.ratings);
            for v in [
                m.hr_at_10,
                m.ndcg_at_10,
                m.catalog_coverage.unwrap(),
                m.gini_catalog.unwrap(),
                m.tail_share.unwrap(),
                m.starvation_index.unwrap(),
            ] {
                assert!((0.0..=1.0).contains(&v), "{m:?}");
            }
            let c = m.catalog_coverage.unwrap() + m.starvation_index.unwrap();
            assert!((c - 1.0).abs() < 1e-9);
            assert!(
                m.top_tier_amplification.unwrap() > 1.0,
                "popular movies are over-exposed"
            );
        }
    }
    // Reserving slots outside the head takes exposure from the top tier.
    for (none, slots) in a.trajectories[0]
        .rounds
        .iter()
        .zip(&a.trajectories[1].rounds)
    {
        assert!(
            slots.top_tier_amplification < none.top_tier_amplification,
            "{none:?}\n{slots:?}"
        );
    }

    let at = a.attack.as_ref().unwrap();
    assert_eq!(at.attack_accepted, 30 * 21);
    assert_eq!(
        at.audit_flagged_fake, 30,
        "the audit flags every fake account"
    );
    let by = |name: &str| at.after.iter().find(|x| x.name.contains(name)).unwrap();
    let (control, none) = (by("control"), by("no mitigation"));
    assert!(
        none.share > control.share,
        "the attack lifts the target: {at:?}"
    );
    let q = by("audit quarantine");
    assert_eq!(q.lift, Some(0.0), "quarantine removes the fake ratings");
    assert_eq!(q.lift_cut, Some(1.0));
    assert!(by("both attack mitigations").lift_cut.unwrap() >= 0.8);

    // The report files: JSON round trip, Markdown tables, one chart per metric.
    let files = report::files(&a, "movie-recs simulate");
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert!(names.contains(&"simulation.md") && names.contains(&"attack.svg"));
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".svg")).count(),
        report::METRICS.len() + 1
    );
    let json: serde_json::Value = serde_json::from_slice(&files[0].1).unwrap();
    assert_eq!(json["trajectories"][1]["policy"], "slots:slots=3");
    let md = String::from_utf8(files[1].1.clone()).unwrap();
    assert!(md.contains("| `slots:slots=3` |") && md.contains("| attack, audit quarantine |"));
    for (name, bytes) in files.iter().filter(|f| f.0.ends_with(".svg")) {
        let svg = String::from_utf8(bytes.clone()).unwrap();
        if name == "attack.svg" {
            // Bars: lists holding the target (blue), target in the top 50 (orange).
            assert!(pixels(name, &svg, (0x1f, 0x77, 0xb4)) > 100, "{name}");
            assert!(pixels(name, &svg, (0xff, 0x7f, 0x0e)) > 100, "{name}");
            continue;
        }
        assert_eq!(
            svg.matches("<polyline").count(),
            2,
            "{name}: one line per policy"
        );
        // Both policies' lines are drawn (blue, orange).
        assert!(pixels(name, &svg, (0x1f, 0x77, 0xb4)) > 100, "{name}");
        assert!(pixels(name, &svg, (0xff, 0x7f, 0x0e)) > 100, "{name}");
    }
    // Without trajectories (attack only) no trajectory charts are written.
    let attack_only = trainer::simulate::SimReport {
        trajectories: Vec::new(),
        ..a.clone()
    };
    let names: Vec<String> = report::files(&attack_only, "")
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert_eq!(names, ["simulation.json", "simulation.md", "attack.svg"]);
}

#[test]
fn the_exposure_controller_runs_with_the_audit_in_the_loop() {
    let d = tempfile::tempdir().unwrap();
    let windows = 8;
    let cfg = SimConfig {
        policies: vec![Policy::None, Policy::from_spec("exposure", 10).unwrap()],
        attack: None,
        windows,
        ..small(5)
    };
    let r = simulate(&cfg, &d.path().join("x")).unwrap();
    let (none, ctl) = (&r.trajectories[0], &r.trajectories[1]);
    assert_eq!(ctl.policy, "exposure:scale=1,protect=2,slots=3");
    let mut report = String::new();
    for (r, (a, b)) in none.rounds.iter().zip(&ctl.rounds).enumerate() {
        report.push_str(&format!(
            "round {r}: none tail {:.3} gini_exposed {:.3} hr {:.3}; exposure tail {:.3} gini_exposed {:.3} top10 {:.3} coverage {:.3} hr {:.3} ({:?} priced, {:?} subsidised)\n",
            a.tail_share.unwrap(), a.gini_exposed.unwrap(), a.hr_at_10,
            b.tail_share.unwrap(), b.gini_exposed.unwrap(), b.top_10_pct_share.unwrap(),
            b.catalog_coverage.unwrap(), b.hr_at_10, b.priced_movies, b.subsidised_movies
        ));
    }
    eprintln!("{report}");
    for (r, (a, b)) in none.rounds.iter().zip(&ctl.rounds).enumerate() {
        // One audit per window, folded into one adjustments version each.
        assert_eq!(
            b.adjustments.as_deref(),
            Some(format!("adj-{:06}", (r + 1) * windows).as_str())
        );
        assert!(a.adjustments.is_none() && a.gini_exposed.is_some());
        // Served traffic is spread far more evenly than the plain ranking's.
        assert!(b.gini_exposed < a.gini_exposed, "{report}");
        assert!(b.catalog_coverage > a.catalog_coverage, "{report}");
        if r > 0 {
            assert!(b.tail_share > a.tail_share, "{report}");
        }
        assert!(b.top_10_pct_share.unwrap() + b.tail_share.unwrap() - 1.0 < 1e-9);
    }
    // After the first day the controller holds the audit's thresholds.
    for b in &ctl.rounds[1..] {
        assert!(b.tail_share.unwrap() >= 0.70, "{report}");
        assert!(b.top_10_pct_share.unwrap() <= 0.30, "{report}");
        assert!(b.gini_exposed.unwrap() <= 0.35, "{report}");
        assert!(b.catalog_coverage.unwrap() >= 0.40, "{report}");
    }
    assert!(ctl.rounds.iter().all(|b| b.priced_movies > Some(0)));
}

/// Renders an SVG and counts pixels of roughly the colour `rgb` (and saves
/// the PNG in `MOVIE_RECS_CHART_DIR`, when set, to look at).
fn pixels(name: &str, svg: &str, rgb: (u8, u8, u8)) -> usize {
    let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default())
        .unwrap_or_else(|e| panic!("{name}: invalid SVG: {e}"));
    let size = tree.size().to_int_size();
    let mut pm = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pm.as_mut(),
    );
    if let Ok(dir) = std::env::var("MOVIE_RECS_CHART_DIR") {
        pm.save_png(format!("{dir}/{name}.png")).unwrap();
    }
    pm.pixels()
        .iter()
        .filter(|p| {
            let c = p.demultiply();
            c.red().abs_diff(rgb.0) < 8
                && c.green().abs_diff(rgb.1) < 8
                && c.blue().abs_diff(rgb.2) < 8
        })
        .count()
}
