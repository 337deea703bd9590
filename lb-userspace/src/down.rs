//! `xlb down`: detach the data plane and remove its pins.

use crate::{args::LiveArgs, exit, exit::NotLoaded, pins};

pub fn run(args: LiveArgs) -> anyhow::Result<u8> {
    let pin_path = args.pin_path(None);
    if !pin_path.exists() {
        return Err(NotLoaded(format!("nothing is pinned under {}", pin_path.display())).into());
    }
    pins::remove(&pin_path)?;
    println!(
        "xlb: removed the pins under {}; the program is detached once no `xlb run` holds it \
         (stop a running one)",
        pin_path.display()
    );
    Ok(exit::OK)
}
