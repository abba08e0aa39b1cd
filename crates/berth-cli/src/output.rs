//! How results are shown: aligned tables for people, `--json` for programs.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Prints rows under a header with each column as wide as its widest cell, like `docker ps`.
/// Control characters in cells (a session's own words can reach a table: a command line, a
/// label) are shown as spaces, so no cell can send the terminal escape sequences.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| {
                    cell.chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect()
                })
                .collect()
        })
        .collect();
    let rows = rows.as_slice();
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

/// "10.49MB", "812kB": four significant digits in powers of 1000, as `docker images` shows
/// sizes.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let decimals = match value {
        v if v < 10.0 => 3,
        v if v < 100.0 => 2,
        v if v < 1000.0 => 1,
        _ => 0,
    };
    let digits = format!("{value:.decimals$}");
    let digits = if digits.contains('.') {
        digits.trim_end_matches('0').trim_end_matches('.')
    } else {
        &digits
    };
    format!("{digits}{}", UNITS[unit])
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

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(super::size(0), "0B");
        assert_eq!(super::size(999), "999B");
        assert_eq!(super::size(812_000), "812kB");
        assert_eq!(super::size(10_485_760), "10.49MB");
        assert_eq!(super::size(1_500_000_000), "1.5GB");
    }
}
