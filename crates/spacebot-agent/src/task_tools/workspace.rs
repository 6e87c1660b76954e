//! The workspace and the file tools confined to it.
//!
//! Every path is resolved before use: spelled relative to the workspace (or absolute inside it),
//! normalised without touching the disk (a `..` that climbs out is refused at once), then
//! canonicalised, so a symlink anywhere along the way that points outside is refused too. For
//! writes the deepest existing ancestor is checked before any directory is created.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use spacebot_core::{Tool, ToolError, ToolSpec};

use super::TaskToolError;
use crate::tools::parse_args;

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

fn outside(path: &str) -> ToolError {
    ToolError::Failed(format!(
        "`{path}` is outside the workspace; use a path relative to the workspace, without `..` or links leading out"
    ))
}

#[derive(Debug, Deserialize)]
struct PathArgs {
    #[serde(default = "dot", alias = "file", alias = "dir")]
    path: String,
}

fn dot() -> String {
    ".".to_owned()
}

#[derive(Debug, Deserialize)]
struct WriteArgs {
    #[serde(alias = "file")]
    path: String,
    #[serde(alias = "contents", alias = "text")]
    content: String,
}

fn arguments<T: serde::de::DeserializeOwned>(tool: &str, value: serde_json::Value) -> Result<T, ToolError> {
    parse_args(tool, &value).map_err(ToolError::InvalidArguments)
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
impl Tool for FileRead {
    fn name(&self) -> &str {
        "file_read"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "file_read",
            "Read a text file of the workspace.",
            json!({
                "type": "object",
                "properties": { "path": { "type": "string", "description": "Relative to the workspace." } },
                "required": ["path"]
            }),
        )
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<String, ToolError> {
        let args: PathArgs = self::arguments("file_read", arguments)?;
        let path = self.workspace.existing(&args.path).await?;
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|error| ToolError::Failed(format!("can't read `{}`: {error}", args.path)))?;
        let cut = bytes.len() > self.max_bytes;
        let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(self.max_bytes)]).into_owned();
        if cut {
            text.push_str(&format!("\n[truncated: the file has {} bytes, {} shown]", bytes.len(), self.max_bytes));
        }
        Ok(text)
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
impl Tool for FileWrite {
    fn name(&self) -> &str {
        "file_write"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "file_write",
            "Create or replace a file of the workspace (directories are created as needed).",
            json!({
                "type": "object",
                "properties": {
                    "path": { "type": "string", "description": "Relative to the workspace." },
                    "content": { "type": "string" }
                },
                "required": ["path", "content"]
            }),
        )
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<String, ToolError> {
        let args: WriteArgs = self::arguments("file_write", arguments)?;
        let path = self.workspace.writable(&args.path).await?;
        tokio::fs::write(&path, args.content.as_bytes())
            .await
            .map_err(|error| ToolError::Failed(format!("can't write `{}`: {error}", args.path)))?;
        Ok(format!("wrote {} bytes to {}", args.content.len(), args.path))
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
impl Tool for FileList {
    fn name(&self) -> &str {
        "file_list"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "file_list",
            "List a directory of the workspace (default: its root). Directories end with `/`.",
            json!({
                "type": "object",
                "properties": { "path": { "type": "string", "description": "Relative to the workspace." } }
            }),
        )
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<String, ToolError> {
        let args: PathArgs = self::arguments("file_list", arguments)?;
        let path = self.workspace.existing(&args.path).await?;
        let mut reader = tokio::fs::read_dir(&path)
            .await
            .map_err(|error| ToolError::Failed(format!("can't list `{}`: {error}", args.path)))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn large_files_are_cut_with_a_note() {
        let (_dir, ws) = setup();
        std::fs::write(ws.root().join("big.txt"), "x".repeat(100)).unwrap();
        let text = FileRead::new(ws, 10).call(json!({"path": "big.txt"})).await.unwrap();
        assert!(text.starts_with("xxxxxxxxxx\n[truncated: the file has 100 bytes"), "{text}");
    }
}
