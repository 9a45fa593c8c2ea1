//! `${VAR}` substitution in scalar values.
//!
//! The syntax, applied to every scalar value of a pipeline file:
//!
//! | written            | becomes                                              |
//! |--------------------|------------------------------------------------------|
//! | `${VAR}`           | the value of `VAR`; an error if `VAR` is not set     |
//! | `${VAR:-default}`  | the value of `VAR`, or `default` if unset or empty   |
//! | `${VAR:-}`         | the value of `VAR`, or the empty string              |
//! | `$$`               | a single `$`                                         |
//! | `$` (anything else)| itself                                               |
//!
//! A default is taken literally up to the first `}` (defaults do not nest). A variable
//! name is `[A-Za-z_][A-Za-z0-9_]*`.

use std::borrow::Cow;

use super::Env;

/// The result of substituting one scalar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Substituted<'a> {
    /// The text with every `${…}` replaced.
    pub text: Cow<'a, str>,
    /// The values that came from the environment (not defaults), each with the
    /// reference it replaced (`${INFLUX_TOKEN}`), so that messages can quote what the
    /// file says instead.
    pub secrets: Vec<(String, String)>,
}

impl Substituted<'_> {
    /// Whether any `${…}` or `$$` was replaced.
    pub fn changed(&self) -> bool {
        matches!(self.text, Cow::Owned(_))
    }
}

/// Why a scalar could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvError {
    /// `${VAR}` without a default, and `VAR` is not set.
    Unset(String),
    /// A `${` without its `}`.
    Unterminated,
    /// `${…}` whose name is not a valid variable name.
    BadName(String),
}

impl EnvError {
    /// The message and hint for a diagnostic; `raw` is the scalar as written.
    pub fn describe(&self, raw: &str) -> (String, String) {
        match self {
            EnvError::Unset(name) => (
                format!("environment variable `{name}` is not set"),
                format!("export {name}=… or write ${{{name}:-default}}"),
            ),
            EnvError::Unterminated => (
                format!("unterminated ${{ in `{raw}`"),
                "close it with `}`, or write `$$` for a literal `$`".to_owned(),
            ),
            EnvError::BadName(name) => (
                format!("`{name}` is not a valid environment variable name (in `{raw}`)"),
                "names are letters, digits and `_`, not starting with a digit; write `$$` for a literal `$`"
                    .to_owned(),
            ),
        }
    }
}

/// Replace every `${VAR}` / `${VAR:-default}` in `text`, and `$$` by `$`.
///
/// Borrows `text` when there is nothing to replace.
pub(crate) fn substitute<'a>(text: &'a str, env: &Env) -> Result<Substituted<'a>, EnvError> {
    if !text.contains('$') {
        return Ok(Substituted {
            text: Cow::Borrowed(text),
            secrets: Vec::new(),
        });
    }
    let mut out = String::with_capacity(text.len());
    let mut secrets = Vec::new();
    let mut changed = false;
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            changed = true;
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(close) = body.find('}') else {
                return Err(EnvError::Unterminated);
            };
            let inner = &body[..close];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_var_name(name) {
                return Err(EnvError::BadName(name.to_owned()));
            }
            match (env.get(name), default) {
                (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
                (Some(value), _) => {
                    out.push_str(&value);
                    if !value.is_empty() {
                        secrets.push((value, format!("${{{name}}}")));
                    }
                }
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(EnvError::Unset(name.to_owned())),
            }
            changed = true;
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Substituted {
        text: if changed {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(text)
        },
        secrets,
    })
}

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::Fixed(
            [
                ("HOST", "broker"),
                ("PORT", "1883"),
                ("EMPTY", ""),
                ("PASSWORD", "hunter2"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        )
    }

    fn sub(text: &str) -> Result<String, EnvError> {
        substitute(text, &env()).map(|s| s.text.into_owned())
    }

    #[test]
    fn substitution_table() {
        let cases = [
            ("plain", "plain"),
            ("${HOST}", "broker"),
            ("mqtt://${HOST}:${PORT}", "mqtt://broker:1883"),
            ("mqtt://${MISSING:-localhost}:1883", "mqtt://localhost:1883"),
            ("${HOST:-localhost}", "broker"),
            ("${EMPTY:-fallback}", "fallback"),
            ("${EMPTY}", ""),
            ("${MISSING:-}", ""),
            ("a${MISSING:-}b", "ab"),
            ("$$", "$"),
            ("$${HOST}", "${HOST}"),
            ("cost: 5$", "cost: 5$"),
            ("$HOST", "$HOST"),
            ("${MISSING:-a:-b}", "a:-b"),
            ("${MISSING:-{x}", "{x"),
            ("é${HOST}ü", "ébrokerü"),
        ];
        for (text, expected) in cases {
            assert_eq!(sub(text).as_deref(), Ok(expected), "{text}");
        }
    }

    #[test]
    fn substitution_errors() {
        assert_eq!(sub("${MISSING}"), Err(EnvError::Unset("MISSING".into())));
        assert_eq!(sub("x ${HOST"), Err(EnvError::Unterminated));
        assert_eq!(sub("${}"), Err(EnvError::BadName(String::new())));
        assert_eq!(sub("${1X}"), Err(EnvError::BadName("1X".into())));
        assert_eq!(sub("${A B:-x}"), Err(EnvError::BadName("A B".into())));
        let (message, hint) = EnvError::Unset("MISSING".into()).describe("${MISSING}");
        assert_eq!(message, "environment variable `MISSING` is not set");
        assert_eq!(hint, "export MISSING=… or write ${MISSING:-default}");
        let (message, _) = EnvError::Unterminated.describe("x ${HOST");
        assert_eq!(message, "unterminated ${ in `x ${HOST`");
    }

    #[test]
    fn borrows_when_unchanged_and_records_secrets() {
        let s = substitute("no dollars", &env()).expect("no variables");
        assert!(!s.changed());
        let s = substitute("5$ each", &env()).expect("no variables");
        assert!(!s.changed());
        let s = substitute("user:${PASSWORD}@${MISSING:-host}", &env()).expect("all resolvable");
        assert!(s.changed());
        assert_eq!(
            s.secrets,
            vec![("hunter2".to_owned(), "${PASSWORD}".to_owned())]
        );
    }
}
