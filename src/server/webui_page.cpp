// The built-in web UI served at "/" (serve --no-webui turns it off): one page
// of plain HTML, CSS and JavaScript, no libraries. It chats through the
// server's own /v1/chat/completions with streaming, shows the reasoning of
// thinking models apart from the answer, reports tokens per second from the
// timings, and keeps the conversation and settings in the browser's local
// storage. Answers stream as resumable streams, so a reload mid-answer
// replays it (the server finishes it meanwhile). Text is inserted as text,
// never as HTML.
#include "server/webui_page.h"

namespace moeserve {
namespace {

constexpr const char* kPage = R"moeserve_page(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>moeserve</title>
<style>
  :root { --bg: #f7f7f8; --panel: #fff; --text: #1d1d1f; --muted: #6e6e73; --accent: #2f6fde; --border: #dcdce0; }
  @media (prefers-color-scheme: dark) {
    :root { --bg: #17171a; --panel: #222226; --text: #ececf1; --muted: #9a9aa3; --accent: #6b9cff; --border: #36363c; }
  }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.5 system-ui, sans-serif; background: var(--bg); color: var(--text);
         display: flex; flex-direction: column; height: 100vh; }
  header { display: flex; align-items: center; gap: 12px; padding: 8px 16px; border-bottom: 1px solid var(--border);
           background: var(--panel); }
  header h1 { font-size: 16px; margin: 0; }
  #model { color: var(--muted); font-size: 13px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; flex: 1; }
  button { font: inherit; padding: 6px 12px; border-radius: 6px; border: 1px solid var(--border);
           background: var(--panel); color: var(--text); cursor: pointer; }
  button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
  button:disabled { opacity: .5; cursor: default; }
  main { flex: 1; overflow-y: auto; padding: 16px; }
  .msg { max-width: 860px; margin: 0 auto 14px; padding: 10px 14px; border-radius: 8px; background: var(--panel);
         border: 1px solid var(--border); white-space: pre-wrap; overflow-wrap: anywhere; }
  .msg.user { background: transparent; }
  .msg .who { font-size: 12px; color: var(--muted); margin-bottom: 4px; }
  .msg details { color: var(--muted); margin-bottom: 6px; }
  .msg .stats { font-size: 12px; color: var(--muted); margin-top: 6px; }
  .msg.error { border-color: #d33; color: #d33; }
  #settings { display: none; max-width: 860px; margin: 0 auto 14px; padding: 12px; background: var(--panel);
              border: 1px solid var(--border); border-radius: 8px; }
  #settings.open { display: grid; grid-template-columns: max-content 1fr; gap: 8px 12px; align-items: center; }
  #settings textarea, #settings input { font: inherit; width: 100%; padding: 6px; border-radius: 6px;
              border: 1px solid var(--border); background: var(--bg); color: var(--text); }
  footer { padding: 10px 16px; border-top: 1px solid var(--border); background: var(--panel); }
  footer form { display: flex; gap: 8px; max-width: 860px; margin: 0 auto; }
  footer textarea { flex: 1; font: inherit; resize: none; min-height: 44px; max-height: 200px; padding: 10px;
                    border-radius: 8px; border: 1px solid var(--border); background: var(--bg); color: var(--text); }
</style>
</head>
<body>
<header>
  <h1>moeserve</h1>
  <span id="model">connecting…</span>
  <button id="settings-button" type="button">Settings</button>
  <button id="new-chat" type="button">New chat</button>
</header>
<main id="log">
  <section id="settings">
    <label for="system">System prompt</label><textarea id="system" rows="2"></textarea>
    <label for="temperature">Temperature</label><input id="temperature" type="number" min="0" max="2" step="0.05">
    <label for="max-tokens">Max tokens (-1: no limit)</label><input id="max-tokens" type="number" min="-1" step="1">
    <label for="api-key">API key (--api-key)</label><input id="api-key" type="password" autocomplete="off">
  </section>
</main>
<footer>
  <form id="form">
    <textarea id="input" placeholder="Message (Enter to send, Shift+Enter for a new line)" rows="1"></textarea>
    <button id="send" class="primary" type="submit">Send</button>
  </form>
</footer>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const store = {
  get(key, fallback) { try { const v = localStorage.getItem("moeserve." + key); return v === null ? fallback : JSON.parse(v); } catch { return fallback; } },
  set(key, value) { try { localStorage.setItem("moeserve." + key, JSON.stringify(value)); } catch { /* private mode */ } },
};
const settings = Object.assign({ system: "", temperature: 0.7, maxTokens: -1, apiKey: "" }, store.get("settings", {}));
let messages = store.get("messages", []);  // {role, content, reasoning?, stats?}
let controller = null;
// Answers stream as resumable streams (X-Conversation-Id): if the page goes away
// mid-answer, the server finishes it and the next load replays it from
// v1/stream. `streaming` is the id of the answer in progress, kept in storage.
let streaming = null;

function newStreamId() {
  const rnd = globalThis.crypto && crypto.randomUUID ? crypto.randomUUID() : Math.random().toString(36).slice(2) + Date.now().toString(36);
  return "webui-" + rnd;
}
// A stop: without a reader the server would go on, so it is told to stop.
function cancelStream(id) {
  fetch("v1/stream?conv_id=" + encodeURIComponent(id), { method: "DELETE", headers: headers() }).catch(() => {});
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if (settings.apiKey) h["Authorization"] = "Bearer " + settings.apiKey;
  return h;
}

// One message box; returns the elements a stream updates.
function addBox(role, text, reasoning, stats) {
  const box = document.createElement("div");
  box.className = "msg " + role;
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = role === "user" ? "You" : role === "error" ? "Error" : "Assistant";
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "Reasoning";
  const thought = document.createElement("div");
  details.append(summary, thought);
  details.hidden = !reasoning;
  thought.textContent = reasoning || "";
  const body = document.createElement("div");
  body.textContent = text || "";
  const foot = document.createElement("div");
  foot.className = "stats";
  foot.textContent = stats || "";
  box.append(who, details, body, foot);
  $("log").append(box);
  box.scrollIntoView({ block: "end" });
  return { box, details, thought, body, foot };
}

function render() {
  for (const el of [...$("log").querySelectorAll(".msg")]) el.remove();
  for (const m of messages) addBox(m.role, m.content, m.reasoning, m.stats);
}

function statsOf(timings) {
  if (!timings) return "";
  const f = (x) => (x || 0).toFixed(1);
  return `${timings.predicted_n} tokens, ${f(timings.predicted_per_second)} tokens/s · prompt ${timings.prompt_n} tokens, ${f(timings.prompt_per_second)} tokens/s`;
}

// Reads an SSE body, calling onEvent with each JSON payload until [DONE].
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

// Streams one answer into a new box and saves it when it ends. request(signal)
// is the fetch; resuming: a replay after a reload (a stream the server has
// forgotten just leaves nothing).
async function receive(request, resuming) {
  const answer = { role: "assistant", content: "", reasoning: "" };
  const view = addBox("assistant", "");
  controller = new AbortController();
  $("send").textContent = "Stop";
  try {
    const response = await request(controller.signal);
    if (resuming && response.status === 404) { view.box.remove(); return; }
    if (!response.ok) {
      const err = await response.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || `HTTP ${response.status}`);
    }
    await readEvents(response, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
      if (delta.reasoning_content) { answer.reasoning += delta.reasoning_content; view.details.hidden = false; view.thought.textContent = answer.reasoning; }
      if (delta.content) { answer.content += delta.content; view.body.textContent = answer.content; }
      if (chunk.timings) { answer.stats = statsOf(chunk.timings); view.foot.textContent = answer.stats; }
      view.box.scrollIntoView({ block: "end" });
    });
  } catch (e) {
    if (e.name !== "AbortError") {
      addBox("error", String(e.message || e));
      if (/api key/i.test(String(e.message))) $("settings").classList.add("open");
    }
  } finally {
    controller = null;
    streaming = null;
    $("send").textContent = "Send";
    if (answer.content || answer.reasoning) messages.push(answer);
    store.set("messages", messages);
    store.set("streaming", null);
  }
}

function send(text) {
  messages.push({ role: "user", content: text });
  addBox("user", text);
  const history = [];
  if (settings.system) history.push({ role: "system", content: settings.system });
  for (const m of messages) history.push({ role: m.role, content: m.content });
  streaming = newStreamId();
  store.set("messages", messages);
  store.set("streaming", streaming);
  const id = streaming;
  return receive((signal) => fetch("v1/chat/completions", {
    method: "POST", headers: Object.assign(headers(), { "X-Conversation-Id": id }), signal,
    body: JSON.stringify({ messages: history, stream: true, temperature: Number(settings.temperature),
                           max_tokens: Number(settings.maxTokens) || -1, timings_per_token: false }),
  }), false);
}

function stop() {
  if (streaming) {
    const id = streaming;
    cancelStream(id);
    // A stop right after sending can beat the request to the server; ask once more.
    setTimeout(() => cancelStream(id), 1000);
  }
  if (controller) controller.abort();
}

$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (controller) { stop(); return; }
  const text = $("input").value.trim();
  if (!text) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("form").requestSubmit(); }
});
$("new-chat").addEventListener("click", () => { stop(); messages = []; store.set("messages", messages); render(); });
$("settings-button").addEventListener("click", () => $("settings").classList.toggle("open"));
for (const [id, key] of [["system", "system"], ["temperature", "temperature"], ["max-tokens", "maxTokens"], ["api-key", "apiKey"]]) {
  $(id).value = settings[key];
  $(id).addEventListener("change", () => { settings[key] = $(id).value; store.set("settings", settings); loadModel(); });
}

async function loadModel() {
  try {
    const models = await (await fetch("v1/models", { headers: headers() })).json();
    const m = models.data && models.data[0];
    $("model").textContent = m ? `${m.id}${m.meta && m.meta.n_ctx_train ? " · trained context " + m.meta.n_ctx_train : ""}` : "no model";
  } catch {
    $("model").textContent = "server unreachable";
  }
}
render();
loadModel();
// An answer that was streaming when the page went away: replay it.
const unfinished = store.get("streaming", null);
if (unfinished) {
  streaming = unfinished;
  receive((signal) => fetch("v1/stream?conv_id=" + encodeURIComponent(unfinished), { headers: headers(), signal }), true);
}
</script>
</body>
</html>
)moeserve_page";

}  // namespace

std::string_view webui_page() {
    return kPage;
}

}  // namespace moeserve
