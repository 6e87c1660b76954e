//! `send_file`: uploads a file of the agent's workspace to the conversation, for the channel (a
//! channel tool, run by the channel itself) and for workers (a task tool bound to the message
//! that started the worker).
//!
//! The file is read whole, through the same confinement as `file_read` (inside the workspace, a
//! regular file, no hard links), and refused rather than cut when it is over the size limit. It
//! goes out through the outbox like a reply: secrets masked when it is text, transient platform
//! failures retried, and a platform that can't take files answers so, which the model is told.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use spacebot_core::{InboundMessage, OutboundResponse, Outbox, ToolError, ToolSpec, TypedTool};

use super::workspace::Workspace;

/// The tool that uploads a workspace file to the conversation.
pub const SEND_FILE_TOOL: &str = "send_file";

/// The largest file `send_file` uploads by default: 8 MiB, under Discord's 10 MiB limit for
/// servers without boosts.
pub const DEFAULT_MAX_SEND_BYTES: usize = 8 * 1024 * 1024;

const DESCRIPTION: &str = "Upload a file of the workspace to the conversation, with an optional caption.";

fn parameters() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "path": { "type": "string", "description": "The file, relative to the workspace." },
            "caption": { "type": "string", "description": "A short message sent with the file." }
        },
        "required": ["path"]
    })
}

/// The channel's `send_file` spec (workers get theirs from [`SendFile`]).
pub(crate) fn send_file_spec() -> ToolSpec {
    ToolSpec::new(SEND_FILE_TOOL, format!("{DESCRIPTION} Your turn goes on: still `reply` or `skip`."), parameters())
}

/// The arguments of `send_file`.
#[derive(Debug, Deserialize)]
pub(crate) struct SendFileArgs {
    #[serde(alias = "file", alias = "filename")]
    pub(crate) path: String,
    #[serde(default, alias = "message", alias = "comment")]
    pub(crate) caption: Option<String>,
}

/// Sends files of one workspace to one conversation, in the context of one inbound message.
#[derive(Clone)]
pub(crate) struct FileSender {
    workspace: PathBuf,
    max_bytes: usize,
    outbox: Outbox,
    target: Arc<InboundMessage>,
}

impl FileSender {
    pub(crate) fn new(workspace: PathBuf, max_bytes: usize, outbox: Outbox, target: Arc<InboundMessage>) -> Self {
        Self { workspace, max_bytes, outbox, target }
    }

    /// Reads the file and uploads it; says what was sent, or why nothing was.
    pub(crate) async fn send(&self, args: SendFileArgs) -> Result<String, ToolError> {
        if args.path.trim().is_empty() {
            return Err(ToolError::InvalidArguments("`send_file` needs the `path` of a workspace file".to_owned()));
        }
        let root = self.workspace.clone();
        let workspace = tokio::task::spawn_blocking(move || Workspace::open(&root))
            .await
            .map_err(|error| ToolError::Failed(format!("send_file failed inside the harness: {error}")))?
            .map_err(|error| ToolError::Failed(error.to_string()))?;
        let (filename, data) = workspace.read_whole(&args.path, self.max_bytes, SEND_FILE_TOOL).await?;
        let size = data.len();
        let caption = args.caption.filter(|caption| !caption.trim().is_empty());
        let response = OutboundResponse::File {
            mime_type: mime_type(&filename).to_owned(),
            filename: filename.clone(),
            data,
            caption,
        };
        tracing::info!(adapter = %self.target.adapter, conversation = %self.target.conversation, file = %filename,
            bytes = size, "sending a file");
        match self.outbox.send(&self.target, response).await {
            Ok(()) => Ok(format!("Sent `{filename}` ({size} bytes) to the conversation.")),
            Err(error) => Err(ToolError::Failed(format!("`{filename}` was not sent: {error}"))),
        }
    }
}

/// The workers' `send_file`: uploads to the conversation of the message that started the worker.
pub(crate) struct SendFile(pub(crate) FileSender);

#[async_trait]
impl TypedTool for SendFile {
    const NAME: &'static str = SEND_FILE_TOOL;
    type Args = SendFileArgs;

    fn description(&self) -> String {
        DESCRIPTION.to_owned()
    }

    fn parameters(&self) -> serde_json::Value {
        parameters()
    }

    async fn run(&self, args: SendFileArgs) -> Result<String, ToolError> {
        self.0.send(args).await
    }
}

/// The MIME type a file's name suggests; `application/octet-stream` when the extension says
/// nothing known. Platforms use it to preview the file; the bytes are sent as they are.
fn mime_type(filename: &str) -> &'static str {
    let extension = filename.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase());
    match extension.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("svg") => "image/svg+xml",
        Some("pdf") => "application/pdf",
        Some("json") => "application/json",
        Some("zip") => "application/zip",
        Some("gz" | "tgz") => "application/gzip",
        Some("csv") => "text/csv",
        Some("html" | "htm") => "text/html",
        Some("md") => "text/markdown",
        Some("txt" | "log") => "text/plain",
        Some("mp3") => "audio/mpeg",
        Some("mp4") => "video/mp4",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use spacebot_core::{AdapterError, AdapterSet, DeliveryPolicy, InboundStream, MessagingAdapter, Scrubber, Sender};

    use super::*;

    /// Keeps what it was sent; refuses files when told to.
    #[derive(Default)]
    struct Keeper {
        sent: Mutex<Vec<OutboundResponse>>,
        refuse_files: bool,
    }

    #[async_trait]
    impl MessagingAdapter for Keeper {
        fn name(&self) -> &str {
            "keeper"
        }

        async fn start(&self) -> Result<InboundStream, AdapterError> {
            Ok(Box::pin(futures::stream::pending()))
        }

        async fn send(&self, _target: &InboundMessage, response: OutboundResponse) -> Result<(), AdapterError> {
            if self.refuse_files {
                return Err(AdapterError::unsupported("keeper", "no files here"));
            }
            self.sent.lock().expect("not poisoned").push(response);
            Ok(())
        }
    }

    fn sender(root: &std::path::Path, keeper: Arc<Keeper>, max_bytes: usize) -> FileSender {
        let (events, _) = tokio::sync::broadcast::channel(8);
        let outbox = Outbox::new(Arc::new(AdapterSet::new(vec![keeper])), events, DeliveryPolicy::default())
            .with_scrubber(Scrubber::new().with_secrets(["hunter2-configured"]));
        let target = InboundMessage::text("keeper", "keeper:c1", Sender::new("u1"), "send me the report");
        FileSender::new(root.to_owned(), max_bytes, outbox, Arc::new(target))
    }

    fn args(path: &str, caption: Option<&str>) -> SendFileArgs {
        SendFileArgs { path: path.to_owned(), caption: caption.map(str::to_owned) }
    }

    #[tokio::test]
    async fn a_workspace_file_is_sent_whole_with_its_type_and_caption() {
        let dir = tempfile::tempdir().expect("temp dir");
        let image: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        std::fs::create_dir_all(dir.path().join("out")).expect("mkdir");
        std::fs::write(dir.path().join("out/chart.PNG"), &image).expect("write");
        let keeper = Arc::new(Keeper::default());
        let said = sender(dir.path(), keeper.clone(), 100_000)
            .send(args("out/chart.PNG", Some("the chart")))
            .await
            .expect("sent");
        assert_eq!(said, "Sent `chart.PNG` (70000 bytes) to the conversation.");
        let sent = keeper.sent.lock().expect("not poisoned").clone();
        assert_eq!(
            sent,
            vec![OutboundResponse::File {
                filename: "chart.PNG".to_owned(),
                mime_type: "image/png".to_owned(),
                data: image,
                caption: Some("the chart".to_owned()),
            }]
        );
    }

    #[tokio::test]
    async fn a_text_file_goes_out_with_its_secrets_masked() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("env.txt"), "PASSWORD=hunter2-configured\nUSER=ann\n").expect("write");
        let keeper = Arc::new(Keeper::default());
        sender(dir.path(), keeper.clone(), 1000).send(args("env.txt", None)).await.expect("sent");
        let sent = keeper.sent.lock().expect("not poisoned").clone();
        let [OutboundResponse::File { data, .. }] = sent.as_slice() else { panic!("one file: {sent:?}") };
        assert_eq!(String::from_utf8_lossy(data), "PASSWORD=[redacted]\nUSER=ann\n");
    }

    #[tokio::test]
    async fn files_outside_the_workspace_too_large_or_not_regular_are_refused_with_nothing_sent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outside = tempfile::tempdir().expect("temp dir");
        std::fs::write(outside.path().join("secret.txt"), "not yours").expect("write");
        std::fs::write(dir.path().join("big.bin"), vec![7u8; 1001]).expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("link.txt")).expect("symlink");
        let keeper = Arc::new(Keeper::default());
        let files = sender(dir.path(), keeper.clone(), 1000);
        let refusal = |result: Result<String, ToolError>| result.expect_err("refused").to_string();

        let escape = format!("../{}/secret.txt", outside.path().file_name().expect("named").to_string_lossy());
        assert!(refusal(files.send(args(&escape, None)).await).contains("outside the workspace"));
        let absolute = outside.path().join("secret.txt").to_string_lossy().into_owned();
        assert!(refusal(files.send(args(&absolute, None)).await).contains("outside the workspace"));
        #[cfg(unix)]
        assert!(refusal(files.send(args("link.txt", None)).await).contains("outside the workspace"));
        let big = refusal(files.send(args("big.bin", None)).await);
        assert!(big.contains("1001 bytes, more than the 1000 bytes") && big.contains("send_file_max_bytes"), "{big}");
        assert!(refusal(files.send(args("sub", None)).await).contains("a directory"));
        assert!(refusal(files.send(args("missing.txt", None)).await).contains("can't open `missing.txt`"));
        assert!(refusal(files.send(args(" ", None)).await).contains("needs the `path`"));
        assert!(keeper.sent.lock().expect("not poisoned").is_empty());
    }

    #[tokio::test]
    async fn a_platform_without_files_is_named_to_the_model() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.txt"), "hello").expect("write");
        let keeper = Arc::new(Keeper { refuse_files: true, ..Keeper::default() });
        let error = sender(dir.path(), keeper, 1000).send(args("a.txt", None)).await.expect_err("refused");
        assert_eq!(error.to_string(), "`a.txt` was not sent: keeper: no files here");
    }

    #[test]
    fn mime_types_follow_the_extension() {
        assert_eq!(mime_type("a.tar.gz"), "application/gzip");
        assert_eq!(mime_type("Report.PDF"), "application/pdf");
        assert_eq!(mime_type("notes.md"), "text/markdown");
        assert_eq!(mime_type("Makefile"), "application/octet-stream");
        assert_eq!(mime_type("archive."), "application/octet-stream");
    }
}
