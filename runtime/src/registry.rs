//! Node kinds by `type:` name. Built-in kinds and users' crates register the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::erased::{DynKind, KindOf};
use crate::node::Node;

/// The node kinds a pipeline may use.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn DynKind>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the kind whose planned nodes are `N`s, under [`N::KIND`](Node::KIND); a later
    /// registration under the same name replaces the earlier one, so a user crate can
    /// override a built-in.
    pub fn register<N: Node>(&mut self) -> &mut Self {
        self.kinds.insert(N::KIND, Arc::new(KindOf::<N>::new()));
        self
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&Arc<dyn DynKind>> {
        self.kinds.get(kind)
    }

    /// Every registered kind name, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    /// Every kind's name, summary and settings' JSON Schema (definitions go to
    /// `generator`), sorted by name.
    pub fn kind_schemas<'a>(
        &'a self,
        generator: &'a mut schemars::SchemaGenerator,
    ) -> impl Iterator<Item = (&'static str, &'static str, schemars::Schema)> + 'a {
        self.kinds
            .iter()
            .map(|(name, k)| (*name, k.summary(), k.config_schema(generator)))
    }

    /// Every kind's name and summary, sorted by name.
    pub fn summaries(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.kinds.iter().map(|(name, k)| (*name, k.summary()))
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}
