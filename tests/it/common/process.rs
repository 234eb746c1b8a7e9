//! The built binary run as a process, its output lines collected as they come.

use super::*;

/// The built `embedgate` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_embedgate");

/// A running `embedgate` process whose output lines are collected as they come.
pub struct Running {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub fn spawn(command: &mut Command) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("embedgate starts");
        let (tx, lines) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle` and returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        self.wait_for_after(0, needle)
    }

    /// Where the next [`Running::wait_for_after`] starts looking.
    pub fn mark(&self) -> usize {
        self.seen.len()
    }

    /// Waits for a line containing `needle` printed after `mark`.
    pub fn wait_for_after(&mut self, mark: usize, needle: &str) -> String {
        if let Some(line) = self.seen[mark..].iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
        panic!(
            "no line with {needle:?} after line {mark}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    /// Sends `signal` (a `kill` name such as `HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Sends SIGTERM and waits for a clean exit; returns everything printed.
    pub fn terminate(mut self) -> String {
        self.signal("TERM");
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "exit after SIGTERM: {exit}");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The URL in a "listening on" log line.
pub fn listening_url(line: &str) -> String {
    let start = line.find("://").expect("listening line has a URL");
    let start = line[..start]
        .rfind(|c: char| !c.is_ascii_alphabetic())
        .map_or(0, |i| i + 1);
    line[start..]
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap()
        .to_string()
}
