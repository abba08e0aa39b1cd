//! Labs (docs/labs.md): lessons in a session, each a directory of `lab.toml`, step texts,
//! starter files, check scripts and a solution. This module is what can be known of a lab
//! without a session: reading and checking the directory (`catalogue.rs`), rendering its text
//! (`markdown.rs`), reading Dockerfiles (`dockerfile.rs`), what the assistant is told
//! (`prompt.rs`) and asking it (`assistant.rs`), and importing Killercoda scenarios
//! (`import.rs`). Running a judging against a session is the API's (`api/labs/`).

pub mod assistant;
mod catalogue;
pub mod dockerfile;
pub mod format;
pub mod import;
mod markdown;
pub mod prompt;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

pub use catalogue::{LabError, check_dir, load_catalogue};
use format::{CheckFile, LabFile, StepFile};

/// A lab read and checked: its file, its step texts and scripts loaded.
#[derive(Debug)]
pub struct Lab {
    pub file: LabFile,
    pub dir: PathBuf,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub struct Step {
    pub file: StepFile,
    pub markdown: String,
    pub html: String,
    /// The scripts of the step's `script` checks, by check id.
    pub scripts: BTreeMap<String, String>,
}

impl Step {
    pub fn checks(&self) -> &[CheckFile] {
        &self.file.checks
    }
}

impl Lab {
    pub fn id(&self) -> &str {
        &self.file.id
    }

    /// The starter files (`files/`), when the lab has any.
    pub fn starter_files(&self) -> Option<PathBuf> {
        let dir = self.dir.join("files");
        dir.is_dir().then_some(dir)
    }

    /// The step numbered `number` (1-based).
    pub fn step(&self, number: u32) -> Option<&Step> {
        let index = usize::try_from(number.checked_sub(1)?).ok()?;
        self.steps.get(index)
    }

    pub fn step_count(&self) -> u32 {
        u32::try_from(self.steps.len()).unwrap_or(u32::MAX)
    }

    pub fn summary(&self) -> berth_proto::lab::LabSummary {
        berth_proto::lab::LabSummary {
            id: self.file.id.clone(),
            title: self.file.title.clone(),
            summary: self.file.summary.clone(),
            difficulty: self.file.difficulty.clone(),
            template: self.file.template.clone(),
            ttl_minutes: self.file.ttl_minutes,
            docker: self.file.docker,
            step_count: self.step_count(),
        }
    }

    pub fn to_public(&self) -> berth_proto::lab::Lab {
        let steps = self
            .steps
            .iter()
            .zip(1..)
            .map(|(step, number)| berth_proto::lab::LabStep {
                number,
                id: step.file.id.clone(),
                title: step.file.title.clone(),
                markdown: step.markdown.clone(),
                html: step.html.clone(),
                hints: u32::try_from(step.file.hints.len()).unwrap_or(u32::MAX),
                checks: step
                    .file
                    .checks
                    .iter()
                    .map(|check| berth_proto::lab::LabCheckInfo {
                        id: check.id.clone(),
                        title: check.title.clone(),
                    })
                    .collect(),
            })
            .collect();
        berth_proto::lab::Lab {
            summary: self.summary(),
            steps,
        }
    }
}

/// Every lab of `[labs] dir`, by id.
#[derive(Debug, Default)]
pub struct Catalogue {
    labs: BTreeMap<String, Arc<Lab>>,
}

impl Catalogue {
    pub fn new(labs: impl IntoIterator<Item = Lab>) -> Self {
        Self {
            labs: labs
                .into_iter()
                .map(|lab| (lab.file.id.clone(), Arc::new(lab)))
                .collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Lab>> {
        self.labs.get(id).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Lab>> {
        self.labs.values()
    }

    pub fn is_empty(&self) -> bool {
        self.labs.is_empty()
    }
}
