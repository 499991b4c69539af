//! The whole-path chart: receiver-side ns per packet, one group of bars per scenario, one
//! bar per contender, drawn from the recorded results.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde_json::Value;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
pub const SCENARIOS: [&str; 3] = [
    "one-source flood",
    "65,536 sources under the limit",
    "16M forged sources + attacker (1 in 8)",
];
pub const CONTENDERS: [&str; 5] = [
    "no filter",
    "XDP_DROP",
    "guard",
    "nft meter",
    "iptables hashlimit",
];
const COLORS: [RGBColor; 5] = [
    RGBColor(150, 150, 150),
    RGBColor(60, 60, 60),
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(204, 121, 167),
];

/// The median of `<scenario>: <contender>: <what>`, when measured.
pub fn figure(results: &[Value], scenario: &str, contender: &str, what: &str) -> Option<f64> {
    crate::bench::stat(
        results,
        &format!("{scenario}: {contender}: {what}"),
        "median",
    )
}

/// Draws the chart; `Ok(false)` when there is nothing to draw (no whole-path results).
pub fn draw(results: &[Value], out: &Path, title: &str) -> anyhow::Result<bool> {
    let data: Vec<Vec<Option<f64>>> = SCENARIOS
        .iter()
        .map(|s| {
            CONTENDERS
                .iter()
                .map(|c| figure(results, s, c, "ns/packet"))
                .collect()
        })
        .collect();
    let max = data
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |a, b| a.max(*b));
    if max == 0.0 {
        return Ok(false);
    }
    let font =
        std::fs::read(FONT).with_context(|| format!("{FONT} (apt package fonts-dejavu-core)"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{FONT}: not a usable font"))?;
    let root = BitMapBackend::new(out, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..SCENARIOS.len() as f64, 0.0..max * 1.15)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(SCENARIOS.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 && i < SCENARIOS.len() {
                SCENARIOS[i].to_string()
            } else {
                String::new()
            }
        })
        .y_desc("ns per packet, one core (lower is better)")
        .light_line_style(WHITE)
        .label_style(("sans-serif", 14))
        .draw()?;
    let width = 0.8 / CONTENDERS.len() as f64;
    for (ci, contender) in CONTENDERS.iter().enumerate() {
        let color = COLORS[ci];
        let bars: Vec<(f64, f64)> = data
            .iter()
            .enumerate()
            .filter_map(|(si, row)| Some((si as f64 + 0.1 + ci as f64 * width, row[ci]?)))
            .collect();
        chart
            .draw_series(bars.iter().map(|&(x0, v)| {
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v)], color.filled())
            }))?
            .label(*contender)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        chart.draw_series(bars.iter().map(|&(x0, v)| {
            Text::new(
                format!("{v:.0}"),
                (x0 + width * 0.05, v + max * 0.04),
                ("sans-serif", 12),
            )
        }))?;
        // What a cheap bar cost in correctness, under the forged flood.
        let forged = SCENARIOS.len() - 1;
        let wrong = [
            ("attacker excess", "let through", ""),
            ("crowd dropped", "legit dropped", "%"),
        ]
        .iter()
        .filter_map(|(what, label, unit)| {
            let n = figure(results, SCENARIOS[forged], contender, what)?;
            (n >= 1.0 && *contender != "XDP_DROP").then(|| format!("{label}: {n:.0}{unit}"))
        })
        .next();
        if let (Some(w), Some(&(x0, v))) = (wrong, bars.iter().find(|(x, _)| *x > forged as f64)) {
            chart.draw_series(std::iter::once(Text::new(
                w,
                (x0 - width * 0.3, v + max * 0.09),
                ("sans-serif", 12).into_font().color(&RED),
            )))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(true)
}
