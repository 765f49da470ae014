// The built-in chat page's script, run against the real server without a
// browser: the page is fetched from "/", its script evaluated over a small
// DOM stand-in (elements with text, values, classes and listeners; local
// storage in memory), and a message is sent the way a user sends one. The
// answer must stream into the assistant's box, the stats line must show the
// server's timings, the conversation must be saved, and a stop must abort.
// usage: node webui_smoke.mjs BASE_URL   (BASE_URL ends with "/")
import assert from "node:assert/strict";

const base = process.argv[2];
const page = await (await fetch(base)).text();
const script = page.slice(page.indexOf("<script>") + 8, page.lastIndexOf("</script>"));

class Element {
  constructor(id = "") {
    this.id = id; this.children = []; this.listeners = {}; this.hidden = false; this.value = "";
    this._text = ""; this.className = "";
    const classes = new Set();
    this.classList = { add: (c) => classes.add(c), remove: (c) => classes.delete(c),
                       toggle: (c) => (classes.has(c) ? classes.delete(c) : classes.add(c)), contains: (c) => classes.has(c) };
  }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  set textContent(t) { this._text = String(t); this.children = []; }
  append(...els) { for (const e of els) { e.parent = this; this.children.push(e); } }
  remove() { if (this.parent) this.parent.children = this.parent.children.filter((c) => c !== this); }
  querySelectorAll(sel) {  // ".msg": the message boxes
    const cls = sel.slice(1);
    const out = [];
    const walk = (e) => { for (const c of e.children) { if (c.className.split(" ").includes(cls)) out.push(c); walk(c); } };
    walk(this);
    return out;
  }
  addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); }
  dispatch(type, event = {}) { for (const fn of this.listeners[type] || []) fn({ preventDefault() {}, ...event }); }
  requestSubmit() { this.dispatch("submit"); }
  scrollIntoView() {}
}
// One load of the page: its own DOM over the browser's storage (`memory`, shared
// by every load). close() is what leaving the page does to it: nothing it
// still runs can write the storage any more.
const memory = new Map();
function openPage() {
  const ids = {};
  const document = {
    getElementById: (id) => (ids[id] ||= new Element(id)),
    createElement: () => new Element(),
  };
  let open = true;
  const localStorage = { getItem: (k) => (memory.has(k) ? memory.get(k) : null),
                         setItem: (k, v) => { if (open) memory.set(k, String(v)); } };
  const pageFetch = (url, init = {}) => {
    requests.push(`${init.method || "GET"} ${url}`);
    return fetch(new URL(url, base), init);
  };
  new Function("document", "localStorage", "fetch", script)(document, localStorage, pageFetch);
  return { document, close: () => { open = false; } };
}
const requests = [];  // what the pages asked the server, "METHOD url"
const first = openPage();
let document = first.document;

const boxes = () => document.getElementById("log").querySelectorAll(".msg");
const settle = async () => { for (let i = 0; i < 600 && document.getElementById("send").textContent !== "Send"; ++i) await new Promise((r) => setTimeout(r, 50)); };
await new Promise((r) => setTimeout(r, 300));  // loadModel
assert.ok(document.getElementById("model").textContent.includes(".gguf"), document.getElementById("model").textContent);

// Settings: a token limit, as a user would set it, and greedy answers (a sampled
// one could end before the limit).
document.getElementById("max-tokens").value = "12";
document.getElementById("max-tokens").dispatch("change");
document.getElementById("temperature").value = "0";
document.getElementById("temperature").dispatch("change");
document.getElementById("input").value = "Hello there";
document.getElementById("form").dispatch("submit");
assert.equal(document.getElementById("send").textContent, "Stop", "the button stops a running answer");
await settle();
const [user, assistant] = boxes();
assert.ok(user.textContent.includes("Hello there"));
const answerText = assistant.children[2].textContent;
assert.ok(answerText.length > 0, "the answer streamed into the assistant's box");
assert.match(assistant.children[3].textContent, /^12 tokens, [0-9.]+ tokens\/s · prompt \d+ tokens/);
const saved = JSON.parse(memory.get("moeserve.messages"));
assert.deepEqual(saved.map((m) => m.role), ["user", "assistant"]);
assert.equal(saved[1].content, answerText);

// A second turn carries the first; a stop right after sending aborts without an error box.
document.getElementById("max-tokens").value = "2000";
document.getElementById("max-tokens").dispatch("change");
document.getElementById("input").value = "Go on";
document.getElementById("form").dispatch("submit");
const stoppedId = JSON.parse(memory.get("moeserve.streaming"));
assert.match(stoppedId, /^webui-/, "the answer streams under a conversation id");
for (let i = 0; i < 200 && !boxes().at(-1).children[2].textContent; ++i) await new Promise((r) => setTimeout(r, 5));
document.getElementById("form").dispatch("submit");  // Stop, while the answer runs
await settle();
assert.equal(boxes().filter((b) => b.className.includes("error")).length, 0, "a stop is not an error");
// The server would finish a resumable answer without its reader: a stop tells it to stop.
assert.ok(requests.includes(`DELETE v1/stream?conv_id=${stoppedId}`), requests.join("\n"));
const lookup = async (id) => (await (await fetch(new URL("v1/streams/lookup", base), {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ conversation_ids: [id] }) })).json());

// New chat clears the conversation.
document.getElementById("new-chat").dispatch("click");
assert.equal(boxes().length, 0);
assert.deepEqual(JSON.parse(memory.get("moeserve.messages")), []);
// A reload mid-answer: the next load of the page replays the answer, which the
// server finished without a reader, from the start.
document.getElementById("max-tokens").value = "300";
document.getElementById("max-tokens").dispatch("change");
document.getElementById("input").value = "Tell me more";
document.getElementById("form").dispatch("submit");
const resumedId = JSON.parse(memory.get("moeserve.streaming"));
await new Promise((r) => setTimeout(r, 100));
first.close();
document = openPage().document;
await settle();
const [asked, resumed] = boxes();
assert.ok(asked.textContent.includes("Tell me more"), "the question was saved before the reload");
assert.ok(resumed.children[2].textContent.length > 0, "the answer came back after the reload");
assert.match(resumed.children[3].textContent, /^\d+ tokens, [0-9.]+ tokens\/s/);
const after = JSON.parse(memory.get("moeserve.messages"));
assert.deepEqual(after.map((m) => m.role), ["user", "assistant"]);
assert.equal(after[1].content, resumed.children[2].textContent);
assert.equal(JSON.parse(memory.get("moeserve.streaming")), null);
const info = await lookup(resumedId);
assert.equal(info.length, 1);
assert.equal(info[0].is_done, true);
console.log("webui: ok");
