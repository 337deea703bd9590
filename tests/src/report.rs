//! The `main` of the benchmark binaries: run a benchmark, write its JSON report to the path
//! given as the first argument (or a default under target/bench), and exit non-zero on error.

use std::{path::Path, process::ExitCode};

use anyhow::Context as _;

pub fn main(
    binary: &str,
    default_out: &str,
    bench: impl FnOnce() -> anyhow::Result<serde_json::Value>,
) -> ExitCode {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| default_out.into());
    let result = bench().and_then(|report| {
        let path = Path::new(&out);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {out}"))?;
        println!("wrote {out}");
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{binary}: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
