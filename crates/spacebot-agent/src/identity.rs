//! Identity files: the Markdown an operator writes to give an agent a stable personality,
//! `SOUL.md` (values and temperament), `IDENTITY.md` (name, role, voice) and `USER.md` (who it
//! works for), read from the agent's identity directory into every system prompt.
//!
//! They are rendered in that fixed order, each under its own heading, HTML comments (`<!-- -->`,
//! what the templates are made of) left out, so the bytes stay the same while the files do:
//! prompt caching depends on it. They are read again at every turn, so an edit shows in the next
//! turn without a restart. A file that is missing, empty or only comments adds nothing; one longer
//! than [`MAX_FILE_BYTES`] is cut, with a note.

use std::path::{Path, PathBuf};

/// The files, in the order they are rendered, with their headings and the templates a missing
/// directory is created with.
pub const IDENTITY_FILES: [(&str, &str, &str); 3] = [
    (
        "SOUL.md",
        "Soul",
        "<!-- SOUL.md: who this agent is at heart: what it values, its temperament, how it treats \
         people. Write plain Markdown below this comment; comments like this one never reach the \
         model. The file is read again at every turn. -->\n",
    ),
    (
        "IDENTITY.md",
        "Identity",
        "<!-- IDENTITY.md: the agent's name, its role here, and its voice (brief or chatty, formal \
         or casual, emoji or none). Plain Markdown below; this comment is not shown. -->\n",
    ),
    (
        "USER.md",
        "The people it works with",
        "<!-- USER.md: who the agent works for and with: the team, the community, what they care \
         about, how to address them. Plain Markdown below; this comment is not shown. -->\n",
    ),
];

/// The most bytes of one file that reach the prompt.
pub const MAX_FILE_BYTES: usize = 16 * 1024;

/// An agent's identity directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityDir {
    dir: PathBuf,
}

/// What one identity file holds, as [`IdentityDir::summary`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileState {
    /// Not there.
    Missing,
    /// Nothing but whitespace and comments: it adds nothing to the prompt.
    Empty,
    /// This many bytes reach the prompt.
    Written(usize),
}

impl IdentityDir {
    /// The identity files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory and any file missing from it, each holding its commented template;
    /// a file that exists is never touched.
    ///
    /// # Errors
    ///
    /// When the directory or a file can't be created.
    pub fn create_missing(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        for (name, _, template) in IDENTITY_FILES {
            let path = self.dir.join(name);
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => std::io::Write::write_all(&mut file, template.as_bytes())?,
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// What each file holds, for `config check` (read as [`render`](Self::render) reads them;
    /// one that can't be read counts as missing).
    pub fn summary(&self) -> Vec<(&'static str, FileState)> {
        IDENTITY_FILES
            .iter()
            .map(|(name, _, _)| {
                let state = match read_small(&self.dir.join(name)) {
                    Ok(Some(text)) => match visible(&text).len() {
                        0 => FileState::Empty,
                        bytes => FileState::Written(bytes.min(MAX_FILE_BYTES)),
                    },
                    Ok(None) | Err(_) => FileState::Missing,
                };
                (*name, state)
            })
            .collect()
    }

    /// The render for the system prompt, read now (empty when no file says anything). A file
    /// that can't be read, or is not a regular file, is left out with a warning.
    ///
    /// Reads synchronously: three small regular files (checked before they are opened, so a FIFO
    /// can't block), cheaper than a trip to the blocking pool and free of its effect on a paused
    /// test clock.
    pub fn render(&self) -> String {
        let mut sections = Vec::new();
        for (name, heading, _) in IDENTITY_FILES {
            let path = self.dir.join(name);
            let text = match read_small(&path) {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "can't read an identity file; leaving it out");
                    continue;
                }
            };
            let body = visible(&text);
            if body.is_empty() {
                continue;
            }
            sections.push(format!("## {heading}\n\n{}", cut(&body, name)));
        }
        sections.join("\n\n")
    }
}

/// The text of the regular file at `path`, `None` when there is none; anything else (a
/// directory, a FIFO, a file over a megabyte) is an error.
fn read_small(path: &Path) -> std::io::Result<Option<String>> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > 1024 * 1024 {
        return Err(std::io::Error::other(format!("{} bytes; identity files are read whole, up to 1 MiB", meta.len())));
    }
    let bytes = std::fs::read(path)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// `text` without HTML comments, trimmed.
fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        rest = match rest[start..].find("-->") {
            Some(end) => &rest[start + end + 3..],
            // An unclosed comment runs to the end, as in HTML.
            None => "",
        };
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// `body` within [`MAX_FILE_BYTES`], cut at a character boundary with a note.
fn cut(body: &str, name: &str) -> String {
    if body.len() <= MAX_FILE_BYTES {
        return body.to_owned();
    }
    let mut end = MAX_FILE_BYTES;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[{name} is longer than {MAX_FILE_BYTES} bytes; the rest is left out]", &body[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_nothing_and_written_files_render_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let identity = IdentityDir::new(dir.path().join("agents/main"));
        identity.create_missing().unwrap();
        assert_eq!(identity.render(), "", "the templates are only comments");
        assert!(identity.summary().iter().all(|(_, state)| *state == FileState::Empty));

        std::fs::write(identity.path().join("USER.md"), "<!-- who -->\nThe ops team.\n").unwrap();
        std::fs::write(identity.path().join("SOUL.md"), "Be kind, be brief.").unwrap();
        // An existing file is never overwritten by the templates.
        identity.create_missing().unwrap();
        assert_eq!(identity.render(), "## Soul\n\nBe kind, be brief.\n\n## The people it works with\n\nThe ops team.");
        assert_eq!(identity.summary()[0], ("SOUL.md", FileState::Written(18)));
        std::fs::remove_file(identity.path().join("IDENTITY.md")).unwrap();
        assert_eq!(identity.summary()[1], ("IDENTITY.md", FileState::Missing));
    }

    #[test]
    fn comments_are_left_out_and_long_files_cut() {
        assert_eq!(visible("a <!-- x --> b <!-- unclosed"), "a  b");
        let long = "é".repeat(MAX_FILE_BYTES);
        let cut = cut(&long, "SOUL.md");
        assert!(cut.ends_with("the rest is left out]"), "{}", &cut[cut.len() - 80..]);
        assert!(cut.len() < MAX_FILE_BYTES + 100);
    }
}
