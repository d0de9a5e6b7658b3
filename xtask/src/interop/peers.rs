//! Finding or installing the independent peers, and running them as child processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// Why a peer is not available (reported as SKIP).
pub type Unavailable = String;

/// The repository root (xtask's parent directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Scratch directory for certificates and peer logs (`/.interop/`, gitignored).
pub fn work_dir() -> PathBuf {
    repo_root().join(".interop")
}

fn run_quiet(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        let tail: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .rev()
            .take(5)
            .collect();
        Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ))
    }
}

fn has_program(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Python with aioquic importable: installs it with pip if missing.
pub fn aioquic() -> Result<PathBuf, Unavailable> {
    let python = PathBuf::from("python3");
    if !has_program("python3") {
        return Err("python3 is not installed".into());
    }
    let has = |p: &Path| {
        Command::new(p)
            .args(["-c", "import aioquic"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has(&python) {
        return Ok(python);
    }
    println!("   installing aioquic with pip");
    let pip = |extra: &[&str]| {
        let mut c = Command::new(&python);
        c.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(extra)
        .arg("aioquic");
        run_quiet(&mut c)
    };
    // Debian's Python refuses system-wide pip installs unless told otherwise (PEP 668).
    pip(&[])
        .or_else(|_| pip(&["--break-system-packages"]))
        .map_err(|e| format!("aioquic could not be installed: {e}"))?;
    if has(&python) {
        Ok(python)
    } else {
        Err("aioquic installed but does not import".into())
    }
}

fn npm_install(dir: &Path, marker: &str, what: &str) -> Result<(), Unavailable> {
    if dir.join("node_modules").join(marker).exists() {
        return Ok(());
    }
    if !has_program("npm") {
        return Err(format!("npm is not installed (needed for {what})"));
    }
    println!("   installing {what} with npm");
    run_quiet(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent"])
            .current_dir(dir),
    )
    .map_err(|e| format!("{what} could not be installed: {e}"))
}

/// Chromium and playwright-core: installs Debian's chromium (apt) and the npm package if
/// missing. Returns the chromium binary.
pub fn chromium() -> Result<PathBuf, Unavailable> {
    let bin = PathBuf::from("/usr/bin/chromium");
    if !bin.exists() {
        println!("   installing Debian's chromium with apt-get");
        let apt = |args: &[&str]| {
            run_quiet(
                Command::new("apt-get")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )
        };
        apt(&["update", "-qq"]).map_err(|e| format!("apt-get update failed: {e}"))?;
        apt(&[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "chromium",
        ])
        .map_err(|e| format!("chromium could not be installed: {e}"))?;
    }
    if !bin.exists() {
        return Err("chromium is not at /usr/bin/chromium after installing".into());
    }
    if !has_program("node") {
        return Err("node is not installed (needed to drive chromium)".into());
    }
    npm_install(
        &repo_root().join("interop/browser"),
        "playwright-core",
        "playwright-core",
    )?;
    Ok(bin)
}

/// `@fails-components/webtransport` in `interop/fails` (its HTTP/2 part is plain JavaScript;
/// the native HTTP/3 part is a separate optional package we do not install).
pub fn fails_components() -> Result<PathBuf, Unavailable> {
    if !has_program("node") {
        return Err("node is not installed".into());
    }
    let dir = repo_root().join("interop/fails");
    npm_install(
        &dir,
        "@fails-components/webtransport",
        "@fails-components/webtransport",
    )?;
    Ok(dir)
}

/// A child process (in its own process group) whose stdout lines are collected; stderr goes
/// to a log file. The whole group is killed on drop.
pub struct Peer {
    child: tokio::process::Child,
    pid: Option<u32>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// Where stderr (and a copy of stdout) goes.
    pub log: PathBuf,
}

impl Peer {
    /// Starts `cmd`; `name` names its log file in [`work_dir`]`/logs`.
    pub fn spawn(name: &str, cmd: Command) -> Result<Peer, String> {
        let dir = work_dir().join("logs");
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let log = dir.join(format!("{name}.log"));
        let err =
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", cmd.as_std().get_program()))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).await.is_err() {
                    break;
                }
            }
        });
        Ok(Peer {
            child,
            pid,
            lines: rx,
            seen: Vec::new(),
            log,
        })
    }

    /// Every stdout line so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Waits for a line starting with `prefix` (bounded by `timeout`); returns it.
    pub async fn wait_for(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return Ok(l.clone());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "no {prefix:?} line within {}s (log: {})",
                        timeout.as_secs(),
                        self.log.display()
                    ))
                }
                Ok(None) => {
                    return Err(format!(
                        "peer exited without printing {prefix:?} (log: {})",
                        self.log.display()
                    ))
                }
            }
        }
    }

    /// Waits (bounded) for the process to close its stdout and exit; returns every stdout
    /// line. On timeout the process group is killed and the lines so far are returned in the
    /// error.
    pub async fn finish(mut self, timeout: Duration) -> Result<Vec<String>, (String, Vec<String>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) => break,
                Err(_) => {
                    let why = format!(
                        "peer did not finish within {}s (log: {})",
                        timeout.as_secs(),
                        self.log.display()
                    );
                    return Err((why, std::mem::take(&mut self.seen)));
                }
            }
        }
        let _ = tokio::time::timeout_at(deadline, self.child.wait()).await;
        Ok(std::mem::take(&mut self.seen))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The peer may have children of its own (node → chromium): end its whole group, by
        // the group id of the process we started.
        if let Some(pid) = self.pid {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
    }
}

/// Parses `PASS name` / `FAIL name: why` lines.
pub fn parse_checks(lines: &[String]) -> Vec<(String, Result<(), String>)> {
    lines
        .iter()
        .filter_map(|l| {
            if let Some(name) = l.strip_prefix("PASS ") {
                Some((name.trim().to_string(), Ok(())))
            } else if let Some(rest) = l.strip_prefix("FAIL ") {
                let (name, why) = rest.split_once(':').unwrap_or((rest, ""));
                Some((name.trim().to_string(), Err(why.trim().to_string())))
            } else {
                None
            }
        })
        .collect()
}

/// A free UDP port on loopback (bound, then released for the peer to take).
pub fn free_udp_port() -> Result<u16, String> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free UDP port: {e}"))
}

/// A free TCP port on loopback (bound, then released for the peer to take).
pub fn free_tcp_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free TCP port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_lines_parse() {
        let lines = vec![
            "READY 1".to_string(),
            "PASS bidi".to_string(),
            "FAIL uni: echo was \"x\"".to_string(),
        ];
        let got = parse_checks(&lines);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], ("bidi".to_string(), Ok(())));
        assert_eq!(
            got[1],
            ("uni".to_string(), Err("echo was \"x\"".to_string()))
        );
    }
}
