// The official OpenAI SDK asks a moeserve started with --allow-replay for a
// chat answer with tool calls (forced through the test-only `replay` field)
// and checks what an agent framework would read: tool_calls with ids, names
// and JSON arguments, finish_reason "tool_calls", the same calls when
// streamed (assembled from the chunks by the SDK's own stream helper), and a
// follow-up request carrying the calls and their results back.
// usage: node sdk_tools.mjs BASE_URL ANSWER   (ANSWER: two get_weather calls)
import assert from "node:assert/strict";
import OpenAI from "openai";

const [baseURL, answer] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "sk-test", maxRetries: 0 });
const tools = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "Weather forecast for a city",
    parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer" } }, required: ["city"] },
  },
}];
const messages = [{ role: "user", content: "Weather in Paris for 3 days?" }];
const request = { model: "any", messages, tools, max_tokens: 400, replay: answer };

function checkCalls(calls, where) {
  assert.equal(calls.length, 2, `${where}: two calls`);
  for (const call of calls) {
    assert.equal(call.type, "function", where);
    assert.equal(typeof call.id, "string", where);
    assert.ok(call.id.length >= 9, `${where}: id ${call.id}`);
    assert.equal(call.function.name, "get_weather", where);
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris", days: 3 }, where);
  }
  assert.notEqual(calls[0].id, calls[1].id, `${where}: distinct ids`);
}

// Non-streaming.
const chat = await client.chat.completions.create(request);
assert.equal(chat.choices[0].finish_reason, "tool_calls");
assert.equal(chat.choices[0].message.content, "Let me check.");
checkCalls(chat.choices[0].message.tool_calls, "non-streamed");

// Streaming, assembled by the SDK's chat-completion stream helper.
const runner = client.beta.chat.completions.stream({ ...request, stream: true });
let sawMarkup = false;
runner.on("content", (delta) => { if (delta.includes("<tool_call>") || delta.includes("<function=")) sawMarkup = true; });
const final = await runner.finalChatCompletion();
assert.equal(sawMarkup, false, "tool-call markup leaked into content deltas");
assert.equal(final.choices[0].finish_reason, "tool_calls");
assert.equal(final.choices[0].message.content, "Let me check.");
checkCalls(final.choices[0].message.tool_calls, "streamed");

// The calls and their results go back in the next turn (arguments as JSON strings, as SDKs send them).
const followUp = await client.chat.completions.create({
  model: "any",
  tools,
  max_tokens: 64,
  replay: "It will be sunny.",
  messages: [
    ...messages,
    chat.choices[0].message,
    ...chat.choices[0].message.tool_calls.map((c) => ({ role: "tool", tool_call_id: c.id, content: "sunny, 24C" })),
  ],
});
assert.equal(followUp.choices[0].message.content, "It will be sunny.");
assert.equal(followUp.choices[0].finish_reason, "stop");
console.log("sdk_tools: ok");
