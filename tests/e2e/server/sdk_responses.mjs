// The official OpenAI SDK's Responses API client against moeserve's
// /v1/responses (started with --allow-replay): a plain answer, the same
// streamed through the SDK's response stream helper (which checks every
// event's output and content index), and an answer with reasoning, text and
// two function calls (forced through the test-only `replay` field) sent back
// with their outputs, as an agent loop does.
// usage: node sdk_responses.mjs BASE_URL ANSWER   (ANSWER: reasoning, text, two get_weather calls)
import assert from "node:assert/strict";
import OpenAI from "openai";

const [baseURL, answer] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "sk-test", maxRetries: 0 });
const tools = [{
  type: "function",
  name: "get_weather",
  description: "Weather forecast for a city",
  parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer" } }, required: ["city"] },
  strict: false,
}];

// The text of a response's message items (the stream helper's final response has no output_text).
const textOf = (r) => r.output.filter((o) => o.type === "message").flatMap((o) => o.content).map((c) => c.text).join("");

// A plain answer cut at max_output_tokens: incomplete, with the reason. Greedy,
// so that it cannot end by itself first (a sampled answer sometimes did).
const cut = await client.responses.create({ model: "any", instructions: "Be brief.", input: "Hello", max_output_tokens: 10,
                                            temperature: 0 });
assert.equal(cut.object, "response");
assert.equal(cut.status, "incomplete");
assert.equal(cut.incomplete_details.reason, "max_output_tokens");
assert.equal(cut.usage.output_tokens, 10);
assert.ok(cut.output_text.length > 0, "output_text");

// A complete answer: non-streamed and streamed (through the SDK's helper) agree.
const plain = { model: "any", instructions: "Be brief.", input: "Hello", replay: "Hello there, friend." };
const response = await client.responses.create(plain);
assert.equal(response.status, "completed");
assert.equal(response.output_text, "Hello there, friend.");
const stream = client.responses.stream(plain);
let deltas = "";
stream.on("response.output_text.delta", (e) => { deltas += e.delta; });
const streamed = await stream.finalResponse();
assert.equal(deltas, response.output_text, "streamed text deltas");
assert.equal(textOf(streamed), response.output_text);
assert.equal(streamed.status, "completed");
assert.deepEqual(streamed.usage, response.usage);

// Reasoning, text and two function calls.
function checkCalls(r, where) {
  assert.equal(r.status, "completed", where);
  assert.deepEqual(r.output.map((o) => o.type), ["reasoning", "message", "function_call", "function_call"], where);
  assert.equal(r.output[0].content[0].text, "The user wants weather.", where);
  assert.equal(textOf(r), "Let me check.", where);
  for (const call of r.output.slice(2)) {
    assert.equal(call.name, "get_weather", where);
    assert.deepEqual(JSON.parse(call.arguments), { city: "Paris", days: 3 }, where);
    assert.ok(call.call_id.length > 0, where);
  }
  assert.notEqual(r.output[2].call_id, r.output[3].call_id, `${where}: distinct call ids`);
}
const request = { model: "any", tools, input: [{ role: "user", content: "Weather in Paris for 3 days?" }], replay: answer };
const calls = await client.responses.create(request);
checkCalls(calls, "non-streamed");
checkCalls(await client.responses.stream(request).finalResponse(), "streamed");

// The whole conversation goes back with the calls' outputs (nothing is stored server-side).
const followUp = await client.responses.create({
  model: "any",
  tools,
  replay: "It will be sunny.",
  input: [
    ...request.input,
    ...calls.output,
    ...calls.output.slice(2).map((c) => ({ type: "function_call_output", call_id: c.call_id, output: "Sunny, 21 C" })),
  ],
});
assert.equal(followUp.output_text, "It will be sunny.");
await assert.rejects(client.responses.create({ model: "any", input: "x", previous_response_id: calls.id }), /previous_response_id/);
console.log("responses sdk: ok");
