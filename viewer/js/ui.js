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

export function setStatus(text, kind = "") {
  const node = $("status");
  node.textContent = text;
  node.className = `status ${kind}`;
}

export function toast(text, { onclick, seconds = 6 } = {}) {
  const node = el("div", { class: "toast", role: "alert", onclick }, text);
  $("toasts").append(node);
  setTimeout(() => node.remove(), seconds * 1000);
}

export function banner(text) {
  const node = $("banner");
  node.textContent = text ?? "";
  node.hidden = !text;
}

export function formatNumber(value, digits = 0) {
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
