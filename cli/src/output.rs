//! Printing answers: aligned tables with a header on a terminal, one
//! tab-separated line per row when piped, JSON with `--json`.

use std::io::{IsTerminal, Write};

use serde::Serialize;

/// How to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Aligned columns under a header.
    Table,
    /// Tab-separated, no header: for `cut`, `awk` and friends.
    Plain,
    /// JSON.
    Json,
}

impl Format {
    /// JSON when asked for, else a table on a terminal and plain text when piped.
    pub(crate) fn choose(json: bool) -> Self {
        if json {
            Format::Json
        } else if std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Plain
        }
    }
}

/// Prints `value` as pretty JSON.
pub(crate) fn json(value: &impl Serialize) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("\"{e}\""));
    println!("{text}");
}

/// Prints rows under `headers` in `format` (not JSON).
pub(crate) fn table(format: Format, headers: &[&str], rows: &[Vec<String>]) {
    let mut out = std::io::stdout().lock();
    if format != Format::Table {
        for row in rows {
            let _ = writeln!(out, "{}", row.join("\t"));
        }
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(headers.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// Seconds, readably: `850µs`, `12.3ms`, `1.20s`.
pub(crate) fn seconds(value: f64) -> String {
    if value < 0.001 {
        format!("{:.0}µs", value * 1e6)
    } else if value < 1.0 {
        format!("{:.1}ms", value * 1e3)
    } else {
        format!("{value:.2}s")
    }
}

/// An uptime, readably: `42s`, `3m10s`, `5h02m`.
pub(crate) fn uptime(secs: f64) -> String {
    let secs = secs as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}
