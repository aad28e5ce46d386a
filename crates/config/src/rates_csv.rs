//! Charging-plan rates from CSV, for operators who keep their rate deck in a spreadsheet.
//!
//! Header required: `prefix,description,price_per_minute,connection_fee,increments,blocked`
//! (the last three columns optional). Every bad line is reported with its line number;
//! nothing is skipped silently.

use std::path::Path;

use tollgate_core::rating::Rate;

use crate::raw::{RawAmount, RawRate};
use crate::validate::Problem;

const COLUMNS: [&str; 6] = [
    "prefix",
    "description",
    "price_per_minute",
    "connection_fee",
    "increments",
    "blocked",
];

/// Reads and validates a rates file.
pub fn read_rates(path: &Path) -> Result<Vec<Rate>, Vec<Problem>> {
    let in_file = |line: usize, message: String| Problem {
        key: Vec::new(),
        message,
        file: Some((path.to_path_buf(), line)),
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![in_file(0, format!("cannot read rates file: {e}"))])?;
    parse_rates(&text).map_err(|problems| {
        problems
            .into_iter()
            .map(|(line, message)| in_file(line, message))
            .collect()
    })
}

/// Parses rates CSV text; errors are (line, message).
pub fn parse_rates(text: &str) -> Result<Vec<Rate>, Vec<(usize, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| vec![(1, format!("bad header: {e}"))])?
        .clone();
    let mut index = [None; 6];
    for (i, name) in headers.iter().enumerate() {
        match COLUMNS.iter().position(|c| *c == name) {
            Some(col) => index[col] = Some(i),
            None => {
                return Err(vec![(
                    1,
                    format!("unknown column {name:?} (expected {})", COLUMNS.join(", ")),
                )])
            }
        }
    }
    if index[0].is_none() || index[2].is_none() {
        return Err(vec![(
            1,
            "the header needs at least prefix and price_per_minute columns".into(),
        )]);
    }
    let mut rates = Vec::new();
    let mut problems = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                problems.push((line, format!("unreadable line: {e}")));
                continue;
            }
        };
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        let field = |col: usize| index[col].and_then(|i| record.get(i)).unwrap_or("");
        let blocked = match field(5).to_ascii_lowercase().as_str() {
            "" | "false" | "no" | "0" => false,
            "true" | "yes" | "1" => true,
            other => {
                problems.push((
                    line,
                    format!("blocked must be true or false, not {other:?}"),
                ));
                continue;
            }
        };
        let amount = |text: &str| (!text.is_empty()).then(|| RawAmount::Text(text.to_string()));
        let raw = RawRate {
            prefix: field(0).to_string(),
            description: field(1).to_string(),
            price_per_minute: amount(field(2)),
            connection_fee: amount(field(3)),
            increments: (!field(4).is_empty()).then(|| field(4).to_string()),
            blocked,
        };
        let mut local = Vec::new();
        match crate::validate::rate_from_raw_public(&raw, &mut local) {
            Some(rate) if local.is_empty() => rates.push(rate),
            _ => {
                for p in local {
                    problems.push((line, format!("{}: {}", p.key_text(), p.message)));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(rates)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rates_and_reports_bad_lines() {
        let text = "prefix,description,price_per_minute,connection_fee,increments,blocked\n\
                    +33,France,0.01,,60/60,\n\
                    +336,France mobile,0.05,0.01,30/6,false\n\
                    +882,Intl networks,,,,true\n";
        let rates = parse_rates(text).unwrap();
        assert_eq!(rates.len(), 3);
        assert_eq!(rates[1].increments.to_string(), "30/6");
        assert!(rates[2].blocked);

        let bad = "prefix,price_per_minute\n+33,0.01\nabc,0.01\n+44,1.5.0\n+49,0.02\n";
        let problems = parse_rates(bad).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.0).collect();
        assert_eq!(lines, vec![3, 4], "{problems:?}");
        assert!(parse_rates("prefix,cost\n").is_err());
    }
}
