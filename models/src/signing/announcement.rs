//! What tells a device that a new model exists: the signed manifest and where the
//! model's bytes can be fetched. The training side (`smartgrid retrain`, `smartgrid
//! model promote`) publishes it, as a retained MQTT message for local use or as the
//! `model` desired property of an IoT Hub device twin; the device (`predict`'s
//! `updates:`) reads it, fetches `url`, and checks the bytes against `manifest` with
//! its public key before it runs the model at all.
//!
//! ```json
//! {"url": "http://127.0.0.1:8900/models/3f2a…/model.txt", "manifest": { … }}
//! ```
//!
//! The announcement itself is not signed and need not be: everything a device acts on
//! is inside the signed manifest, and a forged `url` can only serve bytes that fail
//! the manifest's sha256.

use serde::{Deserialize, Serialize};

use super::manifest::Manifest;

/// A model announcement, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    /// Where the model file's bytes are: `http://` or `https://` (a blob URL with a
    /// SAS token, or the registry's own server).
    pub url: String,
    /// The model's signed manifest, exactly as written beside the model file.
    pub manifest: Manifest,
}

impl Announcement {
    /// The JSON text published (compact: a retained message or a twin property).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an announcement of strings and finite floats")
    }

    /// Read an announcement; the error says what is wrong with the text.
    pub fn from_json(text: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(text)
    }
}
