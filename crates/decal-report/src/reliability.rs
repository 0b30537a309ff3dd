//! Reliability diagrams: per-bin accuracy against confidence (outlined bars), with the calibration gap
//! between accuracy and mean confidence shaded (the mean confidence also marked by a tick), the
//! diagonal of perfect calibration, a confidence histogram (with per-bin counts) below, the caller's
//! ECE in the legend, and several series overlaid (e.g. "before TS" vs "after TS").
//!
//! The bins are computed by decal-metrics (or read from a CSV); this module only draws them. A bin with
//! `lower == upper` is the torchmetrics extra bin that holds confidence exactly 1.0 (metrics.md §3.1); it
//! is drawn as a narrow slot just right of 1.0 so its samples stay visible.
//!
//! # CSV format (written next to every diagram, and read back by `decal report`)
//! Header `series,bin,lower,upper,count,mean_confidence,accuracy,gap,ece,definition`, one row per
//! series × bin, series in the order given. `gap = accuracy − mean_confidence` (negative = over-confident);
//! `ece` is empty when the caller passed none. Numbers are printed losslessly (shortest round-trip).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::csv;
use crate::plot::{self, de, font, px, Figure};
use crate::record::{format_value, parse_value};
use crate::ReportError;

/// One confidence bin: **the** reliability-bin type of decal, owned by decal-metrics (which computes
/// the bins) and drawn here; `lower == upper` is the torchmetrics bin that holds confidence exactly 1.0.
pub use decal_metrics::calibration::ReliabilityBin;

/// **The** pooling of reliability bins (one owner, issue #11): bins of several evaluations with
/// identical edges are merged exactly — counts add, accuracy and mean confidence are count-weighted means
/// (0 for a bin that stays empty). Returns `None` when the parts differ in bin count or edges (bit for
/// bit), or when there are no parts. Used by `decal report` (series from several runs) and by `decal
/// run` (a method's seeds).
pub fn pool_bins<'a>(
    parts: impl IntoIterator<Item = &'a [ReliabilityBin]>,
) -> Option<Vec<ReliabilityBin>> {
    let parts: Vec<&[ReliabilityBin]> = parts.into_iter().collect();
    let first = *parts.first()?;
    let same_edges = parts.iter().all(|p| {
        p.len() == first.len()
            && p.iter().zip(first).all(|(a, b)| {
                a.lower.to_bits() == b.lower.to_bits() && a.upper.to_bits() == b.upper.to_bits()
            })
    });
    if !same_edges {
        return None;
    }
    let pooled = (0..first.len())
        .map(|i| {
            let count: u64 = parts.iter().map(|p| p[i].count).sum();
            let weighted = |f: fn(&ReliabilityBin) -> f64| {
                if count == 0 {
                    0.0
                } else {
                    parts
                        .iter()
                        .map(|p| p[i].count as f64 * f(&p[i]))
                        .sum::<f64>()
                        / count as f64
                }
            };
            ReliabilityBin {
                lower: first[i].lower,
                upper: first[i].upper,
                count,
                mean_confidence: weighted(|b| b.mean_confidence),
                accuracy: weighted(|b| b.accuracy),
            }
        })
        .collect();
    Some(pooled)
}

/// The ECE of a set of bins, `Σ_b (n_b / N) · |accuracy_b − mean_confidence_b|` (a fraction); `None`
/// when the bins hold no samples. For pooled bins this is the ECE of all pooled predictions under the
/// bins' membership convention.
pub fn bins_ece(bins: &[ReliabilityBin]) -> Option<f64> {
    let total: u64 = bins.iter().map(|b| b.count).sum();
    (total > 0).then(|| {
        bins.iter()
            .map(|b| b.count as f64 / total as f64 * (b.accuracy - b.mean_confidence).abs())
            .sum::<f64>()
    })
}

/// One model's reliability data: a label for the legend, its bins, and its ECE as computed by the
/// caller (a fraction; shown in percent), with the definition that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilitySeries {
    /// Legend label, e.g. `before TS`.
    pub label: String,
    /// Bins in increasing confidence order.
    pub bins: Vec<ReliabilityBin>,
    /// ECE of this series (fraction), shown in the legend when present.
    pub ece: Option<f64>,
    /// How the bins/ECE were defined, e.g. `top-label, 15 equal-width bins, (lo,hi] membership`.
    pub definition: String,
}

impl ReliabilitySeries {
    /// A series of the bins decal-metrics computed (`summary.reliability`), with the caller's ECE and its
    /// definition.
    pub fn from_metrics(
        label: &str,
        bins: &decal_metrics::calibration::ReliabilityBins,
        ece: Option<f64>,
        definition: &str,
    ) -> Self {
        ReliabilitySeries {
            label: label.to_string(),
            bins: bins.bins.clone(),
            ece,
            definition: definition.to_string(),
        }
    }

    /// Total number of samples over all bins.
    pub fn total(&self) -> u64 {
        self.bins.iter().map(|b| b.count).sum()
    }

    /// Largest `|accuracy − confidence|` over non-empty bins (the MCE of these bins), for annotation.
    pub fn max_gap(&self) -> Option<f64> {
        self.bins
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| (b.accuracy - b.mean_confidence).abs())
            .reduce(f64::max)
    }

    fn validate(&self) -> Result<(), String> {
        if self.label.trim().is_empty() {
            return Err("a reliability series has an empty label".to_string());
        }
        if self.bins.is_empty() {
            return Err(format!("reliability series {:?} has no bins", self.label));
        }
        let eps = 1e-9;
        for (i, b) in self.bins.iter().enumerate() {
            let bad = |what: &str| {
                Err(format!(
                    "reliability series {:?}, bin {i}: {what}",
                    self.label
                ))
            };
            if !(b.lower >= -eps && b.upper <= 1.0 + eps && b.lower <= b.upper) {
                return bad(&format!(
                    "edges [{}, {}] are not an interval inside [0, 1]",
                    b.lower, b.upper
                ));
            }
            if b.count > 0 {
                for (name, v) in [
                    ("accuracy", b.accuracy),
                    ("mean_confidence", b.mean_confidence),
                ] {
                    if !(v >= -eps && v <= 1.0 + eps) {
                        return bad(&format!("{name} {v} is outside [0, 1]"));
                    }
                }
            }
        }
        if self.total() == 0 {
            return Err(format!(
                "reliability series {:?} has no samples (all bins empty)",
                self.label
            ));
        }
        Ok(())
    }
}

/// CSV header of the reliability format.
pub const CSV_HEADER: [&str; 10] = [
    "series",
    "bin",
    "lower",
    "upper",
    "count",
    "mean_confidence",
    "accuracy",
    "gap",
    "ece",
    "definition",
];

/// Renders series as reliability CSV text.
pub fn to_csv_string(series: &[ReliabilitySeries]) -> String {
    let mut out = String::new();
    csv::write_row(&mut out, &CSV_HEADER);
    for s in series {
        for (i, b) in s.bins.iter().enumerate() {
            csv::write_row(
                &mut out,
                &[
                    s.label.clone(),
                    i.to_string(),
                    format_value(b.lower),
                    format_value(b.upper),
                    b.count.to_string(),
                    format_value(b.mean_confidence),
                    format_value(b.accuracy),
                    format_value(b.accuracy - b.mean_confidence),
                    s.ece.map(format_value).unwrap_or_default(),
                    s.definition.clone(),
                ],
            );
        }
    }
    out
}

/// Writes reliability CSV atomically (without drawing; e.g. for evaluation to leave data for the report).
pub fn write_reliability_csv(path: &Path, series: &[ReliabilitySeries]) -> Result<(), ReportError> {
    decal_core::write_atomic(path, to_csv_string(series).as_bytes())?;
    Ok(())
}

/// Parses reliability CSV text. Rows of one series must be contiguous and agree on `ece` and
/// `definition`; `bin` must count 0, 1, 2, … within a series. The `gap` column is ignored (derived).
pub fn parse_reliability_csv(
    text: &str,
    path: &Path,
) -> Result<Vec<ReliabilitySeries>, ReportError> {
    let rows = csv::parse(text).map_err(|(line, m)| ReportError::parse(path, line, m))?;
    let Some((header, body)) = rows.split_first() else {
        return Err(ReportError::parse(
            path,
            1,
            "empty file: expected a reliability CSV header",
        ));
    };
    let index = csv::column_indices(header, CSV_HEADER, path)?;
    let mut series: Vec<ReliabilitySeries> = Vec::new();
    for row in body {
        csv::check_row_width(row, header, path)?;
        let err = |m: String| ReportError::parse(path, row.line, m);
        let get = |i: usize| row.fields[index[i]].as_str();
        let num = |i: usize| {
            parse_value(get(i))
                .ok_or_else(|| err(format!("{} {:?} is not a number", CSV_HEADER[i], get(i))))
        };
        let label = get(0).to_string();
        let bin: usize = get(1)
            .parse()
            .map_err(|_| err(format!("bin {:?} is not an index", get(1))))?;
        let count: u64 = get(4)
            .parse()
            .map_err(|_| err(format!("count {:?} is not a count", get(4))))?;
        let stat = ReliabilityBin {
            lower: num(2)?,
            upper: num(3)?,
            count,
            mean_confidence: num(5)?,
            accuracy: num(6)?,
        };
        let ece = match get(8) {
            "" => None,
            _ => Some(num(8)?),
        };
        let definition = get(9).to_string();
        match series.last_mut() {
            Some(s) if s.label == label => {
                if s.ece.map(f64::to_bits) != ece.map(f64::to_bits) || s.definition != definition {
                    return Err(err(format!(
                        "series {label:?} changes its ece or definition between rows"
                    )));
                }
                if bin != s.bins.len() {
                    return Err(err(format!(
                        "series {label:?}: bin {bin} follows bin {}",
                        s.bins.len() - 1
                    )));
                }
                s.bins.push(stat);
            }
            _ => {
                if series.iter().any(|s| s.label == label) {
                    return Err(err(format!("rows of series {label:?} are not contiguous")));
                }
                if bin != 0 {
                    return Err(err(format!(
                        "series {label:?} starts at bin {bin}, expected 0"
                    )));
                }
                series.push(ReliabilitySeries {
                    label,
                    bins: vec![stat],
                    ece,
                    definition,
                });
            }
        }
    }
    Ok(series)
}

/// Reads a reliability CSV file.
pub fn read_reliability_csv(path: &Path) -> Result<Vec<ReliabilitySeries>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(ReportError::io(path))?;
    parse_reliability_csv(&text, path)
}

/// Draws `series` (overlaid, in the given order) and writes `stem.svg`, `stem.png` and `stem.csv`
/// atomically; returns the three paths. `title` is printed above the diagram.
pub fn write_reliability_diagram(
    stem: &Path,
    series: &[ReliabilitySeries],
    title: &str,
) -> Result<Vec<PathBuf>, ReportError> {
    if series.is_empty() {
        return Err(ReportError::Invalid(format!(
            "{}: no reliability series to draw",
            stem.display()
        )));
    }
    for s in series {
        s.validate()
            .map_err(|m| ReportError::Invalid(format!("{}: {m}", stem.display())))?;
    }
    let figure = ReliabilityFigure { series, title };
    let mut paths = plot::write_figure(stem, &figure)?;
    let csv_path = plot::with_suffix(stem, "csv");
    write_reliability_csv(&csv_path, series)?;
    paths.push(csv_path);
    Ok(paths)
}

/// Width of the slot drawn for a single-value bin (confidence exactly 1.0), in confidence units.
const POINT_BIN_WIDTH: f64 = 0.03;

struct ReliabilityFigure<'a> {
    series: &'a [ReliabilitySeries],
    title: &'a str,
}

impl ReliabilityFigure<'_> {
    /// x-extent of bin `b`'s slot for series `j` of `n`: the bin split into `n` side-by-side bars.
    fn slot(b: &ReliabilityBin, j: usize, n: usize) -> (f64, f64) {
        let (lo, hi) = if b.upper > b.lower {
            (b.lower, b.upper)
        } else {
            (b.lower, b.lower + POINT_BIN_WIDTH)
        };
        let w = (hi - lo) / n as f64;
        // A little air between neighbouring bars, proportional to the slot.
        let pad = w * 0.06;
        (lo + w * j as f64 + pad, lo + w * (j + 1) as f64 - pad)
    }

    fn x_max(&self) -> f64 {
        let point_bin = self
            .series
            .iter()
            .any(|s| s.bins.iter().any(|b| b.upper <= b.lower && b.count > 0));
        if point_bin {
            1.0 + POINT_BIN_WIDTH
        } else {
            1.0
        }
    }

    fn definitions(&self) -> Vec<String> {
        let mut defs: Vec<String> = Vec::new();
        for s in self.series {
            if !s.definition.is_empty() && !defs.contains(&s.definition) {
                defs.push(s.definition.clone());
            }
        }
        defs
    }
}

impl Figure for ReliabilityFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (720, 780 + 16 * self.definitions().len() as u32)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        scale: f64,
    ) -> Result<(), String> {
        let n = self.series.len();
        let x_max = self.x_max();
        let defs = self.definitions();
        let foot_h = px(8.0 + 16.0 * defs.len() as f64, scale);
        let root = plot::draw_title(root, self.title, scale)?;
        let (body, foot) = root.split_vertically(root.dim_in_pixel().1 - foot_h);
        let (top, bottom) = body.split_vertically((body.dim_in_pixel().1 as f64 * 0.68) as u32);

        // Upper panel: accuracy bars, gap shading, diagonal.
        let mut chart = ChartBuilder::on(&top)
            .margin_left(px(10.0, scale))
            .margin_right(px(20.0, scale))
            .margin_top(px(6.0, scale))
            .x_label_area_size(px(28.0, scale))
            .y_label_area_size(px(62.0, scale))
            .build_cartesian_2d(0.0..x_max, 0.0..1.0)
            .map_err(de)?;
        chart
            .configure_mesh()
            .x_labels(11)
            .y_labels(11)
            .x_label_formatter(&|x| crate::format::fixed(*x, 1))
            .y_label_formatter(&|y| crate::format::fixed(*y, 1))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.08))
            .axis_style(BLACK.stroke_width(px(1.0, scale)))
            .y_desc("Accuracy")
            .label_style(font(13.0, scale))
            .axis_desc_style(font(15.0, scale))
            .draw()
            .map_err(de)?;

        let diag = if x_max > 1.0 {
            vec![(0.0, 0.0), (1.0, 1.0)]
        } else {
            vec![(0.0, 0.0), (x_max, x_max)]
        };
        chart
            .draw_series(DashedLineSeries::new(
                diag,
                px(6.0, scale),
                px(4.0, scale),
                BLACK.mix(0.55).stroke_width(px(1.5, scale)),
            ))
            .map_err(de)?
            .label("Perfect calibration")
            .legend(move |(x, y)| {
                plot::legend_line(x, y, BLACK.mix(0.55).stroke_width(px(1.5, scale)), scale)
            });

        for (j, s) in self.series.iter().enumerate() {
            let color = plot::series_color(j);
            let label = match s.ece {
                Some(e) => format!("{} (ECE {})", s.label, plot::pct_label(e)),
                None => s.label.clone(),
            };
            // Solid bar up to min(accuracy, confidence); the gap between accuracy and confidence is
            // shaded in the gap colour on both sides of the diagonal (over white, so an under-confident
            // bin's gap does not mix with the bar colour); the black outline always spans 0..accuracy.
            let bars: Vec<_> = s
                .bins
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| {
                    let (x0, x1) = Self::slot(b, j, n);
                    let top = b.accuracy.min(b.mean_confidence);
                    Rectangle::new([(x0, 0.0), (x1, top)], color.mix(0.85).filled())
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(de)?
                .label(label)
                .legend(move |(x, y)| plot::legend_box(x, y, color.mix(0.85).filled(), scale));
            for fill in [WHITE.filled(), GAP_FILL.mix(0.35).filled()] {
                chart
                    .draw_series(s.bins.iter().filter(|b| b.count > 0).map(|b| {
                        let (x0, x1) = Self::slot(b, j, n);
                        Rectangle::new([(x0, b.accuracy), (x1, b.mean_confidence)], fill)
                    }))
                    .map_err(de)?;
            }
            // Thin outlines: the bar's height is the bin's accuracy.
            chart
                .draw_series(s.bins.iter().filter(|b| b.count > 0).map(|b| {
                    let (x0, x1) = Self::slot(b, j, n);
                    Rectangle::new(
                        [(x0, 0.0), (x1, b.accuracy)],
                        BLACK.mix(0.6).stroke_width(px(1.0, scale)),
                    )
                }))
                .map_err(de)?;
            // The mean confidence of each bin, as a short solid tick across the bar.
            chart
                .draw_series(s.bins.iter().filter(|b| b.count > 0).map(|b| {
                    let (x0, x1) = Self::slot(b, j, n);
                    PathElement::new(
                        vec![(x0, b.mean_confidence), (x1, b.mean_confidence)],
                        GAP_FILL.stroke_width(px(1.5, scale)),
                    )
                }))
                .map_err(de)?;
        }
        // A legend-only entry for the gap shading, after the series.
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
            .map_err(de)?
            .label("Gap |accuracy − confidence|")
            .legend(move |(x, y)| plot::legend_box(x, y, GAP_FILL.mix(0.35).filled(), scale));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .margin(px(10.0, scale))
            .label_font(font(13.0, scale))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(de)?;

        // Lower panel: fraction of samples per bin, with the count printed above each bar.
        let max_frac = self
            .series
            .iter()
            .flat_map(|s| {
                let total = s.total() as f64;
                s.bins.iter().map(move |b| b.count as f64 / total)
            })
            .fold(0.0f64, f64::max);
        // Head-room for the rotated count labels.
        let y_top = (max_frac * 1.35).clamp(0.05, 1.35);
        let mut hist = ChartBuilder::on(&bottom)
            .margin_left(px(10.0, scale))
            .margin_right(px(20.0, scale))
            .margin_top(px(4.0, scale))
            .x_label_area_size(px(44.0, scale))
            .y_label_area_size(px(62.0, scale))
            .build_cartesian_2d(0.0..x_max, 0.0..y_top)
            .map_err(de)?;
        hist.configure_mesh()
            .x_labels(11)
            .y_labels(5)
            .x_label_formatter(&|x| crate::format::fixed(*x, 1))
            .y_label_formatter(&|y| crate::format::fixed(*y, 2))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.08))
            .axis_style(BLACK.stroke_width(px(1.0, scale)))
            .x_desc("Confidence (top-label probability)")
            .y_desc("Fraction of samples")
            .label_style(font(13.0, scale))
            .axis_desc_style(font(15.0, scale))
            .draw()
            .map_err(de)?;
        for (j, s) in self.series.iter().enumerate() {
            let color = plot::series_color(j);
            let total = s.total() as f64;
            hist.draw_series(s.bins.iter().filter(|b| b.count > 0).map(|b| {
                let (x0, x1) = Self::slot(b, j, n);
                Rectangle::new(
                    [(x0, 0.0), (x1, b.count as f64 / total)],
                    color.mix(0.85).filled(),
                )
            }))
            .map_err(de)?;
            let count_font = font(10.0, scale)
                .transform(FontTransform::Rotate270)
                .color(&BLACK.mix(0.8));
            hist.draw_series(s.bins.iter().filter(|b| b.count > 0).map(|b| {
                let (x0, x1) = Self::slot(b, j, n);
                let text = b.count.to_string();
                Text::new(
                    text,
                    ((x0 + x1) / 2.0, b.count as f64 / total + y_top * 0.02),
                    count_font.clone(),
                )
            }))
            .map_err(de)?;
        }

        // Footnote: the definitions behind the numbers.
        for (i, d) in defs.iter().enumerate() {
            foot.draw(&Text::new(
                format!("Bins / ECE: {d}"),
                (
                    px(14.0, scale) as i32,
                    (px(4.0, scale) + px(16.0, scale) * i as u32) as i32,
                ),
                font(11.5, scale).color(&BLACK.mix(0.75)),
            ))
            .map_err(de)?;
        }
        Ok(())
    }
}

const GAP_FILL: RGBColor = plot::GAP_COLOR;

#[cfg(test)]
mod tests {
    use super::*;

    /// Reliability data in the torchmetrics layout (10 bins + the confidence == 1.0 bin), shaped like an
    /// over-confident CIFAR-10 network.
    pub(crate) fn overconfident(label: &str, shrink: f64) -> ReliabilitySeries {
        let mut bins: Vec<ReliabilityBin> = (0..10)
            .map(|i| {
                let lower = i as f64 / 10.0;
                let count = [0u64, 2, 12, 40, 85, 120, 160, 210, 330, 5400][i];
                let conf = lower + 0.06;
                ReliabilityBin {
                    lower,
                    upper: lower + 0.1,
                    count,
                    mean_confidence: conf,
                    accuracy: (conf - shrink * conf * (1.0 - conf) * 1.5).max(0.0),
                }
            })
            .collect();
        bins.push(ReliabilityBin {
            lower: 1.0,
            upper: 1.0,
            count: 3600,
            mean_confidence: 1.0,
            accuracy: 0.995,
        });
        ReliabilitySeries {
            label: label.into(),
            bins,
            ece: Some(0.0606 * shrink),
            definition: "top-label, 10 equal-width bins [lo,hi) + conf = 1 bin (torchmetrics)"
                .into(),
        }
    }

    #[test]
    fn csv_round_trip() {
        let series = vec![
            overconfident("before TS", 1.0),
            overconfident("after TS", 0.4),
        ];
        let text = to_csv_string(&series);
        assert!(text.starts_with("series,bin,lower,upper,count,mean_confidence,accuracy,gap,ece,definition\nbefore TS,0,0.0,0.1,0,0.06,"));
        let back = parse_reliability_csv(&text, Path::new("r.csv")).unwrap();
        assert_eq!(back, series);
    }

    #[test]
    fn csv_errors_name_file_and_line() {
        let mut text = to_csv_string(&[overconfident("a", 1.0)]);
        text.push_str("a,5,0.1,0.2,3,0.1,0.1,0,0.0606,x\n");
        let err = parse_reliability_csv(&text, Path::new("rel/a.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("rel/a.csv:13: "), "{err}");
        let err = parse_reliability_csv("series,bin\n", Path::new("r.csv"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "r.csv:1: header has no `lower` column");
    }

    #[test]
    fn invalid_series_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = overconfident("x", 1.0);
        s.bins[3].accuracy = 1.5;
        let err = write_reliability_diagram(&dir.path().join("r"), &[s], "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bin 3: accuracy 1.5 is outside [0, 1]"),
            "{err}"
        );
        let err = write_reliability_diagram(&dir.path().join("r"), &[], "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no reliability series"), "{err}");
    }

    #[test]
    fn writes_svg_png_csv_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let series = vec![
            overconfident("before TS", 1.0),
            overconfident("after TS", 0.4),
        ];
        let stem = dir.path().join("reliability");
        let paths =
            write_reliability_diagram(&stem, &series, "WRN-28-10 on CIFAR-10 (test)").unwrap();
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["reliability.svg", "reliability.png", "reliability.csv"]
        );
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(
            svg.starts_with("<svg")
                && svg.contains("ECE 6.06%")
                && svg.contains("after TS (ECE 2.42%)")
        );
        let png = std::fs::read(&paths[1]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let stem2 = dir.path().join("again");
        let paths2 =
            write_reliability_diagram(&stem2, &series, "WRN-28-10 on CIFAR-10 (test)").unwrap();
        for (a, b) in paths.iter().zip(&paths2) {
            assert_eq!(
                std::fs::read(a).unwrap(),
                std::fs::read(b).unwrap(),
                "{} differs",
                a.display()
            );
        }
        if let Ok(dir) = std::env::var("DECAL_REPORT_KEEP") {
            let keep = Path::new(&dir).join("reliability");
            write_reliability_diagram(&keep, &series, "WRN-28-10 on CIFAR-10 (test)").unwrap();
            write_reliability_diagram(
                &Path::new(&dir).join("reliability_single"),
                &series[..1],
                "Baseline",
            )
            .unwrap();
        }
    }

    fn bin(lower: f64, count: u64, conf: f64, acc: f64) -> ReliabilityBin {
        ReliabilityBin {
            lower,
            upper: lower + 0.5,
            count,
            mean_confidence: conf,
            accuracy: acc,
        }
    }

    #[test]
    fn pooling_weights_by_count_and_refuses_other_edges() {
        let a = [bin(0.0, 2, 0.25, 0.5), bin(0.5, 0, 0.0, 0.0)];
        let b = [bin(0.0, 6, 0.45, 0.0), bin(0.5, 4, 0.75, 1.0)];
        let p = pool_bins([&a[..], &b[..]]).unwrap();
        assert_eq!(p[0].count, 8);
        assert_eq!(p[0].mean_confidence, (2.0 * 0.25 + 6.0 * 0.45) / 8.0);
        assert_eq!(p[0].accuracy, (2.0 * 0.5) / 8.0);
        assert_eq!(
            (p[1].count, p[1].mean_confidence, p[1].accuracy),
            (4, 0.75, 1.0)
        );
        assert_eq!((p[0].lower, p[1].upper), (0.0, 1.0));
        // ECE of the pooled bins: Σ n_b/N · |acc − conf|.
        let want = 8.0 / 12.0 * (0.125f64 - 0.4).abs() + 4.0 / 12.0 * 0.25;
        assert!((bins_ece(&p).unwrap() - want).abs() < 1e-15);
        assert_eq!(bins_ece(&[bin(0.0, 0, 0.0, 0.0)]), None);
        // Other edges or another bin count: not pooled.
        let shifted = [bin(0.1, 1, 0.2, 0.0), bin(0.5, 1, 0.7, 1.0)];
        assert!(pool_bins([&a[..], &shifted[..]]).is_none());
        assert!(pool_bins([&a[..], &a[..1]]).is_none());
        assert!(pool_bins(std::iter::empty::<&[ReliabilityBin]>()).is_none());
    }
}
