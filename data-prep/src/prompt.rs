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
        for task in Task::ALL {
            let (inst, input, completion) = builtin(task);
            let o = cfg.tasks.get(&task).cloned().unwrap_or_default();
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
        })
    }

    /// Renders one row: `text` is the input as the prompt shows it, `target` the structured
    /// target whose fields (`techniques`, `iocs`, ...) the templates may use.
    ///
    /// # Errors
    /// A template fails at render time (e.g. an unknown filter), named.
    pub fn render(&self, task: Task, text: &str, target: &Value) -> Result<Rendered> {
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
        let prompt = render("input")?;
        let completion = render("completion")?;
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
                content: &prompt,
            });
            messages.push(Message {
                role: "assistant",
                content: completion.trim(),
            });
        }
        let messages = serde_json::to_string(&messages).map_err(|e| Error::Template {
            name: format!("{task}.messages"),
            message: e.to_string(),
        })?;
        Ok(Rendered {
            prompt,
            completion,
            messages,
        })
    }
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
