//! The `xlb` command: its command line lives in [`cli`], over the `lb_userspace` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
