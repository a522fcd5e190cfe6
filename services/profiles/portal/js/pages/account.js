/* The customer's rights and message preferences, on the Me page: which messages
 * notifications may send on which channel and when not (opt-outs per channel and purpose,
 * quiet hours: notifications' preferences API), the GDPR export (everything profiles
 * holds, saved as a JSON file) and erasure, confirmed by typing the account's e-mail
 * address; an erased account is signed out at once. */

import { ApiError, call, enc, session } from "../api.js";
import { banner, clear, clearFieldErrors, failure, field, h, heading, showFieldError } from "../dom.js";
import * as i18n from "../i18n.js";

const { t } = i18n;
const CHANNELS = ["email", "sms", "in_app"];
const PURPOSES = ["transactional", "marketing"];
const QUIET = ["default", "own", "off"];

// ---- message preferences ------------------------------------------------------------------

export async function preferencesSection(app, customerId) {
  const section = h(
    "section",
    { class: "card", "aria-labelledby": "preferences-title", id: "preferences" },
    heading(t("prefs_title"), 2, { id: "preferences-title" }),
    h("p", {}, t("prefs_intro")),
  );
  let preferences;
  try {
    ({ data: preferences } = await call(
      "notifications",
      `/customers/${enc(customerId)}/preferences`,
    ));
  } catch (error) {
    section.append(banner("error", h("p", {}, failure(error))));
    return section;
  }
  const optedOut = new Set(preferences.opt_outs.map((o) => `${o.channel}:${o.purpose}`));
  const status = h("div", { class: "form-problem", id: "preferences-status" });
  const rows = CHANNELS.map((channel) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, t(`channel_${channel}`)),
      PURPOSES.map((purpose) =>
        h(
          "td",
          {},
          h(
            "span",
            { class: "switch" },
            h("input", {
              type: "checkbox",
              id: `pref-${channel}-${purpose}`,
              checked: !optedOut.has(`${channel}:${purpose}`),
              "aria-label": `${t(`channel_${channel}`)}: ${t(`purpose_${purpose}`)}`,
              dataset: { channel, purpose },
            }),
          ),
        ),
      ),
    ),
  );
  const mode = preferences.quiet_hours_off ? "off" : preferences.quiet_hours ? "own" : "default";
  const start = h("input", {
    type: "time",
    name: "quiet_start",
    value: preferences.quiet_hours ? preferences.quiet_hours.start : "21:00",
  });
  const end = h("input", {
    type: "time",
    name: "quiet_end",
    value: preferences.quiet_hours ? preferences.quiet_hours.end : "08:00",
  });
  const hours = h(
    "div",
    { class: "form-grid quiet-hours", id: "quiet-hours-times", hidden: mode !== "own" },
    field({ id: "quiet-start", label: t("prefs_quiet_from"), control: start }),
    field({ id: "quiet-end", label: t("prefs_quiet_until"), control: end }),
  );
  const choices = QUIET.map((value) => {
    const radio = h("input", {
      type: "radio",
      name: "quiet",
      id: `quiet-${value}`,
      value,
      checked: value === mode,
    });
    radio.addEventListener("change", () => (hours.hidden = value !== "own"));
    return h("p", { class: "checkbox-row" }, radio, " ", h("label", { for: `quiet-${value}` }, t(`prefs_quiet_${value}`)));
  });
  const form = h(
    "form",
    { class: "stack", novalidate: true, id: "preferences-form" },
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "consents", id: "preferences-table" },
        h("caption", { class: "visually-hidden" }, t("prefs_title")),
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
    h(
      "fieldset",
      { class: "field field-wide" },
      h("legend", {}, t("prefs_quiet_title")),
      h("p", { class: "hint" }, t("prefs_quiet_hint")),
      choices,
      hours,
    ),
    h("button", { type: "submit", class: "button button-primary" }, t("prefs_save")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    clear(status);
    const chosen = form.querySelector("input[name=quiet]:checked").value;
    if (chosen === "own") {
      const bad = [
        ["quiet-start", start],
        ["quiet-end", end],
      ].filter(([, control]) => !/^\d\d:\d\d$/.test(control.value));
      for (const [id] of bad) showFieldError(form, id, t("invalid_value"));
      if (bad.length) {
        bad[0][1].focus();
        return;
      }
    }
    // Opt-outs this page does not show (webhooks) are kept as they are.
    const kept = preferences.opt_outs.filter((o) => !CHANNELS.includes(o.channel));
    const chosenOut = [...form.querySelectorAll("input[data-channel]")]
      .filter((box) => !box.checked)
      .map((box) => ({ channel: box.dataset.channel, purpose: box.dataset.purpose }));
    const body = {
      opt_outs: [...kept, ...chosenOut],
      quiet_hours: chosen === "own" ? { start: start.value, end: end.value } : null,
      quiet_hours_off: chosen === "off",
    };
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      ({ data: preferences } = await call(
        "notifications",
        `/customers/${enc(customerId)}/preferences`,
        { method: "PUT", body },
      ));
      status.append(banner("success", h("p", {}, t("prefs_saved"))));
      app.announce(t("prefs_saved"));
    } catch (error) {
      const text = error instanceof ApiError && error.status === 422 ? t("invalid_value") : failure(error);
      status.append(banner("error", h("p", {}, text)));
    } finally {
      button.disabled = false;
    }
  });
  section.append(status, form);
  return section;
}

// ---- the GDPR export and erasure -------------------------------------------------------------

function saveFile(name, data) {
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const anchor = h("a", { href: url, download: name, hidden: true });
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function dataSection(app, customer) {
  const status = h("div", { class: "form-problem", id: "data-status" });
  const download = h(
    "button",
    { type: "button", class: "button", id: "download-export" },
    t("data_export"),
  );
  download.addEventListener("click", async () => {
    download.disabled = true;
    clear(status);
    try {
      const { data } = await call("profiles", `/customers/${enc(customer.id)}/export`);
      saveFile(`customer-${customer.id}.json`, data);
      status.append(banner("success", h("p", {}, t("data_export_done"))));
    } catch (error) {
      status.append(banner("error", h("p", {}, failure(error))));
    } finally {
      download.disabled = false;
    }
  });

  // Erasure: a second step that names what goes, confirmed by typing the e-mail address.
  const addresses = (customer.emails || []).map((email) => email.toLowerCase());
  const confirm = h("input", {
    type: "email",
    name: "confirm_email",
    dir: "ltr",
    autocomplete: "off",
    spellcheck: "false",
    autocapitalize: "off",
  });
  const problem = h("div", { class: "form-problem" });
  const cancel = h("button", { type: "button", class: "button" }, t("data_erase_cancel"));
  const eraseForm = h(
    "form",
    { class: "stack danger-zone", novalidate: true, id: "erase-form", hidden: true },
    banner("info", h("p", {}, t("data_erase_warning"))),
    problem,
    field({
      id: "erase-confirm",
      label: addresses.length ? t("data_erase_type_email") : t("data_erase_type_reference"),
      control: confirm,
      hint: addresses.length ? null : customer.id,
    }),
    h(
      "div",
      { class: "form-actions" },
      h("button", { type: "submit", class: "button button-danger" }, t("data_erase_confirm")),
      cancel,
    ),
  );
  const start = h(
    "button",
    {
      type: "button",
      class: "button",
      id: "erase-start",
      "aria-expanded": "false",
      "aria-controls": "erase-form",
    },
    t("data_erase"),
  );
  start.addEventListener("click", () => {
    eraseForm.hidden = false;
    start.setAttribute("aria-expanded", "true");
    confirm.focus();
  });
  cancel.addEventListener("click", () => {
    eraseForm.hidden = true;
    confirm.value = "";
    clearFieldErrors(eraseForm);
    start.setAttribute("aria-expanded", "false");
    start.focus();
  });
  eraseForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(eraseForm);
    clear(problem);
    const typed = confirm.value.trim().toLowerCase();
    const matches = addresses.length ? addresses.includes(typed) : typed === customer.id.toLowerCase();
    if (!matches) {
      showFieldError(eraseForm, "erase-confirm", t("data_erase_mismatch"));
      confirm.focus();
      return;
    }
    const button = eraseForm.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await call("profiles", `/customers/${enc(customer.id)}`, { method: "DELETE" });
    } catch (error) {
      button.disabled = false;
      problem.append(banner("error", h("p", {}, failure(error))));
      return;
    }
    // Gone: the token names a customer who no longer exists; forget it and leave.
    session.clear();
    app.customer = null;
    app.setUnread(0);
    app.flash({ kind: "erased" });
    await app.navigate("sign-in", { replace: true });
    app.announce(t("data_erased"));
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "data-title", id: "your-data" },
    heading(t("data_title"), 2, { id: "data-title" }),
    h("p", {}, t("data_intro")),
    status,
    h("div", { class: "form-actions" }, download),
    h("h3", {}, t("data_erase_title")),
    h("p", {}, t("data_erase_intro")),
    start,
    eraseForm,
  );
}
