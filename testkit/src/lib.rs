//! Test harness: starts real servers on loopback on free ports and stops them on drop.
//!
//! Everything here is for tests: failures panic with a message that says what went wrong
//! (and, for a server, the tail of its log), instead of returning errors.
//!
//! * [`free_port`]: a TCP port on 127.0.0.1 that was free a moment ago.
//! * [`require_binary`]: the rule for tests that need an external program: a missing
//!   one fails the test, naming the program and `bash scripts/test.sh`, which installs
//!   it. A test never returns early as a pass for want of a server.
//! * [`Server`]: the shared lifecycle of an external server process: spawn it with its
//!   output in a temporary directory, wait until its port accepts connections, show the
//!   tail of its logs on failure, stop/restart it, and kill it on drop. Starters for
//!   particular servers ([`Mosquitto`], [`Influxd`], [`VictoriaMetrics`], [`Prometheus`]) are thin
//!   wrappers that write a config file and describe the command.
//! * [`http`]: a tiny HTTP/1.1 client for querying those servers in assertions.
//! * [`chromium`]: headless Chromium's DOM dump and screenshot of a loopback page.
//!
//! ```no_run
//! testkit::require_binary("mosquitto"); // fails the test if mosquitto is missing
//! let broker = testkit::Mosquitto::start();
//! println!("connect to {}", broker.url()); // mqtt://127.0.0.1:PORT
//! ```

mod azurite;
mod binary;
pub mod chromium;
mod http;
mod port;
mod server;
mod servers;

pub use azurite::{AZURITE_ACCOUNT, AZURITE_KEY, Azurite, azurite_binary};
pub use binary::{find_binary, require_binary};
pub use http::{http, try_http, urlencode};
pub use port::free_port;
pub use server::{READY_TIMEOUT, Server, ServerCommand};
pub use servers::{Influxd, Mosquitto, Prometheus, VictoriaMetrics};
