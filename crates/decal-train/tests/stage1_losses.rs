//! Stage-1 losses pinned against PyTorch 2.11 (values from `tests/golden/stage1_make_golden.py`):
//! loss value and gradient w.r.t. the logits for CE, label smoothing, focal (γ = 3) and adaptive
//! focal (FLSD-53, and a schedule that exercises the BUG-10 fix).

use decal_train::losses::{AdaptiveMode, LossConfig};
use serde_json::Value;
use tch::{Kind, Tensor};

fn golden() -> Value {
    let text = include_str!("golden/stage1_golden.json");
    serde_json::from_str(text).expect("golden JSON should parse")
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn losses_and_gradients_match_torch() {
    let g = golden();
    let shape: Vec<i64> = g["loss_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let logits0 = Tensor::from_slice(&f32s(&g["loss_logits"])).view([shape[0], shape[1]]);
    let labels: Vec<i64> = g["loss_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let labels = Tensor::from_slice(&labels);
    let configs = [
        ("ce", LossConfig::CrossEntropy),
        ("ls0.1", LossConfig::LabelSmoothing { epsilon: 0.1 }),
        ("fl3", LossConfig::Focal { gamma: 3.0 }),
        (
            "fla53",
            LossConfig::AdaptiveFocal {
                gammas: vec![5.0, 3.0],
                probs: vec![0.2, 1.0],
                mode: AdaptiveMode::Fixed,
            },
        ),
        (
            "fla53_bug10",
            LossConfig::AdaptiveFocal {
                gammas: vec![5.0, 3.0],
                probs: vec![0.2, 0.5],
                mode: AdaptiveMode::Fixed,
            },
        ),
    ];
    let cases = g["losses"].as_array().unwrap();
    assert_eq!(cases.len(), configs.len());
    for ((name, config), case) in configs.iter().zip(cases) {
        assert_eq!(case["name"].as_str().unwrap(), *name);
        let loss_fn = config.build().unwrap();
        let logits = logits0.copy().set_requires_grad(true);
        let loss = loss_fn.compute(&logits, &labels).unwrap();
        loss.backward();
        let want = case["loss"].as_f64().unwrap();
        let got = loss.double_value(&[]);
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{name}: loss {got} vs torch {want}"
        );
        let grad: Vec<f32> =
            Vec::<f32>::try_from(&logits.grad().to_kind(Kind::Float).view([-1])).unwrap();
        let want_grad = f32s(&case["grad"]);
        for (i, (a, b)) in grad.iter().zip(&want_grad).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 + 1e-5 * b.abs(),
                "{name}: grad[{i}] {a} vs torch {b}"
            );
        }
    }
}

#[test]
fn seed_mode_rejects_what_the_seed_cannot_compute() {
    // The golden fixture has p_t = 0.5177 >= 0.5 (the largest threshold): the seed crashes (BUG-10).
    let g = golden();
    let logits = Tensor::from_slice(&f32s(&g["loss_logits"])).view([8, 5]);
    let labels: Vec<i64> = g["loss_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let labels = Tensor::from_slice(&labels);
    let seed = LossConfig::AdaptiveFocal {
        gammas: vec![5.0, 3.0],
        probs: vec![0.2, 0.5],
        mode: AdaptiveMode::Seed,
    };
    let err = seed.build().unwrap().compute(&logits, &labels).unwrap_err();
    assert!(err.to_string().contains("0.5"), "{err}");
    // Where the seed is defined, both modes agree (FLSD-53 with thresholds 0.2 and 1).
    let fixed = LossConfig::AdaptiveFocal {
        gammas: vec![5.0, 3.0],
        probs: vec![0.2, 1.0],
        mode: AdaptiveMode::Fixed,
    };
    let seedok = LossConfig::AdaptiveFocal {
        gammas: vec![5.0, 3.0],
        probs: vec![0.2, 1.0],
        mode: AdaptiveMode::Seed,
    };
    let a = fixed
        .build()
        .unwrap()
        .compute(&logits, &labels)
        .unwrap()
        .double_value(&[]);
    let b = seedok
        .build()
        .unwrap()
        .compute(&logits, &labels)
        .unwrap()
        .double_value(&[]);
    assert_eq!(a, b);
    // The per-example γ of the BUG-10 schedule matches the torch script's list.
    let sched =
        decal_train::losses::GammaSchedule::new(&[5.0, 3.0], &[0.2, 0.5], AdaptiveMode::Fixed)
            .unwrap();
    let pt = Tensor::from_slice(&f32s(&g["fla53_bug10_pt"]));
    let gammas: Vec<f32> = Vec::<f32>::try_from(&sched.gammas_for(&pt).unwrap()).unwrap();
    assert_eq!(gammas, f32s(&g["fla53_bug10_gammas"]));
}
