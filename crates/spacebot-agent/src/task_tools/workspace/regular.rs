//! Reading and writing workspace files only when they are regular files, without ever blocking on
//! one that isn't, and reading no more than the cap.
//!
//! Opening a FIFO blocks until the other end appears (a reader waits for a writer, a writer for a
//! reader), and a device may never answer; checking the path's type first would race with a swap
//! between the check and the open. So each file is opened with `O_NONBLOCK` (opening a FIFO then
//! returns at once; reads and writes of a regular file ignore the flag) and `O_NOCTTY`, and the
//! type of the file actually opened is read from the open descriptor (`fstat`) before a byte
//! moves. Directories, FIFOs, sockets and devices get an error naming what they are.
//!
//! These functions block (on the disk): callers run them on the blocking pool.

use std::fs::{File, FileType, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use spacebot_core::ToolError;

/// What kind of file a non-regular file is, for an error message; `None` for a regular file.
pub(super) fn special_kind(file_type: &FileType) -> Option<&'static str> {
    if file_type.is_file() {
        return None;
    }
    if file_type.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if file_type.is_socket() {
            return Some("a socket");
        }
        if file_type.is_char_device() {
            return Some("a character device");
        }
        if file_type.is_block_device() {
            return Some("a block device");
        }
    }
    Some("not a regular file")
}

/// Opening flags that keep `open` from blocking on a FIFO or adopting a terminal.
fn without_blocking(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    options
}

/// The file's kind if `open` failed because it is not a regular file (`ENXIO` for a FIFO with no
/// reader, `EISDIR` for a directory); for the message only, nothing is opened.
fn kind_behind(path: &Path) -> Option<&'static str> {
    std::fs::metadata(path).ok().and_then(|meta| special_kind(&meta.file_type()))
}

fn refuse(verb: &str, shown_as: &str, kind: &str, tool: &str) -> ToolError {
    let noun = if tool == "file_write" { "writes" } else { "reads" };
    let hint = if kind == "a directory" && tool != "file_write" { " (list a directory with file_list)" } else { "" };
    ToolError::Failed(format!("can't {verb} `{shown_as}`: it is {kind}; {tool} {noun} regular files only{hint}"))
}

/// A file with more than one name may be another name of a file outside the workspace (a hard
/// link made there, which path checks can't see): refused, for reads and writes alike.
fn refuse_hard_link(meta: &std::fs::Metadata, verb: &str, shown_as: &str) -> Result<(), ToolError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() > 1 {
            return Err(ToolError::Failed(format!(
                "can't {verb} `{shown_as}`: it is a hard link ({} names for one file), which may reach outside the workspace",
                meta.nlink()
            )));
        }
    }
    let _ = (meta, verb, shown_as);
    Ok(())
}

/// Opens `path` for reading if it is a regular file, checked on the descriptor; `tool` names the
/// tool in a refusal.
fn open_regular(path: &Path, shown_as: &str, tool: &str) -> Result<File, ToolError> {
    let file = without_blocking(OpenOptions::new().read(true)).open(path).map_err(|error| match kind_behind(path) {
        Some(kind) => refuse("read", shown_as, kind, tool),
        None => ToolError::Failed(format!("can't read `{shown_as}`: {error}")),
    })?;
    let meta = file.metadata().map_err(|error| ToolError::Failed(format!("can't read `{shown_as}`: {error}")))?;
    match special_kind(&meta.file_type()) {
        Some(kind) => Err(refuse("read", shown_as, kind, tool)),
        None => refuse_hard_link(&meta, "read", shown_as).map(|()| file),
    }
}

/// A whole regular file, refused (not cut) when it is longer than `max_bytes`: a file sent to
/// people must arrive complete. `tool` names the tool in a refusal.
pub(super) fn read_whole(path: &Path, shown_as: &str, max_bytes: usize, tool: &str) -> Result<Vec<u8>, ToolError> {
    let failed = |error: std::io::Error| ToolError::Failed(format!("can't read `{shown_as}`: {error}"));
    let too_long = |size: u64| {
        ToolError::Failed(format!(
            "`{shown_as}` has {size} bytes, more than the {max_bytes} bytes {tool} may send \
             (`tools.send_file_max_bytes`); send a smaller file, or compress it"
        ))
    };
    let file = open_regular(path, shown_as, tool)?;
    let cap = u64::try_from(max_bytes).unwrap_or(u64::MAX);
    let size = file.metadata().map_err(failed)?.len();
    if size > cap {
        return Err(too_long(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(max_bytes));
    // One byte past the cap tells a file that grew since the `fstat` from one that fits.
    (&file).take(cap.saturating_add(1)).read_to_end(&mut bytes).map_err(failed)?;
    if bytes.len() > max_bytes {
        return Err(too_long(file.metadata().map_or(size, |meta| meta.len())));
    }
    Ok(bytes)
}

/// At most `max_bytes` of a regular file as text, with a note when the file is longer.
pub(super) fn read_capped(path: &Path, shown_as: &str, max_bytes: usize) -> Result<String, ToolError> {
    let failed = |error: std::io::Error| ToolError::Failed(format!("can't read `{shown_as}`: {error}"));
    let file = open_regular(path, shown_as, "file_read")?;
    let cap = u64::try_from(max_bytes).unwrap_or(u64::MAX);
    let size = file.metadata().map_err(failed)?.len();
    // One byte past the cap tells a file that grew since the `fstat` from one that fits.
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(cap)).unwrap_or(max_bytes).saturating_add(1));
    (&file).take(cap.saturating_add(1)).read_to_end(&mut bytes).map_err(failed)?;
    let cut = bytes.len() > max_bytes;
    if !cut {
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    bytes.truncate(max_bytes);
    // Don't show half a character at the cut.
    if let Err(error) = std::str::from_utf8(&bytes)
        && error.error_len().is_none()
    {
        bytes.truncate(error.valid_up_to());
    }
    let size = file.metadata().map_or(size, |meta| meta.len()).max(size);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    text.push_str(&format!("\n[truncated: the file has {size} bytes, the first {} shown]", bytes.len()));
    Ok(text)
}

/// Creates or replaces the regular file at `path` with `content`; refuses anything else without
/// writing a byte into it.
pub(super) fn write_regular(path: &Path, shown_as: &str, content: &[u8]) -> Result<(), ToolError> {
    let failed = |error: std::io::Error| ToolError::Failed(format!("can't write `{shown_as}`: {error}"));
    // No `truncate` at open: the type is checked first, so a special file is left as it was.
    let file =
        without_blocking(OpenOptions::new().write(true).create(true)).open(path).map_err(|error| match kind_behind(
            path,
        ) {
            Some(kind) => refuse("write", shown_as, kind, "file_write"),
            None => failed(error),
        })?;
    let meta = file.metadata().map_err(failed)?;
    if let Some(kind) = special_kind(&meta.file_type()) {
        return Err(refuse("write", shown_as, kind, "file_write"));
    }
    refuse_hard_link(&meta, "write", shown_as)?;
    file.set_len(0).map_err(failed)?;
    (&file).write_all(content).map_err(failed)
}
