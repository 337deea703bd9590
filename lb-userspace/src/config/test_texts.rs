//! Config texts the unit tests of several modules build theirs from.

/// VIP `web` (198.18.1.10, port 80, TCP) over backends 198.18.0.10 and 198.18.0.11, without
/// `[global]`.
pub const TWO_BACKENDS: &str = r#"
[[vip]]
name = "web"
address = "198.18.1.10"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "198.18.0.10"
  mac = "02:00:00:00:01:00"
  [[vip.backend]]
  address = "198.18.0.11"
  mac = "02:00:00:00:01:01"
"#;

/// [`TWO_BACKENDS`] with its first `from` written as `to`; panics if `from` is not in it (a test
/// of an edit that does not apply would test nothing).
pub fn two_backends_with(from: &str, to: &str) -> String {
    assert!(
        TWO_BACKENDS.contains(from),
        "{from:?} is not in TWO_BACKENDS"
    );
    TWO_BACKENDS.replacen(from, to, 1)
}
