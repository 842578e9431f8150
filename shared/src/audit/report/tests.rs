use super::*;
use crate::audit::exposure::Catalog;
use crate::audit::spam::Rating;
use crate::audit::{audit, AuditConfig, AuditInput, Exposure};

fn report() -> AuditReport {
    let catalog = Catalog::from_items((1..=50).map(|m| (m, 100 - m)));
    let exposures = (0..40)
        .map(|u| Exposure {
            request_id: None,
            user_id: u,
            model_version: "v1".into(),
            variant: None,
            ts_ms: 0,
            movie_ids: vec![1, 2, 3, 4 + u % 10],
        })
        .collect();
    let mut ratings: Vec<Rating> = (0..40)
        .flat_map(|u| {
            (0..3).map(move |i| Rating {
                user_id: u,
                movie_id: i,
                rating: 3.0,
                ts_ms: i as i64 * 86_400_000,
            })
        })
        .collect();
    ratings.extend((0..30).map(|i| Rating {
        user_id: 999,
        movie_id: i,
        rating: 5.0,
        ts_ms: i as i64 * 1000,
    }));
    let input = AuditInput {
        exposures,
        ratings,
        catalog,
        ..AuditInput::default()
    };
    audit(input, &AuditConfig::default(), 0)
}

/// Renders an SVG and counts pixels of roughly the colour `rgb`.
fn pixels(svg: &str, rgb: (u8, u8, u8)) -> usize {
    let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default())
        .unwrap_or_else(|e| panic!("invalid SVG: {e}\n{svg}"));
    let size = tree.size().to_int_size();
    assert_eq!((size.width(), size.height()), (640, 400));
    let mut pm = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pm.as_mut(),
    );
    if let Ok(dir) = std::env::var("MOVIE_RECS_CHART_DIR") {
        let name = format!("{dir}/chart-{}-{}.png", svg.len(), rgb.0);
        pm.save_png(name).unwrap();
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

const BLUE: (u8, u8, u8) = (0x1f, 0x77, 0xb4);
const ORANGE: (u8, u8, u8) = (0xff, 0x7f, 0x0e);
const RED: (u8, u8, u8) = (0xd6, 0x27, 0x28);

#[test]
fn charts_render_with_their_marks() {
    let r = report();
    assert_eq!(r.spam.flagged_users, vec![999]);
    // The Lorenz curve is drawn in blue.
    assert!(pixels(&lorenz_svg(&r), BLUE) > 200);
    // Tier bars in both colours; the head tiers are amplified (> 1).
    let tiers = tiers_svg(&r);
    assert!(pixels(&tiers, BLUE) > 500 && pixels(&tiers, ORANGE) > 500);
    // Spam histogram: ordinary users blue, the flagged one in red, past k.
    let spam = spam_svg(&r);
    assert!(pixels(&spam, BLUE) > 100 && pixels(&spam, RED) > 50);
    // With no data the charts still render (and say so).
    let empty = audit(AuditInput::default(), &AuditConfig::default(), 0);
    assert_eq!(pixels(&lorenz_svg(&empty), BLUE), 0);
    assert!(lorenz_svg(&empty).contains("no exposures"));
    pixels(&tiers_svg(&empty), BLUE);
    pixels(&spam_svg(&empty), BLUE);
}

#[test]
fn markdown_and_files() {
    let r = report();
    let md = markdown(&r);
    for part in [
        "# Audit",
        "| catalog_coverage |",
        "### Tiers by exposure (legacy)",
        "### Tiers by training popularity",
        "## Rating spam",
        "| 999 | 30 | 30 |",
    ] {
        assert!(md.contains(part), "{part} missing from\n{md}");
    }
    let f = files(&r);
    let names: Vec<&str> = f.iter().map(|x| x.0).collect();
    assert_eq!(
        names,
        [
            "report.json",
            "report.md",
            "lorenz.svg",
            "tiers.svg",
            "spam.svg"
        ]
    );
    let json: serde_json::Value = serde_json::from_slice(&f[0].2).unwrap();
    assert_eq!(json["spam"]["flagged_users"], serde_json::json!([999]));
    assert_eq!(json["exposures"], 160);
}
