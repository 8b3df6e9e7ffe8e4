//! Charts drawn on the server as SVG, so the dashboard needs no script library and works with no
//! internet. Every chart is an `<svg role="img">` with a `<title>` and `<desc>` it is labelled by,
//! each bar carries its own `<title>` (a tooltip and a screen-reader name), and [`table`] gives
//! the same numbers as a plain table. Colours are the Okabe–Ito palette, readable by people with
//! colour-vision deficiencies; every text that goes in is escaped.

use std::fmt::Write as _;

use super::render::escape;

/// Colours of successive series.
pub const PALETTE: [&str; 6] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
];

const WIDTH: i64 = 640;
const HEIGHT: i64 = 280;
const LEFT: i64 = 48;
const RIGHT: i64 = 12;
const TOP: i64 = 40;
const BOTTOM: i64 = 40;

/// One named row of values, one value per category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub name: String,
    pub values: Vec<i64>,
}

/// Bars over categories (months), one stack per category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// Unique on the page; ids of the title and description derive from it.
    pub id: String,
    pub title: String,
    pub description: String,
    pub categories: Vec<String>,
    pub series: Vec<Series>,
}

impl Chart {
    fn value(&self, series: usize, category: usize) -> i64 {
        self.series
            .get(series)
            .and_then(|s| s.values.get(category))
            .copied()
            .unwrap_or(0)
            .max(0)
    }

    fn stack(&self, category: usize) -> i64 {
        (0..self.series.len())
            .map(|s| self.value(s, category))
            .fold(0i64, i64::saturating_add)
    }
}

/// The smallest "round" number (1, 2 or 5 times a power of ten) at or above `value` (at least 1).
pub fn nice_ceiling(value: i64) -> i64 {
    let mut step = 1i64;
    loop {
        for factor in [1, 2, 5] {
            let candidate = step.saturating_mul(factor);
            if candidate >= value || candidate == i64::MAX {
                return candidate.max(1);
            }
        }
        step = step.saturating_mul(10);
    }
}

fn open_svg(out: &mut String, id: &str, title: &str, description: &str, height: i64) {
    let id = escape(id);
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" \
         aria-labelledby=\"{id}-t {id}-d\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"{id}-t\">{}</title><desc id=\"{id}-d\">{}</desc>",
        escape(title),
        escape(description)
    );
}

fn legend(out: &mut String, names: &[&str]) {
    let mut x = LEFT;
    for (index, name) in names.iter().enumerate() {
        let colour = PALETTE
            .get(index % PALETTE.len())
            .copied()
            .unwrap_or("#000");
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"8\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"18\" class=\"legend\">{}</text>",
            x + 16,
            escape(name)
        );
        // Thai and English names are roughly 7 px a character at this size.
        let chars = i64::try_from(name.chars().count()).unwrap_or(20);
        x += 28 + chars * 7;
    }
}

/// Stacked vertical bars, one per category, with a y axis from 0 to a round maximum. Works for
/// zero categories (an empty frame that says `empty`), one, or many.
pub fn stacked_bars(chart: &Chart, empty: &str) -> String {
    let mut out = String::new();
    open_svg(
        &mut out,
        &chart.id,
        &chart.title,
        &chart.description,
        HEIGHT,
    );
    let names: Vec<&str> = chart.series.iter().map(|s| s.name.as_str()).collect();
    if chart.series.len() > 1 {
        legend(&mut out, &names);
    }
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let base = TOP + plot_h;
    let count = chart.categories.len();
    let max = (0..count).map(|c| chart.stack(c)).max().unwrap_or(0);
    let top = nice_ceiling(max);
    // Axis and grid: 0, the top and, when it is a whole number, the half.
    let ticks = if top % 2 == 0 {
        vec![0, top / 2, top]
    } else {
        vec![0, top]
    };
    for tick in ticks {
        let y = base - tick.saturating_mul(plot_h) / top;
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" class=\"grid\"/>\
             <text x=\"{}\" y=\"{}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6,
            y + 4,
            super::i18n::number(tick)
        );
    }
    if count == 0 || max == 0 {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" class=\"empty\" text-anchor=\"middle\">{}</text>",
            LEFT + plot_w / 2,
            TOP + plot_h / 2,
            escape(empty)
        );
    }
    if count > 0 {
        let slot = plot_w / i64::try_from(count).unwrap_or(1).max(1);
        let bar = (slot * 7 / 10).max(1);
        let label_every = count.div_ceil(12).max(1);
        let mut previous_year = "";
        for (c, category) in chart.categories.iter().enumerate() {
            let x = LEFT + slot * i64::try_from(c).unwrap_or(0) + (slot - bar) / 2;
            let mut y = base;
            for (s, series) in chart.series.iter().enumerate() {
                let value = chart.value(s, c);
                if value == 0 {
                    continue;
                }
                let h = (value.saturating_mul(plot_h) / top).max(1);
                y -= h;
                let colour = PALETTE.get(s % PALETTE.len()).copied().unwrap_or("#000");
                let _ = write!(
                    out,
                    "<rect x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{h}\" fill=\"{colour}\" \
                     data-category=\"{}\" data-series=\"{}\" data-value=\"{value}\">\
                     <title>{}: {}: {}</title></rect>",
                    escape(category),
                    escape(&series.name),
                    escape(category),
                    escape(&series.name),
                    super::i18n::number(value)
                );
            }
            if c % label_every == 0 {
                // "Nov 2026" is drawn as "Nov" with the year underneath where it changes, so
                // twelve months fit a tablet's width.
                let (first, year) = category.rsplit_once(' ').unwrap_or((category, ""));
                let shown_year = (c == 0 || year != previous_year).then_some(year);
                previous_year = year;
                let _ = write!(
                    out,
                    "<text x=\"{}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
                    x + bar / 2,
                    base + 16,
                    escape(first)
                );
                if let Some(year) = shown_year.filter(|y| !y.is_empty()) {
                    let _ = write!(
                        out,
                        "<text x=\"{}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
                        x + bar / 2,
                        base + 30,
                        escape(year)
                    );
                }
            }
        }
    }
    out.push_str("</svg>");
    out
}

/// Horizontal bars, one per labelled value (members by role, audiences).
pub fn horizontal_bars(id: &str, title: &str, items: &[(String, i64)], empty: &str) -> String {
    let mut out = String::new();
    let description = items
        .iter()
        .map(|(label, value)| format!("{label}: {}", super::i18n::number(*value)))
        .collect::<Vec<_>>()
        .join("; ");
    // One 36-unit row per item, so a short list stays short.
    let row_h = 36;
    let height = 20 + row_h * i64::try_from(items.len()).unwrap_or(0).max(1);
    open_svg(&mut out, id, title, &description, height);
    let max = items.iter().map(|(_, v)| (*v).max(0)).max().unwrap_or(0);
    let top = nice_ceiling(max);
    let label_w = 190;
    let plot_w = WIDTH - label_w - 70;
    let bar_h = 22;
    if items.is_empty() || max == 0 {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" class=\"empty\" text-anchor=\"middle\">{}</text>",
            WIDTH / 2,
            height / 2 + 5,
            escape(empty)
        );
    }
    for (index, (label, value)) in items.iter().enumerate() {
        let y = 10 + row_h * i64::try_from(index).unwrap_or(0);
        let value = (*value).max(0);
        let w = value.saturating_mul(plot_w) / top;
        let colour = PALETTE
            .get(index % PALETTE.len())
            .copied()
            .unwrap_or("#000");
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" class=\"tick\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{w}\" height=\"{bar_h}\" fill=\"{colour}\" \
             data-value=\"{value}\"><title>{}: {}</title></rect>\
             <text x=\"{}\" y=\"{}\" class=\"tick\">{}</text>",
            label_w - 8,
            y + bar_h / 2 + 4,
            escape(label),
            escape(label),
            super::i18n::number(value),
            label_w + w + 6,
            y + bar_h / 2 + 4,
            super::i18n::number(value)
        );
    }
    out.push_str("</svg>");
    out
}

/// The chart's numbers as a table: one row per category, one column per series.
pub fn table(chart: &Chart, first_column: &str) -> String {
    let mut out = format!(
        "<table class=\"fallback\"><caption>{}</caption><thead><tr><th scope=\"col\">{}</th>",
        escape(&chart.title),
        escape(first_column)
    );
    for series in &chart.series {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(&series.name));
    }
    out.push_str("</tr></thead><tbody>");
    for (c, category) in chart.categories.iter().enumerate() {
        let _ = write!(out, "<tr><th scope=\"row\">{}</th>", escape(category));
        for s in 0..chart.series.len() {
            let _ = write!(out, "<td>{}</td>", super::i18n::number(chart.value(s, c)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(categories: usize, series: &[&[i64]]) -> Chart {
        Chart {
            id: "c1".into(),
            title: "กิจกรรมรายเดือน".into(),
            description: "test".into(),
            categories: (0..categories).map(|i| format!("m{i}")).collect(),
            series: series
                .iter()
                .enumerate()
                .map(|(i, values)| Series {
                    name: format!("s{i}"),
                    values: values.to_vec(),
                })
                .collect(),
        }
    }

    fn bars(svg: &str) -> Vec<i64> {
        svg.split("data-value=\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn round_maxima() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(120), 200);
    }

    #[test]
    fn zero_points_draw_an_empty_labelled_frame() {
        let svg = stacked_bars(&chart(0, &[]), "ยังไม่มีข้อมูล");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("aria-labelledby=\"c1-t c1-d\""));
        assert!(svg.contains("<title id=\"c1-t\">กิจกรรมรายเดือน</title>"));
        assert!(svg.contains("ยังไม่มีข้อมูล"));
        assert!(bars(&svg).is_empty());
        // All-zero months are empty too, but keep their labels.
        let svg = stacked_bars(&chart(3, &[&[0, 0, 0]]), "none");
        assert!(svg.contains(">none<") && svg.contains(">m2<"));
        assert!(bars(&svg).is_empty());
    }

    #[test]
    fn one_point_fills_the_plot() {
        let svg = stacked_bars(&chart(1, &[&[4]]), "none");
        assert_eq!(bars(&svg), vec![4]);
        assert!(!svg.contains(">none<"));
        // 4 rounds up to 5: the bar is 4/5 of the plot's height.
        let plot_h = HEIGHT - TOP - BOTTOM;
        assert!(
            svg.contains(&format!("height=\"{}\"", 4 * plot_h / 5)),
            "{svg}"
        );
        assert!(svg.contains("<title>m0: s0: 4</title>"));
    }

    #[test]
    fn many_points_stack_series_and_thin_out_labels() {
        let a: Vec<i64> = (0..24).collect();
        let b: Vec<i64> = (0..24).map(|i| i % 3).collect();
        let svg = stacked_bars(&chart(24, &[&a, &b]), "none");
        let drawn = bars(&svg);
        let nonzero = a.iter().chain(&b).filter(|v| **v > 0).count();
        assert_eq!(drawn.len(), nonzero);
        assert_eq!(drawn.iter().sum::<i64>(), a.iter().chain(&b).sum::<i64>());
        // Labels every other month when there are more than 12.
        assert!(svg.contains(">m0<") && svg.contains(">m2<") && !svg.contains(">m1<"));
        // A month's year is written under it only where the year changes.
        let mut months = chart(3, &[&[1, 1, 1]]);
        months.categories = vec!["Dec 2025".into(), "Jan 2026".into(), "Feb 2026".into()];
        let svg = stacked_bars(&months, "none");
        assert_eq!(svg.matches(">2025<").count(), 1);
        assert_eq!(svg.matches(">2026<").count(), 1);
        assert!(svg.contains(">Feb<"));
        // Legend names both series.
        let legend = stacked_bars(&chart(24, &[&a, &b]), "none");
        assert!(legend.contains(">s0<") && legend.contains(">s1<"));
        let table = table(&chart(24, &[&a, &b]), "เดือน");
        assert_eq!(table.matches("<tr>").count(), 25);
        assert!(table.contains("<th scope=\"row\">m23</th><td>23</td><td>2</td>"));
    }

    #[test]
    fn text_in_charts_is_escaped() {
        let mut c = chart(1, &[&[1]]);
        c.categories = vec!["<script>alert(1)</script>".into()];
        c.title = "a & b".into();
        let svg = stacked_bars(&c, "none");
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains("a &amp; b"));
        let h = horizontal_bars("h", "t", &[("<b>".into(), 2), ("x".into(), 0)], "none");
        assert!(!h.contains("<b>") && h.contains("&lt;b&gt;"));
        assert_eq!(bars(&h), vec![2, 0]);
        let empty = horizontal_bars("h", "t", &[], "ไม่มี");
        assert!(empty.contains("ไม่มี"));
    }
}
