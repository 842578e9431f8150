use super::*;

fn row(policy: &str, acc: f64, gini: f64) -> Row {
    Row {
        policy: policy.into(),
        accuracy: [("hr@10".into(), acc), ("ndcg@10".into(), acc / 2.0)],
        fairness: Fairness {
            lists: 10,
            catalog_coverage: Some(0.5),
            gini_exposed: Some(gini),
            gini_catalog: Some(0.8),
            top_10_pct_share: Some(0.3),
            tail_share: Some(0.7),
        },
    }
}

#[test]
fn the_chart_draws_each_family_as_a_line_with_the_threshold() {
    let t = Tradeoff {
        data: "d".into(),
        protocol: "ncf",
        users: 10,
        catalog: 20,
        genres: true,
        rows: vec![
            row("none", 0.60, 0.66),
            row("slots:slots=2", 0.59, 0.62),
            row("slots:slots=3", 0.58, 0.60),
            row("exposure:scale=1,protect=2,slots=3", 0.57, 0.30),
            row("exposure:scale=2,protect=2,slots=3", 0.55, 0.25),
        ],
    };
    let svg = t.pareto_svg("T <1>", 0.35);
    assert_eq!(svg.matches("<polyline").count(), 3, "none, slots, exposure");
    assert_eq!(svg.matches("<circle").count(), 5);
    assert!(svg.contains("gini_exposed threshold 0.35") && svg.contains("T &lt;1&gt;"));
    resvg::usvg::Tree::from_str(&svg, &resvg::usvg::Options::default()).unwrap();
    // Fairer (lower Gini) is further left: exposure's points come first.
    let cx = |policy: &str| -> f64 {
        let i = svg.find(&format!("<title>{policy}</title>")).unwrap();
        let c = svg[..i].rfind("cx=\"").unwrap() + 4;
        svg[c..].split('"').next().unwrap().parse().unwrap()
    };
    assert!(cx("exposure:scale=2,protect=2,slots=3") < cx("none"));
}

#[test]
fn splice_replaces_its_own_section_only() {
    let d = splice("# T\n", "a", "one\n");
    assert_eq!(d, "# T\n\n<!-- tradeoff:a -->\none\n<!-- /tradeoff:a -->\n");
    let d = splice(&d, "b", "two\n");
    let d = splice(&d, "a", "uno\n");
    assert!(
        d.contains("uno\n") && !d.contains("one\n") && d.contains("two\n"),
        "{d}"
    );
    assert!(d.find("tradeoff:a").unwrap() < d.find("tradeoff:b").unwrap());
}
