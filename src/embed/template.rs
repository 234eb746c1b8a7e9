//! Templates filled from an embed's captures: ACLs, URLs, data, API calls.
//!
//! `{name}` stands for a capture of the `src` pattern; the rest is literal.

/// A piece of a template: text as written, or a capture by its slot.
#[derive(Debug, Clone)]
pub(super) enum Piece {
    /// Literal text.
    Literal(String),
    /// The capture in this slot.
    Capture(usize),
}

/// Appends the template filled with `captures` to `out`.
pub(super) fn fill_into(out: &mut String, pieces: &[Piece], captures: &[&str]) {
    for piece in pieces {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Capture(slot) => out.push_str(captures[*slot]),
        }
    }
}

// The token goes raw into a query value inside an attribute: what it carries
// unescaped must end neither.
pub(super) fn is_query_value_safe(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_graphic() && !b"\"'<>&#%+\\`".contains(&b))
}

/// `{name}`: letters, digits and `_`.
pub(super) fn is_placeholder_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A template whose every `{...}` must be a placeholder.
pub(super) fn parse_template(
    text: &str,
    slot: impl FnMut(&str) -> Result<usize, String>,
) -> Result<Vec<Piece>, String> {
    parse_pieces(text, false, slot)
}

/// A JSON body template: its own braces are literal; only `{name}` is a placeholder.
pub(super) fn parse_body_template(
    text: &str,
    slot: impl FnMut(&str) -> Result<usize, String>,
) -> Result<Vec<Piece>, String> {
    parse_pieces(text, true, slot)
}

pub(super) fn parse_pieces(
    text: &str,
    literal_braces: bool,
    mut slot: impl FnMut(&str) -> Result<usize, String>,
) -> Result<Vec<Piece>, String> {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        literal.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name = after.find('}').map(|close| &after[..close]);
        match name {
            Some(name) if is_placeholder_name(name) => {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                } else if matches!(pieces.last(), Some(Piece::Capture(_))) {
                    return Err("two placeholders in a row cannot be told apart".into());
                }
                pieces.push(Piece::Capture(slot(name)?));
                rest = &after[name.len() + 1..];
            }
            _ if literal_braces => {
                literal.push('{');
                rest = after;
            }
            Some(name) => {
                return Err(format!(
                    "{{{name}}} is not a placeholder name (letters, digits, _)"
                ));
            }
            None => return Err("unclosed '{'".into()),
        }
    }
    if !literal_braces && rest.contains('}') {
        return Err("'}' without '{'".into());
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}
