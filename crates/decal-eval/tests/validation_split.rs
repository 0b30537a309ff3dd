//! The validation source of `decal run` ([`decal_eval::validation`]): what decal knows about a backbone's
//! training images (imported checkpoint, stage-1 run records on the same or other data, overlap), the
//! choice it makes from that (and the refusal of a contaminated one without the explicit override), and the
//! held-out calibration split carved from the test split (deterministic, stratified, disjoint, sizes).

use std::path::Path;

use decal_data::split::SplitManifest;
use decal_eval::validation::{
    carve_holdout, checkpoint_training_images, resolve, TrainingImages, ValidationChoice,
    ValidationSource,
};

fn class_ordered(classes: u32, per_class: usize) -> Vec<u32> {
    (0..classes)
        .flat_map(|c| std::iter::repeat_n(c, per_class))
        .collect()
}

#[test]
fn holdout_is_deterministic_stratified_disjoint_and_complete() {
    // The class-ordered layout of the CIFAR-10 JPEG test set: 1,000 images per class, one class after another.
    let labels = class_ordered(10, 1000);
    let (test, cal) = carve_holdout(&labels, 0.2, 1);
    assert_eq!((test.len(), cal.len()), (8000, 2000));
    for c in 0..10u32 {
        assert_eq!(
            cal.iter().filter(|&&i| labels[i] == c).count(),
            200,
            "class {c}"
        );
    }
    let mut all: Vec<usize> = test.iter().chain(&cal).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..10_000).collect::<Vec<_>>(),
        "disjoint and complete"
    );
    assert!(test.windows(2).all(|w| w[0] < w[1]) && cal.windows(2).all(|w| w[0] < w[1]));
    // Not a prefix of each class: the permutation spreads the held-out images over the class block.
    assert!(cal.iter().filter(|&&i| i < 1000).any(|&i| i >= 500));
    assert_eq!(carve_holdout(&labels, 0.2, 1), (test.clone(), cal.clone()));
    let (_, other) = carve_holdout(&labels, 0.2, 2);
    assert_ne!(other, cal, "the seed changes the held-out images");
    // Uneven classes keep their proportions up to rounding.
    let mut uneven = class_ordered(3, 10);
    uneven.extend(std::iter::repeat_n(3, 7));
    let (t, c) = carve_holdout(&uneven, 0.3, 5);
    assert_eq!(c.len(), 3 + 3 + 3 + 2);
    assert_eq!(t.len() + c.len(), uneven.len());
}

#[test]
fn choice_follows_what_is_known_and_refuses_contamination_without_the_override() {
    let clean = TrainingImages::Disjoint("trained here".into());
    let unknown = TrainingImages::Unknown("imported".into());
    let overlap = TrainingImages::Overlap {
        overlap: 8000,
        val: 10000,
        why: "recorded split".into(),
    };
    let holdout = ValidationSource::TestHoldout {
        fraction: 0.2,
        seed: 1,
    };
    let split = |contaminated| ValidationSource::TrainSplit { contaminated };
    use ValidationChoice::*;
    assert_eq!(resolve(Auto, &clean, 0.2, 1), Ok(split(false)));
    assert_eq!(resolve(Auto, &unknown, 0.2, 1), Ok(holdout.clone()));
    assert_eq!(resolve(Auto, &overlap, 0.2, 1), Ok(holdout.clone()));
    assert_eq!(resolve(TestHoldout, &clean, 0.2, 1), Ok(holdout.clone()));
    assert_eq!(resolve(TrainSplit, &clean, 0.2, 1), Ok(split(false)));
    for known in [&unknown, &overlap] {
        let e = resolve(TrainSplit, known, 0.2, 1).unwrap_err();
        assert!(
            e.contains("train-split-unsafe") && e.contains("[data] validation"),
            "{e}"
        );
        assert_eq!(resolve(TrainSplitUnsafe, known, 0.2, 1), Ok(split(true)));
    }
    assert_eq!(resolve(TrainSplitUnsafe, &clean, 0.2, 1), Ok(split(false)));
    assert!(
        overlap.describe().contains("8000 of the 10000") && overlap.describe().contains("80.0 %")
    );
    // The config names.
    for (c, name) in [
        (Auto, "auto"),
        (TrainSplit, "train-split"),
        (TestHoldout, "test-holdout"),
        (TrainSplitUnsafe, "train-split-unsafe"),
    ] {
        assert_eq!(c.as_str(), name);
        let parsed: ValidationChoice = serde_json::from_str(&format!("\"{name}\"")).unwrap();
        assert_eq!(parsed, c);
    }
}

/// A stage-1 run directory as `decal train` leaves it: `split.json`, `config.toml`, `provenance.json`, `best/`.
fn stage1_run(dir: &Path, n: usize, limit_train: usize, data_sha256: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("best")).unwrap();
    SplitManifest::seed("cifar10", n, 0.8, 1)
        .unwrap()
        .save(&dir.join("split.json"))
        .unwrap();
    let plan = decal_train::stage1::Stage1Plan {
        limit_train,
        ..Default::default()
    };
    std::fs::write(dir.join("config.toml"), plan.to_toml().unwrap()).unwrap();
    std::fs::write(
        dir.join("provenance.json"),
        serde_json::json!({ "data_sha256": data_sha256 }).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("best/config.json"), "{\"arch\": \"cnn\"}").unwrap();
    dir.join("best")
}

#[test]
fn detection_of_the_backbones_training_images() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 500;
    let manifest = SplitManifest::seed("cifar10", n, 0.8, 1).unwrap();
    let val = manifest.valid_indices.clone();

    // An imported checkpoint: unknown, whatever else is around it.
    let imported = tmp.path().join("imported");
    std::fs::create_dir_all(&imported).unwrap();
    std::fs::write(
        imported.join("config.json"),
        r#"{"stage": "imported", "arch": {"arch": "cnn"}}"#,
    )
    .unwrap();
    let k = checkpoint_training_images(&imported, n, "abc", &val);
    assert!(
        matches!(&k, TrainingImages::Unknown(w) if w.contains("imported")),
        "{k:?}"
    );

    // A stage-1 best/ of a run on the same data: the validation part is disjoint from its training part.
    let best = stage1_run(&tmp.path().join("run"), n, 0, "abc");
    let k = checkpoint_training_images(&best, n, "abc", &val);
    assert!(matches!(k, TrainingImages::Disjoint(_)), "{k:?}");

    // The same run on other data (another copy or order): unknown.
    let k = checkpoint_training_images(&best, n, "def", &val);
    assert!(
        matches!(&k, TrainingImages::Unknown(w) if w.contains("other data")),
        "{k:?}"
    );
    let k = checkpoint_training_images(&best, n + 1, "abc", &val);
    assert!(matches!(k, TrainingImages::Unknown(_)), "{k:?}");

    // Validation images that the recorded run trained on are counted; with limit_train only the images it
    // kept count (10 of 400, evenly spaced: positions 0, 40, …, 360; the first 30 hold one of them).
    let mixed: Vec<usize> = manifest.train_indices[..30]
        .iter()
        .chain(&val[..70])
        .copied()
        .collect();
    match checkpoint_training_images(&best, n, "abc", &mixed) {
        TrainingImages::Overlap { overlap, val, .. } => assert_eq!((overlap, val), (30, 100)),
        other => panic!("{other:?}"),
    }
    let limited = stage1_run(&tmp.path().join("limited"), n, 10, "abc");
    match checkpoint_training_images(&limited, n, "abc", &mixed) {
        TrainingImages::Overlap { overlap, .. } => assert_eq!(overlap, 1),
        other => panic!("{other:?}"),
    }

    // A checkpoint without run records: unknown.
    let bare = tmp.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    let k = checkpoint_training_images(&bare, n, "abc", &val);
    assert!(matches!(k, TrainingImages::Unknown(_)), "{k:?}");
}
