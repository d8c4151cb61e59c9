//! What an evaluation runs over: examples with a rendered prompt and a structured reference,
//! read from a `ctiforge prep` dataset split or from a team's own labelled JSONL file.
//!
//! References are normalised once, here, so scoring compares like with like: technique IDs
//! upper-case, indicators refanged and in their canonical form, entity types lower-case.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use ctiforge_data_prep::Task;
use ctiforge_data_prep::dataset::read_split;
use ctiforge_data_prep::ioc;
use ctiforge_data_prep::prompt::Prompts;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The structured answer an example expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// Technique IDs, upper-case, sorted, without repeats.
    Techniques(Vec<String>),
    /// Indicators as (kind, canonical value).
    Iocs(Vec<(String, String)>),
    /// Entities as (lower-case type, text).
    Entities(Vec<(String, String)>),
    /// A reference summary.
    Summary(String),
    /// Plain text (language-modelling rows; scored by loss only).
    Text(String),
}

impl Reference {
    /// The reference as JSON for `predictions.jsonl`.
    pub fn to_json(&self) -> Value {
        match self {
            Reference::Techniques(ids) => json!({ "techniques": ids }),
            Reference::Iocs(list) => json!({ "iocs": pairs_json(list, "kind", "value") }),
            Reference::Entities(list) => {
                json!({ "entities": pairs_json(list, "type", "text") })
            }
            Reference::Summary(s) => json!({ "summary": s }),
            Reference::Text(t) => json!({ "text": t }),
        }
    }
}

fn pairs_json(list: &[(String, String)], a: &str, b: &str) -> Vec<Value> {
    list.iter()
        .map(|(x, y)| {
            let mut m = serde_json::Map::new();
            m.insert(a.to_owned(), Value::String(x.clone()));
            m.insert(b.to_owned(), Value::String(y.clone()));
            Value::Object(m)
        })
        .collect()
}

/// One example to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalExample {
    /// Stable id (the dataset row id, or the file's id field or line number).
    pub id: String,
    /// The task the example tests.
    pub task: Task,
    /// The input text.
    pub text: String,
    /// The rendered prompt the model continues.
    pub prompt: String,
    /// The reference completion (for the language-modelling loss).
    pub completion: String,
    /// The structured reference.
    pub reference: Reference,
}

/// Reads `split` of a dataset folder written by `ctiforge prep`.
///
/// # Errors
/// The split is missing or unreadable, or a row's target does not fit its task (named
/// with the row id).
pub fn from_dataset(dir: &Path, split: &str) -> Result<Vec<EvalExample>> {
    let records = read_split(dir, split).map_err(|e| Error::Input {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let path = dir.join(format!("{split}.parquet"));
    records
        .into_iter()
        .map(|r| {
            let reference =
                reference_from_target(r.task, &r.target, &r.labels, &r.text).map_err(|m| {
                    Error::Input {
                        path: path.clone(),
                        message: format!("row {:?}: {m}", r.id),
                    }
                })?;
            Ok(EvalExample {
                id: r.id,
                task: r.task,
                text: r.text,
                prompt: r.prompt,
                completion: r.completion,
                reference,
            })
        })
        .collect()
}

/// The structured reference of a row from its `target` JSON (`labels` is the fallback for
/// technique rows without a `techniques` field).
fn reference_from_target(
    task: Task,
    target: &Value,
    labels: &[String],
    text: &str,
) -> std::result::Result<Reference, String> {
    match task {
        Task::TechniqueClassification => {
            let ids = match target.get("techniques") {
                Some(v) => technique_list(v)?,
                None => labels.to_vec(),
            };
            Ok(Reference::Techniques(normalise_ids(ids)))
        }
        Task::IocExtraction => Ok(Reference::Iocs(typed_list(
            target.get("iocs").unwrap_or(&Value::Null),
            "kind",
            "value",
            true,
        )?)),
        Task::EntityExtraction => Ok(Reference::Entities(typed_list(
            target.get("entities").unwrap_or(&Value::Null),
            "type",
            "text",
            false,
        )?)),
        Task::Summarization => match target.get("summary").and_then(Value::as_str) {
            Some(s) => Ok(Reference::Summary(s.to_owned())),
            None => Err("the target has no `summary` string".to_owned()),
        },
        Task::Text => Ok(Reference::Text(text.to_owned())),
    }
}

/// Technique IDs from a JSON array of strings or one comma/space-separated string.
fn technique_list(v: &Value) -> std::result::Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("technique {i} is not a string"))
            })
            .collect(),
        Value::String(s) => Ok(s
            .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("none"))
            .map(str::to_owned)
            .collect()),
        other => Err(format!(
            "expected a list of technique IDs or a comma-separated string, got {other}"
        )),
    }
}

/// Upper-case, trimmed, sorted and unique technique IDs.
pub fn normalise_ids(ids: Vec<String>) -> Vec<String> {
    let mut ids: Vec<String> = ids
        .into_iter()
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// (type, value) pairs from a list of objects (`{"kind": .., "value": ..}`) or of
/// `"type: value"` strings. Indicators (`ioc = true`) are put in canonical form.
fn typed_list(
    v: &Value,
    type_key: &str,
    value_key: &str,
    ioc: bool,
) -> std::result::Result<Vec<(String, String)>, String> {
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(format!(
                "expected a list of {type_key}/{value_key} items, got {other}"
            ));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (t, value) = match item {
            Value::Object(m) => {
                let get = |k: &str| m.get(k).and_then(Value::as_str);
                match (get(type_key), get(value_key)) {
                    (Some(t), Some(x)) => (t.to_owned(), x.to_owned()),
                    _ => {
                        return Err(format!(
                            "item {item} needs string fields `{type_key}` and `{value_key}`"
                        ));
                    }
                }
            }
            Value::String(s) => match s.split_once(':') {
                Some((t, x)) => (t.trim().to_owned(), x.trim().to_owned()),
                None => return Err(format!("item {s:?} is not `{type_key}: {value_key}`")),
            },
            other => return Err(format!("item {other} is not an object or a string")),
        };
        out.push(if ioc {
            canonical_ioc(&t, &value)
        } else {
            (t.trim().to_lowercase(), value.trim().to_owned())
        });
    }
    Ok(out)
}

/// An indicator in canonical form: the kind from its label (`ip-address`, `sha256`, ...)
/// and the value refanged and normalised as `data-prep` validates it. A value that does
/// not validate keeps its refanged text, so it can still match an identical prediction.
pub fn canonical_ioc(kind: &str, value: &str) -> (String, String) {
    let value = value.trim();
    match ioc::kind_from_label(kind, &ioc::refang(value)) {
        Some(k) => match ioc::validate(k, value) {
            Ok(i) => (i.kind.as_str().to_owned(), i.value),
            Err(_) => (k.as_str().to_owned(), ioc::refang(value).into_owned()),
        },
        None => (
            kind.trim().to_lowercase().replace(['-', ' '], "_"),
            ioc::refang(value).into_owned(),
        ),
    }
}

/// How to read a team's own labelled JSONL file.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSpec {
    /// The task every line serves.
    pub task: Task,
    /// The field holding the input text.
    pub text_field: String,
    /// The field holding the reference: technique IDs (list or comma-separated string),
    /// indicators or entities (list of objects or `"type: value"` strings), or a summary.
    pub label_field: String,
    /// The field holding a stable id; the line number when absent.
    pub id_field: Option<String>,
}

/// Reads a labelled JSONL file and renders each line's prompt with `prompts` (the
/// templates of the dataset a run was trained on, or the built-in ones).
///
/// # Errors
/// An unreadable file; a line that is not a JSON object, lacks the text or label field,
/// or whose label does not fit the task (named with file, line and field); a file
/// without any example.
pub fn from_jsonl(path: &Path, spec: &RawSpec, prompts: &Prompts) -> Result<Vec<EvalExample>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |line: usize, message: String| Error::Input {
        path: PathBuf::from(format!("{}:{line}", path.display())),
        message,
    };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: Value =
            serde_json::from_str(&line).map_err(|e| bad(n, format!("not valid JSON: {e}")))?;
        let Value::Object(obj) = &row else {
            return Err(bad(n, "expected a JSON object per line".to_owned()));
        };
        let text = obj
            .get(&spec.text_field)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                bad(
                    n,
                    format!(
                        "field {:?} (the text) is missing or not a string",
                        spec.text_field
                    ),
                )
            })?
            .to_owned();
        let label = obj.get(&spec.label_field).ok_or_else(|| {
            bad(
                n,
                format!("field {:?} (the reference) is missing", spec.label_field),
            )
        })?;
        let target = target_json(spec.task, label)
            .map_err(|m| bad(n, format!("field {:?}: {m}", spec.label_field)))?;
        let reference = reference_from_target(spec.task, &target, &[], &text)
            .map_err(|m| bad(n, format!("field {:?}: {m}", spec.label_field)))?;
        let (prompt, completion) = prompts
            .render_pair(spec.task, &text, &target)
            .map_err(|e| bad(n, format!("rendering the prompt: {e}")))?;
        let id = match &spec.id_field {
            Some(f) => match obj.get(f) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(x)) => x.to_string(),
                _ => return Err(bad(n, format!("field {f:?} (the id) is missing"))),
            },
            None => format!("line-{n}"),
        };
        out.push(EvalExample {
            id,
            task: spec.task,
            text,
            prompt,
            completion,
            reference,
        });
    }
    if out.is_empty() {
        return Err(Error::Input {
            path: path.to_path_buf(),
            message: "the file has no examples".to_owned(),
        });
    }
    Ok(out)
}

/// The `target` object a prep dataset would hold for a raw label value.
fn target_json(task: Task, label: &Value) -> std::result::Result<Value, String> {
    Ok(match task {
        Task::TechniqueClassification => {
            json!({ "techniques": normalise_ids(technique_list(label)?) })
        }
        Task::IocExtraction => {
            let list = typed_list(label, "kind", "value", true)?;
            json!({ "iocs": pairs_json(&list, "kind", "value") })
        }
        Task::EntityExtraction => {
            let list = typed_list(label, "type", "text", false)?;
            json!({ "entities": pairs_json(&list, "type", "text") })
        }
        Task::Summarization => match label {
            Value::String(s) => json!({ "summary": s }),
            other => return Err(format!("expected the summary as a string, got {other}")),
        },
        Task::Text => json!({}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctiforge_data_prep::config::PromptSection;

    #[test]
    fn indicators_are_refanged_and_typed() {
        assert_eq!(
            canonical_ioc("ip-address", "192.168.1[.]1"),
            ("ipv4".to_owned(), "192.168.1.1".to_owned())
        );
        assert_eq!(
            canonical_ioc("domain", "EVIL[.]com"),
            ("domain".to_owned(), "evil.com".to_owned())
        );
        let (k, _) = canonical_ioc("hash", &"a".repeat(64));
        assert_eq!(k, "sha256");
    }

    #[test]
    fn raw_jsonl_is_rendered_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("mine.jsonl");
        std::fs::write(
            &path,
            "{\"sentence\": \"It ran PowerShell.\", \"ttps\": [\"t1059.001\"]}\n\n\
             {\"sentence\": \"Nothing here.\", \"ttps\": \"none\"}\n",
        )
        .expect("write");
        let spec = RawSpec {
            task: Task::TechniqueClassification,
            text_field: "sentence".into(),
            label_field: "ttps".into(),
            id_field: None,
        };
        let prompts = Prompts::new(&PromptSection::default()).expect("prompts");
        let ex = from_jsonl(&path, &spec, &prompts).expect("read");
        assert_eq!(ex.len(), 2);
        assert_eq!(
            ex[0].reference,
            Reference::Techniques(vec!["T1059.001".into()])
        );
        assert_eq!(ex[0].completion, " T1059.001");
        assert!(ex[0].prompt.ends_with("Techniques:"));
        assert_eq!(ex[1].id, "line-3");
        assert_eq!(ex[1].reference, Reference::Techniques(vec![]));

        std::fs::write(&path, "{\"sentence\": \"x\"}\n").expect("write");
        let err = from_jsonl(&path, &spec, &prompts)
            .expect_err("no label")
            .to_string();
        assert!(
            err.contains("mine.jsonl:1") && err.contains("\"ttps\""),
            "{err}"
        );
    }
}
