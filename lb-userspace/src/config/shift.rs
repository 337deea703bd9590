//! A parsed VIP moved to another place in the file: the same text, every span moved by the
//! same number of bytes. An edit that changes one VIP's length moves every VIP after it; the
//! reparse moves them rather than parsing them again.

use std::ops::Range;

use toml::Spanned;

use super::{
    file::{BackendFile, Check, HealthFile, Ip, Mac, Name, VipFile},
    model::{Forwarding, HashMode, Protocol},
};

/// A parsed value whose spans can be moved.
pub(super) trait Shift {
    /// `self` with every span `by` bytes further into the file.
    fn shift(self, by: isize) -> Self;
}

/// `span` moved `by` bytes.
pub(super) fn shifted(span: Range<usize>, by: isize) -> Range<usize> {
    span.start.wrapping_add_signed(by)..span.end.wrapping_add_signed(by)
}

impl<T: Shift> Shift for Spanned<T> {
    fn shift(self, by: isize) -> Self {
        let span = shifted(self.span(), by);
        Spanned::new(span, self.into_inner().shift(by))
    }
}

impl<T: Shift> Shift for Option<T> {
    fn shift(self, by: isize) -> Self {
        self.map(|value| value.shift(by))
    }
}

impl<T: Shift> Shift for Vec<T> {
    fn shift(self, by: isize) -> Self {
        self.into_iter().map(|value| value.shift(by)).collect()
    }
}

/// Values without spans inside.
macro_rules! unspanned {
    ($($t:ty),*) => {
        $(impl Shift for $t {
            fn shift(self, _: isize) -> Self {
                self
            }
        })*
    };
}

unspanned!(
    bool, u16, u32, String, Name, Ip, Mac, Protocol, Forwarding, HashMode, Check
);

// Destructured field by field: a field added to the file's types must be added here.
impl Shift for VipFile {
    fn shift(self, by: isize) -> Self {
        let VipFile {
            name,
            address,
            port,
            protocol,
            forwarding,
            hash,
            table_size,
            source_hash_checked,
            backend,
        } = self;
        VipFile {
            name: name.shift(by),
            address: address.shift(by),
            port: port.shift(by),
            protocol: protocol.shift(by),
            forwarding: forwarding.shift(by),
            hash: hash.shift(by),
            table_size: table_size.shift(by),
            source_hash_checked: source_hash_checked.shift(by),
            backend: backend.shift(by),
        }
    }
}

impl Shift for BackendFile {
    fn shift(self, by: isize) -> Self {
        let BackendFile {
            address,
            weight,
            mac,
            health,
        } = self;
        BackendFile {
            address: address.shift(by),
            weight: weight.shift(by),
            mac: mac.shift(by),
            health: health.shift(by),
        }
    }
}

impl Shift for HealthFile {
    fn shift(self, by: isize) -> Self {
        let HealthFile {
            check,
            port,
            path,
            expect_status,
            interval_ms,
            timeout_ms,
            rise,
            fall,
        } = self;
        HealthFile {
            check: check.shift(by),
            port: port.shift(by),
            path: path.shift(by),
            expect_status: expect_status.shift(by),
            interval_ms: interval_ms.shift(by),
            timeout_ms: timeout_ms.shift(by),
            rise: rise.shift(by),
            fall: fall.shift(by),
        }
    }
}
