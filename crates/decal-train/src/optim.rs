//! Optimisers with inspectable, saveable state: Adam, AdamW and SGD (momentum / Nesterov), plus
//! gradient clipping by global norm.
//!
//! tch's `nn::Optimizer` keeps its moments inside libtorch where they cannot be saved, so an
//! interrupted run could not resume exactly. These optimisers hold their state as named tensors
//! (`exp_avg.<param>`, `exp_avg_sq.<param>`, `momentum_buffer.<param>`) next to a step counter, and
//! each update reproduces the single-tensor (non-foreach, non-fused) code path of `torch.optim` 2.x
//! operation by operation, so the trajectories agree with PyTorch's to rounding (pinned in
//! `tests/stage1_optim.rs` against `tests/golden/make_golden.py`).
//!
//! Weight decay: `Adam`/`SGD` use torch's **coupled** decay (`grad += wd·θ`, i.e. an L2 penalty
//! `wd/2·Σθ²`); `AdamW` uses **decoupled** decay (`θ ← θ·(1 − lr·wd)` before the Adam step,
//! Loshchilov & Hutter 2019).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{nn::VarStore, Kind, Tensor};

/// Errors of optimiser construction and state loading.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A hyper-parameter is out of range.
    #[error("invalid optimiser setting: {0}")]
    Invalid(String),
    /// Saved state does not match the model's parameters.
    #[error("optimiser state does not match the model: {0}")]
    StateMismatch(String),
    /// A libtorch error while loading/saving state.
    #[error("optimiser state: {0}")]
    Torch(#[from] tch::TchError),
}

/// Optimiser choice and hyper-parameters, as written in `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// `torch.optim.Adam` (seed: lr 1e-4, betas 0.9/0.999, eps 1e-8, no decay).
    Adam {
        /// β₁.
        beta1: f64,
        /// β₂.
        beta2: f64,
        /// ε added to the denominator.
        eps: f64,
        /// Coupled L2 weight decay (`grad += wd·θ`).
        weight_decay: f64,
    },
    /// `torch.optim.AdamW` (decoupled weight decay).
    #[serde(rename = "adamw")]
    AdamW {
        /// β₁.
        beta1: f64,
        /// β₂.
        beta2: f64,
        /// ε added to the denominator.
        eps: f64,
        /// Decoupled weight decay (`θ ← θ·(1 − lr·wd)`).
        weight_decay: f64,
    },
    /// `torch.optim.SGD` with optional (Nesterov) momentum.
    Sgd {
        /// Momentum factor (0 = plain SGD).
        momentum: f64,
        /// Dampening of the momentum update.
        dampening: f64,
        /// Nesterov momentum (needs `momentum > 0` and `dampening = 0`).
        nesterov: bool,
        /// Coupled L2 weight decay (`grad += wd·θ`).
        weight_decay: f64,
    },
}

impl OptimizerConfig {
    /// The seed's optimiser: Adam, betas (0.9, 0.999), eps 1e-8, no weight decay (§8.1).
    pub fn seed_adam() -> Self {
        OptimizerConfig::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// AdamW with torch's defaults except the given decay.
    pub fn adamw(weight_decay: f64) -> Self {
        OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// SGD with the given momentum, Nesterov flag and decay (no dampening).
    pub fn sgd(momentum: f64, nesterov: bool, weight_decay: f64) -> Self {
        OptimizerConfig::Sgd {
            momentum,
            dampening: 0.0,
            nesterov,
            weight_decay,
        }
    }

    /// Short name: `adam`, `adamw`, `sgd`.
    pub fn short_name(&self) -> &'static str {
        match self {
            OptimizerConfig::Adam { .. } => "adam",
            OptimizerConfig::AdamW { .. } => "adamw",
            OptimizerConfig::Sgd { .. } => "sgd",
        }
    }

    /// Checks ranges (torch's own checks).
    pub fn validate(&self) -> Result<(), OptimError> {
        let bad = |m: String| Err(OptimError::Invalid(m));
        match *self {
            OptimizerConfig::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | OptimizerConfig::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) {
                    return bad(format!("betas ({beta1}, {beta2}) must be in [0, 1)"));
                }
                if eps.is_nan() || eps < 0.0 {
                    return bad(format!("eps {eps} must be >= 0"));
                }
                if weight_decay.is_nan() || weight_decay < 0.0 {
                    return bad(format!("weight decay {weight_decay} must be >= 0"));
                }
            }
            OptimizerConfig::Sgd {
                momentum,
                dampening,
                nesterov,
                weight_decay,
            } => {
                if momentum.is_nan()
                    || momentum < 0.0
                    || weight_decay.is_nan()
                    || weight_decay < 0.0
                    || !dampening.is_finite()
                {
                    return bad(format!(
                        "sgd momentum {momentum} and weight decay {weight_decay} must be >= 0"
                    ));
                }
                if nesterov && (momentum <= 0.0 || dampening != 0.0) {
                    return bad("nesterov momentum requires momentum > 0 and zero dampening".into());
                }
            }
        }
        Ok(())
    }
}

/// Trainable parameters of a [`VarStore`] with their names, sorted by name (a stable order for state
/// files and for the global gradient norm).
pub fn named_trainable(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// An optimiser over named parameters whose state can be saved and restored exactly.
#[derive(Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<(String, Tensor)>,
    /// Per-parameter state tensors, keyed `"<slot>.<param name>"`.
    state: BTreeMap<String, Tensor>,
    /// Number of completed `step` calls (torch's per-parameter `step`, identical for every parameter here).
    steps: u64,
}

impl Optimizer {
    /// Builds an optimiser over `params` (e.g. [`named_trainable`]).
    pub fn new(config: OptimizerConfig, params: Vec<(String, Tensor)>) -> Result<Self, OptimError> {
        config.validate()?;
        Ok(Optimizer {
            config,
            params,
            state: BTreeMap::new(),
            steps: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Number of completed steps.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The parameters being optimised.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Sets every gradient to zero (`set_to_none` semantics are not needed: the next backward
    /// overwrites by accumulation into zeros).
    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// Scales gradients so that their global L2 norm is at most `max_norm`
    /// (`torch.nn.utils.clip_grad_norm_`, norm type 2: coefficient `max_norm / (norm + 1e-6)`, clamped
    /// at 1). Returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        tch::no_grad(|| {
            let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
            let total = Tensor::stack(&norms, 0).norm();
            // torch evaluates `max_norm / (total + 1e-6)` as `reciprocal(total + 1e-6) * max_norm`.
            let coef = ((&total + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
            for g in &grads {
                let mut g = g.shallow_clone();
                let _ = g.g_mul_(&coef.to_kind(g.kind()));
            }
            total.double_value(&[])
        })
    }

    /// Global L2 norm of the current gradients (no clipping).
    pub fn grad_norm(&self) -> f64 {
        tch::no_grad(|| {
            let norms: Vec<Tensor> = self
                .params
                .iter()
                .map(|(_, p)| p.grad())
                .filter(|g| g.defined())
                .map(|g| g.norm().to_kind(Kind::Double))
                .collect();
            if norms.is_empty() {
                0.0
            } else {
                Tensor::stack(&norms, 0).norm().double_value(&[])
            }
        })
    }

    fn slot(&mut self, slot: &str, name: &str, like: &Tensor) -> Tensor {
        self.state
            .entry(format!("{slot}.{name}"))
            .or_insert_with(|| like.zeros_like())
            .shallow_clone()
    }

    /// One update with learning rate `lr`. Parameters without a gradient are skipped (as torch does).
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let step = self.steps as f64;
        let config = self.config.clone();
        let params: Vec<(String, Tensor)> = self
            .params
            .iter()
            .map(|(n, p)| (n.clone(), p.shallow_clone()))
            .collect();
        tch::no_grad(|| {
            for (name, p) in &params {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let mut param = p.shallow_clone();
                match config {
                    OptimizerConfig::Adam {
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                    }
                    | OptimizerConfig::AdamW {
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                    } => {
                        let decoupled = matches!(config, OptimizerConfig::AdamW { .. });
                        let grad = if decoupled {
                            if weight_decay != 0.0 {
                                let _ = param.g_mul_scalar_(1.0 - lr * weight_decay);
                            }
                            grad
                        } else if weight_decay != 0.0 {
                            grad.g_add(&(&param * weight_decay))
                        } else {
                            grad
                        };
                        let mut exp_avg = self.slot("exp_avg", name, &param);
                        let mut exp_avg_sq = self.slot("exp_avg_sq", name, &param);
                        // torch: exp_avg.lerp_(grad, 1 − β₁); exp_avg_sq.mul_(β₂).addcmul_(grad, grad, 1 − β₂).
                        let _ = exp_avg.lerp_(&grad, 1.0 - beta1);
                        let _ = exp_avg_sq.g_mul_scalar_(beta2);
                        let _ = exp_avg_sq.addcmul_(&(&grad * (1.0 - beta2)), &grad);
                        let bias_correction1 = 1.0 - beta1.powf(step);
                        let bias_correction2 = 1.0 - beta2.powf(step);
                        let step_size = lr / bias_correction1;
                        let denom = (exp_avg_sq.sqrt() / bias_correction2.sqrt()) + eps;
                        let _ = param.addcdiv_(&(&exp_avg * -step_size), &denom);
                    }
                    OptimizerConfig::Sgd {
                        momentum,
                        dampening,
                        nesterov,
                        weight_decay,
                    } => {
                        let mut d_p = if weight_decay != 0.0 {
                            grad.g_add(&(&param * weight_decay))
                        } else {
                            grad
                        };
                        if momentum != 0.0 {
                            let key = format!("momentum_buffer.{name}");
                            let buf = match self.state.get(&key) {
                                None => {
                                    let b = d_p.detach().copy();
                                    self.state.insert(key, b.shallow_clone());
                                    b
                                }
                                Some(b) => {
                                    let mut b = b.shallow_clone();
                                    let _ = b.g_mul_scalar_(momentum);
                                    let _ = b.g_add_(&(&d_p * (1.0 - dampening)));
                                    b
                                }
                            };
                            d_p = if nesterov {
                                d_p.g_add(&(&buf * momentum))
                            } else {
                                buf
                            };
                        }
                        let _ = param.g_add_(&(&d_p * -lr));
                    }
                }
            }
        });
    }

    /// The state as named tensors (for a safetensors file), plus the step counter.
    pub fn state_tensors(&self) -> (Vec<(String, Tensor)>, u64) {
        (
            self.state
                .iter()
                .map(|(k, v)| (k.clone(), v.shallow_clone()))
                .collect(),
            self.steps,
        )
    }

    /// Restores state saved by [`Optimizer::state_tensors`]; every entry must name a known slot of a
    /// known parameter with the parameter's shape.
    pub fn load_state(
        &mut self,
        tensors: Vec<(String, Tensor)>,
        steps: u64,
    ) -> Result<(), OptimError> {
        let mut state = BTreeMap::new();
        for (key, value) in tensors {
            let (slot, name) = key
                .split_once('.')
                .ok_or_else(|| OptimError::StateMismatch(format!("malformed state key {key:?}")))?;
            let expected_slots: &[&str] = match self.config {
                OptimizerConfig::Adam { .. } | OptimizerConfig::AdamW { .. } => {
                    &["exp_avg", "exp_avg_sq"]
                }
                OptimizerConfig::Sgd { .. } => &["momentum_buffer"],
            };
            if !expected_slots.contains(&slot) {
                return Err(OptimError::StateMismatch(format!(
                    "state slot {slot:?} does not belong to a {} optimiser",
                    self.config.short_name()
                )));
            }
            let param = self
                .params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p)
                .ok_or_else(|| {
                    OptimError::StateMismatch(format!("state for unknown parameter {name:?}"))
                })?;
            if param.size() != value.size() {
                return Err(OptimError::StateMismatch(format!(
                    "{key}: shape {:?} but the parameter has {:?}",
                    value.size(),
                    param.size()
                )));
            }
            let v = value.to_device(param.device()).to_kind(param.kind());
            state.insert(key, v);
        }
        self.state = state;
        self.steps = steps;
        Ok(())
    }
}
