# Sourced by README's set-up commands (`. ./bootstrap.sh && cargo xtask ...`): makes `cargo`
# work on a machine with nothing but git. Installs what a fresh Debian 12 lacks for that (curl,
# CA certificates and a C toolchain for linking, from apt), then rustup (Debian 12 has no
# rustup package: rustup-init, the installer sh.rustup.rs fetches, straight from
# static.rust-lang.org) with no default toolchain, then the toolchain pinned in
# rust-toolchain.toml. Each step is skipped when its result is present;
# `cargo xtask setup` does the rest. Sourced, so it uses `return`, never `exit` or `set -e`.

xlb_bootstrap() {
    if ! command -v cc >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
        echo "bootstrap: installing curl, ca-certificates and a C toolchain (apt-get)"
        apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl ca-certificates build-essential ||
            return 1
    fi
    if ! command -v rustup >/dev/null 2>&1 && [ -f "${CARGO_HOME:-$HOME/.cargo}/env" ]; then
        . "${CARGO_HOME:-$HOME/.cargo}/env"
    fi
    if ! command -v rustup >/dev/null 2>&1; then
        xlb_init_url="https://static.rust-lang.org/rustup/dist/$(uname -m)-unknown-linux-gnu/rustup-init"
        echo "bootstrap: installing rustup ($xlb_init_url, no default toolchain)"
        # rustup-init must run under that name: the same binary is rustup under another.
        xlb_init_dir=$(mktemp -d) || return 1
        xlb_init="$xlb_init_dir/rustup-init"
        curl --proto '=https' --tlsv1.2 -sSf -o "$xlb_init" "$xlb_init_url" &&
            chmod +x "$xlb_init" &&
            "$xlb_init" -y --profile minimal --default-toolchain none --no-modify-path
        xlb_status=$?
        rm -rf "$xlb_init_dir"
        [ "$xlb_status" -eq 0 ] || return 1
        . "${CARGO_HOME:-$HOME/.cargo}/env" || return 1
    fi
    # Installs the pinned toolchain (a no-op when it is there).
    rustup toolchain install
}

xlb_bootstrap
