import * as assert from "assert";
import { Explanation } from "../explanation";
import { initializationOptions } from "../settings";
import { statusView } from "../status";
import { warmParams } from "../warm";

describe("initializationOptions", () => {
  it("passes the server's settings and keeps the extension's own out", () => {
    const options = initializationOptions({ serverPath: "/x", maxTokens: 64, languages: ["python"], modelDir: "" });
    assert.deepStrictEqual(options, { maxTokens: 64, languages: ["python"], modelDir: "" });
  });
});

describe("statusView", () => {
  it("shows latency and speed when ready", () => {
    const view = statusView({ state: "ready", model: "/m/gpt-oss-20b-int4-cpu", lastLatencyMs: 212.4, tokensPerSecond: 11.25 });
    assert.strictEqual(view.text, "$(check) oss-edge · 212 ms · 11.3 tok/s");
    assert.match(view.tooltip, /gpt-oss-20b-int4-cpu on cpu/);
    assert.strictEqual(view.problem, false);
  });

  it("flags a missing model and a failed start with what to do", () => {
    assert.match(statusView({ state: "no-model" }).tooltip, /oss-edge export/);
    const failed = statusView({ state: "error", error: "out of memory" });
    assert.ok(failed.problem);
    assert.match(failed.tooltip, /out of memory/);
    assert.match(statusView(undefined).text, /sync~spin/);
  });
});

describe("Explanation", () => {
  it("shows thinking until the answer streams, then the answer", () => {
    const explanation = new Explanation("t");
    assert.match(explanation.markdown(), /Thinking/);
    explanation.add({ id: "a", channel: "analysis", delta: "user wants an overview", done: false });
    assert.match(explanation.markdown(), /4 words of reasoning/);
    explanation.add({ id: "a", channel: "final", delta: "Computes the **mean**", done: false });
    explanation.add({ id: "a", channel: "final", delta: " of values.", done: false });
    assert.strictEqual(explanation.markdown(), "Computes the **mean** of values.");
    assert.ok(!explanation.markdown().includes("user wants"));
  });

  it("ignores other requests and takes the final markdown", () => {
    const explanation = new Explanation("t");
    explanation.add({ id: "a", channel: "final", delta: "x", done: false });
    assert.strictEqual(explanation.add({ id: "b", channel: "final", delta: "y", done: false }), false);
    explanation.add({ id: "a", channel: "final", delta: "", done: true, markdown: "Final." });
    assert.ok(explanation.done);
    assert.strictEqual(explanation.markdown(), "Final.");
  });

  it("says so when the model gave no answer", () => {
    const explanation = new Explanation("t");
    explanation.add({ id: "a", channel: "analysis", delta: "hmm", done: false });
    explanation.add({ id: "a", channel: "final", delta: "", done: true, markdown: "" });
    assert.match(explanation.markdown(), /no answer/);
  });

  it("says when the reasoning was cut short to make room for the answer", () => {
    const explanation = new Explanation("t");
    explanation.add({ id: "a", channel: "final", delta: "", done: true, markdown: "Doubles x.", analysisCut: true });
    explanation.add({ id: "a", channel: "final", delta: "", done: true, markdown: "Doubles x." });
    assert.match(explanation.markdown(), /^Doubles x\.\n\n---\n_The reasoning ran long and was cut short/);
  });
});

describe("warmParams", () => {
  const rest = { uri: "file:///w/a.py", line: 4, character: 8, selections: 1, empty: true };

  it("asks to warm the cache where the cursor rests", () => {
    assert.deepStrictEqual(warmParams(rest, 500, 1000, 2000), {
      textDocument: { uri: "file:///w/a.py" },
      position: { line: 4, character: 8 },
    });
  });

  it("sends nothing while typing, for a selection or several cursors, or when turned off", () => {
    assert.strictEqual(warmParams(rest, 500, 1800, 2000), undefined);
    assert.strictEqual(warmParams({ ...rest, empty: false }, 500, 0, 2000), undefined);
    assert.strictEqual(warmParams({ ...rest, selections: 2 }, 500, 0, 2000), undefined);
    assert.strictEqual(warmParams(rest, 0, 0, 2000), undefined);
  });
});
