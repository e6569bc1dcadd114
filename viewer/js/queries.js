// The query panel: old lifts, buried pipes in a drawn area, assets within (or beyond) a distance of another kind.
// Results are counted, sorted usefully (old lifts oldest first, or nearest the view's centre; pipes oldest first;
// assets nearest first), listed with their figures (click a row to fly there), highlighted in the tiles by styling
// (a strong colour; found pipes in a flat bright colour, and over them glowing lines of a fixed width on screen, so
// they stand out from far away; the drawn area whole with the count at its centre), and can be downloaded as GeoJSON
// or CSV (the server's f=geojson|csv). The forms offer only the kinds the store holds. The list is shown first and
// the scene changed after it is painted: the page never waits on a restyle to show the answer.
import * as Cesium from "./cesium.js";
import { getJSON, postJSON, query } from "./api.js";
import { bi, biOption, biText, currentLang, kindName } from "./i18n.js";
import { $, el, formatNumber } from "./ui.js";
import { drawPolygon, polygonOf } from "./draw.js";
import { flyToPoint, groundAt, viewBbox } from "./viewer.js";

const MAX_ROWS = 300; // rows listed; every result is still highlighted
/** Found pipes: a hot colour no pipe network uses, drawn flat (REPLACE) so it glows against the dimmed rest. */
const PIPE_FOUND = Cesium.Color.fromCssColorString("#ff2bd6");
const AREA = Cesium.Color.fromCssColorString("#46b1e1");
const GLOW_WIDTH_PX = 9;
/** Query overlays (the drawn area, the glowing pipes) are drawn whatever is in front: a polygon or line at the
 * ground's height fights the globe's depth at city scale and shows in fragments; under the translucent ground of
 * underground mode nothing should hide them either. */
const OVERLAY = { depthTest: { enabled: false }, depthMask: false };
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
    this.asked = (this.asked ?? 0) + 1; // answers to an older question are dropped
    this.onChange();
    const out = $("query-result");
    out.replaceChildren(el("p", { class: "hint" }, bi("正在查询…", "asking the server…")));
    this.showArea(q.type === "pipes" ? q.ring : undefined);
    this.removeGlow();
    if (this.styler.foundColor) this.glowPipes(false); // a restyle costs a slow frame: only when pipes glowed
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
    const asked = this.asked;
    const result = await getJSON(`${path}${query({ years: q.years })}`);
    if (asked !== this.asked) return; // a newer question was asked meanwhile
    const buildings = result.buildings ?? [];
    const liftIds = buildings.flatMap((b) => b.lifts.map((l) => l.id));
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
    this.markFound([...buildings.map((b) => b.id), ...liftIds]);
    this.show(out, { summary, rows, sortable: true, downloads: this.links(path, { years: q.years }, "old-lifts") });
    await this.restyleAfterPaint();
  }

  async pipes(q, out) {
    const body = { area: polygonOf(q.ring), network: q.network || null, older_than: q.older ?? null };
    const asked = this.asked;
    const result = await postJSON("/queries/buried-pipes", body);
    if (asked !== this.asked) return; // a newer question was asked meanwhile
    const pipes = result.pipes ?? [];
    const n = formatNumber(pipes.length);
    const km = formatNumber(result.total_length_m / 1000, 2);
    const summary = bi(`${n} 根${zhNetwork(q.network)}管线，区内共 ${km} 公里`, `${n} buried ${q.network || ""} pipes, ${km} km in the area`);
    // Oldest first: the install date is ISO, so text order is date order; undated last.
    const sorted = [...pipes].sort((a, b) => (a.install_date ?? "9999").localeCompare(b.install_date ?? "9999"));
    const thisYear = new Date().getFullYear();
    const rows = sorted.map((p) => {
      const year = p.install_date?.slice(0, 4);
      const dn = p.diameter_mm != null ? Math.round(p.diameter_mm) : undefined;
      const age = year ? thisYear - Number(year) : undefined;
      const zh = [zhNetwork(p.network), dn != null ? `DN${dn}` : "", year ? `${year}年敷设（${age} 年）` : "", `区内 ${formatNumber(p.length_in_area_m)} 米`];
      const en = [p.network, dn != null ? `${dn} mm` : "", year ? `laid ${year} (${age} y)` : "", `${formatNumber(p.length_in_area_m)} m in area`];
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
    // The list and the count first; the scene's changes (a restyle of every loaded feature, the underground view, the
    // glowing lines) drawn after the list is painted, so the answer shows at once and no step holds the page long.
    this.markFound(pipes.map((p) => p.id));
    if (pipes.length) this.glowPipes(true, { refresh: false });
    this.show(out, { summary, rows, downloads });
    this.labelArea(`${n} 根管线 · ${km} 公里`, `${n} pipes · ${km} km`);
    await nextFrame();
    if (asked !== this.asked) return;
    if (!pipes.length) {
      this.styler.refresh();
      return;
    }
    // The pipes are below ground: show that layer and look through the ground from where the area was drawn (no
    // flight below ground: the area and all its pipes stay in view); underground.set restyles.
    this.layers.show("underground", true);
    this.underground.set(true, { fly: false });
    this.drawGlow(body, asked);
  }

  /** The found pipes as glowing lines of a fixed width on screen, drawn over everything: a DN200 main is a pixel wide
   * from 1,400 m, a line of 9 px is not. One primitive, its geometry built in CesiumJS's web workers. */
  async drawGlow(body, asked) {
    let features = [];
    try {
      features = (await postJSON("/queries/buried-pipes?f=geojson", body)).features ?? [];
    } catch (err) {
      console.warn(`pipe lines: ${err.message}`);
    }
    if (asked !== this.asked) return;
    const lines = features.flatMap((f) => linesOf(f.geometry)).filter((line) => line.length >= 2);
    if (!lines.length) return;
    const instances = lines.map((line) => new Cesium.GeometryInstance({
      geometry: new Cesium.PolylineGeometry({
        positions: line.map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat, 0)),
        width: GLOW_WIDTH_PX,
        vertexFormat: Cesium.PolylineMaterialAppearance.VERTEX_FORMAT,
      }),
    }));
    this.glow = this.viewer.scene.primitives.add(new Cesium.Primitive({
      geometryInstances: instances,
      appearance: new Cesium.PolylineMaterialAppearance({
        material: Cesium.Material.fromType("PolylineGlow", { color: PIPE_FOUND, glowPower: 0.3, taperPower: 1 }),
        renderState: OVERLAY,
      }),
      asynchronous: true,
    }));
    this.viewer.scene.requestRender();
  }

  removeGlow() {
    if (this.glow) this.viewer.scene.primitives.remove(this.glow); // removing destroys it
    this.glow = undefined;
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
    const asked = this.asked;
    const result = await getJSON(`${path}${query(params)}`);
    if (asked !== this.asked) return;
    const assets = [...(result.assets ?? [])].sort((a, b) => (a.distance_m ?? Infinity) - (b.distance_m ?? Infinity));
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
    this.markFound(assets.map((a) => a.id));
    this.show(out, { summary, rows, downloads: this.links(path, params, q.kind) });
    await this.restyleAfterPaint();
  }

  /** The found ids and the dimming of the rest, not yet drawn: restyleAfterPaint draws them. */
  markFound(ids) {
    this.styler.found = new Set(ids);
    this.styler.dimOthers = true;
  }

  /** Restyle the tiles once the list is on screen: re-colouring every loaded feature is the slow part of a frame,
   * and the browser paints the list only after the frame it is asked in. */
  async restyleAfterPaint() {
    const asked = this.asked;
    await nextFrame();
    if (asked === this.asked) this.styler.refresh();
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
  glowPipes(on, { refresh = true } = {}) {
    this.styler.foundColor = on ? PIPE_FOUND : undefined;
    for (const tileset of this.layers.tilesets()) {
      if (tileset.cimGroup !== "underground") continue;
      tileset.colorBlendMode = on ? Cesium.Cesium3DTileColorBlendMode.REPLACE : Cesium.Cesium3DTileColorBlendMode.HIGHLIGHT;
    }
    if (refresh) this.styler.refresh();
  }

  /** The drawn area whole: a translucent fill and its outline drawn over everything (one primitive and one entity). */
  showArea(ring) {
    if (this.area) this.viewer.entities.remove(this.area);
    if (this.areaFill) this.viewer.scene.primitives.remove(this.areaFill);
    this.area = this.areaFill = undefined;
    this.viewer.scene.requestRender();
    if (!ring) return;
    const corners = ring.map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat, 0));
    this.areaFill = this.viewer.scene.primitives.add(new Cesium.Primitive({
      geometryInstances: new Cesium.GeometryInstance({
        geometry: new Cesium.PolygonGeometry({
          polygonHierarchy: new Cesium.PolygonHierarchy(corners),
          vertexFormat: Cesium.PerInstanceColorAppearance.FLAT_VERTEX_FORMAT,
        }),
        attributes: { color: Cesium.ColorGeometryInstanceAttribute.fromColor(AREA.withAlpha(0.15)) },
      }),
      appearance: new Cesium.PerInstanceColorAppearance({ flat: true, translucent: true, renderState: OVERLAY }),
      asynchronous: true,
    }));
    const centre = Cesium.BoundingSphere.fromPoints(corners).center;
    this.area = this.viewer.entities.add({
      id: "query-area",
      position: centre,
      polyline: {
        positions: [...corners, corners[0]],
        width: 3,
        arcType: Cesium.ArcType.RHUMB,
        material: AREA,
        depthFailMaterial: AREA, // drawn where the ground is in front of it too: the outline whole
      },
    });
  }

  /** The answer's count in a label at the drawn area's centre, on the map where the eyes are. */
  labelArea(zh, en) {
    if (!this.area) return;
    const lang = currentLang();
    this.area.label = new Cesium.LabelGraphics({
      text: lang === "zh" ? zh : lang === "en" ? en : `${zh}\n${en}`, // one language a line: glyphs of both on one
      font: '16px "WenQuanYi Micro Hei", "Noto Sans CJK SC", sans-serif',
      fillColor: Cesium.Color.WHITE,
      showBackground: true,
      backgroundColor: Cesium.Color.fromCssColorString("#b0108ce6"),
      backgroundPadding: new Cesium.Cartesian2(10, 6),
      disableDepthTestDistance: Number.POSITIVE_INFINITY,
    });
    this.viewer.scene.requestRender();
  }

  clear() {
    this.current = undefined;
    this.shown = undefined;
    this.asked = (this.asked ?? 0) + 1;
    this.showArea(undefined);
    this.removeGlow();
    this.glowPipes(false);
    this.styler.setFound([]);
    $("query-result").replaceChildren();
    this.onChange();
  }
}

/** Resolve after the next frame has been painted (a frame, then a task): DOM changes made before are on screen. */
function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

/** The lines of a GeoJSON LineString or MultiLineString, as lists of [lon, lat]. */
function linesOf(geometry) {
  if (geometry?.type === "LineString") return [geometry.coordinates];
  if (geometry?.type === "MultiLineString") return geometry.coordinates;
  return [];
}
