// @ts-check
/**
 * The message box of a PM window or a room: Enter sends (Shift+Enter is a new line),
 * typing is announced now and then while the user types and withdrawn after a pause or
 * when the message goes. DOM only; what "send" and "typing" do is the caller's.
 */

const TYPING_IDLE_MS = 4000;
const TYPING_REPEAT_MS = 3000;

/**
 * @typedef {object} ComposerHandlers
 * @property {(text: string) => void} onSend a non-blank message, trailing blanks trimmed
 * @property {(active: boolean) => void} onTyping started or stopped typing
 * @property {() => boolean} isLocked whether sending is impossible now (keys locked)
 */

export class Composer {
  /**
   * @param {HTMLTextAreaElement} input
   * @param {ComposerHandlers} handlers
   */
  constructor(input, handlers) {
    this.input = input;
    this.handlers = handlers;
    this.typingSentAt = 0;
    /** @type {number | undefined} */
    this.typingTimer = undefined;
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    input.addEventListener("input", () => this.typed());
  }

  /** Put text at the caret (an emoticon, a mention). @param {string} text */
  insert(text) {
    const { selectionStart: start, selectionEnd: end, value } = this.input;
    this.input.value = value.slice(0, start) + text + value.slice(end);
    this.input.selectionStart = this.input.selectionEnd = start + text.length;
    this.input.focus();
    this.typed();
  }

  submit() {
    const text = this.input.value.replace(/^\s*\n|\s+$/gu, "");
    if (!text.trim() || this.handlers.isLocked()) {
      return;
    }
    this.input.value = "";
    this.stopTyping();
    this.handlers.onSend(text);
    this.input.focus();
  }

  /** The user typed: tell the others now and then, and that they stopped after a pause. */
  typed() {
    window.clearTimeout(this.typingTimer);
    if (!this.input.value.trim()) {
      this.stopTyping();
      return;
    }
    const now = Date.now();
    if (now - this.typingSentAt > TYPING_REPEAT_MS) {
      this.typingSentAt = now;
      this.handlers.onTyping(true);
    }
    this.typingTimer = window.setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    window.clearTimeout(this.typingTimer);
    if (this.typingSentAt) {
      this.typingSentAt = 0;
      this.handlers.onTyping(false);
    }
  }
}
