// @ts-check
/** A minimal event emitter: `on(type, listener)` returns the function that removes it. */

/** @typedef {(data: any) => void} Listener */

export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Listener>>} */
    this.listeners = new Map();
  }

  /**
   * @param {string} type
   * @param {Listener} listener
   * @returns {() => void} removes the listener
   */
  on(type, listener) {
    let set = this.listeners.get(type);
    if (!set) {
      set = new Set();
      this.listeners.set(type, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }

  /**
   * Call every listener of `type`; one that throws does not stop the others.
   * @param {string} type
   * @param {unknown} [data]
   */
  emit(type, data) {
    for (const listener of [...(this.listeners.get(type) ?? [])]) {
      try {
        listener(data);
      } catch (error) {
        console.error(error);
      }
    }
  }
}
