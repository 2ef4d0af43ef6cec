//! In-place edits of a configuration file's text: replacements of byte ranges and notes at
//! the end of a line, applied together so that the spans read from the original text stay
//! valid. Line numbers do not move: a note goes to the end of an existing line. Pure.

use std::ops::Range;

#[derive(Debug, Default)]
pub struct Editor {
    edits: Vec<(Range<usize>, String)>,
}

impl Editor {
    pub fn replace(&mut self, range: Range<usize>, text: impl Into<String>) {
        self.edits.push((range, text.into()));
    }

    /// Whether `range` is deleted whole: then nothing inside it may be edited too, as
    /// overlapping edits would cut the text apart (found by fuzzing).
    pub fn removes(&self, range: &Range<usize>) -> bool {
        self.edits
            .iter()
            .any(|(r, text)| r == range && text.is_empty())
    }

    pub fn insert(&mut self, at: usize, text: impl Into<String>) {
        self.edits.push((at..at, text.into()));
    }

    /// A `# hostmanager: …` comment at the end of the line where `after` is, when the rest
    /// of that line holds nothing but blanks or a comment (so the note cannot swallow a
    /// directive); otherwise no note (the translation is still listed in the record).
    pub fn note(&mut self, text: &str, after: usize, note: &str) {
        let rest = &text[after.min(text.len())..];
        let end = rest.find('\n').map_or(text.len(), |n| after + n);
        let tail = text[after.min(end)..end].trim_start();
        if tail.is_empty() || tail.starts_with('#') {
            let clean = note.replace('\n', " ");
            self.insert(end, format!(" # hostmanager: {clean}"));
        }
    }

    /// The edited text. Edits are applied from the end of the text backwards; insertions at
    /// the same place keep the order they were made in.
    pub fn apply(mut self, text: &str) -> String {
        let mut indexed: Vec<(usize, (Range<usize>, String))> =
            self.edits.drain(..).enumerate().collect();
        indexed.sort_by(|(ia, (a, _)), (ib, (b, _))| b.start.cmp(&a.start).then(ib.cmp(ia)));
        let mut out = text.to_string();
        for (_, (range, replacement)) in indexed {
            out.replace_range(range, &replacement);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_and_notes_keep_every_line_where_it_was() {
        let text = "a 1;\nb 2; c 3;\nd 4; # old\n";
        let mut editor = Editor::default();
        editor.replace(2..3, "one");
        editor.note(text, 4, "first");
        editor.note(text, 4, "second");
        // `c 3;` follows on its line: no note there.
        editor.note(text, 9, "skipped");
        editor.replace(15..19, "");
        editor.note(text, 19, "gone");
        let out = editor.apply(text);
        assert_eq!(
            out,
            "a one; # hostmanager: first # hostmanager: second\nb 2; c 3;\n # old # hostmanager: gone\n"
        );
        assert_eq!(out.lines().count(), text.lines().count());
    }
}
