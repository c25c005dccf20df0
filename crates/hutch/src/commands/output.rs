//! Human output: tables, key/value blocks, relative times and colours — the colours only when
//! standard output is a terminal and `NO_COLOR` is unset, so pipes and files get plain text.

use std::io::{IsTerminal, Write};

use chrono::{DateTime, Utc};
use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table};
use serde_json::Value;

/// Whether to colour what goes to standard output.
pub fn color_stdout() -> bool {
    std::io::stdout().is_terminal() && colors_allowed()
}

fn colors_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Prints a line to standard output. Unlike `println!` it does not panic when the reader has
/// gone away (`hutch ls -q | head -1`); the verb just carries on.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// Prints JSON, pretty, to standard output.
pub fn print_json(v: &Value) {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// The colour of a status word (in a table).
fn status_color(status: &str) -> Option<Color> {
    match status {
        "running" | "active" => Some(Color::Green),
        "paused" | "creating" | "building" | "pending" => Some(Color::Yellow),
        "stopped" | "archived" => Some(Color::DarkGrey),
        "failed" | "error" | "deleted" => Some(Color::Red),
        _ => None,
    }
}

/// A status word, coloured on a terminal (outside a table).
pub fn status_text(status: &str, color: bool) -> String {
    use crossterm::style::{Color as C, Stylize};
    let c = match status_color(status) {
        Some(Color::Green) => C::Green,
        Some(Color::Yellow) => C::Yellow,
        Some(Color::DarkGrey) => C::DarkGrey,
        Some(Color::Red) => C::Red,
        _ => return status.to_string(),
    };
    if color {
        format!("{}", status.with(c))
    } else {
        status.to_string()
    }
}

/// A column table without borders (like `docker ps`), header in bold on a terminal. A cell
/// whose column is named `STATUS` is coloured by its value.
pub fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let color = color_stdout();
    let mut table = Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    if color {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    let status_col = headers.iter().position(|h| *h == "STATUS");
    table.set_header(headers.iter().map(|h| {
        let c = Cell::new(h);
        if color {
            c.add_attribute(Attribute::Bold)
        } else {
            c
        }
    }));
    for row in rows {
        table.add_row(row.into_iter().enumerate().map(|(i, v)| {
            let c = Cell::new(&v);
            match (color, Some(i) == status_col, status_color(&v)) {
                (true, true, Some(col)) => c.fg(col),
                _ => c,
            }
        }));
    }
    if let Some(col) = table.column_mut(0) {
        col.set_padding((0, 1));
    }
    let mut out = std::io::stdout().lock();
    for line in table.to_string().lines() {
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// `key: value` lines with the keys aligned, keys dimmed on a terminal.
pub fn print_fields(fields: &[(&str, String)]) {
    use crossterm::style::Stylize;
    let color = color_stdout();
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = std::io::stdout().lock();
    for (k, v) in fields {
        let key = format!("{:<width$}", format!("{k}:"));
        if color {
            let _ = writeln!(out, "{} {v}", key.bold());
        } else {
            let _ = writeln!(out, "{key} {v}");
        }
    }
}

/// `2 minutes ago` / `in 5 minutes` for an RFC 3339 time, relative to now.
pub fn relative_time(rfc3339: Option<&str>, never: &str) -> String {
    let Some(s) = rfc3339 else {
        return never.to_string();
    };
    let Some(t) = DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
    else {
        return s.to_string();
    };
    relative_to(t, Utc::now())
}

fn relative_to(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let span = human_span(secs.unsigned_abs());
    if secs.abs() < 2 {
        "now".to_string()
    } else if secs < 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// `45 seconds`, `3 minutes`, `2 hours`, `4 days`.
fn human_span(secs: u64) -> String {
    let (n, unit) = match secs {
        0..=89 => (secs, "second"),
        90..=3569 => ((secs + 30) / 60, "minute"),
        3570..=129_599 => ((secs + 1800) / 3600, "hour"),
        _ => ((secs + 43_200) / 86_400, "day"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// A time with its relative form: `2025-01-28T10:11:12Z (3 minutes ago)`.
pub fn time_field(rfc3339: Option<&str>, never: &str) -> String {
    match rfc3339 {
        Some(s) => format!("{s} ({})", relative_time(Some(s), never)),
        None => never.to_string(),
    }
}

/// `1.5 KiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let now = Utc::now();
        let at = |s: i64| relative_to(now + chrono::Duration::seconds(s), now);
        assert_eq!(at(0), "now");
        assert_eq!(at(-30), "30 seconds ago");
        assert_eq!(at(300), "in 5 minutes");
        assert_eq!(at(-7200), "2 hours ago");
        assert_eq!(at(3599), "in 1 hour");
        assert_eq!(at(3000), "in 50 minutes");
        assert_eq!(at(86_400 * 3), "in 3 days");
        assert_eq!(relative_time(None, "never"), "never");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
