//! `.dockerignore` as the docker CLI applies it to a build context: the engine's classic
//! builder does not, so a context sent by anyone but the CLI (the build runner, the labs
//! judge) is filtered here, where the files are.
//!
//! Each line is a pattern on the context's relative path (`*`, `?`, `[...]` within one
//! segment, `**` across any number); `!` re-includes; the last matching line wins; a pattern
//! matching a directory excludes what is under it. The Dockerfile and `.dockerignore` are
//! always sent: the engine needs the first and drops both from the context itself when they
//! are listed.

#[derive(Debug, Default)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
    /// The Dockerfile the build names (`Dockerfile` when it names none): always sent.
    dockerfile: String,
}

#[derive(Debug)]
struct Rule {
    segments: Vec<String>,
    negated: bool,
}

impl DockerIgnore {
    /// The rules of a `.dockerignore`, for a build of `dockerfile` (relative to the context;
    /// `Dockerfile` when `None`).
    pub fn parse(text: &str, dockerfile: Option<&str>) -> Self {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| {
                let (negated, pattern) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line),
                };
                let segments: Vec<String> = pattern
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_owned)
                    .collect();
                (!segments.is_empty()).then_some(Rule { segments, negated })
            })
            .collect();
        let dockerfile = dockerfile
            .unwrap_or("Dockerfile")
            .trim_start_matches("./")
            .to_owned();
        Self { rules, dockerfile }
    }

    /// Whether the context leaves out `path` (relative, `/`-separated).
    pub fn excludes(&self, path: &str) -> bool {
        if path == self.dockerfile || path == ".dockerignore" {
            return false;
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut excluded = false;
        for rule in &self.rules {
            let hit = (1..=segments.len()).any(|n| matches(&rule.segments, &segments[..n]));
            if hit {
                excluded = !rule.negated;
            }
        }
        excluded
    }

    /// Whether some `!` line could bring back a path under an excluded directory, so the
    /// directory must still be walked.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|rule| rule.negated)
    }
}

fn matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            matches(rest, path) || (!path.is_empty() && matches(pattern, &path[1..]))
        }
        Some((first, rest)) => {
            !path.is_empty()
                && glob(first.as_bytes(), path[0].as_bytes())
                && matches(rest, &path[1..])
        }
    }
}

/// One segment against one pattern segment: `*`, `?`, `[a-z]`, `[^x]`, `\` escapes.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && glob(rest, &name[1..]),
        Some((b'[', rest)) => {
            let Some((&c, name_rest)) = name.split_first() else {
                return false;
            };
            let Some(end) = rest.iter().skip(1).position(|b| *b == b']').map(|i| i + 1) else {
                return false;
            };
            let (class, after) = (&rest[..end], &rest[end + 1..]);
            let (negated, class) = match class.split_first() {
                Some((b'^' | b'!', inner)) => (true, inner),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negated && glob(after, name_rest)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            name.first() == Some(&rest[0]) && glob(&rest[1..], &name[1..])
        }
        Some((&p, rest)) => name.first() == Some(&p) && glob(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_exclude_as_the_docker_cli_does() {
        let ignore = DockerIgnore::parse(
            "# secrets\n.env\n.git\n**/__pycache__\n*.pyc\nvenv/\ndocs/*.md\n!docs/README.md\nDockerfile\nbuild/\n",
            None,
        );
        for out in [
            ".env",
            ".git/HEAD",
            "__pycache__/app.cpython-311.pyc",
            "src/__pycache__/x.pyc",
            "app.pyc",
            "venv/bin/python",
            "docs/guide.md",
        ] {
            assert!(ignore.excludes(out), "{out}");
        }
        for kept in [
            "app.py",
            ".env.example",
            "src/app.pyc",
            "docs/README.md",
            "Dockerfile",
        ] {
            assert!(!ignore.excludes(kept), "{kept}");
        }
        assert!(ignore.has_exceptions());
        let named = DockerIgnore::parse("build/\n", Some("./build/Dockerfile.prod"));
        assert!(!named.excludes("build/Dockerfile.prod"));
        assert!(named.excludes("build/cache"));
    }

    #[test]
    fn segments_glob_with_classes_and_escapes() {
        assert!(glob(b"file[0-9].txt", b"file7.txt"));
        assert!(!glob(b"file[^0-9].txt", b"file7.txt"));
        assert!(glob(b"a?c", b"abc"));
        assert!(glob(b"\\*", b"*"));
        assert!(!glob(b"\\*", b"x"));
    }
}
