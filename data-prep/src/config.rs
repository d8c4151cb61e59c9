//! The prep recipe (`configs/prep/*.toml`): sources, cleaning, de-duplication, splits,
//! prompts and token limits. Unknown keys are rejected; defaults live here, in code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dedup::MinHashConfig;
use crate::error::{Error, Result};
use crate::schema::Task;
use crate::split::SplitConfig;

/// A whole recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepConfig {
    /// Name and seed.
    #[serde(default)]
    pub dataset: DatasetSection,
    /// The ATT&CK catalog that validates technique labels.
    #[serde(default)]
    pub attack: AttackSection,
    /// The inputs, read in order.
    pub sources: Vec<SourceConfig>,
    /// Text cleaning.
    #[serde(default)]
    pub clean: CleanSection,
    /// Indicator handling.
    #[serde(default)]
    pub ioc: IocSection,
    /// Duplicate removal.
    #[serde(default)]
    pub dedup: DedupSection,
    /// Split fractions and rules.
    #[serde(default)]
    pub split: SplitSection,
    /// Prompt templates, per task (`[prompt.technique_classification]`, ...).
    #[serde(default)]
    pub prompt: PromptSection,
    /// Token statistics and length limits.
    #[serde(default)]
    pub tokens: TokensSection,
    /// The rejected-row threshold.
    #[serde(default)]
    pub reject: RejectSection,
}

/// `[dataset]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetSection {
    /// A name recorded in the manifest.
    pub name: String,
    /// Seed of every random choice (splits, MinHash, sampling).
    pub seed: u64,
    /// Rows read, cleaned and rendered at a time. Memory for texts is about this many rows
    /// in each of a few stages; the dataset does not depend on it.
    pub chunk_rows: usize,
}

impl Default for DatasetSection {
    fn default() -> Self {
        Self {
            name: "dataset".into(),
            seed: 20250607,
            chunk_rows: 8192,
        }
    }
}

/// What to do with a revoked or deprecated technique label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelPolicy {
    /// Map a revoked ID to its replacement; reject the row when none is known.
    Map,
    /// Reject the row.
    Reject,
    /// Drop the label and keep the row (with its other labels).
    Drop,
    /// Keep the label as written.
    Keep,
}

/// `[attack]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttackSection {
    /// The technique table (`.tsv`) or a STIX bundle (`.json`); empty: accept any
    /// well-formed ID.
    pub techniques: String,
    /// Fold sub-techniques into their parents (`T1059.001` → `T1059`).
    pub fold_subtechniques: bool,
    /// Revoked IDs: `map` (default), `reject`, `drop` or `keep`.
    pub revoked: LabelPolicy,
    /// Deprecated IDs: `reject` (default), `drop` or `keep`.
    pub deprecated: LabelPolicy,
    /// Unknown (well-formed but absent) IDs: `reject` (default), `drop` or `keep`.
    pub unknown: LabelPolicy,
    /// Explicit `revoked = replacement` pairs; they win over the table's own.
    pub replacements: BTreeMap<String, String>,
}

impl Default for AttackSection {
    fn default() -> Self {
        Self {
            techniques: String::new(),
            fold_subtechniques: false,
            revoked: LabelPolicy::Map,
            deprecated: LabelPolicy::Reject,
            unknown: LabelPolicy::Reject,
            replacements: BTreeMap::new(),
        }
    }
}

/// The format of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// TRAM single-label sentences: `text`, `label`, `doc_id`.
    TramSingleLabel,
    /// TRAM bootstrap or negative sentences: `text`, `labels`.
    TramSentences,
    /// TRAM annotated reports: `doc_id`, `text`, `annotations`; see `unit`.
    TramReports,
    /// ATT&CK procedure examples: `technique_id`, `source_id`, `text`.
    AttackProcedures,
    /// ATT&CK groups/software/campaigns (`id`, `name`, `description`) as plain text.
    AttackDescriptions,
    /// A STIX 2.0/2.1 bundle: `uses` relationships become labelled procedures.
    Stix,
    /// IOC sentences: `text`, `iocs` [{`type`, `value`}].
    IocSentences,
    /// AnnoCTR entity linking: a mention in its sentence, linked to an ATT&CK ID; mentions
    /// linked to techniques (`T…`) become technique-classification rows.
    AnnoctrLinking,
    /// CoNLL-style BIO file: a token and tag columns per line, blank line between
    /// sentences, `<DOCSTART>` (or `-DOCSTART-`) between documents.
    Bio,
    /// Actor summaries (`text`, `group_id`) paired with ATT&CK group descriptions.
    ActorSummaries,
    /// Your own JSON Lines file, with `columns`.
    Jsonl,
    /// Your own CSV file (header row), with `columns`.
    Csv,
    /// Your own Parquet file, with `columns`.
    Parquet,
}

/// How TRAM reports become rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportUnit {
    /// One row per annotated span, labelled with its technique(s).
    #[default]
    Span,
    /// One row per report, labelled with all its techniques.
    Document,
}

/// Column mapping for `jsonl`, `csv` and `parquet` sources. Only `text` is required.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnMap {
    /// The input text.
    pub text: String,
    /// A row id (else the line number).
    pub id: Option<String>,
    /// The split group (a report id); else each row is its own group.
    pub group: Option<String>,
    /// Labels: a list, or a string split on `label_separator`.
    pub labels: Option<String>,
    /// The separator of string labels (default `,`).
    pub label_separator: Option<String>,
    /// The reference summary (summarisation).
    pub summary: Option<String>,
}

/// One `[[sources]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A short name, used in row ids and the manifest.
    pub name: String,
    /// The format.
    pub kind: SourceKind,
    /// The file (`.gz` is decompressed for line-based formats).
    pub path: String,
    /// The task its rows serve (each kind has a default).
    #[serde(default)]
    pub task: Option<Task>,
    /// Keep only the first N rows read (after rejects).
    #[serde(default)]
    pub limit: Option<usize>,
    /// `tram_reports`: one row per span or per document.
    #[serde(default)]
    pub unit: ReportUnit,
    /// `bio`: which tag column (1-based, after the token) holds the entity tags.
    #[serde(default)]
    pub tag_column: Option<usize>,
    /// `bio`: entity types to keep (empty: all).
    #[serde(default)]
    pub entity_types: Vec<String>,
    /// `actor_summaries`: the ATT&CK groups file whose descriptions are the summaries.
    #[serde(default)]
    pub groups: Option<String>,
    /// `jsonl`/`csv`/`parquet`: the column mapping.
    #[serde(default)]
    pub columns: Option<ColumnMap>,
}

impl SourceConfig {
    /// The task of this source's rows.
    pub fn task(&self) -> Task {
        self.task.unwrap_or(match self.kind {
            SourceKind::IocSentences => Task::IocExtraction,
            SourceKind::Bio => Task::EntityExtraction,
            SourceKind::ActorSummaries => Task::Summarization,
            SourceKind::AttackDescriptions => Task::Text,
            _ => Task::TechniqueClassification,
        })
    }
}

/// Unicode normalisation form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnicodeForm {
    /// Canonical composition.
    Nfc,
    /// Compatibility composition (folds full-width forms, ligatures).
    Nfkc,
    /// Leave as is.
    None,
}

/// `[clean]`. The original text is always kept in `text_raw`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CleanSection {
    /// Unicode normalisation (`nfc`, `nfkc`, `none`).
    pub unicode: UnicodeForm,
    /// Remove ATT&CK `(Citation: ...)` markers.
    pub strip_citations: bool,
    /// Replace markdown links `[text](url)` by their text.
    pub strip_markdown_links: bool,
    /// Collapse whitespace runs to one space and trim.
    pub collapse_whitespace: bool,
    /// Reject rows whose cleaned text is shorter (characters).
    pub min_chars: usize,
    /// Reject rows whose cleaned text is longer (characters); 0 = no limit.
    pub max_chars: usize,
}

impl Default for CleanSection {
    fn default() -> Self {
        Self {
            unicode: UnicodeForm::Nfc,
            strip_citations: true,
            strip_markdown_links: true,
            collapse_whitespace: true,
            min_chars: 1,
            max_chars: 0,
        }
    }
}

/// `[ioc]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IocSection {
    /// Show indicators defanged (`hxxp://example[.]com`) in prompts and completions;
    /// otherwise refanged. Targets always hold the canonical refanged value.
    pub defang_in_prompts: bool,
}

/// `[dedup]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupSection {
    /// Drop rows whose normalised text repeats an earlier row of the same task.
    pub exact: bool,
    /// Union the labels of exact duplicates into the kept row (technique classification).
    pub merge_labels: bool,
    /// Drop near duplicates (MinHash + LSH).
    pub near: bool,
    /// Estimated Jaccard similarity at or above which two texts are near duplicates.
    pub threshold: f64,
    /// MinHash permutations.
    pub num_perm: usize,
    /// LSH bands (must divide `num_perm`).
    pub bands: usize,
    /// Words per shingle.
    pub shingle_words: usize,
}

impl Default for DedupSection {
    fn default() -> Self {
        let m = MinHashConfig::default();
        Self {
            exact: true,
            merge_labels: true,
            near: true,
            threshold: m.threshold,
            num_perm: m.num_perm,
            bands: m.bands,
            shingle_words: m.shingle_words,
        }
    }
}

/// `[split]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitSection {
    /// Fraction of rows for training.
    pub train: f64,
    /// Fraction for validation.
    pub validation: f64,
    /// Fraction for test.
    pub test: f64,
    /// Stratify by label (the row's rarest label) so every split sees each label.
    pub stratify: bool,
}

impl Default for SplitSection {
    fn default() -> Self {
        Self {
            train: 0.8,
            validation: 0.1,
            test: 0.1,
            stratify: true,
        }
    }
}

/// One task's prompt: Jinja templates over `text`, `instruction` and the target's fields
/// (`techniques`, `iocs`, `entities`, `summary`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptTemplate {
    /// The task instruction.
    pub instruction: Option<String>,
    /// The prompt template (instruction + input).
    pub input: Option<String>,
    /// The completion template.
    pub completion: Option<String>,
}

/// `[prompt]`. Keys other than `system` must be task names (a typo fails as an unknown
/// task).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptSection {
    /// The system message of the `messages` column.
    pub system: Option<String>,
    /// Per-task overrides of the built-in templates.
    #[serde(flatten)]
    pub tasks: BTreeMap<Task, PromptTemplate>,
}

/// What to do with a row longer than `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Reject it.
    #[default]
    Drop,
    /// Shorten its input text until prompt + completion fit.
    Truncate,
}

/// `[tokens]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensSection {
    /// A `tokenizer.json` (or a model folder holding one) for token counts.
    pub tokenizer: Option<String>,
    /// Most prompt + completion tokens per row; 0 = no limit. Needs `tokenizer`.
    pub max_tokens: usize,
    /// `drop` or `truncate` rows over the limit.
    pub overflow: Overflow,
}

/// `[reject]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RejectSection {
    /// Fail when more than this fraction of rows read is rejected.
    pub max_fraction: f64,
}

impl Default for RejectSection {
    fn default() -> Self {
        Self { max_fraction: 0.05 }
    }
}

impl PrepConfig {
    /// Parses a recipe from TOML text.
    ///
    /// # Errors
    /// Not TOML, an unknown key or a wrong type (named by the parser), or a value out of
    /// range (every one listed).
    pub fn from_toml(text: &str, origin: &Path) -> Result<PrepConfig> {
        let cfg: PrepConfig = toml::from_str(text).map_err(|e| Error::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The MinHash settings of `[dedup]`.
    pub fn minhash(&self) -> MinHashConfig {
        MinHashConfig {
            num_perm: self.dedup.num_perm,
            bands: self.dedup.bands,
            shingle_words: self.dedup.shingle_words,
            threshold: self.dedup.threshold,
            seed: self.dataset.seed,
        }
    }

    /// The split settings of `[split]`.
    pub fn splits(&self) -> SplitConfig {
        SplitConfig {
            train: self.split.train,
            validation: self.split.validation,
            test: self.split.test,
            seed: self.dataset.seed,
        }
    }

    /// Checks every value, listing all problems at once.
    ///
    /// # Errors
    /// [`Error::Config`] with one line per problem.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.sources.is_empty() {
            problems.push("sources: at least one [[sources]] entry is needed".to_owned());
        }
        if self.dataset.chunk_rows == 0 {
            problems.push("dataset.chunk_rows: must be at least 1".to_owned());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let at = format!("sources[{i}] ({})", s.name);
            if s.name.is_empty() || s.name.contains(':') {
                problems.push(format!("{at}.name: must be non-empty without `:`"));
            }
            if !names.insert(&s.name) {
                problems.push(format!("{at}.name: used twice"));
            }
            let generic = matches!(
                s.kind,
                SourceKind::Jsonl | SourceKind::Csv | SourceKind::Parquet
            );
            match (&s.columns, generic) {
                (None, true) => {
                    problems.push(format!("{at}.columns: needed for kind {:?}", s.kind))
                }
                (Some(c), true) if c.text.is_empty() => {
                    problems.push(format!("{at}.columns.text: must name the text column"));
                }
                (Some(_), false) => {
                    problems.push(format!("{at}.columns: only for jsonl, csv and parquet"));
                }
                _ => {}
            }
            if s.kind == SourceKind::ActorSummaries && s.groups.is_none() {
                problems.push(format!(
                    "{at}.groups: actor_summaries needs the groups file"
                ));
            }
            if s.kind == SourceKind::Bio && s.tag_column == Some(0) {
                problems.push(format!("{at}.tag_column: columns count from 1"));
            }
        }
        for (from, to) in &self.attack.replacements {
            for id in [from, to] {
                if let Err(e) = id.parse::<crate::attack::TechniqueId>() {
                    problems.push(format!("attack.replacements: {e}"));
                }
            }
        }
        if self.attack.deprecated == LabelPolicy::Map || self.attack.unknown == LabelPolicy::Map {
            problems.push("attack.deprecated/unknown: `map` only applies to revoked IDs".into());
        }
        if let Err(e) = self.minhash().validate() {
            problems.push(format!("dedup: {e}"));
        }
        if let Err(e) = self.splits().validate() {
            problems.push(format!("split: {e}"));
        }
        if !(0.0..=1.0).contains(&self.reject.max_fraction) {
            problems.push("reject.max_fraction: must be within 0..=1".into());
        }
        if self.tokens.max_tokens > 0 && self.tokens.tokenizer.is_none() {
            problems.push("tokens.max_tokens: needs tokens.tokenizer".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config { problems })
        }
    }
}

/// Resolves a recipe path: absolute paths as they are, relative ones against `base`.
pub fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
