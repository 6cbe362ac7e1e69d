//! Plain aligned text tables for the list verbs: a header and rows, columns
//! padded to their widest cell, two spaces apart, no borders (easy to grep
//! and to cut).

use std::io;

pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Self {
        Self {
            header,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn write(&self, out: &mut impl io::Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| h.to_uppercase()).collect();
        write_line(out, &widths, &header)?;
        for row in &self.rows {
            write_line(out, &widths, row)?;
        }
        Ok(())
    }
}

fn write_line(out: &mut impl io::Write, widths: &[usize], cells: &[String]) -> io::Result<()> {
    let mut line = String::new();
    for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if index + 1 == cells.len() {
            // No padding after the last column: no trailing blanks.
            line.push_str(cell);
        } else {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
        }
    }
    writeln!(out, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_to_the_widest_cell() {
        let mut table = Table::new(vec!["name", "ip", "enabled"]);
        table.push(vec![
            "tbilisi-001-rtr1".into(),
            "127.1.2.1".into(),
            "yes".into(),
        ]);
        table.push(vec!["poti-1".into(), "127.1.200.254".into(), "no".into()]);
        let mut out = Vec::new();
        table.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME              IP             ENABLED\n\
             tbilisi-001-rtr1  127.1.2.1      yes\n\
             poti-1            127.1.200.254  no\n"
        );
    }
}
