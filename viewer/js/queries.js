// The query panel: old lifts, buried pipes in a drawn area, assets within (or beyond) a distance of another kind.
// Results are counted, sorted usefully (old lifts oldest first, or nearest the view's centre; pipes oldest first;
// assets nearest first), listed with their figures (click a row to fly there), highlighted in the tiles by styling
// (a strong colour; found pipes in a flat bright colour that reads as a glow below the translucent ground), and can
// be downloaded as GeoJSON or CSV (the server's f=geojson|csv). The forms offer only the kinds the store holds.
import * as Cesium from "./cesium.js";
import { getJSON, postJSON, query } from "./api.js";
import { bi, biOption, biText, kindName } from "./i18n.js";
import { $, el, formatNumber } from "./ui.js";
import { drawPolygon, polygonOf } from "./draw.js";
import { flyToPoint, groundAt, viewBbox } from "./viewer.js";

const MAX_ROWS = 300; // rows listed; every result is still highlighted
/** Found pipes: a hot colour no pipe network uses, drawn flat (REPLACE) so it glows against the dimmed rest. */
const PIPE_FOUND = Cesium.Color.fromCssColorString("#ff2bd6");
const AREA = Cesium.Color.fromCssColorString("#46b1e1");
const NETWORKS_ZH = { gas: "燃气", water: "供水", drainage: "排水", sewer: "污水", heating: "供热" };
const zhNetwork = (network) => NETWORKS_ZH[network] ?? network ?? "";

export class Queries {
  constructor({ viewer, styler, inspector, layers, underground, onChange }) {
    Object.assign(this, { viewer, styler, inspector, layers, underground, onChange });
    this.current = undefined; // the query in the shareable form (state.js)
    this.area = undefined; // the drawn polygon's entity
    this.order = "age"; // old lifts: "age" (oldest first) or "distance" (from the view's centre)
    this.shown = undefined; // {summary, rows, downloads} of the last answer, re-listed when the order changes
    this.kindOptions = new Map(); // select id → its original options, so kinds that appear can come back
    $("old-lifts-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.run({ type: "old-lifts", years: Number($("old-lifts-years").value || 15) });
    });
    $("pipes-draw").addEventListener("click", () => this.drawPipesArea());
    $("near-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.run({
        type: "near",
        kind: $("near-kind").value,
        near: $("near-near").value,
        distance: Number($("near-distance").value || 0),
        beyond: $("near-beyond").checked,
      });
    });
  }

  /** Offer in the within-distance forms only the kinds the store holds (its /collections). */
  setKinds(collections) {
    const kinds = new Set((collections ?? []).map((c) => c.id));
    if (!kinds.size) return; // the server did not say: keep every option
    for (const id of ["near-kind", "near-near"]) {
      const select = $(id);
      if (!this.kindOptions.has(id)) this.kindOptions.set(id, [...select.options].map((o) => o.value));
      const value = select.value;
      const present = this.kindOptions.get(id).filter((kind) => kinds.has(kind));
      select.replaceChildren(...present.map((kind) => biOption(kind, ...kindName(kind))));
      if (present.includes(value)) select.value = value;
    }
  }

  async drawPipesArea() {
    const button = $("pipes-draw");
    button.classList.add("active");
    this.inspector.enabled = false;
    const ring = await drawPolygon(this.viewer);
    this.inspector.enabled = true;
    button.classList.remove("active");
    if (!ring) return;
    const older = $("pipes-older").value;
    this.run({ type: "pipes", network: $("pipes-network").value, older: older ? Number(older) : undefined, ring });
  }

  /** Run a query given in the shareable form, show and highlight its result. */
  async run(q) {
    this.current = q;
    this.onChange();
    const out = $("query-result");
    out.replaceChildren(el("p", { class: "hint" }, bi("正在查询…", "asking the server…")));
    this.showArea(q.type === "pipes" ? q.ring : undefined);
    this.glowPipes(false);
    try {
      if (q.type === "old-lifts") await this.oldLifts(q, out);
      else if (q.type === "pipes") await this.pipes(q, out);
      else if (q.type === "near") await this.near(q, out);
    } catch (err) {
      out.replaceChildren(el("p", { class: "status bad" }, `${biText("查询失败", "query failed")}: ${err.message}`));
      this.styler.setFound([]);
    }
  }

  /** Fill the panel's inputs from a shared query, so the link shows what was asked. */
  fillForm(q) {
    if (q.type === "old-lifts") {
      $("q-old-lifts").open = true;
      $("old-lifts-years").value = q.years;
    } else if (q.type === "pipes") {
      $("q-pipes").open = true;
      $("pipes-network").value = q.network;
      $("pipes-older").value = q.older ?? "";
    } else if (q.type === "near") {
      $("q-near").open = true;
      Object.assign($("near-kind"), { value: q.kind });
      Object.assign($("near-near"), { value: q.near });
      $("near-distance").value = q.distance;
      $("near-beyond").checked = q.beyond;
    }
  }

  async oldLifts(q, out) {
    const path = "/queries/old-lifts";
    const result = await getJSON(`${path}${query({ years: q.years })}`);
    const buildings = result.buildings ?? [];
    const liftIds = buildings.flatMap((b) => b.lifts.map((l) => l.id));
    this.styler.setFound([...buildings.map((b) => b.id), ...liftIds], { dimOthers: true });
    const unknown = result.unknown_age?.length ?? 0;
    const nb = formatNumber(buildings.length);
    const nl = formatNumber(liftIds.length);
    const summary = bi(
      `${nb} 栋建筑 · ${nl} 部电梯超过 ${q.years} 年` + (unknown ? `；${formatNumber(unknown)} 部电梯年龄不明` : ""),
      `${nb} buildings with ${nl} lifts older than ${q.years} years` +
        (unknown ? `; ${formatNumber(unknown)} lifts of unknown age` : ""),
    );
    const rows = buildings.map((b) => {
      const age = Math.max(...b.lifts.map((l) => l.age_years));
      const n = b.lifts.length;
      return {
        id: b.id,
        text: b.name || b.id,
        age,
        sub: bi(`最老 ${formatNumber(age, 1)} 年 · ${n} 部电梯`, `oldest ${formatNumber(age, 1)} y · ${n} lift${n === 1 ? "" : "s"}`),
        lon: b.lon,
        lat: b.lat,
      };
    });
    this.show(out, { summary, rows, sortable: true, downloads: this.links(path, { years: q.years }, "old-lifts") });
  }

  async pipes(q, out) {
    const body = { area: polygonOf(q.ring), network: q.network || null, older_than: q.older ?? null };
    const result = await postJSON("/queries/buried-pipes", body);
    const pipes = result.pipes ?? [];
    this.styler.setFound(pipes.map((p) => p.id), { dimOthers: true });
    if (pipes.length) {
      // The pipes are below ground: show that layer, look through the ground, and make the found ones glow.
      this.layers.show("underground", true);
      this.underground.set(true);
      this.glowPipes(true);
    }
    const n = formatNumber(pipes.length);
    const km = formatNumber(result.total_length_m / 1000, 2);
    const summary = bi(`${n} 根${zhNetwork(q.network)}管线，区内共 ${km} 公里`, `${n} buried ${q.network || ""} pipes, ${km} km in the area`);
    // Oldest first: the install date is ISO, so text order is date order; undated last.
    const sorted = [...pipes].sort((a, b) => (a.install_date ?? "9999").localeCompare(b.install_date ?? "9999"));
    const diameters = await this.diameters(sorted.slice(0, MAX_ROWS).map((p) => p.id));
    const rows = sorted.map((p) => {
      const year = p.install_date?.slice(0, 4);
      const dn = diameters.get(p.id);
      const zh = [zhNetwork(p.network), dn != null ? `DN${dn}` : "", year ? `${year}年敷设` : "", `区内 ${formatNumber(p.length_in_area_m)} 米`];
      const en = [p.network, dn != null ? `${dn} mm` : "", year ? `laid ${year}` : "", `${formatNumber(p.length_in_area_m)} m in area`];
      return { id: p.id, text: p.id, sub: bi(zh.filter(Boolean).join(" · "), en.filter(Boolean).join(" · ")) };
    });
    const downloads = ["geojson", "csv"].map((f) => ({
      format: f,
      href: "#",
      onclick: (event) => {
        event.preventDefault();
        this.saveAs(`/queries/buried-pipes?f=${f}`, body, `buried-pipes.${f}`);
      },
    }));
    this.show(out, { summary, rows, downloads });
  }

  /** Diameters (mm) of these pipes from their collection, for the list; empty when the server does not say. */
  async diameters(ids) {
    if (!ids.length) return new Map();
    try {
      const body = await getJSON(`/collections/pipe/items${query({ ids: ids.join(","), limit: ids.length })}`);
      return new Map(body.features.map((f) => [f.id, f.properties?.diameter_mm]).filter(([, d]) => d != null));
    } catch (err) {
      console.warn(`pipe diameters: ${err.message}`);
      return new Map();
    }
  }

  async near(q, out) {
    const bbox = $("near-inview").checked ? viewBbox(this.viewer) : undefined;
    const params = {
      kind: q.kind,
      near: q.near,
      distance: q.distance,
      beyond: q.beyond ? "true" : undefined,
      bbox: bbox?.map((v) => v.toFixed(6)).join(","),
    };
    const path = "/queries/within-distance";
    const result = await getJSON(`${path}${query(params)}`);
    const assets = [...(result.assets ?? [])].sort((a, b) => (a.distance_m ?? Infinity) - (b.distance_m ?? Infinity));
    this.styler.setFound(assets.map((a) => a.id), { dimOthers: true });
    const n = formatNumber(assets.length);
    const d = formatNumber(q.distance);
    const [kindZh, kindEn] = kindName(q.kind, { plural: true });
    const [nearZh, nearEn] = kindName(q.near);
    const summary = bi(
      `${n} 个${kindZh}${q.beyond ? "距" : "在"}最近的${nearZh}${q.beyond ? "超过" : ""} ${d} 米${q.beyond ? "" : "以内"}`,
      `${n} ${kindEn} ${q.beyond ? "farther than" : "within"} ${d} m of a ${nearEn}`,
    );
    const rows = assets.map((a) => ({
      id: a.id,
      text: a.name || a.id,
      sub: a.distance_m != null ? bi(`距 ${a.near_id} ${formatNumber(a.distance_m)} 米`, `${formatNumber(a.distance_m)} m to ${a.near_id}`) : "",
      lon: a.lon,
      lat: a.lat,
    }));
    this.show(out, { summary, rows, downloads: this.links(path, params, q.kind) });
  }

  /** Download links of a GET query: the same question with f=geojson and f=csv. */
  links(path, params, name) {
    return ["geojson", "csv"].map((f) => ({ format: f, href: `${path}${query({ ...params, f })}`, download: `${name}.${f}` }));
  }

  /** POST a question with f= and save the answer as a file (a link cannot POST). */
  async saveAs(path, body, filename) {
    const response = await fetch(path, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
    const url = URL.createObjectURL(await response.blob());
    el("a", { href: url, download: filename }).click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  /** The centre of the view on the ground, [lon, lat], or undefined. */
  viewCentre() {
    const canvas = this.viewer.scene.canvas;
    return groundAt(this.viewer, new Cesium.Cartesian2(canvas.clientWidth / 2, canvas.clientHeight / 2));
  }

  setOrder(order) {
    this.order = order;
    if (this.shown) this.show($("query-result"), this.shown);
  }

  show(out, shown) {
    this.shown = shown;
    const { summary, rows, sortable, downloads } = shown;
    if (!rows.length) {
      out.replaceChildren(el("p", { class: "summary", id: "no-results" }, bi("没有结果。", "No results.")));
      return;
    }
    let ordered = rows;
    if (sortable && this.order === "distance") {
      const centre = this.viewCentre();
      if (centre) {
        const [lon0, lat0] = centre;
        const k = Math.cos((lat0 * Math.PI) / 180);
        const d2 = (r) => (r.lon == null ? Infinity : ((r.lon - lon0) * k) ** 2 + (r.lat - lat0) ** 2);
        ordered = [...rows].sort((a, b) => d2(a) - d2(b));
      }
    } else if (sortable) {
      ordered = [...rows].sort((a, b) => b.age - a.age);
    }
    const items = ordered.slice(0, MAX_ROWS).map((row) =>
      el("li", {
        "data-id": row.id,
        "data-age": row.age != null ? row.age : undefined,
        onclick: () => {
          if (row.lon != null && row.lat != null) flyToPoint(this.viewer, row.lon, row.lat);
          this.inspector.open(row.id, {}, { fly: row.lon == null });
        },
      }, row.text, row.sub ? el("div", { class: "sub" }, row.sub) : ""));
    if (rows.length > MAX_ROWS) items.push(el("li", { class: "empty" }, bi(`另有 ${rows.length - MAX_ROWS} 条`, `… and ${rows.length - MAX_ROWS} more`)));
    const tools = el("div", { class: "result-tools row" },
      sortable ? el("select", { id: "result-order", "aria-label": biText("排序", "order"), "data-aria-label-zh": "排序", "data-aria-label-en": "order", onchange: (e) => this.setOrder(e.target.value) },
        biOption("age", "按年龄（最老在前）", "by age, oldest first", { selected: this.order === "age" }),
        biOption("distance", "按离视图中心距离", "by distance from view centre", { selected: this.order === "distance" })) : "",
      el("span", { class: "downloads" }, bi("下载", "download"), " ",
        ...downloads.map((d) => el("a", { class: "download", "data-format": d.format, href: d.href, download: d.download, onclick: d.onclick },
          d.format === "geojson" ? "GeoJSON" : "CSV"), " ")));
    out.replaceChildren(
      el("p", { class: "summary", id: "result-count" }, summary),
      tools,
      el("ul", { class: "list", id: "result-list" }, items),
    );
  }

  /** Found pipes in a flat bright colour (REPLACE ignores the pipe's own colour), others dimmed; off: as before. */
  glowPipes(on) {
    this.styler.foundColor = on ? PIPE_FOUND : undefined;
    for (const tileset of this.layers.tilesets()) {
      if (tileset.cimGroup !== "underground") continue;
      tileset.colorBlendMode = on ? Cesium.Cesium3DTileColorBlendMode.REPLACE : Cesium.Cesium3DTileColorBlendMode.HIGHLIGHT;
    }
    this.styler.refresh();
  }

  /** The drawn area whole: one entity, a translucent polygon with its outline, just above the ground. */
  showArea(ring) {
    if (this.area) this.viewer.entities.remove(this.area);
    this.area = undefined;
    this.viewer.scene.requestRender();
    if (!ring) return;
    const closed = [...ring, ring[0]];
    this.area = this.viewer.entities.add({
      id: "query-area",
      polygon: {
        hierarchy: new Cesium.PolygonHierarchy(ring.map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat))),
        height: 0.5,
        material: AREA.withAlpha(0.18),
        outline: true,
        outlineColor: AREA,
      },
      polyline: {
        positions: closed.map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat, 1)),
        width: 3,
        arcType: Cesium.ArcType.RHUMB,
        material: AREA,
      },
    });
  }

  clear() {
    this.current = undefined;
    this.shown = undefined;
    this.showArea(undefined);
    this.glowPipes(false);
    this.styler.setFound([]);
    $("query-result").replaceChildren();
    this.onChange();
  }
}
