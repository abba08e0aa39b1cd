//! Reading a labs directory and checking every lab in it, at `berth serve`'s start and for
//! authors (`berth labs check`). Every error names the file and the field.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use regex::Regex;

use super::{
    Catalogue, Lab, Step,
    format::{CheckKind, DockerfileRule, LabFile, ScriptPlace},
    markdown,
};
use crate::config::TemplateConfig;

/// One thing wrong with a lab: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct LabError {
    pub file: PathBuf,
    /// `steps[1].checks[0].image`, or `-` for the file as a whole.
    pub field: String,
    pub message: String,
}

/// The largest step text or script a lab may have: they are held in memory and sent whole.
const MAX_TEXT_BYTES: u64 = 256 << 10;
const DIFFICULTIES: [&str; 3] = ["beginner", "intermediate", "advanced"];

/// Every lab under `dir` (each subdirectory with a `lab.toml`), checked against the
/// configuration's templates; all the errors of every lab when any is wrong.
pub fn load_catalogue(
    dir: &Path,
    templates: &BTreeMap<String, TemplateConfig>,
) -> Result<Catalogue, Vec<LabError>> {
    let dirs = lab_dirs(dir)?;
    let mut labs = Vec::new();
    let mut errors = Vec::new();
    for dir in dirs {
        match load_lab(&dir, Some(templates)) {
            Ok(lab) => labs.push(lab),
            Err(mut found) => errors.append(&mut found),
        }
    }
    if errors.is_empty() {
        Ok(Catalogue::new(labs))
    } else {
        Err(errors)
    }
}

/// `berth labs check DIR`: one lab's directory, or a directory of labs; templates are not
/// known here, so only the lab itself is checked. The ids of the labs found.
pub fn check_dir(dir: &Path) -> Result<Vec<String>, Vec<LabError>> {
    if dir.join("lab.toml").is_file() {
        return load_lab(dir, None).map(|lab| vec![lab.file.id]);
    }
    let dirs = lab_dirs(dir)?;
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    if dirs.is_empty() {
        errors.push(LabError {
            file: dir.to_owned(),
            field: "-".into(),
            message: "no lab.toml here, nor in any directory inside".into(),
        });
    }
    for lab in dirs {
        match load_lab(&lab, None) {
            Ok(lab) => ids.push(lab.file.id),
            Err(mut found) => errors.append(&mut found),
        }
    }
    if errors.is_empty() {
        Ok(ids)
    } else {
        Err(errors)
    }
}

/// The directories under `dir` that hold a `lab.toml`, in name order.
fn lab_dirs(dir: &Path) -> Result<Vec<PathBuf>, Vec<LabError>> {
    let entries = std::fs::read_dir(dir).map_err(|err| {
        vec![LabError {
            file: dir.to_owned(),
            field: "-".into(),
            message: format!("cannot read the labs directory: {err}"),
        }]
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("lab.toml").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Reads and checks one lab's directory.
pub(super) fn load_lab(
    dir: &Path,
    templates: Option<&BTreeMap<String, TemplateConfig>>,
) -> Result<Lab, Vec<LabError>> {
    let toml_path = dir.join("lab.toml");
    let mut errors = Errors {
        file: toml_path.clone(),
        found: Vec::new(),
    };
    let text = match read_text(&toml_path) {
        Ok(text) => text,
        Err(message) => {
            errors.add("-", message);
            return Err(errors.found);
        }
    };
    let file: LabFile = match toml::from_str(&text) {
        Ok(file) => file,
        Err(err) => {
            // toml names the line, column and key.
            errors.add("-", err.to_string().trim().replace('\n', " "));
            return Err(errors.found);
        }
    };
    check_lab_fields(&file, dir, templates, &mut errors);
    let mut steps = Vec::new();
    for (index, step) in file.steps.iter().enumerate() {
        let at = format!("steps[{index}]");
        let markdown = match safe_relative(&step.text) {
            Some(relative) => match read_text(&dir.join(relative)) {
                Ok(text) => text,
                Err(message) => {
                    errors.add(&format!("{at}.text"), message);
                    String::new()
                }
            },
            None => {
                errors.add(
                    &format!("{at}.text"),
                    "a path inside the lab's directory, such as \"steps/01-build.md\"",
                );
                String::new()
            }
        };
        let scripts = check_step_checks(step, &at, dir, &file, &mut errors);
        steps.push(Step {
            file: step.clone(),
            html: markdown::to_html(&markdown),
            markdown,
            scripts,
        });
    }
    if errors.found.is_empty() {
        Ok(Lab {
            file,
            dir: dir.to_owned(),
            steps,
        })
    } else {
        Err(errors.found)
    }
}

struct Errors {
    file: PathBuf,
    found: Vec<LabError>,
}

impl Errors {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.found.push(LabError {
            file: self.file.clone(),
            field: field.to_owned(),
            message: message.into(),
        });
    }
}

fn check_lab_fields(
    file: &LabFile,
    dir: &Path,
    templates: Option<&BTreeMap<String, TemplateConfig>>,
    errors: &mut Errors,
) {
    let dir_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if !is_slug(&file.id) {
        errors.add(
            "id",
            "1 to 64 of lowercase letters, digits and -, starting with a letter",
        );
    } else if file.id != dir_name {
        errors.add(
            "id",
            format!("{:?} must be the directory's name, {dir_name:?}", file.id),
        );
    }
    for (field, value) in [("title", &file.title), ("summary", &file.summary)] {
        if value.trim().is_empty() {
            errors.add(field, "must not be empty");
        }
    }
    if !DIFFICULTIES.contains(&file.difficulty.as_str()) {
        errors.add("difficulty", format!("one of {}", DIFFICULTIES.join(", ")));
    }
    if !(1..=24 * 60).contains(&file.ttl_minutes) {
        errors.add("ttl_minutes", "from 1 to 1440");
    }
    if file.steps.is_empty() {
        errors.add("steps", "a lab needs at least one [[steps]]");
    }
    if let Some(templates) = templates {
        match templates.get(&file.template) {
            None => errors.add(
                "template",
                format!(
                    "{:?} is not a template of the configuration (it has: {})",
                    file.template,
                    templates.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ),
            Some(template) if file.docker && !template.docker.enabled => errors.add(
                "template",
                format!(
                    "the lab needs Docker, and template {:?} has no `docker.enabled`",
                    file.template
                ),
            ),
            // A lab starts (and restarts) from its own files, and a restart makes the new
            // session before the old one goes: a home kept between sessions allows neither.
            Some(template) if template.home == crate::config::HomeMode::Persistent => errors.add(
                "template",
                format!(
                    "template {:?} has home = \"persistent\"; a lab needs a home of its own \
                     in each session",
                    file.template
                ),
            ),
            Some(_) => {}
        }
    }
    for (index, path) in file.ai.files.iter().enumerate() {
        if safe_relative(path).is_none() {
            errors.add(
                &format!("ai.files[{index}]"),
                "a path relative to the session's home",
            );
        }
    }
    let mut seen = BTreeSet::new();
    for (index, step) in file.steps.iter().enumerate() {
        let at = format!("steps[{index}]");
        id_and_title(errors, &at, &step.id, &step.title, &mut seen);
        if step.checks.is_empty() {
            errors.add(
                &format!("steps[{index}].checks"),
                "a step needs at least one check",
            );
        }
    }
}

/// Checks a step's checks; the scripts of its `script` checks, read.
fn check_step_checks(
    step: &super::format::StepFile,
    at: &str,
    dir: &Path,
    lab: &LabFile,
    errors: &mut Errors,
) -> BTreeMap<String, String> {
    let mut scripts = BTreeMap::new();
    let mut ids = BTreeSet::new();
    // Images are tagged by a `docker_build` of the same judging, before the checks that use them.
    let mut built = BTreeSet::new();
    for (index, check) in step.checks.iter().enumerate() {
        let at = format!("{at}.checks[{index}]");
        id_and_title(errors, &at, &check.id, &check.title, &mut ids);
        let image_ref = |image: &str, field: &str, errors: &mut Errors| {
            if !built.contains(image) {
                errors.add(
                    &format!("{at}.{field}"),
                    format!("{image:?} is not tagged by a docker_build check before this one"),
                );
            }
        };
        let mut regexes: Vec<(&str, &String)> = Vec::new();
        let needs_docker = matches!(
            check.kind,
            CheckKind::DockerBuild { .. }
                | CheckKind::ImageSizeBelow { .. }
                | CheckKind::ImageLayers { .. }
                | CheckKind::HttpProbe { image: Some(_), .. }
                | CheckKind::Script {
                    run_in: ScriptPlace::Image,
                    ..
                }
        );
        if needs_docker && !lab.docker {
            errors.add(&format!("{at}.kind"), "needs `docker = true` in the lab");
        }
        match &check.kind {
            CheckKind::FileExists { path } => relative(path, &format!("{at}.path"), errors),
            CheckKind::FileMatches {
                path,
                matches,
                not_matches,
            } => {
                relative(path, &format!("{at}.path"), errors);
                if matches.is_empty() && not_matches.is_empty() {
                    errors.add(&format!("{at}.matches"), "give `matches` or `not_matches`");
                }
                regexes.extend(matches.iter().map(|m| ("matches", m)));
                regexes.extend(not_matches.iter().map(|m| ("not_matches", m)));
            }
            CheckKind::Command { run, stdout, .. } => {
                if run.trim().is_empty() {
                    errors.add(&format!("{at}.run"), "must not be empty");
                }
                regexes.extend(stdout.iter().map(|m| ("stdout", m)));
            }
            CheckKind::DockerBuild {
                context,
                dockerfile,
                tag,
                plant,
                cached_after_touching,
            } => {
                relative(context, &format!("{at}.context"), errors);
                if let Some(dockerfile) = dockerfile {
                    relative(dockerfile, &format!("{at}.dockerfile"), errors);
                }
                for path in plant.keys() {
                    relative(path, &format!("{at}.plant"), errors);
                }
                if let Some(path) = cached_after_touching {
                    relative(path, &format!("{at}.cached_after_touching"), errors);
                }
                if !is_tag(tag) {
                    errors.add(
                        &format!("{at}.tag"),
                        "a lowercase image name such as \"app\"",
                    );
                }
                built.insert(tag.clone());
            }
            CheckKind::ImageSizeBelow { image, max_mb } => {
                image_ref(image, "image", errors);
                if *max_mb == 0 {
                    errors.add(&format!("{at}.max_mb"), "must be above 0");
                }
            }
            CheckKind::ImageLayers {
                image, created_by, ..
            } => {
                image_ref(image, "image", errors);
                regexes.extend(created_by.iter().map(|m| ("created_by", m)));
            }
            CheckKind::HttpProbe {
                image, path, body, ..
            } => {
                if let Some(image) = image {
                    image_ref(image, "image", errors);
                }
                if !path.starts_with('/') {
                    errors.add(&format!("{at}.path"), "must start with /");
                }
                regexes.extend(body.iter().map(|m| ("body", m)));
            }
            CheckKind::Dockerfile { path, rules } => {
                relative(path, &format!("{at}.path"), errors);
                if rules.is_empty() {
                    errors.add(&format!("{at}.rules"), "at least one rule");
                }
                for rule in rules {
                    match rule {
                        DockerfileRule::Order { first, then } => {
                            regexes.push(("rules.first", first));
                            regexes.push(("rules.then", then));
                        }
                        DockerfileRule::Has { matches } | DockerfileRule::HasNot { matches } => {
                            regexes.push(("rules.matches", matches));
                        }
                        DockerfileRule::MultiStage { .. } => {}
                    }
                }
            }
            CheckKind::Script {
                script,
                run_in,
                image,
            } => {
                match (run_in, image) {
                    (ScriptPlace::Image, Some(image)) => image_ref(image, "image", errors),
                    (ScriptPlace::Image, None) => {
                        errors.add(&format!("{at}.image"), "run_in = \"image\" needs the image");
                    }
                    (ScriptPlace::Session, Some(_)) => {
                        errors.add(&format!("{at}.image"), "only with run_in = \"image\"");
                    }
                    (ScriptPlace::Session, None) => {}
                }
                match safe_relative(script).filter(|p| p.starts_with("checks")) {
                    Some(relative) => match read_text(&dir.join(relative)) {
                        Ok(text) => {
                            scripts.insert(check.id.clone(), text);
                        }
                        Err(message) => errors.add(&format!("{at}.script"), message),
                    },
                    None => errors.add(
                        &format!("{at}.script"),
                        "a file of the lab's checks/ directory, such as \"checks/ignored.sh\"",
                    ),
                }
            }
        }
        for (field, pattern) in regexes {
            if let Err(err) = Regex::new(pattern) {
                errors.add(
                    &format!("{at}.{field}"),
                    format!("not a regular expression: {err}"),
                );
            }
        }
    }
    scripts
}

/// A step's or a check's `id` (a slug, not among `seen` yet) and `title` (not empty).
fn id_and_title<'a>(
    errors: &mut Errors,
    at: &str,
    id: &'a str,
    title: &str,
    seen: &mut BTreeSet<&'a str>,
) {
    if !is_slug(id) {
        errors.add(
            &format!("{at}.id"),
            "1 to 64 of lowercase letters, digits and -, starting with a letter",
        );
    } else if !seen.insert(id) {
        errors.add(&format!("{at}.id"), format!("{id:?} is used twice"));
    }
    if title.trim().is_empty() {
        errors.add(&format!("{at}.title"), "must not be empty");
    }
}

fn relative(path: &str, field: &str, errors: &mut Errors) {
    if safe_relative(path).is_none() {
        errors.add(field, "a path relative to the session's home, without `..`");
    }
}

/// `path` when it is relative and stays below where it starts.
fn safe_relative(path: &str) -> Option<&Path> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && p.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
    ok.then_some(p)
}

fn read_text(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|err| format!("{}: {err}", path.display()))?;
    if meta.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "{} is larger than {} KiB",
            path.display(),
            MAX_TEXT_BYTES >> 10
        ));
    }
    std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))
}

pub(super) fn is_slug(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_tag(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, path: &str, text: &str) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const GOOD: &str = r#"
id = "hello"
title = "Hello"
summary = "Say hello."
template = "docker"
docker = true

[[steps]]
id = "write"
title = "Write a file"
text = "steps/01-write.md"
hints = ["Look at echo."]

[[steps.checks]]
id = "exists"
title = "hello.txt exists"
kind = "file_exists"
path = "hello.txt"

[[steps.checks]]
id = "build"
title = "It builds"
kind = "docker_build"
tag = "app"

[[steps.checks]]
id = "small"
title = "It is small"
kind = "image_size_below"
image = "app"
max_mb = 100

[[steps.checks]]
id = "inside"
title = "The image is right"
kind = "script"
script = "checks/inside.sh"
run_in = "image"
image = "app"
"#;

    #[test]
    fn a_good_lab_loads_with_its_text_and_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let lab = dir.path().join("hello");
        write(&lab, "lab.toml", GOOD);
        write(&lab, "steps/01-write.md", "# Write\n");
        write(&lab, "checks/inside.sh", "test -f /app/x\n");
        let loaded = load_lab(&lab, None).unwrap();
        assert_eq!(loaded.steps[0].html, "<h1>Write</h1>\n");
        assert_eq!(loaded.steps[0].scripts["inside"], "test -f /app/x\n");
        assert_eq!(check_dir(dir.path()).unwrap(), vec!["hello".to_owned()]);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let lab = dir.path().join("other");
        let broken = GOOD
            .replace("image = \"app\"\nmax_mb", "image = \"nope\"\nmax_mb")
            .replace("checks/inside.sh", "../inside.sh")
            .replace("\"hello\"", "\"hello\"\ndifficulty = \"easy\"");
        write(&lab, "lab.toml", &broken);
        let errors = load_lab(&lab, None).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "id",
                "difficulty",
                "steps[0].text",
                "steps[0].checks[2].image",
                "steps[0].checks[3].script"
            ],
            "{errors:#?}"
        );
        assert!(errors.iter().all(|e| e.file == lab.join("lab.toml")));
        assert!(
            errors[0]
                .to_string()
                .contains("must be the directory's name"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let lab = dir.path().join("hello");
        for (typo, named) in [
            ("kind = \"file_exist\"", "file_exist"),
            ("kind = \"file_exists\"\nmax = 1", "max"),
        ] {
            write(
                &lab,
                "lab.toml",
                &GOOD.replace("kind = \"file_exists\"", typo),
            );
            let errors = load_lab(&lab, None).unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].message.contains(named), "{}", errors[0].message);
        }
    }

    #[test]
    fn templates_of_the_configuration_are_checked_at_serve_time() {
        let dir = tempfile::tempdir().unwrap();
        let lab = dir.path().join("hello");
        write(&lab, "lab.toml", GOOD);
        write(&lab, "steps/01-write.md", "# Write\n");
        write(&lab, "checks/inside.sh", "true\n");
        let mut templates = BTreeMap::from([("docker".to_owned(), TemplateConfig::default())]);
        let errors = load_catalogue(dir.path(), &templates).unwrap_err();
        assert!(
            errors[0].message.contains("no `docker.enabled`"),
            "{errors:?}"
        );
        templates.get_mut("docker").unwrap().docker.enabled = true;
        templates.get_mut("docker").unwrap().home = crate::config::HomeMode::Persistent;
        let errors = load_catalogue(dir.path(), &templates).unwrap_err();
        assert!(errors[0].message.contains("persistent"), "{errors:?}");
        templates.get_mut("docker").unwrap().home = crate::config::HomeMode::Session;
        let catalogue = load_catalogue(dir.path(), &templates).unwrap();
        assert!(catalogue.get("hello").is_some());
    }
}
