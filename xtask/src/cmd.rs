//! Running commands: print them, fail with their status, count test results.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// Prints `+ program args…` (with the env vars set on it) like `set -x`.
pub fn print_command(command: &Command) {
    let envs: Vec<String> = command
        .get_envs()
        .filter(|(key, _)| *key != "PATH")
        .filter_map(|(key, value)| {
            let value = value?;
            Some(format!(
                "{}={}",
                key.to_string_lossy(),
                value.to_string_lossy()
            ))
        })
        .collect();
    let args: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let dir = command
        .get_current_dir()
        .map(|dir| format!("(in {}) ", dir.display()))
        .unwrap_or_default();
    let mut line = String::from("+ ");
    line.push_str(&dir);
    for env in envs {
        line.push_str(&env);
        line.push(' ');
    }
    line.push_str(&args.join(" "));
    println!("{line}");
    let _ignored = std::io::stdout().flush();
}

/// Runs `command` with inherited stdio; fails unless it exits 0.
pub fn run(command: &mut Command) -> Result<()> {
    print_command(command);
    let status = command
        .status()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", command.get_program());
    }
    Ok(())
}

/// Runs `command` quietly and returns its output, whatever its status (for checks).
pub fn probe(command: &mut Command) -> Option<Output> {
    command.stdin(Stdio::null()).output().ok()
}

/// The stdout of a quiet check that exited 0, or `None`.
pub fn probe_stdout(command: &mut Command) -> Option<String> {
    probe(command)
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Test results summed over `cargo test` runs.
#[derive(Debug, Default)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
}

impl TestCounts {
    /// Adds a libtest closing line:
    /// `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; …`
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match what {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                _ => {}
            }
        }
    }
}

/// Runs a `cargo test` command, copying its stdout through while counting the
/// libtest result lines into `counts`. Returns whether it exited 0.
pub fn run_counting_tests(command: &mut Command, counts: &mut TestCounts) -> Result<bool> {
    print_command(command);
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let mut out = std::io::stdout();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading test output")?;
        counts.add_line(&line);
        writeln!(out, "{line}")?;
    }
    let status = child.wait()?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_libtest_result_lines() {
        let mut counts = TestCounts::default();
        counts.add_line(
            "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        );
        counts.add_line(
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        );
        counts.add_line("running 3 tests");
        assert_eq!((counts.passed, counts.failed), (4, 2));
    }
}
