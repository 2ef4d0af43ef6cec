//! Reads nginx's configuration syntax into a tree of directives that remembers where each
//! piece sits in the text, so translations can edit the text in place and keep everything
//! else (comments, layout, line numbers) as the bundle wrote it. Pure.
//!
//! The lexical rules are nginx's own (`ngx_conf_read_token`): words end at whitespace, `;`,
//! `{` or `}`; `#` starts a comment only where a word could start; quotes group a word and
//! a backslash escapes the next character; `${name}` is part of a word.

use std::ops::Range;

/// One argument (or the name) of a directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// Without quotes and escapes, as nginx sees it.
    pub value: String,
    /// Where it is in the text, quotes included.
    pub span: Range<usize>,
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: Word,
    pub args: Vec<Word>,
    /// From the name to the `;` or the block's `}`, inclusive.
    pub span: Range<usize>,
    /// The block's directives, for `http { … }` and the like.
    pub block: Option<Block>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Just after the `{`.
    pub inner_start: usize,
    pub children: Vec<Directive>,
}

impl Directive {
    pub fn line(&self) -> u32 {
        self.name.line
    }

    pub fn children(&self) -> &[Directive] {
        self.block.as_ref().map_or(&[], |b| &b.children)
    }

    /// The directive as a person would quote it: `proxy_pass http://127.0.0.1:8080`.
    pub fn shown(&self) -> String {
        let mut text = self.name.value.clone();
        for arg in &self.args {
            text.push(' ');
            text.push_str(&arg.value);
        }
        text
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: u32,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(Word),
    Semicolon(usize, u32),
    Open(usize, u32),
    Close(usize, u32),
}

/// Parses a whole file (main context).
pub fn parse(text: &str) -> Result<Vec<Directive>, SyntaxError> {
    let tokens = tokenize(text)?;
    let mut position = 0;
    let directives = parse_block(&tokens, &mut position, None)?;
    Ok(directives)
}

fn parse_block(
    tokens: &[Token],
    position: &mut usize,
    opened_at: Option<u32>,
) -> Result<Vec<Directive>, SyntaxError> {
    let mut directives = Vec::new();
    let mut words: Vec<Word> = Vec::new();
    while let Some(token) = tokens.get(*position) {
        *position += 1;
        match token {
            Token::Word(word) => words.push(word.clone()),
            Token::Semicolon(at, line) => {
                let Some(name) = words.first().cloned() else {
                    return Err(SyntaxError {
                        line: *line,
                        message: "unexpected \";\"".into(),
                    });
                };
                let start = name.span.start;
                directives.push(Directive {
                    name,
                    args: words.split_off(1),
                    span: start..at + 1,
                    block: None,
                });
                words.clear();
            }
            Token::Open(at, line) => {
                let Some(name) = words.first().cloned() else {
                    return Err(SyntaxError {
                        line: *line,
                        message: "unexpected \"{\"".into(),
                    });
                };
                let children = parse_block(tokens, position, Some(*line))?;
                let end = match tokens.get(*position - 1) {
                    Some(Token::Close(end, _)) => *end + 1,
                    _ => *at + 1,
                };
                let start = name.span.start;
                directives.push(Directive {
                    name,
                    args: words.split_off(1),
                    span: start..end,
                    block: Some(Block {
                        inner_start: at + 1,
                        children,
                    }),
                });
                words.clear();
            }
            Token::Close(_, line) => {
                if !words.is_empty() {
                    return Err(SyntaxError {
                        line: *line,
                        message: format!(
                            "unexpected \"}}\": directive \"{}\" has no \";\"",
                            words[0].value
                        ),
                    });
                }
                if opened_at.is_none() {
                    return Err(SyntaxError {
                        line: *line,
                        message: "unexpected \"}\"".into(),
                    });
                }
                return Ok(directives);
            }
        }
    }
    if let Some(word) = words.first() {
        return Err(SyntaxError {
            line: word.line,
            message: format!(
                "unexpected end of file: directive \"{}\" has no \";\"",
                word.value
            ),
        });
    }
    if let Some(line) = opened_at {
        return Err(SyntaxError {
            line,
            message: "unexpected end of file: the \"{\" opened here is never closed".into(),
        });
    }
    Ok(directives)
}

fn tokenize(text: &str) -> Result<Vec<Token>, SyntaxError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut line = 1u32;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b';' => {
                tokens.push(Token::Semicolon(i, line));
                i += 1;
            }
            b'{' => {
                tokens.push(Token::Open(i, line));
                i += 1;
            }
            b'}' => {
                tokens.push(Token::Close(i, line));
                i += 1;
            }
            b'"' | b'\'' => {
                let (word, next, newlines) = quoted(text, i, line)?;
                tokens.push(Token::Word(word));
                line += newlines;
                i = next;
            }
            _ => {
                let (word, next) = bare(text, i, line);
                tokens.push(Token::Word(word));
                i = next;
            }
        }
    }
    Ok(tokens)
}

fn quoted(text: &str, start: usize, line: u32) -> Result<(Word, usize, u32), SyntaxError> {
    let bytes = text.as_bytes();
    let quote = bytes[start];
    let mut value = Vec::new();
    let mut newlines = 0;
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() => {
                // nginx keeps the backslash except before a quote or another backslash.
                let next = bytes[i + 1];
                if next != quote && next != b'\\' {
                    value.push(b'\\');
                }
                if next == b'\n' {
                    newlines += 1;
                }
                value.push(next);
                i += 2;
            }
            c if c == quote => {
                let end = i + 1;
                if let Some(&after) = bytes.get(end)
                    && !matches!(
                        after,
                        b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b'}' | b')'
                    )
                {
                    return Err(SyntaxError {
                        line: line + newlines,
                        message: format!("unexpected \"{}\" after a quoted string", after as char),
                    });
                }
                let word = Word {
                    value: String::from_utf8_lossy(&value).into_owned(),
                    span: start..end,
                    line,
                };
                return Ok((word, end, newlines));
            }
            c => {
                if c == b'\n' {
                    newlines += 1;
                }
                value.push(c);
                i += 1;
            }
        }
    }
    Err(SyntaxError {
        line,
        message: "unexpected end of file: a quoted string is never closed".into(),
    })
}

fn bare(text: &str, start: usize, line: u32) -> (Word, usize) {
    let bytes = text.as_bytes();
    let mut value = Vec::new();
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\r' | b'\n' | b';' | b'}' => break,
            // `${name}`: the braces belong to the variable, not to a block.
            b'{' if i > start && bytes[i - 1] == b'$' => {
                while i < bytes.len() && bytes[i] != b'}' {
                    value.push(bytes[i]);
                    i += 1;
                }
                if i < bytes.len() {
                    value.push(b'}');
                    i += 1;
                }
            }
            b'{' => break,
            b'\\' if i + 1 < bytes.len() => {
                value.push(bytes[i + 1]);
                i += 2;
            }
            c => {
                value.push(c);
                i += 1;
            }
        }
    }
    let word = Word {
        value: String::from_utf8_lossy(&value).into_owned(),
        span: start..i,
        line,
    };
    (word, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_blocks_comments_and_quotes_parse_with_their_lines() {
        let text = "user nginx; # who\nhttp {\n  log_format main '$a \"b\"'\n    'c';\n  server { listen 80; }\n}\n";
        let tree = parse(text).expect("parses");
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0].shown(), "user nginx");
        assert_eq!(&text[tree[0].span.clone()], "user nginx;");
        let http = &tree[1];
        assert_eq!((http.name.value.as_str(), http.line()), ("http", 2));
        let format = &http.children()[0];
        assert_eq!(format.args[1].value, "$a \"b\"");
        assert_eq!(format.args[2].line, 4);
        let server = &http.children()[1];
        assert_eq!(server.line(), 5);
        assert_eq!(server.children()[0].shown(), "listen 80");
        assert_eq!(&text[server.span.clone()], "server { listen 80; }");
    }

    #[test]
    fn variables_in_braces_and_if_conditions_are_words() {
        let tree =
            parse("location / { if ($http_x = 'http') { return 301 https://${host}$uri; } }")
                .expect("parses");
        let condition = &tree[0].children()[0];
        // As in nginx, a `)` after a quoted string is a word of its own.
        assert_eq!(condition.shown(), "if ($http_x = http )");
        assert_eq!(
            condition.children()[0].shown(),
            "return 301 https://${host}$uri"
        );
    }

    #[test]
    fn broken_syntax_names_its_line() {
        let cases = [
            ("http {\n  server {\n", 2, "never closed"),
            ("a b;\n}\n", 2, "unexpected \"}\""),
            ("a b\n", 1, "has no \";\""),
            ("a 'b\n", 1, "never closed"),
            ("a 'b'c;", 1, "after a quoted string"),
            ("\n;", 2, "unexpected \";\""),
        ];
        for (text, line, message) in cases {
            let error = parse(text).expect_err(text);
            assert_eq!(error.line, line, "{text:?}: {error:?}");
            assert!(error.message.contains(message), "{text:?}: {error:?}");
        }
    }
}
