// The official Anthropic SDK against moeserve's /v1/messages (started with
// --allow-replay): a plain answer, the same streamed through the SDK's
// stream helper, token counting, and an answer with thinking, text and two
// tool_use blocks (forced through the test-only `replay` field) read as an
// agent such as Claude Code reads it, then sent back with tool results.
// usage: node sdk_anthropic.mjs BASE_URL ANSWER   (ANSWER: reasoning, text, two get_weather calls)
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";

const [baseURL, answer] = process.argv.slice(2);
const client = new Anthropic({ baseURL, apiKey: "sk-test", maxRetries: 0 });
const tools = [{
  name: "get_weather",
  description: "Weather forecast for a city",
  input_schema: { type: "object", properties: { city: { type: "string" }, days: { type: "integer" } }, required: ["city"] },
}];
const ask = { role: "user", content: "Weather in Paris for 3 days?" };

// A plain answer, greedy: non-streamed and streamed agree.
const plain = { model: "any", max_tokens: 10, temperature: 0, system: "Be brief.", messages: [{ role: "user", content: "Hello" }] };
const message = await client.messages.create(plain);
assert.equal(message.type, "message");
assert.equal(message.role, "assistant");
assert.equal(message.stop_reason, "max_tokens");
assert.equal(message.usage.output_tokens, 10);
assert.equal(message.content[0].type, "text");
const stream = client.messages.stream(plain);
let text = "";
stream.on("text", (t) => { text += t; });
const streamed = await stream.finalMessage();
assert.equal(text, message.content[0].text, "streamed text deltas");
assert.deepEqual(streamed.content, message.content);
assert.equal(streamed.stop_reason, "max_tokens");
assert.equal(streamed.usage.input_tokens, message.usage.input_tokens);
const counted = await client.messages.countTokens({ model: "any", system: "Be brief.", messages: plain.messages });
assert.equal(counted.input_tokens, message.usage.input_tokens);

// Thinking, text and tool calls.
function checkToolAnswer(m, where) {
  assert.equal(m.stop_reason, "tool_use", where);
  assert.deepEqual(m.content.map((b) => b.type), ["thinking", "text", "tool_use", "tool_use"], where);
  assert.equal(m.content[0].thinking, "The user wants weather.", where);
  assert.equal(m.content[1].text, "Let me check.", where);
  for (const b of m.content.slice(2)) {
    assert.equal(b.name, "get_weather", where);
    assert.deepEqual(b.input, { city: "Paris", days: 3 }, where);
    assert.ok(b.id.length > 0, where);
  }
  assert.notEqual(m.content[2].id, m.content[3].id, `${where}: distinct ids`);
}
const request = { model: "any", max_tokens: 400, tools, messages: [ask], replay: answer };
const calls = await client.messages.create(request);
checkToolAnswer(calls, "non-streamed");
const callStream = client.messages.stream(request);
let sawMarkup = false;
callStream.on("text", (t) => { if (t.includes("<tool_call>") || t.includes("<think>")) sawMarkup = true; });
checkToolAnswer(await callStream.finalMessage(), "streamed");
assert.equal(sawMarkup, false, "markup leaked into text deltas");

// The calls and their results go back as the next turn.
const followUp = await client.messages.create({
  model: "any",
  max_tokens: 64,
  tools,
  replay: "It will be sunny.",
  messages: [
    ask,
    { role: "assistant", content: calls.content },
    { role: "user", content: calls.content.slice(2).map((b) => ({ type: "tool_result", tool_use_id: b.id, content: "Sunny, 21 C" })) },
  ],
});
assert.equal(followUp.stop_reason, "end_turn");
assert.equal(followUp.content[0].text, "It will be sunny.");
console.log("anthropic sdk: ok");
