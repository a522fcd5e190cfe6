/* The help centre: search published articles as you type (complaints ranks them by
 * relevance, best first) in the customer's language or all of them, and read one. An
 * article in Persian is laid out right to left whatever the portal's language. */

import { ApiError, call, enc } from "../api.js";
import { banner, clear, debounce, failure, h, heading, link, timeOf } from "../dom.js";
import * as i18n from "../i18n.js";
import { renderMarkdown } from "../markdown.js";

const { t } = i18n;
const RESULTS = 20;

export async function renderSearch(app, view) {
  app.setTitle(t("help_title"));
  const params = new URLSearchParams(location.search);
  const query = h("input", {
    type: "search",
    name: "q",
    id: "help-q",
    autocomplete: "off",
    maxlength: 500,
    value: params.get("q") || "",
    "aria-describedby": "help-q-hint",
  });
  const language = h(
    "select",
    { name: "locale", id: "help-locale" },
    i18n.LOCALES.map((code) => h("option", { value: code, lang: code }, i18n.NATIVE_NAMES[code])),
    h("option", { value: "" }, t("all_languages")),
  );
  language.value = params.has("locale") ? params.get("locale") : i18n.locale();
  const form = h(
    "form",
    { role: "search", class: "search", "aria-label": t("help_search_label") },
    h(
      "div",
      { class: "search-row" },
      h(
        "div",
        { class: "field grow" },
        h("label", { for: "help-q" }, t("help_search_label")),
        query,
      ),
      h("div", { class: "field" }, h("label", { for: "help-locale" }, t("language")), language),
      h("button", { type: "submit", class: "button button-primary" }, t("search")),
    ),
    h("p", { class: "hint", id: "help-q-hint" }, t("help_search_hint")),
  );
  const summary = h("p", { class: "results-summary", id: "help-summary", "aria-live": "polite" });
  const results = h("ol", { class: "results", id: "help-results" });
  const title = h("h2", { id: "results-title" });
  view.append(
    heading(t("help_title")),
    h("p", { class: "lead" }, t("help_intro")),
    form,
    h(
      "section",
      { "aria-labelledby": "results-title", class: "results-section" },
      title,
      summary,
      results,
    ),
    h(
      "p",
      { class: "aside-note" },
      t("help_not_found"),
      " ",
      link(app, "support/new", t("open_request")),
    ),
  );

  let latest = 0;
  const search = async () => {
    const asked = ++latest;
    const q = query.value.trim();
    const locale = language.value;
    const next = new URLSearchParams();
    if (q) next.set("q", q);
    if (locale !== i18n.locale()) next.set("locale", locale);
    const suffix = next.toString() ? `?${next}` : "";
    history.replaceState(null, "", app.url("help") + suffix);
    let page;
    try {
      page = await call("complaints", "/help/articles", {
        query: { q: q || undefined, locale: locale || undefined, limit: RESULTS },
      });
    } catch (error) {
      if (asked !== latest) return;
      clear(results);
      clear(summary).append(banner("error", h("p", {}, failure(error))));
      return;
    }
    if (asked !== latest) return; // a later search answered first
    showResults(app, page.data.items, q, { title, summary, results });
  };
  const typed = debounce(search, 250);
  query.addEventListener("input", typed);
  language.addEventListener("change", search);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    typed.cancel();
    search();
  });
  await search();
  return () => typed.cancel();
}

/** An excerpt (the start of the body) without its markdown marks. */
function plain(text) {
  return String(text || "")
    .replace(/(^|\s)(#{1,4}|[-*•]|\d+[.)])\s+/g, "$1")
    .replace(/\*\*|`/g, "")
    .replace(/\[([^\]]+)\]\([^)]*\)/g, "$1")
    .replace(/\s+/g, " ")
    .trim();
}

function showResults(app, items, q, { title, summary, results }) {
  title.textContent = q ? t("search_results") : t("latest_articles");
  clear(results);
  if (q) {
    summary.textContent = items.length
      ? i18n.tn("articles_found", items.length, { q })
      : t("no_articles", { q });
  } else {
    summary.textContent = items.length ? "" : t("no_articles_yet");
  }
  for (const article of items) {
    results.append(
      h(
        "li",
        { class: "result", dataset: { article: article.id } },
        h(
          "h3",
          { lang: article.locale, dir: article.direction },
          link(app, `help/${enc(article.id)}`, article.title),
        ),
        h(
          "p",
          { class: "meta" },
          h("span", { class: "tag" }, i18n.label("kind", article.kind)),
          " ",
          h("span", { lang: article.locale }, i18n.NATIVE_NAMES[article.locale] || article.locale),
        ),
        h(
          "p",
          { class: "excerpt", lang: article.locale, dir: article.direction },
          plain(article.excerpt),
        ),
      ),
    );
  }
}

export async function renderArticle(app, view, [id]) {
  let article;
  try {
    ({ data: article } = await call("complaints", `/help/articles/${enc(id)}`));
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    app.setTitle(t("article_missing"));
    view.append(
      heading(t("article_missing")),
      h("p", {}, t("article_missing_text")),
      h("p", {}, link(app, "help", t("back_to_help"))),
    );
    return;
  }
  app.setTitle(article.title);
  view.append(
    h("p", { class: "back" }, link(app, "help", t("back_to_help"), { class: "back-link" })),
    h(
      "article",
      { class: "card article", lang: article.locale, dir: article.direction, id: "article" },
      h("h1", { tabindex: "-1" }, article.title),
      h(
        "p",
        { class: "meta", lang: i18n.locale(), dir: i18n.direction() },
        h("span", { class: "tag" }, i18n.label("kind", article.kind)),
        " ",
        t("updated_on"),
        " ",
        timeOf(article.updated_at, i18n.date(article.updated_at)),
      ),
      h("div", { class: "article-body" }, renderMarkdown(article.body)),
    ),
    h(
      "p",
      { class: "aside-note" },
      t("help_not_found"),
      " ",
      link(app, "support/new", t("open_request")),
    ),
  );
}

/** An article's content for a dialog (the support form's suggestions). */
export async function articleContent(id) {
  const { data: article } = await call("complaints", `/help/articles/${enc(id)}`);
  return {
    article,
    body: h(
      "div",
      { class: "article-body", lang: article.locale, dir: article.direction },
      renderMarkdown(article.body),
    ),
  };
}
