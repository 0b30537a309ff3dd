//! Learning-rate schedules as pure functions of the optimiser step (0-based, counted over the whole
//! run), so a resumed run recomputes exactly the learning rate an uninterrupted run would have used.
//!
//! An optional linear warm-up (`warmup_epochs`) precedes any schedule: during the first `W` steps
//! `lr = base · (step + 1) / W`; the main schedule then runs over the remaining steps. The seed uses a
//! constant learning rate with no warm-up (seed-system.md §8.1).

use serde::{Deserialize, Serialize};

/// The schedule's shape, as written in `config.toml` (`kind = "constant" | "cosine" | "multi-step"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// `lr = base` (the seed).
    #[default]
    Constant,
    /// Cosine annealing per step from `base` to `min_lr` over the post-warm-up steps
    /// (`min + (base − min)·(1 + cos(π·t/T))/2`, torch's closed form of `CosineAnnealingLR`).
    Cosine {
        /// Final learning rate (absolute).
        min_lr: f64,
    },
    /// Step decay per epoch: `lr = base · gamma^(number of milestones ≤ epoch)` (torch `MultiStepLR`).
    MultiStep {
        /// 0-based epochs at whose start the rate is multiplied by `gamma`.
        milestones: Vec<usize>,
        /// Multiplicative factor.
        gamma: f64,
    },
}

impl ScheduleConfig {
    /// Short name: `constant`, `cosine`, `multi-step`.
    pub fn short_name(&self) -> &'static str {
        match self {
            ScheduleConfig::Constant => "constant",
            ScheduleConfig::Cosine { .. } => "cosine",
            ScheduleConfig::MultiStep { .. } => "multi-step",
        }
    }
}

/// A schedule resolved against a run's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The shape.
    pub config: ScheduleConfig,
    /// Peak learning rate.
    pub base_lr: f64,
    /// Optimiser steps per epoch (batches per epoch).
    pub steps_per_epoch: u64,
    /// Total steps of the run (`epochs · steps_per_epoch`).
    pub total_steps: u64,
    /// Linear warm-up steps (`round(warmup_epochs · steps_per_epoch)`).
    pub warmup_steps: u64,
}

impl Schedule {
    /// Resolves `config` for a run of `epochs` epochs of `steps_per_epoch` steps.
    pub fn new(
        config: ScheduleConfig,
        base_lr: f64,
        epochs: usize,
        steps_per_epoch: u64,
        warmup_epochs: f64,
    ) -> Self {
        let warmup_steps = (warmup_epochs.max(0.0) * steps_per_epoch as f64).round() as u64;
        Schedule {
            config,
            base_lr,
            steps_per_epoch,
            total_steps: epochs as u64 * steps_per_epoch,
            warmup_steps,
        }
    }

    /// Learning rate of optimiser step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match &self.config {
            ScheduleConfig::Constant => self.base_lr,
            ScheduleConfig::Cosine { min_lr } => {
                let t = (step - self.warmup_steps) as f64;
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let t = t.min(span);
                min_lr
                    + (self.base_lr - min_lr) * (1.0 + (std::f64::consts::PI * t / span).cos())
                        / 2.0
            }
            ScheduleConfig::MultiStep { milestones, gamma } => {
                let epoch = (step / self.steps_per_epoch.max(1)) as usize;
                let decays = milestones.iter().filter(|&&m| m <= epoch).count();
                self.base_lr * gamma.powi(decays as i32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_with_warmup() {
        let s = Schedule::new(ScheduleConfig::Constant, 0.1, 10, 4, 1.0);
        assert_eq!(s.warmup_steps, 4);
        let lrs: Vec<f64> = (0..6).map(|i| s.lr_at(i)).collect();
        for (a, b) in lrs.iter().zip([0.025, 0.05, 0.075, 0.1, 0.1, 0.1]) {
            assert!((a - b).abs() < 1e-15, "{lrs:?}");
        }
    }

    #[test]
    fn cosine_endpoints_and_midpoint() {
        let s = Schedule::new(ScheduleConfig::Cosine { min_lr: 0.0 }, 1.0, 10, 10, 0.0);
        assert_eq!(s.lr_at(0), 1.0);
        assert!((s.lr_at(50) - 0.5).abs() < 1e-12);
        // torch's closed form at t = 25 of 100: (1 + cos(π/4))/2.
        assert!((s.lr_at(25) - (1.0 + (std::f64::consts::FRAC_PI_4).cos()) / 2.0).abs() < 1e-15);
        assert!(s.lr_at(99) > 0.0 && s.lr_at(99) < 1e-3);
        // With warm-up the cosine starts after it.
        let w = Schedule::new(ScheduleConfig::Cosine { min_lr: 0.1 }, 1.0, 10, 10, 2.0);
        assert_eq!(w.lr_at(19), 1.0);
        assert!((w.lr_at(60) - 0.55).abs() < 1e-12);
    }

    #[test]
    fn multi_step_per_epoch() {
        let s = Schedule::new(
            ScheduleConfig::MultiStep {
                milestones: vec![2, 4],
                gamma: 0.1,
            },
            1.0,
            6,
            3,
            0.0,
        );
        let per_epoch: Vec<f64> = (0..6).map(|e| s.lr_at(e * 3 + 1)).collect();
        let want = [1.0, 1.0, 0.1, 0.1, 0.01, 0.01];
        for (a, b) in per_epoch.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{per_epoch:?}");
        }
    }
}
