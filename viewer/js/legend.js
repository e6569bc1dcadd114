// The legend: one box (bottom right) with a swatch for every layer and colour on screen — buildings, BIM, the buried
// pipes by network, the point assets by kind, the ground layers, the area boundaries, sensors and their clusters,
// cases by state, a query's highlight — and only those shown. The kinds and networks come from the tiles as they load
// (their metadata's `kind` and `network`), so the legend names what the city holds; the kinds' colours come from the
// server (/viewer/colors.json: the table cim/tiling/glb.py builds the tiles with), so there is one table of them.
import { getJSON } from "./api.js";
import { STATE_COLOURS } from "./cases.js";
import { bi, kindName, pair, STATES } from "./i18n.js";
import { SENSOR_STATES } from "./live.js";
import { NETWORKS, OTHER_NETWORK } from "./styler.js";
import { CHANGES } from "./timeline.js";
import { $, el } from "./ui.js";

const GROUPS = {
  buildings: ["建筑", "Buildings"],
  bim: ["建筑信息模型", "BIM detail"],
  underground: ["地下管网", "Underground networks"],
  points: ["点状设施", "Point assets"],
};
/** The ground layers' colours (ground.js) and names. */
const GROUND = {
  water: ["#1d4a6e", "水系", "water"],
  park: ["#2e5e3b", "公园绿地", "parks"],
  land_use: ["#30353c", "用地", "land use"],
  road: ["#5d6876", "道路", "roads"],
  railway: ["#8a7f70", "铁路", "railways"],
};
const OVERDUE_RING = "#ff3df2"; // cases.js's ring around an overdue case

export class Legend {
  constructor({ layers, underground, styler }) {
    this.layers = layers;
    this.underground = underground;
    this.styler = styler;
    this.sources = {}; // {live, cases, areas}: connect() hands them once they exist
    this.kinds = new Map(); // layer group → Set of kinds its loaded tiles hold
    this.networks = new Set(); // networks of the loaded buried features
    this.colors = {}; // kind → {linear, css}, the tiles' own colours
    this.box = el("aside", { id: "legend", "aria-label": "legend 图例", "data-aria-label-zh": "图例", "data-aria-label-en": "legend" });
    document.body.append(this.box);
    this.folded = readFolded(); // folded to its heading: the legend can sit over what one wants to click
    this.watched = new Set();
    let pending;
    this.later = () => {
      if (!pending) pending = setTimeout(() => ((pending = undefined), this.update()), 100);
    };
    // Any switch in the side panel (tiles, ground, sensors, areas, case filters) changes what is shown.
    $("sidebar").addEventListener("change", () => this.update()); // at once: a switch answers within its frame
    underground?.onSwitch(() => this.update());
    layers.viewer.camera.moveEnd.addEventListener(this.later); // area boundaries show by zoom
    styler?.onFound.add(this.later);
    this.colorsLoaded = getJSON("/viewer/colors.json")
      .then((body) => ((this.colors = body.kinds ?? {}), this.update()))
      .catch((err) => console.warn(`legend colours: ${err.message}`));
    this.update();
  }

  /** The live sensors, the cases and the area layers, once main.js has made them. */
  connect({ live, cases, areas }) {
    Object.assign(this.sources, { live, cases, areas });
    // The case list is redrawn whenever the cases on the map change (a filter, a refresh, a live change).
    const list = $("case-list");
    if (list) new MutationObserver(this.later).observe(list, { childList: true });
    this.update();
  }

  /** Follow the layers' tilesets: what their tiles hold now and what they load later. */
  watch() {
    for (const [name, entry] of this.layers.groups) {
      const tileset = entry.tileset;
      if (!tileset || this.watched.has(tileset)) continue;
      this.watched.add(tileset);
      tileset.tileLoad.addEventListener((tile) => this.read(name, tile.content));
      visit(tileset.root, (tile) => tile.contentReady && this.read(name, tile.content));
    }
    this.update();
  }

  read(group, content) {
    if (!content) return;
    const kinds = this.kinds.get(group) ?? new Set();
    this.kinds.set(group, kinds);
    const before = kinds.size + this.networks.size;
    for (let i = 0; i < (content.featuresLength ?? 0); i++) {
      const feature = content.getFeature(i);
      const kind = feature.getProperty("kind");
      if (kind) kinds.add(kind);
      if (group === "underground") {
        const network = feature.getProperty("network");
        if (network) this.networks.add(network);
      }
    }
    for (const inner of content.innerContents ?? []) this.read(group, inner);
    if (kinds.size + this.networks.size !== before) this.later();
  }

  update() {
    const rows = [...this.tileGroups(), this.groundGroup(), this.areaGroup(), this.sensorGroup(), this.caseGroup(),
      this.highlightGroup(), this.timeGroup()].filter(Boolean);
    const fold = el("button", { type: "button", class: "legend-fold", "aria-expanded": String(!this.folded) },
      this.folded ? "▸ " : "▾ ", bi("图例", "Legend"));
    fold.addEventListener("click", () => {
      this.folded = !this.folded;
      writeFolded(this.folded);
      this.update();
    });
    this.box.replaceChildren(...(rows.length ? [el("h2", {}, fold), ...(this.folded ? [] : rows)] : []));
    this.box.hidden = !rows.length;
  }

  tileGroups() {
    const groups = [];
    const visible = new Set(this.layers.visible());
    const ghosted = this.underground?.on;
    for (const [group, [zh, en]] of Object.entries(GROUPS)) {
      if (!visible.has(group) || !this.layers.groups.has(group)) continue;
      const items = [];
      if (group === "underground") {
        const known = Object.keys(NETWORKS).filter((n) => this.networks.has(n));
        const other = [...this.networks].some((n) => !NETWORKS[n]);
        for (const n of known) items.push(item(NETWORKS[n].css, NETWORKS[n].zh, NETWORKS[n].en, { network: n }));
        if (other) items.push(item(OTHER_NETWORK.css, OTHER_NETWORK.zh, OTHER_NETWORK.en, { network: "other" }));
      } else {
        const hidden = this.styler?.hiddenKinds ?? new Set();
        const kinds = [...(this.kinds.get(group) ?? [])].filter((k) => this.colors[k] && !hidden.has(k)).sort();
        for (const k of kinds) {
          const [kz, ke] = kindName(k, { plural: true });
          items.push(item(this.colors[k].css, kz, ke, { kind: k, ghost: ghosted && group !== "points" }));
        }
      }
      const note = ghosted && (group === "buildings" || group === "bim") ? bi("（地下模式隐藏）", "(hidden underground)") : "";
      groups.push(group_(group, zh, en, items, note));
    }
    return groups;
  }

  groundGroup() {
    const items = [];
    for (const box of document.querySelectorAll("#ground-switches input[data-ground]")) {
      const colour = GROUND[box.dataset.ground];
      if (box.checked && colour) items.push(item(colour[0], colour[1], colour[2], { ground: box.dataset.ground }));
    }
    return group_("ground", "地面", "Ground", items);
  }

  /** District, street and grid boundaries, as areas.js draws them (a line each). */
  areaGroup() {
    const items = [];
    for (const [kind, layer] of this.sources.areas?.layers ?? []) {
      if (!layer.checkbox?.checked || !layer.primitive?.show) continue;
      const [zh, en] = kindName(kind);
      items.push(item(layer.spec.stroke, `${zh}边界`, `${en} boundaries`, { area: kind, line: true }));
    }
    return group_("areas", "区域", "Areas", items);
  }

  /** Sensor states in use; clusters when the layer is on; with it off, the alerting sensors still drawn. */
  sensorGroup() {
    const live = this.sources.live;
    if (!live) return undefined;
    const present = new Set();
    for (const s of live.sensors.values()) {
      if (!s.marker) continue;
      const state = live.stateOf(s.id);
      if (live.shown || state === "alert") present.add(state);
    }
    const items = Object.entries(SENSOR_STATES)
      .filter(([state]) => present.has(state))
      .map(([state, s]) => item(s.css, s.zh, s.en, { sensor: state, dot: true }));
    if (live.shown && items.length) {
      const worst = Object.keys(SENSOR_STATES).find((s) => present.has(s)); // the table is worst first
      items.push(el("div", { class: "legend-item wide", "data-sensor": "cluster" },
        el("span", { class: "swatch cluster", style: `background:${SENSOR_STATES[worst].css}` }, "12"), bi("聚合（数字为个数，颜色为最差状态）", "cluster (count; colour of the worst)")));
    }
    const note = live.shown ? "" : bi("（仅告警）", "(alerts only)");
    return group_("sensors", "传感器", "Sensors", items, note);
  }

  /** The cases on the map: their states' colours, the overdue ring, size by severity. */
  caseGroup() {
    const cases = this.sources.cases;
    if (!cases?.available || !cases.markers.size) return undefined;
    const states = new Set();
    let overdue = false;
    for (const f of cases.features.values()) {
      if (!cases.markers.has(f.id)) continue;
      states.add(f.properties?.state);
      overdue ||= Boolean(f.properties?.overdue);
    }
    const items = Object.keys(STATE_COLOURS).filter((s) => states.has(s))
      .map((s) => item(STATE_COLOURS[s], ...pair(STATES, s), { caseState: s, dot: true }));
    if (overdue) {
      items.push(el("div", { class: "legend-item", "data-case-state": "overdue" },
        el("span", { class: "swatch dot ring", style: `border-color:${OVERDUE_RING}` }), bi("超期", "overdue")));
    }
    items.push(el("div", { class: "legend-item hint" }, bi("点越大越紧急", "larger = more severe")));
    return group_("cases", "案件", "Cases", items);
  }

  highlightGroup() {
    if (!this.styler?.found.size) return undefined;
    const n = this.styler.found.size;
    return group_("highlight", "高亮", "Highlight",
      [item(this.styler.foundCss(), `查询结果（${n}）`, `query results (${n})`, { highlight: "found" })]);
  }

  /** What changed between two days, by change; as of a day, the removed assets drawn over the city. */
  timeGroup() {
    const time = this.timeline;
    if (!time?.date) return undefined;
    const kinds = time.to ? Object.keys(CHANGES) : ["removed"];
    const items = kinds.filter((k) => time.counts[k]).map((k) => {
      const c = CHANGES[k];
      const n = time.counts[k];
      return item(c.css, `${c.zh}（${n}）`, `${c.en} (${n})`, { change: k });
    });
    const title = time.to ? ["变化", "Changes"] : ["已移除", "Removed since"];
    return group_("time", ...title, items, el("span", { class: "sub" }, time.to ? `${time.date} → ${time.to}` : time.date));
  }
}

function group_(name, zh, en, items, note = "") {
  if (!items.length) return undefined;
  return el("div", { class: "legend-group", "data-group": name }, el("h3", {}, bi(zh, en), " ", note), items);
}

function item(colour, zh, en, { network, kind, ground, area, sensor, caseState, highlight, change, ghost, dot, line } = {}) {
  const shape = `${ghost ? " ghost" : ""}${dot ? " dot" : ""}${line ? " line" : ""}`;
  const swatch = el("span", { class: `swatch${shape}`, style: `background:${colour}`, "data-colour": colour });
  return el("div", {
    class: "legend-item", "data-network": network, "data-kind": kind, "data-ground": ground, "data-area": area,
    "data-sensor": sensor, "data-case-state": caseState, "data-highlight": highlight, "data-change": change,
  }, swatch, bi(zh, en));
}

function visit(tile, fn) {
  if (!tile) return;
  fn(tile);
  for (const child of tile.children ?? []) visit(child, fn);
}

function readFolded() {
  try {
    return window.localStorage.getItem("cim.legend.folded") === "1";
  } catch {
    return false; // storage blocked: unfolded
  }
}

function writeFolded(folded) {
  try {
    window.localStorage.setItem("cim.legend.folded", folded ? "1" : "0");
  } catch {
    // storage blocked: the fold lasts for this page only
  }
}
