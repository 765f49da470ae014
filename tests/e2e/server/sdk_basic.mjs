// The official OpenAI SDK against a running moeserve: chat (plain and
// streamed), text completions, usage numbers, stop sequences, and the
// errors clients see as APIError with the right status.
// usage: node sdk_basic.mjs BASE_URL   (e.g. http://127.0.0.1:8080/v1)
import assert from "node:assert/strict";
import OpenAI from "openai";

const baseURL = process.argv[2];
const client = new OpenAI({ baseURL, apiKey: "sk-test", maxRetries: 0 });
const messages = [{ role: "user", content: "Say something about rivers." }];

// Non-streaming chat.
const chat = await client.chat.completions.create({ model: "any", messages, max_tokens: 12, temperature: 0 });
assert.equal(chat.object, "chat.completion");
assert.equal(chat.choices.length, 1);
assert.equal(chat.choices[0].message.role, "assistant");
assert.equal(typeof chat.choices[0].message.content, "string");
assert.ok(["length", "stop"].includes(chat.choices[0].finish_reason));
assert.ok(chat.usage.prompt_tokens > 0);
assert.ok(chat.usage.completion_tokens > 0 && chat.usage.completion_tokens <= 12);
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);
assert.ok(chat.id.startsWith("chatcmpl-"));

// Streaming chat gives the same greedy text.
const stream = await client.chat.completions.create({
  model: "any", messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let text = "", finish = null, usage = null, first = true;
for await (const chunk of stream) {
  assert.equal(chunk.object, "chat.completion.chunk");
  if (chunk.usage) usage = chunk.usage;
  if (chunk.choices.length === 0) continue;
  if (first) { assert.equal(chunk.choices[0].delta.role, "assistant"); first = false; }
  text += chunk.choices[0].delta.content ?? "";
  if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
}
assert.equal(text, chat.choices[0].message.content);
assert.equal(finish, chat.choices[0].finish_reason);
assert.equal(usage.completion_tokens, chat.usage.completion_tokens);

// Text completions, plain and streamed.
const comp = await client.completions.create({ model: "any", prompt: "Once upon a time", max_tokens: 10, temperature: 0 });
assert.equal(comp.object, "text_completion");
assert.equal(typeof comp.choices[0].text, "string");
const cstream = await client.completions.create({ model: "any", prompt: "Once upon a time", max_tokens: 10, temperature: 0, stream: true });
let ctext = "";
for await (const chunk of cstream) ctext += chunk.choices[0]?.text ?? "";
assert.equal(ctext, comp.choices[0].text);

// A stop string taken from the middle of the greedy text ends the text just before it.
const long = await client.completions.create({ model: "any", prompt: "Once upon a time", max_tokens: 40, temperature: 0, ignore_eos: true });
const full = long.choices[0].text;
const letters = full.slice(Math.floor(full.length / 2)).match(/[A-Za-z]{3}/);
if (letters) {
  const stop = letters[0];
  const cut = await client.completions.create({ model: "any", prompt: "Once upon a time", max_tokens: 40, temperature: 0, ignore_eos: true, stop: [stop] });
  assert.equal(cut.choices[0].text, full.slice(0, full.indexOf(stop)));
  assert.equal(cut.choices[0].finish_reason, "stop");
  assert.ok(!cut.choices[0].text.includes(stop));
}

// Errors reach the SDK as APIError with the right status and message.
await assert.rejects(
  client.chat.completions.create({ model: "any", messages: [{ role: "user", content: "x ".repeat(5000) }] }),
  (e) => e instanceof OpenAI.APIError && e.status === 400 && /exceeds the available context size/.test(e.message));
await assert.rejects(
  client.chat.completions.create({ model: "any", messages, temperature: "hot" }),
  (e) => e.status === 400 && /temperature/.test(e.message));
await assert.rejects(
  client.chat.completions.create({ model: "any", messages: [] }),
  (e) => e.status === 400 && /messages/.test(e.message));

const models = await client.models.list();
assert.ok(models.data.length === 1 && typeof models.data[0].id === "string");
console.log("sdk_basic: ok");
