//! Prompt rendering: each task has an instruction, a prompt template and a completion
//! template (Jinja, rendered with minijinja), overridable per recipe. The completion stays
//! separate from the prompt so training can mask the prompt, and a `messages` list
//! (system, user, assistant) lets a model's own chat template format the row instead.

use std::collections::BTreeMap;

use minijinja::Environment;
use serde::Serialize;
use serde_json::Value;

use crate::config::PromptSection;
use crate::error::{Error, Result};
use crate::schema::Task;

/// The built-in (instruction, prompt, completion) templates of a task.
fn builtin(task: Task) -> (&'static str, &'static str, &'static str) {
    match task {
        Task::TechniqueClassification => (
            "List the MITRE ATT&CK technique IDs that the text describes, comma-separated, \
             or `none`.",
            "{{ instruction }}\n\nText: {{ text }}\n\nTechniques:",
            " {{ techniques | join(', ') if techniques else 'none' }}",
        ),
        Task::IocExtraction => (
            "List every indicator of compromise in the text, one `kind: value` per line, \
             or `none`.",
            "{{ instruction }}\n\nText: {{ text }}\n\nIndicators:",
            "{% if iocs %}{% for i in iocs %}\n{{ i.kind }}: {{ i.value }}{% endfor %}\
             {% else %} none{% endif %}",
        ),
        Task::EntityExtraction => (
            "List the named entities in the text, one `type: text` per line, or `none`.",
            "{{ instruction }}\n\nText: {{ text }}\n\nEntities:",
            "{% if entities %}{% for e in entities %}\n{{ e.type }}: {{ e.text }}{% endfor %}\
             {% else %} none{% endif %}",
        ),
        Task::Summarization => (
            "Summarize the threat intelligence report in a few sentences.",
            "{{ instruction }}\n\nReport:\n{{ text }}\n\nSummary:",
            " {{ summary }}",
        ),
        Task::Text => ("", "", "{{ text }}"),
    }
}

/// Compiled templates for every task.
pub struct Prompts {
    env: Environment<'static>,
    instructions: BTreeMap<Task, String>,
    system: Option<String>,
    /// Tasks whose input and completion templates are the built-in ones, which
    /// [`builtin_render`] produces without the template engine.
    builtin: BTreeMap<Task, bool>,
    /// Render every row through minijinja (tests compare both paths).
    jinja_only: bool,
}

/// A rendered row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Instruction + input.
    pub prompt: String,
    /// What the model should produce.
    pub completion: String,
    /// `[{"role", "content"}]` as JSON.
    pub messages: String,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

impl Prompts {
    /// Compiles the built-in templates with the recipe's overrides.
    ///
    /// # Errors
    /// A template does not compile (named `task.input` or `task.completion`).
    pub fn new(cfg: &PromptSection) -> Result<Prompts> {
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        let mut instructions = BTreeMap::new();
        let mut builtins = BTreeMap::new();
        for task in Task::ALL {
            let (inst, input, completion) = builtin(task);
            let o = cfg.tasks.get(&task).cloned().unwrap_or_default();
            builtins.insert(task, o.input.is_none() && o.completion.is_none());
            instructions.insert(task, o.instruction.unwrap_or_else(|| inst.to_owned()));
            for (part, source) in [("input", o.input), ("completion", o.completion)] {
                let name = format!("{task}.{part}");
                let source = source.unwrap_or_else(|| match part {
                    "input" => input.to_owned(),
                    _ => completion.to_owned(),
                });
                env.add_template_owned(name.clone(), source)
                    .map_err(|e| Error::Template {
                        name,
                        message: e.to_string(),
                    })?;
            }
        }
        Ok(Prompts {
            env,
            instructions,
            system: cfg.system.clone(),
            builtin: builtins,
            jinja_only: false,
        })
    }

    /// Renders one row: `text` is the input as the prompt shows it, `target` the structured
    /// target whose fields (`techniques`, `iocs`, ...) the templates may use.
    ///
    /// # Errors
    /// A template fails at render time (e.g. an unknown filter), named.
    pub fn render(&self, task: Task, text: &str, target: &Value) -> Result<Rendered> {
        let (prompt, completion) = self.render_pair(task, text, target)?;
        let messages = self.messages(task, &prompt, &completion)?;
        Ok(Rendered {
            prompt,
            completion,
            messages,
        })
    }

    /// The prompt and completion of one row, without the messages.
    ///
    /// # Errors
    /// As [`Prompts::render`].
    pub fn render_pair(&self, task: Task, text: &str, target: &Value) -> Result<(String, String)> {
        let instruction = self.instructions.get(&task).map_or("", String::as_str);
        let fast = (!self.jinja_only && self.builtin.get(&task) == Some(&true))
            .then(|| builtin_render(task, instruction, text, target))
            .flatten();
        match fast {
            Some(pair) => Ok(pair),
            None => self.render_jinja(task, text, target),
        }
    }

    /// Renders the prompt and completion through the compiled templates.
    fn render_jinja(&self, task: Task, text: &str, target: &Value) -> Result<(String, String)> {
        let mut ctx = match target {
            Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        ctx.insert("text".into(), Value::String(text.to_owned()));
        let instruction = self.instructions.get(&task).cloned().unwrap_or_default();
        ctx.insert("instruction".into(), Value::String(instruction));
        let render = |part: &str| -> Result<String> {
            let name = format!("{task}.{part}");
            let err = |e: minijinja::Error| Error::Template {
                name: name.clone(),
                message: e.to_string(),
            };
            self.env
                .get_template(&name)
                .map_err(err)?
                .render(&ctx)
                .map_err(err)
        };
        Ok((render("input")?, render("completion")?))
    }

    /// The `messages` list (system, user, assistant) of a rendered prompt and completion,
    /// as JSON.
    ///
    /// # Errors
    /// Serialisation fails (not expected for strings).
    pub fn messages(&self, task: Task, prompt: &str, completion: &str) -> Result<String> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(Message {
                role: "system",
                content: system,
            });
        }
        if task != Task::Text {
            messages.push(Message {
                role: "user",
                content: prompt,
            });
            messages.push(Message {
                role: "assistant",
                content: completion.trim(),
            });
        }
        serde_json::to_string(&messages).map_err(|e| Error::Template {
            name: format!("{task}.messages"),
            message: e.to_string(),
        })
    }
}

/// The built-in templates of [`builtin`], written out by hand: the same strings minijinja
/// renders from them, several times faster, which matters at millions of rows. `None` when
/// the target holds something other than the strings the templates expect; the caller
/// then renders through minijinja, so output never depends on which path ran.
fn builtin_render(
    task: Task,
    instruction: &str,
    text: &str,
    target: &Value,
) -> Option<(String, String)> {
    let field = |name: &str| match target {
        Value::Object(m) => m.get(name).filter(|v| !v.is_null()),
        _ => None,
    };
    let strings = |name: &str| -> Option<Vec<&str>> {
        match field(name) {
            None => Some(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(Value::as_str).collect(),
            Some(_) => None,
        }
    };
    // `kind: value` lines from a list of objects, or " none" for an empty list.
    let lines = |name: &str, key: &str, value: &str| -> Option<String> {
        let items = match field(name) {
            None => return Some(" none".to_owned()),
            Some(Value::Array(items)) => items,
            Some(_) => return None,
        };
        if items.is_empty() {
            return Some(" none".to_owned());
        }
        let mut out = String::new();
        for item in items {
            let (k, v) = (item.get(key)?.as_str()?, item.get(value)?.as_str()?);
            out.push('\n');
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
        }
        Some(out)
    };
    let framed = |label: &str| format!("{instruction}\n\n{label}{text}\n\n");
    Some(match task {
        Task::TechniqueClassification => {
            let ids = strings("techniques")?;
            let completion = if ids.is_empty() {
                " none".to_owned()
            } else {
                format!(" {}", ids.join(", "))
            };
            (framed("Text: ") + "Techniques:", completion)
        }
        Task::IocExtraction => (
            framed("Text: ") + "Indicators:",
            lines("iocs", "kind", "value")?,
        ),
        Task::EntityExtraction => (
            framed("Text: ") + "Entities:",
            lines("entities", "type", "text")?,
        ),
        Task::Summarization => {
            let summary = field("summary")?.as_str()?;
            (framed("Report:\n") + "Summary:", format!(" {summary}"))
        }
        Task::Text => (String::new(), text.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PromptTemplate;
    use serde_json::json;

    #[test]
    fn builtin_templates_render_each_task() {
        let p = Prompts::new(&PromptSection::default()).expect("compile");
        let r = p
            .render(
                Task::TechniqueClassification,
                "It used PowerShell.",
                &json!({"techniques": ["T1059.001", "T1105"]}),
            )
            .expect("render");
        assert!(
            r.prompt
                .ends_with("Text: It used PowerShell.\n\nTechniques:"),
            "{}",
            r.prompt
        );
        assert_eq!(r.completion, " T1059.001, T1105");
        let r = p
            .render(
                Task::TechniqueClassification,
                "x",
                &json!({"techniques": []}),
            )
            .expect("render");
        assert_eq!(r.completion, " none");
        let r = p
            .render(
                Task::IocExtraction,
                "x",
                &json!({"iocs": [{"kind": "ipv4", "value": "1.2.3.4"}]}),
            )
            .expect("render");
        assert_eq!(r.completion, "\nipv4: 1.2.3.4");
        let msgs: Value = serde_json::from_str(&r.messages).expect("json");
        assert_eq!(msgs[1]["content"], "ipv4: 1.2.3.4");
        let r = p.render(Task::Text, "Prose.", &json!({})).expect("render");
        assert_eq!((r.prompt.as_str(), r.completion.as_str()), ("", "Prose."));
    }

    #[test]
    fn hand_written_builtins_match_the_templates() {
        let cfg = PromptSection {
            system: Some("You are a CTI analyst.".into()),
            ..PromptSection::default()
        };
        let fast = Prompts::new(&cfg).expect("compile");
        let mut jinja = Prompts::new(&cfg).expect("compile");
        jinja.jinja_only = true;
        let text = "APT29 used \"PowerShell\" & {{ braces }}\n\tüber 1.2.3[.]4";
        let cases = [
            (
                Task::TechniqueClassification,
                json!({"techniques": ["T1059.001", "T1105"]}),
            ),
            (Task::TechniqueClassification, json!({"techniques": []})),
            (Task::TechniqueClassification, json!({})),
            (Task::TechniqueClassification, Value::Null),
            (
                Task::IocExtraction,
                json!({"iocs": [{"kind": "ipv4", "value": "1.2.3.4"},
                                                  {"kind": "url", "value": "hxxp://a[.]b/c"}]}),
            ),
            (Task::IocExtraction, json!({"iocs": []})),
            (
                Task::EntityExtraction,
                json!({"entities": [
                {"type": "Malware", "text": "Emotet", "start": 0, "end": 6}]}),
            ),
            (Task::EntityExtraction, json!({"entities": []})),
            (
                Task::Summarization,
                json!({"summary": "Short <b>summary</b>."}),
            ),
            (Task::Text, json!({})),
        ];
        for (task, target) in cases {
            let a = fast.render(task, text, &target).expect("fast");
            let b = jinja.render(task, text, &target).expect("jinja");
            assert_eq!(a, b, "{task} {target}");
        }
        // A target the hand-written path does not expect falls back to the templates.
        let odd = json!({"techniques": [1, 2]});
        let a = fast
            .render(Task::TechniqueClassification, "x", &odd)
            .expect("fast");
        let b = jinja
            .render(Task::TechniqueClassification, "x", &odd)
            .expect("jinja");
        assert_eq!(a, b);
        assert_eq!(a.completion, " 1, 2");
    }

    #[test]
    fn overrides_apply_and_bad_templates_are_named() {
        let mut cfg = PromptSection::default();
        cfg.tasks.insert(
            Task::Summarization,
            PromptTemplate {
                instruction: Some("Be brief.".into()),
                input: Some("{{ instruction }} {{ text }}".into()),
                completion: None,
            },
        );
        let p = Prompts::new(&cfg).expect("compile");
        let r = p
            .render(Task::Summarization, "Long.", &json!({"summary": "Short."}))
            .expect("render");
        assert_eq!(
            (r.prompt.as_str(), r.completion.as_str()),
            ("Be brief. Long.", " Short.")
        );
        cfg.tasks.insert(
            Task::Text,
            PromptTemplate {
                completion: Some("{{ text ".into()),
                ..PromptTemplate::default()
            },
        );
        let err = Prompts::new(&cfg).err().expect("bad template").to_string();
        assert!(err.contains("text.completion"), "{err}");
    }
}
