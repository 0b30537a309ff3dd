//! Property tests: permutation invariance, AUROC antisymmetry, and streaming = one-shot for any split and merge
//! order (counts exactly, sums to f64 re-association).

use decal_metrics::ood;
use decal_metrics::profile::Profile;
use decal_metrics::summary::{
    evaluate, KeepRows, PredictionInput, ScoreKind, SummaryAccumulator, Values,
};
use proptest::prelude::*;

/// Random logits `[n, k]` (with some saturated rows) and labels.
fn logits_and_labels() -> impl Strategy<Value = (usize, Vec<f64>, Vec<i64>)> {
    (2usize..6, 1usize..60).prop_flat_map(|(k, n)| {
        (
            Just(k),
            prop::collection::vec(prop_oneof![-5.0f64..5.0, Just(30.0), Just(0.0)], n * k),
            prop::collection::vec(0..k as i64, n),
        )
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn metrics_are_permutation_invariant((k, z, y) in logits_and_labels(), seed in any::<u64>()) {
        let n = y.len();
        let mut order: Vec<usize> = (0..n).collect();
        // Fisher–Yates with a tiny LCG: any permutation will do.
        let mut s = seed | 1;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        let z2: Vec<f64> = order.iter().flat_map(|&i| z[i * k..(i + 1) * k].to_vec()).collect();
        let y2: Vec<i64> = order.iter().map(|&i| y[i]).collect();
        for profile in [Profile::paper(), Profile::default_profile()] {
            let a = evaluate(&PredictionInput::logits_f64(&z, k, &y).unwrap(), &profile);
            let b = evaluate(&PredictionInput::logits_f64(&z2, k, &y2).unwrap(), &profile);
            prop_assert_eq!(a.accuracy, b.accuracy);
            prop_assert!(close(a.ece, b.ece), "ece {} vs {}", a.ece, b.ece);
            prop_assert!(close(a.mce, b.mce));
            prop_assert!(close(a.nll, b.nll));
            prop_assert!(close(a.brier, b.brier));
            prop_assert!(close(a.classwise_ece, b.classwise_ece));
            // The tie-safe equal-mass ECE does not depend on the order of tied confidences.
            if profile.equal_mass_tie_safe {
                prop_assert!(close(a.ece_em.unwrap(), b.ece_em.unwrap()));
            }
        }
    }

    #[test]
    fn auroc_is_antisymmetric(a in prop::collection::vec(prop_oneof![0.0f64..1.0, Just(0.5)], 1..40),
                              b in prop::collection::vec(prop_oneof![0.0f64..1.0, Just(0.5)], 1..40)) {
        let x = ood::auroc(&a, &b);
        let y = ood::auroc(&b, &a);
        prop_assert!((x + y - 1.0).abs() < 1e-12, "{x} + {y}");
        prop_assert!((0.0..=1.0).contains(&x));
        // Negating scores flips the roles too.
        let na: Vec<f64> = a.iter().map(|v| -v).collect();
        let nb: Vec<f64> = b.iter().map(|v| -v).collect();
        prop_assert!((ood::auroc(&nb, &na) - x).abs() < 1e-12);
    }

    #[test]
    fn streaming_equals_one_shot((k, z, y) in logits_and_labels(), cuts in prop::collection::vec(0usize..60, 0..5), reverse in any::<bool>()) {
        let n = y.len();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (n + 1)).collect();
        cuts.push(0);
        cuts.push(n);
        cuts.sort_unstable();
        cuts.dedup();
        for profile in [Profile::paper(), Profile::default_profile()] {
            let one = evaluate(&PredictionInput::logits_f64(&z, k, &y).unwrap(), &profile);
            let mut parts: Vec<SummaryAccumulator> = cuts
                .windows(2)
                .map(|w| {
                    let mut acc = SummaryAccumulator::new(&profile, ScoreKind::Logits, k, KeepRows::default());
                    acc.add(Values::F64(&z[w[0] * k..w[1] * k]), &y[w[0]..w[1]]).unwrap();
                    acc
                })
                .collect();
            if reverse {
                parts.reverse();
            }
            let mut total = parts.remove(0);
            for p in parts {
                total.merge(p);
            }
            let streamed = total.finish(None, Default::default());
            prop_assert_eq!(streamed.n, one.n);
            prop_assert_eq!(streamed.accuracy, one.accuracy);
            prop_assert_eq!(&streamed.reliability.bins.iter().map(|b| b.count).collect::<Vec<_>>(),
                            &one.reliability.bins.iter().map(|b| b.count).collect::<Vec<_>>());
            prop_assert!(close(streamed.ece, one.ece), "{} vs {}", streamed.ece, one.ece);
            prop_assert!(close(streamed.mce, one.mce));
            prop_assert!(close(streamed.rmsce, one.rmsce));
            prop_assert!(close(streamed.nll, one.nll));
            prop_assert!(close(streamed.brier, one.brier));
            prop_assert!(close(streamed.classwise_ece, one.classwise_ece));
            if let (Some(a), Some(b)) = (streamed.ece_em, one.ece_em) {
                prop_assert!(close(a, b));
            }
        }
    }
}

#[test]
fn streaming_errors_count_rows_globally() {
    let profile = Profile::default_profile();
    let mut acc =
        SummaryAccumulator::new(&profile, ScoreKind::Probabilities, 2, KeepRows::default());
    acc.add(Values::F64(&[0.5, 0.5, 0.2, 0.8]), &[0, 1])
        .unwrap();
    let err = acc
        .add(Values::F64(&[0.5, 0.5, 0.2, 0.9]), &[0, 1])
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 3"), "{err}");
}
