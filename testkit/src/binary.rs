use std::fs;
use std::path::{Path, PathBuf};

/// Where `name` is installed: the first match in `PATH`, then in the `sbin` directories
/// (Debian installs `mosquitto` in `/usr/sbin`, which a non-root `PATH` often lacks).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Where the program `name` a test needs is installed; panics if it is not.
///
/// A test that returned early when its server is missing would pass without checking
/// anything, on a developer machine and in a CI whose setup lost a package alike. So a
/// missing program fails the test, with a message naming it and the script that
/// installs every program the tests use.
pub fn require_binary(name: &str) -> PathBuf {
    find_binary(name).unwrap_or_else(|| panic!("{}", missing_message(name)))
}

/// The failure message for a missing program (also used when a server cannot be spawned
/// because its program is gone).
pub(crate) fn missing_message(name: &str) -> String {
    format!(
        "{name} is not installed (looked in PATH and /usr/local/sbin, /usr/sbin, /sbin), \
         and this test needs it: `bash scripts/test.sh` installs it"
    )
}

/// Whether this process runs as root (mosquitto must then be told to stay root).
pub(crate) fn running_as_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // The owner of /proc/self is the process's effective user.
        fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_fails_naming_it_and_the_install_script() {
        let name = "smartgrid-testkit-no-such-program";
        let outcome = std::panic::catch_unwind(|| require_binary(name));
        let message = *outcome
            .expect_err("a missing program fails the test")
            .downcast::<String>()
            .expect("a formatted panic message");
        assert!(message.contains(name), "{message}");
        assert!(message.contains("bash scripts/test.sh"), "{message}");
    }

    #[test]
    fn installed_binary_is_found() {
        let sh = require_binary("sh");
        assert!(sh.ends_with("sh") && is_executable(&sh), "{}", sh.display());
    }
}
