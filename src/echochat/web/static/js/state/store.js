// @ts-check
/** A value that tells its subscribers when it changes. No DOM. */

/** @template T */
export class Store {
  /** @param {T} initial */
  constructor(initial) {
    this.value = initial;
    /** @type {Set<(value: T, previous: T) => void>} */
    this.subscribers = new Set();
  }

  /** @returns {T} */
  get() {
    return this.value;
  }

  /** @param {T} next */
  set(next) {
    if (next === this.value) {
      return;
    }
    const previous = this.value;
    this.value = next;
    for (const subscriber of [...this.subscribers]) {
      subscriber(next, previous);
    }
  }

  /** @param {(value: T) => T} change */
  update(change) {
    this.set(change(this.value));
  }

  /**
   * @param {(value: T, previous: T) => void} subscriber
   * @returns {() => void} unsubscribes
   */
  subscribe(subscriber) {
    this.subscribers.add(subscriber);
    return () => this.subscribers.delete(subscriber);
  }
}
