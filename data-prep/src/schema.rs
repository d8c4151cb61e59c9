//! The dataset's vocabulary: the tasks rows serve and the column names of the parquet
//! splits. Other crates (train, eval) read datasets through these names only.
//!
//! NOTE: `docs/prep.md` documents these columns; keep the two in sync.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Stable row id: `{source}:{line}` (plus `#k` when one line yields several rows).
pub const ID: &str = "id";
/// The [`Task`] as its string form.
pub const TASK: &str = "task";
/// The source's name from the recipe.
pub const SOURCE: &str = "source";
/// 1-based line (or row) of the source file the row came from.
pub const LINE: &str = "line";
/// The grouping key for splits (a report, a document, an ATT&CK object): all rows of a
/// group land in one split.
pub const GROUP: &str = "group";
/// The input text after cleaning.
pub const TEXT: &str = "text";
/// The input text as read, before cleaning.
pub const TEXT_RAW: &str = "text_raw";
/// Label strings: technique IDs (classification), IOC kinds (IOC extraction), entity types
/// (entity extraction); empty for summarisation and plain text.
pub const LABELS: &str = "labels";
/// The structured target as JSON: `{"techniques": [...]}`, `{"iocs": [{"kind", "value"}]}`,
/// `{"entities": [{"type", "text", "start", "end"}]}`, `{"summary": "..."}` or `{}`.
pub const TARGET: &str = "target";
/// The rendered prompt (instruction + input); training masks it.
pub const PROMPT: &str = "prompt";
/// The rendered completion the model learns to produce.
pub const COMPLETION: &str = "completion";
/// Chat messages as JSON (`[{"role", "content"}]`) for a model's own chat template.
pub const MESSAGES: &str = "messages";
/// Tokens in `prompt` with the recipe's tokenizer (null without one).
pub const PROMPT_TOKENS: &str = "prompt_tokens";
/// Tokens in `completion` with the recipe's tokenizer (null without one).
pub const COMPLETION_TOKENS: &str = "completion_tokens";
/// The split's name (only in memory; each split is its own file).
pub const SPLIT: &str = "split";

/// The columns of every split file, in order.
pub const COLUMNS: [&str; 14] = [
    ID,
    TASK,
    SOURCE,
    LINE,
    GROUP,
    TEXT,
    TEXT_RAW,
    LABELS,
    TARGET,
    PROMPT,
    COMPLETION,
    MESSAGES,
    PROMPT_TOKENS,
    COMPLETION_TOKENS,
];

/// What a row teaches or tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Text to the set of ATT&CK technique IDs it describes (multi-label).
    TechniqueClassification,
    /// Text to the list of typed indicators of compromise it contains.
    IocExtraction,
    /// Text to typed entity spans (malware, group, tool, technique, ...).
    EntityExtraction,
    /// A long text to a reference summary.
    Summarization,
    /// Plain CTI prose for continued pre-training.
    Text,
}

impl Task {
    /// Every task, in a fixed order.
    pub const ALL: [Task; 5] = [
        Task::TechniqueClassification,
        Task::IocExtraction,
        Task::EntityExtraction,
        Task::Summarization,
        Task::Text,
    ];

    /// The string stored in the `task` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::TechniqueClassification => "technique_classification",
            Task::IocExtraction => "ioc_extraction",
            Task::EntityExtraction => "entity_extraction",
            Task::Summarization => "summarization",
            Task::Text => "text",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Task {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Task::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Task::ALL.iter().map(|t| t.as_str()).collect();
                format!("unknown task `{s}`; expected one of {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_round_trip_and_unknown_is_named() {
        for t in Task::ALL {
            assert_eq!(t.as_str().parse::<Task>(), Ok(t));
            let json = serde_json::to_string(&t).expect("json");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        let err = "classify".parse::<Task>().expect_err("unknown");
        assert!(
            err.contains("classify") && err.contains("ioc_extraction"),
            "{err}"
        );
    }
}
