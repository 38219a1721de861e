// Helpers shared by make-golden.js, investigate.js and inventory.js.
// No dependencies beyond the pinned TF.js packages in package.json.
'use strict';

const fs = require('fs');
const path = require('path');

const REPO = path.resolve(__dirname, '..', '..');

function modelDir() {
  let d = process.env.HFR_MODEL_DIR || 'models';
  if (!path.isAbsolute(d)) d = path.join(REPO, d);
  if (!fs.existsSync(path.join(d, 'faceres.json'))) {
    throw new Error(`models not found in ${d}: run scripts/fetch-models.sh first (or set HFR_MODEL_DIR)`);
  }
  return d;
}

function orlDir() {
  const d = process.env.HFR_ORL_DIR || path.join(REPO, '..', 'shared', 'data', 'orl-faces');
  const alt = '/work/shared/data/orl-faces';
  if (fs.existsSync(path.join(d, 's1', '1.pgm'))) return d;
  if (fs.existsSync(path.join(alt, 's1', '1.pgm'))) return alt;
  throw new Error(`ORL faces not found (looked in ${d} and ${alt}); set HFR_ORL_DIR`);
}

// tf is set up once: backend 'wasm' (the reference) or 'cpu'.
let tfSingleton = null;
async function initTf(backend = process.env.HFR_TF_BACKEND || 'wasm') {
  if (tfSingleton) return tfSingleton;
  const tf = require('@tensorflow/tfjs-core');
  require('@tensorflow/tfjs-converter');
  require('@tensorflow/tfjs-backend-cpu');
  if (backend === 'wasm') {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    wasm.setThreadsCount && wasm.setThreadsCount(1);
  }
  await tf.setBackend(backend);
  await tf.ready();
  tfSingleton = tf;
  return tf;
}

// A TF.js graph model (model.json + one or more .bin shards) loaded from
// memory: no fetch, no network.
async function loadGraph(tf, name, mutateJson) {
  const dir = modelDir();
  const json = JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8'));
  if (mutateJson) mutateJson(json);
  const specs = [];
  const bufs = [];
  for (const group of json.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) bufs.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(bufs);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const converter = require('@tensorflow/tfjs-converter');
  const handler = tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: specs,
    weightData,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata,
  });
  const model = await converter.loadGraphModel(handler);
  model.hfrJson = json;
  return model;
}

// --- images ---------------------------------------------------------------

// Binary PGM (P5, maxval < 256) -> {w, h, data: Uint8Array}
function readPGM(file) {
  const b = fs.readFileSync(file);
  let pos = 0;
  const tokens = [];
  while (tokens.length < 4) {
    while (pos < b.length && /\s/.test(String.fromCharCode(b[pos]))) pos++;
    if (b[pos] === 0x23) { while (pos < b.length && b[pos] !== 0x0a) pos++; continue; }
    let s = '';
    while (pos < b.length && !/\s/.test(String.fromCharCode(b[pos]))) s += String.fromCharCode(b[pos++]);
    tokens.push(s);
  }
  pos++; // single whitespace after maxval
  if (tokens[0] !== 'P5') throw new Error(`${file}: not a binary PGM`);
  const w = +tokens[1]; const h = +tokens[2]; const maxv = +tokens[3];
  if (maxv > 255) throw new Error(`${file}: 16-bit PGM not supported`);
  return { w, h, data: new Uint8Array(b.buffer, b.byteOffset + pos, w * h) };
}

// Bilinear resize with half-pixel centres (like cv::resize INTER_LINEAR
// without antialiasing), single channel float.
function resizeBilinear(src, sw, sh, dw, dh) {
  const out = new Float32Array(dw * dh);
  const sx = sw / dw; const sy = sh / dh;
  for (let y = 0; y < dh; y++) {
    let fy = (y + 0.5) * sy - 0.5; if (fy < 0) fy = 0;
    const y0 = Math.min(Math.floor(fy), sh - 1); const y1 = Math.min(y0 + 1, sh - 1); const wy = fy - y0;
    for (let x = 0; x < dw; x++) {
      let fx = (x + 0.5) * sx - 0.5; if (fx < 0) fx = 0;
      const x0 = Math.min(Math.floor(fx), sw - 1); const x1 = Math.min(x0 + 1, sw - 1); const wx = fx - x0;
      const a = src[y0 * sw + x0] * (1 - wx) + src[y0 * sw + x1] * wx;
      const c = src[y1 * sw + x0] * (1 - wx) + src[y1 * sw + x1] * wx;
      out[y * dw + x] = a * (1 - wy) + c * wy;
    }
  }
  return out;
}

// ORL image s<subject>/<n>.pgm (92x112 grey) -> the central 92x92 square
// (rows 10..101: forehead to chin), resized to size x size, replicated to 3
// channels, HWC float32 on 0..255.
function orlCrop(subject, n, size) {
  const img = readPGM(path.join(orlDir(), `s${subject}`, `${n}.pgm`));
  const top = Math.floor((img.h - img.w) / 2);
  const sq = new Float32Array(img.w * img.w);
  for (let i = 0; i < img.w * img.w; i++) sq[i] = img.data[top * img.w + i];
  const r = resizeBilinear(sq, img.w, img.w, size, size);
  const out = new Float32Array(size * size * 3);
  for (let i = 0; i < size * size; i++) { out[3 * i] = r[i]; out[3 * i + 1] = r[i]; out[3 * i + 2] = r[i]; }
  return out;
}

// Deterministic pseudo-random floats (xorshift32) in [lo, hi).
function prng(n, seed, lo = 0, hi = 1) {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = lo + (hi - lo) * (s / 4294967296);
  }
  return out;
}

// --- .npy (v1.0, little-endian) ------------------------------------------

function npyBytes(data, shape) {
  let descr;
  if (data instanceof Float32Array) descr = '<f4';
  else if (data instanceof Int32Array) descr = '<i4';
  else if (data instanceof Uint8Array) descr = '|u1';
  else throw new Error('npy: unsupported array type');
  const shp = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shp}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1'); pre[6] = 1; pre[7] = 0; pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, 'latin1'),
    Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

function writeNpy(file, data, shape) {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== data.length) throw new Error(`npy ${file}: shape ${shape} does not match ${data.length} values`);
  fs.writeFileSync(file, npyBytes(data, shape));
}

// --- metrics ----------------------------------------------------------------

function l2norm(v) { let s = 0; for (const x of v) s += x * x; return Math.sqrt(s); }
function cosine(a, b) {
  let d = 0; for (let i = 0; i < a.length; i++) d += a[i] * b[i];
  return d / (l2norm(a) * l2norm(b) + 1e-30);
}
function l2dist(a, b) { let s = 0; for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2; return Math.sqrt(s); }

// Genuine/impostor statistics of a list of {subject, vec}.
function separation(items, metric = cosine) {
  const gen = []; const imp = [];
  for (let i = 0; i < items.length; i++) {
    for (let j = i + 1; j < items.length; j++) {
      (items[i].subject === items[j].subject ? gen : imp).push(metric(items[i].vec, items[j].vec));
    }
  }
  const st = (a) => {
    const m = a.reduce((x, y) => x + y, 0) / a.length;
    const sd = Math.sqrt(a.reduce((x, y) => x + (y - m) ** 2, 0) / a.length);
    return { n: a.length, mean: m, sd, min: Math.min(...a), max: Math.max(...a) };
  };
  // AUC: probability that a genuine pair scores better than an impostor pair
  const higherBetter = metric === cosine;
  let win = 0;
  for (const g of gen) for (const x of imp) win += (higherBetter ? g > x : g < x) ? 1 : (g === x ? 0.5 : 0);
  // d' (decidability)
  const G = st(gen); const I = st(imp);
  const dprime = Math.abs(G.mean - I.mean) / Math.sqrt(0.5 * (G.sd ** 2 + I.sd ** 2) + 1e-30);
  return { genuine: G, impostor: I, auc: win / (gen.length * imp.length), dprime };
}

module.exports = {
  REPO, modelDir, orlDir, initTf, loadGraph, readPGM, resizeBilinear, orlCrop, prng,
  npyBytes, writeNpy, cosine, l2dist, l2norm, separation,
};
