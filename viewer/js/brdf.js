// The BRDF lookup table of physically based lighting, precomputed. CesiumJS renders it at the first frame with a 3D
// model: 256×256 pixels × 1,024 importance samples in one fragment shader, which SwiftShader (headless Chromium,
// machines without a GPU) takes 2.5–3.5 s to run — the largest single stall before the first frame with tiles.
// The table depends on nothing in the scene, so `viewer/brdf-lut.bin` holds it: the red and green bytes of each texel
// in GL row order, read back from CesiumJS 1.140's own BrdfLutGenerator (blue is 0, alpha 255). When the file cannot
// be had, CesiumJS's generator stays in place and the table is computed as before.
import * as Cesium from "./cesium.js";

const SIZE = 256;

/** Give `scene` the precomputed table instead of computing it at the first frame; resolves whether or not it could. */
export async function usePrecomputedBrdfLut(scene) {
  let rg;
  try {
    const response = await fetch("/viewer/brdf-lut.bin");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    rg = new Uint8Array(await response.arrayBuffer());
    if (rg.length !== SIZE * SIZE * 2) throw new Error(`${rg.length} bytes`);
  } catch (err) {
    console.warn(`brdf-lut.bin: ${err.message}; CesiumJS computes the table itself`);
    return false;
  }
  const rgba = new Uint8Array(SIZE * SIZE * 4);
  for (let i = 0, j = 0; i < rg.length; i += 2, j += 4) {
    rgba[j] = rg[i];
    rgba[j + 1] = rg[i + 1];
    rgba[j + 3] = 255;
  }
  const own = scene._brdfLutGenerator; // CesiumJS's generator: no public way to hand the scene a table
  if (own?.colorTexture) return true; // already computed (a model was drawn before the file came)
  let texture;
  scene._brdfLutGenerator = {
    get colorTexture() {
      return texture;
    },
    update(frameState) {
      texture ??= new Cesium.Texture({
        context: frameState.context,
        width: SIZE,
        height: SIZE,
        pixelFormat: Cesium.PixelFormat.RGBA,
        pixelDatatype: Cesium.PixelDatatype.UNSIGNED_BYTE,
        sampler: Cesium.Sampler.NEAREST,
        source: { width: SIZE, height: SIZE, arrayBufferView: rgba },
        flipY: false,
      });
    },
    isDestroyed: () => false,
    destroy() {
      texture = texture && texture.destroy();
      own?.destroy();
    },
  };
  return true;
}
