// The root tileset's layer groups (buildings, bim, underground, points), each loaded as its own tileset so it can be
// switched alone, and the external tilesets mounted beside them (a reality mesh, a neighbour's buildings: children
// whose content is `external/<name>/…`, with their title in extras), listed by their title. A layer that fails to
// load gets a visible note (for a mount, the server's reason as its tooltip) and the others still work.
import * as Cesium from "./cesium.js";
import { getJSON } from "./api.js";
import { bi } from "./i18n.js";
import { $, el } from "./ui.js";

const LABELS = {
  buildings: ["建筑", "Buildings"],
  bim: ["建筑信息模型", "BIM detail"],
  underground: ["地下管网", "Underground networks"],
  points: ["点状设施", "Point assets"],
  city: ["城市模型", "City"],
};

/** Why the server would not give a tileset: the `why` of its JSON error body (a vanished folder, a stopped server). */
async function reason(url) {
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json();
    return body.why ?? body.description ?? `HTTP ${response.status}`;
  } catch {
    return "";
  }
}

export class Layers {
  constructor(viewer, styler, onChange) {
    this.viewer = viewer;
    this.styler = styler;
    this.onChange = onChange;
    this.groups = new Map(); // name → {tileset, checkbox, note}
    this.firstTile = undefined; // resolves when any tile's content is shown
  }

  /** Load `<base>/tileset.json` and one tileset per external child; `visible` lists the groups to show. */
  async load(base, visible) {
    const root = await getJSON(`${base}/tileset.json`);
    const children = root.root?.children ?? [];
    let groups = children
      .filter((c) => c.content?.uri?.endsWith(".json"))
      .map((c) => {
        const uri = c.content.uri;
        const mount = c.extras?.mount;
        if (uri.startsWith("external/") && mount) {
          const title = [c.extras.title_zh || c.extras.title || mount, c.extras.title || mount];
          return { name: `ext-${mount}`, url: `${base}/${uri}`, title, external: true, transform: c.transform };
        }
        return { name: uri.split("/")[0].replace(/\.json$/, ""), url: `${base}/${uri}` };
      });
    if (!groups.length) groups = [{ name: "city", url: `${base}/tileset.json` }]; // a single, non-grouped tileset
    let resolveFirst;
    this.firstTile = new Promise((resolve) => (resolveFirst = resolve));
    await Promise.all(groups.map((g) => this.addGroup(g, visible ? visible.includes(g.name) : true, resolveFirst)));
    return [...this.groups.keys()];
  }

  async addGroup({ name, url, title, external, transform }, show, onFirstTile) {
    const checkbox = el("input", { type: "checkbox", "data-layer": name, checked: show });
    const note = el("span", { class: "note" });
    const text = bi(...(title ?? LABELS[name] ?? [name, name]));
    const label = el("label", { class: "switch", id: `layer-${name}` }, checkbox, text, note);
    if (external) label.dataset.external = "true";
    $("layer-switches").append(label);
    const entry = { name, checkbox, note, tileset: undefined };
    this.groups.set(name, entry);
    checkbox.addEventListener("change", () => {
      if (entry.tileset) entry.tileset.show = checkbox.checked;
      this.viewer.scene.requestRender();
      this.onChange();
    });
    try {
      const tileset = await Cesium.Cesium3DTileset.fromUrl(url, {
        maximumScreenSpaceError: 16,
        // Pipes and chambers are below the ellipsoid; keep them pickable and visible through a translucent globe.
        backFaceCulling: name !== "underground",
        // No per-tileset atmosphere cube maps for image-based lighting: each is a chain of compute passes run (and, in
        // SwiftShader, compiled) before the first frame with tiles; measured in headless Chromium: ~1.4 s of it.
        environmentMapOptions: { enabled: false },
      });
      tileset.show = checkbox.checked;
      // Loaded alone, a mount's tileset is placed by the transform its child in the root tileset carries.
      if (transform?.length === 16) tileset.modelMatrix = Cesium.Matrix4.fromArray(transform);
      tileset.tileFailed.addEventListener((event) => {
        note.replaceChildren(" ", bi("（部分瓦片加载失败）", "(some tiles failed)"));
        console.warn(`tile of ${name} failed: ${event.url}: ${event.message}`);
      });
      // The first frame drawn after a tile's content is ready is "the first frame with tiles".
      const removeLoad = tileset.tileLoad.addEventListener(() => {
        removeLoad();
        const remove = this.viewer.scene.postRender.addEventListener(() => {
          remove();
          onFirstTile(name);
        });
        this.viewer.scene.requestRender();
      });
      tileset.cimGroup = name;
      if (external) tileset.cimExternal = title; // [zh, en]: the inspector shows it, and asks the server nothing
      this.viewer.scene.primitives.add(tileset);
      // A mounted tileset's features are not this city's assets: no asset styling (colours by id, kinds hidden).
      if (!external) this.styler.attach(tileset, this.viewer.scene);
      entry.tileset = tileset;
    } catch (err) {
      note.replaceChildren(" ", bi("（加载失败）", "(failed to load)"));
      checkbox.disabled = true;
      console.warn(`tileset ${name} failed to load: ${err.message ?? err}`);
      if (external) label.title = await reason(url);
    }
  }

  visible() {
    return [...this.groups.values()].filter((g) => g.checkbox.checked).map((g) => g.name);
  }

  show(name, on = true) {
    const entry = this.groups.get(name);
    if (!entry || entry.checkbox.checked === on) return;
    entry.checkbox.checked = on;
    if (entry.tileset) entry.tileset.show = on;
    this.viewer.scene.requestRender();
    this.onChange();
  }

  tilesets() {
    return [...this.groups.values()].map((g) => g.tileset).filter(Boolean);
  }

  /** The bounding sphere around every loaded group, for the first view. */
  boundingSphere() {
    const spheres = this.tilesets().map((t) => t.boundingSphere);
    return spheres.length ? Cesium.BoundingSphere.fromBoundingSpheres(spheres) : undefined;
  }
}
