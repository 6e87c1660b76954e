// Drives the portal in headless Chromium (playwright-core with the system's Chromium), as a person
// would: sign in with the token, send a message, see the reply, look at the live view, search
// memory, open the usage plot. Prints one JSON line of figures; exits non-zero on any failure.
//
// Environment: SPACEBOT_URL, SPACEBOT_TOKEN, SPACEBOT_CHROMIUM (the browser), SPACEBOT_SHOTS (a
// directory for screenshots), SPACEBOT_EXPECT (text the fake model replies with).
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.SPACEBOT_NPM_DIR, "node_modules", "x.js"));
const { chromium } = require("playwright-core");

const base = process.env.SPACEBOT_URL;
const shots = process.env.SPACEBOT_SHOTS;
const browser = await chromium.launch({
  executablePath: process.env.SPACEBOT_CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const figures = {};
try {
  // A phone-sized screen: the portal must be usable there.
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  // Every failed request, but the 401s of the wrong token and of the first, token-less call.
  page.on("response", (response) => {
    if (response.status() >= 400 && response.status() !== 401) errors.push(`${response.status()} ${response.url()}`);
  });

  const started = Date.now();
  await page.goto(base + "/", { waitUntil: "load" });
  figures.load_ms = Date.now() - started;
  const timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const resources = performance.getEntriesByType("resource");
    return {
      interactive_ms: Math.round(nav.domInteractive),
      bytes: nav.encodedBodySize + resources.filter((r) => !r.name.includes("/api/")).reduce((sum, r) => sum + r.encodedBodySize, 0),
    };
  });
  Object.assign(figures, timing);

  // The daemon has a token: the portal asks for it.
  await page.waitForSelector("#login:not([hidden])", { timeout: 10000 });
  await page.screenshot({ path: path.join(shots, "1-login.png") });
  await page.fill("#token", "wrong-token-0000");
  await page.click("#login button");
  await page.waitForSelector("#login:not([hidden])");
  await page.waitForFunction(() => document.getElementById("login-error").textContent.includes("refused"));
  await page.fill("#token", process.env.SPACEBOT_TOKEN);
  await page.click("#login button");
  await page.waitForSelector("#agent option[value=main]", { state: "attached", timeout: 10000 });
  await page.waitForFunction(() => document.getElementById("link").textContent === "live", null, { timeout: 10000 });

  // Chat: the message and the fake model's reply appear.
  await page.fill("#text", "hello from the browser");
  const sent = Date.now();
  await page.click("#send button");
  await page.waitForSelector("#messages li.user >> text=hello from the browser", { timeout: 10000 });
  await page.waitForSelector(`#messages li.assistant >> text=${process.env.SPACEBOT_EXPECT}`, { timeout: 20000 });
  figures.reply_ms = Date.now() - sent;
  await page.waitForSelector("#thinking", { state: "hidden", timeout: 5000 });

  // A slow reply is shown as it is written (a draft from the event stream's reply_delta events),
  // then replaced by the reply itself.
  const slow = process.env.SPACEBOT_SLOW;
  await page.fill("#text", "answer slowly please");
  const asked = Date.now();
  await page.click("#send button");
  await page.waitForFunction((words) => {
    const draft = document.querySelector("#messages li.draft");
    return draft && draft.textContent.includes(words);
  }, slow.split(" ").slice(0, 2).join(" "), { timeout: 20000 });
  figures.preview_ms = Date.now() - asked;
  const partial = await page.textContent("#messages li.draft");
  if (partial.includes(slow)) throw new Error("the draft showed the whole reply at once: " + partial);
  await page.screenshot({ path: path.join(shots, "2-chat-writing.png") });
  await page.waitForFunction((text) => [...document.querySelectorAll("#messages li.assistant:not(.draft)")]
    .some((li) => li.textContent.includes(text)), slow, { timeout: 20000 });
  figures.slow_reply_ms = Date.now() - asked;
  await page.waitForSelector("#messages li.draft", { state: "detached", timeout: 5000 });
  await page.screenshot({ path: path.join(shots, "2-chat.png") });

  // Live: the daemon's summary and the event log with this turn's events.
  await page.click("nav button[data-tab=live]");
  await page.waitForFunction(() => document.getElementById("summary").textContent.includes("agent(s)"), null, { timeout: 10000 });
  await page.waitForFunction(() => document.getElementById("events").textContent.includes("turn replied"), null, { timeout: 10000 });
  await page.screenshot({ path: path.join(shots, "3-live.png") });

  // Memory: a search answers (a list item, hits or "nothing found").
  await page.click("nav button[data-tab=memory]");
  await page.fill("#query", "browser");
  await page.click("#recall button");
  await page.waitForSelector("#hits li", { timeout: 10000 });
  const hitsError = await page.$("#hits li.error");
  if (hitsError) throw new Error("memory search failed: " + (await hitsError.textContent()));
  // Filtered by type with no query: the newest decisions, which is the linked memory alone.
  await page.fill("#query", "");
  await page.selectOption("#kind", "decision");
  await page.click("#recall button");
  await page.waitForFunction((text) => {
    const items = document.querySelectorAll("#hits li");
    return items.length === 1 && items[0].textContent.includes(text);
  }, process.env.SPACEBOT_LINKED, { timeout: 10000 });
  // Its links drawn: the memory, the one it is part of, the relation on the line between.
  await page.click("#hits li button.links");
  await page.waitForFunction(() => document.querySelectorAll("#graph .node").length === 2
    && document.querySelector("#graph .edge text").textContent === "part_of →", null, { timeout: 10000 });
  await page.screenshot({ path: path.join(shots, "4-memory.png") });
  // A neighbour clicked is centred, with the relation seen from its side.
  await page.click("#graph .node:not(.center) circle");
  await page.waitForFunction((text) => document.querySelector("#graph .center text").textContent === text
    && document.querySelector("#graph .edge text").textContent === "← part_of", process.env.SPACEBOT_MEMORY, { timeout: 10000 });
  // A memory saved for the test is found and forgotten.
  await page.selectOption("#kind", "");
  await page.fill("#query", process.env.SPACEBOT_MEMORY);
  await page.click("#recall button");
  await page.waitForSelector(`#hits li >> text=${process.env.SPACEBOT_MEMORY}`, { timeout: 10000 });
  await page.click(`#hits li:has-text("${process.env.SPACEBOT_MEMORY}") button.forget`);
  await page.waitForSelector("#hits li.forgotten", { timeout: 10000 });

  // Usage: the turn's model call is a row and a bar.
  await page.click("nav button[data-tab=usage]");
  await page.waitForSelector("#usage-rows tr td", { timeout: 10000 });
  await page.waitForSelector("#plot rect", { state: "attached", timeout: 10000 });
  // The chat's turn is a dot on the latency plot, summarised above it.
  await page.waitForSelector("#latency circle.replied", { state: "attached", timeout: 10000 });
  await page.waitForFunction(() => /^\d+ recent turns?: median [0-9.]+ s/.test(document.getElementById("latency-summary").textContent), null, { timeout: 10000 });
  await page.screenshot({ path: path.join(shots, "5-usage.png") });

  // Config: the effective settings, the model's key redacted.
  await page.click("nav button[data-tab=config]");
  await page.waitForFunction(() => document.getElementById("config-json").textContent.includes('"api_key": "[redacted]"'), null, { timeout: 10000 });
  const configText = await page.textContent("#config-json");
  if (configText.includes(process.env.SPACEBOT_TOKEN)) throw new Error("the config view shows the API token");
  await page.screenshot({ path: path.join(shots, "6-config.png") });

  // Signed in for the tab's session: a reload doesn't ask again.
  await page.reload({ waitUntil: "load" });
  await page.waitForSelector("#agent option[value=main]", { state: "attached", timeout: 10000 });
  if (await page.isVisible("#login")) throw new Error("the token was asked for again after a reload");

  if (errors.length) throw new Error("errors in the page: " + errors.join("; "));
  console.log(JSON.stringify(figures));
} finally {
  await browser.close();
}
