//! Running a loaded XDP program on a packet through BPF_PROG_TEST_RUN: the kernel executes the
//! real program (verifier, JIT, maps) on a buffer we hand it. Used by tests, benchmarks and
//! (later) `xlb plan`.

use anyhow::Context as _;
use aya::programs::{TestRun as _, TestRunOptions, Xdp};

/// Room for the program to grow a packet (encapsulation) beyond its input size.
const OUTPUT_HEADROOM: usize = 256;

/// The verdict and packet the kernel program produced for one input packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The raw XDP return code (see [`lb_common::Verdict::from_code`]).
    pub code: u32,
    pub output: Vec<u8>,
}

/// Runs `packet` through `program` once and returns what it did.
pub fn run(program: &Xdp, packet: &[u8]) -> anyhow::Result<Outcome> {
    let mut output = vec![0u8; packet.len() + OUTPUT_HEADROOM];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut output),
            ..TestRunOptions::new()
        })
        .context("BPF_PROG_TEST_RUN failed")?;
    output.truncate(result.data_size_out as usize);
    Ok(Outcome {
        code: result.return_value,
        output,
    })
}

/// Mean kernel-measured nanoseconds per packet over `repeat` runs of `packet` in one call.
///
/// The kernel does not reset the packet between repetitions: from the second on, the program
/// sees its own output. Use this only for packets the program leaves unchanged, or with
/// `repeat = 1` in a loop.
pub fn ns_per_packet(program: &Xdp, packet: &[u8], repeat: u32) -> anyhow::Result<f64> {
    let mut output = vec![0u8; packet.len() + OUTPUT_HEADROOM];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut output),
            repeat,
            ..TestRunOptions::new()
        })
        .context("BPF_PROG_TEST_RUN (repeat) failed")?;
    // The kernel reports the mean duration per repetition.
    Ok(result.duration.as_nanos() as f64)
}

/// Mean kernel-measured nanoseconds per packet over `calls` separate runs of `packet`, each
/// starting from the original bytes: for paths that change the packet (encapsulation). Each
/// run's duration is a whole number of nanoseconds; compare only with a baseline program
/// measured the same way.
pub fn ns_per_fresh_packet(program: &Xdp, packet: &[u8], calls: u32) -> anyhow::Result<f64> {
    let mut output = vec![0u8; packet.len() + OUTPUT_HEADROOM];
    let mut total = 0u128;
    for _ in 0..calls {
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(packet),
                data_out: Some(&mut output),
                ..TestRunOptions::new()
            })
            .context("BPF_PROG_TEST_RUN failed")?;
        total += result.duration.as_nanos();
    }
    Ok(total as f64 / f64::from(calls.max(1)))
}
