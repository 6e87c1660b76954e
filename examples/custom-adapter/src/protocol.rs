//! The LineChat wire format: one command or event per line, fields separated by single spaces,
//! free text last with its newlines escaped.
//!
//! Pure functions only, so both ends of the protocol (the adapter here, the test server in
//! `tests/it/server.rs`) share one definition and it is tested without a socket.

use std::fmt;

/// A place on a LineChat server where something is said.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Room {
    /// A channel everyone in it sees: `#general`.
    Channel(String),
    /// A thread under message `root` of a channel: `#general/17`.
    Thread {
        /// The channel, with its `#`.
        channel: String,
        /// The id of the message the thread hangs under.
        root: String,
    },
    /// A private conversation with one user: `@alice`.
    Direct(String),
}

impl Room {
    /// Reads a room as written on the wire; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(user) = text.strip_prefix('@') {
            return valid(user).then(|| Self::Direct(text.to_owned()));
        }
        let name = text.strip_prefix('#')?;
        match name.split_once('/') {
            None => valid(name).then(|| Self::Channel(text.to_owned())),
            Some((channel, root)) => (valid(channel) && valid(root))
                .then(|| Self::Thread { channel: format!("#{channel}"), root: root.to_owned() }),
        }
    }

    /// The thread under `message` when this is a channel; a thread or a direct conversation has
    /// no threads of its own, so it stays where it is.
    pub fn thread_under(&self, message: &str) -> Self {
        match self {
            Self::Channel(channel) => Self::Thread { channel: channel.clone(), root: message.to_owned() },
            other => other.clone(),
        }
    }
}

impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Channel(name) | Self::Direct(name) => f.write_str(name),
            Self::Thread { channel, root } => write!(f, "{channel}/{root}"),
        }
    }
}

/// A name, id or user: non-empty, no whitespace, no `/`.
fn valid(field: &str) -> bool {
    !field.is_empty() && !field.contains(|c: char| c.is_whitespace() || c == '/')
}

/// A line the bot sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotLine {
    /// `LISTEN <bot>`: opens the event connection; the server answers `WELCOME` and then sends
    /// `MSG` lines on it for as long as it stays open.
    Listen {
        /// The bot's user name.
        bot: String,
    },
    /// `SAY <room> <text>`: posts a message. Answered `OK <id>`.
    Say {
        /// Where.
        room: Room,
        /// What.
        text: String,
    },
    /// `REACT <room> <id> <emoji>`: reacts to message `id`. Answered `OK`.
    React {
        /// Where the message is.
        room: Room,
        /// The message.
        id: String,
        /// The emoji.
        emoji: String,
    },
    /// `TYPING <room>`: shows "bot is typing" for a few seconds. Answered `OK`.
    Typing {
        /// Where.
        room: Room,
    },
}

impl BotLine {
    /// Reads one line (without its newline).
    pub fn parse(line: &str) -> Option<Self> {
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match verb {
            "LISTEN" => valid(rest).then(|| Self::Listen { bot: rest.to_owned() }),
            "SAY" => {
                let (room, text) = rest.split_once(' ')?;
                Some(Self::Say { room: Room::parse(room)?, text: unescape(text) })
            }
            "REACT" => {
                let mut fields = rest.splitn(3, ' ');
                let (room, id, emoji) = (fields.next()?, fields.next()?, fields.next()?);
                Some(Self::React { room: Room::parse(room)?, id: id.to_owned(), emoji: emoji.to_owned() })
            }
            "TYPING" => Some(Self::Typing { room: Room::parse(rest)? }),
            _ => None,
        }
    }
}

impl fmt::Display for BotLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Listen { bot } => write!(f, "LISTEN {bot}"),
            Self::Say { room, text } => write!(f, "SAY {room} {}", escape(text)),
            Self::React { room, id, emoji } => write!(f, "REACT {room} {id} {emoji}"),
            Self::Typing { room } => write!(f, "TYPING {room}"),
        }
    }
}

/// A line the server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine {
    /// `WELCOME`: the event connection is open.
    Welcome,
    /// `MSG <id> <room> <user> <text>`: someone said something.
    Message {
        /// The server's id for the message, unique on the server.
        id: String,
        /// Where.
        room: Room,
        /// Who.
        user: String,
        /// What.
        text: String,
    },
    /// `OK [<id>]`: the command was done (`SAY` gets the new message's id).
    Ok,
    /// `ERR <code> <reason>`: the command was refused. `busy` means try again later; every other
    /// code (`unknown-room`, `forbidden`, `bad-command`) means it won't work.
    Err {
        /// The machine-readable code.
        code: String,
        /// Why, for people.
        reason: String,
    },
}

impl ServerLine {
    /// Reads one line (without its newline).
    pub fn parse(line: &str) -> Option<Self> {
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match verb {
            "WELCOME" => Some(Self::Welcome),
            "OK" => Some(Self::Ok),
            "ERR" => {
                let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                valid(code).then(|| Self::Err { code: code.to_owned(), reason: unescape(reason) })
            }
            "MSG" => {
                let mut fields = rest.splitn(4, ' ');
                let (id, room, user, text) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
                if !valid(id) || !valid(user) {
                    return None;
                }
                Some(Self::Message {
                    id: id.to_owned(),
                    room: Room::parse(room)?,
                    user: user.to_owned(),
                    text: unescape(text),
                })
            }
            _ => None,
        }
    }
}

impl fmt::Display for ServerLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Welcome => f.write_str("WELCOME"),
            Self::Message { id, room, user, text } => write!(f, "MSG {id} {room} {user} {}", escape(text)),
            Self::Ok => f.write_str("OK"),
            Self::Err { code, reason } => write!(f, "ERR {code} {}", escape(reason)),
        }
    }
}

/// Makes free text fit on one line: `\` becomes `\\`, a newline `\n`, a carriage return `\r`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Undoes [`escape`]. An unknown escape is kept as written.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_parse_what_they_print() {
        for text in ["#general", "#general/17", "@alice"] {
            assert_eq!(Room::parse(text).map(|r| r.to_string()).as_deref(), Some(text));
        }
        assert_eq!(Room::parse("#general/17"), Some(Room::Thread { channel: "#general".into(), root: "17".into() }));
        for bad in ["general", "#", "@", "#a/", "#a/b/c", "#a b", ""] {
            assert_eq!(Room::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_thread_hangs_under_a_channel_message_only() {
        let general = Room::Channel("#general".into());
        assert_eq!(general.thread_under("17").to_string(), "#general/17");
        let thread = general.thread_under("17");
        assert_eq!(thread.thread_under("18"), thread, "a thread reply stays in its thread");
        let dm = Room::Direct("@alice".into());
        assert_eq!(dm.thread_under("3"), dm, "direct conversations have no threads");
    }

    #[test]
    fn multi_line_text_survives_the_wire() {
        let text = "line one\nline two\r\nback\\slash \\n literal";
        let line = BotLine::Say { room: Room::Channel("#general".into()), text: text.into() }.to_string();
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        assert_eq!(
            BotLine::parse(&line),
            Some(BotLine::Say { room: Room::Channel("#general".into()), text: text.into() })
        );
    }

    #[test]
    fn server_lines_round_trip() {
        let lines = [
            ServerLine::Welcome,
            ServerLine::Ok,
            ServerLine::Err { code: "busy".into(), reason: "slow down".into() },
            ServerLine::Message {
                id: "17".into(),
                room: Room::Direct("@alice".into()),
                user: "alice".into(),
                text: "hi there\nfriend".into(),
            },
        ];
        for line in lines {
            assert_eq!(ServerLine::parse(&line.to_string()), Some(line.clone()), "{line}");
        }
        assert_eq!(ServerLine::parse("OK 42"), Some(ServerLine::Ok), "a SAY's id is optional to read");
        assert_eq!(ServerLine::parse("MSG 1 #general alice"), None, "a message needs its text field");
        assert_eq!(ServerLine::parse("HELLO"), None);
    }

    #[test]
    fn bot_lines_round_trip() {
        let lines = [
            BotLine::Listen { bot: "spacebot".into() },
            BotLine::React { room: Room::Channel("#general".into()), id: "4".into(), emoji: "👍".into() },
            BotLine::Typing { room: Room::parse("#general/4").expect("a thread room") },
        ];
        for line in lines {
            assert_eq!(BotLine::parse(&line.to_string()), Some(line.clone()), "{line}");
        }
        assert_eq!(BotLine::parse("LISTEN two words"), None);
    }
}
