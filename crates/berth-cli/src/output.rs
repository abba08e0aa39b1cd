//! How results are shown: aligned tables for people, `--json` for programs.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Prints rows under a header with each column as wide as its widest cell, like `docker ps`.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
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
        println!("{}", padded.join("   ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// "in 29m", "3h ago": what a person wants from a timestamp in a table.
pub fn relative(at: DateTime<Utc>) -> String {
    let delta = at - Utc::now();
    let secs = delta.num_seconds();
    let magnitude = secs.unsigned_abs();
    let amount = match magnitude {
        0..60 => format!("{magnitude}s"),
        60..3600 => format!("{}m", magnitude / 60),
        3600..86400 => format!("{}h", magnitude / 3600),
        _ => format!("{}d", magnitude / 86400),
    };
    if secs >= 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}
