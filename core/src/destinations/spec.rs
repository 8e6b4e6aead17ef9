//! What a destination is to the core: how it is registered, and what it shows in the preview —
//! shapes every destination fills and `preview` and the playground render without knowing which
//! destination they came from.

use serde::Serialize;
use serde_json::Value;

use crate::config::{ConfigError, Environment, Properties};
use crate::record::Batch;

/// One destination: its name in the `destinations` property, and how the preview reads it.
pub struct Registration {
    pub name: &'static str,
    /// Its name for people (`Datadog`).
    pub title: &'static str,
    /// Reads its properties as the plugin does. A note (a stand-in used for a key the
    /// environment does not give here) goes in the output's notes.
    pub preview: ReadPreview,
}

/// How a destination's preview is read from an output's properties.
pub type ReadPreview =
    fn(&dyn Properties, &Context, &mut Vec<String>) -> Result<Box<dyn Preview>, ConfigError>;

/// What a destination's preview is read with besides its properties.
pub struct Context<'a> {
    pub message_keys: &'a [String],
    /// The plugin's environment (`AWS_REGION`).
    pub env: Environment<'a>,
}

/// A destination as the preview shows it: read from an output's properties as the plugin reads
/// them, through the plugin's own encoder, it says what becomes of records and sends nothing.
pub trait Preview {
    /// Its configuration in one line, when there is something to say.
    fn summary(&self) -> Option<String>;
    /// What becomes of one record (a batch holding it alone).
    fn route(&self, record: &Batch) -> Route;
    /// The whole sample, delivered as one chunk.
    fn totals(&self, sample: &Batch) -> Totals;
}

/// What becomes of one record at one destination.
#[derive(Debug, Default, Serialize)]
pub struct Route {
    /// The record is not sent (dropped, not routed): why, as `preview` prints it.
    pub refused: Option<String>,
    /// What it is sent as, in brief (the page's pills): the service, the stream, the size.
    pub facts: Vec<Fact>,
    /// Exactly what is sent.
    pub detail: Option<Detail>,
    /// How `preview` prints a sent record, line by line.
    pub text: Vec<String>,
}

/// One fact about a sent record; `class` marks the ones the page styles (`stream`, `prefix`).
#[derive(Debug, Serialize)]
pub struct Fact {
    pub text: String,
    pub class: Option<&'static str>,
}

impl Fact {
    pub fn plain(text: impl Into<String>) -> Fact {
        Fact {
            text: text.into(),
            class: None,
        }
    }

    pub fn marked(text: impl Into<String>, class: &'static str) -> Fact {
        Fact {
            text: text.into(),
            class: Some(class),
        }
    }
}

/// Exactly what is sent for a record: JSON, or text.
#[derive(Debug, Serialize)]
pub struct Detail {
    /// What it is (`payload (one entry of the request's JSON array)`).
    pub label: &'static str,
    pub json: Option<Value>,
    pub text: Option<String>,
}

/// The whole sample delivered as one chunk.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub figures: Vec<Figure>,
    /// How `preview` prints them (`datadog 2 requests`); empty when there is nothing to say.
    pub text: String,
    /// Where the requests go when the destination has several places (Firehose streams), in
    /// order of first use.
    pub places: Vec<String>,
}

/// One number of the totals.
#[derive(Debug, Serialize)]
pub struct Figure {
    /// What it counts, for programs (`requests`, `calls`, `billed_units`).
    pub key: &'static str,
    /// What it counts, for people.
    pub label: &'static str,
    pub value: usize,
}

impl Totals {
    /// The figure counted under `key`.
    pub fn figure(&self, key: &str) -> Option<usize> {
        self.figures.iter().find(|f| f.key == key).map(|f| f.value)
    }
}
