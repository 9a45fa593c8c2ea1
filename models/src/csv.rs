//! Feature rows from CSV: the header names the columns, an empty cell (or `NaN`) is a
//! missing value.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::ModelError;

/// A CSV file being read: its header is known, rows are read on demand.
pub struct CsvFeatures<R> {
    reader: csv::Reader<R>,
    source: String,
    header: Vec<String>,
    record: csv::StringRecord,
}

impl CsvFeatures<File> {
    pub fn open(path: &Path) -> Result<CsvFeatures<File>, ModelError> {
        let file = File::open(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        CsvFeatures::new(file, path.display().to_string())
    }
}

impl<R: Read> CsvFeatures<R> {
    /// Read the header. `source` names the input in errors.
    pub fn new(reader: R, source: impl Into<String>) -> Result<CsvFeatures<R>, ModelError> {
        let source = source.into();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let header = reader
            .headers()
            .map_err(|e| csv_error(&source, &e.to_string()))?
            .iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        if header.is_empty() || header.iter().all(String::is_empty) {
            return Err(csv_error(&source, "no header line"));
        }
        Ok(CsvFeatures {
            reader,
            source,
            header,
            record: csv::StringRecord::new(),
        })
    }

    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The column of each name, in the names' order (any column order, extra columns
    /// ignored). A missing name is an error listing both sides.
    pub fn columns_for(&self, names: &[String]) -> Result<Vec<usize>, ModelError> {
        let mut columns = Vec::with_capacity(names.len());
        let mut missing = Vec::new();
        for name in names {
            match self.header.iter().position(|h| h == name) {
                Some(c) => columns.push(c),
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(ModelError::MissingColumns {
                source_name: self.source.clone(),
                missing,
                wanted: names.to_vec(),
                csv: self.header.clone(),
            });
        }
        Ok(columns)
    }

    /// The columns feeding a model: by name if the model has names, else the first
    /// `num_features` columns in order.
    pub fn columns_for_model(&self, model: &crate::Model) -> Result<Vec<usize>, ModelError> {
        match model.feature_names() {
            Some(names) => self.columns_for(names),
            None if self.header.len() >= model.num_features() => {
                Ok((0..model.num_features()).collect())
            }
            None => Err(csv_error(
                &self.source,
                &format!(
                    "the model has {} features (unnamed, taken in column order) but the CSV has {} columns",
                    model.num_features(),
                    self.header.len()
                ),
            )),
        }
    }

    /// Read the next row's values of `columns` into `row` (cleared first). Returns
    /// false at the end of the input.
    pub fn next_row(&mut self, columns: &[usize], row: &mut Vec<f64>) -> Result<bool, ModelError> {
        row.clear();
        let more = self
            .reader
            .read_record(&mut self.record)
            .map_err(|e| csv_error(&self.source, &e.to_string()))?;
        if !more {
            return Ok(false);
        }
        let line = self.record.position().map_or(0, csv::Position::line);
        for &c in columns {
            let cell = self.record.get(c).unwrap_or("");
            row.push(parse_cell(cell).ok_or_else(|| {
                csv_error(
                    &self.source,
                    &format!(
                        "line {line}, column {:?}: {cell:?} is not a number",
                        self.header.get(c).map_or("", String::as_str)
                    ),
                )
            })?);
        }
        Ok(true)
    }

    /// Read every remaining row.
    pub fn read_all(&mut self, columns: &[usize]) -> Result<Vec<Vec<f64>>, ModelError> {
        let mut rows = Vec::new();
        let mut row = Vec::with_capacity(columns.len());
        while self.next_row(columns, &mut row)? {
            rows.push(row.clone());
        }
        Ok(rows)
    }
}

/// A cell's value: empty is missing (NaN), otherwise a decimal number, `NaN` or `inf`.
pub fn parse_cell(cell: &str) -> Option<f64> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Some(f64::NAN);
    }
    cell.parse::<f64>().ok()
}

fn csv_error(source: &str, message: &str) -> ModelError {
    ModelError::Csv {
        source_name: source.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_by_name_in_any_order_with_missing_cells() {
        let data = "c,extra,a,b\n3,x,1,\n6,y,,5\n";
        let mut csv = CsvFeatures::new(data.as_bytes(), "test").unwrap();
        let columns = csv.columns_for(&names(&["a", "b", "c"])).unwrap();
        assert_eq!(columns, vec![2, 3, 0]);
        let rows = csv.read_all(&columns).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], 1.0);
        assert!(rows[0][1].is_nan());
        assert_eq!(rows[0][2], 3.0);
        assert!(rows[1][0].is_nan());
        assert_eq!(&rows[1][1..], &[5.0, 6.0]);
    }

    #[test]
    fn missing_column_lists_both_sides() {
        let csv = CsvFeatures::new("a,c\n1,2\n".as_bytes(), "feed.csv").unwrap();
        let e = csv
            .columns_for(&names(&["a", "b"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("feed.csv"), "{e}");
        assert!(e.contains("[\"b\"]"), "{e}");
        assert!(
            e.contains("[\"a\", \"b\"]") && e.contains("[\"a\", \"c\"]"),
            "{e}"
        );
    }

    #[test]
    fn bad_cells_and_ragged_rows_are_errors() {
        let mut csv = CsvFeatures::new("a,b\n1,zz\n".as_bytes(), "f").unwrap();
        let e = csv.read_all(&[0, 1]).unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("\"b\"") && e.contains("zz"),
            "{e}"
        );
        let mut csv = CsvFeatures::new("a,b\n1\n".as_bytes(), "f").unwrap();
        assert!(csv.read_all(&[0, 1]).is_err());
        assert!(CsvFeatures::new("".as_bytes(), "f").is_err());
    }

    #[test]
    fn nan_spellings() {
        assert!(parse_cell("").unwrap().is_nan());
        assert!(parse_cell(" NaN ").unwrap().is_nan());
        assert!(parse_cell("nan").unwrap().is_nan());
        assert_eq!(parse_cell("-1.5e3"), Some(-1500.0));
        assert_eq!(parse_cell("1,5"), None);
    }
}
