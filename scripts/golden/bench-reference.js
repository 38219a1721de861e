// Speed of the pretrained face models in their ORIGINAL runtime (TF.js 4.22.0,
// wasm backend, in Node), to compare with hfr's LibTorch port
// (bench/run_embed.sh). Prints one JSON object on stdout; progress on stderr.
//
//   node bench-reference.js > /tmp/ref.json        (100-160 s on this 2-core machine)
//
// Runtime: the wasm backend with its default thread count: nothing calls
// setThreadsCount. In Node, TF.js 4.22.0 reports WASM_HAS_MULTITHREAD_SUPPORT =
// false (tfjs issue #3830), so it loads the non-threaded SIMD binary and XNNPACK
// runs on ONE thread; the JSON records the flags and the thread count it
// reports. (lib.initTf, used by make-golden.js, is not used here because it
// pins the thread count to 1 explicitly.)
//
// What is measured (all timings with performance.now(), each forward timed
// from building the input tensor from a prepared Float32Array to reading all
// requested outputs back to JS with dataSync()/data(); tensors are released
// with tf.tidy / dispose, and tf.memory() before and after each section is in
// the JSON):
//  (a) aligned-crop throughput (images/s) at batch 1 and batch 8, after a
//      warm-up, on ORL crops prepared exactly as hfr does (lib.orlCrop:
//      central 92x92 square of the 92x112 PGM, bilinear with half-pixel centres
//      to the model size, grey replicated to 3 channels, 0..255). Crop
//      preparation is done before the timed loop.
//      - faceres: graph model, input 224x224x3 float 0..255, only the
//        global_pooling/Mean output is requested (the gender/age heads are
//        pruned by the executor).
//      - dlib ResNet: face-api's own code, FaceRecognitionNet
//        .computeFaceDescriptor(input) with a 150x150x3 tensor (batch 1: a
//        Tensor3D, face-api's normal use: its high-level API calls it once per
//        face) or an array of 8 Tensor3D (batch 8: face-api's batch input,
//        stacked by NetInput.toBatchTensor into one [8,150,150,3] forward).
//  (b) full-photo pipeline, one face per photo: the photo is decoded before
//      the timed loop (jpeg-js / PGM); then, timed: letterbox (pad
//      bottom/right to a square with 0, tf.image.resizeBilinear to 256x256,
//      x/127.5-1), blazeface forward (+ readback of its 4 outputs), decoding of
//      the best-scoring anchor in JS (no NMS), crop extraction with
//      tf.image.cropAndResize from the full-resolution photo (a 1.5x square
//      around the box to 192x192 scaled x/255 for facemesh; a 1.2x square to
//      224x224 0..255 for faceres: no landmark alignment), facemesh forward,
//      faceres forward. faces/s is given for the three network forwards alone
//      and for the whole timed chain. Inputs: face-api's six demo photos
//      (models/face-api/sample1..6.jpg) and ORL images.
//  (c) per-model forward latency at batch 1 (ms, median and p95): blazeface
//      (letterboxed photos), facemesh (ORL crops at 192, x/255), faceres (ORL
//      crops at 224), dlib (ORL crops at 150, computeFaceDescriptor).
//
// Environment: HFR_MODEL_DIR, HFR_ORL_DIR (as lib.js); HFR_BENCH_SCALE (default
// 1) multiplies the image counts.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { performance } = require('perf_hooks');
const jpeg = require('jpeg-js');
const L = require('./lib');

const SCALE = Math.max(0.25, +(process.env.HFR_BENCH_SCALE || 1));
const N_A = Math.round(160 * SCALE); // images per throughput measurement (a)
const N_B_ORL = Math.round(80 * SCALE); // ORL photos in (b); + 6 demo photos, each twice
const N_C = Math.max(30, Math.round(40 * SCALE)); // runs per latency measurement (c)

const log = (...a) => console.error('[bench-reference]', ...a);
const r2 = (x) => Math.round(x * 100) / 100;
// CPU seconds of this process (all its threads) since c0: with one wasm thread,
// cpu / wall well below 1 means other processes took the core.
const cpuSince = (c0) => { const c = process.cpuUsage(c0); return (c.user + c.system) / 1e6; };

function stats(ms) {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return { n: s.length, median_ms: r2(q(0.5)), p95_ms: r2(q(0.95)), mean_ms: r2(mean), min_ms: r2(s[0]), max_ms: r2(s[s.length - 1]) };
}

// ORL images s<subject>/<n>.pgm in subject-major order: s1/1, s2/1, ..., s40/1, s1/2, ...
function orlList(n) {
  const out = [];
  for (let k = 0; out.length < n; k++) out.push([(k % 40) + 1, Math.floor(k / 40) % 10 + 1]);
  return out;
}

async function initTf() {
  const tf = require('@tensorflow/tfjs-core');
  require('@tensorflow/tfjs-converter');
  require('@tensorflow/tfjs-backend-cpu');
  const wasm = require('@tensorflow/tfjs-backend-wasm');
  await tf.setBackend('wasm'); // default thread count: setThreadsCount is not called
  await tf.ready();
  const info = {
    tfjs_core: tf.version_core,
    backend: tf.getBackend(),
    wasm_backend_version: wasm.version_wasm,
    env_flags: {},
    wasm_threads: null,
  };
  for (const f of ['IS_NODE', 'IS_BROWSER', 'WASM_HAS_SIMD_SUPPORT', 'WASM_HAS_MULTITHREAD_SUPPORT', 'PROD', 'DEBUG']) {
    try { info.env_flags[f] = await tf.env().getAsync(f); } catch (e) { info.env_flags[f] = `unavailable: ${e.message}`; }
  }
  try { info.wasm_threads = wasm.getThreadsCount(); } catch (e) { info.wasm_threads = `unavailable: ${e.message}`; }
  info.wasm_binary = info.env_flags.WASM_HAS_SIMD_SUPPORT
    ? (info.env_flags.WASM_HAS_MULTITHREAD_SUPPORT ? 'tfjs-backend-wasm-threaded-simd.wasm' : 'tfjs-backend-wasm-simd.wasm')
    : 'tfjs-backend-wasm.wasm';
  return { tf, info };
}

// --- photos --------------------------------------------------------------

function decodeJpeg(file) {
  const img = jpeg.decode(fs.readFileSync(file), { useTArray: true, formatAsRGBA: true });
  const rgb = new Float32Array(img.width * img.height * 3);
  for (let i = 0, n = img.width * img.height; i < n; i++) {
    rgb[3 * i] = img.data[4 * i]; rgb[3 * i + 1] = img.data[4 * i + 1]; rgb[3 * i + 2] = img.data[4 * i + 2];
  }
  return { w: img.width, h: img.height, rgb };
}
function decodeOrl(s, n) {
  const p = L.readPGM(path.join(L.orlDir(), `s${s}`, `${n}.pgm`));
  const rgb = new Float32Array(p.w * p.h * 3);
  for (let i = 0; i < p.w * p.h; i++) { rgb[3 * i] = p.data[i]; rgb[3 * i + 1] = p.data[i]; rgb[3 * i + 2] = p.data[i]; }
  return { w: p.w, h: p.h, rgb };
}

// blazeface anchors (256x256 input): a 16x16 grid with 2 anchors per cell
// (outputs Identity / Identity_2, 512 rows) and an 8x8 grid with 6 per cell
// (Identity_1 / Identity_3, 384 rows); centres in [0,1].
function anchors(grid, per) {
  const a = [];
  for (let y = 0; y < grid; y++) for (let x = 0; x < grid; x++) for (let k = 0; k < per; k++) a.push([(x + 0.5) / grid, (y + 0.5) / grid]);
  return a;
}
const ANCH16 = anchors(16, 2);
const ANCH8 = anchors(8, 6);

// Best-scoring anchor -> {score, cx, cy, w, h} in letterbox coordinates [0,1].
function bestFace(score16, reg16, score8, reg8) {
  let best = { logit: -Infinity };
  const scan = (score, reg, anch) => {
    for (let i = 0; i < anch.length; i++) {
      if (score[i] > best.logit) {
        best = { logit: score[i], cx: anch[i][0] + reg[16 * i] / 256, cy: anch[i][1] + reg[16 * i + 1] / 256, w: reg[16 * i + 2] / 256, h: reg[16 * i + 3] / 256 };
      }
    }
  };
  scan(score16, reg16, ANCH16);
  scan(score8, reg8, ANCH8);
  best.score = 1 / (1 + Math.exp(-best.logit));
  return best;
}

// Square box of `enlarge` x the detection, as cropAndResize's normalised
// [y1, x1, y2, x2] on the original photo (the letterbox side is max(w, h)).
function cropBox(face, photo, enlarge) {
  const side = Math.max(photo.w, photo.h);
  const cx = face.cx * side; const cy = face.cy * side;
  const half = 0.5 * enlarge * Math.max(face.w, face.h) * side;
  return [(cy - half) / (photo.h - 1), (cx - half) / (photo.w - 1), (cy + half) / (photo.h - 1), (cx + half) / (photo.w - 1)];
}

async function main() {
  const t0 = performance.now();
  const { tf, info } = await initTf();
  log(`tfjs-core ${info.tfjs_core}, backend ${info.backend}, ${info.wasm_binary}, wasm threads ${info.wasm_threads}`);
  const faceapi = require('./node_modules/@vladmandic/face-api/dist/face-api.node-wasm.js');
  if (tf.getBackend() !== 'wasm') throw new Error(`backend changed to ${tf.getBackend()}`);

  const faceres = await L.loadGraph(tf, 'faceres');
  const blaze = await L.loadGraph(tf, 'blazeface');
  const mesh = await L.loadGraph(tf, 'facemesh');
  await faceapi.nets.faceRecognitionNet.loadFromDisk(path.join(L.modelDir(), 'face-api'));
  const dlib = faceapi.nets.faceRecognitionNet;
  const BLAZE_OUT = ['Identity', 'Identity_2', 'Identity_1', 'Identity_3']; // score16, reg16, score8, reg8
  const MESH_OUT = mesh.outputs.map((o) => o.name);

  const result = {
    script: 'scripts/golden/bench-reference.js',
    runtime: {
      ...info,
      face_api: faceapi.version,
      node: process.version,
      cpu: os.cpus()[0] && os.cpus()[0].model,
      logical_cpus: os.cpus().length,
      loadavg_start: os.loadavg().map(r2),
      note: 'wasm backend with its default thread count (setThreadsCount not called); in Node TF.js 4.22.0 disables wasm multithreading, so XNNPACK runs on the reported thread count',
    },
    timing: 'performance.now(); each forward from tf.tensor() of a prepared Float32Array to all requested outputs read back (dataSync / data()); inputs prepared before the timed loops. cpu_share = process CPU time (process.cpuUsage, all threads) / wall time of the section: about 1 with the single wasm thread on an idle core, lower when other processes compete; images_per_cpu_s / cpu_ms_mean are the contention-insensitive counterparts',
  };
  const mem = () => { const m = tf.memory(); return { numTensors: m.numTensors, numBytes: m.numBytes, rss_mb: Math.round(process.memoryUsage().rss / 1048576) }; };

  // ---------------------------------------------------------------- (a)
  log(`(a) preparing ${N_A} ORL crops at 224 and 150`);
  const listA = orlList(N_A);
  const crops224 = listA.map(([s, n]) => L.orlCrop(s, n, 224));
  const crops150 = listA.map(([s, n]) => L.orlCrop(s, n, 150));
  const crops192 = listA.slice(0, N_C).map(([s, n]) => L.orlCrop(s, n, 192).map((v) => v / 255));

  const faceresFwd = (crops, i0, b) => tf.tidy(() => {
    const x = new Float32Array(b * 224 * 224 * 3);
    for (let k = 0; k < b; k++) x.set(crops[(i0 + k) % crops.length], k * 224 * 224 * 3);
    const y = faceres.execute(tf.tensor4d(x, [b, 224, 224, 3]), 'global_pooling/Mean');
    return y.dataSync().length;
  });
  const dlibFwd = async (crops, i0, b) => {
    const xs = [];
    for (let k = 0; k < b; k++) xs.push(tf.tensor3d(crops[(i0 + k) % crops.length], [150, 150, 3]));
    const d = await dlib.computeFaceDescriptor(b === 1 ? xs[0] : xs);
    xs.forEach((t) => t.dispose());
    return Array.isArray(d) ? d.length * d[0].length : d.length;
  };
  const throughput = async (name, fwd, crops, b, expectLen) => {
    for (let w = 0; w < (b === 1 ? 3 : 1); w++) await fwd(crops, 0, b); // warm-up
    const before = mem();
    const per = [];
    const c0 = process.cpuUsage();
    const start = performance.now();
    for (let i = 0; i < crops.length; i += b) {
      const t = performance.now();
      const len = await fwd(crops, i, b);
      per.push(performance.now() - t);
      if (len !== expectLen * b) throw new Error(`${name}: output length ${len}, expected ${expectLen * b}`);
    }
    const total = performance.now() - start;
    const cpu = cpuSince(c0);
    const r = {
      batch: b, images: per.length * b, seconds: r2(total / 1000), images_per_s: r2(per.length * b * 1000 / total),
      cpu_seconds: r2(cpu), cpu_share: r2(cpu * 1000 / total), images_per_cpu_s: r2(per.length * b / cpu),
      per_batch: stats(per), mem_before: before, mem_after: mem(),
    };
    log(`(a) ${name} batch ${b}: ${r.images_per_s} images/s (${r.images} images, ${r.seconds} s, cpu share ${r.cpu_share})`);
    return r;
  };
  result.a_aligned_crops = {
    input: `ORL s1..s40 images 1..${Math.ceil(N_A / 40)} (${N_A} crops): central 92x92 square of the 92x112 PGM, bilinear (half-pixel centres) to the model size, grey replicated to 3 channels, float 0..255 (lib.orlCrop); crops prepared before timing`,
    measures: 'images/s = images / wall time of the timed loop (after warm-up: 3 batch-1 runs or 1 batch-8 run); each step = tf.tensor from the prepared crops + forward + output readback',
    faceres: {
      output: 'global_pooling/Mean [B,1024] only (graph-model execute)',
      batch1: await throughput('faceres', faceresFwd, crops224, 1, 1024),
      batch8: await throughput('faceres', faceresFwd, crops224, 8, 1024),
    },
    dlib: {
      runner: `@vladmandic/face-api ${faceapi.version} FaceRecognitionNet.computeFaceDescriptor: batch 1 = one Tensor3D [150,150,3] (face-api's normal use, once per face), batch 8 = an array of 8 Tensor3D (face-api's batch input: one [8,150,150,3] forward); face-api subtracts the mean RGB and divides by 255 itself`,
      batch1: await throughput('dlib', dlibFwd, crops150, 1, 128),
      batch8: await throughput('dlib', dlibFwd, crops150, 8, 128),
    },
  };

  // ---------------------------------------------------------------- (b)
  log('(b) decoding photos');
  const photos = [];
  let decodeMs = 0;
  for (let n = 1; n <= 6; n++) {
    const t = performance.now();
    const p = decodeJpeg(path.join(L.modelDir(), 'face-api', `sample${n}.jpg`));
    decodeMs += performance.now() - t;
    photos.push({ id: `face-api/sample${n}.jpg`, kind: 'demo', ...p });
  }
  const demoDecodeMs = decodeMs / 6;
  for (const [s, n] of orlList(N_B_ORL)) photos.push({ id: `orl/s${s}/${n}.pgm`, kind: 'orl', ...decodeOrl(s, n) });

  const pipeline = (p) => {
    const t = { pre: 0, blazeface: 0, decode: 0, crop: 0, facemesh: 0, faceres: 0 };
    let tt = performance.now();
    const img = tf.tensor3d(p.rgb, [p.h, p.w, 3]);
    const side = Math.max(p.w, p.h);
    const lb = tf.tidy(() => tf.sub(tf.div(tf.image.resizeBilinear(tf.expandDims(tf.pad(img, [[0, side - p.h], [0, side - p.w], [0, 0]]), 0), [256, 256], false, true), 127.5), 1));
    lb.dataSync();
    let tn = performance.now(); t.pre = tn - tt; tt = tn;
    const outs = tf.tidy(() => blaze.execute(lb, BLAZE_OUT).map((y) => y.dataSync()));
    tn = performance.now(); t.blazeface = tn - tt; tt = tn;
    lb.dispose();
    const face = bestFace(...outs);
    tn = performance.now(); t.decode = tn - tt; tt = tn;
    const [meshIn, resIn] = tf.tidy(() => {
      const x = tf.expandDims(img, 0);
      const m = tf.div(tf.image.cropAndResize(x, [cropBox(face, p, 1.5)], [0], [192, 192]), 255);
      const r = tf.image.cropAndResize(x, [cropBox(face, p, 1.2)], [0], [224, 224]);
      return [tf.keep(m), tf.keep(r)];
    });
    meshIn.dataSync(); resIn.dataSync();
    img.dispose();
    tn = performance.now(); t.crop = tn - tt; tt = tn;
    const meshLen = tf.tidy(() => mesh.execute(meshIn, MESH_OUT).reduce((a, y) => a + y.dataSync().length, 0));
    tn = performance.now(); t.facemesh = tn - tt; tt = tn;
    const resLen = tf.tidy(() => faceres.execute(resIn, 'global_pooling/Mean').dataSync().length);
    tn = performance.now(); t.faceres = tn - tt;
    meshIn.dispose(); resIn.dispose();
    if (meshLen !== 1404 + 1 + 266 || resLen !== 1024) throw new Error(`pipeline output sizes ${meshLen}, ${resLen}`);
    return { t, score: face.score };
  };

  for (let w = 0; w < 2; w++) { pipeline(photos[0]); pipeline(photos[6]); } // warm-up (both sizes)
  const bBefore = mem();
  const runs = { demo: [], orl: [] };
  const order = [...photos.filter((p) => p.kind === 'demo'), ...photos.filter((p) => p.kind === 'demo'), ...photos.filter((p) => p.kind === 'orl')];
  const cb0 = process.cpuUsage(); const tb0 = performance.now();
  for (const p of order) runs[p.kind].push(pipeline(p));
  const bCpuShare = r2(cpuSince(cb0) * 1000 / (performance.now() - tb0));
  const summarize = (rs, what) => {
    const keys = ['pre', 'blazeface', 'decode', 'crop', 'facemesh', 'faceres'];
    const per = {};
    for (const k of keys) per[k] = stats(rs.map((r) => r.t[k]));
    const net = rs.map((r) => r.t.blazeface + r.t.facemesh + r.t.faceres);
    const all = rs.map((r) => keys.reduce((a, k) => a + r.t[k], 0));
    const sum = (a) => a.reduce((x, y) => x + y, 0);
    return {
      photos: what,
      faces: rs.length,
      faces_per_s_networks: r2(rs.length * 1000 / sum(net)),
      faces_per_s_timed_chain: r2(rs.length * 1000 / sum(all)),
      mean_ms: Object.fromEntries(keys.map((k) => [k, r2(sum(rs.map((r) => r.t[k])) / rs.length)])),
      per_step_ms: per,
      networks_ms: stats(net),
      detection_score: { min: r2(Math.min(...rs.map((r) => r.score))), median: r2(stats(rs.map((r) => r.score)).median_ms) },
    };
  };
  const allRuns = [...runs.demo, ...runs.orl];
  result.b_full_photo = {
    measures: 'one face per photo (the best-scoring blazeface anchor): faces_per_s_networks = faces / sum of the blazeface + facemesh + faceres forward times (each incl. input already on the backend and output readback); faces_per_s_timed_chain adds letterbox preprocessing, anchor decoding and the two cropAndResize crops. Photo decoding (jpeg-js / PGM) is excluded (demo JPEG decode mean given separately). No landmark alignment: the faceres crop is a 1.2x square around the blazeface box.',
    steps: {
      pre: 'tf.tensor3d of the decoded RGB photo, pad bottom/right to a square, tf.image.resizeBilinear to 256x256 (half-pixel centres), x/127.5-1',
      blazeface: 'blazeface.json execute, 4 outputs read back',
      decode: 'best of 896 anchors in JS (sigmoid score, centre + size), no NMS',
      crop: 'tf.image.cropAndResize from the full-resolution photo: 1.5x square -> 192x192 /255 (facemesh) and 1.2x square -> 224x224 0..255 (faceres)',
      facemesh: 'facemesh.json execute [1,192,192,3], 3 outputs read back',
      faceres: 'faceres.json execute [1,224,224,3], global_pooling/Mean read back',
    },
    demo_jpeg_decode_ms_mean: r2(demoDecodeMs),
    demo_photos: summarize(runs.demo, 'face-api sample1..6.jpg (1920x1280 group photos), each twice'),
    orl_photos: summarize(runs.orl, `ORL ${N_B_ORL} full 92x112 images (s1..s40, images 1..${Math.ceil(N_B_ORL / 40)}), grey as RGB`),
    all: summarize(allRuns, `all ${allRuns.length} of the above`),
    cpu_share: bCpuShare,
    mem_before: bBefore,
    mem_after: mem(),
  };
  log(`(b) faces/s (networks only): demo ${result.b_full_photo.demo_photos.faces_per_s_networks}, orl ${result.b_full_photo.orl_photos.faces_per_s_networks}, all ${result.b_full_photo.all.faces_per_s_networks}`);

  // ---------------------------------------------------------------- (c)
  const blazeInputs = photos.slice(0, 6).concat(photos.slice(6, 12)).map((p) => tf.tidy(() => {
    const side = Math.max(p.w, p.h);
    const img = tf.tensor3d(p.rgb, [p.h, p.w, 3]);
    return tf.sub(tf.div(tf.image.resizeBilinear(tf.expandDims(tf.pad(img, [[0, side - p.h], [0, side - p.w], [0, 0]]), 0), [256, 256], false, true), 127.5), 1).dataSync().slice();
  }));
  const latency = async (name, fwd, inputs, note) => {
    for (let w = 0; w < 3; w++) await fwd(inputs[w % inputs.length]);
    const before = mem();
    const ms = [];
    const c0 = process.cpuUsage(); const w0 = performance.now();
    for (let i = 0; i < N_C; i++) {
      const t = performance.now();
      await fwd(inputs[i % inputs.length]);
      ms.push(performance.now() - t);
    }
    const cpu = cpuSince(c0);
    const r = { input: note, distinct_inputs: Math.min(inputs.length, N_C), ...stats(ms), cpu_ms_mean: r2(cpu * 1000 / N_C), cpu_share: r2(cpu * 1000 / (performance.now() - w0)), mem_before: before, mem_after: mem() };
    log(`(c) ${name}: median ${r.median_ms} ms, p95 ${r.p95_ms} ms, cpu share ${r.cpu_share}`);
    return r;
  };
  result.c_latency_batch1 = {
    measures: `ms per batch-1 forward (tf.tensor of a prepared Float32Array + execute + readback of the outputs), ${N_C} timed runs after 3 warm-up runs`,
    blazeface: await latency('blazeface', (x) => tf.tidy(() => blaze.execute(tf.tensor4d(x, [1, 256, 256, 3]), BLAZE_OUT).forEach((y) => y.dataSync())), blazeInputs,
      'letterboxed 256x256 x/127.5-1 (6 demo photos + 6 ORL images), 4 outputs'),
    facemesh: await latency('facemesh', (x) => tf.tidy(() => mesh.execute(tf.tensor4d(x, [1, 192, 192, 3]), MESH_OUT).forEach((y) => y.dataSync())), crops192,
      'ORL crops 192x192 x/255, 3 outputs'),
    faceres: await latency('faceres', (x) => tf.tidy(() => faceres.execute(tf.tensor4d(x, [1, 224, 224, 3]), 'global_pooling/Mean').dataSync()), crops224.slice(0, N_C),
      'ORL crops 224x224 0..255, global_pooling/Mean'),
    dlib: await latency('dlib', async (x) => { const t = tf.tensor3d(x, [150, 150, 3]); await dlib.computeFaceDescriptor(t); t.dispose(); }, crops150.slice(0, N_C),
      'ORL crops 150x150 0..255, face-api computeFaceDescriptor(Tensor3D)'),
  };

  result.images_used = {
    a_orl_crops: N_A,
    b_photos: { demo_jpeg: 6, demo_runs: runs.demo.length, orl_pgm: N_B_ORL, faces_timed: allRuns.length },
    c_runs_per_model: N_C,
    distinct_orl_images: new Set([...listA, ...orlList(N_B_ORL)].map((x) => x.join('/'))).size,
  };
  result.runtime.loadavg_end = os.loadavg().map(r2);
  result.total_seconds = r2((performance.now() - t0) / 1000);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  log(`done in ${result.total_seconds} s`);
}

main().catch((e) => { console.error(e); process.exit(1); });
