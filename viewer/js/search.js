// Find and go: a search box at the top of the side panel. As you type (debounced), the server's /search lists assets,
// areas and named places by id or name; ↑/↓ move, Enter (or a click) flies there — a building to its footprint centre
// and height, an area to its bounding box — and an asset is picked (highlighted in the tiles, detail opened).
import * as Cesium from "./cesium.js";
import { getJSON } from "./api.js";
import { bi, biName, kindName } from "./i18n.js";
import { $, el } from "./ui.js";
import { flyToPoint } from "./viewer.js";

const DEBOUNCE_MS = 150;
const LIMIT = 10;
const AREAS = new Set(["city", "district", "street", "grid_cell"]);

export class Search {
  constructor({ viewer, inspector }) {
    this.viewer = viewer;
    this.inspector = inspector;
    this.input = $("search-input");
    this.list = $("search-results");
    this.matches = [];
    this.active = -1;
    this.seq = 0; // answers to older keystrokes are dropped
    this.timer = undefined;
    this.controller = undefined;
    this.last = undefined; // {q, ms, count} of the latest list shown (tests read it)
    this.chosen = undefined; // the match flown to last
    this.input.addEventListener("input", () => this.schedule());
    this.input.addEventListener("keydown", (event) => this.key(event));
  }

  schedule() {
    clearTimeout(this.timer);
    const typed = performance.now();
    this.timer = setTimeout(() => this.run(this.input.value, typed), DEBOUNCE_MS);
  }

  async run(q, typed = performance.now()) {
    const seq = ++this.seq;
    this.controller?.abort();
    const text = q.trim();
    if (!text) {
      this.show([], q);
      return;
    }
    this.controller = new AbortController();
    try {
      const params = new URLSearchParams({ q: text.slice(0, 200), limit: String(LIMIT) });
      const body = await getJSON(`/search?${params}`, { signal: this.controller.signal });
      if (seq !== this.seq) return;
      this.show(body.matches, q, body.total);
      this.last = { q, ms: performance.now() - typed, count: body.matches.length, total: body.total };
    } catch (err) {
      if (err.name === "AbortError" || seq !== this.seq) return;
      this.list.replaceChildren(el("li", { class: "empty" }, bi("搜索失败", "search failed"), `: ${err.message}`));
      this.list.hidden = false;
    }
  }

  show(matches, q, total = 0) {
    this.matches = matches;
    this.active = matches.length ? 0 : -1;
    if (!q.trim()) {
      this.list.replaceChildren();
      this.list.hidden = true;
      return;
    }
    const items = matches.map((m, i) =>
      el("li", { "data-id": m.id, "data-kind": m.kind, onclick: () => this.choose(i), onmouseenter: () => this.mark(i) },
        biName(m.name_zh, m.name_en ?? m.name ?? m.id),
        el("div", { class: "sub" }, bi(...kindName(m.kind)),
          m.district && m.kind !== "district" ? [" · ", biName(m.district.name_zh, m.district.name_en)] : "")));
    if (!matches.length) items.push(el("li", { class: "empty", id: "search-none" }, bi("无结果", "no matches")));
    else if (total > matches.length) {
      items.push(el("li", { class: "empty" }, bi(`共 ${total} 项`, `${total} in all`)));
    }
    this.list.replaceChildren(...items);
    this.list.hidden = false;
    this.mark(this.active);
  }

  mark(i) {
    this.active = i;
    [...this.list.children].forEach((li, k) => li.classList.toggle("active", k === i));
    this.list.children[i]?.scrollIntoView?.({ block: "nearest" });
  }

  key(event) {
    const n = this.matches.length;
    if (event.key === "ArrowDown" && n) this.mark((this.active + 1) % n);
    else if (event.key === "ArrowUp" && n) this.mark((this.active - 1 + n) % n);
    else if (event.key === "Enter") {
      clearTimeout(this.timer);
      if (this.active >= 0 && this.input.value.trim() === (this.last?.q ?? "").trim()) this.choose(this.active);
      else this.run(this.input.value).then(() => this.matches.length && this.choose(0)); // typed faster than the list
    } else if (event.key === "Escape") {
      clearTimeout(this.timer); // a list still on its way is not shown after the box was cleared
      this.seq += 1;
      this.controller?.abort();
      this.input.value = "";
      this.show([], "");
      this.input.blur();
    } else return;
    event.preventDefault();
  }

  /** Fly to match `i` and pick it when it is an asset. */
  choose(i) {
    const m = this.matches[i];
    if (!m) return;
    this.chosen = m;
    this.mark(i);
    this.viewer.scene.requestRender();
    if (m.bbox && AREAS.has(m.kind)) {
      const [w, s, e, n] = m.bbox;
      this.viewer.camera.flyTo({ destination: Cesium.Rectangle.fromDegrees(w, s, e, n), duration: 1.5 });
    } else if (m.kind === "place") {
      flyToPoint(this.viewer, m.lon, m.lat, { range: m.height ?? 1500, pitch: -35, duration: 1.5 });
    } else {
      const top = m.height ?? 0;
      flyToPoint(this.viewer, m.lon, m.lat, { height: top / 2, range: Math.max(300, top * 3), duration: 1.5 });
    }
    if (!AREAS.has(m.kind) && m.kind !== "place") this.inspector.open(m.id, { name: m.name });
    else this.inspector.close(); // an area or a place: nothing picked
  }
}
