//! What the preview shows of the `file` destination: where each record is appended.

use super::config::FileConfig;
use crate::config::{ConfigError, Properties};
use crate::destinations::spec::{Context, Fact, Preview, Route, Totals};
use crate::record::Batch;

struct FilePreview {
    path: String,
}

pub fn read(
    props: &dyn Properties,
    _context: &Context,
    _notes: &mut Vec<String>,
) -> Result<Box<dyn Preview>, ConfigError> {
    Ok(Box::new(FilePreview {
        path: FileConfig::read(props)?.path.display().to_string(),
    }))
}

impl Preview for FilePreview {
    fn summary(&self) -> Option<String> {
        None
    }

    fn route(&self, _record: &Batch) -> Route {
        let appended = format!("appended to {}", self.path);
        Route {
            facts: vec![Fact::plain(appended.clone())],
            text: vec![appended],
            ..Route::default()
        }
    }

    fn totals(&self, _sample: &Batch) -> Totals {
        Totals::default()
    }
}
