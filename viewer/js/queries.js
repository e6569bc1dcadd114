// The query panel: old lifts, buried pipes in a drawn area, assets within (or beyond) a distance of another kind.
// Results are listed (click a row to fly there) and highlighted in the tiles; "no results" is said explicitly.
import * as Cesium from "./cesium.js";
import { getJSON, postJSON, query } from "./api.js";
import { $, el, formatNumber } from "./ui.js";
import { drawPolygon, polygonOf } from "./draw.js";
import { flyToPoint, viewBbox } from "./viewer.js";

const MAX_ROWS = 300; // rows listed; every result is still highlighted

export class Queries {
  constructor({ viewer, styler, inspector, layers, underground, onChange }) {
    Object.assign(this, { viewer, styler, inspector, layers, underground, onChange });
    this.current = undefined; // the query in the shareable form (state.js)
    this.area = undefined; // the drawn polygon's entity
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
    out.replaceChildren(el("p", { class: "hint" }, "asking the server…"));
    this.showArea(q.type === "pipes" ? q.ring : undefined);
    try {
      if (q.type === "old-lifts") await this.oldLifts(q, out);
      else if (q.type === "pipes") await this.pipes(q, out);
      else if (q.type === "near") await this.near(q, out);
    } catch (err) {
      out.replaceChildren(el("p", { class: "status bad" }, `query failed: ${err.message}`));
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
    const result = await getJSON(`/queries/old-lifts${query({ years: q.years })}`);
    const buildings = result.buildings ?? [];
    const liftIds = buildings.flatMap((b) => b.lifts.map((l) => l.id));
    this.styler.setFound([...buildings.map((b) => b.id), ...liftIds], { dimOthers: true });
    const unknown = result.unknown_age?.length ?? 0;
    const summary = `${formatNumber(buildings.length)} buildings with ${formatNumber(liftIds.length)} lifts older than ` +
      `${q.years} years` + (unknown ? `; ${formatNumber(unknown)} lifts of unknown age` : "");
    const rows = buildings.map((b) => {
      const oldest = Math.max(...b.lifts.map((l) => l.age_years));
      return {
        id: b.id,
        text: b.name || b.id,
        sub: `${b.lifts.length} old lift${b.lifts.length === 1 ? "" : "s"}, oldest ${formatNumber(oldest, 1)} y`,
        lon: b.lon,
        lat: b.lat,
      };
    });
    this.list(out, summary, rows);
  }

  async pipes(q, out) {
    const body = { area: polygonOf(q.ring), network: q.network || null, older_than: q.older ?? null };
    const result = await postJSON("/queries/buried-pipes", body);
    const pipes = result.pipes ?? [];
    this.styler.setFound(pipes.map((p) => p.id), { dimOthers: true });
    if (pipes.length) {
      // The pipes are below ground: show that layer and look through the ground.
      this.layers.show("underground", true);
      this.underground.set(true);
    }
    const summary = `${formatNumber(pipes.length)} buried ${q.network || ""} pipes, ` +
      `${formatNumber(result.total_length_m / 1000, 2)} km in the area`;
    const rows = pipes.map((p) => ({
      id: p.id,
      text: p.id,
      sub: [p.install_date, p.depth_m != null ? `${p.depth_m} m deep` : "", `${formatNumber(p.length_in_area_m)} m`]
        .filter(Boolean).join(" · "),
    }));
    this.list(out, summary, rows, { total: result.total_length_m });
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
    const result = await getJSON(`/queries/within-distance${query(params)}`);
    const assets = result.assets ?? [];
    this.styler.setFound(assets.map((a) => a.id), { dimOthers: true });
    const summary = `${formatNumber(assets.length)} ${q.kind.replace("_", " ")} ${q.beyond ? "farther than" : "within"} ` +
      `${formatNumber(q.distance)} m of a ${q.near.replace("_", " ")}`;
    const rows = assets.map((a) => ({
      id: a.id,
      text: a.name || a.id,
      sub: a.distance_m != null ? `${formatNumber(a.distance_m)} m to ${a.near_id}` : "",
      lon: a.lon,
      lat: a.lat,
    }));
    this.list(out, summary, rows);
  }

  list(out, summary, rows) {
    if (!rows.length) {
      out.replaceChildren(el("p", { class: "summary", id: "no-results" }, "No results."));
      return;
    }
    const items = rows.slice(0, MAX_ROWS).map((row) =>
      el("li", {
        "data-id": row.id,
        onclick: () => {
          if (row.lon != null && row.lat != null) flyToPoint(this.viewer, row.lon, row.lat);
          this.inspector.open(row.id, {}, { fly: row.lon == null });
        },
      }, row.text, row.sub ? el("div", { class: "sub" }, row.sub) : ""));
    if (rows.length > MAX_ROWS) items.push(el("li", { class: "empty" }, `… and ${rows.length - MAX_ROWS} more`));
    out.replaceChildren(el("p", { class: "summary" }, summary), el("ul", { class: "list", id: "result-list" }, items));
  }

  showArea(ring) {
    if (this.area) this.viewer.entities.remove(this.area);
    this.area = undefined;
    if (!ring) return;
    this.viewer.scene.requestRender();
    this.area = this.viewer.entities.add({
      polyline: {
        positions: [...ring, ring[0]].map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat)),
        clampToGround: true,
        width: 3,
        material: Cesium.Color.fromCssColorString("#46b1e1"),
      },
    });
  }

  clear() {
    this.current = undefined;
    this.showArea(undefined);
    this.styler.setFound([]);
    $("query-result").replaceChildren();
    this.onChange();
  }
}
