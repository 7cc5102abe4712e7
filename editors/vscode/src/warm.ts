// Cache warming: when the cursor rests (no typing, one empty selection) for `warmOnRestMs`, ask the server to read
// the code around it into the model's cache, so that the first suggestion there does not wait for the whole prompt.
// Typing needs none: each keystroke's own completion request fills the cache.

export interface Rest {
  uri: string;
  line: number;
  character: number;
  selections: number;
  empty: boolean;
}

export interface WarmParams {
  textDocument: { uri: string };
  position: { line: number; character: number };
}

// What to send once the timer started at a cursor move fires, or undefined when nothing should be sent.
export function warmParams(rest: Rest, delayMs: number, lastEditAt: number, now: number): WarmParams | undefined {
  if (delayMs <= 0 || rest.selections !== 1 || !rest.empty) return undefined;
  if (now - lastEditAt < delayMs) return undefined; // still typing
  return { textDocument: { uri: rest.uri }, position: { line: rest.line, character: rest.character } };
}
