use super::*;
use rand::{Rng, SeedableRng};

/// Manifests carry metrics as f64 and are compared after a registry round
/// trip: JSON must give back the exact same bits (serde_json's
/// `float_roundtrip`), whatever values a machine's training produced.
#[test]
fn metrics_survive_json_round_trip_bit_for_bit() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for _ in 0..20_000 {
        let x: f64 = rng.gen::<f64>() * 10f64.powi(rng.gen_range(-12..4));
        let s = serde_json::to_string(&x).unwrap();
        let back: f64 = serde_json::from_str(&s).unwrap();
        assert_eq!(back.to_bits(), x.to_bits(), "{x:e} came back as {back:e}");
    }
}

#[test]
fn history_round_trip_and_corruption() {
    let h = vec![vec![1, 5, 9], vec![], vec![2]];
    let bytes = encode_history(&h);
    let d = History::decode(&bytes).unwrap();
    assert_eq!(d.users(), 3);
    assert_eq!(d.items(0), &[1, 5, 9]);
    assert_eq!(d.items(1), &[] as &[u32]);
    assert_eq!(d.items(2), &[2]);
    assert_eq!(d.items(99), &[] as &[u32]);
    assert!(History::decode(&bytes[..bytes.len() - 1]).is_err());
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(History::decode(&bad).is_err());
}

#[test]
fn user_inputs_round_trip_and_corruption() {
    let per_user = vec![vec![(1, 0.25), (3, 1.0)], vec![], vec![(0, 0.5)]];
    let u = UserInputs::new(&per_user);
    let bytes = u.encode();
    let d = UserInputs::decode(&bytes, 4).unwrap();
    assert_eq!(d, u);
    assert_eq!(d.users(), 3);
    assert_eq!(d.get(0), (&[1, 3][..], &[0.25, 1.0][..]));
    let unsorted = UserInputs::new(&[vec![(3, 1.0), (1, 1.0)]]).encode();
    assert!(UserInputs::decode(&unsorted, 4).is_err());
    assert_eq!(d.get(1).0.len(), 0);
    assert_eq!(d.get(7).0.len(), 0, "unknown index: no inputs");
    assert!(UserInputs::decode(&bytes[..bytes.len() - 1], 4).is_err());
    let e = UserInputs::decode(&bytes, 3).unwrap_err().to_string();
    assert!(e.contains("outside the catalogue"), "{e}");
    let mut neg = bytes.clone();
    let last = neg.len() - 4;
    neg[last..].copy_from_slice(&(-1f32).to_le_bytes());
    assert!(UserInputs::decode(&neg, 4).is_err());
    let mut magic = bytes;
    magic[0] = b'X';
    assert!(UserInputs::decode(&magic, 4).is_err());
}

#[test]
fn sha256_known_value() {
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
