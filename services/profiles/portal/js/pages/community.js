/* The community: customers ask, answer each other and vote; the asker accepts the answer
 * that helped; staff answers are marked; anyone may report a post. Every author shows by
 * nickname (never a real name) with their reputation and loyalty tier; the member's own
 * card shows what their tier gives and lets them choose their nickname. All of it is
 * complaints' /community API; a question in Persian reads right to left in any portal. */

import { ApiError, call, enc } from "../api.js";
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
import { renderMarkdown } from "../markdown.js";

const { t } = i18n;
const PAGE = 20;

// ---- authors ---------------------------------------------------------------------------

/** Who wrote a post: nickname, then reputation and tier (or the staff mark). */
function byline(author, { mine = false, benefits = null } = {}) {
  return h(
    "span",
    { class: "byline", dataset: { nickname: author.nickname } },
    h("strong", { class: "nickname", dir: "auto" }, author.nickname),
    mine ? h("span", { class: "hint" }, ` (${t("community_you")})`) : null,
    author.staff
      ? h("span", { class: "tag tag-staff", dataset: { staff: "" } }, t("community_staff"))
      : [
          h(
            "span",
            { class: "reputation", dataset: { reputation: author.reputation } },
            i18n.tn("community_points", author.reputation),
          ),
          author.tier
            ? h(
                "span",
                {
                  class: `tag tier tier-${author.tier}`,
                  dataset: { tier: author.tier },
                  title: benefits || null,
                },
                t("community_tier", { tier: i18n.label("tier", author.tier) }),
              )
            : null,
        ],
  );
}

let memberCache = null;

// The member's page, its tier's benefits in the portal's language (English if the
// deployment has no text in it).
async function myMember() {
  if (!memberCache) {
    const query = { locale: i18n.locale() };
    memberCache = (await call("complaints", "/community/members/me", { query })).data;
  }
  return memberCache;
}

function memberCard(app, member) {
  const status = h("div", { class: "form-problem", id: "nickname-status" });
  const nickname = h("input", {
    type: "text",
    name: "nickname",
    maxlength: 40,
    minlength: 2,
    autocomplete: "nickname",
    value: member.nickname_chosen ? member.nickname : "",
    placeholder: member.nickname_chosen ? null : member.nickname,
  });
  const form = h(
    "form",
    { class: "search-row", novalidate: true, id: "nickname-form" },
    field({
      id: "community-nickname",
      label: t("community_nickname"),
      control: nickname,
      hint: t("community_nickname_hint"),
    }),
    h("button", { type: "submit", class: "button" }, t("community_nickname_save")),
  );
  const summary = h("p", { id: "member-summary" });
  const benefits = h("p", { class: "hint", id: "member-benefits" });
  const show = (shown) => {
    clear(summary).append(
      t("community_you_appear_as"),
      " ",
      byline(
        {
          nickname: shown.nickname,
          reputation: shown.reputation,
          tier: shown.tier,
          staff: shown.staff,
        },
        { benefits: shown.benefits },
      ),
    );
    clear(benefits);
    if (shown.tier) {
      benefits.append(
        h("strong", {}, t("community_tier", { tier: i18n.label("tier", shown.tier) })),
        ": ",
        shown.benefits || t("community_no_benefits"),
      );
    } else benefits.append(t("community_no_tier"));
  };
  show(member);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    clear(status);
    const wanted = nickname.value.trim();
    if (wanted.length < 2) {
      showFieldError(form, "community-nickname", t("community_nickname_short"));
      nickname.focus();
      return;
    }
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const { data } = await call("complaints", "/community/members/me", {
        method: "PUT",
        body: { nickname: wanted },
        query: { locale: i18n.locale() },
      });
      memberCache = data;
      nickname.value = data.nickname;
      show(data);
      status.append(banner("success", h("p", {}, t("community_nickname_saved"))));
    } catch (error) {
      if (error instanceof ApiError && (error.status === 409 || error.status === 422)) {
        const text = error.status === 409 ? "community_nickname_taken" : "invalid_value";
        showFieldError(form, "community-nickname", t(text));
        nickname.focus();
      } else status.append(banner("error", h("p", {}, failure(error))));
    } finally {
      button.disabled = false;
    }
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "member-title", id: "member-card" },
    heading(t("community_member_title"), 2, { id: "member-title" }),
    summary,
    benefits,
    h(
      "p",
      { class: "hint" },
      t("community_reputation_rule"),
    ),
    status,
    form,
  );
}

// ---- the list ---------------------------------------------------------------------------

export async function renderList(app, view) {
  app.setTitle(t("community_title"));
  memberCache = null;
  const params = new URLSearchParams(location.search);
  const query = h("input", {
    type: "search",
    name: "q",
    id: "community-q",
    autocomplete: "off",
    maxlength: 500,
    value: params.get("q") || "",
    "aria-describedby": "community-q-hint",
  });
  const sort = h(
    "select",
    { name: "sort", id: "community-sort" },
    h("option", { value: "newest" }, t("community_sort_newest")),
    h("option", { value: "votes" }, t("community_sort_votes")),
  );
  sort.value = params.get("sort") === "votes" ? "votes" : "newest";
  const language = h(
    "select",
    { name: "locale", id: "community-locale" },
    h("option", { value: "" }, t("all_languages")),
    i18n.LOCALES.map((code) => h("option", { value: code, lang: code }, i18n.NATIVE_NAMES[code])),
  );
  language.value = params.get("locale") || "";
  const unanswered = h("input", {
    type: "checkbox",
    name: "unanswered",
    id: "community-unanswered",
    checked: params.get("unanswered") === "true",
  });
  const form = h(
    "form",
    { role: "search", class: "search", "aria-label": t("community_search_label") },
    h(
      "div",
      { class: "search-row" },
      h(
        "div",
        { class: "field grow" },
        h("label", { for: "community-q" }, t("community_search_label")),
        query,
      ),
      h("div", { class: "field" }, h("label", { for: "community-locale" }, t("language")), language),
      h("div", { class: "field" }, h("label", { for: "community-sort" }, t("community_sort")), sort),
      h("button", { type: "submit", class: "button button-primary" }, t("search")),
    ),
    h(
      "p",
      { class: "checkbox-row" },
      unanswered,
      " ",
      h("label", { for: "community-unanswered" }, t("community_unanswered")),
    ),
    h("p", { class: "hint", id: "community-q-hint" }, t("community_search_hint")),
  );
  const summary = h("p", { class: "results-summary", id: "community-summary", "aria-live": "polite" });
  const results = h("ol", { class: "results", id: "questions" });
  const title = h("h2", { id: "questions-title" });
  const more = h("button", { type: "button", class: "button", hidden: true }, t("community_more"));
  let member = null;
  try {
    member = await myMember();
  } catch {
    member = null; // the list works without the member's own card
  }
  put(
    view,
    h(
      "div",
      { class: "page-head" },
      heading(t("community_title")),
      link(app, "community/ask", t("community_ask"), {
        class: "button button-primary",
        id: "ask-question",
      }),
    ),
    h("p", { class: "lead" }, t("community_intro")),
    member ? memberCard(app, member) : null,
    form,
    h(
      "section",
      { "aria-labelledby": "questions-title", class: "results-section" },
      title,
      summary,
      results,
      more,
    ),
  );

  let latest = 0;
  let cursor = null;
  const load = async ({ append = false } = {}) => {
    const asked = ++latest;
    const q = query.value.trim();
    const searching = Boolean(q);
    sort.disabled = searching; // a search ranks by relevance, and takes no filter
    unanswered.disabled = searching;
    const next = new URLSearchParams();
    if (q) next.set("q", q);
    if (language.value) next.set("locale", language.value);
    if (!searching && sort.value !== "newest") next.set("sort", sort.value);
    if (!searching && unanswered.checked) next.set("unanswered", "true");
    history.replaceState(null, "", app.url("community") + (next.toString() ? `?${next}` : ""));
    const filters = searching
      ? { q, locale: language.value || undefined, limit: PAGE }
      : {
          sort: sort.value,
          unanswered: unanswered.checked ? "true" : undefined,
          locale: language.value || undefined,
          cursor: append ? cursor : undefined,
          limit: PAGE,
        };
    let page;
    try {
      ({ data: page } = await call("complaints", "/community/questions", { query: filters }));
    } catch (error) {
      if (asked !== latest) return;
      clear(results);
      clear(summary).append(banner("error", h("p", {}, failure(error))));
      return;
    }
    if (asked !== latest) return;
    cursor = page.next_cursor;
    more.hidden = !cursor;
    title.textContent = searching ? t("search_results") : t("community_questions");
    if (!append) clear(results);
    for (const question of page.items) results.append(questionItem(app, question));
    if (searching) {
      summary.textContent = page.items.length
        ? i18n.tn("community_found", page.items.length, { q })
        : t("community_none_found", { q });
    } else {
      summary.textContent = results.children.length ? "" : t("community_no_questions");
    }
  };
  const typed = debounce(() => load(), 250);
  query.addEventListener("input", typed);
  for (const control of [sort, language, unanswered]) {
    control.addEventListener("change", () => load());
  }
  more.addEventListener("click", () => load({ append: true }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    typed.cancel();
    load();
  });
  await load();
  return () => typed.cancel();
}

function questionItem(app, question) {
  return h(
    "li",
    {
      class: "result question",
      dataset: { question: question.id, answered: String(question.answer_count > 0) },
    },
    h(
      "h3",
      { lang: question.locale, dir: question.direction },
      link(app, `community/questions/${enc(question.id)}`, question.title),
    ),
    h(
      "p",
      { class: "meta" },
      byline(question.author),
      " · ",
      timeOf(question.created_at, i18n.dateTime(question.created_at)),
    ),
    h(
      "p",
      { class: "meta counts" },
      h("span", { class: "score" }, i18n.tn("community_votes", question.score)),
      " · ",
      h("span", { class: "answer-count" }, i18n.tn("community_answers", question.answer_count)),
      question.accepted_answer_id
        ? [" · ", h("span", { class: "tag tag-accepted" }, t("community_solved"))]
        : null,
    ),
    question.excerpt
      ? h("p", { class: "excerpt", lang: question.locale, dir: question.direction }, question.excerpt)
      : null,
  );
}

// ---- asking -------------------------------------------------------------------------------

export async function renderAsk(app, view) {
  app.setTitle(t("community_ask"));
  const title = h("input", { type: "text", name: "title", maxlength: 200, required: true });
  const body = h("textarea", { name: "body", rows: 8, maxlength: 20000, required: true });
  const tags = h("input", { type: "text", name: "tags", maxlength: 300, autocomplete: "off" });
  const language = h(
    "select",
    { name: "locale" },
    i18n.LOCALES.map((code) => h("option", { value: code, lang: code }, i18n.NATIVE_NAMES[code])),
  );
  language.value = i18n.locale();
  const problem = h("div", { class: "form-problem" });
  const form = h(
    "form",
    { class: "stack", novalidate: true, id: "ask-form" },
    field({
      id: "question-title",
      label: t("community_question_title"),
      control: title,
      hint: t("community_question_title_hint"),
    }),
    field({
      id: "question-body",
      label: t("community_question_body"),
      control: body,
      hint: t("community_question_body_hint"),
    }),
    field({
      id: "question-tags",
      label: t("community_question_tags"),
      control: tags,
      hint: t("community_question_tags_hint"),
    }),
    field({ id: "question-locale", label: t("community_question_language"), control: language }),
    h("button", { type: "submit", class: "button button-primary" }, t("community_post_question")),
  );
  view.append(
    h("p", { class: "back" }, link(app, "community", t("community_back"), { class: "back-link" })),
    heading(t("community_ask")),
    h("p", { class: "lead" }, t("community_ask_intro")),
    h("div", { class: "card" }, problem, form),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    clear(problem);
    const missing = [
      ["question-title", title],
      ["question-body", body],
    ].filter(([, control]) => !control.value.trim());
    for (const [id] of missing) showFieldError(form, id, t("required"));
    if (missing.length) {
      missing[0][1].focus();
      return;
    }
    const words = [...new Set(tags.value.split(",").map((tag) => tag.trim().toLowerCase()))];
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { data: question } = await call("complaints", "/community/questions", {
        method: "POST",
        body: {
          locale: language.value,
          title: title.value.trim(),
          body: body.value.trim(),
          tags: words.filter(Boolean).slice(0, 10),
        },
      });
      app.flash({ kind: "asked" });
      await app.navigate(`community/questions/${enc(question.id)}`);
    } catch (error) {
      button.disabled = false;
      if (error instanceof ApiError && error.status === 422) {
        problem.append(banner("error", h("p", {}, t("community_check_question"))));
      } else problem.append(banner("error", h("p", {}, failure(error))));
    }
  });
}

// ---- a question and its answers ------------------------------------------------------------

function voteButtons(post, onVoted, status) {
  const score = h("span", { class: "score", dataset: { score: post.score } }, i18n.tn("community_votes", post.score));
  if (post.mine || post.deleted) return h("div", { class: "votes" }, score);
  const button = (value) => {
    const pressed = post.my_vote === value;
    const element = h(
      "button",
      {
        type: "button",
        class: pressed ? "vote-button pressed" : "vote-button",
        "aria-pressed": String(pressed),
        dataset: { vote: value },
      },
      h("span", { "aria-hidden": "true" }, value === "up" ? "▲ " : "▼ "),
      t(value === "up" ? "community_vote_up" : "community_vote_down"),
    );
    element.addEventListener("click", async () => {
      element.disabled = true;
      clear(status);
      try {
        const again = post.my_vote === value; // pressing one's vote again takes it back
        const { data } = await call("complaints", `/community/posts/${enc(post.id)}/vote`, {
          method: again ? "DELETE" : "PUT",
          body: again ? undefined : { value },
        });
        onVoted(data);
      } catch (error) {
        element.disabled = false;
        status.append(banner("error", h("p", {}, failure(error))));
      }
    });
    return element;
  };
  return h(
    "div",
    {
      class: "votes",
      role: "group",
      "aria-label": t("community_votes_label"),
    },
    button("up"),
    score,
    button("down"),
  );
}

function reportControl(post, status) {
  const toggle = h(
    "button",
    { type: "button", class: "quiet-button", "aria-expanded": "false", dataset: { report: post.id } },
    t("community_report"),
  );
  const reason = h("textarea", { name: "reason", rows: 2, maxlength: 500 });
  const id = `report-${post.id}`;
  const form = h(
    "form",
    { class: "stack report-form", novalidate: true, hidden: true },
    field({ id, label: t("community_report_reason"), control: reason }),
    h("button", { type: "submit", class: "button" }, t("community_report_send")),
  );
  toggle.addEventListener("click", () => {
    form.hidden = !form.hidden;
    toggle.setAttribute("aria-expanded", String(!form.hidden));
    if (!form.hidden) reason.focus();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    clear(status);
    if (!reason.value.trim()) {
      showFieldError(form, id, t("required"));
      reason.focus();
      return;
    }
    try {
      await call("complaints", `/community/posts/${enc(post.id)}/reports`, {
        method: "POST",
        body: { reason: reason.value.trim() },
      });
      status.append(banner("success", h("p", {}, t("community_reported"))));
    } catch (error) {
      const text =
        error instanceof ApiError && error.status === 409 ? t("community_reported_already") : failure(error);
      status.append(banner(error.status === 409 ? "info" : "error", h("p", {}, text)));
    }
    form.hidden = true;
    toggle.setAttribute("aria-expanded", "false");
    toggle.disabled = true;
  });
  return [toggle, form];
}

function postBody(post, locale, direction) {
  if (post.deleted) return h("p", { class: "empty" }, t("community_post_deleted"));
  return h("div", { class: "article-body post-body", lang: locale, dir: direction }, renderMarkdown(post.body));
}

export async function renderQuestion(app, view, [id]) {
  let thread;
  try {
    ({ data: thread } = await call("complaints", `/community/questions/${enc(id)}`));
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    app.setTitle(t("community_missing"));
    view.append(
      heading(t("community_missing")),
      h("p", {}, t("community_missing_text")),
      h("p", {}, link(app, "community", t("community_back"))),
    );
    return;
  }
  const flashed = app.takeFlash();
  app.setTitle(thread.title);
  const box = h("div", {});
  const show = (latest, message) => {
    thread = latest;
    put(clear(box), threadView(app, latest, reload, message));
  };
  const reload = async (message) => {
    const { data } = await call("complaints", `/community/questions/${enc(thread.id)}`);
    show(data, message);
    if (message) app.announce(message);
  };
  put(
    view,
    h("p", { class: "back" }, link(app, "community", t("community_back"), { class: "back-link" })),
    flashed && flashed.kind === "asked"
      ? banner("success", h("p", {}, t("community_asked")))
      : null,
    box,
  );
  show(thread);
}

function threadView(app, thread, reload, message) {
  const status = h("div", { class: "form-problem", id: "thread-status" });
  if (message) status.append(banner("success", h("p", {}, message)));
  const question = h(
    "article",
    {
      class: "card question-post",
      id: "question",
      lang: thread.locale,
      dir: thread.direction,
      dataset: { question: thread.id },
    },
    h("h1", { tabindex: "-1" }, thread.title),
    h(
      "p",
      { class: "meta", lang: i18n.locale(), dir: i18n.direction() },
      byline(thread.author, { mine: thread.mine }),
      " · ",
      timeOf(thread.created_at, i18n.dateTime(thread.created_at)),
    ),
    postBody(thread, thread.locale, thread.direction),
    thread.tags.length
      ? h("p", { class: "tags" }, thread.tags.map((tag) => [h("span", { class: "tag" }, tag), " "]))
      : null,
    h(
      "div",
      { class: "post-actions", lang: i18n.locale(), dir: i18n.direction() },
      voteButtons(thread, () => reload(t("community_vote_saved")), status),
      thread.mine ? null : reportControl(thread, status),
    ),
  );
  const answers = h(
    "ol",
    { class: "answers", id: "answers" },
    thread.answers.map((answer) => answerItem(app, thread, answer, reload, status)),
  );
  const form = answerForm(thread, reload);
  return [
    question,
    status,
    h(
      "section",
      { "aria-labelledby": "answers-title", class: "answers-section" },
      h("h2", { id: "answers-title" }, i18n.tn("community_answers", thread.answers.length)),
      thread.answers.length ? answers : h("p", { class: "empty" }, t("community_no_answers")),
    ),
    form,
  ];
}

function answerItem(app, thread, answer, reload, status) {
  const classes = ["card", "answer"];
  if (answer.accepted) classes.push("accepted");
  if (answer.by_staff) classes.push("by-staff");
  let accept = null;
  if (thread.mine && !answer.deleted) {
    accept = h(
      "button",
      {
        type: "button",
        class: answer.accepted ? "button" : "button button-primary",
        dataset: { accept: answer.id },
      },
      answer.accepted ? t("community_unaccept") : t("community_accept"),
    );
    accept.addEventListener("click", async () => {
      accept.disabled = true;
      clear(status);
      try {
        await call("complaints", `/community/questions/${enc(thread.id)}/accepted-answer`, {
          method: answer.accepted ? "DELETE" : "PUT",
          body: answer.accepted ? undefined : { answer_id: answer.id },
        });
        await reload(answer.accepted ? t("community_unaccepted") : t("community_accepted_saved"));
      } catch (error) {
        accept.disabled = false;
        status.append(banner("error", h("p", {}, failure(error))));
      }
    });
  }
  return h(
    "li",
    { class: classes.join(" "), dataset: { answer: answer.id, accepted: String(answer.accepted) } },
    answer.accepted || answer.by_staff
      ? h(
          "p",
          { class: "answer-marks" },
          answer.accepted ? h("span", { class: "tag tag-accepted" }, `✓ ${t("community_accepted")}`) : null,
          " ",
          answer.by_staff ? h("span", { class: "tag tag-staff" }, t("community_staff_answer")) : null,
        )
      : null,
    h(
      "p",
      { class: "meta" },
      byline(answer.author, { mine: answer.mine }),
      " · ",
      timeOf(answer.created_at, i18n.dateTime(answer.created_at)),
    ),
    postBody(answer, thread.locale, thread.direction),
    h(
      "div",
      { class: "post-actions" },
      voteButtons(answer, () => reload(t("community_vote_saved")), status),
      accept,
      answer.mine ? null : reportControl(answer, status),
    ),
  );
}

function answerForm(thread, reload) {
  const body = h("textarea", { name: "answer", rows: 5, maxlength: 20000 });
  const problem = h("div", { class: "form-problem" });
  const form = h(
    "form",
    { class: "stack", novalidate: true, id: "answer-form" },
    field({ id: "answer-body", label: t("community_your_answer"), control: body }),
    h("button", { type: "submit", class: "button button-primary" }, t("community_post_answer")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    clear(problem);
    if (!body.value.trim()) {
      showFieldError(form, "answer-body", t("required"));
      body.focus();
      return;
    }
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await call("complaints", `/community/questions/${enc(thread.id)}/answers`, {
        method: "POST",
        body: { body: body.value.trim() },
      });
      await reload(t("community_answer_posted"));
    } catch (error) {
      button.disabled = false;
      problem.append(banner("error", h("p", {}, failure(error))));
    }
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "answer-title" },
    h("h2", { id: "answer-title" }, t("community_answer_title")),
    problem,
    form,
  );
}
