//! `smartgrid model …`: predict from a CSV, inspect a model file, train a LightGBM
//! model (feature `train`).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use smartgrid_models::csv::CsvFeatures;
use smartgrid_models::{Accumulation, Model};

/// `smartgrid model predict --model FILE --csv FILE`: one prediction per CSV row, one
/// per line, in row order.
pub fn predict(model_path: &Path, csv_path: &Path) -> anyhow::Result<ExitCode> {
    let model = Model::from_file(model_path)?;
    let mut csv = CsvFeatures::open(csv_path)?;
    let columns = csv.columns_for_model(&model)?;
    let f32_values = model.info().accumulation == Accumulation::F32;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut row = Vec::with_capacity(columns.len());
    while csv.next_row(&columns, &mut row)? {
        let prediction = model.predict(&row);
        // shortest text that reads back as the same value (an f32 model's are f32s)
        if f32_values {
            writeln!(out, "{}", prediction as f32)
        } else {
            writeln!(out, "{prediction}")
        }
        .context("writing predictions")?;
    }
    out.flush().context("writing predictions")?;
    Ok(ExitCode::SUCCESS)
}

/// `smartgrid model inspect FILE`
pub fn inspect(model_path: &Path) -> anyhow::Result<ExitCode> {
    let model = Model::from_file(model_path)?;
    let info = model.info();
    println!("file:        {}", model_path.display());
    println!("format:      {}", info.format);
    println!("objective:   {}", info.objective);
    println!("trees:       {}", info.trees);
    println!("features:    {}", info.num_features);
    match &info.feature_names {
        Some(names) => println!("names:       {}", names.join(", ")),
        None => println!("names:       (none: CSV columns are taken in order)"),
    }
    println!("base score:  {} (margin)", info.base_score);
    let sum = match info.accumulation {
        Accumulation::F32 => "f32",
        Accumulation::F64 => "f64",
    };
    println!("summation:   {sum}");
    println!("size:        {} bytes", info.size_bytes);
    println!("fingerprint: {:016x}", info.fingerprint);
    Ok(ExitCode::SUCCESS)
}

/// What `smartgrid model train` says in a build without the `train` feature.
#[cfg(not(feature = "train"))]
pub const TRAIN_NOT_BUILT: &str = "\
`smartgrid model train` is not in this build: training needs the `train` feature.
It builds LightGBM from source, which needs CMake >= 3.28, a C++ compiler and make,
and libclang (Debian: `apt-get install g++ make libclang-dev`, and `pip install cmake`
if Debian's cmake is older than 3.28). Then, in the smartgrid source tree:
    cargo build --release --locked --features train
and use target/release/smartgrid. `model predict`, `model inspect` and `run` need no
feature.";

/// What `smartgrid model train` was asked for.
#[cfg(feature = "train")]
pub struct TrainArgs<'a> {
    pub data: &'a Path,
    pub target: &'a str,
    /// Only these columns are features (in this order); default: every column but the
    /// target.
    pub features: Option<Vec<String>>,
    /// Train on `target − sum(these columns)`: a model of the change, for a `predict`
    /// node with the same `relative_to`.
    pub relative_to: Vec<String>,
    pub out: &'a Path,
    pub params: smartgrid_models::train::TrainParams,
}

/// `smartgrid model train --data FILE.csv --target COLUMN --out FILE`: every other
/// column (or those `--features` names) is a feature, by its header name; empty cells
/// are missing values. With `--relative-to`, the label is the target minus those
/// columns' sum.
#[cfg(feature = "train")]
pub fn train(args: TrainArgs<'_>) -> anyhow::Result<ExitCode> {
    use indicatif::{ProgressBar, ProgressStyle};

    let mut csv = CsvFeatures::open(args.data)?;
    let target = csv.columns_for(&[args.target.to_owned()])?[0];
    let names: Vec<String> = match args.features {
        Some(names) => names,
        None => csv
            .header()
            .iter()
            .enumerate()
            .filter(|&(c, _)| c != target)
            .map(|(_, n)| n.clone())
            .collect(),
    };
    let mut columns = csv.columns_for(&names)?;
    let baseline = csv.columns_for(&args.relative_to)?;
    columns.extend(&baseline);
    columns.push(target);
    let mut rows = csv.read_all(&columns)?;
    let labels: Vec<f64> = rows
        .iter_mut()
        .map(|row| {
            let label = row.pop().unwrap_or(f64::NAN);
            let base: f64 = row.drain(names.len()..).sum();
            label - base
        })
        .collect();
    eprintln!(
        "training on {} rows, {} features, target {:?}",
        rows.len(),
        names.len(),
        args.target
    );

    let bar = ProgressBar::new(args.params.trees as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} trees [{elapsed_precise}, eta {eta}]")
            .context("progress bar template")?,
    );
    let text =
        smartgrid_models::train::train_lightgbm(&rows, &labels, &names, &args.params, |done| {
            bar.set_position(done as u64)
        })?;
    bar.finish();
    // check that the evaluator reads what LightGBM wrote before saving it
    let model = Model::parse(text.as_bytes()).context("the trained model")?;
    std::fs::write(args.out, &text).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} trees, {} bytes)",
        args.out.display(),
        model.info().trees,
        text.len()
    );
    Ok(ExitCode::SUCCESS)
}
