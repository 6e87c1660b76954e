//! The chronicle beside the conversation log: contiguous level-0 checkpoints committed by
//! compare-and-set, rollups that mark their sources in the same transaction, reads of the log by
//! sequence number, and checkpoints that read back the same after the database is reopened; on
//! SQLite and PostgreSQL.

// The suite's tests are generic functions that `on_both_backends!` calls from `#[tokio::test]`s,
// so clippy doesn't know them for tests.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use spacebot_core::{
    AgentId, Checkpoint, CheckpointKind, Chronicle, ConversationId, ConversationLog, LoggedMessage, NewCheckpoint,
    NewRollup, Role, StoredMessage,
};

use crate::support::{LogStore, TestDb, agent, inbound, on_both_backends, precise_time};

on_both_backends!(
    the_log_is_read_by_sequence_number_per_conversation,
    level_zero_checkpoints_commit_only_right_after_the_previous_one,
    a_rollup_marks_its_sources_in_the_same_commit,
    a_rollup_numbered_between_its_sources_does_not_block_the_next_rollup,
    checkpoints_read_back_the_same_after_reopening_the_file,
);

const CONV: &str = "webhook:c1";

fn conversation() -> ConversationId {
    ConversationId::from(CONV)
}

/// Records `count` replies in `conversation`, interleaved with one in another conversation so
/// the conversation's sequence numbers are not consecutive.
async fn fill(store: &impl ConversationLog, count: usize) {
    for i in 0..count {
        for conv in [CONV, "webhook:other"] {
            let message =
                StoredMessage::new(agent("main"), ConversationId::from(conv), Role::Assistant, "main", format!("m{i}"))
                    .with_created_at(precise_time(u32::try_from(i % 60).expect("under 60")));
            store.record_reply(&message, &[]).await.expect("recorded");
        }
    }
}

async fn logged(chronicle: &Arc<dyn Chronicle>) -> Vec<LoggedMessage> {
    chronicle.messages_after(&agent("main"), &conversation(), 0, 1000).await.expect("the log reads")
}

fn span(messages: &[LoggedMessage], from: usize, to: usize) -> NewCheckpoint {
    NewCheckpoint::over(CheckpointKind::Interval, &messages[from..=to], format!("{from}-{to}"), "summary")
        .expect("a non-empty span")
        .with_model("m/x")
}

async fn the_log_is_read_by_sequence_number_per_conversation<D: TestDb>(db: D) {
    let store = db.open().await;
    fill(&store, 5).await;
    let chronicle = store.chronicle().expect("the store keeps a chronicle");
    let all = logged(&chronicle).await;
    assert_eq!(all.iter().map(|m| m.message.text.as_str()).collect::<Vec<_>>(), ["m0", "m1", "m2", "m3", "m4"]);
    assert!(all.windows(2).all(|pair| pair[1].seq == pair[0].seq + 2), "other conversations take numbers too");
    let after = chronicle.messages_after(&agent("main"), &conversation(), all[1].seq, 2).await.unwrap();
    assert_eq!(after, all[2..4].to_vec());
    let latest = chronicle.latest_after(&agent("main"), &conversation(), all[0].seq, 2).await.unwrap();
    assert_eq!(latest, all[3..].to_vec());
    let tail = chronicle.tail(&agent("main"), &conversation(), all[1].seq).await.unwrap();
    assert_eq!((tail.count, tail.newest), (3, Some(all[4].seq)));
    let none = chronicle.tail(&agent("main"), &conversation(), all[4].seq).await.unwrap();
    assert_eq!((none.count, none.newest), (0, None));
}

async fn level_zero_checkpoints_commit_only_right_after_the_previous_one<D: TestDb>(db: D) {
    let store = db.open().await;
    fill(&store, 8).await;
    let chronicle = store.chronicle().unwrap();
    let all = logged(&chronicle).await;

    let gap = chronicle.commit(span(&all, 1, 3)).await.unwrap_err();
    assert!(gap.is_superseded(), "the first checkpoint starts at the first message: {gap}");
    let first = chronicle.commit(span(&all, 0, 2)).await.unwrap();
    assert_eq!((first.seq, first.level, first.kind), (1, 0, CheckpointKind::Interval));
    assert_eq!((first.covers_from_seq, first.covers_to_seq, first.message_count), (all[0].seq, all[2].seq, 3));
    assert_eq!(first.model.as_deref(), Some("m/x"));

    for (from, to) in [(2, 4), (4, 5), (0, 7)] {
        let error = chronicle.commit(span(&all, from, to)).await.unwrap_err();
        assert!(error.is_superseded(), "{from}..{to}: {error}");
    }
    let second = chronicle.commit(span(&all, 3, 7)).await.unwrap();
    assert_eq!((second.seq, second.covers_from_seq), (2, all[3].seq));
    assert_eq!(chronicle.covered_to(&agent("main"), &conversation()).await.unwrap(), all[7].seq);
    let nothing_left = chronicle.commit(span(&all, 7, 7)).await.unwrap_err();
    assert!(nothing_left.is_superseded());
    assert_eq!(chronicle.checkpoints(&agent("main"), &conversation()).await.unwrap(), vec![first, second]);
}

async fn a_rollup_marks_its_sources_in_the_same_commit<D: TestDb>(db: D) {
    let store = db.open().await;
    fill(&store, 12).await;
    let chronicle = store.chronicle().unwrap();
    let all = logged(&chronicle).await;
    for i in 0..4 {
        chronicle.commit(span(&all, i * 3, i * 3 + 2)).await.unwrap();
    }
    let (main, conv) = (agent("main"), conversation());
    let rollup = chronicle
        .commit_rollup(NewRollup::new(main.clone(), conv.clone(), (1, 3), "early", "merged").with_model("m/x"))
        .await
        .unwrap();
    assert_eq!((rollup.seq, rollup.level, rollup.kind, rollup.rolls_up), (5, 1, CheckpointKind::Rollup, Some((1, 3))));
    assert_eq!((rollup.covers_from_seq, rollup.covers_to_seq, rollup.message_count), (all[0].seq, all[8].seq, 9));
    let checkpoints = chronicle.checkpoints(&main, &conv).await.unwrap();
    let rolled: Vec<Option<u64>> = checkpoints.iter().map(|c| c.rolled_up_into).collect();
    assert_eq!(rolled, [Some(5), Some(5), Some(5), None, None]);

    for sources in [(2, 4), (4, 5), (4, 9)] {
        let error =
            chronicle.commit_rollup(NewRollup::new(main.clone(), conv.clone(), sources, "t", "s")).await.unwrap_err();
        assert!(error.is_superseded(), "{sources:?}: {error}");
    }
    assert_eq!(chronicle.checkpoints(&main, &conv).await.unwrap().len(), 5, "failed rollups change nothing");
}

async fn a_rollup_numbered_between_its_sources_does_not_block_the_next_rollup<D: TestDb>(db: D) {
    let store = db.open().await;
    fill(&store, 15).await;
    let chronicle = store.chronicle().unwrap();
    let all = logged(&chronicle).await;
    let (main, conv) = (agent("main"), conversation());
    // Level-0 #1, #2, #3; rollup #4 of #1-#2; level-0 #5 after it.
    for i in 0..3 {
        chronicle.commit(span(&all, i * 3, i * 3 + 2)).await.unwrap();
    }
    chronicle.commit_rollup(NewRollup::new(main.clone(), conv.clone(), (1, 2), "a", "s")).await.unwrap();
    chronicle.commit(span(&all, 9, 11)).await.unwrap();

    // #3 and #5 are the next two waiting; #4 (a rollup) between them is not a source.
    let rollup = chronicle.commit_rollup(NewRollup::new(main.clone(), conv.clone(), (3, 5), "b", "s")).await.unwrap();
    assert_eq!((rollup.seq, rollup.rolls_up), (6, Some((3, 5))));
    assert_eq!((rollup.covers_from_seq, rollup.covers_to_seq, rollup.message_count), (all[6].seq, all[11].seq, 6));
    let checkpoints = chronicle.checkpoints(&main, &conv).await.unwrap();
    let rolled: Vec<(u64, Option<u64>)> = checkpoints.iter().map(|c| (c.seq, c.rolled_up_into)).collect();
    assert_eq!(rolled, [(1, Some(4)), (2, Some(4)), (3, Some(6)), (4, None), (5, Some(6)), (6, None)]);

    // A range that starts or ends on a rollup, or holds one source, is refused.
    for sources in [(4, 5), (3, 4), (5, 5)] {
        let error =
            chronicle.commit_rollup(NewRollup::new(main.clone(), conv.clone(), sources, "t", "s")).await.unwrap_err();
        assert!(error.is_superseded(), "{sources:?}: {error}");
    }
}

async fn checkpoints_read_back_the_same_after_reopening_the_file<D: TestDb>(db: D) {
    let committed: Vec<Checkpoint> = {
        let store = db.open().await;
        let message = inbound("main", CONV, "in-1", "hello").with_timestamp(precise_time(3));
        store.record_inbound(&message).await.unwrap();
        fill(&store, 3).await;
        let chronicle = store.chronicle().unwrap();
        let all = logged(&chronicle).await;
        let first = chronicle.commit(span(&all, 0, 1)).await.unwrap();
        let notice = NewCheckpoint::over(CheckpointKind::Emergency, &all[2..], "Unsummarized", "[unsummarized] notice")
            .unwrap()
            .unsummarized();
        let second = chronicle.commit(notice).await.unwrap();
        store.close().await;
        vec![first, second]
    };
    let store = db.open().await;
    let chronicle = store.chronicle().unwrap();
    let read = chronicle.checkpoints(&AgentId::from("main"), &conversation()).await.unwrap();
    assert_eq!(read, committed);
    assert!(read[1].unsummarized && read[1].model.is_none() && read[1].kind == CheckpointKind::Emergency);
    assert_eq!(read[0].covers_from_at, crate::support::millis(precise_time(3)));
    assert_eq!(chronicle.checkpoint(&agent("main"), &conversation(), 2).await.unwrap(), Some(committed[1].clone()));
    assert_eq!(chronicle.checkpoint(&agent("main"), &conversation(), 3).await.unwrap(), None);
}
