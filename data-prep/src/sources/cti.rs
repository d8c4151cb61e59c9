//! Readers for the public CTI sources in `datasets/` (see its SOURCES.md for schemas):
//! TRAM, ATT&CK tables and STIX bundles, IOC sentences and actor summaries.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use super::{RawRow, Sink, SourceRead, json_lines};
use crate::config::{ReportUnit, SourceConfig, resolve};
use crate::error::Result;

#[derive(Deserialize)]
struct SingleLabel {
    text: String,
    label: String,
    doc_id: Option<String>,
}

/// `tram2_single_label_train.jsonl`: one technique per sentence, grouped by report.
pub(super) fn tram_single_label(
    src: &SourceConfig,
    path: &Path,
    sink: &mut Sink<'_>,
) -> Result<SourceRead> {
    json_lines(src, path, Some(sink), |out, line, r: SingleLabel| {
        out.rows.push(RawRow {
            line,
            group: r.doc_id,
            text: r.text,
            labels: vec![r.label],
            ..RawRow::default()
        });
    })
}

#[derive(Deserialize)]
struct Sentence {
    text: String,
    labels: Vec<String>,
}

/// TRAM bootstrap (`labels: [id]`) and negative (`labels: []`) sentences.
pub(super) fn tram_sentences(
    src: &SourceConfig,
    path: &Path,
    sink: &mut Sink<'_>,
) -> Result<SourceRead> {
    json_lines(src, path, Some(sink), |out, line, r: Sentence| {
        out.rows.push(RawRow {
            line,
            text: r.text,
            labels: r.labels,
            ..RawRow::default()
        });
    })
}

#[derive(Deserialize)]
struct Annotation {
    start: usize,
    end: usize,
    technique_id: String,
    text: String,
}

#[derive(Deserialize)]
struct Report {
    doc_id: String,
    text: String,
    techniques: Vec<String>,
    annotations: Vec<Annotation>,
}

/// TRAM annotated reports: one row per distinct span (labels of spans with the same
/// offsets merged), or one row per report with all its techniques.
pub(super) fn tram_reports(
    src: &SourceConfig,
    path: &Path,
    sink: &mut Sink<'_>,
) -> Result<SourceRead> {
    json_lines(src, path, Some(sink), |out, line, r: Report| {
        match src.unit {
            ReportUnit::Document => out.rows.push(RawRow {
                line,
                group: Some(r.doc_id),
                text: r.text,
                labels: r.techniques,
                ..RawRow::default()
            }),
            ReportUnit::Span => {
                let mut spans: BTreeMap<(usize, usize), (String, Vec<String>)> = BTreeMap::new();
                for a in r.annotations {
                    let entry = spans
                        .entry((a.start, a.end))
                        .or_insert((a.text, Vec::new()));
                    if !entry.1.contains(&a.technique_id) {
                        entry.1.push(a.technique_id);
                    }
                }
                for (part, (text, labels)) in spans.into_values().enumerate() {
                    out.rows.push(RawRow {
                        line,
                        part,
                        group: Some(r.doc_id.clone()),
                        text,
                        labels,
                        ..RawRow::default()
                    });
                }
            }
        }
    })
}

#[derive(Deserialize)]
struct ProcedureExample {
    technique_id: String,
    source_id: String,
    text: String,
}

/// ATT&CK procedure examples, grouped by the software, group or campaign they describe so
/// that one actor's procedures never span two splits.
pub(super) fn attack_procedures(
    src: &SourceConfig,
    path: &Path,
    sink: &mut Sink<'_>,
) -> Result<SourceRead> {
    json_lines(src, path, Some(sink), |out, line, r: ProcedureExample| {
        out.rows.push(RawRow {
            line,
            group: Some(r.source_id),
            text: r.text,
            labels: vec![r.technique_id],
            ..RawRow::default()
        });
    })
}

#[derive(Deserialize)]
struct Described {
    id: String,
    description: String,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    deprecated: bool,
}

/// ATT&CK groups, software, campaigns or techniques: their descriptions as plain text
/// (revoked and deprecated objects skipped).
pub(super) fn attack_descriptions(
    src: &SourceConfig,
    path: &Path,
    sink: &mut Sink<'_>,
) -> Result<SourceRead> {
    json_lines(src, path, Some(sink), |out, line, r: Described| {
        if !r.revoked && !r.deprecated && !r.description.trim().is_empty() {
            out.rows.push(RawRow {
                line,
                id: Some(r.id.clone()),
                group: Some(r.id),
                text: r.description,
                ..RawRow::default()
            });
        }
    })
}

/// A STIX bundle's `uses` relationships as labelled procedures, grouped by actor. The row
/// "line" is the relationship's position among them.
pub(super) fn stix(path: &Path) -> Result<SourceRead> {
    let bundle = crate::stix::read_bundle(path)?;
    let rows = bundle
        .procedures
        .into_iter()
        .enumerate()
        .map(|(i, p)| RawRow {
            line: i + 1,
            id: Some(p.stix_id),
            group: Some(p.source_ref),
            text: p.text,
            labels: vec![p.technique.to_string()],
            ..RawRow::default()
        })
        .collect();
    Ok(SourceRead {
        rows,
        rejects: Vec::new(),
    })
}

#[derive(Deserialize)]
struct TypedIoc {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

#[derive(Deserialize)]
struct IocSentence {
    text: String,
    iocs: Vec<TypedIoc>,
}

/// IOC sentences with typed indicators (Text2TTP).
pub(super) fn ioc_sentences(
    src: &SourceConfig,
    path: &Path,
    sink: &mut Sink<'_>,
) -> Result<SourceRead> {
    json_lines(src, path, Some(sink), |out, line, r: IocSentence| {
        out.rows.push(RawRow {
            line,
            text: r.text,
            iocs: r.iocs.into_iter().map(|i| (i.kind, i.value)).collect(),
            ..RawRow::default()
        });
    })
}

#[derive(Deserialize)]
struct Linked {
    document: String,
    mention: String,
    attack_id: Option<String>,
    #[serde(default)]
    sentence_left: String,
    #[serde(default)]
    sentence_right: String,
}

/// AnnoCTR mentions linked to ATT&CK techniques: the mention's sentence, labelled with the
/// technique, grouped by document. Mentions of tactics, software and groups are skipped.
pub(super) fn annoctr_linking(
    src: &SourceConfig,
    path: &Path,
    sink: &mut Sink<'_>,
) -> Result<SourceRead> {
    json_lines(src, path, Some(sink), |out, line, r: Linked| {
        let Some(id) = r
            .attack_id
            .filter(|id| id.starts_with('T') && !id.starts_with("TA"))
        else {
            return;
        };
        let text = [
            r.sentence_left.trim(),
            r.mention.trim(),
            r.sentence_right.trim(),
        ]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
        out.rows.push(RawRow {
            line,
            group: Some(r.document),
            text,
            labels: vec![id],
            ..RawRow::default()
        });
    })
}

#[derive(Deserialize)]
struct Summary {
    actor: String,
    group_id: String,
    text: String,
}

/// Analyst-written actor summaries (long) paired with the ATT&CK description of the same
/// group (short) as the reference summary.
pub(super) fn actor_summaries(src: &SourceConfig, path: &Path, base: &Path) -> Result<SourceRead> {
    let groups_path = resolve(base, src.groups.as_deref().unwrap_or_default());
    let groups = json_lines(src, &groups_path, None, |out, line, g: Described| {
        out.rows.push(RawRow {
            line,
            id: Some(g.id),
            summary: Some(g.description),
            ..RawRow::default()
        });
    })?;
    let by_id: HashMap<String, String> = groups
        .rows
        .into_iter()
        .filter_map(|r| Some((r.id?, r.summary?)))
        .collect();
    let mut missing = Vec::new();
    let mut out = json_lines(src, path, None, |out, line, s: Summary| {
        match by_id.get(&s.group_id) {
            Some(summary) => out.rows.push(RawRow {
                line,
                group: Some(s.group_id),
                text: s.text,
                summary: Some(summary.clone()),
                ..RawRow::default()
            }),
            None => missing.push((line, s.actor, s.group_id)),
        }
    })?;
    for (line, actor, id) in missing {
        let reason = format!(
            "actor {actor}: group {id} is not in {}",
            groups_path.display()
        );
        out.reject(src, path, line, reason);
    }
    Ok(out)
}
