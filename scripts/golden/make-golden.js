// Golden outputs of the pretrained face models in their original runtime.
//
//   node make-golden.js [OUT_DIR]      (default: tests/fixtures/golden)
//
// For each model: two inputs, stored as uint8 HWC images (.npy, |u1) to keep
// the fixtures small: (a) a real photo, the central square of one of
// face-api's demo photos (models/face-api/sampleN.jpg, a group photo)
// resized bilinearly to the model's input size, (b) deterministic
// pseudo-random bytes (xorshift32, seed in manifest.json). The model input
// is float32(u8) * scale + offset, as given per model in manifest.json
// (the scaling the owning library uses). Outputs are float32 .npy, computed
// with the wasm backend (the reference), batch 1. manifest.json also gives,
// per output, the largest difference between the wasm and the cpu backends
// (a floor for the tolerance an independent implementation can meet).
//
// No network: models are read from disk (tf.io.fromMemory). Needs the models
// fetched by scripts/fetch-models.sh (HFR_MODEL_DIR to point elsewhere).
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const jpeg = require('jpeg-js');
const L = require('./lib');

const OUT = path.resolve(process.argv[2] || path.join(L.REPO, 'tests', 'fixtures', 'golden'));

// name, graph file, input size, scale, offset, outputs (null: all signature
// outputs), extra nodes, photo used for input (a).
const GRAPHS = [
  { name: 'faceres', size: 224, scale: 1, offset: 0, photo: 1,
    outputs: ['global_pooling/Mean', 'gender_pred/Sigmoid', 'age_pred/Softmax'] },
  { name: 'faceres-deep', size: 224, scale: 1, offset: 0, photo: 1, shareInputsWith: 'faceres',
    outputs: ['global_pooling/Mean', 'gender_pred/Sigmoid', 'age_pred/Softmax'] },
  { name: 'blazeface', size: 256, scale: 1 / 127.5, offset: -1, photo: 2, outputs: null },
  { name: 'facemesh', size: 192, scale: 1 / 255, offset: 0, photo: 3, outputs: null },
  { name: 'iris', size: 64, scale: 1 / 255, offset: 0, photo: 4, outputs: null },
  { name: 'mobilefacenet', size: 112, scale: 1 / 255, offset: 0, photo: 5,
    outputs: ['embeddings', 'MobileFaceNet/Logits/SpatialSqueeze'] },
];

function sha256(file) { return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex'); }
const safe = (s) => s.replace(/:0$/, '').replace(/[^A-Za-z0-9_.-]+/g, '_');

// Central square of a JPEG photo, bilinear to size x size, RGB uint8 HWC.
function photoInput(n, size) {
  const file = path.join(L.modelDir(), 'face-api', `sample${n}.jpg`);
  const img = jpeg.decode(fs.readFileSync(file), { useTArray: true, formatAsRGBA: true });
  const side = Math.min(img.width, img.height);
  const x0 = Math.floor((img.width - side) / 2); const y0 = Math.floor((img.height - side) / 2);
  const out = new Uint8Array(size * size * 3);
  for (let c = 0; c < 3; c++) {
    const plane = new Float32Array(side * side);
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) plane[y * side + x] = img.data[4 * ((y0 + y) * img.width + x0 + x) + c];
    }
    const r = L.resizeBilinear(plane, side, side, size, size);
    for (let i = 0; i < size * size; i++) out[3 * i + c] = Math.max(0, Math.min(255, Math.round(r[i])));
  }
  return { data: out, source: `face-api/sample${n}.jpg (${img.width}x${img.height}), central ${side}x${side} square, bilinear (half-pixel centres) to ${size}x${size}, rounded to uint8` };
}
function randomInput(seed, size) {
  const f = L.prng(size * size * 3, seed, 0, 256);
  return { data: Uint8Array.from(f, (v) => Math.min(255, Math.floor(v))), source: `xorshift32 seed ${seed}: floor(256 * s / 2^32) per byte (lib.js prng)` };
}

async function runBoth(tf, fn) {
  await tf.setBackend('wasm'); const a = await fn();
  await tf.setBackend('cpu'); const b = await fn();
  await tf.setBackend('wasm');
  return [a, b];
}
function maxAbsDiff(a, b) { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i])); return m; }

async function main() {
  const tf = await L.initTf('wasm');
  fs.mkdirSync(OUT, { recursive: true });
  const manifest = {
    generator: 'scripts/golden/make-golden.js',
    runtime: {
      '@tensorflow/tfjs-core': tf.version_core,
      backend: 'wasm (reference); cpu for the backend-difference column',
      node: process.version,
    },
    conventions: 'inputs: uint8 NHWC-less HWC images; model input = float32(u8) * scale + offset, batch 1 (NHWC). outputs: float32, shape as returned by the runtime.',
    models: [],
  };
  const inputsFor = {};
  let total = 0;
  const write = (file, data, shape) => { L.writeNpy(path.join(OUT, file), data, shape); total += fs.statSync(path.join(OUT, file)).size; };

  for (const g of GRAPHS) {
    const model = await L.loadGraph(tf, g.name);
    const outNames = g.outputs || model.outputs.map((o) => o.name);
    const entry = {
      model: g.name,
      files: [`${g.name}.json`, `${g.name}.bin`].map((f) => ({ file: f, sha256: sha256(path.join(L.modelDir(), f)) })),
      input: { node: model.inputs[0].name, shape: [1, g.size, g.size, 3], scale: g.scale, offset: g.offset },
      cases: [],
    };
    let inputs = inputsFor[g.shareInputsWith || g.name];
    if (!inputs) {
      inputs = [
        { id: 'photo', ...photoInput(g.photo, g.size) },
        { id: 'random', ...randomInput(1000 + g.size, g.size) },
      ];
      for (const inp of inputs) {
        inp.file = `${g.name}.input_${inp.id}.npy`;
        write(inp.file, inp.data, [g.size, g.size, 3]);
      }
      inputsFor[g.name] = inputs;
    }
    for (const inp of inputs) {
      const exec = () => tf.tidy(() => {
        const x = tf.tensor4d(Float32Array.from(inp.data, (v) => v * g.scale + g.offset), [1, g.size, g.size, 3]);
        const ys = model.execute(x, outNames);
        return (Array.isArray(ys) ? ys : [ys]).map((y) => ({ shape: y.shape, data: y.dataSync().slice() }));
      });
      const [ref, cpu] = await runBoth(tf, exec);
      const c = { input: inp.file, input_source: inp.source, outputs: [] };
      ref.forEach((y, k) => {
        const file = `${g.name}.${inp.id}.${safe(outNames[k])}.npy`;
        write(file, y.data, y.shape);
        c.outputs.push({ node: outNames[k], file, shape: y.shape, max_abs_diff_cpu_vs_wasm: maxAbsDiff(y.data, cpu[k].data), max_abs: y.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0) });
      });
      entry.cases.push(c);
    }
    manifest.models.push(entry);
    model.dispose();
    console.log(`${g.name}: ${entry.cases.length} cases, outputs ${outNames.join(', ')}`);
  }

  // dlib ResNet descriptor, run by face-api's own code (FaceRecognitionNet).
  const faceapi = require('./node_modules/@vladmandic/face-api/dist/face-api.node-wasm.js');
  await faceapi.nets.faceRecognitionNet.loadFromDisk(path.join(L.modelDir(), 'face-api'));
  const entry = {
    model: 'face-api/face_recognition_model (dlib ResNet, 128-d)',
    runner: `@vladmandic/face-api ${faceapi.version} FaceRecognitionNet.computeFaceDescriptor (its own code)`,
    files: ['face_recognition_model-weights_manifest.json', 'face_recognition_model.bin']
      .map((f) => ({ file: `face-api/${f}`, sha256: sha256(path.join(L.modelDir(), 'face-api', f)) })),
    input: { shape: [150, 150, 3], scale: 1, offset: 0, note: 'RGB 0..255 passed as a 150x150x3 tensor; face-api itself subtracts the mean RGB (122.782, 117.001, 104.298) and divides by 255 (no resize, no padding at 150x150)' },
    cases: [],
  };
  for (const inp of [{ id: 'photo', ...photoInput(6, 150) }, { id: 'random', ...randomInput(1150, 150) }]) {
    inp.file = `dlib.input_${inp.id}.npy`;
    write(inp.file, inp.data, [150, 150, 3]);
    const exec = async () => {
      const x = tf.tensor3d(Float32Array.from(inp.data), [150, 150, 3]);
      const d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(x);
      x.dispose();
      return Float32Array.from(d);
    };
    const [ref, cpu] = await runBoth(tf, exec);
    const file = `dlib.${inp.id}.descriptor.npy`;
    write(file, ref, [1, 128]);
    entry.cases.push({ input: inp.file, input_source: inp.source, outputs: [{ node: 'descriptor', file, shape: [1, 128], max_abs_diff_cpu_vs_wasm: maxAbsDiff(ref, cpu), max_abs: ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0) }] });
  }
  manifest.models.push(entry);
  console.log('dlib: 2 cases');

  fs.writeFileSync(path.join(OUT, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  console.log(`wrote ${OUT} (${(total / 1e6).toFixed(2)} MB of .npy)`);
}

main().catch((e) => { console.error(e); process.exit(1); });
