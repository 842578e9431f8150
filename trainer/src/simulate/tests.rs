use super::attack::{attack_events, default_target};
use super::*;

fn world() -> World {
    World::new(&SyntheticConfig {
        users: 200,
        items: 150,
        mean_interactions: 20.0,
        cold_start_users: 5,
        // Mild tastes, pinned: with the default's strong ones a user's
        // best few movies are also their likely finds elsewhere, and the
        // counts below would measure the overlap.
        popularity_alpha: 0.9,
        taste_beta: 2.5,
        seed: 3,
        ..SyntheticConfig::default()
    })
}

#[test]
fn seed_events_fill_the_year_before_the_simulation_at_noon() {
    let w = world();
    let ev = w.seed_events();
    assert_eq!(ev.len(), w.truth.dataset.train.len());
    let mut hours = HashSet::new();
    for (e, x) in ev.iter().zip(&w.truth.dataset.train) {
        let ts = e.ts_ms();
        assert!((SIM_START_MS - 365 * DAY_MS..SIM_START_MS).contains(&ts));
        assert_eq!(ts.rem_euclid(DAY_MS) / HOUR_MS, 12, "noon");
        hours.insert(ts / HOUR_MS);
        assert_eq!(e.user_id(), x.user as u64 + 1);
        assert_eq!(e.movie_id(), Some(x.item as u64 + 1));
    }
    assert!(hours.len() <= 365 && hours.len() > 100, "{}", hours.len());
    // Order in time is kept: the earliest seed event is on the first day.
    let first = ev.iter().map(Event::ts_ms).min().unwrap();
    assert!(first < SIM_START_MS - 364 * DAY_MS);
}

#[test]
fn examined_share_falls_with_position_as_one_over_log2() {
    let mut w = world();
    let b = Behaviour {
        watch_threshold: -100.0, // every examined movie is watched
        organic: 0.0,
        rate_share: 0.5,
        ..Behaviour::default()
    };
    let mut watched = [0usize; 10];
    let mut ratings = 0;
    let mut n = 0;
    // Many rounds of the same users: fresh dice each round.
    for round in 0..40 {
        let users: Vec<usize> = (0..w.users()).collect();
        // Lists of movies nobody has seen, so every position can be watched.
        let lists: Vec<Vec<u32>> = users.iter().map(|_| (140..150).collect()).collect();
        w.seen.iter_mut().for_each(HashSet::clear);
        let r = respond(&mut w, &b, 9, round, &users, &lists);
        for e in &r.events {
            let m = e.movie_id().unwrap() as usize - 1;
            watched[m - 140] += 1;
            ratings += usize::from(matches!(e, Event::Rate(_)));
            let day = SIM_START_MS + round as i64 * DAY_MS;
            assert!((day..day + DAY_MS).contains(&e.ts_ms()));
        }
        assert_eq!(r.organic, 0);
        assert_eq!(r.watches + r.ratings, r.events.len());
        n += users.len();
    }
    for (p, &c) in watched.iter().enumerate() {
        let expect = 1.0 / ((p + 2) as f64).log2();
        let got = c as f64 / n as f64;
        assert!(
            (got - expect).abs() < 0.03,
            "position {p}: {got} vs {expect}"
        );
    }
    let total: usize = watched.iter().sum();
    let share = ratings as f64 / total as f64;
    assert!((share - 0.5).abs() < 0.03, "rated share {share}");
}

#[test]
fn users_watch_what_they_like_and_find_movies_elsewhere() {
    let mut w = world();
    let b = Behaviour {
        organic: 3.0,
        ..Behaviour::default()
    };
    let users: Vec<usize> = (0..w.users()).collect();
    // Each user's list: their 5 best and 5 worst unseen movies, alternating.
    let lists: Vec<Vec<u32>> = users
        .iter()
        .map(|&u| {
            let mut all: Vec<u32> = (0..w.items() as u32)
                .filter(|i| !w.seen[u].contains(i))
                .collect();
            all.sort_by(|a, c| {
                w.truth
                    .affinity(u as u32, *c)
                    .total_cmp(&w.truth.affinity(u as u32, *a))
            });
            let (best, worst) = (&all[..5], &all[all.len() - 5..]);
            best.iter().zip(worst).flat_map(|(a, c)| [*a, *c]).collect()
        })
        .collect();
    let before: usize = w.seen.iter().map(HashSet::len).sum();
    let r = respond(&mut w, &b, 1, 0, &users, &lists);
    let (mut liked, mut disliked) = (0, 0);
    for (&u, l) in users.iter().zip(&lists) {
        for (p, i) in l.iter().enumerate() {
            let got = r
                .events
                .iter()
                .any(|e| e.user_id() == u as u64 + 1 && e.movie_id() == Some(*i as u64 + 1));
            if got && p % 2 == 0 {
                liked += 1;
            } else if got {
                disliked += 1;
            }
        }
    }
    assert!(
        liked > 5 * disliked.max(1),
        "liked {liked}, disliked {disliked}"
    );
    // About 3 organic finds per user, all of them unseen before.
    let per_user = r.organic as f64 / users.len() as f64;
    assert!((per_user - 3.0).abs() < 0.4, "{per_user}");
    let after: usize = w.seen.iter().map(HashSet::len).sum();
    assert_eq!(after - before, r.events.len(), "every event is a new movie");
}

#[test]
fn attack_rates_the_target_five_stars_with_popular_filler() {
    let w = world();
    let a = AttackConfig {
        users: 12,
        filler: 8,
        ..AttackConfig::default()
    };
    let target = default_target(&w);
    let ev = attack_events(&w, &a, target, 5, 2);
    assert_eq!(ev.len(), 12 * 9);
    let mut by_pop: Vec<u32> = w.seed_popularity.clone();
    by_pop.sort_unstable_by(|a, b| b.cmp(a));
    let head_floor = by_pop[w.items() / 10];
    let day = SIM_START_MS + 2 * DAY_MS;
    let mut fakes = HashSet::new();
    for e in &ev {
        let Event::Rate(r) = e else {
            panic!("only ratings")
        };
        assert!(r.user_id > w.users() as u64);
        assert!((day..day + DAY_MS).contains(&r.ts_ms));
        fakes.insert(r.user_id);
        if r.movie_id == target as u64 + 1 {
            assert_eq!(r.rating, 5.0);
        } else {
            assert!(r.rating >= 4.0);
            assert!(w.seed_popularity[r.movie_id as usize - 1] >= head_floor);
        }
    }
    assert_eq!(fakes.len(), 12);
    // The default target sits in the tail of the popularity ranking.
    assert!(w.seed_popularity[target as usize] <= by_pop[w.items() / 2]);
}

#[test]
fn truth_metrics_worked_by_hand() {
    let w = world();
    let u = 0usize;
    let truth = w.truth_top(u);
    assert_eq!(truth.len(), TRUTH_K);
    assert!(truth.iter().all(|i| !w.seen[u].contains(i)));
    let worst = (0..w.items() as u32)
        .filter(|i| !w.seen[u].contains(i) && !truth.contains(i))
        .take(10)
        .collect::<Vec<_>>();
    // The truth itself: HR 1, NDCG 1.
    let (hr, ndcg, _) = truth_metrics(&w, &[u], std::slice::from_ref(&truth));
    assert_eq!((hr, ndcg), (1.0, 1.0));
    // One hit at position 1 (0-based): NDCG = (1/log2 3) / Σ_{p<10} 1/log2(p+2).
    let mut list = worst.clone();
    list[1] = truth[0];
    let (hr, ndcg, _) = truth_metrics(&w, &[u], &[list]);
    let idcg: f64 = (0..10).map(|p| 1.0 / ((p + 2) as f64).log2()).sum();
    assert_eq!(hr, 1.0);
    assert!((ndcg - (1.0 / 3f64.log2()) / idcg).abs() < 1e-12);
    // No hit.
    let (hr, ndcg, _) = truth_metrics(&w, &[u, u], &[worst.clone(), worst]);
    assert_eq!((hr, ndcg), (0.0, 0.0));
}

#[test]
fn bad_configurations_are_refused_with_the_reason() {
    let bad = |f: &dyn Fn(&mut SimConfig)| {
        let mut c = SimConfig::default();
        f(&mut c);
        check(&c).unwrap_err().to_string()
    };
    assert!(bad(&|c| c.k = 0).contains("k must be"));
    assert!(bad(&|c| c.world.items = 10).contains("too small"));
    assert!(bad(&|c| c.behaviour.active_share = 1.5).contains("active share"));
    assert!(bad(&|c| c.behaviour.organic = -1.0).contains("organic"));
    assert!(bad(&|c| c.attack.as_mut().unwrap().target = Some(9999)).contains("not a movie"));
    assert!(bad(&|c| c.attack.as_mut().unwrap().users = 0).contains("fake user"));
    assert!(check(&SimConfig::default()).is_ok());
}
