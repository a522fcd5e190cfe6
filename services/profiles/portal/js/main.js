/* Rapport's customer portal: one page, its views chosen by the path under /portal/.
 *
 * No build step and nothing from a CDN: ES modules and a style sheet served by profiles.
 * The page holds no data. It signs the customer in with the link from the e-mail, keeps
 * the customer token in sessionStorage (this tab only) and calls the services' APIs with
 * it; where they are comes from /portal/config.json.
 */

import { ApiError, call, loadConfig, onUnauthorized, session } from "./api.js";
import { banner, clear, failure, h, heading, link } from "./dom.js";
import * as i18n from "./i18n.js";
import * as community from "./pages/community.js";
import * as help from "./pages/help.js";
import * as inbox from "./pages/inbox.js";
import * as me from "./pages/me.js";
import * as orders from "./pages/orders.js";
import * as signIn from "./pages/sign-in.js";
import * as support from "./pages/support.js";

const { t } = i18n;
const CHOICE_KEY = "rapport.portal.locale";
// Where a signed-out customer was going (a feedback link, a bookmark): sign-in returns
// there. sessionStorage, like the token: this tab only.
const RETURN_KEY = "rapport.portal.return-to";

const ROUTES = [
  { path: /^$/, view: home, public: true },
  { path: /^sign-in$/, view: signIn.render, public: true },
  { path: /^me$/, view: me.render, nav: "me" },
  { path: /^help$/, view: help.renderSearch, nav: "help" },
  { path: /^help\/([^/]+)$/, view: help.renderArticle, nav: "help" },
  { path: /^support$/, view: support.renderList, nav: "support" },
  { path: /^support\/new$/, view: support.renderNew, nav: "support" },
  { path: /^support\/([^/]+)$/, view: support.renderRequest, nav: "support" },
  // Notifications' e-mails link to <portal_url>/complaints/{id}/feedback: the rating form.
  { path: /^complaints\/([^/]+)\/feedback$/, view: support.renderFeedback, nav: "support" },
  { path: /^complaints\/([^/]+)$/, view: support.renderRequest, nav: "support" },
  { path: /^community$/, view: community.renderList, nav: "community" },
  { path: /^community\/ask$/, view: community.renderAsk, nav: "community" },
  { path: /^community\/questions\/([^/]+)$/, view: community.renderQuestion, nav: "community" },
  { path: /^orders$/, view: orders.render, nav: "orders" },
  { path: /^inbox$/, view: inbox.render, nav: "inbox" },
];

const $ = (id) => document.getElementById(id);

const app = {
  config: null,
  base: "/portal/",
  customer: null,
  flashed: null,
  cleanup: null,
  generation: 0,
  started: false,

  url(path = "") {
    return `${this.base}${path}`;
  },

  /** The path under the portal's base, without slashes at the ends. */
  path() {
    const path = location.pathname.startsWith(this.base)
      ? location.pathname.slice(this.base.length)
      : location.pathname.replace(/^\/portal\/?/, "");
    return decodeURIComponent(path).replace(/\/+$/, "");
  },

  navigate(path, { replace = false } = {}) {
    const url = this.url(path);
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
    return render({ focus: true });
  },

  /** A message for the next view to show (after a navigation). */
  flash(message) {
    this.flashed = message;
  },

  takeFlash() {
    const message = this.flashed;
    this.flashed = null;
    return message;
  },

  setTitle(text) {
    document.title = `${text} · ${t("brand")}`;
  },

  announce(text) {
    const announcer = $("announcer");
    announcer.textContent = "";
    setTimeout(() => {
      announcer.textContent = text;
    }, 50);
  },

  /** Where the customer was going before sign-in got in the way (a path under the
   * portal, with its query), once; null if nowhere in particular. */
  takeReturnPath() {
    const wanted = sessionStorage.getItem(RETURN_KEY);
    sessionStorage.removeItem(RETURN_KEY);
    return wanted && returnable(wanted) ? wanted : null;
  },

  /** Just signed in: learn who the customer is, and speak their language. */
  async signedIn() {
    await loadCustomer();
    updateChrome();
    refreshUnread();
  },

  /** The customer chose a language in their profile: the portal follows. */
  async useLocale(tag) {
    const chosen = i18n.pick([tag]);
    if (!chosen) return;
    localStorage.setItem(CHOICE_KEY, chosen);
    if (chosen !== i18n.locale()) await i18n.setLocale(chosen);
    fillLanguages();
  },

  setUnread(count) {
    const badge = $("unread-badge");
    badge.hidden = !count;
    $("unread-number").textContent = count ? i18n.number(count) : "";
    $("unread-text").textContent = count ? i18n.tn("unread", count) : "";
  },

  refreshUnread() {
    refreshUnread();
  },
};

async function loadCustomer() {
  const current = session.get();
  if (!current) {
    app.customer = null;
    return;
  }
  try {
    const { data } = await call(
      "profiles",
      `/customers/${encodeURIComponent(current.customer_id)}`,
    );
    app.customer = data;
    i18n.setTimeZone(data.time_zone);
    // The profile's language, unless the customer picked one in this browser.
    const profileLocale = i18n.pick([data.locale]);
    if (!localStorage.getItem(CHOICE_KEY) && profileLocale && profileLocale !== i18n.locale()) {
      await i18n.setLocale(profileLocale);
      fillLanguages();
    }
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) app.customer = null;
  }
}

async function refreshUnread() {
  const current = session.get();
  if (!current) {
    app.setUnread(0);
    return;
  }
  try {
    const { data } = await call(
      "notifications",
      `/customers/${encodeURIComponent(current.customer_id)}/inbox`,
      { query: { limit: 1 } },
    );
    app.setUnread(data.unread_count);
  } catch {
    app.setUnread(0); // the inbox is optional: the rest of the portal works without it
  }
}

function home() {
  return app.navigate(session.get() ? "me" : "sign-in", { replace: true });
}

/** The path under the portal and its query, as the address bar has them. */
function currentPath() {
  const path = location.pathname.startsWith(app.base)
    ? location.pathname.slice(app.base.length)
    : location.pathname.replace(/^\/portal\/?/, "");
  return path.replace(/\/+$/, "") + location.search;
}

/** Only one of the portal's views that need signing in is worth returning to. */
function returnable(wanted) {
  let path;
  try {
    path = decodeURIComponent(wanted.split("?")[0]);
  } catch {
    return false;
  }
  const found = match(path);
  return Boolean(found && !found.route.public);
}

function match(path) {
  for (const route of ROUTES) {
    const found = path.match(route.path);
    if (found) return { route, params: found.slice(1).map(decodeURIComponent) };
  }
  return null;
}

function updateChrome(route) {
  const signedIn = Boolean(session.get());
  $("nav").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  for (const anchor of document.querySelectorAll("[data-nav]")) {
    if (route && route.nav === anchor.dataset.nav) anchor.setAttribute("aria-current", "page");
    else anchor.removeAttribute("aria-current");
  }
}

async function render({ focus = false } = {}) {
  const generation = ++app.generation;
  if (app.cleanup) {
    app.cleanup();
    app.cleanup = null;
  }
  const main = clear($("main"));
  const view = h("div", { class: "view", "aria-busy": "true" });
  const waiting = h("p", { class: "view-loading" }, t("loading"));
  main.append(waiting, view);
  // Shown only if the view takes a moment (its data on the way), so it never flickers.
  const showWaiting = setTimeout(() => (waiting.hidden = false), 300);
  waiting.hidden = true;
  const found = match(app.path());
  updateChrome(found && found.route);
  try {
    if (!found) {
      renderNotFound(view);
    } else if (!found.route.public && !session.get()) {
      sessionStorage.setItem(RETURN_KEY, currentPath()); // back here once signed in
      await signIn.render(app, view, []);
    } else {
      const cleanup = await found.route.view(app, view, found.params);
      if (typeof cleanup === "function") {
        if (generation === app.generation) app.cleanup = cleanup;
        else cleanup();
      }
    }
  } catch (error) {
    if (generation !== app.generation) return;
    console.warn(error);
    clear(view).append(
      heading(t("error_title")),
      banner("error", h("p", {}, failure(error))),
      h("button", { type: "button", class: "button", onclick: () => render() }, t("retry")),
    );
  }
  clearTimeout(showWaiting);
  waiting.remove();
  view.removeAttribute("aria-busy");
  // Focus goes to the heading, unless the view put it somewhere itself (the rating form
  // a feedback link opens).
  if (focus && generation === app.generation && !view.contains(document.activeElement)) {
    const title = view.querySelector("h1");
    if (title) title.focus({ preventScroll: false });
  }
}

function renderNotFound(view) {
  app.setTitle(t("not_found_title"));
  view.append(
    heading(t("not_found_title")),
    h("p", {}, t("not_found_text")),
    h("p", {}, link(app, "", t("go_home"))),
  );
}

function fillLanguages() {
  const select = $("language");
  clear(select);
  for (const code of i18n.LOCALES) {
    select.append(
      h(
        "option",
        { value: code, lang: code, selected: code === i18n.locale() },
        i18n.NATIVE_NAMES[code],
      ),
    );
  }
  select.value = i18n.locale();
}

async function signOut() {
  try {
    await call("profiles", "/portal/sign-out", { method: "POST" });
  } catch {
    // The token is forgotten below whatever the service said; it expires by itself.
  }
  session.clear();
  sessionStorage.removeItem(RETURN_KEY);
  app.customer = null;
  app.setUnread(0);
  app.flash({ kind: "signed-out" });
  await app.navigate("sign-in");
}

function followLinks(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = event.target.closest("a[data-link]");
  if (!anchor || anchor.target) return;
  const url = new URL(anchor.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(app.base.replace(/\/$/, ""))) {
    return;
  }
  event.preventDefault();
  history.pushState(null, "", url.pathname + url.search);
  render({ focus: true });
}

async function start() {
  app.config = await loadConfig();
  app.base = app.config.base || "/portal/";
  const stored = localStorage.getItem(CHOICE_KEY);
  await i18n.setLocale(i18n.pick([stored]) || i18n.pick(navigator.languages) || "en");
  fillLanguages();
  onUnauthorized(() => {
    app.customer = null;
    app.flash({ kind: "expired" });
    if (app.started) render({ focus: true }); // before the first view, that view says it
  });
  $("language").addEventListener("change", async (event) => {
    localStorage.setItem(CHOICE_KEY, event.target.value);
    await i18n.setLocale(event.target.value);
    fillLanguages();
    await render();
    $("language").focus();
  });
  $("sign-out").addEventListener("click", signOut);
  document.addEventListener("click", followLinks);
  window.addEventListener("popstate", () => render({ focus: true }));
  if (session.get() && !location.hash.includes("token=")) await loadCustomer();
  await render();
  app.started = true;
  refreshUnread();
}

start().catch((error) => {
  console.error(error);
  const main = clear($("main"));
  main.append(banner("error", h("p", {}, "The portal could not start. Please reload the page.")));
});
