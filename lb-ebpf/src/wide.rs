//! Frame loads and stores of 8 and 4 bytes at any even offset, one instruction each. The frame
//! is only 2-byte aligned (see `rewrite` in the `xlb` program): Rust forbids a misaligned access
//! through a `u64` pointer, and the BPF backend splits an access it cannot prove aligned into
//! single bytes, so on the BPF target these are the instructions themselves. The verifier allows
//! misaligned packet access where the CPU handles it (CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS:
//! x86-64, arm64) and the JIT emits one move for each. Values hold the frame's bytes in the
//! order the CPU loads them (little-endian: the first byte is the lowest).
//!
//! The library is also built for the host (lb-userspace's build-dependency), where nothing calls
//! these: there they are plain unaligned accesses.

/// A load of a `u64` or `u32`: the one BPF instruction (a 4-byte load zero-extends), or an
/// unaligned read on the host.
macro_rules! load {
    ($(#[$doc:meta])* $name:ident, $type:ty, $instruction:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// `ptr` points into the frame and the access's bytes lie inside it (checked by
        /// [`crate::headers::ptr_at`]).
        #[inline(always)]
        pub unsafe fn $name(ptr: *const u8) -> $type {
            #[cfg(target_arch = "bpf")]
            {
                let value: u64;
                // SAFETY: the caller's.
                unsafe {
                    core::arch::asm!(
                        $instruction,
                        value = out(reg) value,
                        ptr = in(reg) ptr,
                        options(pure, nostack, readonly, preserves_flags),
                    );
                }
                value as $type
            }
            #[cfg(not(target_arch = "bpf"))]
            // SAFETY: the caller's.
            unsafe {
                ptr.cast::<$type>().read_unaligned()
            }
        }
    };
}

load!(
    /// The 8 bytes at `ptr`.
    load_u64,
    u64,
    "{value} = *(u64 *)({ptr} + 0)"
);
load!(
    /// The 4 bytes at `ptr`, likewise.
    load_u32,
    u32,
    "{value} = *(u32 *)({ptr} + 0)"
);

/// A store of a `u64` or `u32`: the one BPF instruction, or an unaligned write on the host.
macro_rules! store {
    ($(#[$doc:meta])* $name:ident, $type:ty, $instruction:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As for [`load_u64`].
        #[inline(always)]
        pub unsafe fn $name(ptr: *mut u8, value: $type) {
            #[cfg(target_arch = "bpf")]
            // SAFETY: the caller's.
            unsafe {
                core::arch::asm!(
                    $instruction,
                    ptr = in(reg) ptr,
                    value = in(reg) u64::from(value),
                    options(nostack, preserves_flags),
                );
            }
            #[cfg(not(target_arch = "bpf"))]
            // SAFETY: the caller's.
            unsafe {
                ptr.cast::<$type>().write_unaligned(value)
            }
        }
    };
}

store!(
    /// Stores `value` at `ptr` as [`load_u64`] reads it.
    store_u64,
    u64,
    "*(u64 *)({ptr} + 0) = {value}"
);
store!(
    /// Stores the 4 bytes of `value` at `ptr`, likewise.
    store_u32,
    u32,
    "*(u32 *)({ptr} + 0) = {value}"
);
