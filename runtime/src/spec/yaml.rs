//! YAML text → a tree of [`Node`]s with positions → [`PipelineSpec`].
//!
//! The tree is built from `saphyr-parser`'s events rather than from a ready-made YAML
//! value, so that each scalar keeps its text as written and whether it was quoted, each
//! mapping keeps its keys in file order with their positions, and every duplicate key is
//! reported (not only the first).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Parser, ScalarStyle as YamlStyle, Span, Tag};

use super::env::substitute;
use super::{Env, NodeSpec, PipelineSpec, Spanned};
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
                    }) => (Node::new(at, NodeValue::Mapping(entries)), anchor),
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
            Some(Frame::Mapping { entries, key, .. }) => match key.take() {
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
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.value == name.value) {
                        self.problems.push(
                            Diagnostic::new(name.at, format!("duplicate key `{}`", name.value)).hint(format!(
                                "`{}` is already defined at line {}, column {}; a key may appear once",
                                name.value, first.at.line, first.at.column
                            )),
                        );
                    } else {
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

/// The keys allowed at the top of a pipeline file.
const TOP_KEYS: [&str; 2] = ["pipeline", "nodes"];

fn valid_keys_hint(word: &str, valid: &[&str]) -> String {
    let list = valid.join(", ");
    match closest(word, valid.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? valid keys: {list}"),
        None => format!("valid keys: {list}"),
    }
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
fn string_value(node: &Node, env: &Env, what: &str) -> Result<Spanned<String>, Diagnostic> {
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
    let mut nodes_node = None;
    match &root.value {
        NodeValue::Mapping(entries) => {
            for (key, value) in entries {
                match key.value.as_str() {
                    "pipeline" => match string_value(value, &env, "the pipeline name") {
                        Ok(n) => name = Some(n.value),
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

    let mut nodes = Vec::new();
    if let Some((key, value)) = nodes_node {
        match &value.value {
            NodeValue::Mapping(entries) => {
                for (node_name, body) in entries {
                    if let Some(node) = parse_node(node_name, body, file, &env, &mut problems) {
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
        problems.sort_by_key(|d| d.at);
        return Err(in_file(problems));
    }
    let name = name.unwrap_or_else(|| {
        Path::new(file)
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("pipeline")
            .to_owned()
    });
    Ok(PipelineSpec {
        file: file.to_owned(),
        base_dir,
        name,
        nodes,
    })
}

/// One entry of `nodes:`; problems are pushed, `None` if the node is unusable.
fn parse_node(
    name: &Spanned<String>,
    body: &Node,
    file: &str,
    env: &Env,
    problems: &mut Vec<Diagnostic>,
) -> Option<NodeSpec> {
    let before = problems.len();
    let mut report = |d: Diagnostic| problems.push(d.node(&name.value));
    if !is_node_name(&name.value) {
        report(
            Diagnostic::new(name.at, format!("invalid node name `{}`", name.value))
                .hint("a node name is letters, digits, `_` and `-`, starting with a letter or `_`"),
        );
    }
    let entries: &[(Spanned<String>, Node)] = match &body.value {
        NodeValue::Mapping(entries) => entries,
        NodeValue::Null => &[],
        NodeValue::Scalar { .. } | NodeValue::Sequence(_) => {
            report(
                Diagnostic::new(
                    body.at,
                    format!("a node must be a mapping, found {}", body.describe()),
                )
                .hint("write the node's `type: <kind>` and settings indented under its name"),
            );
            return None;
        }
    };

    let mut kind = None;
    let mut inputs = Vec::new();
    let mut input_key: Option<&Spanned<String>> = None;
    let mut settings = Vec::new();
    for (key, value) in entries {
        match key.value.as_str() {
            "type" => match string_value(value, env, "`type`") {
                Ok(k) => kind = Some(k),
                Err(d) => report(d.hint("write `type: <kind>`")),
            },
            "input" | "inputs" => {
                if let Some(first) = input_key {
                    report(
                        Diagnostic::new(
                            key.at,
                            format!(
                                "a node has `input` or `inputs`, not both (`{}` is above)",
                                first.value
                            ),
                        )
                        .hint("list every input under `inputs: [a, b]`"),
                    );
                    continue;
                }
                input_key = Some(key);
                if key.value == "input" {
                    match &value.value {
                        NodeValue::Sequence(_) => report(
                            Diagnostic::new(value.at, "`input` takes one node name")
                                .hint("for several inputs write `inputs: [a, b]`"),
                        ),
                        _ => match string_value(value, env, "`input`") {
                            Ok(input) => inputs.push(input),
                            Err(d) => report(d),
                        },
                    }
                } else {
                    match &value.value {
                        NodeValue::Sequence(items) => {
                            for item in items {
                                match string_value(item, env, "an input name") {
                                    Ok(input) => inputs.push(input),
                                    Err(d) => report(d),
                                }
                            }
                        }
                        _ => report(
                            Diagnostic::new(
                                if value.is_null() { key.at } else { value.at },
                                format!(
                                    "`inputs` must be a list of node names, found {}",
                                    value.describe()
                                ),
                            )
                            .hint("write `inputs: [a, b]`, or `input: a` for a single input"),
                        ),
                    }
                }
            }
            _ => settings.push((key.clone(), value.clone())),
        }
    }
    let Some(kind) = kind else {
        if !entries.iter().any(|(k, _)| k.value == "type") {
            let mut d = Diagnostic::new(name.at, "missing key `type`").hint("add `type: <kind>`");
            if let Some((typo, _)) = entries
                .iter()
                .find(|(k, _)| closest(&k.value, ["type"]).is_some())
            {
                d = d.hint(format!(
                    "add `type: <kind>` (is `{}` a typo of `type`?)",
                    typo.value
                ));
            }
            report(d);
        }
        return None;
    };
    if problems.len() > before {
        return None;
    }
    Some(NodeSpec {
        name: name.value.clone(),
        at: name.at,
        kind,
        inputs,
        settings: Node::new(name.at, NodeValue::Mapping(settings)),
        file: file.to_owned(),
        env: env.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Duration, parse_str};

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::Fixed(
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn parse(text: &str) -> Result<PipelineSpec, Vec<Diagnostic>> {
        parse_str(
            text,
            "pipeline.yaml",
            PathBuf::from("/etc/smartgrid"),
            env(&[("BROKER", "mqtt://b")]),
        )
    }

    /// (line, column, node, message, hint) of a diagnostic.
    type Problem = (usize, usize, Option<String>, String, Option<String>);

    fn problems(text: &str) -> Vec<Problem> {
        parse(text)
            .expect_err("the file is invalid")
            .into_iter()
            .map(|d| {
                assert_eq!(d.file, "pipeline.yaml");
                (d.at.line, d.at.column, d.node, d.message, d.hint)
            })
            .collect()
    }

    fn at(line: usize, column: usize) -> Location {
        Location { line, column }
    }

    const EXAMPLE: &str = "\
pipeline: home            # the pipeline's name
nodes:
  meters:
    type: mqtt
    url: ${BROKER:-embedded}
  readings:
    type: decode
    input: meters
    format: clemap
  means_10s:
    type: 'window_mean'
    inputs: [readings, meters]
    window: {size: 10s}
  sink:
    type: stdout
    inputs: []
";

    #[test]
    fn parses_a_small_pipeline() {
        let spec = parse(EXAMPLE).expect("valid pipeline");
        assert_eq!(spec.name, "home");
        assert_eq!(spec.file, "pipeline.yaml");
        assert_eq!(spec.base_dir, PathBuf::from("/etc/smartgrid"));
        let summary: Vec<_> = spec
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.as_str(),
                    n.at,
                    n.kind.as_str(),
                    n.kind.at,
                    n.inputs
                        .iter()
                        .map(|i| (i.as_str(), i.at))
                        .collect::<Vec<_>>(),
                    n.settings
                        .entries()
                        .iter()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("meters", at(3, 3), "mqtt", at(4, 11), vec![], vec!["url"]),
                (
                    "readings",
                    at(6, 3),
                    "decode",
                    at(7, 11),
                    vec![("meters", at(8, 12))],
                    vec!["format"]
                ),
                (
                    "means_10s",
                    at(10, 3),
                    "window_mean",
                    at(11, 11),
                    vec![("readings", at(12, 14)), ("meters", at(12, 24))],
                    vec!["window"]
                ),
                ("sink", at(14, 3), "stdout", at(15, 11), vec![], vec![]),
            ]
        );
        let meters = &spec.nodes[0];
        assert_eq!(meters.settings.at, at(3, 3));
        assert_eq!(
            meters.settings.get("url").and_then(Node::as_raw_str),
            Some("${BROKER:-embedded}")
        );
        assert!(
            !format!("{:?}", meters.settings).contains("mqtt://b"),
            "settings are kept as written"
        );

        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Mqtt {
            url: String,
        }
        let config: Mqtt = meters.settings().expect("valid settings");
        assert_eq!(config.url, "mqtt://b");

        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Window {
            size: Duration,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Mean {
            window: Window,
        }
        let mean: Mean = spec.nodes[2].settings().expect("valid settings");
        assert_eq!(mean.window.size.to_string(), "10s");
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Decode {
            fromat: String,
        }
        let errors = spec.nodes[1].settings::<Decode>().expect_err("wrong key");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "pipeline.yaml:9:5: node `readings`: unknown key `format`\n  hint: did you mean `fromat`? valid keys: fromat"
        );
    }

    #[test]
    fn name_defaults_to_the_file_stem() {
        let text = "nodes:\n  a:\n    type: x\n";
        let spec =
            parse_str(text, "conf/home.yaml", PathBuf::new(), Env::default()).expect("valid");
        assert_eq!(spec.name, "home");
        let spec = parse_str(text, "", PathBuf::new(), Env::default()).expect("valid");
        assert_eq!(spec.name, "pipeline");
        let spec = parse_str(
            "pipeline: ${NAME:-site}\nnodes: {}\n",
            "p.yaml",
            PathBuf::new(),
            Env::default(),
        )
        .expect("valid");
        assert_eq!(spec.name, "site");
        assert!(spec.nodes.is_empty());
    }

    #[test]
    fn all_structural_problems_are_reported_together() {
        let text = "\
pipline: home
nodes:
  meters:
    url: x
  bad.name:
    type: x
  readings:
    type: decode
    input: meters
    inputs: [meters]
  meters:
    type: mqtt
";
        let found = problems(text);
        let m = |s: &str| s.to_owned();
        assert_eq!(
            found,
            vec![
                (
                    1,
                    1,
                    None,
                    m("unknown top-level key `pipline`"),
                    Some(m("did you mean `pipeline`? valid keys: pipeline, nodes"))
                ),
                (
                    3,
                    3,
                    Some(m("meters")),
                    m("missing key `type`"),
                    Some(m("add `type: <kind>`"))
                ),
                (
                    5,
                    3,
                    Some(m("bad.name")),
                    m("invalid node name `bad.name`"),
                    Some(m(
                        "a node name is letters, digits, `_` and `-`, starting with a letter or `_`"
                    ))
                ),
                (
                    10,
                    5,
                    Some(m("readings")),
                    m("a node has `input` or `inputs`, not both (`input` is above)"),
                    Some(m("list every input under `inputs: [a, b]`"))
                ),
                (
                    11,
                    3,
                    None,
                    m("duplicate key `meters`"),
                    Some(m(
                        "`meters` is already defined at line 3, column 3; a key may appear once"
                    ))
                ),
            ]
        );
    }

    #[test]
    fn three_problems_give_three_diagnostics() {
        let text = "nodes:\n  a:\n    type: [x]\n  b:\n    type: y\n    input: [a]\n  c:\n    type: z\n    inputs: a\n";
        let found: Vec<_> = problems(text)
            .into_iter()
            .map(|(l, c, n, msg, _)| (l, c, n, msg))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    3,
                    11,
                    Some("a".to_owned()),
                    "`type` must be a string, not a list".to_owned()
                ),
                (
                    6,
                    12,
                    Some("b".to_owned()),
                    "`input` takes one node name".to_owned()
                ),
                (
                    9,
                    13,
                    Some("c".to_owned()),
                    "`inputs` must be a list of node names, found a string".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn top_level_shape_errors() {
        let found = problems("");
        assert_eq!(
            (found[0].0, found[0].1, found[0].3.as_str()),
            (
                1,
                1,
                "expected a mapping with `nodes:`, found an empty value"
            )
        );
        let found = problems("- a\n");
        assert_eq!(found[0].3, "expected a mapping with `nodes:`, found a list");
        let found = problems("pipeline: x\n");
        assert_eq!(found[0].3, "missing key `nodes`");
        let found = problems("nodes:\n");
        assert_eq!((found[0].0, found[0].1), (1, 1));
        assert_eq!(
            found[0].3,
            "`nodes` must map node names to nodes, found an empty value"
        );
        let found = problems("nodes:\n  a: mqtt\n  b:\n");
        assert_eq!(found[0].3, "a node must be a mapping, found a string");
        assert_eq!(
            (found[1].0, found[1].1, found[1].3.as_str()),
            (3, 3, "missing key `type`")
        );
        let found = problems("nodes:\n  a:\n    type: ${KIND}\n");
        assert_eq!(
            (found[0].0, found[0].1, found[0].3.as_str()),
            (3, 11, "environment variable `KIND` is not set")
        );
        let found = problems("nodes: {a: {type: x}}\n---\nnodes: {}\n");
        assert_eq!(
            (found[0].0, found[0].3.as_str()),
            (2, "a pipeline file holds a single YAML document")
        );
    }

    #[test]
    fn syntax_errors_are_one_diagnostic_at_the_parser_position() {
        let found = problems("nodes:\n  a:\n    type: x\n   b: [1, 2\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].3.starts_with("invalid YAML: "), "{found:?}");
        let found = problems("a: 1\n  b: 2\n");
        assert_eq!(
            found,
            vec![(
                2,
                4,
                None,
                "invalid YAML: mapping values are not allowed in this context".to_owned(),
                Some(
                    "check the indentation, quotes and brackets here and on the line above"
                        .to_owned()
                )
            )]
        );
        let found = problems("a:\n\tb: 2\n");
        assert_eq!((found[0].0, found[0].1), (2, 2));
    }

    #[test]
    fn tree_keeps_text_style_order_and_positions() {
        let node =
            Node::parse("b: 10\na: \"10\"\nc: !!str 10\nd: |\n  x\ne: ~\nf:\ng: [1, {h: 2}]\n")
                .expect("valid");
        let keys: Vec<_> = node
            .entries()
            .iter()
            .map(|(k, _)| (k.as_str(), k.at))
            .collect();
        assert_eq!(keys[..2], [("b", at(1, 1)), ("a", at(2, 1))]);
        let style = |key: &str| match &node.get(key).expect("present").value {
            NodeValue::Scalar { text, style } => Some((text.clone(), *style)),
            _ => None,
        };
        assert_eq!(style("b"), Some(("10".to_owned(), ScalarStyle::Plain)));
        assert_eq!(style("a"), Some(("10".to_owned(), ScalarStyle::Quoted)));
        assert_eq!(style("c"), Some(("10".to_owned(), ScalarStyle::Quoted)));
        assert_eq!(style("d"), Some(("x\n".to_owned(), ScalarStyle::Quoted)));
        assert!(node.get("e").is_some_and(Node::is_null));
        assert_eq!(
            node.get("f").map(|n| (n.is_null(), n.at)),
            Some((true, at(7, 1)))
        );
        let g = node.get("g").expect("present");
        assert_eq!(g.items()[1].get("h").map(|n| n.at), Some(at(8, 12)));
    }

    #[test]
    fn aliases_nesting_and_odd_keys() {
        let node = Node::parse("base: &b {x: 1}\ncopy: *b\n").expect("valid");
        assert_eq!(
            node.get("copy")
                .and_then(|c| c.get("x"))
                .and_then(Node::as_raw_str),
            Some("1")
        );
        let errors = Node::parse("? [a]\n: 1\nb: 2\nb: 3\n").expect_err("bad keys");
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].message, "a key must be a string, not a list");
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let errors = Node::parse(&deep).expect_err("too deep");
        assert!(errors[0].message.contains("nested more than"), "{errors:?}");
        let bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                    e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
        let errors = Node::parse(bomb).expect_err("too many aliases");
        assert_eq!(errors[0].message, "aliases expand to too many values");
    }

    #[test]
    fn odd_inputs_never_panic() {
        let samples = [
            "",
            "\n",
            "---",
            "...",
            "nodes",
            "nodes: [",
            "nodes: {a: }",
            "nodes: {a: {type: }}",
            ":",
            "? : :",
            "nodes:\n  a:\n    type: x\n    inputs: [~, '', [b]]\n",
            "nodes:\n  '':\n    type: x\n",
            "*x",
            "&a a",
            "nodes: !!map {a: !!str {type: x}}",
            "\u{feff}nodes: {}",
            "nodes:\n  a:\n    type: \"\\u00e9\"\n",
            "%YAML 1.2\n---\nnodes: {}\n",
            "nodes: {a: {type: x, <<: {b: 1}}}",
            "\"\\x",
        ];
        for text in samples {
            let _ = parse(text);
            let _ = Node::parse(text);
        }
        // Every prefix of a real file.
        for end in (0..EXAMPLE.len()).filter(|i| EXAMPLE.is_char_boundary(*i)) {
            let _ = parse(&EXAMPLE[..end]);
        }
    }
}
