// The explanation panel's content: deltas of one request, by channel, turned into markdown as they arrive.
export interface ExplanationNote {
  id: string;
  uri?: string;
  channel: string;
  delta: string;
  done: boolean;
  markdown?: string;
  analysisCut?: boolean;
}

export class Explanation {
  private answer = "";
  private reasoning = "";
  private finished = false;
  private cut = false;
  id: string | undefined;

  constructor(readonly title: string) {}

  /** Take a note; false when it belongs to another request. */
  add(note: ExplanationNote): boolean {
    if (this.id === undefined) {
      this.id = note.id;
    } else if (note.id !== this.id) {
      return false;
    }
    if (note.done) {
      this.finished = true;
      if (note.markdown !== undefined) this.answer = note.markdown;
      if (note.analysisCut) this.cut = true;
    } else if (note.channel === "final") {
      this.answer += note.delta;
    } else {
      this.reasoning += note.delta;
    }
    return true;
  }

  get done(): boolean {
    return this.finished;
  }

  /** Markdown for the panel: the answer, or while there is none yet, that the model is thinking. */
  markdown(): string {
    if (this.answer.trim()) {
      const cut = this.cut
        ? "\n\n---\n_The reasoning ran long and was cut short so that the model would answer; " +
          "`ossEdge.explainMaxTokens` gives it more room._"
        : "";
      return this.answer + cut;
    }
    if (this.finished) {
      return "_The model gave no answer within its token budget._";
    }
    const words = this.reasoning.split(/\s+/).filter(Boolean).length;
    return words ? `_Thinking… (${words} words of reasoning so far)_` : "_Thinking…_";
  }
}
