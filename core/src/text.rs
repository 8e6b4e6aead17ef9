//! Text helpers for messages.

use std::borrow::Cow;

/// `text` cut to `max` characters, with `…` when it was longer (for log lines that quote
/// record content).
pub fn shorten(text: &str, max: usize) -> Cow<'_, str> {
    if text.chars().count() <= max {
        Cow::Borrowed(text)
    } else {
        let cut: String = text.chars().take(max).collect();
        Cow::Owned(format!("{cut}…"))
    }
}
