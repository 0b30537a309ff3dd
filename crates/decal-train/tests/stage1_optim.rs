//! decal's Adam / AdamW / SGD (+ gradient clipping) reproduce `torch.optim` trajectories step by step
//! (values from `tests/golden/stage1_make_golden.py`, single-tensor code path, float32 on the CPU), and
//! saving + restoring the optimiser state mid-run continues the same trajectory bit for bit.

use decal_train::optim::{Optimizer, OptimizerConfig};
use serde_json::Value;
use tch::{Kind, Tensor};

fn golden() -> Value {
    serde_json::from_str(include_str!("golden/stage1_golden.json"))
        .expect("golden JSON should parse")
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn config(name: &str) -> OptimizerConfig {
    match name {
        "adam_seed" => OptimizerConfig::seed_adam(),
        "adam_wd" => OptimizerConfig::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        },
        "adamw" => OptimizerConfig::adamw(0.1),
        "sgd_momentum" => OptimizerConfig::sgd(0.9, false, 0.0),
        "sgd_nesterov_wd" => OptimizerConfig::sgd(0.9, true, 5e-4),
        "sgd_plain_clip" => OptimizerConfig::sgd(0.0, false, 0.0),
        other => panic!("unknown golden case {other}"),
    }
}

struct Fixture {
    x: Tensor,
    y: Tensor,
    w0: Vec<f32>,
    b0: Vec<f32>,
}

fn fixture(g: &Value) -> Fixture {
    let y: Vec<i64> = g["opt_y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    Fixture {
        x: Tensor::from_slice(&f32s(&g["opt_x"])).view([16, 6]),
        y: Tensor::from_slice(&y),
        w0: f32s(&g["opt_w0"]),
        b0: f32s(&g["opt_b0"]),
    }
}

fn params(f: &Fixture) -> (Tensor, Tensor) {
    let w = Tensor::from_slice(&f.w0)
        .view([4, 6])
        .set_requires_grad(true);
    let b = Tensor::from_slice(&f.b0).set_requires_grad(true);
    (w, b)
}

fn one_step(
    opt: &mut Optimizer,
    f: &Fixture,
    w: &Tensor,
    b: &Tensor,
    lr: f64,
    clip: Option<f64>,
) -> Option<f64> {
    opt.zero_grad();
    let logits = f.x.matmul(&w.tr()) + b;
    decal_train::losses::cross_entropy(&logits, &f.y).backward();
    let norm = clip.map(|c| opt.clip_grad_norm(c));
    opt.step(lr);
    norm
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.detach().to_kind(Kind::Float).view([-1])).unwrap()
}

#[test]
fn trajectories_match_torch() {
    let g = golden();
    let f = fixture(&g);
    for case in g["optim"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (w, b) = params(&f);
        let mut opt = Optimizer::new(
            config(name),
            vec![
                ("b".into(), b.shallow_clone()),
                ("w".into(), w.shallow_clone()),
            ],
        )
        .unwrap();
        let clip = case["clip"].as_f64();
        for (t, (lr, want)) in case["lrs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["trajectory"].as_array().unwrap())
            .enumerate()
        {
            let norm = one_step(&mut opt, &f, &w, &b, lr.as_f64().unwrap(), clip);
            if let (Some(n), Some(wn)) = (norm, want["norm"].as_f64()) {
                assert!(
                    (n - wn).abs() <= 1e-6 * wn.max(1.0),
                    "{name} step {t}: grad norm {n} vs {wn}"
                );
            }
            for (label, got, want) in [
                ("w", values(&w), f32s(&want["w"])),
                ("b", values(&b), f32s(&want["b"])),
            ] {
                for (i, (a, e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a - e).abs() <= 2e-7 + 2e-6 * e.abs(),
                        "{name} step {t}: {label}[{i}] = {a}, torch {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn state_roundtrip_continues_bit_exactly() {
    let g = golden();
    let f = fixture(&g);
    for name in ["adam_wd", "adamw", "sgd_nesterov_wd"] {
        // Uninterrupted: 6 steps.
        let (w, b) = params(&f);
        let mut opt = Optimizer::new(
            config(name),
            vec![
                ("b".into(), b.shallow_clone()),
                ("w".into(), w.shallow_clone()),
            ],
        )
        .unwrap();
        for _ in 0..6 {
            one_step(&mut opt, &f, &w, &b, 0.05, None);
        }
        // Interrupted after 3 steps: copy weights + state through safetensors, rebuild, continue.
        let (w2, b2) = params(&f);
        let mut opt2 = Optimizer::new(
            config(name),
            vec![
                ("b".into(), b2.shallow_clone()),
                ("w".into(), w2.shallow_clone()),
            ],
        )
        .unwrap();
        for _ in 0..3 {
            one_step(&mut opt2, &f, &w2, &b2, 0.05, None);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optim.safetensors");
        let (state, steps) = opt2.state_tensors();
        let mut named: Vec<(String, Tensor)> = state;
        named.push(("param.w".into(), w2.detach().copy()));
        named.push(("param.b".into(), b2.detach().copy()));
        Tensor::write_safetensors(&named, &path).unwrap();
        let loaded = Tensor::read_safetensors(&path).unwrap();
        let (w3, b3) = params(&f);
        tch::no_grad(|| {
            for (k, v) in &loaded {
                if k == "param.w" {
                    w3.shallow_clone().copy_(v);
                } else if k == "param.b" {
                    b3.shallow_clone().copy_(v);
                }
            }
        });
        let state: Vec<(String, Tensor)> = loaded
            .into_iter()
            .filter(|(k, _)| !k.starts_with("param."))
            .collect();
        let mut opt3 = Optimizer::new(
            config(name),
            vec![
                ("b".into(), b3.shallow_clone()),
                ("w".into(), w3.shallow_clone()),
            ],
        )
        .unwrap();
        opt3.load_state(state, steps).unwrap();
        for _ in 0..3 {
            one_step(&mut opt3, &f, &w3, &b3, 0.05, None);
        }
        assert_eq!(values(&w), values(&w3), "{name}: resumed weights differ");
        assert_eq!(values(&b), values(&b3), "{name}: resumed biases differ");
    }
}

#[test]
fn load_state_rejects_mismatches() {
    let w = Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let mut opt = Optimizer::new(OptimizerConfig::seed_adam(), vec![("w".into(), w)]).unwrap();
    let bad_shape = vec![(
        "exp_avg.w".to_string(),
        Tensor::zeros([3], (Kind::Float, tch::Device::Cpu)),
    )];
    assert!(opt
        .load_state(bad_shape, 1)
        .unwrap_err()
        .to_string()
        .contains("shape"));
    let bad_name = vec![(
        "exp_avg.v".to_string(),
        Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu)),
    )];
    assert!(opt.load_state(bad_name, 1).is_err());
    let bad_slot = vec![(
        "momentum_buffer.w".to_string(),
        Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu)),
    )];
    assert!(opt.load_state(bad_slot, 1).is_err());
    assert!(OptimizerConfig::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        nesterov: true,
        weight_decay: 0.0
    }
    .validate()
    .is_err());
}
