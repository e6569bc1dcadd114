// Click → the picked feature's metadata (the tile's property table) and its asset detail from /assets/{id}:
// parent chain, children, latest sensor state, open alerts. The feature is highlighted while the panel is open.
import * as Cesium from "./cesium.js";
import { getJSON } from "./api.js";
import { bi, biName, kindName } from "./i18n.js";
import { $, el } from "./ui.js";
import { flyToGeometry } from "./viewer.js";

/** The asset columns of a feature's properties (cim.api.geojson); the others are property-set keys. */
const COLUMNS = new Set(["kind", "name", "parent_id", "source", "z_min", "z_max", "install_date", "status", "material",
  "height_m", "network", "diameter_mm", "depth_m", "storeys"]);

/** The columns' names in both languages; a property-set key is the data's own and stays as it is. */
const COLUMN_NAMES = {
  id: ["编号", "id"], kind: ["类型", "kind"], name: ["名称", "name"], parent_id: ["上级", "parent"],
  source: ["数据来源", "source"], z_min: ["底部高程", "bottom"], z_max: ["顶部高程", "top"],
  install_date: ["安装日期", "installed"], status: ["状态", "status"], material: ["材质", "material"],
  height_m: ["高度（米）", "height (m)"], network: ["管网", "network"], diameter_mm: ["管径（毫米）", "diameter (mm)"],
  depth_m: ["埋深（米）", "depth (m)"], storeys: ["层数", "storeys"], lift_count: ["电梯数", "lifts"],
};

// noData sentinels of the property tables (cim/tiling/properties.py): shown as empty, not as -1 or 65535.
const NO_DATA = new Set(["", -1, 65535]);

export class Inspector {
  constructor(viewer, styler) {
    this.viewer = viewer;
    this.styler = styler;
    this.enabled = true; // off while a polygon is being drawn
    this.current = undefined;
    this.pickers = []; // fn(picked) → true when it handled the pick (a case marker, an area)
    this.extras = []; // fn(id) → a section to show with the asset, or undefined (a change's fields, timeline.js)
    $("inspect-close").addEventListener("click", () => this.close());
    const handler = new Cesium.ScreenSpaceEventHandler(viewer.scene.canvas);
    handler.setInputAction((click) => this.enabled && this.pick(click.position), Cesium.ScreenSpaceEventType.LEFT_CLICK);
  }

  pick(position) {
    const picked = this.viewer.scene.pick(position);
    if (this.pickers.some((fn) => fn(picked))) return;
    if (picked instanceof Cesium.Cesium3DTileFeature) {
      const metadata = {};
      for (const name of picked.getPropertyIds()) {
        const value = picked.getProperty(name);
        if (NO_DATA.has(value) && name !== "lift_count") continue;
        // The tiles store decimals as float32: 1.09 reads back as 1.090000033378601; 7 digits are what it holds.
        metadata[name] = typeof value === "number" && !Number.isInteger(value) ? Number(value.toPrecision(7)) : value;
      }
      const title = picked.tileset?.cimExternal; // a mounted tileset's feature is not an asset of this city
      if (title) this.open(String(picked.getProperty("id") ?? title[1]), { ...metadata, tileset: title.join(" ") }, { detail: false });
      else this.open(String(picked.getProperty("id")), metadata);
    } else if (picked?.id?.cimAssetId) {
      this.open(picked.id.cimAssetId, {}); // a marker (sensor, alert) carries the asset id it stands for
    } else if (picked?.id instanceof Cesium.Entity && picked.id.properties?.name) {
      this.close(); // a ground area: nothing to inspect beyond its name
    } else {
      this.close();
    }
  }

  /** Show asset `id`: `metadata` from the tile at once, then the server's detail (`detail`: false for an asset no
   * longer in the model, such as a removed one drawn as it was). */
  async open(id, metadata = {}, { fly = false, detail: ask = true } = {}) {
    this.current = id;
    this.styler.select(id);
    $("inspect-panel").hidden = false;
    $("inspect-title").replaceChildren(biName(metadata.name || id));
    const body = $("inspect-body");
    body.replaceChildren(
      Object.keys(metadata).length ? section(bi("瓦片属性", "From the tile"), propsTable(metadata)) : "",
      ...this.extras.map((fn) => fn(id)).filter(Boolean),
      ask ? el("p", { class: "hint", id: "inspect-loading" }, bi("正在加载设施详情…", "loading asset detail…")) : "",
    );
    if (!ask) return;
    try {
      const detail = await getJSON(`/assets/${encodeURIComponent(id)}`);
      if (this.current !== id) return; // another pick came first
      $("inspect-loading")?.remove();
      this.renderDetail(detail);
      if (fly && detail.asset.geometry) flyToGeometry(this.viewer, detail.asset.geometry);
    } catch (err) {
      if (this.current !== id) return;
      const loading = $("inspect-loading");
      if (loading) loading.replaceChildren(bi("设施详情不可用", "asset detail unavailable"), `: ${err.message}`);
    }
  }

  renderDetail(detail) {
    const { asset, parents = [], children = [], latest_state: state = {}, alerts = [] } = detail;
    const props = asset.properties ?? {};
    $("inspect-title").replaceChildren(biName(props.name || asset.id));
    const link = (item) =>
      el("a", { onclick: () => this.open(item.id, {}, { fly: true }), title: item.id, translate: "no" }, item.name || item.id);
    const crumbs = [...parents].reverse();
    const body = $("inspect-body");
    body.prepend(
      el("p", { class: "crumbs" }, bi(...kindName(props.kind)), " ", el("code", {}, asset.id),
        crumbs.length ? el("br") : "", ...crumbs.flatMap((p, i) => [i ? " › " : bi("位于 ", "in "), link(p)])),
    );
    // the columns first; every other property is a key of the asset's property sets (flattened by the server)
    const entries = Object.entries(props).filter(([, v]) => v !== null && v !== "");
    const shown = Object.fromEntries(entries.filter(([k]) => COLUMNS.has(k)));
    const extra = Object.fromEntries(entries.filter(([k]) => !COLUMNS.has(k)));
    body.append(section(bi("设施", "Asset"), propsTable(shown)));
    if (Object.keys(extra).length) body.append(section(bi("属性", "Properties"), propsTable(extra)));
    if (Object.keys(state).length) {
      const rows = Object.fromEntries(
        Object.entries(state).map(([sensor, r]) => [sensor, `${r.value}${r.status ? ` (${r.status})` : ""} · ${r.time}`]),
      );
      body.append(section(bi("最新传感器状态", "Latest sensor state"), propsTable(rows)));
    }
    if (alerts.length) {
      body.append(section(bi("未关闭告警", "Open alerts"), el("ul", { class: "list" },
        alerts.map((a) => el("li", { class: `sev-${a.severity}` }, a.message || a.rule, el("div", { class: "sub" }, a.opened_at))))));
    }
    if (children.length) {
      const items = children.map((c) => el("li", {}, link(c), el("span", { class: "sub" }, " ", bi(...kindName(c.kind)))));
      if (detail.children_truncated) items.push(el("li", { class: "empty" }, bi("…更多", "…more")));
      body.append(section(bi(`下级（${children.length}${detail.children_truncated ? "+" : ""}）`, `Children (${children.length}${detail.children_truncated ? "+" : ""})`), el("ul", { class: "list" }, items)));
    }
  }

  close() {
    this.current = undefined;
    $("inspect-panel").hidden = true;
    this.styler.select(undefined);
  }
}

function section(title, content) {
  return el("div", { class: "section" }, el("h3", {}, title), content);
}

function propsTable(values) {
  // Values are the data's (and a property set's own keys): marked translate=no; the kind and known keys are named.
  const rows = Object.entries(values).map(([key, value]) =>
    el("tr", {},
      el("td", COLUMN_NAMES[key] ? {} : { translate: "no" }, COLUMN_NAMES[key] ? bi(...COLUMN_NAMES[key]) : key),
      el("td", key === "kind" ? {} : { translate: "no" },
        key === "kind" ? bi(...kindName(value)) : typeof value === "object" ? JSON.stringify(value) : String(value))));
  return el("table", { class: "props" }, el("tbody", {}, rows));
}
