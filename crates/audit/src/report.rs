//! Audit reports: the findings as a terminal table, as JSON and as a self-contained HTML page.
//!
//! This module owns presentation only: the findings are already sorted and free of secrets
//! (see [`crate::findings`]). The HTML page has no external resource (inline CSS, an inline
//! SVG chart, no script) so it can be mailed or archived and opened anywhere; every value in
//! it is escaped, since subjects and evidence come from operators' files.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::findings::{count_by_severity, Finding, Severity};
use crate::inventory::ImportProblem;

/// How many findings of each severity, and how many import problems.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub total: usize,
    pub critical: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub info: usize,
    pub import_problems: usize,
}

impl Summary {
    fn count(&self, severity: Severity) -> usize {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Info => self.info,
        }
    }
}

/// Everything one audit run says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub summary: Summary,
    pub findings: Vec<Finding>,
    /// "file:line: message" for everything the importers could not read.
    pub import_problems: Vec<String>,
}

impl Report {
    pub fn new(findings: Vec<Finding>, problems: &[ImportProblem]) -> Self {
        let mut summary = Summary {
            total: findings.len(),
            import_problems: problems.len(),
            ..Summary::default()
        };
        for (severity, count) in count_by_severity(&findings) {
            match severity {
                Severity::Critical => summary.critical = count,
                Severity::High => summary.high = count,
                Severity::Medium => summary.medium = count,
                Severity::Low => summary.low = count,
                Severity::Info => summary.info = count,
            }
        }
        Report {
            summary,
            findings,
            import_problems: problems.iter().map(ToString::to_string).collect(),
        }
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// One line per finding (severity, code, subject), then its evidence and fix indented;
    /// `colour` adds ANSI colours to the severity (the caller knows whether it is a terminal).
    pub fn to_text(&self, colour: bool) -> String {
        let mut out = String::new();
        let code_width = self
            .findings
            .iter()
            .map(|f| f.code.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(out, "{:<8}  {:<code_width$}  SUBJECT", "SEVERITY", "CODE");
        for finding in &self.findings {
            // Padding first, then colour: escape codes have no width on screen.
            let severity = format!("{:<8}", finding.severity.as_str());
            let severity = if colour {
                format!("\x1b[{}m{severity}\x1b[0m", ansi(finding.severity))
            } else {
                severity
            };
            let _ = writeln!(
                out,
                "{severity}  {:<code_width$}  {}",
                finding.code, finding.subject
            );
            let _ = writeln!(out, "{:10}{}", "", finding.evidence);
            let _ = writeln!(out, "{:10}fix: {}", "", finding.fix);
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "{} findings: {} critical, {} high, {} medium, {} low, {} info; {} import problems",
            s.total, s.critical, s.high, s.medium, s.low, s.info, s.import_problems
        );
        out
    }

    /// A complete HTML document: summary, a bar chart of findings per severity, the
    /// findings table and the import problems.
    pub fn to_html(&self) -> String {
        let mut out = String::new();
        out.push_str(concat!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
            "<title>tollgate audit</title>\n<style>\n",
            "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\n",
            "table{border-collapse:collapse;width:100%}\n",
            "th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}\n",
            "th{background:#f0f0f0}\n",
            ".sev{font-weight:bold;white-space:nowrap}\n",
            ".critical{color:#a00}.high{color:#d33}.medium{color:#b70}.low{color:#07a}.info{color:#666}\n",
            "code{font-size:.9em}\n",
            "</style>\n</head>\n<body>\n<h1>tollgate audit</h1>\n"
        ));
        let s = &self.summary;
        let _ = writeln!(
            out,
            "<p>{} findings: {} critical, {} high, {} medium, {} low, {} info; {} import problems.</p>",
            s.total, s.critical, s.high, s.medium, s.low, s.info, s.import_problems
        );
        out.push_str(&self.chart());
        out.push_str("<h2>Findings</h2>\n<table>\n<tr><th>severity</th><th>code</th><th>subject</th><th>evidence</th><th>fix</th></tr>\n");
        for f in &self.findings {
            let _ = writeln!(
                out,
                "<tr><td class=\"sev {sev}\">{sev}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&f.code),
                escape(&f.subject),
                escape(&f.evidence),
                escape(&f.fix),
                sev = f.severity.as_str(),
            );
        }
        out.push_str("</table>\n");
        if !self.import_problems.is_empty() {
            out.push_str("<h2>Import problems</h2>\n<ul>\n");
            for problem in &self.import_problems {
                let _ = writeln!(out, "<li>{}</li>", escape(problem));
            }
            out.push_str("</ul>\n");
        }
        out.push_str("</body>\n</html>\n");
        out
    }

    /// An SVG bar per severity, most severe on the left, scaled to the largest count.
    fn chart(&self) -> String {
        const BAR: usize = 60;
        const GAP: usize = 20;
        const HEIGHT: usize = 150;
        let order = [
            (Severity::Critical, "#a00"),
            (Severity::High, "#d33"),
            (Severity::Medium, "#e90"),
            (Severity::Low, "#07a"),
            (Severity::Info, "#999"),
        ];
        let max = order
            .iter()
            .map(|(s, _)| self.summary.count(*s))
            .max()
            .unwrap_or(0)
            .max(1);
        let width = order.len() * (BAR + GAP) + GAP;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" role=\"img\" aria-label=\"findings per severity\">\n",
            HEIGHT + 50
        );
        for (index, (severity, colour)) in order.iter().enumerate() {
            let count = self.summary.count(*severity);
            let bar = count * HEIGHT / max;
            let x = GAP + index * (BAR + GAP);
            let top = 20 + HEIGHT - bar;
            let _ = writeln!(
                svg,
                "<rect x=\"{x}\" y=\"{top}\" width=\"{BAR}\" height=\"{bar}\" fill=\"{colour}\"/>\
                 <text x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\" font-size=\"12\">{count}</text>\
                 <text x=\"{cx}\" y=\"{ly}\" text-anchor=\"middle\" font-size=\"12\">{name}</text>",
                cx = x + BAR / 2,
                ty = top.saturating_sub(4),
                ly = 20 + HEIGHT + 18,
                name = severity.as_str(),
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn ansi(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "1;31",
        Severity::High => "31",
        Severity::Medium => "33",
        Severity::Low => "36",
        Severity::Info => "2",
    }
}

/// Text made safe for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::inventory::Location;

    fn finding(severity: Severity, subject: &str) -> Finding {
        Finding {
            severity,
            code: "no_ip_restriction".into(),
            subject: subject.into(),
            evidence: "evidence & more".into(),
            fix: "fix it".into(),
            replace: None,
        }
    }

    fn sample() -> Report {
        let problems = [ImportProblem::new(
            Location::new("pjsip.conf", 3),
            "bad <line>",
        )];
        Report::new(
            vec![
                finding(Severity::Critical, "extension <script>alert(1)</script>"),
                finding(Severity::High, "extension 1001"),
                finding(Severity::High, "extension 1002"),
                finding(Severity::Info, "extension 1003"),
            ],
            &problems,
        )
    }

    #[test]
    fn html_escapes_every_value() {
        let html = sample().to_html();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("extension &lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("evidence &amp; more"));
        assert!(html.contains("pjsip.conf:3: bad &lt;line&gt;"));
        assert!(html.contains("<svg"));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(!html.contains("http-equiv") && !html.contains("src="));
    }

    #[test]
    fn json_round_trips_the_counts() {
        let report = sample();
        assert_eq!(report.summary.critical, 1);
        assert_eq!(report.summary.high, 2);
        assert_eq!(report.summary.info, 1);
        assert_eq!(report.summary.total, 4);
        assert_eq!(report.summary.import_problems, 1);
        let back: Report = serde_json::from_str(&report.to_json().unwrap()).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn text_has_colour_only_when_asked() {
        let report = sample();
        let plain = report.to_text(false);
        assert!(!plain.contains('\x1b'));
        assert!(plain.contains(
            "4 findings: 1 critical, 2 high, 0 medium, 0 low, 1 info; 1 import problems"
        ));
        assert!(report.to_text(true).contains("\x1b[1;31mcritical"));
    }
}
