//! What the XDP programs of this crate (`xlb`, `xlb-decap`) share: bounds-checked packet
//! access, the Ethernet and IP header checks, and per-CPU counting. lb-userspace also builds
//! this library as a build-dependency so cargo rebuilds the programs when it changes.
#![no_std]
// Inline assembly on the BPF target: the frame's wide loads and stores (`wide`).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

pub mod count;
pub mod headers;
pub mod wide;

/// The panic handler and license section that every XDP program of this crate carries. A macro
/// rather than items of this library: the library is also built for the host, as a
/// build-dependency of lb-userspace, where a panic handler would clash with std's.
#[macro_export]
macro_rules! license_and_panic_handler {
    () => {
        #[cfg(not(test))]
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            loop {}
        }

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}
