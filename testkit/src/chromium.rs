//! Headless Chromium for tests of a page a run serves: the DOM after the page's scripts
//! ran, and a screenshot. Loopback URLs only; a missing `chromium` fails the test
//! ([`crate::require_binary`]).

use std::path::Path;
use std::process::{Command, Output};

/// How long (virtual time) the page's scripts and timers run before the dump or
/// screenshot; network requests pause that clock, so every poll gets its answer.
pub const VIRTUAL_TIME_BUDGET_MS: u32 = 8000;

fn chromium(profile: &Path, url: &str, args: &[&str]) -> Output {
    assert!(
        url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
        "tests load loopback pages only: {url}"
    );
    let output = Command::new(crate::require_binary("chromium"))
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"))
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot start chromium: {e}"));
    assert!(
        output.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The page's DOM, serialized after its scripts ran for [`VIRTUAL_TIME_BUDGET_MS`].
pub fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("a chromium profile directory");
    let output = chromium(profile.path(), url, &["--dump-dom"]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A PNG screenshot of the page, `width` × `height`, written to `path`.
pub fn screenshot(url: &str, path: &Path, width: u32, height: u32) {
    let profile = tempfile::tempdir().expect("a chromium profile directory");
    chromium(
        profile.path(),
        url,
        &[
            &format!("--screenshot={}", path.display()),
            &format!("--window-size={width},{height}"),
            "--hide-scrollbars",
        ],
    );
}
