// Discriminability of the face descriptors in their original runtime (TF.js,
// wasm backend) on ORL face crops, and a diagnosis of mobilefacenet.
//
//   node investigate.js            (about 3 minutes on 2 cores)
//
// Protocol: test set ORL s1..s20, images 1..4 (80 crops, 120 genuine and 3040
// impostor pairs); the "centred" rows subtract the mean descriptor of a
// disjoint set (s21..s40, images 1, 5, 9) before comparing. Crop: the central
// 92x92 square of the 92x112 image (lib.orlCrop), bilinear to the model size,
// grey replicated to 3 channels (so RGB and BGR orders are the same input).
// Results are summarised in docs/models.md.
'use strict';

const L = require('./lib');
const faceapiPath = './node_modules/@vladmandic/face-api/dist/face-api.node-wasm.js';

const TEST = []; for (let s = 1; s <= 20; s++) for (const n of [1, 2, 3, 4]) TEST.push([s, n]);
const REF = []; for (let s = 21; s <= 40; s++) for (const n of [1, 5, 9]) REF.push([s, n]);
const dec = (s) => Buffer.from(s, 'base64').toString();

function meanVec(vs) {
  const m = new Float64Array(vs[0].length);
  for (const v of vs) for (let i = 0; i < m.length; i++) m[i] += v[i] / vs.length;
  return m;
}
function fmt(r, digits = 3) {
  return `genuine ${r.genuine.mean.toFixed(digits)} ± ${r.genuine.sd.toFixed(digits)}, `
    + `impostor ${r.impostor.mean.toFixed(digits)} ± ${r.impostor.sd.toFixed(digits)}, `
    + `AUC ${r.auc.toFixed(3)}, d' ${r.dprime.toFixed(2)}`;
}
// ‖E[a]‖ / sqrt(E‖a − E[a]‖²): how much a constant (input-independent) part
// dominates an activation. cos(a_i, a_j) ≈ R² / (1 + R²) when R is large.
function dcRatio(vs) {
  const m = meanVec(vs);
  let dev = 0;
  for (const v of vs) for (let i = 0; i < m.length; i++) dev += (v[i] - m[i]) ** 2;
  return L.l2norm(m) / Math.sqrt(dev / vs.length);
}

// Evaluate descriptors (raw and centred) at several nodes of a graph model.
async function evalGraph(tf, model, size, scale, nodes) {
  const run = (s, n) => tf.tidy(() => {
    const x = tf.tensor4d(L.orlCrop(s, n, size).map(scale), [1, size, size, 3]);
    const ys = model.execute(x, nodes);
    return (Array.isArray(ys) ? ys : [ys]).map((y) => y.dataSync().slice());
  });
  const test = TEST.map(([s, n]) => ({ s, v: run(s, n) }));
  const ref = REF.map(([s, n]) => run(s, n));
  return nodes.map((node, k) => {
    const mean = meanVec(ref.map((r) => r[k]));
    return {
      node,
      dim: test[0].v[k].length,
      raw: L.separation(test.map((t) => ({ subject: t.s, vec: t.v[k] }))),
      centred: L.separation(test.map((t) => ({ subject: t.s, vec: t.v[k].map((x, i) => x - mean[i]) }))),
      dc: dcRatio(test.map((t) => t.v[k])),
    };
  });
}

// The converter fused the ReLU of each depthwise conv into the conv, although
// the conv's output also feeds the PReLU's negative branch: that branch then
// sees relu(x), and the PReLU degenerates to a ReLU. This undoes the fusion.
function unfuseDepthwiseRelu(json) {
  const nodes = json.modelTopology.node; const added = [];
  for (const n of nodes) {
    if (n.op !== 'FusedDepthwiseConv2dNative') continue;
    const ops = n.attr.fused_ops.list.s.map(dec);
    if (!ops.includes('Relu')) continue;
    n.attr.fused_ops.list.s = [Buffer.from('BiasAdd').toString('base64')];
    const relu = { name: `${n.name}/hfr_relu`, op: 'Relu', input: [n.name], attr: { T: n.attr.T } };
    added.push(relu);
    for (const m of nodes) {
      if (m.op === 'Add' && m.input && m.input[0] === n.name && /\/mul_1$/.test(m.input[1])) m.input[0] = relu.name;
    }
  }
  nodes.push(...added);
  return added.length;
}

async function main() {
  const tf = await L.initTf('wasm');
  const out = (s) => console.log(s);

  // --- mobilefacenet ---------------------------------------------------------
  out('## mobilefacenet (112x112, output `embeddings`, 192-d, L2-normalised in the graph)');
  const mfn = await L.loadGraph(tf, 'mobilefacenet');
  const mfnNodes = [
    'MobileFaceNet/MobileFaceNet/Conv2d_4_InvResBlock_5/Add',
    'MobileFaceNet/MobileFaceNet/Conv2d_7/add',
    'MobileFaceNet/Logits/SeparableConv2d/depthwise',
    'MobileFaceNet/Logits/SpatialSqueeze',
    'embeddings',
  ];
  const scalings = [
    ['0..1', (x) => x / 255],
    ['-1..1 ((x-127.5)/127.5)', (x) => x / 127.5 - 1],
    ['0..255', (x) => x],
  ];
  for (const [name, f] of scalings) {
    out(`### input scaled ${name}`);
    const rows = await evalGraph(tf, mfn, 112, f, mfnNodes);
    for (const r of rows) {
      out(`- ${r.node} (${r.dim}-d), DC ratio ${r.dc.toFixed(1)}`);
      out(`  - raw cosine: ${fmt(r.raw, 4)}`);
      out(`  - centred cosine: ${fmt(r.centred)}`);
    }
  }
  // input independence
  const f11 = (x) => x / 127.5 - 1;
  const emb = (x) => tf.tidy(() => mfn.execute(x).dataSync().slice());
  const face = emb(tf.tensor4d(L.orlCrop(1, 1, 112).map(f11), [1, 112, 112, 3]));
  const grey = emb(tf.zeros([1, 112, 112, 3]));
  const noise = emb(tf.tensor4d(L.prng(112 * 112 * 3, 7, -1, 1), [1, 112, 112, 3]));
  out(`- input independence (-1..1): cos(face s1/1, uniform mid-grey image) = ${L.cosine(face, grey).toFixed(5)}, `
    + `cos(face, uniform noise) = ${L.cosine(face, noise).toFixed(5)}`);

  // per-layer DC ratio along the depth
  out('### DC ratio of the BN-folded pre-activations along the depth (-1..1 input)');
  const convNodes = mfn.hfrJson.modelTopology.node.filter((n) => n.op === '_FusedConv2D').map((n) => n.name);
  const per = convNodes.map(() => []);
  for (const [s, n] of TEST.slice(0, 40)) {
    tf.tidy(() => {
      const ys = mfn.execute(tf.tensor4d(L.orlCrop(s, n, 112).map(f11), [1, 112, 112, 3]), convNodes);
      ys.forEach((y, k) => per[k].push(y.dataSync().slice()));
    });
  }
  const mfnDc = convNodes.map((nm, k) => [nm.replace(/^MobileFaceNet\/(MobileFaceNet\/)?/, '').replace('/BatchNorm/FusedBatchNorm', ''), dcRatio(per[k])]);
  out(mfnDc.filter((_, k) => k % 4 === 0 || k === mfnDc.length - 1).map(([nm, r]) => `${nm} ${r.toFixed(1)}`).join('; '));

  // unfused PReLU variant
  let nFixed = 0;
  const mfnFixed = await L.loadGraph(tf, 'mobilefacenet', (j) => { nFixed = unfuseDepthwiseRelu(j); });
  out(`### with the ${nFixed} depthwise ReLU fusions undone (true PReLU), -1..1 input`);
  for (const r of await evalGraph(tf, mfnFixed, 112, f11, ['embeddings'])) {
    out(`- ${r.node}: DC ratio ${r.dc.toFixed(1)}; raw: ${fmt(r.raw, 4)}; centred: ${fmt(r.centred)}`);
  }
  mfn.dispose(); mfnFixed.dispose();

  // --- faceres -----------------------------------------------------------------
  out('## faceres (224x224, 0..255, `global_pooling/Mean`, 1024-d)');
  const fr = await L.loadGraph(tf, 'faceres');
  for (const r of await evalGraph(tf, fr, 224, (x) => x, ['global_pooling/Mean'])) {
    out(`- ${r.node}: DC ratio ${r.dc.toFixed(1)}; raw cosine: ${fmt(r.raw)}; centred: ${fmt(r.centred)}`);
  }
  {
    const bnNodes = fr.hfrJson.modelTopology.node.filter((n) => /_bn\/batchnorm_1\/add_1$/.test(n.name)).map((n) => n.name);
    const p = bnNodes.map(() => []);
    for (const [s, n] of TEST.slice(0, 40)) {
      tf.tidy(() => {
        const ys = fr.execute(tf.tensor4d(L.orlCrop(s, n, 224), [1, 224, 224, 3]), bnNodes);
        ys.forEach((y, k) => p[k].push(y.dataSync().slice()));
      });
    }
    const d = bnNodes.map((nm, k) => [nm.replace('/batchnorm_1/add_1', ''), dcRatio(p[k])]);
    out(`- DC ratio of the BN outputs along the depth: ${d.filter((_, k) => k % 4 === 0 || k === d.length - 1).map(([nm, r]) => `${nm} ${r.toFixed(1)}`).join('; ')}`);
  }
  fr.dispose();

  // --- dlib ResNet via face-api's own code ------------------------------------
  out('## dlib ResNet (face-api FaceRecognitionNet, 150x150, 128-d), run by face-api 1.7.15 itself');
  const faceapi = require(faceapiPath);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(`${L.modelDir()}/face-api`);
  const desc = async (s, n) => {
    const x = tf.tensor3d(L.orlCrop(s, n, 150), [150, 150, 3]);
    const d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(x);
    x.dispose();
    return Float32Array.from(d);
  };
  const test = []; for (const [s, n] of TEST) test.push({ subject: s, vec: await desc(s, n) });
  const ref = []; for (const [s, n] of REF) ref.push(await desc(s, n));
  const mean = meanVec(ref);
  const cen = test.map((t) => ({ subject: t.subject, vec: t.vec.map((x, i) => x - mean[i]) }));
  out(`- L2 distance (face-api's metric; lower = same): ${fmt(L.separation(test, L.l2dist))}`);
  out(`- raw cosine: ${fmt(L.separation(test))}; DC ratio ${dcRatio(test.map((t) => t.vec)).toFixed(1)}`);
  out(`- centred cosine: ${fmt(L.separation(cen))}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
