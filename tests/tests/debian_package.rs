//! The Debian package `cargo xtask package` builds: its metadata and files as dpkg-deb reads
//! them, and an install with dpkg into a scratch root whose `xlb` runs.
//!
//! The test runs `cargo xtask package`, which builds the release `xlb` first: a few seconds
//! when target/release/xlb is up to date (`cargo xtask build` or an earlier run), about ten
//! minutes from nothing on a 2-core machine. Packaging itself (strip, pages, dpkg-deb) takes a
//! few seconds.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use xlb_tests::require_privileges;

/// Runs `command`, panicking with its output if it fails; returns its stdout.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Builds the package and returns its path.
fn build_package() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = std::time::Instant::now();
    let out = run(Command::new(cargo)
        .args(["xtask", "package"])
        .current_dir(&root));
    eprintln!("cargo xtask package took {:?}", started.elapsed());
    let deb = out
        .lines()
        .find_map(|line| line.strip_prefix("package: "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("`cargo xtask package` named no package:\n{out}"));
    PathBuf::from(deb)
}

/// Test that `cargo xtask package` builds a .deb whose control names xlb, its version and
/// architecture; that it holds the binary, the systemd unit (pointing at the packaged binary),
/// completions for bash, zsh and fish, a gzipped man page per verb, the example config, the
/// Prometheus rules and the Grafana dashboard; and that dpkg installs it into a scratch root
/// (its own database), where `xlb --version` runs and prints the version, the binary has no
/// symbol table, and `dpkg --remove` takes every file away again.
#[test]
fn debian_package_installs_and_runs() {
    // dpkg --root writes a database and files owned by root.
    require_privileges!();
    let deb = build_package();
    let info = run(Command::new("dpkg-deb").arg("--field").arg(&deb));
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in\n{info}"))
            .to_owned()
    };
    assert_eq!(field("Package"), "xlb");
    let version = field("Version");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(field("Architecture"), arch.trim());
    assert!(field("Depends").contains("libc6"), "{info}");

    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let wanted = [
        "./usr/bin/xlb",
        "./lib/systemd/system/xlb.service",
        "./usr/share/bash-completion/completions/xlb",
        "./usr/share/zsh/vendor-completions/_xlb",
        "./usr/share/fish/vendor_completions.d/xlb.fish",
        "./usr/share/man/man1/xlb.1.gz",
        "./usr/share/man/man1/xlb-run.1.gz",
        "./usr/share/man/man1/xlb-backend-drain.1.gz",
        "./usr/share/doc/xlb/examples/xlb.toml",
        "./usr/share/xlb/prometheus/xlb-alerts.yml",
        "./usr/share/xlb/grafana/xlb-dashboard.json",
    ];
    for path in wanted {
        assert!(
            contents.lines().any(|line| line.ends_with(path)),
            "{path} is not in the package:\n{contents}"
        );
    }
    assert!(
        contents
            .lines()
            .filter(|line| line.contains("./usr/bin/xlb"))
            .all(|line| line.starts_with("-rwxr-xr-x root/root")),
        "xlb must be root-owned and executable:\n{contents}"
    );

    let scratch = tempfile::tempdir().expect("scratch root");
    let root = scratch.path();
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).expect("dpkg database");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("dpkg status");
    // The scratch database knows no libc6: the dependency is the host's.
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-depends", "--install"])
        .arg(&deb));
    let status = run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f=${Status} ${Version}", "xlb"]));
    assert_eq!(status, format!("install ok installed {version}"));

    let xlb = root.join("usr/bin/xlb");
    let printed = run(Command::new(&xlb).arg("--version"));
    assert_eq!(printed.trim(), format!("xlb {version}"));
    let sections = run(Command::new("readelf").arg("--section-headers").arg(&xlb));
    assert!(!sections.contains(".symtab"), "xlb is not stripped");
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/xlb.service")).expect("unit");
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ExecStart=/usr/bin/xlb run --config ")),
        "the packaged unit must start the packaged binary:\n{unit}"
    );
    assert!(!unit.contains("/usr/local/bin"), "{unit}");
    let page = run(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man1/xlb-run.1.gz")));
    assert!(page.contains(".TH xlb-run 1"), "{page}");

    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--remove", "xlb"]));
    assert!(!xlb.exists(), "dpkg --remove left {}", xlb.display());
}
