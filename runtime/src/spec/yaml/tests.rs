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
    let spec = parse_str(text, "conf/home.yaml", PathBuf::new(), Env::default()).expect("valid");
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
                Some(m(
                    "did you mean `pipeline`? valid keys: pipeline, data_dir, state_dir, checkpoint_interval, connections, http, status_interval, nodes"
                ))
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
                "check the indentation, quotes and brackets here and on the line above".to_owned()
            )
        )]
    );
    let found = problems("a:\n\tb: 2\n");
    assert_eq!((found[0].0, found[0].1), (2, 2));
}

#[test]
fn tree_keeps_text_style_order_and_positions() {
    let node = Node::parse("b: 10\na: \"10\"\nc: !!str 10\nd: |\n  x\ne: ~\nf:\ng: [1, {h: 2}]\n")
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
