//! The PNG chart: for each closed-loop scenario, req/s relative to the floor (top; hyper has
//! no floor, so relative to hyper on tokio) and p99 latency on a log scale (bottom), one bar
//! per server with its min–max range.
//!
//! Drawn with plotters' bitmap backend. Text uses the public-domain 8x8 font of `font8x8`,
//! drawn pixel by pixel, so the chart needs no system font.

use std::io;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Metric, Report};
use crate::scenario::Kind;
use crate::server::{App, Family, Variant};

const COLORS: [(Family, RGBColor); 4] = [
    (Family::Netpoll, RGBColor(0xd9, 0x48, 0x1c)),
    (Family::Tokio, RGBColor(0x3b, 0x6e, 0xb4)),
    (Family::Go, RGBColor(0x2a, 0x9d, 0x8f)),
    (Family::Floor, RGBColor(0x70, 0x70, 0x70)),
];
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
const GROUP_WIDTH: u32 = 100;
const LEFT: u32 = 70;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn color(f: Family) -> RGBColor {
    COLORS.iter().find(|(g, _)| *g == f).map_or(BLACK, |c| c.1)
}

fn plot_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

/// Draws `text` with its top-left corner at (x, y), each font pixel `scale` pixels wide.
fn text(area: &Area, x: i32, y: i32, s: &str, scale: i32, c: &RGBColor) {
    for (i, ch) in s.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY
            .get(ch as usize)
            .copied()
            .unwrap_or(font8x8::legacy::BASIC_LEGACY[b'?' as usize]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = x + (i as i32 * 8 + col) * scale + dx;
                        let py = y + row as i32 * scale + dy;
                        let _ = area.draw_pixel((px, py), c);
                    }
                }
            }
        }
    }
}

fn text_width(s: &str, scale: i32) -> i32 {
    s.chars().count() as i32 * 8 * scale
}

/// One bar: the median, and the min–max whisker.
struct Bar {
    family: Family,
    median: f64,
    min: f64,
    max: f64,
}

struct Group {
    label: [String; 2],
    bars: Vec<Bar>,
}

/// Writes the chart of `report` to `path`; returns false when there is nothing to draw.
pub fn draw(report: &Report, path: &Path) -> io::Result<bool> {
    let closed: Vec<usize> = (0..report.scenarios.len())
        .filter(|&si| matches!(report.scenarios[si].kind, Kind::Closed { .. }))
        .filter(|&si| !report.variants_in(si).is_empty())
        .collect();
    if closed.is_empty() {
        return Ok(false);
    }
    let groups = |m: Metric, relative: bool| -> Vec<Group> {
        closed
            .iter()
            .map(|&si| {
                let s = &report.scenarios[si];
                // hyper has no floor: its bars are relative to hyper on tokio.
                let base = [Family::Floor, Family::Tokio]
                    .into_iter()
                    .find_map(|f| report.stat(si, Variant::plain(f), m))
                    .map_or(1.0, |b| b.median);
                let scale = if relative { 1.0 / base } else { 1.0 };
                let bars = report
                    .variants_in(si)
                    .into_iter()
                    .filter_map(|v| {
                        let st = report.stat(si, v, m)?;
                        Some(Bar {
                            family: v.family,
                            median: st.median * scale,
                            min: st.min * scale,
                            max: st.max * scale,
                        })
                    })
                    .collect();
                let (what, conns) = match (s.app, s.kind) {
                    (App::Echo, Kind::Closed { size, conns, .. }) => {
                        (format!("echo {size}"), conns)
                    }
                    (App::Http, Kind::Closed { conns, .. }) => ("http".to_string(), conns),
                    (App::Hyper, Kind::Closed { conns, .. }) => ("hyper".to_string(), conns),
                    _ => unreachable!("closed-loop scenarios only"),
                };
                let place = match s.placement {
                    crate::scenario::Placement::Pinned => "pin",
                    crate::scenario::Placement::Unpinned => "2 wrk",
                };
                Group {
                    label: [what, format!("c{conns} {place}")],
                    bars,
                }
            })
            .collect()
    };
    let width = LEFT + 20 + GROUP_WIDTH * closed.len() as u32;
    let (w, h) = (width.max(760), 820u32);
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    text(
        &root,
        12,
        10,
        &format!("netpoll-bench {} ({})", report.mode, report.env.date),
        2,
        &BLACK,
    );
    let mut x = 12;
    for (f, c) in COLORS {
        if !report.plan.families.contains(&f) {
            continue;
        }
        root.draw(&Rectangle::new([(x, 36), (x + 12, 48)], c.filled()))
            .map_err(plot_err)?;
        text(&root, x + 16, 38, f.name(), 1, &BLACK);
        x += 16 + text_width(f.name(), 1) + 20;
    }
    let (top, bottom) = root.split_vertically(h / 2 + 20);
    let top = top.margin(60, 0, 0, 0);
    panel(
        &root,
        &top,
        &groups(Metric::Rps, true),
        "closed loop: req/s relative to the floor, else to tokio (hyper) (bar: median; line: min-max)",
        false,
    )?;
    panel(
        &root,
        &bottom,
        &groups(Metric::P99, false),
        "closed loop: p99 latency (log scale)",
        true,
    )?;
    root.present().map_err(plot_err)?;
    Ok(true)
}

/// One panel of grouped bars. `log`: values are µs, drawn on a log axis in ms.
fn panel(root: &Area, area: &Area, groups: &[Group], title: &str, log: bool) -> io::Result<()> {
    let (x0, y0) = (area.get_base_pixel().0, area.get_base_pixel().1);
    let (aw, ah) = area.dim_in_pixel();
    text(root, x0 + 12, y0 + 4, title, 1, &BLACK);
    let n = groups.len() as f64;
    let values = groups.iter().flat_map(|g| g.bars.iter().map(|b| b.max));
    let vmax = values.fold(0.0f64, f64::max);
    // Plot area in pixels: leave room for the title, the axis labels and the group labels.
    let (px0, px1) = (x0 + LEFT as i32, x0 + aw as i32 - 20);
    let (py0, py1) = (y0 + 24, y0 + ah as i32 - 40);
    let ticks: Vec<(f64, String)>;
    let to_y: Box<dyn Fn(f64) -> i32>;
    if log {
        // µs → ms, decades from 0.01 ms up to the largest value.
        let lo = -2i32;
        let hi = ((vmax / 1000.0).max(0.1).log10().ceil() as i32).max(lo + 1);
        ticks = (lo..=hi)
            .map(|e| {
                let v = 10f64.powi(e);
                (v, format_tick(v))
            })
            .collect();
        let span = (hi - lo) as f64;
        to_y = Box::new(move |us: f64| {
            let e = ((us / 1000.0).max(10f64.powi(lo))).log10();
            py1 - ((e - lo as f64) / span * (py1 - py0) as f64) as i32
        });
    } else {
        let top = (vmax * 1.1).max(1.2);
        let step = if top > 3.0 { 1.0 } else { 0.25 };
        ticks = (0..=(top / step) as usize)
            .map(|i| {
                let v = i as f64 * step;
                (v, format!("{v:.2}"))
            })
            .collect();
        to_y = Box::new(move |v: f64| py1 - (v / top * (py1 - py0) as f64) as i32);
    }
    for (v, label) in &ticks {
        let y = to_y(if log { v * 1000.0 } else { *v });
        let style = if !log && *v == 1.0 { BLACK } else { GRID };
        root.draw(&PathElement::new([(px0, y), (px1, y)], style))
            .map_err(plot_err)?;
        text(
            root,
            px0 - 8 - text_width(label, 1),
            y - 4,
            label,
            1,
            &BLACK,
        );
    }
    let gw = (px1 - px0) as f64 / n;
    for (gi, g) in groups.iter().enumerate() {
        let gx = px0 + (gi as f64 * gw) as i32;
        let k = g.bars.len().max(1) as i32;
        let bw = ((gw as i32 - 12) / k).clamp(2, 40);
        // Centre the bars in their group.
        let bars_x = gx + (gw as i32 - 12 - bw * k) / 2;
        for (bi, b) in g.bars.iter().enumerate() {
            let bx = bars_x + 6 + bi as i32 * bw;
            let c = color(b.family);
            let base = if log { py1 } else { to_y(0.0) };
            root.draw(&Rectangle::new(
                [(bx, to_y(b.median)), (bx + bw - 2, base)],
                c.filled(),
            ))
            .map_err(plot_err)?;
            let mid = bx + (bw - 2) / 2;
            root.draw(&PathElement::new(
                [(mid, to_y(b.min)), (mid, to_y(b.max))],
                BLACK.stroke_width(1),
            ))
            .map_err(plot_err)?;
        }
        for (li, line) in g.label.iter().enumerate() {
            let lx = gx + (gw as i32 - text_width(line, 1)) / 2;
            text(root, lx, py1 + 6 + li as i32 * 11, line, 1, &BLACK);
        }
    }
    root.draw(&PathElement::new(
        [(px0, py0), (px0, py1), (px1, py1)],
        BLACK,
    ))
    .map_err(plot_err)?;
    Ok(())
}

fn format_tick(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms} ms")
    }
}
