// Colouring of tile features by what the user is doing: the selected feature, the features a query found, and live
// sensor state. One custom colour expression per tileset consults these sets, so changing a highlight costs one
// restyle, however many ids it holds (a CesiumJS condition string would grow with every id).
import * as Cesium from "./cesium.js";

const SELECTED = Cesium.Color.fromCssColorString("#46b1e1");
const FOUND = Cesium.Color.fromCssColorString("#ffd23f");
const DIMMED = Cesium.Color.fromCssColorString("#9aa3ad").withAlpha(0.35);

export class Styler {
  constructor() {
    this.tilesets = new Set();
    this.selected = undefined;
    this.found = new Set();
    this.live = new Map(); // asset id → Cesium.Color from sensor state
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
    tileset.style = style;
  }

  colorOf(feature, result) {
    const id = feature.getProperty("id");
    let color = Cesium.Color.WHITE; // white leaves the tile's own colour (HIGHLIGHT blend multiplies)
    if (id === this.selected) color = SELECTED;
    else if (this.found.has(id)) color = this.foundColor ?? FOUND; // queries.js may set a stronger one
    else if (this.live.has(id)) color = this.live.get(id);
    else if (this.found.size && this.dimOthers) color = DIMMED;
    return Cesium.Color.clone(color, result ?? new Cesium.Color());
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
  }

  setLive(id, color) {
    if (color) this.live.set(id, color);
    else this.live.delete(id);
    this.refresh();
  }
}
