// @ts-check
/**
 * Messenger sounds, made with WebAudio (no audio files): two short soft notes going up for
 * a buddy's sign-in, down for a sign-out, a quick "ding-ding" for an incoming message, and
 * a low rattle for a BUZZ!. The mute switch (all of them) is remembered in localStorage.
 *
 * Browsers let a page make sound only after the user has interacted with it, so the audio
 * context is created on the first click or key press; before that sounds are skipped.
 * Every sound played is also recorded on a hook element (`data-sound-last`,
 * `data-sound-buddy`, `data-sound-count`), which the browser tests read.
 */

const MUTED_KEY = "echochat.sounds.muted";

/** @typedef {"signin" | "signout" | "message" | "buzz"} SoundKind */

/** Notes (Hz) of each sound but the buzz. */
const TUNES = {
  signin: [659.25, 987.77],
  signout: [783.99, 523.25],
  message: [1046.5, 1318.51],
};
const BUZZ_S = 0.45;
const NOTE_S = 0.11;
const VOLUME = 0.12;

export class Sounds {
  /** @param {HTMLElement} hook */
  constructor(hook) {
    this.hook = hook;
    /** @type {AudioContext | null} */
    this.context = null;
    this.count = 0;
    this.muted = readMuted();
    this.hook.dataset.soundMuted = String(this.muted);
    const unlock = () => {
      document.removeEventListener("pointerdown", unlock, true);
      document.removeEventListener("keydown", unlock, true);
      try {
        this.context = new AudioContext();
      } catch {
        this.context = null; // no audio on this device: stay quiet
      }
    };
    document.addEventListener("pointerdown", unlock, true);
    document.addEventListener("keydown", unlock, true);
  }

  /** @param {boolean} muted */
  setMuted(muted) {
    this.muted = muted;
    this.hook.dataset.soundMuted = String(muted);
    try {
      if (muted) {
        localStorage.setItem(MUTED_KEY, "1");
      } else {
        localStorage.removeItem(MUTED_KEY);
      }
    } catch {
      // storage disabled: the switch lasts for this page only
    }
  }

  /**
   * @param {SoundKind} kind
   * @param {string} username who signed in or out, wrote or buzzed
   */
  play(kind, username) {
    if (this.muted) {
      return;
    }
    this.count += 1;
    this.hook.dataset.soundLast = kind;
    this.hook.dataset.soundBuddy = username;
    this.hook.dataset.soundCount = String(this.count);
    const context = this.context;
    if (!context || context.state === "closed") {
      return;
    }
    if (context.state === "suspended") {
      context.resume().catch(() => {});
    }
    const start = context.currentTime + 0.01;
    if (kind === "buzz") {
      buzz(context, start);
      return;
    }
    TUNES[kind].forEach((frequency, index) => {
      blip(context, frequency, start + index * NOTE_S * 0.9);
    });
  }
}

/**
 * One soft note: a sine with a touch of its octave, a quick attack and a gentle decay.
 * @param {AudioContext} context
 * @param {number} frequency
 * @param {number} at
 */
function blip(context, frequency, at) {
  const gain = context.createGain();
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(VOLUME, at + 0.012);
  gain.gain.exponentialRampToValueAtTime(0.0001, at + NOTE_S * 1.6);
  gain.connect(context.destination);
  for (const [multiple, type] of /** @type {const} */ ([
    [1, "sine"],
    [2, "triangle"],
  ])) {
    const osc = context.createOscillator();
    osc.type = type;
    osc.frequency.setValueAtTime(frequency * multiple, at);
    const level = context.createGain();
    level.gain.value = multiple === 1 ? 1 : 0.18;
    osc.connect(level).connect(gain);
    osc.start(at);
    osc.stop(at + NOTE_S * 1.7);
  }
}

/**
 * A BUZZ!: a low square wave, shaken by a fast tremolo.
 * @param {AudioContext} context
 * @param {number} at
 */
function buzz(context, at) {
  const gain = context.createGain();
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(VOLUME * 0.7, at + 0.02);
  gain.gain.setValueAtTime(VOLUME * 0.7, at + BUZZ_S - 0.08);
  gain.gain.exponentialRampToValueAtTime(0.0001, at + BUZZ_S);
  gain.connect(context.destination);
  const osc = context.createOscillator();
  osc.type = "square";
  osc.frequency.setValueAtTime(110, at);
  const tremolo = context.createOscillator();
  tremolo.frequency.setValueAtTime(28, at);
  const depth = context.createGain();
  depth.gain.value = 40;
  tremolo.connect(depth).connect(osc.frequency);
  osc.connect(gain);
  for (const node of [osc, tremolo]) {
    node.start(at);
    node.stop(at + BUZZ_S + 0.02);
  }
}

function readMuted() {
  try {
    return localStorage.getItem(MUTED_KEY) === "1";
  } catch {
    return false;
  }
}
