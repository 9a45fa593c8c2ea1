//! TEMPORARY STUB (not committed): the API the models branch provides.
use std::path::Path;
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Bad(String),
}
#[derive(Clone, Debug)]
pub struct Model {
    names: Option<Vec<String>>,
    n: usize,
    weights: Vec<f64>,
    fp: u64,
}
impl Model {
    pub fn from_file(path: &Path) -> Result<Model, ModelError> {
        let b =
            std::fs::read(path).map_err(|e| ModelError::Bad(format!("{}: {e}", path.display())))?;
        Self::parse(&b)
    }
    pub fn parse(bytes: &[u8]) -> Result<Model, ModelError> {
        // stub format: "linear name:weight name:weight ..."
        let s = std::str::from_utf8(bytes).map_err(|e| ModelError::Bad(e.to_string()))?;
        let mut it = s.split_whitespace();
        if it.next() != Some("linear") {
            return Err(ModelError::Bad("not a model".into()));
        }
        let mut names = Vec::new();
        let mut weights = Vec::new();
        for p in it {
            let (n, w) = p.split_once(':').ok_or(ModelError::Bad("bad".into()))?;
            names.push(n.to_string());
            weights.push(w.parse().map_err(|_| ModelError::Bad("w".into()))?);
        }
        let fp = bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        Ok(Model {
            n: names.len(),
            names: Some(names),
            weights,
            fp,
        })
    }
    pub fn feature_names(&self) -> Option<&[String]> {
        self.names.as_deref()
    }
    pub fn num_features(&self) -> usize {
        self.n
    }
    pub fn predict(&self, f: &[f64]) -> f64 {
        self.weights
            .iter()
            .enumerate()
            .map(|(i, w)| w * f.get(i).copied().unwrap_or(0.0))
            .sum()
    }
    pub fn fingerprint(&self) -> u64 {
        self.fp
    }
}
