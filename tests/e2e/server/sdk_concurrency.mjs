// N concurrent streaming greedy chat requests through the OpenAI SDK must
// all complete, and give exactly the text the same requests give one at a
// time. usage: node sdk_concurrency.mjs BASE_URL [N]
import assert from "node:assert/strict";
import OpenAI from "openai";

const baseURL = process.argv[2];
const n = Number(process.argv[3] ?? 16);
const client = new OpenAI({ baseURL, apiKey: "none", maxRetries: 0, timeout: 300_000 });

const request = (i) => ({
  model: "any",
  messages: [{ role: "user", content: `Request ${i}: tell me about the number ${i * 37}.` }],
  max_tokens: 24 + (i % 5) * 4,
  temperature: 0,
  ignore_eos: true,
  stream: true,
});

async function run(i) {
  const stream = await client.chat.completions.create(request(i));
  let text = "", finish = null;
  for await (const chunk of stream) {
    if (chunk.choices.length === 0) continue;
    text += chunk.choices[0].delta.content ?? "";
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  assert.equal(finish, "length", `request ${i} did not finish`);
  return text;
}

const sequential = [];
for (let i = 0; i < n; ++i) sequential.push(await run(i));
const concurrent = await Promise.all(Array.from({ length: n }, (_, i) => run(i)));
for (let i = 0; i < n; ++i)
  assert.equal(concurrent[i], sequential[i], `request ${i}: the concurrent text differs from the sequential one`);
console.log(`sdk_concurrency: ${n} concurrent requests ok, identical to sequential`);
