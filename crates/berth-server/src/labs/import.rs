//! `berth labs import`: a Killercoda scenario (`index.json`, step texts, `verify` and
//! `background` scripts) as a Berth lab. Each step's `verify` becomes a `script` check, its
//! `background` the step's `setup`; the intro opens the first step and the finish closes the
//! last.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::catalogue::is_slug;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
struct Index {
    title: String,
    #[serde(default)]
    description: String,
    details: Details,
}

#[derive(Debug, Deserialize)]
struct Details {
    #[serde(default)]
    intro: Option<Page>,
    #[serde(default)]
    steps: Vec<KillercodaStep>,
    #[serde(default)]
    finish: Option<Page>,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    background: Option<String>,
}

#[derive(Debug, Deserialize)]
struct KillercodaStep {
    title: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    verify: Option<String>,
    #[serde(default)]
    background: Option<String>,
}

/// What an import wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub id: String,
    pub dir: PathBuf,
    pub steps: usize,
    /// Steps without a `verify` script, given a check that always asks for one.
    pub unverified: Vec<String>,
}

/// Imports the scenario in `source` into `target/<id>`, the lab's sessions made from
/// `template`. `target/<id>` must not exist yet.
pub fn import_killercoda(
    source: &Path,
    target: &Path,
    id: Option<&str>,
    template: &str,
) -> Result<Imported, ImportError> {
    let read = |relative: &str| -> Result<String, ImportError> {
        let path = source.join(relative);
        let inside = Path::new(relative).components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        if !inside {
            return Err(ImportError::Invalid(format!(
                "{relative:?} in index.json leaves the scenario's directory"
            )));
        }
        std::fs::read_to_string(&path).map_err(|err| ImportError::Read {
            path,
            message: err.to_string(),
        })
    };
    let index: Index =
        serde_json::from_str(&read("index.json")?).map_err(|err| ImportError::Read {
            path: source.join("index.json"),
            message: format!("not Killercoda's index.json: {err}"),
        })?;
    if index.details.steps.is_empty() {
        return Err(ImportError::Invalid(
            "index.json has no details.steps".into(),
        ));
    }
    let id = match id {
        Some(id) => id.to_owned(),
        None => slug(
            source
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(&index.title),
        ),
    };
    if !is_slug(&id) {
        return Err(ImportError::Invalid(format!(
            "{id:?} is not a lab id (lowercase letters, digits and -); pass --id"
        )));
    }
    let dir = target.join(&id);
    if dir.exists() {
        return Err(ImportError::Invalid(format!(
            "{} exists already; import into another directory or remove it",
            dir.display()
        )));
    }
    // Written beside it and renamed once whole: a failed import leaves nothing half-made.
    let staging = target.join(format!(".{id}.importing"));
    let _ = std::fs::remove_dir_all(&staging);
    let imported = write_lab(source, &staging, &id, template, &index, read);
    let renamed = imported.and_then(|(steps, unverified)| {
        std::fs::rename(&staging, &dir)
            .map(|()| (steps, unverified))
            .map_err(|err| ImportError::Read {
                path: dir.clone(),
                message: err.to_string(),
            })
    });
    match renamed {
        Ok((steps, unverified)) => Ok(Imported {
            id,
            dir,
            steps,
            unverified,
        }),
        Err(err) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(err)
        }
    }
}

/// Writes the lab into `dir`; the number of steps and the titles of those without `verify`.
fn write_lab(
    source: &Path,
    dir: &Path,
    id: &str,
    template: &str,
    index: &Index,
    read: impl Fn(&str) -> Result<String, ImportError>,
) -> Result<(usize, Vec<String>), ImportError> {
    let write = |relative: &str, text: &str| -> Result<(), ImportError> {
        let path = dir.join(relative);
        let failed = |err: std::io::Error| ImportError::Read {
            path: path.clone(),
            message: err.to_string(),
        };
        std::fs::create_dir_all(path.parent().unwrap_or(dir)).map_err(failed)?;
        std::fs::write(&path, text).map_err(failed)
    };

    let intro = match index.details.intro.as_ref().and_then(|p| p.text.as_deref()) {
        Some(text) => read(text)?,
        None => String::new(),
    };
    let intro_setup = match index
        .details
        .intro
        .as_ref()
        .and_then(|p| p.background.as_deref())
    {
        Some(script) => Some(read(script)?),
        None => None,
    };
    let finish = match index
        .details
        .finish
        .as_ref()
        .and_then(|p| p.text.as_deref())
    {
        Some(text) => read(text)?,
        None => String::new(),
    };
    let mut toml = format!(
        "# Imported from the Killercoda scenario {:?} by `berth labs import`.\n\
         id = {}\ntitle = {}\nsummary = {}\ntemplate = {}\n",
        source.display().to_string(),
        quote(id),
        quote(&index.title),
        quote(if index.description.trim().is_empty() {
            &index.title
        } else {
            index.description.trim()
        }),
        quote(template),
    );
    let mut unverified = Vec::new();
    let count = index.details.steps.len();
    for (i, step) in index.details.steps.iter().enumerate() {
        let number = i + 1;
        let step_id = format!("step-{number}");
        let mut text = match &step.text {
            Some(path) => read(path)?,
            None => String::new(),
        };
        if number == 1 && !intro.trim().is_empty() {
            text = format!("{}\n\n{text}", intro.trim_end());
        }
        if number == count && !finish.trim().is_empty() {
            text = format!("{}\n\n---\n\n{}", text.trim_end(), finish.trim());
        }
        let text_path = format!("steps/{number:02}-{}.md", slug(&step.title));
        write(&text_path, &text)?;
        toml.push_str(&format!(
            "\n[[steps]]\nid = {}\ntitle = {}\ntext = {}\n",
            quote(&step_id),
            quote(&step.title),
            quote(&text_path)
        ));
        let mut scripts = Vec::new();
        if number == 1
            && let Some(script) = &intro_setup
        {
            scripts.push(script.trim_end().to_owned());
        }
        if let Some(background) = &step.background {
            scripts.push(read(background)?.trim_end().to_owned());
        }
        let setup = scripts.join("\n");
        if !setup.trim().is_empty() {
            toml.push_str(&format!("setup = {}\n", quote(&setup)));
        }
        let script = match &step.verify {
            Some(verify) => read(verify)?,
            None => {
                unverified.push(step.title.clone());
                "echo 'FAIL: this step has no check yet; its author must add one'\nexit 1\n".into()
            }
        };
        let script_path = format!("checks/{number:02}-verify.sh");
        write(&script_path, &script)?;
        toml.push_str(&format!(
            "\n[[steps.checks]]\nid = \"verify\"\ntitle = {}\nkind = \"script\"\nscript = {}\n",
            quote(&format!("{} is done", step.title)),
            quote(&script_path)
        ));
    }
    write("lab.toml", &toml)?;
    Ok((count, unverified))
}

fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Lowercase letters, digits and single dashes, from any title.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    let out = out.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
    out.chars()
        .take(64)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/killercoda-hello")
    }

    #[test]
    fn a_scenario_becomes_a_lab_that_passes_the_check() {
        let out = tempfile::tempdir().unwrap();
        let imported = import_killercoda(&fixture(), out.path(), None, "base").unwrap();
        assert_eq!(
            (imported.id.as_str(), imported.steps),
            ("killercoda-hello", 2)
        );
        assert_eq!(
            crate::labs::check_dir(&imported.dir).unwrap(),
            ["killercoda-hello"]
        );
        let toml = std::fs::read_to_string(imported.dir.join("lab.toml")).unwrap();
        assert!(toml.contains("kind = \"script\""), "{toml}");
    }

    #[test]
    fn a_failed_import_leaves_nothing() {
        let scenario = tempfile::tempdir().unwrap();
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", fixture().display()))
            .arg(scenario.path())
            .status()
            .unwrap();
        assert!(copied.success());
        std::fs::remove_file(scenario.path().join("step2/verify.sh")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let err =
            import_killercoda(scenario.path(), out.path(), Some("hello"), "base").unwrap_err();
        assert!(err.to_string().contains("verify.sh"), "{err}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }

    #[test]
    fn titles_become_slugs() {
        assert_eq!(slug("Create a File!"), "create-a-file");
        assert_eq!(slug("01 -- Intro"), "intro");
    }
}
