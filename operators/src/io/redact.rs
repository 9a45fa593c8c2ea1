//! URLs quoted in messages without the credentials someone wrote into them.

/// `url` with whatever stands between `scheme://` and the last `@` of its authority
/// replaced by `***`. It works on URLs that do not parse, too: a password holding `/`,
/// `#` or `?` breaks parsing, and the message quoting that URL must not show it.
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
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }
}
