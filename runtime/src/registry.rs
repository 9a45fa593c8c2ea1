//! Node kinds by `type:` name. Built-in kinds and users' crates register the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::operator::OperatorFactory;

/// The node kinds a pipeline may use.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn OperatorFactory>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a kind; a later registration under the same name replaces the earlier one,
    /// so a user crate can override a built-in.
    pub fn register(&mut self, factory: impl OperatorFactory) -> &mut Self {
        self.kinds.insert(factory.kind(), Arc::new(factory));
        self
    }

    /// The factory for `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn OperatorFactory>> {
        self.kinds.get(kind)
    }

    /// Every registered kind name, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    /// Every factory, sorted by kind.
    pub fn factories(&self) -> impl Iterator<Item = &Arc<dyn OperatorFactory>> + '_ {
        self.kinds.values()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}
