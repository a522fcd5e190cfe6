/* Rapport analytics dashboard.
 *
 * The page holds no data: it fetches the analytics JSON API with the manager's access
 * token and fetches again whenever the server-sent event stream says the figures changed.
 * EventSource cannot send an Authorization header, so the stream is read with fetch().
 */
(() => {
  "use strict";

  const TOKEN_KEY = "rapport.analytics.token";
  const WINDOW_KEY = "rapport.analytics.window";
  const CURRENCY_KEY = "rapport.analytics.currency";
  const WINDOWS = {
    "1h": { bucket: "minute", label: "Last hour", note: "Per minute", ms: 3600e3 },
    "24h": { bucket: "hour", label: "Last 24 hours", note: "Per hour", ms: 86400e3 },
    "7d": { bucket: "day", label: "Last 7 days", note: "Per day", ms: 7 * 86400e3 },
    "30d": { bucket: "day", label: "Last 30 days", note: "Per day", ms: 30 * 86400e3 },
  };
  const BUCKET_MS = { minute: 60e3, hour: 3600e3, day: 86400e3 };
  // Windows roll forward even when nothing happens: refetch at least this often.
  const ROLL_EVERY_MS = 60e3;
  // FastAPI sends a heartbeat comment after 15 s of quiet; three missed ones mean a dead line.
  const STREAM_SILENCE_MS = 45e3;
  const BACKOFF_MAX_MS = 30e3;

  const SEGMENT_COLORS = {
    champions: "#15803d",
    loyal: "#0d9488",
    loyal_customers: "#0d9488",
    potential: "#2563eb",
    potential_loyalists: "#2563eb",
    promising: "#0ea5e9",
    new: "#38bdf8",
    new_customers: "#38bdf8",
    need_attention: "#ca8a04",
    needs_attention: "#ca8a04",
    about_to_sleep: "#a16207",
    at_risk: "#ea580c",
    cant_lose: "#dc2626",
    cannot_lose: "#dc2626",
    hibernating: "#7c3aed",
    lost: "#64748b",
  };
  const FALLBACK_COLORS = ["#2563eb", "#0d9488", "#ca8a04", "#7c3aed", "#db2777", "#64748b"];

  const $ = (id) => document.getElementById(id);
  const locale = navigator.language || undefined;
  const integer = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
  const decimal1 = new Intl.NumberFormat(locale, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const percent = new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 1 });
  const signed = new Intl.NumberFormat(locale, { maximumFractionDigits: 0, signDisplay: "exceptZero" });
  const clock = new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const shortTime = new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit" });
  const dayHour = new Intl.DateTimeFormat(locale, { weekday: "short", hour: "2-digit", minute: "2-digit" });
  const dayMonth = new Intl.DateTimeFormat(locale, { day: "numeric", month: "short" });
  const dateTime = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" });
  const relative = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
  const moneyFormats = new Map();

  const state = {
    token: null,
    window: "24h",
    currency: null,
    charts: {},
    refreshing: false,
    refreshAgain: false,
    stale: false,
    streamController: null,
    streamGeneration: 0,
    wakeRetry: null,
    rollTimer: null,
  };

  class AuthError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // ---- formatting ----------------------------------------------------------------

  function num(value) {
    if (value === null || value === undefined || value === "") return null;
    const n = Number(value);
    return Number.isFinite(n) ? n : null;
  }

  function money(amount, currency) {
    const n = num(amount);
    if (n === null) return "—";
    let format = moneyFormats.get(currency);
    if (!format) {
      try {
        format = new Intl.NumberFormat(locale, { style: "currency", currency });
      } catch {
        format = { format: (v) => `${decimal1.format(v)} ${currency}` };
      }
      moneyFormats.set(currency, format);
    }
    return format.format(n);
  }

  /** A share as a fraction for Intl's percent style, from a fraction or a percentage. */
  function share(value, isPercent) {
    const n = num(value);
    if (n === null) return null;
    return isPercent ? n / 100 : n;
  }

  /** "45 s", "12 min", "3 h 20 min", "2 d 4 h" (a unit never wraps away from its number). */
  function duration(seconds) {
    const s = num(seconds);
    if (s === null) return "—";
    const unit = (n, name) => `${integer.format(n)}\u00a0${name}`;
    if (s < 60) return unit(Math.round(s), "s");
    const minutes = Math.round(s / 60);
    if (minutes < 60) return unit(minutes, "min");
    const hours = Math.floor(minutes / 60);
    if (hours < 48) {
      const rest = minutes % 60;
      return rest ? `${unit(hours, "h")} ${unit(rest, "min")}` : unit(hours, "h");
    }
    const days = Math.floor(hours / 24);
    const restHours = hours % 24;
    return restHours ? `${unit(days, "d")} ${unit(restHours, "h")}` : unit(days, "d");
  }

  function ago(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return "";
    const seconds = Math.round((t - Date.now()) / 1000);
    const abs = Math.abs(seconds);
    if (abs < 60) return relative.format(seconds, "second");
    if (abs < 3600) return relative.format(Math.round(seconds / 60), "minute");
    if (abs < 86400) return relative.format(Math.round(seconds / 3600), "hour");
    return relative.format(Math.round(seconds / 86400), "day");
  }

  function words(key) {
    const text = String(key ?? "").replace(/[_-]+/g, " ").trim();
    return text ? text[0].toUpperCase() + text.slice(1) : "";
  }

  function reasonText(reason) {
    if (reason === null || reason === undefined) return "";
    if (typeof reason !== "object") return String(reason);
    return String(reason.text ?? reason.detail ?? reason.description ?? reason.message ?? words(reason.code ?? reason.kind ?? ""));
  }

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined) continue;
      if (name === "className") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === "") continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setText(id, text) {
    const node = $(id);
    if (node.textContent !== text) node.textContent = text;
  }

  function setValue(id, parts, tone) {
    const node = $(id);
    node.replaceChildren(...parts);
    node.classList.remove("good", "warn", "bad");
    if (tone) node.classList.add(tone);
  }

  function tone(fraction) {
    if (fraction === null) return null;
    if (fraction >= 0.9) return "good";
    if (fraction >= 0.7) return "warn";
    return "bad";
  }

  // ---- API ---------------------------------------------------------------------------

  async function api(path, token) {
    let response;
    try {
      response = await fetch(path, {
        headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
        cache: "no-store",
      });
    } catch {
      throw new Error("the analytics service cannot be reached");
    }
    if (response.status === 401) {
      throw new AuthError(401, "The access token was refused (wrong or expired). Sign in again.");
    }
    if (response.status === 403) {
      throw new AuthError(403, "This token may not see analytics: it needs the admin or agent role.");
    }
    if (!response.ok) {
      let detail = `${response.status} ${response.statusText}`;
      try {
        const problem = await response.json();
        detail = problem.detail || problem.title || detail;
      } catch {
        /* not problem+json */
      }
      throw new Error(`${path.split("?")[0]}: ${detail}`);
    }
    return response.json();
  }

  // ---- sign-in -----------------------------------------------------------------------

  function tokenFromFragment() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const token = fragment.get("token");
    if (token !== null) {
      // Out of the address bar (and so out of bookmarks, history and screenshots).
      history.replaceState(null, "", location.pathname + location.search);
    }
    return token ? token.trim() : null;
  }

  function showSignIn(message) {
    stopStream();
    clearInterval(state.rollTimer);
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("dashboard").hidden = true;
    $("sign-out").hidden = true;
    $("signin").hidden = false;
    const box = $("signin-message");
    box.textContent = message || "";
    box.hidden = !message;
    setLive("off");
    setText("updated", "");
    $("token").value = "";
    $("token").focus();
  }

  function signIn(token) {
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("signin").hidden = true;
    $("dashboard").hidden = false;
    $("sign-out").hidden = false;
    refresh();
    startStream();
    clearInterval(state.rollTimer);
    state.rollTimer = setInterval(refresh, ROLL_EVERY_MS);
  }

  // ---- loading and rendering -----------------------------------------------------------

  /** Fetch everything again. Calls while one runs coalesce into one more run, which waits
   * at least twice as long as the last one took: a busy service is not asked faster than
   * it answers. A hidden tab fetches nothing until it is shown again. */
  async function refresh() {
    if (!state.token) return;
    if (document.hidden) {
      state.stale = true;
      return;
    }
    if (state.refreshing) {
      state.refreshAgain = true;
      return;
    }
    state.refreshing = true;
    try {
      do {
        state.refreshAgain = false;
        const started = performance.now();
        await load();
        const took = performance.now() - started;
        if (state.refreshAgain) await new Promise((done) => setTimeout(done, Math.min(2 * took, 10e3)));
      } while (state.refreshAgain && state.token && !document.hidden);
      if (state.refreshAgain && document.hidden) state.stale = true;
    } finally {
      state.refreshing = false;
    }
  }

  async function load() {
    const span = state.window;
    const token = state.token;
    // Answers to a token or window the page has since left are dropped.
    const current = () => token === state.token && span === state.window;
    const settled = await Promise.allSettled([
      api(`/api/v1/kpis?window=${span}`, token),
      api("/api/v1/segments", token),
      api("/api/v1/churn-risks?level=high&limit=10", token),
      api("/api/v1/notifications/recent?limit=20", token),
    ]);
    if (!current()) return;
    const auth = settled.find((r) => r.status === "rejected" && r.reason instanceof AuthError);
    if (auth) {
      showSignIn(auth.reason.message);
      return;
    }
    const [kpis, segments, churn, recent] = settled;
    const problems = [...new Set(settled.filter((r) => r.status === "rejected").map((r) => r.reason.message))];

    let series = null;
    let currency = null;
    if (kpis.status === "fulfilled") {
      currency = pickCurrency(kpis.value);
      if (currency) {
        try {
          const bucket = WINDOWS[span].bucket;
          series = await api(
            `/api/v1/kpis/series?metric=revenue&bucket=${bucket}&window=${span}` +
              `&currency=${encodeURIComponent(currency)}`,
            token,
          );
        } catch (error) {
          if (!current()) return;
          if (error instanceof AuthError) {
            showSignIn(error.message);
            return;
          }
          problems.push(error.message);
        }
      }
      if (!current()) return;
    }
    // Everything is drawn in one go, so the cards and the charts always agree.
    if (kpis.status === "fulfilled") {
      renderKpis(kpis.value);
      renderRevenue(series, kpis.value, currency);
      renderSla(kpis.value);
    }
    if (segments.status === "fulfilled") renderSegments(segments.value);
    if (churn.status === "fulfilled") renderChurn(churn.value);
    if (recent.status === "fulfilled") renderNotifications(recent.value);

    const banner = $("problem");
    banner.textContent = problems.length ? `Some figures could not be loaded: ${problems.join("; ")}` : "";
    banner.hidden = !problems.length;
    const empty =
      kpis.status === "fulfilled" &&
      !num(kpis.value.purchases) &&
      !num(kpis.value.complaints?.opened) &&
      !num(kpis.value.new_customers) &&
      !(segments.status === "fulfilled" && num(segments.value.total));
    $("no-data").hidden = !empty;
    document.body.dataset.loaded = "true";
    setText("updated", `Updated ${clock.format(new Date())}`);
  }

  /** Currencies, those with the most purchases (revenue / average order) first. */
  function currenciesOf(kpis) {
    const revenue = kpis.revenue || {};
    const aov = kpis.average_order_value || {};
    const sales = (code) => (num(revenue[code]) ?? 0) / (num(aov[code]) || 1);
    return Object.keys(revenue)
      .filter((code) => num(revenue[code]) !== null)
      .sort((a, b) => sales(b) - sales(a) || a.localeCompare(b));
  }

  function pickCurrency(kpis) {
    const codes = currenciesOf(kpis);
    const picker = $("currency-picker");
    const select = $("currency");
    if (!codes.length) {
      picker.hidden = true;
      return state.currency;
    }
    if (!state.currency || !codes.includes(state.currency)) {
      const remembered = localStorage.getItem(CURRENCY_KEY);
      state.currency = codes.includes(remembered) ? remembered : codes[0];
    }
    const current = [...select.options].map((o) => o.value).join();
    if (current !== codes.join()) {
      select.replaceChildren(...codes.map((code) => element("option", { value: code }, code)));
    }
    select.value = state.currency;
    picker.hidden = codes.length < 2;
    return state.currency;
  }

  function moneyLines(amounts, order) {
    const codes = order.filter((code) => num(amounts?.[code]) !== null);
    if (!codes.length) return null;
    return codes.map((code) => element("span", { className: "line" }, money(amounts[code], code)));
  }

  function renderKpis(k) {
    const w = WINDOWS[state.window];
    const from = Date.parse(k.from);
    const to = Date.parse(k.to);
    setText(
      "range",
      Number.isNaN(from) || Number.isNaN(to)
        ? w.label
        : `${w.label}: ${dateTime.format(from)} – ${dateTime.format(to)}`,
    );

    const purchases = num(k.purchases);
    const returns = num(k.returns);
    setValue("kpi-purchases", [purchases === null ? "—" : integer.format(purchases)]);
    setText("kpi-purchases-detail", returns === null ? "" : `${integer.format(returns)} returned`);

    const currencies = currenciesOf(k);
    const revenue = moneyLines(k.revenue, currencies);
    setValue("kpi-revenue", revenue || ["—"]);
    const refunds = currencies
      .filter((code) => num(k.refunds?.[code]))
      .map((code) => money(k.refunds[code], code));
    setText(
      "kpi-revenue-detail",
      !revenue ? "no sales yet" : refunds.length ? `${refunds.join(" · ")} refunded` : "gross sales, nothing refunded",
    );

    const aov = moneyLines(k.average_order_value, currencies);
    setValue("kpi-aov", aov || ["—"]);
    setText("kpi-aov-detail", aov ? "per purchase" : "");

    const returnsRate = share(k.returns_rate, true);
    setValue("kpi-returns", [returnsRate === null ? "—" : percent.format(returnsRate)]);
    setText(
      "kpi-returns-detail",
      returns === null || purchases === null
        ? ""
        : `${integer.format(returns)} of ${integer.format(purchases)} ${purchases === 1 ? "purchase" : "purchases"}`,
    );

    const fresh = num(k.new_customers);
    setValue("kpi-new-customers", [fresh === null ? "—" : integer.format(fresh)]);
    setText("kpi-new-customers-detail", "registered in the window");

    const n = k.notifications || {};
    const sent = num(n.sent);
    setValue("kpi-notifications", [sent === null ? "—" : integer.format(sent)]);
    setText(
      "kpi-notifications-detail",
      `${integer.format(num(n.failed) ?? 0)} failed · ${integer.format(num(n.suppressed) ?? 0)} suppressed`,
    );

    const c = k.complaints || {};
    const opened = num(c.opened);
    const resolved = num(c.resolved);
    setValue("kpi-complaints", [
      opened === null ? "—" : integer.format(opened),
      element("span", { className: "unit" }, "opened"),
    ]);
    setText("kpi-complaints-detail", resolved === null ? "" : `${integer.format(resolved)} resolved`);

    const p50 = num(c.resolution_time_p50_seconds);
    const p90 = num(c.resolution_time_p90_seconds);
    setValue("kpi-resolution-time", [duration(p50)]);
    setText(
      "kpi-resolution-time-detail",
      p50 === null ? "none resolved yet" : `median · 90% within ${duration(p90)}`,
    );

    const firstResponse = share(c.first_response_sla_met_pct, true);
    setValue("kpi-first-response-sla", [firstResponse === null ? "—" : percent.format(firstResponse)], tone(firstResponse));
    setText("kpi-first-response-sla-detail", firstResponse === null ? "no first replies due yet" : "within the SLA target");
    const resolution = share(c.resolution_sla_met_pct, true);
    setValue("kpi-resolution-sla", [resolution === null ? "—" : percent.format(resolution)], tone(resolution));
    setText("kpi-resolution-sla-detail", resolution === null ? "no resolutions due yet" : "within the SLA target");

    const s = k.satisfaction || {};
    const responses = num(s.responses);
    const csat = num(s.csat_average);
    setValue("kpi-csat", csat === null ? ["—"] : [decimal1.format(csat), element("span", { className: "unit" }, "/ 5")],
      csat === null ? null : csat >= 4 ? "good" : csat >= 3 ? "warn" : "bad");
    setText("kpi-csat-detail", responses ? `${integer.format(responses)} ${responses === 1 ? "response" : "responses"}` : "no feedback yet");
    const nps = num(s.nps);
    setValue("kpi-nps", [nps === null ? "—" : signed.format(nps)], nps === null ? null : nps >= 30 ? "good" : nps >= 0 ? "warn" : "bad");
    setText("kpi-nps-detail", nps === null ? "no scores yet" : "from −100 to +100");
  }

  // ---- charts --------------------------------------------------------------------------

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function chartDefaults() {
    if (!window.Chart) return false;
    Chart.defaults.font.family = css("--font") || "system-ui, sans-serif";
    Chart.defaults.color = css("--muted");
    Chart.defaults.borderColor = css("--grid");
    Chart.defaults.animation.duration = 350;
    Chart.defaults.maintainAspectRatio = false;
    return true;
  }

  function chart(id, config) {
    if (!window.Chart) return null;
    let instance = state.charts[id];
    if (!instance) {
      instance = new Chart($(id), config);
      state.charts[id] = instance;
    }
    return instance;
  }

  function bucketLabel(ms, bucket, spansDays) {
    if (bucket === "day") return dayMonth.format(ms);
    if (bucket === "hour" && spansDays) return dayHour.format(ms);
    return shortTime.format(ms);
  }

  /** Every bucket of the window, with the points that fell in each (missing ones are zero). */
  function filledSeries(series, kpis, bucket) {
    const size = BUCKET_MS[bucket];
    const points = new Map();
    for (const point of series?.points || []) {
      const at = Date.parse(point.at);
      const value = num(point.value);
      if (Number.isNaN(at) || value === null) continue;
      const key = Math.floor(at / size) * size;
      points.set(key, (points.get(key) || 0) + value);
    }
    let to = Date.parse(kpis?.to);
    if (Number.isNaN(to)) to = Date.now();
    let from = Date.parse(kpis?.from);
    if (Number.isNaN(from)) from = to - WINDOWS[state.window].ms;
    const first = Math.floor(from / size) * size;
    const last = Math.floor(to / size) * size;
    const keys = [];
    for (let t = first; t <= last && keys.length < 2000; t += size) keys.push(t);
    for (const key of points.keys()) if (key < first || key > last) keys.push(key);
    keys.sort((a, b) => a - b);
    return keys.map((key) => ({ at: key, value: points.get(key) || 0 }));
  }

  function renderRevenue(series, kpis, currency) {
    const bucket = WINDOWS[state.window].bucket;
    setText("revenue-note", `${WINDOWS[state.window].note}${currency ? ` · ${currency}` : ""}`);
    const filled = filledSeries(series, kpis, bucket);
    const spansDays = filled.length > 1 && new Date(filled[0].at).getDate() !== new Date(filled[filled.length - 1].at).getDate();
    const labels = filled.map((p) => bucketLabel(p.at, bucket, spansDays));
    const values = filled.map((p) => Math.round(p.value * 100) / 100);
    const total = values.reduce((a, b) => a + b, 0);
    $("revenue-empty").hidden = total > 0;
    const canvas = $("revenue-chart");
    canvas.setAttribute(
      "aria-label",
      total > 0 ? `Revenue ${WINDOWS[state.window].note.toLowerCase()}: ${money(total, currency)} in total` : "No revenue in this window",
    );
    const accent = css("--accent");
    const instance = chart("revenue-chart", {
      type: "bar",
      data: { labels: [], datasets: [{ label: "Revenue", data: [], backgroundColor: accent, borderRadius: 4, maxBarThickness: 36 }] },
      options: {
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: (ctx) => money(ctx.parsed.y, state.currency) } },
        },
        scales: {
          x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 12 } },
          y: {
            beginAtZero: true,
            ticks: {
              callback: (value) => {
                try {
                  return new Intl.NumberFormat(locale, { style: "currency", currency: state.currency, notation: "compact" }).format(value);
                } catch {
                  return integer.format(value);
                }
              },
            },
          },
        },
      },
    });
    if (!instance) return;
    // Another window or currency is a new picture, not a change to animate.
    const key = `${state.window}|${currency}`;
    const reshaped = instance.$rapportKey !== undefined && instance.$rapportKey !== key;
    instance.$rapportKey = key;
    instance.data.labels = labels;
    instance.data.datasets[0].data = values;
    instance.data.datasets[0].label = `Revenue (${currency || "—"})`;
    if (reshaped) instance.stop(); // a running animation would keep drawing the old picture
    instance.update(reshaped ? "none" : undefined);
  }

  function renderSegments(body) {
    const segments = (body.segments || []).filter((s) => num(s.count) > 0);
    const total = num(body.total) ?? segments.reduce((a, s) => a + num(s.count), 0);
    $("segments-empty").hidden = segments.length > 0;
    setText("segments-note", total ? `${integer.format(total)} customers by recency, frequency and spend` : "By recency, frequency and spend");
    $("segments-chart").setAttribute(
      "aria-label",
      segments.length ? `Customer segments: ${segments.map((s) => `${words(s.segment)} ${s.count}`).join(", ")}` : "No segments yet",
    );
    const instance = chart("segments-chart", {
      type: "doughnut",
      data: { labels: [], datasets: [{ data: [], backgroundColor: [], borderColor: css("--surface"), borderWidth: 2 }] },
      options: {
        cutout: "62%",
        plugins: {
          legend: { position: "right", labels: { boxWidth: 12, boxHeight: 12, padding: 10 } },
          tooltip: {
            callbacks: {
              label: (ctx) => {
                const count = ctx.parsed;
                const whole = ctx.dataset.data.reduce((a, b) => a + b, 0) || 1;
                return ` ${integer.format(count)} customers (${percent.format(count / whole)})`;
              },
            },
          },
        },
      },
    });
    if (!instance) return;
    instance.data.labels = segments.map((s) => words(s.segment));
    instance.data.datasets[0].data = segments.map((s) => num(s.count));
    instance.data.datasets[0].backgroundColor = segments.map(
      (s, i) => SEGMENT_COLORS[String(s.segment).toLowerCase().replace(/[\s-]+/g, "_")] || FALLBACK_COLORS[i % FALLBACK_COLORS.length],
    );
    instance.update();
  }

  function renderSla(kpis) {
    const c = kpis.complaints || {};
    const bars = [
      ["First reply", share(c.first_response_sla_met_pct, true)],
      ["Resolution", share(c.resolution_sla_met_pct, true)],
    ];
    const known = bars.filter(([, v]) => v !== null);
    $("sla-empty").hidden = known.length > 0;
    $("sla-chart").setAttribute(
      "aria-label",
      known.length ? `Complaint SLA met: ${known.map(([l, v]) => `${l} ${percent.format(v)}`).join(", ")}` : "No SLA figures yet",
    );
    const colors = { good: css("--good"), warn: css("--warn"), bad: css("--bad") };
    const instance = chart("sla-chart", {
      type: "bar",
      data: { labels: [], datasets: [{ label: "Met in time", data: [], backgroundColor: [], borderRadius: 4, maxBarThickness: 34 }] },
      options: {
        indexAxis: "y",
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: (ctx) => ` ${percent.format(ctx.parsed.x / 100)} met in time` } },
        },
        scales: {
          x: { min: 0, max: 100, ticks: { stepSize: 25, callback: (v) => percent.format(v / 100) } },
          y: { grid: { display: false } },
        },
      },
    });
    if (!instance) return;
    instance.data.labels = bars.map(([label]) => label);
    instance.data.datasets[0].data = bars.map(([, v]) => (v === null ? null : Math.round(v * 1000) / 10));
    instance.data.datasets[0].backgroundColor = bars.map(([, v]) => colors[tone(v) || "good"]);
    instance.update();
  }

  // ---- lists ---------------------------------------------------------------------------

  function renderChurn(body) {
    const items = body.items || [];
    $("churn-empty").hidden = items.length > 0;
    $("churn-table").hidden = items.length === 0;
    const rows = items.map((item) => {
      const level = String(item.level || "").toLowerCase();
      const score = num(item.score);
      const who = element(
        "td",
        {},
        element("span", { className: "customer-name" }, item.name || "Unnamed customer"),
        element("span", { className: "customer-id" }, item.customer_id),
      );
      const risk = element(
        "td",
        {},
        element("span", { className: `badge badge-${level}` }, words(level) || "—"),
        score === null ? null : element("span", { className: "score" }, `score ${score <= 1 ? integer.format(score * 100) : decimal1.format(score)}`),
      );
      const reasons = (item.reasons || []).map(reasonText).filter(Boolean);
      const why = element("td", {}, element("ul", { className: "reasons" }, ...reasons.map((r) => element("li", {}, r))));
      const since = element(
        "td",
        { className: "when" },
        item.changed_at ? element("time", { datetime: item.changed_at, title: dateTime.format(Date.parse(item.changed_at)) }, ago(item.changed_at)) : "",
      );
      return element("tr", { "data-customer": item.customer_id }, who, risk, why, since);
    });
    $("churn-rows").replaceChildren(...rows);
  }

  function renderNotifications(body) {
    const items = body.items || [];
    $("notifications-empty").hidden = items.length > 0;
    const rows = items.map((item) => {
      const outcome = String(item.event_type || "").split(".").pop() || "event";
      const at = Date.parse(item.at);
      const what = [words(item.rule) || "Notification", item.channel ? `by ${item.channel}` : null, item.name || item.customer_id ? `to ${item.name || item.customer_id}` : null]
        .filter(Boolean)
        .join(" ");
      return element(
        "li",
        {},
        element("time", { datetime: item.at, title: Number.isNaN(at) ? null : dateTime.format(at) }, Number.isNaN(at) ? "" : shortTime.format(at)),
        element("span", {}, element("span", { className: `badge badge-${outcome}` }, words(outcome))),
        element("span", { className: "what" }, what, item.reason ? element("span", { className: "why" }, ` — ${words(item.reason)}`) : null),
      );
    });
    $("notification-list").replaceChildren(...rows);
  }

  // ---- live stream ----------------------------------------------------------------------

  function setLive(mode, detail) {
    const live = $("live");
    live.dataset.state = mode;
    const text = { live: "Live", connecting: "Connecting…", retrying: detail || "Reconnecting…", off: "Offline" }[mode];
    setText("live-text", text);
  }

  function stopStream() {
    state.streamGeneration += 1;
    if (state.streamController) state.streamController.abort();
    state.streamController = null;
    if (state.wakeRetry) state.wakeRetry();
  }

  function pause(ms, generation) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        if (state.wakeRetry === done) state.wakeRetry = null;
        resolve(generation === state.streamGeneration);
      }
      state.wakeRetry = done;
    });
  }

  function startStream() {
    stopStream();
    const generation = state.streamGeneration;
    streamLoop(generation);
  }

  async function streamLoop(generation) {
    const token = state.token;
    let failures = 0;
    while (state.token && generation === state.streamGeneration) {
      const controller = new AbortController();
      state.streamController = controller;
      setLive("connecting");
      let heard = false;
      try {
        const response = await fetch("/api/v1/dashboard/stream", {
          headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
          cache: "no-store",
          signal: controller.signal,
        });
        if (generation !== state.streamGeneration) return;
        if (response.status === 401 || response.status === 403) {
          showSignIn(
            response.status === 401
              ? "The access token was refused (wrong or expired). Sign in again."
              : "This token may not see analytics: it needs the admin or agent role.",
          );
          return;
        }
        if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
        setLive("live");
        await readEvents(response.body, controller, (event) => {
          heard = true;
          failures = 0;
          setLive("live");
          if (event.type === "update") refresh();
        });
      } catch {
        /* network error, abort or silence: reconnect below */
      }
      if (generation !== state.streamGeneration || !state.token) return;
      failures = heard ? 1 : failures + 1;
      const delay = Math.min(BACKOFF_MAX_MS, 1000 * 2 ** (failures - 1)) * (0.8 + Math.random() * 0.4);
      setLive("retrying", `Reconnecting in ${Math.ceil(delay / 1000)} s`);
      if (!(await pause(delay, generation))) return;
    }
  }

  /** Read a text/event-stream body; calls onEvent({type, data}) for each event. */
  async function readEvents(body, controller, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let watchdog = setTimeout(() => controller.abort(), STREAM_SILENCE_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        clearTimeout(watchdog);
        watchdog = setTimeout(() => controller.abort(), STREAM_SILENCE_MS);
        buffer += value;
        const blocks = buffer.split(/\r\n\r\n|\n\n|\r\r/);
        buffer = blocks.pop();
        for (const block of blocks) {
          let type = "message";
          const data = [];
          for (const line of block.split(/\r\n|\n|\r/)) {
            if (!line || line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") type = text;
            else if (field === "data") data.push(text);
          }
          if (type !== "message" || data.length) onEvent({ type, data: data.join("\n") });
        }
      }
    } finally {
      clearTimeout(watchdog);
      reader.cancel().catch(() => {});
    }
  }

  // ---- wiring --------------------------------------------------------------------------

  function chooseWindow(key) {
    if (!WINDOWS[key]) return;
    state.window = key;
    localStorage.setItem(WINDOW_KEY, key);
    for (const button of $("windows").querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset.window === key));
    }
    refresh();
  }

  function init() {
    chartDefaults();
    const remembered = localStorage.getItem(WINDOW_KEY);
    if (WINDOWS[remembered]) {
      state.window = remembered;
      for (const button of $("windows").querySelectorAll("button")) {
        button.setAttribute("aria-pressed", String(button.dataset.window === remembered));
      }
    }
    $("windows").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-window]");
      if (button) chooseWindow(button.dataset.window);
    });
    $("currency").addEventListener("change", (event) => {
      state.currency = event.target.value;
      localStorage.setItem(CURRENCY_KEY, state.currency);
      refresh();
    });
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      if (token) signIn(token);
    });
    $("sign-out").addEventListener("click", () => showSignIn("Signed out. Paste a token to sign in again."));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && state.stale) {
        state.stale = false;
        refresh();
      }
    });
    window.addEventListener("hashchange", () => {
      const token = tokenFromFragment();
      if (token) signIn(token);
    });

    const token = tokenFromFragment() || sessionStorage.getItem(TOKEN_KEY);
    if (token) signIn(token);
    else showSignIn(null);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
