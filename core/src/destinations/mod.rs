//! Each destination's configuration and encoder; the plugin adds transport and delivery.

pub mod datadog;
pub mod file;
pub mod firehose;

/// The destinations this build knows, as named in the `destinations` property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestinationKind {
    Datadog,
    Firehose,
    File,
}

impl DestinationKind {
    pub const ALL: &'static [DestinationKind] = &[
        DestinationKind::Datadog,
        DestinationKind::Firehose,
        DestinationKind::File,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DestinationKind::Datadog => "datadog",
            DestinationKind::Firehose => "firehose",
            DestinationKind::File => "file",
        }
    }

    pub fn parse(name: &str) -> Option<DestinationKind> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.name().eq_ignore_ascii_case(name.trim()))
    }
}
