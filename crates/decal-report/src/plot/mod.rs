//! Figures: shared rendering machinery (embedded font, palette, SVG + PNG output) and the
//! ECE-vs-severity and OOD score-histogram plots. Reliability diagrams live in [`crate::reliability`].
//!
//! Every figure is drawn twice from the same code: once into an SVG string (vector, for papers) and once
//! into an RGB buffer at [`PNG_SCALE`]× the SVG's pixel size (for the HTML report and quick looks), then
//! both are written atomically. Text is rendered with DejaVu Sans embedded in the binary (the `dejavu`
//! crate), so PNGs look the same on machines without fonts.

pub mod histogram;
pub mod severity;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::ReportError;

pub use histogram::{write_score_histograms, ScoreCounts, ScoreHistogram};
pub use severity::{severity_lines, write_severity_plot, SeverityLine, SeverityPoint};

/// PNG pixels per SVG pixel: PNGs are rendered at twice the SVG's nominal size so they stay sharp when
/// printed or zoomed (a 720-px-wide figure becomes a 1440-px PNG).
pub const PNG_SCALE: f64 = 2.0;

/// Font family name under which the embedded DejaVu Sans is registered with plotters.
pub(crate) const FONT: &str = "sans-serif";

/// Colour-blind-safe series colours (Okabe & Ito 2008), without their vermillion, which is kept for the
/// calibration-gap shading of reliability diagrams.
pub(crate) const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0x7F, 0x7F, 0x7F),
    RGBColor(0x00, 0x00, 0x00),
];

/// Colour of the `|accuracy − confidence|` gap shading.
pub(crate) const GAP_COLOR: RGBColor = RGBColor(0xD5, 0x5E, 0x00);

/// The `i`-th series colour (cycling).
pub(crate) fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The point marker of series `i`. Colours repeat every [`PALETTE`] length, so each repetition gets the next
/// shape (filled circle, filled triangle, cross, open circle) and more than seven series stay distinguishable.
pub(crate) fn series_marker<'a, DB: DrawingBackend, C: Clone + 'static>(
    i: usize,
    at: C,
    size: i32,
    color: RGBColor,
) -> DynElement<'a, DB, C> {
    match (i / PALETTE.len()) % 4 {
        0 => Circle::new(at, size, color.filled()).into_dyn(),
        1 => TriangleMarker::new(at, size + size / 2, color.filled()).into_dyn(),
        2 => Cross::new(at, size, color.stroke_width(2)).into_dyn(),
        _ => Circle::new(at, size, color.stroke_width(2)).into_dyn(),
    }
}

/// Registers the embedded font with plotters (once per process).
pub(crate) fn ensure_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are DejaVu Sans 2.37 as shipped by the `dejavu` crate; parsing them cannot fail.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
        let _ = plotters::style::register_font(FONT, FontStyle::Italic, dejavu::sans::oblique());
    });
}

/// A figure that can draw itself on any plotters backend at a given scale (1 = SVG size).
pub(crate) trait Figure {
    /// Nominal (SVG) size in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the figure; every length (fonts, margins, strokes) is multiplied by `scale`.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        scale: f64,
    ) -> Result<(), String>;
}

/// Maps any plotters error into a message.
pub(crate) fn de<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// `stem` + `.ext`, keeping any dots already in the stem (`plots/v-tst m=1.0` → `plots/v-tst m=1.0.svg`).
pub fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut s: OsString = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Renders `figure` to `stem.svg` and `stem.png` (atomically) and returns both paths.
pub(crate) fn write_figure<F: Figure>(
    stem: &Path,
    figure: &F,
) -> Result<Vec<PathBuf>, ReportError> {
    ensure_fonts();
    let (w, h) = figure.size();
    let svg_path = with_suffix(stem, "svg");
    let png_path = with_suffix(stem, "png");
    let draw_err = |path: &Path| {
        let path = path.to_path_buf();
        move |message: String| ReportError::Draw { path, message }
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(de).map_err(draw_err(&svg_path))?;
        figure.draw(&root, 1.0).map_err(draw_err(&svg_path))?;
        root.present().map_err(de).map_err(draw_err(&svg_path))?;
    }
    decal_core::write_atomic(&svg_path, svg.as_bytes())?;

    let (pw, ph) = ((w as f64 * PNG_SCALE) as u32, (h as f64 * PNG_SCALE) as u32);
    let mut rgb = vec![0u8; pw as usize * ph as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (pw, ph)).into_drawing_area();
        root.fill(&WHITE).map_err(de).map_err(draw_err(&png_path))?;
        figure.draw(&root, PNG_SCALE).map_err(draw_err(&png_path))?;
        root.present().map_err(de).map_err(draw_err(&png_path))?;
    }
    let png_bytes = encode_png(&rgb, pw, ph).map_err(draw_err(&png_path))?;
    decal_core::write_atomic(&png_path, &png_bytes)?;
    Ok(vec![svg_path, png_path])
}

/// Encodes an RGB8 buffer as PNG (deterministic: fixed compression settings, no timestamps).
pub(crate) fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // 2 × 72 dpi in pixels per metre, so viewers that honour pHYs show the nominal size.
        encoder.set_pixel_dims(Some(png::PixelDimensions {
            xppu: (PNG_SCALE * 72.0 / 0.0254).round() as u32,
            yppu: (PNG_SCALE * 72.0 / 0.0254).round() as u32,
            unit: png::Unit::Meter,
        }));
        let mut writer = encoder.write_header().map_err(de)?;
        writer.write_image_data(rgb).map_err(de)?;
        writer.finish().map_err(de)?;
    }
    Ok(out)
}

/// A font of the embedded family at `size` nominal pixels times `scale`.
pub(crate) fn font(size: f64, scale: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FONT), size * scale, FontStyle::Normal)
}

/// Like [`font`], bold.
pub(crate) fn bold_font(size: f64, scale: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FONT), size * scale, FontStyle::Bold)
}

/// Draws `title` centred in a band at the top of `root` and returns the area below it.
pub(crate) fn draw_title<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    scale: f64,
) -> Result<DrawingArea<DB, Shift>, String> {
    let (band, rest) = root.split_vertically(px(38.0, scale));
    let (w, h) = band.dim_in_pixel();
    let style = TextStyle::from(bold_font(17.0, scale)).pos(Pos::new(HPos::Center, VPos::Center));
    band.draw(&Text::new(
        title.to_string(),
        (w as i32 / 2, h as i32 / 2),
        style,
    ))
    .map_err(de)?;
    Ok(rest)
}

/// Legend glyph: a small filled box (plotters reserves about one label-font height for the glyph).
pub(crate) fn legend_box(x: i32, y: i32, style: ShapeStyle, scale: f64) -> Rectangle<(i32, i32)> {
    let h = px(5.0, scale) as i32;
    Rectangle::new(
        [
            (x - px(2.0, scale) as i32, y - h),
            (x + px(10.0, scale) as i32, y + h),
        ],
        style,
    )
}

/// Legend glyph: a short line.
pub(crate) fn legend_line(
    x: i32,
    y: i32,
    style: ShapeStyle,
    scale: f64,
) -> PathElement<(i32, i32)> {
    PathElement::new(
        vec![
            (x - px(2.0, scale) as i32, y),
            (x + px(10.0, scale) as i32, y),
        ],
        style,
    )
}

/// Scales a nominal pixel length.
pub(crate) fn px(len: f64, scale: f64) -> u32 {
    (len * scale).round().max(1.0) as u32
}

/// Percent with two decimals for annotations, e.g. `6.06%`, via [`crate::format::fixed`].
pub(crate) fn pct_label(fraction: f64) -> String {
    format!("{}%", crate::format::fixed(fraction * 100.0, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_keeps_dots_in_stem() {
        assert_eq!(
            with_suffix(Path::new("a/v m=1.0"), "svg"),
            PathBuf::from("a/v m=1.0.svg")
        );
    }
}
