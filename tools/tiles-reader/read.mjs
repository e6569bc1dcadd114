// A second, independent 3D Tiles client for the cim tests: loaders.gl loads the tileset, follows external tilesets
// and implicit tiling, loads every content, decodes every glb (KHR_mesh_quantization, EXT_meshopt_compression) and
// its EXT_mesh_features / EXT_structural_metadata, and this script prints what loaders.gl decoded as one JSON
// document. Nothing here parses 3D Tiles or glTF itself: it reads loaders.gl's results.
//
//   node read.mjs <tileset.json path or http URL> [--features N]
//
// Exit status 0 when every tile loaded and decoded, 1 when any failed (the failures are in "errors"), 2 on bad usage.
//
// Transforms, as loaders.gl resolves them (@loaders.gl/tiles, tileset/tile-3d.js `_initializeTransforms`): a tile's
// `computedTransform` is its parent's `computedTransform` (the tileset's `modelMatrix`, identity, at the root)
// times the tile's own `transform`; the root of an external tileset is made a child of the tile that references it
// (`Tileset3D._initializeTileHeaders(content, tile)`), so it inherits that tile's frame. Bounding volumes are put in
// that frame by `createBoundingVolume(header.boundingVolume, computedTransform)` (helpers/bounding-volume.js): a
// `box` becomes an OrientedBoundingBox with its centre and half axes transformed. The glTF content itself is left in
// its own frame with `rotateYtoZ` set (glTF is y-up); the renderer composes computedTransform × (y-up → z-up) × the
// glTF node matrices, and so does `worldMatrices` below to place sampled features in ECEF.

import {readFile} from 'node:fs/promises';
import {resolve} from 'node:path';
import {load} from '@loaders.gl/core';
import {Tiles3DLoader} from '@loaders.gl/3d-tiles';
import {Tileset3D} from '@loaders.gl/tiles';
import {Matrix4} from '@math.gl/core';
import {Ellipsoid} from '@math.gl/geospatial';

// loaders.gl fetches local paths through `globalThis.loaders.fetchNode`, which @loaders.gl/polyfills provides; that
// package has no 4.5 release, so give it the file's bytes (and its path as the response URL, which loaders.gl uses
// as the base for relative URIs).
globalThis.loaders = globalThis.loaders || {};
globalThis.loaders.fetchNode = async (path) => {
  const response = new Response(await readFile(path));
  Object.defineProperty(response, 'url', {value: path});
  return response;
};

const Y_UP_TO_Z_UP = new Matrix4([1, 0, 0, 0, 0, 0, 1, 0, 0, -1, 0, 0, 0, 0, 0, 1]); // column-major: (x, -z, y)
const LOAD_OPTIONS = {gltf: {loadBuffers: true, loadImages: false, decompressMeshes: true, postProcess: true}};
const CONCURRENT_LOADS = 8;

function usage() {
  process.stderr.write('usage: node read.mjs <tileset.json path or http URL> [--features N]\n');
  process.exit(2);
}

function parseArgs(argv) {
  let url = null;
  let features = 3;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--features') {
      features = Number(argv[++i]);
      if (!Number.isInteger(features) || features < 0) usage();
    } else if (url === null) {
      url = argv[i];
    } else {
      usage();
    }
  }
  if (url === null) usage();
  return {url, features};
}

/** A value loaders.gl decoded, made JSON: typed arrays become lists, BigInts strings. */
function plain(value) {
  if (typeof value === 'bigint') return value.toString();
  if (ArrayBuffer.isView(value)) return Array.from(value, plain);
  if (Array.isArray(value)) return value.map(plain);
  return value;
}

/** Every node's world matrix in the tile's ECEF frame, for the nodes that hold a mesh. */
function worldMatrices(gltf, tile, content) {
  const base = new Matrix4(tile.computedTransform);
  if (content.rotateYtoZ) base.multiplyRight(Y_UP_TO_Z_UP);
  const out = [];
  const visit = (node, parent) => {
    const local = new Matrix4();
    if (node.matrix) local.copy(node.matrix);
    else {
      if (node.translation) local.translate(node.translation);
      if (node.rotation) local.multiplyRight(new Matrix4().fromQuaternion(node.rotation));
      if (node.scale) local.scale(node.scale);
    }
    const world = new Matrix4(parent).multiplyRight(local);
    if (node.mesh) out.push({mesh: node.mesh, world});
    for (const child of node.children || []) visit(child, world);
  };
  const scene = gltf.scene || (gltf.scenes || [])[0];
  for (const node of scene ? scene.nodes : gltf.nodes || []) visit(node, base);
  return out;
}

/** The position of vertex i as a float, as glTF defines normalized integer attributes. */
function positionReader(accessor) {
  const values = accessor.value;
  let scale = 1;
  if (accessor.normalized) {
    scale = {5120: 1 / 127, 5121: 1 / 255, 5122: 1 / 32767, 5123: 1 / 65535}[accessor.componentType] || 1;
  }
  const clamp = accessor.normalized && (accessor.componentType === 5120 || accessor.componentType === 5122);
  return (i, axis) => {
    const v = Number(values[i * 3 + axis]) * scale;
    return clamp ? Math.max(v, -1) : v;
  };
}

/** Counts and feature ids of one primitive, as loaders.gl decoded them (EXT_mesh_features puts `data` on each). */
function describePrimitive(primitive) {
  const vertices = primitive.attributes.POSITION.count;
  const mode = primitive.mode ?? 4;
  const indexCount = primitive.indices ? primitive.indices.count : vertices;
  const triangles = mode === 4 ? indexCount / 3 : mode === 5 || mode === 6 ? Math.max(indexCount - 2, 0) : 0;
  const featureIds = (primitive.extensions?.EXT_mesh_features?.featureIds || []).map((featureId) => ({
    attribute: featureId.attribute ?? null,
    propertyTable: featureId.propertyTable ?? null,
    featureCount: featureId.featureCount,
    nullFeatureId: featureId.nullFeatureId ?? null,
    length: featureId.data ? featureId.data.length : null,
    ids: [...new Set(Array.from(featureId.data || [], Number))].sort((x, y) => x - y)
  }));
  return {mode, vertices, triangles, featureIds};
}

/** The ECEF bounds of every vertex, and for each of the first `nFeatures` features of each table its ECEF centroid and
 * its WGS84 (lon, lat, height) bounds, by math.gl's ellipsoid (the geodesy loaders.gl uses). */
function placeVertices(gltf, tile, content, nFeatures) {
  const low = [Infinity, Infinity, Infinity];
  const high = [-Infinity, -Infinity, -Infinity];
  const sums = new Map(); // `${table}:${row}` → {sum: [x, y, z, n], low: [lon, lat, h], high: [lon, lat, h]}
  const cartographic = [0, 0, 0];
  for (const {mesh, world} of worldMatrices(gltf, tile, content)) {
    for (const primitive of mesh.primitives) {
      const position = primitive.attributes.POSITION;
      const read = positionReader(position);
      const byFeature = (primitive.extensions?.EXT_mesh_features?.featureIds || []).find(
        (f) => f.propertyTable !== undefined && f.data && f.data.length === position.count
      );
      for (let i = 0; i < position.count; i++) {
        const p = world.transformAsPoint([read(i, 0), read(i, 1), read(i, 2)]);
        for (let axis = 0; axis < 3; axis++) {
          low[axis] = Math.min(low[axis], p[axis]);
          high[axis] = Math.max(high[axis], p[axis]);
        }
        const row = byFeature ? Number(byFeature.data[i]) : -1;
        if (row < 0 || row >= nFeatures || row === byFeature.nullFeatureId) continue;
        const key = `${byFeature.propertyTable}:${row}`;
        const feature = sums.get(key) || {sum: [0, 0, 0, 0], low: [Infinity, Infinity, Infinity], high: [-Infinity, -Infinity, -Infinity]};
        Ellipsoid.WGS84.cartesianToCartographic(p, cartographic);
        for (let axis = 0; axis < 3; axis++) {
          feature.sum[axis] += p[axis];
          feature.low[axis] = Math.min(feature.low[axis], cartographic[axis]);
          feature.high[axis] = Math.max(feature.high[axis], cartographic[axis]);
        }
        feature.sum[3] += 1;
        sums.set(key, feature);
      }
    }
  }
  return {bounds: Number.isFinite(low[0]) ? [low, high] : null, sums};
}

/** What loaders.gl decoded of one glb: counts, feature ids, property tables, sampled features placed in ECEF. */
function describeContent(tile, content, nFeatures) {
  const gltf = content.gltf;
  const metadata = gltf.extensions?.EXT_structural_metadata;
  const primitives = (gltf.meshes || []).flatMap((mesh) => mesh.primitives.map(describePrimitive));
  const {bounds, sums} = placeVertices(gltf, tile, content, nFeatures);
  const tables = (metadata?.propertyTables || []).map((table, index) => {
    const rows = [];
    for (let row = 0; row < Math.min(nFeatures, table.count); row++) {
      const values = {};
      for (const [name, property] of Object.entries(table.properties || {})) {
        if (property.data !== undefined) values[name] = plain(property.data[row]);
      }
      const feature = sums.get(`${index}:${row}`);
      const sum = feature?.sum;
      rows.push({
        row,
        values,
        ecef: feature ? [sum[0] / sum[3], sum[1] / sum[3], sum[2] / sum[3]] : null,
        lonLatHeight: feature ? [feature.low, feature.high] : null
      });
    }
    const undecoded = Object.entries(table.properties || {}).filter(([, p]) => p.data === undefined);
    return {class: table.class, count: table.count, rows, undecoded: undecoded.map(([name]) => name)};
  });
  return {
    vertices: primitives.reduce((n, p) => n + p.vertices, 0),
    triangles: primitives.reduce((n, p) => n + p.triangles, 0),
    features: tables.reduce((n, t) => n + t.count, 0),
    ecefBounds: bounds,
    primitives,
    tables,
    classes: metadata?.schema?.classes || {}
  };
}

/** Loads every tile below `tileset.root` (external tilesets add their tiles as they load), `CONCURRENT_LOADS` at once. */
async function traverse(tileset, nFeatures, relative) {
  const contents = [];
  const errors = [];
  let tiles = 0;
  const queue = [tileset.root];
  const running = new Set();
  const visit = async (tile) => {
    tiles += 1;
    if (tile.contentUrl) {
      try {
        await tile.loadContent();
        if (!tile.hasTilesetContent) {
          const described = describeContent(tile, tile.content, nFeatures);
          contents.push({uri: relative(tile.contentUrl), ...described});
        }
      } catch (error) {
        errors.push({uri: relative(tile.contentUrl), error: String(error?.stack || error)});
      }
    }
    queue.push(...tile.children); // an external tileset's root is a child of its tile once loaded
  };
  while (queue.length || running.size) {
    while (queue.length && running.size < CONCURRENT_LOADS) {
      const job = visit(queue.shift()).finally(() => running.delete(job));
      running.add(job);
    }
    if (running.size) await Promise.race(running);
  }
  contents.sort((a, b) => (a.uri < b.uri ? -1 : a.uri > b.uri ? 1 : 0));
  return {tiles, contents, errors};
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const url = /^https?:/.test(args.url) ? args.url : resolve(args.url);
  const features = args.features;
  const report = {tileset: url, loader: 'loaders.gl', tiles: 0, root: null, contents: [], errors: []};
  try {
    const json = await load(url, Tiles3DLoader, LOAD_OPTIONS);
    const tileset = new Tileset3D(json, {throttleRequests: false, loadOptions: LOAD_OPTIONS});
    await tileset.tilesetInitializationPromise;
    const volume = tileset.root.boundingVolume;
    const sphere = volume.getBoundingSphere ? volume.getBoundingSphere() : volume;
    report.root = {
      sphere: {center: Array.from(sphere.center), radius: sphere.radius},
      cartographicCenter: Array.from(tileset.cartographicCenter || [])
    };
    const base = json.basePath;
    const relative = (u) => (u.startsWith(`${base}/`) ? u.slice(base.length + 1) : u);
    Object.assign(report, await traverse(tileset, features, relative));
  } catch (error) {
    report.errors.push({uri: url, error: String(error?.stack || error)});
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exitCode = report.errors.length ? 1 : 0;
}

await main();
