//! URLs quoted in messages without the credentials someone wrote into them.

/// `url` with whatever stands between `scheme://` and the last `@` of its authority
/// replaced by `***`. It works on URLs that do not parse, too: a password holding `/`,
/// `#` or `?` breaks parsing, and the message quoting that URL must not show it. For
/// configured URLs: nothing else is cut, so a `${VAR}` value in them stays whole for
/// the configuration's own masking of what came from the environment.
pub fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    // The authority ends at the first whitespace; a password may hold `/`, `?` or `#`,
    // so the last `@` before that ends the user information.
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &rest[at..]),
        None => url.to_string(),
    }
}

/// [`redact_url`], and without its query and fragment: for URLs handed over at run time
/// (a model announcement's), where a SAS token or a `?token=` travels in the query.
pub fn shown_url(url: &str) -> String {
    let mut shown = redact_url(url);
    let authority = shown.find("://").map_or(0, |i| i + 3);
    if let Some(cut) = shown[authority..].find(['?', '#']) {
        shown.truncate(authority + cut);
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::{redact_url, shown_url};

    #[test]
    fn credentials_are_hidden_even_when_the_url_does_not_parse() {
        for (url, shown) in [
            ("mqtt://u:hunter2@h:1883", "mqtt://***@h:1883"),
            ("http://u:pa/ss#w?rd@h:8086/x", "http://***@h:8086/x"),
            ("mqtts://h:8883", "mqtts://h:8883"),
            ("embedded", "embedded"),
            ("http://h/a@b", "http://***@b"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }

    #[test]
    fn a_shown_url_leaves_out_its_query_and_fragment_too() {
        for (url, shown) in [
            (
                "https://acct.blob.core.windows.net/models/v3/model.txt?sv=2024&sig=c2VjcmV0",
                "https://acct.blob.core.windows.net/models/v3/model.txt",
            ),
            (
                "http://127.0.0.1:9/model.txt#sig=x",
                "http://127.0.0.1:9/model.txt",
            ),
            ("http://u:p?ss@h/x?token=t", "http://***@h/x"),
            ("http://h:8080/v3/model.txt", "http://h:8080/v3/model.txt"),
        ] {
            assert_eq!(shown_url(url), shown);
        }
    }
}
