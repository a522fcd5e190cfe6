/* The inbox: the customer's in-app notifications (from notifications), newest first,
 * unread ones marked; reading marks one, or all, read. Each message carries its own
 * language and direction (a Persian message reads right to left). */

import { call, enc, session } from "../api.js";
import { banner, clear, failure, h, heading, timeOf } from "../dom.js";
import * as i18n from "../i18n.js";

const { t } = i18n;

export async function render(app, view) {
  app.setTitle(t("inbox_title"));
  const customerId = session.get().customer_id;
  const { data: page } = await call("notifications", `/customers/${enc(customerId)}/inbox`, {
    query: { limit: 50 },
  });
  const status = h("div", { class: "form-problem" });
  const list = h("ul", { class: "messages", id: "messages" });
  const markAll = h(
    "button",
    { type: "button", class: "button", id: "mark-all" },
    t("mark_all_read"),
  );
  let unread = page.unread_count;
  const update = () => {
    markAll.hidden = unread === 0;
    app.setUnread(unread);
  };

  for (const message of page.items) {
    const item = h("li", {
      class: message.read_at ? "message-item card" : "message-item card unread",
      dataset: { message: message.id },
    });
    const markOne = h(
      "button",
      {
        type: "button",
        class: "quiet-button",
        "aria-label": t("mark_read_named", { subject: message.subject }),
      },
      t("mark_read"),
    );
    const fill = (current) => {
      clear(item).append(
        h(
          "div",
          { class: "request-head" },
          h("h2", { lang: current.locale, dir: current.direction }, current.subject),
          current.read_at ? null : h("span", { class: "status status-new" }, t("new")),
        ),
        h("p", { class: "meta" }, timeOf(current.created_at, i18n.dateTime(current.created_at))),
        h(
          "p",
          { class: "message-text", lang: current.locale, dir: current.direction },
          current.text,
        ),
        current.read_at ? null : h("div", { class: "form-actions" }, markOne),
      );
      item.classList.toggle("unread", !current.read_at);
    };
    markOne.addEventListener("click", async () => {
      markOne.disabled = true;
      clear(status);
      try {
        const { data } = await call(
          "notifications",
          `/customers/${enc(customerId)}/inbox/${enc(message.id)}/read`,
          { method: "POST" },
        );
        fill(data);
        unread = Math.max(unread - 1, 0);
        update();
        app.announce(t("marked_read"));
        (list.querySelector("li.unread button") || markAll).focus();
      } catch (error) {
        markOne.disabled = false;
        status.append(banner("error", h("p", {}, failure(error))));
      }
    });
    fill(message);
    list.append(item);
  }

  markAll.addEventListener("click", async () => {
    markAll.disabled = true;
    clear(status);
    try {
      await call("notifications", `/customers/${enc(customerId)}/inbox/read-all`, {
        method: "POST",
      });
      unread = 0;
      update();
      app.announce(t("marked_all_read"));
      await app.navigate("inbox", { replace: true });
    } catch (error) {
      markAll.disabled = false;
      status.append(banner("error", h("p", {}, failure(error))));
    }
  });

  view.append(
    h("div", { class: "page-head" }, heading(t("inbox_title")), markAll),
    h("p", { class: "lead" }, t("inbox_intro")),
    status,
    page.items.length ? list : h("p", { class: "empty" }, t("no_messages")),
  );
  update();
}
