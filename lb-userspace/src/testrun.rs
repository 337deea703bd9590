//! Running a loaded XDP program on a packet through BPF_PROG_TEST_RUN: the kernel executes the
//! real program (verifier, JIT, maps) on a buffer we hand it. Used by tests, benchmarks and
//! (later) `xlb plan`.

use anyhow::Context as _;
use aya::programs::{TestRun as _, TestRunOptions, TestRunResult, Xdp};

/// Room for the program to grow a packet (encapsulation) beyond its input size.
const OUTPUT_HEADROOM: usize = 256;

/// The verdict and packet the kernel program produced for one input packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The raw XDP return code (see [`lb_common::Verdict::from_code`]).
    pub code: u32,
    pub output: Vec<u8>,
}

/// One BPF_PROG_TEST_RUN call of `repeat` repetitions, its output written to `output`.
fn test_run(
    program: &Xdp,
    packet: &[u8],
    repeat: u32,
    output: &mut [u8],
) -> anyhow::Result<TestRunResult> {
    program
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(output),
            repeat,
            ..TestRunOptions::new()
        })
        .context("BPF_PROG_TEST_RUN failed")
}

/// Runs `packet` through `program` once and returns what it did.
pub fn run(program: &Xdp, packet: &[u8]) -> anyhow::Result<Outcome> {
    let mut output = vec![0u8; packet.len() + OUTPUT_HEADROOM];
    let result = test_run(program, packet, 1, &mut output)?;
    output.truncate(result.data_size_out as usize);
    Ok(Outcome {
        code: result.return_value,
        output,
    })
}

/// Mean kernel-measured nanoseconds per packet over `repeat` runs of `packet` in one call.
///
/// The kernel does not reset the packet between repetitions: from the second on, the program
/// sees its own output. Use this only for packets the program leaves unchanged or whose output
/// takes the same path again; see [`ns_per_fresh_packet`] otherwise.
pub fn ns_per_packet(program: &Xdp, packet: &[u8], repeat: u32) -> anyhow::Result<f64> {
    let mut output = vec![0u8; packet.len() + OUTPUT_HEADROOM];
    // The kernel reports the mean duration per repetition.
    Ok(test_run(program, packet, repeat, &mut output)?
        .duration
        .as_nanos() as f64)
}

/// Mean kernel-measured nanoseconds per packet over `calls` separate runs of `packet`, each
/// starting from the original bytes: for paths that change the packet (encapsulation). Each
/// run's duration is a whole number of nanoseconds and includes per-call set-up; compare only
/// with a baseline program measured the same way.
pub fn ns_per_fresh_packet(program: &Xdp, packet: &[u8], calls: u32) -> anyhow::Result<f64> {
    let mut output = vec![0u8; packet.len() + OUTPUT_HEADROOM];
    let mut total = 0u128;
    for _ in 0..calls {
        total += test_run(program, packet, 1, &mut output)?
            .duration
            .as_nanos();
    }
    Ok(total as f64 / f64::from(calls.max(1)))
}
