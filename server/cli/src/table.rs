//! Plain-text tables for the command line. Thai vowel and tone marks sit above or below their
//! consonant and take no column of their own, so widths are counted in terminal columns, not
//! characters, and Thai names line up with Latin ones.

/// A table: a header row and data rows, printed with two spaces between columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds one row (missing cells print empty, extra cells are kept).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// True when no data row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each line ending in a newline.
    pub fn render(&self) -> String {
        let columns = std::iter::once(&self.header)
            .chain(&self.rows)
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(display_width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.push_str(&" ".repeat(width.saturating_sub(display_width(cell))));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Columns a string takes in a terminal: Thai marks above or below a consonant take none, and
/// a line break inside a cell is shown as a space.
pub fn display_width(text: &str) -> usize {
    text.chars()
        .filter(|c| !matches!(*c as u32, 0x0E31 | 0x0E34..=0x0E3A | 0x0E47..=0x0E4E))
        .count()
}

/// A cell's text on one line, cut to `max` columns with an ellipsis.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if display_width(&flat) <= max {
        return flat;
    }
    let mut out = String::new();
    for c in flat.chars() {
        if display_width(&out) + 1 >= max && display_width(&c.to_string()) > 0 {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thai_marks_take_no_column() {
        assert_eq!(display_width("มหาสารคาม"), 9);
        assert_eq!(display_width("ประชุม"), 5);
        let mut table = Table::new(["A", "B"]);
        table.row(["ประชุม", "x"]);
        table.row(["meeting", "y"]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "ประชุม    x");
        assert_eq!(lines[2], "meeting  y");
    }

    #[test]
    fn long_cells_are_cut_on_a_base_character() {
        let cut = one_line("อบรมสร้างความตระหนัก\nแก่เยาวชน", 8);
        assert!(cut.ends_with('…'));
        assert!(display_width(&cut) <= 8);
        assert_eq!(one_line("short", 8), "short");
    }
}
