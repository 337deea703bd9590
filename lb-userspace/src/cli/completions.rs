//! `xlb completions SHELL`: print a shell completion script generated from the clap types in
//! `args`, so it always matches the verbs and options of this binary.

use std::io::{ErrorKind, Write as _};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;
use lb_userspace::exit;

use super::args::{Cli, CompletionsArgs};

pub fn run(args: CompletionsArgs) -> anyhow::Result<u8> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(script(args.shell).as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(exit::OK),
        // `xlb completions bash | head`: the reader may stop early.
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Ok(exit::OK),
        Err(err) => Err(err).context("writing the completion script to stdout"),
    }
}

/// The completion script of the `xlb` command for `shell`.
fn script(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "xlb", &mut out);
    // clap_complete writes only the strings it is given, all UTF-8.
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that every shell gets a script that names the command and its verbs.
    #[test]
    fn every_shell_gets_a_script_naming_the_verbs() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let text = script(shell);
            for word in ["xlb", "validate", "backend", "completions"] {
                assert!(text.contains(word), "{shell}: no `{word}` in\n{text}");
            }
        }
    }
}
