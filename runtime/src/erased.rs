//! The typed lifecycle ([`Node`]) behind object-safe traits, so the
//! registry, the plan and the renderer can hold kinds of every type side by side.
//!
//! The downcasts live here, in generic code paired with the types they undo: a state is
//! only ever handed back to the node that made it, and a fusion group only holds nodes
//! of one Rust type.

use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::sync::Arc;

use crate::diagnostic::Diagnostic;
use crate::node::{
    Claim, Inputs, Limit, Member, Node, PlanContext, RenderContext, SourcePartitioning,
    StartContext, StartError,
};
use crate::operator::{AnyStream, PortType};
use crate::spec::redact_secrets;

/// A started node's state, type-erased.
pub(crate) type AnyState = Box<dyn Any + Send + Sync>;

/// A node kind in the registry, object-safe.
pub(crate) trait DynKind: Send + Sync {
    fn summary(&self) -> &'static str;
    fn inputs(&self) -> Inputs;
    fn plan(&self, ctx: &mut PlanContext<'_>) -> Option<Arc<dyn DynNode>>;
    fn config_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
}

/// The kind whose planned nodes are `N`s.
pub(crate) struct KindOf<N>(PhantomData<fn() -> N>);

impl<N> KindOf<N> {
    pub(crate) fn new() -> Self {
        KindOf(PhantomData)
    }
}

impl<N: Node> DynKind for KindOf<N> {
    fn summary(&self) -> &'static str {
        N::SUMMARY
    }

    fn inputs(&self) -> Inputs {
        N::INPUTS
    }

    fn config_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        N::config_schema(generator)
    }

    fn plan(&self, ctx: &mut PlanContext<'_>) -> Option<Arc<dyn DynNode>> {
        if refuse_renamed_keys(N::RENAMED_KEYS, ctx) {
            return None;
        }
        check_limits(N::LIMITS, ctx);
        // Deserializing reports the first unset variable it meets; list every one.
        let unset = ctx.node.env_problems();
        ctx.report(unset);
        let config: Result<N::Config, Vec<Diagnostic>> = match N::CONFIG_KEYS {
            None => ctx.node.settings(),
            Some(keys) => ctx.node.select(|k| keys.contains(&k)).settings(),
        };
        let planned = ctx.keep(config).and_then(|config| N::plan(config, ctx));
        quote_the_file(ctx);
        name_the_connection(ctx);
        let node = planned?;
        if ctx.has_problems() {
            return None;
        }
        Some(Arc::new(node))
    }
}

/// Report each key an earlier version used, naming its replacement; whether any was.
fn refuse_renamed_keys(renamed: &[(&str, &str)], ctx: &mut PlanContext<'_>) -> bool {
    let mut found = false;
    for (old, new) in renamed {
        let written = ctx
            .node
            .settings
            .entries()
            .iter()
            .find(|(k, _)| k.value == *old);
        if let Some((key, _)) = written {
            let at = key.at;
            ctx.error(at, format!("`{old}` is now `{new}`"))
                .with_hint(format!(
                    "rename `{old}` to `{new}` (see docs/nodes.md, the table for this node kind)"
                ));
            found = true;
        }
    }
    found
}

/// Report each numeric setting outside its allowed range, quoting it as written.
fn check_limits(limits: &[(&str, Limit)], ctx: &mut PlanContext<'_>) {
    for (path, limit) in limits {
        let Some((at, written, Some(text))) = ctx.node.scalar_at(path) else {
            continue;
        };
        if let Some(range) = limit.check(&text) {
            let message = format!("`{path}` is {written}; it must be {range}");
            ctx.error(at, message)
                .with_hint("leave it out for the default");
        }
    }
}

/// A kind may quote a value it was given: every message must read as the file says it,
/// with `${VAR}` where a variable's value stood.
fn quote_the_file(ctx: &mut PlanContext<'_>) {
    let secrets = ctx.node.secrets();
    if secrets.is_empty() {
        return;
    }
    for problem in &mut ctx.problems {
        problem.message = redact_secrets(&problem.message, &secrets);
        problem.hint = problem.hint.as_ref().map(|h| redact_secrets(h, &secrets));
    }
}

/// A problem in a setting the node took from its `connection:` says so: the line is in
/// `connections:`, and the node's name alone would not explain why it applies.
fn name_the_connection(ctx: &mut PlanContext<'_>) {
    let node = ctx.node;
    for problem in &mut ctx.problems {
        let named = problem
            .hint
            .as_ref()
            .is_some_and(|h| h.contains("(from connection `"));
        if let Some(connection) = node.from_connection(problem.at).filter(|_| !named) {
            let from = format!("(from connection `{connection}`)");
            problem.hint = Some(match problem.hint.take() {
                Some(hint) => format!("{hint} {from}"),
                None => from,
            });
        }
    }
}

/// [`Node`], object-safe.
pub(crate) trait DynNode: Send + Sync {
    fn output(&self) -> Option<PortType>;
    fn source_partitioning(&self) -> SourcePartitioning;
    fn replayable(&self) -> bool;
    fn broker_links(&self) -> Vec<crate::node::BrokerLink>;
    fn resources(&self) -> Vec<Claim>;
    fn start(&self, ctx: &StartContext<'_>) -> Result<AnyState, StartError>;
    fn render<'s>(
        &self,
        state: &AnyState,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>>;
    fn finish(&self, state: AnyState, ctx: &StartContext<'_>) -> Result<(), StartError>;
    /// The node's Rust type when nodes of its kind share an operator.
    fn fusion_type(&self) -> Option<TypeId>;
    fn as_any(&self) -> &dyn Any;
    /// Render this node and `others` (same Rust type, see `fusion_type`) as one operator.
    fn render_together<'s>(
        &'s self,
        state: &'s AnyState,
        others: &[(&'s dyn DynNode, &'s AnyState, &'s str)],
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Vec<Option<AnyStream<'s>>>;
}

fn state_of<N: Node>(state: &AnyState) -> &N::State {
    state
        .downcast_ref::<N::State>()
        .expect("a state is only handed back to the node that made it")
}

impl<N: Node> DynNode for N {
    fn output(&self) -> Option<PortType> {
        Node::output(self)
    }

    fn source_partitioning(&self) -> SourcePartitioning {
        Node::source_partitioning(self)
    }

    fn replayable(&self) -> bool {
        Node::replayable(self)
    }

    fn broker_links(&self) -> Vec<crate::node::BrokerLink> {
        Node::broker_links(self)
    }

    fn resources(&self) -> Vec<Claim> {
        Node::resources(self)
    }

    fn start(&self, ctx: &StartContext<'_>) -> Result<AnyState, StartError> {
        Ok(Box::new(Node::start(self, ctx)?))
    }

    fn render<'s>(
        &self,
        state: &AnyState,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        Node::render(self, state_of::<N>(state), ctx, inputs)
    }

    fn finish(&self, state: AnyState, ctx: &StartContext<'_>) -> Result<(), StartError> {
        let state = state
            .downcast::<N::State>()
            .expect("a state is only handed back to the node that made it");
        Node::finish(self, *state, ctx)
    }

    fn fusion_type(&self) -> Option<TypeId> {
        self.shares_operator().then(TypeId::of::<N>)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn render_together<'s>(
        &'s self,
        state: &'s AnyState,
        others: &[(&'s dyn DynNode, &'s AnyState, &'s str)],
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Vec<Option<AnyStream<'s>>> {
        let mut group = vec![Member {
            node: self,
            state: state_of::<N>(state),
            name: ctx.node,
        }];
        for (node, state, name) in others {
            group.push(Member {
                node: node
                    .as_any()
                    .downcast_ref::<N>()
                    .expect("a fusion group holds nodes of one type"),
                state: state_of::<N>(state),
                name,
            });
        }
        N::render_together(&group, ctx, inputs)
    }
}
