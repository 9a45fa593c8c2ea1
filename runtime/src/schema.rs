//! Field names of a stream of readings, fixed by the plan.

use std::fmt;
use std::sync::Arc;

/// The ordered field names of a stream of [`Reading`](crate::record::Reading)s.
/// Cheap to clone; compared by content.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Schema(Arc<[Arc<str>]>);

impl Schema {
    /// A schema from field names, in row order.
    pub fn new<I, S>(fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Schema(fields.into_iter().map(|s| Arc::from(s.as_ref())).collect())
    }

    /// The field names, in row order.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(|s| &**s)
    }

    /// The position of `name` in the row.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|f| &**f == name)
    }

    /// How many fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The name of field `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.0[i]
    }
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.fields()).finish()
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.fields().collect();
        write!(f, "{}", names.join(", "))
    }
}
