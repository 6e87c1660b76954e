//! `spacebot send` and `spacebot chat`: talk to an agent through the running daemon.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{ChatArgs, GlobalArgs, SendArgs};
use crate::client::{Client, block_on, local_user};

/// How long `chat` waits for each reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(180);

pub(crate) fn send(global: &GlobalArgs, args: SendArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(global)?;
    let text = args.text.join(" ");
    block_on(async {
        let timeout = Duration::from_secs(args.timeout);
        // Subscribed first, so the reply's event can't slip past between the post and the wait.
        let mut events = client.subscribe(timeout).await?;
        let accepted = client.post(&args.agent, &args.conversation, &local_user(), &text).await?;
        let replies = client.wait_for_reply(&mut events, &args.agent, &accepted, timeout).await?;
        for reply in replies {
            println!("{}", reply.text);
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })?
}

pub(crate) fn interactive(global: &GlobalArgs, args: ChatArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(global)?;
    let user = local_user();
    let conversation = args.conversation.unwrap_or_else(|| format!("chat-{user}"));
    println!("Talking to agent '{}' (conversation {conversation}). Ctrl-D to leave.", args.agent);
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let Some(line) = lines.next() else { break };
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let outcome = block_on(async {
            let mut events = client.subscribe(REPLY_TIMEOUT).await?;
            let accepted = client.post(&args.agent, &conversation, &user, &line).await?;
            client.wait_for_reply(&mut events, &args.agent, &accepted, REPLY_TIMEOUT).await
        })?;
        match outcome {
            Ok(replies) => {
                for reply in replies {
                    println!("{}: {}", args.agent, reply.text);
                }
            }
            // A lost reply is worth saying, but not worth leaving the conversation over.
            Err(error) => eprintln!("error: {error}"),
        }
    }
    println!();
    Ok(ExitCode::SUCCESS)
}
