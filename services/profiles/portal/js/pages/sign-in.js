/* Signing in without a password: the customer gives an e-mail address and gets a link
 * (<portal>/sign-in#token=...) that works once, for a few minutes. Opening it here redeems
 * the token for a customer token, then goes back to where the customer was going when
 * sign-in got in the way (a feedback link, a bookmark), or else to Me. A link that cannot
 * be used gets a page of its own that says why (the API's `reason`, and its words) and
 * offers a new one. */

import { ApiError, call, session } from "../api.js";
import {
  banner,
  clear,
  clearFieldErrors,
  failure,
  field,
  h,
  heading,
  showFieldError,
} from "../dom.js";
import { locale, t } from "../i18n.js";

const REASONS = ["expired", "used", "withdrawn", "account_closed", "unknown", "malformed"];

export async function render(app, view) {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has("token")) return redeem(app, view, fragment.get("token"));
  if (session.get()) return app.navigate(app.takeReturnPath() || "me", { replace: true });
  const flashed = app.takeFlash();
  let notice = null;
  if (flashed && flashed.kind === "signed-out") notice = t("signed_out");
  if (flashed && flashed.kind === "expired") notice = t("session_expired");
  if (flashed && flashed.kind === "erased") notice = t("data_erased");
  renderForm(app, view, { notice });
  return undefined;
}

function renderForm(app, view, { notice = null, email = "", title = null } = {}) {
  if (!title) app.setTitle(t("sign_in_title"));
  const input = h("input", {
    type: "email",
    name: "email",
    dir: "ltr",
    autocomplete: "email",
    inputmode: "email",
    spellcheck: "false",
    autocapitalize: "off",
    required: true,
    maxlength: 320,
    value: email,
  });
  const form = h(
    "form",
    { class: "stack", novalidate: true, id: "sign-in-form" },
    field({ id: "sign-in-email", label: t("email_address"), control: input }),
    h("button", { type: "submit", class: "button button-primary" }, t("send_link")),
  );
  const problem = h("div", { class: "form-problem" });
  const card = h(
    "section",
    { class: "card narrow", "aria-labelledby": "sign-in-title" },
    heading(title || t("sign_in_title"), title ? 2 : 1, { id: "sign-in-title" }),
    notice ? banner("info", h("p", {}, notice)) : null,
    h("p", {}, t("sign_in_intro")),
    problem,
    form,
    h("p", { class: "fine-print" }, t("sign_in_privacy")),
  );
  view.append(card);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    clear(problem);
    const address = input.value.trim();
    if (!address || !input.checkValidity()) {
      showFieldError(form, "sign-in-email", t("email_invalid"));
      input.focus();
      return;
    }
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await call("profiles", "/portal/sign-in", {
        method: "POST",
        body: { email: address, locale: locale() },
        auth: false,
      });
      clear(view);
      renderSent(app, view, address);
    } catch (error) {
      button.disabled = false;
      if (error instanceof ApiError && error.status === 422) {
        showFieldError(form, "sign-in-email", t("email_invalid"));
        input.focus();
      } else {
        problem.append(banner("error", h("p", {}, failure(error))));
      }
    }
  });
  return card;
}

function renderSent(app, view, email) {
  app.setTitle(t("check_inbox_title"));
  const minutes = app.config.sign_in_link_minutes || 15;
  const again = h("button", { type: "button", class: "button" }, t("use_another_address"));
  const card = h(
    "section",
    { class: "card narrow", "aria-labelledby": "sent-title", id: "link-sent" },
    heading(t("check_inbox_title"), 1, { id: "sent-title" }),
    h("p", {}, t("check_inbox_text", { email, minutes })),
    h("p", { class: "fine-print" }, t("check_inbox_hint")),
    again,
  );
  again.addEventListener("click", () => {
    clear(view);
    renderForm(app, view, { email });
    view.querySelector("input").focus();
  });
  view.append(card);
  card.querySelector("h1").focus();
}

async function redeem(app, view, token) {
  // The token leaves the address bar (and the history) before anything else happens.
  history.replaceState(null, "", app.url("sign-in"));
  app.setTitle(t("signing_in"));
  view.append(
    h(
      "section",
      { class: "card narrow", "aria-busy": "true" },
      heading(t("signing_in")),
      h("p", { class: "loading" }, t("signing_in_text")),
    ),
  );
  let signedIn;
  try {
    ({ data: signedIn } = await call("profiles", "/portal/sign-in/redeem", {
      method: "POST",
      body: { token: token || "" },
      auth: false,
    }));
  } catch (error) {
    clear(view);
    if (error instanceof ApiError && (error.reason || error.status === 422)) {
      renderRefused(app, view, error.reason || "malformed", error.detail);
      return undefined;
    }
    throw error;
  }
  session.save(signedIn);
  await app.signedIn();
  // Back where the customer was going when sign-in got in the way (a feedback link), else Me.
  const wanted = app.takeReturnPath();
  if (wanted) {
    app.announce(t("welcome"));
    return app.navigate(wanted, { replace: true });
  }
  app.flash({ kind: "welcome" });
  return app.navigate("me", { replace: true });
}

function renderRefused(app, view, reason, detail) {
  const known = REASONS.includes(reason) ? reason : "unknown";
  app.setTitle(t(`link_${known}_title`));
  const card = h(
    "section",
    {
      class: "card narrow",
      id: "link-refused",
      dataset: { reason },
      "aria-labelledby": "refused-title",
    },
    heading(t(`link_${known}_title`), 1, { id: "refused-title" }),
    h("p", {}, t(`link_${known}_text`)),
    detail
      ? h(
          "p",
          { class: "api-reason" },
          h("span", {}, `${t("link_api_reason")} `),
          h("q", { lang: "en", dir: "ltr", id: "api-reason" }, detail),
        )
      : null,
  );
  view.append(card);
  renderForm(app, view, { title: t("ask_new_link") });
  card.querySelector("h1").focus();
}
