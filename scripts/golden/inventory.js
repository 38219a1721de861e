// Inventory of the fetched models, as Markdown (the generated part of
// docs/models.md):
//
//   node inventory.js > /tmp/inventory.md
//
// Reads model.json / weight manifests from the model folder; runs each graph
// once on zeros (wasm backend) only to report the runtime output shapes.
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const L = require('./lib');

const GRAPHS = ['faceres', 'faceres-deep', 'blazeface', 'blazeface-back', 'facemesh-detection-full',
  'facemesh-detection-short', 'facemesh', 'iris', 'mobilefacenet'];
const FACEAPI = ['face_recognition_model', 'ssd_mobilenetv1_model', 'face_landmark_68_model'];
const ATTRS = ['fused_ops', 'padding', 'strides', 'dilations', 'data_format', 'ksize', 'align_corners',
  'half_pixel_centers', 'block_size', 'keep_dims', 'transpose_a', 'transpose_b', 'leakyrelu_alpha',
  'explicit_paddings', 'squeeze_dims', 'axis', 'N', 'shrink_axis_mask', 'begin_mask', 'end_mask'];

const dec = (s) => Buffer.from(s, 'base64').toString();
function attrValue(a) {
  if (a === undefined) return undefined;
  if (a.s !== undefined) return dec(a.s);
  if (a.i !== undefined) return String(a.i);
  if (a.f !== undefined) return String(a.f);
  if (a.b !== undefined) return String(a.b);
  if (a.list) {
    if (a.list.s) return `[${a.list.s.map(dec).join(',')}]`;
    if (a.list.i) return `[${a.list.i.join(',')}]`;
    return '[]';
  }
  return JSON.stringify(a);
}
const shapeStr = (s) => (s ? `[${s.map((d) => (d === -1 || d === '-1' ? 'N' : d)).join(',')}]` : '?');
const mb = (n) => `${(n / 1e6).toFixed(2)} MB`;
const sha = (f) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

function weightSummary(specs) {
  const kinds = {}; let params = 0; const qs = [];
  for (const w of specs) {
    const n = w.shape.reduce((a, b) => a * b, 1); params += n;
    const q = w.quantization;
    const k = q ? `${w.dtype} stored as ${q.dtype}${q.dtype === 'float16' ? '' : ' (min/scale)'}` : `${w.dtype}`;
    kinds[k] = (kinds[k] || 0) + 1;
    if (q && q.dtype !== 'float16') qs.push(w);
  }
  return { kinds, params, qs };
}

async function main() {
  const tf = await L.initTf('wasm');
  const dir = L.modelDir();
  const union = {};
  const lines = [];
  const p = (s = '') => lines.push(s);

  for (const name of GRAPHS) {
    const jf = path.join(dir, `${name}.json`);
    const json = JSON.parse(fs.readFileSync(jf, 'utf8'));
    const nodes = json.modelTopology.node;
    const specs = json.weightsManifest.flatMap((g) => g.weights);
    const bins = json.weightsManifest.flatMap((g) => g.paths);
    const binBytes = bins.reduce((s, b) => s + fs.statSync(path.join(dir, b)).size, 0);
    const model = await L.loadGraph(tf, name);
    const inp = model.inputs[0];
    const runShape = inp.shape.map((d) => (d === -1 || d == null ? 1 : d));
    const outs = model.outputs.map((o) => o.name);
    const ys = tf.tidy(() => {
      const r = model.execute(tf.zeros(runShape), outs);
      return (Array.isArray(r) ? r : [r]).map((y) => y.shape);
    });
    const sigOut = (json.signature && json.signature.outputs) || (json.userDefinedMetadata && json.userDefinedMetadata.signature && json.userDefinedMetadata.signature.outputs) || {};
    const sigKey = {}; for (const [k, v] of Object.entries(sigOut)) sigKey[v.name.replace(/:0$/, '')] = k;

    p(`### ${name}`);
    p();
    p(`- files: \`${name}.json\` (${mb(fs.statSync(jf).size)}), ${bins.map((b) => `\`${b}\``).join(', ')} (${mb(binBytes)}); format \`${json.format}\`, generatedBy \`${json.generatedBy}\`, convertedBy \`${json.convertedBy}\``);
    p(`- input: \`${inp.name}\` ${shapeStr(inp.shape)} ${inp.dtype}`);
    p(`- outputs (runtime shape with batch 1): ${outs.map((o, k) => `\`${o}\`${sigKey[o] && sigKey[o].replace(/:0$/, "") !== o ? ` ("${sigKey[o]}")` : ''} ${shapeStr(ys[k])}`).join(', ')}`);
    const ws = weightSummary(specs);
    p(`- weights: ${specs.length} tensors, ${ws.params.toLocaleString('en-US')} values; ${Object.entries(ws.kinds).map(([k, v]) => `${v} × ${k}`).join(', ')}`);
    p();
    p('| op | count | attributes seen |');
    p('|---|---:|---|');
    const ops = {};
    for (const n of nodes) {
      const o = ops[n.op] || (ops[n.op] = { count: 0, attrs: {} });
      o.count++;
      for (const a of ATTRS) {
        const v = attrValue(n.attr && n.attr[a]);
        if (v === undefined || (a === 'explicit_paddings' && v === '[]')) continue;
        (o.attrs[a] || (o.attrs[a] = new Set())).add(v);
      }
    }
    for (const [op, o] of Object.entries(ops).sort((a, b) => b[1].count - a[1].count)) {
      const at = Object.entries(o.attrs).map(([k, s]) => `${k}: ${[...s].join(' / ')}`).join('; ');
      p(`| ${op} | ${o.count} | ${at} |`);
      const u = union[op] || (union[op] = { count: 0, models: [] });
      u.count += o.count; u.models.push(name);
    }
    p();
    model.dispose();
  }

  p('### face-api weight manifests (no graph: the architecture is in face-api\'s code)');
  p();
  p('| manifest | .bin | tensors | values | storage |');
  p('|---|---:|---:|---:|---|');
  const fdir = path.join(dir, 'face-api');
  for (const m of FACEAPI) {
    const j = JSON.parse(fs.readFileSync(path.join(fdir, `${m}-weights_manifest.json`), 'utf8'));
    const specs = j.flatMap((g) => g.weights);
    const ws = weightSummary(specs);
    const bytes = j.flatMap((g) => g.paths).reduce((s, b) => s + fs.statSync(path.join(fdir, b)).size, 0);
    p(`| ${m} | ${mb(bytes)} | ${specs.length} | ${ws.params.toLocaleString('en-US')} | ${Object.entries(ws.kinds).map(([k, v]) => `${v} × ${k}`).join(', ')} |`);
  }
  p();
  {
    const j = JSON.parse(fs.readFileSync(path.join(fdir, 'face_recognition_model-weights_manifest.json'), 'utf8'));
    const specs = j.flatMap((g) => g.weights);
    p('#### face_recognition_model tensors (in file order)');
    p();
    p('Every conv layer has `<layer>/conv/filters` [kh,kw,in,out], `<layer>/conv/bias` [out], `<layer>/scale/weights` [out] and `<layer>/scale/biases` [out]; a residual block `<block>` has layers `<block>/conv1` and `<block>/conv2`.');
    p();
    p('| block | conv1 filters | conv2 filters | storage |');
    p('|---|---|---|---|');
    const blocks = [];
    for (const w of specs) {
      const parts = w.name.split('/');
      const b = parts[0];
      let e = blocks.find((x) => x.b === b);
      if (!e) { e = { b, c1: '', c2: '', st: new Set() }; blocks.push(e); }
      e.st.add(w.quantization ? `${w.quantization.dtype}` : w.dtype);
      if (w.name === `${b}/conv/filters`) e.c1 = `[${w.shape}]`;
      if (w.name === `${b}/conv1/conv/filters`) e.c1 = `[${w.shape}]`;
      if (w.name === `${b}/conv2/conv/filters`) e.c2 = `[${w.shape}]`;
      if (w.name === 'fc') e.c1 = `fc [${w.shape}]`;
    }
    for (const e of blocks) p(`| ${e.b} | ${e.c1} | ${e.c2 || '—'} | ${[...e.st].join(', ')} |`);
    p();
    const fl = specs.filter((w) => !w.quantization).map((w) => `\`${w.name}\` [${w.shape}]`);
    p(`Unquantised (float32) tensors: ${fl.join(', ')}.`);
    p();
  }

  p('### Union of the TF.js ops (all graph models above)');
  p();
  p('| op | nodes | models |');
  p('|---|---:|---|');
  for (const [op, u] of Object.entries(union).sort((a, b) => b[1].count - a[1].count)) {
    p(`| ${op} | ${u.count} | ${u.models.join(', ')} |`);
  }
  p();
  p(`${Object.keys(union).length} distinct ops (${Object.keys(union).filter((o) => o !== 'Const' && o !== 'Placeholder' && o !== 'Identity').length} excluding Const, Placeholder, Identity).`);
  p();
  p('#### Files (sha256 as in scripts/models.sha256)');
  p();
  p('| file | bytes | sha256 |');
  p('|---|---:|---|');
  for (const line of fs.readFileSync(path.join(L.REPO, 'scripts', 'models.sha256'), 'utf8').split('\n').filter(Boolean)) {
    const [h, f] = line.split(/\s+/);
    const st = fs.statSync(path.join(dir, f));
    if (sha(path.join(dir, f)) !== h) throw new Error(`${f}: checksum mismatch`);
    p(`| ${f} | ${st.size.toLocaleString('en-US')} | \`${h.slice(0, 16)}…\` |`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((e) => { console.error(e); process.exit(1); });
