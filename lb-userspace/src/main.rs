//! The `xlb` command: its command line lives in [`cli`], over the `lb_userspace` library.

mod cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::main().await
}
