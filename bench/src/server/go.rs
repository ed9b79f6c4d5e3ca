//! The Go servers (`bench/go/main.go`): built with `go build` when `go` is on the PATH, skipped
//! with a note otherwise.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Builds the Go servers into `work/go-server`; `None` (with a printed note) when Go is not
/// installed. `build: false` reuses an earlier build if there is one.
pub fn build(work: &Path, build: bool) -> io::Result<Option<PathBuf>> {
    let out = work.join("go-server");
    if !build {
        return Ok(out.exists().then_some(out));
    }
    let Some(version) = version() else {
        eprintln!(
            "note: `go` is not on the PATH: the Go servers are skipped \
             (Debian: apt-get install golang-go)"
        );
        return Ok(None);
    };
    eprintln!("building the Go servers with {version}");
    let src = super::workspace_root().join("bench").join("go");
    let mut cmd = Command::new("go");
    cmd.args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        // Use the installed toolchain as it is; never fetch one.
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod");
    if std::env::var_os("HOME").is_none() && std::env::var_os("GOCACHE").is_none() {
        cmd.env("GOCACHE", work.join("go-cache"));
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(io::Error::other(format!("go build: {status}")));
    }
    Ok(Some(out))
}

/// `go version`'s output, if Go is installed.
pub fn version() -> Option<String> {
    let out = Command::new("go")
        .arg("version")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
