/* The portal's languages: a JSON dictionary per locale (../i18n/<locale>.json), English as
 * the fallback for a missing string, plural forms by Intl.PluralRules, dates and numbers
 * by Intl in the customer's time zone. Persian is written right to left: <html dir="rtl">,
 * and the style sheet uses logical properties, so the layout mirrors by itself.
 */

export const LOCALES = ["en", "hr", "cs", "sl", "fa"];
export const NATIVE_NAMES = {
  en: "English",
  hr: "Hrvatski",
  cs: "Čeština",
  sl: "Slovenščina",
  fa: "فارسی",
};
const RIGHT_TO_LEFT = new Set(["fa"]);
const dictionaries = new Map();

const state = { locale: "en", messages: {}, fallback: {}, timeZone: undefined };

async function dictionary(locale) {
  if (!dictionaries.has(locale)) {
    const response = await fetch(`/portal/static/i18n/${locale}.json`);
    if (!response.ok) throw new Error(`no dictionary for ${locale}`);
    dictionaries.set(locale, await response.json());
  }
  return dictionaries.get(locale);
}

export function locale() {
  return state.locale;
}

export function direction(tag = state.locale) {
  return RIGHT_TO_LEFT.has(primary(tag)) ? "rtl" : "ltr";
}

function primary(tag) {
  return String(tag || "")
    .toLowerCase()
    .split(/[-_]/)[0];
}

/** The first of `tags` (BCP 47) the portal speaks, as its locale; null if none. */
export function pick(tags) {
  for (const tag of tags || []) {
    const language = primary(tag);
    if (LOCALES.includes(language)) return language;
  }
  return null;
}

export async function setLocale(tag) {
  const chosen = pick([tag]) || "en";
  state.fallback = await dictionary("en");
  state.messages = await dictionary(chosen);
  state.locale = chosen;
  const root = document.documentElement;
  root.lang = chosen;
  root.dir = direction(chosen);
  translate(document);
}

export function setTimeZone(zone) {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    state.timeZone = zone;
  } catch {
    state.timeZone = undefined;
  }
}

export function has(key) {
  return key in state.messages || key in state.fallback;
}

/** The string `key` in the current language, with {name} placeholders filled in. */
export function t(key, params = {}) {
  const template = state.messages[key] ?? state.fallback[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (match, name) =>
    name in params ? String(params[name]) : match,
  );
}

/** `key_one`, `key_few`, ... as the language's plural rules choose for `count`. */
export function tn(key, count, params = {}) {
  const form = new Intl.PluralRules(state.locale).select(count);
  const chosen = has(`${key}_${form}`) ? `${key}_${form}` : `${key}_other`;
  return t(chosen, { count: number(count), ...params });
}

/** A value's label when the dictionary has one (`prefix_value`), else the value itself. */
export function label(prefix, value) {
  const key = `${prefix}_${value}`;
  return has(key) ? t(key) : String(value);
}

export function number(value) {
  return new Intl.NumberFormat(state.locale).format(value);
}

/** The tag Intl formats with: the browser's own (en-GB, sr-Latn-HR) when it is in the
 * portal's language, so dates follow the customer's region; else the language. */
function formatting() {
  const own = (navigator.languages || []).find((tag) => primary(tag) === state.locale);
  return own || state.locale;
}

function format(iso, options) {
  if (!iso) return "";
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return String(iso);
  try {
    return new Intl.DateTimeFormat(formatting(), { ...options, timeZone: state.timeZone }).format(
      moment,
    );
  } catch {
    return new Intl.DateTimeFormat(formatting(), options).format(moment);
  }
}

export function dateTime(iso) {
  return format(iso, { dateStyle: "medium", timeStyle: "short" });
}

export function date(iso) {
  return format(iso, { dateStyle: "medium" });
}

export function money(amount, currency) {
  try {
    return new Intl.NumberFormat(formatting(), { style: "currency", currency }).format(
      Number(amount),
    );
  } catch {
    return `${amount} ${currency}`;
  }
}

/** Fill the static markup: data-i18n (text), data-i18n-aria-label, data-i18n-placeholder. */
export function translate(root) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of root.querySelectorAll("[data-i18n-aria-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nAriaLabel));
  }
  for (const element of root.querySelectorAll("[data-i18n-placeholder]")) {
    element.setAttribute("placeholder", t(element.dataset.i18nPlaceholder));
  }
}
