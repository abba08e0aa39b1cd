//! A Dockerfile's instructions as the judge's rules read them: continuations joined, comments
//! and blank lines dropped, each instruction one line of text as written (`COPY . .`).

use regex::Regex;

use super::format::DockerfileRule;

/// The instructions of a Dockerfile, in order.
pub fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comments may sit between continuation lines, as the builder allows.
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(body) => (body.trim_end(), true),
            None => (trimmed, false),
        };
        if !current.is_empty() && !body.is_empty() {
            current.push(' ');
        }
        current.push_str(body);
        if !continues && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Whether the instructions keep `rule`; `Err` with what is wrong, for the learner.
pub fn check_rule(instructions: &[String], rule: &DockerfileRule) -> Result<(), String> {
    let first_match = |pattern: &str| -> Result<Option<usize>, String> {
        let re =
            Regex::new(pattern).map_err(|err| format!("the lab's pattern {pattern:?}: {err}"))?;
        Ok(instructions.iter().position(|line| re.is_match(line)))
    };
    match rule {
        DockerfileRule::MultiStage { stages } => {
            let froms = instructions
                .iter()
                .filter(|line| keyword(line) == "FROM")
                .count();
            if froms >= *stages as usize {
                Ok(())
            } else {
                Err(format!(
                    "the Dockerfile has {froms} stage(s) (FROM lines); it needs at least {stages}"
                ))
            }
        }
        DockerfileRule::Order { first, then } => match (first_match(first)?, first_match(then)?) {
            (Some(a), Some(b)) if a < b => Ok(()),
            (Some(a), Some(b)) => Err(format!(
                "`{}` (line {}) should come before `{}` (line {})",
                instructions[a],
                a + 1,
                instructions[b],
                b + 1
            )),
            (None, _) => Err(format!("no instruction matches `{first}`")),
            (_, None) => Err(format!("no instruction matches `{then}`")),
        },
        DockerfileRule::Has { matches } => match first_match(matches)? {
            Some(_) => Ok(()),
            None => Err(format!("no instruction matches `{matches}`")),
        },
        DockerfileRule::HasNot { matches } => match first_match(matches)? {
            Some(at) => Err(format!("`{}` should not be there", instructions[at])),
            None => Ok(()),
        },
    }
}

fn keyword(instruction: &str) -> String {
    instruction
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKERFILE: &str = "# syntax\nFROM python:3.11-slim AS build\nWORKDIR /app\n\n\
        COPY requirements.txt .\nRUN pip install \\\n    --no-cache-dir \\\n  # why\n    -r requirements.txt\n\
        COPY . .\nFROM python:3.11-slim\nCOPY --from=build /app /app\n";

    #[test]
    fn continuations_are_joined_and_comments_dropped() {
        let lines = instructions(DOCKERFILE);
        assert_eq!(lines[0], "FROM python:3.11-slim AS build");
        assert_eq!(
            lines[3],
            "RUN pip install --no-cache-dir -r requirements.txt"
        );
        assert_eq!(lines.len(), 7, "{lines:?}");
    }

    #[test]
    fn rules_pass_and_fail_with_reasons() {
        let lines = instructions(DOCKERFILE);
        let order = |first: &str, then: &str| DockerfileRule::Order {
            first: first.into(),
            then: then.into(),
        };
        assert_eq!(
            check_rule(&lines, &DockerfileRule::MultiStage { stages: 2 }),
            Ok(())
        );
        let three = check_rule(&lines, &DockerfileRule::MultiStage { stages: 3 }).unwrap_err();
        assert!(three.contains("2 stage"), "{three}");
        assert_eq!(
            check_rule(&lines, &order("^COPY requirements", "^COPY \\. ")),
            Ok(())
        );
        let wrong = check_rule(&lines, &order("^COPY \\. ", "^COPY requirements")).unwrap_err();
        assert!(wrong.contains("should come before"), "{wrong}");
        let has = DockerfileRule::Has {
            matches: "--no-cache-dir".into(),
        };
        assert_eq!(check_rule(&lines, &has), Ok(()));
        let has_not = DockerfileRule::HasNot {
            matches: "^ADD ".into(),
        };
        assert_eq!(check_rule(&lines, &has_not), Ok(()));
    }
}
