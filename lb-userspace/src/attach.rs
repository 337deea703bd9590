//! Attaching the XDP program to an interface, with errors that say what to try next.

use std::ffi::CString;

use anyhow::{Context as _, bail};
use aya::programs::{Xdp, XdpMode, xdp::XdpLinkId};

/// Where the program is asked to run: `Native` in the driver, `Generic` in the kernel stack,
/// `Auto` native with a fallback to generic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
    Auto,
}

/// The mode the program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Native,
    Generic,
}

/// Where and how the program was attached.
#[derive(Debug)]
pub struct Attachment {
    pub mode: Attached,
    pub ifindex: u32,
    /// The program's link, to take and pin.
    pub link: XdpLinkId,
}

/// Attaches `program` to `interface` in the current network namespace.
pub fn attach(program: &mut Xdp, interface: &str, mode: AttachMode) -> anyhow::Result<Attachment> {
    let name = CString::new(interface)
        .with_context(|| format!("interface name {interface:?} contains a NUL byte"))?;
    // SAFETY: if_nametoindex reads a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!(
            "no interface named `{interface}` in this network namespace: check the name with \
             `ip link` (inside a namespace: `ip -n NAME link`)"
        );
    }
    let native_hint = || {
        format!(
            "attaching in native mode to `{interface}` failed: its driver may not support \
             native XDP; use --xdp-mode generic (or auto)"
        )
    };
    let (mode, link) = match mode {
        AttachMode::Native => program_attach(program, &name, XdpMode::Driver, Attached::Native)
            .with_context(native_hint),
        AttachMode::Generic => program_attach(program, &name, XdpMode::Skb, Attached::Generic)
            .with_context(|| format!("attaching in generic mode to `{interface}` failed")),
        AttachMode::Auto => {
            match program_attach(program, &name, XdpMode::Driver, Attached::Native) {
                Ok(attached) => Ok(attached),
                Err(native_err) => {
                    eprintln!(
                        "xlb: native XDP on `{interface}` failed ({native_err:#}); using generic"
                    );
                    program_attach(program, &name, XdpMode::Skb, Attached::Generic).with_context(
                        || {
                            format!(
                                "attaching to `{interface}` failed in native and in generic mode"
                            )
                        },
                    )
                }
            }
        }
    }?;
    Ok(Attachment {
        mode,
        ifindex,
        link,
    })
}

fn program_attach(
    program: &mut Xdp,
    name: &CString,
    mode: XdpMode,
    attached: Attached,
) -> anyhow::Result<(Attached, XdpLinkId)> {
    Ok((attached, program.attach(name.as_c_str(), mode)?))
}
