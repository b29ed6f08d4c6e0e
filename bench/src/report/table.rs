//! The text tables printed at the end of a run.

use std::fmt::Write as _;

use super::Report;
use crate::stats::Spread;

/// Prints the figures, the ratios, the targets and the memory check.
pub(crate) fn print(report: &Report) {
    print!("{}", render(report));
}

fn render(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let method = &report.method;
    let _ = writeln!(
        out,
        "\nmachine: {} ({} cores), kernel {}\nmethod: {} interleaved run(s) x {:.2} s measured after {:.2} s warm-up{}",
        m.cpu,
        m.cores,
        m.kernel,
        method.runs,
        method.measure_secs,
        method.warmup_secs,
        if method.quick {
            " (quick mode: figures are indicative only)"
        } else {
            ""
        }
    );
    for notice in &report.notices {
        let _ = writeln!(out, "notice: {notice}");
    }

    let _ = writeln!(
        out,
        "\n{:<28} {:<16} {:>6}  {:>24}  {:>20}  {:>20}",
        "system", "runtime", "flight", "calls/s median [range]", "p50 us [range]", "p99 us [range]"
    );
    for s in &report.summaries {
        let _ = writeln!(
            out,
            "{:<28} {:<16} {:>6}  {:>24}  {:>20}  {:>20}",
            s.system.label(),
            s.flavor.label(),
            s.in_flight,
            spread(s.calls_per_sec, 0),
            spread(s.p50_us, 1),
            spread(s.p99_us, 1),
        );
    }

    render_fabrics(report, &mut out);

    let _ = writeln!(
        out,
        "\nratios within a run (ours / baseline), median [range over runs]\n{:<54} {:<16} {:>6}  {:>20}  {:>20}",
        "ours / baseline", "runtime", "flight", "calls/s (higher=ours)", "p50 (lower=ours)"
    );
    for r in &report.ratios {
        let _ = writeln!(
            out,
            "{:<54} {:<16} {:>6}  {:>20}  {:>20}",
            format!("{} / {}", r.candidate, r.baseline),
            r.flavor.label(),
            r.in_flight,
            ratio(r.calls_per_sec),
            ratio(r.p50),
        );
    }

    if !report.targets.is_empty() {
        let _ = writeln!(
            out,
            "\ntargets (median of within-run ratios; worst run in brackets)"
        );
        for t in &report.targets {
            let _ = writeln!(
                out,
                "  [{}] {}: {:.2}x (worst {:.2}x)",
                if t.met { "met   " } else { "MISSED" },
                t.text,
                t.measured,
                t.worst
            );
        }
    }

    if let Some(memory) = &report.memory {
        let _ = writeln!(
            out,
            "\nmemory: RSS {} KiB after {} calls, {} KiB after {} calls: {:+.1}% ({} the {:.0}% allowed)",
            memory.rss_first_kib,
            memory.first_calls,
            memory.rss_total_kib,
            memory.total_calls,
            memory.growth * 100.0,
            if memory.within_limit {
                "within"
            } else {
                "OVER"
            },
            crate::memory::ALLOWED_GROWTH * 100.0,
        );
    }
    out
}

/// The calls in flight the table of every fabric shows.
const FABRIC_LEVELS: [usize; 3] = [1, 16, 256];

/// One table of every fabric: ours in its default settings on each, p50,
/// p99 and calls/s (medians) at 1, 16 and 256 calls in flight, so a fabric
/// can be chosen by numbers.
fn render_fabrics(report: &Report, out: &mut String) {
    let rows: Vec<_> = report
        .summaries
        .iter()
        .filter_map(|s| Some((s.system.fabric()?, s)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "\nevery fabric (ours, default settings; medians)\n{:<18} {:<16}",
        "fabric", "runtime"
    );
    for level in FABRIC_LEVELS {
        let _ = write!(
            out,
            "  {:>26}",
            format!("{level} in flight: p50/p99 us, calls/s")
        );
    }
    let _ = writeln!(out);
    let mut keys: Vec<_> = rows
        .iter()
        .map(|(fabric, s)| (s.system, *fabric, s.flavor))
        .collect();
    keys.dedup();
    for (system, fabric, flavor) in keys {
        let _ = write!(out, "{fabric:<18} {:<16}", flavor.label());
        for level in FABRIC_LEVELS {
            let cell = rows
                .iter()
                .find(|(_, s)| s.system == system && s.flavor == flavor && s.in_flight == level)
                .map_or_else(
                    || "-".to_owned(),
                    |(_, s)| {
                        format!(
                            "{:.0}/{:.0}, {:.0}",
                            s.p50_us.median, s.p99_us.median, s.calls_per_sec.median
                        )
                    },
                );
            let _ = write!(out, "  {cell:>26}");
        }
        let _ = writeln!(out);
    }
}

fn spread(s: Spread, decimals: usize) -> String {
    format!(
        "{:.*} [{:.*}-{:.*}]",
        decimals, s.median, decimals, s.min, decimals, s.max
    )
}

fn ratio(s: Spread) -> String {
    format!("{:.2}x [{:.2}-{:.2}]", s.median, s.min, s.max)
}
