//! `decal run` with `[backbone] features = { … }` (and `decal heads`): an experiment on features saved from
//! any model ([`crate::feature_files`]). There are no images and no network, so there is no stage 1, no
//! feature cache and no corruption sweep; everything else is the experiment of the parent module, with
//! its units and their content addressing (`heads/<head>/seed-<s>-<h>/`, `eval/<method>-<h>.json`), its head
//! temperature fits ([`super::fit_head_temperature`]), the evaluation suite ([`crate::suite`]) and the
//! report ([`super::write_report`]).
//!
//! The baseline is the model's own logits when they are given (`test_logits`; `val_logits` for `TS`,
//! `train_logits` for its train NLL, `ood_logits` for its OOD detection): the row `Baseline` evaluates
//! them as they are, divided by the fitted T for `TS`. Without `test_logits` there is no baseline row.
//!
//! With `train_views` (augmented views of the training features) every epoch replaces each training row
//! by one of its views, chosen by [`decal_train::views::ViewSampler`] for the stage-2 seed, and visits the
//! rows in a seeded shuffled order (unless `shuffle = false`).

use super::*;
use crate::feature_files::{FeatureFiles, LoadedFeatures};
use crate::predict::LogitKind;
use decal_models::heads::NormalRng;
use decal_train::views::{ViewCache, ViewSampler};

/// The checks of [`ExperimentConfig::validate`] for a features backbone.
pub(super) fn validate(config: &ExperimentConfig) -> Result<(), String> {
    let files = config
        .backbone
        .features
        .as_ref()
        .expect("called for a features backbone");
    if config.backbone.checkpoint.is_some() || config.backbone.train.is_some() {
        return Err(
            "[backbone] `features` cannot be combined with `checkpoint` or `[backbone.train]`; give one"
                .into(),
        );
    }
    if !config.data.dataset.is_empty() {
        return Err(
            "[data] is not used with [backbone] features (the feature files are the data); remove it"
                .into(),
        );
    }
    // `[features]` describes images through the network; with feature files the training distribution is
    // the files': augmented exactly when `train_views` is given. Only the per-epoch image loop is refused.
    if config.features.mode == "exact" {
        return Err(
            "[features] mode = \"exact\" runs images through the network; with [backbone] features give augmented training views as features.train_views".into(),
        );
    }
    if !config.ood.is_empty() {
        return Err(
            "[[ood]] sets are images; with [backbone] features give OOD features as features.ood = { name = \"O.npy\" }".into(),
        );
    }
    if config.shift.is_some() {
        return Err("[shift] evaluates corrupted images; it needs a network, not [backbone] features (give corrupted-image features as OOD or test files instead)".into());
    }
    if config.temperature_scaling && files.val_logits.is_none() {
        return Err(
            "temperature_scaling = true (the baseline's TS rows) needs features.val_logits".into(),
        );
    }
    if files.val_logits.is_some() && files.test_logits.is_none() {
        return Err("features.val_logits is given without features.test_logits: the baseline is evaluated on test_logits".into());
    }
    Ok(())
}

/// A method to evaluate (one table row, one seed); as the parent's `MethodUnit`.
struct Unit {
    method: String,
    seed: Option<u64>,
    head_dir: Option<PathBuf>,
    num_samples: usize,
    temperature: Option<f64>,
}

/// Augmented training views, `A` of them, each `[N, F]` with the training labels.
enum Views {
    /// Read into memory: view-major values.
    Memory { views: Vec<Vec<f32>>, hash: String },
    /// A decal view cache (`views.json`).
    Cache(Box<ViewCache>),
}

impl Views {
    fn count(&self) -> usize {
        match self {
            Views::Memory { views, .. } => views.len(),
            Views::Cache(c) => c.num_views(),
        }
    }

    fn hash(&self) -> String {
        match self {
            Views::Memory { hash, .. } => hash.clone(),
            Views::Cache(c) => hash_json(c.meta()),
        }
    }

    /// The epoch's training set: row `order[i]` of view `picks[order[i]]`.
    fn epoch_set(
        &self,
        train: &FeatureSet,
        picks: &[u32],
        order: &[usize],
    ) -> Result<FeatureSet, String> {
        let f = train.feature_dim;
        let mut features = vec![0f32; order.len() * f];
        match self {
            Views::Memory { views, .. } => {
                for (i, &r) in order.iter().enumerate() {
                    let v = &views[picks[r] as usize];
                    features[i * f..(i + 1) * f].copy_from_slice(&v[r * f..(r + 1) * f]);
                }
            }
            Views::Cache(c) => {
                let pairs: Vec<(usize, usize)> =
                    order.iter().map(|&r| (picks[r] as usize, r)).collect();
                c.gather(&pairs, &mut features).map_err(|e| e.to_string())?;
            }
        }
        Ok(FeatureSet {
            features,
            labels: order.iter().map(|&r| train.labels[r]).collect(),
            feature_dim: f,
        })
    }
}

/// Loads `train_views` and checks it against the training features.
fn load_views(spec: &Path, train: &FeatureSet) -> Result<Views, String> {
    let what = format!("train_views {}", spec.display());
    let (n, f) = (train.len(), train.feature_dim);
    let (plain, _) = crate::feature_files::split_member(spec);
    if plain.is_dir() && plain.join(decal_train::views::VIEWS_JSON).exists() {
        let cache = ViewCache::open(&plain).map_err(|e| format!("{what}: {e}"))?;
        if cache.len() != n || cache.feature_dim() != f {
            return Err(format!(
                "{what}: {} views of {} rows × {} features, but the training features are {n} × {f}",
                cache.num_views(),
                cache.len(),
                cache.feature_dim()
            ));
        }
        if cache.labels() != train.labels.as_slice() {
            return Err(format!(
                "{what}: its labels differ from the training labels (row r of every view must augment training row r)"
            ));
        }
        return Ok(Views::Cache(Box::new(cache)));
    }
    let mut views = Vec::new();
    if plain.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&plain)
            .map_err(|e| format!("{what}: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "npy"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!("{what}: no .npy files in the folder"));
        }
        for p in files {
            let (v, rows, cols) = crate::feature_files::read_matrix(&p, "train view")?;
            if (rows, cols) != (n, f) {
                return Err(format!(
                    "train view {}: shape [{rows}, {cols}], but the training features are [{n}, {f}]",
                    p.display()
                ));
            }
            views.push(v);
        }
    } else {
        let array = crate::feature_files::read_array(spec).map_err(|e| format!("{what}: {e}"))?;
        if array.shape.len() != 3 || array.shape[1..] != [n, f] || array.shape[0] == 0 {
            return Err(format!(
                "{what}: shape {:?}, expected [A, {n}, {f}] (A views of the {n} × {f} training features)",
                array.shape
            ));
        }
        let a = array.shape[0];
        let values: Vec<f32> = match array.data {
            decal_io::NpyData::F32(v) => v,
            decal_io::NpyData::F64(v) => v.into_iter().map(|x| x as f32).collect(),
            other => {
                return Err(format!(
                    "{what}: expected floating-point values, got dtype {}",
                    other.dtype().code()
                ))
            }
        };
        if let Some(pos) = values.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "{what}: view {}, row {}, column {} is {} (values must be finite)",
                pos / (n * f),
                pos / f % n,
                pos % f,
                values[pos]
            ));
        }
        views = values.chunks(n * f).map(<[f32]>::to_vec).collect();
        debug_assert_eq!(views.len(), a);
    }
    let mut bytes = Vec::new();
    for v in &views {
        bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
    Ok(Views::Memory {
        hash: sha256_bytes(&bytes),
        views,
    })
}

/// Which split a prediction is for: its ε salt (as in the parent: test 1, train 2, validation 3, OOD 100+i).
#[derive(Clone, Copy)]
enum Split {
    Test,
    Train,
    Val,
    Ood(usize),
}

impl Split {
    fn salt(self) -> u64 {
        match self {
            Split::Test => 1,
            Split::Train => 2,
            Split::Val => 3,
            Split::Ood(i) => 100 + i as u64,
        }
    }
}

fn baseline_predictions(logits: &FeatureSet, temperature: f64) -> Predictions {
    Predictions {
        num_classes: logits.feature_dim,
        logits: logits
            .features
            .iter()
            .map(|&v| v as f64 / temperature)
            .collect(),
        kind: LogitKind::Logits,
        labels: logits.labels.clone(),
        neg_mutual_information: None,
    }
}

/// Runs the experiment on feature files into `out` (the parent has written the marker).
pub(super) fn run(
    config: &ExperimentConfig,
    files: &FeatureFiles,
    out: &Path,
    options: &RunOptions,
    log: &mut dyn FnMut(&str),
    started: Instant,
) -> Result<RunSummary, ExperimentError> {
    let device = options.device;
    let mut warnings: Vec<String> = Vec::new();
    let (mut computed, mut reused) = (0usize, 0usize);
    let t = Instant::now();
    let loaded: LoadedFeatures =
        crate::feature_files::load(files).map_err(|message| ExperimentError::Step {
            step: "[backbone] features".into(),
            message,
        })?;
    let views = match &files.train_views {
        Some(p) => Some(load_views(p, &loaded.train.features).map_err(|message| {
            ExperimentError::Step {
                step: "[backbone] features".into(),
                message,
            }
        })?),
        None => None,
    };
    let (train_f, val_f, test_f) = (
        &loaded.train.features,
        &loaded.val.features,
        &loaded.test.features,
    );
    log(&format!(
        "features from files: train {} × {}, validation {}, test {}, {} OOD set(s), {} classes{}{} [{:.1}s]",
        train_f.len(),
        loaded.feature_dim,
        val_f.len(),
        test_f.len(),
        loaded.ood.len(),
        loaded.num_classes,
        views
            .as_ref()
            .map(|v| format!(", {} augmented training views", v.count()))
            .unwrap_or_default(),
        if loaded.test.logits.is_some() {
            ", the model's own logits as the baseline"
        } else {
            ""
        },
        t.elapsed().as_secs_f64()
    ));
    let feature_dim = loaded.feature_dim as i64;
    let num_classes = loaded.num_classes as i64;
    for h in &config.heads {
        head_config(h, h.feature_dim.unwrap_or(feature_dim), num_classes)
            .check_feature_dim(feature_dim)
            .map_err(step(format!("head {:?}", h.name)))?;
    }
    if let Some(n) = options.head_threads {
        tch::set_num_threads(n.max(1) as i32);
    }

    // ---- Stage 2 (as the parent's) ------------------------------------------------------------------
    let features_desc = json!({
        "train": loaded.train.key, "val": loaded.val.key, "source": "feature files",
        "views": views.as_ref().map(Views::hash),
    });
    let mut calibration = serde_json::Map::new();
    let edir = out.join("eval");
    let mut loaded_heads: LoadedHeads = BTreeMap::new();
    let mut units: Vec<Unit> = Vec::new();
    if loaded.test.logits.is_some() {
        units.push(Unit {
            method: "Baseline".into(),
            seed: None,
            head_dir: None,
            num_samples: 0,
            temperature: None,
        });
    }
    for spec in &config.heads {
        for &seed in &config.seeds {
            let s2 = stage2_config(spec, feature_dim, num_classes, seed);
            let unit_hash = hash_json(&json!({"stage2": s2, "features": features_desc}));
            let dir = out
                .join("heads")
                .join(slug(&spec.name))
                .join(format!("seed-{seed}-{}", short(&unit_hash)));
            if dir.join(stage2::HEAD_CONFIG).exists() && !options.force {
                log(&format!(
                    "stage 2: {} seed {seed}: reusing {}",
                    spec.name,
                    dir.display()
                ));
                reused += 1;
            } else {
                let t = Instant::now();
                let mut last_line = String::new();
                let mut on_epoch = |e: &stage2::EpochStats| {
                    last_line = format!(
                        "epoch {}/{}: train loss {:.4}, val NLL {:.4}, val acc {:.2}%",
                        e.epoch + 1,
                        s2.epochs,
                        e.train_loss,
                        e.val_nll,
                        100.0 * e.val_accuracy
                    );
                };
                let trained = match &views {
                    Some(v) => {
                        let sampler = ViewSampler::new(v.count(), seed);
                        let n = train_f.len();
                        let mut per_epoch =
                            |epoch: usize| -> Result<FeatureSet, stage2::Stage2Error> {
                                let picks = sampler.views_for_epoch(epoch, n);
                                let order: Vec<usize> = if s2.shuffle {
                                    NormalRng::new(
                                        seed ^ 0x5649_4557_5348_5546
                                            ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                                    )
                                    .permutation(n)
                                } else {
                                    (0..n).collect()
                                };
                                v.epoch_set(train_f, &picks, &order)
                                    .map_err(stage2::Stage2Error::Features)
                            };
                        stage2::train(
                            &s2,
                            TrainSource::PerEpoch(&mut per_epoch),
                            val_f,
                            device,
                            &mut on_epoch,
                        )
                    }
                    None => stage2::train(
                        &s2,
                        TrainSource::Cached(train_f),
                        val_f,
                        device,
                        &mut on_epoch,
                    ),
                }
                .map_err(step(format!("stage 2: {} seed {seed}", spec.name)))?;
                stage2::save_head(&dir, &trained, features_desc.clone())
                    .map_err(step(format!("saving head {} seed {seed}", spec.name)))?;
                log(&format!(
                    "stage 2: {} seed {seed}: best epoch {} of {} (val NLL {:.4}) in {:.1}s; last {last_line}",
                    spec.name,
                    trained.best_epoch + 1,
                    s2.epochs,
                    trained.history[trained.best_epoch].val_nll,
                    t.elapsed().as_secs_f64()
                ));
                computed += 1;
            }
            let ms: Vec<usize> = if spec.kind == HeadKind::Vtst {
                spec.eval_samples.clone()
            } else {
                vec![0]
            };
            for m in ms {
                let method = if spec.kind == HeadKind::Vtst {
                    if m == 0 {
                        format!("{} mean", spec.name)
                    } else {
                        format!("{} m={m}", spec.name)
                    }
                } else {
                    spec.name.clone()
                };
                units.push(Unit {
                    method: method.clone(),
                    seed: Some(seed),
                    head_dir: Some(dir.clone()),
                    num_samples: m,
                    temperature: None,
                });
                let mut fits = Vec::new();
                if spec.temperature_scaling {
                    fits.push(("TS", HeadTsFit::Exact));
                }
                if spec.temperature_scaling_seed_lbfgs && (spec.kind != HeadKind::Vtst || m == 1) {
                    fits.push(("TS (seed LBFGS)", HeadTsFit::SeedLbfgs));
                }
                for (prefix, fit) in fits {
                    ensure_head_loaded(&mut loaded_heads, &dir, device)?;
                    let (_, head, weights_hash) = &loaded_heads[&dir];
                    let ts_method = format!("{prefix} + {method}");
                    let fitted = fit_head_temperature(
                        &edir,
                        &ts_method,
                        seed,
                        head,
                        weights_hash,
                        m,
                        fit,
                        val_f,
                        &loaded.val.key,
                        unit_eval_seed(config, Some(seed)),
                        options.force,
                        device,
                    )?;
                    let (scaler, was_reused) = match fitted {
                        Ok(fitted) => fitted,
                        Err(e) => {
                            let w = format!("method {ts_method} seed {seed} skipped: its temperature fit on the validation split failed: {e}");
                            log(&format!("warning: {w}"));
                            warnings.push(w);
                            continue;
                        }
                    };
                    if was_reused {
                        reused += 1;
                    } else {
                        computed += 1;
                    }
                    log(&format!(
                        "{ts_method} seed {seed}: T = {:.4} (validation NLL {:.4} → {:.4}, {}{} on {} examples)",
                        scaler.temperature,
                        scaler.nll_before,
                        scaler.nll_after,
                        scaler.fit_method,
                        if scaler.num_samples > 1 { format!(", m = {}", scaler.num_samples) } else { String::new() },
                        val_f.len(),
                    ));
                    calibration.insert(
                        format!("{ts_method} seed {seed}"),
                        serde_json::to_value(&scaler).unwrap_or(Value::Null),
                    );
                    units.push(Unit {
                        method: ts_method,
                        seed: Some(seed),
                        head_dir: Some(dir.clone()),
                        num_samples: m,
                        temperature: Some(scaler.temperature),
                    });
                }
            }
        }
    }
    // The baseline's temperature scaling: both fits on the model's validation logits (as the parent's).
    if let (true, Some(vl)) = (config.temperature_scaling, &loaded.val.logits) {
        let z = baseline_predictions(vl, 1.0);
        let (z, y, k) = (&z.logits, &z.labels, z.num_classes);
        let fits = [
            (
                "TS",
                decal_calib::TemperatureScaler::fit_exact(z, y, k).map_err(|e| e.to_string()),
            ),
            (
                "TS (seed LBFGS)",
                decal_calib::TemperatureScaler::fit_seed_lbfgs(z, y, k).map_err(|e| e.to_string()),
            ),
        ];
        let mut position = 1;
        for (method, fitted) in fits {
            let scaler = match fitted {
                Ok(s) => s,
                Err(e) => {
                    let w = format!("method {method} skipped: its temperature fit on the validation logits failed: {e}");
                    log(&format!("warning: {w}"));
                    warnings.push(w);
                    continue;
                }
            };
            log(&format!(
                "{method}: T = {:.4} (validation NLL {:.4} → {:.4}, {} on {} examples)",
                scaler.temperature,
                scaler.nll_before,
                scaler.nll_after,
                scaler.fit_method,
                y.len()
            ));
            calibration.insert(
                method.to_string(),
                serde_json::to_value(&scaler).unwrap_or(Value::Null),
            );
            units.insert(
                position,
                Unit {
                    method: method.into(),
                    seed: None,
                    head_dir: None,
                    num_samples: 0,
                    temperature: Some(scaler.temperature),
                },
            );
            position += 1;
        }
    }
    if units.is_empty() {
        return Err(ExperimentError::Step {
            step: "[backbone] features".into(),
            message: "nothing to evaluate: no [[heads]] and no test_logits".into(),
        });
    }

    // ---- Evaluation (the parent's suite, records and files) -----------------------------------------
    let settings = EvalSettings {
        profiles: config
            .eval
            .profiles
            .iter()
            .map(|p| Profile::by_name(p).expect("validated profile"))
            .collect(),
        bootstrap: (config.eval.bootstrap > 0).then_some(BootstrapConfig {
            resamples: config.eval.bootstrap,
            seed: config.eval.eval_seed,
            confidence: 0.95,
        }),
    };
    let eval_desc = json!({
        "eval": config.eval, "test": loaded.test.key,
        "ood": loaded.ood.iter().map(|(n, s)| (n.clone(), s.key.clone())).collect::<Vec<_>>(),
        "train": loaded.train.key, "val": loaded.val.key, "logits": loaded.logits_hash, "version": 1,
    });
    let ds_name = files.dataset.clone();
    let mut all_records: Vec<MetricRecord> = Vec::new();
    let mut results = serde_json::Map::new();
    let mut reliability: BTreeMap<String, Vec<decal_metrics::calibration::ReliabilityBins>> =
        BTreeMap::new();
    let histogram_seed = units.iter().filter_map(|u| u.seed).min();
    for unit in &units {
        if let Some(d) = &unit.head_dir {
            ensure_head_loaded(&mut loaded_heads, d, device)?;
        }
        let weights_hash = match &unit.head_dir {
            Some(d) => loaded_heads[d].2.clone(),
            None => loaded.logits_hash.clone(),
        };
        let unit_hash = hash_json(&json!({
            "method": unit.method, "seed": unit.seed, "m": unit.num_samples, "t": unit.temperature,
            "weights": weights_hash, "desc": eval_desc,
        }));
        let seed_tag = unit.seed.map(|s| format!("-seed{s}")).unwrap_or_default();
        let file = edir.join(format!(
            "{}{seed_tag}-{}.json",
            slug(&unit.method),
            short(&unit_hash)
        ));
        let cached_result: Option<Value> = if file.exists() && !options.force {
            std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
        } else {
            None
        };
        let result = match cached_result {
            Some(v) => {
                reused += 1;
                v
            }
            None => {
                let t = Instant::now();
                let eval_seed = unit_eval_seed(config, unit.seed);
                let ctx = RecordContext {
                    run: config.name.clone(),
                    seed: unit.seed,
                    method: unit.method.clone(),
                };
                let head = unit.head_dir.as_ref().map(|d| &loaded_heads[d].1);
                // A head predicts on the features; the baseline is the model's logits of that split, if given.
                let pred = |split: Split| -> Result<Option<Predictions>, ExperimentError> {
                    let (features, logits) = match split {
                        Split::Test => (&loaded.test.features, &loaded.test.logits),
                        Split::Train => (&loaded.train.features, &loaded.train.logits),
                        Split::Val => (&loaded.val.features, &loaded.val.logits),
                        Split::Ood(i) => (&loaded.ood[i].1.features, &loaded.ood[i].1.logits),
                    };
                    match head {
                        Some(head) => {
                            let p = Predictor::Head {
                                head,
                                num_samples: unit.num_samples,
                                eval_seed: eval_seed ^ split.salt(),
                                temperature: unit.temperature.unwrap_or(1.0),
                            };
                            predict(&p, features, device)
                                .map(Some)
                                .map_err(step(format!("predicting with {}", unit.method)))
                        }
                        None => Ok(logits
                            .as_ref()
                            .map(|l| baseline_predictions(l, unit.temperature.unwrap_or(1.0)))),
                    }
                };
                let test_p =
                    pred(Split::Test)?.expect("a baseline unit exists only with test logits");
                let indist = suite::in_distribution(&ctx, &test_p, "test", &ds_name, &settings)
                    .map_err(step(format!("evaluating {}", unit.method)))?;
                let mut records = indist.records.clone();
                let mut res = serde_json::Map::new();
                res.insert("test".into(), indist.json.clone());
                if config.eval.train_nll {
                    if let (Some(tr), Some(va)) = (pred(Split::Train)?, pred(Split::Val)?) {
                        let both = Predictions::concat(&[&tr, &va]).map_err(step("train NLL"))?;
                        let (r, j) = suite::train_nll(&ctx, &both, &ds_name, &settings)
                            .map_err(step("train NLL"))?;
                        records.extend(r);
                        res.insert("train".into(), j);
                    }
                }
                let mut sets = Vec::new();
                for (i, (name, _)) in loaded.ood.iter().enumerate() {
                    if let Some(p) = pred(Split::Ood(i))? {
                        sets.push((name.clone(), p));
                    }
                }
                if !sets.is_empty() {
                    let (r, j) = suite::ood(&ctx, &test_p, &sets);
                    records.extend(r);
                    res.insert("ood".into(), j);
                    if unit.seed.is_none() || unit.seed == histogram_seed {
                        write_ood_histogram(out, &unit.method, &test_p, &sets, &ds_name)
                            .map_err(step(format!("OOD histogram of {}", unit.method)))?;
                    }
                }
                if config.eval.save_predictions {
                    save_test_predictions(out, &unit.method, &seed_tag, &test_p)?;
                }
                let value = json!({
                    "method": unit.method, "seed": unit.seed, "num_samples": unit.num_samples,
                    "temperature": unit.temperature, "head": unit.head_dir,
                    "records": records, "results": res,
                    "reliability": indist.primary.reliability,
                });
                write_json_atomic(&file, &value).map_err(step("writing evaluation"))?;
                log(&format!(
                    "eval {}{}: acc {:.2}%, ECE {:.2}%, NLL {:.4} [{:.1}s]",
                    unit.method,
                    unit.seed.map(|s| format!(" seed {s}")).unwrap_or_default(),
                    100.0 * indist.primary.accuracy,
                    100.0 * indist.primary.ece,
                    indist.primary.nll,
                    t.elapsed().as_secs_f64()
                ));
                computed += 1;
                value
            }
        };
        collect_unit_result(
            &unit.method,
            unit.seed,
            &file,
            &result,
            &mut all_records,
            &mut reliability,
            &mut results,
        )?;
    }

    // ---- Outputs --------------------------------------------------------------------------------------
    let metrics = out.join("metrics.jsonl");
    decal_report::record::write_jsonl(&metrics, &all_records)
        .map_err(step("writing metrics.jsonl"))?;
    decal_report::record::write_csv(&out.join("metrics.csv"), &all_records)
        .map_err(step("writing metrics.csv"))?;
    let mut results_json = json!({
        "experiment": config.name, "config": config, "warnings": warnings,
        "compat_notes": compat_notes(config),
        "backbone": {"features": files, "feature_dim": loaded.feature_dim, "num_classes": loaded.num_classes},
        "features": {
            "train": loaded.train.key, "val": loaded.val.key, "test": loaded.test.key,
            "ood": loaded.ood.iter().map(|(n, s)| (n.clone(), s.key.clone())).collect::<BTreeMap<_, _>>(),
            "train_views": views.as_ref().map(|v| json!({"views": v.count(), "sha256": v.hash()})),
            "mode": "feature files",
        },
        "results": results, "calibration": calibration, "provenance": Provenance::capture(),
    });
    if config.eval.smoke {
        results_json["smoke"] = json!(SMOKE_NOTE);
    }
    write_json_atomic(&out.join("results.json"), &results_json)
        .map_err(step("writing results.json"))?;
    let mut method_order: Vec<String> = Vec::new();
    for u in &units {
        if !method_order.contains(&u.method) {
            method_order.push(u.method.clone());
        }
    }
    let report = write_report(
        config,
        out,
        &all_records,
        &reliability,
        &method_order,
        &warnings,
    )
    .map_err(step("report"))?;
    for m in &report.messages {
        log(&format!("report: {m}"));
    }
    log(&format!(
        "done in {:.1}s: {computed} units computed, {reused} reused",
        started.elapsed().as_secs_f64()
    ));
    Ok(RunSummary {
        table_markdown: report.table_markdown,
        metrics,
        report: report.index_html,
        warnings,
        computed,
        reused,
    })
}
