//! One datacenter's timeline as an SVG chart: ok ops/s, errors/s and the worst workload's p99 in
//! three stacked panels over one time axis, the fault windows as shaded bands with their names.
//!
//! Hand-written: a few paths, rectangles and labels do not justify a plotting crate, and plain
//! string formatting keeps the output byte-for-byte the same for the same journal.

use std::fmt::Write as _;

use super::{DcTimeline, Second};
use crate::journal::FaultWindow;

const WIDTH: f64 = 900.0;
/// Room for the y labels and the rotated panel names.
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
/// Room for the title and two staggered rows of fault names.
const TOP: f64 = 62.0;
const PANEL: f64 = 120.0;
const GAP: f64 = 14.0;
/// Room for the time labels.
const BOTTOM: f64 = 34.0;
/// At most about this many time labels.
const TIME_LABELS: f64 = 10.0;

struct Panel {
    name: &'static str,
    colour: &'static str,
    value: fn(&Second) -> Option<f64>,
}

const PANELS: [Panel; 3] = [
    Panel {
        name: "ok ops/s",
        colour: "#1f77b4",
        value: |s| Some(s.ok() as f64),
    },
    Panel {
        name: "errors/s",
        colour: "#d62728",
        value: |s| Some(s.errors as f64),
    },
    // No line where no op succeeded: there is no latency to draw, and 0 would read as fast.
    Panel {
        name: "worst p99 (ms)",
        colour: "#6a3d9a",
        value: |s| s.worst_p99_us.map(|us| us as f64 / 1000.0),
    },
];

pub(super) fn render(t: &DcTimeline, faults: &[FaultWindow]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let bands_h = 3.0 * PANEL + 2.0 * GAP;
    let height = TOP + bands_h + BOTTOM;
    // The axis covers the recorded seconds and every fault, from t0.
    let last_s = t.seconds.last().map_or(0, |s| s.at_s.saturating_add(1));
    let fault_end_ms = faults.iter().map(|f| f.end_ms.max(f.start_ms)).max();
    let end_s = (last_s as f64)
        .max(fault_end_ms.map_or(0.0, |ms| (ms as f64 / 1000.0).ceil()))
        .max(1.0);
    let x = |s: f64| LEFT + s.clamp(0.0, end_s) / end_s * plot_w;
    let x_ms = |ms: i64| x(ms as f64 / 1000.0);

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, "<title>{} timeline</title>", xml(t.dc));
    let _ = writeln!(
        out,
        r##"<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="18" font-size="14">datacenter {}: {}</text>"#,
        xml(t.dc),
        xml(&t.workloads.join(", "))
    );

    for (k, f) in faults.iter().enumerate() {
        let (x0, x1) = (x_ms(f.start_ms), x_ms(f.end_ms.max(f.start_ms)));
        // An instantaneous fault (a restart) still gets a visible line.
        let _ = writeln!(
            out,
            r##"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{bands_h}" fill="#ff7f0e" fill-opacity="0.18"/>"##,
            (x1 - x0).max(1.5)
        );
        // Alternate rows so that neighbouring faults' names overlap less.
        let _ = writeln!(
            out,
            r##"<text x="{x0:.1}" y="{}" fill="#b35900">{}</text>"##,
            TOP - 6.0 - 13.0 * (k % 2) as f64,
            xml(&f.name)
        );
    }

    for (i, panel) in PANELS.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        draw_panel(&mut out, panel, t, top, plot_w, &x);
    }

    let axis_y = TOP + bands_h;
    let step = nice_ceiling(end_s / TIME_LABELS);
    for k in 0..=(end_s / step) as u64 {
        let tick = k as f64 * step;
        let tx = x(tick);
        let _ = writeln!(
            out,
            r##"<line x1="{tx:.1}" y1="{axis_y}" x2="{tx:.1}" y2="{}" stroke="#888888"/><text x="{tx:.1}" y="{}" text-anchor="middle">+{}s</text>"##,
            axis_y + 4.0,
            axis_y + 16.0,
            number(tick)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">time from t0</text>"#,
        LEFT + plot_w,
        axis_y + 30.0
    );
    out.push_str("</svg>\n");
    out
}

/// One panel: frame, scale (0, half, top), the series as steps (one value held over each
/// second), broken where a second has no value.
fn draw_panel(
    out: &mut String,
    panel: &Panel,
    t: &DcTimeline,
    top: f64,
    plot_w: f64,
    x: &dyn Fn(f64) -> f64,
) {
    let values: Vec<(u64, Option<f64>)> = t
        .seconds
        .iter()
        .map(|s| (s.at_s, (panel.value)(s).filter(|v| v.is_finite())))
        .collect();
    let max = values.iter().filter_map(|(_, v)| *v).fold(0.0, f64::max);
    let y_top = nice_ceiling(max);
    let y = |v: f64| top + PANEL - v.clamp(0.0, y_top) / y_top * PANEL;
    let middle = top + PANEL / 2.0;

    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888888"/>"##
    );
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{middle}" x2="{}" y2="{middle}" stroke="#dddddd"/>"##,
        LEFT + plot_w
    );
    for (value, at) in [(y_top, top), (y_top / 2.0, middle), (0.0, top + PANEL)] {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 4.0,
            at + 4.0,
            number(value)
        );
    }
    let _ = writeln!(
        out,
        r#"<text transform="translate(16 {middle}) rotate(-90)" text-anchor="middle">{}</text>"#,
        panel.name
    );

    let mut path = String::new();
    let mut joined_at: Option<u64> = None;
    for (at_s, value) in values {
        let Some(value) = value else {
            joined_at = None;
            continue;
        };
        let (x0, x1, vy) = (x(at_s as f64), x(at_s as f64 + 1.0), y(value));
        if joined_at == Some(at_s) {
            let _ = write!(path, "V{vy:.1}H{x1:.1}");
        } else {
            let _ = write!(path, "M{x0:.1} {vy:.1}H{x1:.1}");
        }
        joined_at = Some(at_s.saturating_add(1));
    }
    if !path.is_empty() {
        let _ = writeln!(
            out,
            r#"<path d="{path}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
            panel.colour
        );
    }
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v`; 1 for nothing to show, so that
/// scales never divide by zero. Multiplying by ten (no logarithms) keeps it exact enough to
/// print the same everywhere.
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let mut magnitude = 1.0;
    while magnitude * 10.0 <= v {
        magnitude *= 10.0;
    }
    while magnitude > v {
        magnitude /= 10.0;
    }
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|nice| *nice >= v)
        // Below f64's smallest magnitudes the loop ends at 0: still no division by zero.
        .filter(|nice| *nice > 0.0)
        .unwrap_or(1.0)
}

/// A scale label: at most three decimals, none trailing.
fn number(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_labels() {
        let cases: &[(f64, f64)] = &[
            (0.0, 1.0),
            (-3.0, 1.0),
            (f64::NAN, 1.0),
            (f64::INFINITY, 1.0),
            (1.0, 1.0),
            (1.2, 2.0),
            (3.0, 5.0),
            (7.0, 10.0),
            (100.0, 100.0),
            (101.0, 200.0),
            (0.03, 0.05),
            (1500.0, 2000.0),
        ];
        for (v, want) in cases {
            let got = nice_ceiling(*v);
            assert!((got - want).abs() < 1e-9, "nice_ceiling({v}) = {got}");
        }
        for tiny in [1e-320, 5e-324] {
            assert!(nice_ceiling(tiny) > 0.0, "nice_ceiling({tiny}) is no scale");
        }
        for (v, want) in [(0.0, "0"), (2.5, "2.5"), (0.05, "0.05"), (200.0, "200")] {
            assert_eq!(number(v), want);
        }
        assert_eq!(xml(r#"a<b & "c">"#), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
