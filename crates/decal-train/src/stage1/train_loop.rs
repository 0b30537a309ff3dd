//! The stage-1 loop ([`train`]): per epoch a reseeded order and augmentation, optimiser steps (with
//! autocast and fp16 loss scaling where the plan asks), validation on the un-augmented validation part
//! ([`predict_logits`], [`val_metrics`]), `best/` selection, early stopping, `last/` for resume.

use std::path::Path;
use std::time::Instant;
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::artifacts::{
    files, save_best, write_metrics, BestMeta, Stage1Provenance, Stage1Summary,
};
use super::{
    DeviceImages, Selection, SplitMix64, Stage1Data, Stage1Error, Stage1Plan, VAL_ECE_BINS,
};
use crate::checkpoint::{self, EpochRecord, TrainState};
use crate::losses;
use crate::optim::{named_trainable, Optimizer};
use crate::precision::{Autocast, GradScaler, GradScalerConfig};
use crate::schedule::Schedule;
use decal_models::ArchConfig;

/// Callbacks for progress display; the CLI renders a live bar or log lines from them.
pub trait Progress {
    /// A message (resume notice, device, dataset sizes).
    fn message(&mut self, _text: &str) {}
    /// An epoch starts with `steps` optimiser steps.
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    /// A training step finished.
    fn step(&mut self, _info: &StepInfo) {}
    /// An epoch finished (after validation).
    fn epoch_end(&mut self, _record: &EpochRecord) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// What [`Progress::step`] receives.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// 0-based epoch.
    pub epoch: usize,
    /// Total epochs.
    pub epochs: usize,
    /// 0-based step in the epoch.
    pub step: usize,
    /// Steps in the epoch.
    pub steps: usize,
    /// Running mean training loss of the epoch.
    pub loss: f64,
    /// Running training accuracy of the epoch.
    pub accuracy: f64,
    /// Training images per second so far in the epoch.
    pub images_per_sec: f64,
    /// Current learning rate.
    pub lr: f64,
}

/// Validation metrics of one pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValMetrics {
    /// Training criterion, example-weighted mean.
    pub loss: f64,
    /// NLL (nats).
    pub nll: f64,
    /// Accuracy (fraction).
    pub accuracy: f64,
    /// Top-label ECE ([`VAL_ECE_BINS`] bins, Guo `(lo, hi]` membership), fraction.
    pub ece: f64,
}

/// Logits `[N, K]` of `model` on `indices` (eval mode, no gradient), on the CPU as f32, with labels.
pub fn predict_logits(
    model: &decal_models::Classifier,
    images: &DeviceImages,
    indices: &[usize],
    batch_size: usize,
    augment: Option<&mut SplitMix64>,
) -> (Tensor, Tensor) {
    let mut rng = augment;
    let mut all_logits = Vec::new();
    let mut all_labels = Vec::new();
    tch::no_grad(|| {
        for chunk in indices.chunks(batch_size) {
            let (x, y) = images.batch(chunk, rng.as_deref_mut());
            all_logits.push(
                model
                    .forward_t(&x, false)
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Float),
            );
            all_labels.push(y.to_device(Device::Cpu));
        }
    });
    (Tensor::cat(&all_logits, 0), Tensor::cat(&all_labels, 0))
}

/// Criterion, NLL, accuracy and ECE of logits against labels (all in f64).
pub fn val_metrics(
    logits: &Tensor,
    labels: &Tensor,
    loss: &losses::Loss,
) -> Result<ValMetrics, Stage1Error> {
    let n = logits.size()[0] as f64;
    let crit = loss.compute_sum(logits, labels)?.double_value(&[]) / n;
    let logits64 = logits.to_kind(Kind::Double);
    let logp = logits64.log_softmax(1, Kind::Double);
    let nll = -logp
        .gather(1, &labels.view([-1, 1]), false)
        .mean(Kind::Double)
        .double_value(&[]);
    let probs = logp.exp();
    let (conf, pred) = probs.max_dim(1, false);
    let correct_t = pred.eq_tensor(labels);
    let accuracy = correct_t
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[]);
    let conf: Vec<f64> = Vec::<f64>::try_from(&conf).map_err(Stage1Error::Torch)?;
    let correct: Vec<bool> = Vec::<bool>::try_from(&correct_t).map_err(Stage1Error::Torch)?;
    let bins =
        decal_metrics::binning::Bins::new(VAL_ECE_BINS, decal_metrics::binning::Membership::Guo);
    let ece = decal_metrics::calibration::ece(&conf, &correct, &bins);
    Ok(ValMetrics {
        loss: crit,
        nll,
        accuracy,
        ece,
    })
}

/// Seeds libtorch's generator for epoch `epoch` (dropout draws): a function of `(seed, epoch)` only.
fn seed_torch_for_epoch(seed: u64, epoch: usize) {
    let s = SplitMix64::for_epoch(seed, epoch, 0x70_72_63_68).next_u64() >> 1;
    decal_models::seeded(s as i64, || ());
}

/// Trains a classifier as `plan` says, writing into `run_dir` (created by the caller with
/// `decal_core::prepare_output_dir`). With `resume`, continues from the newest complete `last/`.
///
/// Reproducibility needs one training at a time per process: weight initialisation and dropout draw from
/// libtorch's process-wide generator, which this function seeds.
pub fn train(
    plan: &Stage1Plan,
    data: &Stage1Data,
    run_dir: &Path,
    device: Device,
    resume: bool,
    progress: &mut dyn Progress,
) -> Result<Stage1Summary, Stage1Error> {
    plan.validate()?;
    let started = Instant::now();
    let num_classes = data.set.num_classes() as i64;
    let arch = ArchConfig::preset(&plan.model, num_classes)?;
    let loss_fn = plan.loss.build()?;

    // Weight init is a function of the seed alone (the resumed run rebuilds, then loads weights).
    let mut vs = VarStore::new(device);
    let model = decal_models::seeded(plan.seed as i64, || {
        decal_models::try_build_classifier(&vs.root(), &arch)
    })?;
    let mut opt = Optimizer::new(plan.optimizer.clone(), named_trainable(&vs))?;
    let params: Vec<Tensor> = opt
        .params()
        .iter()
        .map(|(_, p)| p.shallow_clone())
        .collect();

    let steps_per_epoch = data.train_indices.len().div_ceil(plan.batch_size) as u64;
    let schedule = Schedule::new(
        plan.schedule.clone(),
        plan.lr,
        plan.epochs,
        steps_per_epoch,
        plan.warmup_epochs,
    );

    // Fails early (before writing anything) when autocast is unavailable on this device.
    if let Some(kind) = plan.precision.autocast_kind() {
        drop(Autocast::enter(device, kind).map_err(Stage1Error::Plan)?);
    }
    let scaler_config = GradScalerConfig::default();
    let mut scaler = plan
        .precision
        .uses_loss_scaling()
        .then(|| GradScaler::new(scaler_config.clone()));

    let mut state = TrainState {
        epochs_completed: 0,
        global_step: 0,
        best_value: None,
        best_epoch: None,
        epochs_without_improvement: 0,
        stopped_early: false,
        history: Vec::new(),
        model_sha256: String::new(),
        optimizer_sha256: String::new(),
        grad_scaler: None,
    };
    if resume {
        match checkpoint::find_latest(run_dir)? {
            Some((dir, saved)) => {
                checkpoint::load_into(&dir, &saved, &mut vs, &mut opt)?;
                if let Some(s) = &saved.grad_scaler {
                    scaler = scaler.map(|sc| GradScaler::from_state(sc.config, s.clone()));
                }
                progress.message(&format!(
                    "resuming {} after epoch {} (global step {}) from {}",
                    plan.name,
                    saved.epochs_completed,
                    saved.global_step,
                    dir.display()
                ));
                state = saved;
            }
            None => progress.message(&format!(
                "no checkpoint in {} yet: starting from epoch 0",
                run_dir.display()
            )),
        }
    } else {
        let prov = Stage1Provenance {
            process: decal_core::Provenance::capture(),
            device: format!("{device:?}"),
            threads: tch::get_num_threads().max(0) as usize,
            precision: plan.precision.describe(&scaler_config),
            data_sha256: data.data_hash(),
            split_sha256: data.split_hash(),
            num_train: data.train_indices.len(),
            num_val: data.val_indices.len(),
        };
        decal_core::write_atomic(&run_dir.join(files::CONFIG), plan.to_toml()?.as_bytes())?;
        decal_core::write_json_atomic(&run_dir.join(files::PROVENANCE), &prov)?;
        data.manifest.save(&run_dir.join(files::SPLIT))?;
    }

    let images = DeviceImages::new(&data.set, &data.mean, &data.std, device);
    let meta_for = |epoch: usize, value: f64| BestMeta {
        run: plan.name.clone(),
        dataset: plan.dataset.clone(),
        seed: plan.seed,
        epoch,
        selection: plan.selection,
        value,
        mean: data.mean.clone(),
        std: data.std.clone(),
        loss: plan.loss.short_name().to_string(),
    };

    // The epoch `last/` holds (fp16 runs may defer it, see below).
    let mut last_saved = state.epochs_completed.checked_sub(1);
    while state.epochs_completed < plan.epochs && !state.stopped_early {
        let epoch = state.epochs_completed;
        let epoch_start = Instant::now();
        seed_torch_for_epoch(plan.seed, epoch);
        let mut order = data.train_indices.clone();
        if plan.shuffle {
            SplitMix64::for_epoch(plan.seed, epoch, 1).shuffle(&mut order);
        }
        let mut aug_rng = SplitMix64::for_epoch(plan.seed, epoch, 2);
        let steps = order.len().div_ceil(plan.batch_size);
        progress.epoch_start(epoch, plan.epochs, steps);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0i64, 0usize);
        let skipped_before = scaler.as_ref().map_or(0, |s| s.state.skipped_steps);
        let mut lr = schedule.lr_at(state.global_step);
        for (step, chunk) in order.chunks(plan.batch_size).enumerate() {
            lr = schedule.lr_at(state.global_step);
            let (x, y) = images.batch(
                chunk,
                if plan.augment {
                    Some(&mut aug_rng)
                } else {
                    None
                },
            );
            opt.zero_grad();
            // Only the forward pass is autocast; the loss is computed in float32 (crate::precision).
            let logits = crate::precision::with_autocast(plan.precision, device, || {
                model.forward_t(&x, true)
            })
            .map_err(Stage1Error::Plan)?
            .to_kind(Kind::Float);
            let mut loss = loss_fn.compute(&logits, &y)?;
            if plan.l2 > 0.0 {
                loss += losses::l2_penalty(&params, plan.l2);
            }
            let value = loss.double_value(&[]);
            let diverged = |value: f64| Stage1Error::NonFinite {
                value,
                epoch,
                step,
                global_step: state.global_step,
                run_dir: run_dir.display().to_string(),
            };
            match scaler.as_mut() {
                None => {
                    if !value.is_finite() {
                        return Err(diverged(value));
                    }
                    loss.backward();
                    if plan.clip_grad > 0.0 {
                        opt.clip_grad_norm(plan.clip_grad);
                    }
                    opt.step(lr);
                }
                Some(scaler) => {
                    // fp16: an overflow in the forward pass shows as a non-finite loss and in the backward
                    // pass as non-finite gradients; both skip the step and lower the scale, as
                    // torch.amp.GradScaler does. Persistent failure at every scale is divergence.
                    let found_inf = if value.is_finite() {
                        scaler.scale(&loss).backward();
                        scaler.unscale(&params)
                    } else {
                        true
                    };
                    if !found_inf {
                        if plan.clip_grad > 0.0 {
                            opt.clip_grad_norm(plan.clip_grad);
                        }
                        opt.step(lr);
                    }
                    scaler.update(found_inf);
                    if scaler.gave_up() {
                        return Err(Stage1Error::LossScaleCollapsed {
                            skipped: scaler.state.consecutive_skips,
                            scale: scaler.state.scale,
                            epoch,
                            step,
                            global_step: state.global_step,
                            kept: match last_saved {
                                Some(e) => format!(
                                    "{}/last holds epoch {e}, from before the streak",
                                    run_dir.display()
                                ),
                                None => "no epoch was checkpointed before the streak".into(),
                            },
                        });
                    }
                }
            }
            state.global_step += 1;
            let b = chunk.len();
            // A non-finite loss reaches this point only as a skipped fp16 step; it is left out of the mean.
            loss_sum += if value.is_finite() {
                value * b as f64
            } else {
                0.0
            };
            correct += tch::no_grad(|| {
                logits
                    .argmax(1, false)
                    .eq_tensor(&y)
                    .sum(Kind::Int64)
                    .int64_value(&[])
            });
            seen += b;
            let secs = epoch_start.elapsed().as_secs_f64().max(1e-9);
            progress.step(&StepInfo {
                epoch,
                epochs: plan.epochs,
                step,
                steps,
                loss: loss_sum / seen as f64,
                accuracy: correct as f64 / seen as f64,
                images_per_sec: seen as f64 / secs,
                lr,
            });
        }
        let train_secs = epoch_start.elapsed().as_secs_f64().max(1e-9);

        let mut val_rng = SplitMix64::for_epoch(plan.seed, epoch, 3);
        let (logits, labels) = predict_logits(
            &model,
            &images,
            &data.val_indices,
            plan.eval_batch_size,
            if plan.augment_val && plan.augment {
                Some(&mut val_rng)
            } else {
                None
            },
        );
        let val = val_metrics(&logits, &labels, &loss_fn)?;
        let criterion = match plan.selection {
            Selection::ValNll | Selection::Last => val.nll,
            Selection::ValLoss => val.loss,
        };
        // Strictly smaller replaces; ties keep the earlier epoch (Lightning ModelCheckpoint, §3.3). `last`
        // replaces every epoch whose validation NLL is finite (a diverged epoch keeps the last good weights).
        let improved = criterion.is_finite()
            && (plan.selection == Selection::Last
                || state.best_value.is_none_or(|b| criterion < b));
        if improved {
            save_best(run_dir, &vs, &arch, &meta_for(epoch, criterion))?;
            state.best_value = Some(criterion);
            state.best_epoch = Some(epoch);
            state.epochs_without_improvement = 0;
        } else {
            state.epochs_without_improvement += 1;
        }
        let record = EpochRecord {
            epoch,
            step: state.global_step,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_loss: val.loss,
            val_nll: val.nll,
            val_accuracy: val.accuracy,
            val_ece: val.ece,
            seconds: epoch_start.elapsed().as_secs_f64(),
            train_images_per_sec: seen as f64 / train_secs,
            is_best: improved,
            skipped_steps: scaler.as_ref().map_or(0, |s| s.state.skipped_steps) - skipped_before,
        };
        state.history.push(record.clone());
        state.epochs_completed += 1;
        state.grad_scaler = scaler.as_ref().map(|s| s.state.clone());
        if plan.patience > 0 && state.epochs_without_improvement >= plan.patience {
            state.stopped_early = true;
        }
        // fp16: an epoch that ends inside a run of skipped steps does not replace `last/` (unless it is the
        // final epoch): if the streak turns out to be divergence, `last/` still holds weights from before
        // it. A resumed run recomputes the unsaved epoch bit-identically.
        let finished = state.epochs_completed >= plan.epochs || state.stopped_early;
        if finished || !scaler.as_ref().is_some_and(GradScaler::in_skip_streak) {
            checkpoint::save_last(run_dir, &vs, &opt, &state)?;
            write_metrics(run_dir, &state.history)?;
            last_saved = Some(epoch);
        } else {
            progress.message(&format!(
                "epoch {epoch} ended in a run of {} skipped fp16 steps; last/ {}",
                scaler.as_ref().map_or(0, |s| s.state.consecutive_skips),
                match last_saved {
                    Some(e) => format!("keeps epoch {e}"),
                    None => "is not written yet".into(),
                }
            ));
        }
        progress.epoch_end(&record);
    }

    let best_epoch = state.best_epoch.ok_or_else(|| {
        Stage1Error::Plan(
            "no epoch produced a finite validation criterion; no best checkpoint".into(),
        )
    })?;
    let summary = Stage1Summary {
        name: plan.name.clone(),
        epochs_run: state.epochs_completed,
        stopped_early: state.stopped_early,
        best_epoch,
        selection: plan.selection,
        best_value: state.best_value.unwrap_or(f64::NAN),
        best: state.history[best_epoch].clone(),
        val_ece_definition: format!(
            "top-label ECE, {VAL_ECE_BINS} equal-width bins, (lo, hi] membership (Guo et al. 2017), fraction"
        ),
        num_train: data.train_indices.len(),
        num_val: data.val_indices.len(),
        seconds: started.elapsed().as_secs_f64(),
    };
    decal_core::write_json_atomic(&run_dir.join(files::SUMMARY), &summary)?;
    Ok(summary)
}
