//! Where in the config text an error is: line and column for `file:line:col: key: why`.

use super::ConfigError;

pub(super) fn invalid(text: &str, origin: &str, key: &str, e: toml::de::Error) -> ConfigError {
    let (line, column) = match e.span() {
        Some(span) => line_col(text, span.start),
        None => (1, 1),
    };
    ConfigError::Invalid {
        origin: origin.to_string(),
        line,
        column,
        key: if key.is_empty() || key == "." {
            String::new()
        } else {
            format!("{key}: ")
        },
        message: e.message().trim_end().to_string(),
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// Best-effort position of a key path such as `rules[1].rate`: the n-th `[[rules]]` table,
/// then the first line below it that sets the field.
pub(super) fn locate_key(text: &str, key: &str) -> (usize, usize) {
    let (table, index, field) = match key.split_once('[') {
        Some((table, rest)) => {
            let (index, field) = rest
                .split_once("].")
                .unwrap_or((rest.trim_end_matches(']'), ""));
            (table, index.parse::<usize>().ok(), field)
        }
        None => match key.split_once('.') {
            Some((table, field)) => (table, None, field),
            None => ("", None, key),
        },
    };
    let mut seen = 0usize;
    let mut in_target = table.is_empty();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            let name = trimmed.trim_matches(|c| c == '[' || c == ']' || c == ' ');
            let name = name.split(']').next().unwrap_or("");
            in_target = if name == table {
                let this = seen;
                seen += 1;
                index.is_none_or(|i| i == this)
            } else {
                false
            };
            if in_target && field.is_empty() {
                return (n + 1, 1);
            }
            continue;
        }
        if in_target && !field.is_empty() {
            let k = trimmed.split('=').next().unwrap_or("").trim();
            if k == field {
                return (n + 1, line.len() - trimmed.len() + 1);
            }
        }
    }
    (1, 1)
}
