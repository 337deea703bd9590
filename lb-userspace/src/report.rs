//! Printing a verb's result as text for people or as one JSON document for scripts.

use serde::Serialize;

use crate::args::OutputFormat;

/// Prints `report` in `format`; `text` renders it for people.
pub fn emit<T: Serialize>(
    format: OutputFormat,
    report: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Text => print!("{}", text(report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(report)?),
    }
    Ok(())
}
