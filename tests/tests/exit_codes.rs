//! Every verb exits with the code README documents, and with `--output json` prints one JSON
//! document even when it fails: bad input (missing, oversized, FIFO and device config files; a
//! wrong command line), nothing loaded at the pin path, and no privilege (run as `nobody` with
//! `setpriv`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use xlb_tests::{demo, require_privileges};

/// Files the cases name, in a directory of this test's own under /tmp (readable by nobody).
struct Files {
    dir: PathBuf,
    good: PathBuf,
    invalid: PathBuf,
    big: PathBuf,
    fifo: PathBuf,
    missing: PathBuf,
    no_pins: PathBuf,
}

impl Files {
    fn new(label: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("xlb-exit-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test dir");
        set_mode(&dir, 0o755);
        let good = dir.join("good.toml");
        let minimal = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/good/minimal.toml");
        let text = std::fs::read_to_string(&minimal)
            .expect("minimal config")
            .replace("interface = \"eth0\"", "interface = \"lo\"");
        std::fs::write(&good, text).expect("good config");
        let invalid = dir.join("invalid.toml");
        std::fs::write(&invalid, "[global]\ninterface = \"lo\"\nbogus = 1\n").expect("invalid");
        // Sparse: 17 MiB of nothing, one byte over the limit on disk costs nothing.
        let big = dir.join("big.toml");
        let file = std::fs::File::create(&big).expect("big config");
        file.set_len(17 << 20).expect("grow big config");
        let fifo = dir.join("fifo.toml");
        let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0, "mkfifo");
        for file in [&good, &invalid, &big] {
            set_mode(file, 0o644);
        }
        Files {
            missing: dir.join("missing.toml"),
            no_pins: Path::new("/sys/fs/bpf").join(format!("xlb-exit-none-{}", std::process::id())),
            dir,
            good,
            invalid,
            big,
            fifo,
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// One case: the arguments, the exit code README gives, and whether the verb takes `--output`.
struct Case {
    args: Vec<String>,
    code: i32,
    json: bool,
}

fn case(args: &[&str], code: i32) -> Case {
    let json = !matches!(args.first(), Some(&"run"));
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    if json {
        args.extend(["--output".into(), "json".into()]);
    }
    Case { args, code, json }
}

/// Runs every case (through `wrap`, e.g. setpriv) and checks its exit code and, for verbs
/// that print JSON, that stdout is one JSON object stating the same code (as `exit_code`, or
/// `code` in a verb's own report) and, for an error, the message.
fn check(cases: &[Case], wrap: &[&str]) {
    let xlb = demo::xlb_binary().expect("xlb binary");
    let mut failures = Vec::new();
    for case in cases {
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&xlb);
                command
            }
            None => Command::new(&xlb),
        };
        let out = command
            .args(&case.args)
            .env_remove("XLB_PIN_PATH")
            .output()
            .expect("run xlb");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut problems = Vec::new();
        if out.status.code() != Some(case.code) {
            problems.push(format!(
                "exited {:?}, README says {}",
                out.status.code(),
                case.code
            ));
        }
        if case.json {
            match serde_json::from_str::<Value>(&stdout) {
                Ok(Value::Object(document)) => {
                    let code = document.get("exit_code").or_else(|| document.get("code"));
                    if code != Some(&Value::from(case.code)) {
                        problems.push(format!("the JSON states code {code:?}"));
                    }
                    if case.code >= 2
                        && document.contains_key("exit_code")
                        && !document.contains_key("error")
                        && !document.contains_key("diagnostics")
                    {
                        problems.push("the JSON carries no error".into());
                    }
                }
                _ => problems.push("stdout is not one JSON object".into()),
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "xlb {}: {}\n  stdout: {stdout}\n  stderr: {stderr}",
                case.args.join(" "),
                problems.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Test that bad config files exit 2 in every verb that reads one (missing, a device, a FIFO,
/// over 16 MiB), an invalid config 1, a wrong command line 2, every verb that reads the live
/// state exits 3 when nothing is pinned where it looks, and another failure (no such
/// interface) 4; each with a JSON document.
#[test]
fn bad_input_and_nothing_loaded_exit_as_documented() {
    require_privileges!();
    let files = Files::new("input");
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let (good, invalid, big, fifo, missing, no_pins) = (
        path(&files.good),
        path(&files.invalid),
        path(&files.big),
        path(&files.fifo),
        path(&files.missing),
        path(&files.no_pins),
    );
    let mut cases = Vec::new();
    for bad in [&missing, &big, &fifo, &"/dev/zero".to_owned()] {
        cases.push(case(&["validate", bad], 2));
        cases.push(case(&["plan", bad], 2));
        cases.push(case(&["apply", bad, "--pin-path", &no_pins], 2));
        cases.push(case(&["audit", bad, "--pin-path", &no_pins], 2));
        cases.push(case(&["run", "--config", bad], 2));
    }
    cases.push(case(&["validate", &invalid], 1));
    for verb in ["plan", "apply", "audit"] {
        cases.push(case(&[verb, &invalid, "--pin-path", &no_pins], 1));
    }
    cases.push(case(&["run", "--config", &invalid], 1));
    for args in [
        &["status"][..],
        &["stats"],
        &["audit"],
        &["down"],
        &["apply", &good],
        &["explain", "198.18.0.1:40000", "198.18.1.10:80", "tcp"],
        &["backend", "drain", "198.18.1.10:80/tcp", "198.18.0.10"],
        &["backend", "enable", "198.18.1.10:80/tcp", "198.18.0.10"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--pin-path", &no_pins]);
        cases.push(case(&args, 3));
    }
    cases.push(case(&["backend", "drain", "web:80", "198.18.0.10"], 2));
    cases.push(case(&["status", "--no-such-flag"], 2));
    // Another failure: the interface does not exist (nothing is attached).
    cases.push(case(
        &["run", "--interface", "xlb-no-such-if", "--duration", "1"],
        4,
    ));
    cases.push(case(
        &["explain", "not-an-address", "198.18.1.10:80", "tcp"],
        2,
    ));
    check(&cases, &[]);
}

/// Test that without privilege (as `nobody`) every verb that touches the kernel exits 3 with
/// the fix, before anything else can fail: plan, apply, run (with a config or an interface),
/// status, stats, explain, audit, backend and down; each with a JSON document.
#[test]
fn no_privilege_exits_3_in_every_verb() {
    require_privileges!();
    let files = Files::new("nobody");
    let good = files.good.to_str().expect("path").to_owned();
    let cases = [
        case(&["plan", &good], 3),
        case(&["apply", &good], 3),
        case(&["run", "--config", &good, "--duration", "1"], 3),
        case(&["run", "--interface", "lo", "--duration", "1"], 3),
        case(&["status"], 3),
        case(&["stats"], 3),
        case(&["audit"], 3),
        case(&["audit", &good], 3),
        case(&["explain", "198.18.0.1:40000", "198.18.1.10:80", "tcp"], 3),
        case(
            &["backend", "disable", "198.18.1.10:80/tcp", "198.18.0.10"],
            3,
        ),
        case(&["down"], 3),
    ];
    check(
        &cases,
        &[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
        ],
    );
    // validate needs no privilege: the same user validates the same file.
    check(
        &[case(&["validate", &good], 0)],
        &[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
        ],
    );
}
