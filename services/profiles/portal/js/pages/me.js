/* Me: the customer's own profile (contact data, language, time zone, birthday) and their
 * consents per channel and purpose. Saving sends only what changed, with If-Match, so a
 * change made meanwhile elsewhere (an agent, another tab) is never overwritten. */

import { ApiError, call, enc, session } from "../api.js";
import {
  banner,
  clear,
  clearFieldErrors,
  failure,
  field,
  h,
  heading,
  put,
  showFieldError,
} from "../dom.js";
import * as i18n from "../i18n.js";
import { dataSection, preferencesSection } from "./account.js";

const { t } = i18n;
// Webhooks are how other systems hear of a customer, not a way to reach a person.
const CHANNELS = ["email", "sms", "in_app"];
const PURPOSES = ["transactional", "marketing"];
const NAMES = ["given_name", "family_name", "preferred_name"];
const ADDRESS = ["street", "postal_code", "city", "region", "country"];

export async function render(app, view) {
  const customerId = session.get().customer_id;
  const [profile, consents, preferences] = await Promise.all([
    call("profiles", `/customers/${enc(customerId)}`),
    call("profiles", `/customers/${enc(customerId)}/consents`),
    preferencesSection(app, customerId),
  ]);
  app.customer = profile.data;
  const name = profile.data.display_name || profile.data.given_name || "";
  app.setTitle(t("me_title"));
  const flashed = app.takeFlash();
  put(
    view,
    heading(t("me_title")),
    h("p", { class: "lead" }, name ? t("me_greeting", { name }) : t("me_intro")),
    flashed && flashed.kind === "welcome" ? banner("success", h("p", {}, t("welcome"))) : null,
    flashed && flashed.kind === "saved" ? banner("success", h("p", {}, t("profile_saved"))) : null,
  );
  const state = { customer: profile.data, etag: profile.etag };
  view.append(
    profileSection(app, state),
    consentSection(app, customerId, consents.data),
    preferences,
    dataSection(app, profile.data),
  );
}

// ---- the profile ----------------------------------------------------------------------

function listEditor({ id, legend, type, values, autocomplete, itemLabel, addLabel }) {
  const list = h("ul", { class: "list-editor-items", id: `${id}-items` });
  const addRow = (value = "") => {
    const index = list.children.length + 1;
    const input = h("input", {
      type,
      value,
      dir: "ltr",
      autocomplete,
      maxlength: type === "email" ? 320 : 40,
      "aria-label": t(itemLabel, { n: i18n.number(index) }),
      dataset: { list: id },
    });
    const remove = h(
      "button",
      {
        type: "button",
        class: "quiet-button",
        "aria-label": t("remove_item", { item: value || t(itemLabel, { n: index }) }),
      },
      t("remove"),
    );
    const row = h("li", { class: "list-editor-row" }, input, remove);
    remove.addEventListener("click", () => {
      row.remove();
      list.querySelector("input")?.focus();
    });
    list.append(row);
    return input;
  };
  for (const value of values) addRow(value);
  if (!values.length) addRow("");
  const add = h("button", { type: "button", class: "quiet-button" }, `+ ${t(addLabel)}`);
  add.addEventListener("click", () => addRow("").focus());
  return h(
    "fieldset",
    { class: "field field-wide list-editor", id, "aria-describedby": `${id}-error` },
    h("legend", {}, legend),
    list,
    add,
    h("p", { class: "field-error", id: `${id}-error`, hidden: true }),
  );
}

function timeZones(current) {
  let zones = [];
  try {
    zones = Intl.supportedValuesOf("timeZone");
  } catch {
    zones = [];
  }
  return [...new Set(["UTC", current, ...zones].filter(Boolean))];
}

function profileSection(app, state) {
  const customer = state.customer;
  const text = (name, autocomplete, maxlength = 200) =>
    h("input", { type: "text", name, autocomplete, maxlength, value: customer[name] || "" });
  const address = customer.address || {};
  const addressInput = (name, autocomplete, extra = {}) =>
    h("input", {
      type: "text",
      name,
      autocomplete,
      maxlength: 200,
      value: address[name] || "",
      ...extra,
    });

  const localeSelect = h("select", { name: "locale" });
  const known = i18n.LOCALES.includes(customer.locale);
  for (const code of i18n.LOCALES) {
    localeSelect.append(h("option", { value: code, lang: code }, i18n.NATIVE_NAMES[code]));
  }
  if (!known) localeSelect.append(h("option", { value: customer.locale }, customer.locale));
  localeSelect.value = customer.locale;

  const zoneList = h(
    "datalist",
    { id: "time-zones" },
    timeZones(customer.time_zone).map((zone) => h("option", { value: zone })),
  );
  const zoneInput = h("input", {
    type: "text",
    dir: "ltr",
    name: "time_zone",
    list: "time-zones",
    autocomplete: "off",
    spellcheck: "false",
    maxlength: 64,
    value: customer.time_zone || "UTC",
  });
  const birthday = h("input", { type: "date", name: "birthday", value: customer.birthday || "" });

  const problem = h("div", { class: "form-problem" });
  const form = h(
    "form",
    { class: "form-grid", novalidate: true, id: "profile-form" },
    field({ id: "given_name", label: t("given_name"), control: text("given_name", "given-name") }),
    field({
      id: "family_name",
      label: t("family_name"),
      control: text("family_name", "family-name"),
    }),
    field({
      id: "preferred_name",
      label: t("preferred_name"),
      control: text("preferred_name", "nickname"),
      hint: t("preferred_name_hint"),
    }),
    listEditor({
      id: "emails",
      legend: t("emails"),
      type: "email",
      values: customer.emails || [],
      autocomplete: "email",
      itemLabel: "email_n",
      addLabel: "add_email",
    }),
    listEditor({
      id: "phones",
      legend: t("phones"),
      type: "tel",
      values: customer.phones || [],
      autocomplete: "tel",
      itemLabel: "phone_n",
      addLabel: "add_phone",
    }),
    h(
      "fieldset",
      { class: "field field-wide address", id: "address", "aria-describedby": "address-error" },
      h("legend", {}, t("address")),
      h(
        "div",
        { class: "form-grid" },
        field({
          id: "street",
          label: t("street"),
          control: addressInput("street", "street-address"),
          wide: true,
        }),
        field({
          id: "postal_code",
          label: t("postal_code"),
          control: addressInput("postal_code", "postal-code"),
        }),
        field({ id: "city", label: t("city"), control: addressInput("city", "address-level2") }),
        field({
          id: "region",
          label: t("region"),
          control: addressInput("region", "address-level1"),
        }),
        field({
          id: "country",
          label: t("country"),
          control: addressInput("country", "country", { maxlength: 2, class: "short", dir: "ltr" }),
          hint: t("country_hint"),
        }),
      ),
      h("p", { class: "field-error", id: "address-error", hidden: true }),
    ),
    field({ id: "locale", label: t("profile_language"), control: localeSelect }),
    field({
      id: "time_zone",
      label: t("time_zone"),
      control: zoneInput,
      hint: t("time_zone_hint"),
    }),
    zoneList,
    field({ id: "birthday", label: t("birthday"), control: birthday, hint: t("birthday_hint") }),
    h(
      "div",
      { class: "form-actions field-wide" },
      h("button", { type: "submit", class: "button button-primary" }, t("save")),
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    save(app, state, form, problem);
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "profile-title" },
    heading(t("contact_details"), 2, { id: "profile-title" }),
    problem,
    form,
  );
}

function listValues(form, id) {
  return [...form.querySelectorAll(`input[data-list="${id}"]`)]
    .map((input) => input.value.trim())
    .filter(Boolean);
}

/** What the form says, in the API's shape. */
function formValues(form) {
  const value = (name) => form.elements[name].value.trim();
  const values = {};
  for (const name of NAMES) values[name] = value(name) || null;
  values.emails = listValues(form, "emails");
  values.phones = listValues(form, "phones");
  const address = {};
  for (const name of ADDRESS) {
    const part = value(name);
    if (part) address[name] = name === "country" ? part.toUpperCase() : part;
  }
  values.address = Object.keys(address).length ? address : null;
  values.locale = value("locale");
  values.time_zone = value("time_zone") || "UTC";
  values.birthday = value("birthday") || null;
  return values;
}

function comparable(value) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const kept = Object.entries(value).filter(([, part]) => part !== null && part !== "");
    return JSON.stringify(Object.fromEntries(kept.sort()));
  }
  return JSON.stringify(value ?? null);
}

async function save(app, state, form, problem) {
  clearFieldErrors(form);
  clear(problem);
  const wanted = formValues(form);
  const changes = {};
  for (const [name, value] of Object.entries(wanted)) {
    if (comparable(value) !== comparable(state.customer[name])) changes[name] = value;
  }
  if (!Object.keys(changes).length) {
    problem.append(banner("info", h("p", {}, t("nothing_to_save"))));
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const { data, etag } = await call("profiles", `/customers/${enc(state.customer.id)}`, {
      method: "PATCH",
      body: changes,
      etag: state.etag,
    });
    state.customer = data;
    state.etag = etag;
    app.customer = data;
    i18n.setTimeZone(data.time_zone);
    app.flash({ kind: "saved" });
    if ("locale" in changes) await app.useLocale(data.locale);
    await app.navigate("me", { replace: true });
    app.announce(t("profile_saved"));
  } catch (error) {
    button.disabled = false;
    showSaveProblem(app, form, problem, error);
  }
}

function showSaveProblem(app, form, problem, error) {
  if (error instanceof ApiError && error.status === 422 && Array.isArray(error.problem.errors)) {
    const items = [];
    for (const item of error.problem.errors) {
      const [, name, index] = item.location || [];
      const id = ADDRESS.includes(index) ? index : name;
      const message = t("invalid_value");
      if (name === "emails" || name === "phones" || name === "address") {
        const box = form.querySelector(`#${name}-error`);
        if (box) {
          box.textContent = message;
          box.hidden = false;
        }
        const inputs = form.querySelectorAll(`input[data-list="${name}"]`);
        const position = Number(index);
        if (Number.isInteger(position) && inputs[position]) {
          inputs[position].setAttribute("aria-invalid", "true");
        }
        if (name === "address" && id) showFieldError(form, id, message);
      } else if (id && form.querySelector(`#${CSS.escape(id)}`)) {
        showFieldError(form, id, message);
      }
      const labelled = form.querySelector(
        `label[for="${CSS.escape(String(id))}"], #${CSS.escape(String(name))} > legend`,
      );
      items.push(h("li", {}, labelled ? labelled.textContent : String(name)));
    }
    problem.append(banner("error", h("p", {}, t("fix_fields")), h("ul", {}, items)));
    form.querySelector("[aria-invalid=true]")?.focus();
    return;
  }
  if (error instanceof ApiError && error.status === 409) {
    problem.append(banner("error", h("p", {}, t("contact_taken"))));
    return;
  }
  if (error instanceof ApiError && error.status === 412) {
    app.flash(null);
    problem.append(
      banner(
        "error",
        h("p", {}, t("changed_meanwhile")),
        h(
          "button",
          { type: "button", class: "button", onclick: () => app.navigate("me", { replace: true }) },
          t("reload"),
        ),
      ),
    );
    return;
  }
  problem.append(banner("error", h("p", {}, failure(error))));
}

// ---- consents -------------------------------------------------------------------------

function isOn(state) {
  // What notifications does without an explicit decision: service messages go, offers do not.
  if (state.granted === null || state.granted === undefined)
    return state.purpose === "transactional";
  return state.granted;
}

function consentSection(app, customerId, overview) {
  const states = new Map(
    overview.consents.map((state) => [`${state.channel}:${state.purpose}`, state]),
  );
  const status = h("div", { class: "form-problem", id: "consent-status" });
  const rows = CHANNELS.map((channel) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, t(`channel_${channel}`)),
      PURPOSES.map((purpose) => {
        const state = states.get(`${channel}:${purpose}`) || { channel, purpose, granted: null };
        const box = h("input", {
          type: "checkbox",
          id: `consent-${channel}-${purpose}`,
          checked: isOn(state),
          "aria-label": `${t(`channel_${channel}`)}: ${t(`purpose_${purpose}`)}`,
          dataset: { channel, purpose },
        });
        box.addEventListener("change", () => changeConsent(app, customerId, box, status));
        const note =
          state.granted === null || state.granted === undefined ? t("consent_default") : null;
        return h(
          "td",
          {},
          h("span", { class: "switch" }, box),
          note ? h("span", { class: "hint" }, note) : null,
        );
      }),
    ),
  );
  return h(
    "section",
    { class: "card", "aria-labelledby": "consents-title" },
    heading(t("consents_title"), 2, { id: "consents-title" }),
    h("p", {}, t("consents_intro")),
    status,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "consents", id: "consents" },
        h("caption", { class: "visually-hidden" }, t("consents_title")),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col" }, t("channel")),
            PURPOSES.map((purpose) => h("th", { scope: "col" }, t(`purpose_${purpose}`))),
          ),
        ),
        h("tbody", {}, rows),
      ),
    ),
    h("p", { class: "fine-print" }, t("consents_fine_print")),
  );
}

async function changeConsent(app, customerId, box, status) {
  const { channel, purpose } = box.dataset;
  const granted = box.checked;
  box.disabled = true;
  clear(status);
  try {
    await call("profiles", `/customers/${enc(customerId)}/consents/${channel}/${purpose}`, {
      method: "PUT",
      body: { granted },
    });
    const hint = box.closest("td").querySelector(".hint");
    if (hint) hint.remove();
    const message = t(granted ? "consent_on" : "consent_off", {
      channel: t(`channel_${channel}`),
      purpose: t(`purpose_${purpose}`),
    });
    status.append(banner("success", h("p", {}, message)));
  } catch (error) {
    box.checked = !granted;
    status.append(banner("error", h("p", {}, failure(error))));
  } finally {
    box.disabled = false;
  }
}
