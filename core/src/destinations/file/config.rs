//! Properties of the `file` destination (the plugin appends; see `plugin/src/destinations/file.rs`).

use std::path::PathBuf;

use crate::config::{ConfigError, Properties, Reader};

#[derive(Clone, Debug)]
pub struct FileConfig {
    pub path: PathBuf,
}

impl FileConfig {
    pub fn read(props: &dyn Properties) -> Result<FileConfig, ConfigError> {
        let path = Reader::new(props).required(
            "path",
            "the file the file destination appends JSON lines to",
        )?;
        Ok(FileConfig {
            path: PathBuf::from(path),
        })
    }
}
