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

/// Moves every field of a struct of the file; naming the fields in a pattern and a
/// literal, a field added to the type and not here does not compile.
macro_rules! spanned_fields {
    ($($t:ident { $($field:ident),* })*) => {
        $(impl Shift for $t {
            fn shift(self, by: isize) -> Self {
                let $t { $($field),* } = self;
                $t { $($field: $field.shift(by)),* }
            }
        })*
    };
}

spanned_fields!(
    VipFile {
        name,
        address,
        port,
        protocol,
        forwarding,
        hash,
        table_size,
        source_hash_checked,
        backend
    }
    BackendFile {
        address,
        weight,
        mac,
        health
    }
    HealthFile {
        check,
        port,
        path,
        expect_status,
        interval_ms,
        timeout_ms,
        rise,
        fall
    }
);
