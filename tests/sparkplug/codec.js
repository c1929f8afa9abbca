// The tests' independent Sparkplug B codec: Eclipse Tahu's JavaScript payload library
// (npm `sparkplug-payload`, protobufjs underneath), nothing of the appliance's Python.
// One JSON request a line on stdin, one JSON answer a line on stdout:
//   {"op": "decode", "data": "<base64>"}   -> {"ok": true, "payload": {...}}
//   {"op": "encode", "payload": {...}}     -> {"ok": true, "data": "<base64>"}
// 64-bit numbers (Long) come back as JSON numbers (exact below 2^53), bytes as base64.
"use strict";
const readline = require("readline");
const sparkplug = require("sparkplug-payload").get("spBv1.0");

function plain(key, value) {
  if (value && typeof value === "object" && "low" in value && "high" in value && "unsigned" in value) {
    return Number(value.toString());
  }
  if (value instanceof Uint8Array) return { base64: Buffer.from(value).toString("base64") };
  if (value && value.type === "Buffer" && Array.isArray(value.data)) {
    return { base64: Buffer.from(value.data).toString("base64") };
  }
  return value;
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => {
  let answer;
  try {
    const req = JSON.parse(line);
    if (req.op === "decode") {
      answer = { ok: true, payload: sparkplug.decodePayload(Buffer.from(req.data, "base64")) };
    } else if (req.op === "encode") {
      answer = { ok: true, data: Buffer.from(sparkplug.encodePayload(req.payload)).toString("base64") };
    } else {
      answer = { ok: false, error: `unknown op ${req.op}` };
    }
  } catch (err) {
    answer = { ok: false, error: String(err && err.message ? err.message : err) };
  }
  process.stdout.write(JSON.stringify(answer, plain) + "\n");
});
