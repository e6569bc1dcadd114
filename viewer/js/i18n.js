// Two languages, Shanghai's users first: every label is Chinese with English beside it.
// bi("案件", "Cases") makes <span class=zh>案件</span> <span class=en>Cases</span>; the 中/EN/中EN switch in the side
// panel hides one of them (body.lang-zh, body.lang-en), remembered in localStorage. Until the switch is used the
// browser's languages choose (zh → 中, en → EN, neither → both). Attributes and <option>s cannot hold spans: they carry
// both texts as data-zh/data-en (data-title-zh, data-placeholder-en …), which each language change applies.
import { el } from "./ui.js";

/** A bilingual label element. */
export function bi(zh, en) {
  if (!en || zh === en) return el("span", { class: "zh" }, zh ?? en ?? "");
  if (!zh) return el("span", { class: "en" }, en);
  return el("span", { class: "bi" }, el("span", { class: "zh" }, zh), " ", el("span", { class: "en" }, en));
}

/**
 * A name from the data: both languages where it has both (the switch hides one), else the one it has, shown in
 * every language (a building called "Pudong Office 000456" keeps its name in 中 mode). Marked translate=no: data.
 */
export function biName(zh, en) {
  if (zh && en && zh !== en) return bi(zh, en);
  return el("span", { class: "name", translate: "no" }, zh || en || "");
}

/** Names of asset kinds and areas: zh-CN, English, English plural (lists such as the legend). */
const KIND_NAMES = {
  place: ["地点", "place", "places"],
  city: ["市", "city", "city"],
  district: ["区", "district", "districts"],
  street: ["街镇", "street", "streets"],
  grid_cell: ["网格", "grid cell", "grid cells"],
  building: ["建筑", "building", "buildings"],
  bridge: ["桥梁", "bridge", "bridges"],
  site: ["场地", "site", "sites"],
  storey: ["楼层", "storey", "storeys"],
  space: ["空间", "space", "spaces"],
  element: ["构件", "element", "elements"],
  lift: ["电梯", "lift", "lifts"],
  road: ["道路", "road", "roads"],
  park: ["公园", "park", "parks"],
  pipe: ["管线", "pipe", "pipes"],
  node: ["阀门/检查井", "valve, chamber", "valves, chambers"],
  hydrant: ["消火栓", "hydrant", "hydrants"],
  pole: ["杆件", "pole", "poles"],
  transit_stop: ["公交站", "bus stop", "bus stops"],
  metro_exit: ["地铁出入口", "metro exit", "metro exits"],
  charger: ["充电桩", "charger", "chargers"],
  sensor: ["传感器", "sensor", "sensors"],
};

/** [zh, en] names of an asset kind or area kind (the kind itself when unknown). */
export function kindName(kind, { plural = false } = {}) {
  const names = KIND_NAMES[kind];
  return names ? [names[0], names[plural ? 2 : 1]] : [kind, kind];
}

/** A bilingual label as plain text, for places that take text only (tooltips, canvas labels, the ticker). */
export function biText(zh, en) {
  const lang = currentLang();
  if (lang === "zh") return zh || en || "";
  if (lang === "en") return en || zh || "";
  return zh && en && zh !== en ? `${zh} ${en}` : zh || en || "";
}

export const STATES = {
  reported: ["上报", "reported"],
  filed: ["立案", "filed"],
  dispatched: ["派遣", "dispatched"],
  in_progress: ["处置中", "in progress"],
  handled: ["已处置", "handled"],
  verified: ["已核查", "verified"],
  closed: ["结案", "closed"],
};
export const OPEN_STATES = ["reported", "filed", "dispatched", "in_progress", "handled", "verified"];

export const SEVERITIES = { normal: ["一般", "normal"], urgent: ["紧急", "urgent"], critical: ["特急", "critical"] };

// Alert severities (the rules' levels), apart from the case severities above.
export const ALERT_SEVERITIES = { info: ["提示", "info"], warning: ["警告", "warning"], critical: ["严重", "critical"] };

/** An alert's text in the chosen language: the server writes it in both (details.message_zh, message). */
export function alertText(alert) {
  return biText(alert.details?.message_zh, alert.message || alert.rule);
}

/** A moment as Shanghai's wall clock to the second: "2026-12-04 21:05:09" (the server sends UTC). */
export function shanghaiTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso ?? "");
  return date.toLocaleString("sv-SE", { timeZone: "Asia/Shanghai", hour12: false });
}

export const ACTIONS = {
  report: ["上报", "reported"],
  file: ["立案", "filed"],
  dismiss: ["不予立案", "dismissed"],
  dispatch: ["派遣", "dispatched"],
  accept: ["受理", "accepted"],
  return: ["退回", "returned"],
  handle: ["处置", "handled"],
  verify: ["核查", "verified"],
  reject: ["核查不通过", "rejected"],
  close: ["结案", "closed"],
  reopen: ["重新立案", "reopened"],
  clear: ["告警消除", "cleared"],
  escalate: ["升级", "escalated"],
  join: ["合并", "joined"],
  note: ["备注", "note"],
};

export const SOURCES = {
  sensor: ["传感器告警", "sensor alert"],
  rule: ["规则", "rule"],
  hotline: ["12345热线", "hotline"],
  inspector: ["网格监督员", "inspector"],
  manual: ["人工", "manual"],
};

export const LEVELS = {
  city: ["市级", "city"],
  district: ["区级", "district"],
  street: ["街镇", "street"],
  grid_cell: ["网格", "grid cell"],
};

/** The pair for `key` in one of the tables above, or the key itself twice. */
export function pair(table, key) {
  return table[key] ?? [key, key];
}

const LANGS = ["both", "zh", "en"];
const BUTTON = { both: "中/EN", zh: "中", en: "EN" };
/** Attributes that take a text in two languages (data-<attr>-zh, data-<attr>-en). */
const TEXT_ATTRS = ["title", "placeholder", "aria-label"];

/** The language the browser asks for: the first of navigator.languages that is Chinese or English, else both. */
export function browserLang(languages = navigator.languages?.length ? navigator.languages : [navigator.language]) {
  for (const tag of languages ?? []) {
    const code = String(tag).toLowerCase();
    if (code.startsWith("zh")) return "zh";
    if (code.startsWith("en")) return "en";
  }
  return "both";
}

export function currentLang() {
  const stored = safeStorage()?.getItem("cim.lang");
  return LANGS.includes(stored) ? stored : browserLang();
}

/**
 * Give `node` texts in two languages where spans cannot go: `{ text: [zh, en] }` for its text (an <option>),
 * `{ title: [zh, en], placeholder: [zh, en], "aria-label": [zh, en] }` for attributes. Applied now and on every
 * language change. Returns the node.
 */
export function biAttrs(node, texts) {
  for (const [attr, [zh, en]] of Object.entries(texts)) {
    const key = attr === "text" ? "" : `-${attr}`;
    node.setAttribute(`data${key}-zh`, zh ?? en ?? "");
    node.setAttribute(`data${key}-en`, en ?? zh ?? "");
  }
  applyTexts(node);
  return node;
}

/** An <option> whose text follows the language. */
export function biOption(value, zh, en, attrs = {}) {
  return biAttrs(el("option", { value, ...attrs }), { text: [zh, en] });
}

/** Set the two-language texts of `root` and everything in it to the chosen language. */
function applyTexts(root = document) {
  const pick = (node, key) => biText(node.getAttribute(`data${key}-zh`), node.getAttribute(`data${key}-en`));
  const nodes = (selector) => [...(root.matches?.(selector) ? [root] : []), ...root.querySelectorAll(selector)];
  for (const node of nodes("[data-zh]")) node.textContent = pick(node, "");
  for (const attr of TEXT_ATTRS) {
    for (const node of nodes(`[data-${attr}-zh]`)) node.setAttribute(attr, pick(node, `-${attr}`));
  }
}

/** Apply the stored language and wire the switch button (#lang-switch), which cycles both → 中 → EN. */
export function initLang(onChange) {
  const apply = (lang) => {
    document.body.classList.toggle("lang-zh", lang === "zh");
    document.body.classList.toggle("lang-en", lang === "en");
    document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    const button = document.getElementById("lang-switch");
    if (button) button.textContent = BUTTON[lang];
    document.title = biText("城市信息模型", "City information model");
    applyTexts();
  };
  apply(currentLang());
  document.getElementById("lang-switch")?.addEventListener("click", () => {
    const next = LANGS[(LANGS.indexOf(currentLang()) + 1) % LANGS.length];
    safeStorage()?.setItem("cim.lang", next);
    apply(next);
    onChange?.(next);
  });
}

function safeStorage() {
  try {
    return window.localStorage;
  } catch {
    return undefined; // storage blocked: the default (both languages) stays
  }
}
