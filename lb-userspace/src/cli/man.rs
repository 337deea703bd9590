//! `xlb man DIR`: man pages generated from the clap types in `args` (clap_mangen), one for
//! `xlb` and one per verb and sub-verb, named as git names its own (`xlb-backend-drain.1`), so
//! they always match this binary's options.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;

use lb_userspace::exit;

use super::args::{Cli, ManArgs};

pub fn run(args: &ManArgs) -> anyhow::Result<u8> {
    for path in write(&args.dir)? {
        println!("{}", path.display());
    }
    Ok(exit::OK)
}

/// Every page: (file name, roff text).
fn pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut command = Cli::command().version(env!("CARGO_PKG_VERSION"));
    // Fills in each sub-command's bin name (`xlb backend drain`) for its synopsis.
    command.build();
    let mut pages = Vec::new();
    collect(&command, "xlb", &mut pages)?;
    Ok(pages)
}

fn collect(
    command: &clap::Command,
    name: &str,
    pages: &mut Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(command.clone().display_name(name.to_owned()))
        .section("1")
        .source(format!("xlb {}", env!("CARGO_PKG_VERSION")))
        .manual("xlb manual")
        .render(&mut roff)
        .with_context(|| format!("rendering the man page of {name}"))?;
    pages.push((format!("{name}.1"), roff));
    for sub in command
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help")
    {
        collect(sub, &format!("{name}-{}", sub.get_name()), pages)?;
    }
    Ok(())
}

/// Writes every page into `dir` (created if missing) and returns their paths.
fn write(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    pages()?
        .into_iter()
        .map(|(name, roff)| {
            let path = dir.join(name);
            std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that there is a page for xlb, each verb and each backend sub-verb, each a roff
    /// page titled with its name that shows its options.
    #[test]
    fn a_page_per_verb_titled_with_its_name() {
        let pages = pages().expect("pages");
        let names: Vec<&str> = pages.iter().map(|(name, _)| name.as_str()).collect();
        for wanted in [
            "xlb.1",
            "xlb-run.1",
            "xlb-stats.1",
            "xlb-backend.1",
            "xlb-backend-drain.1",
        ] {
            assert!(names.contains(&wanted), "no {wanted} among {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let page = |name: &str| {
            let (_, roff) = pages.iter().find(|(n, _)| n == name).expect("page");
            String::from_utf8(roff.clone()).expect("UTF-8")
        };
        let run = page("xlb-run.1");
        assert!(run.starts_with(".ie \\n(.g .ds Aq"), "roff: {run}");
        assert!(run.contains(".TH xlb-run 1"), "{run}");
        assert!(run.contains("\\-\\-config"), "{run}");
        assert!(
            page("xlb.1").contains("xlb\\-backend(1)"),
            "the verbs are listed"
        );
    }
}
