use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::*;
use crate::diagnostic::Location;
use crate::spec::Duration;
use crate::spec::Spanned;

fn env(vars: &[(&str, &str)]) -> Env {
    Env::Fixed(
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

fn read<T: DeserializeOwned>(yaml: &str, vars: &[(&str, &str)]) -> Result<T, Vec<Diagnostic>> {
    let node = Node::parse(yaml).expect("test YAML is valid");
    from_node(&node, &env(vars))
}

fn errors<T: DeserializeOwned + fmt::Debug>(
    yaml: &str,
    vars: &[(&str, &str)],
) -> Vec<(usize, usize, String, Option<String>)> {
    read::<T>(yaml, vars)
        .expect_err("the config is invalid")
        .into_iter()
        .map(|d| (d.at.line, d.at.column, d.message, d.hint))
        .collect()
}

fn at(line: usize, column: usize) -> Location {
    Location { line, column }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Window {
    size: Duration,
    #[serde(default)]
    lateness: Option<Duration>,
    #[serde(default)]
    fields: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Mqtt {
    url: String,
    port: u16,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    window: Option<Window>,
}

#[test]
fn unknown_key_has_did_you_mean_and_valid_keys() {
    let found = errors::<Window>("size: 10s\nsise: 20s\n", &[]);
    assert_eq!(
        found,
        vec![(
            2,
            1,
            "unknown key `sise`".to_owned(),
            Some("did you mean `size`? valid keys: size, lateness, fields".to_owned())
        )]
    );
}

#[test]
fn every_unknown_key_of_a_mapping_is_reported() {
    let found = errors::<Window>("sise: 10s\nfoo: 1\nfields: []\nlatenes: 1s\n", &[]);
    let found: Vec<_> = found.into_iter().map(|(l, c, m, _)| (l, c, m)).collect();
    assert_eq!(
        found,
        vec![
            (1, 1, "unknown key `sise`".to_owned()),
            (2, 1, "unknown key `foo`".to_owned()),
            (4, 1, "unknown key `latenes`".to_owned()),
        ]
    );
    let hints = errors::<Window>("foo: 1\n", &[]);
    assert_eq!(
        hints[0].3.as_deref(),
        Some("valid keys: size, lateness, fields")
    );
}

#[test]
fn missing_key_is_at_the_mapping() {
    let found = errors::<Mqtt>("url: x\nport: 1\nwindow:\n  lateness: 1s\n", &[]);
    assert_eq!(found, vec![(4, 3, "missing key `size`".to_owned(), None)]);
    // An empty value reads as a mapping with every key missing (and as `None` for an
    // `Option`).
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        window: Window,
    }
    let found = errors::<Outer>("window:\n", &[]);
    assert_eq!(found, vec![(1, 1, "missing key `size`".to_owned(), None)]);
    let config: Mqtt = read("url: x\nport: 1\nwindow:\n", &[]).expect("valid");
    assert_eq!(config.window, None);
}

#[test]
fn type_errors_point_at_the_value() {
    let found = errors::<Mqtt>("url: x\nport: abc\n", &[]);
    assert_eq!(
        found,
        vec![(
            2,
            7,
            "expected u16, found a string `abc`".to_owned(),
            Some("write a whole number, e.g. 5".to_owned())
        )]
    );
    let found = errors::<Mqtt>("url: x\nport: 70000\n", &[]);
    assert_eq!(
        found,
        vec![(2, 7, "invalid value `70000`: expected u16".to_owned(), None)]
    );
    let found = errors::<Mqtt>(
        "url: x\nport: 1\nwindow: {size: 1s, fields: [a, [b]]}\n",
        &[],
    );
    assert_eq!(
        found,
        vec![(
            3,
            32,
            "expected a string, found a list".to_owned(),
            Some("write text; quote it if it looks like a number".to_owned())
        )]
    );
    let found = errors::<Mqtt>("url: [x]\nport: 1\n", &[]);
    assert_eq!(
        found,
        vec![(
            1,
            6,
            "expected a string, found a list".to_owned(),
            Some("write text; quote it if it looks like a number".to_owned())
        )]
    );
    let found = errors::<Mqtt>("- 1\n", &[]);
    assert_eq!(
        found,
        vec![(
            1,
            1,
            "expected a mapping, found a list".to_owned(),
            Some("write `key: value` pairs, indented under this key".to_owned())
        )]
    );
}

#[test]
fn custom_errors_of_nested_values_get_their_position() {
    let found = errors::<Mqtt>("url: x\nport: 1\nwindow:\n  size: 10\n", &[]);
    assert_eq!(
        found,
        vec![(
            4,
            9,
            "invalid value `10`: a duration needs a unit".to_owned(),
            Some("write a unit: 10s, 1m, 500ms".to_owned())
        )]
    );
    let found = errors::<Window>("size: 5 parsecs\n", &[]);
    assert_eq!((found[0].0, found[0].1), (1, 7));
    assert!(
        found[0]
            .2
            .starts_with("invalid value `5 parsecs`: unknown duration unit"),
        "{found:?}"
    );
}

#[test]
fn substitution_in_typed_values() {
    let config: Mqtt = read(
        "url: mqtt://${HOST:-localhost}:1883/$$x\nport: ${PORT:-1883}\npassword: ${PASSWORD:-}\n",
        &[],
    )
    .expect("valid");
    assert_eq!(config.url, "mqtt://localhost:1883/$x");
    assert_eq!(config.port, 1883);
    assert_eq!(config.password, None);
    let config: Mqtt = read(
        "url: 'mqtt://${HOST}'\nport: \"${PORT}\"\npassword: \"${PASSWORD:-}\"\n",
        &[("HOST", "broker"), ("PORT", "8883")],
    )
    .expect("valid");
    assert_eq!(config.url, "mqtt://broker");
    assert_eq!(config.port, 8883);
    assert_eq!(config.password.as_deref(), Some(""));
}

#[test]
fn unset_variable_is_reported_at_its_value() {
    let found = errors::<Mqtt>("url: x\nport: 1\npassword: \"pre-${SECRET}\"\n", &[]);
    assert_eq!(
        found,
        vec![(
            3,
            11,
            "environment variable `SECRET` is not set".to_owned(),
            Some("export SECRET=… or write ${SECRET:-default}".to_owned())
        )]
    );
    let found = errors::<Mqtt>("url: ${HOST\nport: 1\n", &[]);
    assert_eq!(found[0].2, "unterminated ${ in `${HOST`");
    // An ignored value is not substituted.
    #[derive(Debug, Deserialize)]
    struct Lenient {
        #[allow(dead_code)]
        a: u8,
    }
    read::<Lenient>("a: 1\nb: ${UNSET}\n", &[]).expect("unknown keys are ignored");
}

#[test]
fn substituted_values_never_appear_in_messages() {
    let vars = [
        ("PORT", "hunter2"),
        ("FMT", "topsecret"),
        ("URL", "not a number"),
    ];
    let found = errors::<Mqtt>("url: x\nport: ${PORT}\n", &vars);
    assert_eq!(
        found[0].2,
        "expected u16, found a string `${PORT}` (after substitution)"
    );
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Format {
        Clemap,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Decode {
        format: Format,
        rate: std::net::IpAddr,
        #[serde(default)]
        b: Option<bool>,
    }
    let found = errors::<Decode>("format: ${FMT}\nrate: 1.1.1.1\n", &vars);
    assert_eq!(found[0].2, "unknown value `${FMT}` (after substitution)");
    assert_eq!(found[0].3.as_deref(), Some("valid values: clemap"));
    let found = errors::<Decode>("format: clemap\nrate: ${PORT}\n", &vars);
    assert!(!found[0].2.contains("hunter2"), "{found:?}");
    let found = errors::<Decode>("format: clemap\nrate: 1.1.1.1\nb: ${URL}\n", &vars);
    assert_eq!(
        found[0].2,
        "expected a boolean, found a string `${URL}` (after substitution)"
    );
    // A Deserialize impl quoting its input quotes what the file says.
    #[derive(Debug)]
    struct Quoting;
    impl<'de> Deserialize<'de> for Quoting {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = String::deserialize(d)?;
            Err(de::Error::custom(format!("cannot use {s}")))
        }
    }
    let found = errors::<Quoting>("user:${PORT}@host", &vars);
    assert_eq!(
        found[0].2,
        "invalid value `user:${PORT}@host` (after substitution): cannot use user:${PORT}@host"
    );
    let found = errors::<Vec<Quoting>>("[\"${FMT}\"]", &vars);
    assert!(!found[0].2.contains("topsecret"), "{found:?}");
}

#[test]
fn spanned_values_know_their_position() {
    #[derive(Debug, Deserialize)]
    struct Config {
        name: Spanned<String>,
        inputs: Vec<Spanned<String>>,
        port: Spanned<u16>,
        map: BTreeMap<String, Spanned<Option<u8>>>,
        keys: HashMap<Spanned<String>, u8>,
    }
    let config: Config = read(
        "name: a\ninputs:\n  - x\n  - ${Y:-y}\nport: '1883'\nmap: {k: ~, j: 3}\nkeys:\n  kk: 1\n",
        &[],
    )
    .expect("valid");
    assert_eq!(config.name.at, at(1, 7));
    assert_eq!(
        config
            .inputs
            .iter()
            .map(|s| (s.value.as_str(), s.at))
            .collect::<Vec<_>>(),
        vec![("x", at(3, 5)), ("y", at(4, 5))]
    );
    assert_eq!((*config.port, config.port.at), (1883, at(5, 7)));
    assert_eq!(config.map["k"].value, None);
    assert_eq!(
        (config.map["j"].value, config.map["j"].at),
        (Some(3), at(6, 16))
    );
    let (key, _) = config.keys.iter().next().expect("one key");
    assert_eq!((key.as_str(), key.at), ("kk", at(8, 3)));
}

#[test]
fn deserialize_any_follows_the_core_schema() {
    let value: serde_json::Value = read(
            "a: 10\nb: \"10\"\nc: -3\nd: 1.5\ne: true\nf: ~\ng:\nh: 0x1F\ni: .inf\nj: text\nk: [1, '2']\nl: 1e3\nm: ${N:-7}\n",
            &[],
        )
        .expect("valid");
    assert_eq!(
        value,
        serde_json::json!({
            "a": 10, "b": "10", "c": -3, "d": 1.5, "e": true, "f": null, "g": null, "h": 31,
            "i": null, "j": "text", "k": [1, "2"], "l": 1000.0, "m": 7
        })
    );
    let big: u128 = read("99999999999999999999999", &[]).expect("valid");
    assert_eq!(big, 99_999_999_999_999_999_999_999);
    let small: i128 = read("-99999999999999999999999", &[]).expect("valid");
    assert_eq!(small, -99_999_999_999_999_999_999_999);
}

#[test]
fn enums_from_strings_and_single_key_mappings() {
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    enum Sink {
        Stdout,
        File(String),
        Mqtt { topic: String, qos: u8 },
        Pair(u8, u8),
    }
    let sinks: Vec<Sink> = read(
        "- stdout\n- file: out.csv\n- mqtt: {topic: t, qos: 1}\n- pair: [1, 2]\n- stdout:\n",
        &[],
    )
    .expect("valid");
    assert_eq!(
        sinks,
        vec![
            Sink::Stdout,
            Sink::File("out.csv".into()),
            Sink::Mqtt {
                topic: "t".into(),
                qos: 1
            },
            Sink::Pair(1, 2),
            Sink::Stdout
        ]
    );
    let found = errors::<Vec<Sink>>("- stdot\n", &[]);
    assert_eq!(
        found,
        vec![(
            1,
            3,
            "unknown value `stdot`".to_owned(),
            Some("did you mean `stdout`? valid values: stdout, file, mqtt, pair".to_owned())
        )]
    );
    let found = errors::<Vec<Sink>>("- mqtt: {topic: t, qso: 1}\n", &[]);
    assert_eq!(
        (found[0].0, found[0].1, found[0].2.as_str()),
        (1, 20, "unknown key `qso`")
    );
    let found = errors::<Vec<Sink>>("- fil: x\n", &[]);
    assert_eq!(
        (found[0].0, found[0].1, found[0].2.as_str()),
        (1, 3, "unknown value `fil`")
    );
    let found = errors::<Vec<Sink>>("- file\n", &[]);
    assert_eq!(
        found[0].2,
        "invalid value `file`: this value needs settings"
    );
    let found = errors::<Vec<Sink>>("- {file: a, stdout: }\n", &[]);
    assert_eq!(
        found[0].2,
        "expected a single key naming the variant, found 2 keys"
    );
    let found = errors::<Vec<Sink>>("- stdout: 1\n", &[]);
    assert_eq!(
        (found[0].0, found[0].1, found[0].2.as_str()),
        (1, 11, "invalid value `1`: this value takes no settings")
    );
    let found = errors::<Vec<Sink>>("- [1]\n", &[]);
    assert_eq!(
        found[0].2,
        "expected a string or a single-key mapping, found a list"
    );
}

#[test]
fn maps_options_newtypes_and_tuples() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Meters(u32);
    #[derive(Debug, Deserialize, PartialEq)]
    struct Config {
        ids: HashMap<u16, String>,
        names: BTreeMap<String, f64>,
        limit: Meters,
        pair: (u8, String),
        #[serde(default)]
        absent: Option<u8>,
        null: Option<u8>,
        unit: (),
        flag: bool,
        ch: char,
    }
    let config: Config = read(
            "ids: {1: a, 0x10: b}\nnames: {x: 1, y: .5}\nlimit: 30\npair: [1, \"2\"]\nnull: null\nunit: ~\nflag: 'true'\nch: c\n",
            &[],
        )
        .expect("valid");
    assert_eq!(config.ids[&16], "b");
    assert_eq!(config.names["y"], 0.5);
    assert_eq!(config.limit, Meters(30));
    assert_eq!(config.pair, (1, "2".to_owned()));
    assert_eq!((config.absent, config.null), (None, None));
    assert!(config.flag);
    assert_eq!(config.ch, 'c');
    let found = errors::<(u8, u8)>("[1, 2, 3]", &[]);
    assert_eq!(found[0].2, "expected 2 items, found 3 items");
    let found = errors::<(u8, u8)>("[1]", &[]);
    assert_eq!(found[0].2, "expected a tuple of size 2, found 1 item");
    let found = errors::<HashMap<u8, u8>>("300: 1", &[]);
    assert_eq!(
        (found[0].0, found[0].1, found[0].2.as_str()),
        (1, 1, "invalid value `300`: expected u8")
    );
}

#[test]
fn untagged_and_flatten_do_not_crash() {
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(untagged)]
    enum Either {
        Number(u16),
        Text(String),
        List(Vec<u8>),
    }
    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        port: u16,
        at: Spanned<String>,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    struct Outer {
        name: String,
        #[serde(flatten)]
        inner: Inner,
        #[serde(flatten)]
        rest: BTreeMap<String, serde_json::Value>,
    }
    let v: Vec<Either> = read("[1, x, [2], '3']", &[]).expect("valid");
    assert_eq!(
        v,
        vec![
            Either::Number(1),
            Either::Text("x".into()),
            Either::List(vec![2]),
            Either::Text("3".into())
        ]
    );
    let o: Outer = read("name: n\nport: ${P:-5}\nat: here\nextra: 1\n", &[]).expect("valid");
    assert_eq!(o.inner.port, 5);
    assert_eq!(o.inner.at.value, "here");
    assert_eq!(o.rest["extra"], serde_json::json!(1));
    let found = errors::<Vec<Either>>("- {a: 1}\n", &[]);
    assert_eq!((found[0].0, found[0].1), (1, 3));
    let found = errors::<Outer>("name: n\nport: x\nat: y\n", &[]);
    assert_eq!((found[0].0, found[0].1), (1, 1));
}

#[test]
fn error_with_hint_through_other_deserializers() {
    let e: serde_json::Error = error_with_hint("bad", "do this");
    assert_eq!(e.to_string(), "bad\nhint: do this");
}
