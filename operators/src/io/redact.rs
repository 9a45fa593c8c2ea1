//! URLs quoted in messages without the credentials someone wrote into them.

/// `url` as it may be shown: whatever stands between `scheme://` and the last `@` of
/// its authority replaced by `***`, and its query and fragment left out (a SAS token
/// or a `?token=` travels there). It works on URLs that do not parse, too: a password
/// holding `/`, `#` or `?` breaks parsing, and the message quoting that URL must not
/// show it. Text without `scheme://` is not a URL and is shown as it is.
pub fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let (scheme, rest) = url.split_at(start);
    // The authority ends at the first whitespace; a password may hold `/`, `?` or `#`,
    // so the last `@` before that ends the user information.
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (user, rest) = match rest[..end].rfind('@') {
        Some(at) => ("***", &rest[at..]),
        None => ("", rest),
    };
    let shown = rest.find(['?', '#']).unwrap_or(rest.len());
    format!("{scheme}{user}{}", &rest[..shown])
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn credentials_are_hidden_even_when_the_url_does_not_parse() {
        for (url, shown) in [
            ("mqtt://u:hunter2@h:1883", "mqtt://***@h:1883"),
            ("http://u:pa/ss#w?rd@h:8086/x", "http://***@h:8086/x"),
            ("mqtts://h:8883", "mqtts://h:8883"),
            ("embedded", "embedded"),
            ("http://h/a@b", "http://***@b"),
            (
                "https://acct.blob.core.windows.net/models/v3/model.txt?sv=2024&sig=c2VjcmV0",
                "https://acct.blob.core.windows.net/models/v3/model.txt",
            ),
            (
                "http://127.0.0.1:9/model.txt#sig=x",
                "http://127.0.0.1:9/model.txt",
            ),
            ("http://u:p?ss@h/x?token=t", "http://***@h/x"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }
}
