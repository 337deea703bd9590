//! `xlb audit [FILE]`.

use lb_userspace::{audit, config::HostEnvironment, exit};

use super::{
    args::{AuditArgs, OutputFormat},
    emit,
};

pub fn run(args: AuditArgs) -> anyhow::Result<u8> {
    let report = audit::audit_with_peers(
        args.file.as_deref(),
        args.live.pin_path.as_deref(),
        &HostEnvironment,
        &args.peers,
    )?;
    if !report.diagnostics.is_empty() && args.live.output == OutputFormat::Text {
        // The config is broken, not the kernel: say so on stderr, as `validate` does.
        for diagnostic in &report.diagnostics {
            eprintln!("{diagnostic}");
        }
        let file = report.file.as_deref().unwrap_or("the config");
        if report.code == exit::UNREADABLE {
            eprintln!("xlb: {file} cannot be read, so the kernel was not audited");
        } else {
            eprintln!(
                "xlb: {file} is invalid, so the kernel was not audited: fix it (`xlb validate \
                 {file}` lists every problem) and audit again"
            );
        }
        return Ok(report.code);
    }
    emit(args.live.output, &report, audit::text)?;
    Ok(report.code)
}
