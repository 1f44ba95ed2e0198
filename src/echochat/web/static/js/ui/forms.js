// @ts-check
/**
 * Forms of the account pages: inline errors next to their fields, one status region that
 * screen readers announce (aria-live), a submit button that is disabled while the request
 * runs, and focus on the first field to fix. All text goes in with textContent.
 */

import { ApiError } from "../net/api.js";

/** @typedef {{field?: string, message: string}} Problem */
/** @typedef {"info" | "error" | "success"} Tone */
/** @typedef {{href: string, text: string}} Action */

/**
 * @typedef {object} FormOptions
 * @property {HTMLElement} [status] the aria-live region (default: `[data-form-status]` in the form)
 * @property {(values: Record<string, string>, form: HTMLFormElement) => Problem[]} [check]
 *   extra checks before sending (the browser's own constraints are checked first)
 * @property {(error: ApiError) => Explained | null} [explain]
 *   page-specific wording for an API refusal; null keeps the server's message
 */

/**
 * @typedef {Problem & {action?: Action, focus?: string}} Explained
 *   `action`: a link after the message; `focus`: the field to focus (and empty) when the
 *   message is not about one field, e.g. the password after "wrong username or password"
 */

/**
 * "too many attempts" -> "Too many attempts."
 * @param {string} text
 */
export function sentence(text) {
  const trimmed = text.trim();
  if (!trimmed) {
    return trimmed;
  }
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

/**
 * A wait in words: 40 -> "40 seconds", 200 -> "4 minutes".
 * @param {number} seconds
 */
export function waitInWords(seconds) {
  if (seconds < 90) {
    return `${seconds} second${seconds === 1 ? "" : "s"}`;
  }
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 90) {
    return `${minutes} minutes`;
  }
  const hours = Math.ceil(minutes / 60);
  return `${hours} hour${hours === 1 ? "" : "s"}`;
}

/**
 * @param {HTMLFormElement} form
 * @param {string} name
 * @returns {HTMLInputElement | null}
 */
export function inputOf(form, name) {
  const element = form.elements.namedItem(name);
  return element instanceof HTMLInputElement ? element : null;
}

/**
 * @param {Element} element
 * @param {string} attribute
 * @param {string} token
 * @param {boolean} present
 */
function toggleToken(element, attribute, token, present) {
  const tokens = new Set((element.getAttribute(attribute) ?? "").split(/\s+/).filter(Boolean));
  if (present) {
    tokens.add(token);
  } else {
    tokens.delete(token);
  }
  if (tokens.size) {
    element.setAttribute(attribute, [...tokens].join(" "));
  } else {
    element.removeAttribute(attribute);
  }
}

/**
 * Show `message` under the field `name`. False when the form has no such field.
 * @param {HTMLFormElement} form
 * @param {string} name
 * @param {string} message
 */
export function setFieldError(form, name, message) {
  const input = inputOf(form, name);
  if (!input) {
    return false;
  }
  const id = `${input.id || name}-error`;
  let box = document.getElementById(id);
  if (!box) {
    box = document.createElement("p");
    box.id = id;
    box.className = "field__error";
    (input.closest(".field") ?? input.parentElement ?? form).append(box);
  }
  box.textContent = sentence(message);
  box.hidden = false;
  input.setAttribute("aria-invalid", "true");
  toggleToken(input, "aria-describedby", id, true);
  return true;
}

/**
 * Remove every inline error of the form.
 * @param {HTMLFormElement} form
 */
export function clearErrors(form) {
  for (const input of form.querySelectorAll("[aria-invalid]")) {
    input.removeAttribute("aria-invalid");
    const id = `${input.id || input.getAttribute("name")}-error`;
    toggleToken(input, "aria-describedby", id, false);
  }
  const boxes = /** @type {NodeListOf<HTMLElement>} */ (form.querySelectorAll(".field__error"));
  for (const box of boxes) {
    box.textContent = "";
    box.hidden = true;
  }
}

/**
 * Put a message in a status region (announced by screen readers); "" empties it.
 * @param {HTMLElement | null | undefined} region
 * @param {string} message
 * @param {Tone} [tone]
 * @param {Action} [action] a link shown after the message
 */
export function setStatus(region, message, tone = "info", action) {
  if (!region) {
    return;
  }
  region.replaceChildren();
  region.classList.remove("form-status--info", "form-status--error", "form-status--success");
  if (!message) {
    return;
  }
  region.classList.add(`form-status--${tone}`);
  const text = document.createElement("span");
  text.textContent = sentence(message);
  region.append(text);
  if (action) {
    const link = document.createElement("a");
    link.href = action.href;
    link.textContent = action.text;
    region.append(" ", link);
  }
}

/**
 * Mark the form busy: its submit buttons are disabled and say so to assistive technology.
 * @param {HTMLFormElement} form
 * @param {boolean} busy
 */
export function setBusy(form, busy) {
  form.setAttribute("aria-busy", String(busy));
  for (const button of form.querySelectorAll("button[type=submit], button:not([type])")) {
    if (button instanceof HTMLButtonElement) {
      button.disabled = busy;
    }
  }
}

/**
 * Focus the first field marked invalid; true if there was one.
 * @param {HTMLFormElement} form
 */
export function focusFirstInvalid(form) {
  const first = form.querySelector("[aria-invalid=true]");
  if (first instanceof HTMLElement) {
    first.focus();
    return true;
  }
  return false;
}

/**
 * The browser's own constraint checks (required, pattern, minlength, type=email...), with
 * its localised messages, or a field's `data-pattern-message` for a pattern mismatch.
 * @param {HTMLFormElement} form
 * @returns {Problem[]}
 */
function nativeProblems(form) {
  /** @type {Problem[]} */
  const problems = [];
  for (const element of form.elements) {
    if (!(element instanceof HTMLInputElement) || element.validity.valid) {
      continue;
    }
    const custom = element.validity.patternMismatch ? element.dataset.patternMessage : undefined;
    problems.push({ field: element.name, message: custom ?? element.validationMessage });
  }
  return problems;
}

/**
 * The words to show for a failure, and the field it belongs to.
 * @param {unknown} error
 * @param {FormOptions["explain"]} explain
 * @returns {{problems: Problem[], action?: Action, focus?: string}}
 */
function describe(error, explain) {
  if (!(error instanceof ApiError)) {
    console.error(error);
    return {
      problems: [{ message: "something went wrong on this page; reload it and try again" }],
    };
  }
  const custom = explain?.(error);
  if (custom) {
    return { problems: [custom], action: custom.action, focus: custom.focus };
  }
  if (error.status === 429 && error.retryAfter) {
    return {
      problems: [{ message: `too many attempts; try again in ${waitInWords(error.retryAfter)}` }],
    };
  }
  if (error.fields.length) {
    return { problems: error.fields.map((f) => ({ field: f.field, message: f.message })) };
  }
  return { problems: [{ message: error.message }] };
}

/**
 * Show problems: each next to its field when the form has it, the rest in the status region.
 * @param {HTMLFormElement} form
 * @param {HTMLElement | null | undefined} status
 * @param {Problem[]} problems
 * @param {Action} [action]
 * @param {string} [focus] a field to empty and focus when no field is marked
 */
export function showProblems(form, status, problems, action, focus) {
  const general = [];
  let marked = 0;
  for (const problem of problems) {
    if (problem.field && setFieldError(form, problem.field, problem.message)) {
      marked += 1;
    } else {
      general.push(sentence(problem.message));
    }
  }
  if (general.length) {
    setStatus(status, general.join(" "), "error", action);
  } else if (marked) {
    setStatus(
      status,
      marked === 1 ? "Please check the marked field." : `Please check the ${marked} marked fields.`,
      "error",
      action,
    );
  }
  if (focusFirstInvalid(form)) {
    return;
  }
  const target = focus ? inputOf(form, focus) : null;
  if (target) {
    target.value = "";
    target.focus();
  } else {
    status?.focus();
  }
}

/**
 * Wire a form: on submit, check it, send it with `submit(values)`, and show what went
 * wrong inline. When `submit` resolves to true the page is leaving: the form stays busy.
 * @param {HTMLFormElement} form
 * @param {(values: Record<string, string>) => Promise<boolean | void>} submit
 * @param {FormOptions} [options]
 */
export function bindForm(form, submit, options = {}) {
  const status =
    options.status ?? /** @type {HTMLElement | null} */ (form.querySelector("[data-form-status]"));
  form.noValidate = true; // our inline messages replace the browser's bubbles
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (form.getAttribute("aria-busy") === "true") {
      return;
    }
    clearErrors(form);
    setStatus(status, "");
    /** @type {Record<string, string>} */
    const values = {};
    for (const [key, value] of new FormData(form)) {
      values[key] = typeof value === "string" ? value : "";
    }
    const problems = nativeProblems(form);
    if (!problems.length && options.check) {
      problems.push(...options.check(values, form));
    }
    if (problems.length) {
      showProblems(form, status, problems);
      return;
    }
    setBusy(form, true);
    let leaving = false;
    try {
      leaving = (await submit(values)) === true;
    } catch (error) {
      const { problems: failed, action, focus } = describe(error, options.explain);
      showProblems(form, status, failed, action, focus);
    } finally {
      if (!leaving) {
        setBusy(form, false);
      }
    }
  });
}

/**
 * A check for a "new password" + "confirm" pair.
 * @param {string} password name of the password field
 * @param {string} confirm name of the confirmation field
 * @returns {(values: Record<string, string>) => Problem[]}
 */
export function passwordsMatch(password, confirm) {
  return (values) =>
    values[password] === values[confirm]
      ? []
      : [{ field: confirm, message: "the two passwords do not match" }];
}

/**
 * What went wrong, in words.
 * @param {unknown} error
 */
export function problemText(error) {
  if (error instanceof ApiError) {
    return sentence(error.message);
  }
  console.error(error);
  return "Something went wrong on this page; reload it and try again.";
}
