// Small DOM helpers shared by the panels.

export const $ = (id) => document.getElementById(id);

/** Create an element: el("li", {class: "x", onclick}, "text", child…). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** The status line: `text` a string, a node (bi(…)) or a list of them. */
export function setStatus(text, kind = "") {
  const node = $("status");
  node.replaceChildren(...[text].flat());
  node.className = `status ${kind}`;
}

/** Toasts at once at most; the rest wait, counted ("另有 5 条 / +5 more"), and show as the shown ones go. */
const TOAST_MAX = 3;
const TOAST_RANK = { critical: 0, alarm: 0, urgent: 1, warning: 1, info: 2 };
const toasts = []; // {node, rank, at}, live ones

/** A passing message; `severity` (critical, warning, info) orders them, the most severe first. */
export function toast(text, { onclick, seconds = 6, severity } = {}) {
  const node = el("div", { class: `toast${severity ? ` sev-${severity}` : ""}`, role: "alert", "data-severity": severity, onclick }, text);
  const entry = { node, rank: TOAST_RANK[severity] ?? 1, at: performance.now() };
  toasts.push(entry);
  setTimeout(() => node.classList.add("leaving"), Math.max(0, seconds - 0.8) * 1000);
  setTimeout(() => {
    toasts.splice(toasts.indexOf(entry), 1);
    renderToasts();
  }, seconds * 1000);
  renderToasts();
}

function renderToasts() {
  toasts.sort((a, b) => a.rank - b.rank || b.at - a.at); // most severe first, then the newest
  const shown = toasts.slice(0, TOAST_MAX).map((t) => t.node);
  const more = toasts.length - shown.length;
  const box = $("toasts");
  // Nodes already shown stay in place (moving them would restart their fade); only changes are applied.
  [...box.children].forEach((child) => shown.includes(child) || child.remove());
  shown.forEach((node, i) => box.children[i] !== node && box.insertBefore(node, box.children[i] ?? null));
  if (more) {
    box.append(el("div", { class: "toast more", id: "toast-more" },
      el("span", { class: "zh" }, `另有 ${more} 条`), " ", el("span", { class: "en" }, `+${more} more`)));
  }
}

export function banner(text) {
  const node = $("banner");
  node.textContent = text ?? "";
  node.hidden = !text;
}

/** A number as the page's language writes it (<html lang>, which the language switch sets). */
export function formatNumber(value, digits = 0) {
  return Number(value).toLocaleString(document.documentElement.lang || "zh-CN", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
