//! YAML text → a tree of [`Node`]s with positions → [`PipelineSpec`].
//!
//! The tree is built from `saphyr-parser`'s events rather than from a ready-made YAML
//! value, so that each scalar keeps its text as written and whether it was quoted, each
//! mapping keeps its keys in file order with their positions, and every duplicate key is
//! reported (not only the first).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Parser, ScalarStyle as YamlStyle, Span, Tag};

use super::connections::Connections;
use super::env::substitute;
use super::{Env, PipelineSpec, Spanned};
use crate::diagnostic::{Diagnostic, Location, closest};

/// A YAML value as written in the pipeline file, with its position.
///
/// Scalars keep their text exactly as written (before `${VAR}` substitution, which only
/// happens when the value is deserialized), so the tree can be printed without leaking
/// secrets.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the value starts.
    pub at: Location,
    /// The value.
    pub value: NodeValue,
}

/// The value of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum NodeValue {
    /// An empty value, `~` or `null`.
    Null,
    /// Any other scalar: a string, number or boolean, as written.
    Scalar {
        /// The text, with quotes and escapes already resolved.
        text: String,
        /// Whether it was written plain or quoted.
        style: ScalarStyle,
    },
    /// A list.
    Sequence(Vec<Node>),
    /// A mapping, keys in file order (no duplicates).
    Mapping(Vec<(Spanned<String>, Node)>),
}

/// How a scalar was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarStyle {
    /// Unquoted: `10`, `true`, `clemap`. May be read as a number or boolean.
    Plain,
    /// Quoted (`"10"`, `'10'`), a block scalar (`|`, `>`), or tagged `!!str`: always a
    /// string when the type does not say otherwise.
    Quoted,
}

impl Node {
    /// A node at a position.
    pub fn new(at: Location, value: NodeValue) -> Self {
        Node { at, value }
    }

    /// An empty mapping at a position.
    pub fn empty_mapping(at: Location) -> Self {
        Node::new(at, NodeValue::Mapping(Vec::new()))
    }

    /// The value of `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| v)
    }

    /// The entries of a mapping, in file order (empty for anything else).
    pub fn entries(&self) -> &[(Spanned<String>, Node)] {
        match &self.value {
            NodeValue::Mapping(entries) => entries,
            _ => &[],
        }
    }

    /// The items of a sequence (empty for anything else).
    pub fn items(&self) -> &[Node] {
        match &self.value {
            NodeValue::Sequence(items) => items,
            _ => &[],
        }
    }

    /// A scalar's text as written, before `${VAR}` substitution.
    pub fn as_raw_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Whether this is an empty value, `~` or `null`.
    pub fn is_null(&self) -> bool {
        matches!(self.value, NodeValue::Null)
    }

    /// What kind of value this is, for messages: "a string", "a list", ….
    pub fn describe(&self) -> &'static str {
        match &self.value {
            NodeValue::Null => "an empty value",
            NodeValue::Scalar { .. } => "a string",
            NodeValue::Sequence(_) => "a list",
            NodeValue::Mapping(_) => "a mapping",
        }
    }

    /// Parse YAML text (one document) into a tree. Problems in the tree itself
    /// (duplicate keys, keys that are not strings) are all reported; a syntax error is
    /// reported alone. The diagnostics have no file name yet.
    pub fn parse(text: &str) -> Result<Node, Vec<Diagnostic>> {
        let (node, problems) = parse_tree(text)?;
        if problems.is_empty() {
            Ok(node)
        } else {
            Err(problems)
        }
    }
}

/// Deeper nesting than this is refused (a pipeline needs a handful of levels), so that
/// no recursive walk over the tree can overflow the stack.
const MAX_DEPTH: usize = 64;
/// How many nodes aliases (`*name`) may produce in total, against "billion laughs".
const ALIAS_BUDGET: usize = 10_000;

/// 0-based column → 1-based [`Location`].
fn location(span: &Span) -> Location {
    Location {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// A collection being built.
enum Frame {
    Sequence {
        at: Location,
        anchor: usize,
        items: Vec<Node>,
    },
    Mapping {
        at: Location,
        anchor: usize,
        entries: Vec<(Spanned<String>, Node)>,
        /// Where each key of `entries` was first written: one lookup per key, so a
        /// mapping of any size is checked for duplicates in linear time.
        seen: HashMap<String, Location>,
        /// The key read, waiting for its value: `Some(None)` for a key that is not a string
        /// (already reported; its value is dropped).
        key: Option<Option<Spanned<String>>>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    alias_budget: usize,
    problems: Vec<Diagnostic>,
}

/// Parse one YAML document into a tree plus the problems found in it, or the syntax
/// error that stopped the parser.
pub(crate) fn parse_tree(text: &str) -> Result<(Node, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder {
        alias_budget: ALIAS_BUDGET,
        ..Builder::default()
    };
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| {
            let at = Location {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            };
            vec![
                Diagnostic::new(at, format!("invalid YAML: {}", e.info()))
                    .hint("check the indentation, quotes and brackets here and on the line above"),
            ]
        })?;
        builder.event(event, span).map_err(|fatal| vec![fatal])?;
    }
    let root = builder
        .root
        .unwrap_or(Node::new(Location { line: 1, column: 1 }, NodeValue::Null));
    Ok((root, builder.problems))
}

impl Builder {
    /// Take one parser event; `Err` for a problem that stops the parse.
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Diagnostic> {
        let at = location(&span);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Diagnostic::new(
                        at,
                        "a pipeline file holds a single YAML document",
                    )
                    .hint("remove the second document (after `---`)"));
                }
                Ok(())
            }
            Event::SequenceStart(anchor, _) => self.open(Frame::Sequence {
                at,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.open(Frame::Mapping {
                at,
                anchor,
                entries: Vec::new(),
                seen: HashMap::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Sequence { at, anchor, items }) => {
                        (Node::new(at, NodeValue::Sequence(items)), anchor)
                    }
                    Some(Frame::Mapping {
                        at,
                        anchor,
                        entries,
                        ..
                    }) => {
                        let entries = merge::merge_keys(entries, &mut self.problems);
                        (Node::new(at, NodeValue::Mapping(entries)), anchor)
                    }
                    None => {
                        return Err(Diagnostic::new(
                            at,
                            "invalid YAML: unbalanced collection end",
                        ));
                    }
                };
                self.finish(node.0, node.1);
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                // An empty value (`key:` and nothing) is placed at its key: the parser puts
                // it at the colon.
                let at = match self.stack.last() {
                    Some(Frame::Mapping {
                        key: Some(Some(key)),
                        ..
                    }) if text.is_empty() && style == YamlStyle::Plain => key.at,
                    _ => at,
                };
                let node = Node::new(at, scalar_value(text.into_owned(), style, tag.as_deref()));
                self.finish(node, anchor);
                Ok(())
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    return Err(Diagnostic::new(at, "invalid YAML: unknown alias"));
                };
                let count = count_nodes(target);
                if count > self.alias_budget {
                    return Err(Diagnostic::new(at, "aliases expand to too many values")
                        .hint("write the values out instead of nesting aliases"));
                }
                self.alias_budget -= count;
                let mut node = target.clone();
                node.at = at;
                self.finish(node, 0);
                Ok(())
            }
        }
    }

    fn open(&mut self, frame: Frame) -> Result<(), Diagnostic> {
        if self.stack.len() >= MAX_DEPTH {
            let at = match &frame {
                Frame::Sequence { at, .. } | Frame::Mapping { at, .. } => *at,
            };
            return Err(Diagnostic::new(
                at,
                format!("values are nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// A complete node: store it under its anchor, then place it in its parent.
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Sequence { items, .. }) => items.push(node),
            Some(Frame::Mapping {
                entries, seen, key, ..
            }) => match key.take() {
                None => {
                    *key = Some(match node.value {
                        NodeValue::Scalar { text, .. } => Some(Spanned::new(text, node.at)),
                        NodeValue::Null => Some(Spanned::new(String::new(), node.at)),
                        NodeValue::Sequence(_) | NodeValue::Mapping(_) => {
                            self.problems.push(
                                Diagnostic::new(
                                    node.at,
                                    format!("a key must be a string, not {}", node.describe()),
                                )
                                .hint("write `name: value` pairs"),
                            );
                            None
                        }
                    });
                }
                Some(None) => {}
                Some(Some(name)) => {
                    if let Some(first) = seen.get(&name.value) {
                        self.problems.push(
                            Diagnostic::new(name.at, format!("duplicate key `{}`", name.value)).hint(format!(
                                "`{}` is already defined at line {}, column {}; a key may appear once",
                                name.value, first.line, first.column
                            )),
                        );
                    } else {
                        seen.insert(name.value.clone(), name.at);
                        entries.push((name, node));
                    }
                }
            },
        }
    }
}

/// A scalar event → `Null` or `Scalar`, following the YAML 1.2 core schema for nulls.
fn scalar_value(text: String, style: YamlStyle, tag: Option<&Tag>) -> NodeValue {
    let core_tag = tag
        .filter(|t| t.is_yaml_core_schema())
        .map(|t| t.suffix.as_str());
    match (core_tag, style) {
        (Some("null"), _) => NodeValue::Null,
        (Some("str"), _) => NodeValue::Scalar {
            text,
            style: ScalarStyle::Quoted,
        },
        (_, YamlStyle::Plain) if is_null(&text) => NodeValue::Null,
        (_, YamlStyle::Plain) => NodeValue::Scalar {
            text,
            style: ScalarStyle::Plain,
        },
        _ => NodeValue::Scalar {
            text,
            style: ScalarStyle::Quoted,
        },
    }
}

/// The YAML 1.2 core schema's nulls.
pub(crate) fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// How many nodes a tree holds (its depth is bounded by [`MAX_DEPTH`]).
fn count_nodes(node: &Node) -> usize {
    1 + match &node.value {
        NodeValue::Null | NodeValue::Scalar { .. } => 0,
        NodeValue::Sequence(items) => items.iter().map(count_nodes).sum(),
        NodeValue::Mapping(entries) => entries.iter().map(|(_, v)| count_nodes(v)).sum(),
    }
}

/// How often state is checkpointed while a pipeline with a write-ahead log runs.
const DEFAULT_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The keys allowed at the top of a pipeline file.
pub(crate) const TOP_KEYS: [&str; 8] = [
    "pipeline",
    "data_dir",
    "state_dir",
    "checkpoint_interval",
    "connections",
    "http",
    "status_interval",
    "nodes",
];

fn valid_keys_hint(word: &str, valid: &[&str]) -> String {
    let list = valid.join(", ");
    match closest(word, valid.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? valid keys: {list}"),
        None => format!("valid keys: {list}"),
    }
}

/// Whether `name` can name a pipeline: 1 to 64 of `[A-Za-z0-9_.-]`, not starting with
/// `.` or `-`. It becomes part of MQTT client ids (where `/` breaks brokers), spool
/// folder names (where `..` would escape) and tags.
fn is_pipeline_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Whether `name` is a valid node name: `[A-Za-z_][A-Za-z0-9_-]*`.
fn is_node_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A scalar as a string with `${VAR}` substituted; `what` names the value in messages.
pub(crate) fn string_value(
    node: &Node,
    env: &Env,
    what: &str,
) -> Result<Spanned<String>, Diagnostic> {
    match &node.value {
        NodeValue::Scalar { text, .. } => {
            let substituted = substitute(text, env).map_err(|e| {
                let (message, hint) = e.describe(text);
                Diagnostic::new(node.at, message).hint(hint)
            })?;
            if substituted.text.is_empty() {
                return Err(Diagnostic::new(node.at, format!("{what} cannot be empty")));
            }
            Ok(Spanned::new(substituted.text.into_owned(), node.at))
        }
        NodeValue::Null => Err(Diagnostic::new(node.at, format!("{what} needs a value"))),
        NodeValue::Sequence(_) | NodeValue::Mapping(_) => Err(Diagnostic::new(
            node.at,
            format!("{what} must be a string, not {}", node.describe()),
        )),
    }
}

/// Parse a whole pipeline file; see [`super::parse_str`].
pub(crate) fn parse_pipeline(
    text: &str,
    file: &str,
    base_dir: PathBuf,
    env: Env,
) -> Result<PipelineSpec, Vec<Diagnostic>> {
    let in_file = |problems: Vec<Diagnostic>| {
        problems
            .into_iter()
            .map(|d| d.in_file(file))
            .collect::<Vec<_>>()
    };
    let (root, mut problems) = parse_tree(text).map_err(in_file)?;

    let mut name = None;
    let mut state_dir = None;
    let mut data_dir = None;
    let mut checkpoint_interval = None;
    let mut connections_node = None;
    let mut observe = super::observe::ObserveSpec::default();
    let mut nodes_node = None;
    match &root.value {
        NodeValue::Mapping(entries) => {
            for (key, value) in entries {
                match key.value.as_str() {
                    "pipeline" => match string_value(value, &env, "the pipeline name") {
                        Ok(n) if is_pipeline_name(&n.value) => name = Some(n.value),
                        Ok(n) => problems.push(
                            Diagnostic::new(n.at, format!("invalid pipeline name `{}`", n.value))
                                .hint(
                                    "use up to 64 letters, digits, `_`, `-` and `.`, not starting \
                                     with `.` or `-`: the name goes into MQTT client ids, \
                                     folder names and stored tags",
                                ),
                        ),
                        Err(d) => problems.push(d),
                    },
                    "state_dir" => match string_value(value, &env, "`state_dir`") {
                        Ok(dir) => state_dir = Some(PathBuf::from(dir.value)),
                        Err(d) => problems.push(d),
                    },
                    "data_dir" => match string_value(value, &env, "`data_dir`") {
                        Ok(dir) => data_dir = Some(PathBuf::from(dir.value)),
                        Err(d) => problems.push(d),
                    },
                    "connections" => connections_node = Some((key, value)),
                    // Extension keys, as in Compose files: a place for `&anchors` that
                    // nodes merge with `<<: *name`; nothing reads them.
                    other if other.starts_with("x-") => {}
                    "checkpoint_interval" => {
                        match string_value(value, &env, "`checkpoint_interval`") {
                            Ok(text) => match text.value.parse::<super::Duration>() {
                                Ok(d) if !d.0.is_zero() && d.0.as_secs() <= 86_400 => {
                                    checkpoint_interval = Some(d.0);
                                }
                                Ok(_) => problems.push(
                                    Diagnostic::new(
                                        text.at,
                                        "`checkpoint_interval` is out of range",
                                    )
                                    .hint("use a duration from 1ms to 24h, e.g. `10s`"),
                                ),
                                Err(e) => {
                                    problems.push(Diagnostic::new(text.at, e.message).hint(e.hint))
                                }
                            },
                            Err(d) => problems.push(d),
                        }
                    }
                    "http" => match super::observe::parse_http(value, &env) {
                        Ok(listen) => observe.http = Some(listen),
                        Err(d) => problems.extend(d),
                    },
                    "status_interval" => match string_value(value, &env, "`status_interval`")
                        .and_then(|text| super::observe::parse_status_interval(&text))
                    {
                        Ok(every) => observe.status_interval = every,
                        Err(d) => problems.push(d),
                    },
                    "nodes" => nodes_node = Some((key, value)),
                    other => problems.push(
                        Diagnostic::new(key.at, format!("unknown top-level key `{other}`"))
                            .hint(valid_keys_hint(other, &TOP_KEYS)),
                    ),
                }
            }
            if nodes_node.is_none() {
                problems.push(
                    Diagnostic::new(root.at, "missing key `nodes`")
                        .hint("add `nodes:` with the pipeline's nodes"),
                );
            }
        }
        _ => problems.push(
            Diagnostic::new(
                root.at,
                format!(
                    "expected a mapping with `nodes:`, found {}",
                    root.describe()
                ),
            )
            .hint("a pipeline file starts with `pipeline: <name>` and `nodes:`"),
        ),
    }

    let connections = connections_node
        .map(|(key, value)| Connections::parse(key, value, &mut problems))
        .unwrap_or_default();
    let mut nodes = Vec::new();
    if let Some((key, value)) = nodes_node {
        match &value.value {
            NodeValue::Mapping(entries) => {
                for (node_name, body) in entries {
                    let node =
                        nodes::parse_node(node_name, body, file, &env, &connections, &mut problems);
                    if let Some(node) = node {
                        nodes.push(node);
                    }
                }
            }
            _ => problems.push(
                Diagnostic::new(
                    if value.is_null() { key.at } else { value.at },
                    format!(
                        "`nodes` must map node names to nodes, found {}",
                        value.describe()
                    ),
                )
                .hint("write each node as `name:` followed by its indented `type:` and settings"),
            ),
        }
    }

    if !problems.is_empty() {
        // The nodes are not planned, so list their unset variables here: one run of
        // `validate` names every variable to set.
        for node in &nodes {
            problems.extend(node.env_problems());
        }
        problems.sort_by_key(|d| d.at);
        return Err(crate::diagnostic::collapse_shared(in_file(problems)));
    }
    let name = name.unwrap_or_else(|| {
        // The file's stem, made a valid name: every other character becomes `_`.
        let stem: String = Path::new(file)
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        if is_pipeline_name(&stem) {
            stem
        } else {
            "pipeline".to_owned()
        }
    });
    // Everything a run writes falls under one directory, the pipeline file's unless
    // `data_dir` says otherwise (an absolute `state_dir` or path stays where it says).
    let data_dir = match data_dir {
        Some(dir) => base_dir.join(dir),
        None => base_dir.clone(),
    };
    // Per pipeline, so two pipelines in one folder keep apart.
    let state_dir = data_dir
        .join(state_dir.unwrap_or_else(|| Path::new(".smartgrid").join("state").join(&name)));
    Ok(PipelineSpec {
        file: file.to_owned(),
        base_dir,
        data_dir,
        name,
        state_dir,
        checkpoint_interval: checkpoint_interval.unwrap_or(DEFAULT_CHECKPOINT_INTERVAL),
        observe,
        nodes,
    })
}

mod merge;
mod nodes;
#[cfg(test)]
mod tests;
