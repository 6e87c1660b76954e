//! `spacebot send` and `spacebot chat`: talk to an agent through the running daemon.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{ChatArgs, GlobalArgs, SendArgs};
use crate::client::{Client, block_on, local_user};

pub(crate) fn send(global: &GlobalArgs, args: SendArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(global)?;
    let text = args.text.join(" ");
    block_on(async {
        let accepted = client.post(&args.agent, &args.conversation, &local_user(), &text).await?;
        let replies = client.wait_for_reply(&args.agent, &accepted, Duration::from_secs(args.timeout)).await?;
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
            let accepted = client.post(&args.agent, &conversation, &user, &line).await?;
            client.wait_for_reply(&args.agent, &accepted, Duration::from_secs(180)).await
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
