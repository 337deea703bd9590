//! `xlb down`: detach the data plane and remove its pins.

use crate::{args::LiveArgs, exit, exit::NotLoaded, pins};

pub fn run(args: LiveArgs) -> anyhow::Result<u8> {
    let pin_path = args.pin_path(None);
    if !pin_path.exists() {
        return Err(NotLoaded(format!("nothing is pinned under {}", pin_path.display())).into());
    }
    // Withdraw first: routers must stop sending flows before the data plane goes.
    match crate::bgp::withdraw_recorded(&pin_path) {
        Ok(Some(file)) => println!(
            "xlb: withdrew every VIP from BGP ({} emptied, BIRD reloaded)",
            file.display()
        ),
        Ok(None) => {}
        Err(err) => eprintln!("xlb: withdrawing the VIPs from BGP failed: {err:#}"),
    }
    pins::remove(&pin_path)?;
    println!(
        "xlb: removed the pins under {}; the program is detached once no `xlb run` holds it \
         (stop a running one)",
        pin_path.display()
    );
    Ok(exit::OK)
}
