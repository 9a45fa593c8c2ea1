//! Drawing `smartgrid top`'s [`Table`] with ratatui: the same code draws the live
//! terminal and the plain-text frame of `--once` (a ratatui test backend's buffer).

use ratatui::Frame;
use ratatui::backend::TestBackend;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table as TableWidget};

use super::model::{NodeRow, Table};

/// The column headings, in order (docs/watching.md explains each).
pub(crate) const COLUMNS: [&str; 9] = [
    "NODE", "KIND", "RATE/s", "TOTAL", "LAG", "OPEN", "BACKLOG", "CONN", "PROBLEMS",
];

/// Column widths: names and kinds as wide as the longest, numbers fixed, and what is
/// left for the problems (the widest text).
fn widths(table: &Table) -> [Constraint; 9] {
    let widest = |text: fn(&NodeRow) -> &str, heading: &str| {
        let longest = table.rows.iter().map(|r| text(r).chars().count()).max();
        let longest = longest.unwrap_or(0).max(heading.len());
        Constraint::Length(u16::try_from(longest).unwrap_or(u16::MAX))
    };
    [
        widest(|r| &r.name, COLUMNS[0]),
        widest(|r| &r.kind, COLUMNS[1]),
        Constraint::Length(10),
        Constraint::Length(12),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(14),
        Constraint::Length(12),
        Constraint::Fill(1),
    ]
}

/// What the header line says above the table.
pub(crate) struct Header<'a> {
    pub url: &'a str,
    pub interval_s: f64,
    /// Why the last scrape failed, if it did (the table is then the last good one).
    pub trouble: Option<&'a str>,
    /// Whether keys work (a live terminal).
    pub live: bool,
}

/// Draw the header and `table` over the whole frame.
pub(crate) fn draw(frame: &mut Frame<'_>, header: &Header<'_>, table: Option<&Table>) {
    let [top, body] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(frame.area());
    let mut text = format!(
        "smartgrid top  {}  every {}s",
        header.url, header.interval_s
    );
    if let Some(rate) = table.and_then(|t| t.readings_per_second) {
        text.push_str(&format!("  readings {rate:.1}/s"));
    }
    if header.live {
        text.push_str("  (q: quit)");
    }
    if let Some(trouble) = header.trouble {
        text.push_str(&format!("  ! {trouble}"));
    }
    frame.render_widget(Paragraph::new(Line::from(text)), top);
    let Some(table) = table else {
        frame.render_widget(Paragraph::new("waiting for a second scrape…"), body);
        return;
    };
    let heading =
        Row::new(COLUMNS.map(Cell::from)).style(Style::default().add_modifier(Modifier::BOLD));
    let rows = table.rows.iter().map(|r| Row::new(cells(r)));
    let widget = TableWidget::new(rows, widths(table))
        .header(heading)
        .column_spacing(1)
        .block(Block::bordered());
    frame.render_widget(widget, body);
}

/// A row's cells, as text.
pub(crate) fn cells(row: &NodeRow) -> [String; 9] {
    let or_blank = |v: Option<String>| v.unwrap_or_default();
    [
        row.name.clone(),
        row.kind.clone(),
        or_blank(row.rate.map(|r| format!("{r:.1}"))),
        or_blank(row.total.map(|t| t.to_string())),
        or_blank(row.lag_s.map(|s| format!("{s:.1}s"))),
        or_blank(row.open_windows.map(|n| n.to_string())),
        or_blank(
            row.backlog
                .map(|(bytes, n)| format!("{} /{n}", bytes_text(bytes))),
        ),
        row.connection.label().to_owned(),
        row.problems
            .iter()
            .map(|(what, n)| format!("{what}={n}"))
            .collect::<Vec<_>>()
            .join(" "),
    ]
}

fn bytes_text(bytes: i64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / (1 << 10) as f64),
        b => format!("{b} B"),
    }
}

/// One frame as plain text, `width` columns wide, trailing blanks trimmed.
pub(crate) fn frame_text(header: &Header<'_>, table: Option<&Table>, width: u16) -> String {
    let rows = table.map_or(1, |t| t.rows.len());
    // Header line, the block's two borders, the column headings.
    let height = u16::try_from(rows + 4).unwrap_or(u16::MAX);
    let mut terminal = ratatui::Terminal::new(TestBackend::new(width, height))
        .expect("a test backend cannot fail to start");
    terminal
        .draw(|frame| draw(frame, header, table))
        .expect("a test backend cannot fail to draw");
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::top::model::Connection;

    #[test]
    fn a_frame_shows_every_row_and_its_numbers() {
        let row = NodeRow {
            name: "readings".into(),
            kind: "decode".into(),
            counted: Some("records_out"),
            rate: Some(59.96),
            total: Some(1234),
            lag_s: Some(2.3),
            open_windows: None,
            backlog: Some((3 << 10, 2)),
            connection: Connection::Up,
            problems: vec![("errors", 1), ("dropped", 2)],
        };
        let table = Table {
            readings_per_second: Some(60.0),
            rows: vec![row],
        };
        let header = Header {
            url: "http://127.0.0.1:9898",
            interval_s: 1.0,
            trouble: None,
            live: false,
        };
        let text = frame_text(&header, Some(&table), 120);
        assert!(
            text.starts_with("smartgrid top  http://127.0.0.1:9898  every 1s  readings 60.0/s\n"),
            "{text}"
        );
        for heading in COLUMNS {
            assert!(text.contains(heading), "{heading} in {text}");
        }
        let line = text
            .lines()
            .find(|l| l.contains("decode"))
            .expect("the row");
        for value in [
            "decode",
            "60.0",
            "1234",
            "2.3s",
            "3.0 KiB /2",
            "up",
            "errors=1 dropped=2",
        ] {
            assert!(line.contains(value), "{value} in {line:?}");
        }
        let waiting = frame_text(&header, None, 80);
        assert!(waiting.contains("waiting for a second scrape"), "{waiting}");
    }
}
