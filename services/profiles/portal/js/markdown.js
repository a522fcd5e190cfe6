/* Help-centre articles are plain text or light markdown: headings (#), bullet and numbered
 * lists, paragraphs, **bold**, *italic*, `code` and [links](https://...). They are turned
 * into elements, never into HTML strings, so an article cannot run a script. */

import { h } from "./dom.js";

const INLINE = /(\*\*[^*]+\*\*|\*[^*\s][^*]*\*|_[^_\s][^_]*_|`[^`]+`|\[[^\]]+\]\([^)\s]+\))/;

function inline(text) {
  const parts = [];
  for (const piece of text.split(INLINE)) {
    if (!piece) continue;
    if (piece.startsWith("**") && piece.endsWith("**") && piece.length > 4) {
      parts.push(h("strong", {}, piece.slice(2, -2)));
    } else if (/^[*_].+[*_]$/.test(piece) && piece.length > 2 && INLINE.test(piece)) {
      parts.push(h("em", {}, piece.slice(1, -1)));
    } else if (piece.startsWith("`") && piece.endsWith("`") && piece.length > 2) {
      parts.push(h("code", {}, piece.slice(1, -1)));
    } else if (piece.startsWith("[") && INLINE.test(piece)) {
      const [, label, target] = piece.match(/^\[([^\]]+)\]\(([^)\s]+)\)$/) || [];
      if (label && /^https?:\/\//i.test(target)) {
        parts.push(h("a", { href: target, rel: "noopener noreferrer", target: "_blank" }, label));
      } else {
        parts.push(label || piece);
      }
    } else {
      parts.push(piece);
    }
  }
  return parts;
}

export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  let paragraph = [];
  let list = null;

  const flushParagraph = () => {
    if (paragraph.length) fragment.append(h("p", {}, inline(paragraph.join(" "))));
    paragraph = [];
  };
  const flushList = () => {
    if (list) fragment.append(list);
    list = null;
  };

  for (const raw of String(text || "").split(/\r?\n/)) {
    const line = raw.trim();
    const heading = line.match(/^(#{1,4})\s+(.*)$/);
    const bullet = line.match(/^[-*•]\s+(.*)$/);
    const numbered = line.match(/^\d+[.)]\s+(.*)$/);
    if (!line) {
      flushParagraph();
      flushList();
    } else if (heading) {
      flushParagraph();
      flushList();
      fragment.append(h(`h${Math.min(heading[1].length + 1, 5)}`, {}, inline(heading[2])));
    } else if (bullet || numbered) {
      flushParagraph();
      const tag = bullet ? "ul" : "ol";
      if (!list || list.tagName.toLowerCase() !== tag) {
        flushList();
        list = h(tag);
      }
      list.append(h("li", {}, inline((bullet || numbered)[1])));
    } else {
      flushList();
      paragraph.push(line);
    }
  }
  flushParagraph();
  flushList();
  return fragment;
}
