//! The packet fixture table (`xlb_tests::fixtures`, which `cargo xtask bench` measures too)
//! through BPF_PROG_TEST_RUN: the bench's paths, malformed frames and frames to addresses that
//! share a VIP's filter bit. Each fixture runs on a freshly loaded program, gets its verdict,
//! exact output bytes, and one count under its reason.

use xlb_tests::{
    fixtures, require_privileges,
    steering::{assert_counted, run},
};

/// Test that every fixture gets its verdict, its exact output bytes, and one count under its
/// reason and verdict, nothing else.
#[test]
fn every_fixture_gets_its_reason_and_exact_output() {
    require_privileges!();
    for fixture in fixtures::all() {
        let mut loaded = fixture.setup.load();
        let expected = fixture.expected_output(&loaded);
        assert_eq!(
            run(&mut loaded.ebpf, &fixture.frame),
            (Some(fixture.verdict()), expected),
            "{}: verdict and output bytes",
            fixture.name
        );
        assert_counted(
            &loaded.ebpf,
            fixture.reason,
            1,
            fixture.frame.len() as u64,
            fixture.name,
        );
    }
}
