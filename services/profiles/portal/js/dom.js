/* Building the page: elements from data (never HTML strings), form fields with their
 * labels and error texts, and the small pieces every view uses. */

import { NetworkError } from "./api.js";
import { t } from "./i18n.js";

/** An element: h("p", {class: "note"}, "text", child, ...); null children are skipped. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "value") element.value = value;
    else if (name === "checked") element.checked = Boolean(value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Append what is there: null, undefined and false children are skipped (the DOM's own
 * append() would write them out as text). */
export function put(parent, ...children) {
  append(parent, children);
  return parent;
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

/** A labelled form control with an optional hint and a place for its error text. */
export function field({ id, label, control, hint, wide = false }) {
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  control.id = id;
  const describedBy = [hintId, errorId].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", describedBy);
  return h(
    "div",
    { class: wide ? "field field-wide" : "field", dataset: { field: id } },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    h("p", { class: "field-error", id: errorId, hidden: true }),
  );
}

export function showFieldError(form, id, message) {
  const control = form.querySelector(`#${CSS.escape(id)}`);
  const error = form.querySelector(`#${CSS.escape(id)}-error`);
  if (control) control.setAttribute("aria-invalid", "true");
  if (error) {
    error.textContent = message;
    error.hidden = false;
  }
}

export function clearFieldErrors(form) {
  for (const control of form.querySelectorAll("[aria-invalid]")) {
    control.removeAttribute("aria-invalid");
  }
  for (const error of form.querySelectorAll(".field-error")) {
    error.textContent = "";
    error.hidden = true;
  }
}

/** A message box: "error" ones are alerts (read at once), the others polite statuses. */
export function banner(kind, ...content) {
  return h(
    "div",
    { class: `banner banner-${kind}`, role: kind === "error" ? "alert" : "status" },
    ...content,
  );
}

export function timeOf(iso, text, attributes = {}) {
  return h("time", { datetime: iso, ...attributes }, text);
}

/** A link inside the portal, followed without reloading the page. */
export function link(app, path, text, attributes = {}) {
  return h("a", { href: app.url(path), "data-link": true, ...attributes }, text);
}

export function heading(text, level = 1, attributes = {}) {
  return h(`h${level}`, { tabindex: level === 1 ? "-1" : null, ...attributes }, text);
}

/** Call `work` at most once per `wait` ms of quiet. */
export function debounce(work, wait) {
  let timer = null;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => work(...args), wait);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

/** A short, translated explanation of an API or network failure. */
export function failure(error) {
  if (error && error.status === 404) return t("error_not_found");
  if (error && error.status === 403) return t("error_forbidden");
  if (error && error.status === 410) return t("error_gone");
  if (error instanceof NetworkError) return t("error_network");
  if (error && error.status >= 500) return t("error_server");
  return t("error_generic");
}
