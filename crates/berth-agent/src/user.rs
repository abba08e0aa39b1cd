//! How user processes are started: in the home directory, with a login-like environment.

use std::path::Path;

/// The shell for terminals: bash where the image has it, else sh (busybox images).
pub fn shell() -> &'static str {
    if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}

/// Variables every user process gets on top of the agent's own environment (which no longer
/// holds the agent secret).
pub fn base_env(home: &Path) -> Vec<(String, String)> {
    let mut env = vec![
        ("HOME".to_owned(), home.display().to_string()),
        ("USER".to_owned(), "user".to_owned()),
        ("LOGNAME".to_owned(), "user".to_owned()),
        ("SHELL".to_owned(), shell().to_owned()),
    ];
    if std::env::var_os("PATH").is_none() {
        env.push((
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ));
    }
    if std::env::var_os("LANG").is_none() {
        env.push(("LANG".to_owned(), "C.UTF-8".to_owned()));
    }
    env
}
