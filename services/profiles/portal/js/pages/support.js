/* Support: the customer's requests (complaints) with their status, opening a new one and
 * following it. While the description is typed, matching help articles are suggested.
 * The answer to a new request says when the first reply and the resolution are due. A
 * request shows the public replies only (the API never gives a customer internal notes,
 * and the page would not show one if it did), and refreshes itself while it is open. */

import { ApiError, call, enc, session } from "../api.js";
import {
  banner,
  clear,
  clearFieldErrors,
  debounce,
  failure,
  field,
  h,
  heading,
  link,
  put,
  showFieldError,
  timeOf,
} from "../dom.js";
import * as i18n from "../i18n.js";
import { articleContent } from "./help.js";

const { t } = i18n;
export const CATEGORIES = ["delivery", "product", "billing", "returns", "account", "other"];
const REFRESH_MS = 4000;
const FINISHED = new Set(["resolved", "closed"]);

function statusBadge(status) {
  return h(
    "span",
    { class: `status status-${status}`, dataset: { status } },
    i18n.label("status", status),
  );
}

// ---- the list ------------------------------------------------------------------------

export async function renderList(app, view) {
  app.setTitle(t("support_title"));
  const { data: page } = await call("complaints", "/complaints", { query: { limit: 50 } });
  const list = h("ul", { class: "requests", id: "requests" });
  for (const complaint of page.items) {
    const due = FINISHED.has(complaint.status) ? null : complaint.resolution_due_at;
    list.append(
      h(
        "li",
        { class: "request card", dataset: { complaint: complaint.id } },
        h(
          "div",
          { class: "request-head" },
          h("h3", {}, link(app, `support/${enc(complaint.id)}`, complaint.subject)),
          statusBadge(complaint.status),
        ),
        h(
          "p",
          { class: "meta" },
          i18n.label("category", complaint.category),
          " · ",
          t("opened_on"),
          " ",
          timeOf(complaint.created_at, i18n.dateTime(complaint.created_at)),
          due ? [" · ", t("resolution_due_by"), " ", timeOf(due, i18n.dateTime(due))] : null,
        ),
      ),
    );
  }
  view.append(
    h(
      "div",
      { class: "page-head" },
      heading(t("support_title")),
      link(app, "support/new", t("new_request"), {
        class: "button button-primary",
        id: "new-request",
      }),
    ),
    h("p", { class: "lead" }, t("support_intro")),
    h("h2", {}, t("your_requests")),
    page.items.length ? list : h("p", { class: "empty" }, t("no_requests")),
  );
}

// ---- a new request ---------------------------------------------------------------------

async function purchases(customerId) {
  try {
    const { data } = await call("profiles", `/customers/${enc(customerId)}/ledger`, {
      query: { limit: 50 },
    });
    return data.items.filter((entry) => entry.kind === "purchase");
  } catch {
    return []; // the request can be sent without naming a purchase
  }
}

function purchaseLabel(entry) {
  const items = entry.items.map((item) => item.name || item.sku).join(", ");
  return `${i18n.date(entry.occurred_at)} · ${items} · ${i18n.money(entry.amount, entry.currency)}`;
}

export async function renderNew(app, view) {
  app.setTitle(t("new_request"));
  const customerId = session.get().customer_id;
  const bought = await purchases(customerId);
  const category = h(
    "select",
    { name: "category", required: true },
    h("option", { value: "" }, t("choose")),
    CATEGORIES.map((value) => h("option", { value }, t(`category_${value}`))),
  );
  const subject = h("input", { type: "text", name: "subject", maxlength: 200, required: true });
  const description = h("textarea", {
    name: "description",
    rows: 7,
    maxlength: 20000,
    required: true,
  });
  const purchase = h(
    "select",
    { name: "purchase" },
    h("option", { value: "" }, t("no_purchase")),
    bought.map((entry) => h("option", { value: entry.purchase_id }, purchaseLabel(entry))),
  );
  const suggestionList = h("ul", { class: "suggestion-list", id: "suggestion-list" });
  const suggestions = h(
    "aside",
    {
      class: "suggestions",
      id: "suggestions",
      "aria-labelledby": "suggestions-title",
      hidden: true,
    },
    h("h2", { id: "suggestions-title" }, t("suggestions_title")),
    h("p", { class: "hint" }, t("suggestions_hint")),
    suggestionList,
  );
  const live = h("p", { class: "visually-hidden", "aria-live": "polite", id: "suggestions-live" });
  const problem = h("div", { class: "form-problem" });
  const form = h(
    "form",
    { class: "stack", novalidate: true, id: "request-form" },
    field({ id: "request-category", label: t("category"), control: category }),
    field({
      id: "request-subject",
      label: t("subject"),
      control: subject,
      hint: t("subject_hint"),
    }),
    field({
      id: "request-description",
      label: t("description"),
      control: description,
      hint: t("description_hint"),
    }),
    field({ id: "request-purchase", label: t("purchase_optional"), control: purchase }),
    h("button", { type: "submit", class: "button button-primary" }, t("send_request")),
  );
  const dialog = articleDialog(app);
  view.append(
    h("p", { class: "back" }, link(app, "support", t("back_to_support"), { class: "back-link" })),
    heading(t("new_request")),
    h("p", { class: "lead" }, t("new_request_intro")),
    h(
      "div",
      { class: "with-aside" },
      h("div", { class: "card" }, problem, form),
      h("div", {}, suggestions, live),
    ),
    dialog.element,
  );

  let asked = 0;
  const suggest = debounce(async () => {
    const text = `${subject.value} ${description.value}`.trim();
    const mine = ++asked;
    if (text.length < 3) {
      suggestions.hidden = true;
      return;
    }
    // The words typed last count most; the API takes up to 500 characters.
    const q = text.length > 480 ? text.slice(-480).replace(/^\S*\s/, "") : text;
    let found = [];
    try {
      ({ data: found } = await call("complaints", "/help/suggestions", {
        query: { q, locale: i18n.locale() },
      }));
    } catch {
      found = []; // suggestions are a help, never in the way
    }
    if (mine !== asked) return;
    clear(suggestionList);
    for (const suggestion of found) {
      const open = h(
        "button",
        {
          type: "button",
          class: "link-button",
          lang: suggestion.locale,
          dir: suggestion.direction,
        },
        suggestion.title,
      );
      open.addEventListener("click", () => dialog.show(suggestion.id, open));
      suggestionList.append(h("li", { dataset: { article: suggestion.id } }, open));
    }
    const before = suggestions.hidden;
    suggestions.hidden = found.length === 0;
    if (found.length && before) live.textContent = i18n.tn("suggestions_found", found.length);
  }, 300);
  description.addEventListener("input", suggest);
  subject.addEventListener("input", suggest);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    clear(problem);
    const missing = [
      ["request-category", category],
      ["request-subject", subject],
      ["request-description", description],
    ].filter(([, control]) => !control.value.trim());
    for (const [id] of missing) showFieldError(form, id, t("required"));
    if (missing.length) {
      missing[0][1].focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { data: complaint } = await call("complaints", "/complaints", {
        method: "POST",
        body: {
          customer_id: customerId,
          channel: "web",
          category: category.value,
          subject: subject.value.trim(),
          description: description.value.trim(),
          related_purchase_id: purchase.value || undefined,
        },
      });
      suggest.cancel();
      app.flash({ kind: "opened", complaint });
      await app.navigate(`support/${enc(complaint.id)}`);
    } catch (error) {
      button.disabled = false;
      problem.append(banner("error", h("p", {}, failure(error))));
    }
  });
  return () => suggest.cancel();
}

function articleDialog(app) {
  const body = h("div", { class: "dialog-body" });
  const title = h("h2", { id: "dialog-title" });
  const more = h("p", { class: "dialog-more" });
  const close = h("button", { type: "button", class: "button" }, t("close"));
  const element = h(
    "dialog",
    { class: "article-dialog", "aria-labelledby": "dialog-title", id: "article-dialog" },
    title,
    body,
    more,
    h("div", { class: "form-actions" }, close),
  );
  let opener = null;
  close.addEventListener("click", () => element.close());
  element.addEventListener("close", () => opener && opener.focus());
  const show = async (id, from) => {
    opener = from;
    clear(body).append(h("p", { class: "loading" }, t("loading")));
    title.textContent = from.textContent;
    clear(more);
    element.showModal();
    try {
      const { article, body: content } = await articleContent(id);
      title.textContent = article.title;
      title.setAttribute("lang", article.locale);
      title.setAttribute("dir", article.direction);
      clear(body).append(content);
      more.append(
        link(app, `help/${enc(article.id)}`, t("open_in_help"), {
          target: "_blank",
          rel: "noopener",
        }),
      );
    } catch (error) {
      clear(body).append(banner("error", h("p", {}, failure(error))));
    }
  };
  return { element, show };
}

// ---- one request -----------------------------------------------------------------------

function dueFact(label, clock, due, id, doneText) {
  let value;
  if (clock && clock.met_at)
    value = [doneText, " ", timeOf(clock.met_at, i18n.dateTime(clock.met_at))];
  else if (due) value = [t("due_by"), " ", timeOf(due, i18n.dateTime(due), { id })];
  else value = "—";
  return [h("dt", {}, label), h("dd", { dataset: { fact: id } }, value)];
}

function facts(complaint) {
  const sla = complaint.sla || {};
  return h(
    "dl",
    { class: "facts", id: "request-facts" },
    h("dt", {}, t("status")),
    h("dd", {}, statusBadge(complaint.status)),
    h("dt", {}, t("category")),
    h("dd", {}, i18n.label("category", complaint.category)),
    h("dt", {}, t("opened")),
    h("dd", {}, timeOf(complaint.created_at, i18n.dateTime(complaint.created_at))),
    complaint.related_purchase_id
      ? [
          h("dt", {}, t("purchase")),
          h("dd", { id: "request-purchase" }, complaint.related_purchase_id),
        ]
      : null,
    dueFact(
      t("first_reply"),
      sla.first_response,
      complaint.first_response_due_at,
      "first-reply-due",
      t("answered_on"),
    ),
    dueFact(
      t("resolution"),
      sla.resolution,
      complaint.resolution_due_at,
      "resolution-due",
      t("resolved_on"),
    ),
    h("dt", {}, t("reference")),
    h("dd", {}, h("code", {}, complaint.id)),
  );
}

function conversation(complaint) {
  const replies = (complaint.comments || []).filter((comment) => comment.visibility === "public");
  if (!replies.length) {
    return h("p", { class: "empty", id: "conversation" }, t("no_replies_yet"));
  }
  return h(
    "ol",
    { class: "conversation", id: "conversation" },
    replies.map((comment) =>
      h(
        "li",
        {
          class: comment.by_customer ? "message from-customer" : "message from-staff",
          dataset: { comment: comment.id },
        },
        h(
          "p",
          { class: "message-head" },
          h("strong", {}, comment.by_customer ? t("you") : t("customer_service")),
          " · ",
          timeOf(comment.created_at, i18n.dateTime(comment.created_at)),
        ),
        h("p", { class: "message-text", dir: "auto" }, comment.text),
      ),
    ),
  );
}

function resolution(complaint) {
  const last = (complaint.resolutions || []).at(-1);
  if (!last) return null;
  return h(
    "section",
    { class: "card resolution", "aria-labelledby": "resolution-title" },
    h("h2", { id: "resolution-title" }, t("resolution_title")),
    h("p", { dir: "auto" }, last.summary),
  );
}

/** From notifications' feedback link (/complaints/{id}/feedback): the request, its
 * rating form in view. */
export async function renderFeedback(app, view, params) {
  const cleanup = await renderRequest(app, view, params);
  const rating = view.querySelector("#rating-title") || view.querySelector("#rated-title");
  if (rating) {
    rating.setAttribute("tabindex", "-1");
    rating.scrollIntoView({ block: "start" });
    rating.focus({ preventScroll: true });
  }
  return cleanup;
}

export async function renderRequest(app, view, [id]) {
  let complaint;
  try {
    ({ data: complaint } = await call("complaints", `/complaints/${enc(id)}`));
  } catch (error) {
    if (!(error instanceof ApiError && (error.status === 404 || error.status === 403))) throw error;
    app.setTitle(t("request_missing"));
    view.append(
      heading(t("request_missing")),
      h("p", {}, link(app, "support", t("back_to_support"))),
    );
    return undefined;
  }
  app.setTitle(complaint.subject);
  const flashed = app.takeFlash();
  const factsBox = h("div", {}, facts(complaint));
  const conversationBox = h("div", { "aria-live": "polite" }, conversation(complaint));
  const resolutionBox = h("div", {}, resolution(complaint));
  const followUpBox = h("div", { id: "follow-up" });
  const problem = h("div", { class: "form-problem" });
  const reply = h("textarea", { name: "reply", rows: 4, maxlength: 20000 });
  const replyForm = h(
    "form",
    { class: "stack", novalidate: true, id: "reply-form" },
    field({ id: "reply-text", label: t("your_reply"), control: reply }),
    h("button", { type: "submit", class: "button button-primary" }, t("send_reply")),
  );
  const replySection = h(
    "section",
    { class: "card", "aria-labelledby": "reply-title", hidden: complaint.status === "closed" },
    h("h2", { id: "reply-title" }, t("reply_title")),
    problem,
    replyForm,
  );
  put(
    view,
    h("p", { class: "back" }, link(app, "support", t("back_to_support"), { class: "back-link" })),
    h("h1", { tabindex: "-1", dir: "auto" }, complaint.subject),
    flashed && flashed.kind === "opened"
      ? banner(
          "success",
          h("p", {}, h("strong", {}, t("request_received"))),
          h(
            "p",
            { id: "promise" },
            t("request_promise_first"),
            " ",
            timeOf(complaint.first_response_due_at, i18n.dateTime(complaint.first_response_due_at)),
            "; ",
            t("request_promise_resolution"),
            " ",
            timeOf(complaint.resolution_due_at, i18n.dateTime(complaint.resolution_due_at)),
            ".",
          ),
        )
      : null,
    h(
      "section",
      { class: "card", "aria-labelledby": "facts-title" },
      h("h2", { id: "facts-title", class: "visually-hidden" }, t("request_details")),
      factsBox,
    ),
    resolutionBox,
    followUpBox,
    h(
      "section",
      { class: "card", "aria-labelledby": "description-title" },
      h("h2", { id: "description-title" }, t("your_message")),
      h("p", { class: "message-text", dir: "auto" }, complaint.description),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "replies-title" },
      h("h2", { id: "replies-title" }, t("replies")),
      conversationBox,
    ),
    replySection,
  );

  let shown = JSON.stringify(complaint);
  // Redrawn only when the status or the feedback changes: never under the customer's typing.
  const stage = (of) => `${of.status}:${(of.feedback || []).length}`;
  let followUpStage = null;
  const showFollowUp = (latest, message) => {
    if (stage(latest) === followUpStage && !message) return;
    followUpStage = stage(latest);
    put(clear(followUpBox), followUp(latest, show, message));
  };
  const show = (latest, message = null) => {
    const text = JSON.stringify(latest);
    if (text === shown && !message) return;
    const before = (complaint.comments || []).length;
    shown = text;
    complaint = latest;
    clear(factsBox).append(facts(latest));
    clear(conversationBox).append(conversation(latest));
    clear(resolutionBox).append(resolution(latest) || "");
    showFollowUp(latest, message);
    replySection.hidden = latest.status === "closed";
    if ((latest.comments || []).length > before) app.announce(t("new_reply"));
    if (message) app.announce(message);
  };
  showFollowUp(complaint);

  replyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(replyForm);
    clear(problem);
    if (!reply.value.trim()) {
      showFieldError(replyForm, "reply-text", t("required"));
      reply.focus();
      return;
    }
    const button = replyForm.querySelector("button");
    button.disabled = true;
    try {
      const { data } = await call("complaints", `/complaints/${enc(complaint.id)}/comments`, {
        method: "POST",
        body: { text: reply.value.trim(), visibility: "public" },
      });
      reply.value = "";
      show(data);
      app.announce(t("reply_sent"));
    } catch (error) {
      problem.append(banner("error", h("p", {}, failure(error))));
    } finally {
      button.disabled = false;
    }
  });

  // Replies arrive while the customer looks: ask again now and then, while visible.
  const timer = setInterval(async () => {
    if (!view.isConnected || document.visibilityState !== "visible") return;
    try {
      const { data } = await call("complaints", `/complaints/${enc(complaint.id)}`);
      if (view.isConnected) show(data);
    } catch {
      // The next round tries again.
    }
  }, REFRESH_MS);
  return () => clearInterval(timer);
}

// ---- after the resolution: rate it, or reopen it ----------------------------------------

function scale(name, from, to, legend, hint, lowText, highText) {
  const id = `${name}-scale`;
  return h(
    "fieldset",
    {
      class: "field field-wide scale",
      id,
      "aria-describedby": hint ? `${id}-hint ${id}-error` : `${id}-error`,
    },
    h("legend", {}, legend),
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
    h(
      "div",
      { class: "scale-options" },
      Array.from({ length: to - from + 1 }, (_, index) => {
        const value = from + index;
        const label =
          value === from ? `${i18n.number(value)}: ${lowText}` : value === to
            ? `${i18n.number(value)}: ${highText}`
            : i18n.number(value);
        return h(
          "label",
          { class: "scale-option" },
          h("input", { type: "radio", name, value: String(value), "aria-label": label }),
          h("span", { "aria-hidden": "true" }, i18n.number(value)),
        );
      }),
    ),
    h("p", { class: "field-error", id: `${id}-error`, hidden: true }),
  );
}

function ratingForm(complaint, show) {
  const comment = h("textarea", { name: "comment", rows: 3, maxlength: 5000 });
  const problem = h("div", { class: "form-problem" });
  const form = h(
    "form",
    { class: "stack", novalidate: true, id: "rating-form" },
    scale("csat", 1, 5, t("rating_csat"), null, t("rating_csat_low"), t("rating_csat_high")),
    scale(
      "nps",
      0,
      10,
      t("rating_nps"),
      t("rating_nps_hint"),
      t("rating_nps_low"),
      t("rating_nps_high"),
    ),
    field({ id: "rating-comment", label: t("rating_comment"), control: comment }),
    h("button", { type: "submit", class: "button button-primary" }, t("rating_send")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(problem);
    const error = form.querySelector("#csat-scale-error");
    error.hidden = true;
    form.querySelector("#csat-scale").removeAttribute("aria-invalid");
    const csat = form.querySelector("input[name=csat]:checked");
    const nps = form.querySelector("input[name=nps]:checked");
    if (!csat) {
      error.textContent = t("rating_csat_required");
      error.hidden = false;
      form.querySelector("#csat-scale").setAttribute("aria-invalid", "true");
      form.querySelector("input[name=csat]").focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { data } = await call("complaints", `/complaints/${enc(complaint.id)}/feedback`, {
        method: "POST",
        body: {
          csat: Number(csat.value),
          nps: nps ? Number(nps.value) : undefined,
          comment: comment.value.trim() || undefined,
        },
      });
      show(data, t("rating_thanks"));
    } catch (failed) {
      button.disabled = false;
      const text =
        failed instanceof ApiError && failed.status === 409 ? t("rating_already") : failure(failed);
      problem.append(banner("error", h("p", {}, text)));
    }
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "rating-title", id: "rating" },
    h("h2", { id: "rating-title" }, t("rating_title")),
    h("p", {}, t("rating_intro")),
    problem,
    form,
  );
}

function rated(feedback) {
  return h(
    "section",
    { class: "card", "aria-labelledby": "rated-title", id: "rated" },
    h("h2", { id: "rated-title" }, t("rating_done_title")),
    h(
      "p",
      { dataset: { csat: feedback.csat } },
      t("rating_done", { csat: i18n.number(feedback.csat) }),
      feedback.nps !== null && feedback.nps !== undefined
        ? [" ", t("rating_done_nps", { nps: i18n.number(feedback.nps) })]
        : null,
    ),
    feedback.comment ? h("p", { class: "message-text", dir: "auto" }, feedback.comment) : null,
  );
}

function reopenForm(complaint, show) {
  const reason = h("textarea", { name: "reason", rows: 3, maxlength: 20000 });
  const problem = h("div", { class: "form-problem" });
  const form = h(
    "form",
    { class: "stack", novalidate: true, id: "reopen-form" },
    field({ id: "reopen-reason", label: t("reopen_reason"), control: reason }),
    h("button", { type: "submit", class: "button" }, t("reopen_send")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(problem);
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { data } = await call("complaints", `/complaints/${enc(complaint.id)}/reopen`, {
        method: "POST",
        body: reason.value.trim() ? { reason: reason.value.trim() } : {},
      });
      show(data, t("reopen_done"));
    } catch (failed) {
      button.disabled = false;
      const text =
        failed instanceof ApiError && failed.status === 409 ? t("reopen_too_late") : failure(failed);
      problem.append(banner("error", h("p", {}, text)));
    }
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "reopen-title", id: "reopen" },
    h("h2", { id: "reopen-title" }, t("reopen_title")),
    h("p", {}, t("reopen_intro")),
    problem,
    form,
  );
}

/** What the customer can do once the request is resolved: rate the resolution (once per
 * resolution) and, while the reopen window lasts, reopen it. */
function followUp(complaint, show, message) {
  const done = FINISHED.has(complaint.status);
  const notice = message ? banner("success", h("p", {}, message)) : null;
  if (!done) return notice;
  const last = (complaint.resolutions || []).at(-1);
  const given = last && (complaint.feedback || []).find((item) => item.resolution === last.number);
  const canReopen = (complaint.allowed_transitions || []).includes("reopened");
  return [
    notice,
    last ? (given ? rated(given) : ratingForm(complaint, show)) : null,
    canReopen ? reopenForm(complaint, show) : null,
  ];
}
