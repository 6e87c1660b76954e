//! The workspace and the file tools confined to it.
//!
//! Every path is resolved before use: spelled relative to the workspace (or absolute inside it),
//! normalised without touching the disk (a `..` that climbs out is refused at once), then
//! canonicalised, so a symlink anywhere along the way that points outside is refused too. For
//! writes the deepest existing ancestor is checked before any directory is created.
//!
//! Reads and writes then go through `regular`: only regular files, their type checked on the
//! opened descriptor, never blocking on a FIFO or device, and reads capped at `max_read_bytes`.

mod regular;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use spacebot_core::{ToolError, TypedTool};

use crate::error::TaskToolError;

/// Entries `file_list` shows at most.
const MAX_LIST_ENTRIES: usize = 500;

/// A directory the file and shell tools are confined to.
#[derive(Debug)]
pub(crate) struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// Creates the directory if needed and resolves it.
    pub(crate) fn open(path: &Path) -> Result<Self, TaskToolError> {
        let error = |source| TaskToolError::Workspace { path: path.to_owned(), source };
        std::fs::create_dir_all(path).map_err(error)?;
        let root = std::fs::canonicalize(path).map_err(error)?;
        Ok(Self { root })
    }

    /// The resolved workspace directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `path` made relative to the root without touching the disk; refuses escapes.
    fn lexical(&self, path: &str) -> Result<PathBuf, ToolError> {
        let raw = Path::new(path.trim());
        let relative = if raw.is_absolute() { raw.strip_prefix(&self.root).map_err(|_| outside(path))? } else { raw };
        let mut clean = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !clean.pop() {
                        return Err(outside(path));
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(outside(path)),
            }
        }
        Ok(clean)
    }

    fn check_inside(&self, resolved: &Path, path: &str) -> Result<(), ToolError> {
        if resolved.starts_with(&self.root) { Ok(()) } else { Err(outside(path)) }
    }

    /// An existing file or directory inside the workspace, symlinks resolved.
    pub(crate) async fn existing(&self, path: &str) -> Result<PathBuf, ToolError> {
        let relative = self.lexical(path)?;
        let resolved = tokio::fs::canonicalize(self.root.join(&relative))
            .await
            .map_err(|error| ToolError::Failed(format!("can't open `{path}`: {error}")))?;
        self.check_inside(&resolved, path)?;
        Ok(resolved)
    }

    /// Where to write `path`: its parent directories are created (inside the workspace only) and
    /// an existing symlink must point inside too.
    pub(crate) async fn writable(&self, path: &str) -> Result<PathBuf, ToolError> {
        let relative = self.lexical(path)?;
        let Some(name) = relative.file_name().map(ToOwned::to_owned) else {
            return Err(ToolError::InvalidArguments(format!("`{path}` names no file")));
        };
        let parent = self.root.join(relative.parent().unwrap_or(Path::new("")));
        // Check the deepest ancestor that exists before creating anything below it.
        let mut ancestor = parent.as_path();
        loop {
            if tokio::fs::symlink_metadata(ancestor).await.is_ok() {
                let resolved = tokio::fs::canonicalize(ancestor)
                    .await
                    .map_err(|error| ToolError::Failed(format!("can't resolve `{path}`: {error}")))?;
                self.check_inside(&resolved, path)?;
                break;
            }
            ancestor = ancestor.parent().ok_or_else(|| outside(path))?;
        }
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|error| ToolError::Failed(format!("can't create the directory for `{path}`: {error}")))?;
        let parent = tokio::fs::canonicalize(&parent)
            .await
            .map_err(|error| ToolError::Failed(format!("can't resolve `{path}`: {error}")))?;
        self.check_inside(&parent, path)?;
        let target = parent.join(name);
        if let Ok(meta) = tokio::fs::symlink_metadata(&target).await
            && meta.file_type().is_symlink()
        {
            match tokio::fs::canonicalize(&target).await {
                Ok(resolved) => self.check_inside(&resolved, path)?,
                // A dangling symlink: where it would create a file can't be checked.
                Err(_) => return Err(outside(path)),
            }
        }
        Ok(target)
    }
}

impl Workspace {
    /// The whole file at `path` (inside the workspace, a regular file of at most `max_bytes`)
    /// and its name, for `tool` to send.
    pub(crate) async fn read_whole(
        &self,
        path: &str,
        max_bytes: usize,
        tool: &'static str,
    ) -> Result<(String, Vec<u8>), ToolError> {
        let resolved = self.existing(path).await?;
        let name = resolved
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| ToolError::InvalidArguments(format!("`{path}` names no file")))?;
        let shown_as = path.to_owned();
        let data = blocking(tool, move || regular::read_whole(&resolved, &shown_as, max_bytes, tool)).await?;
        Ok((name, data))
    }
}

fn outside(path: &str) -> ToolError {
    ToolError::Failed(format!(
        "`{path}` is outside the workspace; use a path relative to the workspace, without `..` or links leading out"
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PathArgs {
    #[serde(default = "dot", alias = "file", alias = "dir")]
    path: String,
}

fn dot() -> String {
    ".".to_owned()
}

#[derive(Debug, Deserialize)]
pub(crate) struct WriteArgs {
    #[serde(alias = "file")]
    path: String,
    #[serde(alias = "contents", alias = "text")]
    content: String,
}

/// `file_read`: a text file of the workspace.
pub(crate) struct FileRead {
    workspace: Arc<Workspace>,
    max_bytes: usize,
}

impl FileRead {
    pub(crate) fn new(workspace: Arc<Workspace>, max_bytes: usize) -> Self {
        Self { workspace, max_bytes }
    }
}

#[async_trait]
impl TypedTool for FileRead {
    const NAME: &'static str = "file_read";
    type Args = PathArgs;

    fn description(&self) -> String {
        "Read a text file of the workspace.".to_owned()
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": { "path": { "type": "string", "description": "Relative to the workspace." } },
            "required": ["path"]
        })
    }

    async fn run(&self, args: PathArgs) -> Result<String, ToolError> {
        let path = self.workspace.existing(&args.path).await?;
        let max_bytes = self.max_bytes;
        blocking("file_read", move || regular::read_capped(&path, &args.path, max_bytes)).await
    }
}

/// `file_write`: creates or replaces a file of the workspace.
pub(crate) struct FileWrite {
    workspace: Arc<Workspace>,
}

impl FileWrite {
    pub(crate) fn new(workspace: Arc<Workspace>) -> Self {
        Self { workspace }
    }
}

#[async_trait]
impl TypedTool for FileWrite {
    const NAME: &'static str = "file_write";
    type Args = WriteArgs;

    fn description(&self) -> String {
        "Create or replace a file of the workspace (directories are created as needed).".to_owned()
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "path": { "type": "string", "description": "Relative to the workspace." },
                "content": { "type": "string" }
            },
            "required": ["path", "content"]
        })
    }

    async fn run(&self, args: WriteArgs) -> Result<String, ToolError> {
        let path = self.workspace.writable(&args.path).await?;
        let WriteArgs { path: shown_as, content } = args;
        let written = content.len();
        let answer = format!("wrote {written} bytes to {shown_as}");
        blocking("file_write", move || regular::write_regular(&path, &shown_as, content.as_bytes())).await?;
        Ok(answer)
    }
}

/// `file_list`: the entries of a workspace directory.
pub(crate) struct FileList {
    workspace: Arc<Workspace>,
}

impl FileList {
    pub(crate) fn new(workspace: Arc<Workspace>) -> Self {
        Self { workspace }
    }
}

#[async_trait]
impl TypedTool for FileList {
    const NAME: &'static str = "file_list";
    type Args = PathArgs;

    fn description(&self) -> String {
        "List a directory of the workspace (default: its root). Directories end with `/`.".to_owned()
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": { "path": { "type": "string", "description": "Relative to the workspace." } }
        })
    }

    async fn run(&self, args: PathArgs) -> Result<String, ToolError> {
        let path = self.workspace.existing(&args.path).await?;
        // Listing opens with `O_DIRECTORY`: anything but a directory fails at once, never blocks.
        let mut reader = tokio::fs::read_dir(&path).await.map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotADirectory {
                ToolError::Failed(format!("can't list `{}`: it is {}, not a directory", args.path, kind_of(&path)))
            } else {
                ToolError::Failed(format!("can't list `{}`: {error}", args.path))
            }
        })?;
        let mut names = Vec::new();
        while let Some(entry) = reader
            .next_entry()
            .await
            .map_err(|error| ToolError::Failed(format!("can't list `{}`: {error}", args.path)))?
        {
            let mut name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                name.push('/');
            }
            names.push(name);
        }
        names.sort();
        let total = names.len();
        names.truncate(MAX_LIST_ENTRIES);
        let mut out = if names.is_empty() { "(empty)".to_owned() } else { names.join("\n") };
        if total > MAX_LIST_ENTRIES {
            out.push_str(&format!("\n[{} more entries not shown]", total - MAX_LIST_ENTRIES));
        }
        Ok(out)
    }
}

/// Runs a blocking file operation on the blocking pool and waits for it. If the caller gives up
/// (the tool call timed out), the operation still ends by itself: it never waits on a FIFO or
/// device, and reads at most the cap.
async fn blocking<T: Send + 'static>(
    tool: &str,
    operation: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(operation)
        .await
        .map_err(|error| ToolError::Failed(format!("{tool} failed inside the harness: {error}")))?
}

/// What a path that is not a directory is, for a message.
fn kind_of(path: &Path) -> &'static str {
    std::fs::metadata(path).ok().and_then(|meta| regular::special_kind(&meta.file_type())).unwrap_or("a file")
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacebot_core::Tool;

    fn setup() -> (tempfile::TempDir, Arc<Workspace>) {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Arc::new(Workspace::open(&dir.path().join("ws")).unwrap());
        (dir, workspace)
    }

    #[tokio::test]
    async fn files_round_trip_inside_the_workspace() {
        let (_dir, ws) = setup();
        let write = FileWrite::new(ws.clone());
        let read = FileRead::new(ws.clone(), 1024);
        let list = FileList::new(ws.clone());
        write.call(json!({"path": "notes/a.txt", "content": "hello"})).await.unwrap();
        assert_eq!(read.call(json!({"path": "notes/./a.txt"})).await.unwrap(), "hello");
        assert_eq!(read.call(json!({"path": ws.root().join("notes/a.txt").to_str().unwrap()})).await.unwrap(), "hello");
        assert_eq!(list.call(json!({})).await.unwrap(), "notes/");
        assert_eq!(list.call(json!({"path": "notes"})).await.unwrap(), "a.txt");
    }

    #[tokio::test]
    async fn dot_dot_and_absolute_paths_that_escape_are_refused() {
        let (dir, ws) = setup();
        std::fs::write(dir.path().join("secret.txt"), "top secret").unwrap();
        let read = FileRead::new(ws.clone(), 1024);
        let write = FileWrite::new(ws.clone());
        for path in
            ["../secret.txt", "a/../../secret.txt", dir.path().join("secret.txt").to_str().unwrap(), "/etc/passwd"]
        {
            let error = read.call(json!({ "path": path })).await.unwrap_err().to_string();
            assert!(error.contains("outside the workspace"), "{path}: {error}");
        }
        let error = write.call(json!({"path": "../evil.txt", "content": "x"})).await.unwrap_err().to_string();
        assert!(error.contains("outside the workspace"), "{error}");
        assert!(!dir.path().join("evil.txt").exists());
    }

    #[tokio::test]
    async fn symlinks_leading_out_are_refused_for_read_write_and_list() {
        let (dir, ws) = setup();
        let outside_dir = dir.path().join("outside");
        std::fs::create_dir(&outside_dir).unwrap();
        std::fs::write(outside_dir.join("secret.txt"), "top secret").unwrap();
        std::os::unix::fs::symlink(&outside_dir, ws.root().join("link")).unwrap();
        std::os::unix::fs::symlink(outside_dir.join("secret.txt"), ws.root().join("file-link")).unwrap();
        std::os::unix::fs::symlink(outside_dir.join("new.txt"), ws.root().join("dangling")).unwrap();

        let read = FileRead::new(ws.clone(), 1024);
        let write = FileWrite::new(ws.clone());
        let list = FileList::new(ws.clone());
        for path in ["link/secret.txt", "file-link"] {
            let error = read.call(json!({ "path": path })).await.unwrap_err().to_string();
            assert!(error.contains("outside the workspace"), "{path}: {error}");
        }
        assert!(list.call(json!({"path": "link"})).await.unwrap_err().to_string().contains("outside"));
        for path in ["link/new.txt", "link/sub/new.txt", "file-link", "dangling"] {
            let error = write.call(json!({ "path": path, "content": "pwned" })).await.unwrap_err().to_string();
            assert!(error.contains("outside the workspace"), "{path}: {error}");
        }
        assert_eq!(std::fs::read_to_string(outside_dir.join("secret.txt")).unwrap(), "top secret");
        assert!(!outside_dir.join("new.txt").exists() && !outside_dir.join("sub").exists());
    }

    #[tokio::test]
    async fn symlinks_within_the_workspace_work() {
        let (_dir, ws) = setup();
        std::fs::create_dir(ws.root().join("real")).unwrap();
        std::os::unix::fs::symlink(ws.root().join("real"), ws.root().join("alias")).unwrap();
        FileWrite::new(ws.clone()).call(json!({"path": "alias/x.txt", "content": "ok"})).await.unwrap();
        assert_eq!(std::fs::read_to_string(ws.root().join("real/x.txt")).unwrap(), "ok");
    }

    #[tokio::test]
    async fn a_hard_link_to_a_file_outside_is_neither_read_nor_written() {
        let (dir, ws) = setup();
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, "top secret").unwrap();
        std::fs::hard_link(&outside, ws.root().join("link.txt")).unwrap();
        let error = FileWrite::new(ws.clone()).call(json!({"path": "link.txt", "content": "pwned"})).await.unwrap_err();
        assert!(error.to_string().contains("hard link"), "{error}");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "top secret");
        let error = FileRead::new(ws.clone(), 1024).call(json!({"path": "link.txt"})).await.unwrap_err();
        assert!(error.to_string().contains("hard link"), "{error}");
        // A file with one name is as before.
        FileWrite::new(ws.clone()).call(json!({"path": "own.txt", "content": "mine"})).await.unwrap();
        assert_eq!(FileRead::new(ws.clone(), 1024).call(json!({"path": "own.txt"})).await.unwrap(), "mine");
    }

    /// Longer than any file tool call on a local file takes; a call still running then hangs.
    const PROMPTLY: std::time::Duration = std::time::Duration::from_secs(5);

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo").arg(path).status().expect("run mkfifo");
        assert!(status.success(), "mkfifo {}", path.display());
    }

    #[tokio::test]
    async fn a_fifo_with_no_writer_is_refused_promptly_by_file_read() {
        let (_dir, ws) = setup();
        let fifo = ws.root().join("pipe");
        mkfifo(&fifo);
        let read = FileRead::new(ws.clone(), 1024);
        let Ok(result) = tokio::time::timeout(PROMPTLY, read.call(json!({"path": "pipe"}))).await else {
            // Let the blocked open return, so the test fails instead of hanging at the runtime's end.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
            panic!("file_read of a FIFO with no writer hung");
        };
        let error = result.unwrap_err().to_string();
        assert!(error.contains("FIFO") && error.contains("regular files"), "{error}");
    }

    #[tokio::test]
    async fn a_fifo_is_refused_promptly_by_file_write_and_file_list() {
        let (_dir, ws) = setup();
        let fifo = ws.root().join("pipe");
        mkfifo(&fifo);
        let write = FileWrite::new(ws.clone());
        let Ok(result) = tokio::time::timeout(PROMPTLY, write.call(json!({"path": "pipe", "content": "x"}))).await
        else {
            let _ = std::fs::OpenOptions::new().read(true).open(&fifo);
            panic!("file_write to a FIFO with no reader hung");
        };
        let error = result.unwrap_err().to_string();
        assert!(error.contains("FIFO") && error.contains("regular files"), "{error}");

        // With a reader present the open succeeds, and the write is still refused: nothing goes
        // into the pipe.
        let mut reader = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap()
        };
        let error = tokio::time::timeout(PROMPTLY, write.call(json!({"path": "pipe", "content": "pwned"})))
            .await
            .expect("file_write returns promptly")
            .unwrap_err()
            .to_string();
        assert!(error.contains("FIFO"), "{error}");
        let mut received = [0u8; 16];
        let read = std::io::Read::read(&mut reader, &mut received);
        assert!(!matches!(read, Ok(n) if n > 0), "something was written into the FIFO: {read:?}");

        let list = FileList::new(ws.clone());
        let error = tokio::time::timeout(PROMPTLY, list.call(json!({"path": "pipe"})))
            .await
            .expect("file_list returns promptly")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a directory"), "{error}");
    }

    #[tokio::test]
    async fn a_directory_is_refused_by_file_read_and_file_write_with_a_hint() {
        let (_dir, ws) = setup();
        std::fs::create_dir(ws.root().join("sub")).unwrap();
        let error = FileRead::new(ws.clone(), 1024).call(json!({"path": "sub"})).await.unwrap_err().to_string();
        assert!(error.contains("directory") && error.contains("file_list"), "{error}");
        let error =
            FileWrite::new(ws.clone()).call(json!({"path": "sub", "content": "x"})).await.unwrap_err().to_string();
        assert!(error.contains("directory"), "{error}");
    }

    #[test]
    fn special_files_are_named_by_their_kind() {
        let null = std::fs::metadata("/dev/null").unwrap();
        assert_eq!(regular::special_kind(&null.file_type()), Some("a character device"));
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(regular::special_kind(&std::fs::metadata(dir.path()).unwrap().file_type()), Some("a directory"));
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(regular::special_kind(&std::fs::metadata(&file).unwrap().file_type()), None);
    }

    /// The peak resident memory of this process, in bytes (`VmHWM`).
    fn peak_rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("a VmHWM line");
        let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmHWM in kB");
        kib * 1024
    }

    #[tokio::test]
    async fn a_large_sparse_file_is_read_only_up_to_the_cap() {
        let (_dir, ws) = setup();
        let path = ws.root().join("huge.bin");
        let file = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(&mut &file, b"head of a huge file").unwrap();
        let size: u64 = 2 * 1024 * 1024 * 1024;
        file.set_len(size).unwrap();
        drop(file);

        let before = peak_rss();
        let text = FileRead::new(ws, 4096).call(json!({"path": "huge.bin"})).await.unwrap();
        let grown = peak_rss().saturating_sub(before);
        assert!(grown < 64 * 1024 * 1024, "reading a capped 2 GiB file grew the peak RSS by {grown} bytes");
        assert!(text.starts_with("head of a huge file"), "{}", &text[..40]);
        assert!(
            text.ends_with(&format!("[truncated: the file has {size} bytes, the first 4096 shown]")),
            "{}",
            &text[text.len() - 80..]
        );
    }

    #[tokio::test]
    async fn a_cut_never_splits_a_character() {
        let (_dir, ws) = setup();
        std::fs::write(ws.root().join("accents.txt"), "ééééé").unwrap();
        let text = FileRead::new(ws, 5).call(json!({"path": "accents.txt"})).await.unwrap();
        assert!(text.starts_with("éé\n[truncated"), "{text}");
    }

    #[tokio::test]
    async fn large_files_are_cut_with_a_note() {
        let (_dir, ws) = setup();
        std::fs::write(ws.root().join("big.txt"), "x".repeat(100)).unwrap();
        let text = FileRead::new(ws, 10).call(json!({"path": "big.txt"})).await.unwrap();
        assert!(text.starts_with("xxxxxxxxxx\n[truncated: the file has 100 bytes"), "{text}");
    }
}
