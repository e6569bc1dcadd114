// The legend: one box (bottom right) with a swatch for every layer and colour on screen — buildings, BIM, the buried
// pipes by network, the point assets by kind, the ground layers — and only those shown. The kinds and networks come
// from the tiles as they load (their metadata's `kind` and `network`), so the legend names what the city holds.
import { bi, kindName } from "./i18n.js";
import { NETWORKS, OTHER_NETWORK } from "./styler.js";
import { $, el } from "./ui.js";

/** The tiles' colours by kind, as cim/tiling/glb.py KIND_COLORS writes them (linear RGB, shown here as sRGB). */
const KIND_COLORS = {
  building: [0.8, 0.78, 0.74],
  bridge: [0.55, 0.55, 0.58],
  site: [0.45, 0.55, 0.4],
  storey: [0.7, 0.7, 0.75],
  space: [0.4, 0.65, 0.9],
  element: [0.75, 0.72, 0.68],
  lift: [0.95, 0.6, 0.1],
  hydrant: [0.9, 0.1, 0.1],
  pole: [0.35, 0.35, 0.35],
  transit_stop: [0.1, 0.7, 0.3],
  metro_exit: [0.8, 0.1, 0.5],
  charger: [0.1, 0.8, 0.8],
  sensor: [1.0, 0.85, 0.1],
};
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

export class Legend {
  constructor({ layers, underground }) {
    this.layers = layers;
    this.underground = underground;
    this.kinds = new Map(); // layer group → Set of kinds its loaded tiles hold
    this.networks = new Set(); // networks of the loaded buried features
    this.box = el("aside", { id: "legend", "aria-label": "legend 图例", "data-aria-label-zh": "图例", "data-aria-label-en": "legend" });
    document.body.append(this.box);
    this.watched = new Set();
    let pending;
    this.later = () => {
      if (!pending) pending = setTimeout(() => ((pending = undefined), this.update()), 100);
    };
    // Any layer switch (tiles, ground) changes what is shown.
    $("layers-panel").addEventListener("change", () => this.update());
    underground?.onSwitch(() => this.update());
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
    const rows = [];
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
        const kinds = [...(this.kinds.get(group) ?? [])].filter((k) => KIND_COLORS[k]).sort();
        for (const k of kinds) {
          const [kz, ke] = kindName(k, { plural: true });
          items.push(item(css(KIND_COLORS[k]), kz, ke, { kind: k, ghost: ghosted && group !== "points" }));
        }
      }
      if (!items.length) continue;
      const note = ghosted && (group === "buildings" || group === "bim") ? bi("（地下模式隐藏）", "(hidden underground)") : "";
      rows.push(el("div", { class: "legend-group", "data-group": group }, el("h3", {}, bi(zh, en), " ", note), items));
    }
    const ground = [];
    for (const box of document.querySelectorAll("#ground-switches input[data-ground]")) {
      const colour = GROUND[box.dataset.ground];
      if (box.checked && colour) ground.push(item(colour[0], colour[1], colour[2], { ground: box.dataset.ground }));
    }
    if (ground.length) rows.push(el("div", { class: "legend-group", "data-group": "ground" }, el("h3", {}, bi("地面", "Ground")), ground));
    this.box.replaceChildren(...(rows.length ? [el("h2", {}, bi("图例", "Legend")), ...rows] : []));
    this.box.hidden = !rows.length;
  }
}

function item(colour, zh, en, { network, kind, ground, ghost } = {}) {
  const swatch = el("span", { class: `swatch${ghost ? " ghost" : ""}`, style: `background:${colour}` });
  return el("div", { class: "legend-item", "data-network": network, "data-kind": kind, "data-ground": ground }, swatch, bi(zh, en));
}

/** Linear RGB (0–1) as a CSS sRGB colour. */
function css(linear) {
  const c = linear.map((v) => Math.round(255 * (v <= 0.0031308 ? 12.92 * v : 1.055 * v ** (1 / 2.4) - 0.055)));
  return `rgb(${c.join(",")})`;
}

function visit(tile, fn) {
  if (!tile) return;
  fn(tile);
  for (const child of tile.children ?? []) visit(child, fn);
}
