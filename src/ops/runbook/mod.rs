//! Runbooks: Markdown a person reads at 3 a.m., whose fenced ` ```lifeboat {#id ...} ` blocks
//! are the steps lifeboat executes, one lifeboat command line per block.
//!
//! This file owns the parsing (pure): the Markdown scan, the step attributes
//! (`#id`, `confirm=true`, `timeout=10m`), the shell-like word splitting (quotes and
//! backslashes, never a shell: no pipes, globs or command substitution) and the `${VAR}`
//! substitution. [`run`] owns executing a runbook step by step with every step's start and
//! end persisted in the catalog.
//!
//! # Guarantees
//! - Only blocks whose info string starts with the word `lifeboat` are steps; every other
//!   block (```` ```sh ````, ```` ```yaml ````) is prose.
//! - A step without an id, a duplicated id, an unknown attribute, an unparsable timeout or
//!   an unbalanced quote makes the whole runbook invalid: nothing of it runs.
//! - Variables are substituted after splitting, so a value with spaces or quotes stays one
//!   argument; an undefined variable is an error naming it, never an empty string.
//!
//! # Caveats
//! Whether each step is a valid lifeboat command line is checked by the CLI (`runbook
//! lint`), which knows the command grammar; this module only knows words.

pub mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long a step may run when its block sets no `timeout=`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// One problem found in a runbook, with the line (1-based) it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    #[error(
        "runbook `{name}` is invalid:\n{}\nfix it (`lifeboat runbook lint {name}` lists every problem)",
        .problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
    )]
    Invalid {
        name: String,
        problems: Vec<Problem>,
    },
    #[error(
        "runbook `{runbook}` needs {}: pass {}",
        .missing.iter().map(|v| format!("${{{v}}}")).collect::<Vec<_>>().join(", "),
        .missing.iter().map(|v| format!("--var {v}=...")).collect::<Vec<_>>().join(" ")
    )]
    MissingVars {
        runbook: String,
        missing: Vec<String>,
    },
}

impl RunbookError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        crate::model::ErrorKind::Config
    }
}

/// One executable step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub id: String,
    /// Ask before running it (on a terminal), refuse it without `--yes` otherwise.
    pub confirm: bool,
    pub timeout: Duration,
    /// The line of the opening fence.
    pub line: usize,
    /// The block's text as written.
    pub command: String,
    /// The words of the command line, `${VAR}` not yet substituted, a leading `lifeboat`
    /// removed.
    pub words: Vec<String>,
}

impl Step {
    /// The arguments to give lifeboat, with `vars` substituted.
    pub fn argv(&self, vars: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
        self.words.iter().map(|w| substitute(w, vars)).collect()
    }

    /// The variables this step uses.
    pub fn vars(&self) -> BTreeSet<String> {
        self.words.iter().flat_map(|w| vars_in(w)).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runbook {
    pub name: String,
    /// The first `# ` heading (the name when there is none).
    pub title: String,
    pub text: String,
    pub steps: Vec<Step>,
}

impl Runbook {
    /// Parses `text`; every problem found, not only the first, when it is invalid.
    pub fn parse(name: &str, text: &str) -> Result<Runbook, RunbookError> {
        let (runbook, problems) = scan(name, text);
        if problems.is_empty() {
            Ok(runbook)
        } else {
            Err(RunbookError::Invalid {
                name: name.to_string(),
                problems,
            })
        }
    }

    /// Every variable a step uses.
    pub fn vars(&self) -> BTreeSet<String> {
        self.steps.iter().flat_map(Step::vars).collect()
    }

    /// The variables of [`Runbook::vars`] that `vars` does not define.
    pub fn check_vars(&self, vars: &BTreeMap<String, String>) -> Result<(), RunbookError> {
        let missing: Vec<String> = self
            .vars()
            .into_iter()
            .filter(|v| !vars.contains_key(v))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(RunbookError::MissingVars {
                runbook: self.name.clone(),
                missing,
            })
        }
    }
}

/// The fence that opens a code block: its marker (``` or ~~~, length ≥ 3) and info string.
fn fence(line: &str) -> Option<(char, usize, &str)> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let c = trimmed.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let n = trimmed.chars().take_while(|&x| x == c).count();
    (n >= 3).then(|| (c, n, trimmed[n..].trim()))
}

fn scan(name: &str, text: &str) -> (Runbook, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut title = None;
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let Some((c, n, info)) = fence(line) else {
            if title.is_none()
                && let Some(t) = line.strip_prefix("# ")
            {
                title = Some(t.trim().to_string());
            }
            continue;
        };
        let mut body = Vec::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if let Some((c2, n2, rest)) = fence(l)
                && c2 == c
                && n2 >= n
                && rest.is_empty()
            {
                closed = true;
                break;
            }
            body.push(l);
        }
        let lang = info.split_whitespace().next().unwrap_or("");
        let is_step = lang == "lifeboat" || lang.starts_with("lifeboat{");
        if !is_step {
            continue;
        }
        let line_no = i + 1;
        let mut problem = |message: String| {
            problems.push(Problem {
                line: line_no,
                message,
            })
        };
        if !closed {
            problem("the lifeboat block is never closed".into());
        }
        let attrs = match parse_attrs(info["lifeboat".len()..].trim()) {
            Ok(a) => a,
            Err(e) => {
                problem(e);
                continue;
            }
        };
        let command = body.join("\n");
        let words = match split_words(&command) {
            Ok(mut w) => {
                if w.first().is_some_and(|f| f == "lifeboat") {
                    w.remove(0);
                }
                w
            }
            Err(e) => {
                problem(format!("step `{}`: {e}", attrs.id));
                continue;
            }
        };
        if words.is_empty() {
            problem(format!("step `{}` has no command", attrs.id));
        }
        for w in &words {
            if let Err(e) = check_var_syntax(w) {
                problem(format!("step `{}`: {e}", attrs.id));
            }
        }
        if steps.iter().any(|s| s.id == attrs.id) {
            problem(format!(
                "step id `{}` is used twice; step ids must be unique (resume finds steps by id)",
                attrs.id
            ));
        }
        steps.push(Step {
            id: attrs.id,
            confirm: attrs.confirm,
            timeout: attrs.timeout,
            line: line_no,
            command,
            words,
        });
    }
    (
        Runbook {
            name: name.to_string(),
            title: title.unwrap_or_else(|| name.to_string()),
            text: text.to_string(),
            steps,
        },
        problems,
    )
}

struct Attrs {
    id: String,
    confirm: bool,
    timeout: Duration,
}

/// `{#id confirm=true timeout=10m}`.
fn parse_attrs(s: &str) -> Result<Attrs, String> {
    let inner = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| {
            format!("a lifeboat block needs attributes with a step id, like ```lifeboat {{#step-id}}, not `{s}`")
        })?;
    let mut id = None;
    let mut confirm = false;
    let mut timeout = DEFAULT_TIMEOUT;
    for part in inner.split_whitespace() {
        if let Some(i) = part.strip_prefix('#') {
            if id.is_some() {
                return Err(format!("two step ids in `{{{inner}}}`"));
            }
            if !valid_step_id(i) {
                return Err(format!(
                    "step id `{i}` must be 1-64 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit"
                ));
            }
            id = Some(i.to_string());
        } else if let Some(v) = part.strip_prefix("confirm=") {
            confirm = match v {
                "true" => true,
                "false" => false,
                _ => return Err(format!("confirm must be true or false, not `{v}`")),
            };
        } else if let Some(v) = part.strip_prefix("timeout=") {
            timeout = humantime::parse_duration(v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("timeout `{v}` is not a duration like 30s, 10m or 2h"))?;
        } else {
            return Err(format!(
                "unknown attribute `{part}` (known: #id, confirm=true|false, timeout=DURATION)"
            ));
        }
    }
    let id = id.ok_or_else(|| format!("the lifeboat block `{{{inner}}}` has no `#step-id`"))?;
    Ok(Attrs {
        id,
        confirm,
        timeout,
    })
}

pub fn valid_step_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

/// Splits a command line into words like a POSIX shell does for quoting only: whitespace
/// (newlines included) separates words; `'...'` is literal; `"..."` is literal except `\"`,
/// `\\`, `\$` and `${VAR}`; a backslash outside quotes escapes the next character and a
/// backslash before a newline joins lines. Nothing else is special: no `|`, `;`, `*`, `~` or
/// `$(...)`.
///
/// The words come back *encoded* for [`substitute`]: a literal `\` is `\\` and a literal `$`
/// is `\$`, so only an unquoted or double-quoted `${VAR}` is a variable.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    fn lit(cur: &mut String, c: char) {
        match c {
            '\\' => cur.push_str("\\\\"),
            '$' => cur.push_str("\\$"),
            c => cur.push(c),
        }
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(n) => {
                    lit(&mut cur, n);
                    in_word = true;
                }
                None => return Err("a backslash ends the command".into()),
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => lit(&mut cur, n),
                        None => return Err("a single quote is never closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$')) => lit(&mut cur, n),
                            Some('\n') => {}
                            Some(n) => {
                                lit(&mut cur, '\\');
                                lit(&mut cur, n);
                            }
                            None => return Err("a double quote is never closed".into()),
                        },
                        Some('$') => cur.push('$'),
                        Some(n) => lit(&mut cur, n),
                        None => return Err("a double quote is never closed".into()),
                    }
                }
            }
            '$' => {
                cur.push('$');
                in_word = true;
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// A piece of an encoded word (see [`split_words`]).
enum Piece<'a> {
    Char(char),
    Var(&'a str),
}

/// The pieces of an encoded word; an error for `${` without `}`.
fn pieces(word: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = word;
    while let Some(c) = rest.chars().next() {
        if c == '\\'
            && let Some(n) = rest[1..].chars().next()
        {
            out.push(Piece::Char(n));
            rest = &rest[1 + n.len_utf8()..];
        } else if let Some(after) = rest.strip_prefix("${") {
            let j = after
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in `{word}`"))?;
            out.push(Piece::Var(&after[..j]));
            rest = &after[j + 1..];
        } else {
            out.push(Piece::Char(c));
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(out)
}

/// Variable names in an encoded `word`.
fn vars_in(word: &str) -> Vec<String> {
    pieces(word)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(v) => Some(v.to_string()),
            Piece::Char(_) => None,
        })
        .collect()
}

pub fn valid_var_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

fn check_var_syntax(word: &str) -> Result<(), String> {
    for p in pieces(word)? {
        if let Piece::Var(v) = p
            && !valid_var_name(v)
        {
            return Err(format!(
                "`${{{v}}}` is not a variable name (letters, digits and `_`)"
            ));
        }
    }
    Ok(())
}

/// The encoded `word` (see [`split_words`]) with every `${NAME}` replaced by its value.
pub fn substitute(word: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    for p in pieces(word)? {
        match p {
            Piece::Char(c) => out.push(c),
            Piece::Var(name) => {
                out.push_str(vars.get(name).ok_or_else(|| {
                    format!("variable `{name}` is not set: pass --var {name}=...")
                })?)
            }
        }
    }
    Ok(out)
}

/// `K=V` of `--var`.
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("--var `{s}` is not NAME=VALUE"))?;
    if !valid_var_name(k) {
        return Err(format!(
            "--var name `{k}` must be letters, digits and `_`, not starting with a digit"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SAMPLE: &str = "# Restore things\n\nProse.\n\n```sh\nrm -rf /\n```\n\n\
        ```lifeboat {#check}\nlifeboat config check\n```\n\n\
        ```lifeboat {#restore confirm=true timeout=10m}\nrestore ${SNAPSHOT} \\\n  --target \"${TARGET}\"\n```\n";

    #[test]
    fn only_lifeboat_blocks_are_steps() {
        let rb = Runbook::parse("r", SAMPLE).expect("valid");
        assert_eq!(rb.title, "Restore things");
        assert_eq!(rb.steps.len(), 2);
        assert_eq!(rb.steps[0].words, ["config", "check"]);
        assert!(!rb.steps[0].confirm);
        assert_eq!(rb.steps[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(rb.steps[1].id, "restore");
        assert!(rb.steps[1].confirm);
        assert_eq!(rb.steps[1].timeout, Duration::from_secs(600));
        assert_eq!(rb.steps[1].line, 13);
        let v = vars(&[("SNAPSHOT", "s1"), ("TARGET", "postgres://h/db x")]);
        assert_eq!(
            rb.steps[1].argv(&v).expect("argv"),
            ["restore", "s1", "--target", "postgres://h/db x"]
        );
        assert_eq!(
            rb.vars().into_iter().collect::<Vec<_>>(),
            ["SNAPSHOT", "TARGET"]
        );
    }

    #[test]
    fn missing_vars_are_named() {
        let rb = Runbook::parse("r", SAMPLE).expect("valid");
        let err = rb
            .check_vars(&vars(&[("SNAPSHOT", "x")]))
            .expect_err("TARGET missing")
            .to_string();
        assert!(err.contains("--var TARGET=..."), "{err}");
    }

    #[test]
    fn problems_are_all_reported_with_lines() {
        let text = "```lifeboat\nstatus\n```\n```lifeboat {#a}\nstatus\n```\n```lifeboat {#a bogus=1}\nx\n```\n```lifeboat {#a}\nrestore 'open\n```\n```lifeboat {#b timeout=soon}\nx\n```\n```lifeboat {#c}\n```\n";
        let Err(RunbookError::Invalid { problems, .. }) = Runbook::parse("r", text) else {
            panic!("invalid expected")
        };
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [1, 7, 10, 13, 16], "{problems:?}");
        let dup = "```lifeboat {#a}\nstatus\n```\n```lifeboat {#a}\nstatus\n```\n";
        let Err(RunbookError::Invalid { problems, .. }) = Runbook::parse("r", dup) else {
            panic!("duplicate expected")
        };
        assert!(problems[0].message.contains("used twice"));
    }

    #[test]
    fn unclosed_block_is_a_problem() {
        assert!(Runbook::parse("r", "```lifeboat {#a}\nstatus\n").is_err());
    }

    fn split(s: &str) -> Vec<String> {
        split_words(s)
            .expect("split")
            .iter()
            .map(|w| substitute(w, &BTreeMap::new()).expect("literal"))
            .collect()
    }

    #[test]
    fn splitting_quotes_and_escapes() {
        assert_eq!(
            split(r#"a 'b c' "d \"e\"" f\ g "$x" h|i '${A}' \\"#),
            ["a", "b c", "d \"e\"", "f g", "$x", "h|i", "${A}", "\\"]
        );
        assert_eq!(split_words("''").expect("split"), [""]);
        assert!(split_words("'a").is_err());
        assert!(split_words("\"a").is_err());
    }

    #[test]
    fn substitution_keeps_values_whole_and_escapes() {
        let v = vars(&[("A", "x y"), ("B", "${A}")]);
        assert_eq!(substitute("-${A}-", &v).expect("sub"), "-x y-");
        // A value is never substituted again.
        assert_eq!(substitute("${B}", &v).expect("sub"), "${A}");
        let words = split_words(r#""\${A}" \${A} '${A}' "\\${A}""#).expect("split");
        assert_eq!(substitute(&words[0], &v).expect("sub"), "${A}");
        assert_eq!(substitute(&words[1], &v).expect("sub"), "${A}");
        assert_eq!(substitute(&words[2], &v).expect("sub"), "${A}");
        assert_eq!(substitute(&words[3], &v).expect("sub"), "\\x y");
        assert!(substitute("${C}", &v).is_err());
    }

    #[test]
    fn var_flags() {
        assert_eq!(
            parse_var("A_1=x=y").expect("ok"),
            ("A_1".into(), "x=y".into())
        );
        assert!(parse_var("1A=x").is_err());
        assert!(parse_var("A").is_err());
    }

    proptest! {
        /// Quoting each word in single quotes and splitting gives the words back.
        #[test]
        fn split_inverts_single_quoting(words in proptest::collection::vec("[^'\\x00]{0,12}", 1..6)) {
            let line = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
            prop_assert_eq!(split(&line), words);
        }

        /// Escaping every special character with a backslash gives the words back.
        #[test]
        fn split_inverts_backslash_escaping(words in proptest::collection::vec("[a-z $'\"\\\\|;]{1,12}", 1..6)) {
            let line = words.iter().map(|w| w.chars().map(|c| format!("\\{c}")).collect::<String>()).collect::<Vec<_>>().join("  ");
            prop_assert_eq!(split(&line), words);
        }

        /// Substitution never reads a value as a template and never fails on defined vars.
        #[test]
        fn substitution_is_one_pass(value in "[^\\x00]{0,20}") {
            let v = vars(&[("V", &value)]);
            prop_assert_eq!(substitute("a${V}b", &v).expect("sub"), format!("a{value}b"));
        }
    }
}
