//! The SQL that filters reads agrees with core's privacy rule, `Visibility::admits`, over
//! generated cases: seeded random memories covering every combination of private, person and
//! conversation, read under many visibilities (identity links included), compared id by id.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use spacebot_core::{
    AgentId, ListQuery, Memory, MemoryId, MemoryScope, MemoryStore, MemoryType, NewMemory, Visibility,
};
use spacebot_memory::{HashingEmbedder, MemoryGraph};

const AGENT: &str = "main";

/// Platform ids linked to people (`platform id -> person`).
const LINKS: [(&str, &str); 3] = [("discord:alice", "alice"), ("slack:U1", "alice"), ("discord:bob", "bob")];

/// Who a memory may be about: nobody, linked platform ids, the people, unlinked platform ids.
const HUMANS: [Option<&str>; 7] =
    [None, Some("discord:alice"), Some("slack:U1"), Some("alice"), Some("bob"), Some("discord:dave"), Some("carol")];

const CONVERSATIONS: [Option<&str>; 3] = [None, Some("discord:c1"), Some("discord:c2")];

/// Who may take part in a conversation: linked and unlinked platform ids, and people by id.
const PARTICIPANTS: [&str; 6] = ["discord:alice", "slack:U1", "discord:bob", "discord:dave", "alice", "carol"];

/// A small seeded generator (SplitMix64), so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn scope(private: bool, human: Option<&str>, conversation: Option<&str>) -> MemoryScope {
    let mut scope = MemoryScope::agent(AGENT);
    scope.private = private;
    scope.human = human.map(str::to_owned);
    scope.conversation = conversation.map(Into::into);
    scope
}

/// The visibilities every seed reads with, and as many random ones again.
fn visibilities(rng: &mut Rng) -> Vec<Visibility> {
    let mut all = vec![
        Visibility::Shared,
        Visibility::Operator,
        Visibility::conversation("discord:c1", Vec::<String>::new()),
        Visibility::conversation("discord:c1", ["discord:alice"]),
        Visibility::conversation("discord:c2", ["discord:alice", "discord:bob"]),
        Visibility::conversation("discord:c1", ["slack:U1"]),
        Visibility::conversation("discord:c2", ["alice"]),
        Visibility::conversation("discord:c3", ["discord:dave", "carol"]),
    ];
    for _ in 0..8 {
        let conversation = rng.pick(&["discord:c1", "discord:c2", "discord:c3"]);
        let participants: Vec<&str> = PARTICIPANTS.iter().copied().filter(|_| rng.chance(35)).collect();
        all.push(Visibility::conversation(conversation, participants));
    }
    all
}

/// What `admits` says, for a visibility resolved as the store resolves it: the people the
/// participants are linked to take part too.
fn expected(visibility: &Visibility, memories: &[Memory]) -> BTreeSet<MemoryId> {
    let links: BTreeMap<&str, &str> = LINKS.into_iter().collect();
    let mapped: Vec<String> = match visibility {
        Visibility::Conversation { participants, .. } => {
            participants.iter().filter_map(|p| links.get(p.as_str()).map(|person| (*person).to_owned())).collect()
        }
        _ => Vec::new(),
    };
    let resolved = visibility.clone().with_participants(mapped);
    memories
        .iter()
        .filter(|memory| !memory.forgotten && resolved.admits(memory.scope.view()))
        .map(|memory| memory.id.clone())
        .collect()
}

#[tokio::test]
async fn sql_filtered_reads_return_exactly_what_visibility_admits() {
    for seed in [1_u64, 7, 42, 2024] {
        let mut rng = Rng(seed);
        let store = MemoryGraph::open_in_memory(Arc::new(HashingEmbedder::default()))
            .await
            .expect("open")
            // Distinct texts may still embed alike; keep every save a memory of its own.
            .with_merge_similarity(2.0);
        let agent = AgentId::from(AGENT);

        // Every combination once, then random ones, some saved before the links exist (the
        // store moves those to the person when the link is made), in a seeded order. A private
        // memory with neither a person nor a conversation is refused at save, so never made.
        let mut scopes = Vec::new();
        for private in [false, true] {
            for human in HUMANS {
                for conversation in CONVERSATIONS {
                    scopes.push(scope(private, human, conversation));
                }
            }
        }
        for _ in 0..60 {
            scopes.push(scope(rng.chance(60), rng.pick(&HUMANS), rng.pick(&CONVERSATIONS)));
        }
        scopes.retain(|scope| !scope.private || scope.human.is_some() || scope.conversation.is_some());
        for i in (1..scopes.len()).rev() {
            scopes.swap(i, rng.below(i + 1));
        }
        let (early, late) = scopes.split_at(scopes.len() / 2);
        let batch = |scopes: &[MemoryScope], first: usize| -> Vec<NewMemory> {
            let memories = scopes.iter().enumerate();
            memories
                .map(|(i, scope)| {
                    NewMemory::new(MemoryType::Fact, format!("seed {seed} memory {}", first + i), scope.clone())
                })
                .collect()
        };
        let mut ids: Vec<MemoryId> = Vec::new();
        let saved = store.save_batch(batch(early, 0)).await.expect("save");
        ids.extend(saved.into_iter().map(|outcome| outcome.id));
        for (platform_id, person) in LINKS {
            store.link_identity(&agent, platform_id, person).await.expect("link");
        }
        let saved = store.save_batch(batch(late, early.len())).await.expect("save");
        ids.extend(saved.into_iter().map(|outcome| outcome.id));
        for id in ids.iter().filter(|_| rng.chance(10)) {
            store.forget(&agent, id).await.expect("forget");
        }

        let memories = store
            .list(
                ListQuery::new(AGENT).with_visibility(Visibility::Operator).including_forgotten().with_page(10_000, 0),
            )
            .await
            .expect("list everything");
        assert_eq!(memories.len(), ids.len(), "seed {seed}: every save is its own memory");

        let mut through_links = 0;
        for visibility in visibilities(&mut rng) {
            let want = expected(&visibility, &memories);
            if let Visibility::Conversation { participants, .. } = &visibility {
                through_links += memories
                    .iter()
                    .filter(|m| want.contains(&m.id) && m.scope.private)
                    .filter(|m| m.scope.human.as_ref().is_some_and(|human| !participants.contains(human)))
                    .count();
            }
            let listed: BTreeSet<MemoryId> = store
                .list(ListQuery::new(AGENT).with_visibility(visibility.clone()).with_page(10_000, 0))
                .await
                .expect("list")
                .into_iter()
                .map(|memory| memory.id)
                .collect();
            let mut fetched = BTreeSet::new();
            for memory in &memories {
                if store.get_visible(&agent, &memory.id, &visibility).await.expect("get").is_some() {
                    fetched.insert(memory.id.clone());
                }
            }
            for (read, got) in [("list", &listed), ("get_visible", &fetched)] {
                let scope_of = |id: &MemoryId| {
                    memories
                        .iter()
                        .find(|m| &m.id == id)
                        .map(|m| (m.scope.private, m.scope.human.clone(), m.scope.conversation.clone()))
                };
                let extra: Vec<_> = got.difference(&want).map(scope_of).collect();
                let missing: Vec<_> = want.difference(got).map(scope_of).collect();
                assert!(
                    extra.is_empty() && missing.is_empty(),
                    "seed {seed}, {read} under {visibility:?}: SQL returned what admits refuses {extra:?}, \
                     and refused what admits allows {missing:?}"
                );
            }
        }
        assert!(through_links > 0, "seed {seed}: no private memory was admitted through an identity link");
    }
}
