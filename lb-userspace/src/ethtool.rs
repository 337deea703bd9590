//! An interface's driver statistics, as `ethtool -S` shows them (the SIOCETHTOOL ioctl):
//! XDP_TX failures appear only there. A veth whose peer has no XDP program drops what XDP_TX
//! sends (counted as `rx_queue_N_xdp_tx_errors`) while xlb counts each packet as forwarded.

use std::{ffi::c_void, io, os::fd::AsRawFd as _};

/// `ETHTOOL_GDRVINFO`, `ETHTOOL_GSTRINGS`, `ETHTOOL_GSTATS` (linux/ethtool.h).
const GDRVINFO: u32 = 0x03;
const GSTRINGS: u32 = 0x1b;
const GSTATS: u32 = 0x1d;
/// `ETH_SS_STATS`: the string set naming the statistics.
const SS_STATS: u32 = 1;
/// `ETH_GSTRING_LEN`.
const NAME_LEN: usize = 32;
/// Offset of `n_stats` in `struct ethtool_drvinfo` (cmd, five 32-byte strings, 12 reserved
/// bytes, n_priv_flags), and the struct's size.
const DRVINFO_N_STATS: usize = 4 + 5 * 32 + 12 + 4;
const DRVINFO_SIZE: usize = DRVINFO_N_STATS + 5 * 4;
/// More statistics than any driver reports: a bound on what a reply may make us allocate.
const MAX_STATS: usize = 1 << 16;

/// `struct ifreq` with `ifr_data`: the interface name and a pointer to the ethtool command.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut c_void,
    /// The rest of the ifreq union.
    _pad: [u8; 16],
}

/// Runs the ethtool command in `buffer` (starting with its `cmd` word) on `interface`.
fn ioctl(interface: &str, buffer: &mut [u8]) -> io::Result<()> {
    let bytes = interface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{interface:?} is not an interface name"),
        ));
    }
    let mut request = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: buffer.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    request.name[..bytes.len()].copy_from_slice(bytes);
    let socket =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    // SAFETY: SIOCETHTOOL reads the ifreq, which lives here, and reads and writes the command
    // buffer it points to; each command's buffer is sized for the reply the kernel writes (the
    // counts in it were set by the caller from the driver's own n_stats).
    let result =
        unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL as _, &raw mut request) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Every driver statistic of `interface`: (name, value), in the driver's order.
pub fn stats(interface: &str) -> io::Result<Vec<(String, u64)>> {
    let mut info = vec![0u8; DRVINFO_SIZE];
    info[..4].copy_from_slice(&GDRVINFO.to_ne_bytes());
    ioctl(interface, &mut info)?;
    let count = (word(&info, DRVINFO_N_STATS) as usize).min(MAX_STATS);
    let mut names = vec![0u8; 12 + count * NAME_LEN];
    names[..4].copy_from_slice(&GSTRINGS.to_ne_bytes());
    names[4..8].copy_from_slice(&SS_STATS.to_ne_bytes());
    names[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
    ioctl(interface, &mut names)?;
    let mut values = vec![0u8; 8 + count * 8];
    values[..4].copy_from_slice(&GSTATS.to_ne_bytes());
    values[4..8].copy_from_slice(&(count as u32).to_ne_bytes());
    ioctl(interface, &mut values)?;
    // The driver may report fewer than it announced; never more than the buffers hold.
    let count = count
        .min(word(&names, 8) as usize)
        .min(word(&values, 4) as usize);
    Ok((0..count)
        .map(|i| {
            let raw = &names[12 + i * NAME_LEN..12 + (i + 1) * NAME_LEN];
            let end = raw.iter().position(|b| *b == 0).unwrap_or(NAME_LEN);
            let name = String::from_utf8_lossy(&raw[..end]).into_owned();
            let at = 8 + i * 8;
            let value = u64::from_ne_bytes(values[at..at + 8].try_into().expect("8 bytes"));
            (name, value)
        })
        .collect())
}

/// Whether the driver statistic `name` counts frames XDP_TX failed to send: veth's
/// `rx_queue_N_xdp_tx_errors`, and the `xdp_tx_errors` / `xdp_tx_err` of NIC drivers.
fn is_xdp_tx_error(name: &str) -> bool {
    name.ends_with("xdp_tx_errors") || name.ends_with("xdp_tx_err")
}

/// The sum of `interface`'s XDP_TX failure counters over its queues; `None` if its driver
/// counts none.
pub fn xdp_tx_errors(interface: &str) -> io::Result<Option<u64>> {
    let found: Vec<u64> = stats(interface)?
        .into_iter()
        .filter(|(name, _)| is_xdp_tx_error(name))
        .map(|(_, value)| value)
        .collect();
    Ok((!found.is_empty()).then(|| found.iter().sum()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that the per-queue veth counters and the NIC drivers' names count as XDP_TX
    /// failures, and that XDP_TX successes and redirect failures do not.
    #[test]
    fn xdp_tx_error_names() {
        for name in ["rx_queue_0_xdp_tx_errors", "xdp_tx_errors", "rx_xdp_tx_err"] {
            assert!(is_xdp_tx_error(name), "{name}");
        }
        for name in [
            "rx_queue_0_xdp_tx",
            "tx_queue_0_xdp_xmit_errors",
            "peer_ifindex",
        ] {
            assert!(!is_xdp_tx_error(name), "{name}");
        }
    }

    /// Test that a name that is no interface name is refused before any ioctl, naming it.
    #[test]
    fn bad_interface_names_are_refused() {
        for name in ["", "an-interface-name-too-long", "a\0b"] {
            let err = stats(name).expect_err(name);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
            assert!(err.to_string().contains("not an interface name"), "{err}");
        }
    }
}
