//! What the hub sends a device: cloud-to-device messages, desired-property patches of
//! the twin, and answers to twin requests; parsed from their MQTT topics.

use bytes::Bytes;
use percent_encoding::percent_decode_str;

/// A cloud-to-device message.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudMessage {
    /// The full topic it came on.
    pub topic: String,
    /// Its properties (system ones like `$.mid` and the application's), decoded.
    pub properties: Vec<(String, String)>,
    /// Its body.
    pub payload: Bytes,
}

/// A patch of the twin's desired properties.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredPatch {
    /// The desired properties' version after the patch (`$version`).
    pub version: Option<u64>,
    /// The patch (a JSON object).
    pub patch: serde_json::Value,
}

/// The hub's answer to a twin request ([`DeviceClient::get_twin`](crate::iothub::DeviceClient::get_twin),
/// [`DeviceClient::report_properties`](crate::iothub::DeviceClient::report_properties)).
#[derive(Clone, Debug, PartialEq)]
pub struct TwinResponse {
    /// The request id the call returned.
    pub rid: String,
    /// HTTP-like status: 200 (GET), 204 (reported patch accepted), 4xx/5xx errors.
    pub status: u16,
    /// The reported properties' new version (PATCH responses).
    pub version: Option<u64>,
    /// The body: the full twin for a GET; empty for a PATCH.
    pub body: Option<serde_json::Value>,
}

/// Something the hub sent to the device.
#[derive(Clone, Debug, PartialEq)]
pub enum CloudEvent {
    /// A cloud-to-device message.
    Message(CloudMessage),
    /// A desired-properties patch.
    Desired(DesiredPatch),
    /// An answer to a twin request.
    TwinResponse(TwinResponse),
}

/// The event a message on `topic` carries, if it is on one of the device's topics.
/// `devicebound` is `devices/{device}/messages/devicebound/`.
pub(crate) fn parse_incoming(topic: &str, payload: Bytes, devicebound: &str) -> Option<CloudEvent> {
    let event = if let Some(bag) = topic.strip_prefix(devicebound) {
        CloudEvent::Message(CloudMessage {
            topic: topic.to_string(),
            properties: parse_bag(bag),
            payload,
        })
    } else if let Some(rest) = topic.strip_prefix("$iothub/twin/PATCH/properties/desired/") {
        let query = parse_bag(rest.trim_start_matches('?'));
        match serde_json::from_slice(&payload) {
            Ok(patch) => CloudEvent::Desired(DesiredPatch {
                version: find(&query, "$version").and_then(|v| v.parse().ok()),
                patch,
            }),
            Err(e) => {
                tracing::warn!("a desired-properties patch is not JSON: {e}");
                return None;
            }
        }
    } else if let Some(rest) = topic.strip_prefix("$iothub/twin/res/") {
        let (status, query) = rest.split_once('/').unwrap_or((rest, ""));
        let query = parse_bag(query.trim_start_matches('?'));
        let body = if payload.is_empty() {
            None
        } else {
            serde_json::from_slice(&payload).ok()
        };
        CloudEvent::TwinResponse(TwinResponse {
            rid: find(&query, "$rid").unwrap_or_default().to_string(),
            status: status.parse().unwrap_or(0),
            version: find(&query, "$version").and_then(|v| v.parse().ok()),
            body,
        })
    } else {
        tracing::debug!(topic, "ignoring a message on an unexpected topic");
        return None;
    };
    Some(event)
}

/// `a=b&c=d` with percent-decoding.
fn parse_bag(bag: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    bag.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn find<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_bags() {
        assert_eq!(
            parse_bag(
                "%24.mid=abc&%24.to=%2Fdevices%2Fd%2Fmessages%2Fdevicebound&kind=model+update"
            ),
            vec![
                ("$.mid".to_string(), "abc".to_string()),
                (
                    "$.to".to_string(),
                    "/devices/d/messages/devicebound".to_string()
                ),
                ("kind".to_string(), "model update".to_string()),
            ]
        );
    }

    #[test]
    fn twin_topics() {
        let event = parse_incoming(
            "$iothub/twin/res/204/?$rid=5&$version=9",
            Bytes::new(),
            "devices/d/messages/devicebound/",
        );
        assert_eq!(
            event,
            Some(CloudEvent::TwinResponse(TwinResponse {
                rid: "5".into(),
                status: 204,
                version: Some(9),
                body: None
            }))
        );
        let patch = parse_incoming(
            "$iothub/twin/PATCH/properties/desired/?$version=3",
            Bytes::from_static(b"{\"a\":1}"),
            "devices/d/messages/devicebound/",
        );
        assert!(matches!(
            patch,
            Some(CloudEvent::Desired(DesiredPatch {
                version: Some(3),
                ..
            }))
        ));
        let not_json = parse_incoming(
            "$iothub/twin/PATCH/properties/desired/?$version=3",
            Bytes::from_static(b"{"),
            "devices/d/messages/devicebound/",
        );
        assert_eq!(not_json, None);
        assert_eq!(
            parse_incoming(
                "elsewhere/x",
                Bytes::new(),
                "devices/d/messages/devicebound/"
            ),
            None
        );
    }
}
