// Spacebot's portal: talks to the daemon's own HTTP API (docs/portal.md). No build step, no
// dependencies; the token, when the daemon asks for one, is kept in sessionStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { agents: [], pending: 0, processesTimer: null, draft: "" };

function token() { return sessionStorage.getItem("spacebot-token") || ""; }

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token()) h.Authorization = "Bearer " + token();
  return h;
}

class LoginNeeded extends Error {}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const res = await fetch(path, opts);
  if (res.status === 401) { showLogin(token() ? "That token was refused." : ""); throw new LoginNeeded(); }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || res.status + " " + res.statusText);
  return body;
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) node.append(child);
  return node;
}

function showLogin(message) {
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

// Tabs.
for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => {
    for (const other of document.querySelectorAll("nav button")) other.classList.toggle("active", other === button);
    for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== button.dataset.tab;
    if (button.dataset.tab === "live") refreshProcesses();
    if (button.dataset.tab === "usage") refreshUsage();
    if (button.dataset.tab === "config") refreshConfig();
  });
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("spacebot-token", $("token").value.trim());
  $("login").hidden = true;
  start();
});

// Chat.
function agent() { return $("agent").value || "main"; }
function conversation() { return $("conversation").value.trim() || "portal"; }

function renderMessages(messages) {
  const list = $("messages");
  list.replaceChildren(...messages.map((m) =>
    el("li", { className: m.role === "user" ? "user" : "assistant" },
      el("span", { className: "who", textContent: (m.role === "user" ? m.sender : agent()) + " · " + m.created_at.slice(11, 19) }),
      m.text)));
  if (state.draft) renderDraft();
  list.lastElementChild?.scrollIntoView({ block: "end" });
}

// The reply being written, from the event stream's reply_delta events; the stored reply
// replaces it when it is sent, and reply_discarded takes it back.
function renderDraft() {
  let item = $("messages").querySelector("li.draft");
  if (!state.draft) { item?.remove(); return; }
  if (!item) {
    item = el("li", { className: "assistant draft" }, el("span", { className: "who", textContent: agent() + " · writing…" }), el("span"));
    $("messages").append(item);
  }
  item.lastElementChild.textContent = state.draft;
  item.scrollIntoView({ block: "end" });
}

async function refreshMessages() {
  try {
    const messages = await api(`/api/agents/${encodeURIComponent(agent())}/conversations/${encodeURIComponent("webhook:" + conversation())}/messages?limit=200`);
    renderMessages(messages);
  } catch (error) {
    if (!(error instanceof LoginNeeded)) $("thinking").textContent = "can't read the conversation: " + error.message;
  }
}

$("send").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  sessionStorage.setItem("spacebot-conversation", conversation());
  // Before the request: with a fast model the turn can be over before the POST returns.
  setThinking(true);
  try {
    await api(`/webhook/${encodeURIComponent(agent())}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ conversation: conversation(), sender: $("sender").value.trim() || "portal", text }),
    });
    await refreshMessages();
    pollUntilAnswered();
  } catch (error) {
    setThinking(false);
    if (!(error instanceof LoginNeeded)) { $("thinking").hidden = false; $("thinking").textContent = "not sent: " + error.message; }
  }
});

function setThinking(on) {
  $("thinking").textContent = "thinking…";
  $("thinking").hidden = !on;
}

// Replies arrive through the event stream; a token without access to it (or a dropped stream)
// still sees them, by reading the conversation until the turn is over.
async function pollUntilAnswered() {
  const ticket = ++state.pending;
  for (let i = 0; i < 120 && ticket === state.pending; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await refreshMessages();
    const items = $("messages").children;
    if (items.length && items[items.length - 1].className === "assistant") { setThinking(false); return; }
  }
}

for (const id of ["agent", "conversation"]) $(id).addEventListener("change", refreshMessages);

// Live: processes and the event stream.
function seconds(s) { return s == null ? "–" : s < 60 ? s + " s" : Math.floor(s / 60) + " min " + (s % 60) + " s"; }

async function refreshProcesses() {
  try {
    const status = await api("/api/status");
    $("summary").textContent = `${status.agents.length} agent(s), ${status.conversations} conversation(s), adapters: ${status.adapters.join(", ")}, up ${seconds(status.uptime_seconds)}`;
    $("processes").replaceChildren(...status.processes.map((p) => el("tr", {},
      el("td", { textContent: p.agent }), el("td", { textContent: p.conversation }), el("td", { textContent: p.kind }),
      el("td", { textContent: p.description || "" }), el("td", { textContent: seconds(p.running_seconds) }),
      el("td", { textContent: seconds(p.limit_seconds) }),
      el("td", {}, cancelButton(p)))));
    if (!status.processes.length) $("processes").replaceChildren(el("tr", {}, el("td", { colSpan: 7, textContent: "nothing running" })));
  } catch (error) {
    if (!(error instanceof LoginNeeded)) $("summary").textContent = "status unavailable: " + error.message;
  }
}

function cancelButton(p) {
  const button = el("button", { textContent: "cancel", title: "end this " + p.kind });
  button.addEventListener("click", async () => {
    button.disabled = true;
    try { await api(`/api/processes/${encodeURIComponent(p.process)}/cancel`, { method: "POST" }); }
    catch (error) { if (!(error instanceof LoginNeeded)) button.textContent = error.message; }
    refreshProcesses();
  });
  return button;
}

function describe(event) {
  const where = [event.agent, event.conversation].filter(Boolean).join(" ");
  switch (event.type) {
    case "response_sent": return `${where}: sent ${event.response.type}${event.response.text ? ": " + event.response.text.slice(0, 80) : ""}`;
    case "turn_finished": return `${where}: turn ${event.outcome}`;
    default: return `${where}: ${event.type}${event.kind ? " " + event.kind : ""}`;
  }
}

function onEvent(event) {
  const mine = event.agent === agent() && event.conversation === "webhook:" + conversation();
  if (event.type === "reply_delta" || event.type === "reply_discarded") {
    // Previews are not logged: a reply would fill the log a word at a time.
    if (mine) { state.draft = event.type === "reply_delta" ? state.draft + event.text : ""; renderDraft(); }
    return;
  }
  const log = $("events");
  log.prepend(el("li", { textContent: new Date().toLocaleTimeString() + " " + describe(event) }));
  while (log.children.length > 200) log.lastElementChild.remove();
  if (mine && event.type === "turn_started") setThinking(true);
  if (mine && (event.type === "response_sent" || event.type === "turn_finished")) {
    state.draft = "";
    refreshMessages();
    if (event.type === "turn_finished") { state.pending++; setThinking(false); }
  }
  if (!$("live").hidden) {
    clearTimeout(state.processesTimer);
    state.processesTimer = setTimeout(refreshProcesses, 200);
  }
}

async function follow() {
  for (;;) {
    try {
      const res = await fetch("/api/events", { headers: headers() });
      if (res.status === 401) { showLogin(""); return; }
      if (!res.ok) { $("link").textContent = "no live events (" + res.status + ")"; return; }
      $("link").textContent = "live";
      $("link").classList.add("up");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
          if (data) { try { onEvent(JSON.parse(data)); } catch (_) { /* a keep-alive or a foreign line */ } }
        }
      }
    } catch (_) { /* reconnect below */ }
    $("link").textContent = "reconnecting";
    $("link").classList.remove("up");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// Memory.
function memoryPath(suffix) { return `/api/agents/${encodeURIComponent(agent())}/memories${suffix}`; }

function scopeText(scope) {
  if (!scope || typeof scope !== "object") return scope || "";
  if (scope.private) return "private to " + (scope.human || "its conversation");
  return scope.human ? "shared, about " + scope.human : "shared";
}

$("recall").addEventListener("submit", async (event) => {
  event.preventDefault();
  const params = new URLSearchParams({ limit: "20" });
  for (const [name, field] of [["q", "query"], ["type", "kind"], ["person", "person"]]) {
    const value = $(field).value.trim();
    if (value) params.set(name, value);
  }
  try {
    const result = await api(memoryPath("?" + params));
    $("hits").replaceChildren(...result.hits.map((hit) => {
      const memory = hit.memory || hit;
      const meta = [memory.kind, scopeText(memory.scope), hit.score ? "score " + Number(hit.score).toFixed(3) : ""].filter(Boolean).join(" · ");
      const item = el("li", {}, el("div", { textContent: memory.content || JSON.stringify(hit) }), el("div", { className: "meta", textContent: meta }));
      if (memory.id) {
        const links = el("button", { textContent: "links", className: "links" });
        links.addEventListener("click", () => showGraph(memory.id));
        const forget = el("button", { textContent: "forget", className: "forget" });
        forget.addEventListener("click", async () => {
          forget.disabled = true;
          try {
            await api(memoryPath("/" + encodeURIComponent(memory.id)), { method: "DELETE" });
            item.classList.add("forgotten");
            forget.textContent = "forgotten";
          } catch (error) { if (!(error instanceof LoginNeeded)) forget.textContent = error.message; }
        });
        item.querySelector(".meta").append(" ", links, " ", forget);
      }
      return item;
    }));
    if (!result.hits.length) $("hits").replaceChildren(el("li", { textContent: "nothing found" }));
  } catch (error) {
    if (!(error instanceof LoginNeeded)) $("hits").replaceChildren(el("li", { className: "error", textContent: error.message }));
  }
});

function svg(tag, attributes, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text != null) node.textContent = text;
  return node;
}

function clip(text, length) { return text.length > length ? text.slice(0, length - 1) + "…" : text; }

// A memory in the middle, the memories it is linked to around it, each line labelled with the
// relation (an arrow from source to target); clicking a neighbour centres the graph on it.
async function showGraph(id) {
  try {
    const shown = await api(memoryPath("/" + encodeURIComponent(id)));
    $("graph-box").hidden = false;
    $("graph-title").textContent = clip(shown.memory.content, 80) + ` (${shown.edges.length} link${shown.edges.length === 1 ? "" : "s"})`;
    const center = { x: 180, y: 112 };
    const nodes = [svg("g", { class: "node center" })];
    nodes[0].append(svg("circle", { cx: center.x, cy: center.y, r: 10 }), svg("text", { x: center.x, y: center.y + 24, "text-anchor": "middle" }, clip(shown.memory.content, 36)));
    const lines = shown.edges.map((edge, index) => {
      const angle = (2 * Math.PI * index) / shown.edges.length - Math.PI / 2;
      const at = { x: center.x + 120 * Math.cos(angle), y: center.y + 80 * Math.sin(angle) };
      const outgoing = edge.source === shown.memory.id;
      const other = edge.other || { id: outgoing ? edge.target : edge.source, content: "(unknown memory)" };
      const node = svg("g", { class: "node" + (other.forgotten ? " forgotten" : "") });
      node.append(svg("circle", { cx: at.x, cy: at.y, r: 7 }), svg("text", { x: at.x, y: at.y < center.y ? at.y - 12 : at.y + 20, "text-anchor": "middle" }, clip(other.content, 28)));
      node.addEventListener("click", () => showGraph(other.id));
      nodes.push(node);
      const label = outgoing ? edge.kind + " →" : "← " + edge.kind;
      const group = svg("g", { class: "edge" });
      group.append(svg("line", { x1: center.x, y1: center.y, x2: at.x, y2: at.y }), svg("text", { x: (center.x + at.x) / 2, y: (center.y + at.y) / 2 - 4, "text-anchor": "middle" }, label));
      return group;
    });
    $("graph").replaceChildren(...lines, ...nodes);
  } catch (error) {
    if (!(error instanceof LoginNeeded)) $("graph-title").textContent = error.message;
  }
}

// Config.
async function refreshConfig() {
  try {
    $("config-json").textContent = JSON.stringify(await api("/api/config"), null, 2);
  } catch (error) {
    if (!(error instanceof LoginNeeded)) $("config-json").textContent = error.message;
  }
}

// Usage.
async function refreshUsage() {
  try {
    const usage = await api("/api/usage?days=30");
    $("usage-rows").replaceChildren(...usage.rows.map((r) => el("tr", {},
      ...[r.day, r.agent, r.model, r.process, r.requests, r.input_tokens, r.output_tokens, r.cost_usd == null ? "–" : "$" + r.cost_usd.toFixed(4)]
        .map((v) => el("td", { textContent: String(v) })))));
    plot(usage.rows);
  } catch (error) {
    if (!(error instanceof LoginNeeded)) $("usage-rows").replaceChildren(el("tr", {}, el("td", { colSpan: 8, textContent: error.message })));
  }
  try {
    plotLatency((await api("/api/turns")).turns);
  } catch (error) {
    if (!(error instanceof LoginNeeded)) $("latency-summary").textContent = error.message;
  }
}

// Each recent turn as a dot: when it ended (x) and how long it took (y); failed turns in red.
function plotLatency(turns) {
  const seconds = turns.map((t) => t.seconds).sort((a, b) => a - b);
  const quantile = (q) => seconds[Math.min(seconds.length - 1, Math.floor(q * seconds.length))];
  $("latency-summary").textContent = turns.length
    ? `${turns.length} recent turn${turns.length === 1 ? "" : "s"}: median ${quantile(0.5).toFixed(2)} s, p95 ${quantile(0.95).toFixed(2)} s, slowest ${seconds[seconds.length - 1].toFixed(2)} s`
    : "no turns since the daemon started";
  const times = turns.map((t) => Date.parse(t.at));
  const [first, last] = [Math.min(...times), Math.max(...times)];
  const top = Math.max(0.001, seconds[seconds.length - 1] || 1);
  const dots = turns.map((t, i) => {
    const x = 20 + (last > first ? ((times[i] - first) / (last - first)) * 570 : 285);
    const dot = svg("circle", { cx: x, cy: 140 - (t.seconds / top) * 125, r: 5, class: t.outcome });
    dot.append(svg("title", {}, `${t.at} ${t.agent} ${t.conversation}: ${t.outcome} in ${t.seconds.toFixed(3)} s`));
    return dot;
  });
  const axis = [svg("line", { x1: 15, y1: 140, x2: 595, y2: 140 }), svg("text", { x: 18, y: 12 }, top.toFixed(2) + " s")];
  $("latency").replaceChildren(...axis, ...dots);
}

function plot(rows) {
  const byDay = new Map();
  for (const r of rows) byDay.set(r.day, (byDay.get(r.day) || 0) + r.input_tokens + r.output_tokens);
  const days = [...byDay.keys()].sort();
  const svg = $("plot");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const max = Math.max(1, ...byDay.values());
  const width = 600 / Math.max(days.length, 1);
  days.forEach((day, i) => {
    const h = (byDay.get(day) / max) * 130;
    const bar = document.createElementNS(ns, "rect");
    for (const [k, v] of Object.entries({ x: i * width + 2, y: 140 - h, width: Math.max(width - 4, 1), height: h })) bar.setAttribute(k, v);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${day}: ${byDay.get(day)} tokens`;
    bar.append(title);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", i * width + 2);
    label.setAttribute("y", 155);
    label.textContent = day.slice(5);
    svg.append(bar, label);
  });
}

async function start() {
  try {
    const status = await api("/api/status");
    state.agents = status.agents;
  } catch (error) {
    if (error instanceof LoginNeeded) return;
    // A scoped token without daemon-wide access still chats with the agent it names.
    state.agents = ["main"];
  }
  $("agent").replaceChildren(...state.agents.map((a) => el("option", { value: a, textContent: a })));
  $("conversation").value = sessionStorage.getItem("spacebot-conversation") || "portal-" + Math.random().toString(36).slice(2, 8);
  refreshMessages();
  follow();
}

start();
