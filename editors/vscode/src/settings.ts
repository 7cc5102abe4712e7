// The extension's settings are the server's options under `ossEdge.*`, plus `serverPath`, which only the
// extension reads. A Python test checks that package.json and the server's defaults agree.
export const CLIENT_ONLY = new Set(["serverPath"]);

export function initializationOptions(section: Record<string, unknown>): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(section)) {
    if (!CLIENT_ONLY.has(key) && value !== undefined && typeof value !== "function") {
      options[key] = value;
    }
  }
  return options;
}
