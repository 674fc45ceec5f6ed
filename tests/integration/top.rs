//! `pyspy top` in a real terminal (tmux): the demo's hot function is on screen within 3 s, `q`
//! quits, and the program pyspy started is stopped with it.

use std::process::Command;
use std::time::{Duration, Instant};

use pyspy_tests::{interpreters, pyspy, workspace_root, Interpreter};

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        Tmux {
            socket: format!("pyspy-test-{}-{name}", std::process::id()),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-L").arg(&self.socket);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.cmd()
            .args(["has-session", "-t", "top"])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn top_shows_hot_function(interp: &Interpreter) -> Result<(), String> {
    let demo = std::fs::read_to_string(workspace_root().join("examples/demo.py")).unwrap();
    let staged = interp.stage("demo.py", &demo);
    let py = interp.command();
    let mut words = vec![pyspy().display().to_string(), "top".into(), "--".into()];
    words.push(py.get_program().to_string_lossy().into_owned());
    words.extend(py.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.push(staged.path.display().to_string());
    words.push("60".into());
    let command = words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    let tmux = Tmux::new(&interp.label.replace('.', "_"));
    let start = Instant::now();
    let out = tmux
        .cmd()
        .args(["new-session", "-d", "-s", "top", "-x", "160", "-y", "40"])
        .arg(format!("env LC_ALL=C.UTF-8 {command}"))
        .output()
        .map_err(|e| format!("tmux: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut screen;
    let shown = loop {
        screen = tmux.run(&["capture-pane", "-p", "-t", "top"]);
        let rows: Vec<&str> = screen.lines().filter(|l| l.contains('%')).collect();
        if rows
            .iter()
            .any(|r| r.contains("sieve (") || r.contains("fib ("))
            && screen.contains("Total Samples")
        {
            break true;
        }
        if start.elapsed() > Duration::from_secs(3) || !tmux.alive() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !shown {
        return Err(format!(
            "no hot function on screen after {:.1?}:\n{screen}",
            start.elapsed()
        ));
    }
    // Sort by total time, then quit: the session ends (pyspy exits and restores the terminal).
    tmux.run(&["send-keys", "-t", "top", "4"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.alive() {
        if Instant::now() > deadline {
            return Err(format!(
                "pyspy top did not quit on q:\n{}",
                tmux.run(&["capture-pane", "-p", "-t", "top"])
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "[{}] top: hot function shown within {:.1?}",
        interp.label,
        start.elapsed()
    );
    Ok(())
}

#[test]
fn top_in_tmux() {
    let have_tmux = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_tmux {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is missing: scripts/provision.sh installs it"
        );
        eprintln!("WARNING: tmux is missing (scripts/provision.sh installs it); skipping");
        return;
    }
    let all = interpreters();
    let picked: Vec<&Interpreter> = ["3.12", "3.14", "3.13-dbg", "3.14-dbg", "3.15-dbg"]
        .iter()
        .filter_map(|l| all.iter().find(|i| i.label == *l))
        .collect();
    let picked = if picked.is_empty() {
        all.iter().take(1).collect()
    } else {
        picked
    };
    let failures: Vec<String> = picked
        .iter()
        .filter_map(|i| {
            top_shows_hot_function(i)
                .err()
                .map(|e| format!("[{}] {e}", i.label))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
