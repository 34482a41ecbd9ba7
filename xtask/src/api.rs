//! The checks on what operators and programs build on: the v1 proto
//! (`buf lint` with the STANDARD rules, `buf breaking` against the
//! committed baseline `host-native/proto/shoal-v1.binpb`), and the
//! Prometheus alert rules in `docs/` (`promtool check rules`).

use std::path::PathBuf;
use std::process::Command;

use super::{apt_install, have, root, step, target_dir, Result};

/// The buf release the proto checks run (from npm, `@bufbuild/buf`).
const BUF_VERSION: &str = "1.75.0";

/// The proto module: `buf.yaml`, `shoal/v1/shoal.proto`, the baseline.
fn proto_dir() -> PathBuf {
    root().join("host-native").join("proto")
}

/// A `buf` binary from npm, installed once next to the build outputs.
fn ensure_buf() -> Result<PathBuf> {
    let dir = target_dir().join("shoal-buf");
    let buf = dir.join("node_modules").join(".bin").join("buf");
    let version =
        Command::new(&buf).arg("--version").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if version.as_deref() == Some(BUF_VERSION) {
        return Ok(buf);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    step(
        &format!("npm install @bufbuild/buf@{BUF_VERSION} (proto checks)"),
        Command::new("npm").current_dir(&dir).args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            &format!("@bufbuild/buf@{BUF_VERSION}"),
        ]),
    )?;
    if buf.is_file() {
        Ok(buf)
    } else {
        Err(format!("npm did not install buf into {}", dir.display()))
    }
}

/// `buf lint` and `buf breaking` on the v1 proto.
pub(super) fn check_proto() -> Result {
    let buf = ensure_buf()?;
    step("buf lint (shoal.v1, STANDARD rules)", Command::new(&buf).current_dir(proto_dir()).arg("lint"))?;
    step(
        "buf breaking (shoal.v1 against its committed baseline shoal-v1.binpb)",
        Command::new(&buf).current_dir(proto_dir()).args(["breaking", "--against", "shoal-v1.binpb"]),
    )
}

/// Rewrites the baseline from the current proto: after a compatible
/// addition, so later changes are checked against it too.
pub(super) fn proto_baseline() -> Result {
    let buf = ensure_buf()?;
    check_proto()?;
    step(
        "buf build -o shoal-v1.binpb (new baseline)",
        Command::new(&buf).current_dir(proto_dir()).args(["build", "-o", "shoal-v1.binpb"]),
    )
}

/// `promtool check rules` on the sample alert rules (Debian's prometheus
/// package carries promtool).
pub(super) fn check_alert_rules() -> Result {
    if !have("promtool") {
        apt_install(&["prometheus"])?;
    }
    let rules = root().join("docs").join("prometheus").join("alerts.yml");
    step(
        "promtool check rules (docs/prometheus/alerts.yml)",
        Command::new("promtool").arg("check").arg("rules").arg(rules),
    )
}
