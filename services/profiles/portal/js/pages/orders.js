/* Orders and subscriptions: the customer's contracts with their renewal dates (extend an
 * active one), what they bought and brought back with the figures (from the ledger), an
 * add-on order from the catalogue in /portal/config.json, and a return started on a
 * purchase line. Extending and ordering are real business events: profiles announces them
 * (crm.customer.updated with the contracts, crm.purchase.completed) and the platform
 * reacts (renewal reminders move, the ledger, analytics, the thank-you e-mail). */

import { call, enc, session } from "../api.js";
import { banner, clear, failure, field, h, heading, put } from "../dom.js";
import * as i18n from "../i18n.js";

const { t } = i18n;
const EXTEND_MONTHS = [1, 3, 6, 12];
const MAX_QUANTITY = 20;

/** A calendar day ("2027-01-31") as the customer's language writes it; no time zone shift. */
function day(iso) {
  if (!iso) return "";
  try {
    return new Intl.DateTimeFormat(i18n.locale(), { dateStyle: "medium", timeZone: "UTC" }).format(
      new Date(`${iso}T00:00:00Z`),
    );
  } catch {
    return iso;
  }
}

/** `price` (a decimal string) times a whole `quantity`, as a decimal string: no floats. */
export function times(price, quantity) {
  const [whole, fraction = ""] = String(price).split(".");
  const scaled = BigInt(whole + fraction) * BigInt(quantity);
  if (!fraction) return scaled.toString();
  const text = scaled.toString().padStart(fraction.length + 1, "0");
  return `${text.slice(0, -fraction.length)}.${text.slice(-fraction.length)}`;
}

function newId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function addonName(addon) {
  return (addon.names && addon.names[i18n.locale()]) || addon.name;
}

export async function render(app, view) {
  app.setTitle(t("orders_title"));
  const customerId = session.get().customer_id;
  const base = `/customers/${enc(customerId)}`;
  const [contracts, ledger, figures] = await Promise.all([
    call("profiles", `${base}/contracts`),
    call("profiles", `${base}/ledger`, { query: { limit: 50 } }),
    call("profiles", `${base}/figures`),
  ]);
  const status = h("div", { class: "form-problem", id: "orders-status" });
  const flashed = app.takeFlash();
  const reload = (message) => {
    app.flash({ kind: "orders", message });
    return app.navigate("orders", { replace: true });
  };
  const fail = (error) => {
    clear(status).append(banner("error", h("p", {}, error.detail || failure(error))));
  };

  put(
    view,
    heading(t("orders_title")),
    h("p", { class: "lead" }, t("orders_intro")),
    flashed && flashed.kind === "orders"
      ? banner("success", h("p", {}, flashed.message))
      : null,
    status,
    subscriptions(app, contracts.data, fail),
    figuresSection(figures.data),
    addonSection(app, customerId, fail, reload),
    ledgerSection(customerId, ledger.data.items, fail, reload),
  );
}

function subscriptions(app, contracts, fail) {
  const list = h("ul", { class: "orders-list", id: "contracts" });
  for (const contract of contracts) list.append(contractItem(app, contract, fail));
  return h(
    "section",
    { class: "orders-section", "aria-labelledby": "contracts-title" },
    heading(t("contracts_title"), 2, { id: "contracts-title" }),
    contracts.length ? list : h("p", { class: "empty" }, t("no_contracts")),
  );
}

function contractItem(app, contract, fail) {
  const item = h("li", { class: "card contract", dataset: { contract: contract.contract_id } });
  const fill = (current) => {
    const active = current.status === "active";
    const facts = h("dl", { class: "facts" });
    const fact = (label, value) => value && facts.append(h("dt", {}, label), h("dd", {}, value));
    fact(t("contract_since"), day(current.start_date));
    if (current.renews_at) {
      fact(t("contract_renews"), h("time", { datetime: current.renews_at, class: "renews-at" }, day(current.renews_at)));
    }
    if (current.expires_at) {
      fact(t("contract_expires"), h("time", { datetime: current.expires_at }, day(current.expires_at)));
    }
    fact(t("contract_auto_renew"), current.auto_renew ? t("orders_yes") : t("orders_no"));
    clear(item).append(
      h(
        "div",
        { class: "request-head" },
        h("h3", {}, current.product),
        h("span", { class: `status status-contract-${current.status}` }, i18n.label("contract_status", current.status)),
      ),
      facts,
      active ? extendForm(app, current, fill, fail) : null,
    );
  };
  fill(contract);
  return item;
}

function extendForm(app, contract, fill, fail) {
  const id = `extend-${contract.contract_id}`;
  const months = h("select", {});
  for (const count of EXTEND_MONTHS) {
    months.append(h("option", { value: String(count) }, i18n.tn("months", count)));
  }
  const submit = h(
    "button",
    { type: "submit", class: "button", "aria-label": t("extend_named", { product: contract.product }) },
    t("extend"),
  );
  const form = h(
    "form",
    { class: "inline-form", dataset: { extend: contract.contract_id } },
    field({ id, label: t("extend_by"), control: months }),
    h("div", { class: "form-actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const { data } = await call(
        "profiles",
        `/customers/${enc(contract.customer_id)}/contracts/${enc(contract.contract_id)}/extensions`,
        { method: "POST", body: { months: Number(months.value) } },
      );
      fill(data);
      const until = day(data.renews_at || data.expires_at);
      app.announce(t("extended", { product: data.product, date: until }));
      const item = document.querySelector(`[data-contract="${CSS.escape(data.contract_id)}"]`);
      if (item) item.append(banner("success", h("p", {}, t("extended", { product: data.product, date: until }))));
    } catch (error) {
      submit.disabled = false;
      fail(error);
    }
  });
  return form;
}

function figuresSection(figures) {
  const rows = figures.currencies.map((spent) =>
    h(
      "tr",
      {},
      h("td", {}, spent.currency),
      h("td", { class: "number" }, i18n.number(spent.purchase_count)),
      h("td", { class: "number" }, i18n.money(spent.total_spent, spent.currency)),
      h("td", { class: "number" }, i18n.money(spent.refunded, spent.currency)),
      h("td", { class: "number" }, i18n.money(spent.net_spent, spent.currency)),
    ),
  );
  const table = h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "figures", id: "figures" },
      h("caption", { class: "visually-hidden" }, t("figures_title")),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ...["figures_currency", "figures_purchases", "figures_spent", "figures_refunded", "figures_net"].map(
            (key) => h("th", { scope: "col" }, t(key)),
          ),
        ),
      ),
      h("tbody", {}, rows),
    ),
  );
  return h(
    "section",
    { class: "orders-section", "aria-labelledby": "figures-title" },
    heading(t("figures_title"), 2, { id: "figures-title" }),
    h("p", {}, i18n.tn("figures_counts", figures.purchase_count, { returns: i18n.number(figures.return_count) })),
    rows.length ? table : null,
  );
}

function addonSection(app, customerId, fail, reload) {
  const catalogue = (app.config && app.config.addons) || [];
  const section = h(
    "section",
    { class: "orders-section", "aria-labelledby": "addon-title" },
    heading(t("addon_title"), 2, { id: "addon-title" }),
  );
  if (!catalogue.length) return put(section, h("p", { class: "empty" }, t("no_addons")));
  const choice = h("select", {});
  for (const addon of catalogue) {
    choice.append(
      h("option", { value: addon.sku }, `${addonName(addon)} · ${i18n.money(addon.unit_price, addon.currency)}`),
    );
  }
  const quantity = h("input", { type: "number", min: "1", max: String(MAX_QUANTITY), value: "1", inputmode: "numeric" });
  const total = h("p", { class: "meta", id: "addon-total", "aria-live": "polite" });
  const chosen = () => catalogue.find((addon) => addon.sku === choice.value) || catalogue[0];
  const count = () => Math.min(Math.max(parseInt(quantity.value, 10) || 1, 1), MAX_QUANTITY);
  const update = () => {
    const addon = chosen();
    total.textContent = t("order_total", { amount: i18n.money(times(addon.unit_price, count()), addon.currency) });
  };
  choice.addEventListener("change", update);
  quantity.addEventListener("input", update);
  const submit = h("button", { type: "submit", class: "button button-primary" }, t("order_addon"));
  const form = h(
    "form",
    { class: "card stack", id: "addon-form" },
    h("p", { class: "hint" }, t("addon_intro")),
    h(
      "div",
      { class: "form-grid" },
      field({ id: "addon", label: t("addon_choice"), control: choice }),
      field({ id: "addon-quantity", label: t("order_quantity"), control: quantity }),
    ),
    total,
    h("div", { class: "form-actions" }, submit),
  );
  const orderId = newId("ord_"); // a retry of this form's order is recorded once
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const addon = chosen();
    submit.disabled = true;
    try {
      await call("profiles", `/customers/${enc(customerId)}/orders`, {
        method: "POST",
        body: {
          order_id: orderId,
          currency: addon.currency,
          items: [
            {
              sku: addon.sku,
              name: addon.name,
              category: addon.category,
              quantity: count(),
              unit_price: addon.unit_price,
            },
          ],
        },
      });
      await reload(t("ordered", { name: addonName(addon) }));
    } catch (error) {
      submit.disabled = false;
      fail(error);
    }
  });
  update();
  return put(section, form);
}

function ledgerSection(customerId, entries, fail, reload) {
  const list = h("ul", { class: "orders-list", id: "ledger" });
  for (const entry of entries) {
    list.append(entry.kind === "purchase" ? purchaseItem(customerId, entry, fail, reload) : returnItem(entry));
  }
  return h(
    "section",
    { class: "orders-section", "aria-labelledby": "ledger-title" },
    heading(t("ledger_title"), 2, { id: "ledger-title" }),
    entries.length ? list : h("p", { class: "empty" }, t("no_purchases")),
  );
}

function returnItem(entry) {
  return h(
    "li",
    { class: "card ledger-return", dataset: { entry: entry.entry_id } },
    h(
      "div",
      { class: "request-head" },
      h("h3", {}, entry.kind === "refund" ? t("refund_title") : t("return_title")),
      h("span", { class: "amount" }, i18n.money(entry.amount, entry.currency)),
    ),
    h("p", { class: "meta" }, h("time", { datetime: entry.occurred_at }, i18n.dateTime(entry.occurred_at))),
    entry.items.length
      ? h("p", {}, entry.items.map((item) => `${item.sku} × ${i18n.number(item.quantity)}`).join(", "))
      : null,
  );
}

function purchaseItem(customerId, entry, fail, reload) {
  const returned = entry.returned_quantities || {};
  const lines = h("ul", { class: "purchase-lines" });
  for (const item of entry.items) {
    const remaining = Math.max(item.quantity - (returned[item.sku] || 0), 0);
    const line = h(
      "li",
      { class: "purchase-line", dataset: { sku: item.sku } },
      h(
        "span",
        {},
        `${item.name || item.sku} × ${i18n.number(item.quantity)}`,
        item.unit_price ? ` · ${i18n.money(item.unit_price, entry.currency)}` : null,
        returned[item.sku] ? h("span", { class: "meta" }, ` · ${t("returned_count", { count: i18n.number(returned[item.sku]) })}`) : null,
      ),
    );
    if (remaining > 0 && item.unit_price) {
      const start = h(
        "button",
        { type: "button", class: "quiet-button", "aria-label": t("return_named", { name: item.name || item.sku }) },
        t("return_item"),
      );
      start.addEventListener("click", () => {
        start.hidden = true;
        line.append(returnForm(customerId, entry, item, remaining, fail, reload, () => (start.hidden = false)));
      });
      line.append(start);
    }
    lines.append(line);
  }
  return h(
    "li",
    { class: "card ledger-purchase", dataset: { entry: entry.entry_id, purchase: entry.purchase_id } },
    h(
      "div",
      { class: "request-head" },
      h("h3", {}, t("purchase_title")),
      h("span", { class: "amount" }, i18n.money(entry.amount, entry.currency)),
    ),
    h(
      "p",
      { class: "meta" },
      h("time", { datetime: entry.occurred_at }, i18n.dateTime(entry.occurred_at)),
      ` · ${i18n.label("channel", entry.channel)}`,
      entry.refunded && Number(entry.refunded) > 0
        ? ` · ${t("refunded_so_far", { amount: i18n.money(entry.refunded, entry.currency) })}`
        : null,
    ),
    lines,
  );
}

function returnForm(customerId, entry, item, remaining, fail, reload, cancelled) {
  const id = `return-${entry.purchase_id}-${item.sku}`.replace(/[^A-Za-z0-9_-]/g, "_");
  const quantity = h("select", {});
  for (let count = 1; count <= remaining; count += 1) {
    quantity.append(h("option", { value: String(count) }, i18n.number(count)));
  }
  const reason = h("input", { type: "text", maxlength: "200" });
  const refund = h("p", { class: "meta", "aria-live": "polite" });
  const update = () => {
    refund.textContent = t("refund_preview", {
      amount: i18n.money(times(item.unit_price, Number(quantity.value)), entry.currency),
    });
  };
  quantity.addEventListener("change", update);
  const submit = h("button", { type: "submit", class: "button" }, t("confirm_return"));
  const cancel = h("button", { type: "button", class: "quiet-button" }, t("orders_cancel"));
  const form = h(
    "form",
    { class: "inline-form return-form" },
    field({ id: `${id}-quantity`, label: t("return_quantity"), control: quantity }),
    field({ id: `${id}-reason`, label: t("return_reason"), control: reason }),
    refund,
    h("div", { class: "form-actions" }, submit, cancel),
  );
  const returnId = newId("ret_");
  cancel.addEventListener("click", () => {
    form.remove();
    cancelled();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    const count = Number(quantity.value);
    try {
      await call("profiles", "/returns", {
        method: "POST",
        body: {
          return_id: returnId,
          purchase_id: entry.purchase_id,
          customer_id: customerId,
          currency: entry.currency,
          refund_amount: times(item.unit_price, count),
          items: [{ sku: item.sku, quantity: count, unit_price: item.unit_price }],
          reason: reason.value.trim() || undefined,
        },
      });
      await reload(t("return_started", { name: item.name || item.sku }));
    } catch (error) {
      submit.disabled = false;
      fail(error);
    }
  });
  update();
  return form;
}
