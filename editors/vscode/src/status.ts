// What the status bar says, from the server's `ossEdge/status` answer.
export interface ServerStatus {
  state: "loading" | "ready" | "error" | "no-model" | "idle";
  model?: string | null;
  provider?: string | null;
  error?: string | null;
  lastLatencyMs?: number | null;
  tokensPerSecond?: number | null;
  warmOnRestMs?: number | null; // the effective setting: the editor warms the cache after the cursor rests this long
}

export interface StatusView {
  text: string;
  tooltip: string;
  problem: boolean;
}

export function statusView(status: ServerStatus | undefined): StatusView {
  if (!status) {
    return { text: "$(sync~spin) oss-edge", tooltip: "Starting the oss-edge language server", problem: false };
  }
  const model = status.model ? status.model.split(/[\\/]/).pop() : "no model";
  switch (status.state) {
    case "loading":
      return { text: "$(sync~spin) oss-edge", tooltip: `Loading ${model}`, problem: false };
    case "no-model":
      return {
        text: "$(warning) oss-edge",
        tooltip: "No model: run `oss-edge export`, or set ossEdge.modelDir",
        problem: true,
      };
    case "error":
      return { text: "$(error) oss-edge", tooltip: `The model could not start: ${status.error ?? "unknown"}`, problem: true };
    case "idle":
      return { text: "$(circle-outline) oss-edge", tooltip: `${model}: starts on the next request`, problem: false };
    default: {
      const parts = ["$(check) oss-edge"];
      if (status.lastLatencyMs != null) parts.push(`${Math.round(status.lastLatencyMs)} ms`);
      if (status.tokensPerSecond != null) parts.push(`${status.tokensPerSecond.toFixed(1)} tok/s`);
      return { text: parts.join(" · "), tooltip: `${model} on ${status.provider ?? "cpu"}: ready`, problem: false };
    }
  }
}
