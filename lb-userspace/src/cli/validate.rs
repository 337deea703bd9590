//! `xlb validate FILE`.

use std::io::Write as _;

use lb_userspace::{config::HostEnvironment, exit, validate};

use super::args::{OutputFormat, ValidateArgs};

pub fn run(args: ValidateArgs) -> anyhow::Result<u8> {
    let validation = validate::check(&args.file, &HostEnvironment, args.strict);
    let output = match args.output {
        OutputFormat::Text => validation.text(),
        // Through a JSON value, whose keys are sorted, as scripts have always seen them.
        OutputFormat::Json => format!("{:#}\n", serde_json::to_value(&validation)?),
    };
    // A file that cannot be read is a failure of the command, not a finding about a config.
    if validation.exit_code == exit::UNREADABLE && args.output == OutputFormat::Text {
        std::io::stderr().write_all(output.as_bytes())?;
    } else {
        std::io::stdout().write_all(output.as_bytes())?;
    }
    Ok(validation.exit_code)
}
