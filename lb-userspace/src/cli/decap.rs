//! `xlb decap attach|detach|status`: the backend side of `ipip` as verbs (see
//! [`lb_userspace::decap`]).

use std::{net::IpAddr, path::PathBuf};

use serde::Serialize;

use lb_userspace::{
    decap::{self, DecapStatus},
    exit,
};

use super::{
    args::{DecapArgs, DecapVerb},
    emit,
};

#[derive(Serialize)]
struct Detached {
    interface: String,
    pin_path: PathBuf,
}

pub fn run(args: DecapArgs) -> anyhow::Result<u8> {
    let common = args.verb.common();
    let (root, output) = (common.pin_path.clone(), common.output);
    match &args.verb {
        DecapVerb::Attach(attach) => {
            let status = decap::attach(
                &attach.interface,
                &attach.addresses,
                attach.xdp_mode.into(),
                &root,
            )?;
            emit(output, &status, |s| {
                format!(
                    "attached xlb_decap to {} ({}) for {}; pinned under {}\n",
                    s.interface,
                    s.mode.unwrap_or("not running"),
                    list(&s.addresses),
                    s.pin_path.display()
                )
            })?;
        }
        DecapVerb::Detach(detach) => {
            let pin_path = decap::detach(&detach.interface, &root)?;
            let detached = Detached {
                interface: detach.interface.clone(),
                pin_path,
            };
            emit(output, &detached, |d| {
                format!(
                    "detached xlb_decap from {} (removed {})\n",
                    d.interface,
                    d.pin_path.display()
                )
            })?;
        }
        DecapVerb::Status(_) => {
            let all = decap::status(&root)?;
            emit(output, &all, |all| render(all, &root))?;
        }
    }
    Ok(exit::OK)
}

fn list(addresses: &[IpAddr]) -> String {
    let text: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    text.join(", ")
}

fn render(all: &[DecapStatus], root: &std::path::Path) -> String {
    if all.is_empty() {
        return format!(
            "no decapsulation program is pinned under {} (`xlb decap attach IF --address ADDR`)\n",
            root.display()
        );
    }
    let mut out = format!(
        "{:<12} {:<9} {:<8} {:>13} {:>12} {:>8}  addresses\n",
        "interface", "attached", "mode", "decapsulated", "passed", "dropped"
    );
    for s in all {
        out += &format!(
            "{:<12} {:<9} {:<8} {:>13} {:>12} {:>8}  {}\n",
            s.interface,
            if s.attached { "yes" } else { "NO" },
            s.mode.unwrap_or("-"),
            s.decapsulated,
            s.passed_other,
            s.dropped,
            list(&s.addresses)
        );
    }
    out
}
