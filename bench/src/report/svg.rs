//! The plot, written by hand as SVG: four panels, log scales.
//!
//! Top: calls/s by calls in flight (median, with the range over runs as a
//! whisker), in-process systems on the left, broker systems on the right.
//! Bottom: latency percentile distributions (HDR style: the x axis spreads
//! the tail) at 1 and at 256 calls in flight, from the run whose calls/s
//! was the median.

use std::fmt::Write as _;

use super::Report;
use crate::args::Group;
use crate::stats::{Sample, Summary};
use crate::systems::{Flavor, SystemId};

const WIDTH: f64 = 980.0;
const HEIGHT: f64 = 780.0;
const PANEL_W: f64 = 400.0;
const PANEL_H: f64 = 250.0;
/// Left and top edges of the four panels' plotting areas.
const ORIGINS: [(f64, f64); 4] = [(80.0, 50.0), (560.0, 50.0), (80.0, 380.0), (560.0, 380.0)];
/// The runtime whose latency is plotted for in-process systems.
const LATENCY_FLAVOR_MEM: Flavor = Flavor::CurrentThread;

/// The SVG document for `report`.
pub(crate) fn render(report: &Report) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    throughput_panel(
        &mut svg,
        report,
        Group::Mem,
        ORIGINS[0],
        "In-process: calls/s by calls in flight",
    );
    throughput_panel(
        &mut svg,
        report,
        Group::Amqp,
        ORIGINS[1],
        "Through RabbitMQ: calls/s by calls in flight",
    );
    latency_panel(&mut svg, report, 1, ORIGINS[2]);
    latency_panel(&mut svg, report, 256, ORIGINS[3]);
    legend(&mut svg, report);
    svg.push_str("</svg>\n");
    svg
}

fn color(system: SystemId) -> &'static str {
    match system {
        SystemId::Mpsc => "#7f7f7f",
        SystemId::TypedMin => "#c7c7c7",
        SystemId::TarpcMem => "#1f77b4",
        SystemId::OursMem => "#d62728",
        SystemId::OursMemNoMetrics => "#ff9896",
        SystemId::TarpcTcp => "#9467bd",
        SystemId::LapinQueue => "#2ca02c",
        SystemId::LapinQueueConfirms => "#98df8a",
        SystemId::LapinDirect => "#17becf",
        SystemId::OursAmqp => "#ff7f0e",
        SystemId::OursAmqpNoConfirms => "#bcbd22",
        SystemId::OursAmqpDirectNoConfirms => "#8c564b",
        SystemId::OursAmqpQuorumCluster => "#e377c2",
        SystemId::NatsRaw => "#17becf",
        SystemId::NatsRawHeaders => "#9edae5",
        SystemId::OursNats => "#393b79",
        SystemId::KafkaRaw => "#bcbd22",
        SystemId::KafkaRawHeaders => "#dbdb8d",
        SystemId::OursKafka => "#8c564b",
        SystemId::ZmqRaw => "#9467bd",
        SystemId::OursZmq => "#000000",
    }
}

fn dash(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::CurrentThread => "",
        Flavor::MultiThread => r#" stroke-dasharray="6 3""#,
    }
}

/// A log10 axis from `lo` to `hi` (positive values) onto pixels `from..to`.
#[derive(Clone, Copy)]
struct LogAxis {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl LogAxis {
    /// An axis spanning whole decades around `values`.
    fn around(values: impl Iterator<Item = f64>, from: f64, to: f64) -> LogAxis {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
            lo = lo.min(v.log10());
            hi = hi.max(v.log10());
        }
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        LogAxis {
            lo: lo.floor(),
            hi: hi.ceil().max(lo.floor() + 1.0),
            from,
            to,
        }
    }

    fn at(&self, value: f64) -> f64 {
        let t = (value.max(1e-12).log10() - self.lo) / (self.hi - self.lo);
        self.from + t * (self.to - self.from)
    }

    fn decades(&self) -> impl Iterator<Item = f64> {
        (self.lo as i32..=self.hi as i32).map(|e| 10f64.powi(e))
    }
}

fn frame(svg: &mut String, (x, y): (f64, f64), title: &str) {
    let _ = writeln!(
        svg,
        r##"<rect x="{x}" y="{y}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="13" font-weight="bold">{}</text>"#,
        x + PANEL_W / 2.0,
        y - 12.0,
        escape(title)
    );
}

fn y_grid(svg: &mut String, (x, _): (f64, f64), axis: &LogAxis, unit: fn(f64) -> String) {
    for value in axis.decades() {
        let py = axis.at(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{x}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x + PANEL_W,
            x - 5.0,
            py + 4.0,
            escape(&unit(value))
        );
    }
}

fn polyline(svg: &mut String, points: &[(f64, f64)], system: SystemId, flavor: Flavor) {
    if points.is_empty() {
        return;
    }
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{}/>"#,
        path.join(" "),
        color(system),
        dash(flavor)
    );
    for (x, y) in points {
        let _ = writeln!(
            svg,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{}"/>"#,
            color(system)
        );
    }
}

fn throughput_panel(
    svg: &mut String,
    report: &Report,
    group: Group,
    origin: (f64, f64),
    title: &str,
) {
    let (x0, y0) = origin;
    frame(svg, origin, title);
    let summaries: Vec<&Summary> = report
        .summaries
        .iter()
        .filter(|s| s.system.group() == group)
        .collect();
    if summaries.is_empty() {
        empty(svg, origin);
        return;
    }
    let y = LogAxis::around(
        summaries
            .iter()
            .flat_map(|s| [s.calls_per_sec.min, s.calls_per_sec.max]),
        y0 + PANEL_H,
        y0,
    );
    let x = LogAxis {
        lo: -0.15,
        hi: 256f64.log10() + 0.15,
        from: x0,
        to: x0 + PANEL_W,
    };
    y_grid(svg, origin, &y, |v| format!("{}/s", si(v)));
    let mut levels: Vec<usize> = summaries.iter().map(|s| s.in_flight).collect();
    levels.sort_unstable();
    levels.dedup();
    for level in levels {
        let px = x.at(level as f64);
        let _ = writeln!(
            svg,
            r#"<text x="{px:.1}" y="{}" text-anchor="middle">{level}</text>"#,
            y0 + PANEL_H + 14.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">calls in flight (log scale)</text>"#,
        x0 + PANEL_W / 2.0,
        y0 + PANEL_H + 30.0
    );
    let mut series: Vec<(SystemId, Flavor)> =
        summaries.iter().map(|s| (s.system, s.flavor)).collect();
    series.dedup();
    for (system, flavor) in series {
        let points: Vec<&&Summary> = summaries
            .iter()
            .filter(|s| s.system == system && s.flavor == flavor)
            .collect();
        for s in &points {
            let px = x.at(s.in_flight as f64);
            let _ = writeln!(
                svg,
                r#"<line x1="{px:.1}" x2="{px:.1}" y1="{:.1}" y2="{:.1}" stroke="{}" stroke-width="1"/>"#,
                y.at(s.calls_per_sec.min),
                y.at(s.calls_per_sec.max),
                color(system)
            );
        }
        let line: Vec<(f64, f64)> = points
            .iter()
            .map(|s| (x.at(s.in_flight as f64), y.at(s.calls_per_sec.median)))
            .collect();
        polyline(svg, &line, system, flavor);
    }
}

/// Where a percentile sits on the x axis: log10(1 / (1 - q)), so 90, 99,
/// 99.9 are evenly spaced; the maximum is drawn one step past 99.99.
fn percentile_position(q: f64) -> f64 {
    if q >= 100.0 {
        5.0
    } else {
        (1.0 / (1.0 - q / 100.0)).log10()
    }
}

fn latency_panel(svg: &mut String, report: &Report, in_flight: usize, origin: (f64, f64)) {
    let (x0, y0) = origin;
    frame(
        svg,
        origin,
        &format!("Latency percentiles at {in_flight} in flight"),
    );
    let chosen: Vec<&Sample> = representative_samples(report, in_flight);
    if chosen.is_empty() {
        empty(svg, origin);
        return;
    }
    let y = LogAxis::around(
        chosen
            .iter()
            .flat_map(|s| s.spectrum.iter().map(|&(_, us)| us)),
        y0 + PANEL_H,
        y0,
    );
    let lo = percentile_position(50.0);
    let hi = percentile_position(100.0);
    let px = |q: f64| x0 + (percentile_position(q) - lo) / (hi - lo) * PANEL_W;
    y_grid(svg, origin, &y, micros);
    for (q, label) in [
        (50.0, "p50"),
        (90.0, "p90"),
        (99.0, "p99"),
        (99.9, "p99.9"),
        (99.99, "p99.99"),
        (100.0, "max"),
    ] {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{label}</text>"#,
            px(q),
            y0 + PANEL_H + 14.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile (in-process: {}; AMQP: {})</text>"#,
        x0 + PANEL_W / 2.0,
        y0 + PANEL_H + 30.0,
        LATENCY_FLAVOR_MEM.label(),
        Flavor::MultiThread.label()
    );
    for sample in chosen {
        let line: Vec<(f64, f64)> = sample
            .spectrum
            .iter()
            .map(|&(q, us)| (px(q), y.at(us)))
            .collect();
        polyline(svg, &line, sample.system, sample.flavor);
    }
}

/// Per system, the run with the median calls/s at `in_flight`.
fn representative_samples(report: &Report, in_flight: usize) -> Vec<&Sample> {
    let mut systems: Vec<SystemId> = report.samples.iter().map(|s| s.system).collect();
    systems.sort();
    systems.dedup();
    systems
        .into_iter()
        .filter_map(|system| {
            let flavor = match system.group() {
                Group::Mem => LATENCY_FLAVOR_MEM,
                Group::Amqp | Group::Nats | Group::Kafka => Flavor::MultiThread,
            };
            let mut runs: Vec<&Sample> = report
                .samples
                .iter()
                .filter(|s| s.system == system && s.flavor == flavor && s.in_flight == in_flight)
                .collect();
            runs.sort_by(|a, b| a.calls_per_sec.total_cmp(&b.calls_per_sec));
            runs.get(runs.len() / 2).copied()
        })
        .collect()
}

fn legend(svg: &mut String, report: &Report) {
    let mut systems: Vec<SystemId> = report.summaries.iter().map(|s| s.system).collect();
    systems.sort();
    systems.dedup();
    // Four entries a row, in columns, below the panels.
    let top = HEIGHT - 95.0;
    for (i, system) in systems.into_iter().enumerate() {
        let x = 80.0 + 220.0 * (i % 4) as f64;
        let y = top + 18.0 * (i / 4) as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" x2="{}" y1="{y}" y2="{y}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            x + 18.0,
            color(system),
            x + 22.0,
            y + 4.0,
            escape(system.label())
        );
    }
    let y = top + 44.0;
    let _ = writeln!(
        svg,
        r##"<line x1="80" x2="98" y1="{y}" y2="{y}" stroke="#333" stroke-width="2"/><text x="102" y="{0}">{1}</text><line x1="300" x2="318" y1="{y}" y2="{y}" stroke="#333" stroke-width="2" stroke-dasharray="6 3"/><text x="322" y="{0}">{2}</text><text x="520" y="{0}">whiskers: range over runs; lines: medians</text>"##,
        y + 4.0,
        Flavor::CurrentThread.label(),
        Flavor::MultiThread.label()
    );
}

fn empty(svg: &mut String, (x, y): (f64, f64)) {
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#888">not measured in this run</text>"##,
        x + PANEL_W / 2.0,
        y + PANEL_H / 2.0
    );
}

/// `12000.0` as `12k`.
fn si(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}

/// Microseconds with a readable unit.
fn micros(us: f64) -> String {
    match us {
        v if v >= 1e6 => format!("{} s", v / 1e6),
        v if v >= 1e3 => format!("{} ms", v / 1e3),
        v => format!("{v} µs"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_spans_whole_decades() {
        let axis = LogAxis::around([150.0, 2_500.0].into_iter(), 0.0, 300.0);
        assert_eq!((axis.lo, axis.hi), (2.0, 4.0));
        assert_eq!(axis.at(100.0), 0.0);
        assert_eq!(axis.at(10_000.0), 300.0);
        assert_eq!(axis.decades().count(), 3);
    }

    #[test]
    fn tail_percentiles_are_evenly_spaced() {
        let step = |a, b| percentile_position(b) - percentile_position(a);
        assert!((step(90.0, 99.0) - step(99.0, 99.9)).abs() < 1e-9);
    }

    #[test]
    fn labels_are_short_and_escaped() {
        assert_eq!(si(20_000.0), "20k");
        assert_eq!(micros(1_000.0), "1 ms");
        assert_eq!(escape("a<b&c"), "a&lt;b&amp;c");
    }
}
