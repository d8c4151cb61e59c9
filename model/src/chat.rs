//! Chat templates: Jinja sources that turn a list of messages into the prompt text a chat model
//! was trained on, rendered with minijinja the way `transformers`' `apply_chat_template` renders
//! them with Python jinja2 (<https://huggingface.co/docs/transformers/chat_templating>).
//!
//! Like HF, the environment uses `trim_blocks` and `lstrip_blocks`, enables `{% break %}` and
//! `{% continue %}`, and provides `raise_exception(msg)`, `strftime_now(fmt)`, a `tojson` filter
//! with Python `json.dumps` output, and Python string/dict methods (`.strip()`, `.startswith()`,
//! `.items()`, ...) through `minijinja-contrib`'s `pycompat`.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tokenizer::TokenizerConfig;

/// The name under which a template is stored in its environment (shown in error locations).
const TEMPLATE_NAME: &str = "chat_template";

/// Built-in Llama 3 instruct format: `<|begin_of_text|>` then, per message,
/// `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>`; the generation prompt
/// opens an assistant header.
pub const LLAMA3_TEMPLATE: &str = r#"{{- bos_token }}
{%- for message in messages %}
    {{- '<|start_header_id|>' ~ message['role'] ~ '<|end_header_id|>\n\n' }}
    {{- message['content'] | trim }}
    {{- '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"#;

/// Built-in Mistral instruct format: `<s>[INST] {user} [/INST]{assistant}</s>...`; an optional
/// leading system message is prepended to the first user turn, separated by a blank line.
/// Roles must alternate user/assistant.
pub const MISTRAL_TEMPLATE: &str = r#"{%- if messages and messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set system_message = '' %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message %}
            {{- '[INST] ' ~ system_message ~ '\n\n' ~ message['content'] ~ ' [/INST]' }}
        {%- else %}
            {{- '[INST] ' ~ message['content'] ~ ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- message['content'] ~ eos_token }}
    {%- else %}
        {{- raise_exception('only user and assistant roles are supported after an optional system message') }}
    {%- endif %}
{%- endfor %}
"#;

/// One turn of a conversation, as HF chat templates expect it (`{"role": ..., "content": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (templates may accept others).
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

impl ChatTemplate {
    /// Compiles a Jinja chat template with HF's settings.
    ///
    /// # Errors
    ///
    /// [`Error::ChatTemplate`] with minijinja's message and line when the source does not parse.
    pub fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(template_error)?;
        Ok(Self {
            env,
            source: source.to_owned(),
        })
    }

    /// The built-in Llama 3 instruct template ([`LLAMA3_TEMPLATE`]).
    ///
    /// # Errors
    ///
    /// None in practice: the built-in source is tested to compile.
    pub fn llama3() -> Result<Self> {
        Self::new(LLAMA3_TEMPLATE)
    }

    /// The built-in Mistral instruct template ([`MISTRAL_TEMPLATE`]).
    ///
    /// # Errors
    ///
    /// None in practice: the built-in source is tested to compile.
    pub fn mistral() -> Result<Self> {
        Self::new(MISTRAL_TEMPLATE)
    }

    /// The Jinja source this template was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` into prompt text.
    ///
    /// The template sees `messages`, `add_generation_prompt`, `bos_token` and `eos_token`, like
    /// HF's `apply_chat_template`. Templates usually emit `bos_token` themselves, so encode the
    /// result without adding special tokens again.
    ///
    /// # Errors
    ///
    /// [`Error::ChatTemplate`] when rendering fails, including the message of a
    /// `raise_exception(...)` call in the template.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(template_error)?;
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token,
            eos_token => eos_token,
        };
        template.render(context).map_err(template_error)
    }
}

/// Picks the chat template for a model.
///
/// The tokenizer's own `chat_template` wins when present; otherwise the built-in template whose
/// name appears in `architecture_hint` (case-insensitive: `llama` as in `LlamaForCausalLM`, or
/// `mistral`).
///
/// # Errors
///
/// [`Error::ChatTemplate`] when the tokenizer's template does not compile, or when there is no
/// tokenizer template and the hint names neither family.
pub fn select_template(
    config: Option<&TokenizerConfig>,
    architecture_hint: &str,
) -> Result<ChatTemplate> {
    if let Some(source) = config.and_then(|config| config.chat_template.as_deref()) {
        return ChatTemplate::new(source);
    }
    let hint = architecture_hint.to_lowercase();
    if hint.contains("mistral") {
        ChatTemplate::mistral()
    } else if hint.contains("llama") {
        ChatTemplate::llama3()
    } else {
        Err(Error::ChatTemplate {
            message: format!(
                "the tokenizer has no chat_template and there is no built-in template for \
                 {architecture_hint:?}; add a chat_template to tokenizer_config.json or use a \
                 llama or mistral model"
            ),
        })
    }
}

/// Converts a minijinja error, with its location and causes, into [`Error::ChatTemplate`].
fn template_error(err: minijinja::Error) -> Error {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::ChatTemplate { message }
}

/// `raise_exception(msg)`: aborts rendering with `msg`, as HF templates use for bad input.
fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(fmt)`: the current UTC time formatted with Python `strftime` codes.
fn strftime_now(format: String) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    strftime_utc(&format, now)
}

/// English month names, January first.
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// English weekday names, Sunday first.
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Formats `unix_secs` (UTC) with the `strftime` codes chat templates use: `%Y %y %m %d %e %j
/// %H %I %M %S %p %B %b %h %A %a %Z %z %%`, each numeric one also with glibc's `-` (no padding)
/// flag. Unknown codes are copied as they are.
fn strftime_utc(format: &str, unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let weekday = ((days + 4) % 7) as usize; // 1970-01-01 was a Thursday.
    let (hour, minute, second) = (
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60,
    );
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let month_name = MONTHS[(month - 1) as usize];
    let weekday_name = WEEKDAYS[weekday];

    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let unpadded = chars.next_if_eq(&'-').is_some();
        let number = |value: u64, width: usize| {
            if unpadded {
                value.to_string()
            } else {
                format!("{value:0width$}")
            }
        };
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&number(year % 100, 2)),
            Some('m') => out.push_str(&number(month, 2)),
            Some('d') => out.push_str(&number(day, 2)),
            Some('e') if unpadded => out.push_str(&day.to_string()),
            Some('e') => out.push_str(&format!("{day:2}")),
            Some('j') => out.push_str(&number(day_of_year, 3)),
            Some('H') => out.push_str(&number(hour, 2)),
            Some('I') => out.push_str(&number(hour12, 2)),
            Some('M') => out.push_str(&number(minute, 2)),
            Some('S') => out.push_str(&number(second, 2)),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(month_name),
            Some('b' | 'h') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(weekday_name),
            Some('a') => out.push_str(&weekday_name[..3]),
            Some('Z') => out.push_str("UTC"),
            Some('z') => out.push_str("+0000"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if unpadded {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Howard Hinnant's algorithm, shifted so that eras start on 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01; the inverse of [`civil_from_days`].
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year % 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `tojson` as HF defines it: Python `json.dumps(value, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, with those keyword arguments honoured.
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(usize::try_from(v)?),
    };
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;

    let (item_sep, key_sep) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(_) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair of strings",
            ));
        }
        None if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        None => (", ".to_owned(), ": ".to_owned()),
    };
    let writer = JsonWriter {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    writer.write(&mut out, value, 0)?;
    if ensure_ascii.unwrap_or(false) {
        out = escape_non_ascii(&out);
    }
    Ok(Value::from(out))
}

/// Writes minijinja values as Python's `json.dumps` would.
struct JsonWriter {
    indent: Option<usize>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonWriter {
    fn write(
        &self,
        out: &mut String,
        value: &Value,
        depth: usize,
    ) -> std::result::Result<(), minijinja::Error> {
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => out.push_str(&python_number(value)?),
            ValueKind::String => out.push_str(&quote(value.as_str().unwrap_or_default())?),
            ValueKind::Map => self.write_map(out, value, depth)?,
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                let parts = items
                    .iter()
                    .map(|item| {
                        let mut part = String::new();
                        self.write(&mut part, item, depth + 1).map(|()| part)
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                self.write_container(out, ('[', ']'), &parts, depth);
            }
            kind => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: object of type {kind} is not JSON serializable"),
                ));
            }
        }
        Ok(())
    }

    fn write_map(
        &self,
        out: &mut String,
        value: &Value,
        depth: usize,
    ) -> std::result::Result<(), minijinja::Error> {
        let mut entries = Vec::new();
        for key in value.try_iter()? {
            let name = match key.as_str() {
                Some(name) => name.to_owned(),
                None => {
                    let mut name = String::new();
                    self.write(&mut name, &key, depth)?;
                    name
                }
            };
            let mut part = quote(&name)?;
            part.push_str(&self.key_sep);
            self.write(&mut part, &value.get_item(&key)?, depth + 1)?;
            entries.push((name, part));
        }
        if self.sort_keys {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let parts: Vec<String> = entries.into_iter().map(|(_, part)| part).collect();
        self.write_container(out, ('{', '}'), &parts, depth);
        Ok(())
    }

    fn write_container(
        &self,
        out: &mut String,
        (open, close): (char, char),
        parts: &[String],
        depth: usize,
    ) {
        out.push(open);
        if parts.is_empty() {
            out.push(close);
            return;
        }
        match self.indent {
            None => out.push_str(&parts.join(&self.item_sep)),
            Some(width) => {
                let inner = format!("\n{}", " ".repeat(width * (depth + 1)));
                out.push_str(&inner);
                out.push_str(&parts.join(&format!("{}{inner}", self.item_sep)));
                out.push('\n');
                out.push_str(&" ".repeat(width * depth));
            }
        }
        out.push(close);
    }
}

/// A JSON string literal, escaped as both serde_json and Python do.
fn quote(text: &str) -> std::result::Result<String, minijinja::Error> {
    serde_json::to_string(text).map_err(|err| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "tojson: cannot encode string")
            .with_source(err)
    })
}

/// Numbers as Python's `repr`: integers as is, floats with `.0` or a two-digit exponent.
fn python_number(value: &Value) -> std::result::Result<String, minijinja::Error> {
    if value.is_integer() {
        return Ok(value.to_string());
    }
    let float = f64::try_from(value.clone())?;
    if float.is_nan() {
        return Ok("NaN".to_owned());
    }
    if float.is_infinite() {
        return Ok(if float > 0.0 { "Infinity" } else { "-Infinity" }.to_owned());
    }
    let scientific = format!("{float:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let plain = float.to_string();
        Ok(if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        })
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        Ok(format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs()))
    }
}

/// Replaces every non-ASCII character with JSON `\u` escapes of four hex digits (surrogate
/// pairs above U+FFFF).
fn escape_non_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> Vec<ChatMessage> {
        vec![
            ChatMessage::system("  Be brief.\n"),
            ChatMessage::user("What is T1059?"),
            ChatMessage::assistant("Command and Scripting Interpreter."),
            ChatMessage::user("And T1566?"),
        ]
    }

    #[test]
    fn llama3_renders_published_format() {
        let template = ChatTemplate::llama3().unwrap();
        let messages = [
            ChatMessage::system("You are helpful."),
            ChatMessage::user(" Hi "),
        ];
        let text = template
            .render(&messages, true, "<|begin_of_text|>", "<|eot_id|>")
            .unwrap();
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.\
             <|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        let text = template
            .render(&messages[1..], false, "<|begin_of_text|>", "")
            .unwrap();
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        );
    }

    #[test]
    fn mistral_prepends_system_to_first_user_turn() {
        let template = ChatTemplate::mistral().unwrap();
        let text = template
            .render(&conversation(), true, "<s>", "</s>")
            .unwrap();
        assert_eq!(
            text,
            "<s>[INST] Be brief.\n\nWhat is T1059? [/INST]Command and Scripting Interpreter.</s>\
             [INST] And T1566? [/INST]"
        );
        let text = template
            .render(&conversation()[1..2], false, "<s>", "</s>")
            .unwrap();
        assert_eq!(text, "<s>[INST] What is T1059? [/INST]");
    }

    #[test]
    fn raise_exception_becomes_chat_template_error() {
        let template = ChatTemplate::mistral().unwrap();
        let messages = [ChatMessage::user("a"), ChatMessage::user("b")];
        let err = template
            .render(&messages, false, "<s>", "</s>")
            .unwrap_err();
        assert!(matches!(err, Error::ChatTemplate { .. }), "{err:?}");
        assert!(err.to_string().contains("roles must alternate"), "{err}");
    }

    #[test]
    fn syntax_error_reports_line() {
        let err = ChatTemplate::new("{% for m in messages %}\n{{ m.content }\n").unwrap_err();
        assert!(matches!(err, Error::ChatTemplate { .. }), "{err:?}");
        assert!(err.to_string().contains("chat_template:2"), "{err}");
    }

    #[test]
    fn hf_features_namespace_loop_pycompat_and_blocks() {
        let source = "{% set ns = namespace(n=0) %}\n\
            {% for m in messages %}\n\
              {% set ns.n = ns.n + 1 %}\n\
              {% if m.role == 'user' and m.content.startswith('And') %}{% break %}{% endif %}\n\
            {{ loop.index }}:{{ m.content.strip().upper() }}|\n\
            {% endfor %}\n\
            n={{ ns.n }}";
        let template = ChatTemplate::new(source).unwrap();
        let text = template.render(&conversation(), false, "", "").unwrap();
        assert_eq!(
            text,
            "1:BE BRIEF.|\n2:WHAT IS T1059?|\n3:COMMAND AND SCRIPTING INTERPRETER.|\nn=4"
        );
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let template = ChatTemplate::new(
            "{{ messages[0] | tojson }} {{ {'b': [1, 2.5, none, true], 'a': 'é<'} | tojson }} \
             {{ {'b': 1, 'a': []} | tojson(sort_keys=true, ensure_ascii=true) }} \
             {{ {'k': 'é'} | tojson(ensure_ascii=true) }}",
        )
        .unwrap();
        let text = template
            .render(&[ChatMessage::user("hi")], false, "", "")
            .unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"role": "user", "content": "hi"} {"b": [1, 2.5, null, true], "a": "é<"} "#,
                r#"{"a": [], "b": 1} {"k": "\u00e9"}"#
            )
        );
        let template = ChatTemplate::new("{{ messages | tojson(indent=2) }}").unwrap();
        let text = template
            .render(&[ChatMessage::user("hi")], false, "", "")
            .unwrap();
        assert_eq!(
            text,
            "[\n  {\n    \"role\": \"user\",\n    \"content\": \"hi\"\n  }\n]"
        );
    }

    #[test]
    fn python_float_repr() {
        let render = |expr: &str| {
            let template = ChatTemplate::new(&format!("{{{{ {expr} | tojson }}}}")).unwrap();
            template.render(&[], false, "", "").unwrap()
        };
        assert_eq!(render("1.0"), "1.0");
        assert_eq!(render("0.00001"), "1e-05");
        assert_eq!(render("1.5e16"), "1.5e+16");
        assert_eq!(render("0.0001"), "0.0001");
        assert_eq!(render("-3"), "-3");
    }

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-07-23 14:05:09 UTC, a Tuesday.
        let secs = 1_721_743_509;
        assert_eq!(strftime_utc("%d %b %Y", secs), "23 Jul 2024");
        assert_eq!(
            strftime_utc("%A, %B %-d, %y %H:%M:%S %p", secs),
            "Tuesday, July 23, 24 14:05:09 PM"
        );
        assert_eq!(strftime_utc("%j %I %% %Q", secs), "205 02 % %Q");
        assert_eq!(strftime_utc("%Y-%m-%d", 0), "1970-01-01");
        assert_eq!(strftime_utc("%Y-%m-%d %a", 951_782_400), "2000-02-29 Tue");
        let template = ChatTemplate::new("{{ strftime_now('%Y') }}").unwrap();
        let year: u32 = template
            .render(&[], false, "", "")
            .unwrap()
            .parse()
            .unwrap();
        assert!(year >= 2024);
    }

    #[test]
    fn select_template_prefers_tokenizer_template() {
        let config = TokenizerConfig {
            chat_template: Some("{{ bos_token }}custom".to_owned()),
            ..TokenizerConfig::default()
        };
        let template = select_template(Some(&config), "LlamaForCausalLM").unwrap();
        assert_eq!(template.render(&[], false, "<s>", "").unwrap(), "<s>custom");
        let template = select_template(None, "LlamaForCausalLM").unwrap();
        assert_eq!(template.source(), LLAMA3_TEMPLATE);
        let template = select_template(Some(&TokenizerConfig::default()), "mistral").unwrap();
        assert_eq!(template.source(), MISTRAL_TEMPLATE);
        let err = select_template(None, "GPT2LMHeadModel").unwrap_err();
        assert!(err.to_string().contains("GPT2LMHeadModel"), "{err}");
    }

    /// An HF-style ChatML template: a default system prompt kept in a `namespace`, a system
    /// message allowed only first, `.strip()`, and statement tags without `-` so that
    /// `trim_blocks`/`lstrip_blocks` decide the whitespace.
    const CHATML_TEMPLATE: &str = "{% set ns = namespace(system='You are a CTI analyst.') %}
{% for message in messages %}
    {% if message['role'] == 'system' %}
        {% if not loop.first %}
            {{ raise_exception('the system message must come first') }}
        {% endif %}
        {% set ns.system = message['content'].strip() %}
    {% endif %}
{% endfor %}
<|im_start|>system
{{ ns.system }}<|im_end|>
{% for message in messages if message['role'] != 'system' %}
<|im_start|>{{ message['role'] }}
{{ message['content'].strip() }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}";

    /// An HF-style Gemma template: no system role, alternating turns, `loop.last`,
    /// `.startswith()`, inline conditionals, `tojson` and `strftime_now`.
    const GEMMA_TEMPLATE: &str = "{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {{- raise_exception('System role not supported') -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}
    {%- endif -%}
    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
    {{- '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' -}}
    {%- if loop.last and message['content'].startswith('Answer') %}[last={{ message | tojson }}]{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<start_of_turn>model\\n' -}}
{%- endif -%}
{{ '\\n' ~ strftime_now('%Y') }}";

    /// Renders every case with Python jinja2 configured as HF's `apply_chat_template`.
    const REFERENCE_SCRIPT: &str = r#"
import json, sys
from datetime import datetime
import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)

def strftime_now(fmt):
    return datetime.now().strftime(fmt)

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                    extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now
results = []
for case in json.load(open(sys.argv[1], encoding="utf-8")):
    # Key order as callers of apply_chat_template write messages (JSON here sorts them).
    messages = [{"role": m["role"], "content": m["content"]} for m in case["messages"]]
    try:
        text = env.from_string(case["template"]).render(
            messages=messages, add_generation_prompt=case["add_generation_prompt"],
            bos_token=case["bos_token"], eos_token=case["eos_token"])
        results.append({"ok": text})
    except jinja2.exceptions.TemplateError as err:
        results.append({"error": str(err)})
json.dump(results, sys.stdout, ensure_ascii=False)
"#;

    #[test]
    #[ignore = "needs CTIFORGE_REF_PYTHON: a Python interpreter with jinja2"]
    fn chat_templates_match_jinja2() {
        let Ok(python) = std::env::var("CTIFORGE_REF_PYTHON") else {
            panic!(
                "CTIFORGE_REF_PYTHON is not set: point it at a Python interpreter that has \
                 jinja2 installed (e.g. CTIFORGE_REF_PYTHON=python3) to compare chat templates \
                 with the reference renderer"
            );
        };
        let templates = [
            ("llama3", LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"),
            ("mistral", MISTRAL_TEMPLATE, "<s>", "</s>"),
            ("chatml", CHATML_TEMPLATE, "", "<|im_end|>"),
            ("gemma", GEMMA_TEMPLATE, "<bos>", "<eos>"),
        ];
        let conversations = [
            vec![ChatMessage::user("Hello")],
            conversation(),
            vec![
                ChatMessage::user("  Extract IOCs: 8.8.8.8, \"evil.example\" & <b>tags</b>\t\n"),
                ChatMessage::assistant("Answer: naïve ✓ 漢字 — 8.8.8.8\n\n"),
            ],
            vec![ChatMessage::user("a"), ChatMessage::system("late system")],
        ];
        let mut cases = Vec::new();
        for (name, source, bos, eos) in templates {
            for (index, messages) in conversations.iter().enumerate() {
                for add_generation_prompt in [false, true] {
                    cases.push((
                        name,
                        index,
                        source,
                        bos,
                        eos,
                        messages,
                        add_generation_prompt,
                    ));
                }
            }
        }
        let payload: Vec<serde_json::Value> = cases
            .iter()
            .map(|(_, _, source, bos, eos, messages, add)| {
                serde_json::json!({
                    "template": source, "messages": messages, "add_generation_prompt": add,
                    "bos_token": bos, "eos_token": eos,
                })
            })
            .collect();

        let dir = tempfile::tempdir().unwrap();
        let data_path = dir.path().join("cases.json");
        let script_path = dir.path().join("render.py");
        std::fs::write(&data_path, serde_json::to_string(&payload).unwrap()).unwrap();
        std::fs::write(&script_path, REFERENCE_SCRIPT).unwrap();
        let output = std::process::Command::new(&python)
            .arg(&script_path)
            .arg(&data_path)
            .env("TZ", "UTC")
            .output()
            .unwrap_or_else(|err| panic!("cannot run CTIFORGE_REF_PYTHON={python}: {err}"));
        assert!(
            output.status.success(),
            "reference renderer failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let expected: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(expected.len(), cases.len());

        let mut errors_seen = 0;
        for (case, reference) in cases.iter().zip(&expected) {
            let (name, index, source, bos, eos, messages, add) = case;
            let label = format!("template {name}, conversation {index}, generation prompt {add}");
            let ours = ChatTemplate::new(source)
                .unwrap()
                .render(messages, *add, bos, eos);
            match (reference.get("ok").and_then(|v| v.as_str()), ours) {
                (Some(want), Ok(got)) => assert_eq!(got, want, "{label}"),
                (None, Err(err)) => {
                    let want = reference["error"].as_str().unwrap();
                    assert!(err.to_string().contains(want), "{label}: {err} vs {want}");
                    errors_seen += 1;
                }
                (want, got) => panic!("{label}: jinja2 gave {want:?} but we gave {got:?}"),
            }
        }
        assert!(errors_seen >= 4, "the error cases were not exercised");
    }
}
