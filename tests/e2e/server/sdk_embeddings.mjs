// The official OpenAI SDK's embeddings against a moeserve started with
// --embeddings and a pooling other than none: the SDK asks for base64 by
// default and decodes it, so its vectors must equal the float ones; shapes,
// unit length, identical inputs giving identical vectors, token-id input,
// concurrent requests, and the errors it raises.
// usage: node sdk_embeddings.mjs BASE_URL   (e.g. http://127.0.0.1:8080/v1)
import assert from "node:assert/strict";
import OpenAI from "openai";

const baseURL = process.argv[2];
const client = new OpenAI({ baseURL, apiKey: "sk-test", maxRetries: 0 });
const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const maxDiff = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

// The SDK default: base64 on the wire, decoded to numbers.
const inputs = ["The river runs.", "The river runs.", "Mountains stand still."];
const res = await client.embeddings.create({ model: "any", input: inputs });
assert.equal(res.object, "list");
assert.equal(res.data.length, 3);
res.data.forEach((d, i) => {
  assert.equal(d.object, "embedding");
  assert.equal(d.index, i);
  assert.equal(d.embedding.length, 256);
  assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-5, `norm of ${i}: ${norm(d.embedding)}`);
});
assert.deepEqual(res.data[0].embedding, res.data[1].embedding);
assert.ok(maxDiff(res.data[0].embedding, res.data[2].embedding) > 1e-3);
assert.ok(res.usage.prompt_tokens > 0);
assert.equal(res.usage.total_tokens, res.usage.prompt_tokens);

// Floats on the wire give the same numbers (f32 -> JSON double -> f32).
const asFloat = await client.embeddings.create({ model: "any", input: inputs[0], encoding_format: "float" });
assert.equal(asFloat.data.length, 1);
assert.ok(maxDiff(asFloat.data[0].embedding, res.data[0].embedding) < 1e-7);

// Token ids as input.
const tok = await (await fetch(baseURL.replace(/\/v1$/, "") + "/tokenize", {
  method: "POST", body: JSON.stringify({ content: inputs[2], add_special: true }),
})).json();
const byIds = await client.embeddings.create({ model: "any", input: [tok.tokens], encoding_format: "float" });
assert.ok(maxDiff(byIds.data[0].embedding, res.data[2].embedding) < 1e-6);

// Concurrent requests get the vectors they get alone.
const texts = Array.from({ length: 12 }, (_, i) => `text number ${i % 4} for the concurrency check`);
const alone = [];
for (const t of texts.slice(0, 4)) alone.push((await client.embeddings.create({ model: "any", input: t })).data[0].embedding);
const together = await Promise.all(texts.map((t) => client.embeddings.create({ model: "any", input: t })));
together.forEach((r, i) => assert.ok(maxDiff(r.data[0].embedding, alone[i % 4]) < 1e-5, `concurrent ${i}`));

// An empty input is a 400 the SDK raises as BadRequestError.
await assert.rejects(client.embeddings.create({ model: "any", input: "" }), (e) => {
  assert.equal(e.status, 400);
  assert.match(e.message, /Input content cannot be empty/);
  return true;
});

console.log("embeddings ok");
