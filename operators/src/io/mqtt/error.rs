//! [`MqttError`]: what the MQTT connection layer reports. Cloneable, so the last
//! connection error can be kept in a client's stats while it goes on retrying, and
//! free of secrets: passwords and tokens never appear in it.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{ConnectReturnCode, ConnectionError};

/// What went wrong talking MQTT. Cloneable, so the last connection error can be kept
/// in a client's stats while the client goes on retrying.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MqttError {
    /// The broker URL cannot be used.
    #[error("invalid MQTT broker URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },

    /// A setting is out of range or contradicts another.
    #[error("invalid MQTT setting `{key}`: {message}")]
    InvalidConfig {
        /// The key at fault.
        key: &'static str,
        /// What is wrong, with a hint.
        message: String,
    },

    /// A TLS file (CA, client certificate or key) cannot be read.
    #[error("cannot read {key} `{}`: {source}", path.display())]
    TlsFile {
        /// The setting that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<io::Error>,
    },

    /// A TLS file was read but holds nothing usable.
    #[error("{key} `{}`: {message}", path.display())]
    TlsPem {
        /// The setting that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with its contents.
        message: String,
    },

    /// Building the TLS configuration or the TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(String),

    /// The broker answered the CONNECT with a refusal.
    #[error("the broker refused the connection: {reason} (CONNACK return code {code})")]
    Refused {
        /// The CONNACK return code (1–5).
        code: u8,
        /// The code's meaning.
        reason: &'static str,
    },

    /// The broker could not be reached, or the connection broke.
    #[error("MQTT connection to {broker} failed: {message}")]
    Connection {
        /// `host:port`.
        broker: String,
        /// What happened.
        message: String,
    },

    /// The broker refused a subscription (e.g. an ACL forbids the topic filter).
    #[error("the broker refused the subscription to `{filter}`")]
    SubscriptionRefused {
        /// The topic filter.
        filter: String,
    },

    /// A topic cannot be published to (empty, or with `+`/`#` wildcards).
    #[error("cannot publish to topic `{0}`: a topic name must be non-empty and without `+` or `#`")]
    InvalidTopic(String),

    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {waiting_for}")]
    Timeout {
        /// How long we waited.
        after: Duration,
        /// What for.
        waiting_for: String,
    },

    /// The client's background thread has stopped; nothing more can be sent.
    #[error("the MQTT client has stopped")]
    Closed,
    /// A message too large to send (the packet limit).
    #[error("a message of {size} bytes is over the {limit}-byte packet limit")]
    TooLarge {
        /// The packet's size.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// The in-process broker could not be started.
    #[error("embedded MQTT broker: {0}")]
    Embedded(String),

    /// A thread or runtime could not be created.
    #[error("cannot start the MQTT client: {0}")]
    Spawn(#[source] Arc<io::Error>),
}

impl MqttError {
    /// Classifies a rumqttc connection error for the broker at `broker`.
    pub(crate) fn from_connection(broker: &str, error: &ConnectionError) -> MqttError {
        match error {
            ConnectionError::ConnectionRefused(code) => {
                let (code, reason) = refusal(*code);
                MqttError::Refused { code, reason }
            }
            ConnectionError::Tls(e) => MqttError::Tls(e.to_string()),
            ConnectionError::NetworkTimeout => MqttError::Connection {
                broker: broker.to_string(),
                message: "timed out connecting".into(),
            },
            other => MqttError::Connection {
                broker: broker.to_string(),
                message: other.to_string(),
            },
        }
    }
}

fn refusal(code: ConnectReturnCode) -> (u8, &'static str) {
    match code {
        ConnectReturnCode::Success => (0, "accepted"),
        ConnectReturnCode::RefusedProtocolVersion => (1, "the broker does not speak MQTT 3.1.1"),
        ConnectReturnCode::BadClientId => (2, "the client id was rejected"),
        ConnectReturnCode::ServiceUnavailable => (3, "the MQTT service is unavailable"),
        ConnectReturnCode::BadUserNamePassword => (4, "bad user name or password"),
        ConnectReturnCode::NotAuthorized => (5, "not authorized"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_the_reason() {
        let e = MqttError::from_connection(
            "127.0.0.1:1883",
            &ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword),
        );
        assert_eq!(
            e.to_string(),
            "the broker refused the connection: bad user name or password (CONNACK return code 4)"
        );
    }
}
