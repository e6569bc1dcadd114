// Colouring of tile features by what the user is doing: the selected feature, the features a query found, and live
// sensor state. One custom colour expression per tileset consults these sets, so changing a highlight costs one
// restyle, however many ids it holds (a CesiumJS condition string would grow with every id).
import * as Cesium from "./cesium.js";

/** The highlight colours, for the legend too: the picked feature and a query's results. */
export const HIGHLIGHTS = {
  selected: { css: "#46b1e1", zh: "选中", en: "selected" },
  found: { css: "#ffd23f", zh: "查询结果", en: "query results" },
};
const SELECTED = Cesium.Color.fromCssColorString(HIGHLIGHTS.selected.css);
const FOUND = Cesium.Color.fromCssColorString(HIGHLIGHTS.found.css);
const DIMMED = Cesium.Color.fromCssColorString("#9aa3ad").withAlpha(0.35);
// Buried networks by the colours of China's pipeline survey standard (CJJ 61: water sky blue, drainage brown, gas pink,
// heat orange, power red, telecom green); water a deeper blue than the selection's. zh-CN and English names.
export const NETWORKS = {
  water: { css: "#2f7dff", zh: "给水", en: "water" },
  gas: { css: "#ff5fb4", zh: "燃气", en: "gas" },
  drainage: { css: "#a0632e", zh: "排水", en: "drainage" },
  sewer: { css: "#7a4a22", zh: "污水", en: "sewer" },
  heating: { css: "#ff9a1f", zh: "热力", en: "heating" },
  power: { css: "#e5302a", zh: "电力", en: "power" },
  telecom: { css: "#2fbf4a", zh: "通信", en: "telecom" },
};
export const OTHER_NETWORK = { css: "#8a93a0", zh: "其他管线", en: "other network" };
const NETWORK_COLORS = new Map(Object.entries(NETWORKS).map(([k, v]) => [k, Cesium.Color.fromCssColorString(v.css)]));
const OTHER_COLOR = Cesium.Color.fromCssColorString(OTHER_NETWORK.css);

export class Styler {
  constructor() {
    this.tilesets = new Set();
    this.selected = undefined;
    this.found = new Set();
    this.live = new Map(); // asset id → Cesium.Color from sensor state
    this.ghost = undefined; // {groups: Set of layer names, alpha}: those layers see-through (underground mode)
    this.onFound = new Set(); // fn() after a query's results change (the legend)
    this.hiddenKinds = new Set(["sensor"]); // kinds not drawn: the sensors' own tile features follow their switch
    this.hiddenIds = new Set(); // assets not drawn: those added after the day the city is shown as of (timeline.js)
    this.changes = new Map(); // asset id → Cesium.Color of its change between two days (timeline.js)
  }

  /** Show or hide the tile features of one kind (one restyle). */
  showKind(kind, on) {
    if (on) this.hiddenKinds.delete(kind);
    else this.hiddenKinds.add(kind);
    this.refresh();
  }

  /** The colour query results are drawn in now (queries.js may set a stronger one), as CSS. */
  foundCss() {
    return (this.foundColor ?? FOUND).toCssHexString();
  }

  attach(tileset, scene) {
    this.tilesets.add(tileset);
    this.scene = scene;
    const style = new Cesium.Cesium3DTileStyle();
    style.color = {
      // The StyleExpression interface: CesiumJS calls evaluateColor per feature when the style is dirty.
      evaluate: (feature, result) => this.colorOf(feature, result),
      evaluateColor: (feature, result) => this.colorOf(feature, result),
    };
    style.show = {
      evaluate: (feature) => !this.hiddenKinds.has(feature.getProperty("kind")) &&
        !(this.hiddenIds.size && this.hiddenIds.has(feature.getProperty("id"))),
    };
    tileset.style = style;
    // Buried networks take their network's colour in full (the tile's own pipe colour is one blue for all).
    if (tileset.cimGroup === "underground") tileset.colorBlendMode = Cesium.Cesium3DTileColorBlendMode.REPLACE;
  }

  colorOf(feature, result) {
    const id = feature.getProperty("id");
    let color = Cesium.Color.WHITE; // white leaves the tile's own colour (HIGHLIGHT blend multiplies)
    if (id === this.selected) color = SELECTED;
    else if (this.found.has(id)) color = this.foundColor ?? FOUND; // queries.js may set a stronger one
    else if (this.changes.has(id)) color = this.changes.get(id);
    else if (this.live.has(id)) color = this.live.get(id);
    else if (this.found.size && this.dimOthers) color = DIMMED;
    else if (feature.tileset?.cimGroup === "underground") color = networkColor(feature.getProperty("network"));
    const out = Cesium.Color.clone(color, result ?? new Cesium.Color());
    if (this.ghost?.groups.has(feature.tileset?.cimGroup) && id !== this.selected) out.alpha *= this.ghost.alpha;
    return out;
  }

  refresh() {
    for (const tileset of this.tilesets) tileset.makeStyleDirty();
    this.scene?.requestRender();
  }

  select(id) {
    this.selected = id;
    this.refresh();
  }

  setFound(ids, { dimOthers = false } = {}) {
    this.found = new Set(ids);
    this.dimOthers = dimOthers;
    this.refresh();
    for (const fn of this.onFound) fn();
  }

  /** The city over time: the asset ids to hide and the colours of changed ones (one restyle). */
  setTime({ hidden, changes }) {
    if (!hidden.size && !changes.size && !this.hiddenIds.size && !this.changes.size) return;
    this.hiddenIds = hidden;
    this.changes = changes;
    this.refresh();
  }

  setLive(id, color) {
    if (color) this.live.set(id, color);
    else this.live.delete(id);
    this.refresh();
  }
}

/** A buried feature's colour by its network (pipes, and the valves and chambers on them). */
export function networkColor(network) {
  return NETWORK_COLORS.get(network) ?? OTHER_COLOR;
}
