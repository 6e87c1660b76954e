//! The recall data set: long multi-session conversations between two people, written for this
//! harness by a seeded generator (no downloaded corpus: everything here may ship with the
//! project), with questions and the turns that answer them.
//!
//! Each conversation runs 24 sessions over about a year. A session opens and closes with small
//! talk, carries a few life events of either person (a new pet, a trip, a book, a dish cooked) and
//! filler chit-chat between them. Events come with the other person's reaction, which repeats the
//! event's words without answering anything: the distractors a real chat log is full of. Many
//! event kinds recur with other details in other months, so "what did Nate cook in March 2024"
//! needs the date, not only the words.
//!
//! Question categories:
//! - `single-hop`: one turn answers it; the question paraphrases the turn (a beagle is asked
//!   about as a dog).
//! - `multi-hop`: a person or thing is introduced in one session ("my cousin Lena is getting
//!   married") and the answer comes sessions later under its name only ("Lena asked me to bake the
//!   cake"); the question names it by the first description ("what is Joanna baking for her
//!   cousin's wedding?"). The answering turn is the evidence that counts.
//! - `temporal`: "when did ..." (the answering turn's session date is the answer), and "what did
//!   ... in `<month> <year>`" where the same kind of event happened in other months too.
//! - `open`: inference from a turn that shares few words with the question ("would Nate enjoy a
//!   hiking holiday?" over "nothing beats a weekend in the mountains with my boots on").
//!
//! A hit at k is a question whose answering turn (its first evidence turn) is among the top k.

use chrono::{Datelike, Days, NaiveDate};

/// Conversations in the data set.
pub(crate) const CONVERSATIONS: usize = 10;
/// Sessions per conversation.
const SESSIONS: usize = 24;

/// A question's category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Category {
    SingleHop,
    MultiHop,
    Temporal,
    Open,
}

impl Category {
    pub(crate) const ALL: [Category; 4] = [Category::SingleHop, Category::MultiHop, Category::Temporal, Category::Open];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Category::SingleHop => "single-hop",
            Category::MultiHop => "multi-hop",
            Category::Temporal => "temporal",
            Category::Open => "open",
        }
    }
}

/// One dialog turn: what one person said in one session.
#[derive(Debug, Clone)]
pub(crate) struct Turn {
    /// `c3:s12:t7`.
    pub(crate) id: String,
    pub(crate) speaker: &'static str,
    pub(crate) text: String,
    pub(crate) date: NaiveDate,
}

impl Turn {
    /// The turn as it is stored: `Speaker: text`.
    pub(crate) fn content(&self) -> String {
        format!("{}: {}", self.speaker, self.text)
    }
}

/// A question about one conversation.
#[derive(Debug, Clone)]
pub(crate) struct Question {
    pub(crate) category: Category,
    pub(crate) text: String,
    /// Turn ids; the first answers the question.
    pub(crate) evidence: Vec<String>,
}

/// A conversation and its questions.
#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    pub(crate) turns: Vec<Turn>,
    pub(crate) questions: Vec<Question>,
}

/// The whole data set, the same on every run.
pub(crate) fn dataset() -> Vec<Conversation> {
    (0..CONVERSATIONS).map(conversation).collect()
}

/// splitmix64: small, seeded, stable across platforms.
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
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A person: name and pronouns.
#[derive(Debug, Clone, Copy)]
struct Person {
    name: &'static str,
    /// they / she / he
    subject: &'static str,
    /// their / her / his
    possessive: &'static str,
}

impl Person {
    /// them / her / him
    fn object(self) -> &'static str {
        match self.subject {
            "she" => "her",
            "he" => "him",
            _ => "them",
        }
    }
}

const PEOPLE: &[Person] = &[
    Person { name: "Joanna", subject: "she", possessive: "her" },
    Person { name: "Nate", subject: "he", possessive: "his" },
    Person { name: "Priya", subject: "she", possessive: "her" },
    Person { name: "Marcus", subject: "he", possessive: "his" },
    Person { name: "Elena", subject: "she", possessive: "her" },
    Person { name: "Tomas", subject: "he", possessive: "his" },
    Person { name: "Aisha", subject: "she", possessive: "her" },
    Person { name: "Kenji", subject: "he", possessive: "his" },
    Person { name: "Sofia", subject: "she", possessive: "her" },
    Person { name: "Daniel", subject: "he", possessive: "his" },
    Person { name: "Maya", subject: "she", possessive: "her" },
    Person { name: "Oliver", subject: "he", possessive: "his" },
    Person { name: "Grace", subject: "she", possessive: "her" },
    Person { name: "Luis", subject: "he", possessive: "his" },
    Person { name: "Hannah", subject: "she", possessive: "her" },
    Person { name: "Samir", subject: "he", possessive: "his" },
    Person { name: "Chloe", subject: "she", possessive: "her" },
    Person { name: "Ivan", subject: "he", possessive: "his" },
    Person { name: "Nora", subject: "she", possessive: "her" },
    Person { name: "Felix", subject: "he", possessive: "his" },
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

// Slot values. Lists are long enough that a conversation rarely repeats one.
const BREEDS: &[&str] = &[
    "beagle",
    "golden retriever",
    "border collie",
    "dachshund",
    "labrador",
    "corgi",
    "greyhound",
    "poodle",
    "husky",
    "spaniel",
];
const PET_NAMES: &[&str] = &[
    "Biscuit", "Pepper", "Mango", "Ziggy", "Olive", "Waffles", "Juniper", "Rocket", "Tofu", "Clover", "Bean", "Maple",
];
const JOBS: &[(&str, &str)] = &[
    ("nurse", "hospital"),
    ("graphic designer", "studio"),
    ("data analyst", "bank"),
    ("sous chef", "restaurant"),
    ("librarian", "library"),
    ("electrician", "construction firm"),
    ("physiotherapist", "clinic"),
    ("teacher", "primary school"),
    ("software tester", "startup"),
    ("pharmacist", "pharmacy"),
];
const COMPANIES: &[&str] = &[
    "Northwind",
    "Bluebird",
    "Harbor & Vale",
    "Greenleaf",
    "Atlas",
    "Brightside",
    "Copperfield",
    "Riverstone",
    "Lumen",
    "Oakridge",
];
const CITIES: &[(&str, &str)] = &[
    ("Kyoto", "bamboo forest"),
    ("Lisbon", "tram ride up the hill"),
    ("Reykjavik", "hot springs"),
    ("Marrakesh", "spice market"),
    ("Vancouver", "seawall"),
    ("Prague", "astronomical clock"),
    ("Cape Town", "cable car to Table Mountain"),
    ("Buenos Aires", "tango show"),
    ("Edinburgh", "castle on the rock"),
    ("Hanoi", "street food tour"),
    ("Istanbul", "ferry across the Bosphorus"),
    ("Oaxaca", "mole tasting"),
];
const HOBBIES: &[(&str, &str)] = &[
    ("pottery", "throwing bowls on the wheel"),
    ("salsa", "learning the basic steps with a partner"),
    ("rock climbing", "bouldering at the indoor gym"),
    ("watercolour", "painting landscapes"),
    ("woodworking", "building a small bookshelf"),
    ("Italian", "conjugating verbs"),
    ("improv", "making up scenes on stage"),
    ("archery", "hitting the target at thirty metres"),
];
const WEEKDAYS: &[&str] = &["Monday", "Tuesday", "Wednesday", "Thursday"];
const BOOKS: &[(&str, &str)] = &[
    ("The Quiet Orchard", "Miriam Hale"),
    ("Salt and Iron", "Desmond Okafor"),
    ("A Map of Small Hours", "Ines Carvalho"),
    ("The Glass Cartographer", "Ruth Abernathy"),
    ("Winter Ledger", "Paul Szabo"),
    ("Rivers Under the City", "Amara Lindqvist"),
    ("The Last Lighthouse Keeper", "Theo Marchetti"),
    ("Borrowed Constellations", "Hana Ito"),
];
const DISHES: &[&str] = &[
    "lasagna",
    "chicken curry",
    "mushroom risotto",
    "beef stew",
    "paella",
    "ramen from scratch",
    "shakshuka",
    "dumplings",
    "moussaka",
    "lentil soup",
    "pad thai",
    "enchiladas",
];
const CARS: &[&str] = &[
    "Honda Civic",
    "Toyota Corolla",
    "Subaru Outback",
    "Volkswagen Golf",
    "Mazda 3",
    "Ford Focus",
    "Kia Soul",
    "Nissan Leaf",
];
const SPORTS: &[&str] = &["basketball", "football", "volleyball", "tennis", "badminton", "squash"];
const INSTRUMENTS: &[&str] = &["cello", "piano", "violin", "trumpet", "saxophone", "ukulele", "flute", "drums"];
const MOVIES: &[&str] = &[
    "Midnight Harbor",
    "The Paper Kingdom",
    "Echoes of Mars",
    "Summer at Lake Vey",
    "The Clockmaker's Daughter",
    "Neon Prairie",
    "Ghosts of the Atlas",
    "Little Thunder",
];
const GIFTS: &[&str] = &[
    "telescope",
    "record player",
    "espresso machine",
    "pair of hiking boots",
    "camera",
    "e-reader",
    "sewing machine",
    "bread maker",
];
const VOLUNTEER: &[(&str, &str)] = &[
    ("animal shelter", "walking the dogs"),
    ("food bank", "sorting donations"),
    ("community garden", "weeding the vegetable beds"),
    ("homeless shelter", "serving breakfast"),
    ("children's hospital", "reading stories"),
    ("refugee centre", "teaching English"),
];
const RELATIVES: &[(&str, &str)] = &[
    ("sister", "Lena"),
    ("brother", "Jonah"),
    ("cousin", "Mira"),
    ("uncle", "Walter"),
    ("aunt", "Rosa"),
    ("best friend", "Theo"),
    ("neighbour", "Agnes"),
    ("college roommate", "Quinn"),
];
const RELATIVE_NEWS: &[(&str, &str, &str)] = &[
    // (first mention, later news under the name, question about the later news)
    ("is getting married in the spring", "asked me to bake the wedding cake", "baking for the wedding of"),
    ("is opening a bakery downtown", "asked me to paint the sign over the door", "painting for the shop of"),
    ("is training for an ironman", "asked me to design the team jerseys", "designing for the race of"),
    ("is moving into a farmhouse", "asked me to help build a chicken coop", "building at the new house of"),
    ("is starting a podcast about history", "asked me to compose the theme tune", "composing for the show of"),
];
const PREFERENCES: &[(&str, &str, &str)] = &[
    // (what the person says, the open question in other words, the open question closer to them)
    (
        "Nothing beats a weekend in the mountains with my boots on and a trail map",
        "enjoy a hiking holiday",
        "like a trip to the mountains",
    ),
    (
        "I could spend every evening in the kitchen trying new spices",
        "like a cooking class as a present",
        "enjoy a box of new spices to try",
    ),
    (
        "Crowded rooms drain me, I'd rather have a quiet night with a novel",
        "prefer a calm evening at home to a big party",
        "skip a crowded party for a quiet night",
    ),
    ("I get seasick just looking at a boat", "turn down an invitation to go sailing", "enjoy a day on a boat"),
    ("Give me a stage and a microphone and I'm happy", "enjoy performing karaoke", "be happy to sing on a stage"),
    (
        "I've never understood why people sit on a beach all day, I get bored in an hour",
        "find a beach resort holiday dull",
        "get bored on a beach holiday",
    ),
    (
        "My balcony is basically a jungle now, I repot something every weekend",
        "appreciate a houseplant as a gift",
        "like a new plant for the balcony",
    ),
    (
        "I still can't resist a good board game night with friends",
        "say yes to a games evening",
        "come to a board game night",
    ),
    ("Horror films give me nightmares for a week", "avoid watching a scary movie", "get nightmares from a horror film"),
    ("I wake up at five to get a swim in before work", "be an early riser", "go for a swim before work"),
];
const GENERIC_FILLER: &[&str] = &[
    "That sounds amazing, I'm so happy for you!",
    "Wow, how did that feel?",
    "I've been pretty busy with work lately, nothing exciting.",
    "Haha, that's so you.",
    "I totally get that.",
    "We should catch up in person soon.",
    "Honestly the weekend went by way too fast.",
    "My family says hi, by the way.",
    "I should really read more books, I never find the time.",
    "The weather has been awful here all week.",
    "That reminds me, I need to call my mom.",
    "I'm trying to get more sleep, it's not going well.",
    "Did you end up doing anything fun last weekend?",
    "Work has been a rollercoaster this month.",
    "I love hearing about your adventures.",
    "Same here, just trying to keep my head above water.",
    "You always know how to make me laugh.",
    "I've been thinking about travelling somewhere new this year.",
    "My dog would love that, he goes crazy for anything outdoors.",
    "I keep saying I'll cook more at home and then I order takeout.",
    "It's been a long week but a good one.",
    "I watched a movie last night but honestly forgot the name already.",
    "We had a big family dinner on Sunday, lots of food.",
    "I'm thinking of picking up a new hobby, any ideas?",
    "Music has been getting me through the week.",
    "I finally cleaned out the garage, it only took three years.",
    "How's your job going these days?",
    "Any plans for the holidays?",
    "That's a great idea, you should totally go for it.",
    "I can't believe it's already that time of year.",
];
const GREETINGS: &[&str] = &[
    "Hey {B}! Long time no talk, how have you been?",
    "Hi {B}! It's been a while, what's new?",
    "Hey {B}, good to hear from you!",
    "{B}! I was just thinking about you. How are things?",
];
const GREETING_REPLIES: &[&str] = &[
    "Hi {A}! Good, busy as always. You?",
    "Hey {A}! Things are good, lots going on.",
    "{A}! So glad you messaged, I have news.",
    "Hey {A}, all good here. Tell me everything.",
];
const FAREWELLS: &[&str] = &[
    "I have to run, talk soon {B}!",
    "Bye {B}! Take care.",
    "Gotta go, great catching up {B}!",
    "Talk later {B}, have a good week!",
];
const FAREWELL_REPLIES: &[&str] =
    &["Bye {A}!", "Take care {A}!", "See you {A}!", "Later {A}, good luck with everything!"];
const REACTIONS: &[&str] = &[
    "No way, {thing}? That's so exciting!",
    "Wait, {thing}? Tell me more!",
    "{thing}, wow. How did that happen?",
    "I love that, {thing} sounds perfect for you.",
    "Oh nice, {thing}! I'm jealous.",
];

/// One event of a session: the turns it adds, and questions that refer to them by index into
/// those turns.
struct Event {
    turns: Vec<(usize, String)>,
    questions: Vec<(Category, String, Vec<usize>)>,
    /// A kind that recurs (a trip, a book, a dinner, a film): asked about by month later.
    recurring: Option<&'static str>,
}

/// The multi-hop threads of a conversation: those waiting for their second turn, and the
/// relatives already introduced.
#[derive(Default)]
struct Threads {
    pending: Vec<Pending>,
    relatives: Vec<usize>,
    /// (speaker, kind) of the once-only events that happened.
    once: std::collections::HashSet<(usize, usize)>,
    /// (speaker, list, index) of the slot values a person used.
    used: std::collections::HashSet<(usize, &'static str, usize)>,
}

impl Threads {
    /// A value of `items` this person has not used yet (any, when all are used).
    fn fresh<'a, T>(&mut self, rng: &mut Rng, speaker: usize, list: &'static str, items: &'a [T]) -> &'a T {
        let free: Vec<usize> = (0..items.len()).filter(|i| !self.used.contains(&(speaker, list, *i))).collect();
        let index = if free.is_empty() { rng.below(items.len()) } else { free[rng.below(free.len())] };
        self.used.insert((speaker, list, index));
        &items[index]
    }
}

/// Event kinds that happen at most once per person (pet, job, hobby, car, injury, instrument,
/// birthday present, volunteering).
const ONCE: [usize; 8] = [0, 1, 4, 8, 9, 10, 12, 13];

/// Occasions of the dinners a person cooks, so "what did Nate cook for ..." has one answer.
const OCCASIONS: &[&str] = &[
    "my dad's retirement party",
    "the neighbours' barbecue",
    "our book club",
    "my niece's graduation",
    "the office potluck",
    "a rainy Sunday with my in-laws",
    "our anniversary",
    "the street party",
    "my sister's housewarming",
    "game night",
    "the church fundraiser",
    "a picnic by the lake",
];

/// Who a person sees a film with, so "which film did Nate see with ..." has one answer.
const COMPANIONS: &[&str] = &[
    "my grandfather",
    "the whole team from work",
    "my little cousins",
    "my running club",
    "my old school friends",
    "my flatmates",
    "my godmother",
    "the kids I babysit",
];

/// A thread started in one session and finished in a later one (multi-hop).
struct Pending {
    speaker: usize,
    relation: &'static str,
    name: &'static str,
    news: usize,
    due: usize,
    intro_turn: String,
}

fn conversation(index: usize) -> Conversation {
    let mut rng = Rng(0x5eed_0000 + index as u64 * 7919);
    let first = (index * 2) % PEOPLE.len();
    let people = [PEOPLE[first], PEOPLE[first + 1]];
    let names = [people[0].name, people[1].name];
    let start = NaiveDate::from_ymd_opt(2023, 1 + (index % 3) as u32, 3 + index as u32).unwrap_or_default();
    let mut date = start;
    let mut turns: Vec<Turn> = Vec::new();
    let mut questions: Vec<Question> = Vec::new();
    let mut threads = Threads::default();
    // What each person did per recurring kind, with the turn and date (temporal "in <month>").
    let mut dated: Vec<(usize, &'static str, String, NaiveDate)> = Vec::new();

    for session in 0..SESSIONS {
        let mut number = 0usize;
        let mut push = |turns: &mut Vec<Turn>, speaker: usize, text: String| -> String {
            let id = format!("c{index}:s{session}:t{number}");
            number += 1;
            turns.push(Turn { id: id.clone(), speaker: names[speaker], text, date });
            id
        };
        let opener = rng.below(2);
        let other = 1 - opener;
        let fill = |template: &str, a: usize, b: usize| template.replace("{A}", names[a]).replace("{B}", names[b]);
        push(&mut turns, opener, fill(rng.pick::<&str>(GREETINGS), opener, other));
        push(&mut turns, other, fill(rng.pick::<&str>(GREETING_REPLIES), opener, other));

        // Finish the threads due now.
        let due: Vec<Pending> = {
            let (now, later): (Vec<Pending>, Vec<Pending>) = threads.pending.drain(..).partition(|p| p.due <= session);
            threads.pending = later;
            now
        };
        for thread in due {
            let (_, later, question) = RELATIVE_NEWS[thread.news];
            let speaker = thread.speaker;
            let id = push(&mut turns, speaker, format!("{} {later}, I said yes before I could think!", thread.name));
            push(&mut turns, 1 - speaker, format!("Of course {} asked you, that's great.", thread.name));
            let person = people[speaker];
            let (_, text, _) = ask(
                rng.chance(50),
                Category::MultiHop,
                format!("What is {} {question} {} {}?", person.name, person.possessive, thread.relation),
                format!("What did {}'s {} ask {} to do?", person.name, thread.relation, person.object()),
            );
            questions.push(Question { category: Category::MultiHop, text, evidence: vec![id, thread.intro_turn] });
        }

        let events = 4 + rng.below(2);
        for _ in 0..events {
            for _ in 0..rng.below(3) {
                let speaker = rng.below(2);
                push(&mut turns, speaker, (*rng.pick(GENERIC_FILLER)).to_owned());
            }
            let speaker = rng.below(2);
            let event = event(&mut rng, people[speaker], session, &mut threads, speaker);
            let mut ids = Vec::new();
            for (offset, text) in event.turns {
                let who = if offset == 0 { speaker } else { 1 - speaker };
                ids.push(push(&mut turns, who, text));
            }
            if let Some(thread) = threads.pending.iter_mut().find(|p| p.intro_turn.is_empty()) {
                thread.intro_turn = ids[0].clone();
            }
            if let Some(kind) = event.recurring {
                dated.push((speaker, kind, ids[0].clone(), date));
            }
            for (category, text, evidence) in event.questions {
                let evidence: Vec<String> = evidence.iter().filter_map(|&i| ids.get(i).cloned()).collect();
                questions.push(Question { category, text, evidence });
            }
        }
        push(&mut turns, opener, fill(rng.pick::<&str>(FAREWELLS), opener, other));
        push(&mut turns, other, fill(rng.pick::<&str>(FAREWELL_REPLIES), opener, other));
        date = date.checked_add_days(Days::new(10 + rng.below(11) as u64)).unwrap_or(date);
    }

    // Month questions: only for a (person, kind) done in two or more different months, so the
    // words alone can't tell which one is meant.
    for (position, (speaker, kind, turn, when)) in dated.iter().enumerate() {
        let others = dated
            .iter()
            .filter(|(s, k, _, d)| s == speaker && k == kind && (d.year(), d.month()) != (when.year(), when.month()))
            .count();
        let same_month = dated.iter().enumerate().any(|(other, (s, k, _, d))| {
            other != position && s == speaker && k == kind && (d.year(), d.month()) == (when.year(), when.month())
        });
        if others == 0 || same_month {
            continue;
        }
        let person = people[*speaker];
        let month = MONTHS[when.month0() as usize];
        let text = match *kind {
            "cook" => format!("What did {} cook in {month} {}?", person.name, when.year()),
            "trip" => format!("Which city did {} visit in {month} {}?", person.name, when.year()),
            "book" => format!("Which book was {} reading in {month} {}?", person.name, when.year()),
            _ => format!("Which film did {} see in {month} {}?", person.name, when.year()),
        };
        questions.push(Question { category: Category::Temporal, text, evidence: vec![turn.clone()] });
    }
    // Threads never finished (started too late): their questions were never asked.
    Conversation { turns, questions }
}

/// A question in the words of its turn (`overlap`) or in other words, answered by the event's
/// first turn.
fn ask(overlap: bool, category: Category, close: String, other: String) -> (Category, String, Vec<usize>) {
    (category, if overlap { close } else { other }, vec![0])
}

fn reaction(rng: &mut Rng, thing: &str) -> String {
    rng.pick(REACTIONS).replace("{thing}", thing)
}

/// One life event of `person`, told to `listener`.
fn event(rng: &mut Rng, person: Person, session: usize, threads: &mut Threads, speaker: usize) -> Event {
    let name = person.name;
    let their = person.possessive;
    let mut questions = Vec::new();
    let mut recurring = None;
    let turns: Vec<(usize, String)>;
    // Half the questions share the turn's key words, half say it in other words.
    let overlap = rng.chance(50);
    let mut kind = rng.below(16);
    // What happens once in a life (a new job, a birthday present) happens once per person, so
    // its question has one answer; a second draw becomes a trip, a book, a dinner or a film.
    if ONCE.contains(&kind) && !threads.once.insert((speaker, kind)) {
        kind = [2, 5, 6, 11][rng.below(4)];
    }
    match kind {
        0 => {
            let breed = *threads.fresh(rng, speaker, "breed", BREEDS);
            let pet = *threads.fresh(rng, speaker, "pet", PET_NAMES);
            turns = vec![
                (0, format!("We finally adopted a {breed} puppy last weekend, we named him {pet}!")),
                (1, reaction(rng, &format!("a {breed}"))),
            ];
            questions.push(ask(
                overlap,
                Category::SingleHop,
                format!("What did {name} name the {breed} puppy?"),
                format!("What is the name of {name}'s dog?"),
            ));
            questions.push(ask(
                rng.chance(50),
                Category::Temporal,
                format!("When did {name} adopt a puppy?"),
                format!("When did {name} get a new pet?"),
            ));
        }
        1 => {
            let (job, place) = *threads.fresh(rng, speaker, "job", JOBS);
            let company = *threads.fresh(rng, speaker, "company", COMPANIES);
            turns = vec![
                (0, format!("Big news: I start Monday as a {job} at the {company} {place}.")),
                (1, reaction(rng, &format!("a {job}"))),
            ];
            questions.push(ask(
                overlap,
                Category::SingleHop,
                format!("What job does {name} start on Monday?"),
                format!("What new position did {name} take?"),
            ));
            questions.push(ask(
                rng.chance(50),
                Category::SingleHop,
                format!("Where does {name} start as a {job}?"),
                format!("Which employer hired {name}?"),
            ));
        }
        2 | 3 => {
            let (city, sight) = *threads.fresh(rng, speaker, "city", CITIES);
            turns = vec![
                (0, format!("I just got back from {city}! The {sight} was the highlight.")),
                (1, reaction(rng, city)),
            ];
            questions.push(ask(
                overlap,
                Category::SingleHop,
                format!("Which city did {name} get back from where the {sight} was the highlight?"),
                format!("Where did {name} go that had a {sight}?"),
            ));
            questions.push((Category::Temporal, format!("When did {name} travel to {city}?"), vec![0]));
            recurring = Some("trip");
        }
        4 => {
            let (hobby, detail) = *threads.fresh(rng, speaker, "hobby", HOBBIES);
            let day = *rng.pick(WEEKDAYS);
            turns = vec![
                (0, format!("I signed up for {hobby} lessons every {day} evening, I spent the first one {detail}.")),
                (1, format!("{hobby}? I tried that once and was terrible at it.")),
            ];
            questions.push(ask(
                overlap,
                Category::SingleHop,
                format!("What lessons did {name} sign up for every {day}?"),
                format!("What does {name} do on {day} nights?"),
            ));
        }
        5 => {
            let (title, author) = *threads.fresh(rng, speaker, "book", BOOKS);
            turns = vec![
                (0, format!("I'm halfway through '{title}' by {author} and I can't put it down.")),
                (1, "I need a new book, is it any good?".to_owned()),
            ];
            questions.push(ask(
                overlap,
                Category::SingleHop,
                format!("Who wrote '{title}', which {name} can't put down?"),
                format!("Who is the author of '{title}', the novel {name} was enjoying?"),
            ));
            recurring = Some("book");
        }
        6 | 7 => {
            let dish = *threads.fresh(rng, speaker, "dish", DISHES);
            let occasion = *threads.fresh(rng, speaker, "occasion", OCCASIONS);
            turns = vec![
                (0, format!("I made {dish} for {occasion} last night, using my grandmother's old recipe.")),
                (1, reaction(rng, &format!("homemade {dish}"))),
            ];
            let occasion = occasion.replace("my ", &format!("{their} ")).replace("our ", &format!("{their} "));
            questions.push(ask(
                overlap,
                Category::SingleHop,
                format!("What did {name} make for {occasion}?"),
                format!("Which dish did {name} prepare for {occasion}?"),
            ));
            recurring = Some("cook");
        }
        8 => {
            let car = *threads.fresh(rng, speaker, "car", CARS);
            turns = vec![
                (0, format!("I bought a second-hand {car}, no more waiting for the bus in the rain.")),
                (1, format!("A {car}! Road trip soon?")),
            ];
            questions.push(ask(
                overlap,
                Category::SingleHop,
                format!("What second-hand car did {name} buy?"),
                format!("What vehicle did {name} purchase?"),
            ));
            questions.push(ask(
                rng.chance(50),
                Category::Temporal,
                format!("When did {name} buy the {car}?"),
                format!("When did {name} get a car?"),
            ));
        }
        9 => {
            let sport = *threads.fresh(rng, speaker, "sport", SPORTS);
            turns = vec![
                (0, format!("I twisted my ankle playing {sport} and I'm on crutches for two weeks.")),
                (1, "Ouch, take it easy and rest up.".to_owned()),
            ];
            questions.push(ask(
                overlap,
                Category::SingleHop,
                format!("How did {name} twist {their} ankle?"),
                format!("How did {name} get injured?"),
            ));
        }
        10 => {
            let instrument = *threads.fresh(rng, speaker, "instrument", INSTRUMENTS);
            turns = vec![
                (0, format!("I practise the {instrument} every morning now, my recital is next month.")),
                (1, "I'd love to come and listen.".to_owned()),
            ];
            questions.push(ask(
                overlap,
                Category::SingleHop,
                format!("What does {name} practise every morning for the recital?"),
                format!("What instrument is {name} learning to play?"),
            ));
        }
        11 => {
            let movie = *threads.fresh(rng, speaker, "movie", MOVIES);
            let companion = *threads.fresh(rng, speaker, "companion", COMPANIONS);
            turns = vec![
                (0, format!("We saw '{movie}' at the cinema with {companion}, the soundtrack gave me chills.")),
                (1, reaction(rng, &format!("'{movie}'"))),
            ];
            let companion = companion.replace("my ", &format!("{their} "));
            questions.push(ask(
                overlap,
                Category::SingleHop,
                format!("Which film did {name} see at the cinema with {companion}?"),
                format!("Which movie did {name} watch with {companion}?"),
            ));
            recurring = Some("movie");
        }
        12 => {
            let gift = *threads.fresh(rng, speaker, "gift", GIFTS);
            turns = vec![
                (0, format!("My parents surprised me with a {gift} for my birthday.")),
                (1, format!("Happy belated birthday! A {gift} is such a good present.")),
            ];
            questions.push(ask(
                overlap,
                Category::SingleHop,
                format!("What did {name}'s parents give {} for {their} birthday?", person.object()),
                format!("What present did {name} receive from {their} mom and dad?"),
            ));
            questions.push((Category::Temporal, format!("When is {name}'s birthday?"), vec![0]));
        }
        13 => {
            let (place, task) = *threads.fresh(rng, speaker, "volunteer", VOLUNTEER);
            turns = vec![
                (0, format!("On Saturdays I've been volunteering at the {place}, mostly {task}.")),
                (1, "That's really kind of you.".to_owned()),
            ];
            questions.push(ask(
                overlap,
                Category::SingleHop,
                format!("Where does {name} volunteer on Saturdays?"),
                format!("Where does {name} give {their} time for free at weekends?"),
            ));
        }
        14 => {
            // Each relative belongs to one person of the conversation and has one piece of news,
            // so the later turn that names them answers exactly one question.
            let free: Vec<usize> = (0..RELATIVES.len()).filter(|i| !threads.relatives.contains(i)).collect();
            let news = rng.below(RELATIVE_NEWS.len());
            let (first, _, _) = RELATIVE_NEWS[news];
            match (free.is_empty(), session + 2 < SESSIONS) {
                (false, true) => {
                    let pick = *rng.pick(&free);
                    threads.relatives.push(pick);
                    let (relation, relative) = RELATIVES[pick];
                    turns = vec![
                        (0, format!("My {relation} {relative} {first}.")),
                        (1, format!("Tell {relative} I said congratulations!")),
                    ];
                    let due = session + 2 + rng.below(SESSIONS - session - 2);
                    threads.pending.push(Pending {
                        speaker,
                        relation,
                        name: relative,
                        news,
                        due,
                        intro_turn: String::new(),
                    });
                }
                _ => {
                    turns = vec![
                        (0, "My family is coming over next week, I have to clean everything.".to_owned()),
                        (1, "Good luck with the cleaning!".to_owned()),
                    ];
                }
            }
        }
        _ => {
            let (said, paraphrase, closer) = *threads.fresh(rng, speaker, "preference", PREFERENCES);
            turns = vec![(0, format!("{said}.")), (1, format!("Ha, that's very {name} of you."))];
            questions.push(ask(
                overlap,
                Category::Open,
                format!("Would {name} {closer}?"),
                format!("Would {name} {paraphrase}?"),
            ));
        }
    }
    Event { turns, questions, recurring }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn the_data_set_has_a_thousand_questions_in_every_category_with_known_evidence() {
        let data = dataset();
        let questions: Vec<(&Conversation, &Question)> =
            data.iter().flat_map(|c| c.questions.iter().map(move |q| (c, q))).collect();
        assert!(questions.len() >= 1000, "{} questions", questions.len());
        let mut per_category: HashMap<Category, usize> = HashMap::new();
        for (conversation, question) in &questions {
            *per_category.entry(question.category).or_default() += 1;
            let turns: HashSet<&str> = conversation.turns.iter().map(|turn| turn.id.as_str()).collect();
            assert!(!question.evidence.is_empty(), "{}", question.text);
            for id in &question.evidence {
                assert!(turns.contains(id.as_str()), "{}: evidence {id} is no turn", question.text);
            }
        }
        for category in Category::ALL {
            assert!(per_category.get(&category).copied().unwrap_or(0) >= 60, "{per_category:?}");
        }
    }

    #[test]
    fn the_data_set_is_the_same_on_every_run() {
        let a = dataset();
        let b = dataset();
        assert_eq!(a[3].turns.last().map(Turn::content), b[3].turns.last().map(Turn::content));
        assert_eq!(a[7].questions.len(), b[7].questions.len());
    }

    #[test]
    fn a_multi_hop_answer_turn_names_the_thread_without_its_first_description() {
        let data = dataset();
        let (conversation, question) = data
            .iter()
            .flat_map(|c| c.questions.iter().map(move |q| (c, q)))
            .find(|(_, q)| q.category == Category::MultiHop)
            .unwrap();
        let turns = &conversation.turns;
        let answer = turns.iter().find(|t| t.id == question.evidence[0]).unwrap();
        let intro = turns.iter().find(|t| t.id == question.evidence[1]).unwrap();
        assert!(intro.date < answer.date, "{intro:?} then {answer:?}");
    }
}
