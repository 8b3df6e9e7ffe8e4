//! The figures of one run and how they are written to `BENCHMARKS.md`: one table of every
//! measure (Phakhi, the baseline from the same run, the ratio, the goal, met or missed), then
//! each workload's notes (what the baseline was exactly, what holds a missed figure back).

use std::fmt::Write as _;

/// Whether a figure meets its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// No goal: the figure is reported.
    Report,
    /// The measurement could not be made in this run (the notes say why).
    NotMeasured,
}

impl Verdict {
    /// Met when `ok`, missed otherwise.
    pub fn from(ok: bool) -> Verdict {
        if ok { Verdict::Met } else { Verdict::Missed }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::Report => "report",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// One measure of one workload.
#[derive(Debug, Clone)]
pub struct Row {
    pub measure: String,
    pub phakhi: String,
    pub baseline: String,
    pub ratio: String,
    pub goal: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn new(measure: impl Into<String>, phakhi: impl Into<String>) -> Row {
        Row {
            measure: measure.into(),
            phakhi: phakhi.into(),
            baseline: "—".into(),
            ratio: "—".into(),
            goal: "—".into(),
            verdict: Verdict::Report,
        }
    }

    pub fn baseline(mut self, baseline: impl Into<String>, ratio: impl Into<String>) -> Row {
        self.baseline = baseline.into();
        self.ratio = ratio.into();
        self
    }

    pub fn goal(mut self, goal: impl Into<String>, met: bool) -> Row {
        self.goal = goal.into();
        self.verdict = Verdict::from(met);
        self
    }

    pub fn verdict(mut self, verdict: Verdict) -> Row {
        self.verdict = verdict;
        self
    }
}

/// One workload: its rows and notes.
#[derive(Debug, Clone)]
pub struct Section {
    pub workload: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(workload: impl Into<String>) -> Section {
        Section {
            workload: workload.into(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, row: Row) -> &mut Self {
        self.rows.push(row);
        self
    }

    pub fn note(&mut self, note: impl Into<String>) -> &mut Self {
        self.notes.push(note.into());
        self
    }

    /// A workload that could not run: one row saying so.
    pub fn failed(workload: impl Into<String>, why: impl Into<String>) -> Section {
        let mut s = Section::new(workload);
        let why = why.into();
        s.row(Row::new("(not run)", "—").verdict(Verdict::NotMeasured));
        s.note(format!("Could not be measured in this run: {why}"));
        s
    }
}

/// A whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sections: Vec<Section>,
    /// Lines about the machine, the date and the command.
    pub header: Vec<String>,
    /// Free text written after the tables.
    pub footer: Vec<String>,
}

impl Report {
    /// The markdown of `BENCHMARKS.md`.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("# Benchmarks\n\n");
        out.push_str(
            "Written by the benchmark runner (see README, \"Benchmarks\"); every figure below comes \
             from the one run described here. Baselines ran in the same run on the same machine, \
             so ratios are more telling than absolute times (the machine is shared and its \
             timings are noisy). Times are medians where a measure was repeated.\n\n",
        );
        for line in &self.header {
            let _ = writeln!(out, "- {line}");
        }
        out.push_str("\n## Summary\n\n");
        out.push_str(
            "| workload | measure | Phakhi | baseline (same run) | ratio | goal | verdict |\n",
        );
        out.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
        for section in &self.sections {
            for (i, row) in section.rows.iter().enumerate() {
                let workload = if i == 0 {
                    section.workload.as_str()
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    cell(workload),
                    cell(&row.measure),
                    cell(&row.phakhi),
                    cell(&row.baseline),
                    cell(&row.ratio),
                    cell(&row.goal),
                    row.verdict.label()
                );
            }
        }
        out.push_str("\n## Notes per workload\n");
        for section in &self.sections {
            if section.notes.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n### {}\n", section.workload);
            for note in &section.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        if !self.footer.is_empty() {
            out.push('\n');
            for line in &self.footer {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// The table as plain text for the terminal.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for section in &self.sections {
            let _ = writeln!(out, "{}", section.workload);
            for row in &section.rows {
                let _ = writeln!(
                    out,
                    "  {:<44} {:>16}  vs {:<28} {:>8}  goal {:<22} {}",
                    row.measure,
                    row.phakhi,
                    row.baseline,
                    row.ratio,
                    row.goal,
                    row.verdict.label()
                );
            }
        }
        out
    }
}

/// A table cell: pipes escaped, newlines flattened.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_lists_every_row_with_its_verdict_and_escapes_pipes() {
        let mut s = Section::new("first sync");
        s.row(
            Row::new("bytes", "1.0 MB")
                .baseline("2.0 MB", "0.50×")
                .goal("≤ 1.1× save()", true),
        );
        s.row(Row::new("a|b", "3").goal("≤ 2", false));
        s.note("baseline: plain automerge");
        let report = Report {
            sections: vec![s, Section::failed("samod", "did not compile")],
            header: vec!["machine: test".into()],
            footer: Vec::new(),
        };
        let md = report.markdown();
        assert!(
            md.contains("| first sync | bytes | 1.0 MB | 2.0 MB | 0.50× | ≤ 1.1× save() | met |")
        );
        assert!(md.contains("|  | a\\|b | 3 | — | — | ≤ 2 | **missed** |"));
        assert!(md.contains("| samod | (not run) | — | — | — | — | not measured |"));
        assert!(md.contains("- baseline: plain automerge"));
        assert!(md.contains("did not compile"));
        assert!(md.contains("- machine: test"));
    }
}
