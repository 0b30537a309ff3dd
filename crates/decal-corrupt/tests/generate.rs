//! Dataset generation: layout, determinism, manifest, resumption and output-directory safety, on
//! small synthetic image sets (no external data needed).

use decal_corrupt::generate::{corrupt_set, KIND};
use decal_corrupt::{
    generate, Assets, CorruptError, Corruption, GenerateOptions, Manifest, SourceImages,
};
use decal_io::npy::{self, NpyData};
use std::path::Path;

/// `n` deterministic 32×32 RGB images with structure (gradients, edges, texture) and labels `i % 10`.
fn synthetic(n: usize) -> (Vec<u8>, Vec<u32>) {
    let mut pixels = Vec::with_capacity(n * 3072);
    for i in 0..n {
        for y in 0..32usize {
            for x in 0..32usize {
                let edge = if (x + i) % 16 < 8 { 200 } else { 40 };
                pixels.push(((x * 8 + i * 13) % 256) as u8);
                pixels.push(((y * 8 + i * 29) % 256) as u8);
                pixels.push(((edge + (x * y + i) % 17) % 256) as u8);
            }
        }
    }
    (pixels, (0..n as u32).map(|i| i % 10).collect())
}

fn source<'a>(pixels: &'a [u8], labels: &'a [u32]) -> SourceImages<'a> {
    SourceImages {
        name: "synthetic/test",
        height: 32,
        width: 32,
        channels: 3,
        pixels,
        labels,
    }
}

fn options(corruptions: &[Corruption], severities: &[u8], seed: u64) -> GenerateOptions {
    GenerateOptions {
        corruptions: corruptions.to_vec(),
        severities: severities.to_vec(),
        seed,
        force: false,
        source_details: serde_json::json!({ "dataset": "synthetic" }),
    }
}

fn u8_data(path: &Path) -> (Vec<usize>, Vec<u8>) {
    let array = npy::read(path).unwrap();
    match array.data {
        NpyData::U8(v) => (array.shape, v),
        other => panic!("{} should be uint8, got {other:?}", path.display()),
    }
}

const SOME: [Corruption; 4] = [
    Corruption::GaussianNoise,
    Corruption::GlassBlur,
    Corruption::Fog,
    Corruption::Pixelate,
];

#[test]
fn layout_labels_and_manifest() {
    let (pixels, labels) = synthetic(6);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    let mut lines = Vec::new();
    let manifest = generate(
        &out,
        &source(&pixels, &labels),
        &options(&SOME, &[1, 2, 3, 4, 5], 3),
        &Assets::default(),
        &mut |p| lines.push((p.corruption, p.position, p.total, p.skipped)),
    )
    .unwrap();
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|l| l.2 == 4 && !l.3));

    for c in SOME {
        let (shape, data) = u8_data(&out.join(format!("{}.npy", c.name())));
        assert_eq!(shape, vec![30, 32, 32, 3], "{c}");
        // Severity s of image i is row (s - 1) * N + i; it must equal a direct corruption of image i.
        let expected: Vec<u8> = (1..=5)
            .flat_map(|s| {
                corrupt_set(&source(&pixels, &labels), c, s, 3, &Assets::default()).unwrap()
            })
            .collect();
        assert_eq!(data, expected, "{c}");
        // Something changed at severity 5.
        assert_ne!(&data[4 * 6 * 3072..], &pixels[..], "{c}");
    }
    let (shape, tiled) = u8_data(&out.join("labels.npy"));
    assert_eq!(shape, vec![30]);
    let expected: Vec<u8> = (0..5)
        .flat_map(|_| labels.iter().map(|&l| l as u8))
        .collect();
    assert_eq!(tiled, expected);

    let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let parsed: Manifest = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed, manifest);
    assert_eq!(manifest.kind, KIND);
    assert_eq!(manifest.kind, "generated corruptions");
    assert_eq!(manifest.seed, 3);
    assert_eq!(manifest.severities, vec![1, 2, 3, 4, 5]);
    assert_eq!(manifest.source.num_images, 6);
    assert_eq!(
        manifest.source.pixels_sha256,
        decal_core::sha256_bytes(&pixels)
    );
    assert_eq!(manifest.labels.dtype, "uint8");
    assert_eq!(manifest.corruptions.len(), 4);
    for record in &manifest.corruptions {
        assert_eq!(
            record.file.sha256,
            decal_core::sha256_file(&out.join(&record.file.file)).unwrap()
        );
        assert_eq!(record.parameters.len(), 5);
        assert_eq!(record.standard, record.corruption.is_standard());
    }
    let fog = manifest
        .corruptions
        .iter()
        .find(|r| r.corruption == Corruption::Fog)
        .unwrap();
    assert_eq!(fog.parameters[4]["strength"], 1.5);
    assert!(text.contains("\"decal_version\""));
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (pixels, labels) = synthetic(5);
    let src = source(&pixels, &labels);
    for c in Corruption::ALL
        .into_iter()
        .filter(|&c| c != Corruption::Frost)
    {
        let a = corrupt_set(&src, c, 3, 11, &Assets::default()).unwrap();
        let b = corrupt_set(&src, c, 3, 11, &Assets::default()).unwrap();
        assert_eq!(a, b, "{c}");
        let random = !matches!(
            c,
            Corruption::DefocusBlur
                | Corruption::ZoomBlur
                | Corruption::Brightness
                | Corruption::Contrast
                | Corruption::Pixelate
                | Corruption::JpegCompression
                | Corruption::GaussianBlur
                | Corruption::Saturate
        );
        let other = corrupt_set(&src, c, 3, 12, &Assets::default()).unwrap();
        assert_eq!(
            a != other,
            random,
            "{c}: a different seed should change exactly the random corruptions"
        );
    }
}

#[test]
fn bytes_do_not_depend_on_limit_severity_subset_or_threads() {
    let (pixels, labels) = synthetic(8);
    let full = source(&pixels, &labels);
    let first3 = source(&pixels[..3 * 3072], &labels[..3]);
    let c = Corruption::ElasticTransform;
    let a = corrupt_set(&full, c, 4, 5, &Assets::default()).unwrap();
    let b = corrupt_set(&first3, c, 4, 5, &Assets::default()).unwrap();
    assert_eq!(&a[..3 * 3072], &b[..]);
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let c1 = single.install(|| corrupt_set(&full, c, 4, 5, &Assets::default()).unwrap());
    assert_eq!(a, c1);

    // A run with severities {2, 5} holds exactly the severity-2 and severity-5 blocks of a full run.
    let dir = tempfile::tempdir().unwrap();
    generate(
        &dir.path().join("all"),
        &full,
        &options(&[c], &[1, 2, 3, 4, 5], 5),
        &Assets::default(),
        &mut |_| {},
    )
    .unwrap();
    generate(
        &dir.path().join("two"),
        &full,
        &options(&[c], &[5, 2], 5),
        &Assets::default(),
        &mut |_| {},
    )
    .unwrap();
    let (_, all) = u8_data(&dir.path().join("all/elastic_transform.npy"));
    let (shape, two) = u8_data(&dir.path().join("two/elastic_transform.npy"));
    assert_eq!(shape, vec![16, 32, 32, 3]);
    let block = 8 * 3072;
    assert_eq!(&two[..block], &all[block..2 * block]);
    assert_eq!(&two[block..], &all[4 * block..]);
}

#[test]
fn resume_skips_verified_files_and_redoes_tampered_ones() {
    let (pixels, labels) = synthetic(4);
    let src = source(&pixels, &labels);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    generate(
        &out,
        &src,
        &options(&SOME[..2], &[1, 2, 3, 4, 5], 0),
        &Assets::default(),
        &mut |_| {},
    )
    .unwrap();
    let original = std::fs::read(out.join("glass_blur.npy")).unwrap();

    // Same request plus one more corruption: the two finished ones are skipped.
    let mut skipped = Vec::new();
    let manifest = generate(
        &out,
        &src,
        &options(&SOME[..3], &[1, 2, 3, 4, 5], 0),
        &Assets::default(),
        &mut |p| skipped.push((p.corruption, p.skipped)),
    )
    .unwrap();
    assert_eq!(
        skipped,
        vec![
            (Corruption::GaussianNoise, true),
            (Corruption::GlassBlur, true),
            (Corruption::Fog, false)
        ]
    );
    assert_eq!(manifest.corruptions.len(), 3);

    // A damaged file no longer matches its checksum and is regenerated, byte-identical.
    std::fs::write(out.join("glass_blur.npy"), b"garbage").unwrap();
    let mut redone = Vec::new();
    generate(
        &out,
        &src,
        &options(&[Corruption::GlassBlur], &[1, 2, 3, 4, 5], 0),
        &Assets::default(),
        &mut |p| redone.push(p.skipped),
    )
    .unwrap();
    assert_eq!(redone, vec![false]);
    assert_eq!(std::fs::read(out.join("glass_blur.npy")).unwrap(), original);
    // Corruptions finished earlier but not requested this time stay in the manifest.
    let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let m: Manifest = serde_json::from_str(&text).unwrap();
    let mut names: Vec<_> = m.corruptions.iter().map(|r| r.corruption).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            Corruption::GaussianNoise,
            Corruption::GlassBlur,
            Corruption::Fog
        ]
    );
}

#[test]
fn refuses_foreign_non_empty_directories_unless_forced() {
    let (pixels, labels) = synthetic(2);
    let src = source(&pixels, &labels);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let opts = options(&[Corruption::Contrast], &[1], 0);
    let err = generate(dir.path(), &src, &opts, &Assets::default(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    // A different seed is a different request: refused too.
    let out = dir.path().join("run");
    generate(&out, &src, &opts, &Assets::default(), &mut |_| {}).unwrap();
    let other_seed = options(&[Corruption::Contrast], &[1], 1);
    assert!(generate(&out, &src, &other_seed, &Assets::default(), &mut |_| {}).is_err());
    let forced = GenerateOptions {
        force: true,
        ..other_seed
    };
    let m = generate(&out, &src, &forced, &Assets::default(), &mut |_| {}).unwrap();
    assert_eq!(m.seed, 1);
}

#[test]
fn rejects_bad_sources_and_requests() {
    let (pixels, labels) = synthetic(2);
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&[Corruption::Fog], &[1], 0);
    let big = SourceImages {
        height: 64,
        width: 16,
        ..source(&pixels, &labels)
    };
    let err = generate(
        &dir.path().join("a"),
        &big,
        &opts,
        &Assets::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, CorruptError::UnsupportedShape { height: 64, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("32×32×3"), "{err}");
    let short = source(&pixels[..100], &labels);
    assert!(matches!(
        generate(
            &dir.path().join("b"),
            &short,
            &opts,
            &Assets::default(),
            &mut |_| {}
        ),
        Err(CorruptError::InconsistentSource { .. })
    ));
    let frost = options(&[Corruption::Frost], &[1], 0);
    assert!(matches!(
        generate(
            &dir.path().join("c"),
            &source(&pixels, &labels),
            &frost,
            &Assets::default(),
            &mut |_| {}
        ),
        Err(CorruptError::MissingFrostTextures)
    ));
    let bad_sev = options(&[Corruption::Fog], &[6], 0);
    assert!(matches!(
        generate(
            &dir.path().join("d"),
            &source(&pixels, &labels),
            &bad_sev,
            &Assets::default(),
            &mut |_| {}
        ),
        Err(CorruptError::BadSeverity { .. })
    ));
    assert!(!dir.path().join("a").exists() && !dir.path().join("d").exists());
}

#[test]
fn frost_uses_the_real_textures_when_present() {
    let frost_dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets/corruption-assets/frost"
    ));
    if !frost_dir.is_dir() {
        eprintln!("skipping: {} not found", frost_dir.display());
        return;
    }
    let textures = decal_corrupt::FrostTextures::load(frost_dir).unwrap();
    // frost1.png is 900×600; the recipe's 0.2 resize gives 180×120.
    assert_eq!(
        (textures.textures[0].width, textures.textures[0].height),
        (180, 120)
    );
    assert_eq!(textures.textures.len(), 5);
    let (pixels, labels) = synthetic(3);
    let assets = Assets {
        frost: Some(textures),
    };
    let src = source(&pixels, &labels);
    let s1 = corrupt_set(&src, Corruption::Frost, 1, 0, &assets).unwrap();
    let s5 = corrupt_set(&src, Corruption::Frost, 5, 0, &assets).unwrap();
    // Frost is additive at severity 1 (image weight 1.0): no value may decrease.
    assert!(s1.iter().zip(&pixels).all(|(&o, &i)| o >= i));
    assert_ne!(s1, s5);
    let err = decal_corrupt::FrostTextures::load(Path::new("/nonexistent-frost")).unwrap_err();
    assert!(err.to_string().contains("frost1.png"), "{err}");
}
