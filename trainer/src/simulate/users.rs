//! What the simulated users do: who is active each round, how they react
//! to their lists (position bias, affinity), what they find elsewhere, and
//! the truth their lists are measured against.

use super::*;

/// What users did with a round's lists.
pub(super) struct Responses {
    pub(super) events: Vec<Event>,
    pub(super) watches: usize,
    pub(super) ratings: usize,
    pub(super) organic: usize,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Users react to their lists (and find movies elsewhere) during day `round`.
pub(super) fn respond(
    world: &mut World,
    b: &Behaviour,
    seed: u64,
    round: usize,
    users: &[usize],
    lists: &[Vec<u32>],
) -> Responses {
    let mut out = Responses {
        events: Vec::new(),
        watches: 0,
        ratings: 0,
        organic: 0,
    };
    let day = SIM_START_MS + round as i64 * DAY_MS;
    for (&u, list) in users.iter().zip(lists) {
        let mut rng = rng_for(seed, 1, round as u64, u as u64);
        let mut picked: Vec<(u32, bool)> = Vec::new();
        for (p, &i) in list.iter().enumerate() {
            let examine = 1.0 / ((p + 2) as f64).log2();
            let aff = world.truth.affinity(u as u32, i) as f64;
            let watch = sigmoid(b.watch_slope * (aff - b.watch_threshold));
            if rng.gen::<f64>() < examine && rng.gen::<f64>() < watch {
                picked.push((i, false));
            }
        }
        // Poisson(organic) by inversion.
        let n_organic = {
            let (mut n, mut p, l) = (0usize, 1.0f64, (-b.organic).exp());
            loop {
                p *= rng.gen::<f64>();
                if p <= l {
                    break n;
                }
                n += 1;
            }
        };
        for i in world.organic(u, n_organic, &mut rng) {
            if !picked.iter().any(|x| x.0 == i) {
                picked.push((i, true));
            }
        }
        for (i, organic) in picked {
            world.seen[u].insert(i);
            let ts_ms = day + rng.gen_range(0..DAY_MS - 60_000);
            let (user_id, movie_id) = (u as u64 + 1, i as u64 + 1);
            out.organic += usize::from(organic);
            if rng.gen::<f64>() < b.rate_share {
                out.ratings += 1;
                let rating = world.stars(u, i, &mut rng);
                out.events.push(Event::Rate(Rate {
                    user_id,
                    movie_id,
                    rating,
                    ts_ms,
                }));
            } else {
                out.watches += 1;
                out.events.push(Event::Watch(Watch {
                    user_id,
                    movie_id,
                    minute: None,
                    ts_ms,
                }));
            }
        }
    }
    out
}

/// The served users of a round (the same for every policy).
pub(super) fn active_users(world: &World, b: &Behaviour, seed: u64, round: usize) -> Vec<usize> {
    let mut rng = rng_for(seed, 2, round as u64, 0);
    (0..world.users())
        .filter(|_| rng.gen::<f64>() < b.active_share)
        .collect()
}

/// The round's users in the order they are served: shuffled (seeded), so
/// each audit window sees a sample of all users, as hours of traffic would.
/// (Positions in `users`; the lists are kept in `users`' order.)
pub(super) fn served_order(users: &[usize], seed: u64, round: usize) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..users.len()).collect();
    order.shuffle(&mut rng_for(seed, 3, round as u64, 0));
    order
}

/// `users` in `windows` consecutive slices of near-equal size.
pub(super) fn slices(users: &[usize], windows: usize) -> impl Iterator<Item = &[usize]> + '_ {
    let n = users.len();
    (0..windows).map(move |w| &users[w * n / windows..(w + 1) * n / windows])
}

/// HR@10, NDCG@10 against the truth, and mean true affinity, of the lists.
pub(super) fn truth_metrics(world: &World, users: &[usize], lists: &[Vec<u32>]) -> (f64, f64, f64) {
    let disc = |p: usize| 1.0 / ((p + 2) as f64).log2();
    let (mut hr, mut ndcg, mut aff, mut n_aff) = (0.0, 0.0, 0.0, 0usize);
    for (&u, list) in users.iter().zip(lists) {
        let truth: HashSet<u32> = world.truth_top(u).into_iter().collect();
        let top = &list[..list.len().min(TRUTH_K)];
        let dcg: f64 = top
            .iter()
            .enumerate()
            .filter(|(_, i)| truth.contains(i))
            .map(|(p, _)| disc(p))
            .sum();
        let idcg: f64 = (0..truth.len().min(TRUTH_K)).map(disc).sum();
        if dcg > 0.0 {
            hr += 1.0;
            ndcg += dcg / idcg;
        }
        for &i in list {
            aff += world.truth.affinity(u as u32, i) as f64;
            n_aff += 1;
        }
    }
    let n = users.len().max(1) as f64;
    (hr / n, ndcg / n, aff / n_aff.max(1) as f64)
}
