//! The 19 corruptions of the CIFAR-10-C recipe, their file names, parsing of user lists, and the
//! per-severity parameter tables (copied from `make_cifar_c.py`, CIFAR variant, severity 1 first).

use crate::error::CorruptError;
use serde::{Deserialize, Serialize};

/// One corruption of Hendrycks & Dietterich (2019). The declaration order is the order of
/// `make_cifar_c.py`: the 15 standard corruptions, then the 4 extra ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    /// Additive Gaussian noise.
    GaussianNoise,
    /// Poisson (shot) noise.
    ShotNoise,
    /// Salt-and-pepper noise.
    ImpulseNoise,
    /// Convolution with an anti-aliased disk.
    DefocusBlur,
    /// Gaussian blur + local pixel shuffling + Gaussian blur.
    GlassBlur,
    /// One-sided line blur at a random angle (ImageMagick `-motion-blur`).
    MotionBlur,
    /// Average of centre zooms.
    ZoomBlur,
    /// Motion-blurred snow flakes over a whitened image.
    Snow,
    /// Overlay of a crop of a real frost photograph.
    Frost,
    /// Plasma-fractal haze.
    Fog,
    /// HSV value shift.
    Brightness,
    /// Per-channel contrast reduction around the mean.
    Contrast,
    /// Random affine + smoothed random displacement field.
    ElasticTransform,
    /// Box down-sampling followed by box up-sampling.
    Pixelate,
    /// JPEG round trip at low quality.
    JpegCompression,
    /// Multiplicative Gaussian noise (extra).
    SpeckleNoise,
    /// Gaussian blur (extra).
    GaussianBlur,
    /// Water or mud splashes (extra).
    Spatter,
    /// HSV saturation scaling (extra).
    Saturate,
}

impl Corruption {
    /// All 19 corruptions in recipe order.
    pub const ALL: [Corruption; 19] = [
        Corruption::GaussianNoise,
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
        Corruption::DefocusBlur,
        Corruption::GlassBlur,
        Corruption::MotionBlur,
        Corruption::ZoomBlur,
        Corruption::Snow,
        Corruption::Frost,
        Corruption::Fog,
        Corruption::Brightness,
        Corruption::Contrast,
        Corruption::ElasticTransform,
        Corruption::Pixelate,
        Corruption::JpegCompression,
        Corruption::SpeckleNoise,
        Corruption::GaussianBlur,
        Corruption::Spatter,
        Corruption::Saturate,
    ];

    /// The 15 corruptions of the CIFAR-10-C benchmark proper.
    pub fn standard() -> &'static [Corruption] {
        &Self::ALL[..15]
    }

    /// The 4 held-out corruptions (speckle noise, Gaussian blur, spatter, saturate).
    pub fn extra() -> &'static [Corruption] {
        &Self::ALL[15..]
    }

    /// The CIFAR-10-C file stem, e.g. `gaussian_noise` (the Python function name).
    pub fn name(self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian_noise",
            Corruption::ShotNoise => "shot_noise",
            Corruption::ImpulseNoise => "impulse_noise",
            Corruption::DefocusBlur => "defocus_blur",
            Corruption::GlassBlur => "glass_blur",
            Corruption::MotionBlur => "motion_blur",
            Corruption::ZoomBlur => "zoom_blur",
            Corruption::Snow => "snow",
            Corruption::Frost => "frost",
            Corruption::Fog => "fog",
            Corruption::Brightness => "brightness",
            Corruption::Contrast => "contrast",
            Corruption::ElasticTransform => "elastic_transform",
            Corruption::Pixelate => "pixelate",
            Corruption::JpegCompression => "jpeg_compression",
            Corruption::SpeckleNoise => "speckle_noise",
            Corruption::GaussianBlur => "gaussian_blur",
            Corruption::Spatter => "spatter",
            Corruption::Saturate => "saturate",
        }
    }

    /// Position in [`Corruption::ALL`]; also mixed into the per-image random seed.
    pub fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|&c| c == self)
            .expect("every corruption should be in ALL")
    }

    /// Whether the corruption is one of the 15 standard ones.
    pub fn is_standard(self) -> bool {
        self.index() < 15
    }

    /// Parses one corruption name (the file stem, case-insensitive; `-` accepted for `_`).
    pub fn from_name(name: &str) -> Result<Corruption, CorruptError> {
        let wanted = name.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.name() == wanted)
            .ok_or_else(|| CorruptError::UnknownCorruption {
                name: name.to_string(),
                known: known_names(),
            })
    }

    /// The recipe's parameters for `severity` (1..=5) as JSON, for the manifest.
    ///
    /// # Panics
    /// Panics when `severity` is not in 1..=5 (callers validate severities first).
    pub fn parameters(self, severity: u8) -> serde_json::Value {
        assert!(
            (1..=5).contains(&severity),
            "severity should be validated to 1..=5"
        );
        let s = usize::from(severity - 1);
        use serde_json::json;
        match self {
            Corruption::GaussianNoise => json!({ "std": GAUSSIAN_NOISE[s] }),
            Corruption::ShotNoise => json!({ "photons_per_unit": SHOT_NOISE[s] }),
            Corruption::ImpulseNoise => {
                json!({ "amount": IMPULSE_NOISE[s], "salt_vs_pepper": 0.5 })
            }
            Corruption::DefocusBlur => {
                json!({ "radius": DEFOCUS_BLUR[s].0, "alias_blur": DEFOCUS_BLUR[s].1 })
            }
            Corruption::GlassBlur => json!({
                "sigma": GLASS_BLUR[s].0, "max_delta": GLASS_BLUR[s].1, "iterations": GLASS_BLUR[s].2
            }),
            Corruption::MotionBlur => json!({
                "radius": MOTION_BLUR[s].0, "sigma": MOTION_BLUR[s].1, "angle_degrees": [-45.0, 45.0]
            }),
            Corruption::ZoomBlur => json!({
                "zoom_factors": zoom_factors(severity)
            }),
            Corruption::Snow => {
                let c = SNOW[s];
                json!({
                    "loc": c.0, "scale": c.1, "zoom": c.2, "threshold": c.3, "blur_radius": c.4,
                    "blur_sigma": c.5, "image_weight": c.6, "angle_degrees": [-135.0, -45.0]
                })
            }
            Corruption::Frost => json!({
                "image_weight": FROST[s].0, "frost_weight": FROST[s].1,
                "textures": ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"],
                "texture_scale": 0.2
            }),
            Corruption::Fog => {
                json!({ "strength": FOG[s].0, "wibble_decay": FOG[s].1, "map_size": 32 })
            }
            Corruption::Brightness => json!({ "value_shift": BRIGHTNESS[s] }),
            Corruption::Contrast => json!({ "factor": CONTRAST[s] }),
            Corruption::ElasticTransform => {
                let c = elastic_params(s);
                json!({ "alpha": c.0, "sigma": c.1, "affine_max_shift": c.2 })
            }
            Corruption::Pixelate => json!({ "scale": PIXELATE[s], "size": pixelate_size(32, s) }),
            Corruption::JpegCompression => {
                json!({ "quality": JPEG_QUALITY[s], "chroma_subsampling": "4:2:0" })
            }
            Corruption::SpeckleNoise => json!({ "std": SPECKLE_NOISE[s] }),
            Corruption::GaussianBlur => json!({ "sigma": GAUSSIAN_BLUR[s] }),
            Corruption::Spatter => {
                let c = SPATTER[s];
                json!({
                    "loc": c.0, "scale": c.1, "sigma": c.2, "threshold": c.3, "intensity": c.4,
                    "mode": if c.5 == 0 { "water" } else { "mud" }
                })
            }
            Corruption::Saturate => json!({ "scale": SATURATE[s].0, "shift": SATURATE[s].1 }),
        }
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn known_names() -> String {
    Corruption::ALL
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `all`, `standard`, `extra` or a comma-separated list of names (groups may be mixed with
/// names). Duplicates are removed; the result is in recipe order.
pub fn parse_corruption_list(spec: &str) -> Result<Vec<Corruption>, CorruptError> {
    let mut chosen = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.to_ascii_lowercase().as_str() {
            "all" => chosen.extend_from_slice(&Corruption::ALL),
            "standard" => chosen.extend_from_slice(Corruption::standard()),
            "extra" => chosen.extend_from_slice(Corruption::extra()),
            _ => chosen.push(Corruption::from_name(part)?),
        }
    }
    if chosen.is_empty() {
        return Err(CorruptError::EmptyList { what: "corruption" });
    }
    chosen.sort();
    chosen.dedup();
    Ok(chosen)
}

/// Parses a comma-separated severity list such as `1,2,3,4,5`; sorted ascending, duplicates removed.
pub fn parse_severity_list(spec: &str) -> Result<Vec<u8>, CorruptError> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let value: u8 = part.parse().map_err(|_| CorruptError::BadSeverity {
            value: part.to_string(),
        })?;
        if !(1..=5).contains(&value) {
            return Err(CorruptError::BadSeverity {
                value: part.to_string(),
            });
        }
        out.push(value);
    }
    if out.is_empty() {
        return Err(CorruptError::EmptyList { what: "severity" });
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

// ---- Parameter tables of make_cifar_c.py (CIFAR variant), severity 1..5. ----

/// `gaussian_noise`: standard deviation in [0, 1] pixel units.
pub(crate) const GAUSSIAN_NOISE: [f64; 5] = [0.04, 0.06, 0.08, 0.09, 0.10];
/// `shot_noise`: Poisson rate per unit intensity (`poisson(x * c) / c`).
pub(crate) const SHOT_NOISE: [f64; 5] = [500.0, 250.0, 100.0, 75.0, 50.0];
/// `impulse_noise`: fraction of values replaced by salt or pepper.
pub(crate) const IMPULSE_NOISE: [f64; 5] = [0.01, 0.02, 0.03, 0.05, 0.07];
/// `speckle_noise`: standard deviation of the multiplicative noise.
pub(crate) const SPECKLE_NOISE: [f64; 5] = [0.06, 0.1, 0.12, 0.16, 0.2];
/// `gaussian_blur`: sigma in pixels.
pub(crate) const GAUSSIAN_BLUR: [f64; 5] = [0.4, 0.6, 0.7, 0.8, 1.0];
/// `glass_blur`: (sigma, max_delta, iterations).
pub(crate) const GLASS_BLUR: [(f64, i64, usize); 5] = [
    (0.05, 1, 1),
    (0.25, 1, 1),
    (0.4, 1, 1),
    (0.25, 1, 2),
    (0.4, 1, 2),
];
/// `defocus_blur`: (disk radius in pixels, anti-alias Gaussian sigma).
pub(crate) const DEFOCUS_BLUR: [(f64, f64); 5] =
    [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)];
/// `motion_blur`: (ImageMagick radius, sigma) in pixels.
pub(crate) const MOTION_BLUR: [(f64, f64); 5] =
    [(6.0, 1.0), (6.0, 1.5), (6.0, 2.0), (8.0, 2.0), (9.0, 2.5)];
/// `snow`: (loc, scale, zoom, threshold, blur radius, blur sigma, image weight).
pub(crate) const SNOW: [(f64, f64, f64, f64, f64, f64, f64); 5] = [
    (0.1, 0.2, 1.0, 0.6, 8.0, 3.0, 0.95),
    (0.1, 0.2, 1.0, 0.5, 10.0, 4.0, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10.0, 4.0, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12.0, 6.0, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14.0, 12.0, 0.8),
];
/// `frost`: (image weight, frost weight).
pub(crate) const FROST: [(f64, f64); 5] = [
    (1.0, 0.2),
    (1.0, 0.3),
    (0.9, 0.4),
    (0.85, 0.4),
    (0.75, 0.45),
];
/// `fog`: (strength, wibble decay of the plasma fractal).
pub(crate) const FOG: [(f64, f64); 5] =
    [(0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)];
/// `brightness`: shift of the HSV value channel.
pub(crate) const BRIGHTNESS: [f64; 5] = [0.05, 0.1, 0.15, 0.2, 0.3];
/// `contrast`: factor applied to the deviation from the per-channel mean.
pub(crate) const CONTRAST: [f64; 5] = [0.75, 0.5, 0.4, 0.3, 0.15];
/// `saturate`: (scale, shift) of the HSV saturation channel.
pub(crate) const SATURATE: [(f64, f64); 5] =
    [(0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)];
/// `jpeg_compression`: PIL/IJG quality.
pub(crate) const JPEG_QUALITY: [u8; 5] = [80, 65, 58, 50, 40];
/// `pixelate`: down-sampling factor (`int(32 * c)` pixels).
pub(crate) const PIXELATE: [f64; 5] = [0.95, 0.9, 0.85, 0.75, 0.65];
/// `spatter`: (loc, scale, sigma, threshold, intensity, mode 0 = water / 1 = mud).
pub(crate) const SPATTER: [(f64, f64, f64, f64, f64, u8); 5] = [
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1.0, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
];

/// `elastic_transform` for `IMSIZE = 32`: (alpha, sigma, affine max shift) in pixels.
pub(crate) fn elastic_params(s: usize) -> (f64, f64, f64) {
    const IMSIZE: f64 = 32.0;
    [
        (IMSIZE * 0.0, IMSIZE * 0.0, IMSIZE * 0.08),
        (IMSIZE * 0.05, IMSIZE * 0.2, IMSIZE * 0.07),
        (IMSIZE * 0.08, IMSIZE * 0.06, IMSIZE * 0.06),
        (IMSIZE * 0.1, IMSIZE * 0.04, IMSIZE * 0.05),
        (IMSIZE * 0.1, IMSIZE * 0.03, IMSIZE * 0.03),
    ][s]
}

/// `pixelate` intermediate size, `int(size * c)` as in the recipe.
pub(crate) fn pixelate_size(size: usize, s: usize) -> usize {
    (size as f64 * PIXELATE[s]) as usize
}

/// `zoom_blur` factors: `np.arange(1, end, 0.01)` with ends 1.06, 1.11, 1.16, 1.21, 1.26. NumPy's
/// float arange yields 7, 12, 16, 21 and 26 values, and computes them as `1 + i * delta` with
/// `delta = (1 + 0.01) - 1 = 0.010000000000000009`, not `0.01`. The difference matters: with
/// 1.2500000000000002 the crop of 26 pixels zooms to `round(32.500000000000005) = 33`, with exactly
/// 1.25 to `round(32.5) = 32`.
pub(crate) fn zoom_factors(severity: u8) -> Vec<f64> {
    let count = [7usize, 12, 16, 21, 26][usize::from(severity - 1)];
    let delta = (1.0f64 + 0.01) - 1.0;
    (0..count).map(|i| 1.0 + i as f64 * delta).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_groups_partition() {
        for c in Corruption::ALL {
            assert_eq!(Corruption::from_name(c.name()).unwrap(), c);
        }
        assert_eq!(Corruption::standard().len(), 15);
        assert_eq!(Corruption::extra().len(), 4);
        assert!(Corruption::extra().iter().all(|c| !c.is_standard()));
    }

    #[test]
    fn list_parsing() {
        assert_eq!(parse_corruption_list("all").unwrap().len(), 19);
        assert_eq!(parse_corruption_list("standard,extra").unwrap().len(), 19);
        assert_eq!(
            parse_corruption_list("fog, Gaussian-Noise,fog").unwrap(),
            vec![Corruption::GaussianNoise, Corruption::Fog]
        );
        let err = parse_corruption_list("fog,gaussian")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown corruption 'gaussian'"), "{err}");
        assert!(parse_corruption_list(" , ").is_err());
        assert_eq!(parse_severity_list("5,1,3,1").unwrap(), vec![1, 3, 5]);
        for bad in ["0", "6", "x", "1.5", ""] {
            assert!(parse_severity_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zoom_factor_counts_match_numpy_arange() {
        let lens: Vec<usize> = (1..=5).map(|s| zoom_factors(s).len()).collect();
        assert_eq!(lens, vec![7, 12, 16, 21, 26]);
        // NumPy: repr(np.arange(1, 1.26, 0.01)[-1]) == '1.2500000000000002'.
        assert_eq!(zoom_factors(5)[25], 1.2500000000000002);
    }

    #[test]
    fn parameters_exist_for_every_severity() {
        for c in Corruption::ALL {
            for s in 1..=5 {
                assert!(c.parameters(s).is_object());
            }
        }
        assert_eq!(pixelate_size(32, 4), 20);
    }
}
